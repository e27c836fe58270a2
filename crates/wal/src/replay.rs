//! Streaming replay: one segment file in memory at a time.

use std::collections::VecDeque;
use std::fs;
use std::path::PathBuf;

use crate::error::WalError;
use crate::format::{decode_header, FrameCursor, ScanEvent, SegmentHeaderError};
use crate::Lsn;

/// One record read back from the WAL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WalRecord {
    /// The LSN the record was appended with.
    pub lsn: Lsn,
    /// The payload exactly as appended.
    pub payload: Vec<u8>,
}

/// A segment replay still has to read.
#[derive(Debug)]
pub(crate) struct PendingSegment {
    pub(crate) path: PathBuf,
    pub(crate) first_lsn: Lsn,
    /// First LSN of the following segment (`Lsn::MAX` for the newest).
    pub(crate) lsn_limit: Lsn,
}

struct LoadedSegment {
    bytes: Vec<u8>,
    cursor: FrameCursor,
}

/// Iterator over the intact records of a WAL in LSN order; see [`crate::Wal::replay`].
///
/// Holds at most one segment file in memory. Corrupt regions are skipped silently here (they
/// were reported by [`crate::Wal::open`]). After an `Err` item the iterator ends.
pub struct ReplayIter {
    pending: VecDeque<PendingSegment>,
    after: Lsn,
    upto: Lsn,
    current: Option<LoadedSegment>,
    finished: bool,
}

impl ReplayIter {
    pub(crate) fn new(pending: Vec<PendingSegment>, after: Lsn, upto: Lsn) -> Self {
        ReplayIter { pending: pending.into(), after, upto, current: None, finished: false }
    }

    fn load(segment: &PendingSegment) -> Result<LoadedSegment, WalError> {
        let bytes = fs::read(&segment.path)
            .map_err(|e| WalError::io("read segment for replay", &segment.path, e))?;
        let first_lsn = decode_header(&bytes)
            .map_err(|reason| WalError::InvalidSegment { path: segment.path.clone(), reason })?;
        if first_lsn != segment.first_lsn {
            let reason = SegmentHeaderError::NameMismatch {
                in_header: first_lsn,
                in_name: segment.first_lsn,
            };
            return Err(WalError::InvalidSegment { path: segment.path.clone(), reason });
        }
        Ok(LoadedSegment { bytes, cursor: FrameCursor::new(first_lsn, segment.lsn_limit) })
    }
}

impl Iterator for ReplayIter {
    type Item = Result<WalRecord, WalError>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            if self.finished {
                return None;
            }
            let Some(current) = self.current.as_mut() else {
                let Some(segment) = self.pending.pop_front() else {
                    self.finished = true;
                    return None;
                };
                match Self::load(&segment) {
                    Ok(loaded) => self.current = Some(loaded),
                    Err(error) => {
                        self.finished = true;
                        return Some(Err(error));
                    }
                }
                continue;
            };
            match current.cursor.next_event(&current.bytes) {
                Some(ScanEvent::Record { lsn, payload, .. }) => {
                    if lsn <= self.after {
                        continue;
                    }
                    if lsn > self.upto {
                        self.finished = true;
                        self.current = None;
                        return None;
                    }
                    let payload = current.bytes[payload].to_vec();
                    return Some(Ok(WalRecord { lsn, payload }));
                }
                Some(ScanEvent::Corrupt { .. }) => continue,
                // The end of the segment; an invalid tail of the active segment is a frame
                // still being written.
                Some(ScanEvent::InvalidTail { .. }) | None => self.current = None,
            }
        }
    }
}
