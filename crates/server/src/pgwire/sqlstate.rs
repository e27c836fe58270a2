//! Errors become ErrorResponses with the SQLSTATE a Postgres client expects: `42601` for a
//! syntax error, `42P01` for an unknown table, `42703` for an unknown column, `42883` for an
//! unknown function, `22012` for a division by zero, and so on. MiniTrue's own errors are
//! mapped from their [`ErrorKind`] (the one mapping of kinds to SQLSTATEs).
//!
//! datafusion-postgres hands every DataFusion error to pgwire as an opaque `ApiError`, which
//! pgwire reports as `XX000` (internal error); [`SqlStateErrors`] rewrites them before they
//! are sent. The connection stays open after an error.

use datafusion::arrow::error::ArrowError;
use datafusion::common::SchemaError;
use datafusion::error::DataFusionError;
use datafusion::sql::sqlparser::parser::ParserError;
use datafusion_postgres::pgwire::api::{ClientInfo, ErrorHandler};
use datafusion_postgres::pgwire::error::{ErrorInfo, PgWireError};
use minitrue_common::ErrorKind;
use minitrue_query::QueryError;

/// pgwire's error hook: gives every query error its SQLSTATE.
pub(crate) struct SqlStateErrors;

impl ErrorHandler for SqlStateErrors {
    fn on_error<C>(&self, _client: &C, error: &mut PgWireError)
    where
        C: ClientInfo,
    {
        let PgWireError::ApiError(source) = error else {
            return;
        };
        let code = sqlstate_of_source(source.as_ref());
        let message = source.to_string();
        tracing::debug!(code, %message, "query failed");
        *error = PgWireError::UserError(Box::new(ErrorInfo::new(
            "ERROR".to_string(),
            code.to_string(),
            message,
        )));
    }
}

fn sqlstate_of_source(source: &(dyn std::error::Error + Send + Sync + 'static)) -> &'static str {
    if let Some(datafusion) = source.downcast_ref::<DataFusionError>() {
        return sqlstate(datafusion);
    }
    if let Some(parser) = source.downcast_ref::<ParserError>() {
        return parser_sqlstate(parser);
    }
    if let Some(query) = source.downcast_ref::<QueryError>() {
        return query_sqlstate(query);
    }
    if let Some(arrow) = source.downcast_ref::<ArrowError>() {
        return arrow_sqlstate(arrow);
    }
    "XX000"
}

/// The SQLSTATE of a DataFusion error, looking through context and wrapping layers.
pub(crate) fn sqlstate(error: &DataFusionError) -> &'static str {
    match error {
        DataFusionError::SQL(parser, _) => parser_sqlstate(parser),
        DataFusionError::SchemaError(schema, _) => match schema.as_ref() {
            SchemaError::FieldNotFound { .. } => "42703",
            SchemaError::AmbiguousReference { .. } => "42702",
            SchemaError::DuplicateQualifiedField { .. }
            | SchemaError::DuplicateUnqualifiedField { .. } => "42701",
        },
        DataFusionError::Plan(message) => plan_sqlstate(message),
        DataFusionError::NotImplemented(_) => "0A000",
        DataFusionError::Configuration(_) => "22023",
        DataFusionError::Execution(message) => execution_sqlstate(message),
        DataFusionError::ArrowError(arrow, _) => arrow_sqlstate(arrow),
        DataFusionError::ResourcesExhausted(_) => "53200",
        DataFusionError::Context(_, inner) | DataFusionError::Diagnostic(_, inner) => {
            sqlstate(inner)
        }
        DataFusionError::Shared(inner) => sqlstate(inner),
        DataFusionError::Collection(errors) => errors.first().map(sqlstate).unwrap_or("XX000"),
        DataFusionError::External(inner) => {
            if let Some(query) = inner.downcast_ref::<QueryError>() {
                return query_sqlstate(query);
            }
            sqlstate_of_source(inner.as_ref())
        }
        DataFusionError::ParquetError(_) => kind_sqlstate(ErrorKind::Corrupt),
        DataFusionError::ObjectStore(_) | DataFusionError::IoError(_) => {
            kind_sqlstate(ErrorKind::Io)
        }
        _ => kind_sqlstate(ErrorKind::Internal),
    }
}

fn parser_sqlstate(error: &ParserError) -> &'static str {
    match error {
        ParserError::RecursionLimitExceeded => "54001",
        ParserError::TokenizerError(_) | ParserError::ParserError(_) => "42601",
    }
}

