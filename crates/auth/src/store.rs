//! The credentials file, `users.json` in the data directory: users with their role and SCRAM
//! verifier, tokens with their role and hash, and the secret behind the mock verifiers of
//! unknown users. No password or token is ever stored.
//!
//! Management commands ([`CredentialsEditor`]) change it under an exclusive lock on
//! `users.json.lock`, by writing a new file (mode 0600) next to it, fsyncing it, renaming it
//! over the old one and fsyncing the directory: a reader sees the old file or the new one,
//! and the change survives a power cut once the command returns. A running node
//! ([`Credentials`]) notices the new file on its next check (one `stat`) and loads it.

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};

use crate::error::AuthError;
use crate::role::Role;
use crate::scram::{fill_random, sha256, ScramExchange, ScramVerifier};
use crate::token::{generate_token, token_hash, MAX_TOKEN_CHARS, TOKEN_PREFIX};

/// The credentials file's name in the data directory.
pub const CREDENTIALS_FILE: &str = "users.json";
const FORMAT: u32 = 1;
const MAX_NAME_CHARS: usize = 63;
const MAX_PASSWORD_BYTES: usize = 1024;
/// Basic/MQTT logins remembered (hashed) so a client that sends its password with every
/// request pays for PBKDF2 once; cleared when full and whenever the file changes.
const PASSWORD_CACHE_ENTRIES: usize = 4096;

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct CredentialsFile {
    format: u32,
    /// Base64 of 32 random bytes: the key of unknown users' mock verifiers.
    mock_secret: String,
    users: Vec<UserRecord>,
    tokens: Vec<TokenRecord>,
}

/// A user as stored.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UserRecord {
    pub name: String,
    pub role: Role,
    /// [`ScramVerifier::encode`]'s form.
    scram: String,
    /// Unix seconds.
    pub created: u64,
}

/// A token as stored.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenRecord {
    pub name: String,
    pub role: Role,
    /// [`token_hash`] of the token.
    sha256: String,
    pub created: u64,
}

/// Who a request or connection is, once authenticated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    /// The user's name, or `token:<name>` for a token.
    pub name: String,
    pub role: Role,
}

fn now_seconds() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

fn check_name(what: &str, name: &str) -> Result<(), AuthError> {
    let valid = !name.is_empty()
        && name.chars().count() <= MAX_NAME_CHARS
        && name.chars().all(|c| c.is_ascii_alphanumeric() || "_.@-".contains(c));
    match valid {
        true => Ok(()),
        false => Err(AuthError::Invalid(format!(
            "{what} name {name:?}: 1 to {MAX_NAME_CHARS} letters, digits, '_', '.', '@' or '-'"
        ))),
    }
}

fn io_error(path: &Path) -> impl FnOnce(std::io::Error) -> AuthError + '_ {
    move |source| AuthError::Io { path: path.display().to_string(), source }
}

fn read_file(path: &Path) -> Result<Option<CredentialsFile>, AuthError> {
    let text = match std::fs::read(path) {
        Ok(text) => text,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(error) => return Err(io_error(path)(error)),
    };
    let corrupt =
        |reason: String| AuthError::CorruptFile { path: path.display().to_string(), reason };
    let file: CredentialsFile =
        serde_json::from_slice(&text).map_err(|error| corrupt(error.to_string()))?;
    if file.format != FORMAT {
        return Err(corrupt(format!("format {} (this version reads {FORMAT})", file.format)));
    }
    Ok(Some(file))
}

/// Changes the credentials file of one data directory (the `minitrue user` and `minitrue
/// token` commands). Every method is one locked read-modify-write.
pub struct CredentialsEditor {
    dir: PathBuf,
}

impl CredentialsEditor {
    /// The editor of `data_dir`'s credentials (the directory is created if needed).
    pub fn open(data_dir: &Path) -> Result<Self, AuthError> {
        std::fs::create_dir_all(data_dir).map_err(io_error(data_dir))?;
        Ok(CredentialsEditor { dir: data_dir.to_path_buf() })
    }

    pub fn path(&self) -> PathBuf {
        self.dir.join(CREDENTIALS_FILE)
    }

