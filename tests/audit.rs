//! Every interaction leaves exactly one AuditEvent, committed before its response: successes, refusals,
//! failed authentication and errors alike; the auditor reads them back; a broken store fails closed; and a
//! proxy killed with SIGKILL in the middle of a load loses no event of a request that completed.
use crate::common;

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use common::{outcome, token, Proxy};
use im1_fhir::audit::{AuditConfig, AuditStore};
use im1_fhir::auth::Role;
use im1_fhir::demo::Simulators;
use im1_sim::SimOptions;
use serde_json::Value;
use std::collections::BTreeSet;

/// A client that gives up before its answer (here an HTTP/2 stream reset by its time-out) leaves an AuditEvent
/// too, with status 499: what the request reached until then is on record.
#[tokio::test]
async fn a_request_its_client_gives_up_on_is_audited() {
    // Every EMIS reply takes 1.5 s, and a first search makes two calls one after the other (the Partner token,
    // then the search): the client leaves between them, with 0.7 s of margin either side.
    let sims = common::with_slow_emis(options(), 1_500).await;
    let proxy = Proxy::start(sims.practices(), sims.linkage()).await;
    let t = token(Role::Clinician, &["Y90001"]);
    let impatient = reqwest::Client::builder()
        .http2_prior_knowledge()
        .timeout(std::time::Duration::from_millis(2_200))
        .build()
        .unwrap();
    let gave_up = impatient
        .get(proxy.url("Patient?identifier=https://fhir.nhs.uk/Id/nhs-number|9000000009"))
        .bearer_auth(&t)
        .header("x-request-id", "gave-up")
        .send()
        .await;
    assert!(gave_up.is_err_and(|e| e.is_timeout()));
    // Recorded once the server sees the reset stream.
    let mut event = None;
    for _ in 0..50 {
        event = common::audit_events(&proxy)
            .into_iter()
            .find(|e| common::audited_request_id(e).as_deref() == Some("gave-up"));
        if event.is_some() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let event = event.expect("the abandoned request is audited");
    let detail = |name: &str| {
        event["entity"]
            .as_array()
            .unwrap()
            .iter()
            .flat_map(|e| e["detail"].as_array().cloned().unwrap_or_default())
            .find(|d| d["type"] == name)
            .and_then(|d| d["valueString"].as_str().map(String::from))
    };
    assert_eq!(detail("status").as_deref(), Some("499"), "{event}");
    assert_eq!(event["outcome"], "4", "{event}");
    // With the native calls EMIS answered before the client left.
    assert!(common::cache_and_calls(&event).1 >= 1, "{event}");
    // Once: the request that was given up on is not recorded again.
    tokio::time::sleep(std::time::Duration::from_millis(1_500)).await;
    let times = common::audit_events(&proxy)
        .iter()
        .filter(|e| common::audited_request_id(e).as_deref() == Some("gave-up"))
        .count();
    assert_eq!(times, 1);
    proxy.stop().await;
    sims.shutdown().await;
}

fn options() -> SimOptions {
    common::fixed_options(1, 6)
}

async fn auditor_search(proxy: &Proxy, query: &str) -> Vec<Value> {
    let t = token(Role::Auditor, &["Y90001"]);
    common::search_matches(proxy, &format!("AuditEvent?{query}"), &t).await
}

#[tokio::test]
async fn every_interaction_is_audited_once_with_its_outcome() {
    let sims = Simulators::start(options()).await.unwrap();
    let proxy = Proxy::start(sims.practices(), sims.linkage()).await;
    let clinician = token(Role::Clinician, &["Y90001"]);
    let patient_token = token(Role::Patient, &["Y90001"]);

    // A mixed run: (path, token, expected status). Each request carries its own id.
    let search = "Patient?identifier=https://fhir.nhs.uk/Id/nhs-number|9000000009";
    let cases: Vec<(String, Option<String>, u16)> = vec![
        ("metadata".into(), None, 200),
        (search.into(), None, 401),
        (search.into(), Some("not-a-token".into()), 401),
        (search.into(), Some(clinician.clone()), 200),
        (search.into(), Some(clinician.clone()), 200),
        ("Patient?colour=blue".into(), Some(clinician.clone()), 400),
        ("Nonsense".into(), Some(clinician.clone()), 404),
        ("Patient/not-ours".into(), Some(clinician.clone()), 404),
        ("Condition".into(), Some(clinician.clone()), 400),
        ("AuditEvent".into(), Some(clinician.clone()), 403),
        (search.into(), Some(patient_token.clone()), 200),
    ];
    let mut ids = Vec::new();
    for (i, (path, t, status)) in cases.iter().enumerate() {
        let id = format!("audit-test-{i}");
        let mut request = proxy.client.get(proxy.url(path)).header("x-request-id", &id);
        if let Some(t) = t {
            request = request.bearer_auth(t);
        }
        let response = request.send().await.unwrap();
        assert_eq!(response.status().as_u16(), *status, "{path}");
        ids.push((id, *status));
    }
    // /healthz is operational, not an interaction.
    proxy
        .client
        .get(format!("{}/healthz", proxy.base.trim_end_matches("/fhir")))
        .send()
        .await
        .unwrap();

    // The response waited for its commit: the events are there now, exactly one per request.
    assert_eq!(proxy.audit.count().unwrap() as usize, cases.len());
    let events = common::audit_events(&proxy);
    for (id, status) in &ids {
        let matching: Vec<&Value> = events
            .iter()
            .filter(|e| common::audited_request_id(e).as_deref() == Some(id))
            .collect();
        assert_eq!(matching.len(), 1, "{id}: one event");
        let expected = match status {
            200..=399 => "0",
            400..=499 => "4",
            _ => "8",
        };
        assert_eq!(matching[0]["outcome"], expected, "{id}");
        im1_fhir_model::check_strict(matching[0]).unwrap();
    }
    // Failed authentication names nobody; a success names the user and the patient it returned.
    let unauthenticated = events
        .iter()
        .find(|e| common::audited_request_id(e).as_deref() == Some("audit-test-1"))
        .unwrap();
    assert!(!unauthenticated.to_string().contains("cis2-demo-clinician"));
    let found = events
        .iter()
        .find(|e| common::audited_request_id(e).as_deref() == Some("audit-test-3"))
        .unwrap();
    let text = found.to_string();
    assert!(
        text.contains("9000000009"),
        "the patient's NHS number is on record: {text}"
    );
    assert!(found["entity"]
        .as_array()
        .unwrap()
        .iter()
        .any(|e| e["detail"].to_string().contains("patients")
            || e["what"]["reference"]
                .as_str()
                .is_some_and(|r| r.starts_with("Patient/"))));

    // The repeated search was a cache hit: audited as such, with no native call; the first one called EMIS Web.
    let cache_of = |id: &str| {
        let event = events
            .iter()
            .find(|e| common::audited_request_id(e).as_deref() == Some(id))
            .unwrap();
        common::cache_and_calls(event)
    };
    let (cache, calls) = cache_of("audit-test-3");
    assert!(cache == "miss" && calls > 0, "the first search went to EMIS Web");
    assert_eq!(
        cache_of("audit-test-4"),
        ("hit".to_string(), 0),
        "the second was a cache hit"
    );

    // The auditor finds them through FHIR, by outcome and by patient; others may not look.
    let refused = auditor_search(&proxy, "outcome=4").await;
    assert_eq!(refused.len(), 7, "401, 401, 400, 404, 404, 400, 403");
    let patient_id = found["entity"]
        .as_array()
        .unwrap()
        .iter()
        .find_map(|e| e["what"]["reference"].as_str().filter(|r| r.starts_with("Patient/")))
        .unwrap()
        .to_string();
    let about_patient = auditor_search(&proxy, &format!("patient={patient_id}")).await;
    assert!(
        about_patient.len() >= 2,
        "both clinician searches are about the patient"
    );
    outcome(
        proxy
            .get("AuditEvent?colour=blue", &token(Role::Auditor, &["Y90001"]))
            .await,
        400,
    )
    .await;
    // The last date there is: nothing after it, and no overflow (this once dropped the connection).
    assert!(auditor_search(&proxy, "date=ge9999-12-31T23:59:59Z").await.is_empty());
    assert!(!auditor_search(&proxy, "date=le9999-12-31").await.is_empty());
    // Past year 9999 once in UTC: not a date, a 400.
    outcome(
        proxy
            .get(
                "AuditEvent?date=ge9999-12-31T23:59:59-05:00",
                &token(Role::Auditor, &["Y90001"]),
            )
            .await,
        400,
    )
    .await;
    proxy.stop().await;
    sims.shutdown().await;
}

#[tokio::test]
async fn a_failing_audit_store_fails_closed() {
    let sims = Simulators::start(options()).await.unwrap();
    let proxy = Proxy::start(sims.practices(), sims.linkage()).await;
    let t = token(Role::Clinician, &["Y90001"]);
    assert_eq!(proxy.get("Patient?identifier=9000000009", &t).await.status(), 200);
    let root = proxy.base.trim_end_matches("/fhir").to_string();
    let ready = || proxy.client.get(format!("{root}/readyz")).send();
    assert_eq!(ready().await.unwrap().status(), 200);
    proxy.audit.clone().close().await;
    // Not ready any more: a load balancer sends its requests elsewhere.
    assert_eq!(ready().await.unwrap().status(), 503);
    let body = outcome(proxy.get("Patient?identifier=9000000009", &t).await, 503).await;
    assert_eq!(body["issue"][0]["details"]["coding"][0]["code"], "IM1-5101");
    assert!(
        !body.to_string().contains("9000000009"),
        "the withheld answer does not leak: {body}"
    );
    proxy.stop().await;
    sims.shutdown().await;
}

/// The real binary under load, killed with SIGKILL: every request that got its response has its event.
#[tokio::test]
async fn no_completed_request_loses_its_event_when_the_process_is_killed() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("audit.db");
    // The demo listens on a port the OS chooses and says which on its first line (a port chosen here first
    // could be taken by another test's server before the demo binds it).
    let client = common::test_client();
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_im1-fhir"))
        .args(["demo", "--addr", "127.0.0.1:0", "--patients", "6", "--no-throttle"])
        .arg("--audit-db")
        .arg(&db)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    use tokio::io::AsyncBufReadExt;
    let mut lines = tokio::io::BufReader::new(child.stdout.take().unwrap()).lines();
    let line = tokio::time::timeout(std::time::Duration::from_secs(60), lines.next_line())
        .await
        .expect("the demo did not start")
        .unwrap()
        .unwrap_or_default();
    // The rest is read too: a closed pipe would fail the demo's next line.
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    let base = line
        .rsplit_once(" at ")
        .map(|(_, url)| url.trim_end_matches("/fhir").to_string())
        .unwrap_or_else(|| panic!("the demo's first line: {line}"));

    // Eight clients hammer the proxy; the process is killed while they run.
    let t = token(Role::Clinician, &["Y90001"]);
    let completed = std::sync::Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let mut workers = Vec::new();
    for worker in 0..8 {
        let (client, base, t, completed) = (client.clone(), base.clone(), t.clone(), completed.clone());
        workers.push(tokio::spawn(async move {
            for i in 0..1000 {
                let id = format!("kill-{worker}-{i}");
                let sent = client
                    .get(format!("{base}/fhir/Patient?identifier=9000000009"))
                    .bearer_auth(&t)
                    .header("x-request-id", &id)
                    .send()
                    .await;
                match sent {
                    Ok(response) if response.status() == 200 => {
                        if response.bytes().await.is_ok() {
                            completed.lock().unwrap().push(id);
                        }
                    }
                    _ => break,
                }
            }
        }));
    }
    tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
    child.start_kill().unwrap();
    child.wait().await.unwrap();
    for worker in workers {
        worker.await.unwrap();
    }
    let completed = completed.lock().unwrap().clone();
    assert!(completed.len() > 20, "the load ran ({} requests)", completed.len());

    // Reopen the store as a restarted proxy would, then read every event and look for every completed request.
    let store = AuditStore::open(&AuditConfig::new(&db)).unwrap();
    let connection = rusqlite::Connection::open(&db).unwrap();
    let mut statement = connection.prepare("SELECT json FROM audit_event").unwrap();
    let recorded: BTreeSet<String> = statement
        .query_map([], |row| row.get::<_, String>(0))
        .unwrap()
        .filter_map(|json| serde_json::from_str::<Value>(&json.unwrap()).ok())
        .filter_map(|event| common::audited_request_id(&event))
        .collect();
    for id in &completed {
        assert!(recorded.contains(id), "{id} completed but has no AuditEvent");
    }
    store.close().await;
}

