//! The durable store: `record()` resolves only once its event is committed, and commits are grouped.
//!
//! Requests hand their event (already serialised, on their own task) to one writer thread through a bounded
//! channel. The writer takes whatever is waiting, up to `max_batch`, writes it all in one transaction, commits,
//! and only then wakes each waiter through its oneshot. Under load one commit (and, with `FULL`, one fsync) serves
//! many requests; when idle a batch is one event and waits for nobody.
//!
//! Checkpoints run on a third thread with its own connection, nudged after commits and at most every
//! [`CHECKPOINT_SPACING`]. A `PASSIVE` checkpoint never takes the write lock, so commits carry on while it copies
//! pages; running it on the writer thread instead, even "when idle", would hold the next commit behind it, and a
//! checkpoint of a large WAL is the several-ms spike measured in design.md.
//!
//! Failure is loud and local: if the writer cannot commit, every waiter of that batch gets `Commit`; if the writer
//! is gone, `record` gets `WriterStopped` at once rather than hanging. An event whose caller stops waiting (a
//! dropped future) is still committed.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, RecvTimeoutError, SyncSender};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use rusqlite::Connection;
use serde_json::Value;
use tokio::sync::{mpsc, oneshot};

use super::db::{self, EventRow, Fate, Settled, Synchronous};
use super::error::AuditError;
use super::event::audit_event;
use super::facts::AuditFacts;
use super::forward::Forwarder;
use super::query::{self, AuditQuery};

/// A response waiting for its event's commit: dropped before the wait ends (its client left), it settles the
/// event's fate as left, so the event, committed later, says the client got nothing.
pub(super) struct Waiting(pub(super) Arc<Fate>);

impl Drop for Waiting {
    fn drop(&mut self) {
        // Taken into a commit already: left while it is under way, if it still is (a no-op once it is over).
        if self.0.settle(Settled::Left) == Settled::Claimed {
            self.0.give_up_late(Settled::Left);
        }
    }
}

/// After a commit, before its waiters hear of it: the events whose responses stopped waiting while it was under
/// way say so (relabelled in memory: stored again by the caller if the commit stored them, else kept for later
/// as every event of a failed commit is). Where they are in `rows`.
fn relabel_late(rows: &mut [EventRow]) -> Vec<usize> {
    let mut late = Vec::new();
    for (i, row) in rows.iter_mut().enumerate() {
        if let Some(how) = row.fate.as_ref().and_then(|fate| fate.finish()) {
            row.settled_as(how);
            late.push(i);
        }
    }
    late
}

/// The least time between two background checkpoints.
pub const CHECKPOINT_SPACING: Duration = Duration::from_millis(100);

/// How the store is opened.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditConfig {
    /// The SQLite file (its `-wal` and `-shm` files sit beside it).
    pub path: PathBuf,
    pub synchronous: Synchronous,
    /// The most events in one transaction.
    pub max_batch: usize,
    /// Also append each committed event, as one JSON line, to this file.
    pub forward_jsonl: Option<PathBuf>,
}

impl AuditConfig {
    pub fn new(path: impl Into<PathBuf>) -> AuditConfig {
        AuditConfig {
            path: path.into(),
            synchronous: Synchronous::Normal,
            max_batch: 256,
            forward_jsonl: None,
        }
    }
}

/// A handle on the store; clones share one writer.
#[derive(Clone)]
pub struct AuditStore {
    inner: Arc<Inner>,
}

/// Recordings in flight through `record_within` at most (each a few KB of facts).
const MAX_BACKLOG: usize = 10_000;

struct Inner {
    commands: mpsc::Sender<Command>,
    /// Places for recordings whose response has stopped waiting (see `record_within`).
    backlog: Arc<tokio::sync::Semaphore>,
    /// Searches take turns on one read-only connection; WAL lets it read while the writer writes.
    reader: Mutex<Connection>,
    /// Whether the last commit failed (a full disk, a locked file): until one succeeds, nothing that reaches
    /// a GP record is served, since its event could not be kept. Set by the writer, which sees commits in order.
    failing: Arc<AtomicBool>,
    /// Whether a probe is queued already: however often readiness is asked, one at a time.
    probe_queued: Arc<AtomicBool>,
}

