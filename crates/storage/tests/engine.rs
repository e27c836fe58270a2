//! End-to-end behaviour of the storage engine on a real directory.

mod common;

use arrow_array::{Float64Array, StringArray, TimestampNanosecondArray};
use common::*;
use minitrue_common::TimeRange;
use minitrue_storage::{DeleteRequest, Engine, ScanRequest, SeriesFilter};

const DAY: i64 = 86_400 * SECOND;

fn smartcity_like(devices: usize, seconds: i64) -> Vec<minitrue_common::Point> {
    readings(devices, 0, seconds)
}

#[tokio::test]
async fn points_survive_flush_and_restart() {
    let dir = tempfile::tempdir().unwrap();
    let points = smartcity_like(5, 600);
    let engine = open(config(dir.path())).await;
    for chunk in points.chunks(1000) {
        engine.write(chunk).await.unwrap();
    }
    assert_eq!(scan_all(&engine).await, expected(&points), "from memtable");
    let report = engine.flush().await.unwrap();
    assert!(report.files_written >= 2, "decimal layouts get their own files: {report:?}");
    assert_eq!(engine.stats().memtable_points, 0);
    assert_eq!(scan_all(&engine).await, expected(&points), "from files");
    engine.close().await.unwrap();

    let (engine, report) = Engine::open(config(dir.path())).await.unwrap();
    assert_eq!(report.wal_records_replayed, 0, "everything was flushed: {report:?}");
    assert_eq!(scan_all(&engine).await, expected(&points), "after restart");
    // The last-value cache is rebuilt from file stats.
    let info = engine.series_info(&key("sensor_00003", "temperature")).unwrap();
    assert_eq!(info.last_time, T0 + 599 * SECOND);
    assert_eq!(info.points, 600);
}

#[tokio::test]
async fn unflushed_points_are_replayed_exactly_once() {
    let dir = tempfile::tempdir().unwrap();
    let first = smartcity_like(3, 100);
    let engine = open(config(dir.path())).await;
    engine.write(&first).await.unwrap();
    engine.flush().await.unwrap();
    let second: Vec<_> =
        (0..50).map(|s| point("late", "temperature", T0 + s * SECOND, s as f64)).collect();
    engine.write(&second).await.unwrap();
    drop(engine); // no close: like a crash after the WAL append

    let (engine, report) = Engine::open(config(dir.path())).await.unwrap();
    assert_eq!(report.wal_records_replayed, 1);
    assert_eq!(report.points_replayed, 50);
    let mut all = first.clone();
    all.extend(second);
    assert_eq!(scan_all(&engine).await, expected(&all));
}

#[tokio::test]
async fn last_write_wins_across_memtable_and_files() {
    let dir = tempfile::tempdir().unwrap();
    let engine = open(config(dir.path())).await;
    engine
        .write(&[point("d", "t", 10, 1.0), point("d", "t", 20, 2.0), point("d", "t", 30, 3.0)])
        .await
        .unwrap();
    engine.flush().await.unwrap();
    // Rewrite one stored point, arrive out of order, repeat inside a batch.
    engine
        .write(&[point("d", "t", 20, 20.0), point("d", "t", 5, 0.5), point("d", "t", 20, 21.0)])
        .await
        .unwrap();
    let rows = scan_all(&engine).await;
    let values: Vec<(i64, f64)> =
        rows.iter().map(|((_, _, t), v)| (*t, f64::from_bits(*v))).collect();
    assert_eq!(values, vec![(5, 0.5), (10, 1.0), (20, 21.0), (30, 3.0)]);
    engine.flush().await.unwrap();
    assert_eq!(engine.files().len(), 2);
    let rows_after = scan_all(&engine).await;
    assert_eq!(rows_after, rows, "two overlapping files resolve the same way");
    let report = engine.compact(true).await.unwrap();
    assert_eq!((report.files_in, report.rows_out), (2, 4), "{report:?}");
    assert_eq!(scan_all(&engine).await, rows, "compaction keeps the newest value");
}

