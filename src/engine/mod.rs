//! Observe → diff → plan → apply, for every kind, concurrently and bounded.
//!
//! A [`Provider`] answers four questions for its kind: which targets, how to read one
//! (`observe`, once per target per run), what differs (`diff`, pure), and how to change it
//! (`apply`). The engine owns everything that must be the same for all kinds: ordering
//! (creates and updates before deletes), the guards (delete cap, empty desired set), the
//! stale-plan checks of a saved plan, and per-target isolation (one target's failure never
//! stops another).
//!
//! What the engine does not do: talk to devices, or know any kind's fields.

pub mod lock;

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use tokio::sync::Semaphore;
use tokio::task::JoinSet;

use crate::plan::report::{ApplyReport, Outcome, TargetReport};
use crate::plan::{Action, Change, FORMAT_VERSION, Plan, Summary, TargetPlan};
use crate::secret::SecretHash;

/// A boxed, sendable future.
pub type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send + 'static>>;

/// A target could not be read, diffed or written.
#[derive(Debug, thiserror::Error)]
pub enum ProviderError {
    /// A file or connection failed.
    #[error("{what}: {source}")]
    Io {
        /// What was being done, naming the file or device.
        what: String,
        /// The cause.
        source: std::io::Error,
    },
    /// The live state is such that wispctl must not touch it (a broken managed block,
    /// duplicate entries).
    #[error("{0}")]
    Refused(String),
}

/// A target's live state and the fingerprint of every object in it.
pub struct Observation<O> {
    /// Provider-specific live state.
    pub state: O,
    /// Keyed hash per resource address; `absent` for desired objects that are not there.
    pub fingerprints: BTreeMap<String, String>,
}

/// One planned change and the provider's own instruction for it.
pub struct Item<Op> {
    /// What the plan shows.
    pub change: Change,
    /// The collection it belongs to (`peer`, `chap`), for the empty-set guard.
    pub collection: &'static str,
    /// What apply does.
    pub op: Op,
}

/// The result of a diff.
pub struct Planned<Op> {
    /// Changes, in any order (the engine sorts them).
    pub items: Vec<Item<Op>>,
    /// Notes for the operator.
    pub notes: Vec<String>,
    /// Keyed hash of every desired secret, by `address.field`.
    pub secret_hashes: BTreeMap<String, SecretHash>,
    /// How many objects the YAML declares, per collection.
    pub desired_counts: BTreeMap<&'static str, usize>,
    /// The YAML explicitly allows an empty list to prune everything.
    pub allow_empty_prune: bool,
    /// Objects that could not be read, by address (see `TargetPlan::object_errors`).
    pub object_errors: BTreeMap<String, String>,
}

/// One resource kind.
///
/// # Warning
/// `diff` must be pure (no I/O): plans, drift and the property tests rely on it. `apply`
/// receives the items already ordered and guarded; it must verify what it wrote and report
/// every item as applied or failed.
pub trait Provider: Send + Sync + 'static {
    /// Live state of one target.
    type Observed: Send + Sync + 'static;
    /// One apply instruction.
    type Op: Send + 'static;
    /// The kind's name, first part of every address (`pppd`).
    fn kind(&self) -> &'static str;
    /// Names of the targets with desired state.
    fn targets(&self) -> Vec<String>;
    /// How many targets of this kind to read or write at once.
    fn concurrency(&self) -> usize {
        8
    }
    /// Reads a target once.
    fn observe(
        &self,
        target: &str,
    ) -> impl Future<Output = Result<Observation<Self::Observed>, ProviderError>> + Send;
    /// Compares desired with observed. Pure.
    fn diff(
        &self,
        target: &str,
        observed: &Observation<Self::Observed>,
    ) -> Result<Planned<Self::Op>, ProviderError>;
    /// Makes the changes and verifies them.
    fn apply(
        &self,
        target: &str,
        items: Vec<Item<Self::Op>>,
        observed: Observation<Self::Observed>,
    ) -> impl Future<Output = Vec<Outcome>> + Send;
}

/// A provider with its types erased, so that kinds of every shape run side by side.
pub trait Kind: Send + Sync {
    /// Observes and diffs every matching target.
    fn plan_targets(self: Arc<Self>, filter: Arc<TargetFilter>) -> BoxFuture<Vec<PlannedTarget>>;
}

/// Wraps a provider for the engine.
pub fn kind<P: Provider>(p: P) -> Arc<dyn Kind> {
    Arc::new(Runner(Arc::new(p)))
}

struct Runner<P>(Arc<P>);

/// A target's plan and, when it has changes, what applying it takes.
pub struct PlannedTarget {
    plan: TargetPlan,
    pending: Option<Box<dyn PendingApply>>,
}

