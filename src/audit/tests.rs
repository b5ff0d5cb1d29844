//! The store end to end, on a real SQLite file in a temporary directory.

use serde_json::Value;

use super::facts::tests::{at, patient_read};
use super::*;

fn params(pairs: &[(&str, &str)]) -> AuditQuery {
    let pairs: Vec<(String, String)> = pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
    AuditQuery::from_params(&pairs).unwrap()
}

fn open(dir: &tempfile::TempDir) -> AuditStore {
    AuditStore::open(&AuditConfig::new(dir.path().join("audit.db"))).unwrap()
}

/// An interaction by `subject` at `unix` seconds, about `entity`, touching `patient`, answered with `status`.
fn facts(unix: i64, subject: &str, entity: &str, patient: Option<&str>, status: u16) -> AuditFacts {
    let mut facts = patient_read();
    facts.started = at(unix);
    facts.ended = at(unix);
    if let Some(who) = facts.who.as_mut() {
        who.subject = subject.into();
    }
    let (resource_type, resource_id) = match entity.split_once('/') {
        Some((t, id)) => (t.to_string(), Some(id.to_string())),
        None => (entity.to_string(), None),
    };
    facts.interaction = if resource_id.is_some() { "read" } else { "search-type" }.into();
    facts.resource_type = Some(resource_type);
    facts.resource_id = resource_id;
    facts.patients = patient
        .map(|p| PatientRef {
            reference: Some(format!("Patient/{p}")),
            nhs_number: None,
        })
        .into_iter()
        .collect();
    facts.status = status;
    facts
}

/// Another process holding the store's database (the writer waits for it: SQLite's busy time-out), until
/// `ROLLBACK`.
fn locked(dir: &tempfile::TempDir) -> rusqlite::Connection {
    let holder = rusqlite::Connection::open(dir.path().join("audit.db")).unwrap();
    holder.execute_batch("BEGIN EXCLUSIVE").unwrap();
    holder
}

/// An event whose fate a test holds, recorded by a task of its own, once the writer has taken it into a commit
/// (which waits while the database is `locked`).
async fn taken_into_a_commit(
    store: &AuditStore,
    facts: AuditFacts,
) -> (
    tokio::task::JoinHandle<Result<String, AuditError>>,
    std::sync::Arc<super::db::Fate>,
) {
    let fate = std::sync::Arc::new(super::db::Fate::default());
    let recording = {
        let (store, fate) = (store.clone(), fate.clone());
        tokio::spawn(async move { store.record_fated(facts, Some(fate)).await })
    };
    let mut waited = 0;
    while !fate.is_settled() && waited < 500 {
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        waited += 1;
    }
    assert!(fate.is_settled(), "the writer never took the event");
    (recording, fate)
}

fn ids(events: &[Value]) -> Vec<&str> {
    events.iter().map(|e| e["id"].as_str().unwrap()).collect()
}

#[tokio::test]
async fn a_stalled_store_is_given_up_on_and_no_longer_ready() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir);
    // Another process holding the database: the writer waits for it (SQLite's busy time-out).
    let holder = locked(&dir);
    // Events queued behind the stalled writer until the queue is full: not ready.
    assert!(store.is_accepting());
    let mut waiting = Vec::new();
    while store.is_accepting() && waiting.len() < 10_000 {
        let store = store.clone();
        waiting.push(tokio::spawn(async move {
            store.record(facts(1_000, "u", "Patient/p", None, 200)).await
        }));
        tokio::task::yield_now().await;
    }
    assert!(!store.is_accepting(), "a full queue is not ready");
    // With the queue full, a response stops waiting at its deadline, but its event is not dropped.
    let deadline = std::time::Duration::from_millis(100);
    // A request the server had refused (its code is kept in what the event says).
    let mut refused = facts(1_000, "given-up", "Patient/p", None, 404);
    refused.outcome_code = Some("IM1-4004".into());
    let result = store.record_within(refused, deadline).await;
    assert!(
        matches!(result, Err(AuditError::Deadline(d)) if d == deadline),
        "{result:?}"
    );
    // Released, the writer catches up, the event given up on included: no event is lost.
    holder.execute_batch("ROLLBACK").unwrap();
    let queued = waiting.len() as u64;
    for task in waiting {
        assert!(task.await.unwrap().is_ok());
    }
    assert!(store.is_accepting());
    assert!(store.record(facts(1_001, "u", "Patient/p", None, 200)).await.is_ok());
    assert_eq!(store.count().unwrap(), 1 + queued + 1);
    // Committed after its response gave up on it, the event says what the client got: a 503, withheld.
    let withheld = store.search(&params(&[("outcome", "8")])).unwrap();
    assert_eq!(withheld.len(), 1, "{withheld:?}");
    let agents = withheld[0]["agent"].as_array().unwrap();
    assert!(
        agents.iter().any(|a| a["who"]["identifier"]["value"] == "given-up"),
        "{}",
        withheld[0]
    );
    let said = withheld[0]["outcomeDesc"].as_str().unwrap();
    assert!(said.starts_with("IM1-5101"), "{}", withheld[0]);
    assert!(said.ends_with("(the server had decided 404 IM1-4004)"), "{said}");
}

