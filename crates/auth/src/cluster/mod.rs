//! Trust between the nodes of a cluster: the shared [`ClusterSecret`], the seal on every
//! gossip packet ([`gossip_seal`]) and the credential on every call one node makes to another
//! ([`peer_credential`]). The design note is docs/cluster-trust.md.

pub mod gossip_seal;
pub mod peer_credential;
mod secret;

pub use peer_credential::{PeerCaller, PeerRefusal, PeerSigner, PeerVerifier, PEER_HEADER};
pub use secret::{ClusterKeys, ClusterSecret, MIN_SECRET_CHARS, SECRET_PREFIX};
