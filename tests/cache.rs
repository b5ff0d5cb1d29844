//! The response cache: a repeated read or search makes no native call and says so on its AuditEvent, concurrent
//! identical requests make one, `Cache-Control: no-cache` goes to the source and `max-age` bounds the age of a kept
//! answer, entries expire; and a cached answer
//! never carries one principal's view to another (scopes, free text, confidential items, practices and patients
//! are applied after the cache, on every request).
use crate::common;

use common::matches;

use common::{get_json, token, Proxy};
use im1_fhir::auth::Role;
use im1_fhir::cache::CacheConfig;
use im1_fhir::demo::Simulators;
use serde_json::Value;
use std::time::Duration;

const SEARCH: &str = "Patient?identifier=https://fhir.nhs.uk/Id/nhs-number|9000000009";

async fn get_as(proxy: &Proxy, path: &str, t: &str, request_id: &str, headers: &[(&str, &str)]) -> (u16, Value) {
    let (status, body, _) = get_aged(proxy, path, t, request_id, headers).await;
    (status, body)
}

/// As [`get_as`], with the response's `Age` in seconds, when it has one.
async fn get_aged(
    proxy: &Proxy,
    path: &str,
    t: &str,
    request_id: &str,
    headers: &[(&str, &str)],
) -> (u16, Value, Option<u64>) {
    let mut request = proxy
        .client
        .get(proxy.url(path))
        .bearer_auth(t)
        .header("x-request-id", request_id);
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    let age = response
        .headers()
        .get("age")
        .map(|v| v.to_str().unwrap().parse().unwrap());
    (status, response.json().await.unwrap(), age)
}

/// `n` identical GETs at once (request ids `{prefix}-0`...), each answered 200: how many loaded their answer
/// from the GP system rather than the cache.
async fn loads_of_burst(proxy: &Proxy, path: &str, t: &str, prefix: &str, n: usize, headers: &[(&str, &str)]) -> usize {
    let mut burst = tokio::task::JoinSet::new();
    for i in 0..n {
        let mut request = proxy.client.get(proxy.url(path)).bearer_auth(t);
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let request = request.header("x-request-id", format!("{prefix}-{i}"));
        burst.spawn(async move { request.send().await.unwrap().status().as_u16() });
    }
    let statuses = burst.join_all().await;
    assert!(statuses.iter().all(|s| *s == 200), "{statuses:?}");
    (0..n)
        .filter(|i| common::audited(proxy, &format!("{prefix}-{i}")).0 == "miss")
        .count()
}

fn scoped(role: Role, scope: &str) -> String {
    common::scoped(role, "Y90001", scope)
}

