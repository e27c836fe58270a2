//! B7: the B5 queries on a 3-node cluster against one node holding all the data, in the same
//! run, and the bytes that cross between nodes per query.
//!
//! One run: B5's points (the smart-city temperature walk) are written offline into four data
//! directories: one node holding everything, and three cluster nodes each holding the series
//! the ring gives it (150 virtual nodes, the chosen replication factor), with a flush per
//! simulated day. Four `minitrue serve --mode query` processes then start on them, the three
//! joined by gossip. One Python process (`cluster_client.py`) waits until the three are
//! active, then runs each query over pgwire (psycopg 3) against the single node and against
//! node1 of the cluster, which plans it across the ring and pushes partial aggregates to its
//! peers. Bytes between nodes are node1's `minitrue_cluster_fragment_bytes_received_total`
//! (Arrow IPC from peers) over the query's runs. The client also checks that both give the
//! same rows (floats within 1e-9 relative: partial sums add in another order).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use minitrue_cluster::{NodeId, Ring, DEFAULT_VIRTUAL_NODES};
use minitrue_common::{Point, SeriesKey};
use minitrue_storage::Engine;
use serde::Deserialize;

use super::query::{self, Shape, Walk, DAY_SECONDS, SECOND, START};
use super::{machine_description, Scale};

const CLUSTER: [&str; 3] = ["node1", "node2", "node3"];

pub struct Options {
    pub scale: Scale,
    pub python: String,
    pub replication_factor: usize,
    pub keep_dir: Option<PathBuf>,
}

#[derive(Deserialize)]
struct ClientReport {
    queries: Vec<ClientQuery>,
    /// Seconds the cluster took to turn active (recovery repairs compare every range).
    waited_s: f64,
}

#[derive(Deserialize)]
struct ClientQuery {
    name: String,
    single_ms: Vec<f64>,
    cluster_ms: Vec<f64>,
    rows: usize,
    same: bool,
    bytes_per_query: f64,
    fragments_per_query: f64,
}

pub fn run(options: &Options) -> anyhow::Result<String> {
    let shape = query::shape(options.scale);
    let (_temp, dir) = super::work_dir(options.keep_dir.as_deref())?;
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    let started = Instant::now();
    let held = runtime.block_on(load(&shape, &dir, options.replication_factor))?;
    let load_seconds = started.elapsed().as_secs_f64();
    drop(runtime);

    let exe = std::env::current_exe().context("finding the minitrue binary")?;
    let rf = options.replication_factor.to_string();
    let secret = minitrue_auth::cluster::ClusterSecret::generate()?;
    let single = NodeProcess::start(
        &exe,
        &dir.join("single"),
        "single",
        &["--replication-factor", &rf],
        Some(&secret),
    )?;
    // B5's queries but (e′): turning the fast path off is a session setting of node1 only.
    let queries: Vec<query::Query> =
        query::queries(&shape).into_iter().filter(|q| q.server == "fast").collect();
    // For the cost of authentication, a second cluster on copies of the same data directories
    // runs with --insecure-cluster beside the one with the cluster secret, and one client
    // process times both, query by query.
    for name in CLUSTER {
        copy_dir(&dir.join(name), &dir.join(format!("insecure-{name}")))?;
    }
    let secured = start_cluster(&exe, &dir, "", &rf, Some(&secret))?;
    let client = run_client(options, (&single, 1), &secured[0], &queries)?;
    let insecure = start_cluster(&exe, &dir, "insecure-", &rf, None)?;
    let paired = run_client(options, (&insecure[0], CLUSTER.len()), &secured[0], &queries)?;
    let mut report = render(options, &shape, &queries, &client, &held, load_seconds);
    report.push_str(&render_authentication(queries.as_slice(), &paired));
    let differing: Vec<&str> = (client.queries.iter().chain(&paired.queries))
        .filter(|q| !q.same)
        .map(|q| q.name.as_str())
        .collect();
    anyhow::ensure!(
        differing.is_empty(),
        "{report}\nthe cluster's rows differ from the single node's in ({})",
        differing.join("), (")
    );
    Ok(report)
}

/// Starts the three nodes of the cluster on the data directories `dir/<prefix><name>`: with
/// `secret` as their cluster secret, or with --insecure-cluster.
fn start_cluster(
    exe: &Path,
    dir: &Path,
    prefix: &str,
    rf: &str,
    secret: Option<&str>,
) -> anyhow::Result<Vec<NodeProcess>> {
    let work = |name: &str| dir.join(format!("{prefix}{name}"));
    let first_extra = ["--replication-factor", rf];
    let first = NodeProcess::start(exe, &work(CLUSTER[0]), CLUSTER[0], &first_extra, secret)?;
    let seeds = format!("127.0.0.1:{}", first.port("gossip")?);
    let mut nodes = vec![first];
    for name in &CLUSTER[1..] {
        let extra = ["--replication-factor", rf, "--seeds", seeds.as_str()];
        nodes.push(NodeProcess::start(exe, &work(name), name, &extra, secret)?);
    }
    Ok(nodes)
}