#[tokio::test]
async fn the_audit_trail_pages_through_a_window_fixed_at_the_first_page() {
    let sims = Simulators::start(options()).await.unwrap();
    let proxy = Proxy::start(sims.practices(), sims.linkage()).await;
    let clinician = token(Role::Clinician, &["Y90001"]);
    let auditor = token(Role::Auditor, &["Y90001"]);
    for _ in 0..7 {
        proxy.get("Patient?identifier=9000000009", &clinician).await;
    }
    let next_of = |bundle: &Value| common::link(bundle, "next");
    for sort in ["", "&_sort=date"] {
        let mut page: Value = proxy
            .get(&format!("AuditEvent?_count=3{sort}"), &auditor)
            .await
            .json()
            .await
            .unwrap();
        let total = page["total"].as_u64().unwrap() as usize;
        assert!(total >= 7, "{page}");
        let mut recorded = Vec::new();
        loop {
            recorded.extend(common::entries(&page, "match").iter().map(|e| {
                (
                    e["recorded"].as_str().unwrap().to_string(),
                    e["id"].as_str().unwrap().to_string(),
                )
            }));
            // Events recorded while paging (each page's own among them) do not shift the pages.
            proxy.get("Patient?identifier=9000000009", &clinician).await;
            match next_of(&page) {
                Some(next) => page = proxy.get(&next, &auditor).await.json().await.unwrap(),
                None => break,
            }
        }
        let ids: BTreeSet<&str> = recorded.iter().map(|(_, id)| id.as_str()).collect();
        assert_eq!((recorded.len(), ids.len()), (total, total), "{sort}: every event once");
        let times: Vec<&str> = recorded.iter().map(|(t, _)| t.as_str()).collect();
        let mut ordered = times.clone();
        ordered.sort();
        if sort.is_empty() {
            ordered.reverse();
        }
        assert_eq!(times, ordered, "{sort}: in order");
    }
    outcome(proxy.get("AuditEvent?_sort=outcome", &auditor).await, 400).await;
    // outcome is a token: with its system too. An unknown parameter is a 400, or dropped under lenient handling.
    let coded = proxy
        .get(
            "AuditEvent?outcome=http://hl7.org/fhir/audit-event-outcome|0&_count=1",
            &auditor,
        )
        .await;
    assert_eq!(coded.status(), 200);
    outcome(proxy.get("AuditEvent?colour=blue", &auditor).await, 400).await;
    let lenient: Value = proxy
        .get_lenient("AuditEvent?colour=blue&_count=1", &auditor)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(common::entries(&lenient, "match").len(), 1, "{lenient}");
    assert_eq!(common::entries(&lenient, "outcome").len(), 1, "{lenient}");
    assert!(!next_of(&lenient).unwrap().contains("colour"), "{lenient}");
    // The newest row a paged search sees is in its links; a later page's cannot be changed.
    for bad in [
        "_snapshot=abc",
        "_snapshot=20&_snapshot=10",
        "_snapshot=-1",
        "_include=AuditEvent:agent",
    ] {
        outcome(proxy.get(&format!("AuditEvent?{bad}"), &auditor).await, 400).await;
    }
    let first: Value = proxy.get("AuditEvent?_count=2", &auditor).await.json().await.unwrap();
    // The self link is the search as it ran: followed (after more events), it reads the same events.
    let self_link = common::link(&first, "self").unwrap();
    proxy.get("Patient?identifier=9000000009", &clinician).await;
    let again: Value = proxy.get(&self_link, &auditor).await.json().await.unwrap();
    let ids = |b: &Value| -> Vec<String> {
        common::entries(b, "match")
            .iter()
            .map(|e| e["id"].as_str().unwrap().to_string())
            .collect()
    };
    assert_eq!(
        (ids(&again), &again["total"]),
        (ids(&first), &first["total"]),
        "{again}"
    );
    let next = next_of(&first).unwrap();
    assert!(next.contains("_snapshot="), "{next}");
    let (head, tail) = next.split_once("_snapshot=").unwrap();
    let digits = tail.chars().take_while(char::is_ascii_digit).count();
    let tampered = format!("{head}_snapshot=1{}", &tail[digits..]);
    let body = outcome(proxy.get(&tampered, &auditor).await, 400).await;
    assert_eq!(body["issue"][0]["details"]["coding"][0]["code"], "IM1-1301", "{body}");
    proxy.stop().await;
    sims.shutdown().await;
}

