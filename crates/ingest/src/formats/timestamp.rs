//! Timestamps in payloads: numbers in an inferred unit, numeric strings, RFC 3339 strings.
//!
//! # The magnitude rule
//!
//! A numeric timestamp `t` (JSON integer, JSON float, or numeric string) carries no unit, so
//! the unit is inferred from its magnitude:
//!
//! | `|t|`                      | unit          |
//! |----------------------------|---------------|
//! | `|t| < 1e11`               | seconds       |
//! | `1e11 <= |t| < 1e14`       | milliseconds  |
//! | `1e14 <= |t| < 1e17`       | microseconds  |
//! | `|t| >= 1e17`              | nanoseconds   |
//!
//! Every boundary is 1e8 seconds (1973-03-03) in the larger unit and 1e11 seconds
//! (year 5138) in the smaller one, so any instant from 1973 to 2262 (the end of `i64`
//! nanoseconds) is read correctly in all four units. The price: seconds before 1973 read as
//! seconds only down to 0, a millisecond timestamp before 1973-03-03 reads as seconds, and so
//! on — such points fall outside the default clock window anyway.
//!
//! Fractions follow the same rule (`1609459200.5` is seconds, `1609459200123.456`
//! milliseconds) and are converted exactly from their decimal text: floats go through their
//! shortest round-trip decimal representation, so `1609459200.123` becomes
//! `1_609_459_200_123_000_000` ns, not a binary-rounding neighbour. Digits below one
//! nanosecond are rounded to the nearest nanosecond, ties away from zero.
//!
//! # RFC 3339
//!
//! `YYYY-MM-DD(T|t| )hh:mm:ss[.f{1,9}](Z|z|±hh:mm)`: the offset is required (a local time
//! without one is ambiguous), up to 9 fractional digits, calendar-checked (month 13 and
//! February 30 are rejected; February 29 only in leap years). A leap second `:60` is accepted
//! and stored as `:59.999999999` of the same minute, so it sorts before the next minute.
//! Instants outside 1677-09-21..2262-04-11 (the `i64` nanosecond range) are out of range.

use std::fmt::Write as _;

/// Why a timestamp could not be converted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimestampError {
    /// Not a timestamp at all, or an impossible date; `detail` says which part.
    Invalid { detail: &'static str },
    /// A real instant that `i64` nanoseconds cannot hold; `time_ns` is saturated to
    /// `i64::MIN` or `i64::MAX`.
    OutOfRange { time_ns: i64 },
}

const NANOS_PER_SEC: i64 = 1_000_000_000;

/// Converts an integer timestamp to nanoseconds by the magnitude rule (see the module docs).
pub fn timestamp_from_int(t: i64) -> Result<i64, TimestampError> {
    let nanos_per_unit = nanos_per_unit_for_integer(t.unsigned_abs());
    t.checked_mul(nanos_per_unit).ok_or(TimestampError::OutOfRange { time_ns: saturated(t < 0) })
}

/// Converts an unsigned integer timestamp (JSON numbers above `i64::MAX`) to nanoseconds.
pub fn timestamp_from_u64(t: u64) -> Result<i64, TimestampError> {
    match i64::try_from(t) {
        Ok(t) => timestamp_from_int(t),
        Err(_) => Err(TimestampError::OutOfRange { time_ns: i64::MAX }),
    }
}

/// Converts a float timestamp (fractional seconds, milliseconds, ...) to nanoseconds by the
/// magnitude rule, exactly from its shortest decimal representation.
pub fn timestamp_from_f64(t: f64) -> Result<i64, TimestampError> {
    if !t.is_finite() {
        return Err(TimestampError::Invalid { detail: "timestamp is not finite" });
    }
    let mut text = StackText::default();
    // LowerExp of an f64 is its shortest round-trip representation, at most ~25 bytes.
    if write!(text, "{t:e}").is_err() {
        return Err(TimestampError::Invalid { detail: "timestamp cannot be formatted" });
    }
    match Decimal::parse(text.as_str()) {
        Some(decimal) => decimal.to_timestamp_ns(),
        None => Err(TimestampError::Invalid { detail: "timestamp cannot be formatted" }),
    }
}

