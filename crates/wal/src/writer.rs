//! The `wal-writer` thread: owns the active segment file, assigns LSNs, group-commits.

use std::fs::File;
use std::io::{self, Write};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::sync::Arc;
use std::time::Instant;

use parking_lot::Mutex;

use crate::error::WalError;
use crate::format::{encode_frame, FRAME_HEADER_LEN};
use crate::segment::{create_segment, SegmentMeta};
use crate::{Lsn, SyncPolicy, WalOptions, WalStats};

/// A batch stops growing at this many frame bytes and is written, so one huge backlog does not
/// delay every waiter in it behind a single giant write.
const MAX_BATCH_BYTES: usize = 8 << 20;

/// Where an append's result goes.
pub(crate) enum Completion {
    /// [`crate::Wal::append`]: awaited by a task.
    Async(tokio::sync::oneshot::Sender<Result<Lsn, WalError>>),
    /// [`crate::Wal::append_blocking`]: waited on by a plain thread.
    Blocking(std::sync::mpsc::SyncSender<Result<Lsn, WalError>>),
}

impl Completion {
    fn complete(self, result: Result<Lsn, WalError>) {
        // The waiter may be gone (a dropped future): the record stays written regardless.
        match self {
            Completion::Async(sender) => {
                let _ = sender.send(result);
            }
            Completion::Blocking(sender) => {
                let _ = sender.send(result);
            }
        }
    }
}

/// Work for the writer thread, processed in the order sent.
pub(crate) enum Command {
    Append {
        payload: Vec<u8>,
        done: Completion,
    },
    /// Close the active segment (if it holds records) and start a new one.
    Rotate {
        done: std::sync::mpsc::SyncSender<Result<Lsn, WalError>>,
    },
    /// Write and fsync everything queued before, then stop.
    Close {
        done: std::sync::mpsc::SyncSender<Result<(), WalError>>,
    },
}

/// The first write/fsync failure; every later append is refused with it.
#[derive(Debug, Clone)]
pub(crate) struct Failure {
    pub(crate) op: &'static str,
    pub(crate) path: PathBuf,
    pub(crate) source: Arc<io::Error>,
}

impl Failure {
    pub(crate) fn poisoned(&self) -> WalError {
        WalError::Poisoned { op: self.op, path: self.path.clone(), source: self.source.clone() }
    }
}

/// Whether the WAL takes appends.
#[derive(Debug, Clone)]
pub(crate) enum Status {
    Running,
    Closed,
    Failed(Failure),
}

/// Monotonic counters behind [`WalStats`].
#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub(crate) records_appended: AtomicU64,
    pub(crate) bytes_appended: AtomicU64,
    pub(crate) fsyncs: AtomicU64,
    pub(crate) group_commit_batches: AtomicU64,
    pub(crate) corrupt_records_skipped: AtomicU64,
    pub(crate) torn_tail_bytes_truncated: AtomicU64,
    pub(crate) current_segment_bytes: AtomicU64,
}

/// The segment files the WAL owns: closed ones (oldest first) and the active one.
#[derive(Debug)]
pub(crate) struct SegmentSet {
    pub(crate) closed: Vec<SegmentMeta>,
    pub(crate) active: SegmentMeta,
}

/// State shared by the [`crate::Wal`] handle and the writer thread.
pub(crate) struct Shared {
    pub(crate) dir: PathBuf,
    pub(crate) segments: Mutex<SegmentSet>,
    /// Highest LSN whose record has been handed to the OS (and fsynced, under `EveryBatch`).
    pub(crate) last_lsn: AtomicU64,
    pub(crate) status: Mutex<Status>,
    pub(crate) counters: Counters,
}

impl Shared {
    pub(crate) fn stats(&self) -> WalStats {
        let c = &self.counters;
        let current_segment_bytes = c.current_segment_bytes.load(Ordering::Relaxed);
        let segments = self.segments.lock();
        let closed_bytes: u64 = segments.closed.iter().map(|s| s.bytes).sum();
        WalStats {
            records_appended: c.records_appended.load(Ordering::Relaxed),
            bytes_appended: c.bytes_appended.load(Ordering::Relaxed),
            fsyncs: c.fsyncs.load(Ordering::Relaxed),
            group_commit_batches: c.group_commit_batches.load(Ordering::Relaxed),
            corrupt_records_skipped: c.corrupt_records_skipped.load(Ordering::Relaxed),
            torn_tail_bytes_truncated: c.torn_tail_bytes_truncated.load(Ordering::Relaxed),
            segments: segments.closed.len() as u64 + 1,
            current_segment_bytes,
            total_bytes: closed_bytes + current_segment_bytes,
            last_lsn: self.last_lsn.load(Ordering::Acquire),
        }
    }
}

