//! Native XML replies become the same generic tree as JSON replies, by one convention, so mapping files
//! treat every supplier alike:
//! - an element is an object;
//! - its attributes are string members under their own names (`code="H33.."` → `"code": "H33.."`);
//! - its child elements are members named after them, **always lists** (one `<Item>` or many, `Item` is a
//!   list), so a mapping iterates without caring how many there were;
//! - its text (trimmed; CDATA included) is the member `_text`, when not empty;
//! - the root is an object with one member, the root element's name, holding the root element (not a list);
//! - an attribute whose name equals a child element's is kept as `@name`.
//!
//! Namespaces prefixes are dropped from names. A reply whose names or text are not UTF-8, or nested deeper
//! than `MAX_DEPTH`, is refused. A name given twice in one element (two attributes that differ only in their
//! prefix, an attribute named `_text`) is given twice in the tree, where the last counts
//! (`mapping::node::Node::get`).
//!
//! The convention is written out as JSON text while quick-xml reads the document, and that text is parsed
//! like a JSON reply (`mapping::node::parse_json`): the tree is then the same parsed, ordered tree, and
//! building it so is several times quicker than inserting member by member. An element's JSON is kept as
//! the chunks its children wrote, moved (not copied) into its parent, and joined once for the whole reply.

use crate::mapping::node::{self, Native};
use quick_xml::events::{BytesStart, Event};
use smallvec::SmallVec;
use std::borrow::Cow;
use std::collections::HashMap;

const MAX_DEPTH: usize = 64;
/// The most attributes a native element may carry (the dialect's carry a few dozen at most): quick-xml checks
/// each against the others for duplicates, so a reply with tens of thousands on one element would cost
/// seconds.
const MAX_ATTRIBUTES: usize = 256;

/// Distinct child names an element holds before they are indexed rather than searched.
const INDEXED_CHILDREN: usize = 16;

/// An element's JSON: chunks that read as one text in order. Each element's first chunk starts with a
/// space, which becomes the comma before it when it follows a sibling of its name.
type Chunks = Vec<Vec<u8>>;

/// An element being read: `{` and its attributes (written as they are read), its children's JSON grouped
/// by name in order of first appearance, and its text.
struct Open {
    name: String,
    json: Vec<u8>,
    /// Where each attribute's name is in `json`, quotes included.
    keys: Vec<(usize, usize)>,
    children: Vec<(String, Chunks)>,
    /// Where each child name's group is, once there are many.
    index: Option<HashMap<String, usize, foldhash::fast::RandomState>>,
    text: String,
}

impl Open {
    fn new(start: &BytesStart) -> Result<Open, String> {
        let name = std::str::from_utf8(local_bytes(start.name().as_ref()))
            .map_err(|_| "an element name that is not UTF-8".to_string())?
            .to_string();
        // Room for the attributes as JSON (a little longer than as XML), so they are written without growing.
        let mut json = Vec::with_capacity(start.attributes_raw().len() * 5 / 4 + 32);
        json.extend_from_slice(b" {");
        let mut keys = Vec::new();
        // The names read so far, to refuse one given twice (not well-formed). Checked here rather than by
        // quick-xml, whose check allocates a list for every element: a fifth of the time to read a reply.
        let mut names: SmallVec<[&[u8]; 32]> = SmallVec::new();
        for (i, attribute) in start.attributes().with_checks(false).enumerate() {
            // Counted as they are read: the duplicate check grows with the square of their number.
            if i == MAX_ATTRIBUTES {
                return Err(format!("an element with more than {MAX_ATTRIBUTES} attributes"));
            }
            let attribute = attribute.map_err(|e| format!("bad attribute: {e}"))?;
            let raw = attribute.key.into_inner();
            if names.contains(&raw) {
                return Err(format!("bad attribute: '{}' given twice", String::from_utf8_lossy(raw)));
            }
            names.push(raw);
            if attribute.key.as_ref() == b"xmlns" || attribute.key.as_ref().starts_with(b"xmlns:") {
                continue;
            }
            if !keys.is_empty() {
                json.push(b',');
            }
            let at = json.len();
            string(&mut json, local_bytes(attribute.key.as_ref()));
            keys.push((at, json.len()));
            json.push(b':');
            // A value without references is written as it is: its UTF-8 is checked when the whole tree is
            // parsed as JSON.
            if attribute.value.contains(&b'&') {
                let value = attribute
                    .unescape_value()
                    .map_err(|e| format!("bad attribute value: {e}"))?;
                string(&mut json, value.as_bytes());
            } else {
                string(&mut json, &attribute.value);
            }
        }
        Ok(Open {
            name,
            json,
            keys,
            children: Vec::new(),
            index: None,
            text: String::new(),
        })
    }

