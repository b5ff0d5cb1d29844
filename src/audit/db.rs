//! The SQLite side: connection settings, the schema, and the one statement that writes a batch.
//!
//! One `audit_event` row per event, holding the AuditEvent JSON as the record and, beside it, the few columns a
//! search filters on (all indexed). An event may touch several patients, so patients also go to the
//! `audit_patient` side table, which is what `patient=` searches use.
//!
//! Settings, and why:
//! - `journal_mode=WAL`: a commit appends to one file and readers never block the writer.
//! - `synchronous=NORMAL` (default): a commit survives a killed process but not a power cut; `FULL` fsyncs the WAL
//!   on every commit and survives both. Group commit makes either affordable.
//! - `wal_autocheckpoint=0`: SQLite's automatic checkpoint runs inside whichever commit crosses the threshold, a
//!   spike of several ms on a request's path. The store's checkpointer thread runs them instead (see `store.rs`).
//! - `journal_size_limit`: once a checkpoint has caught up, the WAL is cut back to this size instead of staying at
//!   its high-water mark.

use std::path::Path;
use std::sync::atomic::{AtomicU8, Ordering};
use std::time::Duration;

use rusqlite::{Connection, OpenFlags};

use super::error::AuditError;
use super::event::instant;
use super::facts::AuditFacts;

/// How hard a commit is pushed to the disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Synchronous {
    /// Survives a killed process (the default).
    #[default]
    Normal,
    /// Survives a power cut too: an fsync per (group) commit.
    Full,
}

