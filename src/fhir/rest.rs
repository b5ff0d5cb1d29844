//! The FHIR RESTful API: a request's method, path and headers become one `Interaction`.
//!
//! Everything a client can say about *how* it wants an answer (`_format`, `_pretty`, `_count`, `_summary`,
//! `_elements`, `_sort`, `_include`, `_revinclude`, `Prefer`) is parsed here, once, for every resource;
//! what is left are the search parameters, which the resource's mapping must know.

use super::error::{FhirError, FhirResult};
use super::format::{self, Format};
use super::resource_types::is_resource_type;
use http::{HeaderMap, Method};

/// What kind of RESTful interaction a request is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Kind {
    Capabilities,
    SmartConfiguration,
    Read,
    VRead,
    Search,
    Create,
    Update,
    Patch,
    Delete,
    History,
    /// `$name` at system, type or instance level.
    Operation(String),
}

impl Kind {
    /// The CapabilityStatement's name for the interaction (used in metrics, logs and audit).
    pub fn name(&self) -> &str {
        match self {
            Kind::Capabilities => "capabilities",
            Kind::SmartConfiguration => "smart-configuration",
            Kind::Read => "read",
            Kind::VRead => "vread",
            Kind::Search => "search-type",
            Kind::Create => "create",
            Kind::Update => "update",
            Kind::Patch => "patch",
            Kind::Delete => "delete",
            Kind::History => "history-instance",
            Kind::Operation(_) => "operation",
        }
    }
}

/// `_summary` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Summary {
    True,
    Text,
    Data,
    Count,
    False,
}

impl Summary {
    /// The parameter's value, as a client writes it.
    pub fn as_str(self) -> &'static str {
        match self {
            Summary::True => "true",
            Summary::Text => "text",
            Summary::Data => "data",
            Summary::Count => "count",
            Summary::False => "false",
        }
    }
}

/// How strictly to treat unknown search parameters (`Prefer: handling=`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Handling {
    #[default]
    Strict,
    Lenient,
}

/// What to return after a write (`Prefer: return=`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Return {
    Minimal,
    #[default]
    Representation,
    OperationOutcome,
}

/// One search parameter as sent: `name:modifier=value,value`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SearchParam {
    pub name: String,
    pub modifier: Option<String>,
    /// Comma-separated alternatives (OR), each still escaped as FHIR says (`\,`).
    pub values: Vec<String>,
}

/// An `_include` or `_revinclude`: `Source:param[:Target]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Include {
    pub source: String,
    pub param: String,
    pub target: Option<String>,
    pub iterate: bool,
}

/// A sort key: a search parameter name, descending when prefixed by `-`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SortKey {
    pub param: String,
    pub descending: bool,
}

/// The parsed request, independent of transport.
#[derive(Debug, Clone)]
pub struct Interaction {
    pub kind: Kind,
    pub resource_type: Option<String>,
    pub id: Option<String>,
    pub version: Option<String>,
    pub format: Format,
    /// `_format` as the client wrote it, for page links (the format shapes every page).
    pub format_param: Option<String>,
    pub pretty: bool,
    pub params: Vec<SearchParam>,
    pub count: Option<usize>,
    pub page: Option<String>,
    pub summary: Option<Summary>,
    pub elements: Vec<String>,
    pub sort: Vec<SortKey>,
    pub include: Vec<Include>,
    pub revinclude: Vec<Include>,
    pub handling: Handling,
    pub return_pref: Return,
    /// How old an answer kept in the cache the client takes (`Cache-Control`).
    pub fresh: Freshness,
    /// A Binary read without `_format`: its `Accept` (empty when none), to choose between the content and the
    /// resource once the content's media type is known (`format::binary_wanted`).
    pub binary_accept: Option<String>,
    /// Parameters given that the interaction does not take (a search's on a read), in the order given.
    pub not_taken: Vec<String>,
}

impl Interaction {
    /// The result parameters given that shape a search's page (`_sort`, `_include`, `_revinclude`): for the
    /// interactions that take none of them to refuse, or under lenient handling to say ignored.
    pub fn page_shaping(&self) -> impl Iterator<Item = &'static str> + '_ {
        [
            ("_sort", !self.sort.is_empty()),
            ("_include", !self.include.is_empty()),
            ("_revinclude", !self.revinclude.is_empty()),
        ]
        .into_iter()
        .filter(|(_, given)| *given)
        .map(|(name, _)| name)
    }

