//! The shared, mutable world: a [`Record`] behind a lock, the writes the dialects need, and a change log.
//!
//! Readers take a closure (`world.read(|r| ...)`), so no lock guard escapes. Every write stamps the time from
//! the world's [`Clock`] and appends to the change log; change times are strictly increasing, so
//! `changes_since(t)` with the last seen time never misses or repeats a change.

use super::dates::PartialDate;
use super::ids::{native_id, Nid, Supplier};
use super::model::*;
use super::vocab::{Category, Concept, Vocabulary};
use serde::Serialize;
use std::collections::HashMap;
use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::Instant;
use time::{Duration, OffsetDateTime};

/// Where the world's "now" comes from.
#[derive(Debug, Clone)]
pub enum Clock {
    /// The real UTC time.
    System,
    /// Starts at a given instant and advances in real time (tests and demos with a fixed anchor date).
    Anchored { at: OffsetDateTime, started: Instant },
    /// Always the same instant (unit tests).
    Fixed(OffsetDateTime),
}

impl Clock {
    /// A clock that starts now at `at` and then advances in real time.
    pub fn anchored(at: OffsetDateTime) -> Clock {
        Clock::Anchored {
            at,
            started: Instant::now(),
        }
    }

    /// The current instant.
    pub fn now(&self) -> OffsetDateTime {
        match self {
            Clock::System => OffsetDateTime::now_utc(),
            Clock::Anchored { at, started } => *at + Duration::try_from(started.elapsed()).unwrap_or(Duration::ZERO),
            Clock::Fixed(at) => *at,
        }
    }
}

/// The part of a patient's data a change touched.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub enum ChangeArea {
    Demographics,
    Registration,
    /// The clinical record (observations, allergies, problems, consultations, documents, ...).
    Record,
    Appointments,
    Prescriptions,
}

/// One entry of the change log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Change {
    /// Position in the log (1-based, increasing).
    pub seq: u64,
    #[serde(with = "time::serde::rfc3339")]
    pub at: OffsetDateTime,
    pub patient: Nid,
    pub nhs_number: String,
    pub area: ChangeArea,
    /// The practice for practice-scoped areas (appointments, prescriptions); None when the change is to the
    /// shared record and so visible at every practice.
    pub practice: Option<String>,
}

/// Why a write was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WriteError {
    #[error("patient not found")]
    PatientNotFound,
    #[error("proxy link not found")]
    ProxyLinkNotFound,
    #[error("practice not found")]
    PracticeNotFound,
    #[error("patient is not registered at the practice")]
    NotRegistered,
    #[error("service switched off: {0:?}")]
    ServiceDisabled(Service),
    #[error("slot not found")]
    SlotNotFound,
    #[error("slot already booked")]
    SlotTaken,
    #[error("slot is in the past")]
    SlotInPast,
    #[error("appointment not found")]
    AppointmentNotFound,
    #[error("appointment already cancelled")]
    AlreadyCancelled,
    #[error("appointment is in the past")]
    AppointmentInPast,
    #[error("appointment was attended")]
    AppointmentSeen,
    #[error("medication course not found: {0}")]
    CourseNotFound(Nid),
    #[error("medication course cannot be requested: {0}")]
    CourseNotRequestable(Nid),
    #[error("no medication courses requested")]
    NothingRequested,
    #[error("code not in the vocabulary: {0}")]
    UnknownCode(String),
    #[error("practitioner not found: {0}")]
    UnknownPractitioner(Nid),
    /// An entry of a consultation is invalid; nothing was filed.
    #[error("section {section}, entry {entry}: {reason}")]
    InvalidEntry {
        section: usize,
        entry: usize,
        reason: String,
    },
    #[error("invalid input: {0}")]
    Invalid(String),
}

/// A new observation to file.
#[derive(Debug, Clone)]
pub struct NewObservation {
    /// A vocabulary concept (SNOMED CT).
    pub code: Concept,
    pub effective: PartialDate,
    pub value: ObservationValue,
    pub note: Option<String>,
    /// Author; the usual GP at the practice when None.
    pub recorded_by: Option<Nid>,
}

