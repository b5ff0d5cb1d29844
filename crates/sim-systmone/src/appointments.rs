//! Slots, booking, cancelling and the appointment list, shared by both surfaces. A booking names a session
//! and a time range, not a slot id (confirmed), so the slot is found from those three.

use crate::dates::{instant, parse_instant};
use crate::errors::TppError;
use crate::render::View;
use crate::xml::El;
use im1_sim::record::*;
use time::{Date, Duration};

/// Longest `ListSlots` window in days (Error 4 above it).
pub const MAX_DAYS: i64 = 14;
/// Most future booked appointments a patient may hold (Error 7 at the limit).
pub const APPOINTMENT_LIMIT: usize = 10;

/// `ListSlots`: free slots from `startDate` for `numberOfDays`, grouped in their `Session`s.
pub fn list_slots(
    world: &World,
    view: &View<'_>,
    ods: &str,
    start: Option<&str>,
    days: Option<&str>,
    root: El,
) -> Result<El, TppError> {
    let start = start
        .and_then(parse_instant)
        .ok_or_else(|| TppError::invalid("startDate missing or not a date-time"))?;
    let days: i64 = days
        .unwrap_or("1")
        .parse()
        .map_err(|_| TppError::invalid("numberOfDays is not a number"))?;
    if days < 1 {
        return Err(TppError::invalid("numberOfDays must be at least 1"));
    }
    if days > MAX_DAYS {
        return Err(TppError::new(
            4,
            "Please choose a shorter date range",
            format!("numberOfDays above {MAX_DAYS}"),
        ));
    }
    let now = world.now();
    if start.date() < now.date() {
        return Err(TppError::new(
            5,
            "The start date is in the past",
            "startDate in the past",
        ));
    }
    let end = start + Duration::days(days);
    let mut sessions: Vec<(&Nid, El)> = Vec::new();
    for slot in view.record.free_slots_between(ods, now, start, end) {
        let at = match sessions.iter().position(|(id, _)| *id == &slot.session) {
            Some(i) => i,
            None => {
                let Some(s) = view.record.session(&slot.session) else {
                    continue;
                };
                sessions.push((&slot.session, view.session(s)));
                sessions.len() - 1
            }
        };
        sessions[at].1.push(view.slot(slot));
    }
    Ok(root.children(sessions.into_iter().map(|(_, el)| el)))
}

/// A booking request as both surfaces send it.
pub struct Booking<'a> {
    pub session_id: Option<&'a str>,
    pub start: Option<&'a str>,
    pub end: Option<&'a str>,
    pub notes: Option<&'a str>,
    pub telephone: Option<&'a str>,
}

impl<'a> Booking<'a> {
    /// The booking attributes of a request (`sessionId startDate endDate notes telephone`), either surface.
    pub fn from_node(n: &'a crate::xml::Node) -> Booking<'a> {
        Booking {
            session_id: n.attr("sessionId"),
            start: n.attr("startDate"),
            end: n.attr("endDate"),
            notes: n.attr("notes"),
            telephone: n.attr("telephone"),
        }
    }
}

/// `BookAppointment`: find the slot by session and times, apply the dialect's rules, then book.
pub fn book(world: &World, ods: &str, patient: &Nid, b: &Booking<'_>) -> Result<Appointment, TppError> {
    let number: u32 = b
        .session_id
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| TppError::invalid("sessionId missing or not a number"))?;
    let start = b
        .start
        .and_then(parse_instant)
        .ok_or_else(|| TppError::invalid("startDate missing or not a date-time"))?;
    let end = b
        .end
        .and_then(parse_instant)
        .ok_or_else(|| TppError::invalid("endDate missing or not a date-time"))?;
    let now = world.now();
    let slot = world.read(|r| {
        let session = r.sessions_at(ods).find(|s| s.number == number)?;
        r.slots
            .iter()
            .find(|s| s.practice == ods && s.session == session.id && s.starts_at == start && s.ends_at == end)
            .map(|s| (s.id.clone(), s.appointment.is_some(), s.starts_at))
    });
    let Some((slot_id, taken, starts)) = slot else {
        return Err(TppError::new(
            1102,
            "That appointment could not be found",
            "slot not found",
        ));
    };
    if taken {
        return Err(TppError::new(
            1103,
            "That appointment is no longer available",
            "slot booked",
        ));
    }
    if starts <= now {
        return Err(TppError::new(5, "That appointment is in the past", "slot in the past"));
    }
    if starts - now < Duration::hours(1) {
        return Err(TppError::new(
            40,
            "Appointments within the next hour cannot be booked online",
            "appointment within one hour",
        ));
    }
    let held = world.read(|r| {
        r.appointments_of(ods, patient)
            .filter(|a| a.status == AppointmentStatus::Booked)
            .filter(|a| r.slot(&a.slot).is_some_and(|s| s.starts_at > now))
            .count()
    });
    if held >= APPOINTMENT_LIMIT {
        return Err(TppError::new(
            7,
            "You have reached your appointment limit",
            "appointment limit reached",
        ));
    }
    world
        .book_slot(NewBooking {
            practice: ods.to_string(),
            patient: patient.clone(),
            slot: slot_id,
            reason: b.notes.filter(|n| !n.is_empty()).map(str::to_string),
            telephone: b.telephone.filter(|n| !n.is_empty()).map(str::to_string),
        })
        .map_err(TppError::from)
}

