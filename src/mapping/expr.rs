//! Expressions in mapping files: minijinja expressions inside `{{ }}`.
//!
//! Measured (see design.md): an expression engine per leaf costs about twice a direct lookup, so a leaf
//! that is a plain field path (`r.Address.Postcode`, `r.Items[0]`) is compiled to a direct lookup on the
//! JSON tree, and only real expressions (conditions, filters, functions) go to minijinja.
//! Functions registered here: `translate(map, code)`, `coding(map, code)`, `date(value, precision)`,
//! `instant(value)`, `join_nonempty(sep, ...)`, `house_and_street(house, street)`, `reference(type, key)`, `add_minutes(instant, minutes)`,
//! `local_instant(uk_wall_clock)`, `decimal(value, places)` (a number keeping its recorded digits; see
//! `call::decimal`), and
//! the filter `flatten` (one level of nested lists, for replies that nest records in groups).
//! `partial(name, ...)` is recognised when it is a whole leaf.

use super::concept_map::{ConceptMap, ConceptMaps};
use crate::tree::Tree;
use minijinja::value::Rest;
use minijinja::{Environment, Error, ErrorKind, UndefinedBehavior, Value as JValue};
use std::sync::Arc;

/// One step of a direct path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    Key(String),
    Index(usize),
}

/// A plain path such as `r.Address.Postcode`: a root variable and steps.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Path {
    pub root: String,
    pub steps: Vec<Step>,
    /// Read clean whatever binds the root: a path an inlined partial reads through its argument, as the
    /// partial read its parameter (see `inline`).
    pub clean: bool,
}

impl Path {
    /// Parses `root(.key|[n])*`, or returns None when the text is anything else.
    pub fn parse(text: &str) -> Option<Path> {
        let text = text.trim();
        let mut chars = text.char_indices().peekable();
        let ident = |chars: &mut std::iter::Peekable<std::str::CharIndices>| -> Option<String> {
            let mut out = String::new();
            while let Some(&(_, c)) = chars.peek() {
                if c.is_ascii_alphanumeric() || c == '_' {
                    out.push(c);
                    chars.next();
                } else {
                    break;
                }
            }
            (!out.is_empty() && !out.starts_with(|c: char| c.is_ascii_digit())).then_some(out)
        };
        let root = ident(&mut chars)?;
        if matches!(root.as_str(), "true" | "false" | "none" | "None" | "not") {
            return None;
        }
        let mut steps = Vec::new();
        while let Some((_, c)) = chars.next() {
            match c {
                '.' => steps.push(Step::Key(ident(&mut chars)?)),
                '[' => {
                    let mut digits = String::new();
                    for (_, d) in chars.by_ref() {
                        if d == ']' {
                            break;
                        }
                        digits.push(d);
                    }
                    steps.push(Step::Index(digits.parse().ok()?));
                }
                _ => return None,
            }
        }
        Some(Path {
            root,
            steps,
            clean: false,
        })
    }

    /// Follows the path from a value.
    pub fn walk<'v>(&self, mut value: &'v Tree) -> Option<&'v Tree> {
        for step in &self.steps {
            value = match step {
                Step::Key(k) => value.get(k.as_str())?,
                Step::Index(i) => value.get(*i)?,
            };
        }
        Some(value)
    }
}

/// The text inside `{{ }}` when the whole string is one expression.
pub fn whole_expression(text: &str) -> Option<&str> {
    let inner = text.trim().strip_prefix("{{")?.strip_suffix("}}")?;
    (!inner.contains("{{") && !inner.contains("}}")).then_some(inner.trim())
}

/// A call `partial('Name', arg, ...)` as a whole expression: the name and the argument texts.
pub fn partial_call(expr: &str) -> Option<(String, Vec<String>)> {
    let args = expr.strip_prefix("partial(")?.strip_suffix(')')?;
    let mut parts = split_args(args).into_iter();
    let name = parts.next()?;
    let name = name.trim().strip_prefix('\'').and_then(|n| n.strip_suffix('\''))?;
    Some((name.to_string(), parts.map(|p| p.trim().to_string()).collect()))
}

