//! Golden cases, found by convention: every mapping file `mappings/<supplier>/<Resource>.yaml` has
//! `tests/mappings/<supplier>/<Resource>/native.json` (the native reply bodies of one search, as the dialect
//! hands them to the mapping: JSON as sent, XML as the generic tree) and `expected.json` (the UK Core
//! resources the mapping must make of them). No simulator runs: only the mapping is under test.
//!
//! `IM1_WRITE_GOLDEN=1 cargo test --test golden` captures missing native fixtures from the simulators (seed 1,
//! NHS number 9000000009) and rewrites every `expected.json`; review the diff before committing it.
use crate::common;

use im1_fhir::auth::scopes;
use im1_fhir::auth::{Principal, Role};
use im1_fhir::backend::Backend;
use im1_fhir::config::NativeConfig;
use im1_fhir::demo::Simulators;
use im1_fhir::fhir::rest::SearchParam;
use im1_fhir::ids::{IdCodec, LogicalId};
use im1_fhir::mapping::{Compartment, MappingFile, Registry, Source, Surface};
use im1_fhir::translate::{self, Context, Origin, Produced};
use serde_json::{json, Value};
use std::path::{Path, PathBuf};

const NHS_NUMBER: &str = "9000000009";
const ID_KEY: &[u8] = b"golden-test-id-key";

fn ods(supplier: &str) -> &'static str {
    match supplier {
        "emis" => "Y90001",
        "systmone" => "Y90002",
        _ => "Y90003",
    }
}

fn case_dir(mapping: &MappingFile) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/mappings")
        .join(&mapping.supplier)
        .join(&mapping.resource)
}

/// The surface a fixture's replies come from: `"surface": "patient"` for patient-facing replies (types only the
/// patient-facing APIs carry, such as RelatedPerson), else the transaction surface.
fn surface(native: &Value) -> Surface {
    match native["surface"].as_str() {
        Some("patient") => Surface::Patient,
        _ => Surface::Transaction,
    }
}

fn writing() -> bool {
    std::env::var_os("IM1_WRITE_GOLDEN").is_some()
}

