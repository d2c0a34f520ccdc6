//! The apply report: every resource of the plan as applied, failed (why) or skipped (why).
//! One target's failure never hides another's results.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::Action;

/// What one apply did.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ApplyReport {
    /// Same versioning as the plan.
    pub format_version: u32,
    /// Per target.
    pub targets: Vec<TargetReport>,
    /// Counts.
    pub summary: ReportSummary,
}

/// One target's results.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct TargetReport {
    /// Target address.
    pub address: String,
    /// Why the target as a whole was not applied, if so.
    pub error: Option<String>,
    /// Per resource.
    pub outcomes: Vec<Outcome>,
    /// Objects of the target that could not be read and were left alone, by address (see
    /// `TargetPlan::object_errors`).
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub object_errors: std::collections::BTreeMap<String, String>,
}

/// One resource's result.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Outcome {
    /// Resource address.
    pub address: String,
    /// What was to be done.
    pub action: Action,
    /// What happened.
    pub status: Status,
    /// Why it failed, was skipped or was reverted.
    pub reason: Option<String>,
    /// For a change that disconnected a customer's session, when the router was asked to
    /// report redials (`redial_wait`): whether the customer was back on `/ppp/active` within
    /// the wait.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub redialed: Option<bool>,
}

impl Outcome {
    /// Done and verified.
    pub fn applied(address: &str, action: Action) -> Self {
        Outcome {
            address: address.into(),
            action,
            status: Status::Applied,
            reason: None,
            redialed: None,
        }
    }
    /// Tried and failed.
    pub fn failed(address: &str, action: Action, reason: impl Into<String>) -> Self {
        Outcome {
            address: address.into(),
            action,
            status: Status::Failed,
            reason: Some(reason.into()),
            redialed: None,
        }
    }
    /// Not tried.
    pub fn skipped(address: &str, action: Action, reason: impl Into<String>) -> Self {
        Outcome {
            address: address.into(),
            action,
            status: Status::Skipped,
            reason: Some(reason.into()),
            redialed: None,
        }
    }
    /// Written, not proven where it matters (an antenna UISP never showed connected again),
    /// and put back as it was before the run.
    pub fn reverted(address: &str, action: Action, reason: impl Into<String>) -> Self {
        Outcome {
            address: address.into(),
            action,
            status: Status::Reverted,
            reason: Some(reason.into()),
            redialed: None,
        }
    }
}

/// A resource's result.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    /// Written and verified.
    Applied,
    /// Tried; the device refused or verification failed.
    Failed,
    /// Not tried (guard, stale plan, unreachable target, an earlier failure).
    Skipped,
    /// Written, then put back as it was: the change did not prove itself (an antenna that
    /// UISP never showed connected again, with `rollout.revert_if_not_connected`).
    Reverted,
}

/// Counts of outcomes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct ReportSummary {
    /// Applied.
    pub applied: usize,
    /// Failed.
    pub failed: usize,
    /// Skipped.
    pub skipped: usize,
    /// Targets that were refused or could not be read.
    pub target_errors: usize,
    /// Objects that could not be read and were left alone (unreachable antennas).
    #[serde(default)]
    pub object_errors: usize,
    /// Written, not proven, put back as they were.
    #[serde(default)]
    pub reverted: usize,
    /// Customers whose session was disconnected and whose redial was waited for
    /// (`redial_wait`).
    #[serde(default)]
    pub redial_checked: usize,
    /// Of those, the customers back on `/ppp/active` within the wait.
    #[serde(default)]
    pub redialed: usize,
}

impl ApplyReport {
    /// Builds a report and its counts.
    pub fn new(targets: Vec<TargetReport>) -> Self {
        let mut s = ReportSummary::default();
        for t in &targets {
            if t.error.is_some() {
                s.target_errors += 1;
            }
            s.object_errors += t.object_errors.len();
            for o in &t.outcomes {
                match o.status {
                    Status::Applied => s.applied += 1,
                    Status::Failed => s.failed += 1,
                    Status::Skipped => s.skipped += 1,
                    Status::Reverted => s.reverted += 1,
                }
                if let Some(back) = o.redialed {
                    s.redial_checked += 1;
                    s.redialed += usize::from(back);
                }
            }
        }
        ApplyReport {
            format_version: super::FORMAT_VERSION,
            targets,
            summary: s,
        }
    }

    /// Whether everything asked for was applied.
    pub fn succeeded(&self) -> bool {
        self.summary.failed == 0
            && self.summary.skipped == 0
            && self.summary.reverted == 0
            && self.summary.target_errors == 0
            && self.summary.object_errors == 0
    }
}
