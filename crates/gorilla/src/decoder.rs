//! Decoding: the bulk [`decode_into`] hot path and the streaming [`Decoder`] iterator.
//!
//! Both run the same per-point step ([`SeriesState::decode_later_point`]) and the same checks,
//! so they accept exactly the same streams and report the same errors.

use std::iter::FusedIterator;

use crate::bits::BitReader;
use crate::format::{max_points_in_stream, ValueWindow, DOD_12_MIN, DOD_7_MIN, DOD_9_MIN};
use crate::DecodeError;

/// Stream bits guaranteed valid in the word handed to the value decoder: a peek guarantees
/// 57, minus the timestamp bit when both come from the same load.
const VALUE_WORD_LOOKAHEAD: u32 = 56;

/// What the decoder remembers between points.
#[derive(Clone, Copy, Debug, Default)]
struct SeriesState {
    previous_time: i64,
    previous_delta: i64,
    previous_value_bits: u64,
    window: ValueWindow,
}

impl SeriesState {
    /// Reads the raw first point. The caller checks truncation.
    #[inline(always)]
    fn decode_first_point(&mut self, reader: &mut BitReader<'_>) -> (i64, u64) {
        self.previous_time = reader.read(64) as i64;
        self.previous_value_bits = reader.read(64);
        (self.previous_time, self.previous_value_bits)
    }

    /// Reads one point after the first. The caller checks truncation: past the end of the
    /// stream the reader sees zeros, so a point that ends past `bits_available` was cut off.
    ///
    /// This branches on the control bits. A branch-free variant (compute `0`/`10`/`11` and
    /// select) measured about 30% slower on the B1 data: with predicted branches the next bit
    /// position does not wait for the load of the current word.
    #[inline(always)]
    fn decode_later_point(
        &mut self,
        reader: &mut BitReader<'_>,
        point_index: usize,
    ) -> Result<(i64, u64), DecodeError> {
        let word = reader.peek();
        // Regular timestamps (`0`) leave 56 guaranteed stream bits in the same load for the
        // value, which saves a dependent load on the common path.
        let value_word = if word >> 63 == 0 {
            reader.skip(1);
            word << 1
        } else {
            let dod = decode_nonzero_delta_of_delta(word, reader);
            self.previous_delta = self.previous_delta.wrapping_add(dod);
            reader.peek()
        };
        self.previous_time = self.previous_time.wrapping_add(self.previous_delta);

        if value_word >> 63 == 0 {
            reader.skip(1);
        } else {
            let xor = self.decode_nonzero_xor(value_word, reader, point_index)?;
            self.previous_value_bits ^= xor;
        }
        Ok((self.previous_time, self.previous_value_bits))
    }

    /// Decodes the `10` / `11` value forms. `word` is the stream from the `1` on, of which at
    /// least the top [`VALUE_WORD_LOOKAHEAD`] bits are valid.
    #[inline(always)]
    fn decode_nonzero_xor(
        &mut self,
        word: u64,
        reader: &mut BitReader<'_>,
        point_index: usize,
    ) -> Result<u64, DecodeError> {
        if word >> 62 == 0b10 {
            let window = self.window;
            if !window.is_set() {
                reader.skip(2);
                return Err(DecodeError::MissingValueWindow { point_index });
            }
            let meaningful_bits = if window.meaningful <= VALUE_WORD_LOOKAHEAD - 2 {
                reader.skip(2 + window.meaningful);
                (word << 2) >> (64 - window.meaningful)
            } else {
                reader.skip(2);
                reader.read(window.meaningful)
            };
            return Ok(meaningful_bits << window.trailing);
        }
        let leading = ((word >> 57) & 0b1_1111) as u32;
        let meaningful = match ((word >> 51) & 0b11_1111) as u32 {
            0 => 64,
            length => length,
        };
        let Some(trailing) = 64u32.checked_sub(leading + meaningful) else {
            reader.skip(13);
            return Err(DecodeError::BadValueWindow {
                point_index,
                leading_zeros: leading,
                meaningful_bits: meaningful,
            });
        };
        let meaningful_bits = if meaningful <= VALUE_WORD_LOOKAHEAD - 13 {
            reader.skip(13 + meaningful);
            (word << 13) >> (64 - meaningful)
        } else {
            reader.skip(13);
            reader.read(meaningful)
        };
        self.window = ValueWindow { leading, trailing, meaningful };
        Ok(meaningful_bits << trailing)
    }
}

