//! One interaction through one mapping: the request template becomes a native call, the reply's records
//! become UK Core resources, each with its logical id and provenance. Nothing here names a supplier: the
//! mapping file says what to call and the backend's dialect says how.

use crate::auth::{Principal, Role};
use crate::backend::client::CallRecord;
use crate::backend::{NativeCall, PracticeBackend};
use crate::fhir::error::{warning, IssueType};
use crate::fhir::rest::SearchParam;
use crate::fhir::search;
use crate::fhir::{FhirError, FhirResult};
use crate::ids::{IdCodec, LogicalId};
use crate::mapping::file::{InteractionDef, NativeStep, ParamDef, Takes};
use crate::mapping::node::{Held, Native, Node};
use crate::mapping::refs::References;
use crate::mapping::template::{self, eval, select_records, EvalError, MemberIndex, Scope, Tmpl};
use crate::mapping::{Compartment, MappingFile, Registry, Surface};
use crate::tree::{self, Tree};
use serde_json::{json, Map, Value};
use std::borrow::Borrow;
use std::sync::Arc;

/// What a translation needs besides the mapping.
pub struct Context<'a> {
    pub registry: &'a Registry,
    pub ids: &'a IdCodec,
    pub principal: &'a Principal,
    pub request_id: &'a str,
    /// For a patient: the records their linkage opens at the practice (templates see their own as
    /// `user.record`).
    pub linked: Option<&'a crate::reach::Linked>,
}

/// Resources produced for one practice, with the warnings to pass on and the native calls made.
#[derive(Default)]
pub struct Produced {
    pub resources: Vec<Tree>,
    pub warnings: Vec<Value>,
    pub calls: Vec<CallRecord>,
    /// Set to keep every native reply body (golden fixtures are captured this way).
    pub keep_replies: bool,
    pub replies: Vec<Value>,
}

/// Where records come from: the practice and its supplier's key, as ids and provenance name them.
#[derive(Clone, Copy)]
pub struct Origin<'a> {
    pub ods: &'a str,
    pub supplier: &'a str,
}

