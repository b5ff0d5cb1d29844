//! A replay store for repeated request keys (an `Idempotency-Key` header, a repeated message `uuid`).
//!
//! [`ReplayStore::begin`] either hands out a ticket (first time: do the work, then [`ReplayTicket::complete`]
//! with the reply) or returns the stored reply. With a request fingerprint, the same key with a different
//! body is a [`Begin::Mismatch`]; a key whose first request is still running is [`Begin::InProgress`]. A ticket
//! dropped without completing frees the key, so a failed attempt can be retried.

use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// SHA-256 of a request body, for [`ReplayStore::begin`].
pub fn fingerprint(body: &[u8]) -> [u8; 32] {
    Sha256::digest(body).into()
}

#[derive(Debug)]
enum Entry<R> {
    InProgress {
        fingerprint: Option<[u8; 32]>,
    },
    Done {
        fingerprint: Option<[u8; 32]>,
        reply: R,
        at: Instant,
    },
}

type Key = (String, String);

#[derive(Debug)]
struct Inner<R> {
    ttl: Duration,
    entries: Mutex<HashMap<Key, Entry<R>>>,
}

/// Stored replies by (scope, key) for `ttl`. Cloning shares the store.
#[derive(Debug)]
pub struct ReplayStore<R> {
    inner: Arc<Inner<R>>,
}

impl<R> Clone for ReplayStore<R> {
    fn clone(&self) -> Self {
        ReplayStore {
            inner: self.inner.clone(),
        }
    }
}

/// The outcome of [`ReplayStore::begin`].
#[derive(Debug)]
pub enum Begin<R> {
    /// First sight of the key: do the work and complete the ticket.
    Fresh(ReplayTicket<R>),
    /// Seen before with the same request: send this reply again.
    Replay(R),
    /// Seen before with a different request body.
    Mismatch,
    /// The first request with this key has not finished.
    InProgress,
}

/// The right to store the reply for one key.
#[derive(Debug)]
pub struct ReplayTicket<R> {
    inner: Arc<Inner<R>>,
    key: Option<Key>,
}

impl<R: Clone> ReplayStore<R> {
    /// A store that keeps replies for `ttl` (24 hours in the dialects that define one).
    pub fn new(ttl: Duration) -> Self {
        ReplayStore {
            inner: Arc::new(Inner {
                ttl,
                entries: Mutex::new(HashMap::new()),
            }),
        }
    }

    /// Look up `key` within `scope` (an app, account or device). Pass a fingerprint to detect a reused key
    /// with a different request; None compares keys only.
    pub fn begin(&self, scope: &str, key: &str, fingerprint: Option<[u8; 32]>) -> Begin<R> {
        let now = Instant::now();
        let mut entries = self.inner.entries.lock().unwrap_or_else(|e| e.into_inner());
        let ttl = self.inner.ttl;
        entries.retain(|_, e| !matches!(e, Entry::Done { at, .. } if now.duration_since(*at) > ttl));
        let k = (scope.to_string(), key.to_string());
        match entries.get(&k) {
            Some(Entry::InProgress { fingerprint: f }) => {
                if fingerprint.is_some() && f.is_some() && *f != fingerprint {
                    Begin::Mismatch
                } else {
                    Begin::InProgress
                }
            }
            Some(Entry::Done {
                fingerprint: f, reply, ..
            }) => {
                if fingerprint.is_some() && f.is_some() && *f != fingerprint {
                    Begin::Mismatch
                } else {
                    Begin::Replay(reply.clone())
                }
            }
            None => {
                entries.insert(k.clone(), Entry::InProgress { fingerprint });
                Begin::Fresh(ReplayTicket {
                    inner: self.inner.clone(),
                    key: Some(k),
                })
            }
        }
    }

    /// Number of keys held (in progress or done).
    pub fn len(&self) -> usize {
        self.inner.entries.lock().unwrap_or_else(|e| e.into_inner()).len()
    }

    /// Whether the store is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl<R> ReplayTicket<R> {
    /// Store the reply to replay for later requests with the same key.
    pub fn complete(mut self, reply: R) {
        if let Some(key) = self.key.take() {
            let mut entries = self.inner.entries.lock().unwrap_or_else(|e| e.into_inner());
            let fingerprint = match entries.get(&key) {
                Some(Entry::InProgress { fingerprint }) => *fingerprint,
                _ => None,
            };
            entries.insert(
                key,
                Entry::Done {
                    fingerprint,
                    reply,
                    at: Instant::now(),
                },
            );
        }
    }
}

impl<R> Drop for ReplayTicket<R> {
    fn drop(&mut self) {
        if let Some(key) = self.key.take() {
            let mut entries = self.inner.entries.lock().unwrap_or_else(|e| e.into_inner());
            if matches!(entries.get(&key), Some(Entry::InProgress { .. })) {
                entries.remove(&key);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replays_same_request_and_refuses_different_body() {
        let store: ReplayStore<String> = ReplayStore::new(Duration::from_secs(60));
        let body = fingerprint(b"{\"a\":1}");
        let Begin::Fresh(ticket) = store.begin("app", "k1", Some(body)) else {
            panic!("fresh")
        };
        assert!(matches!(store.begin("app", "k1", Some(body)), Begin::InProgress));
        ticket.complete("reply-1".to_string());
        assert!(matches!(store.begin("app", "k1", Some(body)), Begin::Replay(r) if r == "reply-1"));
        assert!(matches!(
            store.begin("app", "k1", Some(fingerprint(b"other"))),
            Begin::Mismatch
        ));
        assert!(matches!(store.begin("other-app", "k1", Some(body)), Begin::Fresh(_)));
    }

    #[test]
    fn dropped_ticket_frees_the_key_and_entries_expire() {
        let store: ReplayStore<u32> = ReplayStore::new(Duration::from_millis(20));
        let Begin::Fresh(ticket) = store.begin("dev", "uuid", None) else {
            panic!("fresh")
        };
        drop(ticket);
        let Begin::Fresh(ticket) = store.begin("dev", "uuid", None) else {
            panic!("fresh again")
        };
        ticket.complete(7);
        assert!(matches!(store.begin("dev", "uuid", None), Begin::Replay(7)));
        std::thread::sleep(Duration::from_millis(40));
        assert!(matches!(store.begin("dev", "uuid", None), Begin::Fresh(_)));
    }
}
