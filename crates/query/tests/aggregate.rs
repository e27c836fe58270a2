//! The exact aggregate fast path: the same queries with the fast path on, off, and against a
//! DataFusion `MemTable` holding the same rows, over data with overlapping writes, deletes,
//! memtable + files, and chunks cut by range and bucket edges. Results must be identical to
//! the bit.

mod loopback;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use arrow::array::{Array, AsArray, RecordBatch};
use arrow::datatypes::{DataType, Float64Type};
use arrow::util::display::{ArrayFormatter, FormatOptions};
use datafusion::datasource::MemTable;
use datafusion::physical_plan::{collect, displayable};
use datafusion::prelude::{SessionConfig, SessionContext};
use minitrue_common::TimeRange;
use minitrue_common::{Point, SeriesKey};
use minitrue_query::aggregate::ExactAggregate;
use minitrue_query::{functions, session, QueryOptions};
use minitrue_storage::{
    readings_schema, AggregateRequest, DeleteRequest, Engine, EngineConfig, SeriesFilter,
    SyncPolicy,
};
use tempfile::TempDir;

const SECOND: i64 = 1_000_000_000;
const MINUTE: i64 = 60 * SECOND;
/// 2023-11-14T22:00:00Z, an hour boundary.
const T0: i64 = 1_699_999_200 * SECOND;

type Rows = BTreeMap<(String, String, i64), f64>;

fn point(device: &str, metric: &str, time: i64, value: f64) -> Point {
    Point::new(SeriesKey::new(device, metric).unwrap(), time, value)
}

fn record(expected: &mut Rows, points: &[Point]) {
    for p in points {
        expected.insert(
            (p.series.device_id().to_string(), p.series.metric().to_string(), p.time),
            p.value,
        );
    }
}

fn forget(expected: &mut Rows, device: &str, metric: &str, time: TimeRange) {
    expected.retain(|(d, m, t), _| !(d == device && m == metric && time.contains(*t)));
}

/// A value whose naive summation depends on order: decimals, float artefacts, large and
/// tiny magnitudes.
fn value(device: usize, metric: usize, i: i64) -> f64 {
    match (device + metric + i as usize) % 11 {
        0 => 1e15 + i as f64 * 0.25,
        1 => -1e15 + 0.1,
        2 => 0.1 + 0.2,
        3 => 1e-9 * i as f64,
        _ => 20.0 + ((i * 7 + device as i64) % 50) as f64 / 10.0 + metric as f64,
    }
}

struct Fixture {
    _dir: TempDir,
    engine: Arc<Engine>,
    expected: Rows,
}

/// Three devices × two metrics, one point every 10 s over three hours from T0, written as:
/// hour 0 → file (10-minute partitions: one chunk per series per 10 minutes); a rewrite of
/// 22:20–22:25 for sensor_0 → an overlapping file; hour 1 → file; a delete of sensor_1
/// temperature 22:40–23:05 (a tombstone over files); hour 2 and a few rewrites of flushed
/// points → the memtable. NaN, ±0 and an infinity-free mix of magnitudes are in the data.
async fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let mut config = EngineConfig::new(dir.path());
    config.background_interval = None;
    config.wal.sync = SyncPolicy::Off;
    config.partition = Some(Duration::from_secs(600));
    let (engine, _) = Engine::open(config).await.unwrap();
    let mut expected = Rows::new();
    let metrics = ["temperature", "humidity"];
    let hour = |h: i64| -> Vec<Point> {
        let mut points = Vec::new();
        for d in 0..3 {
            for (m, metric) in metrics.iter().enumerate() {
                for i in (h * 360)..((h + 1) * 360) {
                    let v = value(d, m, i);
                    points.push(point(&format!("sensor_{d}"), metric, T0 + i * 10 * SECOND, v));
                }
            }
        }
        points
    };
    let mut first = hour(0);
    first.push(point("sensor_2", "humidity", T0 + 5 * SECOND, f64::NAN));
    first.push(point("sensor_2", "humidity", T0 + 6 * SECOND, -0.0));
    engine.write(&first).await.unwrap();
    record(&mut expected, &first);
    engine.flush().await.unwrap();

    let rewrite: Vec<Point> = (0..30)
        .map(|i| point("sensor_0", "temperature", T0 + 20 * MINUTE + i * 10 * SECOND, -5.5))
        .collect();
    engine.write(&rewrite).await.unwrap();
    record(&mut expected, &rewrite);
    engine.flush().await.unwrap();

    let second = hour(1);
    engine.write(&second).await.unwrap();
    record(&mut expected, &second);
    engine.flush().await.unwrap();

    let deleted = TimeRange::new(T0 + 40 * MINUTE, T0 + 65 * MINUTE);
    engine
        .delete(DeleteRequest {
            device_id: "sensor_1".into(),
            metric: Some("temperature".into()),
            time: deleted,
        })
        .await
        .unwrap();
    forget(&mut expected, "sensor_1", "temperature", deleted);

    let mut third = hour(2);
    for i in 0..5 {
        third.push(point("sensor_2", "temperature", T0 + 70 * MINUTE + i * 10 * SECOND, 99.25));
    }
    engine.write(&third).await.unwrap();
    record(&mut expected, &third);
    assert!(engine.files().len() >= 3);
    Fixture { _dir: dir, engine, expected }
}

