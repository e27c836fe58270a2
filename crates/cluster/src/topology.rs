//! Topology: the members and the ring as this node sees them right now.
//!
//! A background task turns gossip into a [`Topology`] snapshot whenever membership changes
//! and once a second (so a node's time down is noticed without a gossip event). Readers take
//! the latest snapshot without waiting ([`TopologyWatch::current`]); the write path and the
//! query planner read it for every request.
//!
//! Which nodes are in the ring: nodes whose state is `recovering`, `active` or `leaving` and
//! that have a Flight door (replicas arrive through it), alive or briefly dead. A dead node
//! stays in the ring (its writes become hints) until it has been
//! dead for [`TopologyConfig::gone_after`]; then it is treated as gone and its ranges pass to
//! the next nodes on the ring, which re-replicate them. A `joining` node is not in the ring
//! until it turns `active`; a node that has `left` (decommissioned) is out of it at once.
//!
//! While a node is `leaving`, the topology also carries the ring as it will be once that
//! node is gone ([`Topology::next_ring`]): writes go to the owners on both rings, so the
//! nodes taking its ranges over miss nothing written while the ranges move.

use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use std::net::SocketAddr;

use tokio::sync::watch;

use crate::membership::{Member, Membership, NodeAddresses, NodeState};
use crate::ring::{NodeId, Ring};

/// How the ring is formed from the members.
#[derive(Debug, Clone)]
pub struct TopologyConfig {
    pub virtual_nodes: u32,
    /// Owners per series (primary + replicas), capped at the ring's node count.
    pub replication_factor: usize,
    /// How long a node may be dead before its ranges pass to the others.
    pub gone_after: Duration,
    /// How long a starting node listens to gossip before it routes writes or repairs: long
    /// enough to hear of every member (see [`TopologyWatch::settled`]).
    pub settle: Duration,
    /// Whether the node was given seeds: then it is settled only once it knows another
    /// member with its keys (or after ten settles, when it must be alone).
    pub expect_peers: bool,
}

impl Default for TopologyConfig {
    fn default() -> Self {
        TopologyConfig {
            virtual_nodes: crate::ring::DEFAULT_VIRTUAL_NODES,
            replication_factor: 3,
            gone_after: Duration::from_secs(15 * 60),
            settle: Duration::ZERO,
            expect_peers: false,
        }
    }
}

/// One member with what the topology adds: how long it has been down, whether it is in the
/// ring.
#[derive(Debug, Clone)]
pub struct MemberStatus {
    pub member: Member,
    /// How long this node has seen it dead; `None` while alive.
    pub down_for: Option<Duration>,
    /// Whether its ranges are counted in the ring.
    pub in_ring: bool,
}

/// A snapshot of the cluster as this node sees it.
#[derive(Debug, Clone)]
pub struct Topology {
    pub local: NodeId,
    /// Every known node, sorted by id, this node included.
    pub members: Vec<MemberStatus>,
    pub ring: Arc<Ring>,
    /// While some node of the ring is leaving: the ring without the leaving nodes, which
    /// takes effect once they have left.
    pub next_ring: Option<Arc<Ring>>,
}

impl Topology {
    /// The topology of a node that has heard of no one yet: itself, owning everything.
    pub fn single(local: NodeId, config: &TopologyConfig) -> Topology {
        let ring = Ring::new([local.clone()], config.virtual_nodes, config.replication_factor);
        Topology { local, members: Vec::new(), ring: Arc::new(ring), next_ring: None }
    }

