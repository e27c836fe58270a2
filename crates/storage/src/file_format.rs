//! MiniTrue's Parquet data files: what is in them, how they are written and read back.
//!
//! A file holds the points of one time partition (when partitioning is configured) and one
//! [`ValueLayout`], sorted by
//! `(device_id, metric, time)`, one point per `(series, time)`. Columns:
//!
//! | column      | Parquet type                                     | encoding                      |
//! |-------------|--------------------------------------------------|-------------------------------|
//! | `time`      | `INT64 TIMESTAMP(unit, UTC)`, coarsest exact unit | `DELTA_BINARY_PACKED`         |
//! | `device_id` | `BYTE_ARRAY UTF8`                                 | dictionary + RLE, bloom filter |
//! | `metric`    | `BYTE_ARRAY UTF8`                                 | dictionary + RLE              |
//! | `value`     | `INT64 DECIMAL(18,s)` or `DOUBLE`                 | `DELTA_BINARY_PACKED` / `BYTE_STREAM_SPLIT` |
//!
//! All columns are zstd-compressed, with page statistics and the page index. The footer's
//! key-value metadata makes the file self-describing: `minitrue.file` is its [`FileMeta`] as
//! JSON, `minitrue.series` the per-series index (zstd-compressed JSON, base64) ([`SeriesStats`]:
//! row range, time range, count, sum, min, max, first and last value, and the exact
//! [`ChunkAggregate`]) and `minitrue.segments` the segment index (exact aggregates of each
//! series per hour and at most 4096 rows, see [`crate::segments`]; absent in files written
//! before segments), so aggregates can skip decoding and a lost manifest can be rebuilt from
//! the files themselves.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::sync::Arc;

use arrow_array::cast::AsArray;
use arrow_array::types::{
    Decimal128Type, Decimal64Type, Float64Type, TimestampMicrosecondType, TimestampMillisecondType,
    TimestampNanosecondType,
};
use arrow_array::{
    Array, ArrayRef, Decimal64Array, Float64Array, RecordBatch, StringArray,
    TimestampMicrosecondArray, TimestampMillisecondArray, TimestampNanosecondArray,
};
use arrow_schema::{DataType, Field, Schema, SchemaRef};
use base64::Engine as _;
use bytes::Bytes;
use minitrue_common::{SeriesKey, TimeRange};
use parquet::arrow::arrow_reader::ArrowReaderMetadata;
use parquet::arrow::arrow_writer::ArrowWriterOptions;
use parquet::arrow::ArrowWriter;
use parquet::basic::{Compression, Encoding, ZstdLevel};
use parquet::file::metadata::KeyValue;
use parquet::file::properties::{EnabledStatistics, WriterProperties};
use parquet::schema::types::ColumnPath;
use serde::{Deserialize, Serialize};

use crate::error::{Result, StorageError};
use crate::exact::{total_max, total_min, ExactSum, ValueAggregate};
use crate::layout::{
    choose_layout, decimal_mantissa, decimal_to_f64, TimeUnit, UnitTracker, ValueLayout,
};
use crate::memtable::SeriesPoints;
use crate::segments::{SegmentIndex, SegmentWriter, SeriesSegments, SEGMENTS_KEY};

pub const FILE_META_KEY: &str = "minitrue.file";
/// Marks a series index stored as base64 of zstd-compressed JSON.
const COMPRESSED_INDEX_PREFIX: &str = "zstd+base64:";
/// zstd level of the footer indexes (written once per file, read at every open).
const INDEX_ZSTD_LEVEL: i32 = 9;
/// Largest decompressed series index accepted (about 2 M series).
const MAX_SERIES_INDEX_BYTES: usize = 512 << 20;
const BASE64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;
pub const SERIES_INDEX_KEY: &str = "minitrue.series";
/// Version of the file layout described in the module docs.
pub const FILE_FORMAT_VERSION: u32 = 1;

/// Rows per Arrow batch handed to the Parquet writer.
const WRITE_BATCH_ROWS: usize = 64 * 1024;

/// The schema every scan returns, whatever the file layout.
pub fn readings_schema() -> SchemaRef {
    static SCHEMA: std::sync::OnceLock<SchemaRef> = std::sync::OnceLock::new();
    SCHEMA
        .get_or_init(|| {
            Arc::new(Schema::new(vec![
                Field::new(
                    "time",
                    DataType::Timestamp(arrow_schema::TimeUnit::Nanosecond, Some("UTC".into())),
                    false,
                ),
                Field::new("device_id", DataType::Utf8, false),
                Field::new("metric", DataType::Utf8, false),
                Field::new("value", DataType::Float64, false),
            ]))
        })
        .clone()
}

/// An inclusive range of WAL sequence numbers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct LsnRange {
    pub min: u64,
    pub max: u64,
}

/// Which write produced a file: a flush or compaction writes a *batch* of files (one per
/// partition and layout) that only make sense together.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct WriteBatchInfo {
    pub id: u64,
    pub files: u32,
}

/// Everything the engine needs to know about a data file without opening it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FileMeta {
    pub format: u32,
    pub id: u64,
    pub path: String,
    pub partition_start: i64,
    pub layout: ValueLayout,
    pub time_unit: TimeUnit,
    pub time: TimeRange,
    pub rows: u64,
    pub series: u64,
    /// Size of the object; 0 inside the footer copy (a file cannot contain its own size).
    pub size_bytes: u64,
    /// WAL records whose points this file holds (for compaction outputs, the union).
    pub lsn: LsnRange,
    pub batch: WriteBatchInfo,
    /// Files this one replaced (compaction output); empty for flush output.
    pub compacted_from: Vec<u64>,
    /// 0 for flush output, 1 + max input level for compaction output.
    pub level: u32,
}

/// Aggregates of one series inside one file. Exact: they describe the stored points.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SeriesStats {
    pub row_start: u64,
    pub rows: u64,
    pub time: TimeRange,
    pub sum: f64,
    pub min: f64,
    pub max: f64,
    pub first_value: f64,
    pub last_value: f64,
}