impl NewObservation {
    /// A body weight in kilograms (SNOMED CT 27113001) with one decimal place, as a clinician files one on
    /// `day`, by the practice's usual GP: what tests file to change a record.
    pub fn body_weight(kg: f64, day: time::Date) -> Option<NewObservation> {
        Some(NewObservation {
            code: Vocabulary::get().concept("27113001")?,
            effective: PartialDate::Day(day),
            value: ObservationValue::Quantity(Quantity {
                value: kg,
                decimals: 1,
                unit: "kg".into(),
            }),
            note: None,
            recorded_by: None,
        })
    }
}

/// A new allergy to file.
#[derive(Debug, Clone)]
pub struct NewAllergy {
    pub code: Concept,
    pub onset: Option<PartialDate>,
    pub reactions: Vec<Reaction>,
    pub note: Option<String>,
    pub recorded_by: Option<Nid>,
}

/// A new problem to file.
#[derive(Debug, Clone)]
pub struct NewProblem {
    pub code: Concept,
    pub onset: PartialDate,
    pub status: ProblemStatus,
    pub significance: Significance,
    pub note: Option<String>,
    pub recorded_by: Option<Nid>,
}

/// One entry of a new consultation.
#[derive(Debug, Clone)]
pub enum NewEntry {
    Observation(NewObservation),
    Allergy(NewAllergy),
    Problem(NewProblem),
}

/// A section of a new consultation.
#[derive(Debug, Clone)]
pub struct NewSection {
    pub heading: String,
    pub entries: Vec<NewEntry>,
}

/// A new consultation with its entries, filed all or nothing.
#[derive(Debug, Clone)]
pub struct NewConsultation {
    /// An encounter type concept.
    pub kind: Concept,
    /// Start time; now when None.
    pub started_at: Option<OffsetDateTime>,
    pub duration_minutes: u32,
    pub practitioner: Option<Nid>,
    pub location: String,
    pub sections: Vec<NewSection>,
}

/// What filing a consultation created.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FiledConsultation {
    pub id: Nid,
    /// Ids of the entries, in section then entry order.
    pub items: Vec<Nid>,
}

/// A new document.
#[derive(Debug, Clone)]
pub struct NewDocument {
    /// A document type concept.
    pub kind: Concept,
    pub title: String,
    pub date: PartialDate,
    pub mime_type: String,
    pub content: Vec<u8>,
    pub recorded_by: Option<Nid>,
}

/// A booking request.
#[derive(Debug, Clone)]
pub struct NewBooking {
    pub practice: String,
    pub patient: Nid,
    pub slot: Nid,
    pub reason: Option<String>,
    pub telephone: Option<String>,
}

/// A new message.
#[derive(Debug, Clone)]
pub struct NewMessage {
    pub practice: String,
    pub patient: Nid,
    pub direction: Direction,
    pub subject: String,
    pub body: String,
}

struct State {
    record: Record,
    changes: Vec<Change>,
    /// (supplier, native id) -> neutral id, for every id in the record.
    native: HashMap<(Supplier, String), Nid>,
    writes: u64,
}

impl State {
    fn index(&mut self, nid: &Nid) {
        for s in Supplier::ALL {
            self.native.insert((s, native_id(s, nid)), nid.clone());
        }
    }

    fn next_write(&mut self) -> u64 {
        self.writes += 1;
        self.writes
    }

    fn patient_index(&self, id: &Nid) -> Result<usize, WriteError> {
        self.record
            .patients
            .iter()
            .position(|p| &p.id == id)
            .ok_or(WriteError::PatientNotFound)
    }

    fn log(&mut self, now: OffsetDateTime, patient: usize, area: ChangeArea, practice: Option<&str>) -> OffsetDateTime {
        // Strictly increasing times, so `changes_since(last.at)` is exact.
        let at = match self.changes.last() {
            Some(last) if last.at >= now => last.at + Duration::microseconds(1),
            _ => now,
        };
        let p = &self.record.patients[patient];
        let change = Change {
            seq: self.changes.len() as u64 + 1,
            at,
            patient: p.id.clone(),
            nhs_number: p.nhs_number.clone(),
            area,
            practice: practice.map(str::to_string),
        };
        self.changes.push(change);
        at
    }

