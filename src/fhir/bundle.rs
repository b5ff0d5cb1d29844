//! Searchset Bundles: paging with opaque, tamper-proof page links bound to the principal and the query,
//! `_count` clamping, `_summary` and `_elements`, and OperationOutcome warnings as entries.

use super::error::{FhirError, FhirResult};
use super::rest::{Interaction, Summary};
use crate::tree::{Members, Tree};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use hmac::{Hmac, Mac};
use serde_json::{json, Value};
use sha2::Sha256;

pub const DEFAULT_COUNT: usize = 50;
pub const MAX_COUNT: usize = 200;

/// The page size to use: `_count` clamped to the maximum, never an error.
pub fn page_size(interaction: &Interaction) -> usize {
    interaction.count.unwrap_or(DEFAULT_COUNT).min(MAX_COUNT)
}

/// Signs and checks page tokens: where the page starts (offset, and the id of the match just before it) + a
/// fingerprint of (principal, query), under an HMAC.
#[derive(Clone)]
pub struct PageTokens {
    key: Vec<u8>,
}

/// Where a page link resumes: its offset, and the id of the match just before it when the link was made (none
/// for the first page, or where the matches are paged by their store).
#[derive(Debug, PartialEq)]
pub struct PagePlace {
    pub offset: usize,
    pub after: Option<String>,
}

impl PagePlace {
    pub const START: PagePlace = PagePlace { offset: 0, after: None };
}

/// The longest id a page token names (a FHIR id is at most 64 characters).
const MAX_AFTER: usize = 64;

impl PageTokens {
    pub fn new(key: &[u8]) -> Self {
        PageTokens {
            key: [key, b"/page-tokens"].concat(),
        }
    }

    fn mac(&self, offset: u64, after: &[u8], fingerprint: &str) -> Hmac<Sha256> {
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(&self.key).expect("HMAC takes keys of any length");
        mac.update(&offset.to_be_bytes());
        mac.update(&[after.len() as u8]);
        mac.update(after);
        mac.update(fingerprint.as_bytes());
        mac
    }

    pub fn issue(&self, offset: usize, after: Option<&str>, fingerprint: &str) -> String {
        let offset = offset as u64;
        let after = after
            .map(str::as_bytes)
            .filter(|a| a.len() <= MAX_AFTER)
            .unwrap_or_default();
        let tag = self.mac(offset, after, fingerprint).finalize().into_bytes();
        let mut bytes = offset.to_be_bytes().to_vec();
        bytes.push(after.len() as u8);
        bytes.extend_from_slice(after);
        bytes.extend_from_slice(&tag[..16]);
        URL_SAFE_NO_PAD.encode(bytes)
    }

    /// Where a token's page starts, if it was issued for this principal and query.
    pub fn check(&self, token: &str, fingerprint: &str) -> FhirResult<PagePlace> {
        let invalid = || {
            FhirError::bad_request("IM1-1301", "the page link is not valid for this search or this user").at("_page")
        };
        let bytes = URL_SAFE_NO_PAD.decode(token).map_err(|_| invalid())?;
        let (offset, rest) = bytes.split_first_chunk::<8>().ok_or_else(invalid)?;
        let (length, rest) = rest.split_first().ok_or_else(invalid)?;
        let length = usize::from(*length);
        if length > MAX_AFTER || rest.len() != length + 16 {
            return Err(invalid());
        }
        let (after, tag) = rest.split_at(length);
        let offset = u64::from_be_bytes(*offset);
        self.mac(offset, after, fingerprint)
            .verify_truncated_left(tag)
            .map_err(|_| invalid())?;
        let after = String::from_utf8(after.to_vec()).map_err(|_| invalid())?;
        Ok(PagePlace {
            offset: usize::try_from(offset).map_err(|_| invalid())?,
            after: (!after.is_empty()).then_some(after),
        })
    }
}

/// The offset a page link resumes at in the matches as they are now. A native record can change between two
/// pages (an item filed, one deleted): the page follows on from the match the link followed, wherever that now
/// is, rather than repeat or skip what moved; either way the Bundle says the matches changed.
pub fn resume(place: &PagePlace, matches: &[Tree], warnings: &mut Vec<Value>) -> usize {
    let Some(after) = &place.after else {
        return place.offset;
    };
    let id_at = |i: usize| matches.get(i).and_then(|m| m.get("id")).and_then(Tree::as_str);
    if place.offset > 0 && id_at(place.offset - 1) == Some(after.as_str()) {
        return place.offset;
    }
    let (offset, how) = match (0..matches.len()).find(|i| id_at(*i) == Some(after.as_str())) {
        Some(i) => (i + 1, "this page follows on from the last match of the page before"),
        None => (
            place.offset,
            "the match the page before ended with is gone, so some matches may be repeated or missed",
        ),
    };
    warnings.push(super::error::warning(
        super::IssueType::Informational,
        "IM1-1302",
        format!("the matches changed since this page's link was made: {how}"),
    ));
    offset
}