/// The segment the writer appends to.
pub(crate) struct ActiveSegment {
    pub(crate) file: File,
    pub(crate) path: PathBuf,
    pub(crate) first_lsn: Lsn,
    pub(crate) bytes: u64,
    pub(crate) last_lsn: Option<Lsn>,
}

/// Records encoded but not yet written, with their waiters.
#[derive(Default)]
struct Batch {
    frames: Vec<u8>,
    waiters: Vec<(Lsn, Completion)>,
}

pub(crate) struct Writer {
    shared: Arc<Shared>,
    commands: Receiver<Command>,
    options: WalOptions,
    active: ActiveSegment,
    next_lsn: Lsn,
    batch: Batch,
    /// Bytes written to the active segment since its last fsync.
    dirty: bool,
    last_sync: Instant,
    failure: Option<Failure>,
}

impl Writer {
    pub(crate) fn new(
        shared: Arc<Shared>,
        commands: Receiver<Command>,
        options: WalOptions,
        active: ActiveSegment,
        next_lsn: Lsn,
    ) -> Self {
        Writer {
            shared,
            commands,
            options,
            active,
            next_lsn,
            batch: Batch::default(),
            dirty: false,
            last_sync: Instant::now(),
            failure: None,
        }
    }

    /// The thread body: take whatever is queued, write it as one batch, repeat.
    pub(crate) fn run(mut self) {
        loop {
            let Some(first) = self.next_command() else {
                // Every handle is gone without a close: finish like a close.
                self.commit();
                let _ = self.finish();
                return;
            };
            let mut next = Some(first);
            while let Some(command) = next.take().or_else(|| self.commands.try_recv().ok()) {
                match command {
                    Command::Append { payload, done } => self.stage(payload, done),
                    Command::Rotate { done } => {
                        self.commit();
                        let _ = done.send(self.rotate_on_request());
                    }
                    Command::Close { done } => {
                        self.commit();
                        let _ = done.send(self.finish());
                        return;
                    }
                }
            }
            self.commit();
        }
    }

    /// Blocks for the next command; under `Interval`, fsyncs when the interval elapses.
    fn next_command(&mut self) -> Option<Command> {
        loop {
            let interval = match self.options.sync {
                SyncPolicy::Interval(interval) if self.dirty && self.failure.is_none() => interval,
                _ => return self.commands.recv().ok(),
            };
            let deadline = self.last_sync + interval;
            let now = Instant::now();
            if now >= deadline {
                self.sync_active("interval fsync");
                continue;
            }
            match self.commands.recv_timeout(deadline - now) {
                Ok(command) => return Some(command),
                Err(RecvTimeoutError::Timeout) => self.sync_active("interval fsync"),
                Err(RecvTimeoutError::Disconnected) => return None,
            }
        }
    }

    /// Assigns the next LSN to `payload` and adds its frame to the batch.
    fn stage(&mut self, payload: Vec<u8>, done: Completion) {
        if let Some(failure) = &self.failure {
            done.complete(Err(failure.poisoned()));
            return;
        }
        let frame_len = (FRAME_HEADER_LEN + payload.len()) as u64;
        let segment_has_records = self.active.last_lsn.is_some() || !self.batch.waiters.is_empty();
        let projected = self.active.bytes + self.batch.frames.len() as u64 + frame_len;
        if segment_has_records && projected > self.options.segment_max_bytes {
            self.commit();
            if let Err(error) = self.rotate() {
                done.complete(Err(error));
                return;
            }
        }
        // `Lsn::MAX` is reserved (readers treat it as out of range), so the last usable LSN
        // is `Lsn::MAX - 1`.
        if self.next_lsn == Lsn::MAX {
            done.complete(Err(WalError::LsnExhausted { last_lsn: self.next_lsn - 1 }));
            return;
        }
        let lsn = self.next_lsn;
        self.next_lsn += 1;
        encode_frame(&mut self.batch.frames, lsn, &payload);
        self.batch.waiters.push((lsn, done));
        if self.batch.frames.len() >= MAX_BATCH_BYTES {
            self.commit();
        }
    }

