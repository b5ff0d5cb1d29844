//! Request handling: tenant and path parsing, per-call JWT check, rate limit, idempotent replay of writes,
//! and dispatch: [`pfs`] answers the patient-facing API, [`transactional`] the clinician-facing one.

mod pfs;
mod transactional;
mod transactional_admin;
mod transactional_appointments;

use crate::auth::{Claims, Verifier};
use crate::errors::{fault_reply, json_response, ApiError};
use crate::journal::{self, Surface, View};
use crate::{MedicusConfig, StartError};
use bytes::Bytes;
use http::{header, HeaderValue, Method, Response, StatusCode};
use im1_sim::common::idempotency::{fingerprint, Begin, ReplayStore};
use im1_sim::common::throttle::RateLimiter;
use im1_sim::common::{Handler, InjectedReply, RequestContext, SimRequest, SimResponse};
use im1_sim::record::{Nid, Patient, Record, World};
use serde_json::Value;
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// A successful reply: JSON, or a file's bytes with its content type.
enum Out {
    Json(StatusCode, Value),
    File(String, Vec<u8>),
}

type Reply = Result<Out, ApiError>;

/// Patient App Linkages made by exchanging tokens: NHS login sub → patient, and the tokens used.
#[derive(Default)]
struct Linkages {
    by_sub: HashMap<String, Nid>,
    exchanged: HashSet<String>,
}

/// The Medicus dialect.
pub struct Medicus {
    world: Arc<World>,
    config: MedicusConfig,
    verifier: Verifier,
    limiter: RateLimiter,
    replays: ReplayStore<(StatusCode, Bytes)>,
    linkages: Mutex<Linkages>,
}

/// What a parsed request asks for.
struct Call<'a> {
    method: &'a Method,
    api: Surface,
    /// Segments after `{api}/v1/`.
    rest: Vec<&'a str>,
    query: HashMap<String, String>,
    body: &'a Bytes,
    claims: Claims,
}

impl Call<'_> {
    fn q(&self, name: &str) -> Option<&str> {
        self.query.get(name).map(String::as_str)
    }

    fn json(&self) -> Result<Value, ApiError> {
        serde_json::from_slice(self.body).map_err(|_| ApiError::bad_request("The body must be a JSON object."))
    }
}

fn created(v: Value) -> Reply {
    Ok(Out::Json(StatusCode::CREATED, v))
}

fn ok(v: Value) -> Reply {
    Ok(Out::Json(StatusCode::OK, v))
}

impl Medicus {
    pub fn new(world: Arc<World>, config: MedicusConfig) -> Result<Self, StartError> {
        let verifier = Verifier::new(
            &config.public_key_pem,
            config.key_id.clone(),
            &config.app_id,
            &config.tenant,
            config.reject_replayed_jti,
        )?;
        Ok(Medicus {
            world,
            limiter: RateLimiter::new(crate::RATE_PER_SECOND, config.throttle),
            verifier,
            replays: ReplayStore::new(Duration::from_secs(24 * 3600)),
            linkages: Mutex::new(Linkages::default()),
            config,
        })
    }

    fn ods(&self) -> &str {
        &self.config.practice_ods
    }

