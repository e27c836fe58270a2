//! MiniTrue's SQL layer: a DataFusion session over the storage engine.
//!
//! Data flow: the protocol servers (pgwire, Flight SQL, HTTP — crate `server`) take SQL from
//! clients and run it in the [`SessionContext`] built by [`session`]. DataFusion parses and
//! plans it; the `readings` table ([`ReadingsTable`]) turns the `WHERE` clause on
//! `device_id`, `metric` and `time` into a storage [`ScanRequest`](minitrue_storage::ScanRequest)
//! ([`pushdown`]) and streams [`Engine::scan`] batches through a [`ReadingsScanExec`] into
//! DataFusion's operators. `INSERT` goes to [`Engine::write`], `DELETE` to
//! [`Engine::delete`]. `devices` and `system.*` are read from the engine's in-memory state
//! (last-value cache, manifest, counters), never by scanning points. MiniTrue's functions
//! (`time_bucket`, `first`, `last`) are registered in the same session ([`functions`]).
//!
//! This crate decides nothing about protocols: errors come back as [`QueryError`] with a
//! [`kind`](QueryError::kind) that the servers map to SQLSTATE / HTTP / gRPC codes.

pub mod aggregate;
mod client_sql;
pub mod cluster;
pub mod distributed;
pub mod error;
mod fragment_check;
pub mod functions;
mod guard;
pub mod pushdown;
mod readings;
mod tables;

use std::collections::HashMap;
use std::sync::Arc;

use arrow::array::RecordBatch;
use async_trait::async_trait;
use datafusion::catalog::{CatalogProvider, MemoryCatalogProvider, SchemaProvider, TableProvider};
use datafusion::error::{DataFusionError, Result as DfResult};
use datafusion::execution::SendableRecordBatchStream;
use datafusion::prelude::{SQLOptions, SessionConfig, SessionContext};
use minitrue_common::MetricsRegistry;
use minitrue_storage::Engine;

pub use aggregate::{MiniTrueOptions, ReadingsAggregateExec};
pub use client_sql::{
    check_client_sql_statement, check_client_statement, check_privilege, plan_client_sql,
    sql_statement_deletes, statement_deletes, Privilege,
};
pub use cluster::{ClusterError, ClusterHooks, ClusterInfo, NodeInfo, PointWriter, RangeInfo};
pub use distributed::{
    execute_fragment, FragmentRunner, RemoteBatches, Share, FRAGMENT_TICKET_PREFIX,
};
pub use error::{QueryError, Result};
pub use guard::DeleteGuard;
pub use pushdown::ScanBounds;
pub use readings::{
    batch_to_points, delete_counted, DeleteExec, ReadingsScanExec, ReadingsTable, STORAGE_ROWS,
};

/// How a session is set up. [`QueryOptions::default`] is what a node uses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueryOptions {
    /// Name of the catalog holding `public` and `system` (what pg clients see as the
    /// database). Default `minitrue`.
    pub catalog: String,
    /// Session time zone: `timestamptz` literals without an offset, `now()` and the type of
    /// `CAST(… AS TIMESTAMPTZ)` use it. Default `UTC` (the zone of `readings.time`).
    pub time_zone: String,
    /// Target rows per batch of a `readings` scan. Default 8192.
    pub scan_batch_rows: usize,
    /// Rows per engine write (one WAL record) of an `INSERT`; statements up to this size are
    /// atomic. Default 65 536.
    pub insert_chunk_rows: usize,
    /// DataFusion's parallelism for operators above the scans; `None` = number of cores.
    pub target_partitions: Option<usize>,
}

impl Default for QueryOptions {
    fn default() -> Self {
        QueryOptions {
            catalog: "minitrue".to_string(),
            time_zone: "UTC".to_string(),
            scan_batch_rows: 8192,
            insert_chunk_rows: 64 * 1024,
            target_partitions: None,
        }
    }
}