#[test]
fn the_first_to_settle_an_event_decides_its_label() {
    use super::db::{Fate, Settled};
    for first in [Settled::Claimed, Settled::Withheld, Settled::Left] {
        let fate = Fate::default();
        assert_eq!(fate.settle(first), first);
        for then in [Settled::Claimed, Settled::Withheld, Settled::Left] {
            assert_eq!(fate.settle(then), first, "{first:?} then {then:?}");
        }
    }
}

#[test]
fn a_response_that_stops_waiting_during_its_commit_is_corrected_by_the_writer() {
    use super::db::{Fate, Settled};
    // Left while the commit is under way: the writer, with the outcome in, hears of it.
    let fate = std::sync::Arc::new(Fate::default());
    assert_eq!(fate.settle(Settled::Claimed), Settled::Claimed);
    drop(super::store::Waiting(fate.clone()));
    assert_eq!(fate.finish(), Some(Settled::Left));
    // The outcome in first: the response takes it, and there is nothing to correct.
    let fate = Fate::default();
    fate.settle(Settled::Claimed);
    assert_eq!(fate.finish(), None);
    assert!(!fate.give_up_late(Settled::Withheld));
    assert!(!fate.give_up_late(Settled::Left));
    // Never taken into a commit: nothing happens late.
    let fate = Fate::default();
    assert!(!fate.give_up_late(Settled::Withheld));
    assert_eq!(fate.settle(Settled::Withheld), Settled::Withheld);
    assert_eq!(fate.finish(), None);
}

#[test]
fn a_write_refused_for_the_state_of_the_database_is_transient_and_others_are_not() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.db");
    let conn = rusqlite::Connection::open(&path).unwrap();
    conn.execute_batch("CREATE TABLE t (x INTEGER)").unwrap();
    let holder = rusqlite::Connection::open(&path).unwrap();
    holder.execute_batch("BEGIN EXCLUSIVE").unwrap();
    conn.busy_timeout(std::time::Duration::ZERO).unwrap();
    let busy = conn.execute("INSERT INTO t VALUES (1)", []).unwrap_err();
    assert!(super::db::is_transient(&busy), "{busy}");
    holder.execute_batch("ROLLBACK").unwrap();
    // A full database (its pages capped, as a full disk would): room may be made.
    let pages: i64 = conn.query_row("PRAGMA page_count", [], |r| r.get(0)).unwrap();
    conn.execute_batch(&format!("PRAGMA max_page_count = {pages}")).unwrap();
    let full = conn
        .execute("INSERT INTO t VALUES (?1)", [vec![0u8; 1 << 20]])
        .unwrap_err();
    assert!(super::db::is_transient(&full), "{full}");
    let missing = conn.execute("INSERT INTO nowhere VALUES (1)", []).unwrap_err();
    assert!(!super::db::is_transient(&missing), "{missing}");
}

