//! Templates: YAML shaped like the FHIR resource they produce, compiled once into a tree whose plain field
//! paths are direct lookups and whose other leaves are compiled expressions.
//!
//! Structure keys (the only non-FHIR keys a template may hold):
//! - `$if: "{{ expr }}"` on a mapping: the mapping is produced only when the expression is truthy;
//! - a list item `{ $each: "{{ expr }}", $as: name, ...fields }`: the fields are produced once per element of
//!   the list the expression gives, with the element bound to `name` (default `item`); with
//!   `$value: "{{ expr }}"` in place of the fields, each element gives that one value (a shared partial's,
//!   say: `$value: "{{ partial('HumanName', ...) }}"`).
//!
//! Whatever evaluates to nothing (null, undefined, "", [] or {}) is left out, so no empty FHIR element
//! is ever produced and templates need no clean-up pass.

use super::call::{Call, Out};
use super::chain::Chain;
use super::context::{Need, Reads};
use super::expr::{self, Compiled, Engine, Path, Step};
use super::inline::Inlined;
use super::node::{Held, Kind, Native, Node};
use super::problem::{child, index, Problems};
use super::refs::References;
use super::yaml::{self, NodeValue};
use crate::tree::{self, Tree};
use minijinja::Value as JValue;
use smallvec::SmallVec;
use sonic_rs::JsonContainerTrait;
use std::cell::OnceCell;
use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::Ordering;
use std::sync::{Arc, OnceLock};

/// A compiled template node.
pub enum Tmpl {
    Lit(Tree),
    Path(Path),
    Expr {
        source: String,
        /// The engine's form; none in an inlined partial, whose names are no longer the engine's (where
        /// `call` gives up there, the partial runs as written: see `inline`).
        compiled: Option<Arc<Compiled>>,
        /// What the expression reads of each variable: only that is converted for the engine when it runs.
        reads: Reads,
        /// The same expression run without the engine, when it is a call of one of the engine's functions on
        /// plain arguments (see `call`).
        call: Option<Box<Call>>,
        /// The same expression as a selection of records borrowed from the reply, when it is a chain of list
        /// filters (see `chain`; only `select_records` uses it).
        chain: Option<Box<Chain>>,
    },
    /// Text with embedded `{{ }}` leaves, joined as a string.
    Interp(Vec<Tmpl>),
    Partial {
        name: String,
        args: Vec<Tmpl>,
        /// Where it is called (position and key path), for a problem with the call.
        at: Arc<(yaml::Pos, String)>,
        /// The partial called, set when every file is loaded (`link`).
        target: OnceLock<Arc<Partial>>,
        /// The partial's body with its parameters replaced by the arguments, made when it first runs,
        /// where that can be done exactly (see `inline`).
        inlined: OnceLock<Option<Box<Inlined>>>,
    },
    Object {
        cond: Option<Box<Tmpl>>,
        /// Member names shared for the process (`tree::intern`): a resource's members are named without
        /// allocating.
        fields: Vec<(tree::Key, Tmpl)>,
    },
    Array(Vec<Item>),
}

pub enum Item {
    One(Tmpl),
    Each { source: Tmpl, var: String, body: Tmpl },
}

/// Where a template is being compiled: for problems and for the variables in scope.
pub struct Site<'a> {
    pub file: &'a str,
    pub engine: &'a Engine,
    pub vars: Vec<String>,
    /// ConceptMap ids and URLs that exist, to check `translate`/`coding` calls up front.
    pub concept_maps: &'a dyn Fn(&str) -> bool,
}

/// Compiles a node; problems go to `problems` and the node compiles to something harmless.
pub fn compile(node: &yaml::Node, path: &str, site: &mut Site, problems: &mut Problems) -> Tmpl {
    match &node.value {
        NodeValue::Null => Tmpl::Lit(Tree::Null),
        NodeValue::Bool(b) => Tmpl::Lit(Tree::Bool(*b)),
        NodeValue::Int(i) => Tmpl::Lit(Tree::from(*i)),
        NodeValue::Float(f) => Tmpl::Lit(serde_json::Number::from_f64(*f).map(Tree::Number).unwrap_or(Tree::Null)),
        NodeValue::Str(text) => compile_text(text, node, path, site, problems),
        NodeValue::Seq(items) => {
            let mut out = Vec::with_capacity(items.len());
            for (i, item) in items.iter().enumerate() {
                let item_path = index(path, i);
                if let Some(source) = item.get("$each") {
                    let var = item
                        .get("$as")
                        .and_then(yaml::Node::as_str)
                        .unwrap_or("item")
                        .to_string();
                    let source = compile(source, &child(&item_path, "$each"), site, problems);
                    site.vars.push(var.clone());
                    let body = match item.get("$value") {
                        Some(value) => {
                            // Nothing else is read beside it: a field, or a `$if`, would be silently ignored.
                            let others = item
                                .entries()
                                .iter()
                                .filter(|(k, _, _)| !matches!(k.as_str(), "$each" | "$as" | "$value"));
                            for (key, pos, _) in others {
                                problems.add(
                                    site.file,
                                    *pos,
                                    &child(&item_path, key),
                                    format!(
                                        "'{key}' beside $value: an item is its $value alone (filter the list in $each)"
                                    ),
                                );
                            }
                            compile(value, &child(&item_path, "$value"), site, problems)
                        }
                        None => compile_object(item, &item_path, site, problems, &["$each", "$as"]),
                    };
                    site.vars.pop();
                    out.push(Item::Each { source, var, body });
                } else {
                    out.push(Item::One(compile(item, &item_path, site, problems)));
                }
            }
            Tmpl::Array(out)
        }
        NodeValue::Map(_) => compile_object(node, path, site, problems, &[]),
    }
}

