//! What an expression reads, and converting just that for the engine.
//!
//! Converting a whole native record for minijinja costs about as much as mapping it (design.md), while most
//! expressions read one or two fields (`r.Abnormal is defined and r.Abnormal is not none`). So each expression
//! is scanned once, when it is compiled, for the variable paths it reads; when it runs only those are
//! converted: the objects on the way hold just the keys read, and the value at a path's end is converted whole.

use super::node::{Kind, Node};
use crate::tree::{Members, Tree};
use minijinja::Value as JValue;
use std::collections::BTreeMap;

/// The part of a variable an expression reads.
#[derive(Debug, Clone, PartialEq)]
pub enum Need {
    /// Used as a whole: printed, tested, passed to a filter or function, subscripted.
    Whole,
    /// Only these keys are read, by attribute access (`x.key`).
    Keys(Vec<(String, Need)>),
}

impl Need {
    /// Adds the read of the attribute path `steps` below this value.
    fn add(&mut self, steps: &[String]) {
        let Some((first, rest)) = steps.split_first() else {
            *self = Need::Whole;
            return;
        };
        // A value read whole already covers any of its attributes.
        let Need::Keys(keys) = self else { return };
        match keys.iter_mut().find(|(key, _)| key == first) {
            Some((_, need)) => need.add(rest),
            None => {
                let mut need = Need::Keys(Vec::new());
                need.add(rest);
                keys.push((first.clone(), need));
            }
        }
    }

    /// The engine's value for what is read of `value`. `clean` reads it as `non_empty` would leave it: nulls,
    /// blank strings and empty lists and objects are not there.
    pub fn convert(&self, value: Node, clean: bool) -> JValue {
        match self {
            Need::Keys(keys) if value.kind() == Kind::Object => JValue::from(
                keys.iter()
                    .filter_map(|(key, need)| {
                        let child = value.get(key).filter(|c| !(clean && c.is_empty_deep()))?;
                        Some((key.clone(), need.convert(child, clean)))
                    })
                    .collect::<BTreeMap<String, JValue>>(),
            ),
            _ if clean => value.to_engine_clean().unwrap_or(JValue::from(())),
            _ => value.to_engine(),
        }
    }
}

/// The variables an expression reads, each with the part of it read. Names include tests, filters and
/// functions (`defined`, `lower`, `translate`): a superset, harmless since no scope binds them.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Reads(pub Vec<(String, Need)>);

impl Reads {
    /// Scans an expression: identifiers outside string literals that do not follow a `.` are variables, and
    /// the `.key` steps after one are what it reads of it. A path followed by `(` ends before its last step
    /// (a method call uses its receiver whole); one followed by `[` or `|` is used whole anyway. minijinja's
    /// own `undeclared_variables` misses names inside slices (`r.id[6:]`), so it is not used.
    pub fn scan(source: &str) -> Reads {
        let bytes = source.as_bytes();
        let (mut reads, mut i, mut after_dot) = (Reads::default(), 0, false);
        while i < bytes.len() {
            let c = bytes[i];
            if c == b'\'' || c == b'"' {
                i = skip_string(bytes, i);
                after_dot = false;
            } else if is_ident_start(c) {
                let (name, end) = ident(source, i);
                i = end;
                if std::mem::take(&mut after_dot) {
                    continue;
                }
                let mut steps = Vec::new();
                while let Some((key, end)) = attribute(source, i) {
                    steps.push(key.to_string());
                    i = end;
                }
                if bytes.get(skip_ws(bytes, i)) == Some(&b'(') {
                    steps.pop();
                }
                if !KEYWORDS.contains(&name) {
                    reads.add(name, &steps);
                }
            } else {
                if !c.is_ascii_whitespace() {
                    after_dot = c == b'.';
                }
                i += 1;
            }
        }
        reads
    }

    fn add(&mut self, name: &str, steps: &[String]) {
        match self.0.iter_mut().find(|(n, _)| n == name) {
            Some((_, need)) => need.add(steps),
            None => {
                let mut need = Need::Keys(Vec::new());
                need.add(steps);
                self.0.push((name.to_string(), need));
            }
        }
    }

    /// The names read, in order of first appearance.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.0.iter().map(|(name, _)| name.as_str())
    }
}

/// Words that are never variables, so never looked up.
const KEYWORDS: &[&str] = &[
    "and", "or", "not", "if", "else", "is", "in", "none", "None", "true", "false", "True", "False",
];

fn is_ident_start(c: u8) -> bool {
    c.is_ascii_alphabetic() || c == b'_'
}

/// The identifier starting at `start`, and where it ends.
fn ident(source: &str, start: usize) -> (&str, usize) {
    let bytes = source.as_bytes();
    let mut end = start;
    while end < bytes.len() && (bytes[end].is_ascii_alphanumeric() || bytes[end] == b'_') {
        end += 1;
    }
    (&source[start..end], end)
}

/// A `.key` step at `at` (spaces allowed around the dot): the key and where it ends.
fn attribute(source: &str, at: usize) -> Option<(&str, usize)> {
    let bytes = source.as_bytes();
    let dot = skip_ws(bytes, at);
    if bytes.get(dot) != Some(&b'.') {
        return None;
    }
    let start = skip_ws(bytes, dot + 1);
    bytes.get(start).filter(|c| is_ident_start(**c))?;
    Some(ident(source, start))
}

fn skip_ws(bytes: &[u8], mut i: usize) -> usize {
    while i < bytes.len() && bytes[i].is_ascii_whitespace() {
        i += 1;
    }
    i
}

/// The index just after the string literal opening at `start`.
fn skip_string(bytes: &[u8], start: usize) -> usize {
    let quote = bytes[start];
    let mut i = start + 1;
    while i < bytes.len() && bytes[i] != quote {
        i += if bytes[i] == b'\\' { 2 } else { 1 };
    }
    i + 1
}

