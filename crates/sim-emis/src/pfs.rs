//! The patient-facing (PFS) surface: version and application checks, the rate limit, the session flow
//! (end-user session, linking, session with patient links) and the per-patient calls.

use crate::errors::{self, exception, message, missing, model_state, ok};
use crate::render::{self, guid, ItemType, Surface};
use crate::request::{field, header, json_body, Query};
use crate::routes::Emis;
use crate::session::{Association, Link, SessionError};
use crate::{booking, dates, messages, pharmacy};
use bytes::Bytes;
use http::{header as h, HeaderValue, Method, Response, StatusCode};
use im1_sim::common::{RequestContext, SimRequest, SimResponse};
use im1_sim::record::{native_sub_id, LinkageSecret, Service, Supplier};
use serde_json::{json, Value};

/// The one API version the simulator speaks.
pub const API_VERSION: &str = "2.1.0.0";

/// Everything a per-patient call needs.
pub struct PatientCall<'a> {
    pub emis: &'a Emis,
    pub link: Link,
    pub ods: &'a str,
    pub query: Query,
    /// The JSON body for POST/DELETE.
    pub body: Value,
}

impl PatientCall<'_> {
    /// 403 unless the service is on for the practice and the patient.
    pub fn require(&self, service: Service, method: &str) -> Result<(), SimResponse> {
        let allowed = self
            .emis
            .world
            .read(|r| r.service_allowed(self.ods, &self.link.patient, service));
        if allowed {
            Ok(())
        } else {
            Err(errors::service_off(service, method))
        }
    }
}

pub fn handle(e: &Emis, req: &SimRequest, path: &str, cx: &RequestContext) -> SimResponse {
    if header(req, "X-API-Version") != Some(API_VERSION) {
        return message(StatusCode::BAD_REQUEST, "Unsupported API version");
    }
    let app = header(req, "X-API-ApplicationId").unwrap_or("");
    if !app.eq_ignore_ascii_case(&e.config.application_id) {
        return message(StatusCode::UNAUTHORIZED, "Invalid X-API-ApplicationId");
    }
    if let Err(t) = e.limiter.check(&e.config.application_id) {
        return errors::too_many(t.retry_after_secs);
    }
    let method = req.method().clone();
    match (&method, path) {
        (&Method::POST, "sessions/endusersession") => {
            let id = e.sessions.new_end_user();
            ok(&json!({ "EndUserSessionId": id }))
        }
        (&Method::POST, "me/applications") => link_account(e, req),
        (&Method::POST, "sessions") => open_session(e, req),
        (&Method::GET, p) if p.starts_with("practices/") && p.ends_with("/settings") => practice_settings(e, req, p),
        _ => patient_call(e, req, path, cx),
    }
}

fn end_user(e: &Emis, req: &SimRequest) -> Result<String, SimResponse> {
    let id = header(req, "X-API-EndUserSessionId").ok_or_else(errors::session_gone)?;
    e.sessions.touch_end_user(id).map_err(|_| errors::session_gone())?;
    Ok(id.to_string())
}

fn link_account(e: &Emis, req: &SimRequest) -> SimResponse {
    if let Err(r) = end_user(e, req) {
        return r;
    }
    let body = match json_body(req) {
        Ok(b) => b,
        Err(r) => return r,
    };
    let details = body.get("LinkageDetails").cloned().unwrap_or(Value::Null);
    let (surname, dob, account, key, ods) = match (
        field(&body, "Surname"),
        field(&body, "DateOfBirth"),
        field(&details, "AccountId"),
        field(&details, "LinkageKey"),
        field(&details, "NationalPracticeCode"),
    ) {
        (Ok(s), Ok(d), Ok(a), Ok(k), Ok(o)) => (s, d, a, k, o),
        (Err(r), ..) | (_, Err(r), ..) => return r,
        (_, _, Err(_), ..) => return missing("LinkageDetails.AccountId"),
        (_, _, _, Err(_), _) => return missing("LinkageDetails.LinkageKey"),
        (.., Err(_)) => return missing("LinkageDetails.NationalPracticeCode"),
    };
    let method = "MeApplicationsPost";
    let Some(dob) = dates::parse_day(dob) else {
        return model_state("DateOfBirth", "The DateOfBirth field is not a valid date.");
    };
    let found = e.world.read(|r| {
        let cred = r.credentials.iter().find(|c| match &c.secret {
            LinkageSecret::AccountLinkageKey {
                account_id, ods_code, ..
            } => account_id == account && ods_code.eq_ignore_ascii_case(ods),
            _ => false,
        })?;
        let LinkageSecret::AccountLinkageKey { linkage_key, .. } = &cred.secret else {
            return None;
        };
        let p = r.patient(&cred.patient)?;
        let matches = p.name.family.eq_ignore_ascii_case(surname) && p.birth_date == dob;
        Some((p.id.clone(), linkage_key == key, matches))
    });
    match found {
        None => exception(
            StatusCode::BAD_REQUEST,
            errors::NO_ONLINE_USER,
            method,
            "No online user found for the given details",
        ),
        Some((_, false, _)) => exception(
            StatusCode::BAD_REQUEST,
            errors::INVALID_LINKAGE,
            method,
            "Invalid linkage details",
        ),
        Some((_, true, false)) => exception(
            StatusCode::BAD_REQUEST,
            errors::NO_DEMOGRAPHIC_MATCH,
            method,
            "No demographic match for the given details",
        ),
        Some((pid, true, true)) => {
            // The same identity on every (re-)link, so the proxy can rebuild sessions.
            let identity = native_sub_id(Supplier::Emis, &pid, "access-identity");
            e.sessions.link_identity(&identity, pid);
            ok(&json!({"StatusCode": "Linked", "AccessIdentityGuid": identity}))
        }
    }
}

