//! `pppd/<host>.yaml`: PPTP peer files and chap-secrets entries for one Linux host.
//!
//! [`PppdFile`] is the file as written (serde + schemars); [`PppdDesired`] is what is left after
//! validation: names checked, defaults applied, secrets resolved.

use std::collections::HashMap;
use std::path::PathBuf;

use schemars::JsonSchema;
use serde::Deserialize;

use crate::names::valid_name;
use crate::ownership::Prune;
use crate::secret::{Secret, SecretRef};
use crate::yaml::FileCheck;

/// One pppd resource file.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PppdFile {
    /// The host, as named in `inventory.yaml` under `hosts`.
    pub host: String,
    /// `owned` deletes peer files and chap-secrets entries that wispctl wrote and this file no
    /// longer names. Default `none`: nothing is ever deleted.
    #[serde(default)]
    pub prune: Prune,
    /// Let this file hold `{ inline: ... }` secrets (each one is warned about).
    #[serde(default)]
    pub allow_inline_secrets: bool,
    /// Let an empty `peers` or `chap_secrets` list prune every owned object of its kind.
    /// Off, an empty list never deletes: a truncated file must not wipe the host.
    #[serde(default)]
    pub allow_empty_prune: bool,
    /// Peer files, `/etc/ppp/peers/NAME`.
    #[serde(default)]
    pub peers: Vec<PeerSpec>,
    /// Entries of `/etc/ppp/chap-secrets`.
    #[serde(default)]
    pub chap_secrets: Vec<ChapSpec>,
}

/// A PPTP client peer file. Typed fields cover the common options; `options` takes the rest.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PeerSpec {
    /// The peer name and file name: `[A-Za-z0-9._-]`, not starting with a dot.
    pub name: String,
    /// The PPTP server (host name or IP address), dialled with `pptp SERVER --nolaunchpppd`.
    pub server: String,
    /// The CHAP name wispctl authenticates as (`name` and `user` options).
    pub user: String,
    /// The server's name in chap-secrets (`remotename`); default: the peer name.
    #[serde(default)]
    pub remotename: Option<String>,
    /// `mtu` (default 1400).
    #[serde(default = "default_mtu")]
    pub mtu: u16,
    /// `mru` (default 1400).
    #[serde(default = "default_mtu")]
    pub mru: u16,
    /// `require-mschap-v2`: require the server to authenticate itself with MS-CHAPv2
    /// (default false). Only takes effect with `noauth: false`: pppd's `noauth` cancels it.
    #[serde(default)]
    pub require_mschap_v2: bool,
    /// Authentication methods to refuse (default pap, eap, chap).
    #[serde(default = "default_refuse")]
    pub refuse: Vec<AuthMethod>,
    /// `noauth`: do not require the server to authenticate itself (default true).
    #[serde(default = "yes")]
    pub noauth: bool,
    /// `persist`: redial when the link drops (default true).
    #[serde(default = "yes")]
    pub persist: bool,
    /// `holdoff` seconds before redialling (default 5).
    #[serde(default = "default_holdoff")]
    pub holdoff: u32,
    /// `maxfail` attempts before giving up, 0 for never (default 3).
    #[serde(default = "default_maxfail")]
    pub maxfail: u32,
    /// `defaultroute` (default false).
    #[serde(default)]
    pub defaultroute: bool,
    /// `usepeerdns` (default false).
    #[serde(default)]
    pub usepeerdns: bool,
    /// `lock` and `noipdefault` (default true).
    #[serde(default = "yes")]
    pub lock: bool,
    /// Further pppd options, one a line, such as `ipparam office` or `debug`.
    #[serde(default)]
    pub options: Vec<String>,
}

fn default_mtu() -> u16 {
    1400
}
fn default_holdoff() -> u32 {
    5
}
fn default_maxfail() -> u32 {
    3
}
fn yes() -> bool {
    true
}
fn default_refuse() -> Vec<AuthMethod> {
    vec![AuthMethod::Pap, AuthMethod::Eap, AuthMethod::Chap]
}