#[tokio::test]
async fn every_float_bit_pattern_round_trips_through_files() {
    let dir = tempfile::tempdir().unwrap();
    let engine = open(config(dir.path())).await;
    let specials = [
        f64::NAN,
        f64::from_bits(0x7ff0_0000_0000_0001), // signalling NaN payload
        f64::from_bits(0xfff8_dead_beef_0001),
        f64::INFINITY,
        f64::NEG_INFINITY,
        -0.0,
        0.0,
        f64::MIN_POSITIVE / 3.0, // subnormal
        f64::MAX,
        74.93588199999998,
        21.37,
    ];
    // Mostly decimals so the series gets a decimal layout and the specials become exceptions.
    let mut points: Vec<_> =
        (0..200).map(|i| point("d", "v", T0 + i * SECOND, (i % 13) as f64 / 10.0)).collect();
    for (i, v) in specials.iter().enumerate() {
        points.push(point("d", "v", T0 + (1000 + i as i64) * SECOND, *v));
    }
    engine.write(&points).await.unwrap();
    engine.flush().await.unwrap();
    let layouts: Vec<String> = engine.files().iter().map(|f| format!("{:?}", f.layout)).collect();
    assert!(
        layouts.contains(&"Float".to_string()) && layouts.iter().any(|l| l.starts_with("Decimal")),
        "{layouts:?}"
    );
    assert_eq!(scan_all(&engine).await, expected(&points));
}

#[tokio::test]
async fn scans_prune_by_series_time_and_project() {
    let dir = tempfile::tempdir().unwrap();
    let engine = open(config(dir.path())).await;
    let points = smartcity_like(4, 300);
    engine.write(&points[..points.len() / 2]).await.unwrap();
    engine.flush().await.unwrap();
    engine.write(&points[points.len() / 2..]).await.unwrap();

    let window = TimeRange::new(T0 + 100 * SECOND, T0 + 199 * SECOND);
    let filter = SeriesFilter {
        device_ids: Some(vec!["sensor_00001".into(), "sensor_00002".into()]),
        metrics: Some(vec!["humidity".into()]),
        tokens: None,
    };
    let rows = scan_map(&engine, filter.clone(), window).await;
    let want: std::collections::BTreeMap<_, _> = expected(&points)
        .into_iter()
        .filter(|((d, m, t), _)| {
            (d == "sensor_00001" || d == "sensor_00002") && m == "humidity" && window.contains(*t)
        })
        .collect();
    assert_eq!(rows.len(), 200);
    assert_eq!(rows, want);

    use futures::TryStreamExt;
    let mut request = ScanRequest::new(filter.clone(), window);
    request.projection = Some(vec![3]);
    let batches: Vec<_> = engine.scan(request).unwrap().try_collect().await.unwrap();
    assert!(batches.iter().all(|b| b.num_columns() == 1 && b.schema().field(0).name() == "value"));
    assert_eq!(batches.iter().map(|b| b.num_rows()).sum::<usize>(), 200);

    // Columns in another order, and batches so small that a series' rows in a file are cut
    // across batches: every value still sits beside its own device and time.
    let mut request = ScanRequest::new(filter, window);
    request.projection = Some(vec![3, 1, 0]);
    request.batch_rows = 7;
    let batches: Vec<_> = engine.scan(request).unwrap().try_collect().await.unwrap();
    let mut reordered = std::collections::BTreeMap::new();
    for batch in &batches {
        let names: Vec<_> = batch.schema().fields().iter().map(|f| f.name().clone()).collect();
        assert_eq!(names, ["value", "device_id", "time"]);
        let values = batch.column(0).as_any().downcast_ref::<Float64Array>().unwrap();
        let devices = batch.column(1).as_any().downcast_ref::<StringArray>().unwrap();
        let times = batch.column(2).as_any().downcast_ref::<TimestampNanosecondArray>().unwrap();
        for row in 0..batch.num_rows() {
            let key = (devices.value(row).to_string(), "humidity".to_string(), times.value(row));
            reordered.insert(key, values.value(row).to_bits());
        }
    }
    assert_eq!(reordered, want);
    let mut bad = ScanRequest::new(SeriesFilter::all(), TimeRange::ALL);
    bad.projection = Some(vec![7]);
    assert!(engine.scan(bad).is_err());
}

