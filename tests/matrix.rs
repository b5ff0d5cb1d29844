//! Who may see what, as a matrix: every principal kind x every served resource type x read, search and create,
//! asserting allowed or refused, and that nothing returned crosses patients, practices or scopes. Run twice,
//! interleaved, so that any state kept between requests (remembered record keys, tokens, sessions) is exercised.
use crate::common;

use common::matches;

use common::{token, Proxy};
use im1_fhir::auth::token::{mint_demo, TokenRequest};
use im1_fhir::auth::Role;
use im1_fhir::demo::Simulators;
use serde_json::Value;
use std::collections::BTreeMap;

/// Every item type of a patient's record, appointments included.
fn items() -> impl Iterator<Item = &'static str> {
    common::RECORD_ITEMS.iter().copied().chain(["Appointment"])
}

const PRACTICE_LEVEL: &[&str] = &["Practitioner", "PractitionerRole", "Organization", "Schedule", "Slot"];

#[derive(Debug, Clone, Copy, PartialEq)]
enum Who {
    Patient,
    Clinician,
    System,
    Auditor,
    OtherPracticeClinician,
}

#[tokio::test]
async fn every_principal_kind_reaches_exactly_what_it_may() {
    let options = common::fixed_options(1, 6);
    let sims = Simulators::start(options).await.unwrap();
    let proxy = Proxy::start(sims.practices(), sims.linkage()).await;
    let tokens: BTreeMap<&str, (Who, String)> = [
        (
            "patient",
            (
                Who::Patient,
                mint_demo(&TokenRequest {
                    practices: vec!["Y90001".into()],
                    role: Role::Patient,
                    nhs_number: Some("9000000009".into()),
                    scope: None,
                    ttl_seconds: 600,
                })
                .unwrap(),
            ),
        ),
        ("clinician", (Who::Clinician, token(Role::Clinician, &["Y90001"]))),
        ("system", (Who::System, token(Role::System, &["Y90001"]))),
        ("auditor", (Who::Auditor, token(Role::Auditor, &["Y90001"]))),
        (
            "other",
            (Who::OtherPracticeClinician, token(Role::Clinician, &["Y90002"])),
        ),
    ]
    .into_iter()
    .collect();

    // The clinician's view of patient 9000000009's record at Y90001: the ids every principal will try.
    let clinician = &tokens["clinician"].1;
    let bundle: Value = proxy
        .get("Patient?identifier=9000000009", clinician)
        .await
        .json()
        .await
        .unwrap();
    let patient_id = matches(&bundle)[0]["id"].as_str().unwrap().to_string();
    let mut sample: BTreeMap<&str, String> = BTreeMap::new();
    // The types whose sample item is confidential: a patient never reads those.
    let mut confidential = std::collections::BTreeSet::new();
    sample.insert("Patient", patient_id.clone());
    for t in items() {
        let b: Value = proxy
            .get(&format!("{t}?patient={patient_id}"), clinician)
            .await
            .json()
            .await
            .unwrap();
        if let Some(first) = matches(&b).first() {
            sample.insert(t, first["id"].as_str().unwrap().to_string());
            if common::restricted(first) {
                confidential.insert(t);
            }
        }
    }
    for t in PRACTICE_LEVEL {
        let b: Value = proxy.get(t, clinician).await.json().await.unwrap();
        if let Some(first) = matches(&b).first() {
            sample.insert(t, first["id"].as_str().unwrap().to_string());
        }
    }
    assert!(sample.len() >= 12, "the record has something of most types: {sample:?}");
    // RelatedPerson (proxy access) is known to the patient-facing APIs only: 9000000009 acts for 9000000017.
    let proxy_link = {
        let bundle: Value = proxy
            .get("Patient?identifier=9000000017", clinician)
            .await
            .json()
            .await
            .unwrap();
        let child_id = matches(&bundle)[0]["id"].as_str().unwrap().to_string();
        let query = format!("RelatedPerson?patient={child_id}");
        let bundle: Value = proxy.get(&query, &tokens["patient"].1).await.json().await.unwrap();
        let id = matches(&bundle)[0]["id"].as_str().unwrap().to_string();
        (child_id, id)
    };

    for round in 0..2 {
        for (name, (who, t)) in &tokens {
            for (resource_type, id) in &sample {
                let item = items().any(|t| t == *resource_type);
                // Search.
                let query = if item {
                    format!("{resource_type}?patient={patient_id}")
                } else if *resource_type == "Patient" {
                    "Patient?identifier=9000000009".to_string()
                } else {
                    resource_type.to_string()
                };
                let response = proxy.get(&query, t).await;
                let status = response.status().as_u16();
                let body: Value = response.json().await.unwrap();
                let expected_search = match who {
                    Who::Auditor => 403,
                    Who::Patient if PRACTICE_LEVEL.contains(resource_type) => 403,
                    _ => 200,
                };
                assert_eq!(
                    status, expected_search,
                    "round {round}: {name} searches {query}: {body}"
                );
                for r in matches(&body) {
                    assert_eq!(r["resourceType"], *resource_type);
                    // Every resource comes from the practice the token names, never another.
                    let own_practice = if *who == Who::OtherPracticeClinician {
                        "/Y90002/"
                    } else {
                        "/Y90001/"
                    };
                    assert!(
                        r["meta"]["source"].as_str().unwrap_or_default().contains(own_practice),
                        "{name} got {resource_type} from another practice"
                    );
                    match who {
                        Who::OtherPracticeClinician => {
                            assert!(!item, "{name} got an item of a record at another practice")
                        }
                        Who::Patient => {
                            let subject = if *resource_type == "Patient" {
                                format!("Patient/{}", r["id"].as_str().unwrap())
                            } else {
                                r.get("subject")
                                    .or_else(|| r.get("patient"))
                                    .map(|s| s["reference"].as_str().unwrap_or_default().to_string())
                                    .or_else(|| {
                                        r["participant"].as_array().and_then(|ps| {
                                            ps.iter().find_map(|p| {
                                                p["actor"]["reference"]
                                                    .as_str()
                                                    .filter(|a| a.starts_with("Patient/"))
                                                    .map(String::from)
                                            })
                                        })
                                    })
                                    .unwrap_or_default()
                            };
                            assert_eq!(
                                subject,
                                format!("Patient/{patient_id}"),
                                "{name}: another patient's {resource_type}"
                            );
                            assert!(
                                !r["meta"]["security"].to_string().contains("\"R\""),
                                "confidential to a patient"
                            );
                        }
                        Who::System => assert!(r.get("note").is_none(), "free text to a system client"),
                        _ => {}
                    }
                }
                // Read.
                let response = proxy.get(&format!("{resource_type}/{id}"), t).await;
                let status = response.status().as_u16();
                let expected_read = match who {
                    Who::Auditor => vec![403],
                    Who::OtherPracticeClinician => vec![404],
                    Who::Patient if PRACTICE_LEVEL.contains(resource_type) => vec![403],
                    // A confidential item, which a patient never sees, is not found.
                    Who::Patient if confidential.contains(resource_type) => vec![404],
                    Who::System if *resource_type == "DocumentReference" => vec![403],
                    _ => vec![200],
                };
                assert!(
                    expected_read.contains(&status),
                    "round {round}: {name} reads {resource_type}: {status}, expected {expected_read:?}"
                );
                // Create: no writes are served yet; refused whoever asks (400 for a body that is not a valid
                // resource, 403 or 405 otherwise), never written.
                let response = proxy
                    .client
                    .post(proxy.url(resource_type))
                    .bearer_auth(t)
                    .header("content-type", "application/fhir+json")
                    .body(format!("{{\"resourceType\":\"{resource_type}\"}}"))
                    .send()
                    .await
                    .unwrap();
                assert!(
                    matches!(response.status().as_u16(), 400 | 403 | 405),
                    "{name} creates {resource_type}: {}",
                    response.status()
                );
            }
            // The audit trail: the auditor only.
            let status = proxy.get("AuditEvent?_count=5", t).await.status().as_u16();
            assert_eq!(
                status,
                if *who == Who::Auditor { 200 } else { 403 },
                "{name} reads the audit trail"
            );
            check_related_person(&proxy, name, *who, t, &proxy_link).await;
        }
    }
    proxy.stop().await;
    sims.shutdown().await;
}

