//! The cluster secret: what a node must hold to take part in its cluster.
//!
//! Every node of a cluster is given the same secret (`--cluster-secret-file` or
//! `MINITRUE_CLUSTER_SECRET`; `minitrue cluster secret` prints a fresh one). Nothing on the
//! wire carries it: each node derives, with HKDF-SHA256, one key that seals gossip packets
//! ([`super::gossip_seal`]) and one that signs calls between nodes
//! ([`super::peer_credential`]). The cluster id enters the derivation, so two clusters
//! sharing a secret by mistake still cannot talk; the id stays a namespace, not a credential.

use std::path::Path;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use ring::hkdf;

use crate::error::AuthError;
use crate::scram::fill_random;

/// What `minitrue cluster secret` prints starts with this (secret scanners recognise it).
pub const SECRET_PREFIX: &str = "mtcs_";
/// Shorter secrets are refused: a secret has to be as hard to guess as a 192-bit key.
pub const MIN_SECRET_CHARS: usize = 32;
/// Longer secrets are refused (a file that is not a secret, most likely).
pub const MAX_SECRET_CHARS: usize = 1024;

/// Salt of the derivation: changing it makes every key of every cluster new.
const DERIVATION_SALT: &[u8] = b"minitrue cluster secret v1";

/// A loaded cluster secret. It never prints itself (`Debug` shows `ClusterSecret(..)`).
#[derive(Clone)]
pub struct ClusterSecret {
    key: hkdf::Prk,
}

impl std::fmt::Debug for ClusterSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ClusterSecret(..)")
    }
}

/// The keys a node derives from the secret for one cluster id.
#[derive(Clone)]
pub struct ClusterKeys {
    /// Seals gossip packets.
    pub gossip: [u8; 32],
    /// Signs the calls nodes make to each other.
    pub peer: [u8; 32],
}

impl std::fmt::Debug for ClusterKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ClusterKeys(..)")
    }
}

impl ClusterSecret {
    /// A fresh random secret, as `minitrue cluster secret` prints it.
    pub fn generate() -> Result<String, AuthError> {
        let mut bytes = [0u8; 32];
        fill_random(&mut bytes)?;
        Ok(format!("{SECRET_PREFIX}{}", URL_SAFE_NO_PAD.encode(bytes)))
    }

    /// A secret known to this process only: a node alone on loopback seals its gossip with
    /// one, so that nothing else can join it.
    pub fn ephemeral() -> Result<ClusterSecret, AuthError> {
        ClusterSecret::from_text(&ClusterSecret::generate()?)
    }

    /// The secret in `text` (surrounding white space, a line end say, is ignored).
    pub fn from_text(text: &str) -> Result<ClusterSecret, AuthError> {
        let text = text.trim();
        let chars = text.chars().count();
        if chars < MIN_SECRET_CHARS {
            return Err(AuthError::Invalid(format!(
                "the cluster secret has {chars} characters; it needs at least \
                 {MIN_SECRET_CHARS} (`minitrue cluster secret` prints a good one)"
            )));
        }
        if chars > MAX_SECRET_CHARS {
            return Err(AuthError::Invalid(format!(
                "the cluster secret has {chars} characters, more than {MAX_SECRET_CHARS}"
            )));
        }
        let salt = hkdf::Salt::new(hkdf::HKDF_SHA256, DERIVATION_SALT);
        Ok(ClusterSecret { key: salt.extract(text.as_bytes()) })
    }

    /// The secret in the file at `path`, which must not be readable by every user of the
    /// machine nor writable by anyone but its owner.
    pub fn read_file(path: &Path) -> Result<ClusterSecret, AuthError> {
        let io = |source| AuthError::Io { path: path.display().to_string(), source };
        let metadata = std::fs::metadata(path).map_err(io)?;
        check_permissions(path, &metadata)?;
        if metadata.len() > (MAX_SECRET_CHARS * 4 + 2) as u64 {
            return Err(AuthError::Invalid(format!(
                "{} is too large to be a cluster secret",
                path.display()
            )));
        }
        let text = std::fs::read_to_string(path).map_err(io)?;
        ClusterSecret::from_text(&text)
            .map_err(|error| AuthError::Invalid(format!("{}: {error}", path.display())))
    }

