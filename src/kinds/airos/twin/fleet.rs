//! The lab's airOS antennas: an in-process fleet of SSH servers (russh), one loopback listener
//! per antenna plus an optional jump host, for the airos provider's tests, the demo and the
//! benchmarks.
//!
//! What an antenna simulates, after `shared/reference/airos.md`:
//! - dropbear 2019.78 with password logins only, against the antenna's `logins` (a refused
//!   password leaves `password` on offer, so a client can try its next candidate), and with
//!   [`FleetOptions::legacy_only`] only what old dropbear speaks (SHA-1 Diffie-Hellman,
//!   `hmac-sha1`, `aes128-ctr`/`aes128-cbc`). Its sessions get `PATH=/usr/bin:/bin`, so
//!   `cfgmtd` by bare name is `sh: cfgmtd: not found` (exit 127): only `/sbin/cfgmtd` runs it;
//! - the files `/tmp/system.cfg`, `/tmp/running.cfg`, `/etc/board.info`, `/etc/version`, the
//!   change mark `/tmp/wispctl.changed` each write leaves, and the flash copy that
//!   `/sbin/cfgmtd -w -p /etc/` writes and `/sbin/cfgmtd -r -f /proc/self/fd/1` prints; with
//!   [`AntennaFile::cfgmtd`] `missing`, `/sbin/cfgmtd` is not there;
//! - the `udapi-bridge` process, child of a supervisor that respawns it when killed; the
//!   respawned bridge connects with `unms.uri` from `running.cfg` when it exists, else from
//!   `system.cfg`, and `/proc/PID/stat` gives its start time;
//! - a clock of "ticks since boot" that advances by one per command run: the start time of a
//!   process (`/proc/PID/stat` field 22) is the clock when it started.
//!
//! The state (files, flash, bridge, clock, fault) is what [`AntennaFile`] keeps, so a lab folder
//! carries it from one command to the next. With [`FleetOptions::save_to`], each command that
//! changes an antenna (a file written, a persist, a process killed) saves the whole fleet there
//! at once (atomically), then counts a write for the crash tests
//! ([`crate::lab::twin::crash::wrote`]): one apply of one antenna is up to four such writes
//! (`system.cfg`, `running.cfg`, persist, kill), in that order.
//!
//! What it does not: a shell. It runs exactly the fixed strings of
//! [`crate::kinds::airos::commands`] (compared byte for byte) and refuses everything else
//! with `sh: unsupported command`, exit 127. No other file, no reboot, no UISP connection.
//!
//! Choices where the reference is silent (each one here, so a test can pin it):
//! - A command runs when its channel's EOF arrives, with all of its stdin; stdin beyond
//!   [`MAX_STDIN`] is dropped and a write then fails with `No space left on device` (exit 1),
//!   leaving the file as it was.
//! - Under [`Fault::HangOnCommand`] a command is neither run nor recorded: it never answers.
//!   Under [`Fault::Flood`] every command is recorded and answered with endless output.
//! - A lab file without the newer fields (`cfgmtd`, `bridge`, `supervisor_dead`,
//!   `changed_mark`) loads as a consistent antenna: `/sbin/cfgmtd` there, flash holding `system.cfg` (also when
//!   `flash` is `null`), and a bridge running since boot on the files' URI.
//! - Killing the bridge while its supervisor is dead leaves no bridge: `bridge_pid` 0 and
//!   `bridge_uri` `None`. `kill -9 N` for any other pid (init and dropbear included) answers
//!   `No such process`, exit 1. A `kill` not spelled as [`commands::kill`] spells it (such as
//!   a leading zero) is an unsupported command.
//! - Latency (see [`FleetOptions::latency`]) applies to antennas, not to the jump host; a
//!   tunnel through the jump host pays the antenna's.
//! - [`FleetStats`] counts antennas only (the jump host's logins are not in it).
//! - Lab files are UTF-8; bytes written over SSH that are not come back lossily in
//!   [`Fleet::snapshot`] (never in [`Fleet::state`]).
//!
//! Stopping: [`Fleet::shutdown`] (or dropping the [`Fleet`]) ends every accept loop and every
//! session; every accepted socket is wrapped so that it reads EOF once the fleet stops, which
//! ends russh's own session task too.

use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::io;
use std::net::{Ipv4Addr, SocketAddr};
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll};
use std::time::Duration;

use russh::keys::ssh_key::LineEnding;
use russh::keys::ssh_key::private::Ed25519Keypair;
use russh::keys::{Algorithm, HashAlg, PrivateKey};
use russh::server::{self, Auth, Msg};
use russh::{
    Channel, ChannelId, ChannelOpenFailure, MethodKind, MethodSet, Preferred, SshId, cipher, kex,
    mac,
};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinSet;

use super::super::commands;
use super::super::config::SystemCfg;

/// The most stdin one command keeps (airOS `/tmp` is a small tmpfs).
pub const MAX_STDIN: usize = 16 * 1024 * 1024;

/// The SSH identification every lab antenna sends, as the fleet's firmware does.
const DROPBEAR_ID: &str = "SSH-2.0-dropbear_2019.78";

/// How long [`Fleet::shutdown`] waits for sessions to end by themselves before aborting them.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

// ---------------------------------------------------------------------------------------------
// The files on disk
// ---------------------------------------------------------------------------------------------

/// One antenna as kept on disk (JSON in `LAB/antennas/<group>.json`, inside a [`FleetFile`]).
///
/// `Debug` shows the host and sizes only: the files hold password hashes and Wi-Fi keys.
#[derive(Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AntennaFile {
    /// The address the YAML names, such as `10.10.1.21`: the antenna's identity (the
    /// known-hosts key, the jump host's tunnel destination), not where it listens.
    pub host: String,
    /// `/tmp/system.cfg`.
    pub system_cfg: String,
    /// `/tmp/running.cfg`; `None`: absent.
    pub running_cfg: Option<String>,
    /// `/etc/board.info`.
    pub board_info: String,
    /// `/etc/version`.
    pub version: String,
    /// Accepted `(user, password)` pairs. Lab-only values.
    pub logins: Vec<(String, String)>,
    /// The ed25519 host key, as OpenSSH private-key text (see [`AntennaFile::new_key`]).
    pub host_key: String,
    /// What the last `cfgmtd -w -p /etc/` persisted (a copy of `system.cfg`); `None`: the same
    /// as `system_cfg` (a device whose flash holds what it booted with).
    pub flash: Option<String>,
    /// A fault injected now, kept so that `tamper` and the demo can set one.
    #[serde(default)]
    pub fault: Option<Fault>,
    /// Whether `/sbin/cfgmtd` is there (default) or missing.
    #[serde(default)]
    pub cfgmtd: Cfgmtd,
    /// The `udapi-bridge` process; `None`: one running since boot on the files' URI.
    #[serde(default)]
    pub bridge: Option<BridgeFile>,
    /// Whether the bridge's supervisor was killed (then a killed bridge is not respawned).
    #[serde(default)]
    pub supervisor_dead: bool,
    /// Whether the change mark (`/tmp/wispctl.changed`) exists.
    #[serde(default)]
    pub changed_mark: bool,
}

/// Whether an antenna has `cfgmtd` where airOS keeps it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Cfgmtd {
    /// `/sbin/cfgmtd`, as on airOS (never on the session's `PATH`).
    #[default]
    Sbin,
    /// Not there at all: `/sbin/cfgmtd` is `not found` (exit 127).
    Missing,
}

/// The `udapi-bridge` process as kept on disk. Times and process ids are not kept, only how
/// the bridge's start relates to the change mark, so that two runs that end the same way
/// leave the same file; a fleet started from it numbers them afresh (the mark at tick 1, a
/// bridge started before it at tick 0, after it at tick 2, the clock at 2).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BridgeFile {
    /// Whether one runs.
    pub running: bool,
    /// The URI it connected with (`None`: the file it read had no `unms.uri`).
    pub uri: Option<String>,
    /// It started before the change mark was written (it read the files from before).
    #[serde(default)]
    pub started_before_mark: bool,
}

/// Ticks a fleet started from a file gives the change mark and the bridge (see
/// [`BridgeFile`]).
const TICK_BEFORE_MARK: u64 = 0;
const TICK_MARK: u64 = 1;
const TICK_AFTER_MARK: u64 = 2;

impl fmt::Debug for AntennaFile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AntennaFile")
            .field("host", &self.host)
            .field(
                "system_cfg",
                &format_args!("({} bytes)", self.system_cfg.len()),
            )
            .field(
                "running_cfg",
                &self
                    .running_cfg
                    .as_ref()
                    .map(|r| format!("({} bytes)", r.len())),
            )
            .field("logins", &self.logins.len())
            .field("fault", &self.fault)
            .field("cfgmtd", &self.cfgmtd)
            .finish_non_exhaustive()
    }
}

impl AntennaFile {
    /// A fresh ed25519 host key derived from `seed`, as OpenSSH private-key text, so that
    /// `lab init` is reproducible. The same seed always gives the same key.
    ///
    /// # Warning
    /// Lab-only: anyone knowing the seed knows the key.
    pub fn new_key(seed: u64) -> String {
        let mut hash = Sha256::new();
        hash.update(b"wispctl lab airos host key\0");
        hash.update(seed.to_le_bytes());
        let bytes: [u8; 32] = hash.finalize().into();
        let key = PrivateKey::from(Ed25519Keypair::from_seed(&bytes));
        // Encoding an unencrypted ed25519 key into a String cannot fail: no I/O, no cipher.
        key.to_openssh(LineEnding::LF)
            .expect("an unencrypted ed25519 key encodes")
            .to_string()
    }
}

/// A fault an antenna shows until it is cleared ([`Fleet::set_fault`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Fault {
    /// Every connection is accepted and reset at once (the client sees a reset or EOF before
    /// any SSH banner).
    Refuse,
    /// Connections are accepted and never spoken to (held open until shutdown).
    HangOnConnect,
    /// Logins work, commands never answer.
    HangOnCommand,
    /// Every password is refused.
    RejectLogins,
    /// `/sbin/cfgmtd -w -p /etc/` fails (`Could not open MTD device cfg`, exit 1) and leaves
    /// the flash as it was.
    PersistFails,
    /// Every command is answered with endless output (a broken or hostile device).
    Flood,
}

/// A group of antennas and, optionally, the jump host in front of them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FleetFile {
    /// The antennas; hosts are unique.
    pub antennas: Vec<AntennaFile>,
    /// The jump host, when the antennas are reached through one.
    #[serde(default)]
    pub jump: Option<JumpFile>,
}

/// The jump host: a plain Linux box that forwards `direct-tcpip` channels to the antennas.
/// `Debug` shows no password and no key.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JumpFile {
    /// Accepted `(user, password)` pairs. Lab-only values.
    pub logins: Vec<(String, String)>,
    /// The ed25519 host key, as OpenSSH private-key text.
    pub host_key: String,
}

impl fmt::Debug for JumpFile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JumpFile")
            .field("logins", &self.logins.len())
            .finish_non_exhaustive()
    }
}

