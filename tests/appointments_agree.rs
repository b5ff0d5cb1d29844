//! The appointment book through the three suppliers: for two seeds and a fixed `today`, the Schedules and Slots
//! of a window (past and future: free, booked and never-booked past slots) and every patient's Appointments are
//! the same UK Core resources from EMIS Web, TPP SystmOne and Medicus, once ids and `meta` are set aside
//! (see "Agreement across suppliers, precisely" in the design).
//!
//! References are compared by what they point at: a Slot's Schedule and an Appointment's Slot by that
//! resource's own comparable form (the Appointment's Slot comes by `_include=Appointment:slot`, so booked and
//! past slots must be readable too); Patient and Practitioner references by their type only (the Practitioner
//! mapping is compared by its own test).
use crate::common;

use common::{comparable, token, Proxy};
use im1_fhir::auth::Role;
use im1_fhir::demo::Simulators;
use serde_json::Value;
use std::collections::{BTreeSet, HashMap};

const PRACTICES: [&str; 3] = ["Y90001", "Y90002", "Y90003"];
const NAMES: [&str; 3] = ["EMIS", "SystmOne", "Medicus"];
/// A window over the fixed today (2026-03-02): two weeks of history and a week ahead.
const WINDOW: &str = "ge2026-02-16&start=lt2026-03-10";

/// A search's Bundle, checked: 200, and every resource strict FHIR.
async fn bundle(proxy: &Proxy, t: &str, query: &str) -> Value {
    let response = proxy.get(query, t).await;
    let status = response.status();
    let bundle: Value = response.json().await.unwrap();
    assert_eq!(status, 200, "{query}: {bundle}");
    for e in bundle["entry"].as_array().into_iter().flatten() {
        common::assert_uk_core(&e["resource"], query);
    }
    bundle
}

/// Every page of a search (pages hold at most 200), as one Bundle-like value with all the entries.
async fn all_pages(proxy: &Proxy, t: &str, query: &str) -> Value {
    let mut all = Vec::new();
    let mut page = bundle(proxy, t, query).await;
    loop {
        all.extend(page["entry"].as_array().cloned().unwrap_or_default());
        match common::link(&page, "next") {
            Some(next) => page = bundle(proxy, t, &next).await,
            None => return serde_json::json!({ "entry": all }),
        }
    }
}

fn entries(bundle: &Value, mode: &str) -> Vec<Value> {
    common::entries(bundle, mode).into_iter().cloned().collect()
}

fn key(r: &Value) -> String {
    format!("{}/{}", r["resourceType"].as_str().unwrap(), r["id"].as_str().unwrap())
}

/// Comparable forms, sorted, with references replaced by `targets` (themselves comparable).
fn sorted(resources: &[Value], targets: &HashMap<String, Value>) -> Vec<Value> {
    let mut list: Vec<Value> = resources.iter().map(|r| comparable(r, targets)).collect();
    list.sort_by_key(|v| v.to_string());
    list
}

fn assert_same(seed: u64, what: &str, lists: &[Vec<Value>]) {
    for (other, name) in lists[1..].iter().zip(&NAMES[1..]) {
        assert_eq!(
            lists[0].len(),
            other.len(),
            "seed {seed}: {what}: EMIS has {} and {name} {}",
            lists[0].len(),
            other.len()
        );
        for (a, b) in lists[0].iter().zip(other) {
            assert_eq!(a, b, "seed {seed}: {what} differs between EMIS and {name}");
        }
    }
}

