//! The apply lock: two applies never run at once.
//!
//! An OS file lock (flock) on a file in the state directory, which also records the holder
//! (host, pid, start time, command) so that a waiting apply can name it. The kernel drops the
//! lock when its process dies; the record it leaves is then reported and taken over.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use tokio::time::Instant;

use serde::{Deserialize, Serialize};

/// Who holds (or held) the lock.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Holder {
    /// Host name.
    pub host: String,
    /// Process id.
    pub pid: u32,
    /// RFC 3339 start time.
    pub started_at: String,
    /// The command line, for people.
    pub command: String,
}

impl std::fmt::Display for Holder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "pid {} on {} since {} ({})",
            self.pid, self.host, self.started_at, self.command
        )
    }
}

/// The lock could not be taken.
#[derive(Debug, thiserror::Error)]
pub enum LockError {
    /// Another apply holds it.
    #[error("another apply holds the lock {}: {}; waited {waited:?}", path.display(), holder.as_ref().map_or("holder unknown".to_string(), |h| h.to_string()))]
    Held {
        /// The lock file.
        path: PathBuf,
        /// Its holder, when the record could be read.
        holder: Option<Holder>,
        /// How long this apply waited.
        waited: Duration,
    },
    /// The lock file could not be used.
    #[error("lock file {}: {source}", path.display())]
    Io {
        /// The lock file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
}

/// A held apply lock; released on drop.
pub struct ApplyLock {
    file: File,
    /// A record left by a holder that did not release the lock, reported to the operator.
    pub taken_over: Option<Holder>,
}

impl ApplyLock {
    /// Takes the lock at `path`, waiting up to `timeout` for a holder to finish (polling, so
    /// a runtime thread is never blocked).
    pub async fn acquire(
        path: &Path,
        timeout: Duration,
        command: &str,
    ) -> Result<ApplyLock, LockError> {
        ApplyLock::take(path, timeout, command, false).await
    }

    /// Takes the lock at `path` shared: other shared holders (the controller's reconciles of
    /// other targets) go on, an exclusive holder (a hand-run apply) waits for all of them,
    /// and they for it. The record names the last shared holder that took it.
    pub async fn acquire_shared(
        path: &Path,
        timeout: Duration,
        command: &str,
    ) -> Result<ApplyLock, LockError> {
        ApplyLock::take(path, timeout, command, true).await
    }

    async fn take(
        path: &Path,
        timeout: Duration,
        command: &str,
        shared: bool,
    ) -> Result<ApplyLock, LockError> {
        let io = |source| LockError::Io {
            path: path.to_path_buf(),
            source,
        };
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(io)?;
        }
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .open(path)
            .map_err(io)?;
        let start = Instant::now();
        let try_lock = |f: &File| {
            if shared {
                f.try_lock_shared()
            } else {
                f.try_lock()
            }
        };
        'wait: loop {
            match try_lock(&file) {
                Ok(()) => break 'wait,
                Err(std::fs::TryLockError::WouldBlock) => {
                    if start.elapsed() >= timeout {
                        // The holder writes its record just after taking the lock: give it a
                        // moment so the error can name it, and take the lock if it frees up.
                        let grace = Instant::now();
                        loop {
                            if let Some(h) = read_holder(&mut file) {
                                return Err(LockError::Held {
                                    path: path.to_path_buf(),
                                    holder: Some(h),
                                    waited: start.elapsed(),
                                });
                            }
                            if grace.elapsed() > Duration::from_millis(500) {
                                return Err(LockError::Held {
                                    path: path.to_path_buf(),
                                    holder: None,
                                    waited: start.elapsed(),
                                });
                            }
                            tokio::time::sleep(Duration::from_millis(10)).await;
                            if try_lock(&file).is_ok() {
                                break 'wait;
                            }
                        }
                    }
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                Err(std::fs::TryLockError::Error(e)) => return Err(io(e)),
            }
        }
        // We hold the lock: any record left is from a holder that died or did not clean up.
        let taken_over = read_holder(&mut file);
        if let Some(h) = &taken_over {
            let alive = h.host == hostname() && pid_alive(h.pid);
            tracing::warn!(
                "taking over the apply lock left by {h}{}",
                if alive { "" } else { " (process is gone)" }
            );
        }
        let me = Holder {
            host: hostname(),
            pid: std::process::id(),
            started_at: humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string(),
            command: command.into(),
        };
        let record = serde_json::to_vec(&me).expect("holder serialises");
        // Overwrite in place, then cut: a reader never sees an empty file while we hold it.
        file.rewind().map_err(io)?;
        file.write_all(&record).map_err(io)?;
        file.set_len(record.len() as u64).map_err(io)?;
        file.sync_all().map_err(io)?;
        Ok(ApplyLock { file, taken_over })
    }
}

