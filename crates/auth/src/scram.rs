//! SCRAM-SHA-256 (RFC 5802 with RFC 7677's hash), the server side, as PostgreSQL speaks it.
//!
//! A password is kept only as its verifier: the salt, the iteration count, `StoredKey =
//! H(HMAC(SaltedPassword, "Client Key"))` and `ServerKey = HMAC(SaltedPassword, "Server
//! Key")`. The verifier proves a client's knowledge of the password without letting whoever
//! reads it log in (it would need `ClientKey`, which only the password gives), and lets the
//! server prove itself to the client (`ServerSignature`).
//!
//! The exchange, with what [`ScramExchange`] checks at each step:
//! 1. client-first `n,,n=<ignored>,r=<client nonce>`: a GS2 header without channel binding
//!    (`n`, or `y` since the server offers none) and no authorization identity; PostgreSQL
//!    takes the user name from the startup message, not from here;
//! 2. server-first `r=<client nonce><server nonce>,s=<salt>,i=<iterations>`;
//! 3. client-final `c=<GS2 header>,r=<both nonces>,p=<ClientProof>`: the header and nonces
//!    must repeat exactly, and `H(ClientProof XOR HMAC(StoredKey, AuthMessage))` must be
//!    `StoredKey`;
//! 4. server-final `v=<ServerSignature>`.
//!
//! For a user that does not exist the exchange runs on a mock verifier derived from the user
//! name ([`ScramVerifier::mock`]): the same salt every time, and a failure only at step 3, as
//! for a wrong password, so the exchange does not tell which users exist.

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use ring::rand::SecureRandom;
use ring::{digest, hmac, pbkdf2};
use subtle::ConstantTimeEq;

use crate::error::AuthError;

/// The mechanism name announced to clients.
pub const MECHANISM: &str = "SCRAM-SHA-256";
/// Iterations of PBKDF2 for new verifiers: PostgreSQL's default, the RFC's minimum.
pub const DEFAULT_ITERATIONS: u32 = 4096;
/// Verifiers with fewer iterations are refused (a hand-edited file must not weaken them).
const MIN_ITERATIONS: u32 = 4096;
/// Iterations beyond this would let a crafted credentials file stall every login.
const MAX_ITERATIONS: u32 = 1_000_000;
const SALT_BYTES: usize = 16;
const SERVER_NONCE_BYTES: usize = 18;
/// The longest client message accepted; real ones are about 100 bytes.
pub const MAX_MESSAGE_BYTES: usize = 2048;
const KEY_BYTES: usize = 32;

/// A password as the server keeps it. `Debug` shows no key material.
#[derive(Clone, PartialEq, Eq)]
pub struct ScramVerifier {
    iterations: u32,
    salt: Vec<u8>,
    stored_key: [u8; KEY_BYTES],
    server_key: [u8; KEY_BYTES],
}

impl std::fmt::Debug for ScramVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ScramVerifier")
            .field("iterations", &self.iterations)
            .finish_non_exhaustive()
    }
}

impl ScramVerifier {
    /// A verifier of `password` with a fresh random salt.
    pub fn new(password: &str) -> Result<Self, AuthError> {
        let mut salt = vec![0u8; SALT_BYTES];
        fill_random(&mut salt)?;
        Ok(Self::with_salt(password, salt, DEFAULT_ITERATIONS))
    }

    /// The verifier of `password` for a given salt and iteration count.
    pub fn with_salt(password: &str, salt: Vec<u8>, iterations: u32) -> Self {
        let salted = salted_password(password, &salt, iterations);
        let client_key = hmac_sha256(&salted, b"Client Key");
        ScramVerifier {
            iterations,
            salt,
            stored_key: sha256(&client_key),
            server_key: hmac_sha256(&salted, b"Server Key"),
        }
    }

