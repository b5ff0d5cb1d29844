//! Page links carry everything that shapes a page: walking `next` gives each match once, in the order asked
//! for, with what `_include` adds, through every supplier; a page token is bound to those parameters too.
use crate::common;

use common::{entries, link, outcome, token, Proxy};
use im1_fhir::auth::Role;
use im1_fhir::demo::Simulators;
use serde_json::Value;
use std::collections::BTreeSet;

const PRACTICES: [&str; 3] = ["Y90001", "Y90002", "Y90003"];

async fn bundle(proxy: &Proxy, t: &str, query: &str) -> Value {
    let response = proxy.get(query, t).await;
    let status = response.status();
    let bundle: Value = response.json().await.unwrap();
    assert_eq!(status, 200, "{query}: {bundle}");
    bundle
}

/// Every page of a search, in order.
async fn pages(proxy: &Proxy, t: &str, query: &str) -> Vec<Value> {
    let mut all = vec![bundle(proxy, t, query).await];
    while let Some(next) = all.last().and_then(|b| link(b, "next")) {
        assert!(all.len() < 100, "{query}: the pages never end");
        all.push(bundle(proxy, t, &next).await);
    }
    all
}

async fn patient_id(proxy: &Proxy, t: &str) -> String {
    let found = bundle(proxy, t, "Patient?identifier=9000000009").await;
    entries(&found, "match")[0]["id"].as_str().unwrap().to_string()
}

#[tokio::test]
async fn next_links_keep_the_sort_the_includes_and_the_summary() {
    let sims = Simulators::start(common::fixed_options(1, 3)).await.unwrap();
    let proxy = Proxy::start(sims.practices(), sims.linkage()).await;
    for ods in PRACTICES {
        let t = token(Role::Clinician, &[ods]);
        let patient = patient_id(&proxy, &t).await;

        // Sorted, three a page: every match once, in date order across the pages.
        let query = format!("Observation?patient={patient}&_sort=-date&_count=3");
        let walked = pages(&proxy, &t, &query).await;
        let total = walked[0]["total"].as_u64().unwrap() as usize;
        assert!(walked.len() > 2, "{ods}: several pages ({total} matches)");
        let matches: Vec<&Value> = walked.iter().flat_map(|b| entries(b, "match")).collect();
        let ids: BTreeSet<&str> = matches.iter().map(|r| r["id"].as_str().unwrap()).collect();
        assert_eq!((matches.len(), ids.len()), (total, total), "{ods}: each match once");
        let dates: Vec<&str> = matches
            .iter()
            .map(|r| r["effectiveDateTime"].as_str().unwrap_or(""))
            .collect();
        let mut sorted = dates.clone();
        sorted.sort_by(|a, b| b.cmp(a));
        assert_eq!(dates, sorted, "{ods}: the order holds across pages");
        for page in &walked {
            assert!(
                link(page, "self").unwrap().contains("_sort=-date"),
                "{ods}: {}",
                page["link"]
            );
        }

        // One MedicationRequest a page: each page includes the Medication its match names.
        let query = format!("MedicationRequest?patient={patient}&_include=MedicationRequest:medication&_count=1");
        let walked = pages(&proxy, &t, &query).await;
        assert!(walked.len() > 1, "{ods}: several pages");
        for page in &walked {
            for request in entries(page, "match") {
                let wanted = request["medicationReference"]["reference"].as_str().unwrap();
                let included: Vec<String> = entries(page, "include")
                    .iter()
                    .map(|r| format!("Medication/{}", r["id"].as_str().unwrap()))
                    .collect();
                assert!(included.iter().any(|r| r == wanted), "{ods}: {wanted} on its page");
            }
        }

        // _summary=true holds on the next page too.
        let walked = pages(
            &proxy,
            &t,
            &format!("Condition?patient={patient}&_summary=true&_count=1"),
        )
        .await;
        assert!(walked.len() > 1, "{ods}: several pages");
        for page in walked.iter().skip(1) {
            for condition in entries(page, "match") {
                assert!(condition.get("note").is_none(), "{ods}: summarised on later pages");
            }
            assert!(link(page, "self").unwrap().contains("_summary=true"));
        }

        // A page token is bound to the sort it was issued for: another sort cannot reuse it.
        let first = bundle(
            &proxy,
            &t,
            &format!("Observation?patient={patient}&_sort=date&_count=3"),
        )
        .await;
        let next = link(&first, "next").unwrap();
        let tampered = next.replace("_sort=date", "_sort=-date");
        outcome(proxy.get(&tampered, &t).await, 400).await;

        // The format asked for holds on every page: the next page of an XML search is XML too.
        let response = proxy
            .get(&format!("Observation?patient={patient}&_count=2&_format=xml"), &t)
            .await;
        assert_eq!(response.status(), 200);
        let xml = response.text().await.unwrap();
        let at = xml.find("<relation value=\"next\"/>").expect("a next link");
        let url = xml[at..]
            .split("<url value=\"")
            .nth(1)
            .unwrap()
            .split('"')
            .next()
            .unwrap();
        let next = url.replace("&amp;", "&").replace("&#38;", "&");
        assert!(next.contains("_format=xml"), "{ods}: {next}");
        let response = proxy.get(next.split_once("/fhir/").unwrap().1, &t).await;
        assert_eq!(response.status(), 200);
        let content_type = response.headers()["content-type"].to_str().unwrap().to_string();
        assert!(
            content_type.starts_with("application/fhir+xml"),
            "{ods}: {content_type} {next}"
        );
    }
    proxy.stop().await;
    sims.shutdown().await;
}

