//! The commands, between the CLI and the engine: load the desired state, set up where targets
//! are reached (real addresses, or the lab's twins), build the engine, render, write plan
//! files, hold the lock, ask for approval, and choose the exit code. Errors get their context
//! here, at the edge; the library below stays typed. No command names a kind: `validate`,
//! `import` and `accept-host-key` ask the registry.

mod reconcile;

pub use reconcile::{ReconcileOptions, StatusFormat, reconcile, status};

use std::collections::BTreeMap;
use std::io::{BufRead, IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context as _, bail};

use crate::desired::{self, DesiredState};
use crate::engine::lock::ApplyLock;
use crate::engine::{self, Context, Engine, PlannedRun, TargetFilter};
use crate::exit;
use crate::files::write_atomic;
use crate::plan::render::{Format, Purpose, json, markdown, text};
use crate::plan::{FORMAT_VERSION, Plan};
use crate::progress::Reporter;
use crate::secret::{HashKey, SecretResolver};

/// Options every command shares.
#[derive(Debug, Clone)]
pub struct Globals {
    /// The desired-state folder.
    pub dir: PathBuf,
    /// Where the hash key, the lock and other state live.
    pub state_dir: PathBuf,
    /// Lab folder: every target is its lab twin.
    #[cfg(feature = "lab")]
    pub lab: Option<PathBuf>,
    /// Colour in text output.
    pub color: bool,
}

/// Options of `plan` and `drift`.
#[derive(Debug, Clone)]
pub struct ReadOptions {
    /// Output format.
    pub format: Format,
    /// Save the plan (JSON) here.
    pub out: Option<PathBuf>,
    /// `--target` globs.
    pub targets: Vec<String>,
    /// Exit 2 when there are changes.
    pub detailed_exitcode: bool,
    /// Overrides `guards.max_deletes`.
    pub max_deletes: Option<usize>,
    /// Overrides `guards.max_disconnects`.
    pub max_disconnects: Option<usize>,
    /// Trust-on-first-use for SSH host keys.
    pub trust_new_host_keys: bool,
    /// Plan against this snapshot instead of reading the targets (`plan --snapshot`).
    pub snapshot: Option<PathBuf>,
    /// The oldest snapshot accepted.
    pub max_age: Duration,
    /// With `snapshot`: desired secrets that cannot be resolved are not compared.
    pub not_compared: bool,
    /// `drift --notify`.
    pub notify: bool,
}

/// Options of `snapshot`.
#[derive(Debug, Clone)]
pub struct SnapshotOptions {
    /// Where to write it (default `STATE_DIR/snapshot.json`).
    pub out: Option<PathBuf>,
    /// `--target` globs.
    pub targets: Vec<String>,
}

/// Options of `apply`.
#[derive(Debug, Clone)]
pub struct ApplyOptions {
    /// A saved plan to apply.
    pub plan_file: Option<PathBuf>,
    /// Apply without asking.
    pub auto_approve: bool,
    /// Lock file (default `STATE_DIR/apply.lock`).
    pub lock_file: Option<PathBuf>,
    /// How long to wait for another apply.
    pub lock_timeout: Duration,
    /// Also write the apply report as JSON here.
    pub report_file: Option<PathBuf>,
    /// Write outside the maintenance windows (a person at a terminal only).
    pub ignore_windows: bool,
    /// Target selection and guards.
    pub read: ReadOptions,
}

/// Options of `import`.
#[derive(Debug, Clone)]
pub struct ImportOptions {
    /// The kind (`pppoe`).
    pub kind: String,
    /// The target's name (router, UISP server).
    pub target: String,
    /// YAML destination.
    pub out: Option<PathBuf>,
    /// Destination of the secrets the YAML references.
    pub secrets_file: Option<PathBuf>,
    /// Overwrite the YAML.
    pub force: bool,
}

/// The default state folder: `$XDG_STATE_HOME/wispctl`, else `~/.local/state/wispctl`.
pub fn default_state_dir() -> PathBuf {
    if let Some(x) = std::env::var_os("XDG_STATE_HOME") {
        return PathBuf::from(x).join("wispctl");
    }
    match std::env::var_os("HOME") {
        Some(h) => PathBuf::from(h).join(".local/state/wispctl"),
        None => PathBuf::from(".wispctl-state"),
    }
}

fn resolver(g: &Globals) -> anyhow::Result<SecretResolver> {
    #[cfg_attr(not(feature = "lab"), allow(unused_mut))]
    let mut r = SecretResolver::new();
    #[cfg(feature = "lab")]
    if let Some(lab) = &g.lab {
        let values = crate::lab::secrets(lab)
            .with_context(|| format!("cannot read lab secrets in {}", lab.display()))?;
        r = r.with_fallback_env(values);
    }
    #[cfg(not(feature = "lab"))]
    let _ = g;
    Ok(r)
}

/// Loads and validates; prints warnings and errors to stderr. `None` on errors.
fn load(g: &Globals) -> anyhow::Result<Option<DesiredState>> {
    Ok(loaded(g, desired::load(&g.dir, &resolver(g)?), false))
}

