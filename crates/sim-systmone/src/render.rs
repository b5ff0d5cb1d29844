//! The record in SystmOne shapes: `Person` demographics, one `Item` per clinical entry (with the invented
//! attributes that carry every field the record holds), sessions, slots, appointments, messages and staff.
//! Both surfaces use these; the patient-facing one hides confidential items (see [`View::visible`]).

use crate::coding::{code_only, coded};
use crate::dates::{day, instant, partial};
use crate::xml::El;
use im1_sim::record::*;
use std::collections::HashMap;
use std::sync::{OnceLock, RwLock};

/// The SystmOne id of a neutral id (16 lower-case hex digits). Memoised: a reply derives dozens of ids and
/// the derivation (SHA-256, hex) showed in load profiles; the mapping is a pure function of the neutral id, so
/// one table serves every world.
pub fn tid(n: &Nid) -> String {
    static CACHE: OnceLock<RwLock<HashMap<Nid, String>>> = OnceLock::new();
    let cache = CACHE.get_or_init(Default::default);
    if let Some(id) = cache.read().unwrap_or_else(|e| e.into_inner()).get(n) {
        return id.clone();
    }
    let id = native_id(Supplier::SystmOne, n);
    cache
        .write()
        .unwrap_or_else(|e| e.into_inner())
        .insert(n.clone(), id.clone());
    id
}

/// A second SystmOne id for the same item (binary data ids, online user ids, event ids of lone items).
pub fn tsub(n: &Nid, purpose: &str) -> String {
    native_sub_id(Supplier::SystmOne, n, purpose)
}

/// Which surface is asking.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Surface {
    /// PFS: confidential items are withheld.
    Patient,
    /// Client Integration: everything, with `confidential="y|n"`.
    Clinician,
}

/// A read of the record for one surface.
#[derive(Clone, Copy)]
pub struct View<'a> {
    pub record: &'a Record,
    pub surface: Surface,
}

fn yn(b: bool) -> &'static str {
    if b {
        "y"
    } else {
        "n"
    }
}

/// Add `date` + `dateAccuracy` for a partial date under the given attribute names.
fn dated(el: El, names: (&'static str, &'static str), d: &PartialDate) -> El {
    let (value, acc) = partial(d);
    el.attr(names.0, value).attr(names.1, acc)
}

fn date_attrs(el: El, d: &PartialDate) -> El {
    dated(el, ("date", "dateAccuracy"), d)
}

/// Format a bound with the measured value's precision, so `5.0` stays `5.0`.
fn bound(v: f64, decimals: u8) -> String {
    format!("{:.*}", usize::from(decimals), v)
}

fn flag(i: Interpretation) -> &'static str {
    match i {
        Interpretation::High => "HIGH",
        Interpretation::Low => "LOW",
        Interpretation::Normal => "NORMAL",
    }
}

fn range_attrs(el: El, range: Option<(Option<f64>, Option<f64>)>, decimals: u8) -> El {
    let (lo, hi) = range.unwrap_or((None, None));
    el.opt("rangeLow", lo.map(|v| bound(v, decimals)))
        .opt("rangeHigh", hi.map(|v| bound(v, decimals)))
}

/// Free-text result as the patient-facing test results view gives it: `5.8 mmol/L (range 0.0-5.0) HIGH`.
pub fn result_text(o: &Observation) -> String {
    fn one(q: &Quantity, range: Option<(Option<f64>, Option<f64>)>, i: Option<Interpretation>) -> String {
        let mut s = format!("{} {}", q.value_text(), q.unit);
        match range {
            Some((Some(lo), Some(hi))) => {
                s.push_str(&format!(" (range {}-{})", bound(lo, q.decimals), bound(hi, q.decimals)))
            }
            Some((Some(lo), None)) => s.push_str(&format!(" (range >={})", bound(lo, q.decimals))),
            Some((None, Some(hi))) => s.push_str(&format!(" (range <={})", bound(hi, q.decimals))),
            _ => {}
        }
        if let Some(i) = i {
            s.push(' ');
            s.push_str(flag(i));
        }
        s
    }
    match &o.value {
        ObservationValue::Quantity(q) => one(q, o.range, o.interpretation),
        ObservationValue::Text(t) => t.clone(),
        ObservationValue::Components(parts) => parts
            .iter()
            .map(|c| format!("{}: {}", c.code.display, one(&c.value, c.range, c.interpretation)))
            .collect::<Vec<_>>()
            .join("; "),
        ObservationValue::None => String::new(),
    }
}

