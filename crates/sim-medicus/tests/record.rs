//! The record through the dialect: every item of patient 9000000009 found by native id and term, paging,
//! the `types=` filter, confidential items, documents, demographics.

use crate::common;
use common::*;
use im1_sim::record::{native_id, Nid, ObservationKind, ObservationValue, Supplier};
use serde_json::{json, Value};

/// Every JSON object (at any depth) whose `id` is `id`.
fn find_all<'a>(v: &'a Value, id: &str, out: &mut Vec<&'a Value>) {
    match v {
        Value::Object(m) => {
            if m.get("id").and_then(Value::as_str) == Some(id) {
                out.push(v);
            }
            m.values().for_each(|x| find_all(x, id, out));
        }
        Value::Array(a) => a.iter().for_each(|x| find_all(x, id, out)),
        _ => {}
    }
}

fn find<'a>(journal: &'a Value, nid: &Nid) -> &'a Value {
    let id = native_id(Supplier::Medicus, nid);
    let mut out = Vec::new();
    find_all(journal, &id, &mut out);
    out.first()
        .copied()
        .unwrap_or_else(|| panic!("{nid} ({id}) not in the journal"))
}

fn has_term(v: &Value, term: &str) -> bool {
    match v {
        Value::String(s) => s == term,
        Value::Object(m) => m.values().any(|x| has_term(x, term)),
        Value::Array(a) => a.iter().any(|x| has_term(x, term)),
        _ => false,
    }
}