/// Splits call arguments on top-level commas (outside quotes and brackets).
pub fn split_args(args: &str) -> Vec<String> {
    let (mut out, mut current, mut depth, mut quote) = (Vec::new(), String::new(), 0i32, None::<char>);
    for c in args.chars() {
        match (quote, c) {
            (Some(q), c) if c == q => {
                quote = None;
                current.push(c)
            }
            (Some(_), c) => current.push(c),
            (None, '\'' | '"') => {
                quote = Some(c);
                current.push(c)
            }
            (None, '(' | '[' | '{') => {
                depth += 1;
                current.push(c)
            }
            (None, ')' | ']' | '}') => {
                depth -= 1;
                current.push(c)
            }
            (None, ',') if depth == 0 => out.push(std::mem::take(&mut current)),
            (None, c) => current.push(c),
        }
    }
    if !current.trim().is_empty() {
        out.push(current);
    }
    out
}

/// The functions registered in the engine, besides minijinja's built-ins.
pub const FUNCTIONS: &[&str] = &[
    "translate",
    "coding",
    "date",
    "instant",
    "join_nonempty",
    "house_and_street",
    "reference",
    "add_minutes",
    "local_instant",
    "decimal",
];

/// Marks a reference made by `reference(type, key)`: the template does not know the proxy's id key, so the
/// translator replaces `{marker}Type{marker}native-key` in a `reference` element by `Type/<logical id>`.
pub const REFERENCE_MARK: char = '\u{1}';
/// minijinja's own global functions.
const BUILTIN_FUNCTIONS: &[&str] = &["range", "dict", "namespace", "debug"];

/// The expression engine for one loaded set of mappings.
pub struct Engine {
    env: &'static Environment<'static>,
    concept_maps: Arc<ConceptMaps>,
}

/// A compiled minijinja expression.
pub type Compiled = minijinja::Expression<'static, 'static>;

impl Engine {
    /// Builds the environment with the proxy's functions. The environment lives as long as the process: one
    /// is made per loaded mapping set (at start-up, and by `check`), and compiled expressions borrow it.
    pub fn new(concept_maps: Arc<ConceptMaps>) -> Engine {
        let mut env = Environment::new();
        env.set_undefined_behavior(UndefinedBehavior::Chainable);
        let maps = concept_maps.clone();
        env.add_function("translate", move |map: String, code: JValue| -> Result<JValue, Error> {
            let map = maps.get(&map).ok_or_else(|| unknown_map(&map))?;
            Ok(code_text(&code)
                .and_then(|c| translate_code(map, &c))
                .map(JValue::from)
                .unwrap_or(JValue::UNDEFINED))
        });
        let maps = concept_maps.clone();
        env.add_function("coding", move |map: String, code: JValue| -> Result<JValue, Error> {
            let map = maps.get(&map).ok_or_else(|| unknown_map(&map))?;
            Ok(code_text(&code)
                .and_then(|c| coding_of(map, &c))
                .map(|coding| JValue::from(minijinja::value::Serde(coding)))
                .unwrap_or(JValue::UNDEFINED))
        });
        env.add_function("date", |value: JValue, precision: Option<String>| -> JValue {
            match value.as_str() {
                Some(text) => fhir_date(text, precision.as_deref().unwrap_or("day"))
                    .map(JValue::from)
                    .unwrap_or(JValue::UNDEFINED),
                None => JValue::UNDEFINED,
            }
        });
        // The engine has no decimal type: `decimal` runs outside it (`call`), and `check` refuses it where it
        // could not; this is only reached by a mapping loaded without that check.
        env.add_function("decimal", |_: Rest<JValue>| -> Result<JValue, Error> {
            Err(Error::new(
                ErrorKind::InvalidOperation,
                "decimal() takes a path or text (and places), as a leaf's whole value or a conditional's branch",
            ))
        });
        env.add_function("instant", |value: JValue| -> JValue {
            value
                .as_str()
                .and_then(fhir_instant)
                .map(JValue::from)
                .unwrap_or(JValue::UNDEFINED)
        });
        env.add_function("join_nonempty", |sep: String, parts: Rest<JValue>| -> JValue {
            let parts: Vec<String> = parts
                .iter()
                .filter(|p| !p.is_undefined() && !p.is_none())
                .map(|p| p.to_string())
                .filter(|p| !p.trim().is_empty())
                .collect();
            if parts.is_empty() {
                JValue::UNDEFINED
            } else {
                JValue::from(parts.join(&sep))
            }
        });
        env.add_function(
            "house_and_street",
            |house: Option<String>, street: Option<String>| -> JValue {
                JValue::from(house_and_street(house.as_deref(), street.as_deref()))
            },
        );
        env.add_function("reference", |resource_type: String, key: JValue| -> JValue {
            code_text(&key)
                .and_then(|key| reference_mark(&resource_type, &key))
                .map(JValue::from)
                .unwrap_or(JValue::UNDEFINED)
        });
        env.add_function("add_minutes", |value: JValue, minutes: JValue| -> JValue {
            let minutes = minutes
                .as_i64()
                .or_else(|| minutes.as_str().and_then(|m| m.trim().parse().ok()));
            match (value.as_str(), minutes) {
                (Some(text), Some(minutes)) => add_minutes(text, minutes)
                    .map(JValue::from)
                    .unwrap_or(JValue::UNDEFINED),
                _ => JValue::UNDEFINED,
            }
        });
        env.add_function("local_instant", |value: JValue| -> JValue {
            value
                .as_str()
                .and_then(local_instant)
                .map(JValue::from)
                .unwrap_or(JValue::UNDEFINED)
        });
        env.add_filter("flatten", |value: JValue| -> Result<JValue, Error> {
            let mut out = Vec::new();
            if value.is_undefined() || value.is_none() {
                return Ok(JValue::from(out));
            }
            for item in value.try_iter()? {
                if item.kind() == minijinja::value::ValueKind::Seq {
                    out.extend(item.try_iter()?);
                } else {
                    out.push(item);
                }
            }
            Ok(JValue::from(out))
        });
        Engine {
            env: Box::leak(Box::new(env)),
            concept_maps,
        }
    }

