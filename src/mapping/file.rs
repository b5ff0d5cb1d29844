//! The shape of a mapping file (`mappings/<supplier>/<Resource>.yaml`) and of a partial
//! (`mappings/**/_<Name>.yaml`), read from the positioned YAML tree so that every problem has a place.
//!
//! ```yaml
//! resource: Patient                      # the FHIR type produced
//! profile: https://fhir.hl7.org.uk/StructureDefinition/UKCore-Patient
//! version: "1"                           # the mapping's version, stated in meta.source
//! compartment: self                      # self (Patient), patient (in one patient's record) or none
//! read:                                  # how a read becomes native calls, per surface
//!   transaction:                         # clinician and system principals
//!     request: { ...native request template... }
//!     select: "{{ reply }}"              # the record(s) in the reply
//!     next: { ...the next page's request, or nothing... }   # optional, for paged replies
//!     join: { base64: [data] }           # optional: the pages' records are pieces of one (see `join`)
//!   patient: { request: ..., select: ... }   # patient principals (the supplier's patient-facing API)
//! search:
//!   params:                              # FHIR search parameters this mapping accepts
//!     identifier: { type: token, paths: [identifier] }
//!     # optional per parameter: `target: Practitioner` (a reference's one type), `documentation: "..."`
//!     # (what a client needs to know of it, said in the CapabilityStatement)
//!   transaction: { request: ..., select: ..., requires: [[identifier], [family, birthdate]],
//!                  takes: { identifier: nhs-number, birthdate: day } }
//! id: "{{ r.PatientGuid }}"              # the native key of one record
//! template: { ...the FHIR resource, with expressions... }
//! ```
//! Search results are always filtered by the proxy after translation as well, so a native call that
//! cannot filter by a parameter still gives the right answer.

use super::join::Join;
use super::problem::{child, Problems};
use super::template::{self, Site, Tmpl};
use super::yaml::{Node, NodeValue, Pos};
use std::collections::BTreeMap;

/// Which native surface a principal's request goes through.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Surface {
    /// Clinician and system principals: the supplier's transaction (partner) API.
    Transaction,
    /// Patient principals: the supplier's patient-facing (PFS) API, with the patient's linkage.
    Patient,
}

impl Surface {
    pub const ALL: [Surface; 2] = [Surface::Transaction, Surface::Patient];

    pub fn key(self) -> &'static str {
        match self {
            Surface::Transaction => "transaction",
            Surface::Patient => "patient",
        }
    }
}

/// Which compartment a resource lives in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compartment {
    /// The Patient resource itself.
    SelfPatient,
    /// An item in one patient's record: its id carries the patient's native key.
    Patient,
    /// Practice-level data (practitioners, schedules, slots).
    None,
}

impl Compartment {
    /// The native key of the patient record an id of this compartment belongs to: the Patient's own key, the
    /// record an item sits in, or nothing for practice-level data.
    pub fn record_of(self, id: &crate::ids::LogicalId) -> Option<&str> {
        match self {
            Compartment::SelfPatient => Some(&id.item),
            Compartment::Patient => Some(&id.patient),
            Compartment::None => None,
        }
    }
}

/// FHIR search parameter types the proxy can filter on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ParamType {
    Token,
    String,
    Date,
    Reference,
}

impl ParamType {
    pub fn name(self) -> &'static str {
        match self {
            ParamType::Token => "token",
            ParamType::String => "string",
            ParamType::Date => "date",
            ParamType::Reference => "reference",
        }
    }
}

/// A search parameter a mapping accepts.
#[derive(Debug, Clone)]
pub struct ParamDef {
    pub name: String,
    pub kind: ParamType,
    /// Element paths in the produced resource (`name.family`, `identifier`), searched as FHIR says for
    /// the type.
    pub paths: Vec<String>,
    /// For a reference parameter, the one type its references point at (`target: Practitioner`), as R4's
    /// `where(resolve() is Practitioner)`; any type when `None`.
    pub target: Option<String>,
    /// What a client needs to know to use it, beyond its name and type (`documentation: "..."`): said in the
    /// CapabilityStatement.
    pub documentation: Option<String>,
}

