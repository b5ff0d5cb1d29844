//! What a principal may see within a record it reaches: granular SMART scopes filter every returned resource,
//! and the practice's data-minimisation policy withholds free text and documents from roles it does not name.
use crate::common;

use common::{entries, token, Proxy};
use im1_fhir::auth::Role;
use im1_fhir::demo::Simulators;
use serde_json::Value;

async fn start() -> (Simulators, Proxy, String) {
    let options = common::fixed_options(1, 6);
    let sims = Simulators::start(options).await.unwrap();
    let proxy = Proxy::start(sims.practices(), sims.linkage()).await;
    let t = token(Role::Clinician, &["Y90001"]);
    let bundle: Value = proxy
        .get("Patient?identifier=9000000009", &t)
        .await
        .json()
        .await
        .unwrap();
    let id = bundle["entry"][0]["resource"]["id"].as_str().unwrap().to_string();
    (sims, proxy, id)
}

async fn get(proxy: &Proxy, path: &str, t: &str) -> (u16, Value) {
    let response = proxy.get(path, t).await;
    let status = response.status().as_u16();
    (status, response.json().await.unwrap())
}

fn codes(outcome: &[&Value]) -> Vec<String> {
    outcome
        .iter()
        .flat_map(|o| o["issue"].as_array().cloned().unwrap_or_default())
        .filter_map(|i| i["details"]["coding"][0]["code"].as_str().map(String::from))
        .collect()
}

#[tokio::test]
async fn granular_scopes_filter_every_returned_resource() {
    let (sims, proxy, patient) = start().await;
    let full = token(Role::Clinician, &["Y90001"]);
    let labs_only = common::scoped(
        Role::Clinician,
        "Y90001",
        "user/Patient.rs user/Observation.rs?category=laboratory",
    );
    let (_, all) = get(&proxy, &format!("Observation?patient={patient}"), &full).await;
    let all = entries(&all, "match");
    let labs: Vec<&&Value> = all
        .iter()
        .filter(|o| o["category"][0]["coding"][0]["code"] == "laboratory")
        .collect();
    assert!(
        !labs.is_empty() && labs.len() < all.len(),
        "the record mixes categories"
    );
    let (status, bundle) = get(&proxy, &format!("Observation?patient={patient}"), &labs_only).await;
    assert_eq!(status, 200);
    let seen = entries(&bundle, "match");
    assert_eq!(seen.len(), labs.len());
    assert!(seen
        .iter()
        .all(|o| o["category"][0]["coding"][0]["code"] == "laboratory"));
    // A vital sign read by id is not found for this token; a laboratory result is.
    let vital = all
        .iter()
        .find(|o| o["category"][0]["coding"][0]["code"] == "vital-signs")
        .unwrap();
    let (status, _) = get(
        &proxy,
        &format!("Observation/{}", vital["id"].as_str().unwrap()),
        &labs_only,
    )
    .await;
    assert_eq!(status, 404);
    let (status, _) = get(
        &proxy,
        &format!("Observation/{}", labs[0]["id"].as_str().unwrap()),
        &labs_only,
    )
    .await;
    assert_eq!(status, 200);
    // Types outside the scopes are refused outright.
    let (status, _) = get(&proxy, &format!("Condition?patient={patient}"), &labs_only).await;
    assert_eq!(status, 403);
    proxy.stop().await;
    sims.shutdown().await;
}

