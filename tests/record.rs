//! Searching one patient's record: the patient parameter, `_sort`, `_include`, `_revinclude` and
//! `Patient/$everything`, live through the EMIS simulator.
use crate::common;

use common::{entries, outcome, token, Proxy};
use im1_fhir::auth::Role;
use im1_fhir::demo::Simulators;
use serde_json::Value;

async fn start() -> (Simulators, Proxy, String, String) {
    let options = common::fixed_options(1, 6);
    let sims = Simulators::start(options).await.unwrap();
    let proxy = Proxy::start(sims.practices(), sims.linkage()).await;
    let t = token(Role::Clinician, &["Y90001"]);
    let bundle = get(&proxy, "Patient?identifier=9000000009", &t).await;
    let id = bundle["entry"][0]["resource"]["id"].as_str().unwrap().to_string();
    (sims, proxy, t, id)
}

async fn get(proxy: &Proxy, path: &str, t: &str) -> Value {
    let response = proxy.get(path, t).await;
    let status = response.status();
    let body: Value = response.json().await.unwrap();
    assert_eq!(status, 200, "{path}: {body}");
    body
}

#[tokio::test]
async fn items_are_searched_in_the_one_record_the_patient_parameter_names() {
    let (sims, proxy, t, patient) = start().await;
    let bundle = get(&proxy, &format!("Condition?patient={patient}"), &t).await;
    let conditions = entries(&bundle, "match");
    assert!(!conditions.is_empty());
    for c in &conditions {
        assert_eq!(c["subject"]["reference"], format!("Patient/{patient}"));
        assert_eq!(c["category"][0]["coding"][0]["code"], "problem-list-item");
        im1_fhir_model::check_strict(c).unwrap();
    }
    // A reference's type modifier says the same as a typed value.
    for typed in [
        format!("subject:Patient={patient}"),
        format!("patient:Patient={patient}"),
        // An absolute reference on this server's base is the same reference.
        format!("patient={}", proxy.url(&format!("Patient/{patient}"))),
    ] {
        let same = get(&proxy, &format!("Condition?{typed}"), &t).await;
        assert_eq!(entries(&same, "match"), conditions, "{typed}");
    }
    let mismatched = proxy
        .get(&format!("Condition?subject:Patient=Group/{patient}"), &t)
        .await;
    assert_eq!(mismatched.status(), 400);
    // A modifier this server does not follow is said to be, not taken for a search that names no record.
    for modified in [
        "patient:identifier=https://fhir.nhs.uk/Id/nhs-number%7C9000000009",
        "patient:bogus=x",
    ] {
        let (status, body) = common::get_json(&proxy, &format!("Condition?{modified}"), &t).await;
        assert_eq!(status, 400, "{modified}");
        assert_eq!(
            body["issue"][0]["details"]["coding"][0]["code"], "IM1-1202",
            "{modified}: {body}"
        );
    }
    // One record a search: two patients named, however, are refused; the same one twice is one.
    for two in [
        format!("Condition?patient={patient},other"),
        format!("Condition?patient={patient}&patient=other"),
    ] {
        assert_eq!(proxy.get(&two, &t).await.status(), 400, "{two}");
    }
    let same = get(
        &proxy,
        &format!("Condition?patient={patient}&subject=Patient/{patient}"),
        &t,
    )
    .await;
    assert_eq!(entries(&same, "match"), conditions);
    // Each item reads back by its id, identical.
    let read = get(
        &proxy,
        &format!("Condition/{}", conditions[0]["id"].as_str().unwrap()),
        &t,
    )
    .await;
    assert_eq!(&&read, &conditions[0]);
    // No GP system's API says when an item last changed (only when it was entered, which is its recordedDate):
    // so no meta.lastUpdated, no Last-Modified, and no ETag (no versions either).
    let item = format!("Condition/{}", conditions[0]["id"].as_str().unwrap());
    let response = proxy.get(&item, &t).await;
    assert!(conditions[0]["meta"].get("lastUpdated").is_none(), "{}", conditions[0]);
    assert!(response.headers().get("last-modified").is_none());
    assert!(response.headers().get("etag").is_none());
    // Conditional reads (RFC 9110 §13): If-Modified-Since is ignored where there is no modification date (a
    // 304 could keep a resolved problem current in a client's cache); If-None-Match: * holds for any
    // resource that exists; a version asked for by If-Match cannot hold where there are no versions.
    let conditional = |name: &'static str, value: String| {
        proxy
            .client
            .get(proxy.url(&item))
            .bearer_auth(&t)
            .header(name, value)
            .send()
    };
    let now = time::OffsetDateTime::now_utc();
    let format = time::macros::format_description!(
        "[weekday repr:short], [day] [month repr:short] [year] [hour]:[minute]:[second] GMT"
    );
    let since_now = conditional("if-modified-since", now.format(format).unwrap())
        .await
        .unwrap();
    assert_eq!(since_now.status(), 200);
    assert_eq!(since_now.json::<Value>().await.unwrap(), *conditions[0]);
    assert_eq!(conditional("if-none-match", "*".into()).await.unwrap().status(), 304);
    let versioned = conditional("if-match", "W/\"1\"".into()).await.unwrap();
    common::outcome(versioned, 412).await;
    // And the CapabilityStatement offers neither conditional reads nor _lastUpdated for them.
    let statement = common::plain_json(&proxy.client, &proxy.url("metadata")).await;
    let condition = common::capability_entry(&statement, "Condition");
    assert!(condition.get("conditionalRead").is_none(), "{condition}");
    let offered = condition["searchParam"].as_array().unwrap();
    assert!(offered.iter().any(|p| p["name"] == "_id"), "{condition}");
    assert!(!offered.iter().any(|p| p["name"] == "_lastUpdated"), "{condition}");
    let binary = common::capability_entry(&statement, "Binary");
    assert!(binary.get("conditionalRead").is_none(), "{binary}");
    // `_id`, defined for every resource, narrows a record's search; `_lastUpdated` is not offered rather than
    // never matching.
    let id = conditions[0]["id"].as_str().unwrap();
    let one = get(&proxy, &format!("Condition?patient={patient}&_id={id}"), &t).await;
    assert_eq!(entries(&one, "match"), vec![conditions[0]]);
    let body = outcome(
        proxy
            .get(&format!("Condition?patient={patient}&_lastUpdated=ge1900-01-01"), &t)
            .await,
        400,
    )
    .await;
    assert_eq!(body["issue"][0]["expression"][0], "_lastUpdated");
    // Without a patient: a GP system searches one record at a time.
    outcome(proxy.get("Condition", &t).await, 400).await;
    // A forged or foreign patient id matches nothing rather than erroring with details.
    let forged = get(&proxy, "Condition?patient=Patient/AAAAAAAAAAAAAAAAAAAAAAAA", &t).await;
    assert_eq!(forged["total"], 0);
    // An id from a practice the clinician may not reach, or another type's, finds nothing either; each says,
    // in the same words, that no record was searched (an empty answer alone reads as "no conditions").
    let other = token(Role::Clinician, &["Y90002"]);
    let foreign = get(&proxy, &format!("Condition?patient={patient}"), &other).await;
    assert_eq!(foreign["total"], 0);
    let practitioner = get(&proxy, &format!("Condition?subject=Practitioner/{patient}"), &t).await;
    let said = |bundle: &Value| -> Vec<String> {
        entries(bundle, "outcome")
            .iter()
            .flat_map(|o| o["issue"].as_array().unwrap().iter())
            .map(|i| format!("{} {}", i["details"]["coding"][0]["code"], i["diagnostics"]))
            .collect()
    };
    for bundle in [&forged, &foreign, &practitioner] {
        assert_eq!(said(bundle), said(&forged), "{bundle}");
        assert!(said(bundle)[0].contains("IM1-1219"), "{bundle}");
    }
    // A record searched that holds nothing of a kind says nothing of the sort.
    let none = get(&proxy, &format!("Condition?patient={patient}&code=no-such-code"), &t).await;
    assert_eq!(none["total"], 0);
    assert!(said(&none).iter().all(|s| !s.contains("IM1-1219")), "{none}");
    proxy.stop().await;
    sims.shutdown().await;
}

