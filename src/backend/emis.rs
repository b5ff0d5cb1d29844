//! EMIS Web: transport and session flow only.
//! - Transaction surface: the Partner API, a client-credentials bearer token (renewed on 401) and the
//!   practice's CDB number in `X-EMIS-OrganisationCdb`.
//! - Patient surface: PFS, with the confirmed header-carried session flow: `sessions/endusersession`,
//!   one-off linking through `me/applications`, then `sessions`; the patient is chosen per call by
//!   `userPatientLinkToken`: the `Self` link, or the `Proxy` link of the record the call is about. A session
//!   that has gone (401, or "Missing or invalid EndUserSessionId") is rebuilt once. A mapping asking for
//!   `POST sessions` gets the reply the session's start received (the user and their links): starting a
//!   session is the dialect's business, not a mapping's.

use super::client::{status_error, CallRecord, HttpClient, HttpReply, HttpRequest};
use super::credentials::{CredentialStore, Linkage};
use super::sessions::SessionSlots;
use super::{parse_json, HttpCallSpec, NativeCall};
use crate::config::EmisCredentials;
use crate::fhir::{FhirError, FhirResult};
use crate::mapping::node::Native;
use crate::mapping::Surface;
use http::{Method, StatusCode};
use serde_json::json;
use sonic_rs::{JsonContainerTrait, JsonValueTrait};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::Mutex;

const SUPPLIER: &str = "EMIS Web";
const API_VERSION: &str = "2.1.0.0";

pub struct Emis {
    ods: String,
    base: String,
    creds: EmisCredentials,
    http: HttpClient,
    linkage: Arc<CredentialStore>,
    partner_token: Mutex<Option<(String, Instant)>>,
    /// PFS sessions per patient NHS number.
    sessions: SessionSlots<PfsSession>,
}

#[derive(Clone)]
struct PfsSession {
    end_user_session: String,
    session: String,
    /// (PatientGuid, UserPatientLinkToken) per link, the `Self` link first.
    links: Vec<(String, String)>,
    /// The `sessions` reply: the user's name and links.
    reply: Arc<Native>,
}

impl PfsSession {
    /// The link token for a record: the user's own without one.
    fn link_token(&self, record: Option<&str>) -> FhirResult<&str> {
        let link = match record {
            None => self.links.first(),
            Some(record) => self.links.iter().find(|(guid, _)| guid.eq_ignore_ascii_case(record)),
        };
        link.map(|(_, token)| token.as_str()).ok_or_else(super::not_linked)
    }
}

impl Emis {
    pub fn new(ods: &str, base: &str, creds: EmisCredentials, http: HttpClient, linkage: Arc<CredentialStore>) -> Emis {
        Emis {
            ods: ods.to_string(),
            base: base.to_string(),
            creds,
            http,
            linkage,
            partner_token: Mutex::new(None),
            sessions: SessionSlots::default(),
        }
    }

    pub async fn call(&self, call: &NativeCall<'_>, calls: &mut Vec<CallRecord>) -> FhirResult<Native> {
        let spec = HttpCallSpec::read(call.request)?;
        match call.surface {
            Surface::Transaction => self.partner(&spec, call.request_id, calls).await,
            Surface::Patient => {
                let nhs = call
                    .patient_nhs
                    .ok_or_else(|| FhirError::internal("IM1-4201", "a patient-facing call needs the patient"))?;
                if spec.method == Method::POST && spec.path == "sessions" {
                    let session = self.pfs_session(nhs, call.request_id, calls, false).await?;
                    return Ok(session.reply.as_ref().clone());
                }
                self.pfs(&spec, nhs, call.record, call.request_id, calls).await
            }
        }
    }

    /// The PatientGuids the user's session links: their own (`Self`) first, then those they act for.
    pub async fn linked_records(
        &self,
        nhs: &str,
        request_id: &str,
        calls: &mut Vec<CallRecord>,
    ) -> FhirResult<Vec<String>> {
        // A new session: its links are the linkage as it is now (a revoked proxy link is gone), not as it was
        // when the cached session began.
        let session = self.pfs_session(nhs, request_id, calls, true).await?;
        Ok(session.links.into_iter().map(|(guid, _)| guid).collect())
    }

