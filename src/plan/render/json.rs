//! JSON: the plan itself, serialised. `format_version` says which shape it has; the JSON
//! Schema is `schemas/plan.schema.json`.

use crate::plan::Plan;
use crate::plan::report::ApplyReport;

/// The plan as pretty JSON.
pub fn plan(plan: &Plan) -> String {
    let mut s = serde_json::to_string_pretty(plan).expect("plans serialise");
    s.push('\n');
    s
}

/// The apply report as pretty JSON.
pub fn report(r: &ApplyReport) -> String {
    let mut s = serde_json::to_string_pretty(r).expect("reports serialise");
    s.push('\n');
    s
}
