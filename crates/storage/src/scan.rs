//! Reading points back: from the active and frozen memtables and from data files, with time
//! and series pruning, deletes applied, and one point per `(series, time)` where several
//! sources hold the same series over the same time (the newest source wins).

use std::collections::HashMap;
use std::sync::Arc;

use std::collections::VecDeque;

use arrow_array::builder::StringBuilder;
use arrow_array::{
    ArrayRef, Float64Array, RecordBatch, RecordBatchOptions, TimestampNanosecondArray,
};
use arrow_buffer::ScalarBuffer;
use futures::stream::BoxStream;
use futures::{StreamExt, TryStreamExt};
use minitrue_common::{SeriesKey, TimeRange, TokenSet};
use object_store::path::Path;
use object_store::ObjectStore;
use parquet::arrow::arrow_reader::{RowSelection, RowSelector};
use parquet::arrow::async_reader::ParquetRecordBatchStream;
use parquet::arrow::{ParquetRecordBatchStreamBuilder, ProjectionMask};

use crate::error::{Result, StorageError};
use crate::file_format::{decode_times, decode_values, readings_schema, DataFile};
use crate::manifest::Tombstone;
use crate::memtable::{Memtable, SeriesPoints};
use crate::object_reader::ObjectFileReader;

/// Which series a scan reads. Conditions combine with AND; `None` means any.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SeriesFilter {
    pub device_ids: Option<Vec<String>>,
    pub metrics: Option<Vec<String>>,
    /// Only series whose ring position is in the set: the ranges this node answers for in a
    /// distributed query.
    pub tokens: Option<TokenSet>,
}

impl SeriesFilter {
    pub fn all() -> Self {
        SeriesFilter::default()
    }

    pub fn series(device_id: &str, metric: &str) -> Self {
        SeriesFilter {
            device_ids: Some(vec![device_id.to_string()]),
            metrics: Some(vec![metric.to_string()]),
            tokens: None,
        }
    }

    pub fn matches(&self, key: &SeriesKey) -> bool {
        let device_ok =
            self.device_ids.as_ref().is_none_or(|ids| ids.iter().any(|d| d == key.device_id()));
        let metric_ok = self.metrics.as_ref().is_none_or(|ms| ms.iter().any(|m| m == key.metric()));
        device_ok
            && metric_ok
            && self
                .tokens
                .as_ref()
                .is_none_or(|tokens| tokens.contains_series(key.device_id(), key.metric()))
    }
}

/// A scan: which series, which time range, which columns of [`readings_schema`].
#[derive(Debug, Clone)]
pub struct ScanRequest {
    pub series: SeriesFilter,
    pub time: TimeRange,
    /// Column indices into [`readings_schema`]; `None` = all four.
    pub projection: Option<Vec<usize>>,
    /// Target rows per batch.
    pub batch_rows: usize,
}

impl ScanRequest {
    pub fn new(series: SeriesFilter, time: TimeRange) -> Self {
        ScanRequest { series, time, projection: None, batch_rows: 8192 }
    }
}

/// A stream of record batches in [`readings_schema`] (or its projection). Rows are in no
/// particular order across series; within one source, a series' rows are in time order.
pub type BatchStream = BoxStream<'static, Result<RecordBatch>>;

/// One place points can come from, with the WAL position its contents reach.
#[derive(Clone)]
pub(crate) enum Source {
    File(Arc<DataFile>),
    /// A memtable generation; `through_lsn` is `u64::MAX` for the active one (deletes are
    /// applied to it physically, so no tombstone applies to it).
    Memtable {
        table: Arc<Memtable>,
        through_lsn: u64,
    },
}

impl Source {
    fn through_lsn(&self) -> u64 {
        match self {
            Source::File(file) => file.meta.lsn.max,
            Source::Memtable { through_lsn, .. } => *through_lsn,
        }
    }
}

/// An immutable set of sources, ordered oldest first, with the tombstones that apply.
#[derive(Clone)]
pub(crate) struct SourceSet {
    pub sources: Vec<Source>,
    pub tombstones: Arc<Vec<Tombstone>>,
}

/// Where one series lives in one source.
#[derive(Clone, Copy)]
pub(crate) struct Placement {
    pub source: usize,
    pub time: TimeRange,
    /// Row range in the file (files only).
    pub rows: (u64, u64),
}

