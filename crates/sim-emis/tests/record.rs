//! Demographics and every record section, on the patient (PFS) and clinician (Partner) surfaces, checked
//! against the generator's record for patient 9000000009.

use crate::common;

use common::*;
use im1_sim::record::{native_id, CodeIdTable, ObservationValue, Supplier};
use serde_json::Value;

fn find<'a>(list: &'a Value, key: &str, id: &str) -> Option<&'a Value> {
    list.as_array()?
        .iter()
        .find(|x| key.split('.').try_fold(*x, |v, k| v.get(k)).and_then(Value::as_str) == Some(id))
}

async fn sections(sim: &Sim, l: &Login, partner: Option<&str>) -> Vec<(String, Value)> {
    let mut out = Vec::new();
    for item in [
        "Allergies",
        "Medication",
        "Problems",
        "TestResults",
        "Immunisations",
        "Consultations",
        "Documents",
    ] {
        let r = match partner {
            Some(tok) => {
                sim.partner(
                    tok,
                    "GET",
                    &format!("patients/{}/record?itemType={item}", l.patient_guid),
                    None,
                )
                .await
            }
            None => sim.get(l, "record", &format!("&itemType={item}")).await,
        };
        assert_eq!(r.status, 200, "{item}: {}", r.text());
        let v = r.json();
        assert_eq!(v["FilterDetails"]["ItemType"], item);
        assert_eq!(v["MedicalRecord"]["PatientGuid"], l.patient_guid.as_str());
        out.push((item.to_string(), v["MedicalRecord"][item].clone()));
    }
    out
}

#[tokio::test]
async fn every_item_of_patient_9000000009_is_in_the_replies() {
    let sim = start(unthrottled()).await;
    walk(&sim, NHS).await;
}

#[tokio::test]
async fn every_item_of_every_living_patient_is_in_the_replies() {
    let sim = start(unthrottled()).await;
    let record = sim.world.snapshot();
    for p in record.patients.iter().filter(|p| p.deceased_at.is_none()) {
        walk(&sim, &p.nhs_number).await;
    }
}

