//! One antenna: what it carries ([`assess`], pure) and the procedure that changes it
//! ([`read`], [`write_uri`]) over a logged-in [`Session`].
//!
//! The procedure is the one the field learned (reference: airos.md): edit the `unms.*` lines in
//! place in both `/tmp/system.cfg` and `/tmp/running.cfg` (no duplicates, every other line kept
//! byte for byte), persist with `/sbin/cfgmtd -w -p /etc/`, kill only the `udapi-bridge` child
//! (its supervisor respawns it and it reads the new `running.cfg`), then read everything again
//! to verify. Every command is one of the fixed strings of [`super::commands`].
//!
//! Half-done work is visible: a failure after the files are written (persist fails, the bridge
//! does not come back, verification fails) leaves the antenna out of step in a way [`assess`]
//! sees, so the next plan shows it as a change and the next apply finishes it. Besides the two
//! files in `/tmp`, an antenna is assessed on:
//! - the persisted copy of `system.cfg` ([`Flash`], read back with `cfgmtd`): its `unms.*`
//!   lines must be in step too (only those: other lines are not wispctl's), or `system.cfg` is
//!   persisted again;
//! - the running `udapi-bridge` ([`Bridge`]): it must run, and must have started after
//!   wispctl last changed a file (the mark every write leaves, see [`super::commands`]); a
//!   bridge that started before it read the old files, and is restarted.
//!
//! What apply does follows from the assessment ([`Assessment::steps`]): a file is rewritten
//! only when it is out of step (and then only its wrong `unms.*` lines change), `system.cfg`
//! is persisted when it was rewritten or the flash copy is out of step, and the bridge is
//! restarted when a file was rewritten or it is not running the current files. Before
//! anything is written: the board's MAC, a single bridge, and `/sbin/cfgmtd` present and
//! executable when a persist is needed. Verification is the same assessment, which must then
//! find the antenna in step.

use std::fmt;

use super::commands::{self, Files, RUNNING_CFG, ReadOut, SYSTEM_CFG};
use super::config::{
    BoardInfo, ConnectionString, KEY_STATUS, KEY_URI, KEY_URI_CHANGED, SystemCfg, UriSync, compare,
    firmware_major,
};
use crate::ssh::{Session, SshError};

/// The persisted copy of `system.cfg` (flash), as read back.
#[derive(Clone, PartialEq, Eq)]
pub enum Flash {
    /// Not read: no `/sbin/cfgmtd`, or no `/tmp/system.cfg`.
    NotRead,
    /// What `/sbin/cfgmtd -r -f /proc/self/fd/1` printed.
    Read(Vec<u8>),
    /// `cfgmtd`'s read mode failed (exit status): the flash copy is not compared.
    Unreadable {
        /// The exit status.
        status: u32,
    },
}

impl fmt::Debug for Flash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The copy holds password hashes and keys: its length only.
        match self {
            Flash::NotRead => f.write_str("NotRead"),
            Flash::Read(b) => write!(f, "Read({} bytes)", b.len()),
            Flash::Unreadable { status } => write!(f, "Unreadable {{ status: {status} }}"),
        }
    }
}

/// The `udapi-bridge` child, as `ps` and `/proc` show it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Bridge {
    /// No `udapi-bridge` process (or it ended while being looked at).
    NotRunning,
    /// One, with its start time (clock ticks since boot) when `/proc/PID/stat` gave it.
    Running {
        /// Its process id.
        pid: u32,
        /// When it started; `None`: unknown (then it is not judged stale).
        started: Option<u64>,
    },
    /// Several processes look like the bridge: which one is the child is not guessed.
    Several(usize),
}

/// What is wrong with the bridge, as a plan says it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BridgeIssue {
    /// No bridge runs: the device makes no UISP connection.
    NotRunning,
    /// The bridge started before wispctl last changed a file: it runs the old connection.
    Stale,
}

impl fmt::Display for BridgeIssue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            BridgeIssue::NotRunning => "udapi-bridge is not running",
            BridgeIssue::Stale => {
                "udapi-bridge runs the old connection (it started before wispctl last rewrote the files)"
            }
        })
    }
}

