//! Measures `Engine::aggregate` over B5's data (100 temperature sensors × 1 week at 1 Hz,
//! 60.48 M points, a flush per simulated day, local file store), with stored aggregates and,
//! as the reference measured in the same run, with every chunk decoded. Also reports the
//! size and load time of the footer's segment index.
//!
//! ```sh
//! cargo run --release -p minitrue-storage --example aggregate_week [devices] [days] [page rows]
//! ```
//!
//! `page rows` (default: the engine's, 64 Ki) bounds what decoding a range edge costs: a
//! partial segment still decodes the Parquet pages holding it.

use std::sync::Arc;
use std::time::Instant;

use minitrue_common::{Point, SeriesKey, TimeRange};
use minitrue_storage::{
    AggregateOutput, AggregateRequest, Engine, EngineConfig, SeriesFilter, SyncPolicy, TimeBuckets,
};

const SECOND: i64 = 1_000_000_000;
const MINUTE: i64 = 60 * SECOND;
const HOUR: i64 = 60 * MINUTE;
const DAY: i64 = 24 * HOUR;
/// 2024-01-01T00:00:00Z, as in B5.
const START: i64 = 1_704_067_200 * SECOND;

#[derive(Debug)]
struct Hourly;

impl TimeBuckets for Hourly {
    fn buckets(&self, times: &[i64]) -> minitrue_storage::Result<Vec<i64>> {
        Ok(times.iter().map(|t| t.div_euclid(HOUR) * HOUR).collect())
    }
}

/// The smart-city temperature walk of B5 (xorshift, 2 decimals).
fn walk(device: usize) -> impl FnMut() -> f64 {
    let mut state = 0x9E37_79B9_7F4A_7C15u64 ^ (device as u64 + 1);
    let mut level = 21.0 + (device % 7) as f64 * 0.5;
    move || {
        state ^= state >> 12;
        state ^= state << 25;
        state ^= state >> 27;
        let uniform =
            (state.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 11) as f64 / (1u64 << 53) as f64;
        level += 0.04 * (uniform - 0.5);
        (level * 100.0).round() / 100.0
    }
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> minitrue_storage::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let devices: usize = args.get(1).and_then(|a| a.parse().ok()).unwrap_or(100);
    let days: i64 = args.get(2).and_then(|a| a.parse().ok()).unwrap_or(7);
    let page_rows: Option<usize> = args.get(3).and_then(|a| a.parse().ok());
    let dir =
        tempfile::tempdir().map_err(|e| minitrue_storage::StorageError::Task(e.to_string()))?;
    let mut config = EngineConfig::new(dir.path());
    config.background_interval = None;
    config.wal.sync = SyncPolicy::Off;
    config.flush_memtable_bytes = usize::MAX;
    if let Some(page_rows) = page_rows {
        config.page_rows = page_rows;
    }
    let (engine, _) = Engine::open(config).await?;

    let started = Instant::now();
    let keys: Vec<SeriesKey> = (0..devices)
        .map(|d| SeriesKey::new(&format!("sensor_{d:05}"), "temperature").unwrap())
        .collect();
    let mut walks: Vec<_> = (0..devices).map(walk).collect();
    for hour in 0..days * 24 {
        let mut points = Vec::with_capacity(devices * 3600);
        for (key, next) in keys.iter().zip(walks.iter_mut()) {
            for s in 0..3600 {
                points.push(Point::new(key.clone(), START + hour * HOUR + s * SECOND, next()));
            }
        }
        for chunk in points.chunks(64 * 1024) {
            engine.write(chunk).await?;
        }
        if (hour + 1) % 24 == 0 {
            engine.flush().await?;
        }
    }
    let end = START + days * DAY;
    let points = devices as i64 * days * DAY / SECOND;
    let bytes: u64 = engine.files().iter().map(|file| file.size_bytes).sum();
    println!(
        "loaded {points} points in {:.1} s: {} files, {bytes} bytes ({:.3} B/point), {} rows \
         per page",
        started.elapsed().as_secs_f64(),
        engine.files().len(),
        bytes as f64 / points as f64,
        page_rows.map_or("default".to_string(), |rows| rows.to_string()),
    );
    footer_report(dir.path(), &engine);

    let middle_day = START + days / 2 * DAY;
    let cases: Vec<(&str, TimeRange, bool)> = vec![
        ("(a) avg, the whole week (B5 a)", TimeRange::new(START, end - 1), false),
        (
            "(a′) avg, time > now() - 7 days (cuts a file at 13:37:11)",
            TimeRange::new(START + 13 * HOUR + 37 * MINUTE + 11 * SECOND, end - 1),
            false,
        ),
        (
            "(d) hourly avg per sensor, one day (B5 d)",
            TimeRange::new(middle_day, middle_day + DAY - 1),
            true,
        ),
        (
            "(d′) hourly avg per sensor, last 24 h from 00:23",
            TimeRange::new(end - DAY + 23 * MINUTE, end - 1),
            true,
        ),
    ];
    for (name, time, hourly) in cases {
        let request = |use_chunk_aggregates| AggregateRequest {
            series: SeriesFilter {
                metrics: Some(vec!["temperature".into()]),
                ..SeriesFilter::all()
            },
            time,
            buckets: hourly.then(|| Arc::new(Hourly) as Arc<dyn TimeBuckets>),
            use_chunk_aggregates,
        };
        let (fast_ms, fast) = timed(&engine, request(true), 20).await?;
        let (slow_ms, slow) = timed(&engine, request(false), 2).await?;
        assert_eq!(fast.groups.len(), slow.groups.len());
        for (a, b) in fast.groups.iter().zip(&slow.groups) {
            assert_eq!(a.value.sum.to_f64().to_bits(), b.value.sum.to_f64().to_bits());
        }
        println!(
            "{name}: {fast_ms:.2} ms (p50) vs {slow_ms:.1} ms decoding everything = {:.4}; \
             {} groups, chunks_from_stats {}, segments_from_stats {}, points_from_stats {}, \
             points_decoded {}",
            fast_ms / slow_ms,
            fast.groups.len(),
            fast.chunks_from_stats,
            fast.segments_from_stats,
            fast.points_from_stats,
            fast.points_decoded,
        );
    }
    engine.close().await?;
    Ok(())
}

