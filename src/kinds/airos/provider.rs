//! The airos provider: what the engine runs for this kind. It holds each group's settings and
//! what one run shares across observe and apply (the known-hosts tables, with the keys trusted
//! on first use in memory; the UISP servers), and hands the work to [`super::observe`],
//! [`super::diff`] and [`super::apply`].

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::Mutex;

use super::AirosError;
use super::apply;
use super::diff::{self, Op};
use super::login::{Login, known_hosts_path};
use super::observe::{self, GroupLive};
use super::spec::{AirosDesired, AntennaGroup, GroupEndpoints};
use crate::engine::{Context, Event, Item, NoTwin, Observation, Planned, Provider};
use crate::kinds::def::KindDef;
use crate::plan::report::Outcome;
use crate::ssh::{HostKeyPolicy, KnownHosts};
use crate::uisp_api::{self, Server, UispClient};

/// One antenna group with an airos file: how it is reached and what it must carry.
pub(super) struct Group {
    /// The group's name.
    pub(super) name: String,
    /// How its antennas are logged in to (`antenna_groups.NAME`).
    pub(super) ssh: AntennaGroup,
    /// `airos/NAME.yaml`.
    pub(super) desired: AirosDesired,
    /// Where the group's antennas are reached instead of their hosts (a lab fleet), or why
    /// they cannot be.
    pub(super) endpoints: Result<Option<GroupEndpoints>, NoTwin>,
}

/// The airOS provider.
pub struct AirosProvider {
    groups: BTreeMap<String, Group>,
    uisp: BTreeMap<String, Server>,
    pub(super) ctx: Context,
    /// Known-hosts tables by file, loaded once per run: apply's sessions trust what observe's
    /// trusted on first use.
    known: Mutex<HashMap<PathBuf, KnownHosts>>,
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
                let group = Group {
                    name: name.clone(),
                    ssh: groups[name].clone(),
                    desired: d.clone(),
                    endpoints: ctx.route::<GroupEndpoints>(super::Kind::SECTION, name),
                };
                (name.clone(), group)
            })
            .collect();
        AirosProvider {
            groups,
            uisp,
            ctx: ctx.clone(),
            known: Mutex::new(HashMap::new()),
        }
    }

    /// A client for UISP server `name`, reached where the context says.
    pub(super) fn uisp_client(&self, name: &str) -> Result<UispClient, AirosError> {
        let server = self.uisp.get(name).ok_or_else(|| AirosError::UnknownUisp {
            server: name.to_string(),
        })?;
        uisp_api::client(&self.ctx, name, server).map_err(|source| AirosError::UispSetup {
            server: name.to_string(),
            source,
        })
    }

    /// How the group's antennas are logged in to in this run. Reads the known-hosts file
    /// (once per run); writes nothing.
    pub(super) fn login<'a>(&self, group: &'a Group) -> Result<Login<'a>, AirosError> {
        let endpoints = group.endpoints.as_ref().map_err(Clone::clone)?.as_ref();
        let path = known_hosts_path(
            group.ssh.known_hosts.as_deref(),
            endpoints,
            &self.ctx.state_dir,
        );
        let known = {
            let mut tables = self
                .known
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            match tables.get(&path) {
                Some(k) => k.clone(),
                None => {
                    let k = KnownHosts::load(&path).map_err(|source| AirosError::KnownHosts {
                        group: group.name.clone(),
                        source,
                    })?;
                    tables.insert(path, k.clone());
                    k
                }
            }
        };
        let policy = if self.ctx.trust_new_host_keys {
            HostKeyPolicy::TrustOnFirstUse
        } else {
            HostKeyPolicy::Strict
        };
        Login::new(&group.name, &group.ssh, endpoints, known, policy)
    }

    /// Progress inside a group (`antennas read`, `antennas applied`).
    pub(super) fn progress(&self, group: &str, what: &'static str, done: usize, total: usize) {
        self.ctx.events.send(Event::Progress {
            address: format!("{}.{group}", super::Kind::NAME),
            what,
            done,
            total,
        });
    }
}

impl Provider for AirosProvider {
    type Observed = GroupLive;
    type Op = Op;
    type Error = AirosError;

    fn kind(&self) -> &'static str {
        super::Kind::NAME
    }

    fn targets(&self) -> Vec<String> {
        self.groups.keys().cloned().collect()
    }

    fn concurrency(&self) -> usize {
        // Groups run one at a time; each bounds its own antennas.
        1
    }

    fn deadline(&self, group: &str) -> crate::engine::Deadline {
        self.groups
            .get(group)
            .map_or(super::spec::DEADLINE, |g| g.ssh.deadline)
    }

    async fn observe(&self, target: &str) -> Result<Observation<GroupLive>, AirosError> {
        observe::group(self, &self.groups[target]).await
    }

    fn snapshot_form(&self, target: &str, live: &GroupLive) -> Option<serde_json::Value> {
        let group = &self.groups[target].desired;
        let hosts: Vec<&str> = group.antennas.iter().map(|a| a.host.as_str()).collect();
        let from_uisp = matches!(group.connection, super::spec::ConnectionSource::Uisp(_));
        match super::snapshot::to_value(live, &hosts, from_uisp, &self.ctx.key) {
            Ok(v) => Some(v),
            Err(e) => {
                tracing::warn!("cannot keep the antenna group in a snapshot: {e}");
                None
            }
        }
    }

    fn restore_snapshot(&self, target: &str, v: serde_json::Value) -> Result<GroupLive, String> {
        let given = match &self.groups[target].desired.connection {
            super::spec::ConnectionSource::Given(c) => Some(c),
            super::spec::ConnectionSource::Uisp(_) => None,
            super::spec::ConnectionSource::Unresolved => {
                return Err(super::AirosError::UnresolvedConnectionString.to_string());
            }
        };
        let hosts: Vec<&str> = self.groups[target]
            .desired
            .antennas
            .iter()
            .map(|a| a.host.as_str())
            .collect();
        super::snapshot::from_value(v, &hosts, given, &self.ctx.key)
    }

    fn diff(
        &self,
        target: &str,
        observed: &Observation<GroupLive>,
    ) -> Result<Planned<Op>, AirosError> {
        let group = &self.groups[target];
        Ok(diff::group(
            target,
            &group.desired.antennas,
            &observed.state,
            &self.ctx.key,
        ))
    }

    async fn apply(
        &self,
        target: &str,
        items: Vec<Item<Op>>,
        observed: Observation<GroupLive>,
    ) -> Vec<Outcome> {
        apply::group(self, &self.groups[target], items, observed.state).await
    }

    async fn keep(&self, target: &str, observed: Observation<GroupLive>) {
        apply::keep_observed(self, &self.groups[target], &observed.state);
    }
}