/// Builds a DataFusion session over `engine`:
///
/// * `<catalog>.public.readings(time TIMESTAMP(ns, 'UTC') NOT NULL, device_id TEXT NOT NULL,
///   metric TEXT NOT NULL, value DOUBLE NOT NULL)` — [`ReadingsTable`];
/// * `<catalog>.public.devices(device_id, metric, first_time, last_time, last_value, points)`
///   — the last-value cache (in a cluster, gathered from one owner of each range);
/// * `<catalog>.system.files`, `system.storage` (engine and WAL counters, one row) and
///   `system.series` (this node's own series: outside a cluster the same rows as `devices`),
///   `system.metrics` (every counter and gauge of the node, as `GET /metrics` serves them);
/// * `information_schema`, MiniTrue's functions, and the [`DeleteGuard`].
///
/// The session never reaches the server's files: it has no file formats and no table
/// factories (`COPY … TO` and `CREATE EXTERNAL TABLE` find nothing to write or read with), its
/// runtime has no local file system ([`NoFileSystem`]), and its schemas hold the built-in
/// tables only (creating, replacing or dropping a table fails). Client statements are checked
/// before that by [`check_client_statement`]. A session may be shared by many connections
/// (`SessionContext` is cheap to clone and thread-safe).
pub async fn session(engine: Arc<Engine>, options: QueryOptions) -> Result<SessionContext> {
    let metrics = MetricsRegistry::new();
    metrics.register(engine.clone());
    session_with_metrics(engine, options, metrics).await
}

/// Like [`session`], with `system.metrics` serving `metrics` (the node's registry, which the
/// caller fills with the engine, the ingest doors and whatever else it runs).
pub async fn session_with_metrics(
    engine: Arc<Engine>,
    options: QueryOptions,
    metrics: MetricsRegistry,
) -> Result<SessionContext> {
    session_in_cluster(engine, options, metrics, None).await
}