/// Converts a string timestamp: a decimal number (`"1609459200"`, `"1.6094592e9"`, by the
/// magnitude rule) or an RFC 3339 date-time. Surrounding ASCII whitespace is ignored.
pub fn timestamp_from_str(text: &str) -> Result<i64, TimestampError> {
    let text = text.trim_ascii();
    if text.is_empty() {
        return Err(TimestampError::Invalid { detail: "empty timestamp" });
    }
    match Decimal::parse(text) {
        Some(decimal) => decimal.to_timestamp_ns(),
        None => parse_rfc3339(text),
    }
}

/// Parses an RFC 3339 date-time to nanoseconds since the epoch (see the module docs for the
/// accepted grammar). Does not trim whitespace.
pub fn parse_rfc3339(text: &str) -> Result<i64, TimestampError> {
    let invalid = |detail| Err(TimestampError::Invalid { detail });
    let bytes = text.as_bytes();
    let mut cursor = ByteCursor { bytes, pos: 0 };
    let Some(year) = cursor.digits(4) else { return invalid("expected a 4-digit year") };
    if !cursor.eat(b'-') {
        return invalid("expected '-' after the year");
    }
    let Some(month) = cursor.digits(2) else { return invalid("expected a 2-digit month") };
    if !cursor.eat(b'-') {
        return invalid("expected '-' after the month");
    }
    let Some(day) = cursor.digits(2) else { return invalid("expected a 2-digit day") };
    if !(cursor.eat(b'T') || cursor.eat(b't') || cursor.eat(b' ')) {
        return invalid("expected 'T' or ' ' between date and time");
    }
    let Some(hour) = cursor.digits(2) else { return invalid("expected a 2-digit hour") };
    if !cursor.eat(b':') {
        return invalid("expected ':' after the hour");
    }
    let Some(minute) = cursor.digits(2) else { return invalid("expected 2-digit minutes") };
    if !cursor.eat(b':') {
        return invalid("expected ':' after the minutes");
    }
    let Some(mut second) = cursor.digits(2) else { return invalid("expected 2-digit seconds") };
    let mut fraction_ns: i64 = 0;
    if cursor.eat(b'.') {
        let start = cursor.pos;
        while cursor.peek().is_some_and(|b| b.is_ascii_digit()) {
            cursor.pos += 1;
        }
        let digits = &bytes[start..cursor.pos];
        if digits.is_empty() {
            return invalid("expected digits after the decimal point");
        }
        if digits.len() > 9 {
            return invalid("more than 9 fractional digits");
        }
        for &digit in digits {
            fraction_ns = fraction_ns * 10 + i64::from(digit - b'0');
        }
        for _ in digits.len()..9 {
            fraction_ns *= 10;
        }
    }
    let offset_secs: i64 = match cursor.next() {
        Some(b'Z' | b'z') => 0,
        Some(sign @ (b'+' | b'-')) => {
            let Some(offset_hours) = cursor.digits(2) else {
                return invalid("expected a 2-digit offset hour");
            };
            if !cursor.eat(b':') {
                return invalid("expected ':' in the UTC offset");
            }
            let Some(offset_minutes) = cursor.digits(2) else {
                return invalid("expected 2-digit offset minutes");
            };
            if offset_hours > 23 || offset_minutes > 59 {
                return invalid("UTC offset out of range");
            }
            let magnitude = offset_hours * 3600 + offset_minutes * 60;
            if sign == b'-' {
                -magnitude
            } else {
                magnitude
            }
        }
        Some(_) => return invalid("expected 'Z' or a UTC offset like +02:00"),
        None => return invalid("missing UTC offset ('Z' or +hh:mm)"),
    };
    if cursor.pos != bytes.len() {
        return invalid("unexpected characters after the date-time");
    }
    if !(1..=12).contains(&month) {
        return invalid("month out of range");
    }
    if day < 1 || day > days_in_month(year, month) {
        return invalid("day out of range for the month");
    }
    if hour > 23 {
        return invalid("hour out of range");
    }
    if minute > 59 {
        return invalid("minute out of range");
    }
    if second > 60 {
        return invalid("second out of range");
    }
    if second == 60 {
        second = 59;
        fraction_ns = NANOS_PER_SEC - 1;
    }
    let seconds = days_from_civil(year, month, day) * 86_400 + hour * 3600 + minute * 60 + second
        - offset_secs;
    let nanos = i128::from(seconds) * i128::from(NANOS_PER_SEC) + i128::from(fraction_ns);
    i64::try_from(nanos).map_err(|_| TimestampError::OutOfRange { time_ns: saturated(nanos < 0) })
}

