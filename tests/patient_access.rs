//! A patient's token reaches their own record (and those they act for: tests/proxy_access.rs) only, through the
//! supplier's patient-facing API with their own linkage: searches default to it, another record's id finds
//! nothing, and confidential items never appear.
use crate::common;

use common::matches;

use common::{get_json as get, patient_token, restricted, token, Proxy};
use im1_fhir::auth::Role;
use im1_fhir::demo::Simulators;
use serde_json::Value;

#[tokio::test]
async fn a_patient_sees_their_own_record_and_nothing_else() {
    let options = common::fixed_options(1, 12);
    let sims = Simulators::start(options).await.unwrap();
    let numbers: Vec<String> = sims
        .world
        .read(|r| r.patients.iter().map(|p| p.nhs_number.clone()).collect());
    let proxy = Proxy::start(sims.practices(), sims.linkage()).await;
    // Patient 1 is the child patient 0 acts for (proxy access); patient 2 is nobody's to see.
    let (me, other) = (&numbers[0], &numbers[2]);
    // EMIS Web, TPP SystmOne and Medicus in turn: each through its own patient-facing API.
    for ods in ["Y90001", "Y90002", "Y90003"] {
        let clinician = &token(Role::Clinician, &[ods]);
        let mine = &patient_token(me, ods);
        let (_, own) = get(&proxy, &format!("Patient?identifier={me}"), clinician).await;
        let own_id = matches(&own)[0]["id"].as_str().unwrap().to_string();
        // Their own Patient: in full from EMIS Web and SystmOne, the NHS number alone from Medicus.
        {
            let (_, bundle) = get(&proxy, "Patient", mine).await;
            // Medicus's thinner Patient is said, not silent; the others' are whole.
            let said = common::entries(&bundle, "outcome")
                .iter()
                .any(|o| o["issue"][0]["details"]["coding"][0]["code"] == "IM1-3203");
            assert_eq!(said, ods == "Y90003", "{ods}: {bundle}");
            let found = matches(&bundle);
            assert_eq!(
                found.len(),
                2,
                "the patient finds themselves and the child they act for"
            );
            assert_eq!(found[0]["id"], own_id.as_str(), "their own record first");
            // Through the patient's own API, the same Patient the clinician sees, but for what the supplier's
            // patient-facing API does not carry (common::AGREEMENT_EXCEPTIONS: Medicus's is the NHS number).
            let supplier = common::supplier_of(ods);
            assert_eq!(
                common::set_aside(supplier, "patient", &found[0]),
                common::set_aside(supplier, "patient", &matches(&own)[0]),
                "{ods}"
            );
        }
        // Practice data a patient may not read is left out of their includes, and that is said.
        let (_, with_requesters) = get(&proxy, "MedicationRequest?_include=MedicationRequest:requester", mine).await;
        assert!(common::entries(&with_requesters, "include").is_empty(), "{ods}");
        assert!(
            common::entries(&with_requesters, "outcome")
                .iter()
                .flat_map(|o| o["issue"].as_array().cloned().unwrap_or_default())
                .any(|i| i["details"]["coding"][0]["code"] == "IM1-2103"),
            "{ods}: {with_requesters}"
        );
        let (_, theirs) = get(&proxy, &format!("Patient?identifier={other}"), clinician).await;
        let other_id = matches(&theirs)[0]["id"].as_str().unwrap().to_string();
        // By _id: their own Patient once (though their linkage opens two records), nobody else's, and not a 403.
        let (status, by_id) = get(&proxy, &format!("Patient?_id={own_id}"), mine).await;
        assert_eq!((status, matches(&by_id).len()), (200, 1), "{ods}: {by_id}");
        let (status, by_id) = get(&proxy, &format!("Patient?_id={other_id}"), mine).await;
        assert_eq!((status, matches(&by_id).len()), (200, 0), "{ods}: {by_id}");
        check_practice(&proxy, ods, clinician, mine, &own_id, &other_id, &numbers[8]).await;
    }
    // Through all three practices at once: their own records first, then the child's (as the
    // CapabilityStatement's `_sort` says), not practice by practice.
    let everywhere = im1_fhir::auth::token::mint_demo(&im1_fhir::auth::token::TokenRequest {
        practices: vec!["Y90001".into(), "Y90002".into(), "Y90003".into()],
        role: Role::Patient,
        nhs_number: Some(me.clone()),
        scope: None,
        ttl_seconds: 600,
    })
    .unwrap();
    let (_, bundle) = get(&proxy, "Patient", &everywhere).await;
    let numbers_found: Vec<String> = matches(&bundle)
        .iter()
        .map(|p| p["identifier"][0]["value"].as_str().unwrap_or_default().to_string())
        .collect();
    assert_eq!(numbers_found.len(), 6, "{bundle}");
    assert!(numbers_found[..3].iter().all(|n| n == me), "{numbers_found:?}");
    assert!(numbers_found[3..].iter().all(|n| n == &numbers[1]), "{numbers_found:?}");
    proxy.stop().await;
    sims.shutdown().await;
}

