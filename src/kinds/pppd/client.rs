//! How wispctl reaches a host's pppd files: through the folder that stands for the host's `/`
//! (the real `/`, or a lab twin's folder). Reads say what is there (content and mode), writes
//! replace a file atomically with mode 0600, and `/etc/ppp` is locked while a host is written.
//!
//! Owns the paths under `/etc/ppp` and the folder lock. Does not decide what to read or write
//! ([`super::observe`] and [`super::apply`] do) and knows nothing of peer or chap-secrets syntax.

use std::collections::BTreeSet;
use std::fmt;
use std::fs::{File, TryLockError};
use std::io::ErrorKind;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::{PppdError, WriteError};
use crate::files::{TEMP_PREFIX, mode_of, remove_durable, write_atomic};
use crate::names::valid_name;

/// The mode of every file wispctl writes here: peer files and chap-secrets are root's only.
pub const FILE_MODE: u32 = 0o600;

/// How long an apply waits for another wispctl to release a host's `/etc/ppp`.
pub const LOCK_WAIT: Duration = Duration::from_secs(10);

/// How often the lock is tried again while waiting.
const LOCK_RETRY: Duration = Duration::from_millis(50);

/// A file or folder of `/etc/ppp` on a host. Displays as the path on the host, which is what
/// plans and reports name, whatever folder stands for the host's `/`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostFile {
    /// `/etc/ppp`.
    PppDir,
    /// `/etc/ppp/peers`.
    PeersDir,
    /// `/etc/ppp/peers/NAME` (a name [`valid_name`] accepts).
    Peer(String),
    /// `/etc/ppp/chap-secrets`.
    ChapSecrets,
    /// A temporary file an interrupted write left in `/etc/ppp` (or in `/etc/ppp/peers` when
    /// `in_peers`): its name starts with [`TEMP_PREFIX`].
    Leftover {
        /// In `/etc/ppp/peers` rather than `/etc/ppp`.
        in_peers: bool,
        /// The file's name.
        name: String,
    },
}

impl HostFile {
    /// The path relative to the host's `/`.
    fn relative(&self) -> PathBuf {
        match self {
            HostFile::PppDir => PathBuf::from("etc/ppp"),
            HostFile::PeersDir => PathBuf::from("etc/ppp/peers"),
            HostFile::Peer(name) => Path::new("etc/ppp/peers").join(name),
            HostFile::ChapSecrets => PathBuf::from("etc/ppp/chap-secrets"),
            HostFile::Leftover { in_peers, name } => {
                let dir = if *in_peers {
                    "etc/ppp/peers"
                } else {
                    "etc/ppp"
                };
                Path::new(dir).join(name)
            }
        }
    }

    /// The folder a write of this file creates when it is missing.
    fn folder(&self) -> HostFile {
        match self {
            HostFile::Peer(_) => HostFile::PeersDir,
            _ => HostFile::PppDir,
        }
    }
}

impl fmt::Display for HostFile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "/{}", self.relative().display())
    }
}

/// What `/etc/ppp/peers` holds that could be a peer.
#[derive(Debug, Default)]
pub struct PeerListing {
    /// Regular files with a valid peer name.
    pub files: Vec<String>,
    /// Symbolic links with a valid peer name (never read or written through).
    pub symlinks: BTreeSet<String>,
}

/// The host's `/etc/ppp` locked for writing; unlocked when dropped.
#[derive(Debug)]
pub struct PppDirLock {
    _folder: File,
}

/// One host's files, under the folder that stands for its `/`.
#[derive(Debug, Clone)]
pub struct HostFiles {
    root: PathBuf,
}

impl HostFiles {
    /// The files under `root`.
    pub fn new(root: impl Into<PathBuf>) -> Self {
        HostFiles { root: root.into() }
    }

    /// The folder that stands for the host's `/`.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Where `file` is on this machine.
    pub fn path(&self, file: &HostFile) -> PathBuf {
        self.root.join(file.relative())
    }

