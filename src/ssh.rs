//! The SSH transport to airOS antennas: password logins tried in order, host keys pinned in a
//! known-hosts file, old algorithms only for targets marked legacy, a jump host (ProxyJump over a
//! `direct-tcpip` channel), and commands whose input goes through stdin.
//!
//! The devices run dropbear on old firmware: an RSA host key signed with SHA-1 (`ssh-rsa`), and
//! on some units only `diffie-hellman-group14-sha1` / `diffie-hellman-group1-sha1` key exchange,
//! `hmac-sha1` and CBC ciphers. Those are offered only when [`Target::legacy`] is set; otherwise
//! the client offers russh's modern defaults without `ssh-rsa`.
//!
//! Known hosts are a file of their own (not `~/.ssh/known_hosts`), one line per device:
//!
//! ```text
//! # comments and blank lines are kept
//! 10.10.1.20:22 SHA256:3m8N6pq2bC0u1yX5Kx3n0o1z7h0fQy1m6bF0c8j1a2Q
//! [fd00::20]:22 SHA256:...
//! ```
//!
//! The first field is the target's `host:port` exactly as configured (`[host]:port` when the
//! host holds a `:`), the second the SHA-256 fingerprint of the host key as OpenSSH prints it
//! (`ssh-keygen -lf`). A device reached through a jump host is recorded under its own address.
//!
//! A key trusted on first use ([`HostKeyPolicy::TrustOnFirstUse`]) is held in memory only: the
//! sessions of that run trust it, and nothing is written until the caller records it with
//! [`KnownHosts::record_trusted`] (`apply` does; `plan` and `drift` write nothing).
//!
//! What this module does not do: decide which commands run, parse what they print, or remember
//! which credential worked (the provider stores the index [`Session::connect`] returns).
//! No password reaches an error, a log line or a `Debug` output; command output is never logged
//! and [`Output`]'s `Debug` shows only lengths. A command's answer is bounded in bytes
//! ([`Target::max_answer`]): a device streaming endless output costs at most that much memory,
//! ends in [`SshError::AnswerTooLarge`], and nothing more is sent on that session.

use std::fmt;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use russh::client::{self, AuthResult};
use russh::keys::{Algorithm, HashAlg, PublicKeyOrCertificate};
use russh::{ChannelMsg, Disconnect, MethodKind, Preferred, cipher, kex, mac};
use tokio::net::TcpStream;
use tokio::time::timeout;

use crate::secret::Secret;

/// How long [`Target::new`] allows for connecting (TCP, handshake) and for each login attempt.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// How long [`Target::new`] allows one command to run.
pub const DEFAULT_COMMAND_TIMEOUT: Duration = Duration::from_secs(30);
/// The most bytes [`Target::new`] lets one command answer with: stdout and stderr together.
/// An antenna's configuration files are tens of KiB; a device that sends more than this is
/// broken or hostile, and its answer is abandoned ([`SshError::AnswerTooLarge`]).
pub const DEFAULT_MAX_ANSWER: usize = 4 * 1024 * 1024;

/// One login to try: a user and its password. `Debug` shows the password as `(sensitive)`.
#[derive(Clone, Debug)]
pub struct Credential {
    /// The SSH user, such as `ubnt`.
    pub user: String,
    /// The password; sent only to the device, inside the encrypted session.
    pub password: Secret,
}

/// Where a device (or a jump host) listens.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Endpoint {
    /// Host name or IP address, as configured.
    pub host: String,
    /// TCP port, usually 22.
    pub port: u16,
}

impl Endpoint {
    /// An endpoint from a host and a port.
    pub fn new(host: impl Into<String>, port: u16) -> Self {
        Endpoint {
            host: host.into(),
            port,
        }
    }
}

/// `host:port`, or `[host]:port` when the host holds a `:` (IPv6). This is also the key of the
/// known-hosts file and the `host` of every [`SshError`].
impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.host.contains(':') {
            write!(f, "[{}]:{}", self.host, self.port)
        } else {
            write!(f, "{}:{}", self.host, self.port)
        }
    }
}

/// A device to log in to, and how.
#[derive(Clone, Debug)]
pub struct Target {
    /// Where the device listens (as seen from the jump host, when there is one).
    pub endpoint: Endpoint,
    /// Logins tried in order until one works; [`Session::connect`] returns the index of the one
    /// that did.
    pub credentials: Vec<Credential>,
    /// Also offer what old airOS/dropbear needs: `ssh-rsa` (SHA-1) host keys, the
    /// `diffie-hellman-group14-sha1` and `diffie-hellman-group1-sha1` key exchanges, `hmac-sha1`,
    /// and the `aes128-cbc`, `aes256-cbc` and `3des-cbc` ciphers (after the modern ones). Off,
    /// none of these are offered.
    pub legacy: bool,
    /// Reach the device through this host (ProxyJump): a `direct-tcpip` channel on the jump
    /// host's session carries this target's SSH connection. The jump host is logged in to and
    /// host-key-checked like any target, with its own settings.
    pub jump: Option<Box<Target>>,
    /// Limit for the TCP connection plus the SSH handshake (host key check included), for
    /// opening the tunnel through the jump host, and for each login attempt.
    pub connect_timeout: Duration,
    /// Limit for each [`Session::exec`], from opening the channel to the exit status.
    pub command_timeout: Duration,
    /// The most bytes one [`Session::exec`] answer may hold, stdout and stderr together
    /// ([`DEFAULT_MAX_ANSWER`] unless set). Past it the answer is abandoned and so is the
    /// session ([`SshError::AnswerTooLarge`]).
    pub max_answer: usize,
    /// Connect to this address instead of resolving `endpoint` (a lab twin). The endpoint stays
    /// the device's identity: the known-hosts key and the name in every message. Ignored when
    /// the target is reached through a jump host.
    pub connect_to: Option<std::net::SocketAddr>,
}

impl Target {
    /// A direct, non-legacy target with the default timeouts.
    pub fn new(endpoint: Endpoint, credentials: Vec<Credential>) -> Self {
        Target {
            endpoint,
            credentials,
            legacy: false,
            jump: None,
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
            command_timeout: DEFAULT_COMMAND_TIMEOUT,
            max_answer: DEFAULT_MAX_ANSWER,
            connect_to: None,
        }
    }
}

/// What to do with a host key the known-hosts file does not list. A key that differs from the
/// listed one is refused under both policies ([`SshError::HostKeyChanged`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HostKeyPolicy {
    /// Refuse it ([`SshError::HostKeyUnknown`]). The default for every run.
    Strict,
    /// Trust it for this run, in memory ([`KnownHosts::trusted`]); it reaches the file only
    /// through [`KnownHosts::record_trusted`]. Only when the operator asks for it (a first run
    /// against new devices).
    TrustOnFirstUse,
}

/// The known-hosts file cannot be read, parsed or written, or a fingerprint is malformed.
#[derive(Debug, thiserror::Error)]
pub enum KnownHostsError {
    /// Reading or writing the file failed.
    #[error("known-hosts file {path}: {source}")]
    Io {
        /// The known-hosts file.
        path: PathBuf,
        /// What went wrong.
        source: std::io::Error,
    },
    /// A line is not `HOST:PORT SHA256:FINGERPRINT`.
    #[error("{path}:{line}: {reason}")]
    Parse {
        /// The known-hosts file.
        path: PathBuf,
        /// The line number, from 1.
        line: usize,
        /// What is wrong with it.
        reason: String,
    },
    /// A fingerprint given to [`KnownHosts::accept`] is not a SHA-256 one.
    #[error("{0:?} is not a SHA-256 host key fingerprint (expected SHA256:<43 base64 characters>)")]
    BadFingerprint(String),
}

/// One line of the known-hosts file, kept in order so that saving keeps comments.
#[derive(Debug)]
enum Line {
    /// A comment or a blank line, kept as written.
    Other(String),
    /// `HOST:PORT FINGERPRINT`.
    Entry { host: String, fingerprint: String },
}

#[derive(Debug)]
struct KnownHostsFile {
    path: PathBuf,
    lines: Vec<Line>,
    /// Keys trusted on first use since the file was loaded, not in the file.
    trusted: Vec<TrustedKey>,
}

/// A host key trusted on first use in this run and not (yet) in the known-hosts file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TrustedKey {
    /// The device (or jump host) that presented it.
    pub endpoint: Endpoint,
    /// Its SHA-256 fingerprint, as OpenSSH prints it.
    pub fingerprint: String,
}

/// The pinned host keys: a file loaded once, shared by every session (clone it freely: clones
/// share one table), and saved atomically (mode 0600) when an entry is accepted
/// ([`KnownHosts::accept`]) or a key trusted on first use is recorded
/// ([`KnownHosts::record_trusted`]); never while connecting. See the module documentation for
/// the format.
#[derive(Clone)]
pub struct KnownHosts {
    inner: Arc<Mutex<KnownHostsFile>>,
}

impl fmt::Debug for KnownHosts {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let file = self.lock();
        let entries = file
            .lines
            .iter()
            .filter(|l| matches!(l, Line::Entry { .. }))
            .count();
        f.debug_struct("KnownHosts")
            .field("path", &file.path)
            .field("entries", &entries)
            .field("trusted", &file.trusted.len())
            .finish()
    }
}

