//! The exact bytes of a segment. Changing them is a format change: bump FORMAT_VERSION and
//! keep a fixture of the old format.

use minitrue_wal::{SyncPolicy, Wal, WalOptions};

/// A segment starting at LSN 1 with records 1 = "hi" and 2 = "wal!".
const TWO_RECORD_SEGMENT: &str = concat!(
    // header: magic "MTRUWAL\0", version 1, first lsn 1, header crc
    "4d54525557414c00",
    "01000000",
    "0100000000000000",
    "a10afe6e",
    // frame: marker, len 2, crc(lsn ‖ len ‖ payload), lsn 1, "hi"
    "e31a57c9",
    "02000000",
    "e9013698",
    "0100000000000000",
    "6869",
    // frame: marker, len 4, crc, lsn 2, "wal!"
    "e31a57c9",
    "04000000",
    "0b6d8dd5",
    "0200000000000000",
    "77616c21",
);

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[test]
fn segment_bytes_snapshot() {
    let dir = tempfile::tempdir().expect("tempdir");
    let options = WalOptions { sync: SyncPolicy::Off, ..WalOptions::default() };
    let (wal, _) = Wal::open(dir.path(), options).expect("open");
    assert_eq!(wal.append_blocking(b"hi".to_vec()).expect("append"), 1);
    assert_eq!(wal.append_blocking(b"wal!".to_vec()).expect("append"), 2);
    wal.close().expect("close");
    let bytes = std::fs::read(dir.path().join("00000000000000000001.wal")).expect("read");
    assert_eq!(hex(&bytes), TWO_RECORD_SEGMENT);
}

#[test]
fn snapshot_scans_as_two_records() {
    let bytes: Vec<u8> = (0..TWO_RECORD_SEGMENT.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&TWO_RECORD_SEGMENT[i..i + 2], 16).expect("hex"))
        .collect();
    let scan = minitrue_wal::scan_segment_bytes(&bytes).expect("valid header");
    assert_eq!(scan.first_lsn, 1);
    assert_eq!(scan.records, 2);
    assert_eq!(scan.last_record_lsn, Some(2));
    assert!(scan.corrupt.is_empty());
    assert_eq!(scan.invalid_tail, None);
}
