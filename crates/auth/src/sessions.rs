//! Logins that outlive one request: the web UI's session cookie and the bearer token a Flight
//! handshake with a password answers. A session is a random id naming a user; each use looks
//! the user up again, so removing a user or changing its role applies to its sessions at once.
//! Kept in memory: after a restart clients log in again.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use parking_lot::Mutex;

use crate::error::AuthError;
use crate::scram::fill_random;

/// Every session id starts with this (user tokens start with `mt_`).
pub const SESSION_PREFIX: &str = "mts_";
/// How long a login lasts.
pub const SESSION_LIFETIME: Duration = Duration::from_secs(12 * 3600);
/// Sessions kept at once; beyond it the one ending first goes.
const MAX_SESSIONS: usize = 10_000;

#[derive(Debug, Default)]
pub(crate) struct Sessions {
    map: Mutex<HashMap<String, (String, Instant)>>,
}

impl Sessions {
    pub(crate) fn open(&self, user: &str) -> Result<String, AuthError> {
        let mut bytes = [0u8; 32];
        fill_random(&mut bytes)?;
        let id = format!("{SESSION_PREFIX}{}", URL_SAFE_NO_PAD.encode(bytes));
        let now = Instant::now();
        let mut map = self.map.lock();
        map.retain(|_, (_, ends)| *ends > now);
        if map.len() >= MAX_SESSIONS {
            let first_to_end =
                map.iter().min_by_key(|(_, (_, ends))| *ends).map(|(id, _)| id.clone());
            if let Some(id) = first_to_end {
                map.remove(&id);
            }
        }
        map.insert(id.clone(), (user.to_string(), now + SESSION_LIFETIME));
        Ok(id)
    }

    /// The user of a session that has not ended.
    pub(crate) fn user(&self, id: &str) -> Option<String> {
        let map = self.map.lock();
        let (user, ends) = map.get(id)?;
        (*ends > Instant::now()).then(|| user.clone())
    }

    pub(crate) fn close(&self, id: &str) {
        self.map.lock().remove(id);
    }
}
