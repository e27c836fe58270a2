//! How values and timestamps are laid out in Parquet so files stay small yet standard.
//!
//! Sensor values are usually decimals printed with a fixed number of digits (21.37, 55.2).
//! Such a value is stored exactly as a scaled integer, `DECIMAL(18, scale)` on `INT64` with
//! delta encoding, which costs a few bits per point where a float64 costs 30–60. A value that
//! is not exactly `mantissa / 10^scale` as an IEEE double (a float artefact like
//! 74.93588199999998, NaN, -0.0) is an *exception*: it goes to a sibling file whose `value`
//! column is `DOUBLE` (byte-stream-split). Both are plain Parquet that DuckDB and pyarrow read
//! with the right values; MiniTrue merges them on read. This is the idea of ALP (Afroozeh et
//! al., SIGMOD 2023) expressed with standard Parquet types.
//!
//! Timestamps are stored in the coarsest unit (ms, µs or ns) that keeps every timestamp of the
//! file exact: a sensor reporting on whole milliseconds pays for milliseconds, not nanoseconds.

use serde::{Deserialize, Serialize};

/// Exact powers of ten as f64 (every one up to 1e22 is representable).
const POW10: [f64; 19] = [
    1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11, 1e12, 1e13, 1e14, 1e15, 1e16,
    1e17, 1e18,
];

/// Largest scale tried. 12 decimals covers every sensor format seen; beyond it the deltas are
/// as wide as a float's mantissa and the float layout wins anyway.
pub const MAX_DECIMAL_SCALE: u8 = 12;

/// Mantissas stay within ±2^53 so `mantissa as f64` is exact.
const MAX_EXACT_MANTISSA: f64 = 9_007_199_254_740_992.0;

/// Points sampled per series to choose its layout.
const LAYOUT_SAMPLE_POINTS: usize = 4096;

/// Estimated bits for an exception (value stored as a double plus its own timestamp delta).
const EXCEPTION_BITS: u64 = 80;

/// Estimated bits per value of the float layout (byte-stream-split + zstd on sensor data).
const FLOAT_BITS_PER_VALUE: u64 = 56;

/// The physical layout of a file's `value` column.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum ValueLayout {
    /// `DECIMAL(18, scale)` on `INT64`, delta encoded.
    Decimal { scale: u8 },
    /// `DOUBLE`, byte-stream-split.
    Float,
}

impl ValueLayout {
    /// Short name used in file names.
    pub fn tag(&self) -> String {
        match self {
            ValueLayout::Decimal { scale } => format!("d{scale}"),
            ValueLayout::Float => "f".to_string(),
        }
    }
}

/// `value` as `mantissa / 10^scale`, when that reproduces every bit of it.
pub fn decimal_mantissa(value: f64, scale: u8) -> Option<i64> {
    let power = *POW10.get(scale as usize)?;
    let scaled = (value * power).round();
    if !scaled.is_finite() || scaled.abs() > MAX_EXACT_MANTISSA {
        return None;
    }
    let mantissa = scaled as i64;
    (decimal_to_f64(mantissa, scale).to_bits() == value.to_bits()).then_some(mantissa)
}

/// The one conversion back to f64 used by every reader (so the exactness check above holds).
pub fn decimal_to_f64(mantissa: i64, scale: u8) -> f64 {
    (mantissa as f64) / POW10[scale as usize]
}

/// Picks the layout that stores `values` (one series, in time order) in the fewest estimated
/// bits, looking at a prefix sample. Exceptions are allowed where they pay off.
pub fn choose_layout(values: &[f64]) -> ValueLayout {
    let sample = &values[..values.len().min(LAYOUT_SAMPLE_POINTS)];
    let mut best = (ValueLayout::Float, sample.len() as u64 * FLOAT_BITS_PER_VALUE);
    for scale in 0..=MAX_DECIMAL_SCALE {
        let mut bits = 0u64;
        let mut exceptions = 0u64;
        let mut previous: Option<i64> = None;
        for &value in sample {
            match decimal_mantissa(value, scale) {
                Some(mantissa) => {
                    let delta = mantissa.wrapping_sub(previous.unwrap_or(mantissa));
                    let zigzag = ((delta << 1) ^ (delta >> 63)) as u64;
                    bits += u64::from(64 - zigzag.leading_zeros()) + 1;
                    previous = Some(mantissa);
                }
                None => exceptions += 1,
            }
        }
        let cost = bits + exceptions * EXCEPTION_BITS;
        if cost < best.1 {
            best = (ValueLayout::Decimal { scale }, cost);
        }
        // A larger scale only widens the deltas once nothing is an exception.
        if exceptions == 0 {
            break;
        }
    }
    best.0
}

