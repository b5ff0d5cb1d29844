//! Calls of the engine's own functions on plain arguments, run without the engine.
//!
//! `instant(r.AvailabilityDateTime)`, `translate('emis-sex', r.Sex)` and `reference(type, key)` are the
//! commonest leaves after plain paths, and through minijinja each costs a context, a run of its VM and two
//! value conversions. So a call of one of the functions `expr` registers, whose arguments are string
//! literals, plain paths (keys only) or such calls, is also compiled to a [`Call`], which runs the same Rust
//! functions on the values directly. When an argument is one the engine would see as a fraction, a
//! list or a map, the call gives up and the leaf runs through the engine, so both ways give the same value.
//!
//! The engine's conditional expression is run the same way when its parts are such calls, paths, literals or
//! `path | float`, and its condition is a path's truthiness or a test, joined by `and`:
//! `translate('m', r.Reason if r.Abnormal else 'Normal') if r.Abnormal is defined and r.Abnormal is not none`.

use super::concept_map::{ConceptMap, ConceptMaps};
use super::expr::{self, Engine, Path, Step};
use super::node::{Kind, Node};
use super::template::Scope;
use crate::tree::{Members, Tree};
use std::borrow::Cow;
use std::sync::Arc;

/// A compiled call.
#[derive(Clone)]
pub struct Call {
    func: Func,
    args: Vec<Arg>,
}

#[derive(Clone)]
enum Func {
    Translate(MapRef),
    Coding(MapRef),
    Date,
    Instant,
    LocalInstant,
    Reference,
    /// `path is [not] test` or `path == 'text'`, or several joined by `and`: true or false.
    Holds(Vec<Clause>),
    /// `then if condition [else otherwise]`: the arguments are `then` and, when there is one, `otherwise`.
    Choose(Vec<Clause>),
    /// `a or b or ...`: the first argument the engine finds true, else the last.
    Or,
    /// `decimal(value[, places])`: a number keeping the digits recorded (run here only; see `decimal`).
    Decimal,
}

/// One part of a condition (the parts are joined by `and`).
#[derive(Clone)]
enum Clause {
    /// `path is [not] test`.
    Is { path: Path, test: Test, negate: bool },
    /// `path == 'text'`.
    Equals { path: Path, text: String },
    /// `path`: true as the engine finds the value it leads to (only in a conditional's condition: `a and b`
    /// on its own gives a value, not true or false).
    Truthy(Path),
}

#[derive(Clone, Copy)]
enum Test {
    Number,
    Defined,
    Undefined,
    None,
}

/// A ConceptMap named by a literal, found when the call is compiled.
#[derive(Clone)]
struct MapRef {
    maps: Arc<ConceptMaps>,
    position: usize,
}

impl MapRef {
    fn map(&self) -> &ConceptMap {
        self.maps.at(self.position)
    }
}

#[derive(Clone)]
enum Arg {
    Text(String),
    Path(Path),
    Call(Call),
    /// `path | float`: only a conditional's branch takes it (a number is no function's plain argument).
    Float(Path),
    /// `{'key': argument, ...}`, its keys in the order the engine's maps keep them (sorted): only a
    /// conditional's branch takes it.
    Dict(Vec<(String, Arg)>),
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
    Json(Tree),
}

impl Out {
    /// Whether the engine would find the value true (`a or b`).
    fn is_true(&self) -> bool {
        match self {
            Out::Nothing => false,
            Out::Text(text) => !text.is_empty(),
            Out::Json(value) => match value {
                Tree::Null => false,
                Tree::Bool(b) => *b,
                Tree::Number(n) => n.as_f64().is_some_and(|f| f != 0.0),
                Tree::String(s) => !s.is_empty(),
                Tree::Array(items) => !items.is_empty(),
                Tree::Object(map) => !map.is_empty(),
            },
        }
    }
}