/// Nanoseconds per unit for an integer of this magnitude (the module's table).
fn nanos_per_unit_for_integer(magnitude: u64) -> i64 {
    if magnitude < 100_000_000_000 {
        NANOS_PER_SEC
    } else if magnitude < 100_000_000_000_000 {
        1_000_000
    } else if magnitude < 100_000_000_000_000_000 {
        1_000
    } else {
        1
    }
}

fn saturated(negative: bool) -> i64 {
    if negative {
        i64::MIN
    } else {
        i64::MAX
    }
}

fn is_leap_year(year: i64) -> bool {
    year % 4 == 0 && (year % 100 != 0 || year % 400 == 0)
}

fn days_in_month(year: i64, month: i64) -> i64 {
    match month {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if is_leap_year(year) => 29,
        2 => 28,
        _ => 0,
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's `days_from_civil`).
pub(crate) fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let year_of_era = year - era * 400;
    let month_from_march = (month + 9) % 12;
    let day_of_year = (153 * month_from_march + 2) / 5 + day - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}

struct ByteCursor<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl ByteCursor<'_> {
    fn peek(&self) -> Option<u8> {
        self.bytes.get(self.pos).copied()
    }

    fn next(&mut self) -> Option<u8> {
        let byte = self.peek()?;
        self.pos += 1;
        Some(byte)
    }

    fn eat(&mut self, expected: u8) -> bool {
        if self.peek() == Some(expected) {
            self.pos += 1;
            return true;
        }
        false
    }

    /// Exactly `count` ASCII digits as a number.
    fn digits(&mut self, count: usize) -> Option<i64> {
        let digits = self.bytes.get(self.pos..self.pos + count)?;
        let mut value = 0i64;
        for &digit in digits {
            if !digit.is_ascii_digit() {
                return None;
            }
            value = value * 10 + i64::from(digit - b'0');
        }
        self.pos += count;
        Some(value)
    }
}

/// An exact decimal `±mantissa × 10^exponent`, as written in the text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Decimal {
    negative: bool,
    /// At most 38 significant digits; further digits only shift the exponent (integer part)
    /// or are ignored (fraction, far below a nanosecond).
    mantissa: u128,
    exponent: i64,
}

/// The mantissa stops growing at 38 digits (`u128` holds 3.4e38).
const MANTISSA_LIMIT: u128 = 10u128.pow(37);
/// Exponents beyond this are out of range or zero either way; clamping avoids overflow.
const EXPONENT_CLAMP: i64 = 100_000;

