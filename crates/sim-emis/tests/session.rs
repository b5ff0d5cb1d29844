//! The PFS session flow and the Partner token, with the error shapes for bad input and expiry.

use crate::common;

use common::*;
use im1_sim_emis::{linkage_credentials, EmisConfig};
use serde_json::json;
use std::time::Duration;

#[tokio::test]
async fn pfs_sign_in_links_and_opens_a_session_with_proxy_links() {
    let sim = start(unthrottled()).await;
    let l = sim.login(NHS).await;
    let s = &l.session;
    assert_eq!(s["Title"], "Ms");
    assert_eq!(s["FirstName"], "Alex");
    assert_eq!(s["Surname"], "Tester");
    assert_eq!(s["SessionId"].as_str().map(str::len), Some(22));
    let links = s["UserPatientLinks"].as_array().expect("links");
    assert_eq!(links[0]["AssociationType"], "Self");
    assert_eq!(links[0]["NationalPracticeCode"], "Y90001");
    // A link names no patient (its fields are the confirmed three); its record says whose it is.
    assert!(links.iter().all(|link| link.get("PatientGuid").is_none()));
    let own = sim.get(&l, "record", "&itemType=Allergies").await.json();
    assert_eq!(own["MedicalRecord"]["PatientGuid"], l.patient_guid.as_str());
    // Patient 0 acts for the child 9000000017.
    let child = linkage_credentials(&sim.world, &sim.config)
        .into_iter()
        .find(|c| c.nhs_number == "9000000017")
        .expect("child");
    let proxy = links
        .iter()
        .find(|x| x["AssociationType"] == "Proxy")
        .expect("proxy link");
    let token = proxy["UserPatientLinkToken"].as_str().expect("token");
    let child_login = Login {
        token: token.to_string(),
        patient_guid: child.patient_guid.clone(),
        ..l.clone()
    };
    let d = sim.get(&child_login, "demographics", "").await.json();
    assert_eq!(d["PatientIdentifiers"][0]["IdentifierValue"], "9000000017");
    let theirs = sim.get(&child_login, "record", "&itemType=Allergies").await.json();
    assert_eq!(theirs["MedicalRecord"]["PatientGuid"], child.patient_guid.as_str());
}

#[tokio::test]
async fn relinking_gives_the_same_access_identity() {
    let sim = start(unthrottled()).await;
    let cred = linkage_credentials(&sim.world, &sim.config)
        .into_iter()
        .find(|c| c.nhs_number == NHS)
        .expect("cred");
    let mut ids = Vec::new();
    for _ in 0..2 {
        let eus = sim.pfs("POST", "sessions/endusersession", &[], None).await.json();
        let eus = eus["EndUserSessionId"].as_str().expect("eus").to_string();
        let r = sim
            .pfs(
                "POST",
                "me/applications",
                &[("X-API-EndUserSessionId", &eus)],
                Some(json!({"Surname": "tester", "DateOfBirth": "1985-04-12T00:00:00",
                    "LinkageDetails": {"AccountId": cred.account_id, "LinkageKey": cred.linkage_key,
                                       "NationalPracticeCode": "Y90001"}})),
            )
            .await;
        assert_eq!(r.status, 200, "{}", r.text());
        assert_eq!(r.json()["StatusCode"], "Linked");
        ids.push(r.json()["AccessIdentityGuid"].clone());
    }
    assert_eq!(ids[0], ids[1]);
}

