//! The ConceptMaps the mappings use, served as FHIR: read, search (by `url`, `_id`, `source-system`) and
//! `$translate`, so a client can see exactly how a native code became the one it received.

use crate::fhir::bundle::{self, PageTokens, SearchsetInput};
use crate::fhir::rest::{Handling, Interaction, Kind};
use crate::fhir::{FhirError, FhirResult};
use crate::mapping::Registry;
use crate::tree::Tree;
use serde_json::{json, Value};

/// The parameters a ConceptMap search takes.
const SEARCH_PARAMS: [&str; 3] = ["url", "_id", "source-system"];

/// The `$translate` parameters served: from a map's source to its target, optionally to one target system.
const TRANSLATE_PARAMS: [&str; 5] = ["url", "code", "system", "targetsystem", "reverse"];

/// `_sort`, `_include` and `_revinclude`, which a ConceptMap search does not take (its maps are in the order
/// they are loaded, and point at nothing served here): a 400 as for any search, or a warning under
/// `Prefer: handling=lenient`, never silently ignored.
fn refuse_shaping(interaction: &Interaction, warnings: &mut Vec<Value>) -> FhirResult<()> {
    for name in interaction.page_shaping() {
        let code = if name == "_sort" { "IM1-1209" } else { "IM1-1206" };
        let message = format!("{name} is not supported on ConceptMap searches");
        if interaction.handling != Handling::Lenient {
            return Err(FhirError::bad_request(code, message).at(name));
        }
        warnings.push(crate::fhir::error::warning(
            crate::fhir::IssueType::NotSupported,
            code,
            format!("{message} and was ignored"),
        ));
    }
    Ok(())
}

