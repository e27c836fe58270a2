//! Joining the cluster: gossip, the topology that follows it, and what runs on it — the
//! replicator every write goes through, anti-entropy repair and decommission.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use minitrue_cluster::{
    Membership, MembershipConfig, NodeAddresses, NodeId, NodeState, ReplicationConfig, Replicator,
    TopologyConfig, TopologyWatch,
};
use minitrue_ingest::mqtt::PointSink;
use tokio::sync::watch;

use super::adapters::ClusterSink;
use super::doors::Listeners;
use super::mqtt::{mqtt_client_id, mqtt_share_group};
use super::Node;
use crate::settings::{Mode, Settings};

/// What runs on the cluster for this node.
pub(super) struct ClusterParts {
    pub(super) topology: TopologyWatch,
    pub(super) membership: minitrue_cluster::Cluster,
    pub(super) replicator: Arc<Replicator>,
    pub(super) repairer: Arc<minitrue_cluster::repair::Repairer>,
    pub(super) decommission: Arc<minitrue_cluster::decommission::Decommission>,
    /// Where every door writes: through the replicator, to each point's owners.
    pub(super) sink: Arc<dyn PointSink>,
    /// How a decommission stops MQTT ingest; taken by the ingest step.
    pub(super) ingest: Option<IngestControl>,
}

/// Decommission's hold on MQTT ingest: `leave` turns true when ingest must stop for good,
/// and ingest answers on `gone` once its subscriber has left the broker.
pub(super) struct IngestControl {
    pub(super) leave: watch::Receiver<bool>,
    pub(super) gone: watch::Sender<bool>,
}

impl ClusterParts {
    /// Step 3: gossip (publishing the listeners' addresses), the replicator every write goes
    /// through (hints included), anti-entropy repair and decommission.
    pub(super) async fn join(
        node: &mut Node,
        listeners: &Listeners,
    ) -> anyhow::Result<ClusterParts> {
        let config = &node.config;
        let advertised = advertised_ip(config)?;
        let (topology, membership, gossip_address) = join_cluster(
            config,
            advertised,
            listeners.published(advertised)?,
            node.gossip_key,
            &node.metrics,
        )
        .await?;
        node.ready.insert("gossip".into(), gossip_address.to_string().into());
        let seeds = config.cluster.seeds();
        println!(
            "cluster: gossip on udp {gossip_address}{}",
            match seeds.is_empty() {
                true => " (no seeds: a cluster of one until others join)".to_string(),
                false => format!(", seeds {}", seeds.join(",")),
            }
        );

        let hints = minitrue_cluster::HintStore::open(config.storage.data_dir.join("hints"))
            .context("opening the hints directory")?;
        let replication =
            ReplicationConfig { peer_link: node.peer_link.clone(), ..config.cluster.replication() };
        let replicator = Replicator::new(
            topology.clone(),
            node.engine.clone(),
            hints,
            replication,
            Some(membership.local_keys()),
        );
        node.metrics.register(replicator.metrics());
        node.tasks.push(replicator.spawn_hint_delivery(node.stopping.clone()));
        // Anti-entropy: the node is `recovering` until it has repaired with the nodes it
        // shares ranges with, then repairs after ring changes and every --repair-interval.
        let repair = minitrue_cluster::repair::RepairConfig {
            peer_link: node.peer_link.clone(),
            ..config.cluster.repair(settle_time(config))
        };
        let repairer =
            minitrue_cluster::repair::Repairer::new(topology.clone(), node.engine.clone(), repair);
        node.metrics.register(repairer.metrics());
        node.tasks.push(repairer.spawn(Some(membership.local_keys()), node.stopping.clone()));
        // Decommission (`POST /api/v1/cluster/decommission`): its last step before leaving
        // stops MQTT ingest for good, then it waits until the subscriber has left the broker.
        let (leave_ingest, leave) = watch::channel(false);
        let (gone, ingest_left) = watch::channel(config.node.mode == Mode::Query);
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
            membership.local_keys(),
            settle_time(config),
            stop_ingest,
        );
        node.metrics.register(decommission.metrics());
        let sink: Arc<dyn PointSink> =
            Arc::new(ClusterSink { replicator: replicator.clone(), owned_only: false });
        Ok(ClusterParts {
            topology,
            membership,
            replicator,
            repairer,
            decommission,
            sink,
            ingest: Some(IngestControl { leave, gone }),
        })
    }
}

/// The IP other nodes and clients reach this node at.
pub(super) fn advertised_ip(config: &Settings) -> anyhow::Result<IpAddr> {
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
pub(super) async fn join_cluster(
    config: &Settings,
    advertised: IpAddr,
    addresses: NodeAddresses,
    gossip_key: Option<[u8; 32]>,
    metrics: &minitrue_common::MetricsRegistry,
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
    membership.gossip_key = gossip_key;
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
    metrics.register(Arc::new(membership.metrics()));
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

/// How long a starting node listens to gossip before it routes writes or repairs: long
/// enough to hear every member and the hints announced for it.
pub(super) fn settle_time(config: &Settings) -> Duration {
    (config.cluster.gossip_interval() * 6).max(Duration::from_secs(2))
}

/// A UDP port free right now on `ip` (gossip binds it a moment later; `--gossip-port 0`).
pub(crate) fn free_udp_port(ip: IpAddr) -> anyhow::Result<u16> {
    let socket = std::net::UdpSocket::bind((ip, 0)).context("finding a free gossip port")?;
    Ok(socket.local_addr()?.port())
}