#[tokio::test]
async fn free_text_and_documents_are_withheld_from_roles_the_policy_does_not_name() {
    let (sims, proxy, patient) = start().await;
    let clinician = token(Role::Clinician, &["Y90001"]);
    let system = token(Role::System, &["Y90001"]);

    let (_, direct) = get(&proxy, &format!("AllergyIntolerance?patient={patient}"), &clinician).await;
    assert!(
        entries(&direct, "match").iter().any(|a| a.get("note").is_some()),
        "the record has notes"
    );
    let (status, minimised) = get(&proxy, &format!("AllergyIntolerance?patient={patient}"), &system).await;
    assert_eq!(status, 200);
    let allergies = entries(&minimised, "match");
    assert_eq!(allergies.len(), entries(&direct, "match").len());
    for a in &allergies {
        assert!(a.get("note").is_none());
        im1_fhir_model::check_strict(a).unwrap();
    }
    assert!(allergies
        .iter()
        .any(|a| a["meta"]["security"].to_string().contains("REDACTED")));
    assert!(codes(&entries(&minimised, "outcome")).contains(&"IM1-2202".to_string()));
    // Said once a Bundle, however many types it withheld free text from.
    let (status, everything) = get(&proxy, &format!("Patient/{patient}/$everything"), &system).await;
    assert_eq!(status, 200);
    let said = codes(&entries(&everything, "outcome"));
    assert_eq!(said.iter().filter(|c| *c == "IM1-2202").count(), 1, "{said:?}");
    // What a patient wrote when booking is free text too.
    let (_, booked) = get(&proxy, &format!("Appointment?patient={patient}"), &clinician).await;
    assert!(
        entries(&booked, "match").iter().any(|a| a.get("description").is_some()),
        "the appointments say why: {booked}"
    );
    let (_, booked) = get(&proxy, &format!("Appointment?patient={patient}"), &system).await;
    for a in entries(&booked, "match") {
        assert!(a.get("description").is_none() && a.get("comment").is_none(), "{a}");
    }

    let (_, documents) = get(&proxy, &format!("DocumentReference?patient={patient}"), &clinician).await;
    let documents = entries(&documents, "match");
    assert!(!documents.is_empty());
    let (status, withheld) = get(&proxy, &format!("DocumentReference?patient={patient}"), &system).await;
    assert_eq!(status, 200);
    assert_eq!(withheld["total"], 0);
    assert!(codes(&entries(&withheld, "outcome")).contains(&"IM1-2201".to_string()));
    let (status, refused) = get(
        &proxy,
        &format!("DocumentReference/{}", documents[0]["id"].as_str().unwrap()),
        &system,
    )
    .await;
    assert_eq!(status, 403);
    assert_eq!(refused["issue"][0]["details"]["coding"][0]["code"], "IM1-2201");
    proxy.stop().await;
    sims.shutdown().await;
}

#[tokio::test]
async fn each_client_is_held_to_its_rate_with_429_and_retry_after() {
    let options = common::fixed_options(1, 2);
    let sims = Simulators::start(options).await.unwrap();
    let server = im1_fhir::config::ServerConfig {
        client_rate: Some(im1_fhir::config::ClientRate {
            per_second: 1,
            burst: 3,
        }),
        ..Default::default()
    };
    let native = im1_fhir::config::NativeConfig {
        timeout_ms: 3_000,
        retries: 1,
        max_in_flight: 4,
        breaker: Default::default(),
    };
    let proxy = Proxy::start_with(sims.practices(), sims.linkage(), native, server).await;
    let t = token(Role::Clinician, &["Y90001"]);
    let mut statuses = Vec::new();
    let mut retry_after = None;
    for _ in 0..5 {
        let response = proxy.get("Patient?identifier=9000000009", &t).await;
        if response.status() == 429 {
            retry_after = response
                .headers()
                .get("retry-after")
                .map(|v| v.to_str().unwrap().to_string());
            let body: Value = response.json().await.unwrap();
            assert_eq!(body["issue"][0]["details"]["coding"][0]["code"], "IM1-2301");
            statuses.push(429);
        } else {
            statuses.push(response.status().as_u16());
        }
    }
    assert_eq!(&statuses[..3], &[200, 200, 200], "the burst passes");
    assert!(statuses[3..].contains(&429), "{statuses:?}");
    assert!(retry_after.unwrap().parse::<u64>().unwrap() >= 1);
    // Separate clients have separate budgets: src/ratelimit.rs's unit test (demo tokens share one client id).
    proxy.stop().await;
    sims.shutdown().await;
}

