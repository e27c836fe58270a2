//! `[security]`: who may use the node and how its doors speak TLS (see the README's
//! Security section).

use std::path::PathBuf;

use clap::Args;
use serde::Serialize;

#[derive(Args, Debug, Clone, Serialize)]
pub struct SecuritySettings {
    /// Start even when listening beyond loopback with no users (anyone who reaches the node
    /// may read, write and delete; warned at every start). Users, once created, still apply.
    #[arg(id = "security.insecure_no_auth", long = "insecure-no-auth", env = "MINITRUE_INSECURE_NO_AUTH",
          num_args = 0..=1, default_value_t = false, default_missing_value = "true",
          action = clap::ArgAction::Set, value_parser = clap::builder::BoolishValueParser::new())]
    pub insecure_no_auth: bool,
    /// Serve `GET /metrics` without credentials (for a Prometheus that cannot send a token).
    #[arg(id = "security.metrics_public", long = "metrics-public", env = "MINITRUE_METRICS_PUBLIC",
          num_args = 0..=1, default_value_t = false, default_missing_value = "true",
          action = clap::ArgAction::Set, value_parser = clap::builder::BoolishValueParser::new())]
    pub metrics_public: bool,
    /// Users to create when the node has none yet (first start of a container): a file of
    /// `name role password` lines, e.g. a mounted secret. Ignored once any user exists.
    #[arg(
        id = "security.bootstrap_users",
        long = "bootstrap-users",
        env = "MINITRUE_BOOTSTRAP_USERS"
    )]
    pub bootstrap_users: Option<PathBuf>,
    /// PEM certificate chain for TLS on the Postgres, HTTP, Flight and MQTTS doors (with
    /// --tls-key; both are read again on SIGHUP). It must name the address the node
    /// advertises to its peers (an IP subjectAltName) when the node is in a cluster.
    #[arg(id = "security.tls_cert", long = "tls-cert", env = "MINITRUE_TLS_CERT")]
    pub tls_cert: Option<PathBuf>,
    /// PEM private key of --tls-cert.
    #[arg(id = "security.tls_key", long = "tls-key", env = "MINITRUE_TLS_KEY")]
    pub tls_key: Option<PathBuf>,
    /// PEM CA certificates the other nodes' certificates must chain to (calls between nodes
    /// go over TLS when --tls-cert is set); default: the certificates in --tls-cert.
    #[arg(id = "security.tls_ca", long = "tls-ca", env = "MINITRUE_TLS_CA")]
    pub tls_ca: Option<PathBuf>,
    /// Refuse plaintext: Postgres sessions without TLS fail at startup, and the embedded
    /// broker listens only on its MQTTS port.
    #[arg(id = "security.tls_required", long = "tls-required", env = "MINITRUE_TLS_REQUIRED",
          num_args = 0..=1, default_value_t = false, default_missing_value = "true",
          action = clap::ArgAction::Set, value_parser = clap::builder::BoolishValueParser::new())]
    pub tls_required: bool,
}