trait PendingApply: Send {
    fn run(self: Box<Self>) -> BoxFuture<Vec<Outcome>>;
}

struct Pending<P: Provider> {
    provider: Arc<P>,
    target: String,
    items: Vec<Item<P::Op>>,
    observed: Observation<P::Observed>,
}

impl<P: Provider> PendingApply for Pending<P> {
    fn run(self: Box<Self>) -> BoxFuture<Vec<Outcome>> {
        Box::pin(async move {
            let Pending {
                provider,
                target,
                items,
                observed,
            } = *self;
            provider.apply(&target, items, observed).await
        })
    }
}

impl<P: Provider> Kind for Runner<P> {
    fn plan_targets(self: Arc<Self>, filter: Arc<TargetFilter>) -> BoxFuture<Vec<PlannedTarget>> {
        Box::pin(async move {
            let p = self.0.clone();
            let kind = p.kind();
            let sem = Arc::new(Semaphore::new(p.concurrency().max(1)));
            let mut set = JoinSet::new();
            let mut names = HashMap::new();
            let targets: Vec<String> = p
                .targets()
                .into_iter()
                .filter(|t| filter.matches(&format!("{kind}.{t}")))
                .collect();
            for (i, t) in targets.iter().enumerate() {
                let (p, sem, t2) = (p.clone(), sem.clone(), t.clone());
                let handle = set.spawn(async move {
                    let _permit = sem.acquire_owned().await;
                    (i, plan_target(p, t2).await)
                });
                names.insert(handle.id(), (i, t.clone()));
            }
            let mut out: Vec<(usize, PlannedTarget)> = Vec::new();
            while let Some(res) = set.join_next_with_id().await {
                match res {
                    Ok((_, (i, pt))) => out.push((i, pt)),
                    Err(e) => {
                        let (i, t) = names[&e.id()].clone();
                        let mut tp = empty_target(kind, &t);
                        tp.error = Some(format!("internal error while planning: {e}"));
                        out.push((
                            i,
                            PlannedTarget {
                                plan: tp,
                                pending: None,
                            },
                        ));
                    }
                }
            }
            out.sort_by_key(|(i, _)| *i);
            out.into_iter().map(|(_, pt)| pt).collect()
        })
    }
}

fn empty_target(kind: &str, name: &str) -> TargetPlan {
    TargetPlan {
        address: format!("{kind}.{name}"),
        kind: kind.into(),
        name: name.into(),
        error: None,
        refusal: None,
        changes: Vec::new(),
        notes: Vec::new(),
        fingerprints: BTreeMap::new(),
        secret_hashes: BTreeMap::new(),
        object_errors: BTreeMap::new(),
    }
}

async fn plan_target<P: Provider>(p: Arc<P>, target: String) -> PlannedTarget {
    let mut tp = empty_target(p.kind(), &target);
    let observed = match p.observe(&target).await {
        Ok(o) => o,
        Err(e) => {
            tracing::warn!(target = %tp.address, "observe failed: {e}");
            tp.error = Some(format!("cannot read target: {e}"));
            return PlannedTarget {
                plan: tp,
                pending: None,
            };
        }
    };
    tp.fingerprints = observed.fingerprints.clone();
    let planned = match p.diff(&target, &observed) {
        Ok(x) => x,
        Err(e) => {
            tp.error = Some(e.to_string());
            return PlannedTarget {
                plan: tp,
                pending: None,
            };
        }
    };
    let mut items = planned.items;
    items.sort_by_key(|i| i.change.action);
    tp.changes = items.iter().map(|i| i.change.clone()).collect();
    tp.notes = planned.notes;
    tp.secret_hashes = planned.secret_hashes;
    tp.object_errors = planned.object_errors;
    if !planned.allow_empty_prune {
        let mut emptied: BTreeMap<&str, usize> = BTreeMap::new();
        for i in items.iter().filter(|i| i.change.action == Action::Delete) {
            if planned
                .desired_counts
                .get(i.collection)
                .copied()
                .unwrap_or(0)
                == 0
            {
                *emptied.entry(i.collection).or_default() += 1;
            }
        }
        if !emptied.is_empty() {
            let what: Vec<String> = emptied
                .iter()
                .map(|(c, n)| format!("{n} {c}(s) with an empty desired {c} list"))
                .collect();
            tp.refusal = Some(format!(
                "guard: apply would delete {}; an empty list never prunes everything (a truncated file must not wipe a target). Set allow_empty_prune: true in the file if this is meant",
                what.join(" and ")
            ));
        }
    }
    tracing::debug!(target = %tp.address, changes = tp.changes.len(), "planned");
    let pending = (!items.is_empty()).then(|| {
        Box::new(Pending {
            provider: p,
            target,
            items,
            observed,
        }) as Box<dyn PendingApply>
    });
    PlannedTarget { plan: tp, pending }
}

