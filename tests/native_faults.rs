//! Native faults become clear FHIR answers, through each supplier: a server error, a connection dropped or
//! cut short, or a broken body is a 502 with its own code; a native rate limit is a 429 or 503 with
//! `Retry-After` (never "credentials refused", never a 200 with part of an answer). The simulators inject
//! the fault into every call (their fault rates at 1).
use crate::common;
use common::{token, Proxy};
use im1_fhir::auth::Role;
use im1_fhir::demo::Simulators;
use im1_sim::common::faults::FaultRates;

/// The fault, and per practice (EMIS Web, TPP SystmOne, Medicus) the status and code expected.
type Case = (&'static str, fn(&mut FaultRates), [(u16, &'static str); 3]);

const CASES: [Case; 5] = [
    // EMIS's first call is the Partner token, refused by the fault: busy or failing, not a credential refusal.
    (
        "server error",
        |f| f.server_error = 1.0,
        [(502, "IM1-4500"), (502, "IM1-4500"), (502, "IM1-4500")],
    ),
    // A supplier limiting this server is a 503 to try again (not a 429: the client sent nothing too many);
    // TPP's rate limit is its error 99, to try again in five seconds.
    (
        "rate limited",
        |f| f.too_many_requests = 1.0,
        [(503, "IM1-4129"), (503, "IM1-4503"), (503, "IM1-4129")],
    ),
    (
        "dropped",
        |f| f.drop = 1.0,
        [(502, "IM1-4004"), (502, "IM1-4004"), (502, "IM1-4004")],
    ),
    (
        "truncated",
        |f| f.truncate = 1.0,
        [(502, "IM1-4004"), (502, "IM1-4004"), (502, "IM1-4004")],
    ),
    // SystmOne's framed XML that does not parse is a broken reply as any other.
    (
        "malformed",
        |f| f.malformed = 1.0,
        [(502, "IM1-4006"), (502, "IM1-4004"), (502, "IM1-4006")],
    ),
];

#[tokio::test]
async fn native_faults_are_clear_outcomes_through_every_supplier() {
    for (fault, inject, expected) in CASES {
        let sims = Simulators::start_with(common::fixed_options(1, 3), |emis, systmone, medicus| {
            inject(&mut emis.faults);
            inject(&mut systmone.faults);
            inject(&mut medicus.faults);
        })
        .await
        .unwrap();
        let proxy = Proxy::start(sims.practices(), sims.linkage()).await;
        for (ods, (status, code)) in ["Y90001", "Y90002", "Y90003"].into_iter().zip(expected) {
            let t = token(Role::Clinician, &[ods]);
            let response = proxy
                .get("Patient?identifier=https://fhir.nhs.uk/Id/nhs-number|9000000009", &t)
                .await;
            let retry_after = response.headers().get("retry-after").cloned();
            let body = common::outcome(response, status).await;
            assert_eq!(
                body["issue"][0]["details"]["coding"][0]["code"], code,
                "{fault} at {ods}: {body}"
            );
            let told_when = retry_after.and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
            assert_eq!(
                told_when.is_some_and(|s| s >= 1),
                matches!(status, 429 | 503),
                "{fault} at {ods}: Retry-After {told_when:?}"
            );
        }
        proxy.stop().await;
        sims.shutdown().await;
    }
}

/// A failing EMIS Partner token endpoint is tried once, and its failure given again for a few seconds to the
/// requests that follow, rather than each trying it in turn for up to its deadline.
#[tokio::test]
async fn a_failing_partner_token_endpoint_is_not_asked_again_at_once() {
    let sims = Simulators::start_with(common::fixed_options(1, 3), |emis, _, _| emis.faults.server_error = 1.0)
        .await
        .unwrap();
    let proxy = Proxy::start(sims.practices(), sims.linkage()).await;
    let t = token(Role::Clinician, &["Y90001"]);
    let search = "Patient?identifier=https://fhir.nhs.uk/Id/nhs-number|9000000009";
    for id in ["first", "again"] {
        let body = common::outcome(common::get_as(&proxy, search, &t, id).await, 502).await;
        assert_eq!(body["issue"][0]["details"]["coding"][0]["code"], "IM1-4500", "{id}");
    }
    let calls = |id: &str| common::audited(&proxy, id).1;
    assert_eq!((calls("first"), calls("again")), (1, 0));
    proxy.stop().await;
    sims.shutdown().await;
}