    fn check_service(&self, ods: &str, patient: usize, service: Service) -> Result<(), WriteError> {
        let practice = self
            .record
            .practices
            .iter()
            .find(|p| p.ods == ods)
            .ok_or(WriteError::PracticeNotFound)?;
        let reg = self.record.patients[patient]
            .registration(ods)
            .ok_or(WriteError::NotRegistered)?;
        if practice.services.allows(service) && reg.services.allows(service) {
            Ok(())
        } else {
            Err(WriteError::ServiceDisabled(service))
        }
    }

    fn author(&self, patient: usize, given: &Option<Nid>) -> Result<Nid, WriteError> {
        match given {
            Some(id) if self.record.practitioners.iter().any(|p| &p.id == id) => Ok(id.clone()),
            Some(id) => Err(WriteError::UnknownPractitioner(id.clone())),
            None => self.record.patients[patient]
                .registrations
                .first()
                .map(|r| r.usual_gp.clone())
                .ok_or(WriteError::NotRegistered),
        }
    }
}

fn check_concept(concept: &Concept, allowed: &[Category]) -> Result<Concept, WriteError> {
    let vocab = Vocabulary::get();
    match vocab.entry(&concept.code) {
        Some(e) if allowed.contains(&e.category) => Ok(e.concept()),
        Some(e) => Err(WriteError::Invalid(format!(
            "code {} is a {:?}, not allowed here",
            e.code, e.category
        ))),
        None => Err(WriteError::UnknownCode(concept.code.clone())),
    }
}

const OBSERVATION_CATEGORIES: &[Category] = &[
    Category::Observation,
    Category::ObservationSmoking,
    Category::ConsentOptOut,
    Category::Problem,
];
const ALLERGY_CATEGORIES: &[Category] = &[Category::Allergy, Category::AllergySubstance];
const PROBLEM_CATEGORIES: &[Category] = &[Category::Problem];

fn observation_kind(code: &Concept) -> ObservationKind {
    match Vocabulary::get().entry(&code.code).map(|e| e.category) {
        Some(Category::ConsentOptOut) => ObservationKind::RecordFlag,
        Some(Category::ObservationSmoking) => ObservationKind::SocialHistory,
        _ => ObservationKind::Laboratory,
    }
}

/// The shared world: record, change log and reverse id index behind one lock.
pub struct World {
    state: RwLock<State>,
    clock: Clock,
}

impl std::fmt::Debug for World {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("World")
            .field("clock", &self.clock)
            .finish_non_exhaustive()
    }
}

impl World {
    /// Wrap a record. The change log starts with the record's own history of the last 30 days (items
    /// recorded, bookings, requests, registrations), so changes feeds are not empty on start.
    pub fn new(record: Record, clock: Clock) -> Arc<World> {
        let mut state = State {
            record,
            changes: Vec::new(),
            native: HashMap::new(),
            writes: 0,
        };
        for nid in all_ids(&state.record) {
            state.index(&nid);
        }
        seed_changes(&mut state);
        Arc::new(World {
            state: RwLock::new(state),
            clock,
        })
    }