/// The plan: every matching series with the sources holding it in the requested range.
pub(crate) struct ScanPlan {
    pub series: Vec<(SeriesKey, Vec<Placement>)>,
}

impl SourceSet {
    pub(crate) fn plan(&self, filter: &SeriesFilter, time: TimeRange) -> ScanPlan {
        let mut by_series: HashMap<SeriesKey, Vec<Placement>> = HashMap::new();
        for (source_index, source) in self.sources.iter().enumerate() {
            match source {
                Source::File(file) => {
                    if !file.meta.time.overlaps(&time) {
                        continue;
                    }
                    for (key, stats) in file.index.iter() {
                        if stats.time.overlaps(&time) && filter.matches(key) {
                            by_series.entry(key.clone()).or_default().push(Placement {
                                source: source_index,
                                time: stats.time,
                                rows: (stats.row_start, stats.rows),
                            });
                        }
                    }
                }
                Source::Memtable { table, .. } => {
                    for (key, range) in table.series_matching(time, |key| filter.matches(key)) {
                        by_series.entry(key).or_default().push(Placement {
                            source: source_index,
                            time: range,
                            rows: (0, 0),
                        });
                    }
                }
            }
        }
        let mut series: Vec<(SeriesKey, Vec<Placement>)> = by_series.into_iter().collect();
        series.sort_by(|a, b| a.0.cmp(&b.0));
        ScanPlan { series }
    }

    /// Tombstones that hide points of `key` in source `source` (those written after it).
    pub(crate) fn tombstones_for(&self, source: usize, key: &SeriesKey) -> Vec<TimeRange> {
        let through = self.sources[source].through_lsn();
        self.tombstones
            .iter()
            .filter(|t| t.lsn > through && t.delete.matches_series(key))
            .map(|t| t.delete.time)
            .collect()
    }

    /// Runs a scan as a stream (a producer task feeding a small channel, so memory stays
    /// bounded and dropping the stream stops the work).
    pub fn scan(&self, store: Arc<dyn ObjectStore>, request: ScanRequest) -> Result<BatchStream> {
        if let Some(projection) = &request.projection {
            if let Some(bad) = projection.iter().find(|&&i| i >= 4) {
                return Err(StorageError::InvalidRequest {
                    reason: format!("no column {bad} in readings"),
                });
            }
        }
        let set = self.clone();
        let (tx, rx) = tokio::sync::mpsc::channel::<Result<RecordBatch>>(2);
        let failure_tx = tx.clone();
        let producer = tokio::spawn(async move {
            let mut sink = BatchSink {
                tx,
                projection: request.projection.clone(),
                batch_rows: request.batch_rows.max(1),
                builder: BatchBuilder::default(),
                open: true,
            };
            if let Err(error) = set.produce(&store, &request, &mut sink).await {
                sink.send(Err(error)).await;
            }
        });
        // A panic in the producer must reach the reader as an error, not as a short result.
        tokio::spawn(async move {
            if let Err(join_error) = producer.await {
                let _ = failure_tx
                    .send(Err(StorageError::Task(format!("scan failed: {join_error}"))))
                    .await;
            }
        });
        let stream =
            futures::stream::unfold(
                rx,
                |mut rx| async move { rx.recv().await.map(|item| (item, rx)) },
            );
        Ok(stream.boxed())
    }

