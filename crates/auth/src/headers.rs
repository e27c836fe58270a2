//! Credentials as HTTP and gRPC requests carry them: the `Authorization` header (`Bearer`,
//! InfluxDB's `Token`, `Basic`) and cookies. One parser for every door that reads headers.

use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use base64::Engine as _;

/// Base64 with or without padding: Go's Flight client (ADBC, Grafana's drivers) sends Basic
/// credentials unpadded.
const BASE64: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::STANDARD,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

use crate::error::AuthError;

/// Longest header value considered; longer ones are refused unread.
pub const MAX_HEADER_BYTES: usize = 4096;

/// What an `Authorization` header presents.
#[derive(Clone, PartialEq, Eq)]
pub enum Credential {
    /// `Bearer <token>` or `Token <token>`: a stored token or a session id.
    Token(String),
    /// `Basic base64(user:password)`.
    Password { user: String, password: String },
}

impl std::fmt::Debug for Credential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Credential::Token(_) => f.write_str("Token(..)"),
            Credential::Password { user, .. } => write!(f, "Password {{ user: {user:?}, .. }}"),
        }
    }
}

/// Reads an `Authorization` header value. The scheme is case-insensitive; the user name of
/// `Basic` ends at the first `:` (a password may contain more).
pub fn parse_authorization(value: &[u8]) -> Result<Credential, AuthError> {
    if value.len() > MAX_HEADER_BYTES {
        return Err(AuthError::Malformed("the authorization header is too long".into()));
    }
    let value = std::str::from_utf8(value)
        .map_err(|_| AuthError::Malformed("the authorization header is not UTF-8".into()))?
        .trim();
    let (scheme, credential) = value.split_once(' ').unwrap_or((value, ""));
    let credential = credential.trim();
    match scheme.to_ascii_lowercase().as_str() {
        "bearer" | "token" if !credential.is_empty() => {
            Ok(Credential::Token(credential.to_string()))
        }
        "basic" => {
            let decoded = BASE64
                .decode(credential)
                .ok()
                .and_then(|bytes| String::from_utf8(bytes).ok())
                .ok_or_else(|| AuthError::Malformed("malformed Basic credentials".into()))?;
            let (user, password) = decoded
                .split_once(':')
                .ok_or_else(|| AuthError::Malformed("malformed Basic credentials".into()))?;
            Ok(Credential::Password { user: user.to_string(), password: password.to_string() })
        }
        _ => Err(AuthError::Malformed(
            "use Authorization: Bearer <token>, Token <token> or Basic".into(),
        )),
    }
}

/// The value of cookie `name` in a `Cookie` header value (`a=1; b=2`).
pub fn cookie_value(header: &[u8], name: &str) -> Option<String> {
    if header.len() > MAX_HEADER_BYTES {
        return None;
    }
    std::str::from_utf8(header).ok()?.split(';').find_map(|pair| {
        let (key, value) = pair.trim().split_once('=')?;
        (key == name).then(|| value.to_string())
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn every_scheme_clients_send() {
        let token = |t: &str| Credential::Token(t.to_string());
        assert_eq!(parse_authorization(b"Bearer mt_abc").unwrap(), token("mt_abc"));
        assert_eq!(parse_authorization(b"bearer  mt_abc ").unwrap(), token("mt_abc"));
        assert_eq!(parse_authorization(b"Token mt_abc").unwrap(), token("mt_abc"));
        let basic = format!("Basic {}", BASE64.encode("ada:s3cr:t"));
        assert_eq!(
            parse_authorization(basic.as_bytes()).unwrap(),
            Credential::Password { user: "ada".into(), password: "s3cr:t".into() }
        );
        // Go's Flight client sends it unpadded.
        let unpadded = format!("Basic {}", BASE64.encode("ad:pw").trim_end_matches('='));
        assert_eq!(
            parse_authorization(unpadded.as_bytes()).unwrap(),
            Credential::Password { user: "ad".into(), password: "pw".into() }
        );
        for bad in [&b"Bearer"[..], b"Basic !!", b"Basic YWRh", b"Digest x", b"", b"\xff"] {
            assert!(parse_authorization(bad).is_err(), "{bad:?}");
        }
        assert!(parse_authorization(&vec![b'a'; MAX_HEADER_BYTES + 1]).is_err());
        assert!(!format!("{:?}", parse_authorization(basic.as_bytes()).unwrap()).contains("s3cr"));
    }

    #[test]
    fn cookies_are_found_by_name() {
        assert_eq!(
            cookie_value(b"a=1; minitrue_session=s1; c=3", "minitrue_session").as_deref(),
            Some("s1")
        );
        assert_eq!(cookie_value(b"minitrue_session_old=x", "minitrue_session"), None);
        assert_eq!(cookie_value(b"\xff", "a"), None);
    }

    proptest! {
        #[test]
        fn any_header_parses_or_fails_without_panicking(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
            let _ = parse_authorization(&bytes);
            let _ = cookie_value(&bytes, "minitrue_session");
        }
    }
}
