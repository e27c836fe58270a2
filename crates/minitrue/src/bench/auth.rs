//! B5 (b) behind the locked door: what SCRAM-SHA-256 and TLS cost a client. The same engine
//! (B5's points) is served twice in one process — an open pgwire door in plaintext, the way a
//! node without users on loopback runs, and a door requiring TLS and a reader's password —
//! and one Python process (`auth_client.py`, psycopg 3) measures on both, alternating:
//!
//! - query (b), one sensor's hour of raw points, over one connection kept open (the target:
//!   within 1.2× of plaintext);
//! - connection setup: connect (TCP, TLS handshake, SCRAM exchange, startup) and close.
//!
//! The certificate is made with the `openssl` command, an RSA 2048 key as the README's own
//! example makes.

use std::fmt::Write as _;
use std::path::Path;
use std::sync::Arc;

use anyhow::Context;
use serde::Deserialize;

use super::query::{load, queries, serve as serve_open, Shape};
use super::{machine_description, Scale};

const USER: &str = "bench-reader";

fn shape(scale: Scale) -> Shape {
    match scale {
        // Two hours of 5 sensors: proves the benchmark works (CI, debug build).
        Scale::Tiny => Shape { devices: 5, seconds: 2 * 3600, iterations: 5 },
        // B5's data: 100 sensors × 1 week at 1 Hz.
        Scale::Full => Shape { devices: 100, seconds: 7 * 86_400, iterations: 400 },
    }
}

#[derive(Deserialize)]
struct ClientReport {
    /// Milliseconds per run of query (b), per door.
    query_plain_ms: Vec<f64>,
    query_secured_ms: Vec<f64>,
    /// Milliseconds per connection set up and closed, per door.
    connect_plain_ms: Vec<f64>,
    connect_secured_ms: Vec<f64>,
    rows: usize,
    tls: String,
    versions: String,
}

pub fn run(scale: Scale, python: &str, keep_dir: Option<&Path>) -> anyhow::Result<String> {
    let shape = shape(scale);
    let (_temp, dir) = super::work_dir(keep_dir)?;
    let password = minitrue_auth::random_secret()?;
    let credentials = dir.join("credentials");
    std::fs::create_dir_all(&credentials)?;
    minitrue_auth::CredentialsEditor::open(&credentials)?.set_user(
        USER,
        minitrue_auth::Role::Reader,
        &password,
    )?;
    let (cert, key) = certificate(&dir)?;
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    runtime.block_on(async {
        let engine = load(&shape, &dir.join("minitrue"), &dir.join("readings.parquet")).await?;
        let plain = serve_open(engine.clone(), true).await?;
        let secured = serve_secured(engine.clone(), &credentials, &cert, &key).await?;
        let query = queries(&shape).into_iter().find(|q| q.name == "b").context("query (b)")?;
        let spec = serde_json::json!({
            "plain": format!("host=127.0.0.1 port={plain} user=minitrue dbname=minitrue sslmode=disable"),
            "secured": format!(
                "host=127.0.0.1 port={secured} user={USER} dbname=minitrue sslmode=verify-full \
                 sslrootcert={}",
                cert.display()
            ),
            "password": password,
            "sql": query.minitrue,
            "iterations": shape.iterations,
            "connections": (shape.iterations / 4).max(5),
            "warmup": 5,
        });
        let client: ClientReport =
            super::run_python_client(python, "B5 auth", include_str!("auth_client.py"), spec)
                .await?;
        engine.close().await?;
        anyhow::Ok(render(scale, &shape, &client))
    })
}

/// A self-signed certificate for 127.0.0.1, made with `openssl`: (cert, key) paths.
fn certificate(dir: &Path) -> anyhow::Result<(std::path::PathBuf, std::path::PathBuf)> {
    let (cert, key) = (dir.join("bench.pem"), dir.join("bench.key"));
    let status = std::process::Command::new("openssl")
        .args(["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2"])
        .args(["-subj", "/CN=minitrue bench", "-addext", "subjectAltName=IP:127.0.0.1"])
        .args(["-addext", "basicConstraints=critical,CA:FALSE"])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .stderr(std::process::Stdio::null())
        .status()
        .context("running openssl (the benchmark makes its certificate with it)")?;
    anyhow::ensure!(status.success(), "openssl could not make the certificate: {status}");
    Ok((cert, key))
}

/// Serves `engine` over pgwire with TLS required and the users of `credentials`.
async fn serve_secured(
    engine: Arc<minitrue_storage::Engine>,
    credentials: &Path,
    cert: &Path,
    key: &Path,
) -> anyhow::Result<u16> {
    let session = minitrue_query::session(engine, minitrue_query::QueryOptions::default()).await?;
    let gate = minitrue_auth::Gatekeeper::new(minitrue_auth::Credentials::open(credentials)?);
    anyhow::ensure!(gate.required(), "the secured door has no users");
    let tls = minitrue_server::DoorTls {
        identity: minitrue_auth::TlsIdentity::load(cert, key)?,
        required: true,
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let port = listener.local_addr()?.port();
    tokio::spawn(async move {
        let shutdown = futures::future::pending::<()>();
        let served =
            minitrue_server::serve_pgwire(listener, Arc::new(session), gate, Some(tls), shutdown);
        if let Err(error) = served.await {
            tracing::error!(%error, "bench postgres server stopped");
        }
    });
    Ok(port)
}

fn render(scale: Scale, shape: &Shape, client: &ClientReport) -> String {
    let p = super::query::percentile;
    let mut out = String::new();
    let _ = writeln!(out, "# B5 (b) with SCRAM-SHA-256 and TLS against plaintext without auth\n");
    let _ = writeln!(
        out,
        "scale {scale:?}: {} sensors × {} s; {}; {}; {}; client {}\n",
        shape.devices,
        shape.seconds,
        machine_description(),
        client.tls,
        if cfg!(debug_assertions) { "debug build" } else { "release build" },
        client.versions,
    );
    let _ = writeln!(out, "| measure | runs | plaintext, open p50 ms | p99 ms | TLS + SCRAM p50 ms | p99 ms | ratio (p50) | target |");
    let _ = writeln!(out, "|---|---:|---:|---:|---:|---:|---:|---|");
    let query_ratio = p(&client.query_secured_ms, 50.0) / p(&client.query_plain_ms, 50.0);
    let _ = writeln!(
        out,
        "| (b) one sensor, one hour ({} rows), connection reused | {} | {:.2} | {:.2} | {:.2} | {:.2} | {query_ratio:.2}× | ≤ 1.2×: **{}** |",
        client.rows,
        client.query_plain_ms.len(),
        p(&client.query_plain_ms, 50.0),
        p(&client.query_plain_ms, 99.0),
        p(&client.query_secured_ms, 50.0),
        p(&client.query_secured_ms, 99.0),
        if query_ratio <= 1.2 { "met" } else { "not met" },
    );
    let _ = writeln!(
        out,
        "| connection setup (connect, log in, close) | {} | {:.2} | {:.2} | {:.2} | {:.2} | {:.2}× | — |",
        client.connect_plain_ms.len(),
        p(&client.connect_plain_ms, 50.0),
        p(&client.connect_plain_ms, 99.0),
        p(&client.connect_secured_ms, 50.0),
        p(&client.connect_secured_ms, 99.0),
        p(&client.connect_secured_ms, 50.0) / p(&client.connect_plain_ms, 50.0),
    );
    out
}
