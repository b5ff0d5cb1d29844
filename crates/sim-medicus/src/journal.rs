//! The patient journal: every section of the record as care record elements, newest first, one paged call
//! with a `types=` filter. Both surfaces share the rendering, and both leave items confidential from third
//! parties out (confirmed for the Transactional journal, fact sheet A5).

use crate::errors::ApiError;
use crate::paging;
use crate::style::{concept, date, datetime, nid};
use im1_sim::record::{
    native_sub_id, Allergy, AllergyStatus, Component, Consultation, CourseKind, CourseStatus, Document, Immunisation,
    Interpretation, ItemMeta, MedicationCourse, Nid, Observation, ObservationKind, ObservationValue, Patient, Problem,
    ProblemStatus, Quantity, Record, Severity, Significance, Supplier,
};
use serde_json::{json, Value};
use time::OffsetDateTime;

/// Which API is asking: the patient-facing one hides confidential items.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Surface {
    Pfs,
    Transactional,
}

impl Surface {
    pub fn api(self) -> &'static str {
        match self {
            Surface::Pfs => "pfs-api",
            Surface::Transactional => "transactional-api",
        }
    }
}

/// Element kinds the `types=` filter accepts (the confirmed list; the simulator fills the ones the record has).
pub const ELEMENT_TYPES: &[&str] = &[
    "allergy-intolerance",
    "care-record-document",
    "care-record-note",
    "communication",
    "encounter",
    "emed3-fit-note",
    "immunisation",
    "investigation-report",
    "medication-administration",
    "medication-statement",
    "observation",
    "outbound-referral",
    "prescription",
    "procedure",
    "problem",
];

/// What one journal read needs.
pub struct View<'a> {
    pub record: &'a Record,
    pub patient: &'a Patient,
    pub tenant: &'a str,
    pub surface: Surface,
}

/// Journal query parameters.
#[derive(Debug, Default)]
pub struct Query<'a> {
    pub types: Option<&'a str>,
    pub from: Option<&'a str>,
    pub until: Option<&'a str>,
    pub cursor: Option<&'a str>,
    pub limit: Option<&'a str>,
}

