//! B3 and B4: ingest throughput, end to end.
//!
//! **B3, MQTT.** A Mosquitto started for each measurement (fresh, so no session or queue
//! carries over), an in-process rumqttc publisher (QoS 1, 1000 in flight, several
//! connections) sending pre-built seed JSON messages to `iot/sensors/{metric}`: one point per
//! message, or JSON arrays of 100 or 1000 points. Two subscribers take the same messages in
//! turn:
//! * the reference, the broker's ceiling: a rumqttc subscriber (QoS 1, same in-flight window)
//!   that acknowledges and discards each message;
//! * MiniTrue: [`run_subscriber`] (manual acks after the durable write) into the storage
//!   engine through the node's own [`EngineSink`], with the default WAL sync policy (fsync
//!   per group commit), so a point counts once it is acknowledged-after-WAL.
//!
//! The clock runs from the first publish to the last point received (reference) or durably
//! written (MiniTrue). Each round measures both; the best round of each is reported.
//!
//! **B4, HTTP.** The same line-protocol bodies (`<metric>,device_id=<id> value=<v> <ns>`,
//! 10,000 lines each) POSTed over a few keep-alive HTTP/1.1 connections to a `minitrue serve`
//! child process (`/api/v2/write`, answered after the WAL) and to VictoriaMetrics (`/write`,
//! answered before its data is durable: it buffers in memory and flushes about every second).
//! Both servers are separate processes, so their CPU time (from `/proc/<pid>/stat`) gives
//! points per CPU-second beside the wall-clock rate.

use std::fmt::Write as _;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context};
use bytes::Bytes;
use futures::future::BoxFuture;
use minitrue_ingest::mqtt::{
    run_subscriber, IngestCounters, PointSink, SinkError, SubscriberConfig, WriteBatch,
};
use minitrue_ingest::{FormatConfig, Parser};
use minitrue_storage::{Engine, EngineConfig};
use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};
use tokio::sync::{oneshot, watch};

use super::{machine_description, Scale};
use crate::serve::EngineSink;

/// Command-line settings of `minitrue bench ingest`.
pub struct Options {
    pub scale: Scale,
    pub mosquitto: PathBuf,
    pub victoria_metrics: Option<PathBuf>,
    /// MQTT publisher connections.
    pub publishers: usize,
    /// Concurrent HTTP connections (B4).
    pub http_connections: usize,
    /// Rounds per measurement (the best is reported); default 3 at full scale, 1 at tiny.
    pub rounds: Option<usize>,
    /// Skip B3 (MQTT) or B4 (HTTP).
    pub skip_mqtt: bool,
    pub skip_http: bool,
}

const METRICS: [&str; 4] = ["temperature", "humidity", "pressure", "motion"];
/// How long one measurement may take before the benchmark gives up.
const MEASUREMENT_TIMEOUT: Duration = Duration::from_secs(600);
/// How long a measurement may go without a point arriving before it is declared stalled.
const STALL_TIMEOUT: Duration = Duration::from_secs(30);
/// Largest MQTT packet the benchmark's clients accept and send.
const MAX_PACKET_BYTES: usize = 4 << 20;

/// The B3 scenarios: points per message, devices, seconds of 1 Hz data (× 4 metrics).
fn mqtt_scenarios(scale: Scale) -> [(usize, usize, usize); 3] {
    match scale {
        Scale::Tiny => [(1, 10, 50), (100, 10, 500), (1000, 10, 1000)],
        // 200 k single-point messages; 2 M points in batches of 100; 4 M in batches of 1000.
        Scale::Full => [(1, 1000, 50), (100, 1000, 500), (1000, 1000, 1000)],
    }
}

/// B4: devices, seconds of 1 Hz data (× 4 metrics), lines per request.
fn http_shape(scale: Scale) -> (usize, usize, usize) {
    match scale {
        Scale::Tiny => (10, 120, 1000),
        // B2's data set: 100 devices × 4 metrics × 1 hour = 1.44 M points.
        Scale::Full => (100, 3600, 10_000),
    }
}

