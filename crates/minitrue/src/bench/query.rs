//! B5: query latency over pgwire against DuckDB over the same points in Parquet.
//!
//! One run: generate `devices` temperature sensors at 1 Hz for a week (the smart-city
//! temperature walk: 2 decimals), write them through [`Engine::write`] with a flush per
//! simulated day (what a node's flushes and compactions leave behind), export the same points
//! to one Parquet file written with default settings, serve the engine over pgwire on a free
//! port, and run each query with psycopg 3 against MiniTrue and with DuckDB against the
//! Parquet file, in the same Python process (`query_client.py`). Latencies are client-side
//! (execute + fetch all rows), warm (after warm-up runs).

use std::fmt::Write as _;
use std::path::Path;
use std::sync::Arc;

use arrow_array::{Float64Array, RecordBatch, StringArray, TimestampNanosecondArray};
use minitrue_common::{Point, SeriesKey};
use minitrue_storage::{Engine, EngineConfig, SyncPolicy};
use serde::Deserialize;

use super::{machine_description, Scale};

pub(super) const SECOND: i64 = 1_000_000_000;
/// 2024-01-01T00:00:00Z.
pub(super) const START: i64 = 1_704_067_200 * SECOND;
pub(super) const DAY_SECONDS: i64 = 86_400;

pub(super) struct Shape {
    pub devices: usize,
    pub seconds: i64,
    /// Iterations of the cheap queries; the full scans run fewer.
    pub iterations: usize,
}

pub(super) fn shape(scale: Scale) -> Shape {
    match scale {
        // Two hours of 5 sensors: proves the benchmark works (CI, debug build).
        Scale::Tiny => Shape { devices: 5, seconds: 2 * 3600, iterations: 3 },
        // 100 sensors × 1 week at 1 Hz = 60.48 M points.
        Scale::Full => Shape { devices: 100, seconds: 7 * DAY_SECONDS, iterations: 50 },
    }
}

/// Deterministic generator: xorshift64* and Box–Muller, the smart-city temperature walk
/// (start 21 °C ± 2, steps of σ 0.02, rounded to 2 decimals).
pub(super) struct Walk {
    state: u64,
    level: f64,
}

impl Walk {
    pub(super) fn new(device: usize) -> Walk {
        let mut walk = Walk { state: 0x9E37_79B9_7F4A_7C15 ^ (device as u64 + 1), level: 0.0 };
        walk.level = 21.0 + 2.0 * walk.normal();
        walk
    }

    fn uniform(&mut self) -> f64 {
        self.state ^= self.state >> 12;
        self.state ^= self.state << 25;
        self.state ^= self.state >> 27;
        let bits = self.state.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 11;
        (bits as f64 + 0.5) / (1u64 << 53) as f64
    }

    fn normal(&mut self) -> f64 {
        let (u, v) = (self.uniform(), self.uniform());
        (-2.0 * u.ln()).sqrt() * (2.0 * std::f64::consts::PI * v).cos()
    }

    pub(super) fn next(&mut self) -> f64 {
        self.level += 0.02 * self.normal();
        (self.level * 100.0).round() / 100.0
    }
}

pub(super) fn device_name(device: usize) -> String {
    format!("sensor_{device:05}")
}

fn rfc3339(ns: i64) -> String {
    let secs = ns.div_euclid(SECOND);
    let days = secs.div_euclid(DAY_SECONDS);
    let rest = secs.rem_euclid(DAY_SECONDS);
    // 2024-01-01 is day 19723; the benchmark's times stay within January 2024.
    let day_of_month = days - 19_723 + 1;
    format!(
        "2024-01-{day_of_month:02}T{:02}:{:02}:{:02}Z",
        rest / 3600,
        rest % 3600 / 60,
        rest % 60
    )
}

fn duck_time(ns: i64) -> String {
    format!("TIMESTAMPTZ '{}'", rfc3339(ns).replace('T', " ").replace('Z', "+00"))
}