/// A fleet file that cannot be served.
#[derive(Debug, thiserror::Error)]
pub enum FleetFileError {
    /// Two antennas with one host.
    #[error("antenna {0} is listed twice")]
    DuplicateHost(String),
    /// A host key that is not OpenSSH private-key text.
    #[error("{owner}: the host key does not parse: {reason}")]
    BadHostKey {
        /// The antenna's host, or `jump`.
        owner: String,
        /// What is wrong (never the key itself).
        reason: String,
    },
}

impl From<FleetFileError> for io::Error {
    fn from(e: FleetFileError) -> io::Error {
        io::Error::new(io::ErrorKind::InvalidData, e)
    }
}

// ---------------------------------------------------------------------------------------------
// Options, state, statistics
// ---------------------------------------------------------------------------------------------

/// How the fleet behaves.
#[derive(Debug, Clone, Default)]
pub struct FleetOptions {
    /// Injected before each answer of an antenna: once before the SSH banner, before each
    /// login attempt's answer, before each channel open's answer, and before each command's
    /// result. A connect plus one command pays it four times. Changeable at run time
    /// ([`Fleet::set_latency`]). Default: none.
    pub latency: Duration,
    /// Antennas offer only what old dropbear does: `diffie-hellman-group14-sha1` and
    /// `diffie-hellman-group1-sha1` key exchange, `hmac-sha1`, `aes128-ctr` and `aes128-cbc`
    /// (the host key stays the antenna's ed25519 key). Default: russh's defaults. The jump
    /// host always speaks russh's defaults.
    pub legacy_only: bool,
    /// Save the fleet to this file (as [`FleetFile`] JSON) after every command that changes an
    /// antenna, then count a write for the crash tests. Default: never saved.
    pub save_to: Option<std::path::PathBuf>,
    /// Told each time an antenna's `udapi-bridge` is respawned (with the URI it connects with)
    /// or killed for good: the lab UISP server the antennas report to. Default: nobody.
    pub bridge_hook: Option<crate::lab::twin::BridgeHook>,
}

/// What an antenna holds now. `Debug` shows sizes, not file contents.
#[derive(Clone, PartialEq, Eq)]
pub struct AntennaState {
    /// `/tmp/system.cfg`.
    pub system_cfg: Vec<u8>,
    /// `/tmp/running.cfg`, `None` when absent.
    pub running_cfg: Option<Vec<u8>>,
    /// The flash copy of `system.cfg` (what `cfgmtd -w -p /etc/` last persisted).
    pub flash: Option<Vec<u8>>,
    /// Whether `/sbin/cfgmtd` is there.
    pub cfgmtd: Cfgmtd,
    /// When the running bridge started, in ticks (`None`: none runs).
    pub bridge_started: Option<u64>,
    /// When the change mark was written, in ticks.
    pub changed_mark: Option<u64>,
    /// The clock, in ticks.
    pub clock: u64,
    /// The URI the `udapi-bridge` process is connected with (`None`: no `unms.uri` line, or no
    /// bridge running).
    pub bridge_uri: Option<String>,
    /// The bridge's process id; 0 when no bridge runs.
    pub bridge_pid: u32,
    /// How many times the supervisor respawned the bridge.
    pub bridge_restarts: u32,
    /// Whether the supervisor runs (once killed, the bridge is never respawned again).
    pub supervisor_alive: bool,
    /// Every command run on this antenna, in order.
    pub commands: Vec<String>,
    /// The commands refused as unsupported (not one of the fixed strings), in order.
    pub rejected: Vec<String>,
}

impl fmt::Debug for AntennaState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let len = |b: &Option<Vec<u8>>| b.as_ref().map(|b| format!("({} bytes)", b.len()));
        f.debug_struct("AntennaState")
            .field(
                "system_cfg",
                &format_args!("({} bytes)", self.system_cfg.len()),
            )
            .field("running_cfg", &len(&self.running_cfg))
            .field("flash", &len(&self.flash))
            .field("cfgmtd", &self.cfgmtd)
            .field("bridge_started", &self.bridge_started)
            .field("changed_mark", &self.changed_mark)
            .field("clock", &self.clock)
            .field("bridge_uri", &self.bridge_uri.as_ref().map(|_| "(set)"))
            .field("bridge_pid", &self.bridge_pid)
            .field("bridge_restarts", &self.bridge_restarts)
            .field("supervisor_alive", &self.supervisor_alive)
            .field("commands", &self.commands)
            .field("rejected", &self.rejected.len())
            .finish()
    }
}

/// Counters over every antenna of the fleet since it started (the jump host is not counted).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FleetStats {
    /// TCP connections accepted (faulted ones included).
    pub connections: u64,
    /// Password attempts accepted.
    pub logins_ok: u64,
    /// Password attempts refused.
    pub logins_refused: u64,
    /// Commands run (unsupported ones included).
    pub commands: u64,
    /// Unsupported commands refused.
    pub rejected: u64,
    /// The most SSH sessions open at the same time.
    pub max_concurrent_sessions: u64,
}

// ---------------------------------------------------------------------------------------------
// One antenna's model
// ---------------------------------------------------------------------------------------------

/// Fixed process ids of the simulated `ps`.
const PID_INIT: u32 = 1;
const PID_DROPBEAR: u32 = 612;
const PID_SUPERVISOR: u32 = 731;
const PID_BRIDGE: u32 = 812;
/// The first pid handed out at run time (`ps` itself, respawned bridges).
const PID_NEXT: u32 = 900;

/// The running `udapi-bridge`.
#[derive(Debug, Clone)]
struct Bridge {
    pid: u32,
    uri: Option<String>,
    started: u64,
}

/// What a command left.
#[derive(Debug, Default)]
struct Reply {
    status: u32,
    stdout: Vec<u8>,
    stderr: Vec<u8>,
    rejected: bool,
    /// It changed the antenna (a file, the flash, a process): the fleet is saved.
    changed: bool,
    /// The bridge was respawned (`Some(uri)`) or is gone (`Some(None)`).
    bridge: Option<Option<String>>,
}

impl Reply {
    fn ok() -> Reply {
        Reply::default()
    }

    fn fail(status: u32, stderr: impl Into<Vec<u8>>) -> Reply {
        Reply {
            status,
            stderr: stderr.into(),
            ..Reply::default()
        }
    }

    fn changed() -> Reply {
        Reply {
            changed: true,
            ..Reply::default()
        }
    }
}

/// One antenna: files, processes, keys, fault and history.
struct Antenna {
    system_cfg: Vec<u8>,
    running_cfg: Option<Vec<u8>>,
    board_info: Vec<u8>,
    version: Vec<u8>,
    flash: Option<Vec<u8>>,
    logins: Vec<(String, String)>,
    host_key: String,
    /// The server configuration new connections get (it holds the host key).
    config: Arc<server::Config>,
    fingerprint: String,
    fault: Option<Fault>,
    cfgmtd: Cfgmtd,
    bridge: Option<Bridge>,
    bridge_restarts: u32,
    supervisor_alive: bool,
    next_pid: u32,
    clock: u64,
    changed_mark: Option<u64>,
    commands: Vec<String>,
    rejected: Vec<String>,
}

impl Antenna {
    fn new(file: &AntennaFile, legacy: bool) -> Result<Antenna, FleetFileError> {
        let key = parse_key(&file.host, &file.host_key)?;
        let fingerprint = fingerprint_of(&key);
        let mut antenna = Antenna {
            system_cfg: file.system_cfg.clone().into_bytes(),
            running_cfg: file.running_cfg.clone().map(String::into_bytes),
            board_info: file.board_info.clone().into_bytes(),
            version: file.version.clone().into_bytes(),
            flash: Some(
                file.flash
                    .clone()
                    .unwrap_or_else(|| file.system_cfg.clone())
                    .into_bytes(),
            ),
            logins: file.logins.clone(),
            host_key: file.host_key.clone(),
            config: Arc::new(antenna_config(key, legacy)),
            fingerprint,
            fault: file.fault,
            cfgmtd: file.cfgmtd,
            bridge: None,
            bridge_restarts: 0,
            supervisor_alive: !file.supervisor_dead,
            next_pid: PID_NEXT,
            clock: TICK_AFTER_MARK,
            changed_mark: file.changed_mark.then_some(TICK_MARK),
            commands: Vec::new(),
            rejected: Vec::new(),
        };
        antenna.bridge = match &file.bridge {
            None => Some(Bridge {
                pid: PID_BRIDGE,
                uri: antenna.live_uri(),
                started: TICK_BEFORE_MARK,
            }),
            Some(b) if b.running => Some(Bridge {
                pid: PID_BRIDGE,
                uri: b.uri.clone(),
                started: if b.started_before_mark {
                    TICK_BEFORE_MARK
                } else {
                    TICK_AFTER_MARK
                },
            }),
            Some(_) => None,
        };
        Ok(antenna)
    }

    /// The MAC its board reports (`board.hwaddr`), as written there.
    fn mac(&self) -> String {
        String::from_utf8_lossy(&self.board_info)
            .lines()
            .find_map(|l| l.strip_prefix("board.hwaddr="))
            .unwrap_or_default()
            .trim()
            .to_string()
    }

    /// The URI a bridge starting now connects with.
    fn live_uri(&self) -> Option<String> {
        let source = self.running_cfg.as_deref().unwrap_or(&self.system_cfg);
        SystemCfg::parse(source).get("unms.uri")
    }

    fn pid(&mut self) -> u32 {
        let pid = self.next_pid;
        self.next_pid += 1;
        pid
    }

