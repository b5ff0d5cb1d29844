//! Appointments, prescriptions, messages, clinician writes and the changes feed, as a client sees them.

use crate::common;
use common::*;
use serde_json::{json, Value};

#[tokio::test]
async fn book_then_cancel_frees_the_slot() {
    let sim = start().await;
    let (sub, pid) = link(&sim, "9000000009").await;
    let base = format!("{T}/pfs-api/v1/patient/{pid}");
    let r = get(&sim, &format!("{base}/bookable-services"), &pfs(&sub)).await;
    let services = r.json()["services"].as_array().cloned().expect("services");
    assert!(!services.is_empty());
    let service = services[0]["id"].as_str().expect("id").to_string();
    let slots_path =
        format!("{base}/available-appointments?serviceId={service}&fromDate=2025-03-04&untilDate=2025-03-10");
    let r = get(&sim, &slots_path, &pfs(&sub)).await;
    let slots = r.json()["timed"].as_array().cloned().expect("slots");
    assert!(!slots.is_empty());
    let slot = &slots[0];
    let slot_id = slot["id"].as_str().expect("id").to_string();
    assert_eq!(slot_id.len(), 72);
    assert!(slot_id.starts_with("timed-"));
    assert_eq!(slot["service"]["id"], service.as_str());
    assert!(slot["practitioners"][0]["name"].is_string());
    assert!(slot["session"]["id"].is_string());

    let r = post(
        &sim,
        &format!("{base}/book-appointment"),
        &pfs(&sub),
        &json!({"availableAppointmentId": slot_id, "patientSuppliedInformationForClinician": "Sore throat"}),
    )
    .await;
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    let appt = r.json()["appointmentId"].as_str().expect("id").to_string();
    // Booked: gone from the free list, listed as pending.
    let r = get(&sim, &slots_path, &pfs(&sub)).await;
    assert!(!r.json()["timed"]
        .as_array()
        .expect("slots")
        .iter()
        .any(|s| s["id"] == slot_id.as_str()));
    let r = get(&sim, &format!("{base}/appointments?fromDate=2025-03-04"), &pfs(&sub)).await;
    let mine = r.json()["timed"].as_array().cloned().expect("list");
    let booked = mine.iter().find(|a| a["id"] == appt.as_str()).expect("booked");
    assert_eq!(booked["status"], "pending");
    assert_eq!(booked["patientSuppliedInformationForClinician"], "Sore throat");
    assert_eq!(booked["startDateTime"], slot["startDateTime"]);
    // The same slot again: taken.
    let r = post(
        &sim,
        &format!("{base}/book-appointment"),
        &pfs(&sub),
        &json!({"availableAppointmentId": slot_id}),
    )
    .await;
    assert_eq!((r.status, r.error_code().as_str()), (409, "APPOINTMENT_ALREADY_BOOKED"));

    let r = post(
        &sim,
        &format!("{base}/cancel-appointment"),
        &pfs(&sub),
        &json!({"appointmentId": appt, "cancellationReason": "No longer required"}),
    )
    .await;
    assert_eq!(r.json(), json!({"success": true}));
    let r = get(&sim, &slots_path, &pfs(&sub)).await;
    assert!(r.json()["timed"]
        .as_array()
        .expect("slots")
        .iter()
        .any(|s| s["id"] == slot_id.as_str()));
    let r = post(
        &sim,
        &format!("{base}/cancel-appointment"),
        &pfs(&sub),
        &json!({"appointmentId": appt}),
    )
    .await;
    assert_eq!(
        (r.status, r.error_code().as_str()),
        (403, "APPOINTMENT_ALREADY_CANCELLED")
    );
    // One the patient was seen at cannot be cancelled either, and says so.
    let r = get(&sim, &format!("{base}/appointments?fromDate=2000-01-01"), &pfs(&sub)).await;
    let all = r.json()["timed"].as_array().cloned().expect("list");
    let seen = all.iter().find(|a| a["status"] == "seen").expect("a seen appointment");
    let r = post(
        &sim,
        &format!("{base}/cancel-appointment"),
        &pfs(&sub),
        &json!({"appointmentId": seen["id"]}),
    )
    .await;
    assert_eq!((r.status, r.error_code().as_str()), (403, "APPOINTMENT_MARKED_AS_SEEN"));
    let r = post(
        &sim,
        &format!("{base}/book-appointment"),
        &pfs(&sub),
        &json!({"availableAppointmentId": "timed-nope"}),
    )
    .await;
    assert_eq!((r.status, r.error_code().as_str()), (404, "APPOINTMENT_NOT_FOUND"));
    let r = get(
        &sim,
        &format!("{base}/appointments?fromDate=2025-03-09&untilDate=2025-03-01"),
        &pfs(&sub),
    )
    .await;
    assert_eq!((r.status, r.error_code().as_str()), (400, "INVALID_DATE_RANGE"));
    // Paging of slots.
    let r = get(&sim, &format!("{slots_path}&limit=2"), &pfs(&sub)).await;
    let v = r.json();
    assert_eq!(v["timed"].as_array().map(Vec::len), Some(2));
    assert!(v["nextCursor"].is_string());
}

