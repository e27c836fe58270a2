//! `minitrue serve`: one node. Opens the storage engine, serves SQL over the Postgres wire
//! protocol, Arrow Flight SQL and HTTP (writes, queries, metrics), ingests MQTT from an external broker or the embedded
//! one, optionally runs simulated sensors, and shuts down cleanly on SIGINT/SIGTERM
//! (everything acknowledged is flushed to Parquet before exit; a crash instead is covered by
//! the WAL).

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use arrow_array::RecordBatch;
use futures::future::BoxFuture;
use minitrue_cluster::peer::batch_to_points;
use minitrue_cluster::{
    Membership, MembershipConfig, NodeAddresses, NodeId, NodeState, ReplicaWrite,
    ReplicationConfig, Replicator, TopologyConfig, TopologyWatch,
};
use minitrue_common::{MetricsRegistry, SeriesKey};
use minitrue_ingest::broker::{
    serve_front_door, start_embedded_broker, EmbeddedBrokerConfig, FrontCounters,
};
use minitrue_ingest::client::BrokerTls;
use minitrue_ingest::mqtt::{
    run_subscriber, run_subscriber_or_leave, IngestCounters, MqttLogin, PointSink, SinkError,
    SubscriberConfig, WriteBatch,
};
use minitrue_ingest::{FormatConfig, Parser};
use minitrue_storage::{Engine, Tags};
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::publish;
use crate::settings::{Mode, MqttSubscription, ServeArgs, Settings};

pub fn run(args: ServeArgs) -> anyhow::Result<()> {
    let config = args.settings.resolve(&|name| std::env::var(name).ok())?;
    if args.print_config {
        println!("{}", serde_json::to_string_pretty(&config)?);
        return Ok(());
    }
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    runtime.block_on(serve(config))
}

/// Writes ingested points (and their series' tags) into the local engine: durable when
/// `write` returns. (A node writes through [`ClusterSink`]; the ingest benchmark measures the
/// engine's part through this.)
pub(crate) struct EngineSink(pub(crate) Arc<Engine>);

impl PointSink for EngineSink {
    fn write(&self, batch: WriteBatch) -> BoxFuture<'_, Result<(), SinkError>> {
        Box::pin(async move {
            let to_sink_error = |e: minitrue_storage::StorageError| SinkError {
                kind: e.kind(),
                message: e.to_string(),
            };
            if !batch.series_tags.is_empty() {
                let tags: Vec<(SeriesKey, Tags)> =
                    batch.series_tags.into_iter().map(|t| (t.series, t.tags)).collect();
                self.0.set_series_tags(&tags).await.map_err(to_sink_error)?;
            }
            self.0.write(&batch.points).await.map(|_| ()).map_err(to_sink_error)
        })
    }
}

/// Writes ingested points (and their series' tags) in the cluster: to all their owners,
/// durable on the write quorum when `write` returns; or, with `owned_only` (the seed's
/// `--mqtt-subscription every-node`, where every node receives every message and each owner
/// takes its own copy from the broker), only what this node owns, locally.
pub(crate) struct ClusterSink {
    pub(crate) replicator: Arc<Replicator>,
    pub(crate) owned_only: bool,
}

impl PointSink for ClusterSink {
    fn write(&self, batch: WriteBatch) -> BoxFuture<'_, Result<(), SinkError>> {
        Box::pin(async move {
            let tags: Vec<(SeriesKey, Tags)> =
                batch.series_tags.into_iter().map(|t| (t.series, t.tags)).collect();
            let written = match self.owned_only {
                true => self.replicator.write_owned(&batch.points, &tags).await.map(|_| ()),
                false => self.replicator.write(&batch.points, &tags).await,
            };
            written.map_err(|e| SinkError { kind: e.kind(), message: e.to_string() })
        })
    }
}

/// What a takeover subscriber needs to pose as another node's subscriber: this node's
/// subscriber configuration (broker, login, TLS, limits) and the cluster's share group.
struct SessionTemplate {
    subscriber: SubscriberConfig,
    share_group: String,
}