pub fn handle(registry: &Registry, pages: &PageTokens, interaction: &Interaction, base: &str) -> FhirResult<Tree> {
    let maps = &registry.concept_maps;
    match &interaction.kind {
        Kind::Read => {
            interaction.refuse_not_taken()?;
            let id = interaction.id.as_deref().unwrap_or_default();
            let map = maps
                .get(id)
                .filter(|m| m.id == id)
                .ok_or_else(|| FhirError::not_found("IM1-1401", "ConceptMap not found"))?;
            // As every read: `_summary` and `_elements` give a subset, marked so.
            Ok(bundle::shape(
                Tree::from(&map.resource),
                interaction.summary,
                &interaction.elements,
            ))
        }
        Kind::Search => {
            // Unknown parameters are refused, or under `Prefer: handling=lenient` dropped with a warning.
            let mut applied = interaction.clone();
            let mut warnings = Vec::new();
            applied.params.clear();
            for p in &interaction.params {
                if !SEARCH_PARAMS.contains(&p.name.as_str()) {
                    if interaction.handling == Handling::Lenient {
                        warnings.push(crate::translate::dropped_param_warning(&p.name));
                        continue;
                    }
                    return Err(FhirError::bad_request(
                        "IM1-1201",
                        "ConceptMaps are searched by url, _id or source-system",
                    )
                    .at(p.name.clone()));
                }
                if let Some(modifier) = &p.modifier {
                    return Err(FhirError::bad_request(
                        "IM1-1203",
                        format!("ConceptMap's '{}' takes no modifier (':{modifier}')", p.name),
                    )
                    .at(p.name.clone()));
                }
                applied.params.push(p.clone());
            }
            refuse_shaping(interaction, &mut warnings)?;
            // What was ignored is left out of the links too.
            applied.sort.clear();
            applied.include.clear();
            applied.revinclude.clear();
            // Each repetition must hold (AND); one of its comma-separated values is enough (OR).
            let matches: Vec<Tree> = maps
                .iter()
                .filter(|m| {
                    applied.params.iter().all(|p| {
                        p.values.iter().any(|value| match p.name.as_str() {
                            "url" => &m.url == value,
                            "_id" => &m.id == value,
                            _ => m.resource["group"]
                                .as_array()
                                .is_some_and(|g| g.iter().any(|g| g["source"].as_str() == Some(value))),
                        })
                    })
                })
                .map(|m| Tree::from(&m.resource))
                .collect();
            // Not patient data: pages are bound to the query alone.
            let query = crate::app::canonical_query(&applied);
            let fingerprint = format!("ConceptMap|{query}");
            let offset = match &interaction.page {
                Some(token) => bundle::resume(&pages.check(token, &fingerprint)?, &matches, &mut warnings),
                None => 0,
            };
            Ok(bundle::searchset(SearchsetInput {
                base,
                resource_type: "ConceptMap",
                query,
                matches,
                included: Vec::new(),
                total: None,
                warnings,
                offset,
                count: bundle::page_size(interaction),
                tokens: pages,
                fingerprint: &fingerprint,
                summary: interaction.summary,
                elements: &interaction.elements,
                output: interaction.output_query(),
            }))
        }
        Kind::Operation(name) if name == "translate" => {
            // A `coding` in the URL is `system|code` (FHIR's token form), as one by POST is a valueCoding.
            let params: Vec<crate::fhir::rest::SearchParam> = interaction
                .params
                .iter()
                .flat_map(|p| match (p.name.as_str(), p.values.as_slice()) {
                    ("coding", [value]) if p.modifier.is_none() => {
                        let (system, code) = crate::fhir::search::split_token(value);
                        let part = |name: &str, value: String| crate::fhir::rest::SearchParam {
                            name: name.into(),
                            modifier: None,
                            values: vec![value],
                        };
                        let system = system.filter(|s| !s.is_empty()).map(|s| part("system", s));
                        system.into_iter().chain([part("code", code)]).collect()
                    }
                    _ => vec![p.clone()],
                })
                .collect();
            let param = |name: &str| {
                params
                    .iter()
                    .find(|p| p.name == name)
                    .and_then(|p| p.values.first().cloned())
            };
            let map = match (&interaction.id, param("url")) {
                (Some(id), _) => maps.get(id).filter(|m| &m.id == id),
                (None, Some(url)) => maps.get(&url).filter(|m| m.url == url),
                (None, None) => {
                    return Err(FhirError::bad_request("IM1-1211", "$translate needs a ConceptMap id or url").at("url"))
                }
            }
            .ok_or_else(|| FhirError::not_found("IM1-1401", "ConceptMap not found"))?;
            // Invoked on one map, a url naming another is a contradiction, not a choice.
            if param("url").is_some_and(|url| url != map.url) {
                return Err(FhirError::bad_request(
                    "IM1-1211",
                    format!(
                        "url names another ConceptMap than {}, on which $translate was invoked",
                        map.id
                    ),
                )
                .at("url"));
            }
            for p in &params {
                // Each is 0..1: a second code (`code` and a `coding`) would leave one of them unread.
                let given = params
                    .iter()
                    .filter(|q| q.name == p.name)
                    .map(|q| q.values.len())
                    .sum::<usize>();
                if given > 1 {
                    return Err(FhirError::bad_request(
                        "IM1-1211",
                        format!("$translate takes one '{}' (a coding gives a system and a code)", p.name),
                    )
                    .at(p.name.clone()));
                }
                if !TRANSLATE_PARAMS.contains(&p.name.as_str()) {
                    return Err(FhirError::bad_request(
                        "IM1-1211",
                        format!(
                            "$translate takes {} here; '{}' is not supported",
                            TRANSLATE_PARAMS.join(", "),
                            p.name
                        ),
                    )
                    .at(p.name.clone()));
                }
            }
            // Its answer is a Parameters resource, neither paged nor shaped: what would do either is refused
            // rather than silently dropped (ignored under lenient handling).
            if let (Some(name), Handling::Strict) = (interaction.result_params_given().first(), interaction.handling) {
                return Err(FhirError::bad_request(
                    "IM1-1211",
                    format!("$translate gives one Parameters resource; '{name}' does not apply to it"),
                )
                .at(*name));
            }
            if param("reverse").is_some_and(|r| r != "false") {
                return Err(FhirError::bad_request(
                    "IM1-1211",
                    "$translate here translates from a map's source to its target only (reverse is not supported)",
                )
                .at("reverse"));
            }
            let code = param("code")
                .filter(|code| !code.trim().is_empty())
                .ok_or_else(|| FhirError::bad_request("IM1-1211", "$translate needs a code").at("code"))?;
            // R4's $translate: "if a code is provided, a system must be provided" (a code means nothing
            // without it; this map's sources are named so the client can say which it meant).
            let system = param("system").filter(|s| !s.trim().is_empty());
            if system.is_none() {
                let mut sources: Vec<&str> = map.resource["group"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|g| g["source"].as_str())
                    .collect();
                sources.dedup();
                return Err(FhirError::bad_request(
                    "IM1-1211",
                    format!(
                        "$translate needs the code's system with the code (this map's source: {})",
                        sources.join(", ")
                    ),
                )
                .at("system"));
            }
            let target_system = param("targetsystem");
            let targets: Vec<_> = map
                .translate(system.as_deref(), &code)
                .into_iter()
                .filter(|t| target_system.as_ref().is_none_or(|s| &t.system == s))
                .collect();
            let mut parameters = vec![json!({ "name": "result", "valueBoolean": !targets.is_empty() })];
            if targets.is_empty() {
                parameters
                    .push(json!({ "name": "message", "valueString": "no translation for that code in this map" }));
            }
            for t in targets {
                let mut coding = json!({ "system": t.system, "code": t.code });
                if let Some(display) = &t.display {
                    coding["display"] = json!(display);
                }
                parameters.push(json!({ "name": "match", "part": [
                    { "name": "equivalence", "valueCode": t.equivalence },
                    { "name": "concept", "valueCoding": coding },
                    { "name": "source", "valueUri": map.url },
                ]}));
            }
            Ok(Tree::from(
                json!({ "resourceType": "Parameters", "parameter": parameters }),
            ))
        }
        ref kind => {
            let allow = match kind {
                Kind::Create | Kind::Update | Kind::Patch | Kind::Delete => "GET, HEAD",
                _ => "",
            };
            Err(
                FhirError::method_not_allowed("IM1-1009", "ConceptMaps are read, searched and used by $translate here")
                    .allow(allow),
            )
        }
    }
}