/// What an antenna holds, as read.
#[derive(Debug, Clone)]
pub struct Live {
    /// `/tmp/system.cfg`, `/tmp/running.cfg`, the identity files and the change mark.
    pub files: Files,
    /// Board identity and firmware.
    pub board: BoardInfo,
    /// Whether `/sbin/cfgmtd` is there and executable.
    pub cfgmtd: bool,
    /// The persisted copy of `system.cfg`.
    pub flash: Flash,
    /// The `udapi-bridge` child.
    pub bridge: Bridge,
}

impl Live {
    /// From [`commands::READ`]'s output; the flash copy not read yet, and the bridge's start
    /// time unknown (what [`read`] adds).
    pub fn new(read: ReadOut) -> Live {
        let ReadOut { files, cfgmtd, ps } = read;
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
        let bridge = match commands::bridge_pids(&ps)[..] {
            [] => Bridge::NotRunning,
            [pid] => Bridge::Running { pid, started: None },
            ref several => Bridge::Several(several.len()),
        };
        Live {
            files,
            board,
            cfgmtd,
            flash: Flash::NotRead,
            bridge,
        }
    }

    /// airOS 8 or later (it keeps `unms.uri.changed` too).
    pub fn airos8(&self) -> bool {
        self.board
            .firmware
            .as_deref()
            .and_then(firmware_major)
            .is_some_and(|m| m >= 8)
    }

    /// The connection string the bridge connects with: `running.cfg`'s when that file
    /// exists, else `system.cfg`'s; `None` when that file has no readable `unms.uri` (a
    /// secret: kept in memory only, to put an antenna back as it was).
    pub fn bridge_connection(&self) -> Option<ConnectionString> {
        let file = self
            .files
            .get(RUNNING_CFG)
            .or_else(|| self.files.get(SYSTEM_CFG))?;
        let uri = SystemCfg::parse(file).get(KEY_URI)?;
        ConnectionString::parse_live(&uri).ok()
    }

    /// When wispctl last changed a configuration file (clock ticks since boot), from the mark.
    pub fn changed_at(&self) -> Option<u64> {
        self.files
            .get(commands::CHANGED_MARK)
            .and_then(commands::parse_start_ticks)
    }

    /// What is wrong with the bridge: none runs, or it started before the last change.
    pub fn bridge_issue(&self) -> Option<BridgeIssue> {
        match self.bridge {
            Bridge::NotRunning => Some(BridgeIssue::NotRunning),
            Bridge::Running {
                started: Some(started),
                ..
            } if self.changed_at().is_some_and(|mark| started < mark) => Some(BridgeIssue::Stale),
            Bridge::Running { .. } | Bridge::Several(_) => None,
        }
    }
}

/// Why an antenna could not be read or changed: an object error in a plan, a failed change in
/// apply. Never holds a file's content, a key or a password.
#[derive(Debug, thiserror::Error)]
pub enum AntennaError {
    /// It could not be read when the snapshot a plan is made from was taken (the reason as it
    /// was given then).
    #[error("{0}")]
    Snapshot(String),
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
    /// The change needs a persist and `/sbin/cfgmtd` is not there (or not executable).
    #[error(
        "{host}: /sbin/cfgmtd is missing or not executable, so the change could not be persisted to flash; not touched"
    )]
    NoCfgmtd {
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
    /// Something was changed on the device and a later step failed.
    #[error(
        "{source}; the procedure stopped half-way on {host} ({done}): the next plan shows what is left, and apply finishes it"
    )]
    Unfinished {
        /// The device.
        host: String,
        /// What had been done: `system.cfg written`, ...
        done: String,
        /// Whether the bridge had been killed and came back (its connection to UISP
        /// restarted): only then can UISP show it connected again.
        restarted: bool,
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
    /// `system.cfg`, `running.cfg` or `persisted copy`.
    pub file: &'static str,
    /// Why it must be rewritten; empty when in sync.
    pub reasons: Vec<String>,
    /// The live connection string, masked, when there is a readable one.
    pub live_masked: Option<String>,
}

