//! `GET /api/v1/cluster`: the nodes as this node sees them, for the web UI's cluster page:
//! `{"node_id","nodes":[{"node_id","state","addresses":{door: address},"ring_share",
//! "disk_bytes","files","memtable_bytes","wal_bytes","points_written","series"}]}`.
//!
//! A single node owns the whole ring. Storage figures come from `system.storage`, so the
//! page shows what SQL shows.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use datafusion::arrow::array::{Array, Int64Array};
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
    let mut node = json!({
        "node_id": identity.node_id,
        "state": "active",
        "addresses": identity.addresses,
        "ring_share": 1.0,
    });
    for (column, (name, _)) in STORAGE_FIGURES.iter().enumerate() {
        node[*name] = json!(figure(column));
    }
    Ok(Json(json!({ "node_id": identity.node_id, "nodes": [node] })))
}
