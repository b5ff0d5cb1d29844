//! Document content larger than one native page: SystmOne gives content in pages of 64 KiB, EMIS Web and
//! Medicus whole. A letter of several pages, filed in the shared record, must read back byte for byte through
//! all three suppliers, for a clinician and for the patient, as one FHIR Binary.
use crate::common;

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use common::{patient_token, token, Proxy};
use im1_fhir::auth::Role;
use im1_sim::record::{NewDocument, PartialDate, Vocabulary};
use serde_json::Value;

const PRACTICES: [&str; 3] = ["Y90001", "Y90002", "Y90003"];
const TITLE: &str = "Discharge summary (long)";

/// About 300 KB of text: five SystmOne pages, the last one partial.
fn long_letter() -> Vec<u8> {
    (0..5_000)
        .map(|i| format!("Line {i:05} of the discharge summary: observations stable.\n"))
        .collect::<String>()
        .into_bytes()
}

/// The content of the document titled [`TITLE`], read through its DocumentReference's url; and the request
/// id of the Binary read.
async fn read_back(proxy: &Proxy, t: &str, patient_id: &str, request_id: &str) -> (String, Vec<u8>) {
    let query = format!("DocumentReference?patient=Patient/{patient_id}&_count=200");
    let documents = common::search_matches(proxy, &query, t).await;
    let document = documents
        .iter()
        .find(|d| d["description"] == TITLE)
        .unwrap_or_else(|| panic!("{query}: no '{TITLE}' among {} documents", documents.len()));
    let url = document["content"][0]["attachment"]["url"].as_str().unwrap();
    let response = proxy
        .client
        .get(proxy.url(url))
        .bearer_auth(t)
        .header("x-request-id", request_id)
        .header("accept", "application/fhir+json")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200, "{url}");
    let binary: Value = response.json().await.unwrap();
    assert_eq!(binary["resourceType"], "Binary");
    im1_fhir_model::check_strict(&binary).unwrap_or_else(|e| panic!("{url}: not strict FHIR: {e}"));
    let content_type = binary["contentType"].as_str().unwrap_or_default().to_string();
    let data = STANDARD
        .decode(binary["data"].as_str().unwrap_or_default())
        .unwrap_or_else(|e| panic!("{url}: data is not base64: {e}"));
    // Asked for in its own media type, the content comes as itself; in another, a 406 OperationOutcome.
    let raw = |accept: String| {
        proxy
            .client
            .get(proxy.url(url))
            .bearer_auth(t)
            .header("accept", accept)
            .send()
    };
    let response = raw(content_type.clone()).await.unwrap();
    assert_eq!(response.status(), 200, "{url} as {content_type}");
    assert_eq!(response.headers()["content-type"], content_type.as_str());
    assert_eq!(response.headers()["x-content-type-options"], "nosniff");
    assert_eq!(response.headers()["content-security-policy"], "sandbox");
    assert_eq!(response.bytes().await.unwrap().to_vec(), data, "{url}: the raw content");
    let (kind, _) = content_type.split_once('/').unwrap();
    // FHIR R4 binary.html: the content, unless a FHIR format is asked for and preferred.
    for accept in [
        format!("{kind}/*"),
        "*/*".into(),
        format!("{content_type};q=0.9, application/fhir+json;q=0.1"),
    ] {
        let response = raw(accept.clone()).await.unwrap();
        assert_eq!(response.headers()["content-type"], content_type.as_str(), "{accept}");
        assert_eq!(response.bytes().await.unwrap().to_vec(), data, "{url}: {accept}");
    }
    let without_accept = proxy.client.get(proxy.url(url)).bearer_auth(t).send().await.unwrap();
    assert_eq!(without_accept.headers()["content-type"], content_type.as_str());
    let preferred = raw(format!("application/fhir+xml, {content_type};q=0.5"))
        .await
        .unwrap();
    assert!(preferred.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("application/fhir+xml"));
    common::outcome(raw("image/x-none".into()).await.unwrap(), 406).await;
    (content_type, data)
}

