//! `minitrue publish`: the sensor side. Publishes points over MQTT in the seed's format
//! (`iot/sensors/{metric}`, JSON `{"device_id","metric_name","timestamp","value"}`, or a JSON
//! array of them when batching) from one of three sources:
//!
//! - `simulate`: deterministic simulated sensors (defaults like the seed: 3 sensors,
//!   temperature, every second);
//! - `serial`: an Arduino (or anything) on a serial port printing `device,metric,value` or
//!   seed-JSON lines;
//! - `csv`: replay of a `timestamp,value` file (the NAB format) with a speed-up factor.
//!
//! Every publish is QoS 1; the command waits for the broker's acknowledgements before it
//! exits and prints what was published and acknowledged.

use std::io::BufRead;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use clap::{Args, Subcommand};
use minitrue_ingest::client::{client_options, BrokerTls};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use rumqttc::{AsyncClient, Event, Packet, QoS};
use serde_json::json;
use tokio::sync::watch;

use crate::settings::span::parse_duration;

#[derive(Args, Debug, Clone)]
pub struct PublishArgs {
    /// Broker URL: mqtt://[user:password@]host:port or mqtts://… (a node's embedded broker
    /// listens on 1883, and with TLS on 8883).
    #[arg(long, default_value = "mqtt://127.0.0.1:1883", global = true)]
    pub broker: String,
    /// MQTT client id (default: minitrue-publish-<pid>).
    #[arg(long = "client-id", global = true)]
    pub client_id: Option<String>,
    /// Topic prefix; points go to `<prefix>/<metric>`.
    #[arg(long = "topic-prefix", default_value = "iot/sensors", global = true)]
    pub topic_prefix: String,
    /// MQTT user name (a node with users admits writers and admins).
    #[arg(long, env = "MINITRUE_MQTT_USERNAME", global = true)]
    pub username: Option<String>,
    /// The password for --username: a file whose first line it is (or MINITRUE_MQTT_PASSWORD).
    #[arg(long = "password-file", global = true)]
    pub password_file: Option<std::path::PathBuf>,
    /// The login resolved from --username and the password (set by `serve` for its own
    /// simulated sensors).
    #[arg(skip)]
    pub login: Option<minitrue_ingest::mqtt::MqttLogin>,
    /// PEM CA certificate an mqtts:// broker's certificate must chain to (default: the
    /// machine's trusted roots).
    #[arg(long = "broker-ca", global = true)]
    pub broker_ca: Option<std::path::PathBuf>,
    /// PEM client certificate for an mqtts:// broker that asks for one (with --broker-key).
    #[arg(long = "broker-cert", global = true)]
    pub broker_cert: Option<std::path::PathBuf>,
    /// PEM private key of --broker-cert.
    #[arg(long = "broker-key", global = true)]
    pub broker_key: Option<std::path::PathBuf>,
    #[command(subcommand)]
    pub source: Source,
}

#[derive(Subcommand, Debug, Clone)]
pub enum Source {
    /// Simulated sensors.
    Simulate(SimulateArgs),
    /// Lines from a serial port: `device,metric,value` or a seed JSON object per line.
    Serial(SerialArgs),
    /// Replay a CSV file of `timestamp,value` rows (NAB format) as one series.
    Csv(CsvArgs),
}