/// `CancelAppointment` by `apptId`; only the patient's own appointments.
pub fn cancel(
    world: &World,
    ods: &str,
    patient: &Nid,
    appt_id: Option<&str>,
    reason: Option<&str>,
) -> Result<Appointment, TppError> {
    let not_found = || TppError::new(1104, "That appointment could not be found", "appointment not found");
    let appt_id = appt_id.ok_or_else(|| TppError::invalid("apptId missing"))?;
    let nid = world.resolve(Supplier::SystmOne, appt_id).ok_or_else(not_found)?;
    let own = world.read(|r| r.appointments_of(ods, patient).any(|a| a.id == nid));
    if !own {
        return Err(not_found());
    }
    world
        .cancel_appointment(ods, &nid, reason.map(str::to_string))
        .map_err(TppError::from)
}

/// `ViewAppointments`: every appointment of the patient at the unit (all statuses), by start time.
pub fn appointments(view: &View<'_>, ods: &str, patient: &Nid, root: El) -> El {
    let mut list: Vec<&Appointment> = view.record.appointments_of(ods, patient).collect();
    let start = |a: &Appointment| view.record.slot(&a.slot).map(|s| s.starts_at);
    list.sort_by(|a, b| start(a).cmp(&start(b)).then_with(|| a.id.cmp(&b.id)));
    root.children(list.into_iter().map(|a| view.appointment(a)))
}

/// The reply attributes of a booking.
pub fn booked(root: El, a: &Appointment, view: &View<'_>) -> El {
    let slot = view.record.slot(&a.slot);
    root.attr("apptId", crate::render::tid(&a.id))
        .opt("startDate", slot.map(|s| instant(s.starts_at)))
        .opt("endDate", slot.map(|s| instant(s.ends_at)))
}

/// The window and session filter of `GetSessions` / `GetSlots` (**invented**, Client Integration): `startDate`
/// and `endDate` are inclusive days (any RFC 3339 date-time or `yyyy-MM-dd`; the day is UTC, which is also the
/// UK day of every session); by default the 14 days from today, or the 14 days ending at `endDate`, or from
/// `startDate`. `sessionId` alone names one session whatever its day.
pub struct BookQuery {
    from: Date,
    to: Date,
    session: Option<u32>,
}

/// Days in a window when one end (or both) is not given.
const DEFAULT_DAYS: i64 = 14;

impl BookQuery {
    pub fn parse(
        world: &World,
        start: Option<&str>,
        end: Option<&str>,
        session: Option<&str>,
    ) -> Result<BookQuery, TppError> {
        let day = |v: Option<&str>, name: &str| -> Result<Option<Date>, TppError> {
            match v.map(str::trim).filter(|v| !v.is_empty()) {
                None => Ok(None),
                Some(v) if v.len() == 10 => parse_instant(&format!("{v}T00:00:00Z"))
                    .map(|t| Some(t.date()))
                    .ok_or_else(|| TppError::invalid(format!("{name} is not a date"))),
                Some(v) => parse_instant(v)
                    .map(|t| Some(t.to_offset(time::UtcOffset::UTC).date()))
                    .ok_or_else(|| TppError::invalid(format!("{name} is not a date"))),
            }
        };
        let span = Duration::days(DEFAULT_DAYS - 1);
        let (from, to) = match (day(start, "startDate")?, day(end, "endDate")?) {
            (Some(f), Some(t)) => (f, t),
            (Some(f), None) => (f, f + span),
            (None, Some(t)) => (t - span, t),
            (None, None) => {
                let today = world.now().date();
                (today, today + span)
            }
        };
        if to < from {
            return Err(TppError::invalid("endDate before startDate"));
        }
        let session = match session.filter(|s| !s.is_empty()) {
            None => None,
            Some(s) => Some(s.parse().map_err(|_| TppError::invalid("sessionId is not a number"))?),
        };
        Ok(BookQuery { from, to, session })
    }

    fn wants(&self, s: &Session) -> bool {
        match self.session {
            Some(n) => s.number == n,
            None => (self.from..=self.to).contains(&s.starts_at.to_offset(time::UtcOffset::UTC).date()),
        }
    }
}

/// `GetSessions` (**invented**): the unit's sessions, as `Session` elements of §3.3 without slots.
pub fn sessions(view: &View<'_>, ods: &str, q: &BookQuery, root: El) -> El {
    root.children(
        view.record
            .sessions_at(ods)
            .filter(|s| q.wants(s))
            .map(|s| view.session(s)),
    )
}

/// `GetSlots` (**invented**): every slot of the sessions wanted, free or not, in time order, each carrying its
/// session's `sessionId`, `sessionType` and `deliveryMode` and a `status`: `Available` (unbooked, starting
/// after now), `Booked` (held by an appointment) or `Unavailable` (past and never booked).
pub fn slots(world: &World, view: &View<'_>, ods: &str, q: &BookQuery, root: El) -> El {
    let now = world.now();
    let mut list: Vec<(&Slot, &Session)> = view
        .record
        .slots
        .iter()
        .filter(|s| s.practice == ods)
        .filter_map(|s| Some((s, view.record.session(&s.session).filter(|x| q.wants(x))?)))
        .collect();
    list.sort_by_key(|(s, _)| (s.starts_at, s.number));
    root.children(list.into_iter().map(|(slot, session)| {
        let status = match (&slot.appointment, slot.starts_at > now) {
            (Some(_), _) => "Booked",
            (None, true) => "Available",
            (None, false) => "Unavailable",
        };
        view.slot(slot)
            .attr("sessionId", session.number.to_string())
            .attr("sessionType", session.name.clone())
            .attr("deliveryMode", crate::render::delivery(session.delivery))
            .attr("status", status)
    }))
}
