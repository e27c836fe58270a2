//! The consistent-hash ring: which nodes own a series.
//!
//! Every node places [`DEFAULT_VIRTUAL_NODES`] tokens on a 64-bit ring, at the hash of
//! `"{node_id}#{i}"`. A series sits at the hash of `"{device_id}:{metric}"` (the seed's key)
//! and is owned by the nodes of the first `replication_factor` distinct tokens from there,
//! clockwise: the first is its primary. The hash is xxHash64 with seed 0, so every node, build
//! and platform computes the same owners from the same member list; the ring depends on
//! nothing else.
//!
//! Ownership is computed per *range*: the tokens split the ring into ranges
//! `(previous token, token]`, and every series in a range has the same owners. Joining or
//! leaving changes the owners of only the ranges next to the tokens that come or go, about
//! 1/N of the ring.

use std::fmt;
use std::sync::Arc;

pub use minitrue_common::{series_token, Token};
use serde::{Deserialize, Serialize};
use twox_hash::XxHash64;

/// Tokens each node places on the ring (the seed's 150).
pub const DEFAULT_VIRTUAL_NODES: u32 = 150;

/// A node's name in the cluster (`--node-id`), unique and stable across restarts.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct NodeId(Arc<str>);

impl NodeId {
    pub fn new(id: impl Into<Arc<str>>) -> NodeId {
        NodeId(id.into())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", &*self.0)
    }
}

/// The ring position of a node's `index`-th virtual node.
fn virtual_node_token(node: &NodeId, index: u32) -> Token {
    XxHash64::oneshot(0, format!("{node}#{index}").as_bytes())
}

/// One range of the ring, `(start, end]` (wrapping past `u64::MAX` for the first range), and
/// its owners, primary first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenRange<'a> {
    /// Exclusive.
    pub start: Token,
    /// Inclusive.
    pub end: Token,
    pub owners: &'a [NodeId],
}

impl TokenRange<'_> {
    pub fn contains(&self, token: Token) -> bool {
        if self.start < self.end {
            token > self.start && token <= self.end
        } else {
            // The range that wraps: past the last token, or up to the first.
            token > self.start || token <= self.end
        }
    }

    /// The fraction of the ring this range covers.
    pub fn width(&self) -> f64 {
        let width = self.end.wrapping_sub(self.start);
        if width == 0 {
            // A ring with a single token: that range is all of it.
            1.0
        } else {
            width as f64 / 2f64.powi(64)
        }
    }
}

/// The ring of a set of nodes: immutable, rebuilt when membership changes.
#[derive(Clone)]
pub struct Ring {
    nodes: Vec<NodeId>,
    virtual_nodes: u32,
    replication_factor: usize,
    /// The end token of each range, ascending.
    range_ends: Vec<Token>,
    /// The owners of range `i` at `owners[i * replicas .. (i + 1) * replicas]`.
    owners: Vec<NodeId>,
    /// The effective replication factor: `replication_factor` capped at the node count.
    replicas: usize,
}

impl Ring {
    /// The ring of `nodes` (duplicates are ignored), each with `virtual_nodes` tokens, and
    /// `replication_factor` owners per series (capped at the node count; at least 1).
    pub fn new(
        nodes: impl IntoIterator<Item = NodeId>,
        virtual_nodes: u32,
        replication_factor: usize,
    ) -> Ring {
        let mut nodes: Vec<NodeId> = nodes.into_iter().collect();
        nodes.sort();
        nodes.dedup();
        let virtual_nodes = virtual_nodes.max(1);
        let replication_factor = replication_factor.max(1);
        let replicas = replication_factor.min(nodes.len());
        // Ties between tokens (vanishingly rare) are broken by node id, so the order is
        // the same everywhere.
        let mut tokens: Vec<(Token, usize)> = nodes
            .iter()
            .enumerate()
            .flat_map(|(index, node)| {
                (0..virtual_nodes).map(move |v| (virtual_node_token(node, v), index))
            })
            .collect();
        tokens.sort_unstable();
        let mut range_ends = Vec::with_capacity(tokens.len());
        let mut owners = Vec::with_capacity(tokens.len() * replicas);
        let mut seen = Vec::with_capacity(replicas);
        for start in 0..tokens.len() {
            range_ends.push(tokens[start].0);
            seen.clear();
            // Walk clockwise from this token until `replicas` distinct nodes are found.
            for step in 0..tokens.len() {
                let node = tokens[(start + step) % tokens.len()].1;
                if !seen.contains(&node) {
                    seen.push(node);
                    if seen.len() == replicas {
                        break;
                    }
                }
            }
            owners.extend(seen.iter().map(|&index| nodes[index].clone()));
        }
        Ring { nodes, virtual_nodes, replication_factor, range_ends, owners, replicas }
    }

