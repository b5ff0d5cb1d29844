//! TPP SystmOne: transport and session flow only.
//! - Patient surface (PFS): XML messages over HTTP, named by a `type` header; `LinkAccount` once, then
//!   `Authenticate`, whose reply carries the `suid` session header. The NHS App serialises its own calls per
//!   session (public source); whether SystmOne refuses concurrent ones is not public (the simulator does, with
//!   an error 12 of its own), so the proxy queues calls per session rather than risk it. Error 3 (session
//!   gone) rebuilds the session once. Each message names its patient by `patientId`: the user's own, or a
//!   record `Authenticate` listed under `Registration` that they act for (proxy access).
//! - Transaction surface (Client Integration): XML over a TCP socket (public sources say no more); framed as the
//!   simulator frames it (a 4-byte big-endian length, then UTF-8: a convention), one request in flight per
//!   connection; connections are pooled, one the GP system has closed is left behind, and the breaker's trial
//!   call (see `breaker`) goes on a new one.
//!
//! Replies become the generic tree (`xml_tree`); mapping templates build the request as
//! `{ message | function, attributes | parameters }`.

use super::breaker::Answer;
use super::client::{
    broken, retry_after, status_error, timeout, too_large, unreachable, CallRecord, HttpClient, HttpRequest, Turn,
};
use super::credentials::{CredentialStore, LinkMemory, Linkage};
use super::sessions::SessionSlots;
use super::{xml_tree, NativeCall};
use crate::config::SystmOneCredentials;
use crate::fhir::{FhirError, FhirResult};
use crate::mapping::node::Native;
use crate::mapping::Surface;
use http::Method;
use quick_xml::escape::escape;
use serde_json::{Map, Value};
use sonic_rs::{JsonContainerTrait, JsonValueMutTrait, JsonValueTrait};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::Mutex;

const SUPPLIER: &str = "TPP SystmOne";
/// Frames above this are refused (a document page is far smaller).
const MAX_FRAME: usize = 32 * 1024 * 1024;
/// Client Integration functions that change the record: never retried.
const WRITES: &[&str] = &[
    "FileObservation",
    "FileAllergy",
    "FileProblem",
    "FileConsultation",
    "FileDocument",
    "BookAppointment",
    "CancelAppointment",
];

/// Patient Facing Services messages that only read (those the mappings send); any other is taken to write.
const PFS_READS: &[&str] = &[
    "Authenticate",
    "RequestPatientRecord",
    "RequestBinaryData",
    "ViewAppointments",
];

/// Whether a request only reads: a Client Integration function that is not a write, or a PFS message known to
/// read.
pub fn is_read(request: &Value) -> bool {
    match (
        request.get("function").and_then(Value::as_str),
        request.get("message").and_then(Value::as_str),
    ) {
        (Some(function), None) => !WRITES.contains(&function),
        (None, Some(message)) => PFS_READS.contains(&message),
        _ => false,
    }
}

pub struct SystmOne {
    ods: String,
    base: String,
    creds: SystmOneCredentials,
    http: HttpClient,
    timeout: Duration,
    retries: u32,
    linkage: Arc<CredentialStore>,
    /// Idle Client Integration connections.
    pool: Mutex<Vec<TcpStream>>,
    /// PFS sessions per patient NHS number; a slot's lock also serialises calls on one `suid`.
    sessions: SessionSlots<PfsSession>,
    /// `LinkAccount` is once per user (confirmed): the passphrase its reply gave, for every later `Authenticate`.
    linked: LinkMemory,
}

#[derive(Clone)]
struct PfsSession {
    suid: String,
    /// The `patientId`s this session reaches (`Registration/PatientAccess`), the user's own first.
    patient_ids: Vec<String>,
    /// The user's `onlineUserId` (`AuthenticateReply`): with `patientId`, an attribute common to the PFS
    /// messages (confirmed).
    online_user_id: String,
    /// The `Authenticate` reply: the only PFS message that carries the patient's own demographics (`Person`).
    logon: Native,
}

impl SystmOne {
    pub fn new(
        ods: &str,
        base: &str,
        creds: SystmOneCredentials,
        http: HttpClient,
        timeout: Duration,
        retries: u32,
        linkage: Arc<CredentialStore>,
    ) -> SystmOne {
        SystmOne {
            ods: ods.into(),
            base: base.into(),
            creds,
            http,
            timeout,
            retries,
            linkage,
            pool: Mutex::new(Vec::new()),
            sessions: SessionSlots::default(),
            linked: Default::default(),
        }
    }

