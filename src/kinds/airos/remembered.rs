//! Which credential worked, per antenna, kept in the state directory
//! (`airos/<group>.credentials.json`, mode 0600) so that the next run tries it first: a keyed
//! hash of user and password per antenna host, never a password.
//!
//! Observe reads it; only apply writes it (under the apply lock): `plan` and `drift` write
//! nothing. What it does not do: decide the order of the logins ([`super::login`]).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::files::write_atomic;
use crate::secret::HashKey;
use crate::ssh::Credential;

/// The file of a group's remembered credentials.
pub fn path(state_dir: &Path, group: &str) -> PathBuf {
    state_dir
        .join("airos")
        .join(format!("{group}.credentials.json"))
}

/// The keyed hash that stands for a credential in the state directory.
pub fn credential_id(key: &HashKey, c: &Credential) -> String {
    let mut data = c.user.as_bytes().to_vec();
    data.push(0);
    data.extend_from_slice(c.password.expose().as_bytes());
    key.digest("airos-credential", &data)
}

/// The stored ids, by antenna host (empty when there is no readable file).
fn read_ids(path: &Path) -> BTreeMap<String, String> {
    std::fs::read(path)
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or_default()
}

/// Which credential worked last, by antenna host, as positions in `credentials` (an entry
/// whose credential is no longer configured is dropped). Reads only.
pub fn read(
    state_dir: &Path,
    key: &HashKey,
    group: &str,
    credentials: &[Credential],
) -> BTreeMap<String, usize> {
    let ids: Vec<String> = credentials.iter().map(|c| credential_id(key, c)).collect();
    read_ids(&path(state_dir, group))
        .into_iter()
        .filter_map(|(host, id)| Some((host, ids.iter().position(|i| *i == id)?)))
        .collect()
}

/// Records which credential worked (`learned`: positions in `credentials`, by host), keeping
/// the other hosts' entries. Writes only when something changed. Temporary files of this
/// group's file that an earlier apply left (killed before its rename) are removed either way.
///
/// # Warning
/// This writes: only apply calls it (under the apply lock), never a read-only run.
pub fn write(
    state_dir: &Path,
    key: &HashKey,
    group: &str,
    credentials: &[Credential],
    learned: &BTreeMap<String, usize>,
) -> std::io::Result<()> {
    let path = path(state_dir, group);
    sweep(&path);
    let mut all = read_ids(&path);
    let before = all.clone();
    all.extend(
        learned
            .iter()
            .filter_map(|(host, i)| Some((host.clone(), credential_id(key, credentials.get(*i)?)))),
    );
    if all == before {
        return Ok(());
    }
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let json = serde_json::to_vec_pretty(&all).map_err(std::io::Error::other)?;
    write_atomic(&path, &json, 0o600)?;
    // Again: a save killed between these two calls leaves nothing either.
    sweep(&path);
    Ok(())
}

/// Removes the temporary files `write_atomic` leaves next to `path` when its process is killed
/// before the rename (only apply writes here, under the apply lock: none is in use).
fn sweep(path: &Path) {
    let (Some(dir), Some(name)) = (path.parent(), path.file_name()) else {
        return;
    };
    let prefix = format!("{}{}-", crate::files::TEMP_PREFIX, name.to_string_lossy());
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        if e.file_name().to_string_lossy().starts_with(&prefix) {
            let _ = std::fs::remove_file(e.path());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::secret::Secret;

    fn cred(user: &str, pw: &str) -> Credential {
        Credential {
            user: user.into(),
            password: Secret::new(pw),
        }
    }

    #[test]
    fn positions_round_trip_as_keyed_hashes_and_a_dropped_credential_is_forgotten() {
        let dir = tempfile::tempdir().unwrap();
        let key = HashKey::from_bytes([9; 32]);
        let creds = vec![cred("ubnt", "first-pw"), cred("ubnt", "second-pw")];
        assert!(read(dir.path(), &key, "g", &creds).is_empty());
        let learned = BTreeMap::from([("10.0.0.1".to_string(), 1), ("10.0.0.2".into(), 0)]);
        write(dir.path(), &key, "g", &creds, &learned).unwrap();
        assert_eq!(read(dir.path(), &key, "g", &creds), learned);
        let text = std::fs::read_to_string(path(dir.path(), "g")).unwrap();
        assert!(
            !text.contains("first-pw") && !text.contains("second-pw"),
            "{text}"
        );
        // The second credential is gone from the inventory: its antennas start from the top.
        let now = vec![cred("ubnt", "first-pw"), cred("ubnt", "third-pw")];
        assert_eq!(
            read(dir.path(), &key, "g", &now),
            BTreeMap::from([("10.0.0.2".to_string(), 0)])
        );
        // Another host learned later: the first ones are kept.
        let more = BTreeMap::from([("10.0.0.3".to_string(), 1)]);
        write(dir.path(), &key, "g", &now, &more).unwrap();
        assert_eq!(
            read(dir.path(), &key, "g", &now),
            BTreeMap::from([("10.0.0.2".to_string(), 0), ("10.0.0.3".to_string(), 1)])
        );
        assert_eq!(
            read(dir.path(), &key, "g", &creds),
            learned,
            "10.0.0.1's entry was kept"
        );
    }

    #[test]
    fn nothing_learned_writes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let key = HashKey::from_bytes([9; 32]);
        write(dir.path(), &key, "g", &[cred("u", "p")], &BTreeMap::new()).unwrap();
        assert!(!dir.path().join("airos").exists());
    }

    #[test]
    fn a_write_removes_what_a_killed_write_left_of_this_groups_file() {
        let dir = tempfile::tempdir().unwrap();
        let key = HashKey::from_bytes([9; 32]);
        let creds = vec![cred("ubnt", "first-pw")];
        let airos = dir.path().join("airos");
        std::fs::create_dir_all(&airos).unwrap();
        let left = airos.join(".wispctl-tmp-g.credentials.json-0123456789ab");
        let other = airos.join(".wispctl-tmp-g2.credentials.json-0123456789ab");
        std::fs::write(&left, "{}").unwrap();
        std::fs::write(&other, "{}").unwrap();
        let learned = BTreeMap::from([("10.0.0.1".to_string(), 0)]);
        write(dir.path(), &key, "g", &creds, &learned).unwrap();
        assert!(!left.exists());
        assert!(
            other.exists(),
            "another group's file is its own write's business"
        );
        // Nothing to change: still swept.
        std::fs::write(&left, "{}").unwrap();
        write(dir.path(), &key, "g", &creds, &learned).unwrap();
        assert!(!left.exists());
    }
}
