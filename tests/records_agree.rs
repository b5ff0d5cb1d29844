//! The headline test for the clinical record: for every seeded patient of two seeds and every mapped item type,
//! the same search gives the same UK Core resources through EMIS Web, TPP SystmOne and Medicus, once ids,
//! `meta` and narrative are set aside (see "Agreement across suppliers, precisely" in the design).
//!
//! References are compared by what they point at, not by id: a reference to a resource fetched in the same
//! record (an item's Encounter, a course's Condition, its Medication) is replaced by that resource's own
//! comparable form, so a link to the wrong consultation or problem is a difference too.
use crate::common;

use common::{comparable, token, Proxy};
use im1_fhir::auth::Role;
use serde_json::Value;
use std::collections::HashMap;

const PRACTICES: [&str; 3] = ["Y90001", "Y90002", "Y90003"];
const SUPPLIERS: [&str; 3] = ["emis", "systmone", "medicus"];

/// The record of one patient at one practice: every searched type, plus the Medications its requests name.
async fn record(proxy: &Proxy, t: &str, patient_id: &str) -> HashMap<&'static str, Vec<Value>> {
    let mut out = HashMap::new();
    for resource_type in common::RECORD_ITEMS {
        let query = format!("{resource_type}?patient=Patient/{patient_id}&_count=200");
        let resources = common::search_matches(proxy, &query, t).await;
        for r in &resources {
            common::assert_uk_core(r, resource_type);
        }
        out.insert(*resource_type, resources);
    }
    let mut medications = Vec::new();
    for request in &out["MedicationRequest"] {
        let reference = request["medicationReference"]["reference"].as_str().unwrap();
        let response = proxy.get(reference, t).await;
        assert_eq!(response.status(), 200, "{reference}");
        let medication = response.json::<Value>().await.unwrap();
        common::assert_uk_core(&medication, reference);
        medications.push(medication);
    }
    out.insert("Medication", medications);
    // Every document's content, read through the url its DocumentReference gives.
    let mut binaries = Vec::new();
    for document in &out["DocumentReference"] {
        let url = document["content"][0]["attachment"]["url"].as_str().unwrap();
        let request = proxy.client.get(proxy.url(url)).bearer_auth(t);
        let response = request.header("accept", "application/fhir+json").send().await.unwrap();
        assert_eq!(response.status(), 200, "{url}");
        let binary: Value = response.json().await.unwrap();
        assert!(
            !binary["data"].as_str().unwrap_or_default().is_empty(),
            "{url}: no content"
        );
        common::assert_uk_core(&binary, url);
        binaries.push(binary);
    }
    out.insert("Binary", binaries);
    out
}

