//! The Client Integration (transaction) surface: framed XML envelopes over TCP. Order per frame: parse,
//! `simFault` (or the configured rates), API key and device, rate limit, `requestUid` replay, function.

use crate::appointments::{self, Booking};
use crate::changes::changed_patients;
use crate::errors::TppError;
use crate::prescriptions;
use crate::record_view::{binary_page, parse_sections};
use crate::render::{tid, tsub, Surface, View};
use crate::writes;
use crate::xml::{parse, El, Node};
use crate::SystmOneConfig;
use im1_sim::common::faults::{corrupt, FaultInjector};
use im1_sim::common::framing::{FrameHandler, FrameReply};
use im1_sim::common::idempotency::{fingerprint, Begin, ReplayStore};
use im1_sim::common::throttle::RateLimiter;
use im1_sim::common::{Fault, RequestContext};
use im1_sim::record::{Nid, Patient, Supplier, World};
use std::sync::Arc;
use std::time::Duration;

/// The transaction handler.
pub struct Transaction {
    world: Arc<World>,
    config: Arc<SystmOneConfig>,
    limiter: RateLimiter,
    replay: ReplayStore<String>,
    faults: FaultInjector,
}

fn envelope(root: &Node, outcome: Result<El, TppError>) -> String {
    let uid = root.attr("requestUid").unwrap_or_default();
    let el = El::new("ClientIntegrationResponse")
        .attr("requestUid", uid)
        .attr("responseUid", tsub(&Nid(uid.to_string()), "response"))
        .attr("function", root.attr("function").unwrap_or_default());
    match outcome {
        Ok(result) => el.attr("outcome", "Success").child(result),
        Err(e) => el.attr("outcome", "Failure").child(e.transaction_element()),
    }
    .to_xml()
}

fn busy(retry: u64) -> TppError {
    TppError {
        technical: format!("load shedding, retry after {retry} s"),
        ..TppError::busy()
    }
}

impl Transaction {
    pub fn new(world: Arc<World>, config: Arc<SystmOneConfig>) -> Transaction {
        Transaction {
            limiter: RateLimiter::new(config.rate_per_second, config.throttle)
                .with_retry_after(crate::pfs::RETRY_AFTER_SECS),
            replay: ReplayStore::new(Duration::from_secs(24 * 3600)),
            faults: FaultInjector::new(config.faults),
            world,
            config,
        }
    }

    fn ods(&self) -> &str {
        &self.config.unit_id
    }