    fn read_state(&self) -> RwLockReadGuard<'_, State> {
        // A panic while holding the lock leaves plain data behind; keep serving it.
        self.state.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write_state(&self) -> RwLockWriteGuard<'_, State> {
        self.state.write().unwrap_or_else(|e| e.into_inner())
    }

    /// The world's current time.
    pub fn now(&self) -> OffsetDateTime {
        self.clock.now()
    }

    /// Read the record.
    pub fn read<R>(&self, f: impl FnOnce(&Record) -> R) -> R {
        f(&self.read_state().record)
    }

    /// A copy of the record as it is now.
    pub fn snapshot(&self) -> Record {
        self.read(Record::clone)
    }

    /// The neutral id behind a supplier's native id.
    pub fn resolve(&self, supplier: Supplier, native: &str) -> Option<Nid> {
        self.read_state().native.get(&(supplier, native.to_string())).cloned()
    }

    /// Changes strictly after `since`, oldest first.
    pub fn changes_since(&self, since: OffsetDateTime) -> Vec<Change> {
        let s = self.read_state();
        let start = s.changes.partition_point(|c| c.at <= since);
        s.changes[start..].to_vec()
    }

    /// Changes strictly after `since` that a practice sees: shared-record changes and its own.
    pub fn changes_since_at(&self, since: OffsetDateTime, ods: &str) -> Vec<Change> {
        self.changes_since(since)
            .into_iter()
            .filter(|c| c.practice.as_deref().is_none_or(|p| p == ods))
            .collect()
    }

    /// The time of the latest change (a high-water mark), if any.
    pub fn last_change_at(&self) -> Option<OffsetDateTime> {
        self.read_state().changes.last().map(|c| c.at)
    }

    /// Switch a service for a whole practice.
    pub fn set_practice_service(&self, ods: &str, service: Service, on: bool) -> Result<(), WriteError> {
        let mut s = self.write_state();
        let p = s
            .record
            .practices
            .iter_mut()
            .find(|p| p.ods == ods)
            .ok_or(WriteError::PracticeNotFound)?;
        p.services.set(service, on);
        Ok(())
    }

    /// Switch a service for one patient at one practice (logged as a registration change).
    pub fn set_patient_service(&self, ods: &str, patient: &Nid, service: Service, on: bool) -> Result<(), WriteError> {
        let now = self.now();
        let mut s = self.write_state();
        let i = s.patient_index(patient)?;
        let reg = s.record.patients[i]
            .registrations
            .iter_mut()
            .find(|r| r.practice == ods)
            .ok_or(WriteError::NotRegistered)?;
        reg.services.set(service, on);
        s.log(now, i, ChangeArea::Registration, Some(ods));
        Ok(())
    }

    /// End one patient's proxy access to another's record (the practice revokes it): every API stops listing
    /// the link from now on.
    pub fn revoke_proxy_link(&self, actor: &Nid, patient: &Nid) -> Result<(), WriteError> {
        let mut s = self.write_state();
        let before = s.record.proxy_links.len();
        s.record
            .proxy_links
            .retain(|l| !(&l.actor == actor && &l.patient == patient));
        if s.record.proxy_links.len() == before {
            return Err(WriteError::ProxyLinkNotFound);
        }
        Ok(())
    }

    /// Book a free slot. A booked slot is no longer free.
    pub fn book_slot(&self, booking: NewBooking) -> Result<Appointment, WriteError> {
        let now = self.now();
        let mut s = self.write_state();
        let i = s.patient_index(&booking.patient)?;
        s.check_service(&booking.practice, i, Service::Appointments)?;
        let slot_at = s
            .record
            .slots
            .iter()
            .position(|sl| sl.id == booking.slot && sl.practice == booking.practice)
            .ok_or(WriteError::SlotNotFound)?;
        let slot = &s.record.slots[slot_at];
        if slot.appointment.is_some() {
            return Err(WriteError::SlotTaken);
        }
        if slot.starts_at <= now {
            return Err(WriteError::SlotInPast);
        }
        let n = s.next_write();
        let id = Nid(format!("{}-APT-W{n:04}", booking.practice));
        let appointment = Appointment {
            id: id.clone(),
            practice: booking.practice.clone(),
            patient: booking.patient,
            slot: booking.slot,
            status: AppointmentStatus::Booked,
            reason: booking.reason,
            telephone: booking.telephone,
            booked_at: now,
            cancellation_reason: None,
        };
        s.record.slots[slot_at].appointment = Some(id.clone());
        s.record.appointments.push(appointment.clone());
        s.index(&id);
        s.log(now, i, ChangeArea::Appointments, Some(&booking.practice));
        Ok(appointment)
    }

    /// Cancel a booked appointment; its slot becomes free again.
    pub fn cancel_appointment(
        &self,
        ods: &str,
        appointment: &Nid,
        reason: Option<String>,
    ) -> Result<Appointment, WriteError> {
        let now = self.now();
        let mut s = self.write_state();
        let a = s
            .record
            .appointments
            .iter()
            .position(|a| &a.id == appointment && a.practice == ods)
            .ok_or(WriteError::AppointmentNotFound)?;
        let (status, slot_id, patient) = {
            let a = &s.record.appointments[a];
            (a.status, a.slot.clone(), a.patient.clone())
        };
        match status {
            AppointmentStatus::Booked => {}
            AppointmentStatus::Cancelled => return Err(WriteError::AlreadyCancelled),
            AppointmentStatus::Attended => return Err(WriteError::AppointmentSeen),
            AppointmentStatus::DidNotAttend => return Err(WriteError::AppointmentInPast),
        }
        let slot = s
            .record
            .slots
            .iter()
            .position(|sl| sl.id == slot_id && sl.practice == ods);
        if let Some(sl) = slot {
            if s.record.slots[sl].starts_at <= now {
                return Err(WriteError::AppointmentInPast);
            }
            s.record.slots[sl].appointment = None;
        }
        let i = s.patient_index(&patient)?;
        let entry = &mut s.record.appointments[a];
        entry.status = AppointmentStatus::Cancelled;
        entry.cancellation_reason = reason;
        let out = entry.clone();
        s.log(now, i, ChangeArea::Appointments, Some(ods));
        Ok(out)
    }

    /// File an observation in the shared record.
    pub fn file_observation(&self, patient: &Nid, obs: NewObservation) -> Result<Nid, WriteError> {
        self.file(patient, |s, i, now| {
            let id = build_observation(s, i, now, obs, None)?;
            Ok((id, ()))
        })
        .map(|(id, ())| id)
    }

    /// File an allergy.
    pub fn file_allergy(&self, patient: &Nid, allergy: NewAllergy) -> Result<Nid, WriteError> {
        self.file(patient, |s, i, now| Ok((build_allergy(s, i, now, allergy, None)?, ())))
            .map(|(id, ())| id)
    }

    /// File a problem.
    pub fn file_problem(&self, patient: &Nid, problem: NewProblem) -> Result<Nid, WriteError> {
        self.file(patient, |s, i, now| Ok((build_problem(s, i, now, problem, None)?, ())))
            .map(|(id, ())| id)
    }

    /// File a consultation and its entries, all or nothing.
    pub fn file_consultation(&self, patient: &Nid, con: NewConsultation) -> Result<FiledConsultation, WriteError> {
        self.file(patient, |s, i, now| {
            let kind = check_concept(&con.kind, &[Category::EncounterType])?;
            let by = s.author(i, &con.practitioner)?;
            // Validate every entry before changing anything.
            for (si, section) in con.sections.iter().enumerate() {
                for (ei, entry) in section.entries.iter().enumerate() {
                    validate_entry(s, i, entry).map_err(|e| WriteError::InvalidEntry {
                        section: si,
                        entry: ei,
                        reason: e.to_string(),
                    })?;
                }
            }
            let n = s.next_write();
            let id = Nid(format!("{}-CON-W{n:04}", s.record.patients[i].id));
            let started_at = con.started_at.unwrap_or(now);
            let mut sections = Vec::new();
            let mut items = Vec::new();
            for section in con.sections {
                let mut ids = Vec::new();
                for entry in section.entries {
                    let cid = Some(id.clone());
                    let item = match entry {
                        NewEntry::Observation(o) => build_observation(s, i, now, o, cid)?,
                        NewEntry::Allergy(a) => build_allergy(s, i, now, a, cid)?,
                        NewEntry::Problem(p) => build_problem(s, i, now, p, cid)?,
                    };
                    ids.push(item.clone());
                    items.push(item);
                }
                sections.push(Section {
                    heading: section.heading,
                    items: ids,
                });
            }
            s.record.patients[i].clinical.consultations.push(Consultation {
                meta: ItemMeta {
                    id: id.clone(),
                    recorded_at: now,
                    recorded_by: by.clone(),
                    confidential: false,
                    consultation: None,
                },
                kind,
                started_at,
                duration_minutes: con.duration_minutes,
                practitioner: by,
                location: con.location,
                sections,
            });
            s.index(&id);
            Ok((id, items))
        })
        .map(|(id, items)| FiledConsultation { id, items })
    }

    /// File a document.
    pub fn file_document(&self, patient: &Nid, doc: NewDocument) -> Result<Nid, WriteError> {
        self.file(patient, |s, i, now| {
            let kind = check_concept(&doc.kind, &[Category::DocumentType])?;
            let by = s.author(i, &doc.recorded_by)?;
            let n = s.next_write();
            let id = Nid(format!("{}-DOC-W{n:04}", s.record.patients[i].id));
            s.record.patients[i].clinical.documents.push(Document {
                meta: ItemMeta {
                    id: id.clone(),
                    recorded_at: now,
                    recorded_by: by.clone(),
                    confidential: false,
                    consultation: None,
                },
                kind,
                title: doc.title,
                date: doc.date,
                mime_type: doc.mime_type,
                content: doc.content,
                author: by,
            });
            s.index(&id);
            Ok((id, ()))
        })
        .map(|(id, ())| id)
    }

    /// Shared plumbing of the clinical writes: find the patient, run the write, log one Record change.
    fn file<T>(
        &self,
        patient: &Nid,
        write: impl FnOnce(&mut State, usize, OffsetDateTime) -> Result<(Nid, T), WriteError>,
    ) -> Result<(Nid, T), WriteError> {
        let now = self.now();
        let mut s = self.write_state();
        let i = s.patient_index(patient)?;
        let out = write(&mut s, i, now)?;
        s.log(now, i, ChangeArea::Record, None);
        Ok(out)
    }

    /// Create a repeat prescription request for courses the patient may order.
    pub fn create_prescription_request(
        &self,
        ods: &str,
        patient: &Nid,
        courses: &[Nid],
        comment: Option<String>,
    ) -> Result<PrescriptionRequest, WriteError> {
        let now = self.now();
        let mut s = self.write_state();
        let i = s.patient_index(patient)?;
        s.check_service(ods, i, Service::Prescriptions)?;
        if courses.is_empty() {
            return Err(WriteError::NothingRequested);
        }
        for c in courses {
            let course = s.record.patients[i]
                .clinical
                .medications
                .iter()
                .find(|m| &m.meta.id == c)
                .ok_or_else(|| WriteError::CourseNotFound(c.clone()))?;
            if !course.requestable || course.kind != CourseKind::Repeat || course.status != CourseStatus::Active {
                return Err(WriteError::CourseNotRequestable(c.clone()));
            }
        }
        let n = s.next_write();
        let request = PrescriptionRequest {
            id: Nid(format!("{ods}-RXR-W{n:04}")),
            practice: ods.to_string(),
            patient: patient.clone(),
            courses: courses.to_vec(),
            comment,
            requested_at: now,
            status: RequestStatus::Requested,
        };
        s.record.prescription_requests.push(request.clone());
        s.index(&request.id);
        s.log(now, i, ChangeArea::Prescriptions, Some(ods));
        Ok(request)
    }

    /// Cancel a patient's pending prescription request at a practice (logged as a prescriptions change). An
    /// unknown request, or another patient's, is `Invalid("prescription request not found: ..")`; one that is
    /// no longer pending is `Invalid("prescription request not cancellable: ..")`.
    pub fn cancel_prescription_request(
        &self,
        ods: &str,
        patient: &Nid,
        request: &Nid,
    ) -> Result<PrescriptionRequest, WriteError> {
        let now = self.now();
        let mut s = self.write_state();
        let i = s.patient_index(patient)?;
        s.check_service(ods, i, Service::Prescriptions)?;
        let found = s
            .record
            .prescription_requests
            .iter_mut()
            .find(|q| &q.id == request && q.practice == ods && &q.patient == patient)
            .ok_or_else(|| WriteError::Invalid(format!("prescription request not found: {request}")))?;
        if found.status != RequestStatus::Requested {
            return Err(WriteError::Invalid(format!(
                "prescription request not cancellable: {request}"
            )));
        }
        found.status = RequestStatus::Cancelled;
        let out = found.clone();
        s.log(now, i, ChangeArea::Prescriptions, Some(ods));
        Ok(out)
    }

    /// Mark one of a patient's messages at a practice as read (not a change-log area). Marking a read message
    /// again is fine; an unknown message, or another patient's, is `Invalid`.
    pub fn mark_message_read(&self, ods: &str, patient: &Nid, message: &Nid) -> Result<Message, WriteError> {
        let mut s = self.write_state();
        let m = s
            .record
            .messages
            .iter_mut()
            .find(|m| &m.id == message && m.practice == ods && &m.patient == patient)
            .ok_or_else(|| WriteError::Invalid(format!("message not found: {message}")))?;
        m.read = true;
        Ok(m.clone())
    }

    /// Send a message between a patient and a practice (not a change-log area).
    pub fn send_message(&self, msg: NewMessage) -> Result<Message, WriteError> {
        let now = self.now();
        let mut s = self.write_state();
        let i = s.patient_index(&msg.patient)?;
        if msg.direction == Direction::ToPractice {
            s.check_service(&msg.practice, i, Service::Messaging)?;
        } else if s.record.patients[i].registration(&msg.practice).is_none() {
            return Err(WriteError::NotRegistered);
        }
        let sender = match msg.direction {
            Direction::ToPractice => s.record.patients[i].name.display(),
            Direction::FromPractice => s
                .record
                .practices
                .iter()
                .find(|p| p.ods == msg.practice)
                .map(|p| p.name.clone())
                .unwrap_or_default(),
        };
        let n = s.next_write();
        let message = Message {
            id: Nid(format!("{}-MSG-W{n:04}", msg.practice)),
            practice: msg.practice,
            patient: msg.patient,
            direction: msg.direction,
            sender,
            subject: msg.subject,
            body: msg.body,
            sent_at: now,
            read: false,
        };
        s.record.messages.push(message.clone());
        s.index(&message.id);
        Ok(message)
    }
}