    /// The result parameters given that only a search's or a read's answer takes (`_count`, `_page`,
    /// `_summary`, `_elements` and those of [`Interaction::page_shaping`]): for an operation whose answer is
    /// none of those to refuse.
    pub fn result_params_given(&self) -> Vec<&'static str> {
        let mut given: Vec<&'static str> = [
            ("_count", self.count.is_some()),
            ("_page", self.page.is_some()),
            ("_summary", self.summary.is_some()),
            ("_elements", !self.elements.is_empty()),
        ]
        .into_iter()
        .filter(|(_, given)| *given)
        .map(|(name, _)| name)
        .collect();
        given.extend(self.page_shaping());
        given
    }

    /// The parameters that shape how every page is written (`_format`, `_pretty`), for page links. They do not
    /// change what matches, so page tokens are not bound to them.
    pub fn output_query(&self) -> String {
        let mut out = form_urlencoded::Serializer::new(String::new());
        if let Some(format) = &self.format_param {
            out.append_pair("_format", format);
        }
        if self.pretty {
            out.append_pair("_pretty", "true");
        }
        out.finish()
    }

    /// Refuses what was given that the interaction does not take (400 naming the first), or under
    /// `Prefer: handling=lenient` ignores it, as FHIR says. Called once the interaction is known to be offered.
    pub fn refuse_not_taken(&self) -> FhirResult<()> {
        let Some(name) = self.not_taken.first().filter(|_| self.handling == Handling::Strict) else {
            return Ok(());
        };
        let takes = match self.kind {
            Kind::Capabilities => "the capability statement, which takes mode, _format and _pretty (it is given whole)",
            _ => "a read, which takes _format, _pretty, _summary and _elements",
        };
        Err(FhirError::bad_request(
            "IM1-1201",
            format!("'{}' is not a parameter of {takes}", printable(name)),
        )
        .at(name.clone()))
    }

    /// A short label for logs and metrics: `read Patient`, `search-type Observation`.
    pub fn label(&self) -> String {
        match &self.resource_type {
            Some(t) => format!("{} {t}", self.kind.name()),
            None => self.kind.name().to_string(),
        }
    }
}

/// Parses method + path (relative to the FHIR base, without the leading `/`) + query + headers.
pub fn parse(method: &Method, path: &str, query: Option<&str>, headers: &HeaderMap) -> FhirResult<Interaction> {
    let pairs = query_pairs(query.unwrap_or("").as_bytes())?;
    // An empty `_format=` asks for nothing, as any empty parameter: the Accept header decides.
    let format_param = pairs
        .iter()
        .find(|(k, v)| k == "_format" && !v.trim().is_empty())
        .map(|(_, v)| v.as_str());
    let accept = headers.get(http::header::ACCEPT).and_then(|v| v.to_str().ok());
    // Segments are compared decoded: `%7A` is `z` (RFC 3986 6.2.2.2). An encoded `/` stays inside its segment,
    // where no type, id or operation name admits it.
    let decoded: Vec<std::borrow::Cow<str>> = path
        .split('/')
        .filter(|s| !s.is_empty())
        .map(|s| percent_encoding::percent_decode_str(s).decode_utf8_lossy())
        .collect();
    let segments: Vec<&str> = decoded.iter().map(|s| s.as_ref()).collect();
    let (kind, resource_type, id, version) = route(method, &segments)?;
    // FHIR: a Binary read gets the content itself unless it asks for a FHIR format (`_format`, or an Accept
    // that prefers one): decided once the content's media type is known. Its errors are FHIR JSON.
    let binary_read = format_param.is_none() && kind == Kind::Read && resource_type.as_deref() == Some("Binary");
    let binary_accept = binary_read.then(|| accept.unwrap_or_default().to_string());
    let format = match format::negotiate(format_param, accept) {
        // The SMART configuration is plain JSON (SMART App Launch) whatever FHIR format is asked for.
        _ if kind == Kind::SmartConfiguration => Format::Json,
        Ok(format) => format,
        Err(_) if binary_read => Format::Json,
        Err(e) => return Err(e),
    };
    let mut interaction = Interaction {
        kind,
        resource_type,
        id,
        version,
        format,
        format_param: format_param.map(String::from),
        pretty: false,
        params: Vec::new(),
        count: None,
        page: None,
        summary: None,
        elements: Vec::new(),
        sort: Vec::new(),
        include: Vec::new(),
        revinclude: Vec::new(),
        handling: Handling::Strict,
        return_pref: Return::Representation,
        fresh: wants_fresh(headers),
        binary_accept,
        not_taken: Vec::new(),
    };
    read_prefer(headers, &mut interaction);
    apply_params(&mut interaction, pairs)?;
    Ok(interaction)
}

/// How old an answer kept in the cache the client takes (RFC 9111 section 5.2.1): at most `max-age` seconds
/// (the least, given more than once); none at all for `no-cache`, `no-store` or `max-age=0`, or without a
/// `Cache-Control`, HTTP/1.0's `Pragma: no-cache` (section 5.4): the answer then comes from the native system.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Freshness {
    max_age: Option<std::time::Duration>,
}

impl Freshness {
    /// Only an answer straight from the native system will do.
    pub const FROM_SOURCE: Freshness = Freshness {
        max_age: Some(std::time::Duration::ZERO),
    };

    /// Whether only an answer straight from the native system will do.
    pub fn from_source(self) -> bool {
        self == Freshness::FROM_SOURCE
    }

