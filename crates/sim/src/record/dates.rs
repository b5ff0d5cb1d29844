//! Dates with partial precision, and the UK civil offset for practice-local times.

use serde::{Serialize, Serializer};
use time::{Date, Month, OffsetDateTime, PrimitiveDateTime, Time, UtcOffset, Weekday};

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

/// The last Sunday of a month (for the UK summer-time rule).
fn last_sunday(year: i32, month: Month) -> Date {
    let next = match month {
        Month::December => Date::from_calendar_date(year + 1, Month::January, 1),
        m => Date::from_calendar_date(year, m.next(), 1),
    };
    let mut d = next.map(|n| n.previous_day().unwrap_or(n)).unwrap_or(Date::MIN);
    while d.weekday() != Weekday::Sunday {
        d = d.previous_day().unwrap_or(d);
    }
    d
}

/// The UK civil offset (GMT or BST) at a UTC instant: BST from 01:00 UTC on the last Sunday of March to
/// 01:00 UTC on the last Sunday of October. Enough for practice-local slot times without a tz database.
pub fn uk_offset_at(utc: OffsetDateTime) -> UtcOffset {
    let year = utc.year();
    let one_am = Time::from_hms(1, 0, 0).unwrap_or(Time::MIDNIGHT);
    let start = PrimitiveDateTime::new(last_sunday(year, Month::March), one_am).assume_utc();
    let end = PrimitiveDateTime::new(last_sunday(year, Month::October), one_am).assume_utc();
    if utc >= start && utc < end {
        UtcOffset::from_hms(1, 0, 0).unwrap_or(UtcOffset::UTC)
    } else {
        UtcOffset::UTC
    }
}

/// A UK wall-clock time on a date, as an instant carrying the UK offset of that moment.
pub fn uk_local(date: Date, time: Time) -> OffsetDateTime {
    // Guess with the offset at noon UTC that day; wall-clock slot times never fall in the 01:00-02:00 change.
    let noon = PrimitiveDateTime::new(date, Time::from_hms(12, 0, 0).unwrap_or(time)).assume_utc();
    let offset = uk_offset_at(noon);
    PrimitiveDateTime::new(date, time).assume_offset(offset)
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
    }
}
