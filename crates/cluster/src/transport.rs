//! How peer calls reach another node's Flight door: plain TCP, or TLS when the cluster's
//! doors speak TLS (`--tls-cert`). Over TLS the peer's certificate must chain to the roots
//! the node was given and name the address the peer gossips (an IP `subjectAltName`), as a
//! client's would.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use hyper_util::rt::TokioIo;
use rustls::pki_types::ServerName;
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use tonic::codegen::http::Uri;
use tonic::codegen::Service;

/// The TLS client configuration peer calls use (roots, ALPN `h2`).
#[derive(Clone)]
pub struct PeerTls(Arc<rustls::ClientConfig>);

impl PeerTls {
    /// Peer calls made with `config`; `h2` is offered whatever `config` says, as gRPC needs.
    pub fn new(config: rustls::ClientConfig) -> PeerTls {
        let mut config = config;
        config.alpn_protocols = vec![b"h2".to_vec()];
        PeerTls(Arc::new(config))
    }
}

impl std::fmt::Debug for PeerTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PeerTls")
    }
}

/// Opens TLS connections to one peer (tonic asks its connector for every new connection).
#[derive(Clone)]
pub(crate) struct TlsConnector {
    tls: PeerTls,
    address: SocketAddr,
}

impl TlsConnector {
    pub(crate) fn new(tls: PeerTls, address: SocketAddr) -> TlsConnector {
        TlsConnector { tls, address }
    }
}

impl Service<Uri> for TlsConnector {
    type Response = TokioIo<TlsStream<TcpStream>>;
    type Error = std::io::Error;
    type Future = Pin<Box<dyn Future<Output = std::io::Result<Self::Response>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, _uri: Uri) -> Self::Future {
        let (config, address) = (self.tls.0.clone(), self.address);
        Box::pin(async move {
            let socket = TcpStream::connect(address).await?;
            // Small gRPC frames must not wait for delayed ACKs (see the Flight door).
            socket.set_nodelay(true)?;
            let name = ServerName::IpAddress(address.ip().into());
            let stream = tokio_rustls::TlsConnector::from(config).connect(name, socket).await?;
            Ok(TokioIo::new(stream))
        })
    }
}
