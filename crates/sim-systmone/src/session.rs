//! PFS linkage and sessions: `LinkAccount` turns the practice's account id + passphrase into a long
//! authentication passphrase; `Authenticate` opens a `suid` session (10 minutes idle) for the user and the
//! patients they may act for.

use crate::render::tsub;
use im1_sim::record::{LinkageSecret, Nid, Record};
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// The authentication passphrase `LinkAccount` returns for an account: derived from the account id and the
/// linkage passphrase, so it survives simulator restarts and cannot be guessed without the linkage secret.
pub fn auth_passphrase(account_id: &str, linkage_passphrase: &str) -> String {
    let key = Nid(format!("{account_id}\0{linkage_passphrase}"));
    format!("{}{}", tsub(&key, "pfs-auth-1"), tsub(&key, "pfs-auth-2"))
}

/// The patient and linkage passphrase behind an account id at a unit.
pub fn account<'r>(record: &'r Record, ods: &str, account_id: &str) -> Option<(&'r Nid, &'r str)> {
    record.credentials.iter().find_map(|c| match &c.secret {
        LinkageSecret::AccountPassphrase {
            account_id: a,
            passphrase,
        } if c.practice == ods && a == account_id => Some((&c.patient, passphrase.as_str())),
        _ => None,
    })
}

/// One open session.
#[derive(Debug, Clone)]
pub struct PfsSession {
    pub account_id: String,
    /// The logged-on patient.
    pub user: Nid,
    /// The user and the patients they act for.
    pub patients: Vec<Nid>,
    /// The patient chosen by `PatientSelected` (the user at first).
    pub selected: Nid,
    last_used: Instant,
}

/// Open sessions by `suid`.
#[derive(Debug)]
pub struct Sessions {
    idle: Duration,
    open: Mutex<HashMap<String, PfsSession>>,
    counter: AtomicU64,
}

impl Sessions {
    /// A store whose sessions end after `idle` without a request.
    pub fn new(idle: Duration) -> Sessions {
        Sessions {
            idle,
            open: Mutex::new(HashMap::new()),
            counter: AtomicU64::new(0),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, PfsSession>> {
        self.open.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Open a session; returns its `suid` (16 hex digits).
    pub fn open(&self, account_id: &str, user: Nid, patients: Vec<Nid>) -> String {
        let n = self.counter.fetch_add(1, Ordering::Relaxed);
        let suid = tsub(&Nid(format!("{account_id}#{n}")), "suid");
        let now = Instant::now();
        let mut open = self.lock();
        open.retain(|_, s| now.duration_since(s.last_used) <= self.idle);
        open.insert(
            suid.clone(),
            PfsSession {
                account_id: account_id.to_string(),
                selected: user.clone(),
                user,
                patients,
                last_used: now,
            },
        );
        suid
    }

    /// The live session for a `suid`, touched; expired sessions are removed.
    pub fn touch(&self, suid: &str) -> Option<PfsSession> {
        let now = Instant::now();
        let mut open = self.lock();
        let s = open.get_mut(suid)?;
        if now.duration_since(s.last_used) > self.idle {
            open.remove(suid);
            return None;
        }
        s.last_used = now;
        Some(s.clone())
    }

    /// Change the focus patient.
    pub fn select(&self, suid: &str, patient: Nid) {
        if let Some(s) = self.lock().get_mut(suid) {
            s.selected = patient;
        }
    }

    /// End a session (`Logoff`).
    pub fn close(&self, suid: &str) {
        self.lock().remove(suid);
    }
}