    /// Where a write of a series goes: its owners on the ring and, while a node is leaving,
    /// also its owners on [`Topology::next_ring`], so the nodes taking the leaving node's
    /// ranges over have every point written during the move.
    pub fn write_owners(&self, device_id: &str, metric: &str) -> Cow<'_, [NodeId]> {
        let owners = self.ring.series_owners(device_id, metric);
        let Some(next) = &self.next_ring else { return Cow::Borrowed(owners) };
        let mut all = owners.to_vec();
        for owner in next.series_owners(device_id, metric) {
            if !all.contains(owner) {
                all.push(owner.clone());
            }
        }
        Cow::Owned(all)
    }

    /// The first node of the ring announced `leaving` (being decommissioned), if any.
    pub fn leaving_node(&self) -> Option<&NodeId> {
        self.members
            .iter()
            .find(|status| status.in_ring && status.member.state == Some(NodeState::Leaving))
            .map(|status| &status.member.id)
    }

    /// Whether `node` is announced in `state`.
    pub fn is_in_state(&self, node: &NodeId, state: NodeState) -> bool {
        self.member(node).is_some_and(|status| status.member.state == Some(state))
    }

    pub fn member(&self, node: &NodeId) -> Option<&MemberStatus> {
        self.members.iter().find(|status| &status.member.id == node)
    }

    /// Where to reach `node`'s Flight door (replica writes, hints), if it is alive and has one.
    pub fn live_flight_address(&self, node: &NodeId) -> Option<SocketAddr> {
        let status = self.member(node).filter(|status| status.member.alive)?;
        status.member.addresses.as_ref()?.flight
    }

    /// Whether `node` is known and alive.
    pub fn is_alive(&self, node: &NodeId) -> bool {
        self.member(node).is_some_and(|status| status.member.alive)
    }

    /// The MQTT sessions of dead nodes that this node should drain: those
    /// of every dead node with a shared subscription when this node is the live node with
    /// the smallest id, none otherwise (one drainer each).
    ///
    /// With a shared MQTT subscription some brokers (Mosquitto) keep handing messages to the
    /// persistent session of a member that is down; they would wait there until it returns.
    /// The drainer connects under the dead node's client id, takes that session over and
    /// routes what it holds, until the node is back.
    pub fn sessions_to_take_over(&self) -> Vec<(NodeId, crate::membership::MqttSession)> {
        // A leaving node stops ingesting soon: the drainer is the smallest that stays.
        let smallest_live = self
            .members
            .iter()
            .find(|s| {
                s.member.alive
                    && !matches!(s.member.state, Some(NodeState::Leaving | NodeState::Left))
            })
            .map(|s| &s.member.id);
        if smallest_live != Some(&self.local) {
            return Vec::new();
        }
        // A node that left unsubscribed first: draining its session would subscribe it again.
        self.members
            .iter()
            .filter(|s| !s.member.alive && s.member.state != Some(NodeState::Left))
            .filter_map(|s| Some((s.member.id.clone(), s.member.mqtt_session.clone()?)))
            .collect()
    }

    /// Whether `node` announced that it is still recovering (see [`NodeState::Recovering`]).
    pub fn is_recovering(&self, node: &NodeId) -> bool {
        self.is_in_state(node, NodeState::Recovering)
    }

    /// Whether some live node (this one included) announces hints waiting for `node`.
    pub fn has_hints_waiting_for(&self, node: &NodeId) -> bool {
        self.members
            .iter()
            .any(|status| status.member.alive && status.member.hints_for.contains(node))
    }
}

/// Turns members into a topology, remembering since when each dead node has been dead.
struct TopologyBuilder {
    config: TopologyConfig,
    local: NodeId,
    dead_since: HashMap<NodeId, Instant>,
    /// The ring's node set of the last snapshot, so an unchanged set keeps its ring.
    last_ring: Arc<Ring>,
    /// Likewise the last ring without the leaving nodes.
    last_next_ring: Option<Arc<Ring>>,
}

impl TopologyBuilder {
    fn build(&mut self, members: Vec<Member>, now: Instant) -> Topology {
        self.dead_since.retain(|node, _| members.iter().any(|m| &m.id == node && !m.alive));
        let mut statuses = Vec::with_capacity(members.len());
        for member in members {
            let down_for = if member.alive {
                None
            } else {
                let since = *self.dead_since.entry(member.id.clone()).or_insert(now);
                Some(now.saturating_duration_since(since))
            };
            let owns_ranges = matches!(
                member.state,
                Some(NodeState::Recovering | NodeState::Active | NodeState::Leaving)
            );
            // Replicas arrive over Flight: a node without a Flight door (`--mode ingest`)
            // routes writes but holds no ranges.
            let reachable = member.addresses.as_ref().is_some_and(|a| a.flight.is_some());
            let gone = down_for.is_some_and(|down| down >= self.config.gone_after);
            let in_ring = owns_ranges && reachable && !gone;
            statuses.push(MemberStatus { member, down_for, in_ring });
        }
        if !statuses.iter().any(|s| s.in_ring) {
            // Nobody to hold data: this node keeps what it is sent (a node alone, or one that
            // has not heard from the others yet), unless it is joining.
            for status in statuses.iter_mut().filter(|s| s.member.local) {
                status.in_ring = status.member.state != Some(NodeState::Joining);
            }
        }
        let ring_nodes: Vec<NodeId> =
            statuses.iter().filter(|s| s.in_ring).map(|s| s.member.id.clone()).collect();
        let new_ring = |nodes: Vec<NodeId>| {
            Arc::new(Ring::new(nodes, self.config.virtual_nodes, self.config.replication_factor))
        };
        if ring_nodes.as_slice() != self.last_ring.nodes() {
            self.last_ring = new_ring(ring_nodes);
        }
        let staying: Vec<NodeId> = statuses
            .iter()
            .filter(|s| s.in_ring && s.member.state != Some(NodeState::Leaving))
            .map(|s| s.member.id.clone())
            .collect();
        self.last_next_ring = match staying.len() == self.last_ring.nodes().len() {
            true => None,
            false => match self.last_next_ring.take() {
                Some(ring) if ring.nodes() == staying.as_slice() => Some(ring),
                _ => Some(new_ring(staying)),
            },
        };
        Topology {
            local: self.local.clone(),
            members: statuses,
            ring: self.last_ring.clone(),
            next_ring: self.last_next_ring.clone(),
        }
    }
}

