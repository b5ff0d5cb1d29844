//! The record in EMIS shapes: demographics, `Users`, and the `MedicalRecord` sections. Fields the confirmed
//! shape lacks are added as invented fields (listed in DIALECT.md).

use crate::dates::{effective, midnight, with_offset};
use im1_sim::record::{
    native_id, CodeIdTable, Concept, ContactUse, Gender, ItemMeta, Nid, ObservationKind, ObservationValue, Patient,
    PersonName, Quantity, Record, StaffRole, Supplier, Telecom,
};
use im1_sim::record::{Interpretation, PartialDate};
use serde_json::{json, Map, Value};
use std::collections::HashMap;
use std::sync::{OnceLock, RwLock};

/// Who is reading: the patient (confidential items withheld) or a clinician (everything).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Surface {
    Patient,
    Clinician,
}

impl Surface {
    fn shows(self, meta: &ItemMeta) -> bool {
        self == Surface::Clinician || !meta.confidential
    }
}

/// A record section (`itemType`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ItemType {
    Allergies,
    Medication,
    Problems,
    TestResults,
    Immunisations,
    Consultations,
    Documents,
}

impl ItemType {
    pub const ALL: [ItemType; 7] = [
        ItemType::Allergies,
        ItemType::Medication,
        ItemType::Problems,
        ItemType::TestResults,
        ItemType::Immunisations,
        ItemType::Consultations,
        ItemType::Documents,
    ];

    pub fn name(self) -> &'static str {
        match self {
            ItemType::Allergies => "Allergies",
            ItemType::Medication => "Medication",
            ItemType::Problems => "Problems",
            ItemType::TestResults => "TestResults",
            ItemType::Immunisations => "Immunisations",
            ItemType::Consultations => "Consultations",
            ItemType::Documents => "Documents",
        }
    }

    pub fn parse(s: &str) -> Option<ItemType> {
        ItemType::ALL.into_iter().find(|t| t.name().eq_ignore_ascii_case(s))
    }
}

/// The EMIS GUID of a neutral id. Memoised: a reply derives dozens of ids and each is a SHA-256; the set of ids
/// is bounded by the record and its writes.
pub fn guid(nid: &Nid) -> String {
    static MEMO: OnceLock<RwLock<HashMap<Nid, String>>> = OnceLock::new();
    let memo = MEMO.get_or_init(RwLock::default);
    if let Some(g) = memo.read().unwrap_or_else(|e| e.into_inner()).get(nid) {
        return g.clone();
    }
    let g = native_id(Supplier::Emis, nid);
    memo.write()
        .unwrap_or_else(|e| e.into_inner())
        .insert(nid.clone(), g.clone());
    g
}

/// The CodeId of a concept (null if the concept is outside the table, which the generator never emits).
pub fn code_id(c: &Concept) -> Value {
    CodeIdTable::get().code_id(c).map_or(Value::Null, Value::from)
}

/// `{CodeId, Term}` of a concept.
fn coded(c: &Concept) -> Value {
    json!({"CodeId": code_id(c), "Term": c.display})
}

/// The UserInRoleGuid of a practitioner at a practice (their role there, else the person).
pub fn user_in_role(r: &Record, ods: &str, practitioner: &Nid) -> String {
    r.practitioner(practitioner)
        .and_then(|p| p.roles.iter().find(|x| x.practice == ods))
        .map_or_else(|| guid(practitioner), |role| guid(&role.id))
}

/// The practitioner behind a UserInRoleGuid (or a practitioner's own GUID).
pub fn practitioner_for(r: &Record, ods: &str, user_in_role: &str) -> Option<Nid> {
    let wanted = user_in_role.to_ascii_uppercase();
    r.practitioners
        .iter()
        .find(|p| guid(&p.id) == wanted || p.roles.iter().any(|x| x.practice == ods && guid(&x.id) == wanted))
        .map(|p| p.id.clone())
}

fn sex(g: Gender) -> &'static str {
    match g {
        Gender::Female => "Female",
        Gender::Male => "Male",
        Gender::Other => "Indeterminate",
        Gender::Unknown => "Unknown",
    }
}

fn role_name(role: StaffRole) -> &'static str {
    match role {
        StaffRole::GeneralPractitioner => "GP",
        StaffRole::PracticeNurse => "Practice Nurse",
        StaffRole::Pharmacist => "Pharmacist",
        StaffRole::HealthcareAssistant => "Healthcare Assistant",
    }
}

