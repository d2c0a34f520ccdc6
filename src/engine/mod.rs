//! Observe → diff → plan → apply, for every kind, concurrently and bounded.
//!
//! A [`Provider`] answers four questions for its kind: which targets, how to read one
//! (`observe`, once per target per run), what differs (`diff`, pure), and how to change it
//! (`apply`). The engine owns everything that must be the same for all kinds: ordering
//! (creates and updates before deletes), concurrency per kind (reads and writes), the guards
//! (delete cap, empty desired set), the stale-plan checks of a saved plan, per-target isolation
//! (one target's failure never stops another), exactly one outcome per planned change (a
//! missing or extra outcome is an engine error in the report, never dropped), and progress as
//! [`events`].
//!
//! What the engine does not do: talk to devices, or know any kind's fields.

pub mod context;
pub mod deadline;
pub mod early;
pub mod events;
pub mod lock;
pub mod readings;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use tokio::sync::Semaphore;
use tokio::task::JoinSet;

pub use context::{Context, Endpoints, NoTwin, RealNetwork, Route};
pub use deadline::{Deadline, DeadlineSpec};
pub use events::{Event, Events};
pub use readings::{Reading, Recorder, Replay, Source};

use crate::plan::report::{ApplyReport, Outcome, Status, TargetReport};
use crate::plan::{Action, Change, FORMAT_VERSION, Plan, Summary, TargetPlan};
use crate::secret::SecretHash;

/// The collection of a kind's cleanup of what the tool itself left behind (a temporary file
/// of an interrupted write): deleted without prune, and never subject to the empty-set guard
/// (it is nothing the YAML declares).
pub const CLEANUP: &str = "cleanup";

/// A boxed, sendable future.
pub type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send + 'static>>;

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
    /// Desired secrets not compared, by `address.field` (see `TargetPlan::not_compared`).
    pub not_compared: Vec<String>,
}

impl<Op> Default for Planned<Op> {
    fn default() -> Self {
        Planned {
            items: Vec::new(),
            notes: Vec::new(),
            secret_hashes: BTreeMap::new(),
            desired_counts: BTreeMap::new(),
            allow_empty_prune: false,
            object_errors: BTreeMap::new(),
            not_compared: Vec::new(),
        }
    }
}

/// One resource kind, as the engine runs it.
///
/// # Warning
/// `observe` must not write anything anywhere: `plan` and `drift` run it and promise to change
/// nothing. `diff` must be pure (no I/O): plans, drift and the property tests rely on it.
/// `apply` receives the items already ordered and guarded; it must verify what it wrote and
/// report exactly one outcome per item, in any order (the engine matches them by address and
/// action, and reports a missing or extra outcome as an engine error).
pub trait Provider: Send + Sync + 'static {
    /// Live state of one target.
    type Observed: Send + Sync + 'static;
    /// One apply instruction.
    type Op: Send + 'static;
    /// Why a target could not be read or diffed.
    type Error: std::error::Error + Send + Sync + 'static;
    /// The kind's name, first part of every address (`pppd`).
    fn kind(&self) -> &'static str;
    /// Names of the targets with desired state.
    fn targets(&self) -> Vec<String>;
    /// How many targets of this kind to read or write at once.
    fn concurrency(&self) -> usize {
        8
    }
    /// How long observing and applying `target` may take in all (see [`deadline`]): the
    /// target's `deadline:` over the kind's default.
    fn deadline(&self, _target: &str) -> Deadline {
        Deadline::DEFAULT
    }
    /// Reads a target once. Writes nothing.
    fn observe(
        &self,
        target: &str,
    ) -> impl Future<Output = Result<Observation<Self::Observed>, Self::Error>> + Send;
    /// Compares desired with observed. Pure.
    fn diff(
        &self,
        target: &str,
        observed: &Observation<Self::Observed>,
    ) -> Result<Planned<Self::Op>, Self::Error>;
    /// Makes the changes and verifies them. Also keeps what the run learned (see
    /// [`Provider::keep`]): a target with changes keeps it here.
    fn apply(
        &self,
        target: &str,
        items: Vec<Item<Self::Op>>,
        observed: Observation<Self::Observed>,
    ) -> impl Future<Output = Vec<Outcome>> + Send;
    /// The observed state as a snapshot keeps it: JSON holding no secret value (secrets as
    /// keyed hashes under the context's key, connection-string keys masked), from which
    /// [`Provider::restore_snapshot`] gives back a state that `diff` plans exactly as it plans
    /// the live one. `None`: this kind keeps no snapshot (its targets are then recorded as not
    /// readable offline).
    fn snapshot_form(
        &self,
        _target: &str,
        _observed: &Self::Observed,
    ) -> Option<serde_json::Value> {
        None
    }
    /// Back from a snapshot ([`Provider::snapshot_form`]); why not, in words.
    fn restore_snapshot(
        &self,
        _target: &str,
        _value: serde_json::Value,
    ) -> Result<Self::Observed, String> {
        Err("this kind keeps no snapshot".into())
    }
    /// For a target `apply` found with nothing to change: keeps what observing it learned
    /// that only an apply may write (the credential that worked, a host key trusted on first
    /// use). `plan` and `drift` never call it. Nothing by default.
    fn keep(
        &self,
        _target: &str,
        _observed: Observation<Self::Observed>,
    ) -> impl Future<Output = ()> + Send {
        async {}
    }
}