#[tokio::test]
async fn an_auditor_reads_their_practices_trail_and_nothing_of_the_record() {
    let sims = Simulators::start(options()).await.unwrap();
    let proxy = Proxy::start(sims.practices(), sims.linkage()).await;
    let search = "Patient?identifier=https://fhir.nhs.uk/Id/nhs-number|9000000009";
    for (ods, id) in [("Y90001", "at-emis"), ("Y90002", "at-tpp")] {
        let clinician = token(Role::Clinician, &[ods]);
        let response = common::get_as(&proxy, search, &clinician, id).await;
        assert_eq!(response.status(), 200);
    }
    let seen_by = |ods: &'static str| {
        let auditor = token(Role::Auditor, &[ods]);
        let proxy = &proxy;
        async move {
            let events = common::search_matches(proxy, "AuditEvent?_count=200", &auditor).await;
            events
                .iter()
                .filter_map(common::audited_request_id)
                .collect::<BTreeSet<String>>()
        }
    };
    // A user of both practices reads a TPP patient twice, the second time from the cache: TPP's access alone.
    let both = token(Role::System, &["Y90001", "Y90002"]);
    let tpp_only = token(Role::Clinician, &["Y90002"]);
    let patient = common::search_matches(&proxy, search, &tpp_only).await;
    let patient = patient[0]["id"].as_str().unwrap().to_string();
    for id in ["read-1", "read-2"] {
        let response = common::get_as(&proxy, &format!("Patient/{patient}"), &both, id).await;
        assert_eq!(response.status(), 200);
    }
    // Practice data too (no patient to file it by): a TPP practitioner read twice, the second from the cache.
    let practitioners = common::search_matches(&proxy, "Practitioner", &tpp_only).await;
    let practitioner = practitioners[0]["id"].as_str().unwrap().to_string();
    for id in ["staff-1", "staff-2"] {
        let response = common::get_as(&proxy, &format!("Practitioner/{practitioner}"), &both, id).await;
        assert_eq!(response.status(), 200);
    }
    // An EMIS user trying that TPP patient: an attempt both practices' auditors see (their user's, TPP's patient).
    let emis_only = token(Role::Clinician, &["Y90001"]);
    let response = common::get_as(&proxy, &format!("Patient/{patient}"), &emis_only, "cross-try").await;
    assert_eq!(response.status(), 404);
    // A user of both refused on a TPP patient's record, and searching one TPP patient by id: TPP's alone.
    let refused = format!("Condition?patient={patient}&colour=blue");
    assert_eq!(
        common::get_as(&proxy, &refused, &both, "refused-tpp").await.status(),
        400
    );
    let by_id = format!("Patient?_id={patient}");
    assert_eq!(common::get_as(&proxy, &by_id, &both, "by-id-tpp").await.status(), 200);
    // Ids of no practice ask none, and the other parameters are still checked (or, lenient, said dropped).
    let unknown = "Practitioner?_id=junk&colour=blue";
    outcome(proxy.get(unknown, &both).await, 400).await;
    let lenient: Value = proxy.get_lenient(unknown, &both).await.json().await.unwrap();
    assert_eq!(lenient["total"], 0, "{lenient}");
    assert_eq!(common::entries(&lenient, "outcome").len(), 1, "{lenient}");
    // A user of both searching both: each practice's auditor reads the event with its own patient and calls
    // only, and a user acting for no practice is refused an NHS number's search that no auditor reads.
    let fresh = proxy
        .client
        .get(proxy.url(search))
        .bearer_auth(&both)
        .header("cache-control", "no-cache");
    let response = fresh.header("x-request-id", "both-search").send().await.unwrap();
    assert_eq!(response.status(), 200);
    let emis_patient = common::search_matches(&proxy, search, &emis_only).await;
    let emis_patient = format!("Patient/{}", emis_patient[0]["id"].as_str().unwrap());
    let nobody = token(Role::Clinician, &[]);
    assert_eq!(
        common::get_as(&proxy, search, &nobody, "no-practice").await.status(),
        403
    );
    for (ods, own_patient) in [
        ("Y90001", emis_patient.clone()),
        ("Y90002", format!("Patient/{patient}")),
    ] {
        let auditor = token(Role::Auditor, &[ods]);
        let events = common::search_matches(&proxy, "AuditEvent?_count=200", &auditor).await;
        let ids: Vec<Option<String>> = events.iter().map(common::audited_request_id).collect();
        assert!(!ids.contains(&Some("no-practice".into())), "{ods}");
        let event = events
            .iter()
            .find(|e| common::audited_request_id(e).as_deref() == Some("both-search"))
            .unwrap_or_else(|| panic!("{ods} sees the search of both"));
        let entities = event["entity"].as_array().unwrap();
        let patients: Vec<&Value> = entities.iter().filter(|e| e["role"]["code"] == "1").collect();
        assert_eq!(patients.len(), 1, "{ods}: {event}");
        assert_eq!(patients[0]["what"]["reference"], own_patient.as_str(), "{ods}");
        let practices: BTreeSet<&str> = entities
            .iter()
            .flat_map(|e| e["detail"].as_array().into_iter().flatten())
            .filter(|d| d["type"] == "practice")
            .filter_map(|d| d["valueString"].as_str())
            .collect();
        assert_eq!(practices, BTreeSet::from([ods]), "{ods}: {event}");
        assert!(entities.iter().any(|e| e["name"] == "native call"), "{ods}: {event}");
    }
    let emis = seen_by("Y90001").await;
    assert!(emis.contains("at-emis") && !emis.contains("at-tpp"), "{emis:?}");
    assert!(!emis.contains("read-1") && !emis.contains("read-2"), "{emis:?}");
    assert!(!emis.contains("staff-1") && !emis.contains("staff-2"), "{emis:?}");
    assert!(emis.contains("cross-try"), "{emis:?}");
    // A user of both, refused on a TPP patient or searching one by id: TPP's alone (nothing of EMIS's).
    for tpp_only_event in ["refused-tpp", "by-id-tpp"] {
        assert!(!emis.contains(tpp_only_event), "{tpp_only_event}: {emis:?}");
    }
    let tpp = seen_by("Y90002").await;
    assert!(tpp.contains("at-tpp") && !tpp.contains("at-emis"), "{tpp:?}");
    assert!(
        ["read-1", "read-2", "cross-try", "refused-tpp", "by-id-tpp"]
            .iter()
            .all(|id| tpp.contains(*id)),
        "{tpp:?}"
    );
    assert!(tpp.contains("staff-1") && tpp.contains("staff-2"), "{tpp:?}");
    // Found by a patient only where that patient is shown: EMIS's auditor sees the attempt on TPP's patient
    // and the search of both, never that patient among their patients, so finds neither by that patient;
    // asking for EMIS's patient too finds EMIS's patient's events alone.
    let found_by = |ods: &'static str, patients: String| {
        let auditor = token(Role::Auditor, &[ods]);
        let proxy = &proxy;
        async move {
            let query = format!("AuditEvent?_count=200&patient={patients}");
            let events = common::search_matches(proxy, &query, &auditor).await;
            events
                .iter()
                .filter_map(common::audited_request_id)
                .collect::<BTreeSet<String>>()
        }
    };
    assert!(found_by("Y90001", patient.clone()).await.is_empty());
    let by_tpp = found_by("Y90002", patient.clone()).await;
    assert!(
        by_tpp.contains("cross-try") && by_tpp.contains("both-search"),
        "{by_tpp:?}"
    );
    let emis_id = emis_patient.trim_start_matches("Patient/");
    let by_either = found_by("Y90001", format!("{patient},{emis_id}")).await;
    assert!(
        by_either.contains("both-search") && by_either.contains("at-emis"),
        "{by_either:?}"
    );
    assert!(!by_either.contains("cross-try"), "{by_either:?}");

    // An auditor's token with wide scopes still reads no part of a record.
    let wide = common::scoped(Role::Auditor, "Y90001", "user/*.rs");
    let body = outcome(proxy.get(search, &wide).await, 403).await;
    assert_eq!(body["issue"][0]["details"]["coding"][0]["code"], "IM1-2109", "{body}");
    assert_eq!(proxy.get("ConceptMap/emis-sex", &wide).await.status(), 200);
    proxy.stop().await;
    sims.shutdown().await;
}