/// Prints a load's warnings, or its errors and that nothing was written (nor read, unless
/// reads had begun early: see [`load_reading_early`]).
fn loaded(
    g: &Globals,
    result: Result<DesiredState, desired::LoadErrors>,
    read_early: bool,
) -> Option<DesiredState> {
    match result {
        Ok(d) => {
            for w in &d.warnings {
                eprintln!("{w}");
            }
            Some(d)
        }
        Err(errors) => {
            eprintln!("{errors}");
            let what = if read_early {
                "nothing was written to any target (the reads begun meanwhile were abandoned)"
            } else {
                "nothing was read from or written to any target"
            };
            eprintln!(
                "error: {} problem(s) in {}; {what}",
                errors.0.len(),
                g.dir.display()
            );
            None
        }
    }
}

/// Loads the desired state for a command that changes nothing on a target (`plan`, `drift`),
/// reading its targets meanwhile: once the inventory is loaded, each kind begins reading the
/// targets `filter` covers that have a resource file named after them, while the resource
/// files are parsed on the blocking pool ([`crate::engine::early`]). Not with an in-process
/// lab (its twins start from the desired state), nor when the command writes state (`plan
/// --out`). `None` when the folder does not load (the reads begun are abandoned: their
/// connections close).
async fn load_reading_early(
    g: &Globals,
    writes: Writes,
    trust_new_host_keys: bool,
    reporter: &Reporter,
    filter: &TargetFilter,
) -> anyhow::Result<Option<(DesiredState, Targets)>> {
    let inventory = desired::Inventory::begin(&g.dir, resolver(g)?);
    // `plan --out` creates the hash key: not before the folder is known to load (a refused
    // command creates nothing), so it reads after loading, as apply does.
    let early = if inventory.is_valid() && writes == Writes::Nothing {
        Targets::before_load(g, writes, trust_new_host_keys, reporter)?
    } else {
        None
    };
    let mut begun = 0;
    if let Some(t) = &early {
        for kind in crate::kinds::ALL {
            let Some(section) = inventory.section(kind.name()) else {
                continue;
            };
            let wanted = |name: &str| {
                filter.matches(&crate::plan::target_address(kind.name(), name))
                    && inventory.has_file_named(kind.name(), name)
            };
            begun += kind.read_early(section, &wanted, &t.ctx);
        }
    }
    let result = tokio::task::spawn_blocking(move || inventory.finish())
        .await
        .context("loading the desired state")?;
    let Some(d) = loaded(g, result, begun > 0) else {
        return Ok(None);
    };
    let t = match early {
        Some(t) => t,
        None => Targets::start(g, &d, writes, trust_new_host_keys, reporter).await?,
    };
    Ok(Some((d, t)))
}

/// Whether a command may write state (the hash key, remembered state): `plan` and `drift`
/// write nothing anywhere.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Writes {
    Nothing,
    State,
}

/// Where targets are reached for one command, and the lab twins when in a lab.
struct Targets {
    ctx: Context,
    #[cfg(feature = "lab")]
    lab: Option<crate::lab::Runtime>,
}

impl Targets {
    async fn start(
        g: &Globals,
        d: &DesiredState,
        writes: Writes,
        trust_new_host_keys: bool,
        reporter: &Reporter,
    ) -> anyhow::Result<Targets> {
        #[cfg_attr(not(feature = "lab"), allow(unused_mut))]
        let mut ctx = Targets::context(g, writes, trust_new_host_keys, reporter)?;
        #[cfg(feature = "lab")]
        {
            let lab = match &g.lab {
                Some(dir) => {
                    let rt = crate::lab::Runtime::start(dir, d).await?;
                    ctx = ctx.with_endpoints(rt.endpoints());
                    Some(rt)
                }
                None => None,
            };
            Ok(Targets { ctx, lab })
        }
        #[cfg(not(feature = "lab"))]
        {
            let _ = d;
            Ok(Targets { ctx })
        }
    }

    /// Targets reached without the desired state, so before it is loaded: the inventory's
    /// addresses, or the twins a `lab serve` process runs. `None` when the lab's twins would
    /// start in this process (they start from the desired state).
    fn before_load(
        g: &Globals,
        writes: Writes,
        trust_new_host_keys: bool,
        reporter: &Reporter,
    ) -> anyhow::Result<Option<Targets>> {
        #[cfg(feature = "lab")]
        let lab = match &g.lab {
            Some(dir) => match crate::lab::Runtime::served(dir)? {
                Some(rt) => Some(rt),
                None => return Ok(None),
            },
            None => None,
        };
        #[cfg_attr(not(feature = "lab"), allow(unused_mut))]
        let mut ctx = Targets::context(g, writes, trust_new_host_keys, reporter)?;
        #[cfg(feature = "lab")]
        {
            if let Some(rt) = &lab {
                ctx = ctx.with_endpoints(rt.endpoints());
            }
            Ok(Some(Targets { ctx, lab }))
        }
        #[cfg(not(feature = "lab"))]
        Ok(Some(Targets { ctx }))
    }

    /// The hash key (created only by a command that may write state) and the context.
    fn context(
        g: &Globals,
        writes: Writes,
        trust_new_host_keys: bool,
        reporter: &Reporter,
    ) -> anyhow::Result<Context> {
        let key = match writes {
            Writes::Nothing => HashKey::load_or_ephemeral(&g.state_dir)?,
            Writes::State => {
                std::fs::create_dir_all(&g.state_dir).with_context(|| {
                    format!("cannot create state directory {}", g.state_dir.display())
                })?;
                HashKey::load_or_create(&g.state_dir)?
            }
        };
        let mut ctx = Context::new(Arc::new(key), g.state_dir.clone());
        ctx.trust_new_host_keys = trust_new_host_keys;
        ctx.events = reporter.events();
        Ok(ctx)
    }

