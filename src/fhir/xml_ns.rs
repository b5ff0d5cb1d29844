//! FHIR XML whose elements name the FHIR namespace through a prefix (`<f:Patient xmlns:f="http://hl7.org/fhir">`)
//! is as valid as XML with it as the default namespace, which is only the usual way (R4, "XML Representation":
//! FHIR elements are always in `http://hl7.org/fhir`, "usually" the default namespace on the root). The R4
//! model reads the usual way only, so a body that declares a prefix is rewritten to it first: each element the
//! FHIR namespace holds loses its prefix, the root declares the namespace as its default, and declarations of
//! the FHIR namespace under a prefix go. The narrative's XHTML is copied as it is. An element in any other
//! namespace (or none) outside the narrative is refused: no FHIR resource holds one, and rewriting the
//! defaults around it would move it into the FHIR namespace. Other prefixes a FHIR element declares (`xsi`)
//! are kept, and the model still refuses them, as it did.

use super::error::{FhirError, FhirResult};
use quick_xml::events::{BytesStart, Event};
use quick_xml::name::{Namespace, ResolveResult};
use quick_xml::{NsReader, Writer};

const FHIR: &[u8] = b"http://hl7.org/fhir";
const XHTML: &[u8] = b"http://www.w3.org/1999/xhtml";

/// The body with the FHIR namespace as its default, when it declares a namespace prefix (else as it is). Run
/// after `format::check_xml_depth`, which has refused document type declarations, deep nesting and crowded
/// elements in the body as it came.
pub(super) fn unprefixed(bytes: &[u8]) -> FhirResult<std::borrow::Cow<'_, [u8]>> {
    // Most bodies declare no prefix at all: they are read as they are.
    if !bytes.windows(6).any(|w| w == b"xmlns:") {
        return Ok(std::borrow::Cow::Borrowed(bytes));
    }
    let mut reader = NsReader::from_reader(bytes);
    let mut writer = Writer::new(Vec::with_capacity(bytes.len()));
    // How deep the reader is in the narrative's XHTML (0: outside it).
    let (mut root, mut xhtml_depth) = (true, 0usize);
    loop {
        let (namespace, event) = reader.read_resolved_event().map_err(not_well_formed)?;
        let in_fhir = matches!(namespace, ResolveResult::Bound(Namespace(ns)) if ns == FHIR);
        let in_xhtml = matches!(namespace, ResolveResult::Bound(Namespace(ns)) if ns == XHTML);
        let event = match event {
            Event::Eof => break,
            // The narrative's XHTML, as it is, but that its root says its namespace when it inherited it from
            // a FHIR element (whose declarations go).
            Event::Start(start) if xhtml_depth > 0 || in_xhtml => {
                xhtml_depth += 1;
                Event::Start(narrative(start, xhtml_depth == 1))
            }
            Event::Empty(start) if xhtml_depth > 0 || in_xhtml => Event::Empty(narrative(start, xhtml_depth == 0)),
            Event::Start(start) if in_fhir => Event::Start(fhir_element(&start, std::mem::take(&mut root))?),
            Event::Empty(start) if in_fhir => Event::Empty(fhir_element(&start, std::mem::take(&mut root))?),
            Event::Start(start) | Event::Empty(start) => {
                // Quoted short: the client's own text, but no reason to echo a long one back.
                let name: String = String::from_utf8_lossy(start.name().as_ref())
                    .chars()
                    .take(64)
                    .collect();
                return Err(FhirError::bad_structure(
                    "IM1-1109",
                    format!("the body is not a valid FHIR R4 XML resource: '{name}' is not in the FHIR namespace"),
                ));
            }
            Event::End(end) if xhtml_depth > 0 => {
                xhtml_depth -= 1;
                Event::End(end)
            }
            Event::End(end) => Event::End(quick_xml::events::BytesEnd::new(
                String::from_utf8_lossy(end.local_name().as_ref()).into_owned(),
            )),
            other => other,
        };
        writer.write_event(event).map_err(not_well_formed)?;
    }
    Ok(std::borrow::Cow::Owned(writer.into_inner()))
}

