//! The controller's history and status, kept in the state folder (`status.json`, mode 0600,
//! written atomically after every reconcile) so that `wispctl status` reads it while the
//! controller runs and after it stopped.
//!
//! Per target: the last reconcile (when, outcome, how long, what is next), since when it is
//! in sync or drifting, consecutive failures. Per drifting object address: first seen, last
//! seen, resolved. The last events (drift found, resolved, applied, failed, reloads). Bounded:
//! at most [`MAX_OBJECTS`] object records (resolved ones go first) and [`MAX_EVENTS`] events.
//! Addresses, counts, times, outcomes and wispctl's own error and refusal texts (which never
//! quote a secret, a device's answer or a file's content): never a value from a device or the
//! YAML.

use std::collections::{BTreeMap, VecDeque};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// The version of `status.json`.
pub const FORMAT_VERSION: u32 = 1;
/// Object records kept at most.
pub const MAX_OBJECTS: usize = 5_000;
/// Events kept at most.
pub const MAX_EVENTS: usize = 500;
/// The file in the state folder.
pub const FILE: &str = "status.json";

/// What one reconcile of a target found or did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// Live equals desired.
    InSync,
    /// Live differs (observe mode, or writes not allowed now).
    Drift,
    /// The differences were written.
    Applied,
    /// Writing failed (some changes at least).
    Failed,
    /// The target could not be read.
    Unreachable,
    /// Writes were held back: outside the maintenance windows, or a guard refused.
    Blocked,
}

impl Outcome {
    /// Every outcome, in the order of the `wispctl_target_outcome` series.
    pub const ALL: [Outcome; 6] = [
        Outcome::InSync,
        Outcome::Drift,
        Outcome::Applied,
        Outcome::Failed,
        Outcome::Unreachable,
        Outcome::Blocked,
    ];

    /// The snake_case name (also the metrics' label value).
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::InSync => "in_sync",
            Outcome::Drift => "drift",
            Outcome::Applied => "applied",
            Outcome::Failed => "failed",
            Outcome::Unreachable => "unreachable",
            Outcome::Blocked => "blocked",
        }
    }

    /// A failure the scheduler backs off from.
    pub fn is_failure(self) -> bool {
        matches!(self, Outcome::Failed | Outcome::Unreachable)
    }
}

/// One target's status.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, JsonSchema)]
pub struct TargetStatus {
    /// Its kind.
    pub kind: String,
    /// `observe` or `apply`.
    pub mode: String,
    /// When the last reconcile ended (RFC 3339).
    pub last_reconcile_at: String,
    /// Its outcome.
    pub outcome: Outcome,
    /// How long it took, in milliseconds.
    pub duration_ms: u64,
    /// Objects that differed when it was read.
    pub drifting: usize,
    /// Changes written by it.
    pub applied: usize,
    /// Why writes were held back, or why it failed (no value from a device).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    /// Since when the outcome has been what it is (in sync, drifting, failing).
    pub since: String,
    /// Failed reconciles in a row.
    pub consecutive_failures: u32,
    /// When the next reconcile is due (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_run_at: Option<String>,
}

/// One object that drifted.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, JsonSchema)]
pub struct ObjectRecord {
    /// Its target.
    pub target: String,
    /// When its drift was first seen.
    pub first_seen: String,
    /// When it was last seen drifting.
    pub last_seen: String,
    /// When it was seen in line again (applied, or changed back); `None` while drifting.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resolved_at: Option<String>,
}

/// One event.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, JsonSchema)]
pub struct EventRecord {
    /// When (RFC 3339).
    pub at: String,
    /// The target, or `-` for the controller itself.
    pub target: String,
    /// What: `drift`, `resolved`, `applied`, `failed`, `unreachable`, `blocked`, `reload`,
    /// `reload_refused`, `started`, `stopped`.
    pub event: String,
    /// A short description (counts, addresses, file:line:column).
    pub detail: String,
}

/// The controller itself.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default, JsonSchema)]
pub struct ControllerInfo {
    /// Its process.
    pub pid: u32,
    /// Its host.
    pub host: String,
    /// When it started.
    pub started_at: String,
    /// When it stopped, once it has.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stopped_at: Option<String>,
    /// The digest of the desired state it runs.
    pub desired_digest: String,
    /// The commit it runs, with `--git`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub commit: Option<String>,
    /// When the desired state was last (re)loaded.
    pub loaded_at: String,
    /// Why the latest change of the desired state was refused (the last good one keeps
    /// running), as file:line:column lines; `None` when the latest loaded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refused: Option<String>,
}

