//! Content negotiation and the wire formats: which of FHIR JSON or XML a client asked for (`Accept`,
//! `_format`), how a request body is parsed (strictly), and how a response is encoded.
//!
//! Inside the proxy a translated resource is a [`crate::tree::Tree`], and what the proxy writes itself
//! (outcomes, conformance resources, AuditEvents) a `serde_json::Value`; XML exists only at the edges,
//! converted through the typed model crate.

use super::error::{FhirError, FhirResult};
use serde_json::Value;

/// A FHIR wire format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Json,
    Xml,
}

impl Format {
    pub fn mime(self) -> &'static str {
        match self {
            Format::Json => "application/fhir+json; charset=utf-8",
            Format::Xml => "application/fhir+xml; charset=utf-8",
        }
    }
}

/// Deepest nesting accepted in a request body: FHIR resources are far shallower, so anything deeper is an
/// attack (a "nesting bomb") or a mistake, and is refused before any recursive parser sees it.
pub const MAX_BODY_DEPTH: usize = 64;
/// The most attributes an element of an XML body may carry. FHIR's carry one to three (`value`, `url`, `id`,
/// a namespace), narrative XHTML a few more; the XML parser checks each against the others for duplicates, so
/// tens of thousands on one element would cost seconds of CPU.
pub const MAX_XML_ATTRIBUTES: usize = 64;

/// The format named by a MIME type or a `_format` value, if FHIR knows it.
fn format_of(name: &str) -> Option<Format> {
    let base = name.split(';').next().unwrap_or("").trim().to_ascii_lowercase();
    match base.as_str() {
        "json" | "application/fhir+json" | "application/json" | "application/json+fhir" => Some(Format::Json),
        "xml" | "application/fhir+xml" | "application/xml" | "text/xml" | "application/xml+fhir" => Some(Format::Xml),
        _ => None,
    }
}

/// Picks the response format: `_format` wins over `Accept`; JSON when the client does not care.
pub fn negotiate(format_param: Option<&str>, accept: Option<&str>) -> FhirResult<Format> {
    // `_format=application/fhir+json` sent without encoding its `+` arrives as a space (a query string's `+`
    // is one); FHIR says the value SHALL be accepted, as other servers do.
    let unencoded = format_param.map(|name| name.replacen("application/fhir ", "application/fhir+", 1));
    if let Some(name) = unencoded.as_deref() {
        // `_format` is read as an Accept of one range: another FHIR version is not served.
        let r4 = accept_ranges(name).next().is_some();
        return format_of(name).filter(|_| r4).ok_or_else(|| {
            FhirError::not_acceptable(
                "IM1-1101",
                format!("_format '{name}' is not supported; use json or xml"),
            )
            .at("_format")
        });
    }
    let Some(accept) = accept.filter(|a| !a.trim().is_empty()) else {
        return Ok(Format::Json);
    };
    // Each format's q is that of the most specific range it matches (RFC 9110 §12.5.1): a wildcard does not
    // serve what a named range refused (`application/fhir+json;q=0, */*` is XML). The highest q wins; on a tie,
    // the format whose range comes first (JSON for a lone wildcard).
    let ranges: Vec<(String, f32)> = accept_ranges(accept).collect();
    let specificity = |mime: &str, format: Format| match mime {
        "*/*" => Some(1),
        "application/*" => Some(2),
        named => (format_of(named) == Some(format)).then_some(3),
    };
    let mut best: Option<(f32, usize, Format)> = None;
    for format in [Format::Json, Format::Xml] {
        let decided = ranges
            .iter()
            .enumerate()
            .filter_map(|(i, (mime, q))| specificity(mime, format).map(|s| (s, i, *q)))
            .max_by_key(|(s, i, _)| (*s, std::cmp::Reverse(*i)));
        if let Some((_, i, q)) = decided.filter(|(_, _, q)| *q > 0.0) {
            if best.is_none_or(|(best_q, best_i, _)| q > best_q || (q == best_q && i < best_i)) {
                best = Some((q, i, format));
            }
        }
    }
    best.map(|(_, _, f)| f).ok_or_else(|| {
        FhirError::not_acceptable(
            "IM1-1102",
            "none of the media types in Accept is served; use application/fhir+json or application/fhir+xml",
        )
    })
}

