//! `Engine::aggregate` from stored chunk and segment aggregates: bit-identical to decoding
//! everything and to aggregating what `Engine::scan` returns, and decoding little.

mod common;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use common::*;
use minitrue_common::{Point, TimeRange};
use minitrue_storage::{
    AggregateOutput, AggregateRequest, DeleteRequest, Engine, SeriesFilter, TimeBuckets,
    ValueAggregate,
};
use proptest::prelude::*;

const MINUTE: i64 = 60 * SECOND;
const HOUR: i64 = 60 * MINUTE;
const DAY: i64 = 24 * HOUR;
/// An hour boundary (UTC) near `T0`.
const H0: i64 = T0 / HOUR * HOUR;

/// Buckets of a fixed width aligned to `origin`, like `date_bin`.
#[derive(Debug)]
struct Fixed {
    width: i64,
    origin: i64,
}

impl TimeBuckets for Fixed {
    fn buckets(&self, times: &[i64]) -> minitrue_storage::Result<Vec<i64>> {
        Ok(times
            .iter()
            .map(|&t| (t - self.origin).div_euclid(self.width) * self.width + self.origin)
            .collect())
    }
}

fn request(
    series: SeriesFilter,
    time: TimeRange,
    buckets: Option<Arc<dyn TimeBuckets>>,
    use_chunk_aggregates: bool,
) -> AggregateRequest {
    AggregateRequest { series, time, buckets, use_chunk_aggregates }
}

fn hourly() -> Option<Arc<dyn TimeBuckets>> {
    Some(Arc::new(Fixed { width: HOUR, origin: 0 }))
}

/// `(device, metric, bucket)` → (count, sum bits, min bits, max bits).
type Summary = BTreeMap<(String, String, Option<i64>), (u64, u64, u64, u64)>;

fn summary(output: &AggregateOutput) -> Summary {
    output
        .groups
        .iter()
        .map(|group| {
            let key = (
                group.series.device_id().to_string(),
                group.series.metric().to_string(),
                group.bucket,
            );
            (key, bits(&group.value))
        })
        .collect()
}

fn bits(value: &ValueAggregate) -> (u64, u64, u64, u64) {
    (value.count, value.sum.to_f64().to_bits(), value.min.to_bits(), value.max.to_bits())
}

/// The aggregate of what a scan returns.
async fn from_scan(engine: &Engine, request: &AggregateRequest) -> Summary {
    let rows = scan_map(engine, request.series.clone(), request.time).await;
    let mut groups: BTreeMap<(String, String, Option<i64>), ValueAggregate> = BTreeMap::new();
    for ((device, metric, time), value) in rows {
        let bucket = request.buckets.as_ref().map(|buckets| buckets.buckets(&[time]).unwrap()[0]);
        groups.entry((device, metric, bucket)).or_default().add(f64::from_bits(value));
    }
    groups.into_iter().map(|(key, value)| (key, bits(&value))).collect()
}

/// Runs `request` with and without stored aggregates and through a scan; all must agree.
async fn check(engine: &Engine, request: AggregateRequest) -> AggregateOutput {
    let fast = engine.aggregate(request.clone()).await.unwrap();
    let slow =
        engine.aggregate(AggregateRequest { use_chunk_aggregates: false, ..request.clone() }).await;
    let slow = slow.unwrap();
    assert_eq!(summary(&fast), summary(&slow), "{request:?}");
    assert_eq!(summary(&fast), from_scan(engine, &request).await, "{request:?}");
    assert_eq!(slow.chunks_from_stats + slow.segments_from_stats + slow.points_from_stats, 0);
    assert_eq!(fast.points_from_stats + fast.points_decoded, slow.points_decoded, "{request:?}");
    fast
}

async fn memory_engine(dir: &std::path::Path, partition: Option<Duration>) -> Arc<Engine> {
    let mut config = config(dir);
    config.object_store_url = Some("memory://".to_string());
    config.partition = partition;
    config.page_rows = 1024;
    open(config).await
}

/// One point per second of `device`/`temperature` over `[from, to)`, 2-decimal values.
fn per_second(device: &str, from: i64, to: i64) -> Vec<Point> {
    (from / SECOND..to / SECOND)
        .map(|s| point(device, "temperature", s * SECOND, ((2000 + s * 37 % 900) as f64) / 100.0))
        .collect()
}

