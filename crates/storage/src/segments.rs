//! Segments: exact aggregates of runs of a series' rows inside a data file, stored in the
//! file's footer so aggregates over hours (or over a range that cuts a file) are answered
//! without decoding those rows.
//!
//! When a file is written, each series' rows (its *chunk*) are cut into segments at every
//! UTC hour boundary ([`SEGMENT_ALIGN_NS`], multiples of one hour since the epoch) and after
//! at most [`SEGMENT_MAX_ROWS`] rows. A time bucket made of whole hours aligned to the epoch
//! (1 h, 6 h, 1 day in UTC) therefore never cuts a segment, and a query range cuts at most one
//! segment at each of its ends. Per segment the footer stores its row count, first and last
//! timestamp, [`ExactSum`] and `totalOrder` minimum and maximum; [`crate::aggregate`] merges
//! the segments it may use and decodes only the rows of the others.
//!
//! **Why 4096 rows.** A range edge decodes the rows of at most one segment per series; the
//! index costs about 23 bytes per segment in the footer (1 Hz 2-decimal readings, measured by
//! `examples/aggregate_week.rs`: 16,819 segments for B5's week, 383 KB, 2.5 ms to load) and
//! 58–75 bytes in memory. At 1 Hz an hour is 3600 rows, so 4096 gives exactly one segment
//! per hour (24 per series per day file) and the cap only cuts denser series (10 Hz: 9
//! segments per hour). A smaller cap would multiply the index for little gain: decoding a few
//! rows still decompresses and decodes the Parquet pages holding them (64 Ki rows by
//! default), so the edge cost is bounded by the page size, not by the segment's.
//!
//! # Footer format
//!
//! Footer key [`SEGMENTS_KEY`] (`minitrue.segments`), absent in files written before
//! segments (they are aggregated per chunk only). Value: `zstd+base64:` then the base64 of
//! the zstd-compressed payload:
//!
//! | field | encoding |
//! |---|---|
//! | format version | `u8`, [`SEGMENTS_FORMAT_VERSION`] = 1 |
//! | alignment (ns), row cap | varint, varint (how the writer cut; informative) |
//! | series count `S` | varint, equal to the series index's |
//! | segments per series | `S` varints, in series index order |
//! | row count | one varint per segment (all segments, series after series) |
//! | first time | zigzag varint per segment: minus the previous segment's last time (0 before the first) |
//! | last time | varint per segment: minus its first time |
//! | minimum, maximum | `u64` LE bits per segment, byte-plane split (all first bytes, then all second bytes, …) |
//! | exact sum | varint length per segment, then every segment's [`ExactSum::to_bytes`] |
//!
//! Varints are unsigned LEB128. Columns keep like values together so zstd compresses them
//! (timestamps of regular series and row counts vanish; sums and extremes dominate).

use base64::Engine as _;
use minitrue_common::TimeRange;

use crate::error::{Result, StorageError};
use crate::exact::{total_max, total_min, ExactSum, ValueAggregate};

/// Footer key of the segment index.
pub const SEGMENTS_KEY: &str = "minitrue.segments";
/// Version of the payload layout described in the module docs.
pub const SEGMENTS_FORMAT_VERSION: u8 = 1;
/// Segments never span a multiple of this (one hour), counted from the Unix epoch in UTC.
pub const SEGMENT_ALIGN_NS: i64 = 3_600_000_000_000;
/// Most rows in one segment (see the module docs for the choice).
pub const SEGMENT_MAX_ROWS: u32 = 4096;

const COMPRESSED_PREFIX: &str = "zstd+base64:";
/// Largest decompressed payload accepted.
const MAX_PAYLOAD_BYTES: usize = 1 << 30;
const BASE64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;