/// Like [`session_with_metrics`], for a node in a cluster: `system.nodes` and `system.ring`
/// show `cluster`'s view, `INSERT INTO readings` writes through its writer ([`cluster`]),
/// reads of `readings` span the cluster through its runner ([`distributed`]), and
/// `system.local_readings` (read-only) shows the points this node itself stores. Without a
/// cluster those tables do not exist, inserts go to `engine` and reads read it.
pub async fn session_in_cluster(
    engine: Arc<Engine>,
    options: QueryOptions,
    metrics: MetricsRegistry,
    cluster: Option<ClusterHooks>,
) -> Result<SessionContext> {
    let mut config = SessionConfig::new()
        .with_default_catalog_and_schema(options.catalog.as_str(), "public")
        .with_create_default_catalog_and_schema(false)
        .with_information_schema(true);
    if let Some(partitions) = options.target_partitions {
        config = config.with_target_partitions(partitions.max(1));
    }
    config.options_mut().execution.time_zone = Some(options.time_zone.clone());
    // Fragments other nodes send are decoded against this engine (`execute_fragment`).
    let codec = Arc::new(distributed::ReadingsCodec::new(engine.clone()));
    let config = config
        .with_option_extension(aggregate::MiniTrueOptions::default())
        .with_extension(codec.clone());
    let runtime = datafusion::execution::runtime_env::RuntimeEnvBuilder::new()
        .with_object_store_registry(Arc::new(NoFileSystem))
        .build_arc()?;
    let mut state = datafusion::execution::SessionStateBuilder::new()
        .with_config(config)
        .with_runtime_env(runtime)
        .with_default_features()
        // After the defaults, which bring CSV/JSON/Parquet/Arrow/Avro readers and writers.
        .with_file_formats(Vec::new())
        .with_table_factories(HashMap::new());
    if let Some(runner) = cluster.as_ref().and_then(|hooks| hooks.runner.clone()) {
        // Before the fast path, which then leaves distributed fragments to the nodes that
        // run them.
        state = state.with_physical_optimizer_rule(Arc::new(distributed::DistributeReadings::new(
            runner, codec,
        )));
    }
    let state = state.with_physical_optimizer_rule(Arc::new(aggregate::AggregateFastPath)).build();
    let ctx = SessionContext::new_with_state(state);

    let mut readings =
        ReadingsTable::new(engine.clone(), options.scan_batch_rows, options.insert_chunk_rows);
    if let Some(hooks) = &cluster {
        readings = readings.with_writer(hooks.writer.clone());
    }
    let readings = Arc::new(readings);
    let local_devices: Arc<dyn TableProvider> =
        Arc::new(BaseTable(tables::devices_table(&engine)?));
    // In a cluster, `devices` holds the cluster's series and `system.series` this node's.
    let devices = match cluster.as_ref().and_then(|hooks| hooks.runner.clone()) {
        Some(runner) => Arc::new(BaseTable(tables::cluster_devices_table(&engine, runner)?)),
        None => local_devices.clone(),
    };
    let public = BuiltinSchema::new([
        ("readings", readings as Arc<dyn TableProvider>),
        ("devices", devices),
    ]);
    let mut system_tables = vec![
        ("files", tables::files_table(&engine)? as Arc<dyn TableProvider>),
        ("storage", tables::storage_table(&engine)? as Arc<dyn TableProvider>),
        ("series", local_devices),
        ("metrics", tables::metrics_table(metrics)? as Arc<dyn TableProvider>),
    ];
    if let Some(hooks) = cluster {
        let local_readings =
            ReadingsTable::new(engine.clone(), options.scan_batch_rows, options.insert_chunk_rows)
                .local_copy();
        system_tables.push(("local_readings", Arc::new(local_readings) as Arc<dyn TableProvider>));
        system_tables.push(("nodes", cluster::nodes_table(hooks.info.clone())?));
        system_tables.push(("ring", cluster::ring_table(hooks.info)?));
    }
    let system = BuiltinSchema::new(system_tables);
    let catalog = MemoryCatalogProvider::new();
    catalog.register_schema("public", Arc::new(public))?;
    catalog.register_schema("system", Arc::new(system))?;
    ctx.register_catalog(options.catalog.as_str(), Arc::new(catalog));

    functions::register(&ctx);
    // Order-independent sum/avg/min/max over doubles: what makes the aggregate fast path exact.
    for function in aggregate::ExactAggregate::all() {
        ctx.register_udaf(function);
    }
    ctx.add_analyzer_rule(Arc::new(DeleteGuard));
    tracing::debug!(catalog = %options.catalog, time_zone = %options.time_zone, "sql session ready");
    Ok(ctx)
}

/// A session plus conveniences that return [`QueryError`]s. Statements that create or drop
/// objects (DDL) are refused here; use [`QueryEngine::context`] for full DataFusion access.
#[derive(Clone)]
pub struct QueryEngine {
    ctx: SessionContext,
}

impl QueryEngine {
    pub async fn new(engine: Arc<Engine>, options: QueryOptions) -> Result<Self> {
        Ok(QueryEngine { ctx: session(engine, options).await? })
    }

    pub fn context(&self) -> &SessionContext {
        &self.ctx
    }

    fn sql_options() -> SQLOptions {
        SQLOptions::new().with_allow_ddl(false)
    }

    /// Runs one statement and streams its result (for `INSERT`/`DELETE`: one row, `count`).
    /// Dropping the stream cancels the query.
    pub async fn execute(&self, sql: &str) -> Result<SendableRecordBatchStream> {
        let frame = self.ctx.sql_with_options(sql, Self::sql_options()).await?;
        Ok(frame.execute_stream().await?)
    }

    /// Runs one statement and collects its result.
    pub async fn query(&self, sql: &str) -> Result<Vec<RecordBatch>> {
        let frame = self.ctx.sql_with_options(sql, Self::sql_options()).await?;
        Ok(frame.collect().await?)
    }
}

/// A schema whose tables are fixed: the built-in ones, no others. Creating, replacing or
/// dropping a table is refused (the session is shared by every client of a node, so a table
/// one client created would be every client's).
#[derive(Debug)]
struct BuiltinSchema {
    builtin: HashMap<String, Arc<dyn TableProvider>>,
}

