//! The JSON Schemas of the YAML files and of the plan JSON, generated from the types: the
//! inventory (assembled from every kind's section), one resource file per kind (named after
//! the kind), the plan, the apply report and the snapshot file. `schemas/` holds the checked-in copies; a test
//! fails when they are stale.

use crate::desired::inventory::InventoryFile;
use crate::plan::Plan;
use crate::plan::report::ApplyReport;

fn pretty(v: &schemars::Schema) -> String {
    let mut s = serde_json::to_string_pretty(v).expect("schemas serialise");
    s.push('\n');
    s
}

/// Every schema, by file name, as pretty JSON.
pub fn all() -> Vec<(String, String)> {
    let mut out = vec![(
        "inventory.schema.json".to_string(),
        pretty(&schemars::schema_for!(InventoryFile)),
    )];
    for kind in crate::kinds::ALL {
        out.push((
            format!("{}.schema.json", kind.name()),
            pretty(&kind.file_schema()),
        ));
    }
    out.push((
        "plan.schema.json".into(),
        pretty(&schemars::schema_for!(Plan)),
    ));
    out.push((
        "apply-report.schema.json".into(),
        pretty(&schemars::schema_for!(ApplyReport)),
    ));
    out.push((
        "snapshot.schema.json".into(),
        pretty(&schemars::schema_for!(crate::snapshot::SnapshotFile)),
    ));
    out.push((
        "notification.schema.json".into(),
        pretty(&crate::controller::notify::webhook_schema()),
    ));
    out.push((
        "status.schema.json".into(),
        pretty(&schemars::schema_for!(crate::controller::history::Status)),
    ));
    out
}
