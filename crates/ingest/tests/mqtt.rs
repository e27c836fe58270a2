//! The MQTT subscriber against a real Mosquitto broker (Debian's `mosquitto`, installed by
//! scripts/test.sh), started on a free loopback port for each test, and against the
//! embedded broker.

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::future::BoxFuture;
use minitrue_common::Point;
use minitrue_ingest::mqtt::{
    run_subscriber, IngestCounters, MqttLogin, PointSink, SinkError, SubscriberConfig, WriteBatch,
};
use minitrue_ingest::{FormatConfig, Parser};
use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};

struct Mosquitto {
    child: Child,
    port: u16,
    _dir: tempfile::TempDir,
}

impl Mosquitto {
    fn start() -> Mosquitto {
        let binary = ["/usr/sbin/mosquitto", "/usr/bin/mosquitto"]
            .into_iter()
            .find(|p| std::path::Path::new(p).exists())
            .expect("mosquitto is not installed: run scripts/test.sh (it installs it) or apt-get install mosquitto");
        let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let dir = tempfile::tempdir().unwrap();
        let conf = dir.path().join("mosquitto.conf");
        std::fs::write(
            &conf,
            format!("listener {port} 127.0.0.1\nallow_anonymous true\nmax_inflight_messages 1000\nmax_queued_messages 0\npersistence false\n"),
        )
        .unwrap();
        let child = Command::new(binary)
            .arg("-c")
            .arg(&conf)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "mosquitto did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
        Mosquitto { child, port, _dir: dir }
    }

    fn url(&self) -> String {
        format!("mqtt://127.0.0.1:{}", self.port)
    }
}

impl Drop for Mosquitto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Collects points; while `stall` is set, writes never complete (a node that dies mid-write).
#[derive(Default)]
struct MemorySink {
    points: Mutex<Vec<Point>>,
    stall: AtomicBool,
    write_started: AtomicBool,
}

impl PointSink for MemorySink {
    fn write(&self, batch: WriteBatch) -> BoxFuture<'_, Result<(), SinkError>> {
        let points = batch.points;
        Box::pin(async move {
            self.write_started.store(true, Ordering::SeqCst);
            if self.stall.load(Ordering::SeqCst) {
                futures::future::pending::<()>().await;
            }
            self.points.lock().unwrap().extend(points);
            Ok(())
        })
    }
}

async fn wait_for(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

struct Running {
    sink: Arc<MemorySink>,
    counters: Arc<IngestCounters>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<()>,
}

impl Running {
    async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        let _ = self.task.await;
    }
}

fn start_subscriber(broker_url: &str, client_id: &str, sink: Arc<MemorySink>) -> Running {
    start_subscriber_as(broker_url, client_id, None, sink)
}

fn start_subscriber_as(
    broker_url: &str,
    client_id: &str,
    login: Option<MqttLogin>,
    sink: Arc<MemorySink>,
) -> Running {
    let parser = Arc::new(Parser::new(FormatConfig::default()).unwrap());
    let counters = Arc::new(IngestCounters::default());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let mut config = SubscriberConfig::new(broker_url, client_id);
    config.login = login;
    let task = tokio::spawn({
        let sink: Arc<dyn PointSink> = sink.clone();
        let counters = counters.clone();
        async move {
            run_subscriber(config, parser, sink, counters, async {
                let _ = stopped.await;
            })
            .await
            .unwrap();
        }
    });
    Running { sink, counters, stop: Some(stop), task }
}

/// A publishing client; its event loop runs in the background.
async fn publisher(port: u16, id: &str) -> AsyncClient {
    publisher_as(port, id, None).await
}

async fn publisher_as(port: u16, id: &str, login: Option<(&str, &str)>) -> AsyncClient {
    let mut options = MqttOptions::new(id, "127.0.0.1", port);
    if let Some((user, password)) = login {
        options.set_credentials(user, password);
    }
    let (client, mut eventloop) = AsyncClient::new(options, 1000);
    tokio::spawn(async move { while eventloop.poll().await.is_ok() {} });
    client
}

