//! B6: streaming a large result to Python. The same `SELECT time, device_id, metric, value`
//! of every point goes to pyarrow over Flight SQL (ADBC) and plain Flight (`pyarrow.flight`),
//! and to psycopg 3 over pgwire; the reference is DuckDB reading the same points from Parquet
//! into pyarrow, in the same client process (`stream_client.py`).
//!
//! MB/s counts the result's Arrow size (what a client ends up holding), the same figure for
//! every door, so the rates compare directly.

use std::fmt::Write as _;
use std::path::Path;
use std::sync::Arc;

use serde::Deserialize;

use super::query::{load, serve as serve_pgwire, Shape};
use super::{machine_description, Scale};

fn shape(scale: Scale) -> Shape {
    match scale {
        // 5 sensors × 2 hours = 36,000 rows: proves the benchmark works (CI, debug build).
        Scale::Tiny => Shape { devices: 5, seconds: 2 * 3600, iterations: 1 },
        // 100 sensors × 100,000 s = 10 M rows.
        Scale::Full => Shape { devices: 100, seconds: 100_000, iterations: 3 },
    }
}

const SQL: &str = "SELECT time, device_id, metric, value FROM readings";

#[derive(Deserialize)]
struct ClientReport {
    results: Vec<ClientResult>,
    versions: String,
}

#[derive(Deserialize)]
struct ClientResult {
    door: String,
    rows: u64,
    arrow_bytes: u64,
    /// Seconds of each round.
    seconds: Vec<f64>,
}

pub fn run(scale: Scale, python: &str, keep_dir: Option<&Path>) -> anyhow::Result<String> {
    let shape = shape(scale);
    let (_temp, dir) = super::work_dir(keep_dir)?;
    let parquet_path = dir.join("readings.parquet");
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    runtime.block_on(async {
        let engine = load(&shape, &dir.join("minitrue"), &parquet_path).await?;
        let pg_port = serve_pgwire(engine.clone(), true).await?;
        let flight_port = serve_flight(engine.clone()).await?;
        let spec = serde_json::json!({
            "pg_port": pg_port,
            "flight_port": flight_port,
            "parquet": parquet_path.to_string_lossy(),
            "sql": SQL,
            "rounds": shape.iterations,
        });
        let client: ClientReport =
            super::run_python_client(python, "B6", include_str!("stream_client.py"), spec).await?;
        engine.close().await?;
        Ok(render(scale, &shape, &client))
    })
}

async fn serve_flight(engine: Arc<minitrue_storage::Engine>) -> anyhow::Result<u16> {
    let session = minitrue_query::session(engine, minitrue_query::QueryOptions::default()).await?;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let port = listener.local_addr()?.port();
    let state = minitrue_server::FlightState {
        session,
        gate: super::query::open_gate()?,
        metrics: minitrue_common::MetricsRegistry::new(),
        replicas: None,
        // No node calls this one: peer-only calls are refused (a key nobody else has).
        peers: minitrue_server::PeerCalls::Verified(Arc::new(
            minitrue_auth::cluster::PeerVerifier::new(
                &minitrue_auth::cluster::ClusterSecret::ephemeral()?.keys("bench"),
            ),
        )),
    };
    tokio::spawn(async move {
        let shutdown = futures::future::pending::<()>();
        if let Err(error) = minitrue_server::serve_flight(listener, state, None, shutdown).await {
            tracing::error!(%error, "bench flight server stopped");
        }
    });
    Ok(port)
}

fn render(scale: Scale, shape: &Shape, client: &ClientReport) -> String {
    let rows = shape.devices as i64 * shape.seconds;
    let best = |r: &ClientResult| r.seconds.iter().copied().fold(f64::INFINITY, f64::min);
    let rate = |door: &str| {
        client.results.iter().find(|r| r.door == door).map(|r| r.rows as f64 / best(r))
    };
    let mut out = String::new();
    let _ = writeln!(
        out,
        "B6 streaming `{SQL}` ({scale:?} scale: {rows} rows) to Python on {}; {}; best of the \
         rounds; MB/s counts the result's Arrow size\n",
        machine_description(),
        client.versions,
    );
    let _ =
        writeln!(out, "| door | rows | rounds | best s | rows/s | MB/s | ÷ pgwire | ÷ DuckDB |");
    let _ = writeln!(out, "|---|---:|---:|---:|---:|---:|---:|---:|");
    for result in &client.results {
        let seconds = best(result);
        let per_second = result.rows as f64 / seconds;
        let ratio = |reference: Option<f64>| {
            reference.map(|r| format!("{:.1}×", per_second / r)).unwrap_or_else(|| "–".into())
        };
        let _ = writeln!(
            out,
            "| {} | {} | {} | {seconds:.3} | {per_second:.0} | {:.0} | {} | {} |",
            result.door,
            result.rows,
            result.seconds.len(),
            result.arrow_bytes as f64 / seconds / 1e6,
            ratio(rate("pgwire → psycopg 3")),
            ratio(rate("DuckDB → pyarrow (reference)")),
        );
    }
    out
}
