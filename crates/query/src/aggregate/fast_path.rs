//! The physical optimizer rule and the plan node of the aggregate fast path.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use arrow::array::TimestampNanosecondArray;
use arrow::array::{Array, ArrayRef, AsArray, Float64Array, Int64Array, RecordBatch, StringArray};
use arrow::datatypes::{DataType, SchemaRef, TimeUnit, TimestampNanosecondType};
use datafusion::common::config::ConfigOptions;
use datafusion::common::tree_node::{Transformed, TreeNode, TreeNodeRecursion};
use datafusion::error::{DataFusionError, Result as DfResult};
use datafusion::execution::TaskContext;
use datafusion::physical_expr::expressions::{Column, Literal};
use datafusion::physical_expr::{EquivalenceProperties, PhysicalExpr, ScalarFunctionExpr};
use datafusion::physical_optimizer::PhysicalOptimizerRule;
use datafusion::physical_plan::aggregates::{AggregateExec, AggregateMode};
use datafusion::physical_plan::execution_plan::{Boundedness, EmissionType};
use datafusion::physical_plan::metrics::{
    BaselineMetrics, ExecutionPlanMetricsSet, MetricBuilder, MetricsSet,
};
use datafusion::physical_plan::repartition::RepartitionExec;
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::{
    ChildrenPropertiesMode, DisplayAs, DisplayFormatType, ExecutionPlan, ExecutionPlanProperties,
    Partitioning, PlanProperties, ReplaceChildrenOptions, SendableRecordBatchStream,
};
use minitrue_common::TokenSet;
use minitrue_storage::{
    AggregateRequest, Engine, GroupAggregate, SeriesFilter, StorageError, TimeBuckets,
    ValueAggregate,
};

use super::exact::{ExactAggregate, ExactKind};
use super::MiniTrueOptions;
use crate::pushdown::{ScanBounds, DEVICE_ID, METRIC, TIME, VALUE};
use crate::readings::{no_children, ReadingsScanExec};

/// Replaces `AggregateExec`s over a [`ReadingsScanExec`] by a [`ReadingsAggregateExec`] when
/// every group expression and aggregate is one the engine computes exactly (see the parent
/// module), unless `minitrue.aggregate_fast_path` is off.
#[derive(Debug, Default)]
pub struct AggregateFastPath;

impl PhysicalOptimizerRule for AggregateFastPath {
    fn optimize(
        &self,
        plan: Arc<dyn ExecutionPlan>,
        config: &ConfigOptions,
    ) -> DfResult<Arc<dyn ExecutionPlan>> {
        let enabled =
            config.extensions.get::<MiniTrueOptions>().is_none_or(|o| o.aggregate_fast_path);
        if !enabled {
            return Ok(plan);
        }
        plan.transform_down(|node| {
            // A distributed fragment gets the fast path where it runs, for its share of the
            // ring (see `crate::distributed`).
            if node.name() == crate::distributed::DISTRIBUTED_EXEC {
                return Ok(Transformed::new(node, false, TreeNodeRecursion::Jump));
            }
            fast_path_node(node)
        })
        .map(|transformed| transformed.data)
    }

    fn name(&self) -> &str {
        "minitrue_aggregate_fast_path"
    }

    fn schema_check(&self) -> bool {
        true
    }
}

fn fast_path_node(node: Arc<dyn ExecutionPlan>) -> DfResult<Transformed<Arc<dyn ExecutionPlan>>> {
    let Some(replacement) = fast_path_for(&node)? else {
        return Ok(Transformed::no(node));
    };
    // This rule runs after distribution was enforced: where the plan relies on the replaced
    // aggregate's partitioning (a partitioned hash join), restore it.
    let wanted = node.output_partitioning();
    let replacement = if wanted.partition_count() > 1 {
        Arc::new(RepartitionExec::try_new(replacement, wanted.clone())?) as Arc<dyn ExecutionPlan>
    } else {
        replacement
    };
    Ok(Transformed::new(replacement, true, TreeNodeRecursion::Jump))
}

/// Skips operators that only move or regroup batches.
pub(crate) fn below_exchanges(plan: &Arc<dyn ExecutionPlan>) -> Arc<dyn ExecutionPlan> {
    let mut plan = plan.clone();
    while matches!(
        plan.name(),
        "RepartitionExec" | "CoalescePartitionsExec" | "CoalesceBatchesExec"
    ) {
        match plan.children().first() {
            Some(child) => plan = (*child).clone(),
            None => break,
        }
    }
    plan
}

