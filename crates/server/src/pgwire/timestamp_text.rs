//! `timestamp` and `timestamptz` values on the wire, written as Postgres writes them.
//!
//! Text is DateStyle ISO: `YYYY-MM-DD HH:MM:SS`, then `.ffffff` without trailing zeros unless
//! the fraction is zero, then for `timestamptz` the offset as `+HH`, `+HH:MM` or `+HH:MM:SS`,
//! then ` BC` for years before 1. Binary is µs since 2000-01-01.
//!
//! A result column's values mostly share their date and their zone offset with the previous
//! row (a series is read in time order), so [`TimestampText`] keeps both: the calendar and
//! time zone arithmetic then runs about once a day and once an hour of data, not per value.

use std::error::Error;
use std::fmt;

use bytes::{BufMut, BytesMut};
use chrono::{DateTime, Datelike, NaiveDate, Offset, TimeZone};
use datafusion::arrow::array::timezone::Tz;
use datafusion::arrow::datatypes::TimeUnit;

/// µs from 1970-01-01 to 2000-01-01, Postgres' epoch for binary timestamps.
const POSTGRES_EPOCH_MICROS: i64 = 946_684_800_000_000;
const MICROS_PER_DAY: i64 = 86_400_000_000;
const MICROS_PER_HOUR: i64 = 3_600_000_000;
/// `NaiveDate::num_days_from_ce` of 1970-01-01.
const UNIX_EPOCH_DAYS_FROM_CE: i64 = 719_163;

/// A timestamp outside what the calendar conversion can represent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct TimestampOutOfRange;

impl fmt::Display for TimestampOutOfRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("timestamp out of range")
    }
}

impl Error for TimestampOutOfRange {}

/// µs since 1970 of `value` in `unit`; sub-µs digits are dropped (Postgres keeps µs), rounding
/// down before 1970 as chrono and Postgres do.
pub(crate) fn micros_of(value: i64, unit: TimeUnit) -> Result<i64, TimestampOutOfRange> {
    match unit {
        TimeUnit::Second => value.checked_mul(1_000_000),
        TimeUnit::Millisecond => value.checked_mul(1_000),
        TimeUnit::Microsecond => Some(value),
        TimeUnit::Nanosecond => Some(value.div_euclid(1_000)),
    }
    .ok_or(TimestampOutOfRange)
}

/// The binary form of the instant `micros` µs after 1970: µs since 2000-01-01.
pub(crate) fn since_postgres_epoch(micros: i64) -> Result<i64, TimestampOutOfRange> {
    micros.checked_sub(POSTGRES_EPOCH_MICROS).ok_or(TimestampOutOfRange)
}

/// Writes one column's timestamps as text.
pub(crate) struct TimestampText {
    /// The display zone of a `timestamptz`; `None` for a `timestamp` (no offset is shown).
    zone: Option<Tz>,
    /// µs `[start, end)` over which `zone`'s offset is known to be `offset` seconds.
    offset_span: Option<(i64, i64, i32)>,
    date: Option<CachedDate>,
}

/// The text of one local day's date, `YYYY-MM-DD`.
struct CachedDate {
    /// Days since 1970-01-01, local time.
    day: i64,
    text: [u8; 16],
    length: usize,
    before_year_1: bool,
}

impl TimestampText {
    pub(crate) fn new(zone: Option<Tz>) -> TimestampText {
        TimestampText { zone, offset_span: None, date: None }
    }

    /// Appends the instant `micros` µs after 1970 (a wall time, for a `timestamp`).
    pub(crate) fn write(
        &mut self,
        out: &mut BytesMut,
        micros: i64,
    ) -> Result<(), TimestampOutOfRange> {
        let offset = match self.zone {
            None => None,
            Some(zone) => Some(self.offset_at(zone, micros)?),
        };
        write_iso(out, micros, offset, &mut self.date)
    }

