//! The `readings` table: a [`TableProvider`] over [`Engine::scan`] (reads), [`Engine::write`]
//! (`INSERT`) and [`Engine::delete`] (`DELETE`).

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use arrow::array::{Array, ArrayRef, AsArray, RecordBatch, UInt64Array};
use arrow::compute::cast;
use arrow::datatypes::{DataType, Field, Float64Type, Schema, SchemaRef, TimestampNanosecondType};
use async_trait::async_trait;
use datafusion::catalog::{Session, TableProvider};
use datafusion::common::tree_node::TreeNodeRecursion;
use datafusion::datasource::sink::{DataSink, DataSinkExec};
use datafusion::error::{DataFusionError, Result as DfResult};
use datafusion::execution::TaskContext;
use datafusion::logical_expr::dml::InsertOp;
use datafusion::logical_expr::{Expr, TableProviderFilterPushDown, TableType};
use datafusion::physical_expr::{EquivalenceProperties, PhysicalExpr};
use datafusion::physical_plan::execution_plan::{Boundedness, EmissionType};
use datafusion::physical_plan::metrics::{
    BaselineMetrics, Count, ExecutionPlanMetricsSet, MetricBuilder, MetricsSet,
};
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::{
    ChildrenPropertiesMode, DisplayAs, DisplayFormatType, ExecutionPlan, Partitioning,
    PlanProperties, ReplaceChildrenOptions, SendableRecordBatchStream,
};
use futures::{StreamExt, TryStreamExt};
use minitrue_common::{Point, SeriesKey, TimeRange, TimestampNs, TokenSet};
use minitrue_storage::{
    readings_schema, DeleteRequest, Engine, ScanRequest, SeriesFilter, StorageError,
};

use crate::cluster::PointWriter;
use crate::error::QueryError;
use crate::pushdown::{analyze, bounds_of, pushdown_support, ScanBounds};

/// A shared engine that formats as `Engine` in plan debug output.
#[derive(Clone)]
pub(crate) struct EngineRef(pub Arc<Engine>);

impl fmt::Debug for EngineRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Engine")
    }
}

impl std::ops::Deref for EngineRef {
    type Target = Engine;

    fn deref(&self) -> &Engine {
        &self.0
    }
}

/// The `readings` table over one storage engine.
///
/// * Reads stream [`Engine::scan`] batches as they come (nothing is buffered beyond the
///   scan's own small channel); dropping the result stream stops the scan.
/// * `INSERT` writes through [`Engine::write`] (durable per the engine's sync policy when the
///   statement returns). Rows are validated first; a statement of up to
///   `insert_chunk_rows` rows is one WAL record, so it is written entirely or not at all.
///   Larger statements are written in chunks of that size: a failure leaves the chunks
///   before it written.
/// * `DELETE` maps its `WHERE` clause onto [`Engine::delete`] requests exactly, or fails
///   without deleting anything (see [`ReadingsTable::delete_from`]).
pub struct ReadingsTable {
    engine: EngineRef,
    scan_batch_rows: usize,
    insert_chunk_rows: usize,
    /// In a cluster, inserts go through this (to every owner) instead of the engine.
    writer: Option<Arc<dyn PointWriter>>,
    /// `system.local_readings`: what this node itself stores, read-only, never distributed.
    local_copy: bool,
}

impl fmt::Debug for ReadingsTable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ReadingsTable")
            .field("scan_batch_rows", &self.scan_batch_rows)
            .field("insert_chunk_rows", &self.insert_chunk_rows)
            .field("cluster_writes", &self.writer.is_some())
            .finish()
    }
}

impl ReadingsTable {
    pub fn new(engine: Arc<Engine>, scan_batch_rows: usize, insert_chunk_rows: usize) -> Self {
        ReadingsTable {
            engine: EngineRef(engine),
            scan_batch_rows: scan_batch_rows.max(1),
            insert_chunk_rows: insert_chunk_rows.max(1),
            writer: None,
            local_copy: false,
        }
    }

    /// This node's own copy of the points (in a cluster, the series it owns): reads are never
    /// sent to other nodes, writes are refused.
    pub fn local_copy(mut self) -> Self {
        self.local_copy = true;
        self
    }

    fn refuse_writes(&self, what: &str) -> DfResult<()> {
        if self.local_copy {
            return Err(QueryError::Unsupported {
                reason: format!(
                    "system.local_readings is this node's copy and read-only; {what} readings"
                ),
            }
            .into_datafusion());
        }
        Ok(())
    }

