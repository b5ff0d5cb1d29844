//! The one HTTP client every supplier dialect uses: connection pooling, a deadline per call, retries for
//! safe calls only, a cap on calls in flight per practice, the pace the supplier allows (`pace`), a circuit
//! breaker for a GP system that has stopped answering (`breaker`), and native failures classified as FHIR
//! errors.
//! No header from the FHIR client is ever forwarded (test-only `X-Sim-*` headers included); only the
//! request id travels, so native logs can be joined with ours.

use super::breaker::{self, Attempt, Breaker};
use super::pace::Pace;
use crate::config::BreakerSettings;
use crate::fhir::{FhirError, FhirResult};
use crate::mapping::Surface;
use bytes::Bytes;
use http::{HeaderMap, Method, StatusCode};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{Semaphore, SemaphorePermit};

/// One native HTTP request.
#[derive(Debug, Clone)]
pub struct HttpRequest {
    pub method: Method,
    pub url: String,
    pub headers: Vec<(&'static str, String)>,
    pub form: Option<Vec<(String, String)>>,
    pub json: Option<serde_json::Value>,
    pub body: Option<(String, Vec<u8>)>,
    /// The supplier surface it goes to, whose pace it keeps (the transaction surface unless said).
    pub surface: Surface,
}

impl HttpRequest {
    pub fn new(method: Method, url: String) -> Self {
        HttpRequest {
            method,
            url,
            headers: Vec::new(),
            form: None,
            json: None,
            body: None,
            surface: Surface::Transaction,
        }
    }

    /// The request, on the patient-facing surface.
    pub fn patient_facing(mut self) -> Self {
        self.surface = Surface::Patient;
        self
    }

    pub fn header(mut self, name: &'static str, value: impl Into<String>) -> Self {
        self.headers.push((name, value.into()));
        self
    }

    /// GET and HEAD may be retried; nothing else is, since a write may have been committed.
    fn is_safe(&self) -> bool {
        self.method == Method::GET || self.method == Method::HEAD
    }
}

/// A native reply, whatever its status.
#[derive(Debug, Clone)]
pub struct HttpReply {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
}

/// A native call as the audit trail records it: its path as a route (see [`route`]), no query string: neither
/// holds identifiers.
#[derive(Debug, Clone, serde::Serialize)]
pub struct CallRecord {
    pub method: String,
    pub path: String,
    pub status: u16,
    pub elapsed: Duration,
}

impl CallRecord {
    /// Whole milliseconds, as the AuditEvent states them.
    pub fn millis(&self) -> u64 {
        u64::try_from(self.elapsed.as_millis()).unwrap_or(u64::MAX)
    }
}

/// Tuning for one supplier endpoint.
#[derive(Debug, Clone)]
pub struct ClientSettings {
    pub timeout: Duration,
    pub retries: u32,
    pub max_in_flight: usize,
    pub breaker: BreakerSettings,
}

#[derive(Clone)]
pub struct HttpClient {
    /// Pooling its connections; replaced by a new one, with a new pool, when the breaker's trial is answered:
    /// connections pooled before the GP system stopped answering may have died with it (reqwest cannot empty a
    /// pool).
    inner: Arc<std::sync::RwLock<reqwest::Client>>,
    /// The same, keeping no idle connection: for the trial itself.
    unpooled: reqwest::Client,
    settings: ClientSettings,
    /// Places among the calls in flight to the practice, one set per surface (transaction, patient): a
    /// burst of patient-facing calls waiting for their pace cannot hold a clinician's call back.
    in_flight: Arc<[Semaphore; 2]>,
    /// Calls waiting for a place, per surface: bounded, so a GP system that has stopped answering holds a few
    /// requests at most, not every request the server may handle (those of the other practices too).
    waiting: Arc<[AtomicUsize; 2]>,
    pace: Arc<Pace>,
    breaker: Arc<Breaker>,
}

/// A reqwest client with the practice's settings, pooling idle connections or none.
fn reqwest_client(settings: &ClientSettings, pooling: bool) -> FhirResult<reqwest::Client> {
    // Both surfaces' places (see `in_flight`) may be in use at once.
    let idle_per_host = if pooling { settings.max_in_flight * 2 } else { 0 };
    reqwest::Client::builder()
        .pool_idle_timeout(Duration::from_secs(90))
        .pool_max_idle_per_host(idle_per_host)
        .connect_timeout(Duration::from_secs(5).min(settings.timeout))
        .timeout(settings.timeout)
        .build()
        .map_err(|e| FhirError::internal("IM1-5201", format!("cannot build the native HTTP client: {e}")))
}

/// How many calls may wait for a place on a surface, per place: past it a call is refused at once (503).
const WAITING_PER_PLACE: usize = 4;

/// A call's place in a surface's queue, given up when it gets its turn or gives up.
struct Waiting<'a>(&'a AtomicUsize);

