//! The JSON tree resources are built in and served from: serde_json's `Value` without its per-object hash
//! index. A translated resource is built member by member and then read a few times (search filters, sort
//! keys, references) and serialised once; serde_json's objects hash every key with SipHash and allocate it,
//! which cost a third of a translation. Here an object is its members in order, and the keys a mapping file
//! writes are shared (`Key::Borrowed`, interned when the mapping is compiled) rather than allocated per
//! resource, as is the literal text it writes (`Tree::shared`: code systems' URLs, fixed codes). A resource's objects are small (a FHIR element has a handful of members), so a member is found
//! by walking them; objects copied whole from a native reply can be large, so adding many members at once
//! (`extend`, `collect`) takes linear time, a name given twice keeping its first place and last value.
//!
//! The variants are named as serde_json's are, so code that matches on a value reads the same. Equality is
//! serde_json's: objects compare as maps, whatever their order.

use serde::ser::{SerializeMap, SerializeSeq};
use serde_json::Number;
use std::borrow::Cow;
use std::collections::HashSet;
use std::fmt;
use std::sync::{Mutex, OnceLock};

/// A tree written as JSON, as serde_json's `json!` writes a value (the tests' shorthand).
#[cfg(test)]
#[macro_export]
macro_rules! tree {
    ($($json:tt)+) => {
        $crate::tree::Tree::from(serde_json::json!($($json)+))
    };
}

/// A JSON value.
#[derive(Clone, Debug, Default)]
// A whole word for the tag, so every payload is word-aligned: with a one-byte tag a `bool` sits at byte 1,
// and the values a template passes up were copied with misaligned loads that stalled on the stores before
// them (a sixth of a translation's time, measured with benches/mapping.rs).
#[repr(u64)]
pub enum Tree {
    #[default]
    Null,
    Bool(bool),
    Number(Number),
    /// Text: shared when a mapping file wrote it (`Text::Borrowed`, interned), owned otherwise.
    String(Text),
    Array(Vec<Tree>),
    Object(Members),
}

/// An object member's name: shared when a mapping file wrote it, owned when it came from elsewhere.
pub type Key = Cow<'static, str>;

/// A text value: shared when a mapping file wrote it (a code system's URL, a fixed code), owned otherwise.
pub type Text = Cow<'static, str>;

/// Shares a member name for the life of the process. Only names written in mapping files and in this
/// proxy's code come here (a bounded set: FHIR element names); names from requests and replies never do.
pub fn intern(name: &str) -> &'static str {
    static NAMES: OnceLock<Mutex<HashSet<&'static str>>> = OnceLock::new();
    let mut names = NAMES
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    match names.get(name) {
        Some(shared) => shared,
        None => {
            let shared: &'static str = Box::leak(name.to_owned().into_boxed_str());
            names.insert(shared);
            shared
        }
    }
}

/// An object: its members in the order they were added. A name appears once.
#[derive(Clone, Default)]
pub struct Members(Vec<(Key, Tree)>);

static NULL: Tree = Tree::Null;

impl Members {
    pub fn new() -> Members {
        Members(Vec::new())
    }

    pub fn with_capacity(capacity: usize) -> Members {
        Members(Vec::with_capacity(capacity))
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    fn position(&self, key: &str) -> Option<usize> {
        self.0.iter().position(|(k, _)| k == key)
    }

    pub fn get(&self, key: &str) -> Option<&Tree> {
        self.0.iter().find(|(k, _)| k == key).map(|(_, v)| v)
    }

    pub fn get_mut(&mut self, key: &str) -> Option<&mut Tree> {
        self.0.iter_mut().find(|(k, _)| k == key).map(|(_, v)| v)
    }

    pub fn contains_key(&self, key: &str) -> bool {
        self.position(key).is_some()
    }

    /// Sets a member, in its place if the object has it already (at the end if not); gives the old value.
    pub fn insert(&mut self, key: impl Into<Key>, value: Tree) -> Option<Tree> {
        let key = key.into();
        match self.position(&key) {
            Some(at) => Some(std::mem::replace(&mut self.0[at].1, value)),
            None => {
                self.0.push((key, value));
                None
            }
        }
    }

    /// Adds a member the object cannot have yet (a template's fields are distinct by construction): no
    /// search for it first.
    pub fn push_new(&mut self, key: Key, value: Tree) {
        debug_assert!(!self.contains_key(&key), "member '{key}' added twice");
        self.0.push((key, value));
    }

    /// Removes a member, keeping the others in order.
    pub fn remove(&mut self, key: &str) -> Option<Tree> {
        self.position(key).map(|at| self.0.remove(at).1)
    }

    pub fn retain(&mut self, mut keep: impl FnMut(&str, &mut Tree) -> bool) {
        self.0.retain_mut(|(k, v)| keep(k, v));
    }

    pub fn iter(&self) -> Iter<'_> {
        Iter(self.0.iter())
    }