    /// Inserts write through `writer` (a cluster's owners and quorum) instead of the engine.
    pub fn with_writer(mut self, writer: Arc<dyn PointWriter>) -> Self {
        self.writer = Some(writer);
        self
    }
}

#[async_trait]
impl TableProvider for ReadingsTable {
    fn schema(&self) -> SchemaRef {
        readings_schema()
    }

    fn table_type(&self) -> TableType {
        TableType::Base
    }

    fn supports_filters_pushdown(
        &self,
        filters: &[&Expr],
    ) -> DfResult<Vec<TableProviderFilterPushDown>> {
        Ok(filters.iter().map(|filter| pushdown_support(filter)).collect())
    }

    async fn scan(
        &self,
        _state: &dyn Session,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        limit: Option<usize>,
    ) -> DfResult<Arc<dyn ExecutionPlan>> {
        let (bounds, _) = bounds_of(filters);
        tracing::debug!(%bounds, ?projection, ?limit, "readings scan planned");
        let mut scan = ReadingsScanExec::new(
            self.engine.0.clone(),
            bounds,
            projection.cloned(),
            limit,
            self.scan_batch_rows,
        )?;
        scan.local_only = self.local_copy;
        Ok(Arc::new(scan))
    }

    async fn insert_into(
        &self,
        _state: &dyn Session,
        input: Arc<dyn ExecutionPlan>,
        insert_op: InsertOp,
    ) -> DfResult<Arc<dyn ExecutionPlan>> {
        self.refuse_writes("insert into")?;
        if insert_op != InsertOp::Append {
            return Err(QueryError::Unsupported {
                reason: format!("{insert_op} on readings (only INSERT INTO appends)"),
            }
            .into_datafusion());
        }
        let sink = ReadingsSink {
            engine: self.engine.clone(),
            writer: self.writer.clone(),
            schema: nullable(&readings_schema()),
            chunk_rows: self.insert_chunk_rows,
        };
        Ok(Arc::new(DataSinkExec::new(input, Arc::new(sink), None)))
    }

    /// Accepts `WHERE` clauses that are conjunctions of `device_id = …` / `IN (…)`,
    /// `metric = …` / `IN (…)` and comparisons of `time` with constants (ORs that stay exact
    /// sets, like `device_id = 'a' OR device_id = 'b'`, are accepted too); a device is
    /// required. Anything else (another column, an OR across columns, no `WHERE`, `LIMIT`,
    /// a subquery) fails with [`QueryError::UnsupportedDelete`] before anything is deleted.
    /// Subqueries and `LIMIT` are caught by [`crate::DeleteGuard`], which sees the statement
    /// before DataFusion reduces it to these filters.
    async fn delete_from(
        &self,
        _state: &dyn Session,
        filters: Vec<Expr>,
    ) -> DfResult<Arc<dyn ExecutionPlan>> {
        self.refuse_writes("delete from")?;
        let plan = delete_plan(&filters).map_err(QueryError::into_datafusion)?;
        Ok(Arc::new(DeleteExec::new(self.engine.0.clone(), plan, self.writer.clone())))
    }
}

/// What a `DELETE` removes: points of `devices` (× `metrics`, or every metric) in `time`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct DeletePlan {
    pub bounds: ScanBounds,
}

pub(crate) fn delete_plan(filters: &[Expr]) -> Result<DeletePlan, QueryError> {
    if filters.is_empty() {
        return Err(QueryError::UnsupportedDelete {
            reason: "DELETE FROM readings needs WHERE device_id = …; deleting every point is \
                     not supported"
                .into(),
        });
    }
    for filter in filters {
        if !matches!(analyze(filter), Some((_, true))) {
            return Err(QueryError::UnsupportedDelete {
                reason: format!(
                    "cannot delete by `{filter}`: only device_id = / IN (…), metric = / IN (…) \
                     and comparisons of time with constants, combined with AND, are supported"
                ),
            });
        }
    }
    let (bounds, _) = bounds_of(filters);
    if bounds.device_ids.is_none() {
        return Err(QueryError::UnsupportedDelete {
            reason: "DELETE FROM readings needs a device_id = … or device_id IN (…) condition"
                .into(),
        });
    }
    Ok(DeletePlan { bounds })
}

