//! The uisp provider: the engine's view of one kind over many UISP servers. It only connects
//! the parts: [`super::observe`] reads, [`super::diff`] plans, [`super::apply`] writes.

use std::collections::BTreeMap;
use std::sync::Arc;

use super::UispKindError;
use super::diff::{Op, diff_server};
use super::observe::{UispLive, fingerprints, read};
use super::spec::UispDesired;
use crate::engine::{Context, Item, Observation, Planned, Provider};
use crate::kinds::def::KindDef;
use crate::plan::report::Outcome;
use crate::secret::HashKey;
use crate::uisp_api::client::{UispClient, UispError};
use crate::uisp_api::{self, Server};

/// The UISP provider.
pub struct UispProvider {
    servers: BTreeMap<String, (Server, UispDesired)>,
    key: Arc<HashKey>,
    ctx: Context,
}

impl UispProvider {
    /// Builds the provider for every server with a uisp file.
    pub fn new(
        servers: &BTreeMap<String, Server>,
        desired: &BTreeMap<String, UispDesired>,
        ctx: &Context,
    ) -> Self {
        let servers = desired
            .iter()
            .map(|(name, d)| (name.clone(), (servers[name].clone(), d.clone())))
            .collect();
        UispProvider {
            servers,
            key: ctx.key.clone(),
            ctx: ctx.clone(),
        }
    }

    fn client(&self, name: &str) -> Result<UispClient, UispError> {
        let (server, _) = &self.servers[name];
        uisp_api::client(&self.ctx, name, server)
    }
}

impl Provider for UispProvider {
    type Observed = UispLive;
    type Op = Op;
    type Error = UispKindError;

    fn kind(&self) -> &'static str {
        <super::Kind as KindDef>::NAME
    }

    fn targets(&self) -> Vec<String> {
        self.servers.keys().cloned().collect()
    }

    fn deadline(&self, name: &str) -> crate::engine::Deadline {
        self.servers
            .get(name)
            .map_or(crate::uisp_api::DEADLINE, |(s, _)| s.deadline)
    }

    async fn observe(&self, name: &str) -> Result<Observation<UispLive>, UispKindError> {
        let api = |source: UispError| UispKindError::Api {
            server: name.to_string(),
            source,
        };
        let client = self.client(name).map_err(api)?;
        let live = read(&client).await.map_err(api)?;
        let (_, desired) = &self.servers[name];
        tracing::debug!(
            server = name,
            sites = live.sites.len(),
            devices = live.devices.len(),
            "observed UISP"
        );
        Ok(Observation {
            fingerprints: fingerprints(name, desired, &live, &self.key),
            state: live,
        })
    }

    fn snapshot_form(&self, _name: &str, live: &UispLive) -> Option<serde_json::Value> {
        Some(super::snapshot::to_value(live))
    }

    fn restore_snapshot(&self, _name: &str, v: serde_json::Value) -> Result<UispLive, String> {
        super::snapshot::from_value(v)
    }

    fn diff(&self, name: &str, obs: &Observation<UispLive>) -> Result<Planned<Op>, UispKindError> {
        let (_, desired) = &self.servers[name];
        diff_server(name, desired, &obs.state)
    }

    async fn apply(
        &self,
        name: &str,
        items: Vec<Item<Op>>,
        obs: Observation<UispLive>,
    ) -> Vec<Outcome> {
        match self.client(name) {
            Ok(client) => super::apply::apply_server(&client, items, obs.state).await,
            Err(e) => items
                .iter()
                .map(|i| Outcome::failed(&i.change.address, i.change.action, e.to_string()))
                .collect(),
        }
    }
}
