//! References between resources: `reference(type, key)` in a template becomes `Type/<logical id>`, the id
//! packing this practice, the record's patient (for items in a patient's record) and the target's native
//! key, so a reference read goes straight to the right native call.
//!
//! While a translation runs, the template's own calls of `reference` are resolved on the spot. An
//! expression the engine runs cannot reach this, so it leaves a mark (`expr::reference_mark`), as does a key
//! too long for an id; marks in `reference` and attachment `url` elements are resolved, or reported, once the
//! resource is built.

use super::expr::REFERENCE_MARK;
use super::{Compartment, Registry};
use crate::ids::{IdCodec, IdError};
use serde_json::Value;
use std::cell::{Cell, RefCell};
use std::collections::HashMap;

/// Native keys come from the supplier, never from a client: a fast hash will do.
type Hasher = foldhash::fast::RandomState;

/// Where the references of one practice's records point, and those already resolved.
pub struct References<'a> {
    registry: &'a Registry,
    ids: &'a IdCodec,
    practice: &'a str,
    patient_key: &'a str,
    /// `Type/<logical id>` by type and native key: the records of a reply mostly point at the same patient,
    /// clinicians and encounters, and each id costs an HMAC.
    resolved: RefCell<HashMap<String, HashMap<String, String, Hasher>, Hasher>>,
    /// Whether a mark may have been left in the resource being built.
    marked: Cell<bool>,
}

impl<'a> References<'a> {
    pub fn new(registry: &'a Registry, ids: &'a IdCodec, practice: &'a str, patient_key: &'a str) -> References<'a> {
        References {
            registry,
            ids,
            practice,
            patient_key,
            resolved: RefCell::new(HashMap::default()),
            marked: Cell::new(false),
        }
    }

    /// `Type/<logical id>` for a reference a template makes; a mark to report later when the key cannot be
    /// packed into an id.
    pub fn reference(&self, resource_type: &str, native_key: &str) -> String {
        match self.resolve_key(resource_type, native_key) {
            Ok(done) => done,
            Err(_) => {
                self.marked.set(true);
                format!("{REFERENCE_MARK}{resource_type}{REFERENCE_MARK}{native_key}")
            }
        }
    }

    /// Notes a value the engine made: marks in it are resolved once the resource is built.
    pub fn note(&self, value: &Value) {
        if !self.marked.get() && has_mark(value) {
            self.marked.set(true);
        }
    }

    /// Replaces the marks left in `reference` and attachment `url` elements by `Type/<logical id>`.
    pub fn resolve_marks(&self, value: &mut Value) -> Result<(), IdError> {
        if self.marked.replace(false) {
            self.resolve_in(value)?;
        }
        Ok(())
    }

    fn resolve_in(&self, value: &mut Value) -> Result<(), IdError> {
        match value {
            Value::Object(object) => {
                for (key, child) in object.iter_mut() {
                    match (&mut *child, key.as_str()) {
                        (Value::String(text), "reference" | "url") if text.starts_with(REFERENCE_MARK) => {
                            let marked = &text[REFERENCE_MARK.len_utf8()..];
                            let (resource_type, native_key) = marked.split_once(REFERENCE_MARK).unwrap_or((marked, ""));
                            *text = self.resolve_key(resource_type, native_key)?;
                        }
                        _ => self.resolve_in(child)?,
                    }
                }
            }
            Value::Array(items) => {
                for item in items {
                    self.resolve_in(item)?;
                }
            }
            _ => {}
        }
        Ok(())
    }

    fn resolve_key(&self, resource_type: &str, native_key: &str) -> Result<String, IdError> {
        if let Some(done) = self
            .resolved
            .borrow()
            .get(resource_type)
            .and_then(|keys| keys.get(native_key))
        {
            return Ok(done.clone());
        }
        let patient = match self.registry.compartment_of(resource_type) {
            Some(Compartment::Patient) => self.patient_key,
            _ => "",
        };
        let id = self
            .ids
            .encode_parts(resource_type, self.practice, patient, native_key)?;
        let done = format!("{resource_type}/{id}");
        self.resolved
            .borrow_mut()
            .entry(resource_type.to_string())
            .or_default()
            .insert(native_key.to_string(), done.clone());
        Ok(done)
    }
}

/// Whether a value holds a reference mark anywhere.
fn has_mark(value: &Value) -> bool {
    match value {
        Value::String(text) => text.starts_with(REFERENCE_MARK),
        Value::Array(items) => items.iter().any(has_mark),
        Value::Object(map) => map.values().any(has_mark),
        _ => false,
    }
}
