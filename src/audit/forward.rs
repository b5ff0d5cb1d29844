//! Optional forwarding of committed AuditEvents as JSON lines (one event per line) to a file, for a log shipper.
//!
//! The database is the record; the file is a copy. So forwarding happens after the commit, on its own thread, fed
//! through a bounded queue that the writer never waits on: a slow or failing file costs forwarded lines (with a
//! warning), never a commit. Warnings name the path and the I/O error, never event content.

use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender, TrySendError};
use std::thread::JoinHandle;

/// Batches waiting to be written before new ones are dropped.
const QUEUE: usize = 1024;

pub(crate) struct Forwarder {
    queue: Option<SyncSender<Vec<String>>>,
    thread: Option<JoinHandle<()>>,
}

impl Forwarder {
    /// Starts the forwarding thread. The file is opened (for appending, created if missing) now, to warn early
    /// about a bad path, and again after any failure.
    pub(crate) fn start(path: PathBuf) -> std::io::Result<Forwarder> {
        let (queue, batches) = sync_channel(QUEUE);
        let thread = std::thread::Builder::new()
            .name("audit-forward".into())
            .spawn(move || run(&path, batches))?;
        Ok(Forwarder {
            queue: Some(queue),
            thread: Some(thread),
        })
    }

    /// Hands over the JSON of a committed batch, without waiting.
    pub(crate) fn send(&self, lines: Vec<String>) {
        let Some(queue) = &self.queue else { return };
        match queue.try_send(lines) {
            Ok(()) => {}
            Err(TrySendError::Full(lines)) => {
                tracing::warn!(
                    events = lines.len(),
                    "audit forwarding is behind; events left out of the JSON-lines file"
                );
            }
            Err(TrySendError::Disconnected(lines)) => {
                tracing::warn!(
                    events = lines.len(),
                    "audit forwarding has stopped; events left out of the JSON-lines file"
                );
            }
        }
    }
}

impl Drop for Forwarder {
    /// Writes what is queued, then stops.
    fn drop(&mut self) {
        drop(self.queue.take());
        if let Some(thread) = self.thread.take() {
            if thread.join().is_err() {
                tracing::warn!("audit forwarding thread panicked");
            }
        }
    }
}

fn run(path: &Path, batches: Receiver<Vec<String>>) {
    let mut file = open(path);
    while let Ok(lines) = batches.recv() {
        if file.is_none() {
            file = open(path);
        }
        let Some(out) = file.as_mut() else {
            let events = lines.len();
            tracing::warn!(path = %path.display(), events, "audit forwarding file unavailable; events left out");
            continue;
        };
        let written = lines.iter().try_for_each(|line| {
            out.write_all(line.as_bytes())?;
            out.write_all(b"\n")
        });
        if let Err(error) = written.and_then(|()| out.flush()) {
            tracing::warn!(path = %path.display(), %error, "audit forwarding failed; will reopen the file");
            file = None;
        }
    }
}

fn open(path: &Path) -> Option<BufWriter<File>> {
    let mut options = OpenOptions::new();
    options.create(true).append(true);
    // Owner only, as the store (`db::create_private`): the copy holds NHS numbers too.
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    match options.open(path) {
        Ok(file) => Some(BufWriter::new(file)),
        Err(error) => {
            tracing::warn!(path = %path.display(), %error, "cannot open the audit forwarding file");
            None
        }
    }
}
