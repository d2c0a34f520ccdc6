//! Observe one antenna group: what UISP says (asked once per group: the desired connection
//! string when `connection.uisp`, which devices are connected when `connected_in`), then one
//! SSH session per antenna, at most `rollout.concurrency` at once, each reading both
//! configuration files, the board's identity and `ps` with one command, then the bridge's start
//! time and the persisted copy of `system.cfg` ([`super::antenna::read`]); and a fingerprint
//! per antenna, so that a saved plan is refused once an antenna moved.
//!
//! Writes nothing anywhere (`plan` and `drift` run it): the credential that worked and the host
//! keys trusted on first use are kept in the observation, and apply records them. An antenna
//! that cannot be read is kept as its error (an object error of the plan), never as the
//! group's. What it does not do: decide what differs ([`super::diff`]).

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicUsize, Ordering};

use tokio::sync::Semaphore;

use super::AirosError;
use super::antenna::{self, AntennaError, Live};
use super::config::ConnectionString;
use super::diff::{Seen, address, seen};
use super::login::Login;
use super::provider::{AirosProvider, Group};
use super::remembered;
use super::spec::{Antenna, ConnectionSource};
use crate::engine::Observation;
use crate::secret::HashKey;
use crate::ssh::TrustedKey;

/// A group as read.
pub struct GroupLive {
    /// The connection string every antenna must carry (from the YAML, or from UISP now).
    pub(super) desired: ConnectionString,
    /// What UISP says about the devices (`None`: no UISP server asked).
    pub(super) connected: Option<UispView>,
    /// Per antenna, in file order: what it holds, or why it could not be read.
    pub(super) antennas: Vec<Result<Live, AntennaError>>,
    /// The configured position of the credential that worked, by host (apply remembers it).
    pub(super) credentials: BTreeMap<String, usize>,
    /// Host keys trusted on first use while reading, not in the known-hosts file (apply
    /// records them).
    pub(super) trusted: Vec<TrustedKey>,
    /// The keyed hash of the real desired connection string when `desired` is masked (a
    /// reading restored from a snapshot); `None`: `desired` is the real one.
    pub(super) desired_hash: Option<crate::secret::SecretHash>,
}

/// Which devices one UISP server lists, by MAC and by IP address, and whether each is
/// connected (`active`).
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UispView {
    /// The server's name, for messages.
    pub name: String,
    by_mac: HashMap<String, bool>,
    by_ip: HashMap<String, bool>,
}

impl UispView {
    /// A view listing nothing yet.
    pub fn new(name: impl Into<String>) -> Self {
        UispView {
            name: name.into(),
            ..UispView::default()
        }
    }

    /// Adds one listed device (`mac` normalised). Two devices under one MAC or address: it
    /// counts as connected when either is.
    pub fn list(&mut self, mac: &str, ip: Option<&str>, active: bool) {
        if let Some(ip) = ip {
            *self.by_ip.entry(ip.to_string()).or_default() |= active;
        }
        *self.by_mac.entry(mac.to_string()).or_default() |= active;
    }

    /// Whether a device with this MAC is listed, and connected.
    pub fn by_mac(&self, mac: &str) -> Option<bool> {
        self.by_mac.get(mac).copied()
    }

    /// Whether a device with this address is listed, and connected.
    pub fn by_ip(&self, ip: &str) -> Option<bool> {
        self.by_ip.get(ip).copied()
    }
}

/// Reads one group. Fails as a whole only when the group cannot be worked on at all (UISP
/// cannot give what the file asks of it, a lab without this group, an unreadable known-hosts
/// file).
pub(super) async fn group(
    p: &AirosProvider,
    group: &Group,
) -> Result<Observation<GroupLive>, AirosError> {
    let d = &group.desired;
    let desired = desired_connection(p, &d.connection).await?;
    let connected = match &d.connected_in {
        None => None,
        Some(name) => Some(uisp_view(p, name).await?),
    };
    let login = p.login(group)?;
    let remembered = remembered::read(
        &p.ctx.state_dir,
        &p.ctx.key,
        &group.name,
        &group.ssh.credentials,
    );
    let sem = Semaphore::new(d.rollout.concurrency.max(1));
    let done = AtomicUsize::new(0);
    let total = d.antennas.len();
    let reads = d.antennas.iter().map(|a| {
        let (sem, done, remembered, login) = (&sem, &done, &remembered, &login);
        async move {
            let _permit = sem.acquire().await;
            let result = read_one(login, a, remembered.get(&a.host).copied()).await;
            let n = done.fetch_add(1, Ordering::Relaxed) + 1;
            p.progress(&group.name, "antennas read", n, total);
            result
        }
    });
    let results = futures::future::join_all(reads).await;
    let trusted = login.trusted(&d.antennas);
    login.close().await;
    let mut credentials = BTreeMap::new();
    let mut antennas = Vec::with_capacity(total);
    let mut fingerprints = BTreeMap::new();
    for (a, r) in d.antennas.iter().zip(results) {
        let at = address(&group.name, &a.host);
        match r {
            Ok((live, cred)) => {
                credentials.insert(a.host.clone(), cred);
                let s = seen(connected.as_ref(), a, live.board.hwaddr.as_deref());
                fingerprints.insert(at, fingerprint(&p.ctx.key, &live, &desired, s));
                antennas.push(Ok(live));
            }
            Err(e) => {
                // Stays the same while the antenna stays unreachable.
                fingerprints.insert(at, "unreadable".into());
                antennas.push(Err(e));
            }
        }
    }
    Ok(Observation {
        state: GroupLive {
            desired,
            connected,
            antennas,
            credentials,
            trusted,
            desired_hash: None,
        },
        fingerprints,
    })
}

