//! HTTP/1.1, HTTP/2 and TLS, and what happens when the native side is down or slow (issue 3).
use crate::common;

use common::{outcome, token, Proxy};
use im1_fhir::auth::Role;
use im1_fhir::config::secret::Secret;
use im1_fhir::config::{Credentials, EmisCredentials, NativeConfig, PracticeConfig, ServerConfig, Supplier};
use serde_json::Value;
use std::time::{Duration, Instant};

fn emis_practice(base_url: String) -> PracticeConfig {
    PracticeConfig {
        policy: Default::default(),
        ods: "Y90001".into(),
        supplier: Supplier::Emis,
        base_url,
        credentials: Credentials::Emis(EmisCredentials {
            application_id: "app".into(),
            partner_client_id: "id".into(),
            partner_client_secret: Secret::new("secret"),
            cdb: "50002".into(),
        }),
        pace: Default::default(),
    }
}

const SEARCH: &str = "Patient?identifier=https://fhir.nhs.uk/Id/nhs-number|9000000009";

#[tokio::test]
async fn http2_without_tls_is_served() {
    let proxy = Proxy::start(Vec::new(), Default::default()).await;
    let client = reqwest::Client::builder().http2_prior_knowledge().build().unwrap();
    let response = client.get(proxy.url("metadata")).send().await.unwrap();
    assert_eq!(response.version(), reqwest::Version::HTTP_2);
    assert_eq!(response.status(), 200);
    // Headers past the limit are an OperationOutcome over HTTP/2 too, not the protocol's own refusal; under
    // it they are served, though past HTTP/2's usual 16 KiB.
    let padded = |kib: usize| {
        client
            .get(proxy.url("metadata"))
            .header("x-padding", "b".repeat(kib * 1024))
            .send()
    };
    let body = outcome(padded(40).await.unwrap(), 431).await;
    assert_eq!(body["issue"][0]["details"]["coding"][0]["code"], "IM1-1119");
    let response = padded(20).await.unwrap();
    assert_eq!(response.status(), 200);
    proxy.stop().await;
}

#[tokio::test]
async fn tls_with_http2_and_http1() {
    im1_fhir::runtime::install_crypto();
    let cert = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
    let cert_der = cert.cert.der().clone();
    let key = rustls_pki_types::PrivateKeyDer::Pkcs8(cert.signing_key.serialize_der().into());
    let acceptor = im1_fhir::server::listener::tls_acceptor_from(vec![cert_der.clone()], key).unwrap();

    let registry = im1_fhir::mapping::Registry::load(&im1_fhir::mapping::Source::Embedded).unwrap();
    let state = im1_fhir::runtime::build_state(im1_fhir::runtime::Parts {
        registry: std::sync::Arc::new(registry),
        practices: Vec::new(),
        native: NativeConfig::default(),
        issuers: vec![im1_fhir::auth::token::Issuer::demo().unwrap()],
        secret_key: b"test-secret-key-of-at-least-32-bytes".to_vec(),
        linkage: Default::default(),
        public_base_url: None,
        max_body_bytes: 1024 * 1024,
        body_timeout_ms: 10_000,
        audit: None,
        client_rate: None,
        cache: Default::default(),
        max_requests_in_flight: im1_fhir::config::ServerConfig::default().max_requests_in_flight,
    })
    .unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let running = im1_fhir::runtime::start(state, listener, Some(acceptor), &ServerConfig::default(), false).unwrap();

    let root = reqwest::Certificate::from_der(&cert_der).unwrap();
    for http2 in [true, false] {
        let mut builder = reqwest::Client::builder()
            .tls_certs_only([root.clone()])
            .resolve("localhost", ([127, 0, 0, 1], port).into());
        if !http2 {
            builder = builder.http1_only();
        }
        let client = builder.build().unwrap();
        let response = client
            .get(format!("https://localhost:{port}/fhir/metadata"))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        let version = response.version();
        // Links are made with the scheme the request came in by.
        let statement: serde_json::Value = response.json().await.unwrap();
        let url = statement["implementation"]["url"].as_str().unwrap().to_string();
        assert_eq!(url, format!("https://localhost:{port}/fhir"), "http2: {http2}");
        let expected = if http2 {
            reqwest::Version::HTTP_2
        } else {
            reqwest::Version::HTTP_11
        };
        assert_eq!(version, expected);
    }
    running.shutdown().await;
}

#[tokio::test]
async fn a_native_system_that_is_down_is_502() {
    // A port that was free a moment ago: nothing listens there.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let proxy = Proxy::start(
        vec![emis_practice(format!("http://127.0.0.1:{port}/emis"))],
        Default::default(),
    )
    .await;
    let t = token(Role::Clinician, &["Y90001"]);
    let body = outcome(proxy.get(SEARCH, &t).await, 502).await;
    assert_eq!(body["issue"][0]["details"]["coding"][0]["code"], "IM1-4003");
    // Still serving.
    assert_eq!(
        proxy.client.get(proxy.url("metadata")).send().await.unwrap().status(),
        200
    );
    proxy.stop().await;
}