#[tokio::test]
async fn every_item_of_9000000009_is_in_the_journal() {
    let sim = start().await;
    let record = sim.world.snapshot();
    let p = record.patient_by_nhs_number("9000000009").expect("patient").clone();
    let pid = native_id(Supplier::Medicus, &p.id);
    let base = format!("{T}/transactional-api/v1/patient/{pid}");
    let journal = Value::Array(journal_all(&sim, &base, trx, 7).await);
    let c = &p.clinical;
    for a in &c.allergies {
        let e = find(&journal, &a.meta.id);
        assert_eq!(e["type"], "allergy-intolerance");
        assert_eq!(e["code"], json!({"code": a.code.code, "display": a.code.display}));
        assert_eq!(e["onsetDate"], json!(a.onset.map(|d| d.to_string())));
        assert_eq!(e["reactions"].as_array().map(Vec::len), Some(a.reactions.len()));
    }
    for x in &c.problems {
        let e = find(&journal, &x.meta.id);
        assert_eq!(e["type"], "problem");
        assert_eq!(e["code"]["display"], x.code.display.as_str());
        assert_eq!(e["startDate"], x.onset.to_string());
    }
    for m in &c.medications {
        let e = find(&journal, &m.meta.id);
        assert_eq!(e["type"], "prescription");
        assert_eq!(e["product"], json!({"code": m.code.code, "display": m.code.display}));
        assert_eq!(e["dosageInstructions"], m.dosage.as_str());
        assert_eq!(e["quantity"], json!({"value": m.quantity, "unit": m.quantity_unit}));
        for i in &m.issues {
            let found = find(&journal, &i.id);
            assert_eq!(found["quantity"]["value"], i.quantity);
        }
    }
    for o in &c.observations {
        let e = find(&journal, &o.meta.id);
        assert_eq!(e["type"], "observation");
        assert_eq!(e["code"]["display"], o.code.display.as_str(), "{}", o.meta.id);
        assert_eq!(e["effectiveDate"], o.effective.to_string());
        match &o.value {
            ObservationValue::Quantity(q) => {
                assert_eq!(e["value"]["quantity"], json!(q.value));
                assert_eq!(e["value"]["unit"], q.unit.as_str());
                assert_eq!(e["value"]["decimalPlaces"], q.decimals);
            }
            ObservationValue::Text(t) => assert_eq!(e["value"]["text"], t.as_str()),
            ObservationValue::Components(parts) => {
                let comps = e["components"].as_array().expect("components");
                assert_eq!(comps.len(), parts.len());
                for (got, want) in comps.iter().zip(parts) {
                    assert_eq!(got["code"]["display"], want.code.display.as_str());
                    assert_eq!(got["value"]["quantity"], json!(want.value.value));
                }
            }
            ObservationValue::None => assert!(e["value"].is_null()),
        }
        if let Some((low, high)) = o.range {
            assert_eq!(e["referenceRange"], json!({"low": low, "high": high}));
        }
        if o.kind == ObservationKind::Laboratory {
            // Reported inside an investigation report.
            let report_id = im1_sim::record::native_sub_id(Supplier::Medicus, &o.meta.id, "report");
            let mut reports = Vec::new();
            find_all(&journal, &report_id, &mut reports);
            assert_eq!(reports[0]["type"], "investigation-report");
        }
    }
    for i in &c.immunisations {
        let e = find(&journal, &i.meta.id);
        assert_eq!(e["vaccinationProcedure"]["display"], i.procedure.display.as_str());
        assert_eq!(e["batchNumber"], json!(i.batch));
        assert_eq!(e["status"], if i.given { "given" } else { "not-given" });
        assert_eq!(e["notGivenReason"], json!(i.not_given_reason));
    }
    for con in &c.consultations {
        let e = find(&journal, &con.meta.id);
        assert_eq!(e["type"], "encounter");
        assert_eq!(e["encounterType"]["display"], con.kind.display.as_str());
        let headings = &e["consultationTopics"][0]["headings"];
        for (s, h) in con.sections.iter().zip(headings.as_array().expect("headings")) {
            assert_eq!(h["heading"], s.heading.as_str());
            for item in &s.items {
                let mut out = Vec::new();
                find_all(h, &native_id(Supplier::Medicus, item), &mut out);
                assert!(!out.is_empty(), "{item} nested under its heading");
            }
        }
    }
    for d in &c.documents {
        let e = find(&journal, &d.meta.id);
        assert_eq!(e["documentType"]["display"], d.kind.display.as_str());
        assert_eq!(e["title"], d.title.as_str());
        assert_eq!(e["file"]["mimeType"], d.mime_type.as_str());
        assert_eq!(e["file"]["sizeBytes"], d.content.len());
        let url = e["file"]["url"].as_str().expect("url");
        let r = get(&sim, url, &trx()).await;
        assert_eq!(r.status, 200);
        assert_eq!(r.headers["content-type"], d.mime_type.as_str());
        assert_eq!(r.body.as_ref(), d.content.as_slice());
    }
    assert!(has_term(&journal, &c.allergies[0].code.display));

    // The patient-facing journal shows the same items (none is confidential for this patient).
    let (sub, pid2) = link(&sim, "9000000009").await;
    assert_eq!(pid, pid2);
    let pfs_journal = journal_all(&sim, &format!("{T}/pfs-api/v1/patient/{pid}"), || pfs(&sub), 50).await;
    let trx_journal = journal.as_array().expect("array");
    assert_eq!(pfs_journal.len(), trx_journal.len());
    // A PFS document file url points at the PFS surface and downloads.
    let doc = pfs_journal
        .iter()
        .find(|e| e["type"] == "care-record-document")
        .expect("doc");
    let url = doc["file"]["url"].as_str().expect("url");
    assert!(url.starts_with("/medicus/y90003/pfs-api/v1/patient/"));
    assert_eq!(get(&sim, url, &pfs(&sub)).await.status, 200);
}

