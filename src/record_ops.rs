//! Operations that reach across one patient's record: `_include` (follow references from the page's
//! matches), `_revinclude` (items in the same record that point at them) and `Patient/$everything`. Each
//! included resource goes through the same read or search path as a direct request, so scopes, practice reach
//! and the compartment are checked for it again; what may not be seen is left out silently, never reported.

use crate::app::{read_one, AppState};
use crate::auth::Principal;
use crate::fhir::error::{push_once, warning, IssueType};
use crate::fhir::rest::{Freshness, Handling, Include, Interaction, SearchParam};
use crate::fhir::search;
use crate::fhir::{FhirError, FhirResult};
use crate::mapping::file::ParamType;
use crate::mapping::{Compartment, Registry};
use crate::reach;
use crate::translate::Produced;
use crate::tree::Tree;
use serde_json::Value;
use std::collections::BTreeSet;

/// The record a set of resources belongs to: practice and the patient's native key.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct RecordKey {
    pub practice: String,
    pub patient: String,
}

/// How many of one request's searches or reads run at once. Each practice's native places (`max_in_flight`)
/// bound its calls whatever this is; this keeps one request from queueing on all of them.
const FAN_OUT: usize = 4;

/// Runs the work several at once, giving the outputs in the order given. Only one at a time while any GP system
/// has calls waiting for a place: under load a request holds one place in a queue, not four. Once an output
/// `stops` the work (a failure that ends the request), nothing more is started; what was started finishes, so
/// every native call made is audited. (A `Vec`, made before: an iterator adapter's closure held in a request's
/// future would keep it from being `Send`.)
pub async fn fan_out<F: std::future::Future>(
    state: &AppState,
    work: Vec<F>,
    stops: impl Fn(&F::Output) -> bool,
) -> Vec<F::Output> {
    use futures_util::stream::{FuturesOrdered, StreamExt};
    let mut pending = work.into_iter();
    let mut running = FuturesOrdered::new();
    let mut out = Vec::new();
    let mut stopped = false;
    loop {
        while !stopped && running.len() < FAN_OUT && (running.is_empty() || !state.backend.is_queueing()) {
            match pending.next() {
                Some(next) => running.push_back(next),
                None => break,
            }
        }
        let Some(output) = running.next().await else {
            return out;
        };
        stopped |= stops(&output);
        out.push(output);
    }
}

/// Reads resources by type and id, several at once (see [`fan_out`]), each with its answer, in the order given.
pub async fn read_each<'w>(
    state: &AppState,
    principal: &Principal,
    request_id: &str,
    fresh: Freshness,
    wanted: &'w [(&'w str, String)],
) -> Vec<(&'w (&'w str, String), FhirResult<Tree>)> {
    let mut reads = Vec::with_capacity(wanted.len());
    for target in wanted {
        reads.push(async move {
            let (resource_type, id) = target;
            (
                target,
                read_one(state, principal, resource_type, id, request_id, fresh).await,
            )
        });
    }
    fan_out(state, reads, |_| false).await
}

/// One search of a record: the type searched, the record, and optionally a reference parameter of the type
/// with its value, which narrows the native call (a practice's slots of one session).
pub struct RecordSearch<'a> {
    pub resource_type: &'a str,
    pub record: &'a RecordKey,
    pub narrow: Option<(&'a str, &'a str)>,
}

