//! A small hyper 1 HTTP/1.1 server for simulators.
//!
//! The server reads the whole request body (bounded), applies the fault plan, answers the control path
//! `/_sim/stats`, counts the call, and hands the rest to the dialect's [`Handler`]. Faults that need no
//! dialect knowledge (latency, drop, truncate, malformed) are done here; replies that have a native shape
//! (5xx, 429, expired session) are rendered by [`Handler::fault_reply`].

use super::faults::{corrupt, Fault, FaultInjector, FaultPlan, FaultRates, InjectedReply, FAULT_HEADER};
use super::stats::Stats;
use bytes::Bytes;
use http::{header, Request, Response, StatusCode};
use http_body_util::{combinators::BoxBody, BodyExt, Full, Limited};
use hyper::body::{Body, Frame, Incoming, SizeHint};
use hyper_util::rt::TokioIo;
use hyper_util::server::graceful::GracefulShutdown;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// Errors as hyper's service and body types need them.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;
/// A request as a handler sees it: the head and the whole body.
pub type SimRequest = Request<Bytes>;
/// A handler's reply.
pub type SimResponse = Response<Bytes>;

/// The control path that serves the counters (`GET`) and resets them (`DELETE`).
pub const STATS_PATH: &str = "/_sim/stats";

/// What the server knows about the request being handled, and where the handler reports committed writes.
#[derive(Debug, Clone)]
pub struct RequestContext {
    stats: Arc<Stats>,
    route: Arc<str>,
    fault: Option<Fault>,
}

impl RequestContext {
    pub(crate) fn for_frame(stats: Arc<Stats>, route: Arc<str>) -> Self {
        RequestContext {
            stats,
            route,
            fault: None,
        }
    }

    /// Report that this request committed a write (call once per committed write).
    pub fn record_write(&self) {
        self.stats.record_write(&self.route);
    }

    /// The route name the call was counted under.
    pub fn route(&self) -> &str {
        &self.route
    }

    /// The outcome fault planned for this request, if the handler runs despite it (`drop-after-commit`,
    /// `truncate`, `malformed`).
    pub fn fault(&self) -> Option<Fault> {
        self.fault
    }

    /// The simulator's counters.
    pub fn stats(&self) -> &Arc<Stats> {
        &self.stats
    }
}

/// A simulator dialect.
pub trait Handler: Send + Sync + 'static {
    /// Answer one request.
    fn handle(&self, req: SimRequest, cx: RequestContext) -> impl Future<Output = SimResponse> + Send;

    /// The name a call is counted under (default `METHOD /path`). Dialects with ids in paths or one endpoint
    /// for many messages should override it (e.g. SystmOne names the `type` header).
    fn route(&self, req: &SimRequest) -> String {
        format!("{} {}", req.method(), req.uri().path())
    }

    /// Render an injected error in the dialect's own shape. The default is a plain-text body with the right
    /// status (and `Retry-After` for 429).
    fn fault_reply(&self, reply: InjectedReply, req: &SimRequest) -> SimResponse {
        let _ = req;
        default_fault_reply(reply)
    }
}

/// The plain fault replies: 500/503 with an empty body, 429 with `Retry-After`, 401 for an expired session.
pub fn default_fault_reply(reply: InjectedReply) -> SimResponse {
    let (status, retry) = match reply {
        InjectedReply::ServerError(code) => (
            StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
            None,
        ),
        InjectedReply::TooManyRequests { retry_after_secs } => (StatusCode::TOO_MANY_REQUESTS, Some(retry_after_secs)),
        InjectedReply::ExpiredSession => (StatusCode::UNAUTHORIZED, None),
    };
    let mut resp = Response::new(Bytes::new());
    *resp.status_mut() = status;
    if let Some(secs) = retry {
        if let Ok(v) = header::HeaderValue::from_str(&secs.to_string()) {
            resp.headers_mut().insert(header::RETRY_AFTER, v);
        }
    }
    resp
}

/// Server settings.
#[derive(Debug, Clone, Copy)]
pub struct ServeConfig {
    /// Random fault rates (header-chosen faults work whatever these are).
    pub faults: FaultRates,
    /// Largest request body accepted (413 above it).
    pub max_body_bytes: usize,
    /// `Retry-After` seconds for injected 429s.
    pub retry_after_secs: u64,
}

impl Default for ServeConfig {
    fn default() -> Self {
        ServeConfig {
            faults: FaultRates::default(),
            max_body_bytes: 16 * 1024 * 1024,
            retry_after_secs: 1,
        }
    }
}

