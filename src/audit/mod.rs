//! The durable AuditEvent store: one FHIR R4 AuditEvent per interaction, whatever its outcome, committed before
//! the response is released.
//!
//! The pipeline's audit layer gathers [`AuditFacts`] while the request runs and calls [`AuditStore::record`] when
//! the response is known; the future resolves with the event id only after the event's transaction has committed
//! (grouped with whatever else is waiting), so no response leaves without its record. Any error means the
//! interaction could not be audited: the caller fails closed with 503.
//!
//! - `facts`   what the pipeline knows about one interaction (Debug redacts identifiers and token ids);
//! - `event`   facts → AuditEvent JSON shaped like IHE BALP;
//! - `store`   the writer thread, group commit, background checkpoints;
//! - `db`      SQLite settings, schema and the batch insert;
//! - `query`   the auditor's search (typed query, FHIR parameter parsing, SQL);
//! - `redact`  credentials a client sent in a query or a path, kept out of the trail;
//! - `forward` optional JSON-lines copy of committed events;
//! - `layer`   the tower layer that audits every interaction and fails closed.
//!
//! Why SQLite: one file on one machine, WAL commits in tens of microseconds, grouped commits at >100k events/s
//! (design.md, "Cost of a durable AuditEvent"), indexed search without another service; `rusqlite` with the
//! bundled SQLite needs no system library.

mod db;
mod error;
mod event;
mod facts;
mod forward;
mod layer;
mod query;
mod redact;
mod store;

pub use db::Synchronous;
pub use error::AuditError;
pub use event::{action, audit_event, instant, visible_to};
pub use facts::{patient_logical_id, AuditFacts, NativeCallFact, PatientRef, Who};
pub use layer::{note, AuditLayer};
pub use query::{AuditQuery, DEFAULT_COUNT, MAX_COUNT, PARAMS};
pub use store::{AuditConfig, AuditStore, CHECKPOINT_SPACING};

#[cfg(test)]
mod tests;
