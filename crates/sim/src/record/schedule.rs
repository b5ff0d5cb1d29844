//! The appointment book and other per-practice activity.
//!
//! One template (sessions and slots around the anchor date, with the seeded bookings) is drawn once and
//! instantiated at every demo practice, so the three simulators show the same book; each practice's copy has
//! its own ids and is changed independently by writes.

use super::dates::uk_local;
use super::generate::GenerateOptions;
use super::ids::Nid;
use super::model::*;
use super::random::{self, Draw};
use rand::Rng;
use time::macros::time;
use time::{Date, Duration, OffsetDateTime, Time, UtcOffset, Weekday};

/// Days of history and of future in the book.
const PAST_DAYS: i64 = 14;
const FUTURE_DAYS: i64 = 28;

/// Everything per practice that the generator produces.
pub(super) struct Book {
    pub sessions: Vec<Session>,
    pub slots: Vec<Slot>,
    pub appointments: Vec<Appointment>,
    pub prescription_requests: Vec<PrescriptionRequest>,
    pub messages: Vec<Message>,
}

struct TemplateSession {
    name: &'static str,
    practitioner: Nid,
    location: &'static str,
    delivery: DeliveryMode,
    starts_at: OffsetDateTime,
    ends_at: OffsetDateTime,
    slot_kind: &'static str,
    slot_minutes: i64,
}

struct TemplateSlot {
    session: usize,
    starts_at: OffsetDateTime,
    ends_at: OffsetDateTime,
}

struct TemplateBooking {
    slot: usize,
    patient: usize,
    status: AppointmentStatus,
    reason: &'static str,
    telephone: Option<String>,
    booked_at: OffsetDateTime,
}

const REASONS: &[&str] = &[
    "Sore throat",
    "Medication review",
    "Blood pressure check",
    "Follow-up",
    "Back pain",
    "Cough",
];

fn utc(date: Date, t: Time) -> OffsetDateTime {
    uk_local(date, t).to_offset(UtcOffset::UTC)
}

fn staff_with(practitioners: &[Practitioner], role: StaffRole) -> Vec<Nid> {
    practitioners
        .iter()
        .filter(|p| p.roles.iter().any(|r| r.role == role))
        .map(|p| p.id.clone())
        .collect()
}

fn template_sessions(opts: &GenerateOptions, practitioners: &[Practitioner]) -> Vec<TemplateSession> {
    let gps = staff_with(practitioners, StaffRole::GeneralPractitioner);
    let nurses = staff_with(practitioners, StaffRole::PracticeNurse);
    let mut rng = random::stream(opts.seed, random::SCHEDULE, 0);
    let mut out = Vec::new();
    let first = opts.today - Duration::days(PAST_DAYS);
    for d in 0..(PAST_DAYS + FUTURE_DAYS) {
        let day = first + Duration::days(d);
        if matches!(day.weekday(), Weekday::Saturday | Weekday::Sunday) {
            continue;
        }
        let gp_am = rng.pick(&gps).cloned();
        let gp_pm = rng.pick(&gps).cloned();
        let mut push = |name, who: Option<Nid>, location, delivery, from: Time, to: Time, kind, minutes| {
            if let Some(practitioner) = who {
                out.push(TemplateSession {
                    name,
                    practitioner,
                    location,
                    delivery,
                    starts_at: utc(day, from),
                    ends_at: utc(day, to),
                    slot_kind: kind,
                    slot_minutes: minutes,
                });
            }
        };
        push(
            "GP Routine",
            gp_am,
            "Main surgery",
            DeliveryMode::InPerson,
            time!(08:30),
            time!(11:30),
            "GP 10 min",
            10,
        );
        push(
            "GP Telephone",
            gp_pm,
            "Telephone",
            DeliveryMode::Telephone,
            time!(14:00),
            time!(16:00),
            "Telephone 10 min",
            10,
        );
        if matches!(day.weekday(), Weekday::Tuesday | Weekday::Thursday) {
            let nurse = nurses.first().cloned();
            push(
                "Nurse Clinic",
                nurse,
                "Treatment room",
                DeliveryMode::InPerson,
                time!(09:00),
                time!(12:00),
                "Nurse 15 min",
                15,
            );
        }
    }
    out
}

fn template_slots(sessions: &[TemplateSession]) -> Vec<TemplateSlot> {
    let mut out = Vec::new();
    for (i, s) in sessions.iter().enumerate() {
        let mut t = s.starts_at;
        while t + Duration::minutes(s.slot_minutes) <= s.ends_at {
            out.push(TemplateSlot {
                session: i,
                starts_at: t,
                ends_at: t + Duration::minutes(s.slot_minutes),
            });
            t += Duration::minutes(s.slot_minutes);
        }
    }
    out
}

