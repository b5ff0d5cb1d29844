//! Declarative mappings: native replies to UK Core resources, driven by YAML files, not Rust.

pub mod call;
pub mod chain;
pub mod concept_map;
pub mod context;
pub mod expr;
pub mod file;
pub mod inline;
pub mod join;
pub mod node;
pub mod problem;
pub mod profile;
pub mod refs;
pub mod registry;
pub mod rules;
pub mod template;
pub mod yaml;

pub use file::{Compartment, MappingFile, ParamType, Surface};
pub use registry::{Registry, Source};