enum Command {
    Record(Box<EventRow>, oneshot::Sender<Result<(), AuditError>>),
    /// Whether the database takes writes again (see `AuditStore::probe`).
    Probe,
    Close(oneshot::Sender<()>),
}

impl std::fmt::Debug for AuditStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuditStore").finish_non_exhaustive()
    }
}

impl AuditStore {
    /// Opens or creates the database and starts the writer. Fails if the file cannot be opened for writing.
    pub fn open(config: &AuditConfig) -> Result<AuditStore, AuditError> {
        let path = &config.path;
        let writer = db::open_writer(path, config.synchronous)?;
        let reader = db::open_side(path, true)?;
        let checkpointer = Checkpointer::start(db::open_side(path, false)?).map_err(|e| AuditError::open(path, e))?;
        let forward = match &config.forward_jsonl {
            Some(file) => Some(Forwarder::start(file.clone()).map_err(|e| AuditError::open(file, e))?),
            None => None,
        };
        let max_batch = config.max_batch.max(1);
        let (commands, queue) = mpsc::channel(max_batch.saturating_mul(4).max(1024));
        let failing = Arc::new(AtomicBool::new(false));
        let probe_queued = Arc::new(AtomicBool::new(false));
        let writer = Writer {
            conn: writer,
            queue,
            max_batch,
            forward,
            checkpointer,
            failing: failing.clone(),
            probe_queued: probe_queued.clone(),
            held: Vec::new(),
        };
        std::thread::Builder::new()
            .name("audit-writer".into())
            .spawn(move || writer.run())
            .map_err(|e| AuditError::open(path, e))?;
        Ok(AuditStore {
            inner: Arc::new(Inner {
                commands,
                backlog: Arc::new(tokio::sync::Semaphore::new(MAX_BACKLOG)),
                reader: Mutex::new(reader),
                failing,
                probe_queued,
            }),
        })
    }

    /// As [`AuditStore::record`], but waiting at most `deadline` (queueing included), so that a stalled store
    /// turns requests away rather than holding each, its response in memory, for as long as the stall lasts.
    /// Only the waiting is given up: the event is recorded by a task of its own, which queues it and sees it
    /// committed whenever the store can (a client leaving cannot cancel it either). An event the writer takes
    /// into a commit before the deadline is waited for once more (that commit's outcome decides the answer).
    /// An event committed after its response stopped waiting says what its client got (see [`Fate`]): a 503
    /// (IM1-5101) past the deadline, nothing (499) if the client left; if its commit was under way then, the
    /// writer corrects it once stored.
    pub async fn record_within(&self, facts: AuditFacts, deadline: Duration) -> Result<String, AuditError> {
        // Recordings no one waits for any more are bounded: past the bound, under a long stall, an event is
        // lost rather than the process's memory, and that is logged.
        let Ok(backlog) = self.inner.backlog.clone().try_acquire_owned() else {
            tracing::error!("the audit backlog is full: an event is not recorded and its response is withheld");
            return Err(AuditError::Deadline(deadline));
        };
        let store = self.clone();
        let waiting = Waiting(Arc::new(Fate::default()));
        let fate = waiting.0.clone();
        let mut recording = tokio::spawn(async move {
            let result = store.record_fated(facts, Some(fate)).await;
            if let Err(error) = &result {
                // Said here too: after the deadline, nobody else reads it.
                tracing::error!(error = %error, "an AuditEvent could not be recorded");
            }
            drop(backlog);
            result
        });
        let joined = match tokio::time::timeout(deadline, &mut recording).await {
            Ok(joined) => joined,
            Err(_) if waiting.0.settle(Settled::Withheld) != Settled::Claimed => {
                return Err(AuditError::Deadline(deadline))
            }
            // Taken into a commit before the deadline: that commit's outcome decides, waited for once more.
            Err(_) => match tokio::time::timeout(deadline, &mut recording).await {
                Ok(joined) => joined,
                // Withheld while the commit is under way: the writer corrects the event once it is stored.
                Err(_) if waiting.0.give_up_late(Settled::Withheld) => {
                    tracing::error!("a commit outlasted twice the deadline: its response is withheld");
                    return Err(AuditError::Deadline(deadline));
                }
                // The commit's outcome is in, on its way to this response: it decides.
                Err(_) => recording.await,
            },
        };
        joined.unwrap_or_else(|e| Err(AuditError::Commit(format!("the commit task failed: {e}"))))
    }

