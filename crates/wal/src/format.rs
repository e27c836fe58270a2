//! The on-disk format of WAL segments, bit-exact, and the frame scanner shared by recovery,
//! replay and the fuzz target.
//!
//! # Segment file
//!
//! A segment is named after the LSN its first record has (or would have had), as 20 decimal
//! digits plus `.wal`, e.g. `00000000000000000042.wal`, so that lexical order is LSN order.
//! It is created as `<name>.wal.tmp`, fsynced, and renamed, so a file with the final name
//! always holds a complete header. The file is the header followed by zero or more frames.
//!
//! ## Header (24 bytes)
//!
//! | offset | size | field                                                   |
//! |-------:|-----:|---------------------------------------------------------|
//! |      0 |    8 | magic `b"MTRUWAL\0"` (`4D 54 52 55 57 41 4C 00`)        |
//! |      8 |    4 | format version, u32 little-endian, currently `1`        |
//! |     12 |    8 | first LSN, u64 little-endian (equals the file name)     |
//! |     20 |    4 | CRC-32 (IEEE, as `crc32fast`) of bytes 0..20, u32 LE    |
//!
//! ## Record frame (20 bytes + payload)
//!
//! | offset | size | field                                                              |
//! |-------:|-----:|--------------------------------------------------------------------|
//! |      0 |    4 | sync marker `E3 1A 57 C9`                                          |
//! |      4 |    4 | payload length `len`, u32 little-endian                            |
//! |      8 |    4 | CRC-32 of (lsn as 8 bytes LE ‖ len as 4 bytes LE ‖ payload), u32 LE |
//! |     12 |    8 | LSN, u64 little-endian                                             |
//! |     20 |  len | payload, opaque to the WAL                                         |
//!
//! Frames follow each other with no padding. Within a segment LSNs are strictly increasing,
//! at least the header's first LSN and below the next segment's first LSN. LSNs start at 1;
//! `u64::MAX` is never a record's LSN.
//!
//! # Reading
//!
//! A frame is *valid* at offset `p` when the marker matches, `len` is at most
//! [`RECORD_BYTES_HARD_LIMIT`] and fits in the rest of the file, the CRC matches, and its LSN
//! is in order (greater than the previous valid frame's, within the segment's LSN range).
//! When the bytes at `p` are not a valid frame, the reader looks for the next offset `q > p`
//! that starts with the marker *and* holds a valid frame: bytes `p..q` are a corrupt region
//! and reading resumes at `q`. If no such `q` exists, bytes `p..` are an invalid tail: a torn
//! write when this is the last segment, a corrupt region otherwise. A length field is never
//! used to allocate; frames are read by slicing the segment's bytes.

use std::ops::Range;

use crate::Lsn;

/// First 8 bytes of every segment file.
pub const SEGMENT_MAGIC: [u8; 8] = *b"MTRUWAL\0";
/// The only segment format version this crate reads and writes.
pub const FORMAT_VERSION: u32 = 1;
/// Size of the segment header in bytes.
pub const SEGMENT_HEADER_LEN: usize = 24;
/// First 4 bytes of every record frame; lets a reader resynchronise after a corrupt region.
pub const RECORD_MARKER: [u8; 4] = [0xE3, 0x1A, 0x57, 0xC9];
/// Size of a record frame without its payload.
pub const FRAME_HEADER_LEN: usize = 20;
/// Largest payload length the format accepts when reading (1 GiB). A length field above this
/// is corruption. [`crate::WalOptions::max_record_bytes`] limits appends and may not exceed it;
/// because reading does not depend on that option, lowering it never hides existing records.
pub const RECORD_BYTES_HARD_LIMIT: u32 = 1 << 30;