pub fn run(options: &Options) -> anyhow::Result<String> {
    let rounds = options.rounds.unwrap_or(match options.scale {
        Scale::Tiny => 1,
        Scale::Full => 3,
    });
    ensure!(rounds > 0 && options.publishers > 0 && options.http_connections > 0);
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;

    let mut mqtt_rows = Vec::new();
    let scenarios = if options.skip_mqtt { &[][..] } else { &mqtt_scenarios(options.scale)[..] };
    for &(per_message, devices, seconds) in scenarios {
        let readings = readings(devices, seconds);
        let messages = Arc::new(json_messages(&readings, per_message));
        let points = readings.len() as u64;
        let (mut ceiling, mut minitrue) = (0.0f64, 0.0f64);
        for round in 0..rounds {
            let reference = runtime
                .block_on(measure_mqtt(options, &messages, points, Subscriber::Discard))
                .with_context(|| format!("broker ceiling, {per_message} point(s)/message"))?;
            let ours = runtime
                .block_on(measure_mqtt(options, &messages, points, Subscriber::MiniTrue))
                .with_context(|| format!("MiniTrue, {per_message} point(s)/message"))?;
            eprintln!(
                "B3 {per_message} pt/msg round {}: ceiling {:.0} pt/s, MiniTrue {:.0} pt/s",
                round + 1,
                reference,
                ours
            );
            ceiling = ceiling.max(reference);
            minitrue = minitrue.max(ours);
        }
        mqtt_rows.push(MqttRow {
            per_message,
            messages: messages.len(),
            points,
            ceiling,
            minitrue,
        });
    }

    let (devices, seconds, lines_per_request) = http_shape(options.scale);
    let readings = readings(devices, seconds);
    let bodies = Arc::new(line_protocol_bodies(&readings, lines_per_request));
    let points = readings.len() as u64;
    let mut minitrue: Option<HttpRun> = None;
    let mut victoria: Option<HttpRun> = None;
    for round in 0..if options.skip_http { 0 } else { rounds } {
        let ours = measure_http_minitrue(&bodies, points, options.http_connections)
            .context("B4 MiniTrue")?;
        eprintln!(
            "B4 round {}: MiniTrue {:.0} pt/s ({:.2} CPU s)",
            round + 1,
            ours.points_per_second(),
            ours.server_cpu_seconds
        );
        minitrue = Some(best(minitrue, ours));
        if let Some(binary) = &options.victoria_metrics {
            let theirs = measure_http_victoria(binary, &bodies, points, options.http_connections)
                .context("B4 VictoriaMetrics")?;
            eprintln!(
                "B4 round {}: VictoriaMetrics {:.0} pt/s ({:.2} CPU s)",
                round + 1,
                theirs.points_per_second(),
                theirs.server_cpu_seconds
            );
            victoria = Some(best(victoria, theirs));
        }
    }
    let http = minitrue.map(|minitrue| HttpResult {
        points,
        requests: bodies.len(),
        lines_per_request,
        connections: options.http_connections,
        minitrue,
        victoria,
    });
    Ok(render(options, rounds, &mqtt_rows, http.as_ref()))
}

// ---------------------------------------------------------------------------------------
// Data

/// One smart-city reading: device index, metric index, time, value (already rounded).
struct Reading {
    device: usize,
    metric: usize,
    time_ms: i64,
    value: f64,
}

/// `devices` × 4 metrics at 1 Hz for `seconds`, ending a minute ago (inside every clock
/// window), time-major. The smart-city shapes: random walks with 2 decimals (temperature,
/// pressure) or 1 (humidity), motion 0/1 with rare events. Deterministic but for the start.
fn readings(devices: usize, seconds: usize) -> Vec<Reading> {
    let now_s = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(1_700_000_000);
    let start_ms = (now_s - 60 - seconds as i64) * 1000;
    let mut rng = XorShift(0x9E37_79B9_7F4A_7C15);
    let starts = [21.0, 55.0, 1013.0, 0.0];
    let steps = [0.02, 0.1, 0.05, 0.0];
    let scales = [100.0, 10.0, 100.0, 1.0];
    let mut levels: Vec<[f64; 4]> = (0..devices)
        .map(|_| std::array::from_fn(|m| starts[m] + if m == 3 { 0.0 } else { 2.0 * rng.normal() }))
        .collect();
    let mut out = Vec::with_capacity(devices * seconds * METRICS.len());
    for second in 0..seconds {
        let time_ms = start_ms + second as i64 * 1000;
        for (device, level) in levels.iter_mut().enumerate() {
            for metric in 0..METRICS.len() {
                let value = if metric == 3 {
                    f64::from(u8::from(rng.uniform() < 0.02))
                } else {
                    level[metric] += steps[metric] * rng.normal();
                    (level[metric] * scales[metric]).round() / scales[metric]
                };
                out.push(Reading { device, metric, time_ms, value });
            }
        }
    }
    out
}