/// What a path in a call becomes when the partial it is in is inlined (see `inline`).
pub enum PathSub {
    /// Not a parameter's: it stays.
    Same,
    /// The argument's path, read clean as the parameter was.
    Path(Path),
    /// The path from the name the argument is bound to, as the partial bound it: exact everywhere.
    Bound(Path),
    /// A literal argument (only where the call takes text, not where a condition tests a path).
    Text(String),
}

impl Call {
    /// The same call with its paths replaced as `sub` says (`None` from it: the call cannot be inlined).
    /// `is defined`, `is undefined` and `is none` tell a parameter bound to nothing from one never bound,
    /// which a substituted path cannot: a call testing a parameter so stays as it is.
    pub fn substitute(&self, sub: &dyn Fn(&Path) -> Option<PathSub>) -> Option<Call> {
        let clauses = |clauses: &[Clause]| clauses.iter().map(|c| c.substitute(sub)).collect::<Option<Vec<_>>>();
        let func = match &self.func {
            Func::Holds(c) => Func::Holds(clauses(c)?),
            Func::Choose(c) => Func::Choose(clauses(c)?),
            other => other.clone(),
        };
        let args = self.args.iter().map(|a| a.substitute(sub)).collect::<Option<_>>()?;
        Some(Call { func, args })
    }

    /// The call `source` is, when it is one this module runs (else the engine runs it).
    pub fn compile(source: &str, engine: &Engine) -> Option<Call> {
        if let Some((then, rest)) = split_top(source, " if ") {
            return Call::choose(then, rest, engine);
        }
        let alternatives = split_all_top(source, " or ");
        if alternatives.len() > 1 {
            let args = alternatives
                .into_iter()
                .map(|a| Arg::compile_branch(a, engine))
                .collect::<Option<_>>()?;
            return Some(Call { func: Func::Or, args });
        }
        if let Some(holds) = Call::holds(source) {
            return Some(holds);
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
            // Its value is a path or a literal: it is never handed to the engine (see `decimal`).
            ("decimal", 1 | 2) => Func::Decimal,
            _ => return None,
        };
        if matches!(func, Func::Decimal) && args.iter().any(|a| Path::parse(a).is_none() && literal(a).is_none()) {
            return None;
        }
        let args = args.iter().map(|a| Arg::compile(a, engine)).collect::<Option<_>>()?;
        Some(Call { func, args })
    }

    /// Tests and comparisons joined by `and` (`r.A is defined and r.A is not none`), else None.
    fn holds(source: &str) -> Option<Call> {
        let clauses = split_all_top(source, " and ")
            .into_iter()
            .map(|part| Clause::compile_test(part).or_else(|| Clause::compile_equals(part)))
            .collect::<Option<Vec<_>>>()?;
        Some(Call {
            func: Func::Holds(clauses),
            args: Vec::new(),
        })
    }

    /// `then if condition [else otherwise]`, given `then` and what follows `if`.
    fn choose(then: &str, rest: &str, engine: &Engine) -> Option<Call> {
        let (condition, otherwise) = match split_top(rest, " else ") {
            Some((condition, otherwise)) => (condition, Some(otherwise)),
            None => (rest, None),
        };
        let clauses = split_all_top(condition, " and ")
            .into_iter()
            .map(Clause::compile)
            .collect::<Option<Vec<_>>>()?;
        let mut args = vec![Arg::compile_branch(then, engine)?];
        if let Some(otherwise) = otherwise {
            args.push(Arg::compile_branch(otherwise, engine)?);
        }
        Some(Call {
            func: Func::Choose(clauses),
            args,
        })
    }