/// An authentication method pppd can refuse.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum AuthMethod {
    /// `refuse-pap`
    Pap,
    /// `refuse-eap`
    Eap,
    /// `refuse-chap`
    Chap,
    /// `refuse-mschap`
    Mschap,
    /// `refuse-mschap-v2`
    MschapV2,
}

impl AuthMethod {
    /// The pppd option that refuses this method.
    pub fn refuse_option(self) -> &'static str {
        match self {
            AuthMethod::Pap => "refuse-pap",
            AuthMethod::Eap => "refuse-eap",
            AuthMethod::Chap => "refuse-chap",
            AuthMethod::Mschap => "refuse-mschap",
            AuthMethod::MschapV2 => "refuse-mschap-v2",
        }
    }
}

/// A chap-secrets entry as written.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ChapSpec {
    /// The client name (first field).
    pub client: String,
    /// The server name (second field), usually the peer's `remotename`.
    pub server: String,
    /// The secret, as a reference.
    pub secret: SecretRef,
    /// Allowed IP addresses (default `*`, any).
    #[serde(default = "default_addresses")]
    pub addresses: Vec<String>,
}

fn default_addresses() -> Vec<String> {
    vec!["*".to_string()]
}

/// A validated chap-secrets entry, secret resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChapEntry {
    /// Client name.
    pub client: String,
    /// Server name.
    pub server: String,
    /// The resolved secret.
    pub secret: Secret,
    /// Allowed addresses.
    pub addresses: Vec<String>,
}

/// The validated desired state of one host's pppd files.
#[derive(Debug, Clone)]
pub struct PppdDesired {
    /// The file it came from.
    pub source: PathBuf,
    /// Prune policy.
    pub prune: Prune,
    /// See [`PppdFile::allow_empty_prune`].
    pub allow_empty_prune: bool,
    /// Peer files, names unique.
    pub peers: Vec<PeerSpec>,
    /// chap-secrets entries, (client, server) unique.
    pub chap: Vec<ChapEntry>,
}

/// Options that run a shell command or carry a secret are never taken from `options`; options
/// with a typed field must use it, so the file has one source of truth.
const REFUSED_OPTIONS: &[(&str, &str)] = &[
    ("password", "carries a secret: put it in chap_secrets"),
    ("file", "includes another options file"),
    ("call", "includes another peer file"),
    ("plugin", "loads code into pppd"),
    ("connect", "runs a shell command: use `server`"),
    ("disconnect", "runs a shell command"),
    ("pty", "runs a shell command: use `server`"),
    ("init", "runs a shell command"),
    ("welcome", "runs a shell command"),
    ("name", "use the `user` field"),
    ("user", "use the `user` field"),
    ("remotename", "use the `remotename` field"),
    ("mtu", "use the `mtu` field"),
    ("mru", "use the `mru` field"),
    ("persist", "use the `persist` field"),
    ("holdoff", "use the `holdoff` field"),
    ("maxfail", "use the `maxfail` field"),
    ("noauth", "use the `noauth` field"),
    ("require-mschap-v2", "use the `require_mschap_v2` field"),
    ("defaultroute", "use the `defaultroute` field"),
    ("usepeerdns", "use the `usepeerdns` field"),
    ("lock", "use the `lock` field"),
    ("noipdefault", "use the `lock` field"),
];

