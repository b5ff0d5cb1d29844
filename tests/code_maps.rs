//! The clinical-code ConceptMaps in `conformance/ConceptMap/` are derived from the code tables the native
//! systems publish (here: the simulators' tables, built from `shared/vocab`). This test rebuilds them and
//! fails when a committed map has drifted; `IM1_WRITE_CODE_MAPS=1 cargo test --test code_maps` rewrites them.

use im1_sim::record::vocab::{CodeSystem, Vocabulary};
use im1_sim::record::{CodeIdRow, CodeIdTable};
use serde_json::{json, Value};
use std::path::PathBuf;

const SNOMED: &str = "http://snomed.info/sct";
const DMD: &str = "https://dmd.nhs.uk";
const EMIS_CODE_ID: &str = "https://im1-fhir.dev/emis/code-id";
const CTV3: &str = "http://read.info/ctv3";

fn element(code: &str, display: &str, target: &str, target_display: &str) -> Value {
    json!({
        "code": code,
        "display": display,
        "target": [{ "code": target, "display": target_display, "equivalence": "equivalent" }]
    })
}

fn emis_code_id_map() -> Value {
    let rows = CodeIdTable::get().rows();
    let group = |target: &str, pick: fn(&CodeIdRow) -> Option<&String>| {
        let elements: Vec<Value> = rows
            .iter()
            .filter_map(|row| pick(row).map(|code| element(&row.code_id.to_string(), &row.term, code, &row.term)))
            .collect();
        json!({ "source": EMIS_CODE_ID, "target": target, "element": elements })
    };
    json!({
        "resourceType": "ConceptMap",
        "id": "emis-code-id",
        "url": "https://im1-fhir.dev/ConceptMap/emis-code-id",
        "version": "1",
        "name": "EmisCodeIdToSnomedAndDmd",
        "title": "EMIS Web local CodeIds to SNOMED CT and dm+d",
        "status": "active",
        "description": "EMIS Web payloads carry a local CodeId and a term, never the SNOMED CT concept. This map is built from the code table the EMIS simulator publishes (`GET /emis/sim/codes`): clinical CodeIds to SNOMED CT concepts, drug CodeIds to dm+d products. The CodeId numbers are the simulator's, not EMIS's.",
        "sourceUri": "https://im1-fhir.dev/emis/code-id",
        "group": [group(SNOMED, |r| r.snomed_concept_id.as_ref()), group(DMD, |r| r.dmd_product_id.as_ref())]
    })
}

fn ctv3_map() -> Value {
    let elements: Vec<Value> = Vocabulary::get()
        .entries()
        .iter()
        .filter(|e| e.system == CodeSystem::Snomed)
        .flat_map(|e| {
            e.ctv3
                .iter()
                .map(move |c| element(&c.code, &e.display, &e.code, &e.display))
        })
        .collect();
    json!({
        "resourceType": "ConceptMap",
        "id": "ctv3-snomed",
        "url": "https://im1-fhir.dev/ConceptMap/ctv3-snomed",
        "version": "1",
        "name": "Ctv3ToSnomed",
        "title": "CTV3 (Read v3) codes used by TPP SystmOne to SNOMED CT",
        "status": "active",
        "description": "CTV3 codes as TPP SystmOne records them, to the SNOMED CT concept of the same meaning. Rows come from the project vocabulary (shared/vocab), where each CTV3 code is matched to its concept by the same term in a published code set; this is not the NHS's official CTV3-to-SNOMED CT map.",
        "sourceUri": CTV3,
        "group": [{ "source": CTV3, "target": SNOMED, "element": elements }]
    })
}

fn check(name: &str, expected: Value) {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(format!("conformance/ConceptMap/{name}.json"));
    let text = serde_json::to_string_pretty(&expected).unwrap() + "\n";
    if std::env::var_os("IM1_WRITE_CODE_MAPS").is_some() {
        std::fs::write(&path, &text).unwrap();
        return;
    }
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        committed == text,
        "{} is out of date with the code tables: run IM1_WRITE_CODE_MAPS=1 cargo test --test code_maps",
        path.display()
    );
}

#[test]
fn emis_code_id_map_matches_the_code_table() {
    check("emis-code-id", emis_code_id_map());
}

#[test]
fn ctv3_map_matches_the_vocabulary() {
    check("ctv3-snomed", ctv3_map());
}
