//! The engine's counters and gauges as [`Metric`] samples (for `/metrics` and
//! `system.metrics`).

use minitrue_common::{Metric, MetricsSource};

use crate::engine::Engine;

impl MetricsSource for Engine {
    fn collect(&self, out: &mut Vec<Metric>) {
        let stats = self.stats();
        out.extend([
            Metric::counter(
                "minitrue_storage_points_written_total",
                "Points written to the WAL and memtables.",
                stats.points_written,
            ),
            Metric::counter(
                "minitrue_storage_write_batches_total",
                "Engine writes (one WAL record each).",
                stats.write_batches,
            ),
            Metric::counter("minitrue_storage_deletes_total", "Deletes applied.", stats.deletes),
            Metric::counter(
                "minitrue_storage_flushes_total",
                "Memtable flushes to Parquet.",
                stats.flushes,
            ),
            Metric::counter(
                "minitrue_storage_flush_failures_total",
                "Flushes that failed and will be retried.",
                stats.flush_failures,
            ),
            Metric::counter(
                "minitrue_storage_compactions_total",
                "Compaction runs.",
                stats.compactions,
            ),
            Metric::gauge("minitrue_storage_files", "Parquet files served.", stats.files as f64),
            Metric::gauge(
                "minitrue_storage_file_bytes",
                "Bytes of Parquet files served.",
                stats.file_bytes as f64,
            ),
            Metric::gauge(
                "minitrue_storage_file_rows",
                "Rows in Parquet files served.",
                stats.file_rows as f64,
            ),
            Metric::gauge("minitrue_storage_series", "Series known.", stats.series as f64),
            Metric::gauge(
                "minitrue_storage_memtable_bytes",
                "Memory held by memtables.",
                stats.memtable_bytes as f64,
            ),
            Metric::gauge(
                "minitrue_storage_memtable_points",
                "Points in memtables, not yet in Parquet.",
                stats.memtable_points as f64,
            ),
            Metric::gauge(
                "minitrue_storage_frozen_memtables",
                "Memtables waiting to be flushed.",
                stats.frozen_memtables as f64,
            ),
            Metric::gauge(
                "minitrue_storage_flushed_lsn",
                "WAL position persisted in Parquet.",
                stats.flushed_lsn as f64,
            ),
            Metric::counter(
                "minitrue_wal_records_total",
                "WAL records appended.",
                stats.wal.records_appended,
            ),
            Metric::counter(
                "minitrue_wal_bytes_total",
                "WAL bytes appended.",
                stats.wal.bytes_appended,
            ),
            Metric::counter("minitrue_wal_fsyncs_total", "WAL fdatasync calls.", stats.wal.fsyncs),
            Metric::counter(
                "minitrue_wal_group_commits_total",
                "WAL group-commit batches.",
                stats.wal.group_commit_batches,
            ),
            Metric::counter(
                "minitrue_wal_corrupt_records_skipped_total",
                "WAL records lost to corruption found at start-up.",
                stats.wal.corrupt_records_skipped,
            ),
            Metric::gauge("minitrue_wal_segments", "WAL segment files.", stats.wal.segments as f64),
            Metric::gauge(
                "minitrue_wal_bytes",
                "Bytes of WAL segments on disk.",
                stats.wal.total_bytes as f64,
            ),
        ]);
    }
}