/// `Users`: every practitioner with a role at the practice.
pub fn users(r: &Record, ods: &str) -> Value {
    let list: Vec<Value> = r
        .practitioners
        .iter()
        .filter_map(|p| {
            let role = p.roles.iter().find(|x| x.practice == ods)?;
            Some(json!({
                "UserInRoleGuid": guid(&role.id),
                "Title": p.name.title,
                "Forenames": p.name.given.join(" "),
                "Surname": p.name.family,
                "Role": role_name(role.role),
                "UserGuid": guid(&p.id),
                "Sex": sex(p.gender),
                "RegistrationNumber": p.registration_number,
            }))
        })
        .collect();
    Value::Array(list)
}

fn name_fields(n: &PersonName) -> Value {
    json!({"Title": n.title, "Forenames": n.given.join(" "), "Surname": n.family})
}

/// An address as EMIS renders it, for patients and organisations alike.
pub fn address(a: &im1_sim::record::Address) -> Value {
    json!({
        "HouseNameFlatNumber": a.house,
        "NumberStreet": a.street,
        "Village": a.locality,
        "Town": a.town,
        "County": a.county,
        "Postcode": a.postcode,
    })
}

fn phone(p: &Patient, use_: ContactUse) -> Value {
    p.telecom
        .iter()
        .find_map(|t| match t {
            Telecom::Phone { value, use_: u } if *u == use_ => Some(Value::from(value.as_str())),
            _ => None,
        })
        .unwrap_or(Value::Null)
}

/// The full demographics shape (PFS `demographics`, Partner patient lookup).
pub fn demographics(r: &Record, ods: &str, p: &Patient) -> Value {
    let email = p
        .telecom
        .iter()
        .find_map(|t| match t {
            Telecom::Email { value } => Some(Value::from(value.as_str())),
            _ => None,
        })
        .unwrap_or(Value::Null);
    let reg = p.registration(ods);
    let usual_gp = reg.map(|g| &g.usual_gp);
    json!({
        "PatientGuid": guid(&p.id),
        "Title": p.name.title,
        "FirstName": p.name.given.first(),
        "MiddleNames": p.name.given.get(1..).map(|m| m.join(" ")).filter(|m| !m.is_empty()),
        "Forenames": p.name.given.join(" "),
        "Surname": p.name.family,
        "DateOfBirth": midnight(p.birth_date),
        "Sex": sex(p.gender),
        "NhsNumber": p.nhs_number,
        "ContactDetails": {
            "TelephoneNumber": phone(p, ContactUse::Home),
            "MobileNumber": phone(p, ContactUse::Mobile),
            "WorkTelephoneNumber": phone(p, ContactUse::Work),
            "EmailAddress": email,
        },
        "Address": address(&p.address),
        "PatientIdentifiers": [{"IdentifierValue": p.nhs_number, "IdentifierType": "NhsNumber"}],
        "PreviousNames": p.previous_names.iter().map(|n| {
            let mut v = name_fields(&n.name);
            if let Some(m) = v.as_object_mut() {
                m.insert("EndDate".into(), midnight(n.until).into());
            }
            v
        }).collect::<Vec<_>>(),
        "DateOfDeath": p.deceased_at.map(with_offset),
        "Ethnicity": p.ethnicity.as_ref().map(|e| json!({"Code": e.code, "Term": e.display, "System": e.system})),
        "RegistrationStatus": if reg.is_some() { "Registered" } else { "NotRegistered" },
        "Registration": reg.map(|g| json!({
            "NationalPracticeCode": g.practice,
            "DateOfRegistration": midnight(g.registered_on),
        })),
        "UsualGpUserInRoleGuid": usual_gp.map(|gp| user_in_role(r, ods, gp)),
        "UsualGpName": usual_gp.and_then(|gp| r.practitioner(gp)).map(|gp| gp.name.display()),
    })
}

/// Fields every clinical event carries.
fn event(r: &Record, ods: &str, meta: &ItemMeta, code: &Concept, date: Option<&PartialDate>) -> Map<String, Value> {
    let author = user_in_role(r, ods, &meta.recorded_by);
    let mut m = Map::new();
    m.insert("EventGuid".into(), guid(&meta.id).into());
    m.insert("Term".into(), code.display.clone().into());
    m.insert("CodeId".into(), code_id(code));
    m.insert("EffectiveDate".into(), effective(date));
    m.insert("AvailabilityDateTime".into(), with_offset(meta.recorded_at).into());
    m.insert("AuthorisingUserInRoleGuid".into(), author.clone().into());
    m.insert("EnteredByUserInRoleGuid".into(), author.into());
    m.insert("IsConfidential".into(), meta.confidential.into());
    m.insert("ConsultationGuid".into(), meta.consultation.as_ref().map(guid).into());
    m
}

