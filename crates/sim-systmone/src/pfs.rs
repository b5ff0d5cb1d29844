//! The PFS surface: `POST /tpp/pfs` XML messages named by the `type` header, plus the code table and the bulk
//! paths on the same HTTP server. Order per message: parse, `type` check, session (`suid`), one at a time,
//! rate limit, uuid replay, then the message.

use crate::appointments::{self, Booking};
use crate::coding::code_table;
use crate::errors::TppError;
use crate::prescriptions;
use crate::record_view::{binary_page, parse_sections};
use crate::render::{tid, tsub, Surface, View};
use crate::session::{account, auth_passphrase, PfsSession, Sessions};
use crate::xml::{parse, El, Node};
use crate::SystmOneConfig;
use bytes::Bytes;
use http::{header, HeaderValue, Method, Response, StatusCode};
use im1_sim::common::idempotency::{fingerprint, Begin, ReplayStore};
use im1_sim::common::throttle::{OneAtATime, RateLimiter};
use im1_sim::common::{Handler, InjectedReply, RequestContext, SimRequest, SimResponse};
use im1_sim::record::{Nid, Patient, Record, Service, World};
use std::sync::Arc;
use std::time::Duration;

/// `Retry-After` of load shedding, as the dialect fixes it.
pub const RETRY_AFTER_SECS: u64 = 5;

/// Messages that change the world, whose replies a repeated `uuid` replays.
const WRITES: [&str; 4] = [
    "BookAppointment",
    "CancelAppointment",
    "RequestMedication",
    "MessageCreate",
];

/// The PFS handler.
pub struct Pfs {
    world: Arc<World>,
    config: Arc<SystmOneConfig>,
    sessions: Sessions,
    single: OneAtATime,
    limiter: RateLimiter,
    replay: ReplayStore<SimResponse>,
    bulk: crate::bulk::Extracts,
}

/// A text/xml reply.
pub fn xml_reply(status: u16, body: String) -> SimResponse {
    let mut r = Response::new(Bytes::from(body));
    *r.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::OK);
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/xml; charset=utf-8"),
    );
    r
}

fn error_reply(e: &TppError, uuid: &str) -> SimResponse {
    let mut r = xml_reply(e.http, e.pfs_element(uuid).to_xml());
    if e.http == 503 || e.http == 429 {
        r.headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from(RETRY_AFTER_SECS));
    }
    r
}

/// The `uuid` attribute of a raw body, for replies rendered before (or without) parsing.
fn raw_uuid(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    text.split_once("uuid=\"")
        .and_then(|(_, rest)| rest.split_once('"'))
        .map(|(u, _)| u.to_string())
        .unwrap_or_default()
}

struct Call<'a> {
    node: &'a Node,
    uuid: &'a str,
    suid: &'a str,
    session: &'a PfsSession,
    cx: &'a RequestContext,
}

impl Call<'_> {
    fn reply(&self) -> El {
        El::new(format!("{}Reply", self.node.name)).attr("uuid", self.uuid)
    }
}

impl Pfs {
    pub fn new(world: Arc<World>, config: Arc<SystmOneConfig>) -> Pfs {
        Pfs {
            sessions: Sessions::new(config.session_idle),
            single: OneAtATime::new(config.throttle),
            limiter: RateLimiter::new(config.rate_per_second, config.throttle).with_retry_after(RETRY_AFTER_SECS),
            replay: ReplayStore::new(Duration::from_secs(24 * 3600)),
            bulk: crate::bulk::Extracts::default(),
            world,
            config,
        }
    }

    fn ods(&self) -> &str {
        &self.config.unit_id
    }

