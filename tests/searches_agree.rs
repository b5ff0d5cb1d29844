//! Agreement beyond `patient=`: for seeded patients of two seeds, every token and date search parameter each
//! item type declares, with values taken from the patient's own record (a code, a status, a category; a date
//! with `ge`, `lt` and `eq` prefixes), gives the same matches in the same order through EMIS Web, TPP SystmOne
//! and Medicus. The parameters come from the mapping files themselves, so one added to a type is compared too.
//! And the searches search: a token's matches hold its value, and `ge`/`lt` split the record between them (a
//! parameter every supplier ignored would agree too).
//!
//! A match is named by its place in the type's unfiltered answer for the patient: records_agree.rs shows those
//! answers are the same at each supplier, in the same order, so equal places are equal resources (at Medicus,
//! whose Transactional journal leaves out confidential items, places among EMIS's others: see
//! common::AGREEMENT_EXCEPTIONS).
use crate::common;

use common::{token, Proxy};
use im1_fhir::auth::Role;
use im1_fhir::mapping::file::ParamDef;
use im1_fhir::mapping::{ParamType, Registry, Source};
use serde_json::Value;

const PRACTICES: [&str; 3] = ["Y90001", "Y90002", "Y90003"];

/// Every value at a dotted path (lists give each element), as a search names them: a coding as
/// `system|code`, a period by its start, text as it is.
fn search_values(resource: &Value, path: &str) -> Vec<String> {
    let mut values = vec![resource];
    for step in path.split('.') {
        values = values
            .into_iter()
            .filter_map(|v| v.get(step))
            .flat_map(|v| match v.as_array() {
                Some(list) => list.iter().collect(),
                None => vec![v],
            })
            .collect();
    }
    let mut out = Vec::new();
    for value in values {
        if let Some(codings) = value.get("coding").and_then(Value::as_array) {
            for coding in codings {
                if let (Some(system), Some(code)) = (coding["system"].as_str(), coding["code"].as_str()) {
                    out.push(format!("{system}|{code}"));
                }
            }
        } else if let Some(start) = value.get("start").and_then(Value::as_str) {
            out.push(start.to_string());
        } else if let Some(text) = value.as_str() {
            out.push(text.to_string());
        }
    }
    out
}

/// Whether a parameter's element is a Period in this resource.
fn is_period(resource: &Value, param: &ParamDef) -> bool {
    param.paths.iter().any(|path| {
        let mut value = resource;
        for step in path.split('.') {
            match value.get(step) {
                Some(next) => value = next,
                None => return false,
            }
        }
        value.get("start").is_some() || value.get("end").is_some()
    })
}

fn values_of(resource: &Value, param: &ParamDef) -> Vec<String> {
    param
        .paths
        .iter()
        .flat_map(|path| search_values(resource, path))
        .collect()
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

/// One patient's unfiltered answer for a type at a practice, with the clinician who asked and their Patient.
struct Full<'a> {
    clinician: String,
    patient: &'a Value,
    items: Vec<Value>,
}

