//! Distributed reads on the ring: which node answers for which range, and running plan
//! fragments on peers ([`minitrue_query::FragmentRunner`]).
//!
//! Each range of the ring is answered by exactly one of its owners, so no series is counted
//! twice: this node where it is an owner (its data costs no network), otherwise the first
//! owner in ring order that is alive, has a Flight door and was not excluded by the query
//! (one it already failed to reach). Owners still recovering are asked only where no active
//! owner is left. A range whose owners are all down fails the query.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use async_trait::async_trait;
use futures::{StreamExt, TryStreamExt};
use minitrue_common::{ErrorKind, Metric, MetricsSource, TokenSet};
use minitrue_query::{ClusterError, FragmentRunner, RemoteBatches, Share};

use crate::peer::{PeerLink, Peers};
use crate::ring::NodeId;
use crate::topology::{Topology, TopologyWatch};

/// Reads across the cluster, as this node sees it now.
pub struct ClusterReads {
    topology: TopologyWatch,
    peers: Peers,
    counters: Arc<ReadCounters>,
}

impl std::fmt::Debug for ClusterReads {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClusterReads").field("local", &self.topology.current().local).finish()
    }
}

#[derive(Debug, Default)]
struct ReadCounters {
    fragments_sent: AtomicU64,
    fragments_failed: AtomicU64,
    bytes_received: AtomicU64,
    rows_received: AtomicU64,
}

impl ClusterReads {
    /// Calls to peers give up connecting after `timeout` and go as `link` says.
    pub fn new(
        topology: TopologyWatch,
        timeout: std::time::Duration,
        link: PeerLink,
    ) -> ClusterReads {
        ClusterReads { topology, peers: Peers::new(timeout, link), counters: Arc::default() }
    }

    /// The read counters, for `/metrics` and `system.metrics`.
    pub fn metrics(&self) -> Arc<dyn MetricsSource> {
        let counters = self.counters.clone();
        Arc::new(move |out: &mut Vec<Metric>| {
            let load = |counter: &AtomicU64| counter.load(Ordering::Relaxed);
            out.push(Metric::counter(
                "minitrue_cluster_fragments_sent_total",
                "Query fragments sent to peers",
                load(&counters.fragments_sent),
            ));
            out.push(Metric::counter(
                "minitrue_cluster_fragments_failed_total",
                "Query fragments a peer could not run or finish",
                load(&counters.fragments_failed),
            ));
            out.push(Metric::counter(
                "minitrue_cluster_fragment_bytes_received_total",
                "Bytes of query results received from peers",
                load(&counters.bytes_received),
            ));
            out.push(Metric::counter(
                "minitrue_cluster_fragment_rows_received_total",
                "Rows of query results received from peers",
                load(&counters.rows_received),
            ));
        })
    }
}

/// One owner per range of `topology`'s ring inside `within` (see the module documentation).
pub fn assign(
    topology: &Topology,
    within: &TokenSet,
    excluding: &[String],
) -> Result<Vec<Share>, ClusterError> {
    let unavailable = |message: String| ClusterError { kind: ErrorKind::Unavailable, message };
    if topology.ring.is_empty() {
        return Err(unavailable("no node holds any range of the ring yet".into()));
    }
    let excluded = |node: &NodeId| excluding.iter().any(|name| name == node.as_str());
    let usable = |node: &NodeId| {
        !excluded(node) && (*node == topology.local || topology.live_flight_address(node).is_some())
    };
    let mut intervals: BTreeMap<&NodeId, Vec<(u64, u64)>> = BTreeMap::new();
    for range in topology.ring.ranges() {
        let part = TokenSet::range(range.start, range.end);
        let part = if within.is_all() { part } else { part.intersection(within) };
        if part.is_empty() {
            continue;
        }
        let local_owner = range.owners.contains(&topology.local).then_some(&topology.local);
        // A recovering owner may lack what it missed while down: it answers only where no
        // active owner is left (a whole cluster restarting, say).
        let active = |node: &&NodeId| usable(node) && !topology.is_recovering(node);
        let owner = local_owner
            .filter(active)
            .or_else(|| range.owners.iter().find(active))
            .or_else(|| local_owner.filter(|node| usable(node)))
            .or_else(|| range.owners.iter().find(|owner| usable(owner)));
        let Some(owner) = owner else {
            let owners: Vec<String> = range
                .owners
                .iter()
                .map(|owner| {
                    let why = if excluded(owner) { "failed" } else { "down" };
                    format!("{owner} ({why})")
                })
                .collect();
            return Err(unavailable(format!(
                "the range ({}, {}] of the ring has no live owner: {}",
                range.start,
                range.end,
                owners.join(", ")
            )));
        };
        intervals.entry(owner).or_default().extend_from_slice(part.intervals());
    }
    Ok(intervals
        .into_iter()
        .map(|(node, intervals)| Share {
            node: node.to_string(),
            local: *node == topology.local,
            tokens: TokenSet::from_intervals(intervals),
        })
        .collect())
}

