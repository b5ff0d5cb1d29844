//! Clinician writes on the Partner surface, visible in the next reads on both surfaces and in the changes
//! feed; consultations are all or nothing.

use crate::common;

use base64::Engine;
use common::*;
use im1_sim::record::CodeIdTable;
use serde_json::{json, Value};

fn code(snomed: &str) -> i64 {
    CodeIdTable::get()
        .by_concept_code(snomed)
        .map(|r| r.code_id)
        .expect("code in table")
}

fn ids(list: &Value, key: &str) -> Vec<String> {
    list.as_array()
        .into_iter()
        .flatten()
        .filter_map(|x| key.split('.').try_fold(x, |v, k| v.get(k)).and_then(Value::as_str))
        .map(str::to_string)
        .collect()
}

#[tokio::test]
async fn writes_show_in_reads_and_in_the_changes_feed() {
    let sim = start(unthrottled()).await;
    let l = sim.login(NHS).await;
    let tok = sim.partner_token().await;
    let pg = l.patient_guid.clone();
    let since = "2025-03-04T08:00:00+00:00";
    let before = sim
        .partner(&tok, "POST", "GetChangedPatients", Some(json!({"Since": since})))
        .await
        .json();
    assert!(!before["Changes"]
        .as_array()
        .expect("changes")
        .iter()
        .any(|c| c["PatientGuid"] == pg.as_str()));

    // Read first, so a cached section must be rebuilt after the write.
    let first = sim.get(&l, "record", "&itemType=TestResults").await.json();
    let count = first["MedicalRecord"]["TestResults"].as_array().map_or(0, Vec::len);
    let obs = sim
        .partner(
            &tok,
            "POST",
            &format!("patients/{pg}/observations"),
            Some(json!({"CodeId": code("27113001"), "Term": "Body weight",
                "EffectiveDate": {"DatePart": "YearMonthDay", "Value": "2025-03-04T00:00:00"},
                "NumericValue": 70.50, "NumericUnits": "kg", "AssociatedText": [{"Text": "Weighed in clinic"}]})),
        )
        .await;
    assert_eq!(obs.status, 201, "{}", obs.text());
    let obs_id = obs.json()["EventGuid"].as_str().expect("guid").to_string();
    let pfs = sim.get(&l, "record", "&itemType=TestResults").await.json();
    assert_eq!(
        pfs["MedicalRecord"]["TestResults"].as_array().map_or(0, Vec::len),
        count + 1
    );
    let item = pfs["MedicalRecord"]["TestResults"]
        .as_array()
        .expect("list")
        .iter()
        .find(|x| x["EventGuid"] == obs_id.as_str())
        .expect("new observation in the PFS read")
        .clone();
    assert_eq!(item["Term"], "Body weight");
    assert_eq!(item["NumericUnits"], "kg");
    assert_eq!(item["AssociatedText"][0]["Text"], "Weighed in clinic");

    let allergy = sim
        .partner(
            &tok,
            "POST",
            &format!("patients/{pg}/allergies"),
            Some(json!({"CodeId": code("91936005"), "Term": "Allergy to penicillin",
                "EffectiveDate": {"DatePart": "Year", "Value": "2020-01-01T00:00:00"},
                "Reactions": [{"CodeId": code("247472004"), "Severity": "Mild"}]})),
        )
        .await;
    assert_eq!(allergy.status, 201, "{}", allergy.text());
    let a_id = allergy.json()["EventGuid"].as_str().expect("guid").to_string();
    let list = sim.get(&l, "record", "&itemType=Allergies").await.json();
    let a = list["MedicalRecord"]["Allergies"]
        .as_array()
        .expect("list")
        .iter()
        .find(|x| x["EventGuid"] == a_id.as_str())
        .cloned();
    let a = a.expect("allergy listed");
    assert_eq!(a["EffectiveDate"]["DatePart"], "Year");
    assert_eq!(a["Reactions"][0]["Severity"], "Mild");

    let problem = sim
        .partner(
            &tok,
            "POST",
            &format!("patients/{pg}/problems"),
            Some(
                json!({"CodeId": code("59621000"), "Term": "Essential hypertension", "Status": "Active",
                "Significance": "Major", "EffectiveDate": {"DatePart": "YearMonth", "Value": "2025-02-01T00:00:00"}}),
            ),
        )
        .await;
    assert_eq!(problem.status, 201, "{}", problem.text());
    let p_id = problem.json()["EventGuid"].as_str().expect("guid").to_string();
    let partner = sim
        .partner(&tok, "GET", &format!("patients/{pg}/record?itemType=Problems"), None)
        .await
        .json();
    assert!(ids(&partner["MedicalRecord"]["Problems"], "Observation.EventGuid").contains(&p_id));

    let after = sim
        .partner(&tok, "POST", "GetChangedPatients", Some(json!({"Since": since})))
        .await
        .json();
    let mine: Vec<&Value> = after["Changes"]
        .as_array()
        .expect("changes")
        .iter()
        .filter(|c| c["PatientGuid"] == pg.as_str())
        .collect();
    assert_eq!(mine.len(), 1, "one row per patient and type: {after}");
    assert_eq!(mine[0]["ChangeType"], "Clinical");
    assert_eq!(mine[0]["NhsNumber"], NHS);
    let mark = after["HighWaterMark"].as_str().expect("mark").to_string();
    let none = sim
        .partner(&tok, "POST", "GetChangedPatients", Some(json!({"Since": mark})))
        .await
        .json();
    assert_eq!(none["Changes"], json!([]), "nothing after the high-water mark");
    assert_eq!(none["HighWaterMark"], mark.as_str());
    let stats = sim.handle.stats().snapshot();
    let json_stats = serde_json::to_value(&stats).expect("stats");
    assert!(json_stats.to_string().contains("observations"));
}

