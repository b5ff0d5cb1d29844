//! Accepts connections (plain or TLS with rustls; HTTP/1.1 and HTTP/2 on either) and serves the stack on
//! each, until shutdown; then stops accepting and lets in-flight requests finish.

use crate::server::ResponseBody;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::service::TowerToHyperService;
use std::future::Future;
use std::net::SocketAddr;
use std::path::Path;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

/// Builds a TLS acceptor from PEM files, offering HTTP/2 and HTTP/1.1 by ALPN.
pub fn tls_acceptor(cert: &Path, key: &Path) -> Result<TlsAcceptor, String> {
    use rustls_pki_types::pem::PemObject;
    use rustls_pki_types::{CertificateDer, PrivateKeyDer};
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .map_err(|e| format!("cannot read {}: {e}", cert.display()))?
        .collect::<Result<_, _>>()
        .map_err(|e| format!("bad certificate in {}: {e}", cert.display()))?;
    let key = PrivateKeyDer::from_pem_file(key).map_err(|e| format!("cannot read key {}: {e}", key.display()))?;
    tls_acceptor_from(certs, key)
}

pub fn tls_acceptor_from(
    certs: Vec<rustls_pki_types::CertificateDer<'static>>,
    key: rustls_pki_types::PrivateKeyDer<'static>,
) -> Result<TlsAcceptor, String> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| format!("the TLS certificate and key do not fit: {e}"))?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(TlsAcceptor::from(Arc::new(config)))
}

/// What a client speaking HTTP/2 without TLS (prior knowledge) sends first.
const HTTP2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// Whether a plain connection speaks HTTP/2 (its first bytes are the preface) or HTTP/1; `None` when it sends
/// too little to tell within the deadline, or closes. The bytes are peeked, not read: hyper reads them again.
async fn speaks_http2(stream: &tokio::net::TcpStream, deadline: Duration) -> Option<bool> {
    let sniff = async {
        let mut first = [0u8; HTTP2_PREFACE.len()];
        let mut pause = Duration::from_millis(5);
        loop {
            let seen = stream.peek(&mut first).await.ok()?;
            if seen == 0 {
                return None;
            }
            if !HTTP2_PREFACE.starts_with(&first[..seen]) {
                return Some(false);
            }
            if seen == HTTP2_PREFACE.len() {
                return Some(true);
            }
            // Part of the preface so far: peek returns at once until more arrives, so wait a little, longer
            // each time (a client stalled mid-preface would otherwise wake the server every 5 ms until the
            // header deadline).
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(Duration::from_millis(200));
        }
    };
    tokio::time::timeout(deadline, sniff).await.ok().flatten()
}

/// How connections are bounded: how long one may sit without a request before it is closed, and how many may
/// be open at once.
#[derive(Debug, Clone, Copy)]
pub struct ConnectionLimits {
    /// For a request's headers to arrive (HTTP/1.1), and for a connection without a request in flight to stay
    /// open (HTTP/1.1 keep-alive and HTTP/2 alike).
    pub idle: Duration,
    /// Past it a new connection is closed as soon as it is accepted, so a flood of idle connections cannot
    /// take every file descriptor (and with it the audit store's and the native calls').
    pub max_connections: usize,
}