/// Exact aggregates of one series inside one file (its point count is [`SeriesStats::rows`]):
/// the exact sum and the `totalOrder` minimum and maximum of [`crate::exact`], which the
/// aggregate fast path merges without changing any result.
#[derive(Debug, Clone)]
pub struct ChunkAggregate {
    pub sum: ExactSum,
    pub min: f64,
    pub max: f64,
}

impl ChunkAggregate {
    fn of(values: &[f64]) -> ChunkAggregate {
        let aggregate = ValueAggregate::of(values);
        ChunkAggregate { sum: aggregate.sum, min: aggregate.min, max: aggregate.max }
    }

    fn merge(&mut self, other: &ChunkAggregate) {
        self.sum.merge(&other.sum);
        self.min = total_min(self.min, other.min);
        self.max = total_max(self.max, other.max);
    }

    /// As a [`ValueAggregate`] of `count` points.
    pub fn to_value_aggregate(&self, count: u64) -> ValueAggregate {
        ValueAggregate { count, sum: self.sum.clone(), min: self.min, max: self.max }
    }
}

/// Per-series stats of one file, sorted by series key.
#[derive(Debug, Clone, Default)]
pub struct SeriesIndex {
    entries: Vec<(SeriesKey, SeriesStats)>,
    /// Parallel to `entries`; empty for files written before exact aggregates were stored
    /// (such files are always decoded by aggregates).
    aggregates: Vec<ChunkAggregate>,
    /// Segments of every series; `None` for files written before segments.
    segments: Option<SegmentIndex>,
}

impl PartialEq for SeriesIndex {
    fn eq(&self, other: &Self) -> bool {
        self.entries == other.entries
            && self.segments == other.segments
            && self.aggregates.len() == other.aggregates.len()
            && self.aggregates.iter().zip(&other.aggregates).all(|(a, b)| {
                a.sum.to_bytes() == b.sum.to_bytes()
                    && a.min.to_bits() == b.min.to_bits()
                    && a.max.to_bits() == b.max.to_bits()
            })
    }
}

impl SeriesIndex {
    pub fn get(&self, series: &SeriesKey) -> Option<&SeriesStats> {
        self.entries.binary_search_by(|(key, _)| key.cmp(series)).ok().map(|i| &self.entries[i].1)
    }

    pub fn iter(&self) -> impl Iterator<Item = &(SeriesKey, SeriesStats)> {
        self.entries.iter()
    }

    /// The exact aggregates of `series` in this file, when the file stores them.
    pub fn aggregate(&self, series: &SeriesKey) -> Option<&ChunkAggregate> {
        let position = self.entries.binary_search_by(|(key, _)| key.cmp(series)).ok()?;
        self.aggregates.get(position)
    }

    /// The segments of `series` in this file, when the file stores segments.
    pub fn segments(&self, series: &SeriesKey) -> Option<SeriesSegments<'_>> {
        let position = self.entries.binary_search_by(|(key, _)| key.cmp(series)).ok()?;
        self.segments.as_ref()?.of_series(position)
    }

    /// The segment index of the whole file, when the file stores segments.
    pub fn segment_index(&self) -> Option<&SegmentIndex> {
        self.segments.as_ref()
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Columnar JSON: compact enough for tens of thousands of series; floats as raw bits so
    /// NaN and infinities survive.
    fn to_json(&self) -> String {
        let mut devices: Vec<&str> = Vec::new();
        let mut device_ids: BTreeMap<&str, u32> = BTreeMap::new();
        let mut json = SeriesIndexJson::default();
        for (key, stats) in &self.entries {
            let device = *device_ids.entry(key.device_id()).or_insert_with(|| {
                devices.push(key.device_id());
                (devices.len() - 1) as u32
            });
            json.device.push(device);
            json.metric.push(key.metric().to_string());
            json.row_start.push(stats.row_start);
            json.rows.push(stats.rows);
            json.min_time.push(stats.time.start);
            json.max_time.push(stats.time.end);
            json.sum.push(stats.sum.to_bits());
            json.min.push(stats.min.to_bits());
            json.max.push(stats.max.to_bits());
            json.first.push(stats.first_value.to_bits());
            json.last.push(stats.last_value.to_bits());
        }
        for aggregate in &self.aggregates {
            json.exact_sum.push(hex(&aggregate.sum.to_bytes()));
            json.total_min.push(aggregate.min.to_bits());
            json.total_max.push(aggregate.max.to_bits());
        }
        json.devices = devices.into_iter().map(str::to_string).collect();
        let text = serde_json::to_string(&json).unwrap_or_default();
        // Footer metadata is text: compress (the index of 40k series is megabytes of JSON).
        match zstd::bulk::compress(text.as_bytes(), INDEX_ZSTD_LEVEL) {
            Ok(compressed) => format!("{COMPRESSED_INDEX_PREFIX}{}", BASE64.encode(compressed)),
            Err(_) => text,
        }
    }

    fn from_json(path: &str, text: &str) -> Result<SeriesIndex> {
        let corrupt = |reason: String| StorageError::CorruptFile { path: path.to_string(), reason };
        let decompressed;
        let text = match text.strip_prefix(COMPRESSED_INDEX_PREFIX) {
            Some(encoded) => {
                let compressed = BASE64
                    .decode(encoded)
                    .map_err(|e| corrupt(format!("series index base64: {e}")))?;
                // The decompressed size is bounded so a damaged footer cannot claim gigabytes.
                let bytes = zstd::bulk::decompress(&compressed, MAX_SERIES_INDEX_BYTES)
                    .map_err(|e| corrupt(format!("series index zstd: {e}")))?;
                decompressed = String::from_utf8(bytes)
                    .map_err(|_| corrupt("series index is not utf-8".into()))?;
                decompressed.as_str()
            }
            None => text,
        };
        let json: SeriesIndexJson = serde_json::from_str(text)
            .map_err(|e| corrupt(format!("series index is not valid json: {e}")))?;
        let n = json.device.len();
        let lengths = [
            json.metric.len(),
            json.row_start.len(),
            json.rows.len(),
            json.min_time.len(),
            json.max_time.len(),
            json.sum.len(),
            json.min.len(),
            json.max.len(),
            json.first.len(),
            json.last.len(),
        ];
        if lengths.iter().any(|&len| len != n) {
            return Err(corrupt("series index columns differ in length".to_string()));
        }
        let mut entries = Vec::with_capacity(n);
        for i in 0..n {
            let device = json
                .devices
                .get(json.device[i] as usize)
                .ok_or_else(|| corrupt(format!("series {i} names device {}", json.device[i])))?;
            let key = SeriesKey::new(device, &json.metric[i])
                .map_err(|e| corrupt(format!("series {i}: {e}")))?;
            entries.push((
                key,
                SeriesStats {
                    row_start: json.row_start[i],
                    rows: json.rows[i],
                    time: TimeRange::new(json.min_time[i], json.max_time[i]),
                    sum: f64::from_bits(json.sum[i]),
                    min: f64::from_bits(json.min[i]),
                    max: f64::from_bits(json.max[i]),
                    first_value: f64::from_bits(json.first[i]),
                    last_value: f64::from_bits(json.last[i]),
                },
            ));
        }
        if entries.windows(2).any(|w| w[0].0 >= w[1].0) {
            return Err(corrupt("series index is not sorted".to_string()));
        }
        let exact_lengths = [json.exact_sum.len(), json.total_min.len(), json.total_max.len()];
        let mut aggregates = Vec::new();
        if exact_lengths != [0, 0, 0] {
            if exact_lengths != [n, n, n] {
                return Err(corrupt("series index aggregate columns differ in length".into()));
            }
            aggregates.reserve(n);
            for i in 0..n {
                let bytes = unhex(&json.exact_sum[i])
                    .ok_or_else(|| corrupt(format!("series {i}: exact sum is not hex")))?;
                let sum = ExactSum::from_bytes(&bytes)
                    .map_err(|e| corrupt(format!("series {i}: {e}")))?;
                aggregates.push(ChunkAggregate {
                    sum,
                    min: f64::from_bits(json.total_min[i]),
                    max: f64::from_bits(json.total_max[i]),
                });
            }
        }
        Ok(SeriesIndex { entries, aggregates, segments: None })
    }

    /// Reads the footer's segment index (`text`) into this series index.
    fn load_segments(&mut self, path: &str, text: &str) -> Result<()> {
        let chunks: Vec<(u64, TimeRange)> =
            self.entries.iter().map(|(_, stats)| (stats.rows, stats.time)).collect();
        self.segments = Some(SegmentIndex::decode(path, text, &chunks)?);
        Ok(())
    }
}