    async fn partner(
        &self,
        spec: &HttpCallSpec<'_>,
        request_id: &str,
        calls: &mut Vec<CallRecord>,
    ) -> FhirResult<Native> {
        for attempt in 0..2 {
            let token = self.partner_token(request_id, calls, attempt > 0).await?;
            let mut request =
                HttpRequest::new(spec.method.clone(), spec.url(&format!("{}/partner/v1", self.base), &[]))
                    .header("Authorization", format!("Bearer {token}"))
                    .header("X-EMIS-OrganisationCdb", self.creds.cdb.clone());
            request.json = spec.body.cloned();
            let reply = self.http.send(&request, request_id, calls).await?;
            if reply.status == StatusCode::UNAUTHORIZED && attempt == 0 {
                continue;
            }
            return reply_body(reply);
        }
        Err(FhirError::bad_gateway(
            "IM1-4202",
            "EMIS Web refused the practice's Partner API credentials",
        ))
    }

    async fn partner_token(&self, request_id: &str, calls: &mut Vec<CallRecord>, renew: bool) -> FhirResult<String> {
        let mut token = self.partner_token.lock().await;
        if let Some((value, expires)) = token.as_ref() {
            if !renew && Instant::now() < *expires {
                return Ok(value.clone());
            }
        }
        let mut request = HttpRequest::new(Method::POST, format!("{}/partner/v1/token", self.base));
        request.form = Some(vec![
            ("grant_type".into(), "client_credentials".into()),
            ("client_id".into(), self.creds.partner_client_id.clone()),
            (
                "client_secret".into(),
                self.creds.partner_client_secret.expose().to_string(),
            ),
        ]);
        let reply = self.http.send(&request, request_id, calls).await?;
        if !reply.status.is_success() {
            return Err(FhirError::bad_gateway(
                "IM1-4202",
                "EMIS Web refused the practice's Partner API credentials",
            ));
        }
        let body = parse_json(&reply.body, SUPPLIER)?;
        let value = field(&body, "access_token")?;
        let lifetime = body.get("expires_in").and_then(|v| v.as_u64()).unwrap_or(300);
        // Renew a little early so that a token never expires on its way.
        *token = Some((
            value.clone(),
            Instant::now() + Duration::from_secs(lifetime.saturating_sub(30).max(1)),
        ));
        Ok(value)
    }

    async fn pfs(
        &self,
        spec: &HttpCallSpec<'_>,
        nhs: &str,
        record: Option<&str>,
        request_id: &str,
        calls: &mut Vec<CallRecord>,
    ) -> FhirResult<Native> {
        for attempt in 0..2 {
            let session = self.pfs_session(nhs, request_id, calls, attempt > 0).await?;
            let is_get = spec.method == Method::GET;
            let link_token = session.link_token(record)?;
            let link = [("userPatientLinkToken", link_token)];
            let url = spec.url(&format!("{}/pfs", self.base), if is_get { &link } else { &[] });
            let mut request = self
                .pfs_request(spec.method.clone(), url)
                .header("X-API-EndUserSessionId", session.end_user_session.clone())
                .header("X-API-SessionId", session.session.clone());
            if let Some(body) = spec.body {
                let mut body = body.clone();
                if let Some(object) = body.as_object_mut() {
                    object.insert("UserPatientLinkToken".into(), json!(link_token));
                }
                request.json = Some(body);
            }
            let reply = self.http.send(&request, request_id, calls).await?;
            if session_gone(&reply) && attempt == 0 {
                continue;
            }
            return reply_body(reply);
        }
        Err(FhirError::bad_gateway(
            "IM1-4203",
            "EMIS Web kept refusing the patient's session",
        ))
    }

    fn pfs_request(&self, method: Method, url: String) -> HttpRequest {
        HttpRequest::new(method, url)
            .patient_facing()
            .header("X-API-ApplicationId", self.creds.application_id.clone())
            .header("X-API-Version", API_VERSION)
    }