#[tokio::test]
async fn prescriptions_requests_and_idempotency() {
    let sim = start().await;
    let (sub, pid) = link(&sim, "9000000009").await;
    let base = format!("{T}/pfs-api/v1/patient/{pid}");
    let r = get(&sim, &format!("{base}/prescriptions"), &pfs(&sub)).await;
    let list = r.json()["prescriptions"].as_array().cloned().expect("list");
    let repeat = list
        .iter()
        .find(|m| m["type"] == "repeat" && m["canBeRequested"] == true)
        .expect("repeat");
    assert_eq!(repeat["status"], "authorised");
    assert!(repeat["prescriptionIssues"].as_array().is_some_and(|i| !i.is_empty()));
    let body = json!({"requestItems": [{"type": "prescription-reorder", "basedOnPrescriptionId": repeat["id"], "messageFromPatient": "Usual pharmacy please"}]});
    let path = format!("{base}/create-prescription-request");
    let key = uuid::Uuid::new_v4().to_string();
    let send = |b: Value, k: String| {
        let sim = &sim;
        let token = pfs(&sub);
        let path = path.clone();
        async move {
            try_send(sim, "POST", &path, Some(&token), &[("idempotency-key", &k)], Some(&b))
                .await
                .expect("reply")
        }
    };
    let first = send(body.clone(), key.clone()).await;
    assert_eq!(first.status, 200, "{}", String::from_utf8_lossy(&first.body));
    assert_eq!(first.json()["status"], "pending");
    let again = send(body.clone(), key.clone()).await;
    assert_eq!(again.body, first.body, "same key and body replays");
    let other = send(json!({"requestItems": []}), key.clone()).await;
    assert_eq!(
        (other.status, other.error_code().as_str()),
        (409, "IDEMPOTENCY_KEY_REUSED")
    );
    let id = first.json()["prescriptionRequestId"].as_str().expect("id").to_string();
    let r = get(&sim, &format!("{base}/prescription-requests"), &pfs(&sub)).await;
    let reqs = r.json()["prescriptionRequests"].as_array().cloned().expect("list");
    assert_eq!(reqs.iter().filter(|q| q["id"] == id.as_str()).count(), 1);
    let q = reqs.iter().find(|q| q["id"] == id.as_str()).expect("request");
    assert_eq!(q["status"], "pending");
    assert_eq!(q["messageFromPatient"], "Usual pharmacy please");
    // Cancelling: once, then it is no longer pending.
    let cancel = format!("{base}/cancel-prescription-request");
    let r = post(&sim, &cancel, &pfs(&sub), &json!({"prescriptionRequestId": id})).await;
    assert_eq!(r.json(), json!({"success": true}));
    let r = get(&sim, &format!("{base}/prescription-requests"), &pfs(&sub)).await;
    let reqs = r.json()["prescriptionRequests"].as_array().cloned().expect("list");
    assert!(reqs
        .iter()
        .any(|q| q["id"] == id.as_str() && q["status"] == "cancelled"));
    let r = post(&sim, &cancel, &pfs(&sub), &json!({"prescriptionRequestId": id})).await;
    assert_eq!((r.status, r.error_code().as_str()), (422, "REQUEST_NOT_CANCELLABLE"));
    let r = post(&sim, &cancel, &pfs(&sub), &json!({"prescriptionRequestId": "nope"})).await;
    assert_eq!(
        (r.status, r.error_code().as_str()),
        (404, "PRESCRIPTION_REQUEST_NOT_FOUND")
    );
    // By issue id too; unknown ones are refused.
    let issue = repeat["prescriptionIssues"][0]["id"].clone();
    let r = post(
        &sim,
        &path,
        &pfs(&sub),
        &json!({"requestItems": [{"type": "prescription-issue", "prescriptionIssueId": issue}]}),
    )
    .await;
    assert_eq!(r.status, 200);
    let r = post(
        &sim,
        &path,
        &pfs(&sub),
        &json!({"requestItems": [{"type": "prescription-reorder", "basedOnPrescriptionId": "x"}]}),
    )
    .await;
    assert_eq!((r.status, r.error_code().as_str()), (404, "PRESCRIPTION_NOT_FOUND"));
    assert_eq!(r.json()["errors"][0]["source"]["pointer"], "/requestItems/0");
}

