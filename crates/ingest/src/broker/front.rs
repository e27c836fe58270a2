//! The embedded broker's front door: the port sensors connect to.
//!
//! rumqttd itself listens on an internal loopback port and accepts only the node's internal
//! credentials (a random secret made at start). The front door reads each client's CONNECT
//! ([`super::connect`]) and decides:
//! - a node with users: the CONNECT must carry a user name and password of a `writer` or
//!   `admin` (checked by the node's [`Gatekeeper`], like every other door); otherwise the
//!   client gets CONNACK 5 "not authorized" (and an unsupported protocol level CONNACK 1);
//! - a node without users: every client is let in (an open node listens on loopback only).
//!
//! An admitted client's CONNECT is passed on with the internal credentials in place of its
//! own, and from then on the bytes flow both ways untouched. Refusals are counted, and
//! authentication failures written to the audit log by the gatekeeper.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use minitrue_auth::{Door, Gatekeeper};
use minitrue_common::Metric;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use super::connect::{connack, ConnackCode, Connect, ConnectError};

/// How long a client may take to send its CONNECT.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Where admitted clients go, and as whom.
#[derive(Clone)]
pub struct InternalBroker {
    pub address: SocketAddr,
    pub username: String,
    pub password: String,
}

impl std::fmt::Debug for InternalBroker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InternalBroker").field("address", &self.address).finish_non_exhaustive()
    }
}

/// What the front door counted (`/metrics`, `door="mqtt"`).
#[derive(Debug, Default)]
pub struct FrontCounters {
    admitted: AtomicU64,
    not_authorized: AtomicU64,
    bad_protocol: AtomicU64,
    malformed: AtomicU64,
    /// TLS handshakes that failed or did not finish within [`CONNECT_TIMEOUT`].
    tls_failed: AtomicU64,
}

impl FrontCounters {
    pub fn metrics(self: Arc<Self>) -> impl Fn(&mut Vec<Metric>) + Send + Sync {
        move |out: &mut Vec<Metric>| {
            out.push(Metric::counter(
                "minitrue_mqtt_connections_admitted_total",
                "MQTT clients the embedded broker's front door let in",
                self.admitted.load(Ordering::Relaxed),
            ));
            for (reason, counter) in [
                ("not_authorized", &self.not_authorized),
                ("protocol_version", &self.bad_protocol),
                ("malformed", &self.malformed),
                ("tls_handshake", &self.tls_failed),
            ] {
                out.push(
                    Metric::counter(
                        "minitrue_mqtt_connections_refused_total",
                        "MQTT clients the embedded broker's front door refused, by reason",
                        counter.load(Ordering::Relaxed),
                    )
                    .with_label("reason", reason),
                );
            }
        }
    }
}