impl<'a> Origin<'a> {
    fn of(practice: &'a PracticeBackend) -> Origin<'a> {
        Origin {
            ods: &practice.ods,
            supplier: practice.supplier.key(),
        }
    }
}

/// The surface a principal's requests go through.
pub fn surface_for(principal: &Principal) -> Surface {
    match principal.role {
        Role::Patient => Surface::Patient,
        _ => Surface::Transaction,
    }
}

/// Reads one resource by its decoded logical id.
pub async fn read(
    ctx: &Context<'_>,
    practice: &PracticeBackend,
    mapping: &MappingFile,
    id: &LogicalId,
    out: &mut Produced,
) -> FhirResult<Tree> {
    let def = mapping.read.as_ref().ok_or_else(|| not_supported(mapping, "read"))?;
    let surface = surface_for(ctx.principal);
    let step = step(def, surface, mapping, "read")?;
    // The record a patient-facing read is about: the Patient's own key, or the record holding the item.
    let record = mapping.compartment.record_of(id).unwrap_or_default();
    let vars = Vars::new(Origin::of(practice), ctx, id, Value::Object(Map::new()), record);
    let replies = call_pages(ctx, practice, step, &vars, out).await?;
    let records = select_all(step, &vars, &replies)?;
    let builder = Builder::new(ctx.registry, ctx.ids, Origin::of(practice), &id.patient);
    for record in &records {
        let resource = builder.build(mapping, record.node(), &vars)?;
        if let Some(resource) = resource {
            if resource.get("id").and_then(Tree::as_str)
                == Some(&ctx.ids.encode(&mapping.resource, id).unwrap_or_default())
            {
                return Ok(resource);
            }
        }
    }
    Err(FhirError::not_found(
        "IM1-1401",
        format!("{} not found", mapping.resource),
    ))
}

/// Searches one practice; `params` have been checked against the mapping already.
pub async fn search(
    ctx: &Context<'_>,
    practice: &PracticeBackend,
    mapping: &MappingFile,
    params: &[(&ParamDef, &SearchParam)],
    patient: &str,
    out: &mut Produced,
) -> FhirResult<()> {
    let def = mapping
        .search
        .as_ref()
        .ok_or_else(|| not_supported(mapping, "search"))?;
    let surface = surface_for(ctx.principal);
    let step = step(def, surface, mapping, "search")?;
    if let Some(less) = &step.less {
        out.warnings.push(crate::fhir::error::warning(
            crate::fhir::IssueType::Incomplete,
            "IM1-3203",
            format!("{} at practice {}: {less}", mapping.resource, practice.ods),
        ));
    }
    // `_id` (without `:not`, which means every other item) is answered by reads.
    let ids: Vec<&(&ParamDef, &SearchParam)> = params.iter().filter(|(d, _)| d.name == "_id").collect();
    let readable = mapping.read.as_ref().is_some_and(|r| r.surfaces.contains_key(&surface));
    if readable && !ids.is_empty() && ids.iter().all(|(_, p)| p.modifier.is_none()) {
        return search_by_reads(ctx, practice, mapping, params, &ids[0].1.values, patient, out).await;
    }
    let chosen = chosen_alternative(step, params, &mapping.resource)?;
    for required in chosen.into_iter().flatten() {
        // The native call takes one value and finds what it names: a list (`a,b`) would be searched as its
        // first, and "all but it" (`:not`), or a part of it (`:contains`), is nothing it can be asked.
        let unsearchable = params
            .iter()
            .filter(|(d, _)| &d.name == required)
            .find_map(|(_, p)| unsearchable(p));
        if let Some(why) = unsearchable {
            return Err(FhirError::bad_request(
                "IM1-1212",
                format!(
                    "searching {} at this practice takes for '{required}' {why}",
                    mapping.resource
                ),
            )
            .at(required.clone()));
        }
        // Nothing but white space finds nothing, and is not asked.
        let blank = params
            .iter()
            .filter(|(d, _)| &d.name == required)
            .any(|(_, p)| p.values.iter().all(|v| v.trim().is_empty()));
        if blank {
            out.warnings.push(crate::fhir::error::warning(
                crate::fhir::IssueType::Value,
                "IM1-1213",
                format!(
                    "'{required}' holds no value to search by, so nothing at practice {} matches it",
                    practice.ods
                ),
            ));
            return Ok(());
        }
    }
    // What the native call can take, for the parameters it is asked by.
    let asked = |name: &str| chosen.is_none_or(|alt| alt.iter().any(|n| n == name));
    for (name, takes) in step.takes.iter().filter(|(name, _)| asked(name)) {
        let refused = params
            .iter()
            .filter(|(d, _)| &d.name == name)
            .flat_map(|(_, p)| p.values.first())
            .find(|value| !takes.admits(value));
        let Some(refused) = refused else { continue };
        // Said whole, but for what is too long to read (then marked as cut).
        let mut value: String = refused.chars().take(120).collect();
        if value.len() < refused.len() {
            value.push('…');
        }
        if takes.refusal_is_bad_request() {
            return Err(FhirError::bad_request(
                "IM1-1212",
                format!(
                    "searching {} at this practice takes for '{name}' {}, not '{value}'",
                    mapping.resource,
                    takes.describe()
                ),
            )
            .at(name.clone()));
        }
        // Nothing native could match it: no call, and the Bundle says why it is empty.
        out.warnings.push(crate::fhir::error::warning(
            crate::fhir::IssueType::Value,
            "IM1-1213",
            format!(
                "'{value}' is {}, so nothing at practice {} matches it",
                takes.refusal(refused),
                practice.ods
            ),
        ));
        return Ok(());
    }
    let mut param_vars = Map::new();
    // The request template sees the parameters of the alternative chosen, not those of the others (which then
    // only narrow what the proxy keeps): it asks the native call by what it is given.
    let in_another_alternative = |name: &str| {
        chosen.is_some_and(|alt| !alt.iter().any(|n| n == name)) && step.requires.iter().flatten().any(|n| n == name)
    };
    for (def, param) in params.iter().filter(|(d, _)| !in_another_alternative(&d.name)) {
        let first = param.values.first().cloned().unwrap_or_default();
        let (system, code) = crate::fhir::search::split_token(&first);
        let (system, code) = (system.map_or(Value::Null, Value::from), Value::from(code));
        // A repeated parameter (`start=ge2026-03-03&start=lt2026-03-10`) keeps the first's value and adds its
        // values to `values`, so a request template sees every bound of a window.
        if let Some(Value::Array(values)) = param_vars.get_mut(&def.name).and_then(|v| v.get_mut("values")) {
            values.extend(param.values.iter().map(|v| Value::from(v.as_str())));
            continue;
        }
        let mut entry = json!({ "value": first, "system": system, "code": code, "values": param.values });
        // A string's value as meant, its search escapes undone (`O\,Brien` is `O,Brien`).
        if def.kind == crate::mapping::ParamType::String {
            entry["value"] = Value::from(search::unescape(&first));
        }
        // A reference to a resource this server issued at this practice also gives the target's native key
        // (`params.schedule.item`), so a native call can be narrowed to it: only where it is the one value
        // asked for, since narrowed to the first of `a,b` the call would never find b's.
        if def.kind == crate::mapping::ParamType::Reference && param.values.len() == 1 {
            if let Some(target) = reference_target(ctx, &first).filter(|t| t.practice == practice.ods) {
                entry["item"] = Value::from(target.item);
            }
        }
        param_vars.insert(def.name.clone(), entry);
    }
    if !add_date_windows(params, &mut param_vars) {
        // No instant fits the window: nothing matches, and nothing is asked.
        return Ok(());
    }
    if let Some(window) = &step.window {
        out.warnings
            .extend(open_window_warning(window, mapping, practice, &param_vars));
    }
    let id = LogicalId {
        practice: practice.ods.clone(),
        patient: patient.to_string(),
        item: String::new(),
    };
    let vars = Vars::new(Origin::of(practice), ctx, &id, Value::Object(param_vars), patient);
    let replies = call_pages(ctx, practice, step, &vars, out).await?;
    let records = select_all(step, &vars, &replies)?;
    let builder = Builder::new(ctx.registry, ctx.ids, Origin::of(practice), patient);
    for record in &records {
        if let Some(resource) = builder.build(mapping, record.node(), &vars)? {
            if search::matches(&resource, params)? {
                out.resources.push(resource);
            }
        }
    }
    Ok(())
}

/// Why a native call cannot be asked by a parameter as given, if it cannot.
fn unsearchable(param: &SearchParam) -> Option<String> {
    match param.modifier.as_deref() {
        Some("not") => Some("a value to find, not one to leave out (:not)".to_string()),
        Some(modifier) if modifier != "exact" => Some(format!("a value to find as given, not :{modifier}")),
        _ => (param.values.len() > 1).then(|| "one value, not a list".to_string()),
    }
}

/// The alternative of a step's `requires` its native call is made by: the first whose parameters are all
/// given as the call can take them (an identifier that is no NHS number leaves the next to serve); else the
/// first given, whose refusal is then said; none given, a 400 naming the first missing parameter of the
/// alternative nearest to being given. `None` when the step requires nothing.
fn chosen_alternative<'s>(
    step: &'s NativeStep,
    params: &[(&ParamDef, &SearchParam)],
    resource: &str,
) -> FhirResult<Option<&'s Vec<String>>> {
    if step.requires.is_empty() {
        return Ok(None);
    }
    let values = |name: &str| {
        params
            .iter()
            .filter(move |(d, _)| d.name == name)
            .map(|(_, p)| *p)
            .collect::<Vec<_>>()
    };
    let given = |alt: &&Vec<String>| alt.iter().all(|n| !values(n).is_empty());
    let kinds = |n: &str| -> Vec<Takes> {
        step.takes
            .iter()
            .filter(|(t, _)| t == n)
            .map(|(_, kind)| *kind)
            .collect()
    };
    let taken = |alt: &&Vec<String>| {
        alt.iter().all(|n| {
            values(n).iter().all(|p| {
                unsearchable(p).is_none()
                    && p.values
                        .iter()
                        .all(|v| !v.trim().is_empty() && kinds(n).iter().all(|kind| kind.admits(v)))
            })
        })
    };
    if let Some(alt) = step.requires.iter().filter(given).find(taken) {
        return Ok(Some(alt));
    }
    // None can be asked as given: the one whose refusal is a 400 (the client can put it right) is said
    // before one whose value would only match nothing.
    let refused_outright = |alt: &&Vec<String>| {
        alt.iter().any(|n| {
            values(n).iter().any(|p| {
                unsearchable(p).is_some()
                    || p.values.iter().any(|v| {
                        kinds(n)
                            .iter()
                            .any(|kind| kind.refusal_is_bad_request() && !kind.admits(v))
                    })
            })
        })
    };
    let given_ones = || step.requires.iter().filter(given);
    if let Some(alt) = given_ones().find(refused_outright).or_else(|| given_ones().next()) {
        return Ok(Some(alt));
    }
    // Nearest: fewest missing, then most given (`family` alone points at `birthdate`).
    let missing = |alt: &Vec<String>| alt.iter().filter(|n| values(n).is_empty()).count();
    let nearest = step
        .requires
        .iter()
        .min_by_key(|alt| (missing(alt), std::cmp::Reverse(alt.len() - missing(alt))));
    let first_missing = nearest.and_then(|alt| alt.iter().find(|n| values(n).is_empty()));
    Err(FhirError::bad_request(
        "IM1-1204",
        format!(
            "searching {resource} at this practice needs {}",
            alternatives(&step.requires)
        ),
    )
    .at(first_missing.cloned().unwrap_or_default()))
}