    /// The names in `/etc/ppp/peers` that could be peers; none when the folder is missing.
    /// Temporary, hidden and odd names are never peers of wispctl's, and neither are folders.
    pub fn list_peers(&self) -> Result<PeerListing, PppdError> {
        let dir = self.path(&HostFile::PeersDir);
        let mut listing = PeerListing::default();
        let entries = match std::fs::read_dir(&dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == ErrorKind::NotFound => return Ok(listing),
            Err(e) => return Err(io_error(&dir, e)),
        };
        for e in entries {
            let e = e.map_err(|source| io_error(&dir, source))?;
            let name = e.file_name().to_string_lossy().into_owned();
            if valid_name(&name).is_err() {
                continue;
            }
            let kind = e
                .file_type()
                .map_err(|source| io_error(&e.path(), source))?;
            if kind.is_symlink() {
                listing.symlinks.insert(name);
            } else if kind.is_file() {
                listing.files.push(name);
            }
        }
        Ok(listing)
    }

    /// Temporary files an interrupted write left behind (a `kill -9` between writing and
    /// renaming), in `/etc/ppp` and `/etc/ppp/peers`: regular files whose name starts with
    /// [`TEMP_PREFIX`]. Never read: one may be a full copy of chap-secrets.
    pub fn list_leftovers(&self) -> Result<Vec<HostFile>, PppdError> {
        let mut found = Vec::new();
        for (folder, in_peers) in [(HostFile::PppDir, false), (HostFile::PeersDir, true)] {
            let dir = self.path(&folder);
            let entries = match std::fs::read_dir(&dir) {
                Ok(entries) => entries,
                Err(e) if e.kind() == ErrorKind::NotFound => continue,
                Err(e) => return Err(io_error(&dir, e)),
            };
            for e in entries {
                let e = e.map_err(|source| io_error(&dir, source))?;
                let name = e.file_name().to_string_lossy().into_owned();
                let is_file = e.file_type().is_ok_and(|t| t.is_file());
                if is_file && name.starts_with(TEMP_PREFIX) {
                    found.push(HostFile::Leftover { in_peers, name });
                }
            }
        }
        found.sort_by_key(|f| f.to_string());
        Ok(found)
    }

    /// Whether `file` is a regular file (not a link, not a folder).
    pub fn is_regular(&self, file: &HostFile) -> bool {
        std::fs::symlink_metadata(self.path(file)).is_ok_and(|m| m.file_type().is_file())
    }

    /// The file's bytes and mode, or `None` when it does not exist.
    pub fn read(&self, file: &HostFile) -> Result<Option<(Vec<u8>, u32)>, PppdError> {
        let path = self.path(file);
        match std::fs::read(&path) {
            Ok(bytes) => {
                let meta = std::fs::metadata(&path).map_err(|e| io_error(&path, e))?;
                Ok(Some((bytes, mode_of(&meta))))
            }
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(None),
            Err(e) => Err(io_error(&path, e)),
        }
    }

    /// The file as text (invalid UTF-8 replaced) and its mode, or `None` when it does not
    /// exist. For peer files, which pppd reads as text.
    pub fn read_text(&self, file: &HostFile) -> Result<Option<(String, u32)>, PppdError> {
        Ok(self
            .read(file)?
            .map(|(bytes, mode)| (String::from_utf8_lossy(&bytes).into_owned(), mode)))
    }

    /// Whether the file is a symbolic link.
    pub fn is_symlink(&self, file: &HostFile) -> bool {
        std::fs::symlink_metadata(self.path(file)).is_ok_and(|m| m.file_type().is_symlink())
    }

    /// Whether anything is at the file's path.
    pub fn exists(&self, file: &HostFile) -> bool {
        self.path(file).exists()
    }

    /// Replaces the file atomically with `bytes`, mode [`FILE_MODE`], creating its folder.
    pub fn write(&self, file: &HostFile, bytes: &[u8]) -> Result<(), WriteError> {
        let folder = file.folder();
        std::fs::create_dir_all(self.path(&folder)).map_err(|source| WriteError::CreateDir {
            dir: folder,
            source,
        })?;
        write_atomic(&self.path(file), bytes, FILE_MODE).map_err(|source| WriteError::Write {
            file: file.clone(),
            source,
        })
    }

