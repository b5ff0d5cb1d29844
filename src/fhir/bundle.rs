//! Searchset Bundles: paging with opaque, tamper-proof page links bound to the principal and the query,
//! `_count` clamping, `_summary` and `_elements`, and OperationOutcome warnings as entries.

use super::error::{FhirError, FhirResult};
use super::rest::{Interaction, Summary};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use hmac::{Hmac, Mac};
use serde_json::{json, Map, Value};
use sha2::Sha256;

pub const DEFAULT_COUNT: usize = 50;
pub const MAX_COUNT: usize = 200;

/// The page size to use: `_count` clamped to the maximum, never an error.
pub fn page_size(interaction: &Interaction) -> usize {
    interaction.count.unwrap_or(DEFAULT_COUNT).min(MAX_COUNT)
}

/// Signs and checks page tokens: offset + a fingerprint of (principal, query), under an HMAC.
#[derive(Clone)]
pub struct PageTokens {
    key: Vec<u8>,
}

impl PageTokens {
    pub fn new(key: &[u8]) -> Self {
        PageTokens {
            key: [key, b"/page-tokens"].concat(),
        }
    }

    fn mac(&self, offset: u64, fingerprint: &str) -> Hmac<Sha256> {
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(&self.key).expect("HMAC takes keys of any length");
        mac.update(&offset.to_be_bytes());
        mac.update(fingerprint.as_bytes());
        mac
    }

    pub fn issue(&self, offset: usize, fingerprint: &str) -> String {
        let offset = offset as u64;
        let tag = self.mac(offset, fingerprint).finalize().into_bytes();
        let mut bytes = offset.to_be_bytes().to_vec();
        bytes.extend_from_slice(&tag[..16]);
        URL_SAFE_NO_PAD.encode(bytes)
    }

    /// The offset a token stands for, if it was issued for this principal and query.
    pub fn check(&self, token: &str, fingerprint: &str) -> FhirResult<usize> {
        let invalid = || {
            FhirError::bad_request("IM1-1301", "the page link is not valid for this search or this user").at("_page")
        };
        let bytes = URL_SAFE_NO_PAD.decode(token).map_err(|_| invalid())?;
        if bytes.len() != 24 {
            return Err(invalid());
        }
        let offset = u64::from_be_bytes(bytes[..8].try_into().map_err(|_| invalid())?);
        self.mac(offset, fingerprint)
            .verify_truncated_left(&bytes[8..])
            .map_err(|_| invalid())?;
        usize::try_from(offset).map_err(|_| invalid())
    }
}

/// Assembles a searchset from all matches (already sorted), one page of them, and warnings.
pub struct SearchsetInput<'a> {
    pub base: &'a str,
    pub resource_type: &'a str,
    /// The query without paging parameters, as the self link shows it.
    pub query: String,
    pub matches: Vec<Value>,
    /// When the matches are already the page (a store that pages itself), how many match in all.
    pub total: Option<usize>,
    pub included: Vec<Value>,
    pub warnings: Vec<Value>,
    pub offset: usize,
    pub count: usize,
    pub tokens: &'a PageTokens,
    pub fingerprint: &'a str,
    pub summary: Option<Summary>,
    pub elements: &'a [String],
    /// `_format` and `_pretty` as asked (`Interaction::output_query`): every link keeps them.
    pub output: String,
}

pub fn searchset(input: SearchsetInput) -> Value {
    let total = input.total.unwrap_or(input.matches.len());
    let skip = if input.total.is_some() { 0 } else { input.offset };
    let url = |extra: &str| {
        let mut query = input.query.clone();
        if !extra.is_empty() {
            if !query.is_empty() {
                query.push('&');
            }
            query.push_str(extra);
        }
        if !input.output.is_empty() {
            if !query.is_empty() {
                query.push('&');
            }
            query.push_str(&input.output);
        }
        if query.is_empty() {
            format!("{}/{}", input.base, input.resource_type)
        } else {
            format!("{}/{}?{}", input.base, input.resource_type, query)
        }
    };
    let count_param = format!("_count={}", input.count);
    let page_param = |offset: usize| format!("{count_param}&_page={}", input.tokens.issue(offset, input.fingerprint));
    let mut links = vec![
        json!({ "relation": "self", "url": url(&if input.offset == 0 { count_param.clone() } else { page_param(input.offset) }) }),
    ];
    if input.summary != Some(Summary::Count) {
        if input.offset + input.count < total && input.count > 0 {
            links.push(json!({ "relation": "next", "url": url(&page_param(input.offset + input.count)) }));
        }
        if input.offset > 0 {
            links.push(
                json!({ "relation": "previous", "url": url(&page_param(input.offset.saturating_sub(input.count))) }),
            );
        }
    }
    let mut entries = Vec::new();
    if input.summary != Some(Summary::Count) {
        for resource in input.matches.into_iter().skip(skip).take(input.count) {
            entries.push(entry(
                input.base,
                shape(resource, input.summary, input.elements),
                "match",
            ));
        }
        for resource in input.included {
            entries.push(entry(
                input.base,
                shape(resource, input.summary, input.elements),
                "include",
            ));
        }
    }
    if !input.warnings.is_empty() {
        entries.push(json!({
            "resource": super::error::outcome(input.warnings),
            "search": { "mode": "outcome" },
        }));
    }
    let mut bundle = json!({
        "resourceType": "Bundle",
        "meta": { "profile": ["https://fhir.hl7.org.uk/StructureDefinition/UKCore-Bundle"] },
        "type": "searchset",
        "total": total,
        "link": links,
    });
    if !entries.is_empty() {
        bundle["entry"] = Value::Array(entries);
    }
    bundle
}

