//! The checked-in JSON Schemas match the types, and every example YAML names its schema.

use std::path::Path;

#[test]
fn checked_in_schemas_are_fresh() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("schemas");
    for (name, text) in wispctl::schemas::all() {
        let on_disk = std::fs::read_to_string(dir.join(&name)).unwrap_or_default();
        assert!(
            on_disk == text,
            "schemas/{name} is stale: run `cargo run -- schema`"
        );
    }
}

#[test]
fn example_files_name_their_schema() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let files = [
        ("desired-state/inventory.yaml", "inventory"),
        ("desired-state/pppd/vps.yaml", "pppd"),
    ];
    for (file, schema) in files {
        let text = std::fs::read_to_string(root.join(file)).unwrap();
        let first = text.lines().next().unwrap();
        let rel = first
            .strip_prefix("# yaml-language-server: $schema=")
            .unwrap_or_else(|| panic!("{file} lacks the schema line"));
        assert!(
            rel.ends_with(&format!("{schema}.schema.json")),
            "{file}: {rel}"
        );
        let target = root.join(file).parent().unwrap().join(rel);
        assert!(
            target.exists(),
            "{file} points at {} which does not exist",
            target.display()
        );
    }
}

#[test]
fn schema_check_command_agrees() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_wispctl"))
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .args(["schema", "--check"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