/// Copies the directory tree `from` to `to` (a node's data directory, before it runs).
fn copy_dir(from: &Path, to: &Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(to)?;
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        let target = to.join(entry.file_name());
        if entry.file_type()?.is_dir() {
            copy_dir(&entry.path(), &target)?;
        } else {
            std::fs::copy(entry.path(), &target)
                .with_context(|| format!("copying {}", entry.path().display()))?;
        }
    }
    Ok(())
}

/// Runs the Python client against `single` (the reference; a cluster of `single_nodes`) and
/// `first`, the cluster's node1, once all of them are active.
fn run_client(
    options: &Options,
    (single, single_nodes): (&NodeProcess, usize),
    first: &NodeProcess,
    queries: &[query::Query],
) -> anyhow::Result<ClientReport> {
    let mut active = serde_json::Map::new();
    active.insert(single.port("postgres")?.to_string(), single_nodes.into());
    active.insert(first.port("postgres")?.to_string(), CLUSTER.len().into());
    let spec = serde_json::json!({
        "single": single.port("postgres")?,
        "cluster": first.port("postgres")?,
        "metrics": format!("http://127.0.0.1:{}/metrics", first.port("http")?),
        "active": active,
        "warmup": 3,
        "queries": queries.iter().map(|q| serde_json::json!({
            "name": q.name, "sql": q.minitrue, "iterations": q.iterations,
        })).collect::<Vec<_>>(),
    });
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    runtime.block_on(super::run_python_client(
        &options.python,
        "B7",
        include_str!("cluster_client.py"),
        spec,
    ))
}

/// Writes the points into `dir/single` (all of them) and `dir/node<N>` (the series the ring
/// gives node N); returns the points each data directory holds.
async fn load(
    shape: &Shape,
    dir: &Path,
    replication_factor: usize,
) -> anyhow::Result<BTreeMap<String, u64>> {
    let ring = Ring::new(CLUSTER.map(NodeId::new), DEFAULT_VIRTUAL_NODES, replication_factor);
    let mut names = vec!["single"];
    names.extend(CLUSTER);
    let mut engines: Vec<Arc<Engine>> = Vec::new();
    for name in &names {
        engines.push(query::bench_engine(&dir.join(name).join("data")).await?);
    }
    let keys: Vec<SeriesKey> = (0..shape.devices)
        .map(|d| SeriesKey::new(&query::device_name(d), "temperature"))
        .collect::<Result<_, _>>()?;
    // Per device, the engines holding it: the single node's, and its owners'.
    let holders: Vec<Vec<usize>> = keys
        .iter()
        .map(|key| {
            let owners = ring.series_owners(key.device_id(), key.metric());
            let mut holders = vec![0];
            holders.extend(
                CLUSTER
                    .iter()
                    .enumerate()
                    .filter(|(_, n)| owners.iter().any(|o| o.as_str() == **n))
                    .map(|(i, _)| i + 1),
            );
            holders
        })
        .collect();
    let mut held = vec![0u64; engines.len()];
    let mut walks: Vec<Walk> = (0..shape.devices).map(Walk::new).collect();
    let block = 3600.min(shape.seconds);
    let mut second = 0;
    while second < shape.seconds {
        let n = block.min(shape.seconds - second);
        let mut per_engine: Vec<Vec<Point>> = vec![Vec::new(); engines.len()];
        for (device, walk) in walks.iter_mut().enumerate() {
            for i in second..second + n {
                let point = Point::new(keys[device].clone(), START + i * SECOND, walk.next());
                for &holder in &holders[device] {
                    per_engine[holder].push(point.clone());
                }
            }
        }
        for (index, points) in per_engine.iter().enumerate() {
            for chunk in points.chunks(64 * 1024) {
                engines[index].write(chunk).await?;
            }
            held[index] += points.len() as u64;
        }
        second += n;
        if second % DAY_SECONDS == 0 || second == shape.seconds {
            for engine in &engines {
                engine.flush().await?;
            }
        }
    }
    for engine in engines {
        engine.close().await?;
    }
    Ok(names.iter().map(|n| n.to_string()).zip(held).collect())
}

/// A `minitrue serve --mode query` child process, killed when dropped.
struct NodeProcess {
    child: Child,
    ports: BTreeMap<String, u16>,
}

