//! The proxy's tests, one binary: each module is one capability, run over real HTTP on 127.0.0.1 against
//! the proxy and the simulators. One module alone: `cargo test --test integration records_agree::`.

mod common;

mod appointments_agree;
mod audit;
mod cache;
mod check;
mod code_maps;
mod conformance;
mod documents;
mod errors;
mod golden;
mod matrix;
mod native_faults;
mod native_pace;
mod paging;
mod patient;
mod patient_access;
mod policy;
mod practice_agree;
mod proxy_access;
mod record;
mod records_agree;
mod searches_agree;
mod serve;
mod suppliers_agree;
mod tokens;
mod transport;
