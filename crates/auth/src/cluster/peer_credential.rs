//! Calls between nodes prove the cluster secret: each carries a fresh credential in its
//! [`PEER_HEADER`] header, `v1.<node id, base64url>.<issued, ms since 1970>.<nonce,
//! base64url>.<HMAC-SHA256, base64url>`, signed with the peer key derived from the secret.
//!
//! The receiving node checks the signature, that the credential was issued within
//! [`MAX_CLOCK_SKEW`] of its own clock, and that its nonce was not used before (nonces are
//! remembered for as long as their credential could pass), so a credential read off the wire
//! cannot be used again. Without TLS between the nodes (`--tls-cert`), an attacker on the
//! path could still read and alter a call in flight; the credential stops everyone else.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use minitrue_common::Metric;
use parking_lot::Mutex;
use ring::hmac;

use super::gossip_seal::MAX_CLOCK_SKEW;
use super::ClusterKeys;
use crate::scram::fill_random;

/// The gRPC metadata key (an HTTP/2 header) that carries a peer credential.
pub const PEER_HEADER: &str = "minitrue-peer";
/// Longer credentials are refused unread.
pub const MAX_CREDENTIAL_BYTES: usize = 512;
/// Nonces remembered at most: a node taking more peer calls than this within twice the clock
/// skew refuses the excess as [`PeerRefusal::Busy`].
pub const MAX_REMEMBERED_NONCES: usize = 1 << 21;
const VERSION: &str = "v1";
const NONCE_BYTES: usize = 16;

fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0)
}

fn signed_text(node: &str, issued_ms: u64, nonce: &str) -> String {
    format!("minitrue peer call {VERSION}\0{node}\0{issued_ms}\0{nonce}")
}

/// Makes the credentials this node's calls to its peers carry.
pub struct PeerSigner {
    key: hmac::Key,
    node_b64: String,
}

impl PeerSigner {
    /// Signs as `node_id` with `keys.peer`.
    pub fn new(keys: &ClusterKeys, node_id: &str) -> PeerSigner {
        PeerSigner {
            key: hmac::Key::new(hmac::HMAC_SHA256, &keys.peer),
            node_b64: URL_SAFE_NO_PAD.encode(node_id),
        }
    }

    /// A fresh credential, valid once.
    pub fn credential(&self) -> String {
        self.credential_at(now_ms())
    }

    /// A fresh credential issued at `issued_ms`.
    pub fn credential_at(&self, issued_ms: u64) -> String {
        let mut nonce = [0u8; NONCE_BYTES];
        // The system's generator does not fail on the platforms we run on; if it did, the
        // peer would refuse the repeated nonce rather than accept a forgery.
        let _ = fill_random(&mut nonce);
        let nonce = URL_SAFE_NO_PAD.encode(nonce);
        let tag = hmac::sign(&self.key, signed_text(&self.node_b64, issued_ms, &nonce).as_bytes());
        let tag = URL_SAFE_NO_PAD.encode(tag.as_ref());
        format!("{VERSION}.{}.{issued_ms}.{nonce}.{tag}", self.node_b64)
    }
}

impl std::fmt::Debug for PeerSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PeerSigner(..)")
    }
}

/// Why a peer credential was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PeerRefusal {
    #[error("the call carries no peer credential")]
    Missing,
    #[error("the peer credential is malformed")]
    Malformed,
    #[error("the peer credential is not signed with this cluster's secret")]
    Forged,
    #[error("the peer credential was issued too long ago (or in the future): are the clocks of the nodes in sync?")]
    Stale,
    #[error("the peer credential was used before")]
    Replayed,
    #[error("too many peer calls to remember: try again")]
    Busy,
}

impl PeerRefusal {
    const ALL: [PeerRefusal; 6] = [
        PeerRefusal::Missing,
        PeerRefusal::Malformed,
        PeerRefusal::Forged,
        PeerRefusal::Stale,
        PeerRefusal::Replayed,
        PeerRefusal::Busy,
    ];

    fn as_str(self) -> &'static str {
        match self {
            PeerRefusal::Missing => "missing",
            PeerRefusal::Malformed => "malformed",
            PeerRefusal::Forged => "forged",
            PeerRefusal::Stale => "stale",
            PeerRefusal::Replayed => "replayed",
            PeerRefusal::Busy => "busy",
        }
    }
}

/// A call proven to come from a node of the cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerCaller {
    /// The node id it signed as.
    pub node: String,
}