    /// Runs one command with all of its stdin (`overflowed`: more was sent than kept).
    fn run(&mut self, command: &str, stdin: &[u8], overflowed: bool) -> Reply {
        self.commands.push(command.to_string());
        self.clock += 1;
        let write_failed = || {
            Reply::fail(
                1,
                "cat: write error: No space left on device\n"
                    .as_bytes()
                    .to_vec(),
            )
        };
        let no_cfgmtd = || Reply::fail(127, b"sh: /sbin/cfgmtd: not found\n".to_vec());
        if command == commands::READ {
            let ps = self.ps();
            let board_proc: Option<&[u8]> = None;
            let mark = self
                .changed_mark
                .map(|t| commands::render_stat(PID_NEXT - 1, "cat", PID_NEXT - 2, t));
            let files = [
                (commands::SYSTEM_CFG, Some(self.system_cfg.as_slice())),
                (commands::RUNNING_CFG, self.running_cfg.as_deref()),
                (commands::BOARD_INFO, Some(self.board_info.as_slice())),
                (commands::BOARD_INFO_PROC, board_proc),
                (commands::VERSION, Some(self.version.as_slice())),
                (commands::CHANGED_MARK, mark.as_deref().map(str::as_bytes)),
            ];
            debug_assert!(
                files
                    .iter()
                    .map(|(p, _)| *p)
                    .eq(commands::READ_FILES.iter().copied())
            );
            Reply {
                stdout: commands::render_read(&files, self.cfgmtd == Cfgmtd::Sbin, &ps),
                ..Reply::ok()
            }
        } else if let Some((path, len)) = commands::parse_write(command) {
            if overflowed {
                return write_failed();
            }
            // The size check of the real command: a short stdin (a dropped link) installs
            // nothing.
            if stdin.len() != len {
                return Reply::fail(1, Vec::new());
            }
            // The mark first (the `cat /proc/self/stat` before the `mv`), then the file.
            self.changed_mark = Some(self.clock);
            if path == commands::SYSTEM_CFG {
                self.system_cfg = stdin.to_vec();
            } else {
                self.running_cfg = Some(stdin.to_vec());
            }
            Reply::changed()
        } else if command == commands::PERSIST {
            if self.cfgmtd == Cfgmtd::Missing {
                return no_cfgmtd();
            }
            if self.fault == Some(Fault::PersistFails) {
                return Reply::fail(1, b"Could not open MTD device cfg\n".to_vec());
            }
            self.flash = Some(self.system_cfg.clone());
            Reply::changed()
        } else if command == commands::READ_FLASH {
            if self.cfgmtd == Cfgmtd::Missing {
                return no_cfgmtd();
            }
            Reply {
                stdout: self.flash.clone().unwrap_or_default(),
                ..Reply::ok()
            }
        } else if command.split(' ').next() == Some("cfgmtd") {
            // Not on dropbear 2019.78's PATH (/usr/bin:/bin), wherever it is.
            Reply::fail(127, b"sh: cfgmtd: not found\n".to_vec())
        } else if let Some(pid) = parse_stat(command) {
            match &self.bridge {
                Some(b) if b.pid == pid => Reply {
                    stdout: commands::render_stat(pid, "exe", PID_SUPERVISOR, b.started)
                        .into_bytes(),
                    ..Reply::ok()
                },
                _ => Reply::fail(
                    1,
                    format!("cat: can't open '/proc/{pid}/stat': No such file or directory\n")
                        .into_bytes(),
                ),
            }
        } else if command == commands::PS {
            Reply {
                stdout: self.ps().into_bytes(),
                ..Reply::ok()
            }
        } else if let Some(pid) = parse_kill(command) {
            self.kill(pid)
        } else {
            self.rejected.push(command.to_string());
            Reply {
                rejected: true,
                ..Reply::fail(127, b"sh: unsupported command\n".to_vec())
            }
        }
    }

    /// Busybox `ps`, the way airOS prints it.
    fn ps(&mut self) -> String {
        let own = self.pid();
        let mut out = String::from("  PID USER       VSZ STAT COMMAND\n");
        let mut row = |pid: u32, vsz: u32, stat: &str, command: &str| {
            out.push_str(&format!(
                "{pid:>5} {:<8} {vsz:>5} {stat:<4} {command}\n",
                "ubnt"
            ));
        };
        row(PID_INIT, 1780, "S", "init");
        row(
            PID_DROPBEAR,
            1096,
            "S",
            "/usr/sbin/dropbear -r /etc/persistent/dropbear_rsa_host_key -p 22",
        );
        if self.supervisor_alive {
            row(
                PID_SUPERVISOR,
                1476,
                "S",
                "/bin/sh /usr/etc/udapi-bridge-supervisor",
            );
        }
        if let Some(bridge) = &self.bridge {
            row(bridge.pid, 9240, "S", "{exe} /bin/udapi-bridge");
        }
        row(own, 1476, "R", "ps");
        out
    }

    fn kill(&mut self, pid: u32) -> Reply {
        if self.bridge.as_ref().is_some_and(|b| b.pid == pid) {
            self.bridge = None;
            if self.supervisor_alive {
                let pid = self.pid();
                self.bridge = Some(Bridge {
                    pid,
                    uri: self.live_uri(),
                    started: self.clock,
                });
                self.bridge_restarts += 1;
            }
            Reply {
                bridge: Some(self.bridge.as_ref().and_then(|b| b.uri.clone())),
                ..Reply::changed()
            }
        } else if pid == PID_SUPERVISOR && self.supervisor_alive {
            self.supervisor_alive = false;
            Reply::changed()
        } else {
            Reply::fail(
                1,
                format!("kill: can't kill pid {pid}: No such process\n").into_bytes(),
            )
        }
    }

    fn state(&self) -> AntennaState {
        AntennaState {
            system_cfg: self.system_cfg.clone(),
            running_cfg: self.running_cfg.clone(),
            flash: self.flash.clone(),
            cfgmtd: self.cfgmtd,
            bridge_started: self.bridge.as_ref().map(|b| b.started),
            changed_mark: self.changed_mark,
            clock: self.clock,
            bridge_uri: self.bridge.as_ref().and_then(|b| b.uri.clone()),
            bridge_pid: self.bridge.as_ref().map_or(0, |b| b.pid),
            bridge_restarts: self.bridge_restarts,
            supervisor_alive: self.supervisor_alive,
            commands: self.commands.clone(),
            rejected: self.rejected.clone(),
        }
    }

    fn file(&self, host: &str) -> AntennaFile {
        let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
        AntennaFile {
            host: host.to_string(),
            system_cfg: text(&self.system_cfg),
            running_cfg: self.running_cfg.as_deref().map(text),
            board_info: text(&self.board_info),
            version: text(&self.version),
            logins: self.logins.clone(),
            host_key: self.host_key.clone(),
            flash: self.flash.as_deref().map(text),
            fault: self.fault,
            cfgmtd: self.cfgmtd,
            bridge: Some(match &self.bridge {
                Some(b) => BridgeFile {
                    running: true,
                    uri: b.uri.clone(),
                    started_before_mark: self.changed_mark.is_some_and(|m| b.started < m),
                },
                None => BridgeFile {
                    running: false,
                    uri: None,
                    started_before_mark: false,
                },
            }),
            supervisor_dead: !self.supervisor_alive,
            changed_mark: self.changed_mark.is_some(),
        }
    }
}

/// `cat /proc/N/stat` exactly as [`commands::bridge_stat`] writes it.
fn parse_stat(command: &str) -> Option<u32> {
    let digits = command.strip_prefix("cat /proc/")?.strip_suffix("/stat")?;
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let pid: u32 = digits.parse().ok()?;
    (commands::bridge_stat(pid) == command).then_some(pid)
}

/// `kill -9 N` exactly as [`commands::kill`] writes it.
fn parse_kill(command: &str) -> Option<u32> {
    let digits = command.strip_prefix("kill -9 ")?;
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let pid: u32 = digits.parse().ok()?;
    (commands::kill(pid) == command).then_some(pid)
}

fn parse_key(owner: &str, text: &str) -> Result<PrivateKey, FleetFileError> {
    let key = PrivateKey::from_openssh(text).map_err(|e| FleetFileError::BadHostKey {
        owner: owner.to_string(),
        reason: e.to_string(),
    })?;
    if key.algorithm() != Algorithm::Ed25519 {
        return Err(FleetFileError::BadHostKey {
            owner: owner.to_string(),
            reason: format!("{} key, expected ed25519", key.algorithm()),
        });
    }
    Ok(key)
}

fn fingerprint_of(key: &PrivateKey) -> String {
    key.public_key().fingerprint(HashAlg::Sha256).to_string()
}

/// The server configuration of an antenna.
fn antenna_config(key: PrivateKey, legacy: bool) -> server::Config {
    let preferred = if legacy {
        Preferred {
            kex: vec![kex::DH_G14_SHA1, kex::DH_G1_SHA1].into(),
            key: vec![Algorithm::Ed25519].into(),
            cipher: vec![cipher::AES_128_CTR, cipher::AES_128_CBC].into(),
            mac: vec![mac::HMAC_SHA1].into(),
            compression: vec![russh::compression::NONE].into(),
            ..Preferred::default()
        }
    } else {
        Preferred::default()
    };
    server::Config {
        server_id: SshId::Standard(DROPBEAR_ID.into()),
        ..base_config(key, preferred)
    }
}

fn base_config(key: PrivateKey, preferred: Preferred) -> server::Config {
    server::Config {
        keys: vec![key],
        preferred,
        methods: password_only(),
        // Latency is injected on purpose instead; rejections are answered at once.
        auth_rejection_time: Duration::ZERO,
        auth_rejection_time_initial: Some(Duration::ZERO),
        // dropbear has no idle timeout by default; shutdown ends idle sessions.
        inactivity_timeout: None,
        nodelay: true,
        ..Default::default()
    }
}

fn password_only() -> MethodSet {
    MethodSet::from(&[MethodKind::Password][..])
}

/// A command's first word for logs, as the client names it: `command` when that word looks
/// like more than a program name (an assignment, or too long).
fn program_name(command: &str) -> &str {
    match command.split_whitespace().next() {
        Some(word) if !word.contains('=') && word.len() <= 64 => word,
        _ => "command",
    }
}

fn check_login(logins: &[(String, String)], user: &str, password: &str) -> bool {
    logins.iter().any(|(u, p)| u == user && p == password)
}

fn refused() -> Auth {
    // As dropbear does: password stays on offer.
    Auth::Reject {
        proceed_with_methods: Some(password_only()),
        partial_success: false,
    }
}

// ---------------------------------------------------------------------------------------------
// The fleet
// ---------------------------------------------------------------------------------------------

/// One antenna's place in the fleet.
struct Slot {
    host: String,
    addr: SocketAddr,
    /// [`FleetOptions::legacy_only`], for the configuration of a changed key.
    legacy: bool,
    model: Mutex<Antenna>,
}

impl Slot {
    fn model(&self) -> MutexGuard<'_, Antenna> {
        // Every change is a few assignments: a panic elsewhere leaves a usable model.
        self.model.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

struct JumpHost {
    addr: SocketAddr,
    fingerprint: String,
    file: JumpFile,
}

/// A running fleet: one SSH server per antenna on 127.0.0.1 (ephemeral ports), plus the jump
/// host when the file has one. Serves in the tokio runtime it was started in.
///
/// # Warning
/// Dropping it stops everything too, but without waiting: call [`Fleet::shutdown`] when the
/// ports must be free afterwards.
pub struct Fleet {
    slots: Vec<Arc<Slot>>,
    by_host: HashMap<String, usize>,
    jump: Option<JumpHost>,
    shared: Arc<Shared>,
    stop: watch::Sender<bool>,
}

impl fmt::Debug for Fleet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Fleet")
            .field("antennas", &self.slots.len())
            .field("jump", &self.jump.as_ref().map(|j| j.addr))
            .finish_non_exhaustive()
    }
}

