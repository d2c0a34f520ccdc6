//! The engine's [`Provider`] for pppoe: which routers, and for each one [`observe`](super::observe)
//! (connect, one bulk read, the state file, fingerprints), [`diff`](super::diff) and
//! [`apply`](super::apply). Glue only: every decision is made in those modules.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;

use super::PppoeError;
use super::client::connect;
use super::diff::{Op, diff_router};
use super::observe::{RouterLive, fingerprints, read_router};
use super::spec::{PppoeDesired, Router};
use super::state::{RouterState, StateDir};
use crate::engine::{Context, Item, NoTwin, Observation, Planned, Provider};
use crate::kinds::def::KindDef;
use crate::plan::report::Outcome;
use crate::secret::HashKey;

/// Where a router is reached: its own address (`None`), a stand-in's, or nowhere.
type Route = Result<Option<SocketAddr>, NoTwin>;

/// One router: its settings, its desired state, and where it is reached.
struct Target {
    router: Router,
    desired: PppoeDesired,
    route: Route,
}

/// The pppoe provider.
pub struct PppoeProvider {
    routers: BTreeMap<String, Target>,
    key: Arc<HashKey>,
    state: StateDir,
}

impl PppoeProvider {
    /// Builds the provider for every router with a pppoe file. A router is reached at its
    /// inventory address unless the context reaches it elsewhere (a lab twin).
    pub fn new(
        routers: &BTreeMap<String, Router>,
        desired: &BTreeMap<String, PppoeDesired>,
        ctx: &Context,
    ) -> Self {
        let routers = desired
            .iter()
            .map(|(name, d)| {
                let target = Target {
                    router: routers[name].clone(),
                    desired: d.clone(),
                    route: ctx.route::<SocketAddr>(super::Kind::SECTION, name),
                };
                (name.clone(), target)
            })
            .collect();
        PppoeProvider {
            routers,
            key: ctx.key.clone(),
            state: StateDir::new(ctx.state_dir.join(super::Kind::NAME)),
        }
    }
}

impl Provider for PppoeProvider {
    type Observed = RouterLive;
    type Op = Op;
    type Error = PppoeError;

    fn kind(&self) -> &'static str {
        super::Kind::NAME
    }

    fn targets(&self) -> Vec<String> {
        self.routers.keys().cloned().collect()
    }

    fn deadline(&self, router: &str) -> crate::engine::Deadline {
        self.routers
            .get(router)
            .map_or(super::spec::DEADLINE, |t| t.router.deadline)
    }

    async fn observe(&self, router: &str) -> Result<Observation<RouterLive>, PppoeError> {
        let t = &self.routers[router];
        let addr = t.route.clone()?;
        let mut conn = connect(router, &t.router, addr).await?;
        let mut live = read_router(&mut conn)
            .await
            .map_err(|source| PppoeError::Api {
                router: router.to_string(),
                source,
            })?;
        tracing::debug!(
            router,
            secrets = live.secrets.len(),
            round_trips = conn.round_trips(),
            "observed router"
        );
        let RouterState {
            passwords,
            pending_kicks,
        } = self.state.read(router);
        live.applied = passwords;
        live.pending_kicks = pending_kicks;
        Ok(Observation {
            fingerprints: fingerprints(router, &t.desired, &live.secrets, &self.key),
            state: live,
        })
    }

    fn diff(&self, router: &str, obs: &Observation<RouterLive>) -> Result<Planned<Op>, PppoeError> {
        diff_router(router, &self.routers[router].desired, &obs.state, &self.key)
    }

    /// Nothing to change: only the state folder is tidied (temporary files a killed apply
    /// left).
    async fn keep(&self, router: &str, _obs: Observation<RouterLive>) {
        self.state.sweep(router);
    }

    async fn apply(
        &self,
        router: &str,
        items: Vec<Item<Op>>,
        _obs: Observation<RouterLive>,
    ) -> Vec<Outcome> {
        let t = &self.routers[router];
        super::apply::apply(router, &t.router, &t.route, items, &self.key, &self.state).await
    }
}
