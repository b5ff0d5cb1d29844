//! The invented Transactional appointment book: sessions, every slot with its status (paged), one slot by its
//! 72-character id, and a patient's appointments.

use crate::common;
use common::*;
use im1_sim::record::{native_id, Supplier};
use serde_json::Value;

#[tokio::test]
async fn sessions_slots_and_appointments_on_the_transactional_api() {
    let sim = start().await;
    let base = format!("{T}/transactional-api/v1");
    let r = get(
        &sim,
        &format!("{base}/appointment-sessions?fromDate=2025-03-04&untilDate=2025-03-07"),
        &trx(),
    )
    .await;
    assert_eq!(r.status, 200);
    let sessions = r.json()["sessions"].as_array().unwrap().clone();
    assert!(!sessions.is_empty());
    assert!(sessions.iter().all(|s| s["practitioners"][0]["id"].is_string()));

    let mut slots: Vec<Value> = Vec::new();
    let mut cursor = String::new();
    loop {
        let url = format!("{base}/appointment-slots?fromDate=2025-02-18&untilDate=2025-03-07&limit=50&cursor={cursor}");
        let page = get(&sim, &url, &trx()).await.json();
        slots.extend(page["timed"].as_array().unwrap().iter().cloned());
        match page["nextCursor"].as_str() {
            Some(c) => cursor = c.to_string(),
            None => break,
        }
    }
    for status in ["available", "booked", "unavailable"] {
        assert!(slots.iter().any(|s| s["status"] == status), "no {status} slot");
    }
    let id = slots[0]["id"].as_str().unwrap();
    assert_eq!(id.len(), 72);
    let one = get(&sim, &format!("{base}/appointment-slots/{id}"), &trx()).await;
    assert_eq!(one.status, 200);
    assert_eq!(one.json(), slots[0]);
    let session = sessions[0]["id"].as_str().unwrap();
    let of_session = get(&sim, &format!("{base}/appointment-slots?sessionId={session}"), &trx())
        .await
        .json();
    let of_session = of_session["timed"].as_array().unwrap();
    assert!(!of_session.is_empty() && of_session.iter().all(|s| s["session"]["id"] == session));
    let missing = "timed-00000000-0000-4000-8000-000000000000-20250304083000-20250304084000";
    assert_eq!(
        get(&sim, &format!("{base}/appointment-slots/{missing}"), &trx())
            .await
            .status,
        404
    );

    let pid = sim.world.read(|r| native_id(Supplier::Medicus, &r.patients[0].id));
    let list = get(&sim, &format!("{base}/patient/{pid}/appointments"), &trx()).await;
    assert_eq!(list.status, 200);
    let timed = list.json()["timed"].as_array().unwrap().clone();
    assert!(timed.len() >= 2 && timed.iter().any(|a| a["status"] == "pending"));
    assert!(timed
        .iter()
        .all(|a| a["availableAppointmentId"].as_str().map(str::len) == Some(72)));
}