    /// Records one interaction and returns its AuditEvent id once the event is committed.
    pub async fn record(&self, facts: AuditFacts) -> Result<String, AuditError> {
        self.record_fated(facts, None).await
    }

    /// As [`AuditStore::record`], the event labelled as its response's `fate` settles.
    pub(super) async fn record_fated(&self, facts: AuditFacts, fate: Option<Arc<Fate>>) -> Result<String, AuditError> {
        let id = uuid::Uuid::new_v4().to_string();
        let json = audit_event(&id, &facts).to_string();
        let mut row = EventRow::new(id.clone(), &facts, json);
        row.fate = fate;
        let (done, committed) = oneshot::channel();
        self.inner
            .commands
            .send(Command::Record(Box::new(row), done))
            .await
            .map_err(|_| AuditError::WriterStopped)?;
        committed.await.map_err(|_| AuditError::WriterStopped)??;
        Ok(id)
    }

    /// The stored AuditEvents matching the query, newest first. Blocking: from async code use
    /// [`AuditStore::search_async`] or `spawn_blocking`.
    pub fn search(&self, query: &AuditQuery) -> Result<Vec<Value>, AuditError> {
        let reader = self
            .inner
            .reader
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        query::run(&reader, query)
    }

    /// One page of a search and how many match in all, on the blocking thread pool.
    pub async fn search_async(&self, query: AuditQuery) -> Result<query::AuditPage, AuditError> {
        let store = self.clone();
        tokio::task::spawn_blocking(move || {
            let reader = store
                .inner
                .reader
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            query::run_page(&reader, &query)
        })
        .await
        .map_err(|e| AuditError::Search(e.to_string()))?
    }

    /// How many events are stored. Blocking, like `search`.
    pub fn count(&self) -> Result<u64, AuditError> {
        let reader = self
            .inner
            .reader
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        db::count(&reader).map_err(|e| AuditError::Search(e.to_string()))
    }

    /// Commits what is queued, checkpoints, and stops the writer (for every clone of this handle). Later `record`
    /// calls on any clone fail with `WriterStopped`.
    /// Whether the writer still takes events (not closed, not gone after an error): readiness follows it, since
    /// nothing is served unaudited.
    pub fn is_accepting(&self) -> bool {
        // A full queue is a writer that has fallen behind (or stalled): new events would only wait.
        !self.inner.commands.is_closed() && self.inner.commands.capacity() > 0 && !self.is_failing()
    }

    /// Whether the last commit failed. It ends with the first that succeeds: a refused request's own event,
    /// or a [`AuditStore::probe`] (readiness asks for one), so a store that recovers is used again without a
    /// restart even while no traffic arrives.
    pub fn is_failing(&self) -> bool {
        self.inner.failing.load(Ordering::Acquire)
    }

    /// While failing, asks the writer to try a commit of one probe row (`db::probe`), which ends the failing
    /// state if it succeeds. Does not wait; nothing is done when the store is well.
    pub fn probe(&self) {
        let queue = self.is_failing()
            && self
                .inner
                .probe_queued
                .compare_exchange(false, true, Ordering::AcqRel, Ordering::Acquire)
                .is_ok();
        if queue && self.inner.commands.try_send(Command::Probe).is_err() {
            self.inner.probe_queued.store(false, Ordering::Release);
        }
    }

    pub async fn close(self) {
        let (done, closed) = oneshot::channel();
        if self.inner.commands.send(Command::Close(done)).await.is_ok() {
            let _ = closed.await;
        }
    }
}

/// The writer thread's state.
struct Writer {
    conn: Connection,
    queue: mpsc::Receiver<Command>,
    max_batch: usize,
    forward: Option<Forwarder>,
    checkpointer: Checkpointer,
    /// Shared with the handles: whether the last commit (or probe) failed.
    failing: Arc<AtomicBool>,
    /// Shared with the handles: set while a probe is queued.
    probe_queued: Arc<AtomicBool>,
    /// The events of commits that failed, committed with the next (at most `MAX_HELD`).
    held: Vec<EventRow>,
}

