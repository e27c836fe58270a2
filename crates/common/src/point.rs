use std::fmt;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::TimestampNs;

/// Longest accepted `device_id` or `metric`, in bytes.
pub const MAX_NAME_LEN: usize = 256;

/// The identity of one time series: which device measured which metric.
///
/// Cheap to clone (two `Arc<str>`). Ordered by `(device_id, metric)`, which is also the sort
/// order of rows in Parquet files.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct SeriesKey {
    device_id: Arc<str>,
    metric: Arc<str>,
}

/// Why a name was refused as a `device_id` or `metric`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SeriesKeyError {
    #[error("{field} is empty")]
    Empty { field: &'static str },
    #[error("{field} is {len} bytes long, longer than the limit of {MAX_NAME_LEN}")]
    TooLong { field: &'static str, len: usize },
    #[error("{field} contains a control character")]
    ControlCharacter { field: &'static str },
}

impl SeriesKey {
    /// A validated key: both names non-empty, at most [`MAX_NAME_LEN`] bytes, no control
    /// characters (they would corrupt logs, CSV output and topic templates).
    pub fn new(device_id: &str, metric: &str) -> Result<Self, SeriesKeyError> {
        validate_name("device_id", device_id)?;
        validate_name("metric", metric)?;
        Ok(SeriesKey { device_id: Arc::from(device_id), metric: Arc::from(metric) })
    }

    /// Builds a key from already shared names, validating them like [`SeriesKey::new`].
    pub fn from_arcs(device_id: Arc<str>, metric: Arc<str>) -> Result<Self, SeriesKeyError> {
        validate_name("device_id", &device_id)?;
        validate_name("metric", &metric)?;
        Ok(SeriesKey { device_id, metric })
    }

    pub fn device_id(&self) -> &str {
        &self.device_id
    }

    pub fn metric(&self) -> &str {
        &self.metric
    }

    pub fn device_id_arc(&self) -> &Arc<str> {
        &self.device_id
    }

    pub fn metric_arc(&self) -> &Arc<str> {
        &self.metric
    }

    /// The key the hash ring places: `device_id:metric`, as in the seed design.
    pub fn ring_key(&self) -> String {
        format!("{}:{}", self.device_id, self.metric)
    }
}

fn validate_name(field: &'static str, name: &str) -> Result<(), SeriesKeyError> {
    if name.is_empty() {
        return Err(SeriesKeyError::Empty { field });
    }
    if name.len() > MAX_NAME_LEN {
        return Err(SeriesKeyError::TooLong { field, len: name.len() });
    }
    if name.chars().any(char::is_control) {
        return Err(SeriesKeyError::ControlCharacter { field });
    }
    Ok(())
}

impl fmt::Debug for SeriesKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.device_id, self.metric)
    }
}

impl fmt::Display for SeriesKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.device_id, self.metric)
    }
}

/// One measurement: a value of a series at an instant.
///
/// A point is unique by `(series, time)`; writing the same series and time again replaces
/// the value (last write wins), so redelivered messages are harmless.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Point {
    pub series: SeriesKey,
    pub time: TimestampNs,
    pub value: f64,
}

/// The points of one acknowledged write, shared by every live view that receives it
/// (the storage engine sends them, the HTTP door's `/ws/live` streams them).
pub type LiveBatch = Arc<[Point]>;

impl Point {
    pub fn new(series: SeriesKey, time: TimestampNs, value: f64) -> Self {
        Point { series, time, value }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn series_key_validates_names() {
        assert!(SeriesKey::new("sensor_1", "temperature").is_ok());
        assert_eq!(SeriesKey::new("", "t"), Err(SeriesKeyError::Empty { field: "device_id" }));
        assert_eq!(
            SeriesKey::new("d", "bad\nname"),
            Err(SeriesKeyError::ControlCharacter { field: "metric" })
        );
        let long = "x".repeat(MAX_NAME_LEN + 1);
        assert!(matches!(SeriesKey::new(&long, "t"), Err(SeriesKeyError::TooLong { .. })));
    }

    #[test]
    fn ring_key_matches_seed_format() {
        let k = SeriesKey::new("sensor_1", "temperature").unwrap();
        assert_eq!(k.ring_key(), "sensor_1:temperature");
        assert_eq!(k.to_string(), "sensor_1:temperature");
    }

    #[test]
    fn series_keys_sort_by_device_then_metric() {
        let mut keys = [
            SeriesKey::new("b", "a").unwrap(),
            SeriesKey::new("a", "z").unwrap(),
            SeriesKey::new("a", "b").unwrap(),
        ];
        keys.sort();
        let names: Vec<String> = keys.iter().map(|k| k.to_string()).collect();
        assert_eq!(names, ["a:b", "a:z", "b:a"]);
    }
}
