//! Every bad input gets an OperationOutcome with the right status, and the server keeps serving (issue 3).
use crate::common;

use common::{outcome, token, Proxy};
use im1_fhir::auth::Role;

async fn proxy() -> Proxy {
    Proxy::start(Vec::new(), Default::default()).await
}

#[tokio::test]
async fn metadata_and_smart_configuration_are_public() {
    let proxy = proxy().await;
    let response = proxy.client.get(proxy.url("metadata")).send().await.unwrap();
    assert_eq!(response.status(), 200);
    let statement: serde_json::Value = response.json().await.unwrap();
    assert_eq!(statement["resourceType"], "CapabilityStatement");
    assert_eq!(statement["fhirVersion"], "4.0.1");
    // Nothing here is versioned, and the statement says so of every type.
    let resources = statement["rest"][0]["resource"].as_array().unwrap();
    assert!(resources.iter().all(|r| r["versioning"] == "no-version"), "{statement}");
    // R4's modes: terminology is what the ConceptMaps translate between; another mode is a 400.
    let terminology = common::plain_json(&proxy.client, &proxy.url("metadata?mode=terminology")).await;
    assert_eq!(terminology["resourceType"], "TerminologyCapabilities", "{terminology}");
    im1_fhir_model::check_strict(&terminology).unwrap();
    let systems: Vec<&str> = terminology["codeSystem"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|c| c["uri"].as_str())
        .collect();
    assert!(systems.contains(&"http://snomed.info/sct"), "{systems:?}");
    let full = common::plain_json(&proxy.client, &proxy.url("metadata?mode=full")).await;
    assert_eq!(full["resourceType"], "CapabilityStatement");
    outcome(
        proxy
            .client
            .get(proxy.url("metadata?mode=everything"))
            .send()
            .await
            .unwrap(),
        400,
    )
    .await;
    // HEAD: the same headers, no body.
    let head = proxy.client.head(proxy.url("metadata")).send().await.unwrap();
    assert_eq!(head.status(), 200);
    assert!(head.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("application/fhir+json"));
    assert!(head.bytes().await.unwrap().is_empty());
    let smart = proxy
        .client
        .get(proxy.url(".well-known/smart-configuration"))
        .send()
        .await
        .unwrap();
    // SMART App Launch: plain JSON, not a FHIR resource, whatever FHIR format is asked for.
    assert_eq!(smart.headers()["content-type"], "application/json");
    let as_xml = proxy
        .client
        .get(proxy.url(".well-known/smart-configuration"))
        .header("accept", "application/fhir+xml")
        .send()
        .await
        .unwrap();
    assert_eq!(as_xml.status(), 200);
    assert_eq!(as_xml.headers()["content-type"], "application/json");
    assert_eq!(smart.headers()["cache-control"], "no-cache");
    let smart: serde_json::Value = smart.json().await.unwrap();
    assert!(smart["capabilities"]
        .as_array()
        .unwrap()
        .iter()
        .any(|c| c == "permission-v2"));
    // No authorisation server is configured here: no flow is offered that has nowhere to go.
    assert_eq!(smart["grant_types_supported"], serde_json::json!([]), "{smart}");
    assert!(smart.get("token_endpoint").is_none() && smart.get("authorization_endpoint").is_none());
    assert!(!smart["capabilities"]
        .as_array()
        .unwrap()
        .iter()
        .any(|c| c == "launch-standalone"));
    proxy.stop().await;
}

