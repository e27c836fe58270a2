//! Appending, replaying, reopening, rotation, removal and sync policies on real files.

mod support;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use minitrue_common::ErrorKind;
use minitrue_wal::{RecoveryReport, SyncPolicy, Wal, WalError, WalOptions};
use support::*;

#[test]
fn append_replay_reopen_round_trip() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (wal, report) = Wal::open(dir.path(), no_sync()).expect("open");
    assert_eq!(report, RecoveryReport::default());
    assert_eq!(wal.last_lsn(), 0);
    append_n(&wal, 10);
    assert_eq!(wal.last_lsn(), 10);

    let records = replay_all(&wal, 0);
    assert_eq!(lsns(&records), (1..=10).collect::<Vec<_>>());
    for record in &records {
        assert_eq!(record.payload, payload(record.lsn));
    }
    assert_eq!(lsns(&replay_all(&wal, 4)), (5..=10).collect::<Vec<_>>());
    assert!(replay_all(&wal, 10).is_empty());
    assert!(replay_all(&wal, u64::MAX).is_empty());
    wal.close().expect("close");
    wal.close().expect("second close is a no-op");
    let error = wal.append_blocking(b"late".to_vec()).expect_err("closed");
    assert!(matches!(error, WalError::Closed));
    assert_eq!(error.kind(), ErrorKind::ShuttingDown);
    drop(wal);

    let (wal, report) = Wal::open(dir.path(), no_sync()).expect("reopen");
    assert_eq!(report.segments, 1);
    assert_eq!(report.records, 10);
    assert_eq!(report.last_lsn, 10);
    assert_eq!(report.torn_tail_bytes, 0);
    assert!(report.corrupt.is_empty());
    assert_eq!(wal.last_lsn(), 10);
    assert_eq!(wal.append_blocking(payload(11)).expect("append"), 11);
    // Appends after reopening go to a fresh segment.
    assert_eq!(segment_names(dir.path()).len(), 2);
    let records = replay_all(&wal, 0);
    assert_eq!(lsns(&records), (1..=11).collect::<Vec<_>>());
    assert_eq!(lsns(&replay_all(&wal, 10)), vec![11]);
    assert_eq!(lsns(&replay_all(&wal, 9)), vec![10, 11]);
}

#[test]
fn replay_sees_records_appended_before_the_call_only() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (wal, _) = Wal::open(dir.path(), no_sync()).expect("open");
    append_n(&wal, 3);
    let replay = wal.replay(0).expect("replay");
    append_n(&wal, 3);
    let seen: Vec<u64> = replay.map(|r| r.expect("record").lsn).collect();
    assert_eq!(seen, vec![1, 2, 3]);
}

#[test]
fn dropping_the_wal_closes_it_and_keeps_records() {
    let dir = tempfile::tempdir().expect("tempdir");
    {
        let (wal, _) = Wal::open(dir.path(), WalOptions::default()).expect("open");
        append_n(&wal, 5);
    }
    let (wal, report) = Wal::open(dir.path(), WalOptions::default()).expect("reopen");
    assert_eq!(report.records, 5);
    assert_eq!(lsns(&replay_all(&wal, 0)), vec![1, 2, 3, 4, 5]);
}