/// The one event of a store, once the writer has stored it with `outcome` (waiting up to five seconds: a
/// correction is stored after the commit it corrects).
async fn only_event(store: &AuditStore, outcome: &str) -> Value {
    let mut waited = 0;
    loop {
        let events = store.search(&AuditQuery::default()).unwrap();
        assert!(events.len() <= 1, "{events:?}");
        if events.first().is_some_and(|e| e["outcome"] == outcome) || waited == 100 {
            assert_eq!(events.len(), 1, "{events:?}");
            return events[0].clone();
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        waited += 1;
    }
}

#[tokio::test]
async fn an_event_whose_commit_outlasts_twice_the_deadline_is_stored_as_withheld() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir);
    // The writer takes the event into a commit that waits for another process's lock past both deadlines.
    let holder = locked(&dir);
    let deadline = std::time::Duration::from_secs(1);
    let result = store
        .record_within(facts(1_000, "u", "Patient/p", None, 200), deadline)
        .await;
    assert!(matches!(result, Err(AuditError::Deadline(_))), "{result:?}");
    // Released, the commit goes through, and the writer corrects what it stored: the answer was withheld.
    holder.execute_batch("ROLLBACK").unwrap();
    let event = only_event(&store, "8").await;
    assert_eq!(event["outcome"], "8", "{event}");
    let said = event["outcomeDesc"].as_str().unwrap_or_default();
    assert!(
        said.starts_with("IM1-5101: withheld, the audit trail did not commit in time"),
        "{said}"
    );
    assert_eq!(
        store.search(&params(&[("outcome", "8")])).unwrap().len(),
        1,
        "the indexed outcome too"
    );
}

#[tokio::test]
async fn a_client_that_leaves_while_its_event_is_being_committed_is_on_record_as_gone() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir);
    let holder = locked(&dir);
    let (recording, fate) = taken_into_a_commit(&store, facts(1_000, "u", "Patient/p", None, 200)).await;
    // Its response is dropped (the client left) while the commit waits for the lock.
    drop(super::store::Waiting(fate));
    holder.execute_batch("ROLLBACK").unwrap();
    assert!(recording.await.unwrap().is_ok());
    let event = only_event(&store, "4").await;
    assert_eq!(event["outcome"], "4", "{event}");
    let said = event["outcomeDesc"].as_str().unwrap_or_default();
    assert!(said.starts_with("IM1-1122"), "{said}");
}

#[tokio::test]
async fn a_response_whose_commit_is_under_way_at_its_deadline_waits_for_it() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir);
    // The writer takes the event into a commit, which waits for another process's lock past the deadline.
    let holder = locked(&dir);
    let deadline = std::time::Duration::from_secs(2);
    let recording = {
        let store = store.clone();
        tokio::spawn(async move {
            store
                .record_within(facts(1_000, "u", "Patient/p", None, 200), deadline)
                .await
        })
    };
    tokio::time::sleep(deadline + deadline / 5).await;
    holder.execute_batch("ROLLBACK").unwrap();
    // The commit went through: the answer is sent, as its event says.
    assert!(recording.await.unwrap().is_ok());
    assert!(store.search(&params(&[("outcome", "8")])).unwrap().is_empty());
    assert_eq!(store.count().unwrap(), 1);
}

#[tokio::test]
async fn a_client_that_leaves_while_its_event_waits_for_the_writer_is_on_record_as_gone() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir);
    // The writer is held in the commit of an earlier event, by another process's lock.
    let holder = locked(&dir);
    // Once the writer has taken it into its commit, which waits for the lock, anything queued waits behind it.
    let (earlier, _) = taken_into_a_commit(&store, facts(1_000, "u", "Patient/p", None, 200)).await;
    // A response waits for its event behind it; its client leaves (the request's future is dropped).
    let leaving = {
        let store = store.clone();
        tokio::spawn(async move {
            let deadline = std::time::Duration::from_secs(30);
            store
                .record_within(facts(1_001, "leaver", "Patient/p", None, 200), deadline)
                .await
        })
    };
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    leaving.abort();
    assert!(leaving.await.unwrap_err().is_cancelled());
    holder.execute_batch("ROLLBACK").unwrap();
    assert!(earlier.await.unwrap().is_ok());
    // Committed all the same, saying the client got nothing.
    let mut waited = 0;
    while store.count().unwrap() < 2 && waited < 100 {
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        waited += 1;
    }
    let events = store.search(&AuditQuery::default()).unwrap();
    let gone: Vec<&Value> = events
        .iter()
        .filter(|e| {
            e["agent"]
                .as_array()
                .unwrap()
                .iter()
                .any(|a| a["who"]["identifier"]["value"] == "leaver")
        })
        .collect();
    assert_eq!(gone.len(), 1, "{events:?}");
    assert_eq!(gone[0]["outcome"], "4", "{}", gone[0]);
    assert!(
        gone[0]["outcomeDesc"].as_str().unwrap().starts_with("IM1-1122"),
        "{}",
        gone[0]
    );
}

