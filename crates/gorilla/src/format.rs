//! Constants and small helpers of the bit format, shared by the encoder and the decoders.
//! The format itself is described in the crate documentation.

/// Bits of the first point: raw timestamp and raw value bits.
pub(crate) const FIRST_POINT_BITS: u64 = 128;

/// Every point after the first needs at least one timestamp bit and one value bit.
pub(crate) const MIN_BITS_PER_LATER_POINT: u64 = 2;

/// Leading-zero counts above this are stored as this (the field has 5 bits).
pub(crate) const MAX_STORED_LEADING_ZEROS: u32 = 31;

/// Timestamp bucket `10`: delta-of-delta in `[-63, 64]`, stored as `dod + 63` in 7 bits.
pub(crate) const DOD_7_MIN: i64 = -63;
pub(crate) const DOD_7_MAX: i64 = 64;
/// Timestamp bucket `110`: `[-255, 256]`, stored as `dod + 255` in 9 bits.
pub(crate) const DOD_9_MIN: i64 = -255;
pub(crate) const DOD_9_MAX: i64 = 256;
/// Timestamp bucket `1110`: `[-2047, 2048]`, stored as `dod + 2047` in 12 bits.
pub(crate) const DOD_12_MIN: i64 = -2047;
pub(crate) const DOD_12_MAX: i64 = 2048;

/// The leading/trailing zero window of the last value written with control `11`.
///
/// `meaningful == 0` means no window yet: the first changed value after the raw first value
/// always uses control `11`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct ValueWindow {
    pub(crate) leading: u32,
    pub(crate) trailing: u32,
    pub(crate) meaningful: u32,
}

impl ValueWindow {
    pub(crate) fn is_set(self) -> bool {
        self.meaningful != 0
    }
}

/// Most points a stream of `stream_bytes` bytes can hold: the first takes 128 bits, every
/// later one at least 2. Decoders check claimed counts against this before reserving memory.
pub(crate) fn max_points_in_stream(stream_bytes: usize) -> u64 {
    let bits = (stream_bytes as u64).saturating_mul(8);
    if bits < FIRST_POINT_BITS {
        return 0;
    }
    1 + (bits - FIRST_POINT_BITS) / MIN_BITS_PER_LATER_POINT
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn max_points_counts_first_point_and_two_bits_per_later_point() {
        assert_eq!(max_points_in_stream(0), 0);
        assert_eq!(max_points_in_stream(15), 0);
        assert_eq!(max_points_in_stream(16), 1);
        assert_eq!(max_points_in_stream(17), 5);
        assert_eq!(max_points_in_stream(usize::MAX), u64::MAX / 2 - 63);
    }
}
