//! The response cache: what a native read or search translated to, kept for a short while and shared by every
//! request that would make the same native calls.
//!
//! Safe by construction rather than by key discipline alone:
//! - the key is what decides the native calls and their translation: the practice, the surface and, on the
//!   patient-facing surface, whose linkage is used (a hash of the NHS number: the cache never holds one), the
//!   resource type, and the read id or the searched record with every search parameter;
//! - everything that differs per principal runs after the cache, on every request: practice reach (on ids, before
//!   it), the compartment and granular scopes per returned resource, confidential items, data minimisation. A
//!   cached answer can therefore never carry one principal's view to another.
//!
//! Loads are single-flight: concurrent requests for the same key wait for one native call. Errors are not
//! cached. An answer's age counts from when its load began (RFC 9111 section 4.2.3): it is kept for the
//! time-to-live from then, and a response that served kept answers says how old the oldest is (`Age`).
//! `Cache-Control: no-cache` (or `no-store`, `max-age=0`) on a request skips the lookup and refreshes the entry;
//! `max-age=N` takes a kept answer no older than N seconds, and refreshes an older one. An answer is kept only
//! if no newer one was kept meanwhile. Each hit is noted on the interaction's AuditEvent, per practice
//! (`cache-hit`, `cache-load`) and in sum (`cache`: hit, partial, miss or none).

use crate::app::{note_practice_reached, AppState, NativeWork};
use crate::auth::{Principal, Role};
use crate::backend::PracticeBackend;
use crate::fhir::rest::{Freshness, SearchParam};
use crate::fhir::{FhirError, FhirResult};
use crate::ids::LogicalId;
use crate::mapping::file::ParamDef;
use crate::mapping::MappingFile;
use crate::translate::{self, Context, Produced};
use crate::tree::Tree;
use moka::ops::compute::Op;
use serde_json::Value;
use sha2::{Digest, Sha256};
use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How long answers are kept and how many resources at most.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CacheConfig {
    /// Zero switches the cache off.
    pub ttl: Duration,
    /// The bound on cached resources: an answer weighs one per resource, plus one, and a resource one more
    /// per 4 KiB of text it holds (a document's content), so the bound holds memory as well as count.
    pub max_resources: u64,
    /// How long the records a patient's linkage opens are remembered (zero: asked on every request). A
    /// revoked proxy link stops working within this time.
    pub linkage_ttl: Duration,
}

impl Default for CacheConfig {
    fn default() -> Self {
        // Short enough that a clinician sees a change made in the GP system within half a minute; long enough
        // that a page of results, its includes and an app's burst of reads make one native call.
        CacheConfig {
            ttl: Duration::from_secs(30),
            max_resources: 50_000,
            // Each lookup is a native call (a PFS session or linkage listing); two minutes spares those for an
            // app's session while a revoked proxy link stops working soon.
            linkage_ttl: Duration::from_secs(120),
        }
    }
}

/// Who the native calls are made as: the practice's transaction-API credentials, or one patient's linkage.
#[derive(Clone, PartialEq, Eq, Hash)]
enum Caller {
    Transaction,
    /// SHA-256 of the patient's NHS number.
    Patient([u8; 32]),
}

/// What decides an answer. No `Debug`: it names records.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Key {
    practice: String,
    caller: Caller,
    resource_type: String,
    /// `read` + the logical id, or `search` + the record key and the parameters, encoded unambiguously.
    request: String,
}

impl Key {
    fn new(practice: &str, principal: &Principal, resource_type: &str, request: String) -> Key {
        let caller = match (principal.role, principal.nhs_number.as_deref()) {
            (Role::Patient, Some(nhs)) => Caller::Patient(Sha256::digest(nhs.as_bytes()).into()),
            (Role::Patient, None) => Caller::Patient([0; 32]),
            _ => Caller::Transaction,
        };
        Key {
            practice: practice.to_string(),
            caller,
            resource_type: resource_type.to_string(),
            request,
        }
    }

    pub fn read(principal: &Principal, resource_type: &str, id: &LogicalId) -> Key {
        let request = serde_json::json!(["read", id.patient, id.item]).to_string();
        Key::new(&id.practice, principal, resource_type, request)
    }

    pub fn search(
        practice: &str,
        principal: &Principal,
        resource_type: &str,
        record: &str,
        params: &[(&ParamDef, &SearchParam)],
    ) -> Key {
        // Order is kept: a repeated parameter's first value is the one a request template reads.
        let params: Vec<Value> = params
            .iter()
            .map(|(_, p)| serde_json::json!([p.name, p.modifier, p.values]))
            .collect();
        let request = serde_json::json!(["search", record, params]).to_string();
        Key::new(practice, principal, resource_type, request)
    }
}

