//! The storage engine: durable writes, reads across memtables and files, flush, compaction,
//! deletes and crash recovery. See the crate docs for the data flow.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use futures::TryStreamExt;
use minitrue_common::{LiveBatch, Point, SeriesKey, TimeRange};
use minitrue_wal::{Wal, WalStats};
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};
use parking_lot::RwLock;
use parquet::arrow::arrow_reader::ArrowReaderMetadata;
use tokio::sync::Notify;

use crate::aggregate::{AggregateOutput, AggregateRequest};
use crate::catalog::{Catalog, SeriesInfo};
use crate::config::EngineConfig;
use crate::error::{Result, StorageError};
use crate::file_format::{
    write_file_set, DataFile, EncodedFile, FileMeta, FileSetParams, LsnRange,
};
use crate::log_entry::{self, DeleteRequest, LogEntry};
use crate::manifest::{Manifest, ManifestStore, Tombstone};
use crate::memtable::Memtable;
use crate::object_reader::{reader_options, ObjectFileReader};
use crate::scan::{BatchStream, ScanRequest, Source, SourceSet};
use crate::series_tags::{SeriesTagStore, Tags};

/// Proof that a write is durable: its points are in the WAL under `lsn`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WriteAck {
    pub lsn: u64,
    pub points: usize,
}

/// What start-up found and did. Everything damaged is listed; everything else is served.
#[derive(Debug, Default)]
pub struct RecoveryReport {
    pub manifest_version: u64,
    /// Newer manifest versions that could not be read: (path, reason).
    pub manifest_versions_skipped: Vec<(String, String)>,
    pub files: usize,
    /// Files the manifest lists that are not in the store.
    pub files_missing: Vec<String>,
    /// Files the manifest lists that could not be opened: (path, reason).
    pub files_corrupt: Vec<(String, String)>,
    /// Files not in the manifest whose data was nowhere else (a lost manifest version).
    pub orphans_adopted: Vec<String>,
    /// Files not in the manifest whose data is elsewhere (an interrupted flush or compaction).
    pub orphans_removed: Vec<String>,
    pub wal_torn_tail_bytes: u64,
    pub wal_corrupt_regions: usize,
    pub wal_records_replayed: u64,
    /// WAL records whose checksum held but whose contents did not decode.
    pub wal_records_undecodable: u64,
    pub points_replayed: u64,
    /// Lines of the series-tags file that did not parse (a torn tail after a crash).
    pub tag_lines_skipped: usize,
}

/// Counters and gauges, for `system.*` tables and `/metrics`.
#[derive(Debug, Clone, Default)]
pub struct EngineStats {
    pub points_written: u64,
    pub write_batches: u64,
    pub deletes: u64,
    pub flushes: u64,
    pub flush_failures: u64,
    pub compactions: u64,
    pub files: usize,
    pub file_bytes: u64,
    pub file_rows: u64,
    pub series: usize,
    pub memtable_bytes: usize,
    pub memtable_encoded_bytes: usize,
    pub memtable_points: u64,
    pub frozen_memtables: usize,
    pub flushed_lsn: u64,
    pub wal: WalStats,
}

/// Writes a live receiver may fall behind before it misses some.
pub const LIVE_BATCHES_BUFFERED: usize = 1024;

/// What a flush did.
#[derive(Debug, Clone, Default)]
pub struct FlushReport {
    pub files_written: usize,
    pub rows_written: u64,
    pub bytes_written: u64,
}

/// What a compaction did.
#[derive(Debug, Clone, Default)]
pub struct CompactionReport {
    pub runs: usize,
    pub files_in: usize,
    pub files_out: usize,
    pub rows_in: u64,
    pub rows_out: u64,
}

/// Everything a reader needs, swapped atomically when it changes.
#[derive(Clone)]
struct ReadState {
    active: Arc<Memtable>,
    /// Frozen generations awaiting flush, oldest first, with the last LSN each covers.
    frozen: Vec<(Arc<Memtable>, u64)>,
    /// Sorted by `lsn.max` (oldest first): on the same `(series, time)` a later file wins.
    files: Vec<Arc<DataFile>>,
    tombstones: Arc<Vec<Tombstone>>,
}

impl ReadState {
    fn sources(&self) -> SourceSet {
        let mut sources: Vec<Source> = self.files.iter().cloned().map(Source::File).collect();
        for (table, through_lsn) in &self.frozen {
            sources.push(Source::Memtable { table: table.clone(), through_lsn: *through_lsn });
        }
        sources.push(Source::Memtable { table: self.active.clone(), through_lsn: u64::MAX });
        SourceSet { sources, tombstones: self.tombstones.clone() }
    }
}

#[derive(Default)]
struct Counters {
    points_written: AtomicU64,
    write_batches: AtomicU64,
    deletes: AtomicU64,
    flushes: AtomicU64,
    flush_failures: AtomicU64,
    compactions: AtomicU64,
}