/// A search of several practices gives what those that answered hold, saying which failed (incomplete, with
/// the native code and the practice); only when every practice failed is the search a failure.
#[tokio::test]
async fn a_search_of_several_practices_survives_one_failing() {
    let search = "Patient?identifier=https://fhir.nhs.uk/Id/nhs-number|9000000009";
    let all = ["Y90001", "Y90002", "Y90003"];
    let sims = Simulators::start_with(common::fixed_options(1, 3), |_, systmone, _| {
        systmone.faults.server_error = 1.0
    })
    .await
    .unwrap();
    let proxy = Proxy::start(sims.practices(), sims.linkage()).await;
    let response = proxy.get(search, &token(Role::System, &all)).await;
    assert_eq!(response.status(), 200);
    let bundle: serde_json::Value = response.json().await.unwrap();
    let practices: Vec<&str> = common::entries(&bundle, "match")
        .iter()
        .filter_map(|p| p["managingOrganization"]["identifier"]["value"].as_str())
        .collect();
    assert_eq!(practices, ["Y90001", "Y90003"], "{bundle}");
    let said = common::entries(&bundle, "outcome")
        .iter()
        .flat_map(|o| o["issue"].as_array().cloned().unwrap_or_default())
        .find(|i| i["code"] == "incomplete")
        .unwrap_or_else(|| panic!("the failure is not said: {bundle}"));
    assert!(
        said["diagnostics"].as_str().unwrap().contains("practice Y90002"),
        "{said}"
    );
    // Asked alone, the failing practice's search fails as before.
    let alone = proxy.get(search, &token(Role::Clinician, &["Y90002"])).await;
    assert_eq!(alone.status(), 502);
    proxy.stop().await;
    sims.shutdown().await;

    // Every practice failing: the search fails.
    let sims = Simulators::start_with(common::fixed_options(1, 3), |emis, systmone, medicus| {
        for faults in [&mut emis.faults, &mut systmone.faults, &mut medicus.faults] {
            faults.server_error = 1.0;
        }
    })
    .await
    .unwrap();
    let proxy = Proxy::start(sims.practices(), sims.linkage()).await;
    common::outcome(proxy.get(search, &token(Role::System, &all)).await, 502).await;
    proxy.stop().await;
    sims.shutdown().await;
}

/// A supplier that sheds load says when to come back (TPP: error 99, five seconds): until then no call goes to
/// that practice. A request whose deadline the pause outlasts is refused at once, saying when to try again,
/// rather than asking TPP again to be refused again.
#[tokio::test]
async fn a_pause_the_supplier_asks_for_is_kept() {
    let sims = Simulators::start_with(common::fixed_options(1, 3), |_, systmone, _| {
        systmone.faults.too_many_requests = 1.0
    })
    .await
    .unwrap();
    let proxy = Proxy::start(sims.practices(), sims.linkage()).await;
    let search = "Patient?identifier=https://fhir.nhs.uk/Id/nhs-number|9000000009";
    let t = token(Role::Clinician, &["Y90002"]);
    let mut codes = Vec::new();
    for id in ["asked", "paused"] {
        let response = common::get_as(&proxy, search, &t, id).await;
        let retry_after: u64 = response.headers()["retry-after"].to_str().unwrap().parse().unwrap();
        assert!((1..=5).contains(&retry_after), "{id}: {retry_after}");
        let body = common::outcome(response, 503).await;
        codes.push(
            body["issue"][0]["details"]["coding"][0]["code"]
                .as_str()
                .unwrap()
                .to_string(),
        );
    }
    assert_eq!(codes, ["IM1-4503", "IM1-4011"]);
    let calls = |id: &str| common::audited(&proxy, id).1;
    assert_eq!((calls("asked"), calls("paused")), (1, 0));
    // Another practice is not held back.
    let emis = proxy.get(search, &token(Role::Clinician, &["Y90001"])).await;
    assert_eq!(emis.status(), 200);
    proxy.stop().await;
    sims.shutdown().await;
}

