//! `airos/<group>.yaml`: the UISP connection string the antennas of one group must carry, and
//! which antennas belong to the group. How they are reached (port, credentials, jump host) is
//! the group's entry under `antenna_groups` in `inventory.yaml`.

use std::collections::HashMap;
use std::path::PathBuf;

use schemars::JsonSchema;
use serde::Deserialize;

use super::FileCheck;
use super::inventory::valid_host;
use super::pppoe::normalise_mac;
use crate::providers::airos::config::ConnectionString;
use crate::secret::SecretRef;

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
    pub rollout: Rollout,
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

/// Canary and wave settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Rollout {
    /// Antennas read or written at once (default 20).
    #[serde(default = "default_concurrency")]
    pub concurrency: usize,
    /// The first wave: this many antennas are changed, and all must verify, before any other
    /// is touched (default 3; 0 turns the canary off).
    #[serde(default = "default_canary")]
    pub canary: usize,
    /// The rest is stopped (no new antenna started) once more than this many antennas have
    /// failed (default 0: the first failure stops the rollout).
    #[serde(default)]
    pub max_failures: usize,
}

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
        if !valid_host(&a.host) {
            check.error(
                &format!("{at}.host"),
                format!(
                    "{:?} is not an IP address or host name (letters, digits, '-' and '.')",
                    a.host
                ),
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
        rollout: file.rollout,
        antennas,
    })
}
