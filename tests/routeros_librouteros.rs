//! Conformance: the real Python client librouteros (the one Ansible's community.routeros uses)
//! against the lab's RouterOS API server, for both personalities and both logins.
//!
//! Each test starts a `RouterLab`, runs `tests/routeros_librouteros.py`, and checks the script
//! exited 0, what it saw (its JSON) and that the lab's state is what the script did. It fails,
//! never skips, when python3 or librouteros is missing: `python3 -m pip install librouteros`.

use std::path::Path;
use std::process::Command;

use routeros_api::server::{RouterConfig, RouterLab, Version};
use serde_json::{Value, json};
use tokio::runtime::Runtime;

const USER: &str = "api";
const PASS: &str = "s3cret";

/// Checks python3 and librouteros are there, with a message saying how to get them.
fn require_librouteros() {
    let probe = Command::new("python3")
        .args(["-c", "import librouteros"])
        .output();
    match probe {
        Err(e) => panic!(
            "python3 is required by this conformance test and could not be run ({e}); \
             install Python 3, then `python3 -m pip install librouteros`"
        ),
        Ok(out) if !out.status.success() => panic!(
            "the Python package librouteros is required by this conformance test: \
             `python3 -m pip install librouteros` (tests/setup.sh does it)\n{}",
            String::from_utf8_lossy(&out.stderr)
        ),
        Ok(_) => {}
    }
}

fn config(version: Version, legacy_login: bool) -> RouterConfig {
    RouterConfig {
        legacy_login,
        profiles: vec!["Morosos".into()],
        ..RouterConfig::new(version).with_user(USER, PASS)
    }
}

/// Runs the script against `lab`; asserts exit 0 and returns its JSON.
fn run_script(lab: &RouterLab, login: &str, scenario: &str) -> Value {
    require_librouteros();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/routeros_librouteros.py");
    let addr = lab.addr();
    let out = Command::new("python3")
        .arg(&script)
        .args([&addr.ip().to_string(), &addr.port().to_string(), USER, PASS])
        .args([login, scenario])
        .output()
        .expect("python3 runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "librouteros script failed ({}):\nstdout:\n{stdout}\nstderr:\n{stderr}",
        out.status
    );
    serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("bad JSON ({e}):\n{stdout}"))
}

fn names(rows: &Value) -> Vec<&str> {
    rows.as_array()
        .expect("a list of rows")
        .iter()
        .map(|r| r["name"].as_str().expect("a name"))
        .collect()
}

fn row<'a>(rows: &'a Value, name: &str) -> &'a Value {
    rows.as_array()
        .unwrap()
        .iter()
        .find(|r| r["name"] == name)
        .unwrap_or_else(|| panic!("no row {name} in {rows}"))
}

