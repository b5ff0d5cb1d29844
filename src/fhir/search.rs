//! Search parameters evaluated on translated resources, as FHIR defines them for each type (token, string,
//! date, reference). Every search is filtered here after translation, so a native call that cannot filter
//! still gives the right answer, and one that can only narrows the work.

use super::dates::{self, Range};
use super::error::{FhirError, FhirResult};
use super::rest::SearchParam;
use crate::mapping::file::{ParamDef, ParamType};
use crate::tree::Tree;
use time::OffsetDateTime;

/// Whether a resource matches every parameter (AND), each matching any of its values (OR).
pub fn matches(resource: &Tree, params: &[(&ParamDef, &SearchParam)]) -> FhirResult<bool> {
    let resource_type = resource.get("resourceType").and_then(Tree::as_str).unwrap_or_default();
    for (def, param) in params {
        let elements = collect(resource, &def.paths);
        // A `code` element's values belong to its value set's code system without naming it.
        let implicit: Vec<&str> = match def.kind {
            ParamType::Token => {
                let defs = crate::mapping::profile::Defs::get();
                let systems = def.paths.iter().flat_map(|p| defs.implicit_systems(resource_type, p));
                systems.map(String::as_str).collect()
            }
            _ => Vec::new(),
        };
        // `:not=a,b` is "none of a, b" (as R5 spells out): each value "not a" OR "not b" would match anything.
        let negated = def.kind == ParamType::Token && param.modifier.as_deref() == Some("not");
        let modifier = param.modifier.as_deref().filter(|_| !negated);
        let mut any = false;
        for value in &param.values {
            if value_matches(def, modifier, value, &elements, &implicit)? {
                any = true;
                break;
            }
        }
        if any == negated {
            return Ok(false);
        }
    }
    Ok(true)
}

/// Checks a parameter's modifier and values before any native call, so bad input is a 400 up front.
pub fn validate(def: &ParamDef, param: &SearchParam) -> FhirResult<()> {
    let allowed: &[&str] = match def.kind {
        ParamType::Token => &["not", "text"],
        ParamType::String => &["exact", "contains"],
        ParamType::Date => &[],
        ParamType::Reference => &[],
    };
    if let Some(modifier) = &param.modifier {
        if !allowed.contains(&modifier.as_str()) {
            return Err(FhirError::bad_request(
                "IM1-1202",
                format!(
                    "modifier ':{modifier}' is not supported on {} parameter '{}'",
                    def.kind.name(),
                    def.name
                ),
            )
            .at(def.name.clone()));
        }
    }
    if def.kind == ParamType::Date {
        for value in &param.values {
            let (_, text) = date_prefix(value);
            if dates::range(text).is_none() {
                return Err(FhirError::bad_request(
                    "IM1-1203",
                    format!(
                        "'{}' is not a FHIR date for parameter '{}'",
                        text.chars().take(40).collect::<String>(),
                        def.name
                    ),
                )
                .at(def.name.clone()));
            }
        }
    }
    Ok(())
}

/// The first value at a parameter's paths as text: a string, a number, a Period's start, a coding's code, a
/// reference. For `_sort`.
pub fn first_value_text(resource: &Tree, paths: &[String]) -> Option<String> {
    collect(resource, paths).into_iter().find_map(|v| match v {
        Tree::String(s) => Some(s.to_string()),
        Tree::Number(n) => Some(n.to_string()),
        Tree::Object(map) => ["start", "reference", "code", "value", "family", "text"]
            .iter()
            .find_map(|k| map.get(k).and_then(Tree::as_str).map(String::from))
            .or_else(|| {
                map.get("coding")
                    .and_then(|c| c.get(0))
                    .and_then(|c| c.get("code"))
                    .and_then(Tree::as_str)
                    .map(String::from)
            }),
        _ => None,
    })
}

/// Every value at a parameter's paths (arrays are walked into).
pub fn collect<'v>(resource: &'v Tree, paths: &[String]) -> Vec<&'v Tree> {
    let mut out = Vec::new();
    for path in paths {
        let mut current = vec![resource];
        for step in path.split('.') {
            let mut next = Vec::new();
            for value in current {
                match value.get(step) {
                    Some(Tree::Array(items)) => next.extend(items.iter()),
                    Some(v) => next.push(v),
                    None => {}
                }
            }
            current = next;
        }
        out.extend(current);
    }
    out
}