#[tokio::test]
async fn refused_and_empty_attempts_on_a_patient_are_found_by_that_patient() {
    let sims = Simulators::start(options()).await.unwrap();
    let proxy = Proxy::start(sims.practices(), sims.linkage()).await;
    let clinician = token(Role::Clinician, &["Y90001"]);
    // Someone the patient below neither is nor acts for (9000000017 is their child).
    let stranger = sims.world.read(|r| {
        let mut numbers = r.patients.iter().map(|p| p.nhs_number.clone());
        numbers.find(|n| n != "9000000009" && n != "9000000017").unwrap()
    });
    let other = common::search_matches(&proxy, &format!("Patient?identifier={stranger}"), &clinician).await;
    let other = other[0]["id"].as_str().unwrap().to_string();
    let item = common::search_matches(&proxy, &format!("Condition?patient={other}"), &clinician).await;
    let item = item[0]["id"].as_str().unwrap().to_string();
    // Another patient's record, tried by a patient token: not found, or nothing found.
    let intruder = common::patient_token("9000000009", "Y90001");
    for (path, status, id) in [
        (format!("Patient/{other}"), 404, "try-patient"),
        (format!("Patient/{other}/$everything"), 404, "try-everything"),
        (format!("Condition/{item}"), 404, "try-item"),
        (format!("Condition?patient=Patient/{other}"), 200, "try-search"),
        // `_id` names a record as a read does.
        (format!("Patient?_id={other}"), 200, "try-id"),
        (format!("Condition?_id={item}"), 200, "try-item-id"),
    ] {
        let response = common::get_as(&proxy, &path, &intruder, id).await;
        assert_eq!(response.status().as_u16(), status, "{path}");
    }
    let found: BTreeSet<String> = auditor_search(&proxy, &format!("patient={other}&_count=200"))
        .await
        .iter()
        .filter_map(common::audited_request_id)
        .collect();
    for id in [
        "try-patient",
        "try-everything",
        "try-item",
        "try-search",
        "try-id",
        "try-item-id",
    ] {
        assert!(found.contains(id), "{id} not filed under the patient: {found:?}");
    }
    // A patient's own appointments, searched without naming them: filed under them (an Appointment names
    // its patient among its participants).
    let response = common::get_as(&proxy, "Appointment", &intruder, "own-appointments").await;
    let booked: Value = response.json().await.unwrap();
    assert!(!common::matches(&booked).is_empty(), "{booked}");
    let own = common::search_matches(&proxy, "Patient?identifier=9000000009", &clinician).await;
    let own = own[0]["id"].as_str().unwrap();
    let found: BTreeSet<String> = auditor_search(&proxy, &format!("patient={own}&_count=200"))
        .await
        .iter()
        .filter_map(common::audited_request_id)
        .collect();
    assert!(found.contains("own-appointments"), "{found:?}");
    // A sort this server cannot follow is refused before any GP system is asked.
    let bad_sort = format!("AllergyIntolerance?patient={other}&_sort=colour");
    assert_eq!(
        common::get_as(&proxy, &bad_sort, &clinician, "bad-sort").await.status(),
        400
    );
    let event = common::audit_events(&proxy)
        .into_iter()
        .find(|e| common::audited_request_id(e).as_deref() == Some("bad-sort"))
        .expect("audited");
    assert_eq!(common::cache_and_calls(&event).1, 0, "{event}");
    proxy.stop().await;
    sims.shutdown().await;
}

