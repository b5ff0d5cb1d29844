//! Dates with partial precision, and the UK civil offset for practice-local times.

use serde::{Serialize, Serializer};
use time::{Date, Month, OffsetDateTime, PrimitiveDateTime, Time, UtcOffset};

/// A date known to year, year-month or full precision. Serialises as `2019`, `2019-05` or `2019-05-14`,
/// never padded, which is also the FHIR `date` form.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum PartialDate {
    Year(i32),
    YearMonth(i32, Month),
    Day(Date),
}

/// How precise a [`PartialDate`] is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Precision {
    Year,
    YearMonth,
    Day,
}

impl PartialDate {
    /// The precision.
    pub fn precision(&self) -> Precision {
        match self {
            PartialDate::Year(_) => Precision::Year,
            PartialDate::YearMonth(..) => Precision::YearMonth,
            PartialDate::Day(_) => Precision::Day,
        }
    }

    /// The first day the date can denote (what suppliers that pad dates send).
    pub fn first_day(&self) -> Date {
        match *self {
            PartialDate::Year(y) => Date::from_calendar_date(y, Month::January, 1).unwrap_or(Date::MIN),
            PartialDate::YearMonth(y, m) => Date::from_calendar_date(y, m, 1).unwrap_or(Date::MIN),
            PartialDate::Day(d) => d,
        }
    }

    /// Reduce a full date to the given precision.
    pub fn with_precision(date: Date, precision: Precision) -> PartialDate {
        match precision {
            Precision::Year => PartialDate::Year(date.year()),
            Precision::YearMonth => PartialDate::YearMonth(date.year(), date.month()),
            Precision::Day => PartialDate::Day(date),
        }
    }
}

impl std::fmt::Display for PartialDate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match *self {
            PartialDate::Year(y) => write!(f, "{y:04}"),
            PartialDate::YearMonth(y, m) => write!(f, "{y:04}-{:02}", m as u8),
            PartialDate::Day(d) => {
                write!(f, "{:04}-{:02}-{:02}", d.year(), d.month() as u8, d.day())
            }
        }
    }
}

impl Serialize for PartialDate {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// The UK's civil time (GMT, BST in summer, and the past rules) from the tz database, Europe/London alone
/// compiled in, so neither the simulators nor the proxy need tzdata where they run.
pub static LONDON: jiff::tz::TimeZone = jiff::tz::get!("Europe/London");

/// The UK civil offset (GMT or BST) at an instant.
pub fn uk_offset_at(instant: OffsetDateTime) -> UtcOffset {
    let seconds = jiff::Timestamp::from_second(instant.unix_timestamp())
        .map(|at| LONDON.to_offset(at).seconds())
        .unwrap_or(0);
    UtcOffset::from_whole_seconds(seconds).unwrap_or(UtcOffset::UTC)
}

/// A wall-clock time, to the second, as jiff reads one (none past the years jiff holds).
pub fn civil(wall: PrimitiveDateTime) -> Option<jiff::civil::DateTime> {
    let narrow = |n: u8| i8::try_from(n).ok();
    jiff::civil::DateTime::new(
        i16::try_from(wall.year()).ok()?,
        narrow(u8::from(wall.month()))?,
        narrow(wall.day())?,
        narrow(wall.hour())?,
        narrow(wall.minute())?,
        narrow(wall.second())?,
        0,
    )
    .ok()
}

/// A UK wall-clock time on a date, as an instant carrying the UK offset of that moment. A time the clocks
/// repeat in autumn is its first occurrence (BST); one they skip in spring reads as the same time after the
/// change (01:30 as 02:30 BST): the "compatible" reading of RFC 5545 and jiff.
pub fn uk_local(date: Date, time: Time) -> OffsetDateTime {
    let wall = PrimitiveDateTime::new(date, time);
    let instant = civil(wall)
        .and_then(|civil| LONDON.to_ambiguous_timestamp(civil).compatible().ok())
        .and_then(|at| OffsetDateTime::from_unix_timestamp(at.as_second()).ok());
    match instant {
        Some(at) => at.to_offset(uk_offset_at(at)),
        None => wall.assume_utc(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::{date, datetime, time};

    #[test]
    fn partial_dates_print_without_padding() {
        assert_eq!(PartialDate::Year(1998).to_string(), "1998");
        assert_eq!(PartialDate::YearMonth(2009, Month::June).to_string(), "2009-06");
        assert_eq!(PartialDate::Day(date!(2019 - 05 - 14)).to_string(), "2019-05-14");
        assert_eq!(
            PartialDate::YearMonth(2009, Month::June).first_day(),
            date!(2009 - 06 - 01)
        );
    }

    #[test]
    fn uk_offset_follows_summer_time() {
        assert_eq!(uk_offset_at(datetime!(2025-01-15 12:00 UTC)), UtcOffset::UTC);
        assert_eq!(uk_offset_at(datetime!(2025-03-30 00:59 UTC)), UtcOffset::UTC);
        assert_eq!(uk_offset_at(datetime!(2025-03-30 01:00 UTC)).whole_hours(), 1);
        assert_eq!(uk_offset_at(datetime!(2025-10-26 00:59 UTC)).whole_hours(), 1);
        assert_eq!(uk_offset_at(datetime!(2025-10-26 01:00 UTC)), UtcOffset::UTC);
        let t = uk_local(date!(2025 - 07 - 01), time!(09:30));
        assert_eq!(t.to_offset(UtcOffset::UTC).hour(), 8);
        assert_eq!((t.hour(), t.offset().whole_hours()), (9, 1));
        // The rules of the day: 1995's summer time ended on 22 October, the fourth Sunday.
        assert_eq!(uk_offset_at(datetime!(1995-10-25 12:00 UTC)), UtcOffset::UTC);
        // A time the clocks skip reads as the same time after the change; one they repeat, its first.
        assert_eq!(
            uk_local(date!(2025 - 03 - 30), time!(01:30)),
            datetime!(2025-03-30 02:30 +1)
        );
        assert_eq!(
            uk_local(date!(2025 - 10 - 26), time!(01:30)),
            datetime!(2025-10-26 01:30 +1)
        );
    }
}
