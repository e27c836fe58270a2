//! Opening directories with torn, corrupt and foreign files.

mod support;

use std::fs;
use std::path::Path;

use minitrue_common::ErrorKind;
use minitrue_wal::{CorruptRegion, SegmentHeaderError, Wal, WalError};
use support::*;

/// Writes `count` records `payload(1..=count)` into a fresh WAL in `dir`, one segment.
fn write_segment(dir: &Path, count: u64) -> Vec<u8> {
    let (wal, _) = Wal::open(dir, no_sync()).expect("open");
    append_n(&wal, count);
    wal.close().expect("close");
    fs::read(segment_file(dir, 1)).expect("read segment")
}

#[test]
fn torn_tail_at_every_byte_of_the_last_frame() {
    let source = tempfile::tempdir().expect("tempdir");
    let bytes = write_segment(source.path(), 5);
    let last_frame = frame_offset(1, 4);
    assert_eq!(bytes.len(), frame_offset(1, 5));

    for cut in last_frame..bytes.len() {
        let dir = tempfile::tempdir().expect("tempdir");
        let segment = segment_file(dir.path(), 1);
        fs::write(&segment, &bytes[..cut]).expect("write");

        let (wal, report) = Wal::open(dir.path(), no_sync()).expect("open torn segment");
        let torn = (cut - last_frame) as u64;
        assert_eq!(report.torn_tail_bytes, torn, "cut at {cut}");
        assert_eq!(report.records, 4);
        assert_eq!(report.last_lsn, 4);
        assert!(report.corrupt.is_empty(), "cut at {cut}: {:?}", report.corrupt);
        assert_eq!(wal.stats().torn_tail_bytes_truncated, torn);
        assert_eq!(fs::metadata(&segment).expect("stat").len(), last_frame as u64);
        let records = replay_all(&wal, 0);
        assert_eq!(lsns(&records), vec![1, 2, 3, 4]);
        assert!(records.iter().all(|r| r.payload == payload(r.lsn)));
        assert_eq!(wal.append_blocking(b"after crash".to_vec()).expect("append"), 5);
        drop(wal);

        let (wal, report) = Wal::open(dir.path(), no_sync()).expect("reopen");
        assert_eq!(report.torn_tail_bytes, 0);
        assert!(report.corrupt.is_empty());
        assert_eq!(report.records, 5);
        let records = replay_all(&wal, 0);
        assert_eq!(lsns(&records), vec![1, 2, 3, 4, 5]);
        assert_eq!(records[4].payload, b"after crash");
    }
}

#[test]
fn torn_tail_made_of_zeros_is_truncated() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut bytes = write_segment(dir.path(), 3);
    let good_len = bytes.len();
    bytes.extend_from_slice(&[0u8; 4096]); // a crash after the size grew, before the data
    fs::write(segment_file(dir.path(), 1), &bytes).expect("write");
    let (wal, report) = Wal::open(dir.path(), no_sync()).expect("open");
    assert_eq!(report.torn_tail_bytes, 4096);
    assert_eq!(fs::metadata(segment_file(dir.path(), 1)).expect("stat").len(), good_len as u64);
    assert_eq!(lsns(&replay_all(&wal, 0)), vec![1, 2, 3]);
}

/// Byte positions inside a frame to damage: marker, length, crc, lsn, payload.
const FRAME_FIELDS: [(&str, usize); 6] = [
    ("marker", 0),
    ("length low byte", 4),
    ("length high byte", 7),
    ("crc", 9),
    ("lsn", 14),
    ("payload", 23),
];

