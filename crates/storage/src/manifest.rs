//! The manifest: which data files make up the database, which WAL records they cover, and
//! which deletes are pending. Each version is a complete, immutable object
//! `manifest/<version, 20 digits>.json`, written with a create-only put (atomic on the local
//! file system and on S3): a crash leaves the previous or the new version, never a torn one.
//!
//! Object format: one header line `minitrue-manifest <format> crc32=<hex> len=<bytes>`, then
//! the JSON body that the checksum and length cover. Loading takes the newest version that
//! passes both checks and reports the ones it skipped. The newest few versions are kept so a
//! damaged newest version still leaves an older one to start from; data files are
//! self-describing, so files an older version does not list are recovered from their footers
//! (see `engine::recover_orphans`).

use std::sync::Arc;

use futures::TryStreamExt;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload};
use serde::{Deserialize, Serialize};

use crate::error::{Result, StorageError};
use crate::file_format::FileMeta;
use crate::log_entry::DeleteRequest;

pub const MANIFEST_FORMAT_VERSION: u32 = 1;
const MANIFEST_DIR: &str = "manifest";

/// A delete recorded at a WAL position: it hides points written before `lsn` (in sources whose
/// records all precede it) and nothing written after.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tombstone {
    pub lsn: u64,
    pub delete: DeleteRequest,
}

/// One version of the database's file list. See the module docs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    pub format: u32,
    pub version: u64,
    /// Every WAL record with an LSN at or below this is in the files listed here.
    pub flushed_lsn: u64,
    pub next_file_id: u64,
    pub next_batch_id: u64,
    pub files: Vec<FileMeta>,
    pub tombstones: Vec<Tombstone>,
}

impl Manifest {
    pub fn empty() -> Self {
        Manifest {
            format: MANIFEST_FORMAT_VERSION,
            version: 0,
            flushed_lsn: 0,
            next_file_id: 1,
            next_batch_id: 1,
            files: Vec::new(),
            tombstones: Vec::new(),
        }
    }
}

/// What loading found.
#[derive(Debug)]
pub struct LoadedManifest {
    pub manifest: Manifest,
    /// Newer versions that failed to load, with the reason: each one is reported at start-up.
    pub skipped: Vec<(String, String)>,
}

/// Reads and writes manifest versions in an object store.
pub struct ManifestStore {
    store: Arc<dyn ObjectStore>,
    keep_versions: usize,
}

fn version_path(version: u64) -> Path {
    Path::from(format!("{MANIFEST_DIR}/{version:020}.json"))
}

fn parse_version(path: &Path) -> Option<u64> {
    path.filename()?.strip_suffix(".json")?.parse().ok()
}

/// The bytes of a manifest object.
pub fn encode_manifest(manifest: &Manifest) -> Result<Vec<u8>> {
    let body = serde_json::to_vec(manifest)
        .map_err(|e| StorageError::Task(format!("manifest to json: {e}")))?;
    let mut out = format!(
        "minitrue-manifest {} crc32={:08x} len={}\n",
        MANIFEST_FORMAT_VERSION,
        crc32fast::hash(&body),
        body.len()
    )
    .into_bytes();
    out.extend_from_slice(&body);
    Ok(out)
}

/// Parses and verifies a manifest object.
pub fn decode_manifest(path: &str, bytes: &[u8]) -> Result<Manifest> {
    let corrupt = |reason: String| StorageError::CorruptManifest { path: path.to_string(), reason };
    let newline =
        bytes.iter().position(|&b| b == b'\n').ok_or_else(|| corrupt("no header line".into()))?;
    let header = std::str::from_utf8(&bytes[..newline])
        .map_err(|_| corrupt("header is not utf-8".into()))?;
    let body = &bytes[newline + 1..];
    let fields: Vec<&str> = header.split(' ').collect();
    let [magic, format, crc, len] = fields.as_slice() else {
        return Err(corrupt(format!("bad header {header:?}")));
    };
    if *magic != "minitrue-manifest" || *format != MANIFEST_FORMAT_VERSION.to_string() {
        return Err(corrupt(format!("unknown header {header:?}")));
    }
    let expected_len: usize = len
        .strip_prefix("len=")
        .and_then(|l| l.parse().ok())
        .ok_or_else(|| corrupt(format!("bad length in {header:?}")))?;
    if body.len() != expected_len {
        return Err(corrupt(format!("body is {} bytes, header says {expected_len}", body.len())));
    }
    let expected_crc = crc
        .strip_prefix("crc32=")
        .and_then(|c| u32::from_str_radix(c, 16).ok())
        .ok_or_else(|| corrupt(format!("bad checksum field in {header:?}")))?;
    let actual_crc = crc32fast::hash(body);
    if actual_crc != expected_crc {
        return Err(corrupt(format!("checksum {actual_crc:08x} != {expected_crc:08x}")));
    }
    let manifest: Manifest =
        serde_json::from_slice(body).map_err(|e| corrupt(format!("json: {e}")))?;
    if manifest.format != MANIFEST_FORMAT_VERSION {
        return Err(corrupt(format!("unknown manifest format {}", manifest.format)));
    }
    Ok(manifest)
}