#[tokio::test]
async fn links_show_only_what_a_lenient_search_applied() {
    let sims = Simulators::start(common::fixed_options(1, 3)).await.unwrap();
    let proxy = Proxy::start(sims.practices(), sims.linkage()).await;
    let t = token(Role::Clinician, &["Y90001"]);
    let patient = patient_id(&proxy, &t).await;
    // An unknown parameter and includes that cannot be followed are left out, and said to be; a followable
    // include stays.
    let query = format!(
        "Observation?patient={patient}&colour=blue&_count=2&_include=Observation:specimen\
         &_revinclude=Bogus:x&_include:iterate=Medication:manufacturer&_include=Observation:encounter"
    );
    let response = proxy.get_lenient(&query, &t).await;
    let first: Value = response.json().await.unwrap();
    let own = link(&first, "self").unwrap();
    for ignored in ["colour", "specimen", "Bogus", "manufacturer"] {
        assert!(!own.contains(ignored), "{ignored}: {own}");
    }
    assert!(own.contains("Observation%3Aencounter"), "{own}");
    // Its next page is valid as linked.
    let next = link(&first, "next").unwrap();
    assert!(!entries(&bundle(&proxy, &t, &next).await, "match").is_empty());
    proxy.stop().await;
    sims.shutdown().await;
}

#[tokio::test]
async fn reverse_includes_of_practice_data_find_what_points_at_the_page() {
    let sims = Simulators::start(common::fixed_options(1, 3)).await.unwrap();
    let proxy = Proxy::start(sims.practices(), sims.linkage()).await;
    for ods in PRACTICES {
        let t = token(Role::Clinician, &[ods]);
        for (query, path) in [
            ("Schedule?_revinclude=Slot:schedule&_count=1", "schedule"),
            (
                "Practitioner?_revinclude=PractitionerRole:practitioner&_count=2",
                "practitioner",
            ),
            ("Practitioner?_revinclude=Schedule:actor&_count=50", "actor"),
            ("Organization?_revinclude=PractitionerRole:organization", "organization"),
            // Three weeks past the fixed today: beyond the native default window, read by session.
            (
                "Schedule?date=ge2026-03-23&date=lt2026-03-24&_revinclude=Slot:schedule",
                "schedule",
            ),
        ] {
            let page = bundle(&proxy, &t, query).await;
            let matches: BTreeSet<String> = entries(&page, "match")
                .iter()
                .map(|r| format!("{}/{}", r["resourceType"].as_str().unwrap(), r["id"].as_str().unwrap()))
                .collect();
            let included = entries(&page, "include");
            assert!(!included.is_empty(), "{ods} {query}: nothing included");
            for item in included {
                let points: Vec<&str> = match &item[path] {
                    Value::Array(list) => list.iter().filter_map(|r| r["reference"].as_str()).collect(),
                    one => one["reference"].as_str().into_iter().collect(),
                };
                assert!(
                    points.iter().any(|r| matches.contains(*r)),
                    "{ods} {query}: {item} points at none of {matches:?}"
                );
            }
        }
    }
    proxy.stop().await;
    sims.shutdown().await;
}