    /// After a command that wrote: the lab's twins keep what was written.
    fn save(&self) -> anyhow::Result<()> {
        #[cfg(feature = "lab")]
        if let Some(lab) = &self.lab {
            lab.save()?;
        }
        Ok(())
    }
}

fn engine_for(d: &DesiredState, o: &ReadOptions, ctx: &Context, filter: TargetFilter) -> Engine {
    crate::kinds::engine(
        d,
        ctx,
        filter,
        o.max_deletes.unwrap_or(d.guards.max_deletes),
    )
    .with_max_disconnects(o.max_disconnects.unwrap_or(d.guards.max_disconnects))
}

fn render(plan: &Plan, purpose: Purpose, format: Format, color: bool) -> String {
    match format {
        Format::Text => text::plan(plan, purpose, text::Paint(color)),
        Format::Markdown => markdown::plan(plan, purpose),
        Format::Json => json::plan(plan),
    }
}

/// `validate`: load and check everything offline. Exit 0 or 1.
pub fn validate(g: &Globals, out: &mut dyn Write) -> anyhow::Result<u8> {
    let Some(d) = load(g)? else {
        return Ok(exit::ERROR);
    };
    let parts: Vec<String> = crate::kinds::ALL.iter().map(|k| k.summary(&d)).collect();
    writeln!(out, "{}: valid ({})", g.dir.display(), parts.join(", "))?;
    Ok(exit::SUCCESS)
}

/// `lab serve DIR`: the twins of the desired state's targets, served until a signal.
#[cfg(feature = "lab")]
async fn lab_serve(g: &Globals, dir: &Path, out: &mut dyn Write) -> anyhow::Result<u8> {
    // The lab's secret values stand in for unset `{ env: NAME }` references, as with `--lab`.
    let g = &Globals {
        lab: Some(dir.to_path_buf()),
        ..g.clone()
    };
    let Some(d) = load(g)? else {
        return Ok(exit::ERROR);
    };
    crate::lab::serve(dir, &d, out).await?;
    Ok(exit::SUCCESS)
}

/// `plan`: observe, diff, render; optionally save. Writes nothing but the plan file.
pub async fn plan(g: &Globals, o: &ReadOptions, out: &mut dyn Write) -> anyhow::Result<u8> {
    if let Some(path) = &o.snapshot {
        return plan_offline(g, o, path, out).await;
    }
    let filter = TargetFilter::new(&o.targets).context("invalid --target glob")?;
    // A saved plan is applied elsewhere with the same key: it needs one that lasts.
    let writes = if o.out.is_some() {
        Writes::State
    } else {
        Writes::Nothing
    };
    let reporter = Reporter::for_output(o.format);
    let Some((d, t)) =
        load_reading_early(g, writes, o.trust_new_host_keys, &reporter, &filter).await?
    else {
        return Ok(exit::ERROR);
    };
    let run = engine_for(&d, o, &t.ctx, filter).plan().await;
    // Reads begun early that no target took (a file named after one router names another)
    // are aborted now.
    t.ctx.early.clear();
    reporter.finish();
    show_plan(g, o, run, d, out)
}

/// Renders a plan, saves it with `--out`, and gives the exit code; the run's memory is left
/// to the process's exit.
fn show_plan(
    g: &Globals,
    o: &ReadOptions,
    run: PlannedRun,
    d: DesiredState,
    out: &mut dyn Write,
) -> anyhow::Result<u8> {
    write!(
        out,
        "{}",
        render(&run.plan, Purpose::Plan, o.format, g.color)
    )?;
    if let Some(path) = &o.out {
        write_atomic(path, json::plan(&run.plan).as_bytes(), 0o600)
            .with_context(|| format!("cannot write plan file {}", path.display()))?;
        if o.format == Format::Text {
            writeln!(
                out,
                "Saved the plan to {}; apply it with `wispctl apply {}`.",
                path.display(),
                path.display()
            )?;
        }
    }
    let code = read_exit(&run.plan, o.detailed_exitcode);
    free_later((run, d));
    Ok(code)
}