/// A provider with its types erased, so that kinds of every shape run side by side.
pub trait DynProvider: Send + Sync {
    /// The kind's name.
    fn kind(&self) -> &'static str;
    /// How many targets to read or write at once.
    fn concurrency(&self) -> usize;
    /// Names of the targets with desired state.
    fn targets(&self) -> Vec<String>;
    /// Observes and diffs every matching target.
    fn plan_targets(
        self: Arc<Self>,
        filter: Arc<TargetFilter>,
        events: Events,
        source: Source,
    ) -> BoxFuture<Vec<PlannedTarget>>;
}

/// Wraps a provider for the engine.
pub fn provider<P: Provider>(p: P) -> Arc<dyn DynProvider> {
    Arc::new(Runner(Arc::new(p)))
}

struct Runner<P>(Arc<P>);

/// A target's plan and, when it has changes, what applying it takes.
pub struct PlannedTarget {
    plan: TargetPlan,
    pending: Option<Box<dyn PendingApply>>,
}

trait PendingApply: Send {
    fn run(self: Box<Self>) -> BoxFuture<(Vec<Outcome>, Option<String>)>;
}

struct Pending<P: Provider> {
    provider: Arc<P>,
    target: String,
    deadline: Deadline,
    items: Vec<Item<P::Op>>,
    observed: Observation<P::Observed>,
}

impl<P: Provider> PendingApply for Pending<P> {
    fn run(self: Box<Self>) -> BoxFuture<(Vec<Outcome>, Option<String>)> {
        Box::pin(async move {
            let Pending {
                provider,
                target,
                deadline,
                items,
                observed,
            } = *self;
            let bound = deadline.apply;
            if items.is_empty() {
                if tokio::time::timeout(bound, provider.keep(&target, observed))
                    .await
                    .is_err()
                {
                    tracing::warn!(target, "keeping what the read learned passed the deadline");
                }
                return (Vec::new(), None);
            }
            let expected: Vec<(String, Action)> = items
                .iter()
                .map(|i| (i.change.address.clone(), i.change.action))
                .collect();
            match tokio::time::timeout(bound, provider.apply(&target, items, observed)).await {
                Ok(outcomes) => match_outcomes(&expected, outcomes),
                Err(_) => past_deadline(&expected, bound),
            }
        })
    }
}

