//! How one group's antennas are logged in to during a run: the SSH target of each antenna (its
//! port, the group's settings, the credential that worked last time tried first, a lab twin's
//! address), the jump host and the one login to it that every antenna shares, and the
//! known-hosts file that pins their keys.
//!
//! What it does not do: run commands on an antenna ([`super::antenna`]), or keep anything
//! (remembered credentials are read by observe and written by apply, [`super::remembered`];
//! host keys trusted on first use stay in memory until apply records them).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::AirosError;
use super::spec::{Antenna, AntennaGroup, GroupEndpoints};
use crate::ssh::{Endpoint, HostKeyPolicy, KnownHosts, Session, SshError, Target, TrustedKey};

/// The known-hosts file a group uses: the stand-in's (a lab fleet's keys never enter a real
/// file), else the group's `known_hosts`, else `STATE_DIR/airos-known-hosts`.
pub fn known_hosts_path(
    configured: Option<&Path>,
    endpoints: Option<&GroupEndpoints>,
    state_dir: &Path,
) -> PathBuf {
    match (endpoints, configured) {
        (Some(e), _) => e.known_hosts.clone(),
        (None, Some(p)) => p.to_path_buf(),
        (None, None) => state_dir.join(super::KNOWN_HOSTS_FILE),
    }
}

/// Why an antenna could not be logged in to. Never holds a password.
#[derive(Debug, Clone, thiserror::Error)]
pub enum LoginError {
    /// The antenna's connection or login failed.
    #[error("{}", with_accept_hint(source, group))]
    Antenna {
        /// The group (named in the command that accepts a changed key).
        group: String,
        /// Why.
        #[source]
        source: Arc<SshError>,
    },
    /// The jump host's login failed: every antenna behind it fails the same way, at once.
    #[error("jump host: {}", with_accept_hint(source, group))]
    Jump {
        /// The group.
        group: String,
        /// Why.
        #[source]
        source: Arc<SshError>,
    },
    /// The lab's twin of the group has no twin of this antenna (a lab never reaches a real
    /// address).
    #[error("the lab has no twin of this antenna")]
    NoTwin,
}

/// An SSH error as the plan shows it; a changed host key also names the command that accepts
/// it.
fn with_accept_hint(e: &SshError, group: &str) -> String {
    match e {
        SshError::HostKeyChanged { host, got, .. } => {
            let name = host.rsplit_once(':').map_or(host.as_str(), |(h, _)| h);
            let name = name.trim_start_matches('[').trim_end_matches(']');
            format!("{e}; or, once verified: `wispctl accept-host-key {group} {name} {got}`")
        }
        _ => e.to_string(),
    }
}

/// The order credentials are tried in: the configured order, with the one that worked last
/// time (`remembered`, a configured position) first.
pub fn credential_order(count: usize, remembered: Option<usize>) -> Vec<usize> {
    let mut order: Vec<usize> = (0..count).collect();
    if let Some(r) = remembered.filter(|r| *r < count) {
        order.retain(|i| *i != r);
        order.insert(0, r);
    }
    order
}

/// How one group's antennas are logged in to during one run (observe or apply). Close it with
/// [`Login::close`] once every antenna session is closed.
pub struct Login<'a> {
    group: &'a str,
    ssh: &'a AntennaGroup,
    /// Where the antennas are reached instead of their hosts (a lab fleet).
    endpoints: Option<&'a GroupEndpoints>,
    known: KnownHosts,
    policy: HostKeyPolicy,
    jump: Option<Target>,
    link: JumpLink,
}

impl<'a> Login<'a> {
    /// The group's login setup. Errors: the lab's twin of the group has no jump host and the
    /// group has one.
    pub fn new(
        group: &'a str,
        ssh: &'a AntennaGroup,
        endpoints: Option<&'a GroupEndpoints>,
        known: KnownHosts,
        policy: HostKeyPolicy,
    ) -> Result<Self, AirosError> {
        let jump = match &ssh.jump {
            None => None,
            Some(j) => {
                let mut jt =
                    Target::new(Endpoint::new(j.host.clone(), j.port), j.credentials.clone());
                jt.legacy = j.legacy;
                jt.connect_timeout = ssh.connect_timeout;
                jt.command_timeout = ssh.command_timeout;
                if let Some(e) = endpoints {
                    jt.connect_to = Some(e.jump.ok_or_else(|| AirosError::NoJumpTwin {
                        group: group.to_string(),
                    })?);
                }
                Some(jt)
            }
        };
        Ok(Login {
            group,
            ssh,
            endpoints,
            known,
            policy,
            jump,
            link: JumpLink::default(),
        })
    }

