//! Hinted handoff: writes meant for an owner that could not take them, kept on disk by the
//! node that received them until the owner is back.
//!
//! Layout: `<dir>/<hex of node id>/<sequence>.hint`, one file per missed write, an Arrow IPC
//! stream of the points (in `readings`' schema) whose schema metadata carries the series'
//! tags; `<sequence>.delete`, one file per missed delete, the JSON list of its requests.
//! Writes and deletes share one numbering, so a node receives them in the order they
//! happened (a write, the delete that removes it, a later write the delete must not touch).
//! A file is written to a temporary name, synced and renamed, so a crash leaves whole hints
//! or none. Delivery takes a node's hints in sequence order and deletes each once the owner
//! has acknowledged it; a replay after a crash may deliver a hint twice, which is harmless (a
//! point is keyed by series and time, and a delete removes what it removes once).

use std::collections::HashMap;
use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use arrow::datatypes::Schema;
use arrow::ipc::reader::StreamReader;
use arrow::ipc::writer::StreamWriter;
use arrow::record_batch::RecordBatch;
use minitrue_common::{Point, SeriesKey};
use minitrue_storage::{DeleteRequest, Tags};

use crate::peer::{batch_to_points, decode_tags, encode_tags, points_to_batch};
use crate::ring::NodeId;

const TAGS_KEY: &str = "minitrue.tags";

/// Why a hint could not be kept or read.
#[derive(Debug, thiserror::Error)]
pub enum HintError {
    #[error("hint {path}: {source}")]
    Io { path: PathBuf, source: io::Error },
    #[error("hint {path} is damaged: {reason}")]
    Damaged { path: PathBuf, reason: String },
}

const WRITE_EXTENSION: &str = "hint";
const DELETE_EXTENSION: &str = "delete";

/// A missed write or delete, read back for delivery.
#[derive(Debug)]
pub struct Hint {
    pub path: PathBuf,
    pub missed: Missed,
}

/// What a hint holds.
#[derive(Debug, PartialEq)]
pub enum Missed {
    Write { points: Vec<Point>, series_tags: Vec<(SeriesKey, Tags)> },
    Delete(Vec<DeleteRequest>),
}

/// The hints directory of one node.
pub struct HintStore {
    dir: PathBuf,
    next_sequence: AtomicU64,
}

impl HintStore {
    /// Opens (creating) `dir`; new hints are numbered after the ones already there.
    pub fn open(dir: impl Into<PathBuf>) -> Result<Arc<HintStore>, HintError> {
        let dir = dir.into();
        fs::create_dir_all(&dir).map_err(|source| HintError::Io { path: dir.clone(), source })?;
        let store = HintStore { dir, next_sequence: AtomicU64::new(0) };
        let highest = store
            .pending()?
            .values()
            .flatten()
            .filter_map(|path| sequence_of(path))
            .max()
            .map_or(0, |s| s + 1);
        store.next_sequence.store(highest, Ordering::Relaxed);
        Ok(Arc::new(store))
    }

    fn node_dir(&self, node: &NodeId) -> PathBuf {
        let hex: String = node.as_str().bytes().map(|b| format!("{b:02x}")).collect();
        self.dir.join(hex)
    }

    /// Keeps `points` for `node`, durably (blocking: call from a blocking thread).
    pub fn store(
        &self,
        node: &NodeId,
        points: &[Point],
        series_tags: &[(SeriesKey, Tags)],
    ) -> Result<PathBuf, HintError> {
        let bytes = points_ipc(points, series_tags)
            .map_err(|reason| HintError::Damaged { path: self.node_dir(node), reason })?;
        self.keep(node, WRITE_EXTENSION, &bytes)
    }

    /// Keeps a delete for `node`, durably, after the hints already kept for it (blocking).
    pub fn store_delete(
        &self,
        node: &NodeId,
        requests: &[DeleteRequest],
    ) -> Result<PathBuf, HintError> {
        let bytes = serde_json::to_vec(requests)
            .map_err(|e| HintError::Damaged { path: self.node_dir(node), reason: e.to_string() })?;
        self.keep(node, DELETE_EXTENSION, &bytes)
    }

