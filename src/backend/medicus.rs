//! Medicus: stateless JSON REST with a freshly signed RS256 JWT on every call (confirmed), per-practice tenant
//! URLs, and no session to keep.
//! - Transaction surface: `transactional-api/v1/<path>`; the JWT names the app and the tenant.
//! - Patient surface: `pfs-api/v1/patient/<patientId>/<path>`: the JWT also carries the patient's NHS login
//!   `sub`; the patient id comes from exchanging the patient's linkage token once (or, once exchanged, from
//!   `user/list-linked-patients`). The call's record, when it names one, is a patient the user acts for
//!   (proxy access); a mapping path under `user/` is a call about the user, not one of their patients.
//!
//! Signing costs about a third of a millisecond per call: that is native cost, measured apart from the proxy's.

use super::client::{status_error, CallRecord, HttpClient, HttpReply, HttpRequest};
use super::credentials::{CredentialStore, Linkage};
use super::sessions::SessionSlots;
use super::{HttpCallSpec, NativeCall};
use crate::config::MedicusCredentials;
use crate::fhir::{FhirError, FhirResult};
use crate::mapping::node::Native;
use crate::mapping::Surface;
use http::{Method, StatusCode};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{json, Value};
use sonic_rs::{JsonContainerTrait, JsonValueTrait};
use std::sync::Arc;

const SUPPLIER: &str = "Medicus";
/// A JWT lives one minute: long enough for the call, short enough to be useless if it leaks.
const JWT_LIFETIME_SECONDS: u64 = 60;

pub struct Medicus {
    ods: String,
    base: String,
    creds: MedicusCredentials,
    key: Result<EncodingKey, String>,
    http: HttpClient,
    linkage: Arc<CredentialStore>,
    /// Each patient's own native id, learnt from the linkage exchange, with the linkage it was learnt through:
    /// one slot per patient, so one slow first exchange holds up that patient only.
    patient_ids: SessionSlots<(Linkage, String)>,
}

impl Medicus {
    pub fn new(
        ods: &str,
        base: &str,
        creds: MedicusCredentials,
        http: HttpClient,
        linkage: Arc<CredentialStore>,
    ) -> Medicus {
        let key = EncodingKey::from_rsa_pem(creds.private_key.expose().as_bytes())
            .map_err(|_| "the Medicus signing key is not an RSA private key in PEM".to_string());
        Medicus {
            ods: ods.into(),
            base: base.into(),
            creds,
            key,
            http,
            linkage,
            patient_ids: SessionSlots::default(),
        }
    }

    pub async fn call(&self, call: &NativeCall<'_>, calls: &mut Vec<CallRecord>) -> FhirResult<Native> {
        let spec = HttpCallSpec::read(call.request)?;
        match call.surface {
            Surface::Transaction => {
                let url = spec.url(&format!("{}/transactional-api/v1", self.base), &[]);
                let reply = self.send(&spec, url, None, call, calls).await?;
                reply_body(reply)
            }
            Surface::Patient => {
                let nhs = call
                    .patient_nhs
                    .ok_or_else(|| FhirError::internal("IM1-4201", "a patient-facing call needs the patient"))?;
                let linkage = self.linkage.get(&self.ods, nhs);
                let Some(linkage @ Linkage::Medicus { nhs_login_sub, .. }) = linkage.as_ref() else {
                    return Err(super::credentials::no_linkage());
                };
                let own = self.patient_id(nhs, linkage, call, calls).await?;
                let url = if spec.path.starts_with("user/") {
                    spec.url(&format!("{}/pfs-api/v1", self.base), &[])
                } else {
                    let patient_id = call.record.unwrap_or(&own);
                    let patient_id = percent_encoding::utf8_percent_encode(patient_id, super::PATH_SEGMENT);
                    spec.url(&format!("{}/pfs-api/v1/patient/{patient_id}", self.base), &[])
                };
                let reply = self.send(&spec, url, Some(nhs_login_sub), call, calls).await?;
                reply_body(reply)
            }
        }
    }

    /// The patient ids the user's linkage reaches: their own (from the exchange) first, then those
    /// `list-linked-patients` gives as `proxy`.
    pub async fn linked_records(
        &self,
        nhs: &str,
        request_id: &str,
        calls: &mut Vec<CallRecord>,
    ) -> FhirResult<Vec<String>> {
        let request = json!({ "method": "GET", "path": "user/list-linked-patients" });
        let call = NativeCall {
            surface: Surface::Patient,
            request: &request,
            patient_nhs: Some(nhs),
            record: None,
            request_id,
        };
        let listed = self.call(&call, calls).await?;
        let mut keys: Vec<String> = associated(&listed, "self").take(1).collect();
        if keys.is_empty() {
            return Err(malformed());
        }
        keys.extend(associated(&listed, "proxy"));
        Ok(keys)
    }

