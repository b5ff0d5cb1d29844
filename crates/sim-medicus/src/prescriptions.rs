//! Medication courses as `GET prescriptions`, repeat prescription requests, and ordering.

use crate::errors::ApiError;
use crate::journal::{course_kind, prescription_fields};
use crate::style::{datetime, nid};
use im1_sim::record::{Nid, Patient, Record, RequestStatus, WriteError};
use serde_json::{json, Value};

/// `GET .../prescriptions`: the patient's courses; confidential ones only when `confidential` (clinicians).
pub fn list(r: &Record, ods: &str, p: &Patient, confidential: bool) -> Value {
    let gp = p
        .registration(ods)
        .and_then(|g| r.practitioner(&g.usual_gp).map(|x| x.id.clone()));
    let list: Vec<Value> = p
        .clinical
        .medications
        .iter()
        .filter(|m| confidential || !m.meta.confidential)
        .map(|m| {
            let mut v = json!({"id": nid(&m.meta.id), "type": course_kind(m.kind)});
            v["confidential"] = json!(m.meta.confidential);
            for (k, x) in prescription_fields(m) {
                v[k] = x;
            }
            v["authorisedStartDate"] = v["startDate"].clone();
            v["authorisedByOrganisation"] = json!({ "odsCode": ods });
            let by = r
                .practitioner(&m.meta.recorded_by)
                .or_else(|| gp.as_ref().and_then(|g| r.practitioner(g)));
            v["authorisedByPractitioner"] = by
                .map(|x| json!({"id": nid(&x.id), "name": x.name.display()}))
                .unwrap_or(Value::Null);
            v
        })
        .collect();
    json!({ "prescriptions": list })
}

fn status(s: RequestStatus) -> &'static str {
    match s {
        RequestStatus::Requested => "pending",
        RequestStatus::Issued => "processed",
        RequestStatus::Rejected => "rejected",
        RequestStatus::Cancelled => "cancelled",
    }
}

/// `GET .../prescription-requests`.
pub fn requests(r: &Record, ods: &str, p: &Patient) -> Value {
    let list: Vec<Value> = r
        .prescription_requests_of(ods, &p.id)
        .map(|q| {
            let items: Vec<Value> = q
                .courses
                .iter()
                .map(|c| {
                    let product = p
                        .clinical
                        .medications
                        .iter()
                        .find(|m| &m.meta.id == c)
                        .map(|m| crate::style::concept(&m.code));
                    json!({"type": "prescription-reorder", "basedOnPrescriptionId": nid(c), "product": product})
                })
                .collect();
            json!({
                "id": nid(&q.id),
                "status": status(q.status),
                "messageToPatient": null,
                "messageFromPatient": q.comment,
                "requestedDateTime": datetime(q.requested_at),
                "requestedItems": items,
                "newPrescriptions": [],
            })
        })
        .collect();
    json!({ "prescriptionRequests": list })
}

/// The courses a `create-prescription-request` body asks for, and the patient's message.
pub fn parse_request(p: &Patient, body: &Value) -> Result<(Vec<Nid>, Option<String>), ApiError> {
    let items = body
        .get("requestItems")
        .and_then(Value::as_array)
        .filter(|a| !a.is_empty())
        .ok_or_else(|| ApiError::bad_request("requestItems must be a non-empty array.").at("/requestItems"))?;
    let mut courses: Vec<Nid> = Vec::new();
    let mut messages: Vec<String> = Vec::new();
    for (i, item) in items.iter().enumerate() {
        let pointer = format!("/requestItems/{i}");
        let course = match item.get("type").and_then(Value::as_str) {
            Some("prescription-reorder") => {
                let id = item.get("basedOnPrescriptionId").and_then(Value::as_str).unwrap_or("");
                p.clinical.medications.iter().find(|m| nid(&m.meta.id) == id)
            }
            Some("prescription-issue") => {
                let id = item.get("prescriptionIssueId").and_then(Value::as_str).unwrap_or("");
                p.clinical
                    .medications
                    .iter()
                    .find(|m| m.issues.iter().any(|x| nid(&x.id) == id))
            }
            _ => {
                return Err(
                    ApiError::bad_request("type must be prescription-issue or prescription-reorder.").at(pointer),
                )
            }
        };
        let course = course.filter(|m| !m.meta.confidential).ok_or_else(|| {
            ApiError::new(
                404,
                "PRESCRIPTION_NOT_FOUND",
                "Prescription not found",
                "The patient has no such prescription.",
            )
            .at(pointer.clone())
        })?;
        if !courses.contains(&course.meta.id) {
            courses.push(course.meta.id.clone());
        }
        if let Some(m) = item.get("messageFromPatient").and_then(Value::as_str) {
            messages.push(m.to_string());
        }
    }
    let comment = (!messages.is_empty()).then(|| messages.join("\n"));
    Ok((courses, comment))
}

/// Map the world's refusals of a request.
pub fn write_error(e: WriteError) -> ApiError {
    match e {
        WriteError::CourseNotFound(_) => ApiError::new(
            404,
            "PRESCRIPTION_NOT_FOUND",
            "Prescription not found",
            "The patient has no such prescription.",
        ),
        WriteError::CourseNotRequestable(_) => ApiError::new(
            422,
            "PRESCRIPTION_NOT_REQUESTABLE",
            "Prescription cannot be requested",
            "Only current repeat prescriptions can be ordered online.",
        ),
        WriteError::ServiceDisabled(_) => ApiError::service_disabled("Prescription ordering"),
        other => crate::writes::write_error(other),
    }
}

/// 404 for a prescription request the patient does not have.
pub fn request_not_found() -> ApiError {
    ApiError::new(
        404,
        "PRESCRIPTION_REQUEST_NOT_FOUND",
        "Prescription request not found",
        "The patient has no prescription request with this id.",
    )
}

/// Map the world's refusals of a cancellation: only pending requests can be cancelled.
pub fn cancel_error(e: WriteError) -> ApiError {
    match e {
        WriteError::Invalid(m) if m.contains("not found") => request_not_found(),
        WriteError::Invalid(_) => ApiError::new(
            422,
            "REQUEST_NOT_CANCELLABLE",
            "Request not cancellable",
            "Only pending prescription requests can be cancelled.",
        ),
        other => write_error(other),
    }
}