/// One clinical item of any kind.
#[derive(Clone, Copy)]
pub enum ItemRef<'a> {
    Allergy(&'a Allergy),
    Problem(&'a Problem),
    Medication(&'a MedicationCourse),
    Observation(&'a Observation),
    Immunisation(&'a Immunisation),
    Document(&'a Document),
}

/// The record sections a read can ask for.
pub const SECTIONS: [&str; 7] = [
    "allergies",
    "problems",
    "medications",
    "observations",
    "immunisations",
    "consultations",
    "documents",
];

impl<'a> ItemRef<'a> {
    /// The shared metadata.
    pub fn meta(&self) -> &'a ItemMeta {
        match *self {
            ItemRef::Allergy(x) => &x.meta,
            ItemRef::Problem(x) => &x.meta,
            ItemRef::Medication(x) => &x.meta,
            ItemRef::Observation(x) => &x.meta,
            ItemRef::Immunisation(x) => &x.meta,
            ItemRef::Document(x) => &x.meta,
        }
    }

    /// The section name the item belongs to.
    pub fn section(&self) -> &'static str {
        match self {
            ItemRef::Allergy(_) => "allergies",
            ItemRef::Problem(_) => "problems",
            ItemRef::Medication(_) => "medications",
            ItemRef::Observation(_) => "observations",
            ItemRef::Immunisation(_) => "immunisations",
            ItemRef::Document(_) => "documents",
        }
    }

    /// The clinically relevant date (onset, effective, start), falling back to when it was recorded.
    pub fn date(&self) -> PartialDate {
        match *self {
            ItemRef::Allergy(x) => x.onset.unwrap_or(PartialDate::Day(x.meta.recorded_at.date())),
            ItemRef::Problem(x) => x.onset,
            ItemRef::Medication(x) => PartialDate::Day(x.started_on),
            ItemRef::Observation(x) => x.effective,
            ItemRef::Immunisation(x) => x.date,
            ItemRef::Document(x) => x.date,
        }
    }

    /// The display term.
    pub fn term(&self) -> &'a str {
        match *self {
            ItemRef::Allergy(x) => &x.code.display,
            ItemRef::Problem(x) => &x.code.display,
            ItemRef::Medication(x) => &x.code.display,
            ItemRef::Observation(x) => &x.code.display,
            ItemRef::Immunisation(x) => &x.procedure.display,
            ItemRef::Document(x) => &x.kind.display,
        }
    }
}

/// Every item of a record, section by section, in record order.
pub fn all_items(c: &ClinicalRecord) -> Vec<ItemRef<'_>> {
    let mut v: Vec<ItemRef<'_>> = Vec::new();
    v.extend(c.allergies.iter().map(ItemRef::Allergy));
    v.extend(c.problems.iter().map(ItemRef::Problem));
    v.extend(c.medications.iter().map(ItemRef::Medication));
    v.extend(c.observations.iter().map(ItemRef::Observation));
    v.extend(c.immunisations.iter().map(ItemRef::Immunisation));
    v.extend(c.documents.iter().map(ItemRef::Document));
    v
}

/// Find an item by neutral id.
pub fn find_item<'a>(c: &'a ClinicalRecord, id: &Nid) -> Option<ItemRef<'a>> {
    all_items(c).into_iter().find(|i| &i.meta().id == id)
}

impl<'a> View<'a> {
    /// Whether the surface may see an item.
    pub fn visible(&self, meta: &ItemMeta) -> bool {
        self.surface == Surface::Clinician || !meta.confidential
    }

    /// A practitioner's display name.
    pub fn staff_name(&self, id: &Nid) -> String {
        self.record
            .practitioner(id)
            .map(|p| p.name.display())
            .unwrap_or_default()
    }

