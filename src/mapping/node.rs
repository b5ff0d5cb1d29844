//! What templates read: a value of a native reply, or a JSON value the translation made, seen alike.
//!
//! Native replies are parsed into sonic-rs's tree ([`Native`]) rather than serde_json's `Value`: it parses
//! them six to seven times faster (one arena per document, no hashing of keys), and parsing was most of
//! the cost of mapping a large record (benches/mapping.rs). The resources a mapping produces are the
//! proxy's own [`Tree`]s (see `crate::tree`), which the rest of the proxy works on; a template copies
//! native leaves into them.
//! Numbers keep their text (`use_rawnumber`), as serde_json's `arbitrary_precision` keeps it, so a native
//! `1.10` reaches the resource as `1.10`.

use crate::tree::{Members, Tree};
use minijinja::Value as JValue;
use sonic_rs::{JsonContainerTrait, JsonType, JsonValueTrait};
use std::collections::BTreeMap;
use std::str::FromStr;

/// A native reply as the mappings read it.
pub type Native = sonic_rs::Value;

/// Parses native JSON, keeping each number's text.
pub fn parse_json(bytes: &[u8]) -> Result<Native, sonic_rs::Error> {
    // sonic-rs checks UTF-8 in `from_slice`, not on this path (which keeps numbers' text): bytes that are
    // not UTF-8 must never be read as strings, so they are refused here, once.
    let text = std::str::from_utf8(bytes)
        .map_err(|e| <sonic_rs::Error as serde::de::Error>::custom(format!("the JSON is not UTF-8: {e}")))?;
    let mut reader = sonic_rs::Deserializer::from_str(text).use_rawnumber();
    let value = reader.deserialize()?;
    reader.end()?;
    Ok(value)
}

/// A JSON value as a native one, parsed as replies are (ordered, numbers keeping their text): golden
/// fixtures, and a binary reply's description.
pub fn to_native(value: &impl serde::Serialize) -> Result<Native, sonic_rs::Error> {
    parse_json(&serde_json::to_vec(value).unwrap_or_default())
}

/// Whether text is empty or only white space (as `str::trim` sees it), quickly for the usual text, which
/// starts with a visible ASCII character.
pub fn is_blank(text: &str) -> bool {
    match text.as_bytes().first() {
        None => true,
        Some(b) if b.is_ascii_graphic() => false,
        Some(_) => text.trim().is_empty(),
    }
}

/// A native number read from its text.
fn parse_number<T: FromStr>(value: &Native) -> Option<T> {
    match value.as_raw_number() {
        Some(raw) => raw.as_str().parse().ok(),
        // Parsed without its text (not by `parse_json`): as sonic-rs prints it.
        None => value.as_number()?.to_string().parse().ok(),
    }
}

/// A value a template reads.
#[derive(Clone, Copy)]
pub enum Node<'v> {
    Native(&'v Native),
    Json(&'v Tree),
    /// A value a template computed: clean already (nothing empty in it, and not empty itself), so it is
    /// copied as it is.
    Clean(&'v Tree),
}

impl<'v> From<&'v Native> for Node<'v> {
    fn from(value: &'v Native) -> Self {
        Node::Native(value)
    }
}

impl<'v> From<&'v Tree> for Node<'v> {
    fn from(value: &'v Tree) -> Self {
        Node::Json(value)
    }
}

/// What kind of value a node is, with a scalar's value.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Kind<'v> {
    Null,
    Bool(bool),
    Number,
    Str(&'v str),
    Array,
    Object,
}

const NULL: Tree = Tree::Null;

impl<'v> Node<'v> {
    /// JSON null, for a variable that is not there.
    pub const NULL: Node<'static> = Node::Json(&NULL);

