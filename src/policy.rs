//! Data minimisation: free text (notes, free-text results, what a patient wrote when booking) and documents go
//! only to the roles a practice's policy names (`free_text_roles`, by default the patient and clinicians). For
//! others, free text is removed and the resource is labelled REDACTED; documents are withheld. A Bundle says so
//! in a coded warning.

use crate::auth::Principal;
use crate::backend::PracticeBackend;
use crate::fhir::error::{push_once, warning, IssueType};
use crate::tree::Tree;
use serde_json::{json, Value};

/// Free-text elements, by resource type (`*`: every type): what a user outside `free_text_roles` does not get.
/// An appointment's description and comments hold what a patient wrote when booking.
const FREE_TEXT: &[(&str, &str)] = &[
    ("*", "note"),
    ("Observation", "valueString"),
    ("Appointment", "description"),
    ("Appointment", "comment"),
    ("Appointment", "patientInstruction"),
];

/// Resource types that are documents: withheld whole (their content is the free text).
const DOCUMENTS: &[&str] = &["DocumentReference", "Binary"];

/// What the policy leaves of a resource.
pub enum Minimised {
    Kept(Tree),
    Withheld,
}

/// Applies the practice's policy to one resource for a principal; warnings say what was withheld.
pub fn minimise(
    practice: &PracticeBackend,
    principal: &Principal,
    mut resource: Tree,
    warnings: &mut Vec<Value>,
) -> Minimised {
    if practice
        .policy
        .free_text_roles
        .iter()
        .any(|r| r == principal.role.name())
    {
        return Minimised::Kept(resource);
    }
    let resource_type = resource
        .get("resourceType")
        .and_then(Tree::as_str)
        .unwrap_or_default()
        .to_string();
    if DOCUMENTS.contains(&resource_type.as_str()) {
        push_once(warnings, withheld_documents(&practice.ods));
        return Minimised::Withheld;
    }
    let Some(object) = resource.as_object_mut() else {
        return Minimised::Kept(resource);
    };
    let mut removed = false;
    let mut value_removed = false;
    for (_, element) in FREE_TEXT.iter().filter(|(t, _)| *t == "*" || *t == resource_type) {
        let gone = object.remove(element).is_some();
        removed |= gone;
        value_removed |= gone && element.starts_with("value");
    }
    // A result whose value was its free text now has none: it says why, as R4 has an Observation do ("masked":
    // withheld for security or privacy), rather than read as a final result without a value. Only then: a
    // note taken from a panel or a coded finding leaves nothing absent.
    let has_value = object.keys().any(|key| key.starts_with("value"));
    if value_removed && resource_type == "Observation" && !has_value && !object.contains_key("dataAbsentReason") {
        object.insert(
            "dataAbsentReason",
            Tree::from(json!({ "coding": [{
                "system": "http://terminology.hl7.org/CodeSystem/data-absent-reason",
                "code": "masked",
                "display": "Masked"
            }] })),
        );
    }
    if removed {
        let labels = object
            .entry_or_insert_with("meta", || Tree::Object(Default::default()))
            .as_object_mut()
            .map(|meta| meta.entry_or_insert_with("security", || Tree::Array(Vec::new())));
        if let Some(Tree::Array(labels)) = labels {
            labels.push(Tree::from(json!({
                "system": "http://terminology.hl7.org/CodeSystem/v3-ObservationValue",
                "code": "REDACTED",
                "display": "redacted"
            })));
        }
        push_once(
            warnings,
            warning(
                IssueType::Suppressed,
                "IM1-2202",
                format!(
                    "free text was withheld by practice {}'s policy for this kind of user",
                    practice.ods
                ),
            ),
        );
    }
    Minimised::Kept(resource)
}

/// The warning for documents withheld (also the message of a refused document read).
pub fn withheld_documents(ods: &str) -> Value {
    warning(
        IssueType::Suppressed,
        "IM1-2201",
        format!("documents are withheld by practice {ods}'s policy for this kind of user"),
    )
}