/// The segments of every series of one file, in series index order. Columnar: one segment
/// costs 40 bytes of memory plus its sum (18 or 35 bytes for usual values).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SegmentIndex {
    /// Segments of series `i` are `series_start[i]..series_start[i + 1]`.
    series_start: Vec<u32>,
    rows: Vec<u32>,
    first: Vec<i64>,
    last: Vec<i64>,
    min_bits: Vec<u64>,
    max_bits: Vec<u64>,
    /// The sum of segment `j` is `sum_bytes[sum_end[j - 1]..sum_end[j]]`.
    sum_end: Vec<u32>,
    sum_bytes: Vec<u8>,
}

/// The segments of one series in one file.
#[derive(Debug, Clone, Copy)]
pub struct SeriesSegments<'a> {
    index: &'a SegmentIndex,
    /// Global indices of this series' segments.
    start: usize,
    end: usize,
}

/// One segment: rows `row_offset..row_offset + rows` of its series' chunk (relative to the
/// chunk's first row), with exact aggregates.
#[derive(Debug, Clone, Copy)]
pub struct Segment<'a> {
    pub row_offset: u64,
    pub rows: u64,
    pub time: TimeRange,
    pub min: f64,
    pub max: f64,
    /// [`ExactSum::to_bytes`] of the values (validated when the file was opened).
    pub sum: &'a [u8],
}

impl Segment<'_> {
    /// Adds this segment's points to an aggregate.
    pub fn merge_into(&self, aggregate: &mut ValueAggregate) -> Result<()> {
        aggregate.sum.merge_bytes(self.sum)?;
        if aggregate.count == 0 {
            aggregate.min = self.min;
            aggregate.max = self.max;
        } else {
            aggregate.min = total_min(aggregate.min, self.min);
            aggregate.max = total_max(aggregate.max, self.max);
        }
        aggregate.count += self.rows;
        Ok(())
    }
}

impl<'a> SeriesSegments<'a> {
    pub fn len(&self) -> usize {
        self.end - self.start
    }

    pub fn is_empty(&self) -> bool {
        self.end == self.start
    }

    /// Time range of segment `i`.
    pub fn time(&self, i: usize) -> TimeRange {
        let j = self.start + i;
        TimeRange::new(self.index.first[j], self.index.last[j])
    }

    /// Whether any point of the series in this file may lie in `range` (some segment overlaps
    /// it). Segments are in time order and disjoint.
    pub fn overlaps(&self, range: &TimeRange) -> bool {
        if range.is_empty() {
            return false;
        }
        let last = &self.index.last[self.start..self.end];
        let i = last.partition_point(|&t| t < range.start);
        i < last.len() && self.index.first[self.start + i] <= range.end
    }

    /// The segments in row (and time) order.
    pub fn iter(&self) -> impl Iterator<Item = Segment<'a>> + 'a {
        let index = self.index;
        let mut row_offset = 0u64;
        (self.start..self.end).map(move |j| {
            let rows = u64::from(index.rows[j]);
            let segment = Segment {
                row_offset,
                rows,
                time: TimeRange::new(index.first[j], index.last[j]),
                min: f64::from_bits(index.min_bits[j]),
                max: f64::from_bits(index.max_bits[j]),
                sum: index.sum(j),
            };
            row_offset += rows;
            segment
        })
    }
}

impl SegmentIndex {
    /// Number of series.
    pub fn series(&self) -> usize {
        self.series_start.len().saturating_sub(1)
    }

