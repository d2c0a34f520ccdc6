//! The Plan: the one model every output (text, Markdown, JSON) is rendered from, and the
//! contract a saved plan file keeps with `apply FILE`.
//!
//! A plan never holds a secret value: sensitive fields carry only whether they change, and the
//! keyed hashes in [`TargetPlan::secret_hashes`] let apply prove it is writing what was reviewed.

pub mod render;
pub mod report;

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::secret::SecretHash;

/// Version of the plan file and plan JSON. Bumped on any incompatible change (2: each change
/// carries its customer impact, which a saved plan is compared on).
pub const FORMAT_VERSION: u32 = 2;

/// Everything one run would change, per target.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Plan {
    /// Always [`FORMAT_VERSION`] for plans this build writes.
    pub format_version: u32,
    /// The wispctl version that made the plan.
    pub wispctl_version: String,
    /// When the plan was made (RFC 3339, UTC).
    pub created_at: String,
    /// SHA-256 of the desired-state files the plan was made from.
    pub desired_digest: String,
    /// Names the hash key of the fingerprints and secret hashes (not the key itself).
    pub hash_key_id: String,
    /// Set when a run-wide guard refuses the whole plan (such as the delete cap).
    pub refusal: Option<String>,
    /// Set when the plan was made against a snapshot (`plan --snapshot`) rather than the
    /// targets themselves.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub snapshot: Option<SnapshotInfo>,
    /// One entry per observed target.
    pub targets: Vec<TargetPlan>,
    /// Counts of changes.
    pub summary: Summary,
}

/// The snapshot a plan was made against.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct SnapshotInfo {
    /// When it was taken (RFC 3339).
    pub taken_at: String,
    /// The host that took it.
    pub host: String,
    /// Its age when the plan was made, in seconds.
    pub age_secs: u64,
}

impl SnapshotInfo {
    /// `planned against a snapshot taken at T on HOST (age A)`.
    pub fn line(&self) -> String {
        format!(
            "planned against a snapshot taken at {} on {} (age {})",
            self.taken_at,
            self.host,
            humantime::format_duration(std::time::Duration::from_secs(self.age_secs))
        )
    }
}

/// One target's part of a plan.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct TargetPlan {
    /// Such as `pppd.vps`.
    pub address: String,
    /// Resource kind (`pppd`).
    pub kind: String,
    /// Target name (`vps`).
    pub name: String,
    /// Why the target could not be observed or diffed; it then has no changes.
    pub error: Option<String>,
    /// Set when a guard refuses this target's changes (such as an empty desired set).
    pub refusal: Option<String>,
    /// Changes in apply order: creates, updates, deletes.
    pub changes: Vec<Change>,
    /// Things the operator should know that are not changes.
    pub notes: Vec<String>,
    /// Keyed hash of every observed object by address (`absent` for a desired object not there).
    pub fingerprints: BTreeMap<String, String>,
    /// Keyed hash of every desired secret, by `address.field`.
    pub secret_hashes: BTreeMap<String, SecretHash>,
    /// Objects of this target that could not be read (an antenna that does not answer), by
    /// address: each is reported and left alone, and the rest of the target is planned and
    /// applied. Any entry makes the run exit 1.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub object_errors: BTreeMap<String, String>,
    /// Desired secrets not compared, by `address.field`: their references could not be
    /// resolved where the plan was made (`plan --snapshot --unresolved-secrets not-compared`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub not_compared: Vec<String>,
}

/// What happens to one resource.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Change {
    /// Stable address, such as `pppd.vps.peer["connexa-node-2"]`.
    pub address: String,
    /// Create, update or delete.
    pub action: Action,
    /// Why, when it is not plain (adoption of an unmarked object, pruning).
    pub reason: Option<String>,
    /// Per-field before and after.
    pub fields: Vec<FieldDiff>,
    /// Whole-file content before and after, for files (never a file holding secrets).
    pub content: Option<ContentDiff>,
    /// Consequences the operator must see (a session kicked, a tunnel to restart).
    pub side_effects: Vec<String>,
    /// What it does to customers, counted in the summary.
    #[serde(default, skip_serializing_if = "Impact::is_none")]
    pub impact: Impact,
}

/// What one change does to customers: who, and how many of their sessions, antennas and
/// tunnels it interrupts. The plan's summary adds them up; the disconnect guard counts them.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Impact {
    /// The customer it touches, as the operator knows them (a secret's name and comment, an
    /// antenna's name, a tunnel's peer).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub customer: Option<String>,
    /// Active PPPoE sessions it disconnects (the CPE redials).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub disconnects: usize,
    /// Antennas it restarts (their UISP connection drops while the bridge restarts).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub antenna_restarts: usize,
    /// Tunnels that take it only once restarted (wispctl does not restart them).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub tunnel_restarts: usize,
}

impl Impact {
    /// Names no customer and touches no connection.
    pub fn is_none(&self) -> bool {
        self.customer.is_none()
            && self.disconnects + self.antenna_restarts + self.tunnel_restarts == 0
    }
}

fn is_zero(n: &usize) -> bool {
    *n == 0
}

/// The kind of change.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    /// A new resource.
    Create,
    /// An existing resource changes.
    Update,
    /// A resource is removed.
    Delete,
}

/// One field's change. Sensitive fields never carry values.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct FieldDiff {
    /// Field name in the YAML.
    pub name: String,
    /// Live value (absent on create, or when sensitive).
    pub before: Option<String>,
    /// Desired value (absent on delete, or when sensitive).
    pub after: Option<String>,
    /// A secret: rendered as `(sensitive)` or `(sensitive, changed)`.
    pub sensitive: bool,
    /// A secret whose reference this command could not resolve: rendered as
    /// `(sensitive, not compared)`, never a change by itself.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub not_compared: bool,
}