    /// The ConceptMaps `translate` and `coding` read.
    pub fn concept_maps(&self) -> &Arc<ConceptMaps> {
        &self.concept_maps
    }

    pub fn compile(&self, source: &str) -> Result<Compiled, String> {
        self.env
            .compile_expression_owned(source.to_string())
            .map_err(|e| e.to_string())
    }

    /// Names called as free functions in an expression (`name(`), outside string literals; method calls
    /// (`x.split(`) and filters (`| split(`) are not free functions.
    pub fn called_functions(source: &str) -> Vec<String> {
        let chars: Vec<char> = source.chars().collect();
        let (mut out, mut i, mut before) = (Vec::new(), 0, ' ');
        while i < chars.len() {
            let c = chars[i];
            if c == '\'' || c == '"' {
                i += 1;
                while i < chars.len() && chars[i] != c {
                    i += 1;
                }
                before = c;
                i += 1;
                continue;
            }
            if c.is_ascii_alphabetic() || c == '_' {
                let start = i;
                while i < chars.len() && (chars[i].is_ascii_alphanumeric() || chars[i] == '_') {
                    i += 1;
                }
                if chars.get(i) == Some(&'(') && before != '.' && before != '|' {
                    out.push(chars[start..i].iter().collect());
                }
                before = 'a';
                continue;
            }
            if !c.is_whitespace() {
                before = c;
            }
            i += 1;
        }
        out
    }

    /// Whether a function of that name is registered (for `check`'s messages).
    pub fn has_function(&self, name: &str) -> bool {
        FUNCTIONS.contains(&name) || BUILTIN_FUNCTIONS.contains(&name)
    }
}

fn unknown_map(name: &str) -> Error {
    Error::new(ErrorKind::InvalidOperation, format!("unknown ConceptMap '{name}'"))
}

/// `translate(map, code)`: the code the map gives for a native code.
pub fn translate_code(map: &ConceptMap, code: &str) -> Option<String> {
    map.lookup(code).map(|t| t.code.clone())
}

/// `coding(map, code)`: the Coding the map gives for a native code (`Target::coding`).
pub fn coding_of(map: &ConceptMap, code: &str) -> Option<Tree> {
    map.lookup(code).map(|target| target.coding.clone())
}

/// `reference(type, key)`: the mark the translator turns into `Type/<logical id>`; nothing without a key.
pub fn reference_mark(resource_type: &str, key: &str) -> Option<String> {
    (!key.is_empty()).then(|| format!("{REFERENCE_MARK}{resource_type}{REFERENCE_MARK}{key}"))
}

fn code_text(code: &JValue) -> Option<String> {
    if code.is_undefined() || code.is_none() {
        return None;
    }
    // Booleans as FHIR and JSON spell them (the engine would print `True`).
    if code.kind() == minijinja::value::ValueKind::Bool {
        return Some(code.is_true().to_string());
    }
    Some(match code.as_str() {
        Some(s) => s.to_string(),
        None => code.to_string(),
    })
}