/// A FHIR element, unprefixed: declarations of the FHIR namespace (under a prefix, or as the default) are
/// dropped, and the root declares it as the default.
fn fhir_element(start: &BytesStart, root: bool) -> FhirResult<BytesStart<'static>> {
    let local = String::from_utf8_lossy(start.local_name().as_ref()).into_owned();
    let mut out = BytesStart::new(local);
    if root {
        out.push_attribute(("xmlns", "http://hl7.org/fhir"));
    }
    for attribute in start.attributes() {
        let attribute = attribute.map_err(not_well_formed)?;
        let key = attribute.key.as_ref();
        let declares = key == b"xmlns" || key.starts_with(b"xmlns:");
        if declares && attribute.value.as_ref() == FHIR {
            continue;
        }
        if key == b"xmlns" {
            // Another default namespace on a FHIR element: what it would hold is no FHIR element.
            continue;
        }
        // Read and written again, escaped: copied raw, a value quoted with `'` that holds `"` would end early
        // in the `"` the writer quotes with, and what follows it would be read as markup.
        let key = std::str::from_utf8(key).map_err(not_well_formed)?;
        let value = attribute.unescape_value().map_err(not_well_formed)?;
        out.push_attribute((key, value.as_ref()));
    }
    Ok(out)
}

/// An element of the narrative; its root (`top`) declares the XHTML namespace if it does not already.
fn narrative(start: BytesStart<'_>, top: bool) -> BytesStart<'_> {
    let declared = start.attributes().flatten().any(|a| a.key.as_ref() == b"xmlns");
    let prefixed = start.name().prefix().is_some();
    if !top || declared || prefixed {
        return start;
    }
    let mut start = start;
    start.push_attribute(("xmlns", "http://www.w3.org/1999/xhtml"));
    start
}

fn not_well_formed(e: impl std::fmt::Display) -> FhirError {
    FhirError::bad_structure("IM1-1109", format!("the body is not well-formed XML: {e}"))
}

#[cfg(test)]
mod tests {
    use super::super::format::{parse_body, Format};

    const USUAL: &str = r#"<?xml version="1.0" encoding="UTF-8"?>
<Patient xmlns="http://hl7.org/fhir"><id value="p1"/><text><status value="generated"/><div xmlns="http://www.w3.org/1999/xhtml"><p>Jo <b>Bloggs</b></p></div></text><extension url="http://example.org/x"><valueString value="a &amp; b"/></extension><name><family value="Bloggs"/><given value="Jo"/></name><gender value="female"/></Patient>"#;

    fn read(xml: &str) -> serde_json::Value {
        parse_body(Format::Xml, xml.as_bytes()).unwrap_or_else(|e| panic!("{xml}: {e:?}"))
    }

    /// `USUAL` with every FHIR element under the prefix `f`, declared on the root with `declarations`.
    fn prefixed(declarations: &str) -> String {
        let xml = USUAL
            .replace(
                "<Patient xmlns=\"http://hl7.org/fhir\">",
                &format!("<f:Patient {declarations}>"),
            )
            .replace("</Patient>", "</f:Patient>");
        let names = [
            "id",
            "text",
            "status",
            "extension",
            "valueString",
            "name",
            "family",
            "given",
            "gender",
        ];
        names.iter().fold(xml, |xml, name| {
            xml.replace(&format!("<{name} "), &format!("<f:{name} "))
                .replace(&format!("<{name}>"), &format!("<f:{name}>"))
                .replace(&format!("</{name}>"), &format!("</f:{name}>"))
        })
    }

    #[test]
    fn a_prefixed_fhir_namespace_reads_as_the_default_one() {
        let usual = read(USUAL);
        let prefixed = prefixed("xmlns:f=\"http://hl7.org/fhir\"");
        assert!(prefixed.contains("<f:family value"), "{prefixed}");
        assert_eq!(read(&prefixed), usual);
        // A prefix on some elements only, declared where it is used.
        let mixed = USUAL.replace(
            "<gender value=\"female\"/>",
            "<h:gender xmlns:h=\"http://hl7.org/fhir\" value=\"female\"/>",
        );
        assert_eq!(read(&mixed), usual);
        // A prefix the narrative declares for itself stays in the narrative, and changes nothing else.
        let narrative = read(&USUAL.replace("<b>Bloggs</b>", "<b xmlns:x=\"urn:example\">Bloggs</b>"));
        let div = narrative["text"]["div"].as_str().unwrap_or_default();
        assert!(div.contains("<b xmlns:x=\"urn:example\">Bloggs</b>"), "{div}");
        let mut rest = narrative.clone();
        rest["text"]["div"] = usual["text"]["div"].clone();
        assert_eq!(rest, usual);
        assert!(matches!(
            super::unprefixed(USUAL.as_bytes()),
            Ok(std::borrow::Cow::Borrowed(_))
        ));
    }

    #[test]
    fn a_body_in_the_usual_form_means_the_same_rewritten() {
        // A declaration in a comment sends a body in the usual form through the rewrite all the same: what the
        // model reads must be what it would have read of the body as it came.
        let forced = |xml: &str| xml.replacen("<id ", "<!-- xmlns: --><id ", 1);
        for xml in [
            USUAL.to_string(),
            // A value quoted with ' that holds " and markup: text, never elements.
            USUAL.replace(
                "<gender value=\"female\"/>",
                "<gender value='female\"/><birthDate value=\"1900-01-01'/>",
            ),
            USUAL.replace(
                "<family value=\"Bloggs\"/>",
                "<family value='O\"Brien &lt;b&gt; &#x41;'/>",
            ),
            USUAL.replace("<p>Jo <b>Bloggs</b></p>", "<p>Jo &amp; <![CDATA[<Bloggs>]]><br/></p>"),
        ] {
            let rewritten = forced(&xml);
            assert!(matches!(
                super::unprefixed(rewritten.as_bytes()),
                Ok(std::borrow::Cow::Owned(_))
            ));
            let as_it_came = im1_fhir_model::xml_to_json(xml.as_bytes()).ok();
            assert_eq!(parse_body(Format::Xml, rewritten.as_bytes()).ok(), as_it_came, "{xml}");
        }
        // The narrative's namespace inherited from a FHIR element that declared it.
        let inherited = prefixed("xmlns:f=\"http://hl7.org/fhir\" xmlns=\"http://www.w3.org/1999/xhtml\"")
            .replace("<div xmlns=\"http://www.w3.org/1999/xhtml\">", "<div>");
        assert_eq!(read(&inherited), read(USUAL), "{inherited}");
    }

    #[test]
    fn an_element_in_no_fhir_namespace_is_refused() {
        for xml in [
            // Another namespace, under a prefix.
            r#"<f:Patient xmlns:f="http://hl7.org/fhir"><x:id xmlns:x="urn:example" value="p1"/></f:Patient>"#,
            // No namespace at all: the prefix named the FHIR namespace, and there is no default.
            r#"<f:Patient xmlns:f="http://hl7.org/fhir"><id value="p1"/></f:Patient>"#,
            // Another default namespace under a FHIR element.
            r#"<f:Patient xmlns:f="http://hl7.org/fhir" xmlns="urn:example"><id value="p1"/></f:Patient>"#,
        ] {
            let error = super::unprefixed(xml.as_bytes()).unwrap_err();
            assert_eq!(error.status.as_u16(), 400, "{xml}");
            assert!(
                format!("{error:?}").contains("is not in the FHIR namespace"),
                "{error:?}"
            );
        }
    }
}
