//! Requests/s and p50/p99 latency over real HTTP for `metadata`, the Patient read through each supplier and the
//! search through EMIS with the response cache off (the proxy's per-request cost, native call included), then
//! reads served from the cache (simulators unthrottled). Medicus wants a freshly signed RS256 JWT on every call:
//! that native cost is printed on its own (design.md: measure the proxy on EMIS and SystmOne, report Medicus's
//! signing separately). Run: `cargo bench --bench http`.
//! Bounded: a fixed number of requests per case, loopback only.

use im1_fhir::auth::token::{mint_demo, Issuer, TokenRequest};
use im1_fhir::auth::Role;
use im1_fhir::demo::Simulators;
use im1_fhir::mapping::{Registry, Source};
use im1_fhir::runtime::{self, Parts};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The allocator the `im1-fhir` binary uses, so the figures are the product's.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

const REQUESTS: usize = 4_000;
const CONNECTIONS: usize = 8;

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(run());
}

async fn run() {
    let options = im1_sim::SimOptions {
        seed: 1,
        patients: 50,
        throttle: false,
        today: None,
    };
    let sims = Simulators::start(options).await.expect("simulators");
    // Off, so that every request pays for its native calls: the proxy's overhead is what is measured.
    let uncached = start_proxy(&sims, Duration::ZERO).await;
    let base = uncached.base_url();
    #[allow(clippy::disallowed_methods)]
    let client = reqwest::Client::new();
    let token = clinician(&["Y90001"]);
    let search = format!("{base}/Patient?identifier=https://fhir.nhs.uk/Id/nhs-number|9000000009");
    let id = first_match(&client, &search, &token).await;

    println!("im1-fhir HTTP benchmark: {REQUESTS} requests per case, {CONNECTIONS} concurrent clients, loopback");
    println!("{:<44} {:>10} {:>10} {:>10}", "case", "req/s", "p50 ms", "p99 ms");
    measure(&client, "GET /fhir/metadata", format!("{base}/metadata"), None).await;
    measure(
        &client,
        "GET /fhir/Patient/{id} via EMIS (uncached)",
        format!("{base}/Patient/{id}"),
        Some(&token),
    )
    .await;
    measure(&client, "GET /fhir/Patient?identifier= via EMIS", search, Some(&token)).await;
    for (ods, supplier) in [("Y90002", "SystmOne"), ("Y90003", "Medicus")] {
        let t = clinician(&[ods]);
        let found = format!("{base}/Patient?identifier=https://fhir.nhs.uk/Id/nhs-number|9000000009");
        let other = first_match(&client, &found, &t).await;
        let name = format!("GET /fhir/Patient/{{id}} via {supplier} (uncached)");
        measure(&client, &name, format!("{base}/Patient/{other}"), Some(&t)).await;
    }
    // One search by a token of all three practices: each practice is asked (at once), one answer from each.
    let every_practice = clinician(&["Y90001", "Y90002", "Y90003"]);
    measure(
        &client,
        "GET /fhir/Patient?identifier= via all three",
        format!("{base}/Patient?identifier=https://fhir.nhs.uk/Id/nhs-number|9000000009"),
        Some(&every_practice),
    )
    .await;
    medicus_signing();
    // The same reads with the response cache on (the default): after the first, no native call.
    let cached = start_proxy(&sims, im1_fhir::cache::CacheConfig::default().ttl).await;
    let cached_base = cached.base_url();
    measure(
        &client,
        "GET /fhir/Patient/{id} via EMIS (cached)",
        format!("{cached_base}/Patient/{id}"),
        Some(&token),
    )
    .await;
    measure(
        &client,
        "GET /fhir/Condition?patient= via EMIS (cached)",
        format!("{cached_base}/Condition?patient={id}"),
        Some(&token),
    )
    .await;
    uncached.shutdown().await;
    cached.shutdown().await;
    sims.shutdown().await;
    slow_native_fan_out(&client).await;
}

/// What a request that needs many native calls costs when each takes as long as a real GP system's: EMIS's
/// simulator answering every call 100 ms late, uncached. `$everything` searches each type of the record and
/// reads what they reference, several at once (`record_ops::fan_out`); `_include` reads its targets so too.
async fn slow_native_fan_out(client: &reqwest::Client) {
    const LATE_MS: u64 = 100;
    let options = im1_sim::SimOptions {
        seed: 1,
        patients: 50,
        throttle: false,
        today: None,
    };
    let sims = Simulators::start_with(options, |emis, _, _| {
        emis.faults = im1_sim::common::faults::FaultRates {
            latency: 1.0,
            latency_ms: LATE_MS,
            ..Default::default()
        };
    })
    .await
    .expect("simulators");
    let proxy = start_proxy(&sims, Duration::ZERO).await;
    let base = proxy.base_url();
    let token = clinician(&["Y90001"]);
    let search = format!("{base}/Patient?identifier=https://fhir.nhs.uk/Id/nhs-number|9000000009");
    let id = first_match(client, &search, &token).await;
    println!();
    println!("Every EMIS native reply {LATE_MS} ms late, uncached, one request at a time (median of 10):");
    for (name, url) in [
        (
            "GET /fhir/Patient/{id}/$everything",
            format!("{base}/Patient/{id}/$everything?_count=200"),
        ),
        (
            "GET /fhir/Observation?patient=&_include=performer",
            format!("{base}/Observation?patient={id}&_include=Observation:performer&_count=200"),
        ),
    ] {
        let mut took: Vec<Duration> = Vec::new();
        for _ in 0..10 {
            let started = Instant::now();
            send(client, &url, Some(&token)).await;
            took.push(started.elapsed());
        }
        took.sort();
        println!("{name:<52} {:>8.0} ms", took[took.len() / 2].as_secs_f64() * 1000.0);
    }
    proxy.shutdown().await;
    sims.shutdown().await;
}

