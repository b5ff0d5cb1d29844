//! The request path as one tower stack, outermost first. Each layer is one concern; the comment above it
//! says why it sits where it does.

use crate::app::{self, AppState, Body};
use crate::fhir::format::Format;
use crate::fhir::FhirError;
use futures_util::FutureExt;
use http::{header, Request, Response, StatusCode};
use std::convert::Infallible;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::Duration;
use tower::ServiceBuilder;
use tower_http::compression::CompressionLayer;
use tower_http::cors::{AllowHeaders, Any, CorsLayer};
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::timeout::TimeoutLayer;
use tower_http::trace::TraceLayer;

use super::client_address::{self, ClientAddress, Peer};
use super::failed_auth::{FailedAuth, FailedAuthLayer};

/// How the stack knows and limits its clients: the proxies whose X-Forwarded-For it believes, and each
/// address's budget of failed authentications.
#[derive(Clone, Default)]
pub struct Clients {
    pub trusted_proxies: Arc<Vec<ipnet::IpNet>>,
    pub failed_auth_per_minute: Option<std::num::NonZeroU32>,
}

/// Builds the service one connection runs.
pub fn stack(
    state: Arc<AppState>,
    request_timeout: Duration,
    tls: bool,
    clients: Clients,
) -> impl tower::Service<
    Request<hyper::body::Incoming>,
    Response = Response<super::ResponseBody>,
    Error = Infallible,
    Future = impl Send,
> + Clone
       + Send {
    // One budget for the server: the stack is built once and cloned for each connection.
    let failed_auth = clients.failed_auth_per_minute.map(|n| Arc::new(FailedAuth::new(n)));
    let trusted_proxies = clients.trusted_proxies;
    ServiceBuilder::new()
        // One boxed body type leaves the stack, whatever the layers below wrapped it in.
        .map_response(|response: Response<_>| response.map(box_body))
        // A client's X-Request-ID is kept only if it is short and plain, so it is safe to log and forward
        // (`drop_unsafe_request_id`).
        .map_request(drop_unsafe_request_id)
        // How the request came in, for links made from its host (an HTTP/1.1 request line names no scheme).
        .map_request(move |mut request: Request<hyper::body::Incoming>| {
            let scheme = super::Scheme(if tls { "https" } else { "http" });
            request.extensions_mut().insert(scheme);
            request
        })
        // Where the request came from, for its AuditEvent and the failed-authentication budget: the peer, or
        // the client a trusted proxy names.
        .map_request(move |mut request: Request<hyper::body::Incoming>| {
            if let Some(Peer(peer)) = request.extensions().get::<Peer>().copied() {
                let address = client_address::resolve(peer, request.headers(), &trusted_proxies);
                request.extensions_mut().insert(ClientAddress(address));
            }
            request
        })
        // Then one is generated when missing; it reaches the handler, the native calls and the logs.
        .layer(SetRequestIdLayer::x_request_id(MakeRequestUuid))
        // And is echoed on every response, errors included.
        .layer(PropagateRequestIdLayer::x_request_id())
        // Spans carry method, the path's route (ids as `{id}`: a client may put an NHS number there; never the
        // query, for the same reason), request id, which finds the rest in the audit trail, and client address.
        .layer(TraceLayer::new_for_http().make_span_with(|request: &Request<_>| {
            let id = request
                .headers()
                .get("x-request-id")
                .and_then(|v| v.to_str().ok())
                .unwrap_or("");
            let route = route_of(request.uri().path());
            // The client's address too: what an operator follows a flood or a failing client by.
            let client = request.extensions().get::<ClientAddress>().map(|a| a.0.to_string());
            let client = client.as_deref().unwrap_or("");
            tracing::info_span!("request", method = %request.method(), route = %route, request_id = %id, client = %client)
        }))
        // Browsers' FHIR apps call from other origins; every response, errors included, carries CORS headers.
        // Only preflights are answered here: another OPTIONS is an interaction, refused (405) and audited below.
        .layer(super::preflight::PreflightsOnly(
            CorsLayer::new()
                .allow_origin(Any)
                .allow_methods(Any)
                // Named back rather than `*`: a wildcard never covers Authorization, and every FHIR call
                // from a browser app carries its token there.
                .allow_headers(AllowHeaders::mirror_request())
                .expose_headers([
                    header::LOCATION,
                    header::ETAG,
                    header::CONTENT_LOCATION,
                    // How old a cached answer is: not one a browser shows scripts unless named.
                    header::AGE,
                    "x-request-id".parse().expect("valid header name"),
                ]),
        ))
        // Compression sits outside the rescue so that OperationOutcomes are compressed too.
        .layer(CompressionLayer::new().gzip(true))
        // Requests are counted by the status their client gets: outside the audit layer, which may withhold
        // an answer (503), and the deadline's.
        .map_future({
            let state = state.clone();
            move |answer| {
                let (state, started) = (state.clone(), std::time::Instant::now());
                async move {
                    let response: Result<Response<Body>, Infallible> = answer.await;
                    if let Ok(response) = &response {
                        state.metrics.count(response, started);
                    }
                    response
                }
            }
        })
        // How old the cached answers it served are, counted until it leaves: after its AuditEvent's commit.
        .map_response(crate::cache::stamp_age)
        // One AuditEvent per interaction, committed before the response leaves; outside the deadline and the
        // whole pipeline, so time-outs, 401s and denials are audited too, and a failing store fails closed.
        .layer(crate::audit::AuditLayer::new(state.audit.clone()))
        // Inside the audit layer, so an address refused for its failed authentications is audited too; outside
        // the handler, so a refused request costs no token check.
        .layer(FailedAuthLayer(failed_auth))
        // The rescue turns any non-FHIR error response from the layers below (a time-out) into an
        // OperationOutcome; FHIR errors from the handler pass through untouched.
        .map_response(rescue)
        // The whole request's deadline; native calls have their own, shorter one (504 from the backend).
        .layer(TimeoutLayer::with_status_code(
            StatusCode::GATEWAY_TIMEOUT,
            request_timeout,
        ))
        .service_fn(move |request| {
            let state = state.clone();
            async move {
                // A defect that panics answers 500 with an OperationOutcome (audited above) rather than
                // dropping the connection with nothing said and nothing recorded.
                let handled = AssertUnwindSafe(app::handle(state, request)).catch_unwind().await;
                Ok::<_, Infallible>(handled.unwrap_or_else(panicked))
            }
        })
}

