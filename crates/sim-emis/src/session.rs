//! PFS sessions (end-user sessions, linked access identities, sessions with their patient links) and
//! Partner access tokens. Tokens are minted from a counter through SHA-256, so two simulators given the same
//! requests in the same order hand out the same tokens (replies stay byte-identical).

use im1_sim::record::Nid;
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

const BASE62: &[u8] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

/// Mints 22-character base-62 tokens.
#[derive(Debug, Default)]
pub struct Mint {
    counter: AtomicU64,
}

impl Mint {
    pub fn token(&self, purpose: &str) -> String {
        let n = self.counter.fetch_add(1, Ordering::Relaxed);
        let mut h = Sha256::new();
        h.update(b"emis-sim token\0");
        h.update(purpose.as_bytes());
        h.update(n.to_be_bytes());
        let hash = h.finalize();
        hash.iter()
            .take(22)
            .map(|b| char::from(BASE62[usize::from(*b) % BASE62.len()]))
            .collect()
    }
}

/// Whether a patient link is the user's own record or a proxy one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Association {
    SelfLink,
    /// Acting for another patient, with the user's relationship to them.
    Proxy(im1_sim::record::Relationship),
}

impl Association {
    pub fn name(self) -> &'static str {
        match self {
            Association::SelfLink => "Self",
            Association::Proxy(_) => "Proxy",
        }
    }
}

/// One `UserPatientLinks` entry of a session.
#[derive(Debug, Clone)]
pub struct Link {
    pub token: String,
    pub patient: Nid,
    pub association: Association,
}

#[derive(Debug)]
struct EndUser {
    last_used: Instant,
}

#[derive(Debug)]
struct Session {
    end_user: String,
    links: Vec<Link>,
    last_used: Instant,
}

/// Why a PFS session check failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SessionError {
    EndUserGone,
    SessionGone,
    UnknownLink,
}

/// All live PFS sessions and Partner tokens.
#[derive(Debug)]
pub struct Sessions {
    mint: Mint,
    end_user_idle: Duration,
    session_idle: Duration,
    token_lifetime: Duration,
    end_users: Mutex<HashMap<String, EndUser>>,
    /// AccessIdentityGuid -> the linked patient (kept for re-linking and sessions).
    identities: Mutex<HashMap<String, Nid>>,
    sessions: Mutex<HashMap<String, Session>>,
    tokens: Mutex<HashMap<String, Instant>>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Sessions {
    pub fn new(end_user_idle: Duration, session_idle: Duration, token_lifetime: Duration) -> Self {
        Sessions {
            mint: Mint::default(),
            end_user_idle,
            session_idle,
            token_lifetime,
            end_users: Mutex::default(),
            identities: Mutex::default(),
            sessions: Mutex::default(),
            tokens: Mutex::default(),
        }
    }

    /// A new `EndUserSessionId`.
    pub fn new_end_user(&self) -> String {
        let id = self.mint.token("end-user");
        let mut map = lock(&self.end_users);
        // Drop idle ones here, so a long run that keeps re-linking does not grow without bound.
        let idle = self.end_user_idle;
        map.retain(|_, e| e.last_used.elapsed() < idle);
        map.insert(
            id.clone(),
            EndUser {
                last_used: Instant::now(),
            },
        );
        id
    }

    /// Check and touch an `EndUserSessionId`.
    pub fn touch_end_user(&self, id: &str) -> Result<(), SessionError> {
        let mut map = lock(&self.end_users);
        let now = Instant::now();
        match map.get_mut(id) {
            Some(e) if now.duration_since(e.last_used) < self.end_user_idle => {
                e.last_used = now;
                Ok(())
            }
            Some(_) => {
                map.remove(id);
                Err(SessionError::EndUserGone)
            }
            None => Err(SessionError::EndUserGone),
        }
    }

    /// Remember that an AccessIdentityGuid stands for a patient.
    pub fn link_identity(&self, guid: &str, patient: Nid) {
        lock(&self.identities).insert(guid.to_string(), patient);
    }

    /// The patient behind an AccessIdentityGuid.
    pub fn identity(&self, guid: &str) -> Option<Nid> {
        lock(&self.identities).get(&guid.to_ascii_uppercase()).cloned()
    }

    /// Open a session for a user with their patient links (self first); returns the SessionId and links.
    pub fn open(&self, end_user: &str, patients: Vec<(Nid, Association)>) -> (String, Vec<Link>) {
        let id = self.mint.token("session");
        let links: Vec<Link> = patients
            .into_iter()
            .map(|(patient, association)| Link {
                token: self.mint.token("link"),
                patient,
                association,
            })
            .collect();
        let mut map = lock(&self.sessions);
        let idle = self.session_idle;
        map.retain(|_, s| s.last_used.elapsed() < idle);
        map.insert(
            id.clone(),
            Session {
                end_user: end_user.to_string(),
                links: links.clone(),
                last_used: Instant::now(),
            },
        );
        (id, links)
    }

    /// Check both session headers and resolve a link token to its patient.
    pub fn patient_for(&self, end_user: &str, session: &str, link_token: &str) -> Result<Link, SessionError> {
        self.touch_end_user(end_user)?;
        let mut map = lock(&self.sessions);
        let now = Instant::now();
        let s = match map.get_mut(session) {
            Some(s) if s.end_user == end_user => s,
            _ => return Err(SessionError::SessionGone),
        };
        if now.duration_since(s.last_used) >= self.session_idle {
            map.remove(session);
            return Err(SessionError::SessionGone);
        }
        s.last_used = now;
        s.links
            .iter()
            .find(|l| l.token == link_token)
            .cloned()
            .ok_or(SessionError::UnknownLink)
    }

    /// A new Partner access token.
    pub fn new_token(&self) -> String {
        let t = self.mint.token("partner-token");
        let mut map = lock(&self.tokens);
        let now = Instant::now();
        map.retain(|_, expires| *expires > now);
        map.insert(t.clone(), now + self.token_lifetime);
        t
    }

    /// Whether a Partner token is live.
    pub fn token_valid(&self, token: &str) -> bool {
        lock(&self.tokens)
            .get(token)
            .is_some_and(|expires| *expires > Instant::now())
    }

    /// Lifetime of Partner tokens in seconds.
    pub fn token_lifetime_secs(&self) -> u64 {
        self.token_lifetime.as_secs()
    }
}