fn phone_of(p: &Patient) -> Option<String> {
    p.telecom.iter().find_map(|t| match t {
        Telecom::Phone { value, .. } => Some(value.clone()),
        Telecom::Email { .. } => None,
    })
}

/// Seeded bookings: some future, some past (attended or not), some cancelled. Patients whose appointment
/// service is off, and deceased patients, get none in the future.
fn template_bookings(
    opts: &GenerateOptions,
    sessions: &[TemplateSession],
    slots: &[TemplateSlot],
    patients: &[Patient],
) -> Vec<TemplateBooking> {
    let anchor = utc(opts.today, Time::MIDNIGHT);
    let tomorrow = anchor + Duration::days(1);
    let mut taken = vec![false; slots.len()];
    let mut out = Vec::new();
    for (i, p) in patients.iter().enumerate() {
        let mut rng = random::stream(opts.seed, random::BOOKINGS, i as u64);
        let appointments_on = p.registrations.first().is_none_or(|r| r.services.appointments);
        if !appointments_on || p.deceased_at.is_some() {
            continue;
        }
        let mut book = |rng: &mut rand_chacha::ChaCha8Rng, future: bool, status: AppointmentStatus| {
            let candidates: Vec<usize> = (0..slots.len())
                .filter(|&k| {
                    !taken[k]
                        && if future {
                            slots[k].starts_at >= tomorrow
                        } else {
                            slots[k].ends_at <= anchor
                        }
                })
                .collect();
            let Some(&k) = rng.pick(&candidates) else {
                return;
            };
            let reason = rng.pick(REASONS).copied().unwrap_or("Follow-up");
            let booked_at = slots[k].starts_at.min(anchor)
                - Duration::days(rng.random_range(1..10))
                - Duration::minutes(rng.random_range(0..600));
            let phone = if sessions[slots[k].session].delivery == DeliveryMode::Telephone {
                phone_of(p)
            } else {
                None
            };
            if status != AppointmentStatus::Cancelled {
                taken[k] = true;
            }
            out.push(TemplateBooking {
                slot: k,
                patient: i,
                status,
                reason,
                telephone: phone,
                booked_at,
            });
        };
        if i == 0 || rng.chance(0.35) {
            book(&mut rng, true, AppointmentStatus::Booked);
        }
        if i == 0 || rng.chance(0.35) {
            let status = if rng.chance(0.9) {
                AppointmentStatus::Attended
            } else {
                AppointmentStatus::DidNotAttend
            };
            book(&mut rng, false, status);
        }
        if rng.chance(0.1) {
            book(&mut rng, true, AppointmentStatus::Cancelled);
        }
    }
    out
}

pub(super) fn build(
    opts: &GenerateOptions,
    practices: &[Practice],
    practitioners: &[Practitioner],
    patients: &[Patient],
) -> Book {
    let t_sessions = template_sessions(opts, practitioners);
    let t_slots = template_slots(&t_sessions);
    let t_bookings = template_bookings(opts, &t_sessions, &t_slots, patients);
    let anchor = utc(opts.today, Time::MIDNIGHT);
    let mut book = Book {
        sessions: Vec::new(),
        slots: Vec::new(),
        appointments: Vec::new(),
        prescription_requests: Vec::new(),
        messages: Vec::new(),
    };
    for practice in practices {
        let ods = &practice.ods;
        let session_id = |k: usize| Nid(format!("{ods}-SES-{:04}", k + 1));
        let slot_id = |k: usize| Nid(format!("{ods}-SLT-{:05}", k + 1));
        for (k, s) in t_sessions.iter().enumerate() {
            book.sessions.push(Session {
                id: session_id(k),
                practice: ods.clone(),
                number: 4100 + k as u32,
                name: s.name.to_string(),
                practitioner: s.practitioner.clone(),
                location: s.location.to_string(),
                delivery: s.delivery,
                starts_at: s.starts_at,
                ends_at: s.ends_at,
            });
        }
        let first_slot = book.slots.len();
        for (k, s) in t_slots.iter().enumerate() {
            book.slots.push(Slot {
                id: slot_id(k),
                practice: ods.clone(),
                number: 880_000 + k as u32,
                session: session_id(s.session),
                kind: t_sessions[s.session].slot_kind.to_string(),
                starts_at: s.starts_at,
                ends_at: s.ends_at,
                appointment: None,
            });
        }
        for (k, b) in t_bookings.iter().enumerate() {
            let id = Nid(format!("{ods}-APT-{:04}", k + 1));
            if b.status != AppointmentStatus::Cancelled {
                if let Some(slot) = book.slots.get_mut(first_slot + b.slot) {
                    slot.appointment = Some(id.clone());
                }
            }
            book.appointments.push(Appointment {
                id,
                practice: ods.clone(),
                patient: patients[b.patient].id.clone(),
                slot: slot_id(b.slot),
                status: b.status,
                reason: Some(b.reason.to_string()),
                telephone: b.telephone.clone(),
                booked_at: b.booked_at,
                cancellation_reason: (b.status == AppointmentStatus::Cancelled)
                    .then(|| "No longer required".to_string()),
            });
        }
        requests_and_messages(opts, ods, practitioners, patients, anchor, &mut book);
    }
    book
}

