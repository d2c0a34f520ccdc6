//! The commands, between the CLI and the engine: load the desired state, build the engine,
//! render, write plan files, hold the lock, ask for approval, and choose the exit code.
//! Errors get their context here, at the edge; the library below stays typed.

use std::collections::BTreeMap;
use std::io::{BufRead, IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context as _, bail};

use crate::desired::{self, DesiredState};
use crate::engine::lock::ApplyLock;
use crate::engine::{self, Engine, PlannedRun, TargetFilter};
use crate::exit;
use crate::files::write_atomic;
use crate::plan::render::{Format, Purpose, json, markdown, text};
use crate::plan::{FORMAT_VERSION, Plan};
use crate::providers::{self, Context};
use crate::secret::{HashKey, SecretResolver};

/// Options every command shares.
#[derive(Debug, Clone)]
pub struct Globals {
    /// The desired-state folder.
    pub dir: PathBuf,
    /// Where the hash key, the lock and other state live.
    pub state_dir: PathBuf,
    /// Lab folder: every target is its lab twin.
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
    /// Trust-on-first-use for SSH host keys.
    pub trust_new_host_keys: bool,
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
    /// Target selection and guards.
    pub read: ReadOptions,
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
    let mut r = SecretResolver::new();
    if let Some(lab) = &g.lab {
        let values = crate::lab::secrets(lab)
            .with_context(|| format!("cannot read lab secrets in {}", lab.display()))?;
        r = r.with_fallback_env(values);
    }
    Ok(r)
}

/// Loads and validates; prints warnings and errors to stderr. `None` on errors.
fn load(g: &Globals) -> anyhow::Result<Option<DesiredState>> {
    match desired::load(&g.dir, &resolver(g)?) {
        Ok(d) => {
            for w in &d.warnings {
                eprintln!("{w}");
            }
            Ok(Some(d))
        }
        Err(errors) => {
            eprintln!("{errors}");
            eprintln!(
                "error: {} problem(s) in {}; nothing was read from or written to any target",
                errors.0.len(),
                g.dir.display()
            );
            Ok(None)
        }
    }
}

fn engine_for(
    g: &Globals,
    d: &DesiredState,
    o: &ReadOptions,
    lab: &crate::lab::Runtime,
) -> anyhow::Result<Engine> {
    std::fs::create_dir_all(&g.state_dir)
        .with_context(|| format!("cannot create state directory {}", g.state_dir.display()))?;
    let key = Arc::new(HashKey::load_or_create(&g.state_dir)?);
    let ctx = Context {
        key: key.clone(),
        lab_root: g.lab.clone(),
        state_dir: g.state_dir.clone(),
        lab_routers: lab.router_addrs(),
        lab_uisp: lab.uisp_endpoints(),
        lab_antennas: lab.antenna_fleets(),
        trust_new_host_keys: o.trust_new_host_keys,
    };
    let filter = TargetFilter::new(&o.targets).context("invalid --target glob")?;
    Ok(Engine::new(
        providers::kinds(d, &ctx),
        filter,
        o.max_deletes.unwrap_or(d.guards.max_deletes),
        d.digest.clone(),
        key.id(),
    ))
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
    let peers: usize = d.pppd.values().map(|p| p.peers.len()).sum();
    let chap: usize = d.pppd.values().map(|p| p.chap.len()).sum();
    let antennas: usize = d.airos.values().map(|a| a.antennas.len()).sum();
    writeln!(
        out,
        "{}: valid ({} host(s), {peers} peer file(s), {chap} chap-secrets entr(y/ies), {} router(s), {} UISP server(s), {antennas} antenna(s) in {} group(s))",
        g.dir.display(),
        d.hosts.len(),
        d.routers.len(),
        d.uisp_servers.len(),
        d.airos.len()
    )?;
    Ok(exit::SUCCESS)
}

