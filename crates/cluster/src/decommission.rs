//! Decommission: a node hands its ranges to the nodes that own them after it and leaves the
//! ring, while reads stay exact and no acknowledged write is lost.
//!
//! 1. **Announce.** The node turns `leaving`. It stays in the ring and keeps answering for
//!    its ranges; every node that hears it also sends writes for those ranges to their
//!    owners on the ring without it ([`crate::Topology::next_ring`]). It waits two settles,
//!    so that no node still routes writes past the new owners.
//! 2. **Stream.** For each range it owns, it gives every node that becomes an owner what that
//!    node lacks: the repair's digest comparison, push-only, over Flight
//!    ([`Repairer::push_ranges`]), a few ranges at a time, with progress. If the ring changes
//!    meanwhile (a node dies or is gone), the plan is made again.
//! 3. **Drain.** It stops taking MQTT messages (unsubscribes and finishes what the broker had
//!    sent), delivers the hints it keeps for others, and streams once more: what reached it
//!    during the first pass.
//! 4. **Leave.** It turns `left`: out of every ring at once, the new owners answer for its
//!    ranges. It keeps answering queries planned on the old ring for two more settles; then
//!    [`Decommission::finished`] resolves and the node stops.
//!
//! Only one node moves at a time: a decommission starts only when every node of the ring is
//! alive and active; two nodes that start leaving before hearing of each other notice it
//! after announcing, and the one with the greater id turns active again. Deletes are refused while a node is leaving (a delete racing the stream
//! of the same points could let them survive on the new owner).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use futures::future::BoxFuture;
use minitrue_common::{Metric, MetricsSource};
use serde::Serialize;
use tokio::sync::watch;

use crate::membership::{LocalKeys, NodeState};
use crate::repair::{RangeBounds, Repairer};
use crate::replicate::Replicator;
use crate::ring::{NodeId, Ring};
use crate::topology::{Topology, TopologyWatch};

/// Ranges pushed in one step (one digest comparison with one new owner).
const RANGES_PER_STEP: usize = 16;

/// Where a decommission is.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    /// Not decommissioning.
    #[default]
    Idle,
    /// `leaving` announced; waiting for every node to route writes to the next owners too.
    Announcing,
    /// Streaming its ranges to their next owners.
    Streaming,
    /// Ingest stopped; delivering its hints and streaming what arrived meanwhile.
    Draining,
    /// Out of the ring; the node stops shortly.
    Left,
}

/// What a decommission has done so far (`GET /api/v1/cluster/decommission`).
#[derive(Debug, Clone, Default, Serialize)]
pub struct Progress {
    pub phase: Phase,
    /// Ranges of the current pass to hand over (a range with two new owners counts twice).
    pub ranges_total: u64,
    pub ranges_done: u64,
    /// Points sent to the next owners, over all passes.
    pub points_sent: u64,
    /// Streaming passes started (the first, the one after draining, and any made again
    /// because the ring changed).
    pub passes: u64,
    /// Next owner → ranges it takes over in the current pass.
    pub receivers: BTreeMap<String, u64>,
    /// What it waits for, or the last error it retries after.
    pub waiting_for: Option<String>,
    /// Why the last decommission was called off (another node started leaving at the same
    /// moment); the node is active again.
    pub cancelled: Option<String>,
    /// Milliseconds since 1970.
    pub started_ms: Option<u64>,
    pub left_ms: Option<u64>,
}

/// Why a decommission cannot start.
#[derive(Debug, thiserror::Error)]
pub enum DecommissionError {
    #[error("this node is already {0:?}")]
    AlreadyStarted(Phase),
    #[error("a decommission cannot start now: {0}")]
    NotNow(String),
}

/// What stops this node's MQTT ingest for good and resolves once the broker has nothing more
/// for it (nothing to do on a node that does not ingest).
pub type StopIngest = Box<dyn Fn() -> BoxFuture<'static, ()> + Send + Sync>;

/// Runs this node's decommission (see the module documentation).
pub struct Decommission {
    topology: TopologyWatch,
    repairer: Arc<Repairer>,
    replicator: Arc<Replicator>,
    keys: LocalKeys,
    settle: Duration,
    retry: Duration,
    stop_ingest: StopIngest,
    progress: watch::Sender<Progress>,
    /// Turns true once the node has left and lingered: time to stop.
    finished: watch::Sender<bool>,
}

impl Decommission {
    pub fn new(
        topology: TopologyWatch,
        repairer: Arc<Repairer>,
        replicator: Arc<Replicator>,
        keys: LocalKeys,
        settle: Duration,
        stop_ingest: StopIngest,
    ) -> Arc<Decommission> {
        Arc::new(Decommission {
            topology,
            repairer,
            replicator,
            keys,
            settle,
            retry: Duration::from_millis(500),
            stop_ingest,
            progress: watch::channel(Progress::default()).0,
            finished: watch::channel(false).0,
        })
    }

    pub fn progress(&self) -> Progress {
        self.progress.borrow().clone()
    }

