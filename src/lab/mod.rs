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
