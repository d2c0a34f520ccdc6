//! `airos/<group>.yaml`: the UISP connection string the antennas of one group must carry, and
//! which antennas belong to the group. How they are reached (port, credentials, jump host) is
//! the group's entry under `antenna_groups` in `inventory.yaml`.

use std::collections::HashMap;
use std::path::PathBuf;

use schemars::JsonSchema;
use serde::Deserialize;

use super::config::ConnectionString;
use crate::mac::normalise_mac;
use crate::names::valid_name;
use crate::secret::SecretRef;
use crate::ssh::Credential;
use crate::yaml::FileCheck;

/// One airOS file.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AirosFile {
    /// The antenna group, as named in `inventory.yaml` under `antenna_groups`.
    pub group: String,
    /// Where the desired connection string comes from.
    pub connection: ConnectionSpec,
    /// The UISP server whose device list says which antennas are connected: a connected
    /// antenna has rewritten its own key, which is then not drift. Default: `connection.uisp`
    /// when set. Without one, only the master key counts as in sync.
    #[serde(default)]
    pub connected_in: Option<String>,
    /// How apply rolls the change out.
    #[serde(default)]
    pub rollout: RolloutSpec,
    /// The antennas.
    pub antennas: Vec<AntennaSpec>,
}

/// The source of the connection string: exactly one of `uisp` or `secret`.
#[derive(Debug, Clone, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ConnectionSpec {
    /// Whatever this UISP server (named in `inventory.yaml`) says now (`GET /nms/connection`).
    #[serde(default)]
    pub uisp: Option<String>,
    /// The string itself, as a reference (`wss://HOST:PORT+KEY[+allowSelfSignedCertificate]`).
    #[serde(default)]
    pub secret: Option<SecretRef>,
}

/// Canary and wave settings, as written.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RolloutSpec {
    /// Antennas read or written at once (default 20).
    #[serde(default = "default_concurrency")]
    pub concurrency: usize,
    /// The first wave: this many antennas are changed, and all must verify (on the antenna,
    /// then in UISP), before any other is touched (default 3; 0 turns the canary off).
    #[serde(default = "default_canary")]
    pub canary: usize,
    /// The rest is stopped (no new antenna started) once more than this many antennas have
    /// failed (default 0: the first failure stops the rollout).
    #[serde(default)]
    pub max_failures: usize,
    /// After an antenna's bridge is restarted, how long to wait for the UISP server of
    /// `connected_in` to show it connected again (by MAC; by address when no MAC is known),
    /// such as `3m`; one that does not come back in time failed. `0s` turns the check off
    /// (the antenna is then verified on the device only). Default `3m`; without a UISP server
    /// there is nothing to ask.
    #[serde(default)]
    pub wait_connected: Option<String>,
    /// How often UISP's device list is read while waiting (default `10s`; one request per
    /// poll for the whole group).
    #[serde(default)]
    pub poll_uisp: Option<String>,
    /// An antenna that UISP does not show connected in time is put back on the connection
    /// string it had before (kept in memory from the read before the write, never in a file),
    /// persisted, its bridge restarted, and reported as reverted. Default off.
    #[serde(default)]
    pub revert_if_not_connected: bool,
}

impl Default for RolloutSpec {
    fn default() -> Self {
        RolloutSpec {
            concurrency: default_concurrency(),
            canary: default_canary(),
            max_failures: 0,
            wait_connected: None,
            poll_uisp: None,
            revert_if_not_connected: false,
        }
    }
}

/// Canary and wave settings, validated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rollout {
    /// See [`RolloutSpec::concurrency`].
    pub concurrency: usize,
    /// See [`RolloutSpec::canary`].
    pub canary: usize,
    /// See [`RolloutSpec::max_failures`].
    pub max_failures: usize,
    /// See [`RolloutSpec::wait_connected`]; zero: not checked.
    pub wait_connected: std::time::Duration,
    /// See [`RolloutSpec::poll_uisp`].
    pub poll_uisp: std::time::Duration,
    /// See [`RolloutSpec::revert_if_not_connected`].
    pub revert_if_not_connected: bool,
}

