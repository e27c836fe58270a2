//! Finished blocks ([`Encoded`]), borrowed views ([`EncodedView`]) and block serialization.

use std::fmt;

use crate::decoder::{decode_into, Decoder};
use crate::error::HeaderProblem;
use crate::format::max_points_in_stream;
use crate::DecodeError;

/// Version byte written first by [`Encoded::to_bytes`]. Bump it on any change of the stream
/// or header layout, keep reading the old version, and add a test fixture of the old format.
pub const FORMAT_VERSION: u8 = 1;

/// Longest LEB128 encoding of a `u64`: ten groups of 7 bits.
const MAX_COUNT_VARINT_BYTES: usize = 10;

/// An owned encoded block: the bit stream plus the point count (the stream itself does not
/// store the count).
///
/// Built by [`crate::Encoder::finish`] (always decodable) or [`Encoded::from_bytes`] (header
/// checked, stream checked when decoded). Equality compares the stream bytes and count.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Encoded {
    stream: Vec<u8>,
    point_count: usize,
}

impl Encoded {
    pub(crate) fn from_parts(stream: Vec<u8>, point_count: usize) -> Self {
        Self { stream, point_count }
    }

    /// Number of points in the block.
    pub fn len(&self) -> usize {
        self.point_count
    }

    /// True when the block holds no point.
    pub fn is_empty(&self) -> bool {
        self.point_count == 0
    }

    /// The stream bytes (see the crate documentation for the bit layout).
    pub fn stream_bytes(&self) -> &[u8] {
        &self.stream
    }

    /// Heap bytes held by this block (the stream's capacity).
    pub fn heap_bytes(&self) -> usize {
        self.stream.capacity()
    }

    /// A borrowed view for decoding.
    pub fn as_view(&self) -> EncodedView<'_> {
        EncodedView::from_parts(&self.stream, self.point_count)
    }

    /// Serializes the block: header then stream, bit-exact and stable across builds.
    ///
    /// Layout:
    ///
    /// | bytes | content |
    /// |-------|---------|
    /// | 1     | [`FORMAT_VERSION`] (currently `0x01`) |
    /// | 1..=10 | point count, unsigned LEB128 (7 bits per byte, least significant group first, high bit set on all but the last byte), minimal length |
    /// | rest  | the stream bytes, exactly as [`Encoded::stream_bytes`] |
    ///
    /// The stream length is implied by the input length.
    pub fn to_bytes(&self) -> Vec<u8> {
        self.as_view().to_bytes()
    }

    /// Parses bytes written by [`Encoded::to_bytes`].
    ///
    /// Validates the header (version, canonical varint) and that the stream is long enough
    /// for the claimed count (128 bits for the first point, 2 for every later one); the points
    /// themselves are validated when decoded. Never panics; allocates only a copy of the
    /// stream bytes.
    pub fn from_bytes(bytes: &[u8]) -> Result<Encoded, DecodeError> {
        let Some((&version, after_version)) = bytes.split_first() else {
            return Err(DecodeError::BadHeader { problem: HeaderProblem::Empty });
        };
        if version != FORMAT_VERSION {
            return Err(DecodeError::UnsupportedVersion {
                found: version,
                supported: FORMAT_VERSION,
            });
        }
        let (count, stream) = read_count_varint(after_version)?;
        let max_points = max_points_in_stream(stream.len());
        let count_too_large =
            DecodeError::CountTooLarge { count, max_points, stream_bytes: stream.len() };
        if count > max_points {
            return Err(count_too_large);
        }
        let point_count = usize::try_from(count).map_err(|_| count_too_large)?;
        Ok(Encoded { stream: stream.to_vec(), point_count })
    }
}

/// Appends `value` as minimal unsigned LEB128.
fn write_count_varint(mut value: u64, out: &mut Vec<u8>) {
    loop {
        let group = (value & 0x7F) as u8;
        value >>= 7;
        if value == 0 {
            out.push(group);
            return;
        }
        out.push(group | 0x80);
    }
}

/// Reads a minimal unsigned LEB128 `u64`; returns it and the bytes after it.
fn read_count_varint(bytes: &[u8]) -> Result<(u64, &[u8]), DecodeError> {
    let bad = |problem| DecodeError::BadHeader { problem };
    let mut value = 0u64;
    for (index, &byte) in bytes.iter().enumerate().take(MAX_COUNT_VARINT_BYTES) {
        let group = u64::from(byte & 0x7F);
        let shift = 7 * index as u32;
        // The tenth group holds only bit 63.
        if index == MAX_COUNT_VARINT_BYTES - 1 && group > 1 {
            return Err(bad(HeaderProblem::CountOverflow));
        }
        value |= group << shift;
        if byte & 0x80 == 0 {
            if byte == 0 && index > 0 {
                return Err(bad(HeaderProblem::CountNotMinimal));
            }
            return Ok((value, bytes.get(index + 1..).unwrap_or_default()));
        }
    }
    if bytes.len() >= MAX_COUNT_VARINT_BYTES {
        Err(bad(HeaderProblem::CountOverflow))
    } else {
        Err(bad(HeaderProblem::CountTruncated))
    }
}