impl Fleet {
    /// Binds one listener per antenna (and one for the jump host) on 127.0.0.1 and starts
    /// serving. Raises the open-files soft limit to the hard limit first, so that a thousand
    /// antennas fit in one process.
    ///
    /// Errors: a duplicate host or a host key that does not parse ([`FleetFileError`], as
    /// `InvalidData`), or a failed bind.
    pub async fn start(file: &FleetFile, opts: FleetOptions) -> io::Result<Fleet> {
        raise_open_files_limit();
        let mut by_host = HashMap::new();
        let mut slots = Vec::with_capacity(file.antennas.len());
        let mut listeners = Vec::with_capacity(file.antennas.len());
        for (i, a) in file.antennas.iter().enumerate() {
            if by_host.insert(a.host.clone(), i).is_some() {
                return Err(FleetFileError::DuplicateHost(a.host.clone()).into());
            }
            let model = Antenna::new(a, opts.legacy_only)?;
            let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await?;
            slots.push(Arc::new(Slot {
                host: a.host.clone(),
                addr: listener.local_addr()?,
                legacy: opts.legacy_only,
                model: Mutex::new(model),
            }));
            listeners.push(listener);
        }
        let jump = match &file.jump {
            Some(j) => {
                let key = parse_key("jump", &j.host_key)?;
                let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await?;
                Some((j.clone(), key, listener))
            }
            None => None,
        };

        let (stop, stopped) = watch::channel(false);
        let saver = opts.save_to.clone().map(|path| Saver {
            path,
            slots: slots.clone(),
            jump: file.jump.clone(),
            lock: Mutex::new(()),
        });
        let shared = Arc::new(Shared {
            latency_nanos: AtomicU64::new(nanos(opts.latency)),
            stats: Counters::default(),
            stopped,
            tasks: Tasks::new(),
            saver,
            bridge_hook: opts.bridge_hook.clone(),
        });
        for (slot, listener) in slots.iter().zip(listeners) {
            let (slot, shared2) = (slot.clone(), shared.clone());
            shared
                .tasks
                .spawn(antenna_accept_loop(listener, slot, shared2));
        }
        let jump = match jump {
            Some((file, key, listener)) => {
                let addr = listener.local_addr()?;
                let fingerprint = fingerprint_of(&key);
                let routes: HashMap<String, SocketAddr> =
                    slots.iter().map(|s| (s.host.clone(), s.addr)).collect();
                let host = Arc::new(JumpServer {
                    config: Arc::new(base_config(key, Preferred::default())),
                    logins: file.logins.clone(),
                    routes,
                });
                shared
                    .tasks
                    .spawn(jump_accept_loop(listener, host, shared.clone()));
                Some(JumpHost {
                    addr,
                    fingerprint,
                    file,
                })
            }
            None => None,
        };
        tracing::debug!(
            antennas = slots.len(),
            jump = jump.is_some(),
            "lab airos: fleet started"
        );
        Ok(Fleet {
            slots,
            by_host,
            jump,
            shared,
            stop,
        })
    }

    fn slot(&self, host: &str) -> Option<&Slot> {
        self.by_host.get(host).map(|&i| &*self.slots[i])
    }

    /// Where antenna `host` listens (always 127.0.0.1).
    pub fn addr(&self, host: &str) -> Option<SocketAddr> {
        self.slot(host).map(|s| s.addr)
    }

    /// Where the jump host listens, when there is one.
    pub fn jump_addr(&self) -> Option<SocketAddr> {
        self.jump.as_ref().map(|j| j.addr)
    }

    /// The SHA-256 fingerprint of antenna `host`'s current host key, as OpenSSH prints it
    /// (`SHA256:...`).
    pub fn fingerprint(&self, host: &str) -> Option<String> {
        self.slot(host).map(|s| s.model().fingerprint.clone())
    }

    /// The jump host's fingerprint, when there is one.
    pub fn jump_fingerprint(&self) -> Option<String> {
        self.jump.as_ref().map(|j| j.fingerprint.clone())
    }

    /// What antenna `host` holds now.
    pub fn state(&self, host: &str) -> Option<AntennaState> {
        self.slot(host).map(|s| s.model().state())
    }

    /// Injects (or with `None` clears) a fault on antenna `host`; it applies to what happens
    /// next (connections already past the fault's point are not affected). Unknown hosts are
    /// ignored.
    pub fn set_fault(&self, host: &str, fault: Option<Fault>) {
        if let Some(s) = self.slot(host) {
            s.model().fault = fault;
        }
    }

    /// Gives antenna `host` the key [`AntennaFile::new_key`] derives from `seed` (a reset
    /// device); new connections present it, open sessions are not affected. Unknown hosts are
    /// ignored.
    pub fn change_host_key(&self, host: &str, seed: u64) {
        let Some(s) = self.slot(host) else {
            return;
        };
        let text = AntennaFile::new_key(seed);
        let key = match parse_key(host, &text) {
            Ok(k) => k,
            // new_key's own output always parses; nothing to change otherwise.
            Err(e) => {
                tracing::debug!(host, error = %e, "lab airos: generated key did not parse");
                return;
            }
        };
        let mut model = s.model();
        model.fingerprint = fingerprint_of(&key);
        model.config = Arc::new(antenna_config(key, s.legacy));
        model.host_key = text;
    }

    /// Changes the injected latency for everything that follows.
    pub fn set_latency(&self, d: Duration) {
        self.shared.latency_nanos.store(nanos(d), Ordering::Relaxed);
    }

    /// The counters since the fleet started.
    pub fn stats(&self) -> FleetStats {
        let c = &self.shared.stats;
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        FleetStats {
            connections: get(&c.connections),
            logins_ok: get(&c.logins_ok),
            logins_refused: get(&c.logins_refused),
            commands: get(&c.commands),
            rejected: get(&c.rejected),
            max_concurrent_sessions: get(&c.max_sessions),
        }
    }

    /// The fleet as it is now (files, keys, faults), in the order it was started with, for
    /// saving back to disk.
    pub fn snapshot(&self) -> FleetFile {
        snapshot(&self.slots, self.jump.as_ref().map(|j| &j.file))
    }

    /// Stops every listener and every session, and waits until all of it is gone (sessions
    /// still busy after a few seconds are aborted).
    pub async fn shutdown(self) {
        self.stop.send_replace(true);
        self.shared.tasks.close().await;
        tracing::debug!(antennas = self.slots.len(), "lab airos: fleet stopped");
    }
}

fn snapshot(slots: &[Arc<Slot>], jump: Option<&JumpFile>) -> FleetFile {
    FleetFile {
        antennas: slots.iter().map(|s| s.model().file(&s.host)).collect(),
        jump: jump.cloned(),
    }
}

/// Saves the fleet after a command that changed an antenna ([`FleetOptions::save_to`]).
struct Saver {
    path: std::path::PathBuf,
    slots: Vec<Arc<Slot>>,
    jump: Option<JumpFile>,
    /// One save at a time, each taking its snapshot inside: the last save holds every change.
    lock: Mutex<()>,
}

impl Saver {
    /// Saves atomically, then counts the write (a crash point). A save that fails is logged:
    /// the change itself happened.
    fn save(&self) {
        let _one = self.lock.lock().unwrap_or_else(PoisonError::into_inner);
        let file = snapshot(&self.slots, self.jump.as_ref());
        match crate::lab::twin::write_json(&self.path, &file) {
            Ok(()) => crate::lab::twin::crash::wrote(),
            Err(e) => tracing::error!("lab airos: {e:#}"),
        }
    }
}

fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

/// What every task of the fleet shares.
struct Shared {
    latency_nanos: AtomicU64,
    stats: Counters,
    /// `true` (or the sender gone) once the fleet stops.
    stopped: watch::Receiver<bool>,
    tasks: Tasks,
    /// Where the fleet is saved after a change, if anywhere.
    saver: Option<Saver>,
    /// [`FleetOptions::bridge_hook`].
    bridge_hook: Option<crate::lab::twin::BridgeHook>,
}

#[derive(Default)]
struct Counters {
    connections: AtomicU64,
    logins_ok: AtomicU64,
    logins_refused: AtomicU64,
    commands: AtomicU64,
    rejected: AtomicU64,
    sessions: AtomicU64,
    max_sessions: AtomicU64,
}

impl Shared {
    /// Waits out the injected latency (at once when the fleet stops).
    async fn pause(&self) {
        let d = Duration::from_nanos(self.latency_nanos.load(Ordering::Relaxed));
        if d.is_zero() {
            return;
        }
        let mut stopped = self.stopped.clone();
        tokio::select! {
            _ = tokio::time::sleep(d) => {}
            _ = stopped.wait_for(|s| *s) => {}
        }
    }

    fn count(&self, counter: impl Fn(&Counters) -> &AtomicU64) {
        counter(&self.stats).fetch_add(1, Ordering::Relaxed);
    }

    /// Counts an SSH session as open until the guard drops.
    fn session(self: &Arc<Self>) -> SessionGuard {
        let now = self.stats.sessions.fetch_add(1, Ordering::Relaxed) + 1;
        self.stats.max_sessions.fetch_max(now, Ordering::Relaxed);
        SessionGuard(self.clone())
    }
}

struct SessionGuard(Arc<Shared>);

