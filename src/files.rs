//! Writing files the way a router's config deserves: a temporary file in the same folder,
//! fsync, the mode set before the rename, rename over the old file, fsync of the folder.
//! A crash at any point leaves either the old file or the new one, never half of one.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// Prefix of the temporary files; observers skip names that start with a dot.
pub const TEMP_PREFIX: &str = ".wispctl-tmp-";

/// Writes `bytes` to `path` atomically with `mode` (such as 0o600).
pub fn write_atomic(path: &Path, bytes: &[u8], mode: u32) -> io::Result<()> {
    write_atomic_with(path, bytes, mode, || {
        #[cfg(feature = "lab")]
        if let Some(hook) = BEFORE_RENAME.get() {
            hook();
        }
        Ok(())
    })
}

/// Lab only: a function every [`write_atomic`] of this process runs once its data is durable
/// and before the rename (the lab's crash points, [`crate::lab::twin::crash`]). Set once.
#[cfg(feature = "lab")]
static BEFORE_RENAME: std::sync::OnceLock<fn()> = std::sync::OnceLock::new();

/// Lab only: sets the hook run before every rename of [`write_atomic`] (once per process).
#[cfg(feature = "lab")]
pub fn set_before_rename_hook(hook: fn()) {
    let _ = BEFORE_RENAME.set(hook);
}

/// [`write_atomic`] with a hook run after the data is durable and before the rename. Tests use
/// the hook to interrupt a write; on any error the temporary file is removed and the old file
/// is left as it was.
pub fn write_atomic_with(
    path: &Path,
    bytes: &[u8],
    mode: u32,
    before_rename: impl FnOnce() -> io::Result<()>,
) -> io::Result<()> {
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let tmp = temp_path(dir, path)?;
    let result = (|| {
        let mut f = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode)
            .open(&tmp)?;
        f.write_all(bytes)?;
        // The umask may have narrowed the mode at creation; set it exactly.
        f.set_permissions(fs::Permissions::from_mode(mode))?;
        f.sync_all()?;
        drop(f);
        before_rename()?;
        fs::rename(&tmp, path)?;
        File::open(dir)?.sync_all()
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

/// Removes a file and makes the removal durable.
pub fn remove_durable(path: &Path) -> io::Result<()> {
    fs::remove_file(path)?;
    if let Some(dir) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        File::open(dir)?.sync_all()?;
    }
    Ok(())
}

fn temp_path(dir: &Path, target: &Path) -> io::Result<PathBuf> {
    let mut rnd = [0u8; 6];
    getrandom::fill(&mut rnd).map_err(|e| io::Error::other(e.to_string()))?;
    let name = target
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    Ok(dir.join(format!("{TEMP_PREFIX}{name}-{}", hex::encode(rnd))))
}

/// The permission bits of a file (`mode & 0o7777`).
pub fn mode_of(meta: &fs::Metadata) -> u32 {
    meta.permissions().mode() & 0o7777
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_with_exact_mode_despite_umask() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("f");
        write_atomic(&p, b"new", 0o600).unwrap();
        assert_eq!(fs::read(&p).unwrap(), b"new");
        assert_eq!(mode_of(&fs::metadata(&p).unwrap()), 0o600);
    }

    #[test]
    fn interrupted_before_rename_leaves_old_file_and_no_temp() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("chap-secrets");
        fs::write(&p, "old content\n").unwrap();
        let err = write_atomic_with(&p, b"new content\n", 0o600, || {
            Err(io::Error::other("power cut"))
        })
        .unwrap_err();
        assert_eq!(err.to_string(), "power cut");
        assert_eq!(fs::read_to_string(&p).unwrap(), "old content\n");
        let names: Vec<_> = fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names.len(), 1, "temp file left behind: {names:?}");
    }
}
