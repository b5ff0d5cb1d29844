//! The audit layer: one AuditEvent per interaction, whatever its outcome, committed before the response leaves.
//!
//! It sits outside the deadline and the pipeline (so a 401, a denial, a native error, a time-out and a cache hit
//! are all audited) and inside the request-id layer (so the event carries the id the client sees). While the
//! request runs, the pipeline adds what it learns (who, what, which patients, native calls, the outcome code)
//! through [`note`], which reaches this request's facts through a task-local: no plumbing through every call.
//! If the store cannot commit the event, the response is replaced by a 503: nothing is served unaudited. A
//! request whose client leaves before its answer (its future dropped) is recorded all the same, with status 499.

use super::{AuditFacts, AuditStore};
use crate::app::{respond_error, Body};
use crate::fhir::format::Format;
use crate::fhir::FhirError;
use http::{Request, Response};
use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

tokio::task_local! {
    static CURRENT: Arc<Mutex<AuditFacts>>;
}

/// Adds to the facts of the interaction being handled (nothing happens outside one, e.g. in unit tests).
pub fn note(update: impl FnOnce(&mut AuditFacts)) {
    let _ = CURRENT.try_with(|slot| {
        if let Ok(mut facts) = slot.lock() {
            update(&mut facts);
        }
    });
}

#[derive(Clone)]
pub struct AuditLayer {
    store: Option<AuditStore>,
}

impl AuditLayer {
    /// `None` switches auditing off (only for benchmarks that measure the pipeline without it).
    pub fn new(store: Option<AuditStore>) -> AuditLayer {
        AuditLayer { store }
    }
}

impl<S> tower::Layer<S> for AuditLayer {
    type Service = AuditService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        AuditService {
            inner,
            store: self.store.clone(),
        }
    }
}

#[derive(Clone)]
pub struct AuditService<S> {
    inner: S,
    store: Option<AuditStore>,
}

impl<S, B> tower::Service<Request<B>> for AuditService<S>
where
    S: tower::Service<Request<B>, Response = Response<Body>, Error = Infallible> + Clone + Send + 'static,
    S::Future: Send,
    B: Send + 'static,
{
    type Response = Response<Body>;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Response<Body>, Infallible>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        // The clone that was made ready is the one that serves this request.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let store = match &self.store {
            Some(store) if !crate::server::is_operational(request.uri().path()) => store.clone(),
            _ => return Box::pin(inner.call(request)),
        };
        let slot = Arc::new(Mutex::new(initial_facts(&request)));
        Box::pin(async move {
            let mut left = Abandoned {
                slot: slot.clone(),
                store: store.clone(),
                armed: true,
            };
            let response = CURRENT.scope(slot.clone(), inner.call(request)).await?;
            left.armed = false;
            let mut facts = snapshot(&slot);
            facts.status = response.status().as_u16();
            facts.ended = time::OffsetDateTime::now_utc();
            // Recorded by a task of its own (see `record_within`): a client leaving now, or the deadline, cannot
            // cancel the commit half-way or lose the event, which then says what the client got.
            let committed = store.record_within(facts, COMMIT_DEADLINE).await;
            match committed {
                Ok(_) => Ok(response),
                Err(error) => {
                    // Fail closed: the client never gets an answer whose access is not on record.
                    tracing::error!(error = %error, "the audit store failed; the response is withheld");
                    let mut withheld = respond_error(
                        &FhirError::unavailable("IM1-5101", "the audit trail is unavailable; try again later"),
                        Format::Json,
                        false,
                    );
                    // What the response carried for the layers outside (the interaction it answered, for the
                    // metrics) stays with the answer that replaces it.
                    *withheld.extensions_mut() = response.into_parts().0.extensions;
                    Ok(withheld)
                }
            }
        })
    }
}

fn snapshot(slot: &Mutex<AuditFacts>) -> AuditFacts {
    match slot.lock() {
        Ok(facts) => facts.clone(),
        Err(poisoned) => poisoned.into_inner().clone(),
    }
}

/// How long a response waits for its event to be committed (about a millisecond when the store is well)
/// before it is withheld with a 503: a stalled disk then turns requests away instead of holding them all. An
/// event the writer has already taken into a commit is waited for once more (see `AuditStore::record_within`).
pub const COMMIT_DEADLINE: std::time::Duration = std::time::Duration::from_secs(5);

/// The status recorded for a request its client gave up on (nginx's "client closed request").
pub const CLIENT_CLOSED: u16 = 499;

/// Records the interaction of a request whose client gave up before its answer (its future dropped: a reset
/// HTTP/2 stream, a closed connection): what it reached until then (patients, native calls) is on record too.
struct Abandoned {
    slot: Arc<Mutex<AuditFacts>>,
    store: AuditStore,
    /// Until the pipeline has answered.
    armed: bool,
}

impl Drop for Abandoned {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        let mut facts = snapshot(&self.slot);
        facts.status = CLIENT_CLOSED;
        facts.ended = time::OffsetDateTime::now_utc();
        facts.outcome_code.get_or_insert_with(|| "IM1-1122".into());
        facts
            .outcome_text
            .get_or_insert_with(|| "the client closed the request before its answer".into());
        let store = self.store.clone();
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) => {
                runtime.spawn(async move {
                    // No response waits on it: no deadline either.
                    if let Err(error) = store.record(facts).await {
                        tracing::error!(error = %error, "the audit store failed to record an abandoned request");
                    }
                });
            }
            Err(_) => tracing::error!("an abandoned request could not be audited: no runtime"),
        }
    }
}

fn initial_facts<B>(request: &Request<B>) -> AuditFacts {
    let now = time::OffsetDateTime::now_utc();
    let path = request.uri().path();
    AuditFacts {
        request_id: request
            .headers()
            .get("x-request-id")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string(),
        started: now,
        ended: now,
        method: request.method().to_string(),
        interaction: "unknown".into(),
        resource_type: path
            .strip_prefix("/fhir/")
            .and_then(|rest| rest.split('/').next())
            .filter(|t| t.starts_with(|c: char| c.is_ascii_uppercase()) && t.len() <= 64)
            .map(String::from),
        resource_id: None,
        query: None,
        who: None,
        client_address: request
            .extensions()
            .get::<crate::server::client_address::ClientAddress>()
            .map(|address| address.0.to_string()),
        patients: Vec::new(),
        status: 0,
        outcome_code: None,
        outcome_text: None,
        native_calls: Vec::new(),
        cache: Default::default(),
        practices: Vec::new(),
    }
}