impl Drop for SessionGuard {
    fn drop(&mut self) {
        self.0.stats.sessions.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Every task the fleet spawned, so that shutdown can wait for them all.
struct Tasks {
    /// `None` once closed: later spawns are dropped.
    set: Mutex<Option<JoinSet<()>>>,
}

impl Tasks {
    fn new() -> Tasks {
        Tasks {
            set: Mutex::new(Some(JoinSet::new())),
        }
    }

    fn spawn(&self, task: impl Future<Output = ()> + Send + 'static) {
        let mut set = self.set.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(set) = set.as_mut() {
            // Reap finished tasks so a long benchmark does not pile them up.
            while set.try_join_next().is_some() {}
            set.spawn(task);
        }
    }

    async fn close(&self) {
        let taken = self
            .set
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        let Some(mut set) = taken else {
            return;
        };
        let deadline = tokio::time::Instant::now() + SHUTDOWN_GRACE;
        loop {
            match tokio::time::timeout_at(deadline, set.join_next()).await {
                Ok(Some(_)) => {}
                Ok(None) => return,
                Err(_) => {
                    tracing::debug!(left = set.len(), "lab airos: aborting sessions still busy");
                    set.shutdown().await;
                    return;
                }
            }
        }
    }
}

/// Sets the soft limit of open files to the hard limit (each antenna holds a listener, each
/// session two sockets in this process).
fn raise_open_files_limit() {
    if let Ok((soft, hard)) = rlimit::Resource::NOFILE.get()
        && soft < hard
        && rlimit::Resource::NOFILE.set(hard, hard).is_err()
    {
        tracing::debug!("lab airos: could not raise the open-files limit");
    }
}

// ---------------------------------------------------------------------------------------------
// Serving antennas
// ---------------------------------------------------------------------------------------------

/// The next connection, or `None` once the fleet stops. Accept errors (out of descriptors and
/// the like) are waited out instead of spun on.
async fn next_connection(
    listener: &TcpListener,
    stopped: &mut watch::Receiver<bool>,
) -> Option<TcpStream> {
    loop {
        let accepted = tokio::select! {
            _ = stopped.wait_for(|s| *s) => return None,
            accepted = listener.accept() => accepted,
        };
        match accepted {
            Ok((tcp, _)) => {
                // `server::run_stream` leaves Nagle's algorithm on (its `nodelay` applies to
                // the sockets russh accepts itself): each small answer would wait for the
                // client's delayed ACK.
                let _ = tcp.set_nodelay(true);
                return Some(tcp);
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(10)).await,
        }
    }
}

async fn antenna_accept_loop(listener: TcpListener, slot: Arc<Slot>, shared: Arc<Shared>) {
    let mut stopped = shared.stopped.clone();
    while let Some(tcp) = next_connection(&listener, &mut stopped).await {
        shared.count(|c| &c.connections);
        let fault = slot.model().fault;
        match fault {
            Some(Fault::Refuse) => {
                // A reset rather than an orderly close, as a closed port looks to a client.
                let _ = tcp.set_zero_linger();
                drop(tcp);
            }
            Some(Fault::HangOnConnect) => {
                let mut stopped = shared.stopped.clone();
                shared.tasks.spawn(async move {
                    let _held = tcp;
                    let _ = stopped.wait_for(|s| *s).await;
                });
            }
            _ => {
                let (slot, shared2) = (slot.clone(), shared.clone());
                shared.tasks.spawn(serve_antenna(tcp, slot, shared2));
            }
        }
    }
    tracing::debug!(host = %slot.host, "lab airos: listener closed");
}

async fn serve_antenna(tcp: TcpStream, slot: Arc<Slot>, shared: Arc<Shared>) {
    shared.pause().await;
    if *shared.stopped.borrow() {
        return;
    }
    let config = slot.model().config.clone();
    let _open = shared.session();
    let stream = Stoppable::new(tcp, shared.stopped.clone());
    let peer = AntennaPeer {
        slot,
        shared: shared.clone(),
        execs: HashMap::new(),
    };
    match server::run_stream(config, stream, peer).await {
        Ok(session) => {
            let _ = session.await;
        }
        Err(e) => tracing::debug!(error = %e, "lab airos: session setup failed"),
    }
}

/// A command received and waiting for its stdin's EOF.
struct Exec {
    command: String,
    stdin: Vec<u8>,
    overflowed: bool,
}

/// One SSH connection to an antenna.
struct AntennaPeer {
    slot: Arc<Slot>,
    shared: Arc<Shared>,
    execs: HashMap<ChannelId, Exec>,
}

impl server::Handler for AntennaPeer {
    type Error = russh::Error;

    async fn auth_password(&mut self, user: &str, password: &str) -> Result<Auth, Self::Error> {
        self.shared.pause().await;
        let ok = {
            let model = self.slot.model();
            model.fault != Some(Fault::RejectLogins) && check_login(&model.logins, user, password)
        };
        tracing::debug!(host = %self.slot.host, user, ok, "lab airos: login attempt");
        if ok {
            self.shared.count(|c| &c.logins_ok);
            Ok(Auth::Accept)
        } else {
            self.shared.count(|c| &c.logins_refused);
            Ok(refused())
        }
    }

    async fn channel_open_session(
        &mut self,
        _channel: Channel<Msg>,
        reply: server::ChannelOpenHandle,
        _session: &mut server::Session,
    ) -> Result<(), Self::Error> {
        self.shared.pause().await;
        reply.accept().await;
        Ok(())
    }

    async fn exec_request(
        &mut self,
        channel: ChannelId,
        data: &[u8],
        session: &mut server::Session,
    ) -> Result<(), Self::Error> {
        session.channel_success(channel)?;
        self.execs.insert(
            channel,
            Exec {
                command: String::from_utf8_lossy(data).into_owned(),
                stdin: Vec::new(),
                overflowed: false,
            },
        );
        Ok(())
    }

    async fn data(
        &mut self,
        channel: ChannelId,
        data: &[u8],
        _session: &mut server::Session,
    ) -> Result<(), Self::Error> {
        if let Some(exec) = self.execs.get_mut(&channel) {
            if exec.stdin.len() + data.len() > MAX_STDIN {
                exec.overflowed = true;
            } else {
                exec.stdin.extend_from_slice(data);
            }
        }
        Ok(())
    }

    async fn channel_eof(
        &mut self,
        channel: ChannelId,
        session: &mut server::Session,
    ) -> Result<(), Self::Error> {
        let Some(exec) = self.execs.remove(&channel) else {
            return Ok(());
        };
        let program = program_name(&exec.command);
        let reply = {
            let mut model = self.slot.model();
            match model.fault {
                Some(Fault::HangOnCommand) => {
                    tracing::debug!(host = %self.slot.host, program, "lab airos: command left hanging");
                    return Ok(());
                }
                Some(Fault::Flood) => {
                    model.commands.push(exec.command.clone());
                    drop(model);
                    self.shared.count(|c| &c.commands);
                    tracing::debug!(host = %self.slot.host, program, "lab airos: flooding");
                    let handle = session.handle();
                    let mut stopped = self.shared.stopped.clone();
                    self.shared.tasks.spawn(async move {
                        let chunk = b"wispctl-file /tmp/system.cfg 99999999999\n".repeat(1024);
                        loop {
                            tokio::select! {
                                sent = handle.data(channel, chunk.clone()) => if sent.is_err() { break },
                                _ = stopped.wait_for(|s| *s) => break,
                            }
                        }
                    });
                    return Ok(());
                }
                _ => model.run(&exec.command, &exec.stdin, exec.overflowed),
            }
        };
        // UISP hears of the bridge before the fleet is saved (a crash point): a process killed
        // there leaves a lab where UISP already shows what the restarted bridge did.
        if let (Some(uri), Some(hook)) = (&reply.bridge, &self.shared.bridge_hook) {
            let mac = self.slot.model().mac();
            hook.call(&crate::lab::twin::BridgeEvent {
                mac: &mac,
                ip: &self.slot.host,
                uri: uri.as_deref(),
            });
        }
        if reply.changed
            && let Some(saver) = &self.shared.saver
        {
            saver.save();
        }
        tracing::debug!(host = %self.slot.host, program, status = reply.status, "lab airos: command");
        self.shared.count(|c| &c.commands);
        if reply.rejected {
            self.shared.count(|c| &c.rejected);
        }
        self.shared.pause().await;
        if !reply.stdout.is_empty() {
            session.data(channel, reply.stdout)?;
        }
        if !reply.stderr.is_empty() {
            session.extended_data(channel, 1, reply.stderr)?;
        }
        session.exit_status_request(channel, reply.status)?;
        session.eof(channel)?;
        session.close(channel)
    }

    async fn channel_close(
        &mut self,
        channel: ChannelId,
        _session: &mut server::Session,
    ) -> Result<(), Self::Error> {
        self.execs.remove(&channel);
        Ok(())
    }
}

// ---------------------------------------------------------------------------------------------
// The jump host
// ---------------------------------------------------------------------------------------------

struct JumpServer {
    config: Arc<server::Config>,
    logins: Vec<(String, String)>,
    /// Antenna host → where it listens. The only places a tunnel may lead.
    routes: HashMap<String, SocketAddr>,
}

async fn jump_accept_loop(listener: TcpListener, host: Arc<JumpServer>, shared: Arc<Shared>) {
    let mut stopped = shared.stopped.clone();
    while let Some(tcp) = next_connection(&listener, &mut stopped).await {
        let peer = JumpPeer {
            host: host.clone(),
            shared: shared.clone(),
        };
        let config = host.config.clone();
        let stream = Stoppable::new(tcp, shared.stopped.clone());
        shared.tasks.spawn(async move {
            match server::run_stream(config, stream, peer).await {
                Ok(session) => {
                    let _ = session.await;
                }
                Err(e) => tracing::debug!(error = %e, "lab airos: jump session setup failed"),
            }
        });
    }
}

/// One SSH connection to the jump host.
struct JumpPeer {
    host: Arc<JumpServer>,
    shared: Arc<Shared>,
}

impl server::Handler for JumpPeer {
    type Error = russh::Error;

    async fn auth_password(&mut self, user: &str, password: &str) -> Result<Auth, Self::Error> {
        Ok(if check_login(&self.host.logins, user, password) {
            Auth::Accept
        } else {
            refused()
        })
    }

    async fn channel_open_direct_tcpip(
        &mut self,
        channel: Channel<Msg>,
        host_to_connect: &str,
        port_to_connect: u32,
        _originator_address: &str,
        _originator_port: u32,
        reply: server::ChannelOpenHandle,
        _session: &mut server::Session,
    ) -> Result<(), Self::Error> {
        // Only antennas of this fleet, on their SSH port: their listeners are all on loopback.
        let route = match port_to_connect {
            22 => self.host.routes.get(host_to_connect).copied(),
            _ => None,
        };
        let Some(addr) = route else {
            tracing::debug!(
                host = host_to_connect,
                port = port_to_connect,
                "lab airos: jump refused a tunnel"
            );
            reply
                .reject(ChannelOpenFailure::AdministrativelyProhibited)
                .await;
            return Ok(());
        };
        debug_assert!(addr.ip().is_loopback());
        match TcpStream::connect(addr).await {
            Ok(mut tcp) => {
                let _ = tcp.set_nodelay(true);
                reply.accept().await;
                let mut stopped = self.shared.stopped.clone();
                self.shared.tasks.spawn(async move {
                    let mut stream = channel.into_stream();
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut stream, &mut tcp) => {}
                        _ = stopped.wait_for(|s| *s) => {}
                    }
                });
            }
            Err(_) => reply.reject(ChannelOpenFailure::ConnectFailed).await,
        }
        Ok(())
    }
}

// ---------------------------------------------------------------------------------------------
// A socket that ends when the fleet stops
// ---------------------------------------------------------------------------------------------

/// An accepted socket that reads EOF (and fails writes) once the fleet stops, so that the
/// session task russh spawns for it ends too, even while a write is stuck on a peer that does
/// not read.
struct Stoppable {
    inner: TcpStream,
    /// Polled by reads only, and `stop_write` by writes only: each keeps its own waker.
    stop_read: StopSignal,
    stop_write: StopSignal,
    stopped: bool,
}

type StopSignal = Pin<Box<dyn Future<Output = ()> + Send>>;

fn stop_signal(mut stopped: watch::Receiver<bool>) -> StopSignal {
    Box::pin(async move {
        // An error means the fleet is gone: stop as well.
        let _ = stopped.wait_for(|s| *s).await;
    })
}

impl Stoppable {
    fn new(inner: TcpStream, stopped: watch::Receiver<bool>) -> Stoppable {
        Stoppable {
            inner,
            stop_read: stop_signal(stopped.clone()),
            stop_write: stop_signal(stopped),
            stopped: false,
        }
    }
}

impl AsyncRead for Stoppable {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if !this.stopped && this.stop_read.as_mut().poll(cx).is_ready() {
            this.stopped = true;
        }
        if this.stopped {
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut this.inner).poll_read(cx, buf)
    }
}

impl AsyncWrite for Stoppable {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if !this.stopped && this.stop_write.as_mut().poll(cx).is_ready() {
            this.stopped = true;
        }
        if this.stopped {
            return Poll::Ready(Err(io::ErrorKind::BrokenPipe.into()));
        }
        Pin::new(&mut this.inner).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use std::sync::Arc;
    use std::time::Instant;

