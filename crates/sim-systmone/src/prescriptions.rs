//! Repeat medication and prescription requests, and patient-practice messaging, shared by both surfaces.

use crate::coding::code_only;
use crate::errors::TppError;
use crate::render::{tid, View};
use crate::xml::{El, Node};
use im1_sim::record::*;

/// `ListRepeatMedication`: the patient's visible repeat courses; `requestable="y"` only for active ones the
/// practice lets them order.
pub fn repeats(view: &View<'_>, p: &Patient, root: El) -> El {
    root.children(
        p.clinical
            .medications
            .iter()
            .filter(|m| m.kind == CourseKind::Repeat && view.visible(&m.meta))
            .map(|m| {
                let ok = m.requestable && m.status == CourseStatus::Active;
                let el = El::new("Medication")
                    .attr("drugId", tid(&m.meta.id))
                    .attr("type", "Repeat")
                    .attr("drug", m.code.display.clone())
                    .attr("details", format!("{}, {} {}", m.dosage, m.quantity, m.quantity_unit))
                    .attr("requestable", if ok { "y" } else { "n" });
                code_only(el, &m.code)
            }),
    )
}

/// `RequestMedication`: one request for the `Medication drugId` children.
pub fn request(world: &World, ods: &str, patient: &Nid, node: &Node) -> Result<PrescriptionRequest, TppError> {
    let mut courses = Vec::new();
    for m in node.children_named("Medication") {
        let id = m
            .attr("drugId")
            .ok_or_else(|| TppError::invalid("Medication without drugId"))?;
        let nid = world
            .resolve(Supplier::SystmOne, id)
            .ok_or_else(|| TppError::new(2101, "That medication cannot be requested online", "unknown drugId"))?;
        courses.push(nid);
    }
    let notes = node.attr_nonempty("notes").map(str::to_string);
    world
        .create_prescription_request(ods, patient, &courses, notes)
        .map_err(TppError::from)
}

/// The patient's prescription requests, newest first.
pub fn requests(view: &View<'_>, ods: &str, p: &Patient, root: El) -> El {
    let mut list: Vec<&PrescriptionRequest> = view.record.prescription_requests_of(ods, &p.id).collect();
    list.sort_by(|a, b| b.requested_at.cmp(&a.requested_at).then_with(|| b.id.cmp(&a.id)));
    root.children(list.into_iter().map(|q| view.prescription_request(q, p)))
}

/// The one recipient a patient can write to: the practice.
pub fn recipients(view: &View<'_>, ods: &str, root: El) -> El {
    match view.record.practice(ods) {
        Some(pr) => root.child(
            El::new("Recipient")
                .attr("recipientId", tid(&pr.id))
                .attr("name", pr.name.clone()),
        ),
        None => root,
    }
}

/// `MessagesView`: the patient's messages, newest first.
pub fn messages(view: &View<'_>, ods: &str, patient: &Nid, root: El) -> El {
    let mut list: Vec<&Message> = view.record.messages_of(ods, patient).collect();
    list.sort_by(|a, b| b.sent_at.cmp(&a.sent_at).then_with(|| b.id.cmp(&a.id)));
    root.children(list.into_iter().map(|m| view.message(m)))
}

/// `MessageCreate`: a message from the patient to the practice.
pub fn send(world: &World, ods: &str, patient: &Nid, node: &Node) -> Result<Message, TppError> {
    let practice = world
        .read(|r| r.practice(ods).map(|p| tid(&p.id)))
        .ok_or_else(|| TppError::no_access("unknown unit"))?;
    if node.attr("recipientId") != Some(practice.as_str()) {
        return Err(TppError::invalid("unknown recipientId"));
    }
    let subject = node
        .attr_nonempty("subject")
        .ok_or_else(|| TppError::invalid("subject missing"))?;
    let body = node
        .child("Body")
        .map(|b| b.text.clone())
        .filter(|b| !b.trim().is_empty())
        .ok_or_else(|| TppError::invalid("Body missing"))?;
    world
        .send_message(NewMessage {
            practice: ods.to_string(),
            patient: patient.clone(),
            direction: Direction::ToPractice,
            subject: subject.to_string(),
            body,
        })
        .map_err(TppError::from)
}

/// `MessagesMarkAsRead`: mark the `<Message id=".."/>` children read; all must be the patient's.
pub fn mark_read(world: &World, ods: &str, patient: &Nid, node: &Node) -> Result<usize, TppError> {
    let mut ids = Vec::new();
    for m in node.children_named("Message") {
        let id = m
            .attr("id")
            .and_then(|id| world.resolve(Supplier::SystmOne, id))
            .ok_or_else(|| TppError::item_not_found("message"))?;
        ids.push(id);
    }
    if ids.is_empty() {
        return Err(TppError::invalid("no Message given"));
    }
    let own = world.read(|r| ids.iter().all(|id| r.messages_of(ods, patient).any(|m| &m.id == id)));
    if !own {
        return Err(TppError::item_not_found("message"));
    }
    for id in &ids {
        world
            .mark_message_read(ods, patient, id)
            .map_err(|_| TppError::item_not_found("message"))?;
    }
    Ok(ids.len())
}