/// Which targets a run covers: `--target GLOB` matched against `kind.name` (or `name`).
#[derive(Debug, Clone, Default)]
pub struct TargetFilter(Vec<glob::Pattern>);

impl TargetFilter {
    /// Parses globs; an empty list matches everything.
    pub fn new(globs: &[String]) -> Result<Self, glob::PatternError> {
        Ok(TargetFilter(
            globs
                .iter()
                .map(|g| glob::Pattern::new(g))
                .collect::<Result<_, _>>()?,
        ))
    }

    /// Whether a target address matches.
    pub fn matches(&self, address: &str) -> bool {
        let name = address.split_once('.').map_or(address, |(_, n)| n);
        self.0.is_empty() || self.0.iter().any(|p| p.matches(address) || p.matches(name))
    }
}

/// A plan and, kept in memory, what applying it takes.
pub struct PlannedRun {
    /// The plan every output is rendered from.
    pub plan: Plan,
    pending: BTreeMap<String, Box<dyn PendingApply>>,
}

/// Settings of one run.
pub struct Engine {
    kinds: Vec<Arc<dyn Kind>>,
    filter: Arc<TargetFilter>,
    max_deletes: usize,
    desired_digest: String,
    hash_key_id: String,
}

impl Engine {
    /// An engine over some kinds.
    pub fn new(
        kinds: Vec<Arc<dyn Kind>>,
        filter: TargetFilter,
        max_deletes: usize,
        desired_digest: String,
        hash_key_id: String,
    ) -> Self {
        Engine {
            kinds,
            filter: Arc::new(filter),
            max_deletes,
            desired_digest,
            hash_key_id,
        }
    }

    /// Observes every target once and plans. Never writes.
    pub async fn plan(&self) -> PlannedRun {
        let mut set = JoinSet::new();
        for (i, k) in self.kinds.iter().enumerate() {
            let (k, f) = (k.clone(), self.filter.clone());
            set.spawn(async move { (i, k.plan_targets(f).await) });
        }
        let mut by_kind = Vec::new();
        while let Some(res) = set.join_next().await {
            by_kind.push(res.expect("planning tasks catch their own panics"));
        }
        by_kind.sort_by_key(|(i, _)| *i);
        let mut targets = Vec::new();
        let mut pending = BTreeMap::new();
        for pt in by_kind.into_iter().flat_map(|(_, v)| v) {
            if let Some(p) = pt.pending {
                pending.insert(pt.plan.address.clone(), p);
            }
            targets.push(pt.plan);
        }
        let summary = Summary::of(&targets);
        let refusal = (summary.destroy > self.max_deletes).then(|| {
            format!(
                "guard: {} deletes exceed the cap of {} per run; nothing will be applied. Raise guards.max_deletes in inventory.yaml or pass --max-deletes if the deletes are meant",
                summary.destroy, self.max_deletes
            )
        });
        let plan = Plan {
            format_version: FORMAT_VERSION,
            wispctl_version: env!("CARGO_PKG_VERSION").into(),
            created_at: humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string(),
            desired_digest: self.desired_digest.clone(),
            hash_key_id: self.hash_key_id.clone(),
            refusal,
            targets,
            summary,
        };
        PlannedRun { plan, pending }
    }
}

impl PlannedRun {
    /// Applies every target that no guard, error or `refusals` entry stops, concurrently.
    /// Every change ends in the report as applied, failed or skipped.
    pub async fn apply(mut self, refusals: &BTreeMap<String, String>) -> ApplyReport {
        let mut set = JoinSet::new();
        let mut reports: Vec<Option<TargetReport>> = Vec::new();
        for (i, t) in self.plan.targets.iter().enumerate() {
            let stop = t
                .error
                .clone()
                .or_else(|| self.plan.refusal.clone())
                .or_else(|| t.refusal.clone())
                .or_else(|| refusals.get(&t.address).cloned());
            let pending = self.pending.remove(&t.address);
            match (stop, pending) {
                (Some(why), _) => reports.push(Some(TargetReport {
                    address: t.address.clone(),
                    object_errors: t.object_errors.clone(),
                    error: Some(why.clone()),
                    outcomes: t
                        .changes
                        .iter()
                        .map(|c| Outcome::skipped(&c.address, c.action, why.clone()))
                        .collect(),
                })),
                (None, Some(p)) => {
                    reports.push(None);
                    set.spawn(async move { (i, p.run().await) });
                }
                (None, None) => reports.push(Some(TargetReport {
                    address: t.address.clone(),
                    object_errors: t.object_errors.clone(),
                    error: None,
                    outcomes: Vec::new(),
                })),
            }
        }
        while let Some(res) = set.join_next().await {
            match res {
                Ok((i, outcomes)) => {
                    reports[i] = Some(TargetReport {
                        address: self.plan.targets[i].address.clone(),
                        object_errors: self.plan.targets[i].object_errors.clone(),
                        error: None,
                        outcomes,
                    });
                }
                Err(e) => tracing::error!("apply task failed: {e}"),
            }
        }
        let reports = reports
            .into_iter()
            .zip(&self.plan.targets)
            .map(|(r, t)| {
                r.unwrap_or_else(|| TargetReport {
                    address: t.address.clone(),
                    object_errors: t.object_errors.clone(),
                    error: Some("internal error while applying".into()),
                    outcomes: t
                        .changes
                        .iter()
                        .map(|c| Outcome::failed(&c.address, c.action, "internal error"))
                        .collect(),
                })
            })
            .collect();
        ApplyReport::new(reports)
    }
}

