//! Practice-level Partner calls **(invented)**: the practice's users in role and the organisation itself. The
//! Partner API's payloads are not public; the confirmed PFS record names users only inside a record
//! (`MedicalRecord.Users`), and no organisation call is known;
//! these give the proxy's Practitioner, PractitionerRole and Organization mappings the same data without a
//! patient. Reached after the bearer and CDB checks (see `partner::handle`).

use crate::errors::{message, ok};
use crate::render::{self, guid};
use crate::routes::Emis;
use http::{Method, StatusCode};
use im1_sim::common::{SimRequest, SimResponse};
use serde_json::{json, Value};

/// Answers `GET users`, `GET users/{UserInRoleGuid}` and `GET organisation`; `None` for any other path.
pub fn handle(e: &Emis, req: &SimRequest, path: &str) -> Option<SimResponse> {
    if req.method() != Method::GET {
        return None;
    }
    let ods = e.config.practice_ods.as_str();
    match path.split_once('/') {
        None if path == "users" => Some(ok(&json!({ "Users": e.world.read(|r| render::users(r, ods)) }))),
        Some(("users", wanted)) if !wanted.is_empty() && !wanted.contains('/') => {
            let wanted = wanted.to_ascii_uppercase();
            let users = e.world.read(|r| render::users(r, ods));
            let found = users.as_array().and_then(|list| {
                list.iter()
                    .find(|u| u["UserInRoleGuid"].as_str() == Some(wanted.as_str()))
            });
            Some(found.map_or_else(|| message(StatusCode::NOT_FOUND, "User not found"), ok))
        }
        None if path == "organisation" => Some(organisation(e, ods)),
        _ => None,
    }
}

fn organisation(e: &Emis, ods: &str) -> SimResponse {
    let v: Option<Value> = e.world.read(|r| {
        r.practice(ods).map(|p| {
            json!({
                "OrganisationGuid": guid(&p.id),
                "CDB": e.config.cdb,
                "OrganisationName": p.name,
                "ODSCode": p.ods,
                "Address": render::address(&p.address),
                "TelephoneNumber": p.phone,
            })
        })
    });
    v.map_or_else(|| message(StatusCode::NOT_FOUND, "Organisation not found"), |v| ok(&v))
}