fn associated_text(note: Option<&str>) -> Value {
    Value::Array(note.into_iter().map(|t| json!({ "Text": t })).collect())
}

fn range(r: Option<(Option<f64>, Option<f64>)>) -> Value {
    r.map_or(Value::Null, |(lo, hi)| json!({"Low": lo, "High": hi}))
}

fn abnormal(i: Option<Interpretation>) -> (Value, Value) {
    match i {
        None => (Value::Null, Value::Null),
        Some(Interpretation::Normal) => (false.into(), Value::Null),
        Some(Interpretation::High) => (true.into(), "High".into()),
        Some(Interpretation::Low) => (true.into(), "Low".into()),
    }
}

fn number(q: &Quantity) -> Value {
    // serde_json keeps `5.0` as `5.0`; the text copy keeps trailing zeros beyond one decimal.
    serde_json::Number::from_f64(q.value).map_or(Value::Null, Value::Number)
}

fn quantity_fields(m: &mut Map<String, Value>, q: &Quantity) {
    m.insert("NumericValue".into(), number(q));
    m.insert("NumericValueText".into(), q.value_text().into());
    m.insert("NumericOperator".into(), Value::Null);
    m.insert("NumericUnits".into(), q.unit.clone().into());
}

fn observation(r: &Record, ods: &str, o: &im1_sim::record::Observation) -> Value {
    let mut m = event(r, ods, &o.meta, &o.code, Some(&o.effective));
    let (obs_type, components) = match &o.value {
        ObservationValue::Quantity(q) => {
            quantity_fields(&mut m, q);
            ("Value", Value::Null)
        }
        ObservationValue::Text(t) => {
            m.insert("TextValue".into(), t.clone().into());
            ("Text", Value::Null)
        }
        ObservationValue::Components(parts) => {
            let list = parts
                .iter()
                .map(|c| {
                    let mut cm = Map::new();
                    cm.insert("Term".into(), c.code.display.clone().into());
                    cm.insert("CodeId".into(), code_id(&c.code));
                    quantity_fields(&mut cm, &c.value);
                    cm.insert("Range".into(), range(c.range));
                    let (ab, why) = abnormal(c.interpretation);
                    cm.insert("Abnormal".into(), ab);
                    cm.insert("AbnormalReason".into(), why);
                    Value::Object(cm)
                })
                .collect();
            ("Panel", Value::Array(list))
        }
        ObservationValue::None => ("Code", Value::Null),
    };
    m.insert("ObservationType".into(), obs_type.into());
    m.insert(
        "Category".into(),
        match o.kind {
            ObservationKind::VitalSign => "VitalSign",
            ObservationKind::Laboratory => "Laboratory",
            ObservationKind::SocialHistory => "SocialHistory",
            ObservationKind::RecordFlag => "RecordFlag",
        }
        .into(),
    );
    m.insert("Episodicity".into(), Value::Null);
    m.entry("TextValue").or_insert(Value::Null);
    m.insert("Range".into(), range(o.range));
    let (ab, why) = abnormal(o.interpretation);
    m.insert("Abnormal".into(), ab);
    m.insert("AbnormalReason".into(), why);
    m.insert("Components".into(), components);
    m.insert("ProblemGuid".into(), o.problem.as_ref().map(guid).into());
    m.insert("AssociatedText".into(), associated_text(o.note.as_deref()));
    Value::Object(m)
}