    pub fn iter_mut(&mut self) -> impl Iterator<Item = (&str, &mut Tree)> {
        self.0.iter_mut().map(|(k, v)| (&**k, v))
    }

    pub fn keys(&self) -> impl Iterator<Item = &str> {
        self.0.iter().map(|(k, _)| k.as_ref())
    }

    pub fn values(&self) -> impl Iterator<Item = &Tree> {
        self.0.iter().map(|(_, v)| v)
    }

    /// The member, added as `make` gives it if the object lacks it.
    pub fn entry_or_insert_with(&mut self, key: impl Into<Key>, make: impl FnOnce() -> Tree) -> &mut Tree {
        let key = key.into();
        let at = match self.position(&key) {
            Some(at) => at,
            None => {
                self.0.push((key, make()));
                self.0.len() - 1
            }
        };
        &mut self.0[at].1
    }
}

/// An object's members in order, by name and value.
#[derive(Clone)]
pub struct Iter<'a>(std::slice::Iter<'a, (Key, Tree)>);

impl<'a> Iterator for Iter<'a> {
    type Item = (&'a str, &'a Tree);
    fn next(&mut self) -> Option<Self::Item> {
        self.0.next().map(|(k, v)| (&**k, v))
    }
    fn size_hint(&self) -> (usize, Option<usize>) {
        self.0.size_hint()
    }
}

impl DoubleEndedIterator for Iter<'_> {
    fn next_back(&mut self) -> Option<Self::Item> {
        self.0.next_back().map(|(k, v)| (&**k, v))
    }
}

impl ExactSizeIterator for Iter<'_> {}

impl<'a> IntoIterator for &'a Members {
    type Item = (&'a str, &'a Tree);
    type IntoIter = Iter<'a>;
    fn into_iter(self) -> Iter<'a> {
        self.iter()
    }
}

impl IntoIterator for Members {
    type Item = (Key, Tree);
    type IntoIter = std::vec::IntoIter<(Key, Tree)>;
    fn into_iter(self) -> Self::IntoIter {
        self.0.into_iter()
    }
}

impl<K: Into<Key>> FromIterator<(K, Tree)> for Members {
    fn from_iter<I: IntoIterator<Item = (K, Tree)>>(iter: I) -> Members {
        let mut members = Members::new();
        members.extend(iter);
        members
    }
}

impl<K: Into<Key>> Extend<(K, Tree)> for Members {
    /// Adds members as `insert` would one by one (a name given again keeps its place and takes the later
    /// value), in time linear in their number: a native object copied whole may have thousands.
    fn extend<I: IntoIterator<Item = (K, Tree)>>(&mut self, iter: I) {
        let before = self.0.len();
        self.0.extend(iter.into_iter().map(|(k, v)| (k.into(), v)));
        if self.0.len() > before {
            self.keep_names_once();
        }
    }
}

impl Members {
    /// Merges the members of a name given more than once into its first place, with its last value.
    fn keep_names_once(&mut self) {
        // Small objects (nearly all) are checked pairwise; larger ones through a map of first places.
        const SMALL: usize = 16;
        let mut later: Vec<(usize, usize)> = Vec::new();
        if self.0.len() <= SMALL {
            for i in 1..self.0.len() {
                if let Some(first) = self.0[..i].iter().position(|(k, _)| *k == self.0[i].0) {
                    later.push((i, first));
                }
            }
        } else {
            let mut first = std::collections::HashMap::with_capacity(self.0.len());
            for (i, (k, _)) in self.0.iter().enumerate() {
                if let Some(&at) = first.get(k.as_ref()) {
                    later.push((i, at));
                } else {
                    first.insert(k.as_ref(), i);
                }
            }
        }
        if later.is_empty() {
            return;
        }
        for &(i, first) in &later {
            let value = std::mem::take(&mut self.0[i].1);
            self.0[first].1 = value;
        }
        let mut dropped = later.iter().map(|&(i, _)| i).peekable();
        let mut index = 0;
        self.0.retain(|_| {
            let keep = dropped.next_if_eq(&index).is_none();
            index += 1;
            keep
        });
    }
}