    /// The keys for the cluster named `cluster_id`.
    pub fn keys(&self, cluster_id: &str) -> ClusterKeys {
        ClusterKeys {
            gossip: self.derive(b"gossip", cluster_id),
            peer: self.derive(b"peer calls", cluster_id),
        }
    }

    fn derive(&self, purpose: &[u8], cluster_id: &str) -> [u8; 32] {
        let mut out = [0u8; 32];
        let info = [purpose, b"\0", cluster_id.as_bytes()];
        // 32 bytes is far below HKDF-SHA256's limit of 8160, so neither step can fail.
        if let Ok(okm) = self.key.expand(&info, Bytes32) {
            let _ = okm.fill(&mut out);
        }
        out
    }
}

/// Derives a further 32-byte key from `key` for `purpose` (a gossip session's key, say).
pub(crate) fn subkey(key: &[u8; 32], purpose: &[u8]) -> [u8; 32] {
    let mut out = [0u8; 32];
    let prk = hkdf::Prk::new_less_safe(hkdf::HKDF_SHA256, key);
    if let Ok(okm) = prk.expand(&[purpose], Bytes32) {
        let _ = okm.fill(&mut out);
    }
    out
}

struct Bytes32;

impl hkdf::KeyType for Bytes32 {
    fn len(&self) -> usize {
        32
    }
}

#[cfg(unix)]
fn check_permissions(path: &Path, metadata: &std::fs::Metadata) -> Result<(), AuthError> {
    use std::os::unix::fs::PermissionsExt;
    let mode = metadata.permissions().mode();
    if mode & 0o022 != 0 || mode & 0o004 != 0 {
        return Err(AuthError::Invalid(format!(
            "{} has permissions {:o}: a cluster secret must be neither readable by every user \
             nor writable by others (chmod 600 it)",
            path.display(),
            mode & 0o777
        )));
    }
    Ok(())
}

#[cfg(not(unix))]
fn check_permissions(_path: &Path, _metadata: &std::fs::Metadata) -> Result<(), AuthError> {
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_depend_on_the_secret_the_cluster_and_the_purpose() {
        let text = ClusterSecret::generate().unwrap();
        assert!(text.starts_with(SECRET_PREFIX) && text.len() == 48, "{text}");
        let secret = ClusterSecret::from_text(&format!("{text}\n")).unwrap();
        let again = ClusterSecret::from_text(&text).unwrap();
        let (keys, same) = (secret.keys("minitrue"), again.keys("minitrue"));
        assert_eq!((keys.gossip, keys.peer), (same.gossip, same.peer));
        assert_ne!(keys.gossip, keys.peer);
        assert_ne!(keys.gossip, secret.keys("west").gossip);
        let other = ClusterSecret::from_text(&ClusterSecret::generate().unwrap()).unwrap();
        assert_ne!(keys.gossip, other.keys("minitrue").gossip);
        assert_eq!(format!("{secret:?} {keys:?}"), "ClusterSecret(..) ClusterKeys(..)");
    }

    #[test]
    fn short_long_and_exposed_secrets_are_refused() {
        assert!(ClusterSecret::from_text("password").is_err());
        assert!(ClusterSecret::from_text(&"x".repeat(MAX_SECRET_CHARS + 1)).is_err());
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("secret");
        std::fs::write(&path, ClusterSecret::generate().unwrap()).unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
            let error = ClusterSecret::read_file(&path).unwrap_err().to_string();
            assert!(error.contains("chmod 600"), "{error}");
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        }
        ClusterSecret::read_file(&path).unwrap();
        assert!(ClusterSecret::read_file(&dir.path().join("missing")).is_err());
    }
}
