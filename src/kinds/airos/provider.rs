//! The airos provider: observe, diff and apply over one antenna group, in waves.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use tokio::sync::Semaphore;

use super::antenna::{self, AntennaError, Live};
use super::commands;
use super::spec::{AirosDesired, AntennaGroup, Antenna, ConnectionSource, GroupEndpoints};
use super::{AirosError, KNOWN_HOSTS_FILE};
use super::config::ConnectionString;
use crate::ssh::{self, Endpoint, HostKeyPolicy, KnownHosts, Session, Target};
use crate::engine::{Context, Event, Events, Item, NoTwin, Observation, Planned, Provider};
use crate::uisp_api::{self, Server, UispClient};
use crate::files::write_atomic;
use crate::plan::report::Outcome;
use crate::plan::{Action, Change, FieldDiff, quote_key};
use crate::secret::{HashKey, SecretHash};

struct Group {
    name: String,
    ssh: AntennaGroup,
    desired: AirosDesired,
    /// Where the group's antennas are reached instead of their hosts (a lab fleet), or why
    /// they cannot be.
    endpoints: Result<Option<GroupEndpoints>, NoTwin>,
}

/// The airOS provider.
pub struct AirosProvider {
    groups: BTreeMap<String, Group>,
    uisp: BTreeMap<String, Server>,
    ctx: Context,
    key: Arc<HashKey>,
    state_dir: PathBuf,
    policy: HostKeyPolicy,
    known: Mutex<HashMap<PathBuf, KnownHosts>>,
    events: Events,
}

/// The known-hosts file a group uses: the stand-in's (a lab fleet's keys never enter a real
/// file), else the group's `known_hosts`, else `STATE_DIR/airos-known-hosts`.
pub fn known_hosts_path(
    configured: Option<&std::path::Path>,
    endpoints: Option<&GroupEndpoints>,
    state_dir: &std::path::Path,
) -> PathBuf {
    match (endpoints, configured) {
        (Some(e), _) => e.known_hosts.clone(),
        (None, Some(p)) => p.to_path_buf(),
        (None, None) => state_dir.join(KNOWN_HOSTS_FILE),
    }
}

impl AirosProvider {
    /// Builds the provider for every antenna group with an airos file.
    pub fn new(
        groups: &BTreeMap<String, AntennaGroup>,
        desired: &BTreeMap<String, AirosDesired>,
        uisp: BTreeMap<String, Server>,
        ctx: &Context,
    ) -> Self {
        let groups = desired
            .iter()
            .map(|(name, d)| {
                (
                    name.clone(),
                    Group {
                        name: name.clone(),
                        ssh: groups[name].clone(),
                        desired: d.clone(),
                        endpoints: ctx.route::<GroupEndpoints>(
                            <super::Kind as crate::kinds::KindDef>::SECTION,
                            name,
                        ),
                    },
                )
            })
            .collect();
        AirosProvider {
            groups,
            uisp,
            ctx: ctx.clone(),
            key: ctx.key.clone(),
            state_dir: ctx.state_dir.clone(),
            policy: if ctx.trust_new_host_keys {
                HostKeyPolicy::TrustOnFirstUse
            } else {
                HostKeyPolicy::Strict
            },
            known: Mutex::new(HashMap::new()),
            events: ctx.events.clone(),
        }
    }

    fn uisp_client(&self, name: &str) -> Result<UispClient, String> {
        let Some(server) = self.uisp.get(name) else {
            return Err(format!("UISP server {name} is not in the inventory"));
        };
        uisp_api::client(&self.ctx, name, server).map_err(|e| e.to_string())
    }

