//! A cluster of three "nodes" in one process, for testing distributed reads without a
//! network: every node is the same engine, but the ring is cut in twelve ranges and each node
//! answers only for the ranges the query gives it, so a series counted twice or missed shows
//! up as a wrong answer. "Peer" fragments go through the real encoding
//! (`datafusion-proto`), [`execute_fragment`] and back.

#![allow(dead_code)]

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use datafusion::prelude::SessionContext;
use futures::StreamExt;
use minitrue_common::MetricsRegistry;
use minitrue_common::{ErrorKind, Point, Token, TokenSet};
use minitrue_query::{
    execute_fragment, session, session_in_cluster, ClusterError, ClusterHooks, ClusterInfo,
    FragmentRunner, NodeInfo, PointWriter, QueryOptions, RangeInfo, RemoteBatches, Share,
};
use minitrue_storage::Engine;

pub const NODES: [&str; 3] = ["local", "peer_a", "peer_b"];
const RANGES: u64 = 12;

/// Range `i` of twelve equal ranges; its owners are node `i % 3` and the next one (RF 2).
fn range(i: u64) -> TokenSet {
    let width = Token::MAX / RANGES;
    let lo = i * width;
    let hi = if i == RANGES - 1 { Token::MAX } else { (i + 1) * width - 1 };
    TokenSet::from_intervals([(lo, hi)])
}

fn owners(i: u64) -> [&'static str; 2] {
    [NODES[(i % 3) as usize], NODES[((i + 1) % 3) as usize]]
}

pub struct Loopback {
    /// The session a "peer" runs fragments in.
    serving: SessionContext,
    /// Nodes that are down: their fragments fail as a dead peer's would.
    pub down: Mutex<BTreeSet<String>>,
    /// Fragments each node was sent.
    pub sent: Mutex<Vec<String>>,
}

impl std::fmt::Debug for Loopback {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Loopback")
    }
}

#[async_trait]
impl FragmentRunner for Loopback {
    fn assign(&self, within: &TokenSet, excluding: &[String]) -> Result<Vec<Share>, ClusterError> {
        let mut shares: Vec<Share> = NODES
            .iter()
            .map(|node| Share {
                node: node.to_string(),
                local: *node == "local",
                tokens: TokenSet::empty(),
            })
            .collect();
        for i in 0..RANGES {
            let part = range(i).intersection(within);
            if part.is_empty() {
                continue;
            }
            // The local node where it owns the range, else the first owner not excluded.
            let mut candidates = owners(i);
            candidates.sort_by_key(|node| *node != "local");
            let Some(owner) = candidates.iter().find(|node| !excluding.iter().any(|e| e == *node))
            else {
                return Err(ClusterError {
                    kind: ErrorKind::Unavailable,
                    message: format!("range {i} has no live owner"),
                });
            };
            let share = shares.iter_mut().find(|s| s.node == *owner).unwrap();
            share.tokens = share.tokens.union(&part);
        }
        Ok(shares.into_iter().filter(|share| !share.tokens.is_empty()).collect())
    }

    async fn run(&self, node: &str, payload: Vec<u8>) -> Result<RemoteBatches, ClusterError> {
        self.sent.lock().unwrap().push(node.to_string());
        if self.down.lock().unwrap().contains(node) {
            return Err(ClusterError {
                kind: ErrorKind::Unavailable,
                message: format!("{node} is down"),
            });
        }
        let stream = execute_fragment(&self.serving, &payload)
            .map_err(|error| ClusterError { kind: error.kind(), message: error.to_string() })?;
        Ok(stream
            .map(|batch| match batch {
                Ok(batch) => {
                    let size = batch.get_array_memory_size();
                    Ok((batch, size))
                }
                Err(error) => {
                    Err(ClusterError { kind: ErrorKind::Internal, message: error.to_string() })
                }
            })
            .boxed())
    }
}

struct NoWrites;

#[async_trait]
impl PointWriter for NoWrites {
    async fn write(&self, _points: &[Point]) -> Result<(), ClusterError> {
        Err(ClusterError {
            kind: ErrorKind::Unavailable,
            message: "loopback takes no writes".into(),
        })
    }

    async fn delete(
        &self,
        _requests: &[minitrue_storage::DeleteRequest],
    ) -> Result<u64, ClusterError> {
        Err(ClusterError {
            kind: ErrorKind::Unavailable,
            message: "loopback takes no deletes".into(),
        })
    }
}

struct NoInfo;

impl ClusterInfo for NoInfo {
    fn nodes(&self) -> Vec<NodeInfo> {
        Vec::new()
    }

    fn ring(&self) -> Vec<RangeInfo> {
        Vec::new()
    }
}

/// A session over `engine` whose reads of `readings` are spread over the three loopback
/// nodes, and the loopback (to take nodes down and see what was sent).
pub async fn distributed_session(
    engine: Arc<Engine>,
    options: QueryOptions,
) -> (SessionContext, Arc<Loopback>) {
    let serving = session(engine.clone(), options.clone()).await.unwrap();
    let loopback = Arc::new(Loopback { serving, down: Mutex::default(), sent: Mutex::default() });
    let hooks = ClusterHooks {
        info: Arc::new(NoInfo),
        writer: Arc::new(NoWrites),
        runner: Some(loopback.clone()),
    };
    let ctx =
        session_in_cluster(engine, options, MetricsRegistry::new(), Some(hooks)).await.unwrap();
    (ctx, loopback)
}
