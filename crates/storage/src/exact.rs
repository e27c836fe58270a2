//! Exact, order-independent aggregation of `f64` values.
//!
//! [`ExactSum`] keeps the *exact* sum of any number of finite doubles (a fixed-point
//! superaccumulator spanning the whole `f64` range) and rounds it once, to nearest-even, when
//! asked for the result. The result therefore does not depend on the order in which values
//! were added or on how partial sums were split and merged: a per-chunk sum computed when a
//! file was written, merged with sums of decoded edges, gives bit for bit the same `f64` as
//! adding every point one by one. This is what lets the aggregate fast path answer from stored
//! chunk aggregates without changing any result (see [`crate::aggregate`]).
//!
//! Special values follow IEEE 754: any NaN, or both infinities, make the sum NaN; otherwise an
//! infinity makes it that infinity. A sum whose exact value is zero is `+0.0`. A sum whose
//! exact value lies beyond `f64::MAX` rounds to an infinity (deterministically).
//!
//! [`ValueAggregate`] adds count, minimum and maximum; minimum and maximum follow IEEE 754
//! `totalOrder` ([`f64::total_cmp`]: `-NaN < -∞ < … < -0 < +0 < … < +∞ < +NaN`), which is
//! also order-independent.

use crate::error::{Result, StorageError};

/// 64-bit digit positions: the biased exponent (1..=2046) shifted right by 6 gives 0..=31;
/// two more positions take carries, so no finite sum of up to 2^64 values can overflow.
const LIMBS: usize = 34;
/// Positions of the compact form: values land in the first three, the fourth takes carries.
const WINDOW: usize = 4;
/// A term is below 2^116 in magnitude; after normalisation a digit is below 2^65; 2^127
/// leaves room for this many terms per digit before carries must be propagated.
const ADDS_BEFORE_NORMALIZE: u16 = 2047;

const NAN: u8 = 1;
const POS_INF: u8 = 2;
const NEG_INF: u8 = 4;

/// The exact sum of a multiset of `f64` values. See the module documentation for the contract.
///
/// Memory: 80 bytes for values within a factor of about 2^64 of each other (the usual case);
/// a sum mixing wider magnitudes switches to a 544-byte form.
#[derive(Clone, Debug, Default)]
pub struct ExactSum {
    digits: Digits,
    /// Terms added since the digits were last normalised.
    pending: u16,
    specials: u8,
}

#[derive(Clone, Debug, Default)]
enum Digits {
    #[default]
    Zero,
    /// Digit `i` has weight `2^(64 * (base + i) - 1075)`.
    Window { base: u8, digits: [i128; WINDOW] },
    /// Digit `i` has weight `2^(64 * i - 1075)`.
    Full(Box<[i128; LIMBS]>),
}

impl ExactSum {
    pub fn new() -> Self {
        ExactSum::default()
    }

    /// The exact sum of `values`.
    pub fn of(values: &[f64]) -> Self {
        let mut sum = ExactSum::new();
        sum.add_all(values);
        sum
    }

    /// Adds one value.
    #[inline]
    pub fn add(&mut self, value: f64) {
        let bits = value.to_bits();
        let negative = bits >> 63 != 0;
        let exponent = ((bits >> 52) & 0x7ff) as u32;
        let fraction = bits & ((1u64 << 52) - 1);
        if exponent == 0x7ff {
            self.specials |= match (fraction != 0, negative) {
                (true, _) => NAN,
                (false, false) => POS_INF,
                (false, true) => NEG_INF,
            };
            return;
        }
        if exponent == 0 && fraction == 0 {
            return;
        }
        // value = mantissa * 2^(e - 1075) with e >= 1 (subnormals share e = 1).
        let (mantissa, e) =
            if exponent == 0 { (fraction, 1) } else { (fraction | (1u64 << 52), exponent) };
        let term = (mantissa as i128) << (e & 63);
        self.add_term((e >> 6) as usize, if negative { -term } else { term });
    }