#[derive(Default, Serialize, Deserialize)]
struct SeriesIndexJson {
    devices: Vec<String>,
    device: Vec<u32>,
    metric: Vec<String>,
    row_start: Vec<u64>,
    rows: Vec<u64>,
    min_time: Vec<i64>,
    max_time: Vec<i64>,
    sum: Vec<u64>,
    min: Vec<u64>,
    max: Vec<u64>,
    first: Vec<u64>,
    last: Vec<u64>,
    /// [`ExactSum::to_bytes`] as hex, per series (absent in files written before them).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    exact_sum: Vec<String>,
    /// `totalOrder` minimum and maximum as bits, per series (absent likewise).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    total_min: Vec<u64>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    total_max: Vec<u64>,
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(text: &str) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(2) {
        return None;
    }
    (0..text.len()).step_by(2).map(|i| u8::from_str_radix(text.get(i..i + 2)?, 16).ok()).collect()
}

/// How a set of files is to be written.
#[derive(Debug, Clone)]
pub struct FileSetParams {
    /// Width of a time partition in nanoseconds; `None` = no calendar partitions.
    pub partition_ns: Option<i64>,
    pub zstd_level: i32,
    pub row_group_rows: usize,
    pub page_rows: usize,
    pub lsn: LsnRange,
    pub batch_id: u64,
    /// Ids are allocated as `first_file_id + k`.
    pub first_file_id: u64,
    pub compacted_from: Vec<u64>,
    pub level: u32,
}

/// A file encoded in memory, ready to be stored.
pub struct EncodedFile {
    pub meta: FileMeta,
    pub index: SeriesIndex,
    pub bytes: Bytes,
}

/// The partition of every point when no calendar partitioning is configured.
pub const UNPARTITIONED: i64 = i64::MIN;

/// Start of the partition holding `time` ([`UNPARTITIONED`] without partitioning).
pub fn partition_start(time: i64, partition_ns: Option<i64>) -> i64 {
    match partition_ns {
        Some(width) => time.div_euclid(width) * width,
        None => UNPARTITIONED,
    }
}

/// Object path of a data file: `data/<partition start, UTC, or "all">/<id>-<layout>.parquet`.
pub fn data_file_path(partition_start: i64, id: u64, layout: ValueLayout) -> String {
    let partition = if partition_start == UNPARTITIONED {
        "all".to_string()
    } else {
        format_partition(partition_start)
    };
    format!("data/{partition}/{:016x}-{}.parquet", id, layout.tag())
}

/// `YYYY-MM-DDTHHMMSSZ` of a partition start (UTC), so directories sort by time.
fn format_partition(start_ns: i64) -> String {
    let secs = start_ns.div_euclid(1_000_000_000);
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    format!("{y:04}-{m:02}-{d:02}T{:02}{:02}{:02}Z", rem / 3600, rem % 3600 / 60, rem % 60)
}

/// Days since 1970-01-01 to (year, month, day), proleptic Gregorian (H. Hinnant's algorithm).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

/// Where one file of the set is going.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct Target {
    partition: i64,
    layout: ValueLayout,
}

/// Most distinct values for which a file's value column is dictionary-encoded: two-state
/// sensors (motion, door, relay) then cost a few RLE runs instead of bit-packed deltas.
const DICTIONARY_MAX_DISTINCT_VALUES: usize = 256;

