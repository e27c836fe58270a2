//! `minitrue serve`: one node. It starts in steps, each in its own file — the locks and the
//! storage ([`Node::open`]), the listeners (`doors.rs`), the cluster (`cluster.rs`), MQTT
//! ingest (`mqtt.rs`), the query doors (`doors.rs`) — then runs until SIGINT/SIGTERM or its
//! decommission, and shuts down cleanly (everything acknowledged is flushed to Parquet before
//! exit; a crash instead is covered by the WAL). [`RunningNode::start`] is what `minitrue
//! serve` runs and what tests start in-process.

mod adapters;
mod cluster;
mod doors;
mod mqtt;
mod security;

use std::net::IpAddr;
use std::sync::Arc;

use anyhow::Context;
use minitrue_common::MetricsRegistry;
use minitrue_ingest::client::BrokerTls;
use minitrue_ingest::Parser;
use minitrue_storage::Engine;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

pub(crate) use adapters::EngineSink;
pub(crate) use cluster::free_udp_port;
use cluster::ClusterParts;
use doors::Listeners;

use crate::settings::{ServeArgs, Settings};

pub fn run(args: ServeArgs) -> anyhow::Result<()> {
    let config = args.settings.resolve(&|name| std::env::var(name).ok())?;
    if args.print_config {
        println!("{}", serde_json::to_string_pretty(&config)?);
        return Ok(());
    }
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    runtime.block_on(async {
        let node = RunningNode::start(config).await?;
        let decommissioned = tokio::select! {
            _ = shutdown_signal() => false,
            _ = node.decommissioned() => true,
        };
        node.stop(decommissioned).await
    })
}

pub(super) async fn wait_for_shutdown(mut signal: watch::Receiver<bool>) {
    while !*signal.borrow() {
        if signal.changed().await.is_err() {
            return;
        }
    }
}

/// Runs one front door until shutdown; if it fails, the failure is logged and the node keeps
/// its other doors.
pub(super) fn spawn_door<E: std::fmt::Display>(
    what: &'static str,
    serve: impl std::future::Future<Output = Result<(), E>> + Send + 'static,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        if let Err(error) = serve.await {
            tracing::error!(%error, "{what} server stopped");
        }
    })
}

pub(super) async fn bind(ip: IpAddr, port: u16, what: &str) -> anyhow::Result<TcpListener> {
    TcpListener::bind((ip, port))
        .await
        .with_context(|| format!("binding the {what} port {ip}:{port}"))
}

/// Left in the data directory of a node that was decommissioned: its data is the others' now
/// (and goes stale), so the node must not rejoin with it.
const DECOMMISSIONED_MARKER: &str = "DECOMMISSIONED";

async fn shutdown_signal() {
    let interrupt = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut terminate =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(signal) => signal,
                Err(_) => {
                    let _ = interrupt.await;
                    return;
                }
            };
        tokio::select! {
            _ = interrupt => {}
            _ = terminate.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = interrupt.await;
    }
}

/// A node while it starts: what each step has set up, for the steps after it.
pub(crate) struct Node {
    config: Settings,
    gate: Arc<minitrue_auth::Gatekeeper>,
    tls: Option<minitrue_server::DoorTls>,
    /// How calls to peers go: over TLS or not, signed with the cluster secret.
    peer_link: minitrue_cluster::PeerLink,
    /// Who may make the calls reserved for the cluster's nodes on this node's Flight door.
    peer_calls: minitrue_server::PeerCalls,
    /// Seals gossip (from the cluster secret); `None` with --insecure-cluster.
    gossip_key: Option<[u8; 32]>,
    /// TLS towards an external broker (empty for the embedded one).
    broker_tls: BrokerTls,
    engine: Arc<Engine>,
    metrics: MetricsRegistry,
    parser: Arc<Parser>,
    stop: watch::Sender<bool>,
    /// Turns true when the node stops: every task and door watches it.
    stopping: watch::Receiver<bool>,
    tasks: Vec<JoinHandle<()>>,
    /// What the ready file says: the node id and every bound address.
    ready: serde_json::Map<String, serde_json::Value>,
}