/// Converts a JSON value for the expression engine (see [`Node::to_engine`]).
pub fn to_engine(value: &Tree) -> JValue {
    Node::Json(value).to_engine()
}

/// The JSON value of an engine value, as `serde_json::to_value` gives it (the same values, keys and order),
/// walking lists and maps directly: through serde each key and item goes through the object's enumerator and
/// a serializer. Numbers and anything unusual (bytes, plain objects, non-string keys) still go through serde.
pub fn from_engine(value: &JValue) -> Result<Tree, serde_json::Error> {
    use minijinja::value::{ObjectRepr, ValueKind};
    match value.kind() {
        ValueKind::Undefined | ValueKind::None => Ok(Tree::Null),
        ValueKind::Bool => Ok(Tree::Bool(value.is_true())),
        ValueKind::String => Ok(Tree::from(value.as_str().unwrap_or_default())),
        ValueKind::Seq | ValueKind::Iterable => {
            if let Some(items) = value.downcast_object_ref::<Vec<JValue>>() {
                return items.iter().map(from_engine).collect::<Result<_, _>>().map(Tree::Array);
            }
            let Some(object) = value.as_object() else {
                return serde_json::to_value(value).map(Tree::from);
            };
            let mut out = Vec::with_capacity(object.enumerator_len().unwrap_or(0));
            if let Some(items) = object.try_iter() {
                for item in items {
                    out.push(from_engine(&item)?);
                }
            }
            Ok(Tree::Array(out))
        }
        ValueKind::Map => {
            if let Some(map) = value.downcast_object_ref::<BTreeMap<String, JValue>>() {
                // A map's keys are distinct.
                let mut out = Members::with_capacity(map.len());
                for (key, item) in map {
                    out.push_new(key.clone().into(), from_engine(item)?);
                }
                return Ok(Tree::Object(out));
            }
            match value.as_object() {
                Some(object) if object.repr() == ObjectRepr::Map => {
                    let mut out = Vec::new();
                    if let Some(pairs) = object.try_iter_pairs() {
                        for (key, item) in pairs {
                            // Keys serde would spell differently (numbers, booleans): the whole map through serde.
                            let Some(key) = key.as_str().filter(|_| key.kind() == ValueKind::String) else {
                                return serde_json::to_value(value).map(Tree::from);
                            };
                            out.push((key.to_string(), from_engine(&item)?));
                        }
                    }
                    Ok(Tree::Object(out.into_iter().collect()))
                }
                _ => serde_json::to_value(value).map(Tree::from),
            }
        }
        _ => serde_json::to_value(value).map(Tree::from),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys(pairs: &[(&str, Need)]) -> Need {
        Need::Keys(pairs.iter().map(|(k, n)| (k.to_string(), n.clone())).collect())
    }

    #[test]
    fn expressions_read_only_the_paths_they_mention() {
        assert_eq!(Reads::scan("r.id[6:]").0, [("r".into(), keys(&[("id", Need::Whole)]))]);
        assert_eq!(
            Reads::scan("reply.x | selectattr('type', 'eq', item.y) | list")
                .names()
                .collect::<Vec<_>>(),
            ["reply", "selectattr", "item", "list"]
        );
        assert_eq!(
            Reads::scan("translate('m.a', r . b) or \"x\\\"y\"")
                .names()
                .collect::<Vec<_>>(),
            ["translate", "r"]
        );
        // Paths merge; a method call uses its receiver whole; a bare name is read whole.
        let reads = Reads::scan("r.A.B ~ r.A.C ~ r.D.upper() ~ r.E is defined ~ c");
        assert_eq!(
            reads.0[0],
            (
                "r".into(),
                keys(&[
                    ("A", keys(&[("B", Need::Whole), ("C", Need::Whole)])),
                    ("D", Need::Whole),
                    ("E", Need::Whole)
                ])
            )
        );
        assert_eq!(
            Reads::scan("r.A.B and r.A").0[0],
            ("r".into(), keys(&[("A", Need::Whole)]))
        );
        assert!(Reads::scan("c").0.contains(&("c".into(), Need::Whole)));
    }

    #[test]
    fn engine_values_come_back_as_serde_gives_them() {
        let engine = crate::mapping::expr::Engine::new(std::sync::Arc::new(Default::default()));
        let record = crate::tree!({ "b": [1, 2.5, "x", null, true, { "z": 1, "a": [] }], "a": { "k": -3 }, "c": "" });
        for source in [
            "r",
            "r.b",
            "r.b | list",
            "{'y': r.a, 'x': [r.c, 1.0, none]}",
            "r.b[5]",
            "range(3)",
            "r.missing",
        ] {
            let value = engine
                .compile(source)
                .unwrap()
                .eval(minijinja::context! { r => to_engine(&record) })
                .unwrap();
            let direct = serde_json::to_string(&from_engine(&value).unwrap()).unwrap();
            let serde = serde_json::to_string(&serde_json::to_value(&value).unwrap()).unwrap();
            assert_eq!(direct, serde, "{source}");
        }
    }

    #[test]
    fn only_what_is_read_is_converted() {
        let record = crate::tree!({ "A": { "B": 1, "C": [1, null] }, "D": null, "E": "x" });
        let need = keys(&[("A", keys(&[("C", Need::Whole)])), ("D", Need::Whole)]);
        assert_eq!(
            need.convert(Node::Json(&record), false).to_string(),
            "{'A': {'C': [1, None]}, 'D': None}"
        );
        assert_eq!(need.convert(Node::Json(&record), true).to_string(), "{'A': {'C': [1]}}");
    }
}