impl ManifestStore {
    pub fn new(store: Arc<dyn ObjectStore>, keep_versions: usize) -> Self {
        ManifestStore { store, keep_versions: keep_versions.max(2) }
    }

    async fn versions(&self) -> Result<Vec<(u64, Path)>> {
        let prefix = Path::from(MANIFEST_DIR);
        let objects: Vec<_> = self
            .store
            .list(Some(&prefix))
            .try_collect()
            .await
            .map_err(|e| StorageError::store("list", &prefix, e))?;
        let mut versions: Vec<(u64, Path)> = objects
            .into_iter()
            .filter_map(|meta| parse_version(&meta.location).map(|v| (v, meta.location)))
            .collect();
        versions.sort_by_key(|(version, _)| *version);
        Ok(versions)
    }

    /// The newest intact version (or an empty manifest when there is none at all).
    pub async fn load(&self) -> Result<LoadedManifest> {
        let mut skipped = Vec::new();
        let versions = self.versions().await?;
        // The next commit must be numbered past every version present, readable or not.
        let highest = versions.last().map(|(version, _)| *version).unwrap_or(0);
        for (_, path) in versions.into_iter().rev() {
            let bytes = match self.store.get(&path).await {
                Ok(result) => result.bytes().await,
                Err(e) => Err(e),
            };
            let outcome = match bytes {
                Ok(bytes) => decode_manifest(path.as_ref(), &bytes),
                Err(e) => Err(StorageError::store("get", &path, e)),
            };
            match outcome {
                Ok(mut manifest) => {
                    manifest.version = manifest.version.max(highest);
                    return Ok(LoadedManifest { manifest, skipped });
                }
                Err(error) => {
                    tracing::error!(path = %path, %error, "skipping unreadable manifest version");
                    skipped.push((path.to_string(), error.to_string()));
                }
            }
        }
        Ok(LoadedManifest { manifest: Manifest { version: highest, ..Manifest::empty() }, skipped })
    }

    /// Writes `manifest` as its version (which must be new), then prunes old versions.
    pub async fn commit(&self, manifest: &Manifest) -> Result<()> {
        let path = version_path(manifest.version);
        let bytes = encode_manifest(manifest)?;
        let options = PutOptions { mode: PutMode::Create, ..Default::default() };
        self.store
            .put_opts(&path, PutPayload::from(bytes), options)
            .await
            .map_err(|e| StorageError::store("put", &path, e))?;
        let versions = self.versions().await?;
        let excess = versions.len().saturating_sub(self.keep_versions);
        for (_, old) in versions.into_iter().take(excess) {
            if let Err(error) = self.store.delete(&old).await {
                tracing::warn!(path = %old, %error, "could not prune old manifest version");
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use object_store::memory::InMemory;

    #[test]
    fn manifest_bytes_are_checked() {
        let manifest = Manifest::empty();
        let bytes = encode_manifest(&manifest).unwrap();
        assert_eq!(decode_manifest("m", &bytes).unwrap(), manifest);
        let header_end = bytes.iter().position(|&b| b == b'\n').unwrap();
        for cut in [0, header_end, bytes.len() - 1] {
            assert!(decode_manifest("m", &bytes[..cut]).is_err(), "cut at {cut}");
        }
        let mut flipped = bytes.clone();
        let last = flipped.len() - 2;
        flipped[last] ^= 0x01;
        assert!(decode_manifest("m", &flipped).is_err());
    }

    #[test]
    fn empty_manifest_snapshot() {
        // Format version 1; a change here ships a fixture of the old format.
        let text = String::from_utf8(encode_manifest(&Manifest::empty()).unwrap()).unwrap();
        assert_eq!(
            text,
            "minitrue-manifest 1 crc32=a11d174d len=102\n{\"format\":1,\"version\":0,\"flushed_lsn\":0,\"next_file_id\":1,\"next_batch_id\":1,\"files\":[],\"tombstones\":[]}"
        );
    }

    #[tokio::test]
    async fn newest_intact_version_wins_and_old_ones_are_pruned() {
        let store: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
        let manifests = ManifestStore::new(store.clone(), 3);
        assert_eq!(manifests.load().await.unwrap().manifest.version, 0);
        for version in 1..=5 {
            let mut m = Manifest::empty();
            m.version = version;
            m.flushed_lsn = version * 10;
            manifests.commit(&m).await.unwrap();
        }
        assert_eq!(manifests.versions().await.unwrap().len(), 3);
        assert!(
            manifests.commit(&Manifest { version: 5, ..Manifest::empty() }).await.is_err(),
            "versions are create-only"
        );
        // Damage the newest: the one before it loads, and the damage is reported.
        store.put(&version_path(5), PutPayload::from_static(b"garbage")).await.unwrap();
        let loaded = manifests.load().await.unwrap();
        assert_eq!(loaded.manifest.flushed_lsn, 40, "version 4's content");
        assert_eq!(
            loaded.manifest.version, 5,
            "numbered past the damaged version, so the next commit is 6"
        );
        assert_eq!(loaded.skipped.len(), 1);
        // Missing newest: the previous loads without complaint.
        store.delete(&version_path(5)).await.unwrap();
        let loaded = manifests.load().await.unwrap();
        assert_eq!(loaded.manifest.flushed_lsn, 40);
        assert!(loaded.skipped.is_empty());
    }
}
