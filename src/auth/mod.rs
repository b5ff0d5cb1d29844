//! Identities: bearer tokens to principals, SMART scopes, and the policy that decides what a principal may do.

pub mod principal;
pub mod scopes;
pub mod token;

pub use principal::{Principal, Role};
