use arrow::error::ArrowError;
use datafusion::error::DataFusionError;
use minitrue_common::ErrorKind;
use minitrue_storage::StorageError;

/// Everything the SQL layer can fail with. [`QueryError::kind`] classifies it once for the
/// protocol edges (pgwire SQLSTATE, HTTP status, Flight status).
///
/// Errors raised inside DataFusion operators (a storage failure during a scan, a bad row in
/// an `INSERT`) travel through DataFusion as [`DataFusionError::External`]; converting a
/// `DataFusionError` into a `QueryError` unwraps them again, and [`QueryError::kind`] looks
/// through any remaining context layers, so the kind is the one of the original failure.
#[derive(Debug, thiserror::Error)]
pub enum QueryError {
    /// A row of an `INSERT` cannot become a point (NULL column, bad device_id or metric).
    #[error("invalid row {row} in INSERT INTO readings: {reason}")]
    InvalidRow { row: u64, reason: String },

    /// A `DELETE` whose `WHERE` clause does not map onto a storage delete exactly.
    #[error("unsupported DELETE: {reason}")]
    UnsupportedDelete { reason: String },

    /// A statement or table operation MiniTrue does not offer (e.g. `UPDATE`,
    /// `INSERT OVERWRITE`, writing to a read-only table).
    #[error("unsupported statement: {reason}")]
    Unsupported { reason: String },

    /// A statement no client may run whatever its role (it would read or write the server's
    /// files, or change settings every client shares), or one the client's role does not
    /// allow. `reason` says what to do instead.
    #[error("{reason}")]
    NotAllowed { reason: String },

