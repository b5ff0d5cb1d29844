//! A circuit breaker per practice and surface: once a GP system has left `trip_after` native calls in a row
//! unanswered (no connection, a time-out, a connection dropped, or a gateway's 502, 503 or 504 that does not say
//! when to come back), no call goes to that surface for `open_for`. Requests are refused at once (503, with the
//! `Retry-After` left) rather than each holding a place for its whole deadline and then failing the same way.
//!
//! Each attempt counts (a read retried after a dropped connection is two calls). A time-out counts only when
//! the attempt went out with at least half the call's time-out left: one that queued for most of its deadline
//! says nothing of the GP system. An attempt abandoned with its request (the client or a load balancer gave
//! up first) counts once it has waited three quarters of the call's time-out without an answer, so that a GP
//! system that hangs is found even when nobody waits for its time-outs; abandoned sooner, it is not counted.
//!
//! When the time is up calls go again. The count is not cleared until a call is answered, so one more
//! unanswered call opens the circuit again at once (half-open); any answer, even an error, closes it. A
//! supplier's refusal that says when to come back is its own pause (see `pace`), not a failure.

use super::client::{BROKEN, TIMED_OUT, UNREACHABLE};
use crate::config::BreakerSettings;
use crate::fhir::{FhirError, FhirResult};
use crate::mapping::Surface;
use std::sync::Mutex;
use std::time::{Duration, Instant};

#[derive(Default)]
struct State {
    unanswered: u32,
    open_until: Option<Instant>,
}

/// The breakers of one practice, one per surface (transaction, patient-facing).
pub struct Breaker {
    settings: BreakerSettings,
    /// The practice's ODS code, for the log line that says a circuit opened.
    practice: String,
    sides: [Mutex<State>; 2],
}

/// Whether a native call was answered, as the breaker counts it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Answer {
    Answered,
    Unanswered,
}

impl Breaker {
    pub fn new(settings: BreakerSettings, practice: &str) -> Breaker {
        Breaker {
            settings,
            practice: practice.to_string(),
            sides: Default::default(),
        }
    }

    /// Refuses a call at once (503, with the `Retry-After` left) while the surface's circuit is open.
    pub fn refuse_if_open(&self, surface: Surface) -> FhirResult<()> {
        let Some((left, unanswered)) = self.open_left(surface) else {
            return Ok(());
        };
        Err(FhirError::unavailable(
            "IM1-4012",
            format!(
                "the GP system left its last {unanswered} calls from this server unanswered; this server stops \
                 calling it for a while; try again later"
            ),
        )
        .retry_after(super::pace::whole_seconds(left)))
    }

    /// How long the surface's circuit stays open, and the unanswered calls that opened it; none when closed.
    fn open_left(&self, surface: Surface) -> Option<(Duration, u32)> {
        let state = self.sides[super::pace::side(surface)].lock().ok()?;
        let left = state.open_until?.saturating_duration_since(Instant::now());
        (!left.is_zero()).then_some((left, state.unanswered))
    }

    /// Counts a native call's outcome on a surface: an answer closes the circuit, an unanswered call past the
    /// count opens it.
    pub fn record(&self, surface: Surface, answer: Answer) {
        let Ok(mut state) = self.sides[super::pace::side(surface)].lock() else {
            return;
        };
        match answer {
            Answer::Answered => *state = State::default(),
            Answer::Unanswered => {
                state.unanswered = state.unanswered.saturating_add(1);
                let now = Instant::now();
                let open = state.open_until.is_some_and(|until| until > now);
                // Opened once: calls already out that fail later do not move the time clients were told.
                if self.settings.trip_after > 0 && state.unanswered >= self.settings.trip_after && !open {
                    tracing::warn!(
                        practice = %self.practice,
                        surface = ?surface,
                        unanswered = state.unanswered,
                        open_for_ms = self.settings.open_for.as_millis(),
                        "the GP system leaves its calls unanswered: no call goes to it for a while"
                    );
                    state.open_until = Some(now + self.settings.open_for);
                }
            }
        }
    }

    /// Whether the surface's circuit is open now.
    pub fn is_open(&self, surface: Surface) -> bool {
        self.open_left(surface).is_some()
    }

