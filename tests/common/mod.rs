//! Test harness: the proxy (and, where a test needs them, the simulators) on 127.0.0.1 with ports the OS
//! chooses, and a real HTTP client.
#![allow(dead_code)]

use im1_fhir::audit::{AuditConfig, AuditStore};
use im1_fhir::auth::token::{self, Issuer, TokenRequest};
use im1_fhir::auth::Role;
use im1_fhir::backend::credentials::CredentialStore;
use im1_fhir::cache::CacheConfig;
use im1_fhir::config::{NativeConfig, PracticeConfig, ServerConfig};
use im1_fhir::mapping::{Registry, Source};
use im1_fhir::runtime::{self, Parts, Running};
use std::sync::Arc;

pub struct Proxy {
    pub running: Option<Running>,
    pub base: String,
    pub client: reqwest::Client,
    /// The proxy's AuditEvent store, for tests that check the audit trail.
    pub audit: AuditStore,
    pub audit_dir: tempfile::TempDir,
}

impl Proxy {
    pub async fn start(practices: Vec<PracticeConfig>, linkage: Arc<CredentialStore>) -> Proxy {
        Self::start_with(practices, linkage, test_native(), test_server()).await
    }

    /// As `start`, with a response cache (and linkage memory) of one's own.
    pub async fn start_cached(
        practices: Vec<PracticeConfig>,
        linkage: Arc<CredentialStore>,
        cache: CacheConfig,
    ) -> Proxy {
        Self::start_with_cache(practices, linkage, test_native(), test_server(), cache).await
    }

    pub async fn start_with(
        practices: Vec<PracticeConfig>,
        linkage: Arc<CredentialStore>,
        native: NativeConfig,
        server: ServerConfig,
    ) -> Proxy {
        Self::start_with_cache(practices, linkage, native, server, CacheConfig::default()).await
    }

    /// As `start_with`, with a response cache of one's own (the product's default elsewhere).
    pub async fn start_with_cache(
        practices: Vec<PracticeConfig>,
        linkage: Arc<CredentialStore>,
        native: NativeConfig,
        server: ServerConfig,
        cache: CacheConfig,
    ) -> Proxy {
        let registry = Registry::load(&Source::Embedded).unwrap_or_else(|p| panic!("mappings: {p:?}"));
        let audit_dir = tempfile::tempdir().unwrap();
        let audit = AuditStore::open(&AuditConfig::new(audit_dir.path().join("audit.db"))).unwrap();
        let state = runtime::build_state(Parts {
            registry: Arc::new(registry),
            practices,
            native,
            issuers: vec![Issuer::demo().unwrap()],
            secret_key: b"test-secret-key-of-at-least-32-bytes".to_vec(),
            linkage,
            public_base_url: None,
            max_body_bytes: server.max_body_bytes,
            body_timeout_ms: server.body_timeout_ms,
            audit: Some(audit.clone()),
            client_rate: server.client_rate,
            cache,
            max_requests_in_flight: server.max_requests_in_flight,
        })
        .unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let running = runtime::start(state, listener, None, &server, false).unwrap();
        let base = running.base_url();
        Proxy {
            running: Some(running),
            base,
            client: test_client(),
            audit,
            audit_dir,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}/{}", self.base, path.trim_start_matches('/'))
    }

    pub async fn get(&self, path: &str, token: &str) -> reqwest::Response {
        self.client.get(self.url(path)).bearer_auth(token).send().await.unwrap()
    }

    /// As `get`, with `Prefer: handling=lenient` (unknown parameters dropped with a warning).
    pub async fn get_lenient(&self, path: &str, token: &str) -> reqwest::Response {
        let request = self.client.get(self.url(path)).bearer_auth(token);
        request.header("prefer", "handling=lenient").send().await.unwrap()
    }

    pub async fn stop(mut self) {
        if let Some(running) = self.running.take() {
            running.shutdown().await;
        }
    }
}

/// Native calls as tests make them: short deadlines, one retry.
pub fn test_native() -> NativeConfig {
    NativeConfig {
        timeout_ms: 3_000,
        retries: 1,
        max_in_flight: 4,
        breaker: Default::default(),
    }
}

/// Tests make bursts of requests as one client, and of refused tokens from one address: no rate limit and no
/// failed-authentication budget unless a test asks for one.
pub fn test_server() -> ServerConfig {
    ServerConfig {
        client_rate: None,
        failed_auth_per_minute: None,
        ..ServerConfig::default()
    }
}

/// The tests' own FHIR client (the proxy's native clients are built in backend/client.rs).
#[allow(clippy::disallowed_methods)]
pub fn test_client() -> reqwest::Client {
    im1_fhir::runtime::install_crypto();
    reqwest::Client::new()
}