/// Drains the broker sessions of dead nodes (see
/// [`minitrue_cluster::Topology::sessions_to_take_over`]): a subscriber under the dead node's
/// client id and share group, routing through `sink`, stopped once the node is alive again
/// (or this node is no longer the one to drain).
fn spawn_session_takeover(
    topology: TopologyWatch,
    template: SessionTemplate,
    parser: Arc<Parser>,
    sink: Arc<dyn PointSink>,
    metrics: MetricsRegistry,
    stopping: watch::Receiver<bool>,
) -> tokio::task::JoinHandle<()> {
    let counters = Arc::new(IngestCounters::default());
    metrics.register(counters.clone().metrics("mqtt-takeover"));
    tokio::spawn(async move {
        let mut drains: std::collections::HashMap<NodeId, watch::Sender<bool>> =
            std::collections::HashMap::new();
        let mut stop = stopping.clone();
        loop {
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_millis(500)) => {}
                _ = stop.wait_for(|stop| *stop) => break,
            }
            let now = topology.current();
            let wanted = now.sessions_to_take_over();
            // A drain ends when its node is alive again (it takes its session back) or another
            // node drains now; a node that vanished from gossip stays drained, or its session
            // would keep taking messages with nobody reading them.
            drains.retain(|node, end| {
                let keep = wanted.iter().any(|(wanted, _)| wanted == node)
                    || (now.member(node).is_none() && !wanted.is_empty());
                if !keep {
                    let _ = end.send(true);
                    tracing::info!(node = %node, "stopped draining a node's mqtt session");
                }
                keep
            });
            for (node, session) in wanted {
                // Only a session on this node's own broker can be taken over from here.
                if drains.contains_key(&node) || session.broker != template.subscriber.broker_url {
                    continue;
                }
                tracing::info!(node = %node, "draining the mqtt session of a dead node");
                let (end, ended) = watch::channel(false);
                let mut subscriber = template.subscriber.clone();
                subscriber.client_id = session.client_id;
                subscriber.share_group = Some(template.share_group.clone());
                let (parser, sink, counters) = (parser.clone(), sink.clone(), counters.clone());
                tokio::spawn(async move {
                    let result = run_subscriber(
                        subscriber,
                        parser,
                        sink,
                        counters,
                        wait_for_shutdown(ended),
                    )
                    .await;
                    if let Err(error) = result {
                        tracing::warn!(%error, "a session takeover stopped");
                    }
                });
                drains.insert(node, end);
            }
        }
        for end in drains.values() {
            let _ = end.send(true);
        }
    })
}

/// Replica writes from peers (a `DoPut` on the Flight door), deletes and repair questions
/// (`DoAction`s) go to the local engine.
struct ReplicaReceiver {
    replicator: Arc<Replicator>,
    repairer: Arc<minitrue_cluster::repair::Repairer>,
}

const CLUSTER_ACTIONS: [&str; 3] = [
    minitrue_cluster::REPLICA_DELETE_ACTION,
    minitrue_cluster::repair::REPAIR_DIGEST_ACTION,
    minitrue_cluster::repair::REPAIR_POINTS_ACTION,
];

#[async_trait::async_trait]
impl minitrue_server::ReplicaDoor for ReplicaReceiver {
    fn handles(&self, path: &[String]) -> bool {
        ReplicaWrite::from_path(path).is_some()
    }

    async fn put(
        &self,
        path: &[String],
        batches: Vec<RecordBatch>,
    ) -> Result<u64, minitrue_server::ReplicaError> {
        let invalid = |message: String| minitrue_server::ReplicaError { invalid: true, message };
        let series_tags = match ReplicaWrite::from_path(path) {
            Some(Ok(tags)) => tags,
            Some(Err(error)) => return Err(invalid(error.to_string())),
            None => return Err(invalid("not a replica write".to_string())),
        };
        let mut points = Vec::new();
        for batch in &batches {
            points.extend(batch_to_points(batch).map_err(|e| invalid(e.to_string()))?);
        }
        let rows = points.len() as u64;
        self.replicator.apply_replica(ReplicaWrite { points, series_tags }).await.map_err(
            |error| minitrue_server::ReplicaError { invalid: false, message: error.to_string() },
        )?;
        Ok(rows)
    }

    fn handles_action(&self, kind: &str) -> bool {
        CLUSTER_ACTIONS.contains(&kind)
    }

    async fn action(
        &self,
        kind: &str,
        body: &[u8],
    ) -> Result<Vec<u8>, minitrue_server::ReplicaError> {
        if kind != minitrue_cluster::REPLICA_DELETE_ACTION {
            return self.repairer.answer(kind, body).await.map_err(|error| {
                minitrue_server::ReplicaError {
                    invalid: matches!(error, minitrue_cluster::repair::RepairError::Malformed(_)),
                    message: error.to_string(),
                }
            });
        }
        let action: minitrue_cluster::peer::DeleteAction =
            serde_json::from_slice(body).map_err(|error| minitrue_server::ReplicaError {
                invalid: true,
                message: format!("not a delete: {error}"),
            })?;
        let deleted =
            self.replicator.apply_delete(&action.requests, &action.counted).await.map_err(
                |error| minitrue_server::ReplicaError {
                    invalid: false,
                    message: error.to_string(),
                },
            )?;
        Ok(deleted.to_string().into_bytes())
    }
}

