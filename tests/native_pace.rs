//! The proxy keeps the pace each supplier allows: over the simulators with their native rate limits on (as
//! `demo` runs them), a burst of requests well above those rates is answered in full, each native call
//! waiting for its turn rather than being refused (TPP's load shedding would be a 503 with a five-second
//! Retry-After; EMIS and Medicus answer 429). Nor does one request ask the same question twice.

use crate::common;

use common::{patient_token, token, Proxy};
use im1_fhir::auth::Role;
use im1_fhir::cache::CacheConfig;
use std::time::{Duration, Instant};

/// Requests a burst makes: about twice what the fastest simulator allows in a second.
const BURST: usize = 40;

#[tokio::test]
async fn bursts_above_the_native_rate_wait_for_their_turn_instead_of_failing() {
    let mut options = common::fixed_options(1, 3);
    options.throttle = true;
    let sims = im1_fhir::demo::Simulators::start(options).await.unwrap();
    // No response cache: every request makes its native calls.
    let no_cache = CacheConfig {
        ttl: Duration::ZERO,
        ..CacheConfig::default()
    };
    let proxy = Proxy::start_cached(sims.practices(), sims.linkage(), no_cache).await;
    let search = "Patient?identifier=https://fhir.nhs.uk/Id/nhs-number|9000000009";
    for (ods, role) in [("Y90002", Role::Clinician), ("Y90003", Role::Clinician)] {
        let t = token(role, &[ods]);
        let started = Instant::now();
        let statuses = burst(&proxy, search, &t).await;
        assert!(statuses.iter().all(|s| *s == 200), "{ods}: {statuses:?}");
        // Paced, not free: the simulators allow 20 calls a second (Medicus shared by both surfaces).
        assert!(
            started.elapsed() >= Duration::from_millis(500),
            "{ods}: {:?}",
            started.elapsed()
        );
    }
    // Patient-facing: EMIS allows 10 PFS calls a second per application.
    let t = patient_token("9000000009", "Y90001");
    let statuses = burst(&proxy, "Condition", &t).await;
    assert!(statuses.iter().all(|s| *s == 200), "Y90001 patient: {statuses:?}");
    proxy.stop().await;
    sims.shutdown().await;
}

/// The statuses of `BURST` requests made eight at a time.
async fn burst(proxy: &Proxy, path: &str, token: &str) -> Vec<u16> {
    let mut statuses = Vec::with_capacity(BURST);
    for _ in 0..BURST / 8 {
        let mut requests = tokio::task::JoinSet::new();
        for _ in 0..8 {
            let request = proxy.client.get(proxy.url(path)).bearer_auth(token);
            requests.spawn(async move { request.send().await.map_or(0, |r| r.status().as_u16()) });
        }
        statuses.extend(requests.join_all().await);
    }
    statuses
}

/// One request asks its supplier each question once: Medicus's `$everything` needs the staff list for every
/// clinician its resources reference, and reads the prescriptions journal for Medication, MedicationRequest and
/// MedicationStatement alike; each is asked once, its reply shared within the request (and only there).
#[tokio::test]
async fn a_request_asks_each_native_question_once() {
    let sims = im1_fhir::demo::Simulators::start(common::fixed_options(1, 3))
        .await
        .unwrap();
    let proxy = Proxy::start(sims.practices(), sims.linkage()).await;
    let t = token(Role::Clinician, &["Y90003"]);
    let found = common::search_matches(
        &proxy,
        "Patient?identifier=https://fhir.nhs.uk/Id/nhs-number|9000000009",
        &t,
    )
    .await;
    let patient = found[0]["id"].as_str().unwrap().to_string();
    let everything = format!("Patient/{patient}/$everything?_count=200");
    let mut answers = Vec::new();
    for id in ["everything-1", "everything-2"] {
        let request = proxy.client.get(proxy.url(&everything)).bearer_auth(&t);
        // Fresh each time: the answer comes from the supplier, not the response cache.
        let response = request.header("x-request-id", id).header("cache-control", "no-cache");
        let bundle: serde_json::Value = response.send().await.unwrap().json().await.unwrap();
        answers.push(bundle);
    }
    let matched = common::matches(&answers[0]);
    let types: Vec<&str> = matched.iter().filter_map(|r| r["resourceType"].as_str()).collect();
    let count = |t: &str| types.iter().filter(|x| **x == t).count();
    assert!(count("Practitioner") >= 2, "{types:?}");
    for prescribed in ["Medication", "MedicationRequest", "MedicationStatement"] {
        assert!(count(prescribed) >= 1, "{prescribed}: {types:?}");
    }
    for id in ["everything-1", "everything-2"] {
        let event = common::audit_event_of(&proxy, id);
        let staff_lists = event["entity"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|e| e["name"] == "native call")
            .filter(|e| e["description"].as_str().is_some_and(|d| d.ends_with("/practitioners")))
            .count();
        // Once per request: the second request asks again (nothing is shared across requests).
        assert_eq!(staff_lists, 1, "{id}");
    }
    proxy.stop().await;
    sims.shutdown().await;
}
