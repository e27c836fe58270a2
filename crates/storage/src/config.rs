use std::path::PathBuf;
use std::time::Duration;

use minitrue_wal::WalOptions;

/// How a storage engine runs. [`EngineConfig::new`] gives the production defaults. Its
/// `Debug` output shows the keys of `object_store_options` but never their values (they may
/// be credentials).
#[derive(Clone)]
pub struct EngineConfig {
    /// Local directory for the WAL (`<data_dir>/wal`) and, without `object_store_url`, the
    /// data files and manifest (`<data_dir>/store`).
    pub data_dir: PathBuf,
    /// Where data files and manifests live: `file:///abs/path`, `s3://bucket/prefix` (S3 or
    /// any S3-compatible store, configured by the usual `AWS_*` environment variables and
    /// [`EngineConfig::object_store_options`]) or `memory://` (tests). `None` =
    /// `<data_dir>/store`.
    pub object_store_url: Option<String>,
    /// Options passed to the object store builder for a remote `object_store_url` (ignored
    /// for local and `memory://` stores), as `object_store` config keys, e.g.
    /// `("aws_endpoint", "http://127.0.0.1:9000")`, `("aws_allow_http", "true")`,
    /// `("aws_region", "us-east-1")`, `("aws_virtual_hosted_style_request", "false")` or the
    /// credentials `aws_access_key_id` / `aws_secret_access_key`. They override the `AWS_*`
    /// environment variables read at [`Engine::open`](crate::Engine::open); an unknown key
    /// fails the open with [`StorageError::StoreUrl`](crate::StorageError::StoreUrl).
    /// Default: empty.
    pub object_store_options: Vec<(String, String)>,
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
            object_store_options: Vec::new(),
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

impl std::fmt::Debug for EngineConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Destructured so that a new field cannot be forgotten here.
        let EngineConfig {
            data_dir,
            object_store_url,
            object_store_options,
            wal,
            memtable_shards,
            flush_memtable_bytes,
            flush_max_age,
            partition,
            zstd_level,
            row_group_rows,
            page_rows,
            compaction_min_files,
            compaction_target_rows,
            manifest_versions_kept,
            background_interval,
        } = self;
        let option_keys: Vec<&str> =
            object_store_options.iter().map(|(key, _)| key.as_str()).collect();
        f.debug_struct("EngineConfig")
            .field("data_dir", data_dir)
            .field("object_store_url", object_store_url)
            .field("object_store_options (keys only)", &option_keys)
            .field("wal", wal)
            .field("memtable_shards", memtable_shards)
            .field("flush_memtable_bytes", flush_memtable_bytes)
            .field("flush_max_age", flush_max_age)
            .field("partition", partition)
            .field("zstd_level", zstd_level)
            .field("row_group_rows", row_group_rows)
            .field("page_rows", page_rows)
            .field("compaction_min_files", compaction_min_files)
            .field("compaction_target_rows", compaction_target_rows)
            .field("manifest_versions_kept", manifest_versions_kept)
            .field("background_interval", background_interval)
            .finish()
    }
}
