//! Pacing native calls to the rate a supplier allows (`requests_per_second` per practice and surface).
//!
//! Suppliers refuse calls over their rate (TPP has a dedicated throttling exception, confirmed; how EMIS and
//! Medicus refuse is not public, and the simulators' 429s and TPP's error 99 with a five-second `Retry-After`
//! are their conventions), and a refusal costs the client far more than a short wait: every attempt at a native call
//! first waits for its turn here, within the call's deadline. A well-kept limiter (governor's GCRA) keeps
//! the pace; there is one per surface of each practice.
//!
//! A supplier that refuses anyway and says when to come back (a 429, or a 503 with `Retry-After`: load
//! shedding, maintenance) is taken at its word for the whole surface: until then no call goes to it. A call
//! whose deadline the pause outlasts is refused at once (503 with the `Retry-After` left), the others wait it
//! out, rather than each asking again and being refused again.

use crate::config::NativePace;
use crate::fhir::{FhirError, FhirResult};
use crate::mapping::Surface;
use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// The limiters of one practice, and the pauses its supplier asked for.
#[derive(Default)]
pub struct Pace {
    transaction: Option<DefaultDirectRateLimiter>,
    patient: Option<DefaultDirectRateLimiter>,
    /// Until when the supplier asked for no calls, per surface (transaction, patient).
    paused: [Mutex<Option<Instant>>; 2],
}

/// The refusal of a call the supplier's pause will not let go in time: when to come back, to the second.
pub fn paused(left: Duration) -> FhirError {
    FhirError::unavailable(
        "IM1-4011",
        "the GP system asked this server to pause its calls to this practice; try again later",
    )
    .retry_after(whole_seconds(left))
}

/// A wait as `Retry-After` says it: whole seconds, rounded up, at least one (coming back sooner is refused again).
pub(super) fn whole_seconds(left: Duration) -> u64 {
    (left.as_secs() + u64::from(left.subsec_nanos() > 0)).max(1)
}

/// A surface's index in the per-surface arrays here and in the client.
pub(super) fn side(surface: Surface) -> usize {
    match surface {
        Surface::Transaction => 0,
        Surface::Patient => 1,
    }
}

impl Pace {
    pub fn new(config: &NativePace) -> Pace {
        let limiter = |rate| RateLimiter::direct(Quota::per_second(rate));
        Pace {
            transaction: config.transaction.map(limiter),
            patient: config.patient.map(limiter),
            paused: Default::default(),
        }
    }

    /// The supplier asked for no calls on a surface for `wait` (its `Retry-After`, capped by the caller). A
    /// pause only ever grows: a shorter one met later does not cut an earlier one short.
    pub fn pause(&self, surface: Surface, wait: Duration) {
        let until = Instant::now() + wait;
        if let Ok(mut paused) = self.paused[side(surface)].lock() {
            *paused = Some(paused.map_or(until, |earlier| earlier.max(until)));
        }
    }

    /// How long the pause the supplier asked for on a surface still lasts, if one does.
    pub fn pause_left(&self, surface: Surface) -> Option<Duration> {
        let until = self.paused[side(surface)].lock().ok().and_then(|p| *p)?;
        Some(until.saturating_duration_since(Instant::now())).filter(|left| !left.is_zero())
    }

    /// Whether the supplier has asked for no calls on a surface now.
    pub fn is_paused(&self, surface: Surface) -> bool {
        self.pause_left(surface).is_some()
    }

    /// Refuses a call at once (503, with the `Retry-After` left) when the pause on its surface outlasts its
    /// deadline.
    pub fn refuse_if_pause_outlasts(&self, surface: Surface, deadline: Instant) -> FhirResult<()> {
        match self.pause_left(surface) {
            Some(left) if Instant::now() + left >= deadline => Err(paused(left)),
            _ => Ok(()),
        }
    }

    /// Waits out a pause the supplier asked for on a surface; refuses at once (503, with the `Retry-After`
    /// left) when the pause outlasts the call's deadline.
    pub async fn sit_out_pause(&self, surface: Surface, deadline: Instant) -> FhirResult<()> {
        self.refuse_if_pause_outlasts(surface, deadline)?;
        if let Some(left) = self.pause_left(surface) {
            tokio::time::sleep(left).await;
        }
        Ok(())
    }

    /// Waits for a call's turn on a surface; a 504 if it would come after the call's deadline.
    pub async fn wait(&self, surface: Surface, deadline: Instant) -> FhirResult<()> {
        let limiter = match surface {
            Surface::Transaction => &self.transaction,
            Surface::Patient => &self.patient,
        };
        let Some(limiter) = limiter else { return Ok(()) };
        let remaining = deadline.saturating_duration_since(Instant::now());
        tokio::time::timeout(remaining, limiter.until_ready())
            .await
            .map_err(|_| {
                FhirError::gateway_timeout(
                    "IM1-4007",
                    "the supplier's rate limit held the native call past its deadline",
                )
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::num::NonZeroU32;
    use std::time::Duration;

    #[tokio::test]
    async fn calls_wait_for_their_turn_and_give_up_at_the_deadline() {
        let pace = Pace::new(&NativePace {
            transaction: NonZeroU32::new(20),
            patient: None,
        });
        let started = Instant::now();
        let far = started + Duration::from_secs(5);
        // A burst of the rate goes at once, the next waits about 1/20 s.
        for _ in 0..21 {
            pace.wait(Surface::Transaction, far).await.unwrap();
        }
        assert!(
            started.elapsed() >= Duration::from_millis(40),
            "{:?}",
            started.elapsed()
        );
        // The other surface is not paced.
        for _ in 0..100 {
            pace.wait(Surface::Patient, far).await.unwrap();
        }
        // Past the deadline: a 504 rather than a wait.
        let error = pace.wait(Surface::Transaction, Instant::now()).await.unwrap_err();
        assert_eq!(error.status, http::StatusCode::GATEWAY_TIMEOUT);
    }
}
