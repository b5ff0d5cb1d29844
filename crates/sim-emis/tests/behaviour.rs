//! Rate limiting, concurrency, injected faults, service switches and determinism.

use crate::common;

use common::*;
use im1_sim::common::FaultRates;
use im1_sim::record::{Service, Supplier};
use im1_sim_emis::EmisConfig;
use serde_json::json;
use std::time::{Duration, Instant};

#[tokio::test]
async fn rate_limit_answers_429_with_retry_after_and_switches_off() {
    let sim = start(EmisConfig::default()).await;
    let mut limited = None;
    for _ in 0..20 {
        let r = sim.pfs("POST", "sessions/endusersession", &[], None).await;
        if r.status == 429 {
            limited = Some(r);
            break;
        }
        assert_eq!(r.status, 200);
    }
    let r = limited.expect("throttled within 20 calls");
    assert_eq!(r.headers["retry-after"], "2");
    assert_eq!(r.json()["Message"], "Rate limit exceeded");

    let free = start(unthrottled()).await;
    for _ in 0..40 {
        assert_eq!(free.pfs("POST", "sessions/endusersession", &[], None).await.status, 200);
    }
}

#[tokio::test]
async fn concurrent_calls_on_one_session_are_allowed() {
    // EMIS has no one-request-at-a-time rule (SystmOne does): parallel calls on one session all succeed.
    let sim = start(unthrottled()).await;
    let l = sim.login(NHS).await;
    let (a, b, c) = tokio::join!(
        sim.get(&l, "record", "&itemType=TestResults"),
        sim.get(&l, "record", "&itemType=Medication"),
        sim.get(&l, "demographics", ""),
    );
    assert_eq!((a.status, b.status, c.status), (200, 200, 200));
}

#[tokio::test]
async fn every_fault_mode_in_the_dialects_shapes() {
    let sim = start(unthrottled()).await;
    let l = sim.login(NHS).await;
    let path = format!("/emis/pfs/demographics?userPatientLinkToken={}", l.token);
    let call = |fault: &'static str| {
        let app = sim.config.application_id.clone();
        let (eus, sid, path) = (l.eus.clone(), l.sid.clone(), path.clone());
        let addr = sim.addr();
        async move {
            send(
                addr,
                "GET",
                &path,
                &[
                    ("X-API-ApplicationId", &app),
                    ("X-API-Version", "2.1.0.0"),
                    ("X-API-EndUserSessionId", &eus),
                    ("X-API-SessionId", &sid),
                    ("X-Sim-Fault", fault),
                ],
                None,
            )
            .await
        }
    };
    let r = call("500").await.expect("reply");
    assert_eq!(r.status, 500);
    assert_eq!(r.json()["Message"], "An error has occurred.");
    let r = call("503").await.expect("reply");
    assert_eq!(r.status, 503);
    assert!(r.body.is_empty(), "outage: empty body");
    let r = call("429").await.expect("reply");
    assert_eq!(r.status, 429);
    assert_eq!(r.headers["retry-after"], "2");
    assert_eq!(r.json()["Message"], "Rate limit exceeded");
    let r = call("expired-session").await.expect("reply");
    assert_eq!(r.status, 401);
    assert_eq!(r.json()["Message"], "Missing or invalid EndUserSessionId");
    assert!(call("drop").await.is_err(), "dropped connection");
    let r = call("malformed").await.expect("reply");
    assert!(serde_json::from_slice::<serde_json::Value>(&r.body).is_err());
    assert!(call("truncate").await.is_err(), "truncated body");
    let t = Instant::now();
    let r = call("latency=200").await.expect("reply");
    assert_eq!(r.status, 200);
    assert!(t.elapsed() >= Duration::from_millis(200));

    // drop-after-commit: the write happens though no reply arrives.
    let before = sim.get(&l, "messages", "").await.json()["Messages"]
        .as_array()
        .map_or(0, Vec::len);
    let body =
        serde_json::to_vec(&json!({"UserPatientLinkToken": l.token, "Subject": "S", "Body": "B"})).expect("json");
    let r = send(
        sim.addr(),
        "POST",
        "/emis/pfs/messages",
        &[
            ("X-API-ApplicationId", sim.config.application_id.as_str()),
            ("X-API-Version", "2.1.0.0"),
            ("X-API-EndUserSessionId", &l.eus),
            ("X-API-SessionId", &l.sid),
            ("content-type", "application/json"),
            ("X-Sim-Fault", "drop-after-commit"),
        ],
        Some(body),
    )
    .await;
    assert!(r.is_err());
    let after = sim.get(&l, "messages", "").await.json()["Messages"]
        .as_array()
        .map_or(0, Vec::len);
    assert_eq!(after, before + 1, "committed before the drop");
}

