//! One folder per resource kind, each with the same parts: observe, diff (pure), apply, and a
//! lab twin. [`kinds`] is the one place that lists them.

pub mod pppd;
pub mod pppoe;

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
}

/// Every kind, ready for the engine.
pub fn kinds(desired: &DesiredState, ctx: &Context) -> Vec<Arc<dyn Kind>> {
    vec![engine::kind(pppd::PppdProvider::new(desired, ctx))]
}
