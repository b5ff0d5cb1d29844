//! `POST GetChangedPatients`: the change log as the practice sees it, one entry per patient and change type
//! (latest time wins), paged by an opaque token.

use crate::dates::{self, with_offset};
use crate::errors::{missing, model_state, ok};
use crate::partner::patient_guid;
use crate::request::json_body;
use crate::routes::Emis;
use base64::Engine;
use im1_sim::common::{SimRequest, SimResponse};
use im1_sim::record::{ChangeArea, Nid};
use serde_json::{json, Value};
use time::OffsetDateTime;

const MAX_PAGE: usize = 1000;
const DEFAULT_PAGE: usize = 100;

fn change_type(a: ChangeArea) -> &'static str {
    match a {
        ChangeArea::Demographics => "Demographics",
        ChangeArea::Registration => "Registration",
        ChangeArea::Record => "Clinical",
        ChangeArea::Appointments => "Appointments",
        ChangeArea::Prescriptions => "Prescriptions",
    }
}

fn encode_token(since: &str, offset: usize) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(format!("{offset}|{since}"))
}

fn decode_token(token: &str) -> Option<(usize, String)> {
    let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(token).ok()?;
    let text = String::from_utf8(raw).ok()?;
    let (offset, since) = text.split_once('|')?;
    Some((offset.parse().ok()?, since.to_string()))
}

pub fn changed_patients(e: &Emis, req: &SimRequest) -> SimResponse {
    let body = match json_body(req) {
        Ok(b) => b,
        Err(r) => return r,
    };
    let page_size = body
        .get("PageSize")
        .and_then(Value::as_u64)
        .map_or(DEFAULT_PAGE, |n| usize::try_from(n).unwrap_or(MAX_PAGE))
        .clamp(1, MAX_PAGE);
    let (offset, since_text) = match body.get("PageToken").and_then(Value::as_str) {
        Some(t) => match decode_token(t) {
            Some(x) => x,
            None => return model_state("PageToken", "The PageToken is not valid."),
        },
        None => match body.get("Since").and_then(Value::as_str) {
            Some(s) => (0, s.to_string()),
            None => return missing("Since"),
        },
    };
    let Some(since) = dates::parse_instant(&since_text) else {
        return model_state("Since", "The Since field is not a valid date-time.");
    };
    let changes = e.world.changes_since_at(since, &e.config.practice_ods);
    // One row per (patient, type), in order of first appearance, with the latest time.
    let mut rows: Vec<(Nid, String, ChangeArea, OffsetDateTime)> = Vec::new();
    for c in &changes {
        match rows.iter_mut().find(|(p, _, a, _)| p == &c.patient && *a == c.area) {
            Some(row) => row.3 = c.at,
            None => rows.push((c.patient.clone(), c.nhs_number.clone(), c.area, c.at)),
        }
    }
    let high_water = changes.last().map_or(since, |c| c.at);
    let page: Vec<Value> = rows
        .iter()
        .skip(offset)
        .take(page_size)
        .map(|(p, nhs, area, at)| {
            json!({
                "PatientGuid": patient_guid(p),
                "NhsNumber": nhs,
                "ChangeType": change_type(*area),
                "LastModified": with_offset(*at),
            })
        })
        .collect();
    let next = (offset + page_size < rows.len()).then(|| encode_token(&since_text, offset + page_size));
    ok(&json!({
        "Changes": page,
        "NextPageToken": next,
        "HighWaterMark": high_water_text(high_water),
    }))
}

/// The mark with nanoseconds (the change log's resolution), so storing it as the next `Since` never repeats or misses a change.
fn high_water_text(t: OffsetDateTime) -> String {
    let fmt = time::macros::format_description!(
        "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:9][offset_hour sign:mandatory]:[offset_minute]"
    );
    let t = t.to_offset(im1_sim::record::dates::uk_offset_at(t));
    t.format(fmt).unwrap_or_else(|_| with_offset(t))
}