    async fn produce(
        &self,
        store: &Arc<dyn ObjectStore>,
        request: &ScanRequest,
        sink: &mut BatchSink,
    ) -> Result<()> {
        let plan = self.plan(&request.series, request.time);
        let time = request.time;
        let batch_rows = request.batch_rows.max(1);
        // Series held by one source only, or by sources whose time ranges don't meet, are read
        // straight from each source; the rest are merged point by point.
        let mut direct_file_rows: Vec<Vec<(SeriesKey, (u64, u64))>> =
            vec![Vec::new(); self.sources.len()];
        let mut direct_memtable: Vec<Vec<SeriesKey>> = vec![Vec::new(); self.sources.len()];
        let mut merged: Vec<(SeriesKey, Vec<Placement>)> = Vec::new();
        for (key, placements) in plan.series {
            if needs_merge(&placements, time) {
                merged.push((key, placements));
                continue;
            }
            for placement in placements {
                match &self.sources[placement.source] {
                    Source::File(file) => {
                        let rows = rows_in_time(file, &key, placement.rows, time);
                        direct_file_rows[placement.source].push((key.clone(), rows))
                    }
                    Source::Memtable { .. } => direct_memtable[placement.source].push(key.clone()),
                }
            }
        }

        for (source_index, source) in self.sources.iter().enumerate() {
            if !sink.open {
                return Ok(());
            }
            match source {
                Source::File(file) => {
                    let wanted = &direct_file_rows[source_index];
                    if wanted.is_empty() {
                        continue;
                    }
                    let tombstones: HashMap<&SeriesKey, Vec<TimeRange>> = wanted
                        .iter()
                        .map(|(key, _)| (key, self.tombstones_for(source_index, key)))
                        .filter(|(_, t)| !t.is_empty())
                        .collect();
                    let mut reader = FileSeriesReader::open(store, file, wanted, batch_rows)?;
                    while let Some((key, mut points)) = reader.next().await? {
                        points.retain_range(time);
                        if let Some(ranges) = tombstones.get(&key) {
                            apply_tombstones(&mut points, ranges);
                        }
                        sink.push(&key, &points).await;
                    }
                }
                Source::Memtable { table, .. } => {
                    for key in &direct_memtable[source_index] {
                        let mut points = table.read_series(key, time)?;
                        apply_tombstones(&mut points, &self.tombstones_for(source_index, key));
                        sink.push(key, &points).await;
                    }
                }
            }
        }
        for (key, placements) in merged {
            if !sink.open {
                return Ok(());
            }
            let points = self.merged_series_points(store, &key, &placements, time).await?;
            sink.push(&key, &points).await;
        }
        sink.flush().await;
        Ok(())
    }

    /// All points of one series across its sources, newest source winning per timestamp.
    pub(crate) async fn merged_series_points(
        &self,
        store: &Arc<dyn ObjectStore>,
        key: &SeriesKey,
        placements: &[Placement],
        time: TimeRange,
    ) -> Result<SeriesPoints> {
        let mut all = SeriesPoints::default();
        // Placements are in source order, oldest first: later pushes win in sort_keep_last.
        for placement in placements {
            let mut points = match &self.sources[placement.source] {
                Source::File(file) => {
                    read_file_series(store, file, key, placement.rows, time).await?
                }
                Source::Memtable { table, .. } => table.read_series(key, time)?,
            };
            apply_tombstones(&mut points, &self.tombstones_for(placement.source, key));
            all.times.extend_from_slice(&points.times);
            all.values.extend_from_slice(&points.values);
        }
        all.sort_keep_last();
        Ok(all)
    }

    /// The points of one series from every source (used by compaction and catalog repair).
    pub async fn series_points(
        &self,
        store: &Arc<dyn ObjectStore>,
        key: &SeriesKey,
        time: TimeRange,
    ) -> Result<SeriesPoints> {
        let filter = SeriesFilter::series(key.device_id(), key.metric());
        let plan = self.plan(&filter, time);
        match plan.series.into_iter().find(|(k, _)| k == key) {
            Some((_, placements)) => self.merged_series_points(store, key, &placements, time).await,
            None => Ok(SeriesPoints::default()),
        }
    }

    /// Points of many series (sorted keys), reading each file once: for compaction.
    pub async fn many_series_points(
        &self,
        store: &Arc<dyn ObjectStore>,
        keys: &[SeriesKey],
    ) -> Result<HashMap<SeriesKey, SeriesPoints>> {
        let wanted: std::collections::HashSet<&SeriesKey> = keys.iter().collect();
        let mut per_source: Vec<HashMap<SeriesKey, SeriesPoints>> =
            Vec::with_capacity(self.sources.len());
        for (source_index, source) in self.sources.iter().enumerate() {
            let mut found: HashMap<SeriesKey, SeriesPoints> = HashMap::new();
            match source {
                Source::File(file) => {
                    let rows: Vec<(SeriesKey, (u64, u64))> = file
                        .index
                        .iter()
                        .filter(|(key, _)| wanted.contains(key))
                        .map(|(key, stats)| (key.clone(), (stats.row_start, stats.rows)))
                        .collect();
                    let mut reader = FileSeriesReader::open(store, file, &rows, 64 * 1024)?;
                    while let Some((key, points)) = reader.next().await? {
                        let entry = found.entry(key).or_default();
                        entry.times.extend_from_slice(&points.times);
                        entry.values.extend_from_slice(&points.values);
                    }
                }
                Source::Memtable { table, .. } => {
                    for key in keys {
                        let points = table.read_series(key, TimeRange::ALL)?;
                        if !points.is_empty() {
                            found.insert(key.clone(), points);
                        }
                    }
                }
            }
            for (key, points) in found.iter_mut() {
                apply_tombstones(points, &self.tombstones_for(source_index, key));
            }
            per_source.push(found);
        }
        let mut out: HashMap<SeriesKey, SeriesPoints> = HashMap::new();
        for found in per_source {
            for (key, points) in found {
                let entry = out.entry(key).or_default();
                entry.times.extend_from_slice(&points.times);
                entry.values.extend_from_slice(&points.values);
            }
        }
        for points in out.values_mut() {
            points.sort_keep_last();
        }
        Ok(out)
    }
}