#[tokio::test]
async fn repeats_are_served_from_the_cache_and_audited_as_hits() {
    let sims = Simulators::start(common::fixed_options(1, 6)).await.unwrap();
    let proxy = Proxy::start(sims.practices(), sims.linkage()).await;
    let clinician = token(Role::Clinician, &["Y90001"]);

    let (status, first, age) = get_aged(&proxy, SEARCH, &clinician, "c-1", &[]).await;
    assert_eq!(status, 200);
    assert_eq!(age, None, "an answer loaded for the request has no Age");
    let (cache, calls) = common::audited(&proxy, "c-1");
    assert_eq!(cache, "miss");
    assert!(calls >= 1, "the first search calls the native system");
    let (_, second, age) = get_aged(&proxy, SEARCH, &clinician, "c-2", &[]).await;
    assert!(age.is_some_and(|a| a < 30), "a kept answer says how old it is: {age:?}");
    assert_eq!(matches(&first), matches(&second), "the same answer");
    assert_eq!(
        common::audited(&proxy, "c-2"),
        ("hit".to_string(), 0),
        "no native call the second time"
    );

    // A read, then the same read by another clinician of the practice: one native answer serves both.
    let id = matches(&first)[0]["id"].as_str().unwrap().to_string();
    let (status, _) = get_as(&proxy, &format!("Patient/{id}"), &clinician, "c-3", &[]).await;
    assert_eq!(status, 200);
    let colleague = scoped(Role::Clinician, "user/*.rs");
    let (status, _) = get_as(&proxy, &format!("Patient/{id}"), &colleague, "c-4", &[]).await;
    assert_eq!(status, 200);
    assert_eq!(common::audited(&proxy, "c-4"), ("hit".to_string(), 0));

    // Cache-Control: no-cache goes to the native system (and refreshes the entry).
    let (status, _) = get_as(&proxy, SEARCH, &clinician, "c-5", &[("cache-control", "no-cache")]).await;
    assert_eq!(status, 200);
    let (cache, calls) = common::audited(&proxy, "c-5");
    assert_eq!(cache, "miss");
    assert!(calls >= 1);

    // Cache-Control: max-age=N takes an answer kept no longer than N seconds, and refreshes an older one.
    tokio::time::sleep(Duration::from_millis(1_200)).await;
    for (id, max_age, expected) in [
        ("c-6", "max-age=60", "hit"),
        ("c-7", "max-age=1", "miss"),
        ("c-8", "max-age=1", "hit"),
    ] {
        let (status, _, age) = get_aged(&proxy, SEARCH, &clinician, id, &[("cache-control", max_age)]).await;
        assert_eq!(status, 200);
        let (cache, calls) = common::audited(&proxy, id);
        assert_eq!((cache.as_str(), calls > 0), (expected, expected == "miss"), "{id}");
        // Kept since c-5's refresh, 1.2 s before c-6; c-8 takes what c-7 loaded a moment before.
        let aged_as_expected = match id {
            "c-6" => age.is_some_and(|a| (1..30).contains(&a)),
            "c-7" => age.is_none(),
            _ => age.is_some_and(|a| a <= 1),
        };
        assert!(aged_as_expected, "{id}: Age {age:?}");
    }
    // Older than asked by several at once: loaded again once, and the others take that answer.
    tokio::time::sleep(Duration::from_millis(1_200)).await;
    let reloads = loads_of_burst(
        &proxy,
        SEARCH,
        &clinician,
        "stale",
        6,
        &[("cache-control", "max-age=1")],
    )
    .await;
    assert_eq!(reloads, 1, "an answer older than asked is loaded again once");

    // Eight identical searches at once: one native load, whoever asked first.
    let conditions = format!("Condition?patient={id}");
    let loads = loads_of_burst(&proxy, &conditions, &clinician, "burst", 8, &[]).await;
    assert_eq!(loads, 1, "concurrent identical searches share one native load");

    // A search kept, then the same search including what it references: the search from the cache, the
    // performers from EMIS.
    let search = format!("Observation?patient={id}");
    assert_eq!(get_as(&proxy, &search, &clinician, "c-9", &[]).await.0, 200);
    let path = format!("{search}&_include=Observation:performer");
    let (status, bundle) = get_as(&proxy, &path, &clinician, "c-10", &[]).await;
    assert_eq!(status, 200);
    let entries = bundle["entry"].as_array().unwrap();
    assert!(entries.iter().any(|e| e["search"]["mode"] == "include"), "{bundle}");
    let (cache, calls) = common::audited(&proxy, "c-10");
    assert_eq!((cache.as_str(), calls > 0), ("partial", true));

    // Every interaction still has exactly one AuditEvent, hits included.
    let total = proxy.audit.count().unwrap();
    assert_eq!(total, 8 + 6 + 8 + 2);
    proxy.stop().await;
    sims.shutdown().await;
}