/// `plan --snapshot FILE`: plans against what the snapshot read, with the same diff code and no
/// network at all (no early reads, no lab twins, no target contacted). The snapshot must be
/// made under this key (`WISPCTL_HASH_KEY` or the state folder's), unaltered, and not older
/// than `--max-age`.
async fn plan_offline(
    g: &Globals,
    o: &ReadOptions,
    path: &Path,
    out: &mut dyn Write,
) -> anyhow::Result<u8> {
    let filter = TargetFilter::new(&o.targets).context("invalid --target glob")?;
    if o.not_compared && o.out.is_some() {
        eprintln!(
            "error: a plan with secrets not compared cannot be saved: apply would refuse it (--out with --unresolved-secrets not-compared)"
        );
        return Ok(exit::ERROR);
    }
    let Some(key) = HashKey::load(&g.state_dir)? else {
        eprintln!(
            "error: no hash key to check the snapshot with: set WISPCTL_HASH_KEY to the key of the host that took it (or use its state folder)"
        );
        return Ok(exit::ERROR);
    };
    let snapshot = match crate::snapshot::Snapshot::read(path, &key, o.max_age) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("error: {e}");
            return Ok(exit::ERROR);
        }
    };
    // The inventory's connection credentials are not needed: no target is contacted.
    let resolver = if o.not_compared {
        resolver(g)?.not_compared()
    } else {
        resolver(g)?.offline()
    };
    let Some(d) = loaded(g, desired::load(&g.dir, &resolver), false) else {
        return Ok(exit::ERROR);
    };
    let reporter = Reporter::for_output(o.format);
    let mut ctx = Context::new(Arc::new(key), g.state_dir.clone());
    ctx.events = reporter.events();
    let info = crate::plan::SnapshotInfo {
        taken_at: snapshot.taken_at.clone(),
        host: snapshot.host.clone(),
        age_secs: snapshot.age().as_secs(),
    };
    let source = engine::Source {
        replay: Some(Arc::new(engine::Replay(snapshot.targets))),
        record: None,
    };
    let mut run = engine_for(&d, o, &ctx, filter)
        .with_source(source)
        .plan()
        .await;
    reporter.finish();
    run.plan.snapshot = Some(info);
    show_plan(g, o, run, d, out)
}

/// `wispctl snapshot`: reads every target once, as plan does, and writes what was read with no
/// secret value, authenticated under the state folder's key (created if needed), mode 0600.
/// Exit 1 when a target could not be read (the snapshot is written anyway, saying why).
pub async fn snapshot(g: &Globals, o: &SnapshotOptions, out: &mut dyn Write) -> anyhow::Result<u8> {
    let filter = TargetFilter::new(&o.targets).context("invalid --target glob")?;
    let Some(d) = load(g)? else {
        return Ok(exit::ERROR);
    };
    let reporter = Reporter::for_output(Format::Text);
    let t = Targets::start(g, &d, Writes::State, false, &reporter).await?;
    let recorder = Arc::new(engine::Recorder::default());
    let source = engine::Source {
        replay: None,
        record: Some(recorder.clone()),
    };
    let run = crate::kinds::engine(&d, &t.ctx, filter, d.guards.max_deletes)
        .with_source(source)
        .plan()
        .await;
    reporter.finish();
    let snapshot = crate::snapshot::Snapshot::new(recorder.take(), &d.digest);
    let path = o
        .out
        .clone()
        .unwrap_or_else(|| g.state_dir.join("snapshot.json"));
    snapshot
        .write(&path, &t.ctx.key)
        .with_context(|| format!("cannot write snapshot {}", path.display()))?;
    let unread: Vec<&String> = snapshot
        .targets
        .iter()
        .filter(|(_, r)| r.error.is_some())
        .map(|(a, _)| a)
        .collect();
    for (a, r) in &snapshot.targets {
        if let Some(e) = &r.error {
            writeln!(out, "{a}: {e}")?;
        }
    }
    writeln!(
        out,
        "Wrote a snapshot of {} target(s) ({} unreadable), taken at {}, to {}.",
        snapshot.targets.len(),
        unread.len(),
        snapshot.taken_at,
        path.display()
    )?;
    drop(run);
    Ok(if unread.is_empty() {
        exit::SUCCESS
    } else {
        exit::ERROR
    })
}

/// `wispctl init DIR`.
fn init(dir: &Path, out: &mut dyn Write) -> anyhow::Result<u8> {
    match crate::init::init(dir) {
        Ok(written) => {
            for f in &written {
                writeln!(out, "wrote {}", dir.join(f).display())?;
            }
            writeln!(
                out,
                "\nA network repository in {}: replace the examples under desired-state/ with your own (wispctl import helps), read its README.md, then commit it.",
                dir.display()
            )?;
            Ok(exit::SUCCESS)
        }
        Err(e) => {
            eprintln!("error: {e}");
            Ok(exit::ERROR)
        }
    }
}

/// Set by [`main`]: the process ends when the command returns.
static PROCESS_ENDS: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// What a command no longer needs once its output is written: left to the process's exit
/// when the command ends the process (run through [`main`], the binary, `lab demo` included:
/// a few small plans): freeing the maps of a plan of thousands of objects one by one took
/// longer than rendering it (bench/README.md, P1), and the exit returns the memory at once.
/// Dropped as usual when the library runs the command otherwise (tests, another program).
/// Only memory is left: connections and files are closed by then (the engine's reads are
/// done, and reads begun early and never taken were aborted).
fn free_later<T>(v: T) {
    if PROCESS_ENDS.load(std::sync::atomic::Ordering::Relaxed) {
        std::mem::forget(v);
    } else {
        drop(v);
    }
}

fn read_exit(plan: &Plan, detailed: bool) -> u8 {
    if !plan.problems().is_empty() {
        exit::ERROR
    } else if detailed && plan.has_changes() {
        exit::CHANGES
    } else {
        exit::SUCCESS
    }
}

