//! Plain text, coloured on a terminal. Sensitive fields show `(sensitive)` or
//! `(sensitive, changed)`; files show a unified diff.

use std::fmt::Write;

use similar::TextDiff;

use super::Purpose;
use crate::plan::report::{ApplyReport, Status};
use crate::plan::{Action, Change, Plan};

/// ANSI colour, or none.
#[derive(Debug, Clone, Copy)]
pub struct Paint(pub bool);

impl Paint {
    fn wrap(self, code: &str, s: &str) -> String {
        if self.0 {
            format!("\x1b[{code}m{s}\x1b[0m")
        } else {
            s.to_string()
        }
    }
    fn green(self, s: &str) -> String {
        self.wrap("32", s)
    }
    fn yellow(self, s: &str) -> String {
        self.wrap("33", s)
    }
    fn red(self, s: &str) -> String {
        self.wrap("31", s)
    }
    fn bold(self, s: &str) -> String {
        self.wrap("1", s)
    }
}

/// The sign of an action: `+`, `~`, `-`.
pub fn sign(a: Action) -> &'static str {
    match a {
        Action::Create => "+",
        Action::Update => "~",
        Action::Delete => "-",
    }
}

fn verb(a: Action, purpose: Purpose) -> &'static str {
    match (purpose, a) {
        (Purpose::Plan, Action::Create) => "will be created",
        (Purpose::Plan, Action::Update) => "will be updated",
        (Purpose::Plan, Action::Delete) => "will be destroyed",
        (Purpose::Drift, Action::Create) => "is missing on the target",
        (Purpose::Drift, Action::Update) => "differs from the desired state",
        (Purpose::Drift, Action::Delete) => "is owned but no longer desired",
    }
}

/// One change as lines (no colour), shared by the text and Markdown renderers.
pub fn change_lines(c: &Change, purpose: Purpose, out: &mut Vec<String>) {
    out.push(format!(
        "{} {} {}",
        sign(c.action),
        c.address,
        verb(c.action, purpose)
    ));
    if let Some(r) = &c.reason {
        out.push(format!("    # {r}"));
    }
    for f in &c.fields {
        let line = if f.not_compared {
            format!("    {}: (sensitive, not compared)", f.name)
        } else if f.sensitive {
            match c.action {
                Action::Update => format!("    {}: (sensitive, changed)", f.name),
                _ => format!("    {}: (sensitive)", f.name),
            }
        } else {
            match (&f.before, &f.after) {
                (Some(b), Some(a)) => format!("    {}: {b:?} -> {a:?}", f.name),
                (None, Some(a)) => format!("    {}: {a:?}", f.name),
                (Some(b), None) => format!("    {}: {b:?} -> (none)", f.name),
                (None, None) => format!("    {}: (none)", f.name),
            }
        };
        out.push(line);
    }
    if let Some(cd) = &c.content {
        let before = cd.before.as_deref().unwrap_or("");
        let after = cd.after.as_deref().unwrap_or("");
        let diff = TextDiff::from_lines(before, after);
        let text = diff
            .unified_diff()
            .context_radius(3)
            .header(
                &format!("{} (live)", cd.path),
                &format!("{} (desired)", cd.path),
            )
            .to_string();
        for l in text.lines() {
            out.push(format!("    {l}"));
        }
    }
    for s in &c.side_effects {
        out.push(format!("    ! {s}"));
    }
    if let Some(line) = impact_line(&c.impact) {
        out.push(format!("    ! {line}"));
    }
}

/// Whom a change cuts off and how (`customer juan.perez (Centro): 1 session disconnected`);
/// `None` when it touches no connection.
fn impact_line(i: &crate::plan::Impact) -> Option<String> {
    let mut what = Vec::new();
    let mut count = |n: usize, one: &str, many: &str| {
        if n > 0 {
            what.push(format!("{n} {}", if n == 1 { one } else { many }));
        }
    };
    count(
        i.disconnects,
        "session disconnected",
        "sessions disconnected",
    );
    count(
        i.antenna_restarts,
        "antenna restarted",
        "antennas restarted",
    );
    count(i.tunnel_restarts, "tunnel to restart", "tunnels to restart");
    if what.is_empty() {
        return None;
    }
    let who = i.customer.as_deref().unwrap_or("(unnamed)");
    Some(format!("customer {who}: {}", what.join(", ")))
}

/// The summary line of a plan or drift report.
pub fn summary_line(plan: &Plan, purpose: Purpose) -> String {
    match purpose {
        Purpose::Plan => plan.summary.to_string(),
        Purpose::Drift => {
            let s = plan.summary;
            if s.is_empty() {
                "Drift: none. Every target matches the desired state.".into()
            } else {
                format!(
                    "Drift: {} missing, {} differing, {} owned but no longer desired.",
                    s.add, s.change, s.destroy
                )
            }
        }
    }
}

