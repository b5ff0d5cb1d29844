//! The simulators' throttling (their dialects' conventions where a supplier publishes no figure): a per-key rate limiter (requests per second, with a `Retry-After`) and a
//! one-request-at-a-time guard per key. Both can be switched off (`throttle: false`, `--no-throttle`).

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Instant;

/// A refused request: wait this many whole seconds before retrying.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Throttled {
    pub retry_after_secs: u64,
}

#[derive(Debug)]
struct Bucket {
    tokens: f64,
    refilled: Instant,
}

/// A token bucket per key: `per_second` requests a second, bursts up to `per_second`.
#[derive(Debug)]
pub struct RateLimiter {
    enabled: bool,
    per_second: f64,
    fixed_retry_after: Option<u64>,
    buckets: Mutex<HashMap<String, Bucket>>,
}

impl RateLimiter {
    /// A limiter of `per_second` requests per key; disabled limiters allow everything.
    pub fn new(per_second: u32, enabled: bool) -> Self {
        RateLimiter {
            enabled,
            per_second: f64::from(per_second.max(1)),
            fixed_retry_after: None,
            buckets: Mutex::new(HashMap::new()),
        }
    }

    /// Always answer this `Retry-After` (as a dialect that documents a fixed value does).
    pub fn with_retry_after(mut self, secs: u64) -> Self {
        self.fixed_retry_after = Some(secs);
        self
    }

    /// Whether the limiter applies.
    pub fn enabled(&self) -> bool {
        self.enabled
    }

    /// Take one request's token for `key`, or say how long to wait.
    pub fn check(&self, key: &str) -> Result<(), Throttled> {
        if !self.enabled {
            return Ok(());
        }
        let now = Instant::now();
        let mut buckets = self.buckets.lock().unwrap_or_else(|e| e.into_inner());
        let bucket = buckets.entry(key.to_string()).or_insert_with(|| Bucket {
            tokens: self.per_second,
            refilled: now,
        });
        let elapsed = now.duration_since(bucket.refilled).as_secs_f64();
        bucket.tokens = (bucket.tokens + elapsed * self.per_second).min(self.per_second);
        bucket.refilled = now;
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            return Ok(());
        }
        let wait = (1.0 - bucket.tokens) / self.per_second;
        let secs = self.fixed_retry_after.unwrap_or_else(|| (wait.ceil() as u64).max(1));
        Err(Throttled { retry_after_secs: secs })
    }
}

/// One request at a time per key: a second request while one is in flight is refused.
#[derive(Debug, Clone)]
pub struct OneAtATime {
    enabled: bool,
    busy: Arc<Mutex<HashSet<String>>>,
}

/// Holds a key busy until dropped.
#[derive(Debug)]
pub struct InFlightGuard {
    key: Option<String>,
    busy: Arc<Mutex<HashSet<String>>>,
}

impl Drop for InFlightGuard {
    fn drop(&mut self) {
        if let Some(key) = self.key.take() {
            self.busy.lock().unwrap_or_else(|e| e.into_inner()).remove(&key);
        }
    }
}

impl OneAtATime {
    /// A guard set; disabled sets let every request through.
    pub fn new(enabled: bool) -> Self {
        OneAtATime {
            enabled,
            busy: Arc::new(Mutex::new(HashSet::new())),
        }
    }

    /// Mark `key` busy for as long as the guard lives, or None if a request with that key is in flight.
    pub fn try_acquire(&self, key: &str) -> Option<InFlightGuard> {
        if !self.enabled {
            return Some(InFlightGuard {
                key: None,
                busy: self.busy.clone(),
            });
        }
        let mut busy = self.busy.lock().unwrap_or_else(|e| e.into_inner());
        if !busy.insert(key.to_string()) {
            return None;
        }
        Some(InFlightGuard {
            key: Some(key.to_string()),
            busy: self.busy.clone(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limiter_allows_a_burst_then_refuses() {
        let rl = RateLimiter::new(5, true).with_retry_after(2);
        let ok = (0..8).filter(|_| rl.check("app").is_ok()).count();
        assert_eq!(ok, 5);
        assert_eq!(rl.check("app"), Err(Throttled { retry_after_secs: 2 }));
        assert!(rl.check("other-app").is_ok(), "keys are independent");
        let off = RateLimiter::new(1, false);
        assert!((0..100).all(|_| off.check("app").is_ok()));
    }

    #[test]
    fn one_at_a_time_per_key() {
        let g = OneAtATime::new(true);
        let first = g.try_acquire("suid-1");
        assert!(first.is_some());
        assert!(g.try_acquire("suid-1").is_none());
        assert!(g.try_acquire("suid-2").is_some());
        drop(first);
        assert!(g.try_acquire("suid-1").is_some());
        let off = OneAtATime::new(false);
        let _a = off.try_acquire("k");
        assert!(off.try_acquire("k").is_some());
    }
}