impl Node {
    /// Step 1, the locks and the storage: refuses a decommissioned data directory, reads the
    /// users (creating the bootstrap ones), refuses an open node beyond loopback, loads TLS and
    /// opens the engine.
    async fn open(config: Settings) -> anyhow::Result<Node> {
        let data_dir = &config.storage.data_dir;
        if data_dir.join(DECOMMISSIONED_MARKER).exists() {
            anyhow::bail!(
                "{} was decommissioned: its ranges were handed to the other nodes and what it \
                 holds is stale. Start a new node with an empty --data-dir (or delete this one) \
                 to join again",
                data_dir.display()
            );
        }
        std::fs::create_dir_all(data_dir)
            .with_context(|| format!("creating {}", data_dir.display()))?;
        let credentials =
            minitrue_auth::Credentials::open(data_dir).context("reading the users of this node")?;
        let gate = minitrue_auth::Gatekeeper::new(credentials);
        if let (Some(path), false) = (&config.security.bootstrap_users, gate.required()) {
            crate::users::bootstrap(data_dir, path)?;
        }
        security::check_exposure(&config, &gate)?;
        let cluster_keys = security::cluster_keys(&config)?;
        let tls = security::door_tls(&config)?;
        let peer_link = minitrue_cluster::PeerLink {
            tls: security::peer_tls(&config, tls.as_ref())?,
            signer: cluster_keys.as_ref().map(|keys| {
                Arc::new(minitrue_auth::cluster::PeerSigner::new(keys, &config.node.node_id))
            }),
        };
        let peer_calls = match &cluster_keys {
            Some(keys) => {
                let verifier = Arc::new(minitrue_auth::cluster::PeerVerifier::new(keys));
                minitrue_server::PeerCalls::Verified(verifier)
            }
            None => minitrue_server::PeerCalls::Open,
        };
        let gossip_key = cluster_keys.map(|keys| keys.gossip);
        let broker_tls = security::broker_tls(&config)?;
        let engine_config = config.storage.engine_config(config.wal.options());
        if let minitrue_storage::SyncPolicy::Interval(window) = engine_config.wal.sync {
            tracing::warn!(
                "--wal-sync {}: writes are acknowledged before they are on disk; a power cut \
                 loses up to {window:?} of acknowledged points (a killed process loses none)",
                config.wal.sync
            );
        }
        let (engine, report) =
            Engine::open(engine_config).await.context("opening the storage engine")?;
        tracing::info!(
            files = report.files,
            replayed = report.wal_records_replayed,
            "storage open"
        );
        let metrics = MetricsRegistry::new();
        metrics.register(engine.clone());
        metrics.register(Arc::new(gate.clone().metrics()));
        if let minitrue_server::PeerCalls::Verified(verifier) = &peer_calls {
            metrics.register(Arc::new(verifier.clone().metrics()));
        }
        let parser =
            Arc::new(Parser::new(config.ingest.format()).context("the [ingest] settings")?);
        let (stop, stopping) = watch::channel(false);
        let mut ready = serde_json::Map::new();
        ready.insert("node_id".into(), config.node.node_id.clone().into());
        Ok(Node {
            config,
            gate,
            tls,
            peer_link,
            peer_calls,
            gossip_key,
            broker_tls,
            engine,
            metrics,
            parser,
            stop,
            stopping,
            tasks: Vec::new(),
            ready,
        })
    }

    /// The last step: the ready file (for scripts and tests) and the line saying so.
    fn announce_ready(&self) -> anyhow::Result<()> {
        if let Some(path) = &self.config.node.ready_file {
            std::fs::write(path, serde_json::Value::Object(self.ready.clone()).to_string())
                .with_context(|| format!("writing {}", path.display()))?;
        }
        println!("minitrue node {} ready", self.config.node.node_id);
        Ok(())
    }
}

/// A node with every door open.
pub(crate) struct RunningNode {
    node: Node,
    cluster: ClusterParts,
}

impl RunningNode {
    /// Starts a node: storage, listeners, the cluster, ingest, the query doors, in that order.
    pub(crate) async fn start(config: Settings) -> anyhow::Result<RunningNode> {
        let mut node = Node::open(config).await?;
        let listeners = Listeners::bind(&mut node).await?;
        let mut cluster = ClusterParts::join(&mut node, &listeners).await?;
        node.start_ingest(&mut cluster).await?;
        node.start_doors(&cluster, listeners).await?;
        node.announce_ready()?;
        Ok(RunningNode { node, cluster })
    }

    /// Where each door listens (what the ready file holds), e.g. `"postgres"`.
    #[cfg(test)]
    pub(crate) fn address(&self, door: &str) -> Option<&str> {
        self.node.ready.get(door).and_then(|address| address.as_str())
    }

    /// Resolves when the node has been decommissioned and has handed its ranges over.
    pub(crate) async fn decommissioned(&self) {
        self.cluster.decommission.finished().await
    }

    /// Stops every door and task, leaves gossip and flushes the engine; after a
    /// decommission, marks the data directory so that the node cannot rejoin with it.
    pub(crate) async fn stop(self, decommissioned: bool) -> anyhow::Result<()> {
        let RunningNode { node, cluster } = self;
        tracing::info!("shutting down");
        let _ = node.stop.send(true);
        for task in node.tasks {
            let _ = task.await;
        }
        cluster.membership.stop().await;
        node.engine.close().await.context("flushing the storage engine")?;
        if decommissioned {
            let marker = node.config.storage.data_dir.join(DECOMMISSIONED_MARKER);
            let note = "This node was decommissioned: its ranges were handed to the other \
                        nodes. Start a new node with an empty data directory to join again.\n";
            std::fs::write(&marker, note)
                .with_context(|| format!("writing {}", marker.display()))?;
            println!(
                "minitrue node {} left the cluster (decommissioned)",
                node.config.node.node_id
            );
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests;