impl Drop for ApplyLock {
    fn drop(&mut self) {
        // Clear the record first, so the next holder does not report a takeover; only our own
        // (another process holding the lock shared may have written its record since).
        if read_holder(&mut self.file).is_none_or(|h| h.pid == std::process::id()) {
            let _ = self.file.set_len(0);
            let _ = self.file.sync_all();
        }
        let _ = self.file.unlock();
    }
}

/// Who holds (or last held) the lock at `path`, as its record says.
pub fn holder(path: &Path) -> Option<Holder> {
    let mut file = File::open(path).ok()?;
    read_holder(&mut file)
}

fn read_holder(file: &mut File) -> Option<Holder> {
    let mut s = String::new();
    file.rewind().ok()?;
    file.read_to_string(&mut s).ok()?;
    serde_json::from_str(&s).ok()
}

/// This machine's host name.
pub fn hostname() -> String {
    gethostname::gethostname().to_string_lossy().into_owned()
}

/// Whether a process of this machine still runs. wispctl runs on Linux (pppd, the VPS): its
/// `/proc` lists every live process, including other users' (where `kill(pid, 0)` would need
/// privileges to tell).
fn pid_alive(pid: u32) -> bool {
    pid != 0 && std::path::Path::new("/proc").join(pid.to_string()).exists()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The controller holds the lock shared while it writes: a hand-run apply waits for it and
    /// names it; a second shared holder goes on; the exclusive one gets it once they are done.
    #[tokio::test(start_paused = true)]
    async fn shared_holders_exclude_an_apply_that_names_them() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("apply.lock");
        let controller = ApplyLock::acquire_shared(&p, Duration::ZERO, "wispctl reconcile (pid 7)")
            .await
            .unwrap();
        let other = ApplyLock::acquire_shared(&p, Duration::ZERO, "wispctl reconcile (pid 7)")
            .await
            .expect("shared holders go on side by side");
        let err = match ApplyLock::acquire(&p, Duration::from_millis(120), "wispctl apply").await {
            Err(e) => e.to_string(),
            Ok(_) => panic!("an exclusive lock taken while the controller writes"),
        };
        assert!(err.contains("wispctl reconcile (pid 7)"), "{err}");
        drop(other);
        assert!(
            ApplyLock::acquire(&p, Duration::from_millis(120), "wispctl apply")
                .await
                .is_err(),
            "one shared holder left still excludes it"
        );
        drop(controller);
        let apply = ApplyLock::acquire(&p, Duration::ZERO, "wispctl apply")
            .await
            .unwrap();
        let refused = ApplyLock::acquire_shared(&p, Duration::from_millis(120), "reconcile").await;
        assert!(
            refused.is_err_and(|e| e.to_string().contains("wispctl apply")),
            "the controller waits for a hand-run apply and names it"
        );
        drop(apply);
    }

    #[tokio::test(start_paused = true)]
    async fn second_holder_times_out_naming_the_first() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("apply.lock");
        let first = ApplyLock::acquire(&p, Duration::ZERO, "wispctl apply one")
            .await
            .unwrap();
        let err = match ApplyLock::acquire(&p, Duration::from_millis(120), "two").await {
            Err(e) => e,
            Ok(_) => panic!("second lock taken while the first is held"),
        };
        let msg = err.to_string();
        assert!(
            msg.contains(&format!("pid {}", std::process::id())),
            "{msg}"
        );
        assert!(msg.contains("wispctl apply one"), "{msg}");
        drop(first);
        let again = ApplyLock::acquire(&p, Duration::ZERO, "three")
            .await
            .unwrap();
        assert!(
            again.taken_over.is_none(),
            "a clean release leaves no record"
        );
    }

    #[tokio::test]
    async fn record_of_a_dead_process_is_taken_over() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("apply.lock");
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let dead = child.id();
        child.wait().unwrap();
        let stale = Holder {
            host: hostname(),
            pid: dead,
            started_at: "2026-01-01T00:00:00Z".into(),
            command: "wispctl apply".into(),
        };
        std::fs::write(&p, serde_json::to_vec(&stale).unwrap()).unwrap();
        let lock = ApplyLock::acquire(&p, Duration::ZERO, "next")
            .await
            .unwrap();
        assert_eq!(lock.taken_over, Some(stale));
        assert!(!pid_alive(dead));
    }
}
