//! Membership: who is in the cluster, where they listen, and whether they are alive.
//!
//! Gossip is chitchat (scuttlebutt anti-entropy plus phi-accrual failure detection) over
//! UDP. A node joins by gossiping with any of its `--seeds`; there is no coordinator. Each
//! node publishes, in its own gossip key space, its state (`joining`, `active`, `leaving`)
//! and the addresses of its HTTP, Postgres and Flight listeners, so any node can reach any
//! other. Every node forms its own view from gossip: views agree once gossip has converged
//! (a few gossip intervals), not at every instant, which is why nothing here elects or
//! decides anything.
//!
//! A restarted node gossips under a new generation (its start time); older generations of
//! the same node id are ignored.
//!
//! With a cluster secret, every gossip packet is sealed with the cluster's gossip key
//! ([`crate::gossip_transport`]): a node without the secret is never heard, so it never
//! appears among the members, and a member is admitted (its admission time recorded) only
//! once a packet of its own has opened. Without one (`--insecure-cluster`), gossip is
//! chitchat's plain UDP, and anyone who reaches the port can join.

use std::collections::BTreeMap;
use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::str::FromStr;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use chitchat::transport::{Transport, UdpTransport};
use chitchat::{
    spawn_chitchat, ChitchatConfig, ChitchatHandle, ChitchatId, FailureDetectorConfig,
    NodeState as GossipState,
};
use minitrue_common::Metric;
use parking_lot::Mutex;
use serde::Serialize;
use tokio::sync::watch;

use crate::gossip_transport::{GossipCounters, SealedUdpTransport};
use crate::ring::NodeId;

const KEY_STATE: &str = "state";
const KEY_HTTP: &str = "http";
const KEY_POSTGRES: &str = "pg";
const KEY_FLIGHT: &str = "flight";
/// The nodes this node keeps hints for (a JSON list of ids): repair waits until they are
/// delivered, or it could bring back points a hinted delete removes.
const KEY_HINTS_FOR: &str = "hints_for";
/// The node's shared MQTT subscription, when it has one (JSON [`MqttSession`]): the session a
/// live node drains while this one is down.
const KEY_MQTT_SESSION: &str = "mqtt_session";

/// A node's persistent MQTT session on an external broker.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct MqttSession {
    pub client_id: String,
    /// The broker URL as the node was given it.
    pub broker: String,
}

/// Why membership could not start.
#[derive(Debug, thiserror::Error)]
pub enum MembershipError {
    #[error("gossip could not start on {address}: {reason}")]
    Start { address: SocketAddr, reason: String },
    #[error("gossip listen address {0} is not usable as an advertised address (use a concrete IP and port)")]
    Unadvertisable(SocketAddr),
}

/// A node's part in the cluster.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum NodeState {
    /// Up, receiving the ranges it will own; not yet asked to answer for them.
    Joining,
    /// Just started: owns its ranges and takes writes, but may lack what it missed while it
    /// was down, so reads ask it only when no active owner of a range is left. It turns
    /// active once the hints kept for it are delivered and it has repaired its ranges.
    Recovering,
    /// Owns its ranges.
    Active,
    /// Handing its ranges to the others before it stops (a decommission): still an owner,
    /// while writes for its ranges also go to the nodes that own them once it is gone.
    Leaving,
    /// Has handed its ranges over and owns nothing; it stops soon after.
    Left,
}

impl NodeState {
    pub fn as_str(self) -> &'static str {
        match self {
            NodeState::Joining => "joining",
            NodeState::Recovering => "recovering",
            NodeState::Active => "active",
            NodeState::Leaving => "leaving",
            NodeState::Left => "left",
        }
    }
}

impl fmt::Display for NodeState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for NodeState {
    type Err = ();

    fn from_str(text: &str) -> Result<Self, ()> {
        match text {
            "joining" => Ok(NodeState::Joining),
            "recovering" => Ok(NodeState::Recovering),
            "active" => Ok(NodeState::Active),
            "leaving" => Ok(NodeState::Leaving),
            "left" => Ok(NodeState::Left),
            _ => Err(()),
        }
    }
}

/// Where a node's listeners are, as other nodes and clients reach them. A node that does not
/// serve queries (`--mode ingest`) has no Postgres or Flight listener.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NodeAddresses {
    pub http: SocketAddr,
    pub postgres: Option<SocketAddr>,
    pub flight: Option<SocketAddr>,
}