    /// Adds every value of a slice.
    pub fn add_all(&mut self, values: &[f64]) {
        for &value in values {
            self.add(value);
        }
    }

    /// Adds another exact sum (the union of the two multisets).
    pub fn merge(&mut self, other: &ExactSum) {
        self.specials |= other.specials;
        let digits = other.normalized_digits();
        if digits.is_empty() {
            return;
        }
        self.normalize();
        for (position, digit) in digits {
            self.add_digit(position, digit);
        }
        // Merged digits are below 2^65: count them as one term of headroom.
        self.pending = 1;
    }

    /// True when nothing but zeros was added.
    pub fn is_zero(&self) -> bool {
        self.specials == 0 && self.normalized_digits().is_empty()
    }

    /// The exact sum rounded once to the nearest `f64` (ties to even).
    pub fn to_f64(&self) -> f64 {
        if self.specials & NAN != 0 || self.specials & (POS_INF | NEG_INF) == POS_INF | NEG_INF {
            return f64::NAN;
        }
        if self.specials & POS_INF != 0 {
            return f64::INFINITY;
        }
        if self.specials & NEG_INF != 0 {
            return f64::NEG_INFINITY;
        }
        let mut digits = [0i128; LIMBS];
        for (position, digit) in self.normalized_digits() {
            digits[position] = digit;
        }
        // Carry through the whole range so the top digit holds the sign.
        carry(&mut digits);
        let negative = digits[LIMBS - 1] < 0;
        if negative {
            for digit in digits.iter_mut() {
                *digit = -*digit;
            }
            carry(&mut digits);
        }
        let magnitude = round_magnitude(&digits);
        if negative {
            -magnitude
        } else {
            magnitude
        }
    }

    /// Compact bytes: a flags byte, then `(position: u8, digit: i128 LE)` per non-zero
    /// normalised digit. Stable: stored in data files.
    pub fn to_bytes(&self) -> Vec<u8> {
        let digits = self.normalized_digits();
        let mut bytes = Vec::with_capacity(1 + digits.len() * 17);
        bytes.push(self.specials);
        for (position, digit) in digits {
            bytes.push(position as u8);
            bytes.extend_from_slice(&digit.to_le_bytes());
        }
        bytes
    }

    /// Parses [`ExactSum::to_bytes`]; rejects anything it could not have written.
    pub fn from_bytes(bytes: &[u8]) -> Result<ExactSum> {
        let mut sum = ExactSum::new();
        sum.merge_bytes(bytes)?;
        Ok(sum)
    }

    /// Adds the sum stored as [`ExactSum::to_bytes`], like [`ExactSum::merge`] of
    /// [`ExactSum::from_bytes`] without building it (the aggregate path merges thousands of
    /// stored segment sums per query). On error `self` is unchanged.
    pub fn merge_bytes(&mut self, bytes: &[u8]) -> Result<()> {
        let invalid = |reason: &str| StorageError::InvalidRequest {
            reason: format!("exact sum bytes: {reason}"),
        };
        let (&specials, rest) = bytes.split_first().ok_or_else(|| invalid("empty"))?;
        if specials & !(NAN | POS_INF | NEG_INF) != 0 {
            return Err(invalid("unknown flags"));
        }
        if !rest.len().is_multiple_of(17) {
            return Err(invalid("truncated digit"));
        }
        let digit_of = |chunk: &[u8]| {
            let mut raw = [0u8; 16];
            raw.copy_from_slice(&chunk[1..]);
            (chunk[0] as usize, i128::from_le_bytes(raw))
        };
        // Validated before anything is added, so a bad digit leaves `self` as it was.
        // Normalised digits are below 2^64 except the top one; 2^100 keeps the headroom.
        // Positions strictly increase (as written), so there are at most `LIMBS` digits.
        let mut next_position = 0;
        for (position, digit) in rest.chunks_exact(17).map(digit_of) {
            if position < next_position || position >= LIMBS || digit.unsigned_abs() >= 1u128 << 100
            {
                return Err(invalid("digit out of range"));
            }
            next_position = position + 1;
        }
        self.specials |= specials;
        if rest.is_empty() {
            return Ok(());
        }
        self.normalize();
        for (position, digit) in rest.chunks_exact(17).map(digit_of) {
            self.add_digit(position, digit);
        }
        // Like a merge: the added digits count as one term of headroom (at most 34 digits
        // below 2^100 each, far inside what a normalised digit can take).
        self.pending = 1;
        Ok(())
    }

