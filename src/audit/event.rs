//! [`AuditFacts`] → a FHIR R4 AuditEvent shaped like the IHE Basic Audit Log Patterns (BALP).
//!
//! The shape follows BALP's RESTful patterns (Read, Query, Create, ...) without claiming its profiles in
//! `meta.profile`: BALP wants a Device or Practitioner reference for every agent, and we only have identifiers.
//!
//! - `type` = `rest`; `subtype` = the restful-interaction code; `action` = C/R/U/D/E by interaction.
//! - agents: the user (requestor; BALP user-agent type IRCP for reads, AGNT for writes, PAT when the user is the
//!   patient; `policy` holds the token id as BALP's OAuth pattern does), the client application (DICOM `110150`,
//!   with the network address), the organisations the user acts for, and this server (DICOM `110152`).
//!   With no authenticated user (a 401) the client application, known only by its address, is the requestor.
//! - entities: each patient (Person/Patient, by reference and NHS number), the resource (System Object / Domain
//!   Resource), the query (role Query, base64), the transaction (BALP `XrequestId`, with method, status, outcome
//!   code, cache and practices as `detail`), and one System Object per native call (supplier, practice, operation,
//!   status, millis as `detail`).
//!
//! Codes we had to invent live under `https://im1-fhir.dev/`: the principal system (one per role), the interaction
//! code `unknown`, the client-id system and the RBAC role system (the national RBAC role codes have no FHIR
//! CodeSystem URL we could confirm).

use base64::Engine as _;
use serde_json::{json, Map, Value};

use super::facts::{AuditFacts, CacheFacts, NativeCallFact, PatientRef, Who};

const DCM: &str = "http://dicom.nema.org/resources/ontology/DCM";
const ENTITY_TYPE: &str = "http://terminology.hl7.org/CodeSystem/audit-entity-type";
const OBJECT_ROLE: &str = "http://terminology.hl7.org/CodeSystem/object-role";
const NHS_NUMBER: &str = "https://fhir.nhs.uk/Id/nhs-number";
const ODS: &str = "https://fhir.nhs.uk/Id/ods-organization-code";
const BALP_ENTITY_TYPE: &str = "https://profiles.ihe.net/ITI/BALP/CodeSystem/BasicAuditEntityType";
const RESTFUL_INTERACTION: &str = "http://hl7.org/fhir/restful-interaction";
/// Transaction entity details naming a practice some of whose answers came from the cache, or were loaded into it.
const CACHE_HIT: &str = "cache-hit";
const CACHE_LOAD: &str = "cache-load";
/// The RBAC role codes (`R8000`, ...) as carried by our tokens; see the module doc.
pub const RBAC_ROLE_SYSTEM: &str = "https://im1-fhir.dev/CodeSystem/national-rbac-role";
pub const CLIENT_ID_SYSTEM: &str = "https://im1-fhir.dev/client-id";

/// The `restful-interaction` codes of FHIR R4; anything else is recorded as our own `unknown`.
const INTERACTIONS: &[&str] = &[
    "read",
    "vread",
    "update",
    "patch",
    "delete",
    "history",
    "history-instance",
    "history-type",
    "history-system",
    "create",
    "search",
    "search-type",
    "search-compartment",
    "search-system",
    "capabilities",
    "transaction",
    "batch",
    "operation",
];

/// The AuditEvent for one interaction, with the given logical id.
pub fn audit_event(id: &str, facts: &AuditFacts) -> Value {
    let action = action(&facts.interaction);
    let (start, end) = if facts.started <= facts.ended {
        (facts.started, facts.ended)
    } else {
        (facts.ended, facts.started)
    };
    let mut event = json!({
        "resourceType": "AuditEvent",
        "id": id,
        "type": coding("http://terminology.hl7.org/CodeSystem/audit-event-type", "rest", "Restful Operation"),
        "subtype": [subtype(&facts.interaction)],
        "action": action,
        "period": {"start": instant(start), "end": instant(end)},
        "recorded": instant(facts.ended),
        "outcome": facts.outcome(),
    });
    if let Some(desc) = outcome_desc(facts) {
        event["outcomeDesc"] = Value::String(desc);
    }
    event["agent"] = Value::Array(agents(facts, action));
    event["source"] = json!({
        "observer": {"display": "im1-fhir"},
        "type": [coding("http://terminology.hl7.org/CodeSystem/security-source-type", "4", "Application Server")],
    });
    event["entity"] = Value::Array(entities(facts));
    event
}

