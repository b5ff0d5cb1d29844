//! Strategic Reporting extracts on demand: manifest, CSV per table, row counts, and writes showing up.

use crate::common;

use common::*;
use im1_sim::record::PATIENT_NHS_NUMBER;
use im1_sim_systmone::render::{all_items, tid};

async fn send(sim: &Sim, method: &str, path: &str, key: &str) -> Reply {
    raw(
        sim.http,
        format!(
            "{method} {path} HTTP/1.1\r\nHost: sim\r\napiKey: {key}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
        ),
    )
    .await
    .expect("reply")
}

/// Parse one CSV file (every field quoted) into rows of fields.
fn csv(text: &str) -> Vec<Vec<String>> {
    let mut rows = Vec::new();
    let mut row = Vec::new();
    let mut field = String::new();
    let mut quoted = false;
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match (quoted, c) {
            (true, '"') if chars.peek() == Some(&'"') => {
                field.push('"');
                chars.next();
            }
            (true, '"') => quoted = false,
            (true, c) => field.push(c),
            (false, '"') => quoted = true,
            (false, ',') => row.push(std::mem::take(&mut field)),
            (false, '\r') => {}
            (false, '\n') => {
                row.push(std::mem::take(&mut field));
                rows.push(std::mem::take(&mut row));
            }
            (false, c) => field.push(c),
        }
    }
    rows
}

#[tokio::test]
async fn extract_on_demand() {
    let sim = start(quiet()).await;
    assert_eq!(
        send(&sim, "POST", "/tpp/bulk/Y90002/extracts", "WRONG").await.status,
        401
    );
    let made = send(&sim, "POST", "/tpp/bulk/Y90002/extracts", "SIM-KEY").await;
    assert_eq!(made.status, 201);
    let manifest = made.xml();
    assert_eq!(manifest.name, "SRManifest");
    assert!(manifest.attr("extractDate").is_some_and(|d| d.ends_with('Z')));
    let id = manifest.attr("extractId").expect("extractId").to_string();
    let again = send(
        &sim,
        "GET",
        &format!("/tpp/bulk/Y90002/extracts/{id}/SRManifest.xml"),
        "SIM-KEY",
    )
    .await;
    assert_eq!(again.body, made.body);
    for file in manifest.children_named("File") {
        let name = file.attr("name").expect("name");
        let body = send(
            &sim,
            "GET",
            &format!("/tpp/bulk/Y90002/extracts/{id}/{name}"),
            "SIM-KEY",
        )
        .await;
        assert_eq!(body.status, 200, "{name}");
        let rows = csv(&body.body);
        assert_eq!(
            rows.len() - 1,
            file.attr("rows").and_then(|r| r.parse::<usize>().ok()).expect("rows"),
            "{name}"
        );
        assert!(rows.iter().all(|r| r.len() == rows[0].len()), "{name}: same width");
    }
    assert_eq!(
        send(
            &sim,
            "GET",
            &format!("/tpp/bulk/Y90002/extracts/{id}/Nope.csv"),
            "SIM-KEY"
        )
        .await
        .status,
        404
    );

    // Every clinical item of 9000000009 is in one of the tables, by id and term.
    let rec = sim.world.snapshot();
    let p = rec.patient_by_nhs_number(PATIENT_NHS_NUMBER).expect("patient");
    let mut all = Vec::new();
    for t in [
        "SRProblem",
        "SRAllergy",
        "SRMedication",
        "SRObservation",
        "SRImmunisation",
        "SRDocument",
    ] {
        let body = send(
            &sim,
            "GET",
            &format!("/tpp/bulk/Y90002/extracts/{id}/{t}.csv"),
            "SIM-KEY",
        )
        .await;
        all.extend(csv(&body.body).into_iter().skip(1));
    }
    for item in all_items(&p.clinical) {
        let id = tid(&item.meta().id);
        let row = all
            .iter()
            .find(|r| r[0] == id)
            .unwrap_or_else(|| panic!("{} missing", item.meta().id));
        assert!(row.iter().any(|f| f == item.term()), "{} term", item.meta().id);
    }

    // A write shows in the next extract.
    let pid = tid(&p.id);
    let r = ci(
        &sim,
        "FileObservation",
        &format!(r#"patientId="{pid}" snomed="27113001" date="2025-03-03T00:00:00.0Z" value="80.1""#),
        "",
    )
    .await;
    let obs = result(&r).attr("itemId").expect("itemId").to_string();
    let next = send(&sim, "POST", "/tpp/bulk/Y90002/extracts", "SIM-KEY").await.xml();
    let id2 = next.attr("extractId").expect("id").to_string();
    assert_ne!(id, id2);
    let body = send(
        &sim,
        "GET",
        &format!("/tpp/bulk/Y90002/extracts/{id2}/SRObservation.csv"),
        "SIM-KEY",
    )
    .await;
    assert!(csv(&body.body)
        .iter()
        .any(|r| r[0] == obs && r.contains(&"80.1".to_string())));
}
