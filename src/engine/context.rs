//! What every provider gets besides its desired state: the hash key, the state folder, where
//! targets are reached, how SSH host keys are trusted, and where progress goes.

use std::any::Any;
use std::path::PathBuf;
use std::sync::Arc;

use super::early::EarlyReads;
use super::events::Events;
use crate::secret::HashKey;

/// What every provider gets besides its desired state.
#[derive(Clone)]
pub struct Context {
    /// Key of fingerprints and secret hashes.
    pub key: Arc<HashKey>,
    /// The state directory (password hashes of routers, remembered credentials, known hosts).
    pub state_dir: PathBuf,
    /// Where targets are reached: the inventory's addresses, or the lab's twins.
    pub endpoints: Arc<dyn Endpoints>,
    /// Record the host key of an SSH device the known-hosts file does not list yet, instead
    /// of refusing it (`--trust-new-host-keys`). A changed key is refused regardless.
    pub trust_new_host_keys: bool,
    /// Where progress goes (a reporter draws it; nothing reads it in JSON mode).
    pub events: Events,
    /// Reads begun before the desired state finished loading (`plan`, `drift`).
    pub early: Arc<EarlyReads>,
}

impl Context {
    /// A context for real targets, quiet.
    pub fn new(key: Arc<HashKey>, state_dir: PathBuf) -> Self {
        Context {
            key,
            state_dir,
            endpoints: Arc::new(RealNetwork),
            trust_new_host_keys: false,
            events: Events::none(),
            early: Arc::default(),
        }
    }

    /// The same context with other endpoints (the lab's twins).
    pub fn with_endpoints(mut self, endpoints: Arc<dyn Endpoints>) -> Self {
        self.endpoints = endpoints;
        self
    }

    /// Where target `name` of inventory `section` is reached: `Ok(None)` at the inventory's
    /// own address, `Ok(Some(t))` at a stand-in of type `T` (a lab twin), or an error when
    /// stand-ins are in force and this target has none: it is then never reached at its real
    /// address.
    pub fn route<T: Clone + 'static>(
        &self,
        section: &str,
        name: &str,
    ) -> Result<Option<T>, NoTwin> {
        match self.endpoints.route(section, name) {
            Route::Real => Ok(None),
            Route::Twin(t) => match t.downcast_ref::<T>() {
                Some(t) => Ok(Some(t.clone())),
                None => Err(NoTwin {
                    section: section.into(),
                    name: name.into(),
                }),
            },
            Route::Missing => Err(NoTwin {
                section: section.into(),
                name: name.into(),
            }),
        }
    }
}

/// Where a target is reached.
pub enum Route {
    /// At the address the inventory gives.
    Real,
    /// At a stand-in, whose type the target's kind knows.
    Twin(Arc<dyn Any + Send + Sync>),
    /// Stand-ins are in force and there is none for this target.
    Missing,
}

/// Resolves targets to where they are reached. The lab injects its twins through this; real
/// runs use [`RealNetwork`].
pub trait Endpoints: Send + Sync {
    /// The route to target `name` of inventory section `section`.
    fn route(&self, section: &str, name: &str) -> Route;
}

/// Every target at its inventory address.
pub struct RealNetwork;

impl Endpoints for RealNetwork {
    fn route(&self, _section: &str, _name: &str) -> Route {
        Route::Real
    }
}

/// Stand-ins are in force and a target has none.
#[derive(Debug, Clone, thiserror::Error)]
#[error("the lab has no twin of {section}.{name}; a lab never reaches a real address")]
pub struct NoTwin {
    /// Inventory section.
    pub section: String,
    /// Target name.
    pub name: String,
}