/// A saved plan cannot be applied at all.
#[derive(Debug, thiserror::Error)]
pub enum SavedPlanError {
    /// Another format version.
    #[error(
        "plan file format_version {found} is not supported (this wispctl reads {FORMAT_VERSION})"
    )]
    Version {
        /// The file's version.
        found: u32,
    },
    /// The YAML changed.
    #[error("stale plan: the desired state changed since the plan was made; make a new plan")]
    DesiredChanged,
    /// Another hash key.
    #[error(
        "the plan was made with another hash key (id {plan}; here {here}): use the same state directory or WISPCTL_HASH_KEY"
    )]
    Key {
        /// Key id in the plan.
        plan: String,
        /// Key id here.
        here: String,
    },
}

/// Compares a saved plan with a fresh one made from the same YAML. Returns, per target, why it
/// must not be applied: an object moved (its fingerprint changed), a secret no longer matches
/// the plan's keyed hash, or the changes differ.
pub fn check_saved(saved: &Plan, fresh: &Plan) -> Result<BTreeMap<String, String>, SavedPlanError> {
    if saved.format_version != FORMAT_VERSION {
        return Err(SavedPlanError::Version {
            found: saved.format_version,
        });
    }
    if saved.hash_key_id != fresh.hash_key_id {
        return Err(SavedPlanError::Key {
            plan: saved.hash_key_id.clone(),
            here: fresh.hash_key_id.clone(),
        });
    }
    if saved.desired_digest != fresh.desired_digest {
        return Err(SavedPlanError::DesiredChanged);
    }
    let mut refusals = BTreeMap::new();
    let saved_by: HashMap<&str, &TargetPlan> = saved
        .targets
        .iter()
        .map(|t| (t.address.as_str(), t))
        .collect();
    for ft in &fresh.targets {
        let Some(st) = saved_by.get(ft.address.as_str()) else {
            if !ft.changes.is_empty() {
                refusals.insert(ft.address.clone(), "not in the saved plan".into());
            }
            continue;
        };
        let mut moved: Vec<&str> = Vec::new();
        for (a, h) in &st.fingerprints {
            if ft.fingerprints.get(a) != Some(h) {
                moved.push(a);
            }
        }
        for a in ft.fingerprints.keys() {
            if !st.fingerprints.contains_key(a) {
                moved.push(a);
            }
        }
        let secret_moved: Vec<&str> = st
            .secret_hashes
            .iter()
            .filter(|(a, h)| ft.secret_hashes.get(*a) != Some(h))
            .map(|(a, _)| a.as_str())
            .collect();
        let why = if !moved.is_empty() {
            Some(format!("stale plan: {} changed since plan", list(&moved)))
        } else if !secret_moved.is_empty() {
            Some(format!(
                "stale plan: the secret of {} no longer matches the plan's keyed hash",
                list(&secret_moved)
            ))
        } else if st.error.is_some() && !ft.changes.is_empty() {
            Some("stale plan: the target could not be read when the plan was made".into())
        } else if st.changes != ft.changes {
            Some("stale plan: the changes differ from the saved plan".into())
        } else {
            None
        };
        if let Some(w) = why {
            refusals.insert(ft.address.clone(), w);
        }
    }
    Ok(refusals)
}

fn list(items: &[&str]) -> String {
    let mut v: Vec<&str> = items.to_vec();
    v.sort();
    v.dedup();
    if v.len() > 3 {
        format!("{} and {} more", v[..3].join(", "), v.len() - 3)
    } else {
        v.join(", ")
    }
}