/// A running simulator server. Dropping it stops the server too; [`SimHandle::shutdown`] also waits.
#[derive(Debug)]
pub struct SimHandle {
    addr: SocketAddr,
    scheme: &'static str,
    stats: Arc<Stats>,
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
}

impl SimHandle {
    pub(crate) fn new(
        addr: SocketAddr,
        scheme: &'static str,
        stats: Arc<Stats>,
        stop: watch::Sender<bool>,
        task: JoinHandle<()>,
    ) -> Self {
        SimHandle {
            addr,
            scheme,
            stats,
            stop,
            task,
        }
    }

    /// The bound address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://IP:PORT` (or `tcp://IP:PORT` for a framed server), without a trailing slash.
    pub fn base_url(&self) -> String {
        format!("{}://{}", self.scheme, self.addr)
    }

    /// The live counters.
    pub fn stats(&self) -> &Arc<Stats> {
        &self.stats
    }

    /// Stop accepting, let open requests finish (up to 5 s), then return.
    pub async fn shutdown(self) {
        let _ = self.stop.send(true);
        let _ = self.task.await;
    }
}

struct Shared<H> {
    handler: H,
    stats: Arc<Stats>,
    faults: FaultInjector,
    config: ServeConfig,
}

/// Serve `handler` on `listener` with default settings (no random faults).
pub fn serve<H: Handler>(listener: TcpListener, handler: H) -> SimHandle {
    serve_with(listener, handler, ServeConfig::default())
}

/// Serve `handler` on `listener` with the given settings.
pub fn serve_with<H: Handler>(listener: TcpListener, handler: H, config: ServeConfig) -> SimHandle {
    let addr = listener
        .local_addr()
        .unwrap_or_else(|_| SocketAddr::from(([127, 0, 0, 1], 0)));
    let stats = Arc::new(Stats::default());
    let shared = Arc::new(Shared {
        handler,
        stats: stats.clone(),
        faults: FaultInjector::new(config.faults),
        config,
    });
    let (stop, mut stopped) = watch::channel(false);
    let task = tokio::spawn(async move {
        let graceful = GracefulShutdown::new();
        loop {
            tokio::select! {
                accepted = listener.accept() => {
                    let stream = match accepted {
                        Ok((stream, _)) => stream,
                        Err(e) => {
                            // Out of file descriptors and the like: back off rather than spin.
                            tracing::warn!(error = %e, "simulator accept failed");
                            tokio::time::sleep(Duration::from_millis(50)).await;
                            continue;
                        }
                    };
                    let _ = stream.set_nodelay(true);
                    let shared = shared.clone();
                    let service = hyper::service::service_fn(move |req| shared.clone().call(req));
                    let conn = hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(stream), service);
                    let conn = graceful.watch(conn);
                    tokio::spawn(async move {
                        // Errors here are the injected drops and clients going away.
                        let _ = conn.await;
                    });
                }
                _ = stopped.changed() => break,
            }
        }
        drop(listener);
        let _ = tokio::time::timeout(Duration::from_secs(5), graceful.shutdown()).await;
    });
    SimHandle::new(addr, "http", stats, stop, task)
}

fn full(bytes: impl Into<Bytes>) -> BoxBody<Bytes, BoxError> {
    Full::new(bytes.into()).map_err(|never| match never {}).boxed()
}

fn plain(status: StatusCode, text: String) -> Response<BoxBody<Bytes, BoxError>> {
    let mut resp = Response::new(full(text));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    resp
}

/// The error that makes hyper close the connection without a reply.
#[derive(Debug)]
struct InjectedDrop;

impl std::fmt::Display for InjectedDrop {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("connection dropped by fault injection")
    }
}

impl std::error::Error for InjectedDrop {}