    /// An attempt going out now on a surface, whose call has `timeout` in all and must end by `deadline`.
    pub fn attempt(&self, surface: Surface, deadline: Instant, timeout: Duration) -> Attempt<'_> {
        let started = Instant::now();
        Attempt {
            breaker: self,
            surface,
            started,
            silence_counts: deadline.saturating_duration_since(started) >= timeout / 2,
            abandoned_counts_after: timeout.mul_f64(0.75),
            finished: false,
        }
    }
}

/// One attempt at a native call, counted when it ends ([`Attempt::answered`], [`Attempt::failed`]), or when it
/// is abandoned with its request after waiting long enough (on drop).
pub struct Attempt<'a> {
    breaker: &'a Breaker,
    surface: Surface,
    started: Instant,
    /// Whether the attempt went out with at least half the call's time-out left, so that its time-out says
    /// something of the GP system.
    silence_counts: bool,
    /// How long an abandoned attempt must have waited for its silence to count.
    abandoned_counts_after: Duration,
    finished: bool,
}

impl Attempt<'_> {
    /// A reply came back: counted as its status says (see [`answer_of_status`]).
    pub fn answered(mut self, answer: Answer) {
        self.finished = true;
        self.breaker.record(self.surface, answer);
    }

    /// No usable reply: counted as the error says (see [`answer_of_error`]), but a time-out only when the
    /// attempt had time enough.
    pub fn failed(mut self, error: &FhirError) {
        self.finished = true;
        if error.code == TIMED_OUT && !self.silence_counts {
            return;
        }
        self.breaker.record(self.surface, answer_of_error(error));
    }
}

impl Drop for Attempt<'_> {
    fn drop(&mut self) {
        if !self.finished && self.started.elapsed() >= self.abandoned_counts_after {
            self.breaker.record(self.surface, Answer::Unanswered);
        }
    }
}

/// How a failed native call counts: those that say the GP system (or the way to it) did not answer.
pub fn answer_of_error(error: &FhirError) -> Answer {
    if [TIMED_OUT, UNREACHABLE, BROKEN].contains(&error.code) {
        Answer::Unanswered
    } else {
        Answer::Answered
    }
}