    fn meta_attrs(&self, el: El, meta: &ItemMeta) -> El {
        let el = el
            .attr("recordedDate", instant(meta.recorded_at))
            .attr("recordedBy", tid(&meta.recorded_by))
            .attr("recordedByName", self.staff_name(&meta.recorded_by))
            .opt("consultationId", meta.consultation.as_ref().map(tid));
        match self.surface {
            Surface::Clinician => el.attr("confidential", yn(meta.confidential)),
            Surface::Patient => el,
        }
    }

    /// The `Item` element for any clinical entry.
    pub fn item(&self, item: ItemRef<'_>) -> El {
        let meta = item.meta();
        let base = El::new("Item").attr("id", tid(&meta.id));
        let el = match item {
            ItemRef::Allergy(a) => self.allergy(base, a),
            ItemRef::Problem(p) => self.problem(base, p),
            ItemRef::Medication(m) => self.medication(base, m),
            ItemRef::Observation(o) => self.observation(base, o),
            ItemRef::Immunisation(i) => self.immunisation(base, i),
            ItemRef::Document(d) => self.document(base, d),
        };
        self.meta_attrs(el, meta)
    }

    fn allergy(&self, el: El, a: &Allergy) -> El {
        let el = el.attr("type", "Allergy");
        let el = match &a.onset {
            Some(d) => date_attrs(el, d),
            None => el,
        };
        let mut el = coded(el, &a.code).attr(
            "status",
            match a.status {
                AllergyStatus::Active => "active",
                AllergyStatus::Resolved => "resolved",
            },
        );
        if let Some(d) = &a.resolved_on {
            el = dated(el, ("endDate", "endDateAccuracy"), d);
        }
        let el = el.opt("notes", a.note.clone());
        let el = match &a.substance {
            Some(s) => el.child(coded(El::new("Substance"), s)),
            None => el,
        };
        el.children(a.reactions.iter().map(|r| {
            coded(El::new("Reaction"), &r.manifestation).attr(
                "severity",
                match r.severity {
                    Severity::Mild => "mild",
                    Severity::Moderate => "moderate",
                    Severity::Severe => "severe",
                },
            )
        }))
    }

    fn problem(&self, el: El, p: &Problem) -> El {
        let el = date_attrs(el.attr("type", "Problem"), &p.onset);
        let mut el = coded(el, &p.code)
            .attr(
                "status",
                match p.status {
                    ProblemStatus::Active => "active",
                    ProblemStatus::Past => "past",
                },
            )
            .attr(
                "significance",
                match p.significance {
                    Significance::Major => "major",
                    Significance::Minor => "minor",
                },
            );
        if let Some(d) = &p.ended {
            el = dated(el, ("endDate", "endDateAccuracy"), d);
        }
        el.opt("notes", p.note.clone())
            .children(p.linked.iter().map(|l| El::new("Link").attr("itemId", tid(l))))
    }

    fn medication(&self, el: El, m: &MedicationCourse) -> El {
        let el = el
            .attr("type", "Medication")
            .attr("date", day(m.started_on))
            .attr("dateAccuracy", "day");
        coded(el, &m.code)
            .attr(
                "courseType",
                match m.kind {
                    CourseKind::Acute => "Acute",
                    CourseKind::Repeat => "Repeat",
                },
            )
            .attr(
                "status",
                match m.status {
                    CourseStatus::Active => "active",
                    CourseStatus::Completed => "completed",
                    CourseStatus::Discontinued => "discontinued",
                },
            )
            .attr("dosage", m.dosage.clone())
            .attr("quantity", m.quantity.to_string())
            .attr("quantityUnit", m.quantity_unit.clone())
            .opt("endDate", m.ended_at.map(instant))
            .opt("reviewDate", m.review_on.map(day))
            .attr("requestable", yn(m.requestable))
            .opt("problemId", m.problem.as_ref().map(tid))
            .children(m.issues.iter().map(|i| {
                El::new("Issue")
                    .attr("id", tid(&i.id))
                    .attr("date", instant(i.issued_at))
                    .attr("quantity", i.quantity.to_string())
            }))
    }