/// xorshift64* with Box–Muller normals.
struct XorShift(u64);

impl XorShift {
    fn uniform(&mut self) -> f64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        let bits = self.0.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 11;
        (bits as f64 + 0.5) / (1u64 << 53) as f64
    }

    fn normal(&mut self) -> f64 {
        let (u, v) = (self.uniform(), self.uniform());
        (-2.0 * u.ln()).sqrt() * (2.0 * std::f64::consts::PI * v).cos()
    }
}

/// A pre-built MQTT message.
struct Message {
    topic: String,
    payload: Bytes,
}

fn seed_json(out: &mut String, r: &Reading) {
    let _ = write!(
        out,
        r#"{{"device_id":"sensor_{:05}","metric_name":"{}","timestamp":{},"value":{}}}"#,
        r.device, METRICS[r.metric], r.time_ms, r.value
    );
}

/// Seed JSON messages on `iot/sensors/{metric}`: one object per message when `per_message`
/// is 1, else JSON arrays of `per_message` points of one metric (a gateway batching its
/// devices' readings), the metrics' batches interleaved.
fn json_messages(readings: &[Reading], per_message: usize) -> Vec<Message> {
    let topic = |metric: usize| format!("iot/sensors/{}", METRICS[metric]);
    if per_message == 1 {
        return readings
            .iter()
            .map(|r| {
                let mut payload = String::with_capacity(100);
                seed_json(&mut payload, r);
                Message { topic: topic(r.metric), payload: Bytes::from(payload) }
            })
            .collect();
    }
    let mut per_metric: Vec<Vec<Message>> = (0..METRICS.len()).map(|_| Vec::new()).collect();
    for (metric, batches) in per_metric.iter_mut().enumerate() {
        let of_metric: Vec<&Reading> = readings.iter().filter(|r| r.metric == metric).collect();
        for chunk in of_metric.chunks(per_message) {
            let mut payload = String::with_capacity(100 * chunk.len());
            payload.push('[');
            for (i, r) in chunk.iter().enumerate() {
                if i > 0 {
                    payload.push(',');
                }
                seed_json(&mut payload, r);
            }
            payload.push(']');
            batches.push(Message { topic: topic(metric), payload: Bytes::from(payload) });
        }
    }
    let longest = per_metric.iter().map(Vec::len).max().unwrap_or(0);
    let mut iters: Vec<_> = per_metric.into_iter().map(Vec::into_iter).collect();
    let mut out = Vec::new();
    for _ in 0..longest {
        out.extend(iters.iter_mut().filter_map(Iterator::next));
    }
    out
}

/// InfluxDB line protocol, `lines` points per body, nanosecond timestamps.
fn line_protocol_bodies(readings: &[Reading], lines: usize) -> Vec<Bytes> {
    readings
        .chunks(lines)
        .map(|chunk| {
            let mut body = String::with_capacity(64 * chunk.len());
            for r in chunk {
                let _ = writeln!(
                    body,
                    "{},device_id=sensor_{:05} value={} {}",
                    METRICS[r.metric],
                    r.device,
                    r.value,
                    r.time_ms * 1_000_000
                );
            }
            Bytes::from(body)
        })
        .collect()
}

// ---------------------------------------------------------------------------------------
// B3: MQTT through Mosquitto

#[derive(Clone, Copy)]
enum Subscriber {
    /// Acknowledges and drops every message: the broker's ceiling.
    Discard,
    /// MiniTrue's subscriber into the storage engine.
    MiniTrue,
}

struct MqttRow {
    per_message: usize,
    messages: usize,
    points: u64,
    ceiling: f64,
    minitrue: f64,
}

/// Mosquitto on a free loopback port, with the settings MiniTrue's subscriber documents.
struct Mosquitto {
    child: Child,
    port: u16,
    _dir: tempfile::TempDir,
}

