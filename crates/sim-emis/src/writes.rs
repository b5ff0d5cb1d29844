//! Clinician writes on the Partner surface: observations, allergies, problems, consultations (all or
//! nothing) and documents. Bodies are parsed completely before anything is filed.

use crate::dates::{self, parse_effective};
use crate::errors::{self, message, model_state};
use crate::render::{guid, practitioner_for};
use crate::request::json_body;
use crate::routes::Emis;
use base64::Engine;
use http::StatusCode;
use im1_sim::common::{RequestContext, SimRequest, SimResponse};
use im1_sim::record::vocab::Vocabulary;
use im1_sim::record::{
    CodeIdTable, Concept, NewAllergy, NewConsultation, NewDocument, NewEntry, NewObservation, NewProblem, NewSection,
    Nid, ObservationValue, ProblemStatus, Quantity, Reaction, Severity, Significance,
};
use serde_json::{json, Value};

/// Largest document accepted (decoded).
const MAX_DOCUMENT_BYTES: usize = 5 * 1024 * 1024;

/// A field-level validation failure: (field path, message).
type Invalid = (String, String);

fn invalid(field: &str, text: &str) -> Invalid {
    (field.to_string(), text.to_string())
}

pub fn handle(e: &Emis, req: &SimRequest, patient: &Nid, kind: &str, cx: &RequestContext) -> SimResponse {
    let body = match json_body(req) {
        Ok(b) => b,
        Err(r) => return r,
    };
    let ods = e.config.practice_ods.as_str();
    let method = format!("{kind}Post");
    let world = &e.world;
    let result = match kind {
        "observations" => parse_observation(e, ods, &body, "").map(|o| {
            world
                .file_observation(patient, o)
                .map(|id| json!({"EventGuid": guid(&id)}))
        }),
        "allergies" => parse_allergy(e, ods, &body, "")
            .map(|a| world.file_allergy(patient, a).map(|id| json!({"EventGuid": guid(&id)}))),
        "problems" => parse_problem(e, ods, &body, "")
            .map(|p| world.file_problem(patient, p).map(|id| json!({"EventGuid": guid(&id)}))),
        "consultations" => parse_consultation(e, ods, &body).map(|c| {
            world
                .file_consultation(patient, c)
                .map(|f| json!({"EventGuid": guid(&f.id), "ItemGuids": f.items.iter().map(guid).collect::<Vec<_>>()}))
        }),
        "documents" => match parse_document(e, ods, &body) {
            Ok(d) if d.content.len() > MAX_DOCUMENT_BYTES => {
                return message(StatusCode::PAYLOAD_TOO_LARGE, "The document is larger than 5 MB.")
            }
            other => other.map(|d| {
                world
                    .file_document(patient, d)
                    .map(|id| json!({"DocumentGuid": guid(&id), "EventGuid": guid(&id)}))
            }),
        },
        _ => {
            return message(
                StatusCode::NOT_FOUND,
                "No HTTP resource was found that matches the request URI.",
            )
        }
    };
    match result {
        Err((field, text)) => model_state(&field, &text),
        Ok(Err(err)) => errors::write_error(&err, &method),
        Ok(Ok(v)) => {
            cx.record_write();
            errors::json(StatusCode::CREATED, &v)
        }
    }
}

fn concept(body: &Value, prefix: &str) -> Result<Concept, Invalid> {
    let field = format!("{prefix}CodeId");
    let id = match body.get("CodeId") {
        Some(v) => v.as_i64().or_else(|| v.as_str().and_then(|s| s.parse().ok())),
        None => return Err(invalid(&field, "The CodeId field is required.")),
    }
    .ok_or_else(|| invalid(&field, "The CodeId field is not a number."))?;
    CodeIdTable::get()
        .concept(id)
        .ok_or_else(|| invalid(&field, "Unknown CodeId"))
}

fn author(e: &Emis, ods: &str, body: &Value, name: &str, prefix: &str) -> Result<Option<Nid>, Invalid> {
    match body.get(name).and_then(Value::as_str) {
        None => Ok(None),
        Some(g) => e
            .world
            .read(|r| practitioner_for(r, ods, g))
            .map(Some)
            .ok_or_else(|| invalid(&format!("{prefix}{name}"), "Unknown user in role")),
    }
}

