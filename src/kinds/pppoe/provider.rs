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
use crate::engine::early::EarlyReads;
use crate::engine::{Context, Item, NoTwin, Observation, Planned, Provider};
use crate::kinds::def::KindDef;
use crate::plan::report::Outcome;
use crate::plan::target_address;
use crate::secret::HashKey;

/// Where a router is reached: its own address (`None`), a stand-in's, or nowhere.
type Route = Result<Option<SocketAddr>, NoTwin>;

/// One router: its settings, its desired state, and where it is reached.
struct Target {
    router: Router,
    desired: Arc<PppoeDesired>,
    route: Route,
}

/// The pppoe provider.
pub struct PppoeProvider {
    routers: BTreeMap<String, Target>,
    key: Arc<HashKey>,
    state: StateDir,
    early: Arc<EarlyReads>,
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
                    desired: Arc::new(d.clone()),
                    route: ctx.route::<SocketAddr>(super::Kind::SECTION, name),
                };
                (name.clone(), target)
            })
            .collect();
        PppoeProvider {
            routers,
            key: ctx.key.clone(),
            state: StateDir::new(ctx.state_dir.join(super::Kind::NAME)),
            early: ctx.early.clone(),
        }
    }
}

/// Connects to a router, logs in and reads it (see [`read_router`]): what `observe` needs
/// besides the desired state and the state folder, so it may begin before the desired state
/// is loaded ([`begin_early_read`]).
async fn read_live(name: &str, router: &Router, route: Route) -> Result<RouterLive, PppoeError> {
    let mut conn = connect(name, router, route?).await?;
    let live = read_router(&mut conn)
        .await
        .map_err(|source| PppoeError::Api {
            router: name.to_string(),
            source,
        })?;
    tracing::debug!(
        router = name,
        secrets = live.secrets.len(),
        round_trips = conn.round_trips(),
        "observed router"
    );
    Ok(live)
}

/// Begins reading router `name` for `plan` or `drift` before the desired state is loaded,
/// within the router's observe deadline from now; the provider's `observe` takes the read
/// ([`crate::engine::early`]).
pub fn begin_early_read(name: &str, router: &Router, ctx: &Context) {
    let route = ctx.route::<SocketAddr>(super::Kind::SECTION, name);
    let (name, router) = (name.to_string(), router.clone());
    let deadline = router.deadline.observe;
    ctx.early.begin(
        target_address(super::Kind::NAME, &name),
        deadline,
        async move { read_live(&name, &router, route).await },
    );
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
        let early = self
            .early
            .take::<Result<RouterLive, PppoeError>>(&target_address(super::Kind::NAME, router));
        let mut live = match early {
            Some(read) => {
                tracing::debug!(
                    router,
                    "taking the read begun while the desired state loaded"
                );
                read.await.map_err(|failure| PppoeError::Early {
                    router: router.to_string(),
                    failure,
                })??
            }
            None => read_live(router, &t.router, t.route.clone()).await?,
        };
        let RouterState {
            passwords,
            pending_kicks,
        } = self.state.read(router);
        live.applied = passwords;
        live.pending_kicks = pending_kicks;
        // Thousands of keyed hashes: on the blocking pool, so that routers read at once are
        // fingerprinted on several cores.
        let (desired, key, name) = (t.desired.clone(), self.key.clone(), router.to_string());
        let (fingerprints, live) = tokio::task::spawn_blocking(move || {
            (fingerprints(&name, &desired, &live.secrets, &key), live)
        })
        .await
        .map_err(|e| PppoeError::Internal {
            router: router.to_string(),
            reason: format!("fingerprints: {e}"),
        })?;
        Ok(Observation {
            fingerprints,
            state: live,
        })
    }

    fn snapshot_form(&self, router: &str, live: &RouterLive) -> Option<serde_json::Value> {
        let t = &self.routers[router];
        Some(super::snapshot::to_value(
            router, live, &t.desired, &self.key,
        ))
    }

    fn restore_snapshot(&self, router: &str, v: serde_json::Value) -> Result<RouterLive, String> {
        let t = &self.routers[router];
        super::snapshot::from_value(router, v, &t.desired, &self.key)
    }

    fn diff(&self, router: &str, obs: &Observation<RouterLive>) -> Result<Planned<Op>, PppoeError> {
        let t = &self.routers[router];
        let planned = diff_router(router, &t.desired, &obs.state, &self.key)?;
        let disconnects: usize = planned.items.iter().map(|i| i.op.kick().len()).sum();
        if let Some(cap) = t.router.max_disconnects
            && disconnects > cap
        {
            return Err(PppoeError::OverRouterCap {
                router: router.to_string(),
                disconnects,
                cap,
            });
        }
        let sessions: Vec<usize> = planned
            .items
            .iter()
            .map(|i| i.op.kick().len())
            .filter(|&n| n > 0)
            .collect();
        if !sessions.is_empty() {
            let rollout = t.desired.kick_rollout;
            let waves = super::apply::kick_waves(&sessions, rollout.map(|r| r.batch)).len();
            let pauses = rollout.map_or(std::time::Duration::ZERO, |r| {
                r.pause
                    .saturating_mul(u32::try_from(waves.saturating_sub(1)).unwrap_or(u32::MAX))
            });
            let waits = pauses.saturating_add(t.desired.redial_wait.unwrap_or_default());
            if !waits.is_zero() && waits >= t.router.deadline.apply {
                return Err(PppoeError::WavesOverDeadline {
                    router: router.to_string(),
                    waves,
                    pauses: waits,
                    deadline: t.router.deadline.apply,
                });
            }
        }
        Ok(planned)
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
        super::apply::apply(
            router,
            &t.router,
            &t.route,
            items,
            super::apply::Kicks {
                rollout: t.desired.kick_rollout,
                redial_wait: t.desired.redial_wait,
                deadline: t.router.deadline.apply,
            },
            &self.key,
            &self.state,
        )
        .await
    }
}