    /// A verifier that no password matches, the same for the same `user` and `secret`: what
    /// the exchange runs on for a user that does not exist.
    pub fn mock(user: &str, secret: &[u8]) -> Self {
        let salt = hmac_sha256(secret, format!("salt\0{user}").as_bytes())[..SALT_BYTES].to_vec();
        ScramVerifier {
            iterations: DEFAULT_ITERATIONS,
            salt,
            stored_key: hmac_sha256(secret, format!("stored\0{user}").as_bytes()),
            server_key: hmac_sha256(secret, format!("server\0{user}").as_bytes()),
        }
    }

    /// Whether `password` is the one this verifier was made from (for doors that receive the
    /// password itself: HTTP Basic, MQTT CONNECT). Costs one PBKDF2 derivation.
    pub fn matches_password(&self, password: &str) -> bool {
        let salted = salted_password(password, &self.salt, self.iterations);
        let stored_key = sha256(&hmac_sha256(&salted, b"Client Key"));
        bool::from(stored_key.ct_eq(&self.stored_key))
    }

    /// PostgreSQL's text form (as in `pg_authid.rolpassword`):
    /// `SCRAM-SHA-256$<iterations>:<salt>$<StoredKey>:<ServerKey>`, base64.
    pub fn encode(&self) -> String {
        format!(
            "{MECHANISM}${}:{}${}:{}",
            self.iterations,
            BASE64.encode(&self.salt),
            BASE64.encode(self.stored_key),
            BASE64.encode(self.server_key)
        )
    }

    /// Reads [`ScramVerifier::encode`]'s form.
    pub fn decode(text: &str) -> Result<Self, AuthError> {
        let bad = |why: &str| AuthError::Invalid(format!("not a SCRAM-SHA-256 verifier: {why}"));
        let rest = text.strip_prefix(MECHANISM).and_then(|r| r.strip_prefix('$'));
        let (params, keys) = rest.and_then(|r| r.split_once('$')).ok_or_else(|| bad("format"))?;
        let (iterations, salt) = params.split_once(':').ok_or_else(|| bad("format"))?;
        let (stored, server) = keys.split_once(':').ok_or_else(|| bad("format"))?;
        let iterations: u32 = iterations.parse().map_err(|_| bad("iterations"))?;
        if !(MIN_ITERATIONS..=MAX_ITERATIONS).contains(&iterations) {
            return Err(bad("iterations out of range"));
        }
        let salt = BASE64.decode(salt).map_err(|_| bad("salt"))?;
        if salt.is_empty() {
            return Err(bad("empty salt"));
        }
        let key = |text: &str| -> Result<[u8; KEY_BYTES], AuthError> {
            BASE64
                .decode(text)
                .ok()
                .and_then(|bytes| bytes.try_into().ok())
                .ok_or_else(|| bad("key"))
        };
        Ok(ScramVerifier { iterations, salt, stored_key: key(stored)?, server_key: key(server)? })
    }
}

/// One server-side exchange after the client-first message, waiting for the client-final.
#[derive(Debug)]
pub struct ScramExchange {
    verifier: ScramVerifier,
    /// False when `verifier` is a mock: the exchange then fails at the client-final.
    known_user: bool,
    gs2_header: String,
    client_first_bare: String,
    server_first: String,
    nonce: String,
}

impl ScramExchange {
    /// Reads the client-first message and answers with the server-first message.
    /// `known_user` is false when `verifier` is [`ScramVerifier::mock`].
    pub fn start(
        client_first: &[u8],
        verifier: ScramVerifier,
        known_user: bool,
    ) -> Result<(ScramExchange, String), AuthError> {
        let mut server_nonce = [0u8; SERVER_NONCE_BYTES];
        fill_random(&mut server_nonce)?;
        Self::start_with_nonce(client_first, verifier, known_user, &BASE64.encode(server_nonce))
    }