/// The rows of a series' chunk `rows` (start, count) that can hold points in `time`: the run of
/// its segments (cut at every UTC hour) that meet `time`, so a one-hour query on a day's chunk
/// decodes an hour of rows, not the day. All of `rows` when the file stores no segments.
fn rows_in_time(file: &DataFile, key: &SeriesKey, rows: (u64, u64), time: TimeRange) -> (u64, u64) {
    let Some(segments) = file.index.segments(key) else {
        return rows;
    };
    let mut run: Option<(u64, u64)> = None;
    for segment in segments.iter().filter(|s| s.time.overlaps(&time)) {
        let end = segment.row_offset + segment.rows;
        run = Some(run.map_or((segment.row_offset, end), |(start, _)| (start, end)));
    }
    match run {
        Some((start, end)) => (rows.0 + start, end - start),
        None => (rows.0, 0),
    }
}

/// True when two placements of a series both reach into `time` and overlap each other.
fn needs_merge(placements: &[Placement], time: TimeRange) -> bool {
    if placements.len() < 2 {
        return false;
    }
    let mut ranges: Vec<TimeRange> = placements.iter().map(|p| p.time.intersect(&time)).collect();
    ranges.sort_by_key(|r| r.start);
    ranges.windows(2).any(|w| w[1].start <= w[0].end)
}

pub(crate) fn apply_tombstones(points: &mut SeriesPoints, tombstones: &[TimeRange]) {
    if !tombstones.is_empty() {
        points.retain(|t| !tombstones.iter().any(|range| range.contains(t)));
    }
}

/// Times and values of a file's rows, in the order the rows were asked for.
pub(crate) type TimeValueStream = BoxStream<'static, Result<(Vec<i64>, Vec<f64>)>>;

/// Streams the times (ns) and values of the given row ranges (sorted, disjoint) of a file,
/// decoding only those two columns of the row groups and pages the ranges touch.
pub(crate) fn read_file_time_values(
    store: &Arc<dyn ObjectStore>,
    file: &Arc<DataFile>,
    ranges: &[(u64, u64)],
    batch_rows: usize,
) -> Result<TimeValueStream> {
    // The file schema is (time, device_id, metric, value).
    let mask = ProjectionMask::roots(file.reader_meta.parquet_schema(), [0, 3]);
    let Some(stream) = file_rows_stream(store, file, ranges, batch_rows, Some(mask))? else {
        return Ok(futures::stream::empty().boxed());
    };
    let file = file.clone();
    Ok(stream
        .map(move |batch| {
            let batch = batch.map_err(|e| StorageError::parquet(&file.meta.path, e))?;
            if batch.num_columns() != 2 {
                return Err(StorageError::CorruptFile {
                    path: file.meta.path.clone(),
                    reason: format!("expected 2 columns, read {}", batch.num_columns()),
                });
            }
            Ok((
                decode_times(&file.meta, batch.column(0))?,
                decode_values(&file.meta, batch.column(1))?,
            ))
        })
        .boxed())
}