#[tokio::test]
async fn consultations_are_all_or_nothing() {
    let sim = start(unthrottled()).await;
    let l = sim.login(NHS).await;
    let tok = sim.partner_token().await;
    let pg = l.patient_guid.clone();
    let users = sim.get(&l, "record", "&itemType=Consultations").await.json();
    let before = users["MedicalRecord"]["Consultations"].as_array().map_or(0, Vec::len);
    let gp = users["MedicalRecord"]["Users"][0]["UserInRoleGuid"].clone();
    let weight = json!({"CodeId": code("27113001"), "Term": "Body weight",
        "EffectiveDate": {"DatePart": "YearMonthDay", "Value": "2025-03-04T00:00:00"}, "NumericValue": 71, "NumericUnits": "kg"});
    let bad = json!({"CodeId": 1, "Term": "No such code",
        "EffectiveDate": {"DatePart": "YearMonthDay", "Value": "2025-03-04T00:00:00"}});
    let body = |items: Vec<Value>| {
        json!({"CodeId": code("185202000"), "Term": "Seen in GP's surgery",
            "EffectiveDate": {"DatePart": "YearMonthDay", "Value": "2025-03-04T00:00:00"},
            "ConsultantUserInRoleGuid": gp, "Location": "Main surgery",
            "Sections": [{"Header": "Examination", "Items": items}]})
    };
    let r = sim
        .partner(
            &tok,
            "POST",
            &format!("patients/{pg}/consultations"),
            Some(body(vec![weight.clone(), bad])),
        )
        .await;
    assert_eq!(r.status, 400, "{}", r.text());
    assert!(
        r.json()["ModelState"]["Sections[0].Items[1].CodeId"].is_array(),
        "{}",
        r.text()
    );
    let mid = sim.get(&l, "record", "&itemType=Consultations").await.json();
    assert_eq!(
        mid["MedicalRecord"]["Consultations"].as_array().map_or(0, Vec::len),
        before,
        "nothing filed"
    );
    // A code of the wrong kind is refused by the world with the item named too.
    let wrong_kind = json!({"CodeId": code("185202000"), "Term": "Seen in GP's surgery",
        "EffectiveDate": {"DatePart": "YearMonthDay", "Value": "2025-03-04T00:00:00"}});
    let r = sim
        .partner(
            &tok,
            "POST",
            &format!("patients/{pg}/consultations"),
            Some(body(vec![weight.clone(), wrong_kind])),
        )
        .await;
    assert_eq!(r.status, 400, "{}", r.text());
    assert!(
        r.json()["ModelState"]["Sections[0].Items[1]"].is_array(),
        "{}",
        r.text()
    );

    let ok = sim
        .partner(
            &tok,
            "POST",
            &format!("patients/{pg}/consultations"),
            Some(body(vec![weight])),
        )
        .await;
    assert_eq!(ok.status, 201, "{}", ok.text());
    let v = ok.json();
    let con_id = v["EventGuid"].as_str().expect("guid").to_string();
    let item_id = v["ItemGuids"][0].as_str().expect("item").to_string();
    let after = sim.get(&l, "record", "&itemType=Consultations").await.json();
    let con = after["MedicalRecord"]["Consultations"]
        .as_array()
        .expect("list")
        .iter()
        .find(|c| c["EventGuid"] == con_id.as_str())
        .expect("consultation filed")
        .clone();
    assert_eq!(con["Sections"][0]["Header"], "Examination");
    assert_eq!(con["Sections"][0]["Observations"][0], item_id.as_str());
    let obs = sim.get(&l, "record", "&itemType=TestResults").await.json();
    let item = obs["MedicalRecord"]["TestResults"]
        .as_array()
        .expect("list")
        .iter()
        .find(|x| x["EventGuid"] == item_id.as_str())
        .cloned();
    assert_eq!(item.expect("item filed")["ConsultationGuid"], con_id.as_str());
}