/// How to run gossip.
#[derive(Clone)]
pub struct MembershipConfig {
    pub node_id: NodeId,
    /// The UDP address gossip advertises (a concrete IP: peers send to it).
    pub gossip_address: SocketAddr,
    /// The IP gossip binds, on the advertised port (e.g. `0.0.0.0` behind NAT); `None`: the
    /// advertised IP.
    pub listen_ip: Option<IpAddr>,
    /// `host:port` of nodes to gossip with first; the node's own address is skipped.
    pub seeds: Vec<String>,
    /// Nodes only gossip with nodes of the same cluster id.
    pub cluster_id: String,
    pub gossip_interval: Duration,
    /// Phi above which a silent node is taken for dead (chitchat's default is 8).
    pub phi_threshold: f64,
    pub addresses: NodeAddresses,
    pub state: NodeState,
    /// This node's shared MQTT subscription on an external broker, if it has one.
    pub mqtt_session: Option<MqttSession>,
    /// The key gossip packets are sealed with (from the cluster secret); `None`: plain,
    /// unauthenticated gossip.
    pub gossip_key: Option<[u8; 32]>,
}

impl std::fmt::Debug for MembershipConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MembershipConfig")
            .field("node_id", &self.node_id)
            .field("gossip_address", &self.gossip_address)
            .field("seeds", &self.seeds)
            .field("cluster_id", &self.cluster_id)
            .field("sealed", &self.gossip_key.is_some())
            .finish_non_exhaustive()
    }
}

impl MembershipConfig {
    /// Settings for a node at `gossip_address`, with a 500 ms gossip interval.
    pub fn new(node_id: NodeId, gossip_address: SocketAddr, addresses: NodeAddresses) -> Self {
        MembershipConfig {
            node_id,
            gossip_address,
            listen_ip: None,
            seeds: Vec::new(),
            cluster_id: "minitrue".to_string(),
            gossip_interval: Duration::from_millis(500),
            phi_threshold: 8.0,
            addresses,
            state: NodeState::Active,
            mqtt_session: None,
            gossip_key: None,
        }
    }
}

/// One node as this node sees it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Member {
    pub id: NodeId,
    /// When the node (this run of it) started, µs since 1970: a restart is a new generation.
    pub generation: u64,
    pub gossip_address: SocketAddr,
    /// `None` until the node's gossip keys have arrived.
    pub state: Option<NodeState>,
    pub addresses: Option<NodeAddresses>,
    /// The nodes it keeps hints for (missed writes and deletes not delivered yet).
    pub hints_for: Vec<NodeId>,
    /// Its shared MQTT subscription on an external broker, if it has one.
    pub mqtt_session: Option<MqttSession>,
    /// When this node first heard this generation of the member (µs since 1970): with a
    /// cluster secret, when the member proved it.
    pub admitted_micros: u64,
    /// The failure detector's view: false once the node has been silent too long.
    pub alive: bool,
    /// Whether this is the node itself.
    pub local: bool,
}

impl Member {
    /// Alive with its keys known and not leaving: a node that can take requests and own
    /// ranges.
    pub fn is_serving(&self) -> bool {
        self.alive
            && self.addresses.is_some()
            && self.state.is_some_and(|s| !matches!(s, NodeState::Leaving | NodeState::Left))
    }
}

/// This node's membership: its gossip task and its view of the others.
pub struct Membership {
    handle: ChitchatHandle,
    local: ChitchatId,
    /// Bumped on every change of the live set or of a live node's keys.
    changes: watch::Receiver<BTreeMap<ChitchatId, GossipState>>,
    /// When each generation of each node was first heard of.
    admitted: Mutex<BTreeMap<(String, u64), u64>>,
    /// What sealed gossip counted; `None` for plain gossip.
    counters: Option<Arc<GossipCounters>>,
}

