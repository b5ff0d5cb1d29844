//! The dialect's small formatting rules, in one place: lower-case UUIDs, `YYYY-MM-DD` dates, UTC `Z`
//! date-times without fraction, SNOMED/dm+d `{code, display}` pairs.

use im1_sim::record::{native_id, Concept, Nid, Supplier};
use serde_json::{json, Value};
use time::{Date, OffsetDateTime, UtcOffset};

/// The Medicus id of a neutral id.
pub fn nid(id: &Nid) -> String {
    native_id(Supplier::Medicus, id)
}

/// `YYYY-MM-DD`.
pub fn date(d: Date) -> String {
    format!("{:04}-{:02}-{:02}", d.year(), u8::from(d.month()), d.day())
}

/// `YYYY-MM-DDTHH:MM:SSZ` (UTC, fraction dropped).
pub fn datetime(t: OffsetDateTime) -> String {
    let t = t.to_offset(UtcOffset::UTC);
    format!(
        "{}T{:02}:{:02}:{:02}Z",
        date(t.date()),
        t.hour(),
        t.minute(),
        t.second()
    )
}

/// `{code, display}` with the record's own term.
pub fn concept(c: &Concept) -> Value {
    json!({"code": c.code, "display": c.display})
}

/// Parse `YYYY-MM-DD`.
pub fn parse_date(s: &str) -> Option<Date> {
    let f = time::macros::format_description!("[year]-[month]-[day]");
    Date::parse(s, f).ok()
}

/// Parse an RFC 3339 date-time (fraction allowed).
pub fn parse_datetime(s: &str) -> Option<OffsetDateTime> {
    OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::{date, datetime};

    #[test]
    fn formats() {
        assert_eq!(date(date!(2025 - 03 - 04)), "2025-03-04");
        assert_eq!(
            datetime(datetime!(2025-03-04 09:30:00.123 +01:00)),
            "2025-03-04T08:30:00Z"
        );
    }
}
