//! Bad tokens are refused with 401 and an OperationOutcome, and each refusal is audited: tampered, expired,
//! not yet valid, for another audience, from another issuer, unsigned, and with an unknown scope.
use crate::common;

use common::{outcome, Proxy};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{json, Value};

fn now() -> u64 {
    im1_fhir::auth::token::now_seconds()
}

/// Claims as the demo issuer gives a clinician, to be spoiled one way at a time.
fn claims() -> Value {
    json!({
        "iss": "im1-fhir-demo", "aud": "im1-fhir-demo", "sub": "cis2-test", "iat": now(),
        "nbf": now() - 1, "exp": now() + 600, "jti": uuid::Uuid::new_v4().to_string(),
        "im1_role": "clinician", "scope": "user/*.rs", "client_id": "test-app", "rbac_role": "R8000",
        "ods": ["Y90001"],
    })
}

fn sign(claims: &Value) -> String {
    let pem = std::fs::read(concat!(env!("CARGO_MANIFEST_DIR"), "/keys/demo-token-signing.key.pem")).unwrap();
    let key = EncodingKey::from_ec_pem(&pem).unwrap();
    let mut header = Header::new(Algorithm::ES256);
    header.kid = Some("im1-fhir-demo".into());
    jsonwebtoken::encode(&header, claims, &key).unwrap()
}

fn with(field: &str, value: Value) -> String {
    let mut c = claims();
    c[field] = value;
    sign(&c)
}

/// A request id naming a case (`expired` -> `refused-expired`).
fn request_id(case: &str) -> String {
    format!("refused-{}", case.replace(' ', "-"))
}

#[tokio::test]
async fn bad_tokens_are_refused_with_401_and_audited() {
    let proxy = Proxy::start(Vec::new(), Default::default()).await;
    let good = sign(&claims());
    // The well-formed token passes authentication: the practice it names is not served here.
    let not_served = |body: Value| body["issue"][0]["details"]["coding"][0]["code"] == "IM1-2102";
    let search = "Patient?identifier=9000000009";
    assert!(not_served(outcome(proxy.get(search, &good).await, 403).await));

    let tampered = {
        let mut parts: Vec<String> = good.split('.').map(String::from).collect();
        let mut payload: Value = serde_json::from_slice(
            &base64::Engine::decode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, &parts[1]).unwrap(),
        )
        .unwrap();
        payload["ods"] = json!(["Y90002"]);
        parts[1] = base64::Engine::encode(
            &base64::engine::general_purpose::URL_SAFE_NO_PAD,
            serde_json::to_vec(&payload).unwrap(),
        );
        parts.join(".")
    };
    let unsigned = {
        let header = base64::Engine::encode(
            &base64::engine::general_purpose::URL_SAFE_NO_PAD,
            br#"{"alg":"none","typ":"JWT"}"#,
        );
        let payload = base64::Engine::encode(
            &base64::engine::general_purpose::URL_SAFE_NO_PAD,
            claims().to_string().as_bytes(),
        );
        format!("{header}.{payload}.")
    };
    let cases = [
        ("tampered", tampered),
        ("expired", with("exp", json!(now() - 3600))),
        ("not yet valid", with("nbf", json!(now() + 3600))),
        ("wrong audience", with("aud", json!("someone-else"))),
        ("wrong issuer", with("iss", json!("https://issuer.example"))),
        ("unsigned", unsigned),
        ("unknown scope", with("scope", json!("user/*.rs admin/everything"))),
        ("garbage", "not.a.token".to_string()),
    ];
    for (what, bad) in &cases {
        let request = proxy.client.get(proxy.url(search)).bearer_auth(bad);
        let response = request.header("x-request-id", request_id(what)).send().await.unwrap();
        let body = outcome(response, 401).await;
        assert!(
            body["issue"][0]["details"]["coding"][0]["code"]
                .as_str()
                .unwrap()
                .starts_with("IM1-200"),
            "{what}"
        );
    }
    // Within the tolerated clock skew a just-expired token still passes; beyond it, not.
    let just_expired = with("exp", json!(now() - 10));
    assert!(not_served(outcome(proxy.get(search, &just_expired).await, 403).await));
    // Every refusal is on record once, as a 401 naming nobody.
    let events = proxy
        .audit
        .search(&im1_fhir::audit::AuditQuery {
            outcomes: vec!["4".into()],
            count: 100,
            ..Default::default()
        })
        .unwrap();
    for (what, _) in &cases {
        let audited: Vec<&Value> = events
            .iter()
            .filter(|e| common::audited_request_id(e) == Some(request_id(what)))
            .collect();
        assert_eq!(audited.len(), 1, "{what}");
        let status = audited[0]["entity"]
            .as_array()
            .unwrap()
            .iter()
            .flat_map(|e| e["detail"].as_array().into_iter().flatten())
            .find(|d| d["type"] == "status");
        assert_eq!(status.unwrap()["valueString"], "401", "{what}");
        let users = audited[0]["agent"].as_array().unwrap().iter().filter(|a| {
            let system = a["who"]["identifier"]["system"].as_str().unwrap_or_default();
            system.starts_with("https://im1-fhir.dev/principal/")
        });
        assert_eq!(users.count(), 0, "{what}: names nobody");
        // What was attempted is on record: the interaction and its query.
        assert_eq!(audited[0]["subtype"][0]["code"], "search-type", "{what}");
        let query = audited[0]["entity"]
            .as_array()
            .unwrap()
            .iter()
            .find_map(|e| e["query"].as_str())
            .map(|q| base64::Engine::decode(&base64::engine::general_purpose::STANDARD, q).unwrap());
        assert_eq!(query.as_deref(), Some(&b"identifier=9000000009"[..]), "{what}");
    }
    proxy.stop().await;
}

