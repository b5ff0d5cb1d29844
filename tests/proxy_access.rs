//! Proxy access: a patient acting for another (a parent for a child) through each supplier's patient-facing API.
//! The seeded record has one link: patient 0 is patient 1's mother. She reaches the child's record as well as
//! her own, finds both Patients, and sees herself as the child's RelatedPerson; the child reaches only their own
//! record, and nobody reaches patient 2's. The three suppliers give the same RelatedPerson.
use crate::common;

use common::matches;

use common::{get_json as get, patient_token, restricted, token, Proxy};
use im1_fhir::auth::Role;
use im1_fhir::demo::Simulators;
use serde_json::{json, Value};
use std::collections::HashMap;

const PRACTICES: [&str; 3] = ["Y90001", "Y90002", "Y90003"];
/// Item types checked through the proxy link (a sample of the record: problems, results, medication).
const ITEMS: &[&str] = &["Condition", "Observation", "MedicationStatement"];

/// The Patient ids of the mother, the child and a stranger at one practice, as a clinician finds them.
async fn patient_ids(proxy: &Proxy, clinician: &str, numbers: &[String]) -> Vec<String> {
    let mut ids = Vec::new();
    for nhs in numbers {
        let (_, found) = get(proxy, &format!("Patient?identifier={nhs}"), clinician).await;
        ids.push(matches(&found)[0]["id"].as_str().unwrap().to_string());
    }
    ids
}

#[tokio::test]
async fn a_parent_reaches_their_childs_record_and_no_other() {
    let sims = Simulators::start(common::fixed_options(1, 6)).await.unwrap();
    let numbers: Vec<String> = sims
        .world
        .read(|r| r.patients.iter().take(3).map(|p| p.nhs_number.clone()).collect());
    let proxy = Proxy::start(sims.practices(), sims.linkage()).await;
    let mut related = Vec::new();
    for ods in PRACTICES {
        let clinician = &token(Role::Clinician, &[ods]);
        let ids = patient_ids(&proxy, clinician, &numbers).await;
        let (mother_id, child_id, stranger_id) = (&ids[0], &ids[1], &ids[2]);
        let mother = &patient_token(&numbers[0], ods);
        let child = &patient_token(&numbers[1], ods);

        // The mother finds herself and the child she acts for; the child finds only themselves.
        let (status, found) = get(&proxy, "Patient", mother).await;
        assert_eq!(status, 200, "{ods}: {found}");
        let found: Vec<Value> = matches(&found).iter().map(|p| p["id"].clone()).collect();
        assert_eq!(found, vec![json!(mother_id), json!(child_id)], "{ods}");
        let (_, found) = get(&proxy, "Patient", child).await;
        assert_eq!(matches(&found).len(), 1, "{ods}: the child acts for nobody");
        let (status, _) = get(&proxy, &format!("Patient/{child_id}"), mother).await;
        assert_eq!(status, 200, "{ods}: the mother reads the child's Patient");
        let (status, _) = get(&proxy, &format!("Patient/{mother_id}"), child).await;
        assert_eq!(status, 404, "{ods}: the child may not read the mother's Patient");

        // The child's record through the mother's linkage: every item the child's API shows, none confidential.
        for resource_type in ITEMS {
            let (_, full) = get(&proxy, &format!("{resource_type}?patient={child_id}"), clinician).await;
            let visible: Vec<Value> = matches(&full).into_iter().filter(|r| !restricted(r)).collect();
            let (status, seen) = get(&proxy, &format!("{resource_type}?patient={child_id}"), mother).await;
            assert_eq!(status, 200, "{ods} {resource_type}: {seen}");
            let seen = matches(&seen);
            assert_eq!(seen.len(), visible.len(), "{ods} {resource_type}: the child's items");
            assert!(!seen.is_empty(), "{ods} {resource_type}: the seeded child has some");
            for item in &seen {
                let subject = item.get("subject").or_else(|| item.get("patient")).unwrap();
                assert_eq!(subject["reference"], format!("Patient/{child_id}"));
            }
            // Read one back by id through the proxy link.
            let id = seen[0]["id"].as_str().unwrap();
            let (status, _) = get(&proxy, &format!("{resource_type}/{id}"), mother).await;
            assert_eq!(status, 200, "{ods} {resource_type}: read through the proxy link");
            // The child may not see the mother's record, and the mother not a stranger's.
            let (_, leaked) = get(&proxy, &format!("{resource_type}?patient={mother_id}"), child).await;
            assert_eq!(
                leaked["total"], 0,
                "{ods} {resource_type}: the child saw the mother's record"
            );
            let (_, leaked) = get(&proxy, &format!("{resource_type}?patient={stranger_id}"), mother).await;
            assert_eq!(leaked["total"], 0, "{ods} {resource_type}: a stranger's record leaked");
        }
        // Searches without `patient` stay on the user's own record.
        let (_, own) = get(&proxy, "Condition", mother).await;
        assert!(matches(&own)
            .iter()
            .all(|c| c["subject"]["reference"] == format!("Patient/{mother_id}")));

        // The mother is the child's RelatedPerson; the child has none of their own to show.
        let (status, bundle) = get(&proxy, &format!("RelatedPerson?patient={child_id}"), mother).await;
        assert_eq!(status, 200, "{ods}: {bundle}");
        let people = matches(&bundle);
        assert_eq!(people.len(), 1, "{ods}: {bundle}");
        let person = &people[0];
        assert_eq!(person["patient"]["reference"], format!("Patient/{child_id}"));
        assert_eq!(person["relationship"][0]["coding"][0]["code"], "MTH", "{ods}");
        assert_eq!(person["identifier"][0]["value"], numbers[0].as_str());
        let id = person["id"].as_str().unwrap();
        let (status, read) = get(&proxy, &format!("RelatedPerson/{id}"), mother).await;
        assert_eq!((status, &read), (200, person), "{ods}: read back");
        let (status, _) = get(&proxy, &format!("RelatedPerson/{id}"), child).await;
        assert_eq!(status, 404, "{ods}: another user's RelatedPerson");
        let (_, none) = get(&proxy, &format!("RelatedPerson?patient={mother_id}"), mother).await;
        assert_eq!(none["total"], 0, "{ods}: nobody is known to act for the mother");
        // The child's $everything through the proxy link carries the RelatedPerson too.
        let (status, everything) = get(&proxy, &format!("Patient/{child_id}/$everything?_count=500"), mother).await;
        assert_eq!(status, 200, "{ods}");
        assert!(matches(&everything)
            .iter()
            .any(|r| r["resourceType"] == "RelatedPerson"));

        let targets = HashMap::from([(format!("Patient/{child_id}"), json!("the child"))]);
        related.push((ods, common::comparable(person, &targets)));
    }
    // The same RelatedPerson through the three suppliers, but for what each cannot carry
    // (common::AGREEMENT_EXCEPTIONS: Medicus gives the user's name as one display string, its `text`).
    let (_, emis) = &related[0];
    for (ods, person) in &related[1..] {
        let supplier = common::supplier_of(ods);
        if supplier == "medicus" {
            assert_eq!(person["name"][0]["text"], "Ms Alex TESTER");
        }
        let expected = common::set_aside(supplier, "patient", emis);
        assert_eq!(
            common::set_aside(supplier, "patient", person),
            expected,
            "{ods} against EMIS Web"
        );
    }
    proxy.stop().await;
    sims.shutdown().await;
}

