//! Tags of each series (`site=north`, `floor=2`, …): metadata that topic templates and line
//! protocol attach to a series, shown by the `devices` table.
//!
//! Tags change rarely (a new device appears, a device moves), so they live outside the WAL in
//! an append-only JSON-lines file `<data_dir>/series-tags.jsonl`, one `{"series":[device,
//! metric],"tags":[[k,v],…]}` per change, last line per series wins. A change is appended and
//! synced before the write that carried it is acknowledged. At start-up a torn last line is
//! dropped, and the file is rewritten compactly when it holds many superseded lines.

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use minitrue_common::SeriesKey;
use parking_lot::{Mutex, RwLock};
use serde::{Deserialize, Serialize};

use crate::error::{Result, StorageError};

/// Tag pairs of one series, sorted by key, keys unique.
pub type Tags = Arc<[(String, String)]>;

const FILE_NAME: &str = "series-tags.jsonl";

#[derive(Serialize, Deserialize)]
struct Line {
    series: (String, String),
    tags: Vec<(String, String)>,
}

/// The tags of every series that has any, backed by the JSON-lines file.
pub struct SeriesTagStore {
    path: PathBuf,
    tags: RwLock<HashMap<SeriesKey, Tags>>,
    /// Appends are serialised; the file handle is opened for appending.
    file: Mutex<File>,
}

/// What opening the store found.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct TagRecovery {
    pub series: usize,
    /// Lines that did not parse (a torn tail after a crash; anything else is damage).
    pub lines_skipped: usize,
}

impl SeriesTagStore {
    /// Opens (or creates) the store in `data_dir`. Blocking file I/O.
    pub fn open(data_dir: &Path) -> Result<(SeriesTagStore, TagRecovery)> {
        let path = data_dir.join(FILE_NAME);
        let io = |source| StorageError::Io { path: path.clone(), source };
        let mut tags = HashMap::new();
        let mut recovery = TagRecovery::default();
        let mut lines = 0usize;
        match File::open(&path) {
            Ok(file) => {
                for line in BufReader::new(file).split(b'\n') {
                    let line = line.map_err(io)?;
                    if line.is_empty() {
                        continue;
                    }
                    lines += 1;
                    match parse_line(&line) {
                        Some((key, value)) => {
                            tags.insert(key, value);
                        }
                        None => recovery.lines_skipped += 1,
                    }
                }
            }
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => {}
            Err(error) => return Err(io(error)),
        }
        recovery.series = tags.len();
        // Rewrite when superseded or damaged lines dominate (or a torn tail would otherwise
        // glue itself to the next append).
        if recovery.lines_skipped > 0 || lines > 2 * tags.len() + 1024 {
            rewrite(&path, &tags).map_err(io)?;
        }
        let file = OpenOptions::new().create(true).append(true).open(&path).map_err(io)?;
        Ok((SeriesTagStore { path, tags: RwLock::new(tags), file: Mutex::new(file) }, recovery))
    }

    /// The entries of `updates` whose tags differ from what is stored.
    pub fn changed(&self, updates: &[(SeriesKey, Tags)]) -> Vec<(SeriesKey, Tags)> {
        let tags = self.tags.read();
        let mut changed: Vec<(SeriesKey, Tags)> = Vec::new();
        for (key, value) in updates {
            let normalized = normalize(value);
            if tags.get(key) != Some(&normalized) {
                changed.retain(|(k, _)| k != key);
                changed.push((key.clone(), normalized));
            }
        }
        changed
    }

    /// Appends and syncs `changes` (from [`Self::changed`]), then makes them visible.
    /// Blocking file I/O.
    pub fn apply(&self, changes: Vec<(SeriesKey, Tags)>) -> Result<()> {
        if changes.is_empty() {
            return Ok(());
        }
        let mut text = Vec::new();
        for (key, value) in &changes {
            let line = Line {
                series: (key.device_id().to_string(), key.metric().to_string()),
                tags: value.to_vec(),
            };
            serde_json::to_writer(&mut text, &line).map_err(|e| StorageError::Io {
                path: self.path.clone(),
                source: std::io::Error::other(e),
            })?;
            text.push(b'\n');
        }
        {
            let mut file = self.file.lock();
            let io = |source| StorageError::Io { path: self.path.clone(), source };
            file.write_all(&text).map_err(io)?;
            file.sync_data().map_err(io)?;
        }
        let mut tags = self.tags.write();
        for (key, value) in changes {
            tags.insert(key, value);
        }
        Ok(())
    }

