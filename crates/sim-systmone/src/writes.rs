//! Clinician writes (`FileObservation`, `FileAllergy`, `FileProblem`, `FileConsultation`, `FileDocument`):
//! parse the dialect's parameters into the world's write requests. Consultations are all or nothing; a bad
//! item is reported by its 0-based position (`itemIndex`, Error 2201).

use crate::coding::concept_of;
use crate::dates::{parse_instant, parse_partial};
use crate::errors::TppError;
use crate::render::tid;
use crate::xml::Node;
use base64::Engine;
use im1_sim::record::vocab::Category;
use im1_sim::record::*;

fn staff(world: &World, node: &Node, key: &str) -> Result<Option<Nid>, TppError> {
    match node.attr_nonempty(key) {
        None => Ok(None),
        Some(id) => {
            // A staff id, or (for `doneBy`) a staff member's display name.
            if let Some(nid) = world.resolve(Supplier::SystmOne, id) {
                return Ok(Some(nid));
            }
            world
                .read(|r| {
                    r.practitioners
                        .iter()
                        .find(|p| p.name.display() == id)
                        .map(|p| p.id.clone())
                })
                .map(Some)
                .ok_or_else(|| TppError::invalid(format!("unknown staff {key}")))
        }
    }
}

fn concept(node: &Node) -> Result<Concept, TppError> {
    concept_of(node).map_err(TppError::bad_clinical)
}

fn date(node: &Node, required: bool) -> Result<Option<PartialDate>, TppError> {
    match node.attr_nonempty("date") {
        None if required => Err(TppError::invalid("date missing")),
        None => Ok(None),
        Some(v) => parse_partial(v, node.attr("dateAccuracy"))
            .map(Some)
            .ok_or_else(|| TppError::invalid("date or dateAccuracy not valid")),
    }
}

fn quantity(value: &str, unit: Option<&str>, code: &Concept) -> Result<Quantity, TppError> {
    let v: f64 = value
        .trim()
        .parse()
        .map_err(|_| TppError::bad_clinical(format!("value {value} is not a number")))?;
    let decimals = value.trim().split_once('.').map_or(0, |(_, f)| f.len().min(6) as u8);
    let unit = unit
        .map(str::to_string)
        .or_else(|| Vocabulary::get().entry(&code.code).and_then(|e| e.ucum.clone()))
        .unwrap_or_default();
    Ok(Quantity {
        value: v,
        decimals,
        unit,
    })
}

/// `FileObservation` (and `Item type="Measurement"` in a consultation).
pub fn observation(world: &World, node: &Node) -> Result<NewObservation, TppError> {
    let code = concept(node)?;
    let effective = date(node, true)?.ok_or_else(|| TppError::invalid("date missing"))?;
    let components: Vec<&Node> = node.children_named("Component").collect();
    let value = if let Some(v) = node.attr_nonempty("value") {
        ObservationValue::Quantity(quantity(v, node.attr_nonempty("units"), &code)?)
    } else if let Some(t) = node.attr_nonempty("textValue").or_else(|| node.attr_nonempty("text")) {
        ObservationValue::Text(t.to_string())
    } else if !components.is_empty() {
        let mut parts = Vec::new();
        for c in components {
            let cc = concept(c)?;
            let v = c
                .attr_nonempty("value")
                .ok_or_else(|| TppError::bad_clinical("Component without value"))?;
            let q = quantity(v, c.attr_nonempty("units"), &cc)?;
            let range = Vocabulary::get()
                .entry(&cc.code)
                .and_then(|e| e.reference_range)
                .map(|r| (r.low, r.high));
            parts.push(Component {
                code: cc,
                value: q,
                range,
                interpretation: None,
            });
        }
        ObservationValue::Components(parts)
    } else {
        ObservationValue::None
    };
    Ok(NewObservation {
        code,
        effective,
        value,
        note: node.attr_nonempty("notes").map(str::to_string),
        recorded_by: staff(world, node, "recordedBy")?,
    })
}

/// `FileAllergy` (and `Item type="Allergy"`).
pub fn allergy(world: &World, node: &Node) -> Result<NewAllergy, TppError> {
    let code = concept(node)?;
    let mut reactions = Vec::new();
    for r in node.children_named("Reaction") {
        let severity = match r.attr("severity").unwrap_or("moderate") {
            "mild" => Severity::Mild,
            "moderate" => Severity::Moderate,
            "severe" => Severity::Severe,
            other => return Err(TppError::bad_clinical(format!("severity {other}"))),
        };
        reactions.push(Reaction {
            manifestation: concept(r)?,
            severity,
        });
    }
    Ok(NewAllergy {
        code,
        onset: date(node, false)?,
        reactions,
        note: node.attr_nonempty("notes").map(str::to_string),
        recorded_by: staff(world, node, "recordedBy")?,
    })
}