/// Validates a parsed file. Errors and warnings go to `check`; `None` when any error was found.
pub(crate) fn validate(file: PppdFile, check: &mut FileCheck<'_>) -> Option<PppdDesired> {
    let before = check.error_count();
    let mut seen: HashMap<&str, usize> = HashMap::new();
    for (i, p) in file.peers.iter().enumerate() {
        let at = format!("peers[{i}]");
        if let Err(why) = valid_name(&p.name) {
            check.error(
                &format!("{at}.name"),
                format!("invalid peer name {:?}: {why}", p.name),
            );
        }
        if let Some(first) = seen.insert(&p.name, i) {
            let (line, _) = check.place(&format!("peers[{first}].name"));
            check.error(
                &format!("{at}.name"),
                format!(
                    "duplicate peer {:?} (first declared at line {line})",
                    p.name
                ),
            );
        }
        if let Err(why) = crate::untrusted::addr::host(&p.server) {
            check.error(
                &format!("{at}.server"),
                format!("invalid server {:?}: {why}", p.server),
            );
        }
        for (field, value) in [
            ("user", Some(&p.user)),
            ("remotename", p.remotename.as_ref()),
        ] {
            if let Some(v) = value
                && let Err(why) = pppd_name(v)
            {
                check.error(&format!("{at}.{field}"), format!("{field} {why}"));
            }
        }
        for (field, v) in [("holdoff", p.holdoff), ("maxfail", p.maxfail)] {
            if v > i32::MAX as u32 {
                check.error(
                    &format!("{at}.{field}"),
                    format!("{field} {v} is larger than pppd can hold ({})", i32::MAX),
                );
            }
        }
        if p.require_mschap_v2 && p.noauth {
            check.warn(
                &format!("{at}.require_mschap_v2"),
                "require_mschap_v2 has no effect with noauth: true (pppd's noauth cancels it)"
                    .into(),
            );
        }
        for (field, v) in [("mtu", p.mtu), ("mru", p.mru)] {
            if !(128..=1500).contains(&v) {
                check.error(
                    &format!("{at}.{field}"),
                    format!("{field} {v} is out of range 128..=1500"),
                );
            }
        }
        for (j, opt) in p.options.iter().enumerate() {
            if let Err(why) = check_option(opt) {
                check.error(&format!("{at}.options[{j}]"), why);
            }
        }
    }

    let mut chap = Vec::new();
    let mut pairs: HashMap<(String, String), usize> = HashMap::new();
    for (i, c) in file.chap_secrets.iter().enumerate() {
        let at = format!("chap_secrets[{i}]");
        for (field, v) in [("client", &c.client), ("server", &c.server)] {
            if let Err(why) = pppd_name(v) {
                check.error(&format!("{at}.{field}"), format!("{field} {why}"));
            }
        }
        if let Some(first) = pairs.insert((c.client.clone(), c.server.clone()), i) {
            let (line, _) = check.place(&format!("chap_secrets[{first}]"));
            check.error(
                &format!("{at}.client"),
                format!(
                    "duplicate chap-secrets entry {:?}@{:?} (first declared at line {line})",
                    c.client, c.server
                ),
            );
        }
        for (j, a) in c.addresses.iter().enumerate() {
            let ok = !a.is_empty()
                && a.chars()
                    .all(|ch| ch.is_ascii_alphanumeric() || ".*/:!-_".contains(ch));
            // pppd reads an address with inet_aton: `010.0.0.1` would be octal.
            let host = a.trim_start_matches(['!', '-']);
            let host = host.split('/').next().unwrap_or_default();
            if !ok {
                check.error(
                    &format!("{at}.addresses[{j}]"),
                    format!("invalid address {a:?}: an IP, a subnet, `*` or `-` form"),
                );
            } else if let Err(why) = crate::untrusted::addr::unambiguous(host) {
                check.error(
                    &format!("{at}.addresses[{j}]"),
                    format!("invalid address {a:?}: {why}"),
                );
            }
        }
        let secret_path = format!("{at}.secret");
        if let Some(secret) = check.secret(&c.secret, &secret_path, file.allow_inline_secrets) {
            // An unresolved secret (a plan that does not compare it) has nothing to check.
            let value = if secret.is_unresolved() {
                "x"
            } else {
                secret.expose()
            };
            if value.is_empty() {
                check.error(
                    &secret_path,
                    format!(
                        "the secret from {:?} is empty (an unset or failed environment file?)",
                        c.secret
                    ),
                );
            }
            if value.len() > MAX_PPPD_NAME {
                check.error(
                    &secret_path,
                    format!(
                        "the secret from {:?} is longer than the {MAX_PPPD_NAME} bytes pppd reads",
                        c.secret
                    ),
                );
            }
            if value.chars().any(char::is_control) {
                check.error(
                    &secret_path,
                    format!(
                        "the secret from {:?} contains a newline or control character, which chap-secrets cannot hold",
                        c.secret
                    ),
                );
            }
            chap.push(ChapEntry {
                client: c.client.clone(),
                server: c.server.clone(),
                secret,
                addresses: c.addresses.clone(),
            });
        }
    }

    if check.error_count() > before {
        return None;
    }
    Some(PppdDesired {
        source: check.file.to_path_buf(),
        prune: file.prune,
        allow_empty_prune: file.allow_empty_prune,
        peers: file.peers,
        chap,
    })
}

