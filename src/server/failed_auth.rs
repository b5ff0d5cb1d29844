//! Failed authentications counted per client address (see `client_address`): an address that has used its
//! budget of 401s is answered 429, with Retry-After, for every request until the budget allows one more,
//! before any token is verified. Floods of refused tokens from one address (a client looping on a bad one,
//! a scan) then go at the budget's pace and cost this server no signature checks while they wait.
//!
//! Off unless configured: every client behind one address shares its budget (a NAT, a partner's outgoing
//! address, a load balancer not listed in `trusted_proxies`), so one of them failing refuses the others.
//!
//! The budget is a rate (GCRA through `governor`, as the per-client limits): up to the budget at once, then
//! one more per share of the minute. A failure is counted when its 401 is answered, so requests already in
//! flight when the budget runs out are still checked. IPv6 addresses count by their /64, which one host
//! commonly holds whole. Operational paths (probes, metrics) are never refused: a load balancer or scraper
//! whose address is shared with a misbehaving client must still see the server.

use crate::app::{self, Body};
use crate::fhir::FhirError;
use dashmap::DashMap;
use governor::clock::{Clock, DefaultClock};
use governor::middleware::StateInformationMiddleware;
use governor::state::keyed::DefaultKeyedStateStore;
use governor::{Quota, RateLimiter};
use http::{Request, Response, StatusCode};
use std::convert::Infallible;
use std::future::Future;
use std::net::{IpAddr, Ipv6Addr};
use std::num::NonZeroU32;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use super::client_address::ClientAddress;

/// Past this many addresses refused at once, no more are added (those whose time is up are dropped first):
/// an attacker with many addresses cannot grow the table without bound.
const MAX_REFUSED: usize = 100_000;
/// Forget the budgets and refusals of addresses that stopped failing every this many failures.
const TIDY_EVERY: u64 = 4096;

type Budgets = RateLimiter<IpAddr, DefaultKeyedStateStore<IpAddr>, DefaultClock, StateInformationMiddleware>;

pub struct FailedAuth {
    budgets: Budgets,
    /// Addresses whose budget is used up, and until when they are refused (sharded: read on every request).
    refused: DashMap<IpAddr, Instant>,
    failures: AtomicU64,
    /// When the full table was last swept of addresses whose time is up: at most once a second, since a sweep
    /// locks every shard in turn.
    last_sweep: Mutex<Option<Instant>>,
}

impl FailedAuth {
    /// A budget of `per_minute` failed authentications per address.
    pub fn new(per_minute: NonZeroU32) -> FailedAuth {
        FailedAuth {
            budgets: RateLimiter::keyed(Quota::per_minute(per_minute)).with_middleware::<StateInformationMiddleware>(),
            refused: DashMap::new(),
            failures: AtomicU64::new(0),
            last_sweep: Mutex::new(None),
        }
    }

    /// The whole seconds an address must still wait, when it is refused.
    pub fn refused(&self, address: IpAddr) -> Option<u64> {
        let key = counted_as(address);
        let until = *self.refused.get(&key)?;
        match until.checked_duration_since(Instant::now()) {
            Some(wait) if !wait.is_zero() => Some(crate::ratelimit::retry_after(wait)),
            _ => {
                self.refused.remove_if(&key, |_, until| *until <= Instant::now());
                None
            }
        }
    }

    /// Counts a failed authentication from an address; once that uses up its budget, the address is refused
    /// until the budget allows one more.
    pub fn failed(&self, address: IpAddr) {
        let key = counted_as(address);
        let now = Instant::now();
        if self.failures.fetch_add(1, Ordering::Relaxed) % TIDY_EVERY == TIDY_EVERY - 1 {
            self.budgets.retain_recent();
            self.refused.retain(|_, until| *until > now);
        }
        let wait = match self.budgets.check_key(&key) {
            // The last of the budget: the next one is a share of the minute away (at most).
            Ok(state) if state.remaining_burst_capacity() == 0 => state.quota().replenish_interval(),
            Ok(_) => return,
            // Failures answered at once, past the last of the budget.
            Err(not_until) => not_until.wait_time_from(self.budgets.clock().now()),
        };
        if !self.refused.contains_key(&key) && self.refused.len() >= MAX_REFUSED {
            self.sweep(now);
            if self.refused.len() >= MAX_REFUSED {
                return;
            }
        }
        self.refused.insert(key, now + wait);
    }

