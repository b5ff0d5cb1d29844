//! The FHIR pipeline behind the tower stack, read top-down: public endpoints, authentication, parsing,
//! authorisation, routing to practices, translation, Bundle assembly and encoding. Every failure is a
//! `FhirError`, turned into an OperationOutcome in one place (`respond_error`).

use crate::audit;
use crate::auth::token::{TokenError, Verifier};
use crate::auth::{Principal, Role};
use crate::backend::Backend;
use crate::fhir::bundle::{self, PageTokens, SearchsetInput};
use crate::fhir::capability::{self, PracticeInfo};
use crate::fhir::format::{self, Format};
use crate::fhir::rest::{self, Freshness, Handling, Interaction, Kind};
use crate::fhir::search;
use crate::fhir::{FhirError, FhirResult};
use crate::ids::IdCodec;
use crate::mapping::file::ParamDef;
use crate::mapping::{Compartment, Registry};
use crate::metrics::{Answered, Metrics, NativeLabels, SupplierLabel};
use crate::policy;
use crate::reach;
use crate::record_ops;
use crate::translate::{self, Produced};
use crate::tree::Tree;
use base64::Engine as _;
use bytes::Bytes;
use http::{header, HeaderMap, HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, Limited};
use serde_json::Value;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// Everything a request needs, shared by all connections.
pub struct AppState {
    pub registry: Arc<Registry>,
    pub backend: Backend,
    pub ids: IdCodec,
    pub pages: PageTokens,
    pub verifier: Verifier,
    /// The token issuers as `.well-known/smart-configuration` names them.
    pub smart: capability::SmartIssuer,
    pub public_base_url: Option<String>,
    pub max_body_bytes: usize,
    pub body_timeout: std::time::Duration,
    pub metrics: Metrics,
    pub started: String,
    pub ready: AtomicBool,
    /// The CapabilityStatement per base URL, made on first use.
    pub capabilities: std::sync::Mutex<std::collections::HashMap<String, Tree>>,
    /// Per-client request budgets (see ratelimit.rs).
    pub limiter: Option<crate::ratelimit::ClientLimiter>,
    /// Patients' own record keys per practice (see reach.rs).
    pub linkages: crate::reach::Linkages,
    /// Where AuditEvents are committed; `None` only in benchmarks of the bare pipeline.
    pub audit: Option<crate::audit::AuditStore>,
    /// Translated native answers, shared briefly (see cache.rs).
    pub cache: crate::cache::ResponseCache,
    /// The FHIR requests being handled, against their bound.
    pub in_flight: InFlight,
}

/// The bound on FHIR requests handled at once: past it a request is turned away at once (503, try again in a
/// second) rather than queued, so a surge cannot hold memory and connections without bound; the probes and
/// metrics are never turned away.
pub struct InFlight {
    permits: Arc<tokio::sync::Semaphore>,
    limit: usize,
}

/// A request's place among those in flight: carried in its response's extensions, so that it is held through
/// the audit layer's wait for its commit too, until hyper writes the response's head (not while its body is
/// sent: a slow reader's body is not counted).
#[derive(Clone)]
struct Admitted(#[allow(dead_code)] Arc<tokio::sync::OwnedSemaphorePermit>);

impl InFlight {
    pub fn new(limit: usize) -> InFlight {
        InFlight {
            permits: Arc::new(tokio::sync::Semaphore::new(limit)),
            limit,
        }
    }

    fn admit(&self) -> FhirResult<Admitted> {
        let permit = self.permits.clone().try_acquire_owned();
        permit.map(|p| Admitted(Arc::new(p))).map_err(|_| {
            FhirError::unavailable(
                "IM1-5006",
                format!("the server is handling its limit of {} requests; try again", self.limit),
            )
            .retry_after(1)
        })
    }
}

pub type Body = Full<Bytes>;

/// Handles one request; never fails (errors are responses).
pub async fn handle<B>(state: Arc<AppState>, request: Request<B>) -> Response<Body>
where
    B: http_body::Body + Send,
    B::Data: Send,
    B::Error: std::error::Error + Send + Sync + 'static,
{
    if let Err(error) = crate::server::limits::check(request.headers()) {
        return refuse(&error, "invalid");
    }
    // Each request shares its own native reads, and only its own.
    let (mut response, label) = crate::backend::shared_replies::within_request(route(&state, request)).await;
    // Counted outside the audit layer (`Metrics::count`), by the status the client gets.
    response.extensions_mut().insert(Answered(label));
    response
}

/// The answer to a request refused before it is routed (its headers past the limits, its address past its
/// budget of failed authentications): the OperationOutcome with the FHIR base's headers, labelled for the
/// metrics.
pub fn refuse(error: &FhirError, label: &str) -> Response<Body> {
    let mut response = respond_error(error, Format::Json, false);
    fhir_headers(&mut response, false);
    response.extensions_mut().insert(Answered(label.to_string()));
    response
}

/// The answer to a request within the limits: the probes, the metrics and the FHIR base.
async fn route<B>(state: &Arc<AppState>, request: Request<B>) -> (Response<Body>, String)
where
    B: http_body::Body + Send,
    B::Data: Send,
    B::Error: std::error::Error + Send + Sync + 'static,
{
    let path = request.uri().path().to_string();
    match path.as_str() {
        "/healthz" => (text(StatusCode::OK, "ok\n"), "healthz".to_string()),
        "/readyz" => {
            // Not ready while starting or draining, nor while the audit trail takes no events (every request
            // would be a 503).
            // A store that failed its last commit is tried again at each probe, so one that recovers makes the
            // server ready again even while a load balancer sends it nothing.
            if let Some(audit) = &state.audit {
                audit.probe();
            }
            let audited = state.audit.as_ref().is_none_or(|audit| audit.is_accepting());
            let failing = state.audit.as_ref().is_some_and(|audit| audit.is_failing());
            let (status, text_body) = match (state.ready.load(Ordering::Relaxed), audited, failing) {
                (true, true, _) => (StatusCode::OK, "ready\n"),
                (true, false, true) => (StatusCode::SERVICE_UNAVAILABLE, "the audit trail fails to commit\n"),
                (true, false, false) => (StatusCode::SERVICE_UNAVAILABLE, "the audit trail takes no events\n"),
                (false, ..) => (StatusCode::SERVICE_UNAVAILABLE, "not serving\n"),
            };
            (text(status, text_body), "readyz".to_string())
        }
        "/metrics" => {
            state.metrics.read_circuits(&state.backend);
            let mut response = text(StatusCode::OK, &state.metrics.render());
            response.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/openmetrics-text; version=1.0.0; charset=utf-8"),
            );
            (response, "metrics".to_string())
        }
        p if p == "/fhir" || p.starts_with("/fhir/") => {
            let public = matches!(p, "/fhir/metadata" | "/fhir/.well-known/smart-configuration");
            let admitted = match state.in_flight.admit() {
                Ok(admitted) => admitted,
                Err(error) => {
                    let mut response = respond_error(&error, Format::Json, false);
                    fhir_headers(&mut response, public);
                    return (response, "shed".to_string());
                }
            };
            // While the audit trail cannot commit, no GP system is asked anything: the event could not be kept.
            // This request's own event is still tried, and the first to commit ends it.
            if state.audit.as_ref().is_some_and(|audit| audit.is_failing()) {
                let error = FhirError::unavailable("IM1-5101", "the audit trail is unavailable; try again later")
                    .retry_after(1);
                let mut response = respond_error(&error, Format::Json, false);
                fhir_headers(&mut response, public);
                return (response, "unaudited".to_string());
            }
            let (mut response, label) = fhir(state, request).await;
            response.extensions_mut().insert(admitted);
            fhir_headers(&mut response, public);
            (response, label)
        }
        _ => (
            respond_error(
                &FhirError::not_found("IM1-1007", "the FHIR base is /fhir"),
                Format::Json,
                false,
            ),
            "unknown".to_string(),
        ),
    }
}

/// The headers every answer under the FHIR base carries.
fn fhir_headers(response: &mut Response<Body>, public: bool) {
    // Answers hold patient data and depend on the token: no shared or browser cache may keep them. The format
    // follows Accept.
    let headers = response.headers_mut();
    let cache = if public { "no-cache" } else { "no-store" };
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static(cache));
    headers.insert(header::VARY, HeaderValue::from_static("Accept"));
    // A browser renders nothing here as anything but the type it is labelled with.
    headers.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
}