fn compile_object(node: &yaml::Node, path: &str, site: &mut Site, problems: &mut Problems, skip: &[&str]) -> Tmpl {
    let mut cond = None;
    let mut fields = Vec::new();
    for (key, key_pos, value) in node.entries() {
        let key_path = child(path, key);
        if skip.contains(&key.as_str()) {
            continue;
        }
        match key.as_str() {
            "$if" => cond = Some(Box::new(compile(value, &key_path, site, problems))),
            k if k.starts_with('$') => problems.add(
                site.file,
                *key_pos,
                &key_path,
                format!("unknown template key '{k}' (known: $if, $each, $as, $value)"),
            ),
            // YAML's keys are distinct, but `1` and `"1"` (or `true` and `"true"`) name the same member.
            _ if fields.iter().any(|(name, _): &(tree::Key, Tmpl)| name == key) => {
                problems.add(site.file, *key_pos, &key_path, format!("'{key}' is given twice"))
            }
            _ => fields.push((
                tree::Key::Borrowed(tree::intern(key)),
                compile(value, &key_path, site, problems),
            )),
        }
    }
    Tmpl::Object { cond, fields }
}

fn compile_text(text: &str, node: &yaml::Node, path: &str, site: &mut Site, problems: &mut Problems) -> Tmpl {
    if let Some(inner) = expr::whole_expression(text) {
        return compile_leaf(inner, node, path, site, problems);
    }
    if !text.contains("{{") {
        return Tmpl::Lit(Tree::shared(text));
    }
    // Mixed text: literal runs and `{{ }}` leaves, joined at evaluation.
    let mut parts = Vec::new();
    let mut rest = text;
    while let Some(start) = rest.find("{{") {
        if start > 0 {
            parts.push(Tmpl::Lit(Tree::shared(&rest[..start])));
        }
        let Some(end) = rest[start..].find("}}") else {
            problems.add(site.file, node.pos, path, "unclosed '{{' in text");
            return Tmpl::Lit(Tree::Null);
        };
        parts.push(compile_leaf(
            rest[start + 2..start + end].trim(),
            node,
            path,
            site,
            problems,
        ));
        rest = &rest[start + end + 2..];
    }
    if !rest.is_empty() {
        parts.push(Tmpl::Lit(Tree::shared(rest)));
    }
    Tmpl::Interp(parts)
}

fn compile_leaf(source: &str, node: &yaml::Node, path: &str, site: &mut Site, problems: &mut Problems) -> Tmpl {
    if let Some((name, args)) = expr::partial_call(source) {
        let args = args
            .iter()
            .map(|a| compile_leaf(a, node, path, site, problems))
            .collect();
        return Tmpl::Partial {
            name,
            args,
            at: Arc::new((node.pos, path.to_string())),
            target: OnceLock::new(),
            inlined: OnceLock::new(),
        };
    }
    // A string literal (a partial's argument such as 'Patient') is a literal, not a run of the engine.
    if let Some(text) = super::call::literal(source) {
        return Tmpl::Lit(Tree::shared(&text));
    }
    if let Some(p) = Path::parse(source) {
        if !site.vars.contains(&p.root) {
            problems.add(
                site.file,
                node.pos,
                path,
                format!("unknown variable '{}' (in scope: {})", p.root, site.vars.join(", ")),
            );
        }
        return Tmpl::Path(p);
    }
    for function in ["translate(", "coding("] {
        for (at, _) in source.match_indices(function) {
            let after = source[at + function.len()..].trim_start();
            if let Some(name) = after.strip_prefix('\'').and_then(|a| a.split('\'').next()) {
                if !(site.concept_maps)(name) {
                    problems.add(site.file, node.pos, path, format!("unknown ConceptMap '{name}'"));
                }
            }
        }
    }
    for function in Engine::called_functions(source) {
        if function != "partial" && !site.engine.has_function(&function) {
            let hint = expr::FUNCTIONS
                .iter()
                .find(|f| super::file::edit_distance(f, &function) <= 2)
                .map(|f| format!(" (did you mean '{f}'?)"))
                .unwrap_or_default();
            problems.add(
                site.file,
                node.pos,
                path,
                format!("unknown function '{function}'{hint}"),
            );
        }
    }
    if source.contains("partial(") {
        problems.add(
            site.file,
            node.pos,
            path,
            "partial(...) must be the whole value of a leaf",
        );
    }
    let call = Call::compile(source, site.engine).map(Box::new);
    // `decimal` runs outside the engine only (it has no decimal type): where it could not, it is refused here.
    if call.is_none() && Engine::called_functions(source).iter().any(|f| f == "decimal") {
        problems.add(
            site.file,
            node.pos,
            path,
            "decimal(value[, places]) takes a path or text, as a leaf's whole value or a conditional's branch",
        );
    }
    match site.engine.compile(source) {
        Ok(compiled) => Tmpl::Expr {
            source: source.to_string(),
            compiled: Some(Arc::new(compiled)),
            reads: Reads::scan(source),
            call,
            chain: Chain::compile(source).map(Box::new),
        },
        Err(e) => {
            problems.add(site.file, node.pos, path, format!("expression does not compile: {e}"));
            Tmpl::Lit(Tree::Null)
        }
    }
}

