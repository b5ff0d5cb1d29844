//! Appointments: slot metadata, free slots, book, cancel (DELETE with a JSON body) and my appointments.
//! Slot and session ids are the record's per-practice numbers; times are UK wall-clock without offset.

use crate::dates::{self, local, with_offset};
use crate::errors::{self, exception, missing, model_state, ok};
use crate::pfs::PatientCall;
use crate::render::{guid, user_in_role};
use http::StatusCode;
use im1_sim::common::{RequestContext, SimResponse};
use im1_sim::record::{AppointmentStatus, DeliveryMode, NewBooking, Record, Service, Session, Slot};
use serde_json::{json, Value};
use time::Duration;

/// The longest slot window the API accepts.
const MAX_WINDOW_DAYS: i64 = 28;

pub(crate) fn delivery(d: DeliveryMode) -> &'static str {
    match d {
        DeliveryMode::InPerson => "InPerson",
        DeliveryMode::Telephone => "Telephone",
        DeliveryMode::Video => "Video",
    }
}

/// Location ids: 1-based position of the location name among the practice's sessions, so they are stable.
pub(crate) fn location_id(r: &Record, ods: &str, name: &str) -> usize {
    let mut seen: Vec<&str> = Vec::new();
    for s in r.sessions_at(ods) {
        if !seen.contains(&s.location.as_str()) {
            seen.push(&s.location);
        }
    }
    seen.iter().position(|l| *l == name).map_or(0, |i| i + 1)
}

pub(crate) fn session_json(r: &Record, ods: &str, s: &Session) -> Value {
    json!({
        "SessionType": "Timed",
        "SessionName": s.name,
        "SessionId": s.number,
        "LocationId": location_id(r, ods, &s.location),
        "ClinicianIds": [user_in_role(r, ods, &s.practitioner)],
        "StartDateTime": local(s.starts_at),
        "EndDateTime": local(s.ends_at),
        "DeliveryMode": delivery(s.delivery),
    })
}

/// `GET appointmentslots/meta?sessionStartDate&sessionEndDate`.
pub fn slot_meta(call: &PatientCall) -> SimResponse {
    if let Err(r) = call.require(Service::Appointments, "AppointmentSlotsMetaGet") {
        return r;
    }
    let (from, to) = match window(call, "sessionStartDate", "sessionEndDate", true) {
        Ok(w) => w,
        Err(r) => return r,
    };
    let ods = call.ods;
    let v = call.emis.world.read(|r| {
        let sessions: Vec<&Session> = r
            .sessions_at(ods)
            .filter(|s| s.starts_at >= from && s.starts_at < to)
            .collect();
        let mut locations: Vec<&str> = Vec::new();
        let mut holders: Vec<&im1_sim::record::Nid> = Vec::new();
        for s in &sessions {
            if !locations.contains(&s.location.as_str()) {
                locations.push(&s.location);
            }
            if !holders.contains(&&s.practitioner) {
                holders.push(&s.practitioner);
            }
        }
        json!({
            "Locations": locations.iter().map(|l| json!({
                "LocationId": location_id(r, ods, l), "LocationName": l
            })).collect::<Vec<_>>(),
            "SessionHolders": holders.iter().filter_map(|id| r.practitioner(id)).map(|p| json!({
                "ClinicianId": user_in_role(r, ods, &p.id),
                "DisplayName": p.name.display(),
                "Title": p.name.title,
                "Forenames": p.name.given.join(" "),
                "Surname": p.name.family,
            })).collect::<Vec<_>>(),
            "Sessions": sessions.iter().map(|s| session_json(r, ods, s)).collect::<Vec<_>>(),
        })
    });
    ok(&v)
}

/// Parse a from/to window; `dates_only` treats a bare date's end as the end of that day.
fn window(
    call: &PatientCall,
    from_name: &str,
    to_name: &str,
    dates_only: bool,
) -> Result<(time::OffsetDateTime, time::OffsetDateTime), SimResponse> {
    let from_s = call.query.need(from_name)?;
    let to_s = call.query.need(to_name)?;
    let bad = |n: &str| model_state(n, &format!("The {n} field is not a valid date-time."));
    let from = dates::parse_instant(from_s).ok_or_else(|| bad(from_name))?;
    let mut to = dates::parse_instant(to_s).ok_or_else(|| bad(to_name))?;
    if dates_only && to_s.len() == 10 {
        to += Duration::days(1);
    }
    if to <= from {
        return Err(model_state(to_name, &format!("{to_name} must be after {from_name}.")));
    }
    if to - from > Duration::days(MAX_WINDOW_DAYS) {
        return Err(model_state(to_name, "The date range must not be more than 28 days."));
    }
    Ok((from, to))
}