    /// Adds a user, or replaces the password and role of an existing one.
    pub fn set_user(&self, name: &str, role: Role, password: &str) -> Result<(), AuthError> {
        check_name("user", name)?;
        if password.is_empty() || password.len() > MAX_PASSWORD_BYTES {
            return Err(AuthError::Invalid(format!(
                "a password has 1 to {MAX_PASSWORD_BYTES} bytes"
            )));
        }
        let scram = ScramVerifier::new(password)?.encode();
        self.change(|file| {
            file.users.retain(|user| user.name != name);
            file.users.push(UserRecord {
                name: name.to_string(),
                role,
                scram,
                created: now_seconds(),
            });
            file.users.sort_by(|a, b| a.name.cmp(&b.name));
            Ok(())
        })
    }

    pub fn remove_user(&self, name: &str) -> Result<(), AuthError> {
        self.change(|file| {
            let before = file.users.len();
            file.users.retain(|user| user.name != name);
            match file.users.len() < before {
                true => Ok(()),
                false => Err(AuthError::NotFound(format!("user {name:?}"))),
            }
        })
    }

    pub fn users(&self) -> Result<Vec<UserRecord>, AuthError> {
        Ok(read_file(&self.path())?.map(|file| file.users).unwrap_or_default())
    }

    /// Creates a token and returns it: the only time its text is known.
    pub fn create_token(&self, name: &str, role: Role) -> Result<String, AuthError> {
        check_name("token", name)?;
        let token = generate_token()?;
        let sha256 = token_hash(&token);
        self.change(|file| {
            if file.tokens.iter().any(|t| t.name == name) {
                return Err(AuthError::Invalid(format!(
                    "a token named {name:?} exists: revoke it first or choose another name"
                )));
            }
            file.tokens.push(TokenRecord {
                name: name.to_string(),
                role,
                sha256,
                created: now_seconds(),
            });
            file.tokens.sort_by(|a, b| a.name.cmp(&b.name));
            Ok(())
        })?;
        Ok(token)
    }

    pub fn revoke_token(&self, name: &str) -> Result<(), AuthError> {
        self.change(|file| {
            let before = file.tokens.len();
            file.tokens.retain(|token| token.name != name);
            match file.tokens.len() < before {
                true => Ok(()),
                false => Err(AuthError::NotFound(format!("token {name:?}"))),
            }
        })
    }

    pub fn tokens(&self) -> Result<Vec<TokenRecord>, AuthError> {
        Ok(read_file(&self.path())?.map(|file| file.tokens).unwrap_or_default())
    }

    /// Applies `edit` to the file under the lock and writes the result durably.
    fn change(
        &self,
        edit: impl FnOnce(&mut CredentialsFile) -> Result<(), AuthError>,
    ) -> Result<(), AuthError> {
        let lock_path = self.dir.join(format!("{CREDENTIALS_FILE}.lock"));
        let lock = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .mode(0o600)
            .open(&lock_path)
            .map_err(io_error(&lock_path))?;
        lock.lock().map_err(io_error(&lock_path))?;
        let path = self.path();
        let mut file = match read_file(&path)? {
            Some(file) => file,
            None => {
                let mut secret = [0u8; 32];
                fill_random(&mut secret)?;
                CredentialsFile {
                    format: FORMAT,
                    mock_secret: BASE64.encode(secret),
                    users: Vec::new(),
                    tokens: Vec::new(),
                }
            }
        };
        edit(&mut file)?;
        let text = serde_json::to_vec_pretty(&file).map_err(|error| AuthError::CorruptFile {
            path: path.display().to_string(),
            reason: error.to_string(),
        })?;
        write_durably(&self.dir, &path, &text)
        // The lock is released when `lock` is dropped.
    }
}

/// Writes `path` as a whole: a temporary file (owner-only), fsynced, renamed over `path`,
/// and the directory fsynced so the rename survives a power cut.
fn write_durably(dir: &Path, path: &Path, bytes: &[u8]) -> Result<(), AuthError> {
    let temporary = path.with_extension("json.tmp");
    let mut file = OpenOptions::new()
        .create(true)
        .truncate(true)
        .write(true)
        .mode(0o600)
        .open(&temporary)
        .map_err(io_error(&temporary))?;
    // A temporary file left by an older umask keeps its mode: set it again.
    file.set_permissions(std::fs::Permissions::from_mode(0o600)).map_err(io_error(&temporary))?;
    file.write_all(bytes).map_err(io_error(&temporary))?;
    file.sync_all().map_err(io_error(&temporary))?;
    drop(file);
    std::fs::rename(&temporary, path).map_err(io_error(path))?;
    File::open(dir).and_then(|d| d.sync_all()).map_err(io_error(dir))
}