/// The media ranges of an `Accept` header with their q-values (lower-cased; q=0: "not this"), leaving out
/// those for another FHIR version (`fhirVersion=3.0`): this R4 server serves none of them.
fn accept_ranges(accept: &str) -> impl Iterator<Item = (String, f32)> + '_ {
    accept.split(',').filter_map(|range| {
        let mut parts = range.split(';');
        let mime = parts.next().unwrap_or("").trim().to_ascii_lowercase();
        let params: Vec<&str> = parts.map(str::trim).collect();
        let q = params
            .iter()
            .filter_map(|p| p.strip_prefix("q="))
            .find_map(|q| q.parse::<f32>().ok())
            .unwrap_or(1.0);
        let other_version = params
            .iter()
            .filter_map(|p| p.strip_prefix("fhirVersion="))
            .any(|v| !v.trim_matches('"').starts_with("4.0"));
        (!other_version && !mime.is_empty()).then_some((mime, q))
    })
}

/// How a Binary read is answered (FHIR R4 binary.html): as its content in its own media type unless the
/// request names a FHIR format explicitly and prefers it (by q-value) to that media type; as the Binary
/// resource then, or when the content is refused and a wildcard takes FHIR; else neither (406). No `Accept`
/// at all: the content.
pub fn binary_wanted(accept: Option<&str>, content_type: &str) -> Option<BinaryAnswer> {
    let Some(accept) = accept.filter(|a| !a.trim().is_empty()) else {
        return Some(BinaryAnswer::Content);
    };
    // The media type alone (`text/plain; charset=utf-8` is `text/plain` to Accept).
    let content_type = content_type.split(';').next().unwrap_or("").trim().to_ascii_lowercase();
    let kind = content_type
        .split_once('/')
        .map_or(content_type.as_str(), |(kind, _)| kind);
    // The q of a FHIR format named outright, and of one a wildcard lets through.
    let (mut fhir, mut fhir_any, mut content) = (0.0f32, 0.0f32, None::<(u8, f32)>);
    for (mime, q) in accept_ranges(accept) {
        if format_of(&mime).is_some() {
            fhir = fhir.max(q);
        }
        if format_of(&mime).is_some() || mime == "*/*" || mime == "application/*" {
            fhir_any = fhir_any.max(q);
        }
        // The most specific range that matches the content's type sets its q.
        let specificity = if mime == content_type {
            3
        } else if mime.strip_suffix("/*") == Some(kind) {
            2
        } else if mime == "*/*" {
            1
        } else {
            continue;
        };
        if content.is_none_or(|(best, _)| specificity > best) {
            content = Some((specificity, q));
        }
    }
    let content = content.map_or(0.0, |(_, q)| q);
    if content > 0.0 && content > fhir {
        Some(BinaryAnswer::Content)
    } else if fhir_any > 0.0 {
        Some(BinaryAnswer::Resource)
    } else {
        None
    }
}

/// What a Binary read gives: see [`binary_wanted`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BinaryAnswer {
    Content,
    Resource,
}

/// The format of a request body from its `Content-Type`; a body in anything else is a 415.
pub fn body_format(content_type: Option<&str>) -> FhirResult<Format> {
    let Some(content_type) = content_type else {
        return Err(FhirError::unsupported_media(
            "IM1-1103",
            "a request body needs a Content-Type",
        ));
    };
    // FHIR is UTF-8 (R4 http.html, "Content Types and encodings"): a body said to be in another charset would be
    // read wrongly.
    let charset = content_type
        .split(';')
        .skip(1)
        .filter_map(|p| p.split_once('='))
        .find(|(name, _)| name.trim().eq_ignore_ascii_case("charset"))
        .map(|(_, value)| value.trim().trim_matches('"'));
    if charset.is_some_and(|c| !c.eq_ignore_ascii_case("utf-8") && !c.eq_ignore_ascii_case("utf8")) {
        return Err(FhirError::unsupported_media(
            "IM1-1104",
            "FHIR bodies are UTF-8: Content-Type's charset, when given, must be utf-8",
        ));
    }
    // A body of another FHIR version (`; fhirVersion=3.0`) is not R4, whatever its format.
    let r4 = accept_ranges(content_type).next().is_some();
    format_of(content_type).filter(|_| r4).ok_or_else(|| {
        FhirError::unsupported_media(
            "IM1-1104",
            "Content-Type must be application/fhir+json or application/fhir+xml, FHIR R4 (fhirVersion=4.0)",
        )
    })
}