/// The single-node storage engine.
///
/// * [`Engine::write`] returns once the points are in the WAL under the configured sync policy
///   (with `SyncPolicy::EveryBatch`, on disk); they are visible to scans from then on.
/// * [`Engine::scan`] sees every acknowledged write and delete, one point per
///   `(series, time)`: the last write wins.
/// * After a crash or restart, [`Engine::open`] restores exactly the acknowledged state: WAL
///   records past the manifest's `flushed_lsn` are replayed, nothing is applied twice.
///
/// All methods are async and never block the runtime: encoding, Parquet writing and WAL
/// syncs run on blocking threads.
pub struct Engine {
    config: EngineConfig,
    store: Arc<dyn ObjectStore>,
    wal: Arc<Wal>,
    manifests: ManifestStore,
    /// Writers hold it shared from WAL append to memtable apply; freezing a memtable and
    /// deletes hold it exclusively, so a generation's LSN range is exact.
    gate: tokio::sync::RwLock<()>,
    state: RwLock<Arc<ReadState>>,
    /// The committed manifest; held for the whole of a flush or compaction, serialising them.
    manifest: tokio::sync::Mutex<Manifest>,
    catalog: Catalog,
    series_tags: Arc<SeriesTagStore>,
    counters: Counters,
    flush_wanted: Arc<Notify>,
    flush_done: Notify,
    shutting_down: AtomicBool,
    shutdown_signal: Arc<Notify>,
    /// Every acknowledged write, for live views ([`Engine::subscribe_live`]). Sent to only
    /// when someone listens, so it costs nothing otherwise.
    live: tokio::sync::broadcast::Sender<LiveBatch>,
    background: parking_lot::Mutex<Option<tokio::task::JoinHandle<()>>>,
    /// Held from open until close (or drop): a second process on the same directory would
    /// corrupt the WAL. The OS releases it when the process dies, however it dies.
    lock: parking_lot::Mutex<Option<std::fs::File>>,
}

impl Engine {
    /// Opens (or creates) the database in `config.data_dir` and recovers it. Must be called
    /// inside a Tokio runtime; starts the background flush/compaction task when configured.
    pub async fn open(config: EngineConfig) -> Result<(Arc<Engine>, RecoveryReport)> {
        let mut report = RecoveryReport::default();
        tokio::fs::create_dir_all(&config.data_dir)
            .await
            .map_err(|source| StorageError::Io { path: config.data_dir.clone(), source })?;
        let lock = lock_data_dir(&config.data_dir)?;
        let (series_tags, tag_recovery) = {
            let dir = config.data_dir.clone();
            tokio::task::spawn_blocking(move || SeriesTagStore::open(&dir))
                .await
                .map_err(|e| StorageError::Task(e.to_string()))??
        };
        report.tag_lines_skipped = tag_recovery.lines_skipped;
        let store = open_store(&config)?;
        let manifests = ManifestStore::new(store.clone(), config.manifest_versions_kept);
        let loaded = manifests.load().await?;
        let mut manifest = loaded.manifest;
        report.manifest_versions_skipped = loaded.skipped;

        // Every data object in the store, with its size.
        let objects: Vec<_> = store
            .list(Some(&Path::from("data")))
            .try_collect()
            .await
            .map_err(|e| StorageError::store("list", "data", e))?;
        let mut present: BTreeMap<String, u64> = objects
            .into_iter()
            .filter(|o| o.location.as_ref().ends_with(".parquet"))
            .map(|o| (o.location.to_string(), o.size))
            .collect();

        // Files the manifest lists.
        let mut files: Vec<Arc<DataFile>> = Vec::new();
        let mut listed_ids: HashSet<u64> = HashSet::new();
        for meta in &manifest.files {
            listed_ids.insert(meta.id);
            let Some(size) = present.remove(&meta.path) else {
                tracing::error!(path = %meta.path, "data file listed in the manifest is missing");
                report.files_missing.push(meta.path.clone());
                continue;
            };
            match open_data_file(&store, &meta.path, size).await {
                Ok(file) => files.push(Arc::new(file)),
                Err(error) => {
                    tracing::error!(path = %meta.path, %error, "data file listed in the manifest is unreadable");
                    report.files_corrupt.push((meta.path.clone(), error.to_string()));
                }
            }
        }

        // The WAL, continuing LSNs after everything already flushed.
        let wal_dir = config.data_dir.join("wal");
        let wal_options = config.wal.clone();
        let flushed_lsn = manifest.flushed_lsn;
        let (wal, wal_report) = tokio::task::spawn_blocking(move || {
            minitrue_wal::Wal::open_after(&wal_dir, wal_options, flushed_lsn + 1)
        })
        .await
        .map_err(|e| StorageError::Task(e.to_string()))??;
        report.wal_torn_tail_bytes = wal_report.torn_tail_bytes;
        report.wal_corrupt_regions = wal_report.corrupt.len();
        let wal = Arc::new(wal);
        let first_unflushed = first_record_after(&wal, flushed_lsn).await?;

        // Files no manifest version lists: decide from their own footers.
        let changed = recover_orphans(
            &store,
            &mut manifest,
            &mut files,
            &listed_ids,
            present,
            first_unflushed,
            wal.last_lsn(),
            &mut report,
        )
        .await?;
        if changed || !report.files_missing.is_empty() || !report.files_corrupt.is_empty() {
            // Record the repaired file list so the next start begins from it.
            manifest.files = files.iter().map(|f| f.meta.clone()).collect();
            manifest.version += 1;
            manifests.commit(&manifest).await?;
        }
        files.sort_by_key(|f| (f.meta.lsn.max, f.meta.id));
        report.files = files.len();
        report.manifest_version = manifest.version;

        let catalog = Catalog::default();
        for file in &files {
            for (key, stats) in file.index.iter() {
                catalog.merge_chunk(
                    key,
                    stats.time.start,
                    stats.time.end,
                    stats.last_value,
                    stats.rows,
                );
            }
        }

        // Replay what the files do not hold yet.
        let active = Arc::new(Memtable::new(config.memtable_shards));
        let mut tombstones = manifest.tombstones.clone();
        let replay_wal = wal.clone();
        let replay_table = active.clone();
        let (replayed, pending_tombstones, catalog) = tokio::task::spawn_blocking(move || {
            replay(&replay_wal, manifest.flushed_lsn, &replay_table, catalog)
        })
        .await
        .map_err(|e| StorageError::Task(e.to_string()))??;
        report.wal_records_replayed = replayed.records;
        report.wal_records_undecodable = replayed.undecodable;
        report.points_replayed = replayed.points;
        tombstones.extend(pending_tombstones);

        let state =
            ReadState { active, frozen: Vec::new(), files, tombstones: Arc::new(tombstones) };
        let engine = Arc::new(Engine {
            store,
            wal,
            manifests,
            gate: tokio::sync::RwLock::new(()),
            state: RwLock::new(Arc::new(state)),
            manifest: tokio::sync::Mutex::new(manifest),
            catalog,
            series_tags: Arc::new(series_tags),
            counters: Counters::default(),
            flush_wanted: Arc::new(Notify::new()),
            flush_done: Notify::new(),
            shutting_down: AtomicBool::new(false),
            shutdown_signal: Arc::new(Notify::new()),
            live: tokio::sync::broadcast::channel(LIVE_BATCHES_BUFFERED).0,
            background: parking_lot::Mutex::new(None),
            lock: parking_lot::Mutex::new(Some(lock)),
            config,
        });
        if report.files_missing.len() + report.files_corrupt.len() + report.wal_corrupt_regions > 0
        {
            tracing::error!(?report, "storage recovered with damage; serving all undamaged data");
        } else {
            tracing::info!(
                files = report.files,
                replayed = report.wal_records_replayed,
                "storage recovered"
            );
        }
        // The files' indexes still count points that tombstones hide until compaction: the
        // series those touch are derived again from what remains, as after a delete.
        let tombstones = engine.read_state().tombstones.clone();
        if !tombstones.is_empty() {
            engine
                .rederive_series(|key| tombstones.iter().any(|t| t.delete.matches_series(key)))
                .await?;
        }
        if let Some(interval) = engine.config.background_interval {
            let handle = tokio::spawn(background_loop(Arc::downgrade(&engine), interval));
            *engine.background.lock() = Some(handle);
        }
        Ok((engine, report))
    }

