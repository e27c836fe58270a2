//! Aggregates answered from stored per-chunk aggregates, decoding only what they cannot cover.
//!
//! A *chunk* is one series inside one data file; its footer index stores the point count, time
//! range and exact aggregates ([`crate::file_format::ChunkAggregate`]). [`Engine::aggregate`]
//! returns count, exact sum, minimum and maximum per series (and per time bucket) over a time
//! range. A chunk's stored aggregate is used only when all of these hold:
//!
//! * the chunk lies wholly inside the requested time range;
//! * with buckets, its first and last timestamps fall in the same bucket;
//! * no other source (file or memtable) holds points of the series in the chunk's time range
//!   (otherwise the last write must win point by point) — except other files of the same
//!   write batch (a flush or compaction writes each point once, split by partition and value
//!   layout, so the decimal file and the float-exception file of one flush are disjoint);
//! * no tombstone written after the file touches the series in the chunk's time range;
//! * the file stores exact aggregates (files written before them do not).
//!
//! Everything else — chunks cut by the range or a bucket edge, overlapping sources, deleted
//! ranges, memtables — is decoded with the same merge as [`Engine::scan`], and its points are
//! added one by one. Because sums are exact ([`crate::exact`]) and min/max use `totalOrder`,
//! the result is identical to aggregating the points [`Engine::scan`] returns.
//!
//! [`Engine::aggregate`]: crate::Engine::aggregate
//! [`Engine::scan`]: crate::Engine::scan

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use minitrue_common::{SeriesKey, TimeRange};
use object_store::ObjectStore;

use crate::error::{Result, StorageError};
use crate::exact::ValueAggregate;
use crate::scan::{Placement, SeriesFilter, Source, SourceSet};

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
    /// `false` decodes every chunk (the reference the fast path is tested against).
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
    /// Chunks answered from their stored aggregate, and the points they stand for.
    pub chunks_from_stats: u64,
    pub points_from_stats: u64,
    /// Points decoded (after merging and deletes).
    pub points_decoded: u64,
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
        for (key, placements) in plan.series {
            let mut groups: BTreeMap<Option<i64>, ValueAggregate> = BTreeMap::new();
            let mut to_decode: Vec<Placement> = Vec::new();
            for (position, placement) in placements.iter().enumerate() {
                match self.stored_aggregate(&key, &placements, position, request)? {
                    Some((bucket, aggregate)) => {
                        output.chunks_from_stats += 1;
                        output.points_from_stats += aggregate.count;
                        groups.entry(bucket).or_default().merge(&aggregate);
                    }
                    None => to_decode.push(*placement),
                }
            }
            if !to_decode.is_empty() {
                let points =
                    self.merged_series_points(store, &key, &to_decode, request.time).await?;
                output.points_decoded += points.len() as u64;
                match &request.buckets {
                    None => {
                        if !points.is_empty() {
                            groups.entry(None).or_default().add_all(&points.values);
                        }
                    }
                    Some(buckets) => {
                        let bucket_of = buckets.buckets(&points.times)?;
                        if bucket_of.len() != points.len() {
                            return Err(StorageError::InvalidRequest {
                                reason: format!(
                                    "time buckets returned {} values for {} times",
                                    bucket_of.len(),
                                    points.len()
                                ),
                            });
                        }
                        add_bucketed(&mut groups, &bucket_of, &points.values);
                    }
                }
            }
            for (bucket, value) in groups {
                output.groups.push(GroupAggregate { series: key.clone(), bucket, value });
            }
        }
        Ok(output)
    }

    /// The stored aggregate of `placements[position]` and its bucket, when the rules of the
    /// module documentation allow using it.
    fn stored_aggregate(
        &self,
        key: &SeriesKey,
        placements: &[Placement],
        position: usize,
        request: &AggregateRequest,
    ) -> Result<Option<(Option<i64>, ValueAggregate)>> {
        if !request.use_chunk_aggregates {
            return Ok(None);
        }
        let placement = &placements[position];
        let Source::File(file) = &self.sources[placement.source] else {
            return Ok(None);
        };
        if !request.time.covers(&placement.time) {
            return Ok(None);
        }
        // Files of one write batch (a flush or compaction splits points by partition and
        // value layout) never hold the same point twice, so they do not shadow each other.
        let same_batch = |p: &Placement| matches!(&self.sources[p.source], Source::File(f) if f.meta.batch.id == file.meta.batch.id);
        let shadowed = placements.iter().enumerate().any(|(other, p)| {
            other != position && p.time.overlaps(&placement.time) && !same_batch(p)
        });
        if shadowed {
            return Ok(None);
        }
        let deleted = self
            .tombstones_for(placement.source, key)
            .iter()
            .any(|range| range.overlaps(&placement.time));
        if deleted {
            return Ok(None);
        }
        let Some(stored) = file.index.aggregate(key) else {
            return Ok(None);
        };
        let bucket = match &request.buckets {
            None => None,
            Some(buckets) => {
                let ends = buckets.buckets(&[placement.time.start, placement.time.end])?;
                match ends.as_slice() {
                    [first, last] if first == last => Some(*first),
                    _ => return Ok(None),
                }
            }
        };
        Ok(Some((bucket, stored.to_value_aggregate(placement.rows.1))))
    }
}

/// Adds points to their buckets; runs of equal buckets (the usual case, times being sorted)
/// go in one map lookup.
fn add_bucketed(
    groups: &mut BTreeMap<Option<i64>, ValueAggregate>,
    buckets: &[i64],
    values: &[f64],
) {
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
