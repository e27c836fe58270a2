//! The MQTT subscriber: the door through which sensors' points enter MiniTrue.
//!
//! Durability contract: a QoS 1 message is acknowledged (PUBACK) only after every valid point
//! in it has been written to the [`PointSink`] (the storage engine's WAL, per its sync policy).
//! Until then the broker holds it; if this process dies, the broker redelivers it to the next
//! session with the same client id (persistent session: clean session off). Points are unique
//! by series and time, so redelivery stores nothing twice.
//!
//! Messages are taken in batches: everything that arrived while the previous write was in
//! flight is parsed and written together, so one WAL sync covers many messages. Acks go out in
//! arrival order (MQTT 3.1.1 §4.6).
//!
//! Bad input never stops ingestion: rejected points are counted per reason, logged at a
//! limited rate, and the message is republished with its reasons to the dead-letter topic.
//! The message is then acknowledged like any other (redelivering it would not fix it).
//!
//! Broker settings this relies on (Mosquitto): `max_inflight_messages` large enough for a
//! batch (e.g. 1000; the default 20 caps throughput at 20 messages per WAL sync), and
//! `max_queued_messages 0` with `persistence true`, so a node that is down loses nothing.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::future::BoxFuture;
use minitrue_common::{ErrorKind, Metric, MetricsSource, Point};
use rumqttc::{AsyncClient, Event, EventLoop, MqttOptions, Packet, Publish, QoS};

use crate::client::{client_options, BrokerTls, BrokerUrlError};
use tokio::sync::mpsc;

use crate::formats::{
    dead_letter_message, Interner, ParsedMessage, Parser, RejectReason, SeriesTags,
};

/// Where parsed points go. The binary wires the storage engine (or, in a cluster, the router).
/// Shared by the MQTT subscriber and the HTTP write endpoints.
pub trait PointSink: Send + Sync + 'static {
    /// Resolves once the points and the series' tags are durable; an error means none of
    /// them may be assumed stored (the caller retries the same batch or reports failure).
    fn write(&self, batch: WriteBatch) -> BoxFuture<'_, Result<(), SinkError>>;
}

/// Points to store, with the tags their messages attached to series.
#[derive(Debug, Clone, Default)]
pub struct WriteBatch {
    pub points: Vec<Point>,
    /// At most one entry per series (the latest message's tags).
    pub series_tags: Vec<SeriesTags>,
}

impl WriteBatch {
    /// Moves the points and tags of `message` into the batch (leaving `message` empty of
    /// them); a series' tags from a later message replace earlier ones.
    pub fn absorb(&mut self, message: &mut ParsedMessage) {
        self.points.append(&mut message.points);
        for tags in message.series_tags.drain(..) {
            match self.series_tags.iter_mut().find(|t| t.series == tags.series) {
                Some(existing) => *existing = tags,
                None => self.series_tags.push(tags),
            }
        }
    }
}

/// A sink failure, with the kind of the underlying error.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{message}")]
pub struct SinkError {
    pub kind: ErrorKind,
    pub message: String,
}

/// How the subscriber connects.
#[derive(Debug, Clone)]
pub struct SubscriberConfig {
    /// `mqtt://[user:password@]host:port` or `mqtts://…`.
    pub broker_url: String,
    /// Stable per node, so the broker keeps this node's session (and its queued messages).
    pub client_id: String,
    /// Where rejected messages are republished with their reasons.
    pub dead_letter_topic: String,
    /// Most messages written in one batch (one WAL sync).
    pub max_batch_messages: usize,
    /// Largest MQTT packet accepted.
    pub max_packet_bytes: usize,
    /// Subscribe as a member of this shared-subscription group (`$share/<group>/<filter>`):
    /// the broker hands each message to one member only. `None`: a plain subscription, every
    /// message to this subscriber.
    pub share_group: Option<String>,
    /// User name and password for the broker (kept out of the URL, which is printed).
    pub login: Option<MqttLogin>,
    /// CA and client certificate for an `mqtts://` broker.
    pub tls: BrokerTls,
}

/// A user name and password for an MQTT broker. `Debug` hides the password.
#[derive(Clone)]
pub struct MqttLogin {
    pub username: String,
    pub password: String,
}