/// Renders a plan or drift report for a terminal.
pub fn plan(plan: &Plan, purpose: Purpose, paint: Paint) -> String {
    let mut s = String::new();
    if let Some(snap) = &plan.snapshot {
        let line = snap.line();
        let mut c = line.chars();
        let first: String = c
            .next()
            .map(|f| f.to_uppercase().chain(c).collect())
            .unwrap_or_default();
        let _ = writeln!(s, "{}", paint.bold(&format!("{first}.")));
    }
    for t in &plan.targets {
        let head = match (&t.error, t.changes.len()) {
            (Some(e), _) => paint.red(&format!("{}: error: {e}", t.address)),
            (None, 0) if !t.object_errors.is_empty() => paint.red(&format!(
                "{}: no changes; {} object(s) could not be read",
                t.address,
                t.object_errors.len()
            )),
            (None, 0) => format!("{}: up to date", t.address),
            (None, n) => paint.bold(&format!("{}: {n} change(s)", t.address)),
        };
        let _ = writeln!(s, "{head}");
        for c in &t.changes {
            let mut lines = Vec::new();
            change_lines(c, purpose, &mut lines);
            for l in lines {
                let trimmed = l.trim_start();
                let coloured = if !l.starts_with(' ') {
                    match c.action {
                        Action::Create => paint.green(&l),
                        Action::Update => paint.yellow(&l),
                        Action::Delete => paint.red(&l),
                    }
                } else if trimmed.starts_with("+++") || trimmed.starts_with("---") {
                    paint.bold(&l)
                } else if trimmed.starts_with('+') {
                    paint.green(&l)
                } else if trimmed.starts_with('-') {
                    paint.red(&l)
                } else {
                    l
                };
                let _ = writeln!(s, "  {coloured}");
            }
        }
        for n in &t.notes {
            let _ = writeln!(s, "  note: {n}");
        }
        for (a, e) in &t.object_errors {
            let _ = writeln!(s, "  {}", paint.red(&format!("error: {a}: {e}")));
        }
        if let Some(r) = &t.refusal {
            let _ = writeln!(s, "  {}", paint.red(&format!("refused: {r}")));
        }
    }
    if let Some(r) = &plan.refusal {
        let _ = writeln!(s, "{}", paint.red(&format!("refused: {r}")));
    }
    if plan.targets.is_empty() {
        let _ = writeln!(s, "No targets matched.");
    }
    if plan.summary.is_empty() && plan.problems().is_empty() {
        let _ = writeln!(s, "No changes. The live state matches the desired state.");
    }
    let _ = writeln!(s, "{}", paint.bold(&summary_line(plan, purpose)));
    if purpose == Purpose::Plan && !plan.summary.is_empty() {
        let _ = writeln!(s, "{}", plan.summary.impact_line());
    }
    if let Some(line) = plan.summary.not_compared_line() {
        let _ = writeln!(s, "{line}");
    }
    s
}

/// Renders an apply report for a terminal.
pub fn report(r: &ApplyReport, paint: Paint) -> String {
    let mut s = String::new();
    for t in &r.targets {
        if let Some(e) = &t.error {
            let _ = writeln!(
                s,
                "{}",
                paint.red(&format!("{}: not applied: {e}", t.address))
            );
        }
        for (a, e) in &t.object_errors {
            let _ = writeln!(s, "{}", paint.red(&format!("{a}: not reached: {e}")));
        }
        for o in &t.outcomes {
            let (word, reason) = match o.status {
                Status::Applied => (paint.green("applied"), String::new()),
                Status::Failed => (
                    paint.red("failed "),
                    format!(": {}", o.reason.as_deref().unwrap_or("")),
                ),
                Status::Skipped => (
                    paint.yellow("skipped"),
                    format!(": {}", o.reason.as_deref().unwrap_or("")),
                ),
                Status::Reverted => (
                    paint.yellow("reverted"),
                    format!(": {}", o.reason.as_deref().unwrap_or("")),
                ),
            };
            let redial = match o.redialed {
                Some(true) => " (redialed)",
                Some(false) => " (not back on /ppp/active within redial_wait)",
                None => "",
            };
            let action = match o.action {
                Action::Create => "create",
                Action::Update => "update",
                Action::Delete => "delete",
            };
            let _ = writeln!(s, "  {word} {} ({action}){reason}{redial}", o.address);
        }
    }
    let m = r.summary;
    let _ = writeln!(
        s,
        "{}",
        paint.bold(&format!(
            "Apply: {} applied, {} failed, {} skipped{}{}.",
            m.applied,
            m.failed,
            m.skipped,
            if m.reverted > 0 {
                format!(", {} reverted", m.reverted)
            } else {
                String::new()
            },
            if m.object_errors > 0 {
                format!(", {} not reached", m.object_errors)
            } else {
                String::new()
            }
        ))
    );
    if m.redial_checked > 0 {
        let _ = writeln!(
            s,
            "Redial: {} of {} disconnected customer(s) back on /ppp/active within redial_wait.",
            m.redialed, m.redial_checked
        );
    }
    s
}