/// An instant as stored and searched: UTC, microseconds, fixed width, so text order is time order.
pub fn instant(t: time::OffsetDateTime) -> String {
    let format =
        time::macros::format_description!("[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:6]Z");
    let utc = t.to_offset(time::UtcOffset::UTC);
    utc.format(format).unwrap_or_else(|_| {
        // Only years outside 0000-9999 get here; RFC 3339 is still a valid FHIR instant.
        utc.format(&time::format_description::well_known::Rfc3339)
            .unwrap_or_default()
    })
}

/// C/R/U/D/E, the DICOM event action code, by interaction. Operations are `E`: an operation may read or write.
pub fn action(interaction: &str) -> &'static str {
    match interaction {
        "create" => "C",
        "read" | "vread" | "search" | "search-type" | "search-compartment" | "search-system" | "history"
        | "history-instance" | "history-type" | "history-system" | "capabilities" => "R",
        "update" | "patch" => "U",
        "delete" => "D",
        _ => "E",
    }
}

fn subtype(interaction: &str) -> Value {
    if INTERACTIONS.contains(&interaction) {
        json!({"system": RESTFUL_INTERACTION, "code": interaction, "display": interaction})
    } else {
        coding(
            "https://im1-fhir.dev/CodeSystem/interaction",
            "unknown",
            "not a recognised FHIR interaction",
        )
    }
}

/// The outcome's code and message; a message echoing a token the client sent does not keep it.
fn outcome_desc(facts: &AuditFacts) -> Option<String> {
    let text = facts.outcome_text.as_deref().map(super::redact::text);
    match (&facts.outcome_code, text) {
        (Some(code), Some(text)) => Some(format!("{code}: {text}")),
        (Some(code), None) => Some(code.clone()),
        (None, Some(text)) => Some(text.into_owned()),
        (None, None) => None,
    }
}

fn agents(facts: &AuditFacts, action: &str) -> Vec<Value> {
    let mut agents = Vec::new();
    let network = facts
        .client_address
        .as_deref()
        .filter(|a| !a.is_empty())
        .map(|address| {
            // network-type 2 is an IP address, 1 a machine name.
            let kind = if address.parse::<std::net::IpAddr>().is_ok() {
                "2"
            } else {
                "1"
            };
            json!({"address": address, "type": kind})
        });
    let mut client = json!({
        "type": {"coding": [coding(DCM, "110150", "Application")]},
    });
    match &facts.who {
        Some(who) => {
            agents.push(user_agent(who, action));
            client["who"] = json!({"identifier": {"system": CLIENT_ID_SYSTEM, "value": who.client_id}});
            client["requestor"] = Value::Bool(false);
        }
        None => {
            client["requestor"] = Value::Bool(true);
        }
    }
    if let Some(network) = network {
        client["network"] = network;
    }
    agents.push(client);
    for ods in facts.who.iter().flat_map(|who| &who.organisations) {
        let provider = coding(
            "http://terminology.hl7.org/CodeSystem/v3-RoleClass",
            "PROV",
            "healthcare provider",
        );
        agents.push(json!({
            "type": {"coding": [provider]},
            "who": {"type": "Organization", "identifier": {"system": ODS, "value": ods}},
            "requestor": false,
        }));
    }
    agents.push(json!({
        "type": {"coding": [coding(DCM, "110152", "Destination Role ID")]},
        "who": {"display": "im1-fhir"},
        "requestor": false,
    }));
    agents
}

