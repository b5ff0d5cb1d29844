//! The shared simulator plumbing over real HTTP on 127.0.0.1: every fault mode, the control path, the
//! throttling helpers, graceful shutdown and the framed TCP server.

use bytes::Bytes;
use im1_sim::common::framing::{read_frame, serve_framed, write_frame, FrameHandler, FrameReply};
use im1_sim::common::throttle::{OneAtATime, RateLimiter};
use im1_sim::common::{
    serve, serve_with, FaultRates, Handler, InjectedReply, RequestContext, ServeConfig, SimHandle, SimRequest,
    SimResponse,
};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// A test dialect: `GET /echo` answers JSON, `POST /write` commits a write, `/limited` is rate limited per
/// `x-app`, `/single` allows one request at a time per `x-suid`.
struct TestDialect {
    handled: Arc<AtomicU64>,
    committed: Arc<AtomicU64>,
    limiter: RateLimiter,
    single: OneAtATime,
}

fn reply(status: u16, body: &str) -> SimResponse {
    let mut r = http::Response::new(Bytes::from(body.to_string()));
    *r.status_mut() = http::StatusCode::from_u16(status).unwrap_or(http::StatusCode::OK);
    r.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/json"),
    );
    r
}

impl Handler for TestDialect {
    async fn handle(&self, req: SimRequest, cx: RequestContext) -> SimResponse {
        self.handled.fetch_add(1, Ordering::SeqCst);
        let header = |name: &str| {
            req.headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("")
                .to_string()
        };
        match req.uri().path() {
            "/write" => {
                self.committed.fetch_add(1, Ordering::SeqCst);
                cx.record_write();
                reply(201, r#"{"id":"W1","status":"committed"}"#)
            }
            "/limited" => match self.limiter.check(&header("x-app")) {
                Ok(()) => reply(200, r#"{"ok":true}"#),
                Err(t) => {
                    let mut r = reply(429, r#"{"Message":"Rate limit exceeded"}"#);
                    r.headers_mut()
                        .insert(http::header::RETRY_AFTER, http::HeaderValue::from(t.retry_after_secs));
                    r
                }
            },
            "/single" => {
                let Some(_guard) = self.single.try_acquire(&header("x-suid")) else {
                    return reply(409, r#"{"error":12}"#);
                };
                tokio::time::sleep(Duration::from_millis(300)).await;
                reply(200, r#"{"ok":true}"#)
            }
            _ => reply(
                200,
                r#"{"records":[{"id":1,"term":"Asthma"},{"id":2,"term":"Body weight"}]}"#,
            ),
        }
    }

    fn fault_reply(&self, reply_kind: InjectedReply, _req: &SimRequest) -> SimResponse {
        match reply_kind {
            InjectedReply::ExpiredSession => reply(401, r#"{"Message":"Missing or invalid EndUserSessionId"}"#),
            other => im1_sim::common::server::default_fault_reply(other),
        }
    }
}

struct Sim {
    handle: SimHandle,
    handled: Arc<AtomicU64>,
    committed: Arc<AtomicU64>,
}

async fn start(config: ServeConfig) -> Sim {
    let handled = Arc::new(AtomicU64::new(0));
    let committed = Arc::new(AtomicU64::new(0));
    let dialect = TestDialect {
        handled: handled.clone(),
        committed: committed.clone(),
        limiter: RateLimiter::new(5, true).with_retry_after(2),
        single: OneAtATime::new(true),
    };
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    Sim {
        handle: serve_with(listener, dialect, config),
        handled,
        committed,
    }
}

#[derive(Debug)]
struct Raw {
    /// 0 when the connection closed without a status line.
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Raw {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// A minimal HTTP/1.1 client that shows exactly what came over the wire (including nothing).
async fn send(sim: &SimHandle, method: &str, path: &str, headers: &[(&str, &str)], body: &str) -> Raw {
    let mut stream = TcpStream::connect(sim.addr()).await.expect("connect");
    let mut req = format!(
        "{method} {path} HTTP/1.1\r\nHost: sim\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    req.push_str(body);
    stream.write_all(req.as_bytes()).await.expect("write");
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        match stream.read(&mut chunk).await {
            Ok(0) | Err(_) => break,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
    let Some(split) = buf.windows(4).position(|w| w == b"\r\n\r\n") else {
        return Raw {
            status: 0,
            headers: Vec::new(),
            body: buf,
        };
    };
    let head = String::from_utf8_lossy(&buf[..split]).to_string();
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let headers = lines
        .filter_map(|l| {
            l.split_once(':')
                .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        })
        .collect();
    Raw {
        status,
        headers,
        body: buf[split + 4..].to_vec(),
    }
}

async fn stats(sim: &SimHandle) -> serde_json::Value {
    let raw = send(sim, "GET", "/_sim/stats", &[], "").await;
    assert_eq!(raw.status, 200);
    serde_json::from_slice(&raw.body).expect("stats json")
}

#[tokio::test]
async fn plain_requests_are_counted_in_process_and_over_http() {
    let sim = start(ServeConfig::default()).await;
    assert!(sim.handle.base_url().starts_with("http://127.0.0.1:"));
    let r = send(&sim.handle, "GET", "/echo", &[], "").await;
    assert_eq!(r.status, 200);
    assert!(serde_json::from_slice::<serde_json::Value>(&r.body).is_ok());
    let w = send(&sim.handle, "POST", "/write", &[], "{}").await;
    assert_eq!(w.status, 201);
    let s = stats(&sim.handle).await;
    assert_eq!(s["calls"], 2, "the stats call itself is not counted");
    assert_eq!(s["writes_committed"], 1);
    assert_eq!(s["by_route"]["GET /echo"]["calls"], 1);
    assert_eq!(s["by_route"]["POST /write"]["writes_committed"], 1);
    assert_eq!(sim.handle.stats().calls(), 2);
    assert_eq!(send(&sim.handle, "DELETE", "/_sim/stats", &[], "").await.status, 204);
    assert_eq!(sim.handle.stats().calls(), 0);
    sim.handle.shutdown().await;
}

#[tokio::test]
async fn server_errors_throttling_and_expired_sessions_skip_the_handler() {
    let sim = start(ServeConfig {
        retry_after_secs: 3,
        ..ServeConfig::default()
    })
    .await;
    let h = &sim.handle;
    assert_eq!(send(h, "GET", "/echo", &[("X-Sim-Fault", "5xx")], "").await.status, 500);
    assert_eq!(send(h, "GET", "/echo", &[("X-Sim-Fault", "503")], "").await.status, 503);
    let t = send(h, "GET", "/echo", &[("X-Sim-Fault", "429")], "").await;
    assert_eq!((t.status, t.header("retry-after")), (429, Some("3")));
    let e = send(h, "GET", "/echo", &[("X-Sim-Fault", "expired-session")], "").await;
    assert_eq!(e.status, 401);
    assert!(
        String::from_utf8_lossy(&e.body).contains("EndUserSessionId"),
        "the dialect renders it"
    );
    let w = send(h, "POST", "/write", &[("X-Sim-Fault", "500")], "{}").await;
    assert_eq!(w.status, 500);
    assert_eq!(sim.handled.load(Ordering::SeqCst), 0);
    assert_eq!(sim.committed.load(Ordering::SeqCst), 0);
    let s = stats(h).await;
    assert_eq!(
        (
            s["calls"].as_u64(),
            s["faults"]["500"].as_u64(),
            s["faults"]["429"].as_u64()
        ),
        (Some(5), Some(2), Some(1))
    );
    assert_eq!(
        send(h, "GET", "/echo", &[("X-Sim-Fault", "explode")], "").await.status,
        400
    );
}

#[tokio::test]
async fn drop_closes_without_reply_and_commits_nothing() {
    let sim = start(ServeConfig::default()).await;
    let r = send(&sim.handle, "POST", "/write", &[("X-Sim-Fault", "drop")], "{}").await;
    assert_eq!(r.status, 0);
    assert!(r.body.is_empty());
    assert_eq!(sim.committed.load(Ordering::SeqCst), 0);
    assert_eq!(sim.handle.stats().writes_committed(), 0);
}

#[tokio::test]
async fn drop_after_commit_commits_then_closes_without_reply() {
    let sim = start(ServeConfig::default()).await;
    let r = send(
        &sim.handle,
        "POST",
        "/write",
        &[("X-Sim-Fault", "drop-after-commit")],
        "{}",
    )
    .await;
    assert_eq!(r.status, 0, "no reply: {r:?}");
    assert_eq!(sim.committed.load(Ordering::SeqCst), 1);
    assert_eq!(stats(&sim.handle).await["writes_committed"], 1);
}

#[tokio::test]
async fn truncate_sends_less_than_the_declared_length() {
    let sim = start(ServeConfig::default()).await;
    let whole = send(&sim.handle, "GET", "/echo", &[], "").await;
    let r = send(&sim.handle, "GET", "/echo", &[("X-Sim-Fault", "truncate")], "").await;
    assert_eq!(r.status, 200);
    let declared: usize = r
        .header("content-length")
        .and_then(|v| v.parse().ok())
        .expect("content-length");
    assert_eq!(declared, whole.body.len());
    assert!(r.body.len() < declared, "{} of {declared} bytes", r.body.len());
    assert!(!r.body.is_empty());
}

#[tokio::test]
async fn malformed_body_does_not_parse() {
    let sim = start(ServeConfig::default()).await;
    let r = send(&sim.handle, "GET", "/echo", &[("X-Sim-Fault", "malformed")], "").await;
    assert_eq!(r.status, 200);
    assert!(serde_json::from_slice::<serde_json::Value>(&r.body).is_err());
    let w = send(&sim.handle, "POST", "/write", &[("X-Sim-Fault", "malformed")], "{}").await;
    assert_eq!(w.status, 201);
    assert_eq!(sim.committed.load(Ordering::SeqCst), 1, "the write still committed");
}

#[tokio::test]
async fn latency_delays_the_reply() {
    let sim = start(ServeConfig::default()).await;
    let start = Instant::now();
    let r = send(&sim.handle, "GET", "/echo", &[("X-Sim-Fault", "latency=200")], "").await;
    assert_eq!(r.status, 200);
    assert!(start.elapsed() >= Duration::from_millis(200));
    let r = send(&sim.handle, "GET", "/echo", &[("X-Sim-Fault", "latency=50,503")], "").await;
    assert_eq!(r.status, 503);
}

#[tokio::test]
async fn fault_rates_apply_without_a_header() {
    let config = ServeConfig {
        faults: FaultRates {
            drop: 1.0,
            ..FaultRates::default()
        },
        ..ServeConfig::default()
    };
    let sim = start(config).await;
    for _ in 0..3 {
        assert_eq!(send(&sim.handle, "GET", "/echo", &[], "").await.status, 0);
    }
    assert_eq!(sim.handle.stats().snapshot().faults.get("drop"), Some(&3));
    // A header still wins over the rates.
    assert_eq!(
        send(&sim.handle, "GET", "/echo", &[("X-Sim-Fault", "latency=1")], "")
            .await
            .status,
        200
    );
}

#[tokio::test]
async fn rate_limiter_answers_429_with_retry_after_per_key() {
    let sim = start(ServeConfig::default()).await;
    let mut statuses = Vec::new();
    for _ in 0..8 {
        let r = send(&sim.handle, "GET", "/limited", &[("x-app", "A")], "").await;
        if r.status == 429 {
            assert_eq!(r.header("retry-after"), Some("2"));
        }
        statuses.push(r.status);
    }
    assert_eq!(statuses.iter().filter(|s| **s == 200).count(), 5, "{statuses:?}");
    assert_eq!(statuses.iter().filter(|s| **s == 429).count(), 3);
    assert_eq!(
        send(&sim.handle, "GET", "/limited", &[("x-app", "B")], "").await.status,
        200
    );
}

#[tokio::test]
async fn one_request_at_a_time_per_key() {
    let sim = Arc::new(start(ServeConfig::default()).await);
    let a = {
        let sim = sim.clone();
        tokio::spawn(async move {
            send(&sim.handle, "GET", "/single", &[("x-suid", "s1")], "")
                .await
                .status
        })
    };
    tokio::time::sleep(Duration::from_millis(100)).await;
    let second = send(&sim.handle, "GET", "/single", &[("x-suid", "s1")], "")
        .await
        .status;
    let other = send(&sim.handle, "GET", "/single", &[("x-suid", "s2")], "")
        .await
        .status;
    assert_eq!(a.await.expect("join"), 200);
    assert_eq!((second, other), (409, 200));
    assert_eq!(
        send(&sim.handle, "GET", "/single", &[("x-suid", "s1")], "")
            .await
            .status,
        200,
        "free again"
    );
}

#[tokio::test]
async fn shutdown_lets_open_requests_finish_then_refuses_connections() {
    let sim = start(ServeConfig::default()).await;
    let addr = sim.handle.addr();
    let mut stream = TcpStream::connect(addr).await.expect("connect");
    stream
        .write_all(b"GET /echo HTTP/1.1\r\nHost: sim\r\nConnection: close\r\nX-Sim-Fault: latency=300\r\n\r\n")
        .await
        .expect("write");
    tokio::time::sleep(Duration::from_millis(50)).await;
    sim.handle.shutdown().await;
    let mut buf = Vec::new();
    let _ = stream.read_to_end(&mut buf).await;
    assert!(buf.starts_with(b"HTTP/1.1 200"), "{}", String::from_utf8_lossy(&buf));
    assert!(TcpStream::connect(addr).await.is_err());
}

#[tokio::test]
async fn serve_with_defaults_works_with_a_closure_free_handler() {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let handle = serve(
        listener,
        TestDialect {
            handled: Arc::default(),
            committed: Arc::default(),
            limiter: RateLimiter::new(1, false),
            single: OneAtATime::new(false),
        },
    );
    for _ in 0..5 {
        assert_eq!(
            send(&handle, "GET", "/limited", &[("x-app", "A")], "").await.status,
            200,
            "throttle off"
        );
    }
    handle.shutdown().await;
}

struct Echo;

impl FrameHandler for Echo {
    async fn handle(&self, frame: String, cx: RequestContext) -> FrameReply {
        if frame.contains("Close") {
            return FrameReply::Close;
        }
        if frame.contains("File") {
            cx.record_write();
        }
        FrameReply::Reply(format!("<Reply>{frame}</Reply>"))
    }

    fn route(&self, frame: &str) -> String {
        if frame.contains("File") {
            "FileObservation".into()
        } else {
            "Other".into()
        }
    }
}

#[tokio::test]
async fn framed_server_round_trips_frames() {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let handle = serve_framed(listener, Echo);
    assert!(handle.base_url().starts_with("tcp://127.0.0.1:"));
    let mut stream = TcpStream::connect(handle.addr()).await.expect("connect");
    write_frame(&mut stream, "<Ping/>").await.expect("write");
    assert_eq!(
        read_frame(&mut stream).await.expect("read").as_deref(),
        Some("<Reply><Ping/></Reply>")
    );
    write_frame(&mut stream, "<File/>").await.expect("write");
    assert!(read_frame(&mut stream).await.expect("read").is_some());
    write_frame(&mut stream, "<Close/>").await.expect("write");
    assert_eq!(read_frame(&mut stream).await.ok().flatten(), None);
    let s = handle.stats().snapshot();
    assert_eq!((s.calls, s.writes_committed), (3, 1));
    assert_eq!(s.by_route.get("FileObservation").map(|r| r.writes_committed), Some(1));
    handle.shutdown().await;
}