impl Tmpl {
    /// Calls `f` with each template this one holds: a partial's arguments, text's parts, an object's
    /// condition and fields, a list's items and each loop's source and body.
    pub fn each_child<'t>(&'t self, f: &mut dyn FnMut(&'t Tmpl)) {
        match self {
            Tmpl::Partial { args, .. } => args.iter().for_each(f),
            Tmpl::Interp(parts) => parts.iter().for_each(f),
            Tmpl::Object { cond, fields } => {
                cond.iter().for_each(|c| f(c));
                fields.iter().for_each(|(_, field)| f(field));
            }
            Tmpl::Array(items) => items.iter().for_each(|item| match item {
                Item::One(t) => f(t),
                Item::Each { source, body, .. } => {
                    f(source);
                    f(body);
                }
            }),
            Tmpl::Lit(_) | Tmpl::Path(_) | Tmpl::Expr { .. } => {}
        }
    }
}

/// A partial call that cannot be linked, and where it is.
#[derive(Debug)]
pub enum BadCall {
    /// No partial of that name.
    Unknown(String, Arc<(yaml::Pos, String)>),
    /// The partial takes another number of arguments: its name, its parameters and how many were given.
    Arity(String, Vec<String>, usize, Arc<(yaml::Pos, String)>),
}

/// Points every partial call in a template at its partial; gives the calls that cannot be (an unknown
/// partial, or one given the wrong number of arguments, whose missing ones would silently be nothing).
pub fn link(tmpl: &Tmpl, partials: &HashMap<String, Arc<Partial>>, bad: &mut Vec<BadCall>) {
    if let Tmpl::Partial {
        name, args, target, at, ..
    } = tmpl
    {
        match partials.get(name) {
            Some(partial) if partial.params.len() != args.len() => bad.push(BadCall::Arity(
                name.clone(),
                partial.params.clone(),
                args.len(),
                at.clone(),
            )),
            Some(partial) => {
                let _ = target.set(partial.clone());
            }
            None => bad.push(BadCall::Unknown(name.clone(), at.clone())),
        }
    }
    tmpl.each_child(&mut |child| link(child, partials, bad));
}

/// A partial's arguments: held inline, partials take few.
type PartialArgs<'v> = SmallVec<[Option<Held<'v>>; 4]>;

/// A partial: a named template with parameters.
pub struct Partial {
    /// The file it is written in (`shared/_Quantity.yaml`), for problems.
    pub file: String,
    pub params: Vec<String>,
    pub body: Tmpl,
}

/// Variables visible to a template while it runs: a chain of bindings, innermost first. Values are borrowed
/// (`'v`), never copied to be bound, and converted for the expression engine only in the part an expression
/// reads.
pub struct Scope<'s, 'v> {
    name: &'s str,
    value: Node<'v>,
    /// Read as `non_empty` would leave the value (no nulls, blank strings, empty lists or objects): records
    /// and partial arguments are read so, from the native reply itself rather than a cleaned copy of it.
    clean: bool,
    /// The whole value converted for the engine, once, when an expression reads it whole.
    converted: OnceCell<JValue>,
    parent: Option<&'s Scope<'s, 'v>>,
    /// Where `reference(type, key)` resolves, while a translation runs (see `refs`).
    refs: Option<&'s References<'s>>,
    /// The members of the bound value, when it is a record read through [`MemberIndex`].
    members: Option<&'s MemberIndex<'v>>,
}

/// A native record's members by name, read once when the record is bound: a record is read some twenty
/// times, and finding a member of a parsed native object walks its members. The last of a name counts, as
/// everywhere (see `Node::get`).
pub struct MemberIndex<'v>(HashMap<&'v str, &'v Native, foldhash::fast::RandomState>);

