//! Who may use the Flight door.
//!
//! A tonic interceptor reads every call's `authorization` header before the service sees it:
//! - `Bearer <token>`: a token made by `minitrue token create`, or the session token a
//!   handshake answered;
//! - `Basic <user:password>`: checked against the node's users; the Flight handshake then
//!   answers a session token in its `authorization` response header (the Flight SQL
//!   convention ADBC's `username`/`password` options and `pyarrow.flight`'s
//!   `authenticate_basic_token` follow), which the client sends as a bearer from then on.
//!
//! Wrong credentials end the call at once with `UNAUTHENTICATED`. Right ones put the
//! [`Principal`] into the call's extensions; the service then requires one for every client
//! call ([`principal_of`]) and checks its role (SQL through the statement check, bulk writes
//! need a writer). Calls between the nodes of a cluster (replica writes and deletes, repair,
//! plan fragments) carry no user credentials and are not checked here.
//!
//! On a node without users every call gets the open principal.

use std::net::SocketAddr;
use std::sync::Arc;

use minitrue_auth::{parse_authorization, Credential, Door, Gatekeeper, Principal, Role};
use tonic::{Request, Status};

/// Marks a call authenticated with a password, so a handshake answers a session token.
#[derive(Debug, Clone, Copy)]
pub(crate) struct PasswordLogin;

/// The interceptor: authenticates the call's credentials, if any (see the module docs).
pub(crate) fn interceptor(
    gate: Arc<Gatekeeper>,
) -> impl FnMut(Request<()>) -> Result<Request<()>, Status> + Clone {
    move |mut request: Request<()>| {
        authenticate(&gate, &mut request)?;
        Ok(request)
    }
}

fn authenticate(gate: &Gatekeeper, request: &mut Request<()>) -> Result<(), Status> {
    if !gate.required() {
        request.extensions_mut().insert(Gatekeeper::open_access("anonymous"));
        return Ok(());
    }
    let Some(value) = request.metadata().get("authorization") else {
        return Ok(());
    };
    let credential = parse_authorization(value.as_bytes())
        .map_err(|error| Status::unauthenticated(error.to_string()))?;
    let peer = request.remote_addr();
    let failed = |_| Status::unauthenticated("authentication failed");
    let principal = match credential {
        Credential::Token(token) => gate.token(Door::Flight, peer, &token).map_err(failed)?,
        Credential::Password { user, password } => {
            let principal = gate.password(Door::Flight, peer, &user, &password).map_err(failed)?;
            request.extensions_mut().insert(PasswordLogin);
            principal
        }
    };
    request.extensions_mut().insert(principal);
    Ok(())
}

/// Who makes a client call, and from where; `UNAUTHENTICATED` when the call carried no
/// credentials on a node that has users.
pub(crate) fn principal_of<T>(request: &Request<T>) -> Result<Who, Status> {
    let principal = request.extensions().get::<Principal>().cloned().ok_or_else(|| {
        Status::unauthenticated(
            "authentication required: a bearer token, or a user and password (Basic)",
        )
    })?;
    Ok(Who { principal, peer: request.remote_addr() })
}

/// An authenticated caller.
#[derive(Debug, Clone)]
pub(crate) struct Who {
    pub(crate) principal: Principal,
    pub(crate) peer: Option<SocketAddr>,
}

impl Who {
    /// `PERMISSION_DENIED` (counted and audited) unless the caller's role is at least `role`.
    pub(crate) fn require(
        &self,
        gate: &Gatekeeper,
        role: Role,
        action: &str,
    ) -> Result<(), Status> {
        if self.principal.role >= role {
            return Ok(());
        }
        gate.denied(Door::Flight, self.peer, &self.principal, action);
        Err(Status::permission_denied(format!(
            "permission denied: {action} needs the {role} role, and {} has the {} role",
            self.principal.name, self.principal.role
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::engine::general_purpose::STANDARD as BASE64;
    use base64::Engine as _;
    use minitrue_auth::{Credentials, CredentialsEditor};

    fn call(gate: &Arc<Gatekeeper>, authorization: Option<&str>) -> Result<Request<()>, Status> {
        let mut request = Request::new(());
        if let Some(value) = authorization {
            request.metadata_mut().insert("authorization", value.parse().unwrap());
        }
        interceptor(gate.clone())(request)
    }

    #[test]
    fn calls_carry_who_made_them() {
        let dir = tempfile::tempdir().unwrap();
        let open = Gatekeeper::new(Credentials::open(dir.path()).unwrap());
        let request = call(&open, None).unwrap();
        assert_eq!(principal_of(&request).unwrap().principal.role, Role::Admin, "open node");

        let editor = CredentialsEditor::open(dir.path()).unwrap();
        editor.set_user("ada", Role::Reader, "analytical").unwrap();
        let token = editor.create_token("etl", Role::Writer).unwrap();
        let gate = Gatekeeper::new(Credentials::open(dir.path()).unwrap());

        let anonymous = call(&gate, None).unwrap();
        assert_eq!(principal_of(&anonymous).unwrap_err().code(), tonic::Code::Unauthenticated);
        let basic = format!("Basic {}", BASE64.encode("ada:analytical"));
        let request = call(&gate, Some(&basic)).unwrap();
        assert!(request.extensions().get::<PasswordLogin>().is_some());
        let who = principal_of(&request).unwrap();
        assert_eq!((who.principal.name.as_str(), who.principal.role), ("ada", Role::Reader));
        assert_eq!(
            who.require(&gate, Role::Writer, "DoPut").unwrap_err().code(),
            tonic::Code::PermissionDenied
        );
        let request = call(&gate, Some(&format!("Bearer {token}"))).unwrap();
        assert_eq!(principal_of(&request).unwrap().principal.role, Role::Writer);
        let session = gate.open_session(&who.principal).unwrap();
        let request = call(&gate, Some(&format!("Bearer {session}"))).unwrap();
        assert_eq!(principal_of(&request).unwrap().principal.name, "ada");

        for bad in [
            format!("Basic {}", BASE64.encode("ada:wrong")),
            "Bearer mt_nope".to_string(),
            "Basic ###".to_string(),
            "Negotiate x".to_string(),
        ] {
            assert_eq!(call(&gate, Some(&bad)).unwrap_err().code(), tonic::Code::Unauthenticated);
        }
    }
}