impl PartialEq for Members {
    /// As maps: the same names with equal values, in any order.
    fn eq(&self, other: &Members) -> bool {
        self.len() == other.len() && self.iter().all(|(k, v)| other.get(k) == Some(v))
    }
}

impl Eq for Members {}

impl Eq for Tree {}

impl fmt::Debug for Members {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map().entries(self.iter()).finish()
    }
}

impl PartialEq for Tree {
    fn eq(&self, other: &Tree) -> bool {
        match (self, other) {
            (Tree::Null, Tree::Null) => true,
            (Tree::Bool(a), Tree::Bool(b)) => a == b,
            (Tree::Number(a), Tree::Number(b)) => a == b,
            (Tree::String(a), Tree::String(b)) => a == b,
            (Tree::Array(a), Tree::Array(b)) => a == b,
            (Tree::Object(a), Tree::Object(b)) => a == b,
            _ => false,
        }
    }
}

/// What a value can be looked into by: a member's name or a list's index, as serde_json's `get` takes.
pub trait Lookup {
    fn find<'v>(&self, tree: &'v Tree) -> Option<&'v Tree>;
    fn find_mut<'v>(&self, tree: &'v mut Tree) -> Option<&'v mut Tree>;
}

impl Lookup for str {
    fn find<'v>(&self, tree: &'v Tree) -> Option<&'v Tree> {
        tree.as_object().and_then(|members| members.get(self))
    }
    fn find_mut<'v>(&self, tree: &'v mut Tree) -> Option<&'v mut Tree> {
        tree.as_object_mut().and_then(|members| members.get_mut(self))
    }
}

impl Lookup for String {
    fn find<'v>(&self, tree: &'v Tree) -> Option<&'v Tree> {
        Lookup::find(self.as_str(), tree)
    }
    fn find_mut<'v>(&self, tree: &'v mut Tree) -> Option<&'v mut Tree> {
        Lookup::find_mut(self.as_str(), tree)
    }
}

impl Lookup for usize {
    fn find<'v>(&self, tree: &'v Tree) -> Option<&'v Tree> {
        tree.as_array().and_then(|items| items.get(*self))
    }
    fn find_mut<'v>(&self, tree: &'v mut Tree) -> Option<&'v mut Tree> {
        tree.as_array_mut().and_then(|items| items.get_mut(*self))
    }
}

impl<T: Lookup + ?Sized> Lookup for &T {
    fn find<'v>(&self, tree: &'v Tree) -> Option<&'v Tree> {
        (**self).find(tree)
    }
    fn find_mut<'v>(&self, tree: &'v mut Tree) -> Option<&'v mut Tree> {
        (**self).find_mut(tree)
    }
}

impl Tree {
    pub fn get<I: Lookup>(&self, index: I) -> Option<&Tree> {
        index.find(self)
    }

    pub fn get_mut<I: Lookup>(&mut self, index: I) -> Option<&mut Tree> {
        index.find_mut(self)
    }

    /// Text a mapping file writes, shared for the process (see [`intern`]): copying it into each resource
    /// copies a pointer.
    pub fn shared(text: &str) -> Tree {
        Tree::String(Text::Borrowed(intern(text)))
    }

    pub fn as_str(&self) -> Option<&str> {
        match self {
            Tree::String(s) => Some(s),
            _ => None,
        }
    }

    pub fn as_bool(&self) -> Option<bool> {
        match self {
            Tree::Bool(b) => Some(*b),
            _ => None,
        }
    }

    pub fn as_i64(&self) -> Option<i64> {
        match self {
            Tree::Number(n) => n.as_i64(),
            _ => None,
        }
    }

