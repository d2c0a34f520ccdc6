//! `wispctl reconcile`: the controller. Each target is planned on its schedule
//! ([`crate::controller::schedule`]) over the same engine, guards and per-target isolation as
//! `apply`; in `apply` mode its drift is written inside the maintenance windows, under the
//! same lock file as `apply` (held shared by the controller's writes, exclusively by a
//! hand-run apply); every outcome goes to the history (`status.json`), the metrics and the
//! notifications. One scheduler runs for the whole process: a change of the desired state
//! (the folder, or with `--git` the remote branch) is swapped in and fires the targets it
//! touches at once, the others keep their schedule; one that does not load keeps the last
//! good state running and is reported with its file:line:column. SIGHUP reloads (every target
//! then counts as touched: a rotated secret file is not in the folder). SIGTERM/SIGINT stop
//! new work, let reconciles in flight finish within `--stop-grace`, and exit 0.
//!
//! `wispctl status` prints the history.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::io::Write;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use anyhow::Context as _;
use tokio::sync::watch;
use tokio::time::Instant;

use super::{Globals, Targets, Writes, loaded, resolver};
use crate::controller::config::Mode;
use crate::controller::git::{GitError, GitSource, Synced, folder_fingerprint};
use crate::controller::history::{Outcome, Reconciled, Status};
use crate::controller::metrics::{self, Metrics};
use crate::controller::notify::{self, Observed, Sender, Tracker};
use crate::controller::schedule::{self, Entry, Trigger};
use crate::controller::window::Verdict;
use crate::desired::{self, DesiredState};
use crate::engine::TargetFilter;
use crate::engine::lock::{ApplyLock, LockError};
use crate::exit;
use crate::progress::Reporter;

/// Options of `reconcile`.
#[derive(Debug, Clone)]
pub struct ReconcileOptions {
    /// Where `/healthz`, `/readyz` and `/metrics` are served; `None`: not served.
    pub listen: Option<SocketAddr>,
    /// Follow this remote's branch (fetch, fast-forward).
    pub git: Option<(String, String)>,
    /// Reconcile every target once, then exit.
    pub once: bool,
    /// How long a reconcile waits for the apply lock (a hand-run apply holds it).
    pub lock_timeout: Duration,
    /// How long reconciles in flight may take to finish at a stop.
    pub stop_grace: Duration,
}

/// Output of `status`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StatusFormat {
    /// For people.
    Text,
    /// `status.json` as it is.
    Json,
}

/// The apply lock as the controller holds it: shared, once for the whole process however
/// many of its reconciles write at a time (the record names the controller, and is cleared
/// when the last one is done).
struct ControllerLock {
    path: std::path::PathBuf,
    timeout: Duration,
    /// Serialises taking the file lock.
    taking: tokio::sync::Mutex<()>,
    held: Mutex<(usize, Option<ApplyLock>)>,
}

/// One of the controller's writers inside the lock.
struct Inside<'a>(&'a ControllerLock);

impl Drop for Inside<'_> {
    fn drop(&mut self) {
        let mut h = self.0.held.lock().expect("lock count");
        h.0 -= 1;
        if h.0 == 0 {
            h.1 = None;
        }
    }
}

impl ControllerLock {
    async fn enter(&self) -> Result<Inside<'_>, LockError> {
        // Another of the controller's reconciles is taking the file lock: wait for it no longer
        // than for the lock itself.
        let Ok(_taking) = tokio::time::timeout(self.timeout, self.taking.lock()).await else {
            return Err(LockError::Held {
                path: self.path.clone(),
                holder: crate::engine::lock::holder(&self.path),
                waited: self.timeout,
            });
        };
        {
            let mut h = self.held.lock().expect("lock count");
            if h.0 > 0 {
                h.0 += 1;
                return Ok(Inside(self));
            }
        }
        let command = format!("wispctl reconcile (pid {})", std::process::id());
        let lock = ApplyLock::acquire_shared(&self.path, self.timeout, &command).await?;
        let mut h = self.held.lock().expect("lock count");
        *h = (1, Some(lock));
        Ok(Inside(self))
    }
}

