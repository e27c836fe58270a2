//! Helpers shared by the storage integration tests.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::sync::Arc;

use arrow_array::{Float64Array, RecordBatch, StringArray, TimestampNanosecondArray};
use futures::TryStreamExt;
use minitrue_common::{Point, SeriesKey, TimeRange};
use minitrue_storage::{Engine, EngineConfig, ScanRequest, SeriesFilter, SyncPolicy};

pub const SECOND: i64 = 1_000_000_000;
pub const T0: i64 = 1_700_000_000 * SECOND;

/// Smart-city-like readings: per device and second a 2-decimal temperature, a 1-decimal
/// humidity, a 0/1 motion flag and a float vibration (so every value layout is exercised).
pub fn readings(devices: usize, from_second: i64, seconds: i64) -> Vec<Point> {
    let mut points = Vec::new();
    for d in 0..devices {
        let device = format!("sensor_{d:05}");
        for s in from_second..from_second + seconds {
            let t = T0 + s * SECOND;
            points.push(point(
                &device,
                "temperature",
                t,
                ((2100 + (s * 7 + d as i64) % 50) as f64) / 100.0,
            ));
            points.push(point(&device, "humidity", t, ((550 + (s * 3) % 20) as f64) / 10.0));
            points.push(point(&device, "motion", t, (s % 17 == 0) as i64 as f64));
            points.push(point(&device, "vibration", t, (s as f64 * 0.37 + d as f64).sin()));
        }
    }
    points
}

pub fn config(dir: &std::path::Path) -> EngineConfig {
    let mut config = EngineConfig::new(dir);
    config.background_interval = None;
    config.wal.sync = SyncPolicy::Off;
    config
}

pub async fn open(config: EngineConfig) -> Arc<Engine> {
    Engine::open(config).await.expect("open engine").0
}

pub fn key(device: &str, metric: &str) -> SeriesKey {
    SeriesKey::new(device, metric).unwrap()
}

pub fn point(device: &str, metric: &str, time: i64, value: f64) -> Point {
    Point::new(key(device, metric), time, value)
}

/// Every row of a scan as (device, metric, time) -> value bits, asserting no duplicates.
pub async fn scan_map(
    engine: &Engine,
    filter: SeriesFilter,
    time: TimeRange,
) -> BTreeMap<(String, String, i64), u64> {
    let batches: Vec<RecordBatch> =
        engine.scan(ScanRequest::new(filter, time)).unwrap().try_collect().await.unwrap();
    let mut out = BTreeMap::new();
    for batch in batches {
        let times = batch.column(0).as_any().downcast_ref::<TimestampNanosecondArray>().unwrap();
        let devices = batch.column(1).as_any().downcast_ref::<StringArray>().unwrap();
        let metrics = batch.column(2).as_any().downcast_ref::<StringArray>().unwrap();
        let values = batch.column(3).as_any().downcast_ref::<Float64Array>().unwrap();
        for row in 0..batch.num_rows() {
            let k =
                (devices.value(row).to_string(), metrics.value(row).to_string(), times.value(row));
            let previous = out.insert(k.clone(), values.value(row).to_bits());
            assert!(previous.is_none(), "duplicate row {k:?}");
        }
    }
    out
}

pub async fn scan_all(engine: &Engine) -> BTreeMap<(String, String, i64), u64> {
    scan_map(engine, SeriesFilter::all(), TimeRange::ALL).await
}

pub fn expected(points: &[Point]) -> BTreeMap<(String, String, i64), u64> {
    points
        .iter()
        .map(|p| {
            (
                (p.series.device_id().to_string(), p.series.metric().to_string(), p.time),
                p.value.to_bits(),
            )
        })
        .collect()
}