/// Every check the `build_*` functions make, so a consultation is validated before anything is filed.
fn validate_entry(s: &State, i: usize, entry: &NewEntry) -> Result<(), WriteError> {
    match entry {
        NewEntry::Observation(o) => {
            check_concept(&o.code, OBSERVATION_CATEGORIES)?;
            s.author(i, &o.recorded_by)?;
        }
        NewEntry::Allergy(a) => {
            check_concept(&a.code, ALLERGY_CATEGORIES)?;
            for r in &a.reactions {
                check_concept(&r.manifestation, &[Category::ReactionManifestation])?;
            }
            s.author(i, &a.recorded_by)?;
        }
        NewEntry::Problem(p) => {
            check_concept(&p.code, PROBLEM_CATEGORIES)?;
            s.author(i, &p.recorded_by)?;
        }
    }
    Ok(())
}

fn build_observation(
    s: &mut State,
    i: usize,
    now: OffsetDateTime,
    o: NewObservation,
    consultation: Option<Nid>,
) -> Result<Nid, WriteError> {
    let code = check_concept(&o.code, OBSERVATION_CATEGORIES)?;
    let by = s.author(i, &o.recorded_by)?;
    let n = s.next_write();
    let id = Nid(format!("{}-OBS-W{n:04}", s.record.patients[i].id));
    let range = Vocabulary::get()
        .entry(&code.code)
        .and_then(|e| e.reference_range)
        .map(|r| (r.low, r.high));
    let kind = observation_kind(&code);
    s.record.patients[i].clinical.observations.push(Observation {
        meta: ItemMeta {
            id: id.clone(),
            recorded_at: now,
            recorded_by: by,
            confidential: false,
            consultation,
        },
        code,
        kind,
        effective: o.effective,
        range: if matches!(o.value, ObservationValue::Quantity(_)) {
            range
        } else {
            None
        },
        value: o.value,
        interpretation: None,
        problem: None,
        note: o.note,
    });
    s.index(&id);
    Ok(id)
}

