//! Code translations as FHIR ConceptMaps: loaded from `conformance/ConceptMap/`, served as resources, used by
//! `$translate`, and called from mapping expressions through `translate()` and `coding()`.

use crate::tree::{Members, Tree};
use serde_json::Value;
use std::collections::HashMap;

/// One translation target.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub system: String,
    pub code: String,
    pub display: Option<String>,
    pub equivalence: String,
    /// The target as a FHIR Coding, made once (what `coding()` gives): its keys in the order the
    /// engine's maps keep them (sorted), as resources have always had them.
    pub coding: Tree,
}

impl Target {
    fn new(system: String, code: String, display: Option<String>, equivalence: String) -> Target {
        // `display` is null when the map gives none: expressions see it so (`c.display is defined`), and
        // templates leave it out.
        let mut coding = Members::with_capacity(3);
        coding.push_new("code".into(), Tree::from(code.as_str()));
        coding.push_new("display".into(), Tree::from(display.clone()));
        coding.push_new("system".into(), Tree::from(system.as_str()));
        Target {
            system,
            code,
            display,
            equivalence,
            coding: Tree::Object(coding),
        }
    }
}

/// Codes to their targets: looked up for every coded item of every record, so hashed with foldhash (the
/// keys come from the proxy's own ConceptMaps, not from clients).
type ByCode = HashMap<String, Vec<(String, Target)>, foldhash::fast::RandomState>;

/// A loaded ConceptMap, indexed for lookups by source code.
#[derive(Debug, Clone)]
pub struct ConceptMap {
    pub id: String,
    pub url: String,
    pub resource: Value,
    /// (source system, source code) -> targets; the source system may be empty.
    by_code: ByCode,
}

impl ConceptMap {
    /// Builds the index from a ConceptMap resource; errors name the problem.
    pub fn from_resource(resource: Value) -> Result<Self, String> {
        if resource.get("resourceType").and_then(Value::as_str) != Some("ConceptMap") {
            return Err("not a ConceptMap".into());
        }
        let id = resource
            .get("id")
            .and_then(Value::as_str)
            .ok_or("a ConceptMap needs an id")?
            .to_string();
        let url = resource
            .get("url")
            .and_then(Value::as_str)
            .ok_or("a ConceptMap needs a url")?
            .to_string();
        let mut by_code = ByCode::default();
        for group in resource.get("group").and_then(Value::as_array).into_iter().flatten() {
            let source = group.get("source").and_then(Value::as_str).unwrap_or("").to_string();
            let target_system = group.get("target").and_then(Value::as_str).unwrap_or("").to_string();
            for element in group.get("element").and_then(Value::as_array).into_iter().flatten() {
                let code = element
                    .get("code")
                    .and_then(Value::as_str)
                    .ok_or("an element without a code")?;
                for target in element.get("target").and_then(Value::as_array).into_iter().flatten() {
                    let equivalence = target
                        .get("equivalence")
                        .and_then(Value::as_str)
                        .unwrap_or("equivalent")
                        .to_string();
                    if matches!(equivalence.as_str(), "unmatched" | "disjoint") {
                        continue;
                    }
                    let Some(target_code) = target.get("code").and_then(Value::as_str) else {
                        continue;
                    };
                    by_code.entry(code.to_string()).or_default().push((
                        source.clone(),
                        Target::new(
                            target_system.clone(),
                            target_code.to_string(),
                            target.get("display").and_then(Value::as_str).map(String::from),
                            equivalence,
                        ),
                    ));
                }
            }
        }
        Ok(ConceptMap {
            id,
            url,
            resource,
            by_code,
        })
    }

    /// The first target for a code, from any source system in the map.
    pub fn lookup(&self, code: &str) -> Option<&Target> {
        self.by_code
            .get(code)
            .and_then(|targets| targets.first())
            .map(|(_, t)| t)
    }

    /// Every target for a code from the given source system (or any, when `system` is None).
    pub fn translate(&self, system: Option<&str>, code: &str) -> Vec<&Target> {
        self.by_code
            .get(code)
            .into_iter()
            .flatten()
            .filter(|(source, _)| system.is_none_or(|s| s == source))
            .map(|(_, t)| t)
            .collect()
    }
}

/// All ConceptMaps, found by id or canonical URL.
#[derive(Debug, Clone, Default)]
pub struct ConceptMaps {
    maps: Vec<ConceptMap>,
}

impl ConceptMaps {
    /// Adds a map, or puts it in place of the one with its id.
    pub fn insert(&mut self, map: ConceptMap) {
        match self.maps.iter_mut().find(|m| m.id == map.id) {
            Some(same) => *same = map,
            None => self.maps.push(map),
        }
    }

    pub fn get(&self, id_or_url: &str) -> Option<&ConceptMap> {
        self.maps.iter().find(|m| m.id == id_or_url || m.url == id_or_url)
    }

    /// Where a map is, so a compiled call finds it again without comparing names ([`ConceptMaps::at`]).
    pub fn position(&self, id_or_url: &str) -> Option<usize> {
        self.maps.iter().position(|m| m.id == id_or_url || m.url == id_or_url)
    }

    pub fn at(&self, position: usize) -> &ConceptMap {
        &self.maps[position]
    }

    pub fn iter(&self) -> impl Iterator<Item = &ConceptMap> {
        self.maps.iter()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lookups_follow_the_groups() {
        let map = ConceptMap::from_resource(serde_json::json!({
            "resourceType": "ConceptMap", "id": "sex", "url": "https://example.org/ConceptMap/sex",
            "group": [{ "source": "urn:native", "target": "http://hl7.org/fhir/administrative-gender",
                "element": [{ "code": "Female", "target": [{ "code": "female", "equivalence": "equal" }] },
                            { "code": "Other", "target": [{ "equivalence": "unmatched" }] }] }]
        }))
        .unwrap();
        assert_eq!(map.lookup("Female").unwrap().code, "female");
        assert!(map.lookup("Other").is_none());
        assert_eq!(map.translate(Some("urn:native"), "Female").len(), 1);
        assert!(map.translate(Some("urn:else"), "Female").is_empty());
    }
}