#[derive(Args, Debug, Clone)]
pub struct SimulateArgs {
    /// Number of devices, named `<device-prefix>1` … `<device-prefix>N`.
    #[arg(long, default_value_t = 3)]
    pub devices: u32,
    #[arg(long = "device-prefix", default_value = "sensor_")]
    pub device_prefix: String,
    /// Metrics each device reports (temperature, humidity, pressure, motion, or any name).
    #[arg(long, value_delimiter = ',', default_value = "temperature")]
    pub metrics: Vec<String>,
    /// Time between two readings of one device, e.g. 1s, 100ms, 0 (as fast as possible).
    #[arg(long, default_value = "1s", value_parser = parse_duration)]
    pub interval: Duration,
    /// ± random offset of each timestamp, in milliseconds.
    #[arg(long = "jitter-ms", default_value_t = 0)]
    pub jitter_ms: u64,
    /// Points per MQTT message (1: one seed JSON object; more: a JSON array per metric).
    #[arg(long, default_value_t = 1)]
    pub batch: usize,
    /// Stop after this long (e.g. 60s, 10m); default: run until interrupted.
    #[arg(long, value_parser = parse_duration)]
    pub duration: Option<Duration>,
    /// Stop after this many readings per device and metric.
    #[arg(long)]
    pub count: Option<u64>,
    /// First timestamp, ms since the epoch (default: now). With --interval 0 the timestamps
    /// still advance by --step-ms per reading.
    #[arg(long = "start-ms")]
    pub start_ms: Option<i64>,
    /// Timestamp step per reading in ms when --interval is 0 (default 1000).
    #[arg(long = "step-ms", default_value_t = 1000)]
    pub step_ms: i64,
    /// Seed of the value generator (same seed, same values).
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
}

impl SimulateArgs {
    /// The seed's simulator with `devices` sensors: temperature every second, forever.
    pub fn defaults(devices: u32) -> SimulateArgs {
        SimulateArgs {
            devices,
            device_prefix: "sensor_".to_string(),
            metrics: vec!["temperature".to_string()],
            interval: Duration::from_secs(1),
            jitter_ms: 0,
            batch: 1,
            duration: None,
            count: None,
            start_ms: None,
            step_ms: 1000,
            seed: 42,
        }
    }
}

#[derive(Args, Debug, Clone)]
pub struct SerialArgs {
    /// Serial device, e.g. /dev/ttyUSB0 or /dev/ttyACM0.
    #[arg(long)]
    pub port: String,
    #[arg(long, default_value_t = 9600)]
    pub baud: u32,
    /// Stop after this many published points (default: run until interrupted).
    #[arg(long)]
    pub count: Option<u64>,
}

#[derive(Args, Debug, Clone)]
pub struct CsvArgs {
    /// `timestamp,value` rows with a header; timestamps RFC 3339 or `YYYY-MM-DD HH:MM:SS` UTC.
    pub file: PathBuf,
    #[arg(long, default_value = "replay")]
    pub device: String,
    /// Metric name (default: the file name without extension).
    #[arg(long)]
    pub metric: Option<String>,
    /// Replay speed: 60 plays an hour of data in a minute; 0 publishes as fast as possible.
    #[arg(long, default_value_t = 0.0)]
    pub speedup: f64,
    /// Keep the file's timestamps (by default they are shifted so the last row is now; old
    /// timestamps fall outside the node's clock window).
    #[arg(long = "keep-timestamps")]
    pub keep_timestamps: bool,
    /// Points per MQTT message.
    #[arg(long, default_value_t = 100)]
    pub batch: usize,
}

/// The login given on the command line: --username with --password-file or
/// MINITRUE_MQTT_PASSWORD.
fn cli_login(args: &PublishArgs) -> anyhow::Result<Option<minitrue_ingest::mqtt::MqttLogin>> {
    let Some(username) = args.username.clone() else {
        return Ok(None);
    };
    let password = match &args.password_file {
        Some(path) => crate::settings::first_line(path)?,
        None => std::env::var("MINITRUE_MQTT_PASSWORD").map_err(|_| {
            anyhow::anyhow!("--username needs --password-file or MINITRUE_MQTT_PASSWORD")
        })?,
    };
    Ok(Some(minitrue_ingest::mqtt::MqttLogin { username, password }))
}

pub fn run(args: PublishArgs) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    runtime.block_on(async move {
        let (stop, stopping) = watch::channel(false);
        tokio::spawn(async move {
            let _ = tokio::signal::ctrl_c().await;
            let _ = stop.send(true);
        });
        let summary = publish(args, stopping).await?;
        println!(
            "published {} points in {} messages; {} messages acknowledged by the broker",
            summary.points, summary.messages, summary.acknowledged
        );
        Ok(())
    })
}

