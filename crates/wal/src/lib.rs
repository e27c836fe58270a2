//! The write-ahead log: a durable, ordered log of opaque records in segment files.
//!
//! Place in the data flow: ingest → `storage::write` → **WAL append** (the point batch is
//! durable once [`Wal::append`] resolves) → memtable; later, flush → Parquet + manifest →
//! [`Wal::remove_through`] drops the segments the flush made redundant. On start, storage
//! opens the WAL ([`Wal::open_after`]) and [`Wal::replay`]s everything after its flushed LSN
//! back into the memtables.
//!
//! The WAL does not interpret payloads (storage encodes batches and deletes into them). It
//! gives each record a log sequence number ([`Lsn`]) that increases by one per record and
//! continues across restarts. One thread, `wal-writer`, owns the active segment file and
//! group-commits: every append queued while the previous batch was being written goes out
//! with one `write` and one `fdatasync`. The byte format is documented in [`mod@format`].

mod error;
pub mod format;
mod recovery;
mod replay;
mod segment;
mod writer;

use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::{mpsc, Arc};
use std::thread::JoinHandle;
use std::time::Duration;

use parking_lot::Mutex;

pub use error::WalError;
#[doc(hidden)]
pub use format::{scan_segment_bytes, ScannedCorruption, SegmentScan};
pub use format::{SegmentHeaderError, RECORD_BYTES_HARD_LIMIT};
pub use recovery::{CorruptRegion, RecoveryReport};
pub use replay::{ReplayIter, WalRecord};

use replay::PendingSegment;
use segment::{create_segment, open_for_append, sync_dir, SegmentMeta};
use writer::{ActiveSegment, Command, Completion, Counters, SegmentSet, Shared, Status, Writer};

/// Log sequence number: the position of a record in the WAL. The first record ever gets 1;
/// each later record gets the previous LSN + 1, also across restarts. `0` means "none".
pub type Lsn = u64;

/// When an append counts as durable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SyncPolicy {
    /// An append resolves only after an `fdatasync` covered its record. Concurrent appends
    /// share one `fdatasync` (group commit). Survives power loss.
    EveryBatch,
    /// An append resolves once its record is written to the OS (survives a process crash,
    /// not a power loss); the writer fsyncs at most this long after a write.
    Interval(Duration),
    /// Never fsync (tests and benchmarks). Survives a process crash only.
    Off,
}

/// How a [`Wal`] behaves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WalOptions {
    /// When appends count as durable.
    pub sync: SyncPolicy,
    /// Start a new segment when the active one would grow beyond this many bytes. A single
    /// record larger than this gets a segment of its own.
    pub segment_max_bytes: u64,
    /// Appends with a larger payload fail with [`WalError::RecordTooLarge`]. At most
    /// [`RECORD_BYTES_HARD_LIMIT`]; reading is not limited by this option.
    pub max_record_bytes: u32,
}

impl Default for WalOptions {
    /// `EveryBatch`, 64 MiB segments, 64 MiB records.
    fn default() -> Self {
        WalOptions {
            sync: SyncPolicy::EveryBatch,
            segment_max_bytes: 64 << 20,
            max_record_bytes: 64 << 20,
        }
    }
}

/// Counters of one open [`Wal`] (since it was opened).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WalStats {
    /// Records written.
    pub records_appended: u64,
    /// Frame bytes written (payloads plus 20 bytes of framing each).
    pub bytes_appended: u64,
    /// `fdatasync` calls on segment files.
    pub fsyncs: u64,
    /// Batches written (one `write` each); `records_appended / group_commit_batches` is the
    /// mean group size.
    pub group_commit_batches: u64,
    /// Records lost to corrupt regions found when opening (see
    /// [`RecoveryReport::corrupt_records`]).
    pub corrupt_records_skipped: u64,
    /// Bytes of torn tail truncated when opening.
    pub torn_tail_bytes_truncated: u64,
    /// Segment files, including the active one.
    pub segments: u64,
    /// Size of the active segment in bytes.
    pub current_segment_bytes: u64,
    /// Size of all segments in bytes.
    pub total_bytes: u64,
    /// [`Wal::last_lsn`].
    pub last_lsn: Lsn,
}

