//! The thinnest real slice (issue 3): Patient read and search by NHS number, fetched live from the EMIS
//! simulator over HTTP and translated by `mappings/emis/Patient.yaml`.
use crate::common;

use common::{outcome, token, Proxy};
use im1_fhir::auth::token::{mint_demo, TokenRequest};
use im1_fhir::auth::Role;
use im1_fhir::demo::Simulators;
use im1_sim::common::faults::FaultRates;
use im1_sim::SimOptions;
use serde_json::Value;

const NHS_SEARCH: &str = "Patient?identifier=https://fhir.nhs.uk/Id/nhs-number|9000000009";

fn options() -> SimOptions {
    common::fixed_options(1, 12)
}

async fn start() -> (Simulators, Proxy) {
    let sims = Simulators::start(options()).await.unwrap();
    let proxy = Proxy::start(sims.practices(), sims.linkage()).await;
    (sims, proxy)
}

async fn json(response: reqwest::Response) -> Value {
    assert_eq!(response.status(), 200);
    response.json().await.unwrap()
}

fn only_match(bundle: &Value) -> Value {
    let matches: Vec<&Value> = bundle["entry"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["search"]["mode"] == "match")
        .collect();
    assert_eq!(matches.len(), 1, "{bundle}");
    matches[0]["resource"].clone()
}

#[tokio::test]
async fn a_clinician_finds_and_reads_a_uk_core_patient_by_nhs_number() {
    let (sims, proxy) = start().await;
    let t = token(Role::Clinician, &["Y90001"]);
    let bundle = json(proxy.get(NHS_SEARCH, &t).await).await;
    assert_eq!(bundle["type"], "searchset");
    assert_eq!(bundle["total"], 1);
    let patient = only_match(&bundle);
    assert_eq!(
        patient["meta"]["profile"][0],
        "https://fhir.hl7.org.uk/StructureDefinition/UKCore-Patient"
    );
    assert!(patient["meta"]["source"]
        .as_str()
        .unwrap()
        .contains("/emis/Y90001/Patient/"));
    assert_eq!(
        patient["identifier"][0],
        serde_json::json!({"system": "https://fhir.nhs.uk/Id/nhs-number", "value": "9000000009"})
    );
    assert_eq!(patient["name"][0]["family"], "Tester");
    assert_eq!(patient["gender"], "female");
    assert_eq!(patient["birthDate"], "1985-04-12");
    assert_eq!(patient["managingOrganization"]["identifier"]["value"], "Y90001");
    im1_fhir_model::check_strict(&patient).unwrap();
    im1_fhir_model::check_strict(&bundle).unwrap();

    // The read gives the same resource; the fullUrl is absolute.
    let id = patient["id"].as_str().unwrap();
    assert!(bundle["entry"][0]["fullUrl"]
        .as_str()
        .unwrap()
        .ends_with(&format!("/fhir/Patient/{id}")));
    let read = json(proxy.get(&format!("Patient/{id}"), &t).await).await;
    assert_eq!(read, patient);
    // The same search by POST, as a form (its media type in any case).
    let posted = proxy
        .client
        .post(proxy.url("Patient/_search"))
        .bearer_auth(&t)
        .header("content-type", "Application/X-WWW-Form-Urlencoded; charset=UTF-8")
        .body("identifier=https%3A%2F%2Ffhir.nhs.uk%2FId%2Fnhs-number%7C9000000009")
        .send()
        .await
        .unwrap();
    assert_eq!(only_match(&json(posted).await), patient);

    // And in XML.
    let xml = proxy
        .client
        .get(proxy.url(&format!("Patient/{id}?_format=xml")))
        .bearer_auth(&t)
        .send()
        .await
        .unwrap();
    assert_eq!(xml.status(), 200);
    let text = xml.text().await.unwrap();
    assert!(text.contains("<family value=\"Tester\"/>"), "{text}");
    assert_eq!(im1_fhir_model::xml_to_json(text.as_bytes()).unwrap(), read);
    proxy.stop().await;
    sims.shutdown().await;
}