/// What the controller shares between its reconciles.
struct Shared {
    g: Globals,
    status: Mutex<Status>,
    metrics: Arc<Metrics>,
    notify: Mutex<Option<(Tracker, Sender)>>,
    lock: ControllerLock,
    /// When each target is next due.
    due: Mutex<HashMap<String, Instant>>,
    /// The desired state running now; a reconcile takes it when it starts.
    current: RwLock<Arc<Generation>>,
    /// Turns true at SIGTERM/SIGINT: no write starts after it.
    stopping: watch::Receiver<bool>,
    /// Targets a reload touched that have not begun a reconcile with it yet (kept over a
    /// restart of the scheduler, so that none waits a whole interval).
    pending: Mutex<BTreeSet<String>>,
}

/// One desired state running: the targets reached for it.
struct Generation {
    d: Arc<DesiredState>,
    targets: Targets,
}

impl Generation {
    /// The targets of a desired state: those of a served lab or the real network (reached
    /// without the desired state), else an in-process lab's twins started for it.
    async fn start(
        g: &Globals,
        d: Arc<DesiredState>,
        in_process_lab: bool,
    ) -> anyhow::Result<Generation> {
        let reporter = Reporter::quiet();
        let targets = match Targets::before_load(g, Writes::State, false, &reporter)? {
            Some(t) => t,
            None if in_process_lab => {
                Targets::start(g, &d, Writes::State, false, &reporter).await?
            }
            None => anyhow::bail!("the served lab is gone (`wispctl lab serve` stopped)"),
        };
        Ok(Generation { d, targets })
    }

    /// Every target address, with its kind.
    fn addresses(&self) -> Vec<(&'static str, String)> {
        crate::kinds::engine(
            &self.d,
            &self.targets.ctx,
            TargetFilter::All,
            self.d.guards.max_deletes,
        )
        .targets()
    }
}

impl Shared {
    fn save_status(&self) {
        let mut s = self.status.lock().expect("status lock");
        if let Err(e) = s.save(&self.g.state_dir) {
            tracing::warn!("cannot write the controller's status: {e}");
        }
    }

    fn generation(&self) -> Arc<Generation> {
        self.current.read().expect("generation lock").clone()
    }

    /// Records one reconcile: history (saved when its next run is scheduled), metrics,
    /// notifications, the log.
    fn record(&self, r: Reconciled<'_>, seen: Observed, took: Duration) {
        let at = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0.0, |d| d.as_secs_f64());
        // Written: nothing drifts any more.
        let drifting = if r.outcome == Outcome::Applied {
            0
        } else {
            r.drifting.len()
        };
        self.metrics
            .reconciled(r.target, r.kind, at, took, r.outcome, drifting);
        if r.applied > 0 {
            self.metrics.wrote(r.kind, r.applied as u64);
        }
        if r.outcome.is_failure() {
            self.metrics.error(r.kind);
        }
        tracing::info!(
            target: "wispctl::reconcile",
            address = r.target,
            outcome = r.outcome.as_str(),
            drifting = r.drifting.len(),
            applied = r.applied,
            duration_ms = took.as_millis() as u64,
            "reconciled"
        );
        if let Some((tracker, sender)) = self.notify.lock().expect("notify lock").as_mut() {
            for n in tracker.observe(r.target, r.kind, seen, Instant::now()) {
                sender.send(n);
            }
            self.metrics
                .suppressed(tracker.flapping_suppressed(), tracker.cooldown_suppressed());
        }
        self.status.lock().expect("status lock").record(r);
    }

    /// An event in the history, also logged.
    fn event(&self, target: &str, event: &str, detail: String) {
        tracing::info!(target: "wispctl::reconcile", address = target, event, "{detail}");
        self.status
            .lock()
            .expect("status lock")
            .event(target, event, detail);
        self.save_status();
    }

    /// A refusal of the latest desired state (the last good one keeps running): logged and
    /// kept in the status once per distinct text.
    fn refused(&self, event: &str, text: String) {
        let mut s = self.status.lock().expect("status lock");
        if s.controller.refused.as_deref() == Some(text.as_str()) {
            return;
        }
        tracing::error!(target: "wispctl::reconcile", event, "{text}");
        let first = text.lines().next().unwrap_or_default().to_string();
        s.event("-", event, first);
        s.controller.refused = Some(text);
        drop(s);
        self.save_status();
    }
}