#[derive(Default)]
struct Nonces {
    until: HashMap<[u8; NONCE_BYTES], u64>,
    /// In the order they were remembered, which is the order they expire in.
    order: VecDeque<(u64, [u8; NONCE_BYTES])>,
}

/// Checks the credentials of calls from peers, and counts what it refused.
pub struct PeerVerifier {
    key: hmac::Key,
    nonces: Mutex<Nonces>,
    accepted: AtomicU64,
    refused: [AtomicU64; PeerRefusal::ALL.len()],
}

impl PeerVerifier {
    pub fn new(keys: &ClusterKeys) -> PeerVerifier {
        PeerVerifier {
            key: hmac::Key::new(hmac::HMAC_SHA256, &keys.peer),
            nonces: Mutex::new(Nonces::default()),
            accepted: AtomicU64::new(0),
            refused: Default::default(),
        }
    }

    /// The caller of a call whose [`PEER_HEADER`] is `value` (`None`: absent).
    pub fn verify(&self, value: Option<&[u8]>) -> Result<PeerCaller, PeerRefusal> {
        self.verify_at(value, now_ms())
    }

    /// [`PeerVerifier::verify`] by the clock `now_ms`.
    pub fn verify_at(&self, value: Option<&[u8]>, now_ms: u64) -> Result<PeerCaller, PeerRefusal> {
        let result = self.check(value, now_ms);
        match result {
            Ok(_) => self.accepted.fetch_add(1, Ordering::Relaxed),
            Err(refusal) => {
                let index = PeerRefusal::ALL.iter().position(|r| *r == refusal).unwrap_or(0);
                self.refused[index].fetch_add(1, Ordering::Relaxed)
            }
        };
        result
    }

    fn check(&self, value: Option<&[u8]>, now_ms: u64) -> Result<PeerCaller, PeerRefusal> {
        let value = value.ok_or(PeerRefusal::Missing)?;
        if value.len() > MAX_CREDENTIAL_BYTES {
            return Err(PeerRefusal::Malformed);
        }
        let text = std::str::from_utf8(value).map_err(|_| PeerRefusal::Malformed)?;
        let parts: Vec<&str> = text.split('.').collect();
        let [VERSION, node_b64, issued, nonce_b64, tag_b64] = parts.as_slice() else {
            return Err(PeerRefusal::Malformed);
        };
        let issued_ms: u64 = issued.parse().map_err(|_| PeerRefusal::Malformed)?;
        let tag = URL_SAFE_NO_PAD.decode(tag_b64).map_err(|_| PeerRefusal::Malformed)?;
        let signed = signed_text(node_b64, issued_ms, nonce_b64);
        hmac::verify(&self.key, signed.as_bytes(), &tag).map_err(|_| PeerRefusal::Forged)?;
        let node = URL_SAFE_NO_PAD
            .decode(node_b64)
            .ok()
            .and_then(|bytes| String::from_utf8(bytes).ok())
            .ok_or(PeerRefusal::Malformed)?;
        let nonce: [u8; NONCE_BYTES] = URL_SAFE_NO_PAD
            .decode(nonce_b64)
            .ok()
            .and_then(|bytes| bytes.try_into().ok())
            .ok_or(PeerRefusal::Malformed)?;
        let skew = MAX_CLOCK_SKEW.as_millis() as u64;
        if issued_ms.saturating_add(skew) < now_ms || issued_ms > now_ms.saturating_add(skew) {
            return Err(PeerRefusal::Stale);
        }
        self.remember(nonce, issued_ms.saturating_add(skew), now_ms)?;
        Ok(PeerCaller { node })
    }

    /// Remembers `nonce` until `until_ms` (after which its credential is stale anyway).
    fn remember(
        &self,
        nonce: [u8; NONCE_BYTES],
        until_ms: u64,
        now_ms: u64,
    ) -> Result<(), PeerRefusal> {
        let mut nonces = self.nonces.lock();
        // Expired nonces go first; a credential issued ahead of the receiver's clock is
        // remembered a little longer than needed, which only costs memory.
        while let Some(&(until, old)) = nonces.order.front() {
            if until >= now_ms && nonces.order.len() < MAX_REMEMBERED_NONCES {
                break;
            }
            if until >= now_ms {
                return Err(PeerRefusal::Busy);
            }
            nonces.order.pop_front();
            nonces.until.remove(&old);
        }
        if nonces.until.contains_key(&nonce) {
            return Err(PeerRefusal::Replayed);
        }
        let until = until_ms.max(now_ms);
        nonces.until.insert(nonce, until);
        let at = nonces.order.partition_point(|(other, _)| *other <= until);
        nonces.order.insert(at, (until, nonce));
        Ok(())
    }