#[test]
fn rotation_by_size_and_on_request() {
    let dir = tempfile::tempdir().expect("tempdir");
    // Header 24 + two frames of 20 + 50 = 164 bytes; a third frame would exceed 200.
    let options = WalOptions { segment_max_bytes: 200, ..no_sync() };
    let (wal, _) = Wal::open(dir.path(), options.clone()).expect("open");
    for expected in 1..=10u64 {
        assert_eq!(wal.append_blocking(vec![expected as u8; 50]).expect("append"), expected);
    }
    assert_eq!(
        segment_names(dir.path()),
        [1, 3, 5, 7, 9].map(|first_lsn| format!("{first_lsn:020}.wal"))
    );
    let stats = wal.stats();
    assert_eq!(stats.segments, 5);
    assert_eq!(stats.current_segment_bytes, 164);
    assert_eq!(stats.total_bytes, 5 * 164);

    // A record larger than a whole segment gets a segment of its own.
    assert_eq!(wal.append_blocking(vec![0xAB; 500]).expect("big append"), 11);
    assert_eq!(wal.append_blocking(vec![0xCD; 5]).expect("append"), 12);
    assert_eq!(wal.stats().segments, 7);

    assert_eq!(wal.rotate().expect("rotate"), 12);
    assert_eq!(wal.rotate().expect("rotating an empty segment is a no-op"), 12);
    assert_eq!(wal.stats().segments, 8);
    let records = replay_all(&wal, 0);
    assert_eq!(lsns(&records), (1..=12).collect::<Vec<_>>());
    assert_eq!(records[10].payload, vec![0xAB; 500]);
    assert_eq!(lsns(&replay_all(&wal, 8)), (9..=12).collect::<Vec<_>>());
    drop(wal);

    let (wal, report) = Wal::open(dir.path(), options).expect("reopen");
    assert_eq!(report.segments, 8);
    assert_eq!(report.records, 12);
    // The empty last segment (created by the rotation) is reused rather than adding another.
    assert_eq!(wal.stats().segments, 8);
    assert_eq!(wal.append_blocking(b"x".to_vec()).expect("append"), 13);
}

#[test]
fn remove_through_deletes_only_covered_closed_segments() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (wal, _) = Wal::open(dir.path(), no_sync()).expect("open");
    append_n(&wal, 10);
    assert_eq!(wal.rotate().expect("rotate"), 10);
    append_n(&wal, 10);
    assert_eq!(wal.rotate().expect("rotate"), 20);
    append_n(&wal, 10);
    assert_eq!(wal.rotate().expect("rotate"), 30);
    append_n(&wal, 5); // 31..=35 in the active segment
    assert_eq!(wal.stats().segments, 4);

    assert_eq!(wal.remove_through(9).expect("remove"), 0);
    assert_eq!(wal.remove_through(15).expect("remove"), 1);
    assert!(!segment_file(dir.path(), 1).exists());
    assert!(segment_file(dir.path(), 11).exists());
    assert_eq!(lsns(&replay_all(&wal, 15)), (16..=35).collect::<Vec<_>>());
    assert_eq!(lsns(&replay_all(&wal, 0)), (11..=35).collect::<Vec<_>>());

    assert_eq!(wal.remove_through(20).expect("remove"), 1);
    // Never the active segment, even when `through` covers all of it.
    assert_eq!(wal.remove_through(1_000).expect("remove"), 1);
    assert_eq!(segment_names(dir.path()), vec![format!("{:020}.wal", 31)]);
    assert_eq!(lsns(&replay_all(&wal, 0)), (31..=35).collect::<Vec<_>>());
    assert_eq!(wal.stats().segments, 1);
    drop(wal);

    let (wal, report) = Wal::open(dir.path(), no_sync()).expect("reopen");
    assert_eq!(report.records, 5);
    assert_eq!(wal.append_blocking(b"next".to_vec()).expect("append"), 36);
}

#[test]
fn lsns_never_go_back_when_every_segment_is_gone() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (wal, _) = Wal::open(dir.path(), no_sync()).expect("open");
    append_n(&wal, 41);
    drop(wal);
    for name in segment_names(dir.path()) {
        std::fs::remove_file(dir.path().join(name)).expect("remove");
    }
    // Storage flushed through 41 and says so.
    let (wal, report) = Wal::open_after(dir.path(), no_sync(), 42).expect("open after");
    assert_eq!(report.last_lsn, 41);
    assert_eq!(wal.last_lsn(), 41);
    assert_eq!(wal.append_blocking(b"a".to_vec()).expect("append"), 42);
    drop(wal);

    // The empty-but-named active segment alone keeps LSNs going up, too.
    let (wal, _) = Wal::open(dir.path(), no_sync()).expect("reopen");
    let lsn = wal.rotate().expect("rotate");
    assert_eq!(lsn, 42);
    drop(wal);
    wal_remove_all_but_newest(dir.path());
    let (wal, report) = Wal::open(dir.path(), no_sync()).expect("reopen");
    assert_eq!(report.records, 0);
    assert_eq!(wal.append_blocking(b"b".to_vec()).expect("append"), 43);

    // A smaller min_next_lsn than the directory knows does not move LSNs back.
    drop(wal);
    let (wal, _) = Wal::open_after(dir.path(), no_sync(), 5).expect("reopen");
    assert_eq!(wal.append_blocking(b"c".to_vec()).expect("append"), 44);
}

