//! Which records a principal may see. Clinicians and systems reach whole practices (checked where ids are
//! decoded); a patient reaches the records their linkage opens at each practice: their own, and those they act
//! for through proxy access. The native system is asked once and the answer remembered for
//! `[cache] linkage_seconds` (a revoked proxy link stops working within that time); every returned resource's
//! id is compared with it.

use crate::app::AppState;
use crate::auth::{Principal, Role};
use crate::fhir::FhirResult;
use crate::mapping::Compartment;
use crate::tree::Tree;
use sha2::{Digest, Sha256};
use std::sync::Arc;
use std::time::Duration;

/// At most this many linkages are remembered (the least recently used go first).
const MAX_REMEMBERED: u64 = 100_000;

/// The native keys of the records a patient's linkage opens at one practice.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Linked {
    /// Their own record.
    pub own: String,
    /// The records they act for (proxy access).
    pub proxies: Vec<String>,
}

impl Linked {
    /// Whether the linkage opens the record with this native key.
    pub fn reaches(&self, key: &str) -> bool {
        self.own == key || self.proxies.iter().any(|p| p == key)
    }

    /// Every record, their own first.
    pub fn records(&self) -> impl Iterator<Item = &str> {
        std::iter::once(self.own.as_str()).chain(self.proxies.iter().map(String::as_str))
    }
}

/// (SHA-256 of the patient's NHS number, practice).
type LinkageKey = ([u8; 32], String);

/// Patients' linked records per patient and practice, for a while; none when the time is zero.
pub struct Linkages {
    remembered: Option<moka::future::Cache<LinkageKey, Arc<Linked>>>,
}

impl Linkages {
    pub fn new(remember_for: Duration) -> Linkages {
        Linkages {
            remembered: (!remember_for.is_zero()).then(|| {
                moka::future::Cache::builder()
                    .time_to_live(remember_for)
                    .max_capacity(MAX_REMEMBERED)
                    .build()
            }),
        }
    }
}

/// The records a patient principal's linkage opens at a practice; `None` for other roles.
pub async fn linked_records(
    state: &AppState,
    principal: &Principal,
    ods: &str,
    request_id: &str,
) -> FhirResult<Option<Arc<Linked>>> {
    if principal.role != Role::Patient {
        return Ok(None);
    }
    let Some(nhs) = principal.nhs_number.as_deref() else {
        return Err(crate::fhir::FhirError::forbidden(
            "IM1-2105",
            "the patient token carries no NHS number",
        ));
    };
    let Some(practice) = state.backend.practice(ods) else {
        return Ok(None);
    };
    let ask = async {
        let mut work = crate::app::NativeWork::new(state, practice);
        let keys = practice.linked_records(nhs, request_id, &mut work.produced.calls).await;
        drop(work);
        let mut keys = keys?.into_iter();
        let own = keys.next().unwrap_or_default();
        Ok(Arc::new(Linked {
            own,
            proxies: keys.collect(),
        }))
    };
    let Some(remembered) = &state.linkages.remembered else {
        return ask.await.map(Some);
    };
    // One native call for every request of the same patient waiting on it; failures are not remembered.
    let key = (Sha256::digest(nhs.as_bytes()).into(), ods.to_string());
    remembered
        .try_get_with(key, ask)
        .await
        .map(Some)
        .map_err(|e: Arc<crate::fhir::FhirError>| crate::fhir::FhirError::clone(&e))
}

/// Whether a principal may see a resource. Clinicians and systems: yes (practice reach is checked on ids). A
/// patient: their own Patient (by id and NHS number), the Patients they act for (by id), items of those records
/// (by the record key in the item's id), and practice-level data (staff, slots). Checked per returned resource,
/// not only per request.
pub fn in_compartment(state: &AppState, principal: &Principal, linked: Option<&Linked>, resource: &Tree) -> bool {
    if principal.role != Role::Patient {
        return true;
    }
    let (Some(nhs), Some(linked)) = (principal.nhs_number.as_deref(), linked) else {
        return false;
    };
    // Items the practice marked confidential never leave for patient-facing access (the native patient APIs
    // leave them out already; this holds even if one did not).
    if is_restricted(resource) {
        return false;
    }
    let resource_type = resource.get("resourceType").and_then(Tree::as_str).unwrap_or_default();
    let id = resource.get("id").and_then(Tree::as_str).unwrap_or_default();
    let Ok(logical) = state.ids.decode(resource_type, id) else {
        return false;
    };
    match state.registry.compartment_of(resource_type) {
        // Their own Patient must also carry their NHS number; the linkage alone names the ones they act for.
        Some(Compartment::SelfPatient) if logical.item != linked.own => linked.reaches(&logical.item),
        Some(Compartment::SelfPatient) => resource.get("identifier").and_then(Tree::as_array).is_some_and(|ids| {
            ids.iter().any(|i| {
                i.get("system").and_then(Tree::as_str) == Some("https://fhir.nhs.uk/Id/nhs-number")
                    && i.get("value").and_then(Tree::as_str) == Some(nhs)
            })
        }),
        Some(Compartment::Patient) => linked.reaches(&logical.patient),
        Some(Compartment::None) => true,
        None => false,
    }
}

/// Whether a principal may see a resource for a permission (`r` read, `s` search): the compartment, and the
/// token's granular scopes (`patient/Observation.rs?category=laboratory` lets only laboratory results through).
pub fn may_see(
    state: &AppState,
    principal: &Principal,
    linked: Option<&Linked>,
    resource: &Tree,
    permission: char,
) -> bool {
    in_compartment(state, principal, linked, resource) && scopes_allow(state, principal, resource, permission)
}

/// A resource passes the scopes when one scope for its type and permission has no restriction, or when it
/// matches every parameter of one restricted scope. A restriction the proxy cannot evaluate (a parameter the
/// type does not define) lets nothing through.
pub fn scopes_allow(state: &AppState, principal: &Principal, resource: &Tree, permission: char) -> bool {
    use crate::fhir::rest::SearchParam;
    let resource_type = resource.get("resourceType").and_then(Tree::as_str).unwrap_or_default();
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
pub fn is_restricted(resource: &Tree) -> bool {
    resource
        .pointer("/meta/security")
        .and_then(Tree::as_array)
        .is_some_and(|labels| {
            labels.iter().any(|l| {
                l.get("system").and_then(Tree::as_str)
                    == Some("http://terminology.hl7.org/CodeSystem/v3-Confidentiality")
                    && l.get("code").and_then(Tree::as_str) == Some("R")
            })
        })
}