    async fn pfs_session(
        &self,
        nhs: &str,
        request_id: &str,
        calls: &mut Vec<CallRecord>,
        renew: bool,
    ) -> FhirResult<PfsSession> {
        // Only this patient's slot is held while a session starts: other patients' requests go on.
        let slot = self.sessions.slot(nhs).await;
        let mut current = slot.lock().await;
        if !renew {
            if let Some(session) = current.as_ref() {
                return Ok(session.clone());
            }
        }
        let Some(Linkage::Emis {
            account_id,
            linkage_key,
            surname,
            date_of_birth,
        }) = self.linkage.get(&self.ods, nhs)
        else {
            return Err(super::credentials::no_linkage());
        };
        let base = format!("{}/pfs", self.base);
        let reply = self
            .http
            .send(
                &self.pfs_request(Method::POST, format!("{base}/sessions/endusersession")),
                request_id,
                calls,
            )
            .await?;
        let end_user_session = field(&reply_body(reply)?, "EndUserSessionId")?;

        let mut link = self
            .pfs_request(Method::POST, format!("{base}/me/applications"))
            .header("X-API-EndUserSessionId", end_user_session.clone());
        link.json = Some(json!({
            "Surname": surname,
            "DateOfBirth": date_of_birth,
            "LinkageDetails": { "AccountId": account_id, "LinkageKey": linkage_key, "NationalPracticeCode": self.ods },
        }));
        let access_identity = field(
            &reply_body(self.http.send(&link, request_id, calls).await?)?,
            "AccessIdentityGuid",
        )?;

        let mut start = self
            .pfs_request(Method::POST, format!("{base}/sessions"))
            .header("X-API-EndUserSessionId", end_user_session.clone());
        start.json = Some(json!({ "AccessIdentityGuid": access_identity, "NationalPracticeCode": self.ods }));
        let body = reply_body(self.http.send(&start, request_id, calls).await?)?;
        let session = field(&body, "SessionId")?;
        let session = PfsSession {
            end_user_session,
            session,
            links: session_links(&body)?,
            reply: Arc::new(body),
        };
        *current = Some(session.clone());
        Ok(session)
    }
}

/// A session's links as (PatientGuid, link token), the `Self` link first; a session without one is broken.
fn session_links(body: &Native) -> FhirResult<Vec<(String, String)>> {
    let links = body
        .get("UserPatientLinks")
        .and_then(|v| v.as_array())
        .ok_or_else(malformed)?;
    let mut own = None;
    let mut proxies = Vec::new();
    for link in links {
        let pair = (field(link, "PatientGuid")?, field(link, "UserPatientLinkToken")?);
        match link.get("AssociationType").and_then(|v| v.as_str()) {
            Some("Self") => own = Some(pair),
            Some("Proxy") => proxies.push(pair),
            _ => {}
        }
    }
    let mut out = vec![own.ok_or_else(malformed)?];
    out.extend(proxies);
    Ok(out)
}

fn session_gone(reply: &HttpReply) -> bool {
    reply.status == StatusCode::UNAUTHORIZED
        || (reply.status == StatusCode::BAD_REQUEST
            && String::from_utf8_lossy(&reply.body).contains("Missing or invalid EndUserSessionId"))
}

/// The JSON body of a successful reply, or the FHIR error its status and EMIS error body mean.
fn reply_body(reply: HttpReply) -> FhirResult<Native> {
    if reply.status.is_success() {
        return super::success_body(&reply, SUPPLIER);
    }
    let body: serde_json::Value = serde_json::from_slice(&reply.body).unwrap_or_default();
    let text = String::from_utf8_lossy(&reply.body);
    if reply.status == StatusCode::FORBIDDEN || text.contains("Services Access violation") {
        return Err(FhirError::forbidden(
            "IM1-4103",
            "EMIS Web: the service is switched off for this practice or patient",
        ));
    }
    if let Some(code) = body.get("InternalResponseCode").and_then(serde_json::Value::as_i64) {
        return Err(FhirError::bad_gateway(
            "IM1-4110",
            format!("EMIS Web refused the request (internal code {code})"),
        ));
    }
    if reply.status == StatusCode::BAD_REQUEST && body.get("ModelState").is_some() {
        return Err(FhirError::bad_gateway("IM1-4111", "EMIS Web found the request invalid"));
    }
    Err(status_error(reply.status, &reply.headers, SUPPLIER))
}

fn field(body: &Native, name: &str) -> FhirResult<String> {
    body.get(name)
        .and_then(|v| v.as_str())
        .map(String::from)
        .ok_or_else(malformed)
}

fn malformed() -> FhirError {
    FhirError::bad_gateway("IM1-4006", "EMIS Web sent a reply without the expected fields")
}