    fn check_open(&self) -> Result<()> {
        if self.shutting_down.load(Ordering::Acquire) {
            return Err(StorageError::ShutDown);
        }
        Ok(())
    }

    fn read_state(&self) -> Arc<ReadState> {
        self.state.read().clone()
    }

    /// Writes points durably. Returns once they are in the WAL (per the sync policy) and
    /// visible to scans. A point with the same series and time as a stored one replaces it.
    /// Cancelling the future after the WAL append leaves the write durable and applied on
    /// the next restart at the latest.
    pub async fn write(&self, points: &[Point]) -> Result<WriteAck> {
        self.check_open()?;
        if points.is_empty() {
            return Ok(WriteAck { lsn: self.wal.last_lsn(), points: 0 });
        }
        let groups = log_entry::group_by_series(points);
        let payload = log_entry::encode_write(&groups);
        self.wait_for_memory().await;
        let active = {
            let _gate = self.gate.read().await;
            let lsn = self.wal.append(payload).await?;
            let active = self.read_state().active.clone();
            active.apply_write(lsn, &groups);
            for (key, samples) in &groups {
                self.catalog.observe(key, samples);
            }
            self.counters.points_written.fetch_add(points.len() as u64, Ordering::Relaxed);
            self.counters.write_batches.fetch_add(1, Ordering::Relaxed);
            (active, lsn)
        };
        if active.0.memory_bytes() >= self.config.flush_memtable_bytes {
            self.flush_wanted.notify_one();
        }
        if self.live.receiver_count() > 0 {
            // No receiver left between the check and the send is fine: the batch is dropped.
            let _ = self.live.send(Arc::from(points));
        }
        Ok(WriteAck { lsn: active.1, points: points.len() })
    }

    /// The points of every write from now on, once acknowledged (durable and visible), in
    /// write order. A receiver that falls more than [`LIVE_BATCHES_BUFFERED`] writes behind
    /// misses the oldest ones and is told how many (`RecvError::Lagged`): writes never wait
    /// for live views.
    pub fn subscribe_live(&self) -> tokio::sync::broadcast::Receiver<LiveBatch> {
        self.live.subscribe()
    }

    /// Records the tags of series (from topic templates or line protocol). Durable when it
    /// returns; call it before the write that carried the tags so an acknowledged point's
    /// tags are never lost. Unchanged tags cost a map lookup and no I/O.
    pub async fn set_series_tags(&self, updates: &[(SeriesKey, Tags)]) -> Result<()> {
        self.check_open()?;
        let changes = self.series_tags.changed(updates);
        if changes.is_empty() {
            return Ok(());
        }
        let store = self.series_tags.clone();
        tokio::task::spawn_blocking(move || store.apply(changes))
            .await
            .map_err(|e| StorageError::Task(e.to_string()))?
    }

    /// The tags of `key`, if it has any.
    pub fn series_tags(&self, key: &SeriesKey) -> Option<Tags> {
        self.series_tags.get(key)
    }

    /// Backpressure: when flushes fall behind, writers wait instead of growing memory.
    async fn wait_for_memory(&self) {
        if self.config.background_interval.is_none() {
            return;
        }
        loop {
            let state = self.read_state();
            let behind = state.frozen.len() >= 2
                || state.active.memory_bytes() >= 2 * self.config.flush_memtable_bytes;
            if !behind || self.shutting_down.load(Ordering::Acquire) {
                return;
            }
            self.flush_wanted.notify_one();
            let _ = tokio::time::timeout(
                std::time::Duration::from_millis(50),
                self.flush_done.notified(),
            )
            .await;
        }
    }