    fn respond(&self, req: &SimRequest, cx: &RequestContext) -> SimResponse {
        let path = req.uri().path();
        let Some(rest) = path
            .strip_prefix("/medicus/")
            .and_then(|p| p.strip_prefix(self.config.tenant.as_str()))
            .and_then(|p| p.strip_prefix('/'))
        else {
            return ApiError::new(404, "TENANT_NOT_FOUND", "Tenant not found", "No such tenant.").response();
        };
        let segments: Vec<&str> = rest.split('/').filter(|s| !s.is_empty()).collect();
        let (api, rest) = match segments.as_slice() {
            ["pfs-api", "v1", rest @ ..] => (Surface::Pfs, rest.to_vec()),
            ["transactional-api", "v1", rest @ ..] => (Surface::Transactional, rest.to_vec()),
            ["transactional-api", "ping"] => (Surface::Transactional, vec!["ping"]),
            _ => return ApiError::not_found().response(),
        };
        let now_unix = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs() as i64);
        let auth = req.headers().get(header::AUTHORIZATION).and_then(|v| v.to_str().ok());
        let claims = match self.verifier.verify(auth, now_unix) {
            Ok(c) => c,
            Err(e) => return e.response(),
        };
        if let Err(t) = self.limiter.check(&format!("{}|{}", claims.iss, self.config.tenant)) {
            return ApiError::rate_limited(t.retry_after_secs).response();
        }
        if api == Surface::Pfs
            && (claims.user_identifier_type.as_deref() != Some("nhs-login-sub")
                || claims.user_identifier_value.as_deref().is_none_or(str::is_empty))
        {
            return ApiError::new(
                401,
                "JWT_INVALID",
                "Invalid token",
                "PFS calls need userIdentifierType nhs-login-sub and a userIdentifierValue.",
            )
            .response();
        }
        let query: HashMap<String, String> = req
            .uri()
            .query()
            .map(|q| form_urlencoded::parse(q.as_bytes()).into_owned().collect())
            .unwrap_or_default();
        let call = Call {
            method: req.method(),
            api,
            rest,
            query,
            body: req.body(),
            claims,
        };
        // Medicus write calls carry an Idempotency-Key (confirmed); the refusal of one without is ours.
        if *req.method() == Method::POST {
            return match req.headers().get("idempotency-key").and_then(|v| v.to_str().ok()) {
                Some(key) if uuid::Uuid::parse_str(key).is_ok() => self.idempotent(&call, key, path, cx),
                _ => ApiError::new(
                    400,
                    "IDEMPOTENCY_KEY_REQUIRED",
                    "Idempotency key required",
                    "Write calls need an Idempotency-Key header holding a UUID.",
                )
                .response(),
            };
        }
        self.finish(self.dispatch(&call, cx))
    }

    /// Same key and body: the first reply again; same key, other body: 409.
    fn idempotent(&self, call: &Call<'_>, key: &str, path: &str, cx: &RequestContext) -> SimResponse {
        let scope = format!("{}|{}", call.claims.iss, path);
        match self.replays.begin(&scope, key, Some(fingerprint(call.body))) {
            Begin::Replay((status, body)) => raw_json(status, body),
            Begin::Mismatch => ApiError::new(
                409,
                "IDEMPOTENCY_KEY_REUSED",
                "Idempotency key reused",
                "This Idempotency-Key was used with a different request body.",
            )
            .response(),
            Begin::InProgress => ApiError::new(
                409,
                "IDEMPOTENCY_KEY_IN_USE",
                "Idempotency key in use",
                "A request with this Idempotency-Key is still being processed.",
            )
            .response(),
            Begin::Fresh(ticket) => {
                let resp = self.finish(self.dispatch(call, cx));
                ticket.complete((resp.status(), resp.body().clone()));
                resp
            }
        }
    }

    fn finish(&self, reply: Reply) -> SimResponse {
        match reply {
            Ok(Out::Json(status, v)) => json_response(status, &v),
            Ok(Out::File(mime, bytes)) => {
                let mut out = Response::new(Bytes::from(bytes));
                if let Ok(v) = HeaderValue::from_str(&mime) {
                    out.headers_mut().insert(header::CONTENT_TYPE, v);
                }
                out
            }
            Err(e) => e.response(),
        }
    }

    fn dispatch(&self, call: &Call<'_>, cx: &RequestContext) -> Reply {
        match call.api {
            Surface::Pfs => self.pfs(call, cx),
            Surface::Transactional => self.transactional(call, cx),
        }
    }

    fn with_patient<T>(
        &self,
        patient: &Nid,
        f: impl FnOnce(&Record, &Patient) -> Result<T, ApiError>,
    ) -> Result<T, ApiError> {
        self.world.read(|r| match r.patient(patient) {
            Some(p) if p.registration(self.ods()).is_some() => f(r, p),
            _ => Err(ApiError::patient_not_found()),
        })
    }

    fn journal(&self, call: &Call<'_>, patient: &Nid, surface: Surface) -> Reply {
        let q = journal::Query {
            types: call.q("types"),
            from: call.q("fromDate"),
            until: call.q("untilDate"),
            cursor: call.q("cursor"),
            limit: call.q("limit"),
        };
        self.with_patient(patient, |r, p| {
            View {
                record: r,
                patient: p,
                tenant: &self.config.tenant,
                surface,
            }
            .journal(&q)
        })
        .and_then(ok)
    }

    fn file(
        &self,
        patient: &Nid,
        surface: Surface,
        kind: &str,
        element: &str,
        file: &str,
    ) -> Result<(String, Vec<u8>), ApiError> {
        if !["care-record-document", "emed3-fit-note", "referral-attachment"].contains(&kind) {
            return Err(ApiError::new(
                404,
                "INVALID_CARE_RECORD_ELEMENT_TYPE",
                "Invalid care record element type",
                "Files belong to care-record-document, emed3-fit-note or referral-attachment elements.",
            ));
        }
        self.with_patient(patient, |r, p| {
            View {
                record: r,
                patient: p,
                tenant: &self.config.tenant,
                surface,
            }
            .file(element, file)
            .ok_or_else(|| ApiError::new(404, "FILE_NOT_FOUND", "File not found", "No such file."))
        })
    }
}

fn raw_json(status: StatusCode, body: Bytes) -> SimResponse {
    let mut resp = Response::new(body);
    *resp.status_mut() = status;
    resp.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    resp
}

/// Files are answered with their own content type; errors still as JSON.
fn return_file(found: Result<(String, Vec<u8>), ApiError>) -> Reply {
    found.map(|(mime, bytes)| Out::File(mime, bytes))
}

impl Handler for Medicus {
    async fn handle(&self, req: SimRequest, cx: RequestContext) -> SimResponse {
        self.respond(&req, &cx)
    }

    fn route(&self, req: &SimRequest) -> String {
        // Ids in paths would make one counter per patient; name them `{id}`.
        let path: Vec<&str> = req
            .uri()
            .path()
            .split('/')
            .map(|s| {
                if s.len() == 36 && s.matches('-').count() == 4 {
                    "{id}"
                } else {
                    s
                }
            })
            .collect();
        format!("{} {}", req.method(), path.join("/"))
    }

    fn fault_reply(&self, reply: InjectedReply, _req: &SimRequest) -> SimResponse {
        fault_reply(reply)
    }
}