impl Mosquitto {
    fn start(binary: &Path) -> anyhow::Result<Mosquitto> {
        let dir = tempfile::tempdir()?;
        let port = free_port()?;
        let config = dir.path().join("mosquitto.conf");
        std::fs::write(
            &config,
            format!(
                "listener {port} 127.0.0.1\nallow_anonymous true\npersistence false\n\
                 max_inflight_messages 1000\nmax_queued_messages 0\nset_tcp_nodelay true\n\
                 log_dest none\n"
            ),
        )?;
        let child = Command::new(binary)
            .arg("-c")
            .arg(&config)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .with_context(|| format!("starting {}", binary.display()))?;
        let mut broker = Mosquitto { child, port, _dir: dir };
        let address = SocketAddr::from(([127, 0, 0, 1], port));
        let deadline = Instant::now() + Duration::from_secs(20);
        while TcpStream::connect(address).is_err() {
            if let Some(status) = broker.child.try_wait()? {
                bail!("mosquitto exited at start: {status}");
            }
            ensure!(Instant::now() < deadline, "mosquitto did not listen on {address}");
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(broker)
    }
}

impl Drop for Mosquitto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

fn client_options(client_id: String, port: u16) -> MqttOptions {
    let mut options = MqttOptions::new(client_id, "127.0.0.1", port);
    options
        .set_keep_alive(Duration::from_secs(30))
        .set_inflight(1000)
        .set_request_channel_capacity(1000)
        .set_max_packet_size(MAX_PACKET_BYTES, MAX_PACKET_BYTES);
    options
}

/// One measurement on a fresh broker: points per second from the first publish to the last
/// point taken by `subscriber`.
async fn measure_mqtt(
    options: &Options,
    messages: &Arc<Vec<Message>>,
    points: u64,
    subscriber: Subscriber,
) -> anyhow::Result<f64> {
    let broker = Mosquitto::start(&options.mosquitto)?;
    let port = broker.port;
    let (stop, stopped) = oneshot::channel::<()>();
    let stopped = async move {
        let _ = stopped.await;
    };
    // Points taken so far, and the subscriber task.
    let (taken, mut taken_rx) = watch::channel(0u64);
    let (task, engine) = match subscriber {
        Subscriber::Discard => {
            let expected = messages.len() as u64;
            let (ready, ready_rx) = oneshot::channel();
            let task =
                tokio::spawn(discard_subscriber(port, expected, points, taken, ready, stopped));
            ready_rx.await.context("the discarding subscriber did not subscribe")?;
            (task, None)
        }
        Subscriber::MiniTrue => {
            let dir = tempfile::tempdir()?;
            let (engine, _) = Engine::open(EngineConfig::new(dir.path())).await?;
            let sink: Arc<dyn PointSink> =
                Arc::new(CountingSink { inner: EngineSink(engine.clone()), stored: taken });
            let parser = Arc::new(Parser::new(FormatConfig::default())?);
            let counters = Arc::new(IngestCounters::default());
            let config =
                SubscriberConfig::new(format!("mqtt://127.0.0.1:{port}"), "minitrue-bench");
            let task = tokio::spawn({
                let counters = counters.clone();
                async move {
                    run_subscriber(config, parser, sink, counters, stopped)
                        .await
                        .map_err(anyhow::Error::from)
                }
            });
            let deadline = Instant::now() + Duration::from_secs(20);
            while counters.subscriptions_acknowledged.load(Ordering::Relaxed) == 0 {
                ensure!(Instant::now() < deadline, "MiniTrue's subscriber did not subscribe");
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            (task, Some((engine, dir)))
        }
    };

    let started = Instant::now();
    let publishing = tokio::spawn(publish_all(port, messages.clone(), options.publishers));
    // Waits for every point, failing when none arrives for STALL_TIMEOUT.
    let mut reached = Ok(false);
    while started.elapsed() < MEASUREMENT_TIMEOUT {
        match tokio::time::timeout(STALL_TIMEOUT, taken_rx.changed()).await {
            Ok(Ok(())) if *taken_rx.borrow_and_update() >= points => {
                reached = Ok(true);
                break;
            }
            Ok(Ok(())) => {}
            Ok(Err(_)) => break,
            Err(elapsed) => {
                reached = Err(elapsed);
                break;
            }
        }
    }
    let elapsed = started.elapsed();
    let taken_points = *taken_rx.borrow();
    // The clock has stopped; give the last acknowledgements a moment to go out so that
    // stopping the subscriber does not log them as failed (nothing to await for them).
    tokio::time::sleep(Duration::from_millis(200)).await;
    publishing.abort();
    let published = publishing.await;
    let _ = stop.send(());
    let _ = task.await;
    if let Some((engine, _dir)) = engine {
        engine.close().await?;
    }
    drop(broker);
    if !matches!(reached, Ok(true)) {
        if let Ok(Err(error)) = published {
            return Err(error.context("publishing"));
        }
        bail!(
            "stalled: {taken_points} of {points} points arrived, none in the last {STALL_TIMEOUT:?} \
             (or the run exceeded {MEASUREMENT_TIMEOUT:?})"
        );
    }
    ensure!(taken_points == points, "{taken_points} points arrived, {points} were sent");
    Ok(points as f64 / elapsed.as_secs_f64())
}

/// Publishes every message at QoS 1 over `connections` clients (messages dealt round-robin)
/// and returns once the broker acknowledged all of them.
async fn publish_all(
    port: u16,
    messages: Arc<Vec<Message>>,
    connections: usize,
) -> anyhow::Result<()> {
    let mut tasks = Vec::new();
    for connection in 0..connections {
        let messages = messages.clone();
        tasks.push(tokio::spawn(async move {
            let mine = messages.iter().skip(connection).step_by(connections);
            let expected = mine.clone().count();
            let options = client_options(format!("bench-publisher-{connection}"), port);
            let (client, mut eventloop) = AsyncClient::new(options, 1000);
            let acks = tokio::spawn(async move {
                let mut acked = 0;
                while acked < expected {
                    match eventloop.poll().await {
                        Ok(Event::Incoming(Packet::PubAck(_))) => acked += 1,
                        Ok(_) => {}
                        Err(error) => return Err(anyhow::Error::from(error)),
                    }
                }
                Ok(eventloop)
            });
            for message in mine {
                client
                    .publish_bytes(
                        message.topic.clone(),
                        QoS::AtLeastOnce,
                        false,
                        message.payload.clone(),
                    )
                    .await?;
            }
            let mut eventloop = acks.await??;
            client.disconnect().await?;
            // Let the DISCONNECT go out.
            let _ = tokio::time::timeout(Duration::from_secs(1), eventloop.poll()).await;
            anyhow::Ok(())
        }));
    }
    for task in tasks {
        task.await??;
    }
    Ok(())
}

/// The broker's ceiling: subscribes at QoS 1 like MiniTrue, acknowledges each message as it
/// arrives and drops it; counts `points` once all `expected` messages arrived.
async fn discard_subscriber(
    port: u16,
    expected: u64,
    points: u64,
    taken: watch::Sender<u64>,
    ready: oneshot::Sender<()>,
    stopped: impl std::future::Future<Output = ()>,
) -> anyhow::Result<()> {
    let options = client_options("bench-discard".to_string(), port);
    let (client, mut eventloop) = AsyncClient::new(options, 1000);
    client.subscribe("iot/sensors/+", QoS::AtLeastOnce).await?;
    let mut ready = Some(ready);
    let mut received = 0u64;
    let receive = async {
        loop {
            match eventloop.poll().await? {
                Event::Incoming(Packet::SubAck(_)) => {
                    if let Some(ready) = ready.take() {
                        let _ = ready.send(());
                    }
                }
                Event::Incoming(Packet::Publish(publish)) => {
                    drop(publish);
                    received += 1;
                    if received == expected {
                        taken.send_replace(points);
                    }
                }
                _ => {}
            }
        }
    };
    tokio::select! {
        result = receive => result,
        _ = stopped => Ok(()),
    }
}

/// The node's [`EngineSink`], counting the points it has made durable.
struct CountingSink {
    inner: EngineSink,
    stored: watch::Sender<u64>,
}

impl PointSink for CountingSink {
    fn write(&self, batch: WriteBatch) -> BoxFuture<'_, Result<(), SinkError>> {
        Box::pin(async move {
            let points = batch.points.len() as u64;
            self.inner.write(batch).await?;
            self.stored.send_modify(|stored| *stored += points);
            Ok(())
        })
    }
}

// ---------------------------------------------------------------------------------------
// B4: HTTP line protocol

struct HttpRun {
    seconds: f64,
    points: u64,
    server_cpu_seconds: f64,
}

impl HttpRun {
    fn points_per_second(&self) -> f64 {
        self.points as f64 / self.seconds
    }

