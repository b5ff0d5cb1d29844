//! The clinician-facing (Transactional) API: patient search and details, journal, medication, staff, the
//! changes feed, and the clinical writes.

use super::{created, ok, return_file, Call, Medicus, Reply};
use crate::auth::Claims;
use crate::errors::ApiError;
use crate::journal;
use crate::journal::Surface;
use crate::writes::{self, Author};
use crate::{changes, demographics, prescriptions};
use http::Method;
use im1_sim::common::RequestContext;
use im1_sim::record::{Nid, Supplier, WriteError};
use serde_json::{json, Value};

impl Medicus {
    pub(super) fn transactional(&self, call: &Call<'_>, cx: &RequestContext) -> Reply {
        if let Some(reply) = self.transactional_appointments(call) {
            return reply;
        }
        if let Some(reply) = self.transactional_admin(call) {
            return reply;
        }
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
            (&Method::GET, ["code-table"]) => ok(code_table()),
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
            ok(json!({
                "status": "ok",
                "timestamp": now,
                "application": {"identifier": claims.iss, "name": self.config.app_name},
                "requestingOrganisation": self.requesting_organisation(r),
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
            .ok_or_else(|| writes::write_error(WriteError::UnknownPractitioner(Nid(given))))
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
                            Err(WriteError::InvalidEntry { section, entry, reason }) => {
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

/// The simulator's code table (invented `GET v1/code-table`): every SNOMED CT and dm+d code it uses, with the
/// one term the record gives it, so mappings can be checked against it.
fn code_table() -> Value {
    use im1_sim::record::vocab::{CodeSystem, Vocabulary};
    let codes: Vec<Value> = Vocabulary::get()
        .entries()
        .iter()
        .map(|e| {
            json!({
                "system": match e.system {
                    CodeSystem::Snomed => "snomed-ct",
                    CodeSystem::Dmd => "dm+d",
                },
                "code": e.code,
                "display": e.display,
                "category": e.category,
                "unit": e.ucum,
                "referenceRange": e.reference_range.map(|r| json!({"low": r.low, "high": r.high})),
            })
        })
        .collect();
    json!({ "codes": codes })
}
