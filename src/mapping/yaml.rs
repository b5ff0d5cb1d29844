//! Mapping files as a YAML tree that remembers where every node came from, so that every problem can be
//! reported as `file:line:col: key.path: message`.

use saphyr::{LoadableYamlNode, MarkedYaml, Scalar, YamlData};

/// A position in a file (1-based line and column).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Pos {
    pub line: usize,
    pub col: usize,
}

/// A YAML node with its position.
#[derive(Debug, Clone, PartialEq)]
pub struct Node {
    pub pos: Pos,
    pub value: NodeValue,
}

#[derive(Debug, Clone, PartialEq)]
pub enum NodeValue {
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(String),
    Seq(Vec<Node>),
    /// Keys keep their own positions; order is the file's.
    Map(Vec<(String, Pos, Node)>),
}

impl Node {
    pub fn get(&self, key: &str) -> Option<&Node> {
        match &self.value {
            NodeValue::Map(entries) => entries.iter().find(|(k, _, _)| k == key).map(|(_, _, v)| v),
            _ => None,
        }
    }

    pub fn as_str(&self) -> Option<&str> {
        match &self.value {
            NodeValue::Str(s) => Some(s),
            _ => None,
        }
    }

    pub fn entries(&self) -> &[(String, Pos, Node)] {
        match &self.value {
            NodeValue::Map(entries) => entries,
            _ => &[],
        }
    }

    pub fn kind(&self) -> &'static str {
        match self.value {
            NodeValue::Null => "null",
            NodeValue::Bool(_) => "a boolean",
            NodeValue::Int(_) | NodeValue::Float(_) => "a number",
            NodeValue::Str(_) => "a string",
            NodeValue::Seq(_) => "a list",
            NodeValue::Map(_) => "a mapping",
        }
    }
}

/// A YAML syntax error with its position.
#[derive(Debug, Clone)]
pub struct SyntaxError {
    pub pos: Pos,
    pub message: String,
}

/// Parses one YAML document.
pub fn parse(text: &str) -> Result<Node, SyntaxError> {
    let docs = MarkedYaml::load_from_str(text).map_err(|e| SyntaxError {
        pos: Pos {
            line: e.marker().line(),
            col: e.marker().col() + 1,
        },
        message: e.info().to_string(),
    })?;
    match docs.into_iter().next() {
        Some(doc) => convert(&doc),
        None => Ok(Node {
            pos: Pos { line: 1, col: 1 },
            value: NodeValue::Null,
        }),
    }
}

fn convert(node: &MarkedYaml) -> Result<Node, SyntaxError> {
    let pos = Pos {
        line: node.span.start.line(),
        col: node.span.start.col() + 1,
    };
    let value = match &node.data {
        YamlData::Value(scalar) => scalar_value(scalar),
        YamlData::Representation(text, _, _) => NodeValue::Str(text.to_string()),
        YamlData::Sequence(items) => NodeValue::Seq(items.iter().map(convert).collect::<Result<_, _>>()?),
        YamlData::Mapping(map) => {
            let mut entries = Vec::with_capacity(map.len());
            for (key, value) in map.iter() {
                let key_pos = Pos {
                    line: key.span.start.line(),
                    col: key.span.start.col() + 1,
                };
                let name = match &key.data {
                    YamlData::Value(Scalar::String(s)) => s.to_string(),
                    YamlData::Value(other) => scalar_text(other),
                    _ => {
                        return Err(SyntaxError {
                            pos: key_pos,
                            message: "mapping keys must be plain scalars".into(),
                        })
                    }
                };
                entries.push((name, key_pos, convert(value)?));
            }
            NodeValue::Map(entries)
        }
        YamlData::Tagged(_, inner) => return convert(inner),
        YamlData::Alias(_) | YamlData::BadValue => {
            return Err(SyntaxError {
                pos,
                message: "aliases and invalid values are not allowed in mapping files".into(),
            })
        }
    };
    Ok(Node { pos, value })
}

fn scalar_value(scalar: &Scalar) -> NodeValue {
    match scalar {
        Scalar::Null => NodeValue::Null,
        Scalar::Boolean(b) => NodeValue::Bool(*b),
        Scalar::Integer(i) => NodeValue::Int(*i),
        Scalar::FloatingPoint(f) => NodeValue::Float(f.into_inner()),
        Scalar::String(s) => NodeValue::Str(s.to_string()),
    }
}

fn scalar_text(scalar: &Scalar) -> String {
    match scalar {
        Scalar::Null => "null".into(),
        Scalar::Boolean(b) => b.to_string(),
        Scalar::Integer(i) => i.to_string(),
        Scalar::FloatingPoint(f) => f.to_string(),
        Scalar::String(s) => s.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_are_kept_for_keys_and_values() {
        let node = parse("resource: Patient\ntemplate:\n  gender: \"{{ r.Sex }}\"\n").unwrap();
        let template = node.get("template").unwrap();
        let (key, key_pos, value) = &template.entries()[0];
        assert_eq!(key, "gender");
        assert_eq!(*key_pos, Pos { line: 3, col: 3 });
        assert_eq!(value.pos.line, 3);
        assert_eq!(value.as_str(), Some("{{ r.Sex }}"));
    }

    #[test]
    fn syntax_errors_have_positions() {
        let error = parse("a: [1, 2\nb: 3\n").unwrap_err();
        assert!(error.pos.line >= 1, "{error:?}");
    }
}