    /// Runs the call; `None` when an argument is one only the engine takes.
    pub fn eval(&self, scope: &Scope) -> Option<Out> {
        if let Func::Holds(clauses) = &self.func {
            return Some(Out::Json(Tree::Bool(clauses.iter().all(|c| c.holds(scope)))));
        }
        if let Func::Or = self.func {
            let (last, first) = self.args.split_last()?;
            for arg in first {
                let out = arg.eval_branch(scope)?;
                if out.is_true() {
                    return Some(out);
                }
            }
            return last.eval_branch(scope);
        }
        if let Func::Decimal = self.func {
            return Some(decimal(&self.args, scope));
        }
        if let Func::Choose(clauses) = &self.func {
            let holds = clauses.iter().all(|clause| clause.holds(scope));
            return match self.args.get(if holds { 0 } else { 1 }) {
                // `then if condition` without `else`: undefined.
                None => Some(Out::Nothing),
                Some(branch) => branch.eval_branch(scope),
            };
        }
        // The functions run here take one or two arguments (see `compile`).
        let first = match self.args.first() {
            Some(arg) => arg.eval(scope)?,
            None => Plain::Nothing,
        };
        let second = match self.args.get(1) {
            Some(arg) => Some(arg.eval(scope)?),
            None => None,
        };
        let text = |out: Option<String>| out.map(Out::Text).unwrap_or(Out::Nothing);
        Some(match &self.func {
            Func::Translate(map) => text(code_text(&first).and_then(|c| expr::translate_code(map.map(), &c))),
            Func::Coding(map) => code_text(&first)
                .and_then(|c| expr::coding_of(map.map(), &c))
                .map(Out::Json)
                .unwrap_or(Out::Nothing),
            Func::Date => {
                let precision = match &second {
                    None | Some(Plain::Nothing) => "day",
                    Some(Plain::Text(p)) => p,
                    Some(Plain::Bool(_) | Plain::Int(_)) => return None,
                };
                text(as_str(&first).and_then(|v| expr::fhir_date(v, precision)))
            }
            Func::Instant => text(as_str(&first).and_then(expr::fhir_instant)),
            Func::LocalInstant => text(as_str(&first).and_then(expr::local_instant)),
            Func::Holds(_) | Func::Choose(_) | Func::Or | Func::Decimal => return None,
            Func::Reference => {
                let Plain::Text(resource_type) = &first else {
                    return None;
                };
                let key = code_text(second.as_ref().unwrap_or(&Plain::Nothing));
                match (scope.references(), key) {
                    (Some(refs), Some(key)) if !key.is_empty() => Out::Text(refs.reference(resource_type, &key)),
                    (_, key) => text(key.and_then(|key| expr::reference_mark(resource_type, &key))),
                }
            }
        })
    }
}

/// `decimal(value[, places])`: a FHIR decimal with the digits the record holds, which are significant (`1.70`
/// is not `1.7`, and `168` is not `168.0`). The value is text (`"1.70"`) or a number (its text as the reply
/// gave it); `places`, when the native API states them apart (Medicus `decimalPlaces`), pads the fraction to
/// them. Not a decimal: nothing. The engine has no decimal type, so this runs here only: `check` refuses a
/// `decimal(...)` anywhere it could not (`template::compile_leaf`).
fn decimal(args: &[Arg], scope: &Scope) -> Out {
    let text_of = |arg: Option<&Arg>| -> Option<String> {
        match arg? {
            Arg::Text(text) => Some(text.clone()),
            Arg::Path(path) => {
                let (value, _) = scope.walk(path)?;
                match value.kind() {
                    Kind::Str(text) => Some(text.trim().to_string()),
                    Kind::Number => Some(value.to_json().to_string()),
                    _ => None,
                }
            }
            _ => None,
        }
    };
    let Some(mut text) = text_of(args.first()).filter(|t| is_fhir_decimal(t)) else {
        return Out::Nothing;
    };
    // More places than any measurement holds are not padded to (they come from the reply).
    let places = text_of(args.get(1))
        .and_then(|p| p.parse::<usize>().ok())
        .filter(|p| *p <= MAX_DECIMAL_PLACES);
    if let (Some(places), false) = (places, text.contains(['e', 'E'])) {
        let have = text.split_once('.').map_or(0, |(_, fraction)| fraction.len());
        if have < places {
            if have == 0 {
                text.push('.');
            }
            text.extend(std::iter::repeat_n('0', places - have));
        } else if have > places && text[text.len() - (have - places)..].bytes().all(|b| b == b'0') {
            // Zeros past the places stated are the number's writing (`168.0`), not digits recorded; other
            // digits are kept rather than lost.
            text.truncate(text.len() - (have - places));
            if places == 0 {
                text.pop();
            }
        }
    }
    match text.parse::<serde_json::Number>() {
        Ok(number) => Out::Json(Tree::Number(number)),
        Err(_) => Out::Nothing,
    }
}

