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

use quick_xml::events::{BytesStart, Event};
use serde_json::{Map, Value};

const MAX_DEPTH: usize = 64;

/// Parses an XML document into the tree.
pub fn parse(xml: &[u8]) -> Result<Value, String> {
    let mut reader = quick_xml::Reader::from_reader(xml);
    reader.config_mut().trim_text(false);
    let mut stack: Vec<(String, Map<String, Value>, String)> = Vec::new();
    let mut root: Option<(String, Value)> = None;
    let mut buf = Vec::new();
    loop {
        let event = reader
            .read_event_into(&mut buf)
            .map_err(|e| format!("not well-formed XML: {e}"))?;
        match event {
            Event::Start(start) => {
                if stack.len() >= MAX_DEPTH {
                    return Err("XML nested too deeply".into());
                }
                let (name, attributes) = element(&start)?;
                stack.push((name, attributes, String::new()));
            }
            Event::Empty(start) => {
                let (name, attributes) = element(&start)?;
                close(&mut stack, &mut root, name, attributes, String::new())?;
            }
            Event::End(_) => {
                let (name, attributes, text) = stack.pop().ok_or("unbalanced XML")?;
                close(&mut stack, &mut root, name, attributes, text)?;
            }
            Event::Text(text) => {
                if let Some((_, _, content)) = stack.last_mut() {
                    let decoded = text.decode().map_err(|e| format!("bad text: {e}"))?;
                    let unescaped = quick_xml::escape::unescape(&decoded).map_err(|e| format!("bad text: {e}"))?;
                    content.push_str(&unescaped);
                }
            }
            Event::CData(data) => {
                if let Some((_, _, content)) = stack.last_mut() {
                    content.push_str(&String::from_utf8_lossy(&data));
                }
            }
            Event::GeneralRef(reference) => {
                if let Some((_, _, content)) = stack.last_mut() {
                    let name = String::from_utf8_lossy(&reference).to_string();
                    let entity = format!("&{name};");
                    let resolved = quick_xml::escape::unescape(&entity).map_err(|e| format!("bad entity: {e}"))?;
                    content.push_str(&resolved);
                }
            }
            Event::DocType(_) => return Err("document type declarations are not accepted".into()),
            Event::Eof => break,
            _ => {}
        }
        buf.clear();
    }
    if !stack.is_empty() {
        return Err("unclosed XML elements".into());
    }
    let (name, value) = root.ok_or("no root element")?;
    let mut out = Map::new();
    out.insert(name, value);
    Ok(Value::Object(out))
}

fn local(name: &[u8]) -> String {
    let text = String::from_utf8_lossy(name);
    text.rsplit(':').next().unwrap_or("").to_string()
}

fn element(start: &BytesStart) -> Result<(String, Map<String, Value>), String> {
    let name = local(start.name().as_ref());
    let mut attributes = Map::new();
    for attribute in start.attributes() {
        let attribute = attribute.map_err(|e| format!("bad attribute: {e}"))?;
        let key = local(attribute.key.as_ref());
        if key == "xmlns" || attribute.key.as_ref().starts_with(b"xmlns:") {
            continue;
        }
        let value = attribute
            .unescape_value()
            .map_err(|e| format!("bad attribute value: {e}"))?;
        attributes.insert(key, Value::String(value.into_owned()));
    }
    Ok((name, attributes))
}

fn close(
    stack: &mut [(String, Map<String, Value>, String)],
    root: &mut Option<(String, Value)>,
    name: String,
    mut object: Map<String, Value>,
    text: String,
) -> Result<(), String> {
    let text = text.trim();
    if !text.is_empty() {
        object.insert("_text".into(), Value::String(text.to_string()));
    }
    let value = Value::Object(object);
    match stack.last_mut() {
        Some((_, parent, _)) => {
            if let Some(existing) = parent.get(&name) {
                if !existing.is_array() {
                    // An attribute of the same name as this child: keep it as `@name`.
                    let attribute = parent.remove(&name).unwrap_or(Value::Null);
                    parent.insert(format!("@{name}"), attribute);
                }
            }
            match parent.entry(name).or_insert_with(|| Value::Array(Vec::new())) {
                Value::Array(items) => items.push(value),
                _ => return Err("XML tree conflict".into()),
            }
        }
        None => {
            if root.is_some() {
                return Err("more than one root element".into());
            }
            *root = Some((name, value));
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
            tree,
            json!({"ViewPatientOverviewReply": {"uuid": "u1",
                "Allergies": [{"Item": [{"id": "0a", "code": "XaBDN", "codeScheme": "CTV3",
                    "description": "Penicillin allergy", "_text": "Rash & hives"}]}],
                "Drugs": [{}]}})
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