    use tokio::sync::Semaphore;

    use crate::kinds::airos::commands::{self, BOARD_INFO, RUNNING_CFG, SYSTEM_CFG, VERSION};
    use crate::secret::Secret;
    use crate::ssh::{Credential, Endpoint, HostKeyPolicy, KnownHosts, Session, SshError, Target};

    const USER: &str = "ubnt";
    const RIGHT: &str = "lab-r1ght";
    const OTHER: &str = "lab-0ther";
    const WRONG: &str = "lab-wr0ng";
    const OLD_URI: &str = "wss://old.example:443+oldkey+allowSelfSignedCertificate";
    const RUNNING_URI: &str = "wss://running.example:443+runkey+allowSelfSignedCertificate";
    const NEW_URI: &str = "wss://uisp.example:443+newkey+allowSelfSignedCertificate";

    fn antenna(host: &str, seed: u64) -> AntennaFile {
        AntennaFile {
            host: host.into(),
            system_cfg: format!(
                "users.1.name=ubnt\nunms.status=enabled\nunms.uri={OLD_URI}\nwireless.1.ssid=tomatlan\n"
            ),
            running_cfg: Some(format!(
                "users.1.name=ubnt\nunms.status=enabled\nunms.uri={RUNNING_URI}\n"
            )),
            board_info: "board.name=LiteBeam M5\nboard.hwaddr=F09FC2112233\n".into(),
            version: "XW.v6.2.0\n".into(),
            logins: vec![(USER.into(), RIGHT.into()), ("admin".into(), OTHER.into())],
            host_key: AntennaFile::new_key(seed),
            flash: None,
            fault: None,
            ..AntennaFile::default()
        }
    }

    fn fleet_file(hosts: &[&str]) -> FleetFile {
        FleetFile {
            antennas: hosts
                .iter()
                .enumerate()
                .map(|(i, h)| antenna(h, i as u64 + 1))
                .collect(),
            jump: None,
        }
    }

    fn cred(user: &str, password: &str) -> Credential {
        Credential {
            user: user.into(),
            password: Secret::new(password),
        }
    }

    fn target(fleet: &Fleet, host: &str, creds: Vec<Credential>) -> Target {
        Target {
            connect_to: Some(fleet.addr(host).expect("a fleet antenna")),
            // Generous: debug-build crypto on a loaded test machine.
            connect_timeout: Duration::from_secs(60),
            command_timeout: Duration::from_secs(60),
            ..Target::new(Endpoint::new(host, 22), creds)
        }
    }

    /// A known-hosts file that pins every antenna of `fleet` named in `hosts`.
    fn known(fleet: &Fleet, hosts: &[&str]) -> (tempfile::TempDir, KnownHosts) {
        let dir = tempfile::tempdir().unwrap();
        let known = KnownHosts::load(dir.path().join("known_hosts")).unwrap();
        for h in hosts {
            known
                .accept(&Endpoint::new(*h, 22), &fleet.fingerprint(h).unwrap())
                .unwrap();
        }
        (dir, known)
    }

    async fn login(fleet: &Fleet, host: &str, known: &KnownHosts) -> Session {
        let t = target(fleet, host, vec![cred(USER, RIGHT)]);
        Session::connect(&t, known, HostKeyPolicy::Strict)
            .await
            .unwrap()
            .0
    }

    #[test]
    fn keys_are_deterministic_ed25519_and_distinct_per_seed() {
        let a = AntennaFile::new_key(7);
        assert_eq!(a, AntennaFile::new_key(7));
        assert_ne!(a, AntennaFile::new_key(8));
        assert!(
            a.starts_with("-----BEGIN OPENSSH PRIVATE KEY-----"),
            "not OpenSSH text"
        );
        assert_eq!(parse_key("x", &a).unwrap().algorithm(), Algorithm::Ed25519);
        assert!(matches!(
            parse_key("x", "not a key"),
            Err(FleetFileError::BadHostKey { .. })
        ));
    }

    #[test]
    fn files_round_trip_as_json_and_debug_shows_no_secret() {
        let mut file = fleet_file(&["10.10.1.21"]);
        file.antennas[0].fault = Some(Fault::HangOnCommand);
        file.jump = Some(JumpFile {
            logins: vec![("jump".into(), "jump-s3cret".into())],
            host_key: AntennaFile::new_key(99),
        });
        let json = serde_json::to_string(&file).unwrap();
        assert!(json.contains("\"hang_on_command\""), "{json}");
        let back: FleetFile = serde_json::from_str(&json).unwrap();
        assert_eq!(back, file);
        // `fault` and `jump` may be left out.
        let mut value: serde_json::Value = serde_json::from_str(&json).unwrap();
        value.as_object_mut().unwrap().remove("jump");
        value["antennas"][0]
            .as_object_mut()
            .unwrap()
            .remove("fault");
        let back: FleetFile = serde_json::from_value(value).unwrap();
        assert_eq!((back.jump, back.antennas[0].fault), (None, None));

        let shown = format!("{file:?}");
        for secret in [RIGHT, OTHER, "jump-s3cret", "OPENSSH", "oldkey", "tomatlan"] {
            assert!(!shown.contains(secret), "{shown}");
        }
    }

    #[test]
    fn the_model_runs_exactly_the_fixed_commands() {
        // Without running.cfg the bridge reads system.cfg, at start and when respawned.
        let mut file = antenna("10.10.1.30", 3);
        file.running_cfg = None;
        let mut a = Antenna::new(&file, false).unwrap();
        assert_eq!(a.state().bridge_uri.as_deref(), Some(OLD_URI));
        let sys = format!("unms.uri={NEW_URI}\nunms.uri=wss://second.example:443+k\n");
        assert_eq!(
            a.run(&commands::write_system(sys.len()), sys.as_bytes(), false)
                .status,
            0
        );
        let pid = a.state().bridge_pid;
        assert_eq!(a.run(&commands::kill(pid), b"", false).status, 0);
        let s = a.state();
        assert_eq!(
            s.bridge_uri.as_deref(),
            Some(NEW_URI),
            "first unms.uri line"
        );
        assert_ne!(s.bridge_pid, pid);
        assert_eq!(s.bridge_restarts, 1);

        // Near misses of the fixed strings are refused.
        for cmd in [
            "kill -9 0812",
            "kill -9 ",
            "kill -9 12 13",
            "kill 812",
            "ps ",
            "cat /tmp/system.cfg",
            "kill -9 99999999999999999999",
        ] {
            let r = a.run(cmd, b"", false);
            assert_eq!((r.status, r.rejected), (127, true), "{cmd}");
        }
        assert_eq!(a.state().rejected.len(), 7);

        // A write whose stdin overflowed fails and leaves the file alone.
        let before = a.state().system_cfg;
        let r = a.run(&commands::write_system(1), b"x", true);
        assert_eq!(r.status, 1);
        assert_eq!(a.state().system_cfg, before);
        // A short stdin (the link dropped mid-way) installs nothing either.
        let r = a.run(&commands::write_system(10), b"unms.uri=", false);
        assert_eq!(r.status, 1);
        assert_eq!(a.state().system_cfg, before);
        assert!(!r.changed);
    }

    #[test]
    fn persist_faults_a_missing_cfgmtd_and_the_bridge_are_modelled() {
        let file = antenna("10.10.1.31", 4);
        let mut a = Antenna::new(&file, false).unwrap();
        // Flash holds system.cfg when the file does not say.
        assert_eq!(a.state().flash.as_deref(), Some(file.system_cfg.as_bytes()));
        let sys = format!("unms.uri={NEW_URI}\n");
        let r = a.run(&commands::write_system(sys.len()), sys.as_bytes(), false);
        assert!(r.changed && r.status == 0);
        // A persist that fails leaves the flash as it was, and changes nothing.
        a.fault = Some(Fault::PersistFails);
        let r = a.run(commands::PERSIST, b"", false);
        assert_eq!((r.status, r.changed), (1, false));
        assert_eq!(r.stderr, b"Could not open MTD device cfg\n");
        let r = a.run(commands::READ_FLASH, b"", false);
        assert_eq!(r.stdout, file.system_cfg.as_bytes());
        a.fault = None;
        let r = a.run(commands::PERSIST, b"", false);
        assert_eq!((r.status, r.changed), (0, true));
        assert_eq!(
            a.run(commands::READ_FLASH, b"", false).stdout,
            sys.as_bytes()
        );
        // Without /sbin/cfgmtd: not found, and READ says so.
        a.cfgmtd = Cfgmtd::Missing;
        for c in [commands::PERSIST, commands::READ_FLASH] {
            let r = a.run(c, b"", false);
            assert_eq!(
                (r.status, r.stderr.as_slice()),
                (127, &b"sh: /sbin/cfgmtd: not found\n"[..])
            );
        }
        let read = commands::parse_read(&a.run(commands::READ, b"", false).stdout).unwrap();
        assert!(!read.cfgmtd);
        // The file keeps all of it, and loads back the same.
        let mut saved = a.file("10.10.1.31");
        assert_eq!(saved.cfgmtd, Cfgmtd::Missing);
        assert!(saved.changed_mark);
        let bridge = saved.bridge.clone().unwrap();
        assert!(
            bridge.running
                && bridge.started_before_mark
                && bridge.uri.as_deref() == Some(RUNNING_URI)
        );
        // Loaded back: the same file, the bridge still before the mark.
        let b = Antenna::new(&saved, false).unwrap();
        assert_eq!(b.file("10.10.1.31"), saved);
        let s = b.state();
        assert!(s.bridge_started < s.changed_mark && s.changed_mark.is_some());
        // A bridge that is not running, its supervisor dead: kill finds nothing, READ's ps
        // lists no bridge.
        saved.bridge = Some(BridgeFile {
            running: false,
            uri: None,
            started_before_mark: false,
        });
        saved.supervisor_dead = true;
        let mut c = Antenna::new(&saved, false).unwrap();
        let read = commands::parse_read(&c.run(commands::READ, b"", false).stdout).unwrap();
        assert!(commands::bridge_pids(&read.ps).is_empty());
        assert!(!c.state().supervisor_alive);
        assert_eq!(parse_stat("cat /proc/812/stat"), Some(812));
        assert_eq!(parse_stat("cat /proc/0812/stat"), None);
        assert_eq!(parse_stat("cat /proc/812/status"), None);
    }