/// A step's alternatives for messages: `'identifier', or 'family' and 'birthdate'`.
pub fn alternatives(requires: &[Vec<String>]) -> String {
    let one = |alt: &Vec<String>| {
        let names: Vec<String> = alt.iter().map(|n| format!("'{n}'")).collect();
        match names.split_last() {
            Some((last, rest)) if !rest.is_empty() => format!("{} and {last}", rest.join(", ")),
            _ => names.join(""),
        }
    };
    let all: Vec<String> = requires.iter().map(one).collect();
    all.join(", or ")
}

/// Adds each date parameter's window as inclusive days (`params.start.from`, `.to`) for native calls that take
/// days; false when no instant fits a window (the search matches nothing).
fn add_date_windows(params: &[(&ParamDef, &SearchParam)], param_vars: &mut Map<String, Value>) -> bool {
    for (def, _) in params.iter().filter(|(d, _)| d.kind == crate::mapping::ParamType::Date) {
        let Some(entry) = param_vars.get_mut(&def.name) else {
            continue;
        };
        let repetitions = params
            .iter()
            .filter(|(d, _)| d.name == def.name)
            .map(|(_, p)| p.values.as_slice());
        let Some((from, to)) = search::date_window(repetitions) else {
            return false;
        };
        // Native days are UK days: the UK days of the first instant asked for and of the last one before the
        // end (the proxy filters the answer by the search itself). Exactly those, so that a window open on one
        // side gets the native default's full 14 days from its bound, not a day fewer.
        let day = |at: time::OffsetDateTime| crate::fhir::dates::uk_date(at).to_string();
        entry["from"] = from.map(day).into();
        entry["to"] = to
            .and_then(|t| t.checked_sub(time::Duration::NANOSECOND))
            .map(day)
            .into();
    }
    true
}

