//! Transactional (clinician) writes: observations, allergies, problems, documents, and encounters filed all
//! or nothing. Bodies are parsed here into the world's `New*` types; the world validates codes against the
//! vocabulary and stores the record's own term (the display sent is not trusted).

use crate::errors::ApiError;
use im1_sim::record::vocab::CodeSystem;
use im1_sim::record::{
    Concept, NewAllergy, NewConsultation, NewDocument, NewEntry, NewObservation, NewProblem, NewSection, Nid,
    ObservationValue, PartialDate, ProblemStatus, Quantity, Reaction, Severity, Significance, Vocabulary, WriteError,
};
use serde_json::Value;
use time::Month;

type Parsed<T> = Result<T, ApiError>;

fn field<'a>(body: &'a Value, name: &str) -> Option<&'a Value> {
    body.get(name).filter(|v| !v.is_null())
}

fn text(body: &Value, name: &str, at: &str) -> Parsed<Option<String>> {
    match field(body, name) {
        None => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(_) => Err(ApiError::bad_request(format!("{name} must be a string.")).at(format!("{at}/{name}"))),
    }
}

/// A `{code, display}` object; the vocabulary's term replaces the display.
fn code(body: &Value, name: &str, at: &str) -> Parsed<Concept> {
    let pointer = format!("{at}/{name}");
    let c = field(body, name)
        .and_then(|v| v.get("code"))
        .and_then(Value::as_str)
        .ok_or_else(|| ApiError::bad_request(format!("{name}.code is required.")).at(pointer.clone()))?;
    Ok(Vocabulary::get().concept(c).unwrap_or(Concept {
        system: CodeSystem::Snomed,
        code: c.to_string(),
        display: String::new(),
    }))
}

/// `YYYY`, `YYYY-MM` or `YYYY-MM-DD`.
pub fn partial_date(s: &str) -> Option<PartialDate> {
    let parts: Vec<&str> = s.split('-').collect();
    let year = |y: &str| (y.len() == 4).then(|| y.parse::<i32>().ok()).flatten();
    match parts.as_slice() {
        [y] => Some(PartialDate::Year(year(y)?)),
        [y, m] if m.len() == 2 => {
            let month = Month::try_from(m.parse::<u8>().ok()?).ok()?;
            Some(PartialDate::YearMonth(year(y)?, month))
        }
        [_, _, _] => crate::style::parse_date(s).map(PartialDate::Day),
        _ => None,
    }
}

fn date_field(body: &Value, name: &str, at: &str) -> Parsed<Option<PartialDate>> {
    match text(body, name, at)? {
        None => Ok(None),
        Some(s) => partial_date(&s).map(Some).ok_or_else(|| {
            ApiError::new(
                400,
                "INVALID_DATE",
                "Invalid date",
                format!("{name} must be YYYY, YYYY-MM or YYYY-MM-DD."),
            )
            .at(format!("{at}/{name}"))
        }),
    }
}

fn required_date(body: &Value, name: &str, at: &str) -> Parsed<PartialDate> {
    date_field(body, name, at)?
        .ok_or_else(|| ApiError::bad_request(format!("{name} is required.")).at(format!("{at}/{name}")))
}

/// Who records the item: the body's invented `recordingPractitionerId`, else the token's practitioner.
#[derive(Debug, Clone, Default)]
pub struct Author(pub Option<Nid>);

fn value(body: &Value, at: &str) -> Parsed<ObservationValue> {
    let Some(v) = field(body, "value") else {
        return Ok(ObservationValue::None);
    };
    if let Some(t) = v.get("text").and_then(Value::as_str) {
        return Ok(ObservationValue::Text(t.to_string()));
    }
    let bad = || ApiError::bad_request("value must be {quantity, unit} or {text}.").at(format!("{at}/value"));
    let n = v.get("quantity").and_then(Value::as_number).ok_or_else(bad)?;
    let unit = v.get("unit").and_then(Value::as_str).ok_or_else(bad)?;
    let shown = n.to_string();
    let decimals = match v.get("decimalPlaces").and_then(Value::as_u64) {
        Some(d) => u8::try_from(d).map_err(|_| bad())?,
        None => shown.split_once('.').map_or(0, |(_, f)| f.len().min(6) as u8),
    };
    Ok(ObservationValue::Quantity(Quantity {
        value: n.as_f64().ok_or_else(bad)?,
        decimals,
        unit: unit.to_string(),
    }))
}