impl KnownHosts {
    /// Loads the file at `path`; a missing file is an empty table (created on the first save).
    pub fn load(path: impl Into<PathBuf>) -> Result<Self, KnownHostsError> {
        Ok(KnownHosts {
            inner: Arc::new(Mutex::new(KnownHostsFile::read(path.into())?)),
        })
    }

    /// The file this table is saved to.
    pub fn path(&self) -> PathBuf {
        self.lock().path.clone()
    }

    /// The fingerprint the file pins for `endpoint`, if any (a key trusted on first use and not
    /// recorded is not pinned: see [`KnownHosts::trusted`]).
    pub fn get(&self, endpoint: &Endpoint) -> Option<String> {
        self.lock().get(&endpoint.to_string()).map(str::to_string)
    }

    /// Pins `fingerprint` (`SHA256:...`) for `endpoint`, replacing any entry it had, and saves
    /// the file. This is how an operator explicitly accepts a changed host key.
    pub fn accept(&self, endpoint: &Endpoint, fingerprint: &str) -> Result<(), KnownHostsError> {
        let fingerprint = normalise_fingerprint(fingerprint)?;
        let mut file = self.lock();
        file.trusted.retain(|t| t.endpoint != *endpoint);
        file.set(&endpoint.to_string(), fingerprint);
        file.save()
    }

    /// The keys trusted on first use since the table was loaded, in the order they were
    /// trusted; none of them is in the file.
    pub fn trusted(&self) -> Vec<TrustedKey> {
        self.lock().trusted.clone()
    }

    /// Records keys trusted on first use (by this table or by an earlier read of the same
    /// file) in the file, and returns the ones added. The file is read again first, so that a
    /// key pinned meanwhile (`accept-host-key`) is kept: a key is added only for a device the
    /// file lists no key for, and never replaces one. Saves only when something is added.
    ///
    /// # Warning
    /// This writes: only `apply` calls it, never a read-only run.
    pub fn record_trusted(&self, keys: &[TrustedKey]) -> Result<Vec<TrustedKey>, KnownHostsError> {
        let mut file = self.lock();
        let mut fresh = KnownHostsFile::read(file.path.clone())?;
        let mut added = Vec::new();
        for key in keys {
            let host = key.endpoint.to_string();
            if fresh.get(&host).is_none() {
                fresh.set(&host, key.fingerprint.clone());
                added.push(key.clone());
            }
        }
        if !added.is_empty() {
            fresh.save()?;
            for k in &added {
                tracing::info!(host = %k.endpoint, fingerprint = %k.fingerprint, "ssh: recorded a host key trusted on first use");
            }
        }
        // What is in the file now is pinned; what is still only trusted stays in memory.
        let mut trusted = std::mem::take(&mut file.trusted);
        trusted.retain(|t| fresh.get(&t.endpoint.to_string()).is_none());
        fresh.trusted = trusted;
        *file = fresh;
        Ok(added)
    }

    /// Checks a presented key's fingerprint against the table; under trust-on-first-use an
    /// unknown key is trusted for this run, in memory (nothing is written).
    fn check(
        &self,
        endpoint: &Endpoint,
        fingerprint: &str,
        policy: HostKeyPolicy,
    ) -> Result<(), SshError> {
        let host = endpoint.to_string();
        let mut file = self.lock();
        let trusted = file
            .trusted
            .iter()
            .find(|t| t.endpoint == *endpoint)
            .map(|t| t.fingerprint.as_str());
        match file.get(&host).or(trusted) {
            Some(known) if known == fingerprint => Ok(()),
            Some(known) => Err(SshError::HostKeyChanged {
                host,
                expected: known.to_string(),
                got: fingerprint.to_string(),
                known_hosts: file.path.clone(),
            }),
            None => match policy {
                HostKeyPolicy::Strict => Err(SshError::HostKeyUnknown {
                    host,
                    fingerprint: fingerprint.to_string(),
                    known_hosts: file.path.clone(),
                }),
                HostKeyPolicy::TrustOnFirstUse => {
                    file.trusted.push(TrustedKey {
                        endpoint: endpoint.clone(),
                        fingerprint: fingerprint.to_string(),
                    });
                    tracing::info!(host = %host, fingerprint, "ssh: trusting a new host key for this run (trust on first use; apply records it)");
                    Ok(())
                }
            },
        }
    }

    fn lock(&self) -> MutexGuard<'_, KnownHostsFile> {
        // A panic elsewhere while holding the lock leaves the table consistent (every change is
        // one push or one assignment), so a poisoned lock is still usable.
        self.inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

impl KnownHostsFile {
    /// Reads and parses the file; a missing file is an empty table.
    fn read(path: PathBuf) -> Result<KnownHostsFile, KnownHostsError> {
        // A regular file of bounded size (never a FIFO or a device a pull request linked in);
        // errors hold none of its bytes.
        let max = crate::untrusted::file::MAX_NAMED_FILE_BYTES;
        let text = match crate::untrusted::file::read(&path, max, None) {
            Ok(bytes) => String::from_utf8(bytes).map_err(|_| KnownHostsError::Io {
                path: path.clone(),
                source: std::io::Error::other("the file is not UTF-8 text"),
            })?,
            Err(e) if e.is_not_found() => String::new(),
            Err(e) => {
                return Err(KnownHostsError::Io {
                    path,
                    source: std::io::Error::other(e.to_string()),
                });
            }
        };
        let mut lines = Vec::new();
        for (i, raw) in text.lines().enumerate() {
            let trimmed = raw.trim();
            if trimmed.is_empty() || trimmed.starts_with('#') {
                lines.push(Line::Other(raw.to_string()));
                continue;
            }
            let parse_err = |reason: String| KnownHostsError::Parse {
                path: path.clone(),
                line: i + 1,
                reason,
            };
            let fields: Vec<&str> = trimmed.split_whitespace().collect();
            let [host, fingerprint] = fields[..] else {
                return Err(parse_err(
                    "expected two fields: HOST:PORT SHA256:FINGERPRINT".into(),
                ));
            };
            let fingerprint =
                normalise_fingerprint(fingerprint).map_err(|e| parse_err(e.to_string()))?;
            lines.push(Line::Entry {
                host: host.to_string(),
                fingerprint,
            });
        }
        Ok(KnownHostsFile {
            path,
            lines,
            trusted: Vec::new(),
        })
    }

    fn get(&self, host: &str) -> Option<&str> {
        self.lines.iter().find_map(|l| match l {
            Line::Entry {
                host: h,
                fingerprint,
            } if h == host => Some(fingerprint.as_str()),
            _ => None,
        })
    }

    fn set(&mut self, host: &str, fingerprint: String) {
        let mut found = false;
        self.lines.retain_mut(|l| match l {
            Line::Entry {
                host: h,
                fingerprint: f,
            } if h == host => {
                if found {
                    return false; // a duplicate left by hand: keep only the first
                }
                found = true;
                *f = fingerprint.clone();
                true
            }
            _ => true,
        });
        if !found {
            self.lines.push(Line::Entry {
                host: host.to_string(),
                fingerprint,
            });
        }
    }

    fn save(&self) -> Result<(), KnownHostsError> {
        let mut text = String::new();
        if !self.lines.iter().any(|l| matches!(l, Line::Other(_))) {
            text.push_str(
                "# wispctl known hosts: HOST:PORT SHA256-FINGERPRINT, one line per device\n",
            );
        }
        for line in &self.lines {
            match line {
                Line::Other(raw) => text.push_str(raw),
                Line::Entry { host, fingerprint } => {
                    text.push_str(host);
                    text.push(' ');
                    text.push_str(fingerprint);
                }
            }
            text.push('\n');
        }
        let io = |source| KnownHostsError::Io {
            path: self.path.clone(),
            source,
        };
        if let Some(dir) = self.path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(io)?;
        }
        crate::files::write_atomic(&self.path, text.as_bytes(), 0o600).map_err(io)
    }
}

/// Checks that `text` is a SHA-256 fingerprint and returns it in OpenSSH's spelling.
fn normalise_fingerprint(text: &str) -> Result<String, KnownHostsError> {
    let bad = || KnownHostsError::BadFingerprint(text.to_string());
    let fp: russh::keys::ssh_key::Fingerprint = text.trim().parse().map_err(|_| bad())?;
    if !fp.is_sha256() {
        return Err(bad());
    }
    Ok(fp.to_string())
}

