//! Benchmark commands. Each prints the machine it ran on, absolute figures, and ratios against
//! a reference measured in the same run (see shared BENCHMARKS.md).

mod auth;
mod cluster;
mod gossip;
mod ingest;
mod query;
mod storage;
mod stream;

use std::path::{Path, PathBuf};

use clap::{Args, Subcommand, ValueEnum};

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
    /// B3/B4: ingest points/s end to end: MQTT through Mosquitto (1, 100 and 1000 points per
    /// message) against the broker's own ceiling, and HTTP line protocol against
    /// VictoriaMetrics.
    Ingest {
        #[arg(long, value_enum, default_value_t = Scale::Full)]
        scale: Scale,
        /// The Mosquitto broker binary (Debian: /usr/sbin/mosquitto).
        #[arg(long, default_value = "/usr/sbin/mosquitto")]
        mosquitto: PathBuf,
        /// VictoriaMetrics binary to measure beside MiniTrue's HTTP write (Debian:
        /// /usr/bin/victoria-metrics).
        #[arg(long)]
        victoria_metrics: Option<PathBuf>,
        /// MQTT publisher connections.
        #[arg(long, default_value_t = 2)]
        publishers: usize,
        /// Concurrent HTTP connections.
        #[arg(long, default_value_t = 4)]
        http_connections: usize,
        /// Rounds per measurement, the best reported (default: 3 at full scale, 1 at tiny).
        #[arg(long)]
        rounds: Option<usize>,
        /// Skip B3 (MQTT).
        #[arg(long)]
        skip_mqtt: bool,
        /// Skip B4 (HTTP).
        #[arg(long)]
        skip_http: bool,
        /// Also write the report (markdown) here.
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// B5: query latency over pgwire (psycopg) against DuckDB over the same points in Parquet.
    Query(ClientBenchArgs),
    /// B7: B5's queries on a 3-node cluster (node processes on this machine) against one
    /// node holding all the data, and the bytes between nodes per query.
    Cluster {
        #[arg(long, value_enum, default_value_t = Scale::Full)]
        scale: Scale,
        /// Python with psycopg 3 (scripts/python-env.sh makes one).
        #[arg(long, default_value = "python3")]
        python: String,
        /// Owners per series in the cluster.
        #[arg(long, default_value_t = 2)]
        replication_factor: usize,
        /// Also write the report (markdown) here.
        #[arg(long)]
        out: Option<PathBuf>,
        /// Keep the four data directories and the nodes' logs here (default: a temp dir).
        #[arg(long)]
        keep_dir: Option<PathBuf>,
    },
    /// B6: a 10 M-row result streamed to Python: Flight SQL (ADBC) and plain Flight to
    /// pyarrow, pgwire to psycopg, against DuckDB reading the same points from Parquet.
    Stream(ClientBenchArgs),
    /// B5 (b) over pgwire with TLS and SCRAM against plaintext without authentication, and
    /// the cost of setting a connection up.
    Auth(ClientBenchArgs),
    /// Gossip convergence of 3 and 10 local nodes, sealed with a cluster secret and plain.
    Gossip {
        /// Rounds per cluster size and mode.
        #[arg(long, default_value_t = 7)]
        rounds: usize,
        /// Also write the report (markdown) here.
        #[arg(long)]
        out: Option<PathBuf>,
    },
}