#[tokio::test]
async fn a_token_set_keeps_exactly_the_series_on_its_part_of_the_ring() {
    use minitrue_common::{series_token, TokenSet};
    let dir = tempfile::tempdir().unwrap();
    let engine = open(config(dir.path())).await;
    let points = smartcity_like(8, 50);
    engine.write(&points[..points.len() / 2]).await.unwrap();
    engine.flush().await.unwrap();
    engine.write(&points[points.len() / 2..]).await.unwrap();

    // Two halves of the ring (the second wraps past the top): every point is in exactly one.
    let halves = [
        TokenSet::range(u64::MAX / 3, u64::MAX / 3 * 2),
        TokenSet::range(u64::MAX / 3 * 2, u64::MAX / 3),
    ];
    let mut union = std::collections::BTreeMap::new();
    for half in halves {
        let filter = SeriesFilter { tokens: Some(half.clone()), ..SeriesFilter::all() };
        let rows = scan_map(&engine, filter, TimeRange::ALL).await;
        assert!(!rows.is_empty(), "8 devices x 4 metrics fall on both halves");
        for (device, metric, _) in rows.keys() {
            assert!(half.contains(series_token(device, metric)));
        }
        let before = union.len();
        let added = rows.len();
        union.extend(rows);
        assert_eq!(union.len(), before + added, "no point in both halves");
    }
    assert_eq!(union, expected(&points));
}

#[tokio::test]
async fn partitions_split_files_by_day() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(dir.path());
    cfg.partition = Some(std::time::Duration::from_secs(86_400));
    let engine = open(cfg).await;
    let points: Vec<_> =
        (0..6).map(|h| point("d", "t", T0 + h * 6 * 3600 * SECOND, h as f64)).collect();
    engine.write(&points).await.unwrap();
    engine.flush().await.unwrap();
    let files = engine.files();
    let partitions: std::collections::BTreeSet<i64> =
        files.iter().map(|f| f.partition_start).collect();
    let days: std::collections::BTreeSet<i64> =
        points.iter().map(|p| p.time.div_euclid(DAY) * DAY).collect();
    assert_eq!(partitions, days, "one file per UTC day touched");
    assert!(files.iter().all(|f| f.time.start.div_euclid(DAY) == f.time.end.div_euclid(DAY)));
    assert_eq!(scan_all(&engine).await, expected(&points));
}