#[tokio::test]
async fn bad_credentials_and_headers_get_the_dialects_errors() {
    let sim = start(unthrottled()).await;
    let cred = linkage_credentials(&sim.world, &sim.config)
        .into_iter()
        .find(|c| c.nhs_number == NHS)
        .expect("cred");
    // Wrong version, wrong application.
    let r = sim
        .req(
            "POST",
            "/emis/pfs/sessions/endusersession",
            &[
                ("X-API-ApplicationId", &sim.config.application_id),
                ("X-API-Version", "1.0"),
            ],
            None,
        )
        .await;
    assert_eq!(r.status, 400);
    assert_eq!(r.json()["Message"], "Unsupported API version");
    let r = sim
        .req(
            "POST",
            "/emis/pfs/sessions/endusersession",
            &[
                ("X-API-ApplicationId", "00000000-0000-0000-0000-000000000000"),
                ("X-API-Version", "2.1.0.0"),
            ],
            None,
        )
        .await;
    assert_eq!(r.status, 401);
    // Linking without or with an unknown end-user session.
    let r = sim
        .pfs(
            "POST",
            "me/applications",
            &[("X-API-EndUserSessionId", "nope")],
            Some(json!({})),
        )
        .await;
    assert_eq!(r.status, 401);
    assert_eq!(r.json()["Message"], "Missing or invalid EndUserSessionId");
    let eus = sim.pfs("POST", "sessions/endusersession", &[], None).await.json();
    let eus = eus["EndUserSessionId"].as_str().expect("eus").to_string();
    let h = [("X-API-EndUserSessionId", eus.as_str())];
    let link = |key: &str, surname: &str| {
        json!({"Surname": surname, "DateOfBirth": "1985-04-12T00:00:00",
               "LinkageDetails": {"AccountId": cred.account_id, "LinkageKey": key, "NationalPracticeCode": "Y90001"}})
    };
    let r = sim
        .pfs("POST", "me/applications", &h, Some(link("WRONGKEY", "Tester")))
        .await;
    assert_eq!(r.status, 400);
    assert_eq!(r.json()["InternalResponseCode"], -1180);
    assert_eq!(r.json()["Exceptions"][0]["Message"], "Invalid linkage details");
    let r = sim
        .pfs("POST", "me/applications", &h, Some(link(&cred.linkage_key, "Smith")))
        .await;
    assert_eq!(r.json()["InternalResponseCode"], -1181);
    let r = sim
        .pfs(
            "POST",
            "me/applications",
            &h,
            Some(json!({"Surname": "Tester", "DateOfBirth": "1985-04-12T00:00:00"})),
        )
        .await;
    assert_eq!(r.status, 400);
    assert!(r.json()["ModelState"]["LinkageDetails.AccountId"].is_array());
    let r = sim
        .pfs(
            "POST",
            "sessions",
            &h,
            Some(json!({"AccessIdentityGuid": "X", "NationalPracticeCode": "Y90001"})),
        )
        .await;
    assert_eq!(r.status, 400);
    // A patient call without the link token, or with someone else's.
    let l = sim.login(NHS).await;
    let r = sim
        .pfs(
            "GET",
            "demographics",
            &[("X-API-EndUserSessionId", &l.eus), ("X-API-SessionId", &l.sid)],
            None,
        )
        .await;
    assert_eq!(r.status, 400);
    assert!(r.json()["ModelState"]["userPatientLinkToken"].is_array());
    let other = Login {
        token: "notALinkToken".into(),
        ..l.clone()
    };
    assert_eq!(sim.get(&other, "demographics", "").await.status, 400);
    let bad_sid = Login {
        sid: "notASession".into(),
        ..l.clone()
    };
    let r = sim.get(&bad_sid, "demographics", "").await;
    assert_eq!(r.status, 401);
    assert_eq!(r.json()["Message"], "Missing or invalid SessionId");
}

#[tokio::test]
async fn sessions_idle_out() {
    let sim = start(EmisConfig {
        session_idle: Duration::from_millis(300),
        end_user_session_idle: Duration::from_millis(900),
        ..unthrottled()
    })
    .await;
    let l = sim.login(NHS).await;
    assert_eq!(sim.get(&l, "demographics", "").await.status, 200);
    tokio::time::sleep(Duration::from_millis(400)).await;
    let r = sim.get(&l, "demographics", "").await;
    assert_eq!(r.status, 401, "session idled out");
    assert_eq!(r.json()["Message"], "Missing or invalid SessionId");
    tokio::time::sleep(Duration::from_millis(1000)).await;
    let r = sim.get(&l, "demographics", "").await;
    assert_eq!(r.json()["Message"], "Missing or invalid EndUserSessionId");
    // A fresh sign-in works again.
    let l = sim.login(NHS).await;
    assert_eq!(sim.get(&l, "demographics", "").await.status, 200);
}

#[tokio::test]
async fn partner_token_and_headers() {
    let sim = start(EmisConfig {
        token_lifetime: Duration::from_millis(500),
        ..unthrottled()
    })
    .await;
    let bad = send(
        sim.addr(),
        "POST",
        "/emis/partner/v1/token",
        &[("content-type", "application/x-www-form-urlencoded")],
        Some(b"grant_type=client_credentials&client_id=im1-fhir-demo&client_secret=wrong".to_vec()),
    )
    .await
    .expect("send");
    assert_eq!(bad.status, 401);
    assert_eq!(bad.json()["error"], "invalid_client");
    let raw = send(
        sim.addr(),
        "POST",
        "/emis/partner/v1/token",
        &[("content-type", "application/x-www-form-urlencoded")],
        Some(b"grant_type=client_credentials&client_id=im1-fhir-demo&client_secret=emis-demo-secret".to_vec()),
    )
    .await
    .expect("send")
    .json();
    assert_eq!(raw["token_type"], "Bearer");
    assert!(raw["expires_in"].is_u64());
    let tok = raw["access_token"].as_str().expect("token").to_string();
    let path = format!("/emis/partner/v1/patients?nhsNumber={NHS}");
    let auth = format!("Bearer {tok}");
    let no_cdb = sim.req("GET", &path, &[("Authorization", &auth)], None).await;
    assert_eq!(no_cdb.status, 400);
    let wrong_cdb = sim
        .req(
            "GET",
            &path,
            &[("Authorization", &auth), ("X-EMIS-OrganisationCdb", "1")],
            None,
        )
        .await;
    assert_eq!(wrong_cdb.status, 403);
    assert_eq!(
        sim.partner(&tok, "GET", &format!("patients?nhsNumber={NHS}"), None)
            .await
            .status,
        200
    );
    assert_eq!(
        sim.partner("forged", "GET", &format!("patients?nhsNumber={NHS}"), None)
            .await
            .status,
        401
    );
    tokio::time::sleep(Duration::from_millis(600)).await;
    let expired = sim
        .partner(&tok, "GET", &format!("patients?nhsNumber={NHS}"), None)
        .await;
    assert_eq!(expired.status, 401, "expired token");
}