#[tokio::test]
async fn a_patient_sees_only_their_own_record_through_the_patient_facing_api() {
    let (sims, proxy) = start().await;
    let patient_token = mint_demo(&TokenRequest {
        practices: vec!["Y90001".into()],
        role: Role::Patient,
        nhs_number: Some("9000000009".into()),
        scope: None,
        ttl_seconds: 600,
    })
    .unwrap();
    // Searching Patient without parameters finds the records their linkage opens: their own first (then the
    // child they act for: tests/proxy_access.rs); by NHS number, their own alone.
    let everyone = json(proxy.get("Patient", &patient_token).await).await;
    assert_eq!(everyone["entry"][0]["resource"]["identifier"][0]["value"], "9000000009");
    let own = only_match(&json(proxy.get(NHS_SEARCH, &patient_token).await).await);
    assert_eq!(own["identifier"][0]["value"], "9000000009");
    // The same Patient, the same id, whichever surface it came through.
    let clinician = token(Role::Clinician, &["Y90001"]);
    let via_partner = only_match(&json(proxy.get(NHS_SEARCH, &clinician).await).await);
    assert_eq!(own, via_partner);

    // Another patient's id (one nobody links this patient to, found by a clinician) is not found for them.
    let stranger = sims.world.read(|r| r.patients[2].nhs_number.clone());
    let stranger_search = format!("Patient?identifier=https://fhir.nhs.uk/Id/nhs-number|{stranger}");
    let found = only_match(&json(proxy.get(&stranger_search, &clinician).await).await);
    let stranger_id = found["id"].as_str().unwrap();
    outcome(proxy.get(&format!("Patient/{stranger_id}"), &patient_token).await, 404).await;
    // Searching for someone else gives nothing.
    let bundle = json(proxy.get(&stranger_search, &patient_token).await).await;
    assert_eq!(bundle["total"], 0);
    proxy.stop().await;
    sims.shutdown().await;
}

#[tokio::test]
async fn ids_cannot_cross_practices_or_be_forged() {
    let (sims, proxy) = start().await;
    let emis = token(Role::Clinician, &["Y90001"]);
    let patient = only_match(&json(proxy.get(NHS_SEARCH, &emis).await).await);
    let id = patient["id"].as_str().unwrap().to_string();
    // A clinician of another practice: not found, exactly as for an id that does not exist.
    let other = token(Role::Clinician, &["Y90003"]);
    let body = outcome(proxy.get(&format!("Patient/{id}"), &other).await, 404).await;
    let unknown = outcome(proxy.get("Patient/AAAAAAAAAAAAAAAAAAAAAAAA", &emis).await, 404).await;
    assert_eq!(body["issue"][0]["details"], unknown["issue"][0]["details"]);
    // A tampered id.
    let mut tampered = id.into_bytes();
    tampered[10] = if tampered[10] == b'A' { b'B' } else { b'A' };
    outcome(
        proxy
            .get(&format!("Patient/{}", String::from_utf8(tampered).unwrap()), &emis)
            .await,
        404,
    )
    .await;
    proxy.stop().await;
    sims.shutdown().await;
}

