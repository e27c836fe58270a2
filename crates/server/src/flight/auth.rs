//! Who may use the Flight door: the one place a request's credentials are checked.
//!
//! Every Flight call passes [`AccessPolicy::check`] before it reaches the service (a tonic
//! interceptor), so turning tokens on is a configuration change, not a code change. A node
//! serves [`AccessPolicy::Open`] today; [`AccessPolicy::BearerTokens`] is what a token
//! configuration will build.

use std::collections::HashSet;
use std::sync::Arc;

use tonic::metadata::MetadataMap;
use tonic::{Request, Status};

/// Who may call.
#[derive(Debug, Clone, Default)]
pub enum AccessPolicy {
    /// Anyone (the node listens on loopback unless told otherwise).
    #[default]
    Open,
    /// Calls must carry `authorization: Bearer <token>` with one of these tokens (what
    /// `pyarrow.flight` sends with `FlightCallOptions(headers=…)` and ADBC with
    /// `adbc.flight.sql.authorization_header`).
    BearerTokens(Arc<HashSet<String>>),
}

impl AccessPolicy {
    /// `Ok` when the request's metadata satisfies the policy; `Unauthenticated` otherwise.
    pub fn check(&self, metadata: &MetadataMap) -> Result<(), Status> {
        match self {
            AccessPolicy::Open => Ok(()),
            AccessPolicy::BearerTokens(tokens) => {
                let header = metadata
                    .get("authorization")
                    .ok_or_else(|| Status::unauthenticated("no authorization header"))?;
                let token = header
                    .to_str()
                    .ok()
                    .and_then(|value| value.strip_prefix("Bearer "))
                    .ok_or_else(|| {
                        Status::unauthenticated("the authorization header is not a Bearer token")
                    })?;
                if tokens.contains(token.trim()) {
                    Ok(())
                } else {
                    Err(Status::unauthenticated("unknown token"))
                }
            }
        }
    }

    /// The interceptor form of [`AccessPolicy::check`].
    pub(crate) fn interceptor(
        self,
    ) -> impl FnMut(Request<()>) -> Result<Request<()>, Status> + Clone {
        move |request: Request<()>| {
            self.check(request.metadata())?;
            Ok(request)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn metadata(authorization: Option<&str>) -> MetadataMap {
        let mut map = MetadataMap::new();
        if let Some(value) = authorization {
            map.insert("authorization", value.parse().unwrap());
        }
        map
    }

    #[test]
    fn open_lets_everyone_in() {
        assert!(AccessPolicy::Open.check(&metadata(None)).is_ok());
        assert!(AccessPolicy::Open.check(&metadata(Some("Bearer whatever"))).is_ok());
    }

    #[test]
    fn bearer_tokens_need_a_known_token() {
        let policy = AccessPolicy::BearerTokens(Arc::new(["s3cret".to_string()].into()));
        assert!(policy.check(&metadata(Some("Bearer s3cret"))).is_ok());
        for bad in [None, Some("Bearer nope"), Some("Basic czNjcmV0"), Some("s3cret")] {
            let error = policy.check(&metadata(bad)).unwrap_err();
            assert_eq!(error.code(), tonic::Code::Unauthenticated, "{bad:?}");
        }
    }
}
