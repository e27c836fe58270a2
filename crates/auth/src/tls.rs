//! The node's TLS identity: one certificate chain and key (PEM files), shared by every
//! listener that speaks TLS, and loaded again on request (`minitrue serve` does on SIGHUP)
//! without dropping a connection: handshakes after the reload present the new certificate.
//!
//! Configurations use ring as the crypto provider (the one pgwire and the rest of the tree
//! build with) and rustls' safe defaults: TLS 1.2 and 1.3 only.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use parking_lot::RwLock;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls::{ClientConfig, RootCertStore, ServerConfig};

use crate::error::AuthError;

/// A certificate and key from PEM files, reloadable.
#[derive(Debug)]
pub struct TlsIdentity {
    cert_path: PathBuf,
    key_path: PathBuf,
    provider: Arc<CryptoProvider>,
    current: RwLock<Arc<CertifiedKey>>,
}

impl TlsIdentity {
    /// Loads `cert_path` (the chain, leaf first) and `key_path` (PKCS#8, PKCS#1 or SEC1).
    pub fn load(cert_path: &Path, key_path: &Path) -> Result<Arc<Self>, AuthError> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let key = read_identity(cert_path, key_path, &provider)?;
        Ok(Arc::new(TlsIdentity {
            cert_path: cert_path.to_path_buf(),
            key_path: key_path.to_path_buf(),
            provider,
            current: RwLock::new(Arc::new(key)),
        }))
    }

    /// Reads the files again; on failure the previous certificate stays in use.
    pub fn reload(&self) -> Result<(), AuthError> {
        let key = read_identity(&self.cert_path, &self.key_path, &self.provider)?;
        *self.current.write() = Arc::new(key);
        Ok(())
    }

    /// The leaf certificate's DER bytes (what SCRAM channel binding hashes).
    pub fn leaf_certificate(&self) -> Vec<u8> {
        self.current.read().cert.first().map(|cert| cert.to_vec()).unwrap_or_default()
    }

    /// A server configuration presenting this identity (whatever it is at each handshake),
    /// offering `alpn` protocols (`h2` for gRPC, `http/1.1`, …; none for Postgres and MQTT).
    pub fn server_config(self: &Arc<Self>, alpn: &[&[u8]]) -> Result<Arc<ServerConfig>, AuthError> {
        let mut config = ServerConfig::builder_with_provider(self.provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(|error| AuthError::Tls(error.to_string()))?
            .with_no_client_auth()
            .with_cert_resolver(Arc::new(Resolver(self.clone())));
        config.alpn_protocols = alpn.iter().map(|protocol| protocol.to_vec()).collect();
        Ok(Arc::new(config))
    }

    /// The client configuration for calls to other nodes: their certificates must chain to
    /// a certificate in `ca_path` (`--tls-ca`), or, without it, to one in this node's own
    /// certificate file (which works when every node's file carries the CA that signed it).
    pub fn peer_client_config(&self, ca_path: Option<&Path>) -> Result<ClientConfig, AuthError> {
        client_config(Some(ca_path.unwrap_or(&self.cert_path)), None)
    }
}

/// A TLS client configuration with ring as the provider (rustls' process default is
/// ambiguous in this tree and would panic): servers must chain to a certificate in
/// `ca_path`, or without it to the platform's trusted roots; with `identity` (a certificate
/// chain file and its key file) the client presents that certificate when asked.
pub fn client_config(
    ca_path: Option<&Path>,
    identity: Option<(&Path, &Path)>,
) -> Result<ClientConfig, AuthError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = RootCertStore::empty();
    match ca_path {
        Some(path) => {
            for cert in read_certificates(path)? {
                roots.add(cert).map_err(|error| {
                    AuthError::Tls(format!("{}: not a CA certificate: {error}", path.display()))
                })?;
            }
        }
        None => {
            let native = rustls_native_certs::load_native_certs();
            roots.add_parsable_certificates(native.certs);
            if roots.is_empty() {
                return Err(AuthError::Tls(
                    "this machine has no trusted CA certificates; name the broker's CA file"
                        .to_string(),
                ));
            }
        }
    }
    let builder = ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|error| AuthError::Tls(error.to_string()))?
        .with_root_certificates(roots);
    match identity {
        None => Ok(builder.with_no_client_auth()),
        Some((cert_path, key_path)) => builder
            .with_client_auth_cert(read_certificates(cert_path)?, read_key(key_path)?)
            .map_err(|error| {
                AuthError::Tls(format!(
                    "{}: does not fit the certificate: {error}",
                    key_path.display()
                ))
            }),
    }
}

#[derive(Debug)]
struct Resolver(Arc<TlsIdentity>);

impl ResolvesServerCert for Resolver {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.0.current.read().clone())
    }
}

fn read_identity(
    cert_path: &Path,
    key_path: &Path,
    provider: &CryptoProvider,
) -> Result<CertifiedKey, AuthError> {
    let chain = read_certificates(cert_path)?;
    let key = read_key(key_path)?;
    CertifiedKey::from_der(chain, key, provider).map_err(|error| {
        AuthError::Tls(format!("{}: does not fit the certificate: {error}", key_path.display()))
    })
}

/// Every certificate of a PEM file; at least one.
fn read_certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>, AuthError> {
    let bad = |what: String| AuthError::Tls(format!("{}: {what}", path.display()));
    let certificates: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(path)
        .map_err(|error| bad(error.to_string()))?
        .collect::<Result<_, _>>()
        .map_err(|error| bad(error.to_string()))?;
    if certificates.is_empty() {
        return Err(bad("no certificate in the file".to_string()));
    }
    Ok(certificates)
}

fn read_key(path: &Path) -> Result<PrivateKeyDer<'static>, AuthError> {
    PrivateKeyDer::from_pem_file(path)
        .map_err(|error| AuthError::Tls(format!("{}: no private key: {error}", path.display())))
}