/// Why a segment header could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SegmentHeaderError {
    /// The file is shorter than a header.
    #[error("file has {len} bytes, shorter than the {SEGMENT_HEADER_LEN}-byte header")]
    TooShort {
        /// The file's length.
        len: usize,
    },
    /// The first 8 bytes are not [`SEGMENT_MAGIC`]: not a MiniTrue WAL segment.
    #[error("bad magic bytes, not a minitrue wal segment")]
    BadMagic,
    /// Written by a format version this build does not read.
    #[error("unsupported format version {version} (this build reads {FORMAT_VERSION})")]
    UnsupportedVersion {
        /// The version found.
        version: u32,
    },
    /// The header's CRC does not match its bytes.
    #[error("header checksum mismatch")]
    BadChecksum,
    /// The first LSN in the header differs from the one in the file name.
    #[error("header first lsn {in_header} differs from file name lsn {in_name}")]
    NameMismatch {
        /// First LSN stored in the header.
        in_header: Lsn,
        /// First LSN encoded in the file name.
        in_name: Lsn,
    },
}

/// The file name of the segment whose first LSN is `first_lsn`.
pub(crate) fn segment_file_name(first_lsn: Lsn) -> String {
    format!("{first_lsn:020}.wal")
}

/// The first LSN encoded in a segment file name, or `None` if `name` is not one.
pub(crate) fn parse_segment_file_name(name: &str) -> Option<Lsn> {
    let digits = name.strip_suffix(".wal")?;
    if digits.len() != 20 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// The 24 header bytes of a segment starting at `first_lsn` (see the table above).
pub fn encode_header(first_lsn: Lsn) -> [u8; SEGMENT_HEADER_LEN] {
    let mut header = [0u8; SEGMENT_HEADER_LEN];
    header[0..8].copy_from_slice(&SEGMENT_MAGIC);
    header[8..12].copy_from_slice(&FORMAT_VERSION.to_le_bytes());
    header[12..20].copy_from_slice(&first_lsn.to_le_bytes());
    let crc = crc32fast::hash(&header[0..20]);
    header[20..24].copy_from_slice(&crc.to_le_bytes());
    header
}

/// Reads a segment header from the start of `bytes`, returning the first LSN.
pub(crate) fn decode_header(bytes: &[u8]) -> Result<Lsn, SegmentHeaderError> {
    let Some(header) = bytes.get(..SEGMENT_HEADER_LEN) else {
        return Err(SegmentHeaderError::TooShort { len: bytes.len() });
    };
    if header[0..8] != SEGMENT_MAGIC {
        return Err(SegmentHeaderError::BadMagic);
    }
    let version = u32::from_le_bytes(array(&header[8..12]));
    if version != FORMAT_VERSION {
        return Err(SegmentHeaderError::UnsupportedVersion { version });
    }
    let stored_crc = u32::from_le_bytes(array(&header[20..24]));
    if crc32fast::hash(&header[0..20]) != stored_crc {
        return Err(SegmentHeaderError::BadChecksum);
    }
    Ok(u64::from_le_bytes(array(&header[12..20])))
}

/// Appends the frame of record `lsn` to `buf`. `payload.len()` must fit in a `u32`
/// (callers check it against `max_record_bytes` first).
pub(crate) fn encode_frame(buf: &mut Vec<u8>, lsn: Lsn, payload: &[u8]) {
    let len = u32::try_from(payload.len()).unwrap_or(u32::MAX);
    buf.reserve(FRAME_HEADER_LEN + payload.len());
    buf.extend_from_slice(&RECORD_MARKER);
    buf.extend_from_slice(&len.to_le_bytes());
    buf.extend_from_slice(&frame_crc(lsn, len, payload).to_le_bytes());
    buf.extend_from_slice(&lsn.to_le_bytes());
    buf.extend_from_slice(payload);
}

fn frame_crc(lsn: Lsn, len: u32, payload: &[u8]) -> u32 {
    let mut hasher = crc32fast::Hasher::new();
    hasher.update(&lsn.to_le_bytes());
    hasher.update(&len.to_le_bytes());
    hasher.update(payload);
    hasher.finalize()
}

/// Copies a slice whose length the caller has already checked into an array.
fn array<const N: usize>(bytes: &[u8]) -> [u8; N] {
    let mut out = [0u8; N];
    out.copy_from_slice(&bytes[..N]);
    out
}

/// The frame at `pos` if it is intact (marker, length, CRC): its LSN and payload range.
fn parse_frame_at(bytes: &[u8], pos: usize) -> Option<(Lsn, Range<usize>)> {
    let header = bytes.get(pos..pos.checked_add(FRAME_HEADER_LEN)?)?;
    if header[0..4] != RECORD_MARKER {
        return None;
    }
    let len = u32::from_le_bytes(array(&header[4..8]));
    if len > RECORD_BYTES_HARD_LIMIT {
        return None;
    }
    let stored_crc = u32::from_le_bytes(array(&header[8..12]));
    let lsn = u64::from_le_bytes(array(&header[12..20]));
    let payload_start = pos + FRAME_HEADER_LEN;
    let payload_end = payload_start.checked_add(usize::try_from(len).ok()?)?;
    let payload = bytes.get(payload_start..payload_end)?;
    if frame_crc(lsn, len, payload) != stored_crc {
        return None;
    }
    Some((lsn, payload_start..payload_end))
}

/// One step of reading a segment's frames.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum ScanEvent {
    /// A valid frame.
    Record {
        lsn: Lsn,
        /// Offset of the frame (its marker) in the file.
        offset: usize,
        /// Where the payload lies in the file.
        payload: Range<usize>,
    },
    /// Bytes that are not a valid frame, followed by a valid frame.
    Corrupt { offset: usize, len: usize },
    /// Bytes up to the end of the file that contain no valid frame.
    InvalidTail { offset: usize, len: usize },
}