/// The most places `decimal` pads to.
const MAX_DECIMAL_PLACES: usize = 18;

/// FHIR's decimal: `-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?`.
fn is_fhir_decimal(text: &str) -> bool {
    let unsigned = text.strip_prefix('-').unwrap_or(text);
    let (mantissa, exponent) = match unsigned.split_once(['e', 'E']) {
        Some((m, e)) => (m, Some(e.strip_prefix(['+', '-']).unwrap_or(e))),
        None => (unsigned, None),
    };
    let (whole, fraction) = match mantissa.split_once('.') {
        Some((w, f)) => (w, Some(f)),
        None => (mantissa, None),
    };
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    digits(whole)
        && (whole == "0" || !whole.starts_with('0'))
        && fraction.is_none_or(digits)
        && exponent.is_none_or(digits)
}

/// Whether `path is [not] test` holds, as the engine finds (`context`): nothing when the path does not lead
/// anywhere (or, read clean, to an empty value), else the value converted; `is number` is true of numbers and
/// booleans.
fn passes(scope: &Scope, path: &Path, test: Test, negate: bool) -> bool {
    let found = scope.walk(path).map(|(value, _)| value);
    let passes = match test {
        Test::Defined => found.is_some(),
        Test::Undefined => found.is_none(),
        Test::None => found.is_some_and(Node::is_null),
        Test::Number => match found.map(|value| (value, value.kind())) {
            Some((_, Kind::Bool(_))) => true,
            Some((value, Kind::Number)) => value.as_i64().is_some() || value.as_f64().is_some(),
            _ => false,
        },
    };
    passes != negate
}

impl Clause {
    fn compile(source: &str) -> Option<Clause> {
        Clause::compile_test(source)
            .or_else(|| Clause::compile_equals(source))
            .or_else(|| plain_path(source).map(Clause::Truthy))
    }

    /// `path == 'text'`.
    fn compile_equals(source: &str) -> Option<Clause> {
        let (subject, text) = split_top(source, " == ")?;
        Some(Clause::Equals {
            path: plain_path(subject)?,
            text: literal(text)?,
        })
    }

    /// `path is [not] test` (a plain path of keys, one of the tests [`Test`] names).
    fn compile_test(source: &str) -> Option<Clause> {
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
        let path = plain_path(subject)?;
        Some(Clause::Is { path, test, negate })
    }

    fn substitute(&self, sub: &dyn Fn(&Path) -> Option<PathSub>) -> Option<Clause> {
        // A condition tests a path: a literal cannot stand in for one.
        let path = |p: &Path| match sub(p)? {
            PathSub::Same => Some(p.clone()),
            PathSub::Path(q) | PathSub::Bound(q) => Some(q),
            PathSub::Text(_) => None,
        };
        Some(match self {
            Clause::Is { path: p, test, negate } => match (test, sub(p)?) {
                (_, PathSub::Same) => self.clone(),
                (_, PathSub::Bound(q)) | (Test::Number, PathSub::Path(q)) => Clause::Is {
                    path: q,
                    test: *test,
                    negate: *negate,
                },
                _ => return None,
            },
            Clause::Equals { path: p, text } => Clause::Equals {
                path: path(p)?,
                text: text.clone(),
            },
            Clause::Truthy(p) => Clause::Truthy(path(p)?),
        })
    }