impl Decimal {
    /// Parses `[+-]? (digits [. digits?] | . digits) ([eE] [+-]? digits)?`; `None` for any
    /// other text.
    fn parse(text: &str) -> Option<Decimal> {
        let mut cursor = ByteCursor { bytes: text.as_bytes(), pos: 0 };
        let negative = match cursor.peek() {
            Some(b'-') => {
                cursor.pos += 1;
                true
            }
            Some(b'+') => {
                cursor.pos += 1;
                false
            }
            _ => false,
        };
        let mut mantissa: u128 = 0;
        let mut exponent: i64 = 0;
        let mut digit_count = 0usize;
        while let Some(digit) = cursor.peek().filter(u8::is_ascii_digit) {
            cursor.pos += 1;
            digit_count += 1;
            if mantissa < MANTISSA_LIMIT {
                mantissa = mantissa * 10 + u128::from(digit - b'0');
            } else {
                exponent += 1;
            }
        }
        if cursor.eat(b'.') {
            while let Some(digit) = cursor.peek().filter(u8::is_ascii_digit) {
                cursor.pos += 1;
                digit_count += 1;
                if mantissa < MANTISSA_LIMIT {
                    mantissa = mantissa * 10 + u128::from(digit - b'0');
                    exponent -= 1;
                }
            }
        }
        if digit_count == 0 {
            return None;
        }
        if cursor.eat(b'e') || cursor.eat(b'E') {
            let exponent_negative = if cursor.eat(b'-') {
                true
            } else {
                cursor.eat(b'+');
                false
            };
            let mut written: i64 = 0;
            let mut exponent_digits = 0usize;
            while let Some(digit) = cursor.peek().filter(u8::is_ascii_digit) {
                cursor.pos += 1;
                exponent_digits += 1;
                written = (written * 10 + i64::from(digit - b'0')).min(EXPONENT_CLAMP);
            }
            if exponent_digits == 0 {
                return None;
            }
            exponent += if exponent_negative { -written } else { written };
        }
        if cursor.pos != cursor.bytes.len() {
            return None;
        }
        Some(Decimal { negative, mantissa, exponent })
    }

    /// Applies the magnitude rule and converts exactly, rounding sub-nanosecond digits to
    /// the nearest nanosecond (ties away from zero).
    fn to_timestamp_ns(self) -> Result<i64, TimestampError> {
        if self.mantissa == 0 {
            return Ok(0);
        }
        let out_of_range = TimestampError::OutOfRange { time_ns: saturated(self.negative) };
        let significant_digits = i64::from(self.mantissa.ilog10()) + 1;
        // |t| < 10^k exactly when significant_digits + exponent <= k.
        let order = significant_digits + self.exponent;
        let unit_exponent = match order {
            ..=11 => 9,
            12..=14 => 6,
            15..=17 => 3,
            _ => 0,
        };
        let shift = self.exponent + unit_exponent;
        let magnitude_ns: u128 = if shift >= 0 {
            let factor = u32::try_from(shift).ok().and_then(|s| 10u128.checked_pow(s));
            match factor.and_then(|f| self.mantissa.checked_mul(f)) {
                Some(ns) => ns,
                None => return Err(out_of_range),
            }
        } else {
            match u32::try_from(-shift).ok().and_then(|s| 10u128.checked_pow(s)) {
                Some(divisor) => {
                    let quotient = self.mantissa / divisor;
                    let remainder = self.mantissa % divisor;
                    // remainder < divisor <= 10^38, so doubling stays below u128::MAX.
                    quotient + u128::from(remainder * 2 >= divisor)
                }
                // Dividing fewer than 39 digits by 10^39 or more rounds to zero.
                None => 0,
            }
        };
        if self.negative {
            if magnitude_ns > i64::MAX as u128 + 1 {
                return Err(out_of_range);
            }
            Ok((magnitude_ns as i128).wrapping_neg() as i64)
        } else {
            i64::try_from(magnitude_ns).map_err(|_| out_of_range)
        }
    }
}

/// A fixed buffer to format one number without allocating.
struct StackText {
    bytes: [u8; 64],
    len: usize,
}

impl Default for StackText {
    fn default() -> Self {
        StackText { bytes: [0; 64], len: 0 }
    }
}

impl StackText {
    fn as_str(&self) -> &str {
        // Only whole `&str`s are appended, so the prefix is always valid UTF-8.
        std::str::from_utf8(&self.bytes[..self.len]).unwrap_or("")
    }
}