fn open_session(e: &Emis, req: &SimRequest) -> SimResponse {
    let eus = match end_user(e, req) {
        Ok(id) => id,
        Err(r) => return r,
    };
    let body = match json_body(req) {
        Ok(b) => b,
        Err(r) => return r,
    };
    let (identity, ods) = match (field(&body, "AccessIdentityGuid"), field(&body, "NationalPracticeCode")) {
        (Ok(i), Ok(o)) => (i, o),
        (Err(r), _) | (_, Err(r)) => return r,
    };
    let method = "SessionsPost";
    let Some(actor) = e.sessions.identity(identity) else {
        return exception(
            StatusCode::BAD_REQUEST,
            errors::NO_ONLINE_USER,
            method,
            "No online user found for the given AccessIdentityGuid",
        );
    };
    if !ods.eq_ignore_ascii_case(&e.config.practice_ods) {
        return exception(
            StatusCode::FORBIDDEN,
            errors::SERVICES_ACCESS_VIOLATION,
            method,
            "Account status NotRegistered",
        );
    }
    let ods = e.config.practice_ods.as_str();
    let found = e.world.read(|r| {
        let p = r.patient(&actor)?;
        p.registration(ods)?;
        let mut links = vec![(p.id.clone(), Association::SelfLink)];
        links.extend(
            r.proxied_by(&p.id)
                .into_iter()
                .filter(|l| r.patient(&l.patient).is_some_and(|c| c.registration(ods).is_some()))
                .map(|l| (l.patient.clone(), Association::Proxy(l.relationship))),
        );
        Some((p.name.clone(), links))
    });
    let Some((name, links)) = found else {
        return exception(
            StatusCode::FORBIDDEN,
            errors::SERVICES_ACCESS_VIOLATION,
            method,
            "Account status NotRegistered",
        );
    };
    let (session, links) = e.sessions.open(&eus, links);
    let links: Vec<Value> = links
        .iter()
        .map(|l| {
            let mut link = json!({
                "UserPatientLinkToken": l.token,
                "AssociationType": l.association.name(),
                "NationalPracticeCode": ods,
            });
            if let Association::Proxy(relationship) = l.association {
                link["RelationshipType"] = json!(format!("{relationship:?}"));
            }
            link
        })
        .collect();
    ok(&json!({
        "Title": name.title,
        "FirstName": name.given.first(),
        "Surname": name.family,
        "SessionId": session,
        "UserPatientLinks": links,
    }))
}

fn practice_settings(e: &Emis, req: &SimRequest, path: &str) -> SimResponse {
    if let Err(r) = end_user(e, req) {
        return r;
    }
    let ods = path.trim_start_matches("practices/").trim_end_matches("/settings");
    let found = e.world.read(|r| {
        r.practice(ods).map(|p| {
            json!({
                "NationalPracticeCode": p.ods,
                "PracticeName": p.name,
                "Services": {
                    "RecordsEnabled": p.services.records,
                    "AppointmentsEnabled": p.services.appointments,
                    "PrescribingEnabled": p.services.prescriptions,
                    "MessagingEnabled": p.services.messaging,
                }
            })
        })
    });
    match found {
        Some(v) => ok(&v),
        None => message(StatusCode::NOT_FOUND, "Practice not found"),
    }
}