    pub async fn call(&self, call: &NativeCall<'_>, calls: &mut Vec<CallRecord>) -> FhirResult<Native> {
        match call.surface {
            Surface::Transaction => self.transaction(call, calls).await,
            Surface::Patient => self.pfs(call, calls).await,
        }
    }

    // ---- Client Integration (framed XML over TCP) ----

    async fn transaction(&self, call: &NativeCall<'_>, calls: &mut Vec<CallRecord>) -> FhirResult<Native> {
        let function = call
            .request
            .get("function")
            .and_then(Value::as_str)
            .ok_or_else(|| malformed_request("no function"))?;
        let parameters = attributes(call.request.get("parameters"))?;
        let attempts = if WRITES.contains(&function) {
            1
        } else {
            self.retries + 1
        };
        let request_uid = uuid::Uuid::new_v4().to_string();
        let envelope = format!(
            r#"<ClientIntegrationRequest apiKey="{}" deviceId="{}" deviceVersion="1.0" requestUid="{request_uid}" function="{}" functionVersion="1"><Parameters{parameters}/></ClientIntegrationRequest>"#,
            escape(self.creds.api_key.expose()),
            escape(&self.creds.device_id),
            escape(function),
        );
        // One deadline for the whole call, retries included, as for HTTP calls.
        let deadline = Instant::now() + self.timeout;
        let mut last = None;
        for attempt in 0..attempts {
            if attempt > 0 {
                let backoff = Duration::from_millis(50 << attempt.min(5));
                if Instant::now() + backoff >= deadline {
                    break;
                }
                tokio::time::sleep(backoff).await;
            }
            // A place among the calls in flight and the device's pace; waiting is not an attempt. A retry that
            // gets no turn answers with what the attempt before it met, as HTTP calls do.
            let Turn { permit, attempt } = match self.http.turn(Surface::Transaction, deadline).await {
                Ok(turn) => turn,
                Err(refused) => return Err(last.unwrap_or(refused)),
            };
            let started = Instant::now();
            // The breaker's trial, after a while without answers, goes on a new connection: those pooled before may
            // have died with the GP system, and one of them failing would stop the calls again for nothing.
            let exchange = self.exchange(&envelope, attempt.is_trial());
            let result = tokio::time::timeout_at(deadline.into(), exchange).await;
            drop(permit);
            let silence = match result {
                Err(_) => Err(timeout()),
                Ok(result) => result,
            };
            // A frame that came back was answered, whatever it holds, and is not asked for again. As for HTTP
            // replies, one too large or not text is recorded with status 0, one whose XML is broken with 200.
            let (status, outcome, answered) = match silence {
                Ok(frame) => {
                    attempt.answered(Answer::Answered);
                    let status = if frame.is_ok() { 200 } else { 0 };
                    let tree = frame.and_then(|text| xml_tree::parse(text.as_bytes()).map_err(|_| broken()));
                    (status, tree, true)
                }
                Err(error) => {
                    attempt.failed(&error);
                    (0, Err(error), false)
                }
            };
            calls.push(CallRecord {
                method: "FRAME".into(),
                path: format!("/ClientIntegration/{function}"),
                status,
                elapsed: started.elapsed(),
            });
            match outcome {
                Ok(tree) => {
                    let result = transaction_result(tree);
                    // Load shed, or unavailable: TPP says when to come back, for every call of this device.
                    if let Err(FhirError {
                        code: UNAVAILABLE,
                        retry_after: Some(seconds),
                        ..
                    }) = &result
                    {
                        self.http.pause(Surface::Transaction, Duration::from_secs(*seconds));
                    }
                    return result;
                }
                // A time-out used the whole deadline.
                Err(e) if answered || e.status == http::StatusCode::GATEWAY_TIMEOUT => return Err(e),
                Err(e) => last = Some(e),
            }
        }
        Err(last.unwrap_or_else(broken))
    }

