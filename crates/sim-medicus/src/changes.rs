//! The changes feed (invented): `GET .../transactional-api/v1/patients/changes?since=&cursor=&limit=`.
//! Each page groups its changes per patient; `highWaterMark` is the time of the last change returned (or of
//! `since` when none), truncated to the second, so polling with it repeats rather than misses changes.

use crate::errors::ApiError;
use crate::paging;
use crate::style::{datetime, nid, parse_datetime};
use im1_sim::record::{ChangeArea, World};
use serde_json::{json, Value};

fn area(a: ChangeArea) -> &'static str {
    match a {
        ChangeArea::Demographics => "demographics",
        ChangeArea::Registration => "registration",
        ChangeArea::Record => "journal",
        ChangeArea::Appointments => "appointments",
        ChangeArea::Prescriptions => "prescriptions",
    }
}

pub fn feed(
    world: &World,
    ods: &str,
    since: Option<&str>,
    cursor: Option<&str>,
    limit: Option<&str>,
) -> Result<Value, ApiError> {
    let since = since.and_then(parse_datetime).ok_or_else(|| {
        ApiError::new(
            400,
            "INVALID_DATE",
            "Invalid date",
            "since must be an ISO 8601 date-time.",
        )
    })?;
    let limit = paging::limit(limit, 100, 1000)?;
    let after_seq = paging::decode("changes", cursor)?;
    let all: Vec<_> = world
        .changes_since_at(since, ods)
        .into_iter()
        .filter(|c| c.seq > after_seq)
        .collect();
    let page = &all[..limit.min(all.len())];
    let mut grouped: Vec<(String, String, String, Vec<&'static str>)> = Vec::new();
    for c in page {
        let pid = nid(&c.patient);
        match grouped.iter_mut().find(|g| g.0 == pid) {
            Some(g) => {
                g.2 = datetime(c.at);
                if !g.3.contains(&area(c.area)) {
                    g.3.push(area(c.area));
                }
            }
            None => grouped.push((pid, c.nhs_number.clone(), datetime(c.at), vec![area(c.area)])),
        }
    }
    let changes: Vec<Value> = grouped
        .into_iter()
        .map(|(id, nhs, at, areas)| json!({"patientId": id, "nhsNumber": nhs, "changedAt": at, "areas": areas}))
        .collect();
    let next = (all.len() > page.len())
        .then(|| page.last().map(|c| paging::encode("changes", c.seq)))
        .flatten();
    let mark = page.last().map_or(since, |c| c.at);
    Ok(json!({"changes": changes, "nextCursor": next, "highWaterMark": datetime(mark)}))
}