    pub fn kind(self) -> Kind<'v> {
        match self {
            Node::Json(value) | Node::Clean(value) => match value {
                Tree::Null => Kind::Null,
                Tree::Bool(b) => Kind::Bool(*b),
                Tree::Number(_) => Kind::Number,
                Tree::String(s) => Kind::Str(s),
                Tree::Array(_) => Kind::Array,
                Tree::Object(_) => Kind::Object,
            },
            Node::Native(value) => {
                // Text is the commonest leaf: one look at the value for it.
                if let Some(text) = value.as_str() {
                    return Kind::Str(text);
                }
                match value.get_type() {
                    JsonType::Null => Kind::Null,
                    JsonType::Boolean => Kind::Bool(value.is_true()),
                    JsonType::Number => Kind::Number,
                    JsonType::String => Kind::Str(""),
                    JsonType::Array => Kind::Array,
                    JsonType::Object => Kind::Object,
                }
            }
        }
    }

    /// An object's member. Of a name given twice in a native object, the last counts, as it did when replies
    /// were parsed by serde_json (and as `to_json` keeps it).
    pub fn get(self, key: &str) -> Option<Node<'v>> {
        match self {
            Node::Json(value) => value.get(key).map(Node::Json),
            // What a clean value holds is clean too.
            Node::Clean(value) => value.get(key).map(Node::Clean),
            Node::Native(value) => value
                .as_object()?
                .iter()
                .filter(|(name, _)| *name == key)
                .last()
                .map(|(_, member)| Node::Native(member)),
        }
    }

    /// A list's item.
    pub fn at(self, index: usize) -> Option<Node<'v>> {
        match self {
            Node::Json(value) => value.as_array()?.get(index).map(Node::Json),
            Node::Clean(value) => value.as_array()?.get(index).map(Node::Clean),
            Node::Native(value) => value.as_array()?.as_slice().get(index).map(Node::Native),
        }
    }

    pub fn as_str(self) -> Option<&'v str> {
        match self.kind() {
            Kind::Str(s) => Some(s),
            _ => None,
        }
    }

    pub fn is_null(self) -> bool {
        self.kind() == Kind::Null
    }

    // Numbers are read from their text as serde_json reads its `arbitrary_precision` numbers.
    pub fn as_i64(self) -> Option<i64> {
        match self {
            Node::Json(value) | Node::Clean(value) => value.as_i64(),
            Node::Native(value) => parse_number(value),
        }
    }

    pub fn as_u64(self) -> Option<u64> {
        match self {
            Node::Json(value) | Node::Clean(value) => value.as_u64(),
            Node::Native(value) => parse_number(value),
        }
    }

    pub fn as_f64(self) -> Option<f64> {
        match self {
            Node::Json(value) | Node::Clean(value) => value.as_f64(),
            Node::Native(value) => parse_number::<f64>(value).filter(|f| f.is_finite()),
        }
    }

    /// How many items or members a list or object has (0 for anything else).
    pub fn size(self) -> usize {
        match self {
            Node::Json(value) | Node::Clean(value) => match value {
                Tree::Array(items) => items.len(),
                Tree::Object(map) => map.len(),
                _ => 0,
            },
            Node::Native(value) => match (value.as_array(), value.as_object()) {
                (Some(items), _) => items.len(),
                (_, Some(object)) => object.len(),
                _ => 0,
            },
        }
    }

    /// A list's items (nothing for anything else).
    pub fn items(self) -> Items<'v> {
        match self {
            Node::Json(Tree::Array(items)) => Items::Json(items.iter(), false),
            Node::Clean(Tree::Array(items)) => Items::Json(items.iter(), true),
            Node::Native(value) => match value.as_array() {
                Some(items) => Items::Native(items.as_slice().iter()),
                None => Items::Json([].iter(), false),
            },
            Node::Json(_) | Node::Clean(_) => Items::Json([].iter(), false),
        }
    }

    /// An object's members in order (nothing for anything else).
    pub fn entries(self) -> Entries<'v> {
        match self {
            Node::Json(Tree::Object(map)) => Entries::Json(Some(map.iter()), false),
            Node::Clean(Tree::Object(map)) => Entries::Json(Some(map.iter()), true),
            Node::Native(value) => match value.as_object() {
                Some(object) => Entries::Native(object.iter()),
                None => Entries::Json(None, false),
            },
            Node::Json(_) | Node::Clean(_) => Entries::Json(None, false),
        }
    }

    /// Whether the expression engine finds the value true: none, false, zero and empty text, lists and maps
    /// are false.
    pub fn is_true(self) -> bool {
        match self.kind() {
            Kind::Null => false,
            Kind::Bool(b) => b,
            Kind::Number => self.as_f64().is_some_and(|f| f != 0.0),
            Kind::Str(s) => !s.is_empty(),
            Kind::Array => self.items().next().is_some(),
            Kind::Object => self.entries().next().is_some(),
        }
    }

    /// Whether nothing would be left of it once nulls, blank strings and empty lists and objects are
    /// dropped at every depth (see `template::non_empty`).
    pub fn is_empty_deep(self) -> bool {
        if let Node::Clean(_) = self {
            return false;
        }
        match self.kind() {
            Kind::Null => true,
            Kind::Str(s) => is_blank(s),
            Kind::Array => self.items().all(Node::is_empty_deep),
            Kind::Object => self.entries().all(|(_, v)| v.is_empty_deep()),
            Kind::Bool(_) | Kind::Number => false,
        }
    }

    /// A JSON copy of the value.
    pub fn to_json(self) -> Tree {
        match self {
            Node::Json(value) | Node::Clean(value) => value.clone(),
            Node::Native(_) => match self.kind() {
                Kind::Null => Tree::Null,
                Kind::Bool(b) => Tree::Bool(b),
                Kind::Number => self.number(),
                Kind::Str(s) => Tree::from(s),
                Kind::Array => Tree::Array(self.items().map(Node::to_json).collect()),
                // A name given twice keeps its first place and its last value (`Members::extend`).
                Kind::Object => Tree::Object(
                    self.entries()
                        .map(|(key, item)| (key.to_string(), item.to_json()))
                        .collect(),
                ),
            },
        }
    }

    /// A JSON copy of what is left of the value once nulls, blank strings and empty lists and objects are
    /// dropped at every depth; `None` when nothing is.
    pub fn to_json_clean(self) -> Option<Tree> {
        if let Node::Clean(value) = self {
            return Some(value.clone());
        }
        match self.kind() {
            Kind::Null => None,
            Kind::Bool(b) => Some(Tree::Bool(b)),
            Kind::Number => Some(self.number()),
            Kind::Str(s) => (!is_blank(s)).then(|| Tree::from(s)),
            Kind::Array => {
                let items = self.items();
                let mut out = Vec::with_capacity(items.size_hint().0);
                out.extend(items.filter_map(Node::to_json_clean));
                (!out.is_empty()).then_some(Tree::Array(out))
            }
            Kind::Object => {
                let map: Members = self
                    .entries()
                    .filter_map(|(key, item)| Some((key.to_string(), item.to_json_clean()?)))
                    .collect();
                (!map.is_empty()).then_some(Tree::Object(map))
            }
        }
    }

    /// A number as serde_json holds it: its text, when the parser kept it.
    fn number(self) -> Tree {
        let number = match self {
            Node::Json(Tree::Number(n)) | Node::Clean(Tree::Number(n)) => Some(n.clone()),
            Node::Json(_) | Node::Clean(_) => None,
            Node::Native(value) => match value.as_raw_number() {
                Some(raw) => serde_json::Number::from_str(raw.as_str()).ok(),
                None => value
                    .as_u64()
                    .map(serde_json::Number::from)
                    .or_else(|| value.as_i64().map(serde_json::Number::from))
                    .or_else(|| value.as_f64().and_then(serde_json::Number::from_f64)),
            },
        };
        number.map_or(Tree::Null, Tree::Number)
    }

    /// The value for the expression engine. serde_json is built with `arbitrary_precision` (fhirbolt needs
    /// it), which makes its numbers serialise as maps, so values are converted by hand rather than through
    /// serde: the engine gets an integer when the number is one, else a float.
    pub fn to_engine(self) -> JValue {
        match self.kind() {
            Kind::Null => JValue::from(()),
            Kind::Bool(b) => JValue::from(b),
            Kind::Number => match (self.as_i64(), self.as_f64()) {
                (Some(i), _) => JValue::from(i),
                (None, Some(f)) => JValue::from(f),
                (None, None) => JValue::from(self.number().to_string()),
            },
            Kind::Str(s) => JValue::from(s),
            Kind::Array => JValue::from(self.items().map(Node::to_engine).collect::<Vec<_>>()),
            Kind::Object => JValue::from(
                self.entries()
                    .map(|(k, v)| (k.to_string(), v.to_engine()))
                    .collect::<BTreeMap<String, JValue>>(),
            ),
        }
    }

    /// As [`Node::to_engine`] of what [`Node::to_json_clean`] would leave (None: nothing), without that copy.
    pub fn to_engine_clean(self) -> Option<JValue> {
        match self.kind() {
            Kind::Null => None,
            Kind::Str(s) if is_blank(s) => None,
            Kind::Array => {
                let items: Vec<JValue> = self.items().filter_map(Node::to_engine_clean).collect();
                (!items.is_empty()).then(|| JValue::from(items))
            }
            Kind::Object => {
                let map: BTreeMap<String, JValue> = self
                    .entries()
                    .filter_map(|(k, v)| Some((k.to_string(), v.to_engine_clean()?)))
                    .collect();
                (!map.is_empty()).then(|| JValue::from(map))
            }
            _ => Some(self.to_engine()),
        }
    }
}