#[tokio::test]
async fn search_parameters_are_checked() {
    let (sims, proxy) = start().await;
    let t = token(Role::Clinician, &["Y90001"]);
    // Native searches find patients by NHS number, or by surname and date of birth: without either, a 400
    // naming both ways.
    let body = outcome(proxy.get("Patient?family=Tester", &t).await, 400).await;
    assert_eq!(body["issue"][0]["expression"][0], "birthdate");
    let said = body["issue"][0]["diagnostics"].as_str().unwrap();
    assert!(said.contains("'identifier', or 'family' and 'birthdate'"), "{said}");
    // Unknown parameters: 400 naming it, or a warning under Prefer: handling=lenient.
    let body = outcome(proxy.get(&format!("{NHS_SEARCH}&colour=blue"), &t).await, 400).await;
    assert_eq!(body["issue"][0]["expression"][0], "colour");
    let lenient = proxy.get_lenient(&format!("{NHS_SEARCH}&colour=blue"), &t).await;
    let bundle = json(lenient).await;
    let outcome_entry = bundle["entry"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["search"]["mode"] == "outcome")
        .unwrap();
    assert!(outcome_entry["resource"]["issue"][0]["diagnostics"]
        .as_str()
        .unwrap()
        .contains("colour"));
    // Other parameters filter after translation; a bad date is a 400.
    let hit = json(
        proxy
            .get(&format!("{NHS_SEARCH}&birthdate=1985&family=test&gender=female"), &t)
            .await,
    )
    .await;
    assert_eq!(hit["total"], 1);
    // A code's own system may be named.
    let gender = "gender=http://hl7.org/fhir/administrative-gender|female";
    let with_system = json(proxy.get(&format!("{NHS_SEARCH}&{gender}"), &t).await).await;
    assert_eq!(with_system["total"], 1);
    let miss = json(proxy.get(&format!("{NHS_SEARCH}&birthdate=gt1990"), &t).await).await;
    assert_eq!(miss["total"], 0);
    outcome(proxy.get(&format!("{NHS_SEARCH}&birthdate=yesterday"), &t).await, 400).await;
    // A Patient states no last update here: _lastUpdated is not offered rather than never matching.
    let body = outcome(
        proxy.get(&format!("{NHS_SEARCH}&_lastUpdated=ge1900-01-01"), &t).await,
        400,
    )
    .await;
    assert_eq!(body["issue"][0]["expression"][0], "_lastUpdated");
    // The ends of time are answered, not overflowed (these once dropped the connection), and minutes are a
    // precision FHIR search allows.
    for (query, total) in [
        ("birthdate=le9999-12-31", 1),
        ("birthdate=9999-12-31T23:59:59Z", 0),
        ("birthdate=ap9999-12-31", 0),
        ("birthdate=ap1985-04-12", 1),
        ("birthdate=ge1985-04-12T10:00Z", 1),
        ("birthdate=lt1985-04-12T10:00Z", 1),
        ("birthdate=gt1985-04-12T23:59Z", 0),
    ] {
        let bundle = json(proxy.get(&format!("{NHS_SEARCH}&{query}"), &t).await).await;
        assert_eq!(bundle["total"], total, "{query}");
    }
    outcome(
        proxy
            .get(&format!("{NHS_SEARCH}&birthdate=9999-12-31T23:59:59-05:00"), &t)
            .await,
        400,
    )
    .await;
    // Practice data is no reverse include of a patient (it is not searched from a record), and the
    // CapabilityStatement does not offer it.
    outcome(
        proxy.get(&format!("{NHS_SEARCH}&_revinclude=Schedule:actor"), &t).await,
        400,
    )
    .await;
    let statement = common::plain_json(&proxy.client, &proxy.url("metadata")).await;
    let patient_entry = common::capability_entry(&statement, "Patient");
    assert!(
        !patient_entry["searchRevInclude"].to_string().contains("Schedule:actor"),
        "{patient_entry}"
    );
    // _count above the maximum is clamped, and the self link says so.
    let clamped = json(proxy.get(&format!("{NHS_SEARCH}&_count=5000"), &t).await).await;
    assert!(
        clamped["link"][0]["url"].as_str().unwrap().ends_with("_count=200"),
        "{clamped}"
    );
    // _sort applies; an _include the type has no reference parameter for is reported, not silently dropped.
    let sorted = json(proxy.get(&format!("{NHS_SEARCH}&_sort=-birthdate"), &t).await).await;
    assert_eq!(sorted["total"], 1);
    assert!(sorted["entry"]
        .as_array()
        .unwrap()
        .iter()
        .all(|e| e["search"]["mode"] == "match"));
    let unknown = format!("{NHS_SEARCH}&_include=Patient:nonsense");
    outcome(proxy.get(&unknown, &t).await, 400).await;
    let included = json(proxy.get_lenient(&unknown, &t).await).await;
    let warning = included["entry"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["search"]["mode"] == "outcome")
        .unwrap();
    assert_eq!(
        warning["resource"]["issue"][0]["details"]["coding"][0]["code"],
        "IM1-1206"
    );
    // _summary=count and _elements.
    let count = json(proxy.get(&format!("{NHS_SEARCH}&_summary=count"), &t).await).await;
    assert_eq!(count["total"], 1);
    assert!(count.get("entry").is_none());
    let elements = json(proxy.get(&format!("{NHS_SEARCH}&_elements=birthDate"), &t).await).await;
    let shaped = only_match(&elements);
    assert!(shaped.get("name").is_none() && shaped["birthDate"] == "1985-04-12");
    // A type's element (`Patient.birthDate`) is that element of a Patient, and nothing of another type.
    let typed = json(
        proxy
            .get(
                &format!("{NHS_SEARCH}&_elements=Patient.birthDate,Observation.code"),
                &t,
            )
            .await,
    )
    .await;
    let typed = only_match(&typed);
    assert!(typed.get("name").is_none() && typed.get("code").is_none(), "{typed}");
    assert_eq!(typed["birthDate"], "1985-04-12", "{typed}");
    proxy.stop().await;
    sims.shutdown().await;
}