    /// The offset of the zone at `micros`, in seconds.
    fn offset_at(&mut self, zone: Tz, micros: i64) -> Result<i32, TimestampOutOfRange> {
        if let Some((start, end, offset)) = self.offset_span {
            if (start..end).contains(&micros) {
                return Ok(offset);
            }
        }
        let offset = zone_offset(zone, micros)?;
        // No zone changes its offset twice within an hour: if both ends of this hour have
        // the same offset, all of it has.
        let hour_start = micros - micros.rem_euclid(MICROS_PER_HOUR);
        let hour_end = hour_start.saturating_add(MICROS_PER_HOUR);
        if zone_offset(zone, hour_start) == Ok(offset)
            && zone_offset(zone, hour_end - 1) == Ok(offset)
        {
            self.offset_span = Some((hour_start, hour_end, offset));
        }
        Ok(offset)
    }
}

fn zone_offset(zone: Tz, micros: i64) -> Result<i32, TimestampOutOfRange> {
    let utc = DateTime::from_timestamp_micros(micros).ok_or(TimestampOutOfRange)?;
    Ok(zone.offset_from_utc_datetime(&utc.naive_utc()).fix().local_minus_utc())
}

/// Writes the instant `micros` at `offset_seconds` (none for a `timestamp`) in ISO style;
/// `date` is the date text of the previous value's day, reused when the day is the same.
fn write_iso(
    out: &mut BytesMut,
    micros: i64,
    offset_seconds: Option<i32>,
    date: &mut Option<CachedDate>,
) -> Result<(), TimestampOutOfRange> {
    let offset = offset_seconds.unwrap_or(0);
    let local = micros.checked_add(i64::from(offset) * 1_000_000).ok_or(TimestampOutOfRange)?;
    let day = local.div_euclid(MICROS_PER_DAY);
    let in_day = local.rem_euclid(MICROS_PER_DAY);
    let cached = match date {
        Some(cached) if cached.day == day => cached,
        _ => date.insert(date_text(day)?),
    };
    out.extend_from_slice(&cached.text[..cached.length]);
    let seconds = (in_day / 1_000_000) as u32;
    let (hours, minutes, seconds) = (seconds / 3600, seconds / 60 % 60, seconds % 60);
    out.extend_from_slice(&[
        b' ',
        b'0' + (hours / 10) as u8,
        b'0' + (hours % 10) as u8,
        b':',
        b'0' + (minutes / 10) as u8,
        b'0' + (minutes % 10) as u8,
        b':',
        b'0' + (seconds / 10) as u8,
        b'0' + (seconds % 10) as u8,
    ]);
    let mut fraction = in_day % 1_000_000;
    if fraction != 0 {
        let mut digits = 6;
        while fraction % 10 == 0 {
            fraction /= 10;
            digits -= 1;
        }
        out.put_u8(b'.');
        push_number(out, fraction as u64, digits);
    }
    if offset_seconds.is_some() {
        out.put_u8(if offset < 0 { b'-' } else { b'+' });
        let offset = offset.unsigned_abs();
        push_number(out, u64::from(offset / 3600), 2);
        if !offset.is_multiple_of(3600) {
            out.put_u8(b':');
            push_number(out, u64::from(offset / 60 % 60), 2);
            if !offset.is_multiple_of(60) {
                out.put_u8(b':');
                push_number(out, u64::from(offset % 60), 2);
            }
        }
    }
    if cached.before_year_1 {
        out.extend_from_slice(b" BC");
    }
    Ok(())
}

/// The date text of `day` days after 1970-01-01.
fn date_text(day: i64) -> Result<CachedDate, TimestampOutOfRange> {
    let date = i32::try_from(day + UNIX_EPOCH_DAYS_FROM_CE)
        .ok()
        .and_then(NaiveDate::from_num_days_from_ce_opt)
        .ok_or(TimestampOutOfRange)?;
    let year = date.year();
    // Postgres has no year 0: 1 BC is year 0 in chrono's proleptic calendar.
    let shown_year = if year >= 1 { year } else { 1 - year };
    let mut text = BytesMut::with_capacity(16);
    push_number(&mut text, u64::from(shown_year.unsigned_abs()), 4);
    text.put_u8(b'-');
    push_number(&mut text, u64::from(date.month()), 2);
    text.put_u8(b'-');
    push_number(&mut text, u64::from(date.day()), 2);
    let mut cached = CachedDate { day, text: [0; 16], length: text.len(), before_year_1: year < 1 };
    cached.text[..text.len()].copy_from_slice(&text);
    Ok(cached)
}

