//! Flight SQL's metadata calls (`GetCatalogs`, `GetDbSchemas`, `GetTables`, `GetTableTypes`,
//! `GetSqlInfo`), answered from the session's catalog: what ADBC's `adbc_get_objects`,
//! `adbc_get_table_schema` and `adbc_get_info` ask.

use arrow_flight::sql::metadata::{
    GetCatalogsBuilder, GetDbSchemasBuilder, GetTablesBuilder, SqlInfoData, SqlInfoDataBuilder,
};
use arrow_flight::sql::{
    CommandGetCatalogs, CommandGetDbSchemas, CommandGetTableTypes, CommandGetTables, SqlInfo,
    SqlNullOrdering, SqlSupportedCaseSensitivity,
};
use datafusion::arrow::array::{RecordBatch, StringArray};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::catalog::SchemaProvider;
use datafusion::datasource::TableType;
use datafusion::prelude::SessionContext;
use std::sync::{Arc, LazyLock};
use tonic::Status;

/// The table types `GetTableTypes` lists and `GetTables` reports.
const TABLE_TYPES: [&str; 3] = ["TABLE", "VIEW", "LOCAL TEMPORARY"];

fn table_type_name(table_type: TableType) -> &'static str {
    match table_type {
        TableType::Base => TABLE_TYPES[0],
        TableType::View => TABLE_TYPES[1],
        TableType::Temporary => TABLE_TYPES[2],
    }
}

fn internal(error: impl std::fmt::Display) -> Status {
    Status::internal(format!("building the metadata result: {error}"))
}

pub(crate) fn catalogs(
    ctx: &SessionContext,
    command: CommandGetCatalogs,
) -> Result<RecordBatch, Status> {
    let mut builder: GetCatalogsBuilder = command.into_builder();
    let mut names = ctx.catalog_names();
    names.sort();
    for name in names {
        builder.append(name);
    }
    builder.build().map_err(internal)
}

pub(crate) fn catalogs_schema() -> SchemaRef {
    CommandGetCatalogs {}.into_builder().schema()
}

pub(crate) fn db_schemas(
    ctx: &SessionContext,
    command: CommandGetDbSchemas,
) -> Result<RecordBatch, Status> {
    let mut builder: GetDbSchemasBuilder = command.into_builder();
    for (catalog_name, schema_name, _) in sorted_schemas(ctx) {
        builder.append(catalog_name, schema_name);
    }
    builder.build().map_err(internal)
}

pub(crate) fn db_schemas_schema() -> SchemaRef {
    CommandGetDbSchemas::default().into_builder().schema()
}

/// Tables of every catalog and schema; the builder applies the command's filters (catalog,
/// `LIKE` patterns, table types) and adds the Arrow schemas when asked to.
pub(crate) async fn tables(
    ctx: &SessionContext,
    command: CommandGetTables,
) -> Result<RecordBatch, Status> {
    let mut builder: GetTablesBuilder = command.into_builder();
    for (catalog_name, schema_name, schema) in sorted_schemas(ctx) {
        let mut tables = schema.table_names();
        tables.sort();
        for table_name in tables {
            let Some(table) = schema.table(&table_name).await.map_err(internal)? else {
                continue;
            };
            builder
                .append(
                    &catalog_name,
                    &schema_name,
                    &table_name,
                    table_type_name(table.table_type()),
                    table.schema().as_ref(),
                )
                .map_err(internal)?;
        }
    }
    builder.build().map_err(internal)
}

pub(crate) fn tables_schema(command: &CommandGetTables) -> SchemaRef {
    command.clone().into_builder().schema()
}

pub(crate) fn table_types(_command: CommandGetTableTypes) -> Result<RecordBatch, Status> {
    RecordBatch::try_new(
        table_types_schema(),
        vec![Arc::new(StringArray::from(TABLE_TYPES.to_vec()))],
    )
    .map_err(internal)
}

pub(crate) fn table_types_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![Field::new("table_type", DataType::Utf8, false)]))
}

/// Every `(catalog, schema)` of the session, sorted by name, with the schema's provider.
fn sorted_schemas(ctx: &SessionContext) -> Vec<(String, String, Arc<dyn SchemaProvider>)> {
    let mut catalogs = ctx.catalog_names();
    catalogs.sort();
    let mut out = Vec::new();
    for catalog_name in catalogs {
        let Some(catalog) = ctx.catalog(&catalog_name) else { continue };
        let mut schemas = catalog.schema_names();
        schemas.sort();
        for schema_name in schemas {
            if let Some(schema) = catalog.schema(&schema_name) {
                out.push((catalog_name.clone(), schema_name, schema));
            }
        }
    }
    out
}

/// What `GetSqlInfo` answers about this server.
pub(crate) static SQL_INFO: LazyLock<SqlInfoData> = LazyLock::new(|| {
    let mut info = SqlInfoDataBuilder::new();
    info.append(SqlInfo::FlightSqlServerName, "MiniTrue");
    info.append(SqlInfo::FlightSqlServerVersion, env!("CARGO_PKG_VERSION"));
    info.append(SqlInfo::FlightSqlServerArrowVersion, "59");
    info.append(SqlInfo::FlightSqlServerReadOnly, false);
    info.append(SqlInfo::FlightSqlServerSql, true);
    info.append(SqlInfo::FlightSqlServerSubstrait, false);
    // 0 = SQL_SUPPORTED_TRANSACTION_NONE: every write is durable on its own.
    info.append(SqlInfo::FlightSqlServerTransaction, 0i32);
    info.append(SqlInfo::FlightSqlServerCancel, false);
    info.append(SqlInfo::FlightSqlServerBulkIngestion, true);
    info.append(SqlInfo::FlightSqlServerIngestTransactionsSupported, false);
    info.append(SqlInfo::FlightSqlServerStatementTimeout, 0i32);
    info.append(SqlInfo::FlightSqlServerTransactionTimeout, 0i32);
    info.append(SqlInfo::SqlDdlCatalog, false);
    info.append(SqlInfo::SqlDdlSchema, false);
    info.append(SqlInfo::SqlDdlTable, false);
    info.append(
        SqlInfo::SqlIdentifierCase,
        SqlSupportedCaseSensitivity::SqlCaseSensitivityLowercase as i32,
    );
    info.append(SqlInfo::SqlIdentifierQuoteChar, "\"");
    info.append(
        SqlInfo::SqlQuotedIdentifierCase,
        SqlSupportedCaseSensitivity::SqlCaseSensitivityCaseInsensitive as i32,
    );
    info.append(SqlInfo::SqlNullOrdering, SqlNullOrdering::SqlNullsSortedHigh as i32);
    info.append(SqlInfo::SqlSupportsColumnAliasing, true);
    info.build().expect("static SqlInfo values have the SqlInfo types")
});
