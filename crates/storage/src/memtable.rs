//! Per-series Gorilla-encoded write buffers, sharded so concurrent writers rarely share a lock.
//!
//! A [`Memtable`] holds every point written since the last flush of its generation. Each series
//! has one append-only Gorilla stream; points that arrive out of order or repeat a timestamp are
//! appended as they come and the series is marked unsorted, so reads and flushes sort it and keep
//! the last write for each timestamp. Deletes rewrite only the series they touch.

use std::collections::HashMap;
use std::hash::BuildHasher;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Instant;

use minitrue_common::{SeriesKey, TimeRange};
use minitrue_gorilla::Encoder;
use parking_lot::RwLock;

use crate::error::{Result, StorageError};
use crate::log_entry::DeleteRequest;

/// Heap bytes a series costs beyond its encoded stream: map entry, key strings, buffer state.
/// An estimate, so memory accounting does not under-count many tiny series.
const PER_SERIES_OVERHEAD_BYTES: usize = 160;

/// One series' buffer.
struct SeriesBuffer {
    encoder: Encoder,
    /// Every push had a strictly greater timestamp than the previous one.
    sorted: bool,
    time: TimeRange,
}

impl SeriesBuffer {
    fn new() -> Self {
        SeriesBuffer {
            encoder: Encoder::new(),
            sorted: true,
            time: TimeRange::new(i64::MAX, i64::MIN),
        }
    }

    fn push(&mut self, time: i64, value: f64) {
        if let Some((last_time, _)) = self.encoder.last() {
            if time <= last_time {
                self.sorted = false;
            }
        }
        self.encoder.push(time, value);
        self.time.start = self.time.start.min(time);
        self.time.end = self.time.end.max(time);
    }

    /// Points in time order, one per timestamp (last write wins).
    fn decode(&self, series: &SeriesKey) -> Result<SeriesPoints> {
        let mut points = SeriesPoints::with_capacity(self.encoder.len());
        self.encoder
            .view()
            .decode_into(&mut points.times, &mut points.values)
            .map_err(|source| StorageError::Decode { series: series.to_string(), source })?;
        if !self.sorted {
            points.sort_keep_last();
        }
        Ok(points)
    }
}

/// Decoded points of one series: parallel vectors, the shape Arrow arrays are built from.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct SeriesPoints {
    pub times: Vec<i64>,
    pub values: Vec<f64>,
}

impl SeriesPoints {
    pub fn with_capacity(n: usize) -> Self {
        SeriesPoints { times: Vec::with_capacity(n), values: Vec::with_capacity(n) }
    }

    pub fn len(&self) -> usize {
        self.times.len()
    }

    pub fn is_empty(&self) -> bool {
        self.times.is_empty()
    }

    /// Sorts by time; for equal times the entry that came last in the vectors wins.
    pub fn sort_keep_last(&mut self) {
        let mut order: Vec<u32> = (0..self.times.len() as u32).collect();
        // Stable: equal times keep arrival order, so the last of each run is the newest write.
        order.sort_by_key(|&i| self.times[i as usize]);
        let mut times = Vec::with_capacity(order.len());
        let mut values = Vec::with_capacity(order.len());
        for (pos, &i) in order.iter().enumerate() {
            let time = self.times[i as usize];
            let next_has_same_time =
                order.get(pos + 1).is_some_and(|&next| self.times[next as usize] == time);
            if !next_has_same_time {
                times.push(time);
                values.push(self.values[i as usize]);
            }
        }
        self.times = times;
        self.values = values;
    }

    /// Keeps only points inside `range` (the vectors must be sorted by time).
    pub fn retain_range(&mut self, range: TimeRange) {
        let start = self.times.partition_point(|&t| t < range.start);
        let end = self.times.partition_point(|&t| t <= range.end);
        if start >= end {
            self.times.clear();
            self.values.clear();
            return;
        }
        self.times.truncate(end);
        self.values.truncate(end);
        self.times.drain(..start);
        self.values.drain(..start);
    }

    /// Removes points matching `keep == false`.
    pub fn retain(&mut self, mut keep: impl FnMut(i64) -> bool) {
        let mut write = 0;
        for read in 0..self.times.len() {
            if keep(self.times[read]) {
                self.times[write] = self.times[read];
                self.values[write] = self.values[read];
                write += 1;
            }
        }
        self.times.truncate(write);
        self.values.truncate(write);
    }
}

type Shard = HashMap<SeriesKey, SeriesBuffer>;

