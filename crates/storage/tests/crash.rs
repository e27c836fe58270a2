//! Crash safety: a child process writes with sync-per-batch and is SIGKILLed at random moments
//! over many rounds, with background flushes and compactions running. After every round the
//! database must hold every acknowledged point exactly once, with its value, and nothing that
//! was never written.
//!
//! The child is this test binary run again with `--ignored --exact crash_writer_child`.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::time::Duration;

use common::*;
use minitrue_common::Point;
use minitrue_storage::{Engine, EngineConfig, SyncPolicy};
use rand::{Rng, SeedableRng};

const SECOND: i64 = 1_000_000_000;
const T0: i64 = 1_700_000_000 * SECOND;
const WRITER_TASKS: u64 = 4;
const POINTS_PER_BATCH: i64 = 40;

fn rounds() -> u64 {
    std::env::var("MINITRUE_CRASH_ROUNDS").ok().and_then(|v| v.parse().ok()).unwrap_or(12)
}

fn child_config(dir: &std::path::Path) -> EngineConfig {
    let mut config = EngineConfig::new(dir);
    config.wal.sync = SyncPolicy::EveryBatch;
    config.flush_memtable_bytes = 48 * 1024;
    config.background_interval = Some(Duration::from_millis(15));
    config.compaction_min_files = 2;
    config.partition = Some(Duration::from_secs(3600));
    config
}

/// The value every write of `(device, time)` carries, so rewrites are idempotent and any
/// present point can be checked.
fn value_of(device: &str, time: i64) -> f64 {
    let h = device.bytes().fold(time as u64, |h, b| h.wrapping_mul(31).wrapping_add(b as u64));
    (h % 10_000) as f64 / 100.0
}