impl<H: Handler> Shared<H> {
    async fn call(self: Arc<Self>, req: Request<Incoming>) -> Result<Response<BoxBody<Bytes, BoxError>>, BoxError> {
        if req.uri().path() == STATS_PATH {
            return Ok(self.control(&req));
        }
        let fault_header = req
            .headers()
            .get(FAULT_HEADER)
            .map(|v| v.to_str().unwrap_or("\u{fffd}").to_string());
        let (parts, body) = req.into_parts();
        let body = match Limited::new(body, self.config.max_body_bytes).collect().await {
            Ok(collected) => collected.to_bytes(),
            Err(e) => {
                let status = if e.downcast_ref::<http_body_util::LengthLimitError>().is_some() {
                    StatusCode::PAYLOAD_TOO_LARGE
                } else {
                    StatusCode::BAD_REQUEST
                };
                return Ok(plain(status, "request body could not be read\n".into()));
            }
        };
        let req = Request::from_parts(parts, body);
        let route: Arc<str> = self.handler.route(&req).into();
        self.stats.record_call(&route);
        let plan = match self.faults.plan(fault_header.as_deref()) {
            Ok(plan) => plan,
            Err(msg) => return Ok(plain(StatusCode::BAD_REQUEST, format!("invalid X-Sim-Fault: {msg}\n"))),
        };
        self.run(req, route, plan).await
    }

    async fn run(
        &self,
        req: SimRequest,
        route: Arc<str>,
        plan: FaultPlan,
    ) -> Result<Response<BoxBody<Bytes, BoxError>>, BoxError> {
        if let Some(latency) = plan.latency {
            self.stats.record_fault("latency");
            tokio::time::sleep(latency).await;
        }
        if let Some(f) = plan.fault {
            self.stats.record_fault(f.name());
        }
        let injected = match plan.fault {
            Some(Fault::ServerError(code)) => Some(InjectedReply::ServerError(code)),
            Some(Fault::TooManyRequests) => Some(InjectedReply::TooManyRequests {
                retry_after_secs: self.config.retry_after_secs,
            }),
            Some(Fault::ExpiredSession) => Some(InjectedReply::ExpiredSession),
            Some(Fault::Drop) => return Err(Box::new(InjectedDrop)),
            _ => None,
        };
        if let Some(reply) = injected {
            return Ok(self.handler.fault_reply(reply, &req).map(full));
        }
        let cx = RequestContext {
            stats: self.stats.clone(),
            route,
            fault: plan.fault,
        };
        let resp = self.handler.handle(req, cx).await;
        Ok(match plan.fault {
            Some(Fault::DropAfterCommit) => return Err(Box::new(InjectedDrop)),
            Some(Fault::Truncate) => {
                let (mut parts, body) = resp.into_parts();
                parts.headers.remove(header::CONTENT_LENGTH);
                Response::from_parts(parts, TruncatedBody::new(body).boxed())
            }
            Some(Fault::Malformed) => {
                let (mut parts, body) = resp.into_parts();
                parts.headers.remove(header::CONTENT_LENGTH);
                Response::from_parts(parts, full(corrupt(&body)))
            }
            _ => resp.map(full),
        })
    }

    fn control(&self, req: &Request<Incoming>) -> Response<BoxBody<Bytes, BoxError>> {
        match *req.method() {
            http::Method::GET => {
                let json = serde_json::to_vec(&self.stats.snapshot()).unwrap_or_default();
                let mut resp = Response::new(full(json));
                resp.headers_mut().insert(
                    header::CONTENT_TYPE,
                    header::HeaderValue::from_static("application/json"),
                );
                resp
            }
            http::Method::DELETE => {
                self.stats.reset();
                let mut resp = Response::new(full(Bytes::new()));
                *resp.status_mut() = StatusCode::NO_CONTENT;
                resp
            }
            _ => plain(StatusCode::METHOD_NOT_ALLOWED, "GET or DELETE\n".into()),
        }
    }
}

/// A body that declares its full length, sends the first half, waits a moment (so the bytes reach the
/// client), then fails: hyper then closes the connection mid-body.
struct TruncatedBody {
    declared: u64,
    first: Option<Bytes>,
    pause: Option<Pin<Box<tokio::time::Sleep>>>,
}

impl TruncatedBody {
    fn new(body: Bytes) -> Self {
        let declared = body.len().max(2) as u64;
        let half = body.slice(..body.len() / 2);
        TruncatedBody {
            declared,
            first: Some(half),
            pause: None,
        }
    }
}

impl Body for TruncatedBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        if let Some(first) = self.first.take() {
            self.pause = Some(Box::pin(tokio::time::sleep(Duration::from_millis(50))));
            if !first.is_empty() {
                return Poll::Ready(Some(Ok(Frame::data(first))));
            }
        }
        if let Some(pause) = self.pause.as_mut() {
            if pause.as_mut().poll(cx).is_pending() {
                return Poll::Pending;
            }
        }
        Poll::Ready(Some(Err("body truncated by fault injection".into())))
    }

    fn is_end_stream(&self) -> bool {
        false
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact(self.declared)
    }
}
