//! `[network]`: where each door listens. Every port can be 0 (the OS picks a free one; the
//! bound addresses are printed and written to `--ready-file`).

use std::net::{IpAddr, Ipv4Addr};

use clap::Args;
use serde::Serialize;

#[derive(Args, Debug, Clone, Serialize)]
pub struct NetworkSettings {
    /// Address every listener binds (default 127.0.0.1: nothing is exposed unless asked).
    #[arg(id = "network.listen", long = "listen", env = "MINITRUE_LISTEN", default_value_t = IpAddr::V4(Ipv4Addr::LOCALHOST))]
    pub listen: IpAddr,
    /// Address of the Postgres door (default: --listen), e.g. to keep SQL on loopback while
    /// MQTT faces the sensors' network.
    #[arg(id = "network.pg_listen", long = "pg-listen", env = "MINITRUE_PG_LISTEN")]
    pub pg_listen: Option<IpAddr>,
    /// Address of the HTTP door (default: --listen).
    #[arg(id = "network.http_listen", long = "http-listen", env = "MINITRUE_HTTP_LISTEN")]
    pub http_listen: Option<IpAddr>,
    /// Address of the Arrow Flight door (default: --listen).
    #[arg(id = "network.flight_listen", long = "flight-listen", env = "MINITRUE_FLIGHT_LISTEN")]
    pub flight_listen: Option<IpAddr>,
    /// Address of the embedded broker's MQTT and MQTTS ports (default: --listen).
    #[arg(id = "network.mqtt_listen", long = "mqtt-listen", env = "MINITRUE_MQTT_LISTEN")]
    pub mqtt_listen: Option<IpAddr>,
    /// HTTP API, WebSocket, web UI, /metrics, /health.
    #[arg(
        id = "network.http_port",
        long = "http-port",
        alias = "port",
        env = "MINITRUE_HTTP_PORT",
        default_value_t = 8080
    )]
    pub http_port: u16,
    /// Postgres wire protocol.
    #[arg(
        id = "network.pg_port",
        long = "pg-port",
        env = "MINITRUE_PG_PORT",
        default_value_t = 5432
    )]
    pub pg_port: u16,
    /// Arrow Flight (Flight SQL and the peer service).
    #[arg(
        id = "network.flight_port",
        long = "flight-port",
        env = "MINITRUE_FLIGHT_PORT",
        default_value_t = 50051
    )]
    pub flight_port: u16,
    /// Gossip (UDP).
    #[arg(
        id = "network.gossip_port",
        long = "gossip-port",
        alias = "tcp_port",
        alias = "tcp-port",
        env = "MINITRUE_GOSSIP_PORT",
        default_value_t = 9000
    )]
    pub gossip_port: u16,
    /// Embedded MQTT broker (used when no --broker is given).
    #[arg(
        id = "network.mqtt_port",
        long = "mqtt-port",
        env = "MINITRUE_MQTT_PORT",
        default_value_t = 1883
    )]
    pub mqtt_port: u16,
    /// MQTT over TLS for the embedded broker (with --tls-cert).
    #[arg(
        id = "network.mqtts_port",
        long = "mqtts-port",
        env = "MINITRUE_MQTTS_PORT",
        default_value_t = 8883
    )]
    pub mqtts_port: u16,
    /// The IP other nodes reach this one at (default: --listen; required when listening on
    /// 0.0.0.0 or ::).
    #[arg(
        id = "network.advertise_address",
        long = "advertise-address",
        env = "MINITRUE_ADVERTISE_ADDRESS"
    )]
    pub advertise_address: Option<IpAddr>,
}

impl NetworkSettings {
    pub fn pg_listen(&self) -> IpAddr {
        self.pg_listen.unwrap_or(self.listen)
    }

    pub fn http_listen(&self) -> IpAddr {
        self.http_listen.unwrap_or(self.listen)
    }

    pub fn flight_listen(&self) -> IpAddr {
        self.flight_listen.unwrap_or(self.listen)
    }

    pub fn mqtt_listen(&self) -> IpAddr {
        self.mqtt_listen.unwrap_or(self.listen)
    }
}
