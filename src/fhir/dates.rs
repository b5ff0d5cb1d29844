//! FHIR search dates: the half-open range of instants `[start, end)` a date, dateTime or instant of any
//! precision stands for (`2024`, `2024-03`, `2024-03-05`, `2024-03-05T10:00Z`, `…T10:00:00.5+01:00`). One
//! reading for every search, the proxy's own filters and the AuditEvent store alike.
//!
//! A value without a zone is UK civil time (GMT, or BST in summer): FHIR reads such a value in the server's
//! zone, and English practices' days are UK days, as are the days the proxy asks native APIs for. So
//! `date=2026-06-21` is 2026-06-20T23:00Z to 2026-06-21T23:00Z. Ranges end at the last instant the `time`
//! crate holds rather than overflow: `le9999-12-31` is a question with an answer, not an error.

/// The offset from UTC the UK keeps at an instant: the simulators' own, so both read one tz database.
pub use im1_sim::record::dates::uk_offset_at as uk_offset;
use im1_sim::record::dates::{civil, LONDON};
use time::format_description::well_known::Rfc3339;
use time::{Date, Duration, Month, OffsetDateTime, PrimitiveDateTime, Time, UtcOffset};

/// `[start, end)`, in UTC.
pub type Range = (OffsetDateTime, OffsetDateTime);

/// The first and last instants a range can reach.
pub const FIRST: OffsetDateTime = PrimitiveDateTime::MIN.assume_utc();
pub const LAST: OffsetDateTime = PrimitiveDateTime::MAX.assume_utc();

/// The range a FHIR date text stands for; `None` if it is not one (FHIR's years run from 0001 to 9999, its
/// zones from -14:00 to +14:00).
pub fn range(text: &str) -> Option<Range> {
    let year = digits(text.get(0..4))?.parse::<i32>().ok().filter(|y| *y >= 1)?;
    let month = |s: Option<&str>| Month::try_from(digits(s)?.parse::<u8>().ok()?).ok();
    let midnight = |date: Date| uk_instant(PrimitiveDateTime::new(date, Time::MIDNIGHT));
    match text.len() {
        4 => {
            let start = Date::from_calendar_date(year, Month::January, 1).ok()?;
            let end = Date::from_calendar_date(year + 1, Month::January, 1).ok();
            Some((midnight(start)?, end.and_then(midnight).unwrap_or(LAST)))
        }
        7 if text.as_bytes()[4] == b'-' => {
            let month = month(text.get(5..7))?;
            let start = Date::from_calendar_date(year, month, 1).ok()?;
            let end = match month {
                Month::December => Date::from_calendar_date(year + 1, Month::January, 1).ok(),
                _ => Date::from_calendar_date(year, month.next(), 1).ok(),
            };
            Some((midnight(start)?, end.and_then(midnight).unwrap_or(LAST)))
        }
        10 => {
            let format = time::macros::format_description!("[year]-[month]-[day]");
            let date = Date::parse(text, &format).ok()?;
            Some((midnight(date)?, date.next_day().and_then(midnight).unwrap_or(LAST)))
        }
        _ => date_time(text),
    }
}

/// The day an instant falls on in the UK. Practices' native days are UK days.
pub fn uk_date(instant: OffsetDateTime) -> Date {
    instant.to_offset(uk_offset(instant)).date()
}

/// The instant a UK wall-clock time stands for, in UTC: in the autumn hour the clocks repeat, its first (BST).
pub fn uk_instant(wall: PrimitiveDateTime) -> Option<OffsetDateTime> {
    wall.assume_offset(uk_offsets(wall).0).checked_to_offset(UtcOffset::UTC)
}

/// The UK's offsets for a wall-clock time: one offset, twice, but in the autumn hour the clocks repeat (its
/// first occurrence's, BST, then its second's, GMT). A time they skip in spring reads as the same time after
/// the change (01:30 as 02:30 BST): the "compatible" reading of RFC 5545 and jiff.
fn uk_offsets(wall: PrimitiveDateTime) -> (UtcOffset, UtcOffset) {
    use jiff::tz::AmbiguousOffset;
    let offset = |o: jiff::tz::Offset| UtcOffset::from_whole_seconds(o.seconds()).unwrap_or(UtcOffset::UTC);
    match civil(wall).map(|civil| LONDON.to_ambiguous_timestamp(civil).offset()) {
        Some(AmbiguousOffset::Unambiguous { offset: o }) => (offset(o), offset(o)),
        Some(AmbiguousOffset::Gap { before, .. }) => (offset(before), offset(before)),
        Some(AmbiguousOffset::Fold { before, after }) => (offset(before), offset(after)),
        None => (UtcOffset::UTC, UtcOffset::UTC),
    }
}