/// DataFusion's planning errors carry only a message; these are the ones clients act on.
fn plan_sqlstate(message: &str) -> &'static str {
    let lower = message.to_ascii_lowercase();
    if lower.starts_with("table '") && lower.contains("not found")
        || lower.contains("no table named")
    {
        "42P01"
    } else if lower.starts_with("invalid function") || lower.contains("no function matches") {
        "42883"
    } else if lower.contains("no field named")
        || lower.contains("column") && lower.contains("not found")
    {
        "42703"
    } else if lower.contains("schema") && lower.contains("not found") {
        "3F000"
    } else if lower.contains("cannot be cast") || lower.contains("cannot coerce") {
        "42846"
    } else if lower.contains("does not support") || lower.contains("unsupported") {
        "0A000"
    } else {
        "42000"
    }
}

fn execution_sqlstate(message: &str) -> &'static str {
    let lower = message.to_ascii_lowercase();
    if lower.contains("divide by zero") || lower.contains("division by zero") {
        "22012"
    } else if lower.contains("prepared statement") && lower.contains("does not exist") {
        "26000"
    } else if lower.contains("overflow") {
        "22003"
    } else if lower.contains("cannot cast") || lower.contains("parse") {
        "22P02"
    } else {
        // Execution errors are nearly always caused by the data or the query.
        "22000"
    }
}

fn arrow_sqlstate(error: &ArrowError) -> &'static str {
    match error {
        ArrowError::DivideByZero => "22012",
        ArrowError::ArithmeticOverflow(_) => "22003",
        ArrowError::CastError(_) | ArrowError::ParseError(_) => "22P02",
        ArrowError::InvalidArgumentError(_) | ArrowError::ComputeError(_) => "22023",
        ArrowError::MemoryError(_) => "53200",
        ArrowError::IoError(..) => "58030",
        ArrowError::ExternalError(inner) => sqlstate_of_source(inner.as_ref()),
        _ => "XX000",
    }
}

fn query_sqlstate(error: &QueryError) -> &'static str {
    match error {
        QueryError::Unsupported { .. } | QueryError::UnsupportedDelete { .. } => "0A000",
        QueryError::InvalidArgument { .. } => "22023",
        QueryError::InvalidRow { .. } => "23502",
        QueryError::DataFusion(inner) => sqlstate(inner),
        QueryError::Storage(_) | QueryError::Cluster(_) | QueryError::NotAllowed { .. } => {
            kind_sqlstate(error.kind())
        }
    }
}

/// The one mapping of MiniTrue's error kinds to SQLSTATE.
fn kind_sqlstate(kind: ErrorKind) -> &'static str {
    match kind {
        ErrorKind::InvalidInput => "22023",
        ErrorKind::NotFound => "42704",
        ErrorKind::PermissionDenied => "42501",
        ErrorKind::Corrupt => "XX001",
        ErrorKind::Unavailable => "53000",
        ErrorKind::ShuttingDown => "57P01",
        ErrorKind::Io => "58030",
        ErrorKind::Internal => "XX000",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::prelude::SessionContext;

    async fn state_of(sql: &str) -> &'static str {
        let ctx = SessionContext::new();
        ctx.sql("CREATE TABLE t (a INT, b TEXT)").await.unwrap().collect().await.unwrap();
        let error = match ctx.sql(sql).await {
            Err(error) => error,
            Ok(frame) => frame.collect().await.expect_err(sql),
        };
        sqlstate(&error)
    }

    #[tokio::test]
    async fn client_errors_get_their_postgres_sqlstate() {
        assert_eq!(state_of("SELEC 1").await, "42601");
        assert_eq!(state_of("SELECT * FROM nope").await, "42P01");
        assert_eq!(state_of("SELECT nope FROM t").await, "42703");
        assert_eq!(state_of("SELECT no_such_function(1)").await, "42883");
        assert_eq!(state_of("SELECT 1 / 0").await, "22012");
        assert_eq!(state_of("SELECT CAST('abc' AS INT)").await, "22P02");
    }

    #[test]
    fn minitrue_errors_map_through_their_kind() {
        let unsupported = QueryError::Unsupported { reason: "UPDATE".into() };
        let wrapped = DataFusionError::External(Box::new(unsupported)).context("planning");
        assert_eq!(sqlstate(&wrapped), "0A000");
        let storage = DataFusionError::External(Box::new(QueryError::Storage(
            minitrue_storage::StorageError::ShutDown,
        )));
        assert_eq!(sqlstate(&storage), "57P01");
    }
}
