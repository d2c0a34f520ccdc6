//! Live-state snapshots: what `wispctl snapshot` read from every target, kept with no secret
//! value (each kind's secret-free form, [`crate::engine::Provider::snapshot_form`]), so that
//! `wispctl plan --snapshot FILE` plans where the devices cannot be reached (a hosted CI
//! runner) with the same diff code and no network at all.
//!
//! The file is JSON: `format_version`, the id of the hash key it was made under, an HMAC-SHA256
//! under that key of the exact bytes of `snapshot`, and `snapshot` itself (when and where it
//! was taken, and per target what was read or why not). One byte changed, or a snapshot made
//! under another key, is refused; so is one older than the allowed age, which the refusal
//! names. Written atomically with mode 0600.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::engine::Reading;
use crate::secret::HashKey;

/// Version of the snapshot file format.
pub const FORMAT_VERSION: u32 = 1;

/// The default `--max-age` of `plan --snapshot`.
pub const DEFAULT_MAX_AGE: Duration = Duration::from_secs(24 * 3600);

/// What a snapshot holds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Snapshot {
    /// When it was taken, RFC 3339.
    pub taken_at: String,
    /// The same, in seconds since the Unix epoch.
    pub taken_at_unix: u64,
    /// The host that took it.
    pub host: String,
    /// The wispctl that took it.
    pub wispctl_version: String,
    /// The digest of the desired-state files it was taken with.
    pub desired_digest: String,
    /// Per target address (`pppoe.balanceador`): what was read, or why not.
    pub targets: BTreeMap<String, Reading>,
}

/// The file around a snapshot.
#[derive(Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SnapshotFile {
    /// Always [`FORMAT_VERSION`].
    pub format_version: u32,
    /// The id of the hash key it was made under (never the key).
    pub hash_key_id: String,
    /// HMAC-SHA256 under that key of `format_version` and the exact bytes of `snapshot`.
    pub hmac: String,
    /// The snapshot.
    #[schemars(with = "Snapshot")]
    pub snapshot: Box<serde_json::value::RawValue>,
}

/// Why a snapshot cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    /// Unreadable.
    #[error("cannot read snapshot {path}: {source}")]
    Read {
        /// The file.
        path: String,
        /// Why.
        #[source]
        source: crate::untrusted::file::FileError,
    },
    /// Not a snapshot file.
    #[error("{path} is not a wispctl snapshot: {why}")]
    Format {
        /// The file.
        path: String,
        /// Why.
        why: String,
    },
    /// Another format version.
    #[error(
        "{path} is a snapshot of format version {found}; this wispctl reads version {FORMAT_VERSION}: take a new one"
    )]
    Version {
        /// The file.
        path: String,
        /// What it says.
        found: u32,
    },
    /// Made under another key.
    #[error(
        "{path} was made under another hash key (key id {found}, this one is {ours}): plan with the key of the host that took it (WISPCTL_HASH_KEY)"
    )]
    ForeignKey {
        /// The file.
        path: String,
        /// Its key id.
        found: String,
        /// Ours.
        ours: String,
    },
    /// Altered.
    #[error("{path} was altered since it was written (its HMAC does not match): refused")]
    Tampered {
        /// The file.
        path: String,
    },
    /// Taken in the future: the clock of the host that took it is wrong.
    #[error(
        "the snapshot in {path} says it was taken at {taken_at}, in the future: the clock of the host that took it is wrong; refused"
    )]
    Future {
        /// The file.
        path: String,
        /// When it says.
        taken_at: String,
    },
    /// Too old.
    #[error(
        "the snapshot in {path} was taken at {taken_at}, {age} ago, more than the allowed {max} (--max-age): refresh it, or raise --max-age"
    )]
    TooOld {
        /// The file.
        path: String,
        /// When.
        taken_at: String,
        /// Its age, in words.
        age: String,
        /// The limit, in words.
        max: String,
    },
}

