//! Searching AuditEvents for the auditor: a typed query, its parsing from FHIR search parameters, and its SQL.
//!
//! Every filter is an indexed column (`recorded`, `outcome`, `agent`, `entity`, and the `audit_patient` side table
//! for patients), so a search never parses stored JSON except for the rows it returns. Results are newest first.
//!
//! FHIR semantics kept: a comma means "any of" (for `date` it is refused, with the reason); `date` may repeat
//! (`ge` and `le` together make a window) and its value's precision sets its range (`date=2024-03` is the whole of
//! March). Repeating any other parameter is refused rather than read as "all of", which for single-valued columns
//! would only ever match nothing.

use rusqlite::types::Value as SqlValue;
use serde_json::Value;
use time::OffsetDateTime;

use super::error::AuditError;
use super::event::instant;
use super::facts::patient_logical_id;

/// The search parameters served (besides `_format` and `_pretty`, which shape the response).
pub const PARAMS: [&str; 6] = ["date", "patient", "agent", "entity", "outcome", "_count"];

/// The code system of AuditEvent.outcome in R4.
const OUTCOME_SYSTEM: &str = "http://hl7.org/fhir/audit-event-outcome";

/// The default and the largest page.
pub const DEFAULT_COUNT: usize = 100;
pub const MAX_COUNT: usize = 1000;

/// What the auditor asks for. Empty lists do not filter; a list matches any of its values.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditQuery {
    /// `recorded >= since`.
    pub since: Option<OffsetDateTime>,
    /// `recorded < before`.
    pub before: Option<OffsetDateTime>,
    /// Patient logical ids.
    pub patients: Vec<String>,
    /// Agent subjects (the user's `who.identifier.value`).
    pub agents: Vec<String>,
    /// `Type/id` for one resource, or `Type` for every event about that type.
    pub entities: Vec<String>,
    /// AuditEvent outcome codes: `0`, `4`, `8`, `12`.
    pub outcomes: Vec<String>,
    /// At most this many events, newest first (oldest first with `oldest_first`).
    pub count: usize,
    /// Events skipped before the first returned (paging).
    pub offset: usize,
    pub oldest_first: bool,
    /// The practices whose events the auditor may see (their token's); events of no practice are seen by every
    /// auditor. `None`: every event (the store's own callers).
    pub practices: Option<Vec<String>>,
    /// Only events stored up to this row (the newest when a paged search began): an event committed later,
    /// even one recorded earlier, cannot shift the later pages.
    pub up_to: Option<i64>,
    /// Finds no event whatever the rest says: every patient asked for is one the auditor may not see.
    pub finds_nothing: bool,
}

/// One page of a query's events, how many match in all, and the newest row the page could see (the query's
/// `up_to`, or the newest stored row when it had none): later pages of the search pass it on.
#[derive(Debug, Clone)]
pub struct AuditPage {
    pub events: Vec<Value>,
    pub total: usize,
    pub up_to: i64,
}

impl Default for AuditQuery {
    fn default() -> Self {
        AuditQuery {
            since: None,
            before: None,
            patients: Vec::new(),
            agents: Vec::new(),
            entities: Vec::new(),
            outcomes: Vec::new(),
            count: DEFAULT_COUNT,
            offset: 0,
            oldest_first: false,
            practices: None,
            up_to: None,
            finds_nothing: false,
        }
    }
}