    /// Writes the next hint of `node` whole or not at all.
    fn keep(&self, node: &NodeId, extension: &str, bytes: &[u8]) -> Result<PathBuf, HintError> {
        let dir = self.node_dir(node);
        let io = |path: &Path| {
            let path = path.to_path_buf();
            move |source| HintError::Io { path, source }
        };
        fs::create_dir_all(&dir).map_err(io(&dir))?;
        let sequence = self.next_sequence.fetch_add(1, Ordering::Relaxed);
        let path = dir.join(format!("{sequence:020}.{extension}"));
        let temporary = dir.join(format!("{sequence:020}.tmp"));
        let mut file = fs::File::create(&temporary).map_err(io(&temporary))?;
        file.write_all(bytes).map_err(io(&temporary))?;
        file.sync_all().map_err(io(&temporary))?;
        fs::rename(&temporary, &path).map_err(io(&path))?;
        fs::File::open(&dir).and_then(|d| d.sync_all()).map_err(io(&dir))?;
        Ok(path)
    }

    /// The hints waiting, per node, oldest first.
    pub fn pending(&self) -> Result<HashMap<NodeId, Vec<PathBuf>>, HintError> {
        let mut out: HashMap<NodeId, Vec<PathBuf>> = HashMap::new();
        let entries = match fs::read_dir(&self.dir) {
            Ok(entries) => entries,
            Err(source) => return Err(HintError::Io { path: self.dir.clone(), source }),
        };
        for entry in entries.flatten() {
            let Some(node) = node_of_dir(&entry.file_name().to_string_lossy()) else {
                continue;
            };
            let Ok(files) = fs::read_dir(entry.path()) else { continue };
            let mut hints: Vec<PathBuf> = files
                .flatten()
                .map(|f| f.path())
                .filter(|p| {
                    p.extension().is_some_and(|e| e == WRITE_EXTENSION || e == DELETE_EXTENSION)
                })
                .collect();
            if hints.is_empty() {
                continue;
            }
            hints.sort();
            out.insert(node, hints);
        }
        Ok(out)
    }

    /// Reads one hint (blocking).
    pub fn read(path: &Path) -> Result<Hint, HintError> {
        let damaged = |reason: String| HintError::Damaged { path: path.to_path_buf(), reason };
        let bytes =
            fs::read(path).map_err(|source| HintError::Io { path: path.to_path_buf(), source })?;
        let missed = if path.extension().is_some_and(|e| e == DELETE_EXTENSION) {
            Missed::Delete(serde_json::from_slice(&bytes).map_err(|e| damaged(e.to_string()))?)
        } else {
            let (points, series_tags) = points_from_ipc(&bytes).map_err(damaged)?;
            Missed::Write { points, series_tags }
        };
        Ok(Hint { path: path.to_path_buf(), missed })
    }

    /// How long ago a hint was kept (blocking); `None` when that cannot be told.
    pub fn age(path: &Path) -> Option<std::time::Duration> {
        fs::metadata(path).ok()?.modified().ok()?.elapsed().ok()
    }

    /// Forgets a delivered hint (blocking).
    pub fn remove(path: &Path) -> Result<(), HintError> {
        fs::remove_file(path).map_err(|source| HintError::Io { path: path.to_path_buf(), source })
    }
}

/// Points and their series' tags as one Arrow IPC stream in `readings`' schema, the tags in
/// the schema's metadata: the form of a write hint and of the points a repair exchanges.
pub(crate) fn points_ipc(
    points: &[Point],
    series_tags: &[(SeriesKey, Tags)],
) -> Result<Vec<u8>, String> {
    let batch = points_to_batch(points).map_err(|e| e.to_string())?;
    let metadata = HashMap::from([(TAGS_KEY.to_string(), encode_tags(series_tags))]);
    let schema = Schema::new_with_metadata(batch.schema().fields().clone(), metadata);
    let batch = RecordBatch::try_new(Arc::new(schema.clone()), batch.columns().to_vec())
        .map_err(|e| e.to_string())?;
    let mut writer = StreamWriter::try_new(Vec::new(), &schema).map_err(|e| e.to_string())?;
    writer.write(&batch).map_err(|e| e.to_string())?;
    writer.finish().map_err(|e| e.to_string())?;
    writer.into_inner().map_err(|e| e.to_string())
}