    fn start_with_nonce(
        client_first: &[u8],
        verifier: ScramVerifier,
        known_user: bool,
        server_nonce: &str,
    ) -> Result<(ScramExchange, String), AuthError> {
        let text = message_text(client_first)?;
        let (flag, rest) = text.split_once(',').ok_or_else(|| malformed("no GS2 header"))?;
        match flag {
            "n" | "y" => {}
            flag if flag.starts_with("p=") => {
                return Err(malformed("channel binding was not offered (use SCRAM-SHA-256)"));
            }
            _ => return Err(malformed("bad GS2 channel binding flag")),
        }
        let (authzid, bare) = rest.split_once(',').ok_or_else(|| malformed("no GS2 header"))?;
        if !authzid.is_empty() {
            return Err(malformed("an authorization identity is not supported"));
        }
        let gs2_header = format!("{flag},,");
        let mut attributes = bare.split(',');
        // The user name is the startup message's; `m=` (mandatory extensions) is unsupported.
        if !attributes.next().is_some_and(|user| user.starts_with("n=")) {
            return Err(malformed("client-first does not start with n="));
        }
        let client_nonce = attributes
            .next()
            .and_then(|nonce| nonce.strip_prefix("r="))
            .ok_or_else(|| malformed("client-first has no nonce"))?;
        if client_nonce.is_empty() || !client_nonce.bytes().all(|b| (0x21..=0x7e).contains(&b)) {
            return Err(malformed("bad client nonce"));
        }
        let nonce = format!("{client_nonce}{server_nonce}");
        let server_first =
            format!("r={nonce},s={},i={}", BASE64.encode(&verifier.salt), verifier.iterations);
        let exchange = ScramExchange {
            verifier,
            known_user,
            gs2_header,
            client_first_bare: bare.to_string(),
            server_first: server_first.clone(),
            nonce,
        };
        Ok((exchange, server_first))
    }

    /// Reads the client-final message: the server-final message when the proof is right,
    /// [`AuthError::Failed`] when it is not (or the user does not exist), `Malformed` when the
    /// message is not a client-final of this exchange.
    pub fn finish(&self, client_final: &[u8]) -> Result<String, AuthError> {
        let text = message_text(client_final)?;
        let (without_proof, proof) =
            text.rsplit_once(",p=").ok_or_else(|| malformed("client-final has no proof"))?;
        let mut attributes = without_proof.split(',');
        let binding = attributes
            .next()
            .and_then(|c| c.strip_prefix("c="))
            .ok_or_else(|| malformed("client-final has no channel binding"))?;
        if BASE64.decode(binding).ok().as_deref() != Some(self.gs2_header.as_bytes()) {
            return Err(malformed("channel binding does not match the GS2 header"));
        }
        let nonce = attributes
            .next()
            .and_then(|r| r.strip_prefix("r="))
            .ok_or_else(|| malformed("client-final has no nonce"))?;
        if nonce != self.nonce {
            return Err(malformed("nonce does not match"));
        }
        let proof: [u8; KEY_BYTES] = BASE64
            .decode(proof)
            .ok()
            .and_then(|bytes| bytes.try_into().ok())
            .ok_or_else(|| malformed("bad proof"))?;
        let auth_message =
            format!("{},{},{}", self.client_first_bare, self.server_first, without_proof);
        let client_signature = hmac_sha256(&self.verifier.stored_key, auth_message.as_bytes());
        let mut client_key = [0u8; KEY_BYTES];
        for (key, (proof, signature)) in
            client_key.iter_mut().zip(proof.iter().zip(client_signature))
        {
            *key = proof ^ signature;
        }
        let proven = bool::from(sha256(&client_key).ct_eq(&self.verifier.stored_key));
        if !(proven && self.known_user) {
            return Err(AuthError::Failed);
        }
        let server_signature = hmac_sha256(&self.verifier.server_key, auth_message.as_bytes());
        Ok(format!("v={}", BASE64.encode(server_signature)))
    }
}

fn message_text(bytes: &[u8]) -> Result<&str, AuthError> {
    if bytes.len() > MAX_MESSAGE_BYTES {
        return Err(malformed("message too long"));
    }
    std::str::from_utf8(bytes).map_err(|_| malformed("not UTF-8"))
}