    fn points_per_cpu_second(&self) -> f64 {
        self.points as f64 / self.server_cpu_seconds.max(1e-9)
    }
}

fn best(current: Option<HttpRun>, new: HttpRun) -> HttpRun {
    match current {
        Some(current) if current.points_per_second() >= new.points_per_second() => current,
        _ => new,
    }
}

struct HttpResult {
    points: u64,
    requests: usize,
    lines_per_request: usize,
    connections: usize,
    minitrue: HttpRun,
    victoria: Option<HttpRun>,
}

/// A child process killed when dropped.
struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn measure_http_minitrue(
    bodies: &Arc<Vec<Bytes>>,
    points: u64,
    connections: usize,
) -> anyhow::Result<HttpRun> {
    let dir = tempfile::tempdir()?;
    let ready = dir.path().join("ready.json");
    let child = Command::new(std::env::current_exe()?)
        .arg("serve")
        .args(["--node-id", "bench", "--mode", "ingest"])
        .args(["--http-port", "0", "--pg-port", "0", "--mqtt-port", "0", "--gossip-port", "0"])
        .arg("--data-dir")
        .arg(dir.path().join("data"))
        .arg("--ready-file")
        .arg(&ready)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .context("starting minitrue serve")?;
    let mut server = Server(child);
    let deadline = Instant::now() + Duration::from_secs(60);
    let address: SocketAddr = loop {
        if let Ok(text) = std::fs::read_to_string(&ready) {
            if let Ok(json) = serde_json::from_str::<serde_json::Value>(&text) {
                if let Some(http) = json.get("http").and_then(|v| v.as_str()) {
                    break http.parse()?;
                }
            }
        }
        if let Some(status) = server.0.try_wait()? {
            bail!("minitrue serve exited at start: {status}");
        }
        ensure!(Instant::now() < deadline, "minitrue serve did not become ready");
        std::thread::sleep(Duration::from_millis(20));
    };
    let mut run =
        post_all(address, "/api/v2/write?precision=ns", bodies, connections, server.0.id())?;
    let metrics = http_get(address, "/metrics")?;
    run.points = metric_sum(&metrics, "minitrue_ingest_points_accepted_total{", "door=\"http\"");
    ensure!(run.points == points, "MiniTrue accepted {} of {points} points", run.points);
    drop(server);
    Ok(run)
}

fn measure_http_victoria(
    binary: &Path,
    bodies: &Arc<Vec<Bytes>>,
    points: u64,
    connections: usize,
) -> anyhow::Result<HttpRun> {
    let dir = tempfile::tempdir()?;
    let port = free_port()?;
    let child = Command::new(binary)
        .arg(format!("-storageDataPath={}", dir.path().join("vm").display()))
        .arg(format!("-httpListenAddr=127.0.0.1:{port}"))
        .arg("-retentionPeriod=100y")
        .arg("-loggerLevel=ERROR")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .with_context(|| format!("starting {}", binary.display()))?;
    let mut server = Server(child);
    let address = SocketAddr::from(([127, 0, 0, 1], port));
    let deadline = Instant::now() + Duration::from_secs(60);
    while http_get(address, "/health").is_err() {
        if let Some(status) = server.0.try_wait()? {
            bail!("VictoriaMetrics exited at start: {status}");
        }
        ensure!(Instant::now() < deadline, "VictoriaMetrics did not start");
        std::thread::sleep(Duration::from_millis(50));
    }
    let mut run = post_all(address, "/write", bodies, connections, server.0.id())?;
    let metrics = http_get(address, "/metrics")?;
    run.points = metric_sum(&metrics, "vm_rows_inserted_total{", "type=\"influx\"");
    ensure!(run.points == points, "VictoriaMetrics inserted {} of {points} points", run.points);
    drop(server);
    Ok(run)
}

/// Sums the samples of the lines starting with `prefix` and containing `label`.
fn metric_sum(metrics: &str, prefix: &str, label: &str) -> u64 {
    metrics
        .lines()
        .filter(|l| l.starts_with(prefix) && l.contains(label))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum::<f64>() as u64
}

/// POSTs every body once over `connections` keep-alive connections; the server's CPU time
/// (process `pid`) is read before and after.
fn post_all(
    address: SocketAddr,
    path: &str,
    bodies: &Arc<Vec<Bytes>>,
    connections: usize,
    pid: u32,
) -> anyhow::Result<HttpRun> {
    let next = AtomicUsize::new(0);
    let cpu_before = process_cpu_seconds(pid)?;
    let started = Instant::now();
    std::thread::scope(|scope| {
        let workers: Vec<_> = (0..connections)
            .map(|_| {
                scope.spawn(|| -> anyhow::Result<()> {
                    let mut connection = HttpConnection::open(address)?;
                    loop {
                        let i = next.fetch_add(1, Ordering::Relaxed);
                        let Some(body) = bodies.get(i) else { return Ok(()) };
                        let (status, answer) = connection.request("POST", path, body)?;
                        ensure!(
                            (200..300).contains(&status),
                            "POST {path}: {status} {}",
                            String::from_utf8_lossy(&answer)
                        );
                    }
                })
            })
            .collect();
        for worker in workers {
            worker.join().map_err(|_| anyhow::anyhow!("an http client thread panicked"))??;
        }
        anyhow::Ok(())
    })?;
    let seconds = started.elapsed().as_secs_f64();
    let server_cpu_seconds = process_cpu_seconds(pid)? - cpu_before;
    Ok(HttpRun { seconds, points: 0, server_cpu_seconds })
}

/// User + system CPU time of a process, from `/proc/<pid>/stat` (in USER_HZ = 100 ticks/s,
/// the value Linux exposes to user space on every architecture it runs this on).
fn process_cpu_seconds(pid: u32) -> anyhow::Result<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    // Fields after the command name (which may contain spaces) start at field 3 (state).
    let after_name = stat.rsplit_once(')').map(|(_, rest)| rest).context("bad /proc stat")?;
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    let ticks = |i: usize| -> anyhow::Result<u64> {
        Ok(fields.get(i).context("short /proc stat")?.parse::<u64>()?)
    };
    // utime is field 14, stime field 15 (1-based), i.e. 11 and 12 from field 3.
    Ok((ticks(11)? + ticks(12)?) as f64 / 100.0)
}