    /// Number of segments of all series.
    pub fn len(&self) -> usize {
        self.rows.len()
    }

    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    /// The segments of the series at `position` in the series index.
    pub fn of_series(&self, position: usize) -> Option<SeriesSegments<'_>> {
        let start = *self.series_start.get(position)? as usize;
        let end = *self.series_start.get(position + 1)? as usize;
        Some(SeriesSegments { index: self, start, end })
    }

    fn sum(&self, j: usize) -> &[u8] {
        let start = if j == 0 { 0 } else { self.sum_end[j - 1] as usize };
        &self.sum_bytes[start..self.sum_end[j] as usize]
    }

    /// Footer value (see the module docs).
    pub fn encode(&self, zstd_level: i32) -> Result<String> {
        let n = self.len();
        let mut out = Vec::with_capacity(16 + n * 48);
        out.push(SEGMENTS_FORMAT_VERSION);
        put_varint(&mut out, SEGMENT_ALIGN_NS as u64);
        put_varint(&mut out, u64::from(SEGMENT_MAX_ROWS));
        put_varint(&mut out, self.series() as u64);
        for window in self.series_start.windows(2) {
            put_varint(&mut out, u64::from(window[1] - window[0]));
        }
        for &rows in &self.rows {
            put_varint(&mut out, u64::from(rows));
        }
        let mut previous_last = 0i64;
        for (&first, &last) in self.first.iter().zip(&self.last) {
            put_varint(&mut out, zigzag(first.wrapping_sub(previous_last)));
            previous_last = last;
        }
        for (&first, &last) in self.first.iter().zip(&self.last) {
            put_varint(&mut out, last.wrapping_sub(first) as u64);
        }
        for bits in [&self.min_bits, &self.max_bits] {
            for byte in 0..8 {
                out.extend(bits.iter().map(|b| (b >> (8 * byte)) as u8));
            }
        }
        for j in 0..n {
            put_varint(&mut out, self.sum(j).len() as u64);
        }
        out.extend_from_slice(&self.sum_bytes);
        let compressed = zstd::bulk::compress(&out, zstd_level)
            .map_err(|e| StorageError::Task(format!("segment index zstd: {e}")))?;
        Ok(format!("{COMPRESSED_PREFIX}{}", BASE64.encode(compressed)))
    }

    /// Parses [`SegmentIndex::encode`] and checks it against the series index of the same
    /// file: `chunks[i]` is the `(rows, time range)` of series `i`.
    pub fn decode(path: &str, text: &str, chunks: &[(u64, TimeRange)]) -> Result<SegmentIndex> {
        let corrupt = |reason: String| StorageError::CorruptFile {
            path: path.to_string(),
            reason: format!("segment index: {reason}"),
        };
        let encoded = text
            .strip_prefix(COMPRESSED_PREFIX)
            .ok_or_else(|| corrupt("unknown encoding".to_string()))?;
        let compressed = BASE64.decode(encoded).map_err(|e| corrupt(format!("base64: {e}")))?;
        let payload = zstd::bulk::decompress(&compressed, MAX_PAYLOAD_BYTES)
            .map_err(|e| corrupt(format!("zstd: {e}")))?;
        let mut input = Reader { bytes: &payload };
        let version = input.byte().ok_or_else(|| corrupt("empty".to_string()))?;
        if version != SEGMENTS_FORMAT_VERSION {
            return Err(corrupt(format!("unknown format version {version}")));
        }
        let truncated = || corrupt("truncated".to_string());
        let _align = input.varint().ok_or_else(truncated)?;
        let _max_rows = input.varint().ok_or_else(truncated)?;
        let series = input.varint().ok_or_else(truncated)?;
        if series != chunks.len() as u64 {
            return Err(corrupt(format!("{series} series, the series index has {}", chunks.len())));
        }
        let mut series_start = Vec::with_capacity(chunks.len() + 1);
        series_start.push(0u32);
        let mut total = 0u64;
        for _ in 0..series {
            total += input.varint().ok_or_else(truncated)?;
            // Every segment takes at least 20 payload bytes: a count above that is damage,
            // refused before anything that size is allocated.
            if total > payload.len() as u64 / 20 {
                return Err(truncated());
            }
            series_start.push(total as u32);
        }
        let n = total as usize;
        let mut index = SegmentIndex {
            series_start,
            rows: Vec::with_capacity(n),
            first: Vec::with_capacity(n),
            last: Vec::with_capacity(n),
            min_bits: vec![0; n],
            max_bits: vec![0; n],
            sum_end: Vec::with_capacity(n),
            sum_bytes: Vec::new(),
        };
        for _ in 0..n {
            let rows = input.varint().ok_or_else(truncated)?;
            index.rows.push(u32::try_from(rows).map_err(|_| corrupt("row count".to_string()))?);
        }
        let mut first_deltas = Vec::with_capacity(n);
        for _ in 0..n {
            first_deltas.push(unzigzag(input.varint().ok_or_else(truncated)?));
        }
        let mut previous_last = 0i64;
        for delta in first_deltas {
            let first = previous_last.wrapping_add(delta);
            let span = input.varint().ok_or_else(truncated)?;
            let last = first.wrapping_add(span as i64);
            index.first.push(first);
            index.last.push(last);
            previous_last = last;
        }
        for bits in [&mut index.min_bits, &mut index.max_bits] {
            for byte in 0..8 {
                let plane = input.take(n).ok_or_else(truncated)?;
                for (value, &b) in bits.iter_mut().zip(plane) {
                    *value |= u64::from(b) << (8 * byte);
                }
            }
        }
        let mut end = 0u64;
        for _ in 0..n {
            end += input.varint().ok_or_else(truncated)?;
            if end > payload.len() as u64 {
                return Err(truncated());
            }
            index.sum_end.push(end as u32);
        }
        index.sum_bytes = input.take(end as usize).ok_or_else(truncated)?.to_vec();
        if !input.bytes.is_empty() {
            return Err(corrupt("trailing bytes".to_string()));
        }
        index.validate(chunks).map_err(corrupt)?;
        Ok(index)
    }

    /// The rules a written index follows: segments of a series cover its rows, lie in its time
    /// range in order without overlapping, and hold valid sums.
    fn validate(&self, chunks: &[(u64, TimeRange)]) -> std::result::Result<(), String> {
        for (i, &(rows, time)) in chunks.iter().enumerate() {
            let (start, end) = (self.series_start[i] as usize, self.series_start[i + 1] as usize);
            if start == end {
                return Err(format!("series {i} has no segment"));
            }
            let mut covered = 0u64;
            for j in start..end {
                if self.rows[j] == 0 || self.first[j] > self.last[j] {
                    return Err(format!("segment {j} is empty"));
                }
                if j > start && self.first[j] <= self.last[j - 1] {
                    return Err(format!("segment {j} overlaps the previous one"));
                }
                covered += u64::from(self.rows[j]);
                ExactSum::from_bytes(self.sum(j)).map_err(|e| format!("segment {j}: {e}"))?;
            }
            if covered != rows || self.first[start] != time.start || self.last[end - 1] != time.end
            {
                return Err(format!("segments of series {i} differ from its chunk"));
            }
        }
        Ok(())
    }
}