/// A translated answer, before any per-principal filtering.
#[derive(Default)]
pub struct Entry {
    pub resources: Vec<Tree>,
    pub warnings: Vec<Value>,
}

/// Text per unit of weight beyond a resource's first.
const BYTES_PER_WEIGHT: usize = 4096;

impl Entry {
    /// What the entry weighs against `max_resources` (see [`CacheConfig`]): a count of resources would let
    /// a few large documents hold gigabytes.
    fn weight(&self) -> u32 {
        // Warnings are few and short: their text is weighed as written.
        let warnings = self.warnings.iter().map(|w| w.to_string().len());
        let text: usize = self.resources.iter().map(text_bytes).chain(warnings).sum();
        let units = 1 + self.resources.len() + text / BYTES_PER_WEIGHT;
        u32::try_from(units).unwrap_or(u32::MAX)
    }
}

/// The bytes of text (keys and string values) a value holds.
fn text_bytes(value: &Tree) -> usize {
    match value {
        Tree::String(s) => s.len(),
        Tree::Array(items) => items.iter().map(text_bytes).sum(),
        Tree::Object(map) => map.iter().map(|(k, v)| k.len() + text_bytes(v)).sum(),
        _ => 0,
    }
}

/// An answer as kept, with when it was loaded.
#[derive(Clone)]
struct Kept {
    entry: Arc<Entry>,
    loaded: Instant,
}

/// The cache itself; off when its time-to-live is zero.
pub struct ResponseCache {
    entries: Option<moka::future::Cache<Key, Kept>>,
    /// Loads under way of answers not kept, or kept but older than a request asked, by key and when the answer
    /// they replace was loaded: concurrent requests share one load, and its failure. Kept apart from `entries`
    /// so that what a load gives is kept only if nothing newer was kept meanwhile (see `keep_newer`).
    loads: moka::future::Cache<(Key, Option<Instant>), Kept>,
    /// How long an answer is kept, from when its load began.
    ttl: Duration,
}

/// An answer expires its time-to-live after its load began, however late it was kept (one left by a request
/// dropped before keeping it, say).
struct FromLoad(Duration);

impl FromLoad {
    fn left(&self, kept: &Kept) -> Option<Duration> {
        Some(self.0.saturating_sub(kept.loaded.elapsed()))
    }
}

impl moka::Expiry<Key, Kept> for FromLoad {
    fn expire_after_create(&self, _: &Key, kept: &Kept, _: Instant) -> Option<Duration> {
        self.left(kept)
    }

    fn expire_after_update(&self, _: &Key, kept: &Kept, _: Instant, _: Option<Duration>) -> Option<Duration> {
        self.left(kept)
    }
}

impl ResponseCache {
    pub fn new(config: CacheConfig) -> ResponseCache {
        let entries = (!config.ttl.is_zero()).then(|| {
            moka::future::Cache::builder()
                .expire_after(FromLoad(config.ttl))
                .max_capacity(config.max_resources)
                .weigher(|_, kept: &Kept| kept.entry.weight())
                .build()
        });
        // Each is taken out once its answer is kept (or found kept); the lifetime only bounds one whose request
        // was dropped before keeping it.
        let loads = moka::future::Cache::builder()
            .time_to_live(config.ttl.max(Duration::from_secs(1)))
            .max_capacity(10_000)
            .build();
        ResponseCache {
            entries,
            loads,
            ttl: config.ttl,
        }
    }

