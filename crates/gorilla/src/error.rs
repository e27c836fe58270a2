//! The crate's error type.

use std::fmt;

/// Why a stream or serialized block could not be decoded.
///
/// Every variant means the bytes are corrupt or were not produced by this codec (storage maps
/// them all to a data-corruption kind); decoding never fails for streams produced by
/// [`crate::Encoder`]. Positions are in bits from the start of the stream (header excluded).
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum DecodeError {
    /// The stream ends inside point `point_index`.
    #[error(
        "gorilla stream truncated in point {point_index}: decoding reached bit {bits_needed} \
         but the stream has {bits_available} bits"
    )]
    Truncated {
        /// 0-based index of the cut-off point.
        point_index: usize,
        /// Stream position the decoder reached inside the cut-off point (a lower bound of
        /// what the complete point would need).
        bits_needed: u64,
        /// Bits in the stream (8 per byte).
        bits_available: u64,
    },
    /// The claimed point count cannot fit in the stream: the first point takes 128 bits and
    /// every later point at least 2. Checked before any memory is reserved.
    #[error(
        "gorilla point count {count} cannot fit in {stream_bytes} stream bytes \
         (at most {max_points} points)"
    )]
    CountTooLarge {
        /// The claimed count.
        count: u64,
        /// The most points a stream of this length can hold.
        max_points: u64,
        /// Length of the stream in bytes.
        stream_bytes: usize,
    },
    /// A value uses control `10` (reuse the previous bit window) before any `11` value set one.
    #[error("gorilla value of point {point_index} reuses a bit window that was never set")]
    MissingValueWindow {
        /// 0-based index of the offending point.
        point_index: usize,
    },
    /// A value's `11` header declares more than 64 bits of leading zeros plus meaningful bits.
    #[error(
        "gorilla value of point {point_index} declares {leading_zeros} leading zeros and \
         {meaningful_bits} meaningful bits, more than 64"
    )]
    BadValueWindow {
        /// 0-based index of the offending point.
        point_index: usize,
        /// The header's leading-zero field (0..=31).
        leading_zeros: u32,
        /// The header's meaningful-bit count (1..=64).
        meaningful_bits: u32,
    },
    /// Bits follow the last point beyond the zero padding of the final byte.
    #[error(
        "gorilla stream has {bits_available} bits but its points end at bit {bits_used} \
         (trailing bytes or non-zero padding)"
    )]
    TrailingData {
        /// Where the last point ends.
        bits_used: u64,
        /// Bits in the stream (8 per byte).
        bits_available: u64,
    },
    /// A serialized block starts with a format version this build cannot read.
    #[error(
        "gorilla block format version {found} is not supported (this build reads {supported})"
    )]
    UnsupportedVersion {
        /// The block's version byte.
        found: u8,
        /// [`crate::FORMAT_VERSION`] of this build.
        supported: u8,
    },
    /// A serialized block's header is malformed.
    #[error("gorilla block header is malformed: {problem}")]
    BadHeader {
        /// What is wrong with it.
        problem: HeaderProblem,
    },
}

/// What is wrong with a serialized block header (see [`crate::Encoded::to_bytes`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HeaderProblem {
    /// The input is empty: not even a version byte.
    Empty,
    /// The point-count varint runs past the end of the input.
    CountTruncated,
    /// The point-count varint has redundant trailing zero groups (the encoding is canonical).
    CountNotMinimal,
    /// The point-count varint encodes a value above `u64::MAX`.
    CountOverflow,
}

impl fmt::Display for HeaderProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            HeaderProblem::Empty => "empty input",
            HeaderProblem::CountTruncated => "point count varint is truncated",
            HeaderProblem::CountNotMinimal => "point count varint is not minimally encoded",
            HeaderProblem::CountOverflow => "point count varint exceeds 64 bits",
        })
    }
}
