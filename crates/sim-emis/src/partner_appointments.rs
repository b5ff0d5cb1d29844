//! The Partner surface's appointment book **(invented)**: sessions, every slot (free, booked or past, with its
//! status) and a patient's appointments, for clinicians and systems. EMIS Partner publishes no such calls; the
//! shapes follow the PFS ones (`booking`), flattened so that each slot carries its session's fields.
//!
//! - `GET appointmentsessions?fromDate=&toDate=&sessionId=` → `{"Sessions":[...]}`
//! - `GET appointmentslots?fromDate=&toDate=&sessionId=` → `{"Slots":[...]}`
//! - `GET appointmentslots/{SlotId}` → one slot
//! - `GET patients/{PatientGuid}/appointments` → `{"Appointments":[...]}` (past ones too)
//!
//! Windows: `fromDate` and `toDate` are inclusive days (a date-time counts for its day); by default the 14
//! days from today, or the 14 days ending at `toDate`, or from `fromDate`. A session or slot belongs to the
//! day it starts on (UK).

use crate::booking::{appointment_json, delivery, session_json};
use crate::dates::{local, parse_day};
use crate::errors::{message, model_state, ok};
use crate::request::Query;
use crate::routes::Emis;
use http::{Method, StatusCode};
use im1_sim::common::{SimRequest, SimResponse};
use im1_sim::record::dates::uk_offset_at;
use im1_sim::record::{Nid, Record, Session, Slot, Supplier};
use serde_json::{json, Value};
use time::{Date, Duration, OffsetDateTime};

/// Days in a window when one end (or both) is not given.
const DEFAULT_DAYS: i64 = 14;

/// Handles the invented appointment routes; `None` for any other path (the caller carries on routing).
pub fn handle(e: &Emis, req: &SimRequest, path: &str) -> Option<SimResponse> {
    if req.method() != Method::GET {
        return None;
    }
    match path {
        "appointmentsessions" => Some(sessions(e, req)),
        "appointmentslots" => Some(slots(e, req)),
        _ => {
            if let Some(number) = path.strip_prefix("appointmentslots/") {
                return Some(one_slot(e, number));
            }
            let guid = path.strip_prefix("patients/")?.strip_suffix("/appointments")?;
            Some(appointments(e, guid))
        }
    }
}

/// The UK day an instant falls on.
fn uk_day(t: OffsetDateTime) -> Date {
    t.to_offset(uk_offset_at(t)).date()
}

/// `(first day, last day, sessionId)` of a request.
fn window(e: &Emis, req: &SimRequest) -> Result<(Date, Date, Option<u32>), SimResponse> {
    let q = Query::of(req);
    let day = |name: &str| -> Result<Option<Date>, SimResponse> {
        match q.get(name) {
            None | Some("") => Ok(None),
            Some(v) => parse_day(v)
                .map(Some)
                .ok_or_else(|| model_state(name, &format!("The {name} field is not a valid date."))),
        }
    };
    let (from, to) = (day("fromDate")?, day("toDate")?);
    let span = Duration::days(DEFAULT_DAYS - 1);
    let (from, to) = match (from, to) {
        (Some(f), Some(t)) => (f, t),
        (Some(f), None) => (f, f + span),
        (None, Some(t)) => (t - span, t),
        (None, None) => {
            let today = uk_day(e.world.now());
            (today, today + span)
        }
    };
    if to < from {
        return Err(model_state("toDate", "toDate must not be before fromDate."));
    }
    let session = match q.get("sessionId") {
        None | Some("") => None,
        Some(v) => Some(
            v.parse()
                .map_err(|_| model_state("sessionId", "The sessionId field is not valid."))?,
        ),
    };
    Ok((from, to, session))
}

fn session_wanted(s: &Session, from: Date, to: Date, number: Option<u32>) -> bool {
    match number {
        // A session asked for by id is returned whatever its day.
        Some(n) => s.number == n,
        None => (from..=to).contains(&uk_day(s.starts_at)),
    }
}

fn sessions(e: &Emis, req: &SimRequest) -> SimResponse {
    let (from, to, number) = match window(e, req) {
        Ok(w) => w,
        Err(r) => return r,
    };
    let ods = &e.config.practice_ods;
    let v = e.world.read(|r| {
        let list: Vec<Value> = r
            .sessions_at(ods)
            .filter(|s| session_wanted(s, from, to, number))
            .map(|s| {
                let mut v = session_json(r, ods, s);
                v["Location"] = json!(s.location);
                v["ClinicianName"] = json!(r.practitioner(&s.practitioner).map(|p| p.name.display()));
                v
            })
            .collect();
        json!({ "Sessions": list })
    });
    ok(&v)
}

/// `Available` (free: unbooked and in the future), `Booked` (held by an appointment), `Unavailable` (past and
/// never booked).
fn slot_status(s: &Slot, now: OffsetDateTime) -> &'static str {
    match (&s.appointment, s.starts_at > now) {
        (Some(_), _) => "Booked",
        (None, true) => "Available",
        (None, false) => "Unavailable",
    }
}

fn slot_json(r: &Record, s: &Slot, now: OffsetDateTime) -> Option<Value> {
    let session = r.session(&s.session)?;
    Some(json!({
        "SlotId": s.number,
        "SessionId": session.number,
        "SessionName": session.name,
        "StartTime": local(s.starts_at),
        "EndTime": local(s.ends_at),
        "SlotTypeName": s.kind,
        "SlotTypeStatus": "Bookable",
        "SlotStatus": slot_status(s, now),
        "DeliveryMode": delivery(session.delivery),
    }))
}