    pub fn as_u64(&self) -> Option<u64> {
        match self {
            Tree::Number(n) => n.as_u64(),
            _ => None,
        }
    }

    pub fn as_f64(&self) -> Option<f64> {
        match self {
            Tree::Number(n) => n.as_f64(),
            _ => None,
        }
    }

    pub fn as_array(&self) -> Option<&Vec<Tree>> {
        match self {
            Tree::Array(items) => Some(items),
            _ => None,
        }
    }

    pub fn as_array_mut(&mut self) -> Option<&mut Vec<Tree>> {
        match self {
            Tree::Array(items) => Some(items),
            _ => None,
        }
    }

    pub fn as_object(&self) -> Option<&Members> {
        match self {
            Tree::Object(members) => Some(members),
            _ => None,
        }
    }

    pub fn as_object_mut(&mut self) -> Option<&mut Members> {
        match self {
            Tree::Object(members) => Some(members),
            _ => None,
        }
    }

    pub fn is_null(&self) -> bool {
        matches!(self, Tree::Null)
    }

    /// The value at a JSON pointer (RFC 6901), as serde_json's `pointer`.
    pub fn pointer(&self, pointer: &str) -> Option<&Tree> {
        if pointer.is_empty() {
            return Some(self);
        }
        let rest = pointer.strip_prefix('/')?;
        rest.split('/')
            .map(|token| token.replace("~1", "/").replace("~0", "~"))
            .try_fold(self, |at, token| match at {
                Tree::Object(members) => members.get(&token),
                Tree::Array(items) => list_index(&token).and_then(|i| items.get(i)),
                _ => None,
            })
    }

    /// The compact JSON text, written straight into `out`: strings escaped by sonic-rs's SIMD routine,
    /// which serde_json's serialiser is about a third slower than on FHIR resources.
    pub fn write_json(&self, out: &mut Vec<u8>) {
        // Writing to a Vec cannot fail.
        let _ = write_json(self, &mut sonic_rs::format::CompactFormatter, out);
    }

    /// The compact JSON text.
    pub fn to_json_vec(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(256);
        self.write_json(&mut out);
        out
    }
}

fn write_json(tree: &Tree, f: &mut sonic_rs::format::CompactFormatter, out: &mut Vec<u8>) -> std::io::Result<()> {
    use sonic_rs::format::Formatter;
    use std::io::Write;
    match tree {
        Tree::Null => out.extend_from_slice(b"null"),
        Tree::Bool(true) => out.extend_from_slice(b"true"),
        Tree::Bool(false) => out.extend_from_slice(b"false"),
        // As serde_json writes it: the text the number was read or made with (`arbitrary_precision`).
        Tree::Number(n) => write!(out, "{n}")?,
        Tree::String(s) => write_string(f, s, out)?,
        Tree::Array(items) => {
            out.push(b'[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_json(item, f, out)?;
            }
            out.push(b']');
        }
        Tree::Object(members) => {
            out.push(b'{');
            for (i, (key, value)) in members.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                f.write_string_fast(out, key, true)?;
                out.push(b':');
                write_json(value, f, out)?;
            }
            out.push(b'}');
        }
    }
    Ok(())
}

/// A pointer's list index as RFC 6901 writes one: digits, without a leading zero (as serde_json reads it).
fn list_index(token: &str) -> Option<usize> {
    let digits = !token.is_empty() && token.bytes().all(|b| b.is_ascii_digit());
    (digits && (token == "0" || !token.starts_with('0')))
        .then(|| token.parse().ok())
        .flatten()
}

/// Text longer than this is escaped a piece at a time: sonic-rs reserves six bytes of room for each byte it
/// escapes, which for a 32 MB document would be 200 MB held while the response is sent.
const STRING_PIECE: usize = 64 * 1024;

fn write_string(f: &mut sonic_rs::format::CompactFormatter, text: &str, out: &mut Vec<u8>) -> std::io::Result<()> {
    use sonic_rs::format::Formatter;
    if text.len() <= STRING_PIECE {
        return f.write_string_fast(out, text, true);
    }
    out.push(b'"');
    let mut rest = text;
    while !rest.is_empty() {
        // Cut on a character's boundary (at most three bytes back).
        let mut cut = rest.len().min(STRING_PIECE);
        while !rest.is_char_boundary(cut) {
            cut -= 1;
        }
        let (piece, after) = rest.split_at(cut);
        f.write_string_fast(out, piece, false)?;
        rest = after;
    }
    out.push(b'"');
    Ok(())
}

