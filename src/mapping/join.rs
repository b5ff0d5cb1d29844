//! Joining the pages of one native record: a step's `join` says that every record its pages select is a
//! piece of one record (a SystmOne document comes in pages of 64 KiB of content), and how the pieces' fields
//! become one.
//!
//! ```yaml
//! join: { base64: [data], count: pages }   # each page's `data` is base64: decode each, join the bytes, encode
//!                                          # again; the first page's `pages` says how many pages there are
//! ```
//!
//! Base64 pieces cannot be joined as text: a page of 65,536 bytes ends in padding, which is only allowed at
//! the very end. Fields not named come from the first piece. A missing piece, or a piece without its content,
//! is a fault of the native reply, never a shorter document.

use super::problem::{child, Problems};
use super::yaml::{Node, NodeValue};
use crate::tree::Tree;
use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;

/// How the pieces of one record become one.
#[derive(Debug, Default)]
pub struct Join {
    /// Fields whose pieces are base64 content.
    pub base64: Vec<String>,
    /// The field of the first piece that gives the number of pieces, when the native reply says.
    pub count: Option<String>,
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
                ("count", NodeValue::Str(field)) => join.count = Some(field.clone()),
                ("count", _) => problems.add(file, value.pos, &key_path, "count names one field"),
                (other, _) => problems.add(
                    file,
                    *key_pos,
                    &key_path,
                    format!("unknown join key '{other}' (known: base64, count)"),
                ),
            }
        }
        if join.base64.is_empty() {
            problems.add(file, node.pos, path, "join names no field to join (base64: [...])");
        }
        join
    }

    /// The one record the pieces make; none when there are no pieces. A piece that is not an object, a piece
    /// without a named field, or fewer or more pieces than the first says, is a fault of the native reply.
    pub fn apply(&self, pieces: Vec<Tree>) -> Result<Option<Tree>, String> {
        if let (Some(field), Some(first)) = (&self.count, pieces.first()) {
            let expected = match first.get(field) {
                Some(Tree::String(text)) => text.trim().parse::<usize>().ok(),
                Some(Tree::Number(n)) => n.as_u64().and_then(|n| usize::try_from(n).ok()),
                _ => None,
            }
            .ok_or_else(|| format!("the first page's '{field}' is not a number of pages"))?;
            if expected != pieces.len() {
                return Err(format!(
                    "{} pages read of the {expected} the first page gives",
                    pieces.len()
                ));
            }
        }
        // One piece is the record as it is.
        if pieces.len() <= 1 {
            return Ok(pieces.into_iter().next());
        }
        let mut pieces = pieces.into_iter();
        let (Some(Tree::Object(mut record)), rest) = (pieces.next(), pieces.collect::<Vec<_>>()) else {
            return Err("a page's record is not an object".into());
        };
        let rest = rest
            .iter()
            .map(|piece| piece.as_object().ok_or("a page's record is not an object"))
            .collect::<Result<Vec<_>, _>>()?;
        for field in &self.base64 {
            let mut bytes = Vec::new();
            for piece in std::iter::once(&record).chain(rest.iter().copied()) {
                let Some(Tree::String(text)) = piece.get(field) else {
                    return Err(format!("a page has no '{field}' text"));
                };
                // Native base64 may be wrapped over lines.
                let compact: String = text.chars().filter(|c| !c.is_ascii_whitespace()).collect();
                STANDARD
                    .decode_vec(compact.as_bytes(), &mut bytes)
                    .map_err(|e| format!("'{field}' of a page is not base64: {e}"))?;
            }
            record.insert(field.clone(), Tree::from(STANDARD.encode(&bytes)));
        }
        Ok(Some(Tree::Object(record)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn join() -> Join {
        Join {
            base64: vec!["data".into()],
            count: Some("pages".into()),
        }
    }

    #[test]
    fn pages_of_base64_become_one_content() {
        let content: Vec<u8> = (0..200_000u32).map(|i| (i * 7 % 251) as u8).collect();
        let pages: Vec<Tree> = content
            .chunks(65_536)
            .map(|chunk| crate::tree!({ "key": "d1", "pages": "4", "contentType": "application/pdf", "data": STANDARD.encode(chunk) }))
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
    fn a_missing_or_broken_page_is_an_error_and_no_pages_is_nothing() {
        let page = |data: &str| crate::tree!({ "pages": "2", "data": data });
        assert!(join().apply(vec![page("aGVs"), page("not base64!")]).is_err());
        assert!(
            join()
                .apply(vec![page("aGVs"), crate::tree!({ "pages": "2" })])
                .is_err(),
            "no content"
        );
        assert!(join().apply(vec![page("aGVs"), crate::tree!("text")]).is_err());
        assert!(join().apply(vec![page("aGVs")]).is_err(), "one page of two");
        assert!(
            join().apply(vec![crate::tree!({ "data": "aGVs" })]).is_err(),
            "no count"
        );
        assert_eq!(join().apply(Vec::new()).unwrap(), None);
        let wrapped = vec![page("aGVs\nbG8="), page("IQ==")];
        assert_eq!(join().apply(wrapped).unwrap().unwrap()["data"], "aGVsbG8h");
        // One page is the record as it is.
        let one = crate::tree!({ "pages": 1, "data": "aGVsbG8=" });
        assert_eq!(join().apply(vec![one.clone()]).unwrap(), Some(one));
    }
}