#[tokio::test]
async fn messages_and_service_switches() {
    let sim = start().await;
    let (sub, pid) = link(&sim, "9000000009").await;
    let base = format!("{T}/pfs-api/v1/patient/{pid}");
    let r = post(
        &sim,
        &format!("{base}/send-message"),
        &pfs(&sub),
        &json!({"subject": "Hello", "body": "A question"}),
    )
    .await;
    assert_eq!(r.status, 201);
    let id = r.json()["id"].as_str().expect("id").to_string();
    let r = get(&sim, &format!("{base}/messages"), &pfs(&sub)).await;
    let list = r.json()["messages"].as_array().cloned().expect("list");
    let m = list.iter().find(|m| m["id"] == id.as_str()).expect("sent");
    assert_eq!(m["direction"], "to-practice");
    assert_eq!(m["body"], "A question");

    let nid = sim
        .world
        .resolve(im1_sim::record::Supplier::Medicus, &pid)
        .expect("nid");
    for (service, path) in [
        (im1_sim::record::Service::Records, "journal"),
        (im1_sim::record::Service::Appointments, "appointments"),
        (im1_sim::record::Service::Prescriptions, "prescriptions"),
        (im1_sim::record::Service::Messaging, "messages"),
    ] {
        sim.world
            .set_patient_service("Y90003", &nid, service, false)
            .expect("switch");
        let r = get(&sim, &format!("{base}/{path}"), &pfs(&sub)).await;
        assert_eq!((r.status, r.error_code().as_str()), (403, "SERVICE_DISABLED"), "{path}");
    }
    let r = get(&sim, &format!("{T}/pfs-api/v1/user/list-linked-patients"), &pfs(&sub)).await;
    assert_eq!(r.json()["associatedPatients"][0]["careRecordAccess"], "disabled");
    // The clinician surface is not gated by patient-facing switches.
    let r = get(&sim, &format!("{T}/transactional-api/v1/patient/{pid}/journal"), &trx()).await;
    assert_eq!(r.status, 200);
    // A practice-wide switch.
    sim.world
        .set_practice_service("Y90003", im1_sim::record::Service::Records, false)
        .expect("switch");
    let (sub2, child) = (sub.clone(), creds(&sim, "9000000017").patient_id);
    let r = get(&sim, &format!("{T}/pfs-api/v1/patient/{child}/journal"), &pfs(&sub2)).await;
    assert_eq!((r.status, r.error_code().as_str()), (403, "SERVICE_DISABLED"));
}

