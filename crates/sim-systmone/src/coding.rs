//! Codes as SystmOne items carry them: `code` + `codeScheme` (CTV3 where the vocabulary has one, else SNOMED),
//! `snomed` always (every record concept is a known SNOMED CT concept), `dmd` on drugs and vaccines.

use crate::xml::{El, Node};
use im1_sim::record::codes::{concept_for_scheme_code, scheme_code, Scheme};
use im1_sim::record::vocab::CodeSystem;
use im1_sim::record::{Concept, Vocabulary};

/// Add the code attributes of a concept and its term as `description`.
pub fn coded(el: El, concept: &Concept) -> El {
    code_only(el, concept).attr("description", concept.display.clone())
}

/// Add the code attributes of a concept without the term.
pub fn code_only(el: El, concept: &Concept) -> El {
    if concept.system == CodeSystem::Dmd {
        return el.attr("dmd", concept.code.clone());
    }
    let sc = scheme_code(concept);
    let scheme = match sc.scheme {
        Scheme::Ctv3 => "CTV3",
        Scheme::Snomed => "SNOMED",
        Scheme::Dmd => "DMD",
    };
    el.attr("code", sc.code)
        .attr("codeScheme", scheme)
        .attr("snomed", concept.code.clone())
}

/// The concept a request names: `code`+`codeScheme` (CTV3 or SNOMED), else `snomed`, else `dmd`.
pub fn concept_of(node: &Node) -> Result<Concept, String> {
    if let Some(code) = node.attr_nonempty("code") {
        let scheme = match node.attr("codeScheme").unwrap_or("CTV3") {
            "CTV3" => Scheme::Ctv3,
            "SNOMED" => Scheme::Snomed,
            "DMD" => Scheme::Dmd,
            other => return Err(format!("unknown codeScheme {other}")),
        };
        return concept_for_scheme_code(scheme, code).ok_or_else(|| format!("code {code} is not in the code table"));
    }
    let code = node
        .attr_nonempty("snomed")
        .or_else(|| node.attr_nonempty("dmd"))
        .ok_or("code missing")?;
    Vocabulary::get()
        .concept(code)
        .ok_or_else(|| format!("code {code} is not in the code table"))
}

/// One row of the code table endpoint.
pub fn code_row(concept: &Concept) -> El {
    let sc = scheme_code(concept);
    let el = El::new("Code").attr("code", sc.code.clone());
    let el = match sc.scheme {
        Scheme::Ctv3 => el.attr("codeScheme", "CTV3"),
        Scheme::Snomed => el.attr("codeScheme", "SNOMED"),
        Scheme::Dmd => el.attr("codeScheme", "DMD"),
    };
    let el = el.attr("term", concept.display.clone());
    match concept.system {
        CodeSystem::Snomed => el.attr("snomed", concept.code.clone()),
        CodeSystem::Dmd => el.attr("dmd", concept.code.clone()),
    }
}

/// The whole code table (every vocabulary concept), or the rows matching a code in any scheme.
pub fn code_table(code: Option<&str>) -> Vec<El> {
    Vocabulary::get()
        .entries()
        .iter()
        .filter(|e| code.is_none_or(|c| e.code == c || e.ctv3.iter().any(|x| x.code == c)))
        .map(|e| code_row(&e.concept()))
        .collect()
}
