//! References between resources: `reference(type, key)` in a template becomes `Type/<logical id>`, the id
//! packing this practice, the record's patient (for items in a patient's record) and the target's native
//! key, so a reference read goes straight to the right native call.
//!
//! While a translation runs, the template's own calls of `reference` are resolved on the spot. An
//! expression the engine runs cannot reach this, so it leaves a mark (`expr::reference_mark`), as does a key
//! too long for an id. The marks made for a resource are noted, and those in its `reference` and attachment
//! `url` elements are resolved, or reported, once it is built. Text that merely looks like a mark (native
//! data) is never taken for one.

use super::expr::REFERENCE_MARK;
use super::{Compartment, Registry};
use crate::ids::{IdCodec, IdError};
use crate::tree::Tree;
use std::cell::RefCell;
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
    /// The marks made for the resource being built.
    marks: RefCell<Vec<String>>,
}

impl<'a> References<'a> {
    pub fn new(registry: &'a Registry, ids: &'a IdCodec, practice: &'a str, patient_key: &'a str) -> References<'a> {
        References {
            registry,
            ids,
            practice,
            patient_key,
            resolved: RefCell::new(HashMap::default()),
            marks: RefCell::new(Vec::new()),
        }
    }

    /// `Type/<logical id>` for a reference a template makes; a mark to report later when the key cannot be
    /// packed into an id.
    pub fn reference(&self, resource_type: &str, native_key: &str) -> String {
        match self.resolve_key(resource_type, native_key) {
            Ok(done) => done,
            Err(_) => {
                let mark = format!("{REFERENCE_MARK}{resource_type}{REFERENCE_MARK}{native_key}");
                self.marks.borrow_mut().push(mark.clone());
                mark
            }
        }
    }

    /// Starts a resource: marks made for an earlier one are forgotten.
    pub fn start_resource(&self) {
        self.marks.borrow_mut().clear();
    }

    /// Notes a value the engine made (an expression's value, a record a select computed): the marks in it
    /// are resolved once the resource is built.
    pub fn note(&self, value: &Tree) {
        collect_marks(value, &mut self.marks.borrow_mut());
    }

    /// Replaces the marks made for this resource, in its `reference` and attachment `url` elements, by
    /// `Type/<logical id>`.
    pub fn resolve_marks(&self, value: &mut Tree) -> Result<(), IdError> {
        let marks = std::mem::take(&mut *self.marks.borrow_mut());
        if marks.is_empty() {
            return Ok(());
        }
        self.resolve_in(value, &marks)
    }

    fn resolve_in(&self, value: &mut Tree, marks: &[String]) -> Result<(), IdError> {
        match value {
            Tree::Object(object) => {
                for (key, child) in object.iter_mut() {
                    match (&mut *child, key) {
                        (Tree::String(text), "reference" | "url") if marks.iter().any(|mark| mark == text) => {
                            let marked = &text[REFERENCE_MARK.len_utf8()..];
                            let (resource_type, native_key) = marked.split_once(REFERENCE_MARK).unwrap_or((marked, ""));
                            *text = self.resolve_key(resource_type, native_key)?.into();
                        }
                        _ => self.resolve_in(child, marks)?,
                    }
                }
            }
            Tree::Array(items) => {
                for item in items {
                    self.resolve_in(item, marks)?;
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

/// The reference marks a value holds.
fn collect_marks(value: &Tree, marks: &mut Vec<String>) {
    match value {
        Tree::String(text) if text.starts_with(REFERENCE_MARK) => marks.push(text.to_string()),
        Tree::Array(items) => items.iter().for_each(|item| collect_marks(item, marks)),
        Tree::Object(map) => map.values().for_each(|item| collect_marks(item, marks)),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mapping::Source;

    #[test]
    fn marks_made_here_are_resolved_and_look_alikes_are_not() {
        let registry = Registry::load(&Source::Embedded).unwrap();
        let ids = IdCodec::new(b"a test key of at least thirty-two bytes");
        let refs = References::new(&registry, &ids, "Y90001", "patient-1");
        refs.start_resource();
        let direct = refs.reference("Practitioner", "p1");
        assert!(direct.starts_with("Practitioner/"), "{direct}");
        let made = crate::mapping::expr::reference_mark("Encounter", "e1").unwrap();
        let look_alike = crate::mapping::expr::reference_mark("Encounter", "e2").unwrap();
        refs.note(&crate::tree!({ "reference": made }));
        let mut resource = crate::tree!({
            "encounter": { "reference": made },
            "basedOn": [{ "reference": look_alike }],
            "note": [{ "text": made }]
        });
        refs.resolve_marks(&mut resource).unwrap();
        assert!(resource["encounter"]["reference"]
            .as_str()
            .unwrap()
            .starts_with("Encounter/"));
        // Native text that looks like a mark, and marks outside reference elements, stay as they are.
        assert_eq!(resource["basedOn"][0]["reference"], crate::tree!(look_alike));
        assert_eq!(resource["note"][0]["text"], crate::tree!(made));
        // A key too long for an id is reported when the resource is built.
        let long = refs.reference("Encounter", &"x".repeat(300));
        let mut resource = crate::tree!({ "encounter": { "reference": long } });
        assert!(refs.resolve_marks(&mut resource).is_err());
    }
}