#[cfg(unix)]
#[tokio::test]
async fn the_trail_and_its_copy_are_the_owners_alone() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let config = AuditConfig {
        forward_jsonl: Some(dir.path().join("audit.jsonl")),
        ..AuditConfig::new(dir.path().join("audit.db"))
    };
    let store = AuditStore::open(&config).unwrap();
    store.record(facts(1_000, "u", "Patient/p", None, 200)).await.unwrap();
    store.close().await;
    for file in ["audit.db", "audit.db-wal", "audit.jsonl"] {
        let Ok(meta) = std::fs::metadata(dir.path().join(file)) else {
            // The WAL may be gone once the store is closed; the others are there.
            assert_eq!(file, "audit.db-wal", "{file} exists");
            continue;
        };
        assert_eq!(meta.permissions().mode() & 0o777, 0o600, "{file}");
    }
}

#[tokio::test]
async fn a_recorded_event_is_found_by_search() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir);
    let id = store.record(patient_read()).await.unwrap();
    assert_eq!(uuid::Uuid::parse_str(&id).unwrap().get_version_num(), 4);
    let found = store.search(&AuditQuery::default()).unwrap();
    assert_eq!(found.len(), 1);
    assert_eq!(found[0], audit_event(&id, &patient_read()));
    assert_eq!(store.count().unwrap(), 1);
    store.close().await;
}

#[tokio::test]
async fn searches_filter_on_date_patient_agent_entity_outcome_and_count_newest_first() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir);
    // 2024-01-01T00:00:00Z = 1704067200; one event a day.
    let day = |n: i64| 1_704_067_200 + n * 86_400;
    let a = store
        .record(facts(day(0), "alice", "Patient/p1", Some("p1"), 200))
        .await
        .unwrap();
    let b = store
        .record(facts(day(1), "bob", "Observation", Some("p1"), 200))
        .await
        .unwrap();
    let c = store
        .record(facts(day(2), "alice", "Observation/o9", Some("p2"), 403))
        .await
        .unwrap();
    let d = store
        .record(facts(day(3), "carol", "Condition", None, 502))
        .await
        .unwrap();
    let e = store
        .record(facts(day(4), "alice", "ObservationDefinition/x", None, 200))
        .await
        .unwrap();
    let (a, b, c, d, e) = (a.as_str(), b.as_str(), c.as_str(), d.as_str(), e.as_str());
    let search = |pairs: &[(&str, &str)]| -> Vec<String> {
        ids(&store.search(&params(pairs)).unwrap())
            .into_iter()
            .map(String::from)
            .collect()
    };

    assert_eq!(search(&[]), vec![e, d, c, b, a], "newest first");
    assert_eq!(search(&[("_count", "2")]), vec![e, d]);
    assert_eq!(
        search(&[("date", "ge2024-01-02"), ("date", "le2024-01-03")]),
        vec![c, b]
    );
    assert_eq!(
        search(&[("date", "gt2024-01-02"), ("date", "lt2024-01-05")]),
        vec![d, c]
    );
    assert_eq!(search(&[("date", "eq2024-01-04")]), vec![d]);
    assert_eq!(search(&[("date", "2024-01-01T00:00:00Z")]), vec![a]);
    assert_eq!(search(&[("patient", "Patient/p1")]), vec![b, a]);
    assert_eq!(search(&[("patient", "p2,p1")]), vec![c, b, a]);
    assert_eq!(search(&[("agent", "alice")]), vec![e, c, a]);
    assert_eq!(search(&[("agent", "alice"), ("patient", "p1")]), vec![a]);
    assert_eq!(search(&[("entity", "Observation/o9")]), vec![c]);
    assert_eq!(
        search(&[("entity", "Observation")]),
        vec![c, b],
        "a type matches its instances, not a longer type"
    );
    assert_eq!(search(&[("outcome", "4,8")]), vec![d, c]);
    assert_eq!(search(&[("outcome", "0"), ("date", "ge2024-01-02")]), vec![e, b]);
    assert!(search(&[("patient", "nobody")]).is_empty());
    store.close().await;
}