impl Membership {
    /// Starts gossiping. Returns once the UDP socket is bound; joining the others happens in
    /// the background (see [`Membership::members`]).
    pub async fn start(config: MembershipConfig) -> Result<Membership, MembershipError> {
        let address = config.gossip_address;
        if address.ip().is_unspecified() || address.port() == 0 {
            return Err(MembershipError::Unadvertisable(address));
        }
        let generation = micros_since_epoch();
        let local = ChitchatId::new(config.node_id.as_str(), generation, address);
        let chitchat_config = ChitchatConfig {
            chitchat_id: local.clone(),
            cluster_id: config.cluster_id.clone(),
            gossip_interval: config.gossip_interval,
            listen_addr: SocketAddr::new(config.listen_ip.unwrap_or(address.ip()), address.port()),
            seed_nodes: config.seeds.clone(),
            failure_detector_config: FailureDetectorConfig {
                phi_threshold: config.phi_threshold,
                sampling_window_size: 1000,
                // A node silent for longer than this is not sampled: the interval is an outage.
                max_interval: config.gossip_interval * 20,
                // Start from the interval we gossip at, so a fresh cluster detects failures as
                // fast as an old one.
                initial_interval: config.gossip_interval,
                // A dead node's keys are kept this long (it is shown as dead meanwhile).
                dead_node_grace_period: Duration::from_secs(3600),
            },
            marked_for_deletion_grace_period: Duration::from_secs(3600),
            catchup_callback: None,
            extra_liveness_predicate: None,
            protocol_version: chitchat::ProtocolVersion::V0,
        };
        let mut keys = vec![
            (KEY_STATE.to_string(), config.state.as_str().to_string()),
            (KEY_HTTP.to_string(), config.addresses.http.to_string()),
        ];
        if let Some(session) = &config.mqtt_session {
            let text = serde_json::to_string(session).unwrap_or_default();
            keys.push((KEY_MQTT_SESSION.to_string(), text));
        }
        for (key, address) in
            [(KEY_POSTGRES, config.addresses.postgres), (KEY_FLIGHT, config.addresses.flight)]
        {
            if let Some(address) = address {
                keys.push((key.to_string(), address.to_string()));
            }
        }
        let (transport, counters): (Box<dyn Transport>, _) = match config.gossip_key {
            Some(key) => {
                let counters = Arc::new(GossipCounters::default());
                (Box::new(SealedUdpTransport::new(key, counters.clone())), Some(counters))
            }
            None => (Box::new(UdpTransport), None),
        };
        let handle = spawn_chitchat(chitchat_config, keys, transport.as_ref())
            .await
            .map_err(|error| MembershipError::Start { address, reason: format!("{error:#}") })?;
        let changes = handle.chitchat().lock().await.live_nodes_watcher();
        Ok(Membership { handle, local, changes, admitted: Mutex::new(BTreeMap::new()), counters })
    }

    /// Whether gossip is sealed with a cluster secret.
    pub fn sealed(&self) -> bool {
        self.counters.is_some()
    }

    /// Gossip's counters (sealed gossip only), for the node's metrics registry.
    pub fn metrics(&self) -> impl Fn(&mut Vec<Metric>) + Send + Sync {
        let counters = self.counters.clone();
        move |out: &mut Vec<Metric>| {
            out.push(Metric::gauge(
                "minitrue_gossip_sealed",
                "1 when gossip is sealed with the cluster secret, 0 when it is plain (--insecure-cluster)",
                if counters.is_some() { 1.0 } else { 0.0 },
            ));
            if let Some(counters) = &counters {
                counters.collect(out);
            }
        }
    }

    pub fn node_id(&self) -> NodeId {
        NodeId::new(&*self.local.node_id)
    }

    /// Every node this node has heard of, alive or not, by node id (the newest generation of
    /// each), itself included.
    pub async fn members(&self) -> Vec<Member> {
        let chitchat = self.handle.chitchat();
        let chitchat = chitchat.lock().await;
        let live: std::collections::HashSet<&ChitchatId> = chitchat.live_nodes().collect();
        let mut newest: BTreeMap<&str, Member> = BTreeMap::new();
        let mut admitted = self.admitted.lock();
        let mut heard = std::collections::HashSet::new();
        let now_micros = micros_since_epoch();
        for (id, state) in chitchat.node_states() {
            let key = (id.node_id.to_string(), id.generation_id);
            let admitted_micros = *admitted.entry(key.clone()).or_insert(now_micros);
            heard.insert(key);
            let member = Member {
                id: NodeId::new(&*id.node_id),
                generation: id.generation_id,
                gossip_address: id.gossip_advertise_addr,
                state: state.get(KEY_STATE).and_then(|s| s.parse().ok()),
                addresses: addresses_of(state),
                hints_for: hints_for_of(state),
                mqtt_session: state
                    .get(KEY_MQTT_SESSION)
                    .and_then(|text| serde_json::from_str(text).ok()),
                admitted_micros,
                alive: live.contains(id),
                local: *id == self.local,
            };
            match newest.get(&*id.node_id) {
                Some(known) if known.generation >= member.generation => {}
                _ => {
                    newest.insert(&id.node_id, member);
                }
            }
        }
        // Generations chitchat has forgotten are forgotten here too.
        admitted.retain(|key, _| heard.contains(key));
        newest.into_values().collect()
    }

