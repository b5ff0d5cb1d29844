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
    }
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