/// A native system that accepts connections and never answers: its address, and the task holding them.
async fn silent_native() -> (std::net::SocketAddr, tokio::task::JoinHandle<()>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let silent = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((stream, _)) = listener.accept().await {
            held.push(stream);
        }
    });
    (addr, silent)
}

/// The proxy in front of one EMIS practice at `addr`, with these native settings.
async fn proxy_before(addr: std::net::SocketAddr, native: NativeConfig) -> Proxy {
    Proxy::start_with(
        vec![emis_practice(format!("http://{addr}/emis"))],
        Default::default(),
        native,
        ServerConfig::default(),
    )
    .await
}

#[tokio::test]
async fn a_native_system_that_does_not_answer_is_504_once_the_deadline_passes() {
    let (addr, silent) = silent_native().await;
    let native = NativeConfig {
        timeout_ms: 300,
        retries: 2,
        max_in_flight: 2,
        breaker: Default::default(),
    };
    let proxy = proxy_before(addr, native).await;
    let t = token(Role::Clinician, &["Y90001"]);
    let started = Instant::now();
    let body = outcome(proxy.get(SEARCH, &t).await, 504).await;
    assert_eq!(body["issue"][0]["code"], "timeout");
    // Loosely bounded: the deadline, not a hang (a timed-out call is not retried).
    assert!(started.elapsed() < Duration::from_secs(5), "{:?}", started.elapsed());
    proxy.stop().await;
    silent.abort();
}

/// At shutdown the server stops listening at once: a new connection is refused (a load balancer moves on)
/// rather than left unanswered in the backlog while in-flight requests finish.
#[tokio::test]
async fn a_draining_server_refuses_new_connections_while_its_requests_finish() {
    let (addr, silent) = silent_native().await;
    let native = NativeConfig {
        timeout_ms: 1500,
        retries: 0,
        max_in_flight: 2,
        breaker: Default::default(),
    };
    let proxy = proxy_before(addr, native).await;
    let served: std::net::SocketAddr = proxy
        .base
        .trim_start_matches("http://")
        .trim_end_matches("/fhir")
        .parse()
        .unwrap();
    let t = token(Role::Clinician, &["Y90001"]);
    let in_flight = {
        let (client, url) = (proxy.client.clone(), proxy.url(SEARCH));
        tokio::spawn(async move { client.get(url).bearer_auth(t).send().await.unwrap().status().as_u16() })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    let stopping = tokio::spawn(proxy.stop());
    tokio::time::sleep(Duration::from_millis(300)).await;
    let connect = tokio::time::timeout(Duration::from_secs(2), tokio::net::TcpStream::connect(served)).await;
    assert!(
        matches!(connect, Ok(Err(_))),
        "a new connection is refused at once: {connect:?}"
    );
    // The request in flight still gets its answer (its native call's deadline), then the server stops.
    assert_eq!(in_flight.await.unwrap(), 504);
    stopping.await.unwrap();
    silent.abort();
}

/// Sends `sent` on a new connection, then reads what the server says until it closes the connection (which it
/// must within ten seconds).
async fn send_and_wait_for_close(addr: std::net::SocketAddr, sent: &[u8]) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut slow = tokio::net::TcpStream::connect(addr).await.unwrap();
    slow.write_all(sent).await.unwrap();
    let started = Instant::now();
    let mut answer = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(10), slow.read_to_end(&mut answer)).await;
    let sent = String::from_utf8_lossy(&sent[..sent.len().min(60)]);
    assert!(read.is_ok(), "{sent}: still open after {:?}", started.elapsed());
    String::from_utf8_lossy(&answer).into_owned()
}

#[tokio::test]
async fn a_body_that_does_not_arrive_in_time_is_a_408() {
    let server = ServerConfig {
        body_timeout_ms: 300,
        ..common::test_server()
    };
    let proxy = Proxy::start_with(Vec::new(), Default::default(), NativeConfig::default(), server).await;
    let addr = proxy.running.as_ref().unwrap().addr;
    let t = token(Role::Clinician, &["Y90001"]);
    // A Parameters body announced at 100 bytes, of which 10 come.
    let head = format!(
        "POST /fhir/ConceptMap/$translate HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer {t}\r\n\
         Content-Type: application/fhir+json\r\nContent-Length: 100\r\n\r\n{{\"resource"
    );
    let answer = send_and_wait_for_close(addr, head.as_bytes()).await;
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    let outcome: Value = serde_json::from_str(answer.split("\r\n\r\n").nth(1).unwrap_or_default()).unwrap();
    assert_eq!(outcome["issue"][0]["code"], "timeout");
    assert_eq!(outcome["issue"][0]["details"]["coding"][0]["code"], "IM1-1117");
    // The refusal is audited like any other.
    assert_eq!(proxy.audit.count().unwrap(), 1);
    proxy.stop().await;
}