/// SMART scopes count only in their role's context: a clinician's `patient/` or `system/` scopes, a system
/// client's `user/` scopes and a patient's `user/` scopes grant nothing (403 IM1-2101), where the same
/// permission in the role's own context is served.
#[tokio::test]
async fn scopes_of_another_context_grant_nothing() {
    let (sims, proxy, patient) = start().await;
    let conditions = format!("Condition?patient={patient}");
    for (role, scope, served) in [
        (Role::Clinician, "patient/*.rs", false),
        (Role::Clinician, "system/*.rs", false),
        (Role::Clinician, "user/*.rs", true),
        (Role::System, "user/*.rs", false),
        (Role::System, "system/*.rs", true),
    ] {
        let t = common::scoped(role, "Y90001", scope);
        let (status, body) = get(&proxy, &conditions, &t).await;
        if served {
            assert_eq!(status, 200, "{role:?} {scope}: {body}");
            assert!(!entries(&body, "match").is_empty(), "{role:?} {scope}");
        } else {
            assert_eq!(status, 403, "{role:?} {scope}: {body}");
            assert_eq!(
                body["issue"][0]["details"]["coding"][0]["code"], "IM1-2101",
                "{role:?} {scope}"
            );
        }
    }
    let patient_number = "9000000009";
    let user_scoped = {
        let mut claims = im1_fhir::auth::token::TokenRequest {
            practices: vec!["Y90001".into()],
            role: Role::Patient,
            nhs_number: Some(patient_number.into()),
            scope: Some("user/*.rs".into()),
            ttl_seconds: 600,
        };
        let refused = im1_fhir::auth::token::mint_demo(&claims).unwrap();
        claims.scope = Some("patient/*.rs".into());
        (refused, im1_fhir::auth::token::mint_demo(&claims).unwrap())
    };
    let (status, body) = get(&proxy, "Condition", &user_scoped.0).await;
    assert_eq!(
        (status, body["issue"][0]["details"]["coding"][0]["code"].as_str()),
        (403, Some("IM1-2101"))
    );
    assert_eq!(get(&proxy, "Condition", &user_scoped.1).await.0, 200);
    proxy.stop().await;
    sims.shutdown().await;
}

#[tokio::test]
async fn a_result_whose_value_was_free_text_says_it_was_masked() {
    let (sims, numbers, proxy) = common::seeded(1, 12).await;
    let clinician = token(Role::Clinician, &["Y90001"]);
    let system = token(Role::System, &["Y90001"]);
    let (mut masked, mut kept) = (0, 0);
    for nhs in &numbers {
        let (_, found) = get(&proxy, &format!("Patient?identifier={nhs}"), &clinician).await;
        let patient = entries(&found, "match")[0]["id"].as_str().unwrap().to_string();
        let search = format!("Observation?patient={patient}&_count=200");
        let (_, full) = get(&proxy, &search, &clinician).await;
        let (_, minimised) = get(&proxy, &search, &system).await;
        let minimised = entries(&minimised, "match");
        for result in entries(&full, "match") {
            let seen = minimised.iter().find(|o| o["id"] == result["id"]).unwrap();
            if result.get("valueString").is_some() {
                // Its value was its free text: none is left for them, and it says why (R4's data-absent-reason).
                assert!(seen.get("valueString").is_none(), "{seen}");
                assert_eq!(seen["dataAbsentReason"]["coding"][0]["code"], "masked", "{seen}");
                im1_fhir_model::check_strict(seen).unwrap();
                masked += 1;
            } else {
                // A value of its own is kept, with no reason for an absence.
                assert_eq!(seen.get("dataAbsentReason"), result.get("dataAbsentReason"), "{seen}");
                kept += 1;
            }
        }
    }
    assert!(
        masked > 0 && kept > 0,
        "{masked} masked, {kept} kept: the seeded records hold both kinds"
    );
    proxy.stop().await;
    sims.shutdown().await;
}
