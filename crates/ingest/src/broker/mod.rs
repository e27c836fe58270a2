//! The embedded MQTT broker (rumqttd, MQTT 3.1.1): what a node runs when no external broker
//! is configured, so one command on a fresh machine gives sensors somewhere to publish.
//!
//! The node's own subscriber connects to it over loopback like any other client, so the
//! ingestion path is the same as with an external broker.
//!
//! Durability: the subscriber acknowledges a message to the broker only after its points are
//! in the WAL, but rumqttd keeps messages in memory and acknowledges a publisher as soon as it
//! has the message. A message between the two when the node is killed is lost: the window is
//! the subscriber's in-flight batch. Deployments that need "acknowledged to the sensor ⇒
//! stored" across node crashes use an external broker with persistence (Mosquitto, see
//! [`crate::mqtt`]), which outlives the node and redelivers.

use std::collections::HashMap;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::time::{Duration, Instant};

/// How the embedded broker listens.
#[derive(Debug, Clone)]
pub struct EmbeddedBrokerConfig {
    pub listen: SocketAddr,
    /// Largest publish payload accepted (bigger ones close the publisher's connection).
    pub max_payload_bytes: usize,
    /// Unacknowledged QoS 1 messages per connection; bounds the subscriber's batch.
    pub max_inflight: usize,
    /// `user → password`; `None` accepts anonymous clients.
    pub users: Option<HashMap<String, String>>,
}

impl EmbeddedBrokerConfig {
    pub fn new(listen: SocketAddr) -> Self {
        EmbeddedBrokerConfig { listen, max_payload_bytes: 1 << 20, max_inflight: 1000, users: None }
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
    address: SocketAddr,
}

impl EmbeddedBroker {
    /// Where it listens (the port resolved when `listen` asked for port 0).
    pub fn address(&self) -> SocketAddr {
        self.address
    }

    /// `mqtt://host:port` for clients on this machine (a wildcard listen address becomes
    /// loopback).
    pub fn local_url(&self) -> String {
        let host = if self.address.ip().is_unspecified() {
            match self.address {
                SocketAddr::V4(_) => "127.0.0.1".to_string(),
                SocketAddr::V6(_) => "[::1]".to_string(),
            }
        } else {
            match self.address {
                SocketAddr::V4(a) => a.ip().to_string(),
                SocketAddr::V6(a) => format!("[{}]", a.ip()),
            }
        };
        format!("mqtt://{host}:{}", self.address.port())
    }
}

/// Starts the broker and returns once it accepts connections. Blocking (it probes the port);
/// call it from `spawn_blocking` or before the async runtime is busy.
pub fn start_embedded_broker(config: EmbeddedBrokerConfig) -> Result<EmbeddedBroker, BrokerError> {
    // rumqttd logs a failed bind and carries on, so find out first whether the port is free
    // (and which port "0" means).
    let address = {
        let probe = TcpListener::bind(config.listen)
            .map_err(|source| BrokerError::PortInUse { address: config.listen, source })?;
        probe.local_addr().map_err(|e| BrokerError::Start(e.to_string()))?
    };
    let connections = rumqttd::ConnectionSettings {
        connection_timeout_ms: 60_000,
        max_payload_size: config.max_payload_bytes,
        max_inflight_count: config.max_inflight,
        auth: config.users.clone(),
        external_auth: None,
        dynamic_filters: true,
    };
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

    let connect_to = if address.ip().is_unspecified() {
        SocketAddr::new(std::net::Ipv4Addr::LOCALHOST.into(), address.port())
    } else {
        address
    };
    let deadline = Instant::now() + Duration::from_secs(10);
    while TcpStream::connect_timeout(&connect_to, Duration::from_millis(200)).is_err() {
        if Instant::now() > deadline {
            return Err(BrokerError::NotListening { address, seconds: 10 });
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok(EmbeddedBroker { address })
}
