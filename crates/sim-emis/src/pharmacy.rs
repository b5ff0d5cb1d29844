//! Repeat courses and prescription requests (PFS).

use crate::dates::{self, midnight, with_offset};
use crate::errors::{self, exception, missing, ok};
use crate::pfs::PatientCall;
use crate::render::{code_id, guid, quantity_representation};
use http::StatusCode;
use im1_sim::common::{RequestContext, SimResponse};
use im1_sim::record::{CourseKind, CourseStatus, MedicationCourse, Nid, RequestStatus, Service, Supplier};
use serde_json::{json, Value};
use time::Duration;

/// Days between issues used to estimate `NextIssueDate` (the record does not keep one).
const ISSUE_INTERVAL_DAYS: i64 = 28;

fn course_json(x: &MedicationCourse) -> Value {
    let active_repeat = x.kind == CourseKind::Repeat && x.status == CourseStatus::Active;
    let last = x.issues.last().map(|i| i.issued_at);
    json!({
        "MedicationCourseGuid": guid(&x.meta.id),
        "Name": x.code.display,
        "Term": x.code.display,
        "CodeId": code_id(&x.code),
        "Dosage": x.dosage,
        "Quantity": x.quantity,
        "QuantityUnit": x.quantity_unit,
        "QuantityRepresentation": quantity_representation(x),
        "PrescriptionType": format!("{:?}", x.kind),
        "DrugStatus": format!("{:?}", x.status),
        "Constituents": [],
        "CanBeRequested": active_repeat && x.requestable,
        "MostRecentIssueDate": last.map(with_offset),
        "NextIssueDate": last.filter(|_| active_repeat).map(|t| with_offset(t + Duration::days(ISSUE_INTERVAL_DAYS))),
        "ReviewDate": x.review_on.map(midnight),
    })
}

/// `GET courses`: the patient's repeat courses (confidential ones withheld).
pub fn courses(call: &PatientCall) -> SimResponse {
    if let Err(r) = call.require(Service::Prescriptions, "CoursesGet") {
        return r;
    }
    let v = call.emis.world.read(|r| {
        let list: Vec<Value> = r
            .patient(&call.link.patient)
            .map(|p| {
                p.clinical
                    .medications
                    .iter()
                    .filter(|m| m.kind == CourseKind::Repeat && !m.meta.confidential)
                    .map(course_json)
                    .collect()
            })
            .unwrap_or_default();
        json!({ "Courses": list })
    });
    ok(&v)
}

/// `GET prescriptionrequests?filterFromDate&filterToDate`.
pub fn requests(call: &PatientCall) -> SimResponse {
    if let Err(r) = call.require(Service::Prescriptions, "PrescriptionRequestsGet") {
        return r;
    }
    let from = call.query.get("filterFromDate").and_then(dates::parse_instant);
    let to = call.query.get("filterToDate").and_then(dates::parse_instant);
    let v = call.emis.world.read(|r| {
        let p = r.patient(&call.link.patient);
        let list: Vec<Value> = r
            .prescription_requests_of(call.ods, &call.link.patient)
            .filter(|q| from.is_none_or(|f| q.requested_at >= f) && to.is_none_or(|t| q.requested_at <= t))
            .map(|q| {
                let courses: Vec<Value> = q
                    .courses
                    .iter()
                    .map(|c| {
                        let name = p
                            .and_then(|p| p.clinical.medications.iter().find(|m| &m.meta.id == c))
                            .map(|m| m.code.display.clone());
                        json!({"MedicationCourseGuid": guid(c), "Name": name})
                    })
                    .collect();
                json!({
                    "PrescriptionRequestGuid": guid(&q.id),
                    "DateRequested": with_offset(q.requested_at),
                    "Status": format!("{:?}", q.status),
                    "RequestComment": q.comment,
                    "MedicationCourses": courses,
                })
            })
            .collect();
        json!({ "PrescriptionRequests": list })
    });
    ok(&v)
}

/// `POST prescriptionrequests {MedicationCourseGuids, RequestComment}`.
pub fn order(call: &PatientCall, cx: &RequestContext) -> SimResponse {
    let method = "PrescriptionRequestsPost";
    if let Err(r) = call.require(Service::Prescriptions, method) {
        return r;
    }
    let Some(list) = call.body.get("MedicationCourseGuids").and_then(Value::as_array) else {
        return missing("MedicationCourseGuids");
    };
    let mut courses: Vec<Nid> = Vec::new();
    for g in list {
        let nid = g
            .as_str()
            .and_then(|s| call.emis.world.resolve(Supplier::Emis, &s.to_ascii_uppercase()));
        match nid {
            Some(n) => courses.push(n),
            None => {
                return exception(
                    StatusCode::BAD_REQUEST,
                    errors::INVALID_COURSE,
                    method,
                    "Invalid course id",
                )
            }
        }
    }
    let now = call.emis.world.now();
    let pending = call.emis.world.read(|r| {
        r.prescription_requests_of(call.ods, &call.link.patient).any(|q| {
            q.status == RequestStatus::Requested
                && now - q.requested_at < Duration::days(30)
                && q.courses.iter().any(|c| courses.contains(c))
        })
    });
    if pending {
        return exception(
            StatusCode::BAD_REQUEST,
            errors::PENDING_REQUEST,
            method,
            "A request for this medication is already pending (requested in the last 30 days)",
        );
    }
    let comment = crate::request::opt_field(&call.body, "RequestComment");
    match call
        .emis
        .world
        .create_prescription_request(call.ods, &call.link.patient, &courses, comment)
    {
        Ok(q) => {
            cx.record_write();
            errors::json(
                StatusCode::CREATED,
                &json!({
                    "PrescriptionRequestGuid": guid(&q.id),
                    "DateRequested": with_offset(q.requested_at),
                    "Status": "Requested",
                }),
            )
        }
        Err(e) => errors::write_error(&e, method),
    }
}