    /// Drops the addresses whose time is up, unless that was done within the last second.
    fn sweep(&self, now: Instant) {
        let Ok(mut last) = self.last_sweep.try_lock() else {
            return;
        };
        if last.is_some_and(|at| now.duration_since(at) < Duration::from_secs(1)) {
            return;
        }
        *last = Some(now);
        self.refused.retain(|_, until| *until > now);
    }
}

/// The address budgets are kept under: IPv6 by its /64.
fn counted_as(address: IpAddr) -> IpAddr {
    match address {
        IpAddr::V6(v6) => {
            let [a, b, c, d, ..] = v6.segments();
            IpAddr::V6(Ipv6Addr::new(a, b, c, d, 0, 0, 0, 0))
        }
        v4 => v4,
    }
}

/// The layer that refuses addresses past their budget and counts the 401s answered; with no budget, it
/// passes every request through.
#[derive(Clone)]
pub struct FailedAuthLayer(pub Option<Arc<FailedAuth>>);

impl<S> tower::Layer<S> for FailedAuthLayer {
    type Service = Guarded<S>;

    fn layer(&self, inner: S) -> Guarded<S> {
        Guarded {
            inner,
            budget: self.0.clone(),
        }
    }
}

#[derive(Clone)]
pub struct Guarded<S> {
    inner: S,
    budget: Option<Arc<FailedAuth>>,
}

impl<S, B> tower::Service<Request<B>> for Guarded<S>
where
    S: tower::Service<Request<B>, Response = Response<Body>, Error = Infallible>,
    S::Future: Send + 'static,
{
    type Response = Response<Body>;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Response<Body>, Infallible>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        let operational = super::is_operational(request.uri().path());
        let watched = match (&self.budget, request.extensions().get::<ClientAddress>()) {
            (Some(budget), Some(address)) if !operational => Some((budget.clone(), address.0)),
            _ => None,
        };
        if let Some(wait) = watched.as_ref().and_then(|(budget, address)| budget.refused(*address)) {
            let error = FhirError::too_many("IM1-2302", "too many failed authentications from this address", wait);
            // Made in the future, which the audit layer runs in the request's scope: the refusal's code and
            // reason reach its AuditEvent.
            return Box::pin(async move { Ok(app::refuse(&error, "address_refused")) });
        }
        let answer = self.inner.call(request);
        Box::pin(async move {
            let response = answer.await?;
            if response.status() == StatusCode::UNAUTHORIZED {
                if let Some((budget, address)) = watched {
                    budget.failed(address);
                }
            }
            Ok(response)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_address_is_refused_once_its_budget_is_used_up_and_others_are_not() {
        let budget = FailedAuth::new(NonZeroU32::new(3).unwrap());
        let (one, other): (IpAddr, IpAddr) = ("198.51.100.1".parse().unwrap(), "198.51.100.2".parse().unwrap());
        for _ in 0..2 {
            budget.failed(one);
            assert_eq!(budget.refused(one), None, "within the budget");
        }
        // The third uses it up. Three a minute: one more within twenty seconds.
        budget.failed(one);
        let wait = budget.refused(one).expect("the budget is used up");
        assert!((1..=20).contains(&wait), "{wait}");
        assert_eq!(budget.refused(other), None);
    }

    #[test]
    fn ipv6_addresses_count_by_their_64() {
        let budget = FailedAuth::new(NonZeroU32::new(2).unwrap());
        let first: IpAddr = "2001:db8:1:2::1".parse().unwrap();
        budget.failed(first);
        budget.failed("2001:db8:1:2::99".parse().unwrap());
        assert!(budget.refused(first).is_some(), "the same /64");
        assert_eq!(budget.refused("2001:db8:1:3::1".parse().unwrap()), None);
    }
}