impl std::fmt::Write for StackText {
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        let end = self.len + s.len();
        let target = self.bytes.get_mut(self.len..end).ok_or(std::fmt::Error)?;
        target.copy_from_slice(s.as_bytes());
        self.len = end;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: i64 = NANOS_PER_SEC;

    fn ok(result: Result<i64, TimestampError>) -> i64 {
        result.unwrap_or_else(|e| panic!("expected a timestamp, got {e:?}"))
    }

    #[test]
    fn integer_magnitude_boundaries() {
        assert_eq!(ok(timestamp_from_int(0)), 0);
        assert_eq!(ok(timestamp_from_int(1_609_459_200)), 1_609_459_200 * S);
        assert_eq!(ok(timestamp_from_int(9_000_000_000)), 9_000_000_000 * S, "2255 in seconds");
        // Just below each boundary the larger unit applies (and 1e11 s, 1e14 ms, 1e17 µs are
        // all year 5138, beyond i64 nanoseconds); at the boundary the smaller unit does.
        let too_late = Err(TimestampError::OutOfRange { time_ns: i64::MAX });
        assert_eq!(timestamp_from_int(99_999_999_999), too_late, "seconds");
        assert_eq!(ok(timestamp_from_int(100_000_000_000)), 100_000_000_000 * 1_000_000);
        assert_eq!(ok(timestamp_from_int(1_609_459_200_123)), 1_609_459_200_123_000_000);
        assert_eq!(timestamp_from_int(99_999_999_999_999), too_late, "milliseconds");
        assert_eq!(ok(timestamp_from_int(100_000_000_000_000)), 100_000_000_000_000 * 1_000);
        assert_eq!(ok(timestamp_from_int(1_609_459_200_123_456)), 1_609_459_200_123_456_000);
        assert_eq!(timestamp_from_int(99_999_999_999_999_999), too_late, "microseconds");
        assert_eq!(ok(timestamp_from_int(100_000_000_000_000_000)), 100_000_000_000_000_000);
        assert_eq!(
            timestamp_from_int(-99_999_999_999),
            Err(TimestampError::OutOfRange { time_ns: i64::MIN })
        );
        assert_eq!(ok(timestamp_from_int(-100_000_000_000)), -100_000_000_000 * 1_000_000);
        // The same boundaries for fractional and string forms.
        assert_eq!(timestamp_from_str("99999999999.5"), too_late);
        assert_eq!(ok(timestamp_from_str("100000000000.5")), 100_000_000_000_500_000);
        assert_eq!(ok(timestamp_from_str("1e11")), 100_000_000_000 * 1_000_000);
        assert_eq!(ok(timestamp_from_str("1e14")), 100_000_000_000_000 * 1_000);
        assert_eq!(ok(timestamp_from_str("1e17")), 100_000_000_000_000_000);
        assert_eq!(ok(timestamp_from_int(1_609_459_200_123_456_789)), 1_609_459_200_123_456_789);
        assert_eq!(ok(timestamp_from_int(i64::MAX)), i64::MAX);
        assert_eq!(ok(timestamp_from_int(-1_000)), -1_000 * S, "negative seconds");
        assert_eq!(ok(timestamp_from_int(i64::MIN)), i64::MIN);
    }

    #[test]
    fn integers_beyond_i64_nanoseconds_are_out_of_range() {
        // 1e10 s (year 2286) is seconds by magnitude but past 2262 in nanoseconds.
        assert_eq!(
            timestamp_from_int(10_000_000_000),
            Err(TimestampError::OutOfRange { time_ns: i64::MAX })
        );
        assert_eq!(
            timestamp_from_int(-10_000_000_000),
            Err(TimestampError::OutOfRange { time_ns: i64::MIN })
        );
        assert_eq!(
            timestamp_from_u64(u64::MAX),
            Err(TimestampError::OutOfRange { time_ns: i64::MAX })
        );
        assert_eq!(ok(timestamp_from_u64(1_609_459_200)), 1_609_459_200 * S);
    }

