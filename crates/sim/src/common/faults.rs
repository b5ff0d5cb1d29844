//! Fault injection, chosen per request by the `X-Sim-Fault` header (tests only; the proxy never forwards
//! `X-Sim-*`) or at random by per-simulator rates.
//!
//! Header value: a comma-separated list of at most one `latency=<ms>` and one outcome:
//! `5xx` (= 500), `500`, `503`, `429`, `drop` (connection closed before any reply), `drop-after-commit` (the
//! handler runs and commits, then the connection is closed with no reply), `truncate` (the reply's body is
//! cut short of its Content-Length), `malformed` (the reply's body is corrupted), `expired-session`.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::sync::Mutex;
use std::time::Duration;

/// The request header that selects a fault.
pub const FAULT_HEADER: &str = "x-sim-fault";

/// One outcome fault.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// Reply 500 or 503 without running the handler.
    ServerError(u16),
    /// Reply 429 with `Retry-After` without running the handler.
    TooManyRequests,
    /// Close the connection before any reply, without running the handler.
    Drop,
    /// Run the handler (so a write commits), then close the connection with no reply.
    DropAfterCommit,
    /// Run the handler, then send only part of the body and close.
    Truncate,
    /// Run the handler, then corrupt the body.
    Malformed,
    /// Reply as the dialect does for an expired or unknown session, without running the handler.
    ExpiredSession,
}

impl Fault {
    /// The fault's name, as written in the header and counted in the stats.
    pub fn name(&self) -> &'static str {
        match self {
            Fault::ServerError(503) => "503",
            Fault::ServerError(_) => "500",
            Fault::TooManyRequests => "429",
            Fault::Drop => "drop",
            Fault::DropAfterCommit => "drop-after-commit",
            Fault::Truncate => "truncate",
            Fault::Malformed => "malformed",
            Fault::ExpiredSession => "expired-session",
        }
    }
}

/// The replies the server asks the dialect to render in its own error shape.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InjectedReply {
    /// 500 or 503.
    ServerError(u16),
    /// 429; the dialect should send `Retry-After: retry_after_secs`.
    TooManyRequests { retry_after_secs: u64 },
    /// The session is gone (401 or the dialect's equivalent).
    ExpiredSession,
}

/// What to do to one request: optional latency, then an optional outcome fault.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FaultPlan {
    pub latency: Option<Duration>,
    pub fault: Option<Fault>,
}

impl FaultPlan {
    /// Whether the plan does anything.
    pub fn is_empty(&self) -> bool {
        self.latency.is_none() && self.fault.is_none()
    }

    /// Parse an `X-Sim-Fault` value.
    pub fn parse(value: &str) -> Result<FaultPlan, String> {
        let mut plan = FaultPlan::default();
        for token in value.split(',').map(str::trim).filter(|t| !t.is_empty()) {
            if let Some(ms) = token.strip_prefix("latency=") {
                let ms: u64 = ms.parse().map_err(|_| format!("bad latency '{ms}'"))?;
                if plan.latency.replace(Duration::from_millis(ms)).is_some() {
                    return Err("latency given twice".into());
                }
                continue;
            }
            let fault = match token {
                "5xx" | "500" => Fault::ServerError(500),
                "503" => Fault::ServerError(503),
                "429" => Fault::TooManyRequests,
                "drop" => Fault::Drop,
                "drop-after-commit" => Fault::DropAfterCommit,
                "truncate" => Fault::Truncate,
                "malformed" => Fault::Malformed,
                "expired-session" => Fault::ExpiredSession,
                other => return Err(format!("unknown fault '{other}'")),
            };
            if plan.fault.replace(fault).is_some() {
                return Err("more than one outcome fault".into());
            }
        }
        Ok(plan)
    }
}

/// Per-simulator fault rates (probabilities per request, 0.0 to 1.0; all 0 by default).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FaultRates {
    /// Probability of added latency, and how much.
    pub latency: f64,
    pub latency_ms: u64,
    pub server_error: f64,
    pub too_many_requests: f64,
    pub drop: f64,
    pub drop_after_commit: f64,
    pub truncate: f64,
    pub malformed: f64,
    pub expired_session: f64,
    /// Seed of the fault draws.
    pub seed: u64,
}

