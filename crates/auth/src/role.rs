//! Roles: what a user or token may do. Each role includes the ones before it.

use serde::{Deserialize, Serialize};

/// A role, ordered by what it allows (`Reader < Writer < Admin`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Runs queries (SQL on every door, the web UI, the live stream).
    Reader,
    /// Also writes points: MQTT publish, HTTP writes, `INSERT`, Flight `DoPut`.
    Writer,
    /// Also deletes points, manages the cluster (decommission), reads `system.*` internals and
    /// `/metrics`.
    Admin,
}

impl Role {
    /// Whether this role may write points.
    pub fn can_write(self) -> bool {
        self >= Role::Writer
    }

    /// Whether this role may delete points, manage the cluster and read internals.
    pub fn is_admin(self) -> bool {
        self == Role::Admin
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Reader => "reader",
            Role::Writer => "writer",
            Role::Admin => "admin",
        }
    }
}

impl std::fmt::Display for Role {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for Role {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        match text.to_ascii_lowercase().as_str() {
            "reader" => Ok(Role::Reader),
            "writer" => Ok(Role::Writer),
            "admin" => Ok(Role::Admin),
            other => Err(format!("unknown role {other:?}: reader, writer or admin")),
        }
    }
}
