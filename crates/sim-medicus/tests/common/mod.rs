//! Test helpers: start a simulator on 127.0.0.1:0, sign per-call JWTs with the demo key, and talk HTTP/1.1.
#![allow(dead_code)]

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use im1_sim::common::SimHandle;
use im1_sim::record::World;
use im1_sim::SimOptions;
use im1_sim_medicus::{linkage_credentials, serve, MedicusConfig, MedicusLinkage};
use jsonwebtoken::{encode, Algorithm, EncodingKey, Header};
use serde_json::{json, Value};
use std::sync::Arc;
use tokio::net::{TcpListener, TcpStream};

pub const KEY: &[u8] = include_bytes!("../../../../keys/demo-medicus-app.key.pem");
pub const T: &str = "/medicus/y90003";

pub struct Sim {
    pub handle: SimHandle,
    pub world: Arc<World>,
    pub config: MedicusConfig,
}

pub fn options(seed: u64) -> SimOptions {
    SimOptions {
        seed,
        patients: 12,
        throttle: false,
        today: Some(time::macros::date!(2025 - 03 - 04)),
    }
}

pub async fn start_with(opts: SimOptions, config: MedicusConfig) -> Sim {
    let world = opts.world();
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let handle = serve(listener, world.clone(), config.clone()).await.expect("start");
    Sim { handle, world, config }
}

pub async fn start() -> Sim {
    start_with(
        options(1),
        MedicusConfig {
            throttle: false,
            ..MedicusConfig::default()
        },
    )
    .await
}

pub fn now() -> i64 {
    time::OffsetDateTime::now_utc().unix_timestamp()
}

/// Sign arbitrary claims with the demo app key.
pub fn sign(claims: &Value) -> String {
    let key = EncodingKey::from_rsa_pem(KEY).expect("key");
    let mut header = Header::new(Algorithm::RS256);
    header.typ = Some("JWT".into());
    header.kid = Some("demo".into());
    encode(&header, claims, &key).expect("sign")
}

fn jti() -> String {
    uuid::Uuid::new_v4().to_string()
}

/// A fresh Transactional token.
pub fn trx() -> String {
    let n = now();
    sign(&json!({"iss": "im1-fhir-demo-app", "aud": "y90003", "iat": n, "exp": n + 300, "jti": jti()}))
}

/// A fresh PFS token for an NHS login subject.
pub fn pfs(sub: &str) -> String {
    let n = now();
    sign(
        &json!({"iss": "im1-fhir-demo-app", "aud": "y90003", "iat": n, "exp": n + 300, "jti": jti(),
        "userIdentifierType": "nhs-login-sub", "userIdentifierValue": sub}),
    )
}

pub struct Reply {
    pub status: u16,
    pub headers: http::HeaderMap,
    pub body: Bytes,
}

impl Reply {
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|_| panic!("not JSON ({}): {}", self.status, String::from_utf8_lossy(&self.body)))
    }

    pub fn error_code(&self) -> String {
        self.json()["errors"][0]["code"].as_str().unwrap_or("").to_string()
    }
}

/// One request on its own connection; Err when the connection fails (drop and truncate faults).
pub async fn try_send(
    sim: &Sim,
    method: &str,
    path: &str,
    token: Option<&str>,
    headers: &[(&str, &str)],
    body: Option<&Value>,
) -> Result<Reply, String> {
    let stream = TcpStream::connect(sim.handle.addr()).await.map_err(|e| e.to_string())?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| e.to_string())?;
    tokio::spawn(conn);
    let mut b = http::Request::builder().method(method).uri(path).header("host", "sim");
    if let Some(t) = token {
        b = b.header("authorization", format!("Bearer {t}"));
    }
    for (k, v) in headers {
        b = b.header(*k, *v);
    }
    let bytes = body.map(|v| serde_json::to_vec(v).expect("json")).unwrap_or_default();
    if body.is_some() {
        b = b.header("content-type", "application/json");
    }
    let req = b.body(Full::new(Bytes::from(bytes))).expect("request");
    let resp = sender.send_request(req).await.map_err(|e| e.to_string())?;
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let body = resp.into_body().collect().await.map_err(|e| e.to_string())?.to_bytes();
    Ok(Reply { status, headers, body })
}

pub async fn get(sim: &Sim, path: &str, token: &str) -> Reply {
    try_send(sim, "GET", path, Some(token), &[], None).await.expect("reply")
}

pub async fn post(sim: &Sim, path: &str, token: &str, body: &Value) -> Reply {
    let key = uuid::Uuid::new_v4().to_string();
    try_send(sim, "POST", path, Some(token), &[("idempotency-key", &key)], Some(body))
        .await
        .expect("reply")
}

/// The credentials of patient 9000000009 (or another NHS number).
pub fn creds(sim: &Sim, nhs: &str) -> MedicusLinkage {
    linkage_credentials(&sim.world, &sim.config)
        .into_iter()
        .find(|c| c.nhs_number == nhs)
        .expect("credentials")
}

/// Exchange the patient's linkage token; returns (sub, patient id).
pub async fn link(sim: &Sim, nhs: &str) -> (String, String) {
    let c = creds(sim, nhs);
    let r = post(
        sim,
        &format!("{T}/pfs-api/v1/user/exchange-linkage-token"),
        &pfs(&c.nhs_login_sub),
        &json!({"linkageToken": c.linkage_token, "dateOfBirth": c.date_of_birth}),
    )
    .await;
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    let id = r.json()["patientId"].as_str().expect("id").to_string();
    assert_eq!(id, c.patient_id);
    (c.nhs_login_sub, id)
}

/// Every journal entry over all pages.
pub async fn journal_all(sim: &Sim, base: &str, token: impl Fn() -> String, limit: usize) -> Vec<Value> {
    let mut out = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let mut path = format!("{base}/journal?limit={limit}");
        if let Some(c) = &cursor {
            path.push_str(&format!("&cursor={c}"));
        }
        let r = get(sim, &path, &token()).await;
        assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
        let v = r.json();
        out.extend(v["journal"].as_array().cloned().unwrap_or_default());
        match v["nextCursor"].as_str() {
            Some(c) => cursor = Some(c.to_string()),
            None => return out,
        }
    }
}
