//! `_sort`: orders matches by search parameters, before paging. Dates compare as the instants they start at
//! (so `2009-06` sorts before `2009-06-14`), everything else as text; resources without a value go last
//! whichever the direction, as most servers do.

use super::dates;
use super::search::first_value_text;
use crate::mapping::file::{ParamDef, ParamType};
use crate::mapping::{is_record_identifier, Compartment, Registry};
use crate::tree::Tree;
use std::cmp::Ordering;

/// One resolved sort key.
pub struct SortBy<'a> {
    pub def: &'a ParamDef,
    pub descending: bool,
}

/// Orders by the keys asked for; where they tie, or without `_sort`, by [`default_order`]'s keys, so that
/// the same question gets its matches in the same order whichever system the practice runs (native replies
/// come in each supplier's own order).
pub fn sort(resources: &mut [Tree], keys: &[SortBy], default: Option<&SortBy>) {
    let mut keyed: Vec<(String, Tree)> = resources
        .iter_mut()
        .map(|r| (content_key(r), std::mem::take(r)))
        .collect();
    keyed.sort_by(|(content_a, a), (content_b, b)| {
        for key in keys.iter().chain(default) {
            let ordering = compare(key.def, a, b, key.descending);
            if ordering != Ordering::Equal {
                return ordering;
            }
        }
        content_a.cmp(content_b)
    });
    for (slot, (_, resource)) in resources.iter_mut().zip(keyed) {
        *slot = resource;
    }
}

/// Orders a type's resources as a search of it does: by the keys asked for, then the type's
/// [`default_order`] (practice data is not in a patient's compartment).
pub fn sort_as_searched(registry: &Registry, resource_type: &str, resources: &mut [Tree], keys: &[SortBy]) {
    let practice_data = registry.compartment_of(resource_type) == Some(Compartment::None);
    let default = default_order(registry.first_date_param(resource_type), practice_data);
    sort(resources, keys, default.as_ref());
}

/// The order without `_sort`: a type's first date parameter (its clinical or booking date), newest first for
/// the items of a record, earliest first for practice data (sessions and slots ahead).
fn default_order(date: Option<&ParamDef>, practice_data: bool) -> Option<SortBy<'_>> {
    date.map(|def| SortBy {
        def,
        descending: !practice_data,
    })
}

/// A resource's content as text without what differs between practices for the same data (ids, meta,
/// references, links, the native record's own key): the last tie-break, the same at every supplier.
fn content_key(resource: &Tree) -> String {
    fn write(value: &Tree, out: &mut String) {
        match value {
            Tree::Object(map) => {
                out.push('{');
                for (key, item) in map {
                    if !matches!(key, "id" | "meta" | "reference" | "url" | "fullUrl") {
                        out.push_str(key);
                        out.push(':');
                        write(item, out);
                        out.push(',');
                    }
                }
                out.push('}');
            }
            Tree::Array(items) => {
                out.push('[');
                for item in items.iter().filter(|item| !is_record_identifier(item)) {
                    write(item, out);
                    out.push(',');
                }
                out.push(']');
            }
            other => out.push_str(&other.to_string()),
        }
    }
    let mut out = String::new();
    write(resource, &mut out);
    out
}

fn compare(def: &ParamDef, a: &Tree, b: &Tree, descending: bool) -> Ordering {
    let (a, b) = (first_value_text(a, &def.paths), first_value_text(b, &def.paths));
    match (a, b) {
        (None, None) => Ordering::Equal,
        (None, Some(_)) => Ordering::Greater,
        (Some(_), None) => Ordering::Less,
        (Some(a), Some(b)) => {
            let ordering = if def.kind == ParamType::Date {
                // A value that is no date sorts as missing (last), so the order stays total.
                match (dates::range(&a), dates::range(&b)) {
                    (Some(ra), Some(rb)) => ra.0.cmp(&rb.0),
                    (Some(_), None) => return Ordering::Less,
                    (None, Some(_)) => return Ordering::Greater,
                    (None, None) => Ordering::Equal,
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

    #[test]
    fn dates_sort_by_their_start_and_missing_values_go_last() {
        let def = ParamDef {
            target: None,
            name: "date".into(),
            kind: ParamType::Date,
            paths: vec!["effectiveDateTime".into()],
            documentation: None,
        };
        let mut list = vec![
            crate::tree!({ "id": "b", "effectiveDateTime": "2009-06-14" }),
            crate::tree!({ "id": "none" }),
            crate::tree!({ "id": "a", "effectiveDateTime": "2009-06" }),
            crate::tree!({ "id": "c", "effectiveDateTime": "2021-01-02T10:00:00+00:00" }),
        ];
        sort(
            &mut list,
            &[SortBy {
                def: &def,
                descending: false,
            }],
            None,
        );
        let ids: Vec<&str> = list.iter().map(|r| r["id"].as_str().unwrap()).collect();
        assert_eq!(ids, ["a", "b", "c", "none"]);
        sort(
            &mut list,
            &[SortBy {
                def: &def,
                descending: true,
            }],
            None,
        );
        let ids: Vec<&str> = list.iter().map(|r| r["id"].as_str().unwrap()).collect();
        assert_eq!(ids, ["c", "b", "a", "none"]);
    }

    #[test]
    fn the_last_tie_break_sets_native_record_keys_aside_but_not_other_identifiers() {
        let item = |key: &str, other: &str| {
            crate::tree!({
                "identifier": [
                    { "system": format!("{}emis/Y90001/Observation", crate::mapping::RECORD_IDENTIFIER_SYSTEM), "value": key },
                    { "system": "https://example.org/other", "value": other }
                ],
                "status": "final"
            })
        };
        assert_eq!(content_key(&item("A-1", "x")), content_key(&item("B-2", "x")));
        assert_ne!(content_key(&item("A-1", "x")), content_key(&item("A-1", "y")));
    }
}
