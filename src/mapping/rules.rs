//! The rules a served resource must meet beyond what the typed R4 model (fhirbolt) holds, checked on the
//! resource itself: R4's required elements and required bindings (`profiles/r4-rules.txt`), and UK Core's
//! (`profiles/ukcore`): the profile in `meta.profile`, the elements the profile makes mandatory or forbids,
//! UK Core extensions that exist and carry a value of a type they allow, and NHS numbers that pass their check
//! digit. `im1-fhir check` holds templates to the same profiles before they run; this holds what they gave.
//! The tests run it over every resource the proxy serves (and `.ci/run` runs the offline validator as well).

use super::profile::{choice_type, Defs, Profile, UKCORE_SD};
use serde_json::{Map, Value};
use std::collections::HashMap;
use std::sync::OnceLock;

const R4_RULES: &str = include_str!("../../profiles/r4-rules.txt");
use crate::fhir::NHS_NUMBER_SYSTEM;

/// One element's R4 rule: required, and the codes (`system|code` for a CodeableConcept) of its required
/// binding, if it has one that lists them.
struct Rule {
    element: String,
    required: bool,
    codes: Vec<String>,
}

/// R4's rules by type (`Observation`, `Observation_Component`, `HumanName`), read once.
fn r4_rules() -> &'static HashMap<String, Vec<Rule>> {
    static RULES: OnceLock<HashMap<String, Vec<Rule>>> = OnceLock::new();
    RULES.get_or_init(|| {
        let mut rules: HashMap<String, Vec<Rule>> = HashMap::new();
        for line in R4_RULES.lines().filter(|l| !l.starts_with('#') && !l.starts_with('[')) {
            let mut words = line.split_whitespace();
            let Some((ty, element)) = words.next().and_then(|w| w.split_once('.')) else {
                continue;
            };
            let (element, required) = match element.strip_suffix('!') {
                Some(element) => (element, true),
                None => (element, false),
            };
            rules.entry(ty.to_string()).or_default().push(Rule {
                element: element.to_string(),
                required,
                codes: words.map(String::from).collect(),
            });
        }
        rules
    })
}

/// Every rule the resource breaks, as `path: what` (empty when it meets them all).
pub fn problems(resource: &Value) -> Vec<String> {
    let mut out = Vec::new();
    let Some(ty) = resource.get("resourceType").and_then(Value::as_str) else {
        return vec!["resourceType: missing".into()];
    };
    let defs = Defs::get();
    // The definitions hold the types the mappings produce; others (an OperationOutcome) are the model's alone.
    let Some(object) = resource.as_object().filter(|_| defs.elements(ty).is_some()) else {
        return out;
    };
    let mut check = Check { defs, out: &mut out };
    check.object(ty, object, ty);
    if let Some(profile) = defs.profiles.get(&format!("{UKCORE_SD}UKCore-{ty}")) {
        let declared = resource["meta"]["profile"]
            .as_array()
            .is_some_and(|profiles| profiles.iter().any(|p| p.as_str() == Some(profile.url.as_str())));
        if !declared {
            out.push(format!("{ty}.meta.profile: does not name {}", profile.url));
        }
        profile_elements(profile, resource, &mut out);
    }
    out
}

struct Check<'a> {
    defs: &'a Defs,
    out: &'a mut Vec<String>,
}