    async fn send(
        &self,
        spec: &HttpCallSpec<'_>,
        url: String,
        nhs_login_sub: Option<&str>,
        call: &NativeCall<'_>,
        calls: &mut Vec<CallRecord>,
    ) -> FhirResult<HttpReply> {
        let mut request = HttpRequest::new(spec.method.clone(), url);
        request.json = spec.body.cloned();
        request.surface = call.surface;
        // Medicus write calls carry an Idempotency-Key (confirmed): one per call, the same on its retries, so a
        // retry of a write that went through is answered, not done twice.
        if spec.method == Method::POST {
            request
                .headers
                .push(("idempotency-key", uuid::Uuid::new_v4().to_string()));
        }
        // Signed per attempt: a retried call must not replay its `jti`.
        let sign = || self.jwt(nhs_login_sub).map(|t| Some(format!("Bearer {t}")));
        self.http.send_with(&request, call.request_id, calls, &sign).await
    }

    /// A fresh JWT: every call, and every retry, gets its own `jti`.
    fn jwt(&self, nhs_login_sub: Option<&str>) -> FhirResult<String> {
        let key = self
            .key
            .as_ref()
            .map_err(|e| FhirError::internal("IM1-4301", e.clone()))?;
        let now = crate::auth::token::now_seconds();
        let mut claims = json!({
            "iss": self.creds.app_id,
            "aud": self.creds.tenant,
            "iat": now,
            "exp": now + JWT_LIFETIME_SECONDS,
            "jti": uuid::Uuid::new_v4().to_string(),
        });
        if let Some(sub) = nhs_login_sub {
            claims["userIdentifierType"] = json!("nhs-login-sub");
            claims["userIdentifierValue"] = json!(sub);
        }
        let mut header = Header::new(Algorithm::RS256);
        header.typ = Some("JWT".into());
        header.kid = Some(self.creds.key_id.clone());
        jsonwebtoken::encode(&header, &claims, key)
            .map_err(|_| FhirError::internal("IM1-4302", "could not sign the Medicus JWT"))
    }

    async fn patient_id(
        &self,
        nhs: &str,
        linkage: &Linkage,
        call: &NativeCall<'_>,
        calls: &mut Vec<CallRecord>,
    ) -> FhirResult<String> {
        let Linkage::Medicus {
            linkage_token,
            date_of_birth,
            nhs_login_sub: sub,
        } = linkage
        else {
            return Err(super::credentials::no_linkage());
        };
        let slot = self.patient_ids.slot(nhs).await;
        let mut known = slot.lock().await;
        // Learnt through another linkage (corrected or replaced since): exchanged again.
        if let Some((_, id)) = known.as_ref().filter(|(made_with, _)| made_with == linkage) {
            return Ok(id.clone());
        }
        let exchange = json!({ "path": "user/exchange-linkage-token", "method": "POST",
                               "body": { "linkageToken": linkage_token, "dateOfBirth": date_of_birth } });
        let spec = HttpCallSpec::read(&exchange)?;
        let reply = self
            .send(
                &spec,
                format!("{}/pfs-api/v1/user/exchange-linkage-token", self.base),
                Some(sub),
                call,
                calls,
            )
            .await?;
        let id = if reply.status == StatusCode::CONFLICT {
            // Exchanged before (by an earlier run of the proxy): the linkage stands; find the patient's own entry.
            let list = json!({ "path": "user/list-linked-patients", "method": "GET" });
            let spec = HttpCallSpec::read(&list)?;
            let reply = self
                .send(
                    &spec,
                    format!("{}/pfs-api/v1/user/list-linked-patients", self.base),
                    Some(sub),
                    call,
                    calls,
                )
                .await?;
            associated(&reply_body(reply)?, "self").next().ok_or_else(malformed)?
        } else {
            let body = reply_body(reply)?;
            body.get("patientId")
                .and_then(|v| v.as_str())
                .map(String::from)
                .ok_or_else(malformed)?
        };
        *known = Some((linkage.clone(), id.clone()));
        Ok(id)
    }
}