    /// Whether an answer kept for `age` will do.
    pub fn takes(self, age: std::time::Duration) -> bool {
        self.max_age.is_none_or(|most| age <= most)
    }
}

fn wants_fresh(headers: &HeaderMap) -> Freshness {
    let directives = |name: http::header::HeaderName| {
        headers
            .get_all(name)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .map(|d| d.trim().to_ascii_lowercase())
            .collect::<Vec<_>>()
    };
    let cache_control = directives(http::header::CACHE_CONTROL);
    if cache_control.is_empty() {
        let pragma = directives(http::header::PRAGMA).iter().any(|d| d == "no-cache");
        return if pragma {
            Freshness::FROM_SOURCE
        } else {
            Freshness::default()
        };
    }
    let mut fresh = Freshness::default();
    for directive in &cache_control {
        let most = match directive.as_str() {
            "no-cache" | "no-store" => Some(0),
            other => other
                .strip_prefix("max-age=")
                // One that is not seconds is 0: the bound that cannot take an answer older than asked.
                .map(|value| delta_seconds(value.trim_matches('"')).unwrap_or(0)),
        };
        if let Some(seconds) = most {
            let most = std::time::Duration::from_secs(seconds);
            fresh.max_age = Some(fresh.max_age.map_or(most, |earlier| earlier.min(most)));
        }
    }
    fresh
}

/// An HTTP delta-seconds value (`max-age`, `Retry-After`): its seconds, a number past 2^31 as 2^31 (RFC 9111
/// section 1.2.2); none for anything that is not a number of seconds (`-1`, `5.5`, `soon`, a date).
pub fn delta_seconds(value: &str) -> Option<u64> {
    const MOST: u64 = 1 << 31;
    if value.is_empty() || !value.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some(value.parse::<u64>().map_or(MOST, |seconds| seconds.min(MOST)))
}

/// Adds parameters from a `POST _search` form body to an interaction parsed from its URL.
pub fn add_form_params(interaction: &mut Interaction, body: &[u8]) -> FhirResult<()> {
    let pairs = query_pairs(body)?;
    apply_params(interaction, pairs)
}

/// A query string (or a form body) as name and value pairs, decoded as `application/x-www-form-urlencoded`
/// says, but strictly: a `%` not followed by two hex digits, or bytes that are not UTF-8, are a 400 rather
/// than taken literally or replaced (a search for a mangled value would quietly find nothing).
fn query_pairs(raw: &[u8]) -> FhirResult<Vec<(String, String)>> {
    let bad = |what: &str| {
        FhirError::bad_request(
            "IM1-1201",
            format!("the query is not valid application/x-www-form-urlencoded: {what}"),
        )
    };
    let decode = |part: &[u8]| -> FhirResult<String> {
        // percent_encoding leaves a malformed escape as it is, so those are refused first.
        let malformed = part.iter().enumerate().any(|(i, b)| {
            *b == b'%'
                && !part
                    .get(i + 1..i + 3)
                    .is_some_and(|h| h.iter().all(u8::is_ascii_hexdigit))
        });
        if malformed {
            return Err(bad("'%' must be followed by two hexadecimal digits"));
        }
        let spaced: Vec<u8> = part.iter().map(|b| if *b == b'+' { b' ' } else { *b }).collect();
        percent_encoding::percent_decode(&spaced)
            .decode_utf8()
            .map(|text| text.into_owned())
            .map_err(|_| bad("its values must be UTF-8"))
    };
    raw.split(|b| *b == b'&')
        .filter(|pair| !pair.is_empty())
        .map(|pair| {
            let (name, value) = match pair.iter().position(|b| *b == b'=') {
                Some(at) => (&pair[..at], &pair[at + 1..]),
                None => (pair, &pair[pair.len()..]),
            };
            Ok((decode(name)?, decode(value)?))
        })
        .collect()
}

/// An operation's input given as a FHIR `Parameters` body (`POST .../$translate`): each parameter with a primitive
/// value becomes a parameter of the interaction, as if it were in the URL.
pub fn add_operation_parameters(interaction: &mut Interaction, parameters: &serde_json::Value) -> FhirResult<()> {
    let mut pairs = Vec::new();
    for parameter in parameters
        .get("parameter")
        .and_then(serde_json::Value::as_array)
        .into_iter()
        .flatten()
    {
        let name = parameter
            .get("name")
            .and_then(serde_json::Value::as_str)
            .unwrap_or_default();
        // A Coding (`$translate`'s `coding`) is taken as the system and code it holds.
        if let Some(coding) = parameter.get("valueCoding").filter(|_| !name.is_empty()) {
            for part in ["system", "code"] {
                if let Some(value) = coding.get(part).and_then(serde_json::Value::as_str) {
                    pairs.push((part.to_string(), value.to_string()));
                }
            }
            continue;
        }
        let value = parameter.as_object().and_then(|p| {
            p.iter()
                .find(|(k, _)| k.starts_with("value"))
                .and_then(|(_, v)| match v {
                    serde_json::Value::String(s) => Some(s.clone()),
                    serde_json::Value::Bool(_) | serde_json::Value::Number(_) => Some(v.to_string()),
                    _ => None,
                })
        });
        match value {
            Some(value) if !name.is_empty() => pairs.push((name.to_string(), value)),
            _ => {
                return Err(FhirError::bad_request(
                    "IM1-1116",
                    "operation parameters are taken with a name and a primitive value[x] or a valueCoding",
                )
                .at("Parameters.parameter"))
            }
        }
    }
    apply_params(interaction, pairs)
}

