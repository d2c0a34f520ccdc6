//! Progress as events: the engine and the providers send them, a reporter draws them (a
//! progress bar on a terminal, plain lines in a log, nothing in JSON mode). A provider never
//! draws on the terminal itself.

use std::sync::Arc;

/// Something worth showing while a run goes on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// Reading of targets begins.
    ObserveStarted {
        /// Targets to read.
        targets: usize,
    },
    /// One target was read and diffed (or could not be).
    TargetPlanned {
        /// `pppoe.balanceador`.
        address: String,
        /// Changes found.
        changes: usize,
        /// Why it could not be read, when it could not.
        error: Option<String>,
    },
    /// Progress inside one target (antennas of a group read or written).
    Progress {
        /// `airos.clientes`.
        address: String,
        /// What is counted (`antennas read`).
        what: &'static str,
        /// Done so far.
        done: usize,
        /// Out of.
        total: usize,
    },
    /// Apply begins.
    ApplyStarted {
        /// Targets with changes to apply.
        targets: usize,
        /// Changes in all.
        changes: usize,
    },
    /// One target's changes are applied (or failed).
    TargetApplied {
        /// `pppoe.balanceador`.
        address: String,
        /// Changes applied.
        applied: usize,
        /// Changes failed or skipped.
        failed: usize,
    },
}

/// Where events go. Cloning is cheap; the default goes nowhere.
#[derive(Clone)]
pub struct Events(Option<Arc<dyn Fn(Event) + Send + Sync>>);

impl Events {
    /// Events go nowhere.
    pub fn none() -> Self {
        Events(None)
    }

    /// Events go to `sink`.
    pub fn to(sink: impl Fn(Event) + Send + Sync + 'static) -> Self {
        Events(Some(Arc::new(sink)))
    }

    /// Sends one event.
    pub fn send(&self, event: Event) {
        if let Some(s) = &self.0 {
            s(event);
        }
    }
}

impl Default for Events {
    fn default() -> Self {
        Events::none()
    }
}

impl std::fmt::Debug for Events {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.0.is_some() {
            "Events(..)"
        } else {
            "Events(none)"
        })
    }
}
