//! `GetChangedPatients`: the world's change log as patients with the areas that changed, oldest first.

use crate::dates::{instant, parse_instant};
use crate::errors::TppError;
use crate::render::tid;
use crate::xml::El;
use im1_sim::record::{ChangeArea, Nid, World};
use time::OffsetDateTime;

/// Default and largest `maxResults`.
pub const DEFAULT_MAX: usize = 100;
pub const MAX_MAX: usize = 1000;

fn area(a: ChangeArea) -> &'static str {
    match a {
        ChangeArea::Demographics => "demographics",
        ChangeArea::Registration => "registration",
        ChangeArea::Record => "record",
        ChangeArea::Appointments => "appointments",
        ChangeArea::Prescriptions => "prescriptions",
    }
}

struct Row {
    patient: Nid,
    nhs: String,
    changed: OffsetDateTime,
    areas: Vec<&'static str>,
}

/// Fill `root` with the patients changed after `since` at the unit. `highWaterMark` is the time of the last
/// change included (truncated to tenths, so a change in that tenth may be reported again: at least once).
pub fn changed_patients(
    world: &World,
    ods: &str,
    since: Option<&str>,
    max: Option<&str>,
    root: El,
) -> Result<El, TppError> {
    let since = since
        .and_then(parse_instant)
        .ok_or_else(|| TppError::invalid("since missing or not a date-time"))?;
    let max = match max {
        None => DEFAULT_MAX,
        Some(m) => m
            .parse::<usize>()
            .ok()
            .filter(|m| (1..=MAX_MAX).contains(m))
            .ok_or_else(|| TppError::invalid(format!("maxResults must be 1 to {MAX_MAX}")))?,
    };
    let changes = world.changes_since_at(since, ods);
    let mut rows: Vec<Row> = Vec::new();
    let mut last: Option<OffsetDateTime> = None;
    let mut more = false;
    for c in &changes {
        let full = rows.len() == max;
        match rows.iter_mut().find(|r| r.patient == c.patient) {
            Some(r) => {
                r.changed = c.at;
                if !r.areas.contains(&area(c.area)) {
                    r.areas.push(area(c.area));
                }
            }
            None if full => {
                more = true;
                break;
            }
            None => rows.push(Row {
                patient: c.patient.clone(),
                nhs: c.nhs_number.clone(),
                changed: c.at,
                areas: vec![area(c.area)],
            }),
        }
        last = Some(c.at);
    }
    rows.sort_by(|a, b| a.changed.cmp(&b.changed).then_with(|| a.patient.cmp(&b.patient)));
    let mark = last.unwrap_or(since);
    Ok(root
        .attr("moreAvailable", if more { "true" } else { "false" })
        .attr("highWaterMark", instant(mark))
        .children(rows.into_iter().map(|r| {
            El::new("Patient")
                .attr("patientId", tid(&r.patient))
                .attr("nhsNumber", r.nhs)
                .attr("changed", instant(r.changed))
                .attr("areas", r.areas.join(" "))
        })))
}