    fn endpoints<'a>(&self, group: &'a Group) -> Result<Option<&'a GroupEndpoints>, String> {
        group
            .endpoints
            .as_ref()
            .map(Option::as_ref)
            .map_err(|e| e.to_string())
    }

    fn known_hosts(&self, group: &Group) -> Result<KnownHosts, String> {
        let path = known_hosts_path(
            group.ssh.known_hosts.as_deref(),
            self.endpoints(group)?,
            &self.state_dir,
        );
        let mut map = self
            .known
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(k) = map.get(&path) {
            return Ok(k.clone());
        }
        let k = KnownHosts::load(&path).map_err(|e| e.to_string())?;
        map.insert(path, k.clone());
        Ok(k)
    }

    /// The keyed hash that stands for a credential in the state directory.
    fn credential_id(&self, c: &ssh::Credential) -> String {
        let mut data = c.user.as_bytes().to_vec();
        data.push(0);
        data.extend_from_slice(c.password.expose().as_bytes());
        self.key.digest("airos-credential", &data)
    }

    /// The SSH target of one antenna (without its jump host), with the remembered credential
    /// first; the second value maps a position in the target's list back to the configured one.
    fn target(
        &self,
        group: &Group,
        antenna: &Antenna,
        remembered: Option<usize>,
    ) -> Result<(Target, Vec<usize>), String> {
        let g = &group.ssh;
        let mut order: Vec<usize> = (0..g.credentials.len()).collect();
        if let Some(r) = remembered.filter(|r| *r < order.len()) {
            order.retain(|i| *i != r);
            order.insert(0, r);
        }
        let mut t = Target::new(
            Endpoint::new(antenna.host.clone(), antenna.port.unwrap_or(g.port)),
            order.iter().map(|i| g.credentials[*i].clone()).collect(),
        );
        t.legacy = g.legacy;
        t.connect_timeout = g.connect_timeout;
        t.command_timeout = g.command_timeout;
        if g.jump.is_none()
            && let Some(e) = self.endpoints(group)?
        {
            t.connect_to = Some(
                e.antennas
                    .get(&antenna.host)
                    .copied()
                    .ok_or("the lab has no twin of this antenna")?,
            );
        }
        Ok((t, order))
    }

    /// The group's jump host target.
    fn jump_target(&self, group: &Group) -> Result<Option<Target>, String> {
        let g = &group.ssh;
        let Some(j) = &g.jump else {
            return Ok(None);
        };
        let mut jt = Target::new(Endpoint::new(j.host.clone(), j.port), j.credentials.clone());
        jt.legacy = j.legacy;
        jt.connect_timeout = g.connect_timeout;
        jt.command_timeout = g.command_timeout;
        if let Some(e) = self.endpoints(group)? {
            jt.connect_to = Some(e.jump.ok_or("the lab has no twin of this group's jump host")?);
        }
        Ok(Some(jt))
    }

    fn credentials_path(&self, group: &str) -> PathBuf {
        self.state_dir
            .join("airos")
            .join(format!("{group}.credentials.json"))
    }

    /// Which credential worked last, per antenna host, as stored: keyed hashes of user and
    /// password.
    fn remembered_ids(&self, group: &str) -> BTreeMap<String, String> {
        std::fs::read(self.credentials_path(group))
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or_default()
    }

    /// The same as positions in the group's credential list (an entry whose credential is no
    /// longer configured is dropped).
    fn remembered(&self, group: &Group) -> BTreeMap<String, usize> {
        let ids: Vec<String> = group
            .ssh
            .credentials
            .iter()
            .map(|c| self.credential_id(c))
            .collect();
        self.remembered_ids(&group.name)
            .into_iter()
            .filter_map(|(host, id)| Some((host, ids.iter().position(|i| *i == id)?)))
            .collect()
    }

    /// Records which credential worked, per antenna. Only apply calls this (under the apply
    /// lock): `plan` and `drift` write nothing.
    fn remember(&self, group: &Group, name: &str, learned: &BTreeMap<String, usize>) {
        let mut all = self.remembered_ids(name);
        let before = all.clone();
        all.extend(learned.iter().filter_map(|(k, v)| {
            let c = group.ssh.credentials.get(*v)?;
            Some((k.clone(), self.credential_id(c)))
        }));
        if all == before {
            return;
        }
        let path = self.credentials_path(name);
        let write = || -> std::io::Result<()> {
            if let Some(dir) = path.parent() {
                std::fs::create_dir_all(dir)?;
            }
            let json = serde_json::to_vec_pretty(&all).map_err(std::io::Error::other)?;
            write_atomic(&path, &json, 0o600)
        };
        if let Err(e) = write() {
            tracing::warn!(
                "cannot remember which credentials worked in {}: {e}",
                path.display()
            );
        }
    }

    fn progress(&self, group: &str, what: &'static str, done: usize, total: usize) {
        self.events.send(Event::Progress {
            address: format!("airos.{group}"),
            what,
            done,
            total,
        });
    }

    /// Connects with the remembered credential first; returns the session and the configured
    /// position of the credential that worked.
    async fn connect(
        &self,
        group: &Group,
        antenna: &Antenna,
        remembered: Option<usize>,
        jump: &JumpLink,
    ) -> Result<(Session, usize), String> {
        let (target, order) = self.target(group, antenna, remembered)?;
        let known = self.known_hosts(group)?;
        let connected = match self.jump_target(group)? {
            None => Session::connect(&target, &known, self.policy).await,
            Some(jt) => {
                let link = jump.get(&jt, &known, self.policy, &group.name).await?;
                Session::connect_via(&target, link, &known, self.policy).await
            }
        };
        let (session, i) = connected.map_err(|e| describe(e, &group.name))?;
        Ok((session, order[i]))
    }
}

