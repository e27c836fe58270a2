//! Writes in a cluster: every point goes to the owners of its series (the ring's replicas of
//! `device_id:metric`), in one batch per owner, all owners at once. The write succeeds when
//! every point is durable on at least `quorum` of its owners (capped at the number of
//! owners); only then may the caller acknowledge it (the MQTT door acks the publisher then).
//!
//! An owner that is down, or whose call fails, misses the write: the points are kept for it
//! as a hint on this node ([`HintStore`]) and delivered when it is back. Hints do not count
//! toward the quorum. Deletes go to every node holding ranges; one that is down gets the
//! delete as a hint too, in order with its write hints. The nodes this node keeps hints for
//! are announced in gossip, so that no repair runs before they are delivered. Hints for a
//! node that has been gone (out of the ring) for longer than `max_hint_age` are dropped:
//! its ranges have passed to other nodes, which repair brings up to date.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use minitrue_common::{Metric, MetricsSource};
use minitrue_common::{Point, SeriesKey, TokenSet};
use minitrue_storage::{DeleteRequest, Engine, StorageError, Tags};
use parking_lot::Mutex;
use tokio::sync::watch;

use crate::hints::{HintError, HintStore, Missed};
use crate::membership::LocalKeys;
use crate::peer::PeerLink;
use crate::peer::{PeerError, Peers, ReplicaWrite};
use crate::ring::NodeId;
use crate::topology::{Topology, TopologyWatch};

/// Why a write did not reach its quorum.
#[derive(Debug, thiserror::Error)]
pub enum ReplicationError {
    #[error(
        "write quorum not reached: {acked} of {needed} owners stored some points ({failures})"
    )]
    QuorumNotReached { acked: usize, needed: usize, failures: String },
    #[error("this node is not in the ring yet (joining): it cannot place writes")]
    NoOwners,
    #[error(
        "the delete did not reach every node holding ranges ({failures}); it was applied on \
         the others and can be retried"
    )]
    DeleteIncomplete { failures: String },
    #[error("the delete cannot be counted: {0}")]
    DeleteUncountable(String),
    #[error(
        "{0} is leaving the cluster and its ranges are moving: deletes wait until it has left \
         (a delete racing the move could let moved points survive); retry afterwards"
    )]
    NodeLeaving(NodeId),
    #[error(transparent)]
    Storage(#[from] StorageError),
}

/// How writes are replicated.
#[derive(Debug, Clone)]
pub struct ReplicationConfig {
    /// Owners that must have a point durably before the write succeeds (capped at the
    /// series' owner count).
    pub write_quorum: usize,
    /// How long a call to a peer may take.
    pub peer_timeout: Duration,
    /// How often waiting hints are offered to owners that are back.
    pub hint_interval: Duration,
    /// Hints for a node that is out of the ring (gone) are dropped once this old.
    pub max_hint_age: Duration,
    /// TLS for calls to peers (when the cluster's Flight doors speak TLS).
    pub peer_link: PeerLink,
}

impl Default for ReplicationConfig {
    fn default() -> Self {
        ReplicationConfig {
            write_quorum: 2,
            peer_timeout: Duration::from_secs(10),
            hint_interval: Duration::from_secs(1),
            max_hint_age: Duration::from_secs(15 * 60),
            peer_link: PeerLink::default(),
        }
    }
}

#[derive(Default)]
struct Counters {
    points_routed: AtomicU64,
    replica_batches_sent: AtomicU64,
    replica_batches_failed: AtomicU64,
    replica_batches_received: AtomicU64,
    quorum_failures: AtomicU64,
    hints_stored: AtomicU64,
    hints_delivered: AtomicU64,
    hints_damaged: AtomicU64,
    hints_expired: AtomicU64,
    delete_hints_stored: AtomicU64,
}

/// The write path of a node in a cluster.
pub struct Replicator {
    topology: TopologyWatch,
    engine: Arc<Engine>,
    peers: Peers,
    hints: Arc<HintStore>,
    config: ReplicationConfig,
    counters: Arc<Counters>,
    /// Announces the nodes hints are kept for; `None` outside a running cluster (tests).
    announce: Option<LocalKeys>,
    /// What was last announced (or is being announced), sorted.
    announced: Mutex<Vec<NodeId>>,
}

