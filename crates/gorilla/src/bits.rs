//! Bit-level writing and reading, most significant bit first.
//!
//! Both sides work on a plain byte stream so that an [`crate::EncodedView`] can hand out the
//! encoder's bytes without copying. Bit `i` of the stream is bit `7 - i % 8` of byte `i / 8`.

/// Widest field [`BitWriter::write_short`] accepts and the guaranteed lookahead of
/// [`BitReader::peek`]: a field of up to 57 bits at any bit offset (0..=7) fits in one
/// unaligned 8-byte word.
pub(crate) const SHORT_FIELD_MAX_BITS: u32 = 57;

/// Smallest buffer the writer grows to, so tiny series do not reallocate on every byte.
const MIN_BUFFER_BYTES: usize = 64;

/// Appends bit fields to a byte vector.
///
/// Invariant: `bytes.len() >= ceil(bit_len / 8)` and every bit at or past `bit_len` is zero.
/// After a write, at least 8 bytes exist from the byte holding `bit_len` onward, so the next
/// write is one unaligned read-modify-write of 8 bytes.
#[derive(Clone, Debug, Default)]
pub(crate) struct BitWriter {
    bytes: Vec<u8>,
    bit_len: u64,
}

impl BitWriter {
    pub(crate) fn with_capacity_bytes(capacity: usize) -> Self {
        Self { bytes: Vec::with_capacity(capacity), bit_len: 0 }
    }

    pub(crate) fn bit_len(&self) -> u64 {
        self.bit_len
    }

    /// Bytes needed to hold every written bit: `ceil(bit_len / 8)`.
    pub(crate) fn stream_len_bytes(&self) -> usize {
        self.bit_len.div_ceil(8) as usize
    }

    /// Allocated bytes of the buffer (its capacity).
    pub(crate) fn heap_bytes(&self) -> usize {
        self.bytes.capacity()
    }

    /// The written stream; the last byte is padded with zero bits.
    pub(crate) fn stream(&self) -> &[u8] {
        let len = self.stream_len_bytes();
        debug_assert!(self.bytes.len() >= len);
        self.bytes.get(..len).unwrap_or(&self.bytes)
    }

    /// Appends the low `width` bits of `bits`, most significant first.
    ///
    /// `width` must be in `1..=57` and the bits of `bits` above `width` must be zero.
    #[inline]
    pub(crate) fn write_short(&mut self, bits: u64, width: u32) {
        debug_assert!((1..=SHORT_FIELD_MAX_BITS).contains(&width), "width {width}");
        debug_assert!(bits >> width == 0, "bits {bits:#x} wider than {width}");
        let byte_index = (self.bit_len >> 3) as usize;
        let bit_offset = (self.bit_len & 7) as u32;
        if self.bytes.len() < byte_index + 8 {
            self.grow(byte_index + 8);
        }
        if let Some(chunk) =
            self.bytes.get_mut(byte_index..).and_then(|rest| rest.first_chunk_mut::<8>())
        {
            // The bits at and after `bit_len` are zero, so OR-ing places the field.
            let word = u64::from_be_bytes(*chunk) | ((bits << (64 - width)) >> bit_offset);
            *chunk = word.to_be_bytes();
        } else {
            debug_assert!(false, "grow() leaves 8 bytes past the write position");
        }
        self.bit_len += u64::from(width);
    }

    /// Appends the low `width` bits of `bits` (`width` in `1..=64`), most significant first.
    #[inline]
    pub(crate) fn write(&mut self, bits: u64, width: u32) {
        if width <= SHORT_FIELD_MAX_BITS {
            self.write_short(bits, width);
        } else {
            let low_width = width - 32;
            self.write_short(bits >> low_width, 32);
            self.write_short(bits & ((1u64 << low_width) - 1), low_width);
        }
    }

    /// Makes at least `min_len` bytes addressable, zero-filled.
    #[cold]
    #[inline(never)]
    fn grow(&mut self, min_len: usize) {
        let doubled = self.bytes.len().saturating_mul(2).max(MIN_BUFFER_BYTES).max(min_len);
        // Use capacity reserved up front (with_capacity_points) before reallocating past it.
        let capacity = self.bytes.capacity();
        let target = if capacity >= min_len { doubled.min(capacity) } else { doubled };
        self.bytes.resize(target, 0);
    }

    /// Drops the slack bytes and spare capacity; later writes grow the buffer again.
    pub(crate) fn shrink_to_fit(&mut self) {
        self.bytes.truncate(self.stream_len_bytes());
        self.bytes.shrink_to_fit();
    }

    /// The stream bytes, exactly `ceil(bit_len / 8)` of them, with no spare capacity.
    pub(crate) fn into_stream(mut self) -> Vec<u8> {
        self.shrink_to_fit();
        self.bytes
    }
}

