//! Aggregates answered from stored aggregates, decoding only what they cannot cover.
//!
//! A *chunk* is one series inside one data file. Its footer stores the chunk's point count,
//! time range and exact aggregates ([`crate::file_format::ChunkAggregate`]), and the same for
//! each of its *segments*: runs of rows cut at every UTC hour and after at most 4096 rows
//! ([`crate::segments`]). [`Engine::aggregate`] returns count, exact sum, minimum and maximum
//! per series (and per time bucket) over a time range. A stored aggregate — of a whole chunk
//! or of one segment, whose points span the times `T` from its first to its last — is used
//! only when all of these hold:
//!
//! * `T` lies wholly inside the requested time range;
//! * with buckets, the first and last instants of `T` fall in the same bucket;
//! * no other source (file or memtable) may hold points of the series in `T` (otherwise the
//!   last write must win point by point). Another file's points are located by its segments
//!   (by its chunk's time range when it has none), a memtable's by the series' time range in
//!   it; so a memtable or file overlapping only a chunk's last hour stops only the segments of
//!   that hour. Files of the same write batch do not count (a flush or compaction writes each
//!   point once, split by partition and value layout, so the decimal file and the
//!   float-exception file of one flush are disjoint);
//! * no tombstone written after the file touches `T`;
//! * the file stores the aggregate (files written before exact aggregates store none and are
//!   always decoded; files written before segments store only whole chunks).
//!
//! A chunk is used whole when it can be, else segment by segment. Everything else —
//! segments cut by the range or by a bucket edge, shadowed or deleted ones, chunks of files
//! without segments, memtables — is decoded: only those rows are read (each file once per
//! query, and only its `time` and `value` columns), filtered by the time range and the
//! tombstones that apply to their source, and, where decoded points of different sources
//! overlap in time, merged as [`Engine::scan`] merges them (the newest source wins per
//! timestamp); the remaining points are added one by one.
//!
//! The result is identical to aggregating the points [`Engine::scan`] returns: a used
//! aggregate's points are all in the scan (nothing deletes or overrides them) and nothing else
//! in the scan shares their timestamps, so they and the decoded points partition the scan's
//! points; sums are exact ([`crate::exact`]) and minimum and maximum use `totalOrder`, so the
//! partition does not change any bit of the result.
//!
//! [`Engine::aggregate`]: crate::Engine::aggregate
//! [`Engine::scan`]: crate::Engine::scan

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use futures::TryStreamExt;
use minitrue_common::{SeriesKey, TimeRange};
use object_store::ObjectStore;

use crate::error::{Result, StorageError};
use crate::exact::ValueAggregate;
use crate::memtable::SeriesPoints;
use crate::scan::{
    apply_tombstones, read_file_time_values, Placement, SeriesFilter, Source, SourceSet,
};
use crate::segments::{Segment, SeriesSegments};

/// Most decoded rows of series that must be merged held in memory at once: series are decoded
/// in rounds that stay under it (one round for most queries).
const MERGE_ROUND_ROWS: u64 = 4 << 20;
/// Rows per decoded batch.
const DECODE_BATCH_ROWS: usize = 64 * 1024;

/// Maps timestamps to the start of their bucket (e.g. `time_bucket('1 hour', time)`).
///
/// Contract: the mapping must be monotone non-decreasing in time (if `a <= b` then
/// `bucket(a) <= bucket(b)`), so a chunk whose first and last points share a bucket lies
/// wholly in it. Calendar buckets in UTC (fixed widths, months) are; buckets in a local time
/// zone are not (the repeated hour when clocks go back), and must not be given here.
pub trait TimeBuckets: Send + Sync + fmt::Debug {
    /// The bucket of every timestamp, in order.
    fn buckets(&self, times: &[i64]) -> Result<Vec<i64>>;
}

/// What to aggregate: the series matching a filter, over a time range (inclusive), per
/// series and optionally per bucket.
#[derive(Debug, Clone)]
pub struct AggregateRequest {
    pub series: SeriesFilter,
    pub time: TimeRange,
    pub buckets: Option<Arc<dyn TimeBuckets>>,
    /// `false` uses no stored aggregate and decodes every chunk whole (the reference the fast
    /// path is tested against).
    pub use_chunk_aggregates: bool,
}

