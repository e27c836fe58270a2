//! Distributed reads: every node answers every query with the whole cluster's data.
//!
//! In a cluster each series lives on the owners of its range of the hash ring. A query on
//! `readings` is planned as usual; then the [`DistributeReadings`] physical optimizer rule
//! asks the cluster ([`FragmentRunner::assign`]) for exactly one live owner per range (the
//! answering node first, so a node that owns everything reads alone) and replaces the part
//! of the plan that can run where the data is by a [`DistributedExec`]. That part, the
//! *fragment*, is sent to each chosen peer as a DataFusion physical plan (`datafusion-proto`)
//! whose scans are restricted to the peer's share of the ring; the answering node runs its own
//! share in place. The fragment is, from the top of the plan down, the first of:
//!
//! * an aggregate grouped by `device_id` and `metric` (a group's rows all live on one node):
//!   the whole aggregate, answered where it runs (with the aggregate fast path there);
//! * a partial aggregate (`AggregateExec` in `Partial` mode): each node sends its partial
//!   states (for `avg`, a sum and a count per group) and the final aggregate above the
//!   `DistributedExec` merges them, so an aggregate over millions of points moves a few rows;
//! * a sort with a limit (top-k): each node sends its own top k, and the sort runs again
//!   above the `DistributedExec`;
//! * the scan with the filters and projections right above it: the rows themselves.
//!
//! A peer that fails before sending its first batch is replaced by other live owners of its
//! ranges; a range with no live owner left fails the query ([`ErrorKind::Unavailable`]):
//! never a silently partial answer. A peer that fails part-way fails the query too (its rows
//! cannot be taken back).
//!
//! `EXPLAIN` shows the `DistributedExec` with each node's share of the ring and the fragment
//! below it; `EXPLAIN ANALYZE` adds the rows and bytes that came from peers.

use std::fmt;
use std::sync::Arc;

use arrow::array::{RecordBatch, RecordBatchOptions};
use arrow::datatypes::SchemaRef;
use async_trait::async_trait;
use datafusion::common::config::ConfigOptions;
use datafusion::common::tree_node::{Transformed, TreeNode, TreeNodeRecursion};
use datafusion::error::{DataFusionError, Result as DfResult};
use datafusion::execution::TaskContext;
use datafusion::physical_expr::expressions::Column;
use datafusion::physical_expr::{EquivalenceProperties, PhysicalExpr};
use datafusion::physical_optimizer::PhysicalOptimizerRule;
use datafusion::physical_plan::aggregates::{AggregateExec, AggregateMode};
use datafusion::physical_plan::execution_plan::{Boundedness, EmissionType};
use datafusion::physical_plan::limit::GlobalLimitExec;
use datafusion::physical_plan::metrics::{
    Count, ExecutionPlanMetricsSet, MetricBuilder, MetricsSet,
};
use datafusion::physical_plan::repartition::RepartitionExec;
use datafusion::physical_plan::sorts::sort::SortExec;
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::{
    execute_stream, ChildrenPropertiesMode, DisplayAs, DisplayFormatType, ExecutionPlan,
    ExecutionPlanProperties, Partitioning, PlanProperties, ReplaceChildrenOptions,
    SendableRecordBatchStream,
};
use datafusion::prelude::SessionContext;
use datafusion_proto::physical_plan::{PhysicalExtensionCodec, PhysicalProtoConverterExtension};
use futures::stream::BoxStream;
use futures::{StreamExt, TryStreamExt};
use minitrue_common::{series_token, ErrorKind, TimeRange, TokenSet};
use minitrue_storage::Engine;
use serde::{Deserialize, Serialize};

use crate::aggregate::{below_exchanges, AggregateFastPath, MiniTrueOptions};
use crate::cluster::ClusterError;
use crate::error::QueryError;
use crate::pushdown::{ScanBounds, DEVICE_ID, METRIC};
use crate::readings::{tokens_display, ReadingsScanExec};

/// The plan name of [`DistributedExec`].
pub const DISTRIBUTED_EXEC: &str = "DistributedExec";