#[derive(Default)]
struct TargetPlan {
    units: UnitTracker,
    devices: BTreeSet<String>,
    /// Distinct value bit patterns, counted up to one past the dictionary limit.
    distinct_values: HashSet<u64>,
}

impl TargetPlan {
    fn observe_value(&mut self, value: f64) {
        if self.distinct_values.len() <= DICTIONARY_MAX_DISTINCT_VALUES {
            self.distinct_values.insert(value.to_bits());
        }
    }

    fn low_cardinality(&self) -> bool {
        self.distinct_values.len() <= DICTIONARY_MAX_DISTINCT_VALUES
    }
}

/// Writes the points of `series` (sorted by key) as Parquet files, one per time partition and
/// value layout. `load` is called twice per series (plan, then write) so that memory stays
/// bounded by one series at a time plus the encoded files. CPU-heavy: call from a blocking
/// thread.
pub fn write_file_set(
    series: &[SeriesKey],
    load: &dyn Fn(&SeriesKey) -> Result<SeriesPoints>,
    params: &FileSetParams,
) -> Result<Vec<EncodedFile>> {
    // Pass 1: each series' layout, and per target the time unit and devices (bloom filter size).
    let mut layouts: Vec<ValueLayout> = Vec::with_capacity(series.len());
    let mut plans: BTreeMap<Target, TargetPlan> = BTreeMap::new();
    for key in series {
        let points = load(key)?;
        let layout = choose_layout(&points.values);
        layouts.push(layout);
        for (&time, &value) in points.times.iter().zip(&points.values) {
            let target = Target {
                partition: partition_start(time, params.partition_ns),
                layout: point_layout(layout, value),
            };
            let plan = plans.entry(target).or_default();
            plan.units.observe(time);
            plan.observe_value(value);
            if plan.devices.last().map(String::as_str) != Some(key.device_id()) {
                plan.devices.insert(key.device_id().to_string());
            }
        }
    }

    // Pass 2: write.
    let batch = WriteBatchInfo { id: params.batch_id, files: plans.len() as u32 };
    let mut writers: BTreeMap<Target, FileWriter> = BTreeMap::new();
    for (k, (target, plan)) in plans.iter().enumerate() {
        let id = params.first_file_id + k as u64;
        writers.insert(*target, FileWriter::new(*target, plan, id, batch, params)?);
    }
    for (key, &layout) in series.iter().zip(&layouts) {
        let points = load(key)?;
        let mut run: Option<(Target, usize)> = None;
        for i in 0..points.len() {
            let target = Target {
                partition: partition_start(points.times[i], params.partition_ns),
                layout: point_layout(layout, points.values[i]),
            };
            match run {
                Some((current, _)) if current == target => {}
                _ => {
                    if let Some((current, start)) = run {
                        writer_for(&mut writers, current)?.append_run(key, &points, start..i)?;
                    }
                    run = Some((target, i));
                }
            }
        }
        if let Some((current, start)) = run {
            writer_for(&mut writers, current)?.append_run(key, &points, start..points.len())?;
        }
    }
    writers.into_values().map(FileWriter::finish).collect()
}

fn writer_for(
    writers: &mut BTreeMap<Target, FileWriter>,
    target: Target,
) -> Result<&mut FileWriter> {
    writers
        .get_mut(&target)
        .ok_or_else(|| StorageError::Task(format!("no writer planned for {target:?}")))
}

/// A value goes to the decimal file when it is exact at the series' scale, else to the float file.
fn point_layout(series_layout: ValueLayout, value: f64) -> ValueLayout {
    match series_layout {
        ValueLayout::Decimal { scale } if decimal_mantissa(value, scale).is_some() => series_layout,
        _ => ValueLayout::Float,
    }
}

struct FileWriter {
    meta: FileMeta,
    schema: SchemaRef,
    writer: ArrowWriter<Vec<u8>>,
    index: Vec<(SeriesKey, SeriesStats)>,
    aggregates: Vec<ChunkAggregate>,
    segments: SegmentWriter,
    // Rows buffered for the next batch.
    times: Vec<i64>,
    mantissas: Vec<i64>,
    floats: Vec<f64>,
    devices: Vec<Arc<str>>,
    metrics: Vec<Arc<str>>,
}

impl FileWriter {
    fn new(
        target: Target,
        plan: &TargetPlan,
        id: u64,
        batch: WriteBatchInfo,
        params: &FileSetParams,
    ) -> Result<FileWriter> {
        let unit = plan.units.unit();
        let path = data_file_path(target.partition, id, target.layout);
        let value_type = match target.layout {
            ValueLayout::Decimal { scale } => DataType::Decimal64(18, scale as i8),
            ValueLayout::Float => DataType::Float64,
        };
        let schema = Arc::new(Schema::new(vec![
            Field::new("time", DataType::Timestamp(unit.arrow(), Some("UTC".into())), false),
            Field::new("device_id", DataType::Utf8, false),
            Field::new("metric", DataType::Utf8, false),
            Field::new("value", value_type, false),
        ]));
        let value_encoding = match target.layout {
            ValueLayout::Decimal { .. } => Encoding::DELTA_BINARY_PACKED,
            ValueLayout::Float => Encoding::BYTE_STREAM_SPLIT,
        };
        let zstd =
            ZstdLevel::try_new(params.zstd_level).map_err(|e| StorageError::parquet(&path, e))?;
        let props = WriterProperties::builder()
            .set_compression(Compression::ZSTD(zstd))
            .set_statistics_enabled(EnabledStatistics::Page)
            .set_max_row_group_row_count(Some(params.row_group_rows))
            .set_data_page_row_count_limit(params.page_rows)
            .set_column_dictionary_enabled(ColumnPath::from("time"), false)
            .set_column_encoding(ColumnPath::from("time"), Encoding::DELTA_BINARY_PACKED)
            .set_column_dictionary_enabled(ColumnPath::from("value"), plan.low_cardinality())
            .set_column_encoding(ColumnPath::from("value"), value_encoding)
            .set_column_bloom_filter_enabled(ColumnPath::from("device_id"), true)
            .set_column_bloom_filter_max_ndv(
                ColumnPath::from("device_id"),
                plan.devices.len().max(1) as u64,
            )
            .set_column_bloom_filter_fpp(ColumnPath::from("device_id"), 0.01)
            .build();
        // The Arrow schema is not embedded: the Parquet types say everything (and it would
        // cost ~0.5 KB per file, which matters for sparse series).
        let options =
            ArrowWriterOptions::new().with_properties(props).with_skip_arrow_metadata(true);
        let writer = ArrowWriter::try_new_with_options(Vec::new(), schema.clone(), options)
            .map_err(|e| StorageError::parquet(&path, e))?;
        let meta = FileMeta {
            format: FILE_FORMAT_VERSION,
            id,
            path,
            partition_start: target.partition,
            layout: target.layout,
            time_unit: unit,
            time: TimeRange::new(i64::MAX, i64::MIN),
            rows: 0,
            series: 0,
            size_bytes: 0,
            lsn: params.lsn,
            batch,
            compacted_from: params.compacted_from.clone(),
            level: params.level,
        };
        Ok(FileWriter {
            meta,
            schema,
            writer,
            index: Vec::new(),
            aggregates: Vec::new(),
            segments: SegmentWriter::default(),
            times: Vec::new(),
            mantissas: Vec::new(),
            floats: Vec::new(),
            devices: Vec::new(),
            metrics: Vec::new(),
        })
    }