fn http_get(address: SocketAddr, path: &str) -> anyhow::Result<String> {
    let (status, body) = HttpConnection::open(address)?.request("GET", path, b"")?;
    ensure!(status == 200, "GET {path}: {status}");
    Ok(String::from_utf8_lossy(&body).into_owned())
}

/// A minimal keep-alive HTTP/1.1 client connection (the benchmark's only HTTP needs).
struct HttpConnection {
    writer: TcpStream,
    reader: BufReader<TcpStream>,
    host: String,
}

impl HttpConnection {
    fn open(address: SocketAddr) -> anyhow::Result<HttpConnection> {
        let writer = TcpStream::connect(address)?;
        writer.set_nodelay(true)?;
        writer.set_read_timeout(Some(MEASUREMENT_TIMEOUT))?;
        let reader = BufReader::new(writer.try_clone()?);
        Ok(HttpConnection { writer, reader, host: address.to_string() })
    }

    /// Sends one request and reads the status and body of the answer.
    fn request(&mut self, method: &str, path: &str, body: &[u8]) -> anyhow::Result<(u16, Vec<u8>)> {
        let head = format!(
            "{method} {path} HTTP/1.1\r\nHost: {}\r\nContent-Type: text/plain; charset=utf-8\r\n\
             Content-Length: {}\r\n\r\n",
            self.host,
            body.len()
        );
        self.writer.write_all(head.as_bytes())?;
        self.writer.write_all(body)?;
        let mut line = String::new();
        self.reader.read_line(&mut line)?;
        let status: u16 = line
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .with_context(|| format!("bad status line {line:?}"))?;
        let (mut length, mut chunked) = (None, false);
        loop {
            line.clear();
            ensure!(self.reader.read_line(&mut line)? > 0, "connection closed in the headers");
            let header = line.trim_end();
            if header.is_empty() {
                break;
            }
            if let Some((name, value)) = header.split_once(':') {
                let (name, value) = (name.trim().to_ascii_lowercase(), value.trim());
                if name == "content-length" {
                    length = Some(value.parse::<usize>()?);
                } else if name == "transfer-encoding" && value.eq_ignore_ascii_case("chunked") {
                    chunked = true;
                }
            }
        }
        let mut answer = Vec::new();
        if chunked {
            loop {
                line.clear();
                self.reader.read_line(&mut line)?;
                let size = usize::from_str_radix(line.trim().split(';').next().unwrap_or(""), 16)
                    .with_context(|| format!("bad chunk size {line:?}"))?;
                let mut chunk = vec![0; size + 2]; // data and its CRLF
                self.reader.read_exact(&mut chunk)?;
                if size == 0 {
                    break;
                }
                answer.extend_from_slice(&chunk[..size]);
            }
        } else if let Some(length) = length {
            answer.resize(length, 0);
            self.reader.read_exact(&mut answer)?;
        }
        Ok((status, answer))
    }
}