impl ParamDef {
    /// Whether a reference (`Type/id`) is one this parameter follows: of its target type, when it names one.
    pub fn follows(&self, reference: &str) -> bool {
        self.target
            .as_ref()
            .is_none_or(|t| reference.split('/').next() == Some(t.as_str()))
    }
}

/// How one interaction goes through one surface.
pub struct NativeStep {
    pub request: Tmpl,
    pub select: Tmpl,
    /// Search parameters without which the native call cannot be made, as alternatives (`[[identifier],
    /// [family, birthdate]]`; `[identifier]` is one): the call is made by the first whose parameters are all
    /// given, and without any a 400 names them. The native call takes one value of each.
    pub requires: Vec<Vec<String>>,
    /// What the native call can take for a parameter it is asked by (`takes: { identifier: nhs-number,
    /// birthdate: day }`): a value that is not a valid NHS number matches nothing there, so no call is made and
    /// the Bundle says why; a date that is not one day is a 400 (it has matches the call cannot ask for).
    pub takes: Vec<(String, Takes)>,
    /// When the native call reads a window of days for a date parameter (`window: { param: start, default: "...",
    /// unless: schedule }`): a search open on either side gets the native default, and a warning naming it.
    pub window: Option<NativeWindow>,
    /// What this surface's native API leaves out, said as a warning on every search through it (`less: "..."`),
    /// so that a thinner answer is never silent.
    pub less: Option<String>,
    /// For native replies that come in pages: the next request, built from the last `request` and its
    /// `reply`, or nothing when the last page has been read.
    pub next: Option<Tmpl>,
    /// When the records of every page are pieces of one record, how they are joined.
    pub join: Option<Join>,
}

/// A native call that reads a window of days for one date search parameter.
#[derive(Debug, Clone)]
pub struct NativeWindow {
    pub param: String,
    /// What the native system reads when a bound is missing, as the warning says it.
    pub default: String,
    /// A parameter that makes the window moot (a session read whole).
    pub unless: Option<String>,
}

/// A kind of value a native search takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Takes {
    /// A valid NHS number (ten digits, Modulus 11), with the NHS number system or none.
    NhsNumber,
    /// One whole date (`YYYY-MM-DD`, or `eq` it): a date of birth, as native demographic searches take it.
    Day,
}

impl Takes {
    fn named(name: &str) -> Option<Takes> {
        match name {
            "nhs-number" => Some(Takes::NhsNumber),
            "day" => Some(Takes::Day),
            _ => None,
        }
    }

    /// What it takes, for messages.
    pub fn describe(self) -> &'static str {
        match self {
            Takes::NhsNumber => "a valid NHS number",
            Takes::Day => "one whole date (YYYY-MM-DD)",
        }
    }

    /// Why a value it does not admit is not one it takes, as said in the warning: a foreign identifier system
    /// is not an invalid NHS number.
    pub fn refusal(self, value: &str) -> &'static str {
        match self {
            Takes::NhsNumber => match crate::fhir::search::split_token(value).0 {
                Some(system) if system != crate::fhir::NHS_NUMBER_SYSTEM => {
                    "an identifier of another system than NHS numbers (https://fhir.nhs.uk/Id/nhs-number)"
                }
                _ => "not a valid NHS number",
            },
            Takes::Day => "not one whole date (YYYY-MM-DD)",
        }
    }

    /// The type of search parameter it is a value of.
    pub fn param_type(self) -> ParamType {
        match self {
            Takes::NhsNumber => ParamType::Token,
            Takes::Day => ParamType::Date,
        }
    }

    /// Whether a value it does not take is refused (400), rather than matching nothing: a date the native call
    /// cannot ask for (`ge1980`) has matches all the same.
    pub fn refusal_is_bad_request(self) -> bool {
        matches!(self, Takes::Day)
    }

    /// Whether a search value (a token's `system|code` or `code`, a date) is one the native call can take.
    pub fn admits(self, value: &str) -> bool {
        match self {
            Takes::NhsNumber => {
                let (system, code) = crate::fhir::search::split_token(value);
                system.is_none_or(|s| s == crate::fhir::NHS_NUMBER_SYSTEM) && im1_sim::record::nhs::is_valid(&code)
            }
            Takes::Day => {
                let day = value.strip_prefix("eq").unwrap_or(value);
                day.len() == 10 && crate::fhir::dates::range(day).is_some()
            }
        }
    }
}