impl NodeProcess {
    /// Starts node `name` in `work` (its data directory is `work/data`) with `secret` as its
    /// cluster secret, or with --insecure-cluster.
    fn start(
        exe: &Path,
        work: &Path,
        name: &str,
        extra: &[&str],
        secret: Option<&str>,
    ) -> anyhow::Result<NodeProcess> {
        let ready = work.join("ready.json");
        let _ = std::fs::remove_file(&ready);
        let log = std::fs::File::create(work.join("node.log"))?;
        let mut command = Command::new(exe);
        command
            .arg("serve")
            .arg("--data-dir")
            .arg(work.join("data"))
            .arg("--ready-file")
            .arg(&ready)
            .args(["--node-id", name, "--mode", "query", "--gossip-interval-ms", "100"])
            .args(["--pg-port", "0", "--http-port", "0", "--flight-port", "0"])
            .args(["--gossip-port", "0"])
            .args(extra)
            .env_remove("MINITRUE_CLUSTER_SECRET")
            .env_remove("MINITRUE_CLUSTER_SECRET_FILE")
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log);
        match secret {
            Some(secret) => command.env("MINITRUE_CLUSTER_SECRET", secret),
            None => command.arg("--insecure-cluster"),
        };
        let child = command.spawn().with_context(|| format!("starting {}", exe.display()))?;
        let mut node = NodeProcess { child, ports: BTreeMap::new() };
        let deadline = Instant::now() + Duration::from_secs(300);
        while !ready.exists() {
            if let Some(status) = node.child.try_wait()? {
                anyhow::bail!("{name} exited ({status}); see {}", work.join("node.log").display());
            }
            anyhow::ensure!(Instant::now() < deadline, "{name} was not ready within 5 minutes");
            std::thread::sleep(Duration::from_millis(100));
        }
        let info: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&ready)?)?;
        for (door, address) in info.as_object().into_iter().flatten() {
            let port = address.as_str().and_then(|a| a.rsplit(':').next()?.parse().ok());
            if let Some(port) = port {
                node.ports.insert(door.clone(), port);
            }
        }
        Ok(node)
    }

    fn port(&self, door: &str) -> anyhow::Result<u16> {
        self.ports.get(door).copied().with_context(|| format!("no {door} port announced"))
    }
}

impl Drop for NodeProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn render(
    options: &Options,
    shape: &Shape,
    queries: &[query::Query],
    client: &ClientReport,
    held: &BTreeMap<String, u64>,
    load_seconds: f64,
) -> String {
    let points = shape.devices as i64 * shape.seconds;
    let holdings: Vec<String> =
        CLUSTER.iter().map(|name| format!("{name} {}", held.get(*name).unwrap_or(&0))).collect();
    let mut out = String::new();
    let _ = writeln!(
        out,
        "B7 cluster query latency ({:?} scale: {} sensors × {} s at 1 Hz = {points} points; \
         3 nodes, replication factor {}, points held: {}; loaded in {load_seconds:.1} s; the \
         cluster turned active {:.1} s after start) on {}, all processes on one machine; the \
         reference is one node holding all the points, same client process\n",
        options.scale,
        shape.devices,
        shape.seconds,
        options.replication_factor,
        holdings.join(", "),
        client.waited_s,
        machine_description(),
    );
    let _ = writeln!(
        out,
        "| query | rows | 1 node p50 ms | 1 node p99 ms | 3 nodes p50 ms | 3 nodes p99 ms | \
         3 nodes ÷ 1 node (p50) | bytes from peers per query | fragments per query | same rows |"
    );
    let _ = writeln!(out, "|---|---:|---:|---:|---:|---:|---:|---:|---:|---|");
    for result in &client.queries {
        let description = query::description_of(queries, &result.name);
        let single = query::percentile(&result.single_ms, 50.0);
        let cluster = query::percentile(&result.cluster_ms, 50.0);
        let _ = writeln!(
            out,
            "| ({}) {description} | {} | {single:.2} | {:.2} | {cluster:.2} | {:.2} | {:.2} | \
             {:.0} | {:.1} | {} |",
            result.name,
            result.rows,
            query::percentile(&result.single_ms, 99.0),
            query::percentile(&result.cluster_ms, 99.0),
            cluster / single,
            result.bytes_per_query,
            result.fragments_per_query,
            if result.same { "yes" } else { "**no**" },
        );
    }
    out
}

/// The cost of authentication between the nodes: the same queries on two clusters holding the
/// same data, one with a cluster secret and one with --insecure-cluster, timed by one client
/// (`paired`: its reference is the insecure cluster).
fn render_authentication(queries: &[query::Query], paired: &ClientReport) -> String {
    let mut out = String::from(
        "\nThe cluster with its secret (sealed gossip, a signed credential on every peer call) \
         against a second cluster on copies of its data directories with --insecure-cluster, \
         both running, timed by the same client query by query:\n\n\
         | query | secret p50 ms | insecure p50 ms | secret ÷ insecure | same rows |\n\
         |---|---:|---:|---:|---|\n",
    );
    let mut worst: f64 = 0.0;
    for result in &paired.queries {
        let secured = query::percentile(&result.cluster_ms, 50.0);
        let insecure = query::percentile(&result.single_ms, 50.0);
        worst = worst.max(secured / insecure);
        let _ = writeln!(
            out,
            "| ({}) {} | {secured:.2} | {insecure:.2} | {:.2} | {} |",
            result.name,
            query::description_of(queries, &result.name),
            secured / insecure,
            if result.same { "yes" } else { "**no**" },
        );
    }
    let _ = writeln!(out, "\nWorst ratio: {worst:.2}× (target ≤ 1.10×).");
    out
}
