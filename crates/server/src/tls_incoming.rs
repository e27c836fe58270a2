//! Accepting TLS connections for the HTTP and Flight doors: TCP accepts on one task, each
//! handshake on its own task with a deadline (a client that opens a socket and says nothing
//! holds a task for [`HANDSHAKE_TIMEOUT`] at most, and never delays other clients), and the
//! finished connections handed over as a stream, the shape tonic's `serve_with_incoming`
//! takes.
//!
//! Failed and timed-out handshakes are counted per door
//! (`minitrue_tls_handshakes_failed_total{door}`).

use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use futures::Stream;
use minitrue_common::metrics::{Metric, MetricsRegistry};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_rustls::server::TlsStream;
use tokio_rustls::TlsAcceptor;
use tonic::transport::server::{Connected, TcpConnectInfo};

/// How long a client has to finish its TLS handshake.
pub(crate) const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Finished handshakes waiting for the server to take them.
const READY_QUEUE: usize = 64;

/// A TLS connection after its handshake, with the client's address.
pub(crate) struct TlsConnection {
    stream: TlsStream<TcpStream>,
    info: TcpConnectInfo,
}

impl TlsConnection {
    pub(crate) fn peer(&self) -> Option<SocketAddr> {
        self.info.remote_addr
    }
}

/// The TLS connections accepted on a listener; dropping it stops accepting.
pub(crate) struct TlsIncoming {
    ready: mpsc::Receiver<TlsConnection>,
    accepting: JoinHandle<()>,
}

/// Starts accepting TLS connections on `listener`, counting failed handshakes in `metrics`
/// under `door`.
pub(crate) fn tls_incoming(
    listener: TcpListener,
    acceptor: TlsAcceptor,
    door: &'static str,
    metrics: &MetricsRegistry,
) -> TlsIncoming {
    let failures = Arc::new(AtomicU64::new(0));
    let counted = failures.clone();
    metrics.register(Arc::new(move |out: &mut Vec<Metric>| {
        out.push(
            Metric::counter(
                "minitrue_tls_handshakes_failed_total",
                "TLS handshakes that failed or did not finish in time",
                counted.load(Ordering::Relaxed),
            )
            .with_label("door", door),
        );
    }));
    let (sender, ready) = mpsc::channel(READY_QUEUE);
    let accepting = tokio::spawn(async move {
        while !sender.is_closed() {
            let (socket, peer) = match listener.accept().await {
                Ok(accepted) => accepted,
                Err(error) => {
                    // Out of file descriptors and the like: wait rather than spin.
                    tracing::warn!(door, %error, "accepting a connection failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            };
            // Without TCP_NODELAY, small response frames wait for the client's delayed ACK.
            let _ = socket.set_nodelay(true);
            let info =
                TcpConnectInfo { local_addr: socket.local_addr().ok(), remote_addr: Some(peer) };
            let (acceptor, sender, failures) = (acceptor.clone(), sender.clone(), failures.clone());
            tokio::spawn(async move {
                let failed = |why: String| {
                    failures.fetch_add(1, Ordering::Relaxed);
                    tracing::debug!(door, %peer, why, "tls handshake failed");
                };
                match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(socket)).await {
                    Ok(Ok(stream)) => {
                        let _ = sender.send(TlsConnection { stream, info }).await;
                    }
                    Ok(Err(error)) => failed(error.to_string()),
                    Err(_) => failed("timed out".to_string()),
                }
            });
        }
    });
    TlsIncoming { ready, accepting }
}

impl Stream for TlsIncoming {
    type Item = std::io::Result<TlsConnection>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.ready.poll_recv(cx).map(|connection| connection.map(Ok))
    }
}

impl Drop for TlsIncoming {
    fn drop(&mut self) {
        self.accepting.abort();
    }
}

impl Connected for TlsConnection {
    type ConnectInfo = TcpConnectInfo;

    fn connect_info(&self) -> TcpConnectInfo {
        self.info.clone()
    }
}

impl AsyncRead for TlsConnection {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.stream).poll_read(cx, buf)
    }
}

impl AsyncWrite for TlsConnection {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }
}
