//! The airOS side of the UISP connection, as pure data: the connection string, the
//! `key=value` configuration files that hold it, and the files that say which device this is.
//!
//! - [`ConnectionString`]: `wss://HOST:PORT+KEY[+FLAG...]`, parsed, compared ([`compare`]) with
//!   the rule the reference gives for keys (a connected device rewrites its own key, which is
//!   never drift), and shown only masked.
//! - [`SystemCfg`]: `/tmp/system.cfg` or `/tmp/running.cfg`, kept as raw lines so that
//!   [`SystemCfg::with_unms`] rewrites the `unms.*` lines and nothing else, byte for byte.
//! - [`BoardInfo`], [`parse_version`], [`parse_mca_status`]: the device's identity and firmware.
//!
//! No I/O here: the SSH side reads and writes the files, this module decides their content.
//! Secrets: the key of a connection string lives in a [`Secret`] and is never part of an error,
//! a `Debug` or a `Display`; the raw lines of a configuration file (which also hold Wi-Fi and
//! user password hashes) never print either.

use std::collections::{BTreeSet, HashSet};
use std::fmt;
use std::str::FromStr;

use crate::mac::normalise_mac;
use crate::secret::Secret;

// ---------------------------------------------------------------------------------------------
// The connection string
// ---------------------------------------------------------------------------------------------

/// The flag that lets the device accept the UISP server's self-signed certificate.
pub const ALLOW_SELF_SIGNED: &str = "allowSelfSignedCertificate";

/// Flags the reference names as understood by the device. Others are kept and warned about
/// ([`ConnectionString::unknown_flags`]): field scripts use some (`allowUntrustedCertificate`)
/// whose effect is unknown, and refusing them would make such devices unreadable.
pub const KNOWN_FLAGS: &[&str] = &[ALLOW_SELF_SIGNED];

/// Length of a UISP master key: 48 characters of `[A-Za-z0-9]` (base64 of 36 random bytes
/// with `+` and `/` replaced), so it never holds the `+` that separates the parts.
pub const MASTER_KEY_LEN: usize = 48;

/// A connection string that cannot be parsed. No variant holds any text of the input: the key
/// sits in the middle of it, and a malformed string may hold the key anywhere.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UriError {
    /// Nothing but white space.
    #[error("the connection string is empty")]
    Empty,
    /// A control character or white space inside the string (leading and trailing white space
    /// is ignored).
    #[error("the connection string holds white space or a control character")]
    ControlOrWhitespace,
    /// No `://`.
    #[error("the connection string does not start with wss://")]
    MissingScheme,
    /// A scheme other than `wss` (or `ws`).
    #[error("the connection string's scheme is not wss")]
    UnsupportedScheme,
    /// No `+KEY` after the address, or an empty key.
    #[error("the connection string has no key: expected wss://HOST:PORT+KEY")]
    MissingKey,
    /// No `:PORT` after the host.
    #[error("the connection string has no port: expected wss://HOST:PORT+KEY")]
    MissingPort,
    /// The port is not a number from 1 to 65535 written without sign or leading zero.
    #[error("the connection string's port is not a number from 1 to 65535")]
    BadPort,
    /// The host is empty or holds a character a host name or bracketed IPv6 address cannot.
    #[error("the connection string's host is not a host name or IP address")]
    BadHost,
    /// Digits and dots that a resolver reads other than a reviewer (`0177.0.0.1` is 127.0.0.1).
    #[error(
        "the connection string's host is not an IPv4 address in canonical form (four decimal numbers 0-255 without leading zeros)"
    )]
    NotCanonicalIpv4,
    /// The key is not [`MASTER_KEY_LEN`] characters long (its length is not secret: it helps
    /// spot a character lost in a copy and paste, or a `+` inside the key).
    #[error("the connection string's key is {len} characters long, expected 48")]
    KeyLength {
        /// The length found.
        len: usize,
    },
    /// The key holds a character outside `[A-Za-z0-9]`.
    #[error("the connection string's key holds a character outside A-Z, a-z, 0-9")]
    KeyCharacters,
    /// `++`, or a trailing `+`.
    #[error("the connection string has an empty flag (`++` or a trailing `+`)")]
    EmptyFlag,
}

/// A UISP connection string, `wss://HOST:PORT+KEY` with optional `+FLAG`s.
///
/// `Debug` shows the key as `(sensitive)`; `Display` is [`ConnectionString::masked`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectionString {
    /// `wss` as UISP gives it (or `ws`, parsed so that a device holding it shows as drift
    /// rather than as unreadable), kept as written; compared ignoring ASCII case.
    pub scheme: String,
    /// A host name or IP address, kept as written; an IPv6 address without its brackets.
    /// Compared ignoring ASCII case.
    pub host: String,
    /// Always written in UISP's form, so always required here.
    pub port: u16,
    /// The master key (or, on a connected device, its device-specific key).
    pub key: Secret,
    /// Flags in the order written; compared as a set.
    pub flags: Vec<String>,
}

/// How strictly [`ConnectionString`] checks its key.
#[derive(Clone, Copy, PartialEq, Eq)]
enum KeyRule {
    /// 48 characters of `[A-Za-z0-9]`.
    Master,
    /// Anything non-empty (no `+`, white space or control character, by construction).
    Any,
}

impl ConnectionString {
    /// Parses a connection string whose key must be a master key: 48 characters of
    /// `[A-Za-z0-9]`. Use it for the desired string (from YAML or `GET /nms/connection`).
    /// Leading and trailing white space (a newline from a file) is ignored; the port is
    /// required because UISP always writes it.
    pub fn parse(s: &str) -> Result<ConnectionString, UriError> {
        Self::parse_with(s, KeyRule::Master)
    }

    /// Parses a connection string read from a device: as [`ConnectionString::parse`], except
    /// that the key may be any non-empty text without `+`. Why: a connected device rewrites its
    /// key to a device-specific one, whose form the reference does not pin down; refusing it
    /// would make every connected device unreadable instead of in sync.
    pub fn parse_live(s: &str) -> Result<ConnectionString, UriError> {
        Self::parse_with(s, KeyRule::Any)
    }

    fn parse_with(s: &str, rule: KeyRule) -> Result<ConnectionString, UriError> {
        let s = s.trim();
        if s.is_empty() {
            return Err(UriError::Empty);
        }
        if s.chars().any(|c| c.is_control() || c.is_whitespace()) {
            return Err(UriError::ControlOrWhitespace);
        }
        let (scheme, rest) = s.split_once("://").ok_or(UriError::MissingScheme)?;
        if !(scheme.eq_ignore_ascii_case("wss") || scheme.eq_ignore_ascii_case("ws")) {
            return Err(UriError::UnsupportedScheme);
        }
        // Safe: neither a host, a port nor a master key holds '+'.
        let mut parts = rest.split('+');
        let authority = parts.next().unwrap_or_default();
        let key = parts.next().ok_or(UriError::MissingKey)?;
        let flags: Vec<String> = parts.map(str::to_string).collect();
        let (host, port) = split_authority(authority)?;
        check_key(key, rule)?;
        if flags.iter().any(String::is_empty) {
            return Err(UriError::EmptyFlag);
        }
        Ok(ConnectionString {
            scheme: scheme.to_string(),
            host: host.to_string(),
            port,
            key: Secret::new(key),
            flags,
        })
    }

    /// Flags not in [`KNOWN_FLAGS`], each once, in the order written: to be reported as
    /// warnings, never as errors.
    pub fn unknown_flags(&self) -> Vec<&str> {
        let mut seen = HashSet::new();
        self.flags
            .iter()
            .map(String::as_str)
            .filter(|f| !KNOWN_FLAGS.contains(f) && seen.insert(*f))
            .collect()
    }

    /// One warning text per unknown flag (no key in them: flags come after it).
    pub fn warnings(&self) -> Vec<String> {
        self.unknown_flags()
            .into_iter()
            .map(|f| {
                format!(
                    "unknown flag `{f}` in the connection string (known: {}): kept as written",
                    KNOWN_FLAGS.join(", ")
                )
            })
            .collect()
    }

    /// Whether the device is told to accept a self-signed server certificate.
    pub fn allows_self_signed(&self) -> bool {
        self.flags.iter().any(|f| f == ALLOW_SELF_SIGNED)
    }