/// `eighth`: the NHS number of seeded patient 8, whose record holds confidential items.
async fn check_practice(
    proxy: &Proxy,
    ods: &str,
    clinician: &str,
    mine: &str,
    own_id: &str,
    other_id: &str,
    eighth: &str,
) {
    // Each check below runs over what the records hold: counted, so that none can pass by finding nothing.
    let (mut confidential_seen, mut items_seen, mut others_tried) = (0, 0, 0);
    for resource_type in common::RECORD_ITEMS {
        // The clinician's view of the same record, confidential items included.
        let (status, full) = get(proxy, &format!("{resource_type}?patient={own_id}"), clinician).await;
        assert_eq!(status, 200);
        let full = matches(&full);
        let (status, bundle) = get(proxy, resource_type, mine).await;
        assert_eq!(status, 200, "{ods} {resource_type}: {bundle}");
        let seen = matches(&bundle);
        items_seen += seen.len();
        for r in &seen {
            assert!(
                !restricted(r),
                "{ods} {resource_type}: a confidential item reached the patient"
            );
            let subject = r.get("subject").or_else(|| r.get("patient")).unwrap();
            assert_eq!(subject["reference"], format!("Patient/{own_id}"));
        }
        let visible: Vec<&Value> = full.iter().filter(|r| !restricted(r)).collect();
        assert_eq!(
            seen.len(),
            visible.len(),
            "{ods} {resource_type}: the patient sees every non-confidential item"
        );
        confidential_seen += confidential_reads_find_nothing(proxy, ods, &full, mine).await;
        // Another patient's record: searched by id, nothing; their items read by id, not found.
        let (status, bundle) = get(proxy, &format!("{resource_type}?patient={other_id}"), mine).await;
        assert_eq!(status, 200);
        assert_eq!(
            bundle["total"], 0,
            "{ods} {resource_type}: another record leaked: {bundle}"
        );
        let (_, theirs) = get(proxy, &format!("{resource_type}?patient={other_id}"), clinician).await;
        if let Some(item) = matches(&theirs).first() {
            others_tried += 1;
            let (status, _) = get(
                proxy,
                &format!("{resource_type}/{}", item["id"].as_str().unwrap()),
                mine,
            )
            .await;
            assert_eq!(
                status, 404,
                "{ods} {resource_type}: another patient's item was readable"
            );
        }
    }
    // Patient 0's record may hold nothing confidential: patient 8's holds a sensitive problem's items.
    let (_, theirs) = get(proxy, &format!("Patient?identifier={eighth}"), clinician).await;
    let eighth_id = matches(&theirs)[0]["id"].as_str().unwrap().to_string();
    let theirs_token = &patient_token(eighth, ods);
    for resource_type in common::RECORD_ITEMS {
        let (_, full) = get(proxy, &format!("{resource_type}?patient={eighth_id}"), clinician).await;
        confidential_seen += confidential_reads_find_nothing(proxy, ods, &matches(&full), theirs_token).await;
    }
    // Medicus's Transactional journal leaves confidential items out (common::AGREEMENT_EXCEPTIONS): there a
    // clinician has none to try the patient's reads with.
    let confidential_carried = common::carries_confidential(common::supplier_of(ods), "transaction");
    assert!(
        (confidential_seen > 0) == confidential_carried && items_seen > 0 && others_tried > 0,
        "{ods}: the seeded records give every check something to check \
         ({confidential_seen} confidential, {items_seen} seen, {others_tried} of another patient)"
    );
    // Another patient's $everything: not found; their own: the Patient and their items, nothing
    // confidential, nobody else's.
    let (status, _) = get(proxy, &format!("Patient/{other_id}/$everything"), mine).await;
    assert_eq!(status, 404, "{ods}");
    let (status, everything) = get(proxy, &format!("Patient/{own_id}/$everything?_count=200"), mine).await;
    assert_eq!(status, 200, "{ods}: {everything}");
    // The practice's people its items name are not the patient's to read: said, not silently dangling.
    let said = common::entries(&everything, "outcome")
        .iter()
        .flat_map(|o| o["issue"].as_array().cloned().unwrap_or_default())
        .any(|i| {
            i["details"]["coding"][0]["code"] == "IM1-2103"
                && i["diagnostics"]
                    .as_str()
                    .unwrap_or_default()
                    .starts_with("Practitioner")
        });
    assert!(said, "{ods}: {everything}");
    let everything = matches(&everything);
    assert!(everything.len() > 1, "{ods}");
    for r in &everything {
        assert!(!restricted(r), "{ods}: a confidential item in $everything: {r}");
        if let Some(subject) = r.get("subject").or_else(|| r.get("patient")) {
            assert_eq!(subject["reference"], format!("Patient/{own_id}"), "{ods}: {r}");
        }
    }
}