/// An include that cannot be followed is a 400 (strict handling, the default), or under
/// `Prefer: handling=lenient` left out with a warning: never silently nothing.
async fn refused_or_said(proxy: &Proxy, t: &str, query: &str) {
    let body = common::outcome(proxy.get(query, t).await, 400).await;
    assert_eq!(
        body["issue"][0]["details"]["coding"][0]["code"], "IM1-1206",
        "{query}: {body}"
    );
    let lenient: Value = proxy.get_lenient(query, t).await.json().await.unwrap();
    assert!(entries(&lenient, "include").is_empty(), "{query}");
    let said = entries(&lenient, "outcome");
    assert_eq!(
        said[0]["issue"][0]["details"]["coding"][0]["code"], "IM1-1206",
        "{lenient}"
    );
}

#[tokio::test]
async fn reverse_includes_that_cannot_be_searched_are_said_not_silent() {
    let sims = Simulators::start(common::fixed_options(1, 3)).await.unwrap();
    let proxy = Proxy::start(sims.practices(), sims.linkage()).await;
    let t = token(Role::Clinician, &["Y90001"]);
    // Prescriptions are searched one record at a time: not from a page of practitioners.
    refused_or_said(&proxy, &t, "Practitioner?_revinclude=MedicationRequest:requester").await;
    // Nor Patients: found by identifier, or by name and birth date, never by their general practitioner.
    refused_or_said(&proxy, &t, "Practitioner?_revinclude=Patient:general-practitioner").await;
    // A record's own revinclude on an empty page is no such case.
    let patient = patient_id(&proxy, &t).await;
    let none = bundle(
        &proxy,
        &t,
        &format!("Encounter?patient={patient}&date=lt1900-01-01&_revinclude=Observation:encounter"),
    )
    .await;
    assert!(entries(&none, "outcome").is_empty(), "{none}");
    // An include of another type's references, a revinclude whose reference cannot point at the page: said.
    for mismatched in [
        format!("Observation?patient={patient}&_include=Condition:patient"),
        format!("Observation?patient={patient}&_revinclude=Observation:encounter"),
        format!("Observation?patient={patient}&_include=Observation:nonsense"),
        format!("Observation?patient={patient}&_include=Observation:encounter:Patient"),
    ] {
        refused_or_said(&proxy, &t, &mismatched).await;
    }
    proxy.stop().await;
    sims.shutdown().await;
}