/// Walks the frames of one segment's bytes. Holds no borrow, so a caller can keep it next to
/// the buffer it reads (see the replay iterator).
#[derive(Debug, Clone)]
pub(crate) struct FrameCursor {
    pos: usize,
    /// The next valid frame's LSN must be at least this.
    min_lsn: Lsn,
    /// ... and below this (the next segment's first LSN).
    lsn_limit: Lsn,
    done: bool,
}

impl FrameCursor {
    /// A cursor just after the header of a segment whose first LSN is `first_lsn`, where the
    /// following segment (if any) starts at `lsn_limit`.
    pub(crate) fn new(first_lsn: Lsn, lsn_limit: Lsn) -> Self {
        FrameCursor { pos: SEGMENT_HEADER_LEN, min_lsn: first_lsn, lsn_limit, done: false }
    }

    fn acceptable_frame_at(&self, bytes: &[u8], pos: usize) -> Option<(Lsn, Range<usize>)> {
        let (lsn, payload) = parse_frame_at(bytes, pos)?;
        (lsn >= self.min_lsn && lsn < self.lsn_limit).then_some((lsn, payload))
    }

    /// Offset of the next valid frame strictly after `pos`, if any.
    fn resync_after(&self, bytes: &[u8], pos: usize) -> Option<usize> {
        let mut from = pos + 1;
        while from + FRAME_HEADER_LEN <= bytes.len() {
            let found = bytes[from..].windows(RECORD_MARKER.len()).position(|w| w == RECORD_MARKER);
            let candidate = from + found?;
            if self.acceptable_frame_at(bytes, candidate).is_some() {
                return Some(candidate);
            }
            from = candidate + 1;
        }
        None
    }

    /// The next event, or `None` at the end of `bytes`. `bytes` is the whole segment file
    /// and must be the same buffer on every call.
    pub(crate) fn next_event(&mut self, bytes: &[u8]) -> Option<ScanEvent> {
        if self.done || self.pos >= bytes.len() {
            self.done = true;
            return None;
        }
        let offset = self.pos;
        if let Some((lsn, payload)) = self.acceptable_frame_at(bytes, offset) {
            self.pos = payload.end;
            // `lsn < lsn_limit <= Lsn::MAX`, so this cannot overflow.
            self.min_lsn = lsn + 1;
            return Some(ScanEvent::Record { lsn, offset, payload });
        }
        match self.resync_after(bytes, offset) {
            Some(next) => {
                self.pos = next;
                Some(ScanEvent::Corrupt { offset, len: next - offset })
            }
            None => {
                self.pos = bytes.len();
                self.done = true;
                Some(ScanEvent::InvalidTail { offset, len: bytes.len() - offset })
            }
        }
    }
}