    /// Where an antenna listens, as the known-hosts file names it.
    pub fn endpoint(&self, antenna: &Antenna) -> Endpoint {
        Endpoint::new(antenna.host.clone(), antenna.port.unwrap_or(self.ssh.port))
    }

    /// The SSH target of one antenna (without its jump host), with the remembered credential
    /// first; the second value maps a position in the target's list back to the configured one.
    pub fn target(
        &self,
        antenna: &Antenna,
        remembered: Option<usize>,
    ) -> Result<(Target, Vec<usize>), LoginError> {
        let g = self.ssh;
        let order = credential_order(g.credentials.len(), remembered);
        let mut t = Target::new(
            self.endpoint(antenna),
            order.iter().map(|i| g.credentials[*i].clone()).collect(),
        );
        t.legacy = g.legacy;
        t.connect_timeout = g.connect_timeout;
        t.command_timeout = g.command_timeout;
        if self.jump.is_none()
            && let Some(e) = self.endpoints
        {
            t.connect_to = Some(
                e.antennas
                    .get(&antenna.host)
                    .copied()
                    .ok_or(LoginError::NoTwin)?,
            );
        }
        Ok((t, order))
    }

    /// Logs in to one antenna (through the shared jump host login, when the group has one),
    /// trying the remembered credential first. Returns the session and the configured position
    /// of the credential that worked.
    pub async fn connect(
        &self,
        antenna: &Antenna,
        remembered: Option<usize>,
    ) -> Result<(Session, usize), LoginError> {
        let (target, order) = self.target(antenna, remembered)?;
        let connected = match &self.jump {
            None => Session::connect(&target, &self.known, self.policy).await,
            Some(jt) => {
                let link = self
                    .link
                    .get(jt, &self.known, self.policy, self.group)
                    .await?;
                Session::connect_via(&target, link, &self.known, self.policy).await
            }
        };
        let (session, i) = connected.map_err(|e| LoginError::Antenna {
            group: self.group.to_string(),
            source: Arc::new(e),
        })?;
        Ok((session, order[i]))
    }

    /// The host keys of these antennas and of the jump host that this run trusted on first
    /// use and the known-hosts file does not list yet (apply records them).
    pub fn trusted(&self, antennas: &[Antenna]) -> Vec<TrustedKey> {
        let mine: Vec<Endpoint> = antennas
            .iter()
            .map(|a| self.endpoint(a))
            .chain(self.jump.iter().map(|j| j.endpoint.clone()))
            .collect();
        self.known
            .trusted()
            .into_iter()
            .filter(|t| mine.contains(&t.endpoint))
            .collect()
    }

    /// The known-hosts table the run checks keys against.
    pub fn known_hosts(&self) -> &KnownHosts {
        &self.known
    }

    /// Closes the jump host's login once no antenna session uses it.
    pub async fn close(self) {
        self.link.close().await;
    }
}

/// One login to a group's jump host, shared by every antenna of a run (each gets its own
/// `direct-tcpip` channel on it), made again if it drops. Without it, twenty antennas at once
/// would be twenty logins to the jump host (and OpenSSH's `MaxStartups` refuses the excess).
/// A failed login is remembered for the run: the antennas queued behind it fail at once
/// instead of each trying (and timing out) in turn.
#[derive(Default)]
struct JumpLink(tokio::sync::Mutex<Option<Result<Arc<Session>, LoginError>>>);

impl JumpLink {
    async fn get(
        &self,
        target: &Target,
        known: &KnownHosts,
        policy: HostKeyPolicy,
        group: &str,
    ) -> Result<Arc<Session>, LoginError> {
        let mut slot = self.0.lock().await;
        match slot.as_ref() {
            Some(Ok(s)) if !s.is_closed() => return Ok(s.clone()),
            Some(Err(e)) => return Err(e.clone()),
            _ => {}
        }
        let result = Session::connect(target, known, policy)
            .await
            .map(|(s, _)| Arc::new(s))
            .map_err(|e| LoginError::Jump {
                group: group.to_string(),
                source: Arc::new(e),
            });
        *slot = Some(result.clone());
        result
    }