#[async_trait]
impl FragmentRunner for ClusterReads {
    fn assign(&self, within: &TokenSet, excluding: &[String]) -> Result<Vec<Share>, ClusterError> {
        assign(&self.topology.current(), within, excluding)
    }

    async fn run(&self, node: &str, payload: Vec<u8>) -> Result<RemoteBatches, ClusterError> {
        let topology = self.topology.current();
        let Some(address) = topology.live_flight_address(&NodeId::new(node)) else {
            return Err(ClusterError {
                kind: ErrorKind::Unavailable,
                message: format!("{node} is down"),
            });
        };
        self.counters.fragments_sent.fetch_add(1, Ordering::Relaxed);
        let failed = {
            let counters = self.counters.clone();
            let node = node.to_string();
            move |status: tonic::Status| {
                counters.fragments_failed.fetch_add(1, Ordering::Relaxed);
                peer_error(&node, status)
            }
        };
        let batches = match self.peers.run_fragment(address, &payload).await {
            Ok(batches) => batches,
            Err(status) => return Err(failed(status)),
        };
        let counters = self.counters.clone();
        Ok(batches
            .map_err(failed)
            .inspect_ok(move |(batch, bytes)| {
                counters.rows_received.fetch_add(batch.num_rows() as u64, Ordering::Relaxed);
                counters.bytes_received.fetch_add(*bytes as u64, Ordering::Relaxed);
            })
            .boxed())
    }
}

