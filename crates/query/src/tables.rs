//! Tables computed from the engine's in-memory state, never by scanning points: `devices`
//! (the last-value cache; in a cluster gathered from one owner per range), `system.files`
//! (the manifest) and `system.storage` (counters).
//!
//! Each is a [`StreamingTable`] whose single partition takes its snapshot when the query
//! first polls it, so every query sees the state of that moment.

use std::fmt;
use std::sync::Arc;

use arrow::array::{
    ArrayRef, Float64Array, Int64Array, RecordBatch, StringArray, TimestampNanosecondArray,
};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use arrow::error::ArrowError;
use datafusion::catalog::streaming::StreamingTable;
use datafusion::error::{DataFusionError, Result as DfResult};
use datafusion::execution::TaskContext;
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::streaming::PartitionStream;
use datafusion::physical_plan::SendableRecordBatchStream;
use futures::TryStreamExt;
use minitrue_common::{MetricsRegistry, TokenSet};
use minitrue_storage::layout::{TimeUnit as FileTimeUnit, ValueLayout};
use minitrue_storage::{Engine, FileMeta};

use crate::distributed::FragmentRunner;

/// Builds a snapshot table's one batch from its source.
pub(crate) type Builder<S> = fn(&S, &SchemaRef) -> Result<RecordBatch, ArrowError>;

/// One partition producing a snapshot batch built by `build` from `source` on first poll.
struct SnapshotPartition<S> {
    name: &'static str,
    source: S,
    schema: SchemaRef,
    build: Builder<S>,
}

impl<S> fmt::Debug for SnapshotPartition<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SnapshotPartition").field("table", &self.name).finish()
    }
}

impl<S: Clone + Send + Sync + 'static> PartitionStream for SnapshotPartition<S> {
    fn schema(&self) -> &SchemaRef {
        &self.schema
    }

    fn execute(&self, _ctx: Arc<TaskContext>) -> SendableRecordBatchStream {
        let source = self.source.clone();
        let schema = self.schema.clone();
        let build = self.build;
        let batch = futures::stream::once(async move { Ok(build(&source, &schema)?) });
        Box::pin(RecordBatchStreamAdapter::new(self.schema.clone(), batch))
    }
}

/// A table whose rows are a snapshot of `source` (the engine's state, the cluster's view)
/// taken when a query first reads it.
pub(crate) fn snapshot_table<S: Clone + Send + Sync + 'static>(
    name: &'static str,
    source: S,
    schema: SchemaRef,
    build: Builder<S>,
) -> DfResult<Arc<StreamingTable>> {
    let partition = SnapshotPartition { name, source, schema: schema.clone(), build };
    Ok(Arc::new(StreamingTable::try_new(schema, vec![Arc::new(partition)])?))
}

fn timestamp_type() -> DataType {
    DataType::Timestamp(TimeUnit::Nanosecond, Some("UTC".into()))
}

fn timestamps(values: Vec<Option<i64>>) -> ArrayRef {
    Arc::new(TimestampNanosecondArray::from(values).with_timezone("UTC"))
}

/// Counters are `u64` in the engine; SQL clients know signed 64-bit integers.
fn int(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

/// `devices(device_id, metric, first_time, last_time, last_value, points, tags)`: one row per
/// series, from the engine's last-value cache, sorted by series. `tags` is the series' tags
/// as a JSON object (`{"site":"north"}`), NULL for a series without tags. This node's series
/// only (in a cluster, `system.series`); see [`cluster_devices_table`] for the cluster's.
pub fn devices_table(engine: &Arc<Engine>) -> DfResult<Arc<StreamingTable>> {
    snapshot_table("devices", engine.clone(), devices_schema(), |engine, schema| {
        devices_batch(engine, schema, &TokenSet::all())
    })
}

pub(crate) fn devices_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("device_id", DataType::Utf8, false),
        Field::new("metric", DataType::Utf8, false),
        Field::new("first_time", timestamp_type(), false),
        Field::new("last_time", timestamp_type(), false),
        Field::new("last_value", DataType::Float64, false),
        Field::new("points", DataType::Int64, false),
        Field::new("tags", DataType::Utf8, true),
    ]))
}