fn fast_path_for(plan: &Arc<dyn ExecutionPlan>) -> DfResult<Option<Arc<dyn ExecutionPlan>>> {
    let Some(top) = plan.downcast_ref::<AggregateExec>() else {
        return Ok(None);
    };
    if top.limit_options().is_some() {
        return Ok(None);
    }
    // The aggregate that reads raw rows: the partial one below a final, or a single one, or
    // a partial one alone (a distributed fragment: its states are merged elsewhere).
    let raw_plan = match top.mode() {
        AggregateMode::Single | AggregateMode::SinglePartitioned | AggregateMode::Partial => {
            plan.clone()
        }
        AggregateMode::Final | AggregateMode::FinalPartitioned => below_exchanges(top.input()),
        AggregateMode::PartialReduce => return Ok(None),
    };
    let partial = *top.mode() == AggregateMode::Partial;
    let Some(raw) = raw_plan.downcast_ref::<AggregateExec>() else {
        return Ok(None);
    };
    let raw_mode_ok = match top.mode() {
        AggregateMode::Final | AggregateMode::FinalPartitioned => {
            *raw.mode() == AggregateMode::Partial
        }
        _ => true,
    };
    if !raw_mode_ok || raw.limit_options().is_some() {
        return Ok(None);
    }
    let scan_plan = below_exchanges(raw.input());
    let Some(scan) = scan_plan.downcast_ref::<ReadingsScanExec>() else {
        return Ok(None);
    };
    if scan.fetch().is_some() {
        return Ok(None);
    }
    let scan_schema = scan.schema();
    let column_name = |expr: &Arc<dyn PhysicalExpr>| -> Option<String> {
        let column = expr.downcast_ref::<Column>()?;
        Some(scan_schema.fields().get(column.index())?.name().clone())
    };

    let group_by = raw.group_expr();
    if !group_by.is_single() || !raw.filter_expr().iter().all(Option::is_none) {
        return Ok(None);
    }
    let mut groups = Vec::new();
    for (expr, name) in group_by.expr() {
        let group = match column_name(expr).as_deref() {
            Some(DEVICE_ID) => GroupColumn::Device,
            Some(METRIC) => GroupColumn::Metric,
            Some(_) => return Ok(None),
            None => match bucket_expr(expr, &column_name)? {
                Some(bucket) => GroupColumn::Bucket(bucket),
                None => return Ok(None),
            },
        };
        groups.push((group, name.clone()));
    }
    if groups.iter().filter(|(g, _)| matches!(g, GroupColumn::Bucket(_))).count() > 1 {
        return Ok(None);
    }
    let mut aggregates = Vec::new();
    for aggregate in raw.aggr_expr() {
        if aggregate.is_distinct() || !aggregate.order_bys().is_empty() {
            return Ok(None);
        }
        let args = aggregate.expressions();
        let [arg] = args.as_slice() else {
            return Ok(None);
        };
        let function = aggregate.fun();
        let output = if function.name() == "count" {
            // Every readings column is NOT NULL, so counting any column or a non-null
            // constant counts rows.
            let counts_rows = column_name(arg).is_some()
                || arg.downcast_ref::<Literal>().is_some_and(|l| !l.value().is_null());
            if !counts_rows {
                return Ok(None);
            }
            AggregateOutput::Count
        } else {
            let Some(exact) = function.inner().downcast_ref::<ExactAggregate>() else {
                return Ok(None);
            };
            if column_name(arg).as_deref() != Some(VALUE) {
                return Ok(None);
            }
            match exact.kind() {
                ExactKind::Sum => AggregateOutput::Sum,
                ExactKind::Avg => AggregateOutput::Avg,
                ExactKind::Min => AggregateOutput::Min,
                ExactKind::Max => AggregateOutput::Max,
            }
        };
        aggregates.push((output, aggregate.name().to_string()));
    }
    let schema = top.schema();
    let outputs: Vec<DataType> =
        aggregates.iter().flat_map(|(output, _)| output_types(*output, partial)).collect();
    let output_fields = schema.fields().iter().skip(groups.len());
    if schema.fields().len() != groups.len() + outputs.len()
        || output_fields.zip(&outputs).any(|(field, wanted)| field.data_type() != wanted)
    {
        return Ok(None);
    }
    Ok(Some(Arc::new(ReadingsAggregateExec::new(
        scan.engine(),
        scan.bounds().clone(),
        scan.tokens().cloned(),
        groups,
        aggregates,
        partial,
        schema,
    ))))
}

