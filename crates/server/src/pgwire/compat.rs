//! Postgres functions and statements clients use on connect, added to the pgwire session:
//!
//! - `version()` reports `PostgreSQL 16.6 (MiniTrue …)` (SQLAlchemy parses it; DataFusion's
//!   own `version()` says `Apache DataFusion …`);
//! - `current_setting(name [, missing_ok])` reads [`settings`](super::settings) (Grafana's
//!   version probe and search-path lookup);
//! - `minitrue_pg_type_name(arrow_type)` turns an Arrow type name into the Postgres one (used
//!   by the `information_schema.columns` rewrite);
//! - `DEALLOCATE ALL` / `DEALLOCATE name` drop protocol-level prepared statements (psycopg
//!   sends `DEALLOCATE ALL` after a failed transaction; DataFusion only knows its own
//!   SQL-level `PREPARE`).

use std::str::FromStr;
use std::sync::Arc;

use async_trait::async_trait;
use datafusion::arrow::array::{Array, ArrayRef, StringArray};
use datafusion::arrow::datatypes::DataType;
use datafusion::common::{exec_err, ParamValues, ScalarValue};
use datafusion::error::Result as DfResult;
use datafusion::logical_expr::{
    ColumnarValue, LogicalPlan, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature,
    TypeSignature, Volatility,
};
use datafusion::prelude::SessionContext;
use datafusion::sql::sqlparser::ast::Statement;
use datafusion_postgres::hooks::{HookClient, QueryHook};
use datafusion_postgres::pgwire::api::results::{Response, Tag};
use datafusion_postgres::pgwire::api::store::PortalStore;
use datafusion_postgres::pgwire::api::ClientInfo;
use datafusion_postgres::pgwire::error::{ErrorInfo, PgWireError, PgWireResult};

use super::settings;

/// Name of the Arrow-to-Postgres type name function.
pub(crate) const PG_TYPE_NAME_FUNCTION: &str = "minitrue_pg_type_name";

/// Registers the functions of this module in `session`; `time_zone` is the session's.
pub(crate) fn register_functions(session: &SessionContext, time_zone: &str) {
    session.register_udf(ScalarUDF::new_from_impl(Version::new()));
    session.register_udf(ScalarUDF::new_from_impl(CurrentSetting::new(time_zone)));
    session.register_udf(ScalarUDF::new_from_impl(PgTypeName::new()));
    session.register_udf(datafusion::logical_expr::create_udf(
        "to_regtype",
        vec![DataType::Utf8],
        DataType::Int32,
        Volatility::Stable,
        Arc::new(|args: &[ColumnarValue]| {
            let names = args[0].to_array(1)?;
            let names = string_array(&names)?;
            let oids: datafusion::arrow::array::Int32Array =
                names.iter().map(|name| name.and_then(builtin_type_oid)).collect();
            Ok(ColumnarValue::Array(Arc::new(oids)))
        }),
    ));
    // Every type is in pg_catalog, which is always on the search path (SQLAlchemy's
    // reflection filters on it).
    session.register_udf(datafusion::logical_expr::create_udf(
        "pg_type_is_visible",
        vec![DataType::Int32],
        DataType::Boolean,
        Volatility::Stable,
        Arc::new(|args: &[ColumnarValue]| match &args[0] {
            ColumnarValue::Scalar(oid) => {
                Ok(ColumnarValue::Scalar(ScalarValue::Boolean((!oid.is_null()).then_some(true))))
            }
            ColumnarValue::Array(oids) => {
                let visible: datafusion::arrow::array::BooleanArray =
                    (0..oids.len()).map(|row| oids.is_valid(row).then_some(true)).collect();
                Ok(ColumnarValue::Array(Arc::new(visible)))
            }
        }),
    ));
}

#[derive(Debug, PartialEq, Eq, Hash)]
struct Version {
    signature: Signature,
}

impl Version {
    fn new() -> Self {
        Version { signature: Signature::nullary(Volatility::Immutable) }
    }
}