/// What a Flight `DoGet` ticket starts with when it carries a plan fragment (the rest is the
/// [`FragmentRunner::run`] payload).
pub const FRAGMENT_TICKET_PREFIX: &[u8] = b"minitrue.fragment.v1\0";

/// What the SQL layer needs from the cluster to read: who answers for which ranges, and a
/// way to run a fragment on a peer. The `cluster` crate implements it over the ring and
/// Arrow Flight.
#[async_trait]
pub trait FragmentRunner: Send + Sync + fmt::Debug {
    /// Exactly one live owner for every range of the ring inside `within`, none of them in
    /// `excluding`, the answering node wherever it is an owner. Fails (kind `Unavailable`)
    /// when some range has no such owner.
    fn assign(&self, within: &TokenSet, excluding: &[String]) -> Result<Vec<Share>, ClusterError>;

    /// Runs `payload` (see [`execute_fragment`]) on `node` and streams its batches with
    /// their size on the wire. A node that cannot be reached fails with kind `Unavailable`.
    async fn run(&self, node: &str, payload: Vec<u8>) -> Result<RemoteBatches, ClusterError>;
}

/// Batches from a peer, each with the bytes it took on the wire.
pub type RemoteBatches = BoxStream<'static, Result<(RecordBatch, usize), ClusterError>>;

/// One node's part of a distributed query.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Share {
    pub node: String,
    /// The answering node itself (runs in place, nothing is sent).
    pub local: bool,
    pub tokens: TokenSet,
}

/// Replaces the part of a plan over `readings` that can run where the data lives by a
/// [`DistributedExec`] (see the module documentation).
#[derive(Debug)]
pub struct DistributeReadings {
    runner: Arc<dyn FragmentRunner>,
    codec: Arc<ReadingsCodec>,
}

impl DistributeReadings {
    pub(crate) fn new(runner: Arc<dyn FragmentRunner>, codec: Arc<ReadingsCodec>) -> Self {
        DistributeReadings { runner, codec }
    }
}

impl PhysicalOptimizerRule for DistributeReadings {
    fn optimize(
        &self,
        plan: Arc<dyn ExecutionPlan>,
        _config: &ConfigOptions,
    ) -> DfResult<Arc<dyn ExecutionPlan>> {
        // Only the owners of the series the query names are asked (a query for one sensor
        // goes to one node). Nothing to ask: no `readings` scan, or filters that name no
        // series (the local scan finds nothing).
        let within = scanned_tokens(&plan);
        if within.is_empty() {
            return Ok(plan);
        }
        let shares = self
            .runner
            .assign(&within, &[])
            .map_err(|error| QueryError::Cluster(error).into_datafusion())?;
        // Where this node owns every range asked, it answers alone: nothing to distribute.
        if matches!(shares.as_slice(), [share] if share.local) {
            return Ok(plan);
        }
        let distribute = |node: &Arc<dyn ExecutionPlan>| -> DfResult<Arc<dyn ExecutionPlan>> {
            let exec = Arc::new(DistributedExec::new(
                node.clone(),
                shares.clone(),
                self.runner.clone(),
                self.codec.clone(),
            ));
            // The parent may rely on the replaced node's partitioning (a partitioned hash
            // join): restore it.
            let wanted = node.output_partitioning();
            Ok(if wanted.partition_count() > 1 {
                Arc::new(RepartitionExec::try_new(exec, wanted.clone())?)
            } else {
                exec
            })
        };
        plan.transform_down(|node| {
            if let Some(aggregate) = node.downcast_ref::<AggregateExec>() {
                let partial = *aggregate.mode() == AggregateMode::Partial;
                if groups_whole_series(aggregate) || (partial && row_local(aggregate.input())) {
                    return Ok(Transformed::new(distribute(&node)?, true, TreeNodeRecursion::Jump));
                }
            }
            if let Some(sort) = node.downcast_ref::<SortExec>() {
                if sort.fetch().is_some()
                    && !sort.preserve_partitioning()
                    && row_local(sort.input())
                {
                    // Each node's top k, then the top k of those.
                    let merged = SortExec::new(sort.expr().clone(), distribute(&node)?)
                        .with_fetch(sort.fetch());
                    return Ok(Transformed::new(Arc::new(merged), true, TreeNodeRecursion::Jump));
                }
            }
            if row_local(&node) {
                return Ok(Transformed::new(distribute(&node)?, true, TreeNodeRecursion::Jump));
            }
            if node.downcast_ref::<ReadingsScanExec>().is_some_and(|scan| !scan.local_only()) {
                // A scan with a limit: each node's first rows, then the limit again.
                let limited = GlobalLimitExec::new(distribute(&node)?, 0, node.fetch());
                return Ok(Transformed::new(Arc::new(limited), true, TreeNodeRecursion::Jump));
            }
            Ok(Transformed::no(node))
        })
        .map(|transformed| transformed.data)
    }

