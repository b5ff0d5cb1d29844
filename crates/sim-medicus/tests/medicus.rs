//! The Medicus simulator's tests, one binary: each module is one part of its native API, over real HTTP.

mod common;

mod appointment_book;
mod auth;
mod behaviour;
mod flows;
mod organisation;
mod record;