/// The network address an AuditEvent records for its client (the application agent).
fn audited_address(event: &Value) -> Option<String> {
    event["agent"]
        .as_array()?
        .iter()
        .find_map(|agent| agent["network"]["address"].as_str())
        .map(String::from)
}

/// An address that has used up its budget of failed authentications is refused (429, before any token is
/// checked, a good one too) while other addresses are not, and recovers once the budget allows; each
/// AuditEvent records the address (the peer's, or through a trusted proxy the client it names) and the
/// refusal's code. The probes are never refused.
#[tokio::test]
async fn an_address_failing_authentication_too_often_is_refused_for_a_while() {
    let budget = |per_minute: u32, trusted: &[&str]| im1_fhir::config::ServerConfig {
        failed_auth_per_minute: std::num::NonZeroU32::new(per_minute),
        trusted_proxies: trusted.iter().map(|net| net.parse().unwrap()).collect(),
        ..common::test_server()
    };
    let start = |server| Proxy::start_with(Vec::new(), Default::default(), common::test_native(), server);
    let (search, good, bad) = ("Patient?identifier=9000000009", sign(&claims()), "not.a.token");
    let proxy = start(budget(2, &[])).await;
    outcome(proxy.get(search, bad).await, 401).await;
    // What an untrusted peer says of its client is not believed.
    let spoofed = proxy.client.get(proxy.url(search)).bearer_auth(bad);
    outcome(
        spoofed.header("x-forwarded-for", "198.51.100.9").send().await.unwrap(),
        401,
    )
    .await;
    // Two a minute, both used: even a good token is refused now, without being checked.
    let response = proxy.get(search, &good).await;
    let wait: u64 = response.headers()["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((1..=30).contains(&wait), "{wait}");
    let body = outcome(response, 429).await;
    assert_eq!(body["issue"][0]["details"]["coding"][0]["code"], "IM1-2302");
    let root = proxy.base.trim_end_matches("/fhir").to_string();
    for probe in ["healthz", "readyz", "metrics"] {
        let answer = proxy.client.get(format!("{root}/{probe}")).send().await.unwrap();
        assert_eq!(answer.status(), 200, "{probe}");
    }
    // Every interaction is audited with the address it came from; the refusal with its code.
    let events = common::audit_events(&proxy);
    assert_eq!(events.len(), 3, "{events:?}");
    for event in &events {
        assert_eq!(audited_address(event).as_deref(), Some("127.0.0.1"), "{event}");
    }
    let refusals: Vec<&Value> = events
        .iter()
        .filter(|e| e["outcomeDesc"].as_str().is_some_and(|d| d.starts_with("IM1-2302")))
        .collect();
    assert_eq!(refusals.len(), 1, "{events:?}");
    proxy.stop().await;

    // Behind a trusted proxy, each client it names has a budget of its own.
    let proxy = start(budget(2, &["127.0.0.1/32"])).await;
    let from = |client: &'static str, token: &str| {
        let request = proxy.client.get(proxy.url(search)).bearer_auth(token);
        // The first entry is what a client might claim; the trusted proxy appended the second.
        request.header("x-forwarded-for", format!("192.0.2.1, {client}")).send()
    };
    for _ in 0..2 {
        outcome(from("198.51.100.1", bad).await.unwrap(), 401).await;
    }
    outcome(from("198.51.100.1", &good).await.unwrap(), 429).await;
    // Another client behind the same proxy is not refused: its good token is checked (403: no practice here).
    outcome(from("198.51.100.2", &good).await.unwrap(), 403).await;
    let addresses: Vec<String> = common::audit_events(&proxy)
        .iter()
        .filter_map(audited_address)
        .collect();
    assert_eq!(addresses.len(), 4, "{addresses:?}");
    assert_eq!(
        addresses.iter().filter(|a| *a == "198.51.100.1").count(),
        3,
        "{addresses:?}"
    );
    assert_eq!(
        addresses.iter().filter(|a| *a == "198.51.100.2").count(),
        1,
        "{addresses:?}"
    );
    proxy.stop().await;

    // Sixty a minute: once refused, the address is served again after Retry-After.
    let proxy = start(budget(60, &[])).await;
    let mut wait = None;
    for _ in 0..200 {
        let response = proxy.get(search, bad).await;
        if response.status() == 429 {
            wait = Some(
                response.headers()["retry-after"]
                    .to_str()
                    .unwrap()
                    .parse::<u64>()
                    .unwrap(),
            );
            break;
        }
        assert_eq!(response.status(), 401);
    }
    let wait = wait.expect("refused within 200 failures");
    assert_eq!(wait, 1, "one more a second");
    tokio::time::sleep(std::time::Duration::from_millis(1_100)).await;
    outcome(proxy.get(search, &good).await, 403).await;
    proxy.stop().await;
}