    /// Removes the file durably.
    pub fn remove(&self, file: &HostFile) -> Result<(), WriteError> {
        remove_durable(&self.path(file)).map_err(|source| WriteError::Remove {
            file: file.clone(),
            source,
        })
    }

    /// Locks the host's `/etc/ppp` (creating it), waiting up to `wait` for another holder.
    ///
    /// Whatever state directory another wispctl uses, two never write one host at once. The
    /// wait sleeps on tokio's clock: it never blocks a runtime thread, and tests run it on a
    /// paused clock.
    pub async fn lock(&self, wait: Duration) -> Result<PppDirLock, WriteError> {
        let dir = self.path(&HostFile::PppDir);
        std::fs::create_dir_all(&dir).map_err(|source| WriteError::CreateDir {
            dir: HostFile::PppDir,
            source,
        })?;
        let folder = File::open(&dir).map_err(WriteError::OpenPppDir)?;
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            match folder.try_lock() {
                Ok(()) => return Ok(PppDirLock { _folder: folder }),
                Err(TryLockError::WouldBlock) if tokio::time::Instant::now() < deadline => {
                    tokio::time::sleep(LOCK_RETRY).await;
                }
                Err(TryLockError::WouldBlock) => return Err(WriteError::Locked { waited: wait }),
                Err(TryLockError::Error(e)) => return Err(WriteError::Lock(e)),
            }
        }
    }
}

fn io_error(path: &Path, source: std::io::Error) -> PppdError {
    PppdError::Io {
        path: path.to_path_buf(),
        source,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_files_display_as_paths_on_the_host() {
        assert_eq!(HostFile::PppDir.to_string(), "/etc/ppp");
        assert_eq!(HostFile::PeersDir.to_string(), "/etc/ppp/peers");
        assert_eq!(
            HostFile::Peer("connexa-node-2".into()).to_string(),
            "/etc/ppp/peers/connexa-node-2"
        );
        assert_eq!(HostFile::ChapSecrets.to_string(), "/etc/ppp/chap-secrets");
        let files = HostFiles::new("/srv/lab/hosts/vps");
        assert_eq!(
            files.path(&HostFile::ChapSecrets),
            Path::new("/srv/lab/hosts/vps/etc/ppp/chap-secrets")
        );
    }

    /// A second writer of the same host waits the whole bound, on tokio's clock, then gives up.
    #[tokio::test(start_paused = true)]
    async fn a_second_writer_waits_then_gives_up_after_its_bound() {
        let tmp = tempfile::tempdir().unwrap();
        let files = HostFiles::new(tmp.path());
        let _first = files.lock(LOCK_WAIT).await.unwrap();
        let start = tokio::time::Instant::now();
        let err = files.lock(LOCK_WAIT).await.unwrap_err();
        assert!(matches!(err, WriteError::Locked { waited } if waited == LOCK_WAIT));
        assert_eq!(
            err.to_string(),
            "another wispctl is writing /etc/ppp on this host (its folder lock is held)"
        );
        let waited = start.elapsed();
        assert!(waited >= LOCK_WAIT, "gave up after {waited:?}");
        assert!(waited < LOCK_WAIT + LOCK_RETRY * 2, "waited {waited:?}");
    }

    /// A second writer gets the lock as soon as the first lets go, within its bound.
    #[tokio::test(start_paused = true)]
    async fn a_second_writer_proceeds_once_the_first_lets_go() {
        let tmp = tempfile::tempdir().unwrap();
        let files = HostFiles::new(tmp.path());
        let first = files.lock(LOCK_WAIT).await.unwrap();
        let release = tokio::spawn(async move {
            tokio::time::sleep(Duration::from_secs(3)).await;
            drop(first);
        });
        let start = tokio::time::Instant::now();
        files.lock(LOCK_WAIT).await.unwrap();
        let waited = start.elapsed();
        assert!(waited >= Duration::from_secs(3), "did not wait: {waited:?}");
        assert!(waited < LOCK_WAIT, "waited {waited:?}");
        release.await.unwrap();
    }
}
