//! The SystmOne simulator's tests, one binary: each module is one part of its native API, over real TCP and HTTP.

mod common;

mod bulk;
mod ci_appointments;
mod determinism;
mod pfs;
mod site;
mod transaction;
