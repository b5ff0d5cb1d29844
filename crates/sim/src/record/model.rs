//! The supplier-neutral record: plain data, no behaviour beyond small lookups.
//!
//! One clinical record per patient, shared by the three demo practices (so the three simulators agree, even
//! after writes); practice-scoped data (registration, appointments, slots, prescription requests, messages,
//! service switches, credentials) is held per practice. Lists keep generation order; nothing is keyed by a
//! hash map, so serialising a record is deterministic.

use super::dates::PartialDate;
use super::ids::{Nid, Supplier};
use super::vocab::Concept;
use serde::{Serialize, Serializer};
use time::{Date, OffsetDateTime};

time::serde::format_description!(date_format, Date, "[year]-[month]-[day]");

/// Serialise binary content as base64 (documents) so a serialised record stays text.
fn as_base64<S: Serializer>(bytes: &[u8], s: S) -> Result<S::Ok, S::Error> {
    use base64::Engine;
    s.serialize_str(&base64::engine::general_purpose::STANDARD.encode(bytes))
}

/// The whole synthetic world for one seed.
#[derive(Debug, Clone, Serialize)]
pub struct Record {
    pub seed: u64,
    /// The anchor date everything is generated relative to ("today" for the record).
    #[serde(with = "date_format")]
    pub today: Date,
    pub practices: Vec<Practice>,
    pub practitioners: Vec<Practitioner>,
    pub patients: Vec<Patient>,
    pub sessions: Vec<Session>,
    pub slots: Vec<Slot>,
    pub appointments: Vec<Appointment>,
    pub prescription_requests: Vec<PrescriptionRequest>,
    pub messages: Vec<Message>,
    /// Who may act for whom (parent for child).
    pub proxy_links: Vec<ProxyLink>,
    pub credentials: Vec<LinkageCredentials>,
}

// ---------------------------------------------------------------------------------------------------------------
// Organisations and staff

/// Services a practice (or a patient at a practice) can have switched on or off.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub enum Service {
    /// Viewing the care record.
    Records,
    Appointments,
    Prescriptions,
    Messaging,
}

/// On/off switches for the four patient-facing services.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct ServiceSwitches {
    pub records: bool,
    pub appointments: bool,
    pub prescriptions: bool,
    pub messaging: bool,
}

impl ServiceSwitches {
    /// Everything on.
    pub const ALL_ON: ServiceSwitches = ServiceSwitches {
        records: true,
        appointments: true,
        prescriptions: true,
        messaging: true,
    };

    /// Whether a service is on.
    pub fn allows(&self, service: Service) -> bool {
        match service {
            Service::Records => self.records,
            Service::Appointments => self.appointments,
            Service::Prescriptions => self.prescriptions,
            Service::Messaging => self.messaging,
        }
    }

    /// Switch one service.
    pub fn set(&mut self, service: Service, on: bool) {
        match service {
            Service::Records => self.records = on,
            Service::Appointments => self.appointments = on,
            Service::Prescriptions => self.prescriptions = on,
            Service::Messaging => self.messaging = on,
        }
    }
}

/// A UK postal address.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Address {
    /// House number, or house name / flat (`1`, `Flat 2, Rose Court`).
    pub house: String,
    /// Street name (`Test Lane`).
    pub street: String,
    pub locality: Option<String>,
    pub town: String,
    pub county: Option<String>,
    pub postcode: String,
}

impl Address {
    /// The address lines before the town: `1 Test Lane` when the house is a number, else house then street;
    /// then the locality.
    pub fn lines(&self) -> Vec<String> {
        let mut lines = Vec::new();
        if self.house.bytes().all(|b| b.is_ascii_digit()) {
            lines.push(format!("{} {}", self.house, self.street));
        } else {
            lines.push(self.house.clone());
            lines.push(self.street.clone());
        }
        lines.extend(self.locality.clone());
        lines
    }
}

/// A GP practice (one per demo supplier).
#[derive(Debug, Clone, Serialize)]
pub struct Practice {
    pub id: Nid,
    /// ODS code, e.g. `Y90001`.
    pub ods: String,
    /// Which supplier's system the practice runs.
    pub supplier: Supplier,
    pub name: String,
    pub address: Address,
    pub phone: String,
    /// Practice-wide switches; a patient's own switches can only narrow them.
    pub services: ServiceSwitches,
}

/// A member of staff's job.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum StaffRole {
    GeneralPractitioner,
    PracticeNurse,
    Pharmacist,
    HealthcareAssistant,
}

