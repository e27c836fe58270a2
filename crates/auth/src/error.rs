use minitrue_common::ErrorKind;

/// Everything managing or checking credentials can fail with.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    /// The credentials did not match: unknown user, wrong password, unknown or revoked token.
    /// Deliberately says no more (the doors must not tell which).
    #[error("authentication failed")]
    Failed,

    /// A message of an authentication exchange (SCRAM, a header) was malformed.
    #[error("malformed authentication message: {0}")]
    Malformed(String),

    /// A name, password or role given to a management command is not acceptable.
    #[error("{0}")]
    Invalid(String),

    /// The user or token to change does not exist.
    #[error("{0} does not exist")]
    NotFound(String),

    /// The credentials file could not be read or written.
    #[error("{path}: {source}")]
    Io { path: String, source: std::io::Error },

    /// A certificate or key file could not be used.
    #[error("tls: {0}")]
    Tls(String),

    /// The credentials file is not what this version writes.
    #[error("{path} is not a valid credentials file: {reason}")]
    CorruptFile { path: String, reason: String },
}

impl AuthError {
    /// The kind the protocol edges map to SQLSTATE / HTTP status / gRPC code.
    pub fn kind(&self) -> ErrorKind {
        match self {
            AuthError::Failed => ErrorKind::PermissionDenied,
            AuthError::Malformed(_) | AuthError::Invalid(_) => ErrorKind::InvalidInput,
            AuthError::NotFound(_) => ErrorKind::NotFound,
            AuthError::Io { .. } => ErrorKind::Io,
            AuthError::Tls(_) => ErrorKind::InvalidInput,
            AuthError::CorruptFile { .. } => ErrorKind::Corrupt,
        }
    }
}