#[tokio::test]
async fn sort_include_revinclude_and_everything_follow_the_record() {
    let (sims, proxy, t, patient) = start().await;

    let ascending = get(&proxy, &format!("Observation?patient={patient}&_sort=date"), &t).await;
    let dates: Vec<&str> = entries(&ascending, "match")
        .iter()
        .map(|o| o["effectiveDateTime"].as_str().unwrap())
        .collect();
    assert!(dates.len() > 3);
    // The dates are UTC (`Z`) or partial, so their text sorts as they do.
    assert!(dates.iter().all(|d| d.len() <= 10 || d.ends_with('Z')), "{dates:?}");
    assert!(dates.windows(2).all(|w| w[0] <= w[1]), "{dates:?}");
    // A comma is "any of": observations of the first or the last day (the window spans both).
    let (first, last) = (&dates[0][..10], &dates[dates.len() - 1][..10]);
    let either = get(
        &proxy,
        &format!("Observation?patient={patient}&date={first},{last}"),
        &t,
    )
    .await;
    let expected = dates
        .iter()
        .filter(|d| d.starts_with(first) || d.starts_with(last))
        .count();
    assert!(expected >= 2);
    assert_eq!(entries(&either, "match").len(), expected, "{first},{last}");
    let descending = get(&proxy, &format!("Observation?patient={patient}&_sort=-date"), &t).await;
    assert_eq!(
        entries(&descending, "match")[0]["effectiveDateTime"],
        *dates.last().unwrap()
    );
    outcome(
        proxy
            .get(&format!("Observation?patient={patient}&_sort=nonsense"), &t)
            .await,
        400,
    )
    .await;
    // A reverse include is found for the matches only, and the refusal names it as it was asked.
    let iterated = format!("Encounter?patient={patient}&_revinclude:iterate=PractitionerRole:practitioner");
    let body = outcome(proxy.get(&iterated, &t).await, 400).await;
    let said = body["issue"][0]["diagnostics"].as_str().unwrap();
    assert!(
        said.starts_with("_revinclude:iterate=PractitionerRole:practitioner"),
        "{said}"
    );
    assert!(
        said.ends_with("(reverse includes are found for the matches only)"),
        "{said}"
    );

    let requests = get(
        &proxy,
        &format!("MedicationRequest?patient={patient}&_include=MedicationRequest:medication"),
        &t,
    )
    .await;
    let medications = entries(&requests, "include");
    assert_eq!(medications.len(), entries(&requests, "match").len());
    for (request, medication) in entries(&requests, "match").iter().zip(&medications) {
        assert_eq!(
            request["medicationReference"]["reference"],
            format!("Medication/{}", medication["id"].as_str().unwrap())
        );
        assert_eq!(medication["code"]["coding"][0]["system"], "https://dmd.nhs.uk");
    }

    let encounters = get(
        &proxy,
        &format!("Encounter?patient={patient}&_revinclude=Observation:encounter"),
        &t,
    )
    .await;
    let ids: Vec<String> = entries(&encounters, "match")
        .iter()
        .map(|e| format!("Encounter/{}", e["id"].as_str().unwrap()))
        .collect();
    let observations = entries(&encounters, "include");
    assert!(!observations.is_empty());
    for o in &observations {
        assert!(ids.contains(&o["encounter"]["reference"].as_str().unwrap().to_string()));
    }
    // `:iterate` follows from what the reverse includes brought too: the observations' patient.
    let with_patient = get(
        &proxy,
        &format!("Encounter?patient={patient}&_revinclude=Observation:encounter&_include:iterate=Observation:patient"),
        &t,
    )
    .await;
    let included = entries(&with_patient, "include");
    assert!(
        included
            .iter()
            .any(|r| r["resourceType"] == "Patient" && r["id"] == patient.as_str()),
        "{with_patient}"
    );
    assert_eq!(included.len(), observations.len() + 1);
    // A type this user may not search is said, not a failure of the search.
    let related = get(
        &proxy,
        &format!("Patient?_id={patient}&_revinclude=RelatedPerson:patient"),
        &t,
    )
    .await;
    let said = entries(&related, "outcome");
    assert_eq!(
        said[0]["issue"][0]["details"]["coding"][0]["code"], "IM1-2103",
        "{related}"
    );

    let everything = get(&proxy, &format!("Patient/{patient}/$everything?_count=200"), &t).await;
    let all = entries(&everything, "match");
    assert_eq!(all[0]["resourceType"], "Patient");
    for resource_type in [
        "AllergyIntolerance",
        "Condition",
        "Observation",
        "Encounter",
        "MedicationRequest",
    ] {
        assert!(
            all.iter().any(|r| r["resourceType"] == resource_type),
            "$everything lacks {resource_type}"
        );
    }
    assert_eq!(everything["total"].as_u64().unwrap() as usize, all.len());
    // A RelatedPerson is known to the patient-facing APIs only: a clinician's $everything leaves it out without
    // a word, and says so only when asked for it by name.
    let said = |bundle: &Value| serde_json::to_string(&entries(bundle, "outcome")).unwrap();
    assert!(!said(&everything).contains("IM1-2106"), "{}", said(&everything));
    let related = get(
        &proxy,
        &format!("Patient/{patient}/$everything?_type=RelatedPerson"),
        &t,
    )
    .await;
    assert!(said(&related).contains("IM1-2106"), "{related}");
    // And what supports the record (R4: "e.g. linked practitioners"): each Practitioner what is returned names,
    // once, the patient's usual GP among them; none when _type leaves them out, only them when it names them.
    let people: Vec<&Value> = all
        .iter()
        .filter(|r| r["resourceType"] == "Practitioner")
        .copied()
        .collect();
    let mut named = std::collections::BTreeSet::new();
    for r in all.iter().filter(|r| r["resourceType"] != "Practitioner") {
        im1_fhir::record_ops::each_reference(&im1_fhir::tree::Tree::from(*r), &mut |reference| {
            if reference.starts_with("Practitioner/") {
                named.insert(reference.to_string());
            }
        });
    }
    let returned: std::collections::BTreeSet<String> = people
        .iter()
        .map(|p| format!("Practitioner/{}", p["id"].as_str().unwrap()))
        .collect();
    assert_eq!(returned.len(), people.len(), "each once");
    assert_eq!(returned, named);
    assert!(returned.contains(all[0]["generalPractitioner"][0]["reference"].as_str().unwrap()));
    // Nothing else of the practice's (a Slot an appointment names is its book, not the record's support).
    let record_types = ["Patient", "Medication", "Appointment", "RelatedPerson"];
    for r in &all {
        let resource_type = r["resourceType"].as_str().unwrap();
        assert!(
            common::RECORD_ITEMS.contains(&resource_type)
                || record_types.contains(&resource_type)
                || resource_type == "Practitioner",
            "{resource_type} in $everything"
        );
    }
    let conditions = get(&proxy, &format!("Patient/{patient}/$everything?_type=Condition"), &t).await;
    let conditions = entries(&conditions, "match");
    assert!(!conditions.is_empty() && conditions.iter().all(|r| r["resourceType"] == "Condition"));
    // With Practitioner beside a record type: those the returned items name, not the whole record's.
    let with = get(
        &proxy,
        &format!("Patient/{patient}/$everything?_type=Condition,Practitioner&_count=200"),
        &t,
    )
    .await;
    let with = entries(&with, "match");
    let conditions_with: Vec<im1_fhir::tree::Tree> = with
        .iter()
        .filter(|r| r["resourceType"] == "Condition")
        .map(|r| im1_fhir::tree::Tree::from(*r))
        .collect();
    let named_by_conditions: std::collections::BTreeSet<String> =
        im1_fhir::record_ops::ids_named(conditions_with.iter(), "Practitioner")
            .into_iter()
            .collect();
    let people_with: std::collections::BTreeSet<String> = with
        .iter()
        .filter(|r| r["resourceType"] == "Practitioner")
        .map(|p| p["id"].as_str().unwrap().to_string())
        .collect();
    assert!(!people_with.is_empty());
    assert_eq!(people_with, named_by_conditions);
    assert!(people_with.len() < returned.len(), "fewer than the whole record names");
    let only = get(
        &proxy,
        &format!("Patient/{patient}/$everything?_type=Practitioner&_count=200"),
        &t,
    )
    .await;
    let only: std::collections::BTreeSet<String> = entries(&only, "match")
        .iter()
        .map(|p| format!("{}/{}", p["resourceType"].as_str().unwrap(), p["id"].as_str().unwrap()))
        .collect();
    assert_eq!(only, returned);
    // The Medications the prescriptions name come too (read, not searched), alone when _type names them.
    let named: std::collections::BTreeSet<String> = all
        .iter()
        .filter_map(|r| r["medicationReference"]["reference"].as_str().map(String::from))
        .collect();
    let medications = |list: &[&Value]| -> std::collections::BTreeSet<String> {
        let medications = list.iter().filter(|r| r["resourceType"] == "Medication");
        medications
            .map(|r| format!("Medication/{}", r["id"].as_str().unwrap()))
            .collect()
    };
    assert!(!named.is_empty());
    assert_eq!(medications(&all), named);
    let only = get(
        &proxy,
        &format!("Patient/{patient}/$everything?_type=Medication&_count=200"),
        &t,
    )
    .await;
    let only = entries(&only, "match");
    assert_eq!(medications(&only), named);
    assert_eq!(only.len(), named.len());

    // _type narrows to the types named (the Patient only if named); _since to what was updated since.
    let narrowed = get(
        &proxy,
        &format!("Patient/{patient}/$everything?_type=Condition,AllergyIntolerance&_count=200"),
        &t,
    )
    .await;
    let narrowed = entries(&narrowed, "match");
    let expected = all
        .iter()
        .filter(|r| r["resourceType"] == "Condition" || r["resourceType"] == "AllergyIntolerance")
        .count();
    assert!(expected > 0);
    assert_eq!(narrowed.len(), expected);
    // Repeated, the lists add up.
    let repeated = get(
        &proxy,
        &format!("Patient/{patient}/$everything?_type=Condition&_type=AllergyIntolerance&_count=200"),
        &t,
    )
    .await;
    assert_eq!(entries(&repeated, "match").len(), expected);
    // _since narrows only what says when it last changed: no item does (no GP system's API dates an item's
    // last change), so all are kept, and the Bundle says so rather than passing everything off as changed.
    let since = get(
        &proxy,
        &format!("Patient/{patient}/$everything?_since=2100-01-01T00:00:00Z&_count=200"),
        &t,
    )
    .await;
    assert_eq!(entries(&since, "match").len(), all.len());
    let said = entries(&since, "outcome")
        .iter()
        .flat_map(|o| o["issue"].as_array().unwrap().iter())
        .find(|i| i["details"]["coding"][0]["code"] == "IM1-1218")
        .map(|i| i["diagnostics"].as_str().unwrap_or_default().to_string())
        .unwrap_or_else(|| panic!("no IM1-1218 in {since}"));
    assert!(said.contains("Condition") && said.contains("Patient"), "{said}");
    // Narrowed by _type, it names only the types asked for.
    let typed = get(
        &proxy,
        &format!("Patient/{patient}/$everything?_since=2100-01-01T00:00:00Z&_type=Condition"),
        &t,
    )
    .await;
    let said = serde_json::to_string(&entries(&typed, "outcome")).unwrap();
    assert!(
        said.contains("no Condition here") && !said.contains("Patient,"),
        "{said}"
    );
    // start and end keep what was cared for within them, by each item's own date (an Observation's
    // effective date); the Patient and what carries no care date stay.
    let effective = |r: &&Value| r["effectiveDateTime"].as_str().map(|d| d[..10].to_string());
    let mut days: Vec<String> = all.iter().filter_map(effective).collect();
    days.sort();
    let day = days[days.len() / 2].clone();
    for (query, inside) in [
        (
            format!("start={day}"),
            Box::new(|d: &str| d >= day.as_str()) as Box<dyn Fn(&str) -> bool>,
        ),
        (format!("end={day}"), Box::new(|d: &str| d <= day.as_str())),
        (format!("start={day}&end={day}"), Box::new(|d: &str| d == day.as_str())),
    ] {
        let cared = get(&proxy, &format!("Patient/{patient}/$everything?{query}&_count=200"), &t).await;
        let cared = entries(&cared, "match");
        assert_eq!(cared[0]["resourceType"], "Patient", "{query}");
        let kept: Vec<String> = cared.iter().filter_map(effective).collect();
        let expected: Vec<&String> = days.iter().filter(|d| inside(d)).collect();
        assert!(kept.iter().all(|d| inside(d)), "{query}: {kept:?}");
        assert_eq!(kept.len(), expected.len(), "{query}");
        assert!(kept.len() < days.len(), "{query}");
        // A problem's or an allergy's care date is its onset where it has one, not when it was recorded
        // (those recorded to the day compared here: a year or month onset straddles the day).
        let onset = |r: &&Value| {
            let dated = ["onsetDateTime", "recordedDate"].iter().find_map(|k| r[*k].as_str());
            dated.and_then(|d| d.get(..10)).map(String::from)
        };
        for resource_type in ["Condition", "AllergyIntolerance"] {
            let of_type = |list: &[&Value]| -> Vec<String> {
                let typed = list.iter().filter(|r| r["resourceType"] == resource_type);
                typed.filter_map(onset).collect()
            };
            let expected = of_type(&all).into_iter().filter(|d| inside(d)).count();
            assert_eq!(of_type(&cared).len(), expected, "{query}: {resource_type}");
        }
        // Medications have no care date: those the prescriptions kept name come, and only those.
        let named_within: std::collections::BTreeSet<String> = cared
            .iter()
            .filter_map(|r| r["medicationReference"]["reference"].as_str().map(String::from))
            .collect();
        assert_eq!(medications(&cared), named_within, "{query}");
    }
    // Later pages keep the window, under lenient handling too.
    let paged: Value = proxy
        .get_lenient(&format!("Patient/{patient}/$everything?start={day}&_count=3"), &t)
        .await
        .json()
        .await
        .unwrap();
    let next = common::link(&paged, "next").expect("a next page");
    assert!(next.contains(&format!("start={day}")), "{next}");
    outcome(
        proxy
            .get(
                &format!("Patient/{patient}/$everything?start=2021-01-01&end=2020-01-01"),
                &t,
            )
            .await,
        400,
    )
    .await;
    // What it cannot do is said, not ignored.
    for query in [
        "_since=yesterday",
        "_type=Nonsense",
        "start=yesterday",
        "start=2020-01-01&start=2021-01-01",
        "end=2020-01-01,2021-01-01",
        "colour=blue",
        "_sort=date",
        "_include=Condition:encounter",
    ] {
        outcome(
            proxy.get(&format!("Patient/{patient}/$everything?{query}"), &t).await,
            400,
        )
        .await;
    }
    proxy.stop().await;
    sims.shutdown().await;
}