#[tokio::test]
async fn a_cached_answer_never_carries_one_principals_view_to_another() {
    let sims = Simulators::start(common::fixed_options(1, 9)).await.unwrap();
    let proxy = Proxy::start(sims.practices(), sims.linkage()).await;
    let clinician = token(Role::Clinician, &["Y90001"]);
    let (_, found) = get_json(&proxy, SEARCH, &clinician).await;
    let patient_id = matches(&found)[0]["id"].as_str().unwrap().to_string();

    // The clinician loads every observation, free text and confidential items included.
    let observations = format!("Observation?patient={patient_id}&_count=500");
    let (_, full) = get_as(&proxy, &observations, &clinician, "v-1", &[]).await;
    let full = matches(&full);
    assert!(full.iter().any(|o| o["category"].to_string().contains("laboratory")));
    assert!(full.iter().any(|o| !o["category"].to_string().contains("laboratory")));

    // A clinician whose scope is laboratory results only: served from the cache, laboratory results only.
    let lab_only = scoped(
        Role::Clinician,
        "user/Observation.rs?category=laboratory user/Patient.rs",
    );
    let (status, labs) = get_as(&proxy, &observations, &lab_only, "v-2", &[]).await;
    assert_eq!(status, 200);
    assert_eq!(common::audited(&proxy, "v-2").0, "hit");
    let labs = matches(&labs);
    assert!(!labs.is_empty());
    assert!(labs.iter().all(|o| o["category"].to_string().contains("laboratory")));

    // A system client: served from the cache too, without the notes the clinician saw.
    let allergies = format!("AllergyIntolerance?patient={patient_id}&_count=500");
    let (_, with_notes) = get_as(&proxy, &allergies, &clinician, "v-3", &[]).await;
    assert!(
        matches(&with_notes).iter().any(|c| c.get("note").is_some()),
        "seeded notes"
    );
    let system = token(Role::System, &["Y90001"]);
    let (status, without) = get_as(&proxy, &allergies, &system, "v-4", &[]).await;
    assert_eq!(status, 200);
    assert_eq!(common::audited(&proxy, "v-4").0, "hit");
    // The same allergies, each without its note.
    assert_eq!(matches(&without).len(), matches(&with_notes).len());
    assert!(matches(&without).iter().all(|c| c.get("note").is_none()));

    // A clinician of another practice: the cached record stays out of reach (the id names Y90001).
    let other = token(Role::Clinician, &["Y90002"]);
    let (status, theirs) = get_as(&proxy, &observations, &other, "v-5", &[]).await;
    assert_eq!(status, 200);
    assert_eq!(theirs["total"], 0);
    let read = format!("Observation/{}", full[0]["id"].as_str().unwrap());
    let (status, _) = get_as(&proxy, &read, &other, "v-6", &[]).await;
    assert_eq!(status, 404);

    // The patient themselves: their own linkage's answer (a different entry), never the clinician's view with
    // its confidential items.
    let patient = common::patient_token("9000000009", "Y90001");
    let (status, own) = get_as(&proxy, &observations, &patient, "v-7", &[]).await;
    assert_eq!(status, 200);
    assert_eq!(
        common::audited(&proxy, "v-7").0,
        "miss",
        "the patient-facing answer is its own entry"
    );
    assert!(matches(&own).iter().all(|o| !common::restricted(o)));
    // Patient 8's problems include confidential ones: the clinician's answer, cached, holds them; the
    // patient's own is another entry, with the rest only.
    let eighth = sims.world.read(|r| r.patients[8].nhs_number.clone());
    let (_, found) = get_json(&proxy, &format!("Patient?identifier={eighth}"), &clinician).await;
    let eighth_id = matches(&found)[0]["id"].as_str().unwrap().to_string();
    let problems = format!("Condition?patient={eighth_id}&_count=500");
    let (_, full_problems) = get_as(&proxy, &problems, &clinician, "v-9", &[]).await;
    let full_problems = matches(&full_problems);
    let confidential = full_problems.iter().filter(|c| common::restricted(c)).count();
    assert!(confidential > 0, "patient 8's record holds confidential problems");
    let eighth = common::patient_token(&eighth, "Y90001");
    let (status, own_problems) = get_as(&proxy, &problems, &eighth, "v-10", &[]).await;
    assert_eq!(status, 200);
    assert_eq!(common::audited(&proxy, "v-10").0, "miss");
    let own_problems = matches(&own_problems);
    assert_eq!(own_problems.len(), full_problems.len() - confidential);
    assert!(own_problems.iter().all(|c| !common::restricted(c)));
    // And another patient's token finds nothing of it, cached or not.
    let stranger = sims.world.read(|r| r.patients[2].nhs_number.clone());
    let stranger = common::patient_token(&stranger, "Y90001");
    let (_, leaked) = get_as(&proxy, &observations, &stranger, "v-8", &[]).await;
    assert_eq!(leaked["total"], 0);
    proxy.stop().await;
    sims.shutdown().await;
}

