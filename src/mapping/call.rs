//! Calls of the engine's own functions on plain arguments, run without the engine.
//!
//! `instant(r.AvailabilityDateTime)`, `translate('emis-sex', r.Sex)` and `reference(type, key)` are the
//! commonest leaves after plain paths, and through minijinja each costs a context, a run of its VM and two
//! value conversions. So a call of one of the functions `expr` registers, whose arguments are string
//! literals, plain paths (keys only) or such calls, is also compiled to a [`Call`], which runs the same Rust
//! functions on the serde_json values directly. When an argument is one the engine would see as a fraction, a
//! list or a map, the call gives up and the leaf runs through the engine, so both ways give the same value.

use super::concept_map::{ConceptMap, ConceptMaps};
use super::context::is_empty_deep;
use super::expr::{self, Engine, Path, Step};
use super::template::Scope;
use serde_json::Value;
use std::borrow::Cow;
use std::sync::Arc;

/// A compiled call.
pub struct Call {
    func: Func,
    args: Vec<Arg>,
}

enum Func {
    Translate(MapRef),
    Coding(MapRef),
    Date,
    Instant,
    LocalInstant,
    Reference,
    /// `path is [not] test`, for the engine's tests `number`, `defined`, `undefined` and `none`.
    Is {
        test: Test,
        negate: bool,
    },
}

#[derive(Clone, Copy)]
enum Test {
    Number,
    Defined,
    Undefined,
    None,
}

/// A ConceptMap named by a literal, found when the call is compiled.
struct MapRef {
    maps: Arc<ConceptMaps>,
    position: usize,
}

impl MapRef {
    fn map(&self) -> &ConceptMap {
        self.maps.at(self.position)
    }
}

enum Arg {
    Text(String),
    Path(Path),
    Call(Call),
}

/// An argument's value as the functions read it; anything else makes the call give up.
enum Plain<'a> {
    /// Undefined or none.
    Nothing,
    Text(Cow<'a, str>),
    Bool(bool),
    /// A whole number that fits an i64 (codes such as EMIS `CodeId` are numbers).
    Int(i64),
}

/// What a call gives.
pub enum Out {
    Nothing,
    Text(String),
    Json(Value),
}

impl Call {
    /// The call `source` is, when it is one this module runs (else the engine runs it).
    pub fn compile(source: &str, engine: &Engine) -> Option<Call> {
        if let Some(test) = Call::test(source) {
            return Some(test);
        }
        let (name, inner) = call_parts(source)?;
        let mut args: Vec<String> = expr::split_args(inner);
        let func = match (name, args.len()) {
            ("translate" | "coding", 2) => {
                let map = literal(&args.remove(0))?;
                let map = MapRef {
                    maps: engine.concept_maps().clone(),
                    position: engine.concept_maps().position(&map)?,
                };
                if name == "translate" {
                    Func::Translate(map)
                } else {
                    Func::Coding(map)
                }
            }
            ("date", 1 | 2) => Func::Date,
            ("instant", 1) => Func::Instant,
            ("local_instant", 1) => Func::LocalInstant,
            ("reference", 2) => Func::Reference,
            _ => return None,
        };
        let args = args.iter().map(|a| Arg::compile(a, engine)).collect::<Option<_>>()?;
        Some(Call { func, args })
    }

    /// `path is [not] test` (a plain path of keys, one of the tests [`Test`] names), else None.
    fn test(source: &str) -> Option<Call> {
        let (subject, rest) = source.trim().split_once(" is ")?;
        let rest = rest.trim();
        let (negate, name) = match rest.strip_prefix("not ") {
            Some(name) => (true, name.trim()),
            None => (false, rest),
        };
        let test = match name {
            "number" => Test::Number,
            "defined" => Test::Defined,
            "undefined" => Test::Undefined,
            "none" => Test::None,
            _ => return None,
        };
        let path = Path::parse(subject)?;
        let plain = path.steps.iter().all(|s| matches!(s, Step::Key(_)));
        (plain && !matches!(path.root.as_str(), "True" | "False" | "not" | "is")).then(|| Call {
            func: Func::Is { test, negate },
            args: vec![Arg::Path(path)],
        })
    }