fn build_allergy(
    s: &mut State,
    i: usize,
    now: OffsetDateTime,
    a: NewAllergy,
    consultation: Option<Nid>,
) -> Result<Nid, WriteError> {
    let code = check_concept(&a.code, ALLERGY_CATEGORIES)?;
    for r in &a.reactions {
        check_concept(&r.manifestation, &[Category::ReactionManifestation])?;
    }
    let by = s.author(i, &a.recorded_by)?;
    let n = s.next_write();
    let id = Nid(format!("{}-ALG-W{n:04}", s.record.patients[i].id));
    s.record.patients[i].clinical.allergies.push(Allergy {
        meta: ItemMeta {
            id: id.clone(),
            recorded_at: now,
            recorded_by: by,
            confidential: false,
            consultation,
        },
        code,
        substance: None,
        onset: a.onset,
        status: AllergyStatus::Active,
        resolved_on: None,
        reactions: a.reactions,
        note: a.note,
    });
    s.index(&id);
    Ok(id)
}

fn build_problem(
    s: &mut State,
    i: usize,
    now: OffsetDateTime,
    p: NewProblem,
    consultation: Option<Nid>,
) -> Result<Nid, WriteError> {
    let code = check_concept(&p.code, PROBLEM_CATEGORIES)?;
    let by = s.author(i, &p.recorded_by)?;
    let n = s.next_write();
    let id = Nid(format!("{}-PRB-W{n:04}", s.record.patients[i].id));
    s.record.patients[i].clinical.problems.push(Problem {
        meta: ItemMeta {
            id: id.clone(),
            recorded_at: now,
            recorded_by: by,
            confidential: false,
            consultation,
        },
        code,
        status: p.status,
        significance: p.significance,
        onset: p.onset,
        ended: None,
        linked: Vec::new(),
        note: p.note,
    });
    s.index(&id);
    Ok(id)
}

