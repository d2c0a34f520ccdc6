//! One antenna: what it carries ([`assess`], pure) and the procedure that changes it
//! ([`read`], [`write_uri`]) over a logged-in [`Session`].
//!
//! The procedure is the one the field learned (reference: airos.md): edit the `unms.*` lines in
//! place in both `/tmp/system.cfg` and `/tmp/running.cfg` (no duplicates, every other line kept
//! byte for byte), persist with `cfgmtd -w -p /etc/`, kill only the `udapi-bridge` child (its
//! supervisor respawns it and it reads the new `running.cfg`), then read both files again to
//! verify. Every command is one of the fixed strings of [`super::commands`].

use super::commands::{self, Files, RUNNING_CFG, SYSTEM_CFG};
use super::config::{
    BoardInfo, ConnectionString, KEY_STATUS, KEY_URI, KEY_URI_CHANGED, SystemCfg, UriSync, compare,
    firmware_major,
};
use crate::ssh::{Session, SshError};

/// What an antenna holds, as read.
#[derive(Debug, Clone)]
pub struct Live {
    /// `/tmp/system.cfg`, `/tmp/running.cfg` and the identity files.
    pub files: Files,
    /// Board identity and firmware.
    pub board: BoardInfo,
}

impl Live {
    /// From [`commands::READ`]'s files.
    pub fn new(files: Files) -> Live {
        // Both files, /etc first: the first occurrence of each key wins, so a key missing
        // from one is taken from the other.
        let mut board_text = String::new();
        for path in [commands::BOARD_INFO, commands::BOARD_INFO_PROC] {
            if let Some(b) = files.get(path) {
                board_text.push_str(&String::from_utf8_lossy(b));
                board_text.push('\n');
            }
        }
        let version = files
            .get(commands::VERSION)
            .map(|b| String::from_utf8_lossy(b).into_owned())
            .unwrap_or_default();
        let board = BoardInfo::parse(&board_text).with_version(&version);
        Live { files, board }
    }

    /// airOS 8 or later (it keeps `unms.uri.changed` too).
    pub fn airos8(&self) -> bool {
        self.board
            .firmware
            .as_deref()
            .and_then(firmware_major)
            .is_some_and(|m| m >= 8)
    }
}

/// Why an antenna could not be read or changed: an object error in a plan, a failed change in
/// apply. Never holds a file's content, a key or a password.
#[derive(Debug, thiserror::Error)]
pub enum AntennaError {
    /// It could not be logged in to (or through its jump host).
    #[error(transparent)]
    Login(#[from] super::login::LoginError),
    /// The SSH side, once logged in.
    #[error(transparent)]
    Ssh(#[from] SshError),
    /// The read command's output.
    #[error("{host}: {source}")]
    Read {
        /// The device.
        host: String,
        /// What was wrong.
        source: commands::ReadError,
    },
    /// A command exited non-zero.
    #[error("{host}: `{program}` exited with status {status}{detail}")]
    Command {
        /// The device.
        host: String,
        /// The command's first word.
        program: String,
        /// Its exit status.
        status: u32,
        /// `: ` and the first line of its stderr, shortened, or nothing.
        detail: String,
    },
    /// No `/tmp/system.cfg`: not an airOS device, or not one this tool knows.
    #[error("{host}: no /tmp/system.cfg (not an airOS device?); not touched")]
    NoSystemCfg {
        /// The device.
        host: String,
    },
    /// The YAML names a MAC and the board does not say its own.
    #[error("{host}: the board reports no MAC, expected {expected}; not touched")]
    NoMac {
        /// The device.
        host: String,
        /// The YAML's MAC.
        expected: String,
    },
    /// Several processes look like the bridge: which one is the child is not guessed.
    #[error(
        "{host}: {count} udapi-bridge processes; not guessing which one is the child to restart"
    )]
    SeveralBridges {
        /// The device.
        host: String,
        /// How many.
        count: usize,
    },
    /// Another device answers at this address.
    #[error("{host}: answers with MAC {found}, expected {expected}; not touched")]
    WrongDevice {
        /// The device.
        host: String,
        /// The YAML's MAC.
        expected: String,
        /// The board's MAC.
        found: String,
    },
    /// The connection string cannot be written (never shows the value).
    #[error("{host}: {source}")]
    Cfg {
        /// The device.
        host: String,
        /// Why.
        source: super::config::CfgError,
    },
    /// The files were (partly) written and a later step failed: the device needs a look.
    #[error(
        "{source}; the new connection string is already in /tmp on {host} but the procedure did not finish: check the antenna (persist with `cfgmtd -w -p /etc/`, restart udapi-bridge or reboot it)"
    )]
    Unfinished {
        /// The device.
        host: String,
        /// The step that failed.
        source: Box<AntennaError>,
    },
    /// Reading back did not show what was written.
    #[error("{host}: verification failed: {what}")]
    Verify {
        /// The device.
        host: String,
        /// What differed.
        what: String,
    },
}