fn value_matches(
    def: &ParamDef,
    modifier: Option<&str>,
    value: &str,
    elements: &[&Tree],
    implicit: &[&str],
) -> FhirResult<bool> {
    Ok(match def.kind {
        // `:text`: the words a code travels with (CodeableConcept.text, Coding.display), searched as a string.
        ParamType::Token if modifier == Some("text") => {
            let wanted = fold(&unescape(value));
            elements
                .iter()
                .flat_map(|e| token_texts(e))
                .any(|t| fold(t).starts_with(&wanted))
        }
        ParamType::Token => elements.iter().any(|e| token_matches(e, value, implicit)),
        ParamType::String => {
            let wanted = fold(&unescape(value));
            elements.iter().flat_map(|e| strings(e)).any(|s| {
                let s_folded = fold(&s);
                match modifier {
                    Some("exact") => s == unescape(value),
                    Some("contains") => s_folded.contains(&wanted),
                    _ => s_folded.starts_with(&wanted),
                }
            })
        }
        ParamType::Date => {
            let (prefix, text) = date_prefix(value);
            let Some(wanted) = dates::range(text) else {
                return Ok(false);
            };
            elements
                .iter()
                .filter_map(|e| element_range(e))
                .any(|have| date_matches(prefix, have, wanted))
        }
        ParamType::Reference => elements.iter().any(|e| {
            e.get("reference")
                .and_then(Tree::as_str)
                .is_some_and(|r| def.follows(r) && (r == value || r.ends_with(&format!("/{value}"))))
        }),
    })
}

/// A token value, `[system|]code`, split on its first unescaped `|`, each part with FHIR's escapes undone
/// (`a\|b|c` is the system `a|b` and the code `c`).
pub fn split_token(value: &str) -> (Option<String>, String) {
    let mut escaped = false;
    for (at, c) in value.char_indices() {
        match c {
            '\\' if !escaped => escaped = true,
            '|' if !escaped => return (Some(unescape(&value[..at])), unescape(&value[at + 1..])),
            _ => escaped = false,
        }
    }
    (None, unescape(value))
}

/// A search value with FHIR's escapes undone (`\,` `\|` `\$` `\\`).
pub fn unescape(value: &str) -> String {
    value
        .replace("\\,", ",")
        .replace("\\|", "|")
        .replace("\\$", "$")
        .replace("\\\\", "\\")
}

/// Case- and accent-insensitive form for string search, as FHIR asks (`Müller` is `muller`): the same
/// folding the simulated GP systems' patient searches use, so that a native search finds at least what the
/// proxy keeps.
fn fold(text: &str) -> String {
    im1_sim::record::fold(text)
}

/// The searchable strings of an element: itself, or the string parts of a HumanName or Address.
fn strings(element: &Tree) -> Vec<String> {
    match element {
        Tree::String(s) => vec![s.to_string()],
        Tree::Object(map) => map
            .iter()
            .filter(|(k, _)| !matches!(*k, "use" | "type" | "period" | "extension" | "id"))
            .flat_map(|(_, v)| match v {
                Tree::String(s) => vec![s.to_string()],
                Tree::Array(items) => items.iter().filter_map(Tree::as_str).map(String::from).collect(),
                _ => vec![],
            })
            .collect(),
        _ => vec![],
    }
}

/// The text of a coded element: its own `text` (CodeableConcept, Identifier.type) and its codings' displays.
fn token_texts(element: &Tree) -> Vec<&str> {
    let mut out = Vec::new();
    if let Some(text) = element.get("text").and_then(Tree::as_str) {
        out.push(text);
    }
    if let Some(text) = element.pointer("/type/text").and_then(Tree::as_str) {
        out.push(text);
    }
    let codings = element.get("coding").and_then(Tree::as_array).into_iter().flatten();
    out.extend(
        codings
            .chain(std::iter::once(element))
            .filter_map(|c| c.get("display").and_then(Tree::as_str)),
    );
    out
}