fn malformed(why: &str) -> AuthError {
    AuthError::Malformed(format!("SCRAM: {why}"))
}

/// `Hi(Normalize(password), salt, i)`. A password SASLprep refuses is used as it is, as
/// PostgreSQL does.
fn salted_password(password: &str, salt: &[u8], iterations: u32) -> [u8; KEY_BYTES] {
    let normalized = stringprep::saslprep(password)
        .map(|p| p.into_owned())
        .unwrap_or_else(|_| password.to_string());
    let mut out = [0u8; KEY_BYTES];
    let iterations =
        std::num::NonZeroU32::new(iterations.max(1)).unwrap_or(std::num::NonZeroU32::MIN);
    pbkdf2::derive(pbkdf2::PBKDF2_HMAC_SHA256, iterations, salt, normalized.as_bytes(), &mut out);
    out
}

pub(crate) fn hmac_sha256(key: &[u8], data: &[u8]) -> [u8; KEY_BYTES] {
    let tag = hmac::sign(&hmac::Key::new(hmac::HMAC_SHA256, key), data);
    let mut out = [0u8; KEY_BYTES];
    out.copy_from_slice(tag.as_ref());
    out
}

pub(crate) fn sha256(data: &[u8]) -> [u8; KEY_BYTES] {
    let hash = digest::digest(&digest::SHA256, data);
    let mut out = [0u8; KEY_BYTES];
    out.copy_from_slice(hash.as_ref());
    out
}

pub(crate) fn fill_random(out: &mut [u8]) -> Result<(), AuthError> {
    ring::rand::SystemRandom::new()
        .fill(out)
        .map_err(|_| AuthError::Invalid("the system's random number generator failed".to_string()))
}

/// A SCRAM client, for tests of the server side (and the fuzz target's seeds).
#[doc(hidden)]
pub mod client {
    use super::*;

