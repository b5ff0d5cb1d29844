//! Which records a principal may see. Clinicians and systems reach whole practices (checked where ids are
//! decoded); a patient reaches their own record only: the record their linkage opens at each practice, asked of
//! the native system once and remembered for a while, and compared with every returned resource's id.

use crate::app::AppState;
use crate::auth::{Principal, Role};
use crate::fhir::FhirResult;
use crate::mapping::Compartment;
use serde_json::Value;
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How long a patient's own record key is remembered (linkages change rarely; a re-link takes effect after).
const REMEMBER: Duration = Duration::from_secs(600);
/// Beyond this many remembered keys the memory is cleared rather than grown.
const MAX_REMEMBERED: usize = 100_000;

/// Patients' own record keys, per (NHS number, practice).
#[derive(Default)]
pub struct OwnRecords {
    keys: Mutex<HashMap<(String, String), (String, Instant)>>,
}

impl OwnRecords {
    fn get(&self, nhs: &str, ods: &str) -> Option<String> {
        let keys = self.keys.lock().ok()?;
        keys.get(&(nhs.to_string(), ods.to_string()))
            .filter(|(_, at)| at.elapsed() < REMEMBER)
            .map(|(key, _)| key.clone())
    }

    fn put(&self, nhs: &str, ods: &str, key: &str) {
        if let Ok(mut keys) = self.keys.lock() {
            if keys.len() >= MAX_REMEMBERED {
                keys.clear();
            }
            keys.insert((nhs.to_string(), ods.to_string()), (key.to_string(), Instant::now()));
        }
    }
}

/// The native key of a patient principal's own record at a practice; `None` for other roles.
pub async fn own_record(
    state: &AppState,
    principal: &Principal,
    ods: &str,
    request_id: &str,
) -> FhirResult<Option<String>> {
    if principal.role != Role::Patient {
        return Ok(None);
    }
    let Some(nhs) = principal.nhs_number.as_deref() else {
        return Err(crate::fhir::FhirError::forbidden(
            "IM1-2105",
            "the patient token carries no NHS number",
        ));
    };
    if let Some(key) = state.own_records.get(nhs, ods) {
        return Ok(Some(key));
    }
    let Some(practice) = state.backend.practice(ods) else {
        return Ok(None);
    };
    let mut calls = Vec::new();
    let key = practice.own_patient_key(nhs, request_id, &mut calls).await;
    crate::app::record_native_calls(state, practice, &calls);
    let key = key?;
    state.own_records.put(nhs, ods, &key);
    Ok(Some(key))
}

/// Whether a principal may see a resource. Clinicians and systems: yes (practice reach is checked on ids). A
/// patient: their own Patient (by id and NHS number), items of their own record (by the record key in the
/// item's id), and practice-level data (staff, slots). Checked per returned resource, not only per request.
pub fn in_compartment(state: &AppState, principal: &Principal, own: Option<&str>, resource: &Value) -> bool {
    if principal.role != Role::Patient {
        return true;
    }
    let (Some(nhs), Some(own)) = (principal.nhs_number.as_deref(), own) else {
        return false;
    };
    // Items the practice marked confidential never leave for patient-facing access (the native patient APIs
    // leave them out already; this holds even if one did not).
    if is_restricted(resource) {
        return false;
    }
    let resource_type = resource.get("resourceType").and_then(Value::as_str).unwrap_or_default();
    let id = resource.get("id").and_then(Value::as_str).unwrap_or_default();
    let Ok(logical) = state.ids.decode(resource_type, id) else {
        return false;
    };
    match state.registry.compartment_of(resource_type) {
        Some(Compartment::SelfPatient) => {
            logical.item == own
                && resource.get("identifier").and_then(Value::as_array).is_some_and(|ids| {
                    ids.iter().any(|i| {
                        i.get("system").and_then(Value::as_str) == Some("https://fhir.nhs.uk/Id/nhs-number")
                            && i.get("value").and_then(Value::as_str) == Some(nhs)
                    })
                })
        }
        Some(Compartment::Patient) => logical.patient == own,
        Some(Compartment::None) => true,
        None => false,
    }
}

/// Whether a principal may see a resource for a permission (`r` read, `s` search): the compartment, and the
/// token's granular scopes (`patient/Observation.rs?category=laboratory` lets only laboratory results through).
pub fn may_see(state: &AppState, principal: &Principal, own: Option<&str>, resource: &Value, permission: char) -> bool {
    in_compartment(state, principal, own, resource) && scopes_allow(state, principal, resource, permission)
}

/// A resource passes the scopes when one scope for its type and permission has no restriction, or when it
/// matches every parameter of one restricted scope. A restriction the proxy cannot evaluate (a parameter the
/// type does not define) lets nothing through.
pub fn scopes_allow(state: &AppState, principal: &Principal, resource: &Value, permission: char) -> bool {
    use crate::fhir::rest::SearchParam;
    let resource_type = resource.get("resourceType").and_then(Value::as_str).unwrap_or_default();
    let mut granted = principal.scopes_granting(resource_type, permission).peekable();
    if granted.peek().is_none() {
        return false;
    }
    granted.any(|scope| {
        scope.filter.iter().all(|(name, value)| {
            let def = state.registry.param(resource_type, name);
            let Some(def) = def else { return false };
            let param = SearchParam {
                name: name.clone(),
                modifier: None,
                values: value.split(',').map(String::from).collect(),
            };
            crate::fhir::search::matches(resource, &[(def, &param)]).unwrap_or(false)
        })
    })
}

/// Whether a resource carries the `R` (restricted) confidentiality label the mappings give confidential items.
pub fn is_restricted(resource: &Value) -> bool {
    resource
        .pointer("/meta/security")
        .and_then(Value::as_array)
        .is_some_and(|labels| {
            labels.iter().any(|l| {
                l.get("system").and_then(Value::as_str)
                    == Some("http://terminology.hl7.org/CodeSystem/v3-Confidentiality")
                    && l.get("code").and_then(Value::as_str) == Some("R")
            })
        })
}