fn user_agent(who: &Who, action: &str) -> Value {
    let kind = if who.role == "patient" {
        coding("http://terminology.hl7.org/CodeSystem/v3-RoleClass", "PAT", "patient")
    } else if action == "R" {
        coding(
            "http://terminology.hl7.org/CodeSystem/v3-ParticipationType",
            "IRCP",
            "information recipient",
        )
    } else {
        coding("http://terminology.hl7.org/CodeSystem/v3-RoleClass", "AGNT", "agent")
    };
    let mut agent = json!({
        "type": {"coding": [kind]},
        "who": {"identifier": {"system": format!("https://im1-fhir.dev/principal/{}", who.role), "value": who.subject}},
        "requestor": true,
    });
    if let Some(rbac) = who.rbac_role.as_deref().filter(|r| !r.is_empty()) {
        agent["role"] = json!([{"coding": [{"system": RBAC_ROLE_SYSTEM, "code": rbac}]}]);
    }
    if !who.token_id.is_empty() {
        agent["policy"] = json!([who.token_id]);
    }
    agent
}

fn entities(facts: &AuditFacts) -> Vec<Value> {
    let mut entities: Vec<Value> = facts.patients.iter().filter_map(patient_entity).collect();
    if let Some(resource_type) = facts.resource_type.as_deref() {
        let what = match facts.resource_id.as_deref() {
            Some(id) => json!({"reference": format!("{resource_type}/{id}")}),
            None => json!({"type": resource_type}),
        };
        entities.push(json!({
            "what": what,
            "type": coding(ENTITY_TYPE, "2", "System Object"),
            "role": coding(OBJECT_ROLE, "4", "Domain Resource"),
        }));
    }
    if let Some(query) = facts.query.as_deref().filter(|q| !q.is_empty()) {
        let mut entity = json!({
            "type": coding(ENTITY_TYPE, "2", "System Object"),
            "role": coding(OBJECT_ROLE, "24", "Query"),
            "query": base64::engine::general_purpose::STANDARD.encode(super::redact::query(query)),
        });
        if let Some(resource_type) = facts.resource_type.as_deref() {
            entity["what"] = json!({"type": resource_type});
        }
        entities.push(entity);
    }
    entities.push(transaction_entity(facts));
    entities.extend(facts.native_calls.iter().map(native_call_entity));
    entities
}

/// An event as an auditor of `practices` may read it. An event reaching several practices is filed under
/// each, and holds what each gave: the patients (with NHS numbers) and native calls of the others are taken
/// out, and so are the others' codes in the transaction's details. `practice_of` tells the practice a
/// `Patient/<id>` belongs to; a patient it cannot place (no id, or one this server's key no longer decodes)
/// is kept only where the event reached one practice at most.
pub fn visible_to(event: &mut Value, practices: &[String], practice_of: impl Fn(&str) -> Option<String>) {
    let ours = |ods: &str| practices.iter().any(|own| own == ods);
    let Some(entities) = event.get_mut("entity").and_then(Value::as_array_mut) else {
        return;
    };
    // A patient who cannot be placed (an id no longer decoding, after the id key changed) is kept where the
    // event reached one practice at most, theirs; where it reached several, they could be any one's.
    let reached: std::collections::BTreeSet<&str> = entities
        .iter()
        .flat_map(details)
        .filter(|(kind, _)| *kind == "practice")
        .map(|(_, ods)| ods)
        .collect();
    let unplaced_kept = reached.len() <= 1;
    entities.retain(|entity| {
        if entity["role"]["code"] == "1" {
            let id = entity["what"]["reference"]
                .as_str()
                .and_then(|r| r.strip_prefix("Patient/"));
            return match id.and_then(&practice_of) {
                Some(ods) => ours(&ods),
                None => unplaced_kept,
            };
        }
        if entity["name"] == "native call" {
            return details(entity).any(|(kind, value)| kind == "practice" && ours(value));
        }
        true
    });
    let per_practice = |kind: &Value| kind == "practice" || kind == CACHE_HIT || kind == CACHE_LOAD;
    for entity in entities.iter_mut() {
        if let Some(details) = entity.get_mut("detail").and_then(Value::as_array_mut) {
            // An event recorded before practices were named here keeps the value it was recorded with.
            let named = details
                .iter()
                .any(|d| d["type"] == CACHE_HIT || d["type"] == CACHE_LOAD);
            details.retain(|d| !per_practice(&d["type"]) || d["valueString"].as_str().is_some_and(ours));
            if !named {
                continue;
            }
            // How the request's answers met the cache, as far as this practice's part of it goes.
            let any = |kind: &str| details.iter().any(|d| d["type"] == kind);
            let summary = CacheFacts::summary(any(CACHE_HIT), any(CACHE_LOAD));
            for d in details.iter_mut().filter(|d| d["type"] == "cache") {
                d["valueString"] = json!(summary);
            }
        }
    }
}

