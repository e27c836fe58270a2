//! The streaming [`Encoder`].

use std::fmt;

use crate::bits::BitWriter;
use crate::format::{
    ValueWindow, DOD_12_MAX, DOD_12_MIN, DOD_7_MAX, DOD_7_MIN, DOD_9_MAX, DOD_9_MIN,
    MAX_STORED_LEADING_ZEROS,
};
use crate::{Encoded, EncodedView};

/// Bytes reserved per point by [`Encoder::with_capacity_points`]: 64 bits covers regular
/// timestamps with noisy two-decimal values (about 50 bits per point) without reallocating.
const RESERVED_BYTES_PER_POINT: usize = 8;

/// Streaming Gorilla encoder: points are appended one at a time, in any timestamp order.
///
/// Every `(i64, f64)` pair is accepted and round-trips bit for bit (NaN payloads, `-0.0`,
/// infinities, subnormals; decreasing, repeated and extreme timestamps). Pushing never fails
/// and never reorders. The encoded bits are readable at any time through [`Encoder::view`]
/// while the encoder keeps accepting points.
#[derive(Clone, Default)]
pub struct Encoder {
    writer: BitWriter,
    point_count: usize,
    previous_time: i64,
    previous_delta: i64,
    previous_value_bits: u64,
    window: ValueWindow,
}

impl Encoder {
    /// An empty encoder; allocates nothing until the first push.
    pub fn new() -> Self {
        Self::default()
    }

    /// An empty encoder with room for `point_count` points of up to 64 bits each, so typical
    /// series do not reallocate while growing to that size.
    pub fn with_capacity_points(point_count: usize) -> Self {
        let capacity = point_count.saturating_mul(RESERVED_BYTES_PER_POINT).saturating_add(16);
        Self { writer: BitWriter::with_capacity_bytes(capacity), ..Self::default() }
    }

    /// Appends one point. Timestamps need not be ordered; any value bit pattern is kept exactly.
    #[inline]
    pub fn push(&mut self, time_ns: i64, value: f64) {
        let value_bits = value.to_bits();
        if self.point_count == 0 {
            self.writer.write(time_ns as u64, 64);
            self.writer.write(value_bits, 64);
        } else {
            let delta = time_ns.wrapping_sub(self.previous_time);
            self.write_delta_of_delta(delta.wrapping_sub(self.previous_delta));
            self.previous_delta = delta;
            self.write_value(value_bits ^ self.previous_value_bits);
        }
        self.previous_time = time_ns;
        self.previous_value_bits = value_bits;
        self.point_count += 1;
    }

    #[inline]
    fn write_delta_of_delta(&mut self, dod: i64) {
        let writer = &mut self.writer;
        if dod == 0 {
            writer.write(0b0, 1);
        } else if (DOD_7_MIN..=DOD_7_MAX).contains(&dod) {
            writer.write((0b10 << 7) | (dod - DOD_7_MIN) as u64, 2 + 7);
        } else if (DOD_9_MIN..=DOD_9_MAX).contains(&dod) {
            writer.write((0b110 << 9) | (dod - DOD_9_MIN) as u64, 3 + 9);
        } else if (DOD_12_MIN..=DOD_12_MAX).contains(&dod) {
            writer.write((0b1110 << 12) | (dod - DOD_12_MIN) as u64, 4 + 12);
        } else if let Ok(dod) = i32::try_from(dod) {
            // Two's complement in 32 bits.
            writer.write((0b11110 << 32) | u64::from(dod as u32), 5 + 32);
        } else {
            writer.write(0b11111, 5);
            writer.write(dod as u64, 64);
        }
    }

    #[inline]
    fn write_value(&mut self, xor: u64) {
        if xor == 0 {
            self.writer.write(0b0, 1);
            return;
        }
        let leading = xor.leading_zeros().min(MAX_STORED_LEADING_ZEROS);
        let trailing = xor.trailing_zeros();
        let window = self.window;
        if window.is_set() && leading >= window.leading && trailing >= window.trailing {
            let meaningful_bits = xor >> window.trailing;
            self.write_control_and_field(0b10, 2, meaningful_bits, window.meaningful);
        } else {
            let meaningful = 64 - leading - trailing;
            // The 6-bit length field stores 64 as 0 (a non-zero XOR has at least one bit).
            let header = (0b11 << 11) | (leading << 6) | (meaningful & 0b11_1111);
            self.write_control_and_field(u64::from(header), 13, xor >> trailing, meaningful);
            self.window = ValueWindow { leading, trailing, meaningful };
        }
    }

    /// Writes `control` then `field`, in one write when both fit.
    #[inline(always)]
    fn write_control_and_field(
        &mut self,
        control: u64,
        control_width: u32,
        field: u64,
        width: u32,
    ) {
        if control_width + width <= 64 {
            self.writer.write((control << width) | field, control_width + width);
        } else {
            self.writer.write(control, control_width);
            self.writer.write(field, width);
        }
    }

    /// Number of points pushed so far.
    pub fn len(&self) -> usize {
        self.point_count
    }

    /// True when no point was pushed yet.
    pub fn is_empty(&self) -> bool {
        self.point_count == 0
    }

    /// Exact number of stream bits written so far (no header, no padding).
    pub fn bit_len(&self) -> u64 {
        self.writer.bit_len()
    }

    /// The last point pushed, bit-exact, or `None` when empty.
    pub fn last(&self) -> Option<(i64, f64)> {
        (self.point_count > 0)
            .then(|| (self.previous_time, f64::from_bits(self.previous_value_bits)))
    }

    /// Bytes needed to hold the stream: `ceil(bit_len / 8)`. This is what the stream costs
    /// once finished; [`Encoder::heap_bytes`] is what it costs while growing.
    pub fn encoded_bytes(&self) -> usize {
        self.writer.stream_len_bytes()
    }

    /// Bytes currently allocated on the heap by this encoder (buffer capacity, including the
    /// growth slack), for memory accounting.
    pub fn heap_bytes(&self) -> usize {
        self.writer.heap_bytes()
    }

    /// A zero-copy snapshot of every point pushed so far. It borrows the encoder, so the
    /// encoder cannot be pushed to while the view lives; decode it (or copy it with
    /// [`EncodedView::to_encoded`]) and drop it to continue.
    pub fn view(&self) -> EncodedView<'_> {
        EncodedView::from_parts(self.writer.stream(), self.point_count)
    }

    /// The owned block: exactly `encoded_bytes()` stream bytes, no spare capacity.
    pub fn finish(self) -> Encoded {
        let point_count = self.point_count;
        Encoded::from_parts(self.writer.into_stream(), point_count)
    }

    /// Removes every point and keeps the allocation, so the encoder can be reused (for
    /// example after a flush) without growing a new buffer.
    pub fn clear(&mut self) {
        let writer = std::mem::take(&mut self.writer);
        *self = Self { writer: writer.cleared(), ..Self::default() };
    }

    /// Releases spare capacity (for a series that stopped growing). Pushing afterwards is
    /// allowed and regrows the buffer.
    pub fn shrink_to_fit(&mut self) {
        self.writer.shrink_to_fit();
    }
}

impl fmt::Debug for Encoder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Encoder")
            .field("len", &self.point_count)
            .field("bit_len", &self.bit_len())
            .field("heap_bytes", &self.heap_bytes())
            .finish_non_exhaustive()
    }
}