    /// The answer for `key`: from the cache when one is kept that is as fresh as asked, else from `load`, once
    /// for every request waiting on the same key. How it was found is noted on the interaction's AuditEvent.
    pub async fn get_or_load<F>(&self, key: Key, fresh: Freshness, load: F) -> FhirResult<(Arc<Entry>, Lookup)>
    where
        F: Future<Output = FhirResult<Entry>>,
    {
        // Boxed once: the load (a whole translation) would otherwise be held in this future once per way it may
        // run, which in an unoptimised build overflows a test thread's stack.
        let load = Box::pin(load);
        let practice = key.practice.clone();
        let Some(entries) = &self.entries else {
            return Ok((load_kept(&practice, load).await?.entry, Lookup::Off));
        };
        if fresh.from_source() {
            let ours = load_kept(&practice, load).await?;
            keep_newer(entries, key, ours.clone()).await;
            return Ok((ours.entry, Lookup::Fresh));
        }
        let found = match entries.get(&key).await {
            Some(kept) if fresh.takes(kept.loaded.elapsed()) => return Ok((hit(&practice, kept), Lookup::Hit)),
            found => found,
        };
        // Not kept, or older than asked: loaded once for every request that finds the same answer missing or
        // too old.
        let replaced = found.map(|stale| stale.loaded);
        let shared_load = (key.clone(), replaced);
        // One whose request was dropped before keeping it: kept now, and loaded again if too old.
        if let Some(left) = self.loads.get(&shared_load).await {
            self.loads.invalidate(&shared_load).await;
            let age = left.loaded.elapsed();
            if fresh.takes(age) && age < self.ttl {
                keep_newer(entries, key, left.clone()).await;
                return Ok((hit(&practice, left), Lookup::Hit));
            }
        }
        // What this request's own load did, if it ran: found an answer kept meanwhile, or loaded one.
        let found_kept = AtomicBool::new(false);
        let loaded = AtomicBool::new(false);
        let load_once = async {
            // Kept by another request's load since this one looked (done and kept between the two lookups):
            // taken rather than loaded again.
            let newer = entries.get(&key).await.filter(|kept| {
                replaced.is_none_or(|replaced| kept.loaded > replaced) && fresh.takes(kept.loaded.elapsed())
            });
            if let Some(kept) = newer {
                found_kept.store(true, Ordering::Relaxed);
                return Ok(kept);
            }
            loaded.store(true, Ordering::Relaxed);
            load_kept(&practice, load).await
        };
        // Those that wait on it take what it loads, however long the GP system took to answer.
        let shared = self.loads.try_get_with(shared_load.clone(), load_once).await;
        let answer = shared.map_err(|e: Arc<FhirError>| FhirError::clone(&e))?;
        if !loaded.load(Ordering::Relaxed) {
            // Kept already: not left in `loads` for a later miss to take once `entries` has let it go.
            if found_kept.load(Ordering::Relaxed) {
                self.loads.invalidate(&shared_load).await;
            }
            // Loaded by another request since this one looked, or while it waited: from the cache, and as
            // fresh as any.
            return Ok((hit(&practice, answer), Lookup::Hit));
        }
        keep_newer(entries, key, answer.clone()).await;
        self.loads.invalidate(&shared_load).await;
        let lookup = if replaced.is_some() {
            Lookup::Fresh
        } else {
            Lookup::Miss
        };
        Ok((answer.entry, lookup))
    }
}

/// Runs a load, noted on the interaction's AuditEvent; the answer is as old as the moment the load began
/// (RFC 9111 section 4.2.3 counts the time taken to answer in its age).
async fn load_kept(practice: &str, load: impl Future<Output = FhirResult<Entry>>) -> FhirResult<Kept> {
    crate::audit::note(|facts| {
        facts.cache.loads.insert(practice.to_string());
    });
    let loaded = Instant::now();
    let entry = Arc::new(load.await?);
    Ok(Kept { entry, loaded })
}

/// Keeps an answer loaded from the source unless the one kept now is newer: a slow load begun earlier (a miss's,
/// say, while a `no-cache` request loaded the answer again) never replaces a newer one. Compared and kept in one
/// step per key; it never waits on another request's load.
async fn keep_newer(entries: &moka::future::Cache<Key, Kept>, key: Key, ours: Kept) {
    entries
        .entry(key)
        .and_compute_with(|kept| {
            // The same answer again (a load left over, kept twice) is not written again either.
            let newer = kept.is_some_and(|kept| kept.value().loaded >= ours.loaded);
            std::future::ready(if newer { Op::Nop } else { Op::Put(ours) })
        })
        .await;
}

/// A kept answer served: noted on the interaction's AuditEvent, and its age on the response.
fn hit(practice: &str, kept: Kept) -> Arc<Entry> {
    crate::audit::note(|facts| {
        facts.cache.hits.insert(practice.to_string());
    });
    let _ = OLDEST_SERVED.try_with(|oldest| {
        oldest.set(Some(oldest.get().map_or(kept.loaded, |o| o.min(kept.loaded))));
    });
    kept.entry
}

tokio::task_local! {
    /// When the oldest kept answer a request served was loaded.
    static OLDEST_SERVED: std::cell::Cell<Option<Instant>>;
}

