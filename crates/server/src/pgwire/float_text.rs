//! `float8` and `float4` values in text, spelled as Postgres spells them.
//!
//! With `extra_float_digits` ≥ 1 (the default since Postgres 12, and what JDBC sets) Postgres
//! prints the shortest decimal that reads back to the same value, the digits Rust's `ryu`
//! finds, but in its own notation (src/common/d2s.c and f2s.c): whole numbers without `.0`
//! (`21`), scientific notation with a signed exponent of at least two digits (`1e+20`,
//! `1.5e-05`) when the decimal exponent is below -4 or at least 15 (6 for `float4`), and
//! `NaN`, `Infinity`, `-Infinity`, `-0`. pgwire prints `21.0`, `1e20` and `inf`; the last is
//! a number neither JDBC's `Double.parseDouble` nor psql users expect.

use bytes::{BufMut, BytesMut};

/// Writes `value` as Postgres' `float8out` does with `extra_float_digits` ≥ 1.
pub(crate) fn write_float8(out: &mut BytesMut, value: f64) {
    if write_special(out, value) {
        return;
    }
    let mut buffer = ryu::Buffer::new();
    let shortest = buffer.format_finite(value.abs());
    write_postgres_notation(out, value.is_sign_negative(), shortest, FLOAT8_FIXED_BELOW);
}

/// Writes `value` as Postgres' `float4out` does with `extra_float_digits` ≥ 1.
pub(crate) fn write_float4(out: &mut BytesMut, value: f32) {
    if write_special(out, f64::from(value)) {
        return;
    }
    let mut buffer = ryu::Buffer::new();
    let shortest = buffer.format_finite(value.abs());
    write_postgres_notation(out, value.is_sign_negative(), shortest, FLOAT4_FIXED_BELOW);
}

/// Decimal exponents from -4 up to (not including) these are written without an exponent.
const FLOAT8_FIXED_BELOW: i32 = 15;
const FLOAT4_FIXED_BELOW: i32 = 6;

/// Writes NaN, ±Infinity and ±0 as Postgres does; false (nothing written) for any other
/// value. (An `f32` converts to `f64` exactly, these values and their signs included.)
fn write_special(out: &mut BytesMut, value: f64) -> bool {
    let text: &[u8] = if value.is_nan() {
        b"NaN"
    } else if value.is_infinite() {
        b"Infinity"
    } else if value == 0.0 {
        b"0"
    } else {
        return false;
    };
    // Postgres prints the sign of infinities and of zero, never of NaN.
    if value.is_sign_negative() && !value.is_nan() {
        out.put_u8(b'-');
    }
    out.extend_from_slice(text);
    true
}

/// Re-spells ryu's text of a positive, finite, non-zero value (`21.0`, `0.001`, `1.5e-7`,
/// `1e20`) in Postgres' notation.
fn write_postgres_notation(out: &mut BytesMut, negative: bool, ryu_text: &str, fixed_below: i32) {
    // ryu's fixed notation is already Postgres' but for a trailing `.0`, unless the value
    // has more whole digits than Postgres writes without an exponent, or is below 1e-4.
    if let Some(point) = ryu_text.find('.') {
        if !ryu_text.contains('e')
            && point <= fixed_below as usize
            && !ryu_text.starts_with("0.0000")
        {
            if negative {
                out.put_u8(b'-');
            }
            out.extend_from_slice(ryu_text.strip_suffix(".0").unwrap_or(ryu_text).as_bytes());
            return;
        }
    }
    let (digits, length, exponent) = significant_digits(ryu_text);
    let digits = &digits[..length];
    if negative {
        out.put_u8(b'-');
    }
    if (-4..fixed_below).contains(&exponent) {
        if exponent < 0 {
            out.extend_from_slice(b"0.");
            for _ in 0..(-exponent - 1) {
                out.put_u8(b'0');
            }
            out.extend_from_slice(digits);
        } else {
            let whole = exponent as usize + 1;
            if digits.len() <= whole {
                out.extend_from_slice(digits);
                for _ in digits.len()..whole {
                    out.put_u8(b'0');
                }
            } else {
                out.extend_from_slice(&digits[..whole]);
                out.put_u8(b'.');
                out.extend_from_slice(&digits[whole..]);
            }
        }
    } else {
        out.put_u8(digits[0]);
        if digits.len() > 1 {
            out.put_u8(b'.');
            out.extend_from_slice(&digits[1..]);
        }
        out.put_u8(b'e');
        out.put_u8(if exponent < 0 { b'-' } else { b'+' });
        let magnitude = exponent.unsigned_abs();
        if magnitude >= 100 {
            out.put_u8(b'0' + (magnitude / 100) as u8);
        }
        out.put_u8(b'0' + (magnitude / 10 % 10) as u8);
        out.put_u8(b'0' + (magnitude % 10) as u8);
    }
}