pub fn observation(body: &Value, at: &str, author: &Author) -> Parsed<NewObservation> {
    Ok(NewObservation {
        code: code(body, "code", at)?,
        effective: required_date(body, "effectiveDate", at)?,
        value: value(body, at)?,
        note: text(body, "note", at)?,
        recorded_by: author.0.clone(),
    })
}

fn severity(s: Option<&str>) -> Option<Severity> {
    match s {
        Some("mild") => Some(Severity::Mild),
        None | Some("moderate") => Some(Severity::Moderate),
        Some("severe") => Some(Severity::Severe),
        _ => None,
    }
}

pub fn allergy(body: &Value, at: &str, author: &Author) -> Parsed<NewAllergy> {
    let mut reactions = Vec::new();
    if let Some(list) = field(body, "reactions").and_then(Value::as_array) {
        for (i, r) in list.iter().enumerate() {
            let here = format!("{at}/reactions/{i}");
            let sev = severity(r.get("severity").and_then(Value::as_str)).ok_or_else(|| {
                ApiError::bad_request("severity must be mild, moderate or severe.").at(format!("{here}/severity"))
            })?;
            reactions.push(Reaction {
                manifestation: code(r, "manifestation", &here)?,
                severity: sev,
            });
        }
    }
    Ok(NewAllergy {
        code: code(body, "code", at)?,
        onset: date_field(body, "onsetDate", at)?,
        reactions,
        note: text(body, "note", at)?,
        recorded_by: author.0.clone(),
    })
}

pub fn problem(body: &Value, at: &str, author: &Author) -> Parsed<NewProblem> {
    let status = match text(body, "status", at)?.as_deref() {
        None | Some("active") => ProblemStatus::Active,
        Some("past") => ProblemStatus::Past,
        _ => return Err(ApiError::bad_request("status must be active or past.").at(format!("{at}/status"))),
    };
    let significance = match text(body, "significance", at)?.as_deref() {
        None | Some("minor") => Significance::Minor,
        Some("major") => Significance::Major,
        _ => return Err(ApiError::bad_request("significance must be major or minor.").at(format!("{at}/significance"))),
    };
    Ok(NewProblem {
        code: code(body, "code", at)?,
        onset: required_date(body, "startDate", at)?,
        status,
        significance,
        note: text(body, "note", at)?,
        recorded_by: author.0.clone(),
    })
}

/// A parsed encounter with, per section, the JSON pointer of its heading (for error replies).
pub struct ParsedEncounter {
    pub consultation: NewConsultation,
    pub heading_pointers: Vec<String>,
}

pub fn encounter(body: &Value, author: &Author) -> Parsed<ParsedEncounter> {
    let kind = code(body, "encounterType", "")?;
    let started_at = match text(body, "startDateTime", "")? {
        None => None,
        Some(s) => Some(crate::style::parse_datetime(&s).ok_or_else(|| {
            ApiError::new(
                400,
                "INVALID_DATE",
                "Invalid date",
                "startDateTime must be an ISO 8601 date-time.",
            )
            .at("/startDateTime")
        })?),
    };
    let duration = field(body, "durationMinutes").and_then(Value::as_u64).unwrap_or(10);
    let location = field(body, "location")
        .and_then(|l| l.get("name"))
        .and_then(Value::as_str)
        .unwrap_or("Main surgery")
        .to_string();
    let topics = field(body, "consultationTopics")
        .and_then(Value::as_array)
        .ok_or_else(|| ApiError::bad_request("consultationTopics must be an array.").at("/consultationTopics"))?;
    let mut sections = Vec::new();
    let mut heading_pointers = Vec::new();
    for (ti, topic) in topics.iter().enumerate() {
        let headings = topic.get("headings").and_then(Value::as_array).ok_or_else(|| {
            ApiError::bad_request("headings must be an array.").at(format!("/consultationTopics/{ti}/headings"))
        })?;
        for (hi, h) in headings.iter().enumerate() {
            let here = format!("/consultationTopics/{ti}/headings/{hi}");
            let heading = text(h, "heading", &here)?
                .ok_or_else(|| ApiError::bad_request("heading is required.").at(format!("{here}/heading")))?;
            let mut entries = Vec::new();
            let elements = h
                .get("careRecordElements")
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default();
            for (ei, e) in elements.iter().enumerate() {
                let at = format!("{here}/careRecordElements/{ei}");
                let entry = match e.get("type").and_then(Value::as_str) {
                    Some("observation") => NewEntry::Observation(observation(e, &at, author)?),
                    Some("allergy-intolerance") => NewEntry::Allergy(allergy(e, &at, author)?),
                    Some("problem") => NewEntry::Problem(problem(e, &at, author)?),
                    _ => {
                        return Err(
                            ApiError::bad_request("type must be observation, allergy-intolerance or problem.")
                                .at(format!("{at}/type")),
                        )
                    }
                };
                entries.push(entry);
            }
            heading_pointers.push(format!("{here}/careRecordElements"));
            sections.push(NewSection { heading, entries });
        }
    }
    Ok(ParsedEncounter {
        consultation: NewConsultation {
            kind,
            started_at,
            duration_minutes: u32::try_from(duration).unwrap_or(10),
            practitioner: author.0.clone(),
            location,
            sections,
        },
        heading_pointers,
    })
}