/// Unit of a file's `time` column.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum TimeUnit {
    Millisecond,
    Microsecond,
    Nanosecond,
}

impl TimeUnit {
    pub fn nanos(&self) -> i64 {
        match self {
            TimeUnit::Millisecond => 1_000_000,
            TimeUnit::Microsecond => 1_000,
            TimeUnit::Nanosecond => 1,
        }
    }

    pub fn arrow(&self) -> arrow_schema::TimeUnit {
        match self {
            TimeUnit::Millisecond => arrow_schema::TimeUnit::Millisecond,
            TimeUnit::Microsecond => arrow_schema::TimeUnit::Microsecond,
            TimeUnit::Nanosecond => arrow_schema::TimeUnit::Nanosecond,
        }
    }
}

/// Tracks the coarsest unit that keeps a set of timestamps exact.
#[derive(Debug, Clone, Copy)]
pub struct UnitTracker {
    all_ms: bool,
    all_us: bool,
}

impl Default for UnitTracker {
    fn default() -> Self {
        UnitTracker { all_ms: true, all_us: true }
    }
}

impl UnitTracker {
    pub fn observe(&mut self, time_ns: i64) {
        self.all_ms &= time_ns % 1_000_000 == 0;
        self.all_us &= time_ns % 1_000 == 0;
    }

    pub fn merge(&mut self, other: UnitTracker) {
        self.all_ms &= other.all_ms;
        self.all_us &= other.all_us;
    }

    pub fn unit(&self) -> TimeUnit {
        if self.all_ms {
            TimeUnit::Millisecond
        } else if self.all_us {
            TimeUnit::Microsecond
        } else {
            TimeUnit::Nanosecond
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn printed_decimals_are_exact_at_their_scale() {
        assert_eq!(decimal_mantissa(21.37, 2), Some(2137));
        assert_eq!(decimal_mantissa(21.37, 1), None);
        assert_eq!(decimal_mantissa(55.2, 1), Some(552));
        assert_eq!(decimal_mantissa(-0.07, 2), Some(-7));
        assert_eq!(decimal_mantissa(69.88083514, 8), Some(6_988_083_514));
        assert_eq!(decimal_mantissa(-0.0, 0), None, "-0.0 keeps its sign only as a double");
        assert_eq!(decimal_mantissa(f64::NAN, 2), None);
        assert_eq!(decimal_mantissa(f64::INFINITY, 0), None);
        assert_eq!(decimal_mantissa(1e300, 0), None);
    }

    #[test]
    fn layout_follows_the_data() {
        let two_decimals: Vec<f64> = (0..500).map(|i| 20.0 + (i % 37) as f64 / 100.0).collect();
        assert_eq!(choose_layout(&two_decimals), ValueLayout::Decimal { scale: 2 });
        let integers: Vec<f64> = (0..500).map(|i| (i % 2) as f64).collect();
        assert_eq!(choose_layout(&integers), ValueLayout::Decimal { scale: 0 });
        let noise: Vec<f64> = (1..500).map(|i| (i as f64).sqrt() * 1.000001).collect();
        assert_eq!(choose_layout(&noise), ValueLayout::Float);
        // Mostly 8-decimal values with a few float artefacts: decimal with exceptions.
        let mut mixed: Vec<f64> =
            (0..1000).map(|i| 70.0 + (i * 7919 % 1000) as f64 * 1e-8).collect();
        mixed[10] = 74.93588199999998;
        assert!(matches!(choose_layout(&mixed), ValueLayout::Decimal { scale: 8 }));
    }

    #[test]
    fn unit_tracker_picks_coarsest_exact_unit() {
        let mut t = UnitTracker::default();
        t.observe(1_700_000_000_000_000_000);
        assert_eq!(t.unit(), TimeUnit::Millisecond);
        t.observe(1_700_000_000_000_005_000);
        assert_eq!(t.unit(), TimeUnit::Microsecond);
        t.observe(-3);
        assert_eq!(t.unit(), TimeUnit::Nanosecond);
    }

    proptest! {
        #[test]
        fn mantissa_round_trips_bit_exactly(bits in any::<u64>(), scale in 0u8..=MAX_DECIMAL_SCALE) {
            let value = f64::from_bits(bits);
            if let Some(m) = decimal_mantissa(value, scale) {
                prop_assert_eq!(decimal_to_f64(m, scale).to_bits(), bits);
            }
        }

        #[test]
        fn printed_values_are_found(m in -1_000_000_000i64..1_000_000_000, scale in 0u8..=8) {
            let printed: f64 = format!("{}e-{}", m, scale).parse().unwrap();
            prop_assert_eq!(decimal_mantissa(printed, scale).map(|x| decimal_to_f64(x, scale).to_bits()),
                Some(printed.to_bits()));
        }
    }
}