    #[tokio::test]
    async fn read_prints_the_files() {
        let host = "10.10.1.21";
        let fleet = Fleet::start(&fleet_file(&[host]), FleetOptions::default())
            .await
            .unwrap();
        assert!(fleet.addr(host).unwrap().ip().is_loopback());
        assert_eq!(fleet.addr("10.10.1.99"), None);
        let (_dir, known) = known(&fleet, &[host]);
        let session = login(&fleet, host, &known).await;
        let out = session.exec(commands::READ, None).await.unwrap();
        assert_eq!(out.status, 0);
        let read = commands::parse_read(&out.stdout).unwrap();
        let files = &read.files;
        let file = antenna(host, 1);
        assert_eq!(files.get(SYSTEM_CFG), Some(file.system_cfg.as_bytes()));
        assert_eq!(
            files.get(RUNNING_CFG),
            file.running_cfg.as_deref().map(str::as_bytes)
        );
        assert_eq!(files.get(BOARD_INFO), Some(file.board_info.as_bytes()));
        assert_eq!(files.get(commands::BOARD_INFO_PROC), None);
        assert_eq!(files.get(VERSION), Some(file.version.as_bytes()));
        assert_eq!(files.get(commands::CHANGED_MARK), None, "never written");
        assert_eq!(files.files.len(), 4);
        assert!(read.cfgmtd);
        assert_eq!(commands::bridge_pids(&read.ps), vec![PID_BRIDGE]);
        // The bridge's start time, and the flash copy (system.cfg, as the file did not say).
        let stat = session
            .exec(&commands::bridge_stat(PID_BRIDGE), None)
            .await
            .unwrap();
        assert_eq!(commands::parse_start_ticks(&stat.stdout), Some(0));
        let flash = session.exec(commands::READ_FLASH, None).await.unwrap();
        assert_eq!(
            (flash.status, flash.stdout),
            (0, file.system_cfg.clone().into_bytes())
        );
        let gone = session
            .exec(&commands::bridge_stat(4242), None)
            .await
            .unwrap();
        assert_eq!(gone.status, 1);
        session.close().await;

        let state = fleet.state(host).unwrap();
        assert_eq!(
            state.commands,
            vec![
                commands::READ.to_string(),
                commands::bridge_stat(PID_BRIDGE),
                commands::READ_FLASH.into(),
                commands::bridge_stat(4242),
            ]
        );
        assert_eq!(state.clock, TICK_AFTER_MARK + 4, "one tick per command");
        assert_eq!(state.bridge_uri.as_deref(), Some(RUNNING_URI));
        assert!(state.supervisor_alive && state.bridge_pid > 1);
        let stats = fleet.stats();
        assert_eq!(
            (
                stats.connections,
                stats.logins_ok,
                stats.commands,
                stats.rejected
            ),
            (1, 1, 4, 0)
        );
        assert_eq!(stats.max_concurrent_sessions, 1);
        fleet.shutdown().await;
    }

    #[tokio::test]
    async fn write_persist_and_kill_the_bridge_like_the_field_fix() {
        let host = "10.10.1.22";
        let fleet = Fleet::start(&fleet_file(&[host]), FleetOptions::default())
            .await
            .unwrap();
        let (_dir, known) = known(&fleet, &[host]);
        let session = login(&fleet, host, &known).await;

        let sys = format!("users.1.name=ubnt\nunms.uri={NEW_URI}\nunms.status=enabled\n");
        let run = format!("unms.uri={NEW_URI}\nunms.uri.changed={NEW_URI}\n");
        for (cmd, stdin) in [
            (commands::write_system(sys.len()), sys.as_bytes()),
            (commands::write_running(run.len()), run.as_bytes()),
        ] {
            let out = session.exec(&cmd, Some(stdin)).await.unwrap();
            assert!(out.success() && out.stdout.is_empty(), "{out:?}");
        }
        // Not yet: the bridge keeps the URI it started with; the writes left their mark
        // after its start.
        let s = fleet.state(host).unwrap();
        assert_eq!(s.bridge_uri.as_deref(), Some(RUNNING_URI));
        assert_eq!(
            (s.bridge_started, s.changed_mark),
            (Some(TICK_BEFORE_MARK), Some(TICK_AFTER_MARK + 2))
        );
        // By bare name, cfgmtd is not on the session's PATH (dropbear 2019.78).
        let out = session.exec("cfgmtd -w -p /etc/", None).await.unwrap();
        assert_eq!(
            (out.status, out.stderr.as_slice()),
            (127, &b"sh: cfgmtd: not found\n"[..])
        );
        assert_ne!(
            fleet.state(host).unwrap().flash.as_deref(),
            Some(sys.as_bytes())
        );
        assert_eq!(
            session.exec(commands::PERSIST, None).await.unwrap().status,
            0
        );

        let ps = session.exec(commands::PS, None).await.unwrap();
        let ps = String::from_utf8(ps.stdout).unwrap();
        let before = fleet.state(host).unwrap();
        assert_eq!(commands::bridge_pids(&ps), vec![before.bridge_pid], "{ps}");
        assert!(
            ps.starts_with("  PID USER       VSZ STAT COMMAND\n"),
            "{ps}"
        );
        assert!(ps.contains("udapi-bridge-supervisor"), "{ps}");

        let out = session
            .exec(&commands::kill(before.bridge_pid), None)
            .await
            .unwrap();
        assert_eq!(out.status, 0);
        let after = fleet.state(host).unwrap();
        assert_eq!(after.bridge_uri.as_deref(), Some(NEW_URI));
        assert_eq!(after.bridge_restarts, 1);
        assert!(
            after.bridge_started > after.changed_mark,
            "respawned after the writes"
        );
        assert_ne!(after.bridge_pid, before.bridge_pid);
        assert_eq!(after.flash.as_deref(), Some(sys.as_bytes()));
        assert_eq!(after.system_cfg, sys.as_bytes());
        assert_eq!(after.running_cfg.as_deref(), Some(run.as_bytes()));
        let ps = session.exec(commands::PS, None).await.unwrap();
        assert_eq!(
            commands::bridge_pids(&String::from_utf8_lossy(&ps.stdout)),
            vec![after.bridge_pid]
        );

        // An unknown pid.
        let out = session.exec(&commands::kill(4242), None).await.unwrap();
        assert_eq!(out.status, 1);
        assert_eq!(out.stderr, b"kill: can't kill pid 4242: No such process\n");

        // The supervisor: gone from ps, and the bridge is not respawned any more.
        let out = session
            .exec(&commands::kill(PID_SUPERVISOR), None)
            .await
            .unwrap();
        assert_eq!(out.status, 0);
        let ps = session.exec(commands::PS, None).await.unwrap();
        let ps = String::from_utf8(ps.stdout).unwrap();
        assert!(!ps.contains("supervisor"), "{ps}");
        assert!(!fleet.state(host).unwrap().supervisor_alive);
        let out = session
            .exec(&commands::kill(after.bridge_pid), None)
            .await
            .unwrap();
        assert_eq!(out.status, 0);
        let dead = fleet.state(host).unwrap();
        assert_eq!(
            (dead.bridge_pid, dead.bridge_uri, dead.bridge_restarts),
            (0, None, 1)
        );
        let ps = session.exec(commands::PS, None).await.unwrap();
        assert!(commands::bridge_pids(&String::from_utf8_lossy(&ps.stdout)).is_empty());

        // Anything else is refused, and recorded.
        let out = session.exec("cat /tmp/system.cfg", None).await.unwrap();
        assert_eq!(out.status, 127);
        assert_eq!(out.stderr, b"sh: unsupported command\n");
        let state = fleet.state(host).unwrap();
        assert_eq!(state.rejected, vec!["cat /tmp/system.cfg".to_string()]);
        assert_eq!(state.commands.len(), 13);
        assert_eq!(state.commands[0], commands::write_system(sys.len()));
        assert_eq!(state.commands[5], commands::kill(before.bridge_pid));
        assert_eq!(state.commands[12], "cat /tmp/system.cfg");
        let stats = fleet.stats();
        assert_eq!((stats.commands, stats.rejected), (13, 1));
        session.close().await;

        // The snapshot keeps what was written.
        let snap = fleet.snapshot();
        assert_eq!(snap.antennas[0].system_cfg, sys);
        assert_eq!(snap.antennas[0].flash.as_deref(), Some(sys.as_str()));
        assert_eq!(snap.antennas[0].running_cfg.as_deref(), Some(run.as_str()));
        fleet.shutdown().await;
    }

    #[tokio::test]
    async fn each_change_is_saved_at_once_and_reads_save_nothing() {
        let host = "10.10.1.32";
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("g.json");
        let fleet = Fleet::start(
            &fleet_file(&[host]),
            FleetOptions {
                save_to: Some(path.clone()),
                ..FleetOptions::default()
            },
        )
        .await
        .unwrap();
        let (_dir, known) = known(&fleet, &[host]);
        let session = login(&fleet, host, &known).await;
        for c in [commands::READ, commands::READ_FLASH, commands::PS] {
            session.exec(c, None).await.unwrap();
        }
        assert!(!path.exists(), "a read saved the fleet");
        let sys = format!("unms.uri={NEW_URI}\n");
        let out = session
            .exec(&commands::write_system(sys.len()), Some(sys.as_bytes()))
            .await
            .unwrap();
        assert_eq!(out.status, 0);
        // Saved before the answer came back, while the session is still open.
        let saved: FleetFile =
            serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        assert_eq!(saved.antennas[0].system_cfg, sys);
        assert!(saved.antennas[0].changed_mark);
        assert!(
            saved.antennas[0]
                .bridge
                .as_ref()
                .unwrap()
                .started_before_mark
        );
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(
            std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o600
        );
        let pid = fleet.state(host).unwrap().bridge_pid;
        session.exec(&commands::kill(pid), None).await.unwrap();
        let saved: FleetFile =
            serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        let bridge = saved.antennas[0].bridge.clone().unwrap();
        assert!(bridge.running && !bridge.started_before_mark);
        assert_ne!(fleet.state(host).unwrap().bridge_pid, pid);
        assert_eq!(saved, fleet.snapshot());
        session.close().await;
        fleet.shutdown().await;
    }

    #[tokio::test]
    async fn logins_are_tried_in_order_and_faults_refuse_them() {
        let host = "10.10.1.23";
        let fleet = Fleet::start(&fleet_file(&[host]), FleetOptions::default())
            .await
            .unwrap();
        let (_dir, known) = known(&fleet, &[host]);
        let t = target(
            &fleet,
            host,
            vec![cred(USER, WRONG), cred("admin", OTHER), cred(USER, RIGHT)],
        );
        let (session, index) = Session::connect(&t, &known, HostKeyPolicy::Strict)
            .await
            .unwrap();
        assert_eq!(index, 1);
        session.close().await;
        let stats = fleet.stats();
        assert_eq!((stats.logins_refused, stats.logins_ok), (1, 1));
        assert_eq!(stats.connections, 1, "a refusal keeps the connection");

        fleet.set_fault(host, Some(Fault::RejectLogins));
        assert_eq!(
            fleet.snapshot().antennas[0].fault,
            Some(Fault::RejectLogins)
        );
        let err = Session::connect(&t, &known, HostKeyPolicy::Strict)
            .await
            .unwrap_err();
        assert!(
            matches!(err, SshError::AuthFailed { tried: 3, .. }),
            "{err:?}"
        );
        assert_eq!(fleet.stats().logins_refused, 4);

        fleet.set_fault(host, None);
        let (session, index) = Session::connect(&t, &known, HostKeyPolicy::Strict)
            .await
            .unwrap();
        assert_eq!(index, 1);
        session.close().await;
        fleet.shutdown().await;
    }

