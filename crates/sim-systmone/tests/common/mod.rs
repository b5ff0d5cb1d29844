//! Test helpers: start the simulator on 127.0.0.1:0 with a fixed date, speak raw HTTP/1.1 and framed TCP.
#![allow(dead_code)]

use im1_sim::common::framing::{read_frame, write_frame};
use im1_sim::record::World;
use im1_sim::SimOptions;
use im1_sim_systmone::xml::{parse, Node};
use im1_sim_systmone::{linkage_credentials, serve, SystmOneConfig, SystmOneHandles, TppLinkage};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

pub const TODAY: time::Date = time::macros::date!(2025 - 03 - 03);

pub struct Sim {
    pub handles: SystmOneHandles,
    pub world: Arc<World>,
    pub config: SystmOneConfig,
    pub http: SocketAddr,
    pub tcp: SocketAddr,
}

pub fn quiet() -> SystmOneConfig {
    SystmOneConfig {
        throttle: false,
        ..SystmOneConfig::default()
    }
}

pub async fn start(config: SystmOneConfig) -> Sim {
    start_seed(1, config).await
}

pub async fn start_seed(seed: u64, config: SystmOneConfig) -> Sim {
    let world = SimOptions {
        seed,
        patients: 20,
        today: Some(TODAY),
        ..SimOptions::default()
    }
    .world();
    let http = TcpListener::bind("127.0.0.1:0").await.expect("bind http");
    let tcp = TcpListener::bind("127.0.0.1:0").await.expect("bind tcp");
    let handles = serve(http, tcp, world.clone(), config.clone()).await;
    Sim {
        http: handles.pfs.addr(),
        tcp: handles.transaction.addr(),
        handles,
        world,
        config,
    }
}

#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Reply {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn xml(&self) -> Node {
        parse(&self.body).unwrap_or_else(|e| panic!("reply is not XML ({e}): {}", self.body))
    }

    /// The `errorCode` of an `<Error>` reply, if it is one.
    pub fn error_code(&self) -> Option<String> {
        let n = parse(&self.body).ok()?;
        (n.name == "Error")
            .then(|| n.attr("errorCode").map(str::to_string))
            .flatten()
    }
}

static UUID: AtomicU64 = AtomicU64::new(1);

pub fn uuid() -> String {
    format!("00000000-0000-4000-8000-{:012x}", UUID.fetch_add(1, Ordering::Relaxed))
}

/// Send raw HTTP; `Err` when the connection closed without a complete reply.
pub async fn raw(addr: SocketAddr, request: String) -> Result<Reply, String> {
    let mut s = TcpStream::connect(addr).await.map_err(|e| e.to_string())?;
    s.write_all(request.as_bytes()).await.map_err(|e| e.to_string())?;
    let mut buf = Vec::new();
    let _ = s.read_to_end(&mut buf).await;
    let text = String::from_utf8_lossy(&buf).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").ok_or("no reply")?;
    let mut lines = head.lines();
    let status: u16 = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|c| c.parse().ok())
        .ok_or("no status")?;
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect();
    let reply = Reply {
        status,
        headers,
        body: body.to_string(),
    };
    if let Some(len) = reply.header("content-length").and_then(|l| l.parse::<usize>().ok()) {
        if body.len() < len {
            return Err(format!("truncated: {} of {len}", body.len()));
        }
    }
    Ok(reply)
}

