//! Supplier-local code schemes, derived deterministically from the vocabulary.
//!
//! - **Local CodeId table** (EMIS-style): every vocabulary entry gets the id
//!   `CODE_ID_BASE + its position in vocabulary.json` ([`CodeIdTable`]). Positions are stable as long as the
//!   vocabulary file only grows at the end, which is how it is maintained. SNOMED CT entries are clinical rows
//!   (concept id, Read v2 term id when the vocabulary has one); dm+d entries are drug rows (dm+d product id).
//!   No SNOMED description id is given: the vocabulary has none, and inventing one is not allowed.
//! - **CTV3 or SNOMED** (SystmOne-style): [`scheme_code`] gives the first CTV3 code where the vocabulary lists
//!   one, else the SNOMED CT id with scheme `Snomed`.
//! - Medicus-style rendering uses the SNOMED CT / dm+d concept directly.

use super::vocab::{CodeSystem, Concept, Entry, Vocabulary};
use serde::Serialize;
use std::collections::BTreeMap;
use std::sync::OnceLock;

/// The first local CodeId; entry `i` of the vocabulary has CodeId `CODE_ID_BASE + i`.
pub const CODE_ID_BASE: i64 = 10_000_000;

/// What a CodeId row describes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum CodeIdKind {
    /// A SNOMED CT concept (clinical code table).
    Clinical,
    /// A dm+d product (drug code table).
    Drug,
}

/// One row of the local CodeId table.
#[derive(Debug, Clone, Serialize)]
pub struct CodeIdRow {
    pub code_id: i64,
    pub kind: CodeIdKind,
    /// The one display term (same as the vocabulary's).
    pub term: String,
    /// SNOMED CT concept id (clinical rows only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub snomed_concept_id: Option<String>,
    /// Read v2 term id: the 5-character code followed by its term code when the vocabulary gives one
    /// (`C10F.00`), else the bare code (`H33..`). Clinical rows with a Read v2 code only.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub read_term_id: Option<String>,
    /// dm+d product id (drug rows only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dmd_product_id: Option<String>,
}

/// The local CodeId table: lookups both ways.
#[derive(Debug)]
pub struct CodeIdTable {
    rows: Vec<CodeIdRow>,
    by_concept: BTreeMap<String, usize>,
}

impl CodeIdTable {
    /// The table for the embedded vocabulary, built once.
    pub fn get() -> &'static CodeIdTable {
        static TABLE: OnceLock<CodeIdTable> = OnceLock::new();
        TABLE.get_or_init(|| CodeIdTable::build(Vocabulary::get()))
    }

    fn build(vocab: &Vocabulary) -> CodeIdTable {
        let rows: Vec<CodeIdRow> = vocab.entries().iter().enumerate().map(|(i, e)| row_for(i, e)).collect();
        let by_concept = vocab
            .entries()
            .iter()
            .enumerate()
            .map(|(i, e)| (e.code.clone(), i))
            .collect();
        CodeIdTable { rows, by_concept }
    }

    /// All rows, in CodeId order.
    pub fn rows(&self) -> &[CodeIdRow] {
        &self.rows
    }

    /// The row for a CodeId.
    pub fn by_code_id(&self, code_id: i64) -> Option<&CodeIdRow> {
        let index = usize::try_from(code_id.checked_sub(CODE_ID_BASE)?).ok()?;
        self.rows.get(index)
    }

    /// The row for a SNOMED CT or dm+d code.
    pub fn by_concept_code(&self, code: &str) -> Option<&CodeIdRow> {
        self.by_concept.get(code).and_then(|&i| self.rows.get(i))
    }

    /// The CodeId of a concept (None if the concept is not in the vocabulary).
    pub fn code_id(&self, concept: &Concept) -> Option<i64> {
        self.by_concept_code(&concept.code).map(|r| r.code_id)
    }

    /// The concept a CodeId stands for.
    pub fn concept(&self, code_id: i64) -> Option<Concept> {
        let row = self.by_code_id(code_id)?;
        let code = row.snomed_concept_id.as_deref().or(row.dmd_product_id.as_deref())?;
        Vocabulary::get().concept(code)
    }
}

fn row_for(index: usize, e: &Entry) -> CodeIdRow {
    // The vocabulary has 229 entries; an index always fits.
    let code_id = CODE_ID_BASE + index as i64;
    match e.system {
        CodeSystem::Snomed => CodeIdRow {
            code_id,
            kind: CodeIdKind::Clinical,
            term: e.display.clone(),
            snomed_concept_id: Some(e.code.clone()),
            read_term_id: e.read_v2.first().map(|r| {
                let mut id = r.code.clone();
                if let Some(term) = &r.term_code {
                    id.push_str(term);
                }
                id
            }),
            dmd_product_id: None,
        },
        CodeSystem::Dmd => CodeIdRow {
            code_id,
            kind: CodeIdKind::Drug,
            term: e.display.clone(),
            snomed_concept_id: None,
            read_term_id: None,
            dmd_product_id: Some(e.code.clone()),
        },
    }
}

/// The scheme of a [`SchemeCode`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Scheme {
    Ctv3,
    Snomed,
    Dmd,
}

/// A concept in the CTV3-where-known scheme.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SchemeCode {
    pub scheme: Scheme,
    pub code: String,
}

/// CTV3 where the vocabulary gives a CTV3 code (the first listed), else SNOMED CT; dm+d products stay dm+d.
pub fn scheme_code(concept: &Concept) -> SchemeCode {
    if concept.system == CodeSystem::Dmd {
        return SchemeCode {
            scheme: Scheme::Dmd,
            code: concept.code.clone(),
        };
    }
    match Vocabulary::get().entry(&concept.code).and_then(|e| e.ctv3.first()) {
        Some(ctv3) => SchemeCode {
            scheme: Scheme::Ctv3,
            code: ctv3.code.clone(),
        },
        None => SchemeCode {
            scheme: Scheme::Snomed,
            code: concept.code.clone(),
        },
    }
}

/// The vocabulary concept a CTV3 code stands for (the vocabulary never attaches one CTV3 code to two entries).
pub fn concept_for_ctv3(ctv3: &str) -> Option<Concept> {
    Vocabulary::get()
        .entries()
        .iter()
        .find(|e| e.ctv3.iter().any(|c| c.code == ctv3))
        .map(Entry::concept)
}

/// The vocabulary concept for a code in a given scheme.
pub fn concept_for_scheme_code(scheme: Scheme, code: &str) -> Option<Concept> {
    match scheme {
        Scheme::Ctv3 => concept_for_ctv3(code),
        Scheme::Snomed | Scheme::Dmd => Vocabulary::get().concept(code),
    }
}
