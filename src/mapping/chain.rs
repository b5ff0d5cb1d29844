//! Selections run without the engine: a `select` that picks records out of a native reply with a chain of the
//! engine's list filters,
//!
//! ```text
//! (reply.Event or []) | map(attribute='Item') | flatten | selectattr('type', 'equalto', 'Measurement') | list
//! [reply.journal | selectattr('type', 'eq', 'observation') | list, ...] | flatten | flatten
//! ```
//!
//! is also compiled to a [`Chain`], which gives the records borrowed from the reply. Through the engine the
//! whole list would be converted to its values and the records back to JSON, which cost more than mapping
//! them. The chain follows the engine's rules (see the tests); where a value is one whose handling could
//! differ (a list where a map is expected, a missing source), it gives up and the engine runs the select.
//! One difference is deliberate: an element without the attribute `map(attribute=...)` reads gives nothing,
//! where the engine fails the whole select once `selectattr` reads that nothing (a SystmOne event with no
//! items is no fault).

use super::call::{call_parts, literal, plain_path, split_all_top, split_top};
use super::expr::{self, Path};
use super::node::{Kind, Node};
use super::template::Scope;

/// A compiled selection.
pub struct Chain {
    source: Source,
    filters: Vec<Filter>,
}

enum Source {
    Path(Path),
    /// `(path or [])`
    PathOrEmpty(Path),
    /// `[chain, chain, ...]`
    List(Vec<Chain>),
}

enum Filter {
    /// `map(attribute='name')`
    Attribute(String),
    Flatten,
    /// `selectattr('name', 'equalto' | 'eq', 'text' | path)`
    SelectAttr {
        name: String,
        equals: Operand,
    },
    /// `list`: the values are a list already.
    List,
}

enum Operand {
    Text(String),
    Path(Path),
}

/// One value of a list as the engine holds it.
enum Item<'v> {
    Value(Node<'v>),
    Undefined,
    List(Vec<Item<'v>>),
}

impl Chain {
    /// The chain `source` is, when it is one this module runs.
    pub fn compile(source: &str) -> Option<Chain> {
        let mut parts = split_all_top(source, " | ").into_iter();
        let head = parts.next()?.trim();
        let source = if let Some(inner) = head.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
            Source::List(
                expr::split_args(inner)
                    .iter()
                    .map(|c| Chain::compile(c))
                    .collect::<Option<_>>()?,
            )
        } else if let Some(inner) = head.strip_prefix('(').and_then(|h| h.strip_suffix(')')) {
            match split_top(inner, " or ")? {
                (path, "[]") => Source::PathOrEmpty(plain_path(path)?),
                _ => return None,
            }
        } else {
            Source::Path(plain_path(head)?)
        };
        let filters = parts.map(Filter::compile).collect::<Option<Vec<_>>>()?;
        // A lone path is a plain path, read as such elsewhere.
        (!filters.is_empty() || matches!(source, Source::List(_))).then_some(Chain { source, filters })
    }

    /// The records the selection gives, borrowed from the scope's values; `None` to leave it to the engine.
    pub fn records<'v>(&self, scope: &Scope<'_, 'v>) -> Option<Vec<Node<'v>>> {
        let mut records = Vec::new();
        for item in self.eval(scope)? {
            match item {
                // The engine's answer passes through `non_empty`, which leaves no empty record.
                Item::Value(value) if value.is_empty_deep() => {}
                Item::Value(value) => records.push(value),
                // The engine gives none for it, which is no record.
                Item::Undefined => {}
                Item::List(_) => return None,
            }
        }
        Some(records)
    }

    fn eval<'v>(&self, scope: &Scope<'_, 'v>) -> Option<Vec<Item<'v>>> {
        let mut items = match &self.source {
            Source::Path(path) => match scope.walk(path)?.0 {
                list if list.kind() == Kind::Array => list.items().map(Item::Value).collect(),
                _ => return None,
            },
            Source::PathOrEmpty(path) => match scope.walk(path).map(|(v, _)| (v, v.kind())) {
                None | Some((_, Kind::Null)) => Vec::new(),
                Some((list, Kind::Array)) => list.items().map(Item::Value).collect(),
                Some(_) => return None,
            },
            Source::List(chains) => chains
                .iter()
                .map(|c| c.eval(scope).map(Item::List))
                .collect::<Option<_>>()?,
        };
        for filter in &self.filters {
            items = filter.apply(items, scope)?;
        }
        Some(items)
    }
}