/// What a node checks credentials against: the credentials file as last loaded.
#[derive(Debug)]
struct Snapshot {
    users: HashMap<String, (Role, ScramVerifier)>,
    /// Token hash → (name, role).
    tokens: HashMap<String, (String, Role)>,
    mock_secret: Vec<u8>,
    /// Hashes of password logins already verified, with their principal.
    verified_passwords: Mutex<HashMap<[u8; 32], Principal>>,
}

impl Snapshot {
    fn empty(mock_secret: Vec<u8>) -> Self {
        Snapshot {
            users: HashMap::new(),
            tokens: HashMap::new(),
            mock_secret,
            verified_passwords: Mutex::new(HashMap::new()),
        }
    }

    fn from_file(file: CredentialsFile, path: &Path) -> Result<Self, AuthError> {
        let corrupt =
            |reason: String| AuthError::CorruptFile { path: path.display().to_string(), reason };
        let mock_secret =
            BASE64.decode(&file.mock_secret).map_err(|e| corrupt(format!("mock_secret: {e}")))?;
        let mut users = HashMap::new();
        for user in file.users {
            let verifier = ScramVerifier::decode(&user.scram)
                .map_err(|e| corrupt(format!("user {:?}: {e}", user.name)))?;
            users.insert(user.name, (user.role, verifier));
        }
        let tokens =
            file.tokens.into_iter().map(|token| (token.sha256, (token.name, token.role))).collect();
        Ok(Snapshot { users, tokens, mock_secret, verified_passwords: Mutex::new(HashMap::new()) })
    }
}

/// Identifies one version of the file: a rename makes a new inode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct FileStamp {
    inode: u64,
    modified_ns: i128,
    len: u64,
}

fn stamp_of(path: &Path) -> Option<FileStamp> {
    let metadata = std::fs::metadata(path).ok()?;
    Some(FileStamp {
        inode: metadata.ino(),
        modified_ns: i128::from(metadata.mtime()) * 1_000_000_000
            + i128::from(metadata.mtime_nsec()),
        len: metadata.len(),
    })
}

/// The credentials of a running node, following the file: each check first compares the
/// file's inode, size and modification time with the loaded version (one `stat`) and loads
/// it again when they differ, so `minitrue user …` and `minitrue token …` take effect at once.
/// A file that fails to load is reported and the previous version stays in force.
///
/// Blocking: a check may read the file (a few KiB) — cheap enough for the doors' async tasks,
/// as `stat` is.
#[derive(Debug)]
pub struct Credentials {
    /// `None`: no file, never any user ([`Credentials::none`]).
    path: Option<PathBuf>,
    loaded: Mutex<(Option<FileStamp>, Arc<Snapshot>)>,
}

impl Credentials {
    /// The credentials of `data_dir`. Fails when the file exists but cannot be read: a node
    /// must not start open because its users file is damaged.
    pub fn open(data_dir: &Path) -> Result<Self, AuthError> {
        let path = data_dir.join(CREDENTIALS_FILE);
        let stamp = stamp_of(&path);
        let snapshot = match read_file(&path)? {
            Some(file) => Snapshot::from_file(file, &path)?,
            None => Snapshot::empty(random_secret()?),
        };
        Ok(Credentials { path: Some(path), loaded: Mutex::new((stamp, Arc::new(snapshot))) })
    }

    /// Credentials with no file and no users: an open node that stays open (benchmarks,
    /// tests of the doors).
    pub fn none() -> Result<Self, AuthError> {
        let snapshot = Snapshot::empty(random_secret()?);
        Ok(Credentials { path: None, loaded: Mutex::new((None, Arc::new(snapshot))) })
    }