    /// Deletes the points of a device (one metric or all) within a time range. Durable when it
    /// returns; scans stop seeing the points at once; files are rewritten at compaction.
    pub async fn delete(&self, delete: DeleteRequest) -> Result<()> {
        self.check_open()?;
        if delete.device_id.is_empty() {
            return Err(StorageError::InvalidRequest { reason: "delete needs a device_id".into() });
        }
        if delete.time.is_empty() {
            return Err(StorageError::InvalidRequest {
                reason: "delete time range is empty".into(),
            });
        }
        {
            let _gate = self.gate.write().await;
            let lsn = self.wal.append(log_entry::encode_delete(&delete)).await?;
            let mut guard = self.state.write();
            guard.active.apply_delete(lsn, &delete)?;
            let mut state = (**guard).clone();
            let mut tombstones = (*state.tombstones).clone();
            tombstones.push(Tombstone { lsn, delete: delete.clone() });
            state.tombstones = Arc::new(tombstones);
            *guard = Arc::new(state);
        }
        self.counters.deletes.fetch_add(1, Ordering::Relaxed);
        self.rederive_series(|key| delete.matches_series(key)).await
    }

    /// Re-derives the last-value cache of the series `touched` selects from the points that
    /// remain (what deletes left).
    async fn rederive_series(&self, touched: impl Fn(&SeriesKey) -> bool) -> Result<()> {
        let sources = self.read_state().sources();
        for key in self.catalog.keys_matching(|k| touched(k)) {
            let points = sources.series_points(&self.store, &key, TimeRange::ALL).await?;
            let info = (!points.is_empty()).then(|| SeriesInfo {
                series: key.clone(),
                first_time: points.times[0],
                last_time: points.times[points.len() - 1],
                last_value: points.values[points.len() - 1],
                points: points.len() as u64,
            });
            self.catalog.set(&key, info);
        }
        Ok(())
    }

    /// Streams points matching `request`. The scan reads a consistent snapshot taken when it
    /// starts; dropping the stream cancels it.
    pub fn scan(&self, request: ScanRequest) -> Result<BatchStream> {
        self.check_open()?;
        self.read_state().sources().scan(self.store.clone(), request)
    }

    /// Count, exact sum, min and max per series (and bucket) over a time range, from stored
    /// chunk aggregates where they are exact and by decoding elsewhere; identical to
    /// aggregating what [`Engine::scan`] returns (see [`crate::aggregate`]). Reads a consistent
    /// snapshot taken when it starts.
    pub async fn aggregate(&self, request: AggregateRequest) -> Result<AggregateOutput> {
        self.check_open()?;
        self.read_state().sources().aggregate(&self.store, &request).await
    }

    /// Every series with its first/last time and last value, from the last-value cache.
    pub fn series(&self) -> Vec<SeriesInfo> {
        self.catalog.all()
    }

    pub fn series_info(&self, key: &SeriesKey) -> Option<SeriesInfo> {
        self.catalog.get(key)
    }

    /// Data files currently served, oldest first.
    pub fn files(&self) -> Vec<FileMeta> {
        self.read_state().files.iter().map(|f| f.meta.clone()).collect()
    }

    pub fn stats(&self) -> EngineStats {
        let state = self.read_state();
        let flushed_lsn = self.manifest.try_lock().map(|m| m.flushed_lsn).unwrap_or_default();
        EngineStats {
            points_written: self.counters.points_written.load(Ordering::Relaxed),
            write_batches: self.counters.write_batches.load(Ordering::Relaxed),
            deletes: self.counters.deletes.load(Ordering::Relaxed),
            flushes: self.counters.flushes.load(Ordering::Relaxed),
            flush_failures: self.counters.flush_failures.load(Ordering::Relaxed),
            compactions: self.counters.compactions.load(Ordering::Relaxed),
            files: state.files.len(),
            file_bytes: state.files.iter().map(|f| f.meta.size_bytes).sum(),
            file_rows: state.files.iter().map(|f| f.meta.rows).sum(),
            series: self.catalog.len(),
            memtable_bytes: state.active.memory_bytes()
                + state.frozen.iter().map(|(t, _)| t.memory_bytes()).sum::<usize>(),
            memtable_encoded_bytes: state.active.encoded_bytes()
                + state.frozen.iter().map(|(t, _)| t.encoded_bytes()).sum::<usize>(),
            memtable_points: state.active.point_count()
                + state.frozen.iter().map(|(t, _)| t.point_count()).sum::<u64>(),
            frozen_memtables: state.frozen.len(),
            flushed_lsn,
            wal: self.wal.stats(),
        }
    }

    /// Persists everything written so far to Parquet and the manifest, then trims the WAL.
    pub async fn flush(&self) -> Result<FlushReport> {
        let mut manifest = self.manifest.lock().await;
        let result = self.flush_locked(&mut manifest).await;
        if result.is_err() {
            self.counters.flush_failures.fetch_add(1, Ordering::Relaxed);
        }
        self.flush_done.notify_waiters();
        result
    }

    async fn flush_locked(&self, manifest: &mut Manifest) -> Result<FlushReport> {
        self.freeze_active(manifest.flushed_lsn).await?;
        let mut report = FlushReport::default();
        loop {
            let next = self.read_state().frozen.first().cloned();
            let Some((table, through_lsn)) = next else { break };
            let written = self.persist_frozen(manifest, table, through_lsn).await?;
            report.files_written += written.files_written;
            report.rows_written += written.rows_written;
            report.bytes_written += written.bytes_written;
        }
        Ok(report)
    }

