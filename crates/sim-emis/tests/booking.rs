//! Slots, booking, cancelling, my appointments, repeat courses, prescription requests and messages.

use crate::common;

use common::*;
use serde_json::{json, Value};

async fn first_free_slot(sim: &Sim, l: &Login, telephone: bool) -> (Value, Value) {
    let r = sim
        .get(
            l,
            "appointmentslots",
            "&fromDateTime=2025-03-04T08:00:00&toDateTime=2025-03-18T18:00:00",
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let v = r.json();
    for s in v["Sessions"].as_array().expect("sessions") {
        if (s["DeliveryMode"] == "Telephone") == telephone {
            if let Some(slot) = s["Slots"].as_array().and_then(|a| a.first()) {
                return (s.clone(), slot.clone());
            }
        }
    }
    panic!("no free slot");
}

fn slot_ids(v: &Value) -> Vec<u64> {
    v["Sessions"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|s| s["Slots"].as_array().into_iter().flatten())
        .filter_map(|x| x["SlotId"].as_u64())
        .collect()
}

#[tokio::test]
async fn book_then_cancel_frees_the_slot() {
    let sim = start(unthrottled()).await;
    let l = sim.login(NHS).await;
    let meta = sim
        .get(
            &l,
            "appointmentslots/meta",
            "&sessionStartDate=2025-03-04&sessionEndDate=2025-03-11",
        )
        .await;
    assert_eq!(meta.status, 200);
    let meta = meta.json();
    assert!(!meta["Sessions"].as_array().expect("sessions").is_empty());
    assert!(!meta["Locations"].as_array().expect("locations").is_empty());
    assert!(!meta["SessionHolders"].as_array().expect("holders").is_empty());

    let (session, slot) = first_free_slot(&sim, &l, false).await;
    let id = slot["SlotId"].as_u64().expect("id");
    assert!(
        slot["StartTime"].as_str().is_some_and(|t| t.len() == 19),
        "local time without offset"
    );
    let booked = sim
        .send_body(
            &l,
            "POST",
            "appointments",
            json!({"SlotId": id, "BookingReason": "Sore throat"}),
        )
        .await;
    assert_eq!(booked.status, 201, "{}", booked.text());
    assert_eq!(booked.json()["SlotId"], id);
    assert_eq!(booked.json()["SessionId"], session["SessionId"]);
    let window = "&fromDateTime=2025-03-04T08:00:00&toDateTime=2025-03-18T18:00:00";
    assert!(!slot_ids(&sim.get(&l, "appointmentslots", window).await.json()).contains(&id));
    let again = sim
        .send_body(&l, "POST", "appointments", json!({"SlotId": id, "BookingReason": "x"}))
        .await;
    assert_eq!(again.status, 409);
    assert_eq!(again.json()["InternalResponseCode"], -1155);
    assert_eq!(again.json()["InternalResponseMethod"], "AppointmentsPost");

    let mine = sim.get(&l, "appointments", "").await.json();
    let entry = mine["Appointments"]
        .as_array()
        .expect("list")
        .iter()
        .find(|a| a["SlotId"] == id)
        .expect("booked appointment listed")
        .clone();
    assert_eq!(entry["Status"], "Booked");
    assert_eq!(entry["BookingReason"], "Sore throat");

    let cancelled = sim
        .send_body(
            &l,
            "DELETE",
            "appointments",
            json!({"SlotId": id, "CancellationReason": "No longer required"}),
        )
        .await;
    assert_eq!(cancelled.status, 200, "{}", cancelled.text());
    assert_eq!(cancelled.json()["CancellationSuccessful"], true);
    assert!(
        slot_ids(&sim.get(&l, "appointmentslots", window).await.json()).contains(&id),
        "free again"
    );
    let twice = sim
        .send_body(
            &l,
            "DELETE",
            "appointments",
            json!({"SlotId": id, "CancellationReason": "x"}),
        )
        .await;
    assert_eq!(twice.status, 400);
    let mine = sim.get(&l, "appointments", "").await.json();
    let entry = mine["Appointments"]
        .as_array()
        .expect("list")
        .iter()
        .find(|a| a["SlotId"] == id)
        .cloned();
    assert_eq!(entry.expect("still listed")["Status"], "Cancelled");
}

#[tokio::test]
async fn booking_rules_and_windows() {
    let sim = start(unthrottled()).await;
    let l = sim.login(NHS).await;
    let too_wide = sim
        .get(
            &l,
            "appointmentslots",
            "&fromDateTime=2025-03-04T08:00:00&toDateTime=2025-04-10T18:00:00",
        )
        .await;
    assert_eq!(too_wide.status, 400);
    assert!(too_wide.json()["ModelState"]["toDateTime"].is_array());
    let missing = sim
        .get(&l, "appointmentslots", "&fromDateTime=2025-03-04T08:00:00")
        .await;
    assert_eq!(missing.status, 400);
    let unknown = sim
        .send_body(&l, "POST", "appointments", json!({"SlotId": 1, "BookingReason": "x"}))
        .await;
    assert_eq!(unknown.status, 400);
    assert_eq!(unknown.json()["InternalResponseCode"], -1150);
    let no_slot = sim
        .send_body(&l, "POST", "appointments", json!({"BookingReason": "x"}))
        .await;
    assert_eq!(no_slot.status, 400);
    assert!(no_slot.json()["ModelState"]["SlotId"].is_array());
    // A past slot.
    let past = sim.world.read(|r| {
        r.slots
            .iter()
            .find(|s| s.practice == "Y90001" && s.appointment.is_none() && s.starts_at < sim.world.now())
            .map(|s| s.number)
    });
    if let Some(n) = past {
        let r = sim
            .send_body(&l, "POST", "appointments", json!({"SlotId": n, "BookingReason": "x"}))
            .await;
        assert_eq!(r.json()["InternalResponseCode"], -1152);
    }
    // Telephone sessions need a number.
    let tel = sim
        .get(
            &l,
            "appointmentslots",
            "&fromDateTime=2025-03-04T08:00:00&toDateTime=2025-03-31T18:00:00",
        )
        .await
        .json();
    let tel_slot = tel["Sessions"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|s| s["DeliveryMode"] == "Telephone")
        .find_map(|s| s["Slots"][0]["SlotId"].as_u64());
    if let Some(id) = tel_slot {
        let r = sim
            .send_body(&l, "POST", "appointments", json!({"SlotId": id, "BookingReason": "x"}))
            .await;
        assert_eq!(r.json()["InternalResponseCode"], -1157);
        let r = sim
            .send_body(
                &l,
                "POST",
                "appointments",
                json!({"SlotId": id, "BookingReason": "x", "TelephoneNumber": "01632 960001", "TelephoneContactType": "Other"}),
            )
            .await;
        assert_eq!(r.status, 201);
    }
    let previous = sim
        .get(
            &l,
            "appointments",
            "&FetchPreviousAppointments=true&PreviousAppointmentsFromDate=2024-01-01",
        )
        .await;
    assert_eq!(previous.status, 200);
}

#[tokio::test]
async fn repeat_courses_and_prescription_requests() {
    let sim = start(unthrottled()).await;
    let l = sim.login(NHS).await;
    let courses = sim.get(&l, "courses", "").await;
    assert_eq!(courses.status, 200);
    let courses = courses.json();
    let mut accepted = None;
    for course in courses["Courses"]
        .as_array()
        .expect("courses")
        .iter()
        .filter(|c| c["CanBeRequested"] == true)
    {
        assert!(course["QuantityRepresentation"]
            .as_str()
            .is_some_and(|q| q.contains(' ')));
        let guid = course["MedicationCourseGuid"].clone();
        let r = sim
            .send_body(
                &l,
                "POST",
                "prescriptionrequests",
                json!({"MedicationCourseGuids": [guid], "RequestComment": "Please send to usual pharmacy"}),
            )
            .await;
        if r.status == 201 {
            accepted = Some((guid, r));
            break;
        }
        // Otherwise a request for it is already pending in the record.
        assert_eq!(r.json()["InternalResponseCode"], -1171);
    }
    let (guid, r) = accepted.expect("one course could be ordered");
    assert_eq!(r.json()["Status"], "Requested");
    let id = r.json()["PrescriptionRequestGuid"].clone();
    let again = sim
        .send_body(
            &l,
            "POST",
            "prescriptionrequests",
            json!({"MedicationCourseGuids": [guid], "RequestComment": ""}),
        )
        .await;
    assert_eq!(again.status, 400);
    assert_eq!(again.json()["InternalResponseCode"], -1171);
    let bad = sim
        .send_body(
            &l,
            "POST",
            "prescriptionrequests",
            json!({"MedicationCourseGuids": ["00000000-0000-4000-8000-000000000000"]}),
        )
        .await;
    assert_eq!(bad.json()["InternalResponseCode"], -1170);
    let list = sim
        .get(
            &l,
            "prescriptionrequests",
            "&filterFromDate=2025-01-01T00%3A00%3A00%2B00%3A00&filterToDate=2025-12-31T00%3A00%3A00%2B00%3A00",
        )
        .await
        .json();
    let found = list["PrescriptionRequests"]
        .as_array()
        .expect("list")
        .iter()
        .find(|q| q["PrescriptionRequestGuid"] == id)
        .cloned();
    let found = found.expect("request listed");
    assert_eq!(found["RequestComment"], "Please send to usual pharmacy");
    assert_eq!(found["MedicationCourses"][0]["MedicationCourseGuid"], guid);
}

#[tokio::test]
async fn messages_round_trip() {
    let sim = start(unthrottled()).await;
    let l = sim.login(NHS).await;
    let before = sim.get(&l, "messages", "").await.json();
    let n = before["Messages"].as_array().map_or(0, Vec::len);
    let r = sim
        .send_body(
            &l,
            "POST",
            "messages",
            json!({"Subject": "Hello", "Body": "A question"}),
        )
        .await;
    assert_eq!(r.status, 201);
    let id = r.json()["MessageId"].clone();
    let after = sim.get(&l, "messages", "").await.json();
    let list = after["Messages"].as_array().expect("messages");
    assert_eq!(list.len(), n + 1);
    let m = list.iter().find(|m| m["MessageId"] == id).expect("sent message");
    assert_eq!(m["Sender"]["Type"], "Patient");
    assert_eq!(m["Subject"], "Hello");
    let missing = sim.send_body(&l, "POST", "messages", json!({"Subject": "Hello"})).await;
    assert_eq!(missing.status, 400);
    assert!(missing.json()["ModelState"]["Body"].is_array());
}

#[tokio::test]
async fn booking_limit_refuses_one_more() {
    let sim = start(im1_sim_emis::EmisConfig {
        booking_limit: Some(0),
        ..unthrottled()
    })
    .await;
    let l = sim.login(NHS).await;
    let (_, slot) = first_free_slot(&sim, &l, false).await;
    let r = sim
        .send_body(
            &l,
            "POST",
            "appointments",
            json!({"SlotId": slot["SlotId"], "BookingReason": "x"}),
        )
        .await;
    assert_eq!(r.status, 400);
    assert_eq!(r.json()["InternalResponseCode"], -1156);
}