impl Synchronous {
    fn pragma(self) -> &'static str {
        match self {
            Synchronous::Normal => "NORMAL",
            Synchronous::Full => "FULL",
        }
    }
}

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS audit_event (
    id          TEXT PRIMARY KEY,
    recorded    TEXT NOT NULL,
    outcome     TEXT NOT NULL,
    agent       TEXT,
    patient     TEXT,
    entity      TEXT,
    interaction TEXT NOT NULL,
    status      INTEGER NOT NULL,
    json        TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS audit_event_recorded ON audit_event (recorded);
CREATE INDEX IF NOT EXISTS audit_event_patient ON audit_event (patient);
CREATE INDEX IF NOT EXISTS audit_event_agent ON audit_event (agent, recorded);
CREATE INDEX IF NOT EXISTS audit_event_entity ON audit_event (entity, recorded);
CREATE TABLE IF NOT EXISTS audit_patient (
    patient  TEXT NOT NULL,
    event_id TEXT NOT NULL,
    PRIMARY KEY (patient, event_id)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS audit_practice (
    practice TEXT NOT NULL,
    event_id TEXT NOT NULL,
    PRIMARY KEY (practice, event_id)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS audit_practice_event ON audit_practice (event_id);
CREATE TABLE IF NOT EXISTS audit_probe (id INTEGER PRIMARY KEY, at INTEGER NOT NULL);
PRAGMA user_version = 2;
";

/// Creates `path` readable by its owner alone (0600 on Unix), if it does not exist: the trail holds NHS
/// numbers and queries. SQLite gives its WAL and shared-memory files the database file's permissions.
pub(crate) fn create_private(path: &Path) -> std::io::Result<()> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    match options.open(path) {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(e),
    }
}

/// Opens (creating if need be) the database for writing, in WAL mode, with the schema in place.
pub(crate) fn open_writer(path: &Path, synchronous: Synchronous) -> Result<Connection, AuditError> {
    let open = |e: rusqlite::Error| AuditError::open(path, e);
    create_private(path).map_err(|e| AuditError::open(path, e))?;
    let conn = Connection::open(path).map_err(open)?;
    conn.busy_timeout(BUSY_TIMEOUT).map_err(open)?;
    let mode: String = conn
        .pragma_update_and_check(None, "journal_mode", "WAL", |row| row.get(0))
        .map_err(open)?;
    if !mode.eq_ignore_ascii_case("wal") {
        return Err(AuditError::open(path, format!("journal_mode is {mode}, not WAL")));
    }
    conn.pragma_update(None, "synchronous", synchronous.pragma())
        .map_err(open)?;
    conn.pragma_update(None, "wal_autocheckpoint", 0).map_err(open)?;
    conn.pragma_update(None, "journal_size_limit", 64 * 1024 * 1024)
        .map_err(open)?;
    let version: i64 = conn
        .pragma_query_value(None, "user_version", |row| row.get(0))
        .map_err(open)?;
    conn.execute_batch(SCHEMA).map_err(open)?;
    if version == 1 {
        file_by_practice(&conn).map_err(open)?;
    }
    Ok(conn)
}

/// Version 1 stored no practices apart: its events are filed under those their own JSON names (`practice`
/// details), once, so that an auditor's filter holds for them too.
fn file_by_practice(conn: &Connection) -> Result<(), rusqlite::Error> {
    fn practices(value: &serde_json::Value, out: &mut Vec<String>) {
        match value {
            serde_json::Value::Object(map) => {
                if map.get("type").and_then(|t| t.as_str()) == Some("practice") {
                    if let Some(ods) = map.get("valueString").and_then(|v| v.as_str()) {
                        out.push(ods.to_string());
                    }
                }
                map.values().for_each(|v| practices(v, out));
            }
            serde_json::Value::Array(items) => items.iter().for_each(|v| practices(v, out)),
            _ => {}
        }
    }
    let tx = conn.unchecked_transaction()?;
    {
        let mut events = tx.prepare("SELECT id, json FROM audit_event")?;
        let mut file = tx.prepare("INSERT OR IGNORE INTO audit_practice (practice, event_id) VALUES (?1, ?2)")?;
        let rows = events.query_map([], |row| Ok((row.get::<_, String>(0)?, row.get::<_, String>(1)?)))?;
        for row in rows {
            let (id, json) = row?;
            let mut found = Vec::new();
            if let Ok(event) = serde_json::from_str::<serde_json::Value>(&json) {
                practices(&event, &mut found);
            }
            for ods in found {
                file.execute(rusqlite::params![ods, id])?;
            }
        }
    }
    tx.commit()
}

/// A second connection to the same database: for searches (read-only) or for checkpoints.
pub(crate) fn open_side(path: &Path, read_only: bool) -> Result<Connection, AuditError> {
    let open = |e: rusqlite::Error| AuditError::open(path, e);
    let mut flags = OpenFlags::SQLITE_OPEN_NO_MUTEX | OpenFlags::SQLITE_OPEN_URI;
    flags |= if read_only {
        OpenFlags::SQLITE_OPEN_READ_ONLY
    } else {
        OpenFlags::SQLITE_OPEN_READ_WRITE
    };
    let conn = Connection::open_with_flags(path, flags).map_err(open)?;
    conn.busy_timeout(BUSY_TIMEOUT).map_err(open)?;
    if !read_only {
        conn.pragma_update(None, "wal_autocheckpoint", 0).map_err(open)?;
    }
    Ok(conn)
}

/// One event as written: the JSON and the columns searches use.
pub(crate) struct EventRow {
    pub id: String,
    pub recorded: String,
    pub outcome: &'static str,
    pub agent: Option<String>,
    pub patients: Vec<String>,
    /// The practices whose auditors may see the event (none: any auditor).
    pub practices: Vec<String>,
    pub entity: Option<String>,
    pub interaction: String,
    pub status: u16,
    pub json: String,
    /// Whether its response still waits for it (none: nobody gives up waiting).
    pub fate: Option<std::sync::Arc<Fate>>,
    /// Relabelled already: to say the client got a 503, or nothing (see `Fate`).
    relabelled: bool,
}

/// Who settles an event's label first: the writer, taking it into a commit while its response still waits
/// (the commit's outcome then decides the answer), or the response, which stops waiting at its deadline (the
/// client gets a 503) or is dropped because its client left (the client gets nothing). Without it, an event
/// committed after either said the client got what the server had decided. A response may still stop waiting
/// while the commit it was taken into is under way (a held lock, a slow disk): the writer then corrects the
/// event it has just stored.
#[derive(Debug, Default)]
pub(crate) struct Fate(AtomicU8);

/// How an event's fate was settled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Settled {
    /// The writer took it into a commit while its response waited.
    Claimed,
    /// Its response stopped waiting at the deadline: answered 503.
    Withheld,
    /// Its client left while the response waited: answered nothing.
    Left,
}

impl Fate {
    const WAITING: u8 = 0;
    const CLAIMED: u8 = 1;
    const WITHHELD: u8 = 2;
    const LEFT: u8 = 3;
    /// The claimed commit's outcome went to the response.
    const DONE: u8 = 4;
    /// The response stopped waiting while the claimed commit was under way.
    const LATE_WITHHELD: u8 = 5;
    const LATE_LEFT: u8 = 6;

    /// Whether anything has settled it yet.
    #[cfg(test)]
    pub(crate) fn is_settled(&self) -> bool {
        self.0.load(Ordering::Acquire) != Fate::WAITING
    }

    /// Settles the fate as `to` if nothing has yet; how it is settled now.
    pub(crate) fn settle(&self, to: Settled) -> Settled {
        let code = match to {
            Settled::Claimed => Fate::CLAIMED,
            Settled::Withheld => Fate::WITHHELD,
            Settled::Left => Fate::LEFT,
        };
        match self.swap(Fate::WAITING, code) {
            Ok(()) => to,
            Err(Fate::WITHHELD) => Settled::Withheld,
            Err(Fate::LEFT) => Settled::Left,
            // Taken into a commit (whether or not it is over).
            Err(_) => Settled::Claimed,
        }
    }

    /// The response stops waiting (`how`) while the commit it was taken into is under way: whether it did so
    /// before the commit's outcome was in (the writer then corrects the event).
    pub(crate) fn give_up_late(&self, how: Settled) -> bool {
        let code = match how {
            Settled::Left => Fate::LATE_LEFT,
            _ => Fate::LATE_WITHHELD,
        };
        self.swap(Fate::CLAIMED, code).is_ok()
    }

    /// The writer, with the commit's outcome in and before its response hears it: how the response stopped
    /// waiting during the commit, if it did.
    pub(crate) fn finish(&self) -> Option<Settled> {
        match self.swap(Fate::CLAIMED, Fate::DONE) {
            Err(Fate::LATE_WITHHELD) => Some(Settled::Withheld),
            Err(Fate::LATE_LEFT) => Some(Settled::Left),
            _ => None,
        }
    }

    fn swap(&self, from: u8, to: u8) -> Result<(), u8> {
        self.0
            .compare_exchange(from, to, Ordering::AcqRel, Ordering::Acquire)
            .map(drop)
    }
}

impl EventRow {
    /// The event of an answer withheld (`why`: its commit failed, or did not come in time): whatever the
    /// server had decided, its client got a 503 (IM1-5101), and the event, committed late, says so.
    pub(crate) fn withheld(&mut self, why: &str) {
        // A client that left before its answer (499) was sent nothing to withhold.
        if self.status != super::layer::CLIENT_CLOSED {
            self.relabel(503, "IM1-5101", &format!("withheld, {why}"));
        }
    }

    /// The event of a request whose client left while its answer waited for this event's commit: it was
    /// sent nothing, as for any request given up on (see `layer::Abandoned`).
    pub(crate) fn left(&mut self) {
        self.relabel(
            super::layer::CLIENT_CLOSED,
            "IM1-1122",
            "the client closed the request before its answer",
        );
    }

    /// Says how its response stopped waiting, if it did (taken into a commit while it waited: as it is).
    pub(crate) fn settled_as(&mut self, how: Settled) {
        match how {
            Settled::Withheld => self.withheld("the audit trail did not commit in time"),
            Settled::Left => self.left(),
            Settled::Claimed => {}
        }
    }

    /// Says the client got `status` (and `code`, for `text`) rather than what the server had decided; once.
    fn relabel(&mut self, status: u16, code: &str, text: &str) {
        if std::mem::replace(&mut self.relabelled, true) {
            return;
        }
        let Ok(mut event) = serde_json::from_str::<serde_json::Value>(&self.json) else {
            return;
        };
        // What the server had decided, its code too (the details lose it below).
        let decided_code = event["entity"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|e| e["type"]["code"] == "XrequestId")
            .flat_map(|e| e["detail"].as_array().into_iter().flatten())
            .find(|d| d["type"] == "outcome-code")
            .and_then(|d| d["valueString"].as_str());
        let decided = match decided_code {
            Some(decided_code) => format!("{} {decided_code}", self.status),
            None => self.status.to_string(),
        };
        self.status = status;
        self.outcome = AuditFacts::outcome_of(status);
        event["outcome"] = self.outcome.into();
        event["outcomeDesc"] = format!("{code}: {text} (the server had decided {decided})").into();
        let entities = event["entity"].as_array_mut().into_iter().flatten();
        for entity in entities.filter(|e| e["type"]["code"] == "XrequestId") {
            let Some(details) = entity["detail"].as_array_mut() else {
                continue;
            };
            details.retain(|d| d["type"] != "outcome-code");
            for detail in details.iter_mut().filter(|d| d["type"] == "status") {
                detail["valueString"] = status.to_string().into();
            }
            details.push(serde_json::json!({"type": "outcome-code", "valueString": code}));
        }
        self.json = event.to_string();
    }

    pub(crate) fn new(id: String, facts: &AuditFacts, json: String) -> EventRow {
        EventRow {
            recorded: instant(facts.ended),
            outcome: facts.outcome(),
            agent: facts.who.as_ref().map(|who| who.subject.clone()),
            patients: facts.patient_ids(),
            practices: facts.audit_practices(),
            entity: facts.entity_key(),
            interaction: facts.interaction.clone(),
            status: facts.status,
            json,
            id,
            fate: None,
            relabelled: false,
        }
    }
}

/// Whether a write failed for the state of the database rather than for the row written (another connection
/// holding it, a full disk, an I/O error): it may succeed later as it is.
pub(crate) fn is_transient(error: &rusqlite::Error) -> bool {
    use rusqlite::ErrorCode::{DatabaseBusy, DatabaseLocked, DiskFull, SystemIoFailure};
    matches!(
        error.sqlite_error_code(),
        Some(DatabaseBusy | DatabaseLocked | DiskFull | SystemIoFailure)
    )
}

/// Writes every row in one transaction: all are committed, or none.
/// How long a connection waits for a lock another holds (a checkpoint, a backup) before its statement fails.
pub(crate) const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// Whether the database takes a commit again: one row written over and committed, as an event's would be (a
/// full disk or a held write lock fails it; a rolled-back write would not find the first).
pub(crate) fn probe(conn: &mut Connection) -> Result<(), rusqlite::Error> {
    let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
    tx.execute(
        "INSERT OR REPLACE INTO audit_probe (id, at) VALUES (1, unixepoch())",
        [],
    )?;
    tx.commit()
}

pub(crate) fn insert_batch<'a>(
    conn: &mut Connection,
    rows: impl Iterator<Item = &'a EventRow>,
) -> Result<(), rusqlite::Error> {
    let tx = conn.transaction()?;
    {
        // An event already stored takes the label it carries now, rather than failing the batch: a kept event
        // whose failed commit had in fact been applied (its client got a 503, as it now says), or an event
        // relabelled after its commit because its response stopped waiting while the commit was under way.
        let mut event = tx.prepare_cached(
            "INSERT INTO audit_event (id, recorded, outcome, agent, patient, entity, interaction, status, json)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)
             ON CONFLICT (id) DO UPDATE SET outcome = excluded.outcome, status = excluded.status, json = excluded.json",
        )?;
        let mut patient =
            tx.prepare_cached("INSERT OR IGNORE INTO audit_patient (patient, event_id) VALUES (?1, ?2)")?;
        let mut practice =
            tx.prepare_cached("INSERT OR IGNORE INTO audit_practice (practice, event_id) VALUES (?1, ?2)")?;
        for row in rows {
            event.execute(rusqlite::params![
                row.id,
                row.recorded,
                row.outcome,
                row.agent,
                row.patients.first(),
                row.entity,
                row.interaction,
                row.status,
                row.json,
            ])?;
            for id in &row.patients {
                patient.execute(rusqlite::params![id, row.id])?;
            }
            for ods in &row.practices {
                practice.execute(rusqlite::params![ods, row.id])?;
            }
        }
    }
    tx.commit()
}

/// Copies committed WAL frames into the database without waiting for anyone (`PASSIVE`), or, at shutdown, all of
/// them and truncates the WAL (`TRUNCATE`).
pub(crate) fn checkpoint(conn: &Connection, truncate: bool) -> Result<(), rusqlite::Error> {
    let sql = if truncate {
        "PRAGMA wal_checkpoint(TRUNCATE)"
    } else {
        "PRAGMA wal_checkpoint(PASSIVE)"
    };
    conn.query_row(sql, [], |_| Ok(()))
}

pub(crate) fn count(conn: &Connection) -> Result<u64, rusqlite::Error> {
    let count: i64 = conn.query_row("SELECT count(*) FROM audit_event", [], |row| row.get(0))?;
    Ok(u64::try_from(count).unwrap_or(0))
}
