//! Request handling: tenant and path parsing, per-call JWT check, rate limit, idempotent replay of writes,
//! and dispatch to the module that renders each endpoint.

use crate::auth::{Claims, Verifier};
use crate::errors::{fault_reply, json_response, ApiError};
use crate::journal::{self, Surface, View};
use crate::writes::Author;
use crate::{appointments, changes, demographics, messages, prescriptions, writes, MedicusConfig, StartError};
use bytes::Bytes;
use http::{header, HeaderValue, Method, Response, StatusCode};
use im1_sim::common::idempotency::{fingerprint, Begin, ReplayStore};
use im1_sim::common::throttle::RateLimiter;
use im1_sim::common::{Handler, InjectedReply, RequestContext, SimRequest, SimResponse};
use im1_sim::record::{
    Direction, LinkageSecret, NewBooking, NewMessage, Nid, Patient, Record, Service, Supplier, World,
};
use serde_json::{json, Value};
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
            limiter: RateLimiter::new(20, config.throttle),
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
        if *req.method() == Method::POST {
            if let Some(key) = req.headers().get("idempotency-key").and_then(|v| v.to_str().ok()) {
                return self.idempotent(&call, key, path, cx);
            }
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

    // -----------------------------------------------------------------------------------------------------
    // Patient facing

    /// Patients the token's NHS login user may act for: the linked patient and those they are proxy for.
    fn associated(&self, r: &Record, sub: &str) -> Vec<(Nid, &'static str)> {
        let linkages = self.linkages.lock().unwrap_or_else(|e| e.into_inner());
        let Some(me) = linkages.by_sub.get(sub) else {
            return Vec::new();
        };
        let mut out = vec![(me.clone(), "self")];
        out.extend(r.proxied_by(me).into_iter().map(|l| (l.patient.clone(), "proxy")));
        out
    }

    fn pfs(&self, call: &Call<'_>, cx: &RequestContext) -> Reply {
        let sub = call.claims.user_identifier_value.clone().unwrap_or_default();
        match (call.method, call.rest.as_slice()) {
            (&Method::POST, ["user", "exchange-linkage-token"]) => self.exchange(&sub, &call.json()?),
            (&Method::GET, ["user", "list-linked-patients"]) => self.world.read(|r| {
                let list: Vec<Value> = self
                    .associated(r, &sub)
                    .into_iter()
                    .filter_map(|(id, kind)| {
                        let p = r.patient(&id)?;
                        let on = |s| {
                            if r.service_allowed(self.ods(), &id, s) {
                                "enabled"
                            } else {
                                "disabled"
                            }
                        };
                        Some(json!({
                            "id": crate::style::nid(&id),
                            "name": demographics::display_name(&p.name),
                            "associationType": kind,
                            "careRecordAccess": on(Service::Records),
                            "appointmentManagement": on(Service::Appointments),
                            "prescriptionOrdering": on(Service::Prescriptions),
                            "messaging": on(Service::Messaging),
                        }))
                    })
                    .collect();
                ok(json!({ "associatedPatients": list }))
            }),
            (_, ["patient", pid, rest @ ..]) => {
                let patient = self.world.resolve(Supplier::Medicus, pid).ok_or_else(no_linkage)?;
                let allowed = self
                    .world
                    .read(|r| self.associated(r, &sub).iter().any(|(id, _)| id == &patient));
                if !allowed {
                    return Err(no_linkage());
                }
                self.pfs_patient(call, cx, &patient, rest)
            }
            _ => Err(ApiError::not_found()),
        }
    }

    fn exchange(&self, sub: &str, body: &Value) -> Reply {
        let token = body.get("linkageToken").and_then(Value::as_str).unwrap_or("");
        let dob = body.get("dateOfBirth").and_then(Value::as_str).unwrap_or("");
        let invalid = || {
            ApiError::new(
                400,
                "LINKAGE_TOKEN_INVALID",
                "Linkage token invalid",
                "The linkage token or date of birth does not match.",
            )
        };
        let found = self.world.read(|r| {
            r.credentials
                .iter()
                .find(|c| {
                    c.practice == self.ods()
                        && matches!(&c.secret, LinkageSecret::LinkageToken { token: t } if t == token)
                })
                .and_then(|c| {
                    r.patient(&c.patient)
                        .map(|p| (c.nhs_login_sub.clone(), p.birth_date, p.id.clone()))
                })
        });
        let (owner, birth, patient) = found.ok_or_else(invalid)?;
        if owner != sub || crate::style::date(birth) != dob {
            return Err(invalid());
        }
        let mut linkages = self.linkages.lock().unwrap_or_else(|e| e.into_inner());
        if !linkages.exchanged.insert(token.to_string()) {
            return Err(ApiError::new(
                409,
                "LINKAGE_TOKEN_EXCHANGED",
                "Linkage token already exchanged",
                "This linkage token has already been exchanged.",
            ));
        }
        linkages.by_sub.insert(sub.to_string(), patient.clone());
        ok(json!({"patientId": crate::style::nid(&patient), "associationType": "self"}))
    }

    fn require(&self, patient: &Nid, service: Service, name: &str) -> Result<(), ApiError> {
        if self.world.read(|r| r.service_allowed(self.ods(), patient, service)) {
            Ok(())
        } else {
            Err(ApiError::service_disabled(name))
        }
    }

    fn pfs_patient(&self, call: &Call<'_>, cx: &RequestContext, patient: &Nid, rest: &[&str]) -> Reply {
        let ods = self.ods();
        let records = || self.require(patient, Service::Records, "Access Care Record");
        let appts = || self.require(patient, Service::Appointments, "Appointment Management");
        let rx = || self.require(patient, Service::Prescriptions, "Prescription Ordering");
        let msgs = || self.require(patient, Service::Messaging, "Messaging");
        match (call.method, rest) {
            (&Method::GET, ["nhs-number"]) => {
                self.with_patient(patient, |_, p| ok(json!({ "nhsNumber": p.nhs_number })))
            }
            (&Method::GET, ["journal"]) => {
                records()?;
                self.journal(call, patient, Surface::Pfs)
            }
            (&Method::GET, ["file", kind, element, file]) => {
                records()?;
                return_file(self.file(patient, Surface::Pfs, kind, element, file))
            }
            (&Method::GET, ["bookable-services"]) => {
                appts()?;
                self.world.read(|r| ok(appointments::services(r, ods)))
            }
            (&Method::GET, ["available-appointments"]) => {
                appts()?;
                let now = self.world.now();
                let q = appointments::SlotQuery {
                    service_id: call.q("serviceId"),
                    from: call.q("fromDate"),
                    until: call.q("untilDate"),
                    cursor: call.q("cursor"),
                    limit: call.q("limit"),
                };
                self.world
                    .read(|r| appointments::available(r, ods, now, &q))
                    .and_then(ok)
            }
            (&Method::GET, ["appointments"]) => {
                appts()?;
                self.world
                    .read(|r| appointments::list(r, ods, patient, call.q("fromDate"), call.q("untilDate")))
                    .and_then(ok)
            }
            (&Method::POST, ["book-appointment"]) => {
                appts()?;
                self.book(cx, patient, &call.json()?)
            }
            (&Method::POST, ["cancel-appointment"]) => {
                appts()?;
                self.cancel(cx, patient, &call.json()?)
            }
            (&Method::GET, ["prescriptions"]) => {
                rx()?;
                self.with_patient(patient, |r, p| ok(prescriptions::list(r, ods, p, false)))
            }
            (&Method::GET, ["prescription-requests"]) => {
                rx()?;
                self.with_patient(patient, |r, p| ok(prescriptions::requests(r, ods, p)))
            }
            (&Method::POST, ["create-prescription-request"]) => {
                rx()?;
                let body = call.json()?;
                let (courses, comment) = self.with_patient(patient, |_, p| prescriptions::parse_request(p, &body))?;
                let req = self
                    .world
                    .create_prescription_request(ods, patient, &courses, comment)
                    .map_err(prescriptions::write_error)?;
                cx.record_write();
                ok(json!({"prescriptionRequestId": crate::style::nid(&req.id), "status": "pending"}))
            }
            (&Method::GET, ["messages"]) => {
                msgs()?;
                self.world.read(|r| ok(messages::list(r, ods, patient)))
            }
            (&Method::POST, ["send-message"]) => {
                msgs()?;
                let body = call.json()?;
                let field = |n: &str| body.get(n).and_then(Value::as_str).filter(|s| !s.is_empty());
                let (Some(subject), Some(text)) = (field("subject"), field("body")) else {
                    return Err(ApiError::bad_request("subject and body are required."));
                };
                let m = self
                    .world
                    .send_message(NewMessage {
                        practice: ods.to_string(),
                        patient: patient.clone(),
                        direction: Direction::ToPractice,
                        subject: subject.to_string(),
                        body: text.to_string(),
                    })
                    .map_err(writes::write_error)?;
                cx.record_write();
                created(json!({ "id": crate::style::nid(&m.id) }))
            }
            _ => Err(ApiError::not_found()),
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

    fn book(&self, cx: &RequestContext, patient: &Nid, body: &Value) -> Reply {
        let id = body.get("availableAppointmentId").and_then(Value::as_str).unwrap_or("");
        let not_found = || appointments::write_error(im1_sim::record::WriteError::SlotNotFound);
        let slot = appointments::slot_uuid(id)
            .and_then(|u| self.world.resolve(Supplier::Medicus, u))
            .ok_or_else(not_found)?;
        let matches = self
            .world
            .read(|r| r.slot(&slot).is_some_and(|s| appointments::slot_matches(s, id)));
        if !matches {
            return Err(not_found());
        }
        let text = |n: &str| body.get(n).and_then(Value::as_str).map(str::to_string);
        let a = self
            .world
            .book_slot(NewBooking {
                practice: self.ods().to_string(),
                patient: patient.clone(),
                slot,
                reason: text("patientSuppliedInformationForClinician"),
                telephone: text("telephoneNumber"),
            })
            .map_err(appointments::write_error)?;
        cx.record_write();
        ok(json!({ "appointmentId": crate::style::nid(&a.id) }))
    }

    fn cancel(&self, cx: &RequestContext, patient: &Nid, body: &Value) -> Reply {
        let id = body.get("appointmentId").and_then(Value::as_str).unwrap_or("");
        let not_found = || appointments::write_error(im1_sim::record::WriteError::AppointmentNotFound);
        let appt = self.world.resolve(Supplier::Medicus, id).ok_or_else(not_found)?;
        let mine = self
            .world
            .read(|r| r.appointments_of(self.ods(), patient).any(|a| a.id == appt));
        if !mine {
            return Err(not_found());
        }
        let reason = body
            .get("cancellationReason")
            .and_then(Value::as_str)
            .map(str::to_string);
        self.world
            .cancel_appointment(self.ods(), &appt, reason)
            .map_err(appointments::write_error)?;
        cx.record_write();
        ok(json!({ "success": true }))
    }

    // -----------------------------------------------------------------------------------------------------
    // Transactional (clinician facing)

    fn transactional(&self, call: &Call<'_>, cx: &RequestContext) -> Reply {
        let ods = self.ods();
        match (call.method, call.rest.as_slice()) {
            (&Method::GET, ["ping"]) => self.ping(&call.claims),
            (&Method::GET, ["patient", "find"]) => {
                let query = call.q("query").unwrap_or("");
                let inactive = call.q("includeInactive") == Some("true");
                let today = self.world.now().date();
                self.world.read(|r| {
                    let results: Vec<Value> = r
                        .patients
                        .iter()
                        .filter(|p| p.registration(ods).is_some())
                        .filter(|p| inactive || p.deceased_at.is_none())
                        .filter(|p| demographics::matches(p, query))
                        .map(|p| demographics::patient(r, p, ods, today))
                        .collect();
                    ok(json!({ "searchResults": results }))
                })
            }
            (&Method::GET, ["practitioners"]) => self.world.read(|r| {
                let list: Vec<Value> = r
                    .practitioners
                    .iter()
                    .filter(|p| p.roles.iter().any(|x| x.practice == ods))
                    .map(|p| demographics::practitioner(p, ods))
                    .collect();
                ok(json!({ "practitioners": list }))
            }),
            (&Method::GET, ["patients", "changes"]) => {
                changes::feed(&self.world, ods, call.q("since"), call.q("cursor"), call.q("limit")).and_then(ok)
            }
            (_, ["patient", pid, rest @ ..]) => {
                let patient = self
                    .world
                    .resolve(Supplier::Medicus, pid)
                    .ok_or_else(ApiError::patient_not_found)?;
                self.transactional_patient(call, cx, &patient, rest)
            }
            _ => Err(ApiError::not_found()),
        }
    }

    fn ping(&self, claims: &Claims) -> Reply {
        let now = crate::style::datetime(self.world.now());
        self.world.read(|r| {
            let org = r.practice(self.ods());
            ok(json!({
                "status": "ok",
                "timestamp": now,
                "application": {"identifier": claims.iss, "name": self.config.app_name},
                "requestingOrganisation": {
                    "organisationName": org.map(|o| o.name.clone()),
                    "organisationIdentifierType": "nhs-england-ods-code",
                    "organisationIdentifierValue": self.ods(),
                    "address": org.map(|o| demographics::address(&o.address)),
                    "telephone": org.map(|o| o.phone.clone()),
                },
                "requestingPractitioner": claims.requesting_practitioner.as_ref()
                    .map(|p| json!({"sdsUserId": p.sds_user_id, "name": p.name})),
            }))
        })
    }

    /// The recording practitioner of a write: the body's `recordingPractitionerId`, else the token's
    /// `requestingPractitioner.sdsUserId` (a Medicus practitioner id or professional registration number).
    fn author(&self, call: &Call<'_>, body: &Value) -> Result<Author, ApiError> {
        let given = body
            .get("recordingPractitionerId")
            .and_then(Value::as_str)
            .map(str::to_string)
            .or_else(|| {
                call.claims
                    .requesting_practitioner
                    .as_ref()
                    .map(|p| p.sds_user_id.clone())
            });
        let Some(given) = given else {
            return Ok(Author(None));
        };
        self.world
            .read(|r| {
                r.practitioners
                    .iter()
                    .find(|p| crate::style::nid(&p.id) == given || p.registration_number == given)
                    .map(|p| p.id.clone())
            })
            .map(|id| Author(Some(id)))
            .ok_or_else(|| writes::write_error(im1_sim::record::WriteError::UnknownPractitioner(Nid(given))))
    }

    fn transactional_patient(&self, call: &Call<'_>, cx: &RequestContext, patient: &Nid, rest: &[&str]) -> Reply {
        let ods = self.ods();
        let nid = crate::style::nid;
        // Every patient call first checks the patient is registered here.
        self.with_patient(patient, |_, _| Ok(()))?;
        match (call.method, rest) {
            (&Method::GET, []) => {
                let today = self.world.now().date();
                self.with_patient(patient, |r, p| ok(demographics::patient(r, p, ods, today)))
            }
            (&Method::GET, ["journal"]) => self.journal(call, patient, Surface::Transactional),
            (&Method::GET, ["file", kind, element, file]) => {
                return_file(self.file(patient, Surface::Transactional, kind, element, file))
            }
            (&Method::GET, ["list-current-and-recent-medication"]) => {
                self.with_patient(patient, |r, p| ok(prescriptions::list(r, ods, p, true)))
            }
            (&Method::POST, ["journal", kind]) => {
                let body = call.json()?;
                let author = self.author(call, &body)?;
                let reply = match *kind {
                    "observations" => {
                        let id = self
                            .world
                            .file_observation(patient, writes::observation(&body, "", &author)?);
                        id.map(|id| json!({ "id": nid(&id) }))
                    }
                    "allergy-intolerances" => {
                        let id = self.world.file_allergy(patient, writes::allergy(&body, "", &author)?);
                        id.map(|id| json!({ "id": nid(&id) }))
                    }
                    "problems" => {
                        let id = self.world.file_problem(patient, writes::problem(&body, "", &author)?);
                        id.map(|id| json!({ "id": nid(&id) }))
                    }
                    "care-record-documents" => {
                        let id = self
                            .world
                            .file_document(patient, writes::document(&body, &author, self.world.now().date())?);
                        id.map(|id| json!({"id": nid(&id), "fileId": journal::file_id(&id)}))
                    }
                    "encounters" => {
                        let parsed = writes::encounter(&body, &author)?;
                        let pointers = parsed.heading_pointers;
                        return match self.world.file_consultation(patient, parsed.consultation) {
                            Ok(f) => {
                                cx.record_write();
                                created(
                                    json!({"id": nid(&f.id), "elementIds": f.items.iter().map(nid).collect::<Vec<_>>()}),
                                )
                            }
                            Err(im1_sim::record::WriteError::InvalidEntry { section, entry, reason }) => {
                                let at = pointers
                                    .get(section)
                                    .map(|p| format!("{p}/{entry}"))
                                    .unwrap_or_default();
                                Err(ApiError::new(422, "INVALID_CARE_RECORD_ELEMENT", "Invalid element", reason).at(at))
                            }
                            Err(e) => Err(writes::write_error(e)),
                        };
                    }
                    _ => return Err(ApiError::not_found()),
                };
                let v = reply.map_err(writes::write_error)?;
                cx.record_write();
                created(v)
            }
            _ => Err(ApiError::not_found()),
        }
    }
}

fn no_linkage() -> ApiError {
    ApiError::new(
        403,
        "NO_PATIENT_APP_LINKAGE",
        "No patient app linkage",
        "This user has no Patient App Linkage to this patient.",
    )
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