    /// Appends `points[range]` of `key` (sorted by time) as rows.
    fn append_run(
        &mut self,
        key: &SeriesKey,
        points: &SeriesPoints,
        range: std::ops::Range<usize>,
    ) -> Result<()> {
        let times = &points.times[range.clone()];
        let values = &points.values[range];
        let Some((&first_time, &last_time)) = times.first().zip(times.last()) else {
            return Ok(());
        };
        let mut stats = SeriesStats {
            row_start: self.meta.rows,
            rows: times.len() as u64,
            time: TimeRange::new(first_time, last_time),
            sum: 0.0,
            min: f64::INFINITY,
            max: f64::NEG_INFINITY,
            first_value: values[0],
            last_value: values[values.len() - 1],
        };
        for &value in values {
            stats.sum += value;
            stats.min = stats.min.min(value);
            stats.max = stats.max.max(value);
        }
        let aggregate = ChunkAggregate::of(values);
        // A series split across two runs of the same file (other partition in between cannot
        // happen: partitions are in time order) merges into one index entry.
        match self.index.last_mut() {
            Some((last_key, last)) if last_key == key => {
                last.rows += stats.rows;
                last.time.end = stats.time.end;
                last.sum += stats.sum;
                last.min = last.min.min(stats.min);
                last.max = last.max.max(stats.max);
                last.last_value = stats.last_value;
                if let Some(last_aggregate) = self.aggregates.last_mut() {
                    last_aggregate.merge(&aggregate);
                }
            }
            _ => {
                self.index.push((key.clone(), stats));
                self.aggregates.push(aggregate);
                self.segments.start_series();
                self.meta.series += 1;
            }
        }
        for (&time, &value) in times.iter().zip(values) {
            self.segments.push(time, value);
        }
        self.meta.rows += times.len() as u64;
        self.meta.time.start = self.meta.time.start.min(first_time);
        self.meta.time.end = self.meta.time.end.max(last_time);

        let unit_nanos = self.meta.time_unit.nanos();
        for (&time, &value) in times.iter().zip(values) {
            self.times.push(time / unit_nanos);
            match self.meta.layout {
                ValueLayout::Decimal { scale } => {
                    let mantissa = decimal_mantissa(value, scale).ok_or_else(|| {
                        StorageError::Task(format!(
                            "value {value} planned as decimal({scale}) is not exact"
                        ))
                    })?;
                    self.mantissas.push(mantissa);
                }
                ValueLayout::Float => self.floats.push(value),
            }
            self.devices.push(key.device_id_arc().clone());
            self.metrics.push(key.metric_arc().clone());
            if self.times.len() >= WRITE_BATCH_ROWS {
                self.write_buffered()?;
            }
        }
        Ok(())
    }

    fn write_buffered(&mut self) -> Result<()> {
        if self.times.is_empty() {
            return Ok(());
        }
        let times = std::mem::take(&mut self.times);
        let time: ArrayRef = match self.meta.time_unit {
            TimeUnit::Millisecond => {
                Arc::new(TimestampMillisecondArray::from(times).with_timezone("UTC"))
            }
            TimeUnit::Microsecond => {
                Arc::new(TimestampMicrosecondArray::from(times).with_timezone("UTC"))
            }
            TimeUnit::Nanosecond => {
                Arc::new(TimestampNanosecondArray::from(times).with_timezone("UTC"))
            }
        };
        let devices = StringArray::from_iter_values(self.devices.drain(..).map(|s| s.to_string()));
        let metrics = StringArray::from_iter_values(self.metrics.drain(..).map(|s| s.to_string()));
        let value: ArrayRef = match self.meta.layout {
            ValueLayout::Decimal { scale } => Arc::new(
                Decimal64Array::from(std::mem::take(&mut self.mantissas))
                    .with_precision_and_scale(18, scale as i8)?,
            ),
            ValueLayout::Float => Arc::new(Float64Array::from(std::mem::take(&mut self.floats))),
        };
        let batch = RecordBatch::try_new(
            self.schema.clone(),
            vec![time, Arc::new(devices), Arc::new(metrics), value],
        )?;
        self.writer.write(&batch).map_err(|e| StorageError::parquet(&self.meta.path, e))
    }

