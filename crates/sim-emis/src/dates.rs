//! EMIS date styles: instants with the UK offset, slot times as UK wall-clock without offset, dates of birth
//! and effective dates as midnight without offset, and `EffectiveDate { DatePart, Value }` for precision.

use im1_sim::record::dates::{uk_local, uk_offset_at};
use im1_sim::record::{PartialDate, Precision};
use serde_json::{json, Value};
use time::format_description::well_known::Rfc3339;
use time::macros::format_description;
use time::{Date, OffsetDateTime, PrimitiveDateTime, Time};

/// `2025-03-04T09:30:00+00:00`, in the UK offset of that instant.
pub fn with_offset(t: OffsetDateTime) -> String {
    let fmt = format_description!(
        "[year]-[month]-[day]T[hour]:[minute]:[second][offset_hour sign:mandatory]:[offset_minute]"
    );
    t.to_offset(uk_offset_at(t)).format(fmt).unwrap_or_default()
}

/// `2025-03-04T09:30:00`: UK wall-clock time without offset (slots).
pub fn local(t: OffsetDateTime) -> String {
    let fmt = format_description!("[year]-[month]-[day]T[hour]:[minute]:[second]");
    t.to_offset(uk_offset_at(t)).format(fmt).unwrap_or_default()
}

/// `1985-04-12T00:00:00`.
pub fn midnight(d: Date) -> String {
    format!("{}T00:00:00", day(d))
}

/// `1985-04-12`.
pub fn day(d: Date) -> String {
    format!("{:04}-{:02}-{:02}", d.year(), d.month() as u8, d.day())
}

/// `{DatePart, Value}`; an absent date is `{"DatePart":"Unknown","Value":null}`.
pub fn effective(p: Option<&PartialDate>) -> Value {
    match p {
        None => json!({"DatePart": "Unknown", "Value": null}),
        Some(p) => {
            let part = match p.precision() {
                Precision::Year => "Year",
                Precision::YearMonth => "YearMonth",
                Precision::Day => "YearMonthDay",
            };
            json!({"DatePart": part, "Value": midnight(p.first_day())})
        }
    }
}

/// Read `{DatePart, Value}` back (writes).
pub fn parse_effective(v: &Value) -> Result<PartialDate, String> {
    let part = v
        .get("DatePart")
        .and_then(Value::as_str)
        .ok_or("DatePart is required")?;
    let value = v.get("Value").and_then(Value::as_str).ok_or("Value is required")?;
    let date = parse_day(value).ok_or("Value must be yyyy-MM-ddTHH:mm:ss")?;
    let precision = match part {
        "YearMonthDay" => Precision::Day,
        "YearMonth" => Precision::YearMonth,
        "Year" => Precision::Year,
        _ => return Err("DatePart must be YearMonthDay, YearMonth or Year".into()),
    };
    Ok(PartialDate::with_precision(date, precision))
}

/// The date part of `yyyy-MM-dd` or any date-time starting with it.
pub fn parse_day(s: &str) -> Option<Date> {
    let fmt = format_description!("[year]-[month]-[day]");
    Date::parse(s.get(..10)?, fmt).ok()
}

/// A UK wall-clock `yyyy-MM-ddTHH:mm:ss` (or with an offset, which is then honoured).
pub fn parse_local(s: &str) -> Option<OffsetDateTime> {
    if let Ok(t) = OffsetDateTime::parse(s, &Rfc3339) {
        return Some(t);
    }
    let fmt = format_description!("[year]-[month]-[day]T[hour]:[minute]:[second]");
    let t = PrimitiveDateTime::parse(s.get(..19)?, fmt).ok()?;
    Some(uk_local(t.date(), t.time()))
}

/// An instant with offset (round-trip ISO 8601); a date alone is its UK midnight.
pub fn parse_instant(s: &str) -> Option<OffsetDateTime> {
    if s.len() == 10 {
        return parse_day(s).map(|d| uk_local(d, Time::MIDNIGHT));
    }
    parse_local(s)
}