/// Past repeat requests and patient-practice messages, the same at every practice.
fn requests_and_messages(
    opts: &GenerateOptions,
    ods: &str,
    practitioners: &[Practitioner],
    patients: &[Patient],
    anchor: OffsetDateTime,
    book: &mut Book,
) {
    let mut request_no = 0;
    let mut message_no = 0;
    let gp_name = practitioners.first().map(|p| p.name.display()).unwrap_or_default();
    for (i, p) in patients.iter().enumerate() {
        if p.deceased_at.is_some() {
            continue;
        }
        // A separate stream from the bookings, so both stay stable when either changes.
        let mut rng = random::stream(opts.seed, random::BOOKINGS, 1_000_000 + i as u64);
        let requestable: Vec<Nid> = p
            .clinical
            .medications
            .iter()
            .filter(|m| m.requestable)
            .map(|m| m.meta.id.clone())
            .collect();
        let prescriptions_on = p.registrations.first().is_none_or(|r| r.services.prescriptions);
        if !requestable.is_empty() && prescriptions_on && (i == 0 || rng.chance(0.3)) {
            let mut push = |courses: Vec<Nid>, days_ago: i64, status, comment: Option<&str>| {
                request_no += 1;
                book.prescription_requests.push(PrescriptionRequest {
                    id: Nid(format!("{ods}-RXR-{request_no:04}")),
                    practice: ods.to_string(),
                    patient: p.id.clone(),
                    courses,
                    comment: comment.map(str::to_string),
                    requested_at: anchor - Duration::days(days_ago) + Duration::hours(10),
                    status,
                });
            };
            let n = rng.random_range(1..=requestable.len().min(2));
            push(
                requestable[..n].to_vec(),
                rng.random_range(5..40),
                RequestStatus::Issued,
                None,
            );
            if i == 0 {
                push(
                    requestable[..1].to_vec(),
                    2,
                    RequestStatus::Requested,
                    Some("Please send to usual pharmacy"),
                );
            }
        }
        let messaging_on = p.registrations.first().is_none_or(|r| r.services.messaging);
        if messaging_on && (i == 0 || rng.chance(0.2)) {
            let sent = anchor - Duration::days(rng.random_range(2..30)) + Duration::hours(9);
            let (subject, body, reply) = *rng
                .pick(&[
                    (
                        "Repeat prescription query",
                        "Can I collect my prescription early as I am going away?",
                        "Yes, please order it as usual and we will process it in two working days.",
                    ),
                    (
                        "Test results",
                        "Are my blood test results back yet?",
                        "Your results are back and are normal; no action is needed.",
                    ),
                    (
                        "Fit note request",
                        "Could I have a fit note for last week, please?",
                        "Please book a telephone appointment so the doctor can discuss this with you.",
                    ),
                ])
                .unwrap_or(&("Question", "I have a question.", "Please call the surgery."));
            message_no += 1;
            book.messages.push(Message {
                id: Nid(format!("{ods}-MSG-{message_no:04}")),
                practice: ods.to_string(),
                patient: p.id.clone(),
                direction: Direction::ToPractice,
                sender: p.name.display(),
                subject: subject.to_string(),
                body: body.to_string(),
                sent_at: sent,
                read: true,
            });
            message_no += 1;
            book.messages.push(Message {
                id: Nid(format!("{ods}-MSG-{message_no:04}")),
                practice: ods.to_string(),
                patient: p.id.clone(),
                direction: Direction::FromPractice,
                sender: gp_name.clone(),
                subject: format!("RE: {subject}"),
                body: reply.to_string(),
                sent_at: sent + Duration::hours(26),
                read: i != 0,
            });
        }
    }
}
