//! The embedded clinical vocabulary (`data/vocabulary.json`, a verbatim copy of the project's verified list).
//!
//! Every coded element the generator emits comes from here, so no clinical code is ever invented. Entries keep
//! the file's order: that order is what the EMIS code table numbers (see [`super::codes`]).

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::sync::OnceLock;

const VOCABULARY_JSON: &str = include_str!("../../data/vocabulary.json");

/// FHIR system URI for SNOMED CT.
pub const SNOMED: &str = "http://snomed.info/sct";
/// FHIR system URI for dm+d (as UK Core spells it).
pub const DMD: &str = "https://dmd.nhs.uk";
/// FHIR system URI for Read v2.
pub const READ_V2: &str = "http://read.info/readv2";
/// FHIR system URI for CTV3.
pub const CTV3: &str = "http://read.info/ctv3";
/// FHIR system URI for UCUM units.
pub const UCUM: &str = "http://unitsofmeasure.org";

/// The code system of a concept: the vocabulary holds only these two.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum CodeSystem {
    /// SNOMED CT (`http://snomed.info/sct`).
    #[serde(rename = "http://snomed.info/sct")]
    Snomed,
    /// dm+d (`https://dmd.nhs.uk`).
    #[serde(rename = "https://dmd.nhs.uk")]
    Dmd,
}

impl CodeSystem {
    /// The FHIR system URI.
    pub fn uri(self) -> &'static str {
        match self {
            CodeSystem::Snomed => SNOMED,
            CodeSystem::Dmd => DMD,
        }
    }
}

/// The vocabulary category an entry belongs to (the file's `category`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Category {
    Problem,
    Allergy,
    AllergySubstance,
    ReactionManifestation,
    Observation,
    ObservationSmoking,
    ObservationUnitQualifier,
    ImmunisationProcedure,
    VaccineProduct,
    EncounterType,
    DocumentType,
    ConsentOptOut,
    Medication,
}

/// An indicative reference range (either bound may be absent).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct ReferenceRange {
    pub low: Option<f64>,
    pub high: Option<f64>,
}

/// A legacy code (Read v2 or CTV3) attached to a vocabulary entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LegacyCode {
    /// The 5-character code, e.g. `H33..`.
    pub code: String,
    /// Read v2 term code (`00` for the preferred term) when the source gave one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub term_code: Option<String>,
}

/// One vocabulary entry: a concept with its single display term and optional legacy codes.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Entry {
    pub category: Category,
    pub system: CodeSystem,
    pub code: String,
    pub display: String,
    /// UCUM unit for observations.
    #[serde(default)]
    pub ucum: Option<String>,
    #[serde(default)]
    pub reference_range: Option<ReferenceRange>,
    #[serde(default)]
    pub read_v2: Vec<LegacyCode>,
    #[serde(default)]
    pub ctv3: Vec<LegacyCode>,
}

/// A coded concept as items carry it: system, code and the one display term the vocabulary gives.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub struct Concept {
    pub system: CodeSystem,
    pub code: String,
    pub display: String,
}

impl Entry {
    /// This entry as a [`Concept`].
    pub fn concept(&self) -> Concept {
        Concept {
            system: self.system,
            code: self.code.clone(),
            display: self.display.clone(),
        }
    }
}

#[derive(Deserialize)]
struct File {
    entries: Vec<Entry>,
}

/// The parsed vocabulary, in file order.
#[derive(Debug)]
pub struct Vocabulary {
    entries: Vec<Entry>,
    by_code: BTreeMap<String, usize>,
}

impl Vocabulary {
    /// The embedded vocabulary, parsed once.
    pub fn get() -> &'static Vocabulary {
        static VOCAB: OnceLock<Vocabulary> = OnceLock::new();
        VOCAB.get_or_init(|| {
            // The file is compiled in and checked by the tests, so a parse failure is a build defect, not input.
            let file: File = serde_json::from_str(VOCABULARY_JSON)
                .unwrap_or_else(|e| panic!("embedded vocabulary.json does not parse: {e}"));
            let by_code = file
                .entries
                .iter()
                .enumerate()
                .map(|(i, e)| (e.code.clone(), i))
                .collect();
            Vocabulary {
                entries: file.entries,
                by_code,
            }
        })
    }

    /// All entries in file order.
    pub fn entries(&self) -> &[Entry] {
        &self.entries
    }

    /// The entry with this code (SNOMED CT or dm+d; codes do not clash across the two).
    pub fn entry(&self, code: &str) -> Option<&Entry> {
        self.by_code.get(code).and_then(|&i| self.entries.get(i))
    }

    /// The position of the entry with this code in file order.
    pub fn index_of(&self, code: &str) -> Option<usize> {
        self.by_code.get(code).copied()
    }

    /// The concept with this code, if the vocabulary has it.
    pub fn concept(&self, code: &str) -> Option<Concept> {
        self.entry(code).map(Entry::concept)
    }

    /// Entries of one category, in file order.
    pub fn category(&self, category: Category) -> impl Iterator<Item = &Entry> {
        self.entries.iter().filter(move |e| e.category == category)
    }

    /// Whether `concept` is exactly a vocabulary entry (same system, code and display).
    pub fn contains(&self, concept: &Concept) -> bool {
        self.entry(&concept.code)
            .is_some_and(|e| e.system == concept.system && e.display == concept.display)
    }
}