#[tokio::test]
async fn the_appointment_book_is_the_same_through_emis_systmone_and_medicus() {
    for seed in [1, 7] {
        let (sims, numbers, proxy) = common::seeded(seed, 12).await;

        // Schedules and Slots of the window, one practice at a time.
        let mut schedules = Vec::new();
        let mut slots = Vec::new();
        for ods in PRACTICES {
            let t = token(Role::System, &[ods]);
            let found = all_pages(&proxy, &t, "Schedule?date=ge2026-02-16&date=lt2026-03-10&_count=200").await;
            let found = entries(&found, "match");
            let targets: HashMap<String, Value> =
                found.iter().map(|s| (key(s), comparable(s, &HashMap::new()))).collect();
            let found_slots = all_pages(
                &proxy,
                &t,
                &format!("Slot?start={WINDOW}&_count=200&_include=Slot:schedule"),
            )
            .await;
            let included = entries(&found_slots, "include");
            let found_slots = entries(&found_slots, "match");
            assert!(!included.is_empty(), "seed {seed}: {ods}: _include=Slot:schedule");
            for s in &found_slots {
                let schedule = s["schedule"]["reference"].as_str().unwrap();
                assert!(
                    targets.contains_key(schedule),
                    "seed {seed}: {ods}: {schedule} outside the window"
                );
            }
            for status in ["free", "busy", "busy-unavailable"] {
                assert!(
                    found_slots.iter().any(|s| s["status"] == status),
                    "seed {seed}: {ods}: no {status} slot"
                );
            }
            schedules.push(sorted(&found, &HashMap::new()));
            slots.push(sorted(&found_slots, &targets));
        }
        assert!(schedules[0].len() > 10, "seed {seed}: schedules");
        assert_same(seed, "Schedule", &schedules);
        assert_same(seed, "Slot", &slots);

        // Every patient's appointments, with the slots they hold.
        let t = token(Role::System, &PRACTICES);
        let mut appointments = 0;
        for nhs in &numbers {
            let patients = bundle(
                &proxy,
                &t,
                &format!("Patient?identifier=https://fhir.nhs.uk/Id/nhs-number|{nhs}"),
            )
            .await;
            let ids: Vec<String> = entries(&patients, "match")
                .iter()
                .map(|p| p["id"].as_str().unwrap().to_string())
                .collect();
            assert_eq!(ids.len(), 3, "one Patient per practice");
            let mut lists = Vec::new();
            for id in &ids {
                let found = bundle(
                    &proxy,
                    &t,
                    &format!("Appointment?patient=Patient/{id}&_include=Appointment:slot&_count=200"),
                )
                .await;
                let matches = entries(&found, "match");
                let targets: HashMap<String, Value> = entries(&found, "include")
                    .iter()
                    .map(|s| (key(s), comparable(s, &HashMap::new())))
                    .collect();
                for a in &matches {
                    let slot = a["slot"][0]["reference"].as_str().unwrap();
                    assert!(
                        targets.contains_key(slot),
                        "seed {seed}: {slot} of an appointment not included"
                    );
                }
                appointments += matches.len();
                lists.push(sorted(&matches, &targets));
            }
            assert_same(seed, &format!("Appointment of {nhs}"), &lists);
        }
        assert!(appointments > 10, "seed {seed}: appointments ({appointments})");
        proxy.stop().await;
        sims.shutdown().await;
    }
}

