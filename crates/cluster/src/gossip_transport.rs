//! Gossip over sealed UDP: chitchat's datagrams, each sealed with the cluster's gossip key
//! ([`minitrue_auth::cluster::gossip_seal`]) before it leaves and opened before chitchat sees
//! it. A datagram that does not open (another secret, another cluster id, tampered, replayed,
//! stale) is dropped and counted; it never reaches chitchat's state.
//!
//! chitchat 0.13 hands its transport whole messages and keeps their byte encoding private,
//! so this transport borrows chitchat's own UDP socket as its codec, on loopback: a message
//! to send is written by a codec socket and read back as bytes; an opened plaintext is fed to
//! another codec socket, which parses it. Only datagrams from this transport's own loopback
//! sockets are taken from the codec (another local process cannot feed it), and the codec
//! costs two loopback datagrams per message, a few microseconds next to a gossip round.

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::Context;
use async_trait::async_trait;
use chitchat::transport::{RecvOutcome, SendOutcome, Socket, Transport, UdpSocket as ChitchatUdp};
use chitchat::ChitchatEnvelope;
use minitrue_auth::cluster::gossip_seal::{Opener, Refusal, Sealer, SEAL_OVERHEAD};
use minitrue_common::Metric;

/// The largest UDP payload (what chitchat fills its messages up to).
const MAX_DATAGRAM: usize = 65_507;
/// How long the codec may take to hand back a message (loopback: microseconds). A plaintext
/// chitchat cannot parse is dropped by it silently; this is how long that costs.
const CODEC_DEADLINE: Duration = Duration::from_millis(250);

/// What the sealed transport counts (`minitrue_gossip_*` in `/metrics`).
#[derive(Debug, Default)]
pub struct GossipCounters {
    sent: AtomicU64,
    received: AtomicU64,
    refused: [AtomicU64; Refusal::ALL.len()],
    /// Opened, but not a chitchat message (a peer with the secret and another version).
    unparsable: AtomicU64,
    /// Too large to send once sealed.
    oversized: AtomicU64,
}

impl GossipCounters {
    fn refused(&self, refusal: Refusal) {
        let index = Refusal::ALL.iter().position(|r| *r == refusal).unwrap_or(0);
        self.refused[index].fetch_add(1, Ordering::Relaxed);
    }

    /// The counters as metrics.
    pub fn collect(&self, out: &mut Vec<Metric>) {
        let load = |counter: &AtomicU64| counter.load(Ordering::Relaxed);
        let plain = [
            ("minitrue_gossip_packets_sent_total", "sealed gossip packets sent", &self.sent),
            (
                "minitrue_gossip_packets_received_total",
                "gossip packets received that opened with the cluster's key and were fresh",
                &self.received,
            ),
            (
                "minitrue_gossip_packets_unparsable_total",
                "sealed gossip packets that opened but held no message chitchat understands",
                &self.unparsable,
            ),
            (
                "minitrue_gossip_packets_oversized_total",
                "gossip messages not sent: larger than a datagram once sealed",
                &self.oversized,
            ),
        ];
        for (name, help, counter) in plain {
            out.push(Metric::counter(name, help, load(counter)));
        }
        for (refusal, counter) in Refusal::ALL.iter().zip(&self.refused) {
            out.push(
                Metric::counter(
                    "minitrue_gossip_packets_refused_total",
                    "gossip packets dropped unread: not sealed with this cluster's key, replayed or stale",
                    load(counter),
                )
                .with_label("reason", refusal.as_str()),
            );
        }
    }
}

/// chitchat's transport for a cluster with a secret.
pub(crate) struct SealedUdpTransport {
    gossip_key: [u8; 32],
    counters: Arc<GossipCounters>,
}

impl SealedUdpTransport {
    pub(crate) fn new(gossip_key: [u8; 32], counters: Arc<GossipCounters>) -> SealedUdpTransport {
        SealedUdpTransport { gossip_key, counters }
    }
}

#[async_trait]
impl Transport for SealedUdpTransport {
    async fn open(&self, listen_addr: SocketAddr) -> anyhow::Result<Box<dyn Socket>> {
        let socket = tokio::net::UdpSocket::bind(listen_addr)
            .await
            .with_context(|| format!("failed to bind to {listen_addr}/UDP for gossip"))?;
        Ok(Box::new(SealedSocket {
            socket,
            codec: Codec::open().await?,
            sealer: Sealer::new(&self.gossip_key)?,
            opener: Opener::new(&self.gossip_key),
            counters: self.counters.clone(),
            received: vec![0; MAX_DATAGRAM],
            plaintext: Vec::with_capacity(MAX_DATAGRAM),
            sealed: Vec::with_capacity(MAX_DATAGRAM),
            decoding: None,
        }))
    }
}

struct SealedSocket {
    socket: tokio::net::UdpSocket,
    codec: Codec,
    sealer: Sealer,
    opener: Opener,
    counters: Arc<GossipCounters>,
    received: Vec<u8>,
    plaintext: Vec<u8>,
    sealed: Vec<u8>,
    /// The sender of the plaintext in the codec, while it is being parsed: chitchat may
    /// cancel `recv` at any await, and the next call picks the message up there.
    decoding: Option<SocketAddr>,
}

fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0)
}

#[async_trait]
impl Socket for SealedSocket {
    fn local_addr(&self) -> anyhow::Result<SocketAddr> {
        self.socket.local_addr().context("failed to get UDP socket address")
    }

    async fn send(
        &mut self,
        to: SocketAddr,
        envelope: ChitchatEnvelope,
    ) -> anyhow::Result<SendOutcome> {
        self.codec.encode(envelope, &mut self.plaintext).await?;
        if self.plaintext.len() + SEAL_OVERHEAD > MAX_DATAGRAM {
            self.counters.oversized.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(
                bytes = self.plaintext.len(),
                "gossip message too large to seal; not sent"
            );
            return Ok(SendOutcome { num_bytes_sent: 0 });
        }
        self.sealer.seal(&self.plaintext, now_ms(), &mut self.sealed);
        let sent = self
            .socket
            .send_to(&self.sealed, to)
            .await
            .context("failed to send chitchat message to peer")?;
        self.counters.sent.fetch_add(1, Ordering::Relaxed);
        Ok(SendOutcome { num_bytes_sent: sent })
    }

    async fn recv(&mut self) -> anyhow::Result<RecvOutcome> {
        loop {
            if let Some(from_addr) = self.decoding {
                let parsed = self.codec.decoded().await;
                self.decoding = None;
                match parsed {
                    Some(envelope) => {
                        self.counters.received.fetch_add(1, Ordering::Relaxed);
                        let num_bytes_received = self.plaintext.len();
                        return Ok(RecvOutcome { from_addr, envelope, num_bytes_received });
                    }
                    None => {
                        self.counters.unparsable.fetch_add(1, Ordering::Relaxed);
                        continue;
                    }
                }
            }
            let (length, from_addr) = match self.socket.recv_from(&mut self.received).await {
                Ok(received) => received,
                // A peer that went away (ICMP port unreachable on some systems), a full buffer.
                Err(error)
                    if matches!(
                        error.kind(),
                        std::io::ErrorKind::ConnectionReset
                            | std::io::ErrorKind::ConnectionRefused
                            | std::io::ErrorKind::OutOfMemory
                    ) =>
                {
                    continue
                }
                Err(error) => return Err(error).context("fatal UDP recv error"),
            };
            let opened = self.opener.open(&self.received[..length], now_ms(), &mut self.plaintext);
            if let Err(refusal) = opened {
                self.counters.refused(refusal);
                tracing::debug!(from = %from_addr, reason = refusal.as_str(), "gossip packet refused");
                continue;
            }
            if self.codec.feed(&self.plaintext) {
                self.decoding = Some(from_addr);
            } else {
                self.counters.unparsable.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}

/// chitchat's own UDP socket on loopback, as its message codec (see the module docs).
struct Codec {
    /// Writes messages to `written`.
    writer: Box<dyn Socket>,
    written: tokio::net::UdpSocket,
    written_address: SocketAddr,
    /// Feeds plaintexts to `reader`.
    feeder: tokio::net::UdpSocket,
    feeder_address: SocketAddr,
    reader: Box<dyn Socket>,
    reader_address: SocketAddr,
}

impl Codec {
    async fn open() -> anyhow::Result<Codec> {
        let loopback = SocketAddr::from((Ipv4Addr::LOCALHOST, 0));
        let writer: Box<dyn Socket> = Box::new(ChitchatUdp::open(loopback).await?);
        let written = tokio::net::UdpSocket::bind(loopback).await?;
        // Only what the writer sends is read back.
        written.connect(writer.local_addr()?).await?;
        let feeder = tokio::net::UdpSocket::bind(loopback).await?;
        let reader: Box<dyn Socket> = Box::new(ChitchatUdp::open(loopback).await?);
        Ok(Codec {
            written_address: written.local_addr()?,
            feeder_address: feeder.local_addr()?,
            reader_address: reader.local_addr()?,
            writer,
            written,
            feeder,
            reader,
        })
    }

    /// The bytes of `envelope`, into `out`.
    async fn encode(
        &mut self,
        envelope: ChitchatEnvelope,
        out: &mut Vec<u8>,
    ) -> anyhow::Result<()> {
        self.writer.send(self.written_address, envelope).await?;
        out.resize(MAX_DATAGRAM, 0);
        let length = tokio::time::timeout(CODEC_DEADLINE, self.written.recv(out))
            .await
            .context("the gossip codec did not answer")??;
        out.truncate(length);
        Ok(())
    }

    /// Hands `plaintext` to the reader; false if loopback would not take it now.
    fn feed(&self, plaintext: &[u8]) -> bool {
        self.feeder.try_send_to(plaintext, self.reader_address).is_ok()
    }

    /// The message last fed, parsed; `None` if chitchat could not parse it.
    async fn decoded(&mut self) -> Option<ChitchatEnvelope> {
        let deadline = tokio::time::Instant::now() + CODEC_DEADLINE;
        loop {
            let outcome = tokio::time::timeout_at(deadline, self.reader.recv()).await.ok()?.ok()?;
            // Anything not from the feeder was sent to the codec by someone else.
            if outcome.from_addr == self.feeder_address {
                return Some(outcome.envelope);
            }
        }
    }
}
