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
//! The whole module, and every twin, exists only with the `lab` feature (on by default).

pub mod demo;

use std::any::Any;
use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;

use anyhow::Context as _;

use crate::desired::DesiredState;
use crate::engine::{Endpoints, Route};

/// The connection string the lab's UISP servers hand out and the lab's antennas should carry:
/// lab-only, never a real key (48 characters of `[A-Za-z0-9]`).
pub const LAB_CONNECTION_STRING: &str = "wss://uisp.lab.invalid:443+LabOnlyMasterKey0123456789abcdefghijklmnopqrstuv+allowSelfSignedCertificate";

/// Twins being started.
pub type Starting<'a> = Pin<Box<dyn Future<Output = anyhow::Result<Box<dyn Running>>> + Send + 'a>>;

/// One kind's lab twin.
pub trait Twin: Send + Sync {
    /// Seeds this kind's twins into a new lab folder (`lab init`), the way the demo's
    /// desired state expects them.
    fn seed(&self, lab: &Path) -> io::Result<()>;
    /// `NAME=value` lines (lab-only values) for the `{ env: NAME }` references of this
    /// kind's example files.
    fn secrets(&self) -> &'static str;
    /// Starts twins for this kind's targets in `desired` and registers where each is reached.
    fn start<'a>(
        &'a self,
        lab: &'a Path,
        desired: &'a DesiredState,
        endpoints: &'a mut LabEndpoints,
    ) -> Starting<'a>;
    /// An out-of-band edit as people make them, for the demo's drift step; what was done, in
    /// words.
    fn tamper(&self, _lab: &Path) -> io::Result<Option<String>> {
        Ok(None)
    }
}

/// Twins running for one command.
pub trait Running: Send + Sync {
    /// Saves the twins' state back to the lab's files, after a command that writes.
    fn save(&self, _lab: &Path) -> anyhow::Result<()> {
        Ok(())
    }
}

/// Nothing runs (a kind whose twin is files on disk).
pub struct NothingRuns;

impl Running for NothingRuns {}

/// Where each lab target is reached, by inventory section and target name.
#[derive(Default)]
pub struct LabEndpoints(BTreeMap<(String, String), Arc<dyn Any + Send + Sync>>);

impl LabEndpoints {
    /// Registers the stand-in of one target. `T` is whatever that target's kind reaches it
    /// through (a socket address, a folder, an HTTPS endpoint).
    pub fn insert<T: Any + Send + Sync>(&mut self, section: &str, name: &str, endpoint: T) {
        self.0
            .insert((section.to_string(), name.to_string()), Arc::new(endpoint));
    }
}

impl Endpoints for LabEndpoints {
    fn route(&self, section: &str, name: &str) -> Route {
        match self.0.get(&(section.to_string(), name.to_string())) {
            Some(e) => Route::Twin(e.clone()),
            None => Route::Missing,
        }
    }
}

/// A lab's twins, running for one command.
pub struct Runtime {
    lab: PathBuf,
    endpoints: Arc<LabEndpoints>,
    running: Vec<Box<dyn Running>>,
}

impl Runtime {
    /// Starts every kind's twins for the targets of `desired`.
    pub async fn start(lab: &Path, desired: &DesiredState) -> anyhow::Result<Runtime> {
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

/// The lab's secret values for `{ env: NAME }` references.
pub fn secrets(lab: &Path) -> io::Result<HashMap<String, String>> {
    match std::fs::read_to_string(lab.join("secrets.env")) {
        Ok(t) => Ok(crate::secret::parse_env_file(&t)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(HashMap::new()),
        Err(e) => Err(e),
    }
}

/// Writes a lab file with its mode.
pub fn write_file(path: &Path, text: &str, mode: u32) -> io::Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::write(path, text)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
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