    fn holds(&self, scope: &Scope) -> bool {
        match self {
            Clause::Is { path, test, negate } => passes(scope, path, *test, *negate),
            // The engine compares kinds too: only text equals text.
            Clause::Equals { path, text } => {
                scope.walk(path).and_then(|(value, _)| value.as_str()) == Some(text.as_str())
            }
            // The engine's truth: nothing, none, false, zero and empty text, lists and maps are false.
            Clause::Truthy(path) => scope.walk(path).is_some_and(|(value, _)| value.is_true()),
        }
    }
}

/// A path of keys only, not one of the engine's constants or keywords.
pub(super) fn plain_path(source: &str) -> Option<Path> {
    let path = Path::parse(source.trim())?;
    let plain = path.steps.iter().all(|s| matches!(s, Step::Key(_)));
    (plain
        && !matches!(
            path.root.as_str(),
            "True" | "False" | "true" | "false" | "none" | "None" | "not" | "is"
        ))
    .then_some(path)
}

impl Arg {
    fn substitute(&self, sub: &dyn Fn(&Path) -> Option<PathSub>) -> Option<Arg> {
        Some(match self {
            Arg::Text(_) => self.clone(),
            Arg::Path(p) => match sub(p)? {
                PathSub::Same => self.clone(),
                PathSub::Path(q) | PathSub::Bound(q) => Arg::Path(q),
                PathSub::Text(text) => Arg::Text(text),
            },
            Arg::Call(call) => Arg::Call(call.substitute(sub)?),
            Arg::Float(p) => match sub(p)? {
                PathSub::Same => self.clone(),
                PathSub::Path(q) | PathSub::Bound(q) => Arg::Float(q),
                PathSub::Text(_) => return None,
            },
            Arg::Dict(entries) => Arg::Dict(
                entries
                    .iter()
                    .map(|(key, arg)| Some((key.clone(), arg.substitute(sub)?)))
                    .collect::<Option<_>>()?,
            ),
        })
    }

    /// A conditional's branch: an argument, or `path | float`.
    fn compile_branch(source: &str, engine: &Engine) -> Option<Arg> {
        let source = source.trim();
        if let Some(inner) = enclosed(source, '(', ')') {
            return Call::compile(inner, engine).map(Arg::Call);
        }
        if let Some(inner) = enclosed(source, '{', '}') {
            let mut entries = Vec::new();
            for entry in expr::split_args(inner) {
                let (key, value) = split_top(&entry, ":")?;
                entries.push((literal(key)?, Arg::compile(value, engine)?));
            }
            entries.sort_by(|a, b| a.0.cmp(&b.0));
            // A key given twice is the engine's to settle.
            if entries.windows(2).any(|pair| pair[0].0 == pair[1].0) {
                return None;
            }
            return Some(Arg::Dict(entries));
        }
        if let Some((subject, "float")) = source.split_once('|').map(|(a, b)| (a, b.trim())) {
            return plain_path(subject).map(Arg::Float);
        }
        Arg::compile(source, engine)
    }