#[tokio::test]
async fn entries_expire_and_a_zero_lifetime_switches_the_cache_off() {
    let sims = Simulators::start(common::fixed_options(1, 4)).await.unwrap();
    // Long enough for a second request sent at once to find the entry on a slow machine; expired after.
    let short = CacheConfig {
        ttl: Duration::from_millis(1_500),
        ..CacheConfig::default()
    };
    let proxy = Proxy::start_cached(sims.practices(), sims.linkage(), short).await;
    let clinician = token(Role::Clinician, &["Y90001"]);
    get_as(&proxy, SEARCH, &clinician, "t-1", &[]).await;
    get_as(&proxy, SEARCH, &clinician, "t-2", &[]).await;
    assert_eq!(common::audited(&proxy, "t-2").0, "hit");
    tokio::time::sleep(Duration::from_millis(2_000)).await;
    get_as(&proxy, SEARCH, &clinician, "t-3", &[]).await;
    assert_eq!(common::audited(&proxy, "t-3").0, "miss", "expired");
    proxy.stop().await;

    let off = CacheConfig {
        ttl: Duration::ZERO,
        ..CacheConfig::default()
    };
    let proxy = Proxy::start_cached(sims.practices(), sims.linkage(), off).await;
    for i in 0..2 {
        get_as(&proxy, SEARCH, &clinician, &format!("o-{i}"), &[]).await;
        assert_eq!(common::audited(&proxy, &format!("o-{i}")).0, "miss");
    }
    proxy.stop().await;
    sims.shutdown().await;
}

/// A patient's linkage is looked up once per `linkage_seconds`, not per request: at EMIS Web and SystmOne each
/// lookup is a new PFS session, so the second request (sent past the response cache) makes only its data call.
#[tokio::test]
async fn a_patients_linkage_is_looked_up_once_not_on_every_request() {
    let sims = Simulators::start(common::fixed_options(1, 4)).await.unwrap();
    let proxy = Proxy::start(sims.practices(), sims.linkage()).await;
    let nhs = sims.world.read(|r| r.patients[0].nhs_number.clone());
    for ods in ["Y90001", "Y90002", "Y90003"] {
        let t = common::patient_token(&nhs, ods);
        let fresh = [("cache-control", "no-cache")];
        let (status, _) = get_as(&proxy, "Condition", &t, &format!("l-1-{ods}"), &fresh).await;
        assert_eq!(status, 200, "{ods}");
        let (_, first) = common::audited(&proxy, &format!("l-1-{ods}"));
        for i in 2..=4 {
            let (status, _) = get_as(&proxy, "Condition", &t, &format!("l-{i}-{ods}"), &fresh).await;
            assert_eq!(status, 200, "{ods}");
            let (_, later) = common::audited(&proxy, &format!("l-{i}-{ods}"));
            assert!(
                later < first,
                "{ods}: request {i} made {later} native calls, the first {first}"
            );
            assert_eq!(later, 1, "{ods}: request {i} makes only its data call");
        }
    }
    proxy.stop().await;
    sims.shutdown().await;
}

/// An answer older than several requests ask (`max-age`) is loaded again once, even when the GP system is slower
/// than the age asked: the others take that answer rather than each loading it again in turn.
#[tokio::test]
async fn a_slow_refresh_is_shared() {
    let sims = Simulators::start_with(common::fixed_options(1, 4), |emis, _, _| {
        emis.faults.latency = 1.0;
        emis.faults.latency_ms = 1_200;
    })
    .await
    .unwrap();
    let proxy = Proxy::start(sims.practices(), sims.linkage()).await;
    let clinician = token(Role::Clinician, &["Y90001"]);
    assert_eq!(get_as(&proxy, SEARCH, &clinician, "s-0", &[]).await.0, 200);
    // Each load takes longer than the second the requests allow, so the answer is always too old for them.
    let reloads = loads_of_burst(&proxy, SEARCH, &clinician, "slow", 4, &[("cache-control", "max-age=1")]).await;
    assert_eq!(reloads, 1);
    proxy.stop().await;
    sims.shutdown().await;
}

/// A hit whose only native calls were the patient's linkage (looked up on every request here) is a hit, not
/// partial: what is partial is an answer, not the calls around it.
#[tokio::test]
async fn linkage_calls_do_not_make_a_hit_partial() {
    let sims = Simulators::start(common::fixed_options(1, 4)).await.unwrap();
    let every_time = CacheConfig {
        linkage_ttl: Duration::ZERO,
        ..CacheConfig::default()
    };
    let proxy = Proxy::start_cached(sims.practices(), sims.linkage(), every_time).await;
    let nhs = sims.world.read(|r| r.patients[0].nhs_number.clone());
    let patient = common::patient_token(&nhs, "Y90001");
    for id in ["p-1", "p-2"] {
        assert_eq!(get_as(&proxy, "Condition", &patient, id, &[]).await.0, 200);
    }
    let (cache, calls) = common::audited(&proxy, "p-2");
    assert!(calls > 0, "the linkage is looked up again");
    assert_eq!(cache, "hit");
    proxy.stop().await;
    sims.shutdown().await;
}