/// `drift`: like plan, read-only by construction (it never holds the apply path, and writes
/// nothing anywhere), exit 2 when anything differs.
pub async fn drift(g: &Globals, o: &ReadOptions, out: &mut dyn Write) -> anyhow::Result<u8> {
    let filter = TargetFilter::new(&o.targets).context("invalid --target glob")?;
    let reporter = Reporter::for_output(o.format);
    let Some((d, t)) = load_reading_early(
        g,
        Writes::Nothing,
        o.trust_new_host_keys,
        &reporter,
        &filter,
    )
    .await?
    else {
        return Ok(exit::ERROR);
    };
    let run = engine_for(&d, o, &t.ctx, filter).plan().await;
    // Reads begun early that no target took (a file named after one router names another)
    // are aborted now.
    t.ctx.early.clear();
    reporter.finish();
    write!(
        out,
        "{}",
        render(&run.plan, Purpose::Drift, o.format, g.color)
    )?;
    if o.notify {
        reconcile::notify_drift(g, &d, &run.plan).await?;
    }
    let code = read_exit(&run.plan, true);
    free_later((run, d)); // the apply half of the run is never used
    Ok(code)
}

/// `apply [FILE]`: under the lock, plan (or re-check a saved plan), ask, apply, report.
pub async fn apply(g: &Globals, o: &ApplyOptions, out: &mut dyn Write) -> anyhow::Result<u8> {
    let saved = match &o.plan_file {
        Some(p) => Some(read_plan(p)?),
        None => None,
    };
    let Some(d) = load(g)? else {
        return Ok(exit::ERROR);
    };
    // Approval is asked on a terminal only: without one, and without --auto-approve, the
    // command is refused before it creates anything (the state folder, its key, the lock).
    if !o.auto_approve && !std::io::stdin().is_terminal() {
        bail!(NO_APPROVAL);
    }
    if o.ignore_windows && !std::io::stdin().is_terminal() {
        bail!(
            "refusing --ignore-windows without a terminal: outside the maintenance windows only a person may write"
        );
    }
    // A saved plan decides which targets it covers (none at all when it has none).
    let filter = match &saved {
        Some(s) => TargetFilter::exactly(s.targets.iter().map(|t| t.address.clone())),
        None => TargetFilter::new(&o.read.targets).context("invalid --target glob")?,
    };
    std::fs::create_dir_all(&g.state_dir)
        .with_context(|| format!("cannot create state directory {}", g.state_dir.display()))?;
    let lock_path = o
        .lock_file
        .clone()
        .unwrap_or_else(|| g.state_dir.join("apply.lock"));
    let command: Vec<String> = std::env::args().collect();
    let lock = match ApplyLock::acquire(&lock_path, o.lock_timeout, &command.join(" ")).await {
        Ok(l) => l,
        Err(e) => {
            eprintln!("error: {e}");
            return Ok(exit::ERROR);
        }
    };
    if let Some(h) = &lock.taken_over {
        eprintln!("warning: took over the apply lock left by {h}");
    }
    // A run that ends before its report leaves none, never the previous run's.
    if let Some(path) = &o.report_file {
        match std::fs::remove_file(path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => {
                return Err(e).with_context(|| {
                    format!("cannot remove the previous apply report {}", path.display())
                });
            }
        }
    }
    let reporter = Reporter::for_output(Format::Text);
    let t = Targets::start(g, &d, Writes::State, o.read.trust_new_host_keys, &reporter).await?;
    let run: PlannedRun = engine_for(&d, &o.read, &t.ctx, filter).plan().await;
    reporter.finish();
    let refusals = match &saved {
        Some(s) => match engine::check_saved(s, &run.plan) {
            Ok(r) => r,
            Err(e) => {
                eprintln!("error: {e}; nothing was written");
                return Ok(exit::ERROR);
            }
        },
        None => BTreeMap::new(),
    };
    write!(
        out,
        "{}",
        text::plan(&run.plan, Purpose::Plan, text::Paint(g.color))
    )?;
    for (t, why) in &refusals {
        writeln!(out, "{t}: refused: {why}")?;
    }
    if !run.plan.has_changes() {
        let clean = run.plan.problems().is_empty() && refusals.is_empty();
        // Nothing to change: only what reading the targets learned is kept.
        let report = run.apply(&refusals).await;
        t.save()?;
        write_report(o, &report)?;
        drop(lock);
        return Ok(if clean { exit::SUCCESS } else { exit::ERROR });
    }
    // Maintenance windows: outside them nothing unattended writes; a person at a terminal
    // may override explicitly.
    let verdict = d.reconcile.windows.check(jiff::Timestamp::now());
    if verdict != crate::controller::window::Verdict::Open {
        let why = d.reconcile.windows.describe(&verdict);
        if o.ignore_windows {
            writeln!(out, "warning: {why}; writing anyway (--ignore-windows)")?;
        } else {
            writeln!(
                out,
                "Not applied: {why} (reconcile.windows in inventory.yaml); nothing was written. A person at a terminal may pass --ignore-windows."
            )?;
            // Every change is reported skipped, with the reason (`--report`).
            let held: BTreeMap<String, String> = run
                .plan
                .targets
                .iter()
                .map(|t| (t.address.clone(), why.clone()))
                .collect();
            let report = run.apply(&held).await;
            write_report(o, &report)?;
            drop(lock);
            return Ok(exit::SUCCESS);
        }
    }
    if !o.auto_approve && !confirm(out)? {
        writeln!(out, "Apply cancelled; nothing was written.")?;
        return Ok(exit::ERROR);
    }
    let report = run.apply(&refusals).await;
    reporter.finish();
    t.save()?;
    write!(out, "{}", text::report(&report, text::Paint(g.color)))?;
    write_report(o, &report)?;
    drop(lock);
    Ok(if report.succeeded() {
        exit::SUCCESS
    } else {
        exit::ERROR
    })
}

