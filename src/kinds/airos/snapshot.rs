//! An antenna group as a snapshot keeps it, with no key and no configuration line wispctl does
//! not manage: per antenna only the `unms.*` lines of `system.cfg`, `running.cfg` and the flash
//! copy, the board's identity and firmware, the change mark, whether `cfgmtd` is there and the
//! bridge; what UISP said of the devices; and the desired connection string. Every key in a
//! connection string is replaced by a keyed mask of the same length and character classes, so
//! that equal keys stay equal, different keys different, and a malformed string malformed the
//! same way; the diff then plans exactly as against the antennas. The YAML's own connection
//! string (`connection.secret`) is masked the same way when planning.

use serde::{Deserialize, Serialize};

use super::antenna::{AntennaError, Bridge, Flash, Live};
use super::commands::{Files, RUNNING_CFG, SYSTEM_CFG};
use super::config::{BoardInfo, ConnectionString};
use super::observe::{GroupLive, UispView};
use crate::secret::{HashKey, SecretHash};

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Snap {
    /// The desired connection string, masked.
    desired: String,
    /// The keyed hash of the real one (a saved plan records it).
    desired_hash: SecretHash,
    connected: Option<UispView>,
    antennas: Vec<AntennaSnap>,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
enum AntennaSnap {
    Read(LiveSnap),
    Error(String),
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct LiveSnap {
    /// `(path, content)`: configuration files reduced to their masked `unms.*` lines.
    files: Vec<(String, String)>,
    board: BoardSnap,
    cfgmtd: bool,
    flash: FlashSnap,
    bridge: BridgeSnap,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct BoardSnap {
    name: Option<String>,
    shortname: Option<String>,
    hwaddr: Option<String>,
    firmware: Option<String>,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
enum FlashSnap {
    NotRead,
    Read(String),
    Unreadable(u32),
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
enum BridgeSnap {
    NotRunning,
    Running { pid: u32, started: Option<u64> },
    Several(usize),
}

/// Masks the key of a connection string (the text between its first and second `+`): each
/// ASCII letter or digit becomes one drawn from the keyed hash of the whole key, any other
/// character stays. Nothing else changes.
pub fn mask_uri(key: &HashKey, uri: &str) -> String {
    let Some((head, rest)) = uri.split_once('+') else {
        return uri.to_string();
    };
    let (k, tail) = match rest.split_once('+') {
        Some((k, t)) => (k, Some(t)),
        None => (rest, None),
    };
    const ALNUM: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    let mut stream = Vec::new();
    let mut round = 0u32;
    while stream.len() < k.len() {
        let mut h = key.hasher("snapshot-airos-key");
        h.update(&round.to_be_bytes());
        h.update(k.as_bytes());
        stream.extend(h.finish().into_bytes());
        round += 1;
    }
    let masked: String = k
        .chars()
        .zip(stream)
        .map(|(c, r)| {
            if c.is_ascii_alphanumeric() {
                ALNUM[usize::from(r) % ALNUM.len()] as char
            } else {
                c
            }
        })
        .collect();
    match tail {
        Some(t) => format!("{head}+{masked}+{t}"),
        None => format!("{head}+{masked}"),
    }
}

/// The connection string with its key masked ([`mask_uri`]).
pub fn mask_connection(key: &HashKey, c: &ConnectionString) -> Result<ConnectionString, String> {
    let masked = mask_uri(key, c.to_secret_string().expose());
    ConnectionString::parse_live(&masked).map_err(|e| e.to_string())
}

/// A configuration file reduced to its `unms.*` lines (terminators kept), keys masked.
fn unms_lines(key: &HashKey, bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes)
        .split_inclusive('\n')
        .filter(|l| l.starts_with("unms."))
        .map(|l| match l.split_once('=') {
            Some((k, v)) if k.starts_with("unms.uri") => {
                let end = v.len() - v.trim_end_matches(['\r', '\n']).len();
                let (value, eol) = v.split_at(v.len() - end);
                format!("{k}={}{eol}", mask_uri(key, value))
            }
            _ => l.to_string(),
        })
        .collect()
}

fn is_config(path: &str) -> bool {
    path == SYSTEM_CFG || path == RUNNING_CFG
}

/// The group as JSON: no key, no unmanaged line.
pub fn to_value(live: &GroupLive, key: &HashKey) -> Result<serde_json::Value, String> {
    let antennas = live
        .antennas
        .iter()
        .map(|a| match a {
            Err(e) => AntennaSnap::Error(e.to_string()),
            Ok(l) => AntennaSnap::Read(LiveSnap {
                files: l
                    .files
                    .files
                    .iter()
                    .map(|(p, c)| {
                        let text = if is_config(p) {
                            unms_lines(key, c)
                        } else {
                            String::from_utf8_lossy(c).into_owned()
                        };
                        (p.clone(), text)
                    })
                    .collect(),
                board: BoardSnap {
                    name: l.board.name.clone(),
                    shortname: l.board.shortname.clone(),
                    hwaddr: l.board.hwaddr.clone(),
                    firmware: l.board.firmware.clone(),
                },
                cfgmtd: l.cfgmtd,
                flash: match &l.flash {
                    Flash::NotRead => FlashSnap::NotRead,
                    Flash::Read(b) => FlashSnap::Read(unms_lines(key, b)),
                    Flash::Unreadable { status } => FlashSnap::Unreadable(*status),
                },
                bridge: match l.bridge {
                    Bridge::NotRunning => BridgeSnap::NotRunning,
                    Bridge::Running { pid, started } => BridgeSnap::Running { pid, started },
                    Bridge::Several(n) => BridgeSnap::Several(n),
                },
            }),
        })
        .collect();
    let snap = Snap {
        desired: mask_connection(key, &live.desired)?
            .to_secret_string()
            .expose()
            .to_string(),
        desired_hash: live
            .desired_hash
            .clone()
            .unwrap_or_else(|| SecretHash::of(key, &live.desired.to_secret_string())),
        connected: live.connected.clone(),
        antennas,
    };
    serde_json::to_value(snap).map_err(|e| e.to_string())
}

/// The group back from JSON. `given`: the YAML's own connection string, when the file gives
/// one (masked here; otherwise the snapshot's, read from UISP then).
pub fn from_value(
    v: serde_json::Value,
    given: Option<&ConnectionString>,
    key: &HashKey,
) -> Result<GroupLive, String> {
    let snap: Snap = serde_json::from_value(v).map_err(|e| e.to_string())?;
    let (desired, desired_hash) = match given {
        Some(c) => (
            mask_connection(key, c)?,
            SecretHash::of(key, &c.to_secret_string()),
        ),
        None => (
            ConnectionString::parse_live(&snap.desired).map_err(|e| e.to_string())?,
            snap.desired_hash,
        ),
    };
    let antennas = snap
        .antennas
        .into_iter()
        .map(|a| match a {
            AntennaSnap::Error(e) => Err(AntennaError::Snapshot(e)),
            AntennaSnap::Read(l) => Ok(Live {
                files: Files {
                    files: l
                        .files
                        .into_iter()
                        .map(|(p, c)| (p, c.into_bytes()))
                        .collect(),
                },
                board: BoardInfo {
                    name: l.board.name,
                    shortname: l.board.shortname,
                    hwaddr: l.board.hwaddr,
                    firmware: l.board.firmware,
                },
                cfgmtd: l.cfgmtd,
                flash: match l.flash {
                    FlashSnap::NotRead => Flash::NotRead,
                    FlashSnap::Read(t) => Flash::Read(t.into_bytes()),
                    FlashSnap::Unreadable(status) => Flash::Unreadable { status },
                },
                bridge: match l.bridge {
                    BridgeSnap::NotRunning => Bridge::NotRunning,
                    BridgeSnap::Running { pid, started } => Bridge::Running { pid, started },
                    BridgeSnap::Several(n) => Bridge::Several(n),
                },
            }),
        })
        .collect();
    Ok(GroupLive {
        desired,
        connected: snap.connected,
        antennas,
        credentials: Default::default(),
        trusted: Vec::new(),
        desired_hash: Some(desired_hash),
    })
}