    fn current(&self) -> Arc<Snapshot> {
        let Some(path) = &self.path else {
            return self.loaded.lock().1.clone();
        };
        let stamp = stamp_of(path);
        let mut loaded = self.loaded.lock();
        if loaded.0 == stamp {
            return loaded.1.clone();
        }
        let reloaded = match read_file(path) {
            Ok(Some(file)) => Snapshot::from_file(file, path),
            // Removed: nobody may log in with what it held; keep the mock secret.
            Ok(None) => Ok(Snapshot::empty(loaded.1.mock_secret.clone())),
            Err(error) => Err(error),
        };
        match reloaded {
            Ok(snapshot) => {
                // In the node's audit trail: who may log in changed.
                let users: Vec<&str> = snapshot.users.keys().map(String::as_str).collect();
                tracing::info!(
                    target: "audit",
                    users = %users.join(","),
                    tokens = snapshot.tokens.len(),
                    "credentials changed"
                );
                *loaded = (stamp, Arc::new(snapshot));
            }
            Err(error) => {
                // Remember the stamp so a broken file is reported once, not at every check.
                tracing::error!(%error, "credentials file not reloaded; the previous users and tokens stay in force");
                loaded.0 = stamp;
            }
        }
        loaded.1.clone()
    }

    /// Whether any user or token exists: authentication is required exactly then.
    pub fn has_users(&self) -> bool {
        let snapshot = self.current();
        !snapshot.users.is_empty() || !snapshot.tokens.is_empty()
    }

    /// Starts a SCRAM exchange for `user` (a mock one for an unknown user, which fails at the
    /// end like a wrong password). Returns the exchange, the user's role if it exists, and the
    /// server-first message.
    pub fn start_scram(
        &self,
        user: &str,
        client_first: &[u8],
    ) -> Result<(ScramExchange, Option<Role>, String), AuthError> {
        let snapshot = self.current();
        let (verifier, role) = match snapshot.users.get(user) {
            Some((role, verifier)) => (verifier.clone(), Some(*role)),
            None => (ScramVerifier::mock(user, &snapshot.mock_secret), None),
        };
        let (exchange, server_first) =
            ScramExchange::start(client_first, verifier, role.is_some())?;
        Ok((exchange, role, server_first))
    }

    /// Checks a user's password (HTTP Basic, MQTT CONNECT, the web UI's login).
    pub fn check_password(&self, user: &str, password: &str) -> Result<Principal, AuthError> {
        if password.len() > MAX_PASSWORD_BYTES || user.len() > MAX_NAME_CHARS * 4 {
            return Err(AuthError::Failed);
        }
        let snapshot = self.current();
        let mut key = snapshot.mock_secret.clone();
        key.extend_from_slice(user.as_bytes());
        key.push(0);
        key.extend_from_slice(password.as_bytes());
        let key = sha256(&key);
        if let Some(principal) = snapshot.verified_passwords.lock().get(&key) {
            return Ok(principal.clone());
        }
        let Some((role, verifier)) = snapshot.users.get(user) else {
            // As slow as a real check, so timing does not tell which users exist.
            let _ = ScramVerifier::mock(user, &snapshot.mock_secret).matches_password(password);
            return Err(AuthError::Failed);
        };
        if !verifier.matches_password(password) {
            return Err(AuthError::Failed);
        }
        let principal = Principal { name: user.to_string(), role: *role };
        let mut cache = snapshot.verified_passwords.lock();
        if cache.len() >= PASSWORD_CACHE_ENTRIES {
            cache.clear();
        }
        cache.insert(key, principal.clone());
        Ok(principal)
    }

    /// The current role of `user`, if it exists (a login session re-checks this on every
    /// request, so a removed user's sessions end and a changed role applies at once).
    pub fn role_of(&self, user: &str) -> Option<Role> {
        self.current().users.get(user).map(|(role, _)| *role)
    }

    /// Checks a bearer token.
    pub fn check_token(&self, token: &str) -> Result<Principal, AuthError> {
        if token.len() > MAX_TOKEN_CHARS || !token.starts_with(TOKEN_PREFIX) {
            return Err(AuthError::Failed);
        }
        let snapshot = self.current();
        match snapshot.tokens.get(&token_hash(token)) {
            Some((name, role)) => Ok(Principal { name: format!("token:{name}"), role: *role }),
            None => Err(AuthError::Failed),
        }
    }
}