async fn wait_for_shutdown(mut signal: watch::Receiver<bool>) {
    while !*signal.borrow() {
        if signal.changed().await.is_err() {
            return;
        }
    }
}

/// Runs one front door until shutdown; if it fails, the failure is logged and the node keeps
/// its other doors.
fn spawn_door<E: std::fmt::Display>(
    what: &'static str,
    serve: impl std::future::Future<Output = Result<(), E>> + Send + 'static,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        if let Err(error) = serve.await {
            tracing::error!(%error, "{what} server stopped");
        }
    })
}

async fn bind(ip: IpAddr, port: u16, what: &str) -> anyhow::Result<TcpListener> {
    TcpListener::bind((ip, port))
        .await
        .with_context(|| format!("binding the {what} port {ip}:{port}"))
}

/// Left in the data directory of a node that was decommissioned: its data is the others' now
/// (and goes stale), so the node must not rejoin with it.
const DECOMMISSIONED_MARKER: &str = "DECOMMISSIONED";

async fn serve(config: Settings) -> anyhow::Result<()> {
    let marker = config.storage.data_dir.join(DECOMMISSIONED_MARKER);
    if marker.exists() {
        anyhow::bail!(
            "{} was decommissioned: its ranges were handed to the other nodes and what it holds \
             is stale. Start a new node with an empty --data-dir (or delete this one) to join \
             again",
            config.storage.data_dir.display()
        );
    }
    std::fs::create_dir_all(&config.storage.data_dir)
        .with_context(|| format!("creating {}", config.storage.data_dir.display()))?;
    let credentials = minitrue_auth::Credentials::open(&config.storage.data_dir)
        .context("reading the users of this node")?;
    let gate = minitrue_auth::Gatekeeper::new(credentials);
    if let (Some(path), false) = (&config.security.bootstrap_users, gate.required()) {
        crate::users::bootstrap(&config.storage.data_dir, path)?;
    }
    check_exposure(&config, &gate)?;
    let tls = door_tls(&config)?;
    let peer_tls = peer_tls(&config, tls.as_ref())?;
    let engine_config = config.storage.engine_config(config.wal.options());
    if let minitrue_storage::SyncPolicy::Interval(window) = engine_config.wal.sync {
        tracing::warn!(
            "--wal-sync {}: writes are acknowledged before they are on disk; a power cut loses \
             up to {window:?} of acknowledged points (a killed process loses none)",
            config.wal.sync
        );
    }
    let (engine, report) =
        Engine::open(engine_config).await.context("opening the storage engine")?;
    tracing::info!(files = report.files, replayed = report.wal_records_replayed, "storage open");

    let metrics = MetricsRegistry::new();
    metrics.register(engine.clone());
    metrics.register(Arc::new(gate.clone().metrics()));
    let format = FormatConfig {
        topic_templates: config.ingest.topic_template.clone(),
        ..Default::default()
    };
    let parser = Arc::new(Parser::new(format).context("the topic templates")?);
    let (stop, stopping) = watch::channel(false);
    let mut tasks = Vec::new();
    let mut ready = serde_json::Map::new();
    ready.insert("node_id".into(), config.node.node_id.clone().into());

    // Every listener is bound first, so the HTTP door can name all of them (`/api/v1/cluster`)
    // and gossip can publish them.
    let serves_queries = config.node.mode != Mode::Ingest;
    let http = bind(config.network.http_listen(), config.network.http_port, "http").await?;
    let http_address = http.local_addr()?;
    let flight = match serves_queries {
        true => {
            Some(bind(config.network.flight_listen(), config.network.flight_port, "flight").await?)
        }
        false => None,
    };
    let postgres = match serves_queries {
        true => Some(bind(config.network.pg_listen(), config.network.pg_port, "postgres").await?),
        false => None,
    };
    ready.insert("http".into(), http_address.to_string().into());
    if let Some(listener) = &flight {
        ready.insert("flight".into(), listener.local_addr()?.to_string().into());
    }
    if let Some(listener) = &postgres {
        ready.insert("postgres".into(), listener.local_addr()?.to_string().into());
    }

    let advertised = advertised_ip(&config)?;
    let published = |listener: &Option<TcpListener>| -> anyhow::Result<Option<SocketAddr>> {
        Ok(match listener {
            Some(listener) => Some(SocketAddr::new(advertised, listener.local_addr()?.port())),
            None => None,
        })
    };
    let node_addresses = NodeAddresses {
        http: SocketAddr::new(advertised, http_address.port()),
        postgres: published(&postgres)?,
        flight: published(&flight)?,
    };
    let (topology, cluster, gossip_address) =
        join_cluster(&config, advertised, node_addresses).await?;
    ready.insert("gossip".into(), gossip_address.to_string().into());
    println!(
        "cluster: gossip on udp {gossip_address}{}",
        match config.cluster.seeds().is_empty() {
            true => " (no seeds: a cluster of one until others join)".to_string(),
            false => format!(", seeds {}", config.cluster.seeds().join(",")),
        }
    );

    // Every door writes through the replicator: to each point's owners, with the quorum.
    let hints = minitrue_cluster::HintStore::open(config.storage.data_dir.join("hints"))
        .context("opening the hints directory")?;
    let replication =
        ReplicationConfig { peer_tls: peer_tls.clone(), ..config.cluster.replication() };
    let replicator = Replicator::new(
        topology.clone(),
        engine.clone(),
        hints,
        replication,
        Some(cluster.local_keys()),
    );
    metrics.register(replicator.metrics());
    tasks.push(replicator.spawn_hint_delivery(stopping.clone()));
    // Anti-entropy: the node is `recovering` until it has repaired with the nodes it shares
    // ranges with, then repairs after ring changes and every --repair-interval.
    let repair = minitrue_cluster::repair::RepairConfig {
        peer_tls: peer_tls.clone(),
        ..config.cluster.repair(settle_time(&config))
    };
    let repairer =
        minitrue_cluster::repair::Repairer::new(topology.clone(), engine.clone(), repair);
    metrics.register(repairer.metrics());
    tasks.push(repairer.spawn(Some(cluster.local_keys()), stopping.clone()));
    // Decommission (`POST /api/v1/cluster/decommission`): its last step before leaving stops
    // MQTT ingest for good, then it waits until the subscriber has left the broker.
    let (leave_ingest, ingest_leaving) = watch::channel(false);
    let (ingest_gone, ingest_left) = watch::channel(config.node.mode == Mode::Query);
    let stop_ingest: minitrue_cluster::decommission::StopIngest = Box::new(move || {
        leave_ingest.send_replace(true);
        let mut left = ingest_left.clone();
        Box::pin(async move {
            if tokio::time::timeout(Duration::from_secs(60), left.wait_for(|left| *left))
                .await
                .is_err()
            {
                tracing::warn!("the mqtt subscriber did not leave the broker within a minute");
            }
        })
    });
    let decommission = minitrue_cluster::decommission::Decommission::new(
        topology.clone(),
        repairer.clone(),
        replicator.clone(),
        cluster.local_keys(),
        settle_time(&config),
        stop_ingest,
    );
    metrics.register(decommission.metrics());
    let sink: Arc<dyn PointSink> =
        Arc::new(ClusterSink { replicator: replicator.clone(), owned_only: false });

    if config.node.mode != Mode::Query {
        // The node's own login at its embedded broker (none for an external one).
        let (mqtt_url, mqtt_login, broker_tls) = match &config.mqtt.broker {
            Some(broker) => (broker.clone(), config.mqtt.login.clone(), broker_tls(&config)?),
            None => {
                let broker =
                    start_mqtt_door(&config, &gate, tls.as_ref(), &metrics, stopping.clone())
                        .await?;
                for (door, address) in [("mqtt", broker.public), ("mqtts", broker.public_tls)] {
                    if let Some(address) = address {
                        ready.insert(door.into(), address.to_string().into());
                        println!(
                            "{door}: embedded broker on {address} (publish to iot/sensors/<metric>)"
                        );
                    }
                }
                if [&config.mqtt.broker_ca, &config.mqtt.broker_cert, &config.mqtt.broker_key]
                    .iter()
                    .any(|file| file.is_some())
                {
                    anyhow::bail!("--broker-ca, --broker-cert and --broker-key need --broker");
                }
                tasks.extend(broker.tasks);
                (broker.internal_url, Some(broker.login), BrokerTls::default())
            }
        };
        let counters = Arc::new(IngestCounters::default());
        metrics.register(counters.clone().metrics("mqtt"));
        let mut subscriber = config.mqtt.subscriber(&mqtt_url, &mqtt_client_id(&config));
        subscriber.login = mqtt_login.clone();
        subscriber.tls = broker_tls.clone();
        let share_group = mqtt_share_group(&config);
        subscriber.share_group = share_group.clone();
        let takeover = subscriber.clone();
        // Every node receives everything and keeps what it owns; otherwise what this node
        // receives (its share, or all of its embedded broker's) goes to the owners.
        let mqtt_sink: Arc<dyn PointSink> = match config.mqtt.mqtt_subscription {
            MqttSubscription::Shared => sink.clone(),
            MqttSubscription::EveryNode => {
                Arc::new(ClusterSink { replicator: replicator.clone(), owned_only: true })
            }
        };
        tasks.push(tokio::spawn({
            let (parser, sink, stopping) = (parser.clone(), mqtt_sink, stopping.clone());
            async move {
                let run = run_subscriber_or_leave(
                    subscriber,
                    parser,
                    sink,
                    counters,
                    wait_for_shutdown(stopping),
                    wait_for_shutdown(ingest_leaving),
                );
                if let Err(error) = run.await {
                    tracing::error!(%error, "mqtt subscriber stopped");
                }
                ingest_gone.send_replace(true);
            }
        }));
        if let Some(share_group) = &share_group {
            tasks.push(spawn_session_takeover(
                topology.clone(),
                SessionTemplate { subscriber: takeover, share_group: share_group.clone() },
                parser.clone(),
                sink.clone(),
                metrics.clone(),
                stopping.clone(),
            ));
        }
        ready.insert("mqtt_broker".into(), mqtt_url.clone().into());
        println!(
            "mqtt: subscribed at {mqtt_url} ({})",
            match (config.mqtt.mqtt_subscription, &share_group) {
                (MqttSubscription::EveryNode, _) => "every node: each keeps what it owns",
                (_, Some(_)) => "shared: each message to one node of the cluster",
                (_, None) => "this node's own broker",
            }
        );

        if config.node.simulate > 0 {
            let args = publish::PublishArgs {
                broker: mqtt_url,
                client_id: Some(format!("minitrue-{}-simulator", config.node.node_id)),
                topic_prefix: "iot/sensors".to_string(),
                username: None,
                password_file: None,
                login: mqtt_login.clone(),
                broker_ca: broker_tls.ca.clone(),
                broker_cert: broker_tls.cert.clone(),
                broker_key: broker_tls.key.clone(),
                source: publish::Source::Simulate(publish::SimulateArgs::defaults(
                    config.node.simulate,
                )),
            };
            let stopping = stopping.clone();
            tasks.push(tokio::spawn(async move {
                // Give the subscriber a moment to connect so the first readings are not
                // published before anyone listens (the embedded broker keeps no queue for
                // a subscriber it has never seen).
                tokio::time::sleep(Duration::from_millis(500)).await;
                if let Err(error) = publish::publish(args, stopping).await {
                    tracing::error!(error = format!("{error:#}"), "simulated sensors stopped");
                }
            }));
            println!("simulating {} sensors: temperature every second", config.node.simulate);
        }
    }

    // One SQL session for every query door (pgwire and HTTP), unless the node only ingests.
    let session = if serves_queries {
        // Queries read one live owner of every range, here or on peers.
        let reads = Arc::new(minitrue_cluster::ClusterReads::new(
            topology.clone(),
            config.cluster.peer_timeout.0,
            peer_tls,
        ));
        metrics.register(reads.metrics());
        let hooks = minitrue_query::ClusterHooks {
            info: Arc::new(topology.clone()),
            writer: replicator.clone(),
            runner: Some(reads),
        };
        Some(
            minitrue_query::session_in_cluster(
                engine.clone(),
                config.query.options(),
                metrics.clone(),
                Some(hooks),
            )
            .await?,
        )
    } else {
        None
    };
    let addresses = ["http", "postgres", "flight", "mqtt", "gossip"]
        .into_iter()
        .filter_map(|door| {
            ready.get(door).and_then(|a| a.as_str()).map(|a| (door.to_string(), a.to_string()))
        })
        .collect();

    let mut http_state = minitrue_server::HttpState::new(
        parser.clone(),
        sink.clone(),
        metrics.clone(),
        gate.clone(),
    )
    .with_live(Arc::new(EngineLive(engine.clone())))
    .with_node(minitrue_server::NodeIdentity { node_id: config.node.node_id.clone(), addresses })
    .with_decommission(Arc::new(DecommissionDoor(decommission.clone())));
    http_state.metrics_public = config.security.metrics_public;
    http_state.max_body_bytes = config.ingest.http_max_body_bytes as usize;
    if let Some(session) = &session {
        http_state = http_state.with_sql(session.clone());
    }
    tasks.push(spawn_door(
        "http",
        minitrue_server::serve_http(
            http,
            http_state,
            tls.clone(),
            wait_for_shutdown(stopping.clone()),
        ),
    ));
    println!(
        "http: http://{http_address} (web UI; POST /api/v1/write, /api/v2/write, /api/v1/sql, /query; GET /metrics)"
    );

    if let (Some(session), Some(listener)) = (&session, flight) {
        let address: SocketAddr = listener.local_addr()?;
        let state = minitrue_server::FlightState {
            session: session.clone(),
            gate: gate.clone(),
            metrics: metrics.clone(),
            replicas: Some(Arc::new(ReplicaReceiver {
                replicator: replicator.clone(),
                repairer: repairer.clone(),
            })),
        };
        tasks.push(spawn_door(
            "flight",
            minitrue_server::serve_flight(
                listener,
                state,
                tls.clone(),
                wait_for_shutdown(stopping.clone()),
            ),
        ));
        let scheme = if tls.is_some() { "grpc+tls" } else { "grpc" };
        println!("flight: {scheme}://{address} (Flight SQL: ADBC, pyarrow.flight)");
    }

    if let (Some(session), Some(listener)) = (session, postgres) {
        let address: SocketAddr = listener.local_addr()?;
        let session = Arc::new(session);
        tasks.push(spawn_door(
            "postgres",
            minitrue_server::serve_pgwire(
                listener,
                session,
                gate.clone(),
                tls.clone(),
                wait_for_shutdown(stopping.clone()),
            ),
        ));
        println!("postgres: psql -h {} -p {} -U minitrue minitrue", address.ip(), address.port());
    }

    if let Some(path) = &config.node.ready_file {
        std::fs::write(path, serde_json::Value::Object(ready).to_string())
            .with_context(|| format!("writing {}", path.display()))?;
    }
    println!("minitrue node {} ready", config.node.node_id);

    let decommissioned = tokio::select! {
        _ = shutdown_signal() => false,
        _ = decommission.finished() => true,
    };
    tracing::info!("shutting down");
    let _ = stop.send(true);
    for task in tasks {
        let _ = task.await;
    }
    cluster.stop().await;
    engine.close().await.context("flushing the storage engine")?;
    if decommissioned {
        let note = "This node was decommissioned: its ranges were handed to the other nodes. \
                    Start a new node with an empty data directory to join again.\n";
        std::fs::write(&marker, note).with_context(|| format!("writing {}", marker.display()))?;
        println!("minitrue node {} left the cluster (decommissioned)", config.node.node_id);
    }
    Ok(())
}