/// The whole file.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default, JsonSchema)]
pub struct Status {
    /// [`FORMAT_VERSION`].
    pub format_version: u32,
    /// When it was written.
    pub updated_at: String,
    /// The controller.
    pub controller: ControllerInfo,
    /// By target address.
    pub targets: BTreeMap<String, TargetStatus>,
    /// By object address.
    pub objects: BTreeMap<String, ObjectRecord>,
    /// The latest last.
    pub events: VecDeque<EventRecord>,
}

/// The time as the file writes it.
pub fn now() -> String {
    humantime::format_rfc3339_seconds(SystemTime::now()).to_string()
}

/// One reconcile's result, as [`Status::record`] takes it.
#[derive(Debug, Clone)]
pub struct Reconciled<'a> {
    /// Target address.
    pub target: &'a str,
    /// Kind.
    pub kind: &'a str,
    /// Mode.
    pub mode: &'a str,
    /// Outcome.
    pub outcome: Outcome,
    /// Duration.
    pub duration_ms: u64,
    /// The object addresses that differed when read.
    pub drifting: &'a [String],
    /// Changes written.
    pub applied: usize,
    /// Why held back or failed.
    pub detail: Option<String>,
    /// When the next one is due.
    pub next_run_at: Option<String>,
}

impl Status {
    /// Path of the file in `state_dir`.
    pub fn path(state_dir: &Path) -> PathBuf {
        state_dir.join(FILE)
    }

