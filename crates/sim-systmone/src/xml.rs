//! A tiny XML element model: a builder that writes attribute-style XML, and a parser (quick-xml) into the
//! same shape. The dialect is all attributes plus a little text, so a small tree is all either side needs.

use quick_xml::escape::{escape, resolve_predefined_entity};
use quick_xml::events::Event;
use quick_xml::Reader;

/// An element to write.
#[derive(Debug, Clone, Default)]
pub struct El {
    name: String,
    attrs: Vec<(&'static str, String)>,
    children: Vec<El>,
    text: Option<String>,
}

impl El {
    /// An empty element.
    pub fn new(name: impl Into<String>) -> El {
        El {
            name: name.into(),
            ..El::default()
        }
    }

    /// Add an attribute.
    pub fn attr(mut self, key: &'static str, value: impl Into<String>) -> El {
        self.attrs.push((key, value.into()));
        self
    }

    /// Add an attribute when there is a value.
    pub fn opt<V: Into<String>>(self, key: &'static str, value: Option<V>) -> El {
        match value {
            Some(v) => self.attr(key, v),
            None => self,
        }
    }

    /// Add a child.
    pub fn child(mut self, child: El) -> El {
        self.children.push(child);
        self
    }

    /// Add children.
    pub fn children(mut self, children: impl IntoIterator<Item = El>) -> El {
        self.children.extend(children);
        self
    }

    /// Set the text content.
    pub fn text(mut self, text: impl Into<String>) -> El {
        self.text = Some(text.into());
        self
    }

    /// Add a child in place.
    pub fn push(&mut self, child: El) {
        self.children.push(child);
    }

    /// Add an attribute in place.
    pub fn set(&mut self, key: &'static str, value: impl Into<String>) {
        self.attrs.push((key, value.into()));
    }

    /// The element name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Rename (the shared builders fill a `Result` or a `...Reply` root alike).
    pub fn renamed(mut self, name: impl Into<String>) -> El {
        self.name = name.into();
        self
    }

    /// Serialise without an XML declaration.
    pub fn to_xml(&self) -> String {
        let mut out = String::with_capacity(256);
        self.write(&mut out);
        out
    }

    fn write(&self, out: &mut String) {
        out.push('<');
        out.push_str(&self.name);
        for (k, v) in &self.attrs {
            out.push(' ');
            out.push_str(k);
            out.push_str("=\"");
            out.push_str(&escape(v.as_str()));
            out.push('"');
        }
        if self.children.is_empty() && self.text.is_none() {
            out.push_str("/>");
            return;
        }
        out.push('>');
        if let Some(t) = &self.text {
            out.push_str(&escape(t.as_str()));
        }
        for c in &self.children {
            c.write(out);
        }
        out.push_str("</");
        out.push_str(&self.name);
        out.push('>');
    }
}

/// A parsed element.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Node {
    pub name: String,
    pub attrs: Vec<(String, String)>,
    pub children: Vec<Node>,
    pub text: String,
}

impl Node {
    /// An attribute value.
    pub fn attr(&self, key: &str) -> Option<&str> {
        self.attrs.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
    }

    /// A non-empty attribute value.
    pub fn attr_nonempty(&self, key: &str) -> Option<&str> {
        self.attr(key).filter(|v| !v.trim().is_empty())
    }

    /// The first child with a name.
    pub fn child(&self, name: &str) -> Option<&Node> {
        self.children.iter().find(|c| c.name == name)
    }

    /// All children with a name.
    pub fn children_named<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a Node> + 'a {
        self.children.iter().filter(move |c| c.name == name)
    }
}

fn start_node(e: &quick_xml::events::BytesStart<'_>) -> Result<Node, String> {
    let name = String::from_utf8_lossy(e.name().as_ref()).into_owned();
    let mut attrs = Vec::new();
    for a in e.attributes() {
        let a = a.map_err(|err| err.to_string())?;
        let key = String::from_utf8_lossy(a.key.as_ref()).into_owned();
        let value = a.unescape_value().map_err(|err| err.to_string())?;
        attrs.push((key, value.into_owned()));
    }
    Ok(Node {
        name,
        attrs,
        ..Node::default()
    })
}

/// Parse a document into its root element. Anything but one well-formed root is an error.
pub fn parse(text: &str) -> Result<Node, String> {
    let mut reader = Reader::from_str(text);
    let mut stack: Vec<Node> = Vec::new();
    let mut root: Option<Node> = None;
    loop {
        let event = reader.read_event().map_err(|e| e.to_string())?;
        match event {
            Event::Start(e) => {
                if root.is_some() {
                    return Err("content after the root element".into());
                }
                stack.push(start_node(&e)?);
            }
            Event::Empty(e) => {
                let node = start_node(&e)?;
                attach(&mut stack, &mut root, node)?;
            }
            Event::End(_) => {
                let node = stack.pop().ok_or("unbalanced end tag")?;
                attach(&mut stack, &mut root, node)?;
            }
            Event::Text(t) => {
                let s = t.decode().map_err(|e| e.to_string())?;
                match stack.last_mut() {
                    Some(top) => top.text.push_str(&s),
                    None if s.trim().is_empty() => {}
                    None => return Err("text outside the root element".into()),
                }
            }
            Event::CData(t) => {
                if let Some(top) = stack.last_mut() {
                    top.text.push_str(&String::from_utf8_lossy(&t));
                }
            }
            Event::GeneralRef(r) => {
                let ch = match r.resolve_char_ref().map_err(|e| e.to_string())? {
                    Some(c) => c.to_string(),
                    None => {
                        let name = r.decode().map_err(|e| e.to_string())?;
                        resolve_predefined_entity(&name)
                            .ok_or_else(|| format!("unknown entity &{name};"))?
                            .to_string()
                    }
                };
                if let Some(top) = stack.last_mut() {
                    top.text.push_str(&ch);
                }
            }
            Event::Eof => break,
            _ => {}
        }
    }
    if !stack.is_empty() {
        return Err("unclosed element".into());
    }
    root.ok_or_else(|| "no root element".into())
}

fn attach(stack: &mut [Node], root: &mut Option<Node>, node: Node) -> Result<(), String> {
    match stack.last_mut() {
        Some(parent) => parent.children.push(node),
        None if root.is_none() => *root = Some(node),
        None => return Err("more than one root element".into()),
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_with_escapes() {
        let el = El::new("A")
            .attr("x", "a<b&\"c\"")
            .child(El::new("B").text("1 < 2 & 3"));
        let text = el.to_xml();
        let node = parse(&text).expect("parses");
        assert_eq!(node.attr("x"), Some("a<b&\"c\""));
        assert_eq!(node.child("B").map(|b| b.text.as_str()), Some("1 < 2 & 3"));
        assert!(parse("<A><B></A>").is_err());
        assert!(parse("<A/><B/>").is_err());
        assert!(parse("not xml").is_err());
    }
}