    /// A conditional's branch, run: what the engine would give for it, or `None` to leave it to the engine.
    fn eval_branch(&self, scope: &Scope) -> Option<Out> {
        match self {
            Arg::Text(text) => Some(Out::Text(text.clone())),
            Arg::Path(_) => match self.eval(scope)? {
                Plain::Nothing => Some(Out::Nothing),
                Plain::Text(text) => Some(Out::Text(text.into_owned())),
                // The engine would hand back its own number or boolean: leave those to it.
                Plain::Bool(_) | Plain::Int(_) => None,
            },
            Arg::Call(call) => call.eval(scope),
            Arg::Dict(entries) => {
                // What the engine's map gives back: text, or null for what is not there.
                let mut map = Members::with_capacity(entries.len());
                for (key, arg) in entries {
                    let value = match arg.eval(scope)? {
                        Plain::Nothing => Tree::Null,
                        Plain::Text(text) => Tree::from(text.into_owned()),
                        Plain::Bool(_) | Plain::Int(_) => return None,
                    };
                    map.insert(key.clone(), value);
                }
                Some(Out::Json(Tree::Object(map)))
            }
            Arg::Float(path) => {
                // The engine's `float` filter: nothing is 0.0, text is parsed (an error is the engine's to
                // give), numbers and booleans are converted.
                let found = scope.walk(path).map(|(value, _)| value);
                let number = match found.map(|value| (value, value.kind())) {
                    None | Some((_, Kind::Null)) => 0.0,
                    Some((_, Kind::Str(s))) => s.parse::<f64>().ok()?,
                    Some((value, Kind::Number)) => value.as_f64()?,
                    Some((_, Kind::Bool(b))) => f64::from(u8::from(b)),
                    Some((_, Kind::Array | Kind::Object)) => return None,
                };
                // JSON has no NaN or infinity; what the engine makes of them is its own.
                if !number.is_finite() {
                    return None;
                }
                // What the engine's float comes back as: serde_json's number for it.
                serde_json::Number::from_f64(number).map(|n| Out::Json(Tree::Number(n)))
            }
        }
    }

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
            // `plain` reads the value clean itself.
            Arg::Path(path) => match scope.find(path) {
                None => Some(Plain::Nothing),
                Some((value, clean)) => plain(value, clean),
            },
            Arg::Call(call) => match call.eval(scope)? {
                Out::Nothing => Some(Plain::Nothing),
                Out::Text(text) => Some(Plain::Text(Cow::Owned(text))),
                Out::Json(_) => None,
            },
            Arg::Float(_) | Arg::Dict(_) => None,
        }
    }
}

/// A value as an argument; a clean binding's empty values are not there.
fn plain<'v>(value: Node<'v>, clean: bool) -> Option<Plain<'v>> {
    if clean && value.is_empty_deep() {
        return Some(Plain::Nothing);
    }
    match value.kind() {
        Kind::Null => Some(Plain::Nothing),
        Kind::Str(s) => Some(Plain::Text(Cow::Borrowed(s))),
        Kind::Bool(b) => Some(Plain::Bool(b)),
        // The engine gets an i64 for such a number (`Node::to_engine`), and other numbers as floats.
        Kind::Number => value.as_i64().map(Plain::Int),
        Kind::Array | Kind::Object => None,
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
pub(super) fn literal(source: &str) -> Option<String> {
    let source = source.trim();
    let quote = source.chars().next().filter(|q| matches!(q, '\'' | '"'))?;
    let inner = source.strip_prefix(quote)?.strip_suffix(quote)?;
    (!inner.contains(quote) && !inner.contains('\\')).then(|| inner.to_string())
}

/// The text before and after the first `word` outside quotes and brackets. Backslash escapes are not read:
/// `literal` refuses them, so a text with one is never run here.
pub(super) fn split_top<'a>(source: &'a str, word: &str) -> Option<(&'a str, &'a str)> {
    let (mut depth, mut quote) = (0i32, None::<char>);
    for (i, c) in source.char_indices() {
        match (quote, c) {
            (Some(q), c) if c == q => quote = None,
            (Some(_), _) => {}
            (None, '\'' | '"') => quote = Some(c),
            (None, '(' | '[' | '{') => depth += 1,
            (None, ')' | ']' | '}') => depth -= 1,
            (None, _) if depth == 0 && source[i..].starts_with(word) => {
                return Some((&source[..i], &source[i + word.len()..]));
            }
            _ => {}
        }
    }
    None
}

/// The parts of `source` between every `word` outside quotes and brackets.
pub(super) fn split_all_top<'a>(source: &'a str, word: &str) -> Vec<&'a str> {
    let mut parts = Vec::new();
    let mut rest = source;
    while let Some((part, after)) = split_top(rest, word) {
        parts.push(part);
        rest = after;
    }
    parts.push(rest);
    parts
}