/// A search's matches at each practice, checked equal; EMIS's, as places in its unfiltered answer.
async fn agreed(proxy: &Proxy, fulls: &[Full<'_>], resource_type: &str, search: &str, seed: u64) -> Vec<usize> {
    let mut answers = Vec::new();
    // EMIS's answer as Medicus's Transactional journal carries it: without items confidential from third
    // parties (common::AGREEMENT_EXCEPTIONS), each named by its place among those kept.
    let mut emis_as_medicus = Vec::new();
    for full in fulls {
        let id = full.patient["id"].as_str().unwrap();
        let query = format!("{resource_type}?patient={id}&{search}&_count=200");
        let found = common::search_matches(proxy, &query, &full.clinician).await;
        if answers.is_empty() {
            let carried = |list: &[Value]| -> Vec<Value> {
                list.iter()
                    .filter(|r| common::carried("medicus", "transaction", r))
                    .cloned()
                    .collect()
            };
            emis_as_medicus = places(&carried(&found), &carried(&full.items));
        }
        answers.push(places(&found, &full.items));
    }
    let at = format!("seed {seed}: {resource_type}?{search}");
    assert_eq!(answers[0], answers[1], "{at}: EMIS and SystmOne");
    assert_eq!(
        emis_as_medicus, answers[2],
        "{at}: EMIS (as Medicus carries it) and Medicus"
    );
    answers.swap_remove(0)
}

#[tokio::test]
async fn every_declared_search_gives_the_same_matches_through_each_supplier() {
    let registry = Registry::load(&Source::Embedded).unwrap();
    let encoded = |v: &str| v.replace('|', "%7C").replace('+', "%2B").replace(':', "%3A");
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
                    let items = common::search_matches(&proxy, &query, &clinician).await;
                    fulls.push(Full {
                        clinician,
                        patient,
                        items,
                    });
                }
                let full = fulls[0].items.clone();
                let mapping = registry.get("emis", resource_type).expect("mapped at EMIS");
                // `_id` names each supplier's own ids, `_lastUpdated` its own `meta` and `identifier` its own
                // record keys: all set aside by the agreement (see the test below for `identifier`).
                let own_to_each = |p: &&ParamDef| p.name.starts_with('_') || p.name == "identifier";
                for param in mapping.params.iter().filter(|p| !own_to_each(p)) {
                    let values: Vec<Vec<String>> = full.iter().map(|r| values_of(r, param)).collect();
                    let present: Vec<&String> = values.iter().filter_map(|v| v.first()).collect();
                    let Some(middle) = present.get(present.len() / 2) else {
                        continue;
                    };
                    let name = &param.name;
                    match param.kind {
                        // The first item's value: every match holds it, and the first item matches.
                        ParamType::Token => {
                            let value = present[0];
                            let found = agreed(
                                &proxy,
                                &fulls,
                                resource_type,
                                &format!("{name}={}", encoded(value)),
                                seed,
                            )
                            .await;
                            assert!(found.contains(&values.iter().position(|v| v.first() == Some(value)).unwrap()));
                            for place in &found {
                                assert!(
                                    values[*place].contains(value),
                                    "{resource_type}?{name}={value}: {}",
                                    full[*place]
                                );
                            }
                            compared += 1;
                            matched += 1;
                        }
                        // The middle item's day: `ge` and `lt` share nothing, and `ge` finds the middle item.
                        ParamType::Date => {
                            let day = &middle[..middle.len().min(10)];
                            let ge = agreed(&proxy, &fulls, resource_type, &format!("{name}=ge{day}"), seed).await;
                            let lt = agreed(&proxy, &fulls, resource_type, &format!("{name}=lt{day}"), seed).await;
                            let eq = agreed(&proxy, &fulls, resource_type, &format!("{name}=eq{day}"), seed).await;
                            // A date is on one side of the day's start or the other; only a period spanning it
                            // (FHIR compares ranges) is on both.
                            for place in ge.iter().filter(|p| lt.contains(p)) {
                                assert!(
                                    is_period(&full[*place], param),
                                    "{resource_type} {name}: ge and lt share {}",
                                    full[*place]
                                );
                            }
                            for (place, value) in values.iter().enumerate() {
                                if !value.is_empty() {
                                    assert!(
                                        ge.contains(&place) || lt.contains(&place),
                                        "{resource_type} {name}={day}: {}",
                                        full[place]
                                    );
                                }
                            }
                            // The middle item is on or after its own day; what is on the day is too.
                            let middle_place = values.iter().position(|v| v.first() == Some(*middle)).unwrap();
                            assert!(ge.contains(&middle_place), "{resource_type} {name}=ge{day}");
                            assert!(eq.iter().all(|p| ge.contains(p)), "{resource_type} {name}=eq{day}");
                            compared += 3;
                            matched += 1 + usize::from(!lt.is_empty()) + usize::from(!eq.is_empty());
                        }
                        _ => {}
                    }
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

/// A native record's own key (`identifier` under this project's record system), from the supplier's
/// `meta.source`: `https://im1-fhir.dev/source/<supplier>/<ODS>/<type>/<key>?mapping=...`.
fn source_key(resource: &Value) -> String {
    let source = resource["meta"]["source"].as_str().unwrap();
    let path = source.split('?').next().unwrap();
    let key = path.rsplit('/').next().unwrap();
    percent_encoding::percent_decode_str(key)
        .decode_utf8()
        .unwrap()
        .into_owned()
}

/// The record identifiers of a resource (exactly one expected), as (system, value).
fn record_identifier(resource: &Value, at: &str) -> (String, String) {
    let identifiers = resource["identifier"]
        .as_array()
        .unwrap_or_else(|| panic!("{at}: no identifier"));
    let own: Vec<&Value> = identifiers
        .iter()
        .filter(|i| im1_fhir::mapping::is_record_identifier(&im1_fhir::tree::Tree::from(*i)))
        .collect();
    assert_eq!(own.len(), 1, "{at}: {identifiers:?}");
    let text = |key: &str| {
        own[0][key]
            .as_str()
            .unwrap_or_else(|| panic!("{at}: {key}"))
            .to_string()
    };
    (text("system"), text("value"))
}

#[tokio::test]
async fn every_item_carries_its_native_record_key_and_is_found_by_it_within_its_practice_only() {
    let (sims, numbers, proxy) = common::seeded(3, 2).await;
    let system = token(Role::System, &PRACTICES);
    let query = format!("Patient?identifier=https://fhir.nhs.uk/Id/nhs-number|{}", numbers[0]);
    let patients = common::search_matches(&proxy, &query, &system).await;
    assert_eq!(patients.len(), 3, "one Patient per practice");
    let encoded = |v: &str| v.replace('|', "%7C").replace(':', "%3A");
    let types = common::RECORD_ITEMS.iter().chain(&["Appointment"]);
    let (mut found, mut found_by_patient) = (0, 0);
    for ((patient, ods), supplier) in patients.iter().zip(PRACTICES).zip(["emis", "systmone", "medicus"]) {
        let clinician = token(Role::Clinician, &[ods]);
        let own_token = common::patient_token(&numbers[0], ods);
        let id = patient["id"].as_str().unwrap();
        for resource_type in types.clone() {
            let items =
                common::search_matches(&proxy, &format!("{resource_type}?patient={id}&_count=200"), &clinician).await;
            let (Some(first), Some(last)) = (items.first(), items.last()) else {
                continue;
            };
            for item in [first, last] {
                let at = format!("{supplier} {resource_type}/{}", item["id"]);
                let (record_system, key) = record_identifier(item, &at);
                assert_eq!(
                    record_system,
                    format!("https://im1-fhir.dev/Id/record/{supplier}/{ods}/{resource_type}"),
                    "{at}"
                );
                assert_eq!(key, source_key(item), "{at}: the key meta.source names");
                // A read carries it too.
                let read: Value = proxy
                    .get(&format!("{resource_type}/{}", item["id"].as_str().unwrap()), &clinician)
                    .await
                    .json()
                    .await
                    .unwrap();
                assert_eq!(read["identifier"], item["identifier"], "{at}: read");
                // Found by system and value, and by value alone.
                for search in [format!("{record_system}|{key}"), key.clone()] {
                    let query = format!("{resource_type}?patient={id}&identifier={}", encoded(&search));
                    let matched = common::search_matches(&proxy, &query, &clinician).await;
                    assert_eq!(
                        matched.iter().map(|m| &m["id"]).collect::<Vec<_>>(),
                        [&item["id"]],
                        "{at}: {search}"
                    );
                    found += 1;
                }
                // The same key under another practice's system, or another type's (a MedicationRequest and
                // its MedicationStatement share their course's key), finds nothing here.
                let sibling = if *resource_type == "MedicationStatement" {
                    "MedicationRequest"
                } else {
                    "MedicationStatement"
                };
                for elsewhere in [
                    record_system.replace(ods, "Y90009"),
                    record_system.replace(resource_type, sibling),
                ] {
                    let query = format!(
                        "{resource_type}?patient={id}&identifier={}",
                        encoded(&format!("{elsewhere}|{key}"))
                    );
                    let matched = common::search_matches(&proxy, &query, &clinician).await;
                    assert!(matched.is_empty(), "{at}: {elsewhere}");
                }
                // The patient, through their own practice's patient-facing API, finds the same record by the same
                // key (what they may see of it: nothing confidential).
                if common::is_confidential(item) {
                    continue;
                }
                let query = format!(
                    "{resource_type}?identifier={}",
                    encoded(&format!("{record_system}|{key}"))
                );
                let theirs = common::search_matches(&proxy, &query, &own_token).await;
                assert_eq!(theirs.len(), 1, "{at}: as the patient");
                assert_eq!(
                    record_identifier(&theirs[0], &at),
                    (record_system.clone(), key.clone()),
                    "{at}: as the patient"
                );
                found_by_patient += 1;
            }
        }
    }
    // Every type is in the seeded records at every supplier: none passes by having nothing to look at.
    let types = common::RECORD_ITEMS.len() + 1;
    assert_eq!(found, 3 * types * 2 * 2, "searches that found their item");
    assert!(found_by_patient >= 3 * types, "{found_by_patient} found by the patient");
    proxy.stop().await;
    sims.shutdown().await;
}

#[tokio::test]
async fn the_clinicians_an_item_names_come_with_it_on_request_alike_at_each_supplier() {
    let (sims, numbers, proxy) = common::seeded(2, 2).await;
    let system = token(Role::System, &PRACTICES);
    let query = format!("Patient?identifier=https://fhir.nhs.uk/Id/nhs-number|{}", numbers[0]);
    let patients = common::search_matches(&proxy, &query, &system).await;
    assert_eq!(patients.len(), 3, "one Patient per practice");
    let includes = [
        ("Observation", "performer"),
        ("AllergyIntolerance", "recorder"),
        ("MedicationRequest", "requester"),
        ("MedicationStatement", "source"),
        ("Encounter", "practitioner"),
        ("DocumentReference", "author"),
        ("Immunization", "performer"),
    ];
    let mut named_at: Vec<Vec<Vec<Value>>> = Vec::new();
    for (patient, ods) in patients.iter().zip(PRACTICES) {
        let clinician = token(Role::Clinician, &[ods]);
        let id = patient["id"].as_str().unwrap();
        let mut named = Vec::new();
        for (resource_type, param) in includes {
            let query = format!("{resource_type}?patient={id}&_count=200&_include={resource_type}:{param}");
            let response = proxy.get(&query, &clinician).await;
            assert_eq!(response.status(), 200, "{ods} {query}");
            let bundle: Value = response.json().await.unwrap();
            let matches = common::entries(&bundle, "match");
            let included = common::entries(&bundle, "include");
            assert!(!included.is_empty(), "{ods} {query}: nothing included");
            // Each one a Practitioner that a match names, each once.
            let mut referenced = std::collections::BTreeSet::new();
            for m in &matches {
                im1_fhir::record_ops::each_reference(&im1_fhir::tree::Tree::from(*m), &mut |r| {
                    referenced.insert(r.to_string());
                });
            }
            let mut people: Vec<Value> = Vec::new();
            let ids: std::collections::BTreeSet<&str> = included.iter().map(|p| p["id"].as_str().unwrap()).collect();
            assert_eq!(
                ids.len(),
                included.len(),
                "{ods} {query}: a Practitioner included twice"
            );
            for person in &included {
                assert_eq!(person["resourceType"], "Practitioner", "{ods} {query}");
                let reference = format!("Practitioner/{}", person["id"].as_str().unwrap());
                assert!(
                    referenced.contains(&reference),
                    "{ods} {query}: {reference} is named by no match"
                );
                people.push(person["name"].clone());
            }
            people.sort_by_key(|name| name.to_string());
            named.push(people);
        }
        // And the Patient's usual GP.
        let query = format!(
            "Patient?identifier={}&_include=Patient:general-practitioner",
            numbers[0]
        );
        let bundle: Value = proxy.get(&query, &clinician).await.json().await.unwrap();
        let gp = common::entries(&bundle, "include");
        assert_eq!(gp.len(), 1, "{ods}: {bundle}");
        assert_eq!(
            patient["generalPractitioner"][0]["reference"],
            format!("Practitioner/{}", gp[0]["id"].as_str().unwrap()).as_str(),
            "{ods}"
        );
        named.push(vec![gp[0]["name"].clone()]);
        named_at.push(named);
    }
    // The same people, by name, through each supplier.
    assert_eq!(named_at[0], named_at[1], "EMIS and SystmOne");
    assert_eq!(named_at[0], named_at[2], "EMIS and Medicus");
    proxy.stop().await;
    sims.shutdown().await;
}

/// What a search brings with it comes in the same order through each supplier, as its matches do (each native
/// reply lists a record's items in its own order): a Patient with every Observation and Encounter pointing at
/// it, and an Encounter page with the Observations made in each.
#[tokio::test]
async fn included_resources_come_in_the_same_order_through_each_supplier() {
    let (sims, numbers, proxy) = common::seeded(3, 3).await;
    let system = token(Role::System, &PRACTICES);
    // An included item as the comparison reads it: its type, date and code.
    let described = |r: &Value| -> String {
        let date = ["effectiveDateTime", "onsetDateTime", "occurrenceDateTime"]
            .iter()
            .find_map(|k| r[*k].as_str())
            .or_else(|| r["period"]["start"].as_str())
            .unwrap_or_default();
        let code = r["code"]["coding"][0]["code"]
            .as_str()
            .or_else(|| r["type"][0]["coding"][0]["code"].as_str())
            .unwrap_or_default();
        format!("{} {date} {code}", r["resourceType"].as_str().unwrap_or_default())
    };
    let mut compared = 0;
    for nhs in &numbers {
        let query = format!("Patient?identifier=https://fhir.nhs.uk/Id/nhs-number|{nhs}");
        let patients = common::search_matches(&proxy, &query, &system).await;
        assert_eq!(patients.len(), 3, "one Patient per practice");
        for search in [
            "Patient?_id={id}&_revinclude=Observation:patient&_revinclude=Encounter:patient",
            "Encounter?patient={id}&_count=200&_revinclude=Observation:encounter",
        ] {
            let mut answers: Vec<Vec<String>> = Vec::new();
            let mut emis_as_medicus = Vec::new();
            for (patient, ods) in patients.iter().zip(PRACTICES) {
                let clinician = token(Role::Clinician, &[ods]);
                let query = search.replace("{id}", patient["id"].as_str().unwrap());
                let response = proxy.get(&query, &clinician).await;
                assert_eq!(response.status(), 200, "{ods} {query}");
                let bundle: Value = response.json().await.unwrap();
                let included = common::entries(&bundle, "include");
                if answers.is_empty() {
                    // Medicus's Transactional journal leaves out items confidential from third parties
                    // (common::AGREEMENT_EXCEPTIONS).
                    emis_as_medicus = included
                        .iter()
                        .filter(|r| common::carried("medicus", "transaction", r))
                        .map(|r| described(r))
                        .collect();
                }
                answers.push(included.iter().map(|r| described(r)).collect());
            }
            assert!(!answers[0].is_empty(), "{search}: nothing included");
            assert_eq!(answers[0], answers[1], "{search}: EMIS and SystmOne");
            assert_eq!(
                emis_as_medicus, answers[2],
                "{search}: EMIS (as Medicus carries it) and Medicus"
            );
            compared += 1;
        }
    }
    assert_eq!(compared, 2 * numbers.len());
    proxy.stop().await;
    sims.shutdown().await;
}