/// Reads bit fields from a byte slice by absolute bit position.
///
/// Reads past the end of the slice see zero bits and still advance `position`; callers compare
/// `position` with [`BitReader::bits_available`] after each point to detect truncation. That
/// keeps the hot path to one length check per 8-byte load.
#[derive(Clone, Copy)]
pub(crate) struct BitReader<'a> {
    bytes: &'a [u8],
    /// Next bit to read, counted from the start of the stream.
    pub(crate) position: u64,
}

impl<'a> BitReader<'a> {
    pub(crate) fn new(bytes: &'a [u8]) -> Self {
        Self { bytes, position: 0 }
    }

    pub(crate) fn bytes(&self) -> &'a [u8] {
        self.bytes
    }

    pub(crate) fn bits_available(&self) -> u64 {
        self.bytes.len() as u64 * 8
    }

    /// The 64 bits starting at `position`, left-aligned; zero past the end of the stream.
    /// Only the top 57 bits are guaranteed to be stream bits (the rest may be zero filler).
    #[inline(always)]
    pub(crate) fn peek(&self) -> u64 {
        let byte_index = (self.position >> 3) as usize;
        let word = match self.bytes.get(byte_index..).and_then(|rest| rest.first_chunk::<8>()) {
            Some(chunk) => u64::from_be_bytes(*chunk),
            None => load_be_u64_zero_padded(self.bytes, byte_index),
        };
        word << (self.position & 7)
    }

    #[inline(always)]
    pub(crate) fn skip(&mut self, width: u32) {
        self.position += u64::from(width);
    }

    /// Reads a `width`-bit field (`width` in `1..=64`) as an unsigned integer.
    #[inline(always)]
    pub(crate) fn read(&mut self, width: u32) -> u64 {
        debug_assert!((1..=64).contains(&width));
        if width <= SHORT_FIELD_MAX_BITS {
            let field = self.peek() >> (64 - width);
            self.skip(width);
            field
        } else {
            let high = self.peek() >> 32;
            self.skip(32);
            let low_width = width - 32;
            let low = self.peek() >> (64 - low_width);
            self.skip(low_width);
            (high << low_width) | low
        }
    }
}

impl std::fmt::Debug for BitReader<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BitReader")
            .field("position", &self.position)
            .field("bits_available", &self.bits_available())
            .finish()
    }
}

/// Big-endian load of up to 8 bytes from `index`, zero-filled past the end of `bytes`.
#[cold]
#[inline(never)]
fn load_be_u64_zero_padded(bytes: &[u8], index: usize) -> u64 {
    let mut chunk = [0u8; 8];
    if let Some(rest) = bytes.get(index..) {
        for (slot, byte) in chunk.iter_mut().zip(rest) {
            *slot = *byte;
        }
    }
    u64::from_be_bytes(chunk)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_most_significant_bit_first_and_pads_with_zeros() {
        let mut writer = BitWriter::default();
        writer.write(0b1, 1);
        writer.write(0b01, 2);
        writer.write(0b1_1111, 5);
        writer.write(0b101, 3);
        assert_eq!(writer.bit_len(), 11);
        assert_eq!(writer.stream(), &[0b1011_1111, 0b1010_0000]);
    }

    #[test]
    fn wide_fields_round_trip_at_every_bit_offset() {
        for offset in 0..8u32 {
            for width in [1u32, 7, 31, 32, 33, 56, 57, 58, 63, 64] {
                let value = 0xDEAD_BEEF_CAFE_F00Du64 >> (64 - width);
                let mut writer = BitWriter::default();
                if offset > 0 {
                    writer.write((1u64 << offset) - 1, offset);
                }
                writer.write(value, width);
                writer.write(1, 1);
                let mut reader = BitReader::new(writer.stream());
                if offset > 0 {
                    assert_eq!(reader.read(offset), (1u64 << offset) - 1);
                }
                assert_eq!(reader.read(width), value, "offset {offset} width {width}");
                assert_eq!(reader.read(1), 1);
                assert_eq!(reader.position, u64::from(offset + width + 1));
            }
        }
    }

    #[test]
    fn reads_past_the_end_see_zeros() {
        let mut reader = BitReader::new(&[0xFF]);
        assert_eq!(reader.read(4), 0xF);
        assert_eq!(reader.read(8), 0xF0);
        assert_eq!(reader.position, 12);
        assert!(reader.position > reader.bits_available());
    }

    #[test]
    fn reserved_capacity_is_used_before_reallocating() {
        let mut writer = BitWriter::with_capacity_bytes(1000);
        for _ in 0..900 {
            writer.write(0xAB, 8);
        }
        assert_eq!(writer.heap_bytes(), 1000);
        writer.shrink_to_fit();
        assert_eq!(writer.stream().len(), 900);
        writer.write(1, 1);
        assert_eq!(writer.stream().len(), 901);
        assert_eq!(writer.stream().last(), Some(&0x80));
    }
}