/// Every neutral id in a record (for the native-id index).
fn all_ids(r: &Record) -> Vec<Nid> {
    let mut ids: Vec<Nid> = Vec::new();
    ids.extend(r.practices.iter().map(|p| p.id.clone()));
    for p in &r.practitioners {
        ids.push(p.id.clone());
        ids.extend(p.roles.iter().map(|x| x.id.clone()));
    }
    for p in &r.patients {
        ids.push(p.id.clone());
        let c = &p.clinical;
        ids.extend(c.allergies.iter().map(|x| x.meta.id.clone()));
        ids.extend(c.problems.iter().map(|x| x.meta.id.clone()));
        for m in &c.medications {
            ids.push(m.meta.id.clone());
            ids.extend(m.issues.iter().map(|x| x.id.clone()));
        }
        ids.extend(c.observations.iter().map(|x| x.meta.id.clone()));
        ids.extend(c.immunisations.iter().map(|x| x.meta.id.clone()));
        ids.extend(c.consultations.iter().map(|x| x.meta.id.clone()));
        ids.extend(c.documents.iter().map(|x| x.meta.id.clone()));
    }
    ids.extend(r.sessions.iter().map(|x| x.id.clone()));
    ids.extend(r.slots.iter().map(|x| x.id.clone()));
    ids.extend(r.appointments.iter().map(|x| x.id.clone()));
    ids.extend(r.prescription_requests.iter().map(|x| x.id.clone()));
    ids.extend(r.messages.iter().map(|x| x.id.clone()));
    ids
}