#[tokio::test]
async fn patients_are_found_by_surname_and_date_of_birth_alike_at_every_practice() {
    let (sims, proxy) = start().await;
    let mut found_at = Vec::new();
    for ods in ["Y90001", "Y90002", "Y90003"] {
        let t = token(Role::Clinician, &[ods]);
        let count = |query: &'static str| {
            let (proxy, t) = (&proxy, &t);
            async move {
                let bundle = json(proxy.get(&format!("Patient?{query}"), t).await).await;
                common::matches(&bundle)
            }
        };
        // The surname as it starts, in any case, current or former (Alex Tester was Alex Sample), and the
        // date of birth as one day.
        let found = count("family=Tester&birthdate=1985-04-12").await;
        assert_eq!(found.len(), 1, "{ods}");
        assert_eq!(found[0]["identifier"][0]["value"], "9000000009", "{ods}");
        assert_eq!(count("family=tes&birthdate=eq1985-04-12").await.len(), 1, "{ods}");
        assert_eq!(count("family=SAMPLE&birthdate=1985-04-12").await.len(), 1, "{ods}");
        assert_eq!(
            count("family:exact=Tester&birthdate=1985-04-12").await.len(),
            1,
            "{ods}"
        );
        assert_eq!(count("family=Tester&birthdate=1985-04-13").await.len(), 0, "{ods}");
        assert_eq!(
            count("family=Tester&birthdate=1985-04-12&given=Sam").await.len(),
            0,
            "{ods}"
        );
        // The same Patient but for the practice managing it.
        let mut same = common::comparable(&found[0], &Default::default());
        same.as_object_mut().unwrap().remove("managingOrganization");
        found_at.push(same);
        // What a native demographic search cannot be asked: a 400 saying so.
        for (query, code) in [
            ("family=Tester&birthdate=1985", "IM1-1212"),
            ("family=Tester&birthdate=ge1985-04-12", "IM1-1212"),
            ("family:contains=est&birthdate=1985-04-12", "IM1-1212"),
            ("family=Tester,Sample&birthdate=1985-04-12", "IM1-1212"),
            ("given=Alex&birthdate=1985-04-12", "IM1-1204"),
        ] {
            let body = outcome(proxy.get(&format!("Patient?{query}"), &t).await, 400).await;
            assert_eq!(
                body["issue"][0]["details"]["coding"][0]["code"], code,
                "{ods} {query}: {body}"
            );
        }
        // A surname of white space finds nothing, and is not asked; an identifier no native search can take
        // leaves the surname and date of birth to serve (`system|` is any NHS number).
        let blank = json(proxy.get("Patient?family=%20&birthdate=1985-04-12", &t).await).await;
        assert_eq!(blank["total"], 0, "{ods}: {blank}");
        let said = &common::entries(&blank, "outcome")[0]["issue"][0]["details"]["coding"][0]["code"];
        assert_eq!(said, "IM1-1213", "{ods}: {blank}");
        let any_number = "identifier=https://fhir.nhs.uk/Id/nhs-number%7C&family=Tester&birthdate=1985-04-12";
        assert_eq!(count(any_number).await.len(), 1, "{ods}");
        // With an NHS number, the date of birth only narrows (the native search is by the number).
        let narrowed = json(proxy.get(&format!("{NHS_SEARCH}&birthdate=ge1980&family=t"), &t).await).await;
        assert_eq!(narrowed["total"], 1, "{ods}: {narrowed}");
    }
    assert_eq!(found_at[0], found_at[1], "EMIS and SystmOne");
    assert_eq!(found_at[0], found_at[2], "EMIS and Medicus");
    proxy.stop().await;
    sims.shutdown().await;
}

