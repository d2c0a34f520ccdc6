//! The lab: a twin of every target kind, used by the demo, the tests and the benchmarks.
//!
//! Each kind brings its own twin ([`crate::kinds::KindDef::twin`], in the kind's `twin.rs`):
//! what `lab init` seeds for it, the lab-only secret values its example files reference, how
//! its twins start for one command (registering where each target is reached) and save back,
//! and the demo's out-of-band edit. This module only iterates them: `--lab DIR` starts every
//! kind's twins, points every target at its twin through [`LabEndpoints`] (a target without a
//! twin is an error, never a connection to its real address), and lets unset `{ env: NAME }`
//! secrets fall back to `DIR/secrets.env`.
//!
//! `wispctl lab serve DIR` runs the twins out of the commands' process instead: it starts them
//! once, writes where each listens to `DIR/serve.json` (and prints it), and keeps them until
//! SIGTERM or SIGINT. While that file names a live process, `--lab DIR` reaches the served
//! twins ([`Twin::attach`]) instead of starting its own, so round trips and CPU are those of a
//! separate peer, and other clients (librouteros, curl, a script) can use the same lab. Twins
//! save their files after each write, wherever they run.
//!
//! The whole module, and every twin, exists only with the `lab` feature (on by default).

pub mod demo;
pub mod twin;

use std::collections::HashMap;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context as _;

use crate::engine::Endpoints;
use crate::kinds::def::DesiredState;
pub use twin::{LAB_CONNECTION_STRING, LabEndpoints, Running, Starting, Twin, write_file};

/// A lab's twins, running for one command.
pub struct Runtime {
    lab: PathBuf,
    endpoints: Arc<LabEndpoints>,
    running: Vec<Box<dyn Running>>,
}

impl Runtime {
    /// Starts every kind's twins for the targets of `desired`.
    pub async fn start(lab: &Path, desired: &DesiredState) -> anyhow::Result<Runtime> {
        if let Some(served) = Served::read(lab)? {
            return Runtime::attach(lab, &served);
        }
        Runtime::start_here(lab, desired).await
    }

    /// The twins of a `lab serve` process, when one serves `lab`: reached without the desired
    /// state, so before it is loaded.
    pub fn served(lab: &Path) -> anyhow::Result<Option<Runtime>> {
        Served::read(lab)?
            .map(|served| Runtime::attach(lab, &served))
            .transpose()
    }

    /// Reaches the twins a `lab serve` process runs.
    fn attach(lab: &Path, served: &Served) -> anyhow::Result<Runtime> {
        let mut endpoints = LabEndpoints::default();
        for kind in crate::kinds::ALL {
            if let Some(twin) = kind.twin() {
                for t in served
                    .targets
                    .iter()
                    .filter(|t| t.section == kind.section())
                {
                    twin.attach(&t.name, &t.endpoint, &mut endpoints)?;
                }
            }
        }
        Ok(Runtime {
            lab: lab.to_path_buf(),
            endpoints: Arc::new(endpoints),
            running: Vec::new(),
        })
    }

    /// Starts every kind's twins in this process.
    async fn start_here(lab: &Path, desired: &DesiredState) -> anyhow::Result<Runtime> {
        twin::crash::arm(lab);
        let mut endpoints = LabEndpoints::default();
        let mut running = Vec::new();
        for kind in crate::kinds::ALL {
            if let Some(twin) = kind.twin() {
                running.push(
                    twin.start(lab, desired, &mut endpoints)
                        .await
                        .with_context(|| format!("lab twins of kind {}", kind.name()))?,
                );
            }
        }
        Ok(Runtime {
            lab: lab.to_path_buf(),
            endpoints: Arc::new(endpoints),
            running,
        })
    }

    /// Where each target is reached, for the engine's [`crate::engine::Context`].
    pub fn endpoints(&self) -> Arc<dyn Endpoints> {
        self.endpoints.clone()
    }

    /// Saves every twin's state back to its file (after a command that writes).
    pub fn save(&self) -> anyhow::Result<()> {
        for r in &self.running {
            r.save(&self.lab)?;
        }
        Ok(())
    }
}

/// `DIR/serve.json`: where a `lab serve` process serves each target.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
pub struct Served {
    /// The serving process.
    pub pid: u32,
    /// Every target served.
    pub targets: Vec<ServedTarget>,
}

/// One served target.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
pub struct ServedTarget {
    /// Inventory section (`routers`).
    pub section: String,
    /// Target name.
    pub name: String,
    /// What its kind reaches it through (an address, a folder, a URL and certificate).
    pub endpoint: serde_json::Value,
}

