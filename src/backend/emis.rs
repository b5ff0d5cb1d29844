//! EMIS Web: transport and session flow only.
//! - Transaction surface: the Partner API as our simulator speaks it (invented: EMIS-X's confirmed flow is a
//!   desktop launch with Authorization Code + PKCE), a client-credentials bearer token (renewed on 401) and the
//!   practice's CDB number (confirmed as an EMIS identifier) in `X-EMIS-OrganisationCdb` (invented).
//! - Patient surface: PFS, with the confirmed header-carried session flow: `sessions/endusersession`,
//!   one-off linking through `me/applications` (its AccessIdentityGuid kept for later sessions), then
//!   `sessions`; the patient is chosen per call by `userPatientLinkToken`: the `Self` link, or the `Proxy` link
//!   of the record the call is about. Links name no patient, so each link's record is read once per session
//!   for its `PatientGuid`. A session
//!   that has gone (401, or "Missing or invalid EndUserSessionId") is rebuilt once. A mapping asking for
//!   `POST sessions` gets the reply the session's start received (the user and their links): starting a
//!   session is the dialect's business, not a mapping's.

use super::client::{status_error, CallRecord, HttpClient, HttpReply, HttpRequest};
use super::credentials::{CredentialStore, LinkMemory, Linkage};
use super::sessions::SessionSlots;
use super::{parse_json, HttpCallSpec, NativeCall};
use crate::config::EmisCredentials;
use crate::fhir::{FhirError, FhirResult};
use crate::mapping::node::Native;
use crate::mapping::Surface;
use http::{Method, StatusCode};
use serde_json::json;
use sonic_rs::{JsonContainerTrait, JsonValueMutTrait, JsonValueTrait};
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
    partner_token: Mutex<PartnerToken>,
    /// PFS sessions per patient NHS number.
    sessions: SessionSlots<PfsSession>,
    /// Linking (`me/applications`) is one-off (confirmed): the AccessIdentityGuid it gave, for every later
    /// `sessions`.
    linked: LinkMemory,
}

/// How long a failure of the Partner token endpoint is given again to every request, when it names no
/// `Retry-After`: long enough that a queue of requests does not each wait out a failing call.
const FAILURE_MEMORY_SECONDS: u64 = 5;

/// The practice's Partner token, or the endpoint's failure and until when it is said again.
enum PartnerToken {
    None,
    Held(String, Instant),
    Failed(FhirError, Instant),
}

