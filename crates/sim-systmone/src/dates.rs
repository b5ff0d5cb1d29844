//! SystmOne dates: UTC with exactly one fractional digit (`2025-03-04T09:30:00.0Z`); partial dates are padded
//! to their first instant and qualified by `dateAccuracy="day|month|year"`.

use im1_sim::record::{PartialDate, Precision};
use time::format_description::well_known::Rfc3339;
use time::{Date, Month, OffsetDateTime, UtcOffset};

/// Append `n` as exactly `width` decimal digits (zero padded, high digits dropped).
fn push_digits(out: &mut String, n: u32, width: u32) {
    for k in (0..width).rev() {
        out.push(char::from(b'0' + ((n / 10u32.pow(k)) % 10) as u8));
    }
}

/// An instant in the dialect's form (tenths truncated, never rounded up). Written by hand: it is on every
/// reply's hot path and `format!` with eight arguments showed in profiles.
pub fn instant(t: OffsetDateTime) -> String {
    let t = if t.offset() == UtcOffset::UTC {
        t
    } else {
        t.to_offset(UtcOffset::UTC)
    };
    let mut out = String::with_capacity(22);
    push_digits(&mut out, t.year().clamp(0, 9999).unsigned_abs(), 4);
    out.push('-');
    push_digits(&mut out, u32::from(t.month() as u8), 2);
    out.push('-');
    push_digits(&mut out, u32::from(t.day()), 2);
    out.push('T');
    push_digits(&mut out, u32::from(t.hour()), 2);
    out.push(':');
    push_digits(&mut out, u32::from(t.minute()), 2);
    out.push(':');
    push_digits(&mut out, u32::from(t.second()), 2);
    out.push('.');
    push_digits(&mut out, t.nanosecond() / 100_000_000, 1);
    out.push('Z');
    out
}

/// A calendar date as its midnight UTC instant.
pub fn day(d: Date) -> String {
    instant(d.midnight().assume_utc())
}

/// The accuracy word for a precision.
pub fn accuracy(p: Precision) -> &'static str {
    match p {
        Precision::Day => "day",
        Precision::YearMonth => "month",
        Precision::Year => "year",
    }
}

/// A partial date as (padded value, accuracy).
pub fn partial(d: &PartialDate) -> (String, &'static str) {
    (day(d.first_day()), accuracy(d.precision()))
}

/// Parse an instant. Accepts any RFC 3339 form (the dialect's one digit, or more) so callers are not punished
/// for precision.
pub fn parse_instant(s: &str) -> Option<OffsetDateTime> {
    OffsetDateTime::parse(s.trim(), &Rfc3339).ok()
}

/// Parse a padded date value with its accuracy (`day` when absent).
pub fn parse_partial(value: &str, accuracy: Option<&str>) -> Option<PartialDate> {
    let d = parse_instant(value)?.date();
    match accuracy.unwrap_or("day") {
        "day" => Some(PartialDate::Day(d)),
        "month" => Some(PartialDate::YearMonth(d.year(), d.month())),
        "year" => Some(PartialDate::Year(d.year())),
        _ => None,
    }
}

/// The first instant a partial date denotes (for ordering and windows).
pub fn partial_start(d: &PartialDate) -> OffsetDateTime {
    d.first_day().midnight().assume_utc()
}

/// 1 January of a year, for defaults.
pub fn year_start(year: i32) -> Date {
    Date::from_calendar_date(year, Month::January, 1).unwrap_or(Date::MIN)
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::{date, datetime};

    #[test]
    fn one_fractional_digit_and_padding() {
        assert_eq!(
            instant(datetime!(2025-03-04 09:30:00.789 UTC)),
            "2025-03-04T09:30:00.7Z"
        );
        assert_eq!(
            partial(&PartialDate::YearMonth(2009, Month::June)),
            ("2009-06-01T00:00:00.0Z".to_string(), "month")
        );
        assert_eq!(
            parse_partial("2009-06-01T00:00:00.0Z", Some("year")),
            Some(PartialDate::Year(2009))
        );
        assert_eq!(day(date!(1985 - 04 - 12)), "1985-04-12T00:00:00.0Z");
    }
}