/// A generation of write buffers. See the module docs.
///
/// Thread-safe: writers lock one shard at a time; readers take shard read locks and decode a
/// snapshot, so they never block writers of other shards.
pub struct Memtable {
    shards: Box<[RwLock<Shard>]>,
    hasher: std::collections::hash_map::RandomState,
    encoded_bytes: AtomicUsize,
    series: AtomicUsize,
    points: AtomicU64,
    /// Highest WAL LSN applied to this generation (0 = none).
    max_lsn: AtomicU64,
    created: Instant,
}

impl Memtable {
    pub fn new(shard_count: usize) -> Self {
        let shards = (0..shard_count.max(1)).map(|_| RwLock::new(Shard::new())).collect();
        Memtable {
            shards,
            hasher: Default::default(),
            encoded_bytes: AtomicUsize::new(0),
            series: AtomicUsize::new(0),
            points: AtomicU64::new(0),
            max_lsn: AtomicU64::new(0),
            created: Instant::now(),
        }
    }

    fn shard_of(&self, series: &SeriesKey) -> &RwLock<Shard> {
        &self.shards[(self.hasher.hash_one(series) as usize) % self.shards.len()]
    }

    /// Appends the groups of one WAL record (already durable at `lsn`).
    pub fn apply_write(&self, lsn: u64, groups: &[(SeriesKey, Vec<(i64, f64)>)]) {
        let mut added_points = 0u64;
        for (series, samples) in groups {
            let mut shard = self.shard_of(series).write();
            let buffer = match shard.get_mut(series) {
                Some(buffer) => buffer,
                None => {
                    self.series.fetch_add(1, Ordering::Relaxed);
                    shard.entry(series.clone()).or_insert_with(SeriesBuffer::new)
                }
            };
            let before = buffer.encoder.encoded_bytes();
            for &(time, value) in samples {
                buffer.push(time, value);
            }
            let after = buffer.encoder.encoded_bytes();
            self.encoded_bytes.fetch_add(after - before, Ordering::Relaxed);
            added_points += samples.len() as u64;
        }
        self.points.fetch_add(added_points, Ordering::Relaxed);
        self.max_lsn.fetch_max(lsn, Ordering::AcqRel);
    }

    /// Physically removes the points a delete covers. Returns how many series it touched.
    pub fn apply_delete(&self, lsn: u64, delete: &DeleteRequest) -> Result<usize> {
        let mut touched = 0;
        for shard in self.shards.iter() {
            let mut shard = shard.write();
            let keys: Vec<SeriesKey> = shard
                .iter()
                .filter(|(key, buffer)| {
                    delete.matches_series(key) && buffer.time.overlaps(&delete.time)
                })
                .map(|(key, _)| key.clone())
                .collect();
            for key in keys {
                let Some(buffer) = shard.get(&key) else { continue };
                let old_bytes = buffer.encoder.encoded_bytes();
                let old_points = buffer.encoder.len() as u64;
                let mut points = buffer.decode(&key)?;
                points.retain(|t| !delete.time.contains(t));
                touched += 1;
                if points.is_empty() {
                    shard.remove(&key);
                    self.series.fetch_sub(1, Ordering::Relaxed);
                } else {
                    let mut rebuilt = SeriesBuffer::new();
                    for (&t, &v) in points.times.iter().zip(&points.values) {
                        rebuilt.push(t, v);
                    }
                    self.encoded_bytes
                        .fetch_add(rebuilt.encoder.encoded_bytes(), Ordering::Relaxed);
                    self.points.fetch_add(rebuilt.encoder.len() as u64, Ordering::Relaxed);
                    shard.insert(key, rebuilt);
                }
                self.encoded_bytes.fetch_sub(old_bytes, Ordering::Relaxed);
                self.points.fetch_sub(old_points, Ordering::Relaxed);
            }
        }
        self.max_lsn.fetch_max(lsn, Ordering::AcqRel);
        Ok(touched)
    }

    /// Keys of series for which `include` is true and whose data overlaps `time`, sorted.
    pub fn series_matching(
        &self,
        time: TimeRange,
        mut include: impl FnMut(&SeriesKey) -> bool,
    ) -> Vec<(SeriesKey, TimeRange)> {
        let mut out = Vec::new();
        for shard in self.shards.iter() {
            let shard = shard.read();
            for (key, buffer) in shard.iter() {
                if buffer.time.overlaps(&time) && include(key) {
                    out.push((key.clone(), buffer.time));
                }
            }
        }
        out.sort_by(|a, b| a.0.cmp(&b.0));
        out
    }