/// How one file stands against the desired connection string.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileVerdict {
    /// `system.cfg` or `running.cfg`.
    pub file: &'static str,
    /// Why it must be rewritten; empty when in sync.
    pub reasons: Vec<String>,
    /// The live connection string, masked, when there is a readable one.
    pub live_masked: Option<String>,
}

/// How an antenna stands: per file (running.cfg only when it exists).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Assessment {
    /// system.cfg first.
    pub files: Vec<FileVerdict>,
    /// Whether a key that is not the master key was excused by UISP showing the device
    /// connected.
    pub key_excused: bool,
    /// Some file holds a key other than the master key (a rewrite replaces it).
    pub key_differs: bool,
}

impl Assessment {
    /// Nothing to change.
    pub fn in_sync(&self) -> bool {
        self.files.iter().all(|f| f.reasons.is_empty())
    }

    /// Whether the key is all that differs (scheme, host, port, flags and status are right).
    pub fn only_key_differs(&self) -> bool {
        !self.in_sync()
            && self
                .files
                .iter()
                .flat_map(|f| &f.reasons)
                .all(|r| r.starts_with("key:"))
    }

    /// Stable text of what is out of step (no key), for fingerprints and plans.
    pub fn describe(&self) -> String {
        let parts: Vec<String> = self
            .files
            .iter()
            .filter(|f| !f.reasons.is_empty())
            .map(|f| format!("{}: {}", f.file, f.reasons.join("; ")))
            .collect();
        if parts.is_empty() {
            "in sync".into()
        } else {
            parts.join(" | ")
        }
    }
}

/// Compares what an antenna carries with `desired`. `connected`: UISP shows the device
/// connected, so a key other than the master key is its own device-specific key and in sync.
/// `None` when `/tmp/system.cfg` is missing.
pub fn assess(live: &Live, desired: &ConnectionString, connected: bool) -> Option<Assessment> {
    let system = live.files.get(SYSTEM_CFG)?;
    let airos8 = live.airos8();
    let mut files = vec![verdict("system.cfg", system, desired, connected, airos8)];
    if let Some(running) = live.files.get(RUNNING_CFG) {
        files.push(verdict("running.cfg", running, desired, connected, airos8));
    }
    let key_differs = |path: &str| {
        live.files
            .get(path)
            .and_then(|b| SystemCfg::parse(b).get(KEY_URI))
            .and_then(|u| ConnectionString::parse_live(&u).ok())
            .is_some_and(|u| u.key.expose() != desired.key.expose())
    };
    let differs = key_differs(SYSTEM_CFG) || key_differs(RUNNING_CFG);
    Some(Assessment {
        files,
        key_excused: connected && differs,
        key_differs: differs,
    })
}

fn verdict(
    file: &'static str,
    bytes: &[u8],
    desired: &ConnectionString,
    connected: bool,
    airos8: bool,
) -> FileVerdict {
    let cfg = SystemCfg::parse(bytes);
    let mut reasons = Vec::new();
    let mut live_masked = None;
    match cfg.count(KEY_URI) {
        0 => reasons.push("no unms.uri".to_string()),
        1 => {}
        n => reasons.push(format!("unms.uri written {n} times")),
    }
    if let Some(uri) = cfg.get(KEY_URI) {
        match ConnectionString::parse_live(&uri) {
            Ok(live) => {
                live_masked = Some(live.masked());
                if let UriSync::Differs(d) = compare(desired, &live, connected) {
                    reasons.extend(d.iter().map(ToString::to_string));
                }
            }
            Err(e) => reasons.push(format!("unms.uri unreadable: {e}")),
        }
    }
    if cfg.get(KEY_STATUS).as_deref() != Some("enabled") {
        reasons.push("unms.status is not enabled".into());
    }
    if cfg.count(KEY_STATUS) > 1 {
        reasons.push("unms.status written more than once".into());
    }
    if airos8 && cfg.count(KEY_URI_CHANGED) == 0 {
        reasons.push("no unms.uri.changed (airOS 8)".into());
    }
    if let Some(changed) = cfg.get(KEY_URI_CHANGED) {
        let ok = ConnectionString::parse_live(&changed)
            .map(|c| compare(desired, &c, connected).is_in_sync())
            .unwrap_or(false);
        if !ok || cfg.count(KEY_URI_CHANGED) > 1 {
            reasons.push("unms.uri.changed differs".into());
        }
    }
    FileVerdict {
        file,
        reasons,
        live_masked,
    }
}