#[derive(Clone)]
struct PfsSession {
    end_user_session: String,
    session: String,
    /// (PatientGuid, UserPatientLinkToken) per link, the `Self` link first.
    links: Vec<(String, String)>,
    /// The `sessions` reply: the user's name and links, each link with the `PatientGuid` of its record added
    /// (EMIS's links name no patient: see `link_patient`).
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
            partner_token: Mutex::new(PartnerToken::None),
            sessions: SessionSlots::default(),
            linked: Default::default(),
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
        let mut refused: Option<String> = None;
        for attempt in 0..2 {
            let token = self.partner_token(request_id, calls, refused.as_deref()).await?;
            let mut request =
                HttpRequest::new(spec.method.clone(), spec.url(&format!("{}/partner/v1", self.base), &[]))
                    .header("Authorization", format!("Bearer {token}"))
                    .header("X-EMIS-OrganisationCdb", self.creds.cdb.clone());
            request.json = spec.body.cloned();
            let reply = self.http.send(&request, request_id, calls).await?;
            if reply.status == StatusCode::UNAUTHORIZED && attempt == 0 {
                refused = Some(token);
                continue;
            }
            return reply_body(reply);
        }
        Err(FhirError::bad_gateway(
            "IM1-4202",
            "EMIS Web refused the practice's Partner API credentials",
        ))
    }

    /// The practice's Partner token: the one held while it lasts, unless it is the one EMIS has just refused
    /// (`refused`). Many requests refused together renew it once: the first renews, the others find a new one.
    async fn partner_token(
        &self,
        request_id: &str,
        calls: &mut Vec<CallRecord>,
        refused: Option<&str>,
    ) -> FhirResult<String> {
        let mut token = self.partner_token.lock().await;
        match &*token {
            PartnerToken::Held(value, expires) if Some(value.as_str()) != refused && Instant::now() < *expires => {
                return Ok(value.clone());
            }
            // The endpoint failed a moment ago: said again at once, rather than every waiting request
            // trying it in turn, each for up to its deadline, while it is down.
            PartnerToken::Failed(error, until) if Instant::now() < *until => return Err(error.clone()),
            _ => {}
        }
        let attempts_before = calls.len();
        let fetched = self.fetch_partner_token(request_id, calls).await;
        match fetched {
            Ok((value, expires)) => {
                *token = PartnerToken::Held(value.clone(), expires);
                Ok(value)
            }
            Err(error) => {
                // Only what the endpoint did is remembered: not a refusal of the credentials (corrected, they
                // work at once), nor this server's own queue (no place or turn before the deadline: no call).
                let endpoint_failed = calls.len() > attempts_before;
                if endpoint_failed && error.code != "IM1-4202" {
                    let pause = Duration::from_secs(error.retry_after.unwrap_or(FAILURE_MEMORY_SECONDS));
                    *token = PartnerToken::Failed(error.clone(), Instant::now() + pause);
                }
                Err(error)
            }
        }
    }

    /// Asks EMIS for a Partner token: its value and when to renew it.
    async fn fetch_partner_token(
        &self,
        request_id: &str,
        calls: &mut Vec<CallRecord>,
    ) -> FhirResult<(String, Instant)> {
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
        match reply.status.as_u16() {
            200..=299 => {}
            // OAuth's refusals of a client (invalid_client is a 400 or a 401).
            400 | 401 | 403 => {
                return Err(FhirError::bad_gateway(
                    "IM1-4202",
                    "EMIS Web refused the practice's Partner API credentials",
                ))
            }
            // Busy or down is not refused: said as such, with when to try again.
            429 | 503 | 504 => return Err(status_error(reply.status, &reply.headers, SUPPLIER)),
            status => {
                return Err(FhirError::bad_gateway(
                    "IM1-4500",
                    format!("EMIS Web's Partner token endpoint answered with status {status}"),
                ))
            }
        }
        let body = parse_json(&reply.body, SUPPLIER)?;
        let value = field(&body, "access_token")?;
        let lifetime = body.get("expires_in").and_then(|v| v.as_u64()).unwrap_or(300);
        // Renew a little early so that a token never expires on its way.
        Ok((
            value,
            Instant::now() + Duration::from_secs(lifetime.saturating_sub(30).max(1)),
        ))
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
            let link = [(link_parameter(spec.path), link_token)];
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

    /// `me/applications`, one-off: the AccessIdentityGuid it gives, remembered.
    async fn link(
        &self,
        nhs: &str,
        linkage: &Linkage,
        request: &HttpRequest,
        request_id: &str,
        calls: &mut Vec<CallRecord>,
    ) -> FhirResult<String> {
        let access_identity = field(
            &reply_body(self.http.send(request, request_id, calls).await?)?,
            "AccessIdentityGuid",
        )?;
        self.linked.remember(nhs, linkage.clone(), access_identity.clone());
        Ok(access_identity)
    }

    /// Whose record a link opens: the `PatientGuid` of its `MedicalRecord` (confirmed), read from the smallest
    /// section, since the link itself names no patient.
    async fn link_patient(
        &self,
        end_user_session: &str,
        session: &str,
        token: &str,
        request_id: &str,
        calls: &mut Vec<CallRecord>,
    ) -> FhirResult<String> {
        let url = format!(
            "{}/pfs/record?{}={}&itemType=Allergies",
            self.base,
            link_parameter("record"),
            percent_encoding::utf8_percent_encode(token, percent_encoding::NON_ALPHANUMERIC)
        );
        let request = self
            .pfs_request(Method::GET, url)
            .header("X-API-EndUserSessionId", end_user_session.to_string())
            .header("X-API-SessionId", session.to_string());
        let record = reply_body(self.http.send(&request, request_id, calls).await?)?;
        record
            .get("MedicalRecord")
            .map(|r| field(r, "PatientGuid"))
            .unwrap_or_else(|| Err(malformed()))
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
        let linkage = self.linkage.get(&self.ods, nhs);
        let Some(
            linkage @ Linkage::Emis {
                account_id,
                linkage_key,
                surname,
                date_of_birth,
            },
        ) = linkage.as_ref()
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

        let link_request = || {
            let mut link = self
                .pfs_request(Method::POST, format!("{base}/me/applications"))
                .header("X-API-EndUserSessionId", end_user_session.clone());
            link.json = Some(json!({
                "Surname": surname,
                "DateOfBirth": date_of_birth,
                "LinkageDetails": { "AccountId": account_id, "LinkageKey": linkage_key, "NationalPracticeCode": self.ods },
            }));
            link
        };
        let start_request = |access_identity: &str| {
            let mut start = self
                .pfs_request(Method::POST, format!("{base}/sessions"))
                .header("X-API-EndUserSessionId", end_user_session.clone());
            start.json = Some(json!({ "AccessIdentityGuid": access_identity, "NationalPracticeCode": self.ods }));
            start
        };
        // From the identity an earlier link gave, unless EMIS no longer takes it (the practice revoked the
        // linkage); else linked (again), once.
        let started = match self.linked.get(nhs, linkage) {
            Some(known) => match reply_body(self.http.send(&start_request(&known), request_id, calls).await?) {
                Err(e) if e.code == "IM1-4110" || e.code == "IM1-4111" => None,
                other => Some(other?),
            },
            None => None,
        };
        let mut body = match started {
            Some(body) => body,
            None => {
                let access_identity = self.link(nhs, linkage, &link_request(), request_id, calls).await?;
                reply_body(
                    self.http
                        .send(&start_request(&access_identity), request_id, calls)
                        .await?,
                )?
            }
        };
        let session = field(&body, "SessionId")?;
        let tokens = session_links(&body)?;
        let mut links = Vec::with_capacity(tokens.len());
        for (i, token) in tokens.into_iter().enumerate() {
            match self
                .link_patient(&end_user_session, &session, &token, request_id, calls)
                .await
            {
                Ok(guid) => links.push((guid, token)),
                // A record EMIS will not show this application (Records switched off for that patient): a
                // proxy link to it is left out, as one the user cannot use here; the user's own is needed to
                // know them at all.
                Err(e) if i > 0 && matches!(e.code, "IM1-4103" | "IM1-4104") => {}
                Err(e) if matches!(e.code, "IM1-4103" | "IM1-4104") => {
                    return Err(FhirError::forbidden(
                        "IM1-4105",
                        "EMIS Web does not show this application the patient's record, which is what names \
                         them (the Records service is switched off for them or their practice)",
                    ))
                }
                Err(e) => return Err(e),
            }
        }
        add_link_patients(&mut body, &links);
        let session = PfsSession {
            end_user_session,
            session,
            links,
            reply: Arc::new(body),
        };
        *current = Some(session.clone());
        Ok(session)
    }
}

