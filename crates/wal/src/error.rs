//! The one error type of the WAL crate.

use std::io;
use std::path::PathBuf;
use std::sync::Arc;

use minitrue_common::ErrorKind;

use crate::format::SegmentHeaderError;
use crate::Lsn;

/// Everything that can go wrong in the WAL, with the context needed to act on it.
///
/// Map it to a protocol status with [`WalError::kind`].
#[derive(Debug, thiserror::Error)]
pub enum WalError {
    /// A file-system operation failed (open, read, rename, truncate, delete, directory fsync).
    #[error("wal {op} failed on {}", path.display())]
    Io {
        /// What the WAL was doing, e.g. `"read segment"`.
        op: &'static str,
        /// The file or directory involved.
        path: PathBuf,
        /// The operating system's error.
        #[source]
        source: io::Error,
    },

    /// A segment file's header is missing, truncated or not a MiniTrue WAL header.
    ///
    /// The WAL refuses to guess what such a file holds; move the file away to start.
    #[error("invalid wal segment {}: {reason}", path.display())]
    InvalidSegment {
        /// The segment file.
        path: PathBuf,
        /// What is wrong with its header.
        reason: SegmentHeaderError,
    },

    /// An append was larger than [`crate::WalOptions::max_record_bytes`]. Nothing was written;
    /// the WAL stays usable.
    #[error("wal record of {len} bytes exceeds max_record_bytes ({max})")]
    RecordTooLarge {
        /// Size of the rejected payload.
        len: usize,
        /// The configured limit.
        max: u32,
    },

    /// [`crate::WalOptions`] are out of range.
    #[error("invalid wal options: {reason}")]
    InvalidOptions {
        /// Which option and why.
        reason: String,
    },

    /// Writing or fsyncing the batch that held this record failed. The record may or may not
    /// survive a crash; the WAL has stopped (see [`WalError::Poisoned`]).
    #[error("wal {op} failed on {} for records {first_lsn}..={last_lsn}", path.display())]
    WriteFailed {
        /// `"write"`, `"fsync"` or `"create segment"`.
        op: &'static str,
        /// The segment file.
        path: PathBuf,
        /// First LSN of the failed batch.
        first_lsn: Lsn,
        /// Last LSN of the failed batch.
        last_lsn: Lsn,
        /// The operating system's error, shared by every record of the batch.
        #[source]
        source: Arc<io::Error>,
    },

    /// An earlier write or fsync failed, so the WAL accepts no more records until it is
    /// reopened (which re-reads the files and truncates any torn tail).
    #[error("wal stopped after an earlier {op} failure on {}; reopen it to recover", path.display())]
    Poisoned {
        /// The operation that failed first.
        op: &'static str,
        /// The segment file it failed on.
        path: PathBuf,
        /// The original operating system error.
        #[source]
        source: Arc<io::Error>,
    },

    /// [`crate::Wal::close`] was called; the WAL takes no more records.
    #[error("wal is closed")]
    Closed,

    /// The next LSN would not fit in a `u64`.
    #[error("wal lsn space exhausted after lsn {last_lsn}")]
    LsnExhausted {
        /// The last LSN that was assigned.
        last_lsn: Lsn,
    },

    /// The writer thread ended without answering (a bug).
    #[error("wal writer thread stopped unexpectedly")]
    WriterStopped,
}

impl WalError {
    /// The protocol-independent kind of this error.
    pub fn kind(&self) -> ErrorKind {
        match self {
            WalError::Io { .. } | WalError::WriteFailed { .. } | WalError::Poisoned { .. } => {
                ErrorKind::Io
            }
            WalError::InvalidSegment { .. } => ErrorKind::Corrupt,
            WalError::RecordTooLarge { .. } | WalError::InvalidOptions { .. } => {
                ErrorKind::InvalidInput
            }
            WalError::Closed => ErrorKind::ShuttingDown,
            WalError::LsnExhausted { .. } | WalError::WriterStopped => ErrorKind::Internal,
        }
    }

    pub(crate) fn io(op: &'static str, path: impl Into<PathBuf>, source: io::Error) -> Self {
        WalError::Io { op, path: path.into(), source }
    }
}
