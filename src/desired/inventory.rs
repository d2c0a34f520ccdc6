//! `inventory.yaml`: the targets (their addresses and how to reach them) and the run-wide guards.
//! Resource files name targets from here; a reference to an undefined target is an error.

use std::collections::BTreeMap;
use std::path::PathBuf;

use schemars::JsonSchema;
use serde::Deserialize;

use crate::secret::SecretRef;

/// The inventory file as written.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct InventoryFile {
    /// Limits that stop a truncated or mistaken file from wiping a device.
    #[serde(default)]
    pub guards: Guards,
    /// Linux hosts that carry pppd peer files and chap-secrets, by name.
    #[serde(default)]
    pub hosts: BTreeMap<String, HostSpec>,
    /// MikroTik routers reached over the RouterOS API, by name.
    #[serde(default)]
    pub routers: BTreeMap<String, RouterSpec>,
    /// UISP (NMS) servers, by name.
    #[serde(default)]
    pub uisp: BTreeMap<String, UispSpec>,
    /// airOS antennas reached over SSH, by group: how a group's antennas are logged in to.
    /// Which antennas belong to a group, and what they must carry, is in `airos/<group>.yaml`.
    #[serde(default)]
    pub antenna_groups: BTreeMap<String, AntennaGroupSpec>,
    /// Let this file hold `{ inline: ... }` credentials (each one is warned about).
    #[serde(default)]
    pub allow_inline_secrets: bool,
}

/// A MikroTik router.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RouterSpec {
    /// Host name or IP address of the API service.
    pub address: String,
    /// API port (default 8728, or 8729 with `tls`).
    #[serde(default)]
    pub port: Option<u16>,
    /// Use the TLS API service (`api-ssl`), verified against a CA file or a pinned certificate.
    #[serde(default)]
    pub tls: Option<TlsSpec>,
    /// API user name.
    pub username: String,
    /// API password, as a reference.
    pub password: SecretRef,
    /// Seconds to wait for the router before giving up (default 30).
    #[serde(default = "default_timeout")]
    pub timeout_secs: u64,
    /// Free text for people.
    #[serde(default)]
    pub description: Option<String>,
}

fn default_timeout() -> u64 {
    30
}

/// TLS settings of a router. Verification is always on unless `insecure: true`.
#[derive(Debug, Clone, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TlsSpec {
    /// PEM file of the CA that signed the router's certificate.
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    /// SHA-256 fingerprint of the router's certificate (hex, colons allowed): pins it.
    #[serde(default)]
    pub fingerprint: Option<String>,
    /// Accept any certificate. Only for a lab; warned about.
    #[serde(default)]
    pub insecure: bool,
}

/// Run-wide guards.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Guards {
    /// The most deletes one run may make across all targets (default 10). A plan over the cap
    /// is refused as a whole; raise it here or with `--max-deletes` when the deletes are meant.
    #[serde(default = "default_max_deletes")]
    pub max_deletes: usize,
}

fn default_max_deletes() -> usize {
    10
}

impl Default for Guards {
    fn default() -> Self {
        Guards {
            max_deletes: default_max_deletes(),
        }
    }
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

/// A router after validation: port chosen, password resolved, TLS settled.
#[derive(Debug, Clone)]
pub struct Router {
    /// Host name or IP address.
    pub address: String,
    /// API port.
    pub port: u16,
    /// TLS, when used.
    pub tls: Option<TlsVerify>,
    /// API user.
    pub username: String,
    /// API password.
    pub password: crate::secret::Secret,
    /// Bound on every wait.
    pub timeout: std::time::Duration,
}

/// How a router's certificate is checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TlsVerify {
    /// Against this CA (PEM file).
    Ca(PathBuf),
    /// The certificate's SHA-256 must be this.
    Fingerprint([u8; 32]),
    /// Not at all (lab only).
    Insecure,
}

/// Parses a SHA-256 fingerprint written as hex, with or without colons.
pub fn parse_fingerprint(s: &str) -> Option<[u8; 32]> {
    let hexs: String = s
        .trim_start_matches("sha256:")
        .chars()
        .filter(|c| *c != ':')
        .collect();
    hex::decode(hexs).ok()?.try_into().ok()
}

/// A UISP (NMS) server.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct UispSpec {
    /// Base URL of UISP, such as `https://uisp.example.net` (the NMS API path is added).
    pub url: String,
    /// An NMS API token (Settings > Users > API tokens), as a reference. Not a CRM app key.
    pub token: SecretRef,
    /// PEM file of a CA to trust instead of the system's (a self-signed UISP certificate).
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    /// Accept any certificate. Only for a lab; warned about.
    #[serde(default)]
    pub insecure: bool,
    /// Seconds to wait for an answer (default 120: `GET /devices` is one unpaginated list).
    #[serde(default = "default_uisp_timeout")]
    pub timeout_secs: u64,
}