impl AuditQuery {
    /// Parses decoded FHIR search parameters (`date`, `patient`, `agent`, `entity`, `outcome`, `_count`; `_format`
    /// and `_pretty` are ignored as they shape the response, not the search). The error names the parameter.
    pub fn from_params(params: &[(String, String)]) -> Result<AuditQuery, String> {
        let mut query = AuditQuery::default();
        let mut seen: Vec<&str> = Vec::new();
        for (name, value) in params {
            if name != "date" {
                if seen.contains(&name.as_str()) {
                    return Err(format!(
                        "parameter '{name}' is repeated; use a comma to ask for any of several values"
                    ));
                }
                seen.push(name);
            }
            let values = || {
                value
                    .split(',')
                    .map(str::trim)
                    .filter(|v| !v.is_empty())
                    .map(str::to_string)
            };
            match name.as_str() {
                "date" => query.add_date(value).map_err(|e| format!("parameter 'date': {e}"))?,
                "patient" => query.patients = values().map(|v| patient_logical_id(&v).to_string()).collect(),
                "agent" => query.agents = values().collect(),
                "entity" => query.entities = values().collect(),
                "outcome" => {
                    // A token: the code alone, or with its system (R4's audit-event-outcome) or an empty one.
                    query.outcomes = values()
                        .map(|v| match v.split_once('|') {
                            Some((OUTCOME_SYSTEM | "", code)) => code.to_string(),
                            _ => v,
                        })
                        .collect();
                    if let Some(bad) = query
                        .outcomes
                        .iter()
                        .find(|o| !matches!(o.as_str(), "0" | "4" | "8" | "12"))
                    {
                        return Err(format!("parameter 'outcome': '{bad}' is not one of 0, 4, 8, 12"));
                    }
                }
                "_count" => {
                    let count: usize = value
                        .trim()
                        .parse()
                        .map_err(|_| format!("parameter '_count': '{value}' is not a number"))?;
                    query.count = count.min(MAX_COUNT);
                }
                "_format" | "_pretty" => {}
                other => return Err(format!("unknown search parameter '{other}' for AuditEvent")),
            }
        }
        Ok(query)
    }

    /// Narrows the window by one FHIR date parameter (`ge2024-01-01`, `lt2024-03-01T10:00:00Z`, `2024-02`).
    fn add_date(&mut self, value: &str) -> Result<(), String> {
        // Any of several windows would be several ranges of `recorded`; auditors narrow one window instead.
        if value.contains(',') {
            return Err("takes one date per repetition here: repeat the parameter to narrow the window".into());
        }
        let (prefix, text) = match value.get(..2) {
            Some(p @ ("ge" | "gt" | "le" | "lt" | "eq")) => (p, &value[2..]),
            Some("ne" | "sa" | "eb" | "ap") => return Err(format!("prefix '{}' is not supported", &value[..2])),
            _ => ("eq", value),
        };
        let (start, end) = date_range(text)?;
        let (since, before) = match prefix {
            "ge" => (Some(start), None),
            "gt" => (Some(end), None),
            "le" => (None, Some(end)),
            "lt" => (None, Some(start)),
            _ => (Some(start), Some(end)),
        };
        if let Some(since) = since {
            self.since = Some(self.since.map_or(since, |s| s.max(since)));
        }
        if let Some(before) = before {
            self.before = Some(self.before.map_or(before, |b| b.min(before)));
        }
        Ok(())
    }
}

/// The instants `[start, end)` a FHIR date, dateTime or instant of any precision stands for (`fhir::dates`).
fn date_range(text: &str) -> Result<(OffsetDateTime, OffsetDateTime), String> {
    let text = text.trim_start();
    crate::fhir::dates::range(text).ok_or_else(|| format!("'{text}' is not a FHIR date or dateTime"))
}

/// Runs the query on a connection: one page of the stored AuditEvents, and how many match in all, read in one
/// transaction so that the count, the page and the newest row agree while the writer commits.
pub(crate) fn run_page(conn: &rusqlite::Connection, query: &AuditQuery) -> Result<AuditPage, AuditError> {
    let search = |e: rusqlite::Error| AuditError::Search(e.to_string());
    let read = conn.unchecked_transaction().map_err(search)?;
    let up_to = match query.up_to {
        Some(row) => row,
        None => read
            .query_row("SELECT COALESCE(MAX(rowid), 0) FROM audit_event", [], |row| row.get(0))
            .map_err(search)?,
    };
    let query = AuditQuery {
        up_to: Some(up_to),
        ..query.clone()
    };
    let (filter, args) = filter_sql(&query);
    let total: i64 = read
        .prepare_cached(&format!("SELECT COUNT(*) FROM audit_event e WHERE 1 = 1{filter}"))
        .and_then(|mut statement| statement.query_row(rusqlite::params_from_iter(args), |row| row.get(0)))
        .map_err(search)?;
    let events = run(&read, &query)?;
    read.finish().map_err(search)?;
    Ok(AuditPage {
        events,
        total: usize::try_from(total).unwrap_or(0),
        up_to,
    })
}

