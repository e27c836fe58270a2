//! MiniTrue's leaderless cluster.
//!
//! - [`membership`]: gossip (chitchat): who is in the cluster, where, and alive or not.
//! - [`ring`]: the consistent-hash ring that says which nodes own a series.
//! - [`topology`]: the members and the ring as this node sees them now, kept current.
//! - [`replicate`]: writes go to every owner of their series, with a write quorum; missed
//!   writes wait as [`hints`] until their owner is back. Peers talk Arrow Flight ([`peer`]).
//! - [`reads`]: queries read one live owner per range, running plan fragments on peers.
//! - [`repair`]: anti-entropy; owners of the same ranges compare Merkle digests and copy
//!   each other what they lack (also how a restarted or new node catches up).
//! - [`decommission`]: a node hands its ranges to their next owners and leaves the ring.

pub mod decommission;
mod gossip_transport;
pub mod hints;
pub mod membership;
pub mod peer;
pub mod reads;
pub mod repair;
pub mod replicate;
pub mod ring;
pub mod topology;
mod transport;

pub use hints::{HintError, HintStore};
pub use membership::{
    LocalKeys, Member, Membership, MembershipChanges, MembershipConfig, MembershipError,
    MqttSession, NodeAddresses, NodeState,
};
pub use peer::{PeerError, PeerLink, ReplicaWrite, REPLICA_DELETE_ACTION, REPLICA_WRITE_PATH};
pub use reads::ClusterReads;
pub use replicate::{ReplicationConfig, ReplicationError, Replicator};
pub use ring::{series_token, NodeId, Ring, Token, TokenRange, DEFAULT_VIRTUAL_NODES};
pub use topology::{Cluster, MemberStatus, Topology, TopologyConfig, TopologyWatch};
pub use transport::PeerTls;
