//! The proxy keeps the pace each supplier allows: over the simulators with their native rate limits on (as
//! `demo` runs them), a burst of requests well above those rates is answered in full, each native call
//! waiting for its turn rather than being refused (TPP's load shedding would be a 503 with a five-second
//! Retry-After; EMIS and Medicus answer 429).

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