impl fmt::Display for Tree {
    /// Compact JSON, as serde_json's `Value` displays.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Tree::Number(n) => write!(f, "{n}"),
            _ => f.write_str(std::str::from_utf8(&self.to_json_vec()).map_err(|_| fmt::Error)?),
        }
    }
}

impl std::ops::Index<&str> for Tree {
    type Output = Tree;
    /// The member, or null: as serde_json's `value["key"]`.
    fn index(&self, key: &str) -> &Tree {
        self.get(key).unwrap_or(&NULL)
    }
}

impl std::ops::Index<usize> for Tree {
    type Output = Tree;
    fn index(&self, index: usize) -> &Tree {
        self.get(index).unwrap_or(&NULL)
    }
}

/// Tests only: serde_json's `value["key"] = ...`, which panics on what is not an object.
#[cfg(test)]
impl std::ops::IndexMut<&str> for Tree {
    /// The member, added as null if missing; null becomes an object first: as serde_json's.
    fn index_mut(&mut self, key: &str) -> &mut Tree {
        if self.is_null() {
            *self = Tree::Object(Members::new());
        }
        match self {
            Tree::Object(members) => members.entry_or_insert_with(key.to_owned(), || Tree::Null),
            other => panic!("cannot index into {other} by '{key}'"),
        }
    }
}

impl PartialEq<str> for Tree {
    fn eq(&self, other: &str) -> bool {
        self.as_str() == Some(other)
    }
}

impl PartialEq<&str> for Tree {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == Some(*other)
    }
}

impl PartialEq<bool> for Tree {
    fn eq(&self, other: &bool) -> bool {
        self.as_bool() == Some(*other)
    }
}

impl PartialEq<i64> for Tree {
    fn eq(&self, other: &i64) -> bool {
        self.as_i64() == Some(*other)
    }
}

impl PartialEq<i32> for Tree {
    fn eq(&self, other: &i32) -> bool {
        self.as_i64() == Some(i64::from(*other))
    }
}

impl PartialEq<u64> for Tree {
    fn eq(&self, other: &u64) -> bool {
        self.as_u64() == Some(*other)
    }
}

impl serde::Serialize for Tree {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Tree::Null => s.serialize_unit(),
            Tree::Bool(b) => s.serialize_bool(*b),
            Tree::Number(n) => n.serialize(s),
            Tree::String(text) => s.serialize_str(text),
            Tree::Array(items) => {
                let mut seq = s.serialize_seq(Some(items.len()))?;
                for item in items {
                    seq.serialize_element(item)?;
                }
                seq.end()
            }
            Tree::Object(members) => {
                let mut map = s.serialize_map(Some(members.len()))?;
                for (k, v) in members.iter() {
                    map.serialize_entry(k, v)?;
                }
                map.end()
            }
        }
    }
}

impl From<serde_json::Value> for Tree {
    fn from(value: serde_json::Value) -> Tree {
        use serde_json::Value;
        match value {
            Value::Null => Tree::Null,
            Value::Bool(b) => Tree::Bool(b),
            Value::Number(n) => Tree::Number(n),
            Value::String(s) => Tree::String(Text::Owned(s)),
            Value::Array(items) => Tree::Array(items.into_iter().map(Tree::from).collect()),
            Value::Object(map) => Tree::Object(Members(
                map.into_iter().map(|(k, v)| (Key::Owned(k), Tree::from(v))).collect(),
            )),
        }
    }
}

impl From<&serde_json::Value> for Tree {
    fn from(value: &serde_json::Value) -> Tree {
        use serde_json::Value;
        match value {
            Value::Null => Tree::Null,
            Value::Bool(b) => Tree::Bool(*b),
            Value::Number(n) => Tree::Number(n.clone()),
            Value::String(s) => Tree::String(Text::Owned(s.clone())),
            Value::Array(items) => Tree::Array(items.iter().map(Tree::from).collect()),
            Value::Object(map) => Tree::Object(Members(
                map.iter()
                    .map(|(k, v)| (Key::Owned(k.clone()), Tree::from(v)))
                    .collect(),
            )),
        }
    }
}

