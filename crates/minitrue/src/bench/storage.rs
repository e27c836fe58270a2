//! B2: bytes per point, in memtables and on disk.
//!
//! For each data set the same points go through four encoders in one run:
//! * the Gorilla paper's encoding (exact bit count, `minitrue_gorilla::paper_bit_count`),
//! * MiniTrue's memtables (the engine's encoded Gorilla bytes before flush),
//! * MiniTrue's Parquet files (after flush; data files only, manifest excluded),
//! * Parquet written by `ArrowWriter` with default settings, same rows and sort order,
//! * optionally VictoriaMetrics (`vm_data_size_bytes` of its storage after a forced flush).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;
use std::sync::Arc;

use anyhow::Context;
use arrow_array::{Float64Array, RecordBatch, StringArray, TimestampNanosecondArray};
use minitrue_common::{Point, SeriesKey};
use minitrue_storage::{Engine, EngineConfig, SyncPolicy};

use super::{machine_description, Scale};
use crate::datasets;

struct Measurement {
    name: String,
    points: usize,
    paper_bytes: f64,
    memtable_bytes: usize,
    disk_bytes: u64,
    default_parquet_bytes: usize,
    victoria_bytes: Option<u64>,
}

/// Overrides of engine settings, to tune them with this benchmark.
#[derive(Default)]
pub struct Tuning {
    pub zstd_level: Option<i32>,
    pub page_rows: Option<usize>,
    pub only: Option<String>,
    pub keep_dir: Option<std::path::PathBuf>,
}

pub fn run(
    scale: Scale,
    python: &str,
    shared: &Path,
    victoria: Option<&Path>,
    tuning: &Tuning,
) -> anyhow::Result<String> {
    let (span, devices): (&[&str], &str) = match scale {
        Scale::Tiny => (&["--seconds", "120"], "5"),
        Scale::Full => (&["--hours", "1"], "100"),
    };
    let mut sets: Vec<(String, Vec<Point>)> = Vec::new();
    let base: Vec<&str> = [&["--devices", devices][..], span].concat();
    sets.push(("smartcity".into(), datasets::smartcity(python, shared, &base)?));
    let jitter: Vec<&str> = [&base[..], &["--jitter-ms", "5"]].concat();
    sets.push(("smartcity ±5 ms jitter".into(), datasets::smartcity(python, shared, &jitter)?));
    for file in [
        "machine_temperature_system_failure",
        "ambient_temperature_system_failure",
        "occupancy_6005",
        "speed_6005",
    ] {
        let path = shared.join("datasets/nab").join(format!("{file}.csv"));
        sets.push((format!("NAB {file}"), datasets::nab(&path)?));
    }

    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    let mut rows = Vec::new();
    sets.retain(|(name, _)| tuning.only.as_ref().is_none_or(|only| name.contains(only.as_str())));
    for (name, points) in sets {
        let keep = tuning
            .keep_dir
            .as_ref()
            .map(|dir| dir.join(name.split_whitespace().next_back().unwrap_or("data")));
        let (memtable_bytes, disk_bytes) =
            runtime.block_on(minitrue_bytes(&points, tuning, keep.as_deref()))?;
        let victoria_bytes = match victoria {
            Some(binary) => Some(
                victoria_bytes(binary, &points)
                    .with_context(|| format!("VictoriaMetrics on {name}"))?,
            ),
            None => None,
        };
        rows.push(Measurement {
            points: points.len(),
            paper_bytes: paper_bits(&points) as f64 / 8.0,
            memtable_bytes,
            disk_bytes,
            default_parquet_bytes: default_parquet_bytes(&points)?,
            victoria_bytes,
            name,
        });
    }
    Ok(render(scale, &rows))
}

/// Points per series, sorted by time, one per timestamp (last wins), as stored.
fn by_series(points: &[Point]) -> BTreeMap<SeriesKey, Vec<(i64, f64)>> {
    let mut series: BTreeMap<SeriesKey, Vec<(i64, f64)>> = BTreeMap::new();
    for p in points {
        series.entry(p.series.clone()).or_default().push((p.time, p.value));
    }
    for samples in series.values_mut() {
        samples.reverse();
        samples.sort_by_key(|s| s.0); // stable: the last write of a time comes first
        samples.dedup_by_key(|s| s.0);
    }
    series
}

fn paper_bits(points: &[Point]) -> u64 {
    by_series(points)
        .values()
        .map(|samples| minitrue_gorilla::paper_bit_count(samples.iter().copied()))
        .sum()
}

async fn minitrue_bytes(
    points: &[Point],
    tuning: &Tuning,
    keep: Option<&Path>,
) -> anyhow::Result<(usize, u64)> {
    let dir = tempfile::tempdir()?;
    let mut config = EngineConfig::new(keep.unwrap_or(dir.path()));
    if let Some(level) = tuning.zstd_level {
        config.zstd_level = level;
    }
    if let Some(rows) = tuning.page_rows {
        config.page_rows = rows;
    }
    config.wal.sync = SyncPolicy::Off;
    config.background_interval = None;
    config.flush_memtable_bytes = usize::MAX;
    let (engine, _) = Engine::open(config).await?;
    for chunk in points.chunks(10_000) {
        engine.write(chunk).await?;
    }
    let memtable = engine.stats().memtable_encoded_bytes;
    engine.flush().await?;
    let disk = engine.stats().file_bytes;
    engine.close().await?;
    Ok((memtable, disk))
}