/// Batch `i` of writer `task` in `round`: new points, plus a rewrite of the previous batch's
/// first point (a duplicate that must not be stored twice).
fn batch(round: u64, task: u64, i: u64) -> Vec<Point> {
    let device = format!("dev_{task}_{}", i % 5);
    let base = T0 + ((round * 100_000 + i * 100) as i64) * SECOND + task as i64;
    let mut points: Vec<Point> = (0..POINTS_PER_BATCH)
        .map(|j| {
            let t = base + j * SECOND / 2;
            point(&device, "temperature", t, value_of(&device, t))
        })
        .collect();
    if i > 0 {
        let previous = batch(round, task, i - 1);
        points.push(previous[0].clone());
    }
    points
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "the child process of acknowledged_points_survive_sigkill; runs only when it spawns it"]
async fn crash_writer_child() {
    let dir = std::path::PathBuf::from(std::env::var("CRASH_DIR").expect("CRASH_DIR"));
    let round: u64 = std::env::var("CRASH_ROUND").expect("CRASH_ROUND").parse().unwrap();
    let log_path = std::env::var("CRASH_LOG").expect("CRASH_LOG");
    let log = std::sync::Arc::new(std::sync::Mutex::new(
        std::fs::OpenOptions::new().create(true).append(true).open(log_path).unwrap(),
    ));
    let (engine, report) = Engine::open(child_config(&dir)).await.unwrap();
    writeln!(
        log.lock().unwrap(),
        "open {round} corrupt_regions={} files_corrupt={} files_missing={}",
        report.wal_corrupt_regions,
        report.files_corrupt.len(),
        report.files_missing.len()
    )
    .unwrap();
    let mut tasks = Vec::new();
    for task in 0..WRITER_TASKS {
        let engine = engine.clone();
        let log = log.clone();
        tasks.push(tokio::spawn(async move {
            for i in 0.. {
                engine.write(&batch(round, task, i)).await.unwrap();
                // One write(2) per line: a kill cannot tear it.
                let line = format!("ack {round} {task} {i}\n");
                log.lock().unwrap().write_all(line.as_bytes()).unwrap();
            }
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
}

#[test]
fn acknowledged_points_survive_sigkill() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("db");
    let log_path = dir.path().join("acks.log");
    let exe = std::env::current_exe().unwrap();
    let mut rng = rand::rngs::StdRng::seed_from_u64(0x5eed);
    for round in 0..rounds() {
        let mut child = std::process::Command::new(&exe)
            .args(["--ignored", "--exact", "crash_writer_child", "--nocapture", "--test-threads=1"])
            .env("CRASH_DIR", &data)
            .env("CRASH_ROUND", round.to_string())
            .env("CRASH_LOG", &log_path)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        // Wait until the child has recovered and acknowledged something, then kill it at a
        // random moment after that.
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        loop {
            let acks = std::fs::read_to_string(&log_path).unwrap_or_default();
            if acks.lines().any(|l| l.starts_with(&format!("ack {round} "))) {
                break;
            }
            if let Ok(Some(status)) = child.try_wait() {
                panic!("child exited early in round {round}: {status}");
            }
            assert!(
                std::time::Instant::now() < deadline,
                "child made no progress in round {round}"
            );
            std::thread::sleep(Duration::from_millis(5));
        }
        std::thread::sleep(Duration::from_millis(rng.gen_range(0..400)));
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
    }

    // What the children acknowledged, and what may be in flight (the next batch of each task).
    let log = std::fs::read_to_string(&log_path).unwrap();
    let mut acked: BTreeSet<(u64, u64, u64)> = BTreeSet::new();
    for line in log.lines() {
        let fields: Vec<&str> = line.split(' ').collect();
        match fields.as_slice() {
            ["ack", round, task, i] => {
                acked.insert((round.parse().unwrap(), task.parse().unwrap(), i.parse().unwrap()));
            }
            ["open", round, rest @ ..] => {
                for field in rest {
                    assert!(field.ends_with("=0"), "round {round} recovered with damage: {line}");
                }
            }
            _ => panic!("bad log line {line:?}"),
        }
    }
    // Per (round, task): batches up to the last acknowledged one, plus the one in flight
    // (batch 0 for a task killed before its first acknowledgement).
    let mut batches_to_check: BTreeMap<(u64, u64), u64> = BTreeMap::new();
    for round in 0..rounds() {
        for task in 0..WRITER_TASKS {
            batches_to_check.insert((round, task), 0);
        }
    }
    for &(round, task, i) in &acked {
        let entry = batches_to_check.entry((round, task)).or_default();
        *entry = (*entry).max(i + 1);
    }
    let mut may_exist: BTreeMap<(String, String, i64), u64> = BTreeMap::new();
    let mut must_exist: BTreeMap<(String, String, i64), u64> = BTreeMap::new();
    for (&(round, task), &last) in &batches_to_check {
        for i in 0..=last {
            let points = batch(round, task, i);
            let target =
                if acked.contains(&(round, task, i)) { &mut must_exist } else { &mut may_exist };
            target.extend(expected(&points));
        }
    }
    assert!(
        must_exist.len() > 1000,
        "too little was acknowledged to prove anything: {}",
        must_exist.len()
    );

    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let mut cfg = config(&data);
        cfg.partition = Some(Duration::from_secs(3600));
        let (engine, report) = Engine::open(cfg).await.unwrap();
        assert_eq!(report.wal_corrupt_regions, 0, "{report:?}");
        assert!(report.files_corrupt.is_empty() && report.files_missing.is_empty(), "{report:?}");
        let stored = scan_all(&engine).await; // asserts one row per (series, time)
        for (key, value) in &must_exist {
            assert_eq!(stored.get(key), Some(value), "acknowledged point {key:?} lost or changed");
        }
        for (key, value) in &stored {
            let known = must_exist.get(key).or_else(|| may_exist.get(key));
            assert_eq!(known, Some(value), "stored point {key:?} was never written");
        }
        println!(
            "crash test: {} rounds, {} acknowledged points, {} stored, {} files",
            rounds(),
            must_exist.len(),
            stored.len(),
            engine.files().len()
        );
    });
}