impl From<Tree> for serde_json::Value {
    fn from(tree: Tree) -> serde_json::Value {
        use serde_json::Value;
        match tree {
            Tree::Null => Value::Null,
            Tree::Bool(b) => Value::Bool(b),
            Tree::Number(n) => Value::Number(n),
            Tree::String(s) => Value::String(s.into_owned()),
            Tree::Array(items) => Value::Array(items.into_iter().map(Value::from).collect()),
            Tree::Object(members) => Value::Object(
                members
                    .into_iter()
                    .map(|(k, v)| (k.into_owned(), Value::from(v)))
                    .collect(),
            ),
        }
    }
}

impl From<&Tree> for serde_json::Value {
    fn from(tree: &Tree) -> serde_json::Value {
        use serde_json::Value;
        match tree {
            Tree::Null => Value::Null,
            Tree::Bool(b) => Value::Bool(*b),
            Tree::Number(n) => Value::Number(n.clone()),
            Tree::String(s) => Value::String(s.to_string()),
            Tree::Array(items) => Value::Array(items.iter().map(Value::from).collect()),
            Tree::Object(members) => {
                Value::Object(members.iter().map(|(k, v)| (k.to_owned(), Value::from(v))).collect())
            }
        }
    }
}

impl PartialEq<serde_json::Value> for Tree {
    fn eq(&self, other: &serde_json::Value) -> bool {
        use serde_json::Value;
        match (self, other) {
            (Tree::Null, Value::Null) => true,
            (Tree::Bool(a), Value::Bool(b)) => a == b,
            (Tree::Number(a), Value::Number(b)) => a == b,
            (Tree::String(a), Value::String(b)) => a == b,
            (Tree::Array(a), Value::Array(b)) => a.len() == b.len() && a.iter().zip(b).all(|(x, y)| x == y),
            (Tree::Object(a), Value::Object(b)) => {
                a.len() == b.len() && a.iter().all(|(k, v)| b.get(k).is_some_and(|w| v == w))
            }
            _ => false,
        }
    }
}

impl From<&str> for Tree {
    fn from(text: &str) -> Tree {
        Tree::String(Text::Owned(text.to_owned()))
    }
}

impl From<String> for Tree {
    fn from(text: String) -> Tree {
        Tree::String(Text::Owned(text))
    }
}

impl From<bool> for Tree {
    fn from(b: bool) -> Tree {
        Tree::Bool(b)
    }
}

impl From<i64> for Tree {
    fn from(i: i64) -> Tree {
        Tree::Number(i.into())
    }
}

impl From<i32> for Tree {
    fn from(i: i32) -> Tree {
        Tree::Number(i.into())
    }
}

impl From<u64> for Tree {
    fn from(i: u64) -> Tree {
        Tree::Number(i.into())
    }
}

impl<T: Into<Tree>> From<Option<T>> for Tree {
    fn from(value: Option<T>) -> Tree {
        value.map_or(Tree::Null, Into::into)
    }
}

impl From<Vec<Tree>> for Tree {
    fn from(items: Vec<Tree>) -> Tree {
        Tree::Array(items)
    }
}

