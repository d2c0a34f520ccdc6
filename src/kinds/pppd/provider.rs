//! The engine's glue for the pppd kind: which hosts, where each host's files are, and
//! observe → diff → apply over [`super::observe`], [`super::diff`] and [`super::apply`]. Holds
//! no logic of its own.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::client::HostFiles;
use super::observe::{HostLive, fingerprints};
use super::spec::{HostSpec, PppdDesired};
use super::{Op, PppdError};
use crate::engine::{Context, Deadline, Item, NoTwin, Observation, Planned, Provider};

/// A host's files are local: a minute to read, five to write, unless its `deadline:` says.
const DEADLINE: Deadline = Deadline::secs(60, 300);
use crate::kinds::def::KindDef;
use crate::plan::report::Outcome;
use crate::secret::HashKey;

/// The pppd provider for every host with a pppd file.
pub struct PppdProvider {
    hosts: BTreeMap<String, (PppdDesired, Result<PathBuf, NoTwin>)>,
    deadlines: BTreeMap<String, Deadline>,
    key: Arc<HashKey>,
}

impl PppdProvider {
    /// Builds the provider. A host's root is its inventory `root` (relative to the
    /// desired-state folder), unless the context reaches it elsewhere (a lab twin's folder).
    pub fn new(
        hosts: &BTreeMap<String, HostSpec>,
        desired: &BTreeMap<String, PppdDesired>,
        desired_root: &Path,
        ctx: &Context,
    ) -> Self {
        let deadlines = desired
            .keys()
            .map(|name| (name.clone(), hosts[name].deadline.over(DEADLINE)))
            .collect();
        let hosts = desired
            .iter()
            .map(|(name, d)| {
                let root = ctx
                    .route::<PathBuf>(super::Kind::SECTION, name)
                    .map(|twin| twin.unwrap_or_else(|| desired_root.join(&hosts[name].root)));
                (name.clone(), (d.clone(), root))
            })
            .collect();
        PppdProvider {
            hosts,
            deadlines,
            key: ctx.key.clone(),
        }
    }
}

impl Provider for PppdProvider {
    type Observed = HostLive;
    type Op = Op;
    type Error = PppdError;

    fn kind(&self) -> &'static str {
        super::Kind::NAME
    }

    fn targets(&self) -> Vec<String> {
        self.hosts.keys().cloned().collect()
    }

    fn deadline(&self, host: &str) -> Deadline {
        self.deadlines.get(host).copied().unwrap_or(DEADLINE)
    }

    async fn observe(&self, host: &str) -> Result<Observation<HostLive>, PppdError> {
        let (desired, root) = &self.hosts[host];
        let root = root.as_ref().map_err(|e| PppdError::NoTwin(e.clone()))?;
        let live = HostLive::read(&HostFiles::new(root))?;
        let fingerprints = fingerprints(host, desired, &live, &self.key);
        tracing::debug!(host, peers = live.peers.len(), "observed pppd host");
        Ok(Observation {
            state: live,
            fingerprints,
        })
    }

    fn snapshot_form(&self, host: &str, live: &HostLive) -> Option<serde_json::Value> {
        let (desired, _) = &self.hosts[host];
        Some(super::snapshot::to_value(live, desired, &self.key))
    }

    fn restore_snapshot(&self, host: &str, v: serde_json::Value) -> Result<HostLive, String> {
        let (desired, _) = &self.hosts[host];
        super::snapshot::from_value(host, v, desired, &self.key)
    }

    fn diff(&self, host: &str, obs: &Observation<HostLive>) -> Result<Planned<Op>, PppdError> {
        let (desired, _) = &self.hosts[host];
        super::diff::diff_host(host, desired, &obs.state, &self.key)
    }

    async fn apply(
        &self,
        host: &str,
        items: Vec<Item<Op>>,
        obs: Observation<HostLive>,
    ) -> Vec<Outcome> {
        super::apply::apply_host(host, items, obs.state).await
    }
}