/// What is between `open` and `close` when they enclose the whole text (`(a or b)`, `{'k': v}`).
fn enclosed(source: &str, open: char, close: char) -> Option<&str> {
    let inner = source.strip_prefix(open)?.strip_suffix(close)?;
    // `(a) or (b)`: the first bracket closes before the end.
    (closing(source, 0)? == source.len() - 1).then_some(inner)
}

/// `name(inner)` when the parenthesis after the name closes at the very end of the text.
pub(super) fn call_parts(source: &str) -> Option<(&str, &str)> {
    let source = source.trim();
    let open = source.find('(')?;
    let name = source[..open].trim_end();
    if name.is_empty() || !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
        return None;
    }
    let close = closing(source, open)?;
    (close == source.len() - 1).then(|| (name, &source[open + 1..close]))
}

/// Where the bracket opening at `open` closes, outside quotes.
fn closing(source: &str, open: usize) -> Option<usize> {
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
                    return Some(i);
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
        assert!(Call::compile("r.A is defined and r.A is not none", &engine).is_some());
        // `a and b` gives a value, not true or false: the engine's.
        assert!(Call::compile("r.A and r.B", &engine).is_none());
        assert!(Call::compile("r.A[0] is number", &engine).is_none());
        assert!(Call::compile("r.A is string", &engine).is_none());
        assert_eq!(call_parts("f(a, g(b))"), Some(("f", "a, g(b)")));
        assert_eq!(call_parts("f(a) or g(b)"), None);
        assert_eq!(call_parts("f(')(')"), Some(("f", "')('")));
    }

    /// Runs `check` with the record bound as `r` every way a template reads one: as JSON or as native data
    /// (parsed as replies are, its members read through `Members`), as it is or clean.
    fn each_binding(record: &Tree, mut check: impl FnMut(&Scope, Node, bool, &str)) {
        use super::super::template::{MemberIndex, Scope};
        let native = crate::mapping::node::to_native(record).unwrap();
        let members = MemberIndex::of(Node::Native(&native));
        assert!(
            members.is_some(),
            "the record is large enough to be read through its members"
        );
        for clean in [false, true] {
            for (form, node) in [("json", Node::Json(record)), ("native", Node::Native(&native))] {
                let base = Scope::root("_", Node::NULL);
                let scope = match (clean, node) {
                    (true, Node::Native(_)) => base.bind_record("r", node, members.as_ref()),
                    (true, _) => base.bind_clean("r", node),
                    (false, _) => base.bind("r", node),
                };
                check(&scope, node, clean, form);
            }
        }
    }

    /// What the engine gives for `source` with the record as `r`.
    fn engine_value(engine: &Engine, source: &str, record: Node, clean: bool) -> minijinja::Value {
        let need = crate::mapping::context::Reads::scan(source);
        let r = need.0[0].1.convert(record, clean);
        engine
            .compile(source)
            .unwrap()
            .eval(minijinja::context! { r => r })
            .unwrap()
    }

    #[test]
    fn tests_give_what_the_engine_gives() {
        let engine = Engine::new(Arc::new(ConceptMaps::default()));
        let record = crate::tree!({ "n": 2.5, "i": 3, "b": true, "s": "4", "z": null, "e": "", "o": { "k": 1 },
            "t": "x", "u": "y" });
        let mut checked = 0;
        each_binding(&record, |scope, node, clean, form| {
            for key in ["n", "i", "b", "s", "z", "e", "o", "o.k", "o.x", "x", "x.y"] {
                for test in ["number", "defined", "undefined", "none", "not number", "not none"] {
                    let source = format!("r.{key} is {test}");
                    let direct = match Call::compile(&source, &engine).unwrap().eval(scope) {
                        Some(Out::Json(Tree::Bool(b))) => b,
                        _ => panic!("{source}"),
                    };
                    let engine_says = engine_value(&engine, &source, node, clean);
                    assert_eq!(direct, engine_says.is_true(), "{source} ({form}, clean: {clean})");
                    checked += 1;
                }
            }
        });
        assert_eq!(checked, 264);
    }

    #[test]
    fn conditionals_give_what_the_engine_gives() {
        use super::super::template::Scope;
        let engine = Engine::new(Arc::new(ConceptMaps::default()));
        let record = crate::tree!({ "n": "2.5", "i": 3, "f": 0.0, "b": true, "no": false, "s": "High",
            "e": "", "z": null, "bad": "n/a", "l": [], "o": { "k": "v" } });
        let expressions = [
            "r.s if r.b else 'Normal'",
            "r.s if r.no else 'Normal'",
            "r.s if r.b is defined and r.b is not none",
            "r.s if r.z is defined and r.z is not none",
            "r.s if r.x is defined",
            "r.n | float if r.n",
            "r.e | float if r.e",
            "r.x | float if r.b",
            "r.i | float if r.i",
            "r.n | float if r.f else r.s",
            "r.s if r.l else r.o.k",
            "r.o.k if r.o else 'none'",
            "'a' if r.b else 'b' if r.no else 'c'",
            "'a' if r.no else 'b' if r.no else 'c'",
            "instant(r.s) if r.b",
            "r.s == 'High'",
            "r.s == 'Low'",
            "r.i == '3'",
            "r.z == 'y'",
            "r.e == ''",
            "r.s is defined and r.s == 'High'",
            "r.e or 'day'",
            "r.s or 'day'",
            "r.x or r.e or 'c'",
            "r.z or r.s",
            "r.s if r.s == 'High' else 'other'",
            "{'system': 'http://x', 'code': r.s, 'display': r.o.k} if r.s",
            "{'system': 'http://x', 'code': r.x} if r.b else r.s",
            "(r.s if r.no) or ({'b': r.s, 'a': 'x'} if r.b) or ({'c': r.e} if r.b)",
            "(r.s if r.no) or ({'b': r.x} if r.b)",
            "(r.x if r.b) or (r.e if r.b) or ('z' if r.b)",
        ];
        let mut direct_runs = 0;
        each_binding(&record, |scope, node, clean, form| {
            for source in expressions {
                let call = Call::compile(source, &engine).unwrap_or_else(|| panic!("not compiled: {source}"));
                let Some(out) = call.eval(scope) else { continue };
                direct_runs += 1;
                let direct = match out {
                    Out::Nothing => None,
                    Out::Text(text) => Some(Tree::from(text)),
                    Out::Json(value) => Some(value),
                };
                let value = engine_value(&engine, source, node, clean);
                let engine_says = (!value.is_undefined() && !value.is_none())
                    .then(|| crate::mapping::context::from_engine(&value).unwrap());
                assert_eq!(direct, engine_says, "{source} ({form}, clean: {clean})");
            }
        });
        assert!(direct_runs >= 116, "{direct_runs}");
        // A branch the engine alone takes (text that is not a number) is left to it.
        let bad = Call::compile("r.bad | float if r.bad", &engine).unwrap();
        assert!(bad.eval(&Scope::root("r", &record)).is_none());
        assert!(Call::compile("r.s if r.a or r.b", &engine).is_none());
        assert!(Call::compile("r.s | int if r.s", &engine).is_none());
        // Maps whose values are not text, or whose keys repeat, are the engine's.
        assert!(Call::compile("{'a': r.i} if r.b", &engine)
            .unwrap()
            .eval(&Scope::root("r", &record))
            .is_none());
        assert!(Call::compile("{'a': r.s, 'a': 'x'} if r.b", &engine).is_none());
        assert!(Call::compile("(r.s) or (r.x", &engine).is_none());
    }
}
