//! The PFS surface over real HTTP: linkage, sessions, errors, every record section, slots, prescriptions,
//! messages, service switches, throttling, faults and replay.

use crate::common;

use common::*;
use im1_sim::record::{Service, PATIENT_NHS_NUMBER};
use std::time::Duration;

#[tokio::test]
async fn link_authenticate_and_session_rules() {
    let sim = start(quiet()).await;
    let c = creds(&sim, PATIENT_NHS_NUMBER);

    // Bad passphrase, wrong surname, wrong provider.
    let mut bad = c.clone();
    bad.passphrase = "AAAA-AAAA".into();
    assert_eq!(link(&sim, &bad).await.error_code().as_deref(), Some("2006"));
    let mut bad = c.clone();
    bad.last_name = "Nobody".into();
    assert_eq!(link(&sim, &bad).await.error_code().as_deref(), Some("2008"));

    let linked = link(&sim, &c).await.xml();
    assert_eq!(linked.attr("accountId"), Some(c.account_id.as_str()));
    assert_eq!(linked.attr("passphraseToLink"), Some(c.passphrase.as_str()));
    let pass = linked.attr("passphrase").expect("passphrase").to_string();
    assert_eq!(pass.len(), 32);

    // The linkage passphrase itself does not authenticate; the returned one does.
    let r = authenticate(&sim, &c.account_id, &c.passphrase).await;
    assert_eq!(r.error_code().as_deref(), Some("9"));
    assert!(r.header("suid").is_none());

    let s = login(&sim, PATIENT_NHS_NUMBER).await;
    assert_eq!(s.suid.len(), 16);
    let auth = s.auth.xml();
    let user = auth.child("User").and_then(|u| u.child("Person")).expect("User/Person");
    assert_eq!(user.attr("patientId"), Some(s.patient_id.as_str()));
    assert_eq!(user.attr("dateOfBirth"), Some(c.date_of_birth.as_str()));
    assert_eq!(user.attr("gender"), Some("F"));
    assert_eq!(
        user.child("NationalId").map(|n| n.text.as_str()),
        Some(PATIENT_NHS_NUMBER)
    );
    let name = user.child("PersonName").expect("PersonName");
    assert_eq!(name.attr("title"), Some("Ms"));
    assert_eq!(name.attr("forename"), Some("Alex"));
    assert_eq!(name.attr("surname"), Some("Tester"));
    assert_eq!(user.children_named("PreviousName").count(), 1);
    assert_eq!(user.children_named("Telecom").count(), 3);
    assert_eq!(user.child("Ethnicity").and_then(|e| e.attr("code")), Some("A"));
    assert_eq!(
        user.child("GpRegistration").and_then(|e| e.attr("unitId")),
        Some("Y90002")
    );
    // The proxy child is listed as a second person and a second PatientAccess.
    assert_eq!(auth.children_named("Person").count(), 2);
    let access = auth.child("Registration").expect("Registration");
    assert_eq!(access.children_named("PatientAccess").count(), 2);
    assert_eq!(
        access
            .child("PatientAccess")
            .and_then(|a| a.child("SiteDetails"))
            .and_then(|s| s.attr("unitName")),
        Some("Sim Surgery Two")
    );

    // Unknown suid: Error 3.
    let r = pfs(
        &sim,
        "ViewAppointments",
        Some("0000000000000000"),
        r#"<ViewAppointments apiVersion="1" uuid="x1"/>"#,
    )
    .await;
    assert_eq!(r.status, 200);
    assert_eq!(r.error_code().as_deref(), Some("3"));
    assert_eq!(r.xml().attr("uuid"), Some("x1"));

    // Logoff ends the session.
    assert_eq!(msg(&sim, &s, "Logoff", "", "").await.xml().name, "LogoffReply");
    assert_eq!(
        msg(&sim, &s, "ViewAppointments", "", "").await.error_code().as_deref(),
        Some("3")
    );

    // A patient the session cannot reach: Error 6.
    let s = login(&sim, PATIENT_NHS_NUMBER).await;
    let other = creds(&sim, &sim.world.read(|r| r.patients[2].nhs_number.clone()));
    let body = format!(
        r#"<ViewPatientOverview apiVersion="1" uuid="{}" patientId="{}"/>"#,
        uuid(),
        other.patient_id
    );
    assert_eq!(
        pfs(&sim, "ViewPatientOverview", Some(&s.suid), &body)
            .await
            .error_code()
            .as_deref(),
        Some("6")
    );
    // Another user's onlineUserId: Error 6 too; the session's own is served.
    let as_other = format!(
        r#"<ViewPatientOverview apiVersion="1" uuid="{}" patientId="{}" onlineUserId="0000000000000000"/>"#,
        uuid(),
        s.patient_id
    );
    let refused = pfs(&sim, "ViewPatientOverview", Some(&s.suid), &as_other).await;
    assert_eq!(refused.error_code().as_deref(), Some("6"));
    let own = msg(&sim, &s, "ViewPatientOverview", "", "").await;
    assert_eq!(own.error_code(), None, "{}", own.body);
}