#[tokio::test]
async fn journal_pages_filters_and_dates() {
    let sim = start().await;
    let pid = creds(&sim, "9000000009").patient_id;
    let base = format!("{T}/transactional-api/v1/patient/{pid}");
    let all = journal_all(&sim, &base, trx, 200).await;
    let paged = journal_all(&sim, &base, trx, 3).await;
    assert_eq!(all, paged, "paging neither repeats nor misses");
    // Newest first.
    let dates: Vec<&str> = all.iter().filter_map(|e| e["journalEntryDate"].as_str()).collect();
    assert!(dates.windows(2).all(|w| w[0] >= w[1]));
    assert!(dates.iter().all(|d| d.len() == 20 && d.ends_with('Z')));
    // Reduced-precision dates are kept.
    let allergy = all
        .iter()
        .find(|e| e["type"] == "allergy-intolerance")
        .expect("allergy");
    assert_eq!(allergy["onsetDate"], "2009-06");

    let r = get(&sim, &format!("{base}/journal?types=problem,immunisation"), &trx()).await;
    let v = r.json();
    let kinds: Vec<&str> = v["journal"]
        .as_array()
        .expect("list")
        .iter()
        .filter_map(|e| e["type"].as_str())
        .collect();
    assert!(!kinds.is_empty() && kinds.iter().all(|k| *k == "problem" || *k == "immunisation"));

    let r = get(&sim, &format!("{base}/journal?types=nonsense"), &trx()).await;
    assert_eq!((r.status, r.error_code().as_str()), (400, "INVALID_REQUEST"));
    let r = get(&sim, &format!("{base}/journal?fromDate=2025-13-01"), &trx()).await;
    assert_eq!((r.status, r.error_code().as_str()), (400, "INVALID_DATE"));
    let r = get(
        &sim,
        &format!("{base}/journal?fromDate=2025-02-01&untilDate=2025-01-01"),
        &trx(),
    )
    .await;
    assert_eq!((r.status, r.error_code().as_str()), (400, "INVALID_DATE_RANGE"));
    let r = get(&sim, &format!("{base}/journal?cursor=bogus"), &trx()).await;
    assert_eq!((r.status, r.error_code().as_str()), (400, "INVALID_CURSOR"));
    let r = get(
        &sim,
        &format!("{base}/journal?fromDate=2024-01-01&untilDate=2024-12-31"),
        &trx(),
    )
    .await;
    let v = r.json();
    assert!(v["journal"]
        .as_array()
        .expect("list")
        .iter()
        .all(|e| e["journalEntryDate"].as_str().is_some_and(|d| d.starts_with("2024"))));
    let r = get(
        &sim,
        &format!("{T}/transactional-api/v1/patient/00000000-0000-4000-8000-000000000000/journal"),
        &trx(),
    )
    .await;
    assert_eq!((r.status, r.error_code().as_str()), (404, "PATIENT_NOT_FOUND"));
}

#[tokio::test]
async fn confidential_items_are_on_neither_journal() {
    let sim = start().await;
    let (sub, pid) = link(&sim, "9000374286").await;
    let record = sim.world.snapshot();
    let p = record.patient_by_nhs_number("9000374286").expect("patient");
    let hidden: Vec<String> = p
        .clinical
        .problems
        .iter()
        .filter(|x| x.meta.confidential)
        .map(|x| native_id(Supplier::Medicus, &x.meta.id))
        .collect();
    assert!(!hidden.is_empty());
    let trx_j = Value::Array(journal_all(&sim, &format!("{T}/transactional-api/v1/patient/{pid}"), trx, 50).await);
    let pfs_j = Value::Array(journal_all(&sim, &format!("{T}/pfs-api/v1/patient/{pid}"), || pfs(&sub), 50).await);
    // The Transactional journal leaves out items confidential from third parties (confirmed), as the patient's
    // own does.
    for id in &hidden {
        let (mut a, mut b) = (Vec::new(), Vec::new());
        find_all(&trx_j, id, &mut a);
        find_all(&pfs_j, id, &mut b);
        assert!(a.is_empty(), "{id} left out of the Transactional journal");
        assert!(b.is_empty(), "{id} hidden from the patient");
    }
    assert!(!trx_j.as_array().expect("journal").is_empty());
    let r = get(&sim, &format!("{T}/pfs-api/v1/patient/{pid}/prescriptions"), &pfs(&sub)).await;
    assert!(r.json()["prescriptions"]
        .as_array()
        .expect("list")
        .iter()
        .all(|m| m["confidential"] == false));
}