/// When the oldest kept answer a response served was loaded: carried on the response until it leaves, where
/// its age becomes the response's `Age` (see [`stamp_age`]).
#[derive(Debug, Clone, Copy)]
pub struct Served(pub Instant);

/// Runs one request's handling, and gives when the oldest kept answer it served was loaded, if it served any.
/// An answer loaded for the request is not one.
pub async fn noting_served<F: Future>(handling: F) -> (F::Output, Option<Served>) {
    OLDEST_SERVED
        .scope(std::cell::Cell::new(None), async {
            let output = handling.await;
            (output, OLDEST_SERVED.with(std::cell::Cell::get).map(Served))
        })
        .await
}

/// A response that served kept answers says how old the oldest is, as it leaves (its AuditEvent committed):
/// `Age` in whole seconds (RFC 9111 section 5.1), so a client or an integration engine knows how old the data
/// may be. Only on a 200 or a 304: an answer withheld or failed since carries no data.
pub fn stamp_age<B>(mut response: http::Response<B>) -> http::Response<B> {
    let status = response.status();
    if let Some(Served(loaded)) = response.extensions().get::<Served>().copied() {
        if status == http::StatusCode::OK || status == http::StatusCode::NOT_MODIFIED {
            let age = http::HeaderValue::from(loaded.elapsed().as_secs());
            response.headers_mut().insert(http::header::AGE, age);
        }
    }
    response
}

/// How an answer was found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lookup {
    Hit,
    Miss,
    Fresh,
    Off,
}

impl Lookup {
    fn count(self, state: &AppState) {
        let outcome = match self {
            Lookup::Hit => "hit",
            Lookup::Miss => "miss",
            Lookup::Fresh => "fresh",
            Lookup::Off => "off",
        };
        state
            .metrics
            .cache_lookups
            .get_or_create(&crate::metrics::CacheLabels { outcome })
            .inc();
    }
}

/// `translate::read` through the cache; native calls are recorded when they are made.
pub async fn read(
    state: &AppState,
    ctx: &Context<'_>,
    practice: &PracticeBackend,
    mapping: &MappingFile,
    id: &LogicalId,
    fresh: Freshness,
) -> FhirResult<Tree> {
    let key = Key::read(ctx.principal, &mapping.resource, id);
    // Reached whether the answer comes from the cache or the practice: its auditors see the access.
    note_practice_reached(&practice.ods);
    let (entry, lookup) = state
        .cache
        .get_or_load(key, fresh, async {
            let mut work = NativeWork::new(state, practice);
            let result = translate::read(ctx, practice, mapping, id, &mut work.produced).await;
            result.map(|resource| Entry {
                resources: vec![resource],
                warnings: Vec::new(),
            })
        })
        .await?;
    lookup.count(state);
    entry
        .resources
        .first()
        .cloned()
        .ok_or_else(|| FhirError::internal("IM1-5004", "a cached read held no resource"))
}