/// Address lines from a native house field and street, by the UK convention: a house number (or a flat
/// number such as `2a`) goes on the street's line (`1 Test Lane`); a house name is a line of its own
/// (`The Willows`, then `Meadow Close`).
pub fn house_and_street(house: Option<&str>, street: Option<&str>) -> Vec<String> {
    let house = house.map(str::trim).filter(|h| !h.is_empty());
    let street = street.map(str::trim).filter(|s| !s.is_empty());
    match (house, street) {
        (Some(h), Some(s)) if h.starts_with(|c: char| c.is_ascii_digit()) && !h.contains(' ') => {
            vec![format!("{h} {s}")]
        }
        (h, s) => h.into_iter().chain(s).map(String::from).collect(),
    }
}

/// Cuts a native date or date-time to a FHIR date of the given precision (`year`, `month`, `day`):
/// partial dates are never padded out. A date-time with a zone is cut on its UK day (SystmOne's instants are
/// UTC: 23:30Z in summer is the next day in the UK), as searches read days.
pub fn fhir_date(text: &str, precision: &str) -> Option<String> {
    let uk_day = (text.len() > 10)
        .then(|| time::OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339).ok())
        .flatten()
        .map(|instant| crate::fhir::dates::uk_date(instant).to_string());
    let date = uk_day.as_deref().or(text.get(..10)).unwrap_or(text);
    let len = match precision {
        "year" => 4,
        "month" => 7,
        "day" => 10,
        _ => return None,
    };
    let out = date.get(..len)?;
    let valid = out.bytes().enumerate().all(|(i, b)| {
        if i == 4 || i == 7 {
            b == b'-'
        } else {
            b.is_ascii_digit()
        }
    });
    valid.then(|| out.to_string())
}

/// An instant plus whole minutes (an encounter's end from its start and duration), as a FHIR instant in UTC.
pub fn add_minutes(text: &str, minutes: i64) -> Option<String> {
    use time::format_description::well_known::Rfc3339;
    let start = time::OffsetDateTime::parse(text, &Rfc3339).ok()?;
    fhir_instant(
        &start
            .checked_add(time::Duration::minutes(minutes))?
            .format(&Rfc3339)
            .ok()?,
    )
}

/// Normalises a native date-time with a zone (`Z` or an offset, any fraction) to a FHIR instant in UTC:
/// suppliers give the same moment in different offsets (EMIS in UK local time, SystmOne and Medicus in UTC),
/// and one FHIR question must get the same answer from each.
pub fn fhir_instant(text: &str) -> Option<String> {
    use time::format_description::well_known::Rfc3339;
    let parsed = time::OffsetDateTime::parse(text, &Rfc3339).ok()?;
    // Written into room for the usual instant, not grown byte by byte.
    let mut out = Vec::with_capacity(32);
    parsed
        .checked_to_offset(time::UtcOffset::UTC)?
        .format_into(&mut out, &Rfc3339)
        .ok()?;
    String::from_utf8(out).ok()
}

