//! Bit-level writing and reading, most significant bit first.
//!
//! Both sides work on a plain byte stream so that an [`crate::EncodedView`] can hand out the
//! encoder's bytes without copying. Bit `i` of the stream is bit `7 - i % 8` of byte `i / 8`.

/// Guaranteed lookahead of [`BitReader::peek`] and the widest field [`BitReader::read`] takes
/// in one load: a field of up to 57 bits at any bit offset (0..=7) fits in one unaligned
/// 8-byte word.
pub(crate) const SHORT_FIELD_MAX_BITS: u32 = 57;

/// Smallest buffer the writer grows to, so tiny series do not reallocate on every byte.
const MIN_BUFFER_BYTES: usize = 64;

/// Appends bit fields to a byte vector.
///
/// The 64-bit word holding the write position lives in a register (`current_word`) and is
/// stored whole, big-endian, at its 8-byte slot after every write. So the buffer always holds
/// every written bit (views read it directly), and writes never load from the buffer: an
/// unaligned read-modify-write would stall on store forwarding at every point.
///
/// Invariants: every bit at or past `bit_len` is zero in `current_word` and, within the
/// current word's slot, in `bytes` (later bytes are never visible). `bytes` covers the current
/// word's slot and the next one, except right after [`BitWriter::shrink_to_fit`] (the next
/// write grows it back).
#[derive(Clone, Debug, Default)]
pub(crate) struct BitWriter {
    bytes: Vec<u8>,
    bit_len: u64,
    current_word: u64,
}

impl BitWriter {
    pub(crate) fn with_capacity_bytes(capacity: usize) -> Self {
        Self { bytes: Vec::with_capacity(capacity), bit_len: 0, current_word: 0 }
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

    /// Appends the low `width` bits of `bits` (`width` in `1..=64`), most significant first.
    /// The bits of `bits` above `width` must be zero.
    #[inline]
    pub(crate) fn write(&mut self, bits: u64, width: u32) {
        debug_assert!((1..=64).contains(&width), "width {width}");
        debug_assert!(width == 64 || bits >> width == 0, "bits {bits:#x} wider than {width}");
        let word_index = (self.bit_len / 64) as usize;
        let free_bits = 64 - (self.bit_len % 64) as u32;
        if self.bytes.len() < (word_index + 2) * 8 {
            self.grow((word_index + 2) * 8);
        }
        if width < free_bits {
            self.current_word |= bits << (free_bits - width);
            self.store_word(word_index);
        } else {
            // Fill the current word, then start the next one with the rest of the field.
            let spilled_bits = width - free_bits;
            self.current_word |= bits >> spilled_bits;
            self.store_word(word_index);
            self.current_word = if spilled_bits == 0 { 0 } else { bits << (64 - spilled_bits) };
            self.store_word(word_index + 1);
        }
        self.bit_len += u64::from(width);
    }

    #[inline(always)]
    fn store_word(&mut self, word_index: usize) {
        match self.bytes.get_mut(word_index * 8..).and_then(|rest| rest.first_chunk_mut::<8>()) {
            Some(slot) => *slot = self.current_word.to_be_bytes(),
            None => debug_assert!(false, "write() grows the buffer before storing"),
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

    /// Empties the writer, keeping the allocation. Stale bytes past the new `bit_len` need no
    /// zeroing: every write stores its whole current word, and nothing past it is visible.
    pub(crate) fn cleared(mut self) -> Self {
        self.bit_len = 0;
        self.current_word = 0;
        self
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
        self.peek_at(self.position)
    }

    /// Like [`BitReader::peek`] at an arbitrary bit `position`, without moving.
    #[inline(always)]
    pub(crate) fn peek_at(&self, position: u64) -> u64 {
        let byte_index = (position >> 3) as usize;
        let word = match self.bytes.get(byte_index..).and_then(|rest| rest.first_chunk::<8>()) {
            Some(chunk) => u64::from_be_bytes(*chunk),
            None => load_be_u64_zero_padded(self.bytes, byte_index),
        };
        word << (position & 7)
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
    fn fields_round_trip_at_every_offset_within_and_across_words() {
        for offset in 0..140u32 {
            for width in [1u32, 7, 31, 32, 33, 56, 57, 58, 63, 64] {
                let value = 0xDEAD_BEEF_CAFE_F00Du64 >> (64 - width);
                let mut writer = BitWriter::default();
                let mut prefix_left = offset;
                while prefix_left > 0 {
                    let chunk = prefix_left.min(64);
                    writer.write(u64::MAX >> (64 - chunk), chunk);
                    prefix_left -= chunk;
                }
                writer.write(value, width);
                writer.write(1, 1);
                assert_eq!(writer.stream().len() as u64, writer.bit_len().div_ceil(8));
                let mut reader = BitReader::new(writer.stream());
                let mut prefix_left = offset;
                while prefix_left > 0 {
                    let chunk = prefix_left.min(64);
                    assert_eq!(reader.read(chunk), u64::MAX >> (64 - chunk));
                    prefix_left -= chunk;
                }
                assert_eq!(reader.read(width), value, "offset {offset} width {width}");
                assert_eq!(reader.read(1), 1);
                assert_eq!(reader.position, u64::from(offset + width + 1));
                assert_eq!(reader.read(7), 0, "padding is zero");
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