/// The `devices` rows of this node's series on `tokens`.
pub(crate) fn devices_batch(
    engine: &Arc<Engine>,
    schema: &SchemaRef,
    tokens: &TokenSet,
) -> Result<RecordBatch, ArrowError> {
    let mut series = engine.series();
    series.retain(|s| tokens.contains_series(s.series.device_id(), s.series.metric()));
    let columns: Vec<ArrayRef> = vec![
        Arc::new(StringArray::from_iter_values(series.iter().map(|s| s.series.device_id()))),
        Arc::new(StringArray::from_iter_values(series.iter().map(|s| s.series.metric()))),
        timestamps(series.iter().map(|s| Some(s.first_time)).collect()),
        timestamps(series.iter().map(|s| Some(s.last_time)).collect()),
        Arc::new(Float64Array::from_iter_values(series.iter().map(|s| s.last_value))),
        Arc::new(Int64Array::from_iter_values(series.iter().map(|s| int(s.points)))),
        Arc::new(StringArray::from_iter(
            series.iter().map(|s| engine.series_tags(&s.series).map(|tags| tags_json(&tags))),
        )),
    ];
    RecordBatch::try_new(schema.clone(), columns)
}

/// `devices` in a cluster: every series of the cluster, once. Each range of the ring is read
/// from one live owner's last-value cache (this node's where it is an owner, the others' over
/// Flight: a few bytes per series), like a `readings` query; an owner that fails is replaced
/// by another, and a range with no live owner fails the query.
pub fn cluster_devices_table(
    engine: &Arc<Engine>,
    runner: Arc<dyn FragmentRunner>,
) -> DfResult<Arc<StreamingTable>> {
    let schema = devices_schema();
    let partition = ClusterDevices { engine: engine.clone(), runner, schema: schema.clone() };
    Ok(Arc::new(StreamingTable::try_new(schema, vec![Arc::new(partition)])?))
}

struct ClusterDevices {
    engine: Arc<Engine>,
    runner: Arc<dyn FragmentRunner>,
    schema: SchemaRef,
}

impl fmt::Debug for ClusterDevices {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClusterDevices").finish()
    }
}

impl PartitionStream for ClusterDevices {
    fn schema(&self) -> &SchemaRef {
        &self.schema
    }

    fn execute(&self, _ctx: Arc<TaskContext>) -> SendableRecordBatchStream {
        let (engine, runner, schema) =
            (self.engine.clone(), self.runner.clone(), self.schema.clone());
        let batch = futures::stream::once(async move {
            let cluster_error =
                |error: crate::ClusterError| crate::QueryError::Cluster(error).into_datafusion();
            let mut batches = Vec::new();
            let mut excluding: Vec<String> = Vec::new();
            let mut todo = runner.assign(&TokenSet::all(), &[]).map_err(cluster_error)?;
            while let Some(share) = todo.pop() {
                if share.local {
                    batches.push(devices_batch(&engine, &schema, &share.tokens)?);
                    continue;
                }
                let payload = crate::distributed::devices_payload(&share.tokens);
                let fetched: Result<Vec<RecordBatch>, crate::ClusterError> = async {
                    let stream = runner.run(&share.node, payload).await?;
                    let batches: Vec<(RecordBatch, usize)> = stream.try_collect().await?;
                    Ok(batches.into_iter().map(|(batch, _)| batch).collect())
                }
                .await;
                match fetched {
                    Ok(fetched) => batches.extend(fetched),
                    Err(error) if error.kind == minitrue_common::ErrorKind::Unavailable => {
                        // Another owner of the same ranges answers instead.
                        excluding.push(share.node.clone());
                        todo.extend(
                            runner.assign(&share.tokens, &excluding).map_err(cluster_error)?,
                        );
                    }
                    Err(error) => return Err(cluster_error(error)),
                }
            }
            let all = arrow::compute::concat_batches(&schema, &batches)?;
            // Sorted by series, like one node's.
            let order = arrow::compute::lexsort_to_indices(
                &[
                    arrow::compute::SortColumn { values: all.column(0).clone(), options: None },
                    arrow::compute::SortColumn { values: all.column(1).clone(), options: None },
                ],
                None,
            )?;
            Ok(arrow::compute::take_record_batch(&all, &order)?)
        });
        Box::pin(RecordBatchStreamAdapter::new(self.schema.clone(), batch))
    }
}