fn default_uisp_timeout() -> u64 {
    120
}

/// A UISP server after validation.
#[derive(Debug, Clone)]
pub struct Uisp {
    /// `https://HOST[:PORT]/nms/api/v2.1`.
    pub api: String,
    /// The NMS API token.
    pub token: crate::secret::Secret,
    /// How the server's certificate is checked: `None` for the system's roots.
    pub tls: Option<TlsVerify>,
    /// Bound on every request.
    pub timeout: std::time::Duration,
}

/// How the antennas of one group are reached over SSH.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AntennaGroupSpec {
    /// SSH port of every antenna in the group (default 22).
    #[serde(default = "default_ssh_port")]
    pub port: u16,
    /// Also offer what old airOS (dropbear, 2019 firmware) needs: `ssh-rsa` (SHA-1) host keys,
    /// `diffie-hellman-group14-sha1`/`group1-sha1`, `hmac-sha1` and CBC ciphers. Off by default:
    /// only modern algorithms are offered.
    #[serde(default)]
    pub legacy: bool,
    /// Logins tried in order until one works; the one that worked is remembered per antenna in
    /// the state directory (a keyed hash of it, never a password) and tried first next time.
    pub credentials: Vec<CredentialSpec>,
    /// Reach the antennas through this host (ProxyJump): an SSH `direct-tcpip` tunnel.
    #[serde(default)]
    pub jump: Option<JumpSpec>,
    /// The known-hosts file that pins each antenna's host key (`HOST:PORT SHA256:...` lines).
    /// Default: `airos-known-hosts` in the state directory. Relative paths are resolved against
    /// the desired-state folder.
    #[serde(default)]
    pub known_hosts: Option<PathBuf>,
    /// Seconds allowed for connecting and for each login attempt (default 10).
    #[serde(default = "default_ssh_connect_timeout")]
    pub connect_timeout_secs: u64,
    /// Seconds allowed for each command (default 30).
    #[serde(default = "default_ssh_command_timeout")]
    pub command_timeout_secs: u64,
    /// Free text for people.
    #[serde(default)]
    pub description: Option<String>,
}

/// One SSH login.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CredentialSpec {
    /// The user, such as `ubnt`.
    pub user: String,
    /// The password, as a reference.
    pub password: SecretRef,
}

/// A jump host.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct JumpSpec {
    /// Host name or IP address.
    pub host: String,
    /// SSH port (default 22).
    #[serde(default = "default_ssh_port")]
    pub port: u16,
    /// Offer legacy algorithms to the jump host too (see the group's `legacy`).
    #[serde(default)]
    pub legacy: bool,
    /// Logins tried in order. Its host key is pinned in the same known-hosts file.
    pub credentials: Vec<CredentialSpec>,
}

fn default_ssh_port() -> u16 {
    22
}

fn default_ssh_connect_timeout() -> u64 {
    10
}

fn default_ssh_command_timeout() -> u64 {
    30
}

/// An antenna group after validation: credentials resolved.
#[derive(Debug, Clone)]
pub struct AntennaGroup {
    /// SSH port.
    pub port: u16,
    /// Offer legacy algorithms.
    pub legacy: bool,
    /// Logins, in order.
    pub credentials: Vec<crate::providers::airos::ssh::Credential>,
    /// The jump host.
    pub jump: Option<JumpHost>,
    /// The known-hosts file, when not the state directory's.
    pub known_hosts: Option<PathBuf>,
    /// Connect and login limit.
    pub connect_timeout: std::time::Duration,
    /// Per-command limit.
    pub command_timeout: std::time::Duration,
}

/// A validated jump host.
#[derive(Debug, Clone)]
pub struct JumpHost {
    /// Host name or IP address.
    pub host: String,
    /// Port.
    pub port: u16,
    /// Offer legacy algorithms.
    pub legacy: bool,
    /// Logins, in order.
    pub credentials: Vec<crate::providers::airos::ssh::Credential>,
}

/// Whether `host` is an IPv4 address, an IPv6 address or a DNS name (letters, digits, `-` and
/// `.` separated labels). Everything an antenna's `host` may be: it becomes a TCP destination
/// and a known-hosts key, and nothing else passes.
pub fn valid_host(host: &str) -> bool {
    if host.parse::<std::net::IpAddr>().is_ok() {
        return true;
    }
    !host.is_empty()
        && host.len() <= 253
        && host.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        })
}