    fn name(&self) -> &str {
        "minitrue_distribute_readings"
    }

    fn schema_check(&self) -> bool {
        true
    }
}

/// The ring positions `plan`'s `readings` scans can touch: the series their filters name
/// where both `device_id` and `metric` are bounded (`=`, `IN`), otherwise the whole ring;
/// nothing when the plan scans no `readings` (`system.local_readings` is never distributed).
fn scanned_tokens(plan: &Arc<dyn ExecutionPlan>) -> TokenSet {
    fn visit(plan: &Arc<dyn ExecutionPlan>, tokens: &mut TokenSet) {
        if let Some(scan) = plan.downcast_ref::<ReadingsScanExec>() {
            if scan.local_only() {
                return;
            }
            let bounds = scan.bounds();
            let named = match (&bounds.device_ids, &bounds.metrics) {
                (Some(devices), Some(metrics)) => TokenSet::from_intervals(
                    devices
                        .iter()
                        .flat_map(|d| metrics.iter().map(move |m| series_token(d, m)))
                        .map(|token| (token, token)),
                ),
                _ => TokenSet::all(),
            };
            *tokens = tokens.union(&named);
            return;
        }
        for child in plan.children() {
            visit(child, tokens);
        }
    }
    let mut tokens = TokenSet::empty();
    visit(plan, &mut tokens);
    tokens
}

/// Operators that work row by row (or only move batches): what gives the same rows whether
/// it runs on each node's share or on all of them.
const ROW_LOCAL: &[&str] =
    &["FilterExec", "ProjectionExec", "CoalesceBatchesExec", "RepartitionExec", "CooperativeExec"];

/// The [`ROW_LOCAL`] operators that keep the scan's column names (no projection).
const NAME_KEEPING: &[&str] =
    &["FilterExec", "CoalesceBatchesExec", "RepartitionExec", "CooperativeExec"];

/// Whether `plan` is a chain of `passes` operators down to one `readings` scan of the whole
/// cluster. A limit anywhere (a fetch) breaks the chain: it counts across all nodes.
fn chain_to_scan(plan: &Arc<dyn ExecutionPlan>, passes: &[&str]) -> bool {
    if plan.fetch().is_some() {
        return false;
    }
    if let Some(scan) = plan.downcast_ref::<ReadingsScanExec>() {
        return !scan.local_only();
    }
    match plan.children().as_slice() {
        [child] if passes.contains(&plan.name()) => chain_to_scan(child, passes),
        _ => false,
    }
}

fn row_local(plan: &Arc<dyn ExecutionPlan>) -> bool {
    chain_to_scan(plan, ROW_LOCAL)
}

/// Whether `aggregate` (a whole one: `Single`, or `Final` over its `Partial`) groups by both
/// `device_id` and `metric` of the scan below, so that each of its groups is whole on one node.
fn groups_whole_series(aggregate: &AggregateExec) -> bool {
    if aggregate.limit_options().is_some() {
        return false;
    }
    match aggregate.mode() {
        AggregateMode::Single | AggregateMode::SinglePartitioned => {
            raw_groups_whole_series(aggregate)
        }
        AggregateMode::Final | AggregateMode::FinalPartitioned => {
            let below = below_exchanges(aggregate.input());
            match below.downcast_ref::<AggregateExec>() {
                Some(partial) if *partial.mode() == AggregateMode::Partial => {
                    raw_groups_whole_series(partial)
                }
                _ => false,
            }
        }
        AggregateMode::Partial | AggregateMode::PartialReduce => false,
    }
}