/// An SSH error as the plan shows it; a changed host key also names the command that accepts it.
fn describe(e: ssh::SshError, group: &str) -> String {
    match &e {
        ssh::SshError::HostKeyChanged { host, got, .. } => {
            let name = host.rsplit_once(':').map_or(host.as_str(), |(h, _)| h);
            let name = name.trim_start_matches('[').trim_end_matches(']');
            format!("{e}; or, once verified: `wispctl accept-host-key {group} {name} {got}`")
        }
        _ => e.to_string(),
    }
}

/// One login to a group's jump host, shared by every antenna of a run (each gets its own
/// `direct-tcpip` channel on it), made again if it drops. Without it, twenty antennas at once
/// would be twenty logins to the jump host (and OpenSSH's `MaxStartups` refuses the excess).
/// A failed login is remembered for the run: the antennas queued behind it fail at once
/// instead of each trying (and timing out) in turn.
#[derive(Default)]
struct JumpLink(tokio::sync::Mutex<Option<Result<Arc<Session>, String>>>);

impl JumpLink {
    async fn get(
        &self,
        target: &Target,
        known: &KnownHosts,
        policy: HostKeyPolicy,
        group: &str,
    ) -> Result<Arc<Session>, String> {
        let mut slot = self.0.lock().await;
        match slot.as_ref() {
            Some(Ok(s)) if !s.is_closed() => return Ok(s.clone()),
            Some(Err(e)) => return Err(e.clone()),
            _ => {}
        }
        let result = Session::connect(target, known, policy)
            .await
            .map(|(s, _)| Arc::new(s))
            .map_err(|e| format!("jump host: {}", describe(e, group)));
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

/// A group as read.
pub struct GroupLive {
    desired: ConnectionString,
    /// What UISP says about the devices (`None`: no UISP server asked).
    connected: Option<UispView>,
    /// Per antenna, in file order: what it holds, or why it could not be read.
    antennas: Vec<Result<Live, String>>,
    /// The credential that worked, by host.
    credentials: BTreeMap<String, usize>,
}

/// Which devices UISP lists, by MAC and by IP, and whether each is connected (`active`).
pub struct UispView {
    name: String,
    by_mac: HashMap<String, bool>,
    by_ip: HashMap<String, bool>,
}

/// What UISP says about one antenna.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Seen {
    /// No UISP server is asked.
    NotAsked,
    /// Listed and connected.
    Connected,
    /// Listed, not connected.
    NotConnected,
    /// Not listed by its MAC nor by its address.
    Unknown,
}

fn seen(view: &Option<UispView>, a: &Antenna, live: &Live) -> Seen {
    let Some(v) = view else {
        return Seen::NotAsked;
    };
    let macs: Vec<&String> = [a.mac.as_ref(), live.board.hwaddr.as_ref()]
        .into_iter()
        .flatten()
        .collect();
    // By address only when no MAC is known: an address can be reused by another device.
    let found = if macs.is_empty() {
        v.by_ip.get(&a.host)
    } else {
        macs.iter().find_map(|m| v.by_mac.get(*m))
    };
    match found {
        Some(true) => Seen::Connected,
        Some(false) => Seen::NotConnected,
        None => Seen::Unknown,
    }
}

/// Apply one antenna (its position in the group).
pub struct Op(usize);

fn address(group: &str, host: &str) -> String {
    format!("airos.{group}[{}]", quote_key(host))
}

impl Provider for AirosProvider {
    type Observed = GroupLive;
    type Op = Op;
    type Error = AirosError;