#[tokio::test]
async fn documents_are_filed_and_served() {
    let sim = start(unthrottled()).await;
    let l = sim.login(NHS).await;
    let tok = sim.partner_token().await;
    let pg = l.patient_guid.clone();
    let content = b"Dear Doctor, thank you.".to_vec();
    let b64 = base64::engine::general_purpose::STANDARD.encode(&content);
    let r = sim
        .partner(
            &tok,
            "POST",
            &format!("patients/{pg}/documents"),
            Some(json!({"CodeId": code("823691000000103"), "Term": "Clinical letter",
                "EffectiveDate": {"DatePart": "YearMonthDay", "Value": "2025-03-04T00:00:00"},
                "FileName": "letter.txt", "Extension": "txt", "ContentBase64": b64})),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text());
    let doc = r.json()["DocumentGuid"].as_str().expect("guid").to_string();
    let list = sim.get(&l, "record", "&itemType=Documents").await.json();
    let d = list["MedicalRecord"]["Documents"]
        .as_array()
        .expect("list")
        .iter()
        .find(|d| d["DocumentGuid"] == doc.as_str())
        .cloned();
    let d = d.expect("listed");
    assert_eq!(d["Size"], content.len());
    assert_eq!(d["Extension"], "txt");
    assert_eq!(d["Title"], "letter");
    let body = sim.get(&l, &format!("documents/{doc}"), "").await;
    assert_eq!(body.body.as_ref(), content.as_slice());
    assert_eq!(body.headers["content-type"], "text/plain");

    let big = base64::engine::general_purpose::STANDARD.encode(vec![b'x'; 5 * 1024 * 1024 + 1]);
    let r = sim
        .partner(
            &tok,
            "POST",
            &format!("patients/{pg}/documents"),
            Some(json!({"CodeId": code("823691000000103"), "Term": "Clinical letter",
                "EffectiveDate": {"DatePart": "YearMonthDay", "Value": "2025-03-04T00:00:00"},
                "FileName": "big.txt", "Extension": "txt", "ContentBase64": big})),
        )
        .await;
    assert_eq!(r.status, 413);
}

#[tokio::test]
async fn bookings_show_in_the_feed_and_pages_follow_tokens() {
    let sim = start(unthrottled()).await;
    let tok = sim.partner_token().await;
    let first = sim
        .partner(
            &tok,
            "POST",
            "GetChangedPatients",
            Some(json!({"Since": "2025-02-01T00:00:00+00:00", "PageSize": 1})),
        )
        .await
        .json();
    assert_eq!(first["Changes"].as_array().map(Vec::len), Some(1));
    let mut seen = vec![first["Changes"][0].clone()];
    let mut next = first["NextPageToken"].clone();
    let mut pages = 1;
    while let Some(t) = next.as_str() {
        let page = sim
            .partner(
                &tok,
                "POST",
                "GetChangedPatients",
                Some(json!({"PageToken": t, "PageSize": 1})),
            )
            .await
            .json();
        seen.extend(page["Changes"].as_array().cloned().unwrap_or_default());
        next = page["NextPageToken"].clone();
        pages += 1;
        assert!(pages < 500);
    }
    let all = sim
        .partner(
            &tok,
            "POST",
            "GetChangedPatients",
            Some(json!({"Since": "2025-02-01T00:00:00+00:00", "PageSize": 1000})),
        )
        .await
        .json();
    assert_eq!(Value::Array(seen), all["Changes"], "paging covers the same rows");
    assert!(all["NextPageToken"].is_null());

    let l = sim.login(NHS).await;
    let mark = all["HighWaterMark"].clone();
    let slots = sim
        .get(
            &l,
            "appointmentslots",
            "&fromDateTime=2025-03-05T08:00:00&toDateTime=2025-03-12T18:00:00",
        )
        .await
        .json();
    let slot = slots["Sessions"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|s| s["DeliveryMode"] != "Telephone")
        .find_map(|s| s["Slots"][0]["SlotId"].as_u64())
        .expect("free slot");
    let r = sim
        .send_body(
            &l,
            "POST",
            "appointments",
            json!({"SlotId": slot, "BookingReason": "Check-up"}),
        )
        .await;
    assert_eq!(r.status, 201);
    let feed = sim
        .partner(&tok, "POST", "GetChangedPatients", Some(json!({"Since": mark})))
        .await
        .json();
    assert_eq!(feed["Changes"][0]["ChangeType"], "Appointments");
    assert_eq!(feed["Changes"][0]["PatientGuid"], l.patient_guid.as_str());
}
