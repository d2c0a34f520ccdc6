//! The inventory's `reconcile:` section: how `wispctl reconcile` runs (per kind or per target
//! a mode and an interval, jitter, backoff, how often the folder is looked at), its
//! maintenance windows ([`super::window`]) and its notifications ([`super::notify`]).
//!
//! ```yaml
//! reconcile:
//!   mode: observe            # every target: observe (report drift, never write) or apply
//!   kinds:
//!     pppd: { mode: apply, interval: 2m }
//!     airos: { interval: 1h, concurrency: 4 }
//!   targets:
//!     pppoe.balanceador: { mode: apply }
//! ```

use std::collections::BTreeMap;
use std::time::Duration;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::notify::{Notify, NotifySpec};
use super::schedule::{Backoff, Schedule};
use super::window::{Windows, WindowsSpec};
use crate::kinds::def::InventoryNames;
use crate::yaml::FileCheck;

/// What the controller does with drift.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    /// Report drift (history, status, notifications); never write. The default.
    #[default]
    Observe,
    /// Correct drift within the guards (self-heal), inside the maintenance windows.
    Apply,
}

impl Mode {
    /// `observe` or `apply`.
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Observe => "observe",
            Mode::Apply => "apply",
        }
    }
}

/// The inventory's `reconcile:` section, as written.
#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ReconcileSpec {
    /// The mode of every target that `kinds` or `targets` does not set: `observe` (the
    /// default) or `apply`.
    #[serde(default)]
    pub mode: Option<Mode>,
    /// Per kind (`pppoe`, `uisp`, `airos`, `pppd`): mode, interval, concurrency.
    #[serde(default)]
    pub kinds: BTreeMap<String, KindSpec>,
    /// Per target address (`pppoe.balanceador`): mode and interval, over its kind's.
    #[serde(default)]
    pub targets: BTreeMap<String, TargetSpec>,
    /// How much each wait may be shorter or longer than the interval, as a fraction (0 to
    /// 0.5; default 0.1): targets drift apart instead of being read in the same second.
    #[serde(default)]
    pub jitter: Option<f64>,
    /// After a failed reconcile: the first wait (default 30s), doubled after each further
    /// failure up to `backoff_cap` (default 15m).
    #[serde(default)]
    pub backoff: Option<String>,
    /// The longest wait after failures (default 15m).
    #[serde(default)]
    pub backoff_cap: Option<String>,
    /// How often the desired-state folder (or, with `--git`, the remote branch) is looked at
    /// for changes (default 10s).
    #[serde(default)]
    pub poll: Option<String>,
    /// When unattended writes may happen (the controller, `apply --auto-approve` without a
    /// terminal). Deny wins over allow; no allow list: always, unless denied.
    #[serde(default)]
    pub windows: Option<WindowsSpec>,
    /// Where notifications go when the set of drifting, failing or unreachable targets
    /// changes.
    #[serde(default)]
    pub notify: Option<NotifySpec>,
}

/// `reconcile.kinds.<kind>`.
#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct KindSpec {
    /// `observe` or `apply`.
    #[serde(default)]
    pub mode: Option<Mode>,
    /// Between two reconciles of one target, such as 5m (defaults: pppoe 5m, uisp 10m, airos
    /// 1h, pppd 5m).
    #[serde(default)]
    pub interval: Option<String>,
    /// At most this many targets of the kind reconciled at once (default 2).
    #[serde(default)]
    pub concurrency: Option<usize>,
}

/// `reconcile.targets.<address>`.
#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TargetSpec {
    /// `observe` or `apply`.
    #[serde(default)]
    pub mode: Option<Mode>,
    /// Between two reconciles, such as 2m.
    #[serde(default)]
    pub interval: Option<String>,
}

/// One kind's settings: mode, interval, concurrency (unset: the defaults).
type KindSettings = (Option<Mode>, Option<Duration>, Option<usize>);

/// The section after validation.
#[derive(Debug, Clone)]
pub struct Reconcile {
    default_mode: Mode,
    kinds: BTreeMap<String, KindSettings>,
    targets: BTreeMap<String, (Option<Mode>, Option<Duration>)>,
    jitter: f64,
    backoff: Backoff,
    /// How often the folder or the remote branch is looked at.
    pub poll: Duration,
    /// Maintenance windows.
    pub windows: Windows,
    /// Notifications, when configured.
    pub notify: Option<Notify>,
}

impl Default for Reconcile {
    fn default() -> Self {
        Reconcile {
            default_mode: Mode::Observe,
            kinds: BTreeMap::new(),
            targets: BTreeMap::new(),
            jitter: DEFAULT_JITTER,
            backoff: DEFAULT_BACKOFF,
            poll: DEFAULT_POLL,
            windows: Windows::always(),
            notify: None,
        }
    }
}

const DEFAULT_JITTER: f64 = 0.1;
const DEFAULT_BACKOFF: Backoff = Backoff {
    base: Duration::from_secs(30),
    cap: Duration::from_secs(15 * 60),
};
const DEFAULT_POLL: Duration = Duration::from_secs(10);
const DEFAULT_CONCURRENCY: usize = 2;