/// Whether a coded element matches `[system|]code`; a bare `code` value's system is one of `implicit`.
fn token_matches(element: &Tree, wanted: &str, implicit: &[&str]) -> bool {
    let (system, code) = split_token(wanted);
    let (system, code) = (system.as_deref(), code.as_str());
    let pair_matches = |s: Option<&str>, c: Option<&str>| {
        let system_ok = match system {
            None => true,
            Some("") => s.is_none(),
            Some(sys) => s == Some(sys),
        };
        system_ok && (code.is_empty() || c == Some(code))
    };
    match element {
        Tree::String(s) => {
            let system_ok = match system {
                None | Some("") => true,
                Some(system) => implicit.contains(&system),
            };
            system_ok && (s == code || (code.is_empty() && system.is_some_and(|s| !s.is_empty())))
        }
        Tree::Bool(b) => system.is_none() && code == b.to_string(),
        Tree::Object(map) => {
            if let Some(Tree::Array(codings)) = map.get("coding") {
                return codings.iter().any(|c| {
                    pair_matches(
                        c.get("system").and_then(Tree::as_str),
                        c.get("code").and_then(Tree::as_str),
                    )
                });
            }
            let value = map.get("value").or_else(|| map.get("code")).and_then(Tree::as_str);
            pair_matches(map.get("system").and_then(Tree::as_str), value)
        }
        _ => false,
    }
}

/// FHIR date prefixes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Prefix {
    Eq,
    Ne,
    Gt,
    Lt,
    Ge,
    Le,
    Sa,
    Eb,
    Ap,
}

fn date_prefix(value: &str) -> (Prefix, &str) {
    let prefixes = [
        ("eq", Prefix::Eq),
        ("ne", Prefix::Ne),
        ("gt", Prefix::Gt),
        ("lt", Prefix::Lt),
        ("ge", Prefix::Ge),
        ("le", Prefix::Le),
        ("sa", Prefix::Sa),
        ("eb", Prefix::Eb),
        ("ap", Prefix::Ap),
    ];
    for (text, prefix) in prefixes {
        if let Some(rest) = value.strip_prefix(text) {
            return (prefix, rest);
        }
    }
    (Prefix::Eq, value)
}

/// The instants a date search parameter leaves possible, `[from, to)`, each side `None` when open: each
/// repetition of the parameter (`start=ge2026-03-03&start=lt2026-03-10`) narrows the window (AND); the values of
/// one repetition (`date=2026-03-01,2026-03-08`) widen it (OR). `None` overall when no instant is possible (a
/// reversed window): the search matches nothing. A value that sets no bound (`ne`) leaves its repetition open.
pub fn date_window<'a>(
    repetitions: impl IntoIterator<Item = &'a [String]>,
) -> Option<(Option<OffsetDateTime>, Option<OffsetDateTime>)> {
    let (mut from, mut to): (Option<OffsetDateTime>, Option<OffsetDateTime>) = (None, None);
    for values in repetitions {
        let (lower, upper) = any_of(values);
        if let Some(lower) = lower {
            from = Some(from.map_or(lower, |f| f.max(lower)));
        }
        if let Some(upper) = upper {
            to = Some(to.map_or(upper, |t| t.min(upper)));
        }
    }
    match (from, to) {
        (Some(f), Some(t)) if f >= t => None,
        window => Some(window),
    }
}

/// The window of one repetition: the widest of its values, open on a side if any value is.
fn any_of(values: &[String]) -> (Option<OffsetDateTime>, Option<OffsetDateTime>) {
    let mut windows = values.iter().map(|value| one_value(value));
    let Some(first) = windows.next() else {
        return (None, None);
    };
    windows.fold(first, |(lower, upper), (l, u)| {
        (lower.zip(l).map(|(a, b)| a.min(b)), upper.zip(u).map(|(a, b)| a.max(b)))
    })
}

/// The window one value (`ge2026-03-03`, `2026-03`, `ap2026-03-03`) leaves possible.
fn one_value(value: &str) -> (Option<OffsetDateTime>, Option<OffsetDateTime>) {
    let (prefix, text) = date_prefix(value);
    let Some((start, end)) = dates::range(text) else {
        return (None, None);
    };
    match prefix {
        Prefix::Eq => (Some(start), Some(end)),
        Prefix::Ge => (Some(start), None),
        Prefix::Gt | Prefix::Sa => (Some(end), None),
        Prefix::Le => (None, Some(end)),
        Prefix::Lt | Prefix::Eb => (None, Some(start)),
        Prefix::Ap => {
            let slack = (end - start).max(time::Duration::days(1));
            (
                Some(start.checked_sub(slack).unwrap_or(dates::FIRST)),
                Some(end.checked_add(slack).unwrap_or(dates::LAST)),
            )
        }
        Prefix::Ne => (None, None),
    }
}

