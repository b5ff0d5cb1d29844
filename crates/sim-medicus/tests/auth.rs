//! Per-call JWT checks, tenant routing, linkage exchange and the error shape.

use crate::common;
use common::*;
use serde_json::json;

#[tokio::test]
async fn good_and_bad_tokens() {
    let sim = start().await;
    let ping = format!("{T}/transactional-api/ping");
    let r = get(&sim, &ping, &trx()).await;
    assert_eq!(r.status, 200);
    let v = r.json();
    assert_eq!(v["application"]["identifier"], "im1-fhir-demo-app");
    assert_eq!(v["requestingOrganisation"]["organisationIdentifierValue"], "Y90003");

    // No token.
    let r = try_send(&sim, "GET", &ping, None, &[], None).await.expect("reply");
    assert_eq!(r.status, 401);
    assert_eq!(r.error_code(), "JWT_MISSING");
    let e = &r.json()["errors"][0];
    assert!(e["title"].is_string() && e["detail"].is_string());

    // Tampered signature.
    let mut t = trx();
    t.pop();
    t.push(if t.ends_with('A') { 'B' } else { 'A' });
    let r = get(&sim, &ping, &(t.clone() + "x")).await;
    assert_eq!((r.status, r.error_code().as_str()), (401, "JWT_INVALID"));

    let n = now();
    let claims = |iss: &str, aud: &str, iat: i64, exp: i64| {
        sign(&json!({"iss": iss, "aud": aud, "iat": iat, "exp": exp, "jti": uuid::Uuid::new_v4().to_string()}))
    };
    let r = get(&sim, &ping, &claims("someone-else", "y90003", n, n + 60)).await;
    assert_eq!((r.status, r.error_code().as_str()), (401, "INVALID_CREDENTIALS"));
    let r = get(&sim, &ping, &claims("im1-fhir-demo-app", "y90001", n, n + 60)).await;
    assert_eq!((r.status, r.error_code().as_str()), (401, "JWT_INVALID"));
    // Expired (session expiry: each token lives at most 5 minutes).
    let r = get(&sim, &ping, &claims("im1-fhir-demo-app", "y90003", n - 400, n - 100)).await;
    assert_eq!((r.status, r.error_code().as_str()), (401, "JWT_EXPIRED"));
    // Lifetime over 5 minutes.
    let r = get(&sim, &ping, &claims("im1-fhir-demo-app", "y90003", n, n + 301)).await;
    assert_eq!((r.status, r.error_code().as_str()), (401, "JWT_INVALID"));

    // A replayed jti.
    let t = trx();
    assert_eq!(get(&sim, &ping, &t).await.status, 200);
    let r = get(&sim, &ping, &t).await;
    assert_eq!((r.status, r.error_code().as_str()), (401, "JWT_REPLAYED"));

    // PFS needs the user identifier claims.
    let r = get(&sim, &format!("{T}/pfs-api/v1/user/list-linked-patients"), &trx()).await;
    assert_eq!((r.status, r.error_code().as_str()), (401, "JWT_INVALID"));

    // Unknown tenant and unknown path.
    let r = get(&sim, "/medicus/y90001/transactional-api/ping", &trx()).await;
    assert_eq!((r.status, r.error_code().as_str()), (404, "TENANT_NOT_FOUND"));
    let r = get(&sim, &format!("{T}/transactional-api/v1/nowhere"), &trx()).await;
    assert_eq!((r.status, r.error_code().as_str()), (404, "NOT_FOUND"));
}