/// How an antenna stands: per file (running.cfg only when it exists), the flash copy (when
/// read) and the bridge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Assessment {
    /// system.cfg first.
    pub files: Vec<FileVerdict>,
    /// The persisted copy of system.cfg, when it was read and system.cfg is in step (else it
    /// is persisted anyway).
    pub flash: Option<FileVerdict>,
    /// What is wrong with the bridge.
    pub bridge: Option<BridgeIssue>,
    /// Whether a key that is not the master key was excused by UISP showing the device
    /// connected.
    pub key_excused: bool,
    /// Some file (or the flash copy) holds a key other than the master key (a rewrite or a
    /// persist replaces it).
    pub key_differs: bool,
    /// The flash copy could not be read (`cfgmtd`'s read mode failed) while `system.cfg` is in
    /// step: whether the last persist took is unknown.
    pub flash_unknown: bool,
}

/// What apply does to bring an antenna in step ([`Assessment::steps`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Steps {
    /// Rewrite the `unms.*` lines of `/tmp/system.cfg`.
    pub system: bool,
    /// Rewrite the `unms.*` lines of `/tmp/running.cfg`.
    pub running: bool,
    /// Persist `system.cfg` to flash.
    pub persist: bool,
    /// Restart the bridge (or wait for its supervisor to start one).
    pub restart: bool,
}

impl Assessment {
    /// Nothing to change.
    pub fn in_sync(&self) -> bool {
        self.files
            .iter()
            .chain(&self.flash)
            .all(|f| f.reasons.is_empty())
            && self.bridge.is_none()
    }

    /// Whether the key is all that differs (scheme, host, port, flags and status are right,
    /// the bridge too).
    pub fn only_key_differs(&self) -> bool {
        !self.in_sync()
            && self.bridge.is_none()
            && self
                .files
                .iter()
                .chain(&self.flash)
                .flat_map(|f| &f.reasons)
                .all(|r| r.starts_with("key:"))
    }

    /// What apply does: each file only when it is out of step, a persist when `system.cfg` is
    /// rewritten or the flash copy is out of step, a bridge restart when a file is rewritten
    /// or the bridge does not run the current files.
    pub fn steps(&self) -> Steps {
        let out = |name: &str| {
            self.files
                .iter()
                .any(|f| f.file == name && !f.reasons.is_empty())
        };
        let system = out("system.cfg");
        let running = out("running.cfg");
        let flash = self.flash.as_ref().is_some_and(|f| !f.reasons.is_empty());
        Steps {
            system,
            running,
            // Work left half done (the bridge not on the current files) may include a persist
            // that failed: without a flash copy to compare, persist again (it is idempotent).
            persist: system || flash || (self.flash_unknown && self.bridge.is_some()),
            restart: system || running || self.bridge.is_some(),
        }
    }