/// `time_bucket(<interval>, time [, <origin>])` or `date_bin(…)` with constant arguments
/// other than `time` (no time zone argument: local-time buckets are not monotone), rewritten
/// to read `time` from column 0.
fn bucket_expr(
    expr: &Arc<dyn PhysicalExpr>,
    column_name: &dyn Fn(&Arc<dyn PhysicalExpr>) -> Option<String>,
) -> DfResult<Option<Arc<dyn PhysicalExpr>>> {
    let Some(function) = expr.downcast_ref::<ScalarFunctionExpr>() else {
        return Ok(None);
    };
    if !matches!(function.name(), "time_bucket" | "date_bin")
        || !matches!(function.return_type(), DataType::Timestamp(TimeUnit::Nanosecond, _))
    {
        return Ok(None);
    }
    let mut time_args = 0;
    for arg in function.args() {
        if column_name(arg).as_deref() == Some(TIME) {
            time_args += 1;
            continue;
        }
        let Some(literal) = arg.downcast_ref::<Literal>() else {
            return Ok(None);
        };
        let constant_ok = matches!(
            literal.value().data_type(),
            DataType::Interval(_) | DataType::Timestamp(_, _) | DataType::Duration(_)
        );
        if !constant_ok || literal.value().is_null() {
            return Ok(None);
        }
    }
    if time_args != 1 {
        return Ok(None);
    }
    let rewritten = expr
        .clone()
        .transform(|node| {
            if let Some(column) = node.downcast_ref::<Column>() {
                if column.name() == TIME {
                    let time: Arc<dyn PhysicalExpr> = Arc::new(Column::new(TIME, 0));
                    return Ok(Transformed::yes(time));
                }
            }
            Ok(Transformed::no(node))
        })?
        .data;
    Ok(Some(rewritten))
}

/// A group-by column of the fast path.
#[derive(Debug, Clone)]
enum GroupColumn {
    Device,
    Metric,
    /// The bucket expression, reading `time` from column 0 of a one-column batch.
    Bucket(Arc<dyn PhysicalExpr>),
}

/// An aggregate of the fast path (over `value`, or rows for `count`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum AggregateOutput {
    Count,
    Sum,
    Avg,
    Min,
    Max,
}

/// The columns an aggregate's result takes: its value, or (`partial`) its state as the
/// final aggregate merges it (`count`'s count; [`ExactAggregate`]'s exact sum bytes, count
/// and sum for `avg`, or the extreme).
fn output_types(output: AggregateOutput, partial: bool) -> Vec<DataType> {
    match (output, partial) {
        (AggregateOutput::Count, _) => vec![DataType::Int64],
        (AggregateOutput::Sum, true) => vec![DataType::Binary],
        (AggregateOutput::Avg, true) => vec![DataType::UInt64, DataType::Binary],
        (_, _) => vec![DataType::Float64],
    }
}

/// Bucket boundaries computed by DataFusion's own `time_bucket`/`date_bin`, so decoded points
/// and chunk bounds are bucketed exactly as the normal plan would.
#[derive(Debug)]
struct ExprBuckets {
    expr: Arc<dyn PhysicalExpr>,
}

impl TimeBuckets for ExprBuckets {
    fn buckets(&self, times: &[i64]) -> minitrue_storage::Result<Vec<i64>> {
        let failed = |reason: String| StorageError::InvalidRequest { reason };
        let time: ArrayRef =
            Arc::new(TimestampNanosecondArray::from(times.to_vec()).with_timezone("UTC"));
        let batch = RecordBatch::try_from_iter([(TIME, time)])?;
        let buckets = self
            .expr
            .evaluate(&batch)
            .and_then(|value| value.into_array(times.len()))
            .map_err(|e| failed(format!("time bucket: {e}")))?;
        let DataType::Timestamp(TimeUnit::Nanosecond, _) = buckets.data_type() else {
            return Err(failed(format!("time bucket of type {}", buckets.data_type())));
        };
        let buckets = buckets.as_primitive::<TimestampNanosecondType>();
        if buckets.null_count() > 0 {
            return Err(failed("time bucket is NULL".to_string()));
        }
        Ok(buckets.values().to_vec())
    }
}

/// Answers `SELECT <count/sum/avg/min/max> FROM readings WHERE <pushed-down filters>
/// [GROUP BY device_id, metric, time_bucket/date_bin]` with one [`Engine::aggregate`] call:
/// stored chunk and segment aggregates where exact, decoded points elsewhere. Produces exactly
/// the rows of the aggregate it replaces (same schema; rows in no particular order). One
/// partition.
#[derive(Debug)]
pub struct ReadingsAggregateExec {
    engine: crate::readings::EngineRef,
    bounds: ScanBounds,
    /// The scan's ring restriction in a distributed query.
    tokens: Option<TokenSet>,
    groups: Vec<(GroupColumn, String)>,
    aggregates: Vec<(AggregateOutput, String)>,
    /// Emits the aggregates' partial states (a distributed fragment) instead of their values.
    partial: bool,
    schema: SchemaRef,
    properties: Arc<PlanProperties>,
    metrics: ExecutionPlanMetricsSet,
}