    /// The exact string to write to a device, as a [`Secret`] because it holds the key.
    pub fn to_secret_string(&self) -> Secret {
        Secret::new(self.render(self.key.expose()))
    }

    /// Everything but the key, for messages and plans:
    /// `wss://uisp.example.net:443+(key)+allowSelfSignedCertificate`.
    pub fn masked(&self) -> String {
        self.render("(key)")
    }

    fn render(&self, key: &str) -> String {
        let mut s = if self.host.contains(':') {
            format!("{}://[{}]:{}+{key}", self.scheme, self.host, self.port)
        } else {
            format!("{}://{}:{}+{key}", self.scheme, self.host, self.port)
        };
        for f in &self.flags {
            s.push('+');
            s.push_str(f);
        }
        s
    }
}

impl fmt::Display for ConnectionString {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.masked())
    }
}

impl FromStr for ConnectionString {
    type Err = UriError;
    /// [`ConnectionString::parse`] (master key required).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

/// `HOST:PORT` or `[IPV6]:PORT` into host (without brackets) and port.
fn split_authority(authority: &str) -> Result<(&str, u16), UriError> {
    let (host, port) = if let Some(inner) = authority.strip_prefix('[') {
        let (host, after) = inner.split_once(']').ok_or(UriError::BadHost)?;
        let ok = host.contains(':')
            && host
                .chars()
                .all(|c| c.is_ascii_hexdigit() || c == ':' || c == '.');
        if !ok {
            return Err(UriError::BadHost);
        }
        match after.strip_prefix(':') {
            Some(port) => (host, port),
            None if after.is_empty() => return Err(UriError::MissingPort),
            None => return Err(UriError::BadHost),
        }
    } else {
        let (host, port) = authority.rsplit_once(':').ok_or(UriError::MissingPort)?;
        let ok = !host.is_empty()
            && !host.starts_with(['.', '-'])
            && host
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_'));
        if !ok {
            return Err(UriError::BadHost);
        }
        crate::untrusted::addr::unambiguous(host).map_err(|_| UriError::NotCanonicalIpv4)?;
        (host, port)
    };
    if port.is_empty() {
        return Err(UriError::MissingPort);
    }
    // Digits only (u16::from_str would take a '+'), no leading zero, so that the string
    // written back is the string read.
    if port.len() > 5 || !port.bytes().all(|b| b.is_ascii_digit()) || port.starts_with('0') {
        return Err(UriError::BadPort);
    }
    let port: u16 = port.parse().map_err(|_| UriError::BadPort)?;
    Ok((host, port))
}

fn check_key(key: &str, rule: KeyRule) -> Result<(), UriError> {
    if key.is_empty() {
        return Err(UriError::MissingKey);
    }
    if rule == KeyRule::Master {
        if !key.chars().all(|c| c.is_ascii_alphanumeric()) {
            return Err(UriError::KeyCharacters);
        }
        if key.len() != MASTER_KEY_LEN {
            return Err(UriError::KeyLength { len: key.len() });
        }
    }
    Ok(())
}

/// Whether a device's connection string matches the desired one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UriSync {
    /// Nothing to change.
    InSync,
    /// What differs (never a key's value).
    Differs(Vec<Difference>),
}

impl UriSync {
    /// Whether nothing differs.
    pub fn is_in_sync(&self) -> bool {
        matches!(self, UriSync::InSync)
    }
}

/// One part of a connection string that differs. Values are shown for every part but the key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Difference {
    /// The scheme (compared ignoring ASCII case).
    Scheme {
        /// Desired scheme.
        desired: String,
        /// Scheme on the device.
        live: String,
    },
    /// The host (compared ignoring ASCII case).
    Host {
        /// Desired host.
        desired: String,
        /// Host on the device.
        live: String,
    },
    /// The port.
    Port {
        /// Desired port.
        desired: u16,
        /// Port on the device.
        live: u16,
    },
    /// The set of flags.
    Flags {
        /// Desired flags the device lacks, sorted.
        missing: Vec<String>,
        /// Flags the device has and the desired string does not, sorted.
        extra: Vec<String>,
    },
    /// The key is neither the desired key nor excused by the device being connected.
    Key,
}

impl Difference {
    /// The part's name: `scheme`, `host`, `port`, `flags` or `key`.
    pub fn field(&self) -> &'static str {
        match self {
            Difference::Scheme { .. } => "scheme",
            Difference::Host { .. } => "host",
            Difference::Port { .. } => "port",
            Difference::Flags { .. } => "flags",
            Difference::Key => "key",
        }
    }
}

impl fmt::Display for Difference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Difference::Scheme { desired, live } => write!(f, "scheme: {live} -> {desired}"),
            Difference::Host { desired, live } => write!(f, "host: {live} -> {desired}"),
            Difference::Port { desired, live } => write!(f, "port: {live} -> {desired}"),
            Difference::Flags { missing, extra } => {
                f.write_str("flags:")?;
                if !missing.is_empty() {
                    write!(f, " add {}", missing.join(", "))?;
                }
                if !extra.is_empty() {
                    if !missing.is_empty() {
                        f.write_str(";")?;
                    }
                    write!(f, " remove {}", extra.join(", "))?;
                }
                Ok(())
            }
            Difference::Key => {
                f.write_str("key: (sensitive) differs and the device is not connected in UISP")
            }
        }
    }
}

/// Compares the desired connection string with the one a device holds.
///
/// Scheme and host match ignoring ASCII case, the port exactly, flags as a set (order and
/// repeats do not matter). The key is in sync when it equals the desired (master) key, or
/// when `live_device_connected` (the device shows as connected in UISP): a device rewrites its
/// own key to a device-specific one after connecting, and that must never show as drift.
pub fn compare(
    desired: &ConnectionString,
    live: &ConnectionString,
    live_device_connected: bool,
) -> UriSync {
    let mut out = Vec::new();
    if !desired.scheme.eq_ignore_ascii_case(&live.scheme) {
        out.push(Difference::Scheme {
            desired: desired.scheme.clone(),
            live: live.scheme.clone(),
        });
    }
    if !desired.host.eq_ignore_ascii_case(&live.host) {
        out.push(Difference::Host {
            desired: desired.host.clone(),
            live: live.host.clone(),
        });
    }
    if desired.port != live.port {
        out.push(Difference::Port {
            desired: desired.port,
            live: live.port,
        });
    }
    let want: BTreeSet<&str> = desired.flags.iter().map(String::as_str).collect();
    let have: BTreeSet<&str> = live.flags.iter().map(String::as_str).collect();
    if want != have {
        out.push(Difference::Flags {
            missing: want.difference(&have).map(|s| s.to_string()).collect(),
            extra: have.difference(&want).map(|s| s.to_string()).collect(),
        });
    }
    if !(live_device_connected || desired.key.expose() == live.key.expose()) {
        out.push(Difference::Key);
    }
    if out.is_empty() {
        UriSync::InSync
    } else {
        UriSync::Differs(out)
    }
}

// ---------------------------------------------------------------------------------------------
// system.cfg / running.cfg
// ---------------------------------------------------------------------------------------------

/// The key of the connection string.
pub const KEY_URI: &str = "unms.uri";
/// The key that turns the UISP connection on (`enabled`).
pub const KEY_STATUS: &str = "unms.status";
/// airOS 8's copy of the connection string.
pub const KEY_URI_CHANGED: &str = "unms.uri.changed";
/// The keys [`SystemCfg::with_unms`] owns; every other line is kept byte for byte.
pub const UNMS_KEYS: [&str; 3] = [KEY_URI, KEY_STATUS, KEY_URI_CHANGED];

/// A URI that cannot be written into a configuration file. The value is never shown.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CfgError {
    /// An empty URI would leave the connection enabled with nowhere to go.
    #[error("refusing to write an empty unms.uri")]
    EmptyUri,
    /// A newline would add a line of the writer's choosing to the file (and a NUL or other
    /// control character has no place in a connection string).
    #[error("refusing to write a unms.uri that holds a newline, NUL or other control character")]
    ControlCharacter,
}