fn slots(e: &Emis, req: &SimRequest) -> SimResponse {
    let (from, to, number) = match window(e, req) {
        Ok(w) => w,
        Err(r) => return r,
    };
    let ods = &e.config.practice_ods;
    let now = e.world.now();
    let v = e.world.read(|r| {
        let mut list: Vec<&Slot> = r
            .slots
            .iter()
            .filter(|s| s.practice == *ods)
            .filter(|s| {
                r.session(&s.session)
                    .is_some_and(|x| session_wanted(x, from, to, number))
            })
            .collect();
        list.sort_by_key(|s| (s.starts_at, s.number));
        let list: Vec<Value> = list.into_iter().filter_map(|s| slot_json(r, s, now)).collect();
        json!({ "Slots": list })
    });
    ok(&v)
}

fn one_slot(e: &Emis, number: &str) -> SimResponse {
    let Ok(number) = number.parse::<u32>() else {
        return model_state("SlotId", "The SlotId field is not valid.");
    };
    let ods = &e.config.practice_ods;
    let now = e.world.now();
    let v = e.world.read(|r| {
        r.slots
            .iter()
            .find(|s| s.practice == *ods && s.number == number)
            .and_then(|s| slot_json(r, s, now))
    });
    v.map_or_else(|| message(StatusCode::NOT_FOUND, "Slot not found"), |v| ok(&v))
}

fn appointments(e: &Emis, guid: &str) -> SimResponse {
    let ods = &e.config.practice_ods;
    let patient: Option<Nid> = e
        .world
        .resolve(Supplier::Emis, &guid.to_ascii_uppercase())
        .filter(|nid| {
            e.world
                .read(|r| r.patient(nid).is_some_and(|p| p.registration(ods).is_some()))
        });
    let Some(patient) = patient else {
        return message(StatusCode::NOT_FOUND, "Patient not found");
    };
    let v = e.world.read(|r| {
        let mut list: Vec<(OffsetDateTime, Value)> = r
            .appointments_of(ods, &patient)
            .filter_map(|a| Some((r.slot(&a.slot)?.starts_at, appointment_json(r, ods, a)?)))
            .collect();
        list.sort_by_key(|a| a.0);
        json!({ "Appointments": list.into_iter().map(|(_, v)| v).collect::<Vec<_>>() })
    });
    ok(&v)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::EmisConfig;
    use im1_sim::SimOptions;

    fn emis() -> Emis {
        let world = SimOptions {
            seed: 1,
            patients: 6,
            throttle: false,
            today: Some(time::macros::date!(2026 - 03 - 02)),
        }
        .world();
        Emis::new(world, EmisConfig::default())
    }

    fn get(e: &Emis, path: &str) -> (StatusCode, Value) {
        let req = http::Request::builder()
            .method(Method::GET)
            .uri(format!("http://sim/emis/partner/v1/{path}"))
            .body(bytes::Bytes::new())
            .unwrap();
        let path = path.split('?').next().unwrap();
        let reply = handle(e, &req, path).expect("routed");
        let status = reply.status();
        let body = serde_json::from_slice(reply.body()).unwrap_or(Value::Null);
        (status, body)
    }

    #[test]
    fn sessions_slots_and_appointments_cover_the_book() {
        let e = emis();
        let (status, sessions) = get(&e, "appointmentsessions?fromDate=2026-03-02&toDate=2026-03-06");
        assert_eq!(status, StatusCode::OK);
        let sessions = sessions["Sessions"].as_array().unwrap().clone();
        assert!(!sessions.is_empty());
        assert!(sessions.iter().all(|s| s["Location"].is_string()));
        let (_, slots) = get(&e, "appointmentslots?fromDate=2026-02-16&toDate=2026-03-06");
        let slots = slots["Slots"].as_array().unwrap();
        for status in ["Available", "Booked", "Unavailable"] {
            assert!(slots.iter().any(|s| s["SlotStatus"] == status), "no {status} slot");
        }
        let number = slots[0]["SlotId"].as_u64().unwrap();
        let (status, one) = get(&e, &format!("appointmentslots/{number}"));
        assert_eq!(status, StatusCode::OK);
        assert_eq!(one, slots[0]);
        let session = sessions[0]["SessionId"].as_u64().unwrap();
        let (_, of_session) = get(&e, &format!("appointmentslots?sessionId={session}"));
        assert!(of_session["Slots"]
            .as_array()
            .unwrap()
            .iter()
            .all(|s| s["SessionId"] == session));
        let (status, _) = get(&e, "appointmentslots?fromDate=nonsense");
        assert_eq!(status, StatusCode::BAD_REQUEST);
        // The first patient always has a past and a future appointment.
        let guid = e.world.read(|r| crate::render::guid(&r.patients[0].id));
        let (status, list) = get(&e, &format!("patients/{guid}/appointments"));
        assert_eq!(status, StatusCode::OK);
        let statuses: Vec<&str> = list["Appointments"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|a| a["Status"].as_str())
            .collect();
        assert!(statuses.contains(&"Booked") && statuses.len() >= 2, "{statuses:?}");
        assert_eq!(
            get(&e, "patients/00000000-0000-0000-0000-000000000000/appointments").0,
            StatusCode::NOT_FOUND
        );
    }
}