/// The aggregate of one series in one bucket (`bucket` is `None` without buckets).
#[derive(Debug, Clone)]
pub struct GroupAggregate {
    pub series: SeriesKey,
    pub bucket: Option<i64>,
    pub value: ValueAggregate,
}

/// The result of [`crate::Engine::aggregate`]: non-empty groups sorted by series and bucket,
/// and how they were computed.
#[derive(Debug, Clone, Default)]
pub struct AggregateOutput {
    pub groups: Vec<GroupAggregate>,
    /// Whole chunks answered from their stored aggregate.
    pub chunks_from_stats: u64,
    /// Segments (of chunks not used whole) answered from their stored aggregate.
    pub segments_from_stats: u64,
    /// Points those chunks and segments stand for.
    pub points_from_stats: u64,
    /// Points decoded (after merging and deletes).
    pub points_decoded: u64,
}

type Groups = BTreeMap<Option<i64>, ValueAggregate>;

/// One series of a request: where it lives, what is aggregated so far, what is left to decode.
struct SeriesWork<'a> {
    key: SeriesKey,
    placements: Vec<Placement>,
    /// Per placement: the segments of the series in that file, if it stores them.
    segments: Vec<Option<SeriesSegments<'a>>>,
    /// Per placement: the tombstones hiding its points (those written after its source).
    tombstones: Vec<Vec<TimeRange>>,
    groups: Groups,
    /// What must be decoded, sorted by placement and row.
    pieces: Vec<Piece>,
    /// Decoded pieces of different sources overlap in time: their points are merged (the
    /// newest source wins per timestamp) instead of being added as they are read.
    merge: bool,
}

/// Rows of one placement to decode.
#[derive(Debug, Clone, Copy)]
struct Piece {
    placement: usize,
    /// First row in the file and row count (unused for memtables).
    rows: (u64, u64),
    /// Times of those rows (at most).
    time: TimeRange,
}

/// Rows of one file to decode, and whose they are.
struct FileRange {
    start: u64,
    rows: u64,
    series: usize,
    placement: usize,
}

impl SourceSet {
    pub(crate) async fn aggregate(
        &self,
        store: &Arc<dyn ObjectStore>,
        request: &AggregateRequest,
    ) -> Result<AggregateOutput> {
        let mut output = AggregateOutput::default();
        if request.time.is_empty() {
            return Ok(output);
        }
        let plan = self.plan(&request.series, request.time);
        let mut work: Vec<SeriesWork<'_>> = plan
            .series
            .into_iter()
            .map(|(key, placements)| {
                let segments = placements
                    .iter()
                    .map(|placement| match &self.sources[placement.source] {
                        Source::File(file) => file.index.segments(&key),
                        Source::Memtable { .. } => None,
                    })
                    .collect();
                let tombstones =
                    placements.iter().map(|p| self.tombstones_for(p.source, &key)).collect();
                SeriesWork {
                    key,
                    placements,
                    segments,
                    tombstones,
                    groups: Groups::new(),
                    pieces: Vec::new(),
                    merge: false,
                }
            })
            .collect();
        self.use_stored(&mut work, request, &mut output)?;
        let mut start = 0;
        while start < work.len() {
            let end = round_end(&work, start);
            self.decode_round(store, &mut work[start..end], request, &mut output).await?;
            start = end;
        }
        for series in work {
            for (bucket, value) in series.groups {
                output.groups.push(GroupAggregate { series: series.key.clone(), bucket, value });
            }
        }
        Ok(output)
    }