/// The points one owner gets from a write.
struct OwnerShare {
    node: NodeId,
    /// Indices into the write's points.
    indices: Vec<usize>,
}

impl Replicator {
    pub fn new(
        topology: TopologyWatch,
        engine: Arc<Engine>,
        hints: Arc<HintStore>,
        config: ReplicationConfig,
        announce: Option<LocalKeys>,
    ) -> Arc<Replicator> {
        Arc::new(Replicator {
            topology,
            engine,
            peers: Peers::new(config.peer_timeout, config.peer_link.clone()),
            hints,
            config,
            counters: Arc::new(Counters::default()),
            announce,
            announced: Mutex::new(Vec::new()),
        })
    }

    /// Writes `points` to their owners; resolves once each point is durable on its quorum.
    /// On error some owners may hold some points: the caller retries the whole write
    /// (rewriting a point is harmless).
    pub async fn write(
        &self,
        points: &[Point],
        series_tags: &[(SeriesKey, Tags)],
    ) -> Result<(), ReplicationError> {
        if points.is_empty() && series_tags.is_empty() {
            return Ok(());
        }
        // A node that has not heard the cluster yet would place points on a ring of itself.
        self.topology.settled().await;
        let topology = self.topology.current();
        let ring = &topology.ring;
        if ring.is_empty() {
            return Err(ReplicationError::NoOwners);
        }
        if ring.nodes().len() == 1
            && ring.nodes()[0] == topology.local
            && topology.next_ring.is_none()
        {
            // A cluster of one: every point is this node's alone.
            self.counters.points_routed.fetch_add(points.len() as u64, Ordering::Relaxed);
            return Ok(self.write_local(points, series_tags).await?);
        }
        let mut shares: BTreeMap<NodeId, OwnerShare> = BTreeMap::new();
        let mut needed = Vec::with_capacity(points.len());
        let mut owners_of_last: Option<(&SeriesKey, Cow<'_, [NodeId]>)> = None;
        for (index, point) in points.iter().enumerate() {
            if owners_of_last.as_ref().is_none_or(|(series, _)| **series != point.series) {
                let owners = topology.write_owners(point.series.device_id(), point.series.metric());
                owners_of_last = Some((&point.series, owners));
            }
            let owners = owners_of_last.as_ref().map(|(_, owners)| &**owners).unwrap_or_default();
            needed.push(self.config.write_quorum.clamp(1, owners.len()));
            for owner in owners {
                shares
                    .entry(owner.clone())
                    .or_insert_with(|| OwnerShare { node: owner.clone(), indices: Vec::new() })
                    .indices
                    .push(index);
            }
        }
        // A series whose tags changed goes to all its owners, points or not.
        for (key, _) in series_tags {
            for owner in topology.write_owners(key.device_id(), key.metric()).iter() {
                shares
                    .entry(owner.clone())
                    .or_insert_with(|| OwnerShare { node: owner.clone(), indices: Vec::new() });
            }
        }
        self.counters.points_routed.fetch_add(points.len() as u64, Ordering::Relaxed);
        // Tags go to every owner of their series.
        let tags_for = |node: &NodeId| -> Vec<(SeriesKey, Tags)> {
            series_tags
                .iter()
                .filter(|(key, _)| {
                    topology.write_owners(key.device_id(), key.metric()).contains(node)
                })
                .cloned()
                .collect()
        };
        let snapshot = &topology;
        let calls = shares.into_values().map(|share| {
            let tags = tags_for(&share.node);
            async move {
                let subset: Vec<Point> = share.indices.iter().map(|&i| points[i].clone()).collect();
                let result = self.write_owner(snapshot, &share.node, &subset, &tags).await;
                (share, subset, tags, result)
            }
        });
        let outcomes = futures::future::join_all(calls).await;

        let mut acks = vec![0usize; points.len()];
        let mut failures = Vec::new();
        for (share, subset, tags, result) in outcomes {
            match result {
                Ok(()) => share.indices.iter().for_each(|&i| acks[i] += 1),
                Err(error) => {
                    failures.push(format!("{}: {error}", share.node));
                    if share.node != topology.local {
                        let missed = Missed::Write { points: subset, series_tags: tags };
                        if let Err(error) = self.keep_hint(&share.node, missed).await {
                            tracing::error!(%error, node = %share.node, "a hint could not be kept");
                        }
                    }
                }
            }
        }
        if let Some((index, acked)) =
            acks.iter().enumerate().find(|(i, acked)| **acked < needed[*i])
        {
            self.counters.quorum_failures.fetch_add(1, Ordering::Relaxed);
            return Err(ReplicationError::QuorumNotReached {
                acked: *acked,
                needed: needed[index],
                failures: failures.join("; "),
            });
        }
        Ok(())
    }

    /// Keeps only what this node owns of `points` (and of the tags), writing it locally; the
    /// seed's ingestion, where every node receives every message and the other owners take
    /// their own copies. Returns the points kept.
    pub async fn write_owned(
        &self,
        points: &[Point],
        series_tags: &[(SeriesKey, Tags)],
    ) -> Result<usize, ReplicationError> {
        self.topology.settled().await;
        let topology = self.topology.current();
        let owned = |key: &SeriesKey| {
            topology.write_owners(key.device_id(), key.metric()).contains(&topology.local)
        };
        let kept: Vec<Point> = points.iter().filter(|p| owned(&p.series)).cloned().collect();
        let tags: Vec<(SeriesKey, Tags)> =
            series_tags.iter().filter(|(key, _)| owned(key)).cloned().collect();
        self.counters.points_routed.fetch_add(points.len() as u64, Ordering::Relaxed);
        if !kept.is_empty() || !tags.is_empty() {
            self.write_local(&kept, &tags).await?;
        }
        Ok(kept.len())
    }

    async fn write_owner(
        &self,
        topology: &Topology,
        node: &NodeId,
        points: &[Point],
        series_tags: &[(SeriesKey, Tags)],
    ) -> Result<(), String> {
        if *node == topology.local {
            return self.write_local(points, series_tags).await.map_err(|e| e.to_string());
        }
        let Some(address) = topology.live_flight_address(node) else {
            return Err("down".to_string());
        };
        self.counters.replica_batches_sent.fetch_add(1, Ordering::Relaxed);
        let result = self.peers.write_replica(address, points, series_tags).await;
        if result.is_err() {
            self.counters.replica_batches_failed.fetch_add(1, Ordering::Relaxed);
        }
        result.map_err(|e: PeerError| e.to_string())
    }

    async fn write_local(
        &self,
        points: &[Point],
        series_tags: &[(SeriesKey, Tags)],
    ) -> Result<(), StorageError> {
        if !series_tags.is_empty() {
            self.engine.set_series_tags(series_tags).await?;
        }
        self.engine.write(points).await.map(|_| ())
    }

    /// Keeps what `node` missed as a hint on disk, counted and announced in gossip; an error
    /// when it could not be kept.
    async fn keep_hint(&self, node: &NodeId, missed: Missed) -> Result<(), String> {
        let hints = self.hints.clone();
        let target = node.clone();
        let counter = match missed {
            Missed::Write { .. } => &self.counters.hints_stored,
            Missed::Delete(_) => &self.counters.delete_hints_stored,
        };
        let stored = tokio::task::spawn_blocking(move || match &missed {
            Missed::Write { points, series_tags } => hints.store(&target, points, series_tags),
            Missed::Delete(requests) => hints.store_delete(&target, requests),
        })
        .await;
        match stored {
            Ok(Ok(_)) => {
                counter.fetch_add(1, Ordering::Relaxed);
                self.announce_hint_for(node).await;
                Ok(())
            }
            Ok(Err(error)) => Err(error.to_string()),
            Err(error) => Err(error.to_string()),
        }
    }

    /// Makes sure gossip says this node keeps hints for `node`.
    async fn announce_hint_for(&self, node: &NodeId) {
        let mut targets = self.announced.lock().clone();
        if !targets.contains(node) {
            targets.push(node.clone());
            self.announce_hint_targets(targets).await;
        }
    }

    /// Announces exactly `targets` (the nodes hints are waiting for) when that changed.
    async fn announce_hint_targets(&self, mut targets: Vec<NodeId>) {
        targets.sort();
        {
            let mut announced = self.announced.lock();
            if *announced == targets {
                return;
            }
            *announced = targets.clone();
        }
        if let Some(keys) = &self.announce {
            keys.set_hints_for(&targets).await;
        }
    }

    /// Applies deletes on every node holding ranges (a delete has no owners to pick: a
    /// request without a metric covers series anywhere on the ring). A node that is down, or
    /// whose call fails, gets the delete as a hint, after the writes it already missed. Each
    /// point is counted once: every range by the one owner a query would read it from, so a
    /// range without a live owner makes the delete fail before anything is applied. Returns
    /// the points deleted.
    pub async fn delete(&self, requests: &[DeleteRequest]) -> Result<u64, ReplicationError> {
        self.topology.settled().await;
        let topology = self.topology.current();
        if let Some(leaving) = topology.leaving_node() {
            return Err(ReplicationError::NodeLeaving(leaving.clone()));
        }
        let counting = crate::reads::assign(&topology, &TokenSet::all(), &[])
            .map_err(|error| ReplicationError::DeleteUncountable(error.message))?;
        let counted_by = |node: &NodeId| {
            counting
                .iter()
                .find(|share| share.node == node.as_str())
                .map_or_else(TokenSet::empty, |share| share.tokens.clone())
        };
        let calls = topology.ring.nodes().iter().map(|node| {
            let topology = &topology;
            let count = counted_by(node);
            async move {
                if *node == topology.local {
                    let result = self.apply_delete(requests, &count).await;
                    return (node, result.map(Some).map_err(|e| e.to_string()));
                }
                let reached = match topology.live_flight_address(node) {
                    Some(address) => self
                        .peers
                        .delete_replica(address, requests, &count)
                        .await
                        .map_err(|error| error.to_string()),
                    None => Err("down".to_string()),
                };
                let result = match reached {
                    Ok(deleted) => Ok(Some(deleted)),
                    Err(why) => {
                        if !count.is_empty() {
                            tracing::warn!(node = %node, error = %why, "a node counting a delete \
                                failed; its points are deleted from the hint but not counted");
                        }
                        self.keep_hint(node, Missed::Delete(requests.to_vec()))
                            .await
                            .map(|()| None)
                            .map_err(|error| format!("{why}, and no hint could be kept: {error}"))
                    }
                };
                (node, result)
            }
        });
        let mut deleted = 0;
        let mut failures = Vec::new();
        for (node, result) in futures::future::join_all(calls).await {
            match result {
                Ok(count) => deleted += count.unwrap_or(0),
                Err(error) => failures.push(format!("{node}: {error}")),
            }
        }
        if !failures.is_empty() {
            return Err(ReplicationError::DeleteIncomplete { failures: failures.join("; ") });
        }
        Ok(deleted)
    }

    /// A delete from a peer (or this node's own share of one): applied here; returns the
    /// points it removed from the series in `counted` (the ranges this node counts for).
    pub async fn apply_delete(
        &self,
        requests: &[DeleteRequest],
        counted: &TokenSet,
    ) -> Result<u64, StorageError> {
        minitrue_query::delete_counted(&self.engine, requests, Some(counted)).await
    }

    /// A replica write from a peer: stored here, not routed further.
    pub async fn apply_replica(&self, write: ReplicaWrite) -> Result<(), StorageError> {
        self.counters.replica_batches_received.fetch_add(1, Ordering::Relaxed);
        self.write_local(&write.points, &write.series_tags).await
    }

    /// Delivers waiting hints to owners that are alive, every `hint_interval`, until `stop`
    /// turns true.
    pub fn spawn_hint_delivery(
        self: &Arc<Self>,
        mut stop: watch::Receiver<bool>,
    ) -> tokio::task::JoinHandle<()> {
        let replicator = self.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(replicator.config.hint_interval);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            while !*stop.borrow() {
                tokio::select! {
                    _ = tick.tick() => replicator.deliver_hints().await,
                    changed = stop.changed() => if changed.is_err() { return },
                }
            }
        })
    }

    /// One round of hint delivery: for each owner that is alive, its hints in order, stopping
    /// at the first that fails. Hints for a node gone from the ring are dropped once older than
    /// `max_hint_age`. Then announces which nodes still have hints waiting.
    pub async fn deliver_hints(&self) {
        let hints = self.hints.clone();
        let pending = match tokio::task::spawn_blocking(move || hints.pending()).await {
            Ok(Ok(pending)) => pending,
            Ok(Err(error)) => {
                tracing::warn!(%error, "hints cannot be listed");
                return;
            }
            Err(_) => return,
        };
        let mut still_waiting = Vec::new();
        for (node, paths) in pending {
            let topology = self.topology.current();
            // A node that left (decommissioned) will not be back: what it missed went to the
            // nodes that took its ranges over as well.
            let decommissioned = topology.is_in_state(&node, crate::membership::NodeState::Left);
            if decommissioned {
                if self.expire_hints(&node, paths, Duration::ZERO).await > 0 {
                    still_waiting.push(node);
                }
                continue;
            }
            let Some(address) = topology.live_flight_address(&node) else {
                let gone = !topology.ring.nodes().contains(&node);
                let left = match gone {
                    true => self.expire_hints(&node, paths, self.config.max_hint_age).await,
                    false => paths.len(),
                };
                if left > 0 {
                    still_waiting.push(node);
                }
                continue;
            };
            if !self.deliver_to(&node, address, paths).await {
                still_waiting.push(node);
            }
        }
        self.announce_hint_targets(still_waiting).await;
    }

    /// Delivers `paths` to `node` in order; true when all of them went.
    async fn deliver_to(
        &self,
        node: &NodeId,
        address: std::net::SocketAddr,
        paths: Vec<std::path::PathBuf>,
    ) -> bool {
        for path in paths {
            let read_path = path.clone();
            let hint = match tokio::task::spawn_blocking(move || HintStore::read(&read_path)).await
            {
                Ok(Ok(hint)) => hint,
                Ok(Err(error @ HintError::Damaged { .. })) => {
                    // A damaged hint cannot be delivered; anti-entropy repairs what it held.
                    tracing::error!(%error, "dropping a damaged hint");
                    self.counters.hints_damaged.fetch_add(1, Ordering::Relaxed);
                    let _ = tokio::task::spawn_blocking(move || HintStore::remove(&path)).await;
                    continue;
                }
                _ => return false,
            };
            let delivered = match &hint.missed {
                Missed::Write { points, series_tags } => {
                    self.peers.write_replica(address, points, series_tags).await
                }
                Missed::Delete(requests) => self
                    .peers
                    .delete_replica(address, requests, &TokenSet::empty())
                    .await
                    .map(|_| ()),
            };
            match delivered {
                Ok(()) => {
                    self.counters.hints_delivered.fetch_add(1, Ordering::Relaxed);
                    let removed =
                        tokio::task::spawn_blocking(move || HintStore::remove(&path)).await;
                    if let Ok(Err(error)) = removed {
                        tracing::warn!(%error, "a delivered hint could not be removed");
                    }
                }
                Err(error) => {
                    tracing::debug!(%error, node = %node, "hint delivery will be retried");
                    return false;
                }
            }
        }
        true
    }

    /// Drops the hints of a gone node that are older than `max_age`; returns how many are
    /// left.
    async fn expire_hints(
        &self,
        node: &NodeId,
        paths: Vec<std::path::PathBuf>,
        max_age: Duration,
    ) -> usize {
        let expired = tokio::task::spawn_blocking(move || {
            let mut expired = 0;
            let total = paths.len();
            for path in paths {
                if HintStore::age(&path).is_some_and(|age| age >= max_age)
                    && HintStore::remove(&path).is_ok()
                {
                    expired += 1;
                }
            }
            (expired, total)
        })
        .await;
        let Ok((expired, total)) = expired else { return 0 };
        if expired > 0 {
            tracing::warn!(node = %node, expired, "dropped hints for a node gone from the ring");
            self.counters.hints_expired.fetch_add(expired as u64, Ordering::Relaxed);
        }
        total - expired
    }

    /// How many hints this node keeps for others, not delivered yet.
    pub async fn hints_waiting(&self) -> Result<usize, String> {
        let hints = self.hints.clone();
        match tokio::task::spawn_blocking(move || hints.pending()).await {
            Ok(Ok(pending)) => Ok(pending.values().map(Vec::len).sum()),
            Ok(Err(error)) => Err(error.to_string()),
            Err(error) => Err(error.to_string()),
        }
    }

    /// The replication counters, for `/metrics` and `system.metrics`.
    pub fn metrics(&self) -> Arc<dyn MetricsSource> {
        let counters = self.counters.clone();
        let topology = self.topology.clone();
        Arc::new(move |out: &mut Vec<Metric>| {
            let now = topology.current();
            let alive = now.members.iter().filter(|s| s.member.alive).count();
            out.push(Metric::gauge(
                "minitrue_cluster_ring_nodes",
                "Nodes holding ranges in this node's ring",
                now.ring.nodes().len() as f64,
            ));
            out.push(Metric::gauge(
                "minitrue_cluster_members_alive",
                "Nodes this node sees alive, itself included",
                alive as f64,
            ));
            let c = &counters;
            let load = |value: &AtomicU64| value.load(Ordering::Relaxed);
            out.extend([
                Metric::counter(
                    "minitrue_cluster_points_routed_total",
                    "Points written through the ring",
                    load(&c.points_routed),
                ),
                Metric::counter(
                    "minitrue_cluster_replica_batches_sent_total",
                    "Replica batches sent to peers",
                    load(&c.replica_batches_sent),
                ),
                Metric::counter(
                    "minitrue_cluster_replica_batches_failed_total",
                    "Replica batches a peer did not take",
                    load(&c.replica_batches_failed),
                ),
                Metric::counter(
                    "minitrue_cluster_replica_batches_received_total",
                    "Replica batches received from peers",
                    load(&c.replica_batches_received),
                ),
                Metric::counter(
                    "minitrue_cluster_quorum_failures_total",
                    "Writes that did not reach their write quorum",
                    load(&c.quorum_failures),
                ),
                Metric::counter(
                    "minitrue_cluster_hints_stored_total",
                    "Missed writes kept as hints",
                    load(&c.hints_stored),
                ),
                Metric::counter(
                    "minitrue_cluster_hints_delivered_total",
                    "Hints delivered to their owner",
                    load(&c.hints_delivered),
                ),
                Metric::counter(
                    "minitrue_cluster_hints_damaged_total",
                    "Hints dropped because they could not be read",
                    load(&c.hints_damaged),
                ),
                Metric::counter(
                    "minitrue_cluster_hints_expired_total",
                    "Hints dropped because their node was gone from the ring too long",
                    load(&c.hints_expired),
                ),
                Metric::counter(
                    "minitrue_cluster_delete_hints_stored_total",
                    "Missed deletes kept as hints",
                    load(&c.delete_hints_stored),
                ),
            ]);
        })
    }
}

/// `INSERT INTO readings` in a cluster writes through the replicator.
#[async_trait::async_trait]
impl minitrue_query::PointWriter for Replicator {
    async fn write(&self, points: &[Point]) -> Result<(), minitrue_query::ClusterError> {
        Replicator::write(self, points, &[]).await.map_err(cluster_error)
    }

    async fn delete(
        &self,
        requests: &[DeleteRequest],
    ) -> Result<u64, minitrue_query::ClusterError> {
        Replicator::delete(self, requests).await.map_err(cluster_error)
    }
}

fn cluster_error(error: ReplicationError) -> minitrue_query::ClusterError {
    minitrue_query::ClusterError { kind: error.kind(), message: error.to_string() }
}

impl ReplicationError {
    /// How the doors report it: a missed quorum is the cluster being unavailable.
    pub fn kind(&self) -> minitrue_common::ErrorKind {
        match self {
            ReplicationError::QuorumNotReached { .. }
            | ReplicationError::NoOwners
            | ReplicationError::DeleteIncomplete { .. }
            | ReplicationError::DeleteUncountable(_)
            | ReplicationError::NodeLeaving(_) => minitrue_common::ErrorKind::Unavailable,
            ReplicationError::Storage(error) => error.kind(),
        }
    }
}