async fn wait_subscribed(running: &Running) {
    wait_for("subscriptions acknowledged", || {
        running.counters.subscriptions_acknowledged.load(Ordering::Relaxed) > 0
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seed_json_points_are_stored_with_their_values() {
    let broker = Mosquitto::start();
    let running = start_subscriber(&broker.url(), "node-a", Arc::new(MemorySink::default()));
    wait_subscribed(&running).await;
    let client = publisher(broker.port, "sensor-sim").await;
    for i in 0..300i64 {
        let payload = format!(
            r#"{{"device_id":"sensor_{}","metric_name":"temperature","timestamp":{},"value":{}}}"#,
            i % 3,
            1_700_000_000 + i,
            20.0 + i as f64 / 100.0
        );
        client.publish("iot/sensors/temperature", QoS::AtLeastOnce, false, payload).await.unwrap();
    }
    client.publish("iot/sensors/humidity/sensor_9", QoS::AtLeastOnce, false, "55.5").await.unwrap();
    let sink = running.sink.clone();
    wait_for("301 points", || sink.points.lock().unwrap().len() == 301).await;
    let points = sink.points.lock().unwrap().clone();
    let p = points
        .iter()
        .find(|p| {
            p.series.device_id() == "sensor_1" && p.time == (1_700_000_000 + 4) * 1_000_000_000
        })
        .unwrap();
    assert_eq!(p.value, 20.04);
    assert!(points.iter().any(|p| p.series.device_id() == "sensor_9"
        && p.series.metric() == "humidity"
        && p.value == 55.5));
    assert_eq!(running.counters.messages.load(Ordering::Relaxed), 301);
    running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_is_counted_and_dead_lettered_and_good_points_still_land() {
    let broker = Mosquitto::start();
    let running = start_subscriber(&broker.url(), "node-b", Arc::new(MemorySink::default()));
    wait_subscribed(&running).await;

    // A watcher on the dead-letter topic.
    let options = MqttOptions::new("dead-letter-watcher", "127.0.0.1", broker.port);
    let (watcher, mut watcher_loop) = AsyncClient::new(options, 100);
    watcher.subscribe("minitrue/dead-letter", QoS::AtLeastOnce).await.unwrap();
    let letters = Arc::new(Mutex::new(Vec::<String>::new()));
    tokio::spawn({
        let letters = letters.clone();
        async move {
            while let Ok(event) = watcher_loop.poll().await {
                if let Event::Incoming(Packet::Publish(p)) = event {
                    letters.lock().unwrap().push(String::from_utf8_lossy(&p.payload).into_owned());
                }
            }
        }
    });
    tokio::time::sleep(Duration::from_millis(300)).await;

    let client = publisher(broker.port, "bad-sensor").await;
    let messages: [(&str, &str); 4] = [
        ("iot/sensors/temperature", "{not json"),
        ("iot/sensors/temperature", r#"{"device_id":"d1","timestamp":1700000000,"value":"NaN"}"#),
        (
            "iot/sensors/temperature",
            r#"[{"device_id":"d2","timestamp":1700000000,"value":1.5},{"device_id":"d2","timestamp":1700000001,"value":true},{"device_id":"d2","value":[1]}]"#,
        ),
        ("iot/sensors/pressure/d3", "12.5 kPa"),
    ];
    for (topic, payload) in messages {
        client.publish(topic, QoS::AtLeastOnce, false, payload).await.unwrap();
    }
    let sink = running.sink.clone();
    wait_for("2 good points", || sink.points.lock().unwrap().len() == 2).await;
    wait_for("4 dead letters", || letters.lock().unwrap().len() == 4).await;
    let values: Vec<f64> = sink.points.lock().unwrap().iter().map(|p| p.value).collect();
    assert_eq!(values, vec![1.5, 1.0]);
    let by_reason = running.counters.rejected_by_reason();
    assert_eq!(by_reason["malformed_json"], 1, "{by_reason:?}");
    assert_eq!(by_reason["non_finite_value"], 1, "{by_reason:?}");
    assert_eq!(running.counters.points_rejected.load(Ordering::Relaxed), 4, "{by_reason:?}");
    let letters = letters.lock().unwrap().clone();
    assert!(
        letters.iter().any(|l| l.contains("malformed_json") && l.contains("{not json")),
        "{letters:?}"
    );
    assert!(
        letters.iter().any(|l| l.contains("\"topic\":\"iot/sensors/pressure/d3\"")),
        "{letters:?}"
    );
    running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_not_yet_durable_are_redelivered_to_the_next_session() {
    let broker = Mosquitto::start();
    // First session: the write never completes (the node dies before its WAL sync).
    let stalled = Arc::new(MemorySink::default());
    stalled.stall.store(true, Ordering::SeqCst);
    let first = start_subscriber(&broker.url(), "node-c", stalled.clone());
    wait_subscribed(&first).await;
    let client = publisher(broker.port, "sensor-sim-2").await;
    for i in 0..50i64 {
        let payload =
            format!(r#"{{"device_id":"s","timestamp":{},"value":{i}}}"#, 1_700_000_000 + i);
        client.publish("iot/sensors/temperature", QoS::AtLeastOnce, false, payload).await.unwrap();
    }
    wait_for("the stalled write", || stalled.write_started.load(Ordering::SeqCst)).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    first.stop().await;
    assert!(stalled.points.lock().unwrap().is_empty());

    // Same client id: the broker kept the session and redelivers every unacknowledged message.
    let second = start_subscriber(&broker.url(), "node-c", Arc::new(MemorySink::default()));
    let sink = second.sink.clone();
    wait_for("all 50 points redelivered", || {
        let mut times: Vec<i64> = sink.points.lock().unwrap().iter().map(|p| p.time).collect();
        times.sort();
        times.dedup();
        times.len() == 50
    })
    .await;
    second.stop().await;
}

/// The embedded broker as a node runs it: rumqttd on an internal port that admits only the
/// node's own credentials, and the front door on the public port.
struct Embedded {
    front_port: u16,
    internal_url: String,
    login: MqttLogin,
    credentials_dir: tempfile::TempDir,
}

async fn start_embedded() -> Embedded {
    use minitrue_ingest::broker::{
        serve_front_door, start_embedded_broker, EmbeddedBrokerConfig, FrontCounters,
    };
    let broker =
        tokio::task::spawn_blocking(|| start_embedded_broker(EmbeddedBrokerConfig::default()))
            .await
            .unwrap()
            .unwrap();
    let credentials_dir = tempfile::tempdir().unwrap();
    let gate = minitrue_auth::Gatekeeper::new(
        minitrue_auth::Credentials::open(credentials_dir.path()).unwrap(),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let front_port = listener.local_addr().unwrap().port();
    let internal = broker.internal().clone();
    let login =
        MqttLogin { username: internal.username.clone(), password: internal.password.clone() };
    tokio::spawn(serve_front_door(
        listener,
        internal,
        gate,
        Arc::new(FrontCounters::default()),
        None,
        std::future::pending(),
    ));
    Embedded { front_port, internal_url: broker.local_url(), login, credentials_dir }
}

/// What a client's CONNECT got back: `Ok` when accepted, the refusal otherwise.
async fn connack(port: u16, login: Option<(&str, &str)>) -> Result<(), String> {
    let mut options = MqttOptions::new(format!("probe-{}", rand_id()), "127.0.0.1", port);
    if let Some((user, password)) = login {
        options.set_credentials(user, password);
    }
    let (_client, mut eventloop) = AsyncClient::new(options, 10);
    let outcome = tokio::time::timeout(Duration::from_secs(20), async {
        loop {
            match eventloop.poll().await {
                Ok(Event::Incoming(Packet::ConnAck(_))) => return Ok(()),
                Ok(_) => {}
                Err(error) => return Err(error.to_string()),
            }
        }
    })
    .await;
    outcome.unwrap_or_else(|_| Err("no CONNACK".to_string()))
}

fn rand_id() -> u128 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_embedded_broker_admits_writers_only_once_the_node_has_users() {
    let embedded = start_embedded().await;
    let port = embedded.front_port;
    assert_eq!(connack(port, None).await, Ok(()), "a node without users is open");
    // rumqttd's own port admits only the node's credentials.
    let internal_port: u16 = embedded.internal_url.rsplit(':').next().unwrap().parse().unwrap();
    assert!(connack(internal_port, None).await.is_err());
    assert!(connack(internal_port, Some(("minitrue-node", "guess"))).await.is_err());

    let editor = minitrue_auth::CredentialsEditor::open(embedded.credentials_dir.path()).unwrap();
    editor.set_user("sensor", minitrue_auth::Role::Writer, "publish-pw").unwrap();
    editor.set_user("viewer", minitrue_auth::Role::Reader, "read-pw").unwrap();
    for refused in
        [None, Some(("sensor", "wrong")), Some(("nobody", "x")), Some(("viewer", "read-pw"))]
    {
        let answer = connack(port, refused).await;
        assert!(
            answer.as_ref().is_err_and(|e| e.contains("NotAuthorized")),
            "{refused:?}: {answer:?}"
        );
    }
    assert_eq!(connack(port, Some(("sensor", "publish-pw"))).await, Ok(()));

    let running = start_subscriber_as(
        &embedded.internal_url,
        "node-front",
        Some(embedded.login.clone()),
        Arc::new(MemorySink::default()),
    );
    wait_subscribed(&running).await;
    let client = publisher_as(port, "front-sim", Some(("sensor", "publish-pw"))).await;
    for i in 0..20i64 {
        let payload =
            format!(r#"{{"device_id":"f","timestamp":{},"value":{i}}}"#, 1_700_000_000 + i);
        client.publish("iot/sensors/pressure", QoS::AtLeastOnce, false, payload).await.unwrap();
    }
    let sink = running.sink.clone();
    wait_for("20 points through the front door", || sink.points.lock().unwrap().len() == 20).await;
    running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_embedded_broker_carries_points_and_keeps_an_offline_subscribers_messages() {
    let embedded = start_embedded().await;
    let url = embedded.internal_url.clone();
    let login = Some(embedded.login.clone());
    let running =
        start_subscriber_as(&url, "node-embedded", login.clone(), Arc::new(MemorySink::default()));
    wait_subscribed(&running).await;
    let client = publisher(embedded.front_port, "embedded-sim").await;
    for i in 0..200i64 {
        let payload = format!(
            r#"{{"device_id":"e{}","timestamp":{},"value":{i}}}"#,
            i % 4,
            1_700_000_000 + i
        );
        client.publish("iot/sensors/pressure", QoS::AtLeastOnce, false, payload).await.unwrap();
    }
    let sink = running.sink.clone();
    wait_for("200 points", || sink.points.lock().unwrap().len() == 200).await;
    let mut values: Vec<f64> = sink.points.lock().unwrap().iter().map(|p| p.value).collect();
    values.sort_by(f64::total_cmp);
    assert_eq!(values, (0..200).map(|i| i as f64).collect::<Vec<_>>());
    running.stop().await;

    // Published while the node's subscriber is away: delivered to its persistent session.
    for i in 200..250i64 {
        let payload =
            format!(r#"{{"device_id":"e0","timestamp":{},"value":{i}}}"#, 1_700_000_000 + i);
        client.publish("iot/sensors/pressure", QoS::AtLeastOnce, false, payload).await.unwrap();
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let again = start_subscriber_as(&url, "node-embedded", login, Arc::new(MemorySink::default()));
    let sink = again.sink.clone();
    wait_for("the 50 points published while away", || sink.points.lock().unwrap().len() >= 50)
        .await;
    let mut values: Vec<f64> = sink.points.lock().unwrap().iter().map(|p| p.value).collect();
    values.sort_by(f64::total_cmp);
    values.dedup();
    assert_eq!(values, (200..250).map(|i| i as f64).collect::<Vec<_>>());
    again.stop().await;
}

/// A deep backlog (a node that was away while sensors kept publishing) must drain: the writer's
/// acks have to go out while the connection is busy delivering (a bounded hand-over between
/// the two once deadlocked here with the broker's in-flight window full).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deep_backlog_drains_without_stalling() {
    let broker = Mosquitto::start();
    let first = start_subscriber(&broker.url(), "node-backlog", Arc::new(MemorySink::default()));
    wait_subscribed(&first).await;
    first.stop().await;
    let client = publisher(broker.port, "backlog-sim").await;
    let total = 20_000i64;
    for i in 0..total {
        let payload = format!(
            r#"{{"device_id":"b{}","timestamp":{},"value":{i}}}"#,
            i % 7,
            1_700_000_000 + i
        );
        client.publish("iot/sensors/backlog", QoS::AtLeastOnce, false, payload).await.unwrap();
    }
    let again = start_subscriber(&broker.url(), "node-backlog", Arc::new(MemorySink::default()));
    let sink = again.sink.clone();
    let deadline = Instant::now() + Duration::from_secs(90);
    while sink.points.lock().unwrap().len() < total as usize {
        assert!(
            Instant::now() < deadline,
            "stalled at {} of {total} points",
            sink.points.lock().unwrap().len()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    again.stop().await;
}