    async fn message(&self, req: SimRequest, cx: RequestContext) -> SimResponse {
        let body = req.body().clone();
        let text = match std::str::from_utf8(&body) {
            Ok(t) => t,
            Err(_) => return error_reply(&TppError::malformed("body is not UTF-8"), ""),
        };
        let node = match parse(text) {
            Ok(n) => n,
            Err(e) => return error_reply(&TppError::malformed(e), &raw_uuid(&body)),
        };
        let uuid = node.attr("uuid").unwrap_or_default().to_string();
        let kind = req
            .headers()
            .get("type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default();
        if kind != node.name {
            return error_reply(
                &TppError::malformed("header type does not name the root element"),
                &uuid,
            );
        }
        match node.name.as_str() {
            "LinkAccount" => return self.result(self.link(&node, &uuid), &uuid),
            "Authenticate" => return self.authenticate(&node, &uuid),
            _ => {}
        }
        let suid = req
            .headers()
            .get("suid")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string();
        let Some(session) = self.sessions.touch(&suid) else {
            return error_reply(&TppError::not_authenticated(), &uuid);
        };
        let Some(_guard) = self.single.try_acquire(&suid) else {
            return error_reply(&TppError::in_progress(), &uuid);
        };
        // Test-only: keep the session busy so a test can observe Error 12 (the proxy strips `X-Sim-*`).
        if let Some(ms) = req
            .headers()
            .get("x-sim-hold")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok())
        {
            tokio::time::sleep(Duration::from_millis(ms.min(5_000))).await;
        }
        if self.limiter.check(&suid).is_err() {
            return error_reply(&TppError::busy(), &uuid);
        }
        let call = Call {
            node: &node,
            uuid: &uuid,
            suid: &suid,
            session: &session,
            cx: &cx,
        };
        // Only writes are remembered: a read answered again is the same answer, and keeping every read's
        // reply for 24 hours would grow without bound under load.
        if uuid.is_empty() || !WRITES.contains(&node.name.as_str()) {
            return self.result(self.dispatch(&call), &uuid);
        }
        match self.replay.begin(&session.account_id, &uuid, Some(fingerprint(&body))) {
            Begin::Replay(r) => r,
            Begin::Mismatch => error_reply(&TppError::invalid("uuid already used for a different request"), &uuid),
            Begin::InProgress => error_reply(&TppError::in_progress(), &uuid),
            Begin::Fresh(ticket) => {
                let r = self.result(self.dispatch(&call), &uuid);
                ticket.complete(r.clone());
                r
            }
        }
    }

    fn result(&self, r: Result<El, TppError>, uuid: &str) -> SimResponse {
        match r {
            Ok(el) => xml_reply(200, el.to_xml()),
            Err(e) => error_reply(&e, uuid),
        }
    }

    fn provider_ok(&self, node: &Node) -> bool {
        let given = node
            .attr("providerId")
            .or_else(|| node.child("Application").and_then(|a| a.attr("providerId")));
        given == Some(self.config.provider_id.as_str())
    }

    fn link(&self, node: &Node, uuid: &str) -> Result<El, TppError> {
        if !self.provider_ok(node) {
            return Err(TppError::new(
                2010,
                "There was a problem linking your account",
                "invalid provider id",
            ));
        }
        let invalid =
            |code: u32, t: &str| TppError::new(code, "The details you entered are not correct", t.to_string());
        if node.attr("organisationCode") != Some(self.ods()) {
            return Err(invalid(2006, "unknown organisationCode"));
        }
        let account_id = node.attr("accountId").unwrap_or_default();
        let given = node.attr("passphrase").unwrap_or_default();
        self.world.read(|r| {
            let (pid, passphrase) =
                account(r, self.ods(), account_id).ok_or_else(|| invalid(2006, "invalid linkage credentials"))?;
            if passphrase != given {
                return Err(invalid(2006, "invalid linkage credentials"));
            }
            let p = r
                .patient(pid)
                .ok_or_else(|| invalid(2006, "invalid linkage credentials"))?;
            let surname_ok = node
                .attr("lastName")
                .is_some_and(|n| n.trim().eq_ignore_ascii_case(&p.name.family));
            let dob_ok = node
                .attr("dateOfBirth")
                .and_then(crate::dates::parse_instant)
                .is_some_and(|d| d.date() == p.birth_date);
            if !surname_ok || !dob_ok {
                return Err(invalid(2008, "lastName or dateOfBirth do not match"));
            }
            Ok(El::new("LinkAccountReply")
                .attr("uuid", uuid)
                .attr("accountId", account_id)
                .attr("passphrase", auth_passphrase(account_id, passphrase))
                .attr("passphraseToLink", passphrase)
                .child(El::new("ProviderId").text(self.config.provider_id.clone())))
        })
    }