/// The apply deadline passed: the provider's future is dropped (its connections close and
/// nothing more is sent), and no change is known to be done or not done.
fn past_deadline(
    expected: &[(String, Action)],
    bound: std::time::Duration,
) -> (Vec<Outcome>, Option<String>) {
    let why = format!(
        "unknown: the apply deadline ({}) passed before this change was confirmed; the next plan shows whether it took effect",
        deadline::words(bound)
    );
    let outcomes = expected
        .iter()
        .map(|(a, action)| Outcome::failed(a, *action, why.clone()))
        .collect();
    let error = format!(
        "apply stopped at its deadline of {} (deadline.apply_secs); nothing more was sent",
        deadline::words(bound)
    );
    (outcomes, Some(error))
}

/// One outcome per planned change, in plan order. A change the provider reported nothing for
/// fails; outcomes for changes not planned (or twice for one) make the target's error.
fn match_outcomes(
    expected: &[(String, Action)],
    outcomes: Vec<Outcome>,
) -> (Vec<Outcome>, Option<String>) {
    let mut by_change: HashMap<(String, Action), Vec<Outcome>> = HashMap::new();
    for o in outcomes {
        by_change
            .entry((o.address.clone(), o.action))
            .or_default()
            .push(o);
    }
    let mut matched = Vec::with_capacity(expected.len());
    let mut missing = 0usize;
    for (address, action) in expected {
        match by_change
            .get_mut(&(address.clone(), *action))
            .and_then(|v| (!v.is_empty()).then(|| v.remove(0)))
        {
            Some(o) => matched.push(o),
            None => {
                missing += 1;
                matched.push(Outcome::failed(
                    address,
                    *action,
                    "engine error: the provider reported no outcome for this change",
                ));
            }
        }
    }
    let mut extra: Vec<String> = by_change
        .into_iter()
        .flat_map(|((a, _), v)| std::iter::repeat_n(a, v.len()))
        .collect();
    extra.sort();
    let mut problems = Vec::new();
    if missing > 0 {
        problems.push(format!("{missing} change(s) got no outcome"));
    }
    if !extra.is_empty() {
        problems.push(format!(
            "outcomes for changes that were not planned: {}",
            list(&extra.iter().map(String::as_str).collect::<Vec<_>>())
        ));
    }
    let error = (!problems.is_empty()).then(|| format!("engine error: {}", problems.join("; ")));
    (matched, error)
}