/// NHS login: a patient token below identity proofing level P9 authenticates, but reaches nothing of the GP
/// record (403, audited); the same token at P9 does.
#[tokio::test]
async fn a_patient_below_p9_reaches_nothing_of_the_gp_record() {
    let proxy = Proxy::start(Vec::new(), Default::default()).await;
    let patient = |level: Option<&str>| {
        let mut c = claims();
        c["im1_role"] = json!("patient");
        c["scope"] = json!("patient/*.rs");
        c["nhs_number"] = json!("9000000009");
        c["identity_proofing_level"] = json!(level);
        sign(&c)
    };
    for level in [Some("P5"), Some("P0"), None] {
        let body = outcome(proxy.get("Patient", &patient(level)).await, 403).await;
        assert_eq!(
            body["issue"][0]["details"]["coding"][0]["code"], "IM1-2108",
            "{level:?}"
        );
    }
    // At P9 the token gets past this check (no practice is configured here, so the search itself is refused
    // for another reason).
    let body = outcome(proxy.get("Patient", &patient(Some("P9"))).await, 403).await;
    assert_eq!(body["issue"][0]["details"]["coding"][0]["code"], "IM1-2102");
    proxy.stop().await;
}

/// A token's practices are a set: one named twice is searched once; one this server does not serve is said
/// in the Bundle, not silently left out.
#[tokio::test]
async fn a_tokens_practices_are_searched_once_each_and_unserved_ones_are_said() {
    let sims = im1_fhir::demo::Simulators::start(common::fixed_options(1, 3))
        .await
        .unwrap();
    let proxy = Proxy::start(sims.practices(), sims.linkage()).await;
    let once = common::token(im1_fhir::auth::Role::System, &["Y90001"]);
    let twice = common::token(im1_fhir::auth::Role::System, &["Y90001", "Y90001"]);
    let unserved = common::token(im1_fhir::auth::Role::System, &["Y90001", "Y99999"]);
    let total = |token: &str| {
        let proxy = &proxy;
        let token = token.to_string();
        async move {
            let bundle: Value = proxy.get("Practitioner?_count=200", &token).await.json().await.unwrap();
            bundle
        }
    };
    let expected = total(&once).await["total"].clone();
    assert!(expected.as_u64().unwrap() > 0);
    assert_eq!(total(&twice).await["total"], expected);
    let bundle = total(&unserved).await;
    assert_eq!(bundle["total"], expected, "{bundle}");
    let said = common::entries(&bundle, "outcome");
    assert_eq!(
        said[0]["issue"][0]["details"]["coding"][0]["code"], "IM1-2111",
        "{bundle}"
    );
    // A patient's own records are searched across their token's practices too: the unserved one is said; a
    // search of one named patient's records is not a search across practices.
    let mut request = im1_fhir::auth::token::TokenRequest {
        practices: vec!["Y90001".into(), "Y99999".into()],
        role: im1_fhir::auth::Role::Patient,
        nhs_number: Some("9000000009".into()),
        scope: None,
        ttl_seconds: 600,
    };
    let patient = im1_fhir::auth::token::mint_demo(&request).unwrap();
    let codes = |bundle: &Value| -> Vec<String> {
        common::entries(bundle, "outcome")
            .iter()
            .map(|o| {
                o["issue"][0]["details"]["coding"][0]["code"]
                    .as_str()
                    .unwrap()
                    .to_string()
            })
            .collect()
    };
    let own: Value = proxy.get("Condition", &patient).await.json().await.unwrap();
    assert!(own["total"].as_u64().unwrap() > 0, "{own}");
    assert!(codes(&own).contains(&"IM1-2111".to_string()), "{own}");
    let me: Value = proxy.get("Patient", &patient).await.json().await.unwrap();
    let id = common::entries(&me, "match")[0]["id"].as_str().unwrap().to_string();
    let named: Value = proxy
        .get(&format!("Condition?patient={id}"), &patient)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(named["total"], own["total"], "{named}");
    assert!(!codes(&named).contains(&"IM1-2111".to_string()), "{named}");
    // Served everywhere it names, nothing is said.
    request.practices.pop();
    let served = im1_fhir::auth::token::mint_demo(&request).unwrap();
    let own: Value = proxy.get("Condition", &served).await.json().await.unwrap();
    assert!(!codes(&own).contains(&"IM1-2111".to_string()), "{own}");
    proxy.stop().await;
    sims.shutdown().await;
}