/// The default of `rollout.wait_connected`: UISP shows a fixed antenna connected within a
/// minute or two.
pub const DEFAULT_WAIT_CONNECTED: std::time::Duration = std::time::Duration::from_secs(180);

/// The default of `rollout.poll_uisp`.
pub const DEFAULT_POLL_UISP: std::time::Duration = std::time::Duration::from_secs(10);

fn default_concurrency() -> usize {
    20
}

fn default_canary() -> usize {
    3
}

impl Default for Rollout {
    fn default() -> Self {
        Rollout {
            concurrency: default_concurrency(),
            canary: default_canary(),
            max_failures: 0,
            wait_connected: DEFAULT_WAIT_CONNECTED,
            poll_uisp: DEFAULT_POLL_UISP,
            revert_if_not_connected: false,
        }
    }
}

/// One antenna.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AntennaSpec {
    /// Its address (IP or host name), as reached from here or from the jump host.
    pub host: String,
    /// Its SSH port, when not the group's (an antenna behind a port forward).
    #[serde(default)]
    pub port: Option<u16>,
    /// Its MAC (any common form). When given, an antenna answering with another MAC is not
    /// touched (a DHCP lease moved to another customer), and UISP is asked about this MAC.
    #[serde(default)]
    pub mac: Option<String>,
    /// A name for people (the customer).
    #[serde(default)]
    pub name: Option<String>,
}

/// Where the desired connection string comes from, validated.
#[derive(Debug, Clone)]
pub enum ConnectionSource {
    /// Read from this UISP server at plan time.
    Uisp(String),
    /// Given.
    Given(ConnectionString),
    /// Given as a reference this command could not resolve and was told to leave unresolved
    /// (`plan --snapshot --unresolved-secrets not-compared`): the group cannot be planned.
    Unresolved,
}

/// A validated antenna.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Antenna {
    /// Address.
    pub host: String,
    /// SSH port, when not the group's.
    pub port: Option<u16>,
    /// Normalised MAC, when given.
    pub mac: Option<String>,
    /// Name for people.
    pub name: Option<String>,
}

/// The validated desired state of one antenna group.
#[derive(Debug, Clone)]
pub struct AirosDesired {
    /// The file it came from.
    pub source: PathBuf,
    /// The connection string's source.
    pub connection: ConnectionSource,
    /// The UISP server asked whether devices are connected.
    pub connected_in: Option<String>,
    /// Rollout settings.
    pub rollout: Rollout,
    /// Antennas, hosts unique, in file order.
    pub antennas: Vec<Antenna>,
}