#[tokio::test]
async fn identifiers_the_native_search_cannot_take_are_answered_alike_at_every_practice() {
    let (sims, proxy) = start().await;
    for ods in ["Y90001", "Y90002", "Y90003"] {
        let t = token(Role::Clinician, &[ods]);
        // Not an NHS number (length, letters, check digit), or another system: no patient, and the Bundle
        // says why; nothing goes to the GP system (which refused some of these as a 502 before).
        for value in [
            "x",
            "123",
            "9000000008",
            "https://fhir.nhs.uk/Id/nhs-number|",
            "https://fhir.nhs.uk/Id/nhs-number|900000000",
            "https://example.org/other|9000000009",
        ] {
            let query = format!("Patient?identifier={}", value.replace('|', "%7C"));
            let response = proxy.get(&query, &t).await;
            assert_eq!(response.status(), 200, "{ods} {value}");
            let bundle: Value = response.json().await.unwrap();
            assert_eq!(bundle["total"], 0, "{ods} {value}");
            let warning = common::entries(&bundle, "outcome");
            assert_eq!(
                warning[0]["issue"][0]["details"]["coding"][0]["code"], "IM1-1213",
                "{ods} {value}: {bundle}"
            );
            // Quoting the value whole, and why: another system is not an invalid NHS number.
            let said = warning[0]["issue"][0]["diagnostics"].as_str().unwrap();
            let why = match value.starts_with("https://example.org") {
                true => "is an identifier of another system than NHS numbers",
                false => "is not a valid NHS number",
            };
            assert!(said.starts_with(&format!("'{value}' {why}")), "{ods} {value}: {said}");
        }
        // A list of NHS numbers: the native search takes one, so a 400 rather than the first one's answer.
        let body = outcome(proxy.get("Patient?identifier=9000000017,9000000009", &t).await, 400).await;
        assert_eq!(body["issue"][0]["details"]["coding"][0]["code"], "IM1-1212", "{ods}");
        // Everyone but one NHS number is nothing a native search can be asked (it was silently nothing).
        let body = outcome(proxy.get("Patient?identifier:not=9000000009", &t).await, 400).await;
        assert_eq!(body["issue"][0]["details"]["coding"][0]["code"], "IM1-1212", "{ods}");
        // A valid one without a system is still found.
        let found = json(proxy.get("Patient?identifier=9000000009", &t).await).await;
        assert_eq!(found["total"], 1, "{ods}");
        // And by its id, read rather than searched (the native search takes NHS numbers only).
        let id = found["entry"][0]["resource"]["id"].as_str().unwrap();
        let by_id = json(proxy.get(&format!("Patient?_id={id}"), &t).await).await;
        assert_eq!(by_id["total"], 1, "{ods}: {by_id}");
        assert_eq!(by_id["entry"][0]["resource"]["id"], id);
    }
    // The native calls are in the metrics by supplier, in seconds with their fraction (not whole milliseconds).
    let metrics = common::metrics(&proxy).await;
    for supplier in ["emis", "systmone", "medicus"] {
        let sum = metrics
            .lines()
            .find(|l| {
                l.starts_with(&format!(
                    "im1_fhir_native_call_duration_seconds_sum{{supplier=\"{supplier}\"}}"
                ))
            })
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or_else(|| panic!("no native call durations for {supplier}:\n{metrics}"));
        assert!(sum > 0.0, "{supplier}: {sum}");
    }
    proxy.stop().await;
    sims.shutdown().await;
}