impl MappingFile {
    /// Whether some surface's native search reads whole what a parameter names (`window.unless`: a session's
    /// slots), so a search narrowed by it finds items outside the default window.
    pub fn search_reads_whole_by(&self, param: &str) -> bool {
        self.search.as_ref().is_some_and(|d| {
            d.surfaces
                .values()
                .any(|step| step.window.as_ref().and_then(|w| w.unless.as_deref()) == Some(param))
        })
    }
}

/// One interaction (read or search) across the surfaces that support it.
#[derive(Default)]
pub struct InteractionDef {
    pub surfaces: BTreeMap<Surface, NativeStep>,
}

/// A compiled mapping file.
pub struct MappingFile {
    pub file: String,
    pub supplier: String,
    pub resource: String,
    pub profile: String,
    pub version: String,
    pub compartment: Compartment,
    pub read: Option<InteractionDef>,
    pub search: Option<InteractionDef>,
    pub params: Vec<ParamDef>,
    pub id: Tmpl,
    pub template: Tmpl,
    /// Whether its resources say when they last changed (`meta.lastUpdated` in the template).
    pub states_last_updated: bool,
    pub pos: Pos,
}

impl MappingFile {
    /// Every template the file holds, with where it is: id, template, and each surface's request, select
    /// and next.
    pub fn templates(&self) -> Vec<(String, &Tmpl)> {
        let mut out = vec![("id".to_string(), &self.id), ("template".to_string(), &self.template)];
        for (name, def) in [("read", &self.read), ("search", &self.search)] {
            for (surface, step) in def.iter().flat_map(|d| &d.surfaces) {
                let at = format!("{name}.{}", surface.key());
                out.push((format!("{at}.request"), &step.request));
                out.push((format!("{at}.select"), &step.select));
                if let Some(next) = &step.next {
                    out.push((format!("{at}.next"), next));
                }
            }
        }
        out
    }
}

const TOP_KEYS: &[&str] = &[
    "resource",
    "profile",
    "version",
    "compartment",
    "description",
    "read",
    "search",
    "id",
    "template",
];

/// Variables every native request template may use (`user`: the patient principal, on the patient surface).
const REQUEST_VARS: &[&str] = &["id", "params", "practice", "patient", "user"];