    /// Resolves once this node has left the cluster and may stop.
    pub async fn finished(&self) {
        let mut finished = self.finished.subscribe();
        let _ = finished.wait_for(|done| *done).await;
    }

    /// Starts decommissioning this node in the background; returns the progress so far.
    pub async fn start(self: &Arc<Self>) -> Result<Progress, DecommissionError> {
        let phase = self.progress.borrow().phase;
        if phase != Phase::Idle {
            return Err(DecommissionError::AlreadyStarted(phase));
        }
        self.topology.settled().await;
        let topology = self.topology.current();
        refuse_unless_ready(&topology).map_err(DecommissionError::NotNow)?;
        let mut started = false;
        self.progress.send_if_modified(|progress| {
            started = progress.phase == Phase::Idle;
            if started {
                *progress = Progress {
                    phase: Phase::Announcing,
                    started_ms: now_ms(),
                    ..Progress::default()
                };
            }
            started
        });
        if !started {
            return Err(DecommissionError::AlreadyStarted(self.progress.borrow().phase));
        }
        tracing::info!("decommission: this node is leaving the cluster");
        let decommission = self.clone();
        tokio::spawn(async move { decommission.run().await });
        Ok(self.progress())
    }

    async fn run(&self) {
        self.keys.set_state(NodeState::Leaving).await;
        self.set_waiting(Some("every node to route writes to the next owners too".into()));
        // Until every node has heard `leaving`, some may still write only to the current
        // owners; the second pass below also catches what they wrote meanwhile.
        tokio::time::sleep(self.settle * 2).await;
        let topology = self.topology.current();
        if let Some(other) = topology.leaving_node().filter(|node| **node != topology.local) {
            let why = format!("{other} started leaving at the same time; one node moves at a time");
            tracing::warn!("decommission called off: {why}");
            self.keys.set_state(NodeState::Active).await;
            self.progress.send_replace(Progress { cancelled: Some(why), ..Progress::default() });
            return;
        }
        self.set_phase(Phase::Streaming);
        self.stream_all().await;

        self.set_phase(Phase::Draining);
        self.set_waiting(Some("the MQTT broker's last messages".into()));
        (self.stop_ingest)().await;
        loop {
            match self.replicator.hints_waiting().await {
                Ok(0) => break,
                Ok(waiting) => self.set_waiting(Some(format!("{waiting} hints to deliver"))),
                Err(error) => self.set_waiting(Some(format!("listing hints: {error}"))),
            }
            tokio::time::sleep(self.retry).await;
        }
        self.stream_all().await;

        self.keys.set_state(NodeState::Left).await;
        self.progress.send_modify(|progress| {
            progress.phase = Phase::Left;
            progress.waiting_for = None;
            progress.left_ms = now_ms();
        });
        tracing::info!(
            points_sent = self.progress.borrow().points_sent,
            "decommission: this node has left the cluster"
        );
        // Queries planned on the old ring may still ask this node for a moment.
        tokio::time::sleep(self.settle * 2).await;
        self.finished.send_replace(true);
    }

    /// Streams every range this node owns to its next owners, planning again whenever the
    /// ring changes before the pass is through.
    async fn stream_all(&self) {
        while !self.stream_pass().await {}
    }

    /// One pass over the current plan; false when the ring changed and the plan must be made
    /// again.
    async fn stream_pass(&self) -> bool {
        let topology = self.topology.current();
        let plan = match &topology.next_ring {
            Some(next) => hand_over_plan(&topology.ring, next, &topology.local),
            // Not heard its own `leaving` yet.
            None => {
                tokio::time::sleep(self.retry).await;
                return false;
            }
        };
        self.progress.send_modify(|progress| {
            progress.passes += 1;
            progress.ranges_total = plan.values().map(|ranges| ranges.len() as u64).sum();
            progress.ranges_done = 0;
            progress.receivers =
                plan.iter().map(|(node, r)| (node.as_str().to_string(), r.len() as u64)).collect();
        });
        for (receiver, ranges) in &plan {
            for step in ranges.chunks(RANGES_PER_STEP) {
                loop {
                    let now = self.topology.current();
                    let same_rings = Arc::ptr_eq(&now.ring, &topology.ring)
                        && match (&now.next_ring, &topology.next_ring) {
                            (Some(a), Some(b)) => Arc::ptr_eq(a, b),
                            _ => false,
                        };
                    if !same_rings {
                        tracing::info!("decommission: the ring changed; planning again");
                        return false;
                    }
                    match self.repairer.push_ranges(receiver, step.to_vec()).await {
                        Ok(report) => {
                            self.progress.send_modify(|progress| {
                                progress.ranges_done += step.len() as u64;
                                progress.points_sent += report.points_sent;
                                progress.waiting_for = None;
                            });
                            break;
                        }
                        Err(error) => {
                            tracing::debug!(%error, receiver = %receiver, "decommission step retried");
                            self.set_waiting(Some(format!("{receiver}: {error}")));
                            tokio::time::sleep(self.retry).await;
                        }
                    }
                }
            }
        }
        true
    }