/// A native call's turn (see [`HttpClient::turn`]): its place among the calls in flight, held for the call,
/// and its attempt, for the breaker to count by the call's outcome.
pub struct Turn<'a> {
    pub permit: SemaphorePermit<'a>,
    pub attempt: Attempt<'a>,
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

impl HttpClient {
    /// The client of one practice (its ODS code names it in the log).
    pub fn new(settings: ClientSettings, pace: Pace, practice: &str) -> FhirResult<HttpClient> {
        let inner = Arc::new(std::sync::RwLock::new(reqwest_client(&settings, true)?));
        let unpooled = reqwest_client(&settings, false)?;
        let places = || Semaphore::new(settings.max_in_flight);
        let in_flight = Arc::new([places(), places()]);
        Ok(HttpClient {
            inner,
            unpooled,
            breaker: Arc::new(Breaker::new(settings.breaker, practice)),
            settings,
            in_flight,
            waiting: Arc::new([AtomicUsize::new(0), AtomicUsize::new(0)]),
            pace: Arc::new(pace),
        })
    }

    /// A native call's turn on a surface: a place among the surface's calls in flight to the practice, then
    /// the supplier's pace (see `pace`), both within the call's deadline, then the breaker's leave (see
    /// `breaker`). The place is taken first, so a call goes out when its pace turn comes rather than after
    /// queueing again. Hold the permit for the call and end its attempt with the call's outcome.
    pub async fn turn(&self, surface: Surface, deadline: Instant) -> FhirResult<Turn<'_>> {
        let side = super::pace::side(surface);
        loop {
            // A GP system that has stopped answering is not called until its circuit's time is up.
            self.breaker.refuse_if_open(surface)?;
            // A pause the deadline cannot outlast is refused before queueing, saying when to come back.
            self.pace.refuse_if_pause_outlasts(surface, deadline)?;
            let queued = self.queue(surface, side)?;
            // A pause the supplier asked for is sat out in the queue, holding no place: bounded as any wait.
            self.pace.sit_out_pause(surface, deadline).await?;
            let remaining = deadline.saturating_duration_since(Instant::now());
            let permit = tokio::time::timeout(remaining, self.in_flight[side].acquire())
                .await
                .map_err(|_| timeout())?
                .map_err(|_| FhirError::unavailable("IM1-4005", "the native client is shutting down"))?;
            drop(queued);
            self.pace.wait(surface, deadline).await?;
            // A pause that began while this call waited for its place or turn is sat out like any other.
            if !self.pace.is_paused(surface) {
                // A circuit opened while this call waited is kept too.
                let attempt = self.breaker.attempt(surface, deadline, self.settings.timeout)?;
                return Ok(Turn { permit, attempt });
            }
        }
    }

    /// Whether the breaker stops calls to a surface now (see `breaker`).
    pub fn is_circuit_open(&self, surface: Surface) -> bool {
        self.breaker.is_open(surface)
    }

    /// Whether calls wait for a place (or sit out a pause) on either surface.
    pub fn is_queueing(&self) -> bool {
        self.waiting.iter().any(|w| w.load(Ordering::Acquire) > 0)
    }

    /// A place in a surface's queue; refused at once (503) when the queue is full: while the supplier's pause
    /// lasts, saying when it ends.
    fn queue(&self, surface: Surface, side: usize) -> FhirResult<Waiting<'_>> {
        let waiting = &self.waiting[side];
        let most = self.settings.max_in_flight * WAITING_PER_PLACE;
        if waiting.fetch_add(1, Ordering::AcqRel) >= most {
            waiting.fetch_sub(1, Ordering::AcqRel);
            if let Some(left) = self.pace.pause_left(surface) {
                return Err(super::pace::paused(left));
            }
            return Err(FhirError::unavailable(
                "IM1-4010",
                format!("the GP system is slow to answer and {most} calls already wait for it; try again"),
            )
            .retry_after(1));
        }
        Ok(Waiting(waiting))
    }

    /// The supplier asked for no calls on a surface for `wait` (see `pace`): a reply other than HTTP saying so.
    pub fn pause(&self, surface: Surface, wait: Duration) {
        self.pace.pause(surface, wait);
    }

    /// Sends a request, retrying a safe one on transport failures, 502/503/504, and 429 whose
    /// `Retry-After` fits in the deadline. The reply is returned whatever its status; `calls` gets one
    /// record per attempt. A 429 or 503 that says when to come back pauses the surface until then.
    pub async fn send(
        &self,
        request: &HttpRequest,
        request_id: &str,
        calls: &mut Vec<CallRecord>,
    ) -> FhirResult<HttpReply> {
        self.send_with(request, request_id, calls, &|| Ok(None)).await
    }

    /// As `send`, with an `Authorization` value made afresh for every attempt (per-call signed tokens).
    pub async fn send_with(
        &self,
        request: &HttpRequest,
        request_id: &str,
        calls: &mut Vec<CallRecord>,
        authorize: &(dyn Fn() -> FhirResult<Option<String>> + Sync),
    ) -> FhirResult<HttpReply> {
        let deadline = Instant::now() + self.settings.timeout;
        let attempts = if request.is_safe() {
            self.settings.retries + 1
        } else {
            1
        };
        let mut last_error = None;
        // A retryable reply (502-504, a 429 to wait for), kept to answer with if no attempt after it can be made.
        let mut last_reply: Option<HttpReply> = None;
        for attempt in 0..attempts {
            if attempt > 0 {
                let backoff = Duration::from_millis(50 << attempt.min(5));
                if Instant::now() + backoff >= deadline {
                    break;
                }
                tokio::time::sleep(backoff).await;
            }
            // Waiting for a turn is not an attempt: a 504 from it is not recorded as a native call. A retry that
            // gets no turn answers with what the attempt before it met (the supplier's own reply, or its error),
            // not that it could not wait.
            let Turn {
                permit,
                attempt: counted,
            } = match self.turn(request.surface, deadline).await {
                Ok(turn) => turn,
                Err(refused) => {
                    return match (last_reply, last_error) {
                        (Some(reply), _) => Ok(reply),
                        (None, error) => Err(error.unwrap_or(refused)),
                    }
                }
            };
            let started = Instant::now();
            let authorization = authorize()?;
            // The breaker's trial goes on a new connection: one pooled before may have died with the GP system,
            // and its failing would stop the calls again for nothing.
            let fresh = counted.is_trial();
            let outcome = self
                .send_once(request, authorization.as_deref(), request_id, deadline, fresh)
                .await;
            // Not held through a back-off or a `Retry-After`.
            drop(permit);
            let path = route(
                request
                    .url
                    .split('?')
                    .next()
                    .unwrap_or("")
                    .splitn(4, '/')
                    .nth(3)
                    .unwrap_or(""),
            );
            match outcome {
                Ok(reply) => {
                    calls.push(CallRecord {
                        method: request.method.to_string(),
                        path: format!("/{path}"),
                        status: reply.status.as_u16(),
                        elapsed: started.elapsed(),
                    });
                    let asked_wait = retry_after(&reply.headers);
                    let answer = breaker::answer_of_status(reply.status.as_u16(), asked_wait.is_some());
                    counted.answered(answer);
                    if fresh && answer == breaker::Answer::Answered {
                        self.renew_pool();
                    }
                    if let (429 | 503, Some(wait)) = (reply.status.as_u16(), asked_wait) {
                        self.pace.pause(request.surface, wait);
                    }
                    // A wait the supplier asks for that outlasts the deadline is not waited: the reply, with
                    // its Retry-After, goes back as it is. One that fits is waited by the next turn.
                    let wait_fits = asked_wait.is_none_or(|s| Instant::now() + s < deadline);
                    let retryable = wait_fits
                        && (matches!(reply.status.as_u16(), 502..=504)
                            || (reply.status == StatusCode::TOO_MANY_REQUESTS && asked_wait.is_some()));
                    if !retryable || attempt + 1 == attempts {
                        return Ok(reply);
                    }
                    last_reply = Some(reply);
                    last_error = None;
                }
                Err(error) => {
                    calls.push(CallRecord {
                        method: request.method.to_string(),
                        path: format!("/{path}"),
                        status: 0,
                        elapsed: started.elapsed(),
                    });
                    counted.failed(&error);
                    let final_answer = error.status == StatusCode::GATEWAY_TIMEOUT || error.code == TOO_LARGE;
                    last_error = Some(error);
                    last_reply = None;
                    // A timed-out call used the whole deadline, and a reply too large would be as large again:
                    // neither is retried.
                    if final_answer {
                        break;
                    }
                }
            }
        }
        // Out of attempts or of time for another: what the last attempt met.
        match (last_reply, last_error) {
            (Some(reply), _) => Ok(reply),
            (None, error) => {
                Err(error.unwrap_or_else(|| FhirError::bad_gateway("IM1-4002", "the native system kept failing")))
            }
        }
    }

    /// The pooling client now.
    fn pooled(&self) -> reqwest::Client {
        match self.inner.read() {
            Ok(client) => client.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// The breaker's trial was answered: later calls go on new connections, not those pooled before.
    fn renew_pool(&self) {
        if let Ok(client) = reqwest_client(&self.settings, true) {
            match self.inner.write() {
                Ok(mut inner) => *inner = client,
                Err(poisoned) => *poisoned.into_inner() = client,
            }
        }
    }

    /// One attempt; on a new connection when `fresh` (the breaker's trial).
    async fn send_once(
        &self,
        request: &HttpRequest,
        authorization: Option<&str>,
        request_id: &str,
        deadline: Instant,
        fresh: bool,
    ) -> FhirResult<HttpReply> {
        let client = if fresh { self.unpooled.clone() } else { self.pooled() };
        let mut builder = client
            .request(request.method.clone(), &request.url)
            .timeout(deadline.saturating_duration_since(Instant::now()))
            .header("X-Request-ID", request_id);
        for (name, value) in &request.headers {
            builder = builder.header(*name, value);
        }
        if let Some(value) = authorization {
            builder = builder.header("Authorization", value);
        }
        if let Some(form) = &request.form {
            let encoded = form_urlencoded::Serializer::new(String::new())
                .extend_pairs(form)
                .finish();
            builder = builder
                .header("Content-Type", "application/x-www-form-urlencoded")
                .body(encoded);
        }
        if let Some(json) = &request.json {
            builder = builder.json(json);
        }
        if let Some((content_type, body)) = &request.body {
            builder = builder.header("Content-Type", content_type.as_str()).body(body.clone());
        }
        let mut response = builder.send().await.map_err(classify)?;
        let status = response.status();
        let headers = response.headers().clone();
        // Read up to the cap: a reply past it is refused before it is all in memory.
        if response
            .content_length()
            .is_some_and(|length| length > MAX_REPLY_BYTES as u64)
        {
            return Err(too_large());
        }
        let mut body = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(classify)? {
            if body.len() + chunk.len() > MAX_REPLY_BYTES {
                return Err(too_large());
            }
            body.extend_from_slice(&chunk);
        }
        Ok(HttpReply {
            status,
            headers,
            body: body.into(),
        })
    }
}

/// A native call's path as it is recorded: words and API versions kept, any other segment (a native key: a
/// patient's GUID, a tenant) as `{id}`, as the request's own route is logged.
fn route(path: &str) -> String {
    let kept = |segment: &str| {
        let version = segment
            .strip_prefix('v')
            .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()));
        version
            || segment
                .bytes()
                .all(|b| b.is_ascii_alphabetic() || b == b'-' || b == b'_')
    };
    path.split('/')
        .map(|segment| if kept(segment) { segment } else { "{id}" })
        .collect::<Vec<_>>()
        .join("/")
}

