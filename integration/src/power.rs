//! Power loss, simulated: nodes run with the `fsync_tracker` library
//! preloaded (see `powerloss/fsync_tracker.c`), which logs what of each file
//! was synced. After the nodes are killed, [`lose_unsynced`] cuts every file
//! of a data directory back to its last synced size and deletes files never
//! synced: what a power failure leaves, as opposed to kill -9, which leaves
//! the page cache (and so every unsynced write) intact.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// The library, built by this crate's build script.
pub const TRACKER: &str = env!("FSYNC_TRACKER_LIB");

/// The environment that makes a node log its syncs to `log`.
pub fn tracked_env(log: &Path) -> Vec<(String, String)> {
    vec![
        ("LD_PRELOAD".into(), TRACKER.into()),
        ("FSYNC_TRACK_LOG".into(), log.display().to_string()),
    ]
}

/// What a simulated power loss took.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Lost {
    /// Files cut back to their last synced size, and the bytes cut.
    pub files_cut: usize,
    pub bytes_cut: u64,
    /// Files created and never synced, deleted.
    pub files_deleted: usize,
}

/// Applies a power loss to `dir` (whose processes must be dead), from the
/// sync log `log`.
pub fn lose_unsynced(log: &Path, dir: &Path) -> Lost {
    // Path -> size at its last sync (None: created, never synced).
    let mut synced: HashMap<PathBuf, Option<u64>> = HashMap::new();
    let text = std::fs::read_to_string(log).unwrap_or_default();
    for line in text.lines() {
        let fields: Vec<&str> = line.split('\t').collect();
        match fields.as_slice() {
            ["create", path] => {
                synced.insert(PathBuf::from(path), None);
            }
            ["sync", path, size] => {
                if let Ok(size) = size.parse() {
                    synced.insert(PathBuf::from(path), Some(size));
                }
            }
            ["rename", from, to] => match synced.remove(Path::new(from)) {
                Some(state) => {
                    synced.insert(PathBuf::from(to), state);
                }
                None => {
                    synced.remove(Path::new(to));
                }
            },
            ["unlink", path] => {
                synced.remove(Path::new(path));
            }
            _ => {}
        }
    }
    let mut lost = Lost::default();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(current) = pending.pop() {
        let Ok(entries) = std::fs::read_dir(&current) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            let Ok(meta) = entry.metadata() else { continue };
            if meta.is_dir() {
                pending.push(path);
                continue;
            }
            match synced.get(&path) {
                Some(Some(size)) if meta.len() > *size => {
                    let file = std::fs::OpenOptions::new()
                        .write(true)
                        .open(&path)
                        .expect("open a file to cut it");
                    file.set_len(*size).expect("cut a file");
                    lost.files_cut += 1;
                    lost.bytes_cut += meta.len() - size;
                }
                Some(None) => {
                    std::fs::remove_file(&path).expect("delete an unsynced file");
                    lost.files_deleted += 1;
                    lost.bytes_cut += meta.len();
                }
                _ => {}
            }
        }
    }
    lost
}