/// One section of a patient's record as `{MedicalRecord, FilterDetails}`.
pub fn record_section(r: &Record, ods: &str, p: &Patient, item: ItemType, surface: Surface) -> Value {
    let c = &p.clinical;
    let list: Vec<Value> = match item {
        ItemType::Allergies => c
            .allergies
            .iter()
            .filter(|a| surface.shows(&a.meta))
            .map(|a| {
                let mut m = event(r, ods, &a.meta, &a.code, a.onset.as_ref());
                m.insert("ObservationType".into(), "Allergy".into());
                m.insert("Status".into(), format!("{:?}", a.status).into());
                m.insert(
                    "ResolvedDate".into(),
                    a.resolved_on.as_ref().map_or(Value::Null, |d| effective(Some(d))),
                );
                m.insert("Substance".into(), a.substance.as_ref().map(coded).into());
                m.insert(
                    "Reactions".into(),
                    a.reactions
                        .iter()
                        .map(|x| {
                            json!({"CodeId": code_id(&x.manifestation), "Term": x.manifestation.display,
                                   "Severity": format!("{:?}", x.severity)})
                        })
                        .collect::<Vec<_>>()
                        .into(),
                );
                m.insert("AssociatedText".into(), associated_text(a.note.as_deref()));
                Value::Object(m)
            })
            .collect(),
        ItemType::Problems => c
            .problems
            .iter()
            .filter(|x| surface.shows(&x.meta))
            .map(|x| {
                let mut obs = event(r, ods, &x.meta, &x.code, Some(&x.onset));
                obs.insert("AssociatedText".into(), associated_text(x.note.as_deref()));
                json!({
                    "Status": format!("{:?}", x.status),
                    "Significance": format!("{:?}", x.significance),
                    "ProblemEndDate": x.ended.as_ref().map_or(Value::Null, |d| effective(Some(d))),
                    "LinkedItems": x.linked.iter().map(guid).collect::<Vec<_>>(),
                    "Observation": obs,
                })
            })
            .collect(),
        ItemType::Medication => c
            .medications
            .iter()
            .filter(|x| surface.shows(&x.meta))
            .map(|x| medication(r, ods, x))
            .collect(),
        ItemType::TestResults => c
            .observations
            .iter()
            .filter(|x| surface.shows(&x.meta))
            .map(|o| observation(r, ods, o))
            .collect(),
        ItemType::Immunisations => c
            .immunisations
            .iter()
            .filter(|x| surface.shows(&x.meta))
            .map(|x| {
                let mut m = event(r, ods, &x.meta, &x.procedure, Some(&x.date));
                m.insert("Given".into(), x.given.into());
                m.insert("NotGivenReason".into(), x.not_given_reason.clone().into());
                m.insert("BatchNumber".into(), x.batch.clone().into());
                m.insert("DoseNumber".into(), x.dose_number.into());
                m.insert("Vaccine".into(), x.vaccine.as_ref().map(coded).into());
                let text = x.batch.as_ref().map(|b| format!("Batch {b}"));
                m.insert("AssociatedText".into(), associated_text(text.as_deref()));
                Value::Object(m)
            })
            .collect(),
        ItemType::Consultations => c
            .consultations
            .iter()
            .filter(|x| surface.shows(&x.meta))
            .map(|x| {
                let date = PartialDate::Day(
                    x.started_at
                        .to_offset(im1_sim::record::dates::uk_offset_at(x.started_at))
                        .date(),
                );
                let mut m = event(r, ods, &x.meta, &x.kind, Some(&date));
                m.insert("Location".into(), x.location.clone().into());
                m.insert(
                    "ConsultantName".into(),
                    r.practitioner(&x.practitioner).map(|p| p.name.display()).into(),
                );
                m.insert(
                    "ConsultantUserInRoleGuid".into(),
                    user_in_role(r, ods, &x.practitioner).into(),
                );
                m.insert("StartDateTime".into(), with_offset(x.started_at).into());
                m.insert("DurationMinutes".into(), x.duration_minutes.into());
                let sections = x
                    .sections
                    .iter()
                    .map(|s| {
                        let items: Vec<String> = s
                            .items
                            .iter()
                            .filter(|id| surface == Surface::Clinician || !hidden(p, id))
                            .map(guid)
                            .collect();
                        json!({"Header": s.heading, "Observations": items})
                    })
                    .collect::<Vec<_>>();
                m.insert("Sections".into(), sections.into());
                Value::Object(m)
            })
            .collect(),
        ItemType::Documents => c
            .documents
            .iter()
            .filter(|x| surface.shows(&x.meta))
            .map(|x| {
                let mut obs = event(r, ods, &x.meta, &x.kind, Some(&x.date));
                obs.insert("AssociatedText".into(), Value::Array(Vec::new()));
                json!({
                    "DocumentGuid": guid(&x.meta.id),
                    "Title": x.title,
                    "Size": x.content.len(),
                    "Extension": extension(&x.mime_type),
                    "ContentType": x.mime_type,
                    "Available": true,
                    "AuthorUserInRoleGuid": user_in_role(r, ods, &x.author),
                    "Observation": obs,
                })
            })
            .collect(),
    };
    let mut record = Map::new();
    record.insert("PatientGuid".into(), guid(&p.id).into());
    record.insert("Title".into(), p.name.title.clone().into());
    record.insert("Forenames".into(), p.name.given.join(" ").into());
    record.insert("Surname".into(), p.name.family.clone().into());
    record.insert("Sex".into(), sex(p.gender).into());
    record.insert("DateOfBirth".into(), midnight(p.birth_date).into());
    record.insert(item.name().into(), Value::Array(list));
    record.insert("Users".into(), users(r, ods));
    json!({"MedicalRecord": record, "FilterDetails": {"ItemType": item.name()}})
}