/// `plan`: observe, diff, render; optionally save.
pub async fn plan(g: &Globals, o: &ReadOptions, out: &mut dyn Write) -> anyhow::Result<u8> {
    let Some(d) = load(g)? else {
        return Ok(exit::ERROR);
    };
    let lab = crate::lab::Runtime::start(g.lab.as_deref(), &d).await?;
    let run = engine_for(g, &d, o, &lab)?.plan().await;
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
    Ok(read_exit(&run.plan, o.detailed_exitcode))
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

/// `drift`: like plan, read-only by construction (it never holds the apply path), exit 2 when
/// anything differs.
pub async fn drift(g: &Globals, o: &ReadOptions, out: &mut dyn Write) -> anyhow::Result<u8> {
    let Some(d) = load(g)? else {
        return Ok(exit::ERROR);
    };
    let lab = crate::lab::Runtime::start(g.lab.as_deref(), &d).await?;
    let run = engine_for(g, &d, o, &lab)?.plan().await;
    let plan = run.plan; // the apply half of the run is dropped here, unused
    write!(out, "{}", render(&plan, Purpose::Drift, o.format, g.color))?;
    Ok(read_exit(&plan, true))
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
    let lock_path = o
        .lock_file
        .clone()
        .unwrap_or_else(|| g.state_dir.join("apply.lock"));
    let command: Vec<String> = std::env::args().collect();
    let lock = match ApplyLock::acquire(&lock_path, o.lock_timeout, &command.join(" ")) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("error: {e}");
            return Ok(exit::ERROR);
        }
    };
    if let Some(h) = &lock.taken_over {
        eprintln!("warning: took over the apply lock left by {h}");
    }
    let mut read = o.read.clone();
    if let Some(s) = &saved {
        // A saved plan decides which targets it covers.
        read.targets = s.targets.iter().map(|t| t.address.clone()).collect();
        if read.targets.is_empty() {
            read.targets.push("-none-".into());
        }
    }
    let lab = crate::lab::Runtime::start(g.lab.as_deref(), &d).await?;
    let run: PlannedRun = engine_for(g, &d, &read, &lab)?.plan().await;
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
        drop(lock);
        let clean = run.plan.problems().is_empty() && refusals.is_empty();
        return Ok(if clean { exit::SUCCESS } else { exit::ERROR });
    }
    if !o.auto_approve && !confirm(out)? {
        writeln!(out, "Apply cancelled; nothing was written.")?;
        return Ok(exit::ERROR);
    }
    let report = run.apply(&refusals).await;
    lab.save()?;
    write!(out, "{}", text::report(&report, text::Paint(g.color)))?;
    drop(lock);
    Ok(if report.succeeded() {
        exit::SUCCESS
    } else {
        exit::ERROR
    })
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

fn confirm(out: &mut dyn Write) -> anyhow::Result<bool> {
    if !std::io::stdin().is_terminal() {
        bail!(
            "refusing to apply without approval: there is no terminal to ask on; pass --auto-approve"
        );
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
        let path = dir.join(name);
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

/// Options of `import pppoe`.
#[derive(Debug, Clone)]
pub struct ImportOptions {
    /// The target's name (router or UISP server).
    pub router: String,
    /// YAML destination.
    pub out: Option<PathBuf>,
    /// Password file destination.
    pub secrets_file: Option<PathBuf>,
    /// Overwrite the YAML.
    pub force: bool,
}

/// `import pppoe ROUTER`: reads the router once and writes YAML that plans to no changes.
pub async fn import_pppoe(
    g: &Globals,
    o: &ImportOptions,
    out: &mut dyn Write,
) -> anyhow::Result<u8> {
    let Some(d) = load(g)? else {
        return Ok(exit::ERROR);
    };
    let Some(router) = d.routers.get(&o.router) else {
        bail!("router {:?} is not defined in inventory.yaml", o.router);
    };
    let yaml_path = import_destination(g, o, "pppoe")?;
    let env_path = o
        .secrets_file
        .clone()
        .unwrap_or_else(|| g.state_dir.join("import").join(format!("{}.env", o.router)));
    let inside = |p: &Path| -> bool {
        let parent = p.parent().unwrap_or(Path::new("."));
        let (Ok(a), Ok(b)) = (std::fs::canonicalize(parent), std::fs::canonicalize(&g.dir)) else {
            return false;
        };
        a.starts_with(b)
    };
    if let Some(parent) = env_path.parent() {
        std::fs::create_dir_all(parent)?;
    }
    if inside(&env_path) {
        bail!(
            "{} is inside the desired-state folder: passwords must never be written there",
            env_path.display()
        );
    }
    let lab = crate::lab::Runtime::start(g.lab.as_deref(), &d).await?;
    let addr = lab.router_addr(&o.router);
    if lab.is_lab() && addr.is_none() {
        bail!("the lab has no router {}", o.router);
    }
    let mut conn = crate::providers::pppoe::routeros::connect(router, addr)
        .await
        .with_context(|| format!("router {}", o.router))?;
    let (secrets, passwords_visible) = crate::providers::pppoe::read_secrets(&mut conn)
        .await
        .with_context(|| format!("router {}", o.router))?;
    drop(lab);
    let imported = crate::providers::pppoe::import::render(&o.router, &secrets, passwords_visible);
    write_import(&yaml_path, &imported.yaml, &imported.warnings)?;
    writeln!(
        out,
        "wrote {} ({} secret(s))",
        yaml_path.display(),
        secrets.len()
    )?;
    if !imported.env.is_empty() {
        write_atomic(&env_path, imported.env.as_bytes(), 0o600)
            .with_context(|| format!("cannot write {}", env_path.display()))?;
        writeln!(
            out,
            "wrote the passwords to {} (mode 0600); load them before plan: set -a; . {}; set +a",
            env_path.display(),
            env_path.display()
        )?;
    }
    Ok(exit::SUCCESS)
}

/// `import uisp SERVER`: reads the server once and writes YAML that plans to no changes.
pub async fn import_uisp(
    g: &Globals,
    o: &ImportOptions,
    out: &mut dyn Write,
) -> anyhow::Result<u8> {
    let Some(d) = load(g)? else {
        return Ok(exit::ERROR);
    };
    let Some(server) = d.uisp_servers.get(&o.router) else {
        bail!(
            "UISP server {:?} is not defined in inventory.yaml",
            o.router
        );
    };
    let yaml_path = import_destination(g, o, "uisp")?;
    let lab = crate::lab::Runtime::start(g.lab.as_deref(), &d).await?;
    let endpoint = lab.uisp_endpoints().remove(&o.router);
    if lab.is_lab() && endpoint.is_none() {
        bail!("the lab has no UISP server {}", o.router);
    }
    let client = match &endpoint {
        Some(e) => crate::providers::uisp::client::UispClient::new(
            server,
            Some(e.api.clone()),
            Some(&e.ca_pem),
        ),
        None => crate::providers::uisp::client::UispClient::new(server, None, None),
    }
    .map_err(anyhow::Error::msg)?;
    let (sites, devices) = tokio::join!(client.sites(), client.devices());
    let (sites, devices) = (
        sites.with_context(|| format!("UISP {}", o.router))?,
        devices.with_context(|| format!("UISP {}", o.router))?,
    );
    drop(lab);
    let imported = crate::providers::uisp::import::render(&o.router, &sites, &devices);
    write_import(&yaml_path, &imported.yaml, &imported.warnings)?;
    writeln!(
        out,
        "wrote {} ({} site(s), {} device(s) read)",
        yaml_path.display(),
        sites.len(),
        devices.len()
    )?;
    Ok(exit::SUCCESS)
}

/// Where an import writes its YAML: `--out`, or `DIR/KIND/TARGET.yaml`; never over an existing
/// file without `--force`.
fn import_destination(g: &Globals, o: &ImportOptions, kind: &str) -> anyhow::Result<PathBuf> {
    let path = o
        .out
        .clone()
        .unwrap_or_else(|| g.dir.join(kind).join(format!("{}.yaml", o.router)));
    if path.exists() && !o.force {
        bail!("{} exists; pass --force to overwrite it", path.display());
    }
    Ok(path)
}

/// Writes an import's YAML (atomically) and prints its warnings.
fn write_import(path: &Path, yaml: &str, warnings: &[String]) -> anyhow::Result<()> {
    for w in warnings {
        eprintln!("warning: {w}");
    }
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)?;
    }
    write_atomic(path, yaml.as_bytes(), 0o644)
        .with_context(|| format!("cannot write {}", path.display()))
}

