//! The doors' one place to authenticate a client: counts every success and failure per door,
//! and writes failures and privileged actions to the audit log (`tracing` target `audit`,
//! with door, user and peer address).

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use minitrue_common::Metric;

use crate::error::AuthError;
use crate::role::Role;
use crate::scram::ScramExchange;
use crate::sessions::{Sessions, SESSION_PREFIX};
use crate::store::{Credentials, Principal};
use crate::throttle::Throttle;

/// The doors clients come in through.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Door {
    Postgres,
    Http,
    Flight,
    Mqtt,
}

impl Door {
    const ALL: [Door; 4] = [Door::Postgres, Door::Http, Door::Flight, Door::Mqtt];

    pub fn as_str(self) -> &'static str {
        match self {
            Door::Postgres => "postgres",
            Door::Http => "http",
            Door::Flight => "flight",
            Door::Mqtt => "mqtt",
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

#[derive(Debug, Default)]
struct DoorCounters {
    succeeded: AtomicU64,
    failed: AtomicU64,
    denied: AtomicU64,
    throttled: AtomicU64,
}

/// Authentication for every door of a node, over its [`Credentials`].
#[derive(Debug)]
pub struct Gatekeeper {
    credentials: Credentials,
    sessions: Sessions,
    counters: [DoorCounters; 4],
    throttle: Throttle,
}

impl Gatekeeper {
    pub fn new(credentials: Credentials) -> Arc<Self> {
        Arc::new(Gatekeeper {
            credentials,
            sessions: Sessions::default(),
            counters: Default::default(),
            throttle: Throttle::default(),
        })
    }

    /// Whether clients must authenticate: exactly when a user or a token exists. Checked per
    /// connection or request, so adding the first user closes an open node at once.
    pub fn required(&self) -> bool {
        self.credentials.has_users()
    }

    /// The principal of a client of an open node (no users): it may do everything.
    pub fn open_access(user: &str) -> Principal {
        let name = match user.is_empty() {
            true => "anonymous".to_string(),
            false => user.to_string(),
        };
        Principal { name, role: Role::Admin }
    }

    /// Checks a user's password.
    pub fn password(
        &self,
        door: Door,
        peer: Option<SocketAddr>,
        user: &str,
        password: &str,
    ) -> Result<Principal, AuthError> {
        self.throttled(door, peer, user)?;
        let result = self.credentials.check_password(user, password);
        self.count_password(door, peer, user, result)
    }

    /// Checks a bearer token: a stored token, or a session id [`Gatekeeper::open_session`]
    /// gave out.
    pub fn token(
        &self,
        door: Door,
        peer: Option<SocketAddr>,
        token: &str,
    ) -> Result<Principal, AuthError> {
        let result = match token.starts_with(SESSION_PREFIX) {
            true => self.session(token).ok_or(AuthError::Failed),
            false => self.credentials.check_token(token),
        };
        self.count(door, peer, "(token)", result)
    }

    /// Starts a session for an authenticated user: an id to present as a bearer token or a
    /// cookie until [`SESSION_LIFETIME`](crate::sessions::SESSION_LIFETIME) passes.
    pub fn open_session(&self, principal: &Principal) -> Result<String, AuthError> {
        self.sessions.open(&principal.name)
    }

    /// The principal of a session that has not ended, with its user's current role; `None`
    /// once the user is removed.
    pub fn session(&self, id: &str) -> Option<Principal> {
        let user = self.sessions.user(id)?;
        let role = self.credentials.role_of(&user)?;
        Some(Principal { name: user, role })
    }

    /// Ends a session (logout).
    pub fn close_session(&self, id: &str) {
        self.sessions.close(id);
    }

    /// Starts a SCRAM exchange (see [`Credentials::start_scram`]); finish it with
    /// [`Gatekeeper::finish_scram`].
    pub fn start_scram(
        &self,
        user: &str,
        client_first: &[u8],
    ) -> Result<(ScramExchange, Option<Role>, String), AuthError> {
        self.credentials.start_scram(user, client_first)
    }

    /// Finishes a SCRAM exchange started for `user` with `role`: the server-final message
    /// and the principal, counted and audited like the other checks.
    pub fn finish_scram(
        &self,
        door: Door,
        peer: Option<SocketAddr>,
        user: &str,
        role: Option<Role>,
        exchange: &ScramExchange,
        client_final: &[u8],
    ) -> Result<(String, Principal), AuthError> {
        let result = exchange.finish(client_final).and_then(|server_final| match role {
            Some(role) => Ok((server_final, Principal { name: user.to_string(), role })),
            None => Err(AuthError::Failed),
        });
        self.throttled(door, peer, user)?;
        match result {
            Ok((server_final, principal)) => {
                let principal = self.count_password(door, peer, user, Ok(principal))?;
                Ok((server_final, principal))
            }
            Err(error) => Err(self.count_password(door, peer, user, Err(error)).unwrap_err()),
        }
    }

    /// Refuses a password login from an address locked out for guessing (see
    /// [`crate::throttle`]), counted and audited; the client sees a failed login.
    fn throttled(&self, door: Door, peer: Option<SocketAddr>, user: &str) -> Result<(), AuthError> {
        let Some(peer) = peer else { return Ok(()) };
        let Err(remaining) = self.throttle.check(peer.ip(), Instant::now()) else { return Ok(()) };
        self.counters[door.index()].throttled.fetch_add(1, Ordering::Relaxed);
        tracing::warn!(
            target: "audit",
            door = door.as_str(),
            user,
            peer = %peer,
            remaining_seconds = remaining.as_secs(),
            "login refused: too many failed logins from this address"
        );
        Err(AuthError::Failed)
    }

    /// [`Gatekeeper::count`] for a password login, which also feeds the throttle.
    fn count_password(
        &self,
        door: Door,
        peer: Option<SocketAddr>,
        user: &str,
        result: Result<Principal, AuthError>,
    ) -> Result<Principal, AuthError> {
        if let Some(peer) = peer {
            match &result {
                Ok(_) => self.throttle.succeeded(peer.ip()),
                Err(_) => {
                    if let Some(lockout) = self.throttle.failed(peer.ip(), Instant::now()) {
                        tracing::warn!(
                            target: "audit",
                            door = door.as_str(),
                            peer = %peer,
                            lockout_seconds = lockout.as_secs(),
                            "too many failed logins: this address is locked out"
                        );
                    }
                }
            }
        }
        self.count(door, peer, user, result)
    }

    /// Records a client refused for coming without credentials to a node that has users.
    pub fn refuse_anonymous(&self, door: Door, peer: Option<SocketAddr>) {
        let _ = self.count(door, peer, "(none)", Err(AuthError::Failed));
    }

    /// Records an authenticated client refused an action its role does not allow.
    pub fn denied(
        &self,
        door: Door,
        peer: Option<SocketAddr>,
        principal: &Principal,
        action: &str,
    ) {
        self.counters[door.index()].denied.fetch_add(1, Ordering::Relaxed);
        tracing::warn!(
            target: "audit",
            door = door.as_str(),
            user = %principal.name,
            role = %principal.role,
            peer = %peer_text(peer),
            action,
            "permission denied"
        );
    }

    /// Writes a privileged action (a delete, a decommission) to the audit log.
    pub fn audit(&self, door: Door, peer: Option<SocketAddr>, principal: &Principal, action: &str) {
        tracing::info!(
            target: "audit",
            door = door.as_str(),
            user = %principal.name,
            role = %principal.role,
            peer = %peer_text(peer),
            action,
            "privileged action"
        );
    }

    fn count(
        &self,
        door: Door,
        peer: Option<SocketAddr>,
        user: &str,
        result: Result<Principal, AuthError>,
    ) -> Result<Principal, AuthError> {
        let counters = &self.counters[door.index()];
        match &result {
            Ok(_) => {
                counters.succeeded.fetch_add(1, Ordering::Relaxed);
            }
            Err(error) => {
                counters.failed.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(
                    target: "audit",
                    door = door.as_str(),
                    user,
                    peer = %peer_text(peer),
                    %error,
                    "authentication failed"
                );
            }
        }
        result
    }

    /// The counters, for the node's metrics registry.
    pub fn metrics(self: Arc<Self>) -> impl Fn(&mut Vec<Metric>) + Send + Sync {
        move |out: &mut Vec<Metric>| {
            for door in Door::ALL {
                let counters = &self.counters[door.index()];
                let samples = [
                    (
                        "minitrue_auth_succeeded_total",
                        "logins and requests that authenticated",
                        &counters.succeeded,
                    ),
                    (
                        "minitrue_auth_failed_total",
                        "logins and requests refused for wrong or unknown credentials",
                        &counters.failed,
                    ),
                    (
                        "minitrue_auth_denied_total",
                        "authenticated requests refused because the role does not allow them",
                        &counters.denied,
                    ),
                    (
                        "minitrue_auth_throttled_total",
                        "password logins refused unchecked: too many failures from the address",
                        &counters.throttled,
                    ),
                ];
                for (name, help, counter) in samples {
                    out.push(
                        Metric::counter(name, help, counter.load(Ordering::Relaxed))
                            .with_label("door", door.as_str()),
                    );
                }
            }
            out.push(Metric::gauge(
                "minitrue_auth_required",
                "1 when clients must authenticate (a user or token exists), 0 when the node is open",
                if self.required() { 1.0 } else { 0.0 },
            ));
        }
    }
}

fn peer_text(peer: Option<SocketAddr>) -> String {
    peer.map(|peer| peer.to_string()).unwrap_or_else(|| "-".to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::CredentialsEditor;

    fn gate_with_user(dir: &std::path::Path) -> Arc<Gatekeeper> {
        CredentialsEditor::open(dir).unwrap().set_user("ops", Role::Admin, "right-pw").unwrap();
        Gatekeeper::new(Credentials::open(dir).unwrap())
    }

    #[test]
    fn an_address_guessing_passwords_is_locked_out_and_others_are_not() {
        let dir = tempfile::tempdir().unwrap();
        let gate = gate_with_user(dir.path());
        let guesser: SocketAddr = "10.1.1.1:40000".parse().unwrap();
        let colleague: SocketAddr = "10.1.1.2:40000".parse().unwrap();
        for _ in 0..crate::throttle::MAX_FAILURES {
            assert!(gate.password(Door::Http, Some(guesser), "ops", "guess").is_err());
        }
        // Locked out: even the right password fails, from any door, as a plain failure.
        let locked = gate.password(Door::Postgres, Some(guesser), "ops", "right-pw");
        assert!(matches!(locked, Err(AuthError::Failed)));
        assert_eq!(gate.counters[Door::Postgres.index()].throttled.load(Ordering::Relaxed), 1);
        // Another address logs in.
        assert!(gate.password(Door::Http, Some(colleague), "ops", "right-pw").is_ok());
    }

    #[test]
    fn a_success_resets_the_count_of_failures() {
        let dir = tempfile::tempdir().unwrap();
        let gate = gate_with_user(dir.path());
        let user: SocketAddr = "10.1.1.3:40000".parse().unwrap();
        for _ in 0..3 {
            for _ in 0..crate::throttle::MAX_FAILURES - 1 {
                assert!(gate.password(Door::Mqtt, Some(user), "ops", "typo").is_err());
            }
            assert!(gate.password(Door::Mqtt, Some(user), "ops", "right-pw").is_ok());
        }
    }
}