/// What a run published.
#[derive(Debug, Default, Clone, Copy)]
pub struct Summary {
    pub points: u64,
    pub messages: u64,
    pub acknowledged: u64,
}

/// A connected QoS 1 publisher that counts the broker's acknowledgements.
struct Publisher {
    client: AsyncClient,
    acknowledged: Arc<AtomicU64>,
    messages: u64,
    points: u64,
    topic_prefix: String,
}

impl Publisher {
    async fn connect(
        broker: &str,
        client_id: &str,
        topic_prefix: &str,
        login: Option<minitrue_ingest::mqtt::MqttLogin>,
        tls: &BrokerTls,
    ) -> anyhow::Result<Self> {
        let mut options = client_options(broker, client_id, login.as_ref(), tls)?;
        options.set_keep_alive(Duration::from_secs(30)).set_max_packet_size(4 << 20, 4 << 20);
        options.set_inflight(1000);
        let (client, mut eventloop) = AsyncClient::new(options, 1000);
        let acknowledged = Arc::new(AtomicU64::new(0));
        let (connected_tx, connected_rx) = tokio::sync::oneshot::channel::<Result<(), String>>();
        tokio::spawn({
            let acknowledged = acknowledged.clone();
            async move {
                let mut connected = Some(connected_tx);
                loop {
                    match eventloop.poll().await {
                        Ok(Event::Incoming(Packet::ConnAck(_))) => {
                            if let Some(tx) = connected.take() {
                                let _ = tx.send(Ok(()));
                            }
                        }
                        Ok(Event::Incoming(Packet::PubAck(_))) => {
                            acknowledged.fetch_add(1, Ordering::Relaxed);
                        }
                        Ok(Event::Outgoing(rumqttc::Outgoing::Disconnect)) => return,
                        Ok(_) => {}
                        Err(error) => {
                            if let Some(tx) = connected.take() {
                                let _ = tx.send(Err(error.to_string()));
                                return;
                            }
                            tracing::warn!(%error, "mqtt connection lost; reconnecting");
                            tokio::time::sleep(Duration::from_millis(500)).await;
                        }
                    }
                }
            }
        });
        match tokio::time::timeout(Duration::from_secs(10), connected_rx).await {
            Ok(Ok(Ok(()))) => {}
            Ok(Ok(Err(error))) => bail!("cannot connect to {broker}: {error}"),
            _ => bail!("no answer from the broker at {broker} within 10 s"),
        }
        Ok(Publisher {
            client,
            acknowledged,
            messages: 0,
            points: 0,
            topic_prefix: topic_prefix.to_string(),
        })
    }

    /// Publishes seed-format points of one metric: an object for one, an array for more.
    async fn send(&mut self, metric: &str, points: Vec<serde_json::Value>) -> anyhow::Result<()> {
        if points.is_empty() {
            return Ok(());
        }
        let count = points.len() as u64;
        let payload = if points.len() == 1 {
            points.into_iter().next().unwrap_or_default().to_string()
        } else {
            serde_json::Value::Array(points).to_string()
        };
        self.client
            .publish(format!("{}/{metric}", self.topic_prefix), QoS::AtLeastOnce, false, payload)
            .await
            .context("publishing")?;
        self.messages += 1;
        self.points += count;
        Ok(())
    }