/// `{"key":"value",…}` in key order.
fn tags_json(tags: &[(String, String)]) -> String {
    let object: serde_json::Map<String, serde_json::Value> =
        tags.iter().map(|(k, v)| (k.clone(), serde_json::Value::String(v.clone()))).collect();
    serde_json::Value::Object(object).to_string()
}

/// `system.metrics(name, labels, kind, value)`: the node's counters and gauges, the same
/// samples `GET /metrics` serves. `labels` is Prometheus-style `key="value",…` text.
pub fn metrics_table(registry: MetricsRegistry) -> DfResult<Arc<StreamingTable>> {
    let schema = Arc::new(Schema::new(vec![
        Field::new("name", DataType::Utf8, false),
        Field::new("labels", DataType::Utf8, false),
        Field::new("kind", DataType::Utf8, false),
        Field::new("value", DataType::Float64, false),
    ]));
    let partition = MetricsPartition { schema: schema.clone(), registry };
    Ok(Arc::new(StreamingTable::try_new(schema, vec![Arc::new(partition)])?))
}

#[derive(Debug)]
struct MetricsPartition {
    schema: SchemaRef,
    registry: MetricsRegistry,
}

impl PartitionStream for MetricsPartition {
    fn schema(&self) -> &SchemaRef {
        &self.schema
    }

    fn execute(&self, _ctx: Arc<TaskContext>) -> SendableRecordBatchStream {
        let registry = self.registry.clone();
        let schema = self.schema.clone();
        let batch = futures::stream::once(async move {
            let metrics = registry.collect();
            RecordBatch::try_new(
                schema,
                vec![
                    Arc::new(StringArray::from_iter_values(metrics.iter().map(|m| m.name))),
                    Arc::new(StringArray::from_iter_values(
                        metrics.iter().map(|m| m.labels_text()),
                    )),
                    Arc::new(StringArray::from_iter_values(
                        metrics.iter().map(|m| m.kind.as_str()),
                    )),
                    Arc::new(Float64Array::from_iter_values(metrics.iter().map(|m| m.value))),
                ],
            )
            .map_err(DataFusionError::from)
        });
        Box::pin(RecordBatchStreamAdapter::new(self.schema.clone(), batch))
    }
}

