//! The ConceptMaps the mappings use, served as FHIR: read, search (by `url`, `_id`, `source-system`) and
//! `$translate`, so a client can see exactly how a native code became the one it received.

use crate::fhir::bundle::{self, PageTokens, SearchsetInput};
use crate::fhir::rest::{Interaction, Kind};
use crate::fhir::{FhirError, FhirResult};
use crate::mapping::Registry;
use serde_json::{json, Value};

pub fn handle(registry: &Registry, pages: &PageTokens, interaction: &Interaction, base: &str) -> FhirResult<Value> {
    let maps = &registry.concept_maps;
    let param = |name: &str| {
        interaction
            .params
            .iter()
            .find(|p| p.name == name)
            .and_then(|p| p.values.first().cloned())
    };
    match &interaction.kind {
        Kind::Read => {
            let id = interaction.id.as_deref().unwrap_or_default();
            maps.get(id)
                .filter(|m| m.id == id)
                .map(|m| m.resource.clone())
                .ok_or_else(|| FhirError::not_found("IM1-1401", "ConceptMap not found"))
        }
        Kind::Search => {
            for p in &interaction.params {
                if !matches!(p.name.as_str(), "url" | "_id" | "source-system") {
                    return Err(FhirError::bad_request(
                        "IM1-1201",
                        "ConceptMaps are searched by url, _id or source-system",
                    )
                    .at(p.name.clone()));
                }
            }
            let (url, id, source) = (param("url"), param("_id"), param("source-system"));
            let matches: Vec<Value> = maps
                .iter()
                .filter(|m| url.as_ref().is_none_or(|u| &m.url == u))
                .filter(|m| id.as_ref().is_none_or(|i| &m.id == i))
                .filter(|m| {
                    source.as_ref().is_none_or(|s| {
                        m.resource["group"]
                            .as_array()
                            .is_some_and(|g| g.iter().any(|g| g["source"].as_str() == Some(s)))
                    })
                })
                .map(|m| m.resource.clone())
                .collect();
            // Not patient data: pages are bound to the query alone.
            let query = crate::app::canonical_query(interaction);
            let fingerprint = format!("ConceptMap|{query}");
            let offset = match &interaction.page {
                Some(token) => pages.check(token, &fingerprint)?,
                None => 0,
            };
            Ok(bundle::searchset(SearchsetInput {
                base,
                resource_type: "ConceptMap",
                query,
                matches,
                included: Vec::new(),
                total: None,
                warnings: Vec::new(),
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
            let map = match (&interaction.id, param("url")) {
                (Some(id), _) => maps.get(id).filter(|m| &m.id == id),
                (None, Some(url)) => maps.get(&url).filter(|m| m.url == url),
                (None, None) => {
                    return Err(FhirError::bad_request("IM1-1211", "$translate needs a ConceptMap id or url").at("url"))
                }
            }
            .ok_or_else(|| FhirError::not_found("IM1-1401", "ConceptMap not found"))?;
            let code = param("code")
                .ok_or_else(|| FhirError::bad_request("IM1-1211", "$translate needs a code").at("code"))?;
            let system = param("system");
            let targets = map.translate(system.as_deref(), &code);
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
            Ok(json!({ "resourceType": "Parameters", "parameter": parameters }))
        }
        _ => Err(FhirError::method_not_allowed(
            "IM1-1009",
            "ConceptMaps are read, searched and used by $translate here",
        )),
    }
}
