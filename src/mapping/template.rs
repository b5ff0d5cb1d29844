//! Templates: YAML shaped like the FHIR resource they produce, compiled once into a tree whose plain field
//! paths are direct lookups and whose other leaves are compiled expressions.
//!
//! Structure keys (the only non-FHIR keys a template may hold):
//! - `$if: "{{ expr }}"` on a mapping: the mapping is produced only when the expression is truthy;
//! - a list item `{ $each: "{{ expr }}", $as: name, ...fields }`: the fields are produced once per element of
//!   the list the expression gives, with the element bound to `name` (default `item`).
//!
//! Whatever evaluates to nothing (null, undefined, "", [] or {}) is left out, so no empty FHIR element
//! is ever produced and templates need no clean-up pass.

use super::expr::{self, Compiled, Engine, Path};
use super::problem::{child, index, Problems};
use super::yaml::{Node, NodeValue};
use minijinja::Value as JValue;
use serde_json::{Map, Value};
use std::cell::OnceCell;
use std::collections::{BTreeMap, HashMap};

/// A compiled template node.
pub enum Tmpl {
    Lit(Value),
    Path(Path),
    Expr {
        source: String,
        compiled: Box<Compiled>,
        /// The variables the expression reads (its undeclared names, functions included): only these are
        /// converted for the engine when it runs.
        vars: Vec<String>,
    },
    /// Text with embedded `{{ }}` leaves, joined as a string.
    Interp(Vec<Tmpl>),
    Partial {
        name: String,
        args: Vec<Tmpl>,
    },
    Object {
        cond: Option<Box<Tmpl>>,
        fields: Vec<(String, Tmpl)>,
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
pub fn compile(node: &Node, path: &str, site: &mut Site, problems: &mut Problems) -> Tmpl {
    match &node.value {
        NodeValue::Null => Tmpl::Lit(Value::Null),
        NodeValue::Bool(b) => Tmpl::Lit(Value::Bool(*b)),
        NodeValue::Int(i) => Tmpl::Lit(Value::from(*i)),
        NodeValue::Float(f) => Tmpl::Lit(
            serde_json::Number::from_f64(*f)
                .map(Value::Number)
                .unwrap_or(Value::Null),
        ),
        NodeValue::Str(text) => compile_text(text, node, path, site, problems),
        NodeValue::Seq(items) => {
            let mut out = Vec::with_capacity(items.len());
            for (i, item) in items.iter().enumerate() {
                let item_path = index(path, i);
                if let Some(source) = item.get("$each") {
                    let var = item.get("$as").and_then(Node::as_str).unwrap_or("item").to_string();
                    let source = compile(source, &child(&item_path, "$each"), site, problems);
                    site.vars.push(var.clone());
                    let body = compile_object(item, &item_path, site, problems, &["$each", "$as"]);
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

fn compile_object(node: &Node, path: &str, site: &mut Site, problems: &mut Problems, skip: &[&str]) -> Tmpl {
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
                format!("unknown template key '{k}' (known: $if, $each, $as)"),
            ),
            _ => fields.push((key.clone(), compile(value, &key_path, site, problems))),
        }
    }
    Tmpl::Object { cond, fields }
}

fn compile_text(text: &str, node: &Node, path: &str, site: &mut Site, problems: &mut Problems) -> Tmpl {
    if let Some(inner) = expr::whole_expression(text) {
        return compile_leaf(inner, node, path, site, problems);
    }
    if !text.contains("{{") {
        return Tmpl::Lit(Value::String(text.to_string()));
    }
    // Mixed text: literal runs and `{{ }}` leaves, joined at evaluation.
    let mut parts = Vec::new();
    let mut rest = text;
    while let Some(start) = rest.find("{{") {
        if start > 0 {
            parts.push(Tmpl::Lit(Value::String(rest[..start].to_string())));
        }
        let Some(end) = rest[start..].find("}}") else {
            problems.add(site.file, node.pos, path, "unclosed '{{' in text");
            return Tmpl::Lit(Value::Null);
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
        parts.push(Tmpl::Lit(Value::String(rest.to_string())));
    }
    Tmpl::Interp(parts)
}

fn compile_leaf(source: &str, node: &Node, path: &str, site: &mut Site, problems: &mut Problems) -> Tmpl {
    if let Some((name, args)) = expr::partial_call(source) {
        let args = args
            .iter()
            .map(|a| compile_leaf(a, node, path, site, problems))
            .collect();
        return Tmpl::Partial { name, args };
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
    match site.engine.compile(source) {
        Ok(compiled) => {
            let vars = root_names(source);
            Tmpl::Expr {
                source: source.to_string(),
                compiled: Box::new(compiled),
                vars,
            }
        }
        Err(e) => {
            problems.add(site.file, node.pos, path, format!("expression does not compile: {e}"));
            Tmpl::Lit(Value::Null)
        }
    }
}

/// Every name an expression may read as a variable: identifiers outside string literals that do not follow
/// a `.` (a superset: filter and function names too, which no scope binds). minijinja's own
/// `undeclared_variables` misses names inside slices (`r.id[6:]`), so it is not used.
fn root_names(source: &str) -> Vec<String> {
    let bytes = source.as_bytes();
    let (mut out, mut i, mut after_dot) = (Vec::<String>::new(), 0, false);
    while i < bytes.len() {
        let c = bytes[i];
        if c == b'\'' || c == b'"' {
            i += 1;
            while i < bytes.len() && bytes[i] != c {
                i += if bytes[i] == b'\\' { 2 } else { 1 };
            }
            i += 1;
            after_dot = false;
        } else if c.is_ascii_alphabetic() || c == b'_' {
            let start = i;
            while i < bytes.len() && (bytes[i].is_ascii_alphanumeric() || bytes[i] == b'_') {
                i += 1;
            }
            let name = &source[start..i];
            if !after_dot && !out.iter().any(|n| n == name) {
                out.push(name.to_string());
            }
            after_dot = false;
        } else {
            if !c.is_ascii_whitespace() {
                after_dot = c == b'.';
            }
            i += 1;
        }
    }
    out
}

/// Names of the partials a template calls, for linking checks.
pub fn partial_names(tmpl: &Tmpl, out: &mut Vec<String>) {
    match tmpl {
        Tmpl::Partial { name, args } => {
            out.push(name.clone());
            args.iter().for_each(|a| partial_names(a, out));
        }
        Tmpl::Interp(parts) => parts.iter().for_each(|p| partial_names(p, out)),
        Tmpl::Object { cond, fields } => {
            cond.iter().for_each(|c| partial_names(c, out));
            fields.iter().for_each(|(_, f)| partial_names(f, out));
        }
        Tmpl::Array(items) => items.iter().for_each(|item| match item {
            Item::One(t) => partial_names(t, out),
            Item::Each { source, body, .. } => {
                partial_names(source, out);
                partial_names(body, out);
            }
        }),
        Tmpl::Lit(_) | Tmpl::Path(_) | Tmpl::Expr { .. } => {}
    }
}

/// A partial: a named template with parameters.
pub struct Partial {
    pub params: Vec<String>,
    pub body: Tmpl,
}

/// Variables visible to a template while it runs: a chain of bindings, innermost first. Values are
/// converted for the expression engine only when an expression needs them, and then once.
pub struct Scope<'a> {
    name: &'a str,
    value: &'a Value,
    converted: OnceCell<JValue>,
    parent: Option<&'a Scope<'a>>,
}

impl<'a> Scope<'a> {
    pub fn root(name: &'a str, value: &'a Value) -> Scope<'a> {
        Scope {
            name,
            value,
            converted: OnceCell::new(),
            parent: None,
        }
    }

    /// A scope whose variables are the entries of one JSON object (small values: ids, parameters).
    pub fn of_object(object: &'a Value) -> Scope<'a> {
        Scope::root("", object)
    }

    pub fn bind(&'a self, name: &'a str, value: &'a Value) -> Scope<'a> {
        Scope {
            name,
            value,
            converted: OnceCell::new(),
            parent: Some(self),
        }
    }

    fn lookup(&self, name: &str) -> Option<&'a Value> {
        let mut scope = Some(self);
        while let Some(s) = scope {
            if s.name.is_empty() {
                if let Some(v) = s.value.get(name) {
                    return Some(v);
                }
            } else if s.name == name {
                return Some(s.value);
            }
            scope = s.parent;
        }
        None
    }

    /// The engine's context for an expression that reads `vars`: only those variables are converted (a named
    /// binding once per scope, however many expressions read it).
    fn context(&self, vars: &[String]) -> JValue {
        let mut map = BTreeMap::new();
        for name in vars {
            let mut scope = Some(self);
            while let Some(s) = scope {
                if s.name.is_empty() {
                    if let Some(v) = s.value.get(name.as_str()) {
                        map.insert(name.clone(), to_engine(v));
                        break;
                    }
                } else if s.name == name.as_str() {
                    map.insert(name.clone(), s.converted.get_or_init(|| to_engine(s.value)).clone());
                    break;
                }
                scope = s.parent;
            }
        }
        JValue::from(map)
    }
}

/// Converts a JSON value for the expression engine by hand: serde_json is built with `arbitrary_precision`
/// (fhirbolt needs it), which makes its numbers serialise as maps, so a serde round trip would hand the
/// engine maps where the template expects numbers.
pub fn to_engine(value: &Value) -> JValue {
    match value {
        Value::Null => JValue::from(()),
        Value::Bool(b) => JValue::from(*b),
        Value::Number(n) => match (n.as_i64(), n.as_f64()) {
            (Some(i), _) => JValue::from(i),
            (None, Some(f)) => JValue::from(f),
            (None, None) => JValue::from(n.to_string()),
        },
        Value::String(s) => JValue::from(s.as_str()),
        Value::Array(items) => JValue::from(items.iter().map(to_engine).collect::<Vec<_>>()),
        Value::Object(map) => JValue::from(
            map.iter()
                .map(|(k, v)| (k.clone(), to_engine(v)))
                .collect::<BTreeMap<String, JValue>>(),
        ),
    }
}

/// A failure while a template ran (an expression error at run time).
#[derive(Debug, Clone)]
pub struct EvalError(pub String);

/// Runs a template. `None` means "nothing to produce".
pub fn eval(tmpl: &Tmpl, scope: &Scope, partials: &HashMap<String, Partial>) -> Result<Option<Value>, EvalError> {
    Ok(match tmpl {
        Tmpl::Lit(v) => non_empty(v.clone()),
        Tmpl::Path(p) => scope
            .lookup(&p.root)
            .and_then(|v| p.walk(v))
            .cloned()
            .and_then(non_empty),
        Tmpl::Expr { source, compiled, vars } => {
            let value = compiled
                .eval(scope.context(vars))
                .map_err(|e| EvalError(format!("{source}: {e}")))?;
            if value.is_undefined() || value.is_none() {
                None
            } else {
                let json = serde_json::to_value(&value).map_err(|e| EvalError(format!("{source}: {e}")))?;
                non_empty(json)
            }
        }
        Tmpl::Interp(parts) => {
            let mut text = String::new();
            for part in parts {
                match eval(part, scope, partials)? {
                    Some(Value::String(s)) => text.push_str(&s),
                    Some(other) => text.push_str(&other.to_string()),
                    None => {}
                }
            }
            non_empty(Value::String(text))
        }
        Tmpl::Partial { name, args } => {
            let partial = partials
                .get(name)
                .ok_or_else(|| EvalError(format!("unknown partial '{name}'")))?;
            let values: Vec<Value> = args
                .iter()
                .map(|a| eval(a, scope, partials).map(|v| v.unwrap_or(Value::Null)))
                .collect::<Result<_, _>>()?;
            eval_partial(partial, &values, partials)?
        }
        Tmpl::Object { cond, fields } => {
            if let Some(cond) = cond {
                if !truthy(eval(cond, scope, partials)?.as_ref()) {
                    return Ok(None);
                }
            }
            let mut map = Map::with_capacity(fields.len());
            for (key, field) in fields {
                if let Some(value) = eval(field, scope, partials)? {
                    map.insert(key.clone(), value);
                }
            }
            // Every value came from `eval`, so it is clean already: only emptiness is left to check (a deep
            // `non_empty` here would rebuild the whole subtree once per level of nesting).
            (!map.is_empty()).then_some(Value::Object(map))
        }
        Tmpl::Array(items) => {
            let mut out = Vec::new();
            for item in items {
                match item {
                    Item::One(t) => match eval(t, scope, partials)? {
                        // A leaf that yields a list in a list position is spliced in.
                        Some(Value::Array(values)) if !matches!(t, Tmpl::Array(_)) => out.extend(values),
                        Some(v) => out.push(v),
                        None => {}
                    },
                    Item::Each { source, var, body } => {
                        if let Some(list) = eval(source, scope, partials)? {
                            let elements = match list {
                                Value::Array(values) => values,
                                single => vec![single],
                            };
                            for element in &elements {
                                let inner = scope.bind(var, element);
                                if let Some(v) = eval(body, &inner, partials)? {
                                    out.push(v);
                                }
                            }
                        }
                    }
                }
            }
            (!out.is_empty()).then_some(Value::Array(out))
        }
    })
}

fn eval_partial(
    partial: &Partial,
    args: &[Value],
    partials: &HashMap<String, Partial>,
) -> Result<Option<Value>, EvalError> {
    const NULL: Value = Value::Null;
    match partial.params.first() {
        None => eval(&partial.body, &Scope::root("_", &NULL), partials),
        Some(first) => eval_bound(
            partial,
            args,
            1,
            &Scope::root(first, args.first().unwrap_or(&NULL)),
            partials,
        ),
    }
}

/// Binds parameters one by one (each scope borrows the previous), then runs the body.
fn eval_bound(
    partial: &Partial,
    args: &[Value],
    i: usize,
    scope: &Scope,
    partials: &HashMap<String, Partial>,
) -> Result<Option<Value>, EvalError> {
    const NULL: Value = Value::Null;
    match partial.params.get(i) {
        None => eval(&partial.body, scope, partials),
        Some(name) => {
            let inner = scope.bind(name, args.get(i).unwrap_or(&NULL));
            eval_bound(partial, args, i + 1, &inner, partials)
        }
    }
}

fn truthy(value: Option<&Value>) -> bool {
    match value {
        None | Some(Value::Null) | Some(Value::Bool(false)) => false,
        Some(Value::String(s)) => !s.is_empty(),
        Some(Value::Number(n)) => n.as_f64() != Some(0.0),
        Some(_) => true,
    }
}

/// Drops what FHIR forbids, at every depth: nulls, blank strings, empty lists and empty objects. Values from
/// native data and expressions pass through here too, so `"a b".split(...)` on an empty string, or a native
/// list with a null in it, never reaches a resource.
fn non_empty(value: Value) -> Option<Value> {
    match value {
        Value::Null => None,
        Value::String(s) if s.trim().is_empty() => None,
        Value::Array(items) => {
            let kept: Vec<Value> = items.into_iter().filter_map(non_empty).collect();
            (!kept.is_empty()).then_some(Value::Array(kept))
        }
        Value::Object(map) => {
            let kept: Map<String, Value> = map
                .into_iter()
                .filter_map(|(k, v)| non_empty(v).map(|v| (k, v)))
                .collect();
            (!kept.is_empty()).then_some(Value::Object(kept))
        }
        other => Some(other),
    }
}

#[cfg(test)]
mod tests {
    use super::super::concept_map::ConceptMaps;
    use super::super::yaml;
    use super::*;
    use serde_json::json;
    use std::sync::Arc;

    fn run(template: &str, record: Value) -> (Option<Value>, Vec<String>) {
        let engine = Engine::new(Arc::new(ConceptMaps::default()));
        let node = yaml::parse(template).unwrap();
        let mut problems = Problems::default();
        let exists = |_: &str| false;
        let mut site = Site {
            file: "t.yaml",
            engine: &engine,
            vars: vec!["r".into()],
            concept_maps: &exists,
        };
        let tmpl = compile(&node, "template", &mut site, &mut problems);
        let out = eval(&tmpl, &Scope::root("r", &record), &HashMap::new()).unwrap();
        (out, problems.list.iter().map(|p| p.to_string()).collect())
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
            json!({"Sex": "Female", "Dob": "1985-04-12T00:00:00",
            "Surname": "Tester", "First": "Alex", "Previous": ["Smith"], "Phone": null}),
        );
        assert!(problems.is_empty(), "{problems:?}");
        assert_eq!(
            out.unwrap(),
            json!({"resourceType": "Patient", "gender": "female", "birthDate": "1985-04-12",
            "name": [{"family": "Tester", "given": ["Alex"]}, {"use": "old", "family": "Smith"}]})
        );
    }

    #[test]
    fn expressions_read_only_the_names_they_mention() {
        assert_eq!(root_names("r.id[6:]"), ["r"]);
        assert_eq!(
            root_names("reply.x | selectattr('type', 'eq', item.y) | list"),
            ["reply", "selectattr", "item", "list"]
        );
        assert_eq!(
            root_names("translate('m.a', r . b) or \"x\\\"y\""),
            ["translate", "r", "or"]
        );
    }

    #[test]
    fn problems_name_file_line_and_path() {
        let (_, problems) = run(
            "code: \"{{ x.Code }}\"\nbad: \"{{ r.( }}\"\nk: {$unless: 1}\n",
            json!({}),
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
}