/// Name of the [`ReadingsScanExec`] metric counting rows received from the storage engine.
pub const STORAGE_ROWS: &str = "storage_rows";

/// Streams one scan of the storage engine: the pushed-down series filter, time range,
/// projection and limit are applied by the engine (the limit by stopping the scan).
///
/// One output partition. Rows come in no particular order (see [`minitrue_storage::BatchStream`]).
#[derive(Debug)]
pub struct ReadingsScanExec {
    engine: EngineRef,
    bounds: ScanBounds,
    projection: Option<Vec<usize>>,
    limit: Option<usize>,
    batch_rows: usize,
    /// In a distributed query: only the series on these ring positions (the ranges this node
    /// answers for).
    tokens: Option<TokenSet>,
    /// Reads `system.local_readings`: never distributed.
    local_only: bool,
    schema: SchemaRef,
    properties: Arc<PlanProperties>,
    metrics: ExecutionPlanMetricsSet,
}

impl ReadingsScanExec {
    pub fn new(
        engine: Arc<Engine>,
        bounds: ScanBounds,
        projection: Option<Vec<usize>>,
        limit: Option<usize>,
        batch_rows: usize,
    ) -> DfResult<Self> {
        let full = readings_schema();
        let schema = match &projection {
            Some(indices) => Arc::new(full.project(indices)?),
            None => full,
        };
        let properties = PlanProperties::new(
            EquivalenceProperties::new(schema.clone()),
            Partitioning::UnknownPartitioning(1),
            EmissionType::Incremental,
            Boundedness::Bounded,
        );
        Ok(ReadingsScanExec {
            engine: EngineRef(engine),
            bounds,
            projection,
            limit,
            batch_rows,
            tokens: None,
            local_only: false,
            schema,
            properties: Arc::new(properties),
            metrics: ExecutionPlanMetricsSet::new(),
        })
    }

    /// The same scan, keeping only the series on `tokens` (a distributed query's share).
    pub fn with_tokens(&self, tokens: TokenSet) -> DfResult<Self> {
        let mut scan = self.with_limit(self.limit)?;
        scan.tokens = Some(tokens);
        Ok(scan)
    }

    /// The same scan with another limit.
    fn with_limit(&self, limit: Option<usize>) -> DfResult<Self> {
        let mut scan = ReadingsScanExec::new(
            self.engine.0.clone(),
            self.bounds.clone(),
            self.projection.clone(),
            limit,
            self.batch_rows,
        )?;
        scan.tokens = self.tokens.clone();
        scan.local_only = self.local_only;
        Ok(scan)
    }

    /// Whether this scan reads `system.local_readings` (this node's copy only).
    pub fn local_only(&self) -> bool {
        self.local_only
    }

    /// The series and time range this scan reads.
    pub fn bounds(&self) -> &ScanBounds {
        &self.bounds
    }

    /// The part of the ring this scan is restricted to, if any.
    pub fn tokens(&self) -> Option<&TokenSet> {
        self.tokens.as_ref()
    }

    pub(crate) fn projection(&self) -> Option<&Vec<usize>> {
        self.projection.as_ref()
    }

    pub(crate) fn batch_rows(&self) -> usize {
        self.batch_rows
    }

    /// The engine this scan reads.
    pub fn engine(&self) -> Arc<Engine> {
        self.engine.0.clone()
    }

    fn projection_names(&self) -> String {
        let names: Vec<&str> = self.schema.fields().iter().map(|f| f.name().as_str()).collect();
        format!("[{}]", names.join(", "))
    }
}

impl DisplayAs for ReadingsScanExec {
    fn fmt_as(&self, t: DisplayFormatType, f: &mut fmt::Formatter) -> fmt::Result {
        match t {
            DisplayFormatType::Default | DisplayFormatType::Verbose => {
                write!(
                    f,
                    "ReadingsScanExec: {}, projection={}",
                    self.bounds,
                    self.projection_names()
                )?;
                if let Some(limit) = self.limit {
                    write!(f, ", limit={limit}")?;
                }
                if let Some(tokens) = &self.tokens {
                    write!(f, ", {}", tokens_display(tokens))?;
                }
                if self.local_only {
                    write!(f, ", this node's copy")?;
                }
                Ok(())
            }
            DisplayFormatType::TreeRender => {
                writeln!(f, "series={}", self.bounds.series_display())?;
                writeln!(f, "time={}", self.bounds.time_display())?;
                write!(f, "projection={}", self.projection_names())
            }
        }
    }
}

