//! `wispctl reconcile`: the controller. Each target is planned on its schedule
//! ([`crate::controller::schedule`]) over the same engine, guards and per-target isolation as
//! `apply`; in `apply` mode its drift is written inside the maintenance windows, under the
//! same lock as `apply`; every outcome goes to the history (`status.json`), the metrics and
//! the notifications. A change of the desired state (the folder, or with `--git` the remote
//! branch) reconciles the targets it touches at once; one that does not load keeps the last
//! good state running and is reported with its file:line:column. SIGHUP reloads;
//! SIGTERM/SIGINT stop new work, let reconciles in flight finish within a bound, and exit 0.
//!
//! `wispctl status` prints the history.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::io::Write;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context as _;
use tokio::sync::watch;
use tokio::time::Instant;

use super::{Globals, Targets, Writes, loaded, resolver};
use crate::controller::config::Mode;
use crate::controller::git::{GitSource, Synced, folder_fingerprint};
use crate::controller::history::{Outcome, Reconciled, Status};
use crate::controller::metrics::{self, Metrics};
use crate::controller::notify::{self, Observed, Sender, Tracker};
use crate::controller::schedule::{self, Entry, Trigger};
use crate::controller::window::Verdict;
use crate::desired::{self, DesiredState};
use crate::engine::TargetFilter;
use crate::engine::lock::ApplyLock;
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
    /// How long reconciles in flight may take to finish at a stop or reload.
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

/// What the controller shares between its reconciles.
struct Shared {
    g: Globals,
    status: Mutex<Status>,
    metrics: Arc<Metrics>,
    notify: Mutex<Option<(Tracker, Sender)>>,
    lock_timeout: Duration,
    /// When each target is next due (carried over reloads).
    due: Mutex<HashMap<String, Instant>>,
}

/// One desired state running: its targets reached, their kinds.
struct Generation {
    d: Arc<DesiredState>,
    targets: Targets,
}

impl Shared {
    fn save_status(&self) {
        let mut s = self.status.lock().expect("status lock");
        if let Err(e) = s.save(&self.g.state_dir) {
            tracing::warn!("cannot write the controller's status: {e}");
        }
    }

    /// Records one reconcile everywhere: history, metrics, notifications.
    fn record(&self, r: Reconciled<'_>, seen: Observed, took: Duration) {
        let m = match r.outcome {
            Outcome::InSync => metrics::Outcome::InSync,
            Outcome::Drift => metrics::Outcome::Drift,
            Outcome::Applied => metrics::Outcome::Applied,
            Outcome::Failed => metrics::Outcome::Failed,
            Outcome::Unreachable => metrics::Outcome::Unreachable,
            Outcome::Blocked => metrics::Outcome::Blocked,
        };
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
            .reconciled(r.target, r.kind, at, took, m, drifting);
        if r.outcome == Outcome::Applied {
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
        }
        self.status.lock().expect("status lock").record(r);
        self.save_status();
    }
}

/// Reconciles one target once: plan; in apply mode and when allowed, lock, plan again, apply.
/// `Err` when it failed (the scheduler backs off).
async fn reconcile_one(shared: &Shared, generation: &Generation, address: &str) -> Result<(), ()> {
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
        let lock_path = shared.g.state_dir.join("apply.lock");
        let command = format!("wispctl reconcile ({address})");
        let lock = match ApplyLock::acquire(&lock_path, shared.lock_timeout, &command).await {
            Ok(l) => l,
            Err(e) => break 'done (Outcome::Blocked, drifting, 0, Some(e.to_string())),
        };
        // Under the lock: what a hand-run apply may have written meanwhile is read again.
        drop(run);
        let run = engine().plan().await;
        let still: Vec<String> = run
            .plan
            .targets
            .iter()
            .filter(|t| t.address == address)
            .flat_map(|t| t.changes.iter().map(|c| c.address.clone()))
            .collect();
        if let Some(e) = run.plan.targets.iter().find_map(|t| t.error.clone()) {
            break 'done (Outcome::Unreachable, drifting, 0, Some(e));
        }
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
        let report = run.apply(&BTreeMap::new()).await;
        if let Err(e) = generation.targets.save() {
            tracing::warn!("cannot save the lab: {e}");
        }
        drop(lock);
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
    if outcome.is_failure() {
        Err(())
    } else {
        Ok(())
    }
}