impl FieldDiff {
    /// A plain field.
    pub fn plain(name: &str, before: Option<String>, after: Option<String>) -> Self {
        FieldDiff {
            name: name.into(),
            before,
            after,
            sensitive: false,
            not_compared: false,
        }
    }
    /// A secret field; only the fact of the change is kept.
    pub fn sensitive(name: &str) -> Self {
        FieldDiff {
            name: name.into(),
            before: None,
            after: None,
            sensitive: true,
            not_compared: false,
        }
    }

    /// A secret not compared (see [`FieldDiff::not_compared`]).
    pub fn not_compared(name: &str) -> Self {
        FieldDiff {
            not_compared: true,
            ..FieldDiff::sensitive(name)
        }
    }
}

/// Content of a file before and after.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ContentDiff {
    /// The file's path on its host.
    pub path: String,
    /// Live content; `None` when the file does not exist.
    pub before: Option<String>,
    /// Desired content; `None` when the file goes.
    pub after: Option<String>,
}

/// Counts of changes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Summary {
    /// Creates.
    pub add: usize,
    /// Updates.
    pub change: usize,
    /// Deletes.
    pub destroy: usize,
    /// Active sessions the changes disconnect.
    #[serde(default)]
    pub disconnects: usize,
    /// Antennas the changes restart.
    #[serde(default)]
    pub antenna_restarts: usize,
    /// Tunnels that need a restart to take the changes.
    #[serde(default)]
    pub tunnel_restarts: usize,
    /// Desired secrets not compared (see `TargetPlan::not_compared`).
    #[serde(default)]
    pub not_compared: usize,
}

impl Summary {
    /// Counts the changes of some targets.
    pub fn of<'a>(targets: impl IntoIterator<Item = &'a TargetPlan>) -> Self {
        let mut s = Summary::default();
        for t in targets {
            s.not_compared += t.not_compared.len();
            for c in &t.changes {
                match c.action {
                    Action::Create => s.add += 1,
                    Action::Update => s.change += 1,
                    Action::Delete => s.destroy += 1,
                }
                s.disconnects += c.impact.disconnects;
                s.antenna_restarts += c.impact.antenna_restarts;
                s.tunnel_restarts += c.impact.tunnel_restarts;
            }
        }
        s
    }

    /// The customer-impact line: `Impact: 3 session(s) disconnected, 0 antenna(s)
    /// restarted, 1 tunnel(s) to restart.`
    pub fn impact_line(&self) -> String {
        format!(
            "Impact: {} session(s) disconnected, {} antenna(s) restarted, {} tunnel(s) to restart.",
            self.disconnects, self.antenna_restarts, self.tunnel_restarts
        )
    }

    /// `N secret value(s) not compared: ...`, when some were not.
    pub fn not_compared_line(&self) -> Option<String> {
        (self.not_compared > 0).then(|| {
            format!(
                "{} secret value(s) not compared: their references cannot be resolved here (--unresolved-secrets not-compared); apply compares them where they resolve.",
                self.not_compared
            )
        })
    }

    /// Whether anything changes.
    pub fn is_empty(&self) -> bool {
        self.add + self.change + self.destroy == 0
    }
}

impl std::fmt::Display for Summary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "Plan: {} to add, {} to change, {} to destroy.",
            self.add, self.change, self.destroy
        )
    }
}

impl Plan {
    /// Whether the plan has any change, error or refusal worth a non-zero exit.
    pub fn has_changes(&self) -> bool {
        !self.summary.is_empty()
    }

    /// Errors and refusals, target by target, for the exit code and the closing lines.
    pub fn problems(&self) -> Vec<String> {
        let mut out: Vec<String> = self.refusal.iter().cloned().collect();
        for t in &self.targets {
            if let Some(e) = &t.error {
                out.push(format!("{}: {e}", t.address));
            }
            if let Some(r) = &t.refusal {
                out.push(format!("{}: {r}", t.address));
            }
            for (a, e) in &t.object_errors {
                out.push(format!("{a}: {e}"));
            }
        }
        out
    }
}

/// Quotes a key inside an address: `"name"` with `\` and `"` escaped.
pub fn quote_key(key: &str) -> String {
    let mut s = String::with_capacity(key.len() + 2);
    push_quoted(&mut s, key);
    s
}

fn push_quoted(s: &mut String, key: &str) {
    s.push('"');
    if !key
        .chars()
        .any(|c| matches!(c, '"' | '\\') || c.is_control())
    {
        s.push_str(key);
    } else {
        for c in key.chars() {
            match c {
                '"' | '\\' => {
                    s.push('\\');
                    s.push(c);
                }
                c if c.is_control() => s.push_str(&format!("\\u{{{:x}}}", c as u32)),
                c => s.push(c),
            }
        }
    }
    s.push('"');
}

/// The address of a target: `kind.target`.
pub fn target_address(kind: &str, target: &str) -> String {
    format!("{kind}.{target}")
}

/// The address of a resource: `kind.target.collection["key"]`.
pub fn address(kind: &str, target: &str, collection: &str, key: &str) -> String {
    let mut s = String::with_capacity(kind.len() + target.len() + collection.len() + key.len() + 6);
    for part in [kind, ".", target, ".", collection, "["] {
        s.push_str(part);
    }
    push_quoted(&mut s, key);
    s.push(']');
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_quote_their_keys() {
        assert_eq!(
            address("pppd", "vps", "peer", "connexa-node-2"),
            r#"pppd.vps.peer["connexa-node-2"]"#
        );
        assert_eq!(quote_key("a\"b\\c"), r#""a\"b\\c""#);
    }
}