fn default_parquet_bytes(points: &[Point]) -> anyhow::Result<usize> {
    let series = by_series(points);
    let (mut times, mut devices, mut metrics, mut values) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for (key, samples) in &series {
        for &(t, v) in samples {
            times.push(t);
            devices.push(key.device_id().to_string());
            metrics.push(key.metric().to_string());
            values.push(v);
        }
    }
    let batch = RecordBatch::try_from_iter([
        ("time", Arc::new(TimestampNanosecondArray::from(times).with_timezone("UTC")) as _),
        ("device_id", Arc::new(StringArray::from(devices)) as _),
        ("metric", Arc::new(StringArray::from(metrics)) as _),
        ("value", Arc::new(Float64Array::from(values)) as _),
    ])?;
    let mut writer = parquet::arrow::ArrowWriter::try_new(Vec::new(), batch.schema(), None)?;
    writer.write(&batch)?;
    Ok(writer.into_inner()?.len())
}

/// Loads the points into a fresh VictoriaMetrics on loopback and reads its storage size.
fn victoria_bytes(binary: &Path, points: &[Point]) -> anyhow::Result<u64> {
    let dir = tempfile::tempdir()?;
    let port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
    let mut child = std::process::Command::new(binary)
        .arg(format!("-storageDataPath={}", dir.path().join("vm").display()))
        .arg(format!("-httpListenAddr=127.0.0.1:{port}"))
        .arg("-retentionPeriod=100y")
        .arg("-loggerLevel=ERROR")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .with_context(|| format!("starting {}", binary.display()))?;
    let result = (|| -> anyhow::Result<u64> {
        let base = format!("http://127.0.0.1:{port}");
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        while curl(&["-sf", &format!("{base}/health")]).is_err() {
            anyhow::ensure!(std::time::Instant::now() < deadline, "VictoriaMetrics did not start");
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        // JSON lines import: one line per series, millisecond timestamps (VictoriaMetrics'
        // precision; the benchmark data is whole milliseconds).
        let mut body = String::new();
        for (key, samples) in by_series(points) {
            let times: Vec<String> =
                samples.iter().map(|(t, _)| (t / 1_000_000).to_string()).collect();
            let values: Vec<String> = samples.iter().map(|(_, v)| format!("{v:?}")).collect();
            writeln!(
                body,
                r#"{{"metric":{{"__name__":"value","device_id":"{}","metric":"{}"}},"values":[{}],"timestamps":[{}]}}"#,
                key.device_id(),
                key.metric(),
                values.join(","),
                times.join(",")
            )?;
        }
        let import = dir.path().join("import.jsonl");
        std::fs::write(&import, body)?;
        curl(&[
            "-sf",
            "--data-binary",
            &format!("@{}", import.display()),
            &format!("{base}/api/v1/import"),
        ])?;
        curl(&["-sf", &format!("{base}/internal/force_flush")])?;
        std::thread::sleep(std::time::Duration::from_secs(2));
        curl(&["-sf", &format!("{base}/internal/force_flush")])?;
        let metrics = curl(&["-sf", &format!("{base}/metrics")])?;
        let size: f64 = metrics
            .lines()
            .filter(|l| l.starts_with("vm_data_size_bytes{type=\"storage/"))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum();
        Ok(size as u64)
    })();
    let _ = child.kill();
    let _ = child.wait();
    result
}

fn curl(args: &[&str]) -> anyhow::Result<String> {
    let output = std::process::Command::new("curl").args(args).output().context("running curl")?;
    anyhow::ensure!(
        output.status.success(),
        "curl {args:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}

fn render(scale: Scale, rows: &[Measurement]) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "## B2 bytes per point ({scale:?} scale; {})\n", machine_description());
    let _ = writeln!(
        out,
        "| data set | points | Gorilla paper B/pt | memtable B/pt | memtable ÷ paper | disk B/pt | disk ÷ paper | default Parquet B/pt | disk ÷ default Parquet | VictoriaMetrics B/pt | disk ÷ VictoriaMetrics |"
    );
    let _ = writeln!(out, "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    let per_point = |bytes: f64, points: usize| bytes / points.max(1) as f64;
    for r in rows {
        let (vm, vm_ratio) = match r.victoria_bytes {
            Some(b) => (
                format!("{:.3}", per_point(b as f64, r.points)),
                format!("{:.2}", r.disk_bytes as f64 / b.max(1) as f64),
            ),
            None => ("—".into(), "—".into()),
        };
        let _ = writeln!(
            out,
            "| {} | {} | {:.3} | {:.3} | {:.3} | {:.3} | {:.2} | {:.3} | {:.2} | {} | {} |",
            r.name,
            r.points,
            per_point(r.paper_bytes, r.points),
            per_point(r.memtable_bytes as f64, r.points),
            r.memtable_bytes as f64 / r.paper_bytes.max(1.0),
            per_point(r.disk_bytes as f64, r.points),
            r.disk_bytes as f64 / r.paper_bytes.max(1.0),
            per_point(r.default_parquet_bytes as f64, r.points),
            r.disk_bytes as f64 / r.default_parquet_bytes.max(1) as f64,
            vm,
            vm_ratio,
        );
    }
    let nab: Vec<&Measurement> = rows.iter().filter(|r| r.name.starts_with("NAB")).collect();
    if nab.is_empty() {
        return out;
    }
    let nab_disk: u64 = nab.iter().map(|r| r.disk_bytes).sum();
    let nab_paper: f64 = nab.iter().map(|r| r.paper_bytes).sum();
    let _ = writeln!(
        out,
        "\nNAB total: disk ÷ Gorilla paper = {:.3} ({} B vs {:.0} B)",
        nab_disk as f64 / nab_paper.max(1.0),
        nab_disk,
        nab_paper
    );
    out
}
