//! WAL append throughput under `EveryBatch` (group commit) with 1, 8 and 64 concurrent
//! appenders of 4 KiB records, each measured beside a reference in the same run: one thread
//! doing raw `write_all` + `sync_data` of the same bytes, grouped into the same number of
//! batches as the WAL produced. The ratio shows what the WAL costs over the disk itself
//! (1.0 = no cost). Rounds alternate which side runs first and the table shows medians,
//! because fsync latency on shared virtual disks varies by an order of magnitude.
//!
//! Run: `cargo run --release -p minitrue-wal --example wal_throughput [per_appender] [rounds]`
//! (defaults 500 and 5). The data goes to temporary directories under `$TMPDIR`.

use std::fs::File;
use std::io::Write;
use std::sync::Arc;
use std::time::{Duration, Instant};

use minitrue_wal::{Wal, WalOptions};

const RECORD_BYTES: usize = 4096;
/// Framing added per record (see `minitrue_wal::format`).
const FRAME_OVERHEAD: usize = 20;

struct Measurement {
    records: u64,
    elapsed: Duration,
    fsyncs: u64,
    batches: u64,
}

fn run_wal(appenders: u64, per_appender: u64) -> anyhow::Result<Measurement> {
    let dir = tempfile::tempdir()?;
    let (wal, _) = Wal::open(dir.path(), WalOptions::default())?;
    let wal = Arc::new(wal);
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    let started = Instant::now();
    runtime.block_on(async {
        let tasks: Vec<_> = (0..appenders)
            .map(|appender| {
                let wal = wal.clone();
                tokio::spawn(async move {
                    for i in 0..per_appender {
                        let payload = vec![(appender + i) as u8; RECORD_BYTES];
                        wal.append(payload).await?;
                    }
                    Ok::<_, minitrue_wal::WalError>(())
                })
            })
            .collect();
        for task in tasks {
            task.await??;
        }
        Ok::<_, anyhow::Error>(())
    })?;
    let elapsed = started.elapsed();
    let stats = wal.stats();
    wal.close()?;
    Ok(Measurement {
        records: stats.records_appended,
        elapsed,
        fsyncs: stats.fsyncs,
        batches: stats.group_commit_batches,
    })
}

/// The same bytes written by one thread in `batches` writes, each followed by `sync_data`.
fn run_reference(records: u64, batches: u64) -> anyhow::Result<Duration> {
    let dir = tempfile::tempdir()?;
    let mut file = File::create(dir.path().join("reference"))?;
    let frame = vec![0x5Au8; RECORD_BYTES + FRAME_OVERHEAD];
    let started = Instant::now();
    let mut written = 0;
    for batch in 0..batches {
        // Spread the records over the batches as evenly as the WAL did on average.
        let upto = records * (batch + 1) / batches;
        let mut buf = Vec::with_capacity(((upto - written) as usize) * frame.len());
        for _ in written..upto {
            buf.extend_from_slice(&frame);
        }
        written = upto;
        file.write_all(&buf)?;
        file.sync_data()?;
    }
    Ok(started.elapsed())
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

fn main() -> anyhow::Result<()> {
    let per_appender: u64 = match std::env::args().nth(1) {
        Some(arg) => arg.parse()?,
        None => 500,
    };
    let rounds: usize = match std::env::args().nth(2) {
        Some(arg) => arg.parse()?,
        None => 5,
    };
    println!(
        "WAL append throughput, EveryBatch, {RECORD_BYTES}-byte records, {per_appender} per \
         appender, median of {rounds} rounds alternating WAL and reference"
    );
    println!();
    println!(
        "| appenders | records | appends/s | MB/s | records/fsync | reference appends/s | \
         WAL / reference |"
    );
    println!("|---:|---:|---:|---:|---:|---:|---:|");
    for appenders in [1u64, 8, 64] {
        // A warm-up run tells the reference how many batches the WAL makes.
        let mut batches = run_wal(appenders, per_appender)?.batches.max(1);
        let mut wal_rates = Vec::new();
        let mut reference_rates = Vec::new();
        let mut ratios = Vec::new();
        let mut group_sizes = Vec::new();
        let records = appenders * per_appender;
        for round in 0..rounds {
            // Alternate which side goes first, so that slow phases of a noisy disk (and the
            // deletion of the previous run's files) hit both sides alike.
            let (wal, reference) = if round % 2 == 0 {
                let wal = run_wal(appenders, per_appender)?;
                (wal, run_reference(records, batches)?)
            } else {
                let reference = run_reference(records, batches)?;
                (run_wal(appenders, per_appender)?, reference)
            };
            batches = wal.batches.max(1);
            let wal_rate = wal.records as f64 / wal.elapsed.as_secs_f64();
            let reference_rate = records as f64 / reference.as_secs_f64();
            wal_rates.push(wal_rate);
            reference_rates.push(reference_rate);
            ratios.push(wal_rate / reference_rate);
            group_sizes.push(wal.records as f64 / wal.fsyncs.max(1) as f64);
        }
        let wal_rate = median(wal_rates);
        println!(
            "| {appenders} | {records} | {wal_rate:.0} | {:.2} | {:.1} | {:.0} | {:.2} |",
            wal_rate * (RECORD_BYTES + FRAME_OVERHEAD) as f64 / 1e6,
            median(group_sizes),
            median(reference_rates),
            median(ratios),
        );
    }
    Ok(())
}