/// Searches apps make: by status, by schedule (narrowing the native call to the session), by date with one
/// bound; reads of Slots and Schedules by id (a Medicus slot id is 72 characters); includes both ways.
#[tokio::test]
async fn searches_reads_and_includes() {
    let options = common::fixed_options(1, 6);
    let sims = Simulators::start(options).await.unwrap();
    let proxy = Proxy::start(sims.practices(), sims.linkage()).await;
    for ods in PRACTICES {
        let t = token(Role::Clinician, &[ods]);
        // No `start`: the 14 days from today, free ones only.
        let free = entries(&all_pages(&proxy, &t, "Slot?status=free&_count=200").await, "match");
        assert!(!free.is_empty(), "{ods}");
        assert!(free.iter().all(|s| s["status"] == "free"));
        assert!(free
            .iter()
            .all(|s| s["start"].as_str().unwrap() >= "2026-03-02" && s["start"].as_str().unwrap() < "2026-03-16"));

        let schedule = free[0]["schedule"]["reference"].as_str().unwrap().to_string();
        let of_schedule = bundle(&proxy, &t, &format!("Slot?schedule={schedule}&_include=Slot:schedule")).await;
        let matches = entries(&of_schedule, "match");
        assert!(matches.iter().all(|s| s["schedule"]["reference"] == schedule.as_str()));
        assert!(
            matches.len()
                >= free
                    .iter()
                    .filter(|s| s["schedule"]["reference"] == schedule.as_str())
                    .count()
        );
        let included = entries(&of_schedule, "include");
        assert_eq!(included.len(), 1, "{ods}: the schedule, once");
        assert_eq!(key(&included[0]), schedule);

        for r in [&free[0], &included[0]] {
            let read = proxy.get(&key(r), &t).await;
            assert_eq!(read.status(), 200, "{ods}: read {}", key(r));
            assert_eq!(read.json::<Value>().await.unwrap(), *r);
        }

        let actor = included[0]["actor"][0]["reference"].as_str().unwrap().to_string();
        let by_actor = entries(&bundle(&proxy, &t, &format!("Schedule?actor={actor}")).await, "match");
        assert!(!by_actor.is_empty() && by_actor.iter().all(|s| s["actor"][0]["reference"] == actor.as_str()));
        // A reverse include is followed from the matches; `:iterate` on it is said to go no further.
        let rev = bundle(
            &proxy,
            &t,
            &format!("Schedule?actor={actor}&_revinclude:iterate=Slot:schedule"),
        )
        .await;
        assert!(!entries(&rev, "include").is_empty(), "{ods}: {rev}");
        assert!(warning_codes(&rev).contains(&"IM1-1206".to_string()), "{ods}: {rev}");

        let patient = entries(
            &bundle(
                &proxy,
                &t,
                "Patient?identifier=https://fhir.nhs.uk/Id/nhs-number|9000000009",
            )
            .await,
            "match",
        );
        let pid = patient[0]["id"].as_str().unwrap();
        let booked = entries(
            &bundle(
                &proxy,
                &t,
                &format!("Appointment?patient={pid}&status=booked&date=ge2026-03-02"),
            )
            .await,
            "match",
        );
        assert!(!booked.is_empty(), "{ods}: patient 9000000009 has a future booking");
        let slot = booked[0]["slot"][0]["reference"].as_str().unwrap();
        let read = proxy.get(slot, &t).await;
        assert_eq!(read.status(), 200, "{ods}: the booked slot reads");
        assert_eq!(read.json::<Value>().await.unwrap()["status"], "busy");
        let appointment = proxy.get(&key(&booked[0]), &t).await;
        assert_eq!(appointment.status(), 200);
        // `practitioner` is a participant that is a Practitioner, not any actor: the patient is not one.
        for query in [format!("practitioner=Patient/{pid}"), format!("practitioner={pid}")] {
            let found = bundle(&proxy, &t, &format!("Appointment?patient={pid}&{query}")).await;
            assert_eq!(found["total"], 0, "{ods} {query}");
        }
        let as_actor = bundle(&proxy, &t, &format!("Appointment?patient={pid}&actor=Patient/{pid}")).await;
        assert!(
            as_actor["total"].as_u64().unwrap() > 0,
            "{ods}: the patient is an actor"
        );
        // And _include follows only references of its target type.
        let with = bundle(
            &proxy,
            &t,
            &format!("Appointment?patient={pid}&_include=Appointment:practitioner"),
        )
        .await;
        let included = entries(&with, "include");
        assert!(
            !included.is_empty() && included.iter().all(|r| r["resourceType"] == "Practitioner"),
            "{ods}: {with}"
        );
        // Each clinician is named on the appointment too (a patient may not read Practitioners), as the
        // Practitioner it points to is.
        for appointment in entries(&with, "match") {
            let mut actors = appointment["participant"]
                .as_array()
                .unwrap()
                .iter()
                .map(|p| &p["actor"]);
            let clinician = actors
                .find(|a| a["reference"].as_str().is_some_and(|r| r.starts_with("Practitioner/")))
                .unwrap_or_else(|| panic!("{ods}: no clinician in {appointment}"));
            let practitioner = included
                .iter()
                .find(|p| clinician["reference"] == format!("Practitioner/{}", p["id"].as_str().unwrap()))
                .unwrap_or_else(|| panic!("{ods}: {clinician} not included"));
            let family = practitioner["name"][0]["family"].as_str().unwrap();
            let display = clinician["display"].as_str().unwrap_or_default();
            assert!(display.ends_with(family), "{ods}: {display} for {practitioner}");
        }
        // `:iterate` follows what the includes brought: the booked slots, their schedules, the schedules'
        // actors; without it, an include of another type is said to be ignored.
        let booked_query =
            format!("Appointment?patient={pid}&status=booked&date=ge2026-03-02&_include=Appointment:slot");
        let chain = bundle(
            &proxy,
            &t,
            &format!("{booked_query}&_include:iterate=Slot:schedule&_include:iterate=Schedule:actor"),
        )
        .await;
        let included: HashMap<String, Value> = entries(&chain, "include").into_iter().map(|r| (key(&r), r)).collect();
        assert!(warning_codes(&chain).is_empty(), "{ods}: {chain}");
        for appointment in entries(&chain, "match") {
            let slot = &included[appointment["slot"][0]["reference"].as_str().unwrap()];
            let schedule = &included[slot["schedule"]["reference"].as_str().unwrap()];
            let actor = schedule["actor"][0]["reference"].as_str().unwrap();
            assert!(included.contains_key(actor), "{ods}: {actor} of {}", key(schedule));
        }
        let types: BTreeSet<&str> = included.values().map(|r| r["resourceType"].as_str().unwrap()).collect();
        assert!(types.contains("Slot") && types.contains("Schedule"), "{ods}: {types:?}");
        let plain = format!("{booked_query}&_include=Slot:schedule");
        assert_eq!(proxy.get(&plain, &t).await.status(), 400, "{ods}");
        let plain: Value = proxy.get_lenient(&plain, &t).await.json().await.unwrap();
        assert_eq!(warning_codes(&plain), ["IM1-1206"], "{ods}");
        assert!(entries(&plain, "include").iter().all(|r| r["resourceType"] == "Slot"));
        // _id:not is every other item, not a read.
        let first = key(&booked[0]);
        let first_id = first.rsplit('/').next().unwrap();
        let others = bundle(&proxy, &t, &format!("Appointment?patient={pid}&_id:not={first_id}")).await;
        let all = bundle(&proxy, &t, &format!("Appointment?patient={pid}")).await;
        assert_eq!(
            others["total"].as_u64().unwrap() + 1,
            all["total"].as_u64().unwrap(),
            "{ods}: {others}"
        );
    }
    proxy.stop().await;
    sims.shutdown().await;
}