    /// Where the group of children of a name is.
    fn group(&self, name: &str) -> Option<usize> {
        match &self.index {
            Some(index) => index.get(name).copied(),
            None => self.children.iter().position(|(n, _)| n == name),
        }
    }

    /// Adds a closed child element.
    fn adopt(&mut self, name: String, mut chunks: Chunks) {
        match self.group(&name) {
            Some(at) => {
                // The child's leading space becomes the comma after its elder sibling.
                if let Some(first) = chunks.first_mut().and_then(|c| c.first_mut()) {
                    *first = b',';
                }
                self.children[at].1.append(&mut chunks);
            }
            None => {
                if let Some(index) = &mut self.index {
                    index.insert(name.clone(), self.children.len());
                }
                self.children.push((name, chunks));
                if self.index.is_none() && self.children.len() > INDEXED_CHILDREN {
                    let mut index = HashMap::with_capacity_and_hasher(self.children.len() * 2, Default::default());
                    index.extend(self.children.iter().enumerate().map(|(i, (n, _))| (n.clone(), i)));
                    self.index = Some(index);
                }
            }
        }
    }

    /// The element as JSON.
    fn render(mut self) -> Chunks {
        // An attribute named as a child element is kept as `@name` (rare: written in place, last first so
        // the earlier positions hold). Only an element with children can have one.
        let keys = if self.children.is_empty() {
            &[][..]
        } else {
            &self.keys[..]
        };
        for &(start, end) in keys.iter().rev() {
            let written = &self.json[start..end];
            // The name as written, between its quotes; read back from JSON only when it was escaped.
            let name = match std::str::from_utf8(&written[1..written.len() - 1]) {
                Ok(plain) if !plain.contains('\\') => Cow::Borrowed(plain),
                _ => Cow::Owned(serde_json::from_slice::<String>(written).unwrap_or_default()),
            };
            if self.group(&name).is_some() {
                self.json.insert(start + 1, b'@');
            }
        }
        let mut members = !self.keys.is_empty();
        let mut chunks = vec![self.json];
        for (name, mut items) in self.children {
            let last = last_chunk(&mut chunks);
            if std::mem::replace(&mut members, true) {
                last.push(b',');
            }
            string(last, name.as_bytes());
            last.extend_from_slice(b":[");
            chunks.append(&mut items);
            last_chunk(&mut chunks).push(b']');
        }
        let text = self.text.trim();
        let last = last_chunk(&mut chunks);
        if !text.is_empty() {
            if members {
                last.push(b',');
            }
            last.extend_from_slice(b"\"_text\":");
            string(last, text.as_bytes());
        }
        last.push(b'}');
        chunks
    }
}

/// The chunk being written to (there is always one).
fn last_chunk(chunks: &mut Chunks) -> &mut Vec<u8> {
    if chunks.is_empty() {
        chunks.push(Vec::new());
    }
    let last = chunks.len() - 1;
    &mut chunks[last]
}

/// Whether text holds a byte JSON escapes: short text through a table, longer text a block at a time
/// without stopping early, which the compiler vectorises.
fn needs_escaping(text: &[u8]) -> bool {
    // Most names and values are short: a table lookup a byte beats three comparisons.
    const SHORT: usize = 32;
    if text.len() <= SHORT {
        return text.iter().fold(false, |found, &b| found | ESCAPED[usize::from(b)]);
    }
    text.chunks(32).any(|block| {
        block
            .iter()
            .fold(false, |found, &b| found | (b < 0x20) | (b == b'"') | (b == b'\\'))
    })
}

/// The bytes JSON escapes in a string: control characters, the quote and the backslash.
const ESCAPED: [bool; 256] = {
    let mut table = [false; 256];
    let mut b = 0;
    while b < 0x20 {
        table[b] = true;
        b += 1;
    }
    table[b'"' as usize] = true;
    table[b'\\' as usize] = true;
    table
};

/// Writes a JSON string of text whose UTF-8 is checked when the tree is parsed.
fn string(out: &mut Vec<u8>, text: &[u8]) {
    // The rare text that needs escaping is escaped by serde_json (writing to a Vec cannot fail).
    if needs_escaping(text) {
        if let Ok(text) = std::str::from_utf8(text) {
            drop(serde_json::to_writer(out, text));
            return;
        }
    }
    // Most names and values are copied as they are; bytes that are not UTF-8 stay, so the tree is refused.
    out.reserve(text.len() + 2);
    out.push(b'"');
    out.extend_from_slice(text);
    out.push(b'"');
}