/// The latest [`Topology`], kept current by a background task.
#[derive(Clone)]
pub struct TopologyWatch {
    latest: watch::Receiver<Arc<Topology>>,
    settled: watch::Receiver<bool>,
}

impl TopologyWatch {
    /// Starts the task that follows `membership`. The first snapshot is taken before this
    /// returns. The task ends when `membership` is stopped through the returned handle.
    pub async fn follow(
        membership: Membership,
        config: TopologyConfig,
    ) -> (TopologyWatch, Cluster) {
        let local = membership.node_id();
        let mut builder = TopologyBuilder {
            last_ring: Topology::single(local.clone(), &config).ring,
            last_next_ring: None,
            config,
            local,
            dead_since: HashMap::new(),
        };
        let started = Instant::now();
        let (settle, expect_peers) = (builder.config.settle, builder.config.expect_peers);
        let is_settled = move |topology: &Topology, now: Instant| {
            let waited = now.saturating_duration_since(started);
            let keys_known = topology.members.iter().all(|s| {
                !s.member.alive || (s.member.state.is_some() && s.member.addresses.is_some())
            });
            let heard_others = !expect_peers || topology.members.len() >= 2;
            waited >= settle && keys_known && (heard_others || waited >= settle * 10)
        };
        let first = builder.build(membership.members().await, Instant::now());
        let (mark_settled, settled) = watch::channel(is_settled(&first, Instant::now()));
        let (publish, latest) = watch::channel(Arc::new(first));
        let mut changes = membership.changes();
        let membership = Arc::new(membership);
        let (stop_tx, mut stop_rx) = watch::channel(false);
        let task = tokio::spawn({
            let membership = membership.clone();
            async move {
                let mut tick = tokio::time::interval(Duration::from_millis(250));
                tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                loop {
                    tokio::select! {
                        _ = changes.next() => {}
                        _ = tick.tick() => {}
                        _ = stop_rx.changed() => return,
                    }
                    let now = Instant::now();
                    let topology = builder.build(membership.members().await, now);
                    if !*mark_settled.borrow() && is_settled(&topology, now) {
                        mark_settled.send_replace(true);
                    }
                    publish.send_replace(Arc::new(topology));
                }
            }
        });
        (TopologyWatch { latest, settled }, Cluster { membership, stop: stop_tx, task })
    }

    /// Resolves once this node has listened to gossip long enough to know the members and
    /// their keys ([`TopologyConfig::settle`]); at once afterwards. Writes are routed and
    /// repairs run only then: a node that had heard of one peer of three would place writes
    /// and compare ranges on a ring the others do not have.
    pub async fn settled(&self) {
        let mut settled = self.settled.clone();
        let _ = settled.wait_for(|settled| *settled).await;
    }

    /// The latest snapshot (cheap: a pointer copy).
    pub fn current(&self) -> Arc<Topology> {
        self.latest.borrow().clone()
    }

    /// Waits until a snapshot satisfies `done`, or `timeout` passes; returns the last one.
    pub async fn wait_for(
        &self,
        timeout: Duration,
        mut done: impl FnMut(&Topology) -> bool,
    ) -> Arc<Topology> {
        let mut latest = self.latest.clone();
        let _ = tokio::time::timeout(timeout, latest.wait_for(|t| done(t))).await;
        self.current()
    }
}

/// The running membership behind a [`TopologyWatch`]: change this node's state, or stop.
pub struct Cluster {
    membership: Arc<Membership>,
    stop: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

impl Cluster {
    /// Announces a new state of this node (e.g. `leaving` before a decommission).
    pub async fn set_state(&self, state: NodeState) {
        self.membership.set_state(state).await;
    }