    /// One frame out, one frame back, on a pooled connection that is still open (a failed connection is
    /// dropped, not reused), or on a new one: always on a new one when `fresh`, and the pool is emptied. The
    /// outer error: no whole frame came back. The inner result: the frame that did, or why it cannot be read
    /// (too large to take, not UTF-8): an answer all the same.
    async fn exchange(&self, envelope: &str, fresh: bool) -> FhirResult<FhirResult<String>> {
        let pooled = checkout(&mut *self.pool.lock().await, fresh);
        let mut stream = match pooled {
            Some(stream) => stream,
            None => {
                let stream = TcpStream::connect(&self.creds.transaction_address)
                    .await
                    .map_err(|_| unreachable())?;
                // Request and reply are one frame each: Nagle's algorithm would hold a frame back waiting for
                // the peer's delayed acknowledgement (tens of milliseconds a call).
                let _ = stream.set_nodelay(true);
                stream
            }
        };
        let bytes = envelope.as_bytes();
        let length = u32::try_from(bytes.len()).map_err(|_| malformed_request("request too large"))?;
        // The length and the envelope in one write.
        let mut frame = Vec::with_capacity(4 + bytes.len());
        frame.extend_from_slice(&length.to_be_bytes());
        frame.extend_from_slice(bytes);
        stream.write_all(&frame).await.map_err(|_| broken())?;
        let mut header = [0u8; 4];
        stream.read_exact(&mut header).await.map_err(|_| broken())?;
        let length = u32::from_be_bytes(header) as usize;
        // Not read into memory; the connection, left mid-frame, is dropped.
        if length > MAX_FRAME {
            return Ok(Err(too_large()));
        }
        let mut body = vec![0u8; length];
        stream.read_exact(&mut body).await.map_err(|_| broken())?;
        self.pool.lock().await.push(stream);
        Ok(String::from_utf8(body).map_err(|_| broken()))
    }

    // ---- PFS (XML over HTTP, suid sessions) ----

    async fn pfs(&self, call: &NativeCall<'_>, calls: &mut Vec<CallRecord>) -> FhirResult<Native> {
        let nhs = call
            .patient_nhs
            .ok_or_else(|| FhirError::internal("IM1-4201", "a patient-facing call needs the patient"))?;
        let message = call
            .request
            .get("message")
            .and_then(Value::as_str)
            .ok_or_else(|| malformed_request("no message"))?;
        let slot = self.sessions.slot(nhs).await;
        // Held for the whole call: one request at a time per suid.
        let mut session = slot.lock().await;
        for attempt in 0..2 {
            if session.is_none() || attempt > 0 {
                *session = Some(self.logon(nhs, call, calls).await?);
            }
            let Some(current) = session.as_ref() else { continue };
            // `Authenticate` is part of the session flow, not a message a mapping may send: a mapping asking for
            // it gets the reply this session's logon received (the patient's own `Person`, and those they act for).
            if message == "Authenticate" {
                return Ok(reply_content(current.logon.clone()));
            }
            let mut attrs = call
                .request
                .get("attributes")
                .and_then(Value::as_object)
                .cloned()
                .unwrap_or_default();
            let patient_id = match call.record {
                Some(record) => current
                    .patient_ids
                    .iter()
                    .find(|id| id.as_str() == record)
                    .ok_or_else(super::not_linked)?,
                None => current.patient_ids.first().ok_or_else(broken)?,
            };
            attrs
                .entry("patientId")
                .or_insert_with(|| Value::String(patient_id.clone()));
            attrs
                .entry("onlineUserId")
                .or_insert_with(|| Value::String(current.online_user_id.clone()));
            attrs.entry("unitId").or_insert_with(|| Value::String(self.ods.clone()));
            let body = message_xml(message, &Value::Object(attrs), None)?;
            let tree = self.post(message, body, Some(&current.suid), call, calls).await?;
            match pfs_error(&tree) {
                Some(3) if attempt == 0 => continue,
                Some(code) => return Err(pfs_error_to_fhir(code)),
                None => return Ok(reply_content(tree)),
            }
        }
        Err(FhirError::bad_gateway(
            "IM1-4203",
            "TPP SystmOne kept refusing the patient's session",
        ))
    }

    /// The patientIds the user's session reaches, from `Authenticate` (their own first).
    pub async fn linked_records(
        &self,
        nhs: &str,
        request_id: &str,
        calls: &mut Vec<CallRecord>,
    ) -> FhirResult<Vec<String>> {
        let request = serde_json::json!({ "message": "Authenticate" });
        let call = NativeCall {
            surface: Surface::Patient,
            request: &request,
            patient_nhs: Some(nhs),
            record: None,
            request_id,
        };
        let slot = self.sessions.slot(nhs).await;
        let mut session = slot.lock().await;
        // A new logon: its PatientAccess is the linkage as it is now (a revoked proxy link is gone), not as it
        // was when the cached session began.
        let fresh = self.logon(nhs, &call, calls).await?;
        let patient_ids = fresh.patient_ids.clone();
        if let Some(old) = session.replace(fresh) {
            self.logoff(&old, &call, calls).await;
        }
        Ok(patient_ids)
    }

