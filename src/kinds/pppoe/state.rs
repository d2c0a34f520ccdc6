//! What wispctl remembers of a router between runs, in `STATE_DIR/pppoe/<router>.json` (mode
//! 0600): the keyed hash of every password it applied (never a password), and the kicks an
//! apply owed but could not make.
//!
//! Observe reads it, apply updates it. It holds nothing the router holds: losing the file only
//! costs hidden passwords being set once more, without a kick.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::secret::SecretHash;

/// What wispctl remembers of one router.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct RouterState {
    /// Keyed hash of the last applied password, by secret name.
    pub passwords: BTreeMap<String, SecretHash>,
    /// Secrets changed by an apply that could not disconnect their session: the next run
    /// kicks them even though nothing differs any more.
    #[serde(default)]
    pub pending_kicks: BTreeSet<String>,
}

/// The state files of the routers, in one folder.
#[derive(Debug, Clone)]
pub struct StateDir(PathBuf);

impl StateDir {
    /// The folder `dir` (created on the first save).
    pub fn new(dir: PathBuf) -> Self {
        StateDir(dir)
    }

    fn path(&self, router: &str) -> PathBuf {
        self.0.join(format!("{router}.json"))
    }

    /// The router's state; empty when there is none yet, or it cannot be read (it is rebuilt
    /// by the next apply).
    pub fn read(&self, router: &str) -> RouterState {
        std::fs::read(self.path(router))
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or_default()
    }

    /// Saves the router's state atomically. A failure is logged, not returned: the router has
    /// already changed, and the outcome of each change stays true. Temporary files an earlier
    /// save left (its process killed before the rename) are removed.
    pub fn save(&self, router: &str, state: &RouterState) {
        let bytes = serde_json::to_vec_pretty(state).expect("state serialises");
        if let Err(e) = std::fs::create_dir_all(&self.0)
            .and_then(|()| crate::files::write_atomic(&self.path(router), &bytes, 0o600))
        {
            tracing::error!(router, "cannot save the router's state: {e}");
            return;
        }
        self.sweep(router);
    }

    /// Removes the temporary files of this router's state left by a process killed midway
    /// through a save (only an apply saves, under the apply lock: none is in use). For apply
    /// only: `plan` writes nothing.
    pub fn sweep(&self, router: &str) {
        let prefix = format!("{}{router}.json-", crate::files::TEMP_PREFIX);
        let Ok(entries) = std::fs::read_dir(&self.0) else {
            return;
        };
        for e in entries.flatten() {
            if e.file_name().to_string_lossy().starts_with(&prefix) {
                let _ = std::fs::remove_file(e.path());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_save_removes_what_a_killed_save_left() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = StateDir::new(tmp.path().to_path_buf());
        let left = tmp.path().join(".wispctl-tmp-r.json-0123456789ab");
        let other = tmp.path().join(".wispctl-tmp-r2.json-0123456789ab");
        std::fs::write(&left, "{}").unwrap();
        std::fs::write(&other, "{}").unwrap();
        dir.save("r", &RouterState::default());
        assert!(!left.exists());
        assert!(
            other.exists(),
            "another router's file is its own save's business"
        );
        assert!(dir.path("r").exists());
    }
}