impl ExecutionPlan for ReadingsScanExec {
    fn name(&self) -> &str {
        "ReadingsScanExec"
    }

    fn properties(&self) -> &Arc<PlanProperties> {
        &self.properties
    }

    fn children(&self) -> Vec<&Arc<dyn ExecutionPlan>> {
        vec![]
    }

    fn apply_expressions(
        &self,
        _f: &mut dyn FnMut(&Arc<dyn PhysicalExpr>) -> DfResult<TreeNodeRecursion>,
    ) -> DfResult<TreeNodeRecursion> {
        Ok(TreeNodeRecursion::Continue)
    }

    fn replace_children(
        self: Arc<Self>,
        children: Vec<Arc<dyn ExecutionPlan>>,
        _options: ReplaceChildrenOptions,
    ) -> DfResult<Arc<dyn ExecutionPlan>> {
        no_children(self, children)
    }

    fn with_new_children(
        self: Arc<Self>,
        children: Vec<Arc<dyn ExecutionPlan>>,
    ) -> DfResult<Arc<dyn ExecutionPlan>> {
        self.replace_children(
            children,
            ReplaceChildrenOptions::new(ChildrenPropertiesMode::Recompute),
        )
    }

    fn execute(
        &self,
        partition: usize,
        _context: Arc<TaskContext>,
    ) -> DfResult<SendableRecordBatchStream> {
        if partition != 0 {
            return Err(DataFusionError::Internal(format!(
                "ReadingsScanExec has one partition, asked for {partition}"
            )));
        }
        let request = ScanRequest {
            series: SeriesFilter { tokens: self.tokens.clone(), ..self.bounds.series_filter() },
            time: self.bounds.time,
            projection: self.projection.clone(),
            batch_rows: self.batch_rows,
        };
        let engine = self.engine.0.clone();
        let empty = self.bounds.is_empty() || self.limit == Some(0);
        // The scan starts on first poll, not when the plan is executed.
        let batches = futures::stream::once(async move {
            if empty {
                return Ok(futures::stream::empty().boxed());
            }
            engine.scan(request)
        })
        .try_flatten()
        .map_err(|error: StorageError| DataFusionError::External(Box::new(error)));
        // Rows the storage engine handed over: with a LIMIT, this stays near the limit
        // (rounded up to a batch) however large the table is.
        let storage_rows: Count =
            MetricBuilder::new(&self.metrics).counter(STORAGE_ROWS, partition);
        let batches = batches.inspect_ok(move |batch| storage_rows.add(batch.num_rows()));
        let metrics = BaselineMetrics::new(&self.metrics, partition);
        let limited = limit_rows(batches.boxed(), self.limit, metrics);
        Ok(Box::pin(RecordBatchStreamAdapter::new(self.schema.clone(), limited)))
    }

    fn metrics(&self) -> Option<MetricsSet> {
        Some(self.metrics.clone_inner())
    }

    fn with_fetch(&self, limit: Option<usize>) -> Option<Arc<dyn ExecutionPlan>> {
        let limit = match (self.limit, limit) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        self.with_limit(limit).ok().map(|scan| Arc::new(scan) as Arc<dyn ExecutionPlan>)
    }

    fn fetch(&self) -> Option<usize> {
        self.limit
    }
}

/// `ring share 33.3% (150 ranges)`: how much of the ring a restricted scan reads.
pub(crate) fn tokens_display(tokens: &TokenSet) -> String {
    format!("ring share {:.1}% ({} ranges)", tokens.share() * 100.0, tokens.intervals().len())
}

/// `replace_children` of a leaf plan: only "no children" is accepted.
pub(crate) fn no_children<T: ExecutionPlan + 'static>(
    plan: Arc<T>,
    children: Vec<Arc<dyn ExecutionPlan>>,
) -> DfResult<Arc<dyn ExecutionPlan>> {
    if children.is_empty() {
        Ok(plan)
    } else {
        Err(DataFusionError::Internal(format!("{} has no children", plan.name())))
    }
}

