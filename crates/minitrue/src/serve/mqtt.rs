//! MQTT ingest: the embedded broker's door, the node's subscriber (to its own broker or an
//! external one), the takeover of dead nodes' broker sessions, and simulated sensors.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use minitrue_cluster::{NodeId, TopologyWatch};
use minitrue_common::MetricsRegistry;
use minitrue_ingest::broker::{
    serve_front_door, start_embedded_broker, EmbeddedBrokerConfig, FrontCounters,
};
use minitrue_ingest::client::BrokerTls;
use minitrue_ingest::mqtt::{
    run_subscriber, run_subscriber_or_leave, IngestCounters, MqttLogin, PointSink, SubscriberConfig,
};
use minitrue_ingest::Parser;
use tokio::sync::watch;

use super::adapters::ClusterSink;
use super::cluster::ClusterParts;
use super::{bind, wait_for_shutdown, Node};
use crate::publish;
use crate::settings::{Mode, MqttSubscription, Settings};

impl Node {
    /// Step 4: MQTT ingest, unless the node only answers queries: the embedded broker's door
    /// (or the external broker), the node's subscriber writing through the cluster, the
    /// takeover of dead nodes' shared sessions, and simulated sensors.
    pub(super) async fn start_ingest(&mut self, cluster: &mut ClusterParts) -> anyhow::Result<()> {
        let config = self.config.clone();
        let Some(control) = cluster.ingest.take() else { return Ok(()) };
        if config.node.mode == Mode::Query {
            return Ok(());
        }
        // The node's own login at its embedded broker (none for an external one).
        let (mqtt_url, mqtt_login, broker_tls) = match &config.mqtt.broker {
            Some(broker) => (broker.clone(), config.mqtt.login.clone(), self.broker_tls.clone()),
            None => {
                let broker = start_mqtt_door(
                    &config,
                    &self.gate,
                    self.tls.as_ref(),
                    &self.metrics,
                    self.stopping.clone(),
                )
                .await?;
                for (door, address) in [("mqtt", broker.public), ("mqtts", broker.public_tls)] {
                    if let Some(address) = address {
                        self.ready.insert(door.into(), address.to_string().into());
                        println!(
                            "{door}: embedded broker on {address} (publish to iot/sensors/<metric>)"
                        );
                    }
                }
                self.tasks.extend(broker.tasks);
                (broker.internal_url, Some(broker.login), BrokerTls::default())
            }
        };
        let counters = Arc::new(IngestCounters::default());
        self.metrics.register(counters.clone().metrics("mqtt"));
        let mut subscriber = config.mqtt.subscriber(&mqtt_url, &mqtt_client_id(&config));
        subscriber.login = mqtt_login.clone();
        subscriber.tls = broker_tls.clone();
        let share_group = mqtt_share_group(&config);
        subscriber.share_group = share_group.clone();
        let takeover = subscriber.clone();
        // Every node receives everything and keeps what it owns; otherwise what this node
        // receives (its share, or all of its embedded broker's) goes to the owners.
        let mqtt_sink: Arc<dyn PointSink> = match config.mqtt.mqtt_subscription {
            MqttSubscription::Shared => cluster.sink.clone(),
            MqttSubscription::EveryNode => {
                Arc::new(ClusterSink { replicator: cluster.replicator.clone(), owned_only: true })
            }
        };
        self.tasks.push(tokio::spawn({
            let (parser, sink, stopping) = (self.parser.clone(), mqtt_sink, self.stopping.clone());
            async move {
                let run = run_subscriber_or_leave(
                    subscriber,
                    parser,
                    sink,
                    counters,
                    wait_for_shutdown(stopping),
                    wait_for_shutdown(control.leave),
                );
                if let Err(error) = run.await {
                    tracing::error!(%error, "mqtt subscriber stopped");
                }
                control.gone.send_replace(true);
            }
        }));
        if let Some(share_group) = &share_group {
            self.tasks.push(spawn_session_takeover(
                cluster.topology.clone(),
                SessionTemplate { subscriber: takeover, share_group: share_group.clone() },
                self.parser.clone(),
                cluster.sink.clone(),
                self.metrics.clone(),
                self.stopping.clone(),
            ));
        }
        self.ready.insert("mqtt_broker".into(), mqtt_url.clone().into());
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
            let stopping = self.stopping.clone();
            self.tasks.push(tokio::spawn(async move {
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
        Ok(())
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

/// The MQTT client id of this node's subscriber: stable, so the broker keeps its session.
pub(super) fn mqtt_client_id(config: &Settings) -> String {
    format!("minitrue-{}", config.node.node_id)
}

/// The shared-subscription group of this node's MQTT subscriber: the cluster's, when it
/// ingests from an external broker in shared mode (the embedded broker's only subscriber is
/// its node, which subscribes plainly).
pub(super) fn mqtt_share_group(config: &Settings) -> Option<String> {
    let shared = config.mqtt.mqtt_subscription == MqttSubscription::Shared;
    (shared && config.mqtt.broker.is_some() && config.node.mode != Mode::Query)
        .then(|| format!("minitrue-{}", config.cluster.cluster_id))
}
