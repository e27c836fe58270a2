//! MiniTrue's leaderless cluster.
//!
//! - [`membership`]: gossip (chitchat): who is in the cluster, where, and alive or not.
//! - [`ring`]: the consistent-hash ring that says which nodes own a series.
//! - [`topology`]: the members and the ring as this node sees them now, kept current.

pub mod membership;
pub mod ring;
pub mod topology;

pub use membership::{
    Member, Membership, MembershipChanges, MembershipConfig, MembershipError, NodeAddresses,
    NodeState,
};
pub use ring::{series_token, NodeId, Ring, Token, TokenRange, DEFAULT_VIRTUAL_NODES};
pub use topology::{Cluster, MemberStatus, Topology, TopologyConfig, TopologyWatch};