#[tokio::test]
async fn hourly_buckets_over_a_multi_hour_file_use_segments() {
    let dir = tempfile::tempdir().unwrap();
    let engine = memory_engine(dir.path(), None).await;
    // Six hours from half past: seven hour buckets, the first and last half full.
    engine.write(&per_second("a", H0 - 30 * MINUTE, H0 + 330 * MINUTE)).await.unwrap();
    engine.write(&per_second("b", H0 - 30 * MINUTE, H0 + 330 * MINUTE)).await.unwrap();
    engine.flush().await.unwrap();
    let output = check(&engine, request(SeriesFilter::all(), TimeRange::ALL, hourly(), true)).await;
    assert_eq!(output.groups.len(), 2 * 7);
    assert_eq!(output.points_decoded, 0, "{output:?}");
    assert_eq!(output.chunks_from_stats, 0);
    assert_eq!(output.segments_from_stats, 2 * 7);
    // Daily buckets and buckets of whole hours use segments too.
    for width in [DAY, 6 * HOUR] {
        let buckets: Option<Arc<dyn TimeBuckets>> = Some(Arc::new(Fixed { width, origin: 0 }));
        let output =
            check(&engine, request(SeriesFilter::all(), TimeRange::ALL, buckets, true)).await;
        assert_eq!(output.points_decoded, 0, "{width}: {output:?}");
    }
    // Seven-minute buckets cut segments: only the segments holding a bucket edge are decoded.
    let odd: Option<Arc<dyn TimeBuckets>> = Some(Arc::new(Fixed { width: 7 * MINUTE, origin: 0 }));
    let output = check(&engine, request(SeriesFilter::all(), TimeRange::ALL, odd, true)).await;
    assert!(output.points_decoded > 0);
}

#[tokio::test]
async fn a_range_cutting_a_file_decodes_only_its_edge_segments() {
    let dir = tempfile::tempdir().unwrap();
    let engine = memory_engine(dir.path(), None).await;
    engine.write(&per_second("a", H0, H0 + 6 * HOUR)).await.unwrap();
    engine.flush().await.unwrap();
    let time = TimeRange::new(H0 + HOUR + 17 * MINUTE, H0 + 4 * HOUR + 3 * MINUTE);
    let output = check(&engine, request(SeriesFilter::all(), time, None, true)).await;
    // 43 minutes of the second hour and 3 minutes and a second of the fifth.
    assert_eq!(output.points_decoded, 43 * 60 + 3 * 60 + 1, "{output:?}");
    assert_eq!(output.segments_from_stats, 2);
    assert_eq!(output.points_from_stats, 2 * 3600);
    // The same with hourly buckets.
    let output = check(&engine, request(SeriesFilter::all(), time, hourly(), true)).await;
    assert_eq!(output.points_decoded, 43 * 60 + 3 * 60 + 1, "{output:?}");
}

#[tokio::test]
async fn overlapping_writes_and_deletes_stop_only_the_segments_they_touch() {
    let dir = tempfile::tempdir().unwrap();
    let engine = memory_engine(dir.path(), None).await;
    engine.write(&per_second("a", H0, H0 + 6 * HOUR)).await.unwrap();
    engine.flush().await.unwrap();
    // Rewrites inside the last hour, in the memtable; a delete inside the second hour.
    let rewrites: Vec<Point> = (0..10)
        .map(|i| point("a", "temperature", H0 + 5 * HOUR + i * 97 * SECOND, -1.0 - i as f64))
        .collect();
    engine.write(&rewrites).await.unwrap();
    engine
        .delete(DeleteRequest {
            device_id: "a".into(),
            metric: None,
            time: TimeRange::new(H0 + HOUR + 5 * SECOND, H0 + HOUR + 9 * SECOND),
        })
        .await
        .unwrap();
    let output = check(&engine, request(SeriesFilter::all(), TimeRange::ALL, None, true)).await;
    assert_eq!(output.segments_from_stats, 4, "{output:?}");
    assert_eq!(output.points_decoded, 2 * 3600 - 5, "{output:?}");
    // Once flushed, the rewrites are a second file overlapping the last hour only.
    engine.flush().await.unwrap();
    let output = check(&engine, request(SeriesFilter::all(), TimeRange::ALL, hourly(), true)).await;
    assert_eq!(output.segments_from_stats, 4, "{output:?}");
    assert_eq!(output.points_decoded, 2 * 3600 - 5, "{output:?}");
}

// ---- random histories --------------------------------------------------------------------

#[derive(Debug, Clone)]
enum Step {
    Write(Vec<(usize, i64, f64)>),
    Flush,
    Compact,
    Delete { device: usize, all_metrics: bool, from: i64, to: i64 },
}

const DEVICES: [&str; 2] = ["d0", "d1"];
const METRICS: [&str; 2] = ["m0", "m1"];

/// Times over four hours around `H0`, often at or next to an hour boundary.
fn any_time() -> impl Strategy<Value = i64> {
    prop_oneof![
        (-1i64..4, -2i64..3).prop_map(|(hour, ns)| H0 + hour * HOUR + ns),
        (-1i64..4, 0i64..3600).prop_map(|(hour, s)| H0 + hour * HOUR + s * SECOND),
        (-HOUR..4 * HOUR).prop_map(|offset| H0 + offset),
    ]
}

