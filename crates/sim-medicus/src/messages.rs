//! Patient-practice messages (invented: Medicus publishes no messaging endpoint).

use crate::style::{datetime, nid};
use im1_sim::record::{Direction, Nid, Record};
use serde_json::{json, Value};

/// `GET .../messages`: oldest first.
pub fn list(r: &Record, ods: &str, patient: &Nid) -> Value {
    let list: Vec<Value> = r
        .messages_of(ods, patient)
        .map(|m| {
            json!({
                "id": nid(&m.id),
                "subject": m.subject,
                "body": m.body,
                "sentAt": datetime(m.sent_at),
                "direction": match m.direction {
                    Direction::ToPractice => "to-practice",
                    Direction::FromPractice => "from-practice",
                },
                "read": m.read,
                "senderName": m.sender,
            })
        })
        .collect();
    json!({ "messages": list })
}
