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

/// How every clinical item's identifier system begins when it carries its native record's own key
/// (`mappings/shared/_RecordIdentifier.yaml`, which adds the supplier, ODS code and type). Provenance, like
/// `meta.source`: the same item has another key at each supplier, so whatever orders or compares items across
/// suppliers sets it aside.
pub const RECORD_IDENTIFIER_SYSTEM: &str = "https://im1-fhir.dev/Id/record/";

/// Whether an identifier is a native record's own key (see [`RECORD_IDENTIFIER_SYSTEM`]).
pub fn is_record_identifier(identifier: &crate::tree::Tree) -> bool {
    identifier["system"]
        .as_str()
        .is_some_and(|system| system.starts_with(RECORD_IDENTIFIER_SYSTEM))
}