/// Validates a parsed file against the inventory's UISP servers. `None` when any error was
/// found.
pub(crate) fn validate(
    file: AirosFile,
    check: &mut FileCheck<'_>,
    uisp_servers: Option<&[String]>,
) -> Option<AirosDesired> {
    let before = check.error_count();
    let known_uisp = |name: &str| uisp_servers.is_none_or(|s| s.iter().any(|n| n == name));
    let connection = match (&file.connection.uisp, &file.connection.secret) {
        (Some(u), None) => {
            if !known_uisp(u) {
                check.error(
                    "connection.uisp",
                    format!("UISP server {u:?} is not defined in inventory.yaml"),
                );
            }
            Some(ConnectionSource::Uisp(u.clone()))
        }
        (None, Some(r)) => {
            check
                .secret(r, "connection.secret", false)
                .and_then(|s| match ConnectionString::parse(s.expose()) {
                    _ if s.is_unresolved() => Some(ConnectionSource::Unresolved),
                    Ok(c) => {
                        for w in c.warnings() {
                            check.warn("connection.secret", w);
                        }
                        Some(ConnectionSource::Given(c))
                    }
                    Err(e) => {
                        check.error(
                            "connection.secret",
                            format!("invalid connection string: {e}"),
                        );
                        None
                    }
                })
        }
        _ => {
            check.error(
                "connection",
                "connection needs exactly one of `uisp: SERVER` or `secret: { env: NAME }`".into(),
            );
            None
        }
    };
    let connected_in = file
        .connected_in
        .clone()
        .or_else(|| file.connection.uisp.clone());
    if let Some(c) = &file.connected_in
        && !known_uisp(c)
    {
        check.error(
            "connected_in",
            format!("UISP server {c:?} is not defined in inventory.yaml"),
        );
    }
    if file.rollout.concurrency == 0 {
        check.error(
            "rollout.concurrency",
            "concurrency must be at least 1".into(),
        );
    }
    let mut duration = |path: &str, text: Option<&String>, default| match text {
        None => default,
        Some(t) => humantime::parse_duration(t).unwrap_or_else(|e| {
            check.error(
                path,
                format!("{t:?} is not a duration such as 10s or 3m: {e}"),
            );
            default
        }),
    };
    let r = &file.rollout;
    let rollout = Rollout {
        concurrency: r.concurrency,
        canary: r.canary,
        max_failures: r.max_failures,
        wait_connected: duration(
            "rollout.wait_connected",
            r.wait_connected.as_ref(),
            DEFAULT_WAIT_CONNECTED,
        ),
        poll_uisp: duration("rollout.poll_uisp", r.poll_uisp.as_ref(), DEFAULT_POLL_UISP),
        revert_if_not_connected: r.revert_if_not_connected,
    };
    if rollout.poll_uisp.is_zero() {
        check.error("rollout.poll_uisp", "poll_uisp must be more than 0s".into());
    }
    if rollout.revert_if_not_connected
        && (rollout.wait_connected.is_zero() || connected_in.is_none())
    {
        check.error(
            "rollout.revert_if_not_connected",
            "revert_if_not_connected needs a UISP server to ask (connected_in or connection.uisp) and a wait_connected above 0s".into(),
        );
    }
    if file.antennas.is_empty() {
        check.error(
            "antennas",
            "an antenna group needs at least one antenna".into(),
        );
    }
    let mut antennas = Vec::new();
    let mut first_at: HashMap<String, usize> = HashMap::new();
    let mut mac_at: HashMap<String, usize> = HashMap::new();
    for (i, a) in file.antennas.iter().enumerate() {
        let at = format!("antennas[{i}]");
        if let Err(why) = crate::untrusted::addr::host(&a.host) {
            check.error(
                &format!("{at}.host"),
                format!("{:?} is not an IP address or host name: {why}", a.host),
            );
            continue;
        }
        let key = a.host.to_ascii_lowercase();
        if let Some(first) = first_at.get(&key) {
            let (line, _) = check.place(&format!("antennas[{first}].host"));
            check.error(
                &format!("{at}.host"),
                format!("antenna {} is listed twice (first at line {line})", a.host),
            );
            continue;
        }
        first_at.insert(key, i);
        let mac = match &a.mac {
            None => None,
            Some(m) => match normalise_mac(m) {
                Some(m) => {
                    if let Some(first) = mac_at.insert(m.clone(), i) {
                        let (line, _) = check.place(&format!("antennas[{first}].mac"));
                        check.error(
                            &format!("{at}.mac"),
                            format!("MAC {m} is given to two antennas (first at line {line})"),
                        );
                    }
                    Some(m)
                }
                None => {
                    check.error(&format!("{at}.mac"), format!("{m:?} is not a MAC address"));
                    None
                }
            },
        };
        if a.name
            .as_ref()
            .is_some_and(|n| n.chars().any(char::is_control))
        {
            check.error(
                &format!("{at}.name"),
                "a name must not hold control characters".into(),
            );
        }
        if a.port == Some(0) {
            check.error(&format!("{at}.port"), "port must be 1 to 65535".into());
        }
        antennas.push(Antenna {
            host: a.host.clone(),
            port: a.port,
            mac,
            name: a.name.clone(),
        });
    }
    if check.error_count() > before {
        return None;
    }
    Some(AirosDesired {
        source: check.file.to_path_buf(),
        connection: connection?,
        connected_in,
        rollout,
        antennas,
    })
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
    /// How long reading this group of antennas and applying its changes may take in all
    /// (default 900 s and 3600 s): past it, the connection is closed and the target fails.
    #[serde(default)]
    pub deadline: crate::engine::DeadlineSpec,
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
    pub credentials: Vec<Credential>,
    /// The jump host.
    pub jump: Option<JumpHost>,
    /// The known-hosts file, when not the state directory's.
    pub known_hosts: Option<PathBuf>,
    /// Connect and login limit.
    pub connect_timeout: std::time::Duration,
    /// Per-command limit.
    pub command_timeout: std::time::Duration,
    /// Bound on reading the whole group and on applying it.
    pub deadline: crate::engine::Deadline,
}