/// The warning for a search open on either side of the window of days its native call reads (none when the
/// window is closed, or moot: a session read whole).
fn open_window_warning(
    window: &crate::mapping::file::NativeWindow,
    mapping: &MappingFile,
    practice: &PracticeBackend,
    param_vars: &Map<String, Value>,
) -> Option<Value> {
    let open = param_vars
        .get(&window.param)
        .is_none_or(|entry| entry["from"].is_null() || entry["to"].is_null());
    // Moot only where the call was narrowed to the one item the parameter names.
    let moot = window
        .unless
        .as_ref()
        .is_some_and(|u| param_vars.get(u).is_some_and(|entry| entry.get("item").is_some()));
    (open && !moot).then(|| {
        crate::fhir::error::warning(
            crate::fhir::IssueType::Incomplete,
            "IM1-3202",
            format!(
                "{} at practice {} are read a window of days at a time: without both {p}=ge… and {p}=lt…, {} was \
                 searched",
                mapping.resource,
                practice.ods,
                window.default,
                p = window.param
            ),
        )
    })
}

/// `_id` names items this server issued: each is read (a native read finds it whatever window or key a native
/// search would need), then kept if it meets the rest of the search. Ids of another practice, or of another
/// record than the one searched, match nothing here.
async fn search_by_reads(
    ctx: &Context<'_>,
    practice: &PracticeBackend,
    mapping: &MappingFile,
    params: &[(&ParamDef, &SearchParam)],
    ids: &[String],
    patient: &str,
    out: &mut Produced,
) -> FhirResult<()> {
    // Each id once, and a bound on the native reads one request may make.
    let mut distinct: Vec<&String> = Vec::new();
    for value in ids {
        if !distinct.contains(&value) {
            distinct.push(value);
        }
    }
    if distinct.len() > crate::fhir::bundle::MAX_COUNT {
        return Err(FhirError::bad_request(
            "IM1-1215",
            format!("give at most {} ids", crate::fhir::bundle::MAX_COUNT),
        )
        .at("_id"));
    }
    for value in distinct {
        let Ok(id) = ctx.ids.decode(&mapping.resource, value) else {
            continue;
        };
        // Only the record searched (for a Patient, the record itself); and for a patient, only records their
        // linkage opens: nothing else is asked of the GP system.
        let record = mapping.compartment.record_of(&id).unwrap_or_default();
        let in_record = record.is_empty() || patient.is_empty() || record == patient;
        let reachable = record.is_empty() || ctx.linked.is_none_or(|linked| linked.reaches(record));
        if id.practice != practice.ods || !in_record || !reachable {
            continue;
        }
        match read(ctx, practice, mapping, &id, out).await {
            Ok(resource) => {
                if search::matches(&resource, params)? {
                    out.resources.push(resource);
                }
            }
            Err(e) if e.status == http::StatusCode::NOT_FOUND => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// The decoded id a reference search value names (`Type/id`, or a bare id of any mapped type).
fn reference_target(ctx: &Context<'_>, value: &str) -> Option<LogicalId> {
    let value = value.rsplit('/').take(2).collect::<Vec<_>>();
    match value.as_slice() {
        [id, resource_type] => ctx.ids.decode(resource_type, id).ok(),
        [id] => ctx
            .registry
            .mappings
            .iter()
            .find_map(|m| ctx.ids.decode(&m.resource, id).ok()),
        _ => None,
    }
}

fn not_supported(mapping: &MappingFile, what: &str) -> FhirError {
    FhirError::method_not_allowed(
        "IM1-1402",
        format!("{what} of {} is not supported at this practice", mapping.resource),
    )
}

fn step<'m>(
    def: &'m InteractionDef,
    surface: Surface,
    mapping: &MappingFile,
    what: &str,
) -> FhirResult<&'m crate::mapping::file::NativeStep> {
    def.surfaces.get(&surface).ok_or_else(|| {
        FhirError::forbidden(
            "IM1-2401",
            format!(
                "{what} of {} is not available to this kind of user at this practice",
                mapping.resource
            ),
        )
    })
}

/// The variables request, select and record templates see: `id`, `params`, `practice`, `patient`, and for a
/// patient `user` (`user.nhs`, `user.record`: their NHS number and their own record's key).
struct Vars {
    values: Tree,
    nhs: Option<String>,
    /// The native key of the record the calls are about; empty for practice-level data.
    record: String,
}

impl Vars {
    fn new(origin: Origin, ctx: &Context<'_>, id: &LogicalId, params: Value, record: &str) -> Vars {
        let nhs = ctx.principal.nhs_number.clone();
        let mut values = Vars::values(origin, id, params);
        if let Some(linked) = ctx.linked {
            values["user"] = json!({ "nhs": nhs, "record": linked.own });
        }
        Vars {
            values: Tree::from(values),
            nhs,
            record: record.to_string(),
        }
    }

    /// Variables without a principal: golden tests translating replies already in hand.
    fn offline(origin: Origin, id: &LogicalId, params: Value) -> Vars {
        Vars {
            values: Tree::from(Vars::values(origin, id, params)),
            nhs: None,
            record: String::new(),
        }
    }

    /// The variables every template sees, but `user`.
    fn values(origin: Origin, id: &LogicalId, params: Value) -> Value {
        json!({
            "id": { "item": id.item, "patient": id.patient },
            "params": params,
            "practice": { "ods": origin.ods, "supplier": origin.supplier },
            "patient": { "native": id.patient },
        })
    }

    fn scope(&self) -> Scope<'_, '_> {
        Scope::of_object(&self.values)
    }
}

/// Makes a step's native call and follows its `next` pages: every page's reply, in order.
async fn call_pages(
    ctx: &Context<'_>,
    practice: &PracticeBackend,
    step: &NativeStep,
    vars: &Vars,
    out: &mut Produced,
) -> FhirResult<Vec<Arc<Native>>> {
    // Scopes are not Send: build them on each side of the native call, never across it.
    let mut request = {
        let scope = vars.scope();
        eval(&step.request, &scope)
            .map_err(|e| FhirError::internal("IM1-3102", format!("the mapping's request template failed: {}", e.0)))?
            .unwrap_or(Tree::Null)
    };
    let mut replies = Vec::new();
    for _page in 0..MAX_NATIVE_PAGES {
        // The backends read requests as serde_json values: a request is a few members.
        let native_request = Value::from(&request);
        let call = NativeCall {
            surface: surface_for(ctx.principal),
            request: &native_request,
            patient_nhs: vars.nhs.as_deref(),
            record: Some(vars.record.as_str()).filter(|r| !r.is_empty()),
            request_id: ctx.request_id,
        };
        let reply = practice.call(&call, &mut out.calls).await?;
        if out.keep_replies {
            out.replies.push(Value::from(Node::Native(&reply.body).to_json()));
        }
        let next = next_page(step, vars, &reply.body, &request)?;
        replies.push(reply.body);
        match next {
            Some(next) => request = next,
            None => return Ok(replies),
        }
    }
    Err(FhirError::bad_gateway(
        "IM1-3107",
        format!("the native reply ran to more than {MAX_NATIVE_PAGES} pages"),
    ))
}

/// The records of every page, borrowed from the replies, or the one record they are pieces of when the step
/// joins them.
fn select_all<'a>(step: &NativeStep, vars: &'a Vars, replies: &'a [impl Borrow<Native>]) -> FhirResult<Vec<Held<'a>>> {
    let mut records = Vec::new();
    for reply in replies {
        let base = vars.scope();
        let scope = base.bind("reply", reply.borrow());
        let selected = select_records(&step.select, &scope)
            .map_err(|e| FhirError::internal("IM1-3103", format!("the mapping's select failed: {}", e.0)))?;
        records.extend(selected);
    }
    let Some(join) = &step.join else {
        return Ok(records);
    };
    let pieces = records.into_iter().map(Held::into_json).collect();
    let one = join
        .apply(pieces)
        .map_err(|e| FhirError::bad_gateway("IM1-3108", format!("the native pages could not be joined: {e}")))?;
    // Read as records are (clean), so the joined record is held as a computed value is.
    Ok(one.and_then(template::non_empty).into_iter().map(Held::Owned).collect())
}

/// The request for the page after this reply, if the step pages and the reply says there is one.
fn next_page(step: &NativeStep, vars: &Vars, reply: &Native, request: &Tree) -> FhirResult<Option<Tree>> {
    let Some(next) = &step.next else {
        return Ok(None);
    };
    let base = vars.scope();
    let scope = base.bind("reply", reply);
    let scope = scope.bind("request", request);
    let next = eval(next, &scope)
        .map_err(|e| FhirError::internal("IM1-3106", format!("the mapping's next-page request failed: {}", e.0)))?;
    Ok(next.filter(|n| !n.is_null()))
}

/// Translates native replies already in hand (golden tests): the search step of a surface, for the record of
/// `patient_key` at a practice, without calling anyone and without filtering.
pub fn translate_replies(
    registry: &Registry,
    ids: &IdCodec,
    origin: Origin,
    mapping: &MappingFile,
    surface: Surface,
    patient_key: &str,
    replies: &[Native],
) -> FhirResult<Vec<Tree>> {
    translate_read_replies(registry, ids, origin, mapping, surface, patient_key, "", replies)
}

/// As [`translate_replies`], for the replies of a read of the item `item` (types that are read, not searched,
/// such as Binary, see the item's key in their templates).
#[allow(clippy::too_many_arguments)]
pub fn translate_read_replies(
    registry: &Registry,
    ids: &IdCodec,
    origin: Origin,
    mapping: &MappingFile,
    surface: Surface,
    patient_key: &str,
    item: &str,
    replies: &[Native],
) -> FhirResult<Vec<Tree>> {
    let def = if item.is_empty() {
        mapping.search.as_ref().or(mapping.read.as_ref())
    } else {
        mapping.read.as_ref()
    }
    .ok_or_else(|| not_supported(mapping, "search"))?;
    let step = step(def, surface, mapping, "search")?;
    let id = LogicalId {
        practice: origin.ods.to_string(),
        patient: patient_key.to_string(),
        item: item.to_string(),
    };
    let vars = Vars::offline(origin, &id, Value::Object(Map::new()));
    let records = select_all(step, &vars, replies)?;
    let mut out = Vec::with_capacity(records.len());
    let builder = Builder::new(registry, ids, origin, patient_key);
    for record in &records {
        out.extend(builder.build(mapping, record.node(), &vars)?);
    }
    Ok(out)
}

/// A native list longer than this many pages is treated as a native fault rather than followed forever.
const MAX_NATIVE_PAGES: usize = 200;

/// What building the resources of one practice's records needs.
struct Builder<'a> {
    ids: &'a IdCodec,
    origin: Origin<'a>,
    /// The native key of the record the items are in (empty for practice-level data).
    patient_key: &'a str,
    refs: References<'a>,
}

