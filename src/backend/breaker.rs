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
//! When the time is up one call goes, a trial (half-open), on a new connection (and once it is answered, the
//! connections pooled before are let go): the others are refused until it ends (503, in a second), so a GP
//! system coming back is not met by every request that queued for it at once. The count is not cleared until a
//! call is answered, so the trial unanswered opens the circuit again at once; any answer, even an error, closes
//! it. A trial that ends uncounted (abandoned early, or timed out having gone late) lets the next call be the
//! trial. A supplier's refusal that says when to come back is its own pause (see `pace`), not a failure.

use super::client::{BROKEN, TIMED_OUT, UNREACHABLE};
use crate::config::BreakerSettings;
use crate::fhir::{FhirError, FhirResult};
use crate::mapping::Surface;
use std::sync::Mutex;
use std::time::{Duration, Instant};

#[derive(Default)]
struct State {
    unanswered: u32,
    /// Set when the circuit opens; cleared only by an answer, so once past it the circuit is half-open.
    open_until: Option<Instant>,
    /// The half-open circuit's one trial call, while it is out: its number, so that only it ends its trial.
    trial_out: Option<u64>,
    /// Trials so far.
    trials: u64,
}

/// Why calls are refused now.
enum Stopped {
    /// The circuit is open for this long still.
    Open(Duration),
    /// Half-open, and its trial call is out.
    Trying,
}

impl State {
    fn stopped(&self, now: Instant) -> Option<Stopped> {
        let until = self.open_until?;
        if until > now {
            Some(Stopped::Open(until - now))
        } else {
            self.trial_out.map(|_| Stopped::Trying)
        }
    }
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

    /// Refuses a call at once (503, with the `Retry-After` left) while the surface's circuit is open, or
    /// half-open with its trial call out.
    pub fn refuse_if_open(&self, surface: Surface) -> FhirResult<()> {
        let Ok(state) = self.sides[super::pace::side(surface)].lock() else {
            return Ok(());
        };
        refusal(&state, Instant::now())
    }

    /// A native call's attempt going out now on a surface, whose call has `timeout` in all and must end by
    /// `deadline`; refused as [`Breaker::refuse_if_open`] says. The first once the circuit is half-open is its
    /// trial.
    pub fn attempt(&self, surface: Surface, deadline: Instant, timeout: Duration) -> FhirResult<Attempt<'_>> {
        let started = Instant::now();
        let trial = match self.sides[super::pace::side(surface)].lock() {
            Ok(mut state) => {
                refusal(&state, started)?;
                // Past the time the circuit was open for, and not yet closed by an answer: half-open.
                let half_open = state.open_until.is_some();
                half_open.then(|| {
                    state.trials += 1;
                    state.trial_out = Some(state.trials);
                    state.trials
                })
            }
            Err(_) => None,
        };
        Ok(Attempt {
            breaker: self,
            surface,
            started,
            trial,
            silence_counts: deadline.saturating_duration_since(started) >= timeout / 2,
            abandoned_counts_after: timeout.mul_f64(0.75),
            finished: false,
        })
    }

    /// Counts a native call's outcome on a surface: an answer closes the circuit, an unanswered call past the
    /// count opens it.
    pub fn record(&self, surface: Surface, answer: Answer) {
        let Ok(mut state) = self.sides[super::pace::side(surface)].lock() else {
            return;
        };
        match answer {
            // Trials keep being numbered on: one from before still out must not end a later one.
            Answer::Answered => {
                *state = State {
                    trials: state.trials,
                    ..State::default()
                }
            }
            Answer::Unanswered => {
                state.unanswered = state.unanswered.saturating_add(1);
                let now = Instant::now();
                let open = state.open_until.is_some_and(|until| until > now);
                // Opened once: calls already out that fail later do not move the time clients were told.
                if self.settings.trip_after > 0 && state.unanswered >= self.settings.trip_after && !open {
                    state.trial_out = None;
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

    /// Whether calls to the surface are stopped now: its circuit open, or half-open with its trial out.
    pub fn is_open(&self, surface: Surface) -> bool {
        let side = &self.sides[super::pace::side(surface)];
        side.lock().is_ok_and(|state| state.stopped(Instant::now()).is_some())
    }

    /// A trial that ended without being counted: the next call is the trial, unless another trial has begun
    /// since (the circuit opened again meanwhile, and its time was up again before this one ended).
    fn release_trial(&self, surface: Surface, trial: u64) {
        if let Ok(mut state) = self.sides[super::pace::side(surface)].lock() {
            if state.trial_out == Some(trial) {
                state.trial_out = None;
            }
        }
    }
}

/// The refusal of a call while calls are stopped.
fn refusal(state: &State, now: Instant) -> FhirResult<()> {
    let unanswered = state.unanswered;
    let (left, now_what) = match state.stopped(now) {
        None => return Ok(()),
        Some(Stopped::Open(left)) => (left, "this server stops calling it for a while; try again later"),
        // The trial's answer is a time-out at most away, but most come in a moment.
        Some(Stopped::Trying) => (
            Duration::from_secs(1),
            "one call has gone to see whether it answers again; try again in a moment",
        ),
    };
    Err(FhirError::unavailable(
        "IM1-4012",
        format!("the GP system left its last {unanswered} calls from this server unanswered; {now_what}"),
    )
    .retry_after(super::pace::whole_seconds(left)))
}

/// One attempt at a native call, counted when it ends ([`Attempt::answered`], [`Attempt::failed`]), or when it
/// is abandoned with its request after waiting long enough (on drop).
pub struct Attempt<'a> {
    breaker: &'a Breaker,
    surface: Surface,
    started: Instant,
    /// The half-open circuit's trial this is, if it is one.
    trial: Option<u64>,
    /// Whether the attempt went out with at least half the call's time-out left, so that its time-out says
    /// something of the GP system.
    silence_counts: bool,
    /// How long an abandoned attempt must have waited for its silence to count.
    abandoned_counts_after: Duration,
    finished: bool,
}

impl Attempt<'_> {
    /// Whether it is the half-open circuit's trial: the first call after a while without answers.
    pub fn is_trial(&self) -> bool {
        self.trial.is_some()
    }

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
            self.uncounted();
            return;
        }
        self.breaker.record(self.surface, answer_of_error(error));
    }

    fn uncounted(&self) {
        if let Some(trial) = self.trial {
            self.breaker.release_trial(self.surface, trial);
        }
    }
}