    /// What announces this node's state and hints to the others.
    pub fn local_keys(&self) -> crate::membership::LocalKeys {
        self.membership.local_keys()
    }

    /// Stops following gossip and stops gossiping.
    pub async fn stop(self) {
        let _ = self.stop.send(true);
        let _ = self.task.await;
        match Arc::try_unwrap(self.membership) {
            Ok(membership) => membership.stop().await,
            Err(_) => {
                tracing::warn!("membership still shared at stop; gossip ends with the process")
            }
        }
    }
}

/// `system.nodes` and `system.ring` read the latest snapshot.
impl minitrue_query::ClusterInfo for TopologyWatch {
    fn nodes(&self) -> Vec<minitrue_query::NodeInfo> {
        let topology = self.current();
        topology
            .members
            .iter()
            .map(|status| {
                let member = &status.member;
                let (primary_share, replica_share) = topology.ring.share(&member.id);
                let address = |pick: fn(&NodeAddresses) -> Option<SocketAddr>| {
                    member.addresses.as_ref().and_then(pick).map(|a| a.to_string())
                };
                minitrue_query::NodeInfo {
                    node_id: member.id.as_str().to_string(),
                    state: member.state.map(|s| s.as_str().to_string()),
                    alive: member.alive,
                    local: member.local,
                    in_ring: status.in_ring,
                    down_seconds: status.down_for.map(|d| d.as_secs_f64()),
                    started_micros: i64::try_from(member.generation).unwrap_or(i64::MAX),
                    admitted_micros: i64::try_from(member.admitted_micros).unwrap_or(i64::MAX),
                    gossip_address: member.gossip_address.to_string(),
                    http_address: address(|a| Some(a.http)),
                    postgres_address: address(|a| a.postgres),
                    flight_address: address(|a| a.flight),
                    primary_share,
                    replica_share,
                }
            })
            .collect()
    }