/// Serves the front door on `listener` until `shutdown` resolves; with `tls`, every client
/// first completes a TLS handshake (MQTTS).
pub async fn serve_front_door(
    listener: TcpListener,
    broker: InternalBroker,
    gate: Arc<Gatekeeper>,
    counters: Arc<FrontCounters>,
    tls: Option<tokio_rustls::TlsAcceptor>,
    shutdown: impl std::future::Future<Output = ()> + Send,
) {
    let broker = Arc::new(broker);
    tokio::pin!(shutdown);
    loop {
        let (client, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    tracing::warn!(%error, "mqtt front door: accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = &mut shutdown => return,
        };
        let (broker, gate, counters) = (broker.clone(), gate.clone(), counters.clone());
        let tls = tls.clone();
        tokio::spawn(async move {
            let _ = client.set_nodelay(true);
            let ended = match tls {
                None => admit(client, peer, &broker, &gate, &counters).await,
                // A client that never finishes its handshake is let go like one that never
                // sends CONNECT.
                Some(acceptor) => {
                    match tokio::time::timeout(CONNECT_TIMEOUT, acceptor.accept(client)).await {
                        Ok(Ok(stream)) => admit(stream, peer, &broker, &gate, &counters).await,
                        Ok(Err(error)) => {
                            counters.tls_failed.fetch_add(1, Ordering::Relaxed);
                            Err(error)
                        }
                        Err(_) => {
                            counters.tls_failed.fetch_add(1, Ordering::Relaxed);
                            Err(std::io::ErrorKind::TimedOut.into())
                        }
                    }
                }
            };
            if let Err(error) = ended {
                tracing::debug!(%peer, %error, "mqtt connection ended");
            }
        });
    }
}

async fn admit<S: AsyncRead + AsyncWrite + Unpin>(
    mut client: S,
    peer: SocketAddr,
    broker: &InternalBroker,
    gate: &Gatekeeper,
    counters: &FrontCounters,
) -> std::io::Result<()> {
    let mut buffer = BytesMut::with_capacity(512);
    let read = tokio::time::timeout(CONNECT_TIMEOUT, read_connect(&mut client, &mut buffer)).await;
    let (connect, used) = match read {
        Err(_) => return Ok(()),
        Ok(Err(ReadError::Io(error))) => return Err(error),
        Ok(Err(ReadError::Connect(ConnectError::UnsupportedLevel(_)))) => {
            counters.bad_protocol.fetch_add(1, Ordering::Relaxed);
            return refuse(client, ConnackCode::UnacceptableProtocolVersion).await;
        }
        Ok(Err(ReadError::Connect(_))) => {
            counters.malformed.fetch_add(1, Ordering::Relaxed);
            return Ok(());
        }
        Ok(Ok(parsed)) => parsed,
    };
    if gate.required() && !authorized(gate, peer, &connect) {
        counters.not_authorized.fetch_add(1, Ordering::Relaxed);
        return refuse(client, ConnackCode::NotAuthorized).await;
    }
    counters.admitted.fetch_add(1, Ordering::Relaxed);
    let mut upstream = TcpStream::connect(broker.address).await?;
    let _ = upstream.set_nodelay(true);
    let internal = connect.with_credentials(&broker.username, broker.password.as_bytes());
    upstream.write_all(&internal.encode()).await?;
    // Whatever the client sent after its CONNECT.
    upstream.write_all(&buffer[used..]).await?;
    tokio::io::copy_bidirectional(&mut client, &mut upstream).await?;
    Ok(())
}

/// Whether the CONNECT's credentials are those of a user who may publish.
fn authorized(gate: &Gatekeeper, peer: SocketAddr, connect: &Connect) -> bool {
    let (Some(user), Some(password)) = (&connect.username, &connect.password) else {
        gate.refuse_anonymous(Door::Mqtt, Some(peer));
        return false;
    };
    let password = String::from_utf8_lossy(password);
    match gate.password(Door::Mqtt, Some(peer), user, &password) {
        Ok(principal) if principal.role.can_write() => true,
        Ok(principal) => {
            gate.denied(Door::Mqtt, Some(peer), &principal, "mqtt connect (publish)");
            false
        }
        Err(_) => false,
    }
}

async fn refuse<S: AsyncWrite + Unpin>(mut client: S, code: ConnackCode) -> std::io::Result<()> {
    client.write_all(&connack(code)).await?;
    client.shutdown().await
}

enum ReadError {
    Io(std::io::Error),
    Connect(ConnectError),
}

async fn read_connect<S: AsyncRead + Unpin>(
    client: &mut S,
    buffer: &mut BytesMut,
) -> Result<(Connect, usize), ReadError> {
    loop {
        match Connect::parse(buffer) {
            Ok(parsed) => return Ok(parsed),
            Err(ConnectError::Incomplete) => {}
            Err(error) => return Err(ReadError::Connect(error)),
        }
        let read = client.read_buf(buffer).await.map_err(ReadError::Io)?;
        if read == 0 {
            let closed = std::io::Error::new(std::io::ErrorKind::UnexpectedEof, "closed");
            return Err(ReadError::Io(closed));
        }
    }
}