/// `system.files`: one row per data file currently served, oldest first.
pub fn files_table(engine: &Arc<Engine>) -> DfResult<Arc<StreamingTable>> {
    let schema = Arc::new(Schema::new(vec![
        Field::new("id", DataType::Int64, false),
        Field::new("path", DataType::Utf8, false),
        Field::new("layout", DataType::Utf8, false),
        Field::new("time_unit", DataType::Utf8, false),
        Field::new("min_time", timestamp_type(), false),
        Field::new("max_time", timestamp_type(), false),
        Field::new("partition_start", timestamp_type(), true),
        Field::new("rows", DataType::Int64, false),
        Field::new("series", DataType::Int64, false),
        Field::new("size_bytes", DataType::Int64, false),
        Field::new("level", DataType::Int64, false),
        Field::new("min_lsn", DataType::Int64, false),
        Field::new("max_lsn", DataType::Int64, false),
        Field::new("compacted_from", DataType::Int64, false),
    ]));
    snapshot_table("system.files", engine.clone(), schema, |engine, schema| {
        let files = engine.files();
        let ints = |f: fn(&FileMeta) -> u64| -> ArrayRef {
            Arc::new(Int64Array::from_iter_values(files.iter().map(|m| int(f(m)))))
        };
        let columns: Vec<ArrayRef> = vec![
            ints(|m| m.id),
            Arc::new(StringArray::from_iter_values(files.iter().map(|m| m.path.as_str()))),
            Arc::new(StringArray::from_iter_values(files.iter().map(|m| layout_name(m.layout)))),
            Arc::new(StringArray::from_iter_values(
                files.iter().map(|m| time_unit_name(m.time_unit)),
            )),
            timestamps(files.iter().map(|m| Some(m.time.start)).collect()),
            timestamps(files.iter().map(|m| Some(m.time.end)).collect()),
            timestamps(
                files
                    .iter()
                    .map(|m| {
                        (m.partition_start != minitrue_storage::file_format::UNPARTITIONED)
                            .then_some(m.partition_start)
                    })
                    .collect(),
            ),
            ints(|m| m.rows),
            ints(|m| m.series),
            ints(|m| m.size_bytes),
            ints(|m| u64::from(m.level)),
            ints(|m| m.lsn.min),
            ints(|m| m.lsn.max),
            ints(|m| m.compacted_from.len() as u64),
        ];
        RecordBatch::try_new(schema.clone(), columns)
    })
}

fn layout_name(layout: ValueLayout) -> String {
    match layout {
        ValueLayout::Float => "float".to_string(),
        ValueLayout::Decimal { scale } => format!("decimal({scale})"),
    }
}

fn time_unit_name(unit: FileTimeUnit) -> &'static str {
    match unit {
        FileTimeUnit::Millisecond => "ms",
        FileTimeUnit::Microsecond => "us",
        FileTimeUnit::Nanosecond => "ns",
    }
}

/// `system.storage`: one row of the engine's counters and gauges, WAL included.
pub fn storage_table(engine: &Arc<Engine>) -> DfResult<Arc<StreamingTable>> {
    let fields: Vec<Field> =
        STORAGE_COLUMNS.iter().map(|name| Field::new(*name, DataType::Int64, false)).collect();
    let schema = Arc::new(Schema::new(fields));
    snapshot_table("system.storage", engine.clone(), schema, |engine, schema| {
        let s = engine.stats();
        let values: [u64; STORAGE_COLUMNS.len()] = [
            s.points_written,
            s.write_batches,
            s.deletes,
            s.flushes,
            s.flush_failures,
            s.compactions,
            s.files as u64,
            s.file_bytes,
            s.file_rows,
            s.series as u64,
            s.memtable_bytes as u64,
            s.memtable_encoded_bytes as u64,
            s.memtable_points,
            s.frozen_memtables as u64,
            s.flushed_lsn,
            s.wal.records_appended,
            s.wal.bytes_appended,
            s.wal.fsyncs,
            s.wal.group_commit_batches,
            s.wal.corrupt_records_skipped,
            s.wal.torn_tail_bytes_truncated,
            s.wal.segments,
            s.wal.current_segment_bytes,
            s.wal.total_bytes,
            s.wal.last_lsn,
        ];
        let columns: Vec<ArrayRef> =
            values.iter().map(|v| Arc::new(Int64Array::from(vec![int(*v)])) as ArrayRef).collect();
        RecordBatch::try_new(schema.clone(), columns)
    })
}

const STORAGE_COLUMNS: [&str; 25] = [
    "points_written",
    "write_batches",
    "deletes",
    "flushes",
    "flush_failures",
    "compactions",
    "files",
    "file_bytes",
    "file_rows",
    "series",
    "memtable_bytes",
    "memtable_encoded_bytes",
    "memtable_points",
    "frozen_memtables",
    "flushed_lsn",
    "wal_records_appended",
    "wal_bytes_appended",
    "wal_fsyncs",
    "wal_group_commit_batches",
    "wal_corrupt_records_skipped",
    "wal_torn_tail_bytes_truncated",
    "wal_segments",
    "wal_current_segment_bytes",
    "wal_total_bytes",
    "wal_last_lsn",
];
