//! The invented Client Integration appointment-book calls: `GetSessions` and `GetSlots` (every slot, with its
//! status and session), by window and by session.

use crate::common;

use common::*;

#[tokio::test]
async fn sessions_and_slots_by_window_and_by_session() {
    let sim = start(quiet()).await;
    let r = ci(
        &sim,
        "GetSessions",
        r#"startDate="2025-03-03" endDate="2025-03-07""#,
        "",
    )
    .await;
    let sessions: Vec<_> = result(&r).children_named("Session").cloned().collect();
    assert!(!sessions.is_empty());
    assert!(sessions
        .iter()
        .all(|s| s.attr("staffId").is_some() && s.attr("location").is_some()));

    let r = ci(&sim, "GetSlots", r#"startDate="2025-02-17" endDate="2025-03-07""#, "").await;
    let slots: Vec<_> = result(&r).children_named("Slot").cloned().collect();
    for status in ["Available", "Booked", "Unavailable"] {
        assert!(
            slots.iter().any(|s| s.attr("status") == Some(status)),
            "no {status} slot"
        );
    }
    assert!(slots
        .iter()
        .all(|s| s.attr("sessionId").is_some() && s.attr("deliveryMode").is_some()));

    let id = sessions[0].attr("sessionId").unwrap();
    let r = ci(&sim, "GetSlots", &format!(r#"sessionId="{id}""#), "").await;
    let of_session: Vec<_> = result(&r).children_named("Slot").cloned().collect();
    assert!(!of_session.is_empty());
    assert!(of_session.iter().all(|s| s.attr("sessionId") == Some(id)));
    let r = ci(&sim, "GetSessions", &format!(r#"sessionId="{id}""#), "").await;
    assert_eq!(result(&r).children_named("Session").count(), 1);

    let r = ci(&sim, "GetSlots", r#"startDate="nonsense""#, "").await;
    assert_eq!(ci_error(&r), "1");
    let r = ci(&sim, "GetSlots", r#"startDate="2025-03-07" endDate="2025-03-03""#, "").await;
    assert_eq!(ci_error(&r), "1");
}