impl std::fmt::Debug for MqttLogin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MqttLogin").field("username", &self.username).finish_non_exhaustive()
    }
}

impl SubscriberConfig {
    pub fn new(broker_url: impl Into<String>, client_id: impl Into<String>) -> Self {
        SubscriberConfig {
            broker_url: broker_url.into(),
            client_id: client_id.into(),
            dead_letter_topic: "minitrue/dead-letter".to_string(),
            max_batch_messages: 1000,
            max_packet_bytes: 4 << 20,
            share_group: None,
            login: None,
            tls: BrokerTls::default(),
        }
    }
}

/// Counters of what the subscriber did, for `system.*` tables and `/metrics`.
#[derive(Debug, Default)]
pub struct IngestCounters {
    pub messages: AtomicU64,
    pub points_accepted: AtomicU64,
    pub points_rejected: AtomicU64,
    pub batches: AtomicU64,
    pub write_retries: AtomicU64,
    pub dead_letters: AtomicU64,
    pub connections: AtomicU64,
    /// SUBACKs received: the subscriptions are in place (tests wait on this).
    pub subscriptions_acknowledged: AtomicU64,
    rejected_by_reason: reason_counters::ReasonCounters,
}

impl IngestCounters {
    /// Rejected points per reason label (every label present, zeros included).
    pub fn rejected_by_reason(&self) -> BTreeMap<&'static str, u64> {
        self.rejected_by_reason.snapshot()
    }

    /// The counters as metric samples labelled `door` (`mqtt`, `http`).
    pub fn metrics(self: Arc<Self>, door: &'static str) -> Arc<dyn MetricsSource> {
        Arc::new(move |out: &mut Vec<Metric>| {
            let load = |counter: &AtomicU64| counter.load(Ordering::Relaxed);
            let samples = [
                (
                    "minitrue_ingest_messages_total",
                    "Messages (MQTT) or requests (HTTP) received.",
                    load(&self.messages),
                ),
                (
                    "minitrue_ingest_points_accepted_total",
                    "Points accepted and stored.",
                    load(&self.points_accepted),
                ),
                (
                    "minitrue_ingest_points_rejected_total",
                    "Points (or whole messages) rejected.",
                    load(&self.points_rejected),
                ),
                (
                    "minitrue_ingest_batches_total",
                    "Durable writes (one WAL sync covers a batch).",
                    load(&self.batches),
                ),
                (
                    "minitrue_ingest_write_retries_total",
                    "Writes that failed and were retried.",
                    load(&self.write_retries),
                ),
                (
                    "minitrue_ingest_dead_letters_total",
                    "Rejected messages republished to the dead-letter topic.",
                    load(&self.dead_letters),
                ),
                (
                    "minitrue_ingest_connections_total",
                    "Broker connections made.",
                    load(&self.connections),
                ),
            ];
            for (name, help, value) in samples {
                out.push(Metric::counter(name, help, value).with_label("door", door));
            }
            for (reason, value) in self.rejected_by_reason() {
                out.push(
                    Metric::counter(
                        "minitrue_ingest_rejections_total",
                        "Rejections per reason.",
                        value,
                    )
                    .with_label("door", door)
                    .with_label("reason", reason),
                );
            }
        })
    }

    /// Counts one rejection (a point or a whole message) under its reason.
    pub fn count_rejection(&self, reason: &RejectReason) {
        self.points_rejected.fetch_add(1, Ordering::Relaxed);
        self.rejected_by_reason.add(reason.label());
    }
}

/// Per-reason counters without a lock: one atomic per label of [`RejectReason::LABELS`].
mod reason_counters {
    use std::collections::BTreeMap;
    use std::sync::atomic::{AtomicU64, Ordering};

    use crate::formats::RejectReason;