async fn fhir<B>(state: &AppState, request: Request<B>) -> (Response<Body>, String)
where
    B: http_body::Body + Send,
    B::Data: Send,
    B::Error: std::error::Error + Send + Sync + 'static,
{
    let (parts, body) = request.into_parts();
    // The base once: `/fhir/fhirmetadata` is no path of this server.
    let path = parts.uri.path();
    let relative = path.strip_prefix("/fhir").unwrap_or(path);
    let relative = relative.strip_prefix('/').unwrap_or(relative).to_string();
    let format_hint = error_format(&parts.headers, parts.uri.query());
    let request_id = parts
        .headers
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    let base = match base_url(state, &parts) {
        Ok(base) => base,
        Err(e) => return (respond_error(&e, format_hint, false), "invalid".into()),
    };

    // Public: discovery.
    let public = matches!(relative.as_str(), "metadata" | ".well-known/smart-configuration");
    let principal = if public {
        None
    } else {
        match authenticate(state, &parts.headers) {
            Ok(p) => {
                audit::note(|facts| facts.who = Some(who(&p)));
                if let Some(Err(seconds)) = state.limiter.as_ref().map(|l| l.check(&p.budget_key())) {
                    let error = FhirError::too_many("IM1-2301", "too many requests from this client", seconds);
                    return (respond_error(&error, format_hint, false), "throttled".into());
                }
                Some(p)
            }
            Err(e) => {
                // What was attempted is on record too, where the request says it clearly (the 401 comes first
                // whatever else is wrong with the request).
                if let Ok(attempted) = rest::parse(&parts.method, &relative, parts.uri.query(), &parts.headers) {
                    note_interaction(&attempted);
                }
                return (respond_error(&e, format_hint, false), "unauthenticated".into());
            }
        }
    };
    let mut interaction = match rest::parse(&parts.method, &relative, parts.uri.query(), &parts.headers) {
        Ok(i) => i,
        Err(e) => return (respond_error(&e, format_hint, false), "invalid".into()),
    };
    let label = interaction.label();
    note_interaction(&interaction);
    note_requested_patients(state, &interaction);
    let body = match read_body(state, &parts.method, &parts.headers, &interaction.kind, body).await {
        Ok(b) => b,
        Err(e) => return (respond_error(&e, interaction.format, interaction.pretty), label),
    };
    let dispatched = dispatch(state, &mut interaction, principal.as_ref(), body, &base, &request_id);
    let (result, served) = crate::cache::noting_served(dispatched).await;
    let response = match result {
        Ok(value) => {
            audit::note(|facts| merge_patients(&mut facts.patients, patients_in(&value)));
            let last_updated = value
                .pointer("/meta/lastUpdated")
                .and_then(Tree::as_str)
                .map(String::from);
            let response = match &interaction.binary_accept {
                Some(accept) => {
                    let content_type = value.get("contentType").and_then(Tree::as_str).unwrap_or_default();
                    match format::binary_wanted(Some(accept), content_type) {
                        Some(format::BinaryAnswer::Content) => binary_content(&value),
                        Some(format::BinaryAnswer::Resource) => {
                            let shaped = bundle::shape(value, interaction.summary, &interaction.elements);
                            respond(StatusCode::OK, &shaped, &interaction)
                        }
                        None => respond_error(
                            &FhirError::not_acceptable(
                                "IM1-1102",
                                format!("the document is {content_type}; Accept takes neither it nor a FHIR format"),
                            ),
                            Format::Json,
                            false,
                        ),
                    }
                }
                // The SMART configuration is plain JSON (SMART App Launch), not a FHIR resource.
                None if interaction.kind == Kind::SmartConfiguration => {
                    let mut response = respond(StatusCode::OK, &value, &interaction);
                    response
                        .headers_mut()
                        .insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
                    response
                }
                None => respond(StatusCode::OK, &value, &interaction),
            };
            let mut response = response;
            // Its age is stamped as it leaves (`cache::stamp_age`).
            if let Some(served) = served {
                response.extensions_mut().insert(served);
            }
            // A read, as a resource or as a Binary's content, says when it last changed and answers the
            // client's preconditions.
            if interaction.kind == Kind::Read && response.status() == StatusCode::OK {
                set_last_modified(&mut response, last_updated.as_deref());
                conditional_read(&parts.headers, response, &interaction)
            } else {
                response
            }
        }
        Err(e) => respond_error(&e, interaction.format, interaction.pretty),
    };
    (response, label)
}

/// What the request body was, once read and parsed.
enum RequestBody {
    None,
    Form(Bytes),
    Resource(Value),
}

async fn read_body<B>(
    state: &AppState,
    method: &Method,
    headers: &HeaderMap,
    kind: &Kind,
    body: B,
) -> FhirResult<RequestBody>
where
    B: http_body::Body + Send,
    B::Data: Send,
    B::Error: std::error::Error + Send + Sync + 'static,
{
    // Writes are refused whatever they carry (405, in dispatch): their bodies are not read, let alone judged.
    let write = matches!(kind, Kind::Create | Kind::Update | Kind::Patch);
    if write || !matches!(*method, Method::POST | Method::PUT | Method::PATCH) {
        return Ok(RequestBody::None);
    }
    // Bodies are read as sent: a compressed one would only fail later as "not valid JSON".
    let encoding = headers.get(header::CONTENT_ENCODING).and_then(|v| v.to_str().ok());
    if encoding.is_some_and(|e| !e.trim().eq_ignore_ascii_case("identity")) {
        return Err(FhirError::unsupported_media(
            "IM1-1115",
            "Content-Encoding is not supported on request bodies; send them uncompressed",
        ));
    }
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    if declared.is_some_and(|n| n > state.max_body_bytes) {
        return Err(too_large(state.max_body_bytes));
    }
    let whole = tokio::time::timeout(state.body_timeout, Limited::new(body, state.max_body_bytes).collect());
    let bytes = whole
        .await
        .map_err(|_| {
            FhirError::new(
                StatusCode::REQUEST_TIMEOUT,
                crate::fhir::IssueType::Timeout,
                "IM1-1117",
                format!(
                    "the request body did not arrive within {} ms",
                    state.body_timeout.as_millis()
                ),
            )
        })?
        .map_err(|e| {
            if e.downcast_ref::<http_body_util::LengthLimitError>().is_some() {
                too_large(state.max_body_bytes)
            } else {
                FhirError::bad_request("IM1-1112", "the request body could not be read")
            }
        })?
        .to_bytes();
    let content_type = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok());
    // Media types are case-insensitive (RFC 9110 §8.3.1).
    let form = content_type.is_some_and(|c| {
        c.get(..33)
            .is_some_and(|t| t.eq_ignore_ascii_case("application/x-www-form-urlencoded"))
    });
    if form {
        return Ok(RequestBody::Form(bytes));
    }
    if bytes.is_empty() && *method == Method::POST {
        return Ok(RequestBody::None);
    }
    // A search by POST takes its parameters as a form: any other body is the wrong media type, not a resource
    // to be judged.
    if *kind == Kind::Search {
        return Err(search_body_refused());
    }
    let format = format::body_format(content_type)?;
    Ok(RequestBody::Resource(format::parse_body(format, &bytes)?))
}

fn search_body_refused() -> FhirError {
    FhirError::unsupported_media(
        "IM1-1104",
        "a search by POST takes application/x-www-form-urlencoded parameters",
    )
}

fn too_large(limit: usize) -> FhirError {
    FhirError::too_large("IM1-1113", format!("the request body is larger than {limit} bytes"))
}

fn authenticate(state: &AppState, headers: &HeaderMap) -> FhirResult<Principal> {
    // Two sets of credentials are ambiguous: which one acted? (RFC 6750 §3.1: invalid_request, a 400.)
    if headers.get_all(header::AUTHORIZATION).iter().count() > 1 {
        return Err(FhirError::bad_request("IM1-2003", "give one Authorization header"));
    }
    let token = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer ").or_else(|| v.strip_prefix("bearer ")))
        .map(str::trim)
        .filter(|t| !t.is_empty());
    let result = match token {
        None => Err(TokenError::Missing),
        Some(token) => state.verifier.verify(token),
    };
    result.map_err(|e| match e {
        TokenError::Missing => FhirError::unauthorized("IM1-2001", "a bearer token is needed"),
        TokenError::Invalid(reason) => FhirError::unauthorized("IM1-2002", reason),
    })
}