/// Deletes every segment but the newest (an empty one named after the next LSN).
fn wal_remove_all_but_newest(dir: &std::path::Path) {
    let names = segment_names(dir);
    for name in &names[..names.len() - 1] {
        std::fs::remove_file(dir.join(name)).expect("remove");
    }
}

#[test]
fn too_large_append_is_rejected_and_the_wal_stays_usable() {
    let dir = tempfile::tempdir().expect("tempdir");
    let options = WalOptions { max_record_bytes: 100, ..no_sync() };
    let (wal, _) = Wal::open(dir.path(), options).expect("open");
    let error = wal.append_blocking(vec![0; 101]).expect_err("too large");
    assert!(matches!(error, WalError::RecordTooLarge { len: 101, max: 100 }));
    assert_eq!(error.kind(), ErrorKind::InvalidInput);
    assert_eq!(wal.append_blocking(vec![1; 100]).expect("append"), 1);
    assert_eq!(wal.append_blocking(Vec::new()).expect("empty payload"), 2);
    let records = replay_all(&wal, 0);
    assert_eq!(records[0].payload, vec![1; 100]);
    assert!(records[1].payload.is_empty());

    let options = WalOptions { max_record_bytes: u32::MAX, ..no_sync() };
    let error = Wal::open(dir.path(), options).expect_err("over the format limit");
    assert_eq!(error.kind(), ErrorKind::InvalidInput);
}