impl From<Members> for Tree {
    fn from(members: Members) -> Tree {
        Tree::Object(members)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn sample() -> serde_json::Value {
        json!({"resourceType": "Observation", "id": "a\"b\n\u{1}é", "valueQuantity": {"value": 1.5, "unit": "mmol/L"},
               "n": -3, "big": 18446744073709551615u64, "flag": true, "none": null, "list": [1, "two", [], {}]})
    }

    #[test]
    fn writes_what_serde_json_writes() {
        let value = sample();
        let tree = Tree::from(value.clone());
        assert_eq!(tree.to_json_vec(), serde_json::to_vec(&value).unwrap());
        assert_eq!(serde_json::to_vec(&tree).unwrap(), serde_json::to_vec(&value).unwrap());
        assert_eq!(tree.to_string(), value.to_string());
    }

    #[test]
    fn long_text_is_written_as_serde_json_writes_it() {
        // Longer than a piece, with escapes and characters of several bytes across the cuts.
        let text: String = "a\"é\n€😀\u{1}".repeat(STRING_PIECE / 5);
        let tree = Tree::from(text.as_str());
        assert_eq!(tree.to_json_vec(), serde_json::to_vec(&text).unwrap());
    }

    #[test]
    fn a_name_given_again_keeps_its_place_and_takes_the_later_value() {
        for size in [3, 40] {
            let mut pairs: Vec<(String, Tree)> = (0..size).map(|i| (format!("k{i}"), Tree::from(i))).collect();
            pairs.push(("k1".into(), Tree::from("later")));
            pairs.push(("k0".into(), Tree::from("last")));
            let members: Members = pairs.into_iter().collect();
            assert_eq!(members.len(), size as usize);
            let keys: Vec<&str> = members.keys().collect();
            assert_eq!(keys[..2], ["k0", "k1"]);
            assert_eq!(members.get("k0"), Some(&Tree::from("last")));
            assert_eq!(members.get("k1"), Some(&Tree::from("later")));
            assert_eq!(members.get("k2"), Some(&Tree::from(2)));
        }
    }

    #[test]
    fn converts_both_ways_keeping_order() {
        let value = sample();
        let back = serde_json::Value::from(Tree::from(value.clone()));
        assert_eq!(
            serde_json::to_string(&back).unwrap(),
            serde_json::to_string(&value).unwrap()
        );
        let back_by_reference = serde_json::Value::from(&Tree::from(&value));
        assert_eq!(
            serde_json::to_string(&back_by_reference).unwrap(),
            serde_json::to_string(&value).unwrap()
        );
    }

    #[test]
    fn objects_compare_as_maps() {
        let a = Tree::from(json!({"a": 1, "b": [1, 2]}));
        let b = Tree::from(json!({"b": [1, 2], "a": 1}));
        assert_eq!(a, b);
        assert_ne!(a, Tree::from(json!({"b": [2, 1], "a": 1})));
        assert_ne!(a, Tree::from(json!({"a": 1})));
        assert_eq!(a, json!({"b": [1, 2], "a": 1}));
    }

    #[test]
    fn members_keep_their_place() {
        let mut members: Members = [("a", Tree::from(1)), ("b", Tree::from(2)), ("c", Tree::from(3))]
            .into_iter()
            .collect();
        assert_eq!(members.insert("a", Tree::from(9)), Some(Tree::from(1)));
        assert_eq!(members.remove("b"), Some(Tree::from(2)));
        members.insert(String::from("d"), Tree::Null);
        assert_eq!(members.keys().collect::<Vec<_>>(), ["a", "c", "d"]);
        assert_eq!(Tree::from(members).to_string(), r#"{"a":9,"c":3,"d":null}"#);
    }

    #[test]
    fn reads_as_serde_json_does() {
        let tree = Tree::from(sample());
        assert_eq!(tree["valueQuantity"]["unit"].as_str(), Some("mmol/L"));
        assert!(tree["missing"]["deeper"].is_null());
        assert_eq!(tree.pointer("/list/1").and_then(Tree::as_str), Some("two"));
        assert_eq!(tree.pointer("/list/9"), None);
        assert_eq!(tree.pointer("/list/01"), None);
        assert_eq!(tree.pointer("/list/+1"), None);
        assert_eq!(tree["list"][0].as_i64(), Some(1));
    }

    #[test]
    fn a_tree_is_four_words_and_an_absent_one_no_more() {
        assert_eq!(std::mem::size_of::<Tree>(), 32);
        assert_eq!(std::mem::size_of::<Option<Tree>>(), 32);
    }

    #[test]
    fn interned_names_are_shared() {
        let a = intern("valueQuantity");
        let b = intern(&String::from("valueQuantity"));
        assert!(std::ptr::eq(a, b));
        // A mapping's literal text too, which then reads and writes as any text.
        let (Tree::String(x), Tree::String(y)) = (
            Tree::shared("http://snomed.info/sct"),
            Tree::shared("http://snomed.info/sct"),
        ) else {
            panic!("text")
        };
        assert!(matches!((&x, &y), (Text::Borrowed(p), Text::Borrowed(q)) if std::ptr::eq(*p, *q)));
        assert_eq!(Tree::String(x), Tree::from("http://snomed.info/sct"));
    }
}