/// One role of a practitioner at one practice.
#[derive(Debug, Clone, Serialize)]
pub struct PractitionerRole {
    pub id: Nid,
    pub practice: String,
    pub role: StaffRole,
}

/// A clinician; the same people work at all three demo practices so every simulator names the same author.
#[derive(Debug, Clone, Serialize)]
pub struct Practitioner {
    pub id: Nid,
    pub name: PersonName,
    pub gender: Gender,
    /// A synthetic professional registration number (not a real GMC/NMC number).
    pub registration_number: String,
    pub roles: Vec<PractitionerRole>,
}

// ---------------------------------------------------------------------------------------------------------------
// Patients

/// Administrative gender.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Gender {
    Female,
    Male,
    Other,
    Unknown,
}

/// A person's name.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PersonName {
    pub title: Option<String>,
    /// Given names, first one first.
    pub given: Vec<String>,
    pub family: String,
}

impl PersonName {
    /// "Title Given Family", for letters and display.
    pub fn display(&self) -> String {
        let mut parts: Vec<&str> = Vec::new();
        if let Some(t) = &self.title {
            parts.push(t);
        }
        parts.extend(self.given.iter().map(String::as_str));
        parts.push(&self.family);
        parts.join(" ")
    }
}

/// A name the patient used before (e.g. a birth surname).
#[derive(Debug, Clone, Serialize)]
pub struct PreviousName {
    pub name: PersonName,
    /// The last day the name was used.
    #[serde(with = "date_format")]
    pub until: Date,
}

/// How a contact point is used.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum ContactUse {
    Home,
    Mobile,
    Work,
}

/// A telephone number or e-mail address.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub enum Telecom {
    Phone { value: String, use_: ContactUse },
    Email { value: String },
}

/// An ethnic category from the NHS data dictionary (UK Core `UKCore-EthnicCategoryEngland`, an
/// administrative code system, not a clinical one).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct EthnicCategory {
    pub system: &'static str,
    pub code: &'static str,
    pub display: &'static str,
}

/// Registration of a patient at one practice.
#[derive(Debug, Clone, Serialize)]
pub struct Registration {
    pub practice: String,
    #[serde(with = "date_format")]
    pub registered_on: Date,
    /// The usual GP (a practitioner id).
    pub usual_gp: Nid,
    /// Per-patient service switches at this practice.
    pub services: ServiceSwitches,
}

/// A synthetic patient with their clinical record.
#[derive(Debug, Clone, Serialize)]
pub struct Patient {
    pub id: Nid,
    pub nhs_number: String,
    pub name: PersonName,
    pub previous_names: Vec<PreviousName>,
    pub gender: Gender,
    #[serde(with = "date_format")]
    pub birth_date: Date,
    #[serde(with = "time::serde::rfc3339::option")]
    pub deceased_at: Option<OffsetDateTime>,
    pub address: Address,
    pub telecom: Vec<Telecom>,
    pub ethnicity: Option<EthnicCategory>,
    /// One registration per demo practice.
    pub registrations: Vec<Registration>,
    pub clinical: ClinicalRecord,
}

impl Patient {
    /// Whether a demographic search by surname finds the patient: a current or former family name that starts
    /// with it, in any case and with or without accents. The simulated dialects' patient searches (EMIS
    /// `patients?surname=`, SystmOne `PatientSearch surname`, Medicus `patient/find` by name) all read a
    /// surname so.
    pub fn surname_starts_with(&self, surname: &str) -> bool {
        let wanted = fold(surname.trim());
        !wanted.is_empty()
            && std::iter::once(&self.name)
                .chain(self.previous_names.iter().map(|p| &p.name))
                .any(|name| fold(&name.family).starts_with(&wanted))
    }

    /// The registration at a practice.
    pub fn registration(&self, ods: &str) -> Option<&Registration> {
        self.registrations.iter().find(|r| r.practice == ods)
    }

    /// Whether the record holds a type 1 opt-out (the `consent_opt_out` entry `827241000000103`).
    pub fn has_type1_opt_out(&self) -> bool {
        self.clinical
            .observations
            .iter()
            .any(|o| o.code.code == super::TYPE1_OPT_OUT_CODE)
    }
}

/// A parent (or other carer) who may act for another patient.
#[derive(Debug, Clone, Serialize)]
pub struct ProxyLink {
    /// The patient who acts.
    pub actor: Nid,
    /// The patient acted for.
    pub patient: Nid,
    pub relationship: Relationship,
}

/// The relationship of a proxy to the patient.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Relationship {
    Mother,
    Father,
    Guardian,
}

