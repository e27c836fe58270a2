//! Benchmark commands. Each prints the machine it ran on, absolute figures, and ratios against
//! a reference measured in the same run (see shared BENCHMARKS.md).

mod storage;

use std::path::PathBuf;

use clap::{Subcommand, ValueEnum};

use crate::datasets;

#[derive(Subcommand)]
pub enum BenchCommand {
    /// B2: bytes per point in memtables and on disk, against the Gorilla paper's bit count,
    /// default-settings Parquet, and (when given) VictoriaMetrics on the same points.
    Storage {
        #[arg(long, value_enum, default_value_t = Scale::Full)]
        scale: Scale,
        /// Python with numpy, to run shared/bench/smartcity.py.
        #[arg(long, default_value = "python3")]
        python: String,
        /// The shared/ directory (bench generator and datasets).
        #[arg(long, env = "MINITRUE_SHARED")]
        shared: Option<PathBuf>,
        /// VictoriaMetrics binary to measure beside MiniTrue (Debian: /usr/bin/victoria-metrics).
        #[arg(long)]
        victoria_metrics: Option<PathBuf>,
        /// Also write the report (markdown) here.
        #[arg(long)]
        out: Option<PathBuf>,
        /// Override the engine's zstd level (tuning).
        #[arg(long)]
        zstd_level: Option<i32>,
        /// Override the engine's rows per Parquet page (tuning).
        #[arg(long)]
        page_rows: Option<usize>,
        /// Only the data sets whose name contains this.
        #[arg(long)]
        only: Option<String>,
        /// Keep each data set's MiniTrue database under this directory (to inspect the files
        /// with DuckDB or pyarrow).
        #[arg(long)]
        keep_dir: Option<PathBuf>,
    },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Scale {
    /// Seconds of data: proves the benchmark works (CI smoke run).
    Tiny,
    /// The benchmark's real size: 100 devices × 4 metrics × 1 hour = 1.44 M points.
    Full,
}

pub fn run(command: BenchCommand) -> anyhow::Result<()> {
    match command {
        BenchCommand::Storage {
            scale,
            python,
            shared,
            victoria_metrics,
            out,
            zstd_level,
            page_rows,
            only,
            keep_dir,
        } => {
            let shared = shared.unwrap_or_else(datasets::default_shared_dir);
            let tuning = storage::Tuning { zstd_level, page_rows, only, keep_dir };
            let report =
                storage::run(scale, &python, &shared, victoria_metrics.as_deref(), &tuning)?;
            print!("{report}");
            if let Some(out) = out {
                std::fs::write(&out, &report)?;
            }
            Ok(())
        }
    }
}

/// "2 cores, 23.4 GiB" for the report header.
pub fn machine_description() -> String {
    let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0);
    let mem_kib = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("MemTotal:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
        })
        .unwrap_or(0);
    format!("{cores} cores, {:.1} GiB memory", mem_kib as f64 / 1024.0 / 1024.0)
}