/// The embedded broker as a node runs it: rumqttd on an internal port, the front door on the
/// MQTT port.
struct MqttDoor {
    /// Where sensors connect: plain MQTT (unless --tls-required) and MQTTS (with TLS).
    public: Option<SocketAddr>,
    public_tls: Option<SocketAddr>,
    /// Where the node's own subscriber and simulated sensors connect, and as whom.
    internal_url: String,
    login: MqttLogin,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

async fn start_mqtt_door(
    config: &Settings,
    gate: &Arc<minitrue_auth::Gatekeeper>,
    tls: Option<&minitrue_server::DoorTls>,
    metrics: &MetricsRegistry,
    stopping: watch::Receiver<bool>,
) -> anyhow::Result<MqttDoor> {
    let broker =
        tokio::task::spawn_blocking(|| start_embedded_broker(EmbeddedBrokerConfig::default()))
            .await??;
    let internal = broker.internal().clone();
    let login =
        MqttLogin { username: internal.username.clone(), password: internal.password.clone() };
    let counters = Arc::new(FrontCounters::default());
    metrics.register(Arc::new(counters.clone().metrics()));
    let mut door = MqttDoor {
        public: None,
        public_tls: None,
        internal_url: broker.local_url(),
        login,
        tasks: Vec::new(),
    };
    let plain = !tls.is_some_and(|tls| tls.required);
    let mut listeners = Vec::new();
    if plain {
        listeners.push((
            bind(config.network.mqtt_listen(), config.network.mqtt_port, "mqtt").await?,
            None,
        ));
    }
    if let Some(tls) = tls {
        let acceptor = tokio_rustls::TlsAcceptor::from(tls.identity.server_config(&[])?);
        let listener =
            bind(config.network.mqtt_listen(), config.network.mqtts_port, "mqtts").await?;
        listeners.push((listener, Some(acceptor)));
    }
    for (listener, acceptor) in listeners {
        let address = listener.local_addr()?;
        match acceptor.is_some() {
            true => door.public_tls = Some(address),
            false => door.public = Some(address),
        }
        door.tasks.push(tokio::spawn(serve_front_door(
            listener,
            internal.clone(),
            gate.clone(),
            counters.clone(),
            acceptor,
            wait_for_shutdown(stopping.clone()),
        )));
    }
    Ok(door)
}

/// The node's TLS identity, when --tls-cert and --tls-key are given, reloaded on SIGHUP.
fn door_tls(config: &Settings) -> anyhow::Result<Option<minitrue_server::DoorTls>> {
    let (cert, key) = match (&config.security.tls_cert, &config.security.tls_key) {
        (Some(cert), Some(key)) => (cert, key),
        (None, None) if config.security.tls_required => {
            anyhow::bail!("--tls-required needs --tls-cert and --tls-key")
        }
        (None, None) => return Ok(None),
        _ => anyhow::bail!("--tls-cert and --tls-key go together"),
    };
    let identity = minitrue_auth::TlsIdentity::load(cert, key)?;
    println!(
        "tls: postgres, http, flight and mqtts doors use {}{}",
        cert.display(),
        match config.security.tls_required {
            true => " (plaintext refused)",
            false => "",
        }
    );
    #[cfg(unix)]
    {
        let identity = identity.clone();
        let mut hangups = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())?;
        tokio::spawn(async move {
            while hangups.recv().await.is_some() {
                match identity.reload() {
                    Ok(()) => tracing::warn!("tls certificate reloaded"),
                    Err(error) => {
                        tracing::error!(%error, "tls certificate not reloaded; the old one stays")
                    }
                }
            }
        });
    }
    Ok(Some(minitrue_server::DoorTls { identity, required: config.security.tls_required }))
}