#[tokio::test]
async fn sessions_expire_when_idle() {
    let sim = start(im1_sim_systmone::SystmOneConfig {
        session_idle: Duration::from_millis(300),
        ..quiet()
    })
    .await;
    let s = login(&sim, PATIENT_NHS_NUMBER).await;
    assert_eq!(
        msg(&sim, &s, "ViewAppointments", "", "").await.xml().name,
        "ViewAppointmentsReply"
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        msg(&sim, &s, "ViewAppointments", "", "").await.error_code().as_deref(),
        Some("3")
    );
}

#[tokio::test]
async fn malformed_and_mismatched_requests_are_error_1() {
    let sim = start(quiet()).await;
    let r = pfs(&sim, "Authenticate", None, "<Authenticate uuid=\"u9\"").await;
    assert_eq!(r.status, 400);
    assert_eq!(r.error_code().as_deref(), Some("1"));
    assert_eq!(r.xml().attr("uuid"), Some("u9"));
    let r = pfs(&sim, "LinkAccount", None, r#"<Authenticate uuid="u10"/>"#).await;
    assert_eq!(r.status, 400);
    assert_eq!(r.error_code().as_deref(), Some("1"));
    let s = login(&sim, PATIENT_NHS_NUMBER).await;
    assert_eq!(
        msg(&sim, &s, "Explode", "", "").await.error_code().as_deref(),
        Some("1")
    );
    assert_eq!(get(&sim, "/nothing").await.status, 404);
}

#[tokio::test]
async fn overview_record_results_and_documents() {
    let sim = start(quiet()).await;
    let s = login(&sim, PATIENT_NHS_NUMBER).await;
    let rec = sim.world.snapshot();
    let p = rec
        .patient_by_nhs_number(PATIENT_NHS_NUMBER)
        .expect("patient 0")
        .clone();

    let ov = msg(&sim, &s, "ViewPatientOverview", "", "").await.xml();
    assert_eq!(ov.name, "ViewPatientOverviewReply");
    let allergies = ov.child("Allergies").expect("Allergies");
    for a in &p.clinical.allergies {
        let item = allergies
            .children_named("Item")
            .find(|i| i.attr("id") == Some(tid_of(&a.meta.id.0).as_str()))
            .expect("allergy item");
        assert_eq!(item.attr("description"), Some(a.code.display.as_str()));
        assert!(item.attr("codeScheme").is_some());
    }
    let repeats = ov.child("CurrentRepeats").expect("CurrentRepeats");
    for i in repeats.children_named("Item") {
        assert!(i.attr("dmd").is_some());
        assert!(!i.text.is_empty(), "dosage text");
    }

    let record = msg(&sim, &s, "RequestPatientRecord", "", "").await.xml();
    assert_eq!(record.attr("moreAvailable"), Some("false"));
    let all = items(&record);
    assert_eq!(
        all.len(),
        p.clinical.allergies.len()
            + p.clinical.problems.len()
            + p.clinical.medications.len()
            + p.clinical.observations.len()
            + p.clinical.immunisations.len()
            + p.clinical.documents.len()
    );
    // Newest first.
    let dates: Vec<&str> = record.children_named("Event").filter_map(|e| e.attr("date")).collect();
    let mut sorted = dates.clone();
    sorted.sort_by(|a, b| b.cmp(a));
    assert_eq!(dates, sorted);
    // Every event says where it happened (TPP's Event `date, doneBy, location`), entries outside a
    // consultation too.
    assert!(record
        .children_named("Event")
        .any(|e| e.attr("eventType") == Some("Entry")));
    for event in record.children_named("Event") {
        assert!(event.attr("location").is_some_and(|l| !l.is_empty()), "{event:?}");
        assert!(event.attr("doneBy").is_some(), "{event:?}");
    }
    // Consultation events carry their items with the section heading.
    let con = &p.clinical.consultations[0];
    let ev = record
        .children_named("Event")
        .find(|e| e.attr("id") == Some(tid_of(&con.meta.id.0).as_str()))
        .expect("consultation event");
    assert_eq!(ev.attr("eventType"), Some("Consultation"));
    assert_eq!(ev.attr("description"), Some(con.kind.display.as_str()));
    let listed: usize = con.sections.iter().map(|s| s.items.len()).sum();
    assert_eq!(ev.children_named("Item").count(), listed);
    assert!(ev.children_named("Item").all(|i| i.attr("section").is_some()));

    // Only immunisations.
    let imms = msg(&sim, &s, "RequestPatientRecord", r#"sections="immunisations""#, "")
        .await
        .xml();
    assert_eq!(items(&imms).len(), p.clinical.immunisations.len());
    assert!(items(&imms).iter().all(|i| i.attr("type") == Some("Immunisation")));
    assert_eq!(
        msg(&sim, &s, "RequestPatientRecord", r#"sections="bogus""#, "")
            .await
            .error_code()
            .as_deref(),
        Some("1")
    );

    // Blood pressure components.
    let bp = all
        .iter()
        .find(|i| i.children_named("Component").count() == 2)
        .expect("blood pressure item");
    assert!(bp
        .children_named("Component")
        .all(|c| c.attr("value").is_some() && c.attr("units").is_some()));

    // Test results: free text with range and flag.
    let tr = msg(
        &sim,
        &s,
        "TestResultsView",
        r#"startDate="2000-01-01T00:00:00.0Z" endDate="2025-03-03T00:00:00.0Z""#,
        "",
    )
    .await
    .xml();
    let labs: Vec<_> = p
        .clinical
        .observations
        .iter()
        .filter(|o| o.kind == im1_sim::record::ObservationKind::Laboratory)
        .collect();
    assert_eq!(tr.children_named("Item").count(), labs.len());
    let with_range = tr
        .children_named("Item")
        .find(|i| i.text.contains("(range"))
        .expect("a result with a range");
    assert!(with_range.attr("codeScheme").is_some());
    let detailed = msg(
        &sim,
        &s,
        "TestResultsViewDetailed",
        &format!(r#"itemId="{}""#, with_range.attr("id").unwrap_or_default()),
        "",
    )
    .await
    .xml();
    assert_eq!(detailed.child("Item").and_then(|i| i.attr("id")), with_range.attr("id"));

    // Document content.
    let doc = all
        .iter()
        .find(|i| i.attr("type") == Some("Document"))
        .expect("document");
    let size: usize = doc.attr("size").and_then(|s| s.parse().ok()).expect("size");
    let bin = msg(
        &sim,
        &s,
        "RequestBinaryData",
        &format!(
            r#"binaryDataId="{}" page="1""#,
            doc.attr("binaryDataId").unwrap_or_default()
        ),
        "",
    )
    .await
    .xml();
    assert_eq!(bin.attr("contentType"), doc.attr("contentType"));
    use base64::Engine;
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(bin.child("BinaryDataPage").map(|b| b.text.trim()).unwrap_or_default())
        .expect("base64");
    assert_eq!(bytes.len(), size);
    assert_eq!(bytes, p.clinical.documents[0].content);
}

#[tokio::test]
async fn confidential_items_are_withheld_from_patients() {
    let sim = start(quiet()).await;
    let rec = sim.world.snapshot();
    let p = rec
        .patients
        .iter()
        .find(|p| {
            p.registration("Y90002").is_some()
                && p.deceased_at.is_none()
                && im1_sim_systmone::render::all_items(&p.clinical)
                    .iter()
                    .any(|i| i.meta().confidential)
        })
        .expect("a patient with confidential items");
    let s = login(&sim, &p.nhs_number).await;
    let record = msg(&sim, &s, "RequestPatientRecord", "", "").await.xml();
    let ids: Vec<&str> = items(&record).iter().filter_map(|i| i.attr("id")).collect();
    for i in im1_sim_systmone::render::all_items(&p.clinical) {
        let id = tid_of(&i.meta().id.0);
        assert_eq!(ids.contains(&id.as_str()), !i.meta().confidential, "{}", i.meta().id);
    }
    // The clinician surface has them, marked.
    let r = ci(
        &sim,
        "GetPatientRecord",
        &format!(r#"patientId="{}""#, s.patient_id),
        "",
    )
    .await;
    let all = items(result(&r))
        .into_iter()
        .filter(|i| i.attr("confidential") == Some("y"))
        .count();
    assert!(all > 0);
}

#[tokio::test]
async fn slots_book_cancel_and_appointments() {
    let sim = start(quiet()).await;
    let s = login(&sim, PATIENT_NHS_NUMBER).await;
    let r = msg(
        &sim,
        &s,
        "ListSlots",
        r#"startDate="2025-03-04T00:00:00.0Z" numberOfDays="3""#,
        "",
    )
    .await
    .xml();
    assert_eq!(r.name, "ListSlotsReply");
    let session = r.child("Session").expect("a session");
    let slot = session.child("Slot").expect("a slot");
    assert!(session.attr("staffDetails").is_some() && session.attr("location").is_some());
    let (sid, start, end) = (
        session.attr("sessionId").unwrap_or_default().to_string(),
        slot.attr("startDate").unwrap_or_default().to_string(),
        slot.attr("endDate").unwrap_or_default().to_string(),
    );
    assert!(start.ends_with(".0Z"));
    let count = |n: &im1_sim_systmone::xml::Node| {
        n.children_named("Session")
            .map(|s| s.children_named("Slot").count())
            .sum::<usize>()
    };
    let before = count(&r);

    // Windows: too long, in the past.
    assert_eq!(
        msg(
            &sim,
            &s,
            "ListSlots",
            r#"startDate="2025-03-04T00:00:00.0Z" numberOfDays="15""#,
            ""
        )
        .await
        .error_code()
        .as_deref(),
        Some("4")
    );
    assert_eq!(
        msg(
            &sim,
            &s,
            "ListSlots",
            r#"startDate="2025-02-01T00:00:00.0Z" numberOfDays="3""#,
            ""
        )
        .await
        .error_code()
        .as_deref(),
        Some("5")
    );

    let book = format!(r#"sessionId="{sid}" startDate="{start}" endDate="{end}" notes="Sore throat""#);
    let booked = msg(&sim, &s, "BookAppointment", &book, "").await.xml();
    assert_eq!(booked.name, "BookAppointmentReply", "{booked:?}");
    let appt = booked.attr("apptId").expect("apptId").to_string();
    assert_eq!(appt.len(), 16);
    assert_eq!(
        msg(&sim, &s, "BookAppointment", &book, "")
            .await
            .error_code()
            .as_deref(),
        Some("1103")
    );
    let wrong = format!(r#"sessionId="{sid}" startDate="2025-03-04T03:00:00.0Z" endDate="2025-03-04T03:10:00.0Z""#);
    assert_eq!(
        msg(&sim, &s, "BookAppointment", &wrong, "")
            .await
            .error_code()
            .as_deref(),
        Some("1102")
    );

    let after = msg(
        &sim,
        &s,
        "ListSlots",
        r#"startDate="2025-03-04T00:00:00.0Z" numberOfDays="3""#,
        "",
    )
    .await
    .xml();
    assert_eq!(count(&after), before - 1);
    let list = msg(&sim, &s, "ViewAppointments", "", "").await.xml();
    let mine = list
        .children_named("Appointment")
        .find(|a| a.attr("apptId") == Some(appt.as_str()))
        .expect("booked appointment listed");
    assert_eq!(mine.attr("status"), Some("Booked"));
    assert_eq!(mine.attr("details"), Some("Sore throat"));
    assert_eq!(mine.attr("startDate"), Some(start.as_str()));
    // TPP's `address`: the site's address on one line, ending in its postcode.
    let address = mine.attr("address").expect("address");
    assert!(
        address.contains(", ") && address.ends_with(char::is_alphanumeric),
        "{address}"
    );

    let cancel = format!(r#"apptId="{appt}""#);
    assert_eq!(
        msg(&sim, &s, "CancelAppointment", &cancel, "").await.xml().name,
        "CancelAppointmentReply"
    );
    assert_eq!(
        msg(&sim, &s, "CancelAppointment", &cancel, "")
            .await
            .error_code()
            .as_deref(),
        Some("1104")
    );
    let again = msg(
        &sim,
        &s,
        "ListSlots",
        r#"startDate="2025-03-04T00:00:00.0Z" numberOfDays="3""#,
        "",
    )
    .await
    .xml();
    assert_eq!(count(&again), before, "the slot is free again");
    let list = msg(&sim, &s, "ViewAppointments", "", "").await.xml();
    assert!(list
        .children_named("Appointment")
        .any(|a| a.attr("apptId") == Some(appt.as_str()) && a.attr("status") == Some("Cancelled")));

    // The booking and the cancellation are in the change feed.
    let feed = ci(
        &sim,
        "GetChangedPatients",
        r#"unitId="Y90002" since="2025-03-03T00:00:00.0Z""#,
        "",
    )
    .await;
    let row = result(&feed)
        .children_named("Patient")
        .find(|p| p.attr("patientId") == Some(s.patient_id.as_str()))
        .expect("changed");
    assert!(row.attr("areas").unwrap_or_default().contains("appointments"));
}

#[tokio::test]
async fn repeat_medication_requests_and_messages() {
    let sim = start(quiet()).await;
    let s = login(&sim, PATIENT_NHS_NUMBER).await;
    let meds = msg(&sim, &s, "ListRepeatMedication", "", "").await.xml();
    assert_eq!(meds.attr("patientId"), Some(s.patient_id.as_str()));
    let m = meds
        .children_named("Medication")
        .find(|m| m.attr("requestable") == Some("y"))
        .expect("a requestable repeat");
    let drug = m.attr("drugId").unwrap_or_default().to_string();
    let req = msg(
        &sim,
        &s,
        "RequestMedication",
        r#"notes="Usual pharmacy please""#,
        &format!(r#"<Medication drugId="{drug}"/>"#),
    )
    .await
    .xml();
    assert_eq!(req.attr("status"), Some("Requested"), "{req:?}");
    let id = req.attr("requestId").expect("requestId").to_string();
    let list = msg(&sim, &s, "ListMedicationRequests", "", "").await.xml();
    let found = list
        .children_named("MedicationRequest")
        .find(|q| q.attr("requestId") == Some(id.as_str()))
        .expect("listed");
    assert_eq!(found.attr("notes"), Some("Usual pharmacy please"));
    assert_eq!(
        found.child("Medication").and_then(|m| m.attr("drugId")),
        Some(drug.as_str())
    );
    assert_eq!(
        msg(
            &sim,
            &s,
            "RequestMedication",
            "",
            r#"<Medication drugId="0000000000000000"/>"#
        )
        .await
        .error_code()
        .as_deref(),
        Some("2101")
    );

    let rec = msg(&sim, &s, "MessageRecipients", "", "").await.xml();
    let to = rec
        .child("Recipient")
        .and_then(|r| r.attr("recipientId"))
        .expect("recipient")
        .to_string();
    let sent = msg(
        &sim,
        &s,
        "MessageCreate",
        &format!(r#"recipientId="{to}" subject="Test results""#),
        "<Body>Are my results back? &amp; thanks</Body>",
    )
    .await
    .xml();
    let mid = sent.attr("messageId").expect("messageId").to_string();
    let view = msg(&sim, &s, "MessagesView", "", "").await.xml();
    let m = view
        .children_named("Message")
        .find(|m| m.attr("id") == Some(mid.as_str()))
        .expect("message listed");
    assert_eq!(m.attr("fromPatient"), Some("y"));
    assert_eq!(
        m.child("Body").map(|b| b.text.as_str()),
        Some("Are my results back? & thanks")
    );
}

#[tokio::test]
async fn service_switches() {
    let sim = start(quiet()).await;
    let s = login(&sim, PATIENT_NHS_NUMBER).await;
    let pid = sim
        .world
        .read(|r| r.patient_by_nhs_number(PATIENT_NHS_NUMBER).map(|p| p.id.clone()))
        .expect("id");
    sim.world
        .set_practice_service("Y90002", Service::Appointments, false)
        .expect("switch");
    assert_eq!(
        msg(&sim, &s, "ViewAppointments", "", "").await.error_code().as_deref(),
        Some("6")
    );
    sim.world
        .set_patient_service("Y90002", &pid, Service::Records, false)
        .expect("switch");
    assert_eq!(
        msg(&sim, &s, "RequestPatientRecord", "", "")
            .await
            .error_code()
            .as_deref(),
        Some("6")
    );
    let acc = msg(&sim, &s, "ListServiceAccesses", "", "").await.xml();
    let enabled = |name: &str| {
        acc.children_named("ServiceAccess")
            .find(|a| a.attr("name") == Some(name))
            .and_then(|a| a.attr("enabled"))
            .map(str::to_string)
    };
    assert_eq!(enabled("Appointments").as_deref(), Some("n"));
    assert_eq!(enabled("Records").as_deref(), Some("n"));
    assert_eq!(enabled("Prescriptions").as_deref(), Some("y"));
    assert_eq!(
        msg(&sim, &s, "ListRepeatMedication", "", "").await.xml().name,
        "ListRepeatMedicationReply"
    );
}

#[tokio::test]
async fn one_request_at_a_time_and_rate_limit() {
    let sim = start(im1_sim_systmone::SystmOneConfig {
        rate_per_second: 4,
        ..im1_sim_systmone::SystmOneConfig::default()
    })
    .await;
    let s = login(&sim, PATIENT_NHS_NUMBER).await;
    let body = format!(r#"<ViewAppointments apiVersion="1" uuid="{}"/>"#, uuid());
    let slow = pfs_raw(&sim, "ViewAppointments", Some(&s.suid), &body, &[("X-Sim-Hold", "400")]);
    let quick = async {
        tokio::time::sleep(Duration::from_millis(100)).await;
        msg(&sim, &s, "ViewAppointments", "", "").await
    };
    let (slow, quick) = tokio::join!(slow, quick);
    assert_eq!(slow.expect("reply").xml().name, "ViewAppointmentsReply");
    assert_eq!(quick.error_code().as_deref(), Some("12"));

    tokio::time::sleep(Duration::from_millis(1100)).await;
    let mut limited = None;
    for _ in 0..10 {
        let r = msg(&sim, &s, "ViewAppointments", "", "").await;
        if r.status == 503 {
            limited = Some(r);
            break;
        }
    }
    let r = limited.expect("rate limited");
    assert_eq!(r.header("retry-after"), Some("5"));
    assert_eq!(r.error_code().as_deref(), Some("99"));
}

#[tokio::test]
async fn throttle_off_allows_bursts_and_concurrency() {
    let sim = start(im1_sim_systmone::SystmOneConfig {
        rate_per_second: 1,
        ..quiet()
    })
    .await;
    let s = login(&sim, PATIENT_NHS_NUMBER).await;
    for _ in 0..10 {
        assert_eq!(msg(&sim, &s, "ViewAppointments", "", "").await.status, 200);
    }
    let body = format!(r#"<ViewAppointments apiVersion="1" uuid="{}"/>"#, uuid());
    let slow = pfs_raw(&sim, "ViewAppointments", Some(&s.suid), &body, &[("X-Sim-Hold", "300")]);
    let quick = async {
        tokio::time::sleep(Duration::from_millis(50)).await;
        msg(&sim, &s, "ViewAppointments", "", "").await
    };
    let (_, quick) = tokio::join!(slow, quick);
    assert_eq!(quick.xml().name, "ViewAppointmentsReply");
}

#[tokio::test]
async fn faults_in_the_dialect() {
    let sim = start(quiet()).await;
    let s = login(&sim, PATIENT_NHS_NUMBER).await;
    let body = |u: &str| format!(r#"<ViewAppointments apiVersion="1" uuid="{u}"/>"#);
    let with = |f: &'static str| {
        let b = body(&uuid());
        let suid = s.suid.clone();
        let sim = &sim;
        async move { pfs_raw(sim, "ViewAppointments", Some(&suid), &b, &[("X-Sim-Fault", f)]).await }
    };
    let r = with("500").await.expect("reply");
    assert_eq!(r.status, 500);
    assert!(r.body.is_empty());
    let r = with("503").await.expect("reply");
    assert_eq!((r.status, r.header("retry-after")), (503, Some("5")));
    assert_eq!(r.error_code().as_deref(), Some("99"));
    let r = with("429").await.expect("reply");
    assert_eq!(r.status, 429);
    assert!(r.header("retry-after").is_some());
    assert_eq!(r.error_code().as_deref(), Some("99"));
    let r = with("expired-session").await.expect("reply");
    assert_eq!((r.status, r.error_code().as_deref()), (200, Some("3")));
    assert!(with("drop").await.is_err());
    assert!(with("truncate").await.is_err());
    let r = with("malformed").await.expect("reply");
    assert!(im1_sim_systmone::xml::parse(&r.body).is_err());
    let r = with("latency=100").await.expect("reply");
    assert_eq!(r.xml().name, "ViewAppointmentsReply");

    // drop-after-commit: the booking commits though no reply came.
    let slots = msg(
        &sim,
        &s,
        "ListSlots",
        r#"startDate="2025-03-05T00:00:00.0Z" numberOfDays="1""#,
        "",
    )
    .await
    .xml();
    let session = slots.child("Session").expect("session");
    let slot = session.child("Slot").expect("slot");
    let b = format!(
        r#"<BookAppointment apiVersion="1" uuid="{}" patientId="{}" sessionId="{}" startDate="{}" endDate="{}"/>"#,
        uuid(),
        s.patient_id,
        session.attr("sessionId").unwrap_or_default(),
        slot.attr("startDate").unwrap_or_default(),
        slot.attr("endDate").unwrap_or_default()
    );
    assert!(pfs_raw(
        &sim,
        "BookAppointment",
        Some(&s.suid),
        &b,
        &[("X-Sim-Fault", "drop-after-commit")]
    )
    .await
    .is_err());
    let list = msg(&sim, &s, "ViewAppointments", "", "").await.xml();
    assert!(list
        .children_named("Appointment")
        .any(|a| a.attr("startDate") == slot.attr("startDate") && a.attr("status") == Some("Booked")));
    // The retry with the same uuid replays the first reply rather than booking twice.
    let replay = pfs(&sim, "BookAppointment", Some(&s.suid), &b).await;
    assert_eq!(replay.xml().name, "BookAppointmentReply", "{}", replay.body);
    let again = pfs(&sim, "BookAppointment", Some(&s.suid), &b).await;
    assert_eq!(again.body, replay.body);
}

#[tokio::test]
async fn code_table() {
    let sim = start(quiet()).await;
    let all = get(&sim, "/tpp/sim/ctv3").await.xml();
    let first = all
        .children_named("Code")
        .find(|c| c.attr("codeScheme") == Some("CTV3"))
        .expect("a CTV3 row");
    let code = first.attr("code").unwrap_or_default().to_string();
    let one = get(&sim, &format!("/tpp/sim/ctv3?code={}", code.replace('.', "%2E")))
        .await
        .xml();
    assert_eq!(one.attr("term"), first.attr("term"));
    assert_eq!(one.attr("snomed"), first.attr("snomed"));
    assert_eq!(get(&sim, "/tpp/sim/ctv3?code=zzzzz").await.status, 404);
}

#[tokio::test]
async fn proxy_access_and_booking_rules() {
    let sim = start(quiet()).await;
    let s = login(&sim, PATIENT_NHS_NUMBER).await;
    let child = creds(&sim, im1_sim::record::CHILD_NHS_NUMBER);
    let body = format!(
        r#"<PatientSelected apiVersion="1" uuid="{}" patientId="{}"/>"#,
        uuid(),
        child.patient_id
    );
    let sel = pfs(&sim, "PatientSelected", Some(&s.suid), &body).await.xml();
    assert_eq!(sel.attr("patientId"), Some(child.patient_id.as_str()));
    // Without a patientId the selected (child) patient is read.
    let body = format!(r#"<RequestPatientRecord apiVersion="1" uuid="{}"/>"#, uuid());
    let rec = pfs(&sim, "RequestPatientRecord", Some(&s.suid), &body).await.xml();
    let p = sim.world.snapshot();
    let kid = p
        .patient_by_nhs_number(im1_sim::record::CHILD_NHS_NUMBER)
        .expect("child");
    let first = im1_sim_systmone::render::all_items(&kid.clinical)
        .first()
        .map(|i| tid_of(&i.meta().id.0))
        .expect("child item");
    assert!(items(&rec).iter().any(|i| i.attr("id") == Some(first.as_str())));
    let auth = s.auth.xml();
    let rel = auth
        .child("Registration")
        .and_then(|r| {
            r.children_named("PatientAccess")
                .find(|a| a.attr("patientId") == Some(child.patient_id.as_str()))
        })
        .and_then(|a| a.attr("relationship"));
    assert_eq!(rel, Some("Mother"));

    // Today's slots: the world clock starts at 08:00, so a slot before 09:00 is within the hour (Error 40).
    let slots = msg(
        &sim,
        &s,
        "ListSlots",
        r#"startDate="2025-03-03T00:00:00.0Z" numberOfDays="1""#,
        "",
    )
    .await
    .xml();
    let soon = slots
        .children_named("Session")
        .flat_map(|se| se.children_named("Slot").map(move |sl| (se, sl)))
        .find(|(_, sl)| sl.attr("startDate").is_some_and(|d| d < "2025-03-03T09:00:00.0Z"));
    if let Some((se, sl)) = soon {
        let b = format!(
            r#"sessionId="{}" startDate="{}" endDate="{}""#,
            se.attr("sessionId").unwrap_or_default(),
            sl.attr("startDate").unwrap_or_default(),
            sl.attr("endDate").unwrap_or_default()
        );
        assert_eq!(
            msg(&sim, &s, "BookAppointment", &b, "").await.error_code().as_deref(),
            Some("40")
        );
    }
    // Another unit: Error 6.
    let body = format!(
        r#"<ViewAppointments apiVersion="1" uuid="{}" unitId="Y90001"/>"#,
        uuid()
    );
    assert_eq!(
        pfs(&sim, "ViewAppointments", Some(&s.suid), &body)
            .await
            .error_code()
            .as_deref(),
        Some("6")
    );
}