/// Every searchable item of one type in one record, filtered to what the principal may see.
pub async fn search_record(
    state: &AppState,
    principal: &Principal,
    request_id: &str,
    search: RecordSearch<'_>,
    fresh: Freshness,
    warnings: &mut Vec<Value>,
) -> FhirResult<Vec<Tree>> {
    let RecordSearch {
        resource_type,
        record,
        narrow,
    } = search;
    let Some(practice) = state.backend.practice(&record.practice) else {
        return Ok(Vec::new());
    };
    let Some(mapping) = state.registry.get(practice.supplier.key(), resource_type) else {
        return Ok(Vec::new());
    };
    // Items are searched in a patient's record; practice-level data (slots, schedules, staff) in the
    // practice's, whose key is empty.
    let practice_level = record.patient.is_empty();
    let searchable = match mapping.compartment {
        Compartment::Patient => !practice_level,
        Compartment::None => practice_level,
        Compartment::SelfPatient => false,
    };
    if mapping.search.is_none() || !searchable {
        return Ok(Vec::new());
    }
    // A record the patient's linkage does not open is not asked for.
    let linked = reach::linked_records(state, principal, &record.practice, request_id).await?;
    if !practice_level && linked.as_ref().is_some_and(|linked| !linked.reaches(&record.patient)) {
        return Ok(Vec::new());
    }
    let ctx = crate::app::translation(state, principal, request_id, linked.as_deref());
    let mut produced = Produced::default();
    let narrowing = narrow.and_then(|(name, value)| {
        let def = mapping.params.iter().find(|d| d.name == name)?;
        let param = crate::fhir::rest::SearchParam {
            name: name.to_string(),
            modifier: None,
            values: vec![value.to_string()],
        };
        Some((def, param))
    });
    let params: Vec<(&crate::mapping::file::ParamDef, &crate::fhir::rest::SearchParam)> =
        narrowing.iter().map(|(d, p)| (*d, p)).collect();
    crate::cache::search(
        state,
        &ctx,
        practice,
        mapping,
        &params,
        &record.patient,
        fresh,
        &mut produced,
    )
    .await?;
    // What the translation had to say (a window read partly, a value it could not take) is said here too.
    warnings.append(&mut produced.warnings);
    let mut out = Vec::new();
    for resource in produced.resources {
        if reach::may_see(state, principal, linked.as_deref(), &resource, 's') {
            if let crate::policy::Minimised::Kept(resource) =
                crate::policy::minimise(practice, principal, resource, warnings)
            {
                out.push(resource);
            }
        }
    }
    Ok(out)
}

/// Checks a search's `_include`s and `_revinclude`s before anything is searched: one that cannot be followed
/// from a page of the type searched is a 400, or under `Prefer: handling=lenient` a warning (and left out
/// by [`includes`]).
pub fn check_includes(state: &AppState, interaction: &Interaction, warnings: &mut Vec<Value>) -> FhirResult<()> {
    let resource_type = interaction.resource_type.as_deref().unwrap_or_default();
    let all = (interaction.include.iter().map(|i| (i, false))).chain(interaction.revinclude.iter().map(|i| (i, true)));
    for (include, reverse) in all {
        let Some(problem) = include_problem(state, resource_type, include, reverse) else {
            // Reverse includes are found for the matches, not for what the includes brought.
            if reverse && include.iterate {
                warnings.push(warning(
                    IssueType::Informational,
                    "IM1-1206",
                    format!(
                        "_revinclude:iterate={}:{} was followed from the matches only",
                        include.source, include.param
                    ),
                ));
            }
            continue;
        };
        if interaction.handling == Handling::Lenient {
            warnings.push(warning(
                IssueType::NotSupported,
                "IM1-1206",
                format!("{problem} and was ignored"),
            ));
        } else {
            let name = if reverse { "_revinclude" } else { "_include" };
            return Err(FhirError::bad_request("IM1-1206", problem).at(name));
        }
    }
    Ok(())
}

/// Whether an include can be followed from a page of `resource_type` (one that cannot is refused, or left out
/// under lenient handling, links included).
pub fn followable(state: &AppState, resource_type: &str, include: &Include, reverse: bool) -> bool {
    include_problem(state, resource_type, include, reverse).is_none()
}

