//! The Client Integration surface over framed TCP: envelope checks, search, the full record walk for patient
//! 9000000009, paging, writes (visible in reads and the change feed), all-or-nothing consultations,
//! documents, faults chosen by `simFault`, replay and throttling.

use crate::common;

use common::*;
use im1_sim::record::codes::{scheme_code, Scheme};
use im1_sim::record::vocab::CodeSystem;
use im1_sim::record::{Concept, PATIENT_NHS_NUMBER};
use im1_sim_systmone::render::{all_items, tid};
use im1_sim_systmone::xml::{parse, Node};

fn code_matches(n: &Node, c: &Concept) -> bool {
    if c.system == CodeSystem::Dmd {
        return n.attr("dmd") == Some(c.code.as_str());
    }
    let sc = scheme_code(c);
    let scheme = if sc.scheme == Scheme::Ctv3 { "CTV3" } else { "SNOMED" };
    n.attr("code") == Some(sc.code.as_str())
        && n.attr("codeScheme") == Some(scheme)
        && n.attr("snomed") == Some(c.code.as_str())
}

async fn record_pages(sim: &Sim, pid: &str) -> Vec<Node> {
    let mut pages = Vec::new();
    let mut resume = String::new();
    loop {
        let r = ci(
            sim,
            "GetPatientRecord",
            &format!(r#"patientId="{pid}" resumeFrom="{resume}""#),
            "",
        )
        .await;
        let res = result(&r).clone();
        let more = res.attr("moreAvailable") == Some("true");
        resume = res.attr("resumeFrom").unwrap_or_default().to_string();
        pages.push(res);
        if !more {
            return pages;
        }
        assert!(pages.len() < 20, "paging terminates");
    }
}

fn patient_id(sim: &Sim, nhs: &str) -> String {
    sim.world
        .read(|r| r.patient_by_nhs_number(nhs).map(|p| tid(&p.id)))
        .expect("patient")
}

#[tokio::test]
async fn envelope_checks_and_search() {
    let sim = start(quiet()).await;
    let bad = envelope("PatientSearch", r#"nhsNumber="9000000009""#, "", "").replace("SIM-KEY", "WRONG");
    let r = parse(&ci_raw(&sim, &bad).await.expect("reply")).expect("xml");
    assert_eq!(ci_error(&r), "3");
    assert!(r.attr("responseUid").is_some());
    let r = parse(&ci_raw(&sim, "<Nope/>").await.expect("reply")).expect("xml");
    assert_eq!(ci_error(&r), "1");
    let r = ci(&sim, "NoSuchFunction", "", "").await;
    assert_eq!(ci_error(&r), "1");

    let r = ci(&sim, "PatientSearch", r#"nhsNumber="9000000009""#, "").await;
    assert_eq!(r.attr("function"), Some("PatientSearch"));
    let person = result(&r).child("Person").expect("Person");
    assert_eq!(
        person.child("NationalId").map(|n| n.text.as_str()),
        Some(PATIENT_NHS_NUMBER)
    );
    let r = ci(
        &sim,
        "PatientSearch",
        r#"surname="tester" dateOfBirth="1985-04-12T00:00:00.0Z""#,
        "",
    )
    .await;
    let dob = sim
        .world
        .read(|r| r.patient_by_nhs_number(PATIENT_NHS_NUMBER).map(|p| p.birth_date))
        .expect("dob");
    if dob == time::macros::date!(1985 - 04 - 12) {
        assert_eq!(result(&r).children_named("Person").count(), 1);
    }
    let r = ci(&sim, "PatientSearch", r#"surname="Tester""#, "").await;
    assert_eq!(ci_error(&r), "1");
    let r = ci(&sim, "GetPatientDemographics", r#"patientId="0123456789abcdef""#, "").await;
    assert_eq!(ci_error(&r), "1001");

    let staff = ci(&sim, "GetStaff", r#"unitId="Y90002""#, "").await;
    let rec = sim.world.snapshot();
    for s in result(&staff).children_named("Staff") {
        let p = rec
            .practitioners
            .iter()
            .find(|p| tid(&p.id) == s.attr("staffId").unwrap_or_default())
            .expect("known staff");
        assert_eq!(s.attr("surname"), Some(p.name.family.as_str()));
        assert_eq!(s.attr("registrationNumber"), Some(p.registration_number.as_str()));
    }
}

/// Every item of patient 9000000009's record is in the clinician replies, by native id, term and code.
#[tokio::test]
async fn walk_the_whole_record_of_9000000009() {
    let sim = start(quiet()).await;
    let rec = sim.world.snapshot();
    let p = rec.patient_by_nhs_number(PATIENT_NHS_NUMBER).expect("patient");
    let pid = tid(&p.id);

    let demo = ci(&sim, "GetPatientDemographics", &format!(r#"patientId="{pid}""#), "").await;
    let person = result(&demo).child("Person").expect("Person");
    assert_eq!(
        person.attr("dateOfBirth"),
        Some(im1_sim_systmone::dates::day(p.birth_date).as_str())
    );
    let addr = person.child("Address").expect("Address");
    assert_eq!(addr.attr("postcode"), Some(p.address.postcode.as_str()));
    assert_eq!(addr.attr("houseName"), Some(p.address.house.as_str()));
    for prev in &p.previous_names {
        assert!(person
            .children_named("PreviousName")
            .any(|n| n.attr("surname") == Some(prev.name.family.as_str())));
    }
    let reg = person.child("GpRegistration").expect("GpRegistration");
    let r2 = p.registration("Y90002").expect("registered");
    assert_eq!(reg.attr("usualGpId"), Some(tid(&r2.usual_gp).as_str()));

    let pages = record_pages(&sim, &pid).await;
    let all: Vec<&Node> = pages.iter().flat_map(items).collect();
    for item in all_items(&p.clinical) {
        let id = tid(&item.meta().id);
        let found = all
            .iter()
            .find(|n| n.attr("id") == Some(id.as_str()))
            .unwrap_or_else(|| panic!("item {} missing", item.meta().id));
        assert_eq!(
            found.attr("description"),
            Some(item.term()),
            "term of {}",
            item.meta().id
        );
        let concept = match item {
            im1_sim_systmone::render::ItemRef::Allergy(a) => &a.code,
            im1_sim_systmone::render::ItemRef::Problem(x) => &x.code,
            im1_sim_systmone::render::ItemRef::Medication(x) => &x.code,
            im1_sim_systmone::render::ItemRef::Observation(x) => &x.code,
            im1_sim_systmone::render::ItemRef::Immunisation(x) => &x.procedure,
            im1_sim_systmone::render::ItemRef::Document(x) => &x.kind,
        };
        assert!(code_matches(found, concept), "code of {}: {found:?}", item.meta().id);
        assert_eq!(
            found.attr("confidential"),
            Some(if item.meta().confidential { "y" } else { "n" })
        );
        let (date, acc) = im1_sim_systmone::dates::partial(&item.date());
        if found.attr("type") != Some("Allergy") || found.attr("date").is_some() {
            assert_eq!(found.attr("date"), Some(date.as_str()), "date of {}", item.meta().id);
            assert_eq!(found.attr("dateAccuracy"), Some(acc));
        }
        assert!(found.attr("dateAccuracy").is_some() || matches!(item, im1_sim_systmone::render::ItemRef::Allergy(_)));
    }
    // Sub-parts: issues, components, reactions, vaccines.
    for m in &p.clinical.medications {
        for i in &m.issues {
            assert!(all.iter().any(|n| n
                .children_named("Issue")
                .any(|x| x.attr("id") == Some(tid(&i.id).as_str()))));
        }
    }
    for o in &p.clinical.observations {
        if let im1_sim::record::ObservationValue::Components(parts) = &o.value {
            let n = all
                .iter()
                .find(|n| n.attr("id") == Some(tid(&o.meta.id).as_str()))
                .expect("bp");
            for c in parts {
                let comp = n
                    .children_named("Component")
                    .find(|x| x.attr("description") == Some(c.code.display.as_str()))
                    .expect("component");
                assert_eq!(comp.attr("value"), Some(c.value.value_text().as_str()));
                assert!(code_matches(comp, &c.code));
            }
        }
        if let im1_sim::record::ObservationValue::Quantity(q) = &o.value {
            let n = all
                .iter()
                .find(|n| n.attr("id") == Some(tid(&o.meta.id).as_str()))
                .expect("obs");
            assert_eq!(n.attr("value"), Some(q.value_text().as_str()));
            assert_eq!(n.attr("units"), Some(q.unit.as_str()));
            assert_eq!(n.attr("abnormalFlag").is_some(), o.interpretation.is_some());
            if let Some((lo, _)) = o.range {
                assert_eq!(n.attr("rangeLow").is_some(), lo.is_some());
            }
        }
    }
    for a in &p.clinical.allergies {
        let n = all
            .iter()
            .find(|n| n.attr("id") == Some(tid(&a.meta.id).as_str()))
            .expect("allergy");
        assert_eq!(n.children_named("Reaction").count(), a.reactions.len());
    }
    for i in &p.clinical.immunisations {
        let n = all
            .iter()
            .find(|n| n.attr("id") == Some(tid(&i.meta.id).as_str()))
            .expect("imm");
        assert_eq!(n.attr("given"), Some(if i.given { "y" } else { "n" }));
        assert_eq!(n.attr("batch"), i.batch.as_deref());
        assert_eq!(n.attr("notGivenReason"), i.not_given_reason.as_deref());
    }
    for c in &p.clinical.consultations {
        let ev = pages
            .iter()
            .flat_map(|pg| pg.children_named("Event"))
            .find(|e| e.attr("id") == Some(tid(&c.meta.id).as_str()))
            .expect("consultation event");
        assert_eq!(ev.attr("location"), Some(c.location.as_str()));
        assert_eq!(ev.attr("duration"), Some(c.duration_minutes.to_string().as_str()));
        for s in &c.sections {
            for id in &s.items {
                let it = ev
                    .children_named("Item")
                    .find(|i| i.attr("id") == Some(tid(id).as_str()))
                    .expect("linked item");
                assert_eq!(it.attr("section"), Some(s.heading.as_str()));
            }
        }
    }
    for d in &p.clinical.documents {
        let n = all
            .iter()
            .find(|n| n.attr("id") == Some(tid(&d.meta.id).as_str()))
            .expect("doc");
        assert_eq!(n.attr("title"), Some(d.title.as_str()));
        assert_eq!(n.attr("contentType"), Some(d.mime_type.as_str()));
        assert_eq!(n.attr("size"), Some(d.content.len().to_string().as_str()));
    }
}

#[tokio::test]
async fn writes_show_in_reads_feed_and_pages() {
    let sim = start(quiet()).await;
    let pid = patient_id(&sim, PATIENT_NHS_NUMBER);
    let before = sim.world.now();
    let r = ci(&sim, "FileObservation", &format!(r#"patientId="{pid}" code="27113001" codeScheme="SNOMED" date="2025-03-03T00:00:00.0Z" dateAccuracy="day" value="72.40" units="kg" notes="weighed""#), "").await;
    let obs = result(&r).attr("itemId").expect("itemId").to_string();
    let r = ci(
        &sim,
        "FileAllergy",
        &format!(r#"patientId="{pid}" snomed="91935009" date="2024-01-01T00:00:00.0Z" dateAccuracy="year""#),
        r#"<Reaction snomed="39579001" severity="severe"/>"#,
    )
    .await;
    let alg = result(&r).attr("itemId").expect("itemId").to_string();
    let r = ci(&sim, "FileProblem", &format!(r#"patientId="{pid}" code="H33.." codeScheme="CTV3" date="2020-05-01T00:00:00.0Z" dateAccuracy="month" status="active" significance="major""#), "").await;
    let prb = result(&r).attr("itemId").expect("itemId").to_string();
    let r = ci(
        &sim,
        "FileObservation",
        &format!(r#"patientId="{pid}" code="99999" codeScheme="CTV3" date="2025-03-03T00:00:00.0Z""#),
        "",
    )
    .await;
    assert_eq!(ci_error(&r), "2200");

    let pages = record_pages(&sim, &pid).await;
    let all: Vec<&Node> = pages.iter().flat_map(items).collect();
    let o = all
        .iter()
        .find(|n| n.attr("id") == Some(obs.as_str()))
        .expect("filed observation");
    assert_eq!(
        (o.attr("value"), o.attr("units"), o.attr("notes")),
        (Some("72.40"), Some("kg"), Some("weighed"))
    );
    let a = all
        .iter()
        .find(|n| n.attr("id") == Some(alg.as_str()))
        .expect("filed allergy");
    assert_eq!(a.attr("dateAccuracy"), Some("year"));
    assert_eq!(a.child("Reaction").and_then(|x| x.attr("severity")), Some("severe"));
    let p = all
        .iter()
        .find(|n| n.attr("id") == Some(prb.as_str()))
        .expect("filed problem");
    assert_eq!(
        (p.attr("code"), p.attr("description"), p.attr("significance")),
        (Some("H33.."), Some("Asthma"), Some("major"))
    );

    // Also on the patient surface.
    let s = login(&sim, PATIENT_NHS_NUMBER).await;
    let rec = msg(&sim, &s, "RequestPatientRecord", "", "").await.xml();
    assert!(items(&rec).iter().any(|i| i.attr("id") == Some(obs.as_str())));

    // And in the change feed.
    let since = im1_sim_systmone::dates::instant(before - time::Duration::seconds(1));
    let feed = ci(
        &sim,
        "GetChangedPatients",
        &format!(r#"unitId="Y90002" since="{since}" maxResults="100""#),
        "",
    )
    .await;
    let res = result(&feed);
    let row = res
        .children_named("Patient")
        .find(|p| p.attr("patientId") == Some(pid.as_str()))
        .expect("changed patient");
    assert_eq!(row.attr("nhsNumber"), Some(PATIENT_NHS_NUMBER));
    assert!(row.attr("areas").unwrap_or_default().split(' ').any(|a| a == "record"));
    let mark = res.attr("highWaterMark").expect("mark").to_string();
    let later = ci(
        &sim,
        "GetChangedPatients",
        &format!(r#"unitId="Y90002" since="{mark}""#),
        "",
    )
    .await;
    assert!(
        result(&later).children_named("Patient").count() <= 1,
        "at most the last change again"
    );

    // 40 more observations push the record past one page.
    for k in 0..40 {
        let r = ci(&sim, "FileObservation", &format!(r#"patientId="{pid}" code="27113001" codeScheme="SNOMED" date="2025-02-{:02}T00:00:00.0Z" value="7{k}.0""#, 1 + k % 28), "").await;
        result(&r);
    }
    let pages = record_pages(&sim, &pid).await;
    assert!(pages.len() >= 2);
    assert_eq!(pages[0].children_named("Event").count(), 50);
    assert_eq!(pages[0].attr("moreAvailable"), Some("true"));
    let ids: Vec<&str> = pages
        .iter()
        .flat_map(|p| p.children_named("Event"))
        .filter_map(|e| e.attr("id"))
        .collect();
    let mut unique = ids.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(unique.len(), ids.len(), "no event twice across pages");
    let r = ci(
        &sim,
        "GetPatientRecord",
        &format!(r#"patientId="{pid}" resumeFrom="ffffffffffffffff""#),
        "",
    )
    .await;
    assert_eq!(ci_error(&r), "1");
}

#[tokio::test]
async fn consultations_are_all_or_nothing_and_documents_round_trip() {
    let sim = start(quiet()).await;
    let pid = patient_id(&sim, PATIENT_NHS_NUMBER);
    let count = || {
        sim.world
            .read(|r| {
                r.patient_by_nhs_number(PATIENT_NHS_NUMBER)
                    .map(|p| (p.clinical.consultations.len(), p.clinical.observations.len()))
            })
            .expect("p")
    };
    let before = count();
    let bad = ci(&sim, "FileConsultation", &format!(r#"patientId="{pid}" date="2025-03-03T09:00:00.0Z" location="Main surgery""#),
        r#"<Item type="Measurement" section="Examination" snomed="27113001" date="2025-03-03T00:00:00.0Z" value="70"/><Item type="Problem" section="Problems" snomed="27113001" date="2025-03-03T00:00:00.0Z"/>"#).await;
    assert_eq!(ci_error(&bad), "2201");
    assert_eq!(bad.child("Error").and_then(|e| e.attr("itemIndex")), Some("1"));
    assert_eq!(count(), before, "nothing filed");

    let good = ci(&sim, "FileConsultation", &format!(r#"patientId="{pid}" date="2025-03-03T09:00:00.0Z" location="Main surgery" snomed="185202000" duration="15""#),
        r#"<Item type="Measurement" section="Examination" snomed="27113001" date="2025-03-03T00:00:00.0Z" value="70.5"/><Item type="Problem" section="Problems" code="H33.." date="2025-03-03T00:00:00.0Z"/>"#).await;
    let res = result(&good);
    let event = res.attr("eventId").expect("eventId").to_string();
    let item_ids: Vec<String> = res
        .attr("itemIds")
        .unwrap_or_default()
        .split(' ')
        .map(str::to_string)
        .collect();
    assert_eq!(item_ids.len(), 2);
    let pages = record_pages(&sim, &pid).await;
    let ev = pages
        .iter()
        .flat_map(|p| p.children_named("Event"))
        .find(|e| e.attr("id") == Some(event.as_str()))
        .expect("event");
    assert_eq!(ev.attr("duration"), Some("15"));
    let sections: Vec<(&str, &str)> = ev
        .children_named("Item")
        .map(|i| (i.attr("id").unwrap_or_default(), i.attr("section").unwrap_or_default()))
        .collect();
    assert_eq!(
        sections,
        vec![
            (item_ids[0].as_str(), "Examination"),
            (item_ids[1].as_str(), "Problems")
        ]
    );

    use base64::Engine;
    let content = b"Letter body\nline two".to_vec();
    let b64 = base64::engine::general_purpose::STANDARD.encode(&content);
    let r = ci(
        &sim,
        "FileDocument",
        &format!(
            r#"patientId="{pid}" date="2025-03-03T00:00:00.0Z" description="Clinic letter" mimeType="text/plain""#
        ),
        &format!(r#"<Content encoding="base64">{b64}</Content>"#),
    )
    .await;
    let bin = result(&r).attr("binaryDataId").expect("binaryDataId").to_string();
    let r = ci(
        &sim,
        "GetBinaryData",
        &format!(r#"patientId="{pid}" binaryDataId="{bin}" page="1""#),
        "",
    )
    .await;
    let res = result(&r);
    assert_eq!(res.attr("contentType"), Some("text/plain"));
    let got = base64::engine::general_purpose::STANDARD
        .decode(res.child("BinaryDataPage").map(|p| p.text.trim()).unwrap_or_default())
        .expect("b64");
    assert_eq!(got, content);
}

#[tokio::test]
async fn faults_replay_and_throttle_on_tcp() {
    let sim = start(quiet()).await;
    let pid = patient_id(&sim, PATIENT_NHS_NUMBER);
    let call = |f: &str| {
        let e = envelope(
            "GetPatientDemographics",
            &format!(r#"patientId="{pid}""#),
            "",
            &format!(r#"simFault="{f}""#),
        );
        let sim = &sim;
        async move { ci_raw(sim, &e).await }
    };
    let r = parse(&call("500").await.expect("reply")).expect("xml");
    assert_eq!(ci_error(&r), "500");
    let r = parse(&call("503").await.expect("reply")).expect("xml");
    assert_eq!(ci_error(&r), "503");
    let r = parse(&call("429").await.expect("reply")).expect("xml");
    assert_eq!(ci_error(&r), "99");
    let r = parse(&call("expired-session").await.expect("reply")).expect("xml");
    assert_eq!(ci_error(&r), "3");
    assert!(call("drop").await.is_none());
    assert!(parse(&call("truncate").await.expect("reply")).is_err());
    assert!(parse(&call("malformed").await.expect("reply")).is_err());
    let r = parse(&call("latency=50").await.expect("reply")).expect("xml");
    result(&r);
    let r = parse(&call("nonsense").await.expect("reply")).expect("xml");
    assert_eq!(ci_error(&r), "1");

    // drop-after-commit commits; the retry with the same requestUid replays and files nothing more.
    let n = || {
        sim.world
            .read(|r| {
                r.patient_by_nhs_number(PATIENT_NHS_NUMBER)
                    .map(|p| p.clinical.observations.len())
            })
            .expect("p")
    };
    let before = n();
    let e = envelope(
        "FileObservation",
        &format!(r#"patientId="{pid}" snomed="27113001" date="2025-03-03T00:00:00.0Z" value="71""#),
        "",
        "",
    );
    let dropped = e.replacen(
        "functionVersion=\"1\"",
        "functionVersion=\"1\" simFault=\"drop-after-commit\"",
        1,
    );
    assert!(ci_raw(&sim, &dropped).await.is_none());
    assert_eq!(n(), before + 1);
    let first = ci_raw(&sim, &e).await.expect("reply");
    let second = ci_raw(&sim, &e).await.expect("reply");
    assert_eq!(first, second);
    assert_eq!(n(), before + 1, "the retry replays the committed reply");
    result(&parse(&first).expect("xml"));

    // Throttled: a few a second per device.
    let sim = start(im1_sim_systmone::SystmOneConfig {
        rate_per_second: 2,
        ..im1_sim_systmone::SystmOneConfig::default()
    })
    .await;
    let mut codes = Vec::new();
    for _ in 0..5 {
        let r = ci(&sim, "GetStaff", r#"unitId="Y90002""#, "").await;
        codes.push(
            r.child("Error")
                .and_then(|e| e.attr("errorCode"))
                .unwrap_or("ok")
                .to_string(),
        );
    }
    assert!(codes.contains(&"99".to_string()), "{codes:?}");
}

#[tokio::test]
async fn clinician_appointments_lists_and_feed_paging() {
    let sim = start(quiet()).await;
    let pid = patient_id(&sim, PATIENT_NHS_NUMBER);
    let slots = ci(
        &sim,
        "ListSlots",
        r#"startDate="2025-03-05T00:00:00.0Z" numberOfDays="2""#,
        "",
    )
    .await;
    let res = result(&slots);
    let se = res.child("Session").expect("session");
    let sl = se.child("Slot").expect("slot");
    let params = format!(
        r#"patientId="{pid}" sessionId="{}" startDate="{}" endDate="{}" notes="Review" telephone="07700 900001""#,
        se.attr("sessionId").unwrap_or_default(),
        sl.attr("startDate").unwrap_or_default(),
        sl.attr("endDate").unwrap_or_default()
    );
    let booked = ci(&sim, "BookAppointment", &params, "").await;
    let appt = result(&booked).attr("apptId").expect("apptId").to_string();
    let list = ci(&sim, "GetAppointments", &format!(r#"patientId="{pid}""#), "").await;
    let a = result(&list)
        .children_named("Appointment")
        .find(|a| a.attr("apptId") == Some(appt.as_str()))
        .expect("listed");
    assert_eq!(
        (a.attr("details"), a.attr("telephone")),
        (Some("Review"), Some("07700 900001"))
    );
    let cancel = ci(
        &sim,
        "CancelAppointment",
        &format!(r#"patientId="{pid}" apptId="{appt}" reason="Better""#),
        "",
    )
    .await;
    result(&cancel);
    let list = ci(&sim, "GetAppointments", &format!(r#"patientId="{pid}""#), "").await;
    let a = result(&list)
        .children_named("Appointment")
        .find(|a| a.attr("apptId") == Some(appt.as_str()))
        .expect("listed");
    assert_eq!(
        (a.attr("status"), a.attr("cancellationReason")),
        (Some("Cancelled"), Some("Better"))
    );

    let ov = ci(&sim, "GetPatientOverview", &format!(r#"patientId="{pid}""#), "").await;
    assert!(result(&ov).child("CurrentRepeats").is_some());
    result(&ci(&sim, "GetPrescriptionRequests", &format!(r#"patientId="{pid}""#), "").await);
    result(&ci(&sim, "GetMessages", &format!(r#"patientId="{pid}""#), "").await);

    // The change feed pages by patient.
    let one = ci(
        &sim,
        "GetChangedPatients",
        r#"unitId="Y90002" since="2025-01-01T00:00:00.0Z" maxResults="1""#,
        "",
    )
    .await;
    let res = result(&one);
    assert_eq!(res.children_named("Patient").count(), 1);
    assert_eq!(res.attr("moreAvailable"), Some("true"));
    let mark = res.attr("highWaterMark").expect("mark");
    let next = ci(
        &sim,
        "GetChangedPatients",
        &format!(r#"unitId="Y90002" since="{mark}" maxResults="1000""#),
        "",
    )
    .await;
    assert!(result(&next).children_named("Patient").count() >= 1);
    assert_eq!(
        ci_error(&ci(&sim, "GetChangedPatients", r#"unitId="Y90002""#, "").await),
        "1"
    );
    assert_eq!(
        ci_error(
            &ci(
                &sim,
                "GetChangedPatients",
                r#"unitId="Y90009" since="2025-01-01T00:00:00.0Z""#,
                ""
            )
            .await
        ),
        "6"
    );
}
