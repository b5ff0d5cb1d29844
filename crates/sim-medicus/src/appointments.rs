//! Bookable services, available appointments (slots), the patient's appointments, book and cancel.

use crate::errors::ApiError;
use crate::paging;
use crate::style::{datetime, nid, parse_date};
use im1_sim::record::{
    native_id, Appointment, AppointmentStatus, DeliveryMode, Nid, Record, Session, Slot, Supplier, WriteError,
};
use serde_json::{json, Value};
use time::{Date, Duration, OffsetDateTime};

/// Services are the session names of the practice; their ids are derived from the name.
pub(crate) fn service_id(ods: &str, name: &str) -> String {
    native_id(Supplier::Medicus, &Nid(format!("{ods}-SVC-{name}")))
}

pub(crate) fn delivery(d: DeliveryMode) -> &'static str {
    match d {
        DeliveryMode::InPerson => "in-person",
        DeliveryMode::Telephone => "telephone",
        DeliveryMode::Video => "video",
    }
}

/// `GET .../bookable-services`.
pub fn services(r: &Record, ods: &str) -> Value {
    let mut out: Vec<(String, Vec<&'static str>)> = Vec::new();
    for s in r.sessions_at(ods) {
        let mode = delivery(s.delivery);
        match out.iter_mut().find(|(n, _)| *n == s.name) {
            Some((_, modes)) if !modes.contains(&mode) => modes.push(mode),
            Some(_) => {}
            None => out.push((s.name.clone(), vec![mode])),
        }
    }
    let list: Vec<Value> = out
        .into_iter()
        .map(|(name, modes)| json!({"id": service_id(ods, &name), "name": name, "deliveryModes": modes}))
        .collect();
    json!({ "services": list })
}

/// The 72-character available appointment id: `timed-<slot uuid>-<start>-<end>`.
pub fn available_id(slot: &Slot) -> String {
    let stamp = |t: OffsetDateTime| {
        format!(
            "{:04}{:02}{:02}{:02}{:02}{:02}",
            t.year(),
            u8::from(t.month()),
            t.day(),
            t.hour(),
            t.minute(),
            t.second()
        )
    };
    format!(
        "timed-{}-{}-{}",
        nid(&slot.id),
        stamp(slot.starts_at),
        stamp(slot.ends_at)
    )
}

pub(crate) fn practitioner_ref(r: &Record, id: &Nid) -> Value {
    r.practitioner(id)
        .map(|p| json!({"id": nid(&p.id), "name": p.name.display()}))
        .unwrap_or(Value::Null)
}

/// Slot fields shared by available appointments and booked ones.
pub(crate) fn slot_fields(r: &Record, ods: &str, slot: &Slot, session: Option<&Session>) -> Value {
    let minutes = (slot.ends_at - slot.starts_at).whole_minutes();
    let mut v = json!({
        "startDateTime": datetime(slot.starts_at),
        "endDateTime": datetime(slot.ends_at),
        "duration": minutes,
        "slotType": slot.kind,
    });
    if let Some(s) = session {
        v["service"] = json!({"id": service_id(ods, &s.name), "name": s.name});
        v["deliveryMode"] = json!({ "type": delivery(s.delivery) });
        v["location"] = json!({ "name": s.location });
        v["practitioners"] = json!([practitioner_ref(r, &s.practitioner)]);
        v["session"] = json!({"id": nid(&s.id), "name": s.name,
            "startDateTime": datetime(s.starts_at), "endDateTime": datetime(s.ends_at)});
    }
    v
}

/// Query of `available-appointments`.
pub struct SlotQuery<'a> {
    pub service_id: Option<&'a str>,
    pub from: Option<&'a str>,
    pub until: Option<&'a str>,
    pub cursor: Option<&'a str>,
    pub limit: Option<&'a str>,
}

fn date_range(
    from: Option<&str>,
    until: Option<&str>,
    default_from: Date,
    default_days: i64,
) -> Result<(Date, Date), ApiError> {
    let f = match from {
        Some(s) => parse_date(s).ok_or_else(|| ApiError::invalid_date("fromDate"))?,
        None => default_from,
    };
    let u = match until {
        Some(s) => parse_date(s).ok_or_else(|| ApiError::invalid_date("untilDate"))?,
        None => f + Duration::days(default_days),
    };
    if f > u {
        return Err(ApiError::new(
            400,
            "INVALID_DATE_RANGE",
            "Invalid date range",
            "fromDate must not be after untilDate.",
        ));
    }
    Ok((f, u))
}