impl<'v> MemberIndex<'v> {
    /// The members of a record, when it is a native object with more than a few.
    pub fn of(record: Node<'v>) -> Option<MemberIndex<'v>> {
        const SMALL: usize = 8;
        let Node::Native(native) = record else { return None };
        let object = native.as_object().filter(|o| o.len() > SMALL)?;
        let mut members = HashMap::with_capacity_and_hasher(object.len(), Default::default());
        members.extend(object.iter());
        Some(MemberIndex(members))
    }
}

impl<'s, 'v> Scope<'s, 'v> {
    pub fn root(name: &'s str, value: impl Into<Node<'v>>) -> Scope<'s, 'v> {
        Scope::new(name, value.into(), false, None)
    }

    /// A scope whose variables are the entries of one JSON object (small values: ids, parameters).
    pub fn of_object(object: &'v Tree) -> Scope<'s, 'v> {
        Scope::root("", object)
    }

    pub fn bind(&'s self, name: &'s str, value: impl Into<Node<'v>>) -> Scope<'s, 'v> {
        Scope::new(name, value.into(), false, Some(self))
    }

    /// Binds a record read clean, as [`Scope::bind_clean`], whose members are found through [`MemberIndex`].
    pub fn bind_record(
        &'s self,
        name: &'s str,
        record: Node<'v>,
        members: Option<&'s MemberIndex<'v>>,
    ) -> Scope<'s, 'v> {
        let mut scope = Scope::new(name, record, true, Some(self));
        scope.members = members;
        scope
    }

    /// Binds a value read as `non_empty` would leave it (nothing left: null).
    pub fn bind_clean(&'s self, name: &'s str, value: impl Into<Node<'v>>) -> Scope<'s, 'v> {
        Scope::new(name, value.into(), true, Some(self))
    }

    fn new(name: &'s str, value: Node<'v>, clean: bool, parent: Option<&'s Scope<'s, 'v>>) -> Scope<'s, 'v> {
        let value = if clean && value.is_empty_deep() {
            Node::NULL
        } else {
            value
        };
        Scope::with(name, value, clean, parent)
    }

    /// Binds a value read clean already (a partial's argument: [`eval_arg`] left out what is empty).
    fn new_clean(name: &'s str, value: Node<'v>, parent: Option<&'s Scope<'s, 'v>>) -> Scope<'s, 'v> {
        Scope::with(name, value, true, parent)
    }

    fn with(name: &'s str, value: Node<'v>, clean: bool, parent: Option<&'s Scope<'s, 'v>>) -> Scope<'s, 'v> {
        Scope {
            name,
            value,
            clean,
            converted: OnceCell::new(),
            parent,
            refs: parent.and_then(|p| p.refs),
            members: None,
        }
    }

    /// The scope, resolving references through `refs` (it and every scope bound inside it).
    pub fn with_references(mut self, refs: &'s References<'s>) -> Scope<'s, 'v> {
        self.refs = Some(refs);
        self
    }

    /// Where references resolve, if a translation is running.
    pub fn references(&self) -> Option<&'s References<'s>> {
        self.refs
    }

    /// The scope that binds a variable, and its value there.
    fn lookup(&self, name: &str) -> Option<(&Scope<'s, 'v>, Node<'v>)> {
        let mut scope = Some(self);
        while let Some(s) = scope {
            if s.name.is_empty() {
                if let Some(v) = s.value.get(name).filter(|v| !(s.clean && v.is_empty_deep())) {
                    return Some((s, v));
                }
            } else if s.name == name {
                return Some((s, s.value));
            }
            scope = s.parent;
        }
        None
    }

    /// A member of the bound value (through its [`MemberIndex`] when it has one).
    fn member(&self, key: &str) -> Option<Node<'v>> {
        match self.members {
            Some(members) => members.0.get(key).map(|value| Node::Native(value)),
            None => self.value.get(key),
        }
    }

    /// Follows a plain path; a clean value's empty members are not there (and its list items are counted
    /// without them).
    pub fn walk(&self, path: &Path) -> Option<(Node<'v>, bool)> {
        self.find(path)
            .filter(|(value, clean)| !(*clean && value.is_empty_deep()))
    }

    /// As [`Scope::walk`], but a clean value found empty is given rather than left out: for callers that
    /// read it clean anyway (copying it, or taking it as an argument). Only the end of the path needs that
    /// check: what an empty value holds is empty too.
    pub fn find(&self, path: &Path) -> Option<(Node<'v>, bool)> {
        let (bound, mut value) = self.lookup(&path.root)?;
        let clean = bound.clean || path.clean;
        for (i, step) in path.steps.iter().enumerate() {
            value = match step {
                // The first step from a named variable reads its bound value.
                Step::Key(k) if i == 0 && !bound.name.is_empty() => bound.member(k)?,
                Step::Key(k) => value.get(k)?,
                Step::Index(i) if clean => value.items().filter(|v| !v.is_empty_deep()).nth(*i)?,
                Step::Index(i) => value.at(*i)?,
            };
        }
        Some((value, clean))
    }

    /// The engine's context for an expression: only what it reads is converted.
    fn context(&self, reads: &Reads) -> JValue {
        let mut map = BTreeMap::new();
        for (name, need) in &reads.0 {
            if let Some(value) = self.convert(name, need) {
                map.insert(name.clone(), value);
            }
        }
        JValue::from(map)
    }