    /// Runs the call; `None` when an argument is one only the engine takes.
    pub fn eval(&self, scope: &Scope) -> Option<Out> {
        if let Func::Is { test, negate } = self.func {
            let Some(Arg::Path(path)) = self.args.first() else {
                return None;
            };
            // What the engine would see (`context`): nothing when the path does not lead anywhere (or, read
            // clean, to an empty value), else the value converted; `is number` is true of numbers and booleans.
            let found = scope.walk(path).map(|(value, _)| value);
            let passes = match test {
                Test::Defined => found.is_some(),
                Test::Undefined => found.is_none(),
                Test::None => matches!(found, Some(Value::Null)),
                Test::Number => match found {
                    Some(Value::Bool(_)) => true,
                    Some(Value::Number(n)) => n.as_i64().is_some() || n.as_f64().is_some(),
                    _ => false,
                },
            };
            return Some(Out::Json(Value::Bool(passes != negate)));
        }
        let mut args = Vec::with_capacity(self.args.len());
        for arg in &self.args {
            args.push(arg.eval(scope)?);
        }
        let text = |out: Option<String>| out.map(Out::Text).unwrap_or(Out::Nothing);
        Some(match &self.func {
            Func::Translate(map) => text(code_text(&args[0]).and_then(|c| expr::translate_code(map.map(), &c))),
            Func::Coding(map) => code_text(&args[0])
                .and_then(|c| expr::coding_of(map.map(), &c))
                .map(Out::Json)
                .unwrap_or(Out::Nothing),
            Func::Date => {
                let precision = match args.get(1) {
                    None | Some(Plain::Nothing) => "day",
                    Some(Plain::Text(p)) => p,
                    Some(Plain::Bool(_) | Plain::Int(_)) => return None,
                };
                text(as_str(&args[0]).and_then(|v| expr::fhir_date(v, precision)))
            }
            Func::Instant => text(as_str(&args[0]).and_then(expr::fhir_instant)),
            Func::LocalInstant => text(as_str(&args[0]).and_then(expr::local_instant)),
            Func::Is { .. } => return None,
            Func::Reference => {
                let Plain::Text(resource_type) = &args[0] else {
                    return None;
                };
                text(code_text(&args[1]).and_then(|key| expr::reference_mark(resource_type, &key)))
            }
        })
    }
}

impl Arg {
    fn compile(source: &str, engine: &Engine) -> Option<Arg> {
        let source = source.trim();
        if let Some(text) = literal(source) {
            return Some(Arg::Text(text));
        }
        if let Some(path) = Path::parse(source) {
            // Subscripts differ between the engine and serde_json (`"abc"[0]`), and `True` is a constant.
            let plain = path.steps.iter().all(|s| matches!(s, Step::Key(_)));
            return (plain && !matches!(path.root.as_str(), "True" | "False")).then_some(Arg::Path(path));
        }
        Call::compile(source, engine).map(Arg::Call)
    }

    fn eval<'a>(&'a self, scope: &Scope<'_, 'a>) -> Option<Plain<'a>> {
        match self {
            Arg::Text(text) => Some(Plain::Text(Cow::Borrowed(text))),
            Arg::Path(path) => match scope.walk(path) {
                None => Some(Plain::Nothing),
                Some((value, clean)) => plain(value, clean),
            },
            Arg::Call(call) => match call.eval(scope)? {
                Out::Nothing => Some(Plain::Nothing),
                Out::Text(text) => Some(Plain::Text(Cow::Owned(text))),
                Out::Json(_) => None,
            },
        }
    }
}

/// A JSON value as an argument; a clean binding's empty values are not there.
fn plain(value: &Value, clean: bool) -> Option<Plain<'_>> {
    if clean && is_empty_deep(value) {
        return Some(Plain::Nothing);
    }
    match value {
        Value::Null => Some(Plain::Nothing),
        Value::String(s) => Some(Plain::Text(Cow::Borrowed(s))),
        Value::Bool(b) => Some(Plain::Bool(*b)),
        // The engine gets an i64 for such a number (`context::to_engine`), and other numbers as floats.
        Value::Number(n) => n.as_i64().map(Plain::Int),
        Value::Array(_) | Value::Object(_) => None,
    }
}

/// A code as `translate`, `coding` and `reference` read it (`expr::code_text`).
fn code_text<'a>(arg: &'a Plain) -> Option<Cow<'a, str>> {
    match arg {
        Plain::Nothing => None,
        Plain::Text(text) => Some(Cow::Borrowed(text)),
        Plain::Bool(b) => Some(Cow::Borrowed(if *b { "true" } else { "false" })),
        Plain::Int(i) => Some(Cow::Owned(i.to_string())),
    }
}

