use std::path::PathBuf;

use minitrue_common::ErrorKind;

/// Everything the storage engine can fail with. Each variant carries the context needed to
/// act on it; [`StorageError::kind`] classifies it for the protocol edges.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    #[error("invalid point {index} in batch: {reason}")]
    InvalidPoint { index: usize, reason: String },

    #[error("invalid request: {reason}")]
    InvalidRequest { reason: String },

    #[error("write-ahead log: {0}")]
    Wal(#[from] minitrue_wal::WalError),

    #[error("object store {operation} {path}: {source}")]
    ObjectStore {
        operation: &'static str,
        path: String,
        #[source]
        source: object_store::Error,
    },

    #[error("unsupported object store url {url}: {reason}")]
    StoreUrl { url: String, reason: String },

    #[error("parquet file {path}: {source}")]
    Parquet {
        path: String,
        #[source]
        source: parquet::errors::ParquetError,
    },

    #[error("arrow: {0}")]
    Arrow(#[from] arrow_schema::ArrowError),

    #[error("manifest {path} is corrupt: {reason}")]
    CorruptManifest { path: String, reason: String },

    #[error("data file {path} is corrupt: {reason}")]
    CorruptFile { path: String, reason: String },

    #[error("wal record {lsn} is corrupt: {reason}")]
    CorruptWalRecord { lsn: u64, reason: String },

    #[error("gorilla decode of series {series}: {source}")]
    Decode {
        series: String,
        #[source]
        source: minitrue_gorilla::DecodeError,
    },

    #[error("i/o on {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    #[error("data directory {path} is in use by another process (lock file held)")]
    Locked { path: PathBuf },

    #[error("the storage engine is shut down")]
    ShutDown,

    #[error("background task failed: {0}")]
    Task(String),
}

impl StorageError {
    /// The kind the protocol edges map to SQLSTATE / HTTP status / gRPC code.
    pub fn kind(&self) -> ErrorKind {
        match self {
            StorageError::InvalidPoint { .. }
            | StorageError::InvalidRequest { .. }
            | StorageError::StoreUrl { .. } => ErrorKind::InvalidInput,
            StorageError::Wal(e) => e.kind(),
            StorageError::ObjectStore { source, .. } => match source {
                object_store::Error::NotFound { .. } => ErrorKind::NotFound,
                _ => ErrorKind::Io,
            },
            StorageError::Parquet { .. }
            | StorageError::CorruptManifest { .. }
            | StorageError::CorruptFile { .. }
            | StorageError::CorruptWalRecord { .. }
            | StorageError::Decode { .. } => ErrorKind::Corrupt,
            StorageError::Io { .. } => ErrorKind::Io,
            StorageError::Locked { .. } => ErrorKind::Unavailable,
            StorageError::ShutDown => ErrorKind::ShuttingDown,
            StorageError::Arrow(_) | StorageError::Task(_) => ErrorKind::Internal,
        }
    }

    pub(crate) fn store(
        operation: &'static str,
        path: impl ToString,
        source: object_store::Error,
    ) -> Self {
        StorageError::ObjectStore { operation, path: path.to_string(), source }
    }

    pub(crate) fn parquet(path: impl ToString, source: parquet::errors::ParquetError) -> Self {
        StorageError::Parquet { path: path.to_string(), source }
    }
}

pub type Result<T, E = StorageError> = std::result::Result<T, E>;