    /// Ends a session the proxy no longer uses (TPP: `Logoff` should be sent to end a session). A failure
    /// changes nothing for the caller: the session ends on its own in time.
    async fn logoff(&self, session: &PfsSession, call: &NativeCall<'_>, calls: &mut Vec<CallRecord>) {
        if let Ok(body) = message_xml("Logoff", &Value::Object(serde_json::Map::new()), None) {
            let _ = self.post("Logoff", body, Some(&session.suid), call, calls).await;
        }
    }

    async fn logon(&self, nhs: &str, call: &NativeCall<'_>, calls: &mut Vec<CallRecord>) -> FhirResult<PfsSession> {
        let linkage = self.linkage.get(&self.ods, nhs);
        let Some(
            linkage @ Linkage::SystmOne {
                account_id,
                passphrase,
                last_name,
                date_of_birth,
            },
        ) = linkage.as_ref()
        else {
            return Err(super::credentials::no_linkage());
        };
        let link_message = || {
            message_xml(
                "LinkAccount",
                &serde_json::json!({ "organisationCode": self.ods, "accountId": account_id, "passphrase": passphrase,
                                      "lastName": last_name, "dateOfBirth": date_of_birth }),
                Some(&self.application()),
            )
        };
        // With the passphrase an earlier link gave, unless it no longer holds (the practice re-issued the
        // account); else linked (again), once.
        let authenticated = match self.linked.get(nhs, linkage) {
            Some(known) => match self.authenticate(account_id, &known, call, calls).await {
                Err(e) if e.code == "IM1-4202" => None,
                other => Some(other?),
            },
            None => None,
        };
        let (suid, tree) = match authenticated {
            Some(session) => session,
            None => {
                let linked = self.link(nhs, linkage, link_message()?, call, calls).await?;
                self.authenticate(account_id, &linked, call, calls).await?
            }
        };
        // Self is listed first; the others are the patients the user acts for.
        let patient_ids: Vec<String> = tree
            .get("AuthenticateReply")
            .and_then(|r| r.get("Registration"))
            .and_then(|r| r.get(0))
            .and_then(|r| r.get("PatientAccess"))
            .and_then(|access| access.as_array())
            .map(|access| {
                access
                    .iter()
                    .filter_map(|a| a.get("patientId").and_then(|id| id.as_str()).map(String::from))
                    .collect()
            })
            .unwrap_or_default();
        let online_user_id = tree
            .get("AuthenticateReply")
            .and_then(|r| r.get("onlineUserId"))
            .and_then(|id| id.as_str())
            .map(String::from);
        let (false, Some(online_user_id)) = (patient_ids.is_empty(), online_user_id) else {
            return Err(broken());
        };
        Ok(PfsSession {
            suid,
            patient_ids,
            online_user_id,
            logon: tree,
        })
    }

    /// `LinkAccount`, once per user: the passphrase its reply gives for `Authenticate`, remembered.
    async fn link(
        &self,
        nhs: &str,
        linkage: &Linkage,
        message: String,
        call: &NativeCall<'_>,
        calls: &mut Vec<CallRecord>,
    ) -> FhirResult<String> {
        let reply = self.post("LinkAccount", message, None, call, calls).await?;
        if let Some(code) = pfs_error(&reply) {
            return Err(pfs_error_to_fhir(code));
        }
        let passphrase = reply
            .get("LinkAccountReply")
            .and_then(|r| r.get("passphrase"))
            .and_then(|p| p.as_str())
            .ok_or_else(broken)?
            .to_string();
        self.linked.remember(nhs, linkage.clone(), passphrase.clone());
        Ok(passphrase)
    }

    /// `Authenticate`, every session: the session's `suid` and the reply.
    async fn authenticate(
        &self,
        account_id: &str,
        passphrase: &str,
        call: &NativeCall<'_>,
        calls: &mut Vec<CallRecord>,
    ) -> FhirResult<(String, Native)> {
        let message = message_xml(
            "Authenticate",
            &serde_json::json!({ "accountId": account_id, "passphrase": passphrase,
                                  "providerId": self.creds.provider_id }),
            Some(&self.application()),
        )?;
        let request = self.pfs_request("Authenticate", message, None);
        let response = self.http.send(&request, call.request_id, calls).await?;
        let suid = response
            .headers
            .get("suid")
            .and_then(|v| v.to_str().ok())
            .map(String::from);
        let tree = self.reply_tree(response)?;
        if let Some(code) = pfs_error(&tree) {
            return Err(pfs_error_to_fhir(code));
        }
        Ok((suid.ok_or_else(broken)?, tree))
    }