/// How a native HTTP reply counts: a gateway's 502 or 504, or a 503 that does not say when to come back (one
/// that does is the supplier's pause), is unanswered.
pub fn answer_of_status(status: u16, says_when: bool) -> Answer {
    match (status, says_when) {
        (502 | 504, _) | (503, false) => Answer::Unanswered,
        _ => Answer::Answered,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn breaker(trip_after: u32, open_for: Duration) -> Breaker {
        Breaker::new(BreakerSettings { trip_after, open_for }, "Y90001")
    }

    #[test]
    fn unanswered_calls_in_a_row_open_the_circuit_of_their_surface_only() {
        let breaker = breaker(3, Duration::from_secs(30));
        for _ in 0..2 {
            breaker.record(Surface::Transaction, Answer::Unanswered);
        }
        assert!(!breaker.is_open(Surface::Transaction));
        // An answer in between starts the count again.
        breaker.record(Surface::Transaction, Answer::Answered);
        for _ in 0..2 {
            breaker.record(Surface::Transaction, Answer::Unanswered);
        }
        assert!(!breaker.is_open(Surface::Transaction));
        breaker.record(Surface::Transaction, Answer::Unanswered);
        let refused = breaker.refuse_if_open(Surface::Transaction).unwrap_err();
        assert_eq!((refused.status.as_u16(), refused.code), (503, "IM1-4012"));
        assert_eq!(refused.retry_after, Some(30));
        assert!(!breaker.is_open(Surface::Patient));
    }

    #[test]
    fn once_open_one_more_unanswered_call_opens_it_again_and_an_answer_closes_it() {
        let breaker = breaker(2, Duration::from_millis(30));
        breaker.record(Surface::Patient, Answer::Unanswered);
        breaker.record(Surface::Patient, Answer::Unanswered);
        assert!(breaker.is_open(Surface::Patient));
        std::thread::sleep(Duration::from_millis(40));
        // Half-open: calls go again; the first unanswered one opens it again.
        assert!(!breaker.is_open(Surface::Patient));
        breaker.record(Surface::Patient, Answer::Unanswered);
        assert!(breaker.is_open(Surface::Patient));
        std::thread::sleep(Duration::from_millis(40));
        breaker.record(Surface::Patient, Answer::Answered);
        breaker.record(Surface::Patient, Answer::Unanswered);
        assert!(!breaker.is_open(Surface::Patient));
    }

    #[test]
    fn the_time_clients_were_told_does_not_move_while_open() {
        let breaker = breaker(1, Duration::from_secs(2));
        breaker.record(Surface::Transaction, Answer::Unanswered);
        std::thread::sleep(Duration::from_millis(1_100));
        // A call already out when it opened fails later.
        breaker.record(Surface::Transaction, Answer::Unanswered);
        let refused = breaker.refuse_if_open(Surface::Transaction).unwrap_err();
        assert_eq!(refused.retry_after, Some(1));
    }

    #[test]
    fn a_time_out_counts_only_for_an_attempt_that_had_time_and_an_abandoned_one_once_it_waited() {
        let timeout = Duration::from_millis(100);
        let breaker = breaker(1, Duration::from_secs(30));
        let timed_out = super::super::client::timeout();
        // Went out with a tenth of its time-out left: its time-out says nothing of the GP system.
        let late = breaker.attempt(Surface::Transaction, Instant::now() + timeout / 10, timeout);
        late.failed(&timed_out);
        assert!(!breaker.is_open(Surface::Transaction));
        // Abandoned after half its time-out: nothing said either.
        let abandoned = breaker.attempt(Surface::Transaction, Instant::now() + timeout, timeout);
        std::thread::sleep(timeout / 2);
        drop(abandoned);
        assert!(!breaker.is_open(Surface::Transaction));
        // Ended, however long it took: counted as it ended, not again on drop.
        let answered = breaker.attempt(Surface::Transaction, Instant::now() + timeout, timeout);
        std::thread::sleep(timeout);
        answered.answered(Answer::Answered);
        assert!(!breaker.is_open(Surface::Transaction));
        // A connection refused counts however late the attempt went out.
        let late = breaker.attempt(Surface::Transaction, Instant::now() + timeout / 10, timeout);
        late.failed(&super::super::client::unreachable());
        assert!(breaker.is_open(Surface::Transaction));
        // Abandoned after three quarters of its time-out without an answer: unanswered.
        let breaker = self::breaker(1, Duration::from_secs(30));
        let abandoned = breaker.attempt(Surface::Patient, Instant::now() + timeout, timeout);
        std::thread::sleep(timeout * 3 / 4);
        drop(abandoned);
        assert!(breaker.is_open(Surface::Patient));
        // A time-out with its whole time counts.
        let breaker = self::breaker(1, Duration::from_secs(30));
        let full = breaker.attempt(Surface::Transaction, Instant::now() + timeout, timeout);
        full.failed(&timed_out);
        assert!(breaker.is_open(Surface::Transaction));
    }

    #[test]
    fn a_breaker_set_to_zero_never_opens() {
        let breaker = breaker(0, Duration::from_secs(30));
        for _ in 0..100 {
            breaker.record(Surface::Transaction, Answer::Unanswered);
        }
        assert!(!breaker.is_open(Surface::Transaction));
    }

    #[test]
    fn only_silence_counts_as_unanswered() {
        assert_eq!(answer_of_status(502, false), Answer::Unanswered);
        assert_eq!(answer_of_status(504, true), Answer::Unanswered);
        assert_eq!(answer_of_status(503, false), Answer::Unanswered);
        // The supplier's own pause, and its errors, are answers.
        assert_eq!(answer_of_status(503, true), Answer::Answered);
        assert_eq!(answer_of_status(500, false), Answer::Answered);
        assert_eq!(answer_of_status(429, false), Answer::Answered);
        assert_eq!(answer_of_status(200, false), Answer::Answered);
        let timeout = super::super::client::timeout();
        assert_eq!(answer_of_error(&timeout), Answer::Unanswered);
        let too_large = super::super::client::too_large();
        assert_eq!(answer_of_error(&too_large), Answer::Answered);
    }
}