/// An entity's details as (type, value).
fn details(entity: &Value) -> impl Iterator<Item = (&str, &str)> {
    entity["detail"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|d| Some((d["type"].as_str()?, d["valueString"].as_str()?)))
}

fn patient_entity(patient: &PatientRef) -> Option<Value> {
    let mut what = Map::new();
    if let Some(id) = patient.logical_id() {
        what.insert("reference".into(), Value::String(format!("Patient/{id}")));
    }
    if let Some(nhs) = patient.nhs_number.as_deref().filter(|n| !n.is_empty()) {
        what.insert("identifier".into(), json!({"system": NHS_NUMBER, "value": nhs}));
    }
    if what.is_empty() {
        return None;
    }
    Some(json!({
        "what": what,
        "type": coding(ENTITY_TYPE, "1", "Person"),
        "role": coding(OBJECT_ROLE, "1", "Patient"),
    }))
}

/// BALP's transaction entity: the request id, with what else the HTTP exchange tells.
fn transaction_entity(facts: &AuditFacts) -> Value {
    let mut details = vec![
        detail("method", &facts.method),
        detail("status", &facts.status.to_string()),
    ];
    if let Some(code) = facts.outcome_code.as_deref() {
        details.push(detail("outcome-code", code));
    }
    // Per practice, so that each practice's auditors see how its own answers were found (see `visible_to`).
    let (hits, loads) = (&facts.cache.hits, &facts.cache.loads);
    let cache = CacheFacts::summary(!hits.is_empty(), !loads.is_empty());
    details.push(detail("cache", cache));
    details.extend(hits.iter().map(|ods| detail(CACHE_HIT, ods)));
    details.extend(loads.iter().map(|ods| detail(CACHE_LOAD, ods)));
    details.extend(facts.practices.iter().map(|ods| detail("practice", ods)));
    let mut entity = json!({"type": coding(BALP_ENTITY_TYPE, "XrequestId", "X-Request-Id")});
    if !facts.request_id.is_empty() {
        entity["what"] = json!({"identifier": {"value": facts.request_id}});
    }
    entity["detail"] = Value::Array(details);
    entity
}

fn native_call_entity(call: &NativeCallFact) -> Value {
    let status = call.status.map_or_else(|| "none".to_string(), |s| s.to_string());
    json!({
        "type": coding(ENTITY_TYPE, "2", "System Object"),
        "name": "native call",
        "description": format!("{} {}", call.supplier, call.operation),
        "detail": [
            detail("supplier", &call.supplier),
            detail("practice", &call.practice),
            detail("operation", &call.operation),
            detail("status", &status),
            detail("millis", &call.millis.to_string()),
        ],
    })
}

fn detail(kind: &str, value: &str) -> Value {
    json!({"type": kind, "valueString": value})
}

fn coding(system: &str, code: &str, display: &str) -> Value {
    json!({"system": system, "code": code, "display": display})
}

#[cfg(test)]
mod tests {
    use super::super::facts::tests::{patient_read, unauthenticated};
    use super::*;