impl Snapshot {
    /// A snapshot of `targets`, taken now on this host.
    pub fn new(targets: BTreeMap<String, Reading>, desired_digest: &str) -> Snapshot {
        let now = SystemTime::now();
        Snapshot {
            taken_at: humantime::format_rfc3339_seconds(now).to_string(),
            taken_at_unix: now.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs()),
            host: gethostname::gethostname().to_string_lossy().into_owned(),
            wispctl_version: env!("CARGO_PKG_VERSION").into(),
            desired_digest: desired_digest.into(),
            targets,
        }
    }

    /// How old it is now (zero when taken in the future).
    pub fn age(&self) -> Duration {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        Duration::from_secs(now.saturating_sub(self.taken_at_unix))
    }

    /// The file's text: the snapshot authenticated under `key`.
    pub fn to_file(&self, key: &HashKey) -> String {
        let body = serde_json::to_string_pretty(self).expect("snapshots serialise");
        let hmac = mac(key, &body);
        let file = SnapshotFile {
            format_version: FORMAT_VERSION,
            hash_key_id: key.id(),
            hmac,
            snapshot: serde_json::value::RawValue::from_string(body).expect("valid JSON"),
        };
        let mut text = serde_json::to_string(&file).expect("snapshot files serialise");
        text.push('\n');
        text
    }

    /// Writes it atomically, mode 0600.
    pub fn write(&self, path: &Path, key: &HashKey) -> std::io::Result<()> {
        crate::files::write_atomic(path, self.to_file(key).as_bytes(), 0o600)
    }

    /// Reads and checks a snapshot file: its version, its key, its HMAC, its age.
    pub fn read(path: &Path, key: &HashKey, max_age: Duration) -> Result<Snapshot, SnapshotError> {
        let shown = path.display().to_string();
        let bytes = crate::untrusted::file::read(path, MAX_BYTES, None).map_err(|source| {
            SnapshotError::Read {
                path: shown.clone(),
                source,
            }
        })?;
        Snapshot::check(&bytes, &shown, key, max_age)
    }

    /// Checks a snapshot file's bytes (see [`Snapshot::read`]).
    pub fn check(
        bytes: &[u8],
        path: &str,
        key: &HashKey,
        max_age: Duration,
    ) -> Result<Snapshot, SnapshotError> {
        let format = |why: String| SnapshotError::Format {
            path: path.to_string(),
            why,
        };
        let file: SnapshotFile =
            serde_json::from_slice(bytes).map_err(|e| format(e.to_string()))?;
        if file.format_version != FORMAT_VERSION {
            return Err(SnapshotError::Version {
                path: path.to_string(),
                found: file.format_version,
            });
        }
        if file.hash_key_id != key.id() {
            return Err(SnapshotError::ForeignKey {
                path: path.to_string(),
                found: file.hash_key_id,
                ours: key.id(),
            });
        }
        let body = file.snapshot.get();
        if !same(mac(key, body).as_bytes(), file.hmac.as_bytes()) {
            return Err(SnapshotError::Tampered {
                path: path.to_string(),
            });
        }
        let snapshot: Snapshot = serde_json::from_str(body).map_err(|e| format(e.to_string()))?;
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        if snapshot.taken_at_unix > now + FUTURE_SLACK.as_secs() {
            return Err(SnapshotError::Future {
                path: path.to_string(),
                taken_at: snapshot.taken_at.clone(),
            });
        }
        let age = snapshot.age();
        if age > max_age {
            return Err(SnapshotError::TooOld {
                path: path.to_string(),
                taken_at: snapshot.taken_at.clone(),
                age: crate::engine::deadline::words(age),
                max: crate::engine::deadline::words(max_age),
            });
        }
        Ok(snapshot)
    }
}

/// How far in the future a snapshot's time may be (clocks a little apart).
const FUTURE_SLACK: Duration = Duration::from_secs(300);

/// A snapshot file larger than this is refused unread (a few hundred thousand objects).
pub const MAX_BYTES: u64 = 512 * 1024 * 1024;

/// Compares two MACs in time that does not depend on where they differ.
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn mac(key: &HashKey, body: &str) -> String {
    let mut h = key.hasher("snapshot");
    h.update(&FORMAT_VERSION.to_be_bytes());
    h.update(body.as_bytes());
    h.finish()
}