/// An argument as the engine's `as_str` reads it.
fn as_str<'a>(arg: &'a Plain) -> Option<&'a str> {
    match arg {
        Plain::Text(text) => Some(text),
        Plain::Nothing | Plain::Bool(_) | Plain::Int(_) => None,
    }
}

/// A string literal without escapes or inner quotes: its text.
fn literal(source: &str) -> Option<String> {
    let source = source.trim();
    let quote = source.chars().next().filter(|q| matches!(q, '\'' | '"'))?;
    let inner = source.strip_prefix(quote)?.strip_suffix(quote)?;
    (!inner.contains(quote) && !inner.contains('\\')).then(|| inner.to_string())
}

/// `name(inner)` when the parenthesis after the name closes at the very end of the text.
fn call_parts(source: &str) -> Option<(&str, &str)> {
    let source = source.trim();
    let open = source.find('(')?;
    let name = source[..open].trim_end();
    if name.is_empty() || !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
        return None;
    }
    let (mut depth, mut quote) = (0i32, None::<char>);
    for (i, c) in source.char_indices().skip_while(|(i, _)| *i < open) {
        match (quote, c) {
            (Some(q), c) if c == q => quote = None,
            (Some(_), _) => {}
            (None, '\'' | '"') => quote = Some(c),
            (None, '(' | '[' | '{') => depth += 1,
            (None, ')' | ']' | '}') => {
                depth -= 1;
                if depth == 0 {
                    return (i == source.len() - 1).then(|| (name, &source[open + 1..i]));
                }
            }
            _ => {}
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_calls_of_plain_arguments_are_run_directly() {
        let engine = Engine::new(Arc::new(ConceptMaps::default()));
        assert!(Call::compile("instant(r.Date)", &engine).is_some());
        assert!(Call::compile("date(d.Value, instant(d.X))", &engine).is_some());
        assert!(Call::compile("reference(type, key)", &engine).is_some());
        assert!(Call::compile("instant(r.Date) ~ instant(r.X)", &engine).is_none());
        assert!(Call::compile("instant(r.Dates[0])", &engine).is_none());
        assert!(Call::compile("instant(r.Date | trim)", &engine).is_none());
        assert!(Call::compile("date(r.Date, 'it''s')", &engine).is_none());
        // An unknown map is the engine's error to give.
        assert!(Call::compile("translate('nowhere', r.Code)", &engine).is_none());
        assert!(Call::compile("value is number", &engine).is_some());
        assert!(Call::compile("r.A is not none", &engine).is_some());
        assert!(Call::compile("r.A is defined and r.A is not none", &engine).is_none());
        assert!(Call::compile("r.A[0] is number", &engine).is_none());
        assert!(Call::compile("r.A is string", &engine).is_none());
        assert_eq!(call_parts("f(a, g(b))"), Some(("f", "a, g(b)")));
        assert_eq!(call_parts("f(a) or g(b)"), None);
        assert_eq!(call_parts("f(')(')"), Some(("f", "')('")));
    }

    #[test]
    fn tests_give_what_the_engine_gives() {
        use super::super::template::Scope;
        let engine = Engine::new(Arc::new(ConceptMaps::default()));
        let record = serde_json::json!({ "n": 2.5, "i": 3, "b": true, "s": "4", "z": null, "e": "", "o": { "k": 1 } });
        let mut checked = 0;
        for clean in [false, true] {
            let base = Scope::root("_", &Value::Null);
            let scope = if clean {
                base.bind_clean("r", &record)
            } else {
                base.bind("r", &record)
            };
            for key in ["n", "i", "b", "s", "z", "e", "o", "o.k", "o.x", "x", "x.y"] {
                for test in ["number", "defined", "undefined", "none", "not number", "not none"] {
                    let source = format!("r.{key} is {test}");
                    let direct = match Call::compile(&source, &engine).unwrap().eval(&scope) {
                        Some(Out::Json(Value::Bool(b))) => b,
                        _ => panic!("{source}"),
                    };
                    let need = crate::mapping::context::Reads::scan(&source);
                    let r = need.0[0].1.convert(&record, clean);
                    let engine_says = engine.compile(&source).unwrap().eval(minijinja::context! { r => r });
                    assert_eq!(direct, engine_says.unwrap().is_true(), "{source} (clean: {clean})");
                    checked += 1;
                }
            }
        }
        assert_eq!(checked, 132);
    }
}