    fn ring(&self) -> Vec<minitrue_query::RangeInfo> {
        self.current()
            .ring
            .ranges()
            .map(|range| minitrue_query::RangeInfo {
                start: range.start,
                end: range.end,
                owners: range.owners.iter().map(|node| node.as_str().to_string()).collect(),
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn member(name: &str, state: NodeState, alive: bool, local: bool) -> Member {
        let address: SocketAddr = "127.0.0.1:1".parse().unwrap();
        Member {
            id: NodeId::new(name),
            generation: 1,
            gossip_address: address,
            state: Some(state),
            addresses: Some(NodeAddresses {
                http: address,
                postgres: Some(address),
                flight: Some(address),
            }),
            hints_for: Vec::new(),
            mqtt_session: None,
            admitted_micros: 0,
            alive,
            local,
        }
    }

    fn builder(gone_after: Duration) -> TopologyBuilder {
        let config = TopologyConfig { gone_after, ..TopologyConfig::default() };
        TopologyBuilder {
            last_ring: Topology::single(NodeId::new("a"), &config).ring,
            last_next_ring: None,
            config,
            local: NodeId::new("a"),
            dead_since: HashMap::new(),
        }
    }

    fn ring_nodes(topology: &Topology) -> Vec<&str> {
        topology.ring.nodes().iter().map(NodeId::as_str).collect()
    }

    #[test]
    fn dead_nodes_stay_in_the_ring_until_gone() {
        let mut builder = builder(Duration::from_secs(60));
        let start = Instant::now();
        let members = |c_alive| {
            vec![
                member("a", NodeState::Active, true, true),
                member("b", NodeState::Active, true, false),
                member("c", NodeState::Active, c_alive, false),
            ]
        };
        let all_up = builder.build(members(true), start);
        assert_eq!(ring_nodes(&all_up), ["a", "b", "c"]);

        let briefly_down = builder.build(members(false), start + Duration::from_secs(1));
        assert_eq!(ring_nodes(&briefly_down), ["a", "b", "c"], "down, not gone");
        assert!(Arc::ptr_eq(&all_up.ring, &briefly_down.ring), "the same ring is kept");
        let still_down = builder.build(members(false), start + Duration::from_secs(30));
        assert_eq!(
            still_down.member(&NodeId::new("c")).unwrap().down_for,
            Some(Duration::from_secs(29))
        );

        let gone = builder.build(members(false), start + Duration::from_secs(62));
        assert_eq!(ring_nodes(&gone), ["a", "b"], "gone after a minute down");

        let back = builder.build(members(true), start + Duration::from_secs(63));
        assert_eq!(ring_nodes(&back), ["a", "b", "c"]);
        let down_again = builder.build(members(false), start + Duration::from_secs(64));
        assert_eq!(ring_nodes(&down_again), ["a", "b", "c"], "the down time starts over");
    }

    #[test]
    fn nodes_without_a_flight_door_route_but_hold_nothing() {
        let mut builder = builder(Duration::from_secs(60));
        let mut router = member("a", NodeState::Active, true, true);
        router.addresses.as_mut().unwrap().flight = None;
        let alone = builder.build(vec![router.clone()], Instant::now());
        assert_eq!(ring_nodes(&alone), ["a"], "alone, it keeps what it is sent");
        let in_cluster = builder
            .build(vec![router, member("b", NodeState::Active, true, false)], Instant::now());
        assert_eq!(ring_nodes(&in_cluster), ["b"]);
    }

    #[test]
    fn the_smallest_live_node_drains_the_dead_nodes_sessions() {
        let mut builder = builder(Duration::from_secs(60));
        builder.local = NodeId::new("b");
        let subscribing = |mut member: Member| {
            member.mqtt_session = Some(crate::membership::MqttSession {
                client_id: format!("mqtt-{}", member.id),
                broker: "mqtt://broker:1883".into(),
            });
            member
        };
        let members = |a_alive| {
            vec![
                subscribing(member("a", NodeState::Active, a_alive, false)),
                subscribing(member("b", NodeState::Active, true, true)),
                subscribing(member("c", NodeState::Active, false, false)),
                // Down, but it never subscribed (a query-only node): nothing to drain.
                member("d", NodeState::Active, false, false),
            ]
        };
        let topology = builder.build(members(true), Instant::now());
        assert!(topology.sessions_to_take_over().is_empty(), "a drains, not b");
        let topology = builder.build(members(false), Instant::now());
        let sessions = topology.sessions_to_take_over();
        let named: Vec<(&str, &str)> =
            sessions.iter().map(|(node, s)| (node.as_str(), s.client_id.as_str())).collect();
        assert_eq!(named, [("a", "mqtt-a"), ("c", "mqtt-c")]);
    }

    #[test]
    fn joining_nodes_own_nothing_leaving_ones_still_do() {
        let mut builder = builder(Duration::from_secs(60));
        let topology = builder.build(
            vec![
                member("a", NodeState::Active, true, true),
                member("b", NodeState::Joining, true, false),
                member("c", NodeState::Leaving, true, false),
                member("d", NodeState::Left, true, false),
            ],
            Instant::now(),
        );
        assert_eq!(ring_nodes(&topology), ["a", "c"]);
        assert!(topology.is_alive(&NodeId::new("b")));
        let next = topology.next_ring.as_ref().expect("c is leaving");
        assert_eq!(next.nodes(), [NodeId::new("a")]);
    }

    #[test]
    fn while_a_node_leaves_writes_also_reach_the_owners_after_it() {
        let mut builder = builder(Duration::from_secs(60));
        builder.config.replication_factor = 2;
        let members = |c: NodeState| {
            vec![
                member("a", NodeState::Active, true, true),
                member("b", NodeState::Active, true, false),
                member("c", c, true, false),
                member("d", NodeState::Active, true, false),
            ]
        };
        let before = builder.build(members(NodeState::Active), Instant::now());
        assert!(before.next_ring.is_none());
        let leaving = builder.build(members(NodeState::Leaving), Instant::now());
        assert!(Arc::ptr_eq(&before.ring, &leaving.ring), "c still owns its ranges");
        let after = builder.build(members(NodeState::Left), Instant::now());
        assert_eq!(ring_nodes(&after), ["a", "b", "d"]);
        assert!(after.next_ring.is_none());
        let c = NodeId::new("c");
        let mut moved = 0;
        for device in 0..200 {
            let device = format!("sensor_{device}");
            let owners = leaving.write_owners(&device, "temperature");
            let now = leaving.ring.series_owners(&device, "temperature");
            let later = after.ring.series_owners(&device, "temperature");
            // Both owner sets, nothing else.
            assert!(now.iter().chain(later).all(|o| owners.contains(o)));
            assert!(owners.iter().all(|o| now.contains(o) || later.contains(o)));
            assert_eq!(owners.len(), if now.contains(&c) { 3 } else { 2 });
            moved += usize::from(now.contains(&c));
        }
        assert!(moved > 0);
    }
}