    fn view<T>(&self, f: impl FnOnce(&View<'_>) -> T) -> T {
        self.world.read(|r| {
            f(&View {
                record: r,
                surface: Surface::Clinician,
            })
        })
    }

    fn patient_id(&self, p: &Node) -> Result<Nid, TppError> {
        let id = p
            .attr_nonempty("patientId")
            .ok_or_else(|| TppError::invalid("patientId missing"))?;
        self.world
            .resolve(Supplier::SystmOne, id)
            .filter(|n| {
                self.world
                    .read(|r| r.patient(n).is_some_and(|p| p.registration(self.ods()).is_some()))
            })
            .ok_or_else(TppError::patient_not_found)
    }

    fn with_patient<T>(
        &self,
        p: &Node,
        f: impl FnOnce(&View<'_>, &Patient) -> Result<T, TppError>,
    ) -> Result<T, TppError> {
        let pid = self.patient_id(p)?;
        self.view(|v| {
            let patient = v.record.patient(&pid).ok_or_else(TppError::patient_not_found)?;
            f(v, patient)
        })
    }

    fn run(&self, root: &Node, cx: &RequestContext) -> Result<El, TppError> {
        let p = root.child("Parameters").cloned().unwrap_or_default();
        let p = &p;
        let ods = self.ods();
        let result = El::new("Result");
        match root.attr("function").unwrap_or_default() {
            "PatientSearch" => self.view(|v| {
                let nhs = p.attr_nonempty("nhsNumber");
                let surname = p.attr_nonempty("surname");
                let dob = match p.attr_nonempty("dateOfBirth").map(crate::dates::parse_instant) {
                    Some(None) => return Err(TppError::invalid("dateOfBirth is not a date-time")),
                    given => given.flatten(),
                };
                if nhs.is_none() && (surname.is_none() || dob.is_none()) {
                    return Err(TppError::invalid("nhsNumber, or surname and dateOfBirth, required"));
                }
                let found = v.record.patients.iter().filter(|x| {
                    x.registration(ods).is_some()
                        && nhs.is_none_or(|n| x.nhs_number == n)
                        && surname.is_none_or(|s| x.surname_starts_with(s))
                        && dob.is_none_or(|d| x.birth_date == d.date())
                });
                Ok(result.children(found.map(|x| v.person(x, ods))))
            }),
            "GetPatientDemographics" => self.with_patient(p, |v, x| Ok(result.child(v.person(x, ods)))),
            "GetPatientRecord" => self.with_patient(p, |v, x| {
                let sections = parse_sections(p.attr("sections"))?;
                v.record_page(x, &sections, p.attr("resumeFrom"), result)
            }),
            "GetPatientOverview" => self.with_patient(p, |v, x| Ok(v.overview(x, result))),
            "GetBinaryData" => self.with_patient(p, |v, x| {
                let d = v
                    .document_by_binary_id(x, p.attr("binaryDataId").unwrap_or_default())
                    .ok_or_else(|| TppError::item_not_found("binary data"))?;
                binary_page(d, p.attr("page").unwrap_or("1").parse().unwrap_or(0), result)
            }),
            "GetChangedPatients" => {
                if p.attr("unitId").is_some_and(|u| u != ods) {
                    return Err(TppError::no_access("unknown unitId"));
                }
                changed_patients(&self.world, ods, p.attr("since"), p.attr("maxResults"), result)
            }
            "GetStaff" => Ok(self.view(|v| {
                result.children(
                    v.record
                        .practitioners
                        .iter()
                        .filter(|s| s.roles.iter().any(|r| r.practice == ods))
                        .map(|s| v.staff(s)),
                )
            })),
            // Invented: the unit's own details, as PFS `Authenticate` gives them in `SiteDetails`.
            "GetSiteDetails" => match p.attr("unitId") {
                Some(u) if u != ods => Err(TppError::no_access("unknown unitId")),
                _ => Ok(self.view(|v| result.child(v.site(ods)))),
            },
            "ListSlots" => self.view(|v| {
                appointments::list_slots(&self.world, v, ods, p.attr("startDate"), p.attr("numberOfDays"), result)
            }),
            "BookAppointment" => {
                let pid = self.patient_id(p)?;
                let b = Booking::from_node(p);
                let a = appointments::book(&self.world, ods, &pid, &b)?;
                cx.record_write();
                Ok(self.view(|v| appointments::booked(result, &a, v)))
            }
            "CancelAppointment" => {
                let pid = self.patient_id(p)?;
                appointments::cancel(&self.world, ods, &pid, p.attr("apptId"), p.attr_nonempty("reason"))?;
                cx.record_write();
                Ok(result)
            }
            "GetSessions" | "GetSlots" => {
                let q = appointments::BookQuery::parse(
                    &self.world,
                    p.attr("startDate"),
                    p.attr("endDate"),
                    p.attr("sessionId"),
                )?;
                Ok(self.view(|v| match root.attr("function") {
                    Some("GetSessions") => appointments::sessions(v, ods, &q, result),
                    _ => appointments::slots(&self.world, v, ods, &q, result),
                }))
            }
            "GetAppointments" => self.with_patient(p, |v, x| Ok(appointments::appointments(v, ods, &x.id, result))),
            "GetPrescriptionRequests" => self.with_patient(p, |v, x| Ok(prescriptions::requests(v, ods, x, result))),
            "GetMessages" => self.with_patient(p, |v, x| Ok(prescriptions::messages(v, ods, &x.id, result))),
            "FileObservation" => {
                let pid = self.patient_id(p)?;
                let o = writes::observation(&self.world, p)?;
                let id = self.world.file_observation(&pid, o)?;
                cx.record_write();
                Ok(result.attr("itemId", tid(&id)))
            }
            "FileAllergy" => {
                let pid = self.patient_id(p)?;
                let a = writes::allergy(&self.world, p)?;
                let id = self.world.file_allergy(&pid, a)?;
                cx.record_write();
                Ok(result.attr("itemId", tid(&id)))
            }
            "FileProblem" => {
                let pid = self.patient_id(p)?;
                let x = writes::problem(&self.world, p)?;
                let id = self.world.file_problem(&pid, x)?;
                cx.record_write();
                Ok(result.attr("itemId", tid(&id)))
            }
            "FileConsultation" => {
                let pid = self.patient_id(p)?;
                let filed = writes::consultation(&self.world, &pid, p)?;
                cx.record_write();
                let (event, items) = writes::filed_ids(&filed);
                Ok(result.attr("eventId", event).attr("itemIds", items))
            }
            "FileDocument" => {
                let pid = self.patient_id(p)?;
                let d = writes::document(&self.world, p)?;
                let id = self.world.file_document(&pid, d)?;
                cx.record_write();
                Ok(result
                    .attr("itemId", tid(&id))
                    .attr("binaryDataId", tsub(&id, "binary")))
            }
            other => Err(TppError::invalid(format!("unknown function {other:?}"))),
        }
    }
}

impl FrameHandler for Transaction {
    async fn handle(&self, frame: String, cx: RequestContext) -> FrameReply {
        let root = match parse(&frame) {
            Ok(r) if r.name == "ClientIntegrationRequest" => r,
            Ok(_) => {
                let e = TppError::invalid("root must be ClientIntegrationRequest");
                return FrameReply::Reply(envelope(&Node::default(), Err(e)));
            }
            Err(e) => return FrameReply::Reply(envelope(&Node::default(), Err(TppError::invalid(e)))),
        };
        let plan = match self.faults.plan(root.attr("simFault")) {
            Ok(plan) => plan,
            Err(e) => return FrameReply::Reply(envelope(&root, Err(TppError::invalid(e)))),
        };
        if let Some(l) = plan.latency {
            cx.stats().record_fault("latency");
            tokio::time::sleep(l).await;
        }
        if let Some(f) = plan.fault {
            cx.stats().record_fault(f.name());
        }
        let injected = match plan.fault {
            Some(Fault::Drop) => return FrameReply::Close,
            Some(Fault::ServerError(code)) => Some(TppError::new(
                u32::from(code),
                "An internal error occurred",
                "internal error",
            )),
            Some(Fault::TooManyRequests) => Some(busy(crate::pfs::RETRY_AFTER_SECS)),
            Some(Fault::ExpiredSession) => Some(TppError::not_authenticated()),
            _ => None,
        };
        if let Some(e) = injected {
            return FrameReply::Reply(envelope(&root, Err(e)));
        }
        let reply = self.answer(&root, &cx);
        match plan.fault {
            Some(Fault::DropAfterCommit) => FrameReply::Close,
            Some(Fault::Truncate) => {
                let mut cut = reply.len() / 2;
                while !reply.is_char_boundary(cut) {
                    cut -= 1;
                }
                FrameReply::Reply(reply[..cut].to_string())
            }
            Some(Fault::Malformed) => {
                FrameReply::Reply(String::from_utf8_lossy(&corrupt(reply.as_bytes())).into_owned())
            }
            _ => FrameReply::Reply(reply),
        }
    }

    fn route(&self, frame: &str) -> String {
        frame
            .split_once("function=\"")
            .and_then(|(_, rest)| rest.split_once('"'))
            .map_or_else(|| "CI".to_string(), |(f, _)| format!("CI {f}"))
    }
}

impl Transaction {
    fn answer(&self, root: &Node, cx: &RequestContext) -> String {
        let device = root.attr("deviceId").unwrap_or_default();
        if root.attr("apiKey") != Some(self.config.api_key.as_str()) || device != self.config.device_id {
            return envelope(root, Err(TppError::not_authenticated()));
        }
        if let Err(t) = self.limiter.check(device) {
            return envelope(root, Err(busy(t.retry_after_secs)));
        }
        let uid = root.attr("requestUid").unwrap_or_default();
        // Only writes (`File*`, booking, cancelling) are remembered; see the PFS surface for why.
        let function = root.attr("function").unwrap_or_default();
        let write = function.starts_with("File") || matches!(function, "BookAppointment" | "CancelAppointment");
        if uid.is_empty() || !write {
            return envelope(root, self.run(root, cx));
        }
        // The request's identity is its function and parameters, not the test-only `simFault`, so a retry
        // of a dropped call replays.
        let identity = format!(
            "{}\0{:?}",
            root.attr("function").unwrap_or_default(),
            root.child("Parameters")
        );
        match self.replay.begin(device, uid, Some(fingerprint(identity.as_bytes()))) {
            Begin::Replay(r) => r,
            Begin::Mismatch => envelope(
                root,
                Err(TppError::invalid("requestUid already used for a different request")),
            ),
            Begin::InProgress => envelope(root, Err(TppError::in_progress())),
            Begin::Fresh(ticket) => {
                let r = envelope(root, self.run(root, cx));
                ticket.complete(r.clone());
                r
            }
        }
    }
}