/// The most a native HTTP reply may hold, as SystmOne's transaction frames (`systmone::MAX_FRAME`): a
/// record or a document base64-encoded in JSON fits well within it; a reply past it is refused (502) rather
/// than read whole into memory, then copied several times over while it is translated and cached.
pub const MAX_REPLY_BYTES: usize = 32 * 1024 * 1024;

pub(super) const TOO_LARGE: &str = "IM1-4008";

pub(super) fn too_large() -> FhirError {
    FhirError::bad_gateway(
        TOO_LARGE,
        format!(
            "the native system's reply is larger than this server takes ({} MiB)",
            MAX_REPLY_BYTES >> 20
        ),
    )
}

/// How a native call that met no usable answer fails, whatever carried it (HTTP here, SystmOne's framed socket):
/// the breaker counts these codes as unanswered (see `breaker::answer_of_error`).
pub(super) const TIMED_OUT: &str = "IM1-4001";
pub(super) const UNREACHABLE: &str = "IM1-4003";
pub(super) const BROKEN: &str = "IM1-4004";

pub(super) fn timeout() -> FhirError {
    FhirError::gateway_timeout(TIMED_OUT, "the native system did not answer in time")
}

pub(super) fn unreachable() -> FhirError {
    FhirError::bad_gateway(UNREACHABLE, "the native system cannot be reached")
}