pub fn token(role: Role, practices: &[&str]) -> String {
    token::mint_demo(&TokenRequest {
        practices: practices.iter().map(|p| p.to_string()).collect(),
        role,
        nhs_number: None,
        scope: None,
        ttl_seconds: 600,
    })
    .unwrap()
}

/// A demo token for one practice with scopes of a test's choosing.
pub fn scoped(role: Role, ods: &str, scope: &str) -> String {
    token::mint_demo(&TokenRequest {
        practices: vec![ods.into()],
        role,
        nhs_number: None,
        scope: Some(scope.into()),
        ttl_seconds: 600,
    })
    .unwrap()
}

/// Asserts a response is an OperationOutcome with the status, returning it.
pub async fn outcome(response: reqwest::Response, status: u16) -> serde_json::Value {
    assert_eq!(response.status().as_u16(), status, "status");
    let content_type = response
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    assert!(
        content_type.starts_with("application/fhir+json"),
        "content type {content_type}"
    );
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(body["resourceType"], "OperationOutcome", "{body}");
    assert!(
        body["issue"][0]["details"]["coding"][0]["code"]
            .as_str()
            .unwrap_or("")
            .starts_with("IM1-"),
        "{body}"
    );
    body
}

/// Simulator options for tests: unthrottled, with the record's "today" fixed so results are stable.
/// A patient's token at one practice (the demo key), for the patient-facing tests.
pub fn patient_token(nhs: &str, ods: &str) -> String {
    token::mint_demo(&TokenRequest {
        practices: vec![ods.into()],
        role: Role::Patient,
        nhs_number: Some(nhs.into()),
        scope: None,
        ttl_seconds: 600,
    })
    .unwrap()
}

/// GET as a token: the status and the JSON body.
pub async fn get_json(proxy: &Proxy, path: &str, t: &str) -> (u16, serde_json::Value) {
    let response = proxy.get(path, t).await;
    let status = response.status().as_u16();
    (status, response.json().await.unwrap())
}

/// Whether a resource carries the `R` (restricted) confidentiality label of confidential items.
pub fn restricted(resource: &serde_json::Value) -> bool {
    resource["meta"]["security"]
        .as_array()
        .is_some_and(|labels| labels.iter().any(|l| l["code"] == "R"))
}

/// Every AuditEvent the proxy has committed (up to 1,000).
pub fn audit_events(proxy: &Proxy) -> Vec<serde_json::Value> {
    let query = im1_fhir::audit::AuditQuery {
        count: 1000,
        ..im1_fhir::audit::AuditQuery::default()
    };
    proxy.audit.search(&query).unwrap()
}

/// The AuditEvent of the request with this id.
pub fn audit_event_of(proxy: &Proxy, request_id: &str) -> serde_json::Value {
    audit_events(proxy)
        .into_iter()
        .find(|e| audited_request_id(e).as_deref() == Some(request_id))
        .unwrap_or_else(|| panic!("no AuditEvent for {request_id}"))
}

/// The AuditEvent of one request: whether it was a cache hit, and how many native calls it made.
pub fn audited(proxy: &Proxy, request_id: &str) -> (String, usize) {
    cache_and_calls(&audit_event_of(proxy, request_id))
}

/// A GET as a token, with the request id the audit trail will show.
pub async fn get_as(proxy: &Proxy, path: &str, token: &str, request_id: &str) -> reqwest::Response {
    let request = proxy.client.get(proxy.url(path)).bearer_auth(token);
    request.header("x-request-id", request_id).send().await.unwrap()
}

/// The request id an AuditEvent records (its BALP transaction entity).
pub fn audited_request_id(event: &serde_json::Value) -> Option<String> {
    event["entity"]
        .as_array()?
        .iter()
        .find(|e| e["type"]["code"] == "XrequestId")
        .and_then(|e| e["what"]["identifier"]["value"].as_str())
        .map(String::from)
}

/// An AuditEvent's cache outcome (`hit` or `miss`) and how many native calls it records.
pub fn cache_and_calls(event: &serde_json::Value) -> (String, usize) {
    let entities = event["entity"].as_array().cloned().unwrap_or_default();
    let cache = entities
        .iter()
        .flat_map(|e| e["detail"].as_array().cloned().unwrap_or_default())
        .find(|d| d["type"] == "cache")
        .and_then(|d| d["valueString"].as_str().map(String::from))
        .unwrap_or_default();
    let calls = entities.iter().filter(|e| e["name"] == "native call").count();
    (cache, calls)
}

/// The simulators for one seed with `patients` patients, their NHS numbers, and a proxy over them.
pub async fn seeded(seed: u64, patients: usize) -> (im1_fhir::demo::Simulators, Vec<String>, Proxy) {
    let sims = im1_fhir::demo::Simulators::start(fixed_options(seed, patients))
        .await
        .unwrap();
    let numbers = sims
        .world
        .read(|r| r.patients.iter().map(|p| p.nhs_number.clone()).collect());
    let proxy = Proxy::start(sims.practices(), sims.linkage()).await;
    (sims, numbers, proxy)
}

