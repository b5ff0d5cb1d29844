//! Joining the pages of one native record: a step's `join` says that every record its pages select is a
//! piece of one record (a SystmOne document comes in pages of 64 KiB of content), and how the pieces' fields
//! become one.
//!
//! ```yaml
//! join: { base64: [data] }   # each page's `data` is base64: decode each, join the bytes, encode again
//! ```
//!
//! Base64 pieces cannot be joined as text: a page of 65,536 bytes ends in padding, which is only allowed at
//! the very end. Fields not named come from the first piece.

use super::problem::{child, Problems};
use super::yaml::{Node, NodeValue};
use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use serde_json::Value;

/// How the pieces of one record become one.
#[derive(Debug, Default)]
pub struct Join {
    /// Fields whose pieces are base64 content.
    pub base64: Vec<String>,
}

impl Join {
    /// Compiles a `join` node; problems go to `problems`.
    pub fn compile(file: &str, node: &Node, path: &str, problems: &mut Problems) -> Join {
        let mut join = Join::default();
        let NodeValue::Map(_) = &node.value else {
            problems.add(file, node.pos, path, "join must be a map, such as { base64: [data] }");
            return join;
        };
        for (key, key_pos, value) in node.entries() {
            let key_path = child(path, key);
            match (key.as_str(), &value.value) {
                ("base64", NodeValue::Seq(items)) => {
                    for item in items {
                        match item.as_str() {
                            Some(field) => join.base64.push(field.to_string()),
                            None => problems.add(file, item.pos, &key_path, "a field name is a string"),
                        }
                    }
                }
                ("base64", _) => problems.add(file, value.pos, &key_path, "base64 lists field names"),
                (other, _) => problems.add(
                    file,
                    *key_pos,
                    &key_path,
                    format!("unknown join key '{other}' (known: base64)"),
                ),
            }
        }
        join
    }

    /// The one record the pieces make; none when there are no pieces. A piece that is not an object, or a
    /// named field that is not base64 text, is a fault of the native reply.
    pub fn apply(&self, pieces: Vec<Value>) -> Result<Option<Value>, String> {
        let mut pieces = pieces.into_iter();
        let Some(mut first) = pieces.next() else {
            return Ok(None);
        };
        let rest: Vec<Value> = pieces.collect();
        let Some(record) = first.as_object_mut() else {
            return Err("a page's record is not an object".into());
        };
        for field in &self.base64 {
            let mut bytes = Vec::new();
            for piece in std::iter::once(&*record).chain(rest.iter().filter_map(Value::as_object)) {
                let text = match piece.get(field) {
                    None | Some(Value::Null) => continue,
                    Some(Value::String(text)) => text,
                    Some(_) => return Err(format!("'{field}' of a page is not text")),
                };
                // Native base64 may be wrapped over lines.
                let compact: String = text.chars().filter(|c| !c.is_ascii_whitespace()).collect();
                STANDARD
                    .decode_vec(compact.as_bytes(), &mut bytes)
                    .map_err(|e| format!("'{field}' of a page is not base64: {e}"))?;
            }
            record.insert(field.clone(), Value::String(STANDARD.encode(&bytes)));
        }
        Ok(Some(first))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn join() -> Join {
        Join {
            base64: vec!["data".into()],
        }
    }

    #[test]
    fn pages_of_base64_become_one_content() {
        let content: Vec<u8> = (0..200_000u32).map(|i| (i * 7 % 251) as u8).collect();
        let pages: Vec<Value> = content
            .chunks(65_536)
            .map(|chunk| json!({ "key": "d1", "contentType": "application/pdf", "data": STANDARD.encode(chunk) }))
            .collect();
        assert_eq!(pages.len(), 4);
        // Every full page ends in padding, so the pieces cannot be joined as text.
        assert!(pages[0]["data"].as_str().unwrap().ends_with('='));
        let one = join().apply(pages).unwrap().unwrap();
        assert_eq!(STANDARD.decode(one["data"].as_str().unwrap()).unwrap(), content);
        assert_eq!(one["key"], "d1");
        assert_eq!(one["contentType"], "application/pdf");
    }

    #[test]
    fn a_broken_page_is_an_error_and_no_pages_is_nothing() {
        assert!(join().apply(vec![json!({ "data": "not base64!" })]).is_err());
        assert!(join().apply(vec![json!("text")]).is_err());
        assert_eq!(join().apply(Vec::new()).unwrap(), None);
        let wrapped = json!({ "data": "aGVs\nbG8=" });
        assert_eq!(join().apply(vec![wrapped]).unwrap().unwrap()["data"], "aGVsbG8=");
    }
}