/// `--report FILE`: the report as JSON, written atomically while the lock is held.
fn write_report(o: &ApplyOptions, report: &crate::plan::report::ApplyReport) -> anyhow::Result<()> {
    if let Some(path) = &o.report_file {
        crate::files::write_atomic(
            path,
            crate::plan::render::json::report(report).as_bytes(),
            0o644,
        )
        .with_context(|| format!("cannot write the apply report to {}", path.display()))?;
    }
    Ok(())
}

fn read_plan(path: &Path) -> anyhow::Result<Plan> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read plan file {}", path.display()))?;
    let v: serde_json::Value = serde_json::from_str(&text)
        .with_context(|| format!("{} is not a plan file (invalid JSON)", path.display()))?;
    let version = v.get("format_version").and_then(|x| x.as_u64());
    if version != Some(u64::from(FORMAT_VERSION)) {
        bail!(
            "{}: plan format_version {version:?} is not supported (this wispctl reads {FORMAT_VERSION})",
            path.display()
        );
    }
    serde_json::from_value(v)
        .with_context(|| format!("{} is not a valid plan file", path.display()))
}

/// Why an apply without `--auto-approve` and without a terminal is refused.
const NO_APPROVAL: &str =
    "refusing to apply without approval: there is no terminal to ask on; pass --auto-approve";

fn confirm(out: &mut dyn Write) -> anyhow::Result<bool> {
    if !std::io::stdin().is_terminal() {
        bail!(NO_APPROVAL);
    }
    write!(out, "\nApply these changes? Only 'yes' is accepted: ")?;
    out.flush()?;
    let mut line = String::new();
    std::io::stdin().lock().read_line(&mut line)?;
    Ok(line.trim() == "yes")
}

/// `schema`: writes (or, with `check`, compares) the JSON Schemas.
pub fn schema(dir: &Path, check: bool, out: &mut dyn Write) -> anyhow::Result<u8> {
    let mut stale = Vec::new();
    for (name, text) in crate::schemas::all() {
        let path = dir.join(&name);
        if check {
            if std::fs::read_to_string(&path).ok().as_deref() != Some(text.as_str()) {
                stale.push(path.display().to_string());
            }
        } else {
            std::fs::create_dir_all(dir)?;
            write_atomic(&path, text.as_bytes(), 0o644)
                .with_context(|| format!("cannot write {}", path.display()))?;
            writeln!(out, "wrote {}", path.display())?;
        }
    }
    if !stale.is_empty() {
        eprintln!(
            "error: stale schemas (run `wispctl schema`): {}",
            stale.join(", ")
        );
        return Ok(exit::ERROR);
    }
    Ok(exit::SUCCESS)
}

/// `import KIND TARGET`: reads the target once and writes YAML that plans to no changes; the
/// secrets it references go to a separate file (mode 0600), never into the desired-state
/// folder.
pub async fn import(g: &Globals, o: &ImportOptions, out: &mut dyn Write) -> anyhow::Result<u8> {
    let Some(kind) = crate::kinds::by_name(&o.kind) else {
        let names: Vec<&str> = crate::kinds::ALL.iter().map(|k| k.name()).collect();
        bail!("unknown kind {:?} (kinds: {})", o.kind, names.join(", "));
    };
    let Some(d) = load(g)? else {
        return Ok(exit::ERROR);
    };
    if !kind.has_target(&d, &o.target) {
        bail!(
            "{} {:?} is not defined in inventory.yaml",
            kind.target_label(),
            o.target
        );
    }
    let yaml_path = o
        .out
        .clone()
        .unwrap_or_else(|| g.dir.join(kind.name()).join(format!("{}.yaml", o.target)));
    if yaml_path.exists() && !o.force {
        bail!(
            "{} exists; pass --force to overwrite it",
            yaml_path.display()
        );
    }
    let env_path = o
        .secrets_file
        .clone()
        .unwrap_or_else(|| g.state_dir.join("import").join(format!("{}.env", o.target)));
    // Checked before anything is created: not even an empty folder lands in the repository.
    if lies_inside(&env_path, &g.dir) {
        bail!(
            "{} is inside the desired-state folder: secrets must never be written there",
            env_path.display()
        );
    }
    // Nothing is created until the target has been read: a refused or failed import leaves
    // no folder and no file behind.
    let reporter = Reporter::quiet();
    let t = Targets::start(g, &d, Writes::Nothing, false, &reporter).await?;
    let Some(read) = kind.import(&d, &o.target, &t.ctx) else {
        bail!("kind {} has no import", kind.name());
    };
    let imported = read
        .await
        .map_err(|e| anyhow::anyhow!(e))
        .with_context(|| format!("{} {}", kind.target_label(), o.target))?;
    drop(t);
    for w in &imported.warnings {
        eprintln!("warning: {w}");
    }
    // The passwords first: a YAML file whose references have no values is worse than none.
    let mut created = Vec::new();
    let env_new = !imported.env.is_empty() && std::fs::symlink_metadata(&env_path).is_err();
    let mut env_written = false;
    let written = (|| {
        if !imported.env.is_empty() {
            create_dirs(&env_path, &mut created)?;
            write_atomic(&env_path, imported.env.as_bytes(), 0o600)
                .with_context(|| format!("cannot write {}", env_path.display()))?;
            env_written = true;
        }
        create_dirs(&yaml_path, &mut created)?;
        write_atomic(&yaml_path, imported.yaml.as_bytes(), 0o644)
            .with_context(|| format!("cannot write {}", yaml_path.display()))
    })();
    if let Err(e) = written {
        // Undo what this command made: a passwords file that did not exist, and the folders.
        if env_written && env_new {
            let _ = std::fs::remove_file(&env_path);
        }
        for dir in created.iter().rev() {
            let _ = std::fs::remove_dir(dir);
        }
        return Err(e);
    }
    writeln!(out, "wrote {} ({})", yaml_path.display(), imported.summary)?;
    if !imported.env.is_empty() {
        writeln!(
            out,
            "wrote the passwords to {} (mode 0600); load them before plan: set -a; . {}; set +a",
            env_path.display(),
            env_path.display()
        )?;
    }
    Ok(exit::SUCCESS)
}