/// A token a client sent outside the Authorization header (as `access_token=` in the query, or pasted into a
/// path and echoed by an error) is not kept in the trail, where an auditor could replay it.
#[tokio::test]
async fn tokens_sent_outside_the_header_are_not_kept_in_the_trail() {
    let sims = Simulators::start(options()).await.unwrap();
    let proxy = Proxy::start(sims.practices(), sims.linkage()).await;
    let clinician = token(Role::Clinician, &["Y90001"]);
    let in_query = format!("Patient?identifier=9000000009&access_token={clinician}");
    let lenient = proxy
        .client
        .get(proxy.url(&in_query))
        .bearer_auth(&clinician)
        .header("prefer", "handling=lenient")
        .header("x-request-id", "token-in-query");
    assert_eq!(lenient.send().await.unwrap().status(), 200);
    assert_eq!(
        common::get_as(&proxy, &in_query, &clinician, "token-in-strict-query")
            .await
            .status(),
        400
    );
    assert_eq!(
        common::get_as(&proxy, &clinician, &clinician, "token-in-path")
            .await
            .status(),
        404
    );
    let password = "Patient?identifier=9000000009&password:exact=hunter2-secret";
    assert_eq!(
        common::get_as(&proxy, password, &clinician, "password-in-query")
            .await
            .status(),
        400
    );
    let events = common::audit_events(&proxy);
    for id in [
        "token-in-query",
        "token-in-strict-query",
        "token-in-path",
        "password-in-query",
    ] {
        let event = events
            .iter()
            .find(|e| common::audited_request_id(e).as_deref() == Some(id))
            .unwrap_or_else(|| panic!("{id} not audited"));
        let queries: Vec<String> = event["entity"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|e| e["query"].as_str())
            .map(|q| String::from_utf8(STANDARD.decode(q).unwrap()).unwrap())
            .collect();
        let kept = format!("{event} {queries:?}");
        assert!(!kept.contains(&clinician) && !kept.contains("hunter2"), "{id}: {kept}");
        // What else was asked stays on record.
        if id != "token-in-path" {
            assert!(
                queries.iter().any(|q| q.contains("identifier=9000000009")),
                "{id}: {kept}"
            );
        }
    }
    proxy.stop().await;
    sims.shutdown().await;
}