impl Reconcile {
    /// The mode of target `address` of kind `kind`.
    pub fn mode(&self, kind: &str, address: &str) -> Mode {
        self.targets
            .get(address)
            .and_then(|t| t.0)
            .or_else(|| self.kinds.get(kind).and_then(|k| k.0))
            .unwrap_or(self.default_mode)
    }

    /// The schedule of target `address` of kind `kind`.
    pub fn schedule(&self, kind: &str, address: &str) -> Schedule {
        let interval = self
            .targets
            .get(address)
            .and_then(|t| t.1)
            .or_else(|| self.kinds.get(kind).and_then(|k| k.1))
            .or_else(|| crate::kinds::by_name(kind).map(|k| k.reconcile_interval()))
            .unwrap_or(Duration::from_secs(300));
        Schedule {
            interval,
            jitter: self.jitter,
            backoff: self.backoff,
        }
    }

    /// At most this many reconciles of kind `kind` at once.
    pub fn concurrency(&self, kind: &str) -> usize {
        self.kinds
            .get(kind)
            .and_then(|k| k.2)
            .unwrap_or(DEFAULT_CONCURRENCY)
            .max(1)
    }
}

fn duration(check: &mut FileCheck<'_>, path: &str, text: &Option<String>) -> Option<Duration> {
    let text = text.as_ref()?;
    match humantime::parse_duration(text) {
        Ok(d) if d >= Duration::from_secs(1) => Some(d),
        Ok(_) => {
            check.error(path, format!("{text:?} is too short: at least 1s"));
            None
        }
        Err(e) => {
            check.error(
                path,
                format!("{text:?} is not a duration such as 30s, 5m or 1h: {e}"),
            );
            None
        }
    }
}

/// Validates the section (`None`: not written), reporting at `reconcile.…`; what is wrong
/// falls back to its default after the error is reported (the load fails anyway).
pub(crate) fn validate(
    spec: Option<ReconcileSpec>,
    check: &mut FileCheck<'_>,
    names: &InventoryNames,
    inline_ok: bool,
) -> Reconcile {
    let Some(spec) = spec else {
        return Reconcile::default();
    };
    let mut r = Reconcile {
        default_mode: spec.mode.unwrap_or_default(),
        ..Reconcile::default()
    };
    let kinds: Vec<&str> = crate::kinds::ALL.iter().map(|k| k.name()).collect();
    for (kind, k) in &spec.kinds {
        let path = format!("reconcile.kinds.{kind}");
        if !kinds.contains(&kind.as_str()) {
            check.error(
                &format!("{path}#key"),
                format!("no kind is named {kind:?} (kinds: {})", kinds.join(", ")),
            );
            continue;
        }
        let interval = duration(check, &format!("{path}.interval"), &k.interval);
        if k.concurrency == Some(0) {
            check.error(
                &format!("{path}.concurrency"),
                "concurrency must be at least 1".into(),
            );
        }
        r.kinds
            .insert(kind.clone(), (k.mode, interval, k.concurrency));
    }
    for (address, t) in &spec.targets {
        let path = format!("reconcile.targets.{}", crate::plan::quote_key(address));
        let known = address.split_once('.').is_some_and(|(kind, name)| {
            crate::kinds::by_name(kind)
                .and_then(|k| names.get(k.section()))
                .is_some_and(|defined| defined.iter().any(|n| n == name))
        });
        if !known {
            check.error(
                &format!("{path}#key"),
                format!(
                    "{address:?} is not a target of this inventory: write kind.name, such as pppoe.balanceador"
                ),
            );
            continue;
        }
        let interval = duration(check, &format!("{path}.interval"), &t.interval);
        r.targets.insert(address.clone(), (t.mode, interval));
    }
    if let Some(j) = spec.jitter {
        if (0.0..=0.5).contains(&j) {
            r.jitter = j;
        } else {
            check.error("reconcile.jitter", format!("{j} is not between 0 and 0.5"));
        }
    }
    if let Some(b) = duration(check, "reconcile.backoff", &spec.backoff) {
        r.backoff.base = b;
    }
    if let Some(c) = duration(check, "reconcile.backoff_cap", &spec.backoff_cap) {
        r.backoff.cap = c;
    }
    if r.backoff.cap < r.backoff.base {
        check.error(
            "reconcile.backoff_cap",
            format!(
                "the cap ({}) is shorter than the first wait ({})",
                humantime::format_duration(r.backoff.cap),
                humantime::format_duration(r.backoff.base)
            ),
        );
    }
    if let Some(p) = duration(check, "reconcile.poll", &spec.poll) {
        r.poll = p;
    }
    if let Some(w) = spec.windows
        && let Some(w) = super::window::validate(w, check, "reconcile.windows")
    {
        r.windows = w;
    }
    let _ = inline_ok; // notification secrets are references, never inline
    if let Some(n) = spec.notify {
        r.notify = super::notify::validate(n, check, "reconcile.notify");
    }
    r
}
