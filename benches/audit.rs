//! Events/s and p50/p99 latency of `AuditStore::record` (time until the event's group commit) with 1, 8 and 64
//! concurrent recorders, for `synchronous=NORMAL` and `FULL`, on this machine's disk (a temporary directory).
//! Run: `cargo bench --bench audit`. Each case runs for about two seconds on a fresh database.
//!
//! Measured on the 2-core development VM (~3.4 KB events; on the same run a bare single-thread SQLite insert of
//! such an event took ~92 us alone and ~42 us per event in transactions of 100, and building the event's JSON
//! ~46 us, so this VM is about five times slower than the one in design.md):
//!
//! | sync   | recorders | events/s | p50 us | p99 us |
//! |--------|----------:|---------:|-------:|-------:|
//! | NORMAL |         1 |    3 316 |    271 |  1 110 |
//! | NORMAL |         8 |   10 446 |    653 |  3 080 |
//! | NORMAL |        64 |   13 914 |  3 824 | 13 634 |
//! | FULL   |         1 |    1 609 |    589 |    979 |
//! | FULL   |         8 |    5 398 |  1 429 |  3 800 |
//! | FULL   |        64 |    9 268 |  6 220 | 22 183 |

use std::time::{Duration, Instant};

use im1_fhir::audit::{AuditConfig, AuditFacts, AuditStore, NativeCallFact, PatientRef, Synchronous, Who};

const CASE: Duration = Duration::from_secs(2);

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(run());
}

async fn run() {
    println!("AuditStore::record, ~{} byte AuditEvents, until commit", event_size());
    println!(
        "{:<8} {:>11} {:>10} {:>10} {:>10}",
        "sync", "recorders", "events/s", "p50 us", "p99 us"
    );
    for synchronous in [Synchronous::Normal, Synchronous::Full] {
        for recorders in [1, 8, 64] {
            let dir = tempfile::tempdir().expect("temporary directory");
            let config = AuditConfig {
                synchronous,
                ..AuditConfig::new(dir.path().join("audit.db"))
            };
            let store = AuditStore::open(&config).expect("audit store");
            let (events, mut latencies) = case(&store, recorders).await;
            store.close().await;
            latencies.sort_unstable();
            println!(
                "{:<8} {:>11} {:>10.0} {:>10} {:>10}",
                format!("{synchronous:?}"),
                recorders,
                events as f64 / CASE.as_secs_f64(),
                percentile(&latencies, 0.50).as_micros(),
                percentile(&latencies, 0.99).as_micros(),
            );
        }
    }
}

/// `recorders` tasks record events back to back for `CASE`; returns the count and every latency.
async fn case(store: &AuditStore, recorders: usize) -> (usize, Vec<Duration>) {
    let deadline = Instant::now() + CASE;
    let tasks: Vec<_> = (0..recorders)
        .map(|n| {
            let store = store.clone();
            tokio::spawn(async move {
                let mut latencies = Vec::new();
                while Instant::now() < deadline {
                    let started = Instant::now();
                    store.record(facts(n)).await.expect("record");
                    latencies.push(started.elapsed());
                }
                latencies
            })
        })
        .collect();
    let mut all = Vec::new();
    for task in tasks {
        all.extend(task.await.expect("recorder"));
    }
    (all.len(), all)
}

fn percentile(sorted: &[Duration], q: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let at = ((sorted.len() - 1) as f64 * q).round() as usize;
    sorted[at.min(sorted.len() - 1)]
}

fn event_size() -> usize {
    im1_fhir::audit::audit_event("00000000-0000-4000-8000-000000000000", &facts(0))
        .to_string()
        .len()
}

/// A clinician's Observation search through EMIS: a typical, fully populated event.
fn facts(n: usize) -> AuditFacts {
    let now = time::OffsetDateTime::now_utc();
    AuditFacts {
        request_id: format!("bench-{n}"),
        started: now - time::Duration::milliseconds(40),
        ended: now,
        method: "GET".into(),
        interaction: "search-type".into(),
        resource_type: Some("Observation".into()),
        resource_id: None,
        query: Some(format!("patient=Patient/p{n}&category=vital-signs&_count=50")),
        who: Some(Who {
            subject: format!("clinician-{n}"),
            role: "clinician".into(),
            client_id: "gp-app".into(),
            rbac_role: Some("R8000".into()),
            organisations: vec!["A12345".into()],
            token_id: "3f1c2a9e-5d1b-4f7a-9c3e-2b8d6e4a1f00".into(),
        }),
        client_address: Some("10.0.0.7".into()),
        patients: vec![PatientRef {
            reference: Some(format!("Patient/p{n}")),
            nhs_number: Some("9000000009".into()),
        }],
        status: 200,
        outcome_code: None,
        outcome_text: None,
        native_calls: vec![NativeCallFact {
            supplier: "emis".into(),
            practice: "A12345".into(),
            operation: "GET /patients/{id}/observations".into(),
            status: Some(200),
            millis: 31,
        }],
        cache: Default::default(),
        practices: vec!["A12345".into()],
    }
}