/// The full scenario, on a lab holding only two active sessions.
fn full_scenario(version: Version, legacy_login: bool, login: &str) {
    let rt = Runtime::new().unwrap();
    let mut lab = rt
        .block_on(RouterLab::start(config(version, legacy_login)))
        .unwrap();
    lab.add_active("juan.perez", "10.0.0.2");
    lab.add_active("maria", "10.0.0.3");

    let out = run_script(&lab, login, "full");

    // What librouteros saw.
    assert_eq!(out["bad_login"], "cannot log in");
    assert_eq!(
        out["initial"],
        json!([]),
        "an empty print (v7: !empty) is no rows"
    );
    assert_eq!(
        out["ids"],
        json!({"juan.perez": "*1", "maria": "*2", "pedro": "*3"})
    );
    assert_eq!(
        out["duplicate"],
        "failure: secret with the same name already exists"
    );
    let after_add = &out["after_add"];
    assert_eq!(names(after_add), ["juan.perez", "maria", "pedro"]);
    let juan = row(after_add, "juan.perez");
    assert_eq!(juan["password"], "j=1", "a value containing '='");
    assert_eq!(juan["comment"], "P\u{e9}rez, casa 12", "UTF-8 round trip");
    assert_eq!(juan["remote-address"], "10.0.0.2");
    assert_eq!(juan["service"], "pppoe");
    assert_eq!(juan["disabled"], false);
    assert_eq!(juan["limit-bytes-in"], 0);
    assert_eq!(row(after_add, "pedro")["disabled"], true);
    assert_eq!(row(after_add, "maria")["profile"], "Morosos");
    assert_eq!(
        row(after_add, "maria").get("ipv6-routes").is_some(),
        version == Version::V7
    );
    assert_eq!(
        out["select_maria"],
        json!([{".id": "*2", "name": "maria", "profile": "Morosos"}])
    );
    assert_eq!(out["select_in"], json!(["juan.perez", "pedro"]));
    assert_eq!(out["select_not_maria"], json!(["juan.perez", "pedro"]));
    assert_eq!(out["select_none"], json!([]));
    assert_eq!(out["unknown_id"], "no such item (4)");
    assert_eq!(out["missing_id"], "missing =.id=");
    assert_eq!(out["unknown_field"], "unknown parameter colour");
    let fin = &out["final"];
    assert_eq!(names(fin), ["juan.perez", "maria"]);
    assert_eq!(row(fin, "juan.perez")["profile"], "Morosos");
    assert_eq!(row(fin, "juan.perez")["disabled"], true);
    assert_eq!(row(fin, "juan.perez")["limit-bytes-in"], 1000);
    assert_eq!(row(fin, "maria")["profile"], "default");
    assert_eq!(names(&out["active_before"]), ["juan.perez", "maria"]);
    assert_eq!(names(&out["active_after"]), ["maria"]);
    assert_eq!(out["quit"], "session terminated on request");

    // The lab's state is what the script did.
    let secrets = lab.secrets();
    let summary: Vec<_> = secrets
        .iter()
        .map(|s| {
            (
                s.id.as_str(),
                s.name.as_str(),
                s.password.as_str(),
                s.profile.as_str(),
                s.disabled,
                s.limit_bytes_in,
                s.comment.as_str(),
            )
        })
        .collect();
    assert_eq!(
        summary,
        [
            (
                "*1",
                "juan.perez",
                "j=1",
                "Morosos",
                true,
                1000,
                "P\u{e9}rez, casa 12"
            ),
            ("*2", "maria", "m1", "default", false, 0, ""),
        ]
    );
    let active: Vec<_> = lab.active().into_iter().map(|a| a.name).collect();
    assert_eq!(active, ["maria"]);

    // Round trips, per command: what a minimality test would count.
    let stats = lab.stats();
    let logins = if login == "token" { 4 } else { 2 };
    assert_eq!(stats.count("/login"), logins);
    assert_eq!(stats.count("/ppp/secret/add"), 4);
    assert_eq!(stats.count("/ppp/secret/set"), 4);
    assert_eq!(stats.count("/ppp/secret/unset"), 1);
    assert_eq!(stats.count("/ppp/secret/remove"), 1);
    assert_eq!(stats.count("/ppp/active/remove"), 1);
    assert_eq!(stats.count("/quit"), 1);
    assert_eq!(stats.connections, 2);

    rt.block_on(lab.shutdown());
}

#[test]
fn v6_plain_login() {
    full_scenario(Version::V6, false, "plain");
}

#[test]
fn v7_plain_login() {
    full_scenario(Version::V7, false, "plain");
}

#[test]
fn v6_legacy_md5_login_with_the_token_method() {
    full_scenario(Version::V6, true, "token");
}

/// RouterOS >= 7.18 answers a print without rows with `!empty` then `!done`. librouteros 4.2.2
/// reads replies until `!done` and keeps only `!re`/`!done` words, so it sees no rows.
#[test]
fn v7_empty_reply_is_no_rows_for_librouteros() {
    let rt = Runtime::new().unwrap();
    let mut lab = rt
        .block_on(RouterLab::start(config(Version::V7, false)))
        .unwrap();
    let out = run_script(&lab, "plain", "empty");
    assert_eq!(out["print"], json!([]));
    assert_eq!(out["select"], json!([]));
    assert_eq!(out["active"], json!([]));
    // Three prints, all answered with !empty.
    assert_eq!(lab.stats().count("/ppp/secret/print"), 2);
    assert_eq!(lab.stats().count("/ppp/active/print"), 1);
    rt.block_on(lab.shutdown());
}

/// librouteros's default `plain` login against a router older than 6.43: the router answers
/// the name and password with a challenge, librouteros takes that `!done` as success, and the
/// first command is refused. Pinned so a change on either side is noticed.
#[test]
fn plain_login_against_a_legacy_router_fails_at_the_first_command() {
    let rt = Runtime::new().unwrap();
    let mut lab = rt
        .block_on(RouterLab::start(config(Version::V6, true)))
        .unwrap();
    let out = run_script(&lab, "plain", "first-command");
    assert_eq!(out["first_command_error"], "not logged in");
    rt.block_on(lab.shutdown());
}