    /// Announces a new state of this node to the cluster.
    pub async fn set_state(&self, state: NodeState) {
        self.local_keys().set_state(state).await;
    }

    /// A handle that announces this node's state and hints, usable after the membership
    /// itself moved elsewhere.
    pub fn local_keys(&self) -> LocalKeys {
        LocalKeys { chitchat: self.handle.chitchat() }
    }

    /// A receiver of change notices: each resolves at the next change of the live set or of
    /// a live node's keys (at most once per gossip interval).
    pub fn changes(&self) -> MembershipChanges {
        MembershipChanges(self.changes.clone())
    }

    /// Stops gossiping. The others take this node for dead after the failure timeout; call
    /// [`Membership::set_state`] with `Leaving` first for an orderly exit.
    pub async fn stop(self) {
        if let Err(error) = self.handle.shutdown().await {
            tracing::warn!(%error, "gossip did not stop cleanly");
        }
    }
}

/// Announces what other nodes must know of this one: its state and the nodes it keeps
/// hints for. Cheap to clone.
#[derive(Clone)]
pub struct LocalKeys {
    chitchat: std::sync::Arc<tokio::sync::Mutex<chitchat::Chitchat>>,
}

impl LocalKeys {
    pub async fn set_state(&self, state: NodeState) {
        self.chitchat.lock().await.self_node_state().set(KEY_STATE, state.as_str());
    }

    /// Announces the nodes this node keeps hints for (sorted, no duplicates).
    pub async fn set_hints_for(&self, nodes: &[NodeId]) {
        let ids: Vec<&str> = nodes.iter().map(NodeId::as_str).collect();
        let text = serde_json::to_string(&ids).unwrap_or_else(|_| "[]".to_string());
        self.chitchat.lock().await.self_node_state().set(KEY_HINTS_FOR, text);
    }
}

/// Notices of membership changes (see [`Membership::changes`]).
pub struct MembershipChanges(watch::Receiver<BTreeMap<ChitchatId, GossipState>>);

impl MembershipChanges {
    /// Resolves at the next change; never, once gossip has stopped.
    pub async fn next(&mut self) {
        if self.0.changed().await.is_err() {
            std::future::pending::<()>().await;
        }
    }
}

/// Now, in µs since 1970 (a generation, an admission time).
fn micros_since_epoch() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|since| since.as_micros() as u64).unwrap_or(0)
}

/// The addresses a node published; `None` until its HTTP address (always published) arrives.
fn addresses_of(state: &GossipState) -> Option<NodeAddresses> {
    let optional = |key| state.get(key).and_then(|text| text.parse().ok());
    Some(NodeAddresses {
        http: state.get(KEY_HTTP)?.parse().ok()?,
        postgres: optional(KEY_POSTGRES),
        flight: optional(KEY_FLIGHT),
    })
}