/// Parses a request body as a FHIR resource: well-formed, no deeper than `MAX_BODY_DEPTH`, and valid
/// against the R4 model in strict mode (unknown elements are errors).
pub fn parse_body(format: Format, bytes: &[u8]) -> FhirResult<Value> {
    // A UTF-8 byte order mark, as some integration engines write one, is no part of the document (RFC 8259
    // lets a parser ignore it).
    let bytes = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes);
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Err(FhirError::bad_structure("IM1-1105", "the request body is empty"));
    }
    match format {
        Format::Json => {
            check_json_depth(bytes)?;
            let value: Value = serde_json::from_slice(bytes)
                .map_err(|e| FhirError::bad_structure("IM1-1106", format!("the body is not valid JSON: {e}")))?;
            if !value.get("resourceType").is_some_and(Value::is_string) {
                return Err(FhirError::bad_structure("IM1-1107", "the body has no resourceType").at("resourceType"));
            }
            check_nothing_empty(&value, value["resourceType"].as_str().unwrap_or_default())?;
            im1_fhir_model::check_strict(&value).map_err(|e| {
                FhirError::bad_structure(
                    "IM1-1108",
                    format!(
                        "the body is not a valid FHIR R4 resource: {}",
                        in_fhir_terms(&e.to_string())
                    ),
                )
            })?;
            Ok(value)
        }
        Format::Xml => {
            check_xml_depth(bytes)?;
            let bytes = super::xml_ns::unprefixed(bytes)?;
            im1_fhir_model::xml_to_json(&bytes).map_err(|e| {
                FhirError::bad_structure(
                    "IM1-1109",
                    format!(
                        "the body is not a valid FHIR R4 XML resource: {}",
                        in_fhir_terms(&e.to_string())
                    ),
                )
            })
        }
    }
}

/// The model's message, but where it speaks of its Rust types (`untagged enum StringOrValue`,
/// `ParseIntError { kind: PosOverflow }`), what that means for the body.
fn in_fhir_terms(message: &str) -> String {
    if message.contains("untagged enum") {
        return "a value is not of the type its element takes (text, a number, true or false), or is out of its range"
            .into();
    }
    if ["ParseIntError", "ParseFloatError"].iter().any(|e| message.contains(e)) {
        return "a number is not valid for its element, or is out of its range".into();
    }
    message.to_string()
}

/// FHIR JSON has no empty arrays, objects or strings (R4 JSON, "JSON representation of resources"): one is
/// refused at its path, before the model reads the body (which cannot read an empty list).
fn check_nothing_empty(value: &Value, path: &str) -> FhirResult<()> {
    let shown: String = path.chars().take(120).collect();
    let empty = |what: &str| {
        Err(FhirError::bad_structure(
            "IM1-1108",
            format!("the body is not a valid FHIR R4 resource: FHIR JSON has no empty {what} ({shown})"),
        )
        .at(shown.clone()))
    };
    match value {
        Value::String(s) if s.is_empty() => empty("strings"),
        Value::Array(items) if items.is_empty() => empty("arrays"),
        Value::Object(map) if map.is_empty() => empty("objects"),
        // A null in a list keeps a primitive's extensions (`_given`) in step with its values.
        Value::Array(items) => items.iter().try_for_each(|item| check_nothing_empty(item, path)),
        Value::Object(map) => map
            .iter()
            .try_for_each(|(key, item)| check_nothing_empty(item, &format!("{path}.{key}"))),
        _ => Ok(()),
    }
}