/// A new document; `documentDate` defaults to `today` (the world's date, so replies stay deterministic).
pub fn document(body: &Value, author: &Author, today: time::Date) -> Parsed<NewDocument> {
    use base64::Engine;
    let kind = code(body, "documentType", "")?;
    let title = text(body, "title", "")?.ok_or_else(|| ApiError::bad_request("title is required.").at("/title"))?;
    let file = field(body, "file").ok_or_else(|| ApiError::bad_request("file is required.").at("/file"))?;
    let mime = text(file, "mimeType", "/file")?
        .filter(|m| !m.is_empty())
        .ok_or_else(|| ApiError::bad_request("file.mimeType is required.").at("/file/mimeType"))?;
    let content = text(file, "contentBase64", "/file")?
        .and_then(|c| base64::engine::general_purpose::STANDARD.decode(c).ok())
        .ok_or_else(|| ApiError::bad_request("file.contentBase64 must be base64.").at("/file/contentBase64"))?;
    let date = date_field(body, "documentDate", "")?;
    Ok(NewDocument {
        kind,
        title,
        date: date.unwrap_or(PartialDate::Day(today)),
        mime_type: mime,
        content,
        recorded_by: author.0.clone(),
    })
}

/// The world's refusals in the dialect's shape.
pub fn write_error(e: WriteError) -> ApiError {
    match e {
        WriteError::PatientNotFound | WriteError::NotRegistered | WriteError::ProxyLinkNotFound => {
            ApiError::patient_not_found()
        }
        WriteError::UnknownCode(c) => ApiError::new(
            422,
            "UNKNOWN_CODE",
            "Unknown code",
            format!("SNOMED CT code {c} is not in the code table."),
        ),
        WriteError::UnknownPractitioner(_) => ApiError::new(
            422,
            "PRACTITIONER_NOT_FOUND",
            "Practitioner not found",
            "The recording practitioner is not known at this organisation.",
        ),
        WriteError::ServiceDisabled(s) => ApiError::service_disabled(&format!("{s:?}")),
        WriteError::Invalid(m) => ApiError::new(422, "INVALID_CARE_RECORD_ELEMENT", "Invalid element", m),
        WriteError::InvalidEntry { reason, .. } => {
            ApiError::new(422, "INVALID_CARE_RECORD_ELEMENT", "Invalid element", reason)
        }
        other => ApiError::new(400, "INVALID_REQUEST", "Invalid request", other.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partial_dates_parse() {
        assert_eq!(partial_date("1998"), Some(PartialDate::Year(1998)));
        assert_eq!(partial_date("2009-06"), Some(PartialDate::YearMonth(2009, Month::June)));
        assert!(matches!(partial_date("2025-03-04"), Some(PartialDate::Day(_))));
        assert_eq!(partial_date("2025-13"), None);
        assert_eq!(partial_date("x"), None);
    }
}