impl View<'_> {
    /// Items confidential from third parties are left out on both APIs: from the patient's own, and from the
    /// Transactional journal (confirmed, fact sheet A5).
    fn shown(&self, meta: &ItemMeta) -> bool {
        !meta.confidential
    }

    fn practitioner(&self, id: &Nid) -> Value {
        match self.record.practitioner(id) {
            Some(p) => json!({"id": nid(&p.id), "name": p.name.display()}),
            None => Value::Null,
        }
    }

    /// Fields every element carries.
    fn base(&self, kind: &str, id: String, meta: &ItemMeta) -> Value {
        json!({
            "type": kind,
            "id": id,
            "journalEntryDate": datetime(meta.recorded_at),
            "recordingPractitioner": self.practitioner(&meta.recorded_by),
            "confidential": meta.confidential,
            "encounterId": meta.consultation.as_ref().map(nid),
        })
    }

    fn allergy(&self, a: &Allergy) -> Value {
        let mut v = self.base("allergy-intolerance", nid(&a.meta.id), &a.meta);
        v["code"] = concept(&a.code);
        v["substance"] = a.substance.as_ref().map(concept).unwrap_or(Value::Null);
        v["onsetDate"] = json!(a.onset.map(|d| d.to_string()));
        v["status"] = json!(match a.status {
            AllergyStatus::Active => "active",
            AllergyStatus::Resolved => "resolved",
        });
        v["resolvedDate"] = json!(a.resolved_on.map(|d| d.to_string()));
        v["reactions"] = a
            .reactions
            .iter()
            .map(|r| {
                json!({"manifestation": concept(&r.manifestation), "severity": match r.severity {
                    Severity::Mild => "mild",
                    Severity::Moderate => "moderate",
                    Severity::Severe => "severe",
                }})
            })
            .collect();
        v["note"] = json!(a.note);
        v
    }

    fn problem(&self, p: &Problem) -> Value {
        let mut v = self.base("problem", nid(&p.meta.id), &p.meta);
        v["code"] = concept(&p.code);
        v["status"] = json!(match p.status {
            ProblemStatus::Active => "active",
            ProblemStatus::Past => "past",
        });
        v["significance"] = json!(match p.significance {
            Significance::Major => "major",
            Significance::Minor => "minor",
        });
        v["startDate"] = json!(p.onset.to_string());
        v["endDate"] = json!(p.ended.map(|d| d.to_string()));
        v["linkedElementIds"] = p.linked.iter().map(|l| json!(nid(l))).collect();
        v["note"] = json!(p.note);
        v
    }

    fn prescription(&self, m: &MedicationCourse) -> Value {
        let mut v = self.base("prescription", nid(&m.meta.id), &m.meta);
        v["prescriptionType"] = json!(course_kind(m.kind));
        for (k, x) in prescription_fields(m) {
            v[k] = x;
        }
        v
    }

    fn observation(&self, o: &Observation) -> Value {
        let mut v = self.base("observation", nid(&o.meta.id), &o.meta);
        v["category"] = json!(match o.kind {
            ObservationKind::VitalSign => "vital-sign",
            ObservationKind::Laboratory => "laboratory",
            ObservationKind::SocialHistory => "social-history",
            ObservationKind::RecordFlag => "record-flag",
        });
        v["code"] = concept(&o.code);
        v["effectiveDate"] = json!(o.effective.to_string());
        v["value"] = match &o.value {
            ObservationValue::Quantity(q) => quantity(q),
            ObservationValue::Text(t) => json!({ "text": t }),
            ObservationValue::Components(_) | ObservationValue::None => Value::Null,
        };
        v["referenceRange"] = range(o.range);
        v["interpretation"] = interpretation(o.interpretation);
        if let ObservationValue::Components(parts) = &o.value {
            v["components"] = parts.iter().map(component).collect();
        }
        v["problemId"] = json!(o.problem.as_ref().map(nid));
        v["note"] = json!(o.note);
        v
    }

    /// A laboratory result is reported inside an investigation report (one report per result).
    fn investigation_report(&self, o: &Observation) -> Value {
        let id = native_sub_id(Supplier::Medicus, &o.meta.id, "report");
        let mut v = self.base("investigation-report", id, &o.meta);
        v["reportDate"] = json!(o.effective.to_string());
        v["results"] = json!([self.observation(o)]);
        v
    }

    fn immunisation(&self, i: &Immunisation) -> Value {
        let mut v = self.base("immunisation", nid(&i.meta.id), &i.meta);
        v["vaccinationProcedure"] = concept(&i.procedure);
        v["vaccineProduct"] = i.vaccine.as_ref().map(concept).unwrap_or(Value::Null);
        v["administrationDate"] = json!(i.date.to_string());
        v["status"] = json!(if i.given { "given" } else { "not-given" });
        v["notGivenReason"] = json!(i.not_given_reason);
        v["batchNumber"] = json!(i.batch);
        v["doseNumber"] = json!(i.dose_number);
        v
    }

    fn document(&self, d: &Document) -> Value {
        let id = nid(&d.meta.id);
        let file_id = file_id(&d.meta.id);
        let url = format!(
            "/medicus/{}/{}/v1/patient/{}/file/care-record-document/{id}/{file_id}",
            self.tenant,
            self.surface.api(),
            nid(&self.patient.id)
        );
        let mut v = self.base("care-record-document", id, &d.meta);
        v["documentType"] = concept(&d.kind);
        v["title"] = json!(d.title);
        v["documentDate"] = json!(d.date.to_string());
        v["author"] = self.practitioner(&d.author);
        v["file"] = json!({"id": file_id, "mimeType": d.mime_type, "sizeBytes": d.content.len(), "url": url});
        v
    }

    fn encounter(&self, c: &Consultation) -> Value {
        let mut v = self.base("encounter", nid(&c.meta.id), &c.meta);
        v["encounterType"] = concept(&c.kind);
        v["startDateTime"] = json!(datetime(c.started_at));
        v["durationMinutes"] = json!(c.duration_minutes);
        v["practitioner"] = self.practitioner(&c.practitioner);
        v["location"] = json!({ "name": c.location });
        let headings: Vec<Value> = c
            .sections
            .iter()
            .map(|s| {
                let elements: Vec<Value> = s.items.iter().filter_map(|id| self.element(id)).collect();
                json!({"heading": s.heading, "careRecordElements": elements})
            })
            .collect();
        // The record has no topic level; one topic titled with the encounter type holds every heading.
        v["consultationTopics"] = json!([{"title": c.kind.display, "headings": headings}]);
        v
    }

    /// The element for a clinical item id, as nested in an encounter (None when hidden or unknown).
    fn element(&self, id: &Nid) -> Option<Value> {
        let c = &self.patient.clinical;
        if let Some(x) = c.observations.iter().find(|x| &x.meta.id == id) {
            return self.shown(&x.meta).then(|| match x.kind {
                ObservationKind::Laboratory => self.investigation_report(x),
                _ => self.observation(x),
            });
        }
        if let Some(x) = c.allergies.iter().find(|x| &x.meta.id == id) {
            return self.shown(&x.meta).then(|| self.allergy(x));
        }
        if let Some(x) = c.problems.iter().find(|x| &x.meta.id == id) {
            return self.shown(&x.meta).then(|| self.problem(x));
        }
        if let Some(x) = c.medications.iter().find(|x| &x.meta.id == id) {
            return self.shown(&x.meta).then(|| self.prescription(x));
        }
        if let Some(x) = c.immunisations.iter().find(|x| &x.meta.id == id) {
            return self.shown(&x.meta).then(|| self.immunisation(x));
        }
        if let Some(x) = c.documents.iter().find(|x| &x.meta.id == id) {
            return self.shown(&x.meta).then(|| self.document(x));
        }
        None
    }

    /// Every top-level entry of the wanted kinds, newest first (ties by id, so the order is stable).
    fn entries(&self, wanted: &dyn Fn(&str) -> bool) -> Vec<(OffsetDateTime, Value)> {
        let c = &self.patient.clinical;
        let mut out: Vec<(OffsetDateTime, Value)> = Vec::new();
        let mut push = |kind: &str, meta: &ItemMeta, render: &dyn Fn() -> Value| {
            if wanted(kind) && self.shown(meta) {
                out.push((meta.recorded_at, render()));
            }
        };
        for x in &c.consultations {
            push("encounter", &x.meta, &|| self.encounter(x));
        }
        for x in &c.allergies {
            push("allergy-intolerance", &x.meta, &|| self.allergy(x));
        }
        for x in &c.problems {
            push("problem", &x.meta, &|| self.problem(x));
        }
        for x in &c.medications {
            push("prescription", &x.meta, &|| self.prescription(x));
        }
        for x in &c.observations {
            if x.kind == ObservationKind::Laboratory {
                push("investigation-report", &x.meta, &|| self.investigation_report(x));
            } else {
                push("observation", &x.meta, &|| self.observation(x));
            }
        }
        for x in &c.immunisations {
            push("immunisation", &x.meta, &|| self.immunisation(x));
        }
        for x in &c.documents {
            push("care-record-document", &x.meta, &|| self.document(x));
        }
        out.sort_by(|a, b| b.0.cmp(&a.0).then_with(|| a.1["id"].as_str().cmp(&b.1["id"].as_str())));
        out
    }

    /// `GET .../journal`: `{journal: [...], nextCursor}`.
    pub fn journal(&self, q: &Query<'_>) -> Result<Value, ApiError> {
        let types: Option<Vec<&str>> = q.types.map(|t| t.split(',').map(str::trim).collect());
        if let Some(ts) = &types {
            if let Some(bad) = ts.iter().find(|t| !ELEMENT_TYPES.contains(t)) {
                return Err(ApiError::bad_request(format!(
                    "Unknown care record element type '{bad}'."
                )));
            }
        }
        let from = q
            .from
            .map(|d| crate::style::parse_date(d).ok_or_else(|| ApiError::invalid_date("fromDate")))
            .transpose()?;
        let until = q
            .until
            .map(|d| crate::style::parse_date(d).ok_or_else(|| ApiError::invalid_date("untilDate")))
            .transpose()?;
        if let (Some(f), Some(u)) = (from, until) {
            if f > u {
                return Err(ApiError::new(
                    400,
                    "INVALID_DATE_RANGE",
                    "Invalid date range",
                    "fromDate must not be after untilDate.",
                ));
            }
        }
        let limit = paging::limit(q.limit, 50, 200)?;
        let start = paging::decode("journal", q.cursor)? as usize;
        let wanted = |kind: &str| types.as_ref().is_none_or(|ts| ts.contains(&kind));
        let all: Vec<Value> = self
            .entries(&wanted)
            .into_iter()
            .filter(|(t, _)| from.is_none_or(|f| t.date() >= f) && until.is_none_or(|u| t.date() <= u))
            .map(|(_, v)| v)
            .collect();
        let total = all.len();
        let end = (start + limit).min(total);
        let page: Vec<Value> = all.into_iter().skip(start).take(limit).collect();
        let next = (end < total).then(|| paging::encode("journal", end as u64));
        Ok(json!({"journal": page, "nextCursor": next}))
    }

    /// A document's bytes and content type, by element and file id.
    pub fn file(&self, element_id: &str, file: &str) -> Option<(String, Vec<u8>)> {
        self.patient
            .clinical
            .documents
            .iter()
            .find(|d| nid(&d.meta.id) == element_id && file_id(&d.meta.id) == file && self.shown(&d.meta))
            .map(|d| (d.mime_type.clone(), d.content.clone()))
    }
}