    fn set_phase(&self, phase: Phase) {
        self.progress.send_modify(|progress| {
            progress.phase = phase;
            progress.waiting_for = None;
        });
    }

    fn set_waiting(&self, what: Option<String>) {
        self.progress.send_modify(|progress| progress.waiting_for = what);
    }

    /// The decommission figures, for `/metrics` and `system.metrics`.
    pub fn metrics(self: &Arc<Self>) -> Arc<dyn MetricsSource> {
        let progress = self.progress.subscribe();
        Arc::new(move |out: &mut Vec<Metric>| {
            let progress = progress.borrow();
            out.extend([
                Metric::gauge(
                    "minitrue_cluster_decommission_leaving",
                    "1 while this node is leaving the cluster, 2 once it has left",
                    match progress.phase {
                        Phase::Idle => 0.0,
                        Phase::Left => 2.0,
                        _ => 1.0,
                    },
                ),
                Metric::gauge(
                    "minitrue_cluster_decommission_ranges",
                    "Ranges to hand over in the current decommission pass",
                    progress.ranges_total as f64,
                ),
                Metric::gauge(
                    "minitrue_cluster_decommission_ranges_done",
                    "Ranges handed over in the current decommission pass",
                    progress.ranges_done as f64,
                ),
                Metric::counter(
                    "minitrue_cluster_decommission_points_sent_total",
                    "Points sent to the next owners of this node's ranges",
                    progress.points_sent,
                ),
            ]);
        })
    }
}

/// Why this node may not start leaving now, if it may not.
fn refuse_unless_ready(topology: &Topology) -> Result<(), String> {
    if !topology.ring.nodes().contains(&topology.local) {
        return Err("this node holds no ranges".into());
    }
    if topology.ring.nodes().len() < 2 {
        return Err("it is the only node of the ring: its data would have nowhere to go".into());
    }
    for status in topology.members.iter().filter(|status| status.in_ring) {
        let member = &status.member;
        if !member.alive {
            return Err(format!(
                "{} is down; bring it back, or wait until it is gone from the ring",
                member.id
            ));
        }
        if member.state != Some(NodeState::Active) {
            let state = member.state.map_or("unknown", NodeState::as_str);
            return Err(format!("{} is {state}; one node moves at a time", member.id));
        }
    }
    Ok(())
}

/// For each node that becomes an owner once `local` is gone from `ring` (`next` is the ring
/// without it), the ranges of `ring` it takes over from `local`.
pub fn hand_over_plan(
    ring: &Ring,
    next: &Ring,
    local: &NodeId,
) -> BTreeMap<NodeId, Vec<RangeBounds>> {
    let mut plan: BTreeMap<NodeId, Vec<RangeBounds>> = BTreeMap::new();
    for range in ring.ranges().filter(|range| range.owners.contains(local)) {
        // Ranges of `next` are unions of ranges of `ring`, so one token names the new owners
        // of the whole range.
        for owner in next.owners(range.end) {
            if !range.owners.contains(owner) {
                plan.entry(owner.clone()).or_default().push((range.start, range.end));
            }
        }
    }
    plan
}

fn now_ms() -> Option<u64> {
    SystemTime::now().duration_since(UNIX_EPOCH).ok().map(|since| since.as_millis() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_leaving_nodes_ranges_go_each_to_the_one_node_that_becomes_an_owner() {
        let nodes = ["a", "b", "c", "d"].map(NodeId::new);
        let ring = Ring::new(nodes.clone(), 150, 2);
        let leaving = NodeId::new("c");
        let next = Ring::new(nodes.iter().filter(|n| **n != leaving).cloned(), 150, 2);
        let plan = hand_over_plan(&ring, &next, &leaving);
        assert!(!plan.contains_key(&leaving));
        let mut handed: Vec<RangeBounds> = plan.values().flatten().copied().collect();
        handed.sort();
        let mut owned: Vec<RangeBounds> = ring
            .ranges()
            .filter(|range| range.owners.contains(&leaving))
            .map(|range| (range.start, range.end))
            .collect();
        owned.sort();
        // With RF 2 each of c's ranges has exactly one new owner, never a current one.
        assert_eq!(handed, owned);
        for (receiver, ranges) in &plan {
            for &(_, end) in ranges {
                assert!(!ring.owners(end).contains(receiver));
                assert!(next.owners(end).contains(receiver));
            }
        }
        // Every other node takes some of them.
        assert_eq!(plan.len(), 3);
    }

    #[test]
    fn with_every_node_an_owner_nothing_moves() {
        let nodes = ["a", "b", "c"].map(NodeId::new);
        let ring = Ring::new(nodes.clone(), 150, 3);
        let next = Ring::new(nodes[..2].to_vec(), 150, 3);
        assert!(hand_over_plan(&ring, &next, &nodes[2]).is_empty());
    }
}