    fn observation(&self, el: El, o: &Observation) -> El {
        let el = date_attrs(el.attr("type", "Measurement"), &o.effective).attr(
            "category",
            match o.kind {
                ObservationKind::VitalSign => "VitalSign",
                ObservationKind::Laboratory => "Laboratory",
                ObservationKind::SocialHistory => "SocialHistory",
                ObservationKind::RecordFlag => "RecordFlag",
            },
        );
        let mut el = coded(el, &o.code);
        let mut components = Vec::new();
        match &o.value {
            ObservationValue::Quantity(q) => {
                el = el.attr("value", q.value_text()).attr("units", q.unit.clone());
                el = range_attrs(el, o.range, q.decimals);
            }
            ObservationValue::Text(t) => el = el.attr("textValue", t.clone()),
            ObservationValue::Components(parts) => {
                components = parts
                    .iter()
                    .map(|c| {
                        let ce = coded(El::new("Component"), &c.code)
                            .attr("value", c.value.value_text())
                            .attr("units", c.value.unit.clone());
                        range_attrs(ce, c.range, c.value.decimals).opt("abnormalFlag", c.interpretation.map(flag))
                    })
                    .collect();
            }
            ObservationValue::None => {}
        }
        el.opt("abnormalFlag", o.interpretation.map(flag))
            .opt("problemId", o.problem.as_ref().map(tid))
            .opt("notes", o.note.clone())
            .children(components)
    }

    fn immunisation(&self, el: El, i: &Immunisation) -> El {
        let el = date_attrs(el.attr("type", "Immunisation"), &i.date);
        let el = coded(el, &i.procedure)
            .attr("given", yn(i.given))
            .opt("notGivenReason", i.not_given_reason.clone())
            .opt("batch", i.batch.clone())
            .opt("doseNumber", i.dose_number.map(|n| n.to_string()));
        match &i.vaccine {
            Some(v) => el.child(coded(El::new("Vaccine"), v)),
            None => el,
        }
    }

    fn document(&self, el: El, d: &Document) -> El {
        let el = date_attrs(el.attr("type", "Document"), &d.date);
        coded(el, &d.kind)
            .attr("title", d.title.clone())
            .attr("binaryDataId", tsub(&d.meta.id, "binary"))
            .attr("contentType", d.mime_type.clone())
            .attr("size", d.content.len().to_string())
            .attr("authorId", tid(&d.author))
            .attr("authorName", self.staff_name(&d.author))
    }

    /// The human-readable `details` of an item inside an `Event`.
    pub fn details(&self, item: ItemRef<'_>) -> String {
        match item {
            ItemRef::Observation(o) => {
                let v = result_text(o);
                if v.is_empty() {
                    o.code.display.clone()
                } else {
                    format!("{} {}", o.code.display, v)
                }
            }
            ItemRef::Medication(m) => format!("{}, {}", m.code.display, overview_text(item)),
            ItemRef::Immunisation(i) => match &i.batch {
                Some(b) => format!("{}, batch {b}", i.procedure.display),
                None => i.procedure.display.clone(),
            },
            ItemRef::Document(d) => d.title.clone(),
            other => other.term().to_string(),
        }
    }

    /// A patient's demographics as a `Person` (confirmed shape, extended with previous names, telecom,
    /// deceased date, ethnicity and GP registration).
    pub fn person(&self, p: &Patient, ods: &str) -> El {
        let mut el = El::new("Person")
            .attr("patientId", tid(&p.id))
            .attr("dateOfBirth", day(p.birth_date))
            .attr("dateAccuracy", "day")
            .attr("gender", gender(p.gender))
            .opt("deceasedDate", p.deceased_at.map(instant))
            .child(El::new("NationalId").attr("type", "NHS").text(p.nhs_number.clone()))
            .child(name_el("PersonName", &p.name));
        for prev in &p.previous_names {
            el.push(name_el("PreviousName", &prev.name).attr("endDate", day(prev.until)));
        }
        el.push(address(&p.address));
        for t in &p.telecom {
            el.push(match t {
                Telecom::Phone { value, use_ } => El::new("Telecom")
                    .attr(
                        "type",
                        match use_ {
                            ContactUse::Home => "home",
                            ContactUse::Mobile => "mobile",
                            ContactUse::Work => "work",
                        },
                    )
                    .attr("value", value.clone()),
                Telecom::Email { value } => El::new("Telecom").attr("type", "email").attr("value", value.clone()),
            });
        }
        if let Some(e) = &p.ethnicity {
            el.push(
                El::new("Ethnicity")
                    .attr("code", e.code)
                    .attr("system", e.system)
                    .attr("description", e.display),
            );
        }
        if let Some(r) = p.registration(ods) {
            el.push(
                El::new("GpRegistration")
                    .attr("unitId", r.practice.clone())
                    .attr("registrationDate", day(r.registered_on))
                    .attr("usualGpId", tid(&r.usual_gp))
                    .attr("usualGpName", self.staff_name(&r.usual_gp)),
            );
        }
        el
    }