fn effective(body: &Value, prefix: &str) -> Result<im1_sim::record::PartialDate, Invalid> {
    let field = format!("{prefix}EffectiveDate");
    let v = body
        .get("EffectiveDate")
        .ok_or_else(|| invalid(&field, "The EffectiveDate field is required."))?;
    parse_effective(v).map_err(|m| invalid(&field, &m))
}

fn note(body: &Value) -> Option<String> {
    let texts: Vec<&str> = body
        .get("AssociatedText")
        .and_then(Value::as_array)
        .map(|a| a.iter().filter_map(|t| t.get("Text").and_then(Value::as_str)).collect())
        .unwrap_or_default();
    (!texts.is_empty()).then(|| texts.join("\n"))
}

fn decimals(n: &serde_json::Number) -> u8 {
    let text = n.to_string();
    text.split_once('.')
        .map_or(0, |(_, f)| u8::try_from(f.len()).unwrap_or(u8::MAX))
}

fn value(body: &Value, code: &Concept, prefix: &str) -> Result<ObservationValue, Invalid> {
    if let Some(v) = body.get("NumericValue").filter(|v| !v.is_null()) {
        let n = v
            .as_number()
            .ok_or_else(|| invalid(&format!("{prefix}NumericValue"), "NumericValue must be a number."))?;
        let unit = body
            .get("NumericUnits")
            .and_then(Value::as_str)
            .map(str::to_string)
            .or_else(|| Vocabulary::get().entry(&code.code).and_then(|e| e.ucum.clone()))
            .unwrap_or_default();
        return Ok(ObservationValue::Quantity(Quantity {
            value: n.as_f64().unwrap_or_default(),
            decimals: decimals(n),
            unit,
        }));
    }
    Ok(match body.get("TextValue").and_then(Value::as_str) {
        Some(t) => ObservationValue::Text(t.to_string()),
        None => ObservationValue::None,
    })
}

fn parse_observation(e: &Emis, ods: &str, body: &Value, prefix: &str) -> Result<NewObservation, Invalid> {
    let code = concept(body, prefix)?;
    Ok(NewObservation {
        value: value(body, &code, prefix)?,
        effective: effective(body, prefix)?,
        note: note(body),
        recorded_by: author(e, ods, body, "AuthorisingUserInRoleGuid", prefix)?,
        code,
    })
}

fn severity(s: Option<&str>) -> Result<Severity, String> {
    match s {
        None | Some("Moderate") => Ok(Severity::Moderate),
        Some("Mild") => Ok(Severity::Mild),
        Some("Severe") => Ok(Severity::Severe),
        Some(_) => Err("Severity must be Mild, Moderate or Severe.".into()),
    }
}

fn parse_allergy(e: &Emis, ods: &str, body: &Value, prefix: &str) -> Result<NewAllergy, Invalid> {
    let code = concept(body, prefix)?;
    let mut reactions = Vec::new();
    for (i, x) in body
        .get("Reactions")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .enumerate()
    {
        let p = format!("{prefix}Reactions[{i}].");
        reactions.push(Reaction {
            manifestation: concept(x, &p)?,
            severity: severity(x.get("Severity").and_then(Value::as_str))
                .map_err(|m| invalid(&format!("{p}Severity"), &m))?,
        });
    }
    let onset = match body.get("EffectiveDate") {
        None | Some(Value::Null) => None,
        Some(_) => Some(effective(body, prefix)?),
    };
    Ok(NewAllergy {
        code,
        onset,
        reactions,
        note: note(body),
        recorded_by: author(e, ods, body, "AuthorisingUserInRoleGuid", prefix)?,
    })
}

fn parse_problem(e: &Emis, ods: &str, body: &Value, prefix: &str) -> Result<NewProblem, Invalid> {
    let status = match body.get("Status").and_then(Value::as_str) {
        None | Some("Active") => ProblemStatus::Active,
        Some("Past") => ProblemStatus::Past,
        Some(_) => return Err(invalid(&format!("{prefix}Status"), "Status must be Active or Past.")),
    };
    let significance = match body.get("Significance").and_then(Value::as_str) {
        None | Some("Minor") => Significance::Minor,
        Some("Major") => Significance::Major,
        Some(_) => {
            return Err(invalid(
                &format!("{prefix}Significance"),
                "Significance must be Major or Minor.",
            ))
        }
    };
    Ok(NewProblem {
        code: concept(body, prefix)?,
        onset: effective(body, prefix)?,
        status,
        significance,
        note: note(body),
        recorded_by: author(e, ods, body, "AuthorisingUserInRoleGuid", prefix)?,
    })
}

