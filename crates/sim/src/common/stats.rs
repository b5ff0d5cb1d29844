//! Counters of calls and committed writes, per simulator and per route.
//!
//! Tests read them in process ([`Stats::snapshot`]) or over HTTP (`GET /_sim/stats`) to prove single-flight
//! and exactly-once behaviour of the proxy.

use serde::Serialize;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

/// Counts of one route.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct RouteCounts {
    pub calls: u64,
    pub writes_committed: u64,
}

/// A copy of the counters at one moment (the `/_sim/stats` JSON body).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct StatsSnapshot {
    pub calls: u64,
    pub writes_committed: u64,
    pub by_route: BTreeMap<String, RouteCounts>,
    /// Faults injected, by fault name.
    pub faults: BTreeMap<String, u64>,
}

/// Live counters.
#[derive(Debug, Default)]
pub struct Stats {
    calls: AtomicU64,
    writes_committed: AtomicU64,
    detail: Mutex<Detail>,
}

#[derive(Debug, Default)]
struct Detail {
    by_route: BTreeMap<String, RouteCounts>,
    faults: BTreeMap<String, u64>,
}

impl Stats {
    fn detail(&self) -> std::sync::MutexGuard<'_, Detail> {
        self.detail.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Count one call to a route.
    pub fn record_call(&self, route: &str) {
        self.calls.fetch_add(1, Ordering::Relaxed);
        self.detail().by_route.entry(route.to_string()).or_default().calls += 1;
    }

    /// Count one committed write on a route.
    pub fn record_write(&self, route: &str) {
        self.writes_committed.fetch_add(1, Ordering::Relaxed);
        self.detail()
            .by_route
            .entry(route.to_string())
            .or_default()
            .writes_committed += 1;
    }

    /// Count one injected fault.
    pub fn record_fault(&self, name: &str) {
        *self.detail().faults.entry(name.to_string()).or_default() += 1;
    }

    /// Total calls.
    pub fn calls(&self) -> u64 {
        self.calls.load(Ordering::Relaxed)
    }

    /// Total committed writes.
    pub fn writes_committed(&self) -> u64 {
        self.writes_committed.load(Ordering::Relaxed)
    }

    /// Calls to one route.
    pub fn route(&self, route: &str) -> RouteCounts {
        self.detail().by_route.get(route).copied().unwrap_or_default()
    }

    /// All counters.
    pub fn snapshot(&self) -> StatsSnapshot {
        let d = self.detail();
        StatsSnapshot {
            calls: self.calls(),
            writes_committed: self.writes_committed(),
            by_route: d.by_route.clone(),
            faults: d.faults.clone(),
        }
    }

    /// Zero every counter.
    pub fn reset(&self) {
        let mut d = self.detail();
        self.calls.store(0, Ordering::Relaxed);
        self.writes_committed.store(0, Ordering::Relaxed);
        d.by_route.clear();
        d.faults.clear();
    }
}
