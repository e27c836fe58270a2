//! Writes in a cluster: every point goes to the owners of its series (the ring's replicas of
//! `device_id:metric`), in one batch per owner, all owners at once. The write succeeds when
//! every point is durable on at least `quorum` of its owners (capped at the number of
//! owners); only then may the caller acknowledge it (the MQTT door acks the publisher then).
//!
//! An owner that is down, or whose call fails, misses the write: the points are kept for it
//! as a hint on this node ([`HintStore`]) and delivered when it is back. Hints do not count
//! toward the quorum.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use minitrue_common::{Metric, MetricsSource};
use minitrue_common::{Point, SeriesKey};
use minitrue_storage::{DeleteRequest, Engine, StorageError, Tags};
use tokio::sync::watch;

use crate::hints::{HintError, HintStore};
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
}

impl Default for ReplicationConfig {
    fn default() -> Self {
        ReplicationConfig {
            write_quorum: 2,
            peer_timeout: Duration::from_secs(10),
            hint_interval: Duration::from_secs(1),
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
}

/// The write path of a node in a cluster.
pub struct Replicator {
    topology: TopologyWatch,
    engine: Arc<Engine>,
    peers: Peers,
    hints: Arc<HintStore>,
    config: ReplicationConfig,
    counters: Arc<Counters>,
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
    ) -> Arc<Replicator> {
        Arc::new(Replicator {
            topology,
            engine,
            peers: Peers::new(config.peer_timeout),
            hints,
            config,
            counters: Arc::new(Counters::default()),
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
        let topology = self.topology.current();
        let ring = &topology.ring;
        if ring.is_empty() {
            return Err(ReplicationError::NoOwners);
        }
        if ring.nodes().len() == 1 && ring.nodes()[0] == topology.local {
            // A cluster of one: every point is this node's alone.
            self.counters.points_routed.fetch_add(points.len() as u64, Ordering::Relaxed);
            return Ok(self.write_local(points, series_tags).await?);
        }
        let mut shares: BTreeMap<NodeId, OwnerShare> = BTreeMap::new();
        let mut needed = Vec::with_capacity(points.len());
        let mut owners_of_last: Option<(&SeriesKey, &[NodeId])> = None;
        for (index, point) in points.iter().enumerate() {
            let owners = match owners_of_last {
                Some((series, owners)) if *series == point.series => owners,
                _ => {
                    let owners =
                        ring.series_owners(point.series.device_id(), point.series.metric());
                    owners_of_last = Some((&point.series, owners));
                    owners
                }
            };
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
            for owner in ring.series_owners(key.device_id(), key.metric()) {
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
                    ring.owns(node, crate::ring::series_token(key.device_id(), key.metric()))
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
                        self.keep_hint(&share.node, subset, tags).await;
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

    async fn keep_hint(&self, node: &NodeId, points: Vec<Point>, tags: Vec<(SeriesKey, Tags)>) {
        let hints = self.hints.clone();
        let target = node.clone();
        let stored =
            tokio::task::spawn_blocking(move || hints.store(&target, &points, &tags)).await;
        match stored {
            Ok(Ok(_)) => {
                self.counters.hints_stored.fetch_add(1, Ordering::Relaxed);
            }
            Ok(Err(error)) => tracing::error!(%error, node = %node, "a hint could not be kept"),
            Err(error) => tracing::error!(%error, node = %node, "a hint could not be kept"),
        }
    }

    /// Applies deletes on every node holding ranges (a delete has no owners to pick: a
    /// request without a metric covers series anywhere on the ring). Every such node must
    /// take it, otherwise the points would come back from a node that missed it: a node that
    /// is down or fails makes the delete fail, already applied elsewhere (deletes are
    /// idempotent, so it can be retried). Returns the points deleted, each counted by its
    /// series' primary owner.
    pub async fn delete(&self, requests: &[DeleteRequest]) -> Result<u64, ReplicationError> {
        let topology = self.topology.current();
        let calls = topology.ring.nodes().iter().map(|node| {
            let topology = &topology;
            async move {
                let result = if *node == topology.local {
                    self.apply_delete(requests).await.map_err(|e| e.to_string())
                } else {
                    match topology.live_flight_address(node) {
                        Some(address) => self
                            .peers
                            .delete_replica(address, requests)
                            .await
                            .map_err(|e| e.to_string()),
                        None => Err("down".to_string()),
                    }
                };
                (node, result)
            }
        });
        let mut deleted = 0;
        let mut failures = Vec::new();
        for (node, result) in futures::future::join_all(calls).await {
            match result {
                Ok(count) => deleted += count,
                Err(error) => failures.push(format!("{node}: {error}")),
            }
        }
        if !failures.is_empty() {
            return Err(ReplicationError::DeleteIncomplete { failures: failures.join("; ") });
        }
        Ok(deleted)
    }

    /// A delete from a peer (or this node's own share of one): applied here; returns the
    /// points of the series this node is the primary owner of.
    pub async fn apply_delete(&self, requests: &[DeleteRequest]) -> Result<u64, StorageError> {
        let topology = self.topology.current();
        let primary = topology.primary_tokens(&topology.local);
        minitrue_query::delete_counted(&self.engine, requests, Some(&primary)).await
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
    /// at the first that fails.
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
        for (node, paths) in pending {
            let Some(address) = self.topology.current().live_flight_address(&node) else {
                continue;
            };
            for path in paths {
                let read_path = path.clone();
                let hint = match tokio::task::spawn_blocking(move || HintStore::read(&read_path))
                    .await
                {
                    Ok(Ok(hint)) => hint,
                    Ok(Err(error @ HintError::Damaged { .. })) => {
                        // A damaged hint cannot be delivered; anti-entropy repairs what it held.
                        tracing::error!(%error, "dropping a damaged hint");
                        self.counters.hints_damaged.fetch_add(1, Ordering::Relaxed);
                        let _ = tokio::task::spawn_blocking(move || HintStore::remove(&path)).await;
                        continue;
                    }
                    _ => break,
                };
                match self.peers.write_replica(address, &hint.points, &hint.series_tags).await {
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
                        break;
                    }
                }
            }
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
            | ReplicationError::DeleteIncomplete { .. } => minitrue_common::ErrorKind::Unavailable,
            ReplicationError::Storage(error) => error.kind(),
        }
    }
}