    /// The points of one series inside `time`, sorted, one per timestamp.
    pub fn read_series(&self, series: &SeriesKey, time: TimeRange) -> Result<SeriesPoints> {
        let shard = self.shard_of(series).read();
        let Some(buffer) = shard.get(series) else { return Ok(SeriesPoints::default()) };
        if !buffer.time.overlaps(&time) {
            return Ok(SeriesPoints::default());
        }
        let mut points = buffer.decode(series)?;
        drop(shard);
        if !time.covers(&TimeRange::new(points.times[0], points.times[points.len() - 1])) {
            points.retain_range(time);
        }
        Ok(points)
    }

    /// Bytes of encoded Gorilla streams (what the paper's bit count is compared against).
    pub fn encoded_bytes(&self) -> usize {
        self.encoded_bytes.load(Ordering::Relaxed)
    }

    /// Estimated heap use: encoded streams plus a per-series overhead.
    pub fn memory_bytes(&self) -> usize {
        self.encoded_bytes() + self.series_count() * PER_SERIES_OVERHEAD_BYTES
    }

    pub fn series_count(&self) -> usize {
        self.series.load(Ordering::Relaxed)
    }

    /// Points appended (duplicates included until a read resolves them).
    pub fn point_count(&self) -> u64 {
        self.points.load(Ordering::Relaxed)
    }

    pub fn max_lsn(&self) -> u64 {
        self.max_lsn.load(Ordering::Acquire)
    }

    pub fn age(&self) -> std::time::Duration {
        self.created.elapsed()
    }

    pub fn is_empty(&self) -> bool {
        self.series_count() == 0
    }

    /// Shrinks every encoder to its exact size: called when a generation is frozen for flush.
    pub fn shrink(&self) {
        for shard in self.shards.iter() {
            for buffer in shard.write().values_mut() {
                buffer.encoder.shrink_to_fit();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(d: &str) -> SeriesKey {
        SeriesKey::new(d, "temperature").unwrap()
    }

    #[test]
    fn out_of_order_and_duplicate_points_resolve_to_last_write() {
        let table = Memtable::new(4);
        table.apply_write(1, &[(key("a"), vec![(30, 3.0), (10, 1.0), (20, 2.0), (10, 1.5)])]);
        table.apply_write(2, &[(key("a"), vec![(20, 2.5)])]);
        let points = table.read_series(&key("a"), TimeRange::ALL).unwrap();
        assert_eq!(points.times, vec![10, 20, 30]);
        assert_eq!(points.values, vec![1.5, 2.5, 3.0]);
        assert_eq!(table.max_lsn(), 2);
    }

    #[test]
    fn reads_respect_time_range() {
        let table = Memtable::new(2);
        table.apply_write(1, &[(key("a"), (0..100).map(|t| (t, t as f64)).collect())]);
        let points = table.read_series(&key("a"), TimeRange::new(10, 19)).unwrap();
        assert_eq!(points.times, (10..20).collect::<Vec<_>>());
        assert!(table.read_series(&key("a"), TimeRange::new(200, 300)).unwrap().is_empty());
        assert!(table.read_series(&key("zzz"), TimeRange::ALL).unwrap().is_empty());
    }

    #[test]
    fn deletes_remove_only_the_covered_points() {
        let table = Memtable::new(2);
        table.apply_write(1, &[(key("a"), (0..10).map(|t| (t, 1.0)).collect())]);
        table.apply_write(1, &[(key("b"), (0..10).map(|t| (t, 1.0)).collect())]);
        let delete =
            DeleteRequest { device_id: "a".into(), metric: None, time: TimeRange::new(3, 5) };
        assert_eq!(table.apply_delete(2, &delete).unwrap(), 1);
        let a = table.read_series(&key("a"), TimeRange::ALL).unwrap();
        assert_eq!(a.times, vec![0, 1, 2, 6, 7, 8, 9]);
        assert_eq!(table.read_series(&key("b"), TimeRange::ALL).unwrap().len(), 10);
        assert_eq!(table.point_count(), 17);
        let everything =
            DeleteRequest { device_id: "b".into(), metric: None, time: TimeRange::ALL };
        table.apply_delete(3, &everything).unwrap();
        assert_eq!(table.series_count(), 1);
    }

    #[test]
    fn sort_keep_last_is_stable_for_equal_times() {
        let mut p =
            SeriesPoints { times: vec![5, 1, 5, 1, 3], values: vec![1.0, 2.0, 3.0, 4.0, 5.0] };
        p.sort_keep_last();
        assert_eq!(p.times, vec![1, 3, 5]);
        assert_eq!(p.values, vec![4.0, 5.0, 3.0]);
    }
}
