//! Practice-level data agrees across suppliers: for two seeds, the three demo practices (EMIS Web, TPP SystmOne,
//! Medicus) give the same Practitioners and PractitionerRoles once ids, `meta` and narrative are set aside, each
//! its own practice as the Organization the record describes, and every Practitioner reference in each patient's
//! record (items and the usual GP) resolves, with 200, to the same person at every practice.
//!
//! References are compared by what they point at: a Practitioner by its comparable form, an Organization by
//! being the practice's own.
use crate::common;

use common::{token, Proxy};
use im1_fhir::auth::Role;
use im1_fhir::demo::Simulators;
use im1_sim::record::Practice;
use serde_json::{json, Value};
use std::collections::HashMap;

const PRACTICES: [&str; 3] = ["Y90001", "Y90002", "Y90003"];

/// Reads through the proxy, remembering what was read (references repeat across a record).
struct Reader<'a> {
    proxy: &'a Proxy,
    token: String,
    seen: HashMap<String, Value>,
}

impl Reader<'_> {
    async fn read(&mut self, reference: &str) -> Value {
        if let Some(v) = self.seen.get(reference) {
            return v.clone();
        }
        let response = self.proxy.get(reference, &self.token).await;
        let status = response.status();
        let body: Value = response.json().await.unwrap();
        assert_eq!(status, 200, "{reference}: {body}");
        common::assert_uk_core(&body, reference);
        self.seen.insert(reference.to_string(), body.clone());
        body
    }

    async fn search(&self, query: &str) -> Vec<Value> {
        common::search_matches(self.proxy, query, &self.token).await
    }
}

/// The practice a resource came from, as its `meta.source` names it.
fn practice_of(resource: &Value) -> String {
    let source = resource["meta"]["source"].as_str().unwrap_or_default();
    source
        .strip_prefix("https://im1-fhir.dev/source/")
        .and_then(|rest| rest.split('/').nth(1))
        .unwrap_or_default()
        .to_string()
}

fn ods_of(organization: &Value) -> &str {
    organization["identifier"][0]["value"].as_str().unwrap_or_default()
}

/// Without id, meta and narrative; references replaced by what they point at (Practitioners in comparable form,
/// the practice's own Organization as `"the practice"`).
fn comparable(resource: &Value, ods: &str, seen: &HashMap<String, Value>) -> Value {
    let mut out = resource.clone();
    if let Some(object) = out.as_object_mut() {
        for key in ["id", "meta", "text"] {
            object.remove(key);
        }
    }
    replace_references(&mut out, ods, seen);
    out
}