fn raw_groups_whole_series(raw: &AggregateExec) -> bool {
    if !raw.group_expr().is_single()
        || raw.limit_options().is_some()
        || !chain_to_scan(raw.input(), NAME_KEEPING)
    {
        return false;
    }
    let input = raw.input().schema();
    let names: Vec<&str> = raw
        .group_expr()
        .expr()
        .iter()
        .filter_map(|(expr, _)| expr.downcast_ref::<Column>())
        .filter_map(|column| input.fields().get(column.index()).map(|f| f.name().as_str()))
        .collect();
    names.contains(&DEVICE_ID) && names.contains(&METRIC)
}

/// Runs a fragment on the nodes of a [`Share`] list and merges what they send (one output
/// partition). The fragment is its only child, as the answering node would run it whole.
pub struct DistributedExec {
    fragment: Arc<dyn ExecutionPlan>,
    shares: Vec<Share>,
    runner: Arc<dyn FragmentRunner>,
    codec: Arc<ReadingsCodec>,
    schema: SchemaRef,
    properties: Arc<PlanProperties>,
    metrics: ExecutionPlanMetricsSet,
}

impl fmt::Debug for DistributedExec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DistributedExec").field("shares", &self.shares).finish()
    }
}

impl DistributedExec {
    fn new(
        fragment: Arc<dyn ExecutionPlan>,
        shares: Vec<Share>,
        runner: Arc<dyn FragmentRunner>,
        codec: Arc<ReadingsCodec>,
    ) -> Self {
        let schema = fragment.schema();
        let properties = PlanProperties::new(
            EquivalenceProperties::new(schema.clone()),
            Partitioning::UnknownPartitioning(1),
            EmissionType::Incremental,
            Boundedness::Bounded,
        );
        DistributedExec {
            fragment,
            shares,
            runner,
            codec,
            schema,
            properties: Arc::new(properties),
            metrics: ExecutionPlanMetricsSet::new(),
        }
    }

    /// The nodes asked and their shares of the ring.
    pub fn shares(&self) -> &[Share] {
        &self.shares
    }
}

impl DisplayAs for DistributedExec {
    fn fmt_as(&self, t: DisplayFormatType, f: &mut fmt::Formatter) -> fmt::Result {
        let nodes: Vec<String> = self
            .shares
            .iter()
            .map(|share| {
                let local = if share.local { " (local)" } else { "" };
                format!("{}{local} {:.1}%", share.node, share.tokens.share() * 100.0)
            })
            .collect();
        match t {
            DisplayFormatType::Default | DisplayFormatType::Verbose => {
                write!(f, "DistributedExec: one live owner per range, nodes=[{}]", nodes.join(", "))
            }
            DisplayFormatType::TreeRender => write!(f, "nodes=[{}]", nodes.join(", ")),
        }
    }
}

/// Counters of one execution, shared by the node streams.
#[derive(Clone)]
struct ShareMetrics {
    local_rows: Count,
    remote_rows: Count,
    remote_bytes: Count,
    retried_nodes: Count,
}

/// What a node stream needs, cloned into it.
#[derive(Clone)]
struct FragmentJob {
    fragment: Arc<dyn ExecutionPlan>,
    schema: SchemaRef,
    runner: Arc<dyn FragmentRunner>,
    codec: Arc<ReadingsCodec>,
    context: Arc<TaskContext>,
    fast_path: bool,
    metrics: ShareMetrics,
}