/// A UK wall-clock date-time without offset (EMIS slot and session times, `2026-07-01T09:30:00`) as a FHIR
/// instant in UTC, at the UK's offset at that time (see `fhir::dates::uk_instant`). A text with its own offset
/// keeps it.
pub fn local_instant(text: &str) -> Option<String> {
    use time::macros::format_description;
    if let Some(instant) = fhir_instant(text) {
        return Some(instant);
    }
    let wall = time::PrimitiveDateTime::parse(
        text.get(..19)?,
        format_description!("[year]-[month]-[day]T[hour]:[minute]:[second]"),
    )
    .ok()?;
    crate::fhir::dates::uk_instant(wall)?
        .format(&time::format_description::well_known::Rfc3339)
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_paths_are_recognised() {
        let path = Path::parse("r.Address.Lines[1]").unwrap();
        assert_eq!(path.root, "r");
        assert_eq!(
            path.steps,
            vec![Step::Key("Address".into()), Step::Key("Lines".into()), Step::Index(1)]
        );
        assert!(Path::parse("r.Sex | lower").is_none());
        assert!(Path::parse("translate('x', r.Sex)").is_none());
        assert!(Path::parse("true").is_none());
    }

    #[test]
    fn partial_calls_are_split() {
        let (name, args) = partial_call("partial('EmisName', r, 'x,y')").unwrap();
        assert_eq!(name, "EmisName");
        assert_eq!(args, vec!["r".to_string(), "'x,y'".to_string()]);
    }

    #[test]
    fn dates_keep_their_precision() {
        assert_eq!(fhir_date("2009-06-01T00:00:00", "month").as_deref(), Some("2009-06"));
        assert_eq!(fhir_date("1998-01-01T00:00:00.0Z", "year").as_deref(), Some("1998"));
        assert_eq!(fhir_date("1985-04-12", "day").as_deref(), Some("1985-04-12"));
        assert_eq!(fhir_date("nonsense", "day"), None);
        // A date-time with a zone, on its UK day.
        assert_eq!(
            fhir_date("2025-06-30T23:30:00.0Z", "day").as_deref(),
            Some("2025-07-01")
        );
        assert_eq!(fhir_date("2025-12-31T23:30:00Z", "year").as_deref(), Some("2025"));
        assert_eq!(
            fhir_date("2025-06-30T23:30:00+00:00", "month").as_deref(),
            Some("2025-07")
        );
        assert_eq!(fhir_date("2025-06-30T23:30:00", "day").as_deref(), Some("2025-06-30"));
        assert_eq!(
            fhir_instant("2025-03-04T09:30:00.0Z").as_deref(),
            Some("2025-03-04T09:30:00Z")
        );
    }

    #[test]
    fn uk_wall_clock_becomes_a_utc_instant() {
        // Winter: GMT; summer: BST; the change days on either side of 01:00 GMT.
        assert_eq!(
            local_instant("2026-03-04T09:30:00").as_deref(),
            Some("2026-03-04T09:30:00Z")
        );
        assert_eq!(
            local_instant("2026-07-01T09:30:00").as_deref(),
            Some("2026-07-01T08:30:00Z")
        );
        assert_eq!(
            local_instant("2026-03-29T00:30:00").as_deref(),
            Some("2026-03-29T00:30:00Z")
        );
        assert_eq!(
            local_instant("2026-03-29T09:00:00").as_deref(),
            Some("2026-03-29T08:00:00Z")
        );
        assert_eq!(
            local_instant("2026-10-25T09:00:00").as_deref(),
            Some("2026-10-25T09:00:00Z")
        );
        assert_eq!(
            local_instant("2026-10-24T09:00:00").as_deref(),
            Some("2026-10-24T08:00:00Z")
        );
        assert_eq!(
            local_instant("2026-07-01T09:30:00+01:00").as_deref(),
            Some("2026-07-01T08:30:00Z")
        );
        assert_eq!(local_instant("not a time"), None);
    }

    #[test]
    fn free_function_calls_are_found() {
        assert_eq!(
            Engine::called_functions("translate('m', r.x) ~ (r.y | split(' ')) ~ r.s.upper() ~ 'f(x)'"),
            vec!["translate".to_string()]
        );
    }

    #[test]
    fn house_numbers_join_the_street_and_names_do_not() {
        assert_eq!(house_and_street(Some("1"), Some("Test Lane")), vec!["1 Test Lane"]);
        assert_eq!(
            house_and_street(Some("The Willows"), Some("Meadow Close")),
            vec!["The Willows", "Meadow Close"]
        );
        assert_eq!(
            house_and_street(Some("Flat 2, Rose Court"), Some("High St")),
            vec!["Flat 2, Rose Court", "High St"]
        );
        assert_eq!(house_and_street(None, Some("High St")), vec!["High St"]);
    }

    #[test]
    fn numbers_reach_the_engine_as_numbers() {
        let engine = Engine::new(Arc::new(ConceptMaps::default()));
        let expr = engine.compile("r.n is number and r.n > 2").unwrap();
        let r = crate::mapping::context::to_engine(&crate::tree!({ "n": 2.5 }));
        assert!(expr.eval(minijinja::context! { r => r }).unwrap().is_true());
    }

    #[test]
    fn engine_functions_work() {
        let engine = Engine::new(Arc::new(ConceptMaps::default()));
        let expr = engine.compile("join_nonempty(' ', a, none, 'b')").unwrap();
        let value = expr.eval(minijinja::context! { a => "x" }).unwrap();
        assert_eq!(value.as_str(), Some("x b"));
    }
}