/// Whether an item of the patient's record is confidential (so hidden from the patient).
fn hidden(p: &Patient, id: &Nid) -> bool {
    let c = &p.clinical;
    c.allergies.iter().any(|x| &x.meta.id == id && x.meta.confidential)
        || c.problems.iter().any(|x| &x.meta.id == id && x.meta.confidential)
        || c.medications.iter().any(|x| &x.meta.id == id && x.meta.confidential)
        || c.observations.iter().any(|x| &x.meta.id == id && x.meta.confidential)
        || c.immunisations.iter().any(|x| &x.meta.id == id && x.meta.confidential)
        || c.documents.iter().any(|x| &x.meta.id == id && x.meta.confidential)
}

/// File extension for a content type.
pub fn extension(mime: &str) -> &'static str {
    match mime {
        "application/pdf" => "pdf",
        "text/plain" => "txt",
        "text/html" => "html",
        "image/jpeg" => "jpg",
        "image/png" => "png",
        _ => "bin",
    }
}

/// `28 tablet`.
pub fn quantity_representation(x: &im1_sim::record::MedicationCourse) -> String {
    format!("{} {}", x.quantity, x.quantity_unit)
}

fn medication(r: &Record, ods: &str, x: &im1_sim::record::MedicationCourse) -> Value {
    let started = PartialDate::Day(x.started_on);
    let mut m = event(r, ods, &x.meta, &x.code, Some(&started));
    m.insert("MedicationCourseGuid".into(), guid(&x.meta.id).into());
    m.insert("DrugName".into(), x.code.display.clone().into());
    m.insert("Dosage".into(), x.dosage.clone().into());
    m.insert("Quantity".into(), x.quantity.into());
    m.insert("QuantityUnit".into(), x.quantity_unit.clone().into());
    m.insert("QuantityRepresentation".into(), quantity_representation(x).into());
    m.insert("IsMixture".into(), false.into());
    m.insert("Mixture".into(), Value::Null);
    m.insert(
        "FirstIssueDate".into(),
        x.issues.first().map(|i| with_offset(i.issued_at)).into(),
    );
    m.insert(
        "LastIssueDate".into(),
        x.issues.last().map(|i| with_offset(i.issued_at)).into(),
    );
    m.insert("PrescriptionType".into(), format!("{:?}", x.kind).into());
    m.insert("DrugStatus".into(), format!("{:?}", x.status).into());
    m.insert("StartDate".into(), midnight(x.started_on).into());
    m.insert("EndDate".into(), x.ended_at.map(with_offset).into());
    m.insert("ReviewDate".into(), x.review_on.map(midnight).into());
    m.insert("CanBeRequested".into(), x.requestable.into());
    m.insert("ProblemGuid".into(), x.problem.as_ref().map(guid).into());
    m.insert(
        "Issues".into(),
        x.issues
            .iter()
            .map(|i| {
                json!({"IssueGuid": guid(&i.id), "IssueDate": with_offset(i.issued_at),
                       "Quantity": i.quantity, "QuantityUnit": x.quantity_unit})
            })
            .collect::<Vec<_>>()
            .into(),
    );
    Value::Object(m)
}

/// A section's JSON bytes, from the cache when the world has not changed since it was built.
pub fn section_bytes(e: &crate::routes::Emis, patient: &Nid, item: ItemType, surface: Surface) -> Option<bytes::Bytes> {
    let stamp = e.world.last_change_at();
    let ods = e.config.practice_ods.as_str();
    e.sections.get_or_build((patient.clone(), item, surface), stamp, || {
        e.world.read(|r| {
            r.patient(patient).map(|p| {
                bytes::Bytes::from(serde_json::to_vec(&record_section(r, ods, p, item, surface)).unwrap_or_default())
            })
        })
    })
}
