//! Test helpers: start the simulator on 127.0.0.1:0 over a fixed-date world, a minimal HTTP/1.1 client, and
//! the PFS and Partner sign-in flows.
#![allow(dead_code)]

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use im1_sim::common::SimHandle;
use im1_sim::record::World;
use im1_sim::SimOptions;
use im1_sim_emis::{linkage_credentials, EmisConfig};
use serde_json::{json, Value};
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::net::{TcpListener, TcpStream};

pub const TODAY: time::Date = time::macros::date!(2025 - 03 - 04);
pub const NHS: &str = "9000000009";

pub struct Sim {
    pub handle: SimHandle,
    pub world: Arc<World>,
    pub config: EmisConfig,
}

pub fn options() -> SimOptions {
    SimOptions {
        seed: 1,
        patients: 12,
        throttle: true,
        today: Some(TODAY),
    }
}

pub async fn start(config: EmisConfig) -> Sim {
    start_with(options().world(), config).await
}

pub async fn start_with(world: Arc<World>, config: EmisConfig) -> Sim {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let handle = im1_sim_emis::serve(listener, world.clone(), config.clone()).await;
    Sim { handle, world, config }
}

pub fn unthrottled() -> EmisConfig {
    EmisConfig {
        throttle: false,
        ..EmisConfig::default()
    }
}

#[derive(Debug)]
pub struct Resp {
    pub status: u16,
    pub headers: http::HeaderMap,
    pub body: Bytes,
}

impl Resp {
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&self.body)))
    }
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// One request on a fresh connection.
pub async fn send(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<Vec<u8>>,
) -> Result<Resp, String> {
    let stream = TcpStream::connect(addr).await.map_err(|e| e.to_string())?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| e.to_string())?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    let mut b = http::Request::builder()
        .method(method)
        .uri(path)
        .header("host", addr.to_string());
    for (k, v) in headers {
        b = b.header(*k, *v);
    }
    let req = b
        .body(Full::new(Bytes::from(body.unwrap_or_default())))
        .map_err(|e| e.to_string())?;
    let resp = sender.send_request(req).await.map_err(|e| e.to_string())?;
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let body = resp.into_body().collect().await.map_err(|e| e.to_string())?.to_bytes();
    Ok(Resp { status, headers, body })
}

impl Sim {
    pub fn addr(&self) -> SocketAddr {
        self.handle.addr()
    }

    pub async fn req(&self, method: &str, path: &str, headers: &[(&str, &str)], body: Option<Value>) -> Resp {
        let mut h: Vec<(&str, &str)> = headers.to_vec();
        if body.is_some() {
            h.push(("content-type", "application/json"));
        }
        send(
            self.addr(),
            method,
            path,
            &h,
            body.map(|b| serde_json::to_vec(&b).expect("json")),
        )
        .await
        .expect("request")
    }

    fn pfs_headers<'a>(&'a self, extra: &[(&'a str, &'a str)]) -> Vec<(&'a str, &'a str)> {
        let mut h = vec![
            ("X-API-ApplicationId", self.config.application_id.as_str()),
            ("X-API-Version", "2.1.0.0"),
        ];
        h.extend_from_slice(extra);
        h
    }

    /// A PFS call with the application headers plus `extra`.
    pub async fn pfs(&self, method: &str, path: &str, extra: &[(&str, &str)], body: Option<Value>) -> Resp {
        let h = self.pfs_headers(extra);
        self.req(method, &format!("/emis/pfs/{path}"), &h, body).await
    }

    /// The full PFS sign-in for a patient by NHS number.
    pub async fn login(&self, nhs: &str) -> Login {
        let cred = linkage_credentials(&self.world, &self.config)
            .into_iter()
            .find(|c| c.nhs_number == nhs)
            .expect("credentials");
        let eus = self.pfs("POST", "sessions/endusersession", &[], None).await;
        assert_eq!(eus.status, 200, "{}", eus.text());
        let eus = eus.json()["EndUserSessionId"].as_str().expect("eus").to_string();
        let linked = self
            .pfs(
                "POST",
                "me/applications",
                &[("X-API-EndUserSessionId", &eus)],
                Some(json!({
                    "Surname": cred.surname,
                    "DateOfBirth": cred.date_of_birth,
                    "LinkageDetails": {"AccountId": cred.account_id, "LinkageKey": cred.linkage_key,
                                       "NationalPracticeCode": cred.national_practice_code}
                })),
            )
            .await;
        assert_eq!(linked.status, 200, "{}", linked.text());
        let identity = linked.json()["AccessIdentityGuid"].as_str().expect("aig").to_string();
        let session = self
            .pfs(
                "POST",
                "sessions",
                &[("X-API-EndUserSessionId", &eus)],
                Some(json!({"AccessIdentityGuid": identity, "NationalPracticeCode": "Y90001"})),
            )
            .await;
        assert_eq!(session.status, 200, "{}", session.text());
        let s = session.json();
        Login {
            eus,
            sid: s["SessionId"].as_str().expect("sid").to_string(),
            token: s["UserPatientLinks"][0]["UserPatientLinkToken"]
                .as_str()
                .expect("token")
                .to_string(),
            session: s,
            patient_guid: cred.patient_guid,
        }
    }

    /// A PFS GET for a signed-in patient; `query` is appended after the link token.
    pub async fn get(&self, l: &Login, path: &str, query: &str) -> Resp {
        let p = format!("{path}?userPatientLinkToken={}{query}", l.token);
        self.pfs(
            "GET",
            &p,
            &[("X-API-EndUserSessionId", &l.eus), ("X-API-SessionId", &l.sid)],
            None,
        )
        .await
    }

    /// A PFS POST/DELETE for a signed-in patient; the link token is added to the body.
    pub async fn send_body(&self, l: &Login, method: &str, path: &str, mut body: Value) -> Resp {
        body["UserPatientLinkToken"] = Value::from(l.token.clone());
        self.pfs(
            method,
            path,
            &[("X-API-EndUserSessionId", &l.eus), ("X-API-SessionId", &l.sid)],
            Some(body),
        )
        .await
    }

    pub async fn partner_token(&self) -> String {
        let r = send(
            self.addr(),
            "POST",
            "/emis/partner/v1/token",
            &[("content-type", "application/x-www-form-urlencoded")],
            Some(b"grant_type=client_credentials&client_id=im1-fhir-demo&client_secret=emis-demo-secret".to_vec()),
        )
        .await
        .expect("token");
        assert_eq!(r.status, 200, "{}", r.text());
        r.json()["access_token"].as_str().expect("token").to_string()
    }

    pub async fn partner(&self, token: &str, method: &str, path: &str, body: Option<Value>) -> Resp {
        let auth = format!("Bearer {token}");
        self.req(
            method,
            &format!("/emis/partner/v1/{path}"),
            &[
                ("Authorization", &auth),
                ("X-EMIS-OrganisationCdb", "50002"),
                ("X-Request-ID", "test"),
            ],
            body,
        )
        .await
    }
}

#[derive(Debug, Clone)]
pub struct Login {
    pub eus: String,
    pub sid: String,
    pub token: String,
    pub session: Value,
    pub patient_guid: String,
}