    /// Writes the batch with one `write`, fsyncs it once (under `EveryBatch`), then answers
    /// every waiter.
    fn commit(&mut self) {
        let batch = std::mem::take(&mut self.batch);
        let (Some((first_lsn, _)), Some((last_lsn, _))) =
            (batch.waiters.first(), batch.waiters.last())
        else {
            return;
        };
        let (first_lsn, last_lsn) = (*first_lsn, *last_lsn);

        let written = self.active.file.write_all(&batch.frames).map_err(|e| ("write", e));
        let durable = written.and_then(|()| match self.options.sync {
            SyncPolicy::EveryBatch => self.active.file.sync_data().map_err(|e| ("fsync", e)),
            SyncPolicy::Interval(_) | SyncPolicy::Off => Ok(()),
        });

        if let Err((op, error)) = durable {
            // The failed batch may be partly in the file; its waiters learn that the outcome
            // is unknown, and the WAL stops (see `fail`).
            let failure = self.fail(op, error);
            for (_, done) in batch.waiters {
                done.complete(Err(WalError::WriteFailed {
                    op,
                    path: failure.path.clone(),
                    first_lsn,
                    last_lsn,
                    source: failure.source.clone(),
                }));
            }
            return;
        }

        let counters = &self.shared.counters;
        match self.options.sync {
            SyncPolicy::EveryBatch => {
                counters.fsyncs.fetch_add(1, Ordering::Relaxed);
                self.last_sync = Instant::now();
            }
            SyncPolicy::Interval(_) | SyncPolicy::Off => self.dirty = true,
        }
        let bytes = batch.frames.len() as u64;
        self.active.bytes += bytes;
        self.active.last_lsn = Some(last_lsn);
        counters.records_appended.fetch_add(batch.waiters.len() as u64, Ordering::Relaxed);
        counters.bytes_appended.fetch_add(bytes, Ordering::Relaxed);
        counters.group_commit_batches.fetch_add(1, Ordering::Relaxed);
        counters.current_segment_bytes.store(self.active.bytes, Ordering::Relaxed);
        self.shared.last_lsn.store(last_lsn, Ordering::Release);
        for (lsn, done) in batch.waiters {
            done.complete(Ok(lsn));
        }
    }

    /// fsyncs the active segment if it has unsynced bytes (never under `Off`).
    fn sync_active(&mut self, op: &'static str) {
        if !self.dirty || self.failure.is_some() || self.options.sync == SyncPolicy::Off {
            return;
        }
        match self.active.file.sync_data() {
            Ok(()) => {
                self.shared.counters.fsyncs.fetch_add(1, Ordering::Relaxed);
                self.dirty = false;
                self.last_sync = Instant::now();
            }
            Err(error) => {
                self.fail(op, error);
            }
        }
    }

    /// Puts the WAL into the failed state.
    ///
    /// There is no retry and no "carry on with the next batch": after a failed write or
    /// fsync the kernel may already have dropped the dirty pages and cleared the error
    /// (Linux does; see PostgreSQL's 2018 "fsyncgate"), so a second fsync can report success
    /// for data that never reached the disk. The page cache state is unknown, so the only
    /// safe state is stopped; reopening re-reads what is really in the files.
    fn fail(&mut self, op: &'static str, error: io::Error) -> Failure {
        let failure = Failure { op, path: self.active.path.clone(), source: Arc::new(error) };
        tracing::error!(
            op,
            segment = %failure.path.display(),
            error = %failure.source,
            "wal write failed, refusing further appends"
        );
        *self.shared.status.lock() = Status::Failed(failure.clone());
        self.failure = Some(failure.clone());
        failure
    }

    /// [`Command::Rotate`]: a no-op when the active segment holds no record.
    fn rotate_on_request(&mut self) -> Result<Lsn, WalError> {
        if let Some(failure) = &self.failure {
            return Err(failure.poisoned());
        }
        let Some(last_in_closed) = self.active.last_lsn else {
            return Ok(self.shared.last_lsn.load(Ordering::Acquire));
        };
        self.rotate()?;
        Ok(last_in_closed)
    }

    /// Makes the active segment durable, then starts a new one at `next_lsn`.
    fn rotate(&mut self) -> Result<(), WalError> {
        self.sync_active("fsync before rotation");
        if let Some(failure) = &self.failure {
            return Err(failure.poisoned());
        }
        let sync = self.options.sync != SyncPolicy::Off;
        let (file, path) = match create_segment(&self.shared.dir, self.next_lsn, sync) {
            Ok(created) => created,
            Err(error) => {
                let (op, source) = match error {
                    WalError::Io { op, source, .. } => (op, source),
                    other => ("create segment", io::Error::other(other.to_string())),
                };
                return Err(self.fail(op, source).poisoned());
            }
        };
        let new_active = ActiveSegment {
            file,
            path,
            first_lsn: self.next_lsn,
            bytes: crate::format::SEGMENT_HEADER_LEN as u64,
            last_lsn: None,
        };
        let closed = std::mem::replace(&mut self.active, new_active);
        let closed_meta = SegmentMeta {
            path: closed.path,
            first_lsn: closed.first_lsn,
            last_lsn: closed.last_lsn,
            bytes: closed.bytes,
        };
        tracing::debug!(
            closed = %closed_meta.path.display(),
            last_lsn = ?closed_meta.last_lsn,
            next_lsn = self.next_lsn,
            "rotated wal segment"
        );
        {
            let mut segments = self.shared.segments.lock();
            segments.closed.push(closed_meta);
            segments.active = SegmentMeta {
                path: self.active.path.clone(),
                first_lsn: self.active.first_lsn,
                last_lsn: None,
                bytes: self.active.bytes,
            };
        }
        self.shared.counters.current_segment_bytes.store(self.active.bytes, Ordering::Relaxed);
        self.dirty = false;
        Ok(())
    }