impl<P: Provider> DynProvider for Runner<P> {
    fn kind(&self) -> &'static str {
        self.0.kind()
    }

    fn concurrency(&self) -> usize {
        self.0.concurrency().max(1)
    }

    fn targets(&self) -> Vec<String> {
        self.0.targets()
    }

    fn plan_targets(
        self: Arc<Self>,
        filter: Arc<TargetFilter>,
        events: Events,
        source: Source,
    ) -> BoxFuture<Vec<PlannedTarget>> {
        Box::pin(async move {
            let p = self.0.clone();
            let kind = p.kind();
            let sem = Arc::new(Semaphore::new(self.concurrency()));
            let mut set = JoinSet::new();
            let mut names = HashMap::new();
            let targets: Vec<String> = p
                .targets()
                .into_iter()
                .filter(|t| filter.matches(&format!("{kind}.{t}")))
                .collect();
            for (i, t) in targets.iter().enumerate() {
                let (p, sem, t2, events) = (p.clone(), sem.clone(), t.clone(), events.clone());
                let source = source.clone();
                let handle = set.spawn(async move {
                    let _permit = sem.acquire_owned().await;
                    let pt = plan_target(p, t2, &source).await;
                    events.send(Event::TargetPlanned {
                        address: pt.plan.address.clone(),
                        changes: pt.plan.changes.len(),
                        error: pt.plan.error.clone(),
                    });
                    (i, pt)
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
        address: crate::plan::target_address(kind, name),
        kind: kind.into(),
        name: name.into(),
        error: None,
        refusal: None,
        changes: Vec::new(),
        notes: Vec::new(),
        fingerprints: BTreeMap::new(),
        secret_hashes: BTreeMap::new(),
        object_errors: BTreeMap::new(),
        not_compared: Vec::new(),
    }
}

/// A target's observation: from the snapshot being replayed, or read (and recorded when a
/// snapshot is being taken); why not, in words.
async fn observation<P: Provider>(
    p: &P,
    target: &str,
    address: &str,
    source: &Source,
) -> Result<Observation<P::Observed>, String> {
    if let Some(replay) = &source.replay {
        let Some(r) = replay.0.get(address) else {
            return Err("the snapshot holds no reading of this target".into());
        };
        if let Some(e) = &r.error {
            return Err(format!("{e} (when the snapshot was taken)"));
        }
        let Some(v) = &r.observed else {
            return Err("the snapshot holds no reading of this target".into());
        };
        let state = p
            .restore_snapshot(target, v.clone())
            .map_err(|e| format!("the snapshot's reading of this target is unusable: {e}"))?;
        return Ok(Observation {
            state,
            fingerprints: r.fingerprints.clone(),
        });
    }
    let deadline = p.deadline(target);
    let read = match tokio::time::timeout(deadline.observe, p.observe(target)).await {
        Ok(Ok(o)) => Ok(o),
        Ok(Err(e)) => {
            tracing::warn!(target = %address, "observe failed: {e}");
            Err(format!("cannot read target: {e}"))
        }
        Err(_) => {
            tracing::warn!(target = %address, "observe passed its deadline");
            Err(format!(
                "cannot read target: no complete answer within its deadline of {} (deadline.observe_secs); the connection was closed",
                deadline::words(deadline.observe)
            ))
        }
    };
    if let Some(record) = &source.record {
        let reading = match &read {
            Ok(o) => match p.snapshot_form(target, &o.state) {
                Some(v) => Reading {
                    observed: Some(v),
                    fingerprints: o.fingerprints.clone(),
                    error: None,
                },
                None => Reading {
                    observed: None,
                    fingerprints: BTreeMap::new(),
                    error: Some(format!("the {} kind keeps no snapshot", p.kind())),
                },
            },
            Err(e) => Reading {
                observed: None,
                fingerprints: BTreeMap::new(),
                error: Some(e.clone()),
            },
        };
        record.keep(address, reading);
    }
    read
}

async fn plan_target<P: Provider>(p: Arc<P>, target: String, source: &Source) -> PlannedTarget {
    let mut tp = empty_target(p.kind(), &target);
    let observed = match observation(&*p, &target, &tp.address, source).await {
        Ok(o) => o,
        Err(e) => {
            tp.error = Some(e);
            return PlannedTarget {
                plan: tp,
                pending: None,
            };
        }
    };
    // The diff is pure CPU work (thousands of objects for a large router or UISP): on the
    // blocking pool, so that several targets' diffs run on several cores instead of queueing
    // behind each other on the worker that woke them.
    let (diffed, mut observed) = {
        let (p, target) = (p.clone(), target.clone());
        match tokio::task::spawn_blocking(move || (p.diff(&target, &observed), observed)).await {
            Ok(done) => done,
            Err(e) => {
                tp.error = Some(format!("internal error while planning: {e}"));
                return PlannedTarget {
                    plan: tp,
                    pending: None,
                };
            }
        }
    };
    // Apply never reads the fingerprints: the plan keeps them.
    tp.fingerprints = std::mem::take(&mut observed.fingerprints);
    let planned = match diffed {
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
    tp.not_compared = planned.not_compared;
    if !planned.allow_empty_prune {
        tp.refusal = empty_prune_refusal(&items, &planned.desired_counts);
    }
    tracing::debug!(target = %tp.address, changes = tp.changes.len(), "planned");
    // Kept with no changes too: apply then keeps what observing it learned.
    let deadline = p.deadline(&target);
    let pending = Some(Box::new(Pending {
        provider: p,
        target,
        deadline,
        items,
        observed,
    }) as Box<dyn PendingApply>);
    PlannedTarget { plan: tp, pending }
}

/// The disconnect guard: more active sessions disconnected than `cap` refuses the run, naming
/// the customers beyond the cap (in plan order, the first ten).
fn disconnect_refusal(targets: &[TargetPlan], total: usize, cap: usize) -> Option<String> {
    if total <= cap {
        return None;
    }
    let mut counted = 0;
    let mut beyond: Vec<&str> = Vec::new();
    for c in targets.iter().flat_map(|t| &t.changes) {
        if c.impact.disconnects == 0 {
            continue;
        }
        counted += c.impact.disconnects;
        if counted > cap {
            beyond.push(c.impact.customer.as_deref().unwrap_or(&c.address));
        }
    }
    let shown = beyond.len().min(10);
    let more = match beyond.len() - shown {
        0 => String::new(),
        n => format!(" and {n} more"),
    };
    Some(format!(
        "guard: {total} active sessions would be disconnected, over the cap of {cap} per run; nothing will be applied. Beyond the cap: {}{more}. Raise guards.max_disconnects in inventory.yaml or pass --max-disconnects if the disconnects are meant",
        beyond[..shown].join(", ")
    ))
}

/// The empty-set guard: deletes in a collection the YAML lists nothing in (a truncated file)
/// refuse the target.
fn empty_prune_refusal<Op>(
    items: &[Item<Op>],
    desired_counts: &BTreeMap<&'static str, usize>,
) -> Option<String> {
    let mut emptied: BTreeMap<&str, usize> = BTreeMap::new();
    let guarded = |i: &&Item<Op>| i.change.action == Action::Delete && i.collection != CLEANUP;
    for i in items.iter().filter(guarded) {
        if desired_counts.get(i.collection).copied().unwrap_or(0) == 0 {
            *emptied.entry(i.collection).or_default() += 1;
        }
    }
    if emptied.is_empty() {
        return None;
    }
    let what: Vec<String> = emptied
        .iter()
        .map(|(c, n)| format!("{n} {c}(s) with an empty desired {c} list"))
        .collect();
    Some(format!(
        "guard: apply would delete {}; an empty list never prunes everything (a truncated file must not wipe a target). Set allow_empty_prune: true in the file if this is meant",
        what.join(" and ")
    ))
}

/// Which targets a run covers.
#[derive(Debug, Clone, Default)]
pub enum TargetFilter {
    /// Every target.
    #[default]
    All,
    /// `--target GLOB`s, matched against `kind.name` or `name`.
    Globs(Vec<glob::Pattern>),
    /// Exactly these addresses (the targets of a saved plan; none at all when empty).
    Exactly(BTreeSet<String>),
}

impl TargetFilter {
    /// Parses globs; an empty list matches everything.
    pub fn new(globs: &[String]) -> Result<Self, glob::PatternError> {
        if globs.is_empty() {
            return Ok(TargetFilter::All);
        }
        Ok(TargetFilter::Globs(
            globs
                .iter()
                .map(|g| glob::Pattern::new(g))
                .collect::<Result<_, _>>()?,
        ))
    }

    /// Exactly these target addresses.
    pub fn exactly(addresses: impl IntoIterator<Item = String>) -> Self {
        TargetFilter::Exactly(addresses.into_iter().collect())
    }

    /// Whether a target address matches.
    pub fn matches(&self, address: &str) -> bool {
        match self {
            TargetFilter::All => true,
            TargetFilter::Globs(globs) => {
                let name = address.split_once('.').map_or(address, |(_, n)| n);
                globs.iter().any(|p| p.matches(address) || p.matches(name))
            }
            TargetFilter::Exactly(set) => set.contains(address),
        }
    }
}

/// A plan and, kept in memory, what applying it takes.
pub struct PlannedRun {
    /// The plan every output is rendered from.
    pub plan: Plan,
    pending: BTreeMap<String, Box<dyn PendingApply>>,
    /// How many targets of each kind may be written at once.
    concurrency: BTreeMap<String, usize>,
    events: Events,
}

/// Settings of one run.
pub struct Engine {
    providers: Vec<Arc<dyn DynProvider>>,
    filter: Arc<TargetFilter>,
    max_deletes: usize,
    max_disconnects: usize,
    desired_digest: String,
    hash_key_id: String,
    events: Events,
    source: Source,
}

impl Engine {
    /// An engine over some providers (the registry's [`crate::kinds::engine`] gives one over
    /// every kind).
    pub fn new(
        providers: Vec<Arc<dyn DynProvider>>,
        filter: TargetFilter,
        max_deletes: usize,
        desired_digest: String,
        hash_key_id: String,
    ) -> Self {
        Engine {
            providers,
            filter: Arc::new(filter),
            max_deletes,
            max_disconnects: usize::MAX,
            desired_digest,
            hash_key_id,
            events: Events::none(),
            source: Source::default(),
        }
    }

    /// At most `cap` active sessions disconnected per run (`guards.max_disconnects`); none by
    /// default.
    pub fn with_max_disconnects(mut self, cap: usize) -> Self {
        self.max_disconnects = cap;
        self
    }

    /// Progress goes to `events`.
    pub fn with_events(mut self, events: Events) -> Self {
        self.events = events;
        self
    }

    /// Observations come from `source` (a snapshot's readings), or are recorded there.
    pub fn with_source(mut self, source: Source) -> Self {
        self.source = source;
        self
    }

    /// Observes every target once and plans. Never writes.
    pub async fn plan(&self) -> PlannedRun {
        self.events.send(Event::ObserveStarted {
            targets: self.target_count(),
        });
        let mut set = JoinSet::new();
        let mut kinds = HashMap::new();
        for (i, k) in self.providers.iter().enumerate() {
            let (k, f, e) = (k.clone(), self.filter.clone(), self.events.clone());
            let source = self.source.clone();
            let handle = set.spawn(async move { (i, k.plan_targets(f, e, source).await) });
            kinds.insert(handle.id(), (i, self.providers[i].kind()));
        }
        let mut by_kind = Vec::new();
        while let Some(res) = set.join_next_with_id().await {
            match res {
                Ok((_, planned)) => by_kind.push(planned),
                // A provider panicked outside its targets' own tasks (listing them): the kind
                // is reported as a target that could not be planned, never dropped.
                Err(e) => {
                    let (i, kind) = kinds[&e.id()];
                    tracing::error!(kind, "planning failed: {e}");
                    let mut tp = empty_target(kind, "*");
                    tp.error = Some(format!("internal error while planning kind {kind}: {e}"));
                    by_kind.push((
                        i,
                        vec![PlannedTarget {
                            plan: tp,
                            pending: None,
                        }],
                    ));
                }
            }
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
        let deletes = (summary.destroy > self.max_deletes).then(|| {
            format!(
                "guard: {} deletes exceed the cap of {} per run; nothing will be applied. Raise guards.max_deletes in inventory.yaml or pass --max-deletes if the deletes are meant",
                summary.destroy, self.max_deletes
            )
        });
        let disconnects = disconnect_refusal(&targets, summary.disconnects, self.max_disconnects);
        let refusal = match (deletes, disconnects) {
            (Some(a), Some(b)) => Some(format!("{a}; {b}")),
            (a, b) => a.or(b),
        };
        let plan = Plan {
            format_version: FORMAT_VERSION,
            wispctl_version: env!("CARGO_PKG_VERSION").into(),
            created_at: humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string(),
            desired_digest: self.desired_digest.clone(),
            hash_key_id: self.hash_key_id.clone(),
            refusal,
            snapshot: None,
            targets,
            summary,
        };
        PlannedRun {
            plan,
            pending,
            concurrency: self
                .providers
                .iter()
                .map(|p| (p.kind().to_string(), p.concurrency()))
                .collect(),
            events: self.events.clone(),
        }
    }

    /// The targets the filter lets through, as (kind, address).
    pub fn targets(&self) -> Vec<(&'static str, String)> {
        self.providers
            .iter()
            .flat_map(|p| {
                p.targets()
                    .into_iter()
                    .map(|t| (p.kind(), format!("{}.{t}", p.kind())))
            })
            .filter(|(_, a)| self.filter.matches(a))
            .collect()
    }

    /// How many targets the filter lets through.
    fn target_count(&self) -> usize {
        self.providers
            .iter()
            .map(|p| {
                p.targets()
                    .iter()
                    .filter(|t| self.filter.matches(&format!("{}.{t}", p.kind())))
                    .count()
            })
            .sum()
    }
}

impl PlannedRun {
    /// Applies every target that no guard, error or `refusals` entry stops, concurrently and
    /// at most the kind's concurrency at once. Every change ends in the report as applied,
    /// failed or skipped. A target with nothing to change keeps what observing it learned
    /// ([`Provider::keep`]); so does a whole run without changes, which writes nothing else.
    pub async fn apply(mut self, refusals: &BTreeMap<String, String>) -> ApplyReport {
        let limits: BTreeMap<String, Arc<Semaphore>> = self
            .concurrency
            .iter()
            .map(|(k, n)| (k.clone(), Arc::new(Semaphore::new(*n))))
            .collect();
        let mut set = JoinSet::new();
        let mut reports: Vec<Option<TargetReport>> = Vec::new();
        let mut started = (0usize, 0usize);
        let mut tasks = HashMap::new();
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
                    if !t.changes.is_empty() {
                        started.0 += 1;
                        started.1 += t.changes.len();
                    }
                    let limit = limits
                        .get(&t.kind)
                        .cloned()
                        .unwrap_or_else(|| Arc::new(Semaphore::new(1)));
                    let handle = set.spawn(async move {
                        let _permit = limit.acquire_owned().await;
                        (i, p.run().await)
                    });
                    tasks.insert(handle.id(), i);
                }
                (None, None) => reports.push(Some(TargetReport {
                    address: t.address.clone(),
                    object_errors: t.object_errors.clone(),
                    error: None,
                    outcomes: Vec::new(),
                })),
            }
        }
        if started.0 > 0 {
            self.events.send(Event::ApplyStarted {
                targets: started.0,
                changes: started.1,
            });
        }
        while let Some(res) = set.join_next_with_id().await {
            let (i, report) = match res {
                Ok((_, (i, (outcomes, error)))) => {
                    let t = &self.plan.targets[i];
                    (
                        i,
                        TargetReport {
                            address: t.address.clone(),
                            object_errors: t.object_errors.clone(),
                            error,
                            outcomes,
                        },
                    )
                }
                Err(e) => {
                    let i = tasks[&e.id()];
                    let t = &self.plan.targets[i];
                    tracing::error!(target = %t.address, "apply task failed: {e}");
                    (
                        i,
                        TargetReport {
                            address: t.address.clone(),
                            object_errors: t.object_errors.clone(),
                            error: Some(format!("internal error while applying: {e}")),
                            outcomes: t
                                .changes
                                .iter()
                                .map(|c| Outcome::failed(&c.address, c.action, "internal error"))
                                .collect(),
                        },
                    )
                }
            };
            let applied = report
                .outcomes
                .iter()
                .filter(|o| o.status == Status::Applied)
                .count();
            if !self.plan.targets[i].changes.is_empty() {
                self.events.send(Event::TargetApplied {
                    address: report.address.clone(),
                    applied,
                    failed: report.outcomes.len() - applied,
                });
            }
            reports[i] = Some(report);
        }
        let reports = reports
            .into_iter()
            .map(|r| r.expect("every target has a report"))
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

#[cfg(test)]
mod tests;