/// Reads a mapping file; problems are collected, and `None` is returned only when nothing usable remains.
pub fn read_mapping(
    file: &str,
    supplier: &str,
    root: &Node,
    site_vars: &mut Site,
    problems: &mut Problems,
) -> Option<MappingFile> {
    if !matches!(root.value, NodeValue::Map(_)) {
        problems.add(file, root.pos, "", "a mapping file is a YAML mapping");
        return None;
    }
    unknown_keys(file, root, "", TOP_KEYS, problems);
    let resource = required_str(file, root, "resource", problems)?;
    let profile = required_str(file, root, "profile", problems).unwrap_or_default();
    // UK Core where it profiles the type; the base R4 definition for types it does not (Binary).
    if !profile.is_empty()
        && !profile.starts_with("https://fhir.hl7.org.uk/StructureDefinition/UKCore-")
        && profile != format!("http://hl7.org/fhir/StructureDefinition/{resource}")
    {
        problems.add(
            file,
            root.get("profile").map_or(root.pos, |n| n.pos),
            "profile",
            "the profile must be a UK Core canonical URL (or the base R4 one for types UK Core does not profile)",
        );
    }
    let version = match root.get("version").map(|n| &n.value) {
        Some(NodeValue::Str(s)) => s.clone(),
        Some(NodeValue::Int(i)) => i.to_string(),
        _ => "1".to_string(),
    };
    let compartment = match root.get("compartment").and_then(Node::as_str) {
        Some("self") => Compartment::SelfPatient,
        Some("patient") => Compartment::Patient,
        Some("none") | None => Compartment::None,
        Some(other) => {
            let pos = root.get("compartment").map_or(root.pos, |n| n.pos);
            problems.add(
                file,
                pos,
                "compartment",
                format!("'{other}' is not one of self, patient, none"),
            );
            Compartment::None
        }
    };

    // Whether the resources say when they last changed: `_lastUpdated` is searchable and reads answer
    // If-Modified-Since only then. No GP system's API dates an item's last change (only its entry, which an
    // item ended or resolved later keeps), so the shipped mappings state none.
    let states_last_updated = root
        .get("template")
        .and_then(|t| t.get("meta"))
        .and_then(|m| m.get("lastUpdated"))
        .is_some();
    let mut params = Vec::new();
    let read = root
        .get("read")
        .map(|node| read_interaction(file, node, "read", site_vars, problems));
    let search = root.get("search").map(|node| {
        if let Some(params_node) = node.get("params") {
            params = read_params(file, params_node, problems);
        }
        // `_lastUpdated` only where the resource states when it was last updated: elsewhere it could only
        // ever match nothing.
        add_resource_params(&mut params, states_last_updated);
        read_interaction(file, node, "search", site_vars, problems)
    });
    if read.is_none() && search.is_none() {
        problems.add(file, root.pos, "", "a mapping needs a read or a search");
    }
    if let (Some(def), Some(node)) = (&search, root.get("search")) {
        check_step_params(file, node, def, &params, problems);
    }

    site_vars.vars = vec![
        "r".into(),
        "reply".into(),
        "practice".into(),
        "patient".into(),
        "user".into(),
    ];
    let id = match root.get("id") {
        Some(node) => template::compile(node, "id", site_vars, problems),
        None => {
            problems.add(
                file,
                root.pos,
                "id",
                "a mapping needs an id expression (the record's native key)",
            );
            Tmpl::Lit(crate::tree::Tree::Null)
        }
    };
    let template = match root.get("template") {
        Some(node) => {
            if node.get("resourceType").and_then(Node::as_str) != Some(resource.as_str()) {
                problems.add(
                    file,
                    node.pos,
                    "template.resourceType",
                    format!("the template must produce resourceType {resource}"),
                );
            }
            template::compile(node, "template", site_vars, problems)
        }
        None => {
            problems.add(file, root.pos, "template", "a mapping needs a template");
            Tmpl::Lit(crate::tree::Tree::Null)
        }
    };
    Some(MappingFile {
        file: file.to_string(),
        supplier: supplier.to_string(),
        resource,
        profile,
        version,
        compartment,
        read,
        search,
        params,
        id,
        template,
        states_last_updated,
        pos: root.pos,
    })
}

fn read_interaction(file: &str, node: &Node, path: &str, site: &mut Site, problems: &mut Problems) -> InteractionDef {
    let mut def = InteractionDef::default();
    let mut known: Vec<&str> = Surface::ALL.iter().map(|s| s.key()).collect();
    if path == "search" {
        known.push("params");
    }
    unknown_keys(file, node, path, &known, problems);
    for surface in Surface::ALL {
        let Some(step) = node.get(surface.key()) else { continue };
        let step_path = child(path, surface.key());
        unknown_keys(
            file,
            step,
            &step_path,
            &[
                "request", "select", "requires", "takes", "window", "less", "next", "join",
            ],
            problems,
        );
        site.vars = REQUEST_VARS.iter().map(|v| v.to_string()).collect();
        let request = match step.get("request") {
            Some(n) => template::compile(n, &child(&step_path, "request"), site, problems),
            None => {
                problems.add(file, step.pos, &step_path, "a native step needs a request");
                Tmpl::Lit(crate::tree::Tree::Null)
            }
        };
        site.vars = vec![
            "reply".into(),
            "id".into(),
            "params".into(),
            "practice".into(),
            "patient".into(),
            "user".into(),
        ];
        let select = match step.get("select") {
            Some(n) => template::compile(n, &child(&step_path, "select"), site, problems),
            None => {
                problems.add(
                    file,
                    step.pos,
                    &step_path,
                    "a native step needs a select (where the records are in the reply)",
                );
                Tmpl::Lit(crate::tree::Tree::Null)
            }
        };
        site.vars.push("request".into());
        let next = step
            .get("next")
            .map(|n| template::compile(n, &child(&step_path, "next"), site, problems));
        let join = step
            .get("join")
            .map(|n| Join::compile(file, n, &child(&step_path, "join"), problems));
        let requires = read_requires(file, step, &step_path, problems);
        let mut takes = Vec::new();
        if let Some(node) = step.get("takes") {
            let takes_path = child(&step_path, "takes");
            match &node.value {
                NodeValue::Map(entries) => {
                    for (key, _, value) in entries {
                        match value.as_str().and_then(Takes::named) {
                            Some(kind) => takes.push((key.clone(), kind)),
                            None => problems.add(
                                file,
                                value.pos,
                                &child(&takes_path, key),
                                "unknown kind of value (known: nhs-number, day)",
                            ),
                        }
                    }
                }
                _ => problems.add(
                    file,
                    node.pos,
                    &takes_path,
                    "takes: a map of parameter to kind of value",
                ),
            }
        }
        let window = step.get("window").and_then(|node| {
            let text = |key: &str| node.get(key).and_then(|n| n.as_str()).map(String::from);
            match (text("param"), text("default")) {
                (Some(param), Some(default)) => Some(NativeWindow {
                    param,
                    default,
                    unless: text("unless"),
                }),
                _ => {
                    problems.add(
                        file,
                        node.pos,
                        &child(&step_path, "window"),
                        "window: needs param (a date parameter) and default (what the native call reads then)",
                    );
                    None
                }
            }
        });
        def.surfaces.insert(
            surface,
            NativeStep {
                request,
                select,
                requires,
                takes,
                window,
                less: step.get("less").and_then(Node::as_str).map(String::from),
                next,
                join,
            },
        );
    }
    if def.surfaces.is_empty() {
        problems.add(file, node.pos, path, "no surface (transaction or patient) is mapped");
    }
    def
}

