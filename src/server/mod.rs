//! The HTTP server: the listener (TLS, HTTP/1.1 and HTTP/2, graceful shutdown) and the tower stack.

pub mod listener;
pub mod stack;

/// The body type responses leave the stack with.
pub type ResponseBody = http_body_util::combinators::UnsyncBoxBody<bytes::Bytes, tower::BoxError>;