#[tokio::test]
async fn every_mapping_file_turns_its_native_fixture_into_the_expected_resources() {
    let registry = Registry::load(&Source::Embedded).unwrap_or_else(|p| panic!("mappings: {p:?}"));
    let ids = IdCodec::new(ID_KEY);
    if writing() {
        capture_missing_fixtures(&registry, &ids).await;
    }
    let mut failures = Vec::new();
    for mapping in &registry.mappings {
        let dir = case_dir(mapping);
        let native: Value = match std::fs::read_to_string(dir.join("native.json")) {
            Ok(text) => serde_json::from_str(&text).unwrap(),
            Err(_) => {
                failures.push(format!("{}: no golden case in {}", mapping.file, dir.display()));
                continue;
            }
        };
        let patient = native["patient"].as_str().unwrap_or_default();
        let replies: Vec<_> = native["replies"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|reply| im1_fhir::mapping::node::to_native(reply).expect("a fixture's reply parses"))
            .collect();
        let origin = Origin {
            ods: ods(&mapping.supplier),
            supplier: &mapping.supplier,
        };
        let item = native["item"].as_str().unwrap_or_default();
        let produced = translate::translate_read_replies(
            &registry,
            &ids,
            origin,
            mapping,
            surface(&native),
            patient,
            item,
            &replies,
        )
        .unwrap_or_else(|e| panic!("{}: {}", mapping.file, e.message));
        let produced: Vec<Value> = produced.iter().map(as_sent).collect();
        assert!(!produced.is_empty(), "{}: the fixture produced nothing", mapping.file);
        for resource in &produced {
            if let Err(e) = im1_fhir_model::check_strict(resource) {
                failures.push(format!("{}: not strict FHIR R4: {e}", mapping.file));
            }
            let problems = im1_fhir::mapping::rules::problems(resource);
            if !problems.is_empty() {
                failures.push(format!("{}: breaks R4 or UK Core rules: {problems:?}", mapping.file));
            }
        }
        let produced = Value::Array(produced);
        let expected_path = dir.join("expected.json");
        // Compared as text, so that element order (what clients and diffs see) is held as well as content.
        let produced = serde_json::to_string_pretty(&produced).unwrap() + "\n";
        if writing() {
            std::fs::write(&expected_path, produced).unwrap();
            continue;
        }
        let expected = std::fs::read_to_string(&expected_path).unwrap_or_default();
        if expected != produced {
            failures.push(format!(
                "{}: the output differs from {} (IM1_WRITE_GOLDEN=1 rewrites it; review the diff)",
                mapping.file,
                expected_path.display()
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// A type only the patient-facing APIs carry (RelatedPerson): searched through patient 9000000009's own linkage,
/// about the first record they act for (their own if none), and kept with `"surface": "patient"`.
async fn capture_patient_facing(
    registry: &Registry,
    ids: &IdCodec,
    practice: &im1_fhir::backend::PracticeBackend,
    mapping: &MappingFile,
    dir: &Path,
) {
    let principal = Principal {
        subject: "golden".into(),
        role: Role::Patient,
        client_id: "golden".into(),
        scopes: scopes::parse("patient/*.rs").unwrap(),
        nhs_number: Some(NHS_NUMBER.into()),
        proofing_level: Some("P9".into()),
        rbac_role: None,
        practices: vec![practice.ods.clone()],
        token_id: "golden".into(),
    };
    let mut calls = Vec::new();
    let keys = practice.linked_records(NHS_NUMBER, "golden", &mut calls).await.unwrap();
    let linked = im1_fhir::reach::Linked {
        own: keys[0].clone(),
        proxies: keys[1..].to_vec(),
    };
    let ctx = Context {
        registry,
        ids,
        principal: &principal,
        request_id: "golden",
        linked: Some(&linked),
    };
    let key = linked.proxies.first().unwrap_or(&linked.own).clone();
    let mut produced = Produced {
        keep_replies: true,
        ..Produced::default()
    };
    translate::search(&ctx, practice, mapping, &[], &key, &mut produced)
        .await
        .unwrap();
    let fixture = json!({ "surface": "patient", "patient": key, "replies": produced.replies });
    std::fs::create_dir_all(dir).unwrap();
    std::fs::write(
        dir.join("native.json"),
        serde_json::to_string_pretty(&fixture).unwrap() + "\n",
    )
    .unwrap();
}

/// Runs each mapping's transaction search against the simulators for patient 9000000009 and keeps the native
/// replies as the fixture.
async fn capture_missing_fixtures(registry: &Registry, ids: &IdCodec) {
    im1_fhir::runtime::install_crypto();
    let options = common::fixed_options(1, 6);
    let sims = Simulators::start(options).await.unwrap();
    let native = NativeConfig {
        timeout_ms: 5_000,
        retries: 1,
        max_in_flight: 4,
        breaker: Default::default(),
    };
    let backend = Backend::new(&sims.practices(), &native, sims.linkage()).unwrap();
    let principal = Principal {
        subject: "golden".into(),
        role: Role::System,
        client_id: "golden".into(),
        scopes: scopes::parse("system/*.rs").unwrap(),
        nhs_number: None,
        proofing_level: None,
        rbac_role: None,
        practices: vec!["Y90001".into(), "Y90002".into(), "Y90003".into()],
        token_id: "golden".into(),
    };
    let ctx = Context {
        registry,
        ids,
        principal: &principal,
        request_id: "golden",
        linked: None,
    };
    for mapping in &registry.mappings {
        let dir = case_dir(mapping);
        if dir.join("native.json").exists() {
            continue;
        }
        let practice = backend.practice(ods(&mapping.supplier)).unwrap();
        let transaction = mapping
            .search
            .as_ref()
            .is_some_and(|s| s.surfaces.contains_key(&Surface::Transaction));
        if !transaction {
            capture_patient_facing(registry, ids, practice, mapping, &dir).await;
            continue;
        }
        let identifier = SearchParam {
            name: "identifier".into(),
            modifier: None,
            values: vec![format!("https://fhir.nhs.uk/Id/nhs-number|{NHS_NUMBER}")],
        };
        // The patient's native key, from the supplier's own Patient search.
        let patient_mapping = registry.get(&mapping.supplier, "Patient").unwrap();
        let identifier_def = patient_mapping.params.iter().find(|d| d.name == "identifier").unwrap();
        let mut found = Produced {
            keep_replies: true,
            ..Produced::default()
        };
        translate::search(
            &ctx,
            practice,
            patient_mapping,
            &[(identifier_def, &identifier)],
            "",
            &mut found,
        )
        .await
        .unwrap();
        let patient_id = found.resources[0]["id"].as_str().unwrap();
        let patient: LogicalId = ids.decode("Patient", patient_id).unwrap();
        let mut produced = Produced {
            keep_replies: true,
            ..Produced::default()
        };
        let mut read_item = String::new();
        if mapping.resource == "Patient" {
            // The Patient itself: the search that found it is the fixture.
            produced.replies = found.replies;
        } else {
            let key = if mapping.compartment == Compartment::Patient {
                patient.item.as_str()
            } else {
                ""
            };
            let searched = mapping.search.is_some()
                && translate::search(&ctx, practice, mapping, &[], key, &mut produced)
                    .await
                    .is_ok()
                && !produced.resources.is_empty();
            if !searched {
                // Read-only types, or searches that need parameters: read the first record another type names.
                produced = Produced {
                    keep_replies: true,
                    ..Produced::default()
                };
                let id = first_reference(&ctx, practice, registry, mapping, &patient.item).await;
                translate::read(&ctx, practice, mapping, &id, &mut produced)
                    .await
                    .unwrap();
                read_item = id.item.clone();
            }
        }
        std::fs::create_dir_all(&dir).unwrap();
        let patient_key = if mapping.compartment == Compartment::Patient {
            patient.item.clone()
        } else {
            String::new()
        };
        let mut fixture = json!({ "patient": patient_key, "replies": produced.replies });
        if !read_item.is_empty() {
            fixture["item"] = json!(read_item);
        }
        std::fs::write(
            dir.join("native.json"),
            serde_json::to_string_pretty(&fixture).unwrap() + "\n",
        )
        .unwrap();
    }
    sims.shutdown().await;
}

/// The id of the first resource of `mapping`'s type that a searchable type in the same record references
/// (a Medication through its MedicationRequest).
async fn first_reference(
    ctx: &Context<'_>,
    practice: &im1_fhir::backend::PracticeBackend,
    registry: &Registry,
    mapping: &MappingFile,
    patient: &str,
) -> LogicalId {
    let prefix = format!("{}/", mapping.resource);
    for other in registry.mappings.iter().filter(|m| m.supplier == mapping.supplier) {
        if other.search.is_none() || other.compartment != Compartment::Patient {
            continue;
        }
        let mut produced = Produced::default();
        if translate::search(ctx, practice, other, &[], patient, &mut produced)
            .await
            .is_err()
        {
            continue;
        }
        for resource in &produced.resources {
            if let Some(id) = find_reference(&Value::from(resource), &prefix) {
                return ctx.ids.decode(&mapping.resource, &id).unwrap();
            }
        }
    }
    panic!("{}: no resource references a {}", mapping.file, mapping.resource);
}

fn find_reference(value: &Value, prefix: &str) -> Option<String> {
    match value {
        Value::Object(map) => map.iter().find_map(|(k, v)| match v {
            Value::String(s) if k == "reference" || k == "url" => s.strip_prefix(prefix).map(String::from),
            other => find_reference(other, prefix),
        }),
        Value::Array(items) => items.iter().find_map(|i| find_reference(i, prefix)),
        _ => None,
    }
}

/// The golden fixtures' courses, varied into the cases their patient lacks (a repeat never issued, with and
/// without a review date; an acute course), give the same repeat information and last issue date through every
/// supplier: counted and dated from each dialect's own issue list, with no count where none is listed.
#[test]
fn repeat_information_and_last_issue_date_hold_for_courses_never_issued_and_acute_ones() {
    let registry = Registry::load(&Source::Embedded).unwrap_or_else(|p| panic!("mappings: {p:?}"));
    let repeat = "https://fhir.hl7.org.uk/StructureDefinition/Extension-UKCore-MedicationRepeatInformation";
    let last_issue = "https://fhir.hl7.org.uk/StructureDefinition/Extension-UKCore-MedicationStatementLastIssueDate";
    for keep_review in [true, false] {
        let answers: Vec<(&str, Vec<Value>)> = ["emis", "systmone", "medicus"]
            .into_iter()
            .map(|supplier| (supplier, course_extensions(&registry, supplier, keep_review)))
            .collect();
        let (_, emis) = &answers[0];
        let never_issued = match keep_review {
            true => {
                json!([{"url": repeat, "extension": [{"url": "authorisationExpiryDate", "valueDateTime": "2026-05-09"}]}])
            }
            false => Value::Null,
        };
        assert_eq!(
            emis[0], never_issued,
            "a repeat never issued: no count (review date kept: {keep_review})"
        );
        assert_eq!(emis[1], Value::Null, "an acute course carries no repeat information");
        assert_eq!(emis[2], Value::Null, "a course never issued has no last issue date");
        assert_eq!(
            emis[3],
            json!([{"url": last_issue, "valueDateTime": "2026-03-02T09:00:00Z"}])
        );
        for (supplier, answer) in &answers[1..] {
            assert_eq!(
                answer, emis,
                "{supplier} differs from EMIS (review date kept: {keep_review})"
            );
        }
    }
}

/// The `extension` of each MedicationRequest, then each MedicationStatement, made from a supplier's golden
/// fixture whose first course is never issued (its issue list empty, as the simulators send it; its review date
/// kept or not) and whose second is acute.
fn course_extensions(registry: &Registry, supplier: &str, keep_review: bool) -> Vec<Value> {
    // Each dialect's names for the issue list, the review date, the last issue date (EMIS only) and the course
    // type with its acute value.
    let (issues, review, last, kind, acute) = match supplier {
        "emis" => ("Issues", "ReviewDate", "LastIssueDate", "PrescriptionType", "Acute"),
        "systmone" => ("Issue", "reviewDate", "-", "courseType", "Acute"),
        _ => ("prescriptionIssues", "reviewDate", "-", "prescriptionType", "acute"),
    };
    let edit = |reply: &mut Value| {
        let courses: Vec<&mut Value> = match supplier {
            "emis" => reply["MedicalRecord"]["Medication"]
                .as_array_mut()
                .unwrap()
                .iter_mut()
                .collect(),
            "systmone" => reply["Event"]
                .as_array_mut()
                .unwrap()
                .iter_mut()
                .map(|e| &mut e["Item"][0])
                .collect(),
            _ => reply["journal"].as_array_mut().unwrap().iter_mut().collect(),
        };
        let [never_issued, acute_course, ..] = &mut courses.into_iter().collect::<Vec<_>>()[..] else {
            panic!("{supplier}: the fixture has two courses");
        };
        let never_issued = never_issued.as_object_mut().unwrap();
        // JSON dialects send an empty list and a null date; an XML element with no issues has no Issue children.
        match supplier {
            "systmone" => drop(never_issued.remove(issues)),
            _ => drop(never_issued.insert(issues.into(), json!([]))),
        }
        if never_issued.contains_key(last) {
            never_issued.insert(last.into(), Value::Null);
        }
        if !keep_review {
            never_issued.remove(review);
        }
        acute_course[kind] = json!(acute);
    };
    ["MedicationRequest", "MedicationStatement"]
        .into_iter()
        .flat_map(|resource| translate_edited_fixture(registry, supplier, resource, edit))
        .map(|resource| resource["extension"].clone())
        .collect()
}

/// Medicus's repeat dispensing (a confirmed prescription type) is UK Core's continuous repeat dispensing (its
/// extensible binding's own code, finer than FHIR's), with its repeat information.
#[test]
fn a_medicus_repeat_dispensing_course_is_continuous_with_its_issues() {
    let registry = Registry::load(&Source::Embedded).unwrap_or_else(|p| panic!("mappings: {p:?}"));
    let mut issued = 0;
    let produced = translate_edited_fixture(&registry, "medicus", "MedicationRequest", |reply| {
        reply["journal"][0]["prescriptionType"] = json!("repeat-dispensing");
        issued = reply["journal"][0]["prescriptionIssues"].as_array().map_or(0, Vec::len);
    });
    assert_eq!(
        produced[0]["courseOfTherapyType"]["coding"][0],
        json!({"system": "https://fhir.hl7.org.uk/CodeSystem/UKCore-MedicationRequestCourseOfTherapy",
               "code": "continuous-repeating-dispensing", "display": "Continuous long term (repeat dispensing)"})
    );
    assert!(issued > 0);
    assert_eq!(
        produced[0]["extension"][0]["extension"][0]["valueUnsignedInt"],
        json!(issued)
    );
}

/// The resources a supplier's golden fixture of a type gives once `edit` has changed its (first) reply.
fn translate_edited_fixture(
    registry: &Registry,
    supplier: &str,
    resource: &str,
    edit: impl FnOnce(&mut Value),
) -> Vec<Value> {
    try_translate_edited_fixture(registry, supplier, resource, edit)
        .unwrap_or_else(|e| panic!("{supplier} {resource}: {}", e.message))
}

/// An allergy that has ended carries UK Core's AllergyIntoleranceEnd on its clinical status (the extension's
/// context), not on the resource, and the same through every supplier.
#[test]
fn an_ended_allergy_says_when_on_its_clinical_status() {
    let registry = Registry::load(&Source::Embedded).unwrap_or_else(|p| panic!("mappings: {p:?}"));
    let ended = |supplier: &'static str| {
        let produced = translate_edited_fixture(&registry, supplier, "AllergyIntolerance", |reply| match supplier {
            "emis" => {
                reply["MedicalRecord"]["Allergies"][0]["ResolvedDate"] =
                    json!({"DatePart": "YearMonthDay", "Value": "2015-03-02T00:00:00"})
            }
            "systmone" => {
                let allergy = &mut reply["Event"][0]["Item"][0];
                allergy["endDate"] = json!("2015-03-02T00:00:00.0Z");
                allergy["endDateAccuracy"] = json!("day");
            }
            _ => reply["journal"][0]["resolvedDate"] = json!("2015-03-02"),
        });
        produced.into_iter().next().expect("the allergy")
    };
    let end = "https://fhir.hl7.org.uk/StructureDefinition/Extension-UKCore-AllergyIntoleranceEnd";
    let expected = json!([{"url": end, "extension": [{"url": "endDate", "valueDateTime": "2015-03-02"}]}]);
    for supplier in ["emis", "systmone", "medicus"] {
        let allergy = ended(supplier);
        assert_eq!(
            allergy["clinicalStatus"]["extension"], expected,
            "{supplier}: {allergy}"
        );
        assert!(allergy.get("extension").is_none(), "{supplier}: {allergy}");
    }
}

/// A record whose native key no FHIR id can hold is the GP system's fault: a 502, not a 500.
#[test]
fn a_native_key_too_long_for_an_id_is_a_bad_gateway() {
    let registry = Registry::load(&Source::Embedded).unwrap_or_else(|p| panic!("mappings: {p:?}"));
    let refused = try_translate_edited_fixture(&registry, "emis", "Observation", |reply| {
        reply["MedicalRecord"]["TestResults"][0]["EventGuid"] = json!("x".repeat(2_000));
    })
    .expect_err("no id holds it");
    assert_eq!(refused.status, 502, "{}", refused.message);
}

fn try_translate_edited_fixture(
    registry: &Registry,
    supplier: &str,
    resource: &str,
    edit: impl FnOnce(&mut Value),
) -> im1_fhir::fhir::FhirResult<Vec<Value>> {
    let mapping = registry.get(supplier, resource).expect("mapping");
    let native: Value =
        serde_json::from_str(&std::fs::read_to_string(case_dir(mapping).join("native.json")).unwrap()).unwrap();
    let mut reply = native["replies"][0].clone();
    edit(&mut reply);
    translate::translate_replies(
        registry,
        &IdCodec::new(ID_KEY),
        Origin {
            ods: ods(supplier),
            supplier,
        },
        mapping,
        Surface::Transaction,
        native["patient"].as_str().unwrap(),
        &[im1_fhir::mapping::node::to_native(&reply).unwrap()],
    )
    .map(|produced| produced.iter().map(as_sent).collect())
}

/// A resource as a client reads it: the JSON text the proxy writes, parsed, where no object names a member
/// twice (a parser would silently keep one of them).
fn as_sent(resource: &im1_fhir::tree::Tree) -> Value {
    use im1_fhir::mapping::node::{self, Kind, Node};
    fn names_once(value: Node, path: &str) {
        match value.kind() {
            Kind::Object => {
                let mut seen = std::collections::HashSet::new();
                for (name, member) in value.entries() {
                    assert!(seen.insert(name), "{path}.{name} is written twice");
                    names_once(member, &format!("{path}.{name}"));
                }
            }
            Kind::Array => value.items().for_each(|item| names_once(item, path)),
            _ => {}
        }
    }
    let bytes = resource.to_json_vec();
    names_once(Node::Native(&node::parse_json(&bytes).expect("parses")), "");
    serde_json::from_slice(&bytes).expect("the JSON written parses")
}