/// Why a connection or a command failed. `host` is always `host:port` of the device concerned
/// (the jump host when it is the one failing). No variant ever holds a password or command
/// output.
#[derive(Debug, thiserror::Error)]
pub enum SshError {
    /// The TCP connection or the SSH handshake failed (refused, unreachable, no common
    /// algorithm, the device hung up).
    #[error("{host}: cannot connect: {reason}")]
    Connect {
        /// The device.
        host: String,
        /// What went wrong.
        reason: String,
    },
    /// A step took longer than its limit ([`Target::connect_timeout`] or
    /// [`Target::command_timeout`]).
    #[error("{host}: timed out after {after:?} while {during}")]
    Timeout {
        /// The device.
        host: String,
        /// The step: `connecting`, `logging in`, `running \`cat\``, ...
        during: String,
        /// The limit that was exceeded.
        after: Duration,
    },
    /// The device's host key is not in the known-hosts file and the policy is strict.
    #[error(
        "{host}: unknown host key {fingerprint}, refused (strict host key checking); once it is \
         verified, add the line `{host} {fingerprint}` to {known_hosts}, or run once with \
         trust-on-first-use"
    )]
    HostKeyUnknown {
        /// The device.
        host: String,
        /// The SHA-256 fingerprint it presented.
        fingerprint: String,
        /// The known-hosts file.
        known_hosts: PathBuf,
    },
    /// The device presented a different host key from the pinned one.
    #[error(
        "{host}: HOST KEY CHANGED: pinned {expected}, presented {got}; refused. A reset or \
         replaced device gets a new key, but so does an impostor. If the change is expected, \
         accept it explicitly: replace the `{host}` line in {known_hosts} with `{host} {got}`"
    )]
    HostKeyChanged {
        /// The device.
        host: String,
        /// The pinned fingerprint.
        expected: String,
        /// The fingerprint presented now.
        got: String,
        /// The known-hosts file.
        known_hosts: PathBuf,
    },
    /// Every configured credential was refused.
    #[error("{host}: login refused for each of the {tried} configured credentials")]
    AuthFailed {
        /// The device.
        host: String,
        /// How many credentials were tried (all of them).
        tried: usize,
    },
    /// A channel could not be opened or used (the session, or the tunnel through a jump host).
    #[error("{host}: channel: {reason}")]
    Channel {
        /// The device (the jump host, for a tunnel it would not open).
        host: String,
        /// What went wrong.
        reason: String,
    },
    /// A command could not run to an exit status (refused, killed by a signal). A command
    /// that ran and exited non-zero is not an error: see [`Output::status`].
    #[error("{host}: `{program}`: {reason}")]
    Command {
        /// The device.
        host: String,
        /// The command's first word only (its arguments are not repeated in messages).
        program: String,
        /// What went wrong.
        reason: String,
    },
    /// A command's answer (stdout and stderr together) passed [`Target::max_answer`]: the
    /// rest was not read, and the session is abandoned ([`SshError::SessionAbandoned`] for
    /// anything asked of it afterwards).
    #[error(
        "{host}: `{program}` answered with more than {limit} bytes; answer and session abandoned"
    )]
    AnswerTooLarge {
        /// The device.
        host: String,
        /// The command's first word only.
        program: String,
        /// The limit, in bytes.
        limit: usize,
    },
    /// The session was abandoned after an earlier answer could not be read to its end (too
    /// large, or timed out): nothing more is sent on it, this command included.
    #[error(
        "{host}: `{program}` not sent: the session was abandoned after an earlier answer broke off ({cause})"
    )]
    SessionAbandoned {
        /// The device.
        host: String,
        /// The command's first word only.
        program: String,
        /// Why the session was abandoned (the earlier error, without its host).
        cause: String,
    },
}

/// What a command left: its exit status and everything it wrote. `Debug` shows only the
/// lengths of stdout and stderr, since device files hold keys and passwords.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Output {
    /// The exit status.
    pub status: u32,
    /// Everything written to stdout, bytes as sent.
    pub stdout: Vec<u8>,
    /// Everything written to stderr, bytes as sent.
    pub stderr: Vec<u8>,
}

impl Output {
    /// Whether the command exited with status 0.
    pub fn success(&self) -> bool {
        self.status == 0
    }
}

impl fmt::Debug for Output {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Output")
            .field("status", &self.status)
            .field("stdout", &format_args!("({} bytes)", self.stdout.len()))
            .field("stderr", &format_args!("({} bytes)", self.stderr.len()))
            .finish()
    }
}

/// A logged-in SSH session to one device, usable for many commands (each on its own channel;
/// `exec` takes `&self`, so commands may run concurrently). Holds the jump host's session open
/// while it lives.
pub struct Session {
    handle: client::Handle<Client>,
    host: String,
    command_timeout: Duration,
    max_answer: usize,
    /// Set once an answer broke off (too large, or timed out): why. Nothing more is sent.
    abandoned: Mutex<Option<String>>,
    jump: Option<Arc<Session>>,
}

impl fmt::Debug for Session {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Session")
            .field("host", &self.host)
            .field("jump", &self.jump.as_ref().map(|j| j.host.as_str()))
            .finish()
    }
}

impl Session {
    /// Connects to `target` (through its jump host, when set, which is connected to first the
    /// same way), checks the host key against `known` under `policy`, and tries the
    /// credentials in order. Returns the session and the index of the credential that worked.
    ///
    /// A device that hangs up between attempts (a login-attempt limit) is reconnected to once
    /// per candidate. With no candidate accepted: [`SshError::AuthFailed`].
    pub async fn connect(
        target: &Target,
        known: &KnownHosts,
        policy: HostKeyPolicy,
    ) -> Result<(Session, usize), SshError> {
        let jump = match &target.jump {
            Some(j) => Some(Arc::new(
                Box::pin(Session::connect(j, known, policy)).await?.0,
            )),
            None => None,
        };
        Self::login_via(target, jump, known, policy).await
    }

    /// Connects to `target` through an already logged-in jump host session (ignoring
    /// `target.jump`), so that many devices share one jump host login: each gets its own
    /// `direct-tcpip` channel on it. The jump session is closed when its last user closes.
    pub async fn connect_via(
        target: &Target,
        jump: Arc<Session>,
        known: &KnownHosts,
        policy: HostKeyPolicy,
    ) -> Result<(Session, usize), SshError> {
        Self::login_via(target, Some(jump), known, policy).await
    }

    async fn login_via(
        target: &Target,
        jump: Option<Arc<Session>>,
        known: &KnownHosts,
        policy: HostKeyPolicy,
    ) -> Result<(Session, usize), SshError> {
        let result = login(target, jump.as_deref(), known, policy).await;
        match result {
            Ok((handle, index)) => Ok((
                Session {
                    handle,
                    host: target.endpoint.to_string(),
                    command_timeout: target.command_timeout,
                    max_answer: target.max_answer,
                    abandoned: Mutex::new(None),
                    jump,
                },
                index,
            )),
            Err(e) => {
                if let Some(j) = jump.and_then(Arc::into_inner) {
                    j.close().await;
                }
                Err(e)
            }
        }
    }

    /// `host:port` of the device this session is logged in to.
    pub fn host(&self) -> &str {
        &self.host
    }

    /// Whether the connection has ended (the device hung up or the link dropped).
    pub fn is_closed(&self) -> bool {
        self.handle.is_closed()
    }

    /// Runs `command` on the device, writes `stdin` (when given) to its standard input, then
    /// sends EOF, and collects its output and exit status, all within the target's
    /// `command_timeout`.
    ///
    /// `command` goes to the device's shell as is: build it only from fixed text. Data (file
    /// contents, connection strings) goes through `stdin`, never into the command line. Errors
    /// name only the command's first word.
    ///
    /// The command's end decides: input it did not read is dropped, and its exit status is
    /// returned. A non-zero status is an [`Output`], not an error.
    ///
    /// The answer is bounded: past [`Target::max_answer`] bytes (stdout and stderr together)
    /// reading stops with [`SshError::AnswerTooLarge`]. That, or a timeout, abandons the
    /// session: the device may still be answering or running the command, so every later
    /// `exec` fails with [`SshError::SessionAbandoned`] without sending anything; only
    /// [`Session::close`] is left.
    pub async fn exec(&self, command: &str, stdin: Option<&[u8]>) -> Result<Output, SshError> {
        let program = program_name(command);
        if let Some(cause) = self.abandoned_because() {
            return Err(SshError::SessionAbandoned {
                host: self.host.clone(),
                program,
                cause,
            });
        }
        let result = match timeout(self.command_timeout, self.run(command, stdin, &program)).await {
            Ok(result) => result,
            Err(_) => Err(SshError::Timeout {
                host: self.host.clone(),
                during: format!("running `{program}`"),
                after: self.command_timeout,
            }),
        };
        if let Err(e @ (SshError::AnswerTooLarge { .. } | SshError::Timeout { .. })) = &result {
            let cause = e.to_string();
            let cause = cause
                .strip_prefix(&format!("{}: ", self.host))
                .unwrap_or(&cause)
                .to_string();
            tracing::debug!(host = %self.host, program, "ssh: session abandoned: {cause}");
            *self.abandoned_lock() = Some(cause);
        }
        result
    }

    /// Why the session was abandoned, when it was ([`Session::exec`]).
    pub fn abandoned_because(&self) -> Option<String> {
        self.abandoned_lock().clone()
    }