pub(super) fn broken() -> FhirError {
    FhirError::bad_gateway(BROKEN, "the native system closed the connection or sent a broken reply")
}

fn classify(error: reqwest::Error) -> FhirError {
    if error.is_timeout() {
        timeout()
    } else if error.is_connect() {
        unreachable()
    } else {
        broken()
    }
}

/// `Retry-After`, as seconds or an HTTP date (RFC 9110 section 10.2.3), capped so that a native hint can never
/// stall a request for long. A date is measured from the reply's own `Date` where it gives one, so the two
/// clocks need not agree; a date not after it is now, as `0` is.
pub fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    const MOST: Duration = Duration::from_secs(30);
    let value = headers.get("retry-after")?.to_str().ok()?.trim();
    if let Some(seconds) = crate::fhir::rest::delta_seconds(value) {
        return Some(Duration::from_secs(seconds).min(MOST));
    }
    let when = httpdate::parse_http_date(value).ok()?;
    let date = headers.get(http::header::DATE).and_then(|d| d.to_str().ok());
    let now = date
        .and_then(|d| httpdate::parse_http_date(d).ok())
        .unwrap_or_else(std::time::SystemTime::now);
    Some(when.duration_since(now).unwrap_or_default().min(MOST))
}

/// Turns the common native statuses into FHIR errors; dialects handle their own bodies first.
pub fn status_error(status: StatusCode, headers: &HeaderMap, supplier: &str) -> FhirError {
    match status.as_u16() {
        403 => FhirError::forbidden(
            "IM1-4103",
            format!("{supplier} refused: the service is switched off for this practice or patient"),
        ),
        404 => FhirError::not_found("IM1-4104", "no such resource"),
        409 => FhirError::conflict("IM1-4109", format!("{supplier} reported a conflict")),
        413 => FhirError::too_large("IM1-4113", format!("{supplier} refused the size of the content")),
        // The supplier limits this server, not the client: a 503 to try again, not a 429 saying the client
        // sent too much.
        429 => FhirError::unavailable(
            "IM1-4129",
            format!("{supplier} is rate limiting this server; try again later"),
        )
        .retry_after(retry_after(headers).map_or(2, |d| d.as_secs().max(1))),
        503 => FhirError::unavailable("IM1-4503", format!("{supplier} is unavailable"))
            .retry_after(retry_after(headers).map_or(5, |d| d.as_secs().max(1))),
        504 => FhirError::gateway_timeout("IM1-4504", format!("{supplier} timed out")),
        _ => FhirError::bad_gateway(
            "IM1-4500",
            format!("{supplier} answered with status {}", status.as_u16()),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// A server answering every request with `head` then `body_bytes` of body (chunked when `head` says).
    async fn serve(head: &'static str, body_bytes: usize) -> std::net::SocketAddr {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            while let Ok((mut socket, _)) = listener.accept().await {
                tokio::spawn(async move {
                    let mut request = [0u8; 4096];
                    let _ = socket.read(&mut request).await;
                    let head = head.replace("{length}", &body_bytes.to_string());
                    if socket.write_all(head.as_bytes()).await.is_err() {
                        return;
                    }
                    let chunked = head.contains("chunked");
                    let piece = vec![b'x'; 1 << 20];
                    let mut left = body_bytes;
                    while left > 0 {
                        let n = left.min(piece.len());
                        let written = if chunked {
                            let mut chunk = format!("{n:x}\r\n").into_bytes();
                            chunk.extend_from_slice(&piece[..n]);
                            chunk.extend_from_slice(b"\r\n");
                            socket.write_all(&chunk).await
                        } else {
                            socket.write_all(&piece[..n]).await
                        };
                        if written.is_err() {
                            return;
                        }
                        left -= n;
                    }
                    if chunked {
                        let _ = socket.write_all(b"0\r\n\r\n").await;
                    }
                });
            }
        });
        addr
    }

    /// A client with a ten-second time-out and no pace.
    fn client_with(retries: u32, max_in_flight: usize, breaker: BreakerSettings) -> HttpClient {
        crate::runtime::install_crypto();
        let settings = ClientSettings {
            timeout: Duration::from_secs(10),
            retries,
            max_in_flight,
            breaker,
        };
        HttpClient::new(settings, Pace::new(&Default::default()), "Y90001").unwrap()
    }

    fn client() -> HttpClient {
        client_with(2, 2, Default::default())
    }

    #[test]
    fn retry_after_is_read_as_seconds_or_a_date() {
        let wait = |value: &str| {
            let mut headers = HeaderMap::new();
            headers.insert("retry-after", value.parse().unwrap());
            retry_after(&headers)
        };
        assert_eq!(wait("5"), Some(Duration::from_secs(5)));
        assert_eq!(wait("3600"), Some(Duration::from_secs(30)), "capped");
        assert_eq!(wait("99999999999999999999999"), Some(Duration::from_secs(30)), "capped");
        let soon = httpdate::fmt_http_date(std::time::SystemTime::now() + Duration::from_secs(12));
        let told = wait(&soon).unwrap();
        assert!(
            (Duration::from_secs(10)..=Duration::from_secs(12)).contains(&told),
            "{told:?}"
        );
        assert_eq!(
            wait("Wed, 21 Oct 2015 07:28:00 GMT"),
            Some(Duration::ZERO),
            "a date past"
        );
        assert_eq!(wait("soon"), None);
        // Measured from the reply's Date: a supplier whose clock is years behind ours.
        let mut headers = HeaderMap::new();
        headers.insert("date", "Wed, 21 Oct 2015 07:28:00 GMT".parse().unwrap());
        headers.insert("retry-after", "Wed, 21 Oct 2015 07:28:07 GMT".parse().unwrap());
        assert_eq!(retry_after(&headers), Some(Duration::from_secs(7)));
    }

    #[test]
    fn calls_are_recorded_without_native_keys() {
        assert_eq!(
            route("emis/partner/v1/patients/B3C1A2D4-1111-2222-3333-444455556666/record"),
            "emis/partner/v1/patients/{id}/record"
        );
        assert_eq!(
            route("medicus/y90003/transactional-api/v1/patient/40fb9053-aaaa/journal"),
            "medicus/{id}/transactional-api/v1/patient/{id}/journal"
        );
    }

    /// A client with one place per surface, and no pace.
    fn one_place_client() -> HttpClient {
        client_with(0, 1, Default::default())
    }

    #[tokio::test]
    async fn each_surface_has_its_own_places() {
        let client = one_place_client();
        let soon = || Instant::now() + Duration::from_millis(200);
        let _patient = client.turn(Surface::Patient, soon()).await.unwrap();
        // The patient surface's one place is taken: a clinician's call still goes, another patient's waits.
        let _transaction = client.turn(Surface::Transaction, soon()).await.unwrap();
        let waited = client.turn(Surface::Patient, soon()).await.err().unwrap();
        assert_eq!(waited.status, StatusCode::GATEWAY_TIMEOUT);
    }

    #[tokio::test]
    async fn calls_waiting_for_a_place_are_bounded() {
        let client = one_place_client();
        let later = Instant::now() + Duration::from_secs(5);
        let _held = client.turn(Surface::Transaction, later).await.unwrap();
        // Four wait for the one place; a fifth is refused at once, not queued until its deadline.
        let waiting: Vec<_> = (0..WAITING_PER_PLACE)
            .map(|_| Box::pin(client.turn(Surface::Transaction, later)))
            .collect();
        let mut waiting = futures_util::future::select_all(waiting);
        assert!(futures_util::poll!(&mut waiting).is_pending());
        let started = Instant::now();
        let refused = client.turn(Surface::Transaction, later).await.err().unwrap();
        assert_eq!(
            (refused.status, refused.code),
            (StatusCode::SERVICE_UNAVAILABLE, "IM1-4010")
        );
        assert!(started.elapsed() < Duration::from_secs(1));
        // The other surface is not held back.
        assert!(client.turn(Surface::Patient, later).await.is_ok());
        drop(waiting);
        // Those who gave up leave the queue.
        let soon = Instant::now() + Duration::from_millis(100);
        let timed_out = client.turn(Surface::Transaction, soon).await.err().unwrap();
        assert_eq!(timed_out.status, StatusCode::GATEWAY_TIMEOUT);
    }

    /// A local server that counts the connections it accepts and hands each to `serve`.
    async fn counting_server<F, Fut>(serve: F) -> (std::net::SocketAddr, Arc<AtomicUsize>)
    where
        F: Fn(tokio::net::TcpStream) -> Fut + Send + 'static,
        Fut: std::future::Future<Output = ()> + Send + 'static,
    {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let connections = Arc::new(AtomicUsize::new(0));
        let counted = connections.clone();
        tokio::spawn(async move {
            while let Ok((socket, _)) = listener.accept().await {
                counted.fetch_add(1, Ordering::SeqCst);
                tokio::spawn(serve(socket));
            }
        });
        (addr, connections)
    }

    /// A client whose breaker opens at the first unanswered call, for 50 ms; no retries.
    fn tripping_client() -> HttpClient {
        let breaker = BreakerSettings {
            trip_after: 1,
            open_for: Duration::from_millis(50),
        };
        client_with(0, 4, breaker)
    }

    /// Once a circuit's time is up, one call goes to see whether the GP system answers again; calls meanwhile
    /// are refused at once rather than all sent to a system that may still be down.
    #[tokio::test]
    async fn a_half_open_circuit_lets_one_trial_call_go() {
        // A gateway that answers 502 after a while: the GP system behind it does not answer.
        let (addr, connections) = counting_server(|mut socket| async move {
            let _ = socket.read(&mut [0u8; 4096]).await;
            tokio::time::sleep(Duration::from_millis(200)).await;
            let _ = socket
                .write_all(b"HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\n\r\n")
                .await;
        })
        .await;
        let client = tripping_client();
        let request = HttpRequest::new(Method::GET, format!("http://{addr}/record"));
        let reply = client.send(&request, "r", &mut Vec::new()).await.unwrap();
        assert_eq!(reply.status.as_u16(), 502);
        tokio::time::sleep(Duration::from_millis(60)).await;
        let sends = (0..4).map(|_| async { client.send(&request, "r", &mut Vec::new()).await });
        let outcomes = futures_util::future::join_all(sends).await;
        let statuses: Vec<_> = outcomes
            .iter()
            .map(|o| match o {
                Ok(reply) => reply.status.to_string(),
                Err(e) => e.code.to_string(),
            })
            .collect();
        assert_eq!(connections.load(Ordering::SeqCst), 2, "{statuses:?}");
        let trials = statuses.iter().filter(|s| s.starts_with("502")).count();
        let refused = statuses.iter().filter(|s| *s == "IM1-4012").count();
        assert_eq!((trials, refused), (1, 3), "{statuses:?}");
    }

    /// The transaction surface's one place taken, and a second call waiting for it (within five seconds).
    async fn one_held_one_waiting(
        client: &HttpClient,
    ) -> (
        Turn<'_>,
        std::pin::Pin<Box<impl std::future::Future<Output = FhirResult<Turn<'_>>> + '_>>,
    ) {
        let later = Instant::now() + Duration::from_secs(5);
        let held = client.turn(Surface::Transaction, later).await.unwrap();
        let mut waiting = Box::pin(client.turn(Surface::Transaction, later));
        assert!(futures_util::poll!(&mut waiting).is_pending());
        (held, waiting)
    }

    /// A call waiting for its place when the circuit opens does not go once it has the place.
    #[tokio::test]
    async fn a_circuit_that_opens_while_a_call_waits_is_kept() {
        let client = one_place_client();
        let (held, waiting) = one_held_one_waiting(&client).await;
        for _ in 0..BreakerSettings::default().trip_after {
            client.breaker.record(Surface::Transaction, breaker::Answer::Unanswered);
        }
        drop(held);
        let refused = waiting.await.err().unwrap();
        assert_eq!((refused.status.as_u16(), refused.code), (503, "IM1-4012"));
    }

    /// A `Retry-After` given as an HTTP date is kept as the pause it names, measured from the reply's `Date`.
    #[tokio::test]
    async fn a_pause_given_as_a_date_is_kept() {
        let now = std::time::SystemTime::now();
        let head = format!(
            "HTTP/1.1 429 Too Many Requests\r\nDate: {}\r\nRetry-After: {}\r\nContent-Length: {{length}}\r\n\r\n",
            httpdate::fmt_http_date(now),
            httpdate::fmt_http_date(now + Duration::from_secs(20)),
        );
        let addr = serve(Box::leak(head.into_boxed_str()), 0).await;
        let client = client();
        let request = HttpRequest::new(Method::GET, format!("http://{addr}/record"));
        let mut calls = Vec::new();
        let reply = client.send(&request, "r", &mut calls).await.unwrap();
        assert_eq!((reply.status.as_u16(), calls.len()), (429, 1));
        let refused = client.send(&request, "r", &mut calls).await.unwrap_err();
        assert_eq!((refused.code, calls.len()), ("IM1-4011", 1));
        assert!(
            matches!(refused.retry_after, Some(19..=21)),
            "{:?}",
            refused.retry_after
        );
    }

    /// The trial goes on a new connection, not one pooled before the GP system stopped answering; once it is
    /// answered, calls go on new connections too, pooled again.
    #[tokio::test]
    async fn the_trial_call_goes_on_a_new_connection() {
        // Keeps each connection open, answering every request on it with an empty 200.
        let (addr, connections) = counting_server(|mut socket| async move {
            let mut request = [0u8; 4096];
            while socket.read(&mut request).await.is_ok_and(|n| n > 0) {
                let reply = b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n";
                if socket.write_all(reply).await.is_err() {
                    return;
                }
            }
        })
        .await;
        let client = tripping_client();
        let request = HttpRequest::new(Method::GET, format!("http://{addr}/record"));
        let send = || async {
            client
                .send(&request, "r", &mut Vec::new())
                .await
                .unwrap()
                .status
                .as_u16()
        };
        assert_eq!(send().await, 200);
        assert_eq!(send().await, 200);
        assert_eq!(connections.load(Ordering::SeqCst), 1, "one connection, pooled");
        client.breaker.record(Surface::Transaction, breaker::Answer::Unanswered);
        tokio::time::sleep(Duration::from_millis(60)).await;
        assert_eq!(send().await, 200);
        assert_eq!(connections.load(Ordering::SeqCst), 2, "the trial's own");
        // Answered: the pool from before is let go, and a new one fills.
        assert_eq!(send().await, 200);
        assert_eq!(connections.load(Ordering::SeqCst), 3, "a new pool");
        assert_eq!(send().await, 200);
        assert_eq!(connections.load(Ordering::SeqCst), 3, "pooled again");
    }

    #[tokio::test]
    async fn a_pause_the_supplier_asks_for_holds_the_surface() {
        let addr = serve(
            "HTTP/1.1 503 Service Unavailable\r\nRetry-After: 20\r\nContent-Length: {length}\r\n\r\n",
            0,
        )
        .await;
        let client = client();
        let request = HttpRequest::new(Method::GET, format!("http://{addr}/record"));
        let mut calls = Vec::new();
        // Twenty seconds outlast the deadline: the reply goes back as it is, not retried.
        let reply = client.send(&request, "r", &mut calls).await.unwrap();
        assert_eq!((reply.status.as_u16(), calls.len()), (503, 1));
        // Until then nothing more goes to that surface: refused at once, saying when to come back.
        let started = Instant::now();
        let refused = client.send(&request, "r", &mut calls).await.unwrap_err();
        assert_eq!(
            (refused.status.as_u16(), refused.code, calls.len()),
            (503, "IM1-4011", 1)
        );
        assert!(
            matches!(refused.retry_after, Some(19..=20)),
            "{:?}",
            refused.retry_after
        );
        assert!(started.elapsed() < Duration::from_secs(1));
        // The other surface is not paused.
        let patient = request.clone().patient_facing();
        assert_eq!(
            client.send(&patient, "r", &mut calls).await.unwrap().status.as_u16(),
            503
        );
        // A pause that ends before the deadline is waited out, then the call goes.
        let client = one_place_client();
        client.pause(Surface::Transaction, Duration::from_millis(300));
        let started = Instant::now();
        let _turn = client
            .turn(Surface::Transaction, Instant::now() + Duration::from_secs(5))
            .await
            .unwrap();
        assert!(
            started.elapsed() >= Duration::from_millis(290),
            "{:?}",
            started.elapsed()
        );
    }

    #[tokio::test]
    async fn calls_sitting_out_a_pause_are_bounded_and_queued_calls_respect_it() {
        let client = one_place_client();
        let later = Instant::now() + Duration::from_secs(5);
        // A call already waiting for the one place when a pause begins goes only once the pause is over.
        let (held, waiting) = one_held_one_waiting(&client).await;
        client.pause(Surface::Transaction, Duration::from_millis(300));
        let paused = Instant::now();
        drop(held);
        let turn = waiting.await.unwrap();
        assert!(paused.elapsed() >= Duration::from_millis(290), "{:?}", paused.elapsed());
        drop(turn);
        // Calls sitting out a pause count against the queue: past it, refused at once.
        client.pause(Surface::Transaction, Duration::from_secs(2));
        let sitting: Vec<_> = (0..WAITING_PER_PLACE)
            .map(|_| Box::pin(client.turn(Surface::Transaction, later)))
            .collect();
        let mut sitting = futures_util::future::select_all(sitting);
        assert!(futures_util::poll!(&mut sitting).is_pending());
        // Refused saying when the pause ends, not that the system is slow.
        let refused = client.turn(Surface::Transaction, later).await.err().unwrap();
        assert_eq!((refused.code, refused.retry_after), ("IM1-4011", Some(2)));
    }

    #[tokio::test]
    async fn a_reply_past_the_cap_is_refused_once_not_read_whole() {
        let chunked = "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n";
        let declared = "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {length}\r\n\r\n";
        for head in [chunked, declared] {
            let addr = serve(head, MAX_REPLY_BYTES + 1).await;
            let mut calls = Vec::new();
            let request = HttpRequest::new(Method::GET, format!("http://{addr}/record"));
            let error = client().send(&request, "r", &mut calls).await.unwrap_err();
            assert_eq!((error.status.as_u16(), error.code), (502, TOO_LARGE), "{head}");
            assert_eq!(calls.len(), 1, "not retried: {head}");
        }
        // At the cap, the reply is read whole.
        let addr = serve(chunked, MAX_REPLY_BYTES).await;
        let request = HttpRequest::new(Method::GET, format!("http://{addr}/record"));
        let reply = client().send(&request, "r", &mut Vec::new()).await.unwrap();
        assert_eq!(reply.body.len(), MAX_REPLY_BYTES);
    }
}
