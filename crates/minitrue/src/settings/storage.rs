//! `[storage]`: where data lives and how memtables become Parquet files; maps onto
//! [`EngineConfig`], whose own defaults are the defaults here.

use std::path::PathBuf;

use clap::Args;
use minitrue_storage::EngineConfig;
use serde::Serialize;

use super::span::Span;

fn engine() -> EngineConfig {
    EngineConfig::new("")
}

#[derive(Args, Debug, Clone, Serialize)]
pub struct StorageSettings {
    /// Local directory for the WAL (and the data files, unless --store-url is given).
    #[arg(
        id = "storage.data_dir",
        long = "data-dir",
        alias = "data_dir",
        env = "MINITRUE_DATA_DIR",
        default_value = "./data"
    )]
    pub data_dir: PathBuf,
    /// Object store for data files: file:///path or s3://bucket/prefix (credentials from
    /// the usual AWS_* variables).
    #[arg(id = "storage.store_url", long = "store-url", env = "MINITRUE_STORE_URL")]
    pub store_url: Option<String>,
    /// Flush the memtable to a data file when its estimated size reaches this many bytes.
    #[arg(id = "storage.flush_bytes", long = "storage-flush-bytes", env = "MINITRUE_STORAGE_FLUSH_BYTES",
          default_value_t = engine().flush_memtable_bytes as u64, value_parser = clap::value_parser!(u64).range(1 << 16..))]
    pub flush_bytes: u64,
    /// Flush the memtable when its oldest point has waited this long.
    #[arg(id = "storage.flush_age", long = "storage-flush-age", env = "MINITRUE_STORAGE_FLUSH_AGE",
          default_value_t = Span(engine().flush_max_age))]
    pub flush_age: Span,
    /// Calendar partitions of this width (files never span two; retention drops whole
    /// files), e.g. 1d written as 24h; default: none.
    #[arg(
        id = "storage.partition",
        long = "storage-partition",
        env = "MINITRUE_STORAGE_PARTITION"
    )]
    pub partition: Option<Span>,
    /// zstd level of data files (1 fast … 22 small).
    #[arg(id = "storage.zstd_level", long = "storage-zstd-level", env = "MINITRUE_STORAGE_ZSTD_LEVEL",
          default_value_t = engine().zstd_level as i64, value_parser = clap::value_parser!(i64).range(1..=22))]
    pub zstd_level: i64,
    /// Rows per Parquet row group.
    #[arg(id = "storage.row_group_rows", long = "storage-row-group-rows", env = "MINITRUE_STORAGE_ROW_GROUP_ROWS",
          default_value_t = engine().row_group_rows as u64, value_parser = clap::value_parser!(u64).range(1024..))]
    pub row_group_rows: u64,
    /// Rows per Parquet data page (finer pages prune better, cost a few bytes each).
    #[arg(id = "storage.page_rows", long = "storage-page-rows", env = "MINITRUE_STORAGE_PAGE_ROWS",
          default_value_t = engine().page_rows as u64, value_parser = clap::value_parser!(u64).range(64..))]
    pub page_rows: u64,
    /// Compact a run of this many same-level files of one partition.
    #[arg(id = "storage.compaction_min_files", long = "storage-compaction-min-files", env = "MINITRUE_STORAGE_COMPACTION_MIN_FILES",
          default_value_t = engine().compaction_min_files as u64, value_parser = clap::value_parser!(u64).range(2..))]
    pub compaction_min_files: u64,
    /// Rows per compacted file.
    #[arg(id = "storage.compaction_target_rows", long = "storage-compaction-target-rows", env = "MINITRUE_STORAGE_COMPACTION_TARGET_ROWS",
          default_value_t = engine().compaction_target_rows, value_parser = clap::value_parser!(u64).range(1024..))]
    pub compaction_target_rows: u64,
    /// Manifest versions kept in the store (older ones are deleted).
    #[arg(id = "storage.manifest_versions_kept", long = "storage-manifest-versions-kept", env = "MINITRUE_STORAGE_MANIFEST_VERSIONS_KEPT",
          default_value_t = engine().manifest_versions_kept as u64, value_parser = clap::value_parser!(u64).range(1..))]
    pub manifest_versions_kept: u64,
    /// Lock shards of each memtable (concurrent writers).
    #[arg(id = "storage.memtable_shards", long = "storage-memtable-shards", env = "MINITRUE_STORAGE_MEMTABLE_SHARDS",
          default_value_t = engine().memtable_shards as u64, value_parser = clap::value_parser!(u64).range(1..=4096))]
    pub memtable_shards: u64,
    /// How often flush and compaction are considered.
    #[arg(id = "storage.background_interval", long = "storage-background-interval", env = "MINITRUE_STORAGE_BACKGROUND_INTERVAL",
          default_value_t = Span(engine().background_interval.unwrap_or_default()))]
    pub background_interval: Span,
}

impl StorageSettings {
    /// The engine's configuration (its WAL options come from `[wal]`).
    pub fn engine_config(&self, wal: minitrue_storage::WalOptions) -> EngineConfig {
        let mut config = EngineConfig::new(&self.data_dir);
        config.object_store_url = self.store_url.clone();
        config.wal = wal;
        config.flush_memtable_bytes = usize::try_from(self.flush_bytes).unwrap_or(usize::MAX);
        config.flush_max_age = self.flush_age.0;
        config.partition = self.partition.map(|span| span.0).filter(|width| !width.is_zero());
        config.zstd_level = self.zstd_level as i32;
        config.row_group_rows = self.row_group_rows as usize;
        config.page_rows = self.page_rows as usize;
        config.compaction_min_files = self.compaction_min_files as usize;
        config.compaction_target_rows = self.compaction_target_rows;
        config.manifest_versions_kept = self.manifest_versions_kept as usize;
        config.memtable_shards = self.memtable_shards as usize;
        config.background_interval =
            Some(self.background_interval.0.max(std::time::Duration::from_millis(10)));
        config
    }
}