#[tokio::test]
async fn native_failures_become_502_and_504() {
    // Every EMIS reply is a server error.
    let sims = Simulators::start_with(options(), |emis, _, _| {
        emis.faults = FaultRates {
            server_error: 1.0,
            ..FaultRates::default()
        };
    })
    .await
    .unwrap();
    let proxy = Proxy::start(sims.practices(), sims.linkage()).await;
    let t = token(Role::Clinician, &["Y90001"]);
    outcome(proxy.get(NHS_SEARCH, &t).await, 502).await;
    proxy.stop().await;
    sims.shutdown().await;

    // Every EMIS reply is slower than the proxy's native deadline.
    let sims = Simulators::start_with(options(), |emis, _, _| {
        emis.faults = FaultRates {
            latency: 1.0,
            latency_ms: 2_000,
            ..FaultRates::default()
        };
    })
    .await
    .unwrap();
    let native = im1_fhir::config::NativeConfig {
        timeout_ms: 300,
        retries: 1,
        max_in_flight: 2,
        breaker: Default::default(),
    };
    let proxy = Proxy::start_with(sims.practices(), sims.linkage(), native, Default::default()).await;
    outcome(proxy.get(NHS_SEARCH, &t).await, 504).await;
    proxy.stop().await;
    sims.shutdown().await;
}

#[tokio::test]
async fn client_fault_headers_never_reach_the_simulator() {
    let (sims, proxy) = start().await;
    let t = token(Role::Clinician, &["Y90001"]);
    let response = proxy
        .client
        .get(proxy.url(NHS_SEARCH))
        .bearer_auth(&t)
        .header("X-Sim-Fault", "500")
        .header("X-Request-ID", "trace-me-42")
        .send()
        .await
        .unwrap();
    assert_eq!(response.headers()["x-request-id"], "trace-me-42");
    assert_eq!(json(response).await["total"], 1);
    proxy.stop().await;
    sims.shutdown().await;
}

#[tokio::test]
async fn shutdown_lets_in_flight_requests_finish() {
    let sims = Simulators::start_with(options(), |emis, _, _| {
        emis.faults = FaultRates {
            latency: 1.0,
            latency_ms: 400,
            ..FaultRates::default()
        };
    })
    .await
    .unwrap();
    let mut proxy = Proxy::start(sims.practices(), sims.linkage()).await;
    let t = token(Role::Clinician, &["Y90001"]);
    let (client, url) = (proxy.client.clone(), proxy.url(NHS_SEARCH));
    let in_flight = tokio::spawn(async move { client.get(url).bearer_auth(t).send().await });
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    let running = proxy.running.take().unwrap();
    let stopping = tokio::spawn(running.shutdown());
    let response = in_flight.await.unwrap().unwrap();
    assert_eq!(response.status(), 200);
    stopping.await.unwrap();
    // Stopped: new connections are refused.
    assert!(proxy.client.get(proxy.url("metadata")).send().await.is_err());
    sims.shutdown().await;
}

/// `active` says whether the record is in use at the practice: registered there and alive. Seeded patient 5
/// has died; every supplier says so the same way.
#[tokio::test]
async fn active_is_false_for_a_patient_who_has_died_through_every_supplier() {
    let (sims, proxy) = start().await;
    let practices = ["Y90001", "Y90002", "Y90003"];
    let t = token(Role::System, &practices);
    for (index, alive) in [(0, true), (5, false)] {
        let nhs = sims.world.read(|r| r.patients[index].nhs_number.clone());
        let bundle = json(
            proxy
                .get(
                    &format!("Patient?identifier=https://fhir.nhs.uk/Id/nhs-number|{nhs}"),
                    &t,
                )
                .await,
        )
        .await;
        let patients = common::matches(&bundle);
        assert_eq!(patients.len(), 3, "patient {index}: one per practice");
        for patient in &patients {
            let source = patient["meta"]["source"].as_str().unwrap_or_default();
            assert_eq!(patient["active"], alive, "patient {index} from {source}");
            assert_eq!(
                patient.get("deceasedDateTime").is_some(),
                !alive,
                "patient {index} from {source}"
            );
        }
    }
    proxy.stop().await;
    sims.shutdown().await;
}