/// A corrupt region found inside one segment, with the LSNs of the valid frames around it
/// *within that segment*.
#[doc(hidden)]
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScannedCorruption {
    /// Byte offset of the region in the file.
    pub offset: u64,
    /// Length of the region in bytes.
    pub len: u64,
    /// LSN of the valid frame just before it in this segment.
    pub lsn_before: Option<Lsn>,
    /// LSN of the valid frame just after it in this segment.
    pub lsn_after: Option<Lsn>,
}

/// What one segment's bytes hold, as recovery sees them.
#[doc(hidden)]
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SegmentScan {
    /// First LSN from the header.
    pub first_lsn: Lsn,
    /// Number of valid frames.
    pub records: u64,
    /// LSN of the first valid frame.
    pub first_record_lsn: Option<Lsn>,
    /// LSN of the last valid frame.
    pub last_record_lsn: Option<Lsn>,
    /// Corrupt regions followed by a valid frame, in file order.
    pub corrupt: Vec<ScannedCorruption>,
    /// Invalid bytes at the end of the file: `(offset, len)`. `offset` is the end of the last
    /// valid frame (or of the header), where a torn tail is truncated.
    pub invalid_tail: Option<(u64, u64)>,
}

/// Scans a whole segment file held in memory, as recovery does, without touching disk.
///
/// Pure and total: returns an error for a bad header and never panics on any input.
/// Exposed for the fuzz target.
#[doc(hidden)]
pub fn scan_segment_bytes(bytes: &[u8]) -> Result<SegmentScan, SegmentHeaderError> {
    scan_segment(bytes, Lsn::MAX)
}