/// The codes of a Bundle's warnings.
fn warning_codes(bundle: &Value) -> Vec<String> {
    entries(bundle, "outcome")
        .iter()
        .flat_map(|o| o["issue"].as_array().cloned().unwrap_or_default())
        .filter_map(|i| i["details"]["coding"][0]["code"].as_str().map(String::from))
        .collect()
}

#[tokio::test]
async fn date_windows_are_read_as_asked_or_said_to_be_partial() {
    let sims = Simulators::start(common::fixed_options(1, 3)).await.unwrap();
    let proxy = Proxy::start(sims.practices(), sims.linkage()).await;
    let mut totals = Vec::new();
    for ods in PRACTICES {
        let t = token(Role::Clinician, &[ods]);
        // A reversed window matches nothing, asked of nobody (the GP systems refuse it: a 502 before).
        for query in [
            "Slot?start=ge2026-03-08&start=lt2026-03-07",
            "Schedule?date=ge2026-03-09&date=lt2026-03-08",
        ] {
            let found = bundle(&proxy, &t, query).await;
            assert_eq!(found["total"], 0, "{ods} {query}");
        }
        // FHIR's years start at 0001 and its zones end at ±14:00: anything else is refused before any native
        // call (year 0000 once reached the GP system, whose refusal came back as a 502).
        for date in ["lt0000-01-01", "ge2026-03-02T10:00:00%2B15:00"] {
            common::outcome(proxy.get(&format!("Slot?start={date}"), &t).await, 400).await;
        }
        // Both bounds, at any precision: the window asked for, no warning.
        let month = all_pages(&proxy, &t, "Slot?start=ge2026-03&start=lt2026-04&_count=200").await;
        let days = all_pages(&proxy, &t, "Slot?start=ge2026-03-01&start=lt2026-04-01&_count=200").await;
        assert_eq!(entries(&month, "match").len(), entries(&days, "match").len(), "{ods}");
        let bounded = bundle(&proxy, &t, "Slot?start=ge2026-03-01&start=lt2026-04-01&_summary=count").await;
        assert!(warning_codes(&bounded).is_empty(), "{ods}: {bounded}");
        // Open on one side: the native default window, and a warning saying so.
        for query in [
            "Slot?start=ge2026-03-01",
            "Slot?start=lt2026-04-01",
            "Slot",
            "Schedule?date=ge2026-03-01",
        ] {
            let found = bundle(&proxy, &t, query).await;
            assert!(
                warning_codes(&found).contains(&"IM1-3202".to_string()),
                "{ods} {query}: {found}"
            );
        }
        // Open on one side, the native default is the 14 days from the bound given, all of them: the same
        // sessions and slots as the closed window (Wednesday 4 to Tuesday 17 March; days were lost at each end).
        for (param, resource) in [("date", "Schedule"), ("start", "Slot")] {
            let ids = |bundle: &Value| -> BTreeSet<String> {
                entries(bundle, "match")
                    .iter()
                    .map(|r| r["id"].as_str().unwrap().to_string())
                    .collect()
            };
            let closed = format!("{resource}?{param}=ge2026-03-04&{param}=lt2026-03-18&_count=200");
            let closed = ids(&all_pages(&proxy, &t, &closed).await);
            assert!(!closed.is_empty(), "{ods} {resource}");
            for open in [format!("{param}=ge2026-03-04"), format!("{param}=lt2026-03-18")] {
                let found = all_pages(&proxy, &t, &format!("{resource}?{open}&_count=200")).await;
                assert_eq!(ids(&found), closed, "{ods} {resource}?{open}");
            }
        }
        // A session is read whole: no window, no warning.
        let schedule = entries(
            &bundle(&proxy, &t, "Schedule?date=ge2026-03-02&date=lt2026-03-03").await,
            "match",
        )
        .first()
        .map(|s| s["id"].as_str().unwrap().to_string())
        .expect("a session on the fixed today");
        let slots = bundle(&proxy, &t, &format!("Slot?schedule=Schedule/{schedule}")).await;
        assert!(
            !entries(&slots, "match").is_empty() && warning_codes(&slots).is_empty(),
            "{ods}: {slots}"
        );
        // Two sessions asked for at once: the slots of both (the native call can be narrowed to one session
        // only, so it reads the window of days instead, and says so when the window is open).
        let ids = |bundle: &Value| -> BTreeSet<String> {
            entries(bundle, "match")
                .iter()
                .map(|r| r["id"].as_str().unwrap().to_string())
                .collect()
        };
        let sessions = entries(
            &all_pages(&proxy, &t, "Schedule?date=ge2026-03-02&date=lt2026-03-16&_count=200").await,
            "match",
        );
        assert!(sessions.len() >= 2, "{ods}: two sessions in the default window");
        let (a, b) = (sessions[0]["id"].as_str().unwrap(), sessions[1]["id"].as_str().unwrap());
        let mut both = ids(&all_pages(&proxy, &t, &format!("Slot?schedule=Schedule/{a}&_count=200")).await);
        both.extend(ids(&all_pages(
            &proxy,
            &t,
            &format!("Slot?schedule=Schedule/{b}&_count=200"),
        )
        .await));
        let listed = format!("Slot?schedule=Schedule/{a},Schedule/{b}&_count=200");
        assert_eq!(ids(&all_pages(&proxy, &t, &listed).await), both, "{ods}: {listed}");
        let first = bundle(&proxy, &t, &listed).await;
        assert!(
            warning_codes(&first).contains(&"IM1-3202".to_string()),
            "{ods}: {first}"
        );
        totals.push(entries(&days, "match").len());
        // Service types are text in every GP system: found with the :text modifier.
        let service = entries(&days, "match")[0]["serviceType"][0]["text"]
            .as_str()
            .unwrap()
            .to_string();
        let query = format!(
            "Slot?start=ge2026-03-01&start=lt2026-04-01&service-type:text={}&_count=200",
            service.replace(' ', "%20")
        );
        let of_service = entries(&all_pages(&proxy, &t, &query).await, "match");
        assert!(!of_service.is_empty(), "{ods} {query}");
        assert!(
            of_service
                .iter()
                .all(|s| s["serviceType"][0]["text"] == service.as_str()),
            "{ods}"
        );
        // `_id` is answered like a read, wherever the item is: a slot three weeks out, outside the default window.
        let later = bundle(&proxy, &t, "Slot?start=ge2026-03-23&start=lt2026-03-24").await;
        let slot = entries(&later, "match")[0]["id"].as_str().unwrap().to_string();
        let by_id = bundle(&proxy, &t, &format!("Slot?_id={slot}")).await;
        assert_eq!(by_id["total"], 1, "{ods}: {by_id}");
        assert!(warning_codes(&by_id).is_empty(), "{ods}: {by_id}");
        let and_busy = bundle(&proxy, &t, &format!("Slot?_id={slot}&status=busy,free")).await;
        assert_eq!(and_busy["total"], 1, "{ods}: the rest of the search still applies");
        let other_status = bundle(&proxy, &t, &format!("Slot?_id={slot}&status=entered-in-error")).await;
        assert_eq!(other_status["total"], 0, "{ods}");
    }
    // The same window, the same slots, whichever system the practice runs.
    assert!(totals.windows(2).all(|w| w[0] == w[1]) && totals[0] > 0, "{totals:?}");
    proxy.stop().await;
    sims.shutdown().await;
}