/// Passes batches through until `limit` rows have gone out, then ends (dropping the source,
/// which stops the storage scan).
fn limit_rows(
    batches: futures::stream::BoxStream<'static, DfResult<RecordBatch>>,
    limit: Option<usize>,
    metrics: BaselineMetrics,
) -> futures::stream::BoxStream<'static, DfResult<RecordBatch>> {
    let remaining = limit.unwrap_or(usize::MAX);
    futures::stream::unfold(
        (Some(batches), remaining, metrics),
        |(source, remaining, metrics)| async move {
            let mut source = source?;
            if remaining == 0 {
                metrics.done();
                return None;
            }
            match source.next().await {
                None => {
                    metrics.done();
                    None
                }
                Some(Err(error)) => Some((Err(error), (None, 0, metrics))),
                Some(Ok(batch)) => {
                    let batch = if batch.num_rows() > remaining {
                        batch.slice(0, remaining)
                    } else {
                        batch
                    };
                    let left = remaining - batch.num_rows();
                    metrics.record_output(batch.num_rows());
                    // Drop the source as soon as the limit is reached.
                    let next_source = (left > 0).then_some(source);
                    if next_source.is_none() {
                        metrics.done();
                    }
                    Some((Ok(batch), (next_source, left, metrics)))
                }
            }
        },
    )
    .boxed()
}

/// `schema` with every field nullable. The sink declares this so that DataFusion passes
/// NULLs through to [`batch_to_points`], which names the row and column in its error.
fn nullable(schema: &SchemaRef) -> SchemaRef {
    let fields: Vec<Field> =
        schema.fields().iter().map(|f| f.as_ref().clone().with_nullable(true)).collect();
    Arc::new(Schema::new(fields))
}

/// Turns `INSERT` batches into points and writes them through [`Engine::write`].
struct ReadingsSink {
    engine: EngineRef,
    writer: Option<Arc<dyn PointWriter>>,
    schema: SchemaRef,
    chunk_rows: usize,
}

impl fmt::Debug for ReadingsSink {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ReadingsSink").field("chunk_rows", &self.chunk_rows).finish()
    }
}

impl DisplayAs for ReadingsSink {
    fn fmt_as(&self, _t: DisplayFormatType, f: &mut fmt::Formatter) -> fmt::Result {
        let target = if self.writer.is_some() { "cluster write" } else { "engine write" };
        write!(f, "ReadingsSink: {target}, {} rows per WAL record", self.chunk_rows)
    }
}

#[async_trait]
impl DataSink for ReadingsSink {
    fn schema(&self) -> &SchemaRef {
        &self.schema
    }

    async fn write_all(
        &self,
        mut data: SendableRecordBatchStream,
        _context: &Arc<TaskContext>,
    ) -> DfResult<u64> {
        let mut pending: Vec<Point> = Vec::new();
        let mut rows_seen: u64 = 0;
        let mut written: u64 = 0;
        while let Some(batch) = data.next().await {
            let batch = batch?;
            batch_to_points(&batch, rows_seen, &mut pending)
                .map_err(QueryError::into_datafusion)?;
            rows_seen += batch.num_rows() as u64;
            while pending.len() >= self.chunk_rows {
                let rest = pending.split_off(self.chunk_rows);
                let chunk = std::mem::replace(&mut pending, rest);
                written += self.write_chunk(&chunk).await?;
            }
        }
        if !pending.is_empty() {
            written += self.write_chunk(&pending).await?;
        }
        Ok(written)
    }
}

impl ReadingsSink {
    async fn write_chunk(&self, points: &[Point]) -> DfResult<u64> {
        if let Some(writer) = &self.writer {
            writer
                .write(points)
                .await
                .map_err(|error| QueryError::Cluster(error).into_datafusion())?;
            return Ok(points.len() as u64);
        }
        let ack = self
            .engine
            .write(points)
            .await
            .map_err(|error| QueryError::Storage(error).into_datafusion())?;
        tracing::debug!(points = ack.points, lsn = ack.lsn, "sql insert written");
        Ok(ack.points as u64)
    }
}