/// Refuses JSON nested deeper than `MAX_BODY_DEPTH` with one linear scan, before any recursive parse.
fn check_json_depth(bytes: &[u8]) -> FhirResult<()> {
    let (mut depth, mut in_string, mut escaped) = (0usize, false, false);
    for &b in bytes {
        if in_string {
            match (escaped, b) {
                (true, _) => escaped = false,
                (false, b'\\') => escaped = true,
                (false, b'"') => in_string = false,
                _ => {}
            }
            continue;
        }
        match b {
            b'"' => in_string = true,
            b'{' | b'[' => {
                depth += 1;
                if depth > MAX_BODY_DEPTH {
                    return Err(too_deep());
                }
            }
            b'}' | b']' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    Ok(())
}

fn check_xml_depth(bytes: &[u8]) -> FhirResult<()> {
    use quick_xml::events::Event;
    let mut reader = quick_xml::Reader::from_reader(bytes);
    let mut depth = 0usize;
    let mut buf = Vec::new();
    loop {
        match reader.read_event_into(&mut buf) {
            Ok(Event::Start(start)) => {
                depth += 1;
                if depth > MAX_BODY_DEPTH {
                    return Err(too_deep());
                }
                check_attribute_count(&start)?;
            }
            Ok(Event::Empty(start)) => check_attribute_count(&start)?,
            Ok(Event::End(_)) => depth = depth.saturating_sub(1),
            Ok(Event::DocType(_)) => {
                return Err(FhirError::bad_structure(
                    "IM1-1110",
                    "XML document type declarations are not accepted",
                ))
            }
            Ok(Event::Eof) if depth == 0 => return Ok(()),
            Ok(Event::Eof) => {
                return Err(FhirError::bad_structure(
                    "IM1-1109",
                    "the body is not well-formed XML: unclosed elements",
                ))
            }
            Ok(_) => {}
            Err(e) => {
                return Err(FhirError::bad_structure(
                    "IM1-1109",
                    format!("the body is not well-formed XML: {e}"),
                ))
            }
        }
        buf.clear();
    }
}

/// Counts an element's attributes without the parser's duplicate check (linear), up to the limit.
fn check_attribute_count(start: &quick_xml::events::BytesStart) -> FhirResult<()> {
    if start.attributes().with_checks(false).nth(MAX_XML_ATTRIBUTES).is_some() {
        return Err(FhirError::bad_structure(
            "IM1-1109",
            format!("the body has an XML element with more than {MAX_XML_ATTRIBUTES} attributes"),
        ));
    }
    Ok(())
}

fn too_deep() -> FhirError {
    FhirError::bad_structure(
        "IM1-1111",
        format!("the body is nested deeper than {MAX_BODY_DEPTH} levels"),
    )
}

/// The XML writer's output made safe to read back: inside attribute values, where FHIR's primitives sit, a
/// parser turns a raw line break or tab into a space (XML 1.0 §3.3.3), so a note's lines would run together:
/// they are written as character references. Characters XML 1.0 cannot carry at all (a GP system's stray
/// control byte in free text; U+FFFE and U+FFFF) become U+FFFD rather than make the document ill-formed.
fn xml_safe(xml: &str) -> Vec<u8> {
    let mut out = String::with_capacity(xml.len());
    let (mut in_tag, mut quote) = (false, None::<char>);
    for c in xml.chars() {
        match (c, quote) {
            ('\n', Some(_)) => out.push_str("&#xA;"),
            ('\r', Some(_)) => out.push_str("&#xD;"),
            ('\t', Some(_)) => out.push_str("&#x9;"),
            (c, _) if (c < ' ' && !matches!(c, '\n' | '\r' | '\t')) || matches!(c, '\u{FFFE}' | '\u{FFFF}') => {
                out.push('\u{FFFD}')
            }
            (c, Some(q)) if c == q => {
                quote = None;
                out.push(c);
            }
            ('"' | '\'', None) if in_tag => {
                quote = Some(c);
                out.push(c);
            }
            ('<', None) => {
                in_tag = true;
                out.push(c);
            }
            ('>', None) => {
                in_tag = false;
                out.push(c);
            }
            (c, _) => out.push(c),
        }
    }
    out.into_bytes()
}

/// What can be encoded for the wire: the proxy's resource tree, or a serde_json value (outcomes, conformance
/// resources, AuditEvents).
pub trait Encode {
    fn encode(&self, format: Format, pretty: bool) -> FhirResult<Vec<u8>>;
}

impl Encode for Value {
    fn encode(&self, format: Format, pretty: bool) -> FhirResult<Vec<u8>> {
        encode(self, format, pretty)
    }
}

impl Encode for crate::tree::Tree {
    fn encode(&self, format: Format, pretty: bool) -> FhirResult<Vec<u8>> {
        match format {
            Format::Json if !pretty => Ok(self.to_json_vec()),
            Format::Json => serde_json::to_vec_pretty(self)
                .map_err(|e| FhirError::internal("IM1-5104", format!("could not render JSON: {e}"))),
            // The XML rendering reads serde_json values; XML is asked for rarely.
            Format::Xml => encode(&Value::from(self), format, pretty),
        }
    }
}

/// Encodes a resource for the wire.
pub fn encode(value: &Value, format: Format, pretty: bool) -> FhirResult<Vec<u8>> {
    match format {
        Format::Json if pretty => serde_json::to_vec_pretty(value),
        Format::Json => serde_json::to_vec(value),
        Format::Xml => {
            return im1_fhir_model::json_to_xml(value)
                .map(|xml| xml_safe(&xml))
                // Not the model's message: it quotes the value it could not place (record data), and this
                // message reaches the log and the client.
                .map_err(|_| FhirError::internal("IM1-5103", "could not render the answer as FHIR XML"));
        }
    }
    .map_err(|e| FhirError::internal("IM1-5104", format!("could not render JSON: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn xml_keeps_the_lines_of_a_value_and_carries_no_control_characters() {
        let note = serde_json::json!({"resourceType": "Observation", "status": "final",
            "code": {"text": "BP"}, "note": [{"text": "first line\nsecond\tcolumn\u{1}\u{FFFF}"}]});
        let xml = String::from_utf8(encode(&note, Format::Xml, false).unwrap()).unwrap();
        assert!(
            xml.contains("first line&#xA;second&#x9;column\u{FFFD}\u{FFFD}"),
            "{xml}"
        );
        // Read back as XML parsers read it: the same text.
        let back = im1_fhir_model::xml_to_json(xml.as_bytes()).unwrap();
        assert_eq!(back["note"][0]["text"], "first line\nsecond\tcolumn\u{FFFD}\u{FFFD}");
    }

    #[test]
    fn xml_elements_may_carry_a_few_dozen_attributes_but_not_more() {
        let element = |n: usize| {
            let attributes: String = (0..n).map(|i| format!(" a{i}=\"x\"")).collect();
            format!("<Parameters xmlns=\"http://hl7.org/fhir\"><parameter{attributes}/></Parameters>")
        };
        // At the limit, on one element: the body is checked no further here.
        assert!(check_xml_depth(element(MAX_XML_ATTRIBUTES).as_bytes()).is_ok());
        let refused = check_xml_depth(element(MAX_XML_ATTRIBUTES + 1).as_bytes()).unwrap_err();
        assert_eq!(refused.code, "IM1-1109");
    }

    #[test]
    fn a_binary_is_its_content_unless_a_fhir_format_is_preferred() {
        use BinaryAnswer::{Content, Resource};
        let pdf = "application/pdf";
        let cases = [
            (None, Some(Content)),
            (Some(""), Some(Content)),
            (Some("*/*"), Some(Content)),
            (Some("application/*"), Some(Content)),
            (Some("application/pdf"), Some(Content)),
            (Some("application/pdf, */*;q=0.1"), Some(Content)),
            (
                Some("application/pdf;q=0.9, application/fhir+json;q=0.1"),
                Some(Content),
            ),
            (Some("application/fhir+json"), Some(Resource)),
            (Some("application/fhir+xml, */*;q=0.5"), Some(Resource)),
            (Some("application/json"), Some(Resource)),
            (
                Some("application/fhir+json;q=0.9, application/pdf;q=0.5"),
                Some(Resource),
            ),
            (Some("application/fhir+json; fhirVersion=3.0"), None),
            (Some("text/html"), None),
            (Some("application/pdf;q=0"), None),
        ];
        for (accept, expected) in cases {
            assert_eq!(binary_wanted(accept, pdf), expected, "{accept:?}");
        }
        // The most specific range sets the content's q; a wildcard still lets the resource through.
        assert_eq!(binary_wanted(Some("*/*, application/pdf;q=0"), pdf), Some(Resource));
        assert_eq!(
            binary_wanted(Some("application/pdf;q=0, */*;q=0.1"), pdf),
            Some(Resource)
        );
        assert_eq!(binary_wanted(Some("application/pdf;q=0, text/html"), pdf), None);
        // A content type with parameters is its media type to Accept.
        assert_eq!(
            binary_wanted(Some("text/plain"), "text/plain; charset=utf-8"),
            Some(Content)
        );
    }

    #[test]
    fn format_param_wins_and_unknown_is_406() {
        assert_eq!(
            negotiate(Some("xml"), Some("application/fhir+json")).unwrap(),
            Format::Xml
        );
        assert_eq!(negotiate(Some("html"), None).unwrap_err().status, 406);
        let v4 = negotiate(Some("application/fhir+json;fhirVersion=4.0"), None);
        assert_eq!(v4.unwrap(), Format::Json);
        let v3 = negotiate(Some("application/fhir+json;fhirVersion=3.0"), None);
        assert_eq!(v3.unwrap_err().status, 406);
    }

    #[test]
    fn accept_honours_quality() {
        let accept = "application/fhir+json;q=0.5, application/fhir+xml";
        assert_eq!(negotiate(None, Some(accept)).unwrap(), Format::Xml);
        assert_eq!(negotiate(None, Some("*/*")).unwrap(), Format::Json);
        assert_eq!(negotiate(None, Some("text/html")).unwrap_err().status, 406);
        // A wildcard does not serve what a named range refused or ranked lower.
        assert_eq!(
            negotiate(None, Some("application/fhir+json;q=0, */*")).unwrap(),
            Format::Xml
        );
        let lower = "application/fhir+json;q=0.1, */*;q=0.8";
        assert_eq!(negotiate(None, Some(lower)).unwrap(), Format::Xml);
        let both_refused = "application/fhir+json;q=0, application/xml;q=0, */*";
        assert_eq!(negotiate(None, Some(both_refused)).unwrap_err().status, 406);
        // Ties go to the range named first.
        let tie = "application/fhir+xml, application/fhir+json";
        assert_eq!(negotiate(None, Some(tie)).unwrap(), Format::Xml);
        assert_eq!(negotiate(None, Some("text/html, application/*")).unwrap(), Format::Json);
    }

    #[test]
    fn json_nesting_bomb_is_refused_without_recursion() {
        let bomb = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
        let error = parse_body(Format::Json, bomb.as_bytes()).unwrap_err();
        assert_eq!(error.code, "IM1-1111");
    }

    /// What the model says of a value of the wrong type is said in FHIR's terms, not its Rust types'.
    #[test]
    fn model_messages_speak_of_the_body() {
        let body = r#"{"resourceType":"Parameters","parameter":[{"name":"n","valueInteger":99999999999}]}"#;
        let error = parse_body(Format::Json, body.as_bytes()).unwrap_err();
        assert!(
            !error.message.contains("enum") && !error.message.contains("Error {"),
            "{}",
            error.message
        );
        let xml = r#"<Parameters xmlns="http://hl7.org/fhir"><parameter><name value="n"/><valueInteger value="99999999999"/></parameter></Parameters>"#;
        let error = parse_body(Format::Xml, xml.as_bytes()).unwrap_err();
        assert!(!error.message.contains("ParseIntError"), "{}", error.message);
    }

    /// The model cannot read an empty list (it panicked on one): each empty thing is refused at its path.
    #[test]
    fn empty_arrays_objects_and_strings_are_refused_at_their_path() {
        for (body, path) in [
            (
                r#"{"resourceType":"Parameters","parameter":[]}"#,
                "Parameters.parameter",
            ),
            (
                r#"{"resourceType":"Parameters","parameter":[{"name":"x","part":[]}]}"#,
                "Parameters.parameter.part",
            ),
            (
                r#"{"resourceType":"Patient","meta":{"profile":[]}}"#,
                "Patient.meta.profile",
            ),
            (r#"{"resourceType":"Patient","meta":{}}"#, "Patient.meta"),
            (r#"{"resourceType":"Patient","id":""}"#, "Patient.id"),
        ] {
            let error = parse_body(Format::Json, body.as_bytes()).unwrap_err();
            assert_eq!((error.status.as_u16(), error.code), (400, "IM1-1108"), "{body}");
            assert!(
                error.message.contains(&format!("({path})")),
                "{body}: {}",
                error.message
            );
        }
        // A null keeps a primitive's extensions in step with its values.
        let aligned = r#"{"resourceType":"Patient","name":[{"given":["A","B"],"_given":[null,{"id":"b"}]}]}"#;
        assert!(parse_body(Format::Json, aligned.as_bytes()).is_ok());
    }

    #[test]
    fn brackets_inside_strings_do_not_count() {
        let text = "[".repeat(200);
        let body = format!(r#"{{"resourceType":"Patient","id":"x","name":[{{"text":"{text}"}}]}}"#);
        assert!(parse_body(Format::Json, body.as_bytes()).is_ok());
    }

    #[test]
    fn content_type_must_be_fhir() {
        assert_eq!(body_format(Some("text/plain")).unwrap_err().status, 415);
        // FHIR is UTF-8.
        let latin = body_format(Some("application/fhir+json; charset=iso-8859-1"));
        assert_eq!(latin.unwrap_err().status, 415);
        let utf8 = body_format(Some("application/fhir+json; Charset=\"UTF-8\""));
        assert_eq!(utf8.unwrap(), Format::Json);
        assert_eq!(
            body_format(Some("application/fhir+json; fhirVersion=4.0")).unwrap(),
            Format::Json
        );
    }
}
