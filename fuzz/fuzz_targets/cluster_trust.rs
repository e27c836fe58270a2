//! Fuzz what reaches a node from the network before it knows the sender is a member: gossip
//! datagrams (opened with the cluster's gossip key) and the peer credential of a Flight call.
//! Neither may panic, nothing but a sealed packet may open, and a sealed packet opens once,
//! to exactly what was sealed.
//!
//! Input: the whole input as a datagram and as a `minitrue-peer` header; then sealed and
//! opened again.
//!
//! Run: `scripts/fuzz.sh 60 cluster_trust`.
#![no_main]

use libfuzzer_sys::fuzz_target;
use minitrue_auth::cluster::gossip_seal::{Opener, Refusal, Sealer};
use minitrue_auth::cluster::{ClusterSecret, PeerVerifier};

const NOW_MS: u64 = 1_800_000_000_000;

fuzz_target!(|data: &[u8]| {
    thread_local! {
        static KEYS: minitrue_auth::cluster::ClusterKeys =
            ClusterSecret::from_text("the fuzzer's cluster secret, long enough").unwrap().keys("fuzz");
    }
    let keys = KEYS.with(|keys| keys.clone());
    let mut opener = Opener::new(&keys.gossip);
    let mut plaintext = Vec::new();
    assert!(opener.open(data, NOW_MS, &mut plaintext).is_err(), "unsealed bytes opened");

    let verifier = PeerVerifier::new(&keys);
    assert!(verifier.verify_at(Some(data), NOW_MS).is_err(), "an unsigned credential passed");

    let mut sealer = Sealer::new(&keys.gossip).unwrap();
    let mut sealed = Vec::new();
    sealer.seal(data, NOW_MS, &mut sealed);
    opener.open(&sealed, NOW_MS, &mut plaintext).unwrap();
    assert_eq!(plaintext, data);
    assert_eq!(opener.open(&sealed, NOW_MS, &mut plaintext), Err(Refusal::Replayed));
});