/// Appends the rows of an `INSERT` batch (columns in readings order) as points, rejecting
/// NULLs and invalid names. `first_row` is the statement-wide index of the batch's first row.
pub fn batch_to_points(
    batch: &RecordBatch,
    first_row: u64,
    out: &mut Vec<Point>,
) -> Result<(), QueryError> {
    let schema = readings_schema();
    if batch.num_columns() != schema.fields().len() {
        return Err(QueryError::Unsupported {
            reason: format!(
                "INSERT INTO readings needs 4 columns (time, device_id, metric, value), got {}",
                batch.num_columns()
            ),
        });
    }
    let mut columns: Vec<ArrayRef> = Vec::with_capacity(4);
    for (column, field) in batch.columns().iter().zip(schema.fields()) {
        if let Some(row) = first_null(column) {
            return Err(QueryError::InvalidRow {
                row: first_row + row as u64 + 1,
                reason: format!("{} is NULL (readings columns are NOT NULL)", field.name()),
            });
        }
        let column = if column.data_type() == field.data_type() {
            column.clone()
        } else {
            cast(column, field.data_type()).map_err(|error| QueryError::InvalidRow {
                row: first_row + 1,
                reason: format!("{}: {error}", field.name()),
            })?
        };
        columns.push(column);
    }
    let times = columns[0].as_primitive::<TimestampNanosecondType>();
    let devices = columns[1].as_string::<i32>();
    let metrics = columns[2].as_string::<i32>();
    let values = columns[3].as_primitive::<Float64Type>();
    out.reserve(batch.num_rows());
    let mut key: Option<SeriesKey> = None;
    for row in 0..batch.num_rows() {
        let (device, metric) = (devices.value(row), metrics.value(row));
        let same = key.as_ref().is_some_and(|k| k.device_id() == device && k.metric() == metric);
        if !same {
            key = Some(SeriesKey::new(device, metric).map_err(|error| QueryError::InvalidRow {
                row: first_row + row as u64 + 1,
                reason: error.to_string(),
            })?);
        }
        if let Some(key) = &key {
            out.push(Point::new(key.clone(), times.value(row), values.value(row)));
        }
    }
    Ok(())
}

fn first_null(array: &ArrayRef) -> Option<usize> {
    if array.null_count() == 0 {
        return None;
    }
    (0..array.len()).find(|&row| array.is_null(row))
}

/// Executes a validated `DELETE`: counts the points it removes, then issues one
/// [`Engine::delete`] per device (and metric, when the statement names metrics).
///
/// Each engine delete is durable on its own; a statement naming several devices or metrics
/// is several deletes, so a failure part-way leaves the earlier ones applied. The returned
/// count is taken from a scan just before deleting: points written concurrently into the
/// deleted range are deleted but may not be counted.
///
/// In a cluster (`writer` set) the deletes go to every node holding ranges, through the
/// writer, and the count is what their owners deleted.
pub struct DeleteExec {
    engine: EngineRef,
    plan: DeletePlan,
    writer: Option<Arc<dyn PointWriter>>,
    properties: Arc<PlanProperties>,
}

impl fmt::Debug for DeleteExec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DeleteExec")
            .field("plan", &self.plan)
            .field("cluster", &self.writer.is_some())
            .finish()
    }
}

impl DeleteExec {
    fn new(engine: Arc<Engine>, plan: DeletePlan, writer: Option<Arc<dyn PointWriter>>) -> Self {
        let properties = PlanProperties::new(
            EquivalenceProperties::new(count_schema()),
            Partitioning::UnknownPartitioning(1),
            EmissionType::Final,
            Boundedness::Bounded,
        );
        DeleteExec { engine: EngineRef(engine), plan, writer, properties: Arc::new(properties) }
    }
}

fn count_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![Field::new("count", DataType::UInt64, false)]))
}

impl DisplayAs for DeleteExec {
    fn fmt_as(&self, _t: DisplayFormatType, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "ReadingsDeleteExec: {}", self.plan.bounds)
    }
}

impl ExecutionPlan for DeleteExec {
    fn name(&self) -> &str {
        "ReadingsDeleteExec"
    }

    fn properties(&self) -> &Arc<PlanProperties> {
        &self.properties
    }

    fn children(&self) -> Vec<&Arc<dyn ExecutionPlan>> {
        vec![]
    }

    fn apply_expressions(
        &self,
        _f: &mut dyn FnMut(&Arc<dyn PhysicalExpr>) -> DfResult<TreeNodeRecursion>,
    ) -> DfResult<TreeNodeRecursion> {
        Ok(TreeNodeRecursion::Continue)
    }

    fn replace_children(
        self: Arc<Self>,
        children: Vec<Arc<dyn ExecutionPlan>>,
        _options: ReplaceChildrenOptions,
    ) -> DfResult<Arc<dyn ExecutionPlan>> {
        no_children(self, children)
    }