/// Runs [`commands::READ`] and parses it.
pub async fn read(session: &Session) -> Result<Live, AntennaError> {
    let out = session.exec(commands::READ, None).await?;
    check(session, "read", &out)?;
    let files = commands::parse_read(&out.stdout).map_err(|source| AntennaError::Read {
        host: session.host().to_string(),
        source,
    })?;
    Ok(Live::new(files))
}

fn check(session: &Session, program: &str, out: &crate::ssh::Output) -> Result<(), AntennaError> {
    if out.success() {
        return Ok(());
    }
    let first = String::from_utf8_lossy(&out.stderr)
        .lines()
        .next()
        .unwrap_or_default()
        .chars()
        .filter(|c| !c.is_control())
        .take(120)
        .collect::<String>();
    Err(AntennaError::Command {
        host: session.host().to_string(),
        program: program.to_string(),
        status: out.status,
        detail: if first.is_empty() {
            String::new()
        } else {
            format!(": {first}")
        },
    })
}

/// Whether the board's MAC is the expected one (when the YAML gives one and the board says).
pub fn check_identity(host: &str, live: &Live, expected: Option<&str>) -> Result<(), AntennaError> {
    match (expected, live.board.hwaddr.as_deref()) {
        (Some(want), Some(found)) if want != found => Err(AntennaError::WrongDevice {
            host: host.to_string(),
            expected: want.to_string(),
            found: found.to_string(),
        }),
        (Some(want), None) => Err(AntennaError::NoMac {
            host: host.to_string(),
            expected: want.to_string(),
        }),
        _ => Ok(()),
    }
}

/// How many times `ps` is asked for the respawned bridge, [`BRIDGE_WAIT`] apart.
const BRIDGE_CHECKS: usize = 6;
/// The pause between two checks for the respawned bridge.
const BRIDGE_WAIT: std::time::Duration = std::time::Duration::from_secs(1);

/// The `udapi-bridge` processes `ps` lists.
async fn bridges(session: &Session) -> Result<Vec<u32>, AntennaError> {
    let out = session.exec(commands::PS, None).await?;
    check(session, "ps", &out)?;
    Ok(commands::bridge_pids(&String::from_utf8_lossy(&out.stdout)))
}

/// What [`write_uri`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Written {
    /// `system.cfg` was rewritten (and persisted).
    pub system: bool,
    /// `running.cfg` was rewritten.
    pub running: bool,
    /// `udapi-bridge` processes killed (their supervisor respawns them).
    pub bridges_restarted: usize,
}

/// The whole procedure on one antenna, on a fresh read: rewrite the `unms.*` lines of both
/// files (each only when its content changes), persist, restart the bridge, verify. Refuses an
/// antenna whose MAC is not `expected_mac`. Nothing is written when both files already match.
pub async fn write_uri(
    session: &Session,
    desired: &ConnectionString,
    expected_mac: Option<&str>,
) -> Result<Written, AntennaError> {
    let host = session.host().to_string();
    let live = read(session).await?;
    check_identity(&host, &live, expected_mac)?;
    let Some(system) = live.files.get(SYSTEM_CFG) else {
        return Err(AntennaError::NoSystemCfg { host });
    };
    let uri = desired.to_secret_string();
    let airos8 = live.airos8();
    let cfg_err = |source| AntennaError::Cfg {
        host: host.clone(),
        source,
    };
    let new_system = SystemCfg::parse(system)
        .with_unms(&uri, airos8)
        .map_err(cfg_err)?;
    let running = live.files.get(RUNNING_CFG);
    let new_running = match running {
        Some(r) => Some(
            SystemCfg::parse(r)
                .with_unms(&uri, airos8)
                .map_err(cfg_err)?,
        ),
        None => None,
    };
    let mut done = Written {
        system: new_system != system,
        running: new_running.as_deref().is_some_and(|n| Some(n) != running),
        bridges_restarted: 0,
    };
    if !done.system && !done.running {
        return Ok(done);
    }
    // Checked before anything is written: a device whose bridge child cannot be told apart
    // is left as it is.
    let before = bridges(session).await?;
    if before.len() > 1 {
        return Err(AntennaError::SeveralBridges {
            host: host.clone(),
            count: before.len(),
        });
    }
    // Nothing is installed when a write fails (the size check); after the first one that
    // succeeded, a failure leaves the device half done, and the error says so.
    let mut wrote = false;
    if done.system {
        let out = session
            .exec(&commands::write_system(new_system.len()), Some(&new_system))
            .await?;
        check(session, "cat", &out)?;
        wrote = true;
    }
    let rest = finish(
        session,
        &mut done,
        &new_system,
        new_running.as_deref(),
        &uri,
    );
    match rest.await {
        Ok(()) => Ok(done),
        Err(e) if wrote || done.running => Err(AntennaError::Unfinished {
            host,
            source: Box::new(e),
        }),
        Err(e) => Err(e),
    }
}

