//! Simulators of the EMIS, SystmOne and Medicus native IM1 APIs share two things, both here:
//!
//! - [`record`]: one supplier-neutral synthetic record, generated from a seed ([`record::generate`]) and held
//!   in a shared, mutable [`record::World`] that the simulators read and write.
//! - [`common`]: the plumbing every simulator uses: an HTTP server with graceful shutdown and counters
//!   ([`common::serve`]), fault injection by `X-Sim-Fault` header or by rate ([`common::faults`]),
//!   throttling ([`common::throttle`]), an idempotency replay store ([`common::idempotency`]) and a
//!   length-prefixed TCP framing helper ([`common::framing`]).
//!
//! Start a world with [`SimOptions::world`].

#![forbid(unsafe_code)]

pub mod common;
pub mod record;

use std::sync::Arc;
use time::{Date, OffsetDateTime, Time};

/// Options shared by every simulator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SimOptions {
    /// Seed of the synthetic record.
    pub seed: u64,
    /// Number of patients (at least 2).
    pub patients: usize,
    /// Apply native rate limits and one-at-a-time rules (off for benchmarks: `--no-throttle`).
    pub throttle: bool,
    /// Anchor date of the record; None uses the real current date and the real clock.
    pub today: Option<Date>,
}

impl Default for SimOptions {
    fn default() -> Self {
        SimOptions {
            seed: 1,
            patients: 50,
            throttle: true,
            today: None,
        }
    }
}

impl SimOptions {
    /// The anchor date: `today` if given, else the current UTC date.
    pub fn anchor_date(&self) -> Date {
        self.today.unwrap_or_else(|| OffsetDateTime::now_utc().date())
    }

    /// Generate the record and wrap it in a world. With a fixed `today` the world's clock starts at 08:00 UTC
    /// on that date and runs in real time, so a test sees the same free slots whatever the real date; without
    /// one it is the system clock.
    pub fn world(&self) -> Arc<record::World> {
        let today = self.anchor_date();
        let record = record::generate(&record::GenerateOptions {
            seed: self.seed,
            patients: self.patients,
            today,
        });
        let clock = match self.today {
            Some(day) => record::Clock::anchored(
                day.with_time(Time::from_hms(8, 0, 0).unwrap_or(Time::MIDNIGHT))
                    .assume_utc(),
            ),
            None => record::Clock::System,
        };
        record::World::new(record, clock)
    }
}