/// A confidential item read directly by its patient is simply not found, told as any unknown id is (so is a
/// confidential document's content): nothing says it exists. How many of `full` were confidential.
async fn confidential_reads_find_nothing(proxy: &Proxy, ods: &str, full: &[Value], patient: &str) -> usize {
    let hidden: Vec<&Value> = full.iter().filter(|r| restricted(r)).collect();
    for item in &hidden {
        let resource_type = item["resourceType"].as_str().unwrap();
        let mut reads = vec![format!("{resource_type}/{}", item["id"].as_str().unwrap())];
        if let Some(url) = item["content"][0]["attachment"]["url"].as_str() {
            reads.push(url.to_string());
        }
        for read in reads {
            let (status, body) = get(proxy, &read, patient).await;
            assert_eq!(status, 404, "{ods} {read}");
            assert_eq!(
                body["issue"][0]["details"]["coding"][0]["code"], "IM1-1401",
                "{ods} {read}: {body}"
            );
        }
    }
    hidden.len()
}

/// The native calls of a patient's request, of one in the same session, and of one once that session has
/// ended (each `GET Condition`, fresh from the GP system).
async fn calls_across_two_sessions(proxy: &Proxy, token: &str) -> [usize; 3] {
    let mut counts = [0; 3];
    for (i, request_id) in ["first", "same-session", "new-session"].into_iter().enumerate() {
        if i == 2 {
            tokio::time::sleep(std::time::Duration::from_secs(4)).await;
        }
        let response = proxy
            .client
            .get(proxy.url("Condition"))
            .bearer_auth(token)
            .header("x-request-id", request_id)
            .header("cache-control", "no-cache")
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200, "{request_id}");
        let event = common::audit_events(proxy)
            .into_iter()
            .find(|e| common::audited_request_id(e).as_deref() == Some(request_id))
            .expect("audited");
        counts[i] = common::cache_and_calls(&event).1;
    }
    counts
}