/// A plain DataFusion session over a `MemTable` of the same rows, with MiniTrue's functions
/// (including the exact sum/avg/min/max).
fn reference(expected: &Rows) -> SessionContext {
    let mut config = SessionConfig::new();
    config.options_mut().execution.time_zone = Some("UTC".into());
    let ctx = SessionContext::new_with_config(config);
    let batch = RecordBatch::try_new(
        readings_schema(),
        vec![
            Arc::new(
                arrow::array::TimestampNanosecondArray::from(
                    expected.keys().map(|k| k.2).collect::<Vec<_>>(),
                )
                .with_timezone("UTC"),
            ),
            Arc::new(arrow::array::StringArray::from_iter_values(expected.keys().map(|k| &k.0))),
            Arc::new(arrow::array::StringArray::from_iter_values(expected.keys().map(|k| &k.1))),
            Arc::new(arrow::array::Float64Array::from(
                expected.values().copied().collect::<Vec<_>>(),
            )),
        ],
    )
    .unwrap();
    // Several partitions, so partial aggregates are merged as in a parallel plan.
    let partitions: Vec<Vec<RecordBatch>> = (0..3)
        .map(|k| {
            let n = batch.num_rows();
            vec![batch.slice(k * n / 3, (k + 1) * n / 3 - k * n / 3)]
        })
        .collect();
    let table = MemTable::try_new(readings_schema(), partitions).unwrap();
    ctx.register_table("readings", Arc::new(table)).unwrap();
    functions::register(&ctx);
    for function in ExactAggregate::all() {
        ctx.register_udaf(function);
    }
    ctx
}

/// Rows as text, floats as their bits (so -0.0, NaN and the last bit are compared), sorted.
fn canonical(batches: &[RecordBatch]) -> Vec<String> {
    let options = FormatOptions::default().with_null("NULL");
    let mut out = Vec::new();
    for batch in batches {
        for row in 0..batch.num_rows() {
            let cells: Vec<String> = batch
                .columns()
                .iter()
                .map(|column| {
                    if column.is_null(row) {
                        return "NULL".to_string();
                    }
                    if column.data_type() == &DataType::Float64 {
                        let v = column.as_primitive::<Float64Type>().value(row);
                        return format!("{v}#{:016x}", v.to_bits());
                    }
                    ArrayFormatter::try_new(column.as_ref(), &options)
                        .unwrap()
                        .value(row)
                        .to_string()
                })
                .collect();
            out.push(cells.join("|"));
        }
    }
    out.sort();
    out
}

async fn run(ctx: &SessionContext, sql: &str) -> (Vec<String>, String) {
    let frame = ctx.sql(sql).await.unwrap_or_else(|e| panic!("{sql}: {e}"));
    let plan = frame.create_physical_plan().await.unwrap_or_else(|e| panic!("{sql}: {e}"));
    let text = displayable(plan.as_ref()).indent(true).to_string();
    let batches = collect(plan, ctx.task_ctx()).await.unwrap_or_else(|e| panic!("{sql}: {e}"));
    (canonical(&batches), text)
}

const T0_TEXT: &str = "2023-11-14T22:00:00Z";

fn at(minutes: i64, seconds: i64) -> String {
    let total = 22 * 3600 + minutes * 60 + seconds;
    let (day, rest) = (14 + total / 86_400, total % 86_400);
    format!("'2023-11-{day:02}T{:02}:{:02}:{:02}Z'", rest / 3600, rest % 3600 / 60, rest % 60)
}