/// Loads the desired state again; `None` when it does not load (reported, the last good one
/// keeps running) or did not change.
async fn reload(shared: &Shared, current: &str) -> anyhow::Result<Option<DesiredState>> {
    let g = shared.g.clone();
    let resolver = resolver(&g)?;
    let dir = g.dir.clone();
    let result = tokio::task::spawn_blocking(move || desired::load(&dir, &resolver))
        .await
        .context("loading the desired state")?;
    match result {
        Err(errors) => {
            let text = errors.to_string();
            eprintln!("{text}");
            eprintln!(
                "error: {} problem(s) in {}; the last good desired state keeps running",
                errors.0.len(),
                g.dir.display()
            );
            let mut s = shared.status.lock().expect("status lock");
            if s.controller.refused.as_deref() != Some(text.as_str()) {
                let first = text.lines().next().unwrap_or_default().to_string();
                s.event(
                    "-",
                    "reload_refused",
                    format!("{} problem(s): {first}", errors.0.len()),
                );
                s.controller.refused = Some(text);
            }
            drop(s);
            shared.save_status();
            Ok(None)
        }
        Ok(d) => {
            let changed = d.digest != current;
            {
                let mut s = shared.status.lock().expect("status lock");
                s.controller.refused = None;
            }
            Ok(changed.then_some(d))
        }
    }
}

enum Next {
    Stop,
    Reload(Box<DesiredState>),
}