// ---------------------------------------------------------------------------------------
// Report

fn render(options: &Options, rounds: usize, mqtt: &[MqttRow], http: Option<&HttpResult>) -> String {
    let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
    let verdict = |ok: bool| if ok { "met" } else { "**missed**" };
    let mut out = String::new();
    if !mqtt.is_empty() {
        let _ = writeln!(
            out,
            "## B3 MQTT ingest through Mosquitto ({:?} scale; {}; best of {rounds} round(s))\n",
            options.scale,
            machine_description()
        );
        let _ = writeln!(
            out,
            "{} publisher connection(s), QoS 1, 1000 in flight; seed JSON on `iot/sensors/{{metric}}`. \
             Ceiling: a subscriber that acknowledges and discards; MiniTrue: acknowledged after the \
             WAL (fsync per group commit).\n",
            options.publishers
        );
        let _ = writeln!(
            out,
            "| points/message | messages | points | broker ceiling points/s | MiniTrue points/s | MiniTrue ÷ ceiling | target | |"
        );
        let _ = writeln!(out, "|---:|---:|---:|---:|---:|---:|---|---|");
        for row in mqtt {
            let ratio = row.minitrue / row.ceiling.max(1e-9);
            let (target, ok) = if row.per_message == 1 {
                ("≥ 0.7 × ceiling".to_string(), ratio >= 0.7)
            } else {
                ("≥ 500,000 points/s".to_string(), row.minitrue >= 500_000.0)
            };
            let _ = writeln!(
                out,
                "| {} | {} | {} | {:.0} | {:.0} | {:.2} | {target} | {} |",
                row.per_message,
                row.messages,
                row.points,
                row.ceiling,
                row.minitrue,
                ratio,
                verdict(ok)
            );
        }
    }
    let Some(http) = http else { return out };
    let _ = writeln!(
        out,
        "\n## B4 HTTP line-protocol ingest ({:?} scale; {}; best of {rounds} round(s))\n",
        options.scale,
        machine_description()
    );
    let _ = writeln!(
        out,
        "{} points in {} requests of {} lines, {} keep-alive connection(s). MiniTrue answers \
         after the WAL (fsync); VictoriaMetrics answers before its data is durable. CPU: the \
         server process's user + system time during the run.\n",
        http.points, http.requests, http.lines_per_request, http.connections
    );
    let _ = writeln!(
        out,
        "| server | seconds | points/s | points/s ÷ {cores} cores | server CPU s | points per CPU-second |"
    );
    let _ = writeln!(out, "|---|---:|---:|---:|---:|---:|");
    let mut row = |name: &str, run: &HttpRun| {
        let _ = writeln!(
            out,
            "| {name} | {:.3} | {:.0} | {:.0} | {:.2} | {:.0} |",
            run.seconds,
            run.points_per_second(),
            run.points_per_second() / cores as f64,
            run.server_cpu_seconds,
            run.points_per_cpu_second()
        );
    };
    row("MiniTrue `/api/v2/write`", &http.minitrue);
    if let Some(victoria) = &http.victoria {
        row("VictoriaMetrics `/write`", victoria);
    }
    if let Some(victoria) = &http.victoria {
        let ratio = http.minitrue.points_per_second() / victoria.points_per_second();
        let _ = writeln!(
            out,
            "\nMiniTrue ÷ VictoriaMetrics: {ratio:.2} (points/s; target ≥ 0.5: {}), {:.2} per CPU-second",
            verdict(ratio >= 0.5),
            http.minitrue.points_per_cpu_second() / victoria.points_per_cpu_second()
        );
    }
    out
}
