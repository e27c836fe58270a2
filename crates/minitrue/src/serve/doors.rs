//! The query doors: their listeners, bound before the cluster is joined (gossip publishes
//! their addresses and the HTTP door names them all), and the doors themselves — HTTP (writes,
//! SQL, the web UI), Arrow Flight and Postgres — over one SQL session.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use minitrue_cluster::NodeAddresses;
use tokio::net::TcpListener;

use super::adapters::{DecommissionDoor, EngineLive, ReplicaReceiver};
use super::cluster::ClusterParts;
use super::{bind, spawn_door, wait_for_shutdown, Node};
use crate::settings::Mode;

/// The doors' bound listeners (Flight and Postgres only on nodes that answer queries).
pub(super) struct Listeners {
    http: TcpListener,
    flight: Option<TcpListener>,
    postgres: Option<TcpListener>,
}

impl Listeners {
    /// Step 2: binds every query door's listener and records its address.
    pub(super) async fn bind(node: &mut Node) -> anyhow::Result<Listeners> {
        let network = &node.config.network;
        let serves_queries = node.config.node.mode != Mode::Ingest;
        let http = bind(network.http_listen(), network.http_port, "http").await?;
        let flight = match serves_queries {
            true => Some(bind(network.flight_listen(), network.flight_port, "flight").await?),
            false => None,
        };
        let postgres = match serves_queries {
            true => Some(bind(network.pg_listen(), network.pg_port, "postgres").await?),
            false => None,
        };
        let listeners = Listeners { http, flight, postgres };
        for (door, listener) in listeners.all() {
            node.ready.insert(door.into(), listener.local_addr()?.to_string().into());
        }
        Ok(listeners)
    }

    fn all(&self) -> impl Iterator<Item = (&'static str, &TcpListener)> {
        [
            ("http", Some(&self.http)),
            ("flight", self.flight.as_ref()),
            ("postgres", self.postgres.as_ref()),
        ]
        .into_iter()
        .filter_map(|(door, listener)| listener.map(|listener| (door, listener)))
    }

    /// The addresses gossip publishes: the bound ports at the advertised IP.
    pub(super) fn published(&self, advertised: IpAddr) -> anyhow::Result<NodeAddresses> {
        let at = |listener: &TcpListener| -> anyhow::Result<SocketAddr> {
            Ok(SocketAddr::new(advertised, listener.local_addr()?.port()))
        };
        Ok(NodeAddresses {
            http: at(&self.http)?,
            postgres: self.postgres.as_ref().map(at).transpose()?,
            flight: self.flight.as_ref().map(at).transpose()?,
        })
    }
}

impl Node {
    /// Step 5: the SQL session (unless the node only ingests) and the HTTP, Flight and
    /// Postgres doors on it.
    pub(super) async fn start_doors(
        &mut self,
        cluster: &ClusterParts,
        listeners: Listeners,
    ) -> anyhow::Result<()> {
        let config = &self.config;
        let session = match config.node.mode != Mode::Ingest {
            true => {
                // Queries read one live owner of every range, here or on peers.
                let reads = Arc::new(minitrue_cluster::ClusterReads::new(
                    cluster.topology.clone(),
                    config.cluster.peer_timeout.0,
                    self.peer_link.clone(),
                ));
                self.metrics.register(reads.metrics());
                let hooks = minitrue_query::ClusterHooks {
                    info: Arc::new(cluster.topology.clone()),
                    writer: cluster.replicator.clone(),
                    runner: Some(reads),
                };
                let session = minitrue_query::session_in_cluster(
                    self.engine.clone(),
                    config.query.options(),
                    self.metrics.clone(),
                    Some(hooks),
                )
                .await?;
                Some(session)
            }
            false => None,
        };
        let addresses = ["http", "postgres", "flight", "mqtt", "gossip"]
            .into_iter()
            .filter_map(|door| {
                let address = self.ready.get(door).and_then(|a| a.as_str())?;
                Some((door.to_string(), address.to_string()))
            })
            .collect();

        let http_address = listeners.http.local_addr()?;
        let mut http_state = minitrue_server::HttpState::new(
            self.parser.clone(),
            cluster.sink.clone(),
            self.metrics.clone(),
            self.gate.clone(),
        )
        .with_live(Arc::new(EngineLive(self.engine.clone())))
        .with_node(minitrue_server::NodeIdentity {
            node_id: config.node.node_id.clone(),
            addresses,
        })
        .with_decommission(Arc::new(DecommissionDoor(cluster.decommission.clone())));
        http_state.metrics_public = config.security.metrics_public;
        http_state.max_body_bytes = config.ingest.http_max_body_bytes as usize;
        if let Some(session) = &session {
            http_state = http_state.with_sql(session.clone());
        }
        self.tasks.push(spawn_door(
            "http",
            minitrue_server::serve_http(
                listeners.http,
                http_state,
                self.tls.clone(),
                wait_for_shutdown(self.stopping.clone()),
            ),
        ));
        let scheme = if self.tls.is_some() { "https" } else { "http" };
        println!(
            "http: {scheme}://{http_address} (web UI; POST /api/v1/write, /api/v2/write, /api/v1/sql, /query; GET /metrics)"
        );

        if let (Some(session), Some(listener)) = (&session, listeners.flight) {
            let address: SocketAddr = listener.local_addr()?;
            let state = minitrue_server::FlightState {
                session: session.clone(),
                gate: self.gate.clone(),
                metrics: self.metrics.clone(),
                replicas: Some(Arc::new(ReplicaReceiver {
                    replicator: cluster.replicator.clone(),
                    repairer: cluster.repairer.clone(),
                })),
                peers: self.peer_calls.clone(),
            };
            self.tasks.push(spawn_door(
                "flight",
                minitrue_server::serve_flight(
                    listener,
                    state,
                    self.tls.clone(),
                    wait_for_shutdown(self.stopping.clone()),
                ),
            ));
            let scheme = if self.tls.is_some() { "grpc+tls" } else { "grpc" };
            println!("flight: {scheme}://{address} (Flight SQL: ADBC, pyarrow.flight)");
        }

        if let (Some(session), Some(listener)) = (session, listeners.postgres) {
            let address: SocketAddr = listener.local_addr()?;
            self.tasks.push(spawn_door(
                "postgres",
                minitrue_server::serve_pgwire(
                    listener,
                    Arc::new(session),
                    self.gate.clone(),
                    self.tls.clone(),
                    wait_for_shutdown(self.stopping.clone()),
                ),
            ));
            println!(
                "postgres: psql -h {} -p {} -U minitrue minitrue",
                address.ip(),
                address.port()
            );
        }
        Ok(())
    }
}