fn patient_call(e: &Emis, req: &SimRequest, path: &str, cx: &RequestContext) -> SimResponse {
    let eus = match header(req, "X-API-EndUserSessionId") {
        Some(v) => v,
        None => return errors::session_gone(),
    };
    let Some(sid) = header(req, "X-API-SessionId") else {
        return message(StatusCode::UNAUTHORIZED, "Missing or invalid SessionId");
    };
    let query = Query::of(req);
    let (body, token) = if req.method() == Method::GET {
        match query.need("userPatientLinkToken") {
            Ok(t) => (Value::Null, t.to_string()),
            Err(r) => return r,
        }
    } else {
        let body = match json_body(req) {
            Ok(b) => b,
            Err(r) => return r,
        };
        match field(&body, "UserPatientLinkToken") {
            Ok(t) => {
                let t = t.to_string();
                (body, t)
            }
            Err(r) => return r,
        }
    };
    let link = match e.sessions.patient_for(eus, sid, &token) {
        Ok(l) => l,
        Err(SessionError::EndUserGone) => return errors::session_gone(),
        Err(SessionError::SessionGone) => return message(StatusCode::UNAUTHORIZED, "Missing or invalid SessionId"),
        Err(SessionError::UnknownLink) => return model_state("UserPatientLinkToken", "Invalid UserPatientLinkToken"),
    };
    let call = PatientCall {
        emis: e,
        link,
        ods: &e.config.practice_ods,
        query,
        body,
    };
    let method = req.method().clone();
    match (&method, path) {
        (&Method::GET, "demographics") => demographics(&call),
        (&Method::GET, "record") => record(&call),
        (&Method::GET, p) if p.starts_with("documents/") => document(&call, p.trim_start_matches("documents/")),
        (&Method::GET, "appointmentslots/meta") => booking::slot_meta(&call),
        (&Method::GET, "appointmentslots") => booking::slots(&call),
        (&Method::GET, "appointments") => booking::appointments(&call),
        (&Method::POST, "appointments") => booking::book(&call, cx),
        (&Method::DELETE, "appointments") => booking::cancel(&call, cx),
        (&Method::GET, "courses") => pharmacy::courses(&call),
        (&Method::GET, "prescriptionrequests") => pharmacy::requests(&call),
        (&Method::POST, "prescriptionrequests") => pharmacy::order(&call, cx),
        (&Method::GET, "messages") => messages::list(&call),
        (&Method::POST, "messages") => messages::send(&call, cx),
        _ => message(
            StatusCode::NOT_FOUND,
            "No HTTP resource was found that matches the request URI.",
        ),
    }
}

fn demographics(call: &PatientCall) -> SimResponse {
    let v = call.emis.world.read(|r| {
        r.patient(&call.link.patient)
            .map(|p| render::demographics(r, call.ods, p))
    });
    match v {
        Some(v) => ok(&v),
        None => message(StatusCode::NOT_FOUND, "Patient not found"),
    }
}

fn record(call: &PatientCall) -> SimResponse {
    let item = match call.query.need("itemType") {
        Ok(t) => t,
        Err(r) => return r,
    };
    let Some(item) = ItemType::parse(item) else {
        return model_state("itemType", "The itemType is not valid.");
    };
    if let Err(r) = call.require(Service::Records, "RecordGet") {
        return r;
    }
    match render::section_bytes(call.emis, &call.link.patient, item, Surface::Patient) {
        Some(b) => errors::json_bytes(StatusCode::OK, b),
        None => message(StatusCode::NOT_FOUND, "Patient not found"),
    }
}

fn document(call: &PatientCall, doc: &str) -> SimResponse {
    if let Err(r) = call.require(Service::Records, "DocumentGet") {
        return r;
    }
    document_content(call.emis, &call.link.patient, doc, Surface::Patient)
}

/// A document's bytes with its content type (PFS and Partner).
pub fn document_content(e: &Emis, patient: &im1_sim::record::Nid, doc: &str, surface: Surface) -> SimResponse {
    let wanted = doc.to_ascii_uppercase();
    let found = e.world.read(|r| {
        let p = r.patient(patient)?;
        p.clinical
            .documents
            .iter()
            .find(|d| guid(&d.meta.id) == wanted)
            .filter(|d| surface == Surface::Clinician || !d.meta.confidential)
            .map(|d| (d.mime_type.clone(), d.content.clone()))
    });
    let Some((mime, content)) = found else {
        return message(StatusCode::NOT_FOUND, "Document not found");
    };
    let mut resp = Response::new(Bytes::from(content));
    if let Ok(v) = HeaderValue::from_str(&mime) {
        resp.headers_mut().insert(h::CONTENT_TYPE, v);
    }
    resp
}