type Route = (Kind, Option<String>, Option<String>, Option<String>);

fn route(method: &Method, segments: &[&str]) -> FhirResult<Route> {
    // HEAD is GET without the body (hyper leaves the body out); it is audited as the read or search it is.
    let method = if method == Method::HEAD { &Method::GET } else { method };
    let not_allowed = |allow: &'static str| {
        FhirError::method_not_allowed("IM1-1001", format!("{method} is not allowed on this path")).allow(allow)
    };
    // Nothing here keeps versions: the GP systems' APIs expose none.
    let no_history = || {
        FhirError::method_not_allowed(
            "IM1-1009",
            "history is not supported: the GP systems' APIs expose no versions of what they hold",
        )
    };
    // An operation is invoked by POST, or by GET where it changes nothing (all of this proxy's operations).
    let operation = |op: &str| match *method {
        Method::GET | Method::POST => operation_name(op),
        _ => Err(not_allowed("GET, HEAD, POST")),
    };
    match segments {
        // The base is a path of this server, but none of its interactions is offered: no method is allowed.
        [] => Err(FhirError::method_not_allowed(
            "IM1-1002",
            "the system level (batch, transaction, search-system) is not supported",
        )),
        ["metadata"] if method == Method::GET => Ok((Kind::Capabilities, None, None, None)),
        ["metadata"] => Err(not_allowed("GET, HEAD")),
        ["_history"] => Err(no_history()),
        [".well-known", "smart-configuration"] if method == Method::GET => {
            Ok((Kind::SmartConfiguration, None, None, None))
        }
        [".well-known", "smart-configuration"] => Err(not_allowed("GET, HEAD")),
        [op] if op.starts_with('$') => Ok((Kind::Operation(operation(op)?), None, None, None)),
        [t, rest @ ..] => {
            let t = resource_type(t)?;
            match (method.clone(), rest) {
                (Method::GET, []) => Ok((Kind::Search, Some(t), None, None)),
                (Method::POST, []) => Ok((Kind::Create, Some(t), None, None)),
                (Method::POST, ["_search"]) => Ok((Kind::Search, Some(t), None, None)),
                (_, ["_search"]) => Err(not_allowed("POST")),
                // Conditional update, patch and delete: the interactions, refused where they are dispatched.
                (Method::PUT, []) => Ok((Kind::Update, Some(t), None, None)),
                (Method::PATCH, []) => Ok((Kind::Patch, Some(t), None, None)),
                (Method::DELETE, []) => Ok((Kind::Delete, Some(t), None, None)),
                (_, []) => Err(not_allowed("GET, HEAD")),
                (_, ["_history"]) => Err(no_history()),
                (_, [op]) if op.starts_with('$') => Ok((Kind::Operation(operation(op)?), Some(t), None, None)),
                (Method::GET, [id]) => Ok((Kind::Read, Some(t), Some(logical_id(id)?), None)),
                (Method::PUT, [id]) => Ok((Kind::Update, Some(t), Some(logical_id(id)?), None)),
                (Method::PATCH, [id]) => Ok((Kind::Patch, Some(t), Some(logical_id(id)?), None)),
                (Method::DELETE, [id]) => Ok((Kind::Delete, Some(t), Some(logical_id(id)?), None)),
                (_, [_]) => Err(not_allowed("GET, HEAD")),
                (_, [id, op]) if op.starts_with('$') => {
                    Ok((Kind::Operation(operation(op)?), Some(t), Some(logical_id(id)?), None))
                }
                (Method::GET, [id, "_history"]) => Ok((Kind::History, Some(t), Some(logical_id(id)?), None)),
                (Method::GET, [id, "_history", vid]) => {
                    Ok((Kind::VRead, Some(t), Some(logical_id(id)?), Some(logical_id(vid)?)))
                }
                (_, [_, "_history"] | [_, "_history", _]) => Err(not_allowed("")),
                _ => Err(FhirError::not_found("IM1-1003", "no FHIR interaction has this path")),
            }
        }
    }
}

fn resource_type(name: &str) -> FhirResult<String> {
    if is_resource_type(name) {
        Ok(name.to_string())
    } else {
        Err(FhirError::not_found(
            "IM1-1004",
            format!("'{}' is not a FHIR R4 resource type", printable(name)),
        ))
    }
}