/// One physical line.
#[derive(Clone, PartialEq, Eq)]
struct CfgLine {
    /// The exact bytes, terminator included (not necessarily UTF-8).
    raw: Vec<u8>,
    /// The bytes before the first `=`, without surrounding ASCII white space; `None` for a line
    /// with no `=` or an empty key (blank lines, comments).
    key: Option<Vec<u8>>,
}

impl CfgLine {
    fn new(raw: &[u8]) -> Self {
        let key = body(raw)
            .iter()
            .position(|&b| b == b'=')
            .map(|i| body(raw)[..i].trim_ascii().to_vec())
            .filter(|k| !k.is_empty());
        CfgLine {
            raw: raw.to_vec(),
            key,
        }
    }

    fn has_key(&self, key: &str) -> bool {
        self.key.as_deref() == Some(key.as_bytes())
    }

    /// The bytes after the first `=`, without the terminator.
    fn value(&self) -> &[u8] {
        let b = body(&self.raw);
        match b.iter().position(|&c| c == b'=') {
            Some(i) => &b[i + 1..],
            None => &[],
        }
    }
}

/// A line without its terminator (`\n`, `\r\n`, or a lone trailing `\r`).
fn body(raw: &[u8]) -> &[u8] {
    let b = raw.strip_suffix(b"\n").unwrap_or(raw);
    b.strip_suffix(b"\r").unwrap_or(b)
}

/// A line's ending: `\r\n` or `\n`; `None` for an unterminated last line.
fn ending(raw: &[u8]) -> Option<&'static [u8]> {
    if raw.ends_with(b"\r\n") {
        Some(b"\r\n")
    } else if raw.ends_with(b"\n") {
        Some(b"\n")
    } else {
        None
    }
}

/// A parsed `/tmp/system.cfg` or `/tmp/running.cfg`: `key=value` lines, split on the first `=`.
///
/// Every line is kept as raw bytes (terminator included; airOS files may hold Latin-1 text such
/// as an SSID), so that a rewrite changes only the lines it owns. `Debug` shows the keys only:
/// values include password hashes and Wi-Fi keys.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct SystemCfg {
    lines: Vec<CfgLine>,
}

impl fmt::Debug for SystemCfg {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let keys: Vec<String> = self
            .lines
            .iter()
            .filter_map(|l| {
                l.key
                    .as_deref()
                    .map(|k| String::from_utf8_lossy(k).into_owned())
            })
            .collect();
        f.debug_struct("SystemCfg")
            .field("lines", &self.lines.len())
            .field("keys", &keys)
            .finish_non_exhaustive()
    }
}

impl SystemCfg {
    /// Parses file content; never fails (a line without `=` is kept and has no key).
    pub fn parse(bytes: &[u8]) -> SystemCfg {
        SystemCfg {
            lines: bytes
                .split_inclusive(|&b| b == b'\n')
                .map(CfgLine::new)
                .collect(),
        }
    }

    /// The content, exactly as parsed.
    pub fn to_bytes(&self) -> Vec<u8> {
        self.lines
            .iter()
            .flat_map(|l| l.raw.iter().copied())
            .collect()
    }

    /// Number of physical lines.
    pub fn line_count(&self) -> usize {
        self.lines.len()
    }

    /// The value of the first line with this key, without the line terminator (lossy when
    /// not UTF-8). Keys are matched exactly, after trimming white space around them.
    pub fn get(&self, key: &str) -> Option<String> {
        self.lines
            .iter()
            .find(|l| l.has_key(key))
            .map(|l| String::from_utf8_lossy(l.value()).into_owned())
    }

    /// How many lines carry this key.
    pub fn count(&self, key: &str) -> usize {
        self.lines.iter().filter(|l| l.has_key(key)).count()
    }

    /// Keys written more than once, each once, in the order of their first line (lossy when
    /// not UTF-8). The reference says never to write a key twice: report these.
    pub fn duplicates(&self) -> Vec<String> {
        let mut seen: HashSet<&[u8]> = HashSet::new();
        let mut reported: HashSet<&[u8]> = HashSet::new();
        let mut out = Vec::new();
        for k in self.lines.iter().filter_map(|l| l.key.as_deref()) {
            if !seen.insert(k) && reported.insert(k) {
                out.push(String::from_utf8_lossy(k).into_owned());
            }
        }
        out
    }

    /// The connection string the file holds (first `unms.uri` line), as a secret.
    pub fn unms_uri(&self) -> Option<Secret> {
        self.get(KEY_URI).map(Secret::new)
    }

    /// The file's dominant line ending: `\r\n` when more lines end with it than with a bare
    /// `\n`, else `\n` (also for a file without any line ending).
    pub fn dominant_ending(&self) -> &'static [u8] {
        let crlf = self
            .lines
            .iter()
            .filter(|l| ending(&l.raw) == Some(b"\r\n"))
            .count();
        let lf = self
            .lines
            .iter()
            .filter(|l| ending(&l.raw) == Some(b"\n"))
            .count();
        if crlf > lf { b"\r\n" } else { b"\n" }
    }

    /// The file with `unms.uri=<uri>` and `unms.status=enabled` set, and `unms.uri.changed=<uri>`
    /// too when `airos8` or when the file already has that key.
    ///
    /// Each of these keys ends up exactly once: its first line is kept or replaced in place,
    /// later duplicates are deleted, and missing ones are appended at the end (in sorted
    /// order, as airOS writes them). Every other line is kept byte for byte.
    ///
    /// Line endings, one rule for reading and writing: a line ends with `\n` or `\r\n`, and
    /// the `\r` of `\r\n` is part of the ending, never of the value ([`SystemCfg::get`] reads
    /// `unms.status=enabled\r\n` as `enabled`). So:
    /// - an owned line that is already exactly `KEY=VALUE` is kept byte for byte, its ending
    ///   included (a correct CRLF line is never rewritten);
    /// - a line that is replaced keeps the ending of the line it replaces;
    /// - an appended line, the ending of an unterminated owned line that is replaced, and the
    ///   ending added to an unterminated last line before appending, are the file's
    ///   [`SystemCfg::dominant_ending`] (a last line ending in a lone `\r` gets only `\n`).
    ///
    /// Refused when `uri` is empty or holds a newline, NUL or any other control character.
    pub fn with_unms(&self, uri: &Secret, airos8: bool) -> Result<Vec<u8>, CfgError> {
        let value = uri.expose();
        if value.is_empty() {
            return Err(CfgError::EmptyUri);
        }
        if value.chars().any(char::is_control) {
            return Err(CfgError::ControlCharacter);
        }
        let mut wanted: Vec<(&str, &str)> = vec![(KEY_STATUS, "enabled"), (KEY_URI, value)];
        if airos8 || self.count(KEY_URI_CHANGED) > 0 {
            wanted.push((KEY_URI_CHANGED, value));
        }
        let eol = self.dominant_ending();
        let mut written: HashSet<&str> = HashSet::new();
        let mut out = Vec::new();
        for l in &self.lines {
            match wanted.iter().find(|(k, _)| l.has_key(k)) {
                None => out.extend_from_slice(&l.raw),
                Some((k, v)) => {
                    if !written.insert(k) {
                        continue;
                    }
                    let line = format!("{k}={v}");
                    if body(&l.raw) == line.as_bytes() {
                        out.extend_from_slice(&l.raw);
                    } else {
                        out.extend_from_slice(line.as_bytes());
                        out.extend_from_slice(ending(&l.raw).unwrap_or(eol));
                    }
                }
            }
        }
        for (k, v) in &wanted {
            if !written.contains(k) {
                if out.ends_with(b"\r") {
                    out.push(b'\n');
                } else if !out.is_empty() && !out.ends_with(b"\n") {
                    out.extend_from_slice(eol);
                }
                out.extend_from_slice(format!("{k}={v}").as_bytes());
                out.extend_from_slice(eol);
            }
        }
        Ok(out)
    }
}

// ---------------------------------------------------------------------------------------------
// Device identity
// ---------------------------------------------------------------------------------------------

/// What `/etc/board.info` (or `/proc/ubnthal/board.info`) and `/etc/version` say about a device.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BoardInfo {
    /// `board.name`, e.g. `LiteBeam M5`.
    pub name: Option<String>,
    /// `board.shortname`, e.g. `LBE5`.
    pub shortname: Option<String>,
    /// `board.hwaddr`, normalised to `AA:BB:CC:DD:EE:FF`; `None` when missing or not a MAC.
    pub hwaddr: Option<String>,
    /// The firmware, from [`parse_version`] (`board.info` does not hold it): set by the caller.
    pub firmware: Option<String>,
}