#[test]
fn flipped_byte_in_one_record_loses_only_that_record() {
    let source = tempfile::tempdir().expect("tempdir");
    let bytes = write_segment(source.path(), 100);

    for k in [1u64, 2, 50, 99] {
        for (field, position) in FRAME_FIELDS {
            let dir = tempfile::tempdir().expect("tempdir");
            let segment = segment_file(dir.path(), 1);
            let mut damaged = bytes.clone();
            let frame = frame_offset(1, k - 1);
            damaged[frame + position] ^= 0x5A;
            fs::write(&segment, &damaged).expect("write");

            let (wal, report) = Wal::open(dir.path(), no_sync()).expect("open");
            let case = format!("record {k}, {field}");
            assert_eq!(
                report.corrupt,
                vec![CorruptRegion {
                    segment: segment.clone(),
                    offset: frame as u64,
                    len: (frame_offset(1, k) - frame) as u64,
                    lsn_before: (k > 1).then(|| k - 1),
                    lsn_after: Some(k + 1),
                }],
                "{case}"
            );
            assert_eq!(report.torn_tail_bytes, 0, "{case}");
            assert_eq!(report.records, 99, "{case}");
            assert_eq!(report.last_lsn, 100, "{case}");
            assert_eq!(wal.stats().corrupt_records_skipped, 1, "{case}");
            let records = replay_all(&wal, 0);
            let expected: Vec<u64> = (1..=100).filter(|lsn| *lsn != k).collect();
            assert_eq!(lsns(&records), expected, "{case}");
            assert!(records.iter().all(|r| r.payload == payload(r.lsn)), "{case}");
            // The damaged file is left as it was.
            assert_eq!(fs::read(&segment).expect("read"), damaged, "{case}");
            assert_eq!(wal.append_blocking(b"x".to_vec()).expect("append"), 101, "{case}");
        }
    }
}

#[test]
fn corruption_in_non_last_segments_is_reported_not_truncated() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (wal, _) = Wal::open(dir.path(), no_sync()).expect("open");
    append_n(&wal, 10); // segment 1: lsn 1..=10
    wal.rotate().expect("rotate");
    append_n(&wal, 10); // segment 11: lsn 11..=20
    wal.rotate().expect("rotate");
    append_n(&wal, 5); // segment 21: lsn 21..=25
    drop(wal);

    let first = segment_file(dir.path(), 1);
    let second = segment_file(dir.path(), 11);
    let mut bytes = fs::read(&first).expect("read");
    bytes[frame_offset(1, 0) + 22] ^= 0xFF; // payload of lsn 1
    fs::write(&first, &bytes).expect("write");
    let mut bytes = fs::read(&second).expect("read");
    bytes[frame_offset(11, 4) + 10] ^= 0xFF; // crc of lsn 15
    bytes[frame_offset(11, 9)] ^= 0xFF; // marker of lsn 20, the last frame of the segment
    fs::write(&second, &bytes).expect("write");
    let second_len = bytes.len() as u64;

    let (wal, report) = Wal::open(dir.path(), no_sync()).expect("open");
    let regions: Vec<_> = report
        .corrupt
        .iter()
        .map(|r| (r.segment.clone(), r.offset, r.lsn_before, r.lsn_after))
        .collect();
    assert_eq!(
        regions,
        vec![
            (first.clone(), frame_offset(1, 0) as u64, None, Some(2)),
            (second.clone(), frame_offset(11, 4) as u64, Some(14), Some(16)),
            (second.clone(), frame_offset(11, 9) as u64, Some(19), Some(21)),
        ]
    );
    assert_eq!(report.corrupt[2].len, second_len - frame_offset(11, 9) as u64);
    assert_eq!(report.torn_tail_bytes, 0);
    assert_eq!(report.records, 22);
    assert_eq!(report.corrupt_records(), 3);
    assert_eq!(fs::metadata(&second).expect("stat").len(), second_len);
    let expected: Vec<u64> = (1..=25).filter(|lsn| ![1, 15, 20].contains(lsn)).collect();
    assert_eq!(lsns(&replay_all(&wal, 0)), expected);
    let after_14: Vec<u64> = expected.iter().copied().filter(|lsn| *lsn > 14).collect();
    assert_eq!(lsns(&replay_all(&wal, 14)), after_14);
    assert_eq!(wal.append_blocking(b"x".to_vec()).expect("append"), 26);
}

fn open_error(dir: &Path) -> WalError {
    Wal::open(dir, no_sync()).expect_err("open must fail")
}

