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
//! Namespaces prefixes are dropped from names. Nesting deeper than `MAX_DEPTH` is refused.
//!
//! The convention is written out as JSON text while quick-xml reads the document, and that text is parsed
//! like a JSON reply (`mapping::node::parse_json`): the tree is then the same parsed, ordered tree, and
//! building it so is several times quicker than inserting member by member.

use crate::mapping::node::{self, Native};
use quick_xml::events::{BytesStart, Event};
use std::borrow::Cow;

const MAX_DEPTH: usize = 64;

/// An element being read: its JSON so far (`{` and its attributes, written as they are read), its children's
/// JSON grouped by name in order of first appearance, and its text.
struct Open {
    name: String,
    json: Vec<u8>,
    /// Where each attribute's name is in `json`, quotes included: renamed `@name` if a child takes the name.
    keys: Vec<(usize, usize)>,
    children: Vec<(String, Vec<u8>)>,
    text: String,
}

impl Open {
    fn new(start: &BytesStart) -> Result<Open, String> {
        let name = local(start.name().as_ref()).into_owned();
        // Room for the attributes as JSON (a little longer than as XML), so they are written without growing.
        let mut json = Vec::with_capacity(start.attributes_raw().len() * 5 / 4 + 32);
        json.push(b'{');
        let mut keys = Vec::new();
        for attribute in start.attributes() {
            let attribute = attribute.map_err(|e| format!("bad attribute: {e}"))?;
            let key = local(attribute.key.as_ref());
            if key == "xmlns" || attribute.key.as_ref().starts_with(b"xmlns:") {
                continue;
            }
            let value = attribute
                .unescape_value()
                .map_err(|e| format!("bad attribute value: {e}"))?;
            if json.len() > 1 {
                json.push(b',');
            }
            let at = json.len();
            string(&mut json, &key);
            keys.push((at, json.len()));
            json.push(b':');
            string(&mut json, &value);
        }
        Ok(Open {
            name,
            json,
            keys,
            children: Vec::new(),
            text: String::new(),
        })
    }

    /// The element as a JSON object.
    fn render(mut self) -> Vec<u8> {
        self.rename_shadowed_attributes();
        let mut json = self.json;
        for (name, items) in &self.children {
            if json.len() > 1 {
                json.push(b',');
            }
            string(&mut json, name);
            json.extend_from_slice(b":[");
            json.extend_from_slice(items);
            json.push(b']');
        }
        let text = self.text.trim();
        if !text.is_empty() {
            if json.len() > 1 {
                json.push(b',');
            }
            json.extend_from_slice(b"\"_text\":");
            string(&mut json, text);
        }
        json.push(b'}');
        json
    }

    /// An attribute named as a child element is kept as `@name` (rare: written in place).
    fn rename_shadowed_attributes(&mut self) {
        let mut named = Vec::new();
        for &(start, end) in self.keys.iter().rev() {
            let shadowed = self.children.iter().any(|(name, _)| {
                named.clear();
                string(&mut named, name);
                named == self.json[start..end]
            });
            if shadowed {
                self.json.insert(start + 1, b'@');
            }
        }
    }

    /// Adds a closed child element.
    fn adopt(&mut self, name: String, json: Vec<u8>) {
        match self.children.iter_mut().find(|(n, _)| *n == name) {
            Some((_, items)) => {
                items.push(b',');
                items.extend_from_slice(&json);
            }
            None => self.children.push((name, json)),
        }
    }
}

/// Writes a JSON string.
fn string(out: &mut Vec<u8>, text: &str) {
    // Writing a &str to a Vec cannot fail.
    let _ = serde_json::to_writer(out, text);
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
                    let decoded = text.decode().map_err(|e| format!("bad text: {e}"))?;
                    let unescaped = quick_xml::escape::unescape(&decoded).map_err(|e| format!("bad text: {e}"))?;
                    open.text.push_str(&unescaped);
                }
            }
            Event::CData(data) => {
                if let Some(open) = stack.last_mut() {
                    open.text.push_str(&String::from_utf8_lossy(&data));
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

/// A name without its namespace prefix.
fn local(name: &[u8]) -> Cow<'_, str> {
    match String::from_utf8_lossy(name) {
        Cow::Borrowed(text) => Cow::Borrowed(text.rsplit(':').next().unwrap_or("")),
        Cow::Owned(text) => Cow::Owned(text.rsplit(':').next().unwrap_or("").to_string()),
    }
}

/// A closed element joins its parent, or is the root.
fn close(stack: &mut [Open], root: &mut Option<Vec<u8>>, mut element: Open) -> Result<(), String> {
    let name = std::mem::take(&mut element.name);
    let json = element.render();
    match stack.last_mut() {
        Some(parent) => parent.adopt(name, json),
        None => {
            if root.is_some() {
                return Err("more than one root element".into());
            }
            let mut out = Vec::with_capacity(json.len() + name.len() + 8);
            out.push(b'{');
            string(&mut out, &name);
            out.push(b':');
            out.extend_from_slice(&json);
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
    fn broken_xml_is_an_error() {
        assert!(parse(b"<a><b></a>").is_err());
        assert!(parse(b"<a>").is_err());
        assert!(parse(b"<!DOCTYPE x [<!ENTITY e 'x'>]><a/>").is_err());
        let deep = format!("{}{}", "<a>".repeat(100), "</a>".repeat(100));
        assert!(parse(deep.as_bytes()).is_err());
    }
}