/// One query of the benchmark, in both dialects.
pub(super) struct Query {
    pub name: &'static str,
    pub description: String,
    pub minitrue: String,
    duckdb: String,
    pub iterations: usize,
    /// `fast` (default session) or `plain` (aggregate fast path off).
    pub server: &'static str,
}

pub(super) fn queries(shape: &Shape) -> Vec<Query> {
    let end = START + shape.seconds * SECOND;
    let week = format!("time >= '{}' AND time < '{}'", rfc3339(START), rfc3339(end));
    let week_duck = format!("time >= {} AND time < {}", duck_time(START), duck_time(end));
    // (b): one hour in the middle of the data; (d): one day (or the whole span when shorter).
    let hour_start = START + (shape.seconds / 2 / 3600) * 3600 * SECOND;
    let hour_end = hour_start + 3600 * SECOND;
    let day_start = START + (shape.seconds / 2 / DAY_SECONDS) * DAY_SECONDS * SECOND;
    let day_end = (day_start + DAY_SECONDS * SECOND).min(end);
    let sensor = device_name(shape.devices / 2);
    let scan_iterations = (shape.iterations / 5).max(3);
    vec![
        Query {
            name: "a",
            description: format!(
                "avg temperature, {} sensors × all {} s",
                shape.devices, shape.seconds
            ),
            minitrue: format!(
                "SELECT avg(value) FROM readings WHERE metric = 'temperature' AND {week}"
            ),
            duckdb: format!(
                "SELECT avg(value) FROM readings WHERE metric = 'temperature' AND {week_duck}"
            ),
            iterations: shape.iterations,
            server: "fast",
        },
        Query {
            name: "b",
            description: "one sensor, one hour of raw points".into(),
            minitrue: format!(
                "SELECT time, value FROM readings WHERE device_id = '{sensor}' AND metric = \
                 'temperature' AND time >= '{}' AND time < '{}'",
                rfc3339(hour_start),
                rfc3339(hour_end)
            ),
            duckdb: format!(
                "SELECT time, value FROM readings WHERE device_id = '{sensor}' AND metric = \
                 'temperature' AND time >= {} AND time < {}",
                duck_time(hour_start),
                duck_time(hour_end)
            ),
            iterations: shape.iterations,
            server: "fast",
        },
        Query {
            name: "c",
            description: "last value of every sensor (MiniTrue: `devices`, the last-value cache)"
                .into(),
            minitrue: "SELECT device_id, metric, last_value FROM devices".into(),
            duckdb: "SELECT device_id, metric, arg_max(value, time) FROM readings \
                     GROUP BY device_id, metric"
                .into(),
            iterations: shape.iterations,
            server: "fast",
        },
        Query {
            name: "d",
            description: "hourly avg per sensor for a day".into(),
            minitrue: format!(
                "SELECT device_id, time_bucket('1 hour', time) AS hour, avg(value) FROM readings \
                 WHERE metric = 'temperature' AND time >= '{}' AND time < '{}' \
                 GROUP BY device_id, hour",
                rfc3339(day_start),
                rfc3339(day_end)
            ),
            duckdb: format!(
                "SELECT device_id, time_bucket(INTERVAL '1 hour', time) AS hour, avg(value) \
                 FROM readings WHERE metric = 'temperature' AND time >= {} AND time < {} \
                 GROUP BY device_id, hour",
                duck_time(day_start),
                duck_time(day_end)
            ),
            iterations: shape.iterations,
            server: "fast",
        },
        Query {
            name: "e",
            description: "full scan avg(value)".into(),
            minitrue: "SELECT avg(value) FROM readings".into(),
            duckdb: "SELECT avg(value) FROM readings".into(),
            iterations: shape.iterations,
            server: "fast",
        },
        Query {
            name: "e′",
            description: "full scan avg(value), aggregate fast path off (every point decoded)"
                .into(),
            minitrue: "SELECT avg(value) FROM readings".into(),
            duckdb: "SELECT avg(value) FROM readings".into(),
            iterations: scan_iterations,
            server: "plain",
        },
    ]
}