/// `accept-host-key GROUP HOST FINGERPRINT`: pins the key of an antenna of the group (or of the
/// group's jump host) in the known-hosts file the airOS provider uses, replacing the old entry.
pub fn accept_host_key(
    g: &Globals,
    group: &str,
    host: &str,
    fingerprint: &str,
    out: &mut dyn Write,
) -> anyhow::Result<u8> {
    use crate::providers::airos::ssh::{Endpoint, KnownHosts};
    let Some(d) = load(g)? else {
        return Ok(exit::ERROR);
    };
    let Some(spec) = d.antenna_groups.get(group) else {
        bail!("antenna group {group:?} is not defined in inventory.yaml");
    };
    let antenna = d
        .airos
        .get(group)
        .and_then(|a| a.antennas.iter().find(|a| a.host == host));
    let endpoint = match (antenna, &spec.jump) {
        (Some(a), _) => Endpoint::new(host, a.port.unwrap_or(spec.port)),
        (None, Some(j)) if j.host == host => Endpoint::new(host, j.port),
        _ => bail!("{host} is neither an antenna of group {group} nor its jump host"),
    };
    let path = crate::providers::airos::known_hosts_path(
        spec.known_hosts.as_deref(),
        g.lab.as_deref(),
        &g.state_dir,
    );
    let known = KnownHosts::load(&path)
        .with_context(|| format!("cannot read known-hosts file {}", path.display()))?;
    let before = known.get(&endpoint);
    known
        .accept(&endpoint, fingerprint)
        .with_context(|| format!("cannot pin the key of {endpoint}"))?;
    let now = known.get(&endpoint).unwrap_or_default();
    match before {
        Some(b) if b == now => writeln!(
            out,
            "{endpoint}: {now} was already pinned in {}",
            path.display()
        )?,
        Some(b) => writeln!(
            out,
            "{endpoint}: pinned {now} in {} (replaces {b})",
            path.display()
        )?,
        None => writeln!(out, "{endpoint}: pinned {now} in {}", path.display())?,
    }
    Ok(exit::SUCCESS)
}