/// Creates the missing folders above `file`, recording each one made (outermost first) so
/// that a command that fails later can remove them again.
fn create_dirs(file: &Path, created: &mut Vec<PathBuf>) -> anyhow::Result<()> {
    let Some(parent) = file.parent().filter(|p| !p.as_os_str().is_empty()) else {
        return Ok(());
    };
    let missing: Vec<&Path> = parent
        .ancestors()
        .take_while(|a| !a.as_os_str().is_empty() && !a.exists())
        .collect();
    for dir in missing.into_iter().rev() {
        std::fs::create_dir(dir)
            .with_context(|| format!("cannot create folder {}", dir.display()))?;
        created.push(dir.to_path_buf());
    }
    Ok(())
}

/// Whether `path` lies inside folder `dir`, links followed where the path exists: its deepest
/// existing ancestor is resolved and the rest appended. A rest that climbs (`..`) counts as
/// inside, since where it lands cannot be known before it exists.
fn lies_inside(path: &Path, dir: &Path) -> bool {
    let Ok(dir) = std::fs::canonicalize(dir) else {
        return false;
    };
    let path = match std::path::absolute(path) {
        Ok(p) => p,
        Err(_) => return true,
    };
    let mut existing = path.as_path();
    let mut rest = Vec::new();
    while !existing.exists() {
        match (existing.parent(), existing.file_name()) {
            (Some(parent), Some(name)) => {
                rest.push(name.to_owned());
                existing = parent;
            }
            _ => return true,
        }
    }
    if path
        .strip_prefix(existing)
        .is_ok_and(|r| r.components().any(|c| c == std::path::Component::ParentDir))
    {
        return true;
    }
    let Ok(mut resolved) = std::fs::canonicalize(existing) else {
        return true;
    };
    for name in rest.iter().rev() {
        resolved.push(name);
    }
    resolved.starts_with(dir)
}

/// `accept-host-key TARGET HOST FINGERPRINT`: pins a verified SSH host key of a device of
/// TARGET (an antenna group, or its jump host) in the known-hosts file its kind uses,
/// replacing the old entry.
pub async fn accept_host_key(
    g: &Globals,
    target: &str,
    host: &str,
    fingerprint: &str,
    out: &mut dyn Write,
) -> anyhow::Result<u8> {
    let Some(d) = load(g)? else {
        return Ok(exit::ERROR);
    };
    // It writes the known-hosts file only (making its folder when it does): a refused call
    // (an unknown group or host, a bad fingerprint) creates nothing, not even the hash key.
    let reporter = Reporter::quiet();
    let t = Targets::start(g, &d, Writes::Nothing, false, &reporter).await?;
    for kind in crate::kinds::ALL {
        if let Some(result) = kind.accept_host_key(&d, target, host, fingerprint, &t.ctx) {
            let done = result.map_err(|e| anyhow::anyhow!(e))?;
            writeln!(out, "{done}")?;
            return Ok(exit::SUCCESS);
        }
    }
    bail!("{target:?} is not a target with SSH host keys in inventory.yaml (an antenna group)")
}

