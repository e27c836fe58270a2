//! Bearer tokens: 32 random bytes, shown once when created and kept only as their SHA-256.
//! A token has 256 bits of entropy, so its plain hash is as safe to store as a salted one and
//! lets a request's token be found with one lookup.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;

use crate::error::AuthError;
use crate::scram::{fill_random, sha256};

/// Every token starts with this, so a leaked one is easy to recognise (secret scanners) and a
/// token is never mistaken for a password.
pub const TOKEN_PREFIX: &str = "mt_";
const TOKEN_BYTES: usize = 32;
/// Longer presented tokens are refused before hashing.
pub const MAX_TOKEN_CHARS: usize = 256;

/// A new random token, as the client will present it.
pub fn generate_token() -> Result<String, AuthError> {
    let mut bytes = [0u8; TOKEN_BYTES];
    fill_random(&mut bytes)?;
    Ok(format!("{TOKEN_PREFIX}{}", URL_SAFE_NO_PAD.encode(bytes)))
}

/// A fresh random secret (32 bytes, URL-safe base64): internal credentials between the
/// parts of one node.
pub fn random_secret() -> Result<String, AuthError> {
    let mut bytes = [0u8; TOKEN_BYTES];
    fill_random(&mut bytes)?;
    Ok(URL_SAFE_NO_PAD.encode(bytes))
}

/// Compares two secrets in time that does not depend on where they differ.
pub fn same_secret(a: &str, b: &str) -> bool {
    use subtle::ConstantTimeEq;
    a.len() == b.len() && bool::from(a.as_bytes().ct_eq(b.as_bytes()))
}

/// What is stored of a token: the hex SHA-256 of its text.
pub fn token_hash(token: &str) -> String {
    hex(&sha256(token.as_bytes()))
}

pub(crate) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_random_prefixed_and_hashed() {
        let (a, b) = (generate_token().unwrap(), generate_token().unwrap());
        assert_ne!(a, b);
        assert!(a.starts_with(TOKEN_PREFIX) && a.len() == TOKEN_PREFIX.len() + 43, "{a}");
        assert_eq!(token_hash(&a), token_hash(&a));
        assert_eq!(token_hash(&a).len(), 64);
        assert_ne!(token_hash(&a), token_hash(&b));
    }
}
