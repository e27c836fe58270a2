//! Damaged files: each case starts up, reports the damage, and serves all undamaged data.

mod common;

use common::*;
use minitrue_storage::Engine;

fn batch(device: &str, n: i64) -> Vec<minitrue_common::Point> {
    (0..n).map(|s| point(device, "temperature", T0 + s * SECOND, 20.0 + s as f64 / 100.0)).collect()
}

fn files_in(dir: &std::path::Path, suffix: &str) -> Vec<std::path::PathBuf> {
    let mut out: Vec<_> =
        walk(dir).into_iter().filter(|p| p.to_string_lossy().ends_with(suffix)).collect();
    out.sort();
    out
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        if path.is_dir() {
            out.extend(walk(&path))
        } else {
            out.push(path)
        }
    }
    out
}

/// Writes `count` batches (one WAL record each) for devices dev_00 .. and "crashes".
async fn write_batches_and_crash(
    dir: &std::path::Path,
    count: usize,
) -> Vec<minitrue_common::Point> {
    let engine = open(config(dir)).await;
    let mut all = Vec::new();
    for i in 0..count {
        let points = batch(&format!("dev_{i:02}"), 10);
        engine.write(&points).await.unwrap();
        all.extend(points);
    }
    drop(engine);
    all
}

/// An engine with two flushed files: devices "first" and "second", `n` points each.
async fn two_flushes(
    dir: &std::path::Path,
    n: i64,
) -> (std::sync::Arc<Engine>, Vec<minitrue_common::Point>, Vec<minitrue_common::Point>) {
    let engine = open(config(dir)).await;
    let first = batch("first", n);
    let second = batch("second", n);
    engine.write(&first).await.unwrap();
    engine.flush().await.unwrap();
    engine.write(&second).await.unwrap();
    engine.flush().await.unwrap();
    (engine, first, second)
}

#[tokio::test]
async fn torn_wal_tail_is_truncated() {
    let dir = tempfile::tempdir().unwrap();
    let all = write_batches_and_crash(dir.path(), 5).await;
    let segments = files_in(&dir.path().join("wal"), ".wal");
    let last = segments.iter().rev().find(|p| std::fs::metadata(p).unwrap().len() > 64).unwrap();
    let len = std::fs::metadata(last).unwrap().len();
    std::fs::OpenOptions::new().write(true).open(last).unwrap().set_len(len - 7).unwrap();

    let (engine, report) = Engine::open(config(dir.path())).await.unwrap();
    assert!(report.wal_torn_tail_bytes > 0, "{report:?}");
    let want: Vec<_> = all.into_iter().filter(|p| p.series.device_id() != "dev_04").collect();
    assert_eq!(scan_all(&engine).await, expected(&want));
    // The WAL goes on after the cut.
    engine.write(&batch("after", 3)).await.unwrap();
    drop(engine);
    let engine = open(config(dir.path())).await;
    assert_eq!(scan_all(&engine).await.len(), want.len() + 3);
}

#[tokio::test]
async fn flipped_byte_mid_wal_loses_only_that_record() {
    let dir = tempfile::tempdir().unwrap();
    let all = write_batches_and_crash(dir.path(), 20).await;
    let segments = files_in(&dir.path().join("wal"), ".wal");
    let mut flipped = false;
    for segment in &segments {
        let mut bytes = std::fs::read(segment).unwrap();
        if let Some(at) = bytes.windows(6).position(|w| w == b"dev_10") {
            bytes[at + 2] ^= 0x5a;
            std::fs::write(segment, &bytes).unwrap();
            flipped = true;
        }
    }
    assert!(flipped, "record of dev_10 not found in {segments:?}");

    let (engine, report) = Engine::open(config(dir.path())).await.unwrap();
    assert_eq!(report.wal_corrupt_regions, 1, "{report:?}");
    let want: Vec<_> = all.into_iter().filter(|p| p.series.device_id() != "dev_10").collect();
    assert_eq!(scan_all(&engine).await, expected(&want));
}