    pub fn get(&self, key: &SeriesKey) -> Option<Tags> {
        self.tags.read().get(key).cloned()
    }

    pub fn len(&self) -> usize {
        self.tags.read().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Sorted by key, last value per key kept.
fn normalize(tags: &Tags) -> Tags {
    if tags.windows(2).all(|w| w[0].0 < w[1].0) {
        return tags.clone();
    }
    let mut sorted: Vec<(String, String)> = Vec::with_capacity(tags.len());
    for (key, value) in tags.iter() {
        match sorted.iter_mut().find(|(k, _)| k == key) {
            Some(entry) => entry.1 = value.clone(),
            None => sorted.push((key.clone(), value.clone())),
        }
    }
    sorted.sort_by(|a, b| a.0.cmp(&b.0));
    sorted.into()
}

fn parse_line(line: &[u8]) -> Option<(SeriesKey, Tags)> {
    let line: Line = serde_json::from_slice(line).ok()?;
    let key = SeriesKey::new(&line.series.0, &line.series.1).ok()?;
    Some((key, normalize(&line.tags.into())))
}

fn rewrite(path: &Path, tags: &HashMap<SeriesKey, Tags>) -> std::io::Result<()> {
    let temporary = path.with_extension("jsonl.tmp");
    {
        let mut file = File::create(&temporary)?;
        let mut text = Vec::new();
        for (key, value) in tags {
            let line = Line {
                series: (key.device_id().to_string(), key.metric().to_string()),
                tags: value.to_vec(),
            };
            serde_json::to_writer(&mut text, &line).map_err(std::io::Error::other)?;
            text.push(b'\n');
        }
        file.write_all(&text)?;
        file.sync_all()?;
    }
    std::fs::rename(&temporary, path)?;
    if let Some(dir) = path.parent() {
        File::open(dir)?.sync_all()?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(device: &str) -> SeriesKey {
        SeriesKey::new(device, "temperature").unwrap()
    }

    fn tags(pairs: &[(&str, &str)]) -> Tags {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect::<Vec<_>>().into()
    }

    #[test]
    fn changes_survive_reopen_and_last_change_wins() {
        let dir = tempfile::tempdir().unwrap();
        let (store, _) = SeriesTagStore::open(dir.path()).unwrap();
        let update = vec![(key("a"), tags(&[("site", "north"), ("floor", "2")]))];
        let changed = store.changed(&update);
        assert_eq!(changed.len(), 1);
        store.apply(changed).unwrap();
        assert!(store.changed(&update).is_empty(), "same tags again are no change");
        store.apply(store.changed(&[(key("a"), tags(&[("site", "south")]))])).unwrap();
        drop(store);

        let (store, recovery) = SeriesTagStore::open(dir.path()).unwrap();
        assert_eq!(recovery, TagRecovery { series: 1, lines_skipped: 0 });
        assert_eq!(store.get(&key("a")).unwrap(), tags(&[("site", "south")]));
        assert_eq!(store.get(&key("b")), None);
    }

    #[test]
    fn keys_are_sorted_and_unique() {
        let dir = tempfile::tempdir().unwrap();
        let (store, _) = SeriesTagStore::open(dir.path()).unwrap();
        store
            .apply(store.changed(&[(key("a"), tags(&[("z", "1"), ("a", "2"), ("z", "3")]))]))
            .unwrap();
        assert_eq!(store.get(&key("a")).unwrap(), tags(&[("a", "2"), ("z", "3")]));
    }

    #[test]
    fn a_torn_tail_is_dropped_and_appends_continue_on_a_clean_line() {
        let dir = tempfile::tempdir().unwrap();
        let (store, _) = SeriesTagStore::open(dir.path()).unwrap();
        store.apply(store.changed(&[(key("a"), tags(&[("site", "x")]))])).unwrap();
        drop(store);
        let path = dir.path().join(FILE_NAME);
        let mut file = OpenOptions::new().append(true).open(&path).unwrap();
        file.write_all(br#"{"series":["b","temperature"],"ta"#).unwrap();
        drop(file);

        let (store, recovery) = SeriesTagStore::open(dir.path()).unwrap();
        assert_eq!(recovery, TagRecovery { series: 1, lines_skipped: 1 });
        store.apply(store.changed(&[(key("c"), tags(&[("site", "y")]))])).unwrap();
        drop(store);
        let (store, recovery) = SeriesTagStore::open(dir.path()).unwrap();
        assert_eq!(recovery, TagRecovery { series: 2, lines_skipped: 0 });
        assert_eq!(store.get(&key("c")).unwrap(), tags(&[("site", "y")]));
    }
}