/// pppd keeps names and secrets in 256-byte buffers (255 bytes and a NUL) and cuts longer
/// ones silently: a longer name would never match its chap-secrets entry.
const MAX_PPPD_NAME: usize = 255;

/// pppd reads option words into a 1024-byte buffer and cuts longer ones with a warning.
const MAX_PPPD_WORD: usize = 1023;

fn pppd_name(v: &str) -> Result<(), String> {
    if v.is_empty() || v.chars().any(char::is_control) {
        return Err("must be non-empty text without control characters".into());
    }
    if v.len() > MAX_PPPD_NAME {
        return Err(format!(
            "is {} bytes; pppd keeps at most {MAX_PPPD_NAME}",
            v.len()
        ));
    }
    Ok(())
}

fn check_option(opt: &str) -> Result<(), String> {
    if opt.chars().any(char::is_control) {
        return Err("an option must be one line without control characters".into());
    }
    // The text is not quoted back: a mistaken line could hold a secret.
    let words = super::words::split(opt)
        .map_err(|e| format!("the option does not parse as pppd words: {e}"))?;
    let Some(first) = words.first() else {
        return Err("empty option".into());
    };
    if let Some(long) = words.iter().find(|w| w.len() > MAX_PPPD_WORD) {
        return Err(format!(
            "a word of {} bytes in option {first:?}; pppd reads at most {MAX_PPPD_WORD}",
            long.len()
        ));
    }
    if !first
        .chars()
        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
    {
        return Err(format!("option {first:?} is not a pppd option name"));
    }
    // pppd reads an options file word by word, so an option can hide behind another one's
    // position on the same line: every word is checked, not only the first.
    for w in &words {
        if w.starts_with("refuse-") {
            return Err(format!("option {w:?}: use the `refuse` field"));
        }
        if w.ends_with("-script") {
            return Err(format!(
                "option {w:?} is not accepted here: it runs a program"
            ));
        }
        if let Some((_, why)) = REFUSED_OPTIONS.iter().find(|(o, _)| o == w) {
            return Err(format!("option {w:?} is not accepted here: {why}"));
        }
    }
    Ok(())
}

/// A Linux host.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct HostSpec {
    /// How the host is reached. Only `local` for now: the files are on this machine.
    #[serde(default)]
    pub access: HostAccess,
    /// The folder that stands for `/` on this host (default `/`): `/etc/ppp` is looked for
    /// under it. Relative paths are resolved against the desired-state folder.
    #[serde(default = "default_root")]
    pub root: PathBuf,
    /// How long reading this host and applying its changes may take in all
    /// (default 60 s and 300 s): past it, the connection is closed and the target fails.
    #[serde(default)]
    pub deadline: crate::engine::DeadlineSpec,
    /// Free text for people.
    #[serde(default)]
    pub description: Option<String>,
}

fn default_root() -> PathBuf {
    PathBuf::from("/")
}

/// How a host is reached.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum HostAccess {
    /// Files on the machine wispctl runs on.
    #[default]
    Local,
}