impl<'a> Builder<'a> {
    fn new(registry: &'a Registry, ids: &'a IdCodec, origin: Origin<'a>, patient_key: &'a str) -> Builder<'a> {
        Builder {
            ids,
            origin,
            patient_key,
            refs: References::new(registry, ids, origin.ods, patient_key),
        }
    }

    /// Builds one resource from one native record: template, id, provenance. The resource starts with
    /// `resourceType`, `id` and `meta`, as FHIR examples do, whatever order the template gives.
    fn build(&self, mapping: &MappingFile, record: Node, vars: &Vars) -> FhirResult<Option<Tree>> {
        let (origin, refs) = (self.origin, &self.refs);
        let failed =
            |e: EvalError| FhirError::internal("IM1-3104", format!("{}: the template failed: {}", mapping.file, e.0));
        let Tmpl::Object { cond, fields } = &mapping.template else {
            return Err(failed(EvalError("a resource's template is a map".into())));
        };
        refs.start_resource();
        // A record a select computed through the engine may hold reference marks.
        if let Node::Clean(computed) = record {
            refs.note(computed);
        }
        let base = vars.scope().with_references(refs);
        // Records are read as `non_empty` would leave them (selected records always were).
        let members = MemberIndex::of(record);
        let scope = base.bind_record("r", record, members.as_ref());
        let Some(native_key) = eval(&mapping.id, &scope).map_err(failed)? else {
            return Ok(None);
        };
        if let Some(cond) = cond {
            if !template::holds(cond, &scope).map_err(failed)? {
                return Ok(None);
            }
        }
        let native_key = match native_key {
            Tree::String(s) => s.into_owned(),
            other => other.to_string(),
        };
        let patient = match mapping.compartment {
            Compartment::Patient => self.patient_key,
            _ => "",
        };
        let logical = self
            .ids
            .encode_parts(&mapping.resource, origin.ods, patient, &native_key)
            // A key no id can hold is the native system's data, not this server's fault.
            .map_err(|e| FhirError::bad_gateway("IM1-3105", format!("{}: {e}", mapping.file)))?;
        // The template's meta, then this proxy's profile and source.
        let mut meta = match fields.iter().find(|(key, _)| key == "meta") {
            Some((_, Tmpl::Object { cond: None, fields })) => {
                let mut meta = tree::Members::with_capacity(fields.len() + 2);
                template::eval_fields(fields, &[], &scope, &mut meta).map_err(failed)?;
                meta
            }
            Some((_, tmpl)) => match eval(tmpl, &scope).map_err(failed)? {
                Some(Tree::Object(meta)) => meta,
                _ => tree::Members::new(),
            },
            None => tree::Members::new(),
        };
        meta.insert("profile", Tree::Array(vec![Tree::from(mapping.profile.as_str())]));
        meta.insert("source", Tree::from(source(origin, mapping, &native_key)));
        let mut resource = tree::Members::with_capacity(fields.len() + 1);
        resource.push_new("resourceType".into(), Tree::from(mapping.resource.as_str()));
        resource.push_new("id".into(), Tree::from(logical));
        resource.push_new("meta".into(), Tree::Object(meta));
        template::eval_fields(fields, &["resourceType", "id", "meta"], &scope, &mut resource).map_err(failed)?;
        let mut resource = Tree::Object(resource);
        refs.resolve_marks(&mut resource)
            .map_err(|e| FhirError::bad_gateway("IM1-3105", format!("{}: {e}", mapping.file)))?;
        Ok(Some(resource))
    }
}