    /// Stable text of what is out of step (no key), for fingerprints and plans.
    pub fn describe(&self) -> String {
        let mut parts: Vec<String> = self
            .files
            .iter()
            .filter(|f| !f.reasons.is_empty())
            .map(|f| format!("{}: {}", f.file, f.reasons.join("; ")))
            .collect();
        if let Some(f) = self.flash.as_ref().filter(|f| !f.reasons.is_empty()) {
            parts.push(format!(
                "persisted copy (flash) differs: {}",
                f.reasons.join("; ")
            ));
        }
        if let Some(b) = self.bridge {
            parts.push(b.to_string());
        }
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
    // The flash copy counts only while system.cfg is in step: otherwise it is rewritten and
    // persisted anyway, and an old copy is what is expected (said once, not twice).
    let flash_bytes = match &live.flash {
        Flash::Read(b) if files[0].reasons.is_empty() => Some(b.as_slice()),
        Flash::Read(_) | Flash::NotRead | Flash::Unreadable { .. } => None,
    };
    let flash = flash_bytes.map(|b| verdict("persisted copy", b, desired, connected, airos8));
    let key_differs = |bytes: Option<&[u8]>| {
        bytes
            .and_then(|b| SystemCfg::parse(b).get(KEY_URI))
            .and_then(|u| ConnectionString::parse_live(&u).ok())
            .is_some_and(|u| u.key.expose() != desired.key.expose())
    };
    let flash_unknown =
        matches!(live.flash, Flash::Unreadable { .. }) && files[0].reasons.is_empty();
    let differs = key_differs(Some(system))
        || key_differs(live.files.get(RUNNING_CFG))
        || key_differs(flash_bytes);
    Some(Assessment {
        files,
        flash,
        bridge: live.bridge_issue(),
        key_excused: connected && differs,
        key_differs: differs,
        flash_unknown,
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

/// Reads everything an antenna is assessed on: [`commands::READ`] (files, `cfgmtd`, `ps`),
/// then the bridge's start time ([`commands::bridge_stat`], when one bridge runs) and the flash
/// copy ([`commands::READ_FLASH`], when `/sbin/cfgmtd` is there and so is `system.cfg`).
/// A flash copy `cfgmtd` cannot read is [`Flash::Unreadable`], not an error.
pub async fn read(session: &Session) -> Result<Live, AntennaError> {
    let out = session.exec(commands::READ, None).await?;
    check(session, "read", &out)?;
    let read = commands::parse_read(&out.stdout).map_err(|source| AntennaError::Read {
        host: session.host().to_string(),
        source,
    })?;
    let mut live = Live::new(read);
    if live.files.get(SYSTEM_CFG).is_none() {
        return Ok(live);
    }
    if let Bridge::Running { pid, .. } = live.bridge {
        let out = session.exec(&commands::bridge_stat(pid), None).await?;
        live.bridge = if out.success() {
            Bridge::Running {
                pid,
                started: commands::parse_start_ticks(&out.stdout),
            }
        } else {
            // It ended between `ps` and now.
            Bridge::NotRunning
        };
    }
    if live.cfgmtd {
        let out = session.exec(commands::READ_FLASH, None).await?;
        live.flash = if out.success() {
            Flash::Read(out.stdout)
        } else {
            tracing::debug!(
                host = session.host(),
                status = out.status,
                "airos: cfgmtd could not read the persisted copy"
            );
            Flash::Unreadable { status: out.status }
        };
    }
    Ok(live)
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
    /// `system.cfg` was rewritten.
    pub system: bool,
    /// `running.cfg` was rewritten.
    pub running: bool,
    /// `system.cfg` was persisted to flash.
    pub persisted: bool,
    /// `udapi-bridge` processes killed (their supervisor respawns them).
    pub bridges_restarted: usize,
    /// A bridge was waited for and came up (none ran, or the one killed was respawned).
    pub bridge_started: bool,
}

impl Written {
    /// Whether anything was changed on the device.
    pub fn anything(&self) -> bool {
        self.system || self.running || self.persisted || self.bridges_restarted > 0
    }

    /// What was done, in words (`nothing` when nothing was).
    pub fn describe(&self) -> String {
        let mut parts = Vec::new();
        if self.system {
            parts.push("system.cfg written".to_string());
        }
        if self.running {
            parts.push("running.cfg written".to_string());
        }
        if self.persisted {
            parts.push("persisted".to_string());
        }
        if self.bridges_restarted > 0 {
            parts.push("udapi-bridge killed".to_string());
        }
        if parts.is_empty() {
            "nothing changed yet".into()
        } else {
            parts.join(", ")
        }
    }
}

/// The whole procedure on one antenna, on a fresh read: what [`Assessment::steps`] says
/// (rewrite the files out of step, persist, restart the bridge), then verify. `connected`:
/// UISP shows the device connected (as in [`assess`]). Refuses an antenna whose MAC is not
/// `expected_mac`. Nothing is written when it is in step; nothing either when a persist is
/// needed and `/sbin/cfgmtd` is missing, or several bridges run.
pub async fn write_uri(
    session: &Session,
    desired: &ConnectionString,
    expected_mac: Option<&str>,
    connected: bool,
) -> Result<Written, AntennaError> {
    let host = session.host().to_string();
    let live = read(session).await?;
    check_identity(&host, &live, expected_mac)?;
    let Some(verdict) = assess(&live, desired, connected) else {
        return Err(AntennaError::NoSystemCfg { host });
    };
    let mut done = Written::default();
    if verdict.in_sync() {
        return Ok(done);
    }
    let steps = verdict.steps();
    // Checked before anything is written.
    if steps.persist && !live.cfgmtd {
        return Err(AntennaError::NoCfgmtd { host });
    }
    if let Bridge::Several(count) = live.bridge
        && steps.restart
    {
        return Err(AntennaError::SeveralBridges { host, count });
    }
    let uri = desired.to_secret_string();
    let airos8 = live.airos8();
    let rewrite = |path: &str, wanted: bool| -> Result<Option<Vec<u8>>, AntennaError> {
        match live.files.get(path) {
            Some(bytes) if wanted => SystemCfg::parse(bytes)
                .with_unms(&uri, airos8)
                .map(Some)
                .map_err(|source| AntennaError::Cfg {
                    host: host.clone(),
                    source,
                }),
            _ => Ok(None),
        }
    };
    let plan = Rewrite {
        system: rewrite(SYSTEM_CFG, steps.system)?,
        running: rewrite(RUNNING_CFG, steps.running)?,
        steps,
    };
    match run_steps(session, &plan, &mut done, desired, connected).await {
        Ok(()) => Ok(done),
        Err(e) if done.anything() => Err(AntennaError::Unfinished {
            host,
            done: done.describe(),
            restarted: done.bridges_restarted > 0 && done.bridge_started,
            source: Box::new(e),
        }),
        Err(e) => Err(e),
    }
}

/// The new content of the files to rewrite, and the steps.
struct Rewrite {
    system: Option<Vec<u8>>,
    running: Option<Vec<u8>>,
    steps: Steps,
}

/// Runs the steps in order, recording in `done` what took effect, then verifies.
async fn run_steps(
    session: &Session,
    plan: &Rewrite,
    done: &mut Written,
    desired: &ConnectionString,
    connected: bool,
) -> Result<(), AntennaError> {
    let host = session.host().to_string();
    // Nothing is installed when a write fails (the size check).
    if let Some(n) = &plan.system {
        let out = session
            .exec(&commands::write_system(n.len()), Some(n))
            .await?;
        check(session, "cat", &out)?;
        done.system = true;
    }
    if let Some(n) = &plan.running {
        let out = session
            .exec(&commands::write_running(n.len()), Some(n))
            .await?;
        check(session, "cat", &out)?;
        done.running = true;
    }
    if plan.steps.persist {
        let out = session.exec(commands::PERSIST, None).await?;
        check(session, commands::CFGMTD, &out)?;
        done.persisted = true;
    }
    if plan.steps.restart {
        restart_bridge(session, done).await?;
    }
    let after = read(session).await?;
    let verify = |what: String| AntennaError::Verify {
        host: host.clone(),
        what,
    };
    for (path, written) in [(SYSTEM_CFG, &plan.system), (RUNNING_CFG, &plan.running)] {
        if let Some(w) = written
            && after.files.get(path) != Some(w.as_slice())
        {
            return Err(verify(format!("{path} does not hold what was written")));
        }
    }
    match assess(&after, desired, connected) {
        Some(v) if v.in_sync() => Ok(()),
        Some(v) => Err(verify(v.describe())),
        None => Err(verify("/tmp/system.cfg is gone".into())),
    }
}

/// Kills the bridge child (asked again now: a bridge that respawned on its own since the
/// first look read the old files, and is the one to restart), or, when none runs, waits for
/// its supervisor to start one; either way a new bridge must show up.
async fn restart_bridge(session: &Session, done: &mut Written) -> Result<(), AntennaError> {
    let host = session.host().to_string();
    let now = bridges(session).await?;
    if now.len() > 1 {
        return Err(AntennaError::SeveralBridges {
            host,
            count: now.len(),
        });
    }
    let old = now.first().copied();
    if let Some(pid) = old {
        // Killed, its supervisor respawns it and it reads the new running.cfg. A process that
        // ended on its own between ps and kill is no error: the respawn check below decides.
        let _ = session.exec(&commands::kill(pid), None).await?;
        done.bridges_restarted = 1;
    }
    for attempt in 0..BRIDGE_CHECKS {
        if attempt > 0 {
            tokio::time::sleep(BRIDGE_WAIT).await;
        }
        let now = bridges(session).await?;
        if now.len() == 1 && Some(now[0]) != old {
            done.bridge_started = true;
            return Ok(());
        }
    }
    let within = (BRIDGE_CHECKS as u64 - 1) * BRIDGE_WAIT.as_secs();
    Err(AntennaError::Verify {
        host,
        what: match old {
            Some(_) => format!(
                "udapi-bridge was killed but no new udapi-bridge process showed up within {within} s"
            ),
            None => format!(
                "udapi-bridge is not running and its supervisor did not start it within {within} s (reboot the antenna?)"
            ),
        },
    })
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

    /// `ps` with one bridge (pid 812).
    const PS: &str = "  PID USER       VSZ STAT COMMAND\n  731 ubnt      1476 S    /bin/sh /usr/etc/udapi-bridge-supervisor\n  812 ubnt      9240 S    {exe} /bin/udapi-bridge\n";

    fn live(system: &str, running: Option<&str>, version: &str) -> Live {
        read_out(system, running, version, None, PS)
    }

    /// What READ prints: the files (and the change mark written at `mark` ticks), `cfgmtd`
    /// there, and `ps`.
    fn read_out(
        system: &str,
        running: Option<&str>,
        version: &str,
        mark: Option<u64>,
        ps: &str,
    ) -> Live {
        let mark = mark.map(|t| commands::render_stat(950, "cat", 949, t));
        let out = render_read(
            &[
                (SYSTEM_CFG, Some(system.as_bytes())),
                (RUNNING_CFG, running.map(str::as_bytes)),
                (
                    commands::BOARD_INFO,
                    Some(b"board.name=LiteBeam M5\nboard.hwaddr=F09FC2112233\n"),
                ),
                (commands::BOARD_INFO_PROC, None),
                (commands::VERSION, Some(version.as_bytes())),
                (commands::CHANGED_MARK, mark.as_deref().map(str::as_bytes)),
            ],
            true,
            ps,
        );
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
        let out = render_read(&[(SYSTEM_CFG, None), (RUNNING_CFG, None)], true, PS);
        let l = Live::new(commands::parse_read(&out).unwrap());
        assert!(assess(&l, &desired(), false).is_none());
        let l = live("a=1\n", None, "v6");
        assert!(check_identity("h", &l, Some("F0:9F:C2:11:22:33")).is_ok());
        assert!(check_identity("h", &l, None).is_ok());
        // A MAC is expected and the board gives none: not touched either.
        let out = render_read(
            &[
                (SYSTEM_CFG, Some(b"a=1\n")),
                (commands::BOARD_INFO, Some(b"board.name=LiteBeam M5\n")),
                (commands::BOARD_INFO_PROC, Some(b"board.shortname=LBE5\n")),
            ],
            true,
            PS,
        );
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

    fn good() -> String {
        format!("wss://uisp.new.example:443+{KEY}+allowSelfSignedCertificate")
    }

    fn old() -> String {
        format!("wss://uisp.old.example:443+{KEY}+allowSelfSignedCertificate")
    }

    #[test]
    fn a_persisted_copy_out_of_step_is_a_change_that_persists_again() {
        // Files right, flash still old: what a failed persist leaves.
        let mut l = live(&cfg(&good()), Some(&cfg(&good())), "XW.v6.2.0");
        l.flash = Flash::Read(cfg(&old()).into_bytes());
        let a = assess(&l, &desired(), false).unwrap();
        assert!(!a.in_sync());
        assert_eq!(
            a.describe(),
            "persisted copy (flash) differs: host: uisp.old.example -> uisp.new.example"
        );
        assert_eq!(
            a.steps(),
            Steps {
                persist: true,
                ..Steps::default()
            }
        );
        // With system.cfg out of step, an old copy is expected: said once, as system.cfg's.
        let mut both = live(&cfg(&old()), Some(&cfg(&good())), "XW.v6.2.0");
        both.flash = Flash::Read(cfg(&old()).into_bytes());
        let a = assess(&both, &desired(), false).unwrap();
        assert_eq!(
            a.describe(),
            "system.cfg: host: uisp.old.example -> uisp.new.example"
        );
        assert!(a.flash.is_none() && a.steps().persist);
        // Only the unms.* lines of the copy count: other lines (a change someone has not
        // saved yet) are not wispctl's.
        l.flash = Flash::Read(format!("{}other.line=unsaved\r\n", cfg(&good())).into_bytes());
        assert!(assess(&l, &desired(), false).unwrap().in_sync());
        // A copy with an old key: the key differs (a persist replaces it), and nothing else.
        let other_key = "wss://uisp.new.example:443+ZyXwVuTsRqPoNmLkJiHgFeDcBa9876543210ZyXwVuTsRqPo+allowSelfSignedCertificate";
        l.flash = Flash::Read(cfg(other_key).into_bytes());
        let a = assess(&l, &desired(), false).unwrap();
        assert!(a.key_differs && a.only_key_differs(), "{}", a.describe());
        // Not read, or unreadable: not compared.
        for f in [Flash::NotRead, Flash::Unreadable { status: 1 }] {
            l.flash = f;
            let a = assess(&l, &desired(), false).unwrap();
            assert!(a.in_sync() && a.flash.is_none());
        }
        // The copy never shows in Debug.
        let shown = format!("{:?}", Flash::Read(cfg(&good()).into_bytes()));
        assert!(
            !shown.contains(KEY) && shown.starts_with("Read("),
            "{shown}"
        );
    }

    #[test]
    fn a_bridge_that_is_gone_or_started_before_the_last_write_is_a_change() {
        let files = cfg(&good());
        // No bridge at all.
        let ps = "  PID USER       VSZ STAT COMMAND\n    1 root      1780 S    init\n";
        let l = read_out(&files, Some(&files), "XW.v6.2.0", None, ps);
        assert_eq!(l.bridge, Bridge::NotRunning);
        let a = assess(&l, &desired(), false).unwrap();
        assert_eq!(a.describe(), "udapi-bridge is not running");
        assert!(!a.only_key_differs());
        assert_eq!(
            a.steps(),
            Steps {
                restart: true,
                ..Steps::default()
            }
        );
        // Started (tick 500) before wispctl's last write (tick 900): it read the old files.
        let mut l = read_out(&files, Some(&files), "XW.v6.2.0", Some(900), PS);
        assert_eq!(l.changed_at(), Some(900));
        l.bridge = Bridge::Running {
            pid: 812,
            started: Some(500),
        };
        let a = assess(&l, &desired(), false).unwrap();
        assert_eq!(
            a.describe(),
            "udapi-bridge runs the old connection (it started before wispctl last rewrote the files)"
        );
        assert_eq!(a.bridge, Some(BridgeIssue::Stale));
        assert!(a.steps().restart && !a.steps().persist);
        // The same with a flash copy that cannot be read: the last persist may have failed
        // too, and nothing shows whether it took: persist again.
        l.flash = Flash::Unreadable { status: 1 };
        let a = assess(&l, &desired(), false).unwrap();
        assert!(a.flash_unknown);
        assert!(a.steps().restart && a.steps().persist, "{:?}", a.steps());
        // Unreadable flash alone, with everything else in step, is no change.
        let mut l = read_out(&files, Some(&files), "XW.v6.2.0", Some(900), PS);
        l.flash = Flash::Unreadable { status: 1 };
        l.bridge = Bridge::Running {
            pid: 812,
            started: Some(901),
        };
        assert!(assess(&l, &desired(), false).unwrap().in_sync());
        // Started after it, or when is unknown, or no mark (rebooted since): in step.
        for (started, mark) in [(Some(901), Some(900)), (None, Some(900)), (Some(5), None)] {
            let mut l = read_out(&files, Some(&files), "XW.v6.2.0", mark, PS);
            l.bridge = Bridge::Running { pid: 812, started };
            let a = assess(&l, &desired(), false).unwrap();
            assert!(a.in_sync(), "{started:?} {mark:?}: {}", a.describe());
        }
        // Several: not judged here (apply refuses to guess which to restart).
        let several = format!("{PS}  813 ubnt      9240 S    {{exe}} /bin/udapi-bridge\n");
        let l = read_out(&files, Some(&files), "XW.v6.2.0", Some(900), &several);
        assert_eq!(l.bridge, Bridge::Several(2));
        assert!(assess(&l, &desired(), false).unwrap().in_sync());
    }

    #[test]
    fn every_kind_of_half_done_work_is_described_and_planned() {
        // Files rewritten, persist failed, bridge never restarted: all three reasons, and the
        // steps that finish the job without touching the files again.
        let mut l = read_out(
            &cfg(&good()),
            Some(&cfg(&good())),
            "XW.v6.2.0",
            Some(900),
            PS,
        );
        l.bridge = Bridge::Running {
            pid: 812,
            started: Some(100),
        };
        l.flash = Flash::Read(cfg(&old()).into_bytes());
        let a = assess(&l, &desired(), false).unwrap();
        assert_eq!(
            a.describe(),
            "persisted copy (flash) differs: host: uisp.old.example -> uisp.new.example | udapi-bridge runs the old connection (it started before wispctl last rewrote the files)"
        );
        assert_eq!(
            a.steps(),
            Steps {
                system: false,
                running: false,
                persist: true,
                restart: true
            }
        );
        // Files out of step: each one rewritten only when it is.
        let l = live(&cfg(&good()), Some(&cfg(&old())), "XW.v6.2.0");
        assert_eq!(
            assess(&l, &desired(), false).unwrap().steps(),
            Steps {
                running: true,
                restart: true,
                ..Steps::default()
            }
        );
        let l = live(&cfg(&old()), None, "XW.v6.2.0");
        assert_eq!(
            assess(&l, &desired(), false).unwrap().steps(),
            Steps {
                system: true,
                persist: true,
                restart: true,
                ..Steps::default()
            }
        );
    }

    #[test]
    fn crlf_and_lf_files_are_assessed_alike() {
        // The issue's antenna: correct lines ending in CRLF are in step, and nothing is to be
        // written (so no LF rewrite that no plan shows).
        for eol in ["\n", "\r\n"] {
            let f = format!(
                "aaa.status=enabled{eol}unms.status=enabled{eol}unms.uri={}{eol}wireless.1.ssid=x{eol}",
                good()
            );
            let mut l = live(&f, Some(&f), "XW.v6.2.0");
            l.flash = Flash::Read(f.clone().into_bytes());
            let a = assess(&l, &desired(), false).unwrap();
            assert!(a.in_sync(), "{eol:?}: {}", a.describe());
            assert_eq!(a.steps(), Steps::default());
            // What apply would write for it is the same bytes.
            let u = desired().to_secret_string();
            assert_eq!(
                SystemCfg::parse(f.as_bytes()).with_unms(&u, false).unwrap(),
                f.as_bytes()
            );
            // Out of step in CRLF: the rewrite keeps CRLF on the lines it replaces.
            let stale = f.replace(&good(), &old());
            let l = live(&stale, None, "XW.v6.2.0");
            assert_eq!(
                assess(&l, &desired(), false).unwrap().describe(),
                "system.cfg: host: uisp.old.example -> uisp.new.example"
            );
            assert_eq!(
                SystemCfg::parse(stale.as_bytes())
                    .with_unms(&u, false)
                    .unwrap(),
                f.as_bytes()
            );
        }
    }

    #[test]
    fn errors_say_what_was_done_and_what_is_left() {
        let e = AntennaError::NoCfgmtd {
            host: "10.10.1.5:22".into(),
        };
        assert_eq!(
            e.to_string(),
            "10.10.1.5:22: /sbin/cfgmtd is missing or not executable, so the change could not be persisted to flash; not touched"
        );
        let done = Written {
            system: true,
            running: true,
            ..Written::default()
        };
        assert!(done.anything());
        let e = AntennaError::Unfinished {
            host: "10.10.1.5:22".into(),
            done: done.describe(),
            restarted: false,
            source: Box::new(AntennaError::Command {
                host: "10.10.1.5:22".into(),
                program: commands::CFGMTD.into(),
                status: 1,
                detail: ": cfgmtd: flash write failed".into(),
            }),
        };
        assert_eq!(
            e.to_string(),
            "10.10.1.5:22: `/sbin/cfgmtd` exited with status 1: cfgmtd: flash write failed; the procedure stopped half-way on 10.10.1.5:22 (system.cfg written, running.cfg written): the next plan shows what is left, and apply finishes it"
        );
        assert_eq!(Written::default().describe(), "nothing changed yet");
        assert!(!Written::default().anything());
    }
}