#[test]
fn group_commit_shares_fsyncs_between_threads() {
    const THREADS: u64 = 16;
    const PER_THREAD: u64 = 200;
    let dir = tempfile::tempdir().expect("tempdir");
    let (wal, _) = Wal::open(dir.path(), WalOptions::default()).expect("open");
    let wal = Arc::new(wal);
    let handles: Vec<_> = (0..THREADS)
        .map(|thread| {
            let wal = wal.clone();
            std::thread::spawn(move || {
                (0..PER_THREAD)
                    .map(|i| {
                        let payload = format!("thread {thread} record {i}").into_bytes();
                        (wal.append_blocking(payload.clone()).expect("append"), payload)
                    })
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    let mut appended = BTreeMap::new();
    for handle in handles {
        for (lsn, payload) in handle.join().expect("thread") {
            assert!(appended.insert(lsn, payload).is_none(), "lsn {lsn} assigned twice");
        }
    }
    let total = THREADS * PER_THREAD;
    assert_eq!(appended.keys().copied().collect::<Vec<_>>(), (1..=total).collect::<Vec<_>>());

    let stats = wal.stats();
    eprintln!("group commit: {total} records, {} fsyncs", stats.fsyncs);
    assert_eq!(stats.records_appended, total);
    assert!(stats.fsyncs < total / 2, "{} fsyncs for {total} records", stats.fsyncs);
    assert_eq!(stats.fsyncs, stats.group_commit_batches);

    let replayed = replay_all(&wal, 0);
    assert_eq!(replayed.len() as u64, total);
    for record in replayed {
        assert_eq!(appended.get(&record.lsn), Some(&record.payload));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn async_appends_group_commit_and_order() {
    const TASKS: u64 = 64;
    const PER_TASK: u64 = 25;
    let dir = tempfile::tempdir().expect("tempdir");
    let (wal, _) = Wal::open(dir.path(), WalOptions::default()).expect("open");
    let wal = Arc::new(wal);
    let tasks: Vec<_> = (0..TASKS)
        .map(|task| {
            let wal = wal.clone();
            tokio::spawn(async move {
                let mut previous = 0;
                for i in 0..PER_TASK {
                    let lsn = wal.append(format!("{task}/{i}").into_bytes()).await.expect("append");
                    assert!(lsn > previous, "one task's appends get increasing lsns");
                    previous = lsn;
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.expect("task");
    }
    let total = TASKS * PER_TASK;
    assert_eq!(wal.last_lsn(), total);
    let stats = wal.stats();
    eprintln!("async group commit: {total} records, {} fsyncs", stats.fsyncs);
    assert!(stats.fsyncs < total / 2, "{} fsyncs for {total} records", stats.fsyncs);
    let wal2 = wal.clone();
    let replayed = tokio::task::spawn_blocking(move || replay_all(&wal2, 0)).await.expect("join");
    assert_eq!(lsns(&replayed), (1..=total).collect::<Vec<_>>());
}

#[tokio::test]
async fn dropped_append_future_still_writes_the_record() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (wal, _) = Wal::open(dir.path(), WalOptions::default()).expect("open");
    {
        let future = std::pin::pin!(wal.append(b"abandoned".to_vec()));
        // Poll once so the record reaches the writer, then drop the future.
        let _ = futures_poll_once(future).await;
    }
    let lsn = wal.append(b"next".to_vec()).await.expect("append");
    assert_eq!(lsn, 2, "the abandoned append took lsn 1");
    let payloads: Vec<Vec<u8>> = replay_all(&wal, 0).into_iter().map(|r| r.payload).collect();
    assert_eq!(payloads, vec![b"abandoned".to_vec(), b"next".to_vec()]);
}

/// Polls a future exactly once.
async fn futures_poll_once<F: std::future::Future + Unpin>(mut future: F) -> Option<F::Output> {
    std::future::poll_fn(|cx| {
        std::task::Poll::Ready(match std::pin::Pin::new(&mut future).poll(cx) {
            std::task::Poll::Ready(output) => Some(output),
            std::task::Poll::Pending => None,
        })
    })
    .await
}

#[test]
fn off_policy_never_fsyncs() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (wal, _) = Wal::open(dir.path(), no_sync()).expect("open");
    append_n(&wal, 500);
    wal.close().expect("close");
    let stats = wal.stats();
    assert_eq!(stats.fsyncs, 0);
    assert_eq!(stats.records_appended, 500);
    assert!(stats.group_commit_batches <= 500);
}

#[test]
fn interval_policy_fsyncs_in_the_background() {
    let dir = tempfile::tempdir().expect("tempdir");
    let options = WalOptions {
        sync: SyncPolicy::Interval(Duration::from_millis(20)),
        ..WalOptions::default()
    };
    let (wal, _) = Wal::open(dir.path(), options).expect("open");
    append_n(&wal, 50);
    let deadline = Instant::now() + Duration::from_secs(10);
    while wal.stats().fsyncs == 0 {
        assert!(Instant::now() < deadline, "no interval fsync within 10 s");
        std::thread::sleep(Duration::from_millis(5));
    }
    // Once synced and idle, the writer does not keep fsyncing.
    let after_first = wal.stats().fsyncs;
    assert!(after_first <= 2, "{after_first} fsyncs");
    assert_eq!(lsns(&replay_all(&wal, 0)), (1..=50).collect::<Vec<_>>());
}

#[test]
fn interval_policy_does_not_fsync_per_append_and_close_syncs() {
    let dir = tempfile::tempdir().expect("tempdir");
    let options = WalOptions {
        sync: SyncPolicy::Interval(Duration::from_secs(3600)),
        ..WalOptions::default()
    };
    let (wal, _) = Wal::open(dir.path(), options).expect("open");
    append_n(&wal, 100);
    assert_eq!(wal.stats().fsyncs, 0);
    wal.close().expect("close");
    assert_eq!(wal.stats().fsyncs, 1);
}

#[test]
fn every_batch_fsyncs_each_batch() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (wal, _) = Wal::open(dir.path(), WalOptions::default()).expect("open");
    append_n(&wal, 20);
    let stats = wal.stats();
    // One appender: every append is its own batch.
    assert_eq!(stats.fsyncs, 20);
    assert_eq!(stats.group_commit_batches, 20);
    assert_eq!(stats.bytes_appended, (0..20).map(|i| 20 + payload(i + 1).len() as u64).sum());
}