    fn kind(&self) -> &'static str {
        "airos"
    }

    fn targets(&self) -> Vec<String> {
        self.groups.keys().cloned().collect()
    }

    fn concurrency(&self) -> usize {
        // Groups run one at a time; each bounds its own antennas.
        1
    }

    async fn observe(&self, target: &str) -> Result<Observation<GroupLive>, AirosError> {
        let group = &self.groups[target];
        let d = &group.desired;
        let refused = AirosError::Refused;
        let desired = match &d.connection {
            ConnectionSource::Given(c) => c.clone(),
            ConnectionSource::Uisp(name) => {
                let client = self.uisp_client(name).map_err(refused)?;
                let s = client.connection_string().await.map_err(|e| {
                    AirosError::Refused(format!(
                        "cannot read the connection string of UISP {name}: {e}"
                    ))
                })?;
                ConnectionString::parse(s.expose()).map_err(|e| {
                    AirosError::Refused(format!(
                        "UISP {name} gave a connection string wispctl will not write: {e}"
                    ))
                })?
            }
        };
        let connected = match &d.connected_in {
            None => None,
            Some(name) => {
                let client = self.uisp_client(name).map_err(refused)?;
                let devices = client.devices().await.map_err(|e| {
                    AirosError::Refused(format!(
                        "cannot ask UISP {name} which antennas are connected (without it, every device-specific key would look like drift): {e}"
                    ))
                })?;
                let mut view = UispView {
                    name: name.clone(),
                    by_mac: HashMap::new(),
                    by_ip: HashMap::new(),
                };
                for x in devices {
                    let active = x.status == "active";
                    if let Some(ip) = x.ip {
                        *view.by_ip.entry(ip).or_default() |= active;
                    }
                    *view.by_mac.entry(x.mac).or_default() |= active;
                }
                Some(view)
            }
        };
        let remembered = self.remembered(group);
        let sem = Arc::new(Semaphore::new(d.rollout.concurrency.max(1)));
        let done = AtomicUsize::new(0);
        let total = d.antennas.len();
        let jump = JumpLink::default();
        let reads = d.antennas.iter().map(|a| {
            let (sem, done, remembered, jump) = (sem.clone(), &done, &remembered, &jump);
            async move {
                let _permit = sem.acquire().await;
                let result = async {
                    let (session, cred) = self
                        .connect(group, a, remembered.get(&a.host).copied(), jump)
                        .await?;
                    let live = antenna::read(&session).await.map_err(|e| e.to_string());
                    session.close().await;
                    Ok::<_, String>((live?, cred))
                }
                .await;
                let n = done.fetch_add(1, Ordering::Relaxed) + 1;
                self.progress(target, "antennas read", n, total);
                result
            }
        });
        let results = futures::future::join_all(reads).await;
        jump.close().await;
        let mut credentials = BTreeMap::new();
        let mut antennas = Vec::with_capacity(total);
        let mut fingerprints = BTreeMap::new();
        for (a, r) in d.antennas.iter().zip(results) {
            match r {
                Ok((live, cred)) => {
                    credentials.insert(a.host.clone(), cred);
                    let s = seen(&connected, a, &live);
                    // UISP's view counts only when the key depends on it: an antenna on the
                    // master key stays the same object whether UISP shows it connected or not.
                    let verdict = antenna::assess(&live, &desired, s == Seen::Connected)
                        .map_or_else(
                            || "no system.cfg".to_string(),
                            |x| {
                                if x.key_differs {
                                    format!("{}\0{s:?}", x.describe())
                                } else {
                                    x.describe()
                                }
                            },
                        );
                    fingerprints.insert(
                        address(target, &a.host),
                        self.key.digest("airos", verdict.as_bytes()),
                    );
                    antennas.push(Ok(live));
                }
                Err(e) => {
                    // Stays the same while the antenna stays unreachable.
                    fingerprints.insert(address(target, &a.host), "unreadable".into());
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
            },
            fingerprints,
        })
    }