/// A session's link tokens, the `Self` link first; a session without one is broken. A link names no patient
/// (`UserPatientLinkToken, AssociationType, NationalPracticeCode`, confirmed).
fn session_links(body: &Native) -> FhirResult<Vec<String>> {
    let links = body
        .get("UserPatientLinks")
        .and_then(|v| v.as_array())
        .ok_or_else(malformed)?;
    let mut own = None;
    let mut proxies = Vec::new();
    for link in links {
        let token = field(link, "UserPatientLinkToken")?;
        match link.get("AssociationType").and_then(|v| v.as_str()) {
            Some("Self") => own = Some(token),
            Some("Proxy") => proxies.push(token),
            _ => {}
        }
    }
    let mut out = vec![own.ok_or_else(malformed)?];
    out.extend(proxies);
    Ok(out)
}

/// Writes each link's `PatientGuid` into the session reply, for the mappings that read the links (proxy
/// access as RelatedPerson): the proxy's addition, not EMIS's.
fn add_link_patients(body: &mut Native, links: &[(String, String)]) {
    let Some(listed) = body
        .as_object_mut()
        .and_then(|o| o.get_mut(&"UserPatientLinks"))
        .and_then(|v| v.as_array_mut())
    else {
        return;
    };
    for link in listed.iter_mut() {
        let token = link
            .get("UserPatientLinkToken")
            .and_then(|v| v.as_str())
            .map(String::from);
        let guid = links
            .iter()
            .find(|(_, t)| Some(t) == token.as_ref())
            .map(|(g, _)| g.clone());
        if let (Some(object), Some(guid)) = (link.as_object_mut(), guid) {
            object.insert(&"PatientGuid", Native::from(guid.as_str()));
        }
    }
}

/// A 401, or a body saying so, whatever its status (confirmed).
fn session_gone(reply: &HttpReply) -> bool {
    reply.status == StatusCode::UNAUTHORIZED
        || (!reply.status.is_success()
            && String::from_utf8_lossy(&reply.body).contains("Missing or invalid EndUserSessionId"))
}

/// The query parameter a GET names its link in, spelt as each call's confirmed form spells it: `appointments`
/// takes `UserPatientLinkToken`, the others `userPatientLinkToken`.
fn link_parameter(path: &str) -> &'static str {
    match path.trim_matches('/') {
        "appointments" => "UserPatientLinkToken",
        _ => "userPatientLinkToken",
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    fn reply(status: u16, body: &str) -> HttpReply {
        HttpReply {
            status: StatusCode::from_u16(status).unwrap(),
            headers: http::HeaderMap::new(),
            body: body.to_string().into(),
        }
    }

    #[test]
    fn a_session_is_gone_on_401_or_when_a_refusal_says_so() {
        assert!(session_gone(&reply(401, "")));
        let said = r#"{"Message":"Missing or invalid EndUserSessionId"}"#;
        assert!(session_gone(&reply(400, said)));
        assert!(session_gone(&reply(403, said)));
        assert!(!session_gone(&reply(200, said)));
        assert!(!session_gone(&reply(400, r#"{"Message":"Slot not found"}"#)));
    }

    #[test]
    fn each_call_names_its_link_as_confirmed() {
        assert_eq!(link_parameter("appointments"), "UserPatientLinkToken");
        assert_eq!(link_parameter("record"), "userPatientLinkToken");
        assert_eq!(link_parameter("appointmentslots/meta"), "userPatientLinkToken");
    }
}