    /// Swaps in a fresh active memtable (when there is anything to flush).
    async fn freeze_active(&self, flushed_lsn: u64) -> Result<()> {
        let _gate = self.gate.write().await;
        let through_lsn = self.wal.last_lsn();
        {
            let mut guard = self.state.write();
            let nothing_new = guard.active.is_empty() && through_lsn <= flushed_lsn;
            let already_frozen = guard.frozen.last().is_some_and(|(_, lsn)| *lsn >= through_lsn);
            if nothing_new || already_frozen {
                return Ok(());
            }
            let mut state = (**guard).clone();
            let frozen = std::mem::replace(
                &mut state.active,
                Arc::new(Memtable::new(self.config.memtable_shards)),
            );
            state.frozen.push((frozen, through_lsn));
            *guard = Arc::new(state);
        }
        // New writes go to a new segment, so the frozen generation's segments can be removed.
        let wal = self.wal.clone();
        tokio::task::spawn_blocking(move || wal.rotate())
            .await
            .map_err(|e| StorageError::Task(e.to_string()))??;
        Ok(())
    }

    async fn persist_frozen(
        &self,
        manifest: &mut Manifest,
        table: Arc<Memtable>,
        through_lsn: u64,
    ) -> Result<FlushReport> {
        table.shrink();
        let params = self.file_set_params(
            manifest,
            LsnRange { min: manifest.flushed_lsn + 1, max: through_lsn },
            Vec::new(),
            0,
        );
        let encoding_table = table.clone();
        let encoded = tokio::task::spawn_blocking(move || {
            let keys: Vec<SeriesKey> = encoding_table
                .series_matching(TimeRange::ALL, |_| true)
                .into_iter()
                .map(|(k, _)| k)
                .collect();
            write_file_set(&keys, &|key| encoding_table.read_series(key, TimeRange::ALL), &params)
        })
        .await
        .map_err(|e| StorageError::Task(e.to_string()))??;
        let new_files = self.store_files(encoded).await?;

        let mut next = manifest.clone();
        next.version += 1;
        next.flushed_lsn = through_lsn;
        next.next_batch_id += 1;
        next.next_file_id += new_files.len() as u64;
        next.files.extend(new_files.iter().map(|f| f.meta.clone()));
        let tombstones = self.read_state().tombstones.clone();
        next.tombstones = tombstones.iter().filter(|t| t.lsn <= through_lsn).cloned().collect();
        self.manifests.commit(&next).await?;
        *manifest = next;

        let report = FlushReport {
            files_written: new_files.len(),
            rows_written: new_files.iter().map(|f| f.meta.rows).sum(),
            bytes_written: new_files.iter().map(|f| f.meta.size_bytes).sum(),
        };
        {
            let mut guard = self.state.write();
            let mut state = (**guard).clone();
            state.frozen.retain(|(t, _)| !Arc::ptr_eq(t, &table));
            state.files.extend(new_files);
            state.files.sort_by_key(|f| (f.meta.lsn.max, f.meta.id));
            *guard = Arc::new(state);
        }
        let wal = self.wal.clone();
        tokio::task::spawn_blocking(move || wal.remove_through(through_lsn))
            .await
            .map_err(|e| StorageError::Task(e.to_string()))??;
        self.counters.flushes.fetch_add(1, Ordering::Relaxed);
        tracing::debug!(
            files = report.files_written,
            rows = report.rows_written,
            bytes = report.bytes_written,
            through_lsn,
            "flushed memtable"
        );
        Ok(report)
    }

    fn file_set_params(
        &self,
        manifest: &Manifest,
        lsn: LsnRange,
        compacted_from: Vec<u64>,
        level: u32,
    ) -> FileSetParams {
        FileSetParams {
            partition_ns: self
                .config
                .partition
                .map(|width| width.as_nanos().clamp(1, i64::MAX as u128) as i64),
            zstd_level: self.config.zstd_level,
            row_group_rows: self.config.row_group_rows,
            page_rows: self.config.page_rows,
            lsn,
            batch_id: manifest.next_batch_id,
            first_file_id: manifest.next_file_id,
            compacted_from,
            level,
        }
    }

    /// Puts encoded files into the store and returns them as served files.
    async fn store_files(&self, encoded: Vec<EncodedFile>) -> Result<Vec<Arc<DataFile>>> {
        let mut files = Vec::with_capacity(encoded.len());
        for file in encoded {
            let path = Path::from(file.meta.path.as_str());
            self.store
                .put(&path, PutPayload::from_bytes(file.bytes.clone()))
                .await
                .map_err(|e| StorageError::store("put", &path, e))?;
            let reader_meta = ArrowReaderMetadata::load(&file.bytes, reader_options())
                .map_err(|e| StorageError::parquet(&file.meta.path, e))?;
            files.push(Arc::new(DataFile { meta: file.meta, index: file.index, reader_meta }));
        }
        Ok(files)
    }

    /// Merges small files: within a partition, a run of `compaction_min_files` files of the
    /// same level that are consecutive in WAL order (so "newest wins" still holds) becomes
    /// one level up. With `force`, every partition with more than one file, or with deletes
    /// to apply, is merged whole. Deletes are applied physically; duplicates disappear.
    pub async fn compact(&self, force: bool) -> Result<CompactionReport> {
        let mut manifest = self.manifest.lock().await;
        let state = self.read_state();
        let runs = pick_compaction_runs(
            &state.files,
            &state.tombstones,
            self.config.compaction_min_files,
            force,
        );
        let mut report = CompactionReport::default();
        for run in runs {
            let (files_out, rows_out) = self.compact_run(&mut manifest, &run).await?;
            report.runs += 1;
            report.files_in += run.len();
            report.files_out += files_out;
            report.rows_in += run.iter().map(|f| f.meta.rows).sum::<u64>();
            report.rows_out += rows_out;
        }
        Ok(report)
    }