impl ScalarUDFImpl for Version {
    fn name(&self) -> &str {
        "version"
    }
    fn signature(&self) -> &Signature {
        &self.signature
    }
    fn return_type(&self, _args: &[DataType]) -> DfResult<DataType> {
        Ok(DataType::Utf8)
    }
    fn invoke_with_args(&self, _args: ScalarFunctionArgs) -> DfResult<ColumnarValue> {
        let version = format!(
            "PostgreSQL {} (MiniTrue {}) on {}-{}, compatible",
            settings::SERVER_VERSION,
            env!("CARGO_PKG_VERSION"),
            std::env::consts::ARCH,
            std::env::consts::OS
        );
        Ok(ColumnarValue::Scalar(ScalarValue::Utf8(Some(version))))
    }
}

#[derive(Debug, PartialEq, Eq, Hash)]
struct CurrentSetting {
    signature: Signature,
    time_zone: String,
}

impl CurrentSetting {
    fn new(time_zone: &str) -> Self {
        let signature = Signature::one_of(
            vec![
                TypeSignature::Exact(vec![DataType::Utf8]),
                TypeSignature::Exact(vec![DataType::Utf8, DataType::Boolean]),
            ],
            Volatility::Stable,
        );
        CurrentSetting { signature, time_zone: time_zone.to_string() }
    }

    fn lookup(&self, name: Option<&str>, missing_ok: bool) -> DfResult<Option<String>> {
        let Some(name) = name else { return Ok(None) };
        match settings::setting(name, &self.time_zone) {
            Some(value) => Ok(Some(value)),
            None if missing_ok => Ok(None),
            None => exec_err!("unrecognized configuration parameter \"{name}\""),
        }
    }
}

impl ScalarUDFImpl for CurrentSetting {
    fn name(&self) -> &str {
        "current_setting"
    }
    fn signature(&self) -> &Signature {
        &self.signature
    }
    fn return_type(&self, _args: &[DataType]) -> DfResult<DataType> {
        Ok(DataType::Utf8)
    }
    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> DfResult<ColumnarValue> {
        let missing_ok = match args.args.get(1) {
            Some(ColumnarValue::Scalar(ScalarValue::Boolean(flag))) => flag.unwrap_or(false),
            Some(_) => return exec_err!("current_setting: missing_ok must be a constant"),
            None => false,
        };
        match &args.args[0] {
            ColumnarValue::Scalar(ScalarValue::Utf8(name)) => Ok(ColumnarValue::Scalar(
                ScalarValue::Utf8(self.lookup(name.as_deref(), missing_ok)?),
            )),
            ColumnarValue::Array(names) => {
                let names = string_array(names)?;
                let values = names
                    .iter()
                    .map(|name| self.lookup(name, missing_ok))
                    .collect::<DfResult<StringArray>>()?;
                Ok(ColumnarValue::Array(Arc::new(values)))
            }
            other => exec_err!("current_setting: unexpected argument {other:?}"),
        }
    }
}

#[derive(Debug, PartialEq, Eq, Hash)]
struct PgTypeName {
    signature: Signature,
}

impl PgTypeName {
    fn new() -> Self {
        PgTypeName { signature: Signature::exact(vec![DataType::Utf8], Volatility::Immutable) }
    }
}

impl ScalarUDFImpl for PgTypeName {
    fn name(&self) -> &str {
        PG_TYPE_NAME_FUNCTION
    }
    fn signature(&self) -> &Signature {
        &self.signature
    }
    fn return_type(&self, _args: &[DataType]) -> DfResult<DataType> {
        Ok(DataType::Utf8)
    }
    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> DfResult<ColumnarValue> {
        match &args.args[0] {
            ColumnarValue::Scalar(ScalarValue::Utf8(name)) => {
                Ok(ColumnarValue::Scalar(ScalarValue::Utf8(name.as_deref().map(pg_type_name))))
            }
            ColumnarValue::Array(names) => {
                let names = string_array(names)?;
                let values: StringArray = names.iter().map(|name| name.map(pg_type_name)).collect();
                Ok(ColumnarValue::Array(Arc::new(values)))
            }
            other => exec_err!("{PG_TYPE_NAME_FUNCTION}: unexpected argument {other:?}"),
        }
    }
}