#[tokio::test]
async fn events_with_several_patients_are_found_by_each() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir);
    let mut two = facts(1_704_067_200, "alice", "Observation", Some("p1"), 200);
    two.patients.push(PatientRef {
        reference: Some("Patient/p2".into()),
        nhs_number: Some("9000000017".into()),
    });
    let id = store.record(two).await.unwrap();
    assert_eq!(
        ids(&store.search(&params(&[("patient", "p2")])).unwrap()),
        vec![id.clone()]
    );
    assert_eq!(ids(&store.search(&params(&[("patient", "p1")])).unwrap()), vec![id]);
    store.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hundred_concurrent_records_all_commit() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir);
    let tasks: Vec<_> = (0..200)
        .map(|n| {
            let store = store.clone();
            tokio::spawn(async move {
                store
                    .record(facts(1_704_067_200 + n, "alice", "Patient/p1", Some("p1"), 200))
                    .await
            })
        })
        .collect();
    let mut ids = std::collections::HashSet::new();
    for task in tasks {
        ids.insert(task.await.unwrap().unwrap());
    }
    assert_eq!(ids.len(), 200, "unique ids");
    assert_eq!(store.count().unwrap(), 200);
    store.close().await;
}

#[tokio::test]
async fn events_survive_reopening_the_store() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir);
    let id = store.record(patient_read()).await.unwrap();
    store.close().await;
    let store = open(&dir);
    assert_eq!(store.count().unwrap(), 1);
    assert_eq!(ids(&store.search(&AuditQuery::default()).unwrap()), vec![id]);
    store.record(patient_read()).await.unwrap();
    assert_eq!(store.count().unwrap(), 2);
    store.close().await;
}

#[tokio::test]
async fn committed_events_survive_a_store_that_is_never_closed() {
    let dir = tempfile::tempdir().unwrap();
    let config = AuditConfig {
        synchronous: Synchronous::Full,
        ..AuditConfig::new(dir.path().join("audit.db"))
    };
    let store = AuditStore::open(&config).unwrap();
    store.record(patient_read()).await.unwrap();
    // No close: a second store reads the committed event from the WAL.
    let other = AuditStore::open(&config).unwrap();
    assert_eq!(other.count().unwrap(), 1);
    drop(store);
    other.close().await;
}

#[test]
fn an_unwritable_path_fails_to_open() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("not-a-directory");
    std::fs::write(&file, "not a database\n".repeat(300)).unwrap();
    let error = AuditStore::open(&AuditConfig::new(file.join("audit.db"))).unwrap_err();
    assert!(matches!(error, AuditError::Open { .. }), "{error:?}");
    // A file that is not a database is refused too.
    let error = AuditStore::open(&AuditConfig::new(&file)).unwrap_err();
    assert!(matches!(error, AuditError::Open { .. }), "{error:?}");
}

#[tokio::test]
async fn record_fails_once_the_writer_has_stopped() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir);
    let other = store.clone();
    store.close().await;
    let outcome = tokio::time::timeout(std::time::Duration::from_secs(5), other.record(patient_read())).await;
    assert!(matches!(outcome, Ok(Err(AuditError::WriterStopped))), "{outcome:?}");
    // Searching still works: the records are there for the auditor.
    assert_eq!(other.count().unwrap(), 0);
}