/// The nodes a node announced hints for; none when it announced nothing readable.
fn hints_for_of(state: &GossipState) -> Vec<NodeId> {
    state
        .get(KEY_HINTS_FOR)
        .and_then(|text| serde_json::from_str::<Vec<String>>(text).ok())
        .map(|ids| ids.into_iter().map(NodeId::new).collect())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Instant;

    fn free_udp_port() -> SocketAddr {
        let socket = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind");
        socket.local_addr().expect("address")
    }

    fn config(name: &str, gossip: SocketAddr, seeds: &[SocketAddr]) -> MembershipConfig {
        let port = gossip.port();
        let mut config = MembershipConfig::new(
            NodeId::new(name),
            gossip,
            NodeAddresses {
                http: SocketAddr::from(([127, 0, 0, 1], port.wrapping_add(1))),
                postgres: Some(SocketAddr::from(([127, 0, 0, 1], port.wrapping_add(2)))),
                flight: Some(SocketAddr::from(([127, 0, 0, 1], port.wrapping_add(3)))),
            },
        );
        config.seeds = seeds.iter().map(ToString::to_string).collect();
        config.gossip_interval = Duration::from_millis(100);
        config
    }

    async fn wait_for(
        membership: &Membership,
        what: &str,
        done: impl Fn(&[Member]) -> bool,
    ) -> Vec<Member> {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let members = membership.members().await;
            if done(&members) {
                return members;
            }
            assert!(Instant::now() < deadline, "{what}: {members:#?}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn nodes_find_each_other_see_addresses_and_notice_a_failure() {
        let (a, b, c) = (free_udp_port(), free_udp_port(), free_udp_port());
        let first = Membership::start(config("node1", a, &[])).await.expect("starts");
        let second = Membership::start(config("node2", b, &[a])).await.expect("starts");
        let third = Membership::start(config("node3", c, &[a])).await.expect("starts");
        for membership in [&first, &second, &third] {
            let members = wait_for(membership, "all three serving", |members| {
                members.len() == 3 && members.iter().all(Member::is_serving)
            })
            .await;
            let names: Vec<&str> = members.iter().map(|m| m.id.as_str()).collect();
            assert_eq!(names, ["node1", "node2", "node3"]);
            assert_eq!(members.iter().filter(|m| m.local).count(), 1);
        }
        let seen = second.members().await;
        let third_seen = seen.iter().find(|m| m.id.as_str() == "node3").expect("node3");
        assert_eq!(third_seen.gossip_address, c);
        assert_eq!(
            third_seen.addresses.as_ref().and_then(|a| a.flight).map(|a| a.port()),
            Some(c.port().wrapping_add(3))
        );

        third.set_state(NodeState::Leaving).await;
        wait_for(&first, "node3 leaving", |members| {
            members.iter().any(|m| m.id.as_str() == "node3" && m.state == Some(NodeState::Leaving))
        })
        .await;

        third.stop().await;
        let members = wait_for(&first, "node3 dead", |members| {
            members.iter().any(|m| m.id.as_str() == "node3" && !m.alive)
        })
        .await;
        assert!(members.iter().filter(|m| m.id.as_str() != "node3").all(|m| m.alive));

        // node3 comes back (a new generation) and is alive again, seen once.
        let third = Membership::start(config("node3", c, &[a])).await.expect("restarts");
        wait_for(&first, "node3 back", |members| {
            members.len() == 3 && members.iter().all(Member::is_serving)
        })
        .await;
        third.stop().await;
        second.stop().await;
        first.stop().await;
    }

    fn refused(membership: &Membership, reason: &str) -> u64 {
        let mut metrics = Vec::new();
        membership.metrics()(&mut metrics);
        metrics
            .iter()
            .filter(|m| m.name == "minitrue_gossip_packets_refused_total")
            .filter(|m| m.labels_text().contains(reason))
            .map(|m| m.value as u64)
            .sum()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn only_nodes_holding_the_key_are_heard() {
        let (a, b, c) = (free_udp_port(), free_udp_port(), free_udp_port());
        let sealed = |name: &str, at, seeds: &[SocketAddr], key: u8| {
            let mut config = config(name, at, seeds);
            config.gossip_key = Some([key; 32]);
            config
        };
        let first = Membership::start(sealed("node1", a, &[], 1)).await.expect("starts");
        let second = Membership::start(sealed("node2", b, &[a], 1)).await.expect("starts");
        let stranger = Membership::start(sealed("node3", c, &[a, b], 2)).await.expect("starts");
        for membership in [&first, &second] {
            let members = wait_for(membership, "node1 and node2 serving", |members| {
                members.len() == 2 && members.iter().all(Member::is_serving)
            })
            .await;
            assert!(members.iter().all(|m| m.admitted_micros > 0));
        }
        wait_for(&first, "the stranger's packets refused", |_| refused(&first, "forged") > 3).await;
        tokio::time::sleep(Duration::from_millis(500)).await;
        for membership in [&first, &second] {
            let names: Vec<String> =
                membership.members().await.iter().map(|m| m.id.to_string()).collect();
            assert_eq!(names, ["node1", "node2"], "the stranger is never a member");
        }
        let alone = stranger.members().await;
        assert_eq!(alone.len(), 1, "the stranger hears nobody: {alone:#?}");
        // Refused packets get no answer, so the stranger hears nothing at all.
        assert!(first.sealed() && refused(&stranger, "forged") == 0);
        stranger.stop().await;
        second.stop().await;
        first.stop().await;
    }

    #[tokio::test]
    async fn refuses_an_address_peers_cannot_reach() {
        let result = Membership::start(config("node1", "0.0.0.0:9000".parse().unwrap(), &[])).await;
        assert!(matches!(result, Err(MembershipError::Unadvertisable(_))));
    }
}