/// Assembles a searchset from all matches (already sorted), one page of them, and warnings.
pub struct SearchsetInput<'a> {
    pub base: &'a str,
    pub resource_type: &'a str,
    /// The query without paging parameters, as the self link shows it.
    pub query: String,
    pub matches: Vec<Tree>,
    /// When the matches are already the page (a store that pages itself), how many match in all.
    pub total: Option<usize>,
    pub included: Vec<Tree>,
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

pub fn searchset(input: SearchsetInput) -> Tree {
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
    // A link names the match just before its page, where the matches are all here.
    let after = |offset: usize| -> Option<String> {
        let before = offset.checked_sub(1).filter(|_| input.total.is_none())?;
        input.matches.get(before)?.get("id")?.as_str().map(String::from)
    };
    let page_param = |offset: usize| {
        let token = input.tokens.issue(offset, after(offset).as_deref(), input.fingerprint);
        format!("{count_param}&_page={token}")
    };
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
        entries.push(Tree::from(json!({
            "resource": super::error::outcome(input.warnings),
            "search": { "mode": "outcome" },
        })));
    }
    let mut bundle = Tree::from(json!({
        "resourceType": "Bundle",
        "meta": { "profile": ["https://fhir.hl7.org.uk/StructureDefinition/UKCore-Bundle"] },
        "type": "searchset",
        "total": total,
        "link": links,
    }));
    if let (Some(members), false) = (bundle.as_object_mut(), entries.is_empty()) {
        members.push_new("entry".into(), Tree::Array(entries));
    }
    bundle
}

fn entry(base: &str, resource: Tree, mode: &'static str) -> Tree {
    let full_url = match (
        resource.get("resourceType").and_then(Tree::as_str),
        resource.get("id").and_then(Tree::as_str),
    ) {
        (Some(t), Some(id)) => Some(format!("{base}/{t}/{id}")),
        _ => None,
    };
    let mut entry = Members::with_capacity(3);
    if let Some(url) = full_url {
        entry.push_new("fullUrl".into(), Tree::from(url));
    }
    entry.push_new("resource".into(), resource);
    let search = [("mode", Tree::from(mode))].into_iter().collect();
    entry.push_new("search".into(), Tree::Object(search));
    Tree::Object(entry)
}

/// Elements every subset keeps: summary elements of every resource.
const ALWAYS: &[&str] = &["resourceType", "id", "meta", "implicitRules"];