/// Runs the query on a connection and returns one page of the stored AuditEvents.
pub(crate) fn run(conn: &rusqlite::Connection, query: &AuditQuery) -> Result<Vec<Value>, AuditError> {
    let (sql, args) = to_sql(query);
    let search = |e: rusqlite::Error| AuditError::Search(e.to_string());
    let mut statement = conn.prepare_cached(&sql).map_err(search)?;
    let rows = statement
        .query_map(rusqlite::params_from_iter(args), |row| row.get::<_, String>(0))
        .map_err(search)?;
    let mut events = Vec::new();
    for row in rows {
        let text = row.map_err(search)?;
        let event = serde_json::from_str(&text).map_err(|e| AuditError::Search(format!("a stored event: {e}")))?;
        events.push(event);
    }
    Ok(events)
}

fn to_sql(query: &AuditQuery) -> (String, Vec<SqlValue>) {
    let (filter, mut args) = filter_sql(query);
    let order = if query.oldest_first { "ASC" } else { "DESC" };
    let sql =
        format!("SELECT e.json FROM audit_event e WHERE 1 = 1{filter} ORDER BY e.recorded {order}, e.rowid {order} LIMIT ? OFFSET ?");
    args.push(SqlValue::Integer(i64::try_from(query.count).unwrap_or(i64::MAX)));
    args.push(SqlValue::Integer(i64::try_from(query.offset).unwrap_or(i64::MAX)));
    (sql, args)
}

/// The query's filters as ` AND ...` clauses, and their arguments.
fn filter_sql(query: &AuditQuery) -> (String, Vec<SqlValue>) {
    let mut sql = String::new();
    let mut args: Vec<SqlValue> = Vec::new();
    if query.finds_nothing {
        sql.push_str(" AND 0 = 1");
    }
    if let Some(since) = query.since {
        sql.push_str(" AND e.recorded >= ?");
        args.push(SqlValue::Text(instant(since)));
    }
    if let Some(before) = query.before {
        sql.push_str(" AND e.recorded < ?");
        args.push(SqlValue::Text(instant(before)));
    }
    if let Some(practices) = &query.practices {
        sql.push_str(" AND (NOT EXISTS (SELECT 1 FROM audit_practice p WHERE p.event_id = e.id)");
        if !practices.is_empty() {
            sql.push_str(" OR e.id IN (SELECT event_id FROM audit_practice WHERE 1 = 1");
            in_list(&mut sql, &mut args, "practice", practices);
            sql.push(')');
        }
        sql.push(')');
    }
    if let Some(row) = query.up_to {
        sql.push_str(" AND e.rowid <= ?");
        args.push(SqlValue::Integer(row));
    }
    in_list(&mut sql, &mut args, "e.outcome", &query.outcomes);
    in_list(&mut sql, &mut args, "e.agent", &query.agents);
    if !query.patients.is_empty() {
        sql.push_str(" AND e.id IN (SELECT event_id FROM audit_patient WHERE 1 = 1");
        in_list(&mut sql, &mut args, "patient", &query.patients);
        sql.push(')');
    }
    if !query.entities.is_empty() {
        let mut alternatives = Vec::new();
        for entity in &query.entities {
            if entity.contains('/') {
                alternatives.push("e.entity = ?");
                args.push(SqlValue::Text(entity.clone()));
            } else {
                // A type: the type-level rows, and every `Type/...` row as an index range ('0' follows '/').
                alternatives.push("e.entity = ? OR (e.entity >= ? AND e.entity < ?)");
                args.push(SqlValue::Text(entity.clone()));
                args.push(SqlValue::Text(format!("{entity}/")));
                args.push(SqlValue::Text(format!("{entity}0")));
            }
        }
        sql.push_str(&format!(" AND ({})", alternatives.join(" OR ")));
    }
    (sql, args)
}