    fn abandoned_lock(&self) -> MutexGuard<'_, Option<String>> {
        self.abandoned
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    async fn run(
        &self,
        command: &str,
        stdin: Option<&[u8]>,
        program: &str,
    ) -> Result<Output, SshError> {
        let channel_err = |reason: String| SshError::Channel {
            host: self.host.clone(),
            reason,
        };
        let command_err = |reason: String| SshError::Command {
            host: self.host.clone(),
            program: program.to_string(),
            reason,
        };
        let channel = self
            .handle
            .channel_open_session()
            .await
            .map_err(|e| channel_err(format!("cannot open a session channel: {e}")))?;
        let (mut rx, tx) = channel.split();
        tx.exec(true, command)
            .await
            .map_err(|e| channel_err(format!("cannot send the command: {e}")))?;

        // Input is written while the output is read, so a command that answers as it reads
        // cannot fill both windows and stall.
        let write = async {
            if let Some(bytes) = stdin {
                tx.data(bytes).await?;
            }
            tx.eof().await
        };
        let too_large = || SshError::AnswerTooLarge {
            host: self.host.clone(),
            program: program.to_string(),
            limit: self.max_answer,
        };
        let read = async {
            let mut out = Output::default();
            let mut status = None;
            // Counted before anything is kept: at most `max_answer` bytes are ever held.
            let mut budget = Budget(self.max_answer);
            while let Some(msg) = rx.wait().await {
                match msg {
                    ChannelMsg::Data { data } => {
                        budget.take(data.len()).map_err(|()| too_large())?;
                        out.stdout.extend_from_slice(&data);
                    }
                    ChannelMsg::ExtendedData { data, ext: 1 } => {
                        budget.take(data.len()).map_err(|()| too_large())?;
                        out.stderr.extend_from_slice(&data);
                    }
                    ChannelMsg::ExitStatus { exit_status } => status = Some(exit_status),
                    ChannelMsg::ExitSignal { signal_name, .. } => {
                        return Err(command_err(format!("killed by signal {signal_name:?}")));
                    }
                    ChannelMsg::Failure => {
                        return Err(command_err("the device refused to run it".into()));
                    }
                    ChannelMsg::Close => break,
                    _ => {}
                }
            }
            match status {
                Some(s) => {
                    out.status = s;
                    Ok(out)
                }
                None if self.handle.is_closed() => {
                    Err(channel_err("the connection was lost".into()))
                }
                None => Err(command_err("ended without an exit status".into())),
            }
        };
        // The command's end (exit status and close) decides: input it did not read is dropped,
        // and a write that fails because the channel closed is not an error of its own (a lost
        // connection shows on the read side).
        tokio::pin!(write, read);
        let mut writing = true;
        loop {
            tokio::select! {
                written = &mut write, if writing => {
                    writing = false;
                    if let Err(e) = written {
                        tracing::debug!(host = %self.host, program, error = %e, "ssh: could not write all of the command's input");
                    }
                }
                out = &mut read => {
                    if writing {
                        tracing::debug!(host = %self.host, program, "ssh: the command ended before reading all of its input");
                    }
                    return out;
                }
            }
        }
    }

    /// Logs out and closes the connection, then the jump host's.
    pub async fn close(self) {
        let _ = self
            .handle
            .disconnect(Disconnect::ByApplication, "", "en")
            .await;
        // The handle resolves when the session's task ends; do not wait on a silent peer.
        let _ = timeout(Duration::from_secs(2), self.handle).await;
        if let Some(jump) = self.jump.and_then(Arc::into_inner) {
            Box::pin(jump.close()).await;
        }
    }
}

/// The first word of a command, as named in errors; `command` when that word looks like more
/// than a program name (an assignment, or too long).
fn program_name(command: &str) -> String {
    match command.split_whitespace().next() {
        Some(word) if !word.contains('=') && word.len() <= 64 => word.to_string(),
        _ => "command".to_string(),
    }
}

/// What is left of an answer's byte limit.
struct Budget(usize);

impl Budget {
    /// Takes `n` bytes from what is left; `Err` when they do not fit.
    fn take(&mut self, n: usize) -> Result<(), ()> {
        self.0 = self.0.checked_sub(n).ok_or(())?;
        Ok(())
    }
}

/// Opens the transport and tries the credentials in order.
///
/// A refusal counts only when the connection is still up and still offers `password`. When the
/// device hangs up instead (a login-attempt limit), whether that password was checked is unknown:
/// it is tried once more on a fresh connection, and counts as refused if that ends the same way.
async fn login(
    target: &Target,
    jump: Option<&Session>,
    known: &KnownHosts,
    policy: HostKeyPolicy,
) -> Result<(client::Handle<Client>, usize), SshError> {
    let host = target.endpoint.to_string();
    let mut current = Some(open(target, jump, known, policy).await?);
    for (index, credential) in target.credentials.iter().enumerate() {
        let mut retried = false;
        loop {
            let handle = match current.as_mut() {
                Some(h) => h,
                None => current.insert(open(target, jump, known, policy).await?),
            };
            let attempt =
                handle.authenticate_password(&credential.user, credential.password.expose());
            let result = timeout(target.connect_timeout, attempt)
                .await
                .map_err(|_| SshError::Timeout {
                    host: host.clone(),
                    during: "logging in".into(),
                    after: target.connect_timeout,
                })?;
            match result {
                Ok(AuthResult::Success) => {
                    tracing::debug!(host = %host, user = %credential.user, index, "ssh: logged in");
                    let handle = current.take().expect("the handle just used");
                    return Ok((handle, index));
                }
                Ok(AuthResult::Failure {
                    remaining_methods, ..
                }) if !handle.is_closed() && remaining_methods.contains(&MethodKind::Password) => {
                    tracing::debug!(host = %host, user = %credential.user, index, "ssh: login refused");
                    break;
                }
                Ok(AuthResult::Failure { .. }) if retried => {
                    tracing::debug!(host = %host, user = %credential.user, index, "ssh: login refused (the device hung up again)");
                    current = None;
                    break;
                }
                Err(e) if retried => {
                    return Err(SshError::Connect {
                        host,
                        reason: format!("the device hung up during login: {e}"),
                    });
                }
                Ok(AuthResult::Failure { .. }) | Err(_) => {
                    tracing::debug!(host = %host, user = %credential.user, index, "ssh: the device hung up during login; trying again on a new connection");
                    current = None;
                    retried = true;
                }
            }
        }
    }
    if let Some(handle) = current {
        let _ = handle.disconnect(Disconnect::ByApplication, "", "en").await;
    }
    Err(SshError::AuthFailed {
        host,
        tried: target.credentials.len(),
    })
}

/// TCP (or the tunnel through `jump`) plus the SSH handshake, within `connect_timeout`.
async fn open(
    target: &Target,
    jump: Option<&Session>,
    known: &KnownHosts,
    policy: HostKeyPolicy,
) -> Result<client::Handle<Client>, SshError> {
    let host = target.endpoint.to_string();
    let verdict = Arc::new(Mutex::new(None));
    let handler = Client {
        endpoint: target.endpoint.clone(),
        known: known.clone(),
        policy,
        verdict: verdict.clone(),
    };
    let config = Arc::new(client::Config {
        preferred: preferred(target.legacy),
        nodelay: true,
        // A link that died silently (a jump host shared by many antennas) is noticed.
        keepalive_interval: Some(Duration::from_secs(15)),
        keepalive_max: 3,
        ..Default::default()
    });
    let attempt = async {
        let handshake = match jump {
            None => {
                let tcp = match target.connect_to {
                    Some(addr) => TcpStream::connect(addr).await,
                    None => {
                        TcpStream::connect((target.endpoint.host.as_str(), target.endpoint.port))
                            .await
                    }
                };
                let tcp = tcp.map_err(|e| SshError::Connect {
                    host: host.clone(),
                    reason: e.to_string(),
                })?;
                // russh's `nodelay` applies only to the sockets it opens itself: without it,
                // Nagle's algorithm held each small SSH message until the peer's delayed ACK
                // (40 ms on Linux), several times per session.
                let _ = tcp.set_nodelay(true);
                client::connect_stream(config, tcp, handler).await
            }
            Some(j) => {
                let tunnel = j
                    .handle
                    .channel_open_direct_tcpip(
                        target.endpoint.host.as_str(),
                        u32::from(target.endpoint.port),
                        "127.0.0.1",
                        0,
                    )
                    .await
                    .map_err(|e| SshError::Channel {
                        host: j.host.clone(),
                        reason: format!("the jump host would not open a tunnel to {host}: {e}"),
                    })?;
                client::connect_stream(config, tunnel.into_stream(), handler).await
            }
        };
        handshake.map_err(|e| {
            let refused = verdict
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .take();
            refused.unwrap_or_else(|| handshake_error(&host, e, target.legacy))
        })
    };
    timeout(target.connect_timeout, attempt)
        .await
        .map_err(|_| SshError::Timeout {
            host: host.clone(),
            during: "connecting".into(),
            after: target.connect_timeout,
        })?
}

fn handshake_error(host: &str, error: russh::Error, legacy: bool) -> SshError {
    let reason = match error {
        russh::Error::NoCommonAlgo { kind, ours, theirs } => {
            let hint = if legacy {
                ""
            } else {
                " (an old airOS device may need `legacy: true`)"
            };
            format!(
                "no common {} algorithm: the device offers {}, we offer {}{hint}",
                format!("{kind:?}").to_lowercase(),
                theirs.join(","),
                ours.join(","),
            )
        }
        other => format!("SSH handshake failed: {other}"),
    };
    SshError::Connect {
        host: host.to_string(),
        reason,
    }
}

/// The algorithms offered: russh's defaults without `ssh-rsa`, or for legacy targets the
/// defaults followed by what old dropbear needs.
fn preferred(legacy: bool) -> Preferred {
    let base = Preferred::DEFAULT;
    if !legacy {
        let key = base
            .key
            .iter()
            .filter(|a| !matches!(a, Algorithm::Rsa { hash: None }))
            .cloned()
            .collect::<Vec<_>>();
        return Preferred {
            key: key.into(),
            ..base
        };
    }
    let extension = [
        kex::EXTENSION_SUPPORT_AS_CLIENT,
        kex::EXTENSION_SUPPORT_AS_SERVER,
        kex::EXTENSION_OPENSSH_STRICT_KEX_AS_CLIENT,
        kex::EXTENSION_OPENSSH_STRICT_KEX_AS_SERVER,
    ];
    let mut kexes: Vec<kex::Name> = base
        .kex
        .iter()
        .filter(|k| !extension.contains(k))
        .cloned()
        .collect();
    kexes.extend([kex::DH_G14_SHA1, kex::DH_G1_SHA1]);
    kexes.extend(base.kex.iter().filter(|k| extension.contains(k)).cloned());
    let mut ciphers = base.cipher.to_vec();
    ciphers.extend([
        cipher::AES_128_CBC,
        cipher::AES_256_CBC,
        cipher::TRIPLE_DES_CBC,
    ]);
    let mut macs = base.mac.to_vec();
    macs.push(mac::HMAC_SHA1);
    Preferred {
        kex: kexes.into(),
        cipher: ciphers.into(),
        mac: macs.into(),
        ..base
    }
}