/// Queries the fast path must answer (and does: its plan node is checked).
fn fast_queries() -> Vec<String> {
    let all = "count(*), count(value), sum(value), avg(value), min(value), max(value)";
    vec![
        format!("SELECT {all} FROM readings"),
        format!("SELECT {all} FROM readings WHERE metric = 'temperature'"),
        format!("SELECT device_id, metric, {all} FROM readings GROUP BY device_id, metric"),
        format!("SELECT device_id, {all} FROM readings WHERE device_id IN ('sensor_0', 'sensor_2') GROUP BY device_id"),
        // Ranges on chunk edges and through chunks.
        format!("SELECT {all} FROM readings WHERE time >= {} AND time < {}", at(10, 0), at(70, 0)),
        format!("SELECT metric, {all} FROM readings WHERE time > {} AND time <= {} GROUP BY metric", at(3, 25), at(151, 5)),
        format!("SELECT device_id, {all} FROM readings WHERE time BETWEEN {} AND {} GROUP BY device_id", at(20, 0), at(29, 50)),
        // Buckets aligned with chunks, wider, narrower and offset.
        format!("SELECT device_id, metric, time_bucket('10 minutes', time) AS b, {all} FROM readings GROUP BY device_id, metric, b"),
        format!("SELECT time_bucket('1 hour', time) AS b, {all} FROM readings GROUP BY b"),
        format!("SELECT metric, time_bucket(INTERVAL '7 minutes', time) AS b, avg(value), count(*) FROM readings WHERE time >= {} GROUP BY metric, b", at(5, 0)),
        format!("SELECT device_id, date_bin(INTERVAL '15 minutes', time) AS b, sum(value), max(value) FROM readings GROUP BY device_id, b"),
        format!("SELECT date_bin(INTERVAL '30 minutes', time, TIMESTAMP '{T0_TEXT}') AS b, min(value), avg(value) FROM readings WHERE metric = 'humidity' GROUP BY b"),
        format!("SELECT device_id, metric, time_bucket('20 minutes', time) AS b, avg(value) FROM readings WHERE time >= {} AND time < {} GROUP BY 1, 2, 3 HAVING count(*) > 5", at(15, 0), at(95, 0)),
        // Nothing matches: one row without GROUP BY, none with.
        "SELECT count(*), sum(value), avg(value), min(value) FROM readings WHERE time < '2000-01-01T00:00:00Z'".to_string(),
        "SELECT device_id, count(*) FROM readings WHERE device_id = 'nobody' GROUP BY device_id".to_string(),
        format!("SELECT avg(value) FROM readings WHERE device_id = 'sensor_1' AND metric = 'temperature' AND time >= {} AND time < {}", at(30, 0), at(80, 0)),
        // DISTINCT becomes an inner GROUP BY device_id computing max(value): that one is fast.
        "SELECT count(DISTINCT device_id), max(value) FROM readings".to_string(),
    ]
}

/// Queries the fast path must leave alone (and does) — still identical results.
fn other_queries() -> Vec<String> {
    vec![
        "SELECT avg(value) FROM readings WHERE value > 20".to_string(),
        "SELECT device_id, avg(value) FILTER (WHERE metric = 'humidity') FROM readings GROUP BY device_id".to_string(),
        "SELECT time_bucket('1 hour', time, 'Europe/Paris') AS b, avg(value) FROM readings GROUP BY b".to_string(),
        "SELECT sum(value + 1) FROM readings".to_string(),
        // A limit below a per-series aggregate counts across the cluster, not per node.
        "SELECT sum(n) FROM (SELECT device_id, metric, count(*) AS n FROM (SELECT * FROM readings LIMIT 5) GROUP BY device_id, metric)".to_string(),
    ]
}