/// Serves until `shutdown` resolves, then drains. A connection that has not sent a request's headers within
/// `limits.idle` (a slow or silent client), or that has had no request in flight for as long (an idle
/// keep-alive, or an HTTP/2 connection kept open with nothing but pings), is closed; the request itself then
/// runs under the stack's own deadline.
pub async fn serve<S, F>(
    listener: TcpListener,
    tls: Option<TlsAcceptor>,
    service: S,
    limits: ConnectionLimits,
    shutdown: F,
    // How long in-flight requests may take to finish once shutdown is asked for.
    drain: Duration,
) where
    S: tower::Service<http::Request<hyper::body::Incoming>, Error = std::convert::Infallible> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Response: Into<http::Response<crate::server::ResponseBody>>,
    F: Future<Output = ()>,
{
    let header_timeout = limits.idle;
    let mut builder = auto::Builder::new(TokioExecutor::new());
    // Without a timer hyper enforces no header deadline at all (it only logs that its default is unused).
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(header_timeout)
        // Past the application's own limit, so that a request over it is answered (and audited) there.
        .max_headers(super::limits::HYPER_MAX_HEADERS);
    // HTTP/2 has no header deadline in hyper: pings find a peer that has gone, and `drive` closes a connection
    // that asks nothing.
    builder
        .http2()
        .timer(TokioTimer::new())
        .keep_alive_interval(Some(Duration::from_secs(30)))
        .keep_alive_timeout(Duration::from_secs(20))
        .max_header_list_size(super::limits::HYPER_MAX_HEADER_LIST);
    // The protocol is chosen here, within the header deadline (ALPN under TLS, the HTTP/2 preface without):
    // hyper's own detection waits for the first bytes with no deadline at all.
    let http1 = builder.clone().http1_only();
    let http2 = builder.http2_only();
    let max_connections = limits.max_connections.max(1);
    let connections = Arc::new(tokio::sync::Semaphore::new(max_connections));
    // Tells every connection to finish its requests and close.
    let (closing, closed) = tokio::sync::watch::channel(false);
    tokio::pin!(shutdown);
    loop {
        let (stream, peer): (tokio::net::TcpStream, SocketAddr) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(pair) => pair,
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let Ok(permit) = connections.clone().try_acquire_owned() else {
            tracing::debug!(%peer, max_connections, "closed: the server holds its most connections");
            continue;
        };
        let _ = stream.set_nodelay(true);
        let activity = Arc::new(Activity::new());
        // Each request carries the connection's peer (see `client_address`).
        let with_peer = tower::util::MapRequest::new(service.clone(), move |mut request: http::Request<_>| {
            request.extensions_mut().insert(super::client_address::Peer(peer.ip()));
            request
        });
        let service = Tracked {
            inner: tower::util::MapResponse::new(with_peer, Into::into),
            activity: activity.clone(),
        };
        let service = TowerToHyperService::new(service);
        let connection = Connection {
            http1: http1.clone(),
            http2: http2.clone(),
            service,
            activity,
            idle: header_timeout,
            closed: closed.clone(),
        };
        let tls = tls.clone();
        tokio::spawn(async move {
            let _permit = permit;
            let result = match tls {
                Some(acceptor) => match tokio::time::timeout(Duration::from_secs(10), acceptor.accept(stream)).await {
                    Ok(Ok(stream)) => {
                        let h2 = stream.get_ref().1.alpn_protocol() == Some(b"h2");
                        connection.drive(h2, TokioIo::new(stream)).await
                    }
                    _ => {
                        tracing::debug!(%peer, "TLS handshake failed");
                        return;
                    }
                },
                None => match speaks_http2(&stream, header_timeout).await {
                    Some(h2) => connection.drive(h2, TokioIo::new(stream)).await,
                    None => {
                        tracing::debug!(%peer, "closed: no request within the header deadline");
                        return;
                    }
                },
            };
            if let Err(e) = result {
                tracing::debug!(%peer, error = %e, "connection ended with an error");
            }
        });
    }
    // Closed now rather than when the drain ends: a new connection is refused at once (load balancers move on)
    // instead of waiting, unanswered, in the backlog of a socket no one accepts from.
    drop(listener);
    tracing::info!("shutting down: draining in-flight requests");
    let _ = closing.send(true);
    // Every connection holds a permit until it ends.
    let all = u32::try_from(max_connections).unwrap_or(u32::MAX);
    if tokio::time::timeout(drain, connections.acquire_many(all))
        .await
        .is_err()
    {
        tracing::warn!("some connections did not finish within the drain time");
    }
}

/// One accepted connection, before its protocol is known: what serving it takes.
struct Connection<S> {
    http1: auto::Builder<TokioExecutor>,
    http2: auto::Builder<TokioExecutor>,
    service: S,
    activity: Arc<Activity>,
    /// How long it may go without a request in flight.
    idle: Duration,
    /// Set when the server shuts down.
    closed: tokio::sync::watch::Receiver<bool>,
}

/// A connection being served. Boxed as `Send` where its types are known, rather than proven so inside the
/// spawned task.
type Driven = Pin<Box<dyn Future<Output = Result<(), Box<dyn std::error::Error + Send + Sync>>> + Send>>;