/// Applies `_summary` (true/data/text) and `_elements`, marking the result SUBSETTED as FHIR requires. A subset
/// keeps the type's mandatory elements whatever was asked for, so it is still a valid resource.
pub fn shape(resource: Tree, summary: Option<Summary>, elements: &[String]) -> Tree {
    let Tree::Object(map) = resource else { return resource };
    let resource_type = map.get("resourceType").and_then(Tree::as_str).unwrap_or_default();
    let defs = r4_elements().get(resource_type);
    // R4's mandatory elements, and those the profile the resource claims makes mandatory (UK Core's
    // MedicationRequest.substitution, AllergyIntolerance.code): a subset still meets what it claims.
    let claimed = map
        .get("meta")
        .and_then(|meta| meta["profile"].get(0))
        .and_then(Tree::as_str)
        .and_then(|url| crate::mapping::profile::Defs::get().profile(url, resource_type));
    let profile_mandatory = claimed
        .into_iter()
        .flat_map(|profile| &profile.elements)
        .filter(|e| e.min.is_some_and(|min| min >= 1) && !e.id.contains(['.', ':']))
        .map(|e| e.id.as_str());
    let mandatory: Vec<&str> = defs
        .map_or(&[][..], |d| d.mandatory.as_slice())
        .iter()
        .copied()
        .chain(profile_mandatory)
        .collect();
    let mandatory = mandatory.as_slice();
    let keep: Vec<&str> = match summary {
        Some(Summary::Text) => std::iter::once("text").chain(mandatory.iter().copied()).collect(),
        Some(Summary::True) => match defs {
            Some(defs) => defs.summary.iter().chain(mandatory).copied().collect(),
            // A type without a table here is given whole rather than guessed at.
            None => return Tree::Object(map),
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
        _ => return Tree::Object(map),
    };
    mark_subsetted(
        map.into_iter()
            .filter(|(k, _)| ALWAYS.contains(&k.as_ref()) || keep.iter().any(|e| names(e, k)))
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

fn mark_subsetted(mut map: Members) -> Tree {
    let meta = map.entry_or_insert_with("meta", || Tree::Object(Members::new()));
    if let Some(meta) = meta.as_object_mut() {
        let tags = meta.entry_or_insert_with("tag", || Tree::Array(Vec::new()));
        if let Some(tags) = tags.as_array_mut() {
            tags.push(Tree::from(json!({
                "system": "http://terminology.hl7.org/CodeSystem/v3-ObservationValue",
                "code": "SUBSETTED",
                "display": "subsetted",
            })));
        }
    }
    Tree::Object(map)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `shape` on serde_json values, as the tests write them.
    fn shape(resource: Value, summary: Option<Summary>, elements: &[String]) -> Value {
        Value::from(super::shape(Tree::from(resource), summary, elements))
    }

    #[test]
    fn page_tokens_are_bound_to_the_search() {
        let tokens = PageTokens::new(b"key");
        let token = tokens.issue(50, Some("p49"), "alice|Patient?name=x");
        let place = tokens.check(&token, "alice|Patient?name=x").unwrap();
        assert_eq!(
            place,
            PagePlace {
                offset: 50,
                after: Some("p49".into())
            }
        );
        assert!(tokens.check(&token, "bob|Patient?name=x").is_err());
        assert!(tokens.check("AAAA", "alice|Patient?name=x").is_err());
    }

    #[test]
    fn a_page_resumes_after_the_match_its_link_followed() {
        let list = |ids: &[&str]| -> Vec<Tree> { ids.iter().map(|id| Tree::from(json!({ "id": id }))).collect() };
        let place = PagePlace {
            offset: 2,
            after: Some("b".into()),
        };
        let mut warnings = Vec::new();
        // Unchanged: where it was, and nothing said.
        assert_eq!(resume(&place, &list(&["a", "b", "c"]), &mut warnings), 2);
        assert!(warnings.is_empty());
        // One filed before it: after it still.
        assert_eq!(resume(&place, &list(&["new", "a", "b", "c"]), &mut warnings), 3);
        // It is gone: the same offset, and said.
        assert_eq!(resume(&place, &list(&["a", "c", "d"]), &mut warnings), 2);
        assert_eq!(warnings.len(), 2);
        assert!(warnings[1].to_string().contains("gone"));
        // A first page, or a store's, has nothing to follow.
        assert_eq!(resume(&PagePlace::START, &list(&["a"]), &mut warnings), 0);
    }

    #[test]
    fn paging_links_and_clamping() {
        let tokens = PageTokens::new(b"key");
        let matches: Vec<Tree> = (0..5)
            .map(|i| Tree::from(json!({"resourceType": "Patient", "id": format!("p{i}")})))
            .collect();
        let bundle = Value::from(searchset(SearchsetInput {
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
        }));
        assert_eq!(bundle["total"], 5);
        assert_eq!(bundle["entry"].as_array().unwrap().len(), 2);
        assert_eq!(bundle["link"][0]["url"], "http://x/fhir/Patient?name=a&_count=2");
        assert_eq!(bundle["link"][1]["relation"], "next");
        assert_eq!(bundle["entry"][0]["fullUrl"], "http://x/fhir/Patient/p0");
        // The next link's token names the last match of this page, which its page follows.
        let next = bundle["link"][1]["url"].as_str().unwrap();
        let token = next.rsplit_once("_page=").unwrap().1;
        assert_eq!(
            tokens.check(token, "f").unwrap(),
            PagePlace {
                offset: 2,
                after: Some("p1".into())
            }
        );
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
        // And what the profile a resource claims makes mandatory: UK Core's MedicationRequest.substitution
        // (not in R4's summary), AllergyIntolerance.code.
        let request = json!({"resourceType": "MedicationRequest",
            "meta": {"profile": ["https://fhir.hl7.org.uk/StructureDefinition/UKCore-MedicationRequest"]},
            "status": "active", "intent": "order", "subject": {"reference": "Patient/1"},
            "substitution": {"allowedBoolean": false}, "note": [{"text": "n"}]});
        for shaped in [
            shape(request.clone(), Some(Summary::True), &[]),
            shape(request.clone(), Some(Summary::Text), &[]),
            shape(request, None, &["status".into()]),
        ] {
            assert!(
                shaped.get("substitution").is_some() && shaped.get("note").is_none(),
                "{shaped}"
            );
        }
        let allergy = json!({"resourceType": "AllergyIntolerance",
            "meta": {"profile": ["https://fhir.hl7.org.uk/StructureDefinition/UKCore-AllergyIntolerance"]},
            "patient": {"reference": "Patient/1"}, "code": {"text": "Penicillin"}, "note": [{"text": "n"}]});
        let text = shape(allergy, Some(Summary::Text), &[]);
        assert!(text.get("code").is_some() && text.get("note").is_none(), "{text}");
    }
}
