//! The shared simulator runtime's tests, one binary: framing, throttling, faults and the synthetic record.

mod http;
mod record;
