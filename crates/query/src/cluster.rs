//! What the SQL layer needs from the cluster, as a trait: this crate defines it, the
//! `cluster` crate implements it, the binary wires the two ([`session_in_cluster`]).
//!
//! `system.nodes` and `system.ring` show the cluster as the answering node sees it; views of
//! different nodes agree once gossip has converged.
//!
//! [`session_in_cluster`]: crate::session_in_cluster

use std::sync::Arc;

use arrow::array::{
    ArrayRef, BooleanArray, Decimal128Array, Float64Array, Int32Array, RecordBatch, StringArray,
    TimestampMicrosecondArray,
};
use arrow::datatypes::{DataType, Field, Schema, TimeUnit};
use async_trait::async_trait;
use datafusion::catalog::streaming::StreamingTable;
use datafusion::error::Result as DfResult;
use minitrue_common::{ErrorKind, Point};
use minitrue_storage::DeleteRequest;

use crate::tables::snapshot_table;

/// What a session needs from the cluster it runs in.
#[derive(Clone)]
pub struct ClusterHooks {
    pub info: Arc<dyn ClusterInfo>,
    /// Where `INSERT INTO readings` sends its points (instead of the local engine).
    pub writer: Arc<dyn PointWriter>,
    /// Reads of `readings` span the cluster through this ([`crate::distributed`]); without
    /// it they read this node's engine only.
    pub runner: Option<Arc<dyn crate::distributed::FragmentRunner>>,
}

/// Writes points where the cluster keeps them: on every owner of their series.
#[async_trait]
pub trait PointWriter: Send + Sync {
    /// Resolves once the points are durable on as many owners as the write quorum asks.
    async fn write(&self, points: &[Point]) -> Result<(), ClusterError>;

    /// Applies the deletes on every node that holds ranges; resolves with the number of
    /// points deleted, each counted once.
    async fn delete(&self, requests: &[DeleteRequest]) -> Result<u64, ClusterError>;
}

/// Something the cluster could not do: place a write (too few owners reachable for the
/// quorum), or answer for a range (no live owner).
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct ClusterError {
    pub kind: ErrorKind,
    pub message: String,
}

/// The cluster as one node sees it.
pub trait ClusterInfo: Send + Sync {
    /// Every node this node knows of, itself included, sorted by id.
    fn nodes(&self) -> Vec<NodeInfo>;
    /// The ring's ranges in token order, each with its owners, primary first.
    fn ring(&self) -> Vec<RangeInfo>;
}

/// One row of `system.nodes`.
#[derive(Debug, Clone, PartialEq)]
pub struct NodeInfo {
    pub node_id: String,
    /// `joining`, `active` or `leaving`; `None` until the node's gossip has arrived.
    pub state: Option<String>,
    /// The failure detector's view.
    pub alive: bool,
    /// Whether this row is the answering node itself.
    pub local: bool,
    /// Whether the node's ranges count in the ring (see the `cluster` crate's topology).
    pub in_ring: bool,
    /// Seconds the answering node has seen it dead.
    pub down_seconds: Option<f64>,
    /// When this run of the node started (µs since 1970): a restart changes it.
    pub started_micros: i64,
    /// When the answering node admitted this run of it (µs since 1970): first heard of it,
    /// which with a cluster secret means when it proved the secret.
    pub admitted_micros: i64,
    pub gossip_address: String,
    pub http_address: Option<String>,
    pub postgres_address: Option<String>,
    pub flight_address: Option<String>,
    /// Fraction of the ring it is primary for, and fraction it holds a copy of.
    pub primary_share: f64,
    pub replica_share: f64,
}

/// One range of the ring: tokens in `(start, end]` (wrapping past `u64::MAX` for the first).
#[derive(Debug, Clone, PartialEq)]
pub struct RangeInfo {
    pub start: u64,
    pub end: u64,
    /// Primary first.
    pub owners: Vec<String>,
}

