//! Load benchmark: the Medicus simulator (throttle off, `jti` replay check off so one pre-signed token can be
//! reused) on a one-thread runtime, hammered over keep-alive connections with a small record-section read
//! (`journal?types=allergy-intolerance`). Prints requests/s and p50/p99 latency.
//!
//! Besides wall-clock throughput it reports requests per CPU-second of the server thread (from
//! `/proc/thread-self/stat`), which is the one-core capacity even when other processes share the machine.
//!
//! `cargo bench -p im1-sim-medicus --bench load` (env `SECS`, `CONNS` to change the defaults 5 and 16).

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::TokioIo;
use im1_sim::SimOptions;
use im1_sim_medicus::{linkage_credentials, serve, MedicusConfig};
use jsonwebtoken::{encode, Algorithm, EncodingKey, Header};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

const KEY: &[u8] = include_bytes!("../../../keys/demo-medicus-app.key.pem");

fn env(name: &str, default: u64) -> u64 {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

fn token() -> String {
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    let claims =
        serde_json::json!({"iss": "im1-fhir-demo-app", "aud": "y90003", "iat": now, "exp": now + 300, "jti": "bench"});
    let mut header = Header::new(Algorithm::RS256);
    header.typ = Some("JWT".into());
    let key = EncodingKey::from_rsa_pem(KEY).expect("demo key");
    encode(&header, &claims, &key).expect("sign")
}

/// One keep-alive connection sending requests back to back until `until`; returns latencies in µs.
async fn client(addr: SocketAddr, path: String, auth: String, until: Instant) -> Vec<u32> {
    let stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let _ = stream.set_nodelay(true);
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .expect("handshake");
    tokio::spawn(conn);
    let mut lat = Vec::new();
    while Instant::now() < until {
        let req = http::Request::get(&path)
            .header("host", "sim")
            .header("authorization", &auth)
            .body(Empty::<Bytes>::new())
            .expect("request");
        let t = Instant::now();
        sender.ready().await.expect("connection ready");
        let resp = sender.send_request(req).await.expect("send");
        assert_eq!(resp.status(), 200);
        let _ = resp.into_body().collect().await.expect("body");
        lat.push(t.elapsed().as_micros() as u32);
    }
    lat
}

/// CPU time (user + system) of the calling thread, in seconds (Linux; 0 elsewhere).
fn thread_cpu_secs() -> f64 {
    let stat = std::fs::read_to_string("/proc/thread-self/stat").unwrap_or_default();
    // Fields after the command name (which is in parentheses): utime and stime are fields 14 and 15.
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| fields.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    (ticks(11) + ticks(12)) / 100.0
}

fn main() {
    let secs = env("SECS", 5);
    let conns = env("CONNS", 16);
    let opts = SimOptions {
        throttle: false,
        today: Some(time::macros::date!(2025 - 03 - 04)),
        ..SimOptions::default()
    };
    let world = opts.world();
    let config = MedicusConfig {
        throttle: false,
        reject_replayed_jti: false,
        ..MedicusConfig::default()
    };
    let pid = linkage_credentials(&world, &config)
        .into_iter()
        .find(|c| c.nhs_number == "9000000009")
        .map(|c| c.patient_id)
        .expect("patient");
    // The server gets one thread of its own: the figure is for one core.
    let (tx, rx) = std::sync::mpsc::channel();
    let (cpu_ask, mut cpu_asked) = tokio::sync::mpsc::unbounded_channel::<std::sync::mpsc::Sender<f64>>();
    let server = std::thread::Builder::new().name("medicus-server".into());
    let _ = server.spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        rt.block_on(async move {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
            let handle = serve(listener, world, config).await.expect("serve");
            tx.send(handle.addr()).expect("addr");
            // Answer CPU-time questions from the server's own thread.
            while let Some(reply) = cpu_asked.recv().await {
                let _ = reply.send(thread_cpu_secs());
            }
            drop(handle);
        });
    });
    let addr = rx.recv().expect("server started");
    let path = format!("/medicus/y90003/transactional-api/v1/patient/{pid}/journal?types=allergy-intolerance");
    let auth = format!("Bearer {}", token());
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("runtime");
    // Warm up, then measure.
    rt.block_on(client(
        addr,
        path.clone(),
        auth.clone(),
        Instant::now() + Duration::from_millis(300),
    ));
    let server_cpu = || {
        let (tx, rx) = std::sync::mpsc::channel();
        cpu_ask.send(tx).expect("ask");
        rx.recv().expect("cpu")
    };
    let cpu_before = server_cpu();
    let start = Instant::now();
    let until = start + Duration::from_secs(secs);
    let mut lat: Vec<u32> = rt.block_on(async {
        let tasks: Vec<_> = (0..conns)
            .map(|_| tokio::spawn(client(addr, path.clone(), auth.clone(), until)))
            .collect();
        let mut all = Vec::new();
        for t in tasks {
            all.extend(t.await.expect("client"));
        }
        all
    });
    let elapsed = start.elapsed().as_secs_f64();
    let cpu = (server_cpu() - cpu_before).max(0.01);
    lat.sort_unstable();
    let pct = |p: f64| {
        lat.get(((lat.len() as f64 * p) as usize).min(lat.len().saturating_sub(1)))
            .copied()
            .unwrap_or(0)
    };
    println!(
        "medicus load: {} requests in {elapsed:.1}s over {conns} keep-alive connections: {:.0} req/s, p50 {} µs, p99 {} µs; \
         server thread used {cpu:.2} CPU-s = {:.0} req per CPU-second",
        lat.len(),
        lat.len() as f64 / elapsed,
        pct(0.50),
        pct(0.99),
        lat.len() as f64 / cpu
    );
}