    fn entity_of_role<'a>(event: &'a Value, role: &str) -> Vec<&'a Value> {
        event["entity"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|e| e["role"]["code"] == role)
            .collect()
    }

    #[test]
    fn a_401_has_the_client_as_requestor_and_no_user() {
        let event = audit_event("e-401", &unauthenticated());
        assert_eq!(event["resourceType"], "AuditEvent");
        assert_eq!(event["id"], "e-401");
        assert_eq!(event["outcome"], "4");
        assert_eq!(event["action"], "E");
        assert_eq!(event["subtype"][0]["code"], "unknown");
        assert_eq!(event["outcomeDesc"], "IM1-1001: The bearer token is missing or invalid");
        let agents = event["agent"].as_array().unwrap();
        assert_eq!(agents.len(), 2, "client and server only: {agents:?}");
        assert_eq!(agents[0]["type"]["coding"][0]["code"], "110150");
        assert_eq!(agents[0]["requestor"], true);
        assert_eq!(agents[0]["network"], json!({"address": "10.0.0.8", "type": "2"}));
        assert!(agents[0].get("who").is_none());
        assert_eq!(agents[1]["type"]["coding"][0]["code"], "110152");
        // Only the transaction entity: no patient, no resource, no native call.
        let entities = event["entity"].as_array().unwrap();
        assert_eq!(entities.len(), 1);
        assert_eq!(entities[0]["type"]["code"], "XrequestId");
        assert_eq!(entities[0]["what"]["identifier"]["value"], "req-2");
        assert_eq!(event["source"]["type"][0]["code"], "4");
        assert_eq!(event["recorded"], "2023-11-14T22:15:00.000000Z");
    }

    #[test]
    fn a_patient_read_names_user_client_patient_resource_and_native_calls() {
        let event = audit_event("e-read", &patient_read());
        assert_eq!(event["type"]["code"], "rest");
        assert_eq!(
            event["subtype"][0],
            json!({"system": RESTFUL_INTERACTION, "code": "read", "display": "read"})
        );
        assert_eq!(event["action"], "R");
        assert_eq!(event["outcome"], "0");
        assert!(event.get("outcomeDesc").is_none());
        assert_eq!(event["period"]["start"], "2023-11-14T22:13:20.000000Z");
        assert_eq!(event["recorded"], "2023-11-14T22:13:21.000000Z");

        let agents = event["agent"].as_array().unwrap();
        let user = &agents[0];
        assert_eq!(user["requestor"], true);
        assert_eq!(user["type"]["coding"][0]["code"], "IRCP");
        assert_eq!(
            user["who"]["identifier"]["system"],
            "https://im1-fhir.dev/principal/clinician"
        );
        assert_eq!(user["who"]["identifier"]["value"], "clinician-1");
        assert_eq!(user["role"][0]["coding"][0]["code"], "R8000");
        assert_eq!(user["policy"][0], "jti-secret-77");
        let client = &agents[1];
        assert_eq!(client["type"]["coding"][0]["code"], "110150");
        assert_eq!(client["who"]["identifier"]["value"], "gp-app");
        assert_eq!(client["requestor"], false);
        assert_eq!(client["network"]["address"], "10.0.0.7");
        assert_eq!(
            agents[2]["who"]["identifier"],
            json!({"system": ODS, "value": "A12345"})
        );
        assert_eq!(agents[3]["who"]["display"], "im1-fhir");

        let patients = entity_of_role(&event, "1");
        assert_eq!(patients.len(), 1);
        assert_eq!(patients[0]["type"]["code"], "1");
        assert_eq!(patients[0]["what"]["reference"], "Patient/p1");
        assert_eq!(
            patients[0]["what"]["identifier"],
            json!({"system": NHS_NUMBER, "value": "9000000009"})
        );
        let resources = entity_of_role(&event, "4");
        assert_eq!(resources[0]["what"]["reference"], "Patient/p1");
        assert!(entity_of_role(&event, "24").is_empty(), "no query for a read");

        let calls: Vec<&Value> = event["entity"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|e| e["name"] == "native call")
            .collect();
        assert_eq!(calls.len(), 2);
        assert_eq!(calls[1]["description"], "emis GET /patients/{id}");
        let details = calls[1]["detail"].as_array().unwrap();
        let find = |kind: &str| details.iter().find(|d| d["type"] == kind).unwrap()["valueString"].clone();
        assert_eq!(find("status"), "200");
        assert_eq!(find("millis"), "31");
        assert_eq!(find("practice"), "A12345");
    }

    #[test]
    fn a_search_carries_its_query_in_base64_and_is_a_read() {
        let mut facts = patient_read();
        facts.interaction = "search-type".into();
        facts.resource_type = Some("Observation".into());
        facts.resource_id = None;
        facts.query = Some("patient=p1&code=1234".into());
        facts.status = 502;
        let event = audit_event("e-search", &facts);
        assert_eq!(event["action"], "R");
        assert_eq!(event["outcome"], "8");
        let query = entity_of_role(&event, "24");
        assert_eq!(
            query[0]["query"],
            base64::engine::general_purpose::STANDARD.encode("patient=p1&code=1234")
        );
        assert_eq!(query[0]["what"]["type"], "Observation");
        assert!(query[0].get("name").is_none(), "sev-1: name or query, not both");
        assert_eq!(entity_of_role(&event, "4")[0]["what"], json!({"type": "Observation"}));
    }

    #[test]
    fn actions_follow_the_interaction() {
        for (interaction, code) in [
            ("create", "C"),
            ("update", "U"),
            ("patch", "U"),
            ("delete", "D"),
            ("operation", "E"),
        ] {
            assert_eq!(action(interaction), code, "{interaction}");
        }
    }

    #[test]
    fn an_auditor_reads_their_own_practices_part_of_an_event() {
        let patient = |id: &str| json!({"role": {"code": "1"}, "what": {"reference": format!("Patient/{id}")}});
        let call = |ods: &str| json!({"name": "native call", "detail": [{"type": "practice", "valueString": ods}]});
        let event = |reached: &[&str]| {
            let details: Vec<Value> = reached
                .iter()
                .map(|ods| json!({"type": "practice", "valueString": ods}))
                .collect();
            let mut entities = vec![patient("a"), patient("b"), patient("unplaced")];
            entities.extend(reached.iter().map(|ods| call(ods)));
            entities.push(json!({"type": {"code": "XrequestId"}, "detail": details}));
            json!({ "entity": entities })
        };
        let practice_of = |id: &str| match id {
            "a" => Some("Y90001".to_string()),
            "b" => Some("Y90002".to_string()),
            _ => None,
        };
        let own = ["Y90001".to_string()];
        let mut both = event(&["Y90001", "Y90002"]);
        visible_to(&mut both, &own, practice_of);
        let kept: Vec<String> = both["entity"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e.to_string())
            .collect();
        assert!(kept.iter().any(|e| e.contains("Patient/a")), "{kept:?}");
        assert!(
            !kept
                .iter()
                .any(|e| e.contains("Patient/b") || e.contains("unplaced") || e.contains("Y90002")),
            "{kept:?}"
        );
        // Reaching one practice, a patient who cannot be placed is that practice's.
        let mut one = event(&["Y90001"]);
        visible_to(&mut one, &own, practice_of);
        assert!(one.to_string().contains("unplaced"), "{one}");
    }

    #[test]
    fn an_auditor_reads_how_their_own_practices_answers_met_the_cache() {
        let detail = |kind: &str, value: &str| json!({"type": kind, "valueString": value});
        let event = json!({"entity": [{"type": {"code": "XrequestId"}, "detail": [
            detail("cache", "partial"),
            detail("practice", "Y90001"),
            detail("practice", "Y90002"),
            detail(CACHE_HIT, "Y90001"),
            detail(CACHE_LOAD, "Y90002"),
        ]}]});
        let seen_by = |ods: &str| {
            let mut event = event.clone();
            visible_to(&mut event, &[ods.to_string()], |_| None);
            event["entity"][0]["detail"].clone()
        };
        assert_eq!(
            seen_by("Y90001"),
            json!([
                detail("cache", "hit"),
                detail("practice", "Y90001"),
                detail(CACHE_HIT, "Y90001")
            ])
        );
        assert_eq!(
            seen_by("Y90002"),
            json!([
                detail("cache", "miss"),
                detail("practice", "Y90002"),
                detail(CACHE_LOAD, "Y90002")
            ])
        );
        // A practice whose part met no cache at all (refused before it, say) learns nothing of the others'.
        assert_eq!(seen_by("Y90003"), json!([detail("cache", "none")]));
        // An event recorded before practices were named keeps its value.
        let mut earlier = json!({"entity": [{"type": {"code": "XrequestId"}, "detail": [
            detail("cache", "hit"),
            detail("practice", "Y90001"),
        ]}]});
        visible_to(&mut earlier, &["Y90001".to_string()], |_| None);
        assert_eq!(earlier["entity"][0]["detail"][0], detail("cache", "hit"));
    }

    #[test]
    fn instants_are_utc_and_fixed_width() {
        let t = time::macros::datetime!(2024-03-01 01:30:00.5 +02:00);
        assert_eq!(instant(t), "2024-02-29T23:30:00.500000Z");
    }
}
