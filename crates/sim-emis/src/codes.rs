//! The simulator's code tables: `GET /emis/sim/codes?codeId=..` (clinical) and `/emis/sim/drugcodes?codeId=..`
//! (dm+d); without `codeId`, the whole table as `{Codes: [...]}`.

use crate::errors::{message, model_state, ok};
use crate::request::Query;
use http::{Method, StatusCode};
use im1_sim::common::{SimRequest, SimResponse};
use im1_sim::record::codes::{CodeIdKind, CodeIdRow};
use im1_sim::record::CodeIdTable;
use serde_json::{json, Value};

fn clinical(row: &CodeIdRow) -> Value {
    json!({
        "CodeId": row.code_id,
        "Term": row.term,
        "SnomedCTConceptId": row.snomed_concept_id,
        // The vocabulary has no description ids and none are invented.
        "SnomedCTDescriptionId": null,
        "ReadTermId": row.read_term_id,
    })
}

fn drug(row: &CodeIdRow) -> Value {
    json!({"CodeId": row.code_id, "Term": row.term, "DmdProductCodeId": row.dmd_product_id})
}

pub fn handle(req: &SimRequest, path: &str) -> SimResponse {
    let (kind, render): (CodeIdKind, fn(&CodeIdRow) -> Value) = match path {
        "codes" => (CodeIdKind::Clinical, clinical),
        "drugcodes" => (CodeIdKind::Drug, drug),
        _ => {
            return message(
                StatusCode::NOT_FOUND,
                "No HTTP resource was found that matches the request URI.",
            )
        }
    };
    if req.method() != Method::GET {
        return message(
            StatusCode::METHOD_NOT_ALLOWED,
            "The requested resource does not support this method.",
        );
    }
    let table = CodeIdTable::get();
    let q = Query::of(req);
    let Some(text) = q.get("codeId") else {
        let rows: Vec<Value> = table.rows().iter().filter(|r| r.kind == kind).map(render).collect();
        return ok(&json!({ "Codes": rows }));
    };
    let Ok(id) = text.parse::<i64>() else {
        return model_state("codeId", "The codeId must be a number.");
    };
    match table.by_code_id(id).filter(|r| r.kind == kind) {
        Some(row) => ok(&render(row)),
        None => message(StatusCode::NOT_FOUND, "Code not found"),
    }
}