async fn dispatch(
    state: &AppState,
    interaction: &mut Interaction,
    principal: Option<&Principal>,
    body: RequestBody,
    base: &str,
    request_id: &str,
) -> FhirResult<Tree> {
    match interaction.kind {
        Kind::Capabilities => {
            interaction.refuse_not_taken()?;
            // `mode` (R4): full and normative are this statement; terminology, what the ConceptMaps cover.
            let mode = interaction.params.iter().find(|p| p.name == "mode");
            match mode.and_then(|p| p.values.first()).map(String::as_str) {
                None | Some("full" | "normative") => {}
                Some("terminology") => {
                    return Ok(Tree::from(capability::terminology_capabilities(
                        &state.registry,
                        base,
                        &state.started,
                    )))
                }
                Some(_) => {
                    return Err(FhirError::bad_request("IM1-1210", "mode is full, normative or terminology").at("mode"))
                }
            }
            // The statement depends only on the loaded mappings, the practices and the base URL: made once per
            // base (a handful: one per host name clients use), then served from memory.
            if let Some(statement) = state.capabilities.lock().ok().and_then(|c| c.get(base).cloned()) {
                return Ok(statement);
            }
            let practices: Vec<PracticeInfo> = state
                .backend
                .practices()
                .map(|p| PracticeInfo {
                    ods: p.ods.clone(),
                    supplier_key: p.supplier.key().into(),
                    supplier_name: p.supplier.display().into(),
                })
                .collect();
            let statement = Tree::from(capability::capability_statement(
                &state.registry,
                &practices,
                &state.smart,
                base,
                &state.started,
            ));
            if let Ok(mut cache) = state.capabilities.lock() {
                if cache.len() < 64 {
                    cache.insert(base.to_string(), statement.clone());
                }
            }
            return Ok(statement);
        }
        Kind::SmartConfiguration => return Ok(Tree::from(capability::smart_configuration(&state.smart))),
        _ => {}
    }
    let principal = principal.ok_or_else(|| FhirError::unauthorized("IM1-2001", "a bearer token is needed"))?;
    // NHS login: the GP record (and IM1 linkage) is for patients proven to P9; a lower level gets nothing of it.
    if principal.role == Role::Patient && principal.proofing_level.as_deref() != Some("P9") {
        return Err(FhirError::forbidden(
            "IM1-2108",
            "the GP record needs NHS login identity proofing level P9",
        ));
    }
    let resource_type = interaction.resource_type.clone().unwrap_or_default();
    if let RequestBody::Form(form) = &body {
        if interaction.kind == Kind::Search {
            rest::add_form_params(interaction, form)?;
            note_query(interaction);
            note_requested_patients(state, interaction);
        } else {
            return Err(FhirError::unsupported_media(
                "IM1-1104",
                "Content-Type must be application/fhir+json or application/fhir+xml",
            ));
        }
    }
    if let RequestBody::Resource(resource) = &body {
        let body_type = resource.get("resourceType").and_then(Value::as_str).unwrap_or_default();
        if matches!(interaction.kind, Kind::Operation(_)) {
            // An operation not offered is refused as such below (405), whatever its body holds; an offered
            // one's input is a Parameters resource, whatever type it is invoked on.
            if offers_operation(interaction) {
                if body_type != "Parameters" {
                    return Err(
                        FhirError::bad_request("IM1-1114", "an operation's body is a Parameters resource")
                            .at("resourceType"),
                    );
                }
                rest::add_operation_parameters(interaction, resource)?;
                note_query(interaction);
            }
        } else if interaction.resource_type.as_deref().is_some_and(|t| t != body_type) {
            return Err(
                FhirError::bad_request("IM1-1114", "the body's resourceType does not match the URL").at("resourceType"),
            );
        }
    }
    if relative_references(state, interaction, base) {
        note_query(interaction);
        note_requested_patients(state, interaction);
    }
    if resource_type == "AuditEvent" {
        return audit_search(state, interaction, principal, base).await;
    }
    // An auditor reviews who saw what; the record itself is for care (and its patient), whatever the scopes say.
    if principal.role == Role::Auditor && resource_type != "ConceptMap" {
        return Err(FhirError::forbidden(
            "IM1-2109",
            "auditors read the audit trail (AuditEvent) and the ConceptMaps only",
        ));
    }
    // Conformance resources: how codes were translated is not patient data; any authenticated user may look.
    if resource_type == "ConceptMap" {
        return crate::conformance::handle(&state.registry, &state.pages, interaction, base);
    }
    // A system-level operation (`$export`, `$meta`): none is offered; what the path takes is nothing else.
    if let (None, Kind::Operation(name)) = (&interaction.resource_type, &interaction.kind) {
        return Err(FhirError::method_not_allowed(
            "IM1-1009",
            format!("operation ${name} is not supported at the system level"),
        ));
    }
    if state.registry.for_resource(&resource_type).next().is_none() {
        return Err(FhirError::not_found(
            "IM1-1008",
            format!("{resource_type} is not served by this server"),
        ));
    }
    let searched = state.registry.is_searched(&resource_type);
    let read_here = state.registry.is_read(&resource_type);
    match interaction.kind {
        Kind::Read => read(state, interaction, principal, request_id).await,
        // A type read only through the references of others (Medication, Binary) is not searched.
        Kind::Search if !searched => Err(FhirError::method_not_allowed(
            "IM1-1009",
            format!("{resource_type} is read by id here, not searched"),
        )),
        Kind::Search => search(state, interaction, principal, base, request_id).await,
        // The one operation offered here (ConceptMap's `$translate` is answered above).
        Kind::Operation(_) if offers_operation(interaction) => {
            everything(state, interaction, principal, base, request_id).await
        }
        Kind::Create | Kind::Update | Kind::Patch | Kind::Delete | Kind::VRead | Kind::History | Kind::Operation(_) => {
            // What the same path does take: a type's search, an item's read.
            // (A conditional write names no id: its path is the type's.)
            let type_level = interaction.id.is_none();
            let allow = match interaction.kind {
                Kind::Create if searched => "GET, HEAD",
                Kind::Update | Kind::Patch | Kind::Delete if type_level && searched => "GET, HEAD",
                Kind::Update | Kind::Patch | Kind::Delete if !type_level && read_here => "GET, HEAD",
                _ => "",
            };
            let what = match &interaction.kind {
                // Named, and where it is offered elsewhere, where: `Patient/$everything` is an instance's.
                Kind::Operation(name) if name == "everything" && resource_type == "Patient" => {
                    "operation $everything at type level (it is offered on one Patient: Patient/{id}/$everything)"
                        .to_string()
                }
                Kind::Operation(name) => format!("operation ${}", rest::printable(name)),
                other => other.name().to_string(),
            };
            Err(
                FhirError::method_not_allowed("IM1-1009", format!("{what} is not supported for {resource_type}"))
                    .allow(allow),
            )
        }
        Kind::Capabilities | Kind::SmartConfiguration => unreachable_interaction(),
    }
}

/// A Patient's NHS number.
fn nhs_number_of(patient: &Tree) -> Option<&str> {
    patient
        .get("identifier")?
        .as_array()?
        .iter()
        .find(|i| i.get("system").and_then(Tree::as_str) == Some(crate::fhir::NHS_NUMBER_SYSTEM))?
        .get("value")?
        .as_str()
}

/// Whether the operation invoked is one this server offers: `Patient/{id}/$everything` and ConceptMap's
/// `$translate` (on a map, or naming one).
fn offers_operation(interaction: &Interaction) -> bool {
    let Kind::Operation(name) = &interaction.kind else {
        return false;
    };
    match (name.as_str(), interaction.resource_type.as_deref()) {
        ("everything", Some("Patient")) => interaction.id.is_some(),
        ("translate", Some("ConceptMap")) => true,
        _ => false,
    }
}

/// What translating for this principal needs from the server's state.
pub fn translation<'a>(
    state: &'a AppState,
    principal: &'a Principal,
    request_id: &'a str,
    linked: Option<&'a reach::Linked>,
) -> translate::Context<'a> {
    translate::Context {
        registry: &state.registry,
        ids: &state.ids,
        principal,
        request_id,
        linked,
    }
}

fn unreachable_interaction() -> FhirResult<Tree> {
    Err(FhirError::internal("IM1-5001", "interaction routed twice"))
}

/// Scope check: does any granted scope allow this permission on this type for this role?
fn check_scope(principal: &Principal, resource_type: &str, permission: char) -> FhirResult<()> {
    if principal.scopes_granting(resource_type, permission).next().is_some() {
        Ok(())
    } else {
        Err(FhirError::forbidden(
            "IM1-2101",
            format!("the token's scopes do not allow this on {resource_type}"),
        ))
    }
}

async fn read(
    state: &AppState,
    interaction: &Interaction,
    principal: &Principal,
    request_id: &str,
) -> FhirResult<Tree> {
    let resource_type = interaction.resource_type.as_deref().unwrap_or_default();
    let id = interaction.id.as_deref().unwrap_or_default();
    interaction.refuse_not_taken()?;
    let resource = read_one(state, principal, resource_type, id, request_id, interaction.fresh).await?;
    // A Binary served as its own content is the content: _summary and _elements shape FHIR answers only.
    if interaction.binary_accept.is_some() {
        return Ok(resource);
    }
    Ok(bundle::shape(resource, interaction.summary, &interaction.elements))
}

/// Reads one resource by its logical id for a principal: scope, practice reach and compartment checked. An
/// id that is not ours, or that the principal may not see, is simply not found. `fresh`: not from the cache.
pub async fn read_one(
    state: &AppState,
    principal: &Principal,
    resource_type: &str,
    id: &str,
    request_id: &str,
    fresh: Freshness,
) -> FhirResult<Tree> {
    check_scope(principal, resource_type, 'r')?;
    let not_found = || FhirError::not_found("IM1-1401", format!("{resource_type} not found"));
    let logical = state.ids.decode(resource_type, id).map_err(|_| not_found())?;
    if !principal.may_reach_practice(&logical.practice) {
        return Err(not_found());
    }
    let practice = state.backend.practice(&logical.practice).ok_or_else(not_found)?;
    let mapping = state
        .registry
        .get(practice.supplier.key(), resource_type)
        .ok_or_else(|| {
            // An id of a type this practice's system no longer maps: nothing here to read.
            FhirError::not_found(
                "IM1-1402",
                format!("{resource_type} is not available from this practice"),
            )
        })?;
    // A patient's linkage first: a record it does not open is not asked for at all.
    let linked = reach::linked_records(state, principal, &logical.practice, request_id).await?;
    if let (Some(linked), Some(record)) = (&linked, mapping.compartment.record_of(&logical)) {
        if !linked.reaches(record) {
            return Err(not_found());
        }
    }
    let ctx = translation(state, principal, request_id, linked.as_deref());
    // A supplier's own "not found" (its patient API hides confidential items so) is told as any unknown id.
    let resource = crate::cache::read(state, &ctx, practice, mapping, &logical, fresh)
        .await
        .map_err(|e| if e.code == "IM1-4104" { not_found() } else { e })?;
    if !reach::may_see(state, principal, linked.as_deref(), &resource, 'r') {
        return Err(not_found());
    }
    match policy::minimise(practice, principal, resource, &mut Vec::new()) {
        policy::Minimised::Kept(resource) => Ok(resource),
        policy::Minimised::Withheld => Err(FhirError::forbidden(
            "IM1-2201",
            format!(
                "documents are withheld by practice {}'s policy for this kind of user",
                practice.ods
            ),
        )),
    }
}

