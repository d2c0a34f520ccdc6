//! The JSON Schemas of the YAML files and of the plan JSON, generated from the types.
//! `schemas/` holds the checked-in copies; a test fails when they are stale.

use crate::desired::airos::AirosFile;
use crate::desired::inventory::InventoryFile;
use crate::desired::pppd::PppdFile;
use crate::desired::pppoe::PppoeFile;
use crate::desired::uisp::UispFile;
use crate::plan::Plan;
use crate::plan::report::ApplyReport;

/// Every schema, by file name, as pretty JSON.
pub fn all() -> Vec<(&'static str, String)> {
    let pretty = |v: schemars::Schema| {
        let mut s = serde_json::to_string_pretty(&v).expect("schemas serialise");
        s.push('\n');
        s
    };
    vec![
        (
            "inventory.schema.json",
            pretty(schemars::schema_for!(InventoryFile)),
        ),
        ("pppd.schema.json", pretty(schemars::schema_for!(PppdFile))),
        (
            "pppoe.schema.json",
            pretty(schemars::schema_for!(PppoeFile)),
        ),
        ("uisp.schema.json", pretty(schemars::schema_for!(UispFile))),
        (
            "airos.schema.json",
            pretty(schemars::schema_for!(AirosFile)),
        ),
        ("plan.schema.json", pretty(schemars::schema_for!(Plan))),
        (
            "apply-report.schema.json",
            pretty(schemars::schema_for!(ApplyReport)),
        ),
    ]
}