/// Why an include cannot be followed from a page of `resource_type`, if it cannot.
fn include_problem(state: &AppState, resource_type: &str, include: &Include, reverse: bool) -> Option<String> {
    let what = match (reverse, include.iterate) {
        (true, true) => "_revinclude:iterate",
        (true, false) => "_revinclude",
        (false, true) => "_include:iterate",
        (false, false) => "_include",
    };
    let named = format!("{what}={}:{}", include.source, include.param);
    // A type no mapping serves (AuditEvent) has nothing followed from its pages.
    if state.registry.for_resource(resource_type).next().is_none() {
        return Some(format!("{named} is not supported on {resource_type} searches"));
    }
    let Some(def) = reference_param(state, &include.source, &include.param) else {
        return Some(format!("{named} is not supported"));
    };
    if !reverse {
        // A target type the reference cannot point at would bring nothing.
        let defs = crate::mapping::profile::Defs::get();
        if let Some(target) = &include.target {
            let may = defs.may_reference(&include.source, &include.param, target) && def.follows(&format!("{target}/"));
            if !may {
                return Some(format!(
                    "{named}: {}.{} does not point at {target}",
                    include.source, include.param
                ));
            }
        }
        // R4: an include without `:iterate` names the type searched.
        return (!include.iterate && include.source != resource_type).then(|| {
            format!(
                "{named} follows {} references, and this search gives {resource_type}",
                include.source
            )
        });
    }
    // A reference that cannot point at the type searched would find nothing.
    let may_point = crate::mapping::profile::Defs::get().may_reference(&include.source, &include.param, resource_type);
    if !may_point || def.target.as_deref().is_some_and(|target| target != resource_type) {
        // Reverse includes are followed from the matches only, iterated or not.
        let only = if include.iterate {
            " (reverse includes are found for the matches only)"
        } else {
            ""
        };
        return Some(format!(
            "{named}: {}.{} does not point at {resource_type}{only}",
            include.source, include.param
        ));
    }
    // A patient's record items are searched one record at a time: not from a page of practice data (no record
    // on it).
    // Nor practice data from a page of patients or their items (no practice key on it).
    let source_in_records = state.registry.compartment_of(&include.source) == Some(Compartment::Patient);
    let source_is_practice_data = state.registry.compartment_of(&include.source) == Some(Compartment::None);
    let page_of_practice_data = state.registry.compartment_of(resource_type) == Some(Compartment::None);
    // Nor Patients from a page of practice data: a Patient is found by its identifier, or by name and birth
    // date, never by what it points at.
    let source_is_patient = state.registry.compartment_of(&include.source) == Some(Compartment::SelfPatient);
    if source_is_patient && page_of_practice_data {
        return Some(format!(
            "{named} is not supported: Patients are found by identifier, or by family and birthdate, not by what they point at"
        ));
    }
    if source_is_practice_data && !page_of_practice_data {
        return Some(format!(
            "{named} is not supported: {} are practice data, not searched from a patient's record",
            include.source
        ));
    }
    (source_in_records && page_of_practice_data).then(|| {
        format!(
            "{named} is not supported: {} are searched one patient's record at a time",
            include.source
        )
    })
}

/// A page of matches whose includes are followed, and for whom.
pub struct IncludesOf<'a> {
    pub state: &'a AppState,
    pub principal: &'a Principal,
    pub request_id: &'a str,
    pub interaction: &'a Interaction,
    pub page: &'a [Tree],
    /// The records the page belongs to (see [`records_of`]).
    pub records: &'a [RecordKey],
}

/// `_include` and `_revinclude` for one page of matches (those [`check_includes`] let through).
pub async fn includes(of: &IncludesOf<'_>, warnings: &mut Vec<Value>) -> FhirResult<Vec<Tree>> {
    let (state, principal, request_id) = (of.state, of.principal, of.request_id);
    let (interaction, page) = (of.interaction, of.page);
    let resource_type = interaction.resource_type.as_deref().unwrap_or_default();
    let mut seen: BTreeSet<String> = page.iter().map(type_and_id).collect();
    // What points at the matches first: `:iterate` includes follow from it too.
    let mut out = reverse_includes(of, &mut seen, warnings).await?;
    // The includes to follow, each with its parameter; an `:iterate` one follows the references of any type
    // it names, in the matches and then in what the includes brought, round after round.
    let mut follow = Vec::new();
    for include in &interaction.include {
        let def = reference_param(state, &include.source, &include.param);
        if let (Some(def), None) = (def, include_problem(state, resource_type, include, false)) {
            follow.push((include, def));
        }
    }
    let mut round: Vec<String> = include_targets(page, &follow, true, &mut seen);
    round.extend(include_targets(&out, &follow, false, &mut seen));
    for depth in 0.. {
        if round.is_empty() {
            break;
        }
        if depth == MAX_INCLUDE_ROUNDS {
            warnings.push(warning(
                IssueType::TooCostly,
                "IM1-1216",
                format!("_include:iterate was followed {MAX_INCLUDE_ROUNDS} references deep and no further"),
            ));
            break;
        }
        let first_new = out.len();
        let targets: Vec<(&str, String)> = round
            .iter()
            .filter_map(|reference| reference.split_once('/'))
            .map(|(target_type, id)| (target_type, id.to_string()))
            .collect();
        for ((target_type, _), read) in read_each(state, principal, request_id, interaction.fresh, &targets).await {
            // An item not found or withheld is simply absent (its existence is not told); a type this user
            // may not read at all is said once.
            match read {
                Ok(target) => out.push(target),
                Err(e) => say_unread(&e, target_type, "an _include", warnings),
            }
        }
        round = include_targets(&out[first_new..], &follow, false, &mut seen);
    }
    order_included(&state.registry, &mut out);
    Ok(out)
}