#[tokio::test]
async fn summaries_and_elements_are_still_valid_resources_in_json_and_xml() {
    let sims = Simulators::start(common::fixed_options(1, 3)).await.unwrap();
    let proxy = Proxy::start(sims.practices(), sims.linkage()).await;
    for ods in PRACTICES {
        let t = token(Role::Clinician, &[ods]);
        let patient = patient_id(&proxy, &t).await;
        for resource_type in [
            "Observation",
            "Encounter",
            "Immunization",
            "MedicationRequest",
            "Condition",
            "AllergyIntolerance",
        ] {
            for shaping in ["_summary=true", "_summary=text", "_elements=id", "_summary=data"] {
                let query = format!("{resource_type}?patient={patient}&{shaping}");
                let found = bundle(&proxy, &t, &query).await;
                let matches = entries(&found, "match");
                assert!(!matches.is_empty(), "{ods} {query}");
                for resource in matches {
                    im1_fhir_model::check_strict(resource)
                        .unwrap_or_else(|e| panic!("{ods} {query}: not valid: {e}: {resource}"));
                }
                // And as XML: the same resources, no empty elements.
                let xml = proxy.get(&format!("{query}&_format=xml"), &t).await;
                assert_eq!(xml.status(), 200, "{ods} {query} as XML");
                let text = xml.text().await.unwrap();
                assert!(
                    !text.contains("<status/>") && !text.contains("<code/>"),
                    "{ods} {query}: {text}"
                );
            }
        }
        // A blood pressure keeps its readings in a summary.
        let summary = bundle(&proxy, &t, &format!("Observation?patient={patient}&_summary=true")).await;
        assert!(
            entries(&summary, "match").iter().any(|o| o.get("component").is_some()),
            "{ods}"
        );
        for resource_type in ["PractitionerRole", "Slot", "Schedule"] {
            let found = bundle(&proxy, &t, &format!("{resource_type}?_summary=true&_count=5")).await;
            for resource in entries(&found, "match") {
                im1_fhir_model::check_strict(resource).unwrap_or_else(|e| panic!("{ods} {resource_type}: {e}"));
            }
        }
    }
    proxy.stop().await;
    sims.shutdown().await;
}

#[tokio::test]
async fn a_record_that_changes_between_pages_neither_repeats_nor_skips_a_match() {
    use im1_sim::record::NewObservation;
    let (sims, _, proxy) = common::seeded(1, 3).await;
    let (pid, nhs, today) = sims
        .world
        .read(|r| (r.patients[0].id.clone(), r.patients[0].nhs_number.clone(), r.today));
    let mut firsts = Vec::new();
    for ods in PRACTICES {
        let t = token(Role::Clinician, &[ods]);
        let found = bundle(&proxy, &t, &format!("Patient?identifier={nhs}")).await;
        let patient = entries(&found, "match")[0]["id"].as_str().unwrap().to_string();
        let first = bundle(
            &proxy,
            &t,
            &format!("Observation?patient={patient}&_sort=-date&_count=5"),
        )
        .await;
        firsts.push((t, first));
    }
    // A weight filed today: the newest match, so every later one moves down a place.
    let weight = NewObservation::body_weight(70.1, today).expect("body weight");
    sims.world.file_observation(&pid, weight).expect("filed");
    for (ods, (t, first)) in PRACTICES.iter().zip(&firsts) {
        let next = link(first, "next").expect("a second page");
        let response = proxy
            .client
            .get(proxy.url(&next))
            .bearer_auth(t)
            .header("cache-control", "no-cache")
            .send()
            .await
            .unwrap();
        let second: Value = response.json().await.unwrap();
        let ids = |b: &Value| -> Vec<String> {
            entries(b, "match")
                .iter()
                .map(|m| m["id"].as_str().unwrap().to_string())
                .collect()
        };
        let (before, after) = (ids(first), ids(&second));
        // The whole answer now, to place the pages in.
        let patient = first["entry"][0]["resource"]["subject"]["reference"]
            .as_str()
            .unwrap()
            .to_string();
        let now = bundle(
            &proxy,
            t,
            &format!("Observation?patient={patient}&_sort=-date&_count=200"),
        )
        .await;
        let all = ids(&now);
        assert!(!before.contains(&all[0]), "{ods}: the new weight comes first now");
        let last_seen = all.iter().position(|id| *id == before[4]).expect("still there");
        assert_eq!(
            after[..],
            all[last_seen + 1..(last_seen + 6).min(all.len())],
            "{ods}: follows on"
        );
        assert!(after.iter().all(|id| !before.contains(id)), "{ods}: nothing repeated");
        let said = serde_json::to_string(&entries(&second, "outcome")).unwrap();
        assert!(said.contains("IM1-1302"), "{ods}: {said}");
    }
    proxy.stop().await;
    sims.shutdown().await;
}