    async fn compact_run(
        &self,
        manifest: &mut Manifest,
        run: &[Arc<DataFile>],
    ) -> Result<(usize, u64)> {
        let tombstones = self.read_state().tombstones.clone();
        let sources = SourceSet {
            sources: run.iter().cloned().map(Source::File).collect(),
            tombstones: tombstones.clone(),
        };
        let lsn = LsnRange {
            min: run.iter().map(|f| f.meta.lsn.min).min().unwrap_or(0),
            max: run.iter().map(|f| f.meta.lsn.max).max().unwrap_or(0),
        };
        let level = run.iter().map(|f| f.meta.level).max().unwrap_or(0) + 1;
        let inputs: Vec<u64> = run.iter().map(|f| f.meta.id).collect();
        // Series of the run in key order, cut into chunks of about the target row count.
        let mut rows_per_series: BTreeMap<SeriesKey, u64> = BTreeMap::new();
        for file in run {
            for (key, stats) in file.index.iter() {
                *rows_per_series.entry(key.clone()).or_default() += stats.rows;
            }
        }
        let mut chunks: Vec<Vec<SeriesKey>> = vec![Vec::new()];
        let mut chunk_rows = 0u64;
        for (key, rows) in rows_per_series {
            if chunk_rows > 0 && chunk_rows + rows > self.config.compaction_target_rows {
                chunks.push(Vec::new());
                chunk_rows = 0;
            }
            chunk_rows += rows;
            if let Some(chunk) = chunks.last_mut() {
                chunk.push(key);
            }
        }
        let mut next = manifest.clone();
        let mut outputs: Vec<Arc<DataFile>> = Vec::new();
        for chunk in chunks.into_iter().filter(|c| !c.is_empty()) {
            let points = Arc::new(sources.many_series_points(&self.store, &chunk).await?);
            let params = self.file_set_params(&next, lsn, inputs.clone(), level);
            let encoded = tokio::task::spawn_blocking(move || {
                write_file_set(
                    &chunk,
                    &|key| Ok(points.get(key).cloned().unwrap_or_default()),
                    &params,
                )
            })
            .await
            .map_err(|e| StorageError::Task(e.to_string()))??;
            next.next_file_id += encoded.len() as u64;
            outputs.extend(self.store_files(encoded).await?);
        }
        next.version += 1;
        next.next_batch_id += 1;
        let input_ids: HashSet<u64> = inputs.iter().copied().collect();
        next.files.retain(|f| !input_ids.contains(&f.id));
        next.files.extend(outputs.iter().map(|f| f.meta.clone()));

        // Tombstones still needed: some remaining file predates them and may hold their series.
        let mut remaining: Vec<Arc<DataFile>> = self
            .read_state()
            .files
            .iter()
            .filter(|f| !input_ids.contains(&f.meta.id))
            .cloned()
            .collect();
        remaining.extend(outputs.iter().cloned());
        let needed = |t: &Tombstone| {
            remaining.iter().any(|f| {
                f.meta.lsn.max < t.lsn
                    && f.meta.time.overlaps(&t.delete.time)
                    && f.index.iter().any(|(key, _)| t.delete.matches_series(key))
            })
        };
        next.tombstones.retain(|t| needed(t));
        self.manifests.commit(&next).await?;
        let kept: HashSet<u64> = tombstones
            .iter()
            .filter(|t| t.lsn > next.flushed_lsn || needed(t))
            .map(|t| t.lsn)
            .collect();
        *manifest = next;

        let rows_out = outputs.iter().map(|f| f.meta.rows).sum();
        let files_out = outputs.len();
        {
            let mut guard = self.state.write();
            let mut state = (**guard).clone();
            state.files.retain(|f| !input_ids.contains(&f.meta.id));
            state.files.extend(outputs);
            state.files.sort_by_key(|f| (f.meta.lsn.max, f.meta.id));
            state.tombstones = Arc::new(
                state.tombstones.iter().filter(|t| kept.contains(&t.lsn)).cloned().collect(),
            );
            *guard = Arc::new(state);
        }
        for file in run {
            let path = Path::from(file.meta.path.as_str());
            if let Err(error) = self.store.delete(&path).await {
                tracing::warn!(path = %path, %error, "could not delete compacted file; it is ignored and removed at next start");
            }
        }
        self.counters.compactions.fetch_add(1, Ordering::Relaxed);
        Ok((files_out, rows_out))
    }

    /// Stops background work, flushes everything, closes the WAL. Later calls fail with
    /// `ShutDown`.
    pub async fn close(&self) -> Result<()> {
        if self.shutting_down.swap(true, Ordering::AcqRel) {
            return Ok(());
        }
        // A permit, not a broadcast: the background task may be between waits.
        self.shutdown_signal.notify_one();
        let handle = self.background.lock().take();
        if let Some(handle) = handle {
            let _ = handle.await;
        }
        self.flush().await?;
        let wal = self.wal.clone();
        tokio::task::spawn_blocking(move || wal.close())
            .await
            .map_err(|e| StorageError::Task(e.to_string()))??;
        self.lock.lock().take();
        Ok(())
    }

    /// The object store holding data files and manifests.
    pub fn object_store(&self) -> Arc<dyn ObjectStore> {
        self.store.clone()
    }
}

async fn background_loop(engine: std::sync::Weak<Engine>, interval: std::time::Duration) {
    loop {
        // Hold the engine only while working, so dropping every other handle ends the task.
        let Some(strong) = engine.upgrade() else { return };
        if strong.shutting_down.load(Ordering::Acquire) {
            return;
        }
        let shutdown = strong.shutdown_signal.clone();
        let wanted = strong.flush_wanted.clone();
        let state = strong.read_state();
        let due = !state.frozen.is_empty()
            || state.active.memory_bytes() >= strong.config.flush_memtable_bytes
            || (!state.active.is_empty() && state.active.age() >= strong.config.flush_max_age);
        drop(state);
        if due {
            if let Err(error) = strong.flush().await {
                tracing::error!(%error, "background flush failed; retrying");
            }
            if let Err(error) = strong.compact(false).await {
                tracing::error!(%error, "background compaction failed");
            }
        }
        drop(strong);
        tokio::select! {
            _ = shutdown.notified() => return,
            _ = wanted.notified() => {}
            _ = tokio::time::sleep(interval) => {}
        }
    }
}