    /// The `<Application>` element of the messages that identify this application (confirmed); the provider id
    /// is TPP's, from pairing. The name, version and device type are this proxy's own.
    fn application(&self) -> Value {
        serde_json::json!({ "name": "im1-fhir", "version": env!("CARGO_PKG_VERSION"),
                            "providerId": self.creds.provider_id, "deviceType": "Server" })
    }

    fn pfs_request(&self, message: &str, body: String, suid: Option<&str>) -> HttpRequest {
        let mut request = HttpRequest::new(Method::POST, format!("{}/pfs", self.base))
            .patient_facing()
            .header("type", message.to_string());
        if let Some(suid) = suid {
            request = request.header("suid", suid.to_string());
        }
        request.body = Some(("text/xml; charset=utf-8".into(), body.into_bytes()));
        // `Content-Type`/`Accept: text/xml` (confirmed).
        request.header("accept", "text/xml".to_string())
    }

    async fn post(
        &self,
        message: &str,
        body: String,
        suid: Option<&str>,
        call: &NativeCall<'_>,
        calls: &mut Vec<CallRecord>,
    ) -> FhirResult<Native> {
        let request = self.pfs_request(message, body, suid);
        let response = self.http.send(&request, call.request_id, calls).await?;
        self.reply_tree(response)
    }

    fn reply_tree(&self, response: super::client::HttpReply) -> FhirResult<Native> {
        if !response.status.is_success() {
            let mut error = status_error(response.status, &response.headers, SUPPLIER);
            if response.status.as_u16() == 503 {
                error.retry_after = retry_after(&response.headers).map(|d| d.as_secs().max(1)).or(Some(5));
            }
            return Err(error);
        }
        xml_tree::parse(&response.body).map_err(|_| broken())
    }
}

/// A PFS reply as mappings see it: the content of its root element (`<RequestPatientRecordReply>`), as
/// Client Integration replies are the content of their `Result`, so a mapping reads `reply.Event` on both.
fn reply_content(mut tree: Native) -> Native {
    if let Some(root) = tree.as_object_mut().filter(|root| root.len() == 1) {
        if let Some((_, content)) = root.iter_mut().next() {
            return content.take();
        }
    }
    tree
}