/// `to_regtype(name)`: the OID of a built-in type by any of its Postgres names, NULL for
/// types MiniTrue does not have (psycopg's `TypeInfo.fetch` then reports the type missing).
fn builtin_type_oid(name: &str) -> Option<i32> {
    let oid = match name.trim().to_ascii_lowercase().as_str() {
        "bool" | "boolean" => 16,
        "bytea" => 17,
        "int8" | "bigint" => 20,
        "int2" | "smallint" => 21,
        "int4" | "integer" | "int" => 23,
        "text" => 25,
        "oid" => 26,
        "json" => 114,
        "float4" | "real" => 700,
        "float8" | "double precision" => 701,
        "varchar" | "character varying" => 1043,
        "date" => 1082,
        "time" | "time without time zone" => 1083,
        "timestamp" | "timestamp without time zone" => 1114,
        "timestamptz" | "timestamp with time zone" => 1184,
        "interval" => 1186,
        "numeric" | "decimal" => 1700,
        "uuid" => 2950,
        "jsonb" => 3802,
        _ => return None,
    };
    Some(oid)
}

fn string_array(array: &ArrayRef) -> DfResult<&StringArray> {
    match array.as_any().downcast_ref::<StringArray>() {
        Some(strings) => Ok(strings),
        None => exec_err!("expected a text argument, got {}", array.data_type()),
    }
}

/// The Postgres name (as `format_type` and `information_schema` spell it) of the Arrow type
/// named `arrow` (its `Display` form); unknown names are returned unchanged.
pub(crate) fn pg_type_name(arrow: &str) -> String {
    let Ok(data_type) = DataType::from_str(arrow) else {
        return arrow.to_string();
    };
    let name = match data_type {
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => "text",
        DataType::Boolean => "boolean",
        DataType::Int8 | DataType::Int16 | DataType::UInt8 => "smallint",
        DataType::Int32 | DataType::UInt16 => "integer",
        DataType::Int64 | DataType::UInt32 | DataType::UInt64 => "bigint",
        DataType::Float16 | DataType::Float32 => "real",
        DataType::Float64 => "double precision",
        DataType::Decimal32(..)
        | DataType::Decimal64(..)
        | DataType::Decimal128(..)
        | DataType::Decimal256(..) => "numeric",
        DataType::Timestamp(_, Some(_)) => "timestamp with time zone",
        DataType::Timestamp(_, None) => "timestamp without time zone",
        DataType::Date32 | DataType::Date64 => "date",
        DataType::Time32(_) | DataType::Time64(_) => "time without time zone",
        DataType::Interval(_) | DataType::Duration(_) => "interval",
        DataType::Binary
        | DataType::LargeBinary
        | DataType::BinaryView
        | DataType::FixedSizeBinary(_) => "bytea",
        DataType::List(_) | DataType::LargeList(_) | DataType::FixedSizeList(..) => "ARRAY",
        _ => "USER-DEFINED",
    };
    name.to_string()
}

/// Answers `DEALLOCATE` for prepared statements made with the extended protocol, and
/// `SAVEPOINT` / `RELEASE` / `ROLLBACK TO` (psycopg and SQLAlchemy nest transactions).
#[derive(Debug)]
pub(crate) struct DeallocateHook;

impl DeallocateHook {
    /// Savepoints are accepted: MiniTrue has no multi-statement transactions (every write is
    /// durable when acknowledged), so they have nothing to undo, as BEGIN/COMMIT don't.
    fn savepoint(statement: &Statement) -> Option<Response> {
        let tag = match statement {
            Statement::Savepoint { .. } => "SAVEPOINT",
            Statement::ReleaseSavepoint { .. } => "RELEASE",
            Statement::Rollback { savepoint: Some(_), .. } => "ROLLBACK",
            _ => return None,
        };
        Some(Response::Execution(Tag::new(tag)))
    }