    fn authenticate(&self, node: &Node, uuid: &str) -> SimResponse {
        let fail = || TppError::new(9, "There was a problem logging on", "invalid account or passphrase");
        if !self.provider_ok(node) {
            let e = TppError::new(2010, "There was a problem logging on", "invalid provider id");
            return error_reply(&e, uuid);
        }
        let account_id = node.attr("accountId").unwrap_or_default();
        if self.limiter.check(&format!("auth:{account_id}")).is_err() {
            return error_reply(&TppError::busy(), uuid);
        }
        let found = self.world.read(|r| {
            let (pid, passphrase) = account(r, self.ods(), account_id)?;
            if node.attr("passphrase") != Some(auth_passphrase(account_id, passphrase).as_str()) {
                return None;
            }
            let user = r.patient(pid)?;
            let mut patients = vec![user.id.clone()];
            patients.extend(
                r.proxied_by(&user.id)
                    .into_iter()
                    .filter(|l| {
                        r.patient(&l.patient)
                            .is_some_and(|p| p.registration(self.ods()).is_some())
                    })
                    .map(|l| l.patient.clone()),
            );
            let reply = self.authenticate_reply(r, user, &patients, uuid);
            Some((user.id.clone(), patients, reply))
        });
        let Some((user, patients, reply)) = found else {
            return error_reply(&fail(), uuid);
        };
        let suid = self.sessions.open(account_id, user, patients);
        let mut r = xml_reply(200, reply.to_xml());
        if let Ok(v) = HeaderValue::from_str(&suid) {
            r.headers_mut().insert("suid", v);
        }
        r
    }

    fn authenticate_reply(&self, r: &Record, user: &Patient, patients: &[Nid], uuid: &str) -> El {
        let view = View {
            record: r,
            surface: Surface::Patient,
        };
        let access = patients.iter().filter_map(|id| r.patient(id)).map(|p| {
            let mut el = El::new("PatientAccess").attr("patientId", tid(&p.id));
            if p.id != user.id {
                if let Some(link) = r.proxied_by(&user.id).into_iter().find(|l| l.patient == p.id) {
                    el.set("relationship", format!("{:?}", link.relationship));
                }
            }
            el.child(view.site(self.ods()))
        });
        El::new("AuthenticateReply")
            .attr("uuid", uuid)
            .attr("onlineUserId", tsub(&user.id, "online-user"))
            .child(El::new("User").child(view.person(user, self.ods())))
            .child(El::new("Registration").children(access))
            .children(
                patients
                    .iter()
                    .filter_map(|id| r.patient(id))
                    .map(|p| view.person(p, self.ods())),
            )
    }

    /// The patient a message is about: `patientId` (default the selected one), which the session must reach.
    fn patient(&self, call: &Call<'_>) -> Result<Nid, TppError> {
        match call.node.attr_nonempty("patientId") {
            None => Ok(call.session.selected.clone()),
            Some(pid) => call
                .session
                .patients
                .iter()
                .find(|n| tid(n) == pid)
                .cloned()
                .ok_or_else(|| TppError::no_access("patient not accessible in this session")),
        }
    }

    fn service(&self, patient: &Nid, service: Service) -> Result<(), TppError> {
        if self.world.read(|r| r.service_allowed(self.ods(), patient, service)) {
            Ok(())
        } else {
            Err(TppError::no_access(format!("{service:?} switched off")))
        }
    }