/// `wispctl reconcile`.
pub async fn reconcile(
    g: &Globals,
    o: &ReconcileOptions,
    out: &mut dyn Write,
) -> anyhow::Result<u8> {
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
    let first = loaded(g, desired::load(&g.dir, &resolver(g)?), false);
    let Some(first) = first else {
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
    status.event("-", "started", format!("pid {}", std::process::id()));
    let shared = Arc::new(Shared {
        g: g.clone(),
        status: Mutex::new(status),
        metrics: metrics.clone(),
        notify: Mutex::new(None),
        lock_timeout: o.lock_timeout,
        due: Mutex::new(HashMap::new()),
    });
    shared.save_status();
    let client = notify::client().map_err(anyhow::Error::msg)?;
    let mut sigterm = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    let mut sighup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())?;
    let mut d = Arc::new(first);
    let mut touched: Option<BTreeSet<String>> = None;
    let mut fingerprint = folder_fingerprint(&g.dir);
    let mut code = exit::SUCCESS;
    loop {
        // Notifications: the tracker keeps what it was told over reloads; what the previous
        // sender still holds is given a moment to go out.
        let old = shared.notify.lock().expect("notify lock").take();
        let tracker = match old {
            Some((tracker, sender)) => {
                sender.flush(Duration::from_secs(5)).await;
                sender.stop().await;
                Some(tracker)
            }
            None => None,
        };
        *shared.notify.lock().expect("notify lock") = d.reconcile.notify.clone().map(|cfg| {
            let tracker = match tracker {
                Some(mut t) => {
                    t.reconfigure(&cfg);
                    t
                }
                None => Tracker::new(&cfg),
            };
            (
                tracker,
                Sender::start(cfg, client.clone(), metrics.notifier_failures()),
            )
        });
        let reporter = Reporter::quiet();
        let targets = match Targets::before_load(g, Writes::State, false, &reporter)? {
            Some(t) => t,
            None => Targets::start(g, &d, Writes::State, false, &reporter).await?,
        };
        let generation = Arc::new(Generation {
            d: d.clone(),
            targets,
        });
        let all = crate::kinds::engine(
            &d,
            &generation.targets.ctx,
            TargetFilter::All,
            d.guards.max_deletes,
        )
        .targets();
        metrics.expect(all.iter().map(|(_, a)| a.clone()));
        {
            let keep: BTreeSet<String> = all.iter().map(|(_, a)| a.clone()).collect();
            shared
                .status
                .lock()
                .expect("status lock")
                .retain_targets(&keep);
        }
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
        let (stop_tx, stop_rx) = watch::channel(false);
        let (s2, gen2) = (shared.clone(), generation.clone());
        let reconcile = move |address: String| {
            let (shared, generation) = (s2.clone(), gen2.clone());
            async move { reconcile_one(&shared, &generation, &address).await }
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
            entries, limits, reconcile, scheduled, stop_rx,
        ));
        let mut poll = tokio::time::interval(d.reconcile.poll);
        poll.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        poll.tick().await;
        let next = loop {
            tokio::select! {
                _ = sigterm.recv() => break Next::Stop,
                _ = tokio::signal::ctrl_c() => break Next::Stop,
                _ = sighup.recv() => {
                    tracing::info!("SIGHUP: reloading the desired state");
                    if let Some(new) = reload(&shared, &d.digest).await? {
                        break Next::Reload(Box::new(new));
                    }
                }
                _ = poll.tick() => {
                    if let Some(src) = &git {
                        match src.sync().await {
                            Ok(Synced::UpToDate(_)) => continue,
                            Ok(Synced::Advanced { from, to }) => {
                                tracing::info!("fast-forwarded {from} to {to}");
                                shared.status.lock().expect("status lock").controller.commit = Some(to.clone());
                                shared.status.lock().expect("status lock").event("-", "fetched", format!("{} -> {}", &from[..from.len().min(12)], &to[..to.len().min(12)]));
                            }
                            Err(e) => {
                                let text = e.to_string();
                                let mut s = shared.status.lock().expect("status lock");
                                if s.controller.refused.as_deref() != Some(text.as_str()) {
                                    eprintln!("error: {text}");
                                    s.event("-", "git_refused", text.clone());
                                    s.controller.refused = Some(text);
                                }
                                drop(s);
                                shared.save_status();
                                continue;
                            }
                        }
                    } else {
                        let now = folder_fingerprint(&g.dir);
                        if now == fingerprint {
                            continue;
                        }
                        fingerprint = now;
                    }
                    if let Some(new) = reload(&shared, &d.digest).await? {
                        break Next::Reload(Box::new(new));
                    }
                    shared.save_status();
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
        };
        let _ = stop_tx.send(true);
        if !scheduler.is_finished() {
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
        if let Err(e) = generation.targets.save() {
            tracing::warn!("cannot save the lab: {e}");
        }
        drop(triggers);
        match next {
            Next::Stop => break,
            Next::Reload(new) => {
                let new = Arc::new(*new);
                let t: BTreeSet<String> = new
                    .target_digests
                    .iter()
                    .filter(|(a, digest)| d.target_digests.get(*a) != Some(*digest))
                    .map(|(a, _)| a.clone())
                    .collect();
                {
                    let mut s = shared.status.lock().expect("status lock");
                    s.controller.desired_digest = new.digest.clone();
                    s.controller.loaded_at = crate::controller::history::now();
                    s.event(
                        "-",
                        "reload",
                        format!(
                            "{} target(s) touched: {}",
                            t.len(),
                            t.iter().cloned().collect::<Vec<_>>().join(", ")
                        ),
                    );
                }
                shared.save_status();
                for w in &new.warnings {
                    eprintln!("{w}");
                }
                touched = Some(t);
                d = new;
            }
        }
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
    {
        let mut s = shared.status.lock().expect("status lock");
        s.controller.stopped_at = Some(crate::controller::history::now());
        s.event("-", "stopped", String::new());
    }
    shared.save_status();
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
    let previous: BTreeMap<String, Seen> = std::fs::read(&path)
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or_default();
    let mut tracker = Tracker::new(&cfg);
    let sender = Sender::start(
        cfg,
        notify::client().map_err(anyhow::Error::msg)?,
        Arc::new(std::sync::atomic::AtomicU64::new(0)),
    );
    let mut now_seen = BTreeMap::new();
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
    std::fs::create_dir_all(&g.state_dir)
        .with_context(|| format!("cannot create state directory {}", g.state_dir.display()))?;
    crate::files::write_atomic(&path, &serde_json::to_vec_pretty(&now_seen)?, 0o600)
        .with_context(|| format!("cannot write {}", path.display()))?;
    if !sender.flush(Duration::from_secs(30)).await {
        eprintln!("warning: --notify: some notifications could not be delivered within 30s");
    }
    sender.stop().await;
    Ok(())
}