#[tokio::test]
async fn forwarding_writes_one_json_line_per_event() {
    let dir = tempfile::tempdir().unwrap();
    let lines = dir.path().join("audit.jsonl");
    let config = AuditConfig {
        forward_jsonl: Some(lines.clone()),
        ..AuditConfig::new(dir.path().join("audit.db"))
    };
    let store = AuditStore::open(&config).unwrap();
    let mut ids = Vec::new();
    for n in 0..5 {
        ids.push(
            store
                .record(facts(1_704_067_200 + n, "alice", "Patient/p1", Some("p1"), 200))
                .await
                .unwrap(),
        );
    }
    store.close().await;
    let text = std::fs::read_to_string(&lines).unwrap();
    let forwarded: Vec<String> = text
        .lines()
        .map(|line| {
            serde_json::from_str::<Value>(line).unwrap()["id"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
    assert_eq!(forwarded, ids);
}

#[tokio::test]
async fn a_bad_forwarding_path_costs_the_copy_not_the_commit() {
    let dir = tempfile::tempdir().unwrap();
    let config = AuditConfig {
        forward_jsonl: Some(dir.path().join("missing-dir").join("audit.jsonl")),
        ..AuditConfig::new(dir.path().join("audit.db"))
    };
    let store = AuditStore::open(&config).unwrap();
    store.record(patient_read()).await.unwrap();
    assert_eq!(store.count().unwrap(), 1);
    store.close().await;
}

#[tokio::test]
async fn search_async_runs_off_the_runtime() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir);
    store.record(patient_read()).await.unwrap();
    assert_eq!(
        store
            .search_async(params(&[("patient", "p1")]))
            .await
            .unwrap()
            .events
            .len(),
        1
    );
    store.close().await;
}

#[tokio::test]
async fn later_pages_see_the_rows_the_first_page_saw() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir);
    let day = 86_400;
    let base = 1_704_067_200; // 2024-01-01T00:00:00Z
    for i in 0..5 {
        store
            .record(facts(base + i * day, "alice", "Patient/p1", None, 200))
            .await
            .unwrap();
    }
    let page = |up_to: Option<i64>, offset: usize| {
        let mut query = params(&[("_count", "2")]);
        query.up_to = up_to;
        query.offset = offset;
        store.search_async(query)
    };
    let first = page(None, 0).await.unwrap();
    assert_eq!((first.events.len(), first.total), (2, 5));
    let expected_second = page(Some(first.up_to), 2).await.unwrap().events;
    // Committed after the first page, though recorded in the middle of its window: newest first, it would
    // have pushed the second page down by one.
    store
        .record(facts(base + 4 * day - 1, "bob", "Patient/p1", None, 200))
        .await
        .unwrap();
    let second = page(Some(first.up_to), 2).await.unwrap();
    assert_eq!(ids(&second.events), ids(&expected_second));
    assert_eq!(second.total, 5);
    assert_eq!(second.up_to, first.up_to);
    // A new search sees it.
    let fresh = page(None, 0).await.unwrap();
    assert_eq!(fresh.total, 6);
    assert!(fresh.up_to > first.up_to);
    store.close().await;
}

#[tokio::test]
async fn an_auditor_sees_the_events_of_their_practices_and_of_none() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir);
    let reached = |ods: &[&str], organisations: &[&str]| {
        let mut f = facts(1_704_067_200, "alice", "Patient/p1", Some("p1"), 200);
        f.practices = ods.iter().map(|s| s.to_string()).collect();
        f.native_calls.retain(|call| ods.contains(&call.practice.as_str()));
        if let Some(who) = f.who.as_mut() {
            who.organisations = organisations.iter().map(|s| s.to_string()).collect();
        }
        f
    };
    let first = store.record(reached(&["Y90001"], &["Y90001", "Y90002"])).await.unwrap();
    let second = store.record(reached(&["Y90002"], &["Y90001", "Y90002"])).await.unwrap();
    // Refused before reaching a practice: filed under the practices its user acts for.
    let refused = store.record(reached(&[], &["Y90002"])).await.unwrap();
    // Refused after naming a patient of one of the user's practices: that practice's only (its query is that
    // practice's data); after naming another's: theirs and the user's (their user's attempt).
    let mut named = reached(&["Y90001"], &["Y90001", "Y90002"]);
    named.status = 404;
    let named = store.record(named).await.unwrap();
    let mut probe = reached(&["Y90001"], &["Y90002"]);
    probe.status = 404;
    let probe = store.record(probe).await.unwrap();
    // Found empty after naming another's: as refused (a search that could reach nothing of theirs).
    let empty_probe = store.record(reached(&["Y90001"], &["Y90002"])).await.unwrap();
    // No practice at all (a 401 without a token).
    let mut anonymous = reached(&[], &[]);
    anonymous.who = None;
    let nobody = store.record(anonymous).await.unwrap();
    let seen = |practices: &[&str]| {
        let query = AuditQuery {
            practices: Some(practices.iter().map(|s| s.to_string()).collect()),
            ..AuditQuery::default()
        };
        let events = store.search(&query).unwrap();
        let mut ids: Vec<String> = ids(&events).into_iter().map(String::from).collect();
        ids.sort();
        ids
    };
    let sorted = |list: &[&String]| {
        let mut list: Vec<String> = list.iter().map(|s| s.to_string()).collect();
        list.sort();
        list
    };
    assert_eq!(
        seen(&["Y90001"]),
        sorted(&[&first, &named, &probe, &empty_probe, &nobody])
    );
    assert_eq!(
        seen(&["Y90002"]),
        sorted(&[&second, &refused, &probe, &empty_probe, &nobody])
    );
    assert_eq!(seen(&[]), sorted(&[&nobody]));
    assert_eq!(store.search(&AuditQuery::default()).unwrap().len(), 7);
    store.close().await;
}

