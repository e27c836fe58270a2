//! `[wal]`: when a write counts as durable; maps onto [`WalOptions`].

use std::fmt;
use std::str::FromStr;

use clap::Args;
use minitrue_storage::{SyncPolicy, WalOptions};
use serde::{Serialize, Serializer};

use super::span::{parse_duration, Span};

/// `--wal-sync`: `every-batch` (the default: a write is acknowledged after `fdatasync`, so it
/// survives a power cut) or a duration such as `100ms` (acknowledged once written to the OS
/// and synced within that time: survives a killed process, not a power cut). Never syncing
/// is left to tests and benchmarks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WalSync {
    EveryBatch,
    Interval(Span),
}

impl FromStr for WalSync {
    type Err = String;

    fn from_str(text: &str) -> Result<WalSync, String> {
        match text.trim() {
            "every-batch" => Ok(WalSync::EveryBatch),
            other => match parse_duration(other) {
                Ok(interval) if !interval.is_zero() => Ok(WalSync::Interval(Span(interval))),
                _ => Err(format!("{other:?} is not every-batch or a sync interval such as 100ms")),
            },
        }
    }
}

impl fmt::Display for WalSync {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            WalSync::EveryBatch => f.write_str("every-batch"),
            WalSync::Interval(span) => span.fmt(f),
        }
    }
}

impl Serialize for WalSync {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

#[derive(Args, Debug, Clone, Serialize)]
pub struct WalSettings {
    /// When a write is acknowledged: `every-batch` (after fdatasync; survives a power cut) or
    /// an interval such as `100ms` (survives a killed process only).
    #[arg(
        id = "wal.sync",
        long = "wal-sync",
        env = "MINITRUE_WAL_SYNC",
        default_value = "every-batch"
    )]
    pub sync: WalSync,
    /// Start a new WAL segment beyond this many bytes.
    #[arg(id = "wal.segment_bytes", long = "wal-segment-bytes", env = "MINITRUE_WAL_SEGMENT_BYTES",
          default_value_t = WalOptions::default().segment_max_bytes, value_parser = clap::value_parser!(u64).range(1 << 20..))]
    pub segment_bytes: u64,
    /// The largest write (one WAL record) accepted; larger ones are refused with an error.
    #[arg(id = "wal.max_record_bytes", long = "wal-max-record-bytes", env = "MINITRUE_WAL_MAX_RECORD_BYTES",
          default_value_t = WalOptions::default().max_record_bytes as u64,
          value_parser = clap::value_parser!(u64).range(1 << 10..=minitrue_storage::RECORD_BYTES_HARD_LIMIT as u64))]
    pub max_record_bytes: u64,
}

impl WalSettings {
    pub fn options(&self) -> WalOptions {
        WalOptions {
            sync: match self.sync {
                WalSync::EveryBatch => SyncPolicy::EveryBatch,
                WalSync::Interval(span) => SyncPolicy::Interval(span.0),
            },
            segment_max_bytes: self.segment_bytes,
            max_record_bytes: self.max_record_bytes as u32,
        }
    }
}