/// Reconciles one target once: plan; in apply mode and when allowed, lock, plan again, apply.
/// `Err` when it failed or could not take the lock (the scheduler backs off).
async fn reconcile_one(shared: &Shared, address: &str) -> Result<(), ()> {
    let generation = shared.generation();
    shared.pending.lock().expect("pending lock").remove(address);
    let d = &generation.d;
    let kind = address.split_once('.').map_or(address, |(k, _)| k);
    let mode = d.reconcile.mode(kind, address);
    let started = Instant::now();
    let engine = || {
        crate::kinds::engine(
            d,
            &generation.targets.ctx,
            TargetFilter::exactly([address.to_string()]),
            d.guards.max_deletes,
        )
        .with_max_disconnects(d.guards.max_disconnects)
    };
    let mut retry = false;
    let run = engine().plan().await;
    let (outcome, drifting, applied, detail) = 'done: {
        let Some(tp) = run.plan.targets.iter().find(|t| t.address == address) else {
            break 'done (Outcome::InSync, vec![], 0, None);
        };
        if let Some(e) = &tp.error {
            break 'done (Outcome::Unreachable, vec![], 0, Some(e.clone()));
        }
        let drifting: Vec<String> = tp.changes.iter().map(|c| c.address.clone()).collect();
        if drifting.is_empty() {
            break 'done (Outcome::InSync, drifting, 0, None);
        }
        if mode == Mode::Observe {
            break 'done (Outcome::Drift, drifting, 0, None);
        }
        if let Some(why) = tp.refusal.as_ref().or(run.plan.refusal.as_ref()) {
            break 'done (Outcome::Blocked, drifting, 0, Some(why.clone()));
        }
        let verdict = d.reconcile.windows.check(jiff::Timestamp::now());
        if verdict != Verdict::Open {
            let why = d.reconcile.windows.describe(&verdict);
            break 'done (Outcome::Blocked, drifting, 0, Some(why));
        }
        if *shared.stopping.borrow() {
            break 'done (
                Outcome::Drift,
                drifting,
                0,
                Some("stopping: not written".into()),
            );
        }
        let inside = match shared.lock.enter().await {
            Ok(l) => l,
            Err(e) => {
                // Tried again with backoff, not after a whole interval.
                retry = true;
                break 'done (Outcome::Blocked, drifting, 0, Some(e.to_string()));
            }
        };
        // A reload while this waited that touched this target: the new desired state decides
        // (its reload fired this target again).
        if superseded(shared, &generation, address) {
            drop(inside);
            tracing::info!(target: "wispctl::reconcile", address, "superseded by a reload: not written");
            return Ok(());
        }
        let verdict = d.reconcile.windows.check(jiff::Timestamp::now());
        if verdict != Verdict::Open {
            let why = d.reconcile.windows.describe(&verdict);
            break 'done (Outcome::Blocked, drifting, 0, Some(why));
        }
        // Under the lock: what a hand-run apply may have written meanwhile is read again.
        drop(run);
        let run = engine().plan().await;
        if let Some(e) = run.plan.targets.iter().find_map(|t| t.error.clone()) {
            break 'done (Outcome::Unreachable, drifting, 0, Some(e));
        }
        let still: Vec<String> = run
            .plan
            .targets
            .iter()
            .flat_map(|t| t.changes.iter().map(|c| c.address.clone()))
            .collect();
        if still.is_empty() {
            break 'done (Outcome::InSync, still, 0, None);
        }
        if let Some(why) = run
            .plan
            .refusal
            .clone()
            .or_else(|| run.plan.targets.iter().find_map(|t| t.refusal.clone()))
        {
            break 'done (Outcome::Blocked, still, 0, Some(why));
        }
        if *shared.stopping.borrow() {
            break 'done (
                Outcome::Drift,
                still,
                0,
                Some("stopping: not written".into()),
            );
        }
        let report = run.apply(&BTreeMap::new()).await;
        if let Err(e) = generation.targets.save() {
            tracing::warn!("cannot save the lab: {e}");
        }
        drop(inside);
        let s = report.summary;
        if report.succeeded() {
            (Outcome::Applied, still, s.applied, None)
        } else {
            let why = format!(
                "{} applied, {} failed, {} skipped, {} reverted",
                s.applied, s.failed, s.skipped, s.reverted
            );
            (Outcome::Failed, still, s.applied, Some(why))
        }
    };
    let took = started.elapsed();
    let seen = match outcome {
        Outcome::InSync => Observed::InSync,
        Outcome::Drift | Outcome::Blocked => Observed::Drifting {
            objects: drifting.len(),
            addresses: drifting.clone(),
        },
        Outcome::Applied => Observed::Applied { changes: applied },
        Outcome::Failed => Observed::ApplyFailed {
            failed: drifting.len().saturating_sub(applied).max(1),
        },
        Outcome::Unreachable => Observed::Unreachable,
    };
    shared.record(
        Reconciled {
            target: address,
            kind,
            mode: mode.as_str(),
            outcome,
            duration_ms: took.as_millis() as u64,
            drifting: &drifting,
            applied,
            detail,
            next_run_at: None,
        },
        seen,
        took,
    );
    // Made with a desired state a reload replaced for this target: readiness waits for the
    // reconcile with the new one.
    if superseded(shared, &generation, address) {
        let current = shared.generation();
        let set: BTreeSet<String> = current.addresses().into_iter().map(|(_, a)| a).collect();
        shared
            .metrics
            .reload(&set, &BTreeSet::from([address.to_string()]));
    }
    if outcome.is_failure() || retry {
        Err(())
    } else {
        Ok(())
    }
}