/// `system.nodes`: one row per known node.
pub(crate) fn nodes_table(cluster: Arc<dyn ClusterInfo>) -> DfResult<Arc<StreamingTable>> {
    let schema = Arc::new(Schema::new(vec![
        Field::new("node_id", DataType::Utf8, false),
        Field::new("state", DataType::Utf8, true),
        Field::new("alive", DataType::Boolean, false),
        Field::new("local", DataType::Boolean, false),
        Field::new("in_ring", DataType::Boolean, false),
        Field::new("down_seconds", DataType::Float64, true),
        Field::new(
            "started",
            DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
            false,
        ),
        Field::new(
            "admitted",
            DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
            false,
        ),
        Field::new("gossip_address", DataType::Utf8, false),
        Field::new("http_address", DataType::Utf8, true),
        Field::new("postgres_address", DataType::Utf8, true),
        Field::new("flight_address", DataType::Utf8, true),
        Field::new("primary_share", DataType::Float64, false),
        Field::new("replica_share", DataType::Float64, false),
    ]));
    snapshot_table("system.nodes", cluster, schema, |cluster, schema| {
        let nodes = cluster.nodes();
        let text = |get: fn(&NodeInfo) -> Option<&str>| -> ArrayRef {
            Arc::new(nodes.iter().map(get).collect::<StringArray>())
        };
        let columns: Vec<ArrayRef> = vec![
            text(|n| Some(&n.node_id)),
            text(|n| n.state.as_deref()),
            Arc::new(nodes.iter().map(|n| Some(n.alive)).collect::<BooleanArray>()),
            Arc::new(nodes.iter().map(|n| Some(n.local)).collect::<BooleanArray>()),
            Arc::new(nodes.iter().map(|n| Some(n.in_ring)).collect::<BooleanArray>()),
            Arc::new(nodes.iter().map(|n| n.down_seconds).collect::<Float64Array>()),
            Arc::new(
                TimestampMicrosecondArray::from_iter_values(nodes.iter().map(|n| n.started_micros))
                    .with_timezone("UTC"),
            ),
            Arc::new(
                TimestampMicrosecondArray::from_iter_values(
                    nodes.iter().map(|n| n.admitted_micros),
                )
                .with_timezone("UTC"),
            ),
            text(|n| Some(&n.gossip_address)),
            text(|n| n.http_address.as_deref()),
            text(|n| n.postgres_address.as_deref()),
            text(|n| n.flight_address.as_deref()),
            Arc::new(Float64Array::from_iter_values(nodes.iter().map(|n| n.primary_share))),
            Arc::new(Float64Array::from_iter_values(nodes.iter().map(|n| n.replica_share))),
        ];
        RecordBatch::try_new(schema.clone(), columns)
    })
}

/// Tokens are unsigned 64-bit; `numeric(20, 0)` holds them exactly for every client.
const TOKEN_TYPE: DataType = DataType::Decimal128(20, 0);

/// `system.ring`: one row per (range, owner); `replica` 0 is the primary.
pub(crate) fn ring_table(cluster: Arc<dyn ClusterInfo>) -> DfResult<Arc<StreamingTable>> {
    let schema = Arc::new(Schema::new(vec![
        Field::new("range_start", TOKEN_TYPE, false),
        Field::new("range_end", TOKEN_TYPE, false),
        Field::new("replica", DataType::Int32, false),
        Field::new("node_id", DataType::Utf8, false),
    ]));
    snapshot_table("system.ring", cluster, schema, |cluster, schema| {
        let ranges = cluster.ring();
        let rows = || ranges.iter().flat_map(|r| r.owners.iter().enumerate().map(move |o| (r, o)));
        let token = |values: Vec<i128>| -> Result<ArrayRef, arrow::error::ArrowError> {
            Ok(Arc::new(Decimal128Array::from(values).with_precision_and_scale(20, 0)?))
        };
        let columns: Vec<ArrayRef> = vec![
            token(rows().map(|(r, _)| i128::from(r.start)).collect())?,
            token(rows().map(|(r, _)| i128::from(r.end)).collect())?,
            Arc::new(Int32Array::from(rows().map(|(_, (i, _))| i as i32).collect::<Vec<_>>())),
            Arc::new(StringArray::from(
                rows().map(|(_, (_, node))| node.as_str()).collect::<Vec<_>>(),
            )),
        ];
        RecordBatch::try_new(schema.clone(), columns)
    })
}