// ---------------------------------------------------------------------------------------------------------------
// Clinical record

/// Fields every clinical item shares.
#[derive(Debug, Clone, Serialize)]
pub struct ItemMeta {
    pub id: Nid,
    /// When the item was entered in the GP system.
    #[serde(with = "time::serde::rfc3339")]
    pub recorded_at: OffsetDateTime,
    /// The practitioner who entered or authorised it.
    pub recorded_by: Nid,
    /// Hidden from patient-facing and third-party access.
    pub confidential: bool,
    /// The consultation the item was recorded in, if any.
    pub consultation: Option<Nid>,
}

/// The whole clinical record of one patient.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ClinicalRecord {
    pub allergies: Vec<Allergy>,
    pub problems: Vec<Problem>,
    pub medications: Vec<MedicationCourse>,
    pub observations: Vec<Observation>,
    pub immunisations: Vec<Immunisation>,
    pub consultations: Vec<Consultation>,
    pub documents: Vec<Document>,
}

impl ClinicalRecord {
    /// When the record changed: each item recorded, and each medication issued.
    pub fn change_times(&self) -> impl Iterator<Item = OffsetDateTime> + '_ {
        self.allergies
            .iter()
            .map(|x| x.meta.recorded_at)
            .chain(self.problems.iter().map(|x| x.meta.recorded_at))
            .chain(
                self.medications
                    .iter()
                    .flat_map(|m| m.issues.iter().map(|x| x.issued_at)),
            )
            .chain(self.observations.iter().map(|x| x.meta.recorded_at))
            .chain(self.immunisations.iter().map(|x| x.meta.recorded_at))
            .chain(self.consultations.iter().map(|x| x.meta.recorded_at))
            .chain(self.documents.iter().map(|x| x.meta.recorded_at))
    }
}

/// Clinical status of an allergy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum AllergyStatus {
    Active,
    Resolved,
}

/// Severity of a reaction.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Severity {
    Mild,
    Moderate,
    Severe,
}

/// One reaction to an allergen.
#[derive(Debug, Clone, Serialize)]
pub struct Reaction {
    pub manifestation: Concept,
    pub severity: Severity,
}

/// An allergy or intolerance (including "no known (drug) allergy" entries).
#[derive(Debug, Clone, Serialize)]
pub struct Allergy {
    pub meta: ItemMeta,
    pub code: Concept,
    /// The substance, when the vocabulary has a separate substance concept.
    pub substance: Option<Concept>,
    pub onset: Option<PartialDate>,
    pub status: AllergyStatus,
    pub resolved_on: Option<PartialDate>,
    pub reactions: Vec<Reaction>,
    pub note: Option<String>,
}

/// Whether a problem is current.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum ProblemStatus {
    Active,
    Past,
}

/// How significant a problem is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Significance {
    Major,
    Minor,
}

/// A problem-list entry.
#[derive(Debug, Clone, Serialize)]
pub struct Problem {
    pub meta: ItemMeta,
    pub code: Concept,
    pub status: ProblemStatus,
    pub significance: Significance,
    pub onset: PartialDate,
    pub ended: Option<PartialDate>,
    /// Items linked to the problem (observations, medication courses).
    pub linked: Vec<Nid>,
    pub note: Option<String>,
}

/// Acute (one-off) or repeat prescribing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum CourseKind {
    Acute,
    Repeat,
}

/// Where a course stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum CourseStatus {
    Active,
    Completed,
    Discontinued,
}

/// One issue (prescription) of a course.
#[derive(Debug, Clone, Serialize)]
pub struct Issue {
    pub id: Nid,
    #[serde(with = "time::serde::rfc3339")]
    pub issued_at: OffsetDateTime,
    pub quantity: u32,
}

/// A medication course (the authorisation) with its issues.
#[derive(Debug, Clone, Serialize)]
pub struct MedicationCourse {
    pub meta: ItemMeta,
    /// The dm+d product.
    pub code: Concept,
    pub kind: CourseKind,
    pub status: CourseStatus,
    /// Dosage instructions as free text.
    pub dosage: String,
    pub quantity: u32,
    /// Unit of `quantity`, e.g. `tablet`, `capsule`, `inhaler`.
    pub quantity_unit: String,
    #[serde(with = "date_format")]
    pub started_on: Date,
    #[serde(with = "time::serde::rfc3339::option")]
    pub ended_at: Option<OffsetDateTime>,
    #[serde(with = "date_format::option")]
    pub review_on: Option<Date>,
    /// Whether the patient may order it online (repeats only).
    pub requestable: bool,
    pub issues: Vec<Issue>,
    pub problem: Option<Nid>,
}