#[tokio::test]
async fn a_revoked_proxy_link_stops_working_once_the_linkage_is_looked_up_again() {
    use im1_fhir::cache::CacheConfig;
    use std::time::Duration;

    let sims = Simulators::start(common::fixed_options(1, 6)).await.unwrap();
    let (numbers, mother, child): (Vec<String>, _, _) = sims.world.read(|r| {
        (
            r.patients.iter().take(2).map(|p| p.nhs_number.clone()).collect(),
            r.patients[0].id.clone(),
            r.patients[1].id.clone(),
        )
    });
    let linkage_ttl = Duration::from_millis(300);
    let cache = CacheConfig {
        linkage_ttl,
        ..CacheConfig::default()
    };
    let proxy = Proxy::start_cached(sims.practices(), sims.linkage(), cache).await;
    let mut child_ids = Vec::new();
    for ods in PRACTICES {
        let ids = patient_ids(&proxy, &token(Role::Clinician, &[ods]), &numbers).await;
        let (status, _) = get(
            &proxy,
            &format!("Condition?patient={}", ids[1]),
            &patient_token(&numbers[0], ods),
        )
        .await;
        assert_eq!(status, 200, "{ods}: the mother reads the child's problems");
        child_ids.push(ids[1].clone());
    }

    sims.world.revoke_proxy_link(&mother, &child).expect("the seeded link");
    tokio::time::sleep(linkage_ttl * 2).await;
    for (ods, child_id) in PRACTICES.iter().zip(&child_ids) {
        let t = patient_token(&numbers[0], ods);
        let (_, found) = get(&proxy, "Patient", &t).await;
        assert_eq!(
            matches(&found).len(),
            1,
            "{ods}: the mother finds only herself: {found}"
        );
        let (status, _) = get(&proxy, &format!("Patient/{child_id}"), &t).await;
        assert_eq!(status, 404, "{ods}: the child's Patient after revocation");
        // The answer cached for the mother is still checked against her linkage as it is now.
        let (_, leaked) = get(&proxy, &format!("Condition?patient={child_id}"), &t).await;
        assert_eq!(
            leaked["total"], 0,
            "{ods}: the child's problems after revocation: {leaked}"
        );
        let (_, none) = get(&proxy, &format!("RelatedPerson?patient={child_id}"), &t).await;
        assert_eq!(none["total"], 0, "{ods}: no RelatedPerson after revocation");
    }
    proxy.stop().await;
    sims.shutdown().await;
}