/// The significant digits of ryu's text (no leading or trailing zeros; at most 17) and the
/// decimal exponent of the first one: `0.00125` → `125`, -3; `21.0` → `21`, 1.
fn significant_digits(ryu_text: &str) -> ([u8; 24], usize, i32) {
    let (mantissa, exponent) = match ryu_text.split_once('e') {
        Some((mantissa, exponent)) => (mantissa, exponent.parse::<i32>().unwrap_or(0)),
        None => (ryu_text, 0),
    };
    let whole_digits = mantissa.find('.').unwrap_or(mantissa.len());
    let mut exponent = exponent + whole_digits as i32 - 1;
    let mut digits = [0u8; 24];
    let mut length = 0;
    for &byte in mantissa.as_bytes() {
        if byte == b'.' {
            continue;
        }
        if byte == b'0' && length == 0 {
            // A leading zero: the first significant digit is one place further right.
            exponent -= 1;
            continue;
        }
        if length < digits.len() {
            digits[length] = byte;
            length += 1;
        }
    }
    while length > 1 && digits[length - 1] == b'0' {
        length -= 1;
    }
    (digits, length, exponent)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn float8(value: f64) -> String {
        let mut out = BytesMut::new();
        write_float8(&mut out, value);
        String::from_utf8(out.to_vec()).unwrap()
    }

    fn float4(value: f32) -> String {
        let mut out = BytesMut::new();
        write_float4(&mut out, value);
        String::from_utf8(out.to_vec()).unwrap()
    }

    #[test]
    fn float8_as_postgres_prints_it() {
        // Outputs of `SELECT x::float8` on Postgres 16 (extra_float_digits = 1), many from its
        // regression tests (float8.out).
        for (value, text) in [
            (21.0, "21"),
            (21.5, "21.5"),
            (-21.5, "-21.5"),
            (0.1, "0.1"),
            (100.0, "100"),
            (0.0001, "0.0001"),
            (0.00001, "1e-05"),
            (0.000123, "0.000123"),
            (1e-300, "1e-300"),
            (1.5e-7, "1.5e-07"),
            (1e14, "100000000000000"),
            (123456789012345.0, "123456789012345"),
            (1e15, "1e+15"),
            (1234567890123456.0, "1.234567890123456e+15"),
            (1e20, "1e+20"),
            (1.2345678901234568e17, "1.2345678901234568e+17"),
            (1.7976931348623157e308, "1.7976931348623157e+308"),
            (2.2250738585072014e-308, "2.2250738585072014e-308"),
            (5e-324, "5e-324"),
            (0.1 + 0.2, "0.30000000000000004"),
            (1004.3, "1004.3"),
            (-34.84, "-34.84"),
            (1.2345678901234e200, "1.2345678901234e+200"),
            (0.0, "0"),
            (-0.0, "-0"),
            (f64::INFINITY, "Infinity"),
            (f64::NEG_INFINITY, "-Infinity"),
            (f64::NAN, "NaN"),
        ] {
            assert_eq!(float8(value), text, "{value:e}");
        }
    }

    #[test]
    fn float4_as_postgres_prints_it() {
        for (value, text) in [
            (21.0f32, "21"),
            (0.1, "0.1"),
            (100000.0, "100000"),
            (1000000.0, "1e+06"),
            (1.5e-5, "1.5e-05"),
            (1004.3, "1004.3"),
            (3.4028235e38, "3.4028235e+38"),
            (f32::NEG_INFINITY, "-Infinity"),
            (-0.0, "-0"),
        ] {
            assert_eq!(float4(value), text, "{value:e}");
        }
    }

    proptest! {
        #[test]
        fn float8_reads_back_exactly(bits in any::<u64>()) {
            let value = f64::from_bits(bits);
            let text = float8(value);
            let read: f64 = match text.as_str() {
                "Infinity" => f64::INFINITY,
                "-Infinity" => f64::NEG_INFINITY,
                other => other.parse().unwrap(),
            };
            if value.is_nan() {
                prop_assert!(read.is_nan());
            } else {
                prop_assert_eq!(read.to_bits(), value.to_bits(), "{}", text);
            }
            // The notation: an exponent exactly when the value is outside [1e-4, 1e15).
            let magnitude = value.abs();
            if value.is_finite() && magnitude != 0.0 {
                let scientific = text.contains('e');
                prop_assert_eq!(scientific, !(1e-4..1e15).contains(&magnitude), "{}", text);
                prop_assert!(!text.ends_with(".0") && !text.contains(".e"), "{}", text);
            }
        }

        #[test]
        fn float4_reads_back_exactly(bits in any::<u32>()) {
            let value = f32::from_bits(bits);
            prop_assume!(value.is_finite());
            let text = float4(value);
            prop_assert_eq!(text.parse::<f32>().unwrap().to_bits(), value.to_bits(), "{}", text);
        }
    }
}
