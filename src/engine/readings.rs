//! Where a plan's observations come from: the targets themselves (live), or the readings a
//! snapshot kept ([`Replay`]); and, for `wispctl snapshot`, what a live plan read, kept in a
//! secret-free form ([`Recorder`]). The engine knows no kind's form: each provider turns its
//! observed state into JSON and back ([`super::Provider::snapshot_form`],
//! [`super::Provider::restore_snapshot`]).

use std::collections::BTreeMap;
use std::sync::Mutex;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// One target as a snapshot holds it: what was read, or why it could not be.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Reading {
    /// The kind's secret-free form of what was read; `None` when it could not be read.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed: Option<serde_json::Value>,
    /// The keyed fingerprint of every object, as a live read gives them (a plan made from the
    /// snapshot carries them, and `apply` refuses what moved since).
    #[serde(default)]
    pub fingerprints: BTreeMap<String, String>,
    /// Why the target could not be read (or kept) when the snapshot was taken.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// Readings by target address (`pppoe.balanceador`), to plan from instead of reading.
#[derive(Debug, Default)]
pub struct Replay(pub BTreeMap<String, Reading>);

/// Collects what a live plan read, by target address.
#[derive(Debug, Default)]
pub struct Recorder(Mutex<BTreeMap<String, Reading>>);

impl Recorder {
    /// Keeps one target's reading.
    pub fn keep(&self, address: &str, reading: Reading) {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(address.to_string(), reading);
    }

    /// Everything kept.
    pub fn take(&self) -> BTreeMap<String, Reading> {
        std::mem::take(
            &mut *self
                .0
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner),
        )
    }
}

/// Where one run's observations come from, and whether they are recorded.
#[derive(Debug, Clone, Default)]
pub struct Source {
    /// Plan from these readings; `None`: read the targets.
    pub replay: Option<std::sync::Arc<Replay>>,
    /// Keep what was read here (`wispctl snapshot`).
    pub record: Option<std::sync::Arc<Recorder>>,
}