/// The record's own recent history as change-log entries (last 30 days before the anchor date).
fn seed_changes(s: &mut State) {
    let r = &s.record;
    let anchor = r.today.midnight().assume_utc();
    let from = anchor - Duration::days(30);
    let recent = |t: OffsetDateTime| t > from && t <= anchor;
    let mut found: Vec<(OffsetDateTime, usize, ChangeArea, Option<String>)> = Vec::new();
    for (i, p) in r.patients.iter().enumerate() {
        let times = p.clinical.change_times();
        found.extend(times.filter(|t| recent(*t)).map(|t| (t, i, ChangeArea::Record, None)));
        for reg in &p.registrations {
            let t = reg.registered_on.midnight().assume_utc() + Duration::hours(9);
            if recent(t) {
                found.push((t, i, ChangeArea::Registration, Some(reg.practice.clone())));
            }
        }
        if let Some(t) = p.deceased_at.filter(|t| recent(*t)) {
            found.push((t, i, ChangeArea::Demographics, None));
        }
    }
    let index_of = |id: &Nid| r.patients.iter().position(|p| &p.id == id);
    for a in &r.appointments {
        if let Some(i) = index_of(&a.patient).filter(|_| recent(a.booked_at)) {
            found.push((a.booked_at, i, ChangeArea::Appointments, Some(a.practice.clone())));
        }
    }
    for q in &r.prescription_requests {
        if let Some(i) = index_of(&q.patient).filter(|_| recent(q.requested_at)) {
            found.push((q.requested_at, i, ChangeArea::Prescriptions, Some(q.practice.clone())));
        }
    }
    found.sort();
    found.dedup();
    for (t, i, area, practice) in found {
        s.log(t, i, area, practice.as_deref());
    }
}
