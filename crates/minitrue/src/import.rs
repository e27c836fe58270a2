//! `minitrue import`: bulk-loads CSV files into a data directory through the engine's durable
//! write path, then flushes them to Parquet.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use clap::Args;
use minitrue_common::{Point, SeriesKey};
use minitrue_storage::{Engine, EngineConfig, SyncPolicy};

use crate::datasets;

#[derive(Args)]
pub struct ImportArgs {
    /// The node's data directory (must not be in use by a running node).
    #[arg(long, default_value = "./data")]
    pub data_dir: PathBuf,
    /// Object store for data files (`file:///…`, `s3://bucket/prefix`); default `<data-dir>/store`.
    #[arg(long)]
    pub store_url: Option<String>,
    /// For `timestamp,value` files: the series' device_id (default: the file name).
    #[arg(long)]
    pub device: Option<String>,
    /// For `timestamp,value` files: the series' metric.
    #[arg(long, default_value = "value")]
    pub metric: String,
    /// CSV files: `time_ns,device_id,metric,value` (the smart-city generator's format) or
    /// `timestamp,value` (NAB: `YYYY-MM-DD HH:MM:SS` UTC).
    #[arg(required = true)]
    pub files: Vec<PathBuf>,
}

pub fn run(args: ImportArgs) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    runtime.block_on(import(args))
}

fn read_points(path: &Path, device: Option<&str>, metric: &str) -> anyhow::Result<Vec<Point>> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let header = text.lines().next().unwrap_or_default().trim();
    match header {
        "time_ns,device_id,metric,value" => datasets::parse_time_device_metric_value_csv(&text),
        "timestamp,value" => {
            let stem = path.file_stem().and_then(|s| s.to_str()).unwrap_or("series");
            datasets::nab_as(path, &SeriesKey::new(device.unwrap_or(stem), metric)?)
        }
        other => bail!("{}: unknown header {other:?}", path.display()),
    }
}

async fn import(args: ImportArgs) -> anyhow::Result<()> {
    let mut config = EngineConfig::new(&args.data_dir);
    config.object_store_url = args.store_url.clone();
    // Durability comes from the flush at the end: an interrupted import is simply rerun
    // (points are unique by series and time, so a rerun stores nothing twice).
    config.wal.sync = SyncPolicy::Off;
    config.background_interval = None;
    let (engine, _) = Engine::open(config).await?;
    let mut total = 0usize;
    for path in &args.files {
        let points = read_points(path, args.device.as_deref(), &args.metric)?;
        for chunk in points.chunks(50_000) {
            engine.write(chunk).await?;
        }
        total += points.len();
        eprintln!("{}: {} points", path.display(), points.len());
    }
    engine.close().await?;
    let stats = engine.stats();
    eprintln!("imported {total} points; {} files, {} bytes on disk", stats.files, stats.file_bytes);
    Ok(())
}