impl FragmentJob {
    /// The rows of `share`; on a peer that cannot be reached before its first batch, the
    /// rows of its ranges from other live owners (never `excluding` ones).
    fn share_stream(
        self,
        share: Share,
        excluding: Vec<String>,
    ) -> BoxStream<'static, DfResult<RecordBatch>> {
        if share.local {
            return futures::stream::once(async move { self.local_stream(&share.tokens) })
                .try_flatten()
                .boxed();
        }
        futures::stream::once(async move {
            let payload = self.payload(&share.tokens)?;
            let first_failure = match self.runner.run(&share.node, payload).await {
                Ok(mut remote) => match remote.next().await {
                    None => return Ok(futures::stream::empty().boxed()),
                    Some(Ok(first)) => {
                        let job = self.clone();
                        let rows = futures::stream::once(async { Ok(first) })
                            .chain(remote)
                            .map(move |item| job.received(item));
                        return Ok(rows.boxed());
                    }
                    Some(Err(error)) => error,
                },
                Err(error) => error,
            };
            if first_failure.kind != ErrorKind::Unavailable {
                return Err(QueryError::Cluster(first_failure).into_datafusion());
            }
            tracing::warn!(node = %share.node, error = %first_failure.message, "asking other owners for a peer's ranges");
            self.metrics.retried_nodes.add(1);
            let mut excluding = excluding;
            excluding.push(share.node.clone());
            let others = self
                .runner
                .assign(&share.tokens, &excluding)
                .map_err(|error| QueryError::Cluster(error).into_datafusion())?;
            let streams: Vec<_> = others
                .into_iter()
                .map(|other| self.clone().share_stream(other, excluding.clone()))
                .collect();
            Ok(futures::stream::select_all(streams).boxed())
        })
        .try_flatten()
        .boxed()
    }

    /// This node's share, run in place.
    fn local_stream(
        &self,
        tokens: &TokenSet,
    ) -> DfResult<BoxStream<'static, DfResult<RecordBatch>>> {
        let mut plan = restrict_to(self.fragment.clone(), tokens)?;
        if self.fast_path {
            plan = AggregateFastPath.optimize(plan, self.context.session_config().options())?;
        }
        let rows = self.metrics.local_rows.clone();
        Ok(execute_stream(plan, self.context.clone())?
            .inspect_ok(move |batch| rows.add(batch.num_rows()))
            .boxed())
    }

    fn payload(&self, tokens: &TokenSet) -> DfResult<Vec<u8>> {
        let plan = restrict_to(self.fragment.clone(), tokens)?;
        encode_fragment(plan, &self.codec, self.fast_path)
    }

    /// A peer's batch in this plan's schema (the same columns; names and metadata may differ
    /// after the trip).
    fn received(&self, item: Result<(RecordBatch, usize), ClusterError>) -> DfResult<RecordBatch> {
        let (batch, wire_bytes) =
            item.map_err(|error| QueryError::Cluster(error).into_datafusion())?;
        self.metrics.remote_rows.add(batch.num_rows());
        self.metrics.remote_bytes.add(wire_bytes);
        // With the row count: a fragment may send rows without columns (`count(*)`).
        let options = RecordBatchOptions::new().with_row_count(Some(batch.num_rows()));
        RecordBatch::try_new_with_options(self.schema.clone(), batch.columns().to_vec(), &options)
            .map_err(|error| {
                DataFusionError::Execution(format!("a peer sent batches of another shape: {error}"))
            })
    }
}

impl ExecutionPlan for DistributedExec {
    fn name(&self) -> &str {
        DISTRIBUTED_EXEC
    }

    fn properties(&self) -> &Arc<PlanProperties> {
        &self.properties
    }

    fn children(&self) -> Vec<&Arc<dyn ExecutionPlan>> {
        vec![&self.fragment]
    }

    fn apply_expressions(
        &self,
        _f: &mut dyn FnMut(&Arc<dyn PhysicalExpr>) -> DfResult<TreeNodeRecursion>,
    ) -> DfResult<TreeNodeRecursion> {
        Ok(TreeNodeRecursion::Continue)
    }