/// What includes brought, in the same order whichever system the practice runs (each native reply comes in
/// its supplier's own order): by type, then each type as a search of it orders its matches.
fn order_included(registry: &Registry, included: &mut [Tree]) {
    let type_of = |r: &Tree| r["resourceType"].as_str().unwrap_or_default().to_string();
    included.sort_by_key(type_of);
    let mut start = 0;
    while start < included.len() {
        let resource_type = type_of(&included[start]);
        let run = included[start..]
            .iter()
            .take_while(|r| type_of(r) == resource_type)
            .count();
        crate::fhir::sort::sort_as_searched(registry, &resource_type, &mut included[start..start + run], &[]);
        start += run;
    }
}

/// `_revinclude`: the items of the types named that point at the matches. A type this user may not search is
/// said, not a failure of the whole search.
async fn reverse_includes(
    of: &IncludesOf<'_>,
    seen: &mut BTreeSet<String>,
    warnings: &mut Vec<Value>,
) -> FhirResult<Vec<Tree>> {
    let (state, principal, request_id) = (of.state, of.principal, of.request_id);
    let (interaction, page, records) = (of.interaction, of.page, of.records);
    let resource_type = interaction.resource_type.as_deref().unwrap_or_default();
    let mut out = Vec::new();
    for include in &interaction.revinclude {
        let Some(def) = reference_param(state, &include.source, &include.param) else {
            continue;
        };
        if include_problem(state, resource_type, include, true).is_some() {
            continue;
        }
        let wanted: BTreeSet<String> = page.iter().map(type_and_id).collect();
        // Items of a patient's record, and most practice data, are searched once per record (a practice's own
        // is its data). Where the native call reads what the parameter names whole (a session's slots:
        // `window.unless`), it is searched by the reference to each match, so it reads what points at the page
        // rather than its default window.
        let narrows = state
            .registry
            .for_resource(&include.source)
            .any(|m| m.search_reads_whole_by(&include.param));
        let by_reference = narrows && state.registry.compartment_of(&include.source) == Some(Compartment::None);
        let mut searches: Vec<(&RecordKey, Option<&str>)> = Vec::new();
        for record in records {
            if by_reference {
                let here = wanted.iter().filter(|reference| {
                    reference
                        .split_once('/')
                        .and_then(|(t, id)| state.ids.decode(t, id).ok())
                        .is_some_and(|id| id.practice == record.practice)
                });
                searches.extend(here.map(|reference| (record, Some(reference.as_str()))));
            } else {
                searches.push((record, None));
            }
        }
        for (record, reference) in searches {
            let narrow = reference.map(|r| (include.param.as_str(), r));
            let search = RecordSearch {
                resource_type: &include.source,
                record,
                narrow,
            };
            let found = match search_record(state, principal, request_id, search, interaction.fresh, warnings).await {
                Ok(found) => found,
                Err(e) if is_type_refusal(&e) => {
                    say_type_refusal(&e, &format!("_revinclude left out {}", include.source), warnings);
                    break;
                }
                Err(e) => return Err(e),
            };
            for item in found {
                let points_here = references(&item, def).iter().any(|r| wanted.contains(r));
                if points_here && seen.insert(type_and_id(&item)) {
                    out.push(item);
                }
            }
        }
    }
    Ok(out)
}

/// How many rounds of `_include:iterate` are followed (an Appointment's slot, its schedule, its actor).
const MAX_INCLUDE_ROUNDS: usize = 4;