/// Text of ASCII digits only.
fn digits(text: Option<&str>) -> Option<&str> {
    text.filter(|s| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()))
}

/// A date-time to the minute or finer, as the range its precision covers:
/// `YYYY-MM-DDThh:mm[:ss[.fff…]][Z|±hh:mm]`. Without a zone, in the autumn hour the UK clocks repeat, both
/// of its occurrences.
fn date_time(text: &str) -> Option<Range> {
    let (date, rest) = (text.get(..10)?, text.get(10..)?);
    let rest = rest.strip_prefix('T')?;
    let (hours_minutes, mut rest) = (rest.get(..5)?, rest.get(5..)?);
    let mut seconds = ":00";
    let mut fraction = "";
    let mut step = Duration::MINUTE;
    if let Some(after) = rest.strip_prefix(':') {
        seconds = rest.get(..3)?;
        rest = after.get(2..)?;
        step = Duration::SECOND;
        if let Some(after) = rest.strip_prefix('.') {
            let length = after.bytes().take_while(u8::is_ascii_digit).count();
            fraction = rest.get(..1 + length)?;
            rest = &after[length..];
            step = Duration::nanoseconds(10_i64.pow(9_u32.saturating_sub(length.min(9) as u32)));
        }
    }
    // No zone: UK civil time. Anything else after the time must be a zone RFC 3339 accepts; a space there is
    // the `+` of an offset that URL decoding turned into one (`…T10:00:00+01:00` sent unencoded).
    let zone = match rest.strip_prefix(' ') {
        Some(offset) => format!("+{offset}"),
        None if rest.is_empty() => "Z".to_string(),
        None => rest.to_string(),
    };
    let full = format!("{date}T{hours_minutes}{seconds}{fraction}{zone}");
    let parsed = OffsetDateTime::parse(&full, &Rfc3339).ok()?;
    if parsed.offset().whole_seconds().unsigned_abs() > 14 * 3600 {
        return None;
    }
    let (first, last) = match rest.is_empty() {
        true => {
            let wall = PrimitiveDateTime::new(parsed.date(), parsed.time());
            let (first, second) = uk_offsets(wall);
            (wall.assume_offset(first), wall.assume_offset(second))
        }
        false => (parsed, parsed),
    };
    let start = first.checked_to_offset(UtcOffset::UTC)?;
    let end = last
        .checked_to_offset(UtcOffset::UTC)?
        .checked_add(step)
        .unwrap_or(LAST);
    Some((start, end))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uk_days_follow_summer_time() {
        // Winter: GMT. Summer: BST, so 23:30 UTC is already the next day. The changes are at 01:00 UTC.
        assert_eq!(uk_date(utc("2026-12-20T23:59:59Z")).to_string(), "2026-12-20");
        assert_eq!(uk_date(utc("2026-06-20T23:30:00Z")).to_string(), "2026-06-21");
        assert_eq!(uk_date(utc("2026-03-29T00:59:59Z")).to_string(), "2026-03-29");
        assert_eq!(uk_date(utc("2026-03-28T23:30:00Z")).to_string(), "2026-03-28");
        assert_eq!(uk_date(utc("2026-10-24T23:30:00Z")).to_string(), "2026-10-25");
        assert_eq!(uk_date(utc("2026-10-25T23:30:00Z")).to_string(), "2026-10-25");
        assert_eq!(uk_date(utc("2026-06-20T23:30:00+05:00")).to_string(), "2026-06-20");
    }

    #[test]
    fn zoneless_values_are_uk_civil_time() {
        let cases = [
            // A summer day is BST's: from 23:00 UTC the day before.
            ("2026-06-21", "2026-06-20T23:00:00Z", "2026-06-21T23:00:00Z"),
            ("2026-06-21T00:30", "2026-06-20T23:30:00Z", "2026-06-20T23:31:00Z"),
            // The change days are 23 and 25 hours long; March ends in BST.
            ("2026-03-29", "2026-03-29T00:00:00Z", "2026-03-29T23:00:00Z"),
            ("2026-10-25", "2026-10-24T23:00:00Z", "2026-10-26T00:00:00Z"),
            ("2026-03", "2026-03-01T00:00:00Z", "2026-03-31T23:00:00Z"),
            // A time the clocks skip is read after the change; one they repeat stands for both occurrences.
            ("2026-03-29T01:30", "2026-03-29T01:30:00Z", "2026-03-29T01:31:00Z"),
            ("2026-10-25T01:30", "2026-10-25T00:30:00Z", "2026-10-25T01:31:00Z"),
            // Past rules, from the tz database: British Standard Time kept BST all winter (1968-71), and until
            // 1995 summer time ended on the day after the fourth Saturday of October.
            ("1970-01-15", "1970-01-14T23:00:00Z", "1970-01-15T23:00:00Z"),
            ("1995-10-25", "1995-10-25T00:00:00Z", "1995-10-26T00:00:00Z"),
            // Before 1970, with a fraction (instants before the epoch round toward zero in jiff).
            (
                "1965-01-01T00:00:00.5",
                "1965-01-01T00:00:00.5Z",
                "1965-01-01T00:00:00.6Z",
            ),
            (
                "1965-07-01T10:00:00.5",
                "1965-07-01T09:00:00.5Z",
                "1965-07-01T09:00:00.6Z",
            ),
            // A zone given is kept; an offset's `+` that URL decoding made a space is read as the `+`.
            ("2026-06-21T00:30Z", "2026-06-21T00:30:00Z", "2026-06-21T00:31:00Z"),
            ("2026-06-21T10:00 01:00", "2026-06-21T09:00:00Z", "2026-06-21T09:01:00Z"),
        ];
        for (text, start, end) in cases {
            assert_eq!(range(text), Some((utc(start), utc(end))), "{text}");
        }
    }

    fn utc(text: &str) -> OffsetDateTime {
        OffsetDateTime::parse(text, &Rfc3339).unwrap()
    }

    #[test]
    fn every_precision_stands_for_its_whole_span() {
        let cases = [
            ("2024", "2024-01-01T00:00:00Z", "2025-01-01T00:00:00Z"),
            ("2024-02", "2024-02-01T00:00:00Z", "2024-03-01T00:00:00Z"),
            ("2024-12", "2024-12-01T00:00:00Z", "2025-01-01T00:00:00Z"),
            ("2024-02-29", "2024-02-29T00:00:00Z", "2024-03-01T00:00:00Z"),
            ("2024-03-05T10:00Z", "2024-03-05T10:00:00Z", "2024-03-05T10:01:00Z"),
            ("2024-03-05T10:00", "2024-03-05T10:00:00Z", "2024-03-05T10:01:00Z"),
            ("2024-03-05T10:00:30", "2024-03-05T10:00:30Z", "2024-03-05T10:00:31Z"),
            (
                "2024-03-05T10:00:30+01:00",
                "2024-03-05T09:00:30Z",
                "2024-03-05T09:00:31Z",
            ),
            (
                "2024-03-05T10:00:30.25Z",
                "2024-03-05T10:00:30.25Z",
                "2024-03-05T10:00:30.26Z",
            ),
        ];
        for (text, start, end) in cases {
            assert_eq!(range(text), Some((utc(start), utc(end))), "{text}");
        }
    }

    #[test]
    fn the_last_dates_end_at_the_last_instant_rather_than_overflow() {
        for text in [
            "9999",
            "9999-12",
            "9999-12-31",
            "9999-12-31T23:59:59Z",
            "9999-12-31T23:59Z",
        ] {
            let (start, end) = range(text).unwrap_or_else(|| panic!("{text}"));
            assert!(start < end && end <= LAST, "{text}");
        }
        // Past year 9999 once in UTC: not a date this server can hold.
        assert_eq!(range("9999-12-31T23:59:59-05:00"), None);
        assert!(range("-001").is_none());
    }

    #[test]
    fn the_widest_zones_are_dates() {
        assert!(range("2024-03-05T10:00:00+14:00").is_some());
        assert!(range("2024-03-05T10:00:00-14:00").is_some());
        assert!(range("0001").is_some());
    }

    #[test]
    fn what_is_not_a_date_is_refused() {
        for text in [
            "",
            "20",
            "2024-13",
            "2024-02-30",
            "2024-1-01",
            "2024-03-05T",
            "2024-03-05T10",
            "2024-03-05T10:00:6",
            "2024-03-05T10:00:00+1",
            "2024-03-05T10:00:00 junk",
            "abcd",
            "2024-03-05x10:00:00Z",
            // FHIR's years start at 0001 and its zones end at ±14:00.
            "0000",
            "0000-01-01",
            "0000-01-01T00:00:00Z",
            "2024-03-05T10:00:00+14:01",
            "2024-03-05T10:00:00-15:00",
        ] {
            assert_eq!(range(text), None, "{text}");
        }
    }
}
