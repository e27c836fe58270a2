//! MiniTrue's single-node storage engine.
//!
//! Data flow: ingestion and SQL `INSERT` call [`Engine::write`] → the points are appended to
//! the write-ahead log (`minitrue-wal`, durable per its sync policy) → applied to the active
//! [`memtable`] (one Gorilla stream per series, `minitrue-gorilla`) → acknowledged. When the
//! memtable is large or old enough it is frozen and flushed as Parquet files (one per time
//! partition and value layout, see [`file_format`] and [`layout`]) through `object_store`;
//! a new [`manifest`] version then lists them and the WAL is trimmed. Background compaction
//! merges small files of a partition, dropping duplicates and deleted points.
//!
//! Reads ([`Engine::scan`]) combine the active memtable, frozen memtables and files, prune by
//! series and time using the per-series index every file carries, apply deletes, and resolve
//! duplicates so exactly one point per `(series, time)` comes back: the last written.

pub mod aggregate;
pub mod catalog;
mod config;
mod engine;
mod error;
pub mod exact;
pub mod file_format;
pub mod layout;
pub mod log_entry;
pub mod manifest;
pub mod memtable;
mod metrics;
mod object_reader;
mod scan;
pub mod segments;
pub mod series_tags;

pub use aggregate::{AggregateOutput, AggregateRequest, GroupAggregate, TimeBuckets};
pub use catalog::SeriesInfo;
pub use config::EngineConfig;
pub use engine::{
    CompactionReport, Engine, EngineStats, FlushReport, RecoveryReport, WriteAck,
    LIVE_BATCHES_BUFFERED,
};
pub use error::{Result, StorageError};
pub use exact::{ExactSum, ValueAggregate};
pub use file_format::{readings_schema, FileMeta};
pub use log_entry::DeleteRequest;
pub use minitrue_wal::{SyncPolicy, WalOptions, RECORD_BYTES_HARD_LIMIT};
pub use scan::{BatchStream, ScanRequest, SeriesFilter};
pub use series_tags::Tags;