impl Filter {
    fn compile(source: &str) -> Option<Filter> {
        let source = source.trim();
        match source {
            "flatten" => return Some(Filter::Flatten),
            "list" => return Some(Filter::List),
            _ => {}
        }
        let (name, inner) = call_parts(source)?;
        let args = expr::split_args(inner);
        match (name, args.as_slice()) {
            ("map", [arg]) => attribute(literal(arg.trim().strip_prefix("attribute=")?)?).map(Filter::Attribute),
            ("selectattr", [name, test, operand]) => {
                let name = attribute(literal(name)?)?;
                if !matches!(literal(test)?.as_str(), "equalto" | "eq") {
                    return None;
                }
                let equals = match literal(operand) {
                    Some(text) => Operand::Text(text),
                    None => Operand::Path(plain_path(operand)?),
                };
                Some(Filter::SelectAttr { name, equals })
            }
            _ => None,
        }
    }
}

/// An attribute name read as a key. The engine reads `a.b` as a path and `0` as an index: those are its own.
fn attribute(name: String) -> Option<String> {
    (!name.contains('.') && !name.bytes().all(|b| b.is_ascii_digit())).then_some(name)
}

impl Filter {
    fn apply<'v>(&self, items: Vec<Item<'v>>, scope: &Scope<'_, 'v>) -> Option<Vec<Item<'v>>> {
        Some(match self {
            Filter::List => items,
            Filter::Attribute(name) => items
                .into_iter()
                .map(|item| match item {
                    Item::Value(value) => match value.kind() {
                        Kind::Object => Some(value.get(name).map_or(Item::Undefined, Item::Value)),
                        Kind::Array => None,
                        _ => Some(Item::Undefined),
                    },
                    Item::List(_) | Item::Undefined => None,
                })
                .collect::<Option<_>>()?,
            Filter::Flatten => {
                let mut out = Vec::with_capacity(items.len());
                for item in items {
                    match item {
                        Item::Value(list) if list.kind() == Kind::Array => out.extend(list.items().map(Item::Value)),
                        Item::List(inner) => out.extend(inner),
                        other => out.push(other),
                    }
                }
                out
            }
            Filter::SelectAttr { name, equals } => {
                let wanted: &str = match equals {
                    Operand::Text(text) => text,
                    Operand::Path(path) => scope.walk(path)?.0.as_str()?,
                };
                let mut out = Vec::with_capacity(items.len());
                for item in items {
                    match item {
                        Item::Value(value) => match value.kind() {
                            Kind::Object if value.get(name).and_then(Node::as_str) == Some(wanted) => out.push(item),
                            Kind::Array => return None,
                            _ => {}
                        },
                        Item::List(_) => return None,
                        Item::Undefined => {}
                    }
                }
                out
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::super::concept_map::ConceptMaps;
    use super::super::context::{from_engine, Reads};
    use super::super::expr::Engine;
    use super::super::template::non_empty;
    use super::*;
    use crate::tree::Tree;
    use std::sync::Arc;

    #[test]
    fn selections_give_what_the_engine_gives() {
        let engine = Engine::new(Arc::new(ConceptMaps::default()));
        let reply = crate::tree!({
            "Event": [
                { "eventType": "Consultation", "Item": [{ "type": "Measurement", "id": "1" }, { "type": "Problem", "id": "2" }] },
                { "eventType": "Note", "Item": { "type": "Measurement", "id": "3" } },
                { "eventType": "Consultation", "Item": [] },
                { "eventType": "Other", "Item": [{ "type": "Measurement", "id": "4", "n": null }, "text", 7] }
            ],
            "journal": [
                { "type": "observation", "id": "o1" },
                { "type": "investigation-report", "id": "r1", "results": [{ "id": "x1" }, { "id": "x2" }] },
                { "type": "investigation-report", "id": "r2", "results": [] },
                { "type": "investigation-report", "id": "r3", "results": [null, { "id": "" }] },
                { "type": "observation", "id": "o2", "note": "" },
                { "id": "no-type" }
            ],
            "people": [{ "patientId": "p1" }, { "patientId": "p2" }],
            "empty": []
        });
        let vars = crate::tree!({ "reply": reply, "patient": { "native": "p2" } });
        let selections = [
            "(reply.Event or []) | map(attribute='Item') | flatten | selectattr('type', 'equalto', 'Measurement') | list",
            "(reply.Event or []) | selectattr('eventType', 'equalto', 'Consultation') | list",
            "(reply.Missing or []) | map(attribute='Item') | flatten | list",
            "(reply.empty or []) | selectattr('a', 'eq', 'b') | list",
            "[reply.journal | selectattr('type', 'eq', 'observation') | list, reply.journal | selectattr('type', 'eq', 'investigation-report') | map(attribute='results') | list] | flatten | flatten",
            "reply.people | selectattr('patientId', 'equalto', patient.native) | list",
            "reply.journal | map(attribute='type') | list",
        ];
        for source in selections {
            let chain = Chain::compile(source).unwrap_or_else(|| panic!("not compiled: {source}"));
            // Records are read clean (`Scope::bind_clean`): compared as `non_empty` leaves them.
            let records = |scope: &Scope, what: &str| -> Vec<Tree> {
                chain
                    .records(scope)
                    .unwrap_or_else(|| panic!("gave up on {what}: {source}"))
                    .into_iter()
                    .filter_map(|r| r.to_json_clean())
                    .collect()
            };
            let direct = records(&Scope::of_object(&vars), "JSON");
            // The same from the reply as native data, parsed as replies are.
            let native = crate::mapping::node::to_native(&vars["reply"]).unwrap();
            let others = crate::tree!({ "patient": vars["patient"] });
            let base = Scope::of_object(&others);
            let from_native = records(&base.bind("reply", &native), "native data");
            assert_eq!(direct, from_native, "{source}");
            let reads = Reads::scan(source);
            let context: std::collections::BTreeMap<String, minijinja::Value> = reads
                .0
                .iter()
                .map(|(name, need)| (name.clone(), need.convert(Node::Json(&vars[name.as_str()]), false)))
                .collect();
            let value = engine
                .compile(source)
                .unwrap()
                .eval(minijinja::Value::from(context))
                .unwrap_or_else(|e| panic!("{source}: {e}"));
            // The engine's answer as the template gives it: through `non_empty`.
            let engine_says = match non_empty(from_engine(&value).unwrap()) {
                Some(Tree::Array(items)) => items,
                None => Vec::new(),
                Some(other) => panic!("{source}: {other}"),
            };
            assert_eq!(direct, engine_says, "{source}");
        }
    }

    #[test]
    fn only_chains_of_known_filters_are_compiled() {
        assert!(Chain::compile("reply.Event").is_none());
        assert!(Chain::compile("reply.Event | sort | list").is_none());
        assert!(Chain::compile("reply.Event | selectattr('a', 'ne', 'b') | list").is_none());
        assert!(Chain::compile("(reply.Event or reply.Other) | list").is_none());
        assert!(Chain::compile("{'a': reply.x} if reply.x").is_none());
        // Dotted and numeric attributes are paths and indexes to the engine.
        assert!(Chain::compile("reply.journal | map(attribute='file.id') | list").is_none());
        assert!(Chain::compile("reply.journal | selectattr('0', 'eq', 'x') | list").is_none());
        // An element without the attribute `map` reads is no record (the engine fails the select there).
        let vars = crate::tree!({ "reply": { "Event": [{ "id": "e1" }, { "Item": [{ "type": "x", "id": "i1" }] }] } });
        let chain =
            Chain::compile("reply.Event | map(attribute='Item') | flatten | selectattr('type', 'eq', 'x') | list");
        let records = chain.unwrap().records(&Scope::of_object(&vars)).unwrap();
        let records: Vec<Tree> = records.into_iter().map(Node::to_json).collect();
        assert_eq!(records, vec![crate::tree!({ "type": "x", "id": "i1" })]);
        // A map where a list is expected is the engine's to handle.
        let vars = crate::tree!({ "reply": { "Event": { "type": "x" } } });
        let chain = Chain::compile("reply.Event | selectattr('type', 'eq', 'x') | list").unwrap();
        assert!(chain.records(&Scope::of_object(&vars)).is_none());
    }
}
