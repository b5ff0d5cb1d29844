//! The typed FHIR R4 model, kept behind a handful of non-generic functions.
//!
//! fhirbolt's R4 model is large: a crate that instantiates its generic (de)serialisers takes minutes to
//! rebuild in release. Every such instantiation lives here, in a crate that rarely changes, so the main
//! crate only ever sees `serde_json::Value` and strings.

#![forbid(unsafe_code)]

use fhirbolt::model::r4::Resource;
use fhirbolt::serde::{DeserializationConfig, DeserializationMode};

/// Why a resource did not parse or serialise, in fhirbolt's words.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelError(pub String);

impl std::fmt::Display for ModelError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ModelError {}

fn strict() -> Option<DeserializationConfig> {
    Some(DeserializationConfig {
        mode: DeserializationMode::Strict,
    })
}

fn err(e: impl std::fmt::Display) -> ModelError {
    ModelError(e.to_string())
}

/// Runs a fhirbolt conversion, turning a panic inside it (it has a few on unexpected input) into an error,
/// so that no request can bring down a connection.
fn guarded<T>(f: impl FnOnce() -> Result<T, ModelError>) -> Result<T, ModelError> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(f))
        .unwrap_or_else(|_| Err(ModelError("the FHIR model could not process this content".into())))
}

/// Parses FHIR JSON strictly (unknown elements, wrong types and bad primitives are errors) and returns it
/// as the generic tree the rest of the proxy works with.
pub fn json_strict(bytes: &[u8]) -> Result<serde_json::Value, ModelError> {
    guarded(|| {
        let resource: Resource = fhirbolt::json::from_slice(bytes, strict()).map_err(err)?;
        fhirbolt::json::to_json_value(resource, None).map_err(err)
    })
}

/// Checks that a generic JSON tree is a valid R4 resource under strict parsing.
pub fn check_strict(value: &serde_json::Value) -> Result<(), ModelError> {
    guarded(|| {
        let _: Resource = fhirbolt::json::from_json_value(value.clone(), strict()).map_err(err)?;
        Ok(())
    })
}

/// Parses FHIR XML strictly and returns the equivalent FHIR JSON tree.
pub fn xml_to_json(bytes: &[u8]) -> Result<serde_json::Value, ModelError> {
    guarded(|| {
        let resource: Resource = fhirbolt::xml::from_slice(bytes, strict()).map_err(err)?;
        fhirbolt::json::to_json_value(resource, None).map_err(err)
    })
}

/// Renders a FHIR JSON tree as FHIR XML. The tree is parsed leniently: it was built by the proxy, and a
/// stricter check belongs in the tests, not on the response path.
pub fn json_to_xml(value: &serde_json::Value) -> Result<String, ModelError> {
    let config = Some(DeserializationConfig {
        mode: DeserializationMode::Lax,
    });
    guarded(|| {
        let resource: Resource = fhirbolt::json::from_json_value(value.clone(), config).map_err(err)?;
        fhirbolt::xml::to_string(&resource, None).map_err(err)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_round_trips_through_xml() {
        let json = br#"{"resourceType":"Patient","id":"p1","gender":"female","birthDate":"1985-04"}"#;
        let value = json_strict(json).unwrap();
        let xml = json_to_xml(&value).unwrap();
        assert!(xml.contains("<birthDate value=\"1985-04\"/>"), "{xml}");
        assert_eq!(xml_to_json(xml.as_bytes()).unwrap(), value);
    }

    #[test]
    fn a_panic_inside_the_model_is_an_error() {
        // fhirbolt panics on an empty array (which FHIR forbids anyway).
        let value = serde_json::json!({"resourceType": "Patient", "name": []});
        assert!(check_strict(&value).is_err());
    }

    #[test]
    fn strict_parsing_rejects_unknown_elements() {
        let json = br#"{"resourceType":"Patient","colour":"blue"}"#;
        assert!(json_strict(json).is_err());
    }
}
