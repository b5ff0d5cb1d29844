//! Seeded random streams and small drawing helpers.
//!
//! Each part of the world (a patient, the schedule, a practice's bookings) draws from its own ChaCha8 stream
//! seeded from (seed, label, index), so adding patients never changes the ones already generated.

use rand::seq::IndexedRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use time::{Date, Duration};

/// SplitMix64 finaliser: spreads nearby inputs over the whole 64-bit space.
fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Stream labels.
pub const PATIENT: u64 = 1;
pub const SCHEDULE: u64 = 2;
pub const BOOKINGS: u64 = 3;
pub const NHS_NUMBERS: u64 = 4;

/// The random stream for (seed, label, index).
pub fn stream(seed: u64, label: u64, index: u64) -> ChaCha8Rng {
    ChaCha8Rng::seed_from_u64(mix(seed ^ mix(label.wrapping_mul(0x1000_0000_01B3) ^ mix(index))))
}

/// Drawing helpers over any RNG.
pub trait Draw: Rng {
    /// True with probability `p`.
    fn chance(&mut self, p: f64) -> bool {
        self.random_bool(p.clamp(0.0, 1.0))
    }

    /// One element of a non-empty slice (the first when empty slices are passed by mistake is impossible:
    /// callers pass constant tables).
    fn pick<'a, T>(&mut self, items: &'a [T]) -> Option<&'a T> {
        items.choose(self)
    }

    /// One element chosen by weight.
    fn pick_weighted<'a, T>(&mut self, items: &'a [(u32, T)]) -> Option<&'a T> {
        let total: u32 = items.iter().map(|(w, _)| *w).sum();
        if total == 0 {
            return None;
        }
        let mut r = self.random_range(0..total);
        for (w, t) in items {
            if r < *w {
                return Some(t);
            }
            r -= w;
        }
        None
    }

    /// A date in `[from, to]` (or `from` when the range is empty).
    fn date_between(&mut self, from: Date, to: Date) -> Date {
        let days = (to - from).whole_days();
        if days <= 0 {
            return from;
        }
        from + Duration::days(self.random_range(0..=days))
    }

    /// A value in `[low, high]` rounded to `decimals` places.
    fn value(&mut self, low: f64, high: f64, decimals: u8) -> f64 {
        let scale = 10f64.powi(i32::from(decimals));
        let v = self.random_range(low..=high);
        (v * scale).round() / scale
    }
}

impl<R: Rng + ?Sized> Draw for R {}