/// TLS towards the external broker (`--broker-ca`, `--broker-cert`, `--broker-key`),
/// checked now so that a wrong file stops the start rather than the subscriber.
fn broker_tls(config: &Settings) -> anyhow::Result<BrokerTls> {
    let tls = config.mqtt.broker_tls();
    if let Some(broker) = &config.mqtt.broker {
        minitrue_ingest::client::client_options(broker, &config.node.node_id, None, &tls)?;
    }
    Ok(tls)
}

/// TLS for calls to other nodes: with TLS on the doors, the peers' Flight doors speak it too.
fn peer_tls(
    config: &Settings,
    tls: Option<&minitrue_server::DoorTls>,
) -> anyhow::Result<Option<minitrue_cluster::PeerTls>> {
    let Some(tls) = tls else {
        if config.security.tls_ca.is_some() {
            anyhow::bail!("--tls-ca needs --tls-cert and --tls-key");
        }
        return Ok(None);
    };
    let client = tls.identity.peer_client_config(config.security.tls_ca.as_deref())?;
    Ok(Some(minitrue_cluster::PeerTls::new(client)))
}

/// Refuses to start a node that would be open beyond this machine: with no users, anyone who
/// reaches it may read, write and delete. On loopback an open node is the one-command start,
/// said in one line.
fn check_exposure(config: &Settings, gate: &minitrue_auth::Gatekeeper) -> anyhow::Result<()> {
    let add_user = format!(
        "minitrue user add admin --role admin --data-dir {}",
        config.storage.data_dir.display()
    );
    if gate.required() {
        println!(
            "auth: clients authenticate (users and tokens in {})",
            config.storage.data_dir.display()
        );
        return Ok(());
    }
    let doors = [
        ("--listen", config.network.listen),
        ("--pg-listen", config.network.pg_listen()),
        ("--http-listen", config.network.http_listen()),
        ("--flight-listen", config.network.flight_listen()),
        ("--mqtt-listen", config.network.mqtt_listen()),
    ];
    let exposed: Vec<String> = doors
        .iter()
        .filter(|(_, ip)| !ip.is_loopback())
        .map(|(flag, ip)| format!("{flag} {ip}"))
        .collect();
    match (exposed.is_empty(), config.security.insecure_no_auth) {
        (true, _) => println!(
            "auth: no users yet, so every client on this machine may do everything (listening on \
             loopback only); `{add_user}` turns authentication on"
        ),
        (false, false) => anyhow::bail!(
            "{} exposes this node beyond this machine, and it has no users: anyone who reaches \
             it could read, write and delete its data. Create an admin first:\n  {add_user}\n(or \
             pass --insecure-no-auth to run without authentication)",
            exposed.join(", ")
        ),
        (false, true) => tracing::warn!(
            exposed = %exposed.join(", "),
            "--insecure-no-auth: no users, so anyone who reaches this node may read, write and \
             delete its data"
        ),
    }
    Ok(())
}