#[tokio::test]
async fn missing_and_bad_tokens_are_401_with_www_authenticate() {
    let proxy = proxy().await;
    // No credentials: IM1-2001 and a bare challenge; a bad token: the challenge says invalid_token.
    for (response, code, error) in [
        (
            proxy.client.get(proxy.url("Patient/abc")).send().await.unwrap(),
            "IM1-2001",
            None,
        ),
        (
            proxy
                .client
                .get(proxy.url("Patient/abc"))
                .bearer_auth("nonsense")
                .send()
                .await
                .unwrap(),
            "IM1-2002",
            Some("error=\"invalid_token\""),
        ),
    ] {
        let challenge = response.headers()["www-authenticate"].to_str().unwrap().to_string();
        // Nothing of an answer to a token is kept by a shared cache or a browser.
        assert_eq!(response.headers()["cache-control"], "no-store");
        assert_eq!(response.headers()["vary"], "Accept");
        assert_eq!(response.headers()["x-content-type-options"], "nosniff");
        assert!(challenge.starts_with("Bearer"));
        // RFC 6750: no error code when no credentials were sent.
        let body = outcome(response, 401).await;
        assert_eq!(body["issue"][0]["details"]["coding"][0]["code"], code, "{body}");
        match error {
            Some(error) => assert!(challenge.contains(error), "{challenge}"),
            None => assert!(!challenge.contains("error="), "{challenge}"),
        }
    }
    // Two Authorization headers are ambiguous, whichever is valid.
    let t = token(Role::Clinician, &["Y90001"]);
    let twice = proxy
        .client
        .get(proxy.url("Patient/abc"))
        .header("authorization", format!("Bearer {t}"))
        .header("authorization", "Bearer nonsense")
        .send()
        .await
        .unwrap();
    let body = outcome(twice, 400).await;
    assert_eq!(body["issue"][0]["details"]["coding"][0]["code"], "IM1-2003");
    proxy.stop().await;
}