    /// A SQL function was called with arguments it cannot work with.
    #[error("{function}: {reason}")]
    InvalidArgument { function: &'static str, reason: String },

    /// The storage engine failed.
    #[error("storage: {0}")]
    Storage(#[from] StorageError),

    /// The cluster could not place a write.
    #[error("cluster: {0}")]
    Cluster(#[from] crate::cluster::ClusterError),

    /// Parsing, planning or executing the query failed inside DataFusion.
    #[error("{0}")]
    DataFusion(DataFusionError),
}

impl QueryError {
    /// The kind the protocol edges map to SQLSTATE / HTTP status / gRPC code.
    pub fn kind(&self) -> ErrorKind {
        match self {
            QueryError::InvalidRow { .. }
            | QueryError::UnsupportedDelete { .. }
            | QueryError::Unsupported { .. }
            | QueryError::InvalidArgument { .. } => ErrorKind::InvalidInput,
            QueryError::NotAllowed { .. } => ErrorKind::PermissionDenied,
            QueryError::Storage(error) => error.kind(),
            QueryError::Cluster(error) => error.kind,
            QueryError::DataFusion(error) => datafusion_kind(error),
        }
    }

    /// Wraps this error for returning it from DataFusion callbacks (providers, UDFs, sinks).
    pub(crate) fn into_datafusion(self) -> DataFusionError {
        DataFusionError::External(Box::new(self))
    }
}

impl From<DataFusionError> for QueryError {
    /// Recovers a [`QueryError`] or [`StorageError`] raised inside DataFusion (dropping the
    /// context layers around it: its own message is the useful one). Anything else stays a
    /// [`QueryError::DataFusion`] with its context.
    fn from(error: DataFusionError) -> Self {
        if !wraps_typed_error(&error) {
            return QueryError::DataFusion(error);
        }
        match error {
            DataFusionError::Context(_, inner) | DataFusionError::Diagnostic(_, inner) => {
                QueryError::from(*inner)
            }
            DataFusionError::Shared(shared) => match std::sync::Arc::try_unwrap(shared) {
                Ok(inner) => QueryError::from(inner),
                // Others hold the same error: keep it shared; `kind` still finds the cause.
                Err(shared) => QueryError::DataFusion(DataFusionError::Shared(shared)),
            },
            DataFusionError::External(inner) => match inner.downcast::<QueryError>() {
                Ok(query) => *query,
                Err(inner) => match inner.downcast::<StorageError>() {
                    Ok(storage) => QueryError::Storage(*storage),
                    Err(inner) => match inner.downcast::<DataFusionError>() {
                        Ok(datafusion) => QueryError::from(*datafusion),
                        Err(inner) => QueryError::DataFusion(DataFusionError::External(inner)),
                    },
                },
            },
            other => QueryError::DataFusion(other),
        }
    }
}

/// True when `error` is, or wraps (through context, sharing or `External`), one of our typed
/// errors.
fn wraps_typed_error(error: &DataFusionError) -> bool {
    match error {
        DataFusionError::Context(_, inner) | DataFusionError::Diagnostic(_, inner) => {
            wraps_typed_error(inner)
        }
        DataFusionError::Shared(inner) => wraps_typed_error(inner),
        DataFusionError::External(inner) => {
            inner.is::<QueryError>()
                || inner.is::<StorageError>()
                || inner.downcast_ref::<DataFusionError>().is_some_and(wraps_typed_error)
        }
        _ => false,
    }
}

/// Classifies a DataFusion error, looking through wrappers for one of our typed errors.
fn datafusion_kind(error: &DataFusionError) -> ErrorKind {
    match error {
        DataFusionError::SQL(..)
        | DataFusionError::Plan(_)
        | DataFusionError::SchemaError(..)
        | DataFusionError::NotImplemented(_)
        | DataFusionError::Configuration(_) => ErrorKind::InvalidInput,
        // Execution errors are almost always caused by the data or the query (a string that
        // is not a timestamp, an overflow); engine failures arrive as `External`.
        DataFusionError::Execution(_) => ErrorKind::InvalidInput,
        DataFusionError::ArrowError(error, _) => arrow_kind(error),
        DataFusionError::ParquetError(_) => ErrorKind::Corrupt,
        DataFusionError::ObjectStore(_) | DataFusionError::IoError(_) => ErrorKind::Io,
        DataFusionError::ResourcesExhausted(_) => ErrorKind::Unavailable,
        DataFusionError::External(inner) => external_kind(inner.as_ref()),
        DataFusionError::Context(_, inner) | DataFusionError::Diagnostic(_, inner) => {
            datafusion_kind(inner)
        }
        DataFusionError::Shared(inner) => datafusion_kind(inner),
        DataFusionError::Collection(errors) => {
            errors.first().map(datafusion_kind).unwrap_or(ErrorKind::Internal)
        }
        DataFusionError::ExecutionJoin(_)
        | DataFusionError::Internal(_)
        | DataFusionError::Substrait(_)
        | DataFusionError::Ffi(_) => ErrorKind::Internal,
    }
}

fn external_kind(error: &(dyn std::error::Error + Send + Sync + 'static)) -> ErrorKind {
    if let Some(query) = error.downcast_ref::<QueryError>() {
        return query.kind();
    }
    if let Some(storage) = error.downcast_ref::<StorageError>() {
        return storage.kind();
    }
    if let Some(datafusion) = error.downcast_ref::<DataFusionError>() {
        return datafusion_kind(datafusion);
    }
    if let Some(arrow) = error.downcast_ref::<ArrowError>() {
        return arrow_kind(arrow);
    }
    ErrorKind::Internal
}

fn arrow_kind(error: &ArrowError) -> ErrorKind {
    match error {
        ArrowError::CastError(_)
        | ArrowError::ParseError(_)
        | ArrowError::InvalidArgumentError(_)
        | ArrowError::DivideByZero
        | ArrowError::ArithmeticOverflow(_)
        | ArrowError::ComputeError(_) => ErrorKind::InvalidInput,
        ArrowError::IoError(..) => ErrorKind::Io,
        ArrowError::MemoryError(_) => ErrorKind::Unavailable,
        ArrowError::ExternalError(inner) => external_kind(inner.as_ref()),
        _ => ErrorKind::Internal,
    }
}

pub type Result<T, E = QueryError> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn typed_errors_survive_datafusion_wrapping() {
        let wrapped = QueryError::InvalidRow { row: 3, reason: "value is NULL".into() }
            .into_datafusion()
            .context("INSERT");
        assert_eq!(QueryError::from(wrapped).kind(), ErrorKind::InvalidInput);

        let storage = DataFusionError::External(Box::new(StorageError::ShutDown));
        let error = QueryError::from(DataFusionError::Shared(std::sync::Arc::new(storage)));
        assert!(matches!(error, QueryError::Storage(StorageError::ShutDown)), "{error:?}");

        // Still shared elsewhere: stays wrapped, the kind is found all the same.
        let shared =
            std::sync::Arc::new(DataFusionError::External(Box::new(StorageError::ShutDown)));
        let error = QueryError::from(DataFusionError::Shared(shared.clone()));
        assert_eq!(error.kind(), ErrorKind::ShuttingDown);
    }

    #[test]
    fn planning_errors_are_invalid_input() {
        let error = QueryError::from(DataFusionError::Plan("no such table".into()));
        assert_eq!(error.kind(), ErrorKind::InvalidInput);
        let error = QueryError::from(DataFusionError::Internal("bug".into()));
        assert_eq!(error.kind(), ErrorKind::Internal);
    }
}