    /// A hash of what decides ownership (nodes, virtual nodes, replication factor): two
    /// nodes with the same fingerprint compute the same owners for every series.
    pub fn fingerprint(&self) -> u64 {
        let mut text = format!("{}/{}", self.virtual_nodes(), self.replication_factor());
        for node in self.nodes() {
            text.push('/');
            text.push_str(node.as_str());
        }
        XxHash64::oneshot(0, text.as_bytes())
    }

    /// The member nodes, sorted.
    pub fn nodes(&self) -> &[NodeId] {
        &self.nodes
    }

    pub fn virtual_nodes(&self) -> u32 {
        self.virtual_nodes
    }

    /// The replication factor asked for.
    pub fn replication_factor(&self) -> usize {
        self.replication_factor
    }

    /// Owners per series: the replication factor capped at the node count.
    pub fn replicas(&self) -> usize {
        self.replicas
    }

    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    /// The owners of the series at `token`, primary first; empty for an empty ring.
    pub fn owners(&self, token: Token) -> &[NodeId] {
        self.range_of(token).map_or(&[], |range| range.owners)
    }

    /// The range holding `token`; `None` for an empty ring.
    pub fn range_of(&self, token: Token) -> Option<TokenRange<'_>> {
        if self.range_ends.is_empty() {
            return None;
        }
        // The first range whose end is at or after the token; past the last, the first
        // range (it wraps).
        let index = self.range_ends.partition_point(|&end| end < token) % self.range_ends.len();
        Some(self.range(index))
    }

    /// The owners of the series `(device_id, metric)`, primary first.
    pub fn series_owners(&self, device_id: &str, metric: &str) -> &[NodeId] {
        self.owners(series_token(device_id, metric))
    }

    /// Whether `node` is one of the owners of `token`.
    pub fn owns(&self, node: &NodeId, token: Token) -> bool {
        self.owners(token).contains(node)
    }

    /// Every range, in token order.
    pub fn ranges(&self) -> impl Iterator<Item = TokenRange<'_>> + '_ {
        (0..self.range_ends.len()).map(move |index| self.range(index))
    }

    /// The `index`-th range in token order (`index` < the range count).
    fn range(&self, index: usize) -> TokenRange<'_> {
        let count = self.range_ends.len();
        TokenRange {
            start: self.range_ends[(index + count - 1) % count],
            end: self.range_ends[index],
            owners: &self.owners[index * self.replicas..(index + 1) * self.replicas],
        }
    }

    /// The fraction of the ring `node` is primary for, and the fraction it holds a replica
    /// of (primary included).
    pub fn share(&self, node: &NodeId) -> (f64, f64) {
        let mut primary = 0.0;
        let mut replica = 0.0;
        for range in self.ranges() {
            if range.owners.first() == Some(node) {
                primary += range.width();
            }
            if range.owners.contains(node) {
                replica += range.width();
            }
        }
        (primary, replica)
    }
}

impl fmt::Debug for Ring {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Ring")
            .field("nodes", &self.nodes)
            .field("virtual_nodes", &self.virtual_nodes)
            .field("replication_factor", &self.replication_factor)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn ids(names: &[&str]) -> Vec<NodeId> {
        names.iter().map(|name| NodeId::new(*name)).collect()
    }

    fn series(count: usize) -> Vec<(String, String)> {
        (0..count)
            .map(|i| (format!("sensor_{i:05}"), ["temperature", "humidity"][i % 2].to_string()))
            .collect()
    }