/// An open write-ahead log. `Send + Sync`: share it behind an `Arc`.
///
/// Dropping it without [`Wal::close`] closes it (blocking for the final fsync).
pub struct Wal {
    shared: Arc<Shared>,
    commands: mpsc::Sender<Command>,
    writer: Mutex<Option<JoinHandle<()>>>,
    options: WalOptions,
}

impl Wal {
    /// Opens the WAL in `dir`, creating the directory if needed; see [`Wal::open_after`].
    pub fn open(
        dir: impl AsRef<Path>,
        options: WalOptions,
    ) -> Result<(Wal, RecoveryReport), WalError> {
        Wal::open_after(dir, options, 0)
    }

    /// Opens the WAL in `dir`, creating the directory if needed, so that the next append
    /// gets an LSN of at least `min_next_lsn`.
    ///
    /// Storage passes its flushed LSN + 1: if every segment was removed after a flush, the
    /// directory alone no longer knows where the LSNs were, and they must never go back.
    ///
    /// Recovery reads every segment, one at a time: a torn tail of the last segment (an
    /// incomplete frame, or bytes with no valid frame after them) is truncated away and
    /// fsynced; corrupt regions elsewhere are logged, reported and skipped. A file whose
    /// header is not a WAL header is an error ([`WalError::InvalidSegment`]), never a panic.
    /// New appends go to a fresh segment (or to the last one if it holds no record yet).
    /// Blocks on file I/O: from async code, call it in `spawn_blocking`.
    pub fn open_after(
        dir: impl AsRef<Path>,
        options: WalOptions,
        min_next_lsn: Lsn,
    ) -> Result<(Wal, RecoveryReport), WalError> {
        if options.max_record_bytes > RECORD_BYTES_HARD_LIMIT {
            return Err(WalError::InvalidOptions {
                reason: format!(
                    "max_record_bytes {} exceeds the format limit {RECORD_BYTES_HARD_LIMIT}",
                    options.max_record_bytes
                ),
            });
        }
        if min_next_lsn == Lsn::MAX {
            return Err(WalError::InvalidOptions { reason: "min_next_lsn is u64::MAX".into() });
        }
        let dir = dir.as_ref().to_path_buf();
        std::fs::create_dir_all(&dir).map_err(|e| WalError::io("create directory", &dir, e))?;
        let recovered = recovery::recover(&dir, min_next_lsn)?;
        let report = recovered.report;
        let next_lsn = recovered.next_lsn;
        let mut closed = recovered.segments;

        // The last segment is reused when it holds no record and already starts at the next
        // LSN (a fresh segment of an earlier open or rotation): a new one would get its name.
        let reusable = match closed.last() {
            Some(last) if last.last_lsn.is_none() && last.first_lsn == next_lsn => closed.pop(),
            _ => None,
        };
        let (active, active_meta) = match reusable {
            Some(meta) => {
                let file = open_for_append(&meta.path)?;
                let active = ActiveSegment {
                    file,
                    path: meta.path.clone(),
                    first_lsn: meta.first_lsn,
                    bytes: meta.bytes,
                    last_lsn: None,
                };
                (active, meta)
            }
            None => {
                let sync = options.sync != SyncPolicy::Off;
                let (file, path) = create_segment(&dir, next_lsn, sync)?;
                let bytes = format::SEGMENT_HEADER_LEN as u64;
                let meta =
                    SegmentMeta { path: path.clone(), first_lsn: next_lsn, last_lsn: None, bytes };
                (ActiveSegment { file, path, first_lsn: next_lsn, bytes, last_lsn: None }, meta)
            }
        };

        let counters = Counters::default();
        counters.corrupt_records_skipped.store(report.corrupt_records(), Ordering::Relaxed);
        counters.torn_tail_bytes_truncated.store(report.torn_tail_bytes, Ordering::Relaxed);
        counters.current_segment_bytes.store(active.bytes, Ordering::Relaxed);
        let shared = Arc::new(Shared {
            dir,
            segments: Mutex::new(SegmentSet { closed, active: active_meta }),
            last_lsn: std::sync::atomic::AtomicU64::new(report.last_lsn),
            status: Mutex::new(Status::Running),
            counters,
        });

        let (commands, receiver) = mpsc::channel();
        let writer = Writer::new(shared.clone(), receiver, options.clone(), active, next_lsn);
        let handle = std::thread::Builder::new()
            .name("wal-writer".into())
            .spawn(move || writer.run())
            .map_err(|e| WalError::io("spawn writer thread", &shared.dir, e))?;

        tracing::info!(
            dir = %shared.dir.display(),
            segments = report.segments,
            records = report.records,
            last_lsn = report.last_lsn,
            torn_tail_bytes = report.torn_tail_bytes,
            corrupt_regions = report.corrupt.len(),
            "wal opened"
        );
        let wal = Wal { shared, commands, writer: Mutex::new(Some(handle)), options };
        Ok((wal, report))
    }