/// Writes `value` in decimal, zero-padded to at least `min_digits`.
fn push_number(out: &mut BytesMut, value: u64, min_digits: usize) {
    let mut digits = [b'0'; 20];
    let mut start = digits.len();
    let mut rest = value;
    loop {
        start -= 1;
        digits[start] = b'0' + (rest % 10) as u8;
        rest /= 10;
        if rest == 0 {
            break;
        }
    }
    let start = start.min(digits.len() - min_digits.min(digits.len()));
    out.extend_from_slice(&digits[start..]);
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{FixedOffset, NaiveDateTime};
    use proptest::prelude::*;
    use std::str::FromStr;

    fn text(micros: i64, offset_seconds: Option<i32>) -> String {
        let mut out = BytesMut::new();
        write_iso(&mut out, micros, offset_seconds, &mut None).expect("in range");
        String::from_utf8(out.to_vec()).expect("ascii")
    }

    fn zoned(writer: &mut TimestampText, micros: i64) -> String {
        let mut out = BytesMut::new();
        writer.write(&mut out, micros).expect("in range");
        String::from_utf8(out.to_vec()).expect("ascii")
    }

    fn micros(rfc3339: &str) -> i64 {
        DateTime::parse_from_rfc3339(rfc3339).expect("valid").timestamp_micros()
    }

    #[test]
    fn prints_as_postgres_does() {
        // Each expected string is what PostgreSQL 16 prints for the value.
        assert_eq!(text(micros("2026-03-04T00:00:00Z"), Some(0)), "2026-03-04 00:00:00+00");
        assert_eq!(text(micros("2026-03-04T00:00:00.5Z"), Some(0)), "2026-03-04 00:00:00.5+00");
        assert_eq!(
            text(micros("2026-03-04T23:59:59.000001Z"), Some(0)),
            "2026-03-04 23:59:59.000001+00"
        );
        assert_eq!(text(micros("2026-03-04T00:00:00Z"), Some(19_800)), "2026-03-04 05:30:00+05:30");
        assert_eq!(text(micros("2026-03-04T12:00:00Z"), Some(-5 * 3600)), "2026-03-04 07:00:00-05");
        assert_eq!(
            text(micros("1883-11-18T12:00:00Z"), Some(-17_762)),
            "1883-11-18 07:03:58-04:56:02"
        );
        assert_eq!(text(micros("1969-12-31T23:59:59.9Z"), None), "1969-12-31 23:59:59.9");
        assert_eq!(text(micros("0001-01-01T00:00:00Z"), Some(0)), "0001-01-01 00:00:00+00");
        assert_eq!(text(micros("0000-12-31T00:00:00Z"), Some(0)), "0001-12-31 00:00:00+00 BC");
        let year_10000 =
            NaiveDate::from_ymd_opt(10_000, 1, 1).expect("date").and_time(Default::default());
        assert_eq!(text(year_10000.and_utc().timestamp_micros(), None), "10000-01-01 00:00:00");
    }

    #[test]
    fn binary_counts_from_2000() {
        assert_eq!(since_postgres_epoch(micros("2000-01-01T00:00:01Z")), Ok(1_000_000));
        assert_eq!(since_postgres_epoch(i64::MIN), Err(TimestampOutOfRange));
    }

    #[test]
    fn units() {
        let second = micros("2026-01-15T12:00:00Z") / 1_000_000;
        assert_eq!(
            micros_of(second * 1_000_000_000 + 1_999, TimeUnit::Nanosecond),
            Ok(second * 1_000_000 + 1)
        );
        assert_eq!(micros_of(second * 1000, TimeUnit::Millisecond), Ok(second * 1_000_000));
        assert!(micros_of(i64::MAX, TimeUnit::Second).is_err());
        // Before 1970, nanoseconds round down to the µs (as chrono and Postgres do).
        assert_eq!(micros_of(-1, TimeUnit::Nanosecond), Ok(-1));
    }

    #[test]
    fn zones_change_offset_across_daylight_saving() {
        let new_york = Tz::from_str("America/New_York").expect("zone");
        let mut writer = TimestampText::new(Some(new_york));
        assert_eq!(zoned(&mut writer, micros("2026-01-15T12:00:00Z")), "2026-01-15 07:00:00-05");
        assert_eq!(zoned(&mut writer, micros("2026-07-15T12:00:00Z")), "2026-07-15 08:00:00-04");
        // Spring forward at 07:00 UTC on 2026-03-08, second by second through the change.
        assert_eq!(zoned(&mut writer, micros("2026-03-08T06:59:59Z")), "2026-03-08 01:59:59-05");
        assert_eq!(zoned(&mut writer, micros("2026-03-08T07:00:00Z")), "2026-03-08 03:00:00-04");
        // Before 1883-11-18 17:00 UTC New York kept local mean time.
        assert_eq!(
            zoned(&mut writer, micros("1883-11-18T12:00:00Z")),
            "1883-11-18 07:03:58-04:56:02"
        );
        let kolkata = Tz::from_str("Asia/Kolkata").expect("zone");
        let mut writer = TimestampText::new(Some(kolkata));
        assert_eq!(zoned(&mut writer, micros("2026-03-04T00:00:00Z")), "2026-03-04 05:30:00+05:30");
    }

    proptest! {
        /// Whatever the instant and offset, the text reads back (chrono's parser) as the same
        /// instant, and a `timestamp` reads back as the same wall time.
        #[test]
        fn text_reads_back(
            micros in -62_135_596_800_000_000_i64..253_402_300_799_999_999,
            offset_minutes in -15 * 60..15 * 60_i32,
        ) {
            let with_zone = text(micros, Some(offset_minutes * 60));
            let parsed = DateTime::<FixedOffset>::parse_from_str(
                &with_zone.replace(' ', "T"),
                "%Y-%m-%dT%H:%M:%S%.f%#z",
            );
            // The local time may fall into year 0 or 10000 at the range's ends.
            if !with_zone.ends_with(" BC") && !with_zone.starts_with("10000") {
                let parsed = parsed.map_err(|e| TestCaseError::fail(format!("{with_zone}: {e}")))?;
                prop_assert_eq!(parsed.timestamp_micros(), micros, "{}", with_zone);
            }
            let wall = text(micros, None);
            let parsed = NaiveDateTime::parse_from_str(&wall, "%Y-%m-%d %H:%M:%S%.f")
                .map_err(|e| TestCaseError::fail(format!("{wall}: {e}")))?;
            prop_assert_eq!(parsed.and_utc().timestamp_micros(), micros);
        }

        /// One writer over a sequence (what a column is) prints each value as a fresh writer
        /// would: the remembered date and offset never leak into the next value.
        #[test]
        fn remembering_changes_nothing(
            start in -5_000_000_000_000_000_i64..5_000_000_000_000_000,
            steps in proptest::collection::vec(-7_200_000_000_i64..7_200_000_000, 1..200),
            zone in proptest::sample::select(vec!["America/New_York", "Europe/London", "Australia/Lord_Howe", "Asia/Kolkata", "+03:00", "UTC"]),
        ) {
            let zone = Tz::from_str(zone).expect("zone");
            let mut zoned_column = TimestampText::new(Some(zone));
            let mut wall_column = TimestampText::new(None);
            let mut micros = start;
            for step in steps {
                micros += step;
                prop_assert_eq!(zoned(&mut zoned_column, micros), zoned(&mut TimestampText::new(Some(zone)), micros));
                prop_assert_eq!(zoned(&mut wall_column, micros), zoned(&mut TimestampText::new(None), micros));
            }
        }
    }
}