/// `<Name attr="..">` with every attribute escaped, and the `<Application>` child where the message carries one.
fn message_xml(name: &str, attributes_value: &Value, application: Option<&Value>) -> FhirResult<String> {
    let attrs = attributes(Some(attributes_value))?;
    let uuid = uuid::Uuid::new_v4();
    Ok(match application {
        Some(application) => {
            let application = attributes(Some(application))?;
            format!(r#"<{name} apiVersion="1" uuid="{uuid}"{attrs}><Application{application}/></{name}>"#)
        }
        None => format!(r#"<{name} apiVersion="1" uuid="{uuid}"{attrs}/>"#),
    })
}

/// Renders a JSON object as XML attributes (` a="1" b="x"`); null values are left out.
fn attributes(value: Option<&Value>) -> FhirResult<String> {
    let empty = Map::new();
    let object = match value {
        None | Some(Value::Null) => &empty,
        Some(Value::Object(o)) => o,
        Some(_) => return Err(malformed_request("attributes must be an object")),
    };
    let mut out = String::new();
    for (key, value) in object {
        if !key.bytes().all(|b| b.is_ascii_alphanumeric()) {
            return Err(malformed_request("attribute names are alphanumeric"));
        }
        let text = match value {
            Value::Null => continue,
            Value::String(s) => s.clone(),
            other => other.to_string(),
        };
        out.push_str(&format!(r#" {key}="{}""#, escape(&text)));
    }
    Ok(out)
}

fn pfs_error(tree: &Native) -> Option<u32> {
    let (_, root) = tree.as_object()?.iter().next()?;
    let error = if tree.get("Error").is_some() {
        root
    } else {
        root.get("Error")?.get(0)?
    };
    error.get("errorCode")?.as_str()?.parse().ok()
}

fn pfs_error_to_fhir(code: u32) -> FhirError {
    match code {
        6 => FhirError::forbidden(
            "IM1-4103",
            "TPP SystmOne: the service is switched off for this practice or patient",
        ),
        1001 | 1002 | 1102 | 1104 => FhirError::not_found("IM1-4104", "no such resource"),
        1103 => FhirError::conflict("IM1-4109", "TPP SystmOne: the slot is already booked"),
        12 => FhirError::unavailable(
            "IM1-4129",
            "TPP SystmOne is busy with this patient's session; try again",
        )
        .retry_after(1),
        99 => FhirError::unavailable(UNAVAILABLE, "TPP SystmOne is shedding load").retry_after(5),
        2006 | 2008 | 9 | 3 => FhirError::bad_gateway(
            "IM1-4202",
            format!("TPP SystmOne refused the credentials (error {code})"),
        ),
        other => FhirError::bad_gateway("IM1-4110", format!("TPP SystmOne refused the request (error {other})")),
    }
}

/// TPP's "unavailable" and "shedding load" (error 99): to come back after the `Retry-After` given.
const UNAVAILABLE: &str = "IM1-4503";

/// The `Result` of a successful Client Integration reply, or the FHIR error its `Error` means.
fn transaction_result(mut tree: Native) -> FhirResult<Native> {
    let response = tree.get_mut("ClientIntegrationResponse").ok_or_else(broken)?;
    if response.get("outcome").and_then(|o| o.as_str()) == Some("Success") {
        // Moved out of the tree, not copied: a record's result can be large.
        return Ok(response
            .get_mut("Result")
            .and_then(|result| result.get_mut(0))
            .map(Native::take)
            .unwrap_or_else(|| sonic_rs::Object::new().into_value()));
    }
    let code = response
        .get("Error")
        .and_then(|e| e.get(0))
        .and_then(|e| e.get("errorCode"))
        .and_then(|c| c.as_str())
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    Err(match code {
        500 => FhirError::bad_gateway("IM1-4500", "TPP SystmOne reported an internal error"),
        503 => FhirError::unavailable(UNAVAILABLE, "TPP SystmOne is unavailable").retry_after(5),
        other => pfs_error_to_fhir(other),
    })
}

fn malformed_request(what: &str) -> FhirError {
    FhirError::internal("IM1-3101", format!("the mapping's native request is malformed: {what}"))
}

/// A pooled connection still open, the newest first, if any; none when `fresh`, and the pool is emptied.
fn checkout(pool: &mut Vec<TcpStream>, fresh: bool) -> Option<TcpStream> {
    if fresh {
        pool.clear();
    }
    // One the GP system has closed (idle too long, or restarted) would fail the call: left behind.
    std::iter::from_fn(|| pool.pop()).find(still_open)
}

/// Whether a pooled connection is still open, as far as the runtime has seen: nothing waits to be read on an
/// idle one, so a read that would block means open; an end of stream (the GP system closed it) or anything else
/// means it cannot be used. A close not yet seen passes, and the call fails as it would have.
fn still_open(stream: &TcpStream) -> bool {
    matches!(stream.try_read(&mut [0u8; 1]), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[tokio::test]
    async fn a_pooled_connection_the_gp_system_closed_is_not_used() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let mut pool = Vec::new();
        let mut theirs = Vec::new();
        for _ in 0..3 {
            pool.push(TcpStream::connect(listener.local_addr().unwrap()).await.unwrap());
            theirs.push(listener.accept().await.unwrap().0);
        }
        let open = pool[0].local_addr().unwrap();
        // The GP system closes the two newest; the end of stream arrives a moment later.
        theirs.truncate(1);
        tokio::time::sleep(Duration::from_millis(50)).await;
        let taken = checkout(&mut pool, false).unwrap();
        assert_eq!(taken.local_addr().unwrap(), open);
        assert!(pool.is_empty(), "the closed ones are left behind");
        // The breaker's trial takes none, and empties the pool.
        pool.push(taken);
        assert!(checkout(&mut pool, true).is_none());
        assert!(pool.is_empty());
    }

    #[test]
    fn only_reads_are_taken_for_reads() {
        assert!(is_read(&json!({ "function": "GetPatientRecord" })));
        assert!(is_read(&json!({ "message": "RequestPatientRecord" })));
        for write in [
            json!({ "function": "BookAppointment" }),
            json!({ "message": "BookAppointment" }),
            json!({ "message": "RequestMedication" }),
            json!({ "path": "record" }),
        ] {
            assert!(!is_read(&write), "{write}");
        }
    }
}