/// RFC 9112 §3.2: an HTTP/1.1 request without a Host, with two, or with one that is not a host and port is a
/// 400; a crafted Host cannot reshape the links the server makes from it.
#[tokio::test]
async fn the_host_is_a_host_or_the_request_is_refused() {
    let proxy = Proxy::start_with(
        Vec::new(),
        Default::default(),
        NativeConfig::default(),
        common::test_server(),
    )
    .await;
    let addr = proxy.running.as_ref().unwrap().addr;
    for head in [
        "GET /fhir/metadata HTTP/1.1\r\n",
        "GET /fhir/metadata HTTP/1.1\r\nHost: a.example\r\nHost: b.example\r\n",
        "GET /fhir/metadata HTTP/1.1\r\nHost: a.example/fhir/Patient/x?\r\n",
        "GET /fhir/metadata HTTP/1.1\r\nHost: user@a.example\r\n",
        "GET /fhir/metadata HTTP/1.1\r\nHost: \r\n",
    ] {
        let answer = send_and_wait_for_close(addr, format!("{head}Connection: close\r\n\r\n").as_bytes()).await;
        assert!(answer.starts_with("HTTP/1.1 400"), "{head:?}: {answer}");
        assert!(answer.contains("IM1-1010"), "{head:?}: {answer}");
    }
    let answer = send_and_wait_for_close(
        addr,
        b"GET /fhir/metadata HTTP/1.1\r\nHost: fhir.example:8443\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(answer.contains("http://fhir.example:8443/fhir"), "{answer}");
    proxy.stop().await;
}

#[tokio::test]
async fn a_client_that_never_finishes_its_headers_is_let_go() {
    let server = ServerConfig {
        header_timeout_ms: 300,
        ..common::test_server()
    };
    let proxy = Proxy::start_with(Vec::new(), Default::default(), NativeConfig::default(), server).await;
    // Half a request, nothing at all, half the HTTP/2 preface: each connection is closed, not held open.
    let addr = proxy.running.as_ref().unwrap().addr;
    for sent in [
        &b"GET /fhir/metadata HTTP/1.1\r\nHost: localhost\r\nAccept: appl"[..],
        &b""[..],
        &b"PRI * HTTP/2.0\r\n"[..],
    ] {
        let answer = send_and_wait_for_close(addr, sent).await;
        assert!(answer.is_empty() || answer.starts_with("HTTP/1.1 408"), "{answer}");
    }
    // A whole request is served as ever.
    assert_eq!(
        proxy.client.get(proxy.url("metadata")).send().await.unwrap().status(),
        200
    );
    // An HTTP/2 connection that asks nothing (its preface and settings, then only what keeps it open) is closed
    // as an idle HTTP/1.1 one is, rather than held for ever.
    let settings = [0u8, 0, 0, 4, 0, 0, 0, 0, 0];
    let started = Instant::now();
    send_and_wait_for_close(addr, &[HTTP2_PREFACE, &settings[..]].concat()).await;
    assert!(started.elapsed() < Duration::from_secs(3), "{:?}", started.elapsed());
    proxy.stop().await;
}

const HTTP2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// Past `max_connections`, a new connection is closed as soon as it is accepted: a flood of idle connections
/// cannot take every file descriptor. Once one closes, connections are served again.
#[tokio::test]
async fn connections_past_the_most_the_server_holds_are_closed_at_once() {
    use tokio::io::AsyncReadExt;
    let server = ServerConfig {
        max_connections: 2,
        header_timeout_ms: 10_000,
        ..common::test_server()
    };
    let proxy = Proxy::start_with(Vec::new(), Default::default(), NativeConfig::default(), server).await;
    let addr = proxy.running.as_ref().unwrap().addr;
    let held = [
        tokio::net::TcpStream::connect(addr).await.unwrap(),
        tokio::net::TcpStream::connect(addr).await.unwrap(),
    ];
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut third = tokio::net::TcpStream::connect(addr).await.unwrap();
    let mut nothing = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(2), third.read_to_end(&mut nothing)).await;
    assert!(matches!(read, Ok(Ok(0))), "closed at once: {read:?}");
    drop(held);
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(
        proxy.client.get(proxy.url("metadata")).send().await.unwrap().status(),
        200
    );
    proxy.stop().await;
}