impl Drop for Attempt<'_> {
    fn drop(&mut self) {
        if self.finished {
            return;
        }
        if self.started.elapsed() >= self.abandoned_counts_after {
            self.breaker.record(self.surface, Answer::Unanswered);
        } else {
            self.uncounted();
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

    /// The surface's open circuit as its time is up, without waiting for it.
    fn time_is_up(breaker: &Breaker, surface: Surface) {
        let mut state = breaker.sides[super::super::pace::side(surface)].lock().unwrap();
        state.open_until = state.open_until.map(|_| Instant::now() - Duration::from_millis(1));
    }

    /// A breaker whose transaction circuit opened (for 30 s) at one unanswered call, its time now up.
    fn half_open_transactions() -> Breaker {
        let breaker = breaker(1, Duration::from_secs(30));
        breaker.record(Surface::Transaction, Answer::Unanswered);
        time_is_up(&breaker, Surface::Transaction);
        breaker
    }

    const TIMEOUT: Duration = Duration::from_secs(10);

    fn attempt(breaker: &Breaker, surface: Surface) -> FhirResult<Attempt<'_>> {
        breaker.attempt(surface, Instant::now() + TIMEOUT, TIMEOUT)
    }

    #[test]
    fn once_the_time_is_up_one_trial_goes_whose_silence_opens_it_again_and_whose_answer_closes_it() {
        let breaker = breaker(2, Duration::from_secs(30));
        breaker.record(Surface::Patient, Answer::Unanswered);
        breaker.record(Surface::Patient, Answer::Unanswered);
        assert_eq!(attempt(&breaker, Surface::Patient).err().unwrap().retry_after, Some(30));
        time_is_up(&breaker, Surface::Patient);
        // Half-open: one call goes; the others are refused until it ends, told to come back in a second.
        assert!(!breaker.is_open(Surface::Patient));
        let trial = attempt(&breaker, Surface::Patient).unwrap();
        assert!(breaker.is_open(Surface::Patient));
        let refused = attempt(&breaker, Surface::Patient).err().unwrap();
        assert_eq!((refused.code, refused.retry_after), ("IM1-4012", Some(1)));
        // Unanswered: open again for the whole time at once.
        trial.failed(&super::super::client::unreachable());
        assert_eq!(attempt(&breaker, Surface::Patient).err().unwrap().retry_after, Some(30));
        time_is_up(&breaker, Surface::Patient);
        // An answer, even an error, closes it: calls go freely, and one unanswered call does not open it.
        let trial = attempt(&breaker, Surface::Patient).unwrap();
        trial.failed(&super::super::client::too_large());
        let first = attempt(&breaker, Surface::Patient).unwrap();
        let second = attempt(&breaker, Surface::Patient).unwrap();
        first.failed(&super::super::client::unreachable());
        second.answered(Answer::Answered);
        assert!(!breaker.is_open(Surface::Patient));
    }

    #[test]
    fn a_trial_that_ends_uncounted_lets_the_next_call_be_the_trial() {
        let breaker = half_open_transactions();
        // Abandoned with its request at once: it says nothing, and holds nobody back.
        let trial = attempt(&breaker, Surface::Transaction).unwrap();
        assert!(breaker.is_open(Surface::Transaction));
        drop(trial);
        // Timed out having gone with a tenth of its time: nothing said either.
        let trial = breaker
            .attempt(Surface::Transaction, Instant::now() + TIMEOUT / 10, TIMEOUT)
            .unwrap();
        assert!(breaker.is_open(Surface::Transaction));
        trial.failed(&super::super::client::timeout());
        // The next is the trial, and its answer closes the circuit.
        let trial = attempt(&breaker, Surface::Transaction).unwrap();
        assert!(breaker.is_open(Surface::Transaction));
        trial.answered(Answer::Answered);
        assert!(!breaker.is_open(Surface::Transaction));
    }

    #[test]
    fn only_the_trial_out_ends_its_trial() {
        let breaker = half_open_transactions();
        let first = attempt(&breaker, Surface::Transaction).unwrap();
        // A call already out before the circuit opened fails while the trial is out: open again, for the whole
        // time.
        breaker.record(Surface::Transaction, Answer::Unanswered);
        assert_eq!(
            breaker.refuse_if_open(Surface::Transaction).unwrap_err().retry_after,
            Some(30)
        );
        // Its time up again before the first trial ends: a second trial goes, and the first, abandoned, does
        // not let a third go beside it.
        time_is_up(&breaker, Surface::Transaction);
        let second = attempt(&breaker, Surface::Transaction).unwrap();
        drop(first);
        assert_eq!(
            attempt(&breaker, Surface::Transaction).err().unwrap().retry_after,
            Some(1)
        );
        second.answered(Answer::Answered);
        assert!(!breaker.is_open(Surface::Transaction));
        // Closed by another call's answer while a trial is out, then open and half-open again: the old trial,
        // abandoned, does not end the new one.
        breaker.record(Surface::Transaction, Answer::Unanswered);
        time_is_up(&breaker, Surface::Transaction);
        let old = attempt(&breaker, Surface::Transaction).unwrap();
        breaker.record(Surface::Transaction, Answer::Answered);
        breaker.record(Surface::Transaction, Answer::Unanswered);
        time_is_up(&breaker, Surface::Transaction);
        let new = attempt(&breaker, Surface::Transaction).unwrap();
        drop(old);
        assert!(attempt(&breaker, Surface::Transaction).is_err());
        new.answered(Answer::Answered);
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
        let late = breaker
            .attempt(Surface::Transaction, Instant::now() + timeout / 10, timeout)
            .unwrap();
        late.failed(&timed_out);
        assert!(!breaker.is_open(Surface::Transaction));
        // Abandoned after half its time-out: nothing said either (a long time-out, and the wait set rather than
        // slept, so that a busy machine's stall cannot take it past three quarters).
        let long = Duration::from_secs(10);
        let mut abandoned = breaker
            .attempt(Surface::Transaction, Instant::now() + long, long)
            .unwrap();
        abandoned.started -= long / 2;
        drop(abandoned);
        assert!(!breaker.is_open(Surface::Transaction));
        // Ended, however long it took: counted as it ended, not again on drop.
        let answered = breaker
            .attempt(Surface::Transaction, Instant::now() + timeout, timeout)
            .unwrap();
        std::thread::sleep(timeout);
        answered.answered(Answer::Answered);
        assert!(!breaker.is_open(Surface::Transaction));
        // A connection refused counts however late the attempt went out.
        let late = breaker
            .attempt(Surface::Transaction, Instant::now() + timeout / 10, timeout)
            .unwrap();
        late.failed(&super::super::client::unreachable());
        assert!(breaker.is_open(Surface::Transaction));
        // Abandoned after three quarters of its time-out without an answer: unanswered.
        let breaker = self::breaker(1, Duration::from_secs(30));
        let abandoned = breaker
            .attempt(Surface::Patient, Instant::now() + timeout, timeout)
            .unwrap();
        std::thread::sleep(timeout * 3 / 4);
        drop(abandoned);
        assert!(breaker.is_open(Surface::Patient));
        // A time-out with its whole time counts.
        let breaker = self::breaker(1, Duration::from_secs(30));
        let full = breaker
            .attempt(Surface::Transaction, Instant::now() + timeout, timeout)
            .unwrap();
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
