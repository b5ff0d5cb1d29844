//! The CapabilityStatement and the SMART configuration, generated from what the loaded mappings support
//! and which practices are configured, so they never claim more (or less) than the proxy does.

use crate::mapping::file::{InteractionDef, ParamDef, Surface};
use crate::mapping::Registry;
use serde_json::{json, Value};
use std::collections::BTreeMap;

/// A configured practice, as the statement describes it.
pub struct PracticeInfo {
    pub ods: String,
    pub supplier_key: String,
    pub supplier_name: String,
}

/// The search parameters and control parameters every search accepts, besides the mapped ones.
const COMMON_SEARCH: &[(&str, &str, &str)] = &[
    (
        "_count",
        "number",
        "Page size; values above 200 are clamped (the self link shows the size used).",
    ),
    ("_summary", "token", "true, text, data, count or false."),
    (
        "_total",
        "token",
        "none, estimate or accurate: every Bundle states its total, exactly.",
    ),
    ("_pretty", "token", "true for indented output."),
    (
        "_elements",
        "string",
        "Only these top-level elements (the result is marked SUBSETTED).",
    ),
    (
        "_sort",
        "string",
        "By any of the type's search parameters, - for descending. Without it: by the type's first date parameter \
         (newest first; sessions and slots earliest first), then by content, the same at every supplier; Patients \
         come as found (for a patient token, their own record first, then those they act for).",
    ),
];