/// RelatedPerson for each kind of principal: the patient acting for the child sees their own RelatedPerson; a
/// clinician or system is told the type is not available through the transaction APIs (403); a clinician of
/// another practice finds nothing; the auditor is refused.
async fn check_related_person(proxy: &Proxy, name: &str, who: Who, t: &str, (child_id, id): &(String, String)) {
    let response = proxy.get(&format!("RelatedPerson?patient={child_id}"), t).await;
    let status = response.status().as_u16();
    let body: Value = response.json().await.unwrap();
    let expected = match who {
        Who::Patient | Who::OtherPracticeClinician => 200,
        Who::Clinician | Who::System | Who::Auditor => 403,
    };
    assert_eq!(status, expected, "{name} searches RelatedPerson: {body}");
    let found = matches(&body);
    match who {
        Who::Patient => {
            assert_eq!(found.len(), 1, "{name}: {body}");
            assert_eq!(found[0]["patient"]["reference"], format!("Patient/{child_id}"));
        }
        _ => assert!(found.is_empty(), "{name} found a RelatedPerson"),
    }
    let status = proxy.get(&format!("RelatedPerson/{id}"), t).await.status().as_u16();
    let expected = match who {
        Who::Patient => 200,
        Who::OtherPracticeClinician => 404,
        Who::Clinician | Who::System | Who::Auditor => 403,
    };
    assert_eq!(status, expected, "{name} reads RelatedPerson");
}