/// The arguments of the benchmarks that load B5's points and drive them from a Python client.
#[derive(Args)]
pub struct ClientBenchArgs {
    #[arg(long, value_enum, default_value_t = Scale::Full)]
    scale: Scale,
    /// Python with duckdb, psycopg 3 and adbc-driver-flightsql (scripts/python-env.sh makes
    /// one).
    #[arg(long, default_value = "python3")]
    python: String,
    /// Also write the report (markdown) here.
    #[arg(long)]
    out: Option<PathBuf>,
    /// Keep the MiniTrue database and the Parquet export here (default: a temp dir).
    #[arg(long)]
    keep_dir: Option<PathBuf>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Scale {
    /// Seconds of data: proves the benchmark works (CI smoke run).
    Tiny,
    /// The benchmark's real size (B2: 100 devices × 4 metrics × 1 hour = 1.44 M points;
    /// B5: 100 sensors × 1 week at 1 Hz = 60.48 M points).
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
            report(
                storage::run(scale, &python, &shared, victoria_metrics.as_deref(), &tuning)?,
                out,
            )
        }
        BenchCommand::Ingest {
            scale,
            mosquitto,
            victoria_metrics,
            publishers,
            http_connections,
            rounds,
            skip_mqtt,
            skip_http,
            out,
        } => {
            let options = ingest::Options {
                scale,
                mosquitto,
                victoria_metrics,
                publishers,
                http_connections,
                rounds,
                skip_mqtt,
                skip_http,
            };
            report(ingest::run(&options)?, out)
        }
        BenchCommand::Query(a) => {
            report(query::run(a.scale, &a.python, a.keep_dir.as_deref())?, a.out)
        }
        BenchCommand::Cluster { scale, python, replication_factor, out, keep_dir } => {
            let options = cluster::Options { scale, python, replication_factor, keep_dir };
            report(cluster::run(&options)?, out)
        }
        BenchCommand::Stream(a) => {
            report(stream::run(a.scale, &a.python, a.keep_dir.as_deref())?, a.out)
        }
        BenchCommand::Auth(a) => {
            report(auth::run(a.scale, &a.python, a.keep_dir.as_deref())?, a.out)
        }
        BenchCommand::Gossip { rounds, out } => report(gossip::run(rounds.max(1))?, out),
    }
}

/// Runs a Python benchmark client: `source` (its script) with `spec` as JSON on stdin; its
/// stdout is the JSON report. `name` tags the temp script and the errors ("B5"). The client
/// runs while the caller's runtime serves it, so it is awaited on a blocking thread.
async fn run_python_client<T: serde::de::DeserializeOwned>(
    python: &str,
    name: &str,
    source: &'static str,
    spec: serde_json::Value,
) -> anyhow::Result<T> {
    use anyhow::Context;
    let script = std::env::temp_dir().join(format!("minitrue-{name}-{}.py", std::process::id()));
    std::fs::write(&script, source)?;
    let python = python.to_string();
    let script_path = script.clone();
    let output = tokio::task::spawn_blocking(move || -> anyhow::Result<std::process::Output> {
        use std::io::Write as _;
        let mut child = std::process::Command::new(&python)
            .arg(&script_path)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::inherit())
            .spawn()
            .with_context(|| format!("running {python} (the venv of scripts/python-env.sh)"))?;
        if let Some(mut stdin) = child.stdin.take() {
            stdin.write_all(spec.to_string().as_bytes())?;
        }
        Ok(child.wait_with_output()?)
    })
    .await??;
    let _ = std::fs::remove_file(&script);
    anyhow::ensure!(output.status.success(), "{name} client failed: {}", output.status);
    serde_json::from_slice(&output.stdout).with_context(|| format!("{name} client output"))
}

/// Where a benchmark keeps its data: `keep_dir` (created if needed), or a temporary directory
/// that lives as long as the returned guard.
fn work_dir(keep_dir: Option<&Path>) -> anyhow::Result<(tempfile::TempDir, PathBuf)> {
    let temp = tempfile::tempdir()?;
    let dir = keep_dir.map(Path::to_path_buf).unwrap_or_else(|| temp.path().to_path_buf());
    std::fs::create_dir_all(&dir)?;
    Ok((temp, dir))
}

/// Prints a report, and writes it to `out` when given.
fn report(report: String, out: Option<PathBuf>) -> anyhow::Result<()> {
    print!("{report}");
    if let Some(out) = out {
        std::fs::write(&out, &report)?;
    }
    Ok(())
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
