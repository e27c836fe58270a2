//! The last-value cache: per series, first and last time, the latest value and a point count,
//! kept up to date on every write so "current value of every sensor" needs no scan.

use std::collections::HashMap;

use minitrue_common::{SeriesKey, TimestampNs};
use parking_lot::RwLock;

/// What the engine knows about one series without reading its points.
#[derive(Debug, Clone, PartialEq)]
pub struct SeriesInfo {
    pub series: SeriesKey,
    pub first_time: TimestampNs,
    pub last_time: TimestampNs,
    /// The value at `last_time` (the latest write for that timestamp).
    pub last_value: f64,
    /// Points stored: exact after start-up and after deletes; between them, rewrites of an
    /// existing timestamp count again.
    pub points: u64,
}

const SHARDS: usize = 16;

/// Sharded map of [`SeriesInfo`].
pub struct Catalog {
    shards: Vec<RwLock<HashMap<SeriesKey, SeriesInfo>>>,
}

impl Default for Catalog {
    fn default() -> Self {
        Catalog { shards: (0..SHARDS).map(|_| RwLock::new(HashMap::new())).collect() }
    }
}

impl Catalog {
    fn shard(&self, key: &SeriesKey) -> &RwLock<HashMap<SeriesKey, SeriesInfo>> {
        use std::hash::{Hash, Hasher};
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        key.hash(&mut hasher);
        &self.shards[hasher.finish() as usize % SHARDS]
    }

    /// Records points written to `key` (in arrival order).
    pub fn observe(&self, key: &SeriesKey, samples: &[(i64, f64)]) {
        let Some(&(first_t, first_v)) = samples.first() else { return };
        let mut shard = self.shard(key).write();
        let info = shard.entry(key.clone()).or_insert_with(|| SeriesInfo {
            series: key.clone(),
            first_time: first_t,
            last_time: first_t,
            last_value: first_v,
            points: 0,
        });
        for &(time, value) in samples {
            info.first_time = info.first_time.min(time);
            if time >= info.last_time {
                info.last_time = time;
                info.last_value = value;
            }
        }
        info.points += samples.len() as u64;
    }

    /// Replaces (or, with `None`, removes) the entry of `key`.
    pub fn set(&self, key: &SeriesKey, info: Option<SeriesInfo>) {
        let mut shard = self.shard(key).write();
        match info {
            Some(info) => {
                shard.insert(key.clone(), info);
            }
            None => {
                shard.remove(key);
            }
        }
    }

    /// Merges stats of a stored chunk (start-up).
    pub fn merge_chunk(
        &self,
        key: &SeriesKey,
        first: i64,
        last: i64,
        last_value: f64,
        points: u64,
    ) {
        let mut shard = self.shard(key).write();
        let info = shard.entry(key.clone()).or_insert_with(|| SeriesInfo {
            series: key.clone(),
            first_time: first,
            last_time: last,
            last_value,
            points: 0,
        });
        info.first_time = info.first_time.min(first);
        if last >= info.last_time {
            info.last_time = last;
            info.last_value = last_value;
        }
        info.points += points;
    }

    pub fn get(&self, key: &SeriesKey) -> Option<SeriesInfo> {
        self.shard(key).read().get(key).cloned()
    }

    /// Every series, sorted by key.
    pub fn all(&self) -> Vec<SeriesInfo> {
        let mut out: Vec<SeriesInfo> = self
            .shards
            .iter()
            .flat_map(|s| s.read().values().cloned().collect::<Vec<_>>())
            .collect();
        out.sort_by(|a, b| a.series.cmp(&b.series));
        out
    }

    pub fn keys_matching(&self, mut include: impl FnMut(&SeriesKey) -> bool) -> Vec<SeriesKey> {
        let mut out = Vec::new();
        for shard in &self.shards {
            out.extend(shard.read().keys().filter(|k| include(k)).cloned());
        }
        out.sort();
        out
    }

    pub fn len(&self) -> usize {
        self.shards.iter().map(|s| s.read().len()).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}
