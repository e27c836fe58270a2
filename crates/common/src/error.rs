use serde::{Deserialize, Serialize};

/// What kind of failure an error is, independent of the crate that raised it.
///
/// Each crate's error type exposes `kind()`; the protocol edges translate the kind once
/// (for example `InvalidInput` becomes SQLSTATE 22023 / HTTP 400 / gRPC `InvalidArgument`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum ErrorKind {
    /// The caller sent something malformed or out of range; retrying it unchanged fails again.
    InvalidInput,
    /// The thing asked for does not exist.
    NotFound,
    /// The caller may not do this: its role lacks the privilege, or the statement is one no
    /// client may run (it would reach the server's files or other clients' sessions).
    PermissionDenied,
    /// Stored data failed a checksum or could not be decoded.
    Corrupt,
    /// A resource (disk, memory, peer) is temporarily unavailable; retrying may succeed.
    Unavailable,
    /// The engine is shutting down and takes no more work.
    ShuttingDown,
    /// An I/O operation on local disk or object storage failed.
    Io,
    /// A bug: an invariant of the engine did not hold.
    Internal,
}