    /// `SiteDetails` of a practice.
    pub fn site(&self, ods: &str) -> El {
        match self.record.practice(ods) {
            Some(pr) => El::new("SiteDetails")
                .attr("unitName", pr.name.clone())
                .attr("unitId", pr.ods.clone())
                .attr("telephone", pr.phone.clone())
                .child(address(&pr.address)),
            None => El::new("SiteDetails").attr("unitId", ods),
        }
    }

    /// A member of staff (invented `Staff` element).
    pub fn staff(&self, p: &Practitioner) -> El {
        name_el("Staff", &p.name)
            .attr("staffId", tid(&p.id))
            .attr("gender", gender(p.gender))
            .attr("registrationNumber", p.registration_number.clone())
            .children(p.roles.iter().map(|r| {
                El::new("Role")
                    .attr("roleId", tid(&r.id))
                    .attr("unitId", r.practice.clone())
                    .attr(
                        "role",
                        match r.role {
                            StaffRole::GeneralPractitioner => "GeneralPractitioner",
                            StaffRole::PracticeNurse => "PracticeNurse",
                            StaffRole::Pharmacist => "Pharmacist",
                            StaffRole::HealthcareAssistant => "HealthcareAssistant",
                        },
                    )
            }))
    }

    /// An `Appointment` element.
    pub fn appointment(&self, a: &Appointment) -> El {
        let slot = self.record.slot(&a.slot);
        let session = slot.and_then(|s| self.record.session(&s.session));
        let practice = self.record.practice(&a.practice);
        let mut el = El::new("Appointment")
            .attr("apptId", tid(&a.id))
            .opt("startDate", slot.map(|s| instant(s.starts_at)))
            .opt("endDate", slot.map(|s| instant(s.ends_at)))
            .attr("details", a.reason.clone().unwrap_or_default())
            .opt("siteName", practice.map(|p| p.name.clone()))
            // TPP's `address` attribute: the site's address on one line.
            .opt("address", practice.map(|p| one_line(&p.address)))
            .attr(
                "status",
                match a.status {
                    AppointmentStatus::Booked => "Booked",
                    AppointmentStatus::Cancelled => "Cancelled",
                    AppointmentStatus::Attended => "Attended",
                    AppointmentStatus::DidNotAttend => "DidNotAttend",
                },
            )
            .opt("sessionId", session.map(|s| s.number.to_string()))
            .opt("sessionType", session.map(|s| s.name.clone()))
            .opt("staffDetails", session.map(|s| self.staff_name(&s.practitioner)))
            .opt("staffId", session.map(|s| tid(&s.practitioner)))
            .opt("location", session.map(|s| s.location.clone()))
            .opt("deliveryMode", session.map(|s| delivery(s.delivery)))
            .opt("slotType", slot.map(|s| s.kind.clone()))
            .opt("telephone", a.telephone.clone())
            .attr("bookedDate", instant(a.booked_at))
            .opt("cancellationReason", a.cancellation_reason.clone());
        if let Some(p) = practice {
            el.push(address(&p.address));
        }
        el
    }