fn any_value() -> impl Strategy<Value = f64> {
    prop_oneof![
        4 => (-100_000i64..100_000).prop_map(|m| m as f64 / 100.0),
        1 => Just(f64::NAN),
        1 => Just(-0.0),
        1 => Just(0.0),
        1 => Just(f64::INFINITY),
        1 => Just(f64::NEG_INFINITY),
        2 => any::<f64>(),
        1 => -1e300f64..1e300,
    ]
}

/// Many points per second in a run of one series (so chunks span hours and segments), or a
/// few scattered points.
fn any_write() -> impl Strategy<Value = Vec<(usize, i64, f64)>> {
    prop_oneof![
        (0usize..4, any_time(), 1i64..120, 1usize..400, any_value(), any::<bool>()).prop_map(
            |(series, start, step_s, n, value, steady)| {
                (0..n)
                    .map(|i| {
                        let v = if steady { value } else { value + i as f64 * 0.25 };
                        (series, start + i as i64 * step_s * SECOND, v)
                    })
                    .collect()
            }
        ),
        proptest::collection::vec((0usize..4, any_time(), any_value()), 1..30),
    ]
}

fn any_step() -> impl Strategy<Value = Step> {
    prop_oneof![
        5 => any_write().prop_map(Step::Write),
        3 => Just(Step::Flush),
        1 => Just(Step::Compact),
        1 => (0usize..2, any::<bool>(), any_time(), 0i64..2 * HOUR).prop_map(
            |(device, all_metrics, from, length)| Step::Delete { device, all_metrics, from, to: from + length }
        ),
    ]
}

fn any_query() -> impl Strategy<Value = (Option<usize>, TimeRange, Option<(i64, i64)>)> {
    let range = prop_oneof![
        Just(TimeRange::ALL),
        (any_time(), any_time()).prop_map(|(a, b)| TimeRange::new(a.min(b), a.max(b))),
        (any_time(), 0i64..DAY).prop_map(|(a, length)| TimeRange::new(a, a + length)),
    ];
    let buckets = prop_oneof![
        Just(None),
        Just(Some((MINUTE, 0))),
        Just(Some((HOUR, 0))),
        Just(Some((DAY, 0))),
        Just(Some((7 * MINUTE, 0))),
        (1i64..HOUR).prop_map(|origin| Some((HOUR, origin))),
    ];
    (proptest::option::of(0usize..4), range, buckets)
}

fn series_of(index: usize) -> (&'static str, &'static str) {
    (DEVICES[index / 2], METRICS[index % 2])
}

async fn run_history(
    dir: &std::path::Path,
    partition: Option<Duration>,
    steps: &[Step],
) -> Arc<Engine> {
    let engine = memory_engine(dir, partition).await;
    for step in steps {
        match step {
            Step::Write(points) => {
                let points: Vec<Point> = points
                    .iter()
                    .map(|&(series, time, value)| {
                        let (device, metric) = series_of(series);
                        point(device, metric, time, value)
                    })
                    .collect();
                engine.write(&points).await.unwrap();
            }
            Step::Flush => {
                engine.flush().await.unwrap();
            }
            Step::Compact => {
                engine.compact(true).await.unwrap();
            }
            Step::Delete { device, all_metrics, from, to } => {
                let metric = if *all_metrics { None } else { Some(METRICS[0].to_string()) };
                let delete = DeleteRequest {
                    device_id: DEVICES[*device].to_string(),
                    metric,
                    time: TimeRange::new(*from, *to),
                };
                engine.delete(delete).await.unwrap();
            }
        }
    }
    engine
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn stored_aggregates_change_no_bit(
        partition in prop_oneof![Just(None), Just(Some(Duration::from_secs(6 * 3600)))],
        steps in proptest::collection::vec(any_step(), 1..12),
        queries in proptest::collection::vec(any_query(), 1..6),
    ) {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async {
            let dir = tempfile::tempdir().unwrap();
            let engine = run_history(dir.path(), partition, &steps).await;
            for (series, time, buckets) in &queries {
                let filter = match series {
                    Some(index) => {
                        let (device, metric) = series_of(*index);
                        SeriesFilter::series(device, metric)
                    }
                    None => SeriesFilter::all(),
                };
                let buckets = buckets.map(|(width, origin)| {
                    Arc::new(Fixed { width, origin }) as Arc<dyn TimeBuckets>
                });
                check(&engine, request(filter, *time, buckets, true)).await;
            }
            engine.close().await.unwrap();
        });
    }
}