/// What kind of observation this is (selects the FHIR category).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum ObservationKind {
    VitalSign,
    Laboratory,
    SocialHistory,
    /// A coded record flag with no value (e.g. the type 1 opt-out).
    RecordFlag,
}

/// A numeric value with its UCUM unit; `decimals` keeps the precision it was measured to (`5.0` stays `5.0`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Quantity {
    pub value: f64,
    pub decimals: u8,
    /// UCUM unit code (`kg`, `mmol/L`, `mm[Hg]`).
    pub unit: String,
}

impl Quantity {
    /// The value with exactly `decimals` fraction digits.
    pub fn value_text(&self) -> String {
        format!("{:.*}", usize::from(self.decimals), self.value)
    }
}

/// An interpretation flag for a result.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Interpretation {
    Normal,
    High,
    Low,
}

/// A component of a panel observation (blood pressure).
#[derive(Debug, Clone, Serialize)]
pub struct Component {
    pub code: Concept,
    pub value: Quantity,
    pub range: Option<(Option<f64>, Option<f64>)>,
    pub interpretation: Option<Interpretation>,
}

/// An observation's value.
#[derive(Debug, Clone, Serialize)]
pub enum ObservationValue {
    Quantity(Quantity),
    Text(String),
    /// A panel whose values are in its components (blood pressure).
    Components(Vec<Component>),
    /// Coded entry only.
    None,
}

/// An observation: vital sign, test result, social history or coded flag.
#[derive(Debug, Clone, Serialize)]
pub struct Observation {
    pub meta: ItemMeta,
    pub code: Concept,
    pub kind: ObservationKind,
    pub effective: PartialDate,
    pub value: ObservationValue,
    /// Reference range (low, high) for a quantity value.
    pub range: Option<(Option<f64>, Option<f64>)>,
    pub interpretation: Option<Interpretation>,
    pub problem: Option<Nid>,
    pub note: Option<String>,
}

/// An immunisation, given or not.
#[derive(Debug, Clone, Serialize)]
pub struct Immunisation {
    pub meta: ItemMeta,
    /// The vaccination procedure (SNOMED CT).
    pub procedure: Concept,
    /// The vaccine product (dm+d), when the vocabulary has one that fits.
    pub vaccine: Option<Concept>,
    pub date: PartialDate,
    pub given: bool,
    /// Why it was not given (free text; the vocabulary has no coded reasons).
    pub not_given_reason: Option<String>,
    pub batch: Option<String>,
    pub dose_number: Option<u32>,
}

/// A titled section of a consultation and the items recorded under it.
#[derive(Debug, Clone, Serialize)]
pub struct Section {
    pub heading: String,
    pub items: Vec<Nid>,
}

/// A consultation (encounter) with its sections.
#[derive(Debug, Clone, Serialize)]
pub struct Consultation {
    pub meta: ItemMeta,
    pub kind: Concept,
    #[serde(with = "time::serde::rfc3339")]
    pub started_at: OffsetDateTime,
    pub duration_minutes: u32,
    pub practitioner: Nid,
    /// Where it took place (a place name, not a practice code).
    pub location: String,
    pub sections: Vec<Section>,
}

/// A document attached to the record.
#[derive(Debug, Clone, Serialize)]
pub struct Document {
    pub meta: ItemMeta,
    pub kind: Concept,
    pub title: String,
    pub date: PartialDate,
    /// `application/pdf` or `text/plain`.
    pub mime_type: String,
    #[serde(serialize_with = "as_base64")]
    pub content: Vec<u8>,
    pub author: Nid,
}

// ---------------------------------------------------------------------------------------------------------------
// Appointments, prescriptions, messages (per practice)

/// How an appointment is delivered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum DeliveryMode {
    InPerson,
    Telephone,
    Video,
}

/// A clinician's session at a practice: a run of slots.
#[derive(Debug, Clone, Serialize)]
pub struct Session {
    pub id: Nid,
    pub practice: String,
    /// A per-practice number for suppliers that use numeric session ids.
    pub number: u32,
    pub name: String,
    pub practitioner: Nid,
    pub location: String,
    pub delivery: DeliveryMode,
    #[serde(with = "time::serde::rfc3339")]
    pub starts_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    pub ends_at: OffsetDateTime,
}