/// A GP system that leaves its calls unanswered (every connection closed with no reply, here: HTTP for Medicus,
/// SystmOne's framed socket) is not called for a while once `trip_after` calls in a row went unanswered:
/// requests are refused at once, saying when to come back, rather than each holding a place for its deadline and
/// failing the same way. When the time is up one call goes, a trial (the breaker's unit tests and
/// `client::tests::a_half_open_circuit_lets_one_trial_call_go` show the others are refused meanwhile), and its going
/// unanswered stops the calls again. Other practices are not held back.
#[tokio::test]
async fn a_gp_system_that_stops_answering_is_not_called_for_a_while() {
    let sims = Simulators::start_with(common::fixed_options(1, 3), |_, systmone, medicus| {
        systmone.faults.drop = 1.0;
        medicus.faults.drop = 1.0;
    })
    .await
    .unwrap();
    let native = im1_fhir::config::NativeConfig {
        breaker: im1_fhir::config::BreakerSettings {
            trip_after: 3,
            open_for: std::time::Duration::from_millis(1_500),
        },
        ..common::test_native()
    };
    let proxy = Proxy::start_with(sims.practices(), sims.linkage(), native, common::test_server()).await;
    let search = "Patient?identifier=https://fhir.nhs.uk/Id/nhs-number|9000000009";
    let answer = |ods: &'static str, id: &'static str| {
        let (proxy, t) = (&proxy, token(Role::Clinician, &[ods]));
        async move {
            let id = format!("{ods}-{id}");
            let response = common::get_as(proxy, search, &t, &id).await;
            let status = response.status().as_u16();
            let retry_after = response.headers().get("retry-after").cloned();
            let body = common::outcome(response, status).await;
            let code = body["issue"][0]["details"]["coding"][0]["code"]
                .as_str()
                .unwrap_or("")
                .to_string();
            (status, code, retry_after.is_some(), common::audited(proxy, &id).1)
        }
    };
    for ods in ["Y90002", "Y90003"] {
        // Two attempts each (one retry): the second request's first attempt is the third unanswered call in a
        // row, and its retry is not made.
        assert_eq!(answer(ods, "first").await, (502, "IM1-4004".into(), false, 2), "{ods}");
        assert_eq!(answer(ods, "second").await, (502, "IM1-4004".into(), false, 1), "{ods}");
        assert_eq!(answer(ods, "stopped").await, (503, "IM1-4012".into(), true, 0), "{ods}");
    }
    // The metrics say which APIs are stopped.
    let metrics = common::metrics(&proxy).await;
    let gauge = |ods: &str, surface: &str| {
        let series = format!("im1_fhir_native_circuit_open{{practice=\"{ods}\",surface=\"{surface}\"}} ");
        metrics
            .lines()
            .find_map(|line| line.strip_prefix(series.as_str()))
            .map(str::to_string)
    };
    assert_eq!(gauge("Y90003", "transaction").as_deref(), Some("1"), "{metrics}");
    assert_eq!(gauge("Y90002", "transaction").as_deref(), Some("1"));
    assert_eq!(gauge("Y90003", "patient").as_deref(), Some("0"));
    assert_eq!(gauge("Y90001", "transaction").as_deref(), Some("0"));
    // Another practice is not held back, nor the patient-facing API of the same practice (the simulator drops
    // its calls too: they are made, and fail as before).
    let emis = proxy.get(search, &token(Role::Clinician, &["Y90001"])).await;
    assert_eq!(emis.status(), 200);
    let patient = common::patient_token("9000000009", "Y90003");
    let response = common::get_as(&proxy, "Patient", &patient, "Y90003-patient").await;
    let body = common::outcome(response, 502).await;
    assert_eq!(body["issue"][0]["details"]["coding"][0]["code"], "IM1-4004", "{body}");
    assert!(common::audited(&proxy, "Y90003-patient").1 > 0);
    tokio::time::sleep(std::time::Duration::from_millis(1_600)).await;
    for ods in ["Y90002", "Y90003"] {
        assert_eq!(answer(ods, "again").await, (502, "IM1-4004".into(), false, 1), "{ods}");
        assert_eq!(
            answer(ods, "stopped-again").await,
            (503, "IM1-4012".into(), true, 0),
            "{ods}"
        );
    }
    proxy.stop().await;
    sims.shutdown().await;
}