    fn with_new_children(
        self: Arc<Self>,
        children: Vec<Arc<dyn ExecutionPlan>>,
    ) -> DfResult<Arc<dyn ExecutionPlan>> {
        self.replace_children(
            children,
            ReplaceChildrenOptions::new(ChildrenPropertiesMode::Recompute),
        )
    }

    fn execute(
        &self,
        partition: usize,
        _context: Arc<TaskContext>,
    ) -> DfResult<SendableRecordBatchStream> {
        if partition != 0 {
            return Err(DataFusionError::Internal(format!(
                "ReadingsDeleteExec has one partition, asked for {partition}"
            )));
        }
        let engine = self.engine.0.clone();
        let bounds = self.plan.bounds.clone();
        let writer = self.writer.clone();
        let result = futures::stream::once(async move {
            let deleted = match writer {
                Some(writer) => {
                    let requests = delete_requests(&bounds)
                        .map_err(|error| QueryError::Storage(error).into_datafusion())?;
                    writer
                        .delete(&requests)
                        .await
                        .map_err(|error| QueryError::Cluster(error).into_datafusion())?
                }
                None => run_delete(&engine, &bounds)
                    .await
                    .map_err(|error| QueryError::Storage(error).into_datafusion())?,
            };
            let count: ArrayRef = Arc::new(UInt64Array::from(vec![deleted]));
            Ok(RecordBatch::try_new(count_schema(), vec![count])?)
        });
        Ok(Box::pin(RecordBatchStreamAdapter::new(count_schema(), result)))
    }
}

/// The engine deletes `bounds` stands for: one per device (× metric when metrics are named);
/// none when nothing can match.
fn delete_requests(bounds: &ScanBounds) -> Result<Vec<DeleteRequest>, StorageError> {
    let Some(devices) = &bounds.device_ids else {
        // Ruled out by `delete_plan`; never turn a missing device into "every device".
        return Err(StorageError::InvalidRequest { reason: "delete needs a device_id".into() });
    };
    if bounds.is_empty() {
        return Ok(Vec::new());
    }
    let metrics: Vec<Option<String>> = match &bounds.metrics {
        None => vec![None],
        Some(metrics) => metrics.iter().cloned().map(Some).collect(),
    };
    Ok(devices
        .iter()
        .flat_map(|device_id| {
            metrics.iter().map(|metric| DeleteRequest {
                device_id: device_id.clone(),
                metric: metric.clone(),
                time: bounds.time,
            })
        })
        .collect())
}

async fn run_delete(engine: &Engine, bounds: &ScanBounds) -> Result<u64, StorageError> {
    let requests = delete_requests(bounds)?;
    let counted = delete_counted(engine, &requests, None).await?;
    tracing::info!(requests = requests.len(), points = counted, time = ?bounds.time, "sql delete");
    Ok(counted)
}

/// Applies `requests` to `engine`; returns the points they covered just before, counting
/// only series on `counted_tokens` when given (in a cluster, a node counts the series it is
/// the primary owner of, so that each point is counted once).
pub async fn delete_counted(
    engine: &Engine,
    requests: &[DeleteRequest],
    counted_tokens: Option<&TokenSet>,
) -> Result<u64, StorageError> {
    // One counting scan per (metric, time) the requests share, over all their devices: a
    // SQL delete is one request per device (and metric), all with the same time range.
    let mut groups: BTreeMap<(Option<&str>, TimestampNs, TimestampNs), Vec<String>> =
        BTreeMap::new();
    for delete in requests {
        let key = (delete.metric.as_deref(), delete.time.start, delete.time.end);
        groups.entry(key).or_default().push(delete.device_id.clone());
    }
    let mut counted = 0u64;
    for ((metric, start, end), device_ids) in groups {
        let series = SeriesFilter {
            device_ids: Some(device_ids),
            metrics: metric.map(|metric| vec![metric.to_string()]),
            tokens: counted_tokens.cloned(),
        };
        let mut request = ScanRequest::new(series, TimeRange::new(start, end));
        request.projection = Some(vec![0]);
        counted += engine
            .scan(request)?
            .try_fold(0u64, |total, batch| async move { Ok(total + batch.num_rows() as u64) })
            .await?;
    }
    for delete in requests {
        engine.delete(delete.clone()).await?;
    }
    Ok(counted)
}