fn element_range(element: &Tree) -> Option<Range> {
    match element {
        Tree::String(s) => dates::range(s),
        Tree::Object(map) => {
            let start = map
                .get("start")
                .and_then(Tree::as_str)
                .and_then(dates::range)
                .map(|r| r.0);
            let end = map
                .get("end")
                .and_then(Tree::as_str)
                .and_then(dates::range)
                .map(|r| r.1);
            match (start, end) {
                (Some(s), Some(e)) => Some((s, e)),
                (Some(s), None) => Some((s, dates::LAST)),
                (None, Some(e)) => Some((dates::FIRST, e)),
                (None, None) => None,
            }
        }
        _ => None,
    }
}

fn date_matches(prefix: Prefix, have: Range, wanted: Range) -> bool {
    let (hs, he) = have;
    let (ws, we) = wanted;
    match prefix {
        Prefix::Eq => hs >= ws && he <= we,
        Prefix::Ne => !(hs >= ws && he <= we),
        Prefix::Gt => he > we,
        Prefix::Lt => hs < ws,
        Prefix::Ge => he > ws,
        Prefix::Le => hs < we,
        Prefix::Sa => hs >= we,
        Prefix::Eb => he <= ws,
        Prefix::Ap => {
            let slack = (we - ws).max(time::Duration::days(1));
            // Saturated at the ends of time rather than overflowing.
            hs < we.checked_add(slack).unwrap_or(dates::LAST) && he > ws.checked_sub(slack).unwrap_or(dates::FIRST)
        }
    }
}

#[cfg(test)]
mod tests {

    #[test]
    fn names_fold_without_case_or_accents() {
        assert_eq!(fold("Müller-Brontë"), "muller-bronte");
        assert_eq!(fold("ÉLODIE"), "elodie");
        assert_eq!(fold("Ålesund"), "alesund");
    }

    use super::*;

    #[test]
    fn tokens_split_on_their_first_unescaped_bar_and_match_as_meant() {
        let split = |v: &str| split_token(v);
        assert_eq!(
            split("http://snomed.info/sct|123"),
            (Some("http://snomed.info/sct".into()), "123".into())
        );
        assert_eq!(split("123"), (None, "123".into()));
        assert_eq!(split("|123"), (Some(String::new()), "123".into()));
        assert_eq!(split("a\\|b|c\\,d"), (Some("a|b".into()), "c,d".into()));
        assert_eq!(split("a\\\\|b"), (Some("a\\".into()), "b".into()));
        let coded = crate::tree!({"coding": [{"system": "urn:x", "code": "c,d"}]});
        assert!(token_matches(&coded, "urn:x|c\\,d", &[]));
        assert!(!token_matches(&coded, "urn:y|c\\,d", &[]));
    }

    #[test]
    fn date_windows_combine_every_bound() {
        let at = |t: &str| dates::range(t).unwrap().0;
        let window = |repetitions: &[&[&str]]| {
            let owned: Vec<Vec<String>> = repetitions
                .iter()
                .map(|values| values.iter().map(|v| v.to_string()).collect())
                .collect();
            date_window(owned.iter().map(Vec::as_slice))
        };
        assert_eq!(
            window(&[&["ge2026-03"], &["lt2026-03-10"]]),
            Some((Some(at("2026-03-01")), Some(at("2026-03-10"))))
        );
        assert_eq!(window(&[&["gt2026-03-01"]]), Some((Some(at("2026-03-02")), None)));
        assert_eq!(window(&[&["le2026-03-01"]]), Some((None, Some(at("2026-03-02")))));
        assert_eq!(
            window(&[&["2026-03-01"]]),
            Some((Some(at("2026-03-01")), Some(at("2026-03-02"))))
        );
        assert_eq!(window(&[&["ne2026-03-01"]]), Some((None, None)));
        assert_eq!(window(&[&["ge2026-03-08"], &["lt2026-03-07"]]), None);
        assert_eq!(window(&[&["gt2026-03-07"], &["lt2026-03-08"]]), None);
        // A comma is "any of": the window spans them, and one open value opens its side.
        assert_eq!(
            window(&[&["2026-01-01", "2026-02-01"]]),
            Some((Some(at("2026-01-01")), Some(at("2026-02-02"))))
        );
        assert_eq!(
            window(&[&["2026-01-01", "ge2026-02-01"]]),
            Some((Some(at("2026-01-01")), None))
        );
    }