/// The Parquet stream of the given row ranges (sorted, disjoint) of a file, reading only the
/// row groups they touch (and, with the page index, only the pages); `None` when no row is
/// selected.
fn file_rows_stream(
    store: &Arc<dyn ObjectStore>,
    file: &Arc<DataFile>,
    ranges: &[(u64, u64)],
    batch_rows: usize,
    projection: Option<ProjectionMask>,
) -> Result<Option<ParquetRecordBatchStream<ObjectFileReader>>> {
    let path = file.meta.path.clone();
    let metadata = file.reader_meta.metadata();
    // Row groups touched, and the selection relative to the rows of those groups.
    let mut groups = Vec::new();
    let mut selectors: Vec<RowSelector> = Vec::new();
    let mut group_start = 0u64;
    let mut range_iter = ranges.iter().copied().filter(|r| r.1 > 0).peekable();
    for (group_index, group) in metadata.row_groups().iter().enumerate() {
        let group_rows = group.num_rows().max(0) as u64;
        let group_end = group_start + group_rows;
        let mut cursor = group_start;
        let mut touched = false;
        while let Some(&(start, len)) = range_iter.peek() {
            let end = start + len;
            if start >= group_end {
                break;
            }
            let from = start.max(cursor);
            let to = end.min(group_end);
            if to > from {
                if from > cursor {
                    selectors.push(RowSelector::skip((from - cursor) as usize));
                }
                selectors.push(RowSelector::select((to - from) as usize));
                cursor = to;
                touched = true;
            }
            if end <= group_end {
                range_iter.next();
            } else {
                break;
            }
        }
        if touched {
            if cursor < group_end {
                selectors.push(RowSelector::skip((group_end - cursor) as usize));
            }
            groups.push(group_index);
        } else {
            // Untouched groups are not read at all, so no selector covers them.
        }
        group_start = group_end;
    }
    if groups.is_empty() {
        return Ok(None);
    }
    let reader =
        ObjectFileReader::new(store.clone(), Path::from(path.as_str()), file.meta.size_bytes);
    let mut builder =
        ParquetRecordBatchStreamBuilder::new_with_metadata(reader, file.reader_meta.clone())
            .with_row_groups(groups)
            .with_row_selection(RowSelection::from(selectors))
            .with_batch_size(batch_rows);
    if let Some(mask) = projection {
        builder = builder.with_projection(mask);
    }
    builder.build().map(Some).map_err(|e| StorageError::parquet(&path, e))
}

async fn read_file_series(
    store: &Arc<dyn ObjectStore>,
    file: &Arc<DataFile>,
    key: &SeriesKey,
    rows: (u64, u64),
    time: TimeRange,
) -> Result<SeriesPoints> {
    let mut points = SeriesPoints::with_capacity(rows.1 as usize);
    let mut reader = FileSeriesReader::open(store, file, &[(key.clone(), rows)], 64 * 1024)?;
    while let Some((_, piece)) = reader.next().await? {
        points.times.extend_from_slice(&piece.times);
        points.values.extend_from_slice(&piece.values);
    }
    points.retain_range(time);
    Ok(points)
}

/// The points of several series' row ranges in one file, piece by piece. The file's index
/// names the series of every row range, so only `time` and `value` are decoded.
struct FileSeriesReader {
    path: String,
    batches: TimeValueStream,
    /// Series still to come, with their unread row counts, in file order.
    runs: VecDeque<(SeriesKey, usize)>,
    /// The decoded batch being handed out, and how many of its rows are handed out already.
    current: (Vec<i64>, Vec<f64>),
    handed_out: usize,
}

impl FileSeriesReader {
    /// `wanted`: each series with its row range `(start, count)` in the file; ranges must not
    /// overlap. Series with no rows are skipped.
    fn open(
        store: &Arc<dyn ObjectStore>,
        file: &Arc<DataFile>,
        wanted: &[(SeriesKey, (u64, u64))],
        batch_rows: usize,
    ) -> Result<Self> {
        let mut wanted: Vec<&(SeriesKey, (u64, u64))> =
            wanted.iter().filter(|(_, rows)| rows.1 > 0).collect();
        wanted.sort_by_key(|(_, rows)| rows.0);
        let ranges: Vec<(u64, u64)> = wanted.iter().map(|(_, rows)| *rows).collect();
        Ok(FileSeriesReader {
            path: file.meta.path.clone(),
            batches: read_file_time_values(store, file, &ranges, batch_rows)?,
            runs: wanted.iter().map(|(key, rows)| (key.clone(), rows.1 as usize)).collect(),
            current: (Vec::new(), Vec::new()),
            handed_out: 0,
        })
    }