/// FHIR ids: `[A-Za-z0-9\-\.]{1,64}`.
pub fn is_valid_id(id: &str) -> bool {
    (1..=64).contains(&id.len()) && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
}

fn logical_id(id: &str) -> FhirResult<String> {
    if is_valid_id(id) {
        Ok(id.to_string())
    } else {
        Err(FhirError::bad_request(
            "IM1-1005",
            "the id is not a valid FHIR id ([A-Za-z0-9-.], at most 64 characters)",
        ))
    }
}

fn operation_name(op: &str) -> FhirResult<String> {
    let name = &op[1..];
    if !name.is_empty() && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-') {
        Ok(name.to_string())
    } else {
        Err(FhirError::bad_request("IM1-1006", "the operation name is not valid"))
    }
}

/// Echoes client input in messages only when it is short and plain.
pub fn printable(s: &str) -> String {
    let clean: String = s.chars().filter(|c| c.is_ascii_graphic()).take(40).collect();
    clean
}

/// Whether an interaction takes a parameter at all. A read takes only what shapes the one resource it gives
/// (FHIR's read: `_format`, `_pretty`, `_summary`, `_elements`); the capability statement, given whole, its
/// `mode` and the format (with no table of its summary elements, a subset of it would lack what it must
/// hold). A search and an operation check their own (search parameters by the mapping, an operation's by the
/// operation).
fn takes_param(kind: &Kind, name: &str) -> bool {
    match kind {
        Kind::Read => matches!(name, "_format" | "_pretty" | "_summary" | "_elements"),
        Kind::Capabilities => matches!(name, "_format" | "_pretty" | "mode"),
        Kind::Search | Kind::Operation(_) => true,
        // Not offered here (405 whatever they are given), or not FHIR (the SMART configuration): nothing is read.
        _ => name == "_format",
    }
}

/// `Prefer` (RFC 7240): preference names in any case, whitespace around `=`, values plain or quoted.
fn read_prefer(headers: &HeaderMap, interaction: &mut Interaction) {
    for value in headers.get_all("prefer").iter().filter_map(|v| v.to_str().ok()) {
        for token in value.split([',', ';']) {
            let (name, value) = token.split_once('=').unwrap_or((token, ""));
            let value = value.trim().trim_matches('"');
            match (name.trim().to_ascii_lowercase().as_str(), value) {
                ("handling", "lenient") => interaction.handling = Handling::Lenient,
                ("handling", "strict") => interaction.handling = Handling::Strict,
                ("return", "minimal") => interaction.return_pref = Return::Minimal,
                ("return", "representation") => interaction.return_pref = Return::Representation,
                ("return", "OperationOutcome") => interaction.return_pref = Return::OperationOutcome,
                _ => {}
            }
        }
    }
}

