//! The supplier-neutral synthetic record: seeded generation, the shared mutable [`World`], and the helpers
//! every simulator needs to render it in its own dialect.
//!
//! - [`generate`] builds a [`Record`] from a seed, a patient count and an anchor date; the same inputs give the
//!   same record byte for byte (per-part ChaCha8 streams, no hash-map order, no clock).
//! - [`World`] holds the record behind a lock with the writes the dialects need and a change log.
//! - [`ids`]: neutral ids ([`Nid`]) and their native forms per supplier ([`native_id`]).
//! - [`codes`]: the local CodeId table and the CTV3-or-SNOMED scheme; [`vocab`]: the embedded vocabulary.
//! - [`nhs`]: the NHS number Modulus 11 check.
//!
//! Nothing here names a supplier's fields: dialects map these neutral types to their own shapes.

pub mod codes;
pub mod credentials;
pub mod dates;
mod document;
mod generate;
pub mod ids;
pub mod model;
pub mod nhs;
mod random;
mod schedule;
mod tables;
pub mod vocab;
mod world;

pub use codes::{CodeIdRow, CodeIdTable};
pub use dates::{PartialDate, Precision};
pub use generate::{generate, patient_id, GenerateOptions};
pub use ids::{native_id, native_sub_id, Nid, Supplier};
pub use model::*;
pub use vocab::{Concept, Vocabulary};
pub use world::{
    Change, ChangeArea, Clock, FiledConsultation, NewAllergy, NewBooking, NewConsultation, NewDocument, NewEntry,
    NewMessage, NewObservation, NewProblem, NewSection, World, WriteError,
};

/// NHS number of patient 0 (Ms Alex Tester), present in every record.
pub const PATIENT_NHS_NUMBER: &str = "9000000009";
/// NHS number of patient 1, the child patient 0 has proxy access to.
pub const CHILD_NHS_NUMBER: &str = "9000000017";
/// SNOMED CT code of the type 1 opt-out ("Dissent from secondary use of general practitioner patient
/// identifiable data"), recorded as a coded observation.
pub const TYPE1_OPT_OUT_CODE: &str = "827241000000103";
/// The demo practices' ODS codes, in supplier order (EMIS, SystmOne, Medicus).
pub const PRACTICE_ODS: [&str; 3] = ["Y90001", "Y90002", "Y90003"];

impl Record {
    /// The patient with a neutral id.
    pub fn patient(&self, id: &Nid) -> Option<&Patient> {
        self.patients.iter().find(|p| &p.id == id)
    }

    /// The patient with an NHS number.
    pub fn patient_by_nhs_number(&self, nhs_number: &str) -> Option<&Patient> {
        self.patients.iter().find(|p| p.nhs_number == nhs_number)
    }

    /// The practice with an ODS code.
    pub fn practice(&self, ods: &str) -> Option<&Practice> {
        self.practices.iter().find(|p| p.ods == ods)
    }

    /// The practitioner with a neutral id.
    pub fn practitioner(&self, id: &Nid) -> Option<&Practitioner> {
        self.practitioners.iter().find(|p| &p.id == id)
    }

    /// Whether a service is on for a patient at a practice (practice switch and the patient's own).
    pub fn service_allowed(&self, ods: &str, patient: &Nid, service: Service) -> bool {
        let practice_on = self.practice(ods).is_some_and(|p| p.services.allows(service));
        let patient_on = self
            .patient(patient)
            .and_then(|p| p.registration(ods))
            .is_some_and(|r| r.services.allows(service));
        practice_on && patient_on
    }

    /// Patients a patient may act for (proxy access), not including themselves.
    pub fn proxied_by(&self, actor: &Nid) -> Vec<&ProxyLink> {
        self.proxy_links.iter().filter(|l| &l.actor == actor).collect()
    }

    /// A practice's sessions.
    pub fn sessions_at<'a>(&'a self, ods: &'a str) -> impl Iterator<Item = &'a Session> + 'a {
        self.sessions.iter().filter(move |s| s.practice == ods)
    }

    /// A practice's slots starting in `[from, to)`, in time order.
    pub fn slots_between<'a>(
        &'a self,
        ods: &'a str,
        from: time::OffsetDateTime,
        to: time::OffsetDateTime,
    ) -> impl Iterator<Item = &'a Slot> + 'a {
        self.slots
            .iter()
            .filter(move |s| s.practice == ods && s.starts_at >= from && s.starts_at < to)
    }

    /// A practice's free slots (unbooked and starting after `now`) in `[from, to)`.
    pub fn free_slots_between<'a>(
        &'a self,
        ods: &'a str,
        now: time::OffsetDateTime,
        from: time::OffsetDateTime,
        to: time::OffsetDateTime,
    ) -> impl Iterator<Item = &'a Slot> + 'a {
        self.slots_between(ods, from, to)
            .filter(move |s| s.appointment.is_none() && s.starts_at > now)
    }

    /// A slot by neutral id.
    pub fn slot(&self, id: &Nid) -> Option<&Slot> {
        self.slots.iter().find(|s| &s.id == id)
    }

    /// A session by neutral id.
    pub fn session(&self, id: &Nid) -> Option<&Session> {
        self.sessions.iter().find(|s| &s.id == id)
    }

    /// A patient's appointments at a practice (all statuses).
    pub fn appointments_of<'a>(&'a self, ods: &'a str, patient: &'a Nid) -> impl Iterator<Item = &'a Appointment> + 'a {
        self.appointments
            .iter()
            .filter(move |a| a.practice == ods && &a.patient == patient)
    }

    /// A patient's prescription requests at a practice.
    pub fn prescription_requests_of<'a>(
        &'a self,
        ods: &'a str,
        patient: &'a Nid,
    ) -> impl Iterator<Item = &'a PrescriptionRequest> + 'a {
        self.prescription_requests
            .iter()
            .filter(move |r| r.practice == ods && &r.patient == patient)
    }

    /// A patient's messages at a practice.
    pub fn messages_of<'a>(&'a self, ods: &'a str, patient: &'a Nid) -> impl Iterator<Item = &'a Message> + 'a {
        self.messages
            .iter()
            .filter(move |m| m.practice == ods && &m.patient == patient)
    }

    /// The linkage credentials of a patient at a practice.
    pub fn credentials_for(&self, ods: &str, nhs_number: &str) -> Option<&LinkageCredentials> {
        self.credentials
            .iter()
            .find(|c| c.practice == ods && c.nhs_number == nhs_number)
    }

    /// Every concept the record uses (for checks against the vocabulary).
    pub fn concepts(&self) -> Vec<&Concept> {
        let mut out: Vec<&Concept> = Vec::new();
        for p in &self.patients {
            let c = &p.clinical;
            for a in &c.allergies {
                out.push(&a.code);
                out.extend(a.substance.iter());
                out.extend(a.reactions.iter().map(|r| &r.manifestation));
            }
            out.extend(c.problems.iter().map(|x| &x.code));
            out.extend(c.medications.iter().map(|x| &x.code));
            for o in &c.observations {
                out.push(&o.code);
                if let ObservationValue::Components(parts) = &o.value {
                    out.extend(parts.iter().map(|p| &p.code));
                }
            }
            for i in &c.immunisations {
                out.push(&i.procedure);
                out.extend(i.vaccine.iter());
            }
            out.extend(c.consultations.iter().map(|x| &x.kind));
            out.extend(c.documents.iter().map(|x| &x.kind));
        }
        out
    }
}