/// Whether the desired state of `address` changed since `generation` (a reload touched it).
fn superseded(shared: &Shared, generation: &Arc<Generation>, address: &str) -> bool {
    let current = shared.generation();
    !Arc::ptr_eq(&current, generation)
        && current.d.target_digests.get(address) != generation.d.target_digests.get(address)
}

/// Loads the desired state again; `None` when it does not load (reported, the last good one
/// keeps running) or, unless `force`, did not change.
async fn reload(
    shared: &Shared,
    current: &str,
    force: bool,
) -> anyhow::Result<Option<DesiredState>> {
    let g = shared.g.clone();
    let resolver = match resolver(&g) {
        Ok(r) => r,
        Err(e) => {
            shared.refused("reload_refused", format!("{e:#}"));
            return Ok(None);
        }
    };
    let dir = g.dir.clone();
    let result = tokio::task::spawn_blocking(move || desired::load(&dir, &resolver))
        .await
        .context("loading the desired state")?;
    match result {
        Err(errors) => {
            let text = format!(
                "{errors}\n{} problem(s) in {}; the last good desired state keeps running",
                errors.0.len(),
                g.dir.display()
            );
            shared.refused("reload_refused", text);
            Ok(None)
        }
        Ok(d) => {
            shared
                .status
                .lock()
                .expect("status lock")
                .controller
                .refused = None;
            shared.save_status();
            for w in &d.warnings {
                tracing::warn!(target: "wispctl::reconcile", "{w}");
            }
            Ok((force || d.digest != current).then_some(d))
        }
    }
}

/// Why the loop around the scheduler ended.
enum Next {
    Stop,
    /// The set of targets or their schedules changed: the scheduler starts again.
    Restart,
}