/// The references to read next: those the includes follow from `resources` (every include from the matches,
/// only `:iterate` ones from included resources), of the type each names, not seen before.
fn include_targets(
    resources: &[Tree],
    follow: &[(&Include, &crate::mapping::file::ParamDef)],
    matches: bool,
    seen: &mut BTreeSet<String>,
) -> Vec<String> {
    let mut out = Vec::new();
    for (include, def) in follow.iter().filter(|(include, _)| matches || include.iterate) {
        let sources = resources
            .iter()
            .filter(|r| r.get("resourceType").and_then(Tree::as_str) == Some(include.source.as_str()));
        for resource in sources {
            for reference in references(resource, def) {
                let target_type = reference.split_once('/').map_or("", |(t, _)| t);
                if include.target.as_deref().is_some_and(|t| t != target_type) || !seen.insert(reference.clone()) {
                    continue;
                }
                out.push(reference);
            }
        }
    }
    out
}

/// The records a page of matches belongs to: a Patient is its own record; items carry theirs in their id;
/// practice-level data belongs to its practice's own (an empty patient key).
pub fn records_of(state: &AppState, page: &[Tree]) -> Vec<RecordKey> {
    let mut out = BTreeSet::new();
    for resource in page {
        let resource_type = resource.get("resourceType").and_then(Tree::as_str).unwrap_or_default();
        let id = resource.get("id").and_then(Tree::as_str).unwrap_or_default();
        let Ok(logical) = state.ids.decode(resource_type, id) else {
            continue;
        };
        let compartment = state.registry.compartment_of(resource_type);
        let record = match compartment {
            Some(Compartment::None) => Some(""),
            _ => compartment
                .and_then(|c| c.record_of(&logical))
                .filter(|r| !r.is_empty()),
        };
        if let Some(patient) = record {
            out.insert(RecordKey {
                practice: logical.practice.clone(),
                patient: patient.to_string(),
            });
        }
    }
    out.into_iter().collect()
}

fn reference_param<'r>(
    state: &'r AppState,
    resource_type: &str,
    name: &str,
) -> Option<&'r crate::mapping::file::ParamDef> {
    state
        .registry
        .param(resource_type, name)
        .filter(|d| d.kind == ParamType::Reference)
}

/// The references a reference parameter finds in a resource (of its target type only, when it names one).
fn references(resource: &Tree, def: &crate::mapping::file::ParamDef) -> Vec<String> {
    search::collect(resource, &def.paths)
        .into_iter()
        .filter_map(|v| v.get("reference").and_then(Tree::as_str).map(String::from))
        .filter(|r| def.follows(r))
        .collect()
}

/// Why something `by` named (an include, the record) is not in the answer, said once: the native system failed
/// to give it (incomplete), or this user may not read its type; one simply not found is absent, as any id.
pub fn say_unread(e: &crate::fhir::FhirError, resource_type: &str, by: &str, warnings: &mut Vec<Value>) {
    if e.status.is_server_error() {
        let message = format!("a {resource_type} named by {by} could not be read: {}", e.message);
        push_once(warnings, warning(IssueType::Incomplete, e.code, message));
    } else {
        say_type_refusal(
            e,
            &format!("{resource_type} resources named by {by} were left out"),
            warnings,
        );
    }
}

/// A read refused for its type (scopes, no mapping for this kind of user) or for its kind of item (a practice's
/// document policy) tells nothing about one item: it is said, once. Any other refusal leaves the item absent.
fn say_type_refusal(e: &crate::fhir::FhirError, what: &str, warnings: &mut Vec<Value>) {
    if is_type_refusal(e) {
        push_once(
            warnings,
            warning(IssueType::Forbidden, "IM1-2103", format!("{what}: {}", e.message)),
        );
    }
}

/// Whether a refusal is of a whole type or kind of item for this user, rather than of one item.
fn is_type_refusal(e: &crate::fhir::FhirError) -> bool {
    matches!(e.code, "IM1-2101" | "IM1-2401" | "IM1-2201")
}

/// The practice's data that `Patient/$everything` also returns where what it returns names it (R4: "whatever
/// resources are needed to support the records, e.g. linked practitioners ... organizations"); a Slot or a
/// Schedule an appointment names is the practice's book, not the record's support.
pub const SUPPORTING: &[&str] = &["Practitioner", "PractitionerRole", "Organization"];

/// Whether a type is of a patient's record: the Patient, or an item in its compartment.
pub fn of_the_record(registry: &Registry, resource_type: &str) -> bool {
    resource_type == "Patient" || registry.compartment_of(resource_type) == Some(Compartment::Patient)
}

/// Whether a type is practice data `$everything` returns in support of a record (see [`SUPPORTING`]).
pub fn is_supporting(registry: &Registry, resource_type: &str) -> bool {
    SUPPORTING.contains(&resource_type) && registry.is_read(resource_type)
}