impl BoardInfo {
    /// Reads `board.name`, `board.shortname` and `board.hwaddr` (first occurrence of each;
    /// values trimmed; empty values count as missing). `firmware` is left `None`.
    pub fn parse(text: &str) -> BoardInfo {
        let get = |key: &str| {
            text.lines()
                .filter_map(|l| l.split_once('='))
                .find(|(k, _)| k.trim() == key)
                .map(|(_, v)| v.trim().to_string())
                .filter(|v| !v.is_empty())
        };
        BoardInfo {
            name: get("board.name"),
            shortname: get("board.shortname"),
            hwaddr: get("board.hwaddr").and_then(|m| normalise_mac(&m)),
            firmware: None,
        }
    }

    /// The same, with `firmware` set from `/etc/version`'s text.
    pub fn with_version(mut self, version_text: &str) -> BoardInfo {
        self.firmware = parse_version(version_text);
        self
    }
}

/// The firmware version in `/etc/version`: its first non-blank line, trimmed
/// (e.g. `XW.v6.2.0`).
pub fn parse_version(text: &str) -> Option<String> {
    text.lines()
        .map(str::trim)
        .find(|l| !l.is_empty())
        .map(str::to_string)
}

/// The major airOS version in a firmware string: the number after the first `v` that starts a
/// dot-separated part (`XW.v6.2.0` and `XW.ar934x.v6.2.0.33033.190703.1117` give 6,
/// `WA.v8.7.11` gives 8). Used to decide whether `unms.uri.changed` belongs in the file.
pub fn firmware_major(version: &str) -> Option<u32> {
    version.split('.').find_map(|part| {
        let digits = part.strip_prefix(['v', 'V'])?;
        if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        digits.parse().ok()
    })
}

/// What `mca-status` says about a device.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct McaStatus {
    /// `deviceId`, normalised to `AA:BB:CC:DD:EE:FF`.
    pub device_id: Option<String>,
    /// `firmwareVersion`, e.g. `XW.ar934x.v6.2.0.33033.190703.1117`.
    pub firmware_version: Option<String>,
}