#[tokio::test]
async fn fault_rates_apply_without_a_header() {
    let sim = start(EmisConfig {
        faults: FaultRates {
            server_error: 1.0,
            seed: 3,
            ..FaultRates::default()
        },
        ..unthrottled()
    })
    .await;
    for _ in 0..5 {
        let r = sim.pfs("POST", "sessions/endusersession", &[], None).await;
        assert!(r.status == 500 || r.status == 503, "{}", r.status);
    }
}

#[tokio::test]
async fn service_switches_answer_services_access_violation() {
    let sim = start(unthrottled()).await;
    let l = sim.login(NHS).await;
    let window = "&fromDateTime=2025-03-04T08:00:00&toDateTime=2025-03-10T18:00:00";
    assert_eq!(sim.get(&l, "appointmentslots", window).await.status, 200);
    sim.world
        .set_practice_service("Y90001", Service::Appointments, false)
        .expect("switch");
    let r = sim.get(&l, "appointmentslots", window).await;
    assert_eq!(r.status, 403);
    assert!(r.json()["Exceptions"][0]["Message"]
        .as_str()
        .is_some_and(|m| m.contains("Services Access violation")));
    let pid = sim.world.resolve(Supplier::Emis, &l.patient_guid).expect("patient");
    sim.world
        .set_patient_service("Y90001", &pid, Service::Records, false)
        .expect("switch");
    assert_eq!(sim.get(&l, "record", "&itemType=Allergies").await.status, 403);
    assert_eq!(
        sim.get(&l, "demographics", "").await.status,
        200,
        "demographics need no service"
    );
    assert_eq!(sim.get(&l, "courses", "").await.status, 200, "prescriptions still on");
    let tok = sim.partner_token().await;
    let partner = sim
        .partner(
            &tok,
            "GET",
            &format!("patients/{}/record?itemType=Allergies", l.patient_guid),
            None,
        )
        .await;
    assert_eq!(partner.status, 200, "switches are patient-facing only");
    let settings = sim
        .pfs(
            "GET",
            "practices/Y90001/settings",
            &[("X-API-EndUserSessionId", &l.eus)],
            None,
        )
        .await
        .json();
    assert_eq!(settings["Services"]["AppointmentsEnabled"], false);
}

async fn transcript(sim: &Sim) -> Vec<u8> {
    let mut out = Vec::new();
    let l = sim.login(NHS).await;
    out.extend_from_slice(l.session.to_string().as_bytes());
    for item in [
        "Allergies",
        "Medication",
        "Problems",
        "TestResults",
        "Immunisations",
        "Consultations",
        "Documents",
    ] {
        out.extend_from_slice(&sim.get(&l, "record", &format!("&itemType={item}")).await.body);
    }
    for (path, q) in [
        ("demographics", ""),
        (
            "appointmentslots",
            "&fromDateTime=2025-03-05T08:00:00&toDateTime=2025-03-12T18:00:00",
        ),
        (
            "appointmentslots/meta",
            "&sessionStartDate=2025-03-05&sessionEndDate=2025-03-12",
        ),
        (
            "appointments",
            "&FetchPreviousAppointments=true&PreviousAppointmentsFromDate=2024-01-01",
        ),
        ("courses", ""),
        ("prescriptionrequests", ""),
        ("messages", ""),
    ] {
        out.extend_from_slice(&sim.get(&l, path, q).await.body);
    }
    let tok = sim.partner_token().await;
    out.extend_from_slice(tok.as_bytes());
    out.extend_from_slice(
        &sim.partner(&tok, "GET", &format!("patients?nhsNumber={NHS}"), None)
            .await
            .body,
    );
    out.extend_from_slice(
        &sim.partner(
            &tok,
            "POST",
            "GetChangedPatients",
            Some(json!({"Since": "2025-02-01T00:00:00+00:00"})),
        )
        .await
        .body,
    );
    out.extend_from_slice(
        &sim.req(
            "GET",
            "/emis/bulk/v1/files/CareRecord_Observation.csv",
            &[
                ("Authorization", &format!("Bearer {tok}")),
                ("X-EMIS-OrganisationCdb", "50002"),
            ],
            None,
        )
        .await
        .body,
    );
    out
}

#[tokio::test]
async fn two_worlds_from_one_seed_answer_byte_for_byte_alike() {
    let a = start(unthrottled()).await;
    let b = start(unthrottled()).await;
    let ta = transcript(&a).await;
    let tb = transcript(&b).await;
    assert!(ta.len() > 10_000);
    assert!(ta == tb, "replies differ");
}