fn clinician(practices: &[&str]) -> String {
    mint_demo(&TokenRequest {
        practices: practices.iter().map(|p| p.to_string()).collect(),
        role: Role::Clinician,
        nhs_number: None,
        scope: None,
        ttl_seconds: 3600,
    })
    .expect("token")
}

/// The id of the first resource a search finds.
async fn first_match(client: &reqwest::Client, url: &str, token: &str) -> String {
    let bundle: serde_json::Value = client
        .get(url)
        .bearer_auth(token)
        .send()
        .await
        .expect("search")
        .json()
        .await
        .expect("json");
    bundle["entry"][0]["resource"]["id"]
        .as_str()
        .expect("a match")
        .to_string()
}

/// What one Medicus call's RS256 signature costs (the demo app key, as the Medicus dialect signs).
fn medicus_signing() {
    use jsonwebtoken::{Algorithm, EncodingKey, Header};
    let pem = include_str!("../keys/demo-medicus-app.key.pem");
    let key = EncodingKey::from_rsa_pem(pem.as_bytes()).expect("demo Medicus key");
    let claims = serde_json::json!({ "iss": "app", "aud": "tenant", "iat": 0, "exp": 300, "jti": "x" });
    let header = Header::new(Algorithm::RS256);
    let runs = 500;
    let started = Instant::now();
    for _ in 0..runs {
        std::hint::black_box(jsonwebtoken::encode(&header, &claims, &key).expect("sign"));
    }
    let each = started.elapsed().as_secs_f64() * 1000.0 / f64::from(runs);
    println!("(Medicus: each native call carries a fresh RS256 signature, {each:.2} ms of CPU here)");
}

/// The proxy over the simulators with the full pipeline (audit commits included: every request waits for its
/// AuditEvent) and a response cache of the given lifetime (zero: off).
async fn start_proxy(sims: &Simulators, cache_ttl: Duration) -> runtime::Running {
    let state =
        runtime::build_state(Parts {
            registry: Arc::new(Registry::load(&Source::Embedded).expect("mappings")),
            practices: sims.practices(),
            native: Default::default(),
            issuers: vec![Issuer::demo().expect("demo issuer")],
            secret_key: b"benchmark key of at least thirty-two bytes".to_vec(),
            linkage: sims.linkage(),
            public_base_url: None,
            max_body_bytes: 1 << 20,
            body_timeout_ms: 10_000,
            audit: Some(
                im1_fhir::audit::AuditStore::open(&im1_fhir::audit::AuditConfig::new(std::env::temp_dir().join(
                    format!("im1-fhir-bench-audit-{}-{}.db", std::process::id(), cache_ttl.as_secs()),
                )))
                .expect("audit store"),
            ),
            // The benchmark is one client measuring throughput: no per-client limit.
            client_rate: None,
            cache: im1_fhir::cache::CacheConfig {
                ttl: cache_ttl,
                ..Default::default()
            },
            max_requests_in_flight: im1_fhir::config::ServerConfig::default().max_requests_in_flight,
        })
        .expect("state");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("listen");
    runtime::start(state, listener, None, &Default::default(), false).expect("start")
}

async fn measure(client: &reqwest::Client, name: &str, url: String, token: Option<&str>) {
    // Warm the connections and caches of the path.
    for _ in 0..50 {
        send(client, &url, token).await;
    }
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..CONNECTIONS {
        let (client, url, token) = (client.clone(), url.clone(), token.map(String::from));
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::with_capacity(REQUESTS / CONNECTIONS);
            for _ in 0..REQUESTS / CONNECTIONS {
                let t = Instant::now();
                send(&client, &url, token.as_deref()).await;
                latencies.push(t.elapsed());
            }
            latencies
        }));
    }
    let mut all: Vec<Duration> = Vec::with_capacity(REQUESTS);
    for task in tasks {
        all.extend(task.await.expect("worker"));
    }
    let elapsed = started.elapsed();
    all.sort();
    let pct = |p: f64| all[((all.len() as f64 * p) as usize).min(all.len() - 1)].as_secs_f64() * 1000.0;
    println!(
        "{name:<44} {:>10.0} {:>10.2} {:>10.2}",
        all.len() as f64 / elapsed.as_secs_f64(),
        pct(0.50),
        pct(0.99)
    );
}

async fn send(client: &reqwest::Client, url: &str, token: Option<&str>) {
    let mut request = client.get(url);
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    let response = request.send().await.expect("request");
    assert_eq!(response.status(), 200, "{url}");
    let _ = response.bytes().await.expect("body");
}