    #[tokio::test]
    async fn hanging_and_refusing_antennas() {
        let host = "10.10.1.24";
        let fleet = Fleet::start(&fleet_file(&[host]), FleetOptions::default())
            .await
            .unwrap();
        let (_dir, known) = known(&fleet, &[host]);

        // Commands never answer, and are not run.
        fleet.set_fault(host, Some(Fault::HangOnCommand));
        let mut t = target(&fleet, host, vec![cred(USER, RIGHT)]);
        t.command_timeout = Duration::from_millis(300);
        let (session, _) = Session::connect(&t, &known, HostKeyPolicy::Strict)
            .await
            .unwrap();
        let err = session
            .exec(&commands::write_system(11), Some(b"unms.uri=x\n"))
            .await
            .unwrap_err();
        assert!(matches!(err, SshError::Timeout { .. }), "{err:?}");
        let state = fleet.state(host).unwrap();
        assert!(state.commands.is_empty());
        assert_ne!(state.system_cfg, b"unms.uri=x\n");
        // Cleared: the timed-out session is abandoned (nothing more is sent on it), a new one
        // answers.
        fleet.set_fault(host, None);
        assert!(matches!(
            session.exec(commands::PS, None).await,
            Err(SshError::SessionAbandoned { .. })
        ));
        session.close().await;
        let (session, _) = Session::connect(&t, &known, HostKeyPolicy::Strict)
            .await
            .unwrap();
        assert_eq!(session.exec(commands::PS, None).await.unwrap().status, 0);
        session.close().await;

        // Refused: reset before any banner.
        fleet.set_fault(host, Some(Fault::Refuse));
        let err = Session::connect(&t, &known, HostKeyPolicy::Strict)
            .await
            .unwrap_err();
        assert!(matches!(err, SshError::Connect { .. }), "{err:?}");

        // Silent: the client's connect timeout decides.
        fleet.set_fault(host, Some(Fault::HangOnConnect));
        t.connect_timeout = Duration::from_millis(300);
        let err = Session::connect(&t, &known, HostKeyPolicy::Strict)
            .await
            .unwrap_err();
        assert!(
            matches!(&err, SshError::Timeout { during, .. } if during == "connecting"),
            "{err:?}"
        );
        assert_eq!(fleet.stats().connections, 4);
        // Shutdown ends the held connection too.
        fleet.shutdown().await;
    }

    #[tokio::test]
    async fn a_changed_host_key_is_refused_by_a_strict_client() {
        let host = "10.10.1.25";
        let fleet = Fleet::start(&fleet_file(&[host]), FleetOptions::default())
            .await
            .unwrap();
        let (_dir, known) = known(&fleet, &[host]);
        let old = fleet.fingerprint(host).unwrap();
        let open = login(&fleet, host, &known).await;

        fleet.change_host_key(host, 4242);
        let new = fleet.fingerprint(host).unwrap();
        assert_ne!(old, new);
        assert_eq!(
            fleet.snapshot().antennas[0].host_key,
            AntennaFile::new_key(4242)
        );
        let t = target(&fleet, host, vec![cred(USER, RIGHT)]);
        let err = Session::connect(&t, &known, HostKeyPolicy::Strict)
            .await
            .unwrap_err();
        match &err {
            SshError::HostKeyChanged { expected, got, .. } => {
                assert_eq!((expected, got), (&old, &new));
            }
            other => panic!("{other:?}"),
        }
        // The session opened before the change still works.
        assert_eq!(open.exec(commands::PS, None).await.unwrap().status, 0);
        open.close().await;

        known.accept(&t.endpoint, &new).unwrap();
        login(&fleet, host, &known).await.close().await;
        fleet.shutdown().await;
    }

    #[tokio::test]
    async fn latency_is_paid_on_every_round_trip() {
        let host = "10.10.1.26";
        let fleet = Fleet::start(
            &fleet_file(&[host]),
            FleetOptions {
                latency: Duration::from_millis(10),
                ..FleetOptions::default()
            },
        )
        .await
        .unwrap();
        let (_dir, known) = known(&fleet, &[host]);
        let latency = Duration::from_millis(150);
        fleet.set_latency(latency);
        let started = Instant::now();
        let session = login(&fleet, host, &known).await;
        let out = session.exec(commands::READ, None).await.unwrap();
        let took = started.elapsed();
        assert_eq!(out.status, 0);
        // Banner, login, channel and result each wait: at least twice is certain (and proves
        // the change from the starting 10 ms took effect).
        assert!(took >= 2 * latency, "{took:?}");
        session.close().await;
        fleet.shutdown().await;
    }

    #[tokio::test]
    async fn legacy_antennas_need_a_legacy_client() {
        let host = "10.10.1.27";
        let fleet = Fleet::start(
            &fleet_file(&[host]),
            FleetOptions {
                legacy_only: true,
                ..FleetOptions::default()
            },
        )
        .await
        .unwrap();
        let (_dir, known) = known(&fleet, &[host]);
        let mut t = target(&fleet, host, vec![cred(USER, RIGHT)]);
        let err = Session::connect(&t, &known, HostKeyPolicy::Strict)
            .await
            .unwrap_err();
        assert!(
            matches!(&err, SshError::Connect { reason, .. } if reason.contains("no common")),
            "{err:?}"
        );
        t.legacy = true;
        let (session, _) = Session::connect(&t, &known, HostKeyPolicy::Strict)
            .await
            .unwrap();
        let out = session.exec(commands::READ, None).await.unwrap();
        assert!(commands::parse_read(&out.stdout).is_ok());
        session.close().await;

        // A changed key keeps the legacy algorithms.
        fleet.change_host_key(host, 77);
        known
            .accept(&t.endpoint, &fleet.fingerprint(host).unwrap())
            .unwrap();
        t.legacy = false;
        assert!(
            Session::connect(&t, &known, HostKeyPolicy::Strict)
                .await
                .is_err()
        );
        fleet.shutdown().await;
    }

    #[tokio::test]
    async fn the_jump_host_carries_sessions_to_antennas_only() {
        let hosts = ["10.10.1.28", "10.10.1.29"];
        let mut file = fleet_file(&hosts);
        file.jump = Some(JumpFile {
            logins: vec![("noc".into(), "jump-pw".into())],
            host_key: AntennaFile::new_key(1000),
        });
        let fleet = Fleet::start(&file, FleetOptions::default()).await.unwrap();
        let (_dir, known) = known(&fleet, &hosts);
        let jump_endpoint = Endpoint::new("jump.lab", 22);
        known
            .accept(&jump_endpoint, &fleet.jump_fingerprint().unwrap())
            .unwrap();
        let jump = Target {
            connect_to: fleet.jump_addr(),
            ..Target::new(
                jump_endpoint,
                vec![cred("noc", WRONG), cred("noc", "jump-pw")],
            )
        };
        for host in hosts {
            let t = Target {
                // Through the jump host, connect_to is ignored: a wrong one proves it.
                connect_to: Some("127.0.0.1:1".parse().unwrap()),
                jump: Some(Box::new(jump.clone())),
                ..Target::new(Endpoint::new(host, 22), vec![cred(USER, RIGHT)])
            };
            let (session, _) = Session::connect(&t, &known, HostKeyPolicy::Strict)
                .await
                .unwrap();
            let out = session.exec(commands::PS, None).await.unwrap();
            assert_eq!(
                commands::bridge_pids(&String::from_utf8_lossy(&out.stdout)),
                vec![fleet.state(host).unwrap().bridge_pid]
            );
            session.close().await;
            assert_eq!(fleet.state(host).unwrap().commands, vec![commands::PS]);
        }

        // A destination that is no antenna of the fleet: the tunnel is refused.
        let t = Target {
            jump: Some(Box::new(jump.clone())),
            ..Target::new(Endpoint::new("127.0.0.1", 22), vec![cred(USER, RIGHT)])
        };
        let err = Session::connect(&t, &known, HostKeyPolicy::Strict)
            .await
            .unwrap_err();
        assert!(matches!(err, SshError::Channel { .. }), "{err:?}");
        let t = Target {
            jump: Some(Box::new(jump)),
            ..Target::new(Endpoint::new(hosts[0], 2222), vec![cred(USER, RIGHT)])
        };
        let err = Session::connect(&t, &known, HostKeyPolicy::Strict)
            .await
            .unwrap_err();
        assert!(matches!(err, SshError::Channel { .. }), "{err:?}");
        assert_eq!(fleet.stats().connections, 2);
        fleet.shutdown().await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn three_hundred_antennas_answer_and_shutdown_frees_every_port() {
        let hosts: Vec<String> = (0..300)
            .map(|i| format!("10.20.{}.{}", i / 250, i % 250 + 1))
            .collect();
        let refs: Vec<&str> = hosts.iter().map(String::as_str).collect();
        let fleet = Arc::new(
            Fleet::start(&fleet_file(&refs), FleetOptions::default())
                .await
                .unwrap(),
        );
        let (_dir, known) = known(&fleet, &refs);
        let limit = Arc::new(Semaphore::new(32));
        let mut tasks = JoinSet::new();
        for host in hosts.clone() {
            let (fleet, known, limit) = (fleet.clone(), known.clone(), limit.clone());
            tasks.spawn(async move {
                let _permit = limit.acquire_owned().await.unwrap();
                let session = login(&fleet, &host, &known).await;
                let out = session.exec(commands::READ, None).await.unwrap();
                session.close().await;
                let files = commands::parse_read(&out.stdout).unwrap();
                assert!(files.files.get(SYSTEM_CFG).is_some(), "{host}");
            });
        }
        while let Some(done) = tasks.join_next().await {
            done.unwrap();
        }
        let stats = fleet.stats();
        assert_eq!((stats.connections, stats.commands), (300, 300));
        // Sessions overlapped (the server may still be closing one when the next opens, so
        // the client's bound of 32 is not the server's).
        assert!(stats.max_concurrent_sessions >= 2, "{stats:?}");
        for h in &hosts {
            assert_eq!(fleet.state(h).unwrap().commands, vec![commands::READ]);
        }

        let addrs: Vec<SocketAddr> = hosts.iter().map(|h| fleet.addr(h).unwrap()).collect();
        let fleet = Arc::into_inner(fleet).expect("no other owner left");
        fleet.shutdown().await;
        for addr in addrs {
            assert!(
                TcpStream::connect(addr).await.is_err(),
                "{addr} still listens"
            );
        }
    }

    #[tokio::test]
    async fn duplicate_hosts_and_bad_keys_are_refused() {
        let err = Fleet::start(&fleet_file(&["a", "a"]), FleetOptions::default())
            .await
            .unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidData);
        assert!(err.to_string().contains("listed twice"), "{err}");
        let mut file = fleet_file(&["a"]);
        file.antennas[0].host_key = "garbage".into();
        let err = Fleet::start(&file, FleetOptions::default())
            .await
            .unwrap_err();
        assert!(err.to_string().contains("a: the host key"), "{err}");
    }
}