/// The HTTP door's view of this node's decommission.
struct DecommissionDoor(Arc<minitrue_cluster::decommission::Decommission>);

#[async_trait::async_trait]
impl minitrue_server::Decommissioning for DecommissionDoor {
    async fn start(&self) -> Result<serde_json::Value, String> {
        let progress = self.0.start().await.map_err(|error| error.to_string())?;
        serde_json::to_value(progress).map_err(|error| error.to_string())
    }

    fn progress(&self) -> serde_json::Value {
        serde_json::to_value(self.0.progress()).unwrap_or_default()
    }
}

/// The IP other nodes and clients reach this node at.
fn advertised_ip(config: &Settings) -> anyhow::Result<IpAddr> {
    match config.network.advertise_address {
        Some(ip) if ip.is_unspecified() => {
            anyhow::bail!("--advertise-address {ip} is not an address others can reach")
        }
        Some(ip) => Ok(ip),
        None if config.network.listen.is_unspecified() => anyhow::bail!(
            "--listen {} binds every interface: give --advertise-address, the IP other nodes \
             reach this one at",
            config.network.listen
        ),
        None => Ok(config.network.listen),
    }
}

/// Starts gossip (joining through the seeds, if any) and the topology that follows it.
async fn join_cluster(
    config: &Settings,
    advertised: IpAddr,
    addresses: NodeAddresses,
) -> anyhow::Result<(TopologyWatch, minitrue_cluster::Cluster, SocketAddr)> {
    let port = match config.network.gossip_port {
        0 => free_udp_port(config.network.listen)?,
        port => port,
    };
    let gossip_address = SocketAddr::new(advertised, port);
    let mut membership =
        MembershipConfig::new(NodeId::new(config.node.node_id.as_str()), gossip_address, addresses);
    membership.listen_ip = Some(config.network.listen);
    membership.seeds = config.cluster.seeds();
    membership.cluster_id = config.cluster.cluster_id.clone();
    membership.gossip_interval = config.cluster.gossip_interval();
    // A starting node may lack what it missed while down: it answers for its ranges only
    // once repaired (see minitrue_cluster::repair).
    membership.state = NodeState::Recovering;
    // Another node drains this one's shared session on the external broker while it is down
    // (an embedded broker goes down with its node).
    if let (Some(broker), Some(_)) = (&config.mqtt.broker, mqtt_share_group(config)) {
        membership.mqtt_session = Some(minitrue_cluster::MqttSession {
            client_id: mqtt_client_id(config),
            broker: broker.clone(),
        });
    }
    let membership = Membership::start(membership)
        .await
        .with_context(|| format!("starting gossip on udp {gossip_address}"))?;
    let topology = TopologyConfig {
        replication_factor: config.cluster.replication_factor as usize,
        gone_after: config.cluster.dead_node_timeout(),
        settle: settle_time(config),
        expect_peers: !config.cluster.seeds().is_empty(),
        ..TopologyConfig::default()
    };
    let (watch, cluster) = TopologyWatch::follow(membership, topology).await;
    Ok((watch, cluster, gossip_address))
}