#[tokio::test]
async fn deletes_hide_points_at_once_and_survive_restart_and_compaction() {
    let dir = tempfile::tempdir().unwrap();
    let engine = open(config(dir.path())).await;
    let points = smartcity_like(3, 100);
    engine.write(&points[..points.len() / 2]).await.unwrap();
    engine.flush().await.unwrap();
    engine.write(&points[points.len() / 2..]).await.unwrap();

    let range = TimeRange::new(T0 + 10 * SECOND, T0 + 89 * SECOND);
    engine
        .delete(DeleteRequest {
            device_id: "sensor_00001".into(),
            metric: Some("temperature".into()),
            time: range,
        })
        .await
        .unwrap();
    engine
        .delete(DeleteRequest {
            device_id: "sensor_00002".into(),
            metric: None,
            time: TimeRange::ALL,
        })
        .await
        .unwrap();
    let survives = |d: &str, m: &str, t: i64| {
        !(d == "sensor_00002" || (d == "sensor_00001" && m == "temperature" && range.contains(t)))
    };
    let want: std::collections::BTreeMap<_, _> =
        expected(&points).into_iter().filter(|((d, m, t), _)| survives(d, m, *t)).collect();
    assert_eq!(scan_all(&engine).await, want, "right after the delete");
    assert!(engine.series_info(&key("sensor_00002", "humidity")).is_none());
    assert_eq!(engine.series_info(&key("sensor_00001", "temperature")).unwrap().points, 20);

    // Points written after a delete are not hidden by it.
    engine.write(&[point("sensor_00002", "humidity", T0, 1.0)]).await.unwrap();
    let mut want_after = want.clone();
    want_after.insert(("sensor_00002".into(), "humidity".into(), T0), 1.0f64.to_bits());
    assert_eq!(scan_all(&engine).await, want_after);

    drop(engine);
    let engine = open(config(dir.path())).await;
    assert_eq!(
        scan_all(&engine).await,
        want_after,
        "after restart (deletes replayed from the WAL)"
    );
    // The last-value cache too: the file's index still counts the deleted points.
    let info = engine.series_info(&key("sensor_00001", "temperature")).unwrap();
    assert_eq!((info.points, info.first_time), (20, T0), "after restart");
    assert_eq!(engine.series_info(&key("sensor_00002", "humidity")).unwrap().points, 1);
    engine.flush().await.unwrap();
    drop(engine);
    let engine = open(config(dir.path())).await;
    assert_eq!(scan_all(&engine).await, want_after, "after restart (deletes from the manifest)");

    let rows_before: u64 = engine.files().iter().map(|f| f.rows).sum();
    engine.compact(true).await.unwrap();
    let rows_after: u64 = engine.files().iter().map(|f| f.rows).sum();
    assert_eq!(
        rows_after,
        want_after.len() as u64,
        "compaction removed deleted rows physically ({rows_before} before)"
    );
    assert_eq!(scan_all(&engine).await, want_after);
}

#[tokio::test]
async fn compaction_merges_small_files_by_level() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(dir.path());
    cfg.compaction_min_files = 3;
    let engine = open(cfg).await;
    let mut all = Vec::new();
    for round in 0..3 {
        let points: Vec<_> =
            (0..100).map(|s| point("d", "t", T0 + (round * 100 + s) * SECOND, s as f64)).collect();
        engine.write(&points).await.unwrap();
        engine.flush().await.unwrap();
        all.extend(points);
    }
    assert_eq!(engine.files().len(), 3);
    let report = engine.compact(false).await.unwrap();
    assert_eq!((report.runs, report.files_in, report.files_out), (1, 3, 1), "{report:?}");
    assert_eq!(engine.files()[0].level, 1);
    assert_eq!(scan_all(&engine).await, expected(&all));
    // Compacted inputs are gone from the store.
    let leftover = walk(&dir.path().join("store/data"));
    assert_eq!(leftover.len(), 1, "{leftover:?}");
    drop(engine);
    let (engine, report) = Engine::open(config(dir.path())).await.unwrap();
    assert!(report.orphans_removed.is_empty() && report.orphans_adopted.is_empty(), "{report:?}");
    assert_eq!(scan_all(&engine).await, expected(&all));
}

pub fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    if let Ok(entries) = std::fs::read_dir(dir) {
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() {
                out.extend(walk(&path));
            } else {
                out.push(path);
            }
        }
    }
    out.sort();
    out
}

#[tokio::test]
async fn a_second_engine_on_the_same_directory_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let engine = open(config(dir.path())).await;
    let second = Engine::open(config(dir.path())).await;
    match second {
        Err(error) => {
            assert_eq!(error.kind(), minitrue_common::ErrorKind::Unavailable);
            assert!(error.to_string().contains("in use"), "{error}");
        }
        Ok(_) => panic!("two engines opened one directory"),
    }
    drop(engine);
    open(config(dir.path())).await; // released with the first engine
}