#[tokio::test]
async fn linkage_exchange_and_linked_patients() {
    let sim = start().await;
    let c = creds(&sim, "9000000009");
    let path = format!("{T}/pfs-api/v1/user/exchange-linkage-token");
    // Before any exchange the patient cannot be read.
    let r = get(
        &sim,
        &format!("{T}/pfs-api/v1/patient/{}/nhs-number", c.patient_id),
        &pfs(&c.nhs_login_sub),
    )
    .await;
    assert_eq!((r.status, r.error_code().as_str()), (403, "NO_PATIENT_APP_LINKAGE"));
    let r = post(
        &sim,
        &path,
        &pfs(&c.nhs_login_sub),
        &json!({"linkageToken": c.linkage_token, "dateOfBirth": "1900-01-01"}),
    )
    .await;
    assert_eq!((r.status, r.error_code().as_str()), (400, "LINKAGE_TOKEN_INVALID"));
    let (sub, pid) = link(&sim, "9000000009").await;
    let r = post(
        &sim,
        &path,
        &pfs(&sub),
        &json!({"linkageToken": c.linkage_token, "dateOfBirth": c.date_of_birth}),
    )
    .await;
    assert_eq!((r.status, r.error_code().as_str()), (409, "LINKAGE_TOKEN_EXCHANGED"));

    let r = get(&sim, &format!("{T}/pfs-api/v1/patient/{pid}/nhs-number"), &pfs(&sub)).await;
    assert_eq!(r.json(), json!({"nhsNumber": "9000000009"}));

    let r = get(&sim, &format!("{T}/pfs-api/v1/user/list-linked-patients"), &pfs(&sub)).await;
    let list = r.json()["associatedPatients"].as_array().cloned().expect("list");
    assert_eq!(list.len(), 2);
    assert_eq!(list[0]["id"], pid.as_str());
    assert_eq!(list[0]["associationType"], "self");
    assert_eq!(list[0]["name"], "Ms Alex TESTER");
    assert_eq!(list[1]["associationType"], "proxy");
    assert_eq!(list[1]["relationship"], "mother");
    assert!(list[0]["relationship"].is_null());
    assert_eq!(list[0]["careRecordAccess"], "enabled");
    // The child (proxy) is readable through the parent's linkage.
    let child = list[1]["id"].as_str().expect("child");
    let r = get(&sim, &format!("{T}/pfs-api/v1/patient/{child}/nhs-number"), &pfs(&sub)).await;
    assert_eq!(r.json()["nhsNumber"], "9000000017");
    // Another user cannot read Alex.
    let other = creds(&sim, "9000000017");
    let r = get(
        &sim,
        &format!("{T}/pfs-api/v1/patient/{pid}/nhs-number"),
        &pfs(&other.nhs_login_sub),
    )
    .await;
    assert_eq!(r.status, 403);
}

#[tokio::test]
async fn key_id_and_requesting_practitioner() {
    let sim = start_with(
        options(1),
        im1_sim_medicus::MedicusConfig {
            throttle: false,
            key_id: Some("other-kid".into()),
            ..Default::default()
        },
    )
    .await;
    let r = get(&sim, &format!("{T}/transactional-api/ping"), &trx()).await;
    assert_eq!((r.status, r.error_code().as_str()), (401, "JWT_INVALID"));

    // A user-restricted call names the practitioner; writes record them as the author.
    let sim = start().await;
    let n = now();
    let staff = get(&sim, &format!("{T}/transactional-api/v1/practitioners"), &trx())
        .await
        .json();
    let nurse = staff["practitioners"][3].clone();
    let token = || {
        sign(
            &json!({"iss": "im1-fhir-demo-app", "aud": "y90003", "iat": n, "exp": n + 300,
        "jti": uuid::Uuid::new_v4().to_string(),
        "requestingPractitioner": {"sdsUserId": nurse["professionalRegistrationNumber"], "name": nurse["name"]}}),
        )
    };
    let r = get(&sim, &format!("{T}/transactional-api/ping"), &token()).await;
    assert_eq!(r.json()["requestingPractitioner"]["name"], nurse["name"]);
    let pid = creds(&sim, "9000000009").patient_id;
    let base = format!("{T}/transactional-api/v1/patient/{pid}");
    let r = post(
        &sim,
        &format!("{base}/journal/problems"),
        &token(),
        &json!({"code": {"code": "195967001"}, "startDate": "2025"}),
    )
    .await;
    assert_eq!(r.status, 201);
    let id = r.json()["id"].clone();
    let j = get(&sim, &format!("{base}/journal?types=problem"), &trx()).await.json();
    let e = j["journal"]
        .as_array()
        .expect("list")
        .iter()
        .find(|e| e["id"] == id)
        .cloned()
        .expect("problem");
    assert_eq!(e["recordingPractitioner"]["id"], nurse["id"]);
    let r = post(
        &sim,
        &format!("{base}/journal/problems"),
        &trx(),
        &json!({"code": {"code": "195967001"}, "startDate": "2025", "recordingPractitionerId": "nobody"}),
    )
    .await;
    assert_eq!((r.status, r.error_code().as_str()), (422, "PRACTITIONER_NOT_FOUND"));
}
