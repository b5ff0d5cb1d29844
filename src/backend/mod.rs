//! The native side: one dialect module per supplier (transport and session flow only: what to call is in
//! the mapping files), over one shared HTTP client.
//!
//! A mapping's request template evaluates to a supplier-neutral description of one native call:
//! `{ method, path, query: {..}, body: {..} }` for HTTP dialects. The dialect adds its base URL, session or
//! token flow and headers, sends it, and turns native errors into FHIR errors.

pub mod breaker;
pub mod client;
pub mod credentials;
pub mod emis;
pub mod medicus;
pub mod pace;
pub mod sessions;
pub mod shared_replies;
pub mod systmone;
pub mod xml_tree;

use crate::config::{Credentials, NativeConfig, PracticeConfig, Supplier};
use crate::fhir::{FhirError, FhirResult};
use crate::mapping::node::Native;
use crate::mapping::Surface;
use client::{CallRecord, ClientSettings, HttpClient};
use credentials::CredentialStore;
use serde_json::Value;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

/// One native call to make.
pub struct NativeCall<'a> {
    pub surface: Surface,
    /// The evaluated request template.
    pub request: &'a Value,
    /// For the patient surface: whose linkage to use (the patient principal's NHS number).
    pub patient_nhs: Option<&'a str>,
    /// For the patient surface: the native key of the record the call is about, when the mapping names one
    /// (a record the user acts for through proxy access); `None` is the user's own record.
    pub record: Option<&'a str>,
    pub request_id: &'a str,
}

/// A parsed native reply and the calls it took: shared, since a request may ask the same again (see
/// `shared_replies`).
pub struct NativeReply {
    pub body: Arc<Native>,
}

/// The dialect a practice's supplier speaks.
enum Dialect {
    Emis(emis::Emis),
    Medicus(medicus::Medicus),
    SystmOne(systmone::SystmOne),
}

/// A configured practice: who runs it and how to reach it.
pub struct PracticeBackend {
    pub ods: String,
    pub supplier: Supplier,
    pub policy: crate::config::PracticePolicy,
    dialect: Dialect,
    /// The dialect's HTTP client (shared with it), for how busy the practice is.
    client: HttpClient,
}

/// Every configured practice, by ODS code.
pub struct Backend {
    practices: HashMap<String, PracticeBackend>,
    /// Native calls in flight to one practice at most (per surface).
    max_in_flight: usize,
}

impl Backend {
    pub fn new(
        practices: &[PracticeConfig],
        native: &NativeConfig,
        linkage: Arc<CredentialStore>,
    ) -> FhirResult<Backend> {
        let settings = ClientSettings {
            timeout: Duration::from_millis(native.timeout_ms),
            retries: native.retries,
            max_in_flight: native.max_in_flight,
            breaker: native.breaker,
        };
        let mut map = HashMap::new();
        for practice in practices {
            let http = HttpClient::new(settings.clone(), pace::Pace::new(&practice.pace), &practice.ods)?;
            let client = http.clone();
            let dialect = match &practice.credentials {
                Credentials::Emis(creds) => Dialect::Emis(emis::Emis::new(
                    &practice.ods,
                    &practice.base_url,
                    creds.clone(),
                    http,
                    linkage.clone(),
                )),
                Credentials::SystmOne(creds) => Dialect::SystmOne(systmone::SystmOne::new(
                    &practice.ods,
                    &practice.base_url,
                    creds.clone(),
                    http,
                    settings.timeout,
                    settings.retries,
                    linkage.clone(),
                )),
                Credentials::Medicus(creds) => Dialect::Medicus(medicus::Medicus::new(
                    &practice.ods,
                    &practice.base_url,
                    creds.clone(),
                    http,
                    linkage.clone(),
                )),
            };
            map.insert(
                practice.ods.clone(),
                PracticeBackend {
                    ods: practice.ods.clone(),
                    supplier: practice.supplier,
                    policy: practice.policy.clone(),
                    dialect,
                    client,
                },
            );
        }
        Ok(Backend {
            practices: map,
            max_in_flight: native.max_in_flight,
        })
    }

    /// The file descriptors native calls may hold at most: per practice, both surfaces' calls in flight and as
    /// many idle pooled connections.
    pub fn descriptors(&self) -> u64 {
        let per_practice = u64::try_from(self.max_in_flight).unwrap_or(u64::MAX).saturating_mul(4);
        per_practice.saturating_mul(u64::try_from(self.practices.len()).unwrap_or(u64::MAX))
    }

    pub fn practice(&self, ods: &str) -> Option<&PracticeBackend> {
        self.practices.get(ods)
    }

    /// Whether any practice has native calls waiting for a place: a request then asks one thing at a time.
    pub fn is_queueing(&self) -> bool {
        self.practices.values().any(|p| p.client.is_queueing())
    }

    pub fn practices(&self) -> impl Iterator<Item = &PracticeBackend> {
        self.practices.values()
    }
}

impl PracticeBackend {
    /// Whether the breaker stops calls to one of the practice's APIs now.
    pub fn is_circuit_open(&self, surface: crate::mapping::Surface) -> bool {
        self.client.is_circuit_open(surface)
    }
}