/// The russh client handler: pins host keys; everything else is russh's default.
struct Client {
    endpoint: Endpoint,
    known: KnownHosts,
    policy: HostKeyPolicy,
    /// Why the host key was refused, for [`open`] to report instead of russh's bare error.
    verdict: Arc<Mutex<Option<SshError>>>,
}

impl client::Handler for Client {
    type Error = russh::Error;

    async fn check_server_key(
        &mut self,
        server_key: &PublicKeyOrCertificate,
    ) -> Result<bool, Self::Error> {
        let refusal = match server_key {
            PublicKeyOrCertificate::PublicKey { key, .. } => {
                let fingerprint = key.fingerprint(HashAlg::Sha256).to_string();
                match self.known.check(&self.endpoint, &fingerprint, self.policy) {
                    Ok(()) => return Ok(true),
                    Err(e) => e,
                }
            }
            // Not requested (no certificate algorithms are offered), so never trusted.
            PublicKeyOrCertificate::Certificate(_) => SshError::Connect {
                host: self.endpoint.to_string(),
                reason: "the device presented a host certificate; only plain host keys are pinned"
                    .into(),
            },
        };
        *self
            .verdict
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(refusal);
        Ok(false)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use std::collections::HashMap;
    use std::convert::Infallible;
    use std::net::SocketAddr;
    use std::sync::OnceLock;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Instant;

    use russh::keys::PrivateKey;
    use russh::keys::ssh_key::rand_core::{TryCryptoRng, TryRng};
    use russh::server::{self, Auth, Msg, Server as _};
    use russh::{Channel, ChannelId, ChannelOpenFailure, MethodSet};
    use tokio::net::TcpListener;

    fn file_mode(path: &std::path::Path) -> u32 {
        crate::files::mode_of(&std::fs::metadata(path).unwrap())
    }

    const USER: &str = "ubnt";
    const RIGHT: &str = "r1ght-pa55";
    const WRONG: &str = "wr0ng-pa55";

    /// The operating system's generator, for russh's key generation (rand_core 0.10).
    struct OsRng;

    impl TryRng for OsRng {
        type Error = Infallible;
        fn try_next_u32(&mut self) -> Result<u32, Infallible> {
            let mut b = [0u8; 4];
            self.try_fill_bytes(&mut b)?;
            Ok(u32::from_le_bytes(b))
        }
        fn try_next_u64(&mut self) -> Result<u64, Infallible> {
            let mut b = [0u8; 8];
            self.try_fill_bytes(&mut b)?;
            Ok(u64::from_le_bytes(b))
        }
        fn try_fill_bytes(&mut self, dst: &mut [u8]) -> Result<(), Infallible> {
            getrandom::fill(dst).expect("the OS random source");
            Ok(())
        }
    }

    impl TryCryptoRng for OsRng {}

    fn ed25519() -> PrivateKey {
        PrivateKey::random(&mut OsRng, Algorithm::Ed25519).unwrap()
    }

    /// One RSA key for the whole test binary: generating one is slow in debug builds.
    fn rsa() -> PrivateKey {
        static KEY: OnceLock<PrivateKey> = OnceLock::new();
        KEY.get_or_init(|| PrivateKey::random(&mut OsRng, Algorithm::Rsa { hash: None }).unwrap())
            .clone()
    }

    /// An in-process SSH server on 127.0.0.1 with a fixed set of commands:
    /// `cat /tmp/x` prints `hello from NAME`, `cat` echoes its stdin, `exit 3` writes to stderr
    /// and exits 3, `sleep forever` never ends, `yes` streams `y` lines on stdout until the
    /// channel goes away, `halves` writes 40 KiB on stdout and 40 KiB on stderr and exits 0.
    /// Password auth only (`ubnt` / [`RIGHT`]).
    struct TestServer {
        addr: SocketAddr,
        fingerprint: String,
        /// `direct-tcpip` channels opened on this server.
        tunnels: Arc<AtomicUsize>,
        /// Commands received (exec requests), all sessions together.
        execs: Arc<AtomicUsize>,
        /// TCP connections accepted.
        connections: Arc<AtomicUsize>,
        shutdown: server::RunningServerHandle,
        task: tokio::task::JoinHandle<()>,
    }

    impl Drop for TestServer {
        fn drop(&mut self) {
            self.shutdown.shutdown("test over".into());
            self.task.abort();
        }
    }

    impl TestServer {
        async fn start(name: &'static str, key: PrivateKey, preferred: Preferred) -> TestServer {
            let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
            TestServer::serve(listener, name, config(key, preferred)).await
        }

        async fn serve(
            listener: TcpListener,
            name: &'static str,
            config: server::Config,
        ) -> TestServer {
            let addr = listener.local_addr().unwrap();
            let fingerprint = config.keys[0]
                .public_key()
                .fingerprint(HashAlg::Sha256)
                .to_string();
            let config = Arc::new(config);
            let tunnels = Arc::new(AtomicUsize::new(0));
            let connections = Arc::new(AtomicUsize::new(0));
            let execs = Arc::new(AtomicUsize::new(0));
            let mut factory = Factory {
                name,
                tunnels: tunnels.clone(),
                connections: connections.clone(),
                execs: execs.clone(),
            };
            let (tx, rx) = tokio::sync::oneshot::channel();
            let task = tokio::spawn(async move {
                let running = factory.run_on_socket(config, &listener);
                let _ = tx.send(running.handle());
                let _ = running.await;
            });
            TestServer {
                addr,
                fingerprint,
                tunnels,
                execs,
                connections,
                shutdown: rx.await.unwrap(),
                task,
            }
        }

        async fn modern(name: &'static str) -> TestServer {
            TestServer::start(name, ed25519(), Preferred::default()).await
        }

        fn endpoint(&self) -> Endpoint {
            Endpoint::new(self.addr.ip().to_string(), self.addr.port())
        }
    }

    fn config(key: PrivateKey, preferred: Preferred) -> server::Config {
        server::Config {
            keys: vec![key],
            preferred,
            methods: MethodSet::from(&[MethodKind::Password][..]),
            auth_rejection_time: Duration::from_millis(5),
            auth_rejection_time_initial: Some(Duration::ZERO),
            inactivity_timeout: Some(Duration::from_secs(30)),
            ..Default::default()
        }
    }

    struct Factory {
        name: &'static str,
        tunnels: Arc<AtomicUsize>,
        connections: Arc<AtomicUsize>,
        execs: Arc<AtomicUsize>,
    }

    impl server::Server for Factory {
        type Handler = Peer;
        fn new_client(&mut self, _: Option<SocketAddr>) -> Peer {
            self.connections.fetch_add(1, Ordering::SeqCst);
            Peer {
                name: self.name,
                tunnels: self.tunnels.clone(),
                execs: self.execs.clone(),
                echo: HashMap::new(),
            }
        }
    }

    struct Peer {
        name: &'static str,
        tunnels: Arc<AtomicUsize>,
        execs: Arc<AtomicUsize>,
        /// Channels running `cat`: their stdin so far.
        echo: HashMap<ChannelId, Vec<u8>>,
    }

    fn finish(
        session: &mut server::Session,
        channel: ChannelId,
        status: u32,
    ) -> Result<(), russh::Error> {
        session.exit_status_request(channel, status)?;
        session.eof(channel)?;
        session.close(channel)
    }

    impl server::Handler for Peer {
        type Error = russh::Error;

        async fn auth_password(&mut self, user: &str, password: &str) -> Result<Auth, Self::Error> {
            Ok(if user == USER && password == RIGHT {
                Auth::Accept
            } else {
                // As dropbear and OpenSSH do: password stays on offer.
                Auth::Reject {
                    proceed_with_methods: Some(MethodSet::from(&[MethodKind::Password][..])),
                    partial_success: false,
                }
            })
        }

        async fn channel_open_session(
            &mut self,
            _channel: Channel<Msg>,
            reply: server::ChannelOpenHandle,
            _session: &mut server::Session,
        ) -> Result<(), Self::Error> {
            reply.accept().await;
            Ok(())
        }

        async fn exec_request(
            &mut self,
            channel: ChannelId,
            data: &[u8],
            session: &mut server::Session,
        ) -> Result<(), Self::Error> {
            self.execs.fetch_add(1, Ordering::SeqCst);
            if data.starts_with(b"PASSWORD=") {
                // Refused, as a device refuses a request it does not support.
                session.channel_failure(channel)?;
                return session.close(channel);
            }
            session.channel_success(channel)?;
            match data {
                b"cat /tmp/x" => {
                    session.data(channel, format!("hello from {}\n", self.name).into_bytes())?;
                    finish(session, channel, 0)?;
                }
                b"cat" => {
                    self.echo.insert(channel, Vec::new());
                }
                b"exit 3" => {
                    session.extended_data(channel, 1, b"boom\n".to_vec())?;
                    finish(session, channel, 3)?;
                }
                b"sleep forever" => {}
                b"yes" => {
                    // Until the client stops taking it (the send fails once the session ends).
                    let handle = session.handle();
                    tokio::spawn(async move {
                        let chunk = b"y\n".repeat(16 * 1024);
                        while handle.data(channel, chunk.clone()).await.is_ok() {}
                    });
                }
                b"halves" => {
                    session.data(channel, vec![b'o'; 40 * 1024])?;
                    session.extended_data(channel, 1, vec![b'e'; 40 * 1024])?;
                    finish(session, channel, 0)?;
                }
                _ => {
                    session.extended_data(channel, 1, b"not found\n".to_vec())?;
                    finish(session, channel, 127)?;
                }
            }
            Ok(())
        }

        async fn data(
            &mut self,
            channel: ChannelId,
            data: &[u8],
            _session: &mut server::Session,
        ) -> Result<(), Self::Error> {
            if let Some(buf) = self.echo.get_mut(&channel) {
                buf.extend_from_slice(data);
            }
            Ok(())
        }

        async fn channel_eof(
            &mut self,
            channel: ChannelId,
            session: &mut server::Session,
        ) -> Result<(), Self::Error> {
            if let Some(buf) = self.echo.remove(&channel) {
                session.data(channel, buf)?;
                finish(session, channel, 0)?;
            }
            Ok(())
        }

        async fn channel_open_direct_tcpip(
            &mut self,
            channel: Channel<Msg>,
            host: &str,
            port: u32,
            _originator_address: &str,
            _originator_port: u32,
            reply: server::ChannelOpenHandle,
            _session: &mut server::Session,
        ) -> Result<(), Self::Error> {
            self.tunnels.fetch_add(1, Ordering::SeqCst);
            // Tests reach loopback only.
            let Ok(port) = u16::try_from(port) else {
                reply.reject(ChannelOpenFailure::ConnectFailed).await;
                return Ok(());
            };
            if host != "127.0.0.1" {
                reply
                    .reject(ChannelOpenFailure::AdministrativelyProhibited)
                    .await;
                return Ok(());
            }
            match TcpStream::connect((host, port)).await {
                Ok(mut tcp) => {
                    reply.accept().await;
                    tokio::spawn(async move {
                        let mut stream = channel.into_stream();
                        let _ = tokio::io::copy_bidirectional(&mut stream, &mut tcp).await;
                    });
                }
                Err(_) => reply.reject(ChannelOpenFailure::ConnectFailed).await,
            }
            Ok(())
        }
    }

    fn cred(password: &str) -> Credential {
        Credential {
            user: USER.into(),
            password: Secret::new(password),
        }
    }

    fn target(endpoint: Endpoint, credentials: Vec<Credential>) -> Target {
        Target {
            connect_timeout: Duration::from_secs(10),
            command_timeout: Duration::from_secs(10),
            ..Target::new(endpoint, credentials)
        }
    }

    /// A known-hosts file in a fresh folder (the folder lives as long as the returned guard).
    fn known_hosts() -> (tempfile::TempDir, KnownHosts) {
        let dir = tempfile::tempdir().unwrap();
        let known = KnownHosts::load(dir.path().join("known_hosts")).unwrap();
        (dir, known)
    }

    /// A table that already trusts `server`.
    fn trusting(server: &TestServer) -> (tempfile::TempDir, KnownHosts) {
        let (dir, known) = known_hosts();
        known
            .accept(&server.endpoint(), &server.fingerprint)
            .unwrap();
        (dir, known)
    }

    #[tokio::test]
    async fn exec_round_trips_stdin_bytes_and_reports_exit_status() {
        let server = TestServer::modern("antenna").await;
        let (_dir, known) = trusting(&server);
        let t = target(server.endpoint(), vec![cred(RIGHT)]);
        let (session, index) = Session::connect(&t, &known, HostKeyPolicy::Strict)
            .await
            .unwrap();
        assert_eq!(index, 0);

        let out = session.exec("cat /tmp/x", None).await.unwrap();
        assert_eq!(out.stdout, b"hello from antenna\n");
        assert!(out.success() && out.stderr.is_empty());

        // NUL, invalid UTF-8, CR/LF, quotes and a shell metacharacter or two, several packets.
        let mut payload = b"unms.uri=wss://x:443+k'ey\"$(reboot)\0\xff\xfe\r\n".to_vec();
        payload.extend((0..100_000u32).map(|i| (i % 251) as u8));
        let out = session.exec("cat", Some(&payload)).await.unwrap();
        assert_eq!(out.status, 0);
        assert!(out.stdout == payload, "stdin did not come back intact");
        // Debug never shows the bytes.
        assert_eq!(
            format!("{out:?}"),
            format!(
                "Output {{ status: 0, stdout: ({} bytes), stderr: (0 bytes) }}",
                payload.len()
            )
        );

        // No stdin: EOF is sent at once, so a reader of stdin still ends.
        let out = session.exec("cat", None).await.unwrap();
        assert_eq!((out.status, out.stdout.len()), (0, 0));

        let out = session.exec("exit 3", None).await.unwrap();
        assert_eq!(out.status, 3);
        assert_eq!(out.stderr, b"boom\n");
        assert!(!out.success());

        // A refused request is an error that names only the first word, and only when it looks
        // like a program name.
        let err = session
            .exec("PASSWORD=hunter2 run", None)
            .await
            .unwrap_err();
        assert!(
            matches!(&err, SshError::Command { program, .. } if program == "command"),
            "{err:?}"
        );
        assert!(!format!("{err} {err:?}").contains("hunter2"), "{err:?}");
        assert_eq!(program_name("cat /tmp/system.cfg"), "cat");
        assert_eq!(program_name("  "), "command");

        // A command that ends without reading its input: its status, even when the input is
        // larger than the channel window. Waiting for the write to finish would stall until
        // the command timeout and end in `SshError::Timeout`: an `Ok` is the proof that the
        // command's end decided (no wall-clock bound needed).
        match session.exec("exit 3", Some(&vec![7u8; 8_000_000])).await {
            Ok(out) => assert_eq!(out.status, 3),
            Err(e) => panic!("the unread input held the command up: {e:?}"),
        }

        // Commands can run concurrently on one session.
        let (a, b) = tokio::join!(
            session.exec("cat /tmp/x", None),
            session.exec("cat", Some(b"two"))
        );
        assert_eq!(a.unwrap().stdout, b"hello from antenna\n");
        assert_eq!(b.unwrap().stdout, b"two");
        session.close().await;
    }

    #[tokio::test]
    async fn credentials_are_tried_in_order_and_failures_never_show_passwords() {
        let server = TestServer::modern("antenna").await;
        let (_dir, known) = trusting(&server);

        let t = target(server.endpoint(), vec![cred(WRONG), cred(RIGHT)]);
        let (session, index) = Session::connect(&t, &known, HostKeyPolicy::Strict)
            .await
            .unwrap();
        assert_eq!(index, 1);
        assert_eq!(session.exec("cat /tmp/x", None).await.unwrap().status, 0);
        session.close().await;

        let t = target(
            server.endpoint(),
            vec![cred(WRONG), cred("another-wr0ng"), cred("third-wr0ng")],
        );
        let err = Session::connect(&t, &known, HostKeyPolicy::Strict)
            .await
            .unwrap_err();
        let host = server.endpoint().to_string();
        assert!(
            matches!(&err, SshError::AuthFailed { host: h, tried: 3 } if *h == host),
            "{err:?}"
        );
        let shown = format!("{err} {err:?} {t:?}");
        for secret in [WRONG, "another-wr0ng", "third-wr0ng"] {
            assert!(!shown.contains(secret), "{shown}");
        }
        assert!(shown.contains("(sensitive)"), "{shown}");

        let t = target(server.endpoint(), vec![]);
        let err = Session::connect(&t, &known, HostKeyPolicy::Strict)
            .await
            .unwrap_err();
        assert!(
            matches!(err, SshError::AuthFailed { tried: 0, .. }),
            "{err:?}"
        );
        assert_eq!(server.connections.load(Ordering::SeqCst), 3);
    }

    #[tokio::test]
    async fn a_device_that_hangs_up_after_a_wrong_password_is_reconnected_to() {
        // One attempt per connection (like a low MaxAuthTries): each wrong candidate costs a
        // connection, and the right one still logs in.
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let server = TestServer::serve(
            listener,
            "strict",
            server::Config {
                max_auth_attempts: 1,
                ..config(ed25519(), Preferred::default())
            },
        )
        .await;
        let (_dir, known) = trusting(&server);
        let t = target(
            server.endpoint(),
            vec![cred(WRONG), cred("another-wr0ng"), cred(RIGHT)],
        );
        let (session, index) = Session::connect(&t, &known, HostKeyPolicy::Strict)
            .await
            .unwrap();
        assert_eq!(index, 2);
        assert_eq!(session.exec("cat /tmp/x", None).await.unwrap().status, 0);
        session.close().await;
        assert!(
            server.connections.load(Ordering::SeqCst) >= 3,
            "{}",
            server.connections.load(Ordering::SeqCst)
        );

        let t = target(server.endpoint(), vec![cred(WRONG), cred("another-wr0ng")]);
        let err = Session::connect(&t, &known, HostKeyPolicy::Strict)
            .await
            .unwrap_err();
        assert!(
            matches!(err, SshError::AuthFailed { tried: 2, .. }),
            "{err:?}"
        );
    }

    #[tokio::test]
    async fn host_keys_are_pinned_trusted_on_first_use_only_when_asked_and_accepted_explicitly() {
        let server = TestServer::modern("antenna").await;
        let (dir, known) = known_hosts();
        let path = dir.path().join("known_hosts");
        let t = target(server.endpoint(), vec![cred(RIGHT)]);
        let host = server.endpoint().to_string();

        // Strict, unknown: refused, nothing written.
        let err = Session::connect(&t, &known, HostKeyPolicy::Strict)
            .await
            .unwrap_err();
        match &err {
            SshError::HostKeyUnknown {
                host: h,
                fingerprint,
                ..
            } => {
                assert_eq!(h, &host);
                assert_eq!(fingerprint, &server.fingerprint);
            }
            other => panic!("{other:?}"),
        }
        assert!(
            err.to_string()
                .contains(&format!("{host} {}", server.fingerprint)),
            "{err}"
        );
        assert!(!path.exists());
        assert_eq!(known.get(&server.endpoint()), None);

        // Trust on first use: trusted for the run, in memory only (nothing written); once
        // recorded (0600), a strict connect works, even from a fresh load.
        let (session, _) = Session::connect(&t, &known, HostKeyPolicy::TrustOnFirstUse)
            .await
            .unwrap();
        session.close().await;
        assert!(!path.exists(), "trusting a key wrote the known-hosts file");
        assert_eq!(known.get(&server.endpoint()), None);
        let trusted = vec![TrustedKey {
            endpoint: server.endpoint(),
            fingerprint: server.fingerprint.clone(),
        }];
        assert_eq!(known.trusted(), trusted);
        assert_eq!(known.record_trusted(&known.trusted()).unwrap(), trusted);
        assert!(known.trusted().is_empty());
        assert_eq!(file_mode(&path), 0o600);
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(
            text.contains(&format!("{host} {}\n", server.fingerprint)),
            "{text}"
        );
        let reloaded = KnownHosts::load(&path).unwrap();
        let (session, _) = Session::connect(&t, &reloaded, HostKeyPolicy::Strict)
            .await
            .unwrap();
        session.close().await;

        // Another key on the same host:port (a reset device, or an impostor): refused under
        // both policies, naming both fingerprints; the pin is untouched.
        let port = server.addr.port();
        let old_fingerprint = server.fingerprint.clone();
        drop(server);
        let listener = loop {
            // The same port again: it is free once the old server's task has ended.
            match TcpListener::bind(("127.0.0.1", port)).await {
                Ok(l) => break l,
                Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
            }
        };
        let impostor =
            TestServer::serve(listener, "reset", config(ed25519(), Preferred::default())).await;
        assert_eq!(impostor.endpoint(), t.endpoint);
        for policy in [HostKeyPolicy::Strict, HostKeyPolicy::TrustOnFirstUse] {
            let err = Session::connect(&t, &reloaded, policy).await.unwrap_err();
            match &err {
                SshError::HostKeyChanged {
                    host: h,
                    expected,
                    got,
                    ..
                } => {
                    assert_eq!(h, &host);
                    assert_eq!(expected, &old_fingerprint);
                    assert_eq!(got, &impostor.fingerprint);
                }
                other => panic!("{other:?}"),
            }
            let msg = err.to_string();
            assert!(
                msg.contains(&old_fingerprint) && msg.contains(&impostor.fingerprint),
                "{msg}"
            );
            assert!(msg.contains("accept it explicitly"), "{msg}");
        }
        assert_eq!(
            reloaded.get(&t.endpoint).as_deref(),
            Some(old_fingerprint.as_str())
        );

        // The operator accepts the new key: saved, replaced (not duplicated), and it connects.
        reloaded.accept(&t.endpoint, &impostor.fingerprint).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(text.matches(&host).count(), 1, "{text}");
        assert!(text.contains(&impostor.fingerprint), "{text}");
        let (session, _) = Session::connect(&t, &reloaded, HostKeyPolicy::Strict)
            .await
            .unwrap();
        assert_eq!(
            session.exec("cat /tmp/x", None).await.unwrap().stdout,
            b"hello from reset\n"
        );
        session.close().await;

        // Malformed fingerprints are refused.
        assert!(matches!(
            reloaded.accept(&t.endpoint, "MD5:aa:bb"),
            Err(KnownHostsError::BadFingerprint(_))
        ));
    }

    #[test]
    fn a_key_trusted_on_first_use_stays_in_memory_until_recorded_and_never_replaces_a_pin() {
        let (dir, known) = known_hosts();
        let path = dir.path().join("known_hosts");
        let fp = "SHA256:47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU";
        let other = "SHA256:3m8N6pq2bC0u1yX5Kx3n0o1z7h0fQy1m6bF0c8j1a2Q";
        let (a, b) = (Endpoint::new("10.0.0.1", 22), Endpoint::new("10.0.0.2", 22));
        assert!(matches!(
            known.check(&a, fp, HostKeyPolicy::Strict),
            Err(SshError::HostKeyUnknown { .. })
        ));
        known.check(&a, fp, HostKeyPolicy::TrustOnFirstUse).unwrap();
        known.check(&b, fp, HostKeyPolicy::TrustOnFirstUse).unwrap();
        assert!(!path.exists(), "trusting wrote the file");
        // The run trusts it from now on; another key for the same device is a changed key.
        known.check(&a, fp, HostKeyPolicy::Strict).unwrap();
        for policy in [HostKeyPolicy::Strict, HostKeyPolicy::TrustOnFirstUse] {
            assert!(matches!(
                known.check(&a, other, policy),
                Err(SshError::HostKeyChanged { .. })
            ));
        }
        assert_eq!(
            known
                .trusted()
                .iter()
                .map(|t| t.endpoint.clone())
                .collect::<Vec<_>>(),
            vec![a.clone(), b.clone()]
        );
        // Meanwhile the operator pins another key for b (another process): it is kept.
        KnownHosts::load(&path).unwrap().accept(&b, other).unwrap();
        let added = known.record_trusted(&known.trusted()).unwrap();
        assert_eq!(
            added,
            vec![TrustedKey {
                endpoint: a.clone(),
                fingerprint: fp.to_string()
            }]
        );
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.contains(&format!("10.0.0.1:22 {fp}\n")), "{text}");
        assert!(text.contains(&format!("10.0.0.2:22 {other}\n")), "{text}");
        assert_eq!(text.matches("10.0.0.2:22").count(), 1, "{text}");
        assert_eq!(known.get(&b).as_deref(), Some(other));
        assert!(known.trusted().is_empty());
        // Nothing new to record: the file is not written again (a save replaces the inode).
        use std::os::unix::fs::MetadataExt;
        let before = std::fs::metadata(&path).unwrap().ino();
        assert!(known.record_trusted(&added).unwrap().is_empty());
        assert_eq!(std::fs::metadata(&path).unwrap().ino(), before);
    }

