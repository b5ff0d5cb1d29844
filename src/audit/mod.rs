//! The durable AuditEvent store: one FHIR R4 AuditEvent per interaction, whatever its outcome, committed before
//! the response is released.
//!
//! The pipeline's audit layer gathers [`AuditFacts`] while the request runs and calls `AuditStore::record` when
//! the response is known; the future resolves with the event id only after the event's transaction has committed
//! (grouped with whatever else is waiting), so no response leaves without its record. Any error means the
//! interaction could not be audited: the caller fails closed with 503.
//!
//! - `facts`   what the pipeline knows about one interaction (Debug redacts identifiers and token ids);
//! - `event`   facts → AuditEvent JSON shaped like IHE BALP.

mod event;
mod facts;

pub use event::{action, audit_event, instant};
pub use facts::{patient_logical_id, AuditFacts, NativeCallFact, PatientRef, Who};