/// The MQTT client id of this node's subscriber: stable, so the broker keeps its session.
fn mqtt_client_id(config: &Settings) -> String {
    format!("minitrue-{}", config.node.node_id)
}

/// The shared-subscription group of this node's MQTT subscriber: the cluster's, when it
/// ingests from an external broker in shared mode (the embedded broker's only subscriber is
/// its node, which subscribes plainly).
fn mqtt_share_group(config: &Settings) -> Option<String> {
    let shared = config.mqtt.mqtt_subscription == MqttSubscription::Shared;
    (shared && config.mqtt.broker.is_some() && config.node.mode != Mode::Query)
        .then(|| format!("minitrue-{}", config.cluster.cluster_id))
}

/// How long a starting node listens to gossip before it routes writes or repairs: long
/// enough to hear every member and the hints announced for it.
fn settle_time(config: &Settings) -> Duration {
    (config.cluster.gossip_interval() * 6).max(Duration::from_secs(2))
}

/// A UDP port free right now on `ip` (gossip binds it a moment later; `--gossip-port 0`).
fn free_udp_port(ip: IpAddr) -> anyhow::Result<u16> {
    let socket = std::net::UdpSocket::bind((ip, 0)).context("finding a free gossip port")?;
    Ok(socket.local_addr()?.port())
}

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

/// The engine's acknowledged writes, for the HTTP door's live stream.
struct EngineLive(Arc<minitrue_storage::Engine>);

impl minitrue_server::LiveSource for EngineLive {
    fn subscribe(&self) -> tokio::sync::broadcast::Receiver<minitrue_common::LiveBatch> {
        self.0.subscribe_live()
    }
}