    fn diff(
        &self,
        target: &str,
        observed: &Observation<GroupLive>,
    ) -> Result<Planned<Op>, AirosError> {
        let group = &self.groups[target];
        let live = &observed.state;
        let mut items = Vec::new();
        let mut object_errors = BTreeMap::new();
        let (mut excused, mut no_running) = (0, 0);
        for (i, (a, r)) in group
            .desired
            .antennas
            .iter()
            .zip(&live.antennas)
            .enumerate()
        {
            let addr = address(target, &a.host);
            let l = match r {
                Ok(l) => l,
                Err(e) => {
                    object_errors.insert(addr, e.clone());
                    continue;
                }
            };
            if let Err(e) = antenna::check_identity(&a.host, l, a.mac.as_deref()) {
                object_errors.insert(addr, e.to_string());
                continue;
            }
            let s = seen(&live.connected, a, l);
            let Some(verdict) = antenna::assess(l, &live.desired, s == Seen::Connected) else {
                object_errors.insert(
                    addr,
                    AntennaError::NoSystemCfg {
                        host: a.host.clone(),
                    }
                    .to_string(),
                );
                continue;
            };
            no_running += usize::from(l.files.get(commands::RUNNING_CFG).is_none());
            if verdict.in_sync() {
                excused += usize::from(verdict.key_excused);
                continue;
            }
            // The URI shown is the one of the first file out of step (running.cfg can be the
            // only one: what udapi-bridge really uses).
            let before = verdict
                .files
                .iter()
                .find(|f| !f.reasons.is_empty())
                .and_then(|f| f.live_masked.clone());
            let mut fields = vec![FieldDiff::plain("uri", before, Some(live.desired.masked()))];
            if verdict.key_differs {
                // Also when the key itself was excused: the rewrite replaces it.
                fields.push(FieldDiff::sensitive("key"));
            }
            let files: Vec<&str> = verdict
                .files
                .iter()
                .filter(|f| !f.reasons.is_empty())
                .map(|f| f.file)
                .collect();
            let mut side_effects = vec![
                format!("rewrites the unms.* lines of {}", files.join(" and ")),
                "persists to flash (cfgmtd -w -p /etc/)".to_string(),
                "restarts udapi-bridge: the device reconnects to UISP".to_string(),
            ];
            if let Some(n) = &a.name {
                side_effects.insert(0, format!("antenna of {n}"));
            }
            let mut reason = verdict.describe();
            if s == Seen::Unknown && verdict.only_key_differs() {
                // Not listed at all, so not connected: a device that connects, even with a
                // device-specific key, is listed. Said, since a device UISP lists under another
                // MAC or address would be re-keyed (harmless: the master key is accepted).
                let name = live.connected.as_ref().map_or("", |v| v.name.as_str());
                reason.push_str(&format!(
                    " (UISP {name} lists no device with this MAC or address)"
                ));
            }
            items.push(Item {
                change: Change {
                    address: addr,
                    action: Action::Update,
                    reason: Some(reason),
                    fields,
                    content: None,
                    side_effects,
                },
                collection: "antenna",
                op: Op(i),
            });
        }
        let mut notes = Vec::new();
        if excused > 0 {
            notes.push(format!(
                "{excused} antenna(s) carry their own device-specific key and UISP shows them connected: in sync"
            ));
        }
        if live.connected.is_none() && !items.is_empty() {
            notes.push("no UISP server is asked which antennas are connected (connected_in): only the master key counts as in sync".into());
        }
        for w in live.desired.warnings() {
            notes.push(w);
        }
        if no_running > 0 {
            notes.push(format!(
                "{no_running} antenna(s) have no /tmp/running.cfg: udapi-bridge reads system.cfg there (a past fix may have deleted running.cfg)"
            ));
        }
        let mut secret_hashes = BTreeMap::new();
        secret_hashes.insert(
            format!("airos.{target}.connection"),
            SecretHash::of(&self.key, &live.desired.to_secret_string()),
        );
        Ok(Planned {
            items,
            notes,
            secret_hashes,
            desired_counts: BTreeMap::from([("antenna", group.desired.antennas.len())]),
            allow_empty_prune: false,
            object_errors,
        })
    }

