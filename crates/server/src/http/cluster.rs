//! `GET /api/v1/cluster`: the nodes as this node sees them, for the web UI's cluster page:
//! `{"node_id","nodes":[{"node_id","state","alive","addresses":{door: address},"ring_share",
//! "disk_bytes","files","memtable_bytes","wal_bytes","points_written","series"}]}`.
//!
//! The nodes come from `system.nodes` (gossip) when the session has it; without it this node
//! owns the whole ring. `ring_share` is the fraction of the ring a node is primary for.
//! Storage figures come from `system.storage`, so the page shows what SQL shows; they are
//! this node's only, null for the others.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::{ConnectInfo, State};
use axum::http::StatusCode;
use axum::{Extension, Json};
use datafusion::arrow::array::{Array, BooleanArray, Float64Array, Int64Array, StringArray};
use minitrue_auth::{Door, Principal};
use serde_json::{json, Value};

use super::{ApiError, HttpState};

/// Who this node is, as the cluster page shows it.
#[derive(Debug, Clone, Default)]
pub struct NodeIdentity {
    pub node_id: String,
    /// Door name (`http`, `postgres`, `flight`, `mqtt`) → the address it listens on.
    pub addresses: BTreeMap<String, String>,
}

/// The node's figures on the page, and the `system.storage` columns they are read from.
const STORAGE_FIGURES: [(&str, &str); 6] = [
    ("disk_bytes", "file_bytes"),
    ("files", "files"),
    ("memtable_bytes", "memtable_bytes"),
    ("wal_bytes", "wal_total_bytes"),
    ("points_written", "points_written"),
    ("series", "series"),
];

pub(crate) async fn cluster(State(state): State<Arc<HttpState>>) -> Result<Json<Value>, ApiError> {
    let session = state.sql.as_ref().ok_or_else(|| ApiError {
        status: StatusCode::SERVICE_UNAVAILABLE,
        code: "unavailable",
        message: "this node does not serve queries".to_string(),
    })?;
    let internal = |error: datafusion::error::DataFusionError| ApiError {
        status: StatusCode::INTERNAL_SERVER_ERROR,
        code: "internal error",
        message: error.to_string(),
    };
    let columns: Vec<&str> = STORAGE_FIGURES.iter().map(|(_, column)| *column).collect();
    let sql = format!("SELECT {} FROM system.storage", columns.join(", "));
    let batches = session.sql(&sql).await.map_err(internal)?.collect().await.map_err(internal)?;
    let figure = |column: usize| -> i64 {
        batches
            .iter()
            .find(|batch| batch.num_rows() > 0)
            .and_then(|batch| batch.column(column).as_any().downcast_ref::<Int64Array>().cloned())
            .filter(|values| values.is_valid(0))
            .map_or(0, |values| values.value(0))
    };
    let identity = state.node.clone().unwrap_or_default();
    let mut local = json!({
        "node_id": identity.node_id,
        "state": "active",
        "alive": true,
        "addresses": identity.addresses,
        "ring_share": 1.0,
    });
    for (column, (name, _)) in STORAGE_FIGURES.iter().enumerate() {
        local[*name] = json!(figure(column));
    }
    if !session.table_exist("system.nodes").map_err(internal)? {
        // Not in a cluster: this node owns the whole ring.
        return Ok(Json(json!({ "node_id": identity.node_id, "nodes": [local] })));
    }

    // In a cluster: every node from gossip; the storage figures are this node's only (the
    // others' are null: each node's own page shows its own).
    let sql = "SELECT node_id, state, alive, local, primary_share, http_address, \
               postgres_address, flight_address FROM system.nodes ORDER BY node_id";
    let batches = session.sql(sql).await.map_err(internal)?.collect().await.map_err(internal)?;
    let mut nodes = Vec::new();
    for batch in &batches {
        let text = |column: usize| batch.column(column).as_any().downcast_ref::<StringArray>();
        let flag = |column: usize| batch.column(column).as_any().downcast_ref::<BooleanArray>();
        let share = batch.column(4).as_any().downcast_ref::<Float64Array>();
        let (Some(ids), Some(states), Some(alive), Some(is_local), Some(share)) =
            (text(0), text(1), flag(2), flag(3), share)
        else {
            return Err(internal(datafusion::error::DataFusionError::Internal(
                "system.nodes has unexpected column types".to_string(),
            )));
        };
        for row in 0..batch.num_rows() {
            let mut node = if is_local.value(row) {
                local.clone()
            } else {
                let mut addresses = BTreeMap::new();
                for (door, column) in [("http", 5), ("postgres", 6), ("flight", 7)] {
                    if let Some(address) = text(column).and_then(|c| value(c, row)) {
                        addresses.insert(door, address);
                    }
                }
                let mut node = json!({ "node_id": ids.value(row), "addresses": addresses });
                for (name, _) in STORAGE_FIGURES {
                    node[name] = Value::Null;
                }
                node
            };
            node["state"] = json!(value(states, row).unwrap_or("unknown"));
            node["alive"] = json!(alive.value(row));
            node["ring_share"] = json!(share.value(row));
            nodes.push(node);
        }
    }
    Ok(Json(json!({ "node_id": identity.node_id, "nodes": nodes })))
}

/// A text cell, `None` when NULL.
fn value(column: &StringArray, row: usize) -> Option<&str> {
    column.is_valid(row).then(|| column.value(row))
}

/// Decommissioning this node (`/api/v1/cluster/decommission`), when it is in a cluster.
#[async_trait::async_trait]
pub trait Decommissioning: Send + Sync {
    /// Starts handing this node's ranges over; the progress as JSON, or why it cannot
    /// start now.
    async fn start(&self) -> Result<Value, String>;
    /// The progress of the decommission (`{"phase": "idle", …}` before one started).
    fn progress(&self) -> Value;
}

fn decommission_door(state: &HttpState) -> Result<&Arc<dyn Decommissioning>, ApiError> {
    state.decommission.as_ref().ok_or_else(|| ApiError {
        status: StatusCode::SERVICE_UNAVAILABLE,
        code: "unavailable",
        message: "this node is not in a cluster that can take its ranges".to_string(),
    })
}

/// `POST /api/v1/cluster/decommission`: 202 with the progress once started; 409 when this
/// node cannot leave now (why is in the message), or is already leaving.
pub(crate) async fn decommission(
    State(state): State<Arc<HttpState>>,
    Extension(principal): Extension<Principal>,
    connect: Option<ConnectInfo<SocketAddr>>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let door = decommission_door(&state)?;
    let peer = connect.map(|c| c.0);
    state.gate.audit(Door::Http, peer, &principal, "decommission this node");
    match door.start().await {
        Ok(progress) => Ok((StatusCode::ACCEPTED, Json(progress))),
        Err(message) => Err(ApiError { status: StatusCode::CONFLICT, code: "conflict", message }),
    }
}

/// `GET /api/v1/cluster/decommission`: where the decommission is (phase, ranges handed over
/// of the current pass, points sent, what it waits for).
pub(crate) async fn decommission_progress(
    State(state): State<Arc<HttpState>>,
) -> Result<Json<Value>, ApiError> {
    Ok(Json(decommission_door(&state)?.progress()))
}
