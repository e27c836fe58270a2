//! SQL over a real storage engine (temp directory, no background task, WAL sync off): the
//! readings provider's pushdown against a DataFusion `MemTable` holding the same rows,
//! EXPLAIN output, the catalog tables, MiniTrue's functions, INSERT, DELETE and errors.

mod loopback;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use arrow::array::RecordBatch;
use arrow::util::display::{ArrayFormatter, FormatOptions};
use datafusion::datasource::MemTable;
use datafusion::physical_plan::{collect, displayable, ExecutionPlan};
use datafusion::prelude::{SessionConfig, SessionContext};
use minitrue_common::{ErrorKind, Point, SeriesKey, TokenSet};
use minitrue_query::{
    functions, session, FragmentRunner, QueryEngine, QueryError, QueryOptions, ReadingsScanExec,
    STORAGE_ROWS,
};
use minitrue_storage::{readings_schema, Engine, EngineConfig, SyncPolicy};
use tempfile::TempDir;

const SECOND: i64 = 1_000_000_000;
/// 2023-11-14T22:13:20Z
const T0: i64 = 1_700_000_000 * SECOND;
const SERIES_SECONDS: i64 = 600;

type Rows = BTreeMap<(String, String, i64), f64>;

struct Fixture {
    _dir: TempDir,
    engine: Arc<Engine>,
    ctx: SessionContext,
    /// What the engine holds, last write winning.
    expected: Rows,
    now_ns: i64,
}

fn config(dir: &std::path::Path) -> EngineConfig {
    let mut config = EngineConfig::new(dir);
    config.background_interval = None;
    config.wal.sync = SyncPolicy::Off;
    config
}

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

/// Four sensors × two metrics over ten minutes from T0 (the first half flushed to Parquet,
/// part of it rewritten in the memtable), a device around the Unix epoch (negative times)
/// and a device reporting every minute up to now.
async fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let (engine, _) = Engine::open(config(dir.path())).await.unwrap();
    let mut expected = Rows::new();

    let mut first_half = Vec::new();
    let mut second_half = Vec::new();
    for d in 0..4 {
        let device = format!("sensor_{d}");
        for i in 0..SERIES_SECONDS {
            let t = T0 + i * SECOND;
            let temperature = 20.0 + ((i * 7 + d) % 50) as f64 / 10.0;
            let humidity = 50.0 + (i % 13) as f64;
            let half = if i < SERIES_SECONDS / 2 { &mut first_half } else { &mut second_half };
            half.push(point(&device, "temperature", t, temperature));
            half.push(point(&device, "humidity", t, humidity));
        }
    }
    for i in -300..300 {
        first_half.push(point("old_device", "temperature", i * SECOND + 250_000_000, i as f64));
    }
    engine.write(&first_half).await.unwrap();
    record(&mut expected, &first_half);
    engine.flush().await.unwrap();

    // Rewrites of flushed points: the scan must merge and let the memtable win.
    for i in 250..300 {
        second_half.push(point("sensor_1", "temperature", T0 + i * SECOND, -1.0 - i as f64));
    }
    let now_ns = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_nanos() as i64;
    for minute in 0..120 {
        second_half.push(point(
            "live_device",
            "temperature",
            now_ns - minute * 60 * SECOND,
            minute as f64,
        ));
    }
    engine.write(&second_half).await.unwrap();
    record(&mut expected, &second_half);

    let ctx = session(engine.clone(), QueryOptions::default()).await.unwrap();
    Fixture { _dir: dir, engine, ctx, expected, now_ns }
}

/// A plain DataFusion session with the same rows in a `MemTable` (no pushdown at all).
async fn reference(expected: &Rows) -> SessionContext {
    let mut config = SessionConfig::new();
    config.options_mut().execution.time_zone = Some("UTC".into());
    let ctx = SessionContext::new_with_config(config);
    let times: Vec<i64> = expected.keys().map(|k| k.2).collect();
    let devices: Vec<&str> = expected.keys().map(|k| k.0.as_str()).collect();
    let metrics: Vec<&str> = expected.keys().map(|k| k.1.as_str()).collect();
    let values: Vec<f64> = expected.values().copied().collect();
    let batch = RecordBatch::try_new(
        readings_schema(),
        vec![
            Arc::new(arrow::array::TimestampNanosecondArray::from(times).with_timezone("UTC")),
            Arc::new(arrow::array::StringArray::from(devices)),
            Arc::new(arrow::array::StringArray::from(metrics)),
            Arc::new(arrow::array::Float64Array::from(values)),
        ],
    )
    .unwrap();
    let table = MemTable::try_new(readings_schema(), vec![vec![batch]]).unwrap();
    ctx.register_table("readings", Arc::new(table)).unwrap();
    functions::register(&ctx);
    ctx
}

/// Every row of the result as `a|b|c`, sorted.
async fn rows(ctx: &SessionContext, sql: &str) -> Vec<String> {
    let batches = ctx.sql(sql).await.unwrap_or_else(|e| panic!("{sql}: {e}")).collect().await;
    let batches = batches.unwrap_or_else(|e| panic!("{sql}: {e}"));
    let mut out = format_rows(&batches);
    out.sort();
    out
}

fn format_rows(batches: &[RecordBatch]) -> Vec<String> {
    let options = FormatOptions::default().with_null("NULL");
    let mut out = Vec::new();
    for batch in batches {
        let formatters: Vec<ArrayFormatter> = batch
            .columns()
            .iter()
            .map(|c| ArrayFormatter::try_new(c.as_ref(), &options).unwrap())
            .collect();
        for row in 0..batch.num_rows() {
            let cells: Vec<String> = formatters.iter().map(|f| f.value(row).to_string()).collect();
            out.push(cells.join("|"));
        }
    }
    out
}

async fn one_value(ctx: &SessionContext, sql: &str) -> String {
    let rows = rows(ctx, sql).await;
    assert_eq!(rows.len(), 1, "{sql}: {rows:?}");
    rows[0].clone()
}

