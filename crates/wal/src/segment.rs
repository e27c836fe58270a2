//! Segment files on disk: listing, creating, directory fsync.

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use crate::error::WalError;
use crate::format::{encode_header, parse_segment_file_name, segment_file_name};
use crate::Lsn;

/// What the WAL knows about one segment file.
#[derive(Debug, Clone)]
pub(crate) struct SegmentMeta {
    pub(crate) path: PathBuf,
    pub(crate) first_lsn: Lsn,
    /// Highest intact LSN in the segment; `None` when it holds no intact record.
    pub(crate) last_lsn: Option<Lsn>,
    /// File size in bytes (for the active segment: at the time it was opened).
    pub(crate) bytes: u64,
}

/// The segment files of `dir` as `(first LSN, path)`, in LSN order.
///
/// Leftover `*.wal.tmp` files (a crash while creating a segment, before its rename) hold no
/// record and are deleted. Files that are not segments are ignored.
pub(crate) fn list_segments(dir: &Path) -> Result<Vec<(Lsn, PathBuf)>, WalError> {
    let entries = fs::read_dir(dir).map_err(|e| WalError::io("list directory", dir, e))?;
    let mut segments = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| WalError::io("list directory", dir, e))?;
        let path = entry.path();
        let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
            continue;
        };
        if name.ends_with(".wal.tmp") {
            tracing::warn!(path = %path.display(), "removing unfinished wal segment");
            fs::remove_file(&path)
                .map_err(|e| WalError::io("remove unfinished segment", &path, e))?;
            continue;
        }
        match parse_segment_file_name(name) {
            Some(first_lsn) => segments.push((first_lsn, path)),
            None => tracing::debug!(path = %path.display(), "ignoring non-segment file in wal dir"),
        }
    }
    segments.sort_unstable_by_key(|(first_lsn, _)| *first_lsn);
    Ok(segments)
}

/// Creates the segment that starts at `first_lsn` and returns it open for appending.
///
/// The header goes to `<name>.wal.tmp`, which is fsynced and renamed (then the directory is
/// fsynced), so a file with the final name always has a whole header. With `sync == false`
/// (the `Off` policy) the fsyncs are skipped.
pub(crate) fn create_segment(
    dir: &Path,
    first_lsn: Lsn,
    sync: bool,
) -> Result<(File, PathBuf), WalError> {
    let path = dir.join(segment_file_name(first_lsn));
    let tmp_path = dir.join(format!("{}.tmp", segment_file_name(first_lsn)));
    if path.exists() {
        let error = std::io::Error::new(std::io::ErrorKind::AlreadyExists, "segment exists");
        return Err(WalError::io("create segment", path, error));
    }
    let mut file = OpenOptions::new()
        .create(true)
        .truncate(true)
        .write(true)
        .open(&tmp_path)
        .map_err(|e| WalError::io("create segment", &tmp_path, e))?;
    file.write_all(&encode_header(first_lsn))
        .map_err(|e| WalError::io("write segment header", &tmp_path, e))?;
    if sync {
        file.sync_all().map_err(|e| WalError::io("fsync segment header", &tmp_path, e))?;
    }
    fs::rename(&tmp_path, &path).map_err(|e| WalError::io("rename segment", &tmp_path, e))?;
    if sync {
        sync_dir(dir)?;
    }
    // The handle was opened for writing at offset 0 and has written the header, so its
    // position is the end of the file: later writes append.
    tracing::debug!(path = %path.display(), first_lsn, "created wal segment");
    Ok((file, path))
}

/// Opens an existing segment for appending at its end.
pub(crate) fn open_for_append(path: &Path) -> Result<File, WalError> {
    OpenOptions::new().append(true).open(path).map_err(|e| WalError::io("open segment", path, e))
}

/// Cuts `path` to `len` bytes and makes the new length durable.
pub(crate) fn truncate(path: &Path, len: u64) -> Result<(), WalError> {
    let file = OpenOptions::new()
        .write(true)
        .open(path)
        .map_err(|e| WalError::io("open segment for truncation", path, e))?;
    file.set_len(len).map_err(|e| WalError::io("truncate segment", path, e))?;
    file.sync_all().map_err(|e| WalError::io("fsync truncated segment", path, e))
}

/// Makes creations, renames and deletions of entries in `dir` durable.
pub(crate) fn sync_dir(dir: &Path) -> Result<(), WalError> {
    File::open(dir).and_then(|d| d.sync_all()).map_err(|e| WalError::io("fsync directory", dir, e))
}
