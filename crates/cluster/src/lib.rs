//! MiniTrue's leaderless cluster.
//!
//! - [`membership`]: gossip (chitchat): who is in the cluster, where, and alive or not.
//! - [`ring`]: the consistent-hash ring that says which nodes own a series.

pub mod membership;
pub mod ring;

pub use membership::{
    Member, Membership, MembershipConfig, MembershipError, NodeAddresses, NodeState,
};
pub use ring::{series_token, NodeId, Ring, Token, TokenRange, DEFAULT_VIRTUAL_NODES};
