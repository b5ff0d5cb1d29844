//! Agreement beyond `patient=`: for seeded patients of two seeds, every token and date search parameter each
//! item type declares, with values taken from the patient's own record (a code, a status, a category; a date
//! with `ge`, `lt` and `eq` prefixes), gives the same matches in the same order through EMIS Web, TPP SystmOne
//! and Medicus. The parameters come from the mapping files themselves, so one added to a type is compared too.
//!
//! A match is named by its place in the type's unfiltered answer for the patient: records_agree.rs shows those
//! answers are the same at each supplier, in the same order, so equal places are equal resources.
use crate::common;

use common::token;
use im1_fhir::auth::Role;
use im1_fhir::mapping::{ParamType, Registry, Source};
use serde_json::Value;

const PRACTICES: [&str; 3] = ["Y90001", "Y90002", "Y90003"];

/// The value at a dotted path (lists give their first element), as a search would name it: a coding as
/// `system|code`, a period by its start, text as it is.
fn search_value(resource: &Value, path: &str) -> Option<String> {
    let mut value = resource;
    for step in path.split('.') {
        value = value.get(step)?;
        if let Some(first) = value.as_array().and_then(|list| list.first()) {
            value = first;
        }
    }
    if let Some(coding) = value.get("coding").and_then(|c| c.get(0)) {
        return Some(format!("{}|{}", coding["system"].as_str()?, coding["code"].as_str()?));
    }
    if let Some(start) = value.get("start") {
        return start.as_str().map(String::from);
    }
    value.as_str().map(String::from)
}

/// The searches to compare for one type, from the EMIS answer for the patient: each token parameter with the
/// value of its first resource that has one, each date parameter around the date of its middle resource.
fn searches(registry: &Registry, resource_type: &str, full: &[Value]) -> Vec<String> {
    let mapping = registry.get("emis", resource_type).expect("mapped at EMIS");
    let mut out = Vec::new();
    // `_id` names each supplier's own ids and `_lastUpdated` its own `meta`: both set aside by the agreement.
    for param in mapping.params.iter().filter(|p| !p.name.starts_with('_')) {
        let values: Vec<String> = full
            .iter()
            .filter_map(|r| param.paths.iter().find_map(|path| search_value(r, path)))
            .collect();
        let Some(middle) = values.get(values.len() / 2) else {
            continue;
        };
        let encoded = |v: &str| v.replace('|', "%7C").replace('+', "%2B").replace(':', "%3A");
        match param.kind {
            ParamType::Token => out.push(format!("{}={}", param.name, encoded(&values[0]))),
            ParamType::Date => {
                let day = &middle[..middle.len().min(10)];
                for prefix in ["ge", "lt", "eq"] {
                    out.push(format!("{}={prefix}{day}", param.name));
                }
            }
            _ => {}
        }
    }
    out
}

/// The places of a search's matches in the unfiltered answer.
fn places(matches: &[Value], full: &[Value]) -> Vec<usize> {
    matches
        .iter()
        .map(|m| {
            full.iter()
                .position(|f| f["id"] == m["id"])
                .expect("a match is in the full answer")
        })
        .collect()
}

#[tokio::test]
async fn every_declared_search_gives_the_same_matches_through_each_supplier() {
    let registry = Registry::load(&Source::Embedded).unwrap();
    let (mut compared, mut matched) = (0, 0);
    for seed in [1, 7] {
        let (sims, numbers, proxy) = common::seeded(seed, 6).await;
        let system = token(Role::System, &PRACTICES);
        for nhs in &numbers {
            let query = format!("Patient?identifier=https://fhir.nhs.uk/Id/nhs-number|{nhs}");
            let patients = common::search_matches(&proxy, &query, &system).await;
            assert_eq!(patients.len(), 3, "one Patient per practice");
            for resource_type in common::RECORD_ITEMS {
                let mut fulls = Vec::new();
                for (patient, ods) in patients.iter().zip(PRACTICES) {
                    let clinician = token(Role::Clinician, &[ods]);
                    let query = format!("{resource_type}?patient={}&_count=200", patient["id"].as_str().unwrap());
                    fulls.push((
                        clinician.clone(),
                        patient,
                        common::search_matches(&proxy, &query, &clinician).await,
                    ));
                }
                for search in searches(&registry, resource_type, &fulls[0].2) {
                    let mut answers = Vec::new();
                    for (clinician, patient, full) in &fulls {
                        let id = patient["id"].as_str().unwrap();
                        let query = format!("{resource_type}?patient={id}&{search}&_count=200");
                        let found = common::search_matches(&proxy, &query, clinician).await;
                        answers.push(places(&found, full));
                    }
                    assert_eq!(
                        answers[0], answers[1],
                        "seed {seed}: {resource_type}?{search}: EMIS and SystmOne"
                    );
                    assert_eq!(
                        answers[0], answers[2],
                        "seed {seed}: {resource_type}?{search}: EMIS and Medicus"
                    );
                    compared += 1;
                    matched += usize::from(!answers[0].is_empty());
                }
            }
        }
        proxy.stop().await;
        sims.shutdown().await;
    }
    // The values come from the records, so most searches find something: none passes by finding nothing.
    assert!(
        compared > 200 && matched * 2 > compared,
        "{matched} of {compared} searches found something"
    );
}