/// Decodes the timestamp forms after a leading `1`; `word` is the peeked stream at that bit.
#[inline(always)]
fn decode_nonzero_delta_of_delta(word: u64, reader: &mut BitReader<'_>) -> i64 {
    match (!word).leading_zeros() {
        1 => {
            reader.skip(2 + 7);
            ((word << 2) >> (64 - 7)) as i64 + DOD_7_MIN
        }
        2 => {
            reader.skip(3 + 9);
            ((word << 3) >> (64 - 9)) as i64 + DOD_9_MIN
        }
        3 => {
            reader.skip(4 + 12);
            ((word << 4) >> (64 - 12)) as i64 + DOD_12_MIN
        }
        4 => {
            reader.skip(5 + 32);
            i64::from(((word << 5) >> 32) as u32 as i32)
        }
        _ => {
            reader.skip(5);
            reader.read(64) as i64
        }
    }
}

/// Rejects counts the stream cannot hold, before anyone reserves memory for them.
fn check_count(stream: &[u8], count: usize) -> Result<(), DecodeError> {
    let max_points = max_points_in_stream(stream.len());
    if count as u64 > max_points {
        return Err(DecodeError::CountTooLarge {
            count: count as u64,
            max_points,
            stream_bytes: stream.len(),
        });
    }
    Ok(())
}

/// After the last point only the zero padding of the final byte may remain.
fn check_no_trailing_data(reader: &BitReader<'_>) -> Result<(), DecodeError> {
    let bits_used = reader.position;
    let bits_available = reader.bits_available();
    let stream = reader.bytes();
    let padding_bits = (8 - bits_used % 8) % 8;
    let exact_length = bits_used.div_ceil(8) == stream.len() as u64;
    let padding_is_zero = match stream.last() {
        Some(last) if padding_bits > 0 => last & ((1u8 << padding_bits) - 1) == 0,
        _ => true,
    };
    if exact_length && padding_is_zero {
        Ok(())
    } else {
        Err(DecodeError::TrailingData { bits_used, bits_available })
    }
}

/// Turns a step error into [`DecodeError::Truncated`] when the step already ran off the end:
/// the zeros read past the end, not the stream, produced the error.
#[cold]
fn classify_step_error(
    error: DecodeError,
    reader: &BitReader<'_>,
    point_index: usize,
) -> DecodeError {
    if reader.position > reader.bits_available() {
        truncated(reader, point_index)
    } else {
        error
    }
}

#[cold]
fn truncated(reader: &BitReader<'_>, point_index: usize) -> DecodeError {
    DecodeError::Truncated {
        point_index,
        bits_needed: reader.position,
        bits_available: reader.bits_available(),
    }
}

/// Decodes `count` points from an untrusted `stream`, appending them to `times` and `values`.
///
/// Contract:
/// - On `Ok`, exactly `count` points were appended, bit-exact.
/// - On `Err`, both vectors are truncated back to their lengths on entry (spare capacity
///   may remain).
/// - `count` is checked against the stream length before any memory is reserved (the first
///   point takes 128 bits, each later one at least 2), so this reserves at most
///   `4 * stream.len() + 1` points per vector whatever `count` claims.
/// - The stream must end with the last point: only the zero padding of the final byte may
///   follow ([`DecodeError::TrailingData`] otherwise).
/// - Never panics, runs in time linear in `count` (which is bounded by the stream length).
pub fn decode_into(
    stream: &[u8],
    count: usize,
    times: &mut Vec<i64>,
    values: &mut Vec<f64>,
) -> Result<(), DecodeError> {
    check_count(stream, count)?;
    let times_len_on_entry = times.len();
    let values_len_on_entry = values.len();
    times.reserve(count);
    values.reserve(count);
    let result = decode_points(stream, count, |time, value_bits| {
        times.push(time);
        values.push(f64::from_bits(value_bits));
    });
    if result.is_err() {
        times.truncate(times_len_on_entry);
        values.truncate(values_len_on_entry);
    }
    result
}