/// The supporting resources `sources` name, and those they name in turn (a PractitionerRole's Organization),
/// each read once through the read path, as an include would. A type this user may not read (a patient, the
/// practice's people) is said once, and so is one the native system failed to give; one not found is simply
/// absent.
pub async fn read_supporting(
    state: &AppState,
    principal: &Principal,
    request_id: &str,
    fresh: Freshness,
    types: &[&str],
    sources: &[&Tree],
    warnings: &mut Vec<Value>,
) -> Vec<Tree> {
    let mut read = BTreeSet::new();
    let mut supported: Vec<Tree> = Vec::new();
    loop {
        let mut wanted = Vec::new();
        for resource_type in types {
            for id in ids_named(sources.iter().copied().chain(&supported), resource_type) {
                if read.insert(format!("{resource_type}/{id}")) {
                    wanted.push((*resource_type, id));
                }
            }
        }
        if wanted.is_empty() {
            return supported;
        }
        for ((resource_type, _), read) in read_each(state, principal, request_id, fresh, &wanted).await {
            match read {
                Ok(found) => supported.push(found),
                // Named by what is returned, so a reference a client could not follow: said once a type.
                Err(e) => say_unread(&e, resource_type, "the record", warnings),
            }
        }
    }
}

/// The ids of one type that resources reference, each once, in the order first named.
pub fn ids_named<'a>(resources: impl Iterator<Item = &'a Tree>, resource_type: &str) -> Vec<String> {
    let prefix = format!("{resource_type}/");
    let mut named: Vec<String> = Vec::new();
    for resource in resources {
        each_reference(resource, &mut |reference| {
            if let Some(id) = reference.strip_prefix(&prefix) {
                if !named.iter().any(|n| n == id) {
                    named.push(id.to_string());
                }
            }
        });
    }
    named
}

/// Calls `found` with every `reference` a resource holds, at any depth.
pub fn each_reference(value: &Tree, found: &mut dyn FnMut(&str)) {
    match value {
        Tree::Object(map) => {
            for (key, item) in map {
                match (key, item) {
                    ("reference", Tree::String(reference)) => found(reference),
                    _ => each_reference(item, found),
                }
            }
        }
        Tree::Array(items) => items.iter().for_each(|item| each_reference(item, found)),
        _ => {}
    }
}

fn type_and_id(resource: &Tree) -> String {
    format!(
        "{}/{}",
        resource.get("resourceType").and_then(Tree::as_str).unwrap_or_default(),
        resource.get("id").and_then(Tree::as_str).unwrap_or_default()
    )
}

/// What `Patient/$everything` was asked to narrow to: `_type` (the types returned; the Patient only if named),
/// `_since` (resources updated at or after it; those whose source gives no update time are kept, as they
/// cannot be shown to be older) and `start`/`end` (care dates, not record currency dates: each item's own
/// date, see [`EverythingFilter::cared_for_within`], at or after `start` and at or before `end`; the Patient,
/// items of no dated type and items their source gives no such date for are kept, as they cannot be shown to
/// be outside).
#[derive(Debug, Default)]
pub struct EverythingFilter {
    pub types: Option<BTreeSet<String>>,
    pub since: Option<time::OffsetDateTime>,
    /// The care dates given (FHIR dates), matched as `ge<start>` and `le<end>` date searches are.
    start: Option<String>,
    end: Option<String>,
}

/// A parameter `$everything` does not take: a 400, or a warning under `Prefer: handling=lenient`.
fn unsupported_by_everything(name: &str, handling: Handling, warnings: &mut Vec<Value>) -> FhirResult<()> {
    let name = name.chars().take(40).collect::<String>();
    if handling == Handling::Lenient {
        warnings.push(warning(
            IssueType::NotSupported,
            "IM1-1201",
            format!("parameter '{name}' is not supported by $everything and was ignored"),
        ));
        return Ok(());
    }
    Err(FhirError::bad_request(
        "IM1-1201",
        format!(
            "parameter '{name}' is not supported by $everything (it takes _type, _since, start and end, and \
             the result parameters _count, _elements, _summary, _format and _pretty)"
        ),
    )
    .at(name))
}