    #[test]
    fn known_hosts_file_keeps_comments_and_rejects_bad_lines() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("kh");
        let fp = "SHA256:47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU";
        std::fs::write(&path, format!("# mine\n\n10.0.0.1:22 {fp}\n")).unwrap();
        let known = KnownHosts::load(&path).unwrap();
        assert_eq!(
            known.get(&Endpoint::new("10.0.0.1", 22)).as_deref(),
            Some(fp)
        );
        assert_eq!(known.get(&Endpoint::new("10.0.0.1", 2222)), None);
        known.accept(&Endpoint::new("fd00::1", 22), fp).unwrap();
        assert_eq!(
            std::fs::read_to_string(&path).unwrap(),
            format!("# mine\n\n10.0.0.1:22 {fp}\n[fd00::1]:22 {fp}\n")
        );
        assert_eq!(file_mode(&path), 0o600);

        std::fs::write(&path, "10.0.0.1:22\n").unwrap();
        let err = KnownHosts::load(&path).unwrap_err();
        assert!(err.to_string().contains("kh:1:"), "{err}");
        std::fs::write(
            &path,
            format!("# x\n10.0.0.1:22 {fp}\n10.0.0.2:22 nonsense\n"),
        )
        .unwrap();
        let err = KnownHosts::load(&path).unwrap_err();
        assert!(err.to_string().contains("kh:3:"), "{err}");
    }

    /// What old airOS (dropbear, OpenSSL 1.0.0) offers: an `ssh-rsa` host key, SHA-1 key
    /// exchange and MAC, and the given cipher.
    fn old_dropbear(kex: kex::Name, cipher: cipher::Name) -> Preferred {
        Preferred {
            kex: vec![kex].into(),
            key: vec![Algorithm::Rsa { hash: None }].into(),
            cipher: vec![cipher].into(),
            mac: vec![mac::HMAC_SHA1].into(),
            compression: vec![russh::compression::NONE].into(),
            ..Preferred::default()
        }
    }

    #[tokio::test]
    async fn legacy_algorithms_are_offered_only_to_legacy_targets() {
        let cases = [
            (kex::DH_G14_SHA1, cipher::AES_128_CTR),
            (kex::DH_G14_SHA1, cipher::AES_128_CBC),
            (kex::DH_G1_SHA1, cipher::AES_256_CBC),
            (kex::DH_G1_SHA1, cipher::TRIPLE_DES_CBC),
        ];
        for (kex, cipher) in cases {
            let server = TestServer::start("old", rsa(), old_dropbear(kex, cipher)).await;
            let (_dir, known) = trusting(&server);
            let mut t = target(server.endpoint(), vec![cred(RIGHT)]);

            let err = Session::connect(&t, &known, HostKeyPolicy::Strict)
                .await
                .unwrap_err();
            let msg = err.to_string();
            assert!(
                matches!(err, SshError::Connect { .. }),
                "{kex:?}/{cipher:?}: {err:?}"
            );
            assert!(
                msg.contains("no common") && msg.contains("legacy: true"),
                "{msg}"
            );

            t.legacy = true;
            let (session, _) = Session::connect(&t, &known, HostKeyPolicy::Strict)
                .await
                .unwrap_or_else(|e| panic!("{kex:?}/{cipher:?}: {e}"));
            let out = session.exec("cat", Some(b"legacy ok")).await.unwrap();
            assert_eq!(out.stdout, b"legacy ok");
            session.close().await;
        }

        // Modern key exchange and ciphers but only an `ssh-rsa` (SHA-1) host key: refused
        // unless legacy.
        let only_ssh_rsa = Preferred {
            key: vec![Algorithm::Rsa { hash: None }].into(),
            ..Preferred::default()
        };
        let server = TestServer::start("rsa-sha1", rsa(), only_ssh_rsa).await;
        let (_dir, known) = trusting(&server);
        let mut t = target(server.endpoint(), vec![cred(RIGHT)]);
        let err = Session::connect(&t, &known, HostKeyPolicy::Strict)
            .await
            .unwrap_err();
        assert!(err.to_string().contains("no common key algorithm"), "{err}");
        t.legacy = true;
        let (session, _) = Session::connect(&t, &known, HostKeyPolicy::Strict)
            .await
            .unwrap();
        session.close().await;
    }

    #[tokio::test]
    async fn a_jump_host_carries_the_connection_and_is_checked_too() {
        let jump = TestServer::modern("jump").await;
        let antenna = TestServer::modern("antenna").await;
        let (_dir, known) = trusting(&antenna);
        let mut t = target(antenna.endpoint(), vec![cred(WRONG), cred(RIGHT)]);
        t.jump = Some(Box::new(target(jump.endpoint(), vec![cred(RIGHT)])));

        // The jump host's key is unknown: it is the one refused.
        let err = Session::connect(&t, &known, HostKeyPolicy::Strict)
            .await
            .unwrap_err();
        assert!(
            matches!(&err, SshError::HostKeyUnknown { host, .. } if *host == jump.endpoint().to_string()),
            "{err:?}"
        );
        assert_eq!(antenna.connections.load(Ordering::SeqCst), 0);

        known.accept(&jump.endpoint(), &jump.fingerprint).unwrap();
        let (session, index) = Session::connect(&t, &known, HostKeyPolicy::Strict)
            .await
            .unwrap();
        assert_eq!(index, 1);
        assert_eq!(jump.tunnels.load(Ordering::SeqCst), 1);
        assert_eq!(antenna.connections.load(Ordering::SeqCst), 1);
        let out = session.exec("cat /tmp/x", None).await.unwrap();
        assert_eq!(out.stdout, b"hello from antenna\n");
        let out = session
            .exec("cat", Some(b"\0through\xffthe jump"))
            .await
            .unwrap();
        assert_eq!(out.stdout, b"\0through\xffthe jump");
        assert_eq!(jump.tunnels.load(Ordering::SeqCst), 1);
        session.close().await;
    }

    #[tokio::test(start_paused = true)]
    async fn a_silent_server_times_out_after_the_connect_timeout() {
        // Accepts TCP and never says a word. On tokio's paused clock the runtime idles while
        // the client waits for a banner that never comes, so the clock jumps to the limit: the
        // time taken is the limit (one attempt, no retry), measured without a wall clock.
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let silent = tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((socket, _)) = listener.accept().await {
                held.push(socket);
            }
        });
        let mut t = target(Endpoint::new("127.0.0.1", addr.port()), vec![cred(RIGHT)]);
        t.connect_timeout = Duration::from_secs(10);
        let (_dir, known) = known_hosts();
        let started = tokio::time::Instant::now();
        let err = Session::connect(&t, &known, HostKeyPolicy::TrustOnFirstUse)
            .await
            .unwrap_err();
        let took = started.elapsed();
        assert!(
            matches!(&err, SshError::Timeout { during, after, .. } if during == "connecting" && *after == t.connect_timeout),
            "{err:?}"
        );
        assert!(
            took >= t.connect_timeout && took < 2 * t.connect_timeout,
            "{took:?} on the paused clock"
        );
        assert!(known.trusted().is_empty());
        silent.abort();
    }

    #[tokio::test]
    async fn an_endless_command_times_out_and_the_session_is_abandoned() {
        // On the real clock: a paused clock jumps whenever the runtime waits on a loopback
        // socket, so the command would "time out" before it even reached the server. What a
        // wall-clock bound would show is in the error instead: the step and the limit that
        // ended it. Without a working limit the test never ends.
        let server = TestServer::modern("antenna").await;
        let (_dir, known) = trusting(&server);
        let mut t = target(server.endpoint(), vec![cred(RIGHT)]);
        t.command_timeout = Duration::from_millis(300);
        let (session, _) = Session::connect(&t, &known, HostKeyPolicy::Strict)
            .await
            .unwrap();
        let started = Instant::now();
        let err = session.exec("sleep forever", None).await.unwrap_err();
        assert!(started.elapsed() >= t.command_timeout);
        assert!(
            matches!(&err, SshError::Timeout { during, after, .. } if during == "running `sleep`" && *after == t.command_timeout),
            "{err:?}"
        );
        assert!(
            err.to_string()
                .ends_with("timed out after 300ms while running `sleep`"),
            "{err}"
        );
        assert!(!session.is_closed());
        // The command may still run on the device: nothing more is sent on this session.
        let err = session.exec("cat /tmp/x", None).await.unwrap_err();
        assert_eq!(
            err.to_string(),
            format!(
                "{}: `cat` not sent: the session was abandoned after an earlier answer broke off (timed out after 300ms while running `sleep`)",
                server.endpoint()
            )
        );
        assert_eq!(server.execs.load(Ordering::SeqCst), 1);
        session.close().await;
        // A new session answers.
        let (session, _) = Session::connect(&t, &known, HostKeyPolicy::Strict)
            .await
            .unwrap();
        assert_eq!(session.exec("cat /tmp/x", None).await.unwrap().status, 0);
        session.close().await;

        // Nobody listening: a connection error, not a timeout.
        let closed = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = closed.local_addr().unwrap().port();
        drop(closed);
        let t = target(Endpoint::new("127.0.0.1", port), vec![cred(RIGHT)]);
        let err = Session::connect(&t, &known, HostKeyPolicy::Strict)
            .await
            .unwrap_err();
        assert!(matches!(err, SshError::Connect { .. }), "{err:?}");
    }

    #[tokio::test]
    async fn an_answer_is_bounded_in_bytes_and_a_broken_read_abandons_the_session() {
        let server = TestServer::modern("antenna").await;
        let (_dir, known) = trusting(&server);
        assert_eq!(
            Target::new(server.endpoint(), vec![]).max_answer,
            DEFAULT_MAX_ANSWER
        );
        let mut t = target(server.endpoint(), vec![cred(RIGHT)]);
        t.max_answer = 64 * 1024;
        let (session, _) = Session::connect(&t, &known, HostKeyPolicy::Strict)
            .await
            .unwrap();
        // Under the limit: answered in full.
        assert_eq!(session.exec("cat /tmp/x", None).await.unwrap().status, 0);
        // stdout and stderr count together: 80 KiB in two halves of 40 KiB is too much.
        let err = session.exec("halves", None).await.unwrap_err();
        assert!(
            matches!(&err, SshError::AnswerTooLarge { program, limit: 65536, .. } if program == "halves"),
            "{err:?}"
        );
        assert_eq!(server.execs.load(Ordering::SeqCst), 2);
        let err = session.exec("cat /tmp/x", None).await.unwrap_err();
        assert!(
            matches!(&err, SshError::SessionAbandoned { program, cause, .. }
                if program == "cat" && cause == "`halves` answered with more than 65536 bytes; answer and session abandoned"),
            "{err:?}"
        );
        assert_eq!(server.execs.load(Ordering::SeqCst), 2, "a command was sent");
        assert!(session.abandoned_because().is_some());
        session.close().await;

        // A device that never stops talking: a clear error once the limit is passed (the test
        // ends, so reading stopped), and nothing more is sent.
        let (session, _) = Session::connect(&t, &known, HostKeyPolicy::Strict)
            .await
            .unwrap();
        let err = session.exec("yes", None).await.unwrap_err();
        assert_eq!(
            err.to_string(),
            format!(
                "{}: `yes` answered with more than 65536 bytes; answer and session abandoned",
                server.endpoint()
            )
        );
        let sent = server.execs.load(Ordering::SeqCst);
        assert!(matches!(
            session.exec("cat", Some(b"more")).await,
            Err(SshError::SessionAbandoned { .. })
        ));
        assert_eq!(server.execs.load(Ordering::SeqCst), sent);
        session.close().await;
    }
}