fn random_secret() -> Result<Vec<u8>, AuthError> {
    let mut secret = vec![0u8; 32];
    fill_random(&mut secret)?;
    Ok(secret)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn users_and_tokens_are_stored_as_verifiers_and_hashes_only() {
        let dir = tempfile::tempdir().unwrap();
        let editor = CredentialsEditor::open(dir.path()).unwrap();
        editor.set_user("alice", Role::Admin, "wonderland").unwrap();
        let token = editor.create_token("grafana", Role::Reader).unwrap();
        let text = std::fs::read_to_string(editor.path()).unwrap();
        assert!(!text.contains("wonderland") && !text.contains(&token), "{text}");
        assert!(text.contains("SCRAM-SHA-256$4096:"), "{text}");
        let mode = std::fs::metadata(editor.path()).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        assert_eq!(editor.users().unwrap()[0].role, Role::Admin);
        assert_eq!(editor.tokens().unwrap()[0].name, "grafana");
        assert!(editor.create_token("grafana", Role::Admin).is_err(), "names are unique");
        assert!(editor.set_user("bad name", Role::Reader, "x").is_err());
        assert!(editor.set_user("bob", Role::Reader, "").is_err());
        assert!(matches!(editor.remove_user("nobody"), Err(AuthError::NotFound(_))));
    }

    #[test]
    fn a_running_node_follows_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let credentials = Credentials::open(dir.path()).unwrap();
        assert!(!credentials.has_users());
        let editor = CredentialsEditor::open(dir.path()).unwrap();
        editor.set_user("alice", Role::Writer, "wonderland").unwrap();
        assert!(credentials.has_users());
        let alice = credentials.check_password("alice", "wonderland").unwrap();
        assert_eq!(alice, Principal { name: "alice".into(), role: Role::Writer });
        assert_eq!(credentials.check_password("alice", "wonderland").unwrap(), alice, "cached");
        assert!(credentials.check_password("alice", "Wonderland").is_err());
        assert!(credentials.check_password("mallory", "wonderland").is_err());

        let token = editor.create_token("ci", Role::Admin).unwrap();
        assert_eq!(credentials.check_token(&token).unwrap().role, Role::Admin);
        assert!(credentials.check_token("mt_nope").is_err());
        editor.revoke_token("ci").unwrap();
        assert!(credentials.check_token(&token).is_err(), "revoked at once");

        // A new password replaces the cached login.
        editor.set_user("alice", Role::Reader, "looking glass").unwrap();
        assert!(credentials.check_password("alice", "wonderland").is_err());
        assert_eq!(
            credentials.check_password("alice", "looking glass").unwrap().role,
            Role::Reader
        );
        editor.remove_user("alice").unwrap();
        assert!(credentials.check_password("alice", "looking glass").is_err());
        assert!(!credentials.has_users());
    }

    #[test]
    fn a_damaged_file_keeps_a_node_closed() {
        let dir = tempfile::tempdir().unwrap();
        let editor = CredentialsEditor::open(dir.path()).unwrap();
        editor.set_user("alice", Role::Admin, "wonderland").unwrap();
        let credentials = Credentials::open(dir.path()).unwrap();
        std::fs::write(editor.path(), b"{ not json").unwrap();
        assert!(credentials.has_users(), "the previous users stay in force");
        assert!(credentials.check_password("alice", "wonderland").is_ok());
        assert!(matches!(Credentials::open(dir.path()), Err(AuthError::CorruptFile { .. })));
    }

    #[test]
    fn scram_for_unknown_users_looks_like_scram_for_known_ones() {
        let dir = tempfile::tempdir().unwrap();
        let editor = CredentialsEditor::open(dir.path()).unwrap();
        editor.set_user("alice", Role::Admin, "wonderland").unwrap();
        let credentials = Credentials::open(dir.path()).unwrap();
        let first = b"n,,n=,r=abcdef";
        let (_, role, known) = credentials.start_scram("alice", first).unwrap();
        assert_eq!(role, Some(Role::Admin));
        let (_, role, unknown) = credentials.start_scram("mallory", first).unwrap();
        assert_eq!(role, None);
        let salt = |m: &str| m.split(',').find(|a| a.starts_with("s=")).unwrap().to_string();
        let (_, _, again) = credentials.start_scram("mallory", first).unwrap();
        assert_eq!(salt(&unknown), salt(&again), "a stable salt for an unknown user");
        assert_eq!(salt(&known).len(), salt(&unknown).len());
    }
}