    #[inline]
    fn add_term(&mut self, position: usize, term: i128) {
        if self.pending >= ADDS_BEFORE_NORMALIZE {
            self.normalize();
        }
        self.pending += 1;
        self.add_digit(position, term);
    }

    #[inline]
    fn add_digit(&mut self, position: usize, value: i128) {
        match &mut self.digits {
            Digits::Window { base, digits } => {
                let base = *base as usize;
                // The top position of the window only takes carries.
                if position >= base && position - base < WINDOW - 1 {
                    digits[position - base] += value;
                    return;
                }
                if position == base + WINDOW - 1 && value.unsigned_abs() < 1u128 << 66 {
                    // A normalised carry digit being merged.
                    digits[WINDOW - 1] += value;
                    return;
                }
                self.widen();
                self.add_digit(position, value);
            }
            Digits::Full(digits) => digits[position] += value,
            Digits::Zero => {
                let base = position.saturating_sub(1).min(LIMBS - WINDOW);
                let mut digits = [0i128; WINDOW];
                digits[position - base] = value;
                self.digits = Digits::Window { base: base as u8, digits };
            }
        }
    }

    fn widen(&mut self) {
        let mut full = Box::new([0i128; LIMBS]);
        if let Digits::Window { base, digits } = &self.digits {
            for (i, digit) in digits.iter().enumerate() {
                full[*base as usize + i] = *digit;
            }
        }
        self.digits = Digits::Full(full);
    }

    fn normalize(&mut self) {
        match &mut self.digits {
            Digits::Zero => {}
            Digits::Window { digits, .. } => carry(digits),
            Digits::Full(digits) => carry(digits.as_mut_slice()),
        }
        self.pending = 0;
    }

    /// Non-zero digits after carry propagation, with their absolute positions.
    fn normalized_digits(&self) -> Vec<(usize, i128)> {
        let mut copy = self.clone();
        copy.normalize();
        match &copy.digits {
            Digits::Zero => Vec::new(),
            Digits::Window { base, digits } => digits
                .iter()
                .enumerate()
                .filter(|(_, d)| **d != 0)
                .map(|(i, d)| (*base as usize + i, *d))
                .collect(),
            Digits::Full(digits) => {
                digits.iter().enumerate().filter(|(_, d)| **d != 0).map(|(i, d)| (i, *d)).collect()
            }
        }
    }
}

/// Propagates carries so every digit but the last is in `[0, 2^64)`.
fn carry(digits: &mut [i128]) {
    for i in 0..digits.len() - 1 {
        let carry = digits[i] >> 64;
        digits[i] -= carry << 64;
        digits[i + 1] += carry;
    }
}