/// Takes the exclusive lock on `<data_dir>/LOCK`.
fn lock_data_dir(data_dir: &std::path::Path) -> Result<std::fs::File> {
    let path = data_dir.join("LOCK");
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(|source| StorageError::Io { path: path.clone(), source })?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(std::fs::TryLockError::WouldBlock) => Err(StorageError::Locked { path }),
        Err(std::fs::TryLockError::Error(source)) => Err(StorageError::Io { path, source }),
    }
}

fn open_store(config: &EngineConfig) -> Result<Arc<dyn ObjectStore>> {
    let local = |path: std::path::PathBuf| -> Result<Arc<dyn ObjectStore>> {
        std::fs::create_dir_all(&path)
            .map_err(|source| StorageError::Io { path: path.clone(), source })?;
        let store = object_store::local::LocalFileSystem::new_with_prefix(&path)
            .map_err(|e| StorageError::store("open", path.display(), e))?;
        Ok(Arc::new(store))
    };
    let Some(url_text) = &config.object_store_url else {
        return local(config.data_dir.join("store"));
    };
    let bad = |reason: String| StorageError::StoreUrl { url: url_text.clone(), reason };
    let url = url::Url::parse(url_text).map_err(|e| bad(e.to_string()))?;
    match url.scheme() {
        "file" => {
            let path = url.to_file_path().map_err(|_| bad("not an absolute file path".into()))?;
            local(path)
        }
        "memory" => Ok(Arc::new(object_store::memory::InMemory::new())),
        _ => {
            let (scheme, _) =
                object_store::ObjectStoreScheme::parse(&url).map_err(|e| bad(e.to_string()))?;
            if scheme == object_store::ObjectStoreScheme::AmazonS3 {
                if url.host_str().is_none_or(str::is_empty) {
                    return Err(bad("no bucket name".into()));
                }
                // `parse_url_opts` skips keys it does not know; a typo in an explicit option
                // must not silently fall back to the defaults. Values are never reported.
                for (key, _) in &config.object_store_options {
                    let lower = key.to_ascii_lowercase();
                    if lower.parse::<object_store::aws::AmazonS3ConfigKey>().is_err() {
                        return Err(bad(format!("unknown S3 option {key}")));
                    }
                }
            }
            // The builder applies options in order, so the explicit ones, coming after the
            // environment's, win (also over an alias of the same key). Non-UTF-8 variables
            // are skipped (`std::env::vars` would panic on them).
            let env = std::env::vars_os().filter_map(|(key, value)| {
                let (key, value) = (key.into_string().ok()?, value.into_string().ok()?);
                key.starts_with("AWS_").then(|| (key.to_ascii_lowercase(), value))
            });
            let options = env.chain(config.object_store_options.iter().cloned());
            let (store, prefix) =
                object_store::parse_url_opts(&url, options).map_err(|e| bad(e.to_string()))?;
            if prefix.as_ref().is_empty() {
                Ok(Arc::from(store))
            } else {
                Ok(Arc::new(object_store::prefix::PrefixStore::new(store, prefix)))
            }
        }
    }
}

async fn open_data_file(store: &Arc<dyn ObjectStore>, path: &str, size: u64) -> Result<DataFile> {
    let mut reader = ObjectFileReader::new(store.clone(), Path::from(path), size);
    let reader_meta = ArrowReaderMetadata::load_async(&mut reader, reader_options())
        .await
        .map_err(|e| StorageError::parquet(path, e))?;
    DataFile::from_footer(path, size, reader_meta)
}

/// LSN of the first intact WAL record after `after`, if any.
async fn first_record_after(wal: &Arc<Wal>, after: u64) -> Result<Option<u64>> {
    let wal = wal.clone();
    tokio::task::spawn_blocking(move || -> Result<Option<u64>> {
        match wal.replay(after)?.next() {
            Some(record) => Ok(Some(record?.lsn)),
            None => Ok(None),
        }
    })
    .await
    .map_err(|e| StorageError::Task(e.to_string()))?
}