pub fn fixed_options(seed: u64, patients: usize) -> im1_sim::SimOptions {
    im1_sim::SimOptions {
        seed,
        patients,
        throttle: false,
        today: Some(time::macros::date!(2026 - 03 - 02)),
    }
}

/// The item types of a patient's record that every supplier maps and searches by patient.
pub const RECORD_ITEMS: &[&str] = &[
    "AllergyIntolerance",
    "Condition",
    "Observation",
    "Immunization",
    "MedicationRequest",
    "MedicationStatement",
    "Encounter",
    "DocumentReference",
];

/// The matched resources of a searchset, owned.
pub fn matches(bundle: &serde_json::Value) -> Vec<serde_json::Value> {
    entries(bundle, "match").into_iter().cloned().collect()
}

/// GET a search as a token, insisting on 200, and give its matched resources.
pub async fn search_matches(proxy: &Proxy, query: &str, token: &str) -> Vec<serde_json::Value> {
    let response = proxy.get(query, token).await;
    let status = response.status();
    let bundle: serde_json::Value = response.json().await.unwrap();
    assert_eq!(status, 200, "{query}: {bundle}");
    matches(&bundle)
}

/// A bundle's link of a relation (`next`, `self`), as a path under the FHIR base to follow with `Proxy::get`.
pub fn link(bundle: &serde_json::Value, relation: &str) -> Option<String> {
    bundle["link"]
        .as_array()?
        .iter()
        .find(|l| l["relation"] == relation)
        .and_then(|l| l["url"].as_str())
        .map(|u| u.split_once("/fhir/").map_or(u, |(_, p)| p).to_string())
}

/// The resources of a searchset with one search mode (`match`, `include`, `outcome`).
pub fn entries<'b>(bundle: &'b serde_json::Value, mode: &str) -> Vec<&'b serde_json::Value> {
    bundle["entry"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|e| e["search"]["mode"] == mode)
        .map(|e| &e["resource"])
        .collect()
}

/// A resource as the agreement tests compare it: without id, meta, narrative and the native record's key (its
/// provenance), and with every reference (and attachment url) replaced by what it points at when that is
/// known, else by the target's type.
pub fn comparable(
    resource: &serde_json::Value,
    targets: &std::collections::HashMap<String, serde_json::Value>,
) -> serde_json::Value {
    let mut out = resource.clone();
    if let Some(object) = out.as_object_mut() {
        for key in ["id", "meta", "text"] {
            object.remove(key);
        }
        if let Some(identifiers) = object.get_mut("identifier").and_then(serde_json::Value::as_array_mut) {
            identifiers.retain(|i| !im1_fhir::mapping::is_record_identifier(&im1_fhir::tree::Tree::from(i)));
            if identifiers.is_empty() {
                object.remove("identifier");
            }
        }
    }
    replace_references(&mut out, targets);
    out
}