    fn replace_children(
        self: Arc<Self>,
        mut children: Vec<Arc<dyn ExecutionPlan>>,
        _options: ReplaceChildrenOptions,
    ) -> DfResult<Arc<dyn ExecutionPlan>> {
        match (children.pop(), children.is_empty()) {
            (Some(fragment), true) => Ok(Arc::new(DistributedExec::new(
                fragment,
                self.shares.clone(),
                self.runner.clone(),
                self.codec.clone(),
            ))),
            _ => Err(DataFusionError::Internal("DistributedExec has one child".into())),
        }
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
        context: Arc<TaskContext>,
    ) -> DfResult<SendableRecordBatchStream> {
        if partition != 0 {
            return Err(DataFusionError::Internal(format!(
                "DistributedExec has one partition, asked for {partition}"
            )));
        }
        let counter =
            |name: &'static str| MetricBuilder::new(&self.metrics).counter(name, partition);
        let fast_path = context
            .session_config()
            .options()
            .extensions
            .get::<MiniTrueOptions>()
            .is_none_or(|options| options.aggregate_fast_path);
        let job = FragmentJob {
            fragment: self.fragment.clone(),
            schema: self.schema.clone(),
            runner: self.runner.clone(),
            codec: self.codec.clone(),
            context,
            fast_path,
            metrics: ShareMetrics {
                local_rows: counter("local_rows"),
                remote_rows: counter("remote_rows"),
                remote_bytes: counter("remote_bytes"),
                retried_nodes: counter("retried_nodes"),
            },
        };
        let streams: Vec<_> = self
            .shares
            .iter()
            .map(|share| job.clone().share_stream(share.clone(), Vec::new()))
            .collect();
        let merged = futures::stream::select_all(streams);
        Ok(Box::pin(RecordBatchStreamAdapter::new(self.schema.clone(), merged)))
    }

    fn metrics(&self) -> Option<MetricsSet> {
        Some(self.metrics.clone_inner())
    }
}

/// `plan` with every `readings` scan keeping only the series on `tokens`.
fn restrict_to(
    plan: Arc<dyn ExecutionPlan>,
    tokens: &TokenSet,
) -> DfResult<Arc<dyn ExecutionPlan>> {
    plan.transform_up(|node| match node.downcast_ref::<ReadingsScanExec>() {
        Some(scan) => Ok(Transformed::yes(Arc::new(scan.with_tokens(tokens.clone())?) as _)),
        None => Ok(Transformed::no(node)),
    })
    .map(|transformed| transformed.data)
}

/// The fragment payload: a flags byte (bit 0: the aggregate fast path is on), then the
/// physical plan as `datafusion-proto` bytes.
fn encode_fragment(
    plan: Arc<dyn ExecutionPlan>,
    codec: &ReadingsCodec,
    fast_path: bool,
) -> DfResult<Vec<u8>> {
    let plan = datafusion_proto::bytes::physical_plan_to_bytes_with_extension_codec(plan, codec)?;
    let mut payload = Vec::with_capacity(plan.len() + 1);
    payload.push(u8::from(fast_path));
    payload.extend_from_slice(&plan);
    Ok(payload)
}

/// A fragment's flag: not a plan but the `devices` rows of the series on a JSON
/// [`TokenSet`] (see [`crate::tables::cluster_devices_table`]).
const DEVICES_FRAGMENT: u8 = 2;

/// The fragment asking a peer for its `devices` rows on `tokens`.
pub(crate) fn devices_payload(tokens: &TokenSet) -> Vec<u8> {
    let mut payload = vec![DEVICES_FRAGMENT];
    // A TokenSet is plain integers: it always serializes.
    payload.extend(serde_json::to_vec(tokens).unwrap_or_default());
    payload
}

/// Runs a fragment a peer sent (the payload of a [`FRAGMENT_TICKET_PREFIX`] ticket) on this
/// node's engine, as the answering node asked: its scans already restricted to this node's
/// share. Fails with [`ErrorKind::InvalidInput`] for a payload that is not a fragment.
pub fn execute_fragment(
    ctx: &SessionContext,
    payload: &[u8],
) -> Result<SendableRecordBatchStream, QueryError> {
    let invalid =
        |reason: String| QueryError::Unsupported { reason: format!("plan fragment: {reason}") };
    let Some((&flags, plan)) = payload.split_first() else {
        return Err(invalid("empty".into()));
    };
    let state = ctx.state();
    let codec = state
        .config()
        .get_extension::<ReadingsCodec>()
        .ok_or_else(|| invalid("this session has no readings table".into()))?;
    if flags & DEVICES_FRAGMENT != 0 {
        let tokens: TokenSet =
            serde_json::from_slice(plan).map_err(|error| invalid(error.to_string()))?;
        let schema = crate::tables::devices_schema();
        let batch = crate::tables::devices_batch(&codec.engine.0, &schema, &tokens)
            .map_err(DataFusionError::from)?;
        let stream = futures::stream::once(async move { Ok(batch) });
        return Ok(Box::pin(RecordBatchStreamAdapter::new(schema, stream)));
    }
    crate::fragment_check::check_fragment(plan).map_err(invalid)?;
    let task = ctx.task_ctx();
    let mut plan = datafusion_proto::bytes::physical_plan_from_bytes_with_extension_codec(
        plan,
        &task,
        codec.as_ref(),
    )
    .map_err(|error| invalid(error.to_string()))?;
    if flags & 1 == 1 {
        plan = AggregateFastPath.optimize(plan, state.config_options())?;
    }
    Ok(execute_stream(plan, task)?)
}

