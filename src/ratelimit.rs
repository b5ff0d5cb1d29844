//! Per-client rate limits: each client (a token's `client_id`, or its subject when it has none: see
//! `Principal::budget_key`) gets its own budget (GCRA through `governor`), so one busy app cannot starve the
//! others or hammer the practices' native systems. Over the limit: 429 with Retry-After.

use crate::config::ClientRate;
use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicU64, Ordering};

pub struct ClientLimiter {
    limiter: DefaultKeyedRateLimiter<String>,
    clock: DefaultClock,
    checks: AtomicU64,
}

/// Forget idle clients' state every this many checks, so the map stays the size of the active clients.
const TIDY_EVERY: u64 = 4096;

impl ClientLimiter {
    pub fn new(rate: ClientRate) -> ClientLimiter {
        let per_second = NonZeroU32::new(rate.per_second).unwrap_or(NonZeroU32::MIN);
        let burst = NonZeroU32::new(rate.burst).unwrap_or(per_second);
        ClientLimiter {
            limiter: RateLimiter::keyed(Quota::per_second(per_second).allow_burst(burst)),
            clock: DefaultClock::default(),
            checks: AtomicU64::new(0),
        }
    }

    /// `Err(seconds)` when the client must wait, with the whole seconds to put in Retry-After.
    pub fn check(&self, client: &str) -> Result<(), u64> {
        if self.checks.fetch_add(1, Ordering::Relaxed) % TIDY_EVERY == TIDY_EVERY - 1 {
            self.limiter.retain_recent();
        }
        self.limiter
            .check_key(&client.to_string())
            .map_err(|not_until| retry_after(not_until.wait_time_from(self.clock.now())))
    }
}

/// A wait as Retry-After gives it: whole seconds, rounded up, at least one.
pub fn retry_after(wait: std::time::Duration) -> u64 {
    (wait.as_secs() + u64::from(wait.subsec_nanos() > 0)).max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_client_has_its_own_budget() {
        let limiter = ClientLimiter::new(ClientRate {
            per_second: 1,
            burst: 2,
        });
        assert!(limiter.check("a").is_ok());
        assert!(limiter.check("a").is_ok());
        let wait = limiter.check("a").unwrap_err();
        assert!((1..=2).contains(&wait), "{wait}");
        assert!(limiter.check("b").is_ok(), "another client is not held back");
    }
}