    /// [`Command::Close`]: fsync what is unsynced and mark the WAL closed.
    fn finish(&mut self) -> Result<(), WalError> {
        self.sync_active("fsync on close");
        if let Some(failure) = &self.failure {
            return Err(failure.poisoned());
        }
        *self.shared.status.lock() = Status::Closed;
        tracing::debug!(last_lsn = self.shared.last_lsn.load(Ordering::Acquire), "wal closed");
        Ok(())
    }
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use std::fs::OpenOptions;
    use std::sync::mpsc;
    use std::time::Duration;

    use super::*;
    use crate::segment::SegmentMeta;

    /// A writer whose "segment" is `/dev/full`: every write fails with ENOSPC.
    fn failing_writer(
        sync: SyncPolicy,
    ) -> (mpsc::Sender<Command>, Arc<Shared>, std::thread::JoinHandle<()>) {
        let path = PathBuf::from("/dev/full");
        let file = OpenOptions::new().write(true).open(&path).expect("open /dev/full");
        let meta = SegmentMeta { path: path.clone(), first_lsn: 1, last_lsn: None, bytes: 24 };
        let shared = Arc::new(Shared {
            dir: std::env::temp_dir(),
            segments: Mutex::new(SegmentSet { closed: Vec::new(), active: meta }),
            last_lsn: AtomicU64::new(0),
            status: Mutex::new(Status::Running),
            counters: Counters::default(),
        });
        let active = ActiveSegment { file, path, first_lsn: 1, bytes: 24, last_lsn: None };
        let options = WalOptions { sync, ..WalOptions::default() };
        let (commands, receiver) = mpsc::channel();
        let writer = Writer::new(shared.clone(), receiver, options, active, 1);
        let handle = std::thread::spawn(move || writer.run());
        (commands, shared, handle)
    }

    fn append(commands: &mpsc::Sender<Command>, payload: &[u8]) -> Result<Lsn, WalError> {
        let (done, result) = mpsc::sync_channel(1);
        let command =
            Command::Append { payload: payload.to_vec(), done: Completion::Blocking(done) };
        commands.send(command).expect("writer alive");
        result.recv().expect("answered")
    }

    #[test]
    fn write_failure_fails_the_batch_and_poisons_the_wal() {
        let (commands, shared, handle) = failing_writer(SyncPolicy::EveryBatch);
        let error = append(&commands, b"lost").expect_err("disk full");
        assert!(
            matches!(&error, WalError::WriteFailed { op: "write", first_lsn: 1, last_lsn: 1, .. }),
            "{error}"
        );
        assert_eq!(error.kind(), minitrue_common::ErrorKind::Io);
        assert!(matches!(*shared.status.lock(), Status::Failed(_)));
        assert_eq!(shared.last_lsn.load(Ordering::Acquire), 0);

        // No silent continue: later appends, rotation and close all report the failure.
        let error = append(&commands, b"later").expect_err("poisoned");
        assert!(matches!(error, WalError::Poisoned { op: "write", .. }), "{error}");
        let (done, result) = mpsc::sync_channel(1);
        commands.send(Command::Rotate { done }).expect("writer alive");
        assert!(matches!(result.recv().expect("answered"), Err(WalError::Poisoned { .. })));
        let (done, result) = mpsc::sync_channel(1);
        commands.send(Command::Close { done }).expect("writer alive");
        assert!(matches!(result.recv().expect("answered"), Err(WalError::Poisoned { .. })));
        handle.join().expect("writer thread");
        assert_eq!(shared.stats().records_appended, 0);
    }

    #[test]
    fn write_failure_under_interval_policy_also_poisons() {
        let (commands, shared, handle) =
            failing_writer(SyncPolicy::Interval(Duration::from_millis(1)));
        assert!(append(&commands, b"lost").is_err());
        assert!(matches!(append(&commands, b"later"), Err(WalError::Poisoned { .. })));
        drop(commands);
        handle.join().expect("writer thread");
        assert!(matches!(*shared.status.lock(), Status::Failed(_)));
    }
}
