//! Property tests: the reader never panics on any bytes and loses only damaged records.

mod support;

use minitrue_wal::{scan_segment_bytes, Wal};
use proptest::prelude::*;
use support::*;

/// A valid header for a segment starting at LSN 1, taken from a real WAL.
fn header() -> Vec<u8> {
    let dir = tempfile::tempdir().expect("tempdir");
    let (wal, _) = Wal::open(dir.path(), no_sync()).expect("open");
    wal.close().expect("close");
    std::fs::read(segment_file(dir.path(), 1)).expect("read")
}

/// A segment with `payloads` as records 1..=n, written by a real WAL.
fn segment_with(payloads: &[Vec<u8>]) -> Vec<u8> {
    let dir = tempfile::tempdir().expect("tempdir");
    let (wal, _) = Wal::open(dir.path(), no_sync()).expect("open");
    for payload in payloads {
        wal.append_blocking(payload.clone()).expect("append");
    }
    wal.close().expect("close");
    std::fs::read(segment_file(dir.path(), 1)).expect("read")
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn scanning_arbitrary_bytes_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..2048)) {
        let _ = scan_segment_bytes(&bytes);
        let mut with_header = header();
        with_header.extend_from_slice(&bytes);
        let scan = scan_segment_bytes(&with_header).expect("valid header");
        let mut end = 24u64;
        for region in &scan.corrupt {
            prop_assert!(region.offset >= end && region.len > 0);
            end = region.offset + region.len;
        }
        if let Some((offset, len)) = scan.invalid_tail {
            prop_assert_eq!(offset + len, with_header.len() as u64);
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    #[test]
    fn open_and_replay_of_arbitrary_segment_bytes_never_panic(
        bytes in proptest::collection::vec(any::<u8>(), 0..4096),
    ) {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut file = header();
        file.extend_from_slice(&bytes);
        std::fs::write(segment_file(dir.path(), 1), &file).expect("write");
        let (wal, report) = Wal::open(dir.path(), no_sync()).expect("a valid header always opens");
        let replayed: Vec<_> = wal.replay(0).expect("replay").collect();
        prop_assert!(replayed.iter().all(|r| r.is_ok()));
        prop_assert_eq!(replayed.len() as u64, report.records);
        let next = wal.append_blocking(b"after".to_vec()).expect("append");
        prop_assert_eq!(next, report.last_lsn + 1);
        drop(wal);
        let (_, again) = Wal::open(dir.path(), no_sync()).expect("reopen");
        prop_assert_eq!(again.torn_tail_bytes, 0);
        prop_assert_eq!(again.records, report.records + 1);
    }

    #[test]
    fn damage_loses_exactly_the_damaged_records(
        payloads in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..64), 1..40),
        flips in proptest::collection::vec((any::<prop::sample::Index>(), 1u8..=255), 0..6),
    ) {
        let mut bytes = segment_with(&payloads);
        let mut frames = Vec::new(); // (start, end) of each frame
        let mut offset = 24;
        for payload in &payloads {
            frames.push((offset, offset + 20 + payload.len()));
            offset += 20 + payload.len();
        }
        let mut damaged_positions = Vec::new();
        for (index, mask) in &flips {
            let position = 24 + index.index(bytes.len() - 24);
            bytes[position] ^= mask;
            damaged_positions.push(position);
        }
        let intact: Vec<u64> = frames
            .iter()
            .enumerate()
            .filter(|(_, (start, end))| !damaged_positions.iter().any(|p| p >= start && p < end))
            .map(|(i, _)| i as u64 + 1)
            .collect();

        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(segment_file(dir.path(), 1), &bytes).expect("write");
        let (wal, report) = Wal::open(dir.path(), no_sync()).expect("open");
        let records = replay_all(&wal, 0);
        prop_assert_eq!(lsns(&records), intact);
        for record in &records {
            prop_assert_eq!(&record.payload, &payloads[record.lsn as usize - 1]);
        }
        prop_assert_eq!(report.records, records.len() as u64);
    }
}