async fn error_of(ctx: &SessionContext, sql: &str) -> QueryError {
    let result = match ctx.sql(sql).await {
        Ok(frame) => frame.collect().await,
        Err(error) => Err(error),
    };
    match result {
        Ok(batches) => panic!("{sql} succeeded: {:?}", format_rows(&batches)),
        Err(error) => QueryError::from(error),
    }
}

async fn physical_plan(ctx: &SessionContext, sql: &str) -> Arc<dyn ExecutionPlan> {
    ctx.sql(sql).await.unwrap().create_physical_plan().await.unwrap()
}

fn find_scan(plan: &Arc<dyn ExecutionPlan>) -> Option<&ReadingsScanExec> {
    if let Some(scan) = plan.downcast_ref::<ReadingsScanExec>() {
        return Some(scan);
    }
    plan.children().into_iter().find_map(find_scan)
}

fn plan_text(plan: &Arc<dyn ExecutionPlan>) -> String {
    displayable(plan.as_ref()).indent(true).to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pushdown_gives_the_same_rows_as_no_pushdown() {
    let f = fixture().await;
    let reference = reference(&f.expected).await;
    // The same rows spread over a loopback cluster of three nodes.
    let (distributed, _) =
        loopback::distributed_session(f.engine.clone(), QueryOptions::default()).await;
    let t = |seconds: i64| {
        format!("'2023-11-14T22:{:02}:{:02}Z'", 13 + (20 + seconds) / 60, (20 + seconds) % 60)
    };
    // (predicate, exact: DataFusion keeps no filter of its own)
    let cases: Vec<(String, bool)> = vec![
        (format!("time > {}", t(100)), true),
        (format!("time >= {}", t(100)), true),
        (format!("time < {}", t(100)), true),
        (format!("time <= {}", t(100)), true),
        (format!("time = {}", t(100)), true),
        (format!("{} < time", t(100)), true),
        (format!("time BETWEEN {} AND {}", t(100), t(200)), true),
        (format!("time >= {} AND time < {}", t(280), t(320)), true),
        ("time > '2023-11-14T22:15:00.5Z'".to_string(), true),
        ("time >= '2023-11-14 22:15:00+00:00'".to_string(), true),
        ("time > '2023-11-14T22:15:00.123456789Z'".to_string(), true),
        ("time > CAST('2023-11-14T22:15:00Z' AS TIMESTAMPTZ)".to_string(), true),
        ("time > TIMESTAMP '2023-11-14 22:15:00'".to_string(), true),
        ("time > to_timestamp(1700000100)".to_string(), true),
        ("time > now() - interval '1 hour'".to_string(), true),
        ("time < '1970-01-01T00:00:00Z'".to_string(), true),
        ("device_id = 'sensor_1'".to_string(), true),
        ("'sensor_1' = device_id".to_string(), true),
        ("device_id IN ('sensor_1', 'sensor_3', 'nobody')".to_string(), true),
        ("metric = 'humidity'".to_string(), true),
        ("metric IN ('humidity', 'temperature')".to_string(), true),
        ("device_id = 'sensor_1' AND metric = 'temperature'".to_string(), true),
        (format!("device_id = 'sensor_1' AND metric = 'temperature' AND time BETWEEN {} AND {}", t(240), t(310)), true),
        ("device_id = 'sensor_1' OR device_id = 'sensor_2'".to_string(), true),
        ("device_id = 'sensor_1' AND device_id = 'sensor_2'".to_string(), true),
        (format!("time > {} AND time < {}", t(200), t(100)), true),
        (format!("time IN ({}, {})", t(10), t(500)), false),
        ("(device_id = 'sensor_1' AND metric = 'humidity') OR (device_id = 'sensor_2' AND metric = 'temperature')".to_string(), false),
        (format!("time < {} OR time > {}", t(10), t(590)), false),
        (format!("device_id = 'sensor_1' OR time > {}", t(500)), false),
        (format!("time > {} AND value > 21.0", t(100)), false),
        ("value > 21.0".to_string(), false),
        ("device_id LIKE 'sensor_%' AND metric = 'humidity'".to_string(), false),
        ("device_id NOT IN ('sensor_1')".to_string(), false),
        ("device_id <> 'sensor_1'".to_string(), false),
    ];
    for (predicate, exact) in &cases {
        let sql = format!("SELECT time, device_id, metric, value FROM readings WHERE {predicate}");
        let ours = rows(&f.ctx, &sql).await;
        let theirs = rows(&reference, &sql).await;
        assert_eq!(ours.len(), theirs.len(), "{predicate}");
        assert_eq!(ours, theirs, "{predicate}");
        assert_eq!(rows(&distributed, &sql).await, theirs, "{predicate}: distributed");

        let aggregate = format!(
            "SELECT device_id, metric, count(*), min(value), max(value), min(time), max(time) \
             FROM readings WHERE {predicate} GROUP BY device_id, metric"
        );
        let expected = rows(&reference, &aggregate).await;
        assert_eq!(rows(&f.ctx, &aggregate).await, expected, "{predicate}");
        assert_eq!(rows(&distributed, &aggregate).await, expected, "{predicate}: distributed");
        // Top k and LIMIT: each node's rows, cut again where they meet.
        let top = format!("SELECT device_id, metric, time, value FROM readings WHERE {predicate} ORDER BY value DESC, time, device_id, metric LIMIT 7");
        assert_eq!(
            rows(&distributed, &top).await,
            rows(&reference, &top).await,
            "{predicate}: top 7"
        );
        let limited =
            format!("SELECT count(*) FROM (SELECT * FROM readings WHERE {predicate} LIMIT 5)");
        assert_eq!(
            rows(&distributed, &limited).await,
            rows(&reference, &limited).await,
            "{predicate}: limit"
        );

        let plan = physical_plan(&f.ctx, &sql).await;
        let text = plan_text(&plan);
        if ours.is_empty() && !text.contains("ReadingsScanExec") {
            // DataFusion proved the predicate unsatisfiable and planned no scan at all.
            assert!(text.contains("EmptyExec"), "{predicate}:\n{text}");
            continue;
        }
        assert!(text.contains("ReadingsScanExec"), "{text}");
        assert_eq!(!text.contains("FilterExec"), *exact, "{predicate}:\n{text}");
    }
    // The recent-data predicate really selected something.
    let recent =
        one_value(&f.ctx, "SELECT count(*) FROM readings WHERE time > now() - interval '1 hour'")
            .await;
    assert_eq!(recent, "60", "now - 1h covers the live device's last 60 minutes");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pushed_bounds_are_what_the_predicates_say() {
    let f = fixture().await;
    let cases = [
        (
            "device_id = 'sensor_1' AND metric = 'temperature' AND time >= '2023-11-14T22:13:20Z' \
             AND time < '2023-11-14T22:23:20Z'",
            "device_id IN (sensor_1), metric IN (temperature), time=[2023-11-14T22:13:20Z, 2023-11-14T22:23:19.999999999Z]",
        ),
        ("time > '2023-11-14T22:13:20Z'", "device_id=any, metric=any, time=[2023-11-14T22:13:20.000000001Z, +inf]"),
        ("time <= '2023-11-14T22:13:20Z'", "device_id=any, metric=any, time=[-inf, 2023-11-14T22:13:20Z]"),
        ("device_id IN ('b', 'a') AND metric = 'x'", "device_id IN (a, b), metric IN (x), time=[-inf, +inf]"),
        ("time > '2024-01-01T00:00:00Z' AND time < '2023-01-01T00:00:00Z'", "time=empty"),
    ];
    for (predicate, bounds) in cases {
        let plan =
            physical_plan(&f.ctx, &format!("SELECT value FROM readings WHERE {predicate}")).await;
        let scan = find_scan(&plan).expect("a readings scan");
        assert!(scan.bounds().to_string().contains(bounds), "{predicate}: {}", scan.bounds());
    }

    // now() is folded before the provider sees it: the range starts one hour before now.
    let plan =
        physical_plan(&f.ctx, "SELECT value FROM readings WHERE time > now() - interval '1 hour'")
            .await;
    let start = find_scan(&plan).unwrap().bounds().time.start;
    let hour_ago = f.now_ns - 3600 * SECOND;
    assert!((hour_ago..hour_ago + 60 * SECOND).contains(&start), "{start} vs {hour_ago}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn explain_shows_the_pushed_filter() {
    let f = fixture().await;
    // The scan's pushdown is shown without the aggregate fast path (tests/aggregate.rs covers
    // the plan with it).
    rows(&f.ctx, "SET minitrue.aggregate_fast_path = false").await;
    let sql = "EXPLAIN SELECT avg(value) FROM readings WHERE device_id = 'sensor_1' \
               AND metric = 'temperature' AND time >= '2023-11-14T22:13:20Z' \
               AND time < '2023-11-14T22:23:20Z'";
    let text = rows(&f.ctx, sql).await.join("\n");
    println!("{text}");
    assert!(
        text.contains(
            "ReadingsScanExec: device_id IN (sensor_1), metric IN (temperature), \
             time=[2023-11-14T22:13:20Z, 2023-11-14T22:23:19.999999999Z], projection=[value]"
        ),
        "{text}"
    );
    // The logical plan records the filters as pushed into the scan.
    assert!(text.contains("TableScan: readings projection=[value], full_filters=["), "{text}");
    assert!(!text.contains("FilterExec"), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn count_star_and_projection() {
    let f = fixture().await;
    let total = f.expected.len().to_string();
    assert_eq!(one_value(&f.ctx, "SELECT count(*) FROM readings").await, total);
    // The scan's projection, without the aggregate fast path that would replace the scan.
    rows(&f.ctx, "SET minitrue.aggregate_fast_path = false").await;
    let plan =
        physical_plan(&f.ctx, "SELECT count(*) FROM readings WHERE device_id = 'sensor_0'").await;
    assert!(plan_text(&plan).contains("projection=[]"), "{}", plan_text(&plan));
    assert_eq!(
        one_value(&f.ctx, "SELECT count(*) FROM readings WHERE device_id = 'sensor_0'").await,
        "1200"
    );
    assert_eq!(
        rows(&f.ctx, "SELECT metric FROM readings WHERE device_id = 'sensor_0' AND time = '2023-11-14T22:13:20Z'").await,
        vec!["humidity", "temperature"]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn devices_and_system_tables() {
    let f = fixture().await;
    let devices = rows(
        &f.ctx,
        "SELECT device_id, metric, first_time, last_time, last_value, points FROM devices",
    )
    .await;
    let mut expected: Vec<String> = f
        .engine
        .series()
        .iter()
        .map(|s| {
            let ts = |t: i64| {
                chrono::DateTime::from_timestamp_nanos(t)
                    .format("%Y-%m-%dT%H:%M:%S%.fZ")
                    .to_string()
            };
            format!(
                "{}|{}|{}|{}|{:?}|{}",
                s.series.device_id(),
                s.series.metric(),
                ts(s.first_time),
                ts(s.last_time),
                s.last_value,
                s.points
            )
        })
        .collect();
    expected.sort();
    assert_eq!(devices.len(), 10);
    assert_eq!(devices, expected);
    assert_eq!(
        one_value(&f.ctx, "SELECT last_value, last_time FROM devices WHERE device_id = 'sensor_2' AND metric = 'temperature'").await,
        // i = 599, d = 2: 20 + ((599 * 7 + 2) % 50) / 10
        format!("{:?}|2023-11-14T22:23:19Z", 20.0 + ((599 * 7 + 2) % 50) as f64 / 10.0)
    );
    assert_eq!(rows(&f.ctx, "SELECT * FROM system.series").await.len(), 10);

    let files = f.engine.files();
    assert!(!files.is_empty());
    assert_eq!(
        one_value(&f.ctx, "SELECT count(*), sum(rows), min(min_time) FROM system.files").await,
        format!(
            "{}|{}|1969-12-31T23:55:00.250Z",
            files.len(),
            files.iter().map(|m| m.rows).sum::<u64>()
        )
    );
    let paths = rows(&f.ctx, "SELECT path, layout, level FROM system.files").await;
    assert!(paths.iter().all(|p| p.ends_with("|0")), "{paths:?}");

    let stats = f.engine.stats();
    assert_eq!(
        one_value(&f.ctx, "SELECT points_written, flushes, files, series, wal_records_appended > 0 FROM system.storage").await,
        format!("{}|1|{}|10|true", stats.points_written, stats.files)
    );

    // After another flush the files table follows.
    f.engine.flush().await.unwrap();
    assert_eq!(
        one_value(&f.ctx, "SELECT count(*) FROM system.files").await,
        f.engine.files().len().to_string()
    );
    assert_eq!(one_value(&f.ctx, "SELECT flushes FROM system.storage").await, "2");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn time_bucket_matches_timescaledb() {
    let f = fixture().await;
    let cases = [
        // (width, ts, extra, expected)
        ("'5 minutes'", "2024-05-06T10:07:59Z", "", "2024-05-06T10:05:00Z"),
        ("'5m'", "2024-05-06T10:07:59Z", "", "2024-05-06T10:05:00Z"),
        ("'300s'", "2024-05-06T10:07:59Z", "", "2024-05-06T10:05:00Z"),
        ("INTERVAL '1 hour'", "2024-05-06T10:07:59Z", "", "2024-05-06T10:00:00Z"),
        ("'1 day'", "2024-05-06T10:07:59Z", "", "2024-05-06T00:00:00Z"),
        // Weeks start on Mondays (origin 2000-01-03); 2024-05-08 is a Wednesday.
        ("'1 week'", "2024-05-08T10:00:00Z", "", "2024-05-06T00:00:00Z"),
        ("'3 days'", "2000-01-02T12:00:00Z", "", "1999-12-31T00:00:00Z"),
        ("'1 month'", "2024-02-29T23:00:00Z", "", "2024-02-01T00:00:00Z"),
        ("'3 months'", "2024-05-17T00:00:00Z", "", "2024-04-01T00:00:00Z"),
        ("'1 year'", "2024-05-17T00:00:00Z", "", "2024-01-01T00:00:00Z"),
        ("'1 minute'", "1969-12-31T23:59:59.5Z", "", "1969-12-31T23:59:00Z"),
        ("'1 week'", "1969-12-31T00:00:00Z", "", "1969-12-29T00:00:00Z"),
        (
            "'1 day'",
            "2024-05-06T05:00:00Z",
            ", CAST('2020-01-01T06:00:00Z' AS TIMESTAMPTZ)",
            "2024-05-05T06:00:00Z",
        ),
        ("'1 day'", "2024-05-06T05:00:00Z", ", '2020-01-01T06:00:00Z'", "2024-05-05T06:00:00Z"),
        ("'1 day'", "2024-05-06T05:00:00Z", ", INTERVAL '6 hours'", "2024-05-05T06:00:00Z"),
        // Berlin is UTC+2 in May: its day starts at 22:00 UTC the day before.
        ("'1 day'", "2024-05-06T23:30:00Z", ", 'Europe/Berlin'", "2024-05-06T22:00:00Z"),
    ];
    for (width, ts, extra, expected) in cases {
        let sql = format!(
            "SELECT time_bucket({width}, CAST('{ts}' AS TIMESTAMPTZ){extra}) = CAST('{expected}' AS TIMESTAMPTZ), \
             time_bucket({width}, CAST('{ts}' AS TIMESTAMPTZ){extra})"
        );
        let got = one_value(&f.ctx, &sql).await;
        assert!(got.starts_with("true|"), "{sql}: {got}");
    }
    // Through AT TIME ZONE, buckets follow that zone's wall clock.
    let got = one_value(
        &f.ctx,
        "SELECT time_bucket('1 day', CAST('2024-05-06T23:30:00Z' AS TIMESTAMPTZ) AT TIME ZONE 'Europe/Berlin') \
         = CAST('2024-05-06T22:00:00Z' AS TIMESTAMPTZ)",
    )
    .await;
    assert_eq!(got, "true");

    // Over the table, grouped, including negative times.
    let got = rows(
        &f.ctx,
        "SELECT time_bucket('1 minute', time) AS b, count(*), min(value) FROM readings \
         WHERE device_id = 'old_device' GROUP BY b",
    )
    .await;
    let mut expected: BTreeMap<i64, (u64, f64)> = BTreeMap::new();
    for ((device, _, t), v) in &f.expected {
        if device == "old_device" {
            let bucket = t.div_euclid(60 * SECOND) * 60 * SECOND;
            let entry = expected.entry(bucket).or_insert((0, f64::INFINITY));
            entry.0 += 1;
            entry.1 = entry.1.min(*v);
        }
    }
    let expected: Vec<String> = expected
        .iter()
        .map(|(b, (n, min))| {
            format!(
                "{}|{n}|{min:?}",
                chrono::DateTime::from_timestamp_nanos(*b).format("%Y-%m-%dT%H:%M:%SZ")
            )
        })
        .collect();
    assert_eq!(got, expected);

    // Errors: month widths with days, non-positive widths, non-intervals.
    for bad in [
        "SELECT time_bucket('1 month 1 day', now())",
        "SELECT time_bucket('0 minutes', now())",
        "SELECT time_bucket(5, now())",
        "SELECT time_bucket('1 hour', now(), 'Not/AZone-or-time')",
    ] {
        assert_eq!(error_of(&f.ctx, bad).await.kind(), ErrorKind::InvalidInput, "{bad}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn datafusion_time_functions_work_on_timestamptz() {
    let f = fixture().await;
    // date_bin exists, with origin 1970-01-01 (a Thursday) unlike time_bucket.
    assert_eq!(
        one_value(
            &f.ctx,
            "SELECT date_bin(INTERVAL '15 minutes', CAST('2023-11-14T22:18:18Z' AS TIMESTAMPTZ))"
        )
        .await,
        "2023-11-14T22:15:00Z"
    );
    assert_eq!(
        one_value(
            &f.ctx,
            "SELECT date_bin(INTERVAL '7 days', CAST('2024-05-08T10:00:00Z' AS TIMESTAMPTZ))"
        )
        .await,
        "2024-05-02T00:00:00Z"
    );
    // extract(epoch ...) is seconds since the epoch, as a double.
    assert_eq!(
        one_value(&f.ctx, "SELECT extract(epoch FROM time) FROM readings WHERE device_id = 'sensor_0' AND metric = 'humidity' AND time = '2023-11-14T22:13:21.000Z'").await,
        "1700000001.0"
    );
    assert_eq!(
        one_value(&f.ctx, "SELECT extract(epoch FROM time) FROM readings WHERE device_id = 'old_device' AND time < '1970-01-01T00:00:00Z' AND time > '1969-12-31T23:59:59Z'").await,
        "-0.75"
    );
    // to_timestamp(double seconds) compares with timestamptz.
    assert_eq!(
        one_value(
            &f.ctx,
            "SELECT to_timestamp(1700000000.5) = CAST('2023-11-14T22:13:20.5Z' AS TIMESTAMPTZ)"
        )
        .await,
        "true"
    );
    assert_eq!(
        one_value(&f.ctx, "SELECT count(*) FROM readings WHERE time >= to_timestamp(1700000599.0) AND time < to_timestamp(1700000600)")
            .await,
        "8"
    );
    // now() is a timestamptz close to the wall clock.
    let now = one_value(&f.ctx, "SELECT CAST(extract(epoch FROM now()) AS BIGINT)").await;
    let now: i64 = now.parse().unwrap();
    assert!((now - f.now_ns / SECOND).abs() < 120, "{now}");
    // AT TIME ZONE: the same instant on another wall clock.
    assert_eq!(
        one_value(
            &f.ctx,
            "SELECT extract(hour FROM time AT TIME ZONE 'Europe/Berlin'), \
                    date_trunc('day', time AT TIME ZONE 'America/New_York') = CAST('2023-11-14T05:00:00Z' AS TIMESTAMPTZ), \
                    time AT TIME ZONE 'Europe/Berlin' = time \
             FROM readings WHERE device_id = 'sensor_0' AND metric = 'humidity' AND time = '2023-11-14T22:13:20Z'"
        )
        .await,
        "23|true|true"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn first_and_last_by_time() {
    let f = fixture().await;
    let got = rows(
        &f.ctx,
        "SELECT device_id, metric, first(value, time), last(value, time) FROM readings GROUP BY device_id, metric",
    )
    .await;
    let mut expected: BTreeMap<(String, String), (i64, f64, i64, f64)> = BTreeMap::new();
    for ((device, metric, t), v) in &f.expected {
        let e = expected.entry((device.clone(), metric.clone())).or_insert((*t, *v, *t, *v));
        if *t < e.0 {
            (e.0, e.1) = (*t, *v);
        }
        if *t > e.2 {
            (e.2, e.3) = (*t, *v);
        }
    }
    let expected: Vec<String> = expected
        .iter()
        .map(|((d, m), (_, first, _, last))| format!("{d}|{m}|{first:?}|{last:?}"))
        .collect();
    assert_eq!(got, expected);

    // The value at the extreme time, wherever it sits in the input; NULL times are ignored.
    let sql = "SELECT first(v, t), last(v, t), first(v, t) FILTER (WHERE v > 100) FROM (VALUES \
               (2.0, CAST('2024-01-02T00:00:00Z' AS TIMESTAMPTZ)), \
               (1.0, CAST('2024-01-01T00:00:00Z' AS TIMESTAMPTZ)), \
               (9.0, NULL), \
               (3.0, CAST('2024-01-03T00:00:00Z' AS TIMESTAMPTZ))) AS x(v, t)";
    assert_eq!(one_value(&f.ctx, sql).await, "1.0|3.0|NULL");
    // Also across several partitions of input (partial and final aggregation).
    assert_eq!(
        one_value(&f.ctx, "SELECT first(value, time), last(value, time) FROM readings WHERE device_id = 'old_device'").await,
        "-300.0|299.0"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn insert_goes_through_the_engine() {
    let f = fixture().await;
    let before = f.engine.stats().points_written;
    let inserted = one_value(
        &f.ctx,
        "INSERT INTO readings VALUES \
         ('2024-01-01T00:00:00Z', 'ins_dev', 'temp', 1.5), \
         ('2024-01-01T00:00:01.123456789Z', 'ins_dev', 'temp', 2.5), \
         (CAST('2024-01-01T00:00:02Z' AS TIMESTAMPTZ), 'ins_dev', 'hum', 40)",
    )
    .await;
    assert_eq!(inserted, "3");
    assert_eq!(f.engine.stats().points_written, before + 3);
    assert_eq!(
        rows(&f.ctx, "SELECT time, metric, value FROM readings WHERE device_id = 'ins_dev'").await,
        [
            "2024-01-01T00:00:00Z|temp|1.5",
            "2024-01-01T00:00:01.123456789Z|temp|2.5",
            "2024-01-01T00:00:02Z|hum|40.0",
        ]
    );
    assert_eq!(
        one_value(&f.ctx, "SELECT last_value, points FROM devices WHERE device_id = 'ins_dev' AND metric = 'temp'").await,
        "2.5|2"
    );

    // INSERT … SELECT, with a column list in another order.
    let copied = one_value(
        &f.ctx,
        "INSERT INTO readings (device_id, metric, value, time) \
         SELECT 'copy_' || device_id, metric, value * 2, time + INTERVAL '1 day' \
         FROM readings WHERE device_id = 'sensor_0'",
    )
    .await;
    assert_eq!(copied, "1200");
    assert_eq!(
        one_value(
            &f.ctx,
            "SELECT count(*), sum(value) FROM readings WHERE device_id = 'copy_sensor_0'"
        )
        .await,
        one_value(
            &f.ctx,
            "SELECT count(*), sum(value * 2) FROM readings WHERE device_id = 'sensor_0'"
        )
        .await
    );

    // Re-inserting an existing (series, time) replaces the value.
    one_value(&f.ctx, "INSERT INTO readings VALUES ('2024-01-01T00:00:00Z', 'ins_dev', 'temp', 7)")
        .await;
    assert_eq!(
        one_value(&f.ctx, "SELECT value FROM readings WHERE device_id = 'ins_dev' AND metric = 'temp' AND time = '2024-01-01T00:00:00Z'").await,
        "7.0"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_inserts_are_rejected_whole() {
    let f = fixture().await;
    let count = || async { one_value(&f.ctx, "SELECT count(*) FROM readings").await };
    let before = count().await;
    for bad in [
        "INSERT INTO readings VALUES ('2024-01-01T00:00:00Z', 'd', 'm', 1.0), ('2024-01-01T00:00:01Z', 'd', 'm', NULL)",
        "INSERT INTO readings VALUES (NULL, 'd', 'm', 1.0)",
        "INSERT INTO readings VALUES ('2024-01-01T00:00:00Z', NULL, 'm', 1.0)",
        "INSERT INTO readings VALUES ('2024-01-01T00:00:00Z', 'd', 'm', 1.0), ('2024-01-01T00:00:00Z', '', 'm', 1.0)",
        "INSERT INTO readings VALUES ('2024-01-01T00:00:00Z', 'bad\ndevice', 'm', 1.0)",
        "INSERT INTO readings VALUES ('not a time', 'd', 'm', 1.0)",
        "INSERT INTO readings VALUES ('2024-01-01T00:00:00Z', 'd', 'm', 'abc')",
        "INSERT INTO readings VALUES ('2024-01-01T00:00:00Z', 'd', 'm')",
        "INSERT INTO devices VALUES ('d', 'm', now(), now(), 1.0, 1)",
    ] {
        let error = error_of(&f.ctx, bad).await;
        println!("{bad}\n  -> {error}");
        assert_eq!(error.kind(), ErrorKind::InvalidInput, "{bad}: {error}");
    }
    let error = error_of(&f.ctx, "INSERT INTO readings VALUES ('2024-01-01T00:00:00Z', 'd', 'm', 1.0), ('2024-01-01T00:00:01Z', 'd', 'm', NULL)").await;
    assert!(error.to_string().to_lowercase().contains("null"), "{error}");
    let error = error_of(&f.ctx, "INSERT INTO readings VALUES ('2024-01-01T00:00:00Z', 'd', 'm', 1.0), ('2024-01-01T00:00:00Z', '', 'm', 1.0)").await;
    assert!(matches!(error, QueryError::InvalidRow { row: 2, .. }), "{error:?}");
    // NULLs arriving from a query (not literals) are caught by the sink, naming row and column.
    let error = error_of(
        &f.ctx,
        "INSERT INTO readings SELECT time, 'copy', metric, \
         CASE WHEN time > '2023-11-14T22:13:21Z' THEN NULL ELSE value END \
         FROM readings WHERE device_id = 'sensor_0' AND metric = 'humidity'",
    )
    .await;
    assert!(matches!(&error, QueryError::InvalidRow { .. }), "{error:?}");
    assert!(error.to_string().contains("value is NULL"), "{error}");
    assert_eq!(count().await, before, "nothing of a rejected statement is written");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delete_maps_onto_engine_deletes() {
    let f = fixture().await;
    let deleted = one_value(
        &f.ctx,
        "DELETE FROM readings WHERE device_id = 'sensor_1' AND metric = 'temperature' \
         AND time >= '2023-11-14T22:18:00Z'",
    )
    .await;
    // 22:18:00 .. 22:23:19 is 320 seconds.
    assert_eq!(deleted, "320");
    assert_eq!(
        one_value(&f.ctx, "SELECT count(*), max(time) FROM readings WHERE device_id = 'sensor_1' AND metric = 'temperature'").await,
        "280|2023-11-14T22:17:59Z"
    );
    assert_eq!(
        one_value(
            &f.ctx,
            "SELECT count(*) FROM readings WHERE device_id = 'sensor_1' AND metric = 'humidity'"
        )
        .await,
        "600"
    );
    assert_eq!(
        one_value(
            &f.ctx,
            "SELECT last_time FROM devices WHERE device_id = 'sensor_1' AND metric = 'temperature'"
        )
        .await,
        "2023-11-14T22:17:59Z"
    );

    // A whole device, every metric; several devices at once.
    assert_eq!(
        one_value(&f.ctx, "DELETE FROM readings WHERE device_id = 'sensor_2'").await,
        "1200"
    );
    assert_eq!(
        one_value(&f.ctx, "DELETE FROM readings WHERE device_id IN ('sensor_3', 'old_device') AND time < '2023-11-14T22:13:30Z'").await,
        (20 + 600).to_string()
    );
    assert_eq!(
        one_value(&f.ctx, "SELECT count(*) FROM readings WHERE device_id = 'sensor_2'").await,
        "0"
    );
    assert_eq!(
        one_value(&f.ctx, "SELECT count(*) FROM readings WHERE device_id = 'sensor_3'").await,
        "1180"
    );
    assert_eq!(
        one_value(&f.ctx, "SELECT count(*) FROM readings WHERE device_id = 'old_device'").await,
        "0"
    );
    assert_eq!(
        one_value(&f.ctx, "SELECT count(*) FROM readings WHERE device_id = 'sensor_0'").await,
        "1200"
    );
    // Nothing matches: zero, no error.
    assert_eq!(one_value(&f.ctx, "DELETE FROM readings WHERE device_id = 'nobody'").await, "0");
    // An OR that is still one set of devices is the same as IN.
    assert_eq!(
        one_value(
            &f.ctx,
            "DELETE FROM readings WHERE (device_id = 'live_device' OR device_id = 'nobody') \
             AND metric = 'temperature'"
        )
        .await,
        "120"
    );
    assert_eq!(
        one_value(&f.ctx, "SELECT count(*) FROM devices WHERE device_id = 'live_device'").await,
        "0"
    );
    // EXPLAIN never deletes.
    let text =
        rows(&f.ctx, "EXPLAIN DELETE FROM readings WHERE device_id = 'sensor_0'").await.join("\n");
    assert!(text.contains("ReadingsDeleteExec: device_id IN (sensor_0)"), "{text}");
    assert_eq!(
        one_value(&f.ctx, "SELECT count(*) FROM readings WHERE device_id = 'sensor_0'").await,
        "1200"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unsupported_deletes_delete_nothing() {
    let f = fixture().await;
    let before = one_value(&f.ctx, "SELECT count(*) FROM readings").await;
    for bad in [
        "DELETE FROM readings",
        "DELETE FROM readings WHERE metric = 'temperature'",
        "DELETE FROM readings WHERE time > '2023-11-14T22:13:20Z'",
        "DELETE FROM readings WHERE device_id = 'sensor_1' OR metric = 'humidity'",
        "DELETE FROM readings WHERE device_id = 'sensor_1' OR time > '2023-11-14T22:13:20Z'",
        "DELETE FROM readings WHERE device_id = 'sensor_1' AND value > 20",
        "DELETE FROM readings WHERE device_id = 'sensor_1' AND device_id LIKE 's%'",
        "DELETE FROM readings WHERE device_id <> 'sensor_1'",
        "DELETE FROM readings WHERE device_id = 'sensor_1' AND time > (SELECT min(time) FROM readings)",
        "DELETE FROM readings WHERE device_id IN (SELECT device_id FROM devices)",
        "DELETE FROM readings WHERE device_id = 'sensor_1' LIMIT 1",
        "DELETE FROM devices WHERE device_id = 'sensor_1'",
        "TRUNCATE TABLE readings",
        "UPDATE readings SET value = 0 WHERE device_id = 'sensor_1'",
    ] {
        let error = error_of(&f.ctx, bad).await;
        println!("{bad}\n  -> {error}");
        assert_eq!(error.kind(), ErrorKind::InvalidInput, "{bad}: {error}");
    }
    let error = error_of(&f.ctx, "DELETE FROM readings WHERE metric = 'temperature'").await;
    assert!(matches!(error, QueryError::UnsupportedDelete { .. }), "{error:?}");
    assert!(error.to_string().contains("device_id"), "{error}");
    assert_eq!(one_value(&f.ctx, "SELECT count(*) FROM readings").await, before);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn storage_errors_keep_their_kind() {
    let f = fixture().await;
    let engine = QueryEngine::new(f.engine.clone(), QueryOptions::default()).await.unwrap();
    assert_eq!(format_rows(&engine.query("SELECT count(*) FROM devices").await.unwrap()), ["10"]);
    let ddl = engine.query("CREATE TABLE t AS SELECT 1").await.unwrap_err();
    assert_eq!(ddl.kind(), ErrorKind::InvalidInput, "DDL is refused by the options: {ddl}");

    f.engine.close().await.unwrap();
    let error = engine.query("SELECT count(*) FROM readings").await.unwrap_err();
    // Usually recovered as `QueryError::Storage`; when DataFusion shares the error between
    // partitions it stays wrapped. Either way the kind and the message are the engine's.
    assert_eq!(error.kind(), ErrorKind::ShuttingDown, "{error:?}");
    assert!(error.to_string().contains("shut down"), "{error}");
    let error =
        engine.query("INSERT INTO readings VALUES ('2024-01-01T00:00:00Z', 'd', 'm', 1)").await;
    assert_eq!(error.unwrap_err().kind(), ErrorKind::ShuttingDown);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_sql_is_invalid_input() {
    let f = fixture().await;
    for bad in [
        "SELEC 1",
        "SELECT * FROM no_such_table",
        "SELECT no_such_column FROM readings",
        "SELECT * FROM readings WHERE time > 'yesterday-ish'",
        "SELECT 1/0",
        // DataFusion finds no droppable table, and readings exists (clients are refused
        // both before this).
        "DROP TABLE readings",
        "CREATE TABLE readings (x INT)",
    ] {
        let error = error_of(&f.ctx, bad).await;
        println!("{bad}\n  -> {error}");
        assert_eq!(error.kind(), ErrorKind::InvalidInput, "{bad}: {error:?}");
    }
    // The session's tables are fixed, whoever plans the statement.
    for refused in [
        "CREATE TABLE t (x INT)",
        "CREATE TABLE t AS SELECT 1",
        "CREATE VIEW v AS SELECT 1",
        "SELECT 1 AS x INTO t",
    ] {
        let error = error_of(&f.ctx, refused).await;
        assert_eq!(error.kind(), ErrorKind::PermissionDenied, "{refused}: {error:?}");
    }
    // The built-in tables survived the attempts.
    assert_eq!(
        one_value(&f.ctx, "SELECT count(*) FROM readings WHERE device_id = 'sensor_0'").await,
        "1200"
    );
    let tables = rows(&f.ctx, "SELECT table_schema, table_name FROM information_schema.tables WHERE table_schema IN ('public', 'system')").await;
    assert_eq!(
        tables,
        [
            "public|devices",
            "public|readings",
            "system|files",
            "system|metrics",
            "system|series",
            "system|storage"
        ]
    );
    let columns = rows(&f.ctx, "SELECT column_name, data_type, is_nullable FROM information_schema.columns WHERE table_name = 'readings'").await;
    assert_eq!(
        columns,
        [
            "device_id|Utf8|NO",
            "metric|Utf8|NO",
            "time|Timestamp(ns, \"UTC\")|NO",
            "value|Float64|NO",
        ]
    );
}

/// The session itself cannot reach files, even for a statement that skipped the client check
/// (`check_client_statement`): no file is written or read.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_session_has_no_way_to_files() {
    let f = fixture().await;
    let dir = tempfile::tempdir().unwrap();
    let secret = dir.path().join("secret.csv");
    std::fs::write(&secret, "a,b\nthe secret,2\n").unwrap();
    let written = dir.path().join("out");
    let statements = [
        format!("COPY (SELECT * FROM readings) TO '{}/copy.csv'", written.display()),
        format!("COPY (SELECT 1 AS a) TO '{}/copy.parquet' STORED AS PARQUET", written.display()),
        format!("COPY (SELECT 1 AS a) TO 'file://{}/copy.json'", written.display()),
        format!("CREATE EXTERNAL TABLE leak STORED AS CSV LOCATION '{}'", secret.display()),
        format!(
            "CREATE EXTERNAL TABLE leak (a TEXT) STORED AS CSV LOCATION '{}'",
            dir.path().display()
        ),
        format!("INSERT INTO readings SELECT * FROM '{}'", secret.display()),
        format!("SELECT * FROM '{}'", secret.display()),
    ];
    for sql in &statements {
        let error = error_of(&f.ctx, sql).await;
        println!("{sql}\n  -> {error}");
        assert!(!error.to_string().contains("the secret"), "{sql}: {error}");
    }
    assert!(!written.exists(), "nothing was written");
    assert!(error_of(&f.ctx, "SELECT * FROM leak").await.to_string().contains("leak"));
    // Nor is there a local file system for any plan node that takes a path.
    let local = datafusion::execution::object_store::ObjectStoreUrl::local_filesystem();
    let error = f.ctx.runtime_env().object_store(&local).unwrap_err();
    assert_eq!(QueryError::from(error).kind(), ErrorKind::PermissionDenied);
    // The statements are refused before planning too, with what to do instead.
    for sql in &statements[..5] {
        let statement = datafusion::sql::parser::DFParser::parse_sql(sql).unwrap().pop_front();
        let error = minitrue_query::check_client_statement(&statement.unwrap()).unwrap_err();
        assert_eq!(error.kind(), ErrorKind::PermissionDenied, "{sql}: {error}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn limit_stops_a_large_scan_early() {
    let dir = tempfile::tempdir().unwrap();
    let (engine, _) = Engine::open(config(dir.path())).await.unwrap();
    // 1 million points: 100 series × 10 000 seconds, half flushed to Parquet.
    for chunk in 0..10 {
        let mut points = Vec::with_capacity(100_000);
        for d in 0..100 {
            let key = SeriesKey::new(&format!("dev_{d:03}"), "temperature").unwrap();
            for s in chunk * 1000..(chunk + 1) * 1000 {
                points.push(Point::new(key.clone(), T0 + s * SECOND, (s % 100) as f64));
            }
        }
        engine.write(&points).await.unwrap();
        if chunk == 4 {
            engine.flush().await.unwrap();
        }
    }
    let ctx = session(engine.clone(), QueryOptions::default()).await.unwrap();
    assert_eq!(engine.stats().points_written, 1_000_000);

    for (sql, expected_rows) in [
        ("SELECT * FROM readings LIMIT 10", 10),
        ("SELECT * FROM readings WHERE value > 50 LIMIT 10", 10),
        ("SELECT time, value FROM readings WHERE device_id = 'dev_042' LIMIT 5", 5),
    ] {
        let plan = physical_plan(&ctx, sql).await;
        let batches = collect(plan.clone(), ctx.task_ctx()).await.unwrap();
        let returned: usize = batches.iter().map(RecordBatch::num_rows).sum();
        assert_eq!(returned, expected_rows, "{sql}");
        let scan = find_scan(&plan).unwrap();
        let pulled = scan.metrics().unwrap().sum_by_name(STORAGE_ROWS).unwrap().as_usize();
        // A few batches of 8192 rows at most, not the million.
        assert!(pulled <= 4 * 8192, "{sql}: pulled {pulled} rows from storage");
    }
    let plan = physical_plan(&ctx, "SELECT * FROM readings LIMIT 10").await;
    assert!(plan_text(&plan).contains("limit=10"), "{}", plan_text(&plan));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_query_naming_its_series_asks_only_their_owners() {
    let f = fixture().await;
    let (distributed, loopback) =
        loopback::distributed_session(f.engine.clone(), QueryOptions::default()).await;
    let peers_asked = |within: &TokenSet| {
        loopback.assign(within, &[]).unwrap().iter().filter(|share| !share.local).count()
    };
    let all = "SELECT count(*), avg(value) FROM readings";
    assert_eq!(rows(&distributed, all).await, rows(&f.ctx, all).await);
    let whole_ring = peers_asked(&TokenSet::all());
    assert!(whole_ring > 0);
    assert_eq!(loopback.sent.lock().unwrap().len(), whole_ring);
    let mut answered_alone = 0;
    for device in ["sensor_0", "sensor_1", "sensor_2", "sensor_3"] {
        for metric in ["temperature", "humidity"] {
            loopback.sent.lock().unwrap().clear();
            let sql = format!(
                "SELECT count(*), avg(value) FROM readings \
                 WHERE device_id = '{device}' AND metric = '{metric}'"
            );
            assert_eq!(rows(&distributed, &sql).await, rows(&f.ctx, &sql).await, "{sql}");
            // Only the owner of the series' range: none when this node owns it.
            let token = minitrue_common::series_token(device, metric);
            let owners = peers_asked(&TokenSet::from_intervals([(token, token)]));
            assert_eq!(loopback.sent.lock().unwrap().len(), owners, "{sql}");
            answered_alone += usize::from(owners == 0);
        }
    }
    assert!(answered_alone > 0, "some series live in this node's ranges");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn devices_in_a_cluster_has_every_series_once_even_with_a_peer_down() {
    let f = fixture().await;
    let (distributed, loopback) =
        loopback::distributed_session(f.engine.clone(), QueryOptions::default()).await;
    let sql = "SELECT device_id, metric, first_time, last_time, last_value, points FROM devices";
    let want = rows(&f.ctx, sql).await;
    assert_eq!(want.len(), 10, "4 sensors × 2 metrics, old_device and live_device");
    assert_eq!(rows(&distributed, sql).await, want);
    assert!(!loopback.sent.lock().unwrap().is_empty(), "peers were asked");
    // A peer down: the other owners of its ranges answer for them.
    loopback.down.lock().unwrap().insert("peer_a".to_string());
    assert_eq!(rows(&distributed, sql).await, want);
    // `system.series` is this node's own series only (here: the same engine, so all of them).
    assert_eq!(rows(&distributed, "SELECT device_id, metric, first_time, last_time, last_value, points FROM system.series").await, want);
}