/// A record as Medicus's Transactional journal carries it (common::AGREEMENT_EXCEPTIONS): without the items
/// confidential from third parties, nor the Medications and document contents only they named (each fetched
/// for the request or document at its place).
fn as_medicus_carries(record: &HashMap<&'static str, Vec<Value>>) -> HashMap<&'static str, Vec<Value>> {
    let carried = |r: &Value| common::carried("medicus", "transaction", r);
    let mut out: HashMap<&'static str, Vec<Value>> = HashMap::new();
    for (resource_type, list) in record {
        let named_by = match *resource_type {
            "Medication" => Some("MedicationRequest"),
            "Binary" => Some("DocumentReference"),
            _ => None,
        };
        let kept: Vec<Value> = match named_by {
            Some(by) => list
                .iter()
                .zip(&record[by])
                .filter(|(_, naming)| carried(naming))
                .map(|(r, _)| r.clone())
                .collect(),
            None => list.iter().filter(|r| carried(r)).cloned().collect(),
        };
        out.insert(resource_type, kept);
    }
    // A kept item pointing at a left-out one would compare as a bare type on both sides: none may.
    let left_out: Vec<String> = record
        .iter()
        .flat_map(|(t, list)| {
            list.iter()
                .filter(|r| !carried(r))
                .map(move |r| format!("{t}/{}", r["id"].as_str().unwrap()))
        })
        .collect();
    for item in out.values().flatten() {
        let text = item.to_string();
        assert!(
            !left_out.iter().any(|gone| text.contains(&format!("\"{gone}\""))),
            "{item} points at an item Medicus leaves out"
        );
    }
    out
}

/// Every resource of a record in comparable form, per type, sorted so that order does not matter.
fn comparable_record(supplier: &str, record: &HashMap<&'static str, Vec<Value>>) -> Vec<(String, Vec<Value>)> {
    // First the resources without following references, as the targets references are replaced by.
    let empty = HashMap::new();
    let mut targets = HashMap::new();
    for (resource_type, resources) in record {
        for r in resources {
            let key = format!("{resource_type}/{}", r["id"].as_str().unwrap());
            targets.insert(key, comparable(r, &empty));
        }
    }
    let mut out: Vec<(String, Vec<Value>)> = record
        .iter()
        .map(|(resource_type, resources)| {
            let mut list: Vec<Value> = resources
                .iter()
                .map(|r| {
                    // What the supplier's transaction API does not carry (common::AGREEMENT_EXCEPTIONS).
                    common::set_aside(supplier, "transaction", &comparable(r, &targets))
                })
                .collect();
            list.sort_by_key(|v| v.to_string());
            (resource_type.to_string(), list)
        })
        .collect();
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

/// What a record is compared by: its resources in comparable form, each search's order, and each item of
/// `$everything` as its type and its place in that type's search.
type Views = (
    Vec<(String, Vec<Value>)>,
    HashMap<&'static str, Vec<Value>>,
    Vec<(String, Option<usize>)>,
);

fn record_views(supplier: &str, record: &HashMap<&'static str, Vec<Value>>, everything: &[Value]) -> Views {
    let places = everything
        .iter()
        .map(|r| {
            let resource_type = r["resourceType"].as_str().unwrap_or_default().to_string();
            let searched = record.iter().find(|(t, _)| **t == resource_type).map(|(_, list)| list);
            let place = searched.and_then(|list| list.iter().position(|s| s["id"] == r["id"]));
            (resource_type, place)
        })
        .collect();
    (comparable_record(supplier, record), search_order(record), places)
}

/// The order each search gave its matches in, each match as it compares without what it points at.
fn search_order(record: &HashMap<&'static str, Vec<Value>>) -> HashMap<&'static str, Vec<Value>> {
    let unresolved = HashMap::new();
    common::RECORD_ITEMS
        .iter()
        .map(|t| (*t, record[t].iter().map(|r| comparable(r, &unresolved)).collect()))
        .collect()
}

#[tokio::test]
async fn every_seeded_record_is_the_same_through_emis_systmone_and_medicus() {
    for seed in [1, 7] {
        let (sims, numbers, proxy) = common::seeded(seed, 12).await;
        let t = token(Role::System, &PRACTICES);
        let mut items = 0;
        for nhs in &numbers {
            let bundle: Value = proxy
                .get(
                    &format!("Patient?identifier=https://fhir.nhs.uk/Id/nhs-number|{nhs}"),
                    &t,
                )
                .await
                .json()
                .await
                .unwrap();
            let ids: Vec<String> = bundle["entry"]
                .as_array()
                .unwrap()
                .iter()
                .map(|e| e["resource"]["id"].as_str().unwrap().to_string())
                .collect();
            assert_eq!(ids.len(), 3, "one Patient per practice");
            let mut records = Vec::new();
            let mut orders = Vec::new();
            let mut everythings = Vec::new();
            // EMIS's record as Medicus carries it, to compare Medicus's with (the other two compare whole).
            let mut emis_as_medicus = None;
            for ((supplier, id), ods) in SUPPLIERS.iter().zip(&ids).zip(PRACTICES) {
                // A clinician of each practice: direct care, so free text and documents are included.
                let clinician = token(Role::Clinician, &[ods]);
                let record = record(&proxy, &clinician, id).await;
                items += record.values().map(Vec::len).sum::<usize>();
                let query = format!("Patient/{id}/$everything?_count=200");
                let page: Value = proxy.get(&query, &clinician).await.json().await.unwrap();
                assert!(common::link(&page, "next").is_none(), "seed {seed}: one page: {query}");
                let matches = common::matches(&page);
                let views = record_views(supplier, &record, &matches);
                if *supplier == "emis" {
                    let carried = as_medicus_carries(&record);
                    // The practice's own data that supports the record (its people, its organisation).
                    let practice_data = |r: &Value| {
                        matches!(
                            r["resourceType"].as_str().unwrap_or_default(),
                            "Practitioner" | "PractitionerRole" | "Organization"
                        )
                    };
                    let mut kept: Vec<Value> = matches
                        .iter()
                        .filter(|r| {
                            let resource_type = r["resourceType"].as_str().unwrap_or_default();
                            carried
                                .get(resource_type)
                                .is_none_or(|list| list.iter().any(|c| c["id"] == r["id"]))
                        })
                        .cloned()
                        .collect();
                    // The practice's people come as the items kept name them.
                    let mut named = std::collections::BTreeSet::new();
                    for r in kept.iter().filter(|r| !practice_data(r)) {
                        im1_fhir::record_ops::each_reference(&im1_fhir::tree::Tree::from(r), &mut |reference| {
                            named.insert(reference.to_string());
                        });
                    }
                    kept.retain(|r| {
                        let reference =
                            format!("{}/{}", r["resourceType"].as_str().unwrap(), r["id"].as_str().unwrap());
                        !practice_data(r) || named.contains(&reference)
                    });
                    emis_as_medicus = Some(record_views(supplier, &carried, &kept));
                }
                let (comparable, order, places) = views;
                records.push(comparable);
                orders.push(order);
                everythings.push(places);
            }
            // Where Medicus carries less, its answers say so (common::AGREEMENT_EXCEPTIONS).
            let medicus = token(Role::Clinician, &["Y90003"]);
            let query = format!("Condition?patient=Patient/{}", ids[2]);
            let said: Value = proxy.get(&query, &medicus).await.json().await.unwrap();
            let codes: Vec<&Value> = common::entries(&said, "outcome")
                .into_iter()
                .map(|o| &o["issue"][0]["details"]["coding"][0]["code"])
                .collect();
            assert!(codes.iter().any(|c| *c == "IM1-3203"), "seed {seed}: {said}");
            let (medicus_base, medicus_order, medicus_places) = emis_as_medicus.expect("EMIS first");
            let bases = [&records[0], &medicus_base];
            let base_orders = [&orders[0], &medicus_order];
            let base_places = [&everythings[0], &medicus_places];
            // $everything too: the same items in the same order (each type's as its search orders them).
            for ((other, name), base) in everythings[1..].iter().zip(["SystmOne", "Medicus"]).zip(base_places) {
                assert_eq!(base, other, "seed {seed}: $everything at EMIS and {name}");
            }
            // The order too: newest first, then by content. Only items that differ in what they point at alone
            // (two prescriptions of one day for different drugs) may come in another order.
            for ((other, name), base) in orders[1..].iter().zip(["SystmOne", "Medicus"]).zip(base_orders) {
                for (resource_type, order) in base {
                    assert_eq!(
                        order, &other[resource_type],
                        "seed {seed}: {resource_type}: order at EMIS and {name}"
                    );
                }
            }
            // IM1_AGREE_ONLY=systmone (or medicus) compares EMIS with that supplier alone, while one is mapped.
            let only = std::env::var("IM1_AGREE_ONLY").unwrap_or_default();
            for (((other, name), key), base) in records[1..]
                .iter()
                .zip(["SystmOne", "Medicus"])
                .zip(["systmone", "medicus"])
                .zip(bases)
            {
                if !only.is_empty() && only != key {
                    continue;
                }
                for ((resource_type, emis), (_, theirs)) in base.iter().zip(other) {
                    assert_eq!(
                        emis.len(),
                        theirs.len(),
                        "seed {seed}: {resource_type}: EMIS has {} and {name} {}",
                        emis.len(),
                        theirs.len()
                    );
                    for (a, b) in emis.iter().zip(theirs) {
                        assert_eq!(a, b, "seed {seed}: {resource_type} differs between EMIS and {name}");
                    }
                }
            }
        }
        assert!(
            items > 100,
            "seed {seed}: the records should not be empty ({items} items)"
        );
        proxy.stop().await;
        sims.shutdown().await;
    }
}