/// What a search's native steps name (`requires`, `takes`) must be search parameters the file declares; what a
/// step takes, a parameter of the type that kind of value is and, where it requires any, one it is asked by.
fn check_step_params(file: &str, node: &Node, def: &InteractionDef, params: &[ParamDef], problems: &mut Problems) {
    let declared = |name: &str| params.iter().find(|p| p.name == name);
    for (surface, step) in &def.surfaces {
        let Some(step_node) = node.get(surface.key()) else {
            continue;
        };
        let step_path = child("search", surface.key());
        let mut report = |key: &str, message: String| {
            let pos = step_node.get(key).map_or(step_node.pos, |n| n.pos);
            problems.add(file, pos, &child(&step_path, key), message);
        };
        let named = step.requires.iter().flatten().map(|n| ("requires", n));
        for (key, name) in named.chain(step.takes.iter().map(|(n, _)| ("takes", n))) {
            if declared(name).is_none() {
                report(key, format!("'{name}' is not a search parameter this file declares"));
            }
        }
        for (name, kind) in &step.takes {
            if declared(name).is_some_and(|p| p.kind != kind.param_type()) {
                let ty = kind.param_type().name();
                report(
                    "takes",
                    format!("'{name}' is not a {ty} parameter, as {} is", kind.describe()),
                );
            }
            if !step.requires.is_empty() && !step.requires.iter().flatten().any(|n| n == name) {
                report(
                    "takes",
                    format!("'{name}' is in no requires alternative, so the native call is never asked by it"),
                );
            }
        }
    }
}

/// `requires`: a list of parameter names (one alternative: all of them), or a list of such lists (alternatives,
/// the first whose parameters are all given serving).
fn read_requires(file: &str, step: &Node, step_path: &str, problems: &mut Problems) -> Vec<Vec<String>> {
    let Some(node) = step.get("requires") else {
        return Vec::new();
    };
    let names =
        |items: &[Node]| -> Option<Vec<String>> { items.iter().map(|i| i.as_str().map(String::from)).collect() };
    let alternatives = match &node.value {
        NodeValue::Seq(items) if items.is_empty() => Some(Vec::new()),
        NodeValue::Seq(items) => match names(items) {
            Some(one) => Some(vec![one]),
            None => items
                .iter()
                .map(|item| match &item.value {
                    NodeValue::Seq(inner) => names(inner).filter(|n| !n.is_empty()),
                    _ => None,
                })
                .collect(),
        },
        _ => None,
    };
    alternatives.unwrap_or_else(|| {
        problems.add(
            file,
            node.pos,
            &child(step_path, "requires"),
            "a list of parameter names, or a list of such lists (alternatives)",
        );
        Vec::new()
    })
}