    /// Read the record for a patient with a service on.
    fn read<T>(
        &self,
        call: &Call<'_>,
        service: Service,
        f: impl FnOnce(&View<'_>, &Patient) -> Result<T, TppError>,
    ) -> Result<T, TppError> {
        let pid = self.patient(call)?;
        self.service(&pid, service)?;
        self.world.read(|r| {
            let p = r.patient(&pid).ok_or_else(TppError::patient_not_found)?;
            f(
                &View {
                    record: r,
                    surface: Surface::Patient,
                },
                p,
            )
        })
    }

    fn dispatch(&self, call: &Call<'_>) -> Result<El, TppError> {
        let n = call.node;
        let ods = self.ods();
        match n.name.as_str() {
            "PatientSelected" => {
                let pid = self.patient(call)?;
                self.sessions.select(call.suid, pid.clone());
                Ok(call.reply().attr("patientId", tid(&pid)))
            }
            "ListServiceAccesses" => {
                let pid = self.patient(call)?;
                let accesses = self.world.read(|r| {
                    [
                        ("Records", Service::Records),
                        ("Appointments", Service::Appointments),
                        ("Prescriptions", Service::Prescriptions),
                        ("Messaging", Service::Messaging),
                    ]
                    .map(|(name, s)| {
                        El::new("ServiceAccess")
                            .attr("name", name)
                            .attr("enabled", if r.service_allowed(ods, &pid, s) { "y" } else { "n" })
                    })
                });
                Ok(call.reply().attr("patientId", tid(&pid)).children(accesses))
            }
            "Logoff" => {
                self.sessions.close(call.suid);
                Ok(call.reply())
            }
            "ViewPatientOverview" => self.read(call, Service::Records, |v, p| Ok(v.overview(p, call.reply()))),
            "RequestPatientRecord" => self.read(call, Service::Records, |v, p| {
                let sections = parse_sections(n.attr("sections"))?;
                v.record_page(p, &sections, n.attr("resumeFrom"), call.reply())
            }),
            "TestResultsView" => self.read(call, Service::Records, |v, p| {
                let from = n.attr_nonempty("startDate").and_then(crate::dates::parse_instant);
                let to = n.attr_nonempty("endDate").and_then(crate::dates::parse_instant);
                Ok(v.test_results(p, from, to, call.reply()))
            }),
            "TestResultsViewDetailed" => {
                let id = n
                    .attr("itemId")
                    .and_then(|i| self.world.resolve(im1_sim::record::Supplier::SystmOne, i))
                    .ok_or_else(|| TppError::item_not_found("test result"))?;
                self.read(call, Service::Records, |v, p| v.test_result(p, &id, call.reply()))
            }
            "RequestBinaryData" => self.read(call, Service::Records, |v, p| {
                let id = n.attr("binaryDataId").unwrap_or_default();
                let page = n.attr("page").unwrap_or("1").parse().unwrap_or(0);
                let d = v
                    .document_by_binary_id(p, id)
                    .ok_or_else(|| TppError::item_not_found("binary data"))?;
                binary_page(d, page, call.reply())
            }),
            "ListSlots" => {
                let pid = self.patient(call)?;
                self.service(&pid, Service::Appointments)?;
                self.world.read(|r| {
                    let view = View {
                        record: r,
                        surface: Surface::Patient,
                    };
                    appointments::list_slots(
                        &self.world,
                        &view,
                        ods,
                        n.attr("startDate"),
                        n.attr("numberOfDays"),
                        call.reply(),
                    )
                })
            }
            "BookAppointment" => {
                let pid = self.patient(call)?;
                self.service(&pid, Service::Appointments)?;
                let b = Booking {
                    session_id: n.attr("sessionId"),
                    start: n.attr("startDate"),
                    end: n.attr("endDate"),
                    notes: n.attr("notes"),
                    telephone: n.attr("telephone"),
                };
                let a = appointments::book(&self.world, ods, &pid, &b)?;
                call.cx.record_write();
                Ok(self.world.read(|r| {
                    appointments::booked(
                        call.reply(),
                        &a,
                        &View {
                            record: r,
                            surface: Surface::Patient,
                        },
                    )
                }))
            }
            "CancelAppointment" => {
                let pid = self.patient(call)?;
                self.service(&pid, Service::Appointments)?;
                appointments::cancel(&self.world, ods, &pid, n.attr("apptId"), n.attr_nonempty("reason"))?;
                call.cx.record_write();
                Ok(call.reply())
            }
            "ViewAppointments" => self.read(call, Service::Appointments, |v, p| {
                Ok(appointments::appointments(v, ods, &p.id, call.reply()))
            }),
            "ListRepeatMedication" => self.read(call, Service::Prescriptions, |v, p| {
                Ok(prescriptions::repeats(
                    v,
                    p,
                    call.reply()
                        .attr("patientId", tid(&p.id))
                        .attr("onlineUserId", tsub(&call.session.user, "online-user")),
                ))
            }),
            "RequestMedication" => {
                let pid = self.patient(call)?;
                self.service(&pid, Service::Prescriptions)?;
                let q = prescriptions::request(&self.world, ods, &pid, n)?;
                call.cx.record_write();
                Ok(call.reply().attr("requestId", tid(&q.id)).attr("status", "Requested"))
            }
            "ListMedicationRequests" => self.read(call, Service::Prescriptions, |v, p| {
                Ok(prescriptions::requests(v, ods, p, call.reply()))
            }),
            "MessageRecipients" => self.read(call, Service::Messaging, |v, _| {
                Ok(prescriptions::recipients(v, ods, call.reply()))
            }),
            "MessagesView" => self.read(call, Service::Messaging, |v, p| {
                Ok(prescriptions::messages(v, ods, &p.id, call.reply()))
            }),
            "MessageCreate" => {
                let pid = self.patient(call)?;
                self.service(&pid, Service::Messaging)?;
                let m = prescriptions::send(&self.world, ods, &pid, n)?;
                call.cx.record_write();
                Ok(call.reply().attr("messageId", tid(&m.id)))
            }
            other => Err(TppError::invalid(format!("unknown message {other}"))),
        }
    }

    fn code_table(&self, req: &SimRequest) -> SimResponse {
        let code = req.uri().query().and_then(|q| {
            form_urlencoded::parse(q.as_bytes())
                .find(|(k, _)| k == "code")
                .map(|(_, v)| v.into_owned())
        });
        let rows = code_table(code.as_deref());
        match (code, rows.len()) {
            (Some(c), 0) => {
                let e = TppError::item_not_found(&format!("code {c}"));
                let mut r = error_reply(&e, "");
                *r.status_mut() = StatusCode::NOT_FOUND;
                r
            }
            (Some(_), _) => xml_reply(200, rows[0].to_xml()),
            (None, _) => xml_reply(200, El::new("Codes").children(rows).to_xml()),
        }
    }
}

impl Handler for Pfs {
    async fn handle(&self, req: SimRequest, cx: RequestContext) -> SimResponse {
        let path = req.uri().path().to_string();
        match (req.method(), path.as_str()) {
            (&Method::POST, "/tpp/pfs") => self.message(req, cx).await,
            (&Method::GET, "/tpp/sim/ctv3") => self.code_table(&req),
            (_, p) if p.starts_with("/tpp/bulk/") => self.bulk.handle(&self.world, &self.config, &req, &cx),
            _ => {
                let mut r = Response::new(Bytes::new());
                *r.status_mut() = StatusCode::NOT_FOUND;
                r
            }
        }
    }

    fn route(&self, req: &SimRequest) -> String {
        match req.headers().get("type").and_then(|v| v.to_str().ok()) {
            Some(t) if req.uri().path() == "/tpp/pfs" => format!("PFS {t}"),
            _ => format!("{} {}", req.method(), req.uri().path()),
        }
    }

    fn fault_reply(&self, reply: InjectedReply, req: &SimRequest) -> SimResponse {
        let uuid = raw_uuid(req.body());
        match reply {
            InjectedReply::ServerError(503) => error_reply(&TppError::busy(), &uuid),
            InjectedReply::ServerError(_) => {
                let mut r = Response::new(Bytes::new());
                *r.status_mut() = StatusCode::INTERNAL_SERVER_ERROR;
                r
            }
            InjectedReply::TooManyRequests { retry_after_secs } => {
                let mut r = xml_reply(429, TppError::busy().pfs_element(&uuid).to_xml());
                r.headers_mut()
                    .insert(header::RETRY_AFTER, HeaderValue::from(retry_after_secs));
                r
            }
            InjectedReply::ExpiredSession => error_reply(&TppError::not_authenticated(), &uuid),
        }
    }
}