pub fn capability_statement(
    registry: &Registry,
    practices: &[PracticeInfo],
    smart: &SmartIssuer,
    base: &str,
    date: &str,
) -> Value {
    let mut resources = Vec::new();
    for resource in registry.resource_types() {
        let mappings: Vec<_> = registry
            .for_resource(resource)
            .filter(|m| practices.iter().any(|p| p.supplier_key == m.supplier))
            .collect();
        if mappings.is_empty() {
            continue;
        }
        let mut interactions = Vec::new();
        if mappings.iter().any(|m| m.read.is_some()) {
            interactions.push(json!({ "code": "read" }));
        }
        if mappings.iter().any(|m| m.search.is_some()) {
            interactions.push(json!({ "code": "search-type" }));
        }
        // Union of the parameters, with the suppliers that support each where not all do.
        let mut params: BTreeMap<&str, (&ParamDef, Vec<&str>)> = BTreeMap::new();
        for m in &mappings {
            for p in &m.params {
                params
                    .entry(&p.name)
                    .or_insert((p, Vec::new()))
                    .1
                    .push(supplier_name(practices, &m.supplier));
            }
        }
        let mut search_params: Vec<Value> = params
            .values()
            .map(|(p, suppliers)| {
                let mut param = json!({ "name": p.name, "type": p.kind.name() });
                let mut documentation: Vec<String> = p.documentation.iter().cloned().collect();
                if suppliers.len() < mappings.len() {
                    documentation.push(format!("Only at practices running {}.", suppliers.join(", ")));
                }
                if !documentation.is_empty() {
                    param["documentation"] = json!(documentation.join(" "));
                }
                param
            })
            .collect();
        if mappings.iter().any(|m| m.search.is_some()) {
            search_params.extend(
                COMMON_SEARCH
                    .iter()
                    .map(|(n, t, d)| json!({ "name": n, "type": t, "documentation": d })),
            );
        }
        let notes: Vec<String> = mappings
            .iter()
            .map(|m| {
                format!(
                    "{}: {}",
                    supplier_name(practices, &m.supplier),
                    describe(m.read.as_ref(), "read")
                        .into_iter()
                        .chain(describe(m.search.as_ref(), "search"))
                        .collect::<Vec<_>>()
                        .join("; ")
                )
            })
            .collect();
        // Reads answer If-Modified-Since where every supplier's resources say when they last changed.
        let dated_reads = mappings.iter().any(|m| m.read.is_some()) && mappings.iter().all(|m| m.states_last_updated);
        let mut entry = json!({
            "type": resource,
            "profile": format!("http://hl7.org/fhir/StructureDefinition/{resource}"),
            "supportedProfile": mappings.iter().map(|m| m.profile.clone()).collect::<std::collections::BTreeSet<_>>(),
            "documentation": record_note(registry, resource).into_iter().chain(notes).collect::<Vec<_>>().join(" | "),
            "interaction": interactions,
            // The GP systems' APIs expose no versions: no versionId, no ETag, no history.
            "versioning": "no-version",
        });
        // A read answers If-Modified-Since from its Last-Modified (`fhir::conditional`).
        if dated_reads {
            entry["conditionalRead"] = json!("modified-since");
        }
        if !search_params.is_empty() {
            entry["searchParam"] = json!(search_params);
        }
        // Includes follow this type's reference parameters; revincludes come from other types' references.
        let includes: Vec<String> = params
            .values()
            .filter(|(p, _)| p.kind == crate::mapping::ParamType::Reference)
            .map(|(p, _)| format!("{resource}:{}", p.name))
            .collect();
        if !includes.is_empty() {
            entry["searchInclude"] = json!(includes);
        }
        // Only references R4 lets point at this type: `Slot:schedule` is a revinclude of Schedule, not of Condition.
        // And only items the proxy can search from a page of this type: a patient's record items are searched one
        // record at a time, and Patients by identifier or name, so neither is a revinclude of practice data
        // (Practitioner, Schedule); nor is practice data (a Schedule's actor) one of a patient.
        let defs = crate::mapping::profile::Defs::get();
        let practice_level = registry.compartment_of(resource) == Some(crate::mapping::Compartment::None);
        let revincludes: std::collections::BTreeSet<String> = registry
            .mappings
            .iter()
            .filter(|m| m.resource != resource)
            .flat_map(|m| m.params.iter().map(move |p| (m, p)))
            .filter(|(m, p)| {
                p.kind == crate::mapping::ParamType::Reference
                    && !(practice_level
                        && matches!(
                            m.compartment,
                            crate::mapping::Compartment::Patient | crate::mapping::Compartment::SelfPatient
                        ))
                    && (practice_level || m.compartment != crate::mapping::Compartment::None)
                    && defs.may_reference(&m.resource, &p.name, resource)
            })
            .map(|(m, p)| format!("{}:{}", m.resource, p.name))
            .collect();
        if !revincludes.is_empty() && mappings.iter().any(|m| m.search.is_some()) {
            entry["searchRevInclude"] = json!(revincludes);
        }
        if resource == "Patient" {
            entry["operation"] = json!([{
                "name": "everything",
                "definition": "http://hl7.org/fhir/OperationDefinition/Patient-everything",
                "documentation": "At instance level (Patient/{id}/$everything), for a token that may read the Patient (a scope on Patient, or *; one without is refused, 403): the Patient and every item of its record the token's scopes allow (with the Medications its prescriptions name, and the Practitioners, PractitionerRoles and Organizations what it returns names), as a paged searchset; _type names the types returned (the Patient only if named; Practitioner, PractitionerRole or Organization alone: those the whole record names), _since keeps what was updated since, and what states no update time (no item here does: no GP system's API dates an item's last change; said with IM1-1218); start and end keep the items whose care date (its onset where it has one, else the first of its type's search dates it holds) falls within them, with the Patient and what carries no such date.",
            }]);
        }
        resources.push(entry);
    }
    resources.push(json!({
        "type": "AuditEvent",
        "profile": "http://hl7.org/fhir/StructureDefinition/AuditEvent",
        "documentation": "One AuditEvent (IHE Basic Audit Log Patterns) per interaction, whatever its outcome, committed before the response. Auditors only (user/AuditEvent.rs): the events of the practices in their token and those of no practice, newest first.",
        "interaction": [{ "code": "search-type" }],
        "versioning": "no-version",
        "searchParam": [
            { "name": "date", "type": "date", "documentation": "When recorded; prefixes ge, gt, le, lt, eq." },
            { "name": "patient", "type": "reference" },
            { "name": "agent", "type": "reference", "documentation": "The user's subject." },
            { "name": "entity", "type": "reference", "documentation": "Type, or Type/id." },
            { "name": "outcome", "type": "token", "documentation": "0, 4, 8 or 12." },
            { "name": "_count", "type": "number", "documentation": format!("Up to {} a page.", crate::fhir::bundle::MAX_COUNT) },
            { "name": "_sort", "type": "string", "documentation": "date or -date (the default, newest first)." },
            { "name": "_summary", "type": "token", "documentation": "As for every search." },
            { "name": "_elements", "type": "string", "documentation": "As for every search." },
        ],
    }));
    resources.push(json!({
        "type": "ConceptMap",
        "profile": "http://hl7.org/fhir/StructureDefinition/ConceptMap",
        "documentation": "The code translations the mappings use (native codes and statuses to SNOMED CT, dm+d and FHIR codes).",
        "interaction": [{ "code": "read" }, { "code": "search-type" }],
        "versioning": "no-version",
        "searchParam": [
            { "name": "url", "type": "uri" },
            { "name": "_id", "type": "token" },
            { "name": "source-system", "type": "uri" },
            { "name": "_count", "type": "number" },
            { "name": "_summary", "type": "token" },
            { "name": "_elements", "type": "string" },
        ],
        "operation": [{
            "name": "translate",
            "definition": "http://hl7.org/fhir/OperationDefinition/ConceptMap-translate",
            "documentation": "On a map by id, or by url: code with system (or a coding: system|code in the URL, a valueCoding by POST), and targetsystem. Not supported: reverse, codeableConcept, conceptMapVersion, dependency, source and target value sets.",
        }],
    }));
    resources.sort_by(|a, b| a["type"].as_str().cmp(&b["type"].as_str()));
    // By ODS code: the practices come from a map, in no lasting order, and the statement is the same each time.
    let mut supplier_list: Vec<String> = practices
        .iter()
        .map(|p| format!("{} ({})", p.ods, p.supplier_name))
        .collect();
    supplier_list.sort();
    let mut statement = json!({
        "resourceType": "CapabilityStatement",
        "id": "im1-fhir",
        "url": format!("{base}/metadata"),
        "version": env!("CARGO_PKG_VERSION"),
        "name": "Im1FhirCapabilityStatement",
        "title": "im1-fhir: a FHIR R4 (UK Core) facade over the EMIS, SystmOne and Medicus IM1 APIs",
        "status": "active",
        "experimental": false,
        "date": date,
        "publisher": "im1-fhir",
        "description": format!("Generated from the loaded mapping files. Practices: {}.", supplier_list.join(", ")),
        "kind": "instance",
        "software": { "name": "im1-fhir", "version": env!("CARGO_PKG_VERSION") },
        "implementation": { "description": "im1-fhir translation proxy", "url": base },
        "fhirVersion": "4.0.1",
        "format": ["application/fhir+json", "application/fhir+xml", "json", "xml"],
        "rest": [{
            "mode": "server",
            "documentation": "Every request but metadata and the SMART configuration needs a bearer token. Unknown search parameters, and _include/_revinclude values that cannot be followed, are a 400 unless `Prefer: handling=lenient` (then left out with a warning). A read takes only _format, _pretty, _summary and _elements; anything else is a 400 unless `Prefer: handling=lenient` (then ignored). Dates and times searched without a zone are UK time, Europe/London as the tz database has it (GMT, BST in summer; older dates by the rules of their day).",
            "security": {
                "cors": true,
                "service": [{ "coding": [{
                    "system": "http://terminology.hl7.org/CodeSystem/restful-security-service",
                    "code": "SMART-on-FHIR",
                    "display": "SMART-on-FHIR",
                }]}],
                "description": "Bearer JWTs (RS256, ES256 or PS256) from the configured issuers. SMART App Launch v2 scopes are enforced on every returned resource (patient/, user/, system/ with cruds; granular scopes such as patient/Observation.rs?category=laboratory filter results; v1 .read/.write/.* accepted as their v2 meaning). Patient tokens (NHS login, identity proofing level P9; lower levels get 403 IM1-2108) reach the records their linkage opens, through the supplier's patient-facing API: their own, and those the practice lets them act for (proxy access, each link a RelatedPerson in the record acted for); confidential items never reach them. Clinician and system tokens reach the practices they name. Free text and documents go only to the roles each practice's policy names (by default patients and clinicians); otherwise they are withheld: a read is a 403 (IM1-2201), a search leaves them out with a coded warning (IM1-2201, IM1-2202). Each client is rate limited (429 with Retry-After). Translated native answers are cached briefly (Cache-Control: no-cache skips the cache; max-age=N takes an answer no older than N seconds, counted from when it was loaded; Age on a response says how old the oldest kept answer it used is) below every one of these checks, which apply to cached answers too. Every interaction, cache hits included, is recorded as an AuditEvent before its response is released; if the audit store fails, requests fail with 503.",
            },
        }],
    });
    // SMART App Launch v1 clients find the OAuth endpoints here (v2 clients in the SMART configuration).
    let uris: Vec<Value> = [
        ("token", &smart.token_endpoint),
        ("authorize", &smart.authorization_endpoint),
    ]
    .into_iter()
    .filter_map(|(name, url)| url.as_ref().map(|url| json!({ "url": name, "valueUri": url })))
    .collect();
    if !uris.is_empty() {
        statement["rest"][0]["security"]["extension"] = json!([{
            "url": "http://fhir-registry.smarthealthit.org/StructureDefinition/oauth-uris",
            "extension": uris,
        }]);
    }
    // FHIR forbids empty arrays: list resources only when some are served.
    if !resources.is_empty() {
        statement["rest"][0]["resource"] = json!(resources);
    }
    statement
}