/// Encodes and decodes MiniTrue's plan nodes inside fragments (DataFusion's own travel as
/// `datafusion-proto` defines them). Decoding binds scans to this node's engine.
#[derive(Debug)]
pub(crate) struct ReadingsCodec {
    engine: crate::readings::EngineRef,
}

impl ReadingsCodec {
    pub(crate) fn new(engine: Arc<Engine>) -> Self {
        ReadingsCodec { engine: crate::readings::EngineRef(engine) }
    }
}

/// A [`ReadingsScanExec`] on the wire.
#[derive(Serialize, Deserialize)]
struct EncodedScan {
    device_ids: Option<Vec<String>>,
    metrics: Option<Vec<String>>,
    time_start: i64,
    time_end: i64,
    projection: Option<Vec<usize>>,
    limit: Option<usize>,
    batch_rows: usize,
    tokens: Option<TokenSet>,
}

impl PhysicalExtensionCodec for ReadingsCodec {
    fn try_decode(
        &self,
        buf: &[u8],
        inputs: &[Arc<dyn ExecutionPlan>],
        _ctx: &TaskContext,
        _proto_converter: &dyn PhysicalProtoConverterExtension,
    ) -> DfResult<Arc<dyn ExecutionPlan>> {
        if !inputs.is_empty() {
            return Err(DataFusionError::Plan("a readings scan has no inputs".into()));
        }
        let scan: EncodedScan = serde_json::from_slice(buf)
            .map_err(|error| DataFusionError::Plan(format!("not a readings scan: {error}")))?;
        let bounds = ScanBounds {
            device_ids: scan.device_ids.map(|ids| ids.into_iter().collect()),
            metrics: scan.metrics.map(|metrics| metrics.into_iter().collect()),
            time: TimeRange::new(scan.time_start, scan.time_end),
        };
        let exec = ReadingsScanExec::new(
            self.engine.0.clone(),
            bounds,
            scan.projection,
            scan.limit,
            scan.batch_rows.max(1),
        )?;
        let exec = match scan.tokens {
            Some(tokens) => exec.with_tokens(tokens)?,
            None => exec,
        };
        Ok(Arc::new(exec))
    }

    fn try_encode(
        &self,
        node: Arc<dyn ExecutionPlan>,
        buf: &mut Vec<u8>,
        _proto_converter: &dyn PhysicalProtoConverterExtension,
    ) -> DfResult<()> {
        let Some(scan) = node.downcast_ref::<ReadingsScanExec>() else {
            return Err(DataFusionError::NotImplemented(format!(
                "{} cannot be sent to another node",
                node.name()
            )));
        };
        let bounds = scan.bounds();
        let encoded = EncodedScan {
            device_ids: bounds.device_ids.as_ref().map(|ids| ids.iter().cloned().collect()),
            metrics: bounds.metrics.as_ref().map(|metrics| metrics.iter().cloned().collect()),
            time_start: bounds.time.start,
            time_end: bounds.time.end,
            projection: scan.projection().cloned(),
            limit: scan.fetch(),
            batch_rows: scan.batch_rows(),
            tokens: scan.tokens().cloned(),
        };
        serde_json::to_writer(buf, &encoded).map_err(|error| {
            DataFusionError::Internal(format!("encoding a readings scan: {error}"))
        })
    }
}

impl fmt::Display for Share {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.node, tokens_display(&self.tokens))
    }
}
