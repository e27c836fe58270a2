-- Question: is the node healthy: is everything that was sent stored, with nothing
-- rejected, no failed flush and no corrupt log record?
--
-- system.metrics holds the counters that GET /metrics exports to Prometheus (one row per
-- counter and label set); system.storage is the storage engine's own view. system.files
-- lists the Parquet files once memtables are flushed (none yet right after loading).
SELECT name, labels, CAST(value AS bigint) AS value
FROM system.metrics
WHERE name IN ('minitrue_ingest_points_accepted_total', 'minitrue_ingest_points_rejected_total')
  AND labels = 'door="http"'
ORDER BY name;

SELECT series, points_written, deletes, flush_failures, wal_corrupt_records_skipped
FROM system.storage;