/// Rounds a non-negative magnitude (digits in `[0, 2^64)`, unit 2^-1075) to an `f64`.
fn round_magnitude(digits: &[i128; LIMBS]) -> f64 {
    let Some(top) = digits.iter().rposition(|d| *d != 0) else {
        return 0.0;
    };
    if top == LIMBS - 1 {
        return f64::INFINITY;
    }
    let top_digit = digits[top] as u64;
    // Position of the highest set bit.
    let high = 64 * top as i64 + 63 - i64::from(top_digit.leading_zeros());
    if high < 53 {
        // Below 2^-1022: exactly a subnormal (every term is a multiple of 2^-1074).
        return f64::from_bits((digits[0] as u64) >> 1);
    }
    let bit = |position: i64| -> u64 {
        if position < 0 {
            return 0;
        }
        let digit = digits[(position / 64) as usize] as u64;
        (digit >> (position % 64)) & 1
    };
    // The 64 bits ending at `high`, then whether anything below them is set.
    let low = high - 63;
    let mut window = 0u64;
    for position in (low..=high).rev() {
        window = (window << 1) | bit(position);
    }
    let mut sticky = window & 0x3ff != 0;
    if !sticky && low > 0 {
        let low_digit = (low / 64) as usize;
        let below_in_digit = (digits[low_digit] as u64) & ((1u64 << (low % 64)) - 1);
        sticky = below_in_digit != 0 || digits[..low_digit].iter().any(|d| *d != 0);
    }
    let mut mantissa = window >> 11;
    let round = (window >> 10) & 1 == 1;
    let mut high = high;
    if round && (sticky || mantissa & 1 == 1) {
        mantissa += 1;
        if mantissa == 1u64 << 53 {
            mantissa >>= 1;
            high += 1;
        }
    }
    let exponent = high - 52;
    if exponent >= 2047 {
        return f64::INFINITY;
    }
    f64::from_bits(((exponent as u64) << 52) | (mantissa & ((1u64 << 52) - 1)))
}

/// Count, exact sum, minimum and maximum of a multiset of values; every part is
/// order-independent (see the module documentation).
#[derive(Clone, Debug)]
pub struct ValueAggregate {
    pub count: u64,
    pub sum: ExactSum,
    /// Smallest value in `totalOrder`; meaningless when `count == 0`.
    pub min: f64,
    /// Largest value in `totalOrder`; meaningless when `count == 0`.
    pub max: f64,
}

impl Default for ValueAggregate {
    fn default() -> Self {
        ValueAggregate { count: 0, sum: ExactSum::new(), min: f64::NAN, max: f64::NAN }
    }
}

impl ValueAggregate {
    pub fn of(values: &[f64]) -> Self {
        let mut aggregate = ValueAggregate::default();
        aggregate.add_all(values);
        aggregate
    }

    #[inline]
    pub fn add(&mut self, value: f64) {
        if self.count == 0 {
            self.min = value;
            self.max = value;
        } else {
            self.min = total_min(self.min, value);
            self.max = total_max(self.max, value);
        }
        self.count += 1;
        self.sum.add(value);
    }

    pub fn add_all(&mut self, values: &[f64]) {
        for &value in values {
            self.add(value);
        }
    }

    pub fn merge(&mut self, other: &ValueAggregate) {
        if other.count == 0 {
            return;
        }
        if self.count == 0 {
            self.min = other.min;
            self.max = other.max;
        } else {
            self.min = total_min(self.min, other.min);
            self.max = total_max(self.max, other.max);
        }
        self.count += other.count;
        self.sum.merge(&other.sum);
    }

    /// `sum / count` of the rounded sum; `None` when empty.
    pub fn mean(&self) -> Option<f64> {
        (self.count > 0).then(|| self.sum.to_f64() / self.count as f64)
    }
}

/// The smaller of two values in IEEE 754 `totalOrder`.
#[inline]
pub fn total_min(a: f64, b: f64) -> f64 {
    if b.total_cmp(&a).is_lt() {
        b
    } else {
        a
    }
}