fn slot_json(s: &Slot) -> Value {
    json!({
        "SlotId": s.number,
        "StartTime": local(s.starts_at),
        "EndTime": local(s.ends_at),
        "SlotTypeName": s.kind,
        "SlotTypeStatus": "Bookable",
    })
}

/// `GET appointmentslots?fromDateTime&toDateTime`: free slots grouped by session.
pub fn slots(call: &PatientCall) -> SimResponse {
    if let Err(r) = call.require(Service::Appointments, "AppointmentSlotsGet") {
        return r;
    }
    let (from, to) = match window(call, "fromDateTime", "toDateTime", false) {
        Ok(w) => w,
        Err(r) => return r,
    };
    let now = call.emis.world.now();
    let ods = call.ods;
    let v = call.emis.world.read(|r| {
        let mut groups: Vec<(&im1_sim::record::Nid, Vec<Value>)> = Vec::new();
        for s in r.free_slots_between(ods, now, from, to) {
            match groups.iter_mut().find(|(id, _)| *id == &s.session) {
                Some((_, list)) => list.push(slot_json(s)),
                None => groups.push((&s.session, vec![slot_json(s)])),
            }
        }
        let sessions: Vec<Value> = groups
            .into_iter()
            .filter_map(|(id, list)| {
                let s = r.session(id)?;
                Some(json!({
                    "SessionId": s.number,
                    "SessionName": s.name,
                    "LocationId": location_id(r, ods, &s.location),
                    "ClinicianIds": [user_in_role(r, ods, &s.practitioner)],
                    "DeliveryMode": delivery(s.delivery),
                    "Slots": list,
                }))
            })
            .collect();
        json!({ "Sessions": sessions })
    });
    ok(&v)
}

fn slot_number(call: &PatientCall) -> Result<u32, SimResponse> {
    match call.body.get("SlotId") {
        None | Some(Value::Null) => Err(missing("SlotId")),
        Some(v) => v
            .as_u64()
            .or_else(|| v.as_str().and_then(|s| s.parse().ok()))
            .and_then(|n| u32::try_from(n).ok())
            .ok_or_else(|| model_state("SlotId", "The SlotId field is not valid.")),
    }
}

/// `POST appointments`.
pub fn book(call: &PatientCall, cx: &RequestContext) -> SimResponse {
    let method = "AppointmentsPost";
    if let Err(r) = call.require(Service::Appointments, method) {
        return r;
    }
    let number = match slot_number(call) {
        Ok(n) => n,
        Err(r) => return r,
    };
    let reason = crate::request::opt_field(&call.body, "BookingReason");
    let telephone = crate::request::opt_field(&call.body, "TelephoneNumber");
    let ods = call.ods;
    let found = call.emis.world.read(|r| {
        let slot = r.slots.iter().find(|s| s.practice == ods && s.number == number)?;
        let session = r.session(&slot.session)?;
        Some((slot.id.clone(), session.delivery))
    });
    let Some((slot, mode)) = found else {
        return exception(
            StatusCode::BAD_REQUEST,
            errors::SLOT_NOT_FOUND,
            method,
            "Slot not found",
        );
    };
    if mode == DeliveryMode::Telephone && telephone.is_none() {
        return exception(
            StatusCode::BAD_REQUEST,
            errors::TELEPHONE_REQUIRED,
            method,
            "A telephone number is required for telephone appointments",
        );
    }
    if let Some(limit) = call.emis.config.booking_limit {
        let now = call.emis.world.now();
        let held = call.emis.world.read(|r| {
            r.appointments_of(ods, &call.link.patient)
                .filter(|a| a.status == AppointmentStatus::Booked)
                .filter(|a| r.slot(&a.slot).is_some_and(|s| s.starts_at > now))
                .count()
        });
        if held >= limit {
            return exception(
                StatusCode::BAD_REQUEST,
                errors::BOOKING_LIMIT,
                method,
                "The booked appointment limit has been reached",
            );
        }
    }
    let booked = call.emis.world.book_slot(NewBooking {
        practice: ods.to_string(),
        patient: call.link.patient.clone(),
        slot,
        reason,
        telephone,
    });
    match booked {
        Ok(a) => {
            cx.record_write();
            let v = call.emis.world.read(|r| {
                let slot = r.slot(&a.slot);
                let session = slot.and_then(|s| r.session(&s.session));
                json!({
                    "SlotId": number,
                    "StartTime": slot.map(|s| local(s.starts_at)),
                    "EndTime": slot.map(|s| local(s.ends_at)),
                    "SessionId": session.map(|s| s.number),
                    "AppointmentGuid": guid(&a.id),
                })
            });
            errors::json(StatusCode::CREATED, &v)
        }
        Err(e) => errors::write_error(&e, method),
    }
}