/// `wispctl reconcile`.
pub async fn reconcile(
    g: &Globals,
    o: &ReconcileOptions,
    out: &mut dyn Write,
) -> anyhow::Result<u8> {
    #[cfg(feature = "lab")]
    if let Some(dir) = &g.lab
        && !o.once
        && crate::lab::Runtime::served(dir)?.is_none()
    {
        eprintln!(
            "error: `reconcile --lab` runs against a served lab (`wispctl lab serve {}`), or with --once: twins of its own would not see what other commands write",
            dir.display()
        );
        return Ok(exit::ERROR);
    }
    let git = match &o.git {
        Some((remote, branch)) => {
            let src = match GitSource::open(&g.dir, remote, branch).await {
                Ok(s) => s,
                Err(e) => {
                    eprintln!("error: {e}");
                    return Ok(exit::ERROR);
                }
            };
            if let Err(e) = src.sync().await {
                eprintln!("error: {e}");
                return Ok(exit::ERROR);
            }
            Some(src)
        }
        None => None,
    };
    let Some(first) = loaded(g, desired::load(&g.dir, &resolver(g)?), false) else {
        return Ok(exit::ERROR);
    };
    std::fs::create_dir_all(&g.state_dir)
        .with_context(|| format!("cannot create state directory {}", g.state_dir.display()))?;
    let metrics = Arc::new(Metrics::new());
    let (quit_tx, quit_rx) = watch::channel(false);
    let server = match o.listen {
        Some(addr) => {
            let listener = tokio::net::TcpListener::bind(addr)
                .await
                .with_context(|| format!("cannot listen on {addr}"))?;
            let bound = listener.local_addr()?;
            writeln!(
                out,
                "Serving /healthz, /readyz and /metrics on http://{bound}"
            )?;
            let mut rx = quit_rx.clone();
            let stop = async move {
                let _ = rx.wait_for(|q| *q).await;
            };
            Some(tokio::spawn(metrics::serve(
                listener,
                metrics.clone(),
                stop,
            )))
        }
        None => None,
    };
    out.flush()?;
    let mut status = Status::load(&g.state_dir)
        .unwrap_or_else(|e| {
            tracing::warn!("{e}; starting a new history");
            None
        })
        .unwrap_or_default();
    let now = crate::controller::history::now();
    status.controller = crate::controller::history::ControllerInfo {
        pid: std::process::id(),
        host: crate::engine::lock::hostname(),
        started_at: now.clone(),
        stopped_at: None,
        desired_digest: first.digest.clone(),
        commit: match &git {
            Some(src) => src.head().await.ok(),
            None => None,
        },
        loaded_at: now,
        refused: None,
    };
    let first = Arc::new(first);
    let (stop_tx, stopping) = watch::channel(false);
    let generation = Arc::new(Generation::start(g, first.clone(), o.once).await?);
    let shared = Arc::new(Shared {
        g: g.clone(),
        status: Mutex::new(status),
        metrics: metrics.clone(),
        notify: Mutex::new(None),
        lock: ControllerLock {
            path: g.state_dir.join("apply.lock"),
            timeout: o.lock_timeout,
            taking: tokio::sync::Mutex::new(()),
            held: Mutex::new((0, None)),
        },
        due: Mutex::new(HashMap::new()),
        current: RwLock::new(generation),
        stopping,
        pending: Mutex::new(BTreeSet::new()),
    });
    shared.event("-", "started", format!("pid {}", std::process::id()));
    let client = notify::client().map_err(anyhow::Error::msg)?;
    set_notify(&shared, &first, &client).await;
    use tokio::signal::unix::{SignalKind, signal};
    let mut sigterm = signal(SignalKind::terminate())?;
    let mut sigint = signal(SignalKind::interrupt())?;
    let mut sighup = signal(SignalKind::hangup())?;
    let mut fingerprint = folder_fingerprint(&g.dir);
    let mut touched: Option<BTreeSet<String>> = None;
    let mut syncing: Option<tokio::task::JoinHandle<Result<Synced, GitError>>> = None;
    let mut code = exit::SUCCESS;
    loop {
        let generation = shared.generation();
        let d = generation.d.clone();
        let all = generation.addresses();
        let set: BTreeSet<String> = all.iter().map(|(_, a)| a.clone()).collect();
        match &touched {
            None => metrics.expect(set.iter().cloned()),
            Some(t) => metrics.reload(&set, t),
        }
        shared
            .status
            .lock()
            .expect("status lock")
            .retain_targets(&set);
        let now = Instant::now();
        let mut triggers: BTreeMap<String, Trigger> = BTreeMap::new();
        let entries: Vec<Entry> = {
            let due = shared.due.lock().expect("due lock");
            all.iter()
                .map(|(kind, a)| {
                    let trigger = Trigger::default();
                    triggers.insert(a.clone(), trigger.clone());
                    let at_once = touched.as_ref().is_none_or(|t| t.contains(a));
                    let first = match due.get(a) {
                        Some(when) if !at_once => when.saturating_duration_since(now),
                        _ => Duration::ZERO,
                    };
                    Entry {
                        key: a.clone(),
                        group: kind.to_string(),
                        schedule: d.reconcile.schedule(kind, a),
                        trigger,
                        first,
                    }
                })
                .collect()
        };
        let limits: HashMap<String, usize> = crate::kinds::ALL
            .iter()
            .map(|k| (k.name().to_string(), d.reconcile.concurrency(k.name())))
            .collect();
        let (sched_tx, sched_rx) = watch::channel(false);
        let s2 = shared.clone();
        let reconcile = move |address: String| {
            let shared = s2.clone();
            async move { reconcile_one(&shared, &address).await }
        };
        let s3 = shared.clone();
        let scheduled = move |address: &str, wait: Duration| {
            s3.due
                .lock()
                .expect("due lock")
                .insert(address.to_string(), Instant::now() + wait);
            let at = std::time::SystemTime::now() + wait;
            if let Some(t) = s3
                .status
                .lock()
                .expect("status lock")
                .targets
                .get_mut(address)
            {
                t.next_run_at = Some(humantime::format_rfc3339_seconds(at).to_string());
            }
            s3.save_status();
        };
        let mut scheduler = tokio::spawn(schedule::run(
            entries, limits, reconcile, scheduled, sched_rx,
        ));
        let mut poll = tokio::time::interval(d.reconcile.poll);
        poll.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        poll.tick().await;
        let next = loop {
            // A reload: the new desired state, forced (SIGHUP) or when the folder changed.
            let mut candidate: Option<(DesiredState, bool)> = None;
            tokio::select! {
                _ = sigterm.recv() => break Next::Stop,
                _ = sigint.recv() => break Next::Stop,
                _ = sighup.recv(), if !o.once => {
                    tracing::info!("SIGHUP: reloading the desired state");
                    let current = shared.generation().d.digest.clone();
                    if let Some(new) = reload(&shared, &current, true).await? {
                        candidate = Some((new, true));
                    }
                }
                _ = poll.tick(), if !o.once => {
                    match &git {
                        Some(src) if syncing.is_none() => {
                            let src = src.clone();
                            syncing = Some(tokio::spawn(async move { src.sync().await }));
                        }
                        Some(_) => {}
                        None => {
                            let now = folder_fingerprint(&g.dir);
                            if now != fingerprint {
                                fingerprint = now;
                                let current = shared.generation().d.digest.clone();
                                if let Some(new) = reload(&shared, &current, false).await? {
                                    candidate = Some((new, false));
                                }
                            }
                        }
                    }
                }
                synced = async { syncing.as_mut().expect("guarded").await }, if syncing.is_some() => {
                    syncing = None;
                    match synced {
                        Ok(Ok(Synced::UpToDate(_))) => {
                            let mut s = shared.status.lock().expect("status lock");
                            if s.controller.refused.is_some() && git_refusal(&s) {
                                s.controller.refused = None;
                                drop(s);
                                shared.save_status();
                            }
                        }
                        Ok(Ok(Synced::Advanced { from, to })) => {
                            shared.event("-", "fetched", format!("{} -> {}", short(&from), short(&to)));
                            let current = shared.generation().d.digest.clone();
                            if let Some(new) = reload(&shared, &current, false).await? {
                                shared.status.lock().expect("status lock").controller.commit = Some(to);
                                candidate = Some((new, false));
                            }
                        }
                        Ok(Err(e)) => shared.refused("git_refused", format!("git: {e}")),
                        Err(e) => tracing::error!("the git sync task ended abnormally: {e}"),
                    }
                }
                _ = wait_once(o.once, &metrics) => break Next::Stop,
                done = &mut scheduler => {
                    if let Err(e) = done {
                        tracing::error!("the scheduler ended abnormally: {e}");
                    }
                    code = exit::ERROR;
                    break Next::Stop;
                }
            }
            let Some((new, forced)) = candidate else {
                continue;
            };
            let new = Arc::new(new);
            let old = shared.generation();
            let t: BTreeSet<String> = if forced {
                new.target_digests.keys().cloned().collect()
            } else {
                new.target_digests
                    .iter()
                    .filter(|(a, digest)| old.d.target_digests.get(*a) != Some(*digest))
                    .map(|(a, _)| a.clone())
                    .collect()
            };
            let next_gen = match Generation::start(g, new.clone(), o.once).await {
                Ok(n) => Arc::new(n),
                Err(e) => {
                    shared.refused(
                        "reload_refused",
                        format!("{e:#}; the last good desired state keeps running"),
                    );
                    continue;
                }
            };
            let new_set: BTreeSet<String> =
                next_gen.addresses().into_iter().map(|(_, a)| a).collect();
            // A new interval, jitter, backoff or concurrency: the scheduler starts again.
            let schedules_moved = all.iter().any(|(kind, a)| {
                d.reconcile.schedule(kind, a) != new.reconcile.schedule(kind, a)
                    || d.reconcile.concurrency(kind) != new.reconcile.concurrency(kind)
            });
            shared
                .pending
                .lock()
                .expect("pending lock")
                .extend(t.iter().cloned());
            *shared.current.write().expect("generation lock") = next_gen;
            {
                let mut s = shared.status.lock().expect("status lock");
                s.controller.desired_digest = new.digest.clone();
                s.controller.loaded_at = crate::controller::history::now();
            }
            shared.event(
                "-",
                "reload",
                format!(
                    "{} target(s) touched: {}",
                    t.len(),
                    t.iter().cloned().collect::<Vec<_>>().join(", ")
                ),
            );
            set_notify(&shared, &new, &client).await;
            if new_set != set || schedules_moved {
                break Next::Restart;
            }
            metrics.reload(&set, &t);
            for a in &t {
                if let Some(trigger) = triggers.get(a) {
                    trigger.fire();
                }
            }
        };
        let _ = sched_tx.send(true);
        let mut next = next;
        if matches!(next, Next::Restart) {
            // A new set of targets: the reconciles in flight end on their own (each is bounded
            // by its target's deadlines), never cut mid-write; a signal meanwhile is a stop.
            tokio::select! {
                done = &mut scheduler => {
                    if let Err(e) = done {
                        tracing::error!("the scheduler ended abnormally: {e}");
                    }
                }
                _ = sigterm.recv() => next = Next::Stop,
                _ = sigint.recv() => next = Next::Stop,
            }
        }
        if matches!(next, Next::Stop) {
            let _ = stop_tx.send(true);
        }
        if matches!(next, Next::Stop) && !scheduler.is_finished() {
            match tokio::time::timeout(o.stop_grace, &mut scheduler).await {
                Ok(_) => {}
                Err(_) => {
                    tracing::warn!(
                        "reconciles still in flight after {}: abandoned (their locks are released)",
                        humantime::format_duration(o.stop_grace)
                    );
                    scheduler.abort();
                    let _ = scheduler.await;
                }
            }
        }
        if let Err(e) = shared.generation().targets.save() {
            tracing::warn!("cannot save the lab: {e}");
        }
        match next {
            Next::Stop => break,
            // The touched targets that have not begun a reconcile with the new state yet.
            Next::Restart => {
                touched = Some(shared.pending.lock().expect("pending lock").clone());
            }
        }
    }
    if let Some(s) = syncing.take() {
        s.abort();
    }
    if o.once {
        let s = shared.status.lock().expect("status lock");
        if s.targets.values().any(|t| t.outcome.is_failure()) {
            code = exit::ERROR;
        } else if s
            .targets
            .values()
            .any(|t| matches!(t.outcome, Outcome::Drift | Outcome::Blocked))
        {
            code = exit::CHANGES;
        }
    }
    shared
        .status
        .lock()
        .expect("status lock")
        .controller
        .stopped_at = Some(crate::controller::history::now());
    shared.event("-", "stopped", String::new());
    let sender = shared.notify.lock().expect("notify lock").take();
    if let Some((_, sender)) = sender {
        sender.flush(Duration::from_secs(10)).await;
        sender.stop().await;
    }
    let _ = quit_tx.send(true);
    if let Some(server) = server {
        let _ = server.await;
    }
    Ok(code)
}