/// Sessions over the fixture with the fast path on and off, and the `MemTable` reference.
async fn on_off_and_reference(
    f: &Fixture,
    options: QueryOptions,
) -> (SessionContext, SessionContext, SessionContext) {
    let on = session(f.engine.clone(), options.clone()).await.unwrap();
    let off = session(f.engine.clone(), options).await.unwrap();
    off.sql("SET minitrue.aggregate_fast_path = false").await.unwrap().collect().await.unwrap();
    (on, off, reference(&f.expected))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fast_path_on_off_and_reference_agree_to_the_bit() {
    let f = fixture().await;
    let (ctx, off, reference) = on_off_and_reference(&f, QueryOptions::default()).await;

    for (sql, fast) in fast_queries()
        .into_iter()
        .map(|q| (q, true))
        .chain(other_queries().into_iter().map(|q| (q, false)))
    {
        let (with_fast_path, plan) = run(&ctx, &sql).await;
        let (without, plan_off) = run(&off, &sql).await;
        let (expected, _) = run(&reference, &sql).await;
        assert_eq!(
            plan.contains("ReadingsAggregateExec"),
            fast,
            "{sql}: fast path expected {fast}, plan:\n{plan}"
        );
        assert!(!plan_off.contains("ReadingsAggregateExec"), "{sql}: option ignored:\n{plan_off}");
        assert_eq!(with_fast_path, expected, "{sql}: fast path differs from the reference");
        assert_eq!(without, expected, "{sql}: normal plan differs from the reference");
    }
}

/// The same queries over a loopback cluster of three nodes (RF 2, twelve ranges): fragments
/// go through `datafusion-proto` and each node's share of the ring, with the fast path on and
/// off, and with a peer down (its ranges answered by the other owner). Two owners of a range
/// down is an error, not a partial answer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn distributed_reads_agree_to_the_bit_and_survive_a_dead_peer() {
    let f = fixture().await;
    let (ctx, loopback) =
        loopback::distributed_session(f.engine.clone(), QueryOptions::default()).await;
    let (off, _) = loopback::distributed_session(f.engine.clone(), QueryOptions::default()).await;
    off.sql("SET minitrue.aggregate_fast_path = false").await.unwrap().collect().await.unwrap();
    let reference = reference(&f.expected);
    let queries: Vec<String> = fast_queries().into_iter().chain(other_queries()).collect();
    for sql in &queries {
        let (expected, _) = run(&reference, sql).await;
        let (distributed, plan) = run(&ctx, sql).await;
        assert!(plan.contains("DistributedExec"), "{sql}: not distributed:\n{plan}");
        assert_eq!(distributed, expected, "{sql}: distributed differs from the reference\n{plan}");
        let (without_fast_path, _) = run(&off, sql).await;
        assert_eq!(without_fast_path, expected, "{sql}: distributed without the fast path");
    }
    assert!(loopback.sent.lock().unwrap().iter().any(|node| node == "peer_a"));

    loopback.down.lock().unwrap().insert("peer_a".into());
    for sql in &queries {
        let (expected, _) = run(&reference, sql).await;
        assert_eq!(run(&ctx, sql).await.0, expected, "{sql}: with peer_a down");
    }
    loopback.down.lock().unwrap().insert("peer_b".into());
    let error =
        ctx.sql("SELECT count(*) FROM readings").await.unwrap().collect().await.unwrap_err();
    let error = minitrue_query::QueryError::from(error);
    assert_eq!(error.kind(), minitrue_common::ErrorKind::Unavailable, "{error}");
    assert!(error.to_string().contains("no live owner"), "{error}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn explain_shows_partial_aggregates_pushed_to_peers() {
    let f = fixture().await;
    let (ctx, _) = loopback::distributed_session(f.engine.clone(), QueryOptions::default()).await;
    let explain = |sql: &str| {
        let ctx = ctx.clone();
        let sql = sql.to_string();
        async move {
            let (_, plan) = run(&ctx, &sql).await;
            plan
        }
    };
    // Across series: each node sends partial states, the final aggregate merges them.
    let plan =
        explain("SELECT time_bucket('1 hour', time) AS b, avg(value) FROM readings GROUP BY b")
            .await;
    let distributed = plan.find("DistributedExec").expect(&plan);
    let partial = plan.find("AggregateExec: mode=Partial").expect(&plan);
    let last_final = plan.rfind("mode=Final").expect(&plan);
    assert!(last_final < distributed && distributed < partial, "{plan}");
    // Per series: the whole aggregate runs where the series lives.
    let plan =
        explain("SELECT device_id, metric, avg(value) FROM readings GROUP BY device_id, metric")
            .await;
    let distributed = plan.find("DistributedExec").expect(&plan);
    assert!(plan[..distributed].find("AggregateExec").is_none(), "{plan}");
    // Top k: each node's k rows, sorted again.
    let plan = explain("SELECT * FROM readings ORDER BY value DESC LIMIT 3").await;
    let distributed = plan.find("DistributedExec").expect(&plan);
    assert!(plan[..distributed].contains("SortExec: TopK(fetch=3)"), "{plan}");
    assert!(plan[distributed..].contains("SortExec: TopK(fetch=3)"), "{plan}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chunk_aggregates_are_used_and_agree_with_decoding() {
    let f = fixture().await;
    for (series, time) in [
        (SeriesFilter::all(), TimeRange::ALL),
        (SeriesFilter::all(), TimeRange::new(T0 + 10 * MINUTE, T0 + 70 * MINUTE - 1)),
        (SeriesFilter::series("sensor_1", "temperature"), TimeRange::ALL),
    ] {
        let request = |use_chunk_aggregates| AggregateRequest {
            series: series.clone(),
            time,
            buckets: None,
            use_chunk_aggregates,
        };
        let fast = f.engine.aggregate(request(true)).await.unwrap();
        let slow = f.engine.aggregate(request(false)).await.unwrap();
        assert!(fast.chunks_from_stats > 0, "{series:?} {time:?}: no chunk used its aggregate");
        assert_eq!(slow.chunks_from_stats, 0);
        assert!(fast.points_decoded < slow.points_decoded);
        assert_eq!(fast.points_decoded + fast.points_from_stats, slow.points_decoded);
        assert_eq!(fast.groups.len(), slow.groups.len());
        for (a, b) in fast.groups.iter().zip(&slow.groups) {
            assert_eq!(a.series, b.series);
            assert_eq!(a.value.count, b.value.count);
            assert_eq!(a.value.sum.to_f64().to_bits(), b.value.sum.to_f64().to_bits());
            assert_eq!(a.value.min.to_bits(), b.value.min.to_bits());
            assert_eq!(a.value.max.to_bits(), b.value.max.to_bits());
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn explain_shows_the_fast_path_and_analyze_counts_chunks() {
    let f = fixture().await;
    let ctx = session(f.engine.clone(), QueryOptions::default()).await.unwrap();
    let explain = canonical(
        &ctx.sql("EXPLAIN SELECT device_id, avg(value) FROM readings WHERE metric = 'humidity' GROUP BY device_id")
            .await
            .unwrap()
            .collect()
            .await
            .unwrap(),
    )
    .join("\n");
    assert!(
        explain.contains("ReadingsAggregateExec: device_id=any, metric IN (humidity)"),
        "{explain}"
    );
    let analyzed = canonical(
        &ctx.sql("EXPLAIN ANALYZE SELECT avg(value) FROM readings")
            .await
            .unwrap()
            .collect()
            .await
            .unwrap(),
    )
    .join("\n");
    assert!(analyzed.contains("chunks_from_stats="), "{analyzed}");
    assert!(!analyzed.contains("chunks_from_stats=0"), "{analyzed}");
}

/// A fast-path aggregate inside a partitioned plan (here the build side of a hash join, as
/// gap filling with `generate_series` writes it) keeps the partitioning the plan expects.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fast_path_inside_a_partitioned_join() {
    let f = fixture().await;
    let options = QueryOptions { target_partitions: Some(4), ..QueryOptions::default() };
    let (ctx, off, reference) = on_off_and_reference(&f, options).await;
    reference.sql("SET datafusion.execution.target_partitions = 4").await.unwrap();
    for join in ["LEFT", "RIGHT"] {
        let sql = format!(
            "SELECT b.start, a.n, a.mean FROM generate_series(TIMESTAMPTZ {}, TIMESTAMPTZ {}, \
             INTERVAL '30 minutes') AS b(start) {join} JOIN (SELECT time_bucket('30 minutes', time) \
             AS start, count(*) AS n, avg(value) AS mean FROM readings WHERE device_id = 'sensor_1' \
             GROUP BY 1) a ON a.start = b.start",
            at(0, 0),
            at(240, 0)
        );
        let (with_fast_path, plan) = run(&ctx, &sql).await;
        let (without, _) = run(&off, &sql).await;
        let (expected, _) = run(&reference, &sql).await;
        assert!(plan.contains("ReadingsAggregateExec"), "{sql}: no fast path:\n{plan}");
        assert_eq!(with_fast_path, expected, "{sql}: fast path differs from the reference");
        assert_eq!(without, expected, "{sql}: normal plan differs from the reference");
    }
}
