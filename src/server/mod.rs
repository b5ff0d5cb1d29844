//! The HTTP server: the listener (TLS, HTTP/1.1 and HTTP/2, graceful shutdown) and the tower stack.

pub mod limits;
pub mod listener;
pub mod preflight;
pub mod stack;

/// The scheme a request came in by (`https` when this server terminates TLS), for the links made from its
/// host when no public base URL is configured.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Scheme(pub &'static str);

/// The body type responses leave the stack with.
pub type ResponseBody = http_body_util::combinators::UnsyncBoxBody<bytes::Bytes, tower::BoxError>;
