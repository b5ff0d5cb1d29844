//! The FHIR side of the proxy: REST parsing, formats, errors, Bundles, the CapabilityStatement. It never
//! names a supplier.

pub mod bundle;
pub mod capability;
pub mod conditional;
pub mod dates;
pub mod error;
pub mod format;
pub mod resource_types;
pub mod rest;
pub mod search;
pub mod sort;
pub mod xml_ns;

pub use error::{FhirError, FhirResult, IssueType};

/// The identifier system of NHS numbers.
pub const NHS_NUMBER_SYSTEM: &str = "https://fhir.nhs.uk/Id/nhs-number";
