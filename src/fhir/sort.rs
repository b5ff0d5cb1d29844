//! `_sort`: orders matches by search parameters, before paging. Dates compare as the instants they start at
//! (so `2009-06` sorts before `2009-06-14`), everything else as text; resources without a value go last
//! whichever the direction, as most servers do.

use super::dates;
use super::search::first_value_text;
use crate::mapping::file::{ParamDef, ParamType};
use serde_json::Value;
use std::cmp::Ordering;

/// One resolved sort key.
pub struct SortBy<'a> {
    pub def: &'a ParamDef,
    pub descending: bool,
}

pub fn sort(resources: &mut [Value], keys: &[SortBy]) {
    if keys.is_empty() {
        return;
    }
    resources.sort_by(|a, b| {
        for key in keys {
            let ordering = compare(key.def, a, b, key.descending);
            if ordering != Ordering::Equal {
                return ordering;
            }
        }
        Ordering::Equal
    });
}

fn compare(def: &ParamDef, a: &Value, b: &Value, descending: bool) -> Ordering {
    let (a, b) = (first_value_text(a, &def.paths), first_value_text(b, &def.paths));
    match (a, b) {
        (None, None) => Ordering::Equal,
        (None, Some(_)) => Ordering::Greater,
        (Some(_), None) => Ordering::Less,
        (Some(a), Some(b)) => {
            let ordering = if def.kind == ParamType::Date {
                match (dates::range(&a), dates::range(&b)) {
                    (Some(ra), Some(rb)) => ra.0.cmp(&rb.0),
                    _ => a.cmp(&b),
                }
            } else {
                a.to_lowercase().cmp(&b.to_lowercase())
            };
            if descending {
                ordering.reverse()
            } else {
                ordering
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn dates_sort_by_their_start_and_missing_values_go_last() {
        let def = ParamDef {
            target: None,
            name: "date".into(),
            kind: ParamType::Date,
            paths: vec!["effectiveDateTime".into()],
        };
        let mut list = vec![
            json!({ "id": "b", "effectiveDateTime": "2009-06-14" }),
            json!({ "id": "none" }),
            json!({ "id": "a", "effectiveDateTime": "2009-06" }),
            json!({ "id": "c", "effectiveDateTime": "2021-01-02T10:00:00+00:00" }),
        ];
        sort(
            &mut list,
            &[SortBy {
                def: &def,
                descending: false,
            }],
        );
        let ids: Vec<&str> = list.iter().map(|r| r["id"].as_str().unwrap()).collect();
        assert_eq!(ids, ["a", "b", "c", "none"]);
        sort(
            &mut list,
            &[SortBy {
                def: &def,
                descending: true,
            }],
        );
        let ids: Vec<&str> = list.iter().map(|r| r["id"].as_str().unwrap()).collect();
        assert_eq!(ids, ["c", "b", "a", "none"]);
    }
}
