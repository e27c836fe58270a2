//! The embedded MQTT broker (rumqttd, MQTT 3.1.1): what a node runs when no external broker
//! is configured, so one command on a fresh machine gives sensors somewhere to publish.
//!
//! rumqttd listens on an internal loopback port and admits only the node's internal
//! credentials (a random secret made at start, never printed). Sensors connect to the
//! [`front`] door, which authenticates them against the node's users and passes them on.
//! The node's own subscriber connects to the internal port like any other client, so the
//! ingestion path is the same as with an external broker.
//!
//! Durability: the subscriber acknowledges a message to the broker only after its points are
//! in the WAL, but rumqttd keeps messages in memory and acknowledges a publisher as soon as it
//! has the message. A message between the two when the node is killed is lost: the window is
//! the subscriber's in-flight batch. Deployments that need "acknowledged to the sensor ⇒
//! stored" across node crashes use an external broker with persistence (Mosquitto, see
//! [`crate::mqtt`]), which outlives the node and redelivers.

pub mod connect;
pub mod front;

use std::collections::HashMap;
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::time::{Duration, Instant};

pub use front::{serve_front_door, FrontCounters, InternalBroker};

/// The user name of the node's internal credentials.
const INTERNAL_USER: &str = "minitrue-node";

/// How the embedded broker behaves.
#[derive(Debug, Clone)]
pub struct EmbeddedBrokerConfig {
    /// Largest publish payload accepted (bigger ones close the publisher's connection).
    pub max_payload_bytes: usize,
    /// Unacknowledged QoS 1 messages per connection; bounds the subscriber's batch.
    pub max_inflight: usize,
}

impl Default for EmbeddedBrokerConfig {
    fn default() -> Self {
        EmbeddedBrokerConfig { max_payload_bytes: 1 << 20, max_inflight: 1000 }
    }
}

/// Why the embedded broker did not start.
#[derive(Debug, thiserror::Error)]
pub enum BrokerError {
    #[error("the mqtt port {address} is not free: {source}")]
    PortInUse {
        address: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("the embedded mqtt broker did not start listening on {address} within {seconds} s")]
    NotListening { address: SocketAddr, seconds: u64 },
    #[error("starting the embedded mqtt broker: {0}")]
    Start(String),
}

/// A running embedded broker. Its threads run until the process exits.
#[derive(Debug)]
pub struct EmbeddedBroker {
    internal: InternalBroker,
}

impl EmbeddedBroker {
    /// Where rumqttd listens (loopback) and the credentials it admits: for the node's own
    /// subscriber and simulated sensors, and for the front door.
    pub fn internal(&self) -> &InternalBroker {
        &self.internal
    }

    /// `mqtt://127.0.0.1:<internal port>` (without credentials: see [`Self::internal`]).
    pub fn local_url(&self) -> String {
        format!("mqtt://{}", self.internal.address)
    }
}

/// Starts rumqttd on a free loopback port with fresh internal credentials and returns once it
/// accepts connections. Blocking (it probes the port); call it from `spawn_blocking` or
/// before the async runtime is busy. Clients reach it through [`serve_front_door`].
pub fn start_embedded_broker(config: EmbeddedBrokerConfig) -> Result<EmbeddedBroker, BrokerError> {
    // rumqttd logs a failed bind and carries on, so find out first which port is free.
    let loopback = SocketAddr::new(Ipv4Addr::LOCALHOST.into(), 0);
    let address = {
        let probe = TcpListener::bind(loopback)
            .map_err(|source| BrokerError::PortInUse { address: loopback, source })?;
        probe.local_addr().map_err(|e| BrokerError::Start(e.to_string()))?
    };
    let password = minitrue_auth::random_secret().map_err(|e| BrokerError::Start(e.to_string()))?;
    let expected = password.clone();
    let mut connections = rumqttd::ConnectionSettings {
        connection_timeout_ms: 60_000,
        max_payload_size: config.max_payload_bytes,
        max_inflight_count: config.max_inflight,
        auth: None,
        external_auth: None,
        dynamic_filters: true,
    };
    connections.set_auth_handler(move |_client_id: String, user: String, password: String| {
        let admitted = user == INTERNAL_USER && minitrue_auth::same_secret(&password, &expected);
        async move { admitted }
    });
    let server = rumqttd::ServerSettings {
        name: "minitrue-mqtt".to_string(),
        listen: address,
        tls: None,
        next_connection_delay_ms: 1,
        connections,
    };
    let router = rumqttd::RouterConfig {
        max_connections: 10_010,
        max_outgoing_packet_count: config.max_inflight as u64,
        max_segment_size: 100 << 20,
        max_segment_count: 10,
        ..Default::default()
    };
    let broker_config = rumqttd::Config {
        router,
        v4: Some(HashMap::from([("1".to_string(), server)])),
        ..Default::default()
    };
    let mut broker = rumqttd::Broker::new(broker_config);
    std::thread::Builder::new()
        .name("mqtt-broker".to_string())
        .spawn(move || {
            if let Err(error) = broker.start() {
                tracing::error!(%error, "embedded mqtt broker stopped");
            }
        })
        .map_err(|e| BrokerError::Start(e.to_string()))?;

    let deadline = Instant::now() + Duration::from_secs(10);
    while TcpStream::connect_timeout(&address, Duration::from_millis(200)).is_err() {
        if Instant::now() > deadline {
            return Err(BrokerError::NotListening { address, seconds: 10 });
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let internal = InternalBroker { address, username: INTERNAL_USER.to_string(), password };
    Ok(EmbeddedBroker { internal })
}