    /// Reads it; `None` when there is none.
    pub fn load(state_dir: &Path) -> Result<Option<Status>, String> {
        let path = Status::path(state_dir);
        let bytes = match crate::untrusted::file::read(&path, 64 * 1024 * 1024, None) {
            Ok(b) => b,
            Err(e) if e.is_not_found() => return Ok(None),
            Err(e) => return Err(format!("cannot read {}: {e}", path.display())),
        };
        serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|e| format!("{} is not a status file: {e}", path.display()))
    }

    /// Writes it atomically, mode 0600.
    pub fn save(&mut self, state_dir: &Path) -> std::io::Result<()> {
        self.format_version = FORMAT_VERSION;
        self.updated_at = now();
        let text = serde_json::to_vec_pretty(self).expect("status serialises");
        crate::files::write_atomic(&Status::path(state_dir), &text, 0o600)
    }

    /// Adds an event, dropping the oldest beyond [`MAX_EVENTS`].
    pub fn event(&mut self, target: &str, event: &str, detail: String) {
        self.events.push_back(EventRecord {
            at: now(),
            target: target.into(),
            event: event.into(),
            detail,
        });
        while self.events.len() > MAX_EVENTS {
            self.events.pop_front();
        }
    }

    /// Records one reconcile: the target's status, its objects' first/last seen/resolved,
    /// and an event when its outcome class changed.
    pub fn record(&mut self, r: Reconciled<'_>) {
        let at = now();
        let prev = self.targets.get(r.target).cloned();
        let prev = prev.as_ref();
        let class = |o: Outcome| match o {
            Outcome::InSync | Outcome::Applied => "in_sync",
            Outcome::Drift | Outcome::Blocked => "drift",
            Outcome::Failed | Outcome::Unreachable => "failing",
        };
        let changed = prev.is_none_or(|p| class(p.outcome) != class(r.outcome));
        let since = match prev {
            Some(p) if !changed => p.since.clone(),
            _ => at.clone(),
        };
        let failures = if r.outcome.is_failure() {
            prev.map_or(0, |p| p.consecutive_failures).saturating_add(1)
        } else {
            0
        };
        // Objects: seen drifting now, or resolved (a target that could not be read tells
        // nothing about its objects).
        if !matches!(r.outcome, Outcome::Unreachable) {
            let now_drifting: std::collections::BTreeSet<&str> = if r.outcome == Outcome::Applied {
                Default::default()
            } else {
                r.drifting.iter().map(String::as_str).collect()
            };
            for a in &now_drifting {
                let rec = self
                    .objects
                    .entry((*a).to_string())
                    .or_insert_with(|| ObjectRecord {
                        target: r.target.into(),
                        first_seen: at.clone(),
                        last_seen: at.clone(),
                        resolved_at: None,
                    });
                if rec.resolved_at.is_some() {
                    // Drifting again: a new episode.
                    rec.first_seen = at.clone();
                    rec.resolved_at = None;
                }
                rec.last_seen = at.clone();
            }
            for (a, rec) in self.objects.iter_mut() {
                if rec.target == r.target
                    && rec.resolved_at.is_none()
                    && !now_drifting.contains(a.as_str())
                {
                    rec.resolved_at = Some(at.clone());
                }
            }
            self.bound_objects();
        }
        if changed || r.outcome == Outcome::Applied {
            let detail = match r.outcome {
                Outcome::InSync => "in sync".to_string(),
                Outcome::Drift => format!("{} object(s) differ", r.drifting.len()),
                Outcome::Applied => format!("{} change(s) written", r.applied),
                Outcome::Blocked => format!(
                    "{} object(s) differ; writes held back: {}",
                    r.drifting.len(),
                    r.detail.as_deref().unwrap_or("")
                ),
                Outcome::Failed | Outcome::Unreachable => r.detail.clone().unwrap_or_default(),
            };
            let event = match (r.outcome, prev.map(|p| class(p.outcome))) {
                (Outcome::InSync, Some("drift" | "failing")) => "resolved",
                (o, _) => o.as_str(),
            };
            if prev.is_some() || r.outcome != Outcome::InSync {
                self.event(r.target, event, detail);
            }
        }
        self.targets.insert(
            r.target.into(),
            TargetStatus {
                kind: r.kind.into(),
                mode: r.mode.into(),
                last_reconcile_at: at,
                outcome: r.outcome,
                duration_ms: r.duration_ms,
                // Written: nothing drifts any more.
                drifting: if r.outcome == Outcome::Applied {
                    0
                } else {
                    r.drifting.len()
                },
                applied: r.applied,
                detail: r.detail,
                since,
                consecutive_failures: failures,
                next_run_at: r.next_run_at,
            },
        );
    }

    /// Keeps at most [`MAX_OBJECTS`] records: resolved ones go first, oldest first.
    fn bound_objects(&mut self) {
        if self.objects.len() <= MAX_OBJECTS {
            return;
        }
        let mut resolved: Vec<(String, String)> = self
            .objects
            .iter()
            .filter_map(|(a, r)| r.resolved_at.clone().map(|t| (t, a.clone())))
            .collect();
        resolved.sort();
        let excess = self.objects.len() - MAX_OBJECTS;
        for (_, a) in resolved.into_iter().take(excess) {
            self.objects.remove(&a);
        }
        while self.objects.len() > MAX_OBJECTS {
            let oldest = self
                .objects
                .iter()
                .min_by(|a, b| a.1.last_seen.cmp(&b.1.last_seen))
                .map(|(a, _)| a.clone())
                .expect("not empty");
            self.objects.remove(&oldest);
        }
    }

    /// Forgets targets no longer in the desired state.
    pub fn retain_targets(&mut self, keep: &std::collections::BTreeSet<String>) {
        self.targets.retain(|t, _| keep.contains(t));
    }

    /// `wispctl status` as text.
    pub fn text(&self, out: &mut dyn Write, running: bool) -> std::io::Result<()> {
        let c = &self.controller;
        if running {
            writeln!(
                out,
                "Controller: running (pid {} on {}, since {}), desired state {} loaded {}{}.",
                c.pid,
                c.host,
                c.started_at,
                short(&c.desired_digest),
                c.loaded_at,
                c.commit
                    .as_deref()
                    .map(|x| format!(", commit {}", short(x)))
                    .unwrap_or_default()
            )?;
        } else {
            writeln!(
                out,
                "Controller: not running (pid {} on {} started {}{}); status as of {}.",
                c.pid,
                c.host,
                c.started_at,
                c.stopped_at
                    .as_deref()
                    .map(|s| format!(", stopped {s}"))
                    .unwrap_or_default(),
                self.updated_at
            )?;
        }
        if let Some(r) = &c.refused {
            writeln!(
                out,
                "The latest desired state was refused; the last good one keeps running:\n{r}"
            )?;
        }
        writeln!(out)?;
        let w = self
            .targets
            .keys()
            .map(|k| k.len())
            .max()
            .unwrap_or(6)
            .max(6);
        writeln!(
            out,
            "{:w$}  {:7}  {:11}  {:>8}  {:20}  {:20}  {:>7}",
            "TARGET", "MODE", "OUTCOME", "DRIFTING", "SINCE", "LAST", "TOOK"
        )?;
        for (t, s) in &self.targets {
            writeln!(
                out,
                "{t:w$}  {:7}  {:11}  {:>8}  {:20}  {:20}  {:>6}s",
                s.mode,
                s.outcome.as_str(),
                s.drifting,
                s.since,
                s.last_reconcile_at,
                format!("{:.1}", s.duration_ms as f64 / 1000.0)
            )?;
            if let Some(d) = &s.detail {
                writeln!(out, "{:w$}  {d}", "")?;
            }
        }
        let open: Vec<(&String, &ObjectRecord)> = self
            .objects
            .iter()
            .filter(|(_, r)| r.resolved_at.is_none())
            .collect();
        writeln!(out, "\nDrifting objects: {}", open.len())?;
        for (a, r) in open.iter().take(50) {
            writeln!(
                out,
                "  {a}  (first seen {}, last seen {})",
                r.first_seen, r.last_seen
            )?;
        }
        if open.len() > 50 {
            writeln!(
                out,
                "  ... and {} more (--format json lists all)",
                open.len() - 50
            )?;
        }
        writeln!(out, "\nLatest events:")?;
        for e in self.events.iter().rev().take(10) {
            writeln!(out, "  {}  {}  {}  {}", e.at, e.target, e.event, e.detail)?;
        }
        Ok(())
    }
}