impl Check<'_> {
    /// An object of R4 type `ty` at `path`: its type's rules, then each complex element within.
    fn object(&mut self, ty: &str, object: &Map<String, Value>, path: &str) {
        for rule in r4_rules().get(ty).into_iter().flatten() {
            self.rule(rule, object, path);
        }
        match ty {
            "Identifier" => self.identifier(object, path),
            "Extension" => self.extension(object, path),
            _ => {}
        }
        for (key, value) in object {
            let Some(element) = self.defs.element(ty, key) else {
                continue;
            };
            if element.ty == "Resource" || self.defs.elements(&element.ty).is_none() {
                continue;
            }
            let items = match value {
                Value::Array(items) => items.as_slice(),
                one => std::slice::from_ref(one),
            };
            for (i, item) in items.iter().enumerate() {
                let at = match value.is_array() {
                    true => format!("{path}.{key}[{i}]"),
                    false => format!("{path}.{key}"),
                };
                if let Some(inner) = item.as_object() {
                    self.object(&element.ty, inner, &at);
                }
            }
        }
    }

    fn rule(&mut self, rule: &Rule, object: &Map<String, Value>, path: &str) {
        let at = format!("{path}.{}", rule.element);
        let value = match rule.element.strip_suffix("[x]") {
            Some(stem) => object
                .iter()
                .find(|(key, _)| choice_type(key, stem).is_some())
                .map(|(_, v)| v),
            // A primitive may be present as its extensions alone (`_status`).
            None => object
                .get(&rule.element)
                .or_else(|| object.get(&format!("_{}", rule.element))),
        };
        let Some(value) = value else {
            if rule.required {
                self.out.push(format!("{at}: required by R4, missing"));
            }
            return;
        };
        if rule.codes.is_empty() {
            return;
        }
        let values = match value {
            Value::Array(items) => items.as_slice(),
            one => std::slice::from_ref(one),
        };
        for value in values {
            let meets = match value {
                Value::String(code) => rule.codes.contains(code),
                // A CodeableConcept: one of its codings is one of the codes.
                Value::Object(concept) => concept
                    .get("coding")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                    .any(|coding| {
                        let (system, code) = (coding["system"].as_str(), coding["code"].as_str());
                        system.zip(code).is_some_and(|(s, c)| {
                            rule.codes.iter().any(|allowed| allowed.split_once('|') == Some((s, c)))
                        })
                    }),
                _ => true,
            };
            if !meets {
                self.out.push(format!(
                    "{at}: {value} is not in the value set its required binding names"
                ));
            }
        }
    }

    fn identifier(&mut self, object: &Map<String, Value>, path: &str) {
        if object.get("system").and_then(Value::as_str) != Some(NHS_NUMBER_SYSTEM) {
            return;
        }
        let value = object.get("value").and_then(Value::as_str).unwrap_or_default();
        if !im1_sim::record::nhs::is_valid(value) {
            self.out.push(format!(
                "{path}.value: '{value}' is not an NHS number (ten digits, the last a check digit)"
            ));
        }
    }

    fn extension(&mut self, object: &Map<String, Value>, path: &str) {
        let Some(url) = object
            .get("url")
            .and_then(Value::as_str)
            .filter(|u| u.starts_with(UKCORE_SD))
        else {
            return;
        };
        let Some(extension) = self.defs.profiles.get(url) else {
            self.out.push(format!("{path}.url: '{url}' is not a UK Core extension"));
            return;
        };
        let allowed = extension.value_types();
        let values: Vec<&str> = object.keys().filter_map(|k| choice_type(k, "value")).collect();
        let label = url.rsplit('/').next().unwrap_or(url);
        match (allowed.is_empty(), values.as_slice()) {
            // Complex: made of sub-extensions, no value of its own.
            (true, []) if object.contains_key("extension") => {}
            (true, _) => self.out.push(format!(
                "{path}: {label} is made of sub-extensions, with no value of its own"
            )),
            (false, [one]) if allowed.iter().any(|t| t.eq_ignore_ascii_case(one)) => {}
            (false, _) => self.out.push(format!(
                "{path}: {label} takes one value[x] of type {}",
                allowed.join(" or ")
            )),
        }
    }
}