    fn deallocate(statement: &Statement, client: &dyn HookClient) -> Option<Response> {
        if let Some(response) = Self::savepoint(statement) {
            return Some(response);
        }
        let Statement::Deallocate { name, .. } = statement else { return None };
        if name.quote_style.is_none() && name.value.eq_ignore_ascii_case("all") {
            // Statements the client prepares again replace the old ones of the same name.
            return Some(Response::Execution(Tag::new("DEALLOCATE ALL")));
        }
        // Not a protocol-level statement: maybe a SQL-level PREPARE, which DataFusion answers.
        client.portal_store().get_statement(&name.value)?;
        client.portal_store().rm_statement(&name.value);
        Some(Response::Execution(Tag::new("DEALLOCATE")))
    }
}

#[async_trait]
impl QueryHook for DeallocateHook {
    async fn handle_simple_query(
        &self,
        statement: &Statement,
        _session: &SessionContext,
        client: &mut dyn HookClient,
    ) -> Option<PgWireResult<Response>> {
        Self::deallocate(statement, client).map(Ok)
    }

    async fn handle_extended_parse_query(
        &self,
        statement: &Statement,
        _session: &SessionContext,
        _client: &(dyn ClientInfo + Send + Sync),
    ) -> Option<PgWireResult<LogicalPlan>> {
        let ours = matches!(statement, Statement::Deallocate { .. })
            || Self::savepoint(statement).is_some();
        if !ours {
            return None;
        }
        let empty =
            datafusion::logical_expr::LogicalPlanBuilder::empty(false).build().map_err(|error| {
                PgWireError::UserError(Box::new(ErrorInfo::new(
                    "ERROR".into(),
                    "XX000".into(),
                    error.to_string(),
                )))
            });
        Some(empty)
    }

    async fn handle_extended_query(
        &self,
        statement: &Statement,
        _plan: &LogicalPlan,
        _params: &ParamValues,
        _session: &SessionContext,
        client: &mut dyn HookClient,
    ) -> Option<PgWireResult<Response>> {
        if let Some(response) = Self::savepoint(statement) {
            return Some(Ok(response));
        }
        let Statement::Deallocate { name, .. } = statement else { return None };
        let response = Self::deallocate(statement, client).unwrap_or_else(|| {
            // Not ours and DataFusion has no plan for it in the extended protocol.
            Response::Error(Box::new(ErrorInfo::new(
                "ERROR".into(),
                "26000".into(),
                format!("prepared statement \"{name}\" does not exist"),
            )))
        });
        Some(Ok(response))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arrow_types_get_postgres_names() {
        assert_eq!(pg_type_name("Utf8"), "text");
        assert_eq!(pg_type_name("Float64"), "double precision");
        assert_eq!(pg_type_name("Int64"), "bigint");
        assert_eq!(pg_type_name("Timestamp(ns, \"UTC\")"), "timestamp with time zone");
        assert_eq!(
            pg_type_name(
                &DataType::Timestamp(datafusion::arrow::datatypes::TimeUnit::Microsecond, None)
                    .to_string()
            ),
            "timestamp without time zone"
        );
        assert_eq!(pg_type_name("not a type"), "not a type");
    }

    #[tokio::test]
    async fn version_and_settings_answer_like_postgres() {
        let ctx = SessionContext::new();
        register_functions(&ctx, "UTC");
        let batches = ctx
            .sql(
                "SELECT version(), current_setting('server_version_num'), \
                 current_setting('TimeZone'), current_setting('nope', true)",
            )
            .await
            .unwrap()
            .collect()
            .await
            .unwrap();
        let text = datafusion::arrow::util::pretty::pretty_format_batches(&batches).unwrap();
        let text = text.to_string();
        assert!(
            text.contains(&format!("PostgreSQL {} (MiniTrue", settings::SERVER_VERSION)),
            "{text}"
        );
        assert!(text.contains(settings::SERVER_VERSION_NUM), "{text}");
        assert!(text.contains("| UTC"), "{text}");
        let error = ctx.sql("SELECT current_setting('nope')").await.unwrap().collect().await;
        assert!(error.unwrap_err().to_string().contains("unrecognized configuration parameter"));
    }
}