impl EverythingFilter {
    /// Reads the operation's parameters: unknown ones are a 400, or a warning under `Prefer: handling=lenient`.
    pub fn parse(state: &AppState, interaction: &Interaction, warnings: &mut Vec<Value>) -> FhirResult<Self> {
        let mut filter = EverythingFilter::default();
        for param in &interaction.params {
            match param.name.as_str() {
                "_type" => {
                    let mut types = BTreeSet::new();
                    for name in &param.values {
                        // The record's types, and the practice data that supports it (see `everything`).
                        let known = of_the_record(&state.registry, name) || is_supporting(&state.registry, name);
                        if !known {
                            return Err(FhirError::bad_request(
                                "IM1-1214",
                                format!(
                                    "'{}' is not a type of a patient's record, or of what supports it, here",
                                    name.chars().take(40).collect::<String>()
                                ),
                            )
                            .at("_type"));
                        }
                        types.insert(name.clone());
                    }
                    // Repeated, the lists add up (an operation's 0..* parameter).
                    filter.types.get_or_insert_with(BTreeSet::new).append(&mut types);
                }
                "_since" => {
                    let value = param.values.first().cloned().unwrap_or_default();
                    let (since, _) = crate::fhir::dates::range(&value).ok_or_else(|| {
                        FhirError::bad_request("IM1-1203", "'_since' is not a FHIR instant").at("_since")
                    })?;
                    filter.since = Some(since);
                }
                name @ ("start" | "end") => filter.care_date(name, &param.values)?,
                other => unsupported_by_everything(other, interaction.handling, warnings)?,
            }
        }
        if filter.since.is_some() {
            filter.say_what_since_cannot_narrow(&state.registry, warnings);
        }
        let range = |date: &Option<String>| date.as_deref().and_then(crate::fhir::dates::range);
        if let (Some((start, _)), Some((_, end))) = (range(&filter.start), range(&filter.end)) {
            if start > end {
                return Err(FhirError::bad_request("IM1-1203", "'start' is after 'end'").at("start"));
            }
        }
        // Result parameters that shape a search's page but not this operation's.
        for name in interaction.page_shaping() {
            unsupported_by_everything(name, interaction.handling, warnings)?;
        }
        Ok(filter)
    }

    /// `_since` keeps what cannot be shown older: every resource of a type whose mappings state no
    /// `meta.lastUpdated` (no GP system's API dates an item's last change, only its entry). Said, so that a
    /// client syncing by `_since` knows it was given everything of those types rather than what changed.
    fn say_what_since_cannot_narrow(&self, registry: &Registry, warnings: &mut Vec<Value>) {
        let undated: Vec<&str> = registry
            .resource_types()
            .into_iter()
            .filter(|t| of_the_record(registry, t) && self.wants(t))
            .filter(|t| registry.for_resource(t).any(|m| !m.states_last_updated))
            .collect();
        if !undated.is_empty() {
            warnings.push(warning(
                IssueType::Informational,
                "IM1-1218",
                format!(
                    "'_since' narrows only resources that say when they last changed (meta.lastUpdated): no {} \
                     here does, as no GP system's API dates an item's last change, so every one was kept",
                    undated.join(", ")
                ),
            ));
        }
    }

    /// `start` or `end`: one FHIR date each (the operation takes each at most once).
    fn care_date(&mut self, name: &str, values: &[String]) -> FhirResult<()> {
        let [value] = values else {
            return Err(FhirError::bad_request("IM1-1203", format!("'{name}' takes one date")).at(name));
        };
        let bound = if name == "start" {
            &mut self.start
        } else {
            &mut self.end
        };
        if bound.is_some() {
            return Err(FhirError::bad_request("IM1-1203", format!("'{name}' is given twice")).at(name));
        }
        if crate::fhir::dates::range(value).is_none() {
            return Err(FhirError::bad_request("IM1-1203", format!("'{name}' is not a FHIR date")).at(name));
        }
        *bound = Some(value.clone());
        Ok(())
    }

    /// Whether `_type` names the type (not merely leaves it in, as no `_type` does).
    pub fn names(&self, resource_type: &str) -> bool {
        self.types.as_ref().is_some_and(|types| types.contains(resource_type))
    }

    pub fn wants(&self, resource_type: &str) -> bool {
        self.types.as_ref().is_none_or(|types| types.contains(resource_type))
    }