fn parse_consultation(e: &Emis, ods: &str, body: &Value) -> Result<NewConsultation, Invalid> {
    let kind = concept(body, "")?;
    let started_at = match body.get("StartDateTime").and_then(Value::as_str) {
        Some(s) => Some(
            dates::parse_local(s).ok_or_else(|| invalid("StartDateTime", "StartDateTime is not a valid date-time."))?,
        ),
        None => match body.get("EffectiveDate") {
            Some(v) if !v.is_null() => {
                let d = parse_effective(v).map_err(|m| invalid("EffectiveDate", &m))?;
                Some(im1_sim::record::dates::uk_local(
                    d.first_day(),
                    time::Time::from_hms(9, 0, 0).unwrap_or(time::Time::MIDNIGHT),
                ))
            }
            _ => None,
        },
    };
    let mut sections = Vec::new();
    for (si, s) in body
        .get("Sections")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .enumerate()
    {
        let heading = s
            .get("Header")
            .and_then(Value::as_str)
            .ok_or_else(|| invalid(&format!("Sections[{si}].Header"), "The Header field is required."))?;
        let mut entries = Vec::new();
        for (ei, item) in s
            .get("Items")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .enumerate()
        {
            let p = format!("Sections[{si}].Items[{ei}].");
            let entry = match item.get("ItemType").and_then(Value::as_str) {
                None | Some("Observation") => NewEntry::Observation(parse_observation(e, ods, item, &p)?),
                Some("Allergy") => NewEntry::Allergy(parse_allergy(e, ods, item, &p)?),
                Some("Problem") => NewEntry::Problem(parse_problem(e, ods, item, &p)?),
                Some(_) => {
                    return Err(invalid(
                        &format!("{p}ItemType"),
                        "ItemType must be Observation, Allergy or Problem.",
                    ))
                }
            };
            entries.push(entry);
        }
        sections.push(NewSection {
            heading: heading.to_string(),
            entries,
        });
    }
    Ok(NewConsultation {
        kind,
        started_at,
        duration_minutes: body
            .get("DurationMinutes")
            .and_then(Value::as_u64)
            .and_then(|m| u32::try_from(m).ok())
            .unwrap_or(10),
        practitioner: author(e, ods, body, "ConsultantUserInRoleGuid", "")?,
        location: body
            .get("Location")
            .and_then(Value::as_str)
            .unwrap_or("Main surgery")
            .to_string(),
        sections,
    })
}

fn parse_document(e: &Emis, ods: &str, body: &Value) -> Result<NewDocument, Invalid> {
    let kind = concept(body, "")?;
    let content = body
        .get("ContentBase64")
        .and_then(Value::as_str)
        .ok_or_else(|| invalid("ContentBase64", "The ContentBase64 field is required."))?;
    let content = base64::engine::general_purpose::STANDARD
        .decode(content)
        .map_err(|_| invalid("ContentBase64", "ContentBase64 is not valid base64."))?;
    let ext = body
        .get("Extension")
        .and_then(Value::as_str)
        .unwrap_or("pdf")
        .trim_start_matches('.')
        .to_ascii_lowercase();
    let mime = match ext.as_str() {
        "pdf" => "application/pdf",
        "txt" => "text/plain",
        "html" | "htm" => "text/html",
        "jpg" | "jpeg" => "image/jpeg",
        "png" => "image/png",
        _ => return Err(invalid("Extension", "Extension must be pdf, txt, html, jpg or png.")),
    };
    let title = body
        .get("Title")
        .and_then(Value::as_str)
        .map(str::to_string)
        .or_else(|| {
            body.get("FileName")
                .and_then(Value::as_str)
                .map(|f| f.rsplit_once('.').map_or(f, |(stem, _)| stem).to_string())
        })
        .unwrap_or_else(|| kind.display.clone());
    Ok(NewDocument {
        date: effective(body, "")?,
        title,
        mime_type: mime.to_string(),
        content,
        recorded_by: author(e, ods, body, "AuthorisingUserInRoleGuid", "")?,
        kind,
    })
}