/// `DELETE appointments` with `{UserPatientLinkToken, SlotId, CancellationReason}`.
pub fn cancel(call: &PatientCall, cx: &RequestContext) -> SimResponse {
    let method = "AppointmentsDelete";
    if let Err(r) = call.require(Service::Appointments, method) {
        return r;
    }
    let number = match slot_number(call) {
        Ok(n) => n,
        Err(r) => return r,
    };
    let reason = crate::request::opt_field(&call.body, "CancellationReason");
    let ods = call.ods;
    let patient = &call.link.patient;
    let appointment = call.emis.world.read(|r| {
        let slot = r.slots.iter().find(|s| s.practice == ods && s.number == number)?;
        r.appointments_of(ods, patient)
            .filter(|a| a.slot == slot.id)
            .find(|a| a.status == AppointmentStatus::Booked)
            .or_else(|| r.appointments_of(ods, patient).find(|a| a.slot == slot.id))
            .map(|a| a.id.clone())
    });
    let Some(id) = appointment else {
        return exception(
            StatusCode::BAD_REQUEST,
            errors::APPOINTMENT_NOT_FOUND,
            method,
            "Appointment not found",
        );
    };
    match call.emis.world.cancel_appointment(ods, &id, reason) {
        Ok(_) => {
            cx.record_write();
            ok(&json!({ "CancellationSuccessful": true }))
        }
        Err(e) => errors::write_error(&e, method),
    }
}

/// `GET appointments?FetchPreviousAppointments&PreviousAppointmentsFromDate`.
pub fn appointments(call: &PatientCall) -> SimResponse {
    if let Err(r) = call.require(Service::Appointments, "AppointmentsGet") {
        return r;
    }
    let previous = call
        .query
        .get("FetchPreviousAppointments")
        .is_some_and(|v| v.eq_ignore_ascii_case("true"));
    let from = match call.query.get("PreviousAppointmentsFromDate") {
        Some(s) => match dates::parse_instant(s) {
            Some(t) => Some(t),
            None => {
                return model_state(
                    "PreviousAppointmentsFromDate",
                    "The PreviousAppointmentsFromDate field is not a valid date.",
                )
            }
        },
        None => None,
    };
    let now = call.emis.world.now();
    let ods = call.ods;
    let v = call.emis.world.read(|r| {
        let list: Vec<Value> = r
            .appointments_of(ods, &call.link.patient)
            .filter_map(|a| {
                let slot = r.slot(&a.slot)?;
                let future = slot.starts_at > now;
                let wanted = future || (previous && from.is_none_or(|f| slot.starts_at >= f));
                if !wanted {
                    return None;
                }
                appointment_json(r, ods, a)
            })
            .collect();
        json!({ "Appointments": list })
    });
    ok(&v)
}

/// One appointment in the `appointments` list shape (PFS, and the Partner list **(invented)**).
pub(crate) fn appointment_json(r: &Record, ods: &str, a: &im1_sim::record::Appointment) -> Option<Value> {
    let slot = r.slot(&a.slot)?;
    let session = r.session(&slot.session)?;
    Some(json!({
        "AppointmentGuid": guid(&a.id),
        "SlotId": slot.number,
        "SessionId": session.number,
        "StartTime": local(slot.starts_at),
        "EndTime": local(slot.ends_at),
        "SlotTypeName": slot.kind,
        "SessionName": session.name,
        "Location": session.location,
        "LocationId": location_id(r, ods, &session.location),
        "DeliveryMode": delivery(session.delivery),
        "ClinicianIds": [user_in_role(r, ods, &session.practitioner)],
        "ClinicianName": r.practitioner(&session.practitioner).map(|p| p.name.display()),
        "BookingReason": a.reason,
        "TelephoneNumber": a.telephone,
        "TelephoneContactType": a.telephone.as_ref().map(|_| "Other"),
        "Status": format!("{:?}", a.status),
        "CancellationReason": a.cancellation_reason,
        "BookedDateTime": with_offset(a.booked_at),
    }))
}
