//! Who may do what on a MiniTrue node.
//!
//! Every door (Postgres wire protocol, HTTP and the web UI, Arrow Flight, the embedded MQTT
//! broker) asks [`Credentials`] who a client is before it serves it: a user proves a
//! password (SCRAM-SHA-256 on pgwire, the password itself over TLS elsewhere) or presents a
//! bearer token. What the client may then do follows from its [`Role`].
//!
//! Users and tokens live in the data directory's credentials file ([`store`]), changed by
//! the `minitrue user` and `minitrue token` commands ([`CredentialsEditor`]) and followed by
//! a running node without a restart. Passwords are kept only as SCRAM verifiers ([`scram`]),
//! tokens only as hashes ([`token`]). With no user and no token the node is open, which
//! `minitrue serve` allows only on loopback.
//!
//! Between the nodes of a cluster, trust comes from the cluster secret ([`cluster`]).

pub mod cluster;
mod error;
mod gate;
pub mod headers;
mod role;
pub mod scram;
pub mod sessions;
pub mod store;
pub mod throttle;
pub mod tls;
pub mod token;

pub use error::AuthError;
pub use gate::{Door, Gatekeeper};
pub use headers::{cookie_value, parse_authorization, Credential};
pub use role::Role;
pub use scram::{ScramExchange, ScramVerifier};
pub use store::{
    Credentials, CredentialsEditor, Principal, TokenRecord, UserRecord, CREDENTIALS_FILE,
};
pub use tls::TlsIdentity;
pub use token::{random_secret, same_secret};