/// Runs one command line: sets up logging, runs the command on a tokio runtime, prints an
/// error with its context, and maps the outcome to an exit code ([`crate::exit`]).
pub fn main(cli: crate::cli::Cli) -> std::process::ExitCode {
    use crate::cli::Invocation;
    PROCESS_ENDS.store(true, std::sync::atomic::Ordering::Relaxed);
    // The controller is a service: what it does goes to the journal at info.
    let daemon = matches!(cli.command, crate::cli::Command::Reconcile(_));
    init_logging(
        cli.verbose + u8::from(daemon),
        cli.log_format == crate::cli::LogFormat::Json,
    );
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return std::process::ExitCode::from(exit::ERROR);
        }
    };
    let mut out = std::io::stdout().lock();
    let result = runtime.block_on(async {
        match cli.into_invocation() {
            Invocation::Validate(g) => validate(&g, &mut out),
            Invocation::Plan(g, o) => plan(&g, &o, &mut out).await,
            Invocation::Snapshot(g, o) => snapshot(&g, &o, &mut out).await,
            Invocation::Init(dir) => init(&dir, &mut out),
            Invocation::Drift(g, o) => drift(&g, &o, &mut out).await,
            Invocation::Reconcile(g, o) => reconcile(&g, &o, &mut out).await,
            Invocation::Status(g, f) => status(&g, f, &mut out),
            Invocation::Apply(g, o) => apply(&g, &o, &mut out).await,
            Invocation::Schema { out: dir, check } => schema(&dir, check, &mut out),
            #[cfg(feature = "lab")]
            Invocation::LabInit(dir) => crate::lab::init(&dir)
                .map(|()| {
                    println!(
                        "lab created in {}; use --lab {} with any command",
                        dir.display(),
                        dir.display()
                    );
                    exit::SUCCESS
                })
                .map_err(Into::into),
            #[cfg(feature = "lab")]
            Invocation::LabServe(g, dir) => lab_serve(&g, &dir, &mut out).await,
            #[cfg(feature = "lab")]
            Invocation::Demo(g, keep) => {
                crate::lab::demo::run(&g.dir, keep, g.color, &mut out).await
            }
            Invocation::Import(g, o) => import(&g, &o, &mut out).await,
            Invocation::AcceptHostKey {
                g,
                group,
                host,
                fingerprint,
            } => accept_host_key(&g, &group, &host, &fingerprint, &mut out).await,
        }
    });
    // Nothing is left to wait for: every write was awaited by its command. A blocking task
    // still running (a DNS lookup of a read abandoned early) must not hold the exit.
    runtime.shutdown_background();
    match result {
        Ok(code) => std::process::ExitCode::from(code),
        Err(e) => {
            eprintln!("error: {}", error_text(&e));
            std::process::ExitCode::from(exit::ERROR)
        }
    }
}

/// An error and its causes on one line, `context: error: cause`, each cause shown once.
///
/// Many of the typed errors below hold their cause in their own message (`cannot write X:
/// {source}`, so that a plan's problem list, which shows one message, keeps the reason) and
/// also expose it as their source. anyhow's `{:#}` prints every level of the chain and so
/// printed such a cause twice (`Is a directory (os error 21): Is a directory (os error 21)`).
/// Here a cause whose text the line already holds is left out.
fn error_text(e: &anyhow::Error) -> String {
    let mut text = e.to_string();
    for cause in e.chain().skip(1) {
        let cause = cause.to_string();
        if cause.is_empty() || text.contains(&cause) {
            continue;
        }
        // A context that only names what the cause names first (`router r` over
        // `router r: login failed`): the cause says it all.
        if cause
            .strip_prefix(text.as_str())
            .is_some_and(|rest| rest.starts_with(": "))
        {
            text = cause;
        } else {
            text.push_str(": ");
            text.push_str(&cause);
        }
    }
    text
}

fn init_logging(verbose: u8, json: bool) {
    let level = match verbose {
        0 => "warn",
        1 => "info",
        2 => "debug",
        _ => "trace",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(level));
    // Cron logs are files: no colour codes there.
    let ansi = std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none();
    let fmt = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false);
    if json {
        fmt.json().with_current_span(false).init();
    } else {
        fmt.with_ansi(ansi).init();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A typed error that holds its cause in its message and exposes it as its source too.
    #[derive(Debug, thiserror::Error)]
    #[error("cannot write {file}: {source}")]
    struct Both {
        file: &'static str,
        source: std::io::Error,
    }

    #[test]
    fn a_cause_is_printed_once() {
        let io = || std::io::Error::from_raw_os_error(21);
        let e = anyhow::Error::new(Both {
            file: "x",
            source: io(),
        })
        .context("import");
        let text = error_text(&e);
        assert_eq!(text, format!("import: cannot write x: {}", io()));
        assert_eq!(text.matches("os error 21").count(), 1, "{text}");
        // A cause the message does not hold is still shown.
        let e = anyhow::Error::new(io()).context("cannot read plan file p");
        assert_eq!(error_text(&e), format!("cannot read plan file p: {}", io()));
        // A context that the cause's message begins with is not said twice either.
        let e = anyhow::Error::new(Both {
            file: "x",
            source: io(),
        })
        .context("cannot write x");
        assert_eq!(error_text(&e), format!("cannot write x: {}", io()));
    }

    #[test]
    fn a_secrets_file_is_refused_inside_the_desired_state_folder_before_it_exists() {
        let tmp = tempfile::tempdir().unwrap();
        let desired = tmp.path().join("desired");
        std::fs::create_dir_all(desired.join("pppoe")).unwrap();
        assert!(lies_inside(&desired.join("pppoe/r1.env"), &desired));
        assert!(lies_inside(&desired.join("new/deeper/r1.env"), &desired));
        assert!(!desired.join("new").exists(), "nothing created");
        assert!(lies_inside(
            &tmp.path().join("elsewhere/../desired/x.env"),
            &desired
        ));
        assert!(!lies_inside(
            &tmp.path().join("state/import/r1.env"),
            &desired
        ));
        // A link inside the repository to a folder outside is outside; one outside pointing in
        // is inside.
        std::os::unix::fs::symlink(&desired, tmp.path().join("link-in")).unwrap();
        assert!(lies_inside(&tmp.path().join("link-in/x.env"), &desired));
        let out = tmp.path().join("out");
        std::fs::create_dir(&out).unwrap();
        std::os::unix::fs::symlink(&out, desired.join("link-out")).unwrap();
        assert!(!lies_inside(&desired.join("link-out/x.env"), &desired));
    }
}
