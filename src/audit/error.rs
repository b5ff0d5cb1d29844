//! What can go wrong with the audit store. Every variant means "this interaction cannot be audited", so the caller
//! fails closed (503) whatever the variant; the variants exist for the log line and the tests.
//!
//! Messages name paths and SQLite's own text, never event content: the SQL is parameterised, so SQLite's messages
//! cannot carry an identifier.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    /// The database could not be opened or prepared (missing directory, no permission, not a database, not WAL).
    #[error("cannot open the audit store {path}: {message}")]
    Open { path: PathBuf, message: String },
    /// A write transaction failed (disk full, I/O error); no event of that batch was committed.
    #[error("the audit store could not commit: {0}")]
    Commit(String),
    /// A read failed.
    #[error("the audit store could not be searched: {0}")]
    Search(String),
    /// The writer thread has stopped (closed, or gone after an error), so nothing can be committed.
    #[error("the audit writer has stopped")]
    WriterStopped,
    /// The event was not committed in time (a stalled disk, a queue backed up behind one): the caller stops
    /// waiting; the event is still queued and committed once the store can.
    #[error("the audit store did not commit within {0:?}")]
    Deadline(std::time::Duration),
}

impl AuditError {
    pub(crate) fn open(path: &std::path::Path, error: impl std::fmt::Display) -> AuditError {
        AuditError::Open {
            path: path.to_path_buf(),
            message: error.to_string(),
        }
    }
}