/// A group of antennas: fifteen minutes to read (hundreds of SSH sessions), an hour to apply
/// (canary wave first).
pub const DEADLINE: crate::engine::Deadline = crate::engine::Deadline::secs(900, 3600);

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
    pub credentials: Vec<Credential>,
}

/// Validates one antenna group of the inventory (`at` is its path, `antenna_groups.NAME`).
pub(crate) fn validate_group(
    name: &str,
    g: &AntennaGroupSpec,
    at: &str,
    inline_ok: bool,
    check: &mut FileCheck<'_>,
) -> Option<AntennaGroup> {
    let before = check.error_count();
    if let Err(why) = valid_name(name) {
        check.error(
            &format!("{at}#key"),
            format!("invalid antenna group name {name:?}: {why}"),
        );
    }
    let credentials = |list: &[CredentialSpec], at: &str, check: &mut FileCheck<'_>| {
        if list.is_empty() {
            check.error(
                &format!("{at}.credentials"),
                "at least one credential is needed".into(),
            );
        }
        let mut out = Vec::new();
        for (i, c) in list.iter().enumerate() {
            if c.user.is_empty()
                || c.user
                    .chars()
                    .any(|ch| ch.is_control() || ch.is_whitespace())
            {
                check.error(
                    &format!("{at}.credentials[{i}].user"),
                    "user must be non-empty text without spaces".into(),
                );
            }
            if let Some(p) = check.secret(
                &c.password,
                &format!("{at}.credentials[{i}].password"),
                inline_ok,
            ) {
                out.push(Credential {
                    user: c.user.clone(),
                    password: p,
                });
            }
        }
        out
    };
    let creds = credentials(&g.credentials, at, check);
    let jump = g.jump.as_ref().map(|j| {
        let jat = format!("{at}.jump");
        if let Err(why) = crate::untrusted::addr::host(&j.host) {
            check.error(
                &format!("{jat}.host"),
                format!("{:?} is not an IP address or host name: {why}", j.host),
            );
        }
        if j.port == 0 {
            check.error(&format!("{jat}.port"), "port must be 1 to 65535".into());
        }
        JumpHost {
            host: j.host.clone(),
            port: j.port,
            legacy: j.legacy,
            credentials: credentials(&j.credentials, &jat, check),
        }
    });
    if g.port == 0 {
        check.error(&format!("{at}.port"), "port must be 1 to 65535".into());
    }
    let known_hosts = g.known_hosts.as_ref().map(|k| check.relative(k));
    if let Some(k) = &known_hosts {
        let max = crate::untrusted::file::MAX_NAMED_FILE_BYTES;
        check.named_file(
            &format!("{at}.known_hosts"),
            "known-hosts file",
            k,
            max,
            true,
        );
    }
    if check.error_count() > before {
        return None;
    }
    Some(AntennaGroup {
        port: g.port,
        legacy: g.legacy,
        credentials: creds,
        jump,
        known_hosts,
        connect_timeout: std::time::Duration::from_secs(g.connect_timeout_secs.max(1)),
        command_timeout: std::time::Duration::from_secs(g.command_timeout_secs.max(1)),
        deadline: g.deadline.over(DEADLINE),
    })
}

/// Where a group's antennas are reached instead of their hosts (a lab fleet), and the
/// known-hosts file that pins their keys.
#[derive(Debug, Clone, Default, serde::Serialize, Deserialize)]
pub struct GroupEndpoints {
    /// Antenna stand-ins, by the host the YAML names.
    pub antennas: std::collections::BTreeMap<String, std::net::SocketAddr>,
    /// The jump host's stand-in, when the group has one.
    pub jump: Option<std::net::SocketAddr>,
    /// The known-hosts file of the stand-ins.
    pub known_hosts: PathBuf,
}
