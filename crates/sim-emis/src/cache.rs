//! Rendered record sections, reused until the world's change log moves. Every clinical write logs a change,
//! and nothing else alters a section, so the latest change time is a sound version stamp. This keeps
//! repeated reads (the proxy polling, benchmarks) from rebuilding the same JSON.

use crate::render::{ItemType, Surface};
use bytes::Bytes;
use im1_sim::record::Nid;
use std::collections::HashMap;
use std::sync::Mutex;
use time::OffsetDateTime;

type Key = (Nid, ItemType, Surface);

/// Section bytes keyed by patient, item type and surface, each with the change-log stamp it was built at.
#[derive(Debug, Default)]
pub struct SectionCache {
    entries: Mutex<HashMap<Key, (Option<OffsetDateTime>, Bytes)>>,
}

impl SectionCache {
    /// The cached bytes if built at `stamp`, else build, store and return them.
    pub fn get_or_build(
        &self,
        key: Key,
        stamp: Option<OffsetDateTime>,
        build: impl FnOnce() -> Option<Bytes>,
    ) -> Option<Bytes> {
        let lock = || self.entries.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((at, bytes)) = lock().get(&key) {
            if *at == stamp {
                return Some(bytes.clone());
            }
        }
        let bytes = build()?;
        lock().insert(key, (stamp, bytes.clone()));
        Some(bytes)
    }
}
