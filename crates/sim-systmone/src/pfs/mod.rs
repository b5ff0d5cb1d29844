//! The PFS surface: `POST /tpp/pfs` XML messages named by the `type` header, plus the code table and the bulk
//! paths on the same HTTP server (`auth`: linkage and logon; `messages`: everything after logon). Order per message: parse, `type` check, session (`suid`), one at a time,
//! rate limit, uuid replay, then the message.

mod auth;
mod messages;

use crate::coding::code_table;
use crate::errors::TppError;
use crate::session::{PfsSession, Sessions};
use crate::xml::{parse, El, Node};
use crate::SystmOneConfig;
use bytes::Bytes;
use http::{header, HeaderValue, Method, Response, StatusCode};
use im1_sim::common::idempotency::{fingerprint, Begin, ReplayStore};
use im1_sim::common::throttle::{OneAtATime, RateLimiter};
use im1_sim::common::{Handler, InjectedReply, RequestContext, SimRequest, SimResponse};
use im1_sim::record::World;
use std::sync::Arc;
use std::time::Duration;

/// `Retry-After` of load shedding, as the dialect fixes it.
pub const RETRY_AFTER_SECS: u64 = 5;

/// Messages that change the world, whose replies a repeated `uuid` replays.
const WRITES: [&str; 5] = [
    "BookAppointment",
    "CancelAppointment",
    "RequestMedication",
    "MessageCreate",
    "MessagesMarkAsRead",
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