/// Reads `deviceId` and `firmwareVersion` from `mca-status` output.
///
/// Leniently: the first line is comma-separated `key=value` pairs
/// (`deviceName=...,deviceId=...,firmwareVersion=...`), later lines one pair each; keys are
/// trimmed; a part without `=` (a device name with a comma in it) is skipped; the first
/// `deviceId` that is a MAC and the first non-empty `firmwareVersion` win.
pub fn parse_mca_status(text: &str) -> McaStatus {
    let pairs = || {
        text.lines()
            .flat_map(|l| l.split(','))
            .filter_map(|p| p.split_once('='))
            .map(|(k, v)| (k.trim(), v.trim()))
    };
    McaStatus {
        device_id: pairs()
            .filter(|(k, _)| *k == "deviceId")
            .find_map(|(_, v)| normalise_mac(v)),
        firmware_version: pairs()
            .find(|(k, v)| *k == "firmwareVersion" && !v.is_empty())
            .map(|(_, v)| v.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const KEY: &str = "AbCdEfGhIjKlMnOpQrStUvWxYz0123456789AbCdEfGhIjKl";
    const OTHER_KEY: &str = "ZyXwVuTsRqPoNmLkJiHgFeDcBa9876543210ZyXwVuTsRqPo";

    fn cs(s: &str) -> ConnectionString {
        ConnectionString::parse(s).unwrap()
    }

    fn uri(flags: &str) -> String {
        format!("wss://uisp.example.net:443+{KEY}{flags}")
    }

    #[test]
    fn keys_are_48_alphanumerics() {
        assert_eq!(KEY.len(), MASTER_KEY_LEN);
        assert_eq!(OTHER_KEY.len(), MASTER_KEY_LEN);
    }

    #[test]
    fn parses_the_reference_form() {
        let c = cs(&uri("+allowSelfSignedCertificate"));
        assert_eq!(c.scheme, "wss");
        assert_eq!(c.host, "uisp.example.net");
        assert_eq!(c.port, 443);
        assert_eq!(c.key.expose(), KEY);
        assert_eq!(c.flags, vec![ALLOW_SELF_SIGNED]);
        assert!(c.allows_self_signed());
        assert!(c.unknown_flags().is_empty());
        assert!(c.warnings().is_empty());
        assert_eq!(
            c.masked(),
            "wss://uisp.example.net:443+(key)+allowSelfSignedCertificate"
        );
        assert_eq!(c.to_string(), c.masked());
        assert_eq!(
            c.to_secret_string().expose(),
            uri("+allowSelfSignedCertificate")
        );
        assert_eq!(
            "x".parse::<ConnectionString>(),
            Err(UriError::MissingScheme)
        );
        assert_eq!(uri("").parse::<ConnectionString>().unwrap(), cs(&uri("")));
    }

    #[test]
    fn no_flags_ip_hosts_and_other_ports() {
        let c = cs(&format!("wss://10.147.17.5:8443+{KEY}"));
        assert_eq!((c.host.as_str(), c.port), ("10.147.17.5", 8443));
        assert!(c.flags.is_empty() && !c.allows_self_signed());
        let c = cs(&format!("wss://[2001:db8::1]:443+{KEY}"));
        assert_eq!(c.host, "2001:db8::1");
        assert_eq!(
            c.to_secret_string().expose(),
            format!("wss://[2001:db8::1]:443+{KEY}")
        );
        assert_eq!(c.masked(), "wss://[2001:db8::1]:443+(key)");
        let c = cs(&format!("ws://h:1+{KEY}"));
        assert_eq!((c.scheme.as_str(), c.port), ("ws", 1));
        assert_eq!(cs(&format!("wss://h:65535+{KEY}")).port, 65535);
    }

    #[test]
    fn surrounding_white_space_is_ignored() {
        let c = cs(&format!("  {}\r\n", uri("")));
        assert_eq!(c.to_secret_string().expose(), uri(""));
    }

    #[test]
    fn unknown_flags_are_kept_and_warned_about() {
        let c = cs(&uri(
            "+allowUntrustedCertificate+allowSelfSignedCertificate+allowUntrustedCertificate",
        ));
        assert_eq!(c.flags.len(), 3);
        assert_eq!(c.unknown_flags(), vec!["allowUntrustedCertificate"]);
        let w = c.warnings();
        assert_eq!(w.len(), 1);
        assert!(w[0].contains("allowUntrustedCertificate"), "{w:?}");
        assert!(!w[0].contains(KEY));
        // Kept as written, so written back unchanged.
        assert_eq!(
            c.to_secret_string().expose(),
            uri("+allowUntrustedCertificate+allowSelfSignedCertificate+allowUntrustedCertificate")
        );
    }

    #[test]
    fn bad_strings_are_refused_with_a_typed_error() {
        let k = KEY;
        let cases: Vec<(String, UriError)> = vec![
            ("".into(), UriError::Empty),
            ("   \n".into(), UriError::Empty),
            (
                format!("wss://uisp.example.net:443{k}"),
                UriError::MissingKey,
            ),
            ("wss://uisp.example.net:443".into(), UriError::MissingKey),
            ("wss://uisp.example.net:443+".into(), UriError::MissingKey),
            (format!("uisp.example.net:443+{k}"), UriError::MissingScheme),
            (
                format!("https://uisp.example.net:443+{k}"),
                UriError::UnsupportedScheme,
            ),
            (format!("wss://uisp.example.net+{k}"), UriError::MissingPort),
            (
                format!("wss://uisp.example.net:+{k}"),
                UriError::MissingPort,
            ),
            (format!("wss://uisp.example.net:0+{k}"), UriError::BadPort),
            (
                format!("wss://uisp.example.net:0443+{k}"),
                UriError::BadPort,
            ),
            (
                format!("wss://uisp.example.net:65536+{k}"),
                UriError::BadPort,
            ),
            (
                format!("wss://uisp.example.net:99999999999+{k}"),
                UriError::BadPort,
            ),
            (format!("wss://uisp.example.net:44a+{k}"), UriError::BadPort),
            (
                format!("wss://uisp.example.net:443/ws+{k}"),
                UriError::BadPort,
            ),
            (format!("wss://uisp.example.net:-1+{k}"), UriError::BadPort),
            (format!("wss://:443+{k}"), UriError::BadHost),
            (
                format!("wss://user@uisp.example.net:443+{k}"),
                UriError::BadHost,
            ),
            (format!("wss://2001:db8::1:443+{k}"), UriError::BadHost),
            (format!("wss://[2001:db8::1]+{k}"), UriError::MissingPort),
            (format!("wss://[2001:db8::1]x:443+{k}"), UriError::BadHost),
            (format!("wss://[zz]:443+{k}"), UriError::BadHost),
            (format!("wss://-a:443+{k}"), UriError::BadHost),
            (
                format!("wss://0177.0.0.1:443+{k}"),
                UriError::NotCanonicalIpv4,
            ),
            (
                format!("wss://010.147.17.1:443+{k}"),
                UriError::NotCanonicalIpv4,
            ),
            (format!("wss://127.1:443+{k}"), UriError::NotCanonicalIpv4),
            (
                format!("wss://uisp example:443+{k}"),
                UriError::ControlOrWhitespace,
            ),
            (
                format!("wss://uisp.example.net:443+{k}\n+x"),
                UriError::ControlOrWhitespace,
            ),
            (
                format!("wss://uisp.example.net:443+{k}\0"),
                UriError::ControlOrWhitespace,
            ),
            (
                format!("wss://uisp.example.net:443+{}", &k[..47]),
                UriError::KeyLength { len: 47 },
            ),
            (
                format!("wss://uisp.example.net:443+{k}A"),
                UriError::KeyLength { len: 49 },
            ),
            // A '+' inside the key splits it: what is left is too short.
            (
                format!("wss://uisp.example.net:443+{}+{}", &k[..20], &k[20..]),
                UriError::KeyLength { len: 20 },
            ),
            (
                format!("wss://uisp.example.net:443+{}/{}", &k[..20], &k[21..]),
                UriError::KeyCharacters,
            ),
            (
                format!("wss://uisp.example.net:443+{}é{}", &k[..20], &k[22..]),
                UriError::KeyCharacters,
            ),
            (
                format!("wss://uisp.example.net:443+{k}+"),
                UriError::EmptyFlag,
            ),
            (
                format!("wss://uisp.example.net:443+{k}++allowSelfSignedCertificate"),
                UriError::EmptyFlag,
            ),
        ];
        for (s, want) in cases {
            let got = ConnectionString::parse(&s);
            assert_eq!(
                got.as_ref().err(),
                Some(&want),
                "{:?}",
                s.replace(KEY, "KEY")
            );
            let e = got.unwrap_err();
            let text = format!("{e} {e:?}");
            assert!(!text.contains(KEY) && !text.contains(&KEY[..20]), "{text}");
        }
    }

    #[test]
    fn live_strings_may_hold_a_device_specific_key() {
        let s = "wss://uisp.example.net:443+dev-specific_key/1=+allowSelfSignedCertificate";
        assert_eq!(
            ConnectionString::parse(s).unwrap_err(),
            UriError::KeyCharacters
        );
        let c = ConnectionString::parse_live(s).unwrap();
        assert_eq!(c.key.expose(), "dev-specific_key/1=");
        assert_eq!(c.to_secret_string().expose(), s);
        assert_eq!(
            ConnectionString::parse_live("wss://h:443+").unwrap_err(),
            UriError::MissingKey
        );
        assert_eq!(
            ConnectionString::parse_live("wss://h:443+k+").unwrap_err(),
            UriError::EmptyFlag
        );
    }

    #[test]
    fn debug_and_display_never_show_the_key() {
        let c = cs(&uri("+allowSelfSignedCertificate"));
        for text in [
            format!("{c:?}"),
            format!("{c}"),
            c.masked(),
            format!("{:?}", c.to_secret_string()),
            format!("{}", c.to_secret_string()),
        ] {
            assert!(!text.contains(KEY), "{text}");
        }
        let d = compare(&c, &cs(&format!("wss://x:1+{OTHER_KEY}")), false);
        let text = format!("{d:?}");
        assert!(!text.contains(KEY) && !text.contains(OTHER_KEY), "{text}");
        if let UriSync::Differs(ds) = d {
            for x in ds {
                let t = x.to_string();
                assert!(!t.contains(KEY) && !t.contains(OTHER_KEY), "{t}");
            }
        }
    }

    #[test]
    fn master_key_is_in_sync_whether_connected_or_not() {
        let desired = cs(&uri("+allowSelfSignedCertificate"));
        let live = cs(&uri("+allowSelfSignedCertificate"));
        assert_eq!(compare(&desired, &live, false), UriSync::InSync);
        assert_eq!(compare(&desired, &live, true), UriSync::InSync);
        assert!(compare(&desired, &live, false).is_in_sync());
    }

    #[test]
    fn device_specific_key_is_in_sync_only_when_connected() {
        let desired = cs(&uri(""));
        let live = cs(&format!("wss://uisp.example.net:443+{OTHER_KEY}"));
        assert_eq!(compare(&desired, &live, true), UriSync::InSync);
        assert_eq!(
            compare(&desired, &live, false),
            UriSync::Differs(vec![Difference::Key])
        );
        let live = ConnectionString::parse_live("wss://uisp.example.net:443+dev/key=").unwrap();
        assert_eq!(compare(&desired, &live, true), UriSync::InSync);
        assert_eq!(
            compare(&desired, &live, false),
            UriSync::Differs(vec![Difference::Key])
        );
    }

    #[test]
    fn connected_does_not_excuse_the_address() {
        let desired = cs(&uri(""));
        let live = cs(&format!("ws://old.example.net:8443+{OTHER_KEY}"));
        let UriSync::Differs(d) = compare(&desired, &live, true) else {
            panic!("expected differences")
        };
        assert_eq!(
            d,
            vec![
                Difference::Scheme {
                    desired: "wss".into(),
                    live: "ws".into()
                },
                Difference::Host {
                    desired: "uisp.example.net".into(),
                    live: "old.example.net".into()
                },
                Difference::Port {
                    desired: 443,
                    live: 8443
                },
            ]
        );
        let fields: Vec<_> = d.iter().map(Difference::field).collect();
        assert_eq!(fields, ["scheme", "host", "port"]);
        assert_eq!(d[2].to_string(), "port: 8443 -> 443");
        let UriSync::Differs(d) = compare(&desired, &live, false) else {
            panic!()
        };
        assert_eq!(d.last(), Some(&Difference::Key));
        assert_eq!(d.len(), 4);
    }

    #[test]
    fn host_and_scheme_ignore_case_flags_are_a_set() {
        let desired = cs(&uri(
            "+allowSelfSignedCertificate+allowUntrustedCertificate",
        ));
        let live = cs(&format!(
            "WSS://UISP.Example.NET:443+{KEY}+allowUntrustedCertificate+allowSelfSignedCertificate+allowSelfSignedCertificate"
        ));
        assert_eq!(compare(&desired, &live, false), UriSync::InSync);

        let live = cs(&uri("+allowUntrustedCertificate+extra"));
        let UriSync::Differs(d) = compare(&desired, &live, true) else {
            panic!()
        };
        assert_eq!(
            d,
            vec![Difference::Flags {
                missing: vec!["allowSelfSignedCertificate".into()],
                extra: vec!["extra".into()],
            }]
        );
        assert_eq!(
            d[0].to_string(),
            "flags: add allowSelfSignedCertificate; remove extra"
        );
        // Flag names are case-sensitive.
        let live = cs(&uri(
            "+allowselfsignedcertificate+allowUntrustedCertificate",
        ));
        assert!(!compare(&desired, &live, true).is_in_sync());
        // No flags desired, one live.
        let UriSync::Differs(d) = compare(
            &cs(&uri("")),
            &cs(&uri("+allowSelfSignedCertificate")),
            true,
        ) else {
            panic!()
        };
        assert_eq!(d[0].to_string(), "flags: remove allowSelfSignedCertificate");
        assert!(Difference::Key.to_string().starts_with("key: (sensitive)"));
    }

    // ----- SystemCfg -----

    fn new_uri() -> Secret {
        Secret::new(uri("+allowSelfSignedCertificate"))
    }

    fn out(cfg: &[u8], airos8: bool) -> Vec<u8> {
        SystemCfg::parse(cfg).with_unms(&new_uri(), airos8).unwrap()
    }

    fn s(b: &[u8]) -> String {
        String::from_utf8_lossy(b).into_owned()
    }

    #[test]
    fn get_splits_on_the_first_equals_and_reads_first_occurrence() {
        let c = SystemCfg::parse(
            b"a=1\nb=x=y\r\n# comment\n\n c =spaced \na=2\nunms.uri=wss://h:443+k+f",
        );
        assert_eq!(c.get("a").as_deref(), Some("1"));
        assert_eq!(c.get("b").as_deref(), Some("x=y"));
        assert_eq!(c.get("c").as_deref(), Some("spaced "));
        assert_eq!(c.get("# comment"), None);
        assert_eq!(c.get("missing"), None);
        assert_eq!(c.count("a"), 2);
        assert_eq!(c.duplicates(), vec!["a"]);
        assert_eq!(c.unms_uri().unwrap().expose(), "wss://h:443+k+f");
        assert_eq!(c.line_count(), 7);
        assert_eq!(
            c.to_bytes(),
            b"a=1\nb=x=y\r\n# comment\n\n c =spaced \na=2\nunms.uri=wss://h:443+k+f"
        );
        assert_eq!(SystemCfg::parse(b"").line_count(), 0);
        assert_eq!(SystemCfg::parse(b"=x\n").duplicates(), Vec::<String>::new());
    }

    #[test]
    fn duplicates_are_listed_once_in_order() {
        let c = SystemCfg::parse(b"b=1\na=1\nb=2\na=2\nb=3\nc=1\n");
        assert_eq!(c.duplicates(), vec!["b", "a"]);
    }

    #[test]
    fn debug_shows_keys_not_values() {
        let c = SystemCfg::parse(
            format!(
                "wpasupplicant.profile.1.network.1.psk=hunter2\nunms.uri={}\n",
                uri("")
            )
            .as_bytes(),
        );
        let d = format!("{c:?}");
        assert!(d.contains("unms.uri") && d.contains("psk"), "{d}");
        assert!(!d.contains("hunter2") && !d.contains(KEY), "{d}");
    }

    #[test]
    fn replaces_in_place_and_appends_what_is_missing() {
        let cfg = b"aaa.1=x\nunms.uri=wss://old:443+old\nzzz=y\n";
        let want = format!(
            "aaa.1=x\nunms.uri={}\nzzz=y\nunms.status=enabled\n",
            new_uri().expose()
        );
        assert_eq!(s(&out(cfg, false)), want);
        let want8 = format!(
            "aaa.1=x\nunms.uri={u}\nzzz=y\nunms.status=enabled\nunms.uri.changed={u}\n",
            u = new_uri().expose()
        );
        assert_eq!(s(&out(cfg, true)), want8);
    }

    #[test]
    fn empty_file_gets_the_lines() {
        let want = format!("unms.status=enabled\nunms.uri={}\n", new_uri().expose());
        assert_eq!(s(&out(b"", false)), want);
    }

    #[test]
    fn status_disabled_is_enabled_in_place() {
        let cfg = b"unms.status=disabled\nx=1\nunms.uri=old\n";
        let want = format!(
            "unms.status=enabled\nx=1\nunms.uri={}\n",
            new_uri().expose()
        );
        assert_eq!(s(&out(cfg, false)), want);
    }

    #[test]
    fn a_correct_file_is_left_byte_for_byte_with_lf_or_crlf_endings() {
        let u = new_uri();
        for eol in ["\n", "\r\n"] {
            let good = format!(
                "a=1{eol}unms.status=enabled{eol}unms.uri={u}{eol}b=2{eol}",
                u = u.expose()
            );
            assert_eq!(s(&out(good.as_bytes(), false)), good, "{eol:?}");
            // The same lines read the same either way: the `\r` is part of the ending.
            let c = SystemCfg::parse(good.as_bytes());
            assert_eq!(c.get(KEY_STATUS).as_deref(), Some("enabled"));
            assert_eq!(c.unms_uri().unwrap(), u);
            // airOS 8's copy, correct too: still nothing to change.
            let v8 = format!("{good}unms.uri.changed={u}{eol}", u = u.expose());
            assert_eq!(s(&out(v8.as_bytes(), true)), v8, "{eol:?}");
        }
    }

    #[test]
    fn in_a_crlf_file_changed_lines_keep_their_ending_and_new_lines_take_the_files() {
        // The issue's case: `unms.status=enabled\r\n` is right and stays as it is; the old
        // URI's line is replaced, keeping its CRLF.
        let cfg = b"a=1\r\nunms.status=enabled\r\nunms.uri=old\r\nb=2\r\n";
        let want = format!(
            "a=1\r\nunms.status=enabled\r\nunms.uri={}\r\nb=2\r\n",
            new_uri().expose()
        );
        assert_eq!(s(&out(cfg, false)), want);
        // Missing lines are appended with the file's dominant ending.
        let cfg = b"a=1\r\nunms.uri=old\r\nb=2\r\n";
        let want = format!(
            "a=1\r\nunms.uri={u}\r\nb=2\r\nunms.status=enabled\r\nunms.uri.changed={u}\r\n",
            u = new_uri().expose()
        );
        assert_eq!(s(&out(cfg, true)), want);
        let again = SystemCfg::parse(want.as_bytes());
        assert_eq!(again.unms_uri().unwrap(), new_uri());
        // Per line in a mixed file: a disabled status in LF is enabled in LF, the URI's CRLF
        // is kept; with as many LF lines as CRLF ones, LF is what is appended.
        let cfg = b"a=1\r\nunms.status=disabled\nunms.uri=old\r\nb=2\n";
        let want = format!(
            "a=1\r\nunms.status=enabled\nunms.uri={u}\r\nb=2\nunms.uri.changed={u}\n",
            u = new_uri().expose()
        );
        assert_eq!(s(&out(cfg, true)), want);
        // An unterminated last line in a CRLF file gets the file's ending before appending.
        let cfg = b"a=1\r\nb=2";
        let want = format!(
            "a=1\r\nb=2\r\nunms.status=enabled\r\nunms.uri={}\r\n",
            new_uri().expose()
        );
        assert_eq!(s(&out(cfg, false)), want);
        // A right value under a key written with spaces is rewritten, keeping the ending.
        let cfg = format!(
            " unms.uri ={}\r\nunms.status=enabled\r\n",
            new_uri().expose()
        );
        let want = format!("unms.uri={}\r\nunms.status=enabled\r\n", new_uri().expose());
        assert_eq!(s(&out(cfg.as_bytes(), false)), want);
    }

    #[test]
    fn missing_final_newline_is_added_before_appending() {
        let cfg = b"a=1\nb=2";
        let want = format!(
            "a=1\nb=2\nunms.status=enabled\nunms.uri={}\n",
            new_uri().expose()
        );
        assert_eq!(s(&out(cfg, false)), want);
        // Nothing to append: the last line stays as it is.
        let cfg = "unms.status=enabled\nunms.uri=old\nb=2";
        let want = format!("unms.status=enabled\nunms.uri={}\nb=2", new_uri().expose());
        assert_eq!(s(&out(cfg.as_bytes(), false)), want);
        // The unterminated last line is ours: it is rewritten with a newline.
        let cfg = b"a=1\nunms.status=enabled\nunms.uri=old";
        let want = format!(
            "a=1\nunms.status=enabled\nunms.uri={}\n",
            new_uri().expose()
        );
        assert_eq!(s(&out(cfg, false)), want);
    }

    #[test]
    fn duplicated_unms_lines_collapse_to_the_first() {
        let cfg = b"unms.uri=one\nx=1\nunms.uri=two\nunms.status=enabled\nunms.uri=three\nunms.status=disabled\ny=2\n";
        let got = out(cfg, false);
        let want = format!(
            "unms.uri={}\nx=1\nunms.status=enabled\ny=2\n",
            new_uri().expose()
        );
        assert_eq!(s(&got), want);
        let c = SystemCfg::parse(&got);
        assert!(c.duplicates().is_empty());
        assert_eq!(c.count(KEY_URI), 1);
    }

    #[test]
    fn keys_with_spaces_around_are_ours_too() {
        // A reader that trims keys would see a second unms.uri.
        let cfg = b" unms.uri =old\nunms.uri=older\n";
        let want = format!("unms.uri={}\nunms.status=enabled\n", new_uri().expose());
        assert_eq!(s(&out(cfg, false)), want);
    }

    #[test]
    fn latin1_bytes_in_other_lines_are_kept() {
        let cfg: &[u8] =
            b"wireless.1.ssid=Tomatl\xe1n\nunms.uri=old\nresolv.host.1.name=Se\xf1or\r\nbad\xff\xfe line\n";
        let got = out(cfg, false);
        let mut want: Vec<u8> = b"wireless.1.ssid=Tomatl\xe1n\nunms.uri=".to_vec();
        want.extend_from_slice(new_uri().expose().as_bytes());
        want.extend_from_slice(
            b"\nresolv.host.1.name=Se\xf1or\r\nbad\xff\xfe line\nunms.status=enabled\n",
        );
        assert_eq!(got, want);
        let c = SystemCfg::parse(cfg);
        assert_eq!(c.get("wireless.1.ssid").as_deref(), Some("Tomatl\u{fffd}n"));
    }

    #[test]
    fn uri_changed_is_kept_in_sync_when_present_even_on_airos6() {
        let cfg = b"unms.uri.changed=old\nunms.uri=old\nunms.status=enabled\n";
        let u = new_uri();
        let want = format!(
            "unms.uri.changed={u}\nunms.uri={u}\nunms.status=enabled\n",
            u = u.expose()
        );
        assert_eq!(s(&out(cfg, false)), want);
        assert_eq!(s(&out(cfg, true)), want);
        // Not present on airOS 6: not added.
        let got = out(b"unms.uri=old\n", false);
        assert_eq!(SystemCfg::parse(&got).count(KEY_URI_CHANGED), 0);
    }

    #[test]
    fn near_miss_keys_are_not_ours() {
        let cfg = b"unms.urix=1\nunms=2\nunms.uri.changed.x=3\nunms.status.x=4\n";
        let got = out(cfg, false);
        assert!(got.starts_with(cfg));
        let c = SystemCfg::parse(&got);
        assert_eq!(c.count(KEY_URI), 1);
        assert_eq!(c.count(KEY_STATUS), 1);
        assert_eq!(c.count(KEY_URI_CHANGED), 0);
    }

    #[test]
    fn rewrite_is_idempotent() {
        let cfg = b"a=1\r\nunms.uri=x\nunms.uri=y\nb";
        let once = out(cfg, true);
        assert_eq!(out(&once, true), once);
        assert_eq!(out(&once, false), once);
    }

    #[test]
    fn uris_with_control_characters_are_refused() {
        let c = SystemCfg::parse(b"a=1\n");
        for bad in [
            format!("{}\nunms.status=disabled", uri("")),
            format!("{}\r", uri("")),
            format!("{}\0", uri("")),
            format!("{}\t", uri("")),
            format!("{}\u{7f}", uri("")),
            format!("{}\u{85}", uri("")),
        ] {
            let e = c.with_unms(&Secret::new(bad), false).unwrap_err();
            assert_eq!(e, CfgError::ControlCharacter);
            assert!(!format!("{e} {e:?}").contains(KEY));
        }
        assert_eq!(
            c.with_unms(&Secret::new(""), true).unwrap_err(),
            CfgError::EmptyUri
        );
    }

    // ----- identity -----

    #[test]
    fn board_info_with_or_without_colons() {
        let text = "board.sysid=0xe2c2\nboard.cpurevision=0x00019374\nboard.name=LiteBeam M5\nboard.shortname=LBE5\nboard.subtype=\nboard.hwaddr=FCECDA1A2B3C\nradio.1.name=ath0\n";
        let b = BoardInfo::parse(text).with_version("XW.v6.2.0\n");
        assert_eq!(
            b,
            BoardInfo {
                name: Some("LiteBeam M5".into()),
                shortname: Some("LBE5".into()),
                hwaddr: Some("FC:EC:DA:1A:2B:3C".into()),
                firmware: Some("XW.v6.2.0".into()),
            }
        );
        let b =
            BoardInfo::parse("board.hwaddr=fc:ec:da:1a:2b:3c\r\nboard.name = NanoStation M5 \r\n");
        assert_eq!(b.hwaddr.as_deref(), Some("FC:EC:DA:1A:2B:3C"));
        assert_eq!(b.name.as_deref(), Some("NanoStation M5"));
        assert_eq!(b.shortname, None);
        assert_eq!(b.firmware, None);
        let b = BoardInfo::parse("board.hwaddr=not-a-mac\nboard.name=\n");
        assert_eq!(b, BoardInfo::default());
    }

    #[test]
    fn version_is_the_first_non_blank_line() {
        assert_eq!(parse_version("XW.v6.2.0\n").as_deref(), Some("XW.v6.2.0"));
        assert_eq!(
            parse_version("\n  WA.v8.7.11 \r\nextra\n").as_deref(),
            Some("WA.v8.7.11")
        );
        assert_eq!(parse_version(" \n\n"), None);
    }

    #[test]
    fn firmware_major_versions() {
        assert_eq!(firmware_major("XW.v6.2.0"), Some(6));
        assert_eq!(
            firmware_major("XW.ar934x.v6.2.0.33033.190703.1117"),
            Some(6)
        );
        assert_eq!(
            firmware_major("WA.ar934x.v8.7.11.46972.220614.0419"),
            Some(8)
        );
        assert_eq!(firmware_major("v8.7.4"), Some(8));
        assert_eq!(firmware_major("XW.vx.1"), None);
        assert_eq!(firmware_major(""), None);
    }

    #[test]
    fn mca_status_first_line_pairs_and_later_lines() {
        let text = "deviceName=Juan Perez, Tomatlan,deviceId=FC:EC:DA:1A:2B:3C,firmwareVersion=XW.ar934x.v6.2.0.33033.190703.1117,platform=LiteBeam M5,deviceIp=10.10.1.45\nwlanOpmode=sta\nsignal=-61\n";
        let m = parse_mca_status(text);
        assert_eq!(m.device_id.as_deref(), Some("FC:EC:DA:1A:2B:3C"));
        assert_eq!(
            m.firmware_version.as_deref(),
            Some("XW.ar934x.v6.2.0.33033.190703.1117")
        );
        // One pair a line, lower case, no colons, CRLF, spaces.
        let m = parse_mca_status(
            "signal=-60\r\n deviceId = fcecda1a2b3c \r\nfirmwareVersion=WA.v8.7.11\r\n",
        );
        assert_eq!(m.device_id.as_deref(), Some("FC:EC:DA:1A:2B:3C"));
        assert_eq!(m.firmware_version.as_deref(), Some("WA.v8.7.11"));
        // Junk first, the first good one wins.
        let m = parse_mca_status(
            "deviceId=,firmwareVersion=\ndeviceId=00:11:22:33:44:55\nfirmwareVersion=X.v6\n",
        );
        assert_eq!(m.device_id.as_deref(), Some("00:11:22:33:44:55"));
        assert_eq!(m.firmware_version.as_deref(), Some("X.v6"));
        assert_eq!(
            parse_mca_status("mca-status: not found\n"),
            McaStatus::default()
        );
    }

    // ----- properties -----

    fn valid_conn() -> impl Strategy<Value = ConnectionString> {
        (
            prop_oneof![Just("wss"), Just("ws"), Just("WSS")],
            "[a-z][a-z0-9]{0,9}(\\.[a-zA-Z][a-zA-Z0-9-]{0,9}){0,3}",
            1u16..=65535,
            "[A-Za-z0-9]{48}",
            proptest::collection::vec(
                prop_oneof![
                    Just("allowSelfSignedCertificate".to_string()),
                    Just("allowUntrustedCertificate".to_string()),
                    "[A-Za-z]{1,12}",
                ],
                0..4,
            ),
        )
            .prop_map(|(scheme, host, port, key, flags)| ConnectionString {
                scheme: scheme.into(),
                host,
                port,
                key: Secret::new(key),
                flags,
            })
    }

    /// One line's content, without terminator: other keys (some near misses), our keys with
    /// random values, comments, blanks, and arbitrary bytes (Latin-1, '\r', '=').
    fn line_body() -> impl Strategy<Value = Vec<u8>> {
        let value =
            proptest::collection::vec(any::<u8>().prop_filter("no LF", |b| *b != b'\n'), 0..20);
        let key = prop_oneof![
            Just("unms.uri"),
            Just("unms.status"),
            Just("unms.uri.changed"),
            Just(" unms.uri"),
            Just("unms.urix"),
            Just("unms"),
            Just("unms.uri.changed.1"),
            Just("wireless.1.ssid"),
            Just("radio.1.freq"),
            Just("users.1.password"),
            Just(""),
        ];
        prop_oneof![
            3 => (key, value.clone()).prop_map(|(k, v)| {
                let mut l = k.as_bytes().to_vec();
                l.push(b'=');
                l.extend(v);
                l
            }),
            1 => value,
            1 => Just(b"unms.status=enabled".to_vec()),
            1 => Just(b"# comment".to_vec()),
            1 => Just(Vec::new()),
        ]
    }

    fn cfg_file() -> impl Strategy<Value = Vec<u8>> {
        (
            proptest::collection::vec(
                (
                    line_body(),
                    prop_oneof![Just(&b"\n"[..]), Just(&b"\r\n"[..])],
                ),
                0..25,
            ),
            any::<bool>(),
        )
            .prop_map(|(lines, unterminated_last)| {
                let mut out = Vec::new();
                let n = lines.len();
                for (i, (body, eol)) in lines.into_iter().enumerate() {
                    out.extend_from_slice(&body);
                    if !(unterminated_last && i + 1 == n) {
                        out.extend_from_slice(eol);
                    }
                }
                out
            })
    }

    fn others(c: &SystemCfg) -> Vec<Vec<u8>> {
        c.lines
            .iter()
            .filter(|l| !UNMS_KEYS.iter().any(|k| l.has_key(k)))
            .map(|l| l.raw.clone())
            .collect()
    }

    proptest! {
        #[test]
        fn parse_round_trips_and_never_shows_the_key(c in valid_conn()) {
            let text = c.to_secret_string();
            let back = ConnectionString::parse(text.expose()).unwrap();
            prop_assert_eq!(&back, &c);
            prop_assert_eq!(compare(&c, &back, false), UriSync::InSync);
            let key = c.key.expose();
            for shown in [format!("{back:?}"), back.masked(), back.to_string(), back.warnings().join("\n")] {
                prop_assert!(!shown.contains(key));
            }
            prop_assert!(ConnectionString::parse_live(text.expose()).is_ok());
        }

        #[test]
        fn errors_never_hold_the_key(
            prefix in "[a-z:/.+\\[\\]0-9 ]{0,20}",
            key in "[A-Za-z0-9]{48}",
            suffix in "[A-Za-z0-9+/=: \n]{0,12}",
            cut in 0usize..48,
        ) {
            for s in [
                format!("{prefix}{key}{suffix}"),
                format!("wss://h:443+{}+{}{suffix}", &key[..cut], &key[cut..]),
                format!("{prefix}+{key}{suffix}"),
            ] {
                for r in [ConnectionString::parse(&s), ConnectionString::parse_live(&s)] {
                    match r {
                        Err(e) => {
                            let t = format!("{e} {e:?}");
                            prop_assert!(!t.contains(&key[..12]) && !t.contains(&key[36..]), "{}", t);
                        }
                        Ok(c) => {
                            let shown = format!("{c:?} {c}");
                            prop_assert!(!shown.contains(&key));
                        }
                    }
                }
            }
        }

        #[test]
        fn with_unms_owns_exactly_its_keys(file in cfg_file(), c in valid_conn(), airos8 in any::<bool>()) {
            let before = SystemCfg::parse(&file);
            let u = c.to_secret_string();
            let had_changed = before.count(KEY_URI_CHANGED) > 0;
            let bytes = before.with_unms(&u, airos8).unwrap();
            let after = SystemCfg::parse(&bytes);

            prop_assert_eq!(after.count(KEY_URI), 1);
            prop_assert_eq!(after.unms_uri(), Some(u.clone()));
            prop_assert_eq!(after.count(KEY_STATUS), 1);
            prop_assert_eq!(after.get(KEY_STATUS), Some("enabled".to_string()));
            let want_changed = airos8 || had_changed;
            prop_assert_eq!(after.count(KEY_URI_CHANGED), usize::from(want_changed));
            if want_changed {
                prop_assert_eq!(after.get(KEY_URI_CHANGED), Some(u.expose().to_string()));
            }
            // The uri reads back as the connection string written.
            let live = ConnectionString::parse(&after.get(KEY_URI).unwrap()).unwrap();
            prop_assert_eq!(&live, &c);

            // Duplicates: none of ours; other keys' duplicates untouched.
            let dup_before: Vec<String> = before
                .duplicates()
                .into_iter()
                .filter(|k| !UNMS_KEYS.contains(&k.as_str()))
                .collect();
            prop_assert_eq!(after.duplicates(), dup_before);

            // Every other line byte for byte, in order; only an unterminated last line may
            // gain the line ending that lets lines follow it (the file's dominant one, or just
            // `\n` after a lone `\r`).
            let eol = before.dominant_ending();
            let ob = others(&before);
            let oa = others(&after);
            prop_assert_eq!(ob.len(), oa.len());
            for (i, (b, a)) in ob.iter().zip(&oa).enumerate() {
                if a != b {
                    let last_of_file = before.lines.last().map(|l| &l.raw) == Some(b);
                    let added = a.strip_prefix(&b[..]).unwrap_or_default();
                    let expected: &[u8] = if b.ends_with(b"\r") { b"\n" } else { eol };
                    prop_assert!(
                        i + 1 == ob.len() && last_of_file && !b.ends_with(b"\n")
                            && added == expected,
                        "line {} changed", i
                    );
                }
            }

            // Owned lines: the first line of each key wanted keeps its place; when it was
            // already exactly `KEY=VALUE` it is kept byte for byte (its ending too), else it
            // keeps its ending; appended lines take the file's dominant ending.
            for (k, v) in [(KEY_STATUS, "enabled"), (KEY_URI, u.expose()), (KEY_URI_CHANGED, u.expose())] {
                let Some(first) = before.lines.iter().find(|l| l.has_key(k)) else {
                    if let Some(l) = after.lines.iter().find(|l| l.has_key(k)) {
                        prop_assert!(l.raw.ends_with(eol), "{} appended without {:?}", k, eol);
                    }
                    continue;
                };
                if k == KEY_URI_CHANGED && !want_changed {
                    continue;
                }
                let now = after.lines.iter().find(|l| l.has_key(k)).unwrap();
                let exact = format!("{k}={v}");
                if body(&first.raw) == exact.as_bytes() {
                    // Only an unterminated last line may gain an ending, as above.
                    let added = now.raw.strip_prefix(&first.raw[..]).unwrap_or(b"?");
                    prop_assert!(
                        added.is_empty() || (ending(&first.raw).is_none() && (added == eol || added == b"\n")),
                        "{} rewritten though right", k
                    );
                } else if let Some(e) = ending(&first.raw) {
                    prop_assert!(now.raw.ends_with(e) && body(&now.raw) == exact.as_bytes(), "{}", k);
                }
            }
            // A file whose owned lines are all right, once each, is left as it is.
            let right = [(KEY_STATUS, "enabled"), (KEY_URI, u.expose())]
                .into_iter()
                .chain(want_changed.then_some((KEY_URI_CHANGED, u.expose())))
                .all(|(k, v)| {
                    let mut ls = before.lines.iter().filter(|l| l.has_key(k));
                    ls.next().is_some_and(|l| body(&l.raw) == format!("{k}={v}").as_bytes())
                        && ls.next().is_none()
                });
            if right {
                prop_assert_eq!(&bytes, &file, "a right file was rewritten");
            }

            // Stable: a second rewrite changes nothing.
            prop_assert_eq!(after.with_unms(&u, airos8).unwrap(), bytes.clone());
            // The original bytes are what was parsed.
            prop_assert_eq!(before.to_bytes(), file);
        }
    }
}
