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
use super::config::{BoardInfo, ConnectionString, KEY_STATUS, KEY_URI};
use super::observe::{GroupLive, UispView};
use crate::secret::{HashKey, SecretHash};

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Snap {
    /// The desired connection string, masked.
    desired: String,
    /// Whether it was read from UISP (else the group gave its own).
    desired_from_uisp: bool,
    /// The keyed hash of the real one (a saved plan records it).
    desired_hash: SecretHash,
    connected: Option<UispView>,
    /// By host: a file that adds, removes or reorders antennas still finds each one's.
    antennas: Vec<(String, AntennaSnap)>,
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

/// Replaces each ASCII letter and digit of `text` by one of the same class drawn from the keyed
/// hash of the whole text; every other character stays.
fn mask_chars(key: &HashKey, text: &str) -> String {
    let mut stream = Vec::new();
    let mut round = 0u32;
    while stream.len() < text.len() {
        let mut h = key.hasher("snapshot-airos-mask");
        h.update(&round.to_be_bytes());
        h.update(text.as_bytes());
        let hex = h.finish();
        stream.extend(
            (0..hex.len() / 2).filter_map(|i| u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).ok()),
        );
        round += 1;
    }
    text.chars()
        .zip(stream)
        .map(|(c, r)| match c {
            'A'..='Z' => char::from(b'A' + r % 26),
            'a'..='z' => char::from(b'a' + r % 26),
            '0'..='9' => char::from(b'0' + r % 10),
            other => other,
        })
        .collect()
}

/// Masks a connection string: when it parses, only its key (the text between its first and
/// second `+`, masked letter by letter keeping classes); when it does not, everything after its scheme (a malformed
/// string may hold the key anywhere).
pub fn mask_uri(key: &HashKey, uri: &str) -> String {
    if let Err(e) = ConnectionString::parse_live(uri) {
        let masked = match uri.split_once("://") {
            Some((scheme, rest)) => format!("{scheme}://{}", mask_chars(key, rest)),
            None => mask_chars(key, uri),
        };
        // Masking must not change what is wrong with it (a port made valid, another error
        // first): then a string of no one's that fails the same way.
        let same = |s: &str| {
            ConnectionString::parse_live(s).err().map(|x| x.to_string()) == Some(e.to_string())
        };
        if same(&masked) {
            return masked;
        }
        return MALFORMED
            .iter()
            .find(|s| same(s))
            .map_or(masked, |s| (*s).to_string());
    }
    let Some((head, rest)) = uri.split_once('+') else {
        return mask_chars(key, uri);
    };
    match rest.split_once('+') {
        Some((k, t)) => format!("{head}+{}+{t}", mask_chars(key, k)),
        None => format!("{head}+{}", mask_chars(key, rest)),
    }
}

/// Malformed connection strings, one per way of being malformed.
const MALFORMED: &[&str] = &[
    "",
    "wss://a b",
    "x",
    "http://h:1+k",
    "wss://h:1",
    "wss://h+k",
    "wss://h:0+k",
    "wss://h:1x+k",
    "wss://_:1+k",
    "wss://01.2.3.4:1+k",
    "wss://h:1+k+",
    "wss://h:1+k-k",
    "wss://[::1:1+k",
];

/// The connection string with its key masked ([`mask_uri`]).
pub fn mask_connection(key: &HashKey, c: &ConnectionString) -> Result<ConnectionString, String> {
    let masked = mask_uri(key, c.to_secret_string().expose());
    ConnectionString::parse_live(&masked).map_err(|e| e.to_string())
}

/// A configuration file reduced to its `unms.*` lines (the key as airOS reads it: trimmed),
/// terminators kept: `unms.status` as written, connection strings masked ([`mask_uri`]), any
/// other value masked entirely. A line without `=` is no setting and is left out.
fn unms_lines(key: &HashKey, bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes)
        .split_inclusive('\n')
        .filter_map(|l| {
            let (k, v) = l.split_once('=')?;
            let name = k.trim();
            if !name.starts_with("unms.") {
                return None;
            }
            let end = v.len() - v.trim_end_matches(['\r', '\n']).len();
            let (value, eol) = v.split_at(v.len() - end);
            let masked = if name == KEY_STATUS {
                value.to_string()
            } else if name.starts_with(KEY_URI) {
                mask_uri(key, value)
            } else {
                mask_chars(key, value)
            };
            Some(format!("{k}={masked}{eol}"))
        })
        .collect()
}

fn is_config(path: &str) -> bool {
    path == SYSTEM_CFG || path == RUNNING_CFG
}

