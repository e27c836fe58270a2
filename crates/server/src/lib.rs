//! MiniTrue's protocol front doors. They translate, they don't decide: every request becomes
//! SQL on the node's DataFusion session (`minitrue-query`) or a write into the storage engine.
//!
//! - [`serve_pgwire`]: the Postgres wire protocol, so psql, Grafana's PostgreSQL data source
//!   and Postgres drivers connect to MiniTrue as to Postgres.
//! - [`serve_flight`]: Arrow Flight SQL (ADBC, `pyarrow.flight`) and plain Flight tickets and
//!   bulk writes.
//! - [`serve_http`]: HTTP writes, SQL over HTTP, metrics.

mod flight;
mod http;
mod pgwire;
mod stateless;
mod tls_incoming;

pub use flight::{serve_flight, FlightState, PeerCalls, ReplicaDoor, ReplicaError};
pub use http::{
    router as http_router, serve_http, Decommissioning, HttpState, LiveSource, NodeIdentity,
    DEFAULT_MAX_BODY_BYTES,
};
pub use pgwire::serve_pgwire;

use std::sync::Arc;

use minitrue_auth::TlsIdentity;

/// TLS for a door: the node's certificate, and whether plaintext clients are refused
/// (`--tls-required`).
#[derive(Debug, Clone)]
pub struct DoorTls {
    pub identity: Arc<TlsIdentity>,
    pub required: bool,
}