    #[derive(Debug)]
    pub struct ReasonCounters(Vec<(&'static str, AtomicU64)>);

    impl Default for ReasonCounters {
        fn default() -> Self {
            ReasonCounters(
                RejectReason::LABELS.iter().map(|&label| (label, AtomicU64::new(0))).collect(),
            )
        }
    }

    impl ReasonCounters {
        pub fn add(&self, label: &str) {
            if let Some((_, counter)) = self.0.iter().find(|(l, _)| *l == label) {
                counter.fetch_add(1, Ordering::Relaxed);
            }
        }

        pub fn snapshot(&self) -> BTreeMap<&'static str, u64> {
            self.0
                .iter()
                .map(|(label, counter)| (*label, counter.load(Ordering::Relaxed)))
                .collect()
        }
    }
}

/// Errors that stop the subscriber before it runs.
#[derive(Debug, thiserror::Error)]
pub enum SubscriberError {
    #[error(transparent)]
    BadBroker(#[from] BrokerUrlError),
}

impl SubscriberError {
    pub fn kind(&self) -> ErrorKind {
        ErrorKind::InvalidInput
    }
}

fn mqtt_options(config: &SubscriberConfig) -> Result<MqttOptions, SubscriberError> {
    let mut options =
        client_options(&config.broker_url, &config.client_id, config.login.as_ref(), &config.tls)?;
    options
        .set_clean_session(false)
        .set_manual_acks(true)
        .set_keep_alive(Duration::from_secs(30))
        .set_max_packet_size(config.max_packet_bytes, config.max_packet_bytes)
        .set_inflight(
            u16::try_from(config.max_batch_messages.clamp(10, 65_535)).unwrap_or(u16::MAX),
        );
    Ok(options)
}

/// Runs the subscriber until `shutdown` resolves: connects (and reconnects) to the broker,
/// subscribes to `parser.subscriptions()` at QoS 1, and feeds `sink`. Returns when shut down.
pub async fn run_subscriber(
    config: SubscriberConfig,
    parser: Arc<Parser>,
    sink: Arc<dyn PointSink>,
    counters: Arc<IngestCounters>,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), SubscriberError> {
    run_subscriber_or_leave(config, parser, sink, counters, shutdown, std::future::pending()).await
}

/// How long a leaving subscriber waits for the broker's last messages before it disconnects
/// anyway.
const LEAVE_TIMEOUT: Duration = Duration::from_secs(30);

/// [`run_subscriber`], which also leaves for good when `leave` resolves first (the node is
/// being decommissioned): it unsubscribes, so the broker hands this session nothing more
/// (with a shared subscription, the other members get it), writes and acknowledges what the
/// broker had already sent, and disconnects. Nothing is left waiting in a session nobody
/// will read. Returns once it has left (or was shut down).
pub async fn run_subscriber_or_leave(
    config: SubscriberConfig,
    parser: Arc<Parser>,
    sink: Arc<dyn PointSink>,
    counters: Arc<IngestCounters>,
    shutdown: impl Future<Output = ()> + Send,
    leave: impl Future<Output = ()> + Send,
) -> Result<(), SubscriberError> {
    let options = mqtt_options(&config)?;
    let (client, eventloop) = AsyncClient::new(options, config.max_batch_messages.max(10));
    // Unbounded on purpose: the connection must keep being polled while the writer waits,
    // or the writer's acks (queued in rumqttc's request channel) never go out, the broker's
    // in-flight window stays full, and both sides wait for each other. For QoS 1 the broker's
    // in-flight window bounds this queue; only QoS 0 publishers that outrun the WAL grow it.
    let (publishes_tx, publishes_rx) = mpsc::unbounded_channel::<Publish>();
    // Messages handed to the writer and not acknowledged yet.
    let unacked = Arc::new(AtomicU64::new(0));
    let topics: Vec<String> = match &config.share_group {
        Some(group) => {
            parser.subscriptions().iter().map(|filter| format!("$share/{group}/{filter}")).collect()
        }
        None => parser.subscriptions(),
    };
    let writer = tokio::spawn(write_batches(
        config.clone(),
        parser,
        sink,
        counters.clone(),
        client.clone(),
        publishes_rx,
        unacked.clone(),
    ));
    let connection =
        Connection { client: client.clone(), topics, publishes: publishes_tx, counters, unacked };
    tokio::select! {
        _ = connection.drive(eventloop, leave) => {}
        _ = shutdown => {}
    }
    // Unacknowledged messages stay with the broker's session for the next start.
    let _ = client.disconnect().await;
    writer.abort();
    Ok(())
}

/// The subscriber's side of the broker connection.
struct Connection {
    client: AsyncClient,
    topics: Vec<String>,
    publishes: mpsc::UnboundedSender<Publish>,
    counters: Arc<IngestCounters>,
    unacked: Arc<AtomicU64>,
}

/// Where a leaving subscriber is: unsubscribed from how many topics, and when the broker
/// last sent it a message.
struct Leaving {
    since: Instant,
    unsubscribed: usize,
    last_message: Instant,
}

impl Connection {
    async fn unsubscribe(&self) {
        for topic in &self.topics {
            if let Err(error) = self.client.unsubscribe(topic.clone()).await {
                tracing::error!(%error, "mqtt unsubscribe failed");
            }
        }
    }