    /// The directory this WAL lives in.
    pub fn dir(&self) -> &Path {
        &self.shared.dir
    }

    /// The options it was opened with.
    pub fn options(&self) -> &WalOptions {
        &self.options
    }

    /// Iterates every intact record with `lsn > after`, in LSN order.
    ///
    /// The iterator sees the records appended before this call (up to [`Wal::last_lsn`] at
    /// the time of the call) and none after. It reads one segment file at a time, so memory
    /// stays bounded by the largest segment. Corrupt regions are skipped. It reads files on
    /// each `next`: from async code, drive it in `spawn_blocking`. A segment deleted by a
    /// concurrent [`Wal::remove_through`] while still needed yields an `Err`.
    pub fn replay(&self, after: Lsn) -> Result<ReplayIter, WalError> {
        let upto = self.last_lsn();
        let segments = self.shared.segments.lock();
        let all: Vec<&SegmentMeta> = segments.closed.iter().chain([&segments.active]).collect();
        let mut pending = Vec::with_capacity(all.len());
        for (index, segment) in all.iter().enumerate() {
            let lsn_limit = all.get(index + 1).map_or(Lsn::MAX, |next| next.first_lsn);
            // Every record of this segment is below `lsn_limit`.
            let holds_newer = lsn_limit.saturating_sub(1) > after;
            let holds_visible = segment.first_lsn <= upto;
            if holds_newer && holds_visible {
                pending.push(PendingSegment {
                    path: segment.path.clone(),
                    first_lsn: segment.first_lsn,
                    lsn_limit,
                });
            }
        }
        Ok(ReplayIter::new(pending, after, upto))
    }

    /// Appends one record and resolves with its LSN once it is durable per
    /// [`WalOptions::sync`].
    ///
    /// Ordering: LSNs follow the order in which appends reach the writer; appends awaited
    /// one after another get increasing LSNs. Cancellation: the record is handed to the
    /// writer on the first poll; dropping the future after that does not un-write it (the
    /// LSN is just not reported). An `Err` from a failed write means the record may or may
    /// not survive a crash. Backpressure: each append waits for its own write, so the queue
    /// holds at most one record per concurrent caller.
    pub async fn append(&self, payload: Vec<u8>) -> Result<Lsn, WalError> {
        self.check_appendable(&payload)?;
        let (done, result) = tokio::sync::oneshot::channel();
        self.send(Command::Append { payload, done: Completion::Async(done) })?;
        match result.await {
            Ok(result) => result,
            Err(_) => Err(self.stopped_error()),
        }
    }

    /// [`Wal::append`] for threads outside the async runtime: blocks the calling thread until
    /// the record is durable. Do not call it on a tokio worker thread (it would stall every
    /// task on that worker for an fsync); use [`Wal::append`] there, or `spawn_blocking`.
    pub fn append_blocking(&self, payload: Vec<u8>) -> Result<Lsn, WalError> {
        self.check_appendable(&payload)?;
        let (done, result) = mpsc::sync_channel(1);
        self.send(Command::Append { payload, done: Completion::Blocking(done) })?;
        match result.recv() {
            Ok(result) => result,
            Err(_) => Err(self.stopped_error()),
        }
    }

    /// The highest LSN written so far (under `EveryBatch`: and fsynced); 0 if none ever.
    /// After [`Wal::open`] it is [`RecoveryReport::last_lsn`].
    pub fn last_lsn(&self) -> Lsn {
        self.shared.last_lsn.load(Ordering::Acquire)
    }

    /// Closes the active segment (fsynced unless the policy is `Off`) and starts a new one.
    /// Returns the last LSN in the closed segment: every record up to it is in closed
    /// segments. If the active segment holds no record, nothing changes and it returns
    /// [`Wal::last_lsn`]. Blocks until the writer has done it.
    pub fn rotate(&self) -> Result<Lsn, WalError> {
        let (done, result) = mpsc::sync_channel(1);
        self.send(Command::Rotate { done })?;
        result.recv().unwrap_or_else(|_| Err(self.stopped_error()))
    }