/// What [`points_ipc`] wrote; refuses anything else with the reason.
pub(crate) type PointsAndTags = (Vec<Point>, Vec<(SeriesKey, Tags)>);

pub(crate) fn points_from_ipc(bytes: &[u8]) -> Result<PointsAndTags, String> {
    let reader = StreamReader::try_new(bytes, None).map_err(|e| e.to_string())?;
    let tags_text = reader.schema().metadata().get(TAGS_KEY).cloned().unwrap_or_default();
    let series_tags = decode_tags(&tags_text).map_err(|e| e.to_string())?;
    let mut points = Vec::new();
    for batch in reader {
        let batch = batch.map_err(|e| e.to_string())?;
        points.extend(batch_to_points(&batch).map_err(|e| e.to_string())?);
    }
    Ok((points, series_tags))
}

fn node_of_dir(name: &str) -> Option<NodeId> {
    if !name.len().is_multiple_of(2) {
        return None;
    }
    let bytes: Option<Vec<u8>> = (0..name.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(name.get(i..i + 2)?, 16).ok())
        .collect();
    String::from_utf8(bytes?).ok().map(NodeId::new)
}

fn sequence_of(path: &Path) -> Option<u64> {
    path.file_stem()?.to_str()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hints_are_kept_per_node_in_order_and_survive_reopening() {
        let dir = tempfile::tempdir().unwrap();
        let key = SeriesKey::new("s1", "temperature").unwrap();
        let point = |time| Point { series: key.clone(), time, value: time as f64 };
        let tags = vec![(key.clone(), Tags::from(vec![("site".to_string(), "n".to_string())]))];
        let store = HintStore::open(dir.path()).unwrap();
        let node = NodeId::new("node 2/ü");
        store.store(&node, &[point(1), point(2)], &tags).unwrap();
        store.store(&node, &[point(3)], &[]).unwrap();
        drop(store);

        let store = HintStore::open(dir.path()).unwrap();
        let pending = store.pending().unwrap();
        let files = &pending[&node];
        assert_eq!(files.len(), 2);
        let Missed::Write { points, series_tags } = HintStore::read(&files[0]).unwrap().missed
        else {
            panic!("a write hint")
        };
        assert_eq!(points.iter().map(|p| p.time).collect::<Vec<_>>(), [1, 2]);
        assert_eq!(series_tags, tags);
        assert!(matches!(
            HintStore::read(&files[1]).unwrap().missed,
            Missed::Write { points, .. } if points.len() == 1
        ));
        // Numbering continues after the hints already there.
        let third = store.store(&node, &[point(4)], &[]).unwrap();
        assert!(third > files[1]);
        HintStore::remove(&files[0]).unwrap();
        assert_eq!(store.pending().unwrap()[&node].len(), 2);

        fs::write(&files[1], b"not arrow").unwrap();
        assert!(matches!(HintStore::read(&files[1]), Err(HintError::Damaged { .. })));
    }

    #[test]
    fn deletes_wait_in_order_between_writes() {
        let dir = tempfile::tempdir().unwrap();
        let key = SeriesKey::new("s1", "temperature").unwrap();
        let store = HintStore::open(dir.path()).unwrap();
        let node = NodeId::new("node3");
        let delete = DeleteRequest {
            device_id: "s1".into(),
            metric: None,
            time: minitrue_common::TimeRange::new(0, 10),
        };
        store.store(&node, &[Point { series: key.clone(), time: 1, value: 1.0 }], &[]).unwrap();
        store.store_delete(&node, std::slice::from_ref(&delete)).unwrap();
        store.store(&node, &[Point { series: key, time: 2, value: 2.0 }], &[]).unwrap();
        let pending = store.pending().unwrap();
        let kinds: Vec<&'static str> = pending[&node]
            .iter()
            .map(|path| match HintStore::read(path).unwrap().missed {
                Missed::Write { .. } => "write",
                Missed::Delete(requests) => {
                    assert_eq!(requests, std::slice::from_ref(&delete));
                    "delete"
                }
            })
            .collect();
        assert_eq!(kinds, ["write", "delete", "write"]);
        assert!(HintStore::age(&pending[&node][0]).is_some());
        fs::write(&pending[&node][1], b"[{").unwrap();
        assert!(matches!(HintStore::read(&pending[&node][1]), Err(HintError::Damaged { .. })));
    }
}