/// Whether the status's refusal is a git one (cleared once a sync succeeds).
fn git_refusal(s: &Status) -> bool {
    s.controller
        .refused
        .as_deref()
        .is_some_and(|r| r.starts_with("git: "))
}

fn short(commit: &str) -> &str {
    &commit[..commit.len().min(12)]
}

/// (Re)starts notifications for a desired state: the tracker keeps what it was told; the
/// previous sender is kept when the notifiers did not change, else drained for a moment.
async fn set_notify(shared: &Shared, d: &DesiredState, client: &reqwest::Client) {
    // Swapped under the lock with no wait: no reconcile's notice falls between the two.
    let retired = {
        let mut guard = shared.notify.lock().expect("notify lock");
        let (new, retired) = next_notify(guard.take(), d, client, shared);
        *guard = new;
        retired
    };
    // What the previous notifiers still hold is given a moment to go out.
    if let Some(old) = retired {
        old.flush(Duration::from_secs(5)).await;
        old.stop().await;
    }
}

/// The notifications for `d` from the previous ones: the tracker kept, the sender kept when
/// its notifiers did not change; and the sender to retire.
fn next_notify(
    old: Option<(Tracker, Sender)>,
    d: &DesiredState,
    client: &reqwest::Client,
    shared: &Shared,
) -> (Option<(Tracker, Sender)>, Option<Sender>) {
    let (tracker, sender) = match old {
        Some((t, s)) => (Some(t), Some(s)),
        None => (None, None),
    };
    match d.reconcile.notify.clone() {
        None => (None, sender),
        Some(cfg) => {
            let (sender, retired) = match sender {
                Some(s) if s.config() == &cfg => (s, None),
                old => (
                    Sender::start(
                        cfg.clone(),
                        client.clone(),
                        shared.metrics.notifier_failures(),
                    ),
                    old,
                ),
            };
            let tracker = match tracker {
                Some(mut t) => {
                    t.reconfigure(&cfg);
                    t
                }
                None => Tracker::new(&cfg),
            };
            (Some((tracker, sender)), retired)
        }
    }
}

