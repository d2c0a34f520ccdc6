//! The twin contract: what a kind's lab twin implements ([`Twin`]), where it says its targets
//! are reached ([`LabEndpoints`]), and the files twins keep. Below the kinds (a kind's
//! `twin.rs` implements it) and above nothing but the kind contract: the runtime that starts
//! every twin is [`crate::lab`].

use std::any::Any;
use std::collections::BTreeMap;
use std::future::Future;
use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::pin::Pin;
use std::sync::Arc;

use anyhow::Context as _;
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::engine::{Endpoints, Route};
use crate::kinds::def::DesiredState;

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
    /// Registers target `name` of this kind as reached where a `wispctl lab serve` of the same
    /// lab serves it (`served` is what that process registered, see
    /// [`LabEndpoints::described`]), instead of starting a twin in this process.
    fn attach(
        &self,
        name: &str,
        served: &serde_json::Value,
        endpoints: &mut LabEndpoints,
    ) -> anyhow::Result<()>;
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

/// What a target's kind reaches its stand-in through (a socket address, a folder, an HTTPS
/// endpoint): kept as itself for this process, and as JSON for `lab serve`'s clients.
pub trait LabEndpoint: Any + Send + Sync + Serialize + DeserializeOwned {}
impl<T: Any + Send + Sync + Serialize + DeserializeOwned> LabEndpoint for T {}

/// One registered stand-in: as its kind uses it, and as JSON.
type Registered = (Arc<dyn Any + Send + Sync>, serde_json::Value);

/// Where each lab target is reached, by inventory section and target name; and the links
/// between twins of one process ([`BridgeHook`]).
#[derive(Default)]
pub struct LabEndpoints(
    BTreeMap<(String, String), Registered>,
    BTreeMap<(String, String), BridgeHook>,
);

/// What a lab antenna tells the lab UISP server it reports to when its `udapi-bridge` starts
/// (with the connection string it connects with) or stops: the UISP twin shows the device
/// connected or not, as UISP would.
#[derive(Clone)]
pub struct BridgeHook(pub Arc<dyn Fn(&BridgeEvent<'_>) + Send + Sync>);

impl BridgeHook {
    /// Tells the linked twin.
    pub fn call(&self, event: &BridgeEvent<'_>) {
        (self.0)(event);
    }
}

impl std::fmt::Debug for BridgeHook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("BridgeHook")
    }
}

/// One bridge start or stop ([`BridgeHook`]).
#[derive(Debug, Clone, Copy)]
pub struct BridgeEvent<'a> {
    /// The antenna's MAC, as its board reports it.
    pub mac: &'a str,
    /// The antenna's address.
    pub ip: &'a str,
    /// The connection string the new bridge connects with; `None`: no bridge runs now.
    pub uri: Option<&'a str>,
}

impl LabEndpoints {
    /// Registers what the twin of target `name` of `section` does when an antenna reporting
    /// to it restarts its bridge (the UISP twin registers one per server).
    pub fn link(&mut self, section: &str, name: &str, hook: BridgeHook) {
        self.1.insert((section.to_string(), name.to_string()), hook);
    }

    /// What [`LabEndpoints::link`] registered for target `name` of `section` in this
    /// process, if anything.
    pub fn linked(&self, section: &str, name: &str) -> Option<BridgeHook> {
        self.1
            .get(&(section.to_string(), name.to_string()))
            .cloned()
    }

    /// Registers the stand-in of one target.
    pub fn insert<T: LabEndpoint>(&mut self, section: &str, name: &str, endpoint: T) {
        let described = serde_json::to_value(&endpoint).unwrap_or(serde_json::Value::Null);
        self.0.insert(
            (section.to_string(), name.to_string()),
            (Arc::new(endpoint), described),
        );
    }

    /// Registers a stand-in another process serves, from what it registered there.
    pub fn attach<T: LabEndpoint>(
        &mut self,
        section: &str,
        name: &str,
        served: &serde_json::Value,
    ) -> anyhow::Result<()> {
        let endpoint: T = serde_json::from_value(served.clone())
            .with_context(|| format!("the served lab's entry for {section}.{name}"))?;
        self.insert(section, name, endpoint);
        Ok(())
    }

    /// Every stand-in as (section, name, what its kind reaches it through, as JSON).
    pub fn described(&self) -> impl Iterator<Item = (&str, &str, &serde_json::Value)> {
        self.0
            .iter()
            .map(|((s, n), (_, v))| (s.as_str(), n.as_str(), v))
    }
}

impl Endpoints for LabEndpoints {
    fn route(&self, section: &str, name: &str) -> Route {
        match self.0.get(&(section.to_string(), name.to_string())) {
            Some((e, _)) => Route::Twin(e.clone()),
            None => Route::Missing,
        }
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

/// Reads a twin's JSON file; a missing one names the fix.
pub fn read_json<T: DeserializeOwned>(path: &Path, what: &str) -> anyhow::Result<T> {
    let text = std::fs::read_to_string(path).with_context(|| {
        format!(
            "the lab has no {what} ({}); run `wispctl lab init`",
            path.display()
        )
    })?;
    serde_json::from_str(&text).with_context(|| format!("lab file {}", path.display()))
}

/// Saves a twin's JSON file atomically, mode 0600 (it holds lab-only credentials). Not a
/// crash point itself: a twin that saves after a write calls [`crash::wrote`] once saved.
pub fn write_json<T: Serialize>(path: &Path, value: &T) -> anyhow::Result<()> {
    let bytes = serde_json::to_vec_pretty(value)?;
    crate::files::write_atomic_with(path, &bytes, 0o600, || Ok(()))
        .with_context(|| format!("cannot save lab file {}", path.display()))
}

/// Crash points, for the crash tests' `kill -9` at a chosen step of an apply.
///
/// A lab folder holding a file `crash-after-writes` with a number N makes the Nth write of the
/// run end the process with SIGKILL, right after that write took effect: a write to a twin
/// (a router's, a UISP server's or an antenna's state changed, and saved to the lab's files
/// first) or a file the tool writes into the lab (counted after the data is durable and before
/// the rename that makes it visible, the point that leaves a temporary file behind). Without
/// the file nothing happens; the count covers one process.
pub mod crash {
    use std::path::Path;
    use std::sync::OnceLock;
    use std::sync::atomic::{AtomicU64, Ordering};

    static AFTER: OnceLock<u64> = OnceLock::new();
    static WRITES: AtomicU64 = AtomicU64::new(0);

    /// Arms the crash point from `LAB/crash-after-writes`, once per process.
    pub fn arm(lab: &Path) {
        if let Ok(text) = std::fs::read_to_string(lab.join("crash-after-writes"))
            && let Ok(n) = text.trim().parse::<u64>()
        {
            let _ = AFTER.set(n);
            crate::files::set_before_rename_hook(wrote);
        }
    }

    /// Counts one write; at the armed count the process ends with SIGKILL.
    pub fn wrote() {
        let Some(&after) = AFTER.get() else { return };
        if WRITES.fetch_add(1, Ordering::SeqCst) + 1 == after {
            let _ = nix::sys::signal::raise(nix::sys::signal::Signal::SIGKILL);
            // SIGKILL cannot be caught; nothing runs after it.
            std::process::abort();
        }
    }
}