/// Parses an XML document into the tree.
pub fn parse(xml: &[u8]) -> Result<Native, String> {
    let mut reader = quick_xml::Reader::from_reader(xml);
    reader.config_mut().trim_text(false);
    let mut stack: Vec<Open> = Vec::new();
    let mut root: Option<Vec<u8>> = None;
    loop {
        // Events borrow from the document: nothing is copied to read them.
        let event = reader.read_event().map_err(|e| format!("not well-formed XML: {e}"))?;
        match event {
            Event::Start(start) => {
                if stack.len() >= MAX_DEPTH {
                    return Err("XML nested too deeply".into());
                }
                stack.push(Open::new(&start)?);
            }
            Event::Empty(start) => close(&mut stack, &mut root, Open::new(&start)?)?,
            Event::End(_) => {
                let open = stack.pop().ok_or("unbalanced XML")?;
                close(&mut stack, &mut root, open)?;
            }
            Event::Text(text) => {
                if let Some(open) = stack.last_mut() {
                    // White space before any text is trimmed in the end: the usual indentation between
                    // elements is skipped without being decoded.
                    if open.text.is_empty() && text.iter().all(u8::is_ascii_whitespace) {
                        continue;
                    }
                    let decoded = text.decode().map_err(|e| format!("bad text: {e}"))?;
                    let unescaped = quick_xml::escape::unescape(&decoded).map_err(|e| format!("bad text: {e}"))?;
                    open.text.push_str(&unescaped);
                }
            }
            Event::CData(data) => {
                if let Some(open) = stack.last_mut() {
                    open.text
                        .push_str(std::str::from_utf8(&data).map_err(|_| "CDATA that is not UTF-8".to_string())?);
                }
            }
            Event::GeneralRef(reference) => {
                if let Some(open) = stack.last_mut() {
                    let name = String::from_utf8_lossy(&reference).to_string();
                    let entity = format!("&{name};");
                    let resolved = quick_xml::escape::unescape(&entity).map_err(|e| format!("bad entity: {e}"))?;
                    open.text.push_str(&resolved);
                }
            }
            Event::DocType(_) => return Err("document type declarations are not accepted".into()),
            Event::Eof => break,
            _ => {}
        }
    }
    if !stack.is_empty() {
        return Err("unclosed XML elements".into());
    }
    let root = root.ok_or("no root element")?;
    node::parse_json(&root).map_err(|e| format!("the tree is not JSON: {e}"))
}

/// A name's bytes without its namespace prefix.
fn local_bytes(name: &[u8]) -> &[u8] {
    match name.iter().rposition(|&b| b == b':') {
        Some(colon) => &name[colon + 1..],
        None => name,
    }
}