/// `FileProblem` (and `Item type="Problem"`).
pub fn problem(world: &World, node: &Node) -> Result<NewProblem, TppError> {
    let code = concept(node)?;
    let onset = date(node, true)?.ok_or_else(|| TppError::invalid("date missing"))?;
    let status = match node.attr("status").unwrap_or("active") {
        "active" => ProblemStatus::Active,
        "past" => ProblemStatus::Past,
        other => return Err(TppError::bad_clinical(format!("status {other}"))),
    };
    let significance = match node.attr("significance").unwrap_or("minor") {
        "major" => Significance::Major,
        "minor" => Significance::Minor,
        other => return Err(TppError::bad_clinical(format!("significance {other}"))),
    };
    Ok(NewProblem {
        code,
        onset,
        status,
        significance,
        note: node.attr_nonempty("notes").map(str::to_string),
        recorded_by: staff(world, node, "recordedBy")?,
    })
}

fn entry(world: &World, item: &Node) -> Result<NewEntry, TppError> {
    match item.attr("type").unwrap_or("") {
        "Measurement" => observation(world, item).map(NewEntry::Observation),
        "Allergy" => allergy(world, item).map(NewEntry::Allergy),
        "Problem" => problem(world, item).map(NewEntry::Problem),
        other => Err(TppError::invalid(format!("Item type {other:?} cannot be filed"))),
    }
}

fn item_error(index: usize, e: &TppError) -> TppError {
    TppError {
        item_index: Some(index),
        ..TppError::new(
            2201,
            "A consultation item was not valid",
            format!("item {index}: {}", e.technical),
        )
    }
}

/// `FileConsultation`: the consultation and its items, grouped into sections by each item's `section`
/// attribute (default `Notes`) in order of first appearance.
pub fn consultation(world: &World, patient: &Nid, node: &Node) -> Result<FiledConsultation, TppError> {
    let kind = if node.attr_nonempty("code").is_some() || node.attr_nonempty("snomed").is_some() {
        concept(node)?
    } else {
        Vocabulary::get()
            .category(Category::EncounterType)
            .next()
            .map(|e| e.concept())
            .ok_or_else(|| TppError::bad_clinical("no consultation type"))?
    };
    let started_at = match node.attr_nonempty("date") {
        Some(d) => Some(parse_instant(d).ok_or_else(|| TppError::invalid("date not valid"))?),
        None => None,
    };
    let duration_minutes = match node.attr_nonempty("duration") {
        Some(d) => d.parse().map_err(|_| TppError::invalid("duration is not a number"))?,
        None => 10,
    };
    let mut sections: Vec<NewSection> = Vec::new();
    // (section, entry) -> document position, to report world refusals by item.
    let mut positions: Vec<(usize, usize, usize)> = Vec::new();
    for (index, item) in node.children_named("Item").enumerate() {
        let e = entry(world, item).map_err(|e| item_error(index, &e))?;
        let heading = item.attr_nonempty("section").unwrap_or("Notes");
        let si = match sections.iter().position(|s| s.heading == heading) {
            Some(i) => i,
            None => {
                sections.push(NewSection {
                    heading: heading.to_string(),
                    entries: Vec::new(),
                });
                sections.len() - 1
            }
        };
        positions.push((si, sections[si].entries.len(), index));
        sections[si].entries.push(e);
    }
    if positions.is_empty() {
        return Err(TppError::invalid("a consultation needs at least one Item"));
    }
    let con = NewConsultation {
        kind,
        started_at,
        duration_minutes,
        practitioner: staff(world, node, "doneBy")?,
        location: node.attr("location").unwrap_or_default().to_string(),
        sections,
    };
    world.file_consultation(patient, con).map_err(|e| match e {
        WriteError::InvalidEntry {
            section,
            entry,
            ref reason,
        } => {
            let index = positions
                .iter()
                .find(|(s, n, _)| *s == section && *n == entry)
                .map_or(0, |p| p.2);
            item_error(index, &TppError::bad_clinical(reason.clone()))
        }
        other => TppError::from(other),
    })
}

/// `FileDocument`: base64 content in `<Content encoding="base64">`.
pub fn document(world: &World, node: &Node) -> Result<NewDocument, TppError> {
    let kind = if node.attr_nonempty("code").is_some() || node.attr_nonempty("snomed").is_some() {
        concept(node)?
    } else {
        Vocabulary::get()
            .category(Category::DocumentType)
            .next()
            .map(|e| e.concept())
            .ok_or_else(|| TppError::bad_clinical("no document type"))?
    };
    let content = node
        .child("Content")
        .ok_or_else(|| TppError::invalid("Content missing"))?;
    if content.attr("encoding").unwrap_or("base64") != "base64" {
        return Err(TppError::invalid("Content encoding must be base64"));
    }
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(content.text.trim())
        .map_err(|_| TppError::invalid("Content is not base64"))?;
    Ok(NewDocument {
        kind,
        title: node
            .attr_nonempty("description")
            .ok_or_else(|| TppError::invalid("description missing"))?
            .to_string(),
        date: date(node, true)?.ok_or_else(|| TppError::invalid("date missing"))?,
        mime_type: node
            .attr_nonempty("mimeType")
            .ok_or_else(|| TppError::invalid("mimeType missing"))?
            .to_string(),
        content: bytes,
        recorded_by: staff(world, node, "recordedBy")?,
    })
}

/// The ids a filed consultation reply lists.
pub fn filed_ids(f: &FiledConsultation) -> (String, String) {
    (tid(&f.id), f.items.iter().map(tid).collect::<Vec<_>>().join(" "))
}