    /// The counters, for the node's metrics registry.
    pub fn metrics(self: Arc<Self>) -> impl Fn(&mut Vec<Metric>) + Send + Sync {
        move |out: &mut Vec<Metric>| {
            out.push(Metric::counter(
                "minitrue_peer_calls_accepted_total",
                "calls from other nodes whose peer credential checked out",
                self.accepted.load(Ordering::Relaxed),
            ));
            for (refusal, counter) in PeerRefusal::ALL.iter().zip(&self.refused) {
                out.push(
                    Metric::counter(
                        "minitrue_peer_calls_refused_total",
                        "calls to peer-only services refused for a missing or bad peer credential",
                        counter.load(Ordering::Relaxed),
                    )
                    .with_label("reason", refusal.as_str()),
                );
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::ClusterSecret;

    const NOW: u64 = 1_800_000_000_000;

    fn keys(cluster: &str) -> ClusterKeys {
        ClusterSecret::from_text("correct horse battery staple, but longer").unwrap().keys(cluster)
    }

    #[test]
    fn credentials_prove_the_secret_once_and_only_while_fresh() {
        let signer = PeerSigner::new(&keys("minitrue"), "node.1");
        let verifier = PeerVerifier::new(&keys("minitrue"));
        let credential = signer.credential_at(NOW);
        let caller = verifier.verify_at(Some(credential.as_bytes()), NOW + 5).unwrap();
        assert_eq!(caller.node, "node.1");
        let again = verifier.verify_at(Some(credential.as_bytes()), NOW + 6);
        assert_eq!(again, Err(PeerRefusal::Replayed));
        assert_ne!(signer.credential_at(NOW), credential, "every credential is new");

        let other_cluster = PeerVerifier::new(&keys("west"));
        let fresh = signer.credential_at(NOW);
        assert_eq!(other_cluster.verify_at(Some(fresh.as_bytes()), NOW), Err(PeerRefusal::Forged));
        let skew = MAX_CLOCK_SKEW.as_millis() as u64;
        let old = signer.credential_at(NOW - skew - 1);
        assert_eq!(verifier.verify_at(Some(old.as_bytes()), NOW), Err(PeerRefusal::Stale));
        let ahead = signer.credential_at(NOW + skew + 1);
        assert_eq!(verifier.verify_at(Some(ahead.as_bytes()), NOW), Err(PeerRefusal::Stale));

        // Another node id with the same signature is a forgery.
        let fields: Vec<&str> = fresh.split('.').collect();
        let renamed = format!(
            "v1.{}.{}.{}.{}",
            URL_SAFE_NO_PAD.encode("node2"),
            fields[2],
            fields[3],
            fields[4]
        );
        assert_eq!(verifier.verify_at(Some(renamed.as_bytes()), NOW), Err(PeerRefusal::Forged));
        for bad in ["", "v1", "v2.a.1.b.c", "v1.a.x.b.c", "Bearer mt_x"] {
            let result = verifier.verify_at(Some(bad.as_bytes()), NOW);
            assert!(matches!(result, Err(PeerRefusal::Malformed | PeerRefusal::Forged)), "{bad}");
        }
        assert_eq!(verifier.verify_at(None, NOW), Err(PeerRefusal::Missing));
        let long = "v".repeat(MAX_CREDENTIAL_BYTES + 1);
        assert_eq!(verifier.verify_at(Some(long.as_bytes()), NOW), Err(PeerRefusal::Malformed));
    }

    #[test]
    fn nonces_are_forgotten_once_their_credential_is_stale() {
        let signer = PeerSigner::new(&keys("minitrue"), "a");
        let verifier = PeerVerifier::new(&keys("minitrue"));
        for step in 0..100 {
            let at = NOW + step * 1000;
            verifier.verify_at(Some(signer.credential_at(at).as_bytes()), at).unwrap();
        }
        let remembered = verifier.nonces.lock().until.len();
        let skew_s = MAX_CLOCK_SKEW.as_secs() as usize;
        assert!(remembered <= skew_s + 2, "{remembered} nonces remembered");
    }
}
