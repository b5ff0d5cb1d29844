//! The EMIS Web simulator's tests, one binary: each module is one part of its native API, over real HTTP.

mod common;

mod admin;
mod behaviour;
mod booking;
mod bulk;
mod record;
mod session;
mod writes;