/// A borrowed, read-only block: stream bytes plus point count. Cheap to copy.
///
/// From [`crate::Encoder::view`] it is a zero-copy snapshot of the points pushed so far; from
/// [`EncodedView::from_parts`] it may wrap untrusted bytes, which decoding validates.
#[derive(Clone, Copy)]
pub struct EncodedView<'a> {
    stream: &'a [u8],
    point_count: usize,
}

impl<'a> EncodedView<'a> {
    /// Wraps a stream and its claimed point count. Nothing is checked until decoding.
    pub fn from_parts(stream: &'a [u8], point_count: usize) -> Self {
        Self { stream, point_count }
    }

    /// Number of points in the view.
    pub fn len(&self) -> usize {
        self.point_count
    }

    /// True when the view holds no point.
    pub fn is_empty(&self) -> bool {
        self.point_count == 0
    }

    /// The stream bytes: bit `i` of the stream is bit `7 - i % 8` (most significant first) of
    /// byte `i / 8`; the last byte is zero-padded. See the crate documentation for the layout.
    pub fn stream_bytes(&self) -> &'a [u8] {
        self.stream
    }

    /// A streaming decoder over the points, in push order.
    pub fn decoder(&self) -> Decoder<'a> {
        Decoder::new(self.stream, self.point_count)
    }

    /// Bulk-decodes every point, appending timestamps to `times` and values to `values`
    /// (the caller can hand the vectors to Arrow without copying). This is the fast path.
    ///
    /// Same contract as the free [`decode_into`](crate::decode_into): exactly `len()` points
    /// on `Ok`, vectors unchanged in length on `Err`; never panics.
    pub fn decode_into(
        &self,
        times: &mut Vec<i64>,
        values: &mut Vec<f64>,
    ) -> Result<(), DecodeError> {
        decode_into(self.stream, self.point_count, times, values)
    }

    /// An owned copy of the view.
    pub fn to_encoded(&self) -> Encoded {
        Encoded::from_parts(self.stream.to_vec(), self.point_count)
    }

    /// Serializes the view like [`Encoded::to_bytes`], without an intermediate copy.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut bytes = Vec::with_capacity(1 + MAX_COUNT_VARINT_BYTES + self.stream.len());
        bytes.push(FORMAT_VERSION);
        write_count_varint(self.point_count as u64, &mut bytes);
        bytes.extend_from_slice(self.stream);
        bytes
    }
}

impl fmt::Debug for EncodedView<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EncodedView")
            .field("len", &self.point_count)
            .field("stream_bytes", &self.stream.len())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn varint(value: u64) -> Vec<u8> {
        let mut out = Vec::new();
        write_count_varint(value, &mut out);
        out
    }

    #[test]
    fn count_varint_round_trips_at_group_boundaries() {
        for value in [0, 1, 127, 128, 16_383, 16_384, u64::from(u32::MAX), u64::MAX - 1, u64::MAX] {
            let mut bytes = varint(value);
            bytes.push(0xAA);
            assert_eq!(read_count_varint(&bytes), Ok((value, &[0xAA][..])), "{value}");
        }
        assert_eq!(varint(0), [0x00]);
        assert_eq!(varint(300), [0xAC, 0x02]);
        assert_eq!(varint(u64::MAX).len(), MAX_COUNT_VARINT_BYTES);
    }

    #[test]
    fn count_varint_rejects_malformed_input() {
        let problem = |bytes: &[u8]| match read_count_varint(bytes) {
            Err(DecodeError::BadHeader { problem }) => Some(problem),
            _ => None,
        };
        assert_eq!(problem(&[]), Some(HeaderProblem::CountTruncated));
        assert_eq!(problem(&[0x80]), Some(HeaderProblem::CountTruncated));
        assert_eq!(problem(&[0x80, 0x00]), Some(HeaderProblem::CountNotMinimal));
        assert_eq!(problem(&[0xFF; 10]), Some(HeaderProblem::CountOverflow));
        let mut over_u64 = vec![0xFF; 9];
        over_u64.push(0x02);
        assert_eq!(problem(&over_u64), Some(HeaderProblem::CountOverflow));
        let mut too_long = vec![0x80; 10];
        too_long.push(0x01);
        assert_eq!(problem(&too_long), Some(HeaderProblem::CountOverflow));
    }
}