impl Served {
    /// The file's path.
    pub fn path(lab: &Path) -> PathBuf {
        lab.join("serve.json")
    }

    /// The serving process's file, when one is alive; a file left by a dead one is ignored.
    pub fn read(lab: &Path) -> anyhow::Result<Option<Served>> {
        let path = Served::path(lab);
        let text = match std::fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e).with_context(|| format!("cannot read {}", path.display())),
        };
        let served: Served =
            serde_json::from_str(&text).with_context(|| format!("lab file {}", path.display()))?;
        let alive = Path::new("/proc").join(served.pid.to_string()).exists();
        Ok(alive.then_some(served))
    }
}

/// `wispctl lab serve`: starts every twin the desired state names, writes `serve.json`, prints
/// where each target is served, and serves until SIGTERM or SIGINT; then saves the twins and
/// removes `serve.json`.
pub async fn serve(
    lab: &Path,
    desired: &DesiredState,
    out: &mut dyn io::Write,
) -> anyhow::Result<()> {
    use tokio::signal::unix::{SignalKind, signal};
    if let Some(other) = Served::read(lab)? {
        anyhow::bail!(
            "the lab {} is already served by process {}",
            lab.display(),
            other.pid
        );
    }
    let mut term = signal(SignalKind::terminate()).context("cannot wait for SIGTERM")?;
    let mut int = signal(SignalKind::interrupt()).context("cannot wait for SIGINT")?;
    let rt = Runtime::start_here(lab, desired).await?;
    let served = Served {
        pid: std::process::id(),
        targets: rt
            .endpoints
            .described()
            .map(|(section, name, endpoint)| ServedTarget {
                section: section.into(),
                name: name.into(),
                endpoint: endpoint.clone(),
            })
            .collect(),
    };
    twin::write_json(&Served::path(lab), &served)?;
    for t in &served.targets {
        writeln!(out, "{}.{}: {}", t.section, t.name, shown(&t.endpoint))?;
    }
    writeln!(
        out,
        "serving {} target(s) of {} (pid {}); `--lab {}` reaches them; stop with SIGTERM or Ctrl-C",
        served.targets.len(),
        lab.display(),
        served.pid,
        lab.display()
    )?;
    out.flush()?;
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
    let saved = rt.save();
    let removed = std::fs::remove_file(Served::path(lab));
    saved?;
    removed.with_context(|| format!("cannot remove {}", Served::path(lab).display()))?;
    // Whoever read the addresses may be gone by now: a closed stdout is no failure here.
    let _ = writeln!(out, "stopped; the lab's files hold what the twins did");
    Ok(())
}

/// An endpoint in one line: certificates left to `serve.json`.
fn shown(endpoint: &serde_json::Value) -> String {
    match endpoint {
        serde_json::Value::String(s) => s.clone(),
        serde_json::Value::Object(map) => {
            let parts: Vec<String> = map
                .iter()
                .filter(|(k, _)| !k.ends_with("pem"))
                .map(|(k, v)| format!("{k}={}", shown(v)))
                .collect();
            parts.join(" ")
        }
        other => other.to_string(),
    }
}

/// The lab's secret values for `{ env: NAME }` references.
pub fn secrets(lab: &Path) -> io::Result<HashMap<String, String>> {
    match std::fs::read_to_string(lab.join("secrets.env")) {
        Ok(t) => Ok(crate::secret::parse_env_file(&t)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(HashMap::new()),
        Err(e) => Err(e),
    }
}

/// Creates a lab in `dir` (which may exist; existing lab files are replaced): every kind's
/// seed, the lab-only secret values, and the state folder.
pub fn init(dir: &Path) -> io::Result<()> {
    let mut secrets = String::from("# Lab-only secret values for { env: NAME } references.\n");
    for kind in crate::kinds::ALL {
        if let Some(twin) = kind.twin() {
            twin.seed(dir)?;
            secrets.push_str(twin.secrets());
        }
    }
    write_file(&dir.join("secrets.env"), &secrets, 0o600)?;
    std::fs::create_dir_all(dir.join("state"))?;
    Ok(())
}

/// Out-of-band edits, as people make them, one per kind that has one. Returns what was done,
/// for the demo to say.
pub fn tamper(dir: &Path) -> io::Result<String> {
    let mut done = Vec::new();
    for kind in crate::kinds::ALL {
        if let Some(twin) = kind.twin()
            && let Some(what) = twin.tamper(dir)?
        {
            done.push(what);
        }
    }
    Ok(match done.split_last() {
        None => "nothing".into(),
        Some((last, [])) => last.clone(),
        Some((last, rest)) => format!("{}, and {last}", rest.join(", ")),
    })
}
