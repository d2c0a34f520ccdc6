//! One folder per resource kind, each with the same parts: observe, diff (pure), apply, and a
//! lab twin. [`kinds`] is the one place that lists them.

pub mod airos;
pub mod ownership;
pub mod pppd;
pub mod pppoe;
pub mod uisp;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use crate::desired::DesiredState;
use crate::engine::{self, Kind};
use crate::secret::HashKey;

/// What every provider gets besides its desired state.
#[derive(Clone)]
pub struct Context {
    /// Key of fingerprints and secret hashes.
    pub key: Arc<HashKey>,
    /// When set, every target is its lab twin under this folder.
    pub lab_root: Option<PathBuf>,
    /// The state directory (password hashes of routers, and the like).
    pub state_dir: PathBuf,
    /// Lab routers' API addresses by router name, when the lab runs them.
    pub lab_routers: BTreeMap<String, SocketAddr>,
    /// Lab UISP servers by name, when the lab runs them.
    pub lab_uisp: BTreeMap<String, uisp::LabEndpoint>,
    /// Lab antenna fleets by antenna group, when the lab runs them.
    pub lab_antennas: BTreeMap<String, airos::LabFleet>,
    /// Record the host key of an antenna the known-hosts file does not list yet, instead of
    /// refusing it (`--trust-new-host-keys`). A changed key is refused regardless.
    pub trust_new_host_keys: bool,
}

/// Every kind, ready for the engine.
pub fn kinds(desired: &DesiredState, ctx: &Context) -> Vec<Arc<dyn Kind>> {
    vec![
        engine::kind(pppd::PppdProvider::new(desired, ctx)),
        engine::kind(pppoe::PppoeProvider::new(desired, ctx)),
        engine::kind(uisp::UispProvider::new(desired, ctx)),
        engine::kind(airos::AirosProvider::new(desired, ctx)),
    ]
}