async fn walk(sim: &Sim, nhs: &str) {
    let l = sim.login(nhs).await;
    let tok = sim.partner_token().await;
    let record = sim.world.snapshot();
    let p = record.patient_by_nhs_number(nhs).expect("patient").clone();
    let codes = CodeIdTable::get();
    let g = |id: &im1_sim::record::Nid| native_id(Supplier::Emis, id);
    for (surface, list) in [
        ("pfs", sections(sim, &l, None).await),
        ("partner", sections(sim, &l, Some(&tok)).await),
    ] {
        let s = |name: &str| list.iter().find(|(n, _)| n == name).map(|(_, v)| v).expect("section");
        let shown = |confidential: bool| surface == "partner" || !confidential;
        let c = &p.clinical;
        for a in &c.allergies {
            let hit = find(s("Allergies"), "EventGuid", &g(&a.meta.id));
            assert_eq!(
                hit.is_some(),
                shown(a.meta.confidential),
                "{surface} allergy {}",
                a.meta.id
            );
            if let Some(h) = hit {
                assert_eq!(h["Term"], a.code.display.as_str());
                assert_eq!(h["CodeId"], codes.code_id(&a.code).expect("code"));
                assert_eq!(h["Reactions"].as_array().map(Vec::len), Some(a.reactions.len()));
            }
        }
        for x in &c.problems {
            let hit = find(s("Problems"), "Observation.EventGuid", &g(&x.meta.id));
            assert_eq!(
                hit.is_some(),
                shown(x.meta.confidential),
                "{surface} problem {}",
                x.meta.id
            );
            if let Some(h) = hit {
                assert_eq!(h["Observation"]["Term"], x.code.display.as_str());
                assert_eq!(h["Status"], format!("{:?}", x.status));
            }
        }
        for x in &c.medications {
            let hit = find(s("Medication"), "EventGuid", &g(&x.meta.id));
            assert_eq!(hit.is_some(), shown(x.meta.confidential), "{surface} med {}", x.meta.id);
            if let Some(h) = hit {
                assert_eq!(h["Term"], x.code.display.as_str());
                assert_eq!(h["DrugName"], x.code.display.as_str());
                assert_eq!(h["Dosage"], x.dosage.as_str());
                for i in &x.issues {
                    assert!(find(&h["Issues"], "IssueGuid", &g(&i.id)).is_some(), "issue {}", i.id);
                }
            }
        }
        for o in &c.observations {
            let hit = find(s("TestResults"), "EventGuid", &g(&o.meta.id));
            assert_eq!(hit.is_some(), shown(o.meta.confidential), "{surface} obs {}", o.meta.id);
            let Some(h) = hit else { continue };
            assert_eq!(h["Term"], o.code.display.as_str());
            match &o.value {
                ObservationValue::Quantity(q) => {
                    assert_eq!(h["NumericValueText"], q.value_text());
                    assert_eq!(h["NumericUnits"], q.unit.as_str());
                }
                ObservationValue::Text(t) => assert_eq!(h["TextValue"], t.as_str()),
                ObservationValue::Components(parts) => {
                    for (part, got) in parts.iter().zip(h["Components"].as_array().expect("components")) {
                        assert_eq!(got["Term"], part.code.display.as_str());
                        assert_eq!(got["NumericValueText"], part.value.value_text());
                    }
                }
                ObservationValue::None => assert_eq!(h["ObservationType"], "Code"),
            }
            if let Some((lo, hi)) = o.range {
                assert_eq!(h["Range"]["Low"].as_f64(), lo);
                assert_eq!(h["Range"]["High"].as_f64(), hi);
            }
        }
        for x in &c.immunisations {
            let hit = find(s("Immunisations"), "EventGuid", &g(&x.meta.id));
            assert_eq!(hit.is_some(), shown(x.meta.confidential), "{surface} imm {}", x.meta.id);
            if let Some(h) = hit {
                assert_eq!(h["Term"], x.procedure.display.as_str());
                assert_eq!(h["Given"], x.given);
                assert_eq!(h["BatchNumber"].as_str(), x.batch.as_deref());
            }
        }
        for x in &c.consultations {
            let hit = find(s("Consultations"), "EventGuid", &g(&x.meta.id));
            assert_eq!(hit.is_some(), shown(x.meta.confidential), "{surface} con {}", x.meta.id);
            if let Some(h) = hit {
                assert_eq!(h["Term"], x.kind.display.as_str());
                assert_eq!(h["Location"], x.location.as_str());
                for (sec, got) in x.sections.iter().zip(h["Sections"].as_array().expect("sections")) {
                    assert_eq!(got["Header"], sec.heading.as_str());
                    if surface == "partner" {
                        let ids: Vec<String> = sec.items.iter().map(g).collect();
                        assert_eq!(got["Observations"], serde_json::json!(ids));
                    }
                }
            }
        }
        for x in &c.documents {
            let hit = find(s("Documents"), "DocumentGuid", &g(&x.meta.id));
            assert_eq!(hit.is_some(), shown(x.meta.confidential), "{surface} doc {}", x.meta.id);
            let Some(h) = hit else { continue };
            assert_eq!(h["Observation"]["Term"], x.kind.display.as_str());
            assert_eq!(h["Size"], x.content.len());
            assert_eq!(h["ContentType"], x.mime_type.as_str());
            let r = match surface {
                "pfs" => sim.get(&l, &format!("documents/{}", g(&x.meta.id)), "").await,
                _ => {
                    sim.partner(
                        &tok,
                        "GET",
                        &format!("patients/{}/documents/{}", l.patient_guid, g(&x.meta.id)),
                        None,
                    )
                    .await
                }
            };
            assert_eq!(r.status, 200);
            assert_eq!(r.body.as_ref(), x.content.as_slice());
            assert_eq!(r.headers["content-type"], x.mime_type.as_str());
        }
    }
}