/// [`scan_segment_bytes`] for a segment followed by one starting at `lsn_limit`.
pub(crate) fn scan_segment(
    bytes: &[u8],
    lsn_limit: Lsn,
) -> Result<SegmentScan, SegmentHeaderError> {
    let first_lsn = decode_header(bytes)?;
    let mut scan = SegmentScan {
        first_lsn,
        records: 0,
        first_record_lsn: None,
        last_record_lsn: None,
        corrupt: Vec::new(),
        invalid_tail: None,
    };
    let mut cursor = FrameCursor::new(first_lsn, lsn_limit);
    // Index into `scan.corrupt` of a region still waiting for the LSN that follows it.
    let mut waiting_for_next_lsn: Option<usize> = None;
    while let Some(event) = cursor.next_event(bytes) {
        match event {
            ScanEvent::Record { lsn, .. } => {
                if let Some(index) = waiting_for_next_lsn.take() {
                    scan.corrupt[index].lsn_after = Some(lsn);
                }
                scan.records += 1;
                scan.first_record_lsn.get_or_insert(lsn);
                scan.last_record_lsn = Some(lsn);
            }
            ScanEvent::Corrupt { offset, len } => {
                scan.corrupt.push(ScannedCorruption {
                    offset: offset as u64,
                    len: len as u64,
                    lsn_before: scan.last_record_lsn,
                    lsn_after: None,
                });
                waiting_for_next_lsn = Some(scan.corrupt.len() - 1);
            }
            ScanEvent::InvalidTail { offset, len } => {
                scan.invalid_tail = Some((offset as u64, len as u64));
            }
        }
    }
    Ok(scan)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_names_sort_by_lsn_and_round_trip() {
        assert_eq!(segment_file_name(42), "00000000000000000042.wal");
        assert_eq!(parse_segment_file_name("00000000000000000042.wal"), Some(42));
        assert_eq!(parse_segment_file_name(&segment_file_name(u64::MAX)), Some(u64::MAX));
        assert_eq!(parse_segment_file_name("99999999999999999999.wal"), None);
        assert_eq!(parse_segment_file_name("0000000000000000042.wal"), None);
        assert_eq!(parse_segment_file_name("0000000000000000004x.wal"), None);
        assert_eq!(parse_segment_file_name("00000000000000000042.wal.tmp"), None);
        assert!(segment_file_name(9) < segment_file_name(10));
    }

    #[test]
    fn header_round_trips_and_rejects_damage() {
        let header = encode_header(7);
        assert_eq!(decode_header(&header), Ok(7));
        assert_eq!(decode_header(&header[..23]), Err(SegmentHeaderError::TooShort { len: 23 }));
        let mut bad = header;
        bad[0] ^= 1;
        assert_eq!(decode_header(&bad), Err(SegmentHeaderError::BadMagic));
        let mut bad = header;
        bad[8] = 2;
        assert_eq!(decode_header(&bad), Err(SegmentHeaderError::UnsupportedVersion { version: 2 }));
        let mut bad = header;
        bad[12] ^= 1;
        assert_eq!(decode_header(&bad), Err(SegmentHeaderError::BadChecksum));
    }

    fn segment(first_lsn: Lsn, records: &[(Lsn, &[u8])]) -> Vec<u8> {
        let mut bytes = encode_header(first_lsn).to_vec();
        for (lsn, payload) in records {
            encode_frame(&mut bytes, *lsn, payload);
        }
        bytes
    }

    #[test]
    fn scan_reports_records_corruption_and_tail() {
        let mut bytes = segment(1, &[(1, b"one"), (2, b"two"), (3, b"three")]);
        let second = SEGMENT_HEADER_LEN + FRAME_HEADER_LEN + 3;
        bytes[second + FRAME_HEADER_LEN] ^= 0xFF; // payload of lsn 2
        bytes.extend_from_slice(&RECORD_MARKER); // torn start of a fourth frame
        let scan = scan_segment_bytes(&bytes).expect("valid header");
        assert_eq!(scan.records, 2);
        assert_eq!((scan.first_record_lsn, scan.last_record_lsn), (Some(1), Some(3)));
        assert_eq!(
            scan.corrupt,
            vec![ScannedCorruption {
                offset: second as u64,
                len: (FRAME_HEADER_LEN + 3) as u64,
                lsn_before: Some(1),
                lsn_after: Some(3),
            }]
        );
        assert_eq!(scan.invalid_tail, Some((bytes.len() as u64 - 4, 4)));
    }

    #[test]
    fn out_of_order_and_out_of_range_lsns_are_corrupt() {
        let bytes = segment(10, &[(10, b"a"), (10, b"dup"), (9, b"old"), (11, b"b"), (20, b"c")]);
        let scan = scan_segment(&bytes, 20).expect("valid header");
        assert_eq!(scan.records, 2);
        assert_eq!(scan.last_record_lsn, Some(11));
        assert_eq!(scan.corrupt.len(), 1);
        assert_eq!((scan.corrupt[0].lsn_before, scan.corrupt[0].lsn_after), (Some(10), Some(11)));
        assert!(scan.invalid_tail.is_some(), "lsn 20 belongs to the next segment");
    }

    #[test]
    fn huge_length_field_is_corruption_not_allocation() {
        let mut bytes = segment(1, &[(1, b"x")]);
        bytes[SEGMENT_HEADER_LEN + 4..SEGMENT_HEADER_LEN + 8]
            .copy_from_slice(&u32::MAX.to_le_bytes());
        let scan = scan_segment_bytes(&bytes).expect("valid header");
        assert_eq!(scan.records, 0);
        assert_eq!(scan.invalid_tail, Some((SEGMENT_HEADER_LEN as u64, 21)));
    }
}