fn apply_params(interaction: &mut Interaction, pairs: Vec<(String, String)>) -> FhirResult<()> {
    let mut total_given = false;
    for (key, value) in pairs {
        let (name, modifier) = match key.split_once(':') {
            Some((n, m)) => (n.to_string(), Some(m.to_string())),
            None => (key.clone(), None),
        };
        let bad = |message: String| FhirError::bad_request("IM1-1201", message).at(name.clone());
        // What the interaction does not take is set aside unread, refused later (`refuse_not_taken`) so that
        // an interaction not offered at all is a 405 first. An empty value is no parameter.
        if !takes_param(&interaction.kind, &name) {
            if !value.is_empty() && !interaction.not_taken.contains(&name) {
                interaction.not_taken.push(name);
            }
            continue;
        }
        // These take one value: a second one would silently win (or lose), here or between a URL and a body
        // (`POST .../$everything?_count=5` with `_count` in its Parameters too).
        let given_before = match name.as_str() {
            "_count" => interaction.count.is_some(),
            "_page" => interaction.page.is_some(),
            "_summary" => interaction.summary.is_some(),
            // Kept nowhere (every Bundle states its total exactly), so counted here.
            "_total" => std::mem::replace(&mut total_given, true),
            _ => false,
        };
        if given_before {
            return Err(bad(format!("{name} is given more than once")));
        }
        // Result parameters take no modifier: one sent would otherwise be dropped unseen.
        let result_param = matches!(
            name.as_str(),
            "_format" | "_pretty" | "_count" | "_page" | "_total" | "_summary" | "_elements" | "_sort"
        );
        if let (true, Some(modifier)) = (result_param, &modifier) {
            return Err(bad(format!("{name} takes no modifier (':{}')", printable(modifier))));
        }
        match name.as_str() {
            "_format" => {}
            "_pretty" => interaction.pretty = value == "true",
            "_count" => {
                let count: usize = value
                    .parse()
                    .map_err(|_| bad("_count must be a non-negative whole number".into()))?;
                interaction.count = Some(count);
            }
            "_page" => interaction.page = Some(value),
            // Every Bundle states its total, exactly: each of FHIR's values is met.
            "_total" if matches!(value.as_str(), "none" | "estimate" | "accurate") => {}
            "_total" => return Err(bad("_total must be none, estimate or accurate".into())),
            "_summary" => {
                interaction.summary = Some(match value.as_str() {
                    "true" => Summary::True,
                    "text" => Summary::Text,
                    "data" => Summary::Data,
                    "count" if matches!(interaction.kind, Kind::Read | Kind::VRead) => {
                        return Err(bad(
                            "_summary=count counts a search's matches; a read has none to count".into(),
                        ))
                    }
                    "count" => Summary::Count,
                    "false" => Summary::False,
                    _ => return Err(bad("_summary must be true, text, data, count or false".into())),
                })
            }
            "_elements" => {
                for name in value.split(',').map(str::trim).filter(|s| !s.is_empty()) {
                    // A root element's name (`code`), or one of a type (`Observation.code`, for that type
                    // only): elements below the root are not selectable.
                    let plain = |n: &str| {
                        n.starts_with(|c: char| c.is_ascii_alphabetic())
                            && n.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
                    };
                    let element_name = match name.split_once('.') {
                        Some((t, element)) => {
                            t.starts_with(|c: char| c.is_ascii_uppercase()) && plain(t) && plain(element)
                        }
                        None => plain(name),
                    };
                    if !element_name {
                        let shown: String = name.chars().take(40).collect();
                        return Err(FhirError::bad_request(
                            "IM1-1217",
                            format!(
                                "_elements names a resource's root elements (`code`, `Observation.code`); \
                                 '{shown}' is not one"
                            ),
                        )
                        .at("_elements"));
                    }
                    interaction.elements.push(name.to_string());
                }
            }
            "_sort" => {
                for key in value.split(',').map(str::trim).filter(|s| !s.is_empty()) {
                    let (param, descending) = match key.strip_prefix('-') {
                        Some(p) => (p, true),
                        None => (key, false),
                    };
                    interaction.sort.push(SortKey {
                        param: param.to_string(),
                        descending,
                    });
                }
            }
            "_include" | "_revinclude" => {
                let include = parse_include(&value, modifier.as_deref()).map_err(bad)?;
                if name == "_include" {
                    interaction.include.push(include)
                } else {
                    interaction.revinclude.push(include)
                }
            }
            _ => {
                if value.is_empty() {
                    // FHIR: a parameter with no value is ignored.
                    continue;
                }
                let mut values = split_values(&value);
                // `a,` or `a,,b`: FHIR's OR of values, one of them none. Matched, the empty value would match
                // everything (and `:not` nothing), so the filter would silently widen.
                if values.len() > 1 && values.iter().any(|v| v.trim().is_empty()) {
                    return Err(bad(format!(
                        "'{name}' has an empty value in its comma-separated list ('{}')",
                        printable(&value)
                    )));
                }
                // A reference's type modifier (`subject:Patient=x`) is the same as its typed value (`Patient/x`).
                let modifier = match modifier {
                    Some(target) if is_resource_type(&target) => {
                        for value in &mut values {
                            if !value.contains('/') {
                                *value = format!("{target}/{value}");
                            } else if !value.starts_with(&format!("{target}/")) {
                                let shown: String = value.chars().take(40).collect();
                                return Err(bad(format!("':{target}' asks for {target} references, not '{shown}'")));
                            }
                        }
                        None
                    }
                    other => other,
                };
                interaction.params.push(SearchParam { name, modifier, values });
            }
        }
    }
    Ok(())
}

fn parse_include(value: &str, modifier: Option<&str>) -> Result<Include, String> {
    let iterate = match modifier {
        None => false,
        Some("iterate") | Some("recurse") => true,
        Some(other) => return Err(format!("unknown modifier ':{other}' on an include")),
    };
    let parts: Vec<&str> = value.split(':').collect();
    match parts.as_slice() {
        [source, param] => Ok(Include {
            source: source.to_string(),
            param: param.to_string(),
            target: None,
            iterate,
        }),
        [source, param, target] => Ok(Include {
            source: source.to_string(),
            param: param.to_string(),
            target: Some(target.to_string()),
            iterate,
        }),
        _ => Err("an include is Source:param or Source:param:Target".into()),
    }
}

/// Splits a parameter value on unescaped commas (FHIR's OR).
fn split_values(value: &str) -> Vec<String> {
    let mut values = vec![String::new()];
    let mut chars = value.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\\' if matches!(chars.peek(), Some(',') | Some('\\') | Some('$') | Some('|')) => {
                let escaped = chars.next().unwrap_or('\\');
                if let Some(v) = values.last_mut() {
                    v.push('\\');
                    v.push(escaped);
                }
            }
            ',' => values.push(String::new()),
            c => {
                if let Some(v) = values.last_mut() {
                    v.push(c)
                }
            }
        }
    }
    values
}