    async fn apply(
        &self,
        target: &str,
        items: Vec<Item<Op>>,
        observed: Observation<GroupLive>,
    ) -> Vec<Outcome> {
        let group = &self.groups[target];
        let rollout = group.desired.rollout;
        let live = observed.state;
        let total = items.len();
        let canary = rollout.canary.min(total);
        let mut outcomes: Vec<Option<Outcome>> = (0..total).map(|_| None).collect();
        let learned = Mutex::new(BTreeMap::new());
        let done = AtomicUsize::new(0);
        let jump = JumpLink::default();
        let run_one = |item: &Item<Op>| {
            let a = &group.desired.antennas[item.op.0];
            let address = item.change.address.clone();
            let (learned, done, live, jump) = (&learned, &done, &live, &jump);
            async move {
                let result = async {
                    let remembered = live.credentials.get(&a.host).copied();
                    let (session, cred) = self.connect(group, a, remembered, jump).await?;
                    learned
                        .lock()
                        .unwrap_or_else(std::sync::PoisonError::into_inner)
                        .insert(a.host.clone(), cred);
                    let r = antenna::write_uri(&session, &live.desired, a.mac.as_deref()).await;
                    session.close().await;
                    r.map_err(|e| e.to_string())
                }
                .await;
                let n = done.fetch_add(1, Ordering::Relaxed) + 1;
                self.progress(target, "antennas applied", n, total);
                match result {
                    Ok(_) => Outcome::applied(&address, Action::Update),
                    Err(e) => Outcome::failed(&address, Action::Update, e),
                }
            }
        };

        // Wave 1: the canary. Every one must verify before any other antenna is touched.
        let sem = Semaphore::new(rollout.concurrency.max(1));
        let wave = |range: std::ops::Range<usize>, stop_after: Option<usize>| {
            let (sem, run_one, items) = (&sem, &run_one, &items);
            let failures = AtomicUsize::new(0);
            async move {
                let jobs = range.map(|i| {
                    let failures = &failures;
                    async move {
                        let _permit = sem.acquire().await;
                        if let Some(max) = stop_after {
                            let f = failures.load(Ordering::SeqCst);
                            if f > max {
                                return (
                                    i,
                                    Outcome::skipped(
                                        &items[i].change.address,
                                        Action::Update,
                                        format!(
                                            "rollout stopped: {f} antenna(s) failed (rollout.max_failures is {max})"
                                        ),
                                    ),
                                );
                            }
                        }
                        let o = run_one(&items[i]).await;
                        if o.status == crate::plan::report::Status::Failed {
                            failures.fetch_add(1, Ordering::SeqCst);
                        }
                        (i, o)
                    }
                });
                futures::future::join_all(jobs).await
            }
        };
        for (i, o) in wave(0..canary, None).await {
            outcomes[i] = Some(o);
        }
        let canary_failed = outcomes[..canary]
            .iter()
            .flatten()
            .filter(|o| o.status != crate::plan::report::Status::Applied)
            .count();
        if canary_failed > 0 {
            for (i, item) in items.iter().enumerate().skip(canary) {
                outcomes[i] = Some(Outcome::skipped(
                    &item.change.address,
                    Action::Update,
                    format!(
                        "the canary wave failed ({canary_failed} of {canary} antennas): rollout stopped"
                    ),
                ));
            }
        } else {
            for (i, o) in wave(canary..total, Some(rollout.max_failures)).await {
                outcomes[i] = Some(o);
            }
        }
        jump.close().await;
        // What observe learned too: a plan writes nothing, so this is where it is kept.
        let mut learned = learned
            .into_inner()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        for (host, cred) in &live.credentials {
            learned.entry(host.clone()).or_insert(*cred);
        }
        self.remember(group, target, &learned);
        outcomes.into_iter().flatten().collect()
    }
}
