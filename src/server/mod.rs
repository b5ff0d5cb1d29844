//! The HTTP server: the listener (TLS, HTTP/1.1 and HTTP/2, graceful shutdown) and the tower stack.

pub mod client_address;
pub mod failed_auth;
pub mod limits;
pub mod listener;
pub mod preflight;
pub mod stack;

/// The scheme a request came in by (`https` when this server terminates TLS), for the links made from its
/// host when no public base URL is configured.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Scheme(pub &'static str);

/// Paths that are operational, not FHIR interactions: probes and scrapes, neither audited nor refused for
/// their address.
pub fn is_operational(path: &str) -> bool {
    matches!(path, "/healthz" | "/readyz" | "/metrics")
}

/// The body type responses leave the stack with.
pub type ResponseBody = http_body_util::combinators::UnsyncBoxBody<bytes::Bytes, tower::BoxError>;
