//! Markdown for a pull-request comment: the summary on top, every change in a `diff` block
//! inside a `<details>` fold. GitHub refuses comments over 65,536 characters, so the body is
//! cut at a line with a visible notice that gives the full count.

use super::Purpose;
use super::text::{change_lines, summary_line};
use crate::plan::Plan;

/// The most characters a comment may have.
pub const MAX_CHARS: usize = 65_536;

/// Problems listed above the fold; the rest are counted (a mass outage of hundreds of
/// antennas must not push the comment past GitHub's limit).
const MAX_PROBLEMS: usize = 50;

/// Renders a plan or drift report as Markdown, at most [`MAX_CHARS`] characters.
pub fn plan(plan: &Plan, purpose: Purpose) -> String {
    plan_with_limit(plan, purpose, MAX_CHARS)
}

/// [`plan`] with another limit (tests).
pub fn plan_with_limit(plan: &Plan, purpose: Purpose, limit: usize) -> String {
    let title = match purpose {
        Purpose::Plan => "wispctl plan",
        Purpose::Drift => "wispctl drift report",
    };
    let mut head = format!("### {title}\n\n**{}**\n\n", summary_line(plan, purpose));
    if let Some(s) = &plan.snapshot {
        head.push_str(&format!("_{}_\n\n", escape_inline(&capitalised(&s.line()))));
    }
    if purpose == Purpose::Plan && !plan.summary.is_empty() {
        head.push_str(&format!("{}\n\n", plan.summary.impact_line()));
    }
    if let Some(line) = plan.summary.not_compared_line() {
        head.push_str(&format!("{line}\n\n"));
    }
    let problems = plan.problems();
    if !problems.is_empty() {
        head.push_str("**Problems:**\n\n");
        for p in problems.iter().take(MAX_PROBLEMS) {
            head.push_str(&format!("- :x: {}\n", escape_inline(p)));
        }
        if problems.len() > MAX_PROBLEMS {
            head.push_str(&format!(
                "- … and {} more (run `wispctl plan` for every one)\n",
                problems.len() - MAX_PROBLEMS
            ));
        }
        head.push('\n');
    }
    if !plan.targets.is_empty() {
        head.push_str("| target | add | change | destroy | status |\n|---|---:|---:|---:|---|\n");
        for t in &plan.targets {
            let count = |a| t.changes.iter().filter(|c| c.action == a).count();
            let status = if t.error.is_some() {
                "error"
            } else if t.refusal.is_some() {
                "refused"
            } else if !t.object_errors.is_empty() {
                "partly unread"
            } else if t.changes.is_empty() {
                "up to date"
            } else {
                "changes"
            };
            head.push_str(&format!(
                "| `{}` | {} | {} | {} | {status} |\n",
                t.address,
                count(crate::plan::Action::Create),
                count(crate::plan::Action::Update),
                count(crate::plan::Action::Delete)
            ));
        }
        head.push('\n');
    }
    // One block per change (and per target's notes), so that a cut falls between changes.
    let mut blocks: Vec<(String, Option<crate::plan::Action>)> = Vec::new();
    for t in &plan.targets {
        for c in &t.changes {
            let mut lines = Vec::new();
            change_lines(c, purpose, &mut lines);
            blocks.push((
                lines.iter().map(|l| format!("{l}\n")).collect(),
                Some(c.action),
            ));
        }
        for n in &t.notes {
            blocks.push((format!("# note ({}): {n}\n", t.address), None));
        }
    }
    if blocks.is_empty() {
        return head;
    }
    let body: String = blocks.iter().map(|(b, _)| b.as_str()).collect();
    let fence = "`".repeat(longest_backtick_run(&body).max(2) + 1);
    let total_changes: usize = plan.targets.iter().map(|t| t.changes.len()).sum();
    let open =
        format!("<details><summary>Show {total_changes} change(s)</summary>\n\n{fence}diff\n");
    let close = format!("{fence}\n\n</details>\n");
    let full_len = head.len() + open.len() + body.len() + close.len();
    if full_len <= limit {
        return format!("{head}{open}{body}{close}");
    }
    // Whole changes while they fit (the notice's own length reserved); a first change larger
    // than the room is cut at a line.
    let reserve = head.len() + open.len() + close.len() + 400;
    let budget = limit.saturating_sub(reserve);
    let (mut cut, mut shown, mut left) = (0, 0, [0usize; 3]);
    let mut full = true;
    for (b, action) in &blocks {
        if full && cut + b.len() <= budget {
            cut += b.len();
            shown += usize::from(action.is_some());
            continue;
        }
        full = false;
        match action {
            Some(crate::plan::Action::Create) => left[0] += 1,
            Some(crate::plan::Action::Update) => left[1] += 1,
            Some(crate::plan::Action::Delete) => left[2] += 1,
            None => {}
        }
    }
    let mut partial = "";
    if cut == 0 {
        for l in body.split_inclusive('\n') {
            if cut + l.len() > budget {
                break;
            }
            cut += l.len();
        }
        partial = " (the first one cut short)";
    }
    let notice = format!(
        "\n> :warning: **Truncated** at a change boundary: this comment shows {shown} of {total_changes} changes{partial}; left out: {} to add, {} to change, {} to destroy ({} of {} characters shown). The summary above counts every change. Run `wispctl plan` or read the JSON plan for the rest.\n",
        left[0],
        left[1],
        left[2],
        cut,
        body.len()
    );
    format!("{head}{open}{}{close}{notice}", &body[..cut])
}

fn longest_backtick_run(s: &str) -> usize {
    let (mut best, mut run) = (0, 0);
    for c in s.chars() {
        if c == '`' {
            run += 1;
            best = best.max(run);
        } else {
            run = 0;
        }
    }
    best
}

fn escape_inline(s: &str) -> String {
    s.replace('<', "&lt;").replace('>', "&gt;")
}

/// The text with its first letter upper-case.
fn capitalised(s: &str) -> String {
    let mut c = s.chars();
    c.next()
        .map(|f| f.to_uppercase().chain(c).collect())
        .unwrap_or_default()
}