/// The hot loop: decodes `count` points (already checked against the stream length) and
/// hands each to `sink`.
#[inline(always)]
fn decode_points(
    stream: &[u8],
    count: usize,
    mut sink: impl FnMut(i64, u64),
) -> Result<(), DecodeError> {
    let mut reader = BitReader::new(stream);
    if count == 0 {
        return check_no_trailing_data(&reader);
    }
    let bits_available = reader.bits_available();
    let mut state = SeriesState::default();
    let (time, value_bits) = state.decode_first_point(&mut reader);
    if reader.position > bits_available {
        return Err(truncated(&reader, 0));
    }
    sink(time, value_bits);
    for point_index in 1..count {
        match state.decode_later_point(&mut reader, point_index) {
            Ok((time, value_bits)) => {
                if reader.position > bits_available {
                    return Err(truncated(&reader, point_index));
                }
                sink(time, value_bits);
            }
            Err(error) => return Err(classify_step_error(error, &reader, point_index)),
        }
    }
    check_no_trailing_data(&reader)
}

/// Streaming decoder over a block: yields `count` points in order, then `None`.
///
/// Yields `Some(Err(..))` at most once and then `None`: on a corrupt point, on a count the
/// stream cannot hold (reported by the first call), or after the last point when the stream has
/// trailing data. Points yielded before an error are correct prefixes of the series. Never
/// panics and never allocates.
#[derive(Clone, Debug)]
pub struct Decoder<'a> {
    reader: BitReader<'a>,
    state: SeriesState,
    count: usize,
    next_index: usize,
    finished: bool,
}

impl<'a> Decoder<'a> {
    pub(crate) fn new(stream: &'a [u8], count: usize) -> Self {
        Self {
            reader: BitReader::new(stream),
            state: SeriesState::default(),
            count,
            next_index: 0,
            finished: false,
        }
    }

    /// Points not yet yielded (including any that will fail to decode).
    pub fn remaining(&self) -> usize {
        if self.finished {
            0
        } else {
            self.count - self.next_index
        }
    }

    fn step(&mut self) -> Result<Option<(i64, f64)>, DecodeError> {
        let point_index = self.next_index;
        if point_index == 0 {
            check_count(self.reader.bytes(), self.count)?;
        }
        if point_index == self.count {
            check_no_trailing_data(&self.reader)?;
            return Ok(None);
        }
        let (time, value_bits) = if point_index == 0 {
            self.state.decode_first_point(&mut self.reader)
        } else {
            self.state
                .decode_later_point(&mut self.reader, point_index)
                .map_err(|error| classify_step_error(error, &self.reader, point_index))?
        };
        if self.reader.position > self.reader.bits_available() {
            return Err(truncated(&self.reader, point_index));
        }
        self.next_index += 1;
        Ok(Some((time, f64::from_bits(value_bits))))
    }
}

impl Iterator for Decoder<'_> {
    type Item = Result<(i64, f64), DecodeError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.finished {
            return None;
        }
        match self.step() {
            Ok(Some(point)) => Some(Ok(point)),
            Ok(None) => {
                self.finished = true;
                None
            }
            Err(error) => {
                self.finished = true;
                Some(Err(error))
            }
        }
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        // Possibly one trailing error item after the points.
        (0, self.remaining().checked_add(1))
    }
}

impl FusedIterator for Decoder<'_> {}