/// The larger of two values in IEEE 754 `totalOrder`.
#[inline]
pub fn total_max(a: f64, b: f64) -> f64 {
    if b.total_cmp(&a).is_gt() {
        b
    } else {
        a
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Reference: exact rational sum via i128 when every value is a multiple of 2^-60 and small.
    fn reference_sum(values: &[f64]) -> f64 {
        // Sum in a wide fixed point exactly (values chosen by the caller to fit), then round
        // by converting through the same path as a single value would be.
        let scaled: i128 = values.iter().map(|v| (*v * 2f64.powi(60)) as i128).sum();
        // i128 → f64 rounds to nearest-even; then the scale is exact.
        (scaled as f64) / 2f64.powi(60)
    }

    #[test]
    fn single_values_round_trip() {
        for value in [
            0.0,
            1.0,
            -1.0,
            0.1,
            21.37,
            -1e-310,
            f64::MIN_POSITIVE,
            5e-324,
            f64::MAX,
            -f64::MAX,
            1e300,
            123456789.123,
        ] {
            assert_eq!(ExactSum::of(&[value]).to_f64().to_bits(), value.to_bits(), "{value}");
        }
        assert_eq!(ExactSum::of(&[-0.0]).to_f64().to_bits(), 0.0f64.to_bits());
    }

    #[test]
    fn cancellation_and_order_do_not_matter() {
        let values = [1e100, 1.0, -1e100, 1e-100];
        assert_eq!(ExactSum::of(&values).to_f64(), 1.0 + 1e-100);
        // Naive summation gives 0.6000000000000001 in this order and 0.6 in the other; the
        // exact sum 0.600000000000000005551… rounds to 0.6.
        assert_eq!((0.1 + 0.2) + 0.3, 0.6000000000000001);
        assert_eq!(ExactSum::of(&[0.1, 0.2, 0.3]).to_f64(), 0.6);
        assert_eq!(ExactSum::of(&[0.3, 0.2, 0.1]).to_f64(), 0.6);
        assert_eq!(ExactSum::of(&[f64::MAX, f64::MAX]).to_f64(), f64::INFINITY);
        assert_eq!(ExactSum::of(&[f64::MAX, f64::MAX, -f64::MAX]).to_f64(), f64::MAX);
        assert_eq!(ExactSum::of(&[-f64::MAX, -f64::MAX]).to_f64(), f64::NEG_INFINITY);
    }

    #[test]
    fn specials() {
        assert!(ExactSum::of(&[1.0, f64::NAN]).to_f64().is_nan());
        assert!(ExactSum::of(&[f64::INFINITY, f64::NEG_INFINITY]).to_f64().is_nan());
        assert_eq!(ExactSum::of(&[f64::INFINITY, 1.0]).to_f64(), f64::INFINITY);
        assert_eq!(ExactSum::of(&[-1.0, f64::NEG_INFINITY]).to_f64(), f64::NEG_INFINITY);
        assert_eq!(ExactSum::of(&[]).to_f64().to_bits(), 0.0f64.to_bits());
    }

    #[test]
    fn ties_round_to_even() {
        // 2^53 + 1 is a tie between 2^53 and 2^53 + 2: even wins.
        let big = 2f64.powi(53);
        assert_eq!(ExactSum::of(&[big, 1.0]).to_f64(), big);
        assert_eq!(ExactSum::of(&[big, 3.0]).to_f64(), big + 4.0);
        // Just above the tie rounds up.
        assert_eq!(ExactSum::of(&[big, 1.0, 2f64.powi(-60)]).to_f64(), big + 2.0);
    }

    #[test]
    fn many_values_need_carries() {
        let values: Vec<f64> = (0..100_000).map(|i| 20.0 + (i % 997) as f64 / 1024.0).collect();
        let exact = ExactSum::of(&values).to_f64();
        assert_eq!(exact, reference_sum(&values));
        let mut merged = ExactSum::new();
        for chunk in values.chunks(777) {
            merged.merge(&ExactSum::of(chunk));
        }
        assert_eq!(merged.to_f64().to_bits(), exact.to_bits());
        let back = ExactSum::from_bytes(&merged.to_bytes()).unwrap();
        assert_eq!(back.to_f64().to_bits(), exact.to_bits());
    }

    #[test]
    fn bytes_reject_garbage() {
        assert!(ExactSum::from_bytes(&[]).is_err());
        assert!(ExactSum::from_bytes(&[8]).is_err());
        assert!(ExactSum::from_bytes(&[0, 1, 2]).is_err());
        let mut bad = vec![0u8, 40];
        bad.extend_from_slice(&1i128.to_le_bytes());
        assert!(ExactSum::from_bytes(&bad).is_err());
        // Positions repeated or out of order are not what `to_bytes` writes.
        let mut repeated = vec![0u8];
        for _ in 0..2 {
            repeated.push(16);
            repeated.extend_from_slice(&1i128.to_le_bytes());
        }
        assert!(ExactSum::from_bytes(&repeated).is_err());
        let mut sum = ExactSum::of(&[1.5]);
        assert!(sum.merge_bytes(&repeated).is_err());
        assert_eq!(sum.to_f64(), 1.5, "a rejected merge changes nothing");
        sum.merge_bytes(&ExactSum::of(&[0.25, f64::INFINITY]).to_bytes()).unwrap();
        assert_eq!(sum.to_f64(), f64::INFINITY);
    }

    #[test]
    fn aggregate_min_max_use_total_order() {
        let aggregate = ValueAggregate::of(&[0.0, -0.0, 3.0, -2.5]);
        assert_eq!(aggregate.min, -2.5);
        assert_eq!(aggregate.max, 3.0);
        let zeros = ValueAggregate::of(&[0.0, -0.0]);
        assert_eq!(zeros.min.to_bits(), (-0.0f64).to_bits());
        assert_eq!(zeros.max.to_bits(), 0.0f64.to_bits());
        let nan = ValueAggregate::of(&[1.0, f64::NAN]);
        assert!(nan.max.is_nan());
        assert_eq!(nan.min, 1.0);
        assert_eq!(ValueAggregate::of(&[2.0, 4.0]).mean(), Some(3.0));
        assert_eq!(ValueAggregate::default().mean(), None);
    }

    fn any_double() -> impl Strategy<Value = f64> {
        prop_oneof![
            any::<u64>().prop_map(f64::from_bits),
            (-1_000_000i64..1_000_000, 0u32..6).prop_map(|(m, s)| m as f64 / 10f64.powi(s as i32)),
            (-1e-300f64..1e-300),
        ]
    }

    proptest! {
        #[test]
        fn order_and_splits_never_change_the_result(
            values in proptest::collection::vec(any_double(), 0..300),
            split in 0usize..300,
            seed in any::<u64>(),
        ) {
            let whole = ExactSum::of(&values).to_f64();
            let split = split.min(values.len());
            let mut merged = ExactSum::of(&values[..split]);
            merged.merge(&ExactSum::from_bytes(&ExactSum::of(&values[split..]).to_bytes()).unwrap());
            let mut shuffled = values.clone();
            let mut state = seed | 1;
            for i in (1..shuffled.len()).rev() {
                state ^= state << 13; state ^= state >> 7; state ^= state << 17;
                shuffled.swap(i, (state % (i as u64 + 1)) as usize);
            }
            let reordered = ExactSum::of(&shuffled).to_f64();
            prop_assert!(whole.to_bits() == merged.to_f64().to_bits() || (whole.is_nan() && merged.to_f64().is_nan()));
            prop_assert!(whole.to_bits() == reordered.to_bits() || (whole.is_nan() && reordered.is_nan()));
        }

        #[test]
        fn small_decimals_match_a_fixed_point_reference(
            mantissas in proptest::collection::vec(-100_000_000i64..100_000_000, 1..500),
        ) {
            // Multiples of 2^-20 (exact in f64 and in the reference's 2^-60 grid).
            let values: Vec<f64> = mantissas.iter().map(|m| *m as f64 / 1048576.0).collect();
            prop_assert_eq!(ExactSum::of(&values).to_f64(), reference_sum(&values));
        }

        #[test]
        fn two_values_round_like_ieee_addition(a in any::<u64>(), b in any::<u64>()) {
            // The correctly rounded sum of two doubles is what the FPU computes.
            let (a, b) = (f64::from_bits(a), f64::from_bits(b));
            let expected = a + b;
            let got = ExactSum::of(&[a, b]).to_f64();
            if expected.is_nan() {
                prop_assert!(got.is_nan());
            } else if expected == 0.0 {
                prop_assert_eq!(got, 0.0);
            } else {
                prop_assert_eq!(got.to_bits(), expected.to_bits());
            }
        }
    }
}