    #[test]
    fn token_is_stable() {
        // Pinned: a different value means nodes of different builds disagree on owners.
        assert_eq!(
            series_token("sensor_001", "temperature"),
            XxHash64::oneshot(0, b"sensor_001:temperature")
        );
        assert_eq!(XxHash64::oneshot(0, b""), 0xef46_db37_51d8_e999);
    }

    #[test]
    fn owners_are_distinct_and_capped() {
        let ring = Ring::new(ids(&["a", "b"]), DEFAULT_VIRTUAL_NODES, 3);
        assert_eq!(ring.replicas(), 2);
        for (device, metric) in series(1000) {
            let owners = ring.series_owners(&device, &metric);
            assert_eq!(owners.len(), 2);
            assert_ne!(owners[0], owners[1]);
        }
        assert!(Ring::new(Vec::new(), 150, 3).owners(42).is_empty());
        let single = Ring::new(ids(&["a"]), 150, 3);
        assert_eq!(single.owners(0), &ids(&["a"])[..]);
        let (primary, replica) = single.share(&NodeId::new("a"));
        assert!((primary - 1.0).abs() < 1e-9 && (replica - 1.0).abs() < 1e-9);
    }

    #[test]
    fn load_is_balanced() {
        // 150 tokens per node keep every node's primary share near 1/N.
        let nodes = ids(&["node1", "node2", "node3", "node4"]);
        let ring = Ring::new(nodes.clone(), DEFAULT_VIRTUAL_NODES, 3);
        let mut total = 0.0;
        for node in &nodes {
            let (primary, replica) = ring.share(node);
            assert!((primary - 0.25).abs() < 0.06, "{node}: {primary}");
            assert!((replica - 0.75).abs() < 0.08, "{node}: {replica}");
            total += primary;
        }
        assert!((total - 1.0).abs() < 1e-9);
    }

    #[test]
    fn a_joining_node_takes_about_one_nth() {
        let before = Ring::new(ids(&["node1", "node2", "node3"]), DEFAULT_VIRTUAL_NODES, 1);
        let after = Ring::new(ids(&["node1", "node2", "node3", "node4"]), DEFAULT_VIRTUAL_NODES, 1);
        let all = series(20_000);
        let moved = all
            .iter()
            .filter(|(d, m)| before.series_owners(d, m) != after.series_owners(d, m))
            .count();
        // Only series that go to the new node move.
        for (d, m) in &all {
            if before.series_owners(d, m) != after.series_owners(d, m) {
                assert_eq!(after.series_owners(d, m)[0], NodeId::new("node4"));
            }
        }
        let fraction = moved as f64 / all.len() as f64;
        assert!((0.18..0.32).contains(&fraction), "{fraction}");
    }

    proptest! {
        #[test]
        fn ranges_cover_the_ring_and_agree_with_owners(
            names in proptest::collection::btree_set("[a-z]{1,6}", 1..6),
            rf in 1usize..5,
            probes in proptest::collection::vec(any::<u64>(), 50),
        ) {
            let nodes: Vec<NodeId> = names.into_iter().map(NodeId::new).collect();
            // Fewer tokens keep the test quick; the code does not depend on the number.
            let ring = Ring::new(nodes.clone(), 8, rf);
            // Shuffled input, same ring.
            let reversed = Ring::new(nodes.iter().rev().cloned(), 8, rf);
            let total: f64 = ring.ranges().map(|r| r.width()).sum();
            prop_assert!((total - 1.0).abs() < 1e-9);
            for token in probes.into_iter().chain([0, u64::MAX]) {
                let containing: Vec<_> = ring.ranges().filter(|r| r.contains(token)).collect();
                prop_assert_eq!(containing.len(), 1);
                prop_assert_eq!(containing[0].owners, ring.owners(token));
                prop_assert_eq!(ring.range_of(token), Some(containing[0].clone()));
                prop_assert_eq!(ring.owners(token), reversed.owners(token));
                prop_assert_eq!(ring.owners(token).len(), rf.min(nodes.len()));
            }
        }
    }
}
