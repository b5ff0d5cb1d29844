//! The ConceptMaps the mappings use are served: read, searched, and `$translate` gives the same code the
//! mappings produced.
use crate::common;

use common::{outcome, token, Proxy};
use im1_fhir::auth::Role;
use serde_json::Value;

async fn get(proxy: &Proxy, path: &str, t: &str) -> Value {
    let response = proxy.get(path, t).await;
    assert_eq!(response.status(), 200, "{path}");
    response.json().await.unwrap()
}

#[tokio::test]
async fn concept_maps_are_read_searched_and_translate_codes() {
    let proxy = Proxy::start(Vec::new(), Default::default()).await;
    let t = token(Role::Clinician, &["Y90001"]);
    let map = get(&proxy, "ConceptMap/emis-code-id", &t).await;
    assert_eq!(map["url"], "https://im1-fhir.dev/ConceptMap/emis-code-id");
    im1_fhir_model::check_strict(&map).unwrap();
    let all = get(&proxy, "ConceptMap", &t).await;
    assert!(all["total"].as_u64().unwrap() >= 40);
    let one = get(&proxy, "ConceptMap?url=https://im1-fhir.dev/ConceptMap/ctv3-snomed", &t).await;
    assert_eq!(one["total"], 1);
    assert!(
        one["link"][0]["url"].as_str().unwrap().contains("url="),
        "{}",
        one["link"]
    );
    // Paged like any search: every map once.
    let total = all["total"].as_u64().unwrap() as usize;
    let mut page = get(&proxy, "ConceptMap?_count=7", &t).await;
    let mut ids = std::collections::BTreeSet::new();
    loop {
        let entries = common::entries(&page, "match");
        assert!(entries.len() <= 7);
        ids.extend(entries.iter().map(|m| m["id"].as_str().unwrap().to_string()));
        match common::link(&page, "next") {
            Some(next) => page = get(&proxy, &next, &t).await,
            None => break,
        }
    }
    assert_eq!(ids.len(), total);

    // CodeId 10000053 is "Allergy to penicillin": SNOMED CT 91936005 in the EMIS mapping's output too.
    let translated = get(
        &proxy,
        "ConceptMap/emis-code-id/$translate?system=https://im1-fhir.dev/emis/code-id&code=10000053",
        &t,
    )
    .await;
    im1_fhir_model::check_strict(&translated).unwrap();
    assert_eq!(translated["parameter"][0]["valueBoolean"], true);
    let coding = &translated["parameter"][1]["part"][1]["valueCoding"];
    assert_eq!(coding["system"], "http://snomed.info/sct");
    assert_eq!(coding["code"], "91936005");
    let by_url = get(
        &proxy,
        "ConceptMap/$translate?url=https://im1-fhir.dev/ConceptMap/emis-sex&system=https://im1-fhir.dev/emis/sex&code=Indeterminate",
        &t,
    )
    .await;
    assert_eq!(by_url["parameter"][1]["part"][1]["valueCoding"]["code"], "other");
    // Every published Medicus appointment status has its FHIR status (Appointment.status is required).
    for (medicus, fhir) in [
        ("started", "arrived"),
        ("rescheduled", "cancelled"),
        ("seen", "fulfilled"),
    ] {
        let query = format!(
            "ConceptMap/medicus-appointment-status/$translate?system=https://im1-fhir.dev/medicus/appointment-status&code={medicus}"
        );
        let translated = get(&proxy, &query, &t).await;
        assert_eq!(
            translated["parameter"][1]["part"][1]["valueCoding"]["code"], fhir,
            "{medicus}: {translated}"
        );
    }
    let unknown = get(
        &proxy,
        "ConceptMap/emis-sex/$translate?system=https://im1-fhir.dev/emis/sex&code=Nonsense",
        &t,
    )
    .await;
    assert_eq!(unknown["parameter"][0]["valueBoolean"], false);

    // Only the target system asked for; reverse and other parameters are refused, not ignored.
    let sct = get(
        &proxy,
        "ConceptMap/emis-code-id/$translate?system=https://im1-fhir.dev/emis/code-id&code=10000053&targetsystem=http://snomed.info/sct",
        &t,
    )
    .await;
    assert_eq!(sct, translated);
    let elsewhere = get(
        &proxy,
        "ConceptMap/emis-code-id/$translate?system=https://im1-fhir.dev/emis/code-id&code=10000053&targetsystem=http://example.org/other",
        &t,
    )
    .await;
    assert_eq!(elsewhere["parameter"][0]["valueBoolean"], false, "{elsewhere}");
    for refused in [
        "reverse=true",
        "conceptMapVersion=2",
        "_count=1",
        "_elements=parameter",
        "_sort=code",
    ] {
        let query = format!(
            "ConceptMap/emis-code-id/$translate?system=https://im1-fhir.dev/emis/code-id&code=10000053&{refused}"
        );
        outcome(proxy.get(&query, &t).await, 400).await;
    }
    // What would page or shape a search's answer is ignored under lenient handling, as FHIR says.
    let lenient = proxy
        .get_lenient(
            "ConceptMap/emis-code-id/$translate?system=https://im1-fhir.dev/emis/code-id&code=10000053&_count=1",
            &t,
        )
        .await;
    assert_eq!(lenient.json::<Value>().await.unwrap(), translated);

    // Searches: a comma is any of, a repetition all of, a modifier is refused; lenient drops the unknown.
    let ids_of = |bundle: &Value| -> Vec<String> {
        let mut ids: Vec<String> = common::entries(bundle, "match")
            .iter()
            .map(|m| m["id"].as_str().unwrap().to_string())
            .collect();
        ids.sort();
        ids
    };
    let either = get(&proxy, "ConceptMap?_id=ctv3-snomed,emis-sex", &t).await;
    assert_eq!(ids_of(&either), ["ctv3-snomed", "emis-sex"]);
    let both = get(&proxy, "ConceptMap?_id=ctv3-snomed&_id=emis-sex", &t).await;
    assert!(ids_of(&both).is_empty(), "{both}");
    outcome(proxy.get("ConceptMap?_id:not=ctv3-snomed", &t).await, 400).await;
    outcome(proxy.get("ConceptMap?colour=blue", &t).await, 400).await;
    let lenient: Value = proxy
        .get_lenient("ConceptMap?colour=blue&_id=emis-sex", &t)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(ids_of(&lenient), ["emis-sex"]);
    assert_eq!(common::entries(&lenient, "outcome").len(), 1, "{lenient}");
    assert!(!lenient["link"][0]["url"].as_str().unwrap().contains("colour"));
    // Nothing is sorted or followed from ConceptMaps, and that is said, not silently ignored.
    for shaping in [
        "_sort=url",
        "_include=ConceptMap:source",
        "_revinclude=Observation:code",
    ] {
        outcome(proxy.get(&format!("ConceptMap?{shaping}"), &t).await, 400).await;
        let lenient: Value = proxy
            .get_lenient(&format!("ConceptMap?{shaping}&_id=emis-sex"), &t)
            .await
            .json()
            .await
            .unwrap();
        assert_eq!(ids_of(&lenient), ["emis-sex"], "{shaping}");
        assert_eq!(common::entries(&lenient, "outcome").len(), 1, "{shaping}: {lenient}");
        let name = shaping.split('=').next().unwrap();
        assert!(!lenient["link"][0]["url"].as_str().unwrap().contains(name), "{lenient}");
    }

    outcome(proxy.get("ConceptMap/not-a-map", &t).await, 404).await;
    outcome(proxy.get("ConceptMap/emis-sex/$translate", &t).await, 400).await;
    // R4: a code is translated from the system given with it; without one, the map's source is named.
    let no_system = outcome(proxy.get("ConceptMap/emis-sex/$translate?code=Male", &t).await, 400).await;
    assert!(
        no_system["issue"][0]["diagnostics"]
            .as_str()
            .unwrap_or_default()
            .contains("https://im1-fhir.dev/emis/sex"),
        "{no_system}"
    );
    // A read gives a subset as any read does, marked so.
    let summary = get(&proxy, "ConceptMap/ctv3-snomed?_summary=true", &t).await;
    assert!(summary.get("group").is_none(), "{summary}");
    assert_eq!(summary["meta"]["tag"][0]["code"], "SUBSETTED", "{summary}");
    let elements = get(&proxy, "ConceptMap/ctv3-snomed?_elements=url", &t).await;
    assert_eq!(elements["url"], "https://im1-fhir.dev/ConceptMap/ctv3-snomed");
    assert!(
        elements.get("group").is_none() && elements.get("name").is_none(),
        "{elements}"
    );
    assert_eq!(elements["meta"]["tag"][0]["code"], "SUBSETTED", "{elements}");
    // The same by POST with a Parameters body, as FHIR operations are also called.
    let post = |body: &'static str| {
        proxy
            .client
            .post(proxy.url("ConceptMap/emis-code-id/$translate"))
            .bearer_auth(&t)
            .header("content-type", "application/fhir+json")
            .body(body)
            .send()
    };
    // A Coding gives the system and the code; a url naming another map, or a second code, is refused.
    for body in [
        r#"{"resourceType":"Parameters","parameter":[{"name":"system","valueUri":"https://im1-fhir.dev/emis/code-id"},{"name":"code","valueCode":"10000053"}]}"#,
        r#"{"resourceType":"Parameters","parameter":[{"name":"coding","valueCoding":{"system":"https://im1-fhir.dev/emis/code-id","code":"10000053"}}]}"#,
        // A byte order mark, as some integration engines write one, is not part of the JSON.
        "\u{feff}{\"resourceType\":\"Parameters\",\"parameter\":[{\"name\":\"system\",\"valueUri\":\"https://im1-fhir.dev/emis/code-id\"},{\"name\":\"code\",\"valueCode\":\"10000053\"}]}",
    ] {
        let posted: Value = post(body).await.unwrap().json().await.unwrap();
        assert_eq!(posted, translated, "{body}: {posted}");
    }
    // By GET, a coding is `system|code`, as FHIR writes a token.
    let coded = "ConceptMap/emis-code-id/$translate?coding=https://im1-fhir.dev/emis/code-id%7C10000053";
    let got: Value = proxy.get(coded, &t).await.json().await.unwrap();
    assert_eq!(got, translated, "{got}");
    let twice = post(
        r#"{"resourceType":"Parameters","parameter":[{"name":"code","valueCode":"1"},{"name":"coding","valueCoding":{"code":"10000053"}}]}"#,
    );
    outcome(twice.await.unwrap(), 400).await;
    let elsewhere = "ConceptMap/emis-code-id/$translate?system=https://im1-fhir.dev/emis/code-id&code=10000053&url=https://im1-fhir.dev/ConceptMap/emis-sex";
    outcome(proxy.get(elsewhere, &t).await, 400).await;
    outcome(proxy.get("ConceptMap/emis-sex", "not-a-token").await, 401).await;
    proxy.stop().await;
}