    fn finish(mut self) -> Result<EncodedFile> {
        self.write_buffered()?;
        let segments = self.segments.finish();
        let segments_text = segments.encode(INDEX_ZSTD_LEVEL)?;
        let index = SeriesIndex {
            entries: self.index,
            aggregates: self.aggregates,
            segments: Some(segments),
        };
        let meta_json = serde_json::to_string(&self.meta)
            .map_err(|e| StorageError::Task(format!("file meta to json: {e}")))?;
        self.writer.append_key_value_metadata(KeyValue::new(FILE_META_KEY.to_string(), meta_json));
        self.writer.append_key_value_metadata(KeyValue::new(
            SERIES_INDEX_KEY.to_string(),
            index.to_json(),
        ));
        self.writer
            .append_key_value_metadata(KeyValue::new(SEGMENTS_KEY.to_string(), segments_text));
        let path = self.meta.path.clone();
        let bytes = self.writer.into_inner().map_err(|e| StorageError::parquet(&path, e))?;
        let mut meta = self.meta;
        meta.size_bytes = bytes.len() as u64;
        Ok(EncodedFile { meta, index, bytes: Bytes::from(bytes) })
    }
}

/// A stored file as the engine holds it: its meta, series index and parsed footer.
pub struct DataFile {
    pub meta: FileMeta,
    pub index: SeriesIndex,
    pub reader_meta: ArrowReaderMetadata,
}

impl std::fmt::Debug for DataFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DataFile")
            .field("meta", &self.meta)
            .field("series", &self.index.len())
            .finish()
    }
}

impl DataFile {
    /// Builds the engine's view of a file from its parsed footer. `size_bytes` comes from the
    /// store (the footer cannot know it).
    pub fn from_footer(
        path: &str,
        size_bytes: u64,
        reader_meta: ArrowReaderMetadata,
    ) -> Result<DataFile> {
        let corrupt = |reason: &str| StorageError::CorruptFile {
            path: path.to_string(),
            reason: reason.to_string(),
        };
        let kv = reader_meta
            .metadata()
            .file_metadata()
            .key_value_metadata()
            .cloned()
            .unwrap_or_default();
        let find = |key: &str| {
            kv.iter().find(|entry| entry.key == key).and_then(|entry| entry.value.clone())
        };
        let meta_json =
            find(FILE_META_KEY).ok_or_else(|| corrupt("footer has no minitrue.file metadata"))?;
        let mut meta: FileMeta = serde_json::from_str(&meta_json).map_err(|e| {
            StorageError::CorruptFile { path: path.to_string(), reason: format!("file meta: {e}") }
        })?;
        if meta.format != FILE_FORMAT_VERSION {
            return Err(corrupt("unknown file format version"));
        }
        let index_json = find(SERIES_INDEX_KEY)
            .ok_or_else(|| corrupt("footer has no minitrue.series metadata"))?;
        let mut index = SeriesIndex::from_json(path, &index_json)?;
        if let Some(segments_text) = find(SEGMENTS_KEY) {
            index.load_segments(path, &segments_text)?;
        }
        let parquet_rows = reader_meta.metadata().file_metadata().num_rows();
        if parquet_rows < 0 || parquet_rows as u64 != meta.rows {
            return Err(corrupt("row count in footer differs from minitrue.file"));
        }
        meta.path = path.to_string();
        meta.size_bytes = size_bytes;
        Ok(DataFile { meta, index, reader_meta })
    }
}

/// The `time` column of a data file as nanoseconds.
pub(crate) fn decode_times(meta: &FileMeta, time_column: &ArrayRef) -> Result<Vec<i64>> {
    let unit_nanos = meta.time_unit.nanos();
    let scaled = |times: &[i64]| times.iter().map(|&t| t * unit_nanos).collect();
    Ok(match time_column.data_type() {
        DataType::Timestamp(arrow_schema::TimeUnit::Millisecond, _) => {
            scaled(time_column.as_primitive::<TimestampMillisecondType>().values())
        }
        DataType::Timestamp(arrow_schema::TimeUnit::Microsecond, _) => {
            scaled(time_column.as_primitive::<TimestampMicrosecondType>().values())
        }
        DataType::Timestamp(arrow_schema::TimeUnit::Nanosecond, _) => {
            time_column.as_primitive::<TimestampNanosecondType>().values().to_vec()
        }
        other => {
            return Err(StorageError::CorruptFile {
                path: meta.path.clone(),
                reason: format!("time column has type {other}"),
            })
        }
    })
}