/// What every search of a patient's record items needs, whatever the supplier: GP systems search one record
/// at a time.
fn record_note(registry: &Registry, resource: &str) -> Option<String> {
    // Only for a type that is searched: a Medication or a Binary is read, by the id a resource gave.
    let in_a_record = registry.compartment_of(resource) == Some(crate::mapping::Compartment::Patient);
    (in_a_record && registry.is_searched(resource)).then(|| {
        "Searches name one record: 'patient' (or 'subject'), which a patient token may leave out for their own"
            .to_string()
    })
}

fn describe(def: Option<&InteractionDef>, what: &str) -> Option<String> {
    let def = def?;
    let who: Vec<String> = def
        .surfaces
        .iter()
        .map(|(surface, step)| {
            let who = match surface {
                Surface::Transaction => "clinicians and systems",
                Surface::Patient => "patients",
            };
            // What the native call cannot do without (each alternative), and what it can take there.
            let needs: Vec<String> = step
                .requires
                .iter()
                .map(|alternative| {
                    let each: Vec<String> = alternative
                        .iter()
                        .map(|name| match step.takes.iter().find(|(n, _)| n == name) {
                            Some((_, takes)) => format!("one '{name}', {}", takes.describe()),
                            None => format!("one '{name}'"),
                        })
                        .collect();
                    each.join(" and ")
                })
                .collect();
            let mut notes = Vec::new();
            if !needs.is_empty() {
                notes.push(format!("needs {}", needs.join(", or else ")));
            }
            if let Some(window) = &step.window {
                notes.push(format!(
                    "reads {p} a window of days; open on either side, {}",
                    window.default,
                    p = window.param
                ));
            }
            // What this surface's API leaves out, as its searches' warnings say.
            if let Some(less) = &step.less {
                notes.push(format!("gives less: {less}"));
            }
            if notes.is_empty() {
                who.to_string()
            } else {
                format!("{who} ({})", notes.join("; "))
            }
        })
        .collect();
    Some(format!("{what} for {}", who.join(" and ")))
}