impl BuiltinSchema {
    fn new<'a>(tables: impl IntoIterator<Item = (&'a str, Arc<dyn TableProvider>)>) -> Self {
        BuiltinSchema {
            builtin: tables.into_iter().map(|(name, table)| (name.to_string(), table)).collect(),
        }
    }

    fn refuse(&self, name: &str, action: &str) -> DataFusionError {
        let reason = match self.builtin.contains_key(name) {
            true => format!("{name} is a built-in table and cannot be {action}"),
            false => format!(
                "table {name} cannot be {action}: MiniTrue's tables are fixed and shared by every \
                 client"
            ),
        };
        QueryError::NotAllowed { reason }.into_datafusion()
    }
}

#[async_trait]
impl SchemaProvider for BuiltinSchema {
    fn table_names(&self) -> Vec<String> {
        let mut names: Vec<String> = self.builtin.keys().cloned().collect();
        names.sort();
        names
    }

    async fn table(&self, name: &str) -> DfResult<Option<Arc<dyn TableProvider>>> {
        Ok(self.builtin.get(name).cloned())
    }

    fn register_table(
        &self,
        name: String,
        _table: Arc<dyn TableProvider>,
    ) -> DfResult<Option<Arc<dyn TableProvider>>> {
        let action = match self.builtin.contains_key(&name) {
            true => "replaced",
            false => "created",
        };
        Err(self.refuse(&name, action))
    }

    fn deregister_table(&self, name: &str) -> DfResult<Option<Arc<dyn TableProvider>>> {
        match self.builtin.contains_key(name) {
            true => Err(self.refuse(name, "dropped")),
            false => Ok(None),
        }
    }

    fn table_exist(&self, name: &str) -> bool {
        self.builtin.contains_key(name)
    }
}

/// The object stores of a session's runtime: none. DataFusion registers the local file
/// system for `file://` by default, which would let any plan node that takes a path read or
/// write the server's files; MiniTrue's tables read through the storage engine instead.
#[derive(Debug)]
pub struct NoFileSystem;

impl datafusion::execution::object_store::ObjectStoreRegistry for NoFileSystem {
    fn register_store(
        &self,
        url: &url::Url,
        _store: Arc<dyn object_store::ObjectStore>,
    ) -> Option<Arc<dyn object_store::ObjectStore>> {
        tracing::warn!(%url, "refused to register an object store in a sql session");
        None
    }

    fn get_store(&self, url: &url::Url) -> DfResult<Arc<dyn object_store::ObjectStore>> {
        Err(QueryError::NotAllowed {
            reason: format!("{url} is not reachable from SQL: SQL never reads or writes files"),
        }
        .into_datafusion())
    }
}

/// Shows a table computed from engine state as a base table (`TableType::Base`): `devices`
/// is a table to its users, so Postgres clients list it with the tables (psql's `\dt`,
/// `information_schema.tables`, JDBC `getTables`), not with the views.
#[derive(Debug)]
struct BaseTable(Arc<dyn TableProvider>);

#[async_trait]
impl TableProvider for BaseTable {
    fn schema(&self) -> arrow::datatypes::SchemaRef {
        self.0.schema()
    }

    fn table_type(&self) -> datafusion::logical_expr::TableType {
        datafusion::logical_expr::TableType::Base
    }

    async fn scan(
        &self,
        state: &dyn datafusion::catalog::Session,
        projection: Option<&Vec<usize>>,
        filters: &[datafusion::logical_expr::Expr],
        limit: Option<usize>,
    ) -> DfResult<Arc<dyn datafusion::physical_plan::ExecutionPlan>> {
        self.0.scan(state, projection, filters, limit).await
    }

    fn supports_filters_pushdown(
        &self,
        filters: &[&datafusion::logical_expr::Expr],
    ) -> DfResult<Vec<datafusion::logical_expr::TableProviderFilterPushDown>> {
        self.0.supports_filters_pushdown(filters)
    }
}
