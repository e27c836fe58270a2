use std::path::PathBuf;
use std::time::Duration;

use minitrue_wal::WalOptions;

/// How a storage engine runs. [`EngineConfig::new`] gives the production defaults.
#[derive(Debug, Clone)]
pub struct EngineConfig {
    /// Local directory for the WAL (`<data_dir>/wal`) and, without `object_store_url`, the
    /// data files and manifest (`<data_dir>/store`).
    pub data_dir: PathBuf,
    /// Where data files and manifests live: `file:///abs/path`, `s3://bucket/prefix` (S3 or
    /// any S3-compatible store, configured by the usual `AWS_*` environment variables) or
    /// `memory://` (tests). `None` = `<data_dir>/store`.
    pub object_store_url: Option<String>,
    pub wal: WalOptions,
    /// Lock shards of each memtable.
    pub memtable_shards: usize,
    /// Flush when the active memtable's estimated heap reaches this.
    pub flush_memtable_bytes: usize,
    /// Flush when the active memtable's oldest data is this old.
    pub flush_max_age: Duration,
    /// Width of a calendar time partition (files never span two), or `None`: files span
    /// whatever time their points cover and carry their time range and per-series ranges for
    /// pruning. Partitions make retention drop whole files; without them sparse historical
    /// data (a sensor every few minutes over a year) stays in a few large files instead of
    /// hundreds of small ones.
    pub partition: Option<Duration>,
    pub zstd_level: i32,
    pub row_group_rows: usize,
    /// Rows per Parquet data page (finer pages prune better, cost a few bytes each).
    pub page_rows: usize,
    /// Merge a run of this many same-level files of one partition.
    pub compaction_min_files: usize,
    /// Rows per compaction output file (and per compaction read chunk).
    pub compaction_target_rows: u64,
    /// Manifest versions kept in the store (older ones are deleted).
    pub manifest_versions_kept: usize,
    /// How often the background task checks flush and compaction; `None` runs no background
    /// task (tests drive flush and compaction themselves).
    pub background_interval: Option<Duration>,
}

impl EngineConfig {
    pub fn new(data_dir: impl Into<PathBuf>) -> Self {
        EngineConfig {
            data_dir: data_dir.into(),
            object_store_url: None,
            wal: WalOptions::default(),
            memtable_shards: 64,
            flush_memtable_bytes: 64 << 20,
            flush_max_age: Duration::from_secs(600),
            partition: None,
            zstd_level: 9,
            row_group_rows: 1 << 20,
            page_rows: 64 * 1024,
            compaction_min_files: 4,
            compaction_target_rows: 8 << 20,
            manifest_versions_kept: 5,
            background_interval: Some(Duration::from_secs(1)),
        }
    }
}
