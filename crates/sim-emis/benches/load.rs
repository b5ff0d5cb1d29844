//! Load benchmark: the EMIS simulator with throttling off, a small record-section read (`itemType=Allergies`)
//! over keep-alive connections on 127.0.0.1. Prints requests/s and p50/p99 latency.
//!
//! `cargo bench -p im1-sim-emis --bench load` (env `EMIS_BENCH_SECS`, `EMIS_BENCH_CONNS`, `EMIS_BENCH_THREADS`).

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use im1_sim::SimOptions;
use im1_sim_emis::{linkage_credentials, EmisConfig};
use serde_json::{json, Value};
use std::net::SocketAddr;
use std::time::{Duration, Instant};
use tokio::net::{TcpListener, TcpStream};

type Sender = hyper::client::conn::http1::SendRequest<Full<Bytes>>;

async fn connect(addr: SocketAddr) -> Sender {
    let stream = TcpStream::connect(addr).await.expect("connect");
    let _ = stream.set_nodelay(true);
    let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .expect("handshake");
    tokio::spawn(async move {
        let _ = conn.await;
    });
    sender
}

async fn call(s: &mut Sender, method: &str, path: &str, headers: &[(&str, &str)], body: Option<Value>) -> (u16, Bytes) {
    let mut b = http::Request::builder()
        .method(method)
        .uri(path)
        .header("host", "127.0.0.1");
    for (k, v) in headers {
        b = b.header(*k, *v);
    }
    let body = body.map(|v| serde_json::to_vec(&v).expect("json")).unwrap_or_default();
    let req = b.body(Full::new(Bytes::from(body))).expect("request");
    s.ready().await.expect("ready");
    let resp = s.send_request(req).await.expect("send");
    let status = resp.status().as_u16();
    let bytes = resp.into_body().collect().await.expect("body").to_bytes();
    (status, bytes)
}

fn env(name: &str, default: u64) -> u64 {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

fn main() {
    let threads = env("EMIS_BENCH_THREADS", 2) as usize;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(threads)
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(run(threads));
}

async fn run(threads: usize) {
    let secs = env("EMIS_BENCH_SECS", 5);
    let conns = env("EMIS_BENCH_CONNS", 16) as usize;
    let world = SimOptions {
        throttle: false,
        today: Some(time::macros::date!(2025 - 03 - 04)),
        ..SimOptions::default()
    }
    .world();
    let config = EmisConfig {
        throttle: false,
        ..EmisConfig::default()
    };
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let handle = im1_sim_emis::serve(listener, world.clone(), config.clone()).await;
    let addr = handle.addr();
    let cred = linkage_credentials(&world, &config)
        .into_iter()
        .find(|c| c.nhs_number == "9000000009")
        .expect("credentials");
    let app = config.application_id.clone();
    let base = [("X-API-ApplicationId", app.as_str()), ("X-API-Version", "2.1.0.0")];
    let mut s = connect(addr).await;
    let (_, eus) = call(&mut s, "POST", "/emis/pfs/sessions/endusersession", &base, None).await;
    let eus: Value = serde_json::from_slice(&eus).expect("json");
    let eus = eus["EndUserSessionId"].as_str().expect("eus").to_string();
    let mut h = base.to_vec();
    h.push(("X-API-EndUserSessionId", &eus));
    let (_, linked) = call(
        &mut s,
        "POST",
        "/emis/pfs/me/applications",
        &h,
        Some(json!({"Surname": cred.surname, "DateOfBirth": cred.date_of_birth,
            "LinkageDetails": {"AccountId": cred.account_id, "LinkageKey": cred.linkage_key,
                               "NationalPracticeCode": cred.national_practice_code}})),
    )
    .await;
    let linked: Value = serde_json::from_slice(&linked).expect("json");
    let (_, session) = call(
        &mut s,
        "POST",
        "/emis/pfs/sessions",
        &h,
        Some(json!({"AccessIdentityGuid": linked["AccessIdentityGuid"], "NationalPracticeCode": "Y90001"})),
    )
    .await;
    let session: Value = serde_json::from_slice(&session).expect("json");
    let sid = session["SessionId"].as_str().expect("sid").to_string();
    let token = session["UserPatientLinks"][0]["UserPatientLinkToken"]
        .as_str()
        .expect("token")
        .to_string();
    let path = format!("/emis/pfs/record?userPatientLinkToken={token}&itemType=Allergies");
    let (status, body) = {
        let mut hh = h.clone();
        hh.push(("X-API-SessionId", &sid));
        call(&mut s, "GET", &path, &hh, None).await
    };
    assert_eq!(status, 200);
    println!(
        "emis load: GET record?itemType=Allergies ({} bytes), {conns} keep-alive connections, {threads} runtime threads, {secs} s",
        body.len()
    );

    let deadline = Instant::now() + Duration::from_secs(secs);
    let mut tasks = Vec::new();
    for _ in 0..conns {
        let (app, eus, sid, path) = (app.clone(), eus.clone(), sid.clone(), path.clone());
        tasks.push(tokio::spawn(async move {
            let mut s = connect(addr).await;
            let headers = [
                ("X-API-ApplicationId", app.as_str()),
                ("X-API-Version", "2.1.0.0"),
                ("X-API-EndUserSessionId", eus.as_str()),
                ("X-API-SessionId", sid.as_str()),
            ];
            let mut lat = Vec::new();
            let mut errors = 0u64;
            while Instant::now() < deadline {
                let t = Instant::now();
                let (status, _) = call(&mut s, "GET", &path, &headers, None).await;
                if status != 200 {
                    errors += 1;
                }
                lat.push(t.elapsed());
            }
            (lat, errors)
        }));
    }
    let started = Instant::now();
    let mut all = Vec::new();
    let mut errors = 0;
    for t in tasks {
        let (lat, e) = t.await.expect("task");
        all.extend(lat);
        errors += e;
    }
    let elapsed = started.elapsed().as_secs_f64();
    all.sort();
    let pct = |p: f64| all[((all.len() as f64 * p) as usize).min(all.len().saturating_sub(1))];
    println!(
        "requests: {}  errors: {errors}  throughput: {:.0} req/s  p50: {:?}  p99: {:?}",
        all.len(),
        all.len() as f64 / elapsed,
        pct(0.50),
        pct(0.99)
    );
    handle.shutdown().await;
}