    /// The next piece: consecutive rows of one series (a series may come in several pieces).
    async fn next(&mut self) -> Result<Option<(SeriesKey, SeriesPoints)>> {
        loop {
            let Some((key, unread)) = self.runs.front_mut() else {
                return Ok(None);
            };
            let available = self.current.0.len() - self.handed_out;
            if available == 0 {
                match self.batches.try_next().await? {
                    Some(batch) => {
                        self.current = batch;
                        self.handed_out = 0;
                        continue;
                    }
                    None => {
                        return Err(StorageError::CorruptFile {
                            path: self.path.clone(),
                            reason: format!("rows of {key} end early ({unread} missing)"),
                        })
                    }
                }
            }
            let take = available.min(*unread);
            let piece = if self.handed_out == 0 && take == self.current.0.len() {
                // The whole batch is this series': hand it over without copying.
                let (times, values) = std::mem::take(&mut self.current);
                SeriesPoints { times, values }
            } else {
                let rows = self.handed_out..self.handed_out + take;
                self.handed_out += take;
                SeriesPoints {
                    times: self.current.0[rows.clone()].to_vec(),
                    values: self.current.1[rows].to_vec(),
                }
            };
            *unread -= take;
            let key = if *unread == 0 {
                self.runs.pop_front().map(|(key, _)| key)
            } else {
                Some(key.clone())
            };
            return Ok(key.map(|key| (key, piece)));
        }
    }
}

/// Accumulates series points into readings batches, building only the columns asked for.
#[derive(Default)]
struct BatchBuilder {
    times: Vec<i64>,
    values: Vec<f64>,
    /// Runs of rows of one series, in row order.
    series: Vec<(SeriesKey, usize)>,
}

impl BatchBuilder {
    fn rows(&self) -> usize {
        self.times.len()
    }

    fn push(&mut self, key: &SeriesKey, points: &SeriesPoints) {
        if points.is_empty() {
            return;
        }
        self.times.extend_from_slice(&points.times);
        self.values.extend_from_slice(&points.values);
        self.series.push((key.clone(), points.len()));
    }

    /// The rows so far as a batch of [`readings_schema`]'s `projection` (all columns when
    /// `None`); the builder is empty afterwards.
    fn take(&mut self, projection: Option<&[usize]>) -> Result<RecordBatch> {
        let rows = self.times.len();
        // The buffers move into the arrays; a column asked for twice shares its buffer.
        let times = ScalarBuffer::from(std::mem::take(&mut self.times));
        let values = ScalarBuffer::from(std::mem::take(&mut self.values));
        let series = std::mem::take(&mut self.series);
        let repeat = |name: fn(&SeriesKey) -> &str| -> ArrayRef {
            let bytes: usize = series.iter().map(|(key, n)| name(key).len() * n).sum();
            let mut builder = StringBuilder::with_capacity(rows, bytes);
            for (key, n) in &series {
                for _ in 0..*n {
                    builder.append_value(name(key));
                }
            }
            Arc::new(builder.finish())
        };
        let all = [0, 1, 2, 3];
        let columns = projection.unwrap_or(&all);
        let arrays: Vec<ArrayRef> = columns
            .iter()
            .map(|&column| -> ArrayRef {
                match column {
                    0 => Arc::new(
                        TimestampNanosecondArray::new(times.clone(), None).with_timezone("UTC"),
                    ),
                    1 => repeat(SeriesKey::device_id),
                    2 => repeat(SeriesKey::metric),
                    _ => Arc::new(Float64Array::new(values.clone(), None)),
                }
            })
            .collect();
        let schema = match projection {
            Some(projection) => Arc::new(readings_schema().project(projection)?),
            None => readings_schema(),
        };
        let options = RecordBatchOptions::new().with_row_count(Some(rows));
        Ok(RecordBatch::try_new_with_options(schema, arrays, &options)?)
    }
}

/// Where a scan's producer puts its rows: batches of about `batch_rows`, projected, into the
/// channel the reader drains.
struct BatchSink {
    tx: tokio::sync::mpsc::Sender<Result<RecordBatch>>,
    projection: Option<Vec<usize>>,
    batch_rows: usize,
    builder: BatchBuilder,
    /// False once the reader has dropped the stream: producing stops.
    open: bool,
}

impl BatchSink {
    async fn push(&mut self, key: &SeriesKey, points: &SeriesPoints) {
        self.builder.push(key, points);
        if self.builder.rows() >= self.batch_rows {
            self.flush().await;
        }
    }

    /// Sends the rows held back so far.
    async fn flush(&mut self) {
        if self.builder.rows() > 0 {
            let batch = self.builder.take(self.projection.as_deref());
            self.send(batch).await;
        }
    }

    async fn send(&mut self, item: Result<RecordBatch>) {
        if !self.open {
            return;
        }
        if self.tx.send(item).await.is_err() {
            self.open = false;
        }
    }
}
