//! Opening a WAL directory: scan every segment, truncate a torn tail, report corruption.

use std::fs;
use std::path::{Path, PathBuf};

use crate::error::WalError;
use crate::format::{scan_segment, SegmentHeaderError};
use crate::segment::{list_segments, truncate, SegmentMeta};
use crate::Lsn;

/// What [`crate::Wal::open`] found in the directory.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RecoveryReport {
    /// Segment files found (before the fresh active segment was added, if one was).
    pub segments: usize,
    /// Intact records found.
    pub records: u64,
    /// [`crate::Wal::last_lsn`] after opening: the next append gets `last_lsn + 1`. This is the
    /// highest intact LSN, or higher when a segment name or `min_next_lsn` says so.
    pub last_lsn: Lsn,
    /// Bytes cut off the end of the last segment (a write torn by a crash).
    pub torn_tail_bytes: u64,
    /// Corrupt regions that were skipped, in LSN order. They stay on disk (and are skipped
    /// again by every replay) until [`crate::Wal::remove_through`] deletes their segment.
    pub corrupt: Vec<CorruptRegion>,
}

impl RecoveryReport {
    /// Records lost to corrupt regions, from the LSN gaps around them; a region with an
    /// unknown bound counts as one.
    pub fn corrupt_records(&self) -> u64 {
        self.corrupt.iter().map(CorruptRegion::records_lost).sum()
    }
}

/// A run of bytes in a segment that is not a valid record frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CorruptRegion {
    /// The segment file.
    pub segment: PathBuf,
    /// Byte offset of the region in the file.
    pub offset: u64,
    /// Length of the region in bytes.
    pub len: u64,
    /// LSN of the last intact record before the region (in any segment).
    pub lsn_before: Option<Lsn>,
    /// LSN of the first intact record after the region (in any segment).
    pub lsn_after: Option<Lsn>,
}

impl CorruptRegion {
    /// Records lost in this region: the LSN gap between its neighbours, or 1 when a
    /// neighbour is unknown.
    pub fn records_lost(&self) -> u64 {
        match (self.lsn_before, self.lsn_after) {
            (Some(before), Some(after)) => after.saturating_sub(before).saturating_sub(1),
            _ => 1,
        }
    }
}

/// The directory's state after recovery.
pub(crate) struct Recovered {
    pub(crate) segments: Vec<SegmentMeta>,
    pub(crate) report: RecoveryReport,
    /// The LSN the next append gets.
    pub(crate) next_lsn: Lsn,
}

/// Scans every segment of `dir` in LSN order, one file in memory at a time.
///
/// The invalid tail of the last segment is a torn write and is truncated away (fsynced);
/// corrupt regions elsewhere are logged, reported and left in place.
pub(crate) fn recover(dir: &Path, min_next_lsn: Lsn) -> Result<Recovered, WalError> {
    let files = list_segments(dir)?;
    let mut report = RecoveryReport { segments: files.len(), ..RecoveryReport::default() };
    let mut segments = Vec::with_capacity(files.len());
    let mut last_intact: Option<Lsn> = None;
    // Regions (indexes into report.corrupt) still waiting for the next intact LSN.
    let mut waiting_for_next_lsn: Vec<usize> = Vec::new();

    for (index, (name_lsn, path)) in files.iter().enumerate() {
        let is_last = index + 1 == files.len();
        let lsn_limit = files.get(index + 1).map_or(Lsn::MAX, |(next, _)| *next);
        let bytes = fs::read(path).map_err(|e| WalError::io("read segment", path, e))?;
        let scan = scan_segment(&bytes, lsn_limit)
            .map_err(|reason| WalError::InvalidSegment { path: path.clone(), reason })?;
        if scan.first_lsn != *name_lsn {
            let reason =
                SegmentHeaderError::NameMismatch { in_header: scan.first_lsn, in_name: *name_lsn };
            return Err(WalError::InvalidSegment { path: path.clone(), reason });
        }
        let mut file_len = bytes.len() as u64;
        drop(bytes);

        if let Some(first) = scan.first_record_lsn {
            for region in waiting_for_next_lsn.drain(..) {
                report.corrupt[region].lsn_after = Some(first);
            }
        }
        for region in &scan.corrupt {
            report.corrupt.push(CorruptRegion {
                segment: path.clone(),
                offset: region.offset,
                len: region.len,
                lsn_before: region.lsn_before.or(last_intact),
                lsn_after: region.lsn_after,
            });
        }
        last_intact = scan.last_record_lsn.or(last_intact);
        report.records += scan.records;

        if let Some((offset, len)) = scan.invalid_tail {
            if is_last {
                tracing::warn!(
                    segment = %path.display(),
                    offset,
                    bytes = len,
                    last_lsn = ?last_intact,
                    "truncating torn tail of last wal segment"
                );
                truncate(path, offset)?;
                report.torn_tail_bytes += len;
                file_len = offset;
            } else {
                report.corrupt.push(CorruptRegion {
                    segment: path.clone(),
                    offset,
                    len,
                    lsn_before: last_intact,
                    lsn_after: None,
                });
                waiting_for_next_lsn.push(report.corrupt.len() - 1);
            }
        }

        segments.push(SegmentMeta {
            path: path.clone(),
            first_lsn: scan.first_lsn,
            last_lsn: scan.last_record_lsn,
            bytes: file_len,
        });
    }

    for region in &report.corrupt {
        tracing::warn!(
            segment = %region.segment.display(),
            offset = region.offset,
            bytes = region.len,
            lsn_before = ?region.lsn_before,
            lsn_after = ?region.lsn_after,
            "skipping corrupt wal region"
        );
    }

    let after_records = last_intact.map_or(1, |lsn| lsn.saturating_add(1));
    let after_names = segments.last().map_or(1, |segment| segment.first_lsn);
    let next_lsn = after_records.max(after_names).max(min_next_lsn).max(1);
    report.last_lsn = next_lsn - 1;
    Ok(Recovered { segments, report, next_lsn })
}