/// The connection string the antennas must carry: the file's, or what UISP says now.
async fn desired_connection(
    p: &AirosProvider,
    source: &ConnectionSource,
) -> Result<ConnectionString, AirosError> {
    let name = match source {
        ConnectionSource::Given(c) => return Ok(c.clone()),
        ConnectionSource::Unresolved => return Err(AirosError::UnresolvedConnectionString),
        ConnectionSource::Uisp(name) => name,
    };
    let s = p
        .uisp_client(name)?
        .connection_string()
        .await
        .map_err(|source| AirosError::ReadConnectionString {
            server: name.clone(),
            source,
        })?;
    ConnectionString::parse(s.expose()).map_err(|source| AirosError::UnwritableConnectionString {
        server: name.clone(),
        source,
    })
}

/// Which devices UISP server `name` lists, and which are connected.
async fn uisp_view(p: &AirosProvider, name: &str) -> Result<UispView, AirosError> {
    let devices =
        p.uisp_client(name)?
            .devices()
            .await
            .map_err(|source| AirosError::ConnectedDevices {
                server: name.to_string(),
                source,
            })?;
    let mut view = UispView::new(name);
    for x in &devices {
        view.list(&x.mac, x.ip.as_deref(), x.status == "active");
    }
    Ok(view)
}

/// One antenna: logs in (remembered credential first), reads, logs out. Returns what it holds
/// and the configured position of the credential that worked.
async fn read_one(
    login: &Login<'_>,
    antenna: &Antenna,
    remembered: Option<usize>,
) -> Result<(Live, usize), AntennaError> {
    let (session, cred) = login.connect(antenna, remembered).await?;
    let live = antenna::read(&session).await;
    session.close().await;
    Ok((live?, cred))
}

/// The text an antenna's fingerprint is the keyed hash of: what is out of step (never a key),
/// and what UISP says of it when its key is not the master key.
pub fn fingerprint_text(live: &Live, desired: &ConnectionString, seen: Seen) -> String {
    // UISP's view counts only when the key depends on it: an antenna on the master key stays
    // the same object whether UISP shows it connected or not.
    antenna::assess(live, desired, seen == Seen::Connected).map_or_else(
        || "no system.cfg".to_string(),
        |x| {
            if x.key_differs {
                format!("{}\0{seen:?}", x.describe())
            } else {
                x.describe()
            }
        },
    )
}

/// An antenna's fingerprint.
fn fingerprint(key: &HashKey, live: &Live, desired: &ConnectionString, seen: Seen) -> String {
    key.digest("airos", fingerprint_text(live, desired, seen).as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kinds::airos::commands::{self, RUNNING_CFG, SYSTEM_CFG, render_read};

    const KEY: &str = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUV";

    const PS: &str =
        "  PID USER       VSZ STAT COMMAND\n  812 ubnt      9240 S    {exe} /bin/udapi-bridge\n";

    fn live(uri: &str) -> Live {
        let cfg = format!("unms.status=enabled\nunms.uri={uri}\n");
        let out = render_read(
            &[
                (SYSTEM_CFG, Some(cfg.as_bytes())),
                (RUNNING_CFG, Some(cfg.as_bytes())),
            ],
            true,
            PS,
        );
        Live::new(commands::parse_read(&out).unwrap())
    }

    #[test]
    fn a_device_listed_twice_counts_as_connected_when_either_is() {
        let mut v = UispView::new("main");
        v.list("AA", Some("10.0.0.1"), false);
        v.list("AA", Some("10.0.0.1"), true);
        v.list("BB", None, false);
        assert_eq!(v.by_mac("AA"), Some(true));
        assert_eq!(v.by_ip("10.0.0.1"), Some(true));
        assert_eq!(v.by_mac("BB"), Some(false));
        assert_eq!((v.by_mac("CC"), v.by_ip("10.0.0.2")), (None, None));
    }

    #[test]
    fn a_fingerprint_depends_on_uisp_only_when_the_key_is_not_the_master_key() {
        let desired = ConnectionString::parse(&format!("wss://u.example:443+{KEY}")).unwrap();
        let master = live(&format!("wss://u.example:443+{KEY}"));
        let texts: Vec<String> = [Seen::NotAsked, Seen::Connected, Seen::Unknown]
            .into_iter()
            .map(|s| fingerprint_text(&master, &desired, s))
            .collect();
        assert!(texts.iter().all(|t| t == "in sync"), "{texts:?}");
        let own = live("wss://u.example:443+deviceKey42");
        let connected = fingerprint_text(&own, &desired, Seen::Connected);
        let unknown = fingerprint_text(&own, &desired, Seen::Unknown);
        assert_ne!(connected, unknown);
        assert!(!connected.contains("deviceKey42") && !unknown.contains("deviceKey42"));
        let bare =
            Live::new(commands::parse_read(&render_read(&[(SYSTEM_CFG, None)], true, PS)).unwrap());
        assert_eq!(
            fingerprint_text(&bare, &desired, Seen::NotAsked),
            "no system.cfg"
        );
    }
}