    fn convert(&self, name: &str, need: &Need) -> Option<JValue> {
        let mut scope = Some(self);
        while let Some(s) = scope {
            if s.name.is_empty() {
                if let Some(v) = s.value.get(name).filter(|v| !(s.clean && v.is_empty_deep())) {
                    return Some(need.convert(v, s.clean));
                }
            } else if s.name == name {
                return Some(match need {
                    // A named value read whole is converted once, however many expressions read it.
                    Need::Whole => s.converted.get_or_init(|| need.convert(s.value, s.clean)).clone(),
                    Need::Keys(_) => need.convert(s.value, s.clean),
                });
            }
            scope = s.parent;
        }
        None
    }
}

/// A failure while a template ran (an expression error at run time).
#[derive(Debug, Clone)]
pub struct EvalError(pub String);

impl EvalError {
    const GAVE_UP: &'static str = "an inlined partial's call needs the engine";

    /// A call in an inlined partial gave up (see `inline`): never reaches a caller of `eval` on a whole
    /// template, since the partial then runs as written.
    fn gave_up() -> EvalError {
        EvalError(EvalError::GAVE_UP.to_string())
    }

    fn is_gave_up(&self) -> bool {
        self.0 == EvalError::GAVE_UP
    }
}

/// Runs a template. `None` means "nothing to produce".
pub fn eval(tmpl: &Tmpl, scope: &Scope) -> Result<Option<Tree>, EvalError> {
    Ok(match tmpl {
        Tmpl::Lit(v) => non_empty(v.clone()),
        Tmpl::Path(p) => scope.find(p).and_then(|(v, _)| v.to_json_clean()),
        Tmpl::Expr {
            source,
            compiled,
            reads,
            call,
            ..
        } => match call.as_ref().and_then(|c| c.eval(scope)) {
            Some(Out::Nothing) => None,
            Some(Out::Text(text)) => non_empty(Tree::from(text)),
            Some(Out::Json(value)) => non_empty(value),
            None => {
                let Some(compiled) = compiled else {
                    return Err(EvalError::gave_up());
                };
                let value = eval_expression(source, compiled, &scope.context(reads))?;
                if let (Some(refs), Some(value)) = (scope.references(), &value) {
                    refs.note(value);
                }
                value
            }
        },
        Tmpl::Interp(parts) => {
            let mut text = String::new();
            for part in parts {
                // Text, literal or read from a path, is appended where it is rather than copied into a value
                // first (a system URL built from the practice, say, on every resource).
                let borrowed = match part {
                    Tmpl::Lit(Tree::String(s)) => Some(s.as_ref()),
                    Tmpl::Path(path) => match scope.find(path) {
                        // Not there: nothing to append.
                        None => Some(""),
                        Some((value, _)) => value.as_str(),
                    },
                    _ => None,
                };
                match borrowed {
                    Some(s) if !super::node::is_blank(s) => text.push_str(s),
                    Some(_) => {}
                    None => match eval(part, scope)? {
                        Some(Tree::String(s)) => text.push_str(&s),
                        Some(other) => text.push_str(&other.to_string()),
                        None => {}
                    },
                }
            }
            non_empty(Tree::from(text))
        }
        Tmpl::Partial {
            name,
            args,
            target,
            inlined,
            ..
        } => {
            let partial = target
                .get()
                .ok_or_else(|| EvalError(format!("unknown partial '{name}'")))?;
            let inlined = inlined.get_or_init(|| super::inline::inline(partial, args).map(Box::new));
            if let Some(inlined) = inlined.as_ref().filter(|i| !i.gives_up.load(Ordering::Relaxed)) {
                match eval_inlined(inlined, scope) {
                    // A call in it met a value only the engine takes: the partial runs as written.
                    Err(e) if e.is_gave_up() => inlined.gives_up.store(true, Ordering::Relaxed),
                    done => return done,
                }
            }
            let mut values = PartialArgs::new();
            eval_args(args.iter(), scope, &mut values)?;
            eval_partial(partial, &values, scope.references())?
        }
        Tmpl::Object { cond, fields } => {
            if let Some(cond) = cond {
                if !holds(cond, scope)? {
                    return Ok(None);
                }
            }
            // Made when the first field gives something: many objects give nothing at all.
            let mut map: Option<tree::Members> = None;
            for (i, (key, field)) in fields.iter().enumerate() {
                if let Some(value) = eval(field, scope)? {
                    // A YAML mapping's keys are distinct.
                    map.get_or_insert_with(|| tree::Members::with_capacity(fields.len() - i))
                        .push_new(key.clone(), value);
                }
            }
            // Every value came from `eval`, so it is clean already.
            map.map(Tree::Object)
        }
        Tmpl::Array(items) => {
            // Allocated by the first item that gives something.
            let mut out = Vec::new();
            for item in items {
                match item {
                    Item::One(t) => match eval(t, scope)? {
                        // A leaf that yields a list in a list position is spliced in.
                        Some(Tree::Array(values)) if !matches!(t, Tmpl::Array(_)) => {
                            if out.is_empty() {
                                out = values;
                            } else {
                                out.extend(values);
                            }
                        }
                        Some(v) => {
                            out.reserve(items.len());
                            out.push(v);
                        }
                        None => {}
                    },
                    Item::Each { source, var, body } => {
                        if let Some(list) = eval_ref(source, scope)? {
                            for element in elements(list.node()) {
                                // An element is read as often as a record (a component's unit, range...).
                                let members = MemberIndex::of(element);
                                let inner = scope.bind_record(var, element, members.as_ref());
                                out.extend(eval(body, &inner)?);
                            }
                        }
                    }
                }
            }
            (!out.is_empty()).then_some(Tree::Array(out))
        }
    })
}

