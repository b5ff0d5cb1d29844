//! Throttling, injected faults in the dialect's error shape, and determinism.

use crate::common;
use common::*;
use im1_sim_medicus::MedicusConfig;
use serde_json::json;

#[tokio::test]
async fn rate_limit_is_20_per_second_per_app() {
    let sim = start_with(options(1), MedicusConfig::default()).await;
    let ping = format!("{T}/transactional-api/ping");
    let tokens: Vec<String> = (0..30).map(|_| trx()).collect();
    let mut limited = None;
    for t in &tokens {
        let r = get(&sim, &ping, t).await;
        if r.status == 429 {
            limited = Some(r);
            break;
        }
        assert_eq!(r.status, 200);
    }
    let r = limited.expect("throttled within 30 quick calls");
    assert_eq!(r.error_code(), "RATE_LIMITED");
    assert!(r.headers.get("retry-after").is_some());
    // Off: no limit.
    let sim = start().await;
    for t in (0..30).map(|_| trx()).collect::<Vec<_>>() {
        assert_eq!(get(&sim, &ping, &t).await.status, 200);
    }
}

#[tokio::test]
async fn injected_faults_use_the_error_shape() {
    let sim = start().await;
    let pid = creds(&sim, "9000000009").patient_id;
    let path = format!("{T}/transactional-api/v1/patient/{pid}/journal");
    let fault = |name: &'static str| {
        let sim = &sim;
        let path = path.clone();
        async move { try_send(sim, "GET", &path, Some(&trx()), &[("x-sim-fault", name)], None).await }
    };
    let r = fault("500").await.expect("reply");
    assert_eq!((r.status, r.error_code().as_str()), (500, "INTERNAL_SERVER_ERROR"));
    let r = fault("503").await.expect("reply");
    assert_eq!((r.status, r.error_code().as_str()), (503, "SERVICE_UNAVAILABLE"));
    let r = fault("429").await.expect("reply");
    assert_eq!((r.status, r.error_code().as_str()), (429, "RATE_LIMITED"));
    assert!(r.headers.get("retry-after").is_some());
    let r = fault("expired-session").await.expect("reply");
    assert_eq!((r.status, r.error_code().as_str()), (401, "JWT_EXPIRED"));
    assert!(fault("drop").await.is_err());
    assert!(fault("truncate").await.is_err());
    let r = fault("malformed").await.expect("reply");
    assert!(serde_json::from_slice::<serde_json::Value>(&r.body).is_err());
    let r = fault("latency=50").await.expect("reply");
    assert_eq!(r.status, 200);

    // drop-after-commit: the write commits, the reply is lost; a retry with the same key replays it.
    let (sub, pid) = link(&sim, "9000000009").await;
    let send = format!("{T}/pfs-api/v1/patient/{pid}/send-message");
    let body = json!({"subject": "Retry", "body": "Once only"});
    let key = uuid::Uuid::new_v4().to_string();
    let lost = try_send(
        &sim,
        "POST",
        &send,
        Some(&pfs(&sub)),
        &[("idempotency-key", &key), ("x-sim-fault", "drop-after-commit")],
        Some(&body),
    )
    .await;
    assert!(lost.is_err());
    let retry = try_send(
        &sim,
        "POST",
        &send,
        Some(&pfs(&sub)),
        &[("idempotency-key", &key)],
        Some(&body),
    )
    .await
    .expect("reply");
    assert_eq!(retry.status, 201);
    let r = get(&sim, &format!("{T}/pfs-api/v1/patient/{pid}/messages"), &pfs(&sub)).await;
    let n = r.json()["messages"]
        .as_array()
        .expect("list")
        .iter()
        .filter(|m| m["subject"] == "Retry")
        .count();
    assert_eq!(n, 1, "exactly once");
    // A write without a key, or with a key that is not a UUID, is refused.
    for headers in [&[][..], &[("idempotency-key", "not-a-uuid")][..]] {
        let r = try_send(&sim, "POST", &send, Some(&pfs(&sub)), headers, Some(&body))
            .await
            .expect("reply");
        assert_eq!((r.status, r.error_code().as_str()), (400, "IDEMPOTENCY_KEY_REQUIRED"));
    }

    // Rates: every call fails with a 5xx in the dialect's shape.
    let sim = start_with(
        options(1),
        MedicusConfig {
            throttle: false,
            faults: im1_sim::common::FaultRates {
                server_error: 1.0,
                ..Default::default()
            },
            ..MedicusConfig::default()
        },
    )
    .await;
    let r = get(&sim, &path, &trx()).await;
    assert!(r.status == 500 || r.status == 503);
    assert!(r.error_code() == "INTERNAL_SERVER_ERROR" || r.error_code() == "SERVICE_UNAVAILABLE");
}

#[tokio::test]
async fn same_seed_same_bytes() {
    let a = start().await;
    let b = start().await;
    let pid = creds(&a, "9000000009").patient_id;
    let paths = [
        format!("{T}/transactional-api/v1/patient/find?query=9000000009"),
        format!("{T}/transactional-api/v1/patient/{pid}"),
        format!("{T}/transactional-api/v1/patient/{pid}/journal?limit=200"),
        format!("{T}/transactional-api/v1/patient/{pid}/list-current-and-recent-medication"),
        format!("{T}/transactional-api/v1/practitioners"),
        format!("{T}/transactional-api/v1/patients/changes?since=2025-01-01T00:00:00Z"),
    ];
    for p in &paths {
        let (x, y) = (get(&a, p, &trx()).await, get(&b, p, &trx()).await);
        assert_eq!(x.status, 200, "{p}");
        assert_eq!(x.body, y.body, "{p}");
    }
    let (sa, _) = link(&a, "9000000009").await;
    let (sb, _) = link(&b, "9000000009").await;
    for tail in [
        "bookable-services",
        "available-appointments?fromDate=2025-03-04&untilDate=2025-03-07",
        "appointments",
        "prescriptions",
        "prescription-requests",
        "messages",
    ] {
        let p = format!("{T}/pfs-api/v1/patient/{pid}/{tail}");
        let (x, y) = (get(&a, &p, &pfs(&sa)).await, get(&b, &p, &pfs(&sb)).await);
        assert_eq!(x.status, 200, "{p}");
        assert_eq!(x.body, y.body, "{p}");
    }
}
