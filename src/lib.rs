//! im1-fhir: a FHIR R4 (UK Core) facade over the EMIS, SystmOne and Medicus IM1 APIs.
//!
//! One request, top-down (each step a module; the stack itself is `server::stack`):
//! 1. `server`  accepts HTTP/1.1, HTTP/2 and TLS, and runs the tower stack (request id, trace, limits, gzip, CORS);
//! 2. `audit`   wraps everything below, so every interaction leaves one AuditEvent, whatever its outcome;
//! 3. `auth`    turns the bearer token into a `Principal`;
//! 4. `fhir::rest` turns URL and headers into an `Interaction` (bad input becomes an OperationOutcome);
//! 5. `auth::policy` decides whether the principal may make that interaction;
//! 6. `routing` finds the practice's supplier, endpoint and credentials;
//! 7. `mapping` turns the interaction into native requests and the native replies into UK Core resources;
//! 8. `backend` speaks each supplier's transport and session dialect (pooling, deadlines, safe retries);
//! 9. `fhir::bundle` assembles searchsets and paging; `fhir::format` encodes JSON or XML.

#![forbid(unsafe_code)]

pub mod app;
pub mod audit;
pub mod auth;
pub mod backend;
pub mod cache;
pub mod config;
pub mod conformance;
pub mod coverage;
pub mod demo;
pub mod fhir;
pub mod ids;
pub mod mapping;
pub mod metrics;
pub mod policy;
pub mod ratelimit;
pub mod reach;
pub mod record_ops;
pub mod runtime;
pub mod server;
pub mod translate;
pub mod tree;