/// A bookable slot. It is free when no live appointment holds it and it starts after now.
#[derive(Debug, Clone, Serialize)]
pub struct Slot {
    pub id: Nid,
    pub practice: String,
    /// A per-practice number for suppliers that use numeric slot ids.
    pub number: u32,
    pub session: Nid,
    /// Slot type label, e.g. `GP 10 min`.
    pub kind: String,
    #[serde(with = "time::serde::rfc3339")]
    pub starts_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    pub ends_at: OffsetDateTime,
    /// The appointment holding the slot (None: free).
    pub appointment: Option<Nid>,
}

/// Where an appointment stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum AppointmentStatus {
    Booked,
    Cancelled,
    Attended,
    DidNotAttend,
}

/// A booked (or once booked) appointment.
#[derive(Debug, Clone, Serialize)]
pub struct Appointment {
    pub id: Nid,
    pub practice: String,
    pub patient: Nid,
    pub slot: Nid,
    pub status: AppointmentStatus,
    pub reason: Option<String>,
    pub telephone: Option<String>,
    #[serde(with = "time::serde::rfc3339")]
    pub booked_at: OffsetDateTime,
    pub cancellation_reason: Option<String>,
}

/// Where a repeat prescription request stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum RequestStatus {
    Requested,
    Issued,
    Rejected,
    Cancelled,
}

/// A patient's request for repeat medication.
#[derive(Debug, Clone, Serialize)]
pub struct PrescriptionRequest {
    pub id: Nid,
    pub practice: String,
    pub patient: Nid,
    /// Medication course ids requested.
    pub courses: Vec<Nid>,
    pub comment: Option<String>,
    #[serde(with = "time::serde::rfc3339")]
    pub requested_at: OffsetDateTime,
    pub status: RequestStatus,
}

/// Which way a message went.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Direction {
    ToPractice,
    FromPractice,
}

/// A message between a patient and their practice.
#[derive(Debug, Clone, Serialize)]
pub struct Message {
    pub id: Nid,
    pub practice: String,
    pub patient: Nid,
    pub direction: Direction,
    /// Display name of the sender.
    pub sender: String,
    pub subject: String,
    pub body: String,
    #[serde(with = "time::serde::rfc3339")]
    pub sent_at: OffsetDateTime,
    pub read: bool,
}

// ---------------------------------------------------------------------------------------------------------------
// Linkage credentials

/// The practice-issued linkage secret, in the shape each supplier's patient-facing API expects.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub enum LinkageSecret {
    /// Account ID + Linkage Key + ODS code (EMIS PFS, as NHS login hands them over).
    AccountLinkageKey {
        account_id: String,
        linkage_key: String,
        ods_code: String,
    },
    /// Account id + passphrase (SystmOne `LinkAccount`).
    AccountPassphrase { account_id: String, passphrase: String },
    /// A patient app linkage token (Medicus), `{tenant}-{6 digits}-{6 digits}`.
    LinkageToken { token: String },
}

/// One patient's linkage credentials at one practice.
#[derive(Debug, Clone, Serialize)]
pub struct LinkageCredentials {
    pub practice: String,
    pub patient: Nid,
    pub nhs_number: String,
    /// The patient's (synthetic) NHS login subject, the same at every practice.
    pub nhs_login_sub: String,
    pub secret: LinkageSecret,
}

/// A name as the simulated searches compare it: each letter decomposed, its accents dropped, lower case
/// (`Müller` is `muller`).
pub fn fold(text: &str) -> String {
    use unicode_normalization::{char::is_combining_mark, UnicodeNormalization};
    text.nfd()
        .filter(|c| !is_combining_mark(*c))
        .flat_map(char::to_lowercase)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_fold_without_case_or_accents() {
        assert_eq!(fold("Müller"), "muller");
        assert_eq!(fold("BRONTË"), "bronte");
    }

    #[test]
    fn surnames_are_found_as_they_start_current_or_former_in_any_case() {
        let record = crate::record::generate::generate(&crate::record::generate::GenerateOptions {
            seed: 1,
            patients: 2,
            today: time::macros::date!(2026 - 12 - 06),
        });
        // Alex Tester, once Alex Sample.
        let mut alex = record.patient_by_nhs_number("9000000009").unwrap().clone();
        assert!(alex.surname_starts_with("tes"));
        assert!(alex.surname_starts_with(" SAMPLE "));
        assert!(!alex.surname_starts_with("Tester-Smith"));
        assert!(!alex.surname_starts_with("  "));
        alex.name.family = "Brontë".into();
        assert!(alex.surname_starts_with("bronte"));
    }
}
