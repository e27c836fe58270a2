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
//! need a writer).
//!
//! Calls between the nodes of a cluster (replica writes and deletes, repair, hints, plan
//! fragments) carry a peer credential instead, in the `minitrue-peer` header, checked here
//! against the cluster secret ([`PeerCalls`]): a bad one ends the call with
//! `UNAUTHENTICATED`, a good one puts the [`PeerCaller`] into the call's extensions, and the
//! peer-only services require it ([`require_peer`]) whatever user credentials the call has.
//!
//! On a node without users every call gets the open principal.

use std::net::SocketAddr;
use std::sync::Arc;

use minitrue_auth::cluster::{PeerCaller, PeerVerifier, PEER_HEADER};
use minitrue_auth::{parse_authorization, Credential, Door, Gatekeeper, Principal, Role};
use tonic::{Request, Status};

/// Who may make the calls reserved for the nodes of the cluster.
#[derive(Clone)]
pub enum PeerCalls {
    /// Nodes holding the cluster secret: every call must carry a valid peer credential.
    Verified(Arc<PeerVerifier>),
    /// Anyone who reaches the door (`--insecure-cluster`).
    Open,
}

/// Marks a call authenticated with a password, so a handshake answers a session token.
#[derive(Debug, Clone, Copy)]
pub(crate) struct PasswordLogin;

/// The interceptor: authenticates the call's credentials, if any (see the module docs).
pub(crate) fn interceptor(
    gate: Arc<Gatekeeper>,
    peers: PeerCalls,
) -> impl FnMut(Request<()>) -> Result<Request<()>, Status> + Clone {
    move |mut request: Request<()>| {
        authenticate_peer(&peers, &mut request)?;
        authenticate(&gate, &mut request)?;
        Ok(request)
    }
}

fn authenticate_peer(peers: &PeerCalls, request: &mut Request<()>) -> Result<(), Status> {
    let PeerCalls::Verified(verifier) = peers else {
        return Ok(());
    };
    let Some(value) = request.metadata().get(PEER_HEADER) else {
        return Ok(());
    };
    match verifier.verify(Some(value.as_bytes())) {
        Ok(caller) => {
            request.extensions_mut().insert(caller);
            Ok(())
        }
        Err(refusal) => {
            tracing::warn!(peer = ?request.remote_addr(), %refusal, "peer call refused");
            Err(Status::unauthenticated(refusal.to_string()))
        }
    }
}

/// `UNAUTHENTICATED` unless the call comes from a node of the cluster (or the cluster is
/// open, `--insecure-cluster`). User credentials do not count, whatever their role.
pub(crate) fn require_peer<T>(peers: &PeerCalls, request: &Request<T>) -> Result<(), Status> {
    let PeerCalls::Verified(verifier) = peers else {
        return Ok(());
    };
    if request.extensions().get::<PeerCaller>().is_some() {
        return Ok(());
    }
    // Counted as a refusal for a missing credential.
    let _ = verifier.verify(None);
    tracing::warn!(peer = ?request.remote_addr(), "a call reserved for cluster nodes came without a peer credential");
    Err(Status::unauthenticated(
        "only nodes of the cluster may make this call: it needs a peer credential (the cluster secret)",
    ))
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
        interceptor(gate.clone(), PeerCalls::Open)(request)
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

    #[test]
    fn peer_only_calls_need_a_peer_credential_not_a_user() {
        use minitrue_auth::cluster::{ClusterSecret, PeerSigner};
        let dir = tempfile::tempdir().unwrap();
        let editor = CredentialsEditor::open(dir.path()).unwrap();
        let token = editor.create_token("admin", Role::Admin).unwrap();
        let gate = Gatekeeper::new(Credentials::open(dir.path()).unwrap());
        let keys = ClusterSecret::from_text(&ClusterSecret::generate().unwrap()).unwrap().keys("c");
        let peers = PeerCalls::Verified(Arc::new(PeerVerifier::new(&keys)));
        let call = |headers: &[(&'static str, String)]| {
            let mut request = Request::new(());
            for (key, value) in headers {
                request.metadata_mut().insert(*key, value.parse().unwrap());
            }
            interceptor(gate.clone(), peers.clone())(request)
        };
        let admin = call(&[("authorization", format!("Bearer {token}"))]).unwrap();
        assert_eq!(require_peer(&peers, &admin).unwrap_err().code(), tonic::Code::Unauthenticated);
        assert!(require_peer(&PeerCalls::Open, &admin).is_ok());

        let signer = PeerSigner::new(&keys, "node2");
        let credential = signer.credential();
        let peer = call(&[(PEER_HEADER, credential.clone())]).unwrap();
        require_peer(&peers, &peer).unwrap();
        assert!(principal_of(&peer).is_err(), "a peer credential is no user");
        let replayed = call(&[(PEER_HEADER, credential)]).unwrap_err();
        assert_eq!(replayed.code(), tonic::Code::Unauthenticated);
        let other = ClusterSecret::from_text(&ClusterSecret::generate().unwrap()).unwrap();
        let forged = PeerSigner::new(&other.keys("c"), "node3").credential();
        assert_eq!(
            call(&[(PEER_HEADER, forged)]).unwrap_err().code(),
            tonic::Code::Unauthenticated
        );
    }
}