/// Cuts the rows of each series into segments as a file is written.
#[derive(Debug, Default)]
pub(crate) struct SegmentWriter {
    index: SegmentIndex,
    open: Option<OpenSegment>,
}

#[derive(Debug)]
struct OpenSegment {
    hour: i64,
    rows: u32,
    first: i64,
    last: i64,
    aggregate: ValueAggregate,
}

impl SegmentWriter {
    /// Starts the next series (rows pushed after this belong to it).
    pub(crate) fn start_series(&mut self) {
        self.close();
        self.index.series_start.push(self.index.rows.len() as u32);
    }

    /// Appends the next row of the current series (times strictly increasing).
    pub(crate) fn push(&mut self, time: i64, value: f64) {
        let hour = time.div_euclid(SEGMENT_ALIGN_NS);
        if let Some(open) = &mut self.open {
            if open.hour == hour && open.rows < SEGMENT_MAX_ROWS {
                open.rows += 1;
                open.last = time;
                open.aggregate.add(value);
                return;
            }
        }
        self.close();
        let aggregate = ValueAggregate::of(&[value]);
        self.open = Some(OpenSegment { hour, rows: 1, first: time, last: time, aggregate });
    }

    fn close(&mut self) {
        let Some(open) = self.open.take() else { return };
        let index = &mut self.index;
        index.rows.push(open.rows);
        index.first.push(open.first);
        index.last.push(open.last);
        index.min_bits.push(open.aggregate.min.to_bits());
        index.max_bits.push(open.aggregate.max.to_bits());
        index.sum_bytes.extend_from_slice(&open.aggregate.sum.to_bytes());
        index.sum_end.push(index.sum_bytes.len() as u32);
    }

