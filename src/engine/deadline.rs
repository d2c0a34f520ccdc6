//! Deadlines per target: how long reading one target (observe) and changing it (apply) may
//! take in all, however the time is spent (a router that sends one byte every half second, a
//! sentence that never ends, an antenna that never answers).
//!
//! The engine enforces them around the whole exchange: when one passes, the target's future is
//! dropped (its connections close, nothing more is sent) and the target is reported as failed,
//! so one target never holds a run, or the apply lock, past its bound. Per-read timeouts inside
//! a kind stay as they are; the deadline is the bound on their sum.
//!
//! Every target's inventory entry may set `deadline: { observe_secs: N, apply_secs: N }`; a
//! kind gives the defaults (a router's differ from a group of 200 antennas').

use std::num::NonZeroU64;
use std::time::Duration;

use schemars::JsonSchema;
use serde::Deserialize;

/// A target's `deadline:` in the inventory, in seconds. Unset fields take the kind's default.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DeadlineSpec {
    /// Seconds reading the target may take in all (connect, log in, every read).
    #[serde(default)]
    pub observe_secs: Option<NonZeroU64>,
    /// Seconds applying the target's changes may take in all (writes, verification).
    #[serde(default)]
    pub apply_secs: Option<NonZeroU64>,
}

impl DeadlineSpec {
    /// The deadline this spec gives over a kind's `default`.
    pub fn over(&self, default: Deadline) -> Deadline {
        let secs =
            |s: Option<NonZeroU64>, d: Duration| s.map_or(d, |s| Duration::from_secs(s.get()));
        Deadline {
            observe: secs(self.observe_secs, default.observe),
            apply: secs(self.apply_secs, default.apply),
        }
    }
}

/// The bounds on one target's observe and apply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Deadline {
    /// Reading the target, in all.
    pub observe: Duration,
    /// Applying its changes, in all.
    pub apply: Duration,
}

impl Deadline {
    /// The default of a kind that sets none: 2 minutes to read, 10 to apply.
    pub const DEFAULT: Deadline = Deadline::secs(120, 600);

    /// A deadline in seconds.
    pub const fn secs(observe: u64, apply: u64) -> Deadline {
        Deadline {
            observe: Duration::from_secs(observe),
            apply: Duration::from_secs(apply),
        }
    }
}

impl Default for Deadline {
    fn default() -> Self {
        Deadline::DEFAULT
    }
}

/// A read outside the engine (an import) that passed its target's deadline.
#[derive(Debug, thiserror::Error)]
#[error(
    "no complete answer within the deadline of {} (deadline.observe_secs); the connection was closed",
    words(*.0)
)]
pub struct PastDeadline(pub Duration);

/// Runs `work` within `bound`: past it, `work` is dropped (its connections close).
pub async fn within<F: std::future::Future>(
    bound: Duration,
    work: F,
) -> Result<F::Output, PastDeadline> {
    tokio::time::timeout(bound, work)
        .await
        .map_err(|_| PastDeadline(bound))
}

/// "2 s", "2 min", "1 h 5 min": a duration as the reports say it.
pub fn words(d: Duration) -> String {
    humantime::format_duration(Duration::from_secs(d.as_secs().max(1))).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unset_fields_take_the_kind_default() {
        let kind = Deadline::secs(30, 90);
        let spec = DeadlineSpec {
            observe_secs: NonZeroU64::new(5),
            apply_secs: None,
        };
        assert_eq!(spec.over(kind), Deadline::secs(5, 90));
        assert_eq!(DeadlineSpec::default().over(kind), kind);
    }

    #[test]
    fn zero_is_refused_when_the_file_is_read() {
        let err = serde_json::from_str::<DeadlineSpec>(r#"{"observe_secs": 0}"#).unwrap_err();
        assert!(err.to_string().contains("nonzero"), "{err}");
    }
}