    /// Adds the stored aggregates the module rules allow to the groups, and lists everything
    /// else as pieces to decode.
    fn use_stored<'a>(
        &'a self,
        work: &mut [SeriesWork<'a>],
        request: &AggregateRequest,
        output: &mut AggregateOutput,
    ) -> Result<()> {
        let buckets = request.buckets.as_deref();
        // Whole chunks first.
        let mut chunk_candidates: Vec<(usize, usize)> = Vec::new();
        let mut by_segment: Vec<(usize, usize)> = Vec::new();
        for (s, series) in work.iter_mut().enumerate() {
            for (p, placement) in series.placements.iter().enumerate() {
                let whole = Piece { placement: p, rows: placement.rows, time: placement.time };
                let Source::File(file) = &self.sources[placement.source] else {
                    series.pieces.push(whole);
                    continue;
                };
                if !request.use_chunk_aggregates {
                    series.pieces.push(whole);
                    continue;
                }
                let usable = request.time.covers(&placement.time)
                    && file.index.aggregate(&series.key).is_some()
                    && self.exact_in(series, p, placement.time);
                if usable {
                    chunk_candidates.push((s, p));
                } else {
                    by_segment.push((s, p));
                }
            }
        }
        let ranges: Vec<TimeRange> =
            chunk_candidates.iter().map(|&(s, p)| work[s].placements[p].time).collect();
        for (&(s, p), bucket) in chunk_candidates.iter().zip(common_buckets(buckets, &ranges)?) {
            let series = &mut work[s];
            let placement = series.placements[p];
            let stored = match &self.sources[placement.source] {
                Source::File(file) => file.index.aggregate(&series.key),
                Source::Memtable { .. } => None,
            };
            match (bucket, stored) {
                (Some(bucket), Some(stored)) => {
                    output.chunks_from_stats += 1;
                    output.points_from_stats += placement.rows.1;
                    let aggregate = stored.to_value_aggregate(placement.rows.1);
                    series.groups.entry(bucket).or_default().merge(&aggregate);
                }
                _ => by_segment.push((s, p)),
            }
        }

        // Then the segments of the chunks not used whole.
        let mut segment_candidates: Vec<(usize, usize, Segment<'a>)> = Vec::new();
        for &(s, p) in &by_segment {
            let series = &work[s];
            let placement = series.placements[p];
            let whole = Piece { placement: p, rows: placement.rows, time: placement.time };
            let Some(segments) = series.segments[p] else {
                work[s].pieces.push(whole);
                continue;
            };
            let mut pieces = Vec::new();
            for segment in segments.iter() {
                if !segment.time.overlaps(&request.time) {
                    continue;
                }
                if request.time.covers(&segment.time) && self.exact_in(series, p, segment.time) {
                    segment_candidates.push((s, p, segment));
                } else {
                    pieces.push(segment_piece(p, &placement, &segment));
                }
            }
            work[s].pieces.extend(pieces);
        }
        let ranges: Vec<TimeRange> =
            segment_candidates.iter().map(|(_, _, seg)| seg.time).collect();
        for ((s, p, segment), bucket) in
            segment_candidates.into_iter().zip(common_buckets(buckets, &ranges)?)
        {
            let series = &mut work[s];
            match bucket {
                Some(bucket) => {
                    output.segments_from_stats += 1;
                    output.points_from_stats += segment.rows;
                    segment.merge_into(series.groups.entry(bucket).or_default())?;
                }
                None => {
                    let placement = series.placements[p];
                    series.pieces.push(segment_piece(p, &placement, &segment));
                }
            }
        }

        for series in work.iter_mut() {
            series.pieces.sort_by_key(|piece| (piece.placement, piece.rows.0));
            coalesce(&mut series.pieces);
            series.merge = self.pieces_overlap(series, request.time);
        }
        Ok(())
    }

    /// Whether the points of placement `p` (a file) in `time` are exactly the points a scan
    /// returns there: no tombstone written after the file touches `time`, and no other source
    /// (but files of the same write batch) may hold points of the series in `time`.
    fn exact_in(&self, series: &SeriesWork<'_>, p: usize, time: TimeRange) -> bool {
        if series.tombstones[p].iter().any(|range| range.overlaps(&time)) {
            return false;
        }
        let batch = self.batch_of(series.placements[p].source);
        series.placements.iter().enumerate().all(|(q, other)| {
            if q == p || !other.time.overlaps(&time) {
                return true;
            }
            if batch.is_some() && self.batch_of(other.source) == batch {
                return true;
            }
            // A file's points lie in its segments; without them, anywhere in its range.
            series.segments[q].is_some_and(|segments| !segments.overlaps(&time))
        })
    }

    fn batch_of(&self, source: usize) -> Option<u64> {
        match &self.sources[source] {
            Source::File(file) => Some(file.meta.batch.id),
            Source::Memtable { .. } => None,
        }
    }

    /// Whether decoded pieces of sources that may hold the same points overlap in `time`.
    /// Files of one write batch hold disjoint points; each memtable is its own source.
    fn pieces_overlap(&self, series: &SeriesWork<'_>, time: TimeRange) -> bool {
        let origin = |piece: &Piece| {
            let source = series.placements[piece.placement].source;
            match self.batch_of(source) {
                Some(batch) => (true, batch),
                None => (false, source as u64),
            }
        };
        let mut ranges: Vec<(TimeRange, (bool, u64))> = series
            .pieces
            .iter()
            .map(|piece| (piece.time.intersect(&time), origin(piece)))
            .filter(|(range, _)| !range.is_empty())
            .collect();
        ranges.sort_by_key(|(range, _)| range.start);
        // The latest end reached by each origin so far; a range starting at or before another
        // origin's reach overlaps it.
        let mut reach: Vec<((bool, u64), i64)> = Vec::new();
        for (range, origin) in ranges {
            if reach.iter().any(|(other, end)| *other != origin && *end >= range.start) {
                return true;
            }
            match reach.iter_mut().find(|(other, _)| *other == origin) {
                Some((_, end)) => *end = (*end).max(range.end),
                None => reach.push((origin, range.end)),
            }
        }
        false
    }

    /// Decodes the pieces of a run of series: each file once, memtables series by series.
    async fn decode_round(
        &self,
        store: &Arc<dyn ObjectStore>,
        round: &mut [SeriesWork<'_>],
        request: &AggregateRequest,
        output: &mut AggregateOutput,
    ) -> Result<()> {
        let buckets = request.buckets.as_deref();
        let time = request.time;
        // Points of series to merge, per placement (placements are in source order).
        let mut held: Vec<Vec<SeriesPoints>> = round
            .iter()
            .map(|s| {
                if s.merge {
                    vec![SeriesPoints::default(); s.placements.len()]
                } else {
                    Vec::new()
                }
            })
            .collect();
        let mut decoded = Decoded::default();
        let mut file_ranges: BTreeMap<usize, Vec<FileRange>> = BTreeMap::new();
        for (s, series) in round.iter().enumerate() {
            for piece in &series.pieces {
                let source = series.placements[piece.placement].source;
                match &self.sources[source] {
                    Source::File(_) => file_ranges.entry(source).or_default().push(FileRange {
                        start: piece.rows.0,
                        rows: piece.rows.1,
                        series: s,
                        placement: piece.placement,
                    }),
                    Source::Memtable { table, .. } => {
                        let mut points = table.read_series(&series.key, time)?;
                        apply_tombstones(&mut points, &series.tombstones[piece.placement]);
                        if series.merge {
                            held[s][piece.placement] = points;
                        } else {
                            decoded.push(s, &points.times, &points.values, time, &[]);
                        }
                    }
                }
            }
        }
        decoded.flush(round, buckets, output)?;

        for (source, mut ranges) in file_ranges {
            let Source::File(file) = &self.sources[source] else { continue };
            ranges.retain(|range| range.rows > 0);
            ranges.sort_by_key(|range| range.start);
            let rows: Vec<(u64, u64)> = ranges.iter().map(|r| (r.start, r.rows)).collect();
            let mut batches = read_file_time_values(store, file, &rows, DECODE_BATCH_ROWS)?;
            let miscounted = |reason: &str| StorageError::CorruptFile {
                path: file.meta.path.clone(),
                reason: format!("aggregate read: {reason}"),
            };
            // The rows come back in the order of `ranges`: walk them alongside.
            let mut next = 0;
            let mut done_in_range = 0u64;
            while let Some((times, values)) = batches.try_next().await? {
                if values.len() != times.len() {
                    return Err(miscounted("columns differ in length"));
                }
                let mut row = 0;
                while row < times.len() {
                    let range = ranges.get(next).ok_or_else(|| miscounted("extra rows"))?;
                    let take = ((range.rows - done_in_range) as usize).min(times.len() - row);
                    let (t, v) = (&times[row..row + take], &values[row..row + take]);
                    let series = &round[range.series];
                    let tombstones = &series.tombstones[range.placement];
                    if series.merge {
                        let points = &mut held[range.series][range.placement];
                        keep_points(t, v, time, tombstones, &mut points.times, &mut points.values);
                    } else {
                        decoded.push(range.series, t, v, time, tombstones);
                    }
                    row += take;
                    done_in_range += take as u64;
                    if done_in_range == range.rows {
                        next += 1;
                        done_in_range = 0;
                    }
                }
                decoded.flush(round, buckets, output)?;
            }
            if next != ranges.len() {
                return Err(miscounted("missing rows"));
            }
        }

        for (series, held) in round.iter_mut().zip(held) {
            if !series.merge {
                continue;
            }
            let mut all = SeriesPoints::default();
            for points in held {
                all.times.extend_from_slice(&points.times);
                all.values.extend_from_slice(&points.values);
            }
            all.sort_keep_last();
            output.points_decoded += all.len() as u64;
            add_points(&mut series.groups, buckets, &all.times, &all.values)?;
        }
        Ok(())
    }
}

/// The end of the decode round starting at `start`: series whose pieces must be merged hold
/// their points until the round ends, so their rows are bounded by [`MERGE_ROUND_ROWS`].
fn round_end(work: &[SeriesWork<'_>], start: usize) -> usize {
    let mut held = 0u64;
    let mut end = start;
    while end < work.len() {
        let series = &work[end];
        let rows: u64 =
            if series.merge { series.pieces.iter().map(|piece| piece.rows.1).sum() } else { 0 };
        if end > start && held + rows > MERGE_ROUND_ROWS {
            break;
        }
        held += rows;
        end += 1;
    }
    end
}

fn segment_piece(placement_index: usize, placement: &Placement, segment: &Segment<'_>) -> Piece {
    Piece {
        placement: placement_index,
        rows: (placement.rows.0 + segment.row_offset, segment.rows),
        time: segment.time,
    }
}

/// Joins pieces (sorted by placement and row) of one placement whose rows follow each other.
fn coalesce(pieces: &mut Vec<Piece>) {
    let mut joined: Vec<Piece> = Vec::with_capacity(pieces.len());
    for piece in pieces.drain(..) {
        match joined.last_mut() {
            Some(last)
                if last.placement == piece.placement
                    && last.rows.1 > 0
                    && last.rows.0 + last.rows.1 == piece.rows.0 =>
            {
                last.rows.1 += piece.rows.1;
                last.time = TimeRange::new(last.time.start, piece.time.end);
            }
            _ => joined.push(piece),
        }
    }
    *pieces = joined;
}

/// For each range, the one bucket holding both its ends (so, buckets being monotone, all of
/// it), or `None` when its ends fall in different buckets. Without buckets every range is in
/// the single group `Some(None)`. One call to the buckets for all ranges.
fn common_buckets(
    buckets: Option<&dyn TimeBuckets>,
    ranges: &[TimeRange],
) -> Result<Vec<Option<Option<i64>>>> {
    let Some(buckets) = buckets else {
        return Ok(vec![Some(None); ranges.len()]);
    };
    if ranges.is_empty() {
        return Ok(Vec::new());
    }
    let ends: Vec<i64> = ranges.iter().flat_map(|range| [range.start, range.end]).collect();
    let bucket_of = checked_buckets(buckets, &ends)?;
    Ok(bucket_of.chunks_exact(2).map(|b| (b[0] == b[1]).then_some(Some(b[0]))).collect())
}

fn checked_buckets(buckets: &dyn TimeBuckets, times: &[i64]) -> Result<Vec<i64>> {
    let bucket_of = buckets.buckets(times)?;
    if bucket_of.len() != times.len() {
        return Err(StorageError::InvalidRequest {
            reason: format!(
                "time buckets returned {} values for {} times",
                bucket_of.len(),
                times.len()
            ),
        });
    }
    Ok(bucket_of)
}

/// Adds points to the groups of their buckets.
fn add_points(
    groups: &mut Groups,
    buckets: Option<&dyn TimeBuckets>,
    times: &[i64],
    values: &[f64],
) -> Result<()> {
    if times.is_empty() {
        return Ok(());
    }
    match buckets {
        None => groups.entry(None).or_default().add_all(values),
        Some(buckets) => add_bucketed(groups, &checked_buckets(buckets, times)?, values),
    }
    Ok(())
}

/// Copies the points (sorted by time) inside `time` and outside every tombstone.
fn keep_points(
    times: &[i64],
    values: &[f64],
    time: TimeRange,
    tombstones: &[TimeRange],
    out_times: &mut Vec<i64>,
    out_values: &mut Vec<f64>,
) {
    let (Some(&first), Some(&last)) = (times.first(), times.last()) else { return };
    if tombstones.is_empty() && time.contains(first) && time.contains(last) {
        out_times.extend_from_slice(times);
        out_values.extend_from_slice(values);
        return;
    }
    for (&t, &value) in times.iter().zip(values) {
        if time.contains(t) && !tombstones.iter().any(|range| range.contains(t)) {
            out_times.push(t);
            out_values.push(value);
        }
    }
}

/// Decoded points of series that need no merge, gathered so that one call to the buckets
/// covers a whole batch of many series.
#[derive(Default)]
struct Decoded {
    times: Vec<i64>,
    values: Vec<f64>,
    /// `(series, points)` runs in the order pushed.
    runs: Vec<(usize, usize)>,
}

impl Decoded {
    fn push(
        &mut self,
        series: usize,
        times: &[i64],
        values: &[f64],
        time: TimeRange,
        tombstones: &[TimeRange],
    ) {
        let before = self.times.len();
        keep_points(times, values, time, tombstones, &mut self.times, &mut self.values);
        let added = self.times.len() - before;
        match self.runs.last_mut() {
            _ if added == 0 => {}
            Some((last, count)) if *last == series => *count += added,
            _ => self.runs.push((series, added)),
        }
    }

    fn flush(
        &mut self,
        round: &mut [SeriesWork<'_>],
        buckets: Option<&dyn TimeBuckets>,
        output: &mut AggregateOutput,
    ) -> Result<()> {
        if self.times.is_empty() {
            return Ok(());
        }
        output.points_decoded += self.times.len() as u64;
        let bucket_of = buckets.map(|b| checked_buckets(b, &self.times)).transpose()?;
        let mut offset = 0;
        for &(series, count) in &self.runs {
            let groups = &mut round[series].groups;
            let range = offset..offset + count;
            match &bucket_of {
                None => groups.entry(None).or_default().add_all(&self.values[range]),
                Some(bucket_of) => {
                    add_bucketed(groups, &bucket_of[range.clone()], &self.values[range])
                }
            }
            offset += count;
        }
        self.times.clear();
        self.values.clear();
        self.runs.clear();
        Ok(())
    }
}

/// Adds points to their buckets; runs of equal buckets (the usual case, times being sorted)
/// go in one map lookup.
fn add_bucketed(groups: &mut Groups, buckets: &[i64], values: &[f64]) {
    let mut start = 0;
    while start < values.len() {
        let bucket = buckets[start];
        let mut end = start + 1;
        while end < values.len() && buckets[end] == bucket {
            end += 1;
        }
        groups.entry(Some(bucket)).or_default().add_all(&values[start..end]);
        start = end;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::file_format::{write_file_set, DataFile, FileSetParams, LsnRange};
    use crate::log_entry::DeleteRequest;
    use crate::manifest::Tombstone;
    use crate::object_reader::reader_options;
    use bytes::Bytes;
    use object_store::memory::InMemory;
    use object_store::path::Path;
    use object_store::{ObjectStoreExt, PutPayload};
    use parquet::arrow::arrow_reader::ArrowReaderMetadata;

    const MINUTE: i64 = 60_000_000_000;
    const HOUR: i64 = 60 * MINUTE;

    /// A file written before segments (see `file_format::tests`): series `a` and `b`
    /// (`temperature`), one point per minute for 180 minutes from 10 minutes before an hour.
    const FILE_BEFORE_SEGMENTS: &[u8] =
        include_bytes!("../tests/fixtures/format1-before-segments.parquet");
    const FIXTURE_START: i64 = 1_700_000_000_000_000_000 / HOUR * HOUR - 10 * MINUTE;

    #[derive(Debug)]
    struct Hourly;

    impl TimeBuckets for Hourly {
        fn buckets(&self, times: &[i64]) -> Result<Vec<i64>> {
            Ok(times.iter().map(|t| t.div_euclid(HOUR) * HOUR).collect())
        }
    }

    async fn stored(store: &Arc<dyn ObjectStore>, path: &str, bytes: Bytes) -> Source {
        store.put(&Path::from(path), PutPayload::from_bytes(bytes.clone())).await.unwrap();
        let reader_meta = ArrowReaderMetadata::load(&bytes, reader_options()).unwrap();
        let file = DataFile::from_footer(path, bytes.len() as u64, reader_meta).unwrap();
        Source::File(Arc::new(file))
    }

    /// What a scan of the set returns, aggregated.
    async fn reference(
        set: &SourceSet,
        store: &Arc<dyn ObjectStore>,
        request: &AggregateRequest,
    ) -> Vec<(SeriesKey, Option<i64>, u64, u64)> {
        let mut out = Vec::new();
        for (key, _) in set.plan(&request.series, request.time).series {
            let points = set.series_points(store, &key, request.time).await.unwrap();
            let mut groups = Groups::new();
            add_points(&mut groups, request.buckets.as_deref(), &points.times, &points.values)
                .unwrap();
            for (bucket, value) in groups {
                out.push((key.clone(), bucket, value.count, value.sum.to_f64().to_bits()));
            }
        }
        out
    }

    #[tokio::test]
    async fn files_without_segments_are_aggregated_per_chunk_beside_files_with_them() {
        let store: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
        let old = stored(
            &store,
            "data/all/0000000000000001-d2.parquet",
            Bytes::from_static(FILE_BEFORE_SEGMENTS),
        )
        .await;
        // A later flush rewrites `a` over the fixture's last 20 minutes and 40 more.
        let a = SeriesKey::new("a", "temperature").unwrap();
        let rewrite = SeriesPoints {
            times: (160..220).map(|i| FIXTURE_START + i * MINUTE).collect(),
            values: (160..220).map(|i| -(i as f64) / 4.0).collect(),
        };
        let params = FileSetParams {
            partition_ns: None,
            zstd_level: 1,
            row_group_rows: 1 << 20,
            page_rows: 1024,
            lsn: LsnRange { min: 2, max: 2 },
            batch_id: 2,
            first_file_id: 2,
            compacted_from: Vec::new(),
            level: 0,
        };
        let encoded =
            write_file_set(std::slice::from_ref(&a), &|_| Ok(rewrite.clone()), &params).unwrap();
        let new = stored(&store, &encoded[0].meta.path, encoded[0].bytes.clone()).await;
        // Then `b` loses ten minutes in its second hour.
        let deleted = TimeRange::new(FIXTURE_START + 70 * MINUTE, FIXTURE_START + 79 * MINUTE);
        let tombstone = Tombstone {
            lsn: 3,
            delete: DeleteRequest { device_id: "b".into(), metric: None, time: deleted },
        };
        for tombstones in [Vec::new(), vec![tombstone]] {
            let set = SourceSet {
                sources: vec![old.clone(), new.clone()],
                tombstones: Arc::new(tombstones.clone()),
            };
            for (time, buckets) in [
                (TimeRange::ALL, None),
                (TimeRange::ALL, Some(Arc::new(Hourly) as Arc<dyn TimeBuckets>)),
                (TimeRange::new(FIXTURE_START + 15 * MINUTE, FIXTURE_START + 200 * MINUTE), None),
            ] {
                let request = |use_chunk_aggregates| AggregateRequest {
                    series: SeriesFilter::all(),
                    time,
                    buckets: buckets.clone(),
                    use_chunk_aggregates,
                };
                let fast = set.aggregate(&store, &request(true)).await.unwrap();
                let slow = set.aggregate(&store, &request(false)).await.unwrap();
                let expected = reference(&set, &store, &request(true)).await;
                for output in [&fast, &slow] {
                    let got: Vec<_> = output
                        .groups
                        .iter()
                        .map(|g| {
                            let sum = g.value.sum.to_f64().to_bits();
                            (g.series.clone(), g.bucket, g.value.count, sum)
                        })
                        .collect();
                    assert_eq!(got, expected, "{time:?} {buckets:?} {tombstones:?}");
                }
                // The old file is used per chunk only: `b`'s whole chunk when nothing stops
                // it; the new file's segments in the hours the old file does not reach.
                let b_whole = time == TimeRange::ALL && buckets.is_none() && tombstones.is_empty();
                assert_eq!(fast.chunks_from_stats, u64::from(b_whole), "{time:?} {buckets:?}");
                let a_last_hour = time == TimeRange::ALL;
                assert_eq!(fast.segments_from_stats, u64::from(a_last_hour), "{fast:?}");
            }
        }
    }
}