/// The group as JSON: no key, no unmanaged line. `hosts`: the antennas' hosts, in the order
/// of the reading.
pub fn to_value(
    live: &GroupLive,
    hosts: &[&str],
    from_uisp: bool,
    key: &HashKey,
) -> Result<serde_json::Value, String> {
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
        .zip(hosts)
        .map(|(a, h)| (h.to_string(), a))
        .collect();
    let snap = Snap {
        desired: mask_connection(key, &live.desired)?
            .to_secret_string()
            .expose()
            .to_string(),
        desired_from_uisp: from_uisp,
        desired_hash: live
            .desired_hash
            .clone()
            .unwrap_or_else(|| SecretHash::of(key, &live.desired.to_secret_string())),
        connected: live.connected.clone(),
        antennas,
    };
    serde_json::to_value(snap).map_err(|e| e.to_string())
}

/// The group back from JSON, its antennas in the order of `hosts` (the file's now; one the
/// snapshot does not hold is an object error). `given`: the YAML's own connection string, when
/// the file gives one (masked here; otherwise the snapshot's, read from UISP then).
pub fn from_value(
    v: serde_json::Value,
    hosts: &[&str],
    given: Option<&ConnectionString>,
    key: &HashKey,
) -> Result<GroupLive, String> {
    let snap: Snap = serde_json::from_value(v).map_err(|e| e.to_string())?;
    let (desired, desired_hash) = match given {
        Some(c) => (
            mask_connection(key, c)?,
            SecretHash::of(key, &c.to_secret_string()),
        ),
        None if snap.desired_from_uisp => (
            ConnectionString::parse_live(&snap.desired).map_err(|e| e.to_string())?,
            snap.desired_hash,
        ),
        None => {
            return Err("the group now takes its connection string from UISP, which the snapshot did not read (the group gave its own then): take a new snapshot".into());
        }
    };
    let mut by_host: std::collections::HashMap<String, AntennaSnap> =
        snap.antennas.into_iter().collect();
    let antennas = hosts
        .iter()
        .map(|h| {
            by_host.remove(*h).unwrap_or_else(|| {
                AntennaSnap::Error(format!(
                    "{h}: not in the snapshot (added since it was taken): not compared"
                ))
            })
        })
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

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = "LabOnlyMasterKey0123456789abcdefghijklmnopqrstuv";

    #[test]
    fn a_key_is_masked_keeping_its_classes_and_equal_keys_stay_equal() {
        let k = HashKey::from_bytes([5; 32]);
        let uri = format!("wss://uisp.example:443+{KEY}+allowSelfSignedCertificate");
        let m = mask_uri(&k, &uri);
        assert!(!m.contains(KEY));
        let (head, rest) = m.split_once('+').unwrap();
        assert_eq!(head, "wss://uisp.example:443");
        let (masked, flags) = rest.split_once('+').unwrap();
        assert_eq!(flags, "allowSelfSignedCertificate");
        assert_eq!(masked.len(), KEY.len());
        for (a, b) in masked.chars().zip(KEY.chars()) {
            assert_eq!(
                (
                    a.is_ascii_uppercase(),
                    a.is_ascii_lowercase(),
                    a.is_ascii_digit()
                ),
                (
                    b.is_ascii_uppercase(),
                    b.is_ascii_lowercase(),
                    b.is_ascii_digit()
                ),
            );
        }
        assert_eq!(mask_uri(&k, &uri), m, "the same key masks the same way");
        let other = uri.replace("Lab", "Lob");
        assert_ne!(mask_uri(&k, &other), m);
        assert_ne!(mask_uri(&HashKey::from_bytes([6; 32]), &uri), m, "keyed");
        // Malformed: everything after the scheme is masked, the malformation kept, even
        // where masking digits would have changed it.
        for bad in [
            format!("wss://host{KEY}"),
            format!("wss://h:70000+{KEY}"),
            format!("wss://h:0443+{KEY}"),
            format!("wss://010.1.2.3:443+{KEY}"),
            "wss://h:443+".to_string(),
        ] {
            let mb = mask_uri(&k, &bad);
            assert!(!mb.contains(KEY), "{mb}");
            assert_eq!(
                ConnectionString::parse_live(&bad).unwrap_err().to_string(),
                ConnectionString::parse_live(&mb).unwrap_err().to_string(),
                "{bad} -> {mb}"
            );
        }
    }

    #[test]
    fn only_unms_settings_are_kept_and_no_key_in_them() {
        let k = HashKey::from_bytes([5; 32]);
        let cfg = format!(
            "users.1.password=$1$x$hash\n  unms.uri = wss://u.example:443+{KEY}\nunms.status=enabled\r\nunms.other=secretvalue\nunms.nokey\nppp.1.password=pw\n"
        );
        let kept = unms_lines(&k, cfg.as_bytes());
        assert!(!kept.contains(KEY) && !kept.contains("secretvalue") && !kept.contains("pw"));
        assert!(!kept.contains("users.") && !kept.contains("nokey"));
        assert!(kept.contains("unms.status=enabled\r\n"));
        assert!(kept.starts_with("  unms.uri = wss://u.example:443+"));
        assert_eq!(kept.lines().count(), 3);
    }
}
