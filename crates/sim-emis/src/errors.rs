//! EMIS error bodies: `{Message}`, validation `{Message, ModelState}` and business-rule `{Exceptions, ..}`,
//! plus the mapping of the world's write errors onto them.

use bytes::Bytes;
use http::{header, HeaderValue, Response, StatusCode};
use im1_sim::common::{InjectedReply, SimResponse};
use im1_sim::record::{Service, WriteError};
use serde_json::{json, Value};

/// Slot in the past (confirmed).
pub const SLOT_IN_PAST: i32 = -1152;
/// Slot already booked (simulator convention, HTTP 409).
pub const SLOT_ALREADY_BOOKED: i32 = -1155;
/// The online user's booking limit is reached (confirmed).
pub const BOOKING_LIMIT: i32 = -1156;
/// Invented: the slot does not exist.
pub const SLOT_NOT_FOUND: i32 = -1150;
/// Invented: a telephone appointment needs a number.
pub const TELEPHONE_REQUIRED: i32 = -1157;
/// Invented: appointment not found.
pub const APPOINTMENT_NOT_FOUND: i32 = -1160;
/// Invented: past (or already cancelled) appointments cannot be cancelled.
pub const APPOINTMENT_IN_PAST: i32 = -1161;
/// Invented: invalid medication course id.
pub const INVALID_COURSE: i32 = -1170;
/// Invented: a request for the course is pending (last 30 days).
pub const PENDING_REQUEST: i32 = -1171;
/// Invented: linkage details invalid.
pub const INVALID_LINKAGE: i32 = -1180;
/// Invented: no demographic match for the linkage.
pub const NO_DEMOGRAPHIC_MATCH: i32 = -1181;
/// Invented: no online user for the details.
pub const NO_ONLINE_USER: i32 = -1182;
/// Invented: service not enabled (403, "Services Access violation").
pub const SERVICES_ACCESS_VIOLATION: i32 = -1040;

/// A JSON reply.
pub fn json(status: StatusCode, body: &Value) -> SimResponse {
    json_bytes(status, Bytes::from(serde_json::to_vec(body).unwrap_or_default()))
}

/// A reply of already serialised JSON.
pub fn json_bytes(status: StatusCode, bytes: Bytes) -> SimResponse {
    let mut r = Response::new(bytes);
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json; charset=utf-8"),
    );
    r
}

/// 200 with a JSON body.
pub fn ok(body: &Value) -> SimResponse {
    json(StatusCode::OK, body)
}

/// `{Message}` with a status.
pub fn message(status: StatusCode, text: &str) -> SimResponse {
    json(status, &json!({ "Message": text }))
}

/// 400 `{Message, ModelState: {field: [text]}}`.
pub fn model_state(field: &str, text: &str) -> SimResponse {
    json(
        StatusCode::BAD_REQUEST,
        &json!({"Message": "The request is invalid.", "ModelState": { field: [text] }}),
    )
}

/// A missing required parameter or field.
pub fn missing(field: &str) -> SimResponse {
    model_state(field, &format!("The {field} field is required."))
}

/// `{Exceptions: [...], InternalResponseCode, InternalResponseMethod}` with a status.
pub fn exception(status: StatusCode, code: i32, method: &str, text: &str) -> SimResponse {
    json(
        status,
        &json!({
            "Exceptions": [{
                "Message": text,
                "ExceptionId": null,
                "InnerExceptionId": null,
                "IsRootException": true,
                "CallStack": null
            }],
            "InternalResponseCode": code,
            "InternalResponseMethod": method
        }),
    )
}

/// 403 for a service switched off at the practice or for the patient.
pub fn service_off(service: Service, method: &str) -> SimResponse {
    exception(
        StatusCode::FORBIDDEN,
        SERVICES_ACCESS_VIOLATION,
        method,
        &format!("Services Access violation: {service:?} is not enabled for this user"),
    )
}

/// 401 for a PFS session that is gone.
pub fn session_gone() -> SimResponse {
    message(StatusCode::UNAUTHORIZED, "Missing or invalid EndUserSessionId")
}

/// A world write error in the dialect's shape.
pub fn write_error(e: &WriteError, method: &str) -> SimResponse {
    let bad = StatusCode::BAD_REQUEST;
    match e {
        WriteError::PatientNotFound => message(StatusCode::NOT_FOUND, "Patient not found"),
        WriteError::PracticeNotFound | WriteError::NotRegistered | WriteError::ProxyLinkNotFound => exception(
            StatusCode::FORBIDDEN,
            SERVICES_ACCESS_VIOLATION,
            method,
            "Account status NotRegistered",
        ),
        WriteError::ServiceDisabled(s) => service_off(*s, method),
        WriteError::SlotNotFound => exception(bad, SLOT_NOT_FOUND, method, "Slot not found"),
        WriteError::SlotTaken => exception(StatusCode::CONFLICT, SLOT_ALREADY_BOOKED, method, "Slot already booked"),
        WriteError::SlotInPast => exception(bad, SLOT_IN_PAST, method, "Cannot book an appointment in the past"),
        WriteError::AppointmentNotFound => exception(bad, APPOINTMENT_NOT_FOUND, method, "Appointment not found"),
        WriteError::AlreadyCancelled | WriteError::AppointmentInPast | WriteError::AppointmentSeen => exception(
            bad,
            APPOINTMENT_IN_PAST,
            method,
            "Past appointments cannot be cancelled",
        ),
        WriteError::CourseNotFound(_) | WriteError::CourseNotRequestable(_) => {
            exception(bad, INVALID_COURSE, method, "Invalid course id")
        }
        WriteError::NothingRequested => missing("MedicationCourseGuids"),
        WriteError::UnknownCode(_) => model_state("CodeId", "Unknown CodeId"),
        WriteError::UnknownPractitioner(_) => model_state("AuthorisingUserInRoleGuid", "Unknown user in role"),
        WriteError::InvalidEntry { section, entry, reason } => {
            model_state(&format!("Sections[{section}].Items[{entry}]"), reason)
        }
        WriteError::Invalid(text) => model_state("CodeId", text),
    }
}

/// Injected faults in EMIS shapes: 503 outage with an empty body, 500 `{Message}`, 429 with `Retry-After`,
/// 401 session gone.
pub fn fault(reply: InjectedReply) -> SimResponse {
    match reply {
        InjectedReply::ServerError(503) => {
            let mut r = Response::new(Bytes::new());
            *r.status_mut() = StatusCode::SERVICE_UNAVAILABLE;
            r
        }
        InjectedReply::ServerError(_) => message(StatusCode::INTERNAL_SERVER_ERROR, "An error has occurred."),
        InjectedReply::TooManyRequests { retry_after_secs } => too_many(retry_after_secs),
        InjectedReply::ExpiredSession => session_gone(),
    }
}

/// 429 `{Message: "Rate limit exceeded"}` with `Retry-After`.
pub fn too_many(retry_after_secs: u64) -> SimResponse {
    let mut r = message(StatusCode::TOO_MANY_REQUESTS, "Rate limit exceeded");
    r.headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from(retry_after_secs));
    r
}