    #[test]
    fn floats_convert_from_their_decimal_text() {
        assert_eq!(ok(timestamp_from_f64(1_609_459_200.123)), 1_609_459_200_123_000_000);
        assert_eq!(ok(timestamp_from_f64(1_609_459_200.5)), 1_609_459_200_500_000_000);
        assert_eq!(ok(timestamp_from_f64(1_609_459_200_123.456)), 1_609_459_200_123_456_000);
        assert_eq!(ok(timestamp_from_f64(1.6094592e9)), 1_609_459_200 * S);
        assert_eq!(ok(timestamp_from_f64(1.6094592e18)), 1_609_459_200 * S);
        assert_eq!(ok(timestamp_from_f64(-0.5)), -S / 2);
        assert_eq!(ok(timestamp_from_f64(0.0)), 0);
        assert_eq!(ok(timestamp_from_f64(1e-12)), 0, "below a nanosecond rounds to 0");
        assert!(matches!(timestamp_from_f64(1e300), Err(TimestampError::OutOfRange { .. })));
        assert!(matches!(timestamp_from_f64(f64::NAN), Err(TimestampError::Invalid { .. })));
    }

    #[test]
    fn numeric_strings_follow_the_same_rule() {
        assert_eq!(ok(timestamp_from_str("1609459200")), 1_609_459_200 * S);
        assert_eq!(ok(timestamp_from_str(" 1609459200123 ")), 1_609_459_200_123_000_000);
        assert_eq!(ok(timestamp_from_str("1609459200.000000001")), 1_609_459_200_000_000_001);
        assert_eq!(ok(timestamp_from_str("1609459200.0000000005")), 1_609_459_200_000_000_001);
        assert_eq!(ok(timestamp_from_str("1609459200.0000000004")), 1_609_459_200_000_000_000);
        assert_eq!(ok(timestamp_from_str("-1.5")), -3 * S / 2);
        assert_eq!(ok(timestamp_from_str("0.0000000015")), 2, "ties round away from zero");
        assert_eq!(ok(timestamp_from_str("-0.0000000015")), -2, "ties round away from zero");
        assert_eq!(ok(timestamp_from_str("0.0000000014")), 1);
        assert_eq!(ok(timestamp_from_str("16094592e2")), 1_609_459_200 * S);
        assert_eq!(ok(timestamp_from_str("+.5")), S / 2);
        assert_eq!(ok(timestamp_from_str("5.")), 5 * S);
        assert_eq!(ok(timestamp_from_str("0000000000001609459200")), 1_609_459_200 * S);
        assert_eq!(ok(timestamp_from_str("1e-999999999999")), 0);
        assert_eq!(
            timestamp_from_str("1e999999999999"),
            Err(TimestampError::OutOfRange { time_ns: i64::MAX })
        );
        assert_eq!(
            timestamp_from_str(&"9".repeat(60)),
            Err(TimestampError::OutOfRange { time_ns: i64::MAX })
        );
        assert_eq!(ok(timestamp_from_str("-9223372036854775808")), i64::MIN);
        assert_eq!(
            timestamp_from_str("-9223372036854775809"),
            Err(TimestampError::OutOfRange { time_ns: i64::MIN })
        );
        for junk in ["", " ", "abc", "1e", "1.2.3", "--1", ".", "e5", "0x10", "1_000"] {
            assert!(
                matches!(timestamp_from_str(junk), Err(TimestampError::Invalid { .. })),
                "{junk:?}"
            );
        }
    }