impl ReadingsAggregateExec {
    fn new(
        engine: Arc<Engine>,
        bounds: ScanBounds,
        tokens: Option<TokenSet>,
        groups: Vec<(GroupColumn, String)>,
        aggregates: Vec<(AggregateOutput, String)>,
        partial: bool,
        schema: SchemaRef,
    ) -> Self {
        let properties = PlanProperties::new(
            EquivalenceProperties::new(schema.clone()),
            Partitioning::UnknownPartitioning(1),
            EmissionType::Final,
            Boundedness::Bounded,
        );
        ReadingsAggregateExec {
            engine: crate::readings::EngineRef(engine),
            bounds,
            tokens,
            groups,
            aggregates,
            partial,
            schema,
            properties: Arc::new(properties),
            metrics: ExecutionPlanMetricsSet::new(),
        }
    }
}

impl DisplayAs for ReadingsAggregateExec {
    fn fmt_as(&self, t: DisplayFormatType, f: &mut fmt::Formatter) -> fmt::Result {
        let groups: Vec<&str> = self.groups.iter().map(|(_, name)| name.as_str()).collect();
        let aggregates: Vec<&str> = self.aggregates.iter().map(|(_, name)| name.as_str()).collect();
        match t {
            DisplayFormatType::Default | DisplayFormatType::Verbose => {
                write!(
                    f,
                    "ReadingsAggregateExec: {}, gby=[{}], aggr=[{}], chunk aggregates where exact",
                    self.bounds,
                    groups.join(", "),
                    aggregates.join(", ")
                )?;
                if self.partial {
                    write!(f, ", partial states")?;
                }
                if let Some(tokens) = &self.tokens {
                    write!(f, ", {}", crate::readings::tokens_display(tokens))?;
                }
                Ok(())
            }
            DisplayFormatType::TreeRender => {
                writeln!(f, "series={}", self.bounds.series_display())?;
                writeln!(f, "time={}", self.bounds.time_display())?;
                writeln!(f, "gby=[{}]", groups.join(", "))?;
                write!(f, "aggr=[{}]", aggregates.join(", "))
            }
        }
    }
}

impl ExecutionPlan for ReadingsAggregateExec {
    fn name(&self) -> &str {
        "ReadingsAggregateExec"
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
                "ReadingsAggregateExec has one partition, asked for {partition}"
            )));
        }
        let bucket = self.groups.iter().find_map(|(group, _)| match group {
            GroupColumn::Bucket(expr) => Some(expr.clone()),
            _ => None,
        });
        let request = AggregateRequest {
            series: SeriesFilter { tokens: self.tokens.clone(), ..self.bounds.series_filter() },
            time: self.bounds.time,
            buckets: bucket.map(|expr| Arc::new(ExprBuckets { expr }) as Arc<dyn TimeBuckets>),
            use_chunk_aggregates: true,
        };
        let engine = self.engine.0.clone();
        let empty = self.bounds.is_empty();
        let groups: Vec<GroupColumn> = self.groups.iter().map(|(g, _)| g.clone()).collect();
        let aggregates: Vec<AggregateOutput> = self.aggregates.iter().map(|(a, _)| *a).collect();
        let partial = self.partial;
        let schema = self.schema.clone();
        let chunks = MetricBuilder::new(&self.metrics).counter("chunks_from_stats", partition);
        let segments = MetricBuilder::new(&self.metrics).counter("segments_from_stats", partition);
        let stats_points =
            MetricBuilder::new(&self.metrics).counter("points_from_stats", partition);
        let decoded = MetricBuilder::new(&self.metrics).counter("points_decoded", partition);
        let baseline = BaselineMetrics::new(&self.metrics, partition);
        let result = futures::stream::once(async move {
            let _timer = baseline.elapsed_compute().timer();
            let output = if empty {
                minitrue_storage::AggregateOutput::default()
            } else {
                engine
                    .aggregate(request)
                    .await
                    .map_err(|e| crate::error::QueryError::Storage(e).into_datafusion())?
            };
            chunks.add(output.chunks_from_stats as usize);
            segments.add(output.segments_from_stats as usize);
            stats_points.add(output.points_from_stats as usize);
            decoded.add(output.points_decoded as usize);
            let batch = build_batch(&schema, &groups, &aggregates, partial, output.groups)?;
            baseline.record_output(batch.num_rows());
            baseline.done();
            Ok(batch)
        });
        Ok(Box::pin(RecordBatchStreamAdapter::new(self.schema.clone(), result)))
    }

    fn metrics(&self) -> Option<MetricsSet> {
        Some(self.metrics.clone_inner())
    }
}