    /// Closes the jump session once no antenna session uses it.
    async fn close(self) {
        if let Some(Ok(s)) = self.0.into_inner()
            && let Some(s) = Arc::into_inner(s)
        {
            s.close().await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    use crate::secret::Secret;
    use crate::ssh::Credential;

    fn group(jump: bool) -> AntennaGroup {
        let cred = |p: &str| Credential {
            user: "ubnt".into(),
            password: Secret::new(p),
        };
        AntennaGroup {
            port: 22,
            legacy: true,
            credentials: vec![cred("first-pw"), cred("second-pw"), cred("third-pw")],
            jump: jump.then(|| super::super::spec::JumpHost {
                host: "10.147.17.5".into(),
                port: 2222,
                legacy: false,
                credentials: vec![cred("jump-pw")],
            }),
            known_hosts: None,
            connect_timeout: Duration::from_secs(7),
            command_timeout: Duration::from_secs(9),
            deadline: super::super::spec::DEADLINE,
        }
    }

    fn antenna(host: &str, port: Option<u16>) -> Antenna {
        Antenna {
            host: host.into(),
            port,
            mac: None,
            name: None,
        }
    }

    fn known() -> (tempfile::TempDir, KnownHosts) {
        let dir = tempfile::tempdir().unwrap();
        let k = KnownHosts::load(dir.path().join("kh")).unwrap();
        (dir, k)
    }

    #[test]
    fn the_remembered_credential_is_tried_first_and_a_stale_one_is_ignored() {
        assert_eq!(credential_order(3, None), vec![0, 1, 2]);
        assert_eq!(credential_order(3, Some(2)), vec![2, 0, 1]);
        assert_eq!(credential_order(3, Some(0)), vec![0, 1, 2]);
        assert_eq!(credential_order(3, Some(7)), vec![0, 1, 2]);
        assert_eq!(credential_order(0, Some(0)), Vec::<usize>::new());
    }

    #[test]
    fn a_target_carries_the_group_settings_and_a_lab_twin_address() {
        let g = group(false);
        let (_d, k) = known();
        let login = Login::new("clientes", &g, None, k.clone(), HostKeyPolicy::Strict).unwrap();
        let (t, order) = login
            .target(&antenna("10.10.1.45", Some(2200)), Some(1))
            .unwrap();
        assert_eq!(order, vec![1, 0, 2]);
        assert_eq!(t.endpoint, Endpoint::new("10.10.1.45", 2200));
        assert_eq!(t.credentials[0].password.expose(), "second-pw");
        assert!(t.legacy && t.connect_to.is_none() && t.jump.is_none());
        assert_eq!(
            (t.connect_timeout, t.command_timeout),
            (Duration::from_secs(7), Duration::from_secs(9))
        );
        // A lab without a twin of this antenna: never the real address.
        let twin: std::net::SocketAddr = "127.0.0.1:4022".parse().unwrap();
        let lab = GroupEndpoints {
            antennas: [("10.10.1.45".to_string(), twin)].into(),
            jump: None,
            known_hosts: "lab-kh".into(),
        };
        let login =
            Login::new("clientes", &g, Some(&lab), k.clone(), HostKeyPolicy::Strict).unwrap();
        let (t, _) = login.target(&antenna("10.10.1.45", None), None).unwrap();
        assert_eq!((t.endpoint.port, t.connect_to), (22, Some(twin)));
        assert!(matches!(
            login.target(&antenna("10.10.1.99", None), None),
            Err(LoginError::NoTwin)
        ));
        // A group with a jump host in a lab whose twin has none: the group cannot be reached.
        let g = group(true);
        let err = Login::new("clientes", &g, Some(&lab), k, HostKeyPolicy::Strict)
            .err()
            .unwrap();
        assert_eq!(
            err.to_string(),
            "the lab has no twin of this group's jump host"
        );
        assert!(matches!(err, AirosError::NoJumpTwin { group } if group == "clientes"));
    }

    #[test]
    fn a_changed_host_key_names_the_command_that_accepts_it() {
        let changed = SshError::HostKeyChanged {
            host: "[fd00::20]:22".into(),
            expected: "SHA256:old".into(),
            got: "SHA256:new".into(),
            known_hosts: "kh".into(),
        };
        let e = LoginError::Antenna {
            group: "clientes".into(),
            source: Arc::new(changed),
        };
        assert!(
            e.to_string().ends_with(
                "; or, once verified: `wispctl accept-host-key clientes fd00::20 SHA256:new`"
            ),
            "{e}"
        );
        let refused = SshError::AuthFailed {
            host: "10.147.17.5:22".into(),
            tried: 1,
        };
        let e = LoginError::Jump {
            group: "clientes".into(),
            source: Arc::new(refused),
        };
        assert_eq!(
            e.to_string(),
            "jump host: 10.147.17.5:22: login refused for each of the 1 configured credentials"
        );
        assert!(std::error::Error::source(&e).is_some());
    }

    #[test]
    fn debug_output_shows_no_password() {
        let g = group(true);
        let shown = format!("{g:?}");
        for pw in ["first-pw", "second-pw", "third-pw", "jump-pw"] {
            assert!(!shown.contains(pw), "{shown}");
        }
    }
}