/// The file id of a document.
pub fn file_id(doc: &Nid) -> String {
    native_sub_id(Supplier::Medicus, doc, "file")
}

pub fn course_kind(k: CourseKind) -> &'static str {
    match k {
        CourseKind::Acute => "acute",
        CourseKind::Repeat => "repeat",
    }
}

/// Fields a course carries both in the journal and in `GET prescriptions`.
pub fn prescription_fields(m: &MedicationCourse) -> Vec<(&'static str, Value)> {
    vec![
        ("product", concept(&m.code)),
        ("dosageInstructions", json!(m.dosage)),
        ("quantity", json!({"value": m.quantity, "unit": m.quantity_unit})),
        (
            "status",
            json!(match m.status {
                CourseStatus::Active => "authorised",
                CourseStatus::Completed => "completed",
                CourseStatus::Discontinued => "discontinued",
            }),
        ),
        ("startDate", json!(date(m.started_on))),
        // Confirmed as `endDate`: a day, as `startDate` is.
        ("endDate", json!(m.ended_at.map(|t| date(t.date())))),
        ("reviewDate", json!(m.review_on.map(date))),
        ("canBeRequested", json!(m.requestable)),
        ("problemId", json!(m.problem.as_ref().map(nid))),
        (
            "prescriptionIssues",
            m.issues
                .iter()
                .map(|i| {
                    json!({"id": nid(&i.id), "issueDateTime": datetime(i.issued_at),
                           "quantity": {"value": i.quantity, "unit": m.quantity_unit}})
                })
                .collect(),
        ),
    ]
}

fn quantity(q: &Quantity) -> Value {
    json!({"quantity": q.value, "unit": q.unit, "decimalPlaces": q.decimals})
}

fn range(r: Option<(Option<f64>, Option<f64>)>) -> Value {
    match r {
        Some((low, high)) => json!({"low": low, "high": high}),
        None => Value::Null,
    }
}

fn interpretation(i: Option<Interpretation>) -> Value {
    json!(i.map(|i| match i {
        Interpretation::Normal => "normal",
        Interpretation::High => "high",
        Interpretation::Low => "low",
    }))
}

fn component(c: &Component) -> Value {
    json!({
        "code": concept(&c.code),
        "value": quantity(&c.value),
        "referenceRange": range(c.range),
        "interpretation": interpretation(c.interpretation),
    })
}
