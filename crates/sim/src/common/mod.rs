//! Plumbing shared by every simulator, so the three dialects differ only in what is theirs.
//!
//! - [`server`]: `serve(listener, handler)` → [`SimHandle`] (address, base URL, counters, graceful shutdown),
//!   with fault injection and the `/_sim/stats` control path applied before the dialect sees a request.
//! - [`faults`]: the fault names (`X-Sim-Fault` header) and per-simulator rates.
//! - [`stats`]: call and committed-write counters, in process and as JSON.
//! - [`throttle`]: per-key rate limiter and one-request-at-a-time guard, both switchable off.
//! - [`idempotency`]: replay store for repeated request keys.
//! - [`framing`]: 4-byte big-endian length-prefixed UTF-8 frames over TCP, and a framed server.

pub mod faults;
pub mod framing;
pub mod idempotency;
pub mod server;
pub mod stats;
pub mod throttle;

pub use faults::{Fault, FaultPlan, FaultRates, InjectedReply};
pub use server::{serve, serve_with, Handler, RequestContext, ServeConfig, SimHandle, SimRequest, SimResponse};
pub use stats::Stats;