#[derive(Deserialize)]
struct ClientReport {
    queries: Vec<ClientQuery>,
    duckdb_version: String,
}

#[derive(Deserialize)]
struct ClientQuery {
    name: String,
    minitrue_ms: Vec<f64>,
    duckdb_ms: Vec<f64>,
    minitrue_rows: usize,
    duckdb_rows: usize,
}

pub fn run(scale: Scale, python: &str, keep_dir: Option<&Path>) -> anyhow::Result<String> {
    let shape = shape(scale);
    let (_temp, dir) = super::work_dir(keep_dir)?;
    let parquet_path = dir.join("readings.parquet");
    let data_dir = dir.join("minitrue");
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    let report = runtime.block_on(async {
        let started = std::time::Instant::now();
        let engine = load(&shape, &data_dir, &parquet_path).await?;
        let load_seconds = started.elapsed().as_secs_f64();
        let fast = serve(engine.clone(), true).await?;
        let plain = serve(engine.clone(), false).await?;
        let queries = queries(&shape);
        let client = run_client(python, &queries, &parquet_path, fast, plain).await?;
        let files = engine.files().len();
        engine.close().await?;
        anyhow::Ok(render(scale, &shape, &queries, &client, load_seconds, files))
    })?;
    Ok(report)
}

/// Writes the points to a fresh engine (a flush per simulated day) and to a default Parquet
/// file sorted the same way.
pub(super) async fn load(
    shape: &Shape,
    data_dir: &Path,
    parquet_path: &Path,
) -> anyhow::Result<Arc<Engine>> {
    let engine = bench_engine(data_dir).await?;
    let mut walks: Vec<Walk> = (0..shape.devices).map(Walk::new).collect();
    let keys: Vec<SeriesKey> = (0..shape.devices)
        .map(|d| SeriesKey::new(&device_name(d), "temperature"))
        .collect::<Result<_, _>>()?;
    let file = std::fs::File::create(parquet_path)?;
    let schema = minitrue_storage::readings_schema();
    let mut parquet = parquet::arrow::ArrowWriter::try_new(file, schema.clone(), None)?;
    // Blocks of one hour: every sensor's hour is written, then the next hour.
    let block = 3600.min(shape.seconds);
    let mut second = 0;
    while second < shape.seconds {
        let n = block.min(shape.seconds - second);
        let mut points = Vec::with_capacity(shape.devices * n as usize);
        for (device, walk) in walks.iter_mut().enumerate() {
            for i in second..second + n {
                points.push(Point::new(keys[device].clone(), START + i * SECOND, walk.next()));
            }
        }
        for chunk in points.chunks(64 * 1024) {
            engine.write(chunk).await?;
        }
        let batch = RecordBatch::try_new(
            schema.clone(),
            vec![
                Arc::new(
                    TimestampNanosecondArray::from_iter_values(points.iter().map(|p| p.time))
                        .with_timezone("UTC"),
                ),
                Arc::new(StringArray::from_iter_values(
                    points.iter().map(|p| p.series.device_id()),
                )),
                Arc::new(StringArray::from_iter_values(points.iter().map(|p| p.series.metric()))),
                Arc::new(Float64Array::from_iter_values(points.iter().map(|p| p.value))),
            ],
        )?;
        parquet.write(&batch)?;
        second += n;
        if second % DAY_SECONDS == 0 || second == shape.seconds {
            engine.flush().await?;
        }
    }
    parquet.close()?;
    Ok(engine)
}

/// A fresh engine at `data_dir` for loading benchmark points: no background work, no WAL
/// syncs, and flushes only when the loader asks (one per simulated day).
pub(super) async fn bench_engine(data_dir: &Path) -> anyhow::Result<Arc<Engine>> {
    if data_dir.exists() {
        std::fs::remove_dir_all(data_dir)?;
    }
    let mut config = EngineConfig::new(data_dir);
    config.background_interval = None;
    config.wal.sync = SyncPolicy::Off;
    config.flush_memtable_bytes = usize::MAX;
    let (engine, _) = Engine::open(config).await?;
    Ok(engine)
}

