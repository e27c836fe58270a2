//! A cache of validated [`SeriesKey`]s, so parsing a point of a known series allocates nothing.

use std::collections::HashMap;
use std::sync::Arc;

use minitrue_common::{SeriesKey, SeriesKeyError};

/// Default bound on cached series; see [`Interner::with_max_series`].
pub const DEFAULT_MAX_SERIES: usize = 1 << 20;

/// Maps `(device_id, metric)` strings to shared, already validated [`SeriesKey`]s.
///
/// Lookups take `&mut self`: the caller keeps one per parsing thread, across messages. A hit
/// costs two hash lookups and two reference-count increments, no allocation; keys of one
/// device share its `device_id` allocation. A cached key costs roughly 150 bytes plus its
/// names. When `max_series` keys are cached and a new one arrives, the whole cache is
/// dropped and refilled on demand: memory stays bounded under a flood of distinct names, and
/// correctness never depends on the cache (keys already handed out stay valid).
#[derive(Debug, Clone)]
pub struct Interner {
    devices: HashMap<Arc<str>, DeviceEntry>,
    len: usize,
    max_series: usize,
}

#[derive(Debug, Clone)]
struct DeviceEntry {
    device_id: Arc<str>,
    metrics: HashMap<Arc<str>, SeriesKey>,
}

impl Default for Interner {
    fn default() -> Self {
        Interner::new()
    }
}

impl Interner {
    /// An empty interner holding at most [`DEFAULT_MAX_SERIES`] keys.
    pub fn new() -> Interner {
        Interner::with_max_series(DEFAULT_MAX_SERIES)
    }

    /// An empty interner holding at most `max_series` keys (at least 1).
    pub fn with_max_series(max_series: usize) -> Interner {
        Interner { devices: HashMap::new(), len: 0, max_series: max_series.max(1) }
    }

    /// The key for `(device_id, metric)`, validated like [`SeriesKey::new`]. Invalid names
    /// are not cached.
    pub fn key(&mut self, device_id: &str, metric: &str) -> Result<SeriesKey, SeriesKeyError> {
        if let Some(key) = self.devices.get(device_id).and_then(|d| d.metrics.get(metric)) {
            return Ok(key.clone());
        }
        self.insert(device_id, metric)
    }

    fn insert(&mut self, device_id: &str, metric: &str) -> Result<SeriesKey, SeriesKeyError> {
        if self.len >= self.max_series {
            self.clear();
        }
        let shared_device = self.devices.get(device_id).map(|entry| entry.device_id.clone());
        let device_arc = shared_device.unwrap_or_else(|| Arc::from(device_id));
        let key = SeriesKey::from_arcs(device_arc.clone(), Arc::from(metric))?;
        let entry = self
            .devices
            .entry(device_arc.clone())
            .or_insert_with(|| DeviceEntry { device_id: device_arc, metrics: HashMap::new() });
        entry.metrics.insert(key.metric_arc().clone(), key.clone());
        self.len += 1;
        Ok(key)
    }

    /// Number of cached keys.
    pub fn len(&self) -> usize {
        self.len
    }

    /// True when nothing is cached.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Drops every cached key.
    pub fn clear(&mut self) {
        self.devices.clear();
        self.len = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hits_share_allocations_and_misses_validate() {
        let mut interner = Interner::new();
        let a = interner.key("sensor_1", "temperature").unwrap();
        let b = interner.key("sensor_1", "temperature").unwrap();
        assert!(Arc::ptr_eq(a.metric_arc(), b.metric_arc()));
        let c = interner.key("sensor_1", "humidity").unwrap();
        assert!(Arc::ptr_eq(a.device_id_arc(), c.device_id_arc()), "device shared");
        assert_eq!(interner.len(), 2);
        assert_eq!(interner.key("", "t"), Err(SeriesKeyError::Empty { field: "device_id" }));
        assert_eq!(
            interner.key("d", "a\u{7}"),
            Err(SeriesKeyError::ControlCharacter { field: "metric" })
        );
        assert_eq!(interner.len(), 2, "invalid keys are not cached");
    }

    #[test]
    fn cache_is_bounded() {
        let mut interner = Interner::with_max_series(3);
        for i in 0..10 {
            let key = interner.key(&format!("d{i}"), "m").unwrap();
            assert_eq!(key.device_id(), format!("d{i}"));
            assert!(interner.len() <= 3);
        }
    }
}