/// Runs an object's fields into `map`, but for those named in `skip`: `map` holds none of the others yet.
pub fn eval_fields(
    fields: &[(tree::Key, Tmpl)],
    skip: &[&str],
    scope: &Scope,
    map: &mut tree::Members,
) -> Result<(), EvalError> {
    for (key, field) in fields {
        if skip.contains(&key.as_ref()) {
            continue;
        }
        if let Some(value) = eval(field, scope)? {
            map.push_new(key.clone(), value);
        }
    }
    Ok(())
}

/// Whether a condition holds, as `$if` reads it.
pub fn holds(cond: &Tmpl, scope: &Scope) -> Result<bool, EvalError> {
    Ok(truthy(eval_ref(cond, scope)?.as_ref().map(Held::node)))
}

/// Runs a template whose value is only read (a partial's argument, a list to loop over, a condition, the
/// records a reply holds): a plain path gives the value itself, to be read clean, rather than a cleaned copy.
pub fn eval_ref<'v>(tmpl: &Tmpl, scope: &Scope<'_, 'v>) -> Result<Option<Held<'v>>, EvalError> {
    match tmpl {
        Tmpl::Path(p) => Ok(scope
            .find(p)
            .map(|(v, _)| v)
            .filter(|v| !v.is_empty_deep())
            .map(Held::Borrowed)),
        _ => Ok(eval(tmpl, scope)?.map(Held::Owned)),
    }
}

/// A partial's argument, read as [`eval_ref`] reads it; a literal (`'Patient'`) is borrowed rather than copied.
fn eval_arg<'a>(tmpl: &'a Tmpl, scope: &Scope<'_, 'a>) -> Result<Option<Held<'a>>, EvalError> {
    match tmpl {
        Tmpl::Lit(value) => Ok(Some(Node::Json(value))
            .filter(|v| !v.is_empty_deep())
            .map(Held::Borrowed)),
        _ => eval_ref(tmpl, scope),
    }
}

/// The records a `select` gives: borrowed from the reply when it is a plain path or a chain of list filters,
/// else the values its expression gives.
pub fn select_records<'v>(tmpl: &Tmpl, scope: &Scope<'_, 'v>) -> Result<Vec<Held<'v>>, EvalError> {
    if let Tmpl::Expr { chain: Some(chain), .. } = tmpl {
        if let Some(records) = chain.records(scope) {
            return Ok(records.into_iter().map(Held::Borrowed).collect());
        }
    }
    Ok(match eval_ref(tmpl, scope)? {
        None => Vec::new(),
        Some(Held::Borrowed(list)) => elements(list).map(Held::Borrowed).collect(),
        Some(Held::Owned(Tree::Array(items))) => items.into_iter().map(Held::Owned).collect(),
        Some(Held::Owned(single)) => vec![Held::Owned(single)],
    })
}

/// The elements of a list read clean (a single value is a list of one).
pub fn elements<'v>(list: Node<'v>) -> impl Iterator<Item = Node<'v>> {
    let (items, single) = match list.kind() {
        Kind::Array => (list.items(), None),
        _ => (Node::NULL.items(), Some(list)),
    };
    items.chain(single).filter(|v| !v.is_empty_deep())
}

fn eval_expression(source: &str, compiled: &Compiled, context: &JValue) -> Result<Option<Tree>, EvalError> {
    let value = compiled
        .eval(context)
        .map_err(|e| EvalError(format!("{source}: {e}")))?;
    if value.is_undefined() || value.is_none() {
        return Ok(None);
    }
    let json = super::context::from_engine(&value).map_err(|e| EvalError(format!("{source}: {e}")))?;
    Ok(non_empty(json))
}

fn eval_partial(
    partial: &Partial,
    args: &[Option<Held>],
    refs: Option<&References>,
) -> Result<Option<Tree>, EvalError> {
    // A chain of its own: the body sees its parameters only.
    let root = attach(Scope::root("_", Node::NULL), refs);
    let param = |i: usize| partial.params.get(i).map(String::as_str);
    eval_bound(&partial.body, &param, args, 0, &root)
}