    /// The client-final message for `server_first`, given the client's messages so far.
    pub fn client_final(
        password: &str,
        client_first_bare: &str,
        server_first: &str,
        gs2_header: &str,
    ) -> String {
        let field = |name: &str| {
            server_first
                .split(',')
                .find_map(|a| a.strip_prefix(name))
                .unwrap_or_default()
                .to_string()
        };
        let (nonce, salt, iterations) = (field("r="), field("s="), field("i="));
        let salt = BASE64.decode(salt).unwrap_or_default();
        let salted = salted_password(password, &salt, iterations.parse().unwrap_or(4096));
        let client_key = hmac_sha256(&salted, b"Client Key");
        let stored_key = sha256(&client_key);
        let without_proof = format!("c={},r={nonce}", BASE64.encode(gs2_header));
        let auth_message = format!("{client_first_bare},{server_first},{without_proof}");
        let signature = hmac_sha256(&stored_key, auth_message.as_bytes());
        let proof: Vec<u8> = client_key.iter().zip(signature).map(|(k, s)| k ^ s).collect();
        format!("{without_proof},p={}", BASE64.encode(proof))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// The exchange of RFC 7677 section 3, byte for byte.
    #[test]
    fn rfc_7677_example() {
        let salt = BASE64.decode("W22ZaJ0SNY7soEsUEjb6gQ==").unwrap();
        let verifier = ScramVerifier::with_salt("pencil", salt, 4096);
        let (exchange, server_first) = ScramExchange::start_with_nonce(
            b"n,,n=user,r=rOprNGfwEbeRWgbNEkqO",
            verifier,
            true,
            "%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0",
        )
        .unwrap();
        assert_eq!(
            server_first,
            "r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096"
        );
        let server_final = exchange
            .finish(b"c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=")
            .unwrap();
        assert_eq!(server_final, "v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=");
    }

    fn run(verifier: ScramVerifier, known: bool, password: &str) -> Result<String, AuthError> {
        let bare = "n=,r=fyko+d2lbbFgONRv9qkxdawL";
        let (exchange, server_first) =
            ScramExchange::start(format!("n,,{bare}").as_bytes(), verifier, known)?;
        exchange.finish(client::client_final(password, bare, &server_first, "n,,").as_bytes())
    }

    #[test]
    fn wrong_passwords_and_unknown_users_fail_alike() {
        let verifier = ScramVerifier::new("correct horse").unwrap();
        assert!(run(verifier.clone(), true, "correct horse").is_ok());
        assert!(matches!(run(verifier, true, "wrong"), Err(AuthError::Failed)));
        let mock = ScramVerifier::mock("nobody", b"secret");
        assert_eq!(mock, ScramVerifier::mock("nobody", b"secret"), "the same salt every time");
        assert_ne!(mock.salt, ScramVerifier::mock("somebody", b"secret").salt);
        assert!(matches!(run(mock, false, ""), Err(AuthError::Failed)));
    }

    #[test]
    fn malformed_messages_are_refused() {
        let verifier = ScramVerifier::new("pw").unwrap();
        for first in [
            &b"p=tls-server-end-point,,n=,r=abc"[..],
            b"n,a=admin,n=,r=abc",
            b"n,,r=abc",
            b"n,,n=,r=",
            b"n,,n=,r=a b",
            b"x,,n=,r=abc",
            b"\xff\xfe",
            b"",
        ] {
            let result = ScramExchange::start(first, verifier.clone(), true);
            assert!(matches!(result, Err(AuthError::Malformed(_))), "{first:?}");
        }
        let bare = "n=,r=abc";
        let (exchange, server_first) =
            ScramExchange::start(format!("n,,{bare}").as_bytes(), verifier, true).unwrap();
        let good = client::client_final("pw", bare, &server_first, "n,,");
        for bad in [
            good.replace("c=biws", "c=eSws"),
            good.replace(",r=abc", ",r=abd"),
            good.split(",p=").next().unwrap().to_string(),
            format!("{good}AAAA"),
        ] {
            assert!(
                matches!(exchange.finish(bad.as_bytes()), Err(AuthError::Malformed(_))),
                "{bad}"
            );
        }
        assert!(exchange.finish(good.as_bytes()).is_ok());
    }

    #[test]
    fn verifiers_round_trip_and_check_passwords() {
        let verifier = ScramVerifier::new("s3cret ünïcode").unwrap();
        let text = verifier.encode();
        assert!(text.starts_with("SCRAM-SHA-256$4096:"), "{text}");
        assert_eq!(ScramVerifier::decode(&text).unwrap(), verifier);
        assert!(verifier.matches_password("s3cret ünïcode"));
        assert!(!verifier.matches_password("s3cret unicode"));
        assert!(!format!("{verifier:?}").contains(&BASE64.encode(verifier.stored_key)));
        for bad in
            ["", "SCRAM-SHA-256$1:AAAA$AAAA:AAAA", "MD5$4096:AA$AA:AA", &text[..text.len() - 4]]
        {
            assert!(ScramVerifier::decode(bad).is_err(), "{bad}");
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(16))]

        #[test]
        fn any_password_logs_in_and_no_other_does(password in "\\PC{0,24}", other in "\\PC{0,24}") {
            let verifier = ScramVerifier::with_salt(&password, b"0123456789abcdef".to_vec(), 4096);
            prop_assert!(run(verifier.clone(), true, &password).is_ok());
            let normalized = |p: &str| stringprep::saslprep(p).map(|p| p.into_owned()).unwrap_or_else(|_| p.to_string());
            if normalized(&other) != normalized(&password) {
                prop_assert!(run(verifier, true, &other).is_err());
            }
        }

        #[test]
        fn arbitrary_client_messages_never_panic(first in proptest::collection::vec(any::<u8>(), 0..200), last in proptest::collection::vec(any::<u8>(), 0..200)) {
            let verifier = ScramVerifier::mock("u", b"k");
            if let Ok((exchange, _)) = ScramExchange::start(&first, verifier, true) {
                let _ = exchange.finish(&last);
            }
        }
    }
}