/// The most events kept from failed commits, in memory until one succeeds.
const MAX_HELD: usize = 10_000;

type Waiter = oneshot::Sender<Result<(), AuditError>>;

impl Writer {
    fn run(mut self) {
        let mut rows: Vec<EventRow> = Vec::with_capacity(self.max_batch);
        let mut waiters: Vec<Waiter> = Vec::with_capacity(self.max_batch);
        let mut closing: Vec<oneshot::Sender<()>> = Vec::new();
        // Blocks until there is work; `None` once every handle is dropped.
        while let Some(first) = self.queue.blocking_recv() {
            let mut next = Some(first);
            while let Some(command) = next.take() {
                match command {
                    Command::Record(row, waiter) => {
                        rows.push(*row);
                        waiters.push(waiter);
                    }
                    Command::Probe => self.probe(),
                    Command::Close(done) => {
                        // Refuse new events; those already queued are still drained and committed below.
                        self.queue.close();
                        closing.push(done);
                    }
                }
                if rows.len() < self.max_batch {
                    next = self.queue.try_recv().ok();
                }
            }
            self.commit(&mut rows, &mut waiters);
        }
        self.shut_down(closing);
    }

    fn commit(&mut self, rows: &mut Vec<EventRow>, waiters: &mut Vec<Waiter>) {
        if rows.is_empty() {
            return;
        }
        // An event whose response stopped waiting before now says what its client got.
        for row in rows.iter_mut() {
            if let Some(how) = row.fate.as_ref().map(|fate| fate.settle(Settled::Claimed)) {
                row.settled_as(how);
            }
        }
        let outcome = db::insert_batch(&mut self.conn, rows.iter()).map_err(|e| e.to_string());
        self.failing.store(outcome.is_err(), Ordering::Release);
        let late = relabel_late(rows);
        for waiter in waiters.drain(..) {
            // A waiter that has gone away (its request was dropped) still has its event committed.
            let _ = waiter.send(outcome.clone().map_err(AuditError::Commit));
        }
        match outcome {
            Ok(()) => {
                // Stored again once the waiters are woken: nobody waits on these, and a slow write of them must
                // not hold the others' answers.
                let corrected = late.is_empty() || {
                    let corrections = late.iter().map(|&i| &rows[i]);
                    match db::insert_batch(&mut self.conn, corrections) {
                        Ok(()) => true,
                        Err(error) => {
                            // Failing like any commit: the next commit or probe stores them with the kept events,
                            // and only then are they forwarded (the copy says what the database says).
                            self.failing.store(true, Ordering::Release);
                            let mut kept: Vec<EventRow> = late.iter().rev().map(|&i| rows.remove(i)).collect();
                            kept.reverse();
                            self.hold(
                                kept,
                                &error.to_string(),
                                "late AuditEvent corrections are kept for later",
                            );
                            false
                        }
                    }
                };
                self.committed(std::mem::take(rows));
                if corrected {
                    self.flush_held();
                }
            }
            Err(message) => {
                rows.iter_mut()
                    .for_each(|row| row.withheld("the audit trail could not commit"));
                let kept = std::mem::take(rows);
                self.hold(
                    kept,
                    &message,
                    "audit commit failed: the batch's responses are withheld and its events kept for later",
                );
            }
        }
    }

    /// Keeps events a commit could not store, for later. Bounded: under a long outage the oldest are lost rather
    /// than the process's memory.
    fn hold(&mut self, rows: Vec<EventRow>, error: &str, what: &str) {
        self.held.extend(rows);
        let lost = self.held.len().saturating_sub(MAX_HELD);
        self.held.drain(..lost);
        tracing::error!(held = self.held.len(), lost, error = %error, "{what}");
    }

    /// After a commit: forwarded, and a checkpoint nudged.
    fn committed(&mut self, rows: Vec<EventRow>) {
        if let Some(forward) = &self.forward {
            forward.send(rows.into_iter().map(|row| row.json).collect());
        }
        self.checkpointer.nudge();
    }