#[tokio::test]
async fn demographics_carry_every_field_on_both_surfaces() {
    let sim = start(unthrottled()).await;
    let l = sim.login(NHS).await;
    let pfs = sim.get(&l, "demographics", "").await;
    assert_eq!(pfs.status, 200);
    let d = pfs.json();
    assert_eq!(d["Title"], "Ms");
    assert_eq!(d["FirstName"], "Alex");
    assert_eq!(d["Surname"], "Tester");
    assert_eq!(d["DateOfBirth"], "1985-04-12T00:00:00");
    assert_eq!(d["Sex"], "Female");
    assert_eq!(d["PatientIdentifiers"][0]["IdentifierValue"], NHS);
    assert_eq!(d["PatientIdentifiers"][0]["IdentifierType"], "NhsNumber");
    assert_eq!(d["ContactDetails"]["TelephoneNumber"], "01632 960001");
    assert_eq!(d["ContactDetails"]["MobileNumber"], "07700 900001");
    assert_eq!(d["ContactDetails"]["EmailAddress"], "alex@example.org");
    assert_eq!(d["Address"]["Postcode"], "LS1 1AA");
    assert_eq!(d["PatientGuid"], l.patient_guid.as_str());
    assert_eq!(d["PreviousNames"][0]["Surname"], "Sample");
    assert_eq!(d["Ethnicity"]["Code"], "A");
    assert_eq!(d["Registration"]["NationalPracticeCode"], "Y90001");
    assert!(d["UsualGpUserInRoleGuid"].is_string());
    assert!(d.get("DateOfDeath").is_some());

    let tok = sim.partner_token().await;
    let by_nhs = sim
        .partner(&tok, "GET", &format!("patients?nhsNumber={NHS}"), None)
        .await;
    assert_eq!(by_nhs.status, 200);
    assert_eq!(
        by_nhs.json()["Patients"][0],
        d,
        "the lookup carries the same demographics"
    );
    let by_guid = sim
        .partner(&tok, "GET", &format!("patients/{}", l.patient_guid), None)
        .await;
    assert_eq!(by_guid.json(), d);
    let none = sim.partner(&tok, "GET", "patients?nhsNumber=9999999999", None).await;
    assert_eq!(none.json()["Patients"], serde_json::json!([]));
    let unknown = sim
        .partner(&tok, "GET", "patients/00000000-0000-4000-8000-000000000000", None)
        .await;
    assert_eq!(unknown.status, 404);
    let missing = sim.partner(&tok, "GET", "patients", None).await;
    assert_eq!(missing.status, 400);
    assert!(missing.json()["ModelState"]["nhsNumber"].is_array());
}

#[tokio::test]
async fn confidential_items_are_withheld_from_the_patient_only() {
    let world = options().world();
    let record = world.snapshot();
    let Some(p) = record
        .patients
        .iter()
        .find(|p| p.deceased_at.is_none() && p.clinical.problems.iter().any(|o| o.meta.confidential))
    else {
        panic!("the seed-1 record has confidential problems");
    };
    let nhs = p.nhs_number.clone();
    let secret = p.clinical.problems.iter().find(|o| o.meta.confidential).expect("item");
    let sim = start_with(world, unthrottled()).await;
    let l = sim.login(&nhs).await;
    let id = native_id(Supplier::Emis, &secret.meta.id);
    let pfs = sim.get(&l, "record", "&itemType=Problems").await.json();
    assert!(find(&pfs["MedicalRecord"]["Problems"], "Observation.EventGuid", &id).is_none());
    let tok = sim.partner_token().await;
    let partner = sim
        .partner(
            &tok,
            "GET",
            &format!("patients/{}/record?itemType=Problems", l.patient_guid),
            None,
        )
        .await
        .json();
    let hit = find(&partner["MedicalRecord"]["Problems"], "Observation.EventGuid", &id).expect("clinician sees it");
    assert_eq!(hit["Observation"]["IsConfidential"], true);
}

#[tokio::test]
async fn record_requires_a_valid_item_type() {
    let sim = start(unthrottled()).await;
    let l = sim.login(NHS).await;
    let r = sim.get(&l, "record", "").await;
    assert_eq!(r.status, 400);
    assert!(r.json()["ModelState"]["itemType"].is_array());
    let r = sim.get(&l, "record", "&itemType=Nonsense").await;
    assert_eq!(r.status, 400);
}

#[tokio::test]
async fn code_tables_answer_by_code_id() {
    let sim = start(unthrottled()).await;
    let table = CodeIdTable::get();
    let clinical = table
        .rows()
        .iter()
        .find(|r| r.snomed_concept_id.is_some())
        .expect("row");
    let r = sim
        .req(
            "GET",
            &format!("/emis/sim/codes?codeId={}", clinical.code_id),
            &[],
            None,
        )
        .await;
    assert_eq!(r.status, 200);
    let v = r.json();
    assert_eq!(v["Term"], clinical.term.as_str());
    assert_eq!(v["SnomedCTConceptId"].as_str(), clinical.snomed_concept_id.as_deref());
    let drug = table.rows().iter().find(|r| r.dmd_product_id.is_some()).expect("row");
    let r = sim
        .req(
            "GET",
            &format!("/emis/sim/drugcodes?codeId={}", drug.code_id),
            &[],
            None,
        )
        .await;
    assert_eq!(r.json()["DmdProductCodeId"].as_str(), drug.dmd_product_id.as_deref());
    let wrong = sim
        .req(
            "GET",
            &format!("/emis/sim/drugcodes?codeId={}", clinical.code_id),
            &[],
            None,
        )
        .await;
    assert_eq!(wrong.status, 404);
    let all = sim.req("GET", "/emis/sim/codes", &[], None).await.json();
    assert!(all["Codes"].as_array().is_some_and(|a| !a.is_empty()));
}