fn replace_references(value: &mut Value, ods: &str, seen: &HashMap<String, Value>) {
    match value {
        Value::Object(object) => {
            for (key, child) in object.iter_mut() {
                if let (Value::String(text), "reference") = (&*child, key.as_str()) {
                    let target = seen.get(text).unwrap_or_else(|| panic!("{text} was not read"));
                    *child = if text.starts_with("Organization/") {
                        assert_eq!(ods_of(target), ods, "{text} is not the practice's own Organization");
                        json!("the practice")
                    } else {
                        comparable(target, ods, seen)
                    };
                } else {
                    replace_references(child, ods, seen);
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(|i| replace_references(i, ods, seen)),
        _ => {}
    }
}

fn references(value: &Value, prefix: &str, out: &mut Vec<String>) {
    match value {
        Value::Object(object) => {
            for (key, child) in object {
                match child {
                    Value::String(text) if key == "reference" && text.starts_with(prefix) => out.push(text.clone()),
                    other => references(other, prefix, out),
                }
            }
        }
        Value::Array(items) => items.iter().for_each(|i| references(i, prefix, out)),
        _ => {}
    }
}

/// The UK Core Organization the record's practice should come out as, whichever supplier serves it.
fn expected_organization(p: &Practice) -> Value {
    let mut line = p.address.lines();
    line.retain(|l| !l.is_empty());
    let mut address = json!({ "use": "work", "line": line, "city": p.address.town, "postalCode": p.address.postcode });
    if let Some(county) = &p.address.county {
        address["district"] = json!(county);
    }
    json!({
        "resourceType": "Organization",
        "identifier": [{ "system": "https://fhir.nhs.uk/Id/ods-organization-code", "value": p.ods }],
        "name": p.name,
        "telecom": [{ "system": "phone", "value": p.phone, "use": "work" }],
        "address": [address],
    })
}

fn sorted(mut list: Vec<Value>) -> Vec<Value> {
    list.sort_by_key(|v| v.to_string());
    list
}

#[tokio::test]
async fn every_practice_has_the_same_staff_and_every_practitioner_reference_resolves() {
    for seed in [1, 7] {
        let options = common::fixed_options(seed, 12);
        let sims = Simulators::start(options).await.unwrap();
        let (numbers, practices): (Vec<String>, Vec<Practice>) = sims.world.read(|r| {
            (
                r.patients.iter().map(|p| p.nhs_number.clone()).collect(),
                r.practices.clone(),
            )
        });
        let proxy = Proxy::start(sims.practices(), sims.linkage()).await;
        let mut reader = Reader {
            proxy: &proxy,
            token: token(Role::System, &PRACTICES),
            seen: HashMap::new(),
        };

        // Each practice's Organization is the practice the record describes, found by its ODS code and read by id.
        for ods in PRACTICES {
            let found = reader
                .search(&format!(
                    "Organization?identifier=https://fhir.nhs.uk/Id/ods-organization-code|{ods}"
                ))
                .await;
            assert_eq!(found.len(), 1, "seed {seed}: one Organization for {ods}");
            let practice = practices.iter().find(|p| p.ods == ods).unwrap();
            let read = reader
                .read(&format!("Organization/{}", found[0]["id"].as_str().unwrap()))
                .await;
            assert_eq!(read, found[0]);
            assert_eq!(
                comparable(&read, ods, &reader.seen),
                expected_organization(practice),
                "seed {seed}: {ods}"
            );
        }
        assert_eq!(
            reader.search("Organization").await.len(),
            3,
            "seed {seed}: one per practice"
        );

        // The staff, listed with no parameters, each read back by id.
        let mut listed: HashMap<&str, Vec<Value>> = HashMap::new();
        for resource_type in ["Practitioner", "PractitionerRole"] {
            let all = reader.search(&format!("{resource_type}?_count=200")).await;
            for resource in &all {
                let reference = format!("{resource_type}/{}", resource["id"].as_str().unwrap());
                assert_eq!(&reader.read(&reference).await, resource, "seed {seed}: {reference}");
            }
            listed.insert(resource_type, all);
        }
        for resource in &listed["PractitionerRole"] {
            let mut refs = Vec::new();
            references(resource, "", &mut refs);
            for r in refs {
                reader.read(&r).await;
            }
        }
        for resource_type in ["Practitioner", "PractitionerRole"] {
            let per_practice: Vec<Vec<Value>> = PRACTICES
                .iter()
                .map(|ods| {
                    sorted(
                        listed[resource_type]
                            .iter()
                            .filter(|r| practice_of(r) == *ods)
                            .map(|r| comparable(r, ods, &reader.seen))
                            .collect(),
                    )
                })
                .collect();
            assert!(!per_practice[0].is_empty(), "seed {seed}: no {resource_type} at EMIS");
            assert_eq!(
                per_practice[0], per_practice[1],
                "seed {seed}: {resource_type}: EMIS and SystmOne differ"
            );
            assert_eq!(
                per_practice[0], per_practice[2],
                "seed {seed}: {resource_type}: EMIS and Medicus differ"
            );
        }

        // Searches: one person per practice by registration number, name parts, `_id`; their role by practitioner.
        for practitioner in listed["Practitioner"].iter().filter(|p| practice_of(p) == "Y90001") {
            let number = practitioner["identifier"][0]["value"].as_str().unwrap();
            let family = practitioner["name"][0]["family"].as_str().unwrap();
            let given = practitioner["name"][0]["given"][0].as_str().unwrap();
            for query in [
                format!("Practitioner?identifier=https://im1-fhir.dev/Id/professional-registration|{number}"),
                format!("Practitioner?family={family}&given={given}"),
                format!("Practitioner?name={}", family.to_lowercase()),
            ] {
                let found = reader.search(&query).await;
                let numbers: Vec<&str> = found
                    .iter()
                    .map(|p| p["identifier"][0]["value"].as_str().unwrap())
                    .collect();
                assert_eq!(numbers, [number; 3], "seed {seed}: {query}");
            }
        }
        for practitioner in &listed["Practitioner"] {
            let id = practitioner["id"].as_str().unwrap();
            let found = reader.search(&format!("Practitioner?_id={id}")).await;
            assert_eq!(found.len(), 1, "seed {seed}: _id={id}");
            let roles = reader
                .search(&format!("PractitionerRole?practitioner=Practitioner/{id}"))
                .await;
            assert_eq!(roles.len(), 1, "seed {seed}: the role of Practitioner/{id}");
            assert_eq!(roles[0]["practitioner"]["reference"], format!("Practitioner/{id}"));
        }
        for ods in PRACTICES {
            let org = reader
                .search(&format!(
                    "Organization?identifier=https://fhir.nhs.uk/Id/ods-organization-code|{ods}"
                ))
                .await;
            let org_id = org[0]["id"].as_str().unwrap();
            let roles = reader
                .search(&format!("PractitionerRole?organization=Organization/{org_id}"))
                .await;
            assert_eq!(
                roles.len(),
                listed["PractitionerRole"]
                    .iter()
                    .filter(|r| practice_of(r) == ods)
                    .count(),
                "seed {seed}: the roles at {ods}"
            );
        }
        let gps = reader
            .search("PractitionerRole?role=https://im1-fhir.dev/CodeSystem/staff-role|general-practitioner")
            .await;
        assert!(
            !gps.is_empty() && gps.len() % 3 == 0,
            "seed {seed}: GPs at every practice"
        );

        // Every Practitioner reference in each record resolves, to the same people at every practice.
        let mut resolved = 0;
        for nhs in &numbers {
            let patients = reader
                .search(&format!("Patient?identifier=https://fhir.nhs.uk/Id/nhs-number|{nhs}"))
                .await;
            assert_eq!(patients.len(), 3, "seed {seed}: one Patient per practice");
            let mut per_practice = Vec::new();
            for patient in &patients {
                let ods = practice_of(patient);
                let mut people: Vec<(String, Vec<Value>)> = Vec::new();
                // Those named by items Medicus's Transactional journal carries (common::AGREEMENT_EXCEPTIONS).
                let mut people_carried: Vec<(String, Vec<Value>)> = Vec::new();
                let mut gp = Vec::new();
                references(&patient["generalPractitioner"], "Practitioner/", &mut gp);
                assert_eq!(gp.len(), 1, "seed {seed}: {nhs} has one usual GP at {ods}");
                let mut items: Vec<(&str, Vec<Value>)> = vec![("Patient", vec![patient.clone()])];
                for resource_type in common::RECORD_ITEMS {
                    let id = patient["id"].as_str().unwrap();
                    items.push((
                        resource_type,
                        reader
                            .search(&format!("{resource_type}?patient=Patient/{id}&_count=200"))
                            .await,
                    ));
                }
                for (resource_type, resources) in items {
                    let (mut targets, mut carried) = (Vec::new(), Vec::new());
                    for r in &resources {
                        let mut refs = Vec::new();
                        references(r, "Practitioner/", &mut refs);
                        for reference in &refs {
                            let target = reader.read(reference).await;
                            assert_eq!(practice_of(&target), ods, "seed {seed}: {reference} is not at {ods}");
                            let target = comparable(&target, &ods, &reader.seen);
                            if common::carried("medicus", "transaction", r) {
                                carried.push(target.clone());
                            }
                            targets.push(target);
                            resolved += 1;
                        }
                    }
                    people.push((resource_type.to_string(), sorted(targets)));
                    people_carried.push((resource_type.to_string(), sorted(carried)));
                }
                per_practice.push((people, people_carried));
            }
            assert_eq!(
                per_practice[0].0, per_practice[1].0,
                "seed {seed}: {nhs}: EMIS and SystmOne name different people"
            );
            assert_eq!(
                per_practice[0].1, per_practice[2].0,
                "seed {seed}: {nhs}: EMIS and Medicus name different people"
            );
        }
        assert!(
            resolved > 100,
            "seed {seed}: the records should name practitioners ({resolved})"
        );
        proxy.stop().await;
        sims.shutdown().await;
    }
}