#[cfg(test)]
mod tests {
    use super::*;

    fn get(path: &str, query: &str) -> FhirResult<Interaction> {
        parse(&Method::GET, path, Some(query), &HeaderMap::new())
    }

    #[test]
    fn read_and_search_are_told_apart() {
        let read = get("Patient/abc-1", "").unwrap();
        assert_eq!((read.kind, read.id.as_deref()), (Kind::Read, Some("abc-1")));
        let search = get(
            "Patient",
            "identifier=https://fhir.nhs.uk/Id/nhs-number|9000000009&_count=5",
        )
        .unwrap();
        assert_eq!(search.kind, Kind::Search);
        assert_eq!(search.count, Some(5));
        assert_eq!(
            search.params[0].values,
            vec!["https://fhir.nhs.uk/Id/nhs-number|9000000009"]
        );
    }

    #[test]
    fn a_read_takes_only_what_shapes_its_resource() {
        let read = get(
            "Patient/abc-1",
            "_format=json&_pretty=true&_summary=true&_elements=name&foo=",
        )
        .unwrap();
        assert_eq!((read.summary, read.elements.len()), (Some(Summary::True), 1));
        assert!(read.refuse_not_taken().is_ok());
        for query in [
            "foo=bar",
            "_count=3",
            "_sort=date",
            "_include=Patient:general-practitioner",
            "_id=x",
            "_total=none&_total=none",
            "_count:x=1",
        ] {
            // Set aside unread, whatever it holds, and refused once the read is known to be offered.
            let read = get("Patient/abc-1", query).unwrap();
            assert!(read.params.is_empty() && read.count.is_none(), "{query}");
            let refused = read.refuse_not_taken().unwrap_err();
            assert_eq!(refused.status, 400, "{query}");
            assert!(
                refused.message.contains("not a parameter of a read"),
                "{query}: {}",
                refused.message
            );
        }
        // An empty value is no parameter; lenient handling ignores the rest, as FHIR says.
        assert!(get("Patient/abc-1", "_include=&foo=")
            .unwrap()
            .refuse_not_taken()
            .is_ok());
        let mut lenient = HeaderMap::new();
        lenient.insert("prefer", "handling=lenient".parse().unwrap());
        let read = parse(&Method::GET, "Patient/abc-1", Some("foo=bar&_count=3"), &lenient).unwrap();
        assert!(read.refuse_not_taken().is_ok());
        // The capability statement takes its mode and the format; it is given whole.
        let statement = get("metadata", "mode=terminology&_format=json").unwrap();
        assert!(statement.refuse_not_taken().is_ok());
        for query in ["foo=bar", "_summary=true", "_elements=fhirVersion"] {
            let refused = get("metadata", query).unwrap().refuse_not_taken().unwrap_err();
            assert_eq!(refused.status, 400, "{query}");
        }
        // What an interaction not offered is given is not read: it is a 405 whatever it holds.
        assert!(get("Patient/abc-1/_history", "_count=abc&_summary=count").is_ok());
        // Another interaction checks its own.
        assert!(get("Patient", "foo=bar").unwrap().not_taken.is_empty());
    }

    #[test]
    fn unknown_types_and_bad_ids_are_refused() {
        assert_eq!(get("Potato/1", "").unwrap_err().status, 404);
        assert_eq!(get("Patient/a_b", "").unwrap_err().status, 400);
        assert_eq!(get(&format!("Patient/{}", "a".repeat(65)), "").unwrap_err().status, 400);
    }

    #[test]
    fn wrong_methods_are_405() {
        let error = parse(&Method::PUT, "metadata", None, &HeaderMap::new()).unwrap_err();
        assert_eq!(error.status, 405);
    }

    #[test]
    fn or_values_respect_escapes() {
        assert_eq!(split_values(r"a,b\,c"), vec!["a".to_string(), r"b\,c".to_string()]);
    }

    /// A query is decoded strictly: what cannot be decoded is refused, not guessed at.
    #[test]
    fn queries_are_decoded_strictly() {
        for query in ["family=%ZZ", "family=%4", "family=%FF%FE", "fam%ily=x"] {
            assert_eq!(get("Patient", query).unwrap_err().status, 400, "{query}");
        }
        let decoded = get("Patient", "family=O%27Brien+Smith&given=a%2Bb").unwrap();
        assert_eq!(decoded.params[0].values, vec!["O'Brien Smith"]);
        assert_eq!(decoded.params[1].values, vec!["a+b"]);
        // One value each: a second would silently win, in the query or between the query and a body.
        for query in ["_count=2&_count=3", "_summary=true&_summary=false"] {
            assert_eq!(get("Patient", query).unwrap_err().status, 400, "{query}");
        }
        let mut everything = get("Patient/p1/$everything", "_count=5").unwrap();
        let body = serde_json::json!({"resourceType": "Parameters",
            "parameter": [{"name": "_count", "valueInteger": 2}]});
        assert_eq!(
            add_operation_parameters(&mut everything, &body).unwrap_err().status,
            400
        );
        let mut search = get("Patient", "_count=5").unwrap();
        assert_eq!(add_form_params(&mut search, b"_count=2").unwrap_err().status, 400);
        let mut search = get("Patient", "family=x").unwrap();
        add_form_params(&mut search, b"_count=2").unwrap();
        assert_eq!(search.count, Some(2));
    }