#[tokio::test]
async fn events_stored_before_practices_were_filed_are_filed_on_opening() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir);
    // Reached practice A12345 (its native call), as patient_read() says.
    let id = store.record(patient_read()).await.unwrap();
    store.close().await;
    // As version 1 left it: no practices apart.
    let conn = rusqlite::Connection::open(dir.path().join("audit.db")).unwrap();
    conn.execute_batch("DELETE FROM audit_practice; PRAGMA user_version = 1;")
        .unwrap();
    drop(conn);
    let store = open(&dir);
    let seen = |ods: &str| {
        let query = AuditQuery {
            practices: Some(vec![ods.to_string()]),
            ..AuditQuery::default()
        };
        store.search(&query).unwrap().len()
    };
    assert_eq!(seen("Y90001"), 0, "another practice's auditor");
    assert_eq!(seen("A12345"), 1, "{id}");
    store.close().await;
}

/// A commit that fails (here another process holds the database's write lock past the writer's 5 s wait)
/// marks the store failing, so readiness and the handler turn requests away before any GP system is asked,
/// and keeps its event; the first commit that succeeds (a probe's) ends it and stores the event, late, without
/// a restart.
#[tokio::test]
async fn a_store_that_cannot_commit_says_so_until_it_can() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir);
    store.record(patient_read()).await.unwrap();
    assert!(!store.is_failing() && store.is_accepting());
    let blocker = rusqlite::Connection::open(dir.path().join("audit.db")).unwrap();
    blocker.execute_batch("BEGIN EXCLUSIVE").unwrap();
    // An answered request, and one whose client left before its answer (499), in one failing batch.
    let mut left = patient_read();
    left.status = 499;
    let (answered, abandoned) = tokio::join!(store.record(patient_read()), store.record(left));
    assert!(answered.is_err() && abandoned.is_err());
    assert!(store.is_failing() && !store.is_accepting());
    // Probes (readiness asks for them; one queued at a time, each waiting little for the lock) end it once the
    // database takes commits again, and commit the kept event, with no request needed.
    store.probe();
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    assert!(store.is_failing(), "still locked");
    blocker.execute_batch("COMMIT").unwrap();
    drop(blocker);
    let mut probes = 0;
    while store.is_failing() && probes < 50 {
        store.probe();
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        probes += 1;
    }
    assert!(!store.is_failing() && store.is_accepting());
    // The event whose commit failed was kept, and committed by the probe that ended it, saying its answer was
    // withheld.
    assert_eq!(store.count().unwrap(), 3);
    let events = store.search(&AuditQuery::default()).unwrap();
    let withheld: Vec<&Value> = events.iter().filter(|e| e["outcome"] == "8").collect();
    // Only the answered one: the client that left was sent nothing to withhold.
    assert_eq!(withheld.len(), 1, "{events:?}");
    assert!(
        withheld[0]["outcomeDesc"].as_str().unwrap().starts_with("IM1-5101"),
        "{}",
        withheld[0]
    );
    let request = withheld[0]["entity"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["type"]["code"] == "XrequestId")
        .unwrap();
    let detail = |name: &str| -> Vec<Value> {
        let details = request["detail"].as_array().unwrap().iter();
        details
            .filter(|d| d["type"] == name)
            .map(|d| d["valueString"].clone())
            .collect()
    };
    assert_eq!(detail("status"), ["503"]);
    assert_eq!(detail("outcome-code"), ["IM1-5101"]);
    store.record(patient_read()).await.unwrap();
    assert_eq!(store.count().unwrap(), 4);
    store.close().await;
}
