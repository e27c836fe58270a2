//! The adapters between a node's components: what the doors and the ingest path call, and
//! what each calls in the engine or the cluster.

use std::sync::Arc;

use arrow_array::RecordBatch;
use futures::future::BoxFuture;
use minitrue_cluster::peer::batch_to_points;
use minitrue_cluster::{ReplicaWrite, Replicator};
use minitrue_common::SeriesKey;
use minitrue_ingest::mqtt::{PointSink, SinkError, WriteBatch};
use minitrue_storage::{Engine, Tags};

/// Writes ingested points (and their series' tags) into the local engine: durable when
/// `write` returns. (A node writes through [`ClusterSink`]; the ingest benchmark measures the
/// engine's part through this.)
pub(crate) struct EngineSink(pub(crate) Arc<Engine>);

impl PointSink for EngineSink {
    fn write(&self, batch: WriteBatch) -> BoxFuture<'_, Result<(), SinkError>> {
        Box::pin(async move {
            let to_sink_error = |e: minitrue_storage::StorageError| SinkError {
                kind: e.kind(),
                message: e.to_string(),
            };
            if !batch.series_tags.is_empty() {
                let tags: Vec<(SeriesKey, Tags)> =
                    batch.series_tags.into_iter().map(|t| (t.series, t.tags)).collect();
                self.0.set_series_tags(&tags).await.map_err(to_sink_error)?;
            }
            self.0.write(&batch.points).await.map(|_| ()).map_err(to_sink_error)
        })
    }
}

/// Writes ingested points (and their series' tags) in the cluster: to all their owners,
/// durable on the write quorum when `write` returns; or, with `owned_only` (the seed's
/// `--mqtt-subscription every-node`, where every node receives every message and each owner
/// takes its own copy from the broker), only what this node owns, locally.
pub(crate) struct ClusterSink {
    pub(crate) replicator: Arc<Replicator>,
    pub(crate) owned_only: bool,
}

impl PointSink for ClusterSink {
    fn write(&self, batch: WriteBatch) -> BoxFuture<'_, Result<(), SinkError>> {
        Box::pin(async move {
            let tags: Vec<(SeriesKey, Tags)> =
                batch.series_tags.into_iter().map(|t| (t.series, t.tags)).collect();
            let written = match self.owned_only {
                true => self.replicator.write_owned(&batch.points, &tags).await.map(|_| ()),
                false => self.replicator.write(&batch.points, &tags).await,
            };
            written.map_err(|e| SinkError { kind: e.kind(), message: e.to_string() })
        })
    }
}

/// Replica writes from peers (a `DoPut` on the Flight door), deletes and repair questions
/// (`DoAction`s) go to the local engine.
pub(super) struct ReplicaReceiver {
    pub(super) replicator: Arc<Replicator>,
    pub(super) repairer: Arc<minitrue_cluster::repair::Repairer>,
}

const CLUSTER_ACTIONS: [&str; 3] = [
    minitrue_cluster::REPLICA_DELETE_ACTION,
    minitrue_cluster::repair::REPAIR_DIGEST_ACTION,
    minitrue_cluster::repair::REPAIR_POINTS_ACTION,
];

#[async_trait::async_trait]
impl minitrue_server::ReplicaDoor for ReplicaReceiver {
    fn handles(&self, path: &[String]) -> bool {
        ReplicaWrite::from_path(path).is_some()
    }

    async fn put(
        &self,
        path: &[String],
        batch: RecordBatch,
        first: bool,
    ) -> Result<u64, minitrue_server::ReplicaError> {
        let invalid = |message: String| minitrue_server::ReplicaError { invalid: true, message };
        // The tags travel once, with the first batch; the door has checked the path.
        let series_tags = match first {
            false => Vec::new(),
            true => match ReplicaWrite::from_path(path) {
                Some(Ok(tags)) => tags,
                Some(Err(error)) => return Err(invalid(error.to_string())),
                None => return Err(invalid("not a replica write".to_string())),
            },
        };
        let points = batch_to_points(&batch).map_err(|e| invalid(e.to_string()))?;
        let rows = points.len() as u64;
        self.replicator.apply_replica(ReplicaWrite { points, series_tags }).await.map_err(
            |error| minitrue_server::ReplicaError { invalid: false, message: error.to_string() },
        )?;
        Ok(rows)
    }

    fn handles_action(&self, kind: &str) -> bool {
        CLUSTER_ACTIONS.contains(&kind)
    }

    async fn action(
        &self,
        kind: &str,
        body: &[u8],
    ) -> Result<Vec<u8>, minitrue_server::ReplicaError> {
        if kind != minitrue_cluster::REPLICA_DELETE_ACTION {
            return self.repairer.answer(kind, body).await.map_err(|error| {
                minitrue_server::ReplicaError {
                    invalid: matches!(error, minitrue_cluster::repair::RepairError::Malformed(_)),
                    message: error.to_string(),
                }
            });
        }
        let action: minitrue_cluster::peer::DeleteAction =
            serde_json::from_slice(body).map_err(|error| minitrue_server::ReplicaError {
                invalid: true,
                message: format!("not a delete: {error}"),
            })?;
        let deleted =
            self.replicator.apply_delete(&action.requests, &action.counted).await.map_err(
                |error| minitrue_server::ReplicaError {
                    invalid: false,
                    message: error.to_string(),
                },
            )?;
        Ok(deleted.to_string().into_bytes())
    }
}

/// The HTTP door's view of this node's decommission.
pub(super) struct DecommissionDoor(pub(super) Arc<minitrue_cluster::decommission::Decommission>);

#[async_trait::async_trait]
impl minitrue_server::Decommissioning for DecommissionDoor {
    async fn start(&self) -> Result<serde_json::Value, String> {
        let progress = self.0.start().await.map_err(|error| error.to_string())?;
        serde_json::to_value(progress).map_err(|error| error.to_string())
    }

    fn progress(&self) -> serde_json::Value {
        serde_json::to_value(self.0.progress()).unwrap_or_default()
    }
}

/// The engine's acknowledged writes, for the HTTP door's live stream.
pub(super) struct EngineLive(pub(super) Arc<minitrue_storage::Engine>);

impl minitrue_server::LiveSource for EngineLive {
    fn subscribe(&self) -> tokio::sync::broadcast::Receiver<minitrue_common::LiveBatch> {
        self.0.subscribe_live()
    }
}