/// A closed element joins its parent, or is the root: `{"Name": ...}`, its chunks joined once.
fn close(stack: &mut [Open], root: &mut Option<Vec<u8>>, mut element: Open) -> Result<(), String> {
    let name = std::mem::take(&mut element.name);
    let chunks = element.render();
    match stack.last_mut() {
        Some(parent) => parent.adopt(name, chunks),
        None => {
            if root.is_some() {
                return Err("more than one root element".into());
            }
            let mut out = Vec::with_capacity(chunks.iter().map(Vec::len).sum::<usize>() + name.len() + 8);
            out.push(b'{');
            string(&mut out, name.as_bytes());
            out.push(b':');
            for chunk in &chunks {
                out.extend_from_slice(chunk);
            }
            out.push(b'}');
            *root = Some(out);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_convention_holds() {
        let xml = br#"<?xml version="1.0"?><ViewPatientOverviewReply uuid="u1">
            <Allergies><Item id="0a" code="XaBDN" codeScheme="CTV3" description="Penicillin allergy">Rash &amp; hives</Item></Allergies>
            <Drugs/></ViewPatientOverviewReply>"#;
        let tree = parse(xml).unwrap();
        assert_eq!(
            crate::mapping::node::Node::Native(&tree).to_json(),
            json!({"ViewPatientOverviewReply": {"uuid": "u1",
                "Allergies": [{"Item": [{"id": "0a", "code": "XaBDN", "codeScheme": "CTV3",
                    "description": "Penicillin allergy", "_text": "Rash & hives"}]}],
                "Drugs": [{}]}})
        );
    }

    #[test]
    fn an_attribute_named_as_a_child_is_kept_apart() {
        let tree = parse(br#"<a Item="x" b="&quot;y&quot;"><Item id="1"/>text<Item id="2"/><c/></a>"#).unwrap();
        assert_eq!(
            crate::mapping::node::Node::Native(&tree).to_json(),
            json!({"a": {"@Item": "x", "b": "\"y\"", "Item": [{"id": "1"}, {"id": "2"}], "c": [{}], "_text": "text"}})
        );
    }

    #[test]
    fn many_child_names_and_repeated_names_keep_the_convention() {
        // More distinct child names than are searched (they are indexed), interleaved with repeats.
        let mut xml = String::from("<r a0=\"x\">");
        for i in 0..40 {
            xml.push_str(&format!("<a{i} n=\"{i}\"/><b n=\"{i}\"/>"));
        }
        xml.push_str("</r>");
        let tree = crate::mapping::node::Node::Native(&parse(xml.as_bytes()).unwrap()).to_json();
        let r = &tree["r"];
        assert_eq!(r["@a0"], json!("x"));
        assert_eq!(r["a39"], json!([{"n": "39"}]));
        assert_eq!(r["b"].as_array().unwrap().len(), 40);
        assert_eq!(r["b"][39], json!({"n": "39"}));
        let keys: Vec<&str> = r.as_object().unwrap().keys().collect();
        assert_eq!(keys[..3], ["@a0", "a0", "b"]);
        // A name given twice in one element: the last counts, as it did in a map.
        let tree = parse(br#"<i x:id="1" y:id="2" _text="a">b</i>"#).unwrap();
        let i = crate::mapping::node::Node::Native(&tree).get("i").unwrap();
        assert_eq!(i.get("id").and_then(|v| v.as_str()), Some("2"));
        assert_eq!(i.get("_text").and_then(|v| v.as_str()), Some("b"));
    }

    #[test]
    fn an_element_with_too_many_attributes_is_refused() {
        let element = |n: usize| {
            let attributes: String = (0..n).map(|i| format!(" a{i}=\"x\"")).collect();
            format!("<r{attributes}/>")
        };
        assert!(parse(element(MAX_ATTRIBUTES).as_bytes()).is_ok());
        let refused = parse(element(MAX_ATTRIBUTES + 1).as_bytes()).unwrap_err();
        assert!(refused.contains("attributes"), "{refused}");
    }

    #[test]
    fn names_and_values_that_need_escaping_in_json_keep_their_text() {
        let tree =
            parse("<p:a q:b=\"C:\\dir\" t=\"tab&#9;here\" u=\"plain £\">line one\nline \"two\"</p:a>".as_bytes())
                .unwrap();
        assert_eq!(
            crate::mapping::node::Node::Native(&tree).to_json(),
            json!({"a": {"b": "C:\\dir", "t": "tab\there", "u": "plain £", "_text": "line one\nline \"two\""}})
        );
    }

    #[test]
    fn text_is_escaped_for_json_and_must_be_utf8() {
        let tree = parse(b"<a q=\"back\\slash\x01\" r=\"\xc2\xa3 &lt;\">\n  <b/>\r\n  two\tlines\n</a>").unwrap();
        assert_eq!(
            crate::mapping::node::Node::Native(&tree).to_json(),
            json!({"a": {"q": "back\\slash\u{1}", "r": "\u{a3} <", "b": [{}], "_text": "two\tlines"}})
        );
        // Bytes that are not UTF-8, in a name or a value, written as they are, are refused when the tree is read.
        assert!(parse(b"<a q=\"\xff\"/>").is_err());
        assert!(parse(b"<a \xffq=\"x\"/>").is_err());
        assert!(parse(b"<\xffa/>").is_err());
        assert!(parse(b"<a><![CDATA[\xff]]></a>").is_err());
        // A quote in a single-quoted value, written as it is, is escaped for JSON.
        let tree = parse(b"<a q='say \"hi\"'/>").unwrap();
        assert_eq!(
            crate::mapping::node::Node::Native(&tree).to_json(),
            json!({"a": {"q": "say \"hi\""}})
        );
        assert!(
            parse(b"<a q=\"x\" q=\"y\"/>").is_err(),
            "an attribute given twice is not well-formed"
        );
    }

    #[test]
    fn broken_xml_is_an_error() {
        assert!(parse(b"<a><b></a>").is_err());
        assert!(parse(b"<a>").is_err());
        assert!(parse(b"<!DOCTYPE x [<!ENTITY e 'x'>]><a/>").is_err());
        let deep = format!("{}{}", "<a>".repeat(100), "</a>".repeat(100));
        assert!(parse(deep.as_bytes()).is_err());
    }
}