    /// A `Session` element (without slots).
    pub fn session(&self, s: &Session) -> El {
        El::new("Session")
            .attr("sessionId", s.number.to_string())
            .attr("type", s.name.clone())
            .attr("staffDetails", self.staff_name(&s.practitioner))
            .attr("staffId", tid(&s.practitioner))
            .attr("location", s.location.clone())
            .attr("deliveryMode", delivery(s.delivery))
            .attr("startDate", instant(s.starts_at))
            .attr("endDate", instant(s.ends_at))
    }

    /// A `Slot` element.
    pub fn slot(&self, s: &Slot) -> El {
        El::new("Slot")
            .attr("startDate", instant(s.starts_at))
            .attr("endDate", instant(s.ends_at))
            .attr("type", s.kind.clone())
    }

    /// A `Message` element.
    pub fn message(&self, m: &Message) -> El {
        El::new("Message")
            .attr("id", tid(&m.id))
            .attr("sentDate", instant(m.sent_at))
            .attr("fromPatient", yn(m.direction == Direction::ToPractice))
            .attr("sender", m.sender.clone())
            .attr("subject", m.subject.clone())
            .attr("read", yn(m.read))
            .child(El::new("Body").text(m.body.clone()))
    }

    /// A `MedicationRequest` element (invented: the patient's repeat prescription requests).
    pub fn prescription_request(&self, q: &PrescriptionRequest, patient: &Patient) -> El {
        El::new("MedicationRequest")
            .attr("requestId", tid(&q.id))
            .attr("date", instant(q.requested_at))
            .attr(
                "status",
                match q.status {
                    RequestStatus::Requested => "Requested",
                    RequestStatus::Issued => "Issued",
                    RequestStatus::Rejected => "Rejected",
                    RequestStatus::Cancelled => "Cancelled",
                },
            )
            .opt("notes", q.comment.clone())
            .children(q.courses.iter().map(|c| {
                let drug = patient.clinical.medications.iter().find(|m| &m.meta.id == c);
                let el = El::new("Medication").attr("drugId", tid(c));
                match drug {
                    Some(m) => code_only(el, &m.code).attr("drug", m.code.display.clone()),
                    None => el,
                }
            }))
    }
}

/// The text content of an overview item: reactions for allergies, dosage and quantity for drugs.
pub fn overview_text(item: ItemRef<'_>) -> String {
    match item {
        ItemRef::Allergy(a) => a
            .reactions
            .iter()
            .map(|r| r.manifestation.display.as_str())
            .collect::<Vec<_>>()
            .join(", "),
        ItemRef::Medication(m) => format!("{}, {} {}", m.dosage, m.quantity, m.quantity_unit),
        ItemRef::Observation(o) => result_text(o),
        other => other.term().to_string(),
    }
}

fn gender(g: Gender) -> &'static str {
    match g {
        Gender::Female => "F",
        Gender::Male => "M",
        Gender::Other => "I",
        Gender::Unknown => "U",
    }
}

pub fn delivery(d: DeliveryMode) -> &'static str {
    match d {
        DeliveryMode::InPerson => "InPerson",
        DeliveryMode::Telephone => "Telephone",
        DeliveryMode::Video => "Video",
    }
}

fn name_el(tag: &str, n: &PersonName) -> El {
    let middle = n.given.get(1..).map(|m| m.join(" ")).filter(|m| !m.is_empty());
    El::new(tag)
        .opt("title", n.title.clone())
        .attr("forename", n.given.first().cloned().unwrap_or_default())
        .opt("middleNames", middle)
        .attr("surname", n.family.clone())
}

/// An `Address` element: `houseName` is the house number or name as the record holds it.
/// An address on one line, as the `address` attribute of an appointment holds it.
fn one_line(a: &Address) -> String {
    let mut parts = a.lines();
    parts.push(a.town.clone());
    parts.extend(a.county.clone());
    parts.push(a.postcode.clone());
    parts.join(", ")
}

pub fn address(a: &Address) -> El {
    El::new("Address")
        .attr("houseName", a.house.clone())
        .attr("street", a.street.clone())
        .opt("locality", a.locality.clone())
        .attr("town", a.town.clone())
        .opt("county", a.county.clone())
        .attr("postcode", a.postcode.clone())
}