/// `translate::search` through the cache, adding the answer's resources and warnings to `out`.
#[allow(clippy::too_many_arguments)]
pub async fn search(
    state: &AppState,
    ctx: &Context<'_>,
    practice: &PracticeBackend,
    mapping: &MappingFile,
    params: &[(&ParamDef, &SearchParam)],
    record: &str,
    fresh: Freshness,
    out: &mut Produced,
) -> FhirResult<()> {
    let key = Key::search(&practice.ods, ctx.principal, &mapping.resource, record, params);
    note_practice_reached(&practice.ods);
    let (entry, lookup) = state
        .cache
        .get_or_load(key, fresh, async {
            let mut work = NativeWork::new(state, practice);
            let result = translate::search(ctx, practice, mapping, params, record, &mut work.produced).await;
            result.map(|()| Entry {
                resources: std::mem::take(&mut work.produced.resources),
                warnings: std::mem::take(&mut work.produced.warnings),
            })
        })
        .await?;
    lookup.count(state);
    out.resources.extend(entry.resources.iter().cloned());
    out.warnings.extend(entry.warnings.iter().cloned());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn a_key() -> Key {
        Key {
            practice: "Y90001".into(),
            caller: Caller::Transaction,
            resource_type: "Patient".into(),
            request: "[]".into(),
        }
    }

    /// A cache keeping answers for `ttl`.
    fn keeping_for(ttl: Duration) -> ResponseCache {
        ResponseCache::new(CacheConfig {
            ttl,
            ..CacheConfig::default()
        })
    }

    fn answer(text: &str) -> Entry {
        Entry {
            resources: vec![Tree::from(text)],
            warnings: Vec::new(),
        }
    }

    #[test]
    fn age_is_stamped_on_an_answer_that_served_kept_data_only() {
        let served = Served(Instant::now() - Duration::from_millis(2_500));
        let response = |status: http::StatusCode, served: Option<Served>| {
            let mut response = http::Response::builder().status(status).body(()).unwrap();
            if let Some(served) = served {
                response.extensions_mut().insert(served);
            }
            stamp_age(response).headers().get(http::header::AGE).cloned()
        };
        assert_eq!(response(http::StatusCode::OK, Some(served)).unwrap(), "2");
        assert_eq!(response(http::StatusCode::NOT_MODIFIED, Some(served)).unwrap(), "2");
        assert_eq!(response(http::StatusCode::OK, None), None);
        // Withheld since (the audit trail unavailable): no data, no age.
        assert_eq!(response(http::StatusCode::SERVICE_UNAVAILABLE, Some(served)), None);
    }

    /// An answer is kept for the time-to-live from when its load began, not from when it was kept: a slow
    /// load's answer is no older than the time-to-live when served.
    #[tokio::test]
    async fn an_answer_expires_its_lifetime_after_its_load_began() {
        let cache = keeping_for(Duration::from_millis(400));
        let key = a_key();
        let slow = async {
            tokio::time::sleep(Duration::from_millis(300)).await;
            Ok(answer("slow"))
        };
        let (_, lookup) = cache
            .get_or_load(key.clone(), Freshness::default(), slow)
            .await
            .unwrap();
        assert_eq!(lookup, Lookup::Miss);
        tokio::time::sleep(Duration::from_millis(150)).await;
        let again = async { Ok(answer("again")) };
        let (kept, lookup) = cache.get_or_load(key, Freshness::default(), again).await.unwrap();
        assert_eq!((kept.resources[0].as_str(), lookup), (Some("again"), Lookup::Miss));
    }

    /// A load left by a request dropped before keeping it is taken only within the time-to-live from when it
    /// began.
    #[tokio::test]
    async fn a_load_left_over_past_its_lifetime_is_not_taken() {
        let cache = keeping_for(Duration::from_secs(2));
        let key = a_key();
        let left = Kept {
            entry: Arc::new(answer("left over")),
            loaded: Instant::now() - Duration::from_secs(3),
        };
        cache.loads.insert((key.clone(), None), left).await;
        let load = async { Ok(answer("loaded")) };
        let (kept, lookup) = cache.get_or_load(key, Freshness::default(), load).await.unwrap();
        assert_eq!((kept.resources[0].as_str(), lookup), (Some("loaded"), Lookup::Miss));
    }

    /// A miss's load that the GP system is slow to answer does not replace the answer a `no-cache` request
    /// loaded meanwhile: the newer answer stays.
    #[tokio::test]
    async fn a_slow_load_never_replaces_a_newer_answer() {
        let cache = ResponseCache::new(CacheConfig::default());
        let key = a_key();
        let slow = cache.get_or_load(key.clone(), Freshness::default(), async {
            tokio::time::sleep(Duration::from_millis(200)).await;
            Ok(answer("older"))
        });
        let fresh = async {
            tokio::time::sleep(Duration::from_millis(50)).await;
            cache
                .get_or_load(key.clone(), Freshness::FROM_SOURCE, async { Ok(answer("newer")) })
                .await
        };
        let (slow, fresh) = tokio::join!(slow, fresh);
        assert_eq!(slow.unwrap().1, Lookup::Miss);
        assert_eq!(fresh.unwrap().1, Lookup::Fresh);
        let (kept, lookup) = cache
            .get_or_load(key, Freshness::default(), async {
                Err(FhirError::internal("IM1-5000", "not loaded"))
            })
            .await
            .unwrap();
        assert_eq!((kept.resources[0].as_str(), lookup), (Some("newer"), Lookup::Hit));
    }

    #[test]
    fn a_document_weighs_by_its_size_and_a_resource_by_one() {
        let small = |i: usize| Tree::from(json!({"resourceType": "Condition", "id": format!("c{i}")}));
        let answer = Entry {
            resources: (0..10).map(small).collect(),
            warnings: Vec::new(),
        };
        assert_eq!(answer.weight(), 11);
        let document = Entry {
            resources: vec![Tree::from(
                json!({"resourceType": "Binary", "data": "A".repeat(1 << 20)}),
            )],
            warnings: Vec::new(),
        };
        assert_eq!(document.weight(), 2 + (1 << 20) / 4096);
    }
}