/// ` AND column IN (?, ...)`, or nothing for an empty list. (`1 = 1` starts every WHERE so that each clause
/// can begin with AND, the sub-select's included.)
fn in_list(sql: &mut String, args: &mut Vec<SqlValue>, column: &str, values: &[String]) {
    if !values.is_empty() {
        sql.push_str(&format!(" AND {column} IN ({})", vec!["?"; values.len()].join(", ")));
        args.extend(values.iter().cloned().map(SqlValue::Text));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    fn params(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn date_prefixes_make_a_window() {
        let q = AuditQuery::from_params(&params(&[("date", "ge2024-01-01"), ("date", "le2024-01-31")])).unwrap();
        assert_eq!(q.since, Some(datetime!(2024-01-01 0:00 UTC)));
        assert_eq!(q.before, Some(datetime!(2024-02-01 0:00 UTC)));
        let q = AuditQuery::from_params(&params(&[("date", "gt2024-02"), ("date", "lt2025")])).unwrap();
        assert_eq!(q.since, Some(datetime!(2024-03-01 0:00 UTC)));
        assert_eq!(q.before, Some(datetime!(2025-01-01 0:00 UTC)));
        let q = AuditQuery::from_params(&params(&[("date", "2024-12")])).unwrap();
        assert_eq!(
            (q.since, q.before),
            (
                Some(datetime!(2024-12-01 0:00 UTC)),
                Some(datetime!(2025-01-01 0:00 UTC))
            )
        );
        let q = AuditQuery::from_params(&params(&[("date", "ge2024-01-01T10:00:00 01:00")])).unwrap();
        assert_eq!(q.since, Some(datetime!(2024-01-01 9:00 UTC)));
        let q = AuditQuery::from_params(&params(&[("date", "le2024-01-01T10:00:00.5Z")])).unwrap();
        assert_eq!(q.before, Some(datetime!(2024-01-01 10:00:00.6 UTC)));
    }

    #[test]
    fn bad_parameters_are_named() {
        let err = |pairs: &[(&str, &str)]| AuditQuery::from_params(&params(pairs)).unwrap_err();
        assert!(err(&[("subtype", "read")]).contains("'subtype'"));
        assert!(err(&[("date", "ge2024-13-01")]).contains("'date'"));
        assert!(err(&[("date", "ne2024")]).contains("'date'"));
        assert!(err(&[("date", "2024-01-01,2024-02-01")]).contains("repeat the parameter"));
        assert!(err(&[("outcome", "3")]).contains("'outcome'"));
        assert!(err(&[("_count", "many")]).contains("'_count'"));
        assert!(err(&[("agent", "a"), ("agent", "b")]).contains("'agent'"));
    }

    #[test]
    fn values_are_normalised() {
        let q = AuditQuery::from_params(&params(&[
            ("patient", "Patient/p1,p2"),
            ("outcome", "4,8"),
            ("_count", "5000"),
            ("_format", "json"),
        ]))
        .unwrap();
        assert_eq!(q.patients, vec!["p1", "p2"]);
        assert_eq!(q.outcomes, vec!["4", "8"]);
        assert_eq!(q.count, MAX_COUNT);
        let q =
            AuditQuery::from_params(&params(&[("outcome", "http://hl7.org/fhir/audit-event-outcome|4,|8")])).unwrap();
        assert_eq!(q.outcomes, vec!["4", "8"]);
        assert!(AuditQuery::from_params(&params(&[("outcome", "http://example.org|4")])).is_err());
    }
}