    pub(crate) fn finish(mut self) -> SegmentIndex {
        self.close();
        // The end of the last series (or the only entry of an index without series).
        self.index.series_start.push(self.index.rows.len() as u32);
        self.index
    }
}

fn put_varint(out: &mut Vec<u8>, mut value: u64) {
    while value >= 0x80 {
        out.push((value as u8) | 0x80);
        value >>= 7;
    }
    out.push(value as u8);
}

fn zigzag(value: i64) -> u64 {
    ((value << 1) ^ (value >> 63)) as u64
}

fn unzigzag(value: u64) -> i64 {
    ((value >> 1) as i64) ^ -((value & 1) as i64)
}

struct Reader<'a> {
    bytes: &'a [u8],
}

impl<'a> Reader<'a> {
    fn byte(&mut self) -> Option<u8> {
        let (&first, rest) = self.bytes.split_first()?;
        self.bytes = rest;
        Some(first)
    }

    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        if self.bytes.len() < n {
            return None;
        }
        let (taken, rest) = self.bytes.split_at(n);
        self.bytes = rest;
        Some(taken)
    }

    fn varint(&mut self) -> Option<u64> {
        let mut value = 0u64;
        for shift in (0..64).step_by(7) {
            let byte = self.byte()?;
            value |= u64::from(byte & 0x7f) << shift;
            if byte & 0x80 == 0 {
                return Some(value);
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOUR: i64 = SEGMENT_ALIGN_NS;

    fn payload(index: &SegmentIndex) -> Vec<u8> {
        let text = index.encode(1).unwrap();
        let compressed = BASE64.decode(text.strip_prefix(COMPRESSED_PREFIX).unwrap()).unwrap();
        zstd::bulk::decompress(&compressed, 1 << 20).unwrap()
    }

    fn hex(bytes: &[u8]) -> String {
        bytes.iter().map(|b| format!("{b:02x}")).collect()
    }

    #[test]
    fn payload_bytes_are_stable() {
        // Series 0: two points before an hour boundary and one on it; series 1: one NaN.
        let mut writer = SegmentWriter::default();
        writer.start_series();
        writer.push(HOUR - 2, 1.5);
        writer.push(HOUR - 1, -0.0);
        writer.push(HOUR, 2.0);
        writer.start_series();
        writer.push(5, f64::NAN);
        let index = writer.finish();
        let chunks = [(3, TimeRange::new(HOUR - 2, HOUR)), (1, TimeRange::new(5, 5))];
        let expected = [
            "01",           // version
            "80c0e285e368", // alignment: one hour in ns
            "8020",         // row cap 4096
            "02",           // series
            "0201",         // segments per series
            "020101",       // rows per segment
            // First times as zigzag deltas: hour - 2, +1, 5 - (hour).
            "fcffc48bc6d101",
            "02",
            "f5ffc48bc6d101",
            "010000", // last - first
            // Minimum bits (-0.0, 2.0, NaN) in byte planes 0 to 7, then the maximum's
            // (1.5, 2.0, NaN).
            "000000000000000000000000000000000000",
            "0000f8",
            "80407f",
            "000000000000000000000000000000000000",
            "f800f8",
            "3f407f",
            "121201", // sum lengths
            // Flags, position 16 (unit 2^-51), i128 LE: 3 * 2^50 = 1.5 (+ -0.0), 2^52 = 2.0.
            "0010",
            "0000000000000c000000000000000000",
            "0010",
            "00000000000010000000000000000000",
            "01", // NaN: flags only
        ]
        .concat();
        assert_eq!(hex(&payload(&index)), expected);
        let text = index.encode(3).unwrap();
        assert_eq!(SegmentIndex::decode("x", &text, &chunks).unwrap(), index);
    }
}
