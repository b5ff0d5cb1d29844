//! The headline property, for what is mapped so far: one FHIR question gives the same UK Core answer whichever
//! system the practice runs, once ids, `meta` and the managing organisation (the practice itself) are set aside.
use crate::common;

use common::token;
use im1_fhir::auth::Role;
use serde_json::Value;

/// Elements that differ by nature between practices (the usual GP is a reference to this practice's own
/// Practitioner: `tests/practice_agree.rs` compares it by what it points at).
const SET_ASIDE: &[&str] = &["id", "meta", "managingOrganization", "generalPractitioner"];

fn comparable(resource: &Value) -> Value {
    let mut resource = resource.clone();
    if let Some(object) = resource.as_object_mut() {
        for key in SET_ASIDE {
            object.remove(*key);
        }
    }
    resource
}

#[tokio::test]
async fn every_seeded_patient_is_the_same_patient_through_emis_systmone_and_medicus() {
    for seed in [1, 7] {
        let (sims, numbers, proxy) = common::seeded(seed, 12).await;
        // A system client reaching all three practices: one search, one answer per practice.
        let t = token(Role::System, &["Y90001", "Y90002", "Y90003"]);
        for nhs in &numbers {
            let response = proxy
                .get(
                    &format!("Patient?identifier=https://fhir.nhs.uk/Id/nhs-number|{nhs}"),
                    &t,
                )
                .await;
            let status = response.status();
            let bundle: Value = response.json().await.unwrap();
            assert_eq!(status, 200, "{bundle}");
            let patients: Vec<&Value> = bundle["entry"]
                .as_array()
                .unwrap()
                .iter()
                .map(|e| &e["resource"])
                .collect();
            assert_eq!(patients.len(), 3, "seed {seed}: one Patient per practice: {bundle}");
            let practices: Vec<&str> = patients
                .iter()
                .map(|p| p["managingOrganization"]["identifier"]["value"].as_str().unwrap())
                .collect();
            assert_eq!(practices, ["Y90001", "Y90002", "Y90003"]);
            for p in &patients {
                common::assert_uk_core(p, "Patient");
            }
            let emis = comparable(patients[0]);
            assert_eq!(emis, comparable(patients[1]), "seed {seed}: EMIS and SystmOne differ");
            assert_eq!(emis, comparable(patients[2]), "seed {seed}: EMIS and Medicus differ");
            // And each practice's id reads back the same resource.
            for p in &patients {
                let read: Value = proxy
                    .get(&format!("Patient/{}", p["id"].as_str().unwrap()), &t)
                    .await
                    .json()
                    .await
                    .unwrap();
                assert_eq!(&&read, p);
            }
        }
        proxy.stop().await;
        sims.shutdown().await;
    }
}
