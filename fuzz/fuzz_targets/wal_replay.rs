//! Fuzz the WAL segment reader: recovery and replay run this scanner over whatever bytes are
//! on disk, so it must be total (no panic, no huge allocation) and self-consistent.
//!
//! Run: `scripts/fuzz.sh 60 wal_replay`.
#![no_main]

use libfuzzer_sys::fuzz_target;
use minitrue_wal::format::{encode_header, SEGMENT_HEADER_LEN};
use minitrue_wal::{scan_segment_bytes, SegmentScan};

fuzz_target!(|data: &[u8]| {
    // The input as a whole file, header included: mostly exercises header validation.
    if let Ok(scan) = scan_segment_bytes(data) {
        check(&scan, data.len());
    }
    // The input after a valid header: exercises frame parsing and resynchronisation.
    let mut segment = encode_header(1).to_vec();
    segment.extend_from_slice(data);
    let scan = scan_segment_bytes(&segment).expect("a valid header always scans");
    check(&scan, segment.len());
});

/// Invariants of a scan: regions are in file order, disjoint, non-empty and in bounds; an
/// invalid tail reaches the end of the file; record LSNs are consistent with the header.
fn check(scan: &SegmentScan, file_len: usize) {
    let file_len = file_len as u64;
    let mut end = SEGMENT_HEADER_LEN as u64;
    for region in &scan.corrupt {
        assert!(region.len > 0, "empty corrupt region");
        assert!(region.offset >= end, "regions overlap or are out of order");
        end = region.offset + region.len;
        assert!(end <= file_len, "region past the end of the file");
        assert!(region.lsn_after.is_some(), "a corrupt region is followed by a valid frame");
        if let (Some(before), Some(after)) = (region.lsn_before, region.lsn_after) {
            assert!(before < after, "lsns around a region go backwards");
        }
    }
    if let Some((offset, len)) = scan.invalid_tail {
        assert!(offset >= end && len > 0, "tail overlaps a region");
        assert_eq!(offset + len, file_len, "tail does not reach the end");
    }
    match (scan.first_record_lsn, scan.last_record_lsn) {
        (Some(first), Some(last)) => {
            assert!(scan.first_lsn <= first && first <= last && last < u64::MAX);
            assert!(scan.records >= 1 && scan.records - 1 <= last - first);
        }
        (None, None) => assert_eq!(scan.records, 0),
        _ => panic!("first and last record lsn disagree"),
    }
}