/// Median wall time of `runs` runs (after one warm-up) and the last output.
async fn timed(
    engine: &Engine,
    request: AggregateRequest,
    runs: usize,
) -> minitrue_storage::Result<(f64, AggregateOutput)> {
    let mut output = engine.aggregate(request.clone()).await?;
    let mut times = Vec::with_capacity(runs);
    for _ in 0..runs {
        let started = Instant::now();
        output = engine.aggregate(request.clone()).await?;
        times.push(started.elapsed().as_secs_f64() * 1e3);
    }
    times.sort_by(f64::total_cmp);
    Ok((times[times.len() / 2], output))
}

/// Bytes of the segment index in each file's footer and the time to load it.
fn footer_report(dir: &std::path::Path, engine: &Engine) {
    use parquet::arrow::arrow_reader::{ArrowReaderMetadata, ArrowReaderOptions};
    use parquet::file::metadata::PageIndexPolicy;
    let mut total_bytes = 0usize;
    let mut total_segments = 0usize;
    let mut load_ms = 0.0;
    let mut segments_ms = 0.0;
    let files = engine.files();
    for meta in &files {
        let bytes = std::fs::read(dir.join("store").join(&meta.path)).unwrap();
        let bytes = bytes::Bytes::from(bytes);
        let started = Instant::now();
        let options = ArrowReaderOptions::new().with_page_index_policy(PageIndexPolicy::Optional);
        let reader_meta = ArrowReaderMetadata::load(&bytes, options).unwrap();
        let kv = reader_meta.metadata().file_metadata().key_value_metadata().cloned();
        let file = minitrue_storage::file_format::DataFile::from_footer(
            &meta.path,
            bytes.len() as u64,
            reader_meta,
        )
        .unwrap();
        load_ms += started.elapsed().as_secs_f64() * 1e3;
        let text = kv
            .unwrap_or_default()
            .into_iter()
            .find(|entry| entry.key == minitrue_storage::segments::SEGMENTS_KEY)
            .and_then(|entry| entry.value);
        let Some(text) = text else { continue };
        total_bytes += text.len();
        let index = file.index.segment_index().unwrap();
        total_segments += index.len();
        let chunks: Vec<(u64, TimeRange)> =
            file.index.iter().map(|(_, s)| (s.rows, s.time)).collect();
        let started = Instant::now();
        minitrue_storage::segments::SegmentIndex::decode(&meta.path, &text, &chunks).unwrap();
        segments_ms += started.elapsed().as_secs_f64() * 1e3;
    }
    println!(
        "footers: {} files, {total_segments} segments, {total_bytes} bytes of segment index \
         ({:.1} B/segment); loading all footers {load_ms:.1} ms, of which segment indexes \
         {segments_ms:.1} ms",
        files.len(),
        total_bytes as f64 / total_segments.max(1) as f64
    );
}