fn entry(base: &str, resource: Value, mode: &str) -> Value {
    let full_url = match (
        resource.get("resourceType").and_then(Value::as_str),
        resource.get("id").and_then(Value::as_str),
    ) {
        (Some(t), Some(id)) => Some(format!("{base}/{t}/{id}")),
        _ => None,
    };
    let mut entry = Map::new();
    if let Some(url) = full_url {
        entry.insert("fullUrl".into(), json!(url));
    }
    entry.insert("resource".into(), resource);
    entry.insert("search".into(), json!({ "mode": mode }));
    Value::Object(entry)
}

/// Elements every subset keeps: summary elements of every resource.
const ALWAYS: &[&str] = &["resourceType", "id", "meta", "implicitRules"];

/// Applies `_summary` (true/data/text) and `_elements`, marking the result SUBSETTED as FHIR requires. A subset
/// keeps the type's mandatory elements whatever was asked for, so it is still a valid resource.
pub fn shape(resource: Value, summary: Option<Summary>, elements: &[String]) -> Value {
    let Value::Object(map) = resource else { return resource };
    let resource_type = map.get("resourceType").and_then(Value::as_str).unwrap_or_default();
    let defs = r4_elements().get(resource_type);
    let mandatory = defs.map_or(&[][..], |d| d.mandatory.as_slice());
    let keep: Vec<&str> = match summary {
        Some(Summary::Text) => std::iter::once("text").chain(mandatory.iter().copied()).collect(),
        Some(Summary::True) => match defs {
            Some(defs) => defs.summary.iter().chain(mandatory).copied().collect(),
            // A type without a table here is given whole rather than guessed at.
            None => return Value::Object(map),
        },
        Some(Summary::Data) => {
            return mark_subsetted(map.into_iter().filter(|(k, _)| k != "text").collect());
        }
        // `Observation.code` is `code` of an Observation, and nothing of another type.
        _ if !elements.is_empty() => elements
            .iter()
            .filter_map(|e| match e.split_once('.') {
                Some((t, element)) => (t == resource_type).then_some(element),
                None => Some(e.as_str()),
            })
            .map(|element| choice(defs, element))
            .chain(mandatory.iter().copied())
            .collect(),
        _ => return Value::Object(map),
    };
    mark_subsetted(
        map.into_iter()
            .filter(|(k, _)| ALWAYS.contains(&k.as_str()) || keep.iter().any(|e| names(e, k)))
            .collect(),
    )
}

/// An element named by its choice's stem (`value`, `effective`) as the choice it is (`value[x]`), where the
/// type's table knows one.
fn choice<'e>(defs: Option<&'e TypeElements>, element: &'e str) -> &'e str {
    defs.into_iter()
        .flat_map(|d| d.summary.iter().chain(&d.mandatory))
        .find(|name| name.strip_suffix("[x]") == Some(element))
        .copied()
        .unwrap_or(element)
}

/// Whether an element name (`status`, `value[x]`) names a JSON key (`status`, `valueQuantity`).
fn names(element: &str, key: &str) -> bool {
    match element.strip_suffix("[x]") {
        Some(stem) => key
            .strip_prefix(stem)
            .is_some_and(|rest| rest.starts_with(|c: char| c.is_ascii_uppercase())),
        None => element == key,
    }
}

/// A resource type's top-level summary and mandatory elements (`profiles/r4-summary.txt`).
struct TypeElements {
    summary: Vec<&'static str>,
    mandatory: Vec<&'static str>,
}

fn r4_elements() -> &'static std::collections::HashMap<&'static str, TypeElements> {
    static TABLE: std::sync::OnceLock<std::collections::HashMap<&'static str, TypeElements>> =
        std::sync::OnceLock::new();
    TABLE.get_or_init(|| {
        include_str!("../../profiles/r4-summary.txt")
            .lines()
            .filter(|line| !line.starts_with('#') && !line.trim().is_empty())
            .filter_map(|line| {
                let (summary, mandatory) = line.split_once('!')?;
                let mut summary = summary.split_whitespace();
                let resource_type = summary.next()?;
                Some((
                    resource_type,
                    TypeElements {
                        summary: summary.collect(),
                        mandatory: mandatory.split_whitespace().collect(),
                    },
                ))
            })
            .collect()
    })
}