/// The patient ids a `list-linked-patients` reply gives for one association type (`self` or `proxy`).
fn associated<'a>(listed: &'a Native, association: &'a str) -> impl Iterator<Item = String> + 'a {
    listed
        .get("associatedPatients")
        .and_then(|v| v.as_array())
        .into_iter()
        .flat_map(|patients| patients.as_slice())
        .filter(move |p| p.get("associationType").and_then(|v| v.as_str()) == Some(association))
        .filter_map(|p| p.get("id").and_then(|v| v.as_str()).map(String::from))
}

/// The JSON body of a successful reply, or the FHIR error its status and `errors[]` mean.
fn reply_body(reply: HttpReply) -> FhirResult<Native> {
    if reply.status.is_success() {
        return super::success_body(&reply, SUPPLIER);
    }
    let body: Value = serde_json::from_slice(&reply.body).unwrap_or(Value::Null);
    let code = body.pointer("/errors/0/code").and_then(Value::as_str).unwrap_or("");
    // Medicus's codes are upper-case words: anything else is passed on as "unrecognised" rather than
    // quoted into the client's diagnostics and the log.
    let code = if code.len() <= 64 && code.bytes().all(|b| b.is_ascii_uppercase() || b == b'_') {
        code
    } else {
        "unrecognised"
    };
    match code {
        "SERVICE_DISABLED" => Err(FhirError::forbidden(
            "IM1-4103",
            "Medicus: the service is switched off for this practice or patient",
        )),
        "PATIENT_NOT_FOUND" | "APPOINTMENT_NOT_FOUND" | "FILE_NOT_FOUND" | "NO_PATIENT_APP_LINKAGE" => {
            Err(FhirError::not_found("IM1-4104", "no such resource"))
        }
        "" => Err(status_error(reply.status, &reply.headers, SUPPLIER)),
        // Medicus's appointment 403s are its business rules (in the past, already started, seen), not a
        // service switched off.
        code if reply.status == StatusCode::FORBIDDEN && code.starts_with("APPOINTMENT_") => Err(FhirError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            crate::fhir::IssueType::Processing,
            "IM1-4122",
            format!("Medicus refused by its business rules ({code})"),
        )),
        code if reply.status == StatusCode::UNAUTHORIZED => Err(FhirError::bad_gateway(
            "IM1-4202",
            format!("Medicus refused the application's credentials ({code})"),
        )),
        code if reply.status.is_client_error() && !matches!(reply.status.as_u16(), 404 | 409 | 429) => Err(
            FhirError::bad_gateway("IM1-4110", format!("Medicus refused the request ({code})")),
        ),
        _ => Err(status_error(reply.status, &reply.headers, SUPPLIER)),
    }
}

fn malformed() -> FhirError {
    FhirError::bad_gateway("IM1-4006", "Medicus sent a reply without the expected fields")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refusal(status: u16, code: &str) -> FhirError {
        let body = json!({"errors": [{"code": code, "title": "t", "detail": "d"}]});
        let reply = HttpReply {
            status: StatusCode::from_u16(status).unwrap(),
            headers: http::HeaderMap::new(),
            body: serde_json::to_vec(&body).unwrap().into(),
        };
        reply_body(reply).unwrap_err()
    }

    #[test]
    fn forbidden_is_a_business_rule_a_switched_off_service_or_a_refusal() {
        for code in ["APPOINTMENT_IN_THE_PAST", "APPOINTMENT_MARKED_AS_SEEN"] {
            let e = refusal(403, code);
            assert_eq!((e.status.as_u16(), e.code), (422, "IM1-4122"), "{code}");
            assert!(e.message.contains(code));
        }
        assert_eq!(refusal(403, "SERVICE_DISABLED").status.as_u16(), 403);
        assert_eq!(refusal(403, "").status.as_u16(), 403);
        assert_eq!(refusal(403, "APP_NOT_ACCREDITED").status.as_u16(), 502);
        assert_eq!(refusal(404, "PATIENT_NOT_FOUND").status.as_u16(), 404);
    }

    #[test]
    fn a_code_that_is_no_medicus_code_is_not_quoted() {
        let e = refusal(400, "Smith, John 9000000009");
        assert_eq!((e.status.as_u16(), e.code), (502, "IM1-4110"));
        assert!(
            !e.message.contains("9000000009") && e.message.contains("unrecognised"),
            "{}",
            e.message
        );
        assert!(refusal(400, "INVALID_REQUEST").message.contains("INVALID_REQUEST"));
    }
}