/// `Patient/{id}/$everything`: the Patient and every item of its record the principal may see, as one
/// searchset (paged like any search).
async fn everything(
    state: &AppState,
    interaction: &Interaction,
    principal: &Principal,
    base: &str,
    request_id: &str,
) -> FhirResult<Tree> {
    let id = interaction.id.as_deref().unwrap_or_default();
    let mut warnings = Vec::new();
    let filter = record_ops::EverythingFilter::parse(state, interaction, &mut warnings)?;
    let patient = read_one(state, principal, "Patient", id, request_id, interaction.fresh).await?;
    let records = record_ops::records_of(state, std::slice::from_ref(&patient));
    // What supports the record (R4's $everything: "e.g. linked practitioners"): the practice's people and
    // organisations that what is returned names, read once each, as an include would.
    let supporting: Vec<&str> = record_ops::SUPPORTING
        .iter()
        .copied()
        .filter(|t| record_ops::is_supporting(&state.registry, t) && filter.wants(t))
        .collect();
    // Supporting data named by what is returned; only when `_type` asks for it alone, by the whole record.
    let record_wanted = state
        .registry
        .resource_types()
        .into_iter()
        .any(|t| record_ops::of_the_record(&state.registry, t) && filter.wants(t));
    let search_for_supporting = !supporting.is_empty() && !record_wanted;
    let mut matches = Vec::new();
    // What is searched only for what it names.
    let mut referrers = Vec::new();
    if filter.wants("Patient") && filter.keeps(&patient, &state.registry) {
        matches.push(patient);
    } else if search_for_supporting {
        referrers.push(patient);
    }
    // Items the mappings read but do not search (a course's Medication) are reached through the references
    // of those they do search, searched then even when not asked for themselves.
    let record_types: Vec<&str> = state
        .registry
        .resource_types()
        .into_iter()
        .filter(|t| state.registry.compartment_of(t) == Some(Compartment::Patient))
        .collect();
    let referenced: Vec<&str> = record_types
        .iter()
        .copied()
        .filter(|t| !state.registry.is_searched(t) && filter.wants(t))
        .collect();
    let mut types: Vec<&str> = record_types
        .iter()
        .copied()
        .filter(|t| {
            state.registry.is_searched(t) && (filter.wants(t) || !referenced.is_empty() || search_for_supporting)
        })
        .collect();
    types.sort_unstable();
    // Each type in order: left out (outside the token's scopes), or searched in each record. The searches run
    // several at once; what they find and say is taken in this order, as if one after another.
    let mut plan = Vec::new();
    for resource_type in types {
        // A type searched only for what it points at says nothing and fails nothing of the answer.
        let wanted = filter.wants(resource_type);
        if check_scope(principal, resource_type, 's').is_err() {
            plan.push((resource_type, wanted, None));
            continue;
        }
        plan.extend(records.iter().map(|record| (resource_type, wanted, Some(record))));
    }
    // A failure not told: of a type not wanted, or one only another kind of user's API carries (a RelatedPerson,
    // known to the patient-facing APIs alone, as the CapabilityStatement says: said only when asked for by
    // name, not on every $everything).
    let untold = |resource_type: &str, wanted: bool, e: &FhirError| {
        !wanted || (e.code == "IM1-2401" && !filter.names(resource_type))
    };
    // A failure that ends the request: any other, but a type this kind of user cannot have at this practice
    // (said, not a failure).
    let ends_request = |resource_type: &str, wanted: bool, e: &FhirError| {
        !untold(resource_type, wanted, e) && e.status != StatusCode::FORBIDDEN
    };
    let mut work = Vec::new();
    for &(resource_type, wanted, record) in &plan {
        let Some(record) = record else { continue };
        let ends_request = &ends_request;
        work.push(async move {
            let search = record_ops::RecordSearch {
                resource_type,
                record,
                narrow: None,
            };
            let mut said = Vec::new();
            let found = record_ops::search_record(state, principal, request_id, search, interaction.fresh, &mut said)
                .await
                .map(|mut found| {
                    // Native replies come in each supplier's own order.
                    crate::fhir::sort::sort_as_searched(&state.registry, resource_type, &mut found, &[]);
                    found
                });
            let ends = matches!(&found, Err(e) if ends_request(resource_type, wanted, e));
            (found, said, ends)
        });
    }
    let mut answers = record_ops::fan_out(state, work, |(_, _, ends)| *ends).await.into_iter();
    for &(resource_type, wanted, record) in &plan {
        let Some(record) = record else {
            if wanted {
                warnings.push(crate::fhir::error::warning(
                    crate::fhir::IssueType::Forbidden,
                    "IM1-2103",
                    format!("{resource_type} is outside the token's scopes and was left out"),
                ));
            }
            continue;
        };
        // Past a failure that ended the request, nothing more was asked.
        let Some((found, said, _)) = answers.next() else { break };
        if wanted {
            // What each search says once (a practice's policy) is said once across them too.
            for warning in said {
                crate::fhir::error::push_once(&mut warnings, warning);
            }
        }
        // Items are followed to what they name (a prescription's Medication) only when cared for within
        // `start` and `end`.
        let in_window = |r: &Tree| filter.cared_for_within(r, &state.registry);
        match found {
            Ok(found) if wanted => {
                if !referenced.is_empty() {
                    referrers.extend(found.iter().filter(|r| in_window(r)).cloned());
                }
                matches.extend(found.into_iter().filter(|r| filter.keeps(r, &state.registry)))
            }
            Ok(found) => referrers.extend(found.into_iter().filter(|r| in_window(r))),
            Err(e) if untold(resource_type, wanted, &e) => {}
            // A type this kind of user cannot have at this practice is said, not silently missing.
            Err(e) if e.status == StatusCode::FORBIDDEN => warnings.push(unavailable_here(format!(
                "{resource_type} is not available to this user at practice {}",
                record.practice
            ))),
            Err(e) => return Err(e),
        }
    }
    let named: Vec<(&str, String)> = referenced
        .iter()
        .flat_map(|&t| {
            record_ops::ids_named(referrers.iter(), t)
                .into_iter()
                .map(move |id| (t, id))
        })
        .collect();
    for ((resource_type, _), read) in
        record_ops::read_each(state, principal, request_id, interaction.fresh, &named).await
    {
        // As for an include: an item withheld is simply absent; a type refused, or a native failure, is said once.
        match read {
            Ok(item) if filter.keeps(&item, &state.registry) => matches.push(item),
            Ok(_) => {}
            Err(e) => record_ops::say_unread(&e, resource_type, "the record", &mut warnings),
        }
    }
    let named_by_record = if search_for_supporting { &referrers[..] } else { &[] };
    let sources: Vec<&Tree> = matches.iter().chain(named_by_record).collect();
    let mut supported = record_ops::read_supporting(
        state,
        principal,
        request_id,
        interaction.fresh,
        &supporting,
        &sources,
        &mut warnings,
    )
    .await;
    matches.append(&mut supported);
    let query = link_query(state, interaction);
    let fingerprint = format!("{}|Patient/{id}/$everything|{query}", principal.subject);
    let offset = match &interaction.page {
        Some(token) => bundle::resume(&state.pages.check(token, &fingerprint)?, &matches, &mut warnings),
        None => 0,
    };
    Ok(bundle::searchset(SearchsetInput {
        base,
        resource_type: &format!("Patient/{id}/$everything"),
        query,
        matches,
        included: Vec::new(),
        total: None,
        warnings,
        offset,
        count: bundle::page_size(interaction),
        tokens: &state.pages,
        fingerprint: &fingerprint,
        summary: interaction.summary,
        elements: &interaction.elements,
        output: interaction.output_query(),
    }))
}

/// One practice's part of a search: the records the principal's linkage opens there (a patient's), and what
/// searching the mapping over them (through the cache) produced.
#[allow(clippy::too_many_arguments)]
async fn search_practice(
    state: &AppState,
    interaction: &Interaction,
    principal: &Principal,
    request_id: &str,
    practice: &crate::backend::PracticeBackend,
    patient_key: &str,
    mapping: &crate::mapping::MappingFile,
    params: &[(&crate::mapping::file::ParamDef, &rest::SearchParam)],
) -> FhirResult<(Option<Arc<crate::reach::Linked>>, Produced)> {
    let mut produced = Produced::default();
    // A patient's linkage first: it is what they may see, and a search of Patient reads each record it opens
    // (their own and those they act for).
    let linked = reach::linked_records(state, principal, &practice.ods, request_id).await?;
    let keys: Vec<String> = match (&linked, mapping.compartment) {
        (Some(linked), Compartment::SelfPatient) => linked.records().map(String::from).collect(),
        _ => vec![patient_key.to_string()],
    };
    let ctx = translation(state, principal, request_id, linked.as_deref());
    for key in &keys {
        crate::cache::search(
            state,
            &ctx,
            practice,
            mapping,
            params,
            key,
            interaction.fresh,
            &mut produced,
        )
        .await?;
    }
    Ok((linked, produced))
}