#[test]
fn foreign_and_damaged_headers_are_clear_errors() {
    let dir = tempfile::tempdir().expect("tempdir");
    let segment = segment_file(dir.path(), 1);

    fs::write(&segment, b"").expect("write");
    let error = open_error(dir.path());
    assert!(
        matches!(&error, WalError::InvalidSegment { path, reason: SegmentHeaderError::TooShort { len: 0 } } if *path == segment),
        "{error}"
    );
    assert_eq!(error.kind(), ErrorKind::Corrupt);

    fs::write(&segment, b"this is not a wal segment, just some text in a file").expect("write");
    let error = open_error(dir.path());
    assert!(matches!(error, WalError::InvalidSegment { reason: SegmentHeaderError::BadMagic, .. }));
    assert!(error.to_string().contains("00000000000000000001.wal"), "{error}");

    fs::remove_file(&segment).expect("remove");
    let valid = write_segment(dir.path(), 2);
    let mut bytes = valid.clone();
    bytes[8] = 9; // version
    fs::write(&segment, &bytes).expect("write");
    let error = open_error(dir.path());
    assert!(matches!(
        error,
        WalError::InvalidSegment {
            reason: SegmentHeaderError::UnsupportedVersion { version: 9 },
            ..
        }
    ));

    let mut bytes = valid.clone();
    bytes[13] ^= 1; // first lsn, caught by the header crc
    fs::write(&segment, &bytes).expect("write");
    let error = open_error(dir.path());
    assert!(matches!(
        error,
        WalError::InvalidSegment { reason: SegmentHeaderError::BadChecksum, .. }
    ));

    fs::write(&segment, &valid).expect("write");
    fs::rename(&segment, segment_file(dir.path(), 7)).expect("rename");
    let error = open_error(dir.path());
    assert!(matches!(
        error,
        WalError::InvalidSegment {
            reason: SegmentHeaderError::NameMismatch { in_header: 1, in_name: 7 },
            ..
        }
    ));
}

#[test]
fn garbage_after_a_valid_header_is_a_torn_tail() {
    let dir = tempfile::tempdir().expect("tempdir");
    let header = write_segment(dir.path(), 0);
    assert_eq!(header.len(), 24);
    let mut bytes = header.clone();
    bytes.extend((0..10_000u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8));
    fs::write(segment_file(dir.path(), 1), &bytes).expect("write");
    let (wal, report) = Wal::open(dir.path(), no_sync()).expect("open");
    assert_eq!(report.records, 0);
    assert_eq!(report.torn_tail_bytes, 10_000);
    assert_eq!(wal.append_blocking(b"first".to_vec()).expect("append"), 1);
}

#[test]
fn header_only_segment_is_reused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (wal, _) = Wal::open_after(dir.path(), no_sync(), 42).expect("open");
    drop(wal);
    assert_eq!(segment_names(dir.path()), vec![format!("{:020}.wal", 42)]);
    let (wal, report) = Wal::open(dir.path(), no_sync()).expect("reopen");
    assert_eq!(report.segments, 1);
    assert_eq!(report.records, 0);
    assert_eq!(report.last_lsn, 41);
    assert_eq!(wal.stats().segments, 1);
    assert_eq!(wal.append_blocking(b"a".to_vec()).expect("append"), 42);
    assert_eq!(segment_names(dir.path()).len(), 1);
}

#[test]
fn leftover_temp_files_are_removed_and_other_files_ignored() {
    let dir = tempfile::tempdir().expect("tempdir");
    write_segment(dir.path(), 3);
    let tmp = dir.path().join(format!("{:020}.wal.tmp", 4));
    fs::write(&tmp, b"MTRU").expect("write");
    fs::write(dir.path().join("README"), b"not a segment").expect("write");
    fs::write(dir.path().join("123.wal"), b"not a segment name either").expect("write");
    let (wal, report) = Wal::open(dir.path(), no_sync()).expect("open");
    assert!(!tmp.exists());
    assert_eq!(report.segments, 1);
    assert_eq!(lsns(&replay_all(&wal, 0)), vec![1, 2, 3]);
}