    fn def(kind: ParamType, path: &str) -> ParamDef {
        ParamDef {
            target: None,
            name: "p".into(),
            kind,
            paths: vec![path.into()],
            documentation: None,
        }
    }

    fn param(values: &[&str], modifier: Option<&str>) -> SearchParam {
        SearchParam {
            name: "p".into(),
            modifier: modifier.map(String::from),
            values: values.iter().map(|v| v.to_string()).collect(),
        }
    }

    #[test]
    fn tokens_match_their_text_with_the_text_modifier() {
        let slot = crate::tree!({"serviceType": [{"text": "GP Routine"}],
                          "code": {"coding": [{"system": "s", "code": "1", "display": "Blood pressure"}]}});
        let d = def(ParamType::Token, "serviceType");
        assert!(matches(&slot, &[(&d, &param(&["gp rout"], Some("text")))]).unwrap());
        assert!(!matches(&slot, &[(&d, &param(&["routine"], Some("text")))]).unwrap());
        let c = def(ParamType::Token, "code");
        assert!(matches(&slot, &[(&c, &param(&["blood"], Some("text")))]).unwrap());
    }

    #[test]
    fn a_code_matches_with_its_implicit_system_and_no_other() {
        let patient = crate::tree!({"resourceType": "Patient", "gender": "female"});
        let gender = def(ParamType::Token, "gender");
        let hit = |value: &str| matches(&patient, &[(&gender, &param(&[value], None))]).unwrap();
        assert!(hit("female"));
        assert!(hit("http://hl7.org/fhir/administrative-gender|female"));
        assert!(hit("http://hl7.org/fhir/administrative-gender|"));
        assert!(!hit("http://hl7.org/fhir/administrative-gender|male"));
        assert!(!hit("http://hl7.org/fhir/observation-status|female"));
        assert!(!hit("male"));
    }

    #[test]
    fn tokens_match_identifiers_and_codings() {
        let patient = crate::tree!({"identifier": [{"system": "https://fhir.nhs.uk/Id/nhs-number", "value": "9000000009"}],
                             "gender": "female"});
        let d = def(ParamType::Token, "identifier");
        assert!(matches(
            &patient,
            &[(&d, &param(&["https://fhir.nhs.uk/Id/nhs-number|9000000009"], None))]
        )
        .unwrap());
        assert!(matches(&patient, &[(&d, &param(&["9000000009"], None))]).unwrap());
        assert!(!matches(&patient, &[(&d, &param(&["other|9000000009"], None))]).unwrap());
        let g = def(ParamType::Token, "gender");
        assert!(matches(&patient, &[(&g, &param(&["male", "female"], None))]).unwrap());
        assert!(!matches(&patient, &[(&g, &param(&["female"], Some("not")))]).unwrap());
        assert!(matches(&patient, &[(&g, &param(&["male"], Some("not")))]).unwrap());
        // A list under `:not` is none of its values.
        assert!(!matches(&patient, &[(&g, &param(&["male", "female"], Some("not")))]).unwrap());
        assert!(matches(&patient, &[(&g, &param(&["male", "other"], Some("not")))]).unwrap());
    }

    #[test]
    fn strings_are_prefix_and_case_insensitive() {
        let patient = crate::tree!({"name": [{"family": "Tester", "given": ["Alex"]}]});
        let d = def(ParamType::String, "name");
        assert!(matches(&patient, &[(&d, &param(&["tes"], None))]).unwrap());
        assert!(matches(&patient, &[(&d, &param(&["ale"], None))]).unwrap());
        assert!(!matches(&patient, &[(&d, &param(&["tes"], Some("exact")))]).unwrap());
        assert!(matches(&patient, &[(&d, &param(&["este"], Some("contains")))]).unwrap());
    }

    #[test]
    fn dates_compare_as_ranges() {
        let patient = crate::tree!({"birthDate": "1985-04-12"});
        let d = def(ParamType::Date, "birthDate");
        for (query, expected) in [
            ("1985", true),
            ("1985-04-12", true),
            ("gt1985-01-01", true),
            ("lt1985-04-12", false),
            ("le1985-04-12", true),
            ("ge1986", false),
            ("ne1985", false),
            ("eq1985-05", false),
        ] {
            assert_eq!(
                matches(&patient, &[(&d, &param(&[query], None))]).unwrap(),
                expected,
                "{query}"
            );
        }
        assert!(validate(&d, &param(&["gtnonsense"], None)).is_err());
    }
}