fn replace_references(value: &mut serde_json::Value, targets: &std::collections::HashMap<String, serde_json::Value>) {
    use serde_json::Value;
    match value {
        Value::Object(object) => {
            for (key, child) in object.iter_mut() {
                if let (Value::String(text), "reference" | "url") = (&*child, key.as_str()) {
                    let kind = text.split('/').next().unwrap_or_default().to_string();
                    *child = targets.get(text).cloned().unwrap_or(Value::String(kind));
                } else {
                    replace_references(child, targets);
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(|i| replace_references(i, targets)),
        _ => {}
    }
}

/// The proxy's `/metrics` text.
pub async fn metrics(proxy: &Proxy) -> String {
    let root = proxy.base.trim_end_matches("/fhir").to_string();
    proxy
        .client
        .get(format!("{root}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

/// A GET's JSON body, from any client (no token).
pub async fn plain_json(client: &reqwest::Client, url: &str) -> serde_json::Value {
    client.get(url).send().await.unwrap().json().await.unwrap()
}

/// The CapabilityStatement's entry for a resource type.
pub fn capability_entry<'s>(statement: &'s serde_json::Value, resource: &str) -> &'s serde_json::Value {
    statement["rest"][0]["resource"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["type"] == resource)
        .unwrap_or_else(|| panic!("no {resource} in the statement"))
}

/// What a supplier's interface does not carry, set aside when its resources are compared with another's.
pub enum Aside {
    /// These top-level elements.
    Elements(&'static [&'static str]),
    /// Every element but these (and `resourceType`).
    AllBut(&'static [&'static str]),
    /// The items labelled confidential themselves (`carried`): not there at all (the agreement tests
    /// compare that supplier with the others' records without them).
    ConfidentialItems,
}

/// One exception to agreement across suppliers ("Agreement across suppliers, precisely" in the design): where
/// a confirmed fact says a supplier's interface carries less, what is set aside there, and why.
pub struct Exception {
    pub supplier: &'static str,
    /// `transaction` or `patient` (the patient-facing API).
    pub surface: &'static str,
    pub resource: &'static str,
    pub aside: Aside,
    pub reason: &'static str,
}

/// Every exception to the agreement tests, in one place (records_agree.rs, patient_access.rs,
/// proxy_access.rs and practice_agree.rs apply it): keep it short and every reason true.
pub const AGREEMENT_EXCEPTIONS: &[Exception] = &[
    Exception {
        supplier: "medicus",
        surface: "transaction",
        resource: "every journal item",
        aside: Aside::ConfidentialItems,
        reason: "Medicus's Transactional journal leaves out items confidential from third parties (confirmed); \
                 the proxy says so with IM1-3203 on each search of them",
    },
    Exception {
        supplier: "medicus",
        surface: "patient",
        resource: "Patient",
        aside: Aside::AllBut(&["id", "identifier"]),
        reason: "Medicus's patient-facing API gives a patient's demographics as their NHS number only (confirmed); \
                 the proxy says so with IM1-3203",
    },
    Exception {
        supplier: "medicus",
        surface: "patient",
        resource: "RelatedPerson",
        aside: Aside::Elements(&["name"]),
        reason: "list-linked-patients gives the proxy user's name as one display string (confirmed): `text` there",
    },
];

/// A resource as it compares across suppliers: what the exceptions set aside for this supplier, surface and
/// type removed.
pub fn set_aside(supplier: &str, surface: &str, resource: &serde_json::Value) -> serde_json::Value {
    let mut resource = resource.clone();
    let resource_type = resource["resourceType"].as_str().unwrap_or_default().to_string();
    let Some(object) = resource.as_object_mut() else {
        return resource;
    };
    for exception in AGREEMENT_EXCEPTIONS
        .iter()
        .filter(|e| e.supplier == supplier && e.surface == surface && e.resource == resource_type)
    {
        match exception.aside {
            Aside::Elements(elements) => elements.iter().for_each(|e| {
                object.remove(*e);
            }),
            Aside::AllBut(kept) => object.retain(|key, _| key == "resourceType" || kept.contains(&key.as_str())),
            // Whole items, not elements: see `carried`.
            Aside::ConfidentialItems => {}
        }
    }
    resource
}

/// Whether an item is labelled confidential (restricted) by its practice.
pub fn is_confidential(resource: &serde_json::Value) -> bool {
    resource["meta"]["security"]
        .as_array()
        .is_some_and(|labels| labels.iter().any(|label| label["code"] == "R"))
}

/// Whether a supplier's interface on a surface carries items confidential from third parties, as
/// AGREEMENT_EXCEPTIONS has it.
pub fn carries_confidential(supplier: &str, surface: &str) -> bool {
    !AGREEMENT_EXCEPTIONS
        .iter()
        .any(|e| e.supplier == supplier && e.surface == surface && matches!(e.aside, Aside::ConfidentialItems))
}

/// Whether an item (as another supplier gives it) is one that supplier's interface on that surface carries.
pub fn carried(supplier: &str, surface: &str, resource: &serde_json::Value) -> bool {
    carries_confidential(supplier, surface) || !is_confidential(resource)
}

/// The supplier a demo practice runs.
pub fn supplier_of(ods: &str) -> &'static str {
    match ods {
        "Y90001" => "emis",
        "Y90002" => "systmone",
        _ => "medicus",
    }
}

/// The simulators with every EMIS reply taking `latency_ms`: a request held while a test does something else.
pub async fn with_slow_emis(options: im1_sim::SimOptions, latency_ms: u64) -> im1_fhir::demo::Simulators {
    im1_fhir::demo::Simulators::start_with(options, |emis, _, _| {
        emis.faults = im1_sim::common::faults::FaultRates {
            latency: 1.0,
            latency_ms,
            ..Default::default()
        };
    })
    .await
    .unwrap()
}

/// A served resource (not a `_summary`/`_elements` subset) is strict FHIR R4 and meets R4's required elements
/// and bindings and its UK Core profile's rules (`im1_fhir::mapping::rules`).
pub fn assert_uk_core(resource: &serde_json::Value, what: &str) {
    im1_fhir_model::check_strict(resource).unwrap_or_else(|e| panic!("{what}: not strict FHIR R4: {e}: {resource}"));
    let problems = im1_fhir::mapping::rules::problems(resource);
    assert!(
        problems.is_empty(),
        "{what}: breaks R4 or UK Core rules: {problems:#?}\n{resource}"
    );
}
