//! The patient-facing API: linkage exchange, linked patients, and the per-patient calls gated by the
//! linkage and the service switches.

use super::{created, ok, return_file, Call, Medicus, Reply};
use crate::errors::ApiError;
use crate::journal::Surface;
use crate::{appointments, demographics, messages, prescriptions, writes};
use http::Method;
use im1_sim::common::RequestContext;
use im1_sim::record::{Direction, LinkageSecret, NewBooking, NewMessage, Nid, Record, Relationship, Service, Supplier};
use serde_json::{json, Value};

impl Medicus {
    /// Patients the token's NHS login user may act for: the linked patient and those they are proxy for,
    /// with the proxy's relationship to the patient.
    fn associated(&self, r: &Record, sub: &str) -> Vec<(Nid, &'static str, Option<&'static str>)> {
        let linkages = self.linkages.lock().unwrap_or_else(|e| e.into_inner());
        let Some(me) = linkages.by_sub.get(sub) else {
            return Vec::new();
        };
        let mut out = vec![(me.clone(), "self", None)];
        out.extend(r.proxied_by(me).into_iter().map(|l| {
            let relationship = match l.relationship {
                Relationship::Mother => "mother",
                Relationship::Father => "father",
                Relationship::Guardian => "guardian",
            };
            (l.patient.clone(), "proxy", Some(relationship))
        }));
        out
    }

    pub(super) fn pfs(&self, call: &Call<'_>, cx: &RequestContext) -> Reply {
        let sub = call.claims.user_identifier_value.clone().unwrap_or_default();
        match (call.method, call.rest.as_slice()) {
            (&Method::POST, ["user", "exchange-linkage-token"]) => self.exchange(&sub, &call.json()?),
            (&Method::GET, ["user", "list-linked-patients"]) => self.world.read(|r| {
                let list: Vec<Value> = self
                    .associated(r, &sub)
                    .into_iter()
                    .filter_map(|(id, kind, relationship)| {
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
                            "relationship": relationship,
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
                    .read(|r| self.associated(r, &sub).iter().any(|(id, ..)| id == &patient));
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
            (&Method::POST, ["cancel-prescription-request"]) => {
                rx()?;
                let body = call.json()?;
                let id = body.get("prescriptionRequestId").and_then(Value::as_str).unwrap_or("");
                let request = self
                    .world
                    .resolve(Supplier::Medicus, id)
                    .filter(|q| {
                        self.world
                            .read(|r| r.prescription_requests_of(ods, patient).any(|x| &x.id == q))
                    })
                    .ok_or_else(prescriptions::request_not_found)?;
                self.world
                    .cancel_prescription_request(ods, patient, &request)
                    .map_err(prescriptions::cancel_error)?;
                cx.record_write();
                ok(json!({ "success": true }))
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
}

fn no_linkage() -> ApiError {
    ApiError::new(
        403,
        "NO_PATIENT_APP_LINKAGE",
        "No patient app linkage",
        "This user has no Patient App Linkage to this patient.",
    )
}