/// Decides the fate of data files that the loaded manifest does not list.
///
/// * An input of a compaction the manifest records (its id is in some listed file's
///   `compacted_from`): left over after the compaction committed — removed.
/// * A compaction output whose inputs are all still served: the compaction never committed
///   (or its manifest version was lost while the inputs survive) — removed.
/// * A compaction output with inputs missing: its manifest version was lost after the inputs
///   were deleted — adopted, and the surviving inputs it replaced are dropped.
/// * A flush output whose WAL records are still in the WAL: the flush never committed; replay
///   brings the points back — removed.
/// * A flush output whose WAL records are gone: its manifest version was lost after the WAL
///   was trimmed — adopted (the whole batch), and `flushed_lsn` moves past it.
#[allow(clippy::too_many_arguments)]
async fn recover_orphans(
    store: &Arc<dyn ObjectStore>,
    manifest: &mut Manifest,
    files: &mut Vec<Arc<DataFile>>,
    listed_ids: &HashSet<u64>,
    orphans: BTreeMap<String, u64>,
    first_unflushed: Option<u64>,
    wal_last_lsn: u64,
    report: &mut RecoveryReport,
) -> Result<bool> {
    if orphans.is_empty() {
        return Ok(false);
    }
    let replaced_by_listed: HashSet<u64> =
        manifest.files.iter().flat_map(|f| f.compacted_from.iter().copied()).collect();
    let mut opened: Vec<DataFile> = Vec::new();
    for (path, size) in orphans {
        match open_data_file(store, &path, size).await {
            Ok(file) => opened.push(file),
            Err(error) => {
                // Half-written objects of an interrupted put never reach here on object stores
                // with atomic puts; anything else unreadable is reported and left alone.
                tracing::error!(%path, %error, "unreadable data file outside the manifest; leaving it in place");
                report.files_corrupt.push((path, error.to_string()));
            }
        }
    }
    let wal_covers = |range: LsnRange| {
        first_unflushed.is_some_and(|first| first <= range.min) && range.max <= wal_last_lsn
    };
    let served_ids: HashSet<u64> = files.iter().map(|f| f.meta.id).collect();
    let mut batch_sizes: HashMap<u64, u32> = HashMap::new();
    for file in &opened {
        *batch_sizes.entry(file.meta.batch.id).or_default() += 1;
    }
    let mut changed = false;
    let mut remove = Vec::new();
    let mut adopt = Vec::new();
    for file in opened {
        let meta = &file.meta;
        let decision_remove = if replaced_by_listed.contains(&meta.id)
            || listed_ids.contains(&meta.id)
        {
            true
        } else if !meta.compacted_from.is_empty() {
            meta.compacted_from.iter().all(|id| served_ids.contains(id))
        } else if meta.lsn.max <= manifest.flushed_lsn {
            // Already covered by the listed files; keep out of the way but do not destroy.
            tracing::warn!(path = %meta.path, "flush output older than the manifest's flushed lsn; ignoring it");
            continue;
        } else if wal_covers(meta.lsn) {
            true
        } else {
            if batch_sizes.get(&meta.batch.id).copied().unwrap_or(0) < meta.batch.files {
                tracing::error!(path = %meta.path, batch = meta.batch.id, "adopting part of an incomplete flush batch; points of its missing files are lost");
            }
            false
        };
        if decision_remove {
            remove.push(file);
        } else {
            adopt.push(file);
        }
    }
    for file in remove {
        let path = Path::from(file.meta.path.as_str());
        match store.delete(&path).await {
            Ok(()) => report.orphans_removed.push(file.meta.path.clone()),
            Err(error) => tracing::warn!(path = %path, %error, "could not remove orphan data file"),
        }
    }
    for file in adopt {
        changed = true;
        let replaced: HashSet<u64> = file.meta.compacted_from.iter().copied().collect();
        files.retain(|f| !replaced.contains(&f.meta.id));
        manifest.flushed_lsn = manifest.flushed_lsn.max(file.meta.lsn.max);
        manifest.next_file_id = manifest.next_file_id.max(file.meta.id + 1);
        manifest.next_batch_id = manifest.next_batch_id.max(file.meta.batch.id + 1);
        tracing::warn!(path = %file.meta.path, "adopting data file missing from the manifest");
        report.orphans_adopted.push(file.meta.path.clone());
        files.push(Arc::new(file));
    }
    Ok(changed)
}

struct ReplayCounts {
    records: u64,
    undecodable: u64,
    points: u64,
}

/// Applies WAL records after `flushed_lsn` to `table`; returns counts, the deletes seen (as
/// tombstones) and the catalog updated with the replayed writes.
fn replay(
    wal: &Wal,
    flushed_lsn: u64,
    table: &Memtable,
    catalog: Catalog,
) -> Result<(ReplayCounts, Vec<Tombstone>, Catalog)> {
    let mut counts = ReplayCounts { records: 0, undecodable: 0, points: 0 };
    let mut tombstones = Vec::new();
    for record in wal.replay(flushed_lsn)? {
        let record = record?;
        counts.records += 1;
        match log_entry::decode(record.lsn, &record.payload) {
            Ok(LogEntry::Write(groups)) => {
                table.apply_write(record.lsn, &groups);
                for (key, samples) in &groups {
                    catalog.observe(key, samples);
                    counts.points += samples.len() as u64;
                }
            }
            Ok(LogEntry::Delete(delete)) => {
                table.apply_delete(record.lsn, &delete)?;
                tombstones.push(Tombstone { lsn: record.lsn, delete });
            }
            Err(error) => {
                counts.undecodable += 1;
                tracing::error!(lsn = record.lsn, %error, "skipping undecodable wal record");
            }
        }
    }
    Ok((counts, tombstones, catalog))
}

/// Runs of files to compact. See [`Engine::compact`].
fn pick_compaction_runs(
    files: &[Arc<DataFile>],
    tombstones: &[Tombstone],
    min_files: usize,
    force: bool,
) -> Vec<Vec<Arc<DataFile>>> {
    let mut by_partition: BTreeMap<i64, Vec<Arc<DataFile>>> = BTreeMap::new();
    for file in files {
        by_partition.entry(file.meta.partition_start).or_default().push(file.clone());
    }
    let mut runs = Vec::new();
    for (_, mut group) in by_partition {
        group.sort_by_key(|f| (f.meta.lsn.min, f.meta.id));
        if force {
            let has_deletes = group.iter().any(|f| {
                tombstones.iter().any(|t| {
                    t.lsn > f.meta.lsn.max
                        && f.meta.time.overlaps(&t.delete.time)
                        && f.index.iter().any(|(key, _)| t.delete.matches_series(key))
                })
            });
            if group.len() > 1 || has_deletes {
                runs.push(group);
            }
            continue;
        }
        // Files written by one flush share an LSN range: treat them as one step of the run.
        let mut start = 0;
        while start < group.len() {
            let level = group[start].meta.level;
            let mut end = start;
            while end < group.len() && group[end].meta.level == level {
                end += 1;
            }
            let steps: HashSet<u64> = group[start..end].iter().map(|f| f.meta.lsn.min).collect();
            if steps.len() >= min_files.max(2) {
                runs.push(group[start..end].to_vec());
            }
            start = end;
        }
    }
    runs
}