    /// Waits (up to 30 s) for every message to be acknowledged, then disconnects.
    async fn finish(self) -> Summary {
        let deadline = Instant::now() + Duration::from_secs(30);
        while self.acknowledged.load(Ordering::Relaxed) < self.messages && Instant::now() < deadline
        {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let _ = self.client.disconnect().await;
        Summary {
            points: self.points,
            messages: self.messages,
            acknowledged: self.acknowledged.load(Ordering::Relaxed),
        }
    }
}

/// Runs `args.source` until it ends or `stop` turns true.
pub async fn publish(args: PublishArgs, stop: watch::Receiver<bool>) -> anyhow::Result<Summary> {
    let client_id = args
        .client_id
        .clone()
        .unwrap_or_else(|| format!("minitrue-publish-{}", std::process::id()));
    let login = match args.login.clone() {
        Some(login) => Some(login),
        None => cli_login(&args)?,
    };
    let tls = BrokerTls {
        ca: args.broker_ca.clone(),
        cert: args.broker_cert.clone(),
        key: args.broker_key.clone(),
    };
    let mut publisher =
        Publisher::connect(&args.broker, &client_id, &args.topic_prefix, login, &tls).await?;
    match args.source {
        Source::Simulate(sim) => simulate(&mut publisher, &sim, stop).await?,
        Source::Serial(serial) => read_serial(&mut publisher, &serial, stop).await?,
        Source::Csv(csv) => replay_csv(&mut publisher, &csv, stop).await?,
    }
    Ok(publisher.finish().await)
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

fn seed_point(device: &str, metric: &str, timestamp_ms: i64, value: f64) -> serde_json::Value {
    json!({"device_id": device, "metric_name": metric, "timestamp": timestamp_ms, "value": value})
}

/// A plausible reading of `metric` for device number `device` at `t_ms`: a daily cycle, a
/// per-device offset and noise, rounded like real sensors report.
fn simulated_value(metric: &str, device: u32, t_ms: i64, rng: &mut StdRng) -> f64 {
    let day = (t_ms as f64 / 86_400_000.0) * std::f64::consts::TAU;
    let offset = f64::from(device % 10);
    let round = |v: f64, decimals: i32| {
        let scale = 10f64.powi(decimals);
        (v * scale).round() / scale
    };
    match metric {
        "temperature" => round(20.0 + offset * 0.3 + 4.0 * day.sin() + rng.gen_range(-0.2..0.2), 2),
        "humidity" => round(50.0 - offset + 10.0 * day.cos() + rng.gen_range(-1.0..1.0), 1),
        "pressure" => round(1013.0 + offset * 0.5 + rng.gen_range(-0.5..0.5), 1),
        "motion" => f64::from(u8::from(rng.gen_bool(0.05))),
        _ => round(100.0 + offset + rng.gen_range(-5.0..5.0), 2),
    }
}

async fn simulate(
    publisher: &mut Publisher,
    args: &SimulateArgs,
    mut stop: watch::Receiver<bool>,
) -> anyhow::Result<()> {
    if args.devices == 0 || args.metrics.is_empty() || args.batch == 0 {
        bail!("--devices, --metrics and --batch must not be empty or zero");
    }
    let mut rng = StdRng::seed_from_u64(args.seed);
    let started = Instant::now();
    let start_ms = args.start_ms.unwrap_or_else(now_ms);
    let step_ms =
        if args.interval.is_zero() { args.step_ms } else { args.interval.as_millis() as i64 };
    let devices: Vec<String> =
        (1..=args.devices).map(|i| format!("{}{i}", args.device_prefix)).collect();
    let mut pending: Vec<Vec<serde_json::Value>> = vec![Vec::new(); args.metrics.len()];
    let mut reading: u64 = 0;
    loop {
        if args.count.is_some_and(|count| reading >= count)
            || args.duration.is_some_and(|d| started.elapsed() >= d)
            || *stop.borrow()
        {
            break;
        }
        let t_ms = start_ms + reading as i64 * step_ms;
        for (m, metric) in args.metrics.iter().enumerate() {
            for (d, device) in devices.iter().enumerate() {
                let jitter = if args.jitter_ms > 0 {
                    rng.gen_range(-(args.jitter_ms as i64)..=args.jitter_ms as i64)
                } else {
                    0
                };
                let value = simulated_value(metric, d as u32 + 1, t_ms, &mut rng);
                pending[m].push(seed_point(device, metric, t_ms + jitter, value));
                if pending[m].len() >= args.batch {
                    publisher.send(metric, std::mem::take(&mut pending[m])).await?;
                }
            }
        }
        reading += 1;
        if !args.interval.is_zero() {
            // Pace against the start so slow publishes don't accumulate drift.
            let due = started + args.interval.mul_f64(reading as f64);
            tokio::select! {
                _ = tokio::time::sleep_until(due.into()) => {}
                _ = stop.changed() => {}
            }
        }
    }
    for (m, metric) in args.metrics.iter().enumerate() {
        publisher.send(metric, std::mem::take(&mut pending[m])).await?;
    }
    Ok(())
}

/// One line from a sensor: `device,metric,value` or a seed JSON object (`timestamp`
/// optional: the publish time is used).
pub fn parse_sensor_line(line: &str, now_ms: i64) -> Result<(String, serde_json::Value), String> {
    let line = line.trim();
    if line.starts_with('{') {
        let mut object: serde_json::Map<String, serde_json::Value> =
            serde_json::from_str(line).map_err(|e| format!("bad JSON: {e}"))?;
        let metric = object
            .get("metric_name")
            .or_else(|| object.get("metric"))
            .and_then(|m| m.as_str())
            .ok_or("JSON line without metric_name")?
            .to_string();
        if !object.get("device_id").is_some_and(|d| d.is_string()) {
            return Err("JSON line without device_id".to_string());
        }
        if !object.get("value").is_some_and(|v| v.is_number() || v.is_string() || v.is_boolean()) {
            return Err("JSON line without value".to_string());
        }
        object.entry("timestamp").or_insert(json!(now_ms));
        object.entry("metric_name").or_insert(json!(metric));
        return Ok((metric, serde_json::Value::Object(object)));
    }
    let fields: Vec<&str> = line.split(',').map(str::trim).collect();
    let [device, metric, value] = fields[..] else {
        return Err(format!("expected device,metric,value or JSON, got {} fields", fields.len()));
    };
    if device.is_empty() || metric.is_empty() {
        return Err("empty device or metric".to_string());
    }
    let value: f64 = value.parse().map_err(|_| format!("value {value:?} is not a number"))?;
    if !value.is_finite() {
        return Err(format!("value {value} is not finite"));
    }
    Ok((metric.to_string(), seed_point(device, metric, now_ms, value)))
}

async fn read_serial(
    publisher: &mut Publisher,
    args: &SerialArgs,
    mut stop: watch::Receiver<bool>,
) -> anyhow::Result<()> {
    let (lines_tx, mut lines) = tokio::sync::mpsc::channel::<String>(1024);
    let port_name = args.port.clone();
    let baud = args.baud;
    // Serial reads block: a dedicated thread reads lines and reopens the port if it goes away
    // (an Arduino unplugged and plugged back in).
    std::thread::Builder::new().name("serial-reader".to_string()).spawn(move || {
        let mut logged = false;
        loop {
            let opened = serialport::new(&port_name, baud).timeout(Duration::from_millis(500)).open();
            let port = match opened {
                Ok(port) => {
                    tracing::info!(port = %port_name, baud, "serial port open");
                    logged = false;
                    port
                }
                Err(error) => {
                    if !logged {
                        tracing::warn!(port = %port_name, %error, "cannot open serial port; retrying every second");
                        logged = true;
                    }
                    std::thread::sleep(Duration::from_secs(1));
                    if lines_tx.is_closed() {
                        return;
                    }
                    continue;
                }
            };
            let mut reader = std::io::BufReader::new(port);
            let mut line = Vec::new();
            loop {
                match reader.read_until(b'\n', &mut line) {
                    Ok(0) => break,
                    Ok(_) if line.ends_with(b"\n") => {
                        let text = String::from_utf8_lossy(&line).into_owned();
                        line.clear();
                        if lines_tx.blocking_send(text).is_err() {
                            return;
                        }
                    }
                    Ok(_) => {}
                    Err(error) if error.kind() == std::io::ErrorKind::TimedOut => {
                        if lines_tx.is_closed() {
                            return;
                        }
                    }
                    Err(error) => {
                        tracing::warn!(%error, "serial read failed; reopening the port");
                        break;
                    }
                }
            }
        }
    })?;
    let mut published = 0u64;
    let mut rejected = 0u64;
    loop {
        if args.count.is_some_and(|count| published >= count) {
            break;
        }
        let line = tokio::select! {
            line = lines.recv() => match line { Some(line) => line, None => break },
            _ = stop.changed() => break,
        };
        if line.trim().is_empty() {
            continue;
        }
        match parse_sensor_line(&line, now_ms()) {
            Ok((metric, point)) => {
                publisher.send(&metric, vec![point]).await?;
                published += 1;
            }
            Err(reason) => {
                rejected += 1;
                if rejected <= 10 || rejected.is_power_of_two() {
                    tracing::warn!(line = %line.trim(), %reason, rejected, "skipping a serial line");
                }
            }
        }
    }
    Ok(())
}

async fn replay_csv(
    publisher: &mut Publisher,
    args: &CsvArgs,
    mut stop: watch::Receiver<bool>,
) -> anyhow::Result<()> {
    let metric = match &args.metric {
        Some(metric) => metric.clone(),
        None => args
            .file
            .file_stem()
            .and_then(|s| s.to_str())
            .context("cannot name the metric after the file; pass --metric")?
            .to_string(),
    };
    let key = minitrue_common::SeriesKey::new(&args.device, &metric)
        .map_err(|e| anyhow::anyhow!("bad device or metric name: {e}"))?;
    let points = crate::datasets::nab_as(&args.file, &key)?;
    let Some(first) = points.first().map(|p| p.time) else { return Ok(()) };
    let last = points.last().map_or(first, |p| p.time);
    let shift_ms = if args.keep_timestamps { 0 } else { now_ms() - last / 1_000_000 };
    let started = Instant::now();
    let mut batch = Vec::with_capacity(args.batch.max(1));
    for point in &points {
        if *stop.borrow() {
            break;
        }
        if args.speedup > 0.0 {
            let offset =
                Duration::from_nanos((point.time - first).max(0) as u64).div_f64(args.speedup);
            let due = started + offset;
            if due > Instant::now() {
                publisher.send(&metric, std::mem::take(&mut batch)).await?;
                tokio::select! {
                    _ = tokio::time::sleep_until(due.into()) => {}
                    _ = stop.changed() => break,
                }
            }
        }
        batch.push(seed_point(
            &args.device,
            &metric,
            point.time / 1_000_000 + shift_ms,
            point.value,
        ));
        if batch.len() >= args.batch.max(1) {
            publisher.send(&metric, std::mem::take(&mut batch)).await?;
        }
    }
    publisher.send(&metric, batch).await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sensor_lines_in_both_shapes() {
        let (metric, point) = parse_sensor_line("sensor_1, temperature, 23.5\r\n", 1000).unwrap();
        assert_eq!(metric, "temperature");
        assert_eq!(point, seed_point("sensor_1", "temperature", 1000, 23.5));
        let (metric, point) =
            parse_sensor_line(r#"{"device_id":"a","metric_name":"humidity","value":40}"#, 7)
                .unwrap();
        assert_eq!(metric, "humidity");
        assert_eq!(point["timestamp"], 7);
        let (_, point) = parse_sensor_line(
            r#"{"device_id":"a","metric_name":"humidity","value":40,"timestamp":5}"#,
            7,
        )
        .unwrap();
        assert_eq!(point["timestamp"], 5, "a sensor's own timestamp is kept");
        for bad in ["a,b", "a,b,c,d", "a,b,hot", "a,b,NaN", ",b,1", "{\"device_id\":1}", "{nope"] {
            assert!(parse_sensor_line(bad, 0).is_err(), "{bad}");
        }
    }

    #[test]
    fn simulated_values_are_deterministic_and_plausible() {
        let mut a = StdRng::seed_from_u64(1);
        let mut b = StdRng::seed_from_u64(1);
        for t in 0..100 {
            let x = simulated_value("temperature", 1, t * 1000, &mut a);
            assert_eq!(x, simulated_value("temperature", 1, t * 1000, &mut b));
            assert!((10.0..35.0).contains(&x));
            assert_eq!((x * 100.0).round() / 100.0, x, "two decimals");
        }
    }
}
