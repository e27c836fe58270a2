//! Helpers shared by the integration tests.
#![allow(dead_code)]

use std::path::{Path, PathBuf};

use minitrue_wal::{Lsn, SyncPolicy, Wal, WalOptions, WalRecord};

/// Options with fsync off: the tests that are about durability say so explicitly.
pub fn no_sync() -> WalOptions {
    WalOptions { sync: SyncPolicy::Off, ..WalOptions::default() }
}

/// A payload that differs per LSN and in length, so misplaced bytes are noticed.
pub fn payload(n: u64) -> Vec<u8> {
    let len = (n % 7 + 10) as usize;
    (0..len).map(|i| (n as u8).wrapping_mul(31).wrapping_add(i as u8)).collect()
}

pub fn replay_all(wal: &Wal, after: Lsn) -> Vec<WalRecord> {
    wal.replay(after).expect("replay").collect::<Result<Vec<_>, _>>().expect("replay record")
}

pub fn lsns(records: &[WalRecord]) -> Vec<Lsn> {
    records.iter().map(|r| r.lsn).collect()
}

/// Appends `payload(lsn)` for the next `count` LSNs.
pub fn append_n(wal: &Wal, count: u64) {
    for _ in 0..count {
        let expected = wal.last_lsn() + 1;
        let lsn = wal.append_blocking(payload(expected)).expect("append");
        assert_eq!(lsn, expected);
    }
}

pub fn segment_file(dir: &Path, first_lsn: Lsn) -> PathBuf {
    minitrue_wal::segment_path(dir, first_lsn)
}

/// The segment files in `dir`, by name.
pub fn segment_names(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .expect("read dir")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".wal"))
        .collect();
    names.sort();
    names
}

/// Byte offset of the frame of the `index`-th record (0-based) in a segment written with
/// `payload(first_lsn + i)` for each record.
pub fn frame_offset(first_lsn: Lsn, index: u64) -> usize {
    let mut offset = 24;
    for i in 0..index {
        offset += 20 + payload(first_lsn + i).len();
    }
    offset
}