/// `meta.source`: the native system and record a resource came from, and the mapping's version.
fn source(origin: Origin, mapping: &MappingFile, native_key: &str) -> String {
    // Pushed piece by piece: one per resource translated, and `format!` costs several times as much.
    let mut out = String::with_capacity(64 + native_key.len());
    out.push_str("https://im1-fhir.dev/source/");
    for part in [origin.supplier, "/", origin.ods, "/", &mapping.resource, "/"] {
        out.push_str(part);
    }
    out.extend(percent_encoding::utf8_percent_encode(
        native_key,
        crate::backend::PATH_SEGMENT,
    ));
    out.push_str("?mapping=");
    out.push_str(&mapping.version);
    out
}

/// The warning a Bundle carries for an unknown parameter dropped under `Prefer: handling=lenient`.
pub fn dropped_param_warning(name: &str) -> Value {
    warning(
        IssueType::NotSupported,
        "IM1-1205",
        format!("the search parameter '{name}' is not supported and was ignored"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mapping::Source;

    /// EMIS's PFS demographics is not known to name the patient (the simulator's PatientGuid there is
    /// invented): without one, a patient's own Patient is keyed by the record their linkage opens.
    #[test]
    fn an_emis_patient_read_by_pfs_without_a_patient_guid_is_the_linked_record() {
        let registry = Registry::load(&Source::Embedded).unwrap();
        let ids = IdCodec::new(b"a test key of at least thirty-two bytes");
        let mapping = registry.get("emis", "Patient").unwrap();
        let reply = crate::mapping::node::parse_json(
            br#"{"Title":"Ms","Forenames":"Alex","Surname":"Tester","Sex":"Female","DateOfBirth":"1985-04-12T00:00:00",
                 "PatientIdentifiers":[{"IdentifierType":"NhsNumber","IdentifierValue":"9000000009"}]}"#,
        )
        .unwrap();
        let origin = Origin {
            ods: "Y90001",
            supplier: "emis",
        };
        let produced = translate_replies(
            &registry,
            &ids,
            origin,
            mapping,
            Surface::Patient,
            "linked-record",
            &[reply],
        )
        .unwrap();
        assert_eq!(produced.len(), 1, "{produced:?}");
        let id = produced[0]["id"].as_str().unwrap();
        assert_eq!(ids.decode("Patient", id).unwrap().item, "linked-record");
    }
}