#[tokio::test]
async fn truncated_parquet_file_is_reported_and_the_rest_served() {
    let dir = tempfile::tempdir().unwrap();
    let (engine, first, _second) = two_flushes(dir.path(), 100).await;
    let damaged = engine.files().last().unwrap().path.clone();
    drop(engine);
    let path = dir.path().join("store").join(&damaged);
    let len = std::fs::metadata(&path).unwrap().len();
    std::fs::OpenOptions::new().write(true).open(&path).unwrap().set_len(len / 2).unwrap();

    let (engine, report) = Engine::open(config(dir.path())).await.unwrap();
    assert_eq!(report.files_corrupt.len(), 1, "{report:?}");
    assert_eq!(report.files_corrupt[0].0, damaged);
    assert_eq!(scan_all(&engine).await, expected(&first));
    // The damage is recorded: the next start does not trip over it again.
    drop(engine);
    let (engine, report) = Engine::open(config(dir.path())).await.unwrap();
    assert!(report.files_corrupt.is_empty() || report.files_corrupt[0].0 == damaged);
    assert_eq!(scan_all(&engine).await, expected(&first));
}

#[tokio::test]
async fn missing_newest_manifest_version_is_rebuilt_from_file_footers() {
    let dir = tempfile::tempdir().unwrap();
    let (engine, first, second) = two_flushes(dir.path(), 100).await;
    drop(engine);
    let manifests = files_in(&dir.path().join("store/manifest"), ".json");
    std::fs::remove_file(manifests.last().unwrap()).unwrap();

    let (engine, report) = Engine::open(config(dir.path())).await.unwrap();
    assert_eq!(report.orphans_adopted.len(), 1, "{report:?}");
    let mut all = first.clone();
    all.extend(second);
    assert_eq!(scan_all(&engine).await, expected(&all));
    drop(engine);
    let (engine, report) = Engine::open(config(dir.path())).await.unwrap();
    assert!(report.orphans_adopted.is_empty(), "adoption was recorded: {report:?}");
    assert_eq!(scan_all(&engine).await, expected(&all));
}

#[tokio::test]
async fn garbage_newest_manifest_falls_back_and_reports() {
    let dir = tempfile::tempdir().unwrap();
    let (engine, first, second) = two_flushes(dir.path(), 50).await;
    drop(engine);
    let manifests = files_in(&dir.path().join("store/manifest"), ".json");
    let newest = manifests.last().unwrap();
    let mut bytes = std::fs::read(newest).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x20;
    std::fs::write(newest, bytes).unwrap();

    let (engine, report) = Engine::open(config(dir.path())).await.unwrap();
    assert_eq!(report.manifest_versions_skipped.len(), 1, "{report:?}");
    let mut all = first.clone();
    all.extend(second);
    assert_eq!(scan_all(&engine).await, expected(&all));
}

#[tokio::test]
async fn interrupted_flush_leaves_no_duplicates() {
    // A flush whose files reached the store but whose manifest did not: simulated by writing,
    // flushing, then restoring the WAL and the manifest as they were before the flush.
    let dir = tempfile::tempdir().unwrap();
    let engine = open(config(dir.path())).await;
    let first = batch("first", 40);
    engine.write(&first).await.unwrap();
    engine.flush().await.unwrap();
    let second = batch("second", 40);
    engine.write(&second).await.unwrap();
    drop(engine);
    let saved_wal: Vec<(std::path::PathBuf, Vec<u8>)> = files_in(&dir.path().join("wal"), "")
        .into_iter()
        .map(|p| {
            let b = std::fs::read(&p).unwrap();
            (p, b)
        })
        .collect();
    let saved_manifests = files_in(&dir.path().join("store/manifest"), ".json");

    let engine = open(config(dir.path())).await;
    engine.flush().await.unwrap();
    drop(engine);
    for manifest in files_in(&dir.path().join("store/manifest"), ".json") {
        if !saved_manifests.contains(&manifest) {
            std::fs::remove_file(manifest).unwrap();
        }
    }
    for path in files_in(&dir.path().join("wal"), "") {
        std::fs::remove_file(path).unwrap();
    }
    for (path, bytes) in saved_wal {
        std::fs::write(path, bytes).unwrap();
    }

    let (engine, report) = Engine::open(config(dir.path())).await.unwrap();
    assert_eq!(report.orphans_removed.len(), 1, "{report:?}");
    let mut all = first.clone();
    all.extend(second);
    assert_eq!(scan_all(&engine).await, expected(&all));
}