#[tokio::test]
async fn malformed_requests_are_refused_with_outcomes() {
    const TRANSLATE: &str = "ConceptMap/emis-sex/$translate";
    let proxy = proxy().await;
    let t = token(Role::Clinician, &["Y90001"]);
    let post = |path: &str, content_type: &str, body: Vec<u8>| {
        proxy
            .client
            .post(proxy.url(path))
            .bearer_auth(&t)
            .header("content-type", content_type)
            .body(body)
            .send()
    };
    // Bodies are judged where they are taken (an operation's Parameters): malformed JSON and XML, a nesting
    // bomb, a resource that is not valid FHIR.
    outcome(
        post(
            TRANSLATE,
            "application/fhir+json",
            b"{\"resourceType\": \"Patient\",".to_vec(),
        )
        .await
        .unwrap(),
        400,
    )
    .await;
    outcome(
        post(
            TRANSLATE,
            "application/fhir+xml",
            b"<Patient xmlns=\"http://hl7.org/fhir\"><id value=\"1\"/>".to_vec(),
        )
        .await
        .unwrap(),
        400,
    )
    .await;
    let bomb = format!("{}{}", "[".repeat(50_000), "]".repeat(50_000));
    let body = outcome(
        post(TRANSLATE, "application/fhir+json", bomb.into_bytes())
            .await
            .unwrap(),
        400,
    )
    .await;
    assert_eq!(body["issue"][0]["details"]["coding"][0]["code"], "IM1-1111");
    // An element with tens of thousands of attributes (each checked against the others by the XML parser,
    // seconds of CPU) is refused before it is parsed.
    let attributes: String = (0..20_000).map(|i| format!(" a{i}=\"x\"")).collect();
    let wide = format!("<Parameters xmlns=\"http://hl7.org/fhir\"><parameter{attributes}/></Parameters>");
    let body = outcome(
        post(TRANSLATE, "application/fhir+xml", wide.into_bytes())
            .await
            .unwrap(),
        400,
    )
    .await;
    assert_eq!(body["issue"][0]["details"]["coding"][0]["code"], "IM1-1109");
    assert!(
        body["issue"][0]["diagnostics"].as_str().unwrap().contains("attributes"),
        "{body}"
    );
    outcome(
        post(
            TRANSLATE,
            "application/fhir+json",
            br#"{"resourceType":"Patient","colour":"blue"}"#.to_vec(),
        )
        .await
        .unwrap(),
        400,
    )
    .await;
    // An operation's body is Parameters, whatever the type it is invoked on.
    let body = outcome(
        post(
            "Patient/abc/$everything",
            "application/fhir+json",
            br#"{"resourceType":"Patient"}"#.to_vec(),
        )
        .await
        .unwrap(),
        400,
    )
    .await;
    assert_eq!(body["issue"][0]["details"]["coding"][0]["code"], "IM1-1114", "{body}");
    // An operation not offered is that, whatever its body: not a complaint about the body.
    for path in ["Appointment/$book", "Appointment/abc/$cancel", "Patient/$validate"] {
        let appointment = br#"{"resourceType":"Appointment","status":"booked"}"#.to_vec();
        let refused = outcome(post(path, "application/fhir+json", appointment).await.unwrap(), 405).await;
        assert_eq!(
            refused["issue"][0]["details"]["coding"][0]["code"], "IM1-1009",
            "{path}: {refused}"
        );
    }
    // Wrong content type, oversize body.
    outcome(post(TRANSLATE, "text/plain", b"hello".to_vec()).await.unwrap(), 415).await;
    // A body of another FHIR version is not R4.
    let stu3 = post(
        TRANSLATE,
        "application/fhir+json; fhirVersion=3.0",
        br#"{"resourceType":"Parameters"}"#.to_vec(),
    );
    outcome(stu3.await.unwrap(), 415).await;
    let compressed = proxy
        .client
        .post(proxy.url(TRANSLATE))
        .bearer_auth(&t)
        .header("content-type", "application/fhir+json")
        .header("content-encoding", "gzip")
        .body(vec![0x1f, 0x8b, 0x08, 0x00])
        .send()
        .await
        .unwrap();
    outcome(compressed, 415).await;
    // A search by POST takes a form, not a resource: whatever the body is, or fails to be.
    for body in [&br#"{"resourceType":"Patient"}"#[..], b"{}", b"{not json"] {
        outcome(
            post("Patient/_search", "application/fhir+json", body.to_vec())
                .await
                .unwrap(),
            415,
        )
        .await;
    }
    outcome(
        post(TRANSLATE, "application/fhir+json", vec![b' '; 2 * 1024 * 1024])
            .await
            .unwrap(),
        413,
    )
    .await;
    // Writes are not served: 405 whatever the body, well-formed or not, and for every write method.
    outcome(
        post("Patient", "application/fhir+json", b"{not json".to_vec())
            .await
            .unwrap(),
        405,
    )
    .await;
    let update = proxy
        .client
        .put(proxy.url("Patient/abc"))
        .bearer_auth(&t)
        .header("content-type", "application/fhir+json")
        .body(r#"{"resourceType":"Condition"}"#)
        .send()
        .await
        .unwrap();
    outcome(update, 405).await;
    // A well-formed Patient: creating one is not supported by the mappings yet: 405, not 404 or 500.
    outcome(
        post(
            "Patient",
            "application/fhir+json",
            br#"{"resourceType":"Patient"}"#.to_vec(),
        )
        .await
        .unwrap(),
        405,
    )
    .await;
    // Unknown type, bad id, unsupported format, unknown parameter on an unmapped practice.
    outcome(proxy.get("Potato/1", &t).await, 404).await;
    outcome(proxy.get("Patient/bad_id!", &t).await, 400).await;
    outcome(proxy.get("Patient?_format=text/turtle", &t).await, 406).await;
    let response = proxy
        .client
        .get(proxy.url("Patient"))
        .bearer_auth(&t)
        .header("accept", "text/html")
        .send()
        .await
        .unwrap();
    outcome(response, 406).await;
    // Another FHIR version is not served either.
    let response = proxy
        .client
        .get(proxy.url("metadata"))
        .header("accept", "application/fhir+json; fhirVersion=3.0")
        .send()
        .await
        .unwrap();
    outcome(response, 406).await;
    outcome(proxy.get("Patient?_count=lots", &t).await, 400).await;
    let body = outcome(proxy.get("Patient?_elements=!!", &t).await, 400).await;
    assert_eq!(body["issue"][0]["details"]["coding"][0]["code"], "IM1-1217");
    // Elements below the root are not selectable; a type's own (`Patient.name`) is (see tests/patient.rs).
    for elements in ["name.family", "Patient.name.family", "patient.name"] {
        let body = outcome(proxy.get(&format!("Patient?_elements={elements}"), &t).await, 400).await;
        assert_eq!(
            body["issue"][0]["details"]["coding"][0]["code"], "IM1-1217",
            "{elements}"
        );
    }
    // Result parameters: only FHIR's values, and no modifiers (which would otherwise be dropped unseen);
    // `_summary=count` counts a search's matches, and a read has none.
    for query in [
        "Patient?_total=bogus",
        "Patient?_count:above=5",
        "Patient?_sort:text=birthdate",
        "Patient?_summary:x=true",
        "Patient/abc?_summary=count",
    ] {
        let body = outcome(proxy.get(query, &t).await, 400).await;
        assert_eq!(body["issue"][0]["details"]["coding"][0]["code"], "IM1-1201", "{query}");
    }

    outcome(proxy.client.delete(proxy.url("metadata")).send().await.unwrap(), 405).await;
    // Headers past the limits are answered with outcomes too, not hyper's bare replies, and carry what every
    // answer under the FHIR base carries.
    let big_header = "b".repeat(40 * 1024);
    let response = proxy
        .client
        .get(proxy.url("metadata"))
        .header("x-padding", big_header.as_str())
        .send()
        .await
        .unwrap();
    assert_eq!(response.headers()["cache-control"], "no-store");
    assert_eq!(response.headers()["x-content-type-options"], "nosniff");
    let body = outcome(response, 431).await;
    assert_eq!(body["issue"][0]["details"]["coding"][0]["code"], "IM1-1119");
    let mut many = proxy.client.get(proxy.url("metadata"));
    for i in 0..150 {
        many = many.header(format!("x-h{i}"), "1");
    }
    let body = outcome(many.send().await.unwrap(), 431).await;
    assert_eq!(body["issue"][0]["details"]["coding"][0]["code"], "IM1-1119");
    // Still serving.
    assert_eq!(
        proxy.client.get(proxy.url("metadata")).send().await.unwrap().status(),
        200
    );
    proxy.stop().await;
}

/// A read takes only what shapes its one resource: anything else (a search's parameters, paging, includes) is
/// a 400 naming it, never silently ignored; under `Prefer: handling=lenient` it is ignored, as FHIR says.
#[tokio::test]
async fn a_read_refuses_parameters_it_does_not_take() {
    let proxy = proxy().await;
    let t = token(Role::Clinician, &["Y90001"]);
    for query in ["colour=blue", "_count=1", "_include=ConceptMap:source", "_sort=url"] {
        let body = outcome(proxy.get(&format!("ConceptMap/emis-sex?{query}"), &t).await, 400).await;
        assert_eq!(
            body["issue"][0]["details"]["coding"][0]["code"], "IM1-1201",
            "{query}: {body}"
        );
        let name = query.split('=').next().unwrap();
        assert_eq!(body["issue"][0]["expression"][0], name, "{body}");
    }
    let read = proxy.get_lenient("ConceptMap/emis-sex?colour=blue&_count=1", &t).await;
    assert_eq!(read.status(), 200);
    let read: serde_json::Value = read.json().await.unwrap();
    assert_eq!(read["resourceType"], "ConceptMap", "{read}");
    // What a read does take still shapes it.
    let (status, summary) = common::get_json(&proxy, "ConceptMap/emis-sex?_elements=url&_pretty=true", &t).await;
    assert_eq!(status, 200);
    assert!(
        summary.get("group").is_none() && summary.get("url").is_some(),
        "{summary}"
    );
    // An interaction not offered at all is a 405 first, whatever it is given.
    outcome(proxy.get("AuditEvent/some-id?colour=blue", &t).await, 405).await;
    // An empty value is no parameter.
    assert_eq!(proxy.get("ConceptMap/emis-sex?_include=", &t).await.status(), 200);
    // The capability statement takes its mode and the format, and nothing else: it is given whole.
    let statement = |query: &str| proxy.client.get(proxy.url(&format!("metadata?{query}"))).send();
    assert_eq!(statement("mode=terminology&_format=json").await.unwrap().status(), 200);
    for query in ["colour=blue", "_elements=fhirVersion"] {
        outcome(statement(query).await.unwrap(), 400).await;
    }
    proxy.stop().await;
}

/// Every 405 says which methods its path does take (RFC 9110 §15.5.6), and interactions the server does not
/// offer are a 405 wherever FHIR defines them (history, conditional writes, searches of types read only by id).
#[tokio::test]
async fn refused_methods_say_what_their_path_takes() {
    let proxy = proxy().await;
    let t = token(Role::Clinician, &["Y90001"]);
    let cases = [
        (reqwest::Method::PUT, "Patient", "GET, HEAD"),
        (reqwest::Method::DELETE, "Patient?identifier=x", "GET, HEAD"),
        (reqwest::Method::PATCH, "Patient", "GET, HEAD"),
        (reqwest::Method::POST, "Patient", "GET, HEAD"),
        (reqwest::Method::DELETE, "Patient/abc", "GET, HEAD"),
        (reqwest::Method::PUT, "Patient/_search", "POST"),
        (reqwest::Method::GET, "Patient/_search", "POST"),
        (reqwest::Method::PUT, "metadata", "GET, HEAD"),
        (reqwest::Method::DELETE, "ConceptMap/emis-sex", "GET, HEAD"),
        (reqwest::Method::PUT, "Binary", ""),
        (reqwest::Method::DELETE, "Medication?code=x", ""),
        (reqwest::Method::GET, "Patient/abc/_history", ""),
        (reqwest::Method::GET, "Patient/abc/_history/1", ""),
        (reqwest::Method::GET, "Patient/_history", ""),
        (reqwest::Method::GET, "_history", ""),
        (reqwest::Method::GET, "Medication?patient=abc", ""),
        (reqwest::Method::GET, "Binary", ""),
        (reqwest::Method::GET, "AuditEvent/abc", ""),
        (reqwest::Method::PUT, "AuditEvent", "GET, HEAD"),
        // Operations are invoked by GET or POST only, at every level.
        (reqwest::Method::DELETE, "Patient/abc/$everything", "GET, HEAD, POST"),
        (
            reqwest::Method::PATCH,
            "ConceptMap/emis-sex/$translate?code=1",
            "GET, HEAD, POST",
        ),
        (reqwest::Method::PUT, "ConceptMap/$translate", "GET, HEAD, POST"),
        (reqwest::Method::DELETE, "$meta", "GET, HEAD, POST"),
        // No operation is offered at the system level.
        (reqwest::Method::GET, "$export", ""),
        (reqwest::Method::GET, "$meta", ""),
        (reqwest::Method::POST, ".well-known/smart-configuration", "GET, HEAD"),
        // Nor any interaction at the base: transaction, batch or a search of every type.
        (reqwest::Method::POST, "", ""),
        (reqwest::Method::GET, "", ""),
    ];
    // Past a history path is no FHIR interaction at all.
    outcome(proxy.get("Patient/abc/_history/1/extra", &t).await, 404).await;
    // The base is taken once: `/fhir/fhirmetadata` and `/fhir/fhir/...` are no paths of this server.
    for path in ["fhirmetadata", "fhir/metadata", "fhir/Patient?identifier=x"] {
        outcome(proxy.get(path, &t).await, 404).await;
    }
    for (method, path, allow) in cases {
        let response = proxy
            .client
            .request(method.clone(), proxy.url(path))
            .bearer_auth(&t)
            .send()
            .await
            .unwrap();
        let allowed = response.headers().get("allow").map(|v| v.to_str().unwrap().to_string());
        let body = outcome(response, 405).await;
        assert_eq!(allowed.as_deref(), Some(allow), "{method} {path}: {body}");
        assert_eq!(body["issue"][0]["code"], "not-supported", "{method} {path}");
        // Naming what is not supported, never an empty name.
        let said = body["issue"][0]["diagnostics"].as_str().unwrap_or_default();
        assert!(
            !said.starts_with(' ') && !said.contains(" ' "),
            "{method} {path}: {said}"
        );
    }
    proxy.stop().await;
}

#[tokio::test]
async fn browser_apps_may_send_their_token_across_origins() {
    let proxy = proxy().await;
    let start = proxy.audit.count().unwrap();
    let preflight = proxy
        .client
        .request(reqwest::Method::OPTIONS, proxy.url("Patient/abc"))
        .header("origin", "https://app.example")
        .header("access-control-request-method", "GET")
        .header("access-control-request-headers", "authorization, prefer")
        .send()
        .await
        .unwrap();
    assert!(preflight.status().is_success(), "{}", preflight.status());
    let header = |name: &str| {
        preflight
            .headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_ascii_lowercase()
    };
    // The Fetch standard: `*` never allows Authorization; it must be named.
    assert!(
        header("access-control-allow-headers").contains("authorization"),
        "{:?}",
        preflight.headers()
    );
    assert_eq!(header("access-control-allow-origin"), "*");
    // Any other OPTIONS is no preflight but an interaction: refused, and audited as every one is (the
    // preflight was not).
    let before = proxy.audit.count().unwrap();
    assert_eq!(before, start, "a preflight is no interaction");
    let t = token(Role::Clinician, &["Y90001"]);
    let bare = proxy
        .client
        .request(reqwest::Method::OPTIONS, proxy.url("Patient/abc"))
        .bearer_auth(&t)
        .send()
        .await
        .unwrap();
    let allowed = bare.headers().get("allow").map(|v| v.to_str().unwrap().to_string());
    outcome(bare, 405).await;
    assert_eq!(allowed.as_deref(), Some("GET, HEAD"));
    assert_eq!(proxy.audit.count().unwrap(), before + 1);
    // From another origin, the refusal is readable by the browser app that sent it.
    let cross = proxy
        .client
        .request(reqwest::Method::OPTIONS, proxy.url("Patient/abc"))
        .header("origin", "https://app.example")
        .bearer_auth(&t)
        .send()
        .await
        .unwrap();
    assert_eq!(cross.status(), 405);
    assert_eq!(
        cross
            .headers()
            .get("access-control-allow-origin")
            .map(|v| v.to_str().unwrap()),
        Some("*")
    );
    proxy.stop().await;
}

#[tokio::test]
async fn xml_is_served_when_asked() {
    let proxy = proxy().await;
    let response = proxy
        .client
        .get(proxy.url("metadata?_format=xml"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert!(response.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("application/fhir+xml"));
    let text = response.text().await.unwrap();
    assert!(
        text.contains("<CapabilityStatement xmlns=\"http://hl7.org/fhir\">"),
        "{}",
        &text[..200.min(text.len())]
    );
    // FHIR's MIME types as `_format`, their `+` encoded or not (unencoded, a query string's `+` is a space).
    for format in ["application/fhir+xml", "application/fhir%2Bxml"] {
        let response = proxy
            .client
            .get(proxy.url(&format!("metadata?_format={format}")))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200, "{format}");
        assert!(
            response.headers()["content-type"]
                .to_str()
                .unwrap()
                .starts_with("application/fhir+xml"),
            "{format}"
        );
    }
    proxy.stop().await;
}

#[tokio::test]
async fn operational_endpoints_answer() {
    let proxy = proxy().await;
    let root = proxy.base.trim_end_matches("/fhir").to_string();
    for path in ["/healthz", "/readyz", "/metrics"] {
        let response = proxy.client.get(format!("{root}{path}")).send().await.unwrap();
        assert_eq!(response.status(), 200, "{path}");
    }
    let metrics = common::metrics(&proxy).await;
    assert!(metrics.contains("im1_fhir_requests_total"), "{metrics}");
    proxy.stop().await;
}

#[tokio::test]
async fn request_ids_are_echoed_or_generated() {
    let proxy = proxy().await;
    let given = proxy
        .client
        .get(proxy.url("metadata"))
        .header("x-request-id", "abc-123")
        .send()
        .await
        .unwrap();
    assert_eq!(given.headers()["x-request-id"], "abc-123");
    let made = proxy
        .client
        .get(proxy.url("metadata"))
        .header("x-request-id", "bad id with spaces")
        .send()
        .await
        .unwrap();
    let id = made.headers()["x-request-id"].to_str().unwrap().to_string();
    assert_eq!(id.len(), 36, "{id}");
    // An id holding what may be an NHS number (ten digits or more in a row) is not logged or audited: the
    // server's own replaces it. Nine digits in a row are kept.
    for (sent, kept) in [
        ("nhs-9000000009", false),
        ("order-12345678901", false),
        ("run-123456789", true),
    ] {
        let answer = proxy
            .client
            .get(proxy.url("metadata"))
            .header("x-request-id", sent)
            .send()
            .await
            .unwrap();
        let echoed = answer.headers()["x-request-id"].to_str().unwrap().to_string();
        assert_eq!(echoed == sent, kept, "{sent}: {echoed}");
        assert!(kept || echoed.len() == 36, "{echoed}");
    }
    proxy.stop().await;
}

/// Past `max_requests_in_flight`, a FHIR request is turned away at once (503 IM1-5006, Retry-After), not
/// queued; the probes still answer; once the held request is done, requests are admitted again.
#[tokio::test]
async fn requests_past_the_in_flight_bound_are_turned_away_at_once() {
    // Every EMIS call takes a second: a first search (the Partner token, then the search) is held two.
    let sims = common::with_slow_emis(common::fixed_options(1, 3), 1_000).await;
    let server = im1_fhir::config::ServerConfig {
        max_requests_in_flight: 1,
        ..common::test_server()
    };
    let proxy = Proxy::start_with(sims.practices(), sims.linkage(), common::test_native(), server).await;
    let t = token(Role::Clinician, &["Y90001"]);
    let search = "Patient?identifier=https://fhir.nhs.uk/Id/nhs-number|9000000009";
    let held = {
        let (client, url, t) = (proxy.client.clone(), proxy.url(search), t.clone());
        tokio::spawn(async move { client.get(url).bearer_auth(t).send().await.unwrap().status() })
    };
    // Well inside the two seconds the first is held.
    tokio::time::sleep(std::time::Duration::from_millis(400)).await;
    let turned_away = proxy.get("metadata", &t).await;
    assert_eq!(turned_away.headers()["retry-after"], "1");
    assert_eq!(turned_away.headers()["x-content-type-options"], "nosniff");
    let body = outcome(turned_away, 503).await;
    assert_eq!(body["issue"][0]["details"]["coding"][0]["code"], "IM1-5006", "{body}");
    let root = proxy.base.trim_end_matches("/fhir").to_string();
    let healthz = proxy.client.get(format!("{root}/healthz")).send().await.unwrap();
    assert_eq!(healthz.status(), 200);
    assert_eq!(held.await.unwrap(), 200);
    assert_eq!(proxy.get("metadata", &t).await.status(), 200);
    proxy.stop().await;
    sims.shutdown().await;
}