/// The elements a UK Core profile's differential makes mandatory (min 1) or forbids (max 0), where each
/// would be: an element of a repeating or absent parent is required of each parent that is there. Slices
/// (`identifier:nhsNumber`) are left to the rules above (the NHS number's own).
fn profile_elements(profile: &Profile, resource: &Value, out: &mut Vec<String>) {
    let label = profile.url.rsplit('/').next().unwrap_or(&profile.url);
    for element in &profile.elements {
        if element.id.contains(':') {
            continue;
        }
        let required = element.min.is_some_and(|m| m > 0);
        let forbidden = element.max.as_deref() == Some("0");
        if !required && !forbidden {
            continue;
        }
        let (parent, name) = match element.id.rsplit_once('.') {
            Some((parent, name)) => (Some(parent), name),
            None => (None, element.id.as_str()),
        };
        let mut parents = vec![(profile.ty.clone(), resource)];
        for step in parent.into_iter().flat_map(|p| p.split('.')) {
            parents = parents
                .into_iter()
                .flat_map(|(path, value)| {
                    let children = match &value[step] {
                        Value::Array(items) => items.iter().collect::<Vec<_>>(),
                        Value::Null => Vec::new(),
                        one => vec![one],
                    };
                    children.into_iter().map(move |c| (format!("{path}.{step}"), c))
                })
                .collect();
        }
        for (path, parent) in parents {
            let Some(object) = parent.as_object() else { continue };
            let present = match name.strip_suffix("[x]") {
                Some(stem) => object.keys().any(|k| choice_type(k, stem).is_some()),
                None => object.contains_key(name),
            };
            if required && !present {
                out.push(format!("{path}.{name}: required by {label}, missing"));
            }
            if forbidden && present {
                out.push(format!("{path}.{name}: not allowed by {label}"));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn observation() -> Value {
        json!({
            "resourceType": "Observation",
            "meta": { "profile": ["https://fhir.hl7.org.uk/StructureDefinition/UKCore-Observation"] },
            "status": "final",
            "code": { "coding": [{ "system": "http://snomed.info/sct", "code": "271649006" }] },
            "component": [{ "code": { "text": "Systolic" } }],
        })
    }

    #[test]
    fn a_resource_meeting_the_rules_has_no_problems() {
        assert_eq!(problems(&observation()), Vec::<String>::new());
    }

    #[test]
    fn r4_required_elements_and_bindings_are_held() {
        let mut broken = observation();
        broken.as_object_mut().unwrap().remove("status");
        broken["component"][0].as_object_mut().unwrap().remove("code");
        broken["valueQuantity"] = json!({ "value": 1, "comparator": "about" });
        assert_eq!(
            problems(&broken),
            vec![
                "Observation.status: required by R4, missing",
                "Observation.component[0].code: required by R4, missing",
                "Observation.valueQuantity.comparator: \"about\" is not in the value set its required binding names",
            ]
        );
        let mut wrong = observation();
        wrong["status"] = json!("done");
        assert_eq!(problems(&wrong).len(), 1, "{:?}", problems(&wrong));
    }

    #[test]
    fn a_required_codeable_concept_needs_one_coding_from_its_value_set() {
        let condition = |status: Value| {
            json!({
                "resourceType": "Condition",
                "meta": { "profile": ["https://fhir.hl7.org.uk/StructureDefinition/UKCore-Condition"] },
                "subject": { "reference": "Patient/p" },
                "clinicalStatus": status,
            })
        };
        let system = "http://terminology.hl7.org/CodeSystem/condition-clinical";
        let good = condition(json!({ "coding": [{ "system": system, "code": "active" }] }));
        assert_eq!(problems(&good), Vec::<String>::new());
        let bad = condition(json!({ "coding": [{ "system": system, "code": "ongoing" }] }));
        assert_eq!(problems(&bad).len(), 1, "{:?}", problems(&bad));
        // Text alone is no coding from the value set: said, not a panic.
        let text_only = condition(json!({ "text": "active" }));
        assert_eq!(problems(&text_only).len(), 1, "{:?}", problems(&text_only));
    }

    #[test]
    fn uk_core_profiles_extensions_and_nhs_numbers_are_held() {
        let patient = json!({
            "resourceType": "Patient",
            "identifier": [{ "system": NHS_NUMBER_SYSTEM, "value": "9000000008" }],
            "extension": [
                { "url": "https://fhir.hl7.org.uk/StructureDefinition/Extension-UKCore-EthnicCategory", "valueString": "A" },
                { "url": "https://fhir.hl7.org.uk/StructureDefinition/Extension-UKCore-NoSuchThing", "valueString": "x" },
            ],
        });
        assert_eq!(
            problems(&patient),
            vec![
                "Patient.identifier[0].value: '9000000008' is not an NHS number (ten digits, the last a check digit)",
                "Patient.extension[0]: Extension-UKCore-EthnicCategory takes one value[x] of type CodeableConcept",
                "Patient.extension[1].url: 'https://fhir.hl7.org.uk/StructureDefinition/Extension-UKCore-NoSuchThing' is not a UK Core extension",
                "Patient.meta.profile: does not name https://fhir.hl7.org.uk/StructureDefinition/UKCore-Patient",
            ]
        );
    }

    #[test]
    fn uk_core_mandatory_elements_are_held() {
        // UK Core makes AllergyIntolerance.code mandatory (R4 does not).
        let allergy = json!({
            "resourceType": "AllergyIntolerance",
            "meta": { "profile": ["https://fhir.hl7.org.uk/StructureDefinition/UKCore-AllergyIntolerance"] },
            "patient": { "reference": "Patient/p" },
        });
        assert_eq!(
            problems(&allergy),
            vec!["AllergyIntolerance.code: required by UKCore-AllergyIntolerance, missing"]
        );
    }
}