    /// Deletes every closed segment whose intact records all have `lsn <= through` (a
    /// segment without records counts as covered), oldest first, then fsyncs the directory.
    /// Never deletes the active segment. Returns how many segments were deleted.
    ///
    /// The caller guarantees those records are durable elsewhere (flushed to Parquet and in
    /// the manifest). Replays started earlier that still need a deleted segment yield an
    /// error. Blocks on file I/O.
    pub fn remove_through(&self, through: Lsn) -> Result<usize, WalError> {
        let mut segments = self.shared.segments.lock();
        let covered = segments
            .closed
            .iter()
            .take_while(|segment| segment.last_lsn.is_none_or(|last| last <= through))
            .count();
        let mut removed = 0;
        let mut result = Ok(());
        for segment in &segments.closed[..covered] {
            if let Err(error) = std::fs::remove_file(&segment.path) {
                if error.kind() != std::io::ErrorKind::NotFound {
                    result = Err(WalError::io("remove segment", &segment.path, error));
                    break;
                }
            }
            tracing::debug!(segment = %segment.path.display(), through, "removed wal segment");
            removed += 1;
        }
        segments.closed.drain(..removed);
        drop(segments);
        if removed > 0 {
            sync_dir(&self.shared.dir)?;
            tracing::info!(removed, through, "removed flushed wal segments");
        }
        result.map(|()| removed)
    }

    /// Counters since open.
    pub fn stats(&self) -> WalStats {
        self.shared.stats()
    }

    /// Writes and fsyncs everything appended before this call (unless the policy is `Off`)
    /// and stops the writer thread; later appends fail with [`WalError::Closed`]. Blocks
    /// until done. Closing again is a no-op; after a write failure it returns
    /// [`WalError::Poisoned`].
    pub fn close(&self) -> Result<(), WalError> {
        let (done, result) = mpsc::sync_channel(1);
        let result = match self.commands.send(Command::Close { done }) {
            Ok(()) => result.recv().unwrap_or_else(|_| Err(self.stopped_error())),
            Err(_) => Err(self.stopped_error()),
        };
        if let Some(handle) = self.writer.lock().take() {
            if handle.join().is_err() {
                tracing::error!("wal writer thread panicked");
            }
        }
        match result {
            Err(WalError::Closed) => Ok(()),
            other => other,
        }
    }

    fn check_appendable(&self, payload: &[u8]) -> Result<(), WalError> {
        if payload.len() > self.options.max_record_bytes as usize {
            return Err(WalError::RecordTooLarge {
                len: payload.len(),
                max: self.options.max_record_bytes,
            });
        }
        match &*self.shared.status.lock() {
            Status::Running => Ok(()),
            Status::Closed => Err(WalError::Closed),
            Status::Failed(failure) => Err(failure.poisoned()),
        }
    }

    fn send(&self, command: Command) -> Result<(), WalError> {
        self.commands.send(command).map_err(|_| self.stopped_error())
    }

    /// Why the writer no longer answers.
    fn stopped_error(&self) -> WalError {
        match &*self.shared.status.lock() {
            Status::Closed => WalError::Closed,
            Status::Failed(failure) => failure.poisoned(),
            Status::Running => WalError::WriterStopped,
        }
    }
}

impl Drop for Wal {
    fn drop(&mut self) {
        if self.writer.get_mut().is_none() {
            return;
        }
        if let Err(error) = self.close() {
            tracing::warn!(error = %error, "closing wal on drop failed");
        }
    }
}

impl std::fmt::Debug for Wal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Wal")
            .field("dir", &self.shared.dir)
            .field("last_lsn", &self.last_lsn())
            .field("options", &self.options)
            .finish()
    }
}

/// Where a segment of this WAL lives; used by tests and tools.
#[doc(hidden)]
pub fn segment_path(dir: &Path, first_lsn: Lsn) -> PathBuf {
    dir.join(format::segment_file_name(first_lsn))
}

#[cfg(test)]
mod tests {
    #[test]
    fn wal_is_send_and_sync() {
        fn assert_send_sync<T: Send + Sync>() {}
        assert_send_sync::<super::Wal>();
        assert_send_sync::<super::WalError>();
        fn assert_send<T: Send>() {}
        assert_send::<super::ReplayIter>();
    }
}