fn supplier_name<'a>(practices: &'a [PracticeInfo], key: &str) -> &'a str {
    practices
        .iter()
        .find(|p| p.supplier_key == key)
        .map_or("?", |p| p.supplier_name.as_str())
}

/// `metadata?mode=terminology`: the code systems the ConceptMaps translate from and to, and translation with a
/// map named (`ConceptMap/$translate`); no closure tables.
pub fn terminology_capabilities(registry: &Registry, base: &str, date: &str) -> Value {
    let mut systems: Vec<&str> = registry
        .concept_maps
        .iter()
        .flat_map(|m| m.resource["group"].as_array().into_iter().flatten())
        .flat_map(|g| [g["source"].as_str(), g["target"].as_str()])
        .flatten()
        .collect();
    systems.sort_unstable();
    systems.dedup();
    json!({
        "resourceType": "TerminologyCapabilities",
        "id": "im1-fhir-terminology",
        "url": format!("{base}/metadata?mode=terminology"),
        "version": env!("CARGO_PKG_VERSION"),
        "name": "Im1FhirTerminologyCapabilities",
        "status": "active",
        "experimental": false,
        "date": date,
        "publisher": "im1-fhir",
        "description": "The code translations the mappings use, readable as ConceptMaps and by ConceptMap/$translate.",
        "kind": "instance",
        "software": { "name": "im1-fhir", "version": env!("CARGO_PKG_VERSION") },
        "implementation": { "description": "im1-fhir translation proxy", "url": base },
        "codeSystem": systems.iter().map(|uri| json!({ "uri": uri })).collect::<Vec<_>>(),
        "translation": { "needsMap": true },
        "closure": { "translation": false },
    })
}