impl Default for FaultRates {
    fn default() -> Self {
        FaultRates {
            latency: 0.0,
            latency_ms: 0,
            server_error: 0.0,
            too_many_requests: 0.0,
            drop: 0.0,
            drop_after_commit: 0.0,
            truncate: 0.0,
            malformed: 0.0,
            expired_session: 0.0,
            seed: 0,
        }
    }
}

impl FaultRates {
    fn any(&self) -> bool {
        self.latency > 0.0
            || [
                self.server_error,
                self.too_many_requests,
                self.drop,
                self.drop_after_commit,
                self.truncate,
                self.malformed,
                self.expired_session,
            ]
            .iter()
            .any(|r| *r > 0.0)
    }
}

/// Draws faults for requests that do not name one.
#[derive(Debug)]
pub struct FaultInjector {
    rates: FaultRates,
    rng: Mutex<ChaCha8Rng>,
}

impl FaultInjector {
    /// An injector with the given rates.
    pub fn new(rates: FaultRates) -> Self {
        FaultInjector {
            rng: Mutex::new(ChaCha8Rng::seed_from_u64(rates.seed)),
            rates,
        }
    }

    /// The plan for one request: the header's when present, else a random draw by the rates.
    pub fn plan(&self, header: Option<&str>) -> Result<FaultPlan, String> {
        if let Some(h) = header {
            return FaultPlan::parse(h);
        }
        if !self.rates.any() {
            return Ok(FaultPlan::default());
        }
        let mut rng = self.rng.lock().unwrap_or_else(|e| e.into_inner());
        let r = &self.rates;
        let latency = (r.latency > 0.0 && rng.random_bool(r.latency.clamp(0.0, 1.0)))
            .then(|| Duration::from_millis(r.latency_ms));
        let roll: f64 = rng.random();
        let outcomes = [
            (
                r.server_error,
                Fault::ServerError(if rng.random_bool(0.5) { 500 } else { 503 }),
            ),
            (r.too_many_requests, Fault::TooManyRequests),
            (r.drop, Fault::Drop),
            (r.drop_after_commit, Fault::DropAfterCommit),
            (r.truncate, Fault::Truncate),
            (r.malformed, Fault::Malformed),
            (r.expired_session, Fault::ExpiredSession),
        ];
        let mut acc = 0.0;
        let mut fault = None;
        for (rate, f) in outcomes {
            acc += rate.max(0.0);
            if roll < acc {
                fault = Some(f);
                break;
            }
        }
        Ok(FaultPlan { latency, fault })
    }
}

/// Corrupt a body so no JSON or XML parser accepts it: keep the first half, then add bytes that are invalid
/// in both.
pub fn corrupt(body: &[u8]) -> Vec<u8> {
    let mut out = body[..body.len() / 2].to_vec();
    out.extend_from_slice(b"\x00<{\"malformed");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_values_parse() {
        assert_eq!(
            FaultPlan::parse("5xx").map(|p| p.fault),
            Ok(Some(Fault::ServerError(500)))
        );
        assert_eq!(
            FaultPlan::parse("503").map(|p| p.fault),
            Ok(Some(Fault::ServerError(503)))
        );
        let p = FaultPlan::parse("latency=250, drop-after-commit").expect("parses");
        assert_eq!(p.latency, Some(Duration::from_millis(250)));
        assert_eq!(p.fault, Some(Fault::DropAfterCommit));
        assert!(FaultPlan::parse("explode").is_err());
        assert!(FaultPlan::parse("drop,truncate").is_err());
        assert!(FaultPlan::parse("latency=x").is_err());
    }

    #[test]
    fn rates_draw_deterministically() {
        let rates = FaultRates {
            drop: 0.5,
            seed: 7,
            ..FaultRates::default()
        };
        let a = FaultInjector::new(rates);
        let b = FaultInjector::new(rates);
        let draws_a: Vec<_> = (0..50).map(|_| a.plan(None).map(|p| p.fault)).collect();
        let draws_b: Vec<_> = (0..50).map(|_| b.plan(None).map(|p| p.fault)).collect();
        assert_eq!(draws_a, draws_b);
        let drops = draws_a.iter().filter(|f| matches!(f, Ok(Some(Fault::Drop)))).count();
        assert!((10..40).contains(&drops), "about half dropped: {drops}");
        let none = FaultInjector::new(FaultRates::default());
        assert!(none.plan(None).expect("plan").is_empty());
    }
}