/// The answer to a request whose handler panicked. What the panic said is not repeated: it may hold data.
fn panicked(_: Box<dyn std::any::Any + Send + 'static>) -> Response<Body> {
    tracing::error!("a request handler panicked; answered 500");
    let error = FhirError::internal("IM1-5004", "the server failed while handling the request");
    app::respond_error(&error, Format::Json, false)
}

fn box_body<B>(body: B) -> super::ResponseBody
where
    B: http_body::Body<Data = bytes::Bytes> + Send + 'static,
    B::Error: Into<tower::BoxError>,
{
    use http_body_util::BodyExt;
    body.map_err(Into::into).boxed_unsync()
}

/// A path as its route: resource types, operations and the server's own words are kept; any other segment (an
/// id, whatever a client wrote there) becomes `{id}`.
fn route_of(path: &str) -> String {
    let kept = |segment: &str| {
        crate::fhir::resource_types::is_resource_type(segment)
            || segment
                .strip_prefix('$')
                .is_some_and(|op| !op.is_empty() && op.bytes().all(|b| b.is_ascii_lowercase() || b == b'-'))
            || matches!(
                segment,
                "fhir"
                    | "metadata"
                    | "_search"
                    | "_history"
                    | ".well-known"
                    | "smart-configuration"
                    | "healthz"
                    | "metrics"
            )
    };
    let segments: Vec<&str> = path
        .split('/')
        .map(|segment| {
            if segment.is_empty() || kept(segment) {
                segment
            } else {
                "{id}"
            }
        })
        .collect();
    segments.join("/")
}

/// A client's X-Request-ID goes into logs, AuditEvents and native calls: one that is long, holds anything but
/// plain characters, or holds a run of ten digits or more (an NHS number, a telephone number) is replaced by
/// one of the server's.
fn drop_unsafe_request_id<B>(mut request: Request<B>) -> Request<B> {
    let unsafe_id = request.headers().get("x-request-id").is_some_and(|v| {
        let bytes = v.as_bytes();
        let longest_digit_run = bytes.split(|b| !b.is_ascii_digit()).map(<[u8]>::len).max().unwrap_or(0);
        bytes.is_empty()
            || bytes.len() > 128
            || !bytes.iter().all(|b| b.is_ascii_alphanumeric() || b"-_.:".contains(b))
            || longest_digit_run >= 10
    });
    if unsafe_id {
        request.headers_mut().remove("x-request-id");
    }
    request
}

fn rescue(response: Response<Body>) -> Response<Body> {
    let status = response.status();
    let is_fhir = response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|c| {
            c.starts_with("application/fhir+")
                || c.starts_with("text/plain")
                || c.starts_with("application/openmetrics")
        });
    if !(status.is_client_error() || status.is_server_error()) || is_fhir {
        return response;
    }
    let error = match status {
        StatusCode::GATEWAY_TIMEOUT => {
            FhirError::gateway_timeout("IM1-5002", "the request took longer than the server's deadline")
        }
        other => FhirError::new(
            other,
            crate::fhir::IssueType::Exception,
            "IM1-5003",
            "the request failed",
        ),
    };
    let mut rescued = app::respond_error(&error, Format::Json, false);
    let headers = rescued.headers_mut();
    if let Some(id) = response.headers().get("x-request-id") {
        headers.insert("x-request-id", id.clone());
    }
    // As every FHIR answer: kept by no cache.
    headers.insert(header::CACHE_CONTROL, http::HeaderValue::from_static("no-store"));
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        http::HeaderValue::from_static("nosniff"),
    );
    rescued
}

#[cfg(test)]
mod tests {
    use super::route_of;

    #[test]
    fn routes_keep_no_ids() {
        assert_eq!(route_of("/fhir/Patient/9000000009"), "/fhir/Patient/{id}");
        assert_eq!(
            route_of("/fhir/Patient/abc/$everything"),
            "/fhir/Patient/{id}/$everything"
        );
        assert_eq!(route_of("/fhir/9000000009"), "/fhir/{id}");
        assert_eq!(route_of("/fhir/$9000000009"), "/fhir/{id}");
        assert_eq!(route_of("/fhir/Observation/_search"), "/fhir/Observation/_search");
        assert_eq!(
            route_of("/fhir/.well-known/smart-configuration"),
            "/fhir/.well-known/smart-configuration"
        );
        assert_eq!(route_of("/healthz"), "/healthz");
    }
}