#[tokio::test]
async fn clinician_writes_show_in_reads_and_the_changes_feed() {
    let sim = start().await;
    let pid = creds(&sim, "9000000009").patient_id;
    let base = format!("{T}/transactional-api/v1/patient/{pid}");
    let since = "2025-03-04T08:00:00Z";
    let r = post(&sim, &format!("{base}/journal/observations"), &trx(),
        &json!({"code": {"code": "27113001", "display": "whatever"}, "effectiveDate": "2025-03-04", "value": {"quantity": 70.5, "unit": "kg"}})).await;
    assert_eq!(r.status, 201, "{}", String::from_utf8_lossy(&r.body));
    let obs = r.json()["id"].as_str().expect("id").to_string();
    // The world files a new numeric observation as a laboratory result, so it is reported in an
    // investigation report.
    let r = get(
        &sim,
        &format!("{base}/journal?types=observation,investigation-report"),
        &trx(),
    )
    .await;
    let j = r.json();
    let e = j["journal"]
        .as_array()
        .expect("list")
        .iter()
        .flat_map(|e| std::iter::once(e).chain(e["results"].as_array().into_iter().flatten()))
        .find(|e| e["id"] == obs.as_str())
        .cloned()
        .expect("written");
    assert_eq!(
        e["code"]["display"], "Body weight",
        "the record's term, not the one sent"
    );
    assert_eq!(e["value"], json!({"quantity": 70.5, "unit": "kg", "decimalPlaces": 1}));

    let r = post(&sim, &format!("{base}/journal/allergy-intolerances"), &trx(),
        &json!({"code": {"code": "91936005"}, "onsetDate": "2024", "reactions": [{"manifestation": {"code": "247472004"}, "severity": "mild"}]})).await;
    assert_eq!(r.status, 201, "{}", String::from_utf8_lossy(&r.body));
    let r = post(
        &sim,
        &format!("{base}/journal/problems"),
        &trx(),
        &json!({"code": {"code": "195967001"}, "startDate": "2024-06", "significance": "major"}),
    )
    .await;
    assert_eq!(r.status, 201, "{}", String::from_utf8_lossy(&r.body));
    let r = post(
        &sim,
        &format!("{base}/journal/problems"),
        &trx(),
        &json!({"code": {"code": "1"}, "startDate": "2024"}),
    )
    .await;
    assert_eq!((r.status, r.error_code().as_str()), (422, "UNKNOWN_CODE"));
    let r = post(
        &sim,
        &format!("{base}/journal/problems"),
        &trx(),
        &json!({"code": {"code": "195967001"}}),
    )
    .await;
    assert_eq!((r.status, r.error_code().as_str()), (400, "INVALID_REQUEST"));
    assert_eq!(r.json()["errors"][0]["source"]["pointer"], "/startDate");

    // Encounters are all or nothing.
    let encounter = |second: Value| {
        json!({
        "encounterType": {"code": "185202000"},
        "consultationTopics": [{"title": "Review", "headings": [
            {"heading": "Examination", "careRecordElements": [
                {"type": "observation", "code": {"code": "27113001"}, "effectiveDate": "2025-03-04", "value": {"quantity": 71, "unit": "kg"}},
                second]}]}]})
    };
    let before = journal_all(&sim, &base, trx, 200).await.len();
    let r = post(
        &sim,
        &format!("{base}/journal/encounters"),
        &trx(),
        &encounter(json!({"type": "problem", "code": {"code": "27113001"}, "startDate": "2025"})),
    )
    .await;
    assert_eq!(r.status, 422, "{}", String::from_utf8_lossy(&r.body));
    assert_eq!(
        r.json()["errors"][0]["source"]["pointer"],
        "/consultationTopics/0/headings/0/careRecordElements/1"
    );
    assert_eq!(journal_all(&sim, &base, trx, 200).await.len(), before, "nothing filed");
    let r = post(
        &sim,
        &format!("{base}/journal/encounters"),
        &trx(),
        &encounter(json!({"type": "problem", "code": {"code": "195967001"}, "startDate": "2025"})),
    )
    .await;
    assert_eq!(r.status, 201, "{}", String::from_utf8_lossy(&r.body));
    let v = r.json();
    let enc = v["id"].as_str().expect("id").to_string();
    assert_eq!(v["elementIds"].as_array().map(Vec::len), Some(2));
    let all = journal_all(&sim, &base, trx, 200).await;
    let e = all.iter().find(|e| e["id"] == enc.as_str()).expect("encounter");
    let nested = &e["consultationTopics"][0]["headings"][0]["careRecordElements"];
    // The observation (a lab-kind result, so inside its report) and the problem, nested under the heading.
    assert_eq!(nested[0]["results"][0]["id"], v["elementIds"][0]);
    assert_eq!(nested[1]["id"], v["elementIds"][1]);
    assert_eq!(all.iter().filter(|e| e["encounterId"] == enc.as_str()).count(), 2);

    use base64::Engine;
    let content = b"Letter text";
    let r = post(&sim, &format!("{base}/journal/care-record-documents"), &trx(), &json!({
        "documentType": {"code": "823701000000103"}, "title": "Clinic letter",
        "file": {"mimeType": "text/plain", "contentBase64": base64::engine::general_purpose::STANDARD.encode(content)}})).await;
    assert_eq!(r.status, 201, "{}", String::from_utf8_lossy(&r.body));
    let v = r.json();
    let url = format!(
        "{base}/file/care-record-document/{}/{}",
        v["id"].as_str().expect("id"),
        v["fileId"].as_str().expect("file")
    );
    let r = get(&sim, &url, &trx()).await;
    assert_eq!((r.status, r.body.as_ref()), (200, content.as_ref()));

    // Writes counted, and in the changes feed.
    assert!(sim.handle.stats().snapshot().writes_committed >= 5);
    let r = get(
        &sim,
        &format!("{T}/transactional-api/v1/patients/changes?since={since}"),
        &trx(),
    )
    .await;
    let v = r.json();
    let change = v["changes"]
        .as_array()
        .expect("list")
        .iter()
        .find(|c| c["patientId"] == pid.as_str())
        .cloned()
        .expect("change");
    assert_eq!(change["nhsNumber"], "9000000009");
    assert_eq!(change["areas"], json!(["journal"]));
    assert!(v["highWaterMark"].as_str().is_some_and(|h| h.ends_with('Z')));
}

#[tokio::test]
async fn changes_feed_pages_with_cursors() {
    let sim = start().await;
    let path = format!("{T}/transactional-api/v1/patients/changes?since=2025-01-01T00:00:00Z");
    let r = get(&sim, &path, &trx()).await;
    let total: usize = r.json()["changes"].as_array().expect("list").len();
    assert!(total > 2, "seeded history");
    let mut seen = 0;
    let mut cursor: Option<String> = None;
    loop {
        let p = match &cursor {
            Some(c) => format!("{path}&limit=1&cursor={c}"),
            None => format!("{path}&limit=1"),
        };
        let v = get(&sim, &p, &trx()).await.json();
        seen += v["changes"].as_array().expect("list").len();
        match v["nextCursor"].as_str() {
            Some(c) => cursor = Some(c.into()),
            None => break,
        }
    }
    assert!(seen >= total);
    let r = get(
        &sim,
        &format!("{T}/transactional-api/v1/patients/changes?since=yesterday"),
        &trx(),
    )
    .await;
    assert_eq!((r.status, r.error_code().as_str()), (400, "INVALID_DATE"));
}