/// A store whose commits fail (another process holds the database's write lock past the writer's wait): the
/// answer is withheld (503) and counted so in the metrics, readiness says why, and until a commit succeeds no
/// GP system is asked anything, since its event could not be kept. The refused requests' own events are tried,
/// so the store is used again as soon as it can commit.
#[tokio::test]
async fn no_gp_system_is_asked_while_the_audit_trail_cannot_commit() {
    let sims = Simulators::start(options()).await.unwrap();
    let proxy = Proxy::start(sims.practices(), sims.linkage()).await;
    let t = token(Role::Clinician, &["Y90001"]);
    let root = proxy.base.trim_end_matches("/fhir").to_string();
    let probe = |path: &'static str| {
        let (client, url) = (proxy.client.clone(), format!("{root}/{path}"));
        async move {
            let response = client.get(url).send().await.unwrap();
            (response.status().as_u16(), response.text().await.unwrap())
        }
    };
    // The native calls made, and the requests answered with a status, as the metrics count them.
    let counted = |metrics: &str, prefix: &str| -> u64 {
        metrics
            .lines()
            .filter(|line| line.starts_with(prefix))
            .filter_map(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
            .sum::<f64>() as u64
    };
    assert_eq!(proxy.get("Patient?identifier=9000000009", &t).await.status(), 200);
    let blocker = rusqlite::Connection::open(proxy.audit_dir.path().join("audit.db")).unwrap();
    blocker.execute_batch("BEGIN EXCLUSIVE").unwrap();
    outcome(proxy.get("Patient?identifier=9000000009", &t).await, 503).await;
    // The commit gives up after its own wait; readiness then says why.
    let mut ready = probe("readyz").await;
    for _ in 0..100 {
        if ready.0 == 503 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        ready = probe("readyz").await;
    }
    assert_eq!(ready, (503, "the audit trail fails to commit\n".to_string()));
    let before = probe("metrics").await.1;
    let body = outcome(proxy.get("Patient?identifier=9000000017", &t).await, 503).await;
    assert_eq!(body["issue"][0]["details"]["coding"][0]["code"], "IM1-5101");
    let after = probe("metrics").await.1;
    assert_eq!(
        counted(&after, "im1_fhir_native_calls_total"),
        counted(&before, "im1_fhir_native_calls_total"),
        "no GP system was asked"
    );
    assert!(
        counted(
            &after,
            "im1_fhir_requests_total{interaction=\"search-type Patient\",status=\"503\"}"
        ) >= 1,
        "the withheld answer is counted as the client got it: {after}"
    );
    blocker.execute_batch("COMMIT").unwrap();
    drop(blocker);
    // The next refused request's event commits, and the store is used again.
    let mut status = 503;
    for _ in 0..50 {
        status = proxy.get("Patient?identifier=9000000009", &t).await.status().as_u16();
        if status == 200 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_eq!(status, 200);
    assert_eq!(probe("readyz").await.0, 200);
    proxy.stop().await;
    sims.shutdown().await;
}