impl<S, B> Connection<S>
where
    S: hyper::service::Service<http::Request<hyper::body::Incoming>, Response = http::Response<B>> + Send + 'static,
    S::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    S::Future: Send + 'static,
    B: http_body::Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    /// Serves it by HTTP/2 or HTTP/1.1 until it ends: asked to close gracefully (its requests in flight finish
    /// first) when the server shuts down, or when it has had no request in flight for `idle`.
    fn drive<I>(self, h2: bool, io: I) -> Driven
    where
        I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
    {
        let Connection {
            http1,
            http2,
            service,
            activity,
            idle,
            mut closed,
        } = self;
        let builder = if h2 { http2 } else { http1 };
        // Owning what it needs of the builder: nothing borrowed is held across an await.
        let connection = builder.serve_connection(io, service).into_owned();
        Box::pin(async move {
            let mut connection = std::pin::pin!(connection);
            let mut closing = *closed.borrow();
            if closing {
                connection.as_mut().graceful_shutdown();
            }
            // An idle HTTP/2 connection's graceful close waits for the client to answer a ping: one that does
            // not is let go after as long again, unless a request that crossed the close is still in flight
            // (it is served, and the connection let go once it is).
            let mut idle_closed = false;
            loop {
                tokio::select! {
                    result = connection.as_mut() => return result,
                    _ = closed.changed(), if !closing => {
                        connection.as_mut().graceful_shutdown();
                        closing = true;
                    }
                    () = tokio::time::sleep(idle / 4), if !closing => {
                        if activity.idle_for() >= idle {
                            connection.as_mut().graceful_shutdown();
                            (closing, idle_closed) = (true, true);
                        }
                    }
                    () = tokio::time::sleep(idle), if idle_closed => {
                        if !activity.has_in_flight() {
                            return Ok(());
                        }
                    }
                }
            }
        })
    }
}

/// Whether a connection has requests in flight, and since when it has had none.
struct Activity {
    in_flight: std::sync::atomic::AtomicUsize,
    quiet_since: std::sync::Mutex<std::time::Instant>,
}

impl Activity {
    fn new() -> Activity {
        Activity {
            in_flight: std::sync::atomic::AtomicUsize::new(0),
            quiet_since: std::sync::Mutex::new(std::time::Instant::now()),
        }
    }

    fn has_in_flight(&self) -> bool {
        self.in_flight.load(std::sync::atomic::Ordering::Acquire) > 0
    }

    fn idle_for(&self) -> Duration {
        if self.has_in_flight() {
            return Duration::ZERO;
        }
        self.quiet_since
            .lock()
            .map(|since| since.elapsed())
            .unwrap_or(Duration::ZERO)
    }
}

/// A request's place among its connection's, given up when its response's body has been sent (or dropped).
struct InFlight(Arc<Activity>);

impl InFlight {
    fn start(activity: &Arc<Activity>) -> InFlight {
        activity.in_flight.fetch_add(1, std::sync::atomic::Ordering::AcqRel);
        InFlight(activity.clone())
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        if let Ok(mut since) = self.0.quiet_since.lock() {
            *since = std::time::Instant::now();
        }
        self.0.in_flight.fetch_sub(1, std::sync::atomic::Ordering::AcqRel);
    }
}

/// The stack, counting the connection's requests in flight.
#[derive(Clone)]
struct Tracked<S> {
    inner: S,
    activity: Arc<Activity>,
}

impl<S, R> tower::Service<R> for Tracked<S>
where
    S: tower::Service<R, Response = http::Response<ResponseBody>>,
    S::Future: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<S::Response, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut std::task::Context<'_>) -> std::task::Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: R) -> Self::Future {
        use http_body_util::BodyExt;
        let in_flight = InFlight::start(&self.activity);
        let answer = self.inner.call(request);
        Box::pin(async move {
            let response = answer.await?;
            // Held by the body: a slow reader of a long answer is a request in flight until it has it all.
            Ok(response.map(|body| {
                HeldBody {
                    body,
                    _in_flight: in_flight,
                }
                .boxed_unsync()
            }))
        })
    }
}

/// A response body holding its request's place among the connection's until it is sent (or dropped); its
/// length, when known, is still said (Content-Length rather than chunks).
struct HeldBody {
    body: ResponseBody,
    _in_flight: InFlight,
}

impl http_body::Body for HeldBody {
    type Data = bytes::Bytes;
    type Error = tower::BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<Self::Data>, Self::Error>>> {
        Pin::new(&mut self.get_mut().body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.body.size_hint()
    }
}