/// Everything after `system.cfg` is written: `running.cfg`, persist, the bridge, verify.
async fn finish(
    session: &Session,
    done: &mut Written,
    new_system: &[u8],
    new_running: Option<&[u8]>,
    uri: &crate::secret::Secret,
) -> Result<(), AntennaError> {
    let host = session.host().to_string();
    if done.running
        && let Some(n) = new_running
    {
        let out = session
            .exec(&commands::write_running(n.len()), Some(n))
            .await?;
        check(session, "cat", &out)?;
    }
    let out = session.exec(commands::PERSIST, None).await?;
    check(session, "cfgmtd", &out)?;
    // Asked again now: a bridge that respawned on its own since the first look read the old
    // files, and is the one to restart.
    let now = bridges(session).await?;
    if now.len() > 1 {
        return Err(AntennaError::SeveralBridges {
            host,
            count: now.len(),
        });
    }
    if let Some(&pid) = now.first() {
        // Killed, its supervisor respawns it and it reads the new running.cfg. A process that
        // ended on its own between ps and kill is no error: the respawn check below decides.
        let _ = session.exec(&commands::kill(pid), None).await?;
        let mut back = false;
        for attempt in 0..BRIDGE_CHECKS {
            if attempt > 0 {
                tokio::time::sleep(BRIDGE_WAIT).await;
            }
            let now = bridges(session).await?;
            if now.len() == 1 && now[0] != pid {
                back = true;
                break;
            }
        }
        if !back {
            return Err(AntennaError::Verify {
                host,
                what: format!(
                    "udapi-bridge was killed but no new udapi-bridge process showed up within {} s",
                    (BRIDGE_CHECKS as u64 - 1) * BRIDGE_WAIT.as_secs()
                ),
            });
        }
        done.bridges_restarted = 1;
    }
    let after = read(session).await?;
    let verify = |what: String| AntennaError::Verify {
        host: host.clone(),
        what,
    };
    if after.files.get(SYSTEM_CFG) != Some(new_system) {
        return Err(verify(
            "/tmp/system.cfg does not hold what was written".into(),
        ));
    }
    if after.files.get(RUNNING_CFG) != new_running {
        return Err(verify(
            "/tmp/running.cfg does not hold what was written".into(),
        ));
    }
    for (name, bytes) in [
        ("system.cfg", Some(new_system)),
        ("running.cfg", new_running),
    ] {
        let Some(b) = bytes else { continue };
        let cfg = SystemCfg::parse(b);
        if cfg.count(KEY_URI) != 1 || cfg.get(KEY_URI).as_deref() != Some(uri.expose()) {
            return Err(verify(format!(
                "{name} does not carry the new unms.uri once"
            )));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kinds::airos::commands::render_read;

    const KEY: &str = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUV";

    fn desired() -> ConnectionString {
        ConnectionString::parse(&format!(
            "wss://uisp.new.example:443+{KEY}+allowSelfSignedCertificate"
        ))
        .unwrap()
    }

    fn live(system: &str, running: Option<&str>, version: &str) -> Live {
        let out = render_read(&[
            (SYSTEM_CFG, Some(system.as_bytes())),
            (RUNNING_CFG, running.map(str::as_bytes)),
            (
                commands::BOARD_INFO,
                Some(b"board.name=LiteBeam M5\nboard.hwaddr=F09FC2112233\n"),
            ),
            (commands::BOARD_INFO_PROC, None),
            (commands::VERSION, Some(version.as_bytes())),
        ]);
        Live::new(commands::parse_read(&out).unwrap())
    }

    fn cfg(uri: &str) -> String {
        format!("aaa.status=enabled\nunms.status=enabled\nunms.uri={uri}\nwireless.1.ssid=x\n")
    }

    #[test]
    fn the_master_key_or_a_connected_device_key_is_in_sync() {
        let good = format!("wss://uisp.new.example:443+{KEY}+allowSelfSignedCertificate");
        let l = live(&cfg(&good), Some(&cfg(&good)), "XW.v6.2.0");
        assert_eq!(l.board.hwaddr.as_deref(), Some("F0:9F:C2:11:22:33"));
        assert!(!l.airos8());
        let a = assess(&l, &desired(), false).unwrap();
        assert!(a.in_sync(), "{}", a.describe());
        assert!(!a.key_excused);

        let own = "wss://uisp.new.example:443+deviceSpecificKey123+allowSelfSignedCertificate";
        let l = live(&cfg(own), Some(&cfg(own)), "XW.v6.2.0");
        let a = assess(&l, &desired(), true).unwrap();
        assert!(a.in_sync() && a.key_excused);
        let a = assess(&l, &desired(), false).unwrap();
        assert!(!a.in_sync() && a.only_key_differs() && a.key_differs);
        assert!(
            a.describe().contains("key: (sensitive)"),
            "{}",
            a.describe()
        );
        assert!(!a.describe().contains("deviceSpecificKey123"));
    }

    #[test]
    fn an_old_host_in_either_file_duplicates_and_a_disabled_status_are_changes() {
        let good = format!("wss://uisp.new.example:443+{KEY}+allowSelfSignedCertificate");
        let old = format!("wss://uisp.old.example:443+{KEY}+allowSelfSignedCertificate");
        // system.cfg right, running.cfg old: the case the field's first script missed.
        let l = live(&cfg(&good), Some(&cfg(&old)), "XW.v6.2.0");
        let a = assess(&l, &desired(), true).unwrap();
        assert!(!a.in_sync() && !a.only_key_differs());
        assert_eq!(
            a.describe(),
            "running.cfg: host: uisp.old.example -> uisp.new.example"
        );
        let twice = format!("{}unms.uri={good}\n", cfg(&good));
        let a = assess(&live(&twice, None, "v6"), &desired(), false).unwrap();
        assert_eq!(a.describe(), "system.cfg: unms.uri written 2 times");
        let off = cfg(&good).replace("unms.status=enabled", "unms.status=disabled");
        let a = assess(&live(&off, None, "v6"), &desired(), false).unwrap();
        assert_eq!(a.describe(), "system.cfg: unms.status is not enabled");
        let none = "aaa.status=enabled\n";
        let a = assess(&live(none, None, "v6"), &desired(), false).unwrap();
        assert!(a.describe().starts_with("system.cfg: no unms.uri"));
        // airOS 8's copy is checked too.
        let v8 = format!("{}unms.uri.changed={old}\n", cfg(&good));
        let l = live(&v8, None, "WA.v8.7.11");
        assert!(l.airos8());
        let a = assess(&l, &desired(), false).unwrap();
        assert_eq!(a.describe(), "system.cfg: unms.uri.changed differs");
        // airOS 8 without the copy: apply would add it, so it is a change.
        let a = assess(&live(&cfg(&good), None, "WA.v8.7.11"), &desired(), false).unwrap();
        assert_eq!(a.describe(), "system.cfg: no unms.uri.changed (airOS 8)");
    }

    #[test]
    fn a_device_without_system_cfg_or_with_another_mac_is_not_assessed() {
        let out = render_read(&[(SYSTEM_CFG, None), (RUNNING_CFG, None)]);
        let l = Live::new(commands::parse_read(&out).unwrap());
        assert!(assess(&l, &desired(), false).is_none());
        let l = live("a=1\n", None, "v6");
        assert!(check_identity("h", &l, Some("F0:9F:C2:11:22:33")).is_ok());
        assert!(check_identity("h", &l, None).is_ok());
        // A MAC is expected and the board gives none: not touched either.
        let out = render_read(&[
            (SYSTEM_CFG, Some(b"a=1\n")),
            (commands::BOARD_INFO, Some(b"board.name=LiteBeam M5\n")),
            (commands::BOARD_INFO_PROC, Some(b"board.shortname=LBE5\n")),
        ]);
        let nomac = Live::new(commands::parse_read(&out).unwrap());
        assert_eq!(
            nomac.board.shortname.as_deref(),
            Some("LBE5"),
            "both board files are read"
        );
        assert!(matches!(
            check_identity("h", &nomac, Some("F0:9F:C2:11:22:33")),
            Err(AntennaError::NoMac { .. })
        ));
        let e = check_identity("h", &l, Some("00:11:22:33:44:55")).unwrap_err();
        assert_eq!(
            e.to_string(),
            "h: answers with MAC F0:9F:C2:11:22:33, expected 00:11:22:33:44:55; not touched"
        );
    }
}