    /// An empty value among OR'd ones would match everything; a parameter with no value at all is ignored.
    #[test]
    fn an_empty_value_in_a_list_is_refused() {
        for query in ["code=a,", "code=,a", "code=a,,b", "code:not=a,%20", "status=,"] {
            let error = get("Observation", query).unwrap_err();
            assert_eq!(error.status, 400, "{query}");
        }
        let search = get("Observation", "code=&status=final").unwrap();
        assert_eq!(search.params.len(), 1);
        assert_eq!(get("Observation", r"code=a\,").unwrap().params[0].values, vec![r"a\,"]);
    }

    #[test]
    fn cache_control_says_how_old_a_kept_answer_may_be() {
        let fresh = |headers: &[(&'static str, &'static str)]| {
            let mut map = HeaderMap::new();
            for (name, value) in headers {
                map.append(*name, value.parse().unwrap());
            }
            parse(&Method::GET, "Patient", None, &map).unwrap().fresh
        };
        let secs = std::time::Duration::from_secs;
        // Pragma counts only where Cache-Control says nothing.
        assert!(fresh(&[("pragma", "no-cache")]).from_source());
        assert!(fresh(&[("cache-control", "no-cache")]).from_source());
        assert!(fresh(&[("cache-control", "max-age=0")]).from_source());
        assert!(fresh(&[("cache-control", "private, No-Store")]).from_source());
        let sixty = fresh(&[("pragma", "no-cache"), ("cache-control", "max-age=60")]);
        assert!(!sixty.from_source());
        assert!(sixty.takes(secs(60)) && !sixty.takes(secs(61)));
        // The least of several.
        let least = fresh(&[
            ("cache-control", "max-age=60"),
            ("cache-control", "max-age=\"5\", max-age=9"),
        ]);
        assert!(least.takes(secs(5)) && !least.takes(secs(6)));
        let any = fresh(&[]);
        assert!(!any.from_source() && any.takes(secs(86_400)));
        // A value that is not seconds takes nothing kept; one too large for any clock is 2^31 seconds.
        for value in ["max-age=soon", "max-age=-1", "max-age=5.5", "max-age="] {
            assert!(fresh(&[("cache-control", value)]).from_source(), "{value}");
        }
        let huge = fresh(&[("cache-control", "max-age=99999999999999999999999")]);
        assert!(huge.takes(secs(1 << 31)) && !huge.takes(secs((1 << 31) + 1)));
    }

    #[test]
    fn an_empty_format_leaves_accept_to_decide() {
        let mut headers = HeaderMap::new();
        headers.insert("accept", "application/fhir+xml".parse().unwrap());
        let i = parse(&Method::GET, "Patient", Some("_format="), &headers).unwrap();
        assert_eq!(i.format, Format::Xml);
        assert!(i.format_param.is_none());
    }

    #[test]
    fn path_segments_are_compared_decoded() {
        let i = parse(&Method::GET, "%50atient/%7Ac-1", None, &HeaderMap::new()).unwrap();
        assert_eq!(
            (i.resource_type.as_deref(), i.id.as_deref()),
            (Some("Patient"), Some("zc-1"))
        );
        assert_eq!(
            parse(&Method::GET, "Patient/a%2Fb", None, &HeaderMap::new())
                .unwrap_err()
                .status,
            400
        );
    }

    #[test]
    fn prefer_is_read() {
        let mut headers = HeaderMap::new();
        headers.insert("prefer", "handling=lenient, return=minimal".parse().unwrap());
        let i = parse(&Method::GET, "Patient", None, &headers).unwrap();
        assert_eq!((i.handling, i.return_pref), (Handling::Lenient, Return::Minimal));
        // Whitespace around '=', any case of name, quoted values (RFC 7240).
        headers.insert(
            "prefer",
            r#"Handling = "lenient" ; return =OperationOutcome"#.parse().unwrap(),
        );
        let i = parse(&Method::GET, "Patient", None, &headers).unwrap();
        assert_eq!(
            (i.handling, i.return_pref),
            (Handling::Lenient, Return::OperationOutcome)
        );
    }

    #[test]
    fn includes_are_parsed() {
        let i = get(
            "MedicationRequest",
            "_include=MedicationRequest:medication&_revinclude:iterate=Slot:schedule",
        )
        .unwrap();
        assert_eq!(i.include[0].param, "medication");
        assert!(i.revinclude[0].iterate);
        assert_eq!(get("Slot", "_include=nonsense").unwrap_err().status, 400);
    }
}
