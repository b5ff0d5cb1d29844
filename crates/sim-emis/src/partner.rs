//! The Partner/Transaction surface (clinician): client-credentials token, bearer and CDB checks, patient
//! lookup, record sections (confidential items included), document content, clinician writes and the
//! changes feed.

use crate::dates;
use crate::errors::{self, message, missing, model_state, ok};
use crate::render::{self, guid, ItemType, Surface};
use crate::request::{form, header, Query};
use crate::routes::Emis;
use crate::{feed, pfs, writes};
use http::{Method, StatusCode};
use im1_sim::common::{RequestContext, SimRequest, SimResponse};
use im1_sim::record::{Nid, Supplier};
use serde_json::json;

pub fn handle(e: &Emis, req: &SimRequest, path: &str, cx: &RequestContext) -> SimResponse {
    if path == "token" && req.method() == Method::POST {
        return token(e, req);
    }
    if let Err(r) = authorise(e, req) {
        return r;
    }
    if let Some(r) = crate::partner_admin::handle(e, req, path) {
        return r;
    }
    if let Some(reply) = crate::partner_appointments::handle(e, req, path) {
        return reply;
    }
    let method = req.method().clone();
    if path == "GetChangedPatients" && method == Method::POST {
        return feed::changed_patients(e, req);
    }
    if path == "patients" && method == Method::GET {
        return lookup(e, req);
    }
    let Some(rest) = path.strip_prefix("patients/") else {
        return not_found();
    };
    let mut parts = rest.splitn(2, '/');
    let patient_guid = parts.next().unwrap_or("");
    let tail = parts.next().unwrap_or("");
    let Some(patient) = resolve_patient(e, patient_guid) else {
        return message(StatusCode::NOT_FOUND, "Patient not found");
    };
    match (&method, tail) {
        (&Method::GET, "") => {
            let ods = &e.config.practice_ods;
            let v = e
                .world
                .read(|r| r.patient(&patient).map(|p| render::demographics(r, ods, p)));
            v.map_or_else(|| message(StatusCode::NOT_FOUND, "Patient not found"), |v| ok(&v))
        }
        (&Method::GET, "record") => record(e, req, &patient),
        (&Method::GET, t) if t.starts_with("documents/") => {
            pfs::document_content(e, &patient, t.trim_start_matches("documents/"), Surface::Clinician)
        }
        (&Method::POST, kind) => writes::handle(e, req, &patient, kind, cx),
        _ => not_found(),
    }
}

fn not_found() -> SimResponse {
    message(
        StatusCode::NOT_FOUND,
        "No HTTP resource was found that matches the request URI.",
    )
}

fn token(e: &Emis, req: &SimRequest) -> SimResponse {
    let fields = form(req);
    let get = |name: &str| fields.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str());
    if get("grant_type") != Some("client_credentials") {
        return errors::json(StatusCode::BAD_REQUEST, &json!({"error": "unsupported_grant_type"}));
    }
    if get("client_id") != Some(e.config.client_id.as_str())
        || get("client_secret") != Some(e.config.client_secret.as_str())
    {
        return errors::json(StatusCode::UNAUTHORIZED, &json!({"error": "invalid_client"}));
    }
    ok(&json!({
        "access_token": e.sessions.new_token(),
        "token_type": "Bearer",
        "expires_in": e.sessions.token_lifetime_secs(),
    }))
}

/// Check the bearer token and the organisation header.
pub fn authorise(e: &Emis, req: &SimRequest) -> Result<(), SimResponse> {
    let bearer = header(req, "Authorization")
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim);
    if !bearer.is_some_and(|t| e.sessions.token_valid(t)) {
        return Err(message(
            StatusCode::UNAUTHORIZED,
            "Authorization has been denied for this request.",
        ));
    }
    match header(req, "X-EMIS-OrganisationCdb") {
        None => Err(missing("X-EMIS-OrganisationCdb")),
        Some(cdb) if cdb == e.config.cdb => Ok(()),
        Some(_) => Err(message(
            StatusCode::FORBIDDEN,
            "Organisation not authorised for this client",
        )),
    }
}

fn resolve_patient(e: &Emis, patient_guid: &str) -> Option<Nid> {
    let nid = e.world.resolve(Supplier::Emis, &patient_guid.to_ascii_uppercase())?;
    e.world
        .read(|r| {
            r.patient(&nid)
                .map(|p| p.registration(&e.config.practice_ods).is_some())
        })
        .filter(|registered| *registered)
        .map(|_| nid)
}

/// `GET patients?nhsNumber=` or `?surname=&dateOfBirth=YYYY-MM-DD` (invented, as the whole Partner surface):
/// the practice's registered patients so found.
fn lookup(e: &Emis, req: &SimRequest) -> SimResponse {
    let q = Query::of(req);
    let nonempty = |name: &str| q.get(name).map(str::trim).filter(|v| !v.is_empty());
    let nhs = nonempty("nhsNumber");
    if nhs.is_some_and(|n| n.len() != 10 || !n.bytes().all(|b| b.is_ascii_digit())) {
        return model_state("nhsNumber", "The nhsNumber must be 10 digits.");
    }
    let surname = nonempty("surname");
    let birth = match nonempty("dateOfBirth").map(|d| dates::parse_day(d).filter(|_| d.len() == 10)) {
        Some(None) => return model_state("dateOfBirth", "The dateOfBirth must be a date (yyyy-MM-dd)."),
        other => other.flatten(),
    };
    if nhs.is_none() && (surname.is_none() || birth.is_none()) {
        return model_state("nhsNumber", "An nhsNumber, or a surname and dateOfBirth, is required.");
    }
    let ods = &e.config.practice_ods;
    let v = e.world.read(|r| {
        let list: Vec<_> = r
            .patients
            .iter()
            .filter(|p| p.registration(ods).is_some())
            .filter(|p| nhs.is_none_or(|n| p.nhs_number == n))
            .filter(|p| surname.is_none_or(|s| p.surname_starts_with(s)))
            .filter(|p| birth.is_none_or(|d| p.birth_date == d))
            .map(|p| render::demographics(r, ods, p))
            .collect();
        json!({ "Patients": list })
    });
    ok(&v)
}

fn record(e: &Emis, req: &SimRequest, patient: &Nid) -> SimResponse {
    let q = Query::of(req);
    let item = match q.need("itemType") {
        Ok(t) => t,
        Err(r) => return r,
    };
    let Some(item) = ItemType::parse(item) else {
        return model_state("itemType", "The itemType is not valid.");
    };
    match render::section_bytes(e, patient, item, Surface::Clinician) {
        Some(b) => errors::json_bytes(StatusCode::OK, b),
        None => message(StatusCode::NOT_FOUND, "Patient not found"),
    }
}

/// The PatientGuid of a neutral id (for the feed).
pub fn patient_guid(nid: &Nid) -> String {
    guid(nid)
}