/// The `value` column of a data file as doubles.
pub(crate) fn decode_values(meta: &FileMeta, value_column: &ArrayRef) -> Result<Vec<f64>> {
    Ok(match value_column.data_type() {
        DataType::Decimal64(_, scale) => {
            let scale = *scale as u8;
            value_column
                .as_primitive::<Decimal64Type>()
                .values()
                .iter()
                .map(|&m| decimal_to_f64(m, scale))
                .collect()
        }
        DataType::Decimal128(_, scale) => {
            let scale = *scale as u8;
            value_column
                .as_primitive::<Decimal128Type>()
                .values()
                .iter()
                .map(|&m| decimal_to_f64(m as i64, scale))
                .collect()
        }
        DataType::Float64 => value_column.as_primitive::<Float64Type>().values().to_vec(),
        other => {
            return Err(StorageError::CorruptFile {
                path: meta.path.clone(),
                reason: format!("value column has type {other}"),
            })
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::object_reader::reader_options;

    /// The engine's view of a file written in memory, read back from its bytes.
    fn reopen(file: &EncodedFile) -> DataFile {
        let reader_meta = ArrowReaderMetadata::load(&file.bytes, reader_options()).unwrap();
        DataFile::from_footer(&file.meta.path, file.bytes.len() as u64, reader_meta).unwrap()
    }

    /// A file written before segments were stored (format 1, with exact chunk aggregates):
    /// series `a`/`temperature` and `b`/`temperature`, one point per minute for 3 hours from
    /// 10 minutes before an hour, values `(2000 + (i * 37 + k) % 300) / 100` with k = 0 for `a`
    /// and 7 for `b`.
    const FILE_BEFORE_SEGMENTS: &[u8] =
        include_bytes!("../tests/fixtures/format1-before-segments.parquet");

    #[test]
    fn files_written_before_segments_load_without_them() {
        let bytes = Bytes::from_static(FILE_BEFORE_SEGMENTS);
        let reader_meta = ArrowReaderMetadata::load(&bytes, reader_options()).unwrap();
        let kv = reader_meta.metadata().file_metadata().key_value_metadata().unwrap();
        assert!(kv.iter().all(|entry| entry.key != SEGMENTS_KEY));
        let path = "data/all/0000000000000001-d2.parquet";
        let file = DataFile::from_footer(path, bytes.len() as u64, reader_meta).unwrap();
        assert!(file.index.segment_index().is_none());
        let key = SeriesKey::new("a", "temperature").unwrap();
        assert!(file.index.segments(&key).is_none());
        let values: Vec<f64> =
            (0..180i64).map(|i| ((2000 + (i * 37) % 300) as f64) / 100.0).collect();
        let stored = file.index.aggregate(&key).unwrap();
        assert_eq!(stored.sum.to_f64().to_bits(), ExactSum::of(&values).to_f64().to_bits());
        assert_eq!(file.index.get(&key).unwrap().rows, 180);
    }

    #[test]
    fn damaged_segment_indexes_are_refused() {
        let key = SeriesKey::new("a", "m").unwrap();
        let points = SeriesPoints {
            times: (0..5000i64).map(|i| i * 1_000_000_000).collect(),
            values: (0..5000).map(|i| i as f64 / 4.0).collect(),
        };
        let files =
            write_file_set(std::slice::from_ref(&key), &|_| Ok(points.clone()), &test_params())
                .unwrap();
        let file = reopen(&files[0]);
        let text = file.index.segment_index().unwrap().encode(3).unwrap();
        let chunks: Vec<(u64, TimeRange)> =
            file.index.iter().map(|(_, stats)| (stats.rows, stats.time)).collect();
        assert!(SegmentIndex::decode("x", &text, &chunks).is_ok());
        // The series index says something else than the segments.
        let mut other = chunks.clone();
        other[0].0 += 1;
        assert!(SegmentIndex::decode("x", &text, &other).is_err());
        other = chunks.clone();
        other[0].1.end += 1;
        assert!(SegmentIndex::decode("x", &text, &other).is_err());
        assert!(SegmentIndex::decode("x", &text, &[]).is_err());
        // Not base64, not zstd, truncated, unknown version.
        assert!(SegmentIndex::decode("x", "zstd+base64:!!", &chunks).is_err());
        assert!(SegmentIndex::decode("x", "zstd+base64:AAAA", &chunks).is_err());
        assert!(SegmentIndex::decode("x", "plain", &chunks).is_err());
        let payload = zstd::bulk::decompress(
            &BASE64.decode(text.strip_prefix(COMPRESSED_INDEX_PREFIX).unwrap()).unwrap(),
            1 << 20,
        )
        .unwrap();
        let encode = |payload: &[u8]| {
            format!(
                "{COMPRESSED_INDEX_PREFIX}{}",
                BASE64.encode(zstd::bulk::compress(payload, 1).unwrap())
            )
        };
        for cut in [1, 5, payload.len() / 2, payload.len() - 1] {
            assert!(SegmentIndex::decode("x", &encode(&payload[..cut]), &chunks).is_err(), "{cut}");
        }
        let mut future = payload.clone();
        future[0] = 2;
        assert!(SegmentIndex::decode("x", &encode(&future), &chunks).is_err());
        let mut trailing = payload.clone();
        trailing.push(0);
        assert!(SegmentIndex::decode("x", &encode(&trailing), &chunks).is_err());
        // Any single flipped byte is refused or still describes the same rows and times.
        for position in 0..payload.len() {
            let mut damaged = payload.clone();
            damaged[position] ^= 0x41;
            if let Ok(index) = SegmentIndex::decode("x", &encode(&damaged), &chunks) {
                let segments = index.of_series(0).unwrap();
                let rows: u64 = segments.iter().map(|segment| segment.rows).sum();
                assert_eq!(rows, 5000);
            }
        }
    }

    fn test_params() -> FileSetParams {
        FileSetParams {
            partition_ns: None,
            zstd_level: 1,
            row_group_rows: 1024,
            page_rows: 1024,
            lsn: LsnRange { min: 1, max: 1 },
            batch_id: 1,
            first_file_id: 1,
            compacted_from: Vec::new(),
            level: 0,
        }
    }

    #[test]
    fn segments_cut_at_hours_and_row_limit() {
        const HOUR: i64 = crate::segments::SEGMENT_ALIGN_NS;
        let a = SeriesKey::new("a", "m").unwrap();
        let b = SeriesKey::new("b", "m").unwrap();
        // `a`: every 100 ms from half an hour before an hour for 2 hours (36,000 points per
        // hour: cut at 4096 rows and at the hours); `b`: three points, two in one hour.
        let base = 1_700_000_000 / 3600 * HOUR;
        let load = |key: &SeriesKey| -> Result<SeriesPoints> {
            Ok(if key == &a {
                let times: Vec<i64> =
                    (0..72_000i64).map(|i| base - HOUR / 2 + i * 100_000_000).collect();
                let values = (0..times.len()).map(|i| (i as f64 * 0.37).sin()).collect();
                SeriesPoints { times, values }
            } else {
                SeriesPoints {
                    times: vec![base + 5, base + 10, base + HOUR + 7],
                    values: vec![f64::NAN, -0.0, f64::INFINITY],
                }
            })
        };
        let files = write_file_set(&[a.clone(), b.clone()], &load, &test_params()).unwrap();
        assert_eq!(files.len(), 1);
        let file = reopen(&files[0]);
        for key in [&a, &b] {
            let stats = file.index.get(key).unwrap();
            let points = load(key).unwrap();
            let segments = file.index.segments(key).unwrap();
            let mut next_row = 0;
            for segment in segments.iter() {
                assert_eq!(segment.row_offset, next_row);
                assert!(segment.rows <= u64::from(crate::segments::SEGMENT_MAX_ROWS));
                let rows = next_row as usize..(next_row + segment.rows) as usize;
                let times = &points.times[rows.clone()];
                assert_eq!(segment.time, TimeRange::new(times[0], times[times.len() - 1]));
                assert_eq!(
                    segment.time.start.div_euclid(HOUR),
                    segment.time.end.div_euclid(HOUR),
                    "a segment never spans an hour boundary"
                );
                let expected = ValueAggregate::of(&points.values[rows]);
                let mut got = ValueAggregate::default();
                segment.merge_into(&mut got).unwrap();
                assert_eq!(got.count, expected.count);
                assert_eq!(got.sum.to_f64().to_bits(), expected.sum.to_f64().to_bits());
                assert_eq!(got.min.to_bits(), expected.min.to_bits());
                assert_eq!(got.max.to_bits(), expected.max.to_bits());
                next_row += segment.rows;
            }
            assert_eq!(next_row, stats.rows);
        }
        // Half an hour (18,000 rows), an hour (36,000), half an hour: cut every 4096 rows.
        let counts: Vec<u64> = file.index.segments(&a).unwrap().iter().map(|s| s.rows).collect();
        let mut expected = vec![4096; 4];
        expected.push(1616);
        expected.extend([4096; 8]);
        expected.push(3232);
        expected.extend([4096; 4]);
        expected.push(1616);
        assert_eq!(counts, expected);
        let b_segments = file.index.segments(&b).unwrap();
        assert_eq!(b_segments.len(), 2);
        assert!(b_segments.overlaps(&TimeRange::new(base + HOUR, base + 2 * HOUR)));
        assert!(!b_segments.overlaps(&TimeRange::new(base + 11, base + HOUR + 6)));
        assert!(b_segments.overlaps(&TimeRange::new(base + 10, base + HOUR + 6)));
        assert!(b_segments.overlaps(&TimeRange::new(i64::MIN, base + 5)));
        assert!(!b_segments.overlaps(&TimeRange::new(i64::MIN, base + 4)));
        assert!(!b_segments.overlaps(&TimeRange::new(base + HOUR + 8, i64::MAX)));
    }

    #[test]
    fn partition_paths_are_dated() {
        let day = 86_400_000_000_000i64;
        let start = partition_start(1_700_000_000_000_000_000, Some(day));
        assert_eq!(format_partition(start), "2023-11-14T000000Z");
        assert_eq!(format_partition(0), "1970-01-01T000000Z");
        assert_eq!(format_partition(partition_start(-1, Some(day))), "1969-12-31T000000Z");
        assert_eq!(
            data_file_path(partition_start(-1, None), 1, ValueLayout::Float),
            "data/all/0000000000000001-f.parquet"
        );
        assert_eq!(
            data_file_path(0, 255, ValueLayout::Decimal { scale: 2 }),
            "data/1970-01-01T000000Z/00000000000000ff-d2.parquet"
        );
    }

    #[test]
    fn series_index_of_files_before_exact_aggregates_loads_without_them() {
        // The footer index as format 1 files wrote it before exact aggregates were stored.
        let bits = |v: f64| v.to_bits();
        let old = format!(
            r#"{{"devices":["a"],"device":[0],"metric":["m"],"row_start":[0],"rows":[2],
            "min_time":[1],"max_time":[2],"sum":[{}],"min":[{}],"max":[{}],"first":[{}],
            "last":[{}]}}"#,
            bits(3.0),
            bits(1.0),
            bits(2.0),
            bits(1.0),
            bits(2.0)
        );
        let index = SeriesIndex::from_json("x", &old).unwrap();
        let key = SeriesKey::new("a", "m").unwrap();
        assert_eq!(index.get(&key).unwrap().rows, 2);
        assert!(index.aggregate(&key).is_none());
        // Columns of different lengths are corruption, not an old format.
        let torn = old.replace(r#""last":"#, r#""exact_sum":["00"],"total_min":[],"last":"#);
        assert!(SeriesIndex::from_json("x", &torn).is_err());
    }

    #[test]
    fn written_files_store_exact_aggregates() {
        let key = SeriesKey::new("a", "m").unwrap();
        let values = vec![0.1, 0.2, 0.3, 1e16, -1e16, 21.37, -0.0];
        let points = SeriesPoints {
            times: (0..values.len() as i64).map(|i| i * 1_000_000_000).collect(),
            values: values.clone(),
        };
        let files =
            write_file_set(std::slice::from_ref(&key), &|_| Ok(points.clone()), &test_params())
                .unwrap();
        let mut sum = ExactSum::new();
        let mut rows = 0;
        let mut min = f64::NAN;
        for file in &files {
            let index = reopen(file).index;
            assert_eq!(index, file.index);
            assert!(index.segments(&key).is_some());
            let aggregate = index.aggregate(&key).unwrap();
            sum.merge(&aggregate.sum);
            rows += index.get(&key).unwrap().rows;
            min = if min.is_nan() { aggregate.min } else { total_min(min, aggregate.min) };
        }
        assert_eq!(rows, values.len() as u64);
        assert_eq!(sum.to_f64().to_bits(), ExactSum::of(&values).to_f64().to_bits());
        assert_eq!(min, -1e16);
    }

    #[test]
    fn series_index_json_round_trips_special_floats() {
        let stats = SeriesStats {
            row_start: 0,
            rows: 2,
            time: TimeRange::new(1, 2),
            sum: f64::NAN,
            min: f64::NEG_INFINITY,
            max: -0.0,
            first_value: 1.5,
            last_value: f64::from_bits(0x7ff0_0000_0000_0001),
        };
        let index = SeriesIndex {
            entries: vec![
                (SeriesKey::new("a", "m").unwrap(), stats),
                (SeriesKey::new("b", "m").unwrap(), stats),
            ],
            aggregates: Vec::new(),
            segments: None,
        };
        let back = SeriesIndex::from_json("x", &index.to_json()).unwrap();
        assert_eq!(back.entries.len(), 2);
        assert_eq!(back.entries[1].1.last_value.to_bits(), 0x7ff0_0000_0000_0001);
        assert_eq!(back.entries[0].1.max.to_bits(), (-0.0f64).to_bits());
        assert!(SeriesIndex::from_json("x", "{").is_err());
    }
}