#[tokio::test]
async fn demographics_on_both_surfaces() {
    let sim = start().await;
    let r = get(
        &sim,
        &format!("{T}/transactional-api/v1/patient/find?query=9000000009"),
        &trx(),
    )
    .await;
    let v = r.json();
    let hit = &v["searchResults"][0];
    assert_eq!(hit["name"], "Ms Alex TESTER");
    assert_eq!(hit["dateOfBirth"], "1985-04-12");
    assert_eq!(hit["genderIdentity"], "Female");
    assert_eq!(hit["age"], "39");
    assert_eq!(hit["homeAddress"]["line1"], "1 Test Lane");
    assert_eq!(hit["homeAddress"]["postalCode"], "LS1 1AA");
    assert_eq!(hit["title"], "Ms");
    assert_eq!(hit["givenNames"], json!(["Alex"]));
    assert_eq!(hit["familyName"], "Tester");
    assert_eq!(hit["previousNames"][0]["familyName"], "Sample");
    assert_eq!(
        hit["telecom"][2],
        json!({"system": "email", "value": "alex@example.org", "use": null})
    );
    assert_eq!(hit["ethnicity"]["code"], "A");
    assert_eq!(hit["registration"]["organisationOdsCode"], "Y90003");
    assert!(hit["registration"]["usualGp"]["name"].is_string());
    let id = hit["id"].as_str().expect("id");
    let r = get(&sim, &format!("{T}/transactional-api/v1/patient/{id}"), &trx()).await;
    assert_eq!(&r.json(), hit);
    // By date of birth as DD.MM.YYYY and by name part.
    let r = get(
        &sim,
        &format!("{T}/transactional-api/v1/patient/find?query=12.04.1985"),
        &trx(),
    )
    .await;
    assert!(r.json()["searchResults"]
        .as_array()
        .expect("list")
        .iter()
        .any(|p| p["id"] == id));
    let r = get(
        &sim,
        &format!("{T}/transactional-api/v1/patient/find?query=teSt"),
        &trx(),
    )
    .await;
    assert!(r.json()["searchResults"]
        .as_array()
        .expect("list")
        .iter()
        .any(|p| p["id"] == id));
    // The deceased patient is inactive: only with includeInactive=true, with the date of death.
    let r = get(
        &sim,
        &format!("{T}/transactional-api/v1/patient/find?query=9008615932"),
        &trx(),
    )
    .await;
    assert_eq!(r.json()["searchResults"], json!([]));
    let r = get(
        &sim,
        &format!("{T}/transactional-api/v1/patient/find?query=9008615932&includeInactive=true"),
        &trx(),
    )
    .await;
    assert_eq!(r.json()["searchResults"][0]["deceasedDateTime"], "2023-12-10T13:45:00Z");
    let r = get(&sim, &format!("{T}/transactional-api/v1/practitioners"), &trx()).await;
    let staff = r.json();
    assert!(staff["practitioners"].as_array().is_some_and(|l| !l.is_empty()));
    assert!(staff["practitioners"][0]["professionalRegistrationNumber"].is_string());
}

#[tokio::test]
async fn confidential_documents_and_file_errors() {
    let sim = start().await;
    let (sub, pid) = link(&sim, "9001110096").await;
    let record = sim.world.snapshot();
    let p = record.patient_by_nhs_number("9001110096").expect("patient");
    let doc = p
        .clinical
        .documents
        .iter()
        .find(|d| d.meta.confidential)
        .expect("confidential doc");
    let id = native_id(Supplier::Medicus, &doc.meta.id);
    let file = im1_sim::record::native_sub_id(Supplier::Medicus, &doc.meta.id, "file");
    let tail = format!("file/care-record-document/{id}/{file}");
    // Confidential from third parties: on neither API (the Transactional journal leaves such items out,
    // confirmed, and its documents with them).
    let r = get(&sim, &format!("{T}/transactional-api/v1/patient/{pid}/{tail}"), &trx()).await;
    assert_eq!((r.status, r.error_code().as_str()), (404, "FILE_NOT_FOUND"));
    let r = get(&sim, &format!("{T}/pfs-api/v1/patient/{pid}/{tail}"), &pfs(&sub)).await;
    assert_eq!((r.status, r.error_code().as_str()), (404, "FILE_NOT_FOUND"));
    let r = get(
        &sim,
        &format!("{T}/pfs-api/v1/patient/{pid}/file/letter/{id}/{file}"),
        &pfs(&sub),
    )
    .await;
    assert_eq!(
        (r.status, r.error_code().as_str()),
        (404, "INVALID_CARE_RECORD_ELEMENT_TYPE")
    );
}

#[tokio::test]
async fn code_table_lists_every_term_the_record_uses() {
    let sim = start().await;
    let table = get(&sim, &format!("{T}/transactional-api/v1/code-table"), &trx())
        .await
        .json();
    let codes = table["codes"].as_array().cloned().expect("codes");
    for c in sim.world.snapshot().concepts() {
        assert!(
            codes
                .iter()
                .any(|x| x["code"] == c.code.as_str() && x["display"] == c.display.as_str()),
            "{} {}",
            c.code,
            c.display
        );
    }
}