    /// Commits the events kept from failed commits, a batch at a time, once the store takes commits again. A
    /// batch that still fails is tried event by event, and an event that cannot be stored at all (the store
    /// taking others) is dropped, logged, rather than block every later one.
    fn flush_held(&mut self) {
        while !self.held.is_empty() {
            let batch: Vec<EventRow> = self.held.drain(..self.held.len().min(self.max_batch)).collect();
            if db::insert_batch(&mut self.conn, batch.iter()).is_ok() {
                self.committed(batch);
                continue;
            }
            let mut rows = batch.into_iter();
            while let Some(row) = rows.next() {
                let Err(error) = db::insert_batch(&mut self.conn, std::iter::once(&row)) else {
                    self.committed(vec![row]);
                    continue;
                };
                // The store failing again (a lock held, or a probe row does not commit either) keeps the rest
                // for later: only an event the store takes no part of, while it takes others, is dropped.
                if db::is_transient(&error) || db::probe(&mut self.conn).is_err() {
                    self.failing.store(true, Ordering::Release);
                    let rest: Vec<EventRow> = std::iter::once(row).chain(rows).collect();
                    self.held.splice(0..0, rest);
                    return;
                }
                tracing::error!(%error, event = %row.id, "a kept AuditEvent cannot be stored; it is dropped");
            }
        }
    }

    /// Whether the store takes commits again, while it is failing: a cheap commit of one probe row first
    /// (waiting little for a held lock, so events queued behind it do not wait long), then the kept events.
    fn probe(&mut self) {
        self.probe_queued.store(false, Ordering::Release);
        if !self.failing.load(Ordering::Acquire) {
            return;
        }
        let _ = self.conn.busy_timeout(Duration::from_millis(100));
        let taken = db::probe(&mut self.conn);
        let _ = self.conn.busy_timeout(db::BUSY_TIMEOUT);
        if taken.is_ok() {
            self.failing.store(false, Ordering::Release);
            self.flush_held();
        }
    }

    fn shut_down(mut self, closing: Vec<oneshot::Sender<()>>) {
        self.flush_held();
        if !self.held.is_empty() {
            tracing::error!(
                lost = self.held.len(),
                "the audit store closes with events it could not commit"
            );
        }
        let Writer {
            conn,
            forward,
            checkpointer,
            ..
        } = self;
        drop(checkpointer);
        if let Err(error) = db::checkpoint(&conn, true) {
            tracing::warn!(%error, "audit store: the final checkpoint failed; the WAL is replayed on next open");
        }
        // Flushes the forwarding file before `close` returns.
        drop(forward);
        drop(conn);
        for done in closing {
            let _ = done.send(());
        }
    }
}

/// The background checkpoint thread (see the module doc).
struct Checkpointer {
    nudges: Option<SyncSender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl Checkpointer {
    fn start(conn: Connection) -> std::io::Result<Checkpointer> {
        let (nudges, wake) = sync_channel(1);
        let thread = std::thread::Builder::new()
            .name("audit-checkpoint".into())
            .spawn(move || checkpoints(&conn, wake))?;
        Ok(Checkpointer {
            nudges: Some(nudges),
            thread: Some(thread),
        })
    }

    /// Asks for a checkpoint soon; never waits (a pending nudge already covers this one).
    fn nudge(&self) {
        if let Some(nudges) = &self.nudges {
            let _ = nudges.try_send(());
        }
    }
}

impl Drop for Checkpointer {
    fn drop(&mut self) {
        drop(self.nudges.take());
        if let Some(thread) = self.thread.take() {
            if thread.join().is_err() {
                tracing::warn!("audit checkpoint thread panicked");
            }
        }
    }
}

fn checkpoints(conn: &Connection, wake: Receiver<()>) {
    let mut due = wake.recv().is_ok();
    while due {
        if let Err(error) = db::checkpoint(conn, false) {
            tracing::warn!(%error, "audit store: background checkpoint failed");
        }
        // Space checkpoints out; a nudge that comes meanwhile makes the next one due at the end of the spacing.
        let until = Instant::now() + CHECKPOINT_SPACING;
        due = false;
        loop {
            let left = until.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            match wake.recv_timeout(left) {
                Ok(()) => due = true,
                Err(RecvTimeoutError::Timeout) => break,
                Err(RecvTimeoutError::Disconnected) => return,
            }
        }
        if !due {
            due = wake.recv().is_ok();
        }
    }
}
