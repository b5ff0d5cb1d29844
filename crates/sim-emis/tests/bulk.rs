//! The on-demand bulk extract: file listing, CSV tables with braced GUIDs, deltas by `since`.

use crate::common;

use common::*;
use im1_sim::record::{native_id, Supplier};
use serde_json::json;

async fn bulk(sim: &Sim, tok: &str, path: &str) -> Resp {
    let auth = format!("Bearer {tok}");
    sim.req(
        "GET",
        &format!("/emis/bulk/v1/{path}"),
        &[("Authorization", &auth), ("X-EMIS-OrganisationCdb", "50002")],
        None,
    )
    .await
}

#[tokio::test]
async fn extract_lists_files_and_tables_carry_the_record() {
    let sim = start(unthrottled()).await;
    assert_eq!(bulk(&sim, "forged", "extract").await.status, 401);
    let tok = sim.partner_token().await;
    let list = bulk(&sim, &tok, "extract").await;
    assert_eq!(list.status, 200);
    let list = list.json();
    let files = list["Files"].as_array().expect("files");
    assert!(files.iter().any(|f| f["Table"] == "CareRecord_Observation"));
    for f in files {
        let url = f["Url"].as_str().expect("url").trim_start_matches("/emis/bulk/v1/");
        let r = bulk(&sim, &tok, url).await;
        assert_eq!(r.status, 200, "{url}");
        assert!(r.headers["content-type"]
            .to_str()
            .is_ok_and(|c| c.starts_with("text/csv")));
        let text = r.text();
        let mut lines = text.lines();
        let header = lines.next().expect("header");
        assert!(header.ends_with("Deleted,ProcessingId"), "{header}");
        assert_eq!(lines.count() as u64, f["RowCount"].as_u64().expect("count"), "{url}");
    }
    let record = sim.world.snapshot();
    let p = record.patient_by_nhs_number(NHS).expect("patient");
    let obs = bulk(&sim, &tok, "files/CareRecord_Observation.csv").await.text();
    for o in &p.clinical.observations {
        let id = format!("{{{}}}", native_id(Supplier::Emis, &o.meta.id));
        assert!(
            obs.lines().any(|l| l.starts_with(&id) && l.contains(&o.code.display)),
            "{id}"
        );
    }
    let drugs = bulk(&sim, &tok, "files/Prescribing_IssueRecord.csv").await.text();
    for m in &p.clinical.medications {
        for i in &m.issues {
            assert!(drugs.contains(&format!("{{{}}}", native_id(Supplier::Emis, &i.id))));
        }
    }
    assert_eq!(bulk(&sim, &tok, "files/Nope.csv").await.status, 404);
}

#[tokio::test]
async fn since_limits_patient_tables_to_changed_patients() {
    let sim = start(unthrottled()).await;
    let tok = sim.partner_token().await;
    let since = "2025-03-04T08%3A00%3A00%2B00%3A00";
    let before = bulk(&sim, &tok, &format!("files/Admin_Patient.csv?since={since}"))
        .await
        .text();
    assert_eq!(before.lines().count(), 1, "no changes yet: header only");
    let l = sim.login(NHS).await;
    let r = sim
        .partner(
            &tok,
            "POST",
            &format!("patients/{}/observations", l.patient_guid),
            Some(
                json!({"CodeId": im1_sim::record::CodeIdTable::get().by_concept_code("27113001").expect("code").code_id,
                "Term": "Body weight", "EffectiveDate": {"DatePart": "YearMonthDay", "Value": "2025-03-04T00:00:00"},
                "NumericValue": 70.1, "NumericUnits": "kg"}),
            ),
        )
        .await;
    assert_eq!(r.status, 201);
    let after = bulk(&sim, &tok, &format!("files/Admin_Patient.csv?since={since}"))
        .await
        .text();
    assert_eq!(after.lines().count(), 2);
    assert!(after.contains(&format!("{{{}}}", l.patient_guid)));
    let listing = bulk(&sim, &tok, &format!("extract?since={since}")).await.json();
    assert!(listing["HighWaterMark"].is_string());
}