/// Key of an output row: the grouped parts of (device, metric, bucket).
type RowKey = (Option<Arc<str>>, Option<Arc<str>>, Option<i64>);

fn build_batch(
    schema: &SchemaRef,
    groups: &[GroupColumn],
    aggregates: &[AggregateOutput],
    partial: bool,
    series_groups: Vec<GroupAggregate>,
) -> DfResult<RecordBatch> {
    let by_device = groups.iter().any(|g| matches!(g, GroupColumn::Device));
    let by_metric = groups.iter().any(|g| matches!(g, GroupColumn::Metric));
    let mut rows: BTreeMap<RowKey, ValueAggregate> = BTreeMap::new();
    for group in series_groups {
        let key = (
            by_device.then(|| group.series.device_id_arc().clone()),
            by_metric.then(|| group.series.metric_arc().clone()),
            group.bucket,
        );
        rows.entry(key).or_default().merge(&group.value);
    }
    // Without GROUP BY, SQL returns one row even over no rows.
    if groups.is_empty() && rows.is_empty() {
        rows.insert((None, None, None), ValueAggregate::default());
    }
    let mut columns: Vec<ArrayRef> = Vec::with_capacity(groups.len() + aggregates.len());
    for (index, group) in groups.iter().enumerate() {
        let column: ArrayRef = match group {
            GroupColumn::Device => {
                Arc::new(rows.keys().map(|k| k.0.as_deref()).collect::<StringArray>())
            }
            GroupColumn::Metric => {
                Arc::new(rows.keys().map(|k| k.1.as_deref()).collect::<StringArray>())
            }
            GroupColumn::Bucket(_) => {
                let time_zone = match schema.field(index).data_type() {
                    DataType::Timestamp(_, time_zone) => time_zone.clone(),
                    other => {
                        return Err(DataFusionError::Internal(format!(
                            "time bucket column of type {other}"
                        )))
                    }
                };
                Arc::new(
                    rows.keys()
                        .map(|k| k.2)
                        .collect::<TimestampNanosecondArray>()
                        .with_timezone_opt(time_zone),
                )
            }
        };
        columns.push(column);
    }
    // A state's exact sum: its bytes, NULL over no rows (as the accumulator's state is).
    let sum_states = || -> ArrayRef {
        Arc::new(
            rows.values()
                .map(|v| (v.count > 0).then(|| v.sum.to_bytes()))
                .collect::<arrow::array::BinaryArray>(),
        )
    };
    for aggregate in aggregates {
        let values = rows.values();
        if partial && matches!(aggregate, AggregateOutput::Sum | AggregateOutput::Avg) {
            if *aggregate == AggregateOutput::Avg {
                let counts = values.map(|v| v.count).collect::<arrow::array::UInt64Array>();
                columns.push(Arc::new(counts));
            }
            columns.push(sum_states());
            continue;
        }
        let column: ArrayRef = match aggregate {
            AggregateOutput::Count => {
                Arc::new(values.map(|v| v.count as i64).collect::<Int64Array>())
            }
            AggregateOutput::Sum => Arc::new(
                values.map(|v| (v.count > 0).then(|| v.sum.to_f64())).collect::<Float64Array>(),
            ),
            AggregateOutput::Avg => Arc::new(values.map(|v| v.mean()).collect::<Float64Array>()),
            AggregateOutput::Min => {
                Arc::new(values.map(|v| (v.count > 0).then_some(v.min)).collect::<Float64Array>())
            }
            AggregateOutput::Max => {
                Arc::new(values.map(|v| (v.count > 0).then_some(v.max)).collect::<Float64Array>())
            }
        };
        columns.push(column);
    }
    // Cast where the replaced plan's types differ in representation only (never expected).
    let columns = columns
        .into_iter()
        .zip(schema.fields())
        .map(|(column, field)| {
            if column.data_type() == field.data_type() {
                Ok(column)
            } else {
                Err(DataFusionError::Internal(format!(
                    "fast path column {} is {}, expected {}",
                    field.name(),
                    column.data_type(),
                    field.data_type()
                )))
            }
        })
        .collect::<DfResult<Vec<_>>>()?;
    Ok(RecordBatch::try_new(schema.clone(), columns)?)
}