/// Serves `engine` over pgwire on a free port; `fast_path` false turns the aggregate fast
/// path off in that server's session.
pub(super) async fn serve(engine: Arc<Engine>, fast_path: bool) -> anyhow::Result<u16> {
    let session = minitrue_query::session(engine, minitrue_query::QueryOptions::default()).await?;
    if !fast_path {
        session.sql("SET minitrue.aggregate_fast_path = false").await?.collect().await?;
    }
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let port = listener.local_addr()?.port();
    let gate = open_gate()?;
    tokio::spawn(async move {
        let shutdown = futures::future::pending::<()>();
        if let Err(error) =
            minitrue_server::serve_pgwire(listener, Arc::new(session), gate, None, shutdown).await
        {
            tracing::error!(%error, "bench postgres server stopped");
        }
    });
    Ok(port)
}

/// The benchmark servers are open (no users), as a node on loopback is.
pub(super) fn open_gate() -> anyhow::Result<Arc<minitrue_auth::Gatekeeper>> {
    Ok(minitrue_auth::Gatekeeper::new(minitrue_auth::Credentials::none()?))
}

async fn run_client(
    python: &str,
    queries: &[Query],
    parquet: &Path,
    fast: u16,
    plain: u16,
) -> anyhow::Result<ClientReport> {
    let spec = serde_json::json!({
        "pg_ports": {"fast": fast, "plain": plain},
        "parquet": parquet.to_string_lossy(),
        "warmup": 3,
        "queries": queries.iter().map(|q| serde_json::json!({
            "name": q.name,
            "minitrue": q.minitrue,
            "duckdb": q.duckdb,
            "iterations": q.iterations,
            "server": q.server,
        })).collect::<Vec<_>>(),
    });
    super::run_python_client(python, "B5", include_str!("query_client.py"), spec).await
}

/// The description of the query named `name` ("" when there is none).
pub(super) fn description_of<'a>(queries: &'a [Query], name: &str) -> &'a str {
    queries.iter().find(|q| q.name == name).map_or("", |q| q.description.as_str())
}

pub(super) fn percentile(samples: &[f64], p: f64) -> f64 {
    let mut sorted = samples.to_vec();
    sorted.sort_by(f64::total_cmp);
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

fn render(
    scale: Scale,
    shape: &Shape,
    queries: &[Query],
    client: &ClientReport,
    load_seconds: f64,
    files: usize,
) -> String {
    let points = shape.devices as i64 * shape.seconds;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "B5 query latency ({scale:?} scale: {} sensors × {} s at 1 Hz = {points} points; \
         {files} data files; loaded in {load_seconds:.1} s) on {}; DuckDB {} over the same \
         points in one Parquet file, same client process\n",
        shape.devices,
        shape.seconds,
        machine_description(),
        client.duckdb_version,
    );
    let _ = writeln!(
        out,
        "| query | rows | MiniTrue p50 ms | MiniTrue p99 ms | DuckDB p50 ms | DuckDB p99 ms | \
         DuckDB ÷ MiniTrue (p50) |"
    );
    let _ = writeln!(out, "|---|---:|---:|---:|---:|---:|---:|");
    for result in &client.queries {
        let description = description_of(queries, &result.name);
        let ours = percentile(&result.minitrue_ms, 50.0);
        let theirs = percentile(&result.duckdb_ms, 50.0);
        let rows = if result.minitrue_rows == result.duckdb_rows {
            result.minitrue_rows.to_string()
        } else {
            format!("{} (DuckDB {})", result.minitrue_rows, result.duckdb_rows)
        };
        let _ = writeln!(
            out,
            "| ({}) {description} | {rows} | {ours:.2} | {:.2} | {theirs:.2} | {:.2} | {:.2} |",
            result.name,
            percentile(&result.minitrue_ms, 99.0),
            percentile(&result.duckdb_ms, 99.0),
            theirs / ours,
        );
    }
    out
}