fn short(s: &str) -> &str {
    &s[..s.len().min(12)]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec<'a>(target: &'a str, outcome: Outcome, drifting: &'a [String]) -> Reconciled<'a> {
        Reconciled {
            target,
            kind: "pppoe",
            mode: "observe",
            outcome,
            duration_ms: 10,
            drifting,
            applied: 0,
            detail: None,
            next_run_at: None,
        }
    }

    #[test]
    fn objects_are_first_seen_last_seen_and_resolved_and_events_follow_outcomes() {
        let mut s = Status::default();
        let a = vec!["pppoe.r.secret[\"a\"]".to_string()];
        s.record(rec("pppoe.r", Outcome::InSync, &[]));
        assert!(
            s.events.is_empty(),
            "a target first seen in sync is no event"
        );
        s.record(rec("pppoe.r", Outcome::Drift, &a));
        s.record(rec("pppoe.r", Outcome::Drift, &a));
        let o = &s.objects[&a[0]];
        assert!(o.resolved_at.is_none());
        assert_eq!(s.events.len(), 1, "{:?}", s.events);
        assert_eq!(s.events[0].event, "drift");
        s.record(rec("pppoe.r", Outcome::Unreachable, &[]));
        assert!(
            s.objects[&a[0]].resolved_at.is_none(),
            "an unreadable target resolves nothing"
        );
        assert_eq!(s.targets["pppoe.r"].consecutive_failures, 1);
        s.record(rec("pppoe.r", Outcome::InSync, &[]));
        assert!(s.objects[&a[0]].resolved_at.is_some());
        assert_eq!(s.events.back().unwrap().event, "resolved");
        assert_eq!(s.targets["pppoe.r"].consecutive_failures, 0);
    }

    #[test]
    fn history_is_bounded() {
        let mut s = Status::default();
        for i in 0..(MAX_EVENTS + 10) {
            s.event("-", "reload", format!("{i}"));
        }
        assert_eq!(s.events.len(), MAX_EVENTS);
        assert_eq!(
            s.events.back().unwrap().detail,
            format!("{}", MAX_EVENTS + 9)
        );
        let many: Vec<String> = (0..MAX_OBJECTS + 100).map(|i| format!("o{i}")).collect();
        s.record(rec("pppoe.r", Outcome::Drift, &many));
        assert_eq!(s.objects.len(), MAX_OBJECTS);
    }
}