/// A peer's gRPC status as a query error: what says the peer could not be reached (or went
/// away) is `Unavailable`, so the query asks another owner; the rest keeps its meaning.
fn peer_error(node: &str, status: tonic::Status) -> ClusterError {
    use tonic::Code;
    let kind = match status.code() {
        Code::Unavailable
        | Code::DeadlineExceeded
        | Code::Cancelled
        | Code::Unknown
        | Code::Aborted => ErrorKind::Unavailable,
        Code::InvalidArgument | Code::FailedPrecondition | Code::OutOfRange => {
            ErrorKind::InvalidInput
        }
        Code::NotFound => ErrorKind::NotFound,
        Code::ResourceExhausted => ErrorKind::Unavailable,
        _ => ErrorKind::Internal,
    };
    ClusterError { kind, message: format!("{node}: {}", status.message()) }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::membership::{Member, NodeAddresses, NodeState};
    use crate::ring::Ring;
    use crate::topology::MemberStatus;
    use std::net::SocketAddr;

    fn topology(local: &str, nodes: &[(&str, bool)], rf: usize) -> Topology {
        let address: SocketAddr = "127.0.0.1:1".parse().unwrap();
        let members = nodes
            .iter()
            .map(|(name, alive)| MemberStatus {
                member: Member {
                    id: NodeId::new(*name),
                    generation: 1,
                    gossip_address: address,
                    state: Some(NodeState::Active),
                    addresses: Some(NodeAddresses {
                        http: address,
                        postgres: None,
                        flight: Some(address),
                    }),
                    hints_for: Vec::new(),
                    mqtt_session: None,
                    admitted_micros: 0,
                    alive: *alive,
                    local: *name == local,
                },
                down_for: None,
                in_ring: true,
            })
            .collect();
        let ring = Ring::new(nodes.iter().map(|(name, _)| NodeId::new(*name)), 150, rf);
        Topology { local: NodeId::new(local), members, ring: Arc::new(ring), next_ring: None }
    }

    fn covers_once(shares: &[Share]) {
        let mut union = TokenSet::empty();
        for share in shares {
            assert!(union.intersection(&share.tokens).is_empty(), "{share} overlaps another share");
            union = union.union(&share.tokens);
        }
        assert!(union.is_all(), "the shares leave part of the ring out");
    }

    #[test]
    fn every_range_has_exactly_one_answering_owner_the_local_node_first() {
        let t = topology("a", &[("a", true), ("b", true), ("c", true)], 2);
        let shares = assign(&t, &TokenSet::all(), &[]).unwrap();
        covers_once(&shares);
        assert_eq!(shares.len(), 3);
        // `a` answers for everything it holds (2/3 of the ring with RF 2).
        let local = shares.iter().find(|s| s.local).unwrap();
        assert!((local.tokens.share() - t.ring.share(&NodeId::new("a")).1).abs() < 1e-9);

        // RF 3 on three nodes: the local node holds everything and answers alone.
        let t = topology("b", &[("a", true), ("b", true), ("c", true)], 3);
        let shares = assign(&t, &TokenSet::all(), &[]).unwrap();
        assert_eq!(shares.len(), 1);
        assert!(shares[0].local && shares[0].tokens.is_all());
    }

    #[test]
    fn recovering_owners_answer_only_where_no_active_owner_is_left() {
        let mut t = topology("a", &[("a", true), ("b", true), ("c", true)], 2);
        t.members[0].member.state = Some(NodeState::Recovering);
        let shares = assign(&t, &TokenSet::all(), &[]).unwrap();
        covers_once(&shares);
        assert!(shares.iter().all(|s| !s.local), "the recovering local node answers nothing");

        // b down as well: the ranges only a and b own are left to a, recovering or not.
        t.members[1].member.alive = false;
        let shares = assign(&t, &TokenSet::all(), &[]).unwrap();
        covers_once(&shares);
        let a_and_b: Vec<(u64, u64)> = t
            .ring
            .ranges()
            .filter(|r| {
                r.owners.contains(&NodeId::new("a")) && r.owners.contains(&NodeId::new("b"))
            })
            .flat_map(|r| TokenSet::range(r.start, r.end).intervals().to_vec())
            .collect();
        let local = shares.iter().find(|s| s.local).expect("a answers the ranges left to it");
        assert_eq!(local.tokens, TokenSet::from_intervals(a_and_b));
    }

    #[test]
    fn dead_or_failed_owners_are_replaced_and_a_range_without_owners_fails() {
        let t = topology("a", &[("a", true), ("b", false), ("c", true)], 2);
        let shares = assign(&t, &TokenSet::all(), &[]).unwrap();
        covers_once(&shares);
        assert!(shares.iter().all(|s| s.node != "b"));

        // c failed during the query: its part goes to the other owners, none to c.
        let c_part = shares.iter().find(|s| s.node == "c").unwrap().tokens.clone();
        let t = topology("a", &[("a", true), ("b", true), ("c", true)], 2);
        let again = assign(&t, &c_part, &["c".to_string()]).unwrap();
        assert!(again.iter().all(|s| s.node != "c"));
        let union = again.iter().fold(TokenSet::empty(), |u, s| u.union(&s.tokens));
        assert_eq!(union, c_part);

        // b down and c failed: the ranges owned by exactly b and c have no one left.
        let t = topology("a", &[("a", true), ("b", false), ("c", true)], 2);
        let error = assign(&t, &TokenSet::all(), &["c".to_string()]).unwrap_err();
        assert_eq!(error.kind, ErrorKind::Unavailable);
        assert!(error.message.contains("no live owner"), "{}", error.message);
    }
}