/// With `--once`: resolves when every target has been reconciled once.
async fn wait_once(once: bool, metrics: &Metrics) {
    if !once {
        return std::future::pending().await;
    }
    while !metrics.ready() {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// `wispctl status`.
pub fn status(g: &Globals, format: StatusFormat, out: &mut dyn Write) -> anyhow::Result<u8> {
    let s = match Status::load(&g.state_dir) {
        Ok(Some(s)) => s,
        Ok(None) => {
            eprintln!(
                "error: no controller status in {} (has `wispctl reconcile` run with this state folder?)",
                g.state_dir.display()
            );
            return Ok(exit::ERROR);
        }
        Err(e) => {
            eprintln!("error: {e}");
            return Ok(exit::ERROR);
        }
    };
    match format {
        StatusFormat::Json => {
            writeln!(out, "{}", serde_json::to_string_pretty(&s)?)?;
        }
        StatusFormat::Text => {
            let running = s.controller.stopped_at.is_none()
                && s.controller.host == crate::engine::lock::hostname()
                && std::path::Path::new(&format!("/proc/{}", s.controller.pid)).exists();
            s.text(out, running)?;
        }
    }
    Ok(exit::SUCCESS)
}

/// What `drift --notify` remembers of each target between runs (`drift-notified.json` in the
/// state folder): the state it last saw, so that only changes are notified.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case", tag = "state")]
enum Seen {
    InSync,
    Drifting { addresses: Vec<String> },
    Unreachable,
}

impl Seen {
    fn observed(&self) -> Observed {
        match self {
            Seen::InSync => Observed::InSync,
            Seen::Drifting { addresses } => Observed::Drifting {
                objects: addresses.len(),
                addresses: addresses.clone(),
            },
            Seen::Unreachable => Observed::Unreachable,
        }
    }
}

/// `drift --notify`: the notifications the controller would send, from one run. Each run is
/// one observation (no anti-flap across runs: `confirm_runs` and `unreachable_after` count as
/// 1); a target is notified when its state differs from the one the previous run saw.
pub(super) async fn notify_drift(
    g: &Globals,
    d: &DesiredState,
    plan: &crate::plan::Plan,
) -> anyhow::Result<()> {
    let Some(mut cfg) = d.reconcile.notify.clone() else {
        eprintln!(
            "warning: --notify: inventory.yaml has no reconcile.notify section; nothing was sent"
        );
        return Ok(());
    };
    cfg.confirm_runs = 1;
    cfg.unreachable_after = 1;
    let path = g.state_dir.join("drift-notified.json");
    let previous: BTreeMap<String, Seen> =
        crate::untrusted::file::read(&path, 16 * 1024 * 1024, None)
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or_default();
    let mut tracker = Tracker::new(&cfg);
    let sender = Sender::start(
        cfg,
        notify::client().map_err(anyhow::Error::msg)?,
        Arc::new(std::sync::atomic::AtomicU64::new(0)),
    );
    // Targets this run did not read (`--target`) keep what was seen of them.
    let mut now_seen = previous.clone();
    for t in &plan.targets {
        let seen = if t.error.is_some() {
            Seen::Unreachable
        } else if t.changes.is_empty() {
            Seen::InSync
        } else {
            Seen::Drifting {
                addresses: t.changes.iter().map(|c| c.address.clone()).collect(),
            }
        };
        if let Some(p) = previous.get(&t.address) {
            // The baseline: what was already told (no cooldown started).
            tracker.assume(&t.address, &t.kind, p.observed());
        }
        for n in tracker.observe(&t.address, &t.kind, seen.observed(), Instant::now()) {
            sender.send(n);
        }
        now_seen.insert(t.address.clone(), seen);
    }
    let delivered = sender.flush(Duration::from_secs(30)).await;
    sender.stop().await;
    if !delivered {
        // Not remembered: the next run notifies these changes again.
        eprintln!(
            "warning: --notify: some notifications could not be delivered within 30s; the next run sends them again"
        );
        return Ok(());
    }
    std::fs::create_dir_all(&g.state_dir)
        .with_context(|| format!("cannot create state directory {}", g.state_dir.display()))?;
    crate::files::write_atomic(&path, &serde_json::to_vec_pretty(&now_seen)?, 0o600)
        .with_context(|| format!("cannot write {}", path.display()))?;
    Ok(())
}