/// How many native calls the AuditEvent of a request records.
fn native_calls(proxy: &Proxy, request_id: &str) -> usize {
    let event = common::audit_events(proxy)
        .into_iter()
        .find(|e| common::audited_request_id(e).as_deref() == Some(request_id))
        .unwrap_or_else(|| panic!("no AuditEvent for {request_id}"));
    common::cache_and_calls(&event).1
}

#[tokio::test]
async fn a_document_of_several_native_pages_reads_back_whole_through_every_supplier() {
    let (sims, _, proxy) = common::seeded(3, 4).await;
    let content = long_letter();
    assert!(content.len() > 3 * 65_536, "several SystmOne pages");
    let (patient, nhs) = sims
        .world
        .read(|r| (r.patients[0].id.clone(), r.patients[0].nhs_number.clone()));
    let letter = NewDocument {
        kind: Vocabulary::get().concept("25611000000107").expect("a document type"),
        title: TITLE.into(),
        date: PartialDate::Day(time::macros::date!(2026 - 02 - 20)),
        mime_type: "text/plain".into(),
        content: content.clone(),
        recorded_by: None,
    };
    sims.world.file_document(&patient, letter).expect("filed");

    let system = token(Role::System, &PRACTICES);
    let found: Value = proxy
        .get(
            &format!("Patient?identifier=https://fhir.nhs.uk/Id/nhs-number|{nhs}"),
            &system,
        )
        .await
        .json()
        .await
        .unwrap();
    let patient_ids: Vec<String> = common::matches(&found)
        .iter()
        .map(|p| p["id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(patient_ids.len(), 3, "one Patient per practice");

    for (ods, patient_id) in PRACTICES.iter().zip(&patient_ids) {
        let clinician = token(Role::Clinician, &[ods]);
        let request_id = format!("long-letter-{ods}");
        let (content_type, data) = read_back(&proxy, &clinician, patient_id, &request_id).await;
        assert_eq!(content_type, "text/plain", "{ods}");
        assert!(data == content, "{ods}: {} bytes back of {}", data.len(), content.len());
        if *ods == "Y90002" {
            // SystmOne: one GetBinaryData call per 64 KiB page.
            assert_eq!(
                native_calls(&proxy, &request_id),
                content.len().div_ceil(65_536),
                "{ods}"
            );
        }

        // The patient, through the supplier's patient-facing API (SystmOne: RequestBinaryData pages).
        let own = patient_token(&nhs, ods);
        let (status, own_patients) = common::get_json(&proxy, "Patient", &own).await;
        assert_eq!(status, 200, "{ods}: {own_patients}");
        let own_id = common::matches(&own_patients)[0]["id"].as_str().unwrap().to_string();
        let (_, data) = read_back(&proxy, &own, &own_id, &format!("long-letter-patient-{ods}")).await;
        assert!(
            data == content,
            "{ods}, patient: {} bytes back of {}",
            data.len(),
            content.len()
        );
    }
    proxy.stop().await;
}

#[tokio::test]
async fn a_confidential_document_is_not_found_by_its_patient_as_any_unknown_id() {
    let (sims, numbers, proxy) = common::seeded(1, 50).await;
    let mut checked = 0;
    for ods in PRACTICES {
        let clinician = token(Role::Clinician, &[ods]);
        for nhs in &numbers {
            let found = common::search_matches(&proxy, &format!("Patient?identifier={nhs}"), &clinician).await;
            let Some(patient) = found.first() else { continue };
            let query = format!("DocumentReference?patient={}", patient["id"].as_str().unwrap());
            let documents = common::search_matches(&proxy, &query, &clinician).await;
            let mine = patient_token(nhs, ods);
            for hidden in documents.iter().filter(|d| common::restricted(d)) {
                let url = hidden["content"][0]["attachment"]["url"].as_str().unwrap();
                let response = proxy.get(url, &mine).await;
                let body = common::outcome(response, 404).await;
                assert_eq!(
                    body["issue"][0]["details"]["coding"][0]["code"], "IM1-1401",
                    "{ods} {url}: {body}"
                );
                checked += 1;
            }
        }
    }
    assert!(checked > 0, "no confidential document among the seeded records");
    proxy.stop().await;
    sims.shutdown().await;
}