impl PracticeBackend {
    /// Makes one native call; `calls` receives what was sent, for the audit trail.
    /// A read the request has already made is shared, not made again (see `shared_replies`).
    pub async fn call(&self, call: &NativeCall<'_>, calls: &mut Vec<CallRecord>) -> FhirResult<NativeReply> {
        let body = shared_replies::read(&self.ods, call, self.is_read(call.request), || async {
            match &self.dialect {
                Dialect::Emis(emis) => emis.call(call, calls).await,
                Dialect::Medicus(medicus) => medicus.call(call, calls).await,
                Dialect::SystmOne(systmone) => systmone.call(call, calls).await,
            }
        })
        .await?;
        Ok(NativeReply { body })
    }
}

impl PracticeBackend {
    /// Whether a native request only reads (never changes the record), as its dialect says.
    fn is_read(&self, request: &Value) -> bool {
        match &self.dialect {
            Dialect::SystmOne(_) => systmone::is_read(request),
            Dialect::Emis(_) | Dialect::Medicus(_) => {
                HttpCallSpec::read(request).is_ok_and(|spec| spec.method == http::Method::GET)
            }
        }
    }

    /// The native keys of the records a patient's linkage opens at this practice: their own first, then those
    /// they act for through proxy access. Session knowledge, so each dialect answers from its own flow; every
    /// patient-facing call and every returned item is checked against it, so a patient's token can never be
    /// pointed at a record the practice has not linked to them.
    pub async fn linked_records(
        &self,
        nhs: &str,
        request_id: &str,
        calls: &mut Vec<CallRecord>,
    ) -> FhirResult<Vec<String>> {
        let keys = match &self.dialect {
            Dialect::Emis(emis) => emis.linked_records(nhs, request_id, calls).await?,
            Dialect::Medicus(medicus) => medicus.linked_records(nhs, request_id, calls).await?,
            Dialect::SystmOne(systmone) => systmone.linked_records(nhs, request_id, calls).await?,
        };
        if keys.is_empty() {
            return Err(FhirError::bad_gateway(
                "IM1-4009",
                format!("{} listed no record for the patient's linkage", self.supplier.display()),
            ));
        }
        Ok(keys)
    }
}

/// The error a patient-facing call about a record the linkage does not open gives (the checks before it make
/// this a defence in depth, not a path clients reach).
pub fn not_linked() -> FhirError {
    FhirError::forbidden("IM1-2107", "the patient's linkage does not open this record")
}

/// Everything but RFC 3986's unreserved characters is escaped in a path segment.
pub const PATH_SEGMENT: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// Reads `{method, path, query, body}` from an evaluated request template.
pub struct HttpCallSpec<'a> {
    pub method: http::Method,
    pub path: &'a str,
    pub query: Vec<(String, String)>,
    pub body: Option<&'a Value>,
}

impl<'a> HttpCallSpec<'a> {
    pub fn read(request: &'a Value) -> FhirResult<Self> {
        let bad = |m: &str| FhirError::internal("IM1-3101", format!("the mapping's native request is malformed: {m}"));
        let method = match request.get("method").and_then(Value::as_str).unwrap_or("GET") {
            "GET" => http::Method::GET,
            "POST" => http::Method::POST,
            "PUT" => http::Method::PUT,
            "DELETE" => http::Method::DELETE,
            _ => return Err(bad("unknown method")),
        };
        let path = request
            .get("path")
            .and_then(Value::as_str)
            .ok_or_else(|| bad("no path"))?;
        if path.contains("..") || path.contains('?') || path.starts_with('/') {
            return Err(bad("the path must be relative, without a query"));
        }
        let query = request
            .get("query")
            .and_then(Value::as_object)
            .map(|q| {
                q.iter()
                    .map(|(k, v)| (k.clone(), v.as_str().map(String::from).unwrap_or_else(|| v.to_string())))
                    .collect()
            })
            .unwrap_or_default();
        Ok(HttpCallSpec {
            method,
            path,
            query,
            body: request.get("body"),
        })
    }

    /// The URL below a base, each path segment percent-encoded.
    pub fn url(&self, base: &str, extra_query: &[(&str, &str)]) -> String {
        let path: Vec<String> = self
            .path
            .split('/')
            .map(|s| percent_encoding::utf8_percent_encode(s, PATH_SEGMENT).to_string())
            .collect();
        let mut url = format!("{base}/{}", path.join("/"));
        let mut query = form_urlencoded::Serializer::new(String::new());
        query.extend_pairs(self.query.iter());
        query.extend_pairs(extra_query.iter());
        let query = query.finish();
        if !query.is_empty() {
            url.push('?');
            url.push_str(&query);
        }
        url
    }
}

/// Parses a native JSON body; anything else is a 502.
/// A successful reply's body for the mapping: JSON as sent; anything else (a document's bytes) as
/// `{contentType, data (base64), size}`, which a Binary mapping turns into a FHIR Binary.
pub fn success_body(reply: &client::HttpReply, supplier: &str) -> FhirResult<Native> {
    let content_type = reply
        .headers
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("application/json");
    if content_type.starts_with("application/json") || content_type.contains("+json") {
        return parse_json(&reply.body, supplier);
    }
    use base64::Engine as _;
    crate::mapping::node::to_native(&serde_json::json!({
        "contentType": content_type.split(';').next().unwrap_or(content_type).trim(),
        "data": base64::engine::general_purpose::STANDARD.encode(&reply.body),
        "size": reply.body.len(),
    }))
    .map_err(|_| FhirError::bad_gateway("IM1-4006", format!("{supplier} sent a reply that cannot be read")))
}

pub fn parse_json(body: &[u8], supplier: &str) -> FhirResult<Native> {
    crate::mapping::node::parse_json(body)
        .map_err(|_| FhirError::bad_gateway("IM1-4006", format!("{supplier} sent a reply that is not valid JSON")))
}