async fn search(
    state: &AppState,
    interaction: &Interaction,
    principal: &Principal,
    base: &str,
    request_id: &str,
) -> FhirResult<Tree> {
    let resource_type = interaction.resource_type.clone().unwrap_or_default();
    check_scope(principal, &resource_type, 's')?;
    // Includes that cannot be followed are refused before anything is searched.
    let mut warnings = Vec::new();
    record_ops::check_includes(state, interaction, &mut warnings)?;
    // The practices searched, each with the record searched there (items) or none (practice-level types).
    let mut targets: Vec<(&crate::backend::PracticeBackend, String)> = Vec::new();
    if state.registry.compartment_of(&resource_type) == Some(Compartment::Patient) {
        for (ods, key) in records_searched(state, interaction, principal, request_id).await? {
            if let Some(practice) = state.backend.practice(&ods) {
                targets.push((practice, key));
            }
        }
    } else {
        targets = principal
            .practices
            .iter()
            .filter_map(|ods| state.backend.practice(ods))
            .map(|p| (p, String::new()))
            .collect();
        if targets.is_empty() {
            return Err(FhirError::forbidden(
                "IM1-2102",
                "the token names no practice this server serves",
            ));
        }
    }
    // A search across the token's practices (practice data, Patient, a patient's own records) says which of
    // them this server does not serve, rather than leave them out silently.
    let names_a_record = interaction
        .params
        .iter()
        .any(|p| matches!(p.name.as_str(), "patient" | "subject"));
    // A record named that cannot be searched (an id this server never issued, another type's, one of a practice
    // out of reach or a record the patient's linkage does not open) matches nothing, and says that nothing was
    // searched: an empty answer alone would read as "no allergies". The same words whichever it was, so
    // nothing is told of records out of reach.
    if names_a_record
        && targets.is_empty()
        && state.registry.compartment_of(&resource_type) == Some(Compartment::Patient)
    {
        warnings.push(crate::fhir::error::warning(
            crate::fhir::IssueType::NotFound,
            "IM1-1219",
            "the patient named is no record this user can search here, so no record was searched",
        ));
    }
    let across_practices = state.registry.compartment_of(&resource_type) != Some(Compartment::Patient)
        || (principal.role == Role::Patient && !names_a_record);
    let unserved = principal
        .practices
        .iter()
        .filter(|ods| state.backend.practice(ods).is_none());
    for ods in unserved.filter(|_| across_practices) {
        warnings.push(crate::fhir::error::warning(
            crate::fhir::IssueType::NotFound,
            "IM1-2111",
            format!(
                "practice {} is not served by this server, so it was not searched",
                rest::printable(ods)
            ),
        ));
    }
    // Each practice's mapping and the parameters it takes: checked (and those dropped said) for every practice,
    // whichever are then asked.
    let mut searches = Vec::with_capacity(targets.len());
    for (practice, patient_key) in targets {
        let mapped = match state.registry.get(practice.supplier.key(), &resource_type) {
            Some(mapping) => Some((mapping, searched_params(mapping, interaction, &mut warnings)?)),
            None => None,
        };
        searches.push((practice, patient_key, mapped));
    }
    // `_id` names items this server issued, each of one practice: the others are not asked (nor their auditors
    // shown the search).
    if let Some(named) = practices_of_ids(state, interaction, &resource_type) {
        searches.retain(|(practice, _, _)| named.contains(&practice.ods));
    }
    // A `_sort` this server cannot follow is refused before any native call.
    let sort_keys = sort_keys(state, interaction, &mut warnings)?;
    let mut all = Vec::new();
    let query = link_query(state, interaction);
    let fingerprint = format!("{}|{}|{query}", principal.subject, resource_type);
    let place = match &interaction.page {
        Some(token) => state.pages.check(token, &fingerprint)?,
        None => bundle::PagePlace::START,
    };
    let many_practices = searches.len() > 1;
    // The practices are asked at once (each call keeps its own deadline), and their answers taken in order.
    let answers = futures_util::future::join_all(searches.iter().map(|(practice, patient_key, mapped)| async move {
        let (mapping, params) = mapped.as_ref()?;
        Some(
            search_practice(
                state,
                interaction,
                principal,
                request_id,
                practice,
                patient_key,
                mapping,
                params,
            )
            .await,
        )
    }))
    .await;
    // A practice whose native system failed, when others were asked too: the others' answer is given, with
    // the failure said; only when none answered is the search a failure.
    let (mut answered, mut failed) = (0, None);
    for ((practice, _, _), answer) in searches.iter().zip(answers) {
        let Some(answer) = answer else {
            warnings.push(crate::fhir::error::warning(
                crate::fhir::IssueType::NotSupported,
                "IM1-3201",
                format!(
                    "{resource_type} is not available from practice {} ({})",
                    practice.ods,
                    practice.supplier.display()
                ),
            ));
            continue;
        };
        let (linked, produced) = match answer {
            Ok(answer) => answer,
            // A token reaching several practices still gets what the others give, with a warning naming the
            // practice that could not be searched for this principal (no linkage, no patient-facing mapping).
            Err(e) if many_practices && e.status == StatusCode::FORBIDDEN => {
                warnings.push(unavailable_here(format!(
                    "practice {} could not be searched for this user: {}",
                    practice.ods, e.message
                )));
                continue;
            }
            Err(e) if many_practices && e.status.is_server_error() => {
                warnings.push(crate::fhir::error::warning(
                    crate::fhir::IssueType::Incomplete,
                    e.code,
                    format!(
                        "practice {} ({}) could not be searched, so nothing of it is here: {}",
                        practice.ods,
                        practice.supplier.display(),
                        e.message
                    ),
                ));
                failed.get_or_insert(e);
                continue;
            }
            Err(e) => return Err(e),
        };
        answered += 1;
        for resource in produced.resources {
            if reach::may_see(state, principal, linked.as_deref(), &resource, 's') {
                if let policy::Minimised::Kept(resource) =
                    policy::minimise(practice, principal, resource, &mut warnings)
                {
                    all.push(resource);
                }
            }
        }
        warnings.extend(produced.warnings);
    }
    if let (0, Some(e)) = (answered, failed) {
        return Err(e);
    }
    let compartment = state.registry.compartment_of(&resource_type);
    // Patients come in the order their linkage gives unless sorted: for a patient, their own records first
    // (at every practice), then those they act for.
    if !(sort_keys.is_empty() && compartment == Some(crate::mapping::Compartment::SelfPatient)) {
        crate::fhir::sort::sort_as_searched(&state.registry, &resource_type, &mut all, &sort_keys);
    } else if let Some(own) = principal.nhs_number.as_deref() {
        all.sort_by_key(|patient| nhs_number_of(patient) != Some(own));
    }
    warnings.dedup();
    let offset = bundle::resume(&place, &all, &mut warnings);
    let count = bundle::page_size(interaction);
    let included = if interaction.include.is_empty() && interaction.revinclude.is_empty() {
        Vec::new()
    } else {
        let page = &all[offset.min(all.len())..offset.saturating_add(count).min(all.len())];
        let records = record_ops::records_of(state, page);
        let of = record_ops::IncludesOf {
            state,
            principal,
            request_id,
            interaction,
            page,
            records: &records,
        };
        record_ops::includes(&of, &mut warnings).await?
    };
    Ok(bundle::searchset(SearchsetInput {
        base,
        resource_type: &resource_type,
        query,
        matches: all,
        included,
        total: None,
        warnings,
        offset,
        count,
        tokens: &state.pages,
        fingerprint: &fingerprint,
        summary: interaction.summary,
        elements: &interaction.elements,
        output: interaction.output_query(),
    }))
}

/// The records a search of items reads, as (practice, patient key): the one `patient` (or `subject`) names,
/// decoded; for a patient without that parameter, their own record at each practice the token names (a record
/// they act for is searched by naming it). A reference that is not one this server issued, names a practice
/// out of reach, or (for a patient) names a record their linkage does not open, reads nothing: the search
/// matches nothing, as for a record that does not exist.
async fn records_searched(
    state: &AppState,
    interaction: &Interaction,
    principal: &Principal,
    request_id: &str,
) -> FhirResult<Vec<(String, String)>> {
    let resource_type = interaction.resource_type.as_deref().unwrap_or_default();
    // A record named with a modifier this server does not follow (`patient:identifier=`) is refused as such,
    // not taken for a search that names no record.
    for param in interaction
        .params
        .iter()
        .filter(|p| matches!(p.name.as_str(), "patient" | "subject") && p.modifier.is_some())
    {
        if let Some(def) = state.registry.param(resource_type, &param.name) {
            crate::fhir::search::validate(def, param)?;
        }
    }
    let given = interaction
        .params
        .iter()
        .find(|p| matches!(p.name.as_str(), "patient" | "subject") && p.modifier.is_none());
    let Some(param) = given else {
        if principal.role == Role::Patient {
            let mut out = Vec::new();
            for ods in &principal.practices {
                if let Some(linked) = reach::linked_records(state, principal, ods, request_id).await? {
                    out.push((ods.clone(), linked.own.clone()));
                }
            }
            return Ok(out);
        }
        return Err(FhirError::bad_request(
            "IM1-1207",
            format!(
                "a search of {resource_type} needs the 'patient' parameter: GP systems search one record at a time"
            ),
        )
        .at("patient"));
    };
    // One record a search: `patient=a,b` and `patient=a&patient=b` alike (the same one named twice is one).
    let named: std::collections::BTreeSet<&str> = interaction
        .params
        .iter()
        .filter(|p| matches!(p.name.as_str(), "patient" | "subject") && p.modifier.is_none())
        .flat_map(|p| &p.values)
        .map(|v| v.strip_prefix("Patient/").unwrap_or(v))
        .collect();
    if param.values.len() != 1 || named.len() > 1 {
        return Err(FhirError::bad_request("IM1-1208", "give exactly one patient").at(param.name.clone()));
    }
    let value = param.values[0].as_str();
    let id = value.rsplit_once("Patient/").map_or(value, |(_, id)| id);
    if value.contains('/') && !value.contains("Patient/") {
        return Ok(Vec::new());
    }
    let Some(patient) = state
        .ids
        .decode("Patient", id)
        .ok()
        .filter(|patient| principal.may_reach_practice(&patient.practice))
    else {
        return Ok(Vec::new());
    };
    if let Some(linked) = reach::linked_records(state, principal, &patient.practice, request_id).await? {
        if !linked.reaches(&patient.item) {
            return Ok(Vec::new());
        }
    }
    Ok(vec![(patient.practice, patient.item)])
}

/// The page-link parameter that holds the newest stored row a paged AuditEvent search sees.
const AUDIT_SNAPSHOT: &str = "_snapshot";

