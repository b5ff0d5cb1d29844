//! Patient-practice messages (PFS).

use crate::dates::with_offset;
use crate::errors::{self, ok};
use crate::pfs::PatientCall;
use crate::render::guid;
use crate::request::field;
use http::StatusCode;
use im1_sim::common::{RequestContext, SimResponse};
use im1_sim::record::{Direction, NewMessage, Service};
use serde_json::{json, Value};

/// `GET messages`.
pub fn list(call: &PatientCall) -> SimResponse {
    if let Err(r) = call.require(Service::Messaging, "MessagesGet") {
        return r;
    }
    let v = call.emis.world.read(|r| {
        let list: Vec<Value> = r
            .messages_of(call.ods, &call.link.patient)
            .map(|m| {
                let kind = match m.direction {
                    Direction::ToPractice => "Patient",
                    Direction::FromPractice => "Practice",
                };
                json!({
                    "MessageId": guid(&m.id),
                    "Subject": m.subject,
                    "Body": m.body,
                    "SentDateTime": with_offset(m.sent_at),
                    "Sender": {"Type": kind, "Name": m.sender},
                    "Read": m.read,
                })
            })
            .collect();
        json!({ "Messages": list })
    });
    ok(&v)
}

/// `POST messages {Subject, Body}`.
pub fn send(call: &PatientCall, cx: &RequestContext) -> SimResponse {
    let method = "MessagesPost";
    if let Err(r) = call.require(Service::Messaging, method) {
        return r;
    }
    let (subject, body) = match (field(&call.body, "Subject"), field(&call.body, "Body")) {
        (Ok(s), Ok(b)) => (s.to_string(), b.to_string()),
        (Err(r), _) | (_, Err(r)) => return r,
    };
    match call.emis.world.send_message(NewMessage {
        practice: call.ods.to_string(),
        patient: call.link.patient.clone(),
        direction: Direction::ToPractice,
        subject,
        body,
    }) {
        Ok(m) => {
            cx.record_write();
            errors::json(StatusCode::CREATED, &json!({ "MessageId": guid(&m.id) }))
        }
        Err(e) => errors::write_error(&e, method),
    }
}