    /// Polls the connection: forwards publishes to the writer, (re)subscribes on every
    /// connect; once `leave` resolves, unsubscribes and returns when everything the broker
    /// sent is acknowledged.
    async fn drive(self, mut eventloop: EventLoop, leave: impl Future<Output = ()>) {
        let mut leave = std::pin::pin!(leave);
        let mut leaving: Option<Leaving> = None;
        let mut last_error_log: Option<Instant> = None;
        loop {
            let polled = match &leaving {
                None => tokio::select! {
                    polled = eventloop.poll() => polled,
                    _ = &mut leave => {
                        tracing::info!("leaving the mqtt broker: unsubscribing");
                        self.unsubscribe().await;
                        let now = Instant::now();
                        leaving = Some(Leaving { since: now, unsubscribed: 0, last_message: now });
                        continue;
                    }
                },
                Some(state) => {
                    let drained = state.unsubscribed >= self.topics.len()
                        && self.unacked.load(Ordering::Acquire) == 0
                        && state.last_message.elapsed() >= Duration::from_millis(500);
                    if drained || state.since.elapsed() >= LEAVE_TIMEOUT {
                        if !drained {
                            tracing::warn!("left the mqtt broker before it had sent everything");
                        }
                        self.disconnect(&mut eventloop).await;
                        return;
                    }
                    match tokio::time::timeout(Duration::from_millis(100), eventloop.poll()).await {
                        Ok(polled) => polled,
                        Err(_) => continue,
                    }
                }
            };
            match polled {
                Ok(Event::Incoming(Packet::Publish(publish))) => {
                    if let Some(state) = &mut leaving {
                        state.last_message = Instant::now();
                    }
                    self.unacked.fetch_add(1, Ordering::AcqRel);
                    if self.publishes.send(publish).is_err() {
                        return;
                    }
                }
                Ok(Event::Incoming(Packet::SubAck(_))) => {
                    self.counters.subscriptions_acknowledged.fetch_add(1, Ordering::Relaxed);
                }
                Ok(Event::Incoming(Packet::UnsubAck(_))) => {
                    if let Some(state) = &mut leaving {
                        state.unsubscribed += 1;
                    }
                }
                Ok(Event::Incoming(Packet::ConnAck(_))) => {
                    self.counters.connections.fetch_add(1, Ordering::Relaxed);
                    if let Some(state) = &mut leaving {
                        // The session may still hold the subscriptions if the unsubscribe
                        // was lost with the connection.
                        state.unsubscribed = 0;
                        self.unsubscribe().await;
                        continue;
                    }
                    tracing::info!(topics = ?self.topics, "connected to mqtt broker");
                    let filters = self
                        .topics
                        .iter()
                        .map(|t| rumqttc::SubscribeFilter::new(t.clone(), QoS::AtLeastOnce));
                    if let Err(error) = self.client.subscribe_many(filters).await {
                        tracing::error!(%error, "mqtt subscribe failed");
                    }
                }
                Ok(_) => {}
                Err(error) => {
                    if last_error_log.is_none_or(|t| t.elapsed() > Duration::from_secs(10)) {
                        tracing::warn!(%error, "mqtt connection error; reconnecting");
                        last_error_log = Some(Instant::now());
                    }
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
            }
        }
    }

    /// Sends DISCONNECT and polls until it is out (or the connection is gone).
    async fn disconnect(&self, eventloop: &mut EventLoop) {
        if self.client.try_disconnect().is_err() {
            return;
        }
        let sent = async {
            loop {
                match eventloop.poll().await {
                    Ok(Event::Outgoing(rumqttc::Outgoing::Disconnect)) | Err(_) => return,
                    Ok(_) => {}
                }
            }
        };
        let _ = tokio::time::timeout(Duration::from_secs(2), sent).await;
    }
}

/// Takes publishes in batches, writes their points durably, then acknowledges them in order.
async fn write_batches(
    config: SubscriberConfig,
    parser: Arc<Parser>,
    sink: Arc<dyn PointSink>,
    counters: Arc<IngestCounters>,
    client: AsyncClient,
    mut publishes: mpsc::UnboundedReceiver<Publish>,
    unacked: Arc<AtomicU64>,
) {
    let mut interner = Interner::new();
    let mut parsed = ParsedMessage::new();
    let mut last_reject_log: Option<Instant> = None;
    while let Some(first) = publishes.recv().await {
        let mut batch = vec![first];
        while batch.len() < config.max_batch_messages {
            match publishes.try_recv() {
                Ok(publish) => batch.push(publish),
                Err(_) => break,
            }
        }
        let received_at = crate::now_ns();
        let mut write = WriteBatch::default();
        let mut dead_letters = Vec::new();
        for publish in &batch {
            parsed.clear();
            parser.parse_into(
                &publish.topic,
                &publish.payload,
                received_at,
                &mut interner,
                &mut parsed,
            );
            if !parsed.rejected.is_empty() {
                for rejection in &parsed.rejected {
                    counters.count_rejection(&rejection.reason);
                }
                if last_reject_log.is_none_or(|t| t.elapsed() > Duration::from_secs(5)) {
                    let first = &parsed.rejected[0];
                    tracing::warn!(topic = %publish.topic, reason = first.label(), detail = %first.detail, rejected = parsed.rejected.len(), "rejected mqtt input (further rejections logged at most every 5 s)");
                    last_reject_log = Some(Instant::now());
                }
                dead_letters.push(dead_letter_message(
                    &publish.topic,
                    &publish.payload,
                    &parsed.rejected,
                ));
            }
            counters.points_accepted.fetch_add(parsed.points.len() as u64, Ordering::Relaxed);
            write.absorb(&mut parsed);
        }
        counters.messages.fetch_add(batch.len() as u64, Ordering::Relaxed);
        if !write.points.is_empty() {
            write_until_durable(&sink, write, &counters).await;
        }
        for letter in dead_letters {
            match client
                .publish(config.dead_letter_topic.clone(), QoS::AtLeastOnce, false, letter)
                .await
            {
                Ok(()) => {
                    counters.dead_letters.fetch_add(1, Ordering::Relaxed);
                }
                Err(error) => tracing::warn!(%error, "could not publish dead letter"),
            }
        }
        for publish in &batch {
            if let Err(error) = client.ack(publish).await {
                tracing::warn!(%error, "could not acknowledge mqtt message; the broker will redeliver it");
            }
        }
        unacked.fetch_sub(batch.len() as u64, Ordering::AcqRel);
        counters.batches.fetch_add(1, Ordering::Relaxed);
    }
}

/// Retries a failed write with backoff: the batch is neither acknowledged nor dropped, and the
/// broker holds back new messages meanwhile (its in-flight window is full).
async fn write_until_durable(
    sink: &Arc<dyn PointSink>,
    batch: WriteBatch,
    counters: &IngestCounters,
) {
    let mut delay = Duration::from_millis(50);
    loop {
        match sink.write(batch.clone()).await {
            Ok(()) => return,
            Err(error) => {
                counters.write_retries.fetch_add(1, Ordering::Relaxed);
                tracing::error!(%error, points = batch.points.len(), retry_in_ms = delay.as_millis() as u64, "storing mqtt points failed; retrying, messages stay unacknowledged");
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(5));
            }
        }
    }
}