    #[test]
    fn rfc3339_variants() {
        let base = 1_609_459_200 * S; // 2021-01-01T00:00:00Z
        assert_eq!(ok(parse_rfc3339("2021-01-01T00:00:00Z")), base);
        assert_eq!(ok(parse_rfc3339("2021-01-01t00:00:00z")), base);
        assert_eq!(ok(parse_rfc3339("2021-01-01 00:00:00Z")), base);
        assert_eq!(ok(parse_rfc3339("2021-01-01T02:00:00+02:00")), base);
        assert_eq!(ok(parse_rfc3339("2020-12-31T19:30:00-04:30")), base);
        assert_eq!(ok(parse_rfc3339("2021-01-01T00:00:00-00:00")), base);
        assert_eq!(ok(parse_rfc3339("2021-01-01T00:00:00.5Z")), base + S / 2);
        assert_eq!(ok(parse_rfc3339("2021-01-01T00:00:00.123456789Z")), base + 123_456_789);
        assert_eq!(ok(parse_rfc3339("2021-01-01T00:00:00.000001Z")), base + 1_000);
        assert_eq!(ok(parse_rfc3339("1970-01-01T00:00:00Z")), 0);
        assert_eq!(ok(parse_rfc3339("1969-12-31T23:59:59Z")), -S);
        assert_eq!(ok(parse_rfc3339("2024-02-29T12:00:00Z")), 1_709_208_000 * S, "leap day");
        assert_eq!(ok(parse_rfc3339("2000-02-29T00:00:00Z")), 951_782_400 * S, "400-year");
        assert_eq!(
            ok(parse_rfc3339("2016-12-31T23:59:60Z")),
            1_483_228_800 * S - 1,
            "leap second sorts just before the next minute"
        );
        assert_eq!(ok(timestamp_from_str(" 2021-01-01T00:00:00Z ")), base);
        assert_eq!(ok(parse_rfc3339("2262-04-11T23:47:16.854775807Z")), i64::MAX);
        assert_eq!(ok(parse_rfc3339("1677-09-21T00:12:43.145224192Z")), i64::MIN);
    }

    #[test]
    fn rfc3339_rejects_impossible_and_malformed_dates() {
        let invalid = [
            "2021-13-01T00:00:00Z",
            "2021-00-01T00:00:00Z",
            "2021-02-30T00:00:00Z",
            "2021-02-29T00:00:00Z",
            "1900-02-29T00:00:00Z",
            "2021-04-31T00:00:00Z",
            "2021-01-00T00:00:00Z",
            "2021-01-01T24:00:00Z",
            "2021-01-01T00:60:00Z",
            "2021-01-01T00:00:61Z",
            "2021-01-01T00:00:00",
            "2021-01-01T00:00:00+2:00",
            "2021-01-01T00:00:00+24:00",
            "2021-01-01T00:00:00+02:60",
            "2021-01-01T00:00:00+0200",
            "2021-01-01T00:00:00.Z",
            "2021-01-01T00:00:00.1234567891Z",
            "2021-01-01T00:00:00ZZ",
            "2021-01-01",
            "2021-1-01T00:00:00Z",
            "21-01-01T00:00:00Z",
            "2021-01-01X00:00:00Z",
            "2021-01-01T00:00Z",
            "２０２１-01-01T00:00:00Z",
        ];
        for text in invalid {
            assert!(
                matches!(parse_rfc3339(text), Err(TimestampError::Invalid { .. })),
                "{text:?} should be invalid, got {:?}",
                parse_rfc3339(text)
            );
        }
        assert_eq!(
            parse_rfc3339("9999-12-31T23:59:59Z"),
            Err(TimestampError::OutOfRange { time_ns: i64::MAX })
        );
        assert_eq!(
            parse_rfc3339("0000-01-01T00:00:00Z"),
            Err(TimestampError::OutOfRange { time_ns: i64::MIN })
        );
    }

    #[test]
    fn days_from_civil_matches_known_dates() {
        assert_eq!(days_from_civil(1970, 1, 1), 0);
        assert_eq!(days_from_civil(2000, 3, 1), 11_017);
        assert_eq!(days_from_civil(1969, 12, 31), -1);
        assert_eq!(days_from_civil(0, 3, 1), -719_468);
    }
}
