//! The reference bit count of the Gorilla paper's encoding, written independently of the
//! encoder (plain loop, no shared helpers) so the two can check each other.

/// Exact number of bits the Gorilla paper's encoding (Pelkonen et al., VLDB 2015, section
/// 4.1) takes for `points`, with this crate's first-point and first-delta conventions.
///
/// - First point: 64 bits of timestamp + 64 bits of value.
/// - Delta-of-delta `D` of each later timestamp (the first delta counts as a `D` against a
///   previous delta of 0): 1 bit for `D = 0`; 2+7 for `[-63, 64]`; 3+9 for `[-255, 256]`;
///   4+12 for `[-2047, 2048]`; otherwise the paper's `1111` + 32 bits when `D` fits an `i32`,
///   and 4+64 when it does not (nanosecond timestamps need that; the paper never does).
/// - Values: 1 bit when equal to the previous; otherwise 2 + the previous window's width when
///   the XOR fits the window of the last `11` value, else 2+5+6 + its meaningful bits
///   (leading zeros capped at 31).
///
/// The encoder's `11110`/`11111` prefixes are one bit longer than the paper's `1111`, so
/// `Encoder::bit_len() == paper_bit_count(..) + number of later points whose D is outside
/// [-2047, 2048]`, exactly. Benchmarks report the encoder's overhead against this.
pub fn paper_bit_count(points: impl IntoIterator<Item = (i64, f64)>) -> u64 {
    let mut bits = 0u64;
    let mut previous: Option<(i64, u64)> = None;
    let mut previous_delta = 0i64;
    // (leading, trailing) of the last value written with its own window.
    let mut window: Option<(u32, u32)> = None;
    for (time, value) in points {
        let value_bits = value.to_bits();
        let Some((previous_time, previous_value_bits)) = previous else {
            bits += 64 + 64;
            previous = Some((time, value_bits));
            continue;
        };

        let delta = time.wrapping_sub(previous_time);
        let dod = delta.wrapping_sub(previous_delta);
        previous_delta = delta;
        bits += if dod == 0 {
            1
        } else if (-63..=64).contains(&dod) {
            2 + 7
        } else if (-255..=256).contains(&dod) {
            3 + 9
        } else if (-2047..=2048).contains(&dod) {
            4 + 12
        } else if i32::try_from(dod).is_ok() {
            4 + 32
        } else {
            4 + 64
        };

        let xor = value_bits ^ previous_value_bits;
        if xor == 0 {
            bits += 1;
        } else {
            let leading = xor.leading_zeros().min(31);
            let trailing = xor.trailing_zeros();
            match window {
                Some((window_leading, window_trailing))
                    if leading >= window_leading && trailing >= window_trailing =>
                {
                    bits += 2 + u64::from(64 - window_leading - window_trailing);
                }
                _ => {
                    bits += 2 + 5 + 6 + u64::from(64 - leading - trailing);
                    window = Some((leading, trailing));
                }
            }
        }
        previous = Some((time, value_bits));
    }
    bits
}