/// SystmOne links a user's account once (`LinkAccount`, confirmed "once per user") and authenticates each
/// session: when the session has ended, the proxy logs on again without linking again.
#[tokio::test]
async fn systmone_links_once_and_authenticates_each_session() {
    let sims = im1_fhir::demo::Simulators::start_with(common::fixed_options(1, 3), |_, tpp, _| {
        tpp.session_idle = std::time::Duration::from_secs(3);
    })
    .await
    .unwrap();
    let proxy = Proxy::start(sims.practices(), sims.linkage()).await;
    let [first, same, new] = calls_across_two_sessions(&proxy, &patient_token("9000000009", "Y90002")).await;
    // The first links and authenticates; a later session's call is refused (the session ended), then
    // authenticated again (no link) and made again.
    assert_eq!(first, same + 2, "LinkAccount and Authenticate");
    assert_eq!(new, same + 2, "the refused call and Authenticate");
    proxy.stop().await;
    sims.shutdown().await;
}

/// EMIS links a user's account once (`me/applications`, confirmed one-off) and starts a session whenever one has
/// ended: a later session costs what the first did, the refused call in place of the link.
#[tokio::test]
async fn emis_links_once_and_starts_each_session() {
    let sims = im1_fhir::demo::Simulators::start_with(common::fixed_options(1, 3), |emis, _, _| {
        emis.session_idle = std::time::Duration::from_secs(3);
        emis.end_user_session_idle = std::time::Duration::from_secs(3);
    })
    .await
    .unwrap();
    let proxy = Proxy::start(sims.practices(), sims.linkage()).await;
    // 9000000009 acts for a child: two links, each read once per session for its patient.
    let [first, same, new] = calls_across_two_sessions(&proxy, &patient_token("9000000009", "Y90001")).await;
    assert!(first > same);
    assert_eq!(new, first);
    proxy.stop().await;
    sims.shutdown().await;
}

/// EMIS shows an application a record only where its Records service is on, and the record is what names the
/// patient a session link opens. A child whose record is hidden is left out of their parent's linkage, and the
/// parent's own requests go on; a patient whose own record is hidden is told why.
#[tokio::test]
async fn emis_leaves_out_a_link_whose_record_it_hides() {
    use im1_sim::record::Service;
    let sims = im1_fhir::demo::Simulators::start(common::fixed_options(1, 3))
        .await
        .unwrap();
    let proxy = Proxy::start(sims.practices(), sims.linkage()).await;
    let nid = |nhs: &str| {
        sims.world.read(|r| {
            r.patients
                .iter()
                .find(|p| p.nhs_number == nhs)
                .map(|p| p.id.clone())
                .unwrap()
        })
    };
    sims.world
        .set_patient_service("Y90001", &nid("9000000017"), Service::Records, false)
        .unwrap();
    let mine = patient_token("9000000009", "Y90001");
    let (status, patients) = get(&proxy, "Patient?_count=10", &mine).await;
    assert_eq!(status, 200, "{patients}");
    let listed: Vec<String> = matches(&patients)
        .iter()
        .flat_map(|p| p["identifier"].as_array().cloned().unwrap_or_default())
        .filter_map(|i| i["value"].as_str().map(String::from))
        .collect();
    assert!(listed.contains(&"9000000009".to_string()), "{patients}");
    assert!(!listed.contains(&"9000000017".to_string()), "{patients}");
    assert_eq!(get(&proxy, "Condition", &mine).await.0, 200);
    // Their own record hidden as well: a new session cannot tell who they are, and the answer says so.
    sims.world
        .set_patient_service("Y90001", &nid("9000000009"), Service::Records, false)
        .unwrap();
    proxy.stop().await;
    let proxy = Proxy::start(sims.practices(), sims.linkage()).await;
    let refused = proxy
        .client
        .get(proxy.url("Appointment"))
        .bearer_auth(&mine)
        .header("cache-control", "no-cache")
        .send()
        .await
        .unwrap();
    let body = common::outcome(refused, 403).await;
    assert!(body.to_string().contains("IM1-4105"), "{body}");
    proxy.stop().await;
    sims.shutdown().await;
}