fn mark_subsetted(mut map: Map<String, Value>) -> Value {
    let meta = map.entry("meta").or_insert_with(|| json!({}));
    if let Some(meta) = meta.as_object_mut() {
        let tags = meta.entry("tag").or_insert_with(|| json!([]));
        if let Some(tags) = tags.as_array_mut() {
            tags.push(json!({
                "system": "http://terminology.hl7.org/CodeSystem/v3-ObservationValue",
                "code": "SUBSETTED",
                "display": "subsetted",
            }));
        }
    }
    Value::Object(map)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn page_tokens_are_bound_to_the_search() {
        let tokens = PageTokens::new(b"key");
        let token = tokens.issue(50, "alice|Patient?name=x");
        assert_eq!(tokens.check(&token, "alice|Patient?name=x").unwrap(), 50);
        assert!(tokens.check(&token, "bob|Patient?name=x").is_err());
        assert!(tokens.check("AAAA", "alice|Patient?name=x").is_err());
    }

    #[test]
    fn paging_links_and_clamping() {
        let tokens = PageTokens::new(b"key");
        let matches: Vec<Value> = (0..5)
            .map(|i| json!({"resourceType": "Patient", "id": format!("p{i}")}))
            .collect();
        let bundle = searchset(SearchsetInput {
            base: "http://x/fhir",
            resource_type: "Patient",
            query: "name=a".into(),
            matches,
            included: vec![],
            total: None,
            warnings: vec![],
            offset: 0,
            count: 2,
            tokens: &tokens,
            fingerprint: "f",
            summary: None,
            elements: &[],
            output: String::new(),
        });
        assert_eq!(bundle["total"], 5);
        assert_eq!(bundle["entry"].as_array().unwrap().len(), 2);
        assert_eq!(bundle["link"][0]["url"], "http://x/fhir/Patient?name=a&_count=2");
        assert_eq!(bundle["link"][1]["relation"], "next");
        assert_eq!(bundle["entry"][0]["fullUrl"], "http://x/fhir/Patient/p0");
    }

    #[test]
    fn elements_keep_only_what_was_asked() {
        let shaped = shape(
            json!({"resourceType": "Patient", "id": "1", "gender": "female", "birthDate": "1985"}),
            None,
            &["gender".into()],
        );
        assert_eq!(shaped.get("birthDate"), None);
        assert_eq!(shaped["gender"], "female");
        assert_eq!(shaped["meta"]["tag"][0]["code"], "SUBSETTED");
    }

    #[test]
    fn subsets_keep_the_mandatory_elements_and_each_type_its_own_summary() {
        let observation = json!({"resourceType": "Observation", "id": "1", "status": "final",
            "code": {"text": "BP"}, "note": [{"text": "n"}], "valueQuantity": {"value": 1},
            "component": [{"code": {"text": "sys"}}], "text": {"status": "generated", "div": "<div/>"}});
        let asked = shape(observation.clone(), None, &["valueQuantity".into()]);
        assert!(asked["status"] == "final" && asked["code"]["text"] == "BP" && asked.get("note").is_none());
        // A choice element by its stem, as FHIR names it (`value` for value[x]).
        let by_stem = shape(observation.clone(), None, &["value".into()]);
        assert_eq!(by_stem["valueQuantity"], json!({"value": 1}), "{by_stem}");
        assert!(by_stem.get("note").is_none());
        let summary = shape(observation.clone(), Some(Summary::True), &[]);
        assert!(summary.get("component").is_some() && summary.get("valueQuantity").is_some());
        assert!(summary.get("note").is_none() && summary.get("text").is_none());
        let text = shape(observation, Some(Summary::Text), &[]);
        assert!(text.get("text").is_some() && text["status"] == "final" && text.get("valueQuantity").is_none());
        // Each type its own: PractitionerRole's practitioner is summary, Encounter's class mandatory.
        let role = shape(
            json!({"resourceType": "PractitionerRole", "practitioner": {"reference": "Practitioner/1"},
                   "availabilityExceptions": "x"}),
            Some(Summary::True),
            &[],
        );
        assert!(role.get("practitioner").is_some() && role.get("availabilityExceptions").is_none());
        let encounter = shape(
            json!({"resourceType": "Encounter", "status": "finished", "class": {"code": "AMB"}, "hospitalization": {}}),
            None,
            &["id".into()],
        );
        assert!(encounter.get("class").is_some() && encounter.get("hospitalization").is_none());
    }
}
