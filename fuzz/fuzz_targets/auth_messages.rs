//! Fuzz what clients send to authenticate: `Authorization` headers (Bearer, Token, Basic),
//! cookies, and both client messages of a SCRAM-SHA-256 exchange. Every door reads these
//! before it knows who is calling, so they must never panic, and a SCRAM exchange must never
//! succeed without the password.
//!
//! Input: `client-first \n client-final` for SCRAM (split at the first newline); the whole
//! input as a header and a cookie.
//!
//! Run: `scripts/fuzz.sh 60 auth_messages`.
#![no_main]

use libfuzzer_sys::fuzz_target;
use minitrue_auth::{cookie_value, parse_authorization, ScramExchange, ScramVerifier};

fuzz_target!(|data: &[u8]| {
    let _ = parse_authorization(data);
    let _ = cookie_value(data, "minitrue_session");

    let (first, last) = match data.iter().position(|&b| b == b'\n') {
        Some(at) => (&data[..at], &data[at + 1..]),
        None => (data, &b""[..]),
    };
    // A fixed salt keeps the iterations cheap enough for the fuzzer (4096 rounds of PBKDF2
    // happen once, here).
    thread_local! {
        static VERIFIER: ScramVerifier =
            ScramVerifier::with_salt("the password", b"0123456789abcdef".to_vec(), 4096);
    }
    let verifier = VERIFIER.with(|v| v.clone());
    if let Ok((exchange, server_first)) = ScramExchange::start(first, verifier, true) {
        assert!(server_first.starts_with("r="));
        // The server nonce is random: no input can carry a valid proof for it.
        assert!(exchange.finish(last).is_err());
    }
    let mock = ScramVerifier::mock("user", b"secret");
    if let Ok((exchange, _)) = ScramExchange::start(first, mock, false) {
        assert!(exchange.finish(last).is_err());
    }
});
