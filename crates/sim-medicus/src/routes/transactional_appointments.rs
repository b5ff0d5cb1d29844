//! The Transactional API's appointment book **[invented]**: sessions, every slot (free, booked or past, with
//! its status), one slot by its available-appointment id, and a patient's appointments, for clinicians and
//! systems. The shapes are the patient facing ones (`appointments`).
//!
//! - `GET v1/appointment-sessions?fromDate=&untilDate=&sessionId=` → `{"sessions": [...]}`
//! - `GET v1/appointment-slots?fromDate=&untilDate=&sessionId=&cursor=&limit=` → `{"timed": [...], "nextCursor"}`
//! - `GET v1/appointment-slots/{availableAppointmentId}` → one slot
//! - `GET v1/patient/{patientId}/appointments?fromDate=&untilDate=` → `{"timed": [...]}` as PFS
//!
//! Dates are inclusive days; by default the 14 days from today, or the 14 days ending at `untilDate`, or from
//! `fromDate`. `sessionId` alone names one session whatever its day.

use super::{ok, Call, Medicus, Reply};
use crate::appointments::{self as book, available_id, delivery, practitioner_ref, service_id, slot_fields};
use crate::errors::ApiError;
use crate::paging;
use crate::style::{datetime, nid, parse_date};
use http::Method;
use im1_sim::record::{Record, Session, Slot, Supplier};
use serde_json::{json, Value};
use time::{Date, Duration, OffsetDateTime};

/// Days in a window when one end (or both) is not given.
const DEFAULT_DAYS: i64 = 14;

struct BookQuery {
    from: Date,
    until: Date,
    session: Option<String>,
}

impl BookQuery {
    fn parse(call: &Call<'_>, today: Date) -> Result<BookQuery, ApiError> {
        let day = |name: &str| -> Result<Option<Date>, ApiError> {
            match call.q(name).filter(|v| !v.is_empty()) {
                None => Ok(None),
                Some(v) => parse_date(v).map(Some).ok_or_else(|| ApiError::invalid_date(name)),
            }
        };
        let span = Duration::days(DEFAULT_DAYS - 1);
        let (from, until) = match (day("fromDate")?, day("untilDate")?) {
            (Some(f), Some(u)) => (f, u),
            (Some(f), None) => (f, f + span),
            (None, Some(u)) => (u - span, u),
            (None, None) => (today, today + span),
        };
        if from > until {
            return Err(ApiError::new(
                400,
                "INVALID_DATE_RANGE",
                "Invalid date range",
                "fromDate must not be after untilDate.",
            ));
        }
        let session = call.q("sessionId").filter(|v| !v.is_empty()).map(str::to_string);
        Ok(BookQuery { from, until, session })
    }

    fn wants(&self, s: &Session) -> bool {
        match &self.session {
            Some(id) => nid(&s.id) == *id,
            None => (self.from..=self.until).contains(&s.starts_at.date()),
        }
    }
}

/// `available` (unbooked, starting after now), `booked` (held by an appointment), `unavailable` (past and
/// never booked).
fn slot_status(s: &Slot, now: OffsetDateTime) -> &'static str {
    match (&s.appointment, s.starts_at > now) {
        (Some(_), _) => "booked",
        (None, true) => "available",
        (None, false) => "unavailable",
    }
}

fn slot_json(r: &Record, ods: &str, s: &Slot, now: OffsetDateTime) -> Value {
    let mut v = json!({ "id": available_id(s), "status": slot_status(s, now) });
    if let (Value::Object(dst), Value::Object(src)) = (&mut v, slot_fields(r, ods, s, r.session(&s.session))) {
        dst.extend(src);
    }
    v
}

fn session_json(r: &Record, ods: &str, s: &Session) -> Value {
    json!({
        "id": nid(&s.id),
        "name": s.name,
        "startDateTime": datetime(s.starts_at),
        "endDateTime": datetime(s.ends_at),
        "service": {"id": service_id(ods, &s.name), "name": s.name},
        "deliveryMode": {"type": delivery(s.delivery)},
        "location": {"name": s.location},
        "practitioners": [practitioner_ref(r, &s.practitioner)],
    })
}

impl Medicus {
    /// The invented appointment-book calls; `None` for any other request (routing carries on).
    pub(super) fn transactional_appointments(&self, call: &Call<'_>) -> Option<Reply> {
        if call.method != Method::GET {
            return None;
        }
        let ods = self.ods();
        let now = self.world.now();
        Some(match call.rest.as_slice() {
            ["appointment-sessions"] => BookQuery::parse(call, now.date()).and_then(|q| {
                self.world.read(|r| {
                    let list: Vec<Value> = r
                        .sessions_at(ods)
                        .filter(|s| q.wants(s))
                        .map(|s| session_json(r, ods, s))
                        .collect();
                    ok(json!({ "sessions": list }))
                })
            }),
            ["appointment-slots"] => BookQuery::parse(call, now.date()).and_then(|q| {
                let limit = paging::limit(call.q("limit"), 100, 500)?;
                let start = paging::decode("book-slots", call.q("cursor"))? as usize;
                self.world.read(|r| {
                    let mut list: Vec<&Slot> = r
                        .slots
                        .iter()
                        .filter(|s| s.practice == ods)
                        .filter(|s| r.session(&s.session).is_some_and(|x| q.wants(x)))
                        .collect();
                    list.sort_by_key(|s| (s.starts_at, s.number));
                    let total = list.len();
                    let end = (start + limit).min(total);
                    let page: Vec<Value> = list
                        .into_iter()
                        .skip(start)
                        .take(limit)
                        .map(|s| slot_json(r, ods, s, now))
                        .collect();
                    let next = (end < total).then(|| paging::encode("book-slots", end as u64));
                    ok(json!({ "timed": page, "nextCursor": next }))
                })
            }),
            ["appointment-slots", id] => {
                let found = book::slot_uuid(id).and_then(|uuid| self.world.resolve(Supplier::Medicus, uuid));
                self.world.read(|r| {
                    found
                        .and_then(|nid| r.slot(&nid))
                        .filter(|s| s.practice == ods && book::slot_matches(s, id))
                        .map(|s| ok(slot_json(r, ods, s, now)))
                        .unwrap_or_else(|| Err(book::write_error(im1_sim::record::WriteError::SlotNotFound)))
                })
            }
            ["patient", pid, "appointments"] => {
                let Some(patient) = self.world.resolve(Supplier::Medicus, pid) else {
                    return Some(Err(ApiError::patient_not_found()));
                };
                let registered = self
                    .world
                    .read(|r| r.patient(&patient).is_some_and(|p| p.registration(ods).is_some()));
                if !registered {
                    return Some(Err(ApiError::patient_not_found()));
                }
                self.world
                    .read(|r| book::list(r, ods, &patient, call.q("fromDate"), call.q("untilDate")))
                    .and_then(ok)
            }
            _ => return None,
        })
    }
}