/// Runs an inlined partial in its caller's scope: its bound arguments first, each as a partial binds one.
fn eval_inlined(inlined: &Inlined, scope: &Scope) -> Result<Option<Tree>, EvalError> {
    if inlined.lets.is_empty() {
        return eval(&inlined.body, scope);
    }
    let mut values = PartialArgs::new();
    eval_args(inlined.lets.iter().map(|(_, arg)| arg), scope, &mut values)?;
    let name = |i: usize| inlined.lets.get(i).map(|(name, _)| name.as_str());
    eval_bound(&inlined.body, &name, &values, 0, scope)
}

/// A partial's arguments (or an inlined one's bound arguments), evaluated in the caller's scope into `values`
/// (filled in place: returned, the inline list would be copied).
fn eval_args<'a>(
    args: impl Iterator<Item = &'a Tmpl>,
    scope: &Scope<'_, 'a>,
    values: &mut PartialArgs<'a>,
) -> Result<(), EvalError> {
    for arg in args {
        values.push(eval_arg(arg, scope)?);
    }
    Ok(())
}

/// A new scope chain that resolves references where the caller's did.
fn attach<'s, 'v>(scope: Scope<'s, 'v>, refs: Option<&'s References<'s>>) -> Scope<'s, 'v> {
    match refs {
        Some(refs) => scope.with_references(refs),
        None => scope,
    }
}

fn arg<'v>(args: &'v [Option<Held>], i: usize) -> Node<'v> {
    args.get(i).and_then(Option::as_ref).map_or(Node::NULL, Held::node)
}

/// Binds values one by one under the names `name_at` gives (each scope borrows the previous), then runs
/// `body`.
fn eval_bound<'n>(
    body: &Tmpl,
    name_at: &impl Fn(usize) -> Option<&'n str>,
    values: &[Option<Held>],
    i: usize,
    scope: &Scope,
) -> Result<Option<Tree>, EvalError> {
    match name_at(i) {
        None => eval(body, scope),
        Some(name) => {
            let inner = Scope::new_clean(name, arg(values, i), Some(scope));
            eval_bound(body, name_at, values, i + 1, &inner)
        }
    }
}

/// `$if`: what the engine would find true.
fn truthy(value: Option<Node>) -> bool {
    value.is_some_and(Node::is_true)
}

/// Drops what FHIR forbids, at every depth: nulls, blank strings, empty lists and empty objects. Values from
/// native data and expressions pass through here too, so `"a b".split(...)` on an empty string, or a native
/// list with a null in it, never reaches a resource. In place: rebuilding each object would copy it.
pub fn non_empty(mut value: Tree) -> Option<Tree> {
    keep(&mut value).then_some(value)
}

