//! `im1-fhir serve` with a configuration file: tokens from a configured JWKS issuer are accepted, the demo key
//! is not, and SIGTERM shuts the server down cleanly (issue 3).
use crate::common;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

struct Dir(std::path::PathBuf);
impl Drop for Dir {
    fn drop(&mut self) {
        std::fs::remove_dir_all(&self.0).ok();
    }
}

#[tokio::test]
async fn serve_accepts_its_issuer_refuses_the_demo_key_and_stops_on_sigterm() {
    let dir = Dir(std::env::temp_dir().join(format!("im1-serve-{}", std::process::id())));
    std::fs::create_dir_all(&dir.0).unwrap();
    // An issuer key of our own, published as a JWKS.
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let raw = key.public_key_raw();
    let jwks = serde_json::json!({"keys": [{
        "kty": "EC", "crv": "P-256", "kid": "test-issuer-1", "alg": "ES256", "use": "sig",
        "x": URL_SAFE_NO_PAD.encode(&raw[1..33]), "y": URL_SAFE_NO_PAD.encode(&raw[33..65]),
    }]});
    std::fs::write(dir.0.join("jwks.json"), jwks.to_string()).unwrap();
    // Nothing listens on port 1: the practice's system cannot be reached.
    let dead = 1;
    let config = format!(
        r#"[server]
listen = "127.0.0.1:0"
[security]
id_key = {{ file = "{dir}/id-key" }}
[[security.issuers]]
issuer = "https://auth.test"
audience = "im1-fhir"
jwks_file = "{dir}/jwks.json"
token_endpoint = "https://auth.test/token"
authorization_endpoint = "https://auth.test/authorize"
[native]
timeout_ms = 1000
[audit]
path = "{dir}/audit.db"
[[practices]]
ods = "Y90001"
supplier = "emis"
base_url = "http://127.0.0.1:{dead}/emis"
emis = {{ application_id = "a", partner_client_id = "b", partner_client_secret = {{ file = "{dir}/emis-secret" }}, cdb = "50002" }}
"#,
        dir = dir.0.display()
    );
    std::fs::write(dir.0.join("id-key"), "0123456789abcdef0123456789abcdef-test").unwrap();
    std::fs::write(dir.0.join("emis-secret"), "s3cret").unwrap();
    std::fs::write(dir.0.join("im1.toml"), config).unwrap();

    let mut child = Command::new(env!("CARGO_BIN_EXE_im1-fhir"))
        .args(["serve", "--config"])
        .arg(dir.0.join("im1.toml"))
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // The port is the OS's choice, read from the log line that gives the base URL (a port chosen here
    // first could be taken by another test before serve binds it); the log is kept for the checks below.
    let (base_url, logs) = {
        let stderr = child.stderr.take().unwrap();
        let (found, base_url) = std::sync::mpsc::channel();
        let logs = std::thread::spawn(move || {
            let mut logs = String::new();
            for line in std::io::BufRead::lines(std::io::BufReader::new(stderr)).map_while(Result::ok) {
                if let Ok(event) = serde_json::from_str::<serde_json::Value>(&line) {
                    if let Some(base) = event["fields"]["base"].as_str().or(event["base"].as_str()) {
                        let _ = found.send(base.to_string());
                    }
                }
                logs.push_str(&line);
                logs.push('\n');
            }
            logs
        });
        (base_url, logs)
    };
    let base = base_url
        .recv_timeout(Duration::from_secs(60))
        .expect("serve logs its base URL");
    let base = base.trim_end_matches('/').trim_end_matches("/fhir").to_string();
    let client = common::test_client();
    let started = Instant::now();
    while client
        .get(format!("{base}/readyz"))
        .send()
        .await
        .map(|r| r.status() != 200)
        .unwrap_or(true)
    {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "serve did not become ready"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // A token from the configured issuer passes authentication (the practice itself is unreachable: 502).
    let now = im1_fhir::auth::token::now_seconds();
    let claims = serde_json::json!({
        "iss": "https://auth.test", "aud": "im1-fhir", "sub": "cis2-user-1", "exp": now + 300, "nbf": now - 1,
        "iat": now, "jti": "j1", "im1_role": "clinician", "scope": "user/*.rs", "ods": ["Y90001"],
    });
    let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::ES256);
    header.kid = Some("test-issuer-1".into());
    let signing = jsonwebtoken::EncodingKey::from_ec_der(&key.serialize_der());
    let token = jsonwebtoken::encode(&header, &claims, &signing).unwrap();
    let url = format!("{base}/fhir/Patient?identifier=https://fhir.nhs.uk/Id/nhs-number|9000000009");
    let response = client.get(&url).bearer_auth(&token).send().await.unwrap();
    common::outcome(response, 502).await;
    // SMART discovery names the configured authorisation server, and only the read scopes this server serves.
    let smart = common::plain_json(&client, &format!("{base}/fhir/.well-known/smart-configuration")).await;
    assert_eq!(smart["issuer"], "https://auth.test");
    assert_eq!(smart["token_endpoint"], "https://auth.test/token");
    assert_eq!(smart["authorization_endpoint"], "https://auth.test/authorize");
    assert_eq!(
        smart["grant_types_supported"],
        serde_json::json!(["authorization_code", "client_credentials"])
    );
    assert_eq!(smart["code_challenge_methods_supported"], serde_json::json!(["S256"]));
    let capabilities = smart["capabilities"].as_array().unwrap();
    assert!(["launch-standalone", "client-confidential-asymmetric"]
        .iter()
        .all(|c| capabilities.iter().any(|had| had == c)));
    let scopes = smart["scopes_supported"].as_array().unwrap();
    assert!(scopes.iter().all(|s| !s.as_str().unwrap().contains("cruds")), "{smart}");
    // SMART v1 clients find the same endpoints in the CapabilityStatement.
    let statement = common::plain_json(&client, &format!("{base}/fhir/metadata")).await;
    let oauth = &statement["rest"][0]["security"]["extension"][0];
    assert_eq!(
        oauth["url"],
        "http://fhir-registry.smarthealthit.org/StructureDefinition/oauth-uris"
    );
    assert_eq!(
        oauth["extension"],
        serde_json::json!([{"url": "token", "valueUri": "https://auth.test/token"},
                           {"url": "authorize", "valueUri": "https://auth.test/authorize"}])
    );
    // An NHS number where an id belongs is refused, and reaches no log line (routes are logged without ids).
    let by_number = client
        .get(format!("{base}/fhir/Patient/9000000009"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert!(by_number.status().is_client_error());
    // The demo key is refused by serve.
    let demo = common::token(im1_fhir::auth::Role::Clinician, &["Y90001"]);
    common::outcome(client.get(&url).bearer_auth(&demo).send().await.unwrap(), 401).await;
    // A body the FHIR model panics on is a 400, and the panic a JSON log line without what it said.
    let body = r#"{"resourceType":"Appointment","status":"booked","comment":"9000000009","participant":[]}"#;
    let response = client
        .post(format!("{base}/fhir/ConceptMap/$translate"))
        .bearer_auth(&token)
        .header("content-type", "application/fhir+json")
        .body(body)
        .send()
        .await
        .unwrap();
    common::outcome(response, 400).await;

    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let started = Instant::now();
    let exit = loop {
        if let Some(exit) = child.try_wait().unwrap() {
            break exit;
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "serve did not stop on SIGTERM"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(exit.success(), "{exit:?}");
    // Logs are JSON lines and carry neither the secret nor the token.
    let logs = logs.join().unwrap();
    assert!(
        !logs.contains("s3cret") && !logs.contains(&token) && !logs.contains("9000000009"),
        "{logs}"
    );
    assert!(logs.lines().all(|l| l.starts_with('{')), "{logs}");
}