/// POST a PFS message; `extra` are additional header lines.
pub async fn pfs_raw(
    sim: &Sim,
    kind: &str,
    suid: Option<&str>,
    body: &str,
    extra: &[(&str, &str)],
) -> Result<Reply, String> {
    let mut req = format!(
        "POST /tpp/pfs HTTP/1.1\r\nHost: sim\r\nContent-Type: text/xml; charset=utf-8\r\ntype: {kind}\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    if let Some(s) = suid {
        req.push_str(&format!("suid: {s}\r\n"));
    }
    for (k, v) in extra {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    req.push_str(body);
    raw(sim.http, req).await
}

pub async fn pfs(sim: &Sim, kind: &str, suid: Option<&str>, body: &str) -> Reply {
    pfs_raw(sim, kind, suid, body, &[]).await.expect("reply")
}

pub async fn get(sim: &Sim, path: &str) -> Reply {
    raw(
        sim.http,
        format!("GET {path} HTTP/1.1\r\nHost: sim\r\nConnection: close\r\n\r\n"),
    )
    .await
    .expect("reply")
}

/// A PFS message `<{kind} apiVersion uuid {attrs}>{children}</{kind}>` for the session's patient.
pub async fn msg(sim: &Sim, s: &Session, kind: &str, attrs: &str, children: &str) -> Reply {
    let body = format!(
        "<{kind} apiVersion=\"1\" uuid=\"{}\" unitId=\"Y90002\" patientId=\"{}\" onlineUserId=\"{}\" {attrs}>{children}</{kind}>",
        uuid(),
        s.patient_id,
        s.online_user_id
    );
    pfs(sim, kind, Some(&s.suid), &body).await
}

pub struct Session {
    pub suid: String,
    pub patient_id: String,
    pub online_user_id: String,
    pub auth: Reply,
}

pub fn creds(sim: &Sim, nhs: &str) -> TppLinkage {
    linkage_credentials(&sim.world, &sim.config)
        .into_iter()
        .find(|c| c.nhs_number == nhs)
        .expect("credentials for patient")
}

const APP: &str = r#"<Application name="im1-fhir" version="0.1" providerId="SIM-PROVIDER-01" deviceType="server"/>"#;

pub async fn link(sim: &Sim, c: &TppLinkage) -> Reply {
    let body = format!(
        r#"<LinkAccount apiVersion="1" uuid="{}" organisationCode="{}" accountId="{}" passphrase="{}" lastName="{}" dateOfBirth="{}">{APP}</LinkAccount>"#,
        uuid(),
        c.organisation_code,
        c.account_id,
        c.passphrase,
        c.last_name,
        c.date_of_birth
    );
    pfs(sim, "LinkAccount", None, &body).await
}

pub async fn authenticate(sim: &Sim, account: &str, passphrase: &str) -> Reply {
    let body = format!(
        r#"<Authenticate apiVersion="1" uuid="{}" accountId="{account}" passphrase="{passphrase}" providerId="SIM-PROVIDER-01">{APP}</Authenticate>"#,
        uuid()
    );
    pfs(sim, "Authenticate", None, &body).await
}

/// Link and authenticate a patient by NHS number.
pub async fn login(sim: &Sim, nhs: &str) -> Session {
    let c = creds(sim, nhs);
    let linked = link(sim, &c).await.xml();
    assert_eq!(linked.name, "LinkAccountReply", "{linked:?}");
    let pass = linked.attr("passphrase").expect("passphrase").to_string();
    let auth = authenticate(sim, &c.account_id, &pass).await;
    let x = auth.xml();
    assert_eq!(x.name, "AuthenticateReply", "{}", auth.body);
    Session {
        suid: auth.header("suid").expect("suid header").to_string(),
        patient_id: c.patient_id.clone(),
        online_user_id: x.attr("onlineUserId").expect("onlineUserId").to_string(),
        auth,
    }
}

/// One Client Integration call on a fresh connection; `None` when the connection closed without a frame.
pub async fn ci_raw(sim: &Sim, envelope: &str) -> Option<String> {
    let mut s = TcpStream::connect(sim.tcp).await.expect("connect tcp");
    write_frame(&mut s, envelope).await.expect("write frame");
    read_frame(&mut s).await.ok().flatten()
}

pub fn envelope(function: &str, params: &str, children: &str, extra: &str) -> String {
    format!(
        r#"<ClientIntegrationRequest apiKey="SIM-KEY" deviceId="WS-0042" deviceVersion="1.0" requestUid="{}" function="{function}" functionVersion="1" {extra}><Parameters {params}>{children}</Parameters></ClientIntegrationRequest>"#,
        uuid()
    )
}

/// Call a function and return the parsed response envelope.
pub async fn ci(sim: &Sim, function: &str, params: &str, children: &str) -> Node {
    let text = ci_raw(sim, &envelope(function, params, children, ""))
        .await
        .expect("a reply frame");
    parse(&text).unwrap_or_else(|e| panic!("not XML ({e}): {text}"))
}

/// The `Result` of a successful call (panics with the error otherwise).
pub fn result(n: &Node) -> &Node {
    assert_eq!(n.attr("outcome"), Some("Success"), "{n:?}");
    n.child("Result").expect("Result")
}

/// The `errorCode` of a failed call.
pub fn ci_error(n: &Node) -> String {
    assert_eq!(n.attr("outcome"), Some("Failure"), "{n:?}");
    n.child("Error")
        .and_then(|e| e.attr("errorCode"))
        .expect("errorCode")
        .to_string()
}

/// Every `Item` under a node, depth first.
pub fn items(n: &Node) -> Vec<&Node> {
    let mut out = Vec::new();
    for c in &n.children {
        if c.name == "Item" {
            out.push(c);
        }
        out.extend(items(c));
    }
    out
}

pub fn tid_of(id: &str) -> String {
    im1_sim::record::native_id(
        im1_sim::record::Supplier::SystmOne,
        &im1_sim::record::Nid(id.to_string()),
    )
}