/// Drops the empty members of a value; whether anything is left of it.
fn keep(value: &mut Tree) -> bool {
    match value {
        Tree::Null => false,
        Tree::String(s) => !super::node::is_blank(s),
        Tree::Array(items) => {
            items.retain_mut(keep);
            !items.is_empty()
        }
        Tree::Object(map) => {
            map.retain(|_, v| keep(v));
            !map.is_empty()
        }
        Tree::Bool(_) | Tree::Number(_) => true,
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::super::concept_map::ConceptMaps;
    use super::*;
    use std::sync::Arc;

    /// A template compiled with `vars` in scope (and no ConceptMaps), and the problems found.
    pub(crate) fn compiled_with(template: &str, vars: &[&str]) -> (Tmpl, Vec<String>) {
        let engine = Engine::new(Arc::new(ConceptMaps::default()));
        let node = yaml::parse(template).unwrap();
        let mut problems = Problems::default();
        let exists = |_: &str| false;
        let mut site = Site {
            file: "t.yaml",
            engine: &engine,
            vars: vars.iter().map(|v| v.to_string()).collect(),
            concept_maps: &exists,
        };
        let tmpl = compile(&node, "template", &mut site, &mut problems);
        (tmpl, problems.list.iter().map(|p| p.to_string()).collect())
    }

    /// A template compiled with `r` in scope, and the problems found.
    fn compiled(template: &str) -> (Tmpl, Vec<String>) {
        compiled_with(template, &["r"])
    }

    fn run(template: &str, record: Tree) -> (Option<Tree>, Vec<String>) {
        let (tmpl, problems) = compiled(template);
        let out = eval(&tmpl, &Scope::root("r", &record)).unwrap();
        (out, problems)
    }

    #[test]
    fn paths_expressions_loops_and_conditions() {
        let template = r#"
resourceType: Patient
gender: "{{ r.Sex | lower }}"
birthDate: "{{ date(r.Dob, 'day') }}"
name:
  - family: "{{ r.Surname }}"
    given: ["{{ r.First }}"]
  - $each: "{{ r.Previous }}"
    $as: n
    use: old
    family: "{{ n }}"
telecom:
  - $if: "{{ r.Phone }}"
    system: phone
    value: "tel {{ r.Phone }}"
"#;
        let (out, problems) = run(
            template,
            crate::tree!({"Sex": "Female", "Dob": "1985-04-12T00:00:00",
            "Surname": "Tester", "First": "Alex", "Previous": ["Smith"], "Phone": null}),
        );
        assert!(problems.is_empty(), "{problems:?}");
        assert_eq!(
            out.unwrap(),
            crate::tree!({"resourceType": "Patient", "gender": "female", "birthDate": "1985-04-12",
            "name": [{"family": "Tester", "given": ["Alex"]}, {"use": "old", "family": "Smith"}]})
        );
    }

    #[test]
    fn text_with_expressions_joins_what_each_part_gives() {
        let template = r#"
a: "id/{{ r.Text }}/{{ r.Number }}/{{ r.Missing }}/{{ r.Blank }}/{{ r.Flag }}/{{ r.Text | upper }}"
b: "{{ r.Blank }} {{ r.Missing }}"
"#;
        let (out, problems) = run(
            template,
            crate::tree!({"Text": "x-1", "Number": 1.50, "Blank": "  ", "Flag": true}),
        );
        assert!(problems.is_empty(), "{problems:?}");
        // Numbers and booleans as JSON writes them; nothing for what is missing or blank; a text of nothing
        // but white space is left out.
        assert_eq!(out.unwrap(), crate::tree!({"a": "id/x-1/1.5///true/X-1"}));
    }

    #[test]
    fn decimals_keep_the_digits_recorded() {
        let template = r#"
text: "{{ decimal(r.text) }}"
padded: "{{ decimal(r.number, r.places) }}"
trimmed: "{{ decimal(r.whole, r.zero) }}"
whole: "{{ decimal(r.whole) }}"
bad: "{{ decimal(r.bad) }}"
chosen: "{{ decimal(r.text) if r.text else decimal(r.number) }}"
unpadded: "{{ decimal(r.number, r.huge) }}"
"#;
        let record = crate::tree!({"text": "1.70", "number": 1.7, "places": 2, "whole": 168.0, "zero": 0, "bad": "1.7.0",
                            "huge": 4_000_000_000u64});
        let (out, problems) = run(template, record);
        assert!(problems.is_empty(), "{problems:?}");
        let out = out.unwrap();
        let written = |key: &str| serde_json::to_string(&out[key]).unwrap();
        assert_eq!(written("text"), "1.70");
        assert_eq!(written("padded"), "1.70");
        assert_eq!(written("trimmed"), "168");
        assert_eq!(written("whole"), "168.0");
        assert!(out.get("bad").is_none());
        assert_eq!(written("chosen"), "1.70");
        // Places past any measurement's (from a reply) are not padded to.
        assert_eq!(written("unpadded"), "1.7");
        // Where it would need the engine (which has no decimal type), it is refused up front.
        let (_, problems) = compiled("v: \"{{ decimal(r.text | trim) }}\"\n");
        assert!(
            problems.iter().any(|p| p.contains("decimal(value[, places])")),
            "{problems:?}"
        );
    }

    #[test]
    fn a_looped_item_may_be_one_value() {
        let template =
            "names:\n  - $each: \"{{ r.Names }}\"\n    $as: n\n    $value: \"{{ n.First ~ ' ' ~ n.Last }}\"\n";
        let (out, problems) = run(
            template,
            crate::tree!({"Names": [{"First": "A", "Last": "B"}, {"First": "C", "Last": "D"}]}),
        );
        assert!(problems.is_empty(), "{problems:?}");
        assert_eq!(out.unwrap()["names"], crate::tree!(["A B", "C D"]));
        let (_, problems) = compiled("names:\n  - $each: \"{{ r.Names }}\"\n    $value: \"{{ item }}\"\n    text: x\n");
        assert!(
            problems.iter().any(|p| p.contains("'text' beside $value")),
            "{problems:?}"
        );
        let (_, problems) =
            compiled("names:\n  - $each: \"{{ r.Names }}\"\n    $if: \"{{ item }}\"\n    $value: \"{{ item }}\"\n");
        assert!(
            problems.iter().any(|p| p.contains("'$if' beside $value")),
            "{problems:?}"
        );
    }

    #[test]
    fn problems_name_file_line_and_path() {
        let (_, problems) = run(
            "code: \"{{ x.Code }}\"\nbad: \"{{ r.( }}\"\nk: {$unless: 1}\n",
            crate::tree!({}),
        );
        assert_eq!(problems.len(), 3, "{problems:?}");
        assert!(
            problems[0].starts_with("t.yaml:1:7: template.code: unknown variable 'x'"),
            "{}",
            problems[0]
        );
        assert!(
            problems[1].contains("template.bad: expression does not compile"),
            "{}",
            problems[1]
        );
        assert!(
            problems[2].contains("template.k.$unless: unknown template key"),
            "{}",
            problems[2]
        );
    }

    #[test]
    fn a_member_named_twice_is_a_problem() {
        // Distinct YAML keys, one member name.
        let (_, problems) = compiled("valueInteger: 1\n\"1\": a\n1: b\n");
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert!(
            problems[0].starts_with("t.yaml:3:1: template.1: '1' is given twice"),
            "{problems:?}"
        );
    }
}