/// FHIR defines `_id` and `_lastUpdated` for every resource type: every searchable mapping accepts `_id`, and
/// `_lastUpdated` where its template states `meta.lastUpdated` (the
/// proxy filters the translated resources), unless its file says otherwise.
fn add_resource_params(params: &mut Vec<ParamDef>, states_last_updated: bool) {
    for (name, kind, path) in [
        ("_id", ParamType::Token, "id"),
        ("_lastUpdated", ParamType::Date, "meta.lastUpdated"),
    ] {
        if name == "_lastUpdated" && !states_last_updated {
            continue;
        }
        if !params.iter().any(|p| p.name == name) {
            params.push(ParamDef {
                name: name.into(),
                target: None,
                kind,
                paths: vec![path.into()],
                documentation: None,
            });
        }
    }
}

fn read_params(file: &str, node: &Node, problems: &mut Problems) -> Vec<ParamDef> {
    let mut out = Vec::new();
    for (name, key_pos, spec) in node.entries() {
        let path = child("search.params", name);
        unknown_keys(
            file,
            spec,
            &path,
            &["type", "paths", "target", "documentation"],
            problems,
        );
        let kind = match spec.get("type").and_then(Node::as_str) {
            Some("token") => ParamType::Token,
            Some("string") => ParamType::String,
            Some("date") => ParamType::Date,
            Some("reference") => ParamType::Reference,
            other => {
                let given = other.map_or_else(|| "missing".to_string(), |t| format!("'{t}'"));
                problems.add(
                    file,
                    *key_pos,
                    &path,
                    format!("type must be token, string, date or reference, not {given}"),
                );
                continue;
            }
        };
        let paths: Vec<String> = match spec.get("paths").map(|n| &n.value) {
            Some(NodeValue::Seq(items)) => items.iter().filter_map(|i| i.as_str().map(String::from)).collect(),
            _ => Vec::new(),
        };
        if paths.is_empty() {
            problems.add(
                file,
                *key_pos,
                &path,
                "a search parameter needs paths (elements of the produced resource)",
            );
        }
        let target = spec.get("target").and_then(Node::as_str).map(String::from);
        let names_a_type = target
            .as_ref()
            .is_none_or(|t| t.starts_with(|c: char| c.is_ascii_uppercase()));
        if spec.get("target").is_some() && (kind != ParamType::Reference || !names_a_type) {
            problems.add(
                file,
                *key_pos,
                &child(&path, "target"),
                "target: the resource type a reference parameter points at",
            );
        }
        let documentation = spec.get("documentation").and_then(|doc| match doc.as_str() {
            Some(text) => Some(text.to_string()),
            None => {
                let message = format!("must be text, not {}", doc.kind());
                problems.add(file, doc.pos, &child(&path, "documentation"), message);
                None
            }
        });
        out.push(ParamDef {
            name: name.clone(),
            target,
            kind,
            paths,
            documentation,
        });
    }
    out
}

fn required_str(file: &str, node: &Node, key: &str, problems: &mut Problems) -> Option<String> {
    match node.get(key) {
        Some(n) => match n.as_str() {
            Some(s) => Some(s.to_string()),
            None => {
                problems.add(file, n.pos, key, format!("must be a string, not {}", n.kind()));
                None
            }
        },
        None => {
            problems.add(file, node.pos, key, "is required");
            None
        }
    }
}

/// Reports keys that the schema does not know, with a suggestion when one is close.
pub fn unknown_keys(file: &str, node: &Node, path: &str, known: &[&str], problems: &mut Problems) {
    for (key, pos, _) in node.entries() {
        if !known.contains(&key.as_str()) {
            let hint = known
                .iter()
                .find(|k| edit_distance(k, key) <= 2)
                .map(|k| format!(" (did you mean '{k}'?)"))
                .unwrap_or_default();
            problems.add(file, *pos, &child(path, key), format!("unknown key '{key}'{hint}"));
        }
    }
}

/// Levenshtein distance, for "did you mean" hints.
pub fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut prev = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let old = row[j + 1];
            row[j + 1] = (row[j + 1] + 1).min(row[j] + 1).min(prev + usize::from(ca != *cb));
            prev = old;
        }
    }
    row[b.len()]
}