    /// Whether a resource is recent enough for `_since` and, by its care date, within `start` and `end`.
    pub fn keeps(&self, resource: &Tree, registry: &Registry) -> bool {
        self.updated_since(resource) && self.cared_for_within(resource, registry)
    }

    fn updated_since(&self, resource: &Tree) -> bool {
        let Some(since) = self.since else { return true };
        let updated = resource
            .pointer("/meta/lastUpdated")
            .and_then(Tree::as_str)
            .and_then(crate::fhir::dates::range);
        updated.is_none_or(|(at, _)| at >= since)
    }

    /// Whether a resource's care date is within `start` and `end`: its onset where its type has one and it
    /// holds it (an allergy's onset, not when it was recorded), else the first of its type's dates it holds.
    pub fn cared_for_within(&self, resource: &Tree, registry: &Registry) -> bool {
        let resource_type = resource.get("resourceType").and_then(Tree::as_str).unwrap_or_default();
        // The Patient is the record itself: its birth date is no care date.
        if (self.start.is_none() && self.end.is_none()) || resource_type == "Patient" {
            return true;
        }
        // When the record was last changed is no care date.
        let mut dates: Vec<_> = registry
            .date_params(resource_type)
            .filter(|d| d.name != "_lastUpdated")
            .collect();
        dates.sort_by_key(|d| !d.name.starts_with("onset"));
        let Some(date) = dates
            .into_iter()
            .find(|d| !search::collect(resource, &d.paths).is_empty())
        else {
            return true;
        };
        let bounds = [("ge", &self.start), ("le", &self.end)];
        let care: Vec<SearchParam> = bounds
            .into_iter()
            .filter_map(|(prefix, bound)| {
                bound.as_ref().map(|value| SearchParam {
                    name: date.name.clone(),
                    modifier: None,
                    values: vec![format!("{prefix}{value}")],
                })
            })
            .collect();
        let params: Vec<_> = care.iter().map(|p| (date, p)).collect();
        search::matches(resource, &params).unwrap_or(true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What an include or the record names but is not in the answer is said once a type: a native failure as
    /// incomplete (it was silent for includes), a type this user may not read as such; one not found is absent.
    #[test]
    fn what_is_named_but_not_given_is_said_once() {
        let failed = FhirError::bad_gateway("IM1-4500", "EMIS Web answered with status 500");
        let refused = FhirError::forbidden("IM1-2401", "read of Practitioner is not available to this kind of user");
        let absent = FhirError::not_found("IM1-1401", "Practitioner not found");
        let mut warnings = Vec::new();
        for e in [&failed, &failed, &refused, &absent] {
            say_unread(e, "Practitioner", "an _include", &mut warnings);
        }
        assert_eq!(warnings.len(), 2, "{warnings:?}");
        assert_eq!(warnings[0]["code"], "incomplete");
        assert_eq!(warnings[0]["details"]["coding"][0]["code"], "IM1-4500");
        assert!(warnings[0]["diagnostics"]
            .as_str()
            .unwrap()
            .starts_with("a Practitioner named by an _include"));
        assert_eq!(warnings[1]["details"]["coding"][0]["code"], "IM1-2103");
    }

    #[test]
    fn an_item_is_cared_for_on_its_onset_where_it_has_one() {
        let registry = Registry::load(&crate::mapping::Source::Embedded).unwrap();
        let mut filter = EverythingFilter::default();
        filter.care_date("start", &["2019-01-01".to_string()]).unwrap();
        let allergy = |onset: Option<&str>| {
            let mut allergy = crate::tree!({"resourceType": "AllergyIntolerance", "recordedDate": "2020-03-04"});
            if let Some(onset) = onset {
                allergy["onsetDateTime"] = crate::tree!(onset);
            }
            allergy
        };
        // Began in 2010, recorded in 2020: cared for before the window.
        assert!(!filter.cared_for_within(&allergy(Some("2010-05-06")), &registry));
        // No onset: when it was recorded is what there is.
        assert!(filter.cared_for_within(&allergy(None), &registry));
        // The Patient, and an item of no dated type, stay.
        assert!(filter.cared_for_within(
            &crate::tree!({"resourceType": "Patient", "birthDate": "1950-01-01"}),
            &registry
        ));
        assert!(filter.cared_for_within(&crate::tree!({"resourceType": "Medication"}), &registry));
    }
}