/// `GET /fhir/AuditEvent`: the audit trail, for auditors only (`user/AuditEvent.rs`), newest first.
async fn audit_search(
    state: &AppState,
    interaction: &Interaction,
    principal: &Principal,
    base: &str,
) -> FhirResult<Tree> {
    if interaction.kind != Kind::Search {
        // A write on the type's path: that path searches; on an event's, nothing is offered.
        let allow = if interaction.id.is_none() { "GET, HEAD" } else { "" };
        return Err(FhirError::method_not_allowed(
            "IM1-1009",
            "AuditEvents are searched, not read or written, through this server",
        )
        .allow(allow));
    }
    if principal.role != Role::Auditor {
        return Err(FhirError::forbidden("IM1-2104", "only auditors read the audit trail"));
    }
    check_scope(principal, "AuditEvent", 's')?;
    let store = state
        .audit
        .clone()
        .ok_or_else(|| FhirError::unavailable("IM1-5101", "the audit trail is unavailable"))?;
    // A first page pins the window at now and at the newest stored row, in its links: later pages are then
    // not shifted by the events committed meanwhile (this search's own among them, and any recorded before
    // the pin but committed after the first page was read).
    let mut pinned = interaction.clone();
    // Under `Prefer: handling=lenient` an unknown parameter is dropped (from the links too), with a warning.
    let mut warnings = Vec::new();
    if interaction.handling == Handling::Lenient {
        pinned.params.retain(|p| {
            let known = crate::audit::PARAMS.contains(&p.name.as_str()) || p.name == AUDIT_SNAPSHOT;
            if !known {
                warnings.push(translate::dropped_param_warning(&p.name));
            }
            known
        });
    }
    // An AuditEvent page includes nothing else.
    record_ops::check_includes(state, interaction, &mut warnings)?;
    // A search's links carry the newest row it could see: a later page's bound to its page token, a self link's
    // as it is (following it reads the same events again).
    let snapshots = pinned.params.iter().filter(|p| p.name == AUDIT_SNAPSHOT).count();
    if snapshots > 1 {
        return Err(FhirError::bad_request("IM1-1210", "give _snapshot once").at(AUDIT_SNAPSHOT));
    }
    let given_snapshot = snapshots == 1;
    if interaction.page.is_none() && !given_snapshot {
        pinned.params.push(rest::SearchParam {
            name: "date".into(),
            modifier: None,
            values: vec![format!("lt{}", crate::audit::instant(time::OffsetDateTime::now_utc()))],
        });
    }
    let mut pairs: Vec<(String, String)> = Vec::new();
    let mut up_to = None;
    for param in &pinned.params {
        if param.name == AUDIT_SNAPSHOT {
            let row = param.values.join(",").parse::<i64>().ok().filter(|row| *row >= 0);
            let why = match interaction.page {
                Some(_) => "this page link is not one this server made",
                None => "_snapshot is the number of a stored row, as this server's links give it",
            };
            up_to = Some(row.ok_or_else(|| FhirError::bad_request("IM1-1210", why).at(AUDIT_SNAPSHOT))?);
            continue;
        }
        if param.modifier.is_some() {
            return Err(
                FhirError::bad_request("IM1-1210", "AuditEvent search parameters take no modifiers")
                    .at(param.name.clone()),
            );
        }
        pairs.push((param.name.clone(), param.values.join(",")));
    }
    let count = bundle::page_size(interaction);
    pairs.push(("_count".into(), count.to_string()));
    let mut query =
        crate::audit::AuditQuery::from_params(&pairs).map_err(|message| FhirError::bad_request("IM1-1210", message))?;
    // Newest first unless `_sort=date`; AuditEvents sort by nothing else here.
    match interaction.sort.as_slice() {
        [] => {}
        [key] if key.param == "date" => query.oldest_first = !key.descending,
        _ => {
            return Err(
                FhirError::bad_request("IM1-1209", "AuditEvents sort by date only (_sort=date or -date)").at("_sort"),
            )
        }
    }
    let fingerprint_of = |pinned: &Interaction| {
        let link_query = canonical_query(pinned);
        let fingerprint = format!("{}|AuditEvent|{link_query}", principal.subject);
        (link_query, fingerprint)
    };
    // The store pages itself, fixed at the first page's snapshot: the offset alone places a page.
    let offset = match &interaction.page {
        Some(token) => state.pages.check(token, &fingerprint_of(&pinned).1)?.offset,
        None => 0,
    };
    query.offset = offset;
    query.up_to = up_to;
    // An auditor sees their own practices' events (and those of no practice), not every practice's.
    query.practices = Some(principal.practices.clone());
    // Nor is an event found by a patient it would not show them (`visible_to` takes other practices' patients
    // out), nor by one that cannot be placed (an id made under an earlier id key, which `visible_to` shows only
    // on events of one practice): asking only for such patients finds nothing.
    let practice_of = |id: &str| state.ids.decode("Patient", id).ok().map(|id| id.practice);
    if !query.patients.is_empty() {
        query
            .patients
            .retain(|id| practice_of(id).is_some_and(|ods| principal.practices.contains(&ods)));
        query.finds_nothing = query.patients.is_empty();
    }
    let mut page = store
        .search_async(query)
        .await
        .map_err(|_| FhirError::unavailable("IM1-5101", "the audit trail is unavailable"))?;
    for event in &mut page.events {
        crate::audit::visible_to(event, &principal.practices, practice_of);
    }
    if interaction.page.is_none() && !given_snapshot {
        pinned.params.push(rest::SearchParam {
            name: AUDIT_SNAPSHOT.into(),
            modifier: None,
            values: vec![page.up_to.to_string()],
        });
    }
    let (link_query, fingerprint) = fingerprint_of(&pinned);
    Ok(bundle::searchset(SearchsetInput {
        base,
        resource_type: "AuditEvent",
        query: link_query,
        matches: page.events.into_iter().map(Tree::from).collect(),
        total: Some(page.total),
        included: Vec::new(),
        warnings,
        offset,
        count,
        tokens: &state.pages,
        fingerprint: &fingerprint,
        summary: interaction.summary,
        elements: &interaction.elements,
        output: interaction.output_query(),
    }))
}

/// The warning for part of a multi-practice or whole-record answer this user cannot have (no linkage, no
/// patient-facing mapping, a service switched off): said, never silently missing.
fn unavailable_here(message: String) -> Value {
    crate::fhir::error::warning(crate::fhir::IssueType::Forbidden, "IM1-2106", message)
}

/// Who asked, for the AuditEvent.
fn who(principal: &Principal) -> crate::audit::Who {
    crate::audit::Who {
        subject: principal.subject.clone(),
        role: principal.role.name().to_string(),
        client_id: principal.client_id.clone(),
        rbac_role: principal.rbac_role.clone(),
        organisations: principal.practices.clone(),
        token_id: principal.token_id.clone(),
    }
}

/// The patients whose data a response holds: every Patient (with its NHS number) and every patient an item
/// refers to through `subject` or `patient`, once each.
/// The patients a request names (a Patient read or `$everything`, an item of a record read by id, `patient=` or
/// `subject=`), filed on its AuditEvent whatever the outcome, so that refused and empty attempts are found by
/// `patient=` too. Only ids this server made count: anything else names no patient.
fn note_requested_patients(state: &AppState, interaction: &Interaction) {
    // The auditor's own `AuditEvent?patient=` is a look at the trail, not at the patient.
    if interaction.resource_type.as_deref() == Some("AuditEvent") {
        return;
    }
    // As this server writes the id (one spelling per patient), and the patient's practice noted: its auditors
    // see the attempt, wherever the user came from.
    let canonical = |patient: crate::ids::LogicalId| -> Option<String> {
        note_practice_reached(&patient.practice);
        state.ids.encode("Patient", &patient).ok()
    };
    let patient_id = |id: &str| -> Option<String> {
        let id = id.trim().strip_prefix("Patient/").unwrap_or(id.trim());
        state.ids.decode("Patient", id).ok().and_then(canonical)
    };
    // The patient an id of the type names: a Patient's own, or an item's (whose id holds its patient's native
    // key, from which the Patient's id is made).
    let patient_of = |resource_type: &str, id: &str| -> Option<String> {
        match state.registry.compartment_of(resource_type) {
            Some(Compartment::SelfPatient) => patient_id(id),
            Some(Compartment::Patient) => {
                let item = state.ids.decode(resource_type, id.trim()).ok()?;
                canonical(crate::ids::LogicalId {
                    practice: item.practice,
                    patient: String::new(),
                    item: item.patient,
                })
            }
            _ => None,
        }
    };
    let mut named: Vec<String> = Vec::new();
    if let Some(resource_type) = &interaction.resource_type {
        named.extend(interaction.id.as_deref().and_then(|id| patient_of(resource_type, id)));
        // `_id` names records as a read does.
        for param in interaction.params.iter().filter(|p| p.name == "_id") {
            named.extend(param.values.iter().filter_map(|v| patient_of(resource_type, v)));
        }
    }
    for param in interaction
        .params
        .iter()
        .filter(|p| matches!(p.name.as_str(), "patient" | "subject"))
    {
        named.extend(param.values.iter().filter_map(|v| patient_id(v)));
    }
    if named.is_empty() {
        return;
    }
    let refs = named
        .into_iter()
        .map(|id| crate::audit::PatientRef {
            reference: Some(format!("Patient/{id}")),
            nhs_number: None,
        })
        .collect();
    audit::note(|facts| merge_patients(&mut facts.patients, refs));
}

/// Adds patients to those already noted, once each (an NHS number learnt later fills in).
fn merge_patients(noted: &mut Vec<crate::audit::PatientRef>, more: Vec<crate::audit::PatientRef>) {
    for patient in more {
        match noted.iter_mut().find(|p| p.reference == patient.reference) {
            Some(existing) if existing.nhs_number.is_none() => existing.nhs_number = patient.nhs_number,
            Some(_) => {}
            None => noted.push(patient),
        }
    }
}