/// `GET .../available-appointments`: free slots in `[fromDate, untilDate]` (default: 14 days from today).
pub fn available(r: &Record, ods: &str, now: OffsetDateTime, q: &SlotQuery<'_>) -> Result<Value, ApiError> {
    let (f, u) = date_range(q.from, q.until, now.date(), 14)?;
    let limit = paging::limit(q.limit, 100, 500)?;
    let start = paging::decode("slots", q.cursor)? as usize;
    let from = f.midnight().assume_utc();
    let to = (u + Duration::days(1)).midnight().assume_utc();
    let all: Vec<Value> = r
        .free_slots_between(ods, now, from, to)
        .filter_map(|slot| {
            let session = r.session(&slot.session);
            if let Some(want) = q.service_id {
                if session.is_none_or(|s| service_id(ods, &s.name) != want) {
                    return None;
                }
            }
            let mut v = json!({ "id": available_id(slot) });
            if let (Value::Object(dst), Value::Object(src)) = (&mut v, slot_fields(r, ods, slot, session)) {
                dst.extend(src);
            }
            Some(v)
        })
        .collect();
    let total = all.len();
    let end = (start + limit).min(total);
    let page: Vec<Value> = all.into_iter().skip(start).take(limit).collect();
    let next = (end < total).then(|| paging::encode("slots", end as u64));
    Ok(json!({"timed": page, "nextCursor": next}))
}

fn status(s: AppointmentStatus) -> &'static str {
    match s {
        AppointmentStatus::Booked => "pending",
        AppointmentStatus::Cancelled => "cancelled",
        AppointmentStatus::Attended => "seen",
        AppointmentStatus::DidNotAttend => "did-not-attend",
    }
}

pub(crate) fn appointment(r: &Record, ods: &str, a: &Appointment) -> Value {
    let slot = r.slot(&a.slot);
    let mut v = json!({
        "id": nid(&a.id),
        "type": "timed",
        "status": status(a.status),
        "patientSuppliedInformationForClinician": a.reason,
    });
    if let Some(slot) = slot {
        let fields = slot_fields(r, ods, slot, r.session(&slot.session));
        if let (Value::Object(dst), Value::Object(src)) = (&mut v, fields) {
            dst.extend(src);
        }
        v["availableAppointmentId"] = json!(available_id(slot));
    }
    v["telephoneNumber"] = json!(a.telephone);
    v["bookedDateTime"] = json!(datetime(a.booked_at));
    v["cancellationReason"] = json!(a.cancellation_reason);
    v
}

/// `GET .../appointments?fromDate&untilDate`: the patient's appointments, all statuses, by start time.
pub fn list(r: &Record, ods: &str, patient: &Nid, from: Option<&str>, until: Option<&str>) -> Result<Value, ApiError> {
    let (f, u) = date_range(from, until, Date::MIN, 0)?;
    let until_day = if until.is_some() { Some(u) } else { None };
    let from_day = if from.is_some() { Some(f) } else { None };
    let mut list: Vec<(OffsetDateTime, Value)> = r
        .appointments_of(ods, patient)
        .filter_map(|a| {
            let start = r.slot(&a.slot).map(|s| s.starts_at)?;
            let d = start.date();
            (from_day.is_none_or(|f| d >= f) && until_day.is_none_or(|u| d <= u))
                .then(|| (start, appointment(r, ods, a)))
        })
        .collect();
    list.sort_by_key(|a| a.0);
    let timed: Vec<Value> = list.into_iter().map(|(_, v)| v).collect();
    Ok(json!({ "timed": timed }))
}

/// The slot's Medicus uuid inside an available appointment id.
pub fn slot_uuid(id: &str) -> Option<&str> {
    let rest = id.strip_prefix("timed-")?;
    (rest.len() == 66 && rest.is_char_boundary(36)).then(|| &rest[..36])
}

/// Check an available appointment id against the slot it names.
pub fn slot_matches(slot: &Slot, id: &str) -> bool {
    available_id(slot) == id
}

/// Map the world's booking and cancelling refusals to the dialect's codes.
pub fn write_error(e: WriteError) -> ApiError {
    match e {
        WriteError::SlotNotFound => ApiError::new(
            404,
            "APPOINTMENT_NOT_FOUND",
            "Appointment not found",
            "No available appointment has this id.",
        ),
        WriteError::SlotTaken => ApiError::new(
            409,
            "APPOINTMENT_ALREADY_BOOKED",
            "Appointment already booked",
            "The appointment has already been booked.",
        ),
        WriteError::SlotInPast | WriteError::AppointmentInPast => ApiError::new(
            403,
            "APPOINTMENT_IN_THE_PAST",
            "Appointment in the past",
            "Past appointments cannot be booked or cancelled.",
        ),
        // Confirmed (medicus.md A7): cancelling an appointment the patient was seen at.
        WriteError::AppointmentSeen => ApiError::new(
            403,
            "APPOINTMENT_MARKED_AS_SEEN",
            "Appointment marked as seen",
            "An appointment marked as seen cannot be cancelled.",
        ),
        WriteError::AppointmentNotFound => ApiError::new(
            404,
            "APPOINTMENT_NOT_FOUND",
            "Appointment not found",
            "The patient has no appointment with this id.",
        ),
        WriteError::AlreadyCancelled => ApiError::new(
            403,
            "APPOINTMENT_ALREADY_CANCELLED",
            "Appointment already cancelled",
            "The appointment has already been cancelled.",
        ),
        WriteError::ServiceDisabled(_) => ApiError::service_disabled("Appointment management"),
        other => crate::writes::write_error(other),
    }
}