/// What `.well-known/smart-configuration` says of the token issuer: the first configured one.
#[derive(Debug, Clone, Default)]
pub struct SmartIssuer {
    pub issuer: Option<String>,
    pub token_endpoint: Option<String>,
    pub authorization_endpoint: Option<String>,
}

impl SmartIssuer {
    pub fn of(issuers: &[crate::auth::token::Issuer]) -> SmartIssuer {
        issuers
            .first()
            .map(|i| SmartIssuer {
                issuer: Some(i.issuer.clone()),
                token_endpoint: i.token_endpoint.clone(),
                authorization_endpoint: i.authorization_endpoint.clone(),
            })
            .unwrap_or_default()
    }
}

/// `/.well-known/smart-configuration`: what the proxy enforces, and the flows its authorisation server offers
/// as far as it is configured: no authorisation endpoint, no authorisation-code launch; no token endpoint, no
/// client credentials (the demo's tokens are minted by `im1-fhir token`, so it offers neither).
pub fn smart_configuration(smart: &SmartIssuer) -> Value {
    let tokens = smart.token_endpoint.is_some();
    let launches = tokens && smart.authorization_endpoint.is_some();
    let mut grants = Vec::new();
    let mut capabilities = vec![
        "permission-patient",
        "permission-user",
        "permission-v1",
        "permission-v2",
    ];
    if launches {
        grants.push("authorization_code");
        capabilities.extend(["launch-standalone", "client-public", "context-standalone-patient"]);
    }
    if tokens {
        grants.push("client_credentials");
        capabilities.push("client-confidential-asymmetric");
    }
    let mut config = json!({
        "issuer": smart.issuer,
        "grant_types_supported": grants,
        "scopes_supported": [
            "openid", "fhirUser", "launch/patient",
            // Read and search only: this server writes nothing (a token's wider scopes are accepted and narrowed).
            "patient/*.rs", "user/*.rs", "system/*.rs", "user/AuditEvent.rs",
            "patient/Observation.rs?category=laboratory", "patient/Observation.rs?category=vital-signs",
        ],
        "capabilities": capabilities,
    });
    if let Some(url) = &smart.token_endpoint {
        config["token_endpoint"] = json!(url);
        config["token_endpoint_auth_methods_supported"] = json!(["private_key_jwt"]);
    }
    if let (true, Some(url)) = (launches, &smart.authorization_endpoint) {
        config["authorization_endpoint"] = json!(url);
        config["response_types_supported"] = json!(["code"]);
        config["code_challenge_methods_supported"] = json!(["S256"]);
    }
    config
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The statement for these practices, with no SMART endpoints configured.
    fn statement_for(registry: &Registry, practices: &[PracticeInfo]) -> Value {
        capability_statement(
            registry,
            practices,
            &SmartIssuer::default(),
            "http://x/fhir",
            "2026-01-01",
        )
    }
    use crate::mapping::Source;

    #[test]
    fn revincludes_are_offered_only_where_r4_lets_the_reference_point() {
        let registry = Registry::load(&Source::Embedded).unwrap_or_else(|p| panic!("{p:?}"));
        let practices = [PracticeInfo {
            ods: "Y90001".into(),
            supplier_key: "emis".into(),
            supplier_name: "EMIS Web".into(),
        }];
        let statement = statement_for(&registry, &practices);
        let revincludes = |resource: &str| -> Vec<String> {
            let entry = statement["rest"][0]["resource"]
                .as_array()
                .unwrap()
                .iter()
                .find(|r| r["type"] == resource)
                .unwrap();
            serde_json::from_value(entry["searchRevInclude"].clone()).unwrap_or_default()
        };
        assert!(revincludes("Schedule").contains(&"Slot:schedule".to_string()));
        // A patient's record items point at the Patient: what a Patient search can bring with it.
        assert!(revincludes("Patient").contains(&"AllergyIntolerance:patient".to_string()));
        assert!(revincludes("Encounter").contains(&"Condition:encounter".to_string()));
        assert!(revincludes("Practitioner").contains(&"PractitionerRole:practitioner".to_string()));
        assert!(!revincludes("Condition").contains(&"Slot:schedule".to_string()));
        assert!(!revincludes("Slot").contains(&"PractitionerRole:practitioner".to_string()));
        // Record items are searched one record at a time: no revinclude of practice data.
        assert!(!revincludes("Practitioner").contains(&"MedicationRequest:requester".to_string()));
        // Nor Patients: they are found by identifier or by name and birth date only.
        assert!(!revincludes("Practitioner").contains(&"Patient:general-practitioner".to_string()));
        assert!(!revincludes("Organization").iter().any(|r| r.starts_with("Patient:")));
        // What a native search cannot do without is stated.
        let patient = statement["rest"][0]["resource"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["type"] == "Patient")
            .unwrap();
        let documentation = patient["documentation"].as_str().unwrap();
        assert!(
            documentation.contains(
                "clinicians and systems (needs one 'identifier', a valid NHS number, \
                 or else one 'family' and one 'birthdate', one whole date (YYYY-MM-DD))"
            ),
            "{documentation}"
        );
    }

    #[test]
    fn what_a_supplier_gives_less_of_is_stated_for_it() {
        let registry = Registry::load(&Source::Embedded).unwrap_or_else(|p| panic!("{p:?}"));
        let practices =
            [("Y90001", "emis", "EMIS Web"), ("Y90003", "medicus", "Medicus")].map(|(ods, key, name)| PracticeInfo {
                ods: ods.into(),
                supplier_key: key.into(),
                supplier_name: name.into(),
            });
        let statement = statement_for(&registry, &practices);
        let documentation = |resource: &str| {
            let resources = statement["rest"][0]["resource"].as_array().unwrap();
            let entry = resources.iter().find(|r| r["type"] == resource).unwrap();
            entry["documentation"].as_str().unwrap().to_string()
        };
        let observation = statement["rest"][0]["resource"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["type"] == "Observation");
        let params = observation.unwrap()["searchParam"].as_array().unwrap();
        assert!(params.iter().any(|p| p["name"] == "_sort"), "_sort is advertised");
        // A type read but never searched says nothing of how searches name a record.
        assert!(!documentation("Medication").contains("Searches name one record"));
        assert!(documentation("Observation").contains("Searches name one record"));
        // A parameter's own documentation is said: how a record identifier is written.
        let identifier = params.iter().find(|p| p["name"] == "identifier").unwrap();
        let said = identifier["documentation"].as_str().unwrap_or_default();
        assert!(
            said.contains("https://im1-fhir.dev/Id/record/<supplier>/<ODS code>/<resource type>"),
            "{said}"
        );
        for resource in ["Patient", "RelatedPerson"] {
            let text = documentation(resource);
            let medicus = text.split(" | ").find(|n| n.starts_with("Medicus")).unwrap();
            let emis = text.split(" | ").find(|n| n.starts_with("EMIS Web")).unwrap();
            assert!(medicus.contains("gives less: "), "{text}");
            assert!(!emis.contains("gives less"), "{text}");
        }
    }
}