fn patients_in(value: &Tree) -> Vec<crate::audit::PatientRef> {
    let mut out: Vec<crate::audit::PatientRef> = Vec::new();
    let mut add = |reference: Option<String>, nhs_number: Option<String>| {
        if let Some(existing) = out.iter_mut().find(|p| p.reference == reference) {
            if existing.nhs_number.is_none() {
                existing.nhs_number = nhs_number;
            }
        } else {
            out.push(crate::audit::PatientRef { reference, nhs_number });
        }
    };
    let resources: Vec<&Tree> = match value.get("resourceType").and_then(Tree::as_str) {
        Some("Bundle") => value
            .get("entry")
            .and_then(Tree::as_array)
            .into_iter()
            .flatten()
            .filter_map(|e| e.get("resource"))
            .collect(),
        _ => vec![value],
    };
    for resource in resources {
        if resource.get("resourceType").and_then(Tree::as_str) == Some("Patient") {
            let id = resource.get("id").and_then(Tree::as_str).unwrap_or_default();
            let nhs = nhs_number_of(resource).map(String::from);
            add(Some(format!("Patient/{id}")), nhs);
            continue;
        }
        // An Appointment names its patient among its participants.
        let participants = resource
            .get("participant")
            .and_then(Tree::as_array)
            .into_iter()
            .flatten()
            .filter_map(|p| p.get("actor"));
        for reference in ["subject", "patient"]
            .iter()
            .filter_map(|key| resource.get(*key))
            .chain(participants)
            .filter_map(|r| r.get("reference").and_then(Tree::as_str))
            .filter(|r| r.starts_with("Patient/"))
        {
            add(Some(reference.to_string()), None);
        }
    }
    out
}

/// `_sort` keys resolved to the search parameters of the type; an unknown key is an error, or a warning under
/// `Prefer: handling=lenient`.
fn sort_keys<'s>(
    state: &'s AppState,
    interaction: &Interaction,
    warnings: &mut Vec<Value>,
) -> FhirResult<Vec<crate::fhir::sort::SortBy<'s>>> {
    let resource_type = interaction.resource_type.as_deref().unwrap_or_default();
    let mut keys = Vec::new();
    for key in &interaction.sort {
        let def = state.registry.param(resource_type, &key.param);
        match def {
            Some(def) => keys.push(crate::fhir::sort::SortBy {
                def,
                descending: key.descending,
            }),
            None if interaction.handling == Handling::Lenient => warnings.push(crate::fhir::error::warning(
                crate::fhir::IssueType::NotSupported,
                "IM1-1209",
                format!(
                    "cannot sort {resource_type} by '{}'; the order is unspecified",
                    key.param
                ),
            )),
            None => {
                return Err(FhirError::bad_request(
                    "IM1-1209",
                    format!("cannot sort {resource_type} by that parameter"),
                )
                .at("_sort"))
            }
        }
    }
    Ok(keys)
}

/// A practice whose data the interaction reached (natively or through the cache) or named: its auditors see
/// the AuditEvent.
pub fn note_practice_reached(ods: &str) {
    audit::note(|facts| {
        if !facts.practices.iter().any(|p| p == ods) {
            facts.practices.push(ods.to_string());
        }
    });
}

/// The work of one practice's native calls: what they produce, and the calls themselves, which are recorded
/// (metrics, the interaction's AuditEvent) when it is dropped: when it is done, or half-way because the client
/// left, so no call the GP system answered goes unrecorded.
pub struct NativeWork<'a> {
    state: &'a AppState,
    practice: &'a crate::backend::PracticeBackend,
    pub produced: Produced,
}

impl<'a> NativeWork<'a> {
    pub fn new(state: &'a AppState, practice: &'a crate::backend::PracticeBackend) -> NativeWork<'a> {
        NativeWork {
            state,
            practice,
            produced: Produced::default(),
        }
    }
}

impl Drop for NativeWork<'_> {
    fn drop(&mut self) {
        record_native_calls(self.state, self.practice, &self.produced.calls);
    }
}

/// Native calls go to the metrics and to the interaction's AuditEvent.
pub fn record_native_calls(
    state: &AppState,
    practice: &crate::backend::PracticeBackend,
    calls: &[crate::backend::client::CallRecord],
) {
    let supplier = practice.supplier.key();
    note_practice_reached(&practice.ods);
    audit::note(|facts| {
        facts
            .native_calls
            .extend(calls.iter().map(|call| crate::audit::NativeCallFact {
                supplier: supplier.to_string(),
                practice: practice.ods.clone(),
                operation: format!("{} {}", call.method, call.path),
                status: Some(call.status),
                millis: call.millis(),
            }));
    });
    for call in calls {
        state
            .metrics
            .native_calls
            .get_or_create(&NativeLabels {
                supplier: supplier.into(),
                status: call.status,
            })
            .inc();
        state
            .metrics
            .native_latency
            .get_or_create(&SupplierLabel {
                supplier: supplier.into(),
            })
            // Seconds with their fraction: most native calls take under a millisecond here.
            .observe(call.elapsed.as_secs_f64());
    }
}

/// The interaction a request asks for, as its AuditEvent records it: kind, resource, id and query.
fn note_interaction(interaction: &Interaction) {
    audit::note(|facts| {
        facts.interaction = interaction.kind.name().to_string();
        facts.resource_type = interaction.resource_type.clone();
        facts.resource_id = interaction.id.clone();
    });
    note_query(interaction);
}

/// The AuditEvent states the query as applied (noted again once body parameters are merged in).
fn note_query(interaction: &Interaction) {
    let query = canonical_query(interaction);
    audit::note(|facts| facts.query = (!query.is_empty()).then_some(query));
}

/// The query a search's links show and its page tokens are bound to: under `Prefer: handling=lenient`,
/// without the parameters, sort keys and includes it ignored (a warning in the Bundle says which), so a link
/// followed without that preference is still a valid search.
fn link_query(state: &AppState, interaction: &Interaction) -> String {
    if interaction.handling != Handling::Lenient {
        return canonical_query(interaction);
    }
    let resource_type = interaction.resource_type.as_deref().unwrap_or_default();
    let mut applied = interaction.clone();
    let operation = matches!(interaction.kind, Kind::Operation(_));
    // An operation ($everything) applies its own parameters only.
    applied.params.retain(|p| match operation {
        true => matches!(p.name.as_str(), "_type" | "_since" | "start" | "end"),
        false => state.registry.param(resource_type, &p.name).is_some(),
    });
    applied
        .sort
        .retain(|k| state.registry.param(resource_type, &k.param).is_some());
    applied
        .include
        .retain(|i| record_ops::followable(state, resource_type, i, false));
    applied
        .revinclude
        .retain(|i| record_ops::followable(state, resource_type, i, true));
    canonical_query(&applied)
}

/// The search's own parameters in a stable order, for self links and page-token fingerprints.
pub(crate) fn canonical_query(interaction: &Interaction) -> String {
    let mut pairs: Vec<(String, String)> = interaction
        .params
        .iter()
        .map(|p| {
            let name = match &p.modifier {
                Some(m) => format!("{}:{m}", p.name),
                None => p.name.clone(),
            };
            (name, p.values.join(","))
        })
        .collect();
    for element in &interaction.elements {
        pairs.push(("_elements".into(), element.clone()));
    }
    // The result parameters shape every page, so page links carry them (and their tokens are bound to them).
    if !interaction.sort.is_empty() {
        let keys: Vec<String> = interaction
            .sort
            .iter()
            .map(|k| format!("{}{}", if k.descending { "-" } else { "" }, k.param))
            .collect();
        pairs.push(("_sort".into(), keys.join(",")));
    }
    for (name, includes) in [
        ("_include", &interaction.include),
        ("_revinclude", &interaction.revinclude),
    ] {
        for include in includes {
            let name = if include.iterate {
                format!("{name}:iterate")
            } else {
                name.to_string()
            };
            let mut value = format!("{}:{}", include.source, include.param);
            if let Some(target) = &include.target {
                value.push(':');
                value.push_str(target);
            }
            pairs.push((name, value));
        }
    }
    if let Some(summary) = interaction.summary {
        pairs.push(("_summary".into(), summary.as_str().into()));
    }
    pairs.sort();
    form_urlencoded::Serializer::new(String::new())
        .extend_pairs(pairs)
        .finish()
}

/// A search's parameters with their definitions in a mapping: a modifier or value it cannot take is a 400,
/// and so is a parameter it does not know, unless `Prefer: handling=lenient` (then dropped, and said).
fn searched_params<'a>(
    mapping: &'a crate::mapping::MappingFile,
    interaction: &'a Interaction,
    warnings: &mut Vec<Value>,
) -> FhirResult<Vec<(&'a ParamDef, &'a rest::SearchParam)>> {
    let mut params = Vec::new();
    for param in &interaction.params {
        match mapping.params.iter().find(|d| d.name == param.name) {
            Some(def) => {
                search::validate(def, param)?;
                params.push((def, param));
            }
            None if interaction.handling == Handling::Lenient => {
                warnings.push(translate::dropped_param_warning(&param.name))
            }
            None => {
                return Err(FhirError::bad_request(
                    "IM1-1201",
                    format!(
                        "unknown search parameter '{}' for {}",
                        param.name.chars().take(40).collect::<String>(),
                        mapping.resource
                    ),
                )
                .at(param.name.clone()))
            }
        }
    }
    Ok(params)
}

/// The practices the `_id` values of a search belong to (those that are ids this server issued for the type);
/// None without `_id`.
fn practices_of_ids(state: &AppState, interaction: &Interaction, resource_type: &str) -> Option<Vec<String>> {
    let ids = interaction
        .params
        .iter()
        .filter(|p| p.name == "_id" && p.modifier.is_none())
        .flat_map(|p| &p.values);
    let mut given = false;
    let mut practices = Vec::new();
    for id in ids {
        given = true;
        if let Ok(logical) = state.ids.decode(resource_type, id) {
            if !practices.contains(&logical.practice) {
                practices.push(logical.practice);
            }
        }
    }
    given.then_some(practices)
}