/// A list's items.
pub enum Items<'v> {
    Native(std::slice::Iter<'v, Native>),
    /// JSON items, and whether they are clean.
    Json(std::slice::Iter<'v, Tree>, bool),
}

impl<'v> Iterator for Items<'v> {
    type Item = Node<'v>;

    fn next(&mut self) -> Option<Node<'v>> {
        match self {
            Items::Native(items) => items.next().map(Node::Native),
            Items::Json(items, false) => items.next().map(Node::Json),
            Items::Json(items, true) => items.next().map(Node::Clean),
        }
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        match self {
            Items::Native(items) => items.size_hint(),
            Items::Json(items, _) => items.size_hint(),
        }
    }
}

/// An object's members.
pub enum Entries<'v> {
    Native(sonic_rs::value::object::Iter<'v>),
    /// JSON members, and whether they are clean.
    Json(Option<crate::tree::Iter<'v>>, bool),
}

impl<'v> Iterator for Entries<'v> {
    type Item = (&'v str, Node<'v>);

    fn next(&mut self) -> Option<(&'v str, Node<'v>)> {
        match self {
            Entries::Native(members) => members.next().map(|(k, v)| (k, Node::Native(v))),
            Entries::Json(members, clean) => {
                let (key, value) = members.as_mut()?.next()?;
                Some((key, if *clean { Node::Clean(value) } else { Node::Json(value) }))
            }
        }
    }
}

/// A value read in place, or one a template computed (clean: see [`Node::Clean`]).
pub enum Held<'v> {
    Borrowed(Node<'v>),
    Owned(Tree),
}

impl<'v> Held<'v> {
    pub fn node(&self) -> Node<'_> {
        match self {
            Held::Borrowed(node) => *node,
            Held::Owned(value) => Node::Clean(value),
        }
    }

    /// The value as JSON (a copy of a borrowed one).
    pub fn into_json(self) -> Tree {
        match self {
            Held::Borrowed(node) => node.to_json(),
            Held::Owned(value) => value,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_that_is_not_utf8_is_refused() {
        for bytes in [&b"{\"a\":\"\xff\"}"[..], b"{\"\xc3\":1}", b"[\"a\\n\xc3\"]"] {
            assert!(parse_json(bytes).is_err(), "{bytes:?}");
        }
        assert_eq!(
            parse_json("[\"\u{a3}\"]".as_bytes()).unwrap()[0].as_str(),
            Some("\u{a3}")
        );
    }

    #[test]
    fn native_and_json_read_alike() {
        let text = r#"{"a": [1, 2.50, "x", null, true, {"k": " ", "l": []}], "b": {"c": "d"}, "n": 1.10, "e": ""}"#;
        let native = parse_json(text.as_bytes()).unwrap();
        let json = Tree::from(serde_json::from_str::<serde_json::Value>(text).unwrap());
        let (n, j) = (Node::Native(&native), Node::Json(&json));
        assert_eq!(n.to_json(), json);
        assert_eq!(n.to_json_clean(), j.to_json_clean());
        assert_eq!(
            serde_json::to_string(&n.to_json_clean().unwrap()).unwrap(),
            r#"{"a":[1,2.50,"x",true],"b":{"c":"d"},"n":1.10}"#
        );
        // Numbers keep their text.
        assert_eq!(serde_json::to_string(&n.get("n").unwrap().to_json()).unwrap(), "1.10");
        assert_eq!(n.get("a").unwrap().at(1).unwrap().as_f64(), Some(2.5));
        assert_eq!(n.get("b").unwrap().get("c").unwrap().as_str(), Some("d"));
        assert!(n.get("a").unwrap().at(5).unwrap().is_empty_deep());
        assert!(!n.is_empty_deep());
        assert_eq!(n.to_engine().to_string(), j.to_engine().to_string());
        assert_eq!(
            n.to_engine_clean().unwrap().to_string(),
            j.to_engine_clean().unwrap().to_string()
        );
        assert_eq!(Node::Native(&to_native(&json).unwrap()).to_json(), json);
        assert!(parse_json(b"{\"a\": 1} trailing").is_err());
    }

    #[test]
    fn a_name_given_twice_counts_once_the_last() {
        let native = parse_json(br#"{"a": 1, "b": "x", "a": 2}"#).unwrap();
        let node = Node::Native(&native);
        assert_eq!(node.get("a").and_then(Node::as_i64), Some(2));
        assert_eq!(node.to_json(), crate::tree!({"a": 2, "b": "x"}));
    }

    #[test]
    fn deep_replies_are_refused_without_exhausting_the_stack() {
        // A runtime worker's stack (2 MiB): the parser's own depth limit comes first.
        let parse = |depth: usize| {
            std::thread::Builder::new()
                .stack_size(2 << 20)
                .spawn(move || parse_json(format!("{}{}", "[".repeat(depth), "]".repeat(depth)).as_bytes()).is_ok())
                .unwrap()
                .join()
                .unwrap()
        };
        assert!(parse(200));
        assert!(!parse(10_000));
    }
}