/// A reference parameter given as an absolute URL on this server's own base (`[base]/Patient/x`, as a
/// Bundle's fullUrl gives it) is the same reference as `Patient/x` (FHIR search: a reference may be a URL).
/// Whether any was.
fn relative_references(state: &AppState, interaction: &mut Interaction, base: &str) -> bool {
    let mut changed = false;
    let resource_type = interaction.resource_type.clone().unwrap_or_default();
    for param in &mut interaction.params {
        let is_reference = matches!(param.name.as_str(), "patient" | "subject")
            || state
                .registry
                .param(&resource_type, &param.name)
                .is_some_and(|def| def.kind == crate::mapping::file::ParamType::Reference);
        if !is_reference {
            continue;
        }
        for value in &mut param.values {
            if let Some(relative) = value.strip_prefix(base).and_then(|rest| rest.strip_prefix('/')) {
                *value = relative.to_string();
                changed = true;
            }
        }
    }
    changed
}

/// The base URL links are made from: `public_base_url` when configured, else the request's own host. The host
/// is checked either way (RFC 9112 §3.2: an HTTP/1.1 request without one, with two, or with one that is not a
/// host and port is a 400), so a crafted `Host` cannot reshape the links.
fn base_url(state: &AppState, parts: &http::request::Parts) -> FhirResult<String> {
    let bad = |why: &str| FhirError::bad_request("IM1-1010", format!("the Host header {why}")).at("Host");
    let mut hosts = parts.headers.get_all(header::HOST).iter();
    let given = hosts.next();
    if hosts.next().is_some() {
        return Err(bad("is given twice"));
    }
    let host = match given {
        Some(value) => {
            let text = value.to_str().map_err(|_| bad("is not text"))?;
            let authority: http::uri::Authority = text.parse().map_err(|_| bad("is not a host and port"))?;
            if text.is_empty() || text.contains('@') || authority.as_str() != text {
                return Err(bad("is not a host and port"));
            }
            authority.to_string()
        }
        // HTTP/2 names the host in the request's authority; an HTTP/1.1 request must name it.
        None => match (parts.uri.authority(), parts.version) {
            (Some(authority), _) => authority.to_string(),
            (None, http::Version::HTTP_10 | http::Version::HTTP_09) => "localhost".to_string(),
            (None, _) => return Err(bad("is missing")),
        },
    };
    let scheme = parts.extensions.get::<crate::server::Scheme>().map_or("http", |s| s.0);
    Ok(match &state.public_base_url {
        Some(base) => base.clone(),
        None => format!("{scheme}://{host}/fhir"),
    })
}

/// The format to report an error in before the interaction is parsed: the client's choice if it can be read.
fn error_format(headers: &HeaderMap, query: Option<&str>) -> Format {
    let format_param = query.and_then(|q| {
        form_urlencoded::parse(q.as_bytes())
            .find(|(k, _)| k == "_format")
            .map(|(_, v)| v.into_owned())
    });
    let accept = headers.get(header::ACCEPT).and_then(|v| v.to_str().ok());
    format::negotiate(format_param.as_deref(), accept).unwrap_or(Format::Json)
}

fn respond(status: StatusCode, value: &impl format::Encode, interaction: &Interaction) -> Response<Body> {
    match value.encode(interaction.format, interaction.pretty) {
        Ok(bytes) => fhir_response(status, interaction.format, bytes),
        Err(e) => respond_error(&e, Format::Json, false),
    }
}

/// `Last-Modified` from a read resource's `meta.lastUpdated` (HTTP says a server SHOULD send it when it
/// knows; FHIR's read does too). Without versions there is no ETag.
fn set_last_modified(response: &mut Response<Body>, last_updated: Option<&str>) {
    let updated = last_updated.and_then(crate::fhir::dates::range);
    // An HTTP-date is 1970 to 9999 (httpdate panics outside): older records (migrated ones) go without.
    if let Some((at, _)) = updated.filter(|(at, _)| at.unix_timestamp() >= 0 && at.year() <= 9999) {
        let http_date = httpdate::fmt_http_date(std::time::SystemTime::from(at));
        if let Ok(value) = HeaderValue::from_str(&http_date) {
            response.headers_mut().insert(header::LAST_MODIFIED, value);
        }
    }
}

/// A read's answer as its preconditions leave it: itself, a 304 without the body, or a 412.
fn conditional_read(request: &HeaderMap, response: Response<Body>, interaction: &Interaction) -> Response<Body> {
    use crate::fhir::conditional::{self, Precondition};
    let last_modified = response
        .headers()
        .get(header::LAST_MODIFIED)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| httpdate::parse_http_date(v).ok());
    match conditional::evaluate(request, last_modified) {
        Precondition::Proceed => response,
        Precondition::NotModified => {
            let (mut parts, _) = response.into_parts();
            parts.status = StatusCode::NOT_MODIFIED;
            parts.headers.remove(header::CONTENT_LENGTH);
            Response::from_parts(parts, Full::new(Bytes::new()))
        }
        Precondition::Failed => respond_error(
            &FhirError::new(
                StatusCode::PRECONDITION_FAILED,
                crate::fhir::IssueType::Conflict,
                "IM1-1121",
                "a precondition does not hold: resources here have no versions, so If-Match holds only as '*', \
                 and If-Unmodified-Since only for a resource not changed since",
            ),
            interaction.format,
            interaction.pretty,
        ),
    }
}

/// The one place an error becomes a response: an OperationOutcome with the error's status.
pub fn respond_error(error: &FhirError, format: Format, pretty: bool) -> Response<Body> {
    audit::note(|facts| {
        facts.outcome_code = Some(error.code.to_string());
        facts.outcome_text = Some(error.message.clone());
    });
    let outcome = error.to_outcome();
    let (format, bytes) = match format::encode(&outcome, format, pretty) {
        Ok(bytes) => (format, bytes),
        Err(_) => (Format::Json, serde_json::to_vec(&outcome).unwrap_or_default()),
    };
    if error.status.is_server_error() {
        tracing::warn!(code = error.code, status = error.status.as_u16(), message = %error.message, "request failed");
    } else {
        tracing::info!(code = error.code, status = error.status.as_u16(), "request refused");
    }
    let mut response = fhir_response(error.status, format, bytes);
    if error.status == StatusCode::UNAUTHORIZED {
        // RFC 6750: a request that sent no credentials gets the challenge without an error code.
        let challenge = if error.code == "IM1-2001" {
            "Bearer realm=\"im1-fhir\""
        } else {
            "Bearer realm=\"im1-fhir\", error=\"invalid_token\""
        };
        response
            .headers_mut()
            .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static(challenge));
    }
    if let Some(seconds) = error.retry_after {
        if let Ok(value) = HeaderValue::from_str(&seconds.to_string()) {
            response.headers_mut().insert(header::RETRY_AFTER, value);
        }
    }
    if error.status == StatusCode::METHOD_NOT_ALLOWED {
        response
            .headers_mut()
            .insert(header::ALLOW, HeaderValue::from_static(error.allow));
    }
    response
}

/// A Binary's content as itself, in its own media type.
fn binary_content(binary: &Tree) -> Response<Body> {
    let content_type = binary.get("contentType").and_then(Tree::as_str).unwrap_or_default();
    let data = binary
        .get("data")
        .and_then(Tree::as_str)
        .map(|d| base64::engine::general_purpose::STANDARD.decode(d));
    match (data, HeaderValue::from_str(content_type)) {
        (Some(Ok(bytes)), Ok(media_type)) => {
            let mut response = Response::new(Full::new(Bytes::from(bytes)));
            let headers = response.headers_mut();
            headers.insert(header::CONTENT_TYPE, media_type);
            // A document (HTML, SVG) is content, never script running on this server's origin.
            headers.insert("x-content-type-options", HeaderValue::from_static("nosniff"));
            headers.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static("sandbox"));
            response
        }
        // The content is the native system's: not base64, or a media type no header can carry.
        _ => respond_error(
            &FhirError::bad_gateway(
                "IM1-5005",
                "the document's content sent by the GP system could not be read",
            ),
            Format::Json,
            false,
        ),
    }
}

fn fhir_response(status: StatusCode, format: Format, bytes: Vec<u8>) -> Response<Body> {
    let mut response = Response::new(Full::new(Bytes::from(bytes)));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(format.mime()));
    response
}

fn text(status: StatusCode, body: &str) -> Response<Body> {
    let mut response = Response::new(Full::new(Bytes::from(body.to_string())));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn last_modified_is_an_http_date_or_absent() {
        let with = |updated: &str| {
            let mut response = Response::new(Full::new(Bytes::new()));
            set_last_modified(&mut response, Some(updated));
            response.headers().get(header::LAST_MODIFIED).cloned()
        };
        assert_eq!(
            with("2025-06-01T10:50:00+01:00").unwrap(),
            "Sun, 01 Jun 2025 09:50:00 GMT"
        );
        // Before 1970 (a migrated record): no header, and no panic.
        assert_eq!(with("1965-03-01T00:00:00Z"), None);
    }

    #[test]
    fn document_content_the_gp_system_garbled_is_a_502() {
        let content = |binary: Value| binary_content(&Tree::from(binary)).status();
        assert_eq!(
            content(serde_json::json!({"contentType": "text/plain", "data": "aGVsbG8="})),
            StatusCode::OK
        );
        for binary in [
            serde_json::json!({"contentType": "text/plain", "data": "not base64!"}),
            serde_json::json!({"contentType": "text/plain\nx: y", "data": "aGVsbG8="}),
        ] {
            assert_eq!(content(binary), StatusCode::BAD_GATEWAY);
        }
    }
}
