//! Live-state snapshots through the binary on the lab: `wispctl snapshot` then `plan --snapshot`
//! gives the live plan (before and after an apply, and after an out-of-band edit) with no
//! secret in the snapshot or the offline plan; an altered, foreign-key or too old snapshot is
//! refused, the old one naming its age; planning from a snapshot opens no network socket
//! (strace); and a plan saved from a snapshot is applied where the devices are.

mod common;

use std::path::Path;

use common::Lab;

/// Every lab secret value and key that must never leave the devices.
fn lab_secrets(lab: &Lab) -> Vec<String> {
    let text = std::fs::read_to_string(lab.lab().join("secrets.env")).unwrap();
    let mut values: Vec<String> = wispctl::secret::parse_env_file(&text)
        .into_values()
        .collect();
    values.extend(
        [
            "LabOnlyMasterKey0123456789abcdefghijklmnopqrstuv",
            "OldLabMasterKey0123456789abcdefghijklmnopqrstu",
            "JuanDeviceSpecificKey4242",
            "lab-ppp-pw",
            "$1$lab$hashhashhash",
            "viejo-secreto",
            "clave-sin-comillas",
            "b4ckup",
        ]
        .map(String::from),
    );
    values
}

/// `plan --detailed-exitcode --snapshot FILE` as CI runs it: no lab, the lab's key, only the
/// desired state's secrets in the environment (but those named in `missing`).
fn ci_plan(lab: &Lab, file: &Path, missing: &[&str]) -> std::process::Command {
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_wispctl"));
    cmd.arg("-C")
        .arg(lab.desired())
        .arg("--state-dir")
        .arg(lab.lab().join("state"))
        .args(["plan", "--detailed-exitcode", "--snapshot"])
        .arg(file)
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("NO_COLOR", "1")
        .envs(
            common::ci_secrets(lab)
                .into_iter()
                .filter(|(k, _)| !missing.contains(&k.as_str())),
        );
    cmd
}

fn snapshot(lab: &Lab, file: &Path) {
    let r = lab.run(&["snapshot", "--out", file.to_str().unwrap()]);
    r.expect(0);
    assert!(
        r.stdout
            .contains("Wrote a snapshot of 4 target(s) (0 unreadable)"),
        "{}",
        r.all()
    );
    let mode = std::fs::metadata(file).unwrap().permissions();
    assert_eq!(
        std::os::unix::fs::PermissionsExt::mode(&mode) & 0o777,
        0o600
    );
}

/// The plan of the lab now, live and from a fresh snapshot, in JSON: equal but for the
/// snapshot line and the time; no secret in the snapshot or either rendering.
fn live_equals_offline(lab: &Lab) {
    let file = lab.tmp.path().join("snap.json");
    snapshot(lab, &file);
    let live = lab.run(&["plan", "--format", "json"]);
    let offline = lab.run(&[
        "plan",
        "--format",
        "json",
        "--snapshot",
        file.to_str().unwrap(),
    ]);
    assert_eq!(live.code, offline.code, "{}\n{}", live.all(), offline.all());
    let strip = |text: &str| {
        let mut v: serde_json::Value = serde_json::from_str(text).unwrap();
        let snap = v.as_object_mut().unwrap().remove("snapshot");
        v.as_object_mut().unwrap().remove("created_at");
        (v, snap)
    };
    let (l, none) = strip(&live.stdout);
    let (o, info) = strip(&offline.stdout);
    assert!(none.is_none());
    assert_eq!(l, o, "the offline plan differs");
    assert_eq!(
        info.unwrap()["age_secs"].as_u64().map(|a| a < 3600),
        Some(true)
    );
    let text = lab.run(&["plan", "--snapshot", file.to_str().unwrap()]);
    assert!(
        text.stdout
            .starts_with("Planned against a snapshot taken at "),
        "{}",
        text.all()
    );
    let markdown = lab.run(&[
        "plan",
        "--format",
        "markdown",
        "--snapshot",
        file.to_str().unwrap(),
    ]);
    assert!(
        markdown
            .stdout
            .contains("_Planned against a snapshot taken at ")
    );
    let shown = [
        std::fs::read_to_string(&file).unwrap(),
        offline.all(),
        text.all(),
        markdown.all(),
    ];
    for secret in lab_secrets(lab) {
        for s in &shown {
            assert!(!s.contains(&secret), "{secret:?} is shown");
        }
    }
}

#[test]
fn a_plan_from_a_snapshot_is_the_live_plan_and_holds_no_secret() {
    let lab = Lab::new();
    live_equals_offline(&lab);
    lab.run(&["apply", "--auto-approve"]).expect(0);
    live_equals_offline(&lab);
    // The demo's out-of-band edits on the router, the pppd host and an antenna.
    let done = wispctl::lab::tamper(&lab.lab()).unwrap();
    assert_ne!(done, "nothing");
    live_equals_offline(&lab);
}

#[test]
fn an_altered_foreign_or_old_snapshot_is_refused() {
    let lab = Lab::new();
    let file = lab.tmp.path().join("snap.json");
    snapshot(&lab, &file);
    let text = std::fs::read_to_string(&file).unwrap();
    let plan = |path: &Path, extra: &[&str], env: &[(&str, &str)]| {
        let mut args = vec!["plan", "--snapshot", path.to_str().unwrap()];
        args.extend_from_slice(extra);
        lab.run_env(&args, env)
    };
    // One byte changed inside the snapshot: a status, an id, a digit.
    let at = text.find("\"taken_at_unix\": ").unwrap() + "\"taken_at_unix\": ".len();
    let mut bytes = text.clone().into_bytes();
    bytes[at + 3] = if bytes[at + 3] == b'1' { b'2' } else { b'1' };
    let altered = lab.tmp.path().join("altered.json");
    std::fs::write(&altered, &bytes).unwrap();
    let r = plan(&altered, &[], &[]);
    assert_eq!(r.code, 1, "{}", r.all());
    assert!(
        r.stderr
            .contains("was altered since it was written (its HMAC does not match): refused"),
        "{}",
        r.all()
    );
    assert!(r.stdout.is_empty(), "nothing planned: {}", r.stdout);

    // Made under another key: the state folder's key is not this one.
    let other = "0".repeat(64);
    let r = plan(&file, &[], &[("WISPCTL_HASH_KEY", &other)]);
    assert_eq!(r.code, 1, "{}", r.all());
    assert!(
        r.stderr.contains("was made under another hash key"),
        "{}",
        r.all()
    );

    // Two days old: refused by default, naming its age; accepted with --max-age 3d.
    let key = wispctl::secret::HashKey::load(&lab.lab().join("state"))
        .unwrap()
        .unwrap();
    let mut old = wispctl::snapshot::Snapshot::check(
        text.as_bytes(),
        "snap.json",
        &key,
        std::time::Duration::from_secs(3600),
    )
    .unwrap();
    old.taken_at_unix -= 2 * 24 * 3600 + 60;
    old.taken_at = "2026-01-01T00:00:00Z".into();
    let old_file = lab.tmp.path().join("old.json");
    old.write(&old_file, &key).unwrap();
    let r = plan(&old_file, &[], &[]);
    assert_eq!(r.code, 1, "{}", r.all());
    assert!(
        r.stderr
            .contains("was taken at 2026-01-01T00:00:00Z, 2days 1m")
            && r.stderr
                .contains("ago, more than the allowed 1day (--max-age)"),
        "{}",
        r.all()
    );
    let r = plan(&old_file, &["--max-age", "3d"], &[]);
    assert_eq!(r.code, 0, "{}", r.all());
    assert!(r.stdout.contains("(age 2days 1m"), "{}", r.all());

    // Taken in the future (a VPS clock ahead): refused.
    old.taken_at_unix += 4 * 24 * 3600;
    old.taken_at = "2030-01-01T00:00:00Z".into();
    old.write(&old_file, &key).unwrap();
    let r = plan(&old_file, &["--max-age", "3d"], &[]);
    assert_eq!(r.code, 1, "{}", r.all());
    assert!(
        r.stderr
            .contains("in the future: the clock of the host that took it is wrong"),
        "{}",
        r.all()
    );
}

/// No `--lab`: the inventory's real addresses, the desired state's secrets from the environment
/// (none of the inventory's connection credentials: CI needs no device password), the lab's
/// key: planning from the snapshot opens no network socket at all.
#[test]
fn planning_from_a_snapshot_opens_no_network_socket() {
    let lab = Lab::new();
    let file = lab.tmp.path().join("snap.json");
    snapshot(&lab, &file);
    let cmd = ci_plan(&lab, &file, &[]);
    let (out, inet) = common::network_calls(&cmd);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(2),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("pppoe.balanceador: 5 change(s)"),
        "{stdout}"
    );
    assert!(
        inet.is_empty(),
        "network sockets opened:\n{}",
        inet.join("\n")
    );
    // The same trace sees a program that does open one (to a closed loopback port).
    let mut curl = std::process::Command::new("curl");
    curl.args(["-s", "--max-time", "5", "http://127.0.0.1:9/"])
        .env("PATH", std::env::var_os("PATH").unwrap_or_default());
    let (_, seen) = common::network_calls(&curl);
    assert!(!seen.is_empty(), "the trace misses a connect");
}

/// A plan saved from a snapshot (as CI would) is applied where the devices are: apply reads
/// every target again and finds them as the snapshot did.
#[test]
fn a_plan_saved_from_a_snapshot_is_applied_on_the_lab() {
    let lab = Lab::new();
    let file = lab.tmp.path().join("snap.json");
    snapshot(&lab, &file);
    let saved = lab.tmp.path().join("plan.json");
    lab.run(&[
        "plan",
        "--snapshot",
        file.to_str().unwrap(),
        "--out",
        saved.to_str().unwrap(),
    ])
    .expect(0);
    lab.run(&["apply", "--auto-approve", saved.to_str().unwrap()])
        .expect(0);
    lab.run(&["plan", "--detailed-exitcode"]).expect(0);
}

/// CI without one PPPoE password: refused as a validation error by default (file:line), and
/// with `--unresolved-secrets not-compared` the field reads `(sensitive, not compared)`, never
/// counts as a change by itself, and the summary says how many were not compared.
#[test]
fn unresolved_desired_secrets_fail_or_are_shown_as_not_compared() {
    let lab = Lab::new();
    let file = lab.tmp.path().join("snap.json");
    snapshot(&lab, &file);
    let run = |extra: &[&str]| {
        let out = ci_plan(&lab, &file, &["PPPOE_JUAN_PEREZ"])
            .args(extra)
            .output()
            .unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (code, _, err) = run(&[]);
    assert_eq!(code, Some(1), "{err}");
    assert!(
        err.contains("pppoe/balanceador.yaml:14:15: error: unresolvable secret reference: environment variable PPPOE_JUAN_PEREZ is not set"),
        "{err}"
    );
    let (code, out, err) = run(&["--unresolved-secrets", "not-compared"]);
    assert_eq!(code, Some(2), "{out}{err}");
    assert!(
        out.contains("    password: (sensitive, not compared)"),
        "{out}"
    );
    assert!(
        out.contains("1 secret value(s) not compared: their references cannot be resolved here"),
        "{out}"
    );
    let (code, out, _) = run(&["--unresolved-secrets", "not-compared", "--format", "json"]);
    assert_eq!(code, Some(2));
    let plan: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(plan["summary"]["not_compared"], 1);
}

/// A pull request that reorders the antennas of a group and adds one: each antenna is planned
/// from its own reading (by host, not by position), the new one is reported as not in the
/// snapshot, and the others plan as they do live.
#[test]
fn antennas_are_matched_by_host_when_the_file_changes() {
    let lab = Lab::new();
    let file = lab.tmp.path().join("snap.json");
    snapshot(&lab, &file);
    let path = lab.desired().join("airos/clientes.yaml");
    let text = std::fs::read_to_string(&path).unwrap();
    let (head, antennas) = text.split_once("antennas:\n").unwrap();
    let mut entries: Vec<String> = antennas
        .split("\n  - ")
        .map(|e| e.trim_start_matches("  - ").trim_end().to_string())
        .filter(|e| !e.is_empty())
        .collect();
    entries.reverse();
    entries.push("host: 10.10.1.99\n    name: Nuevo".into());
    let body: String = entries.iter().map(|e| format!("  - {e}\n")).collect();
    std::fs::write(&path, format!("{head}antennas:\n{body}")).unwrap();
    let json = |args: &[&str]| -> serde_json::Value {
        let r = lab.run(args);
        serde_json::from_str(&r.stdout).unwrap_or_else(|e| panic!("{e}: {}", r.all()))
    };
    let live = json(&["plan", "--format", "json", "--target", "airos.*"]);
    let offline = json(&[
        "plan",
        "--format",
        "json",
        "--target",
        "airos.*",
        "--snapshot",
        file.to_str().unwrap(),
    ]);
    let target = |p: &serde_json::Value| p["targets"][0].clone();
    assert_eq!(target(&live)["changes"], target(&offline)["changes"]);
    let new = "airos.clientes[\"10.10.1.99\"]";
    assert!(
        target(&offline)["object_errors"][new]
            .as_str()
            .unwrap()
            .contains("not in the snapshot (added since it was taken)"),
        "{}",
        target(&offline)
    );
}

/// A pull request that names a secret the router has but the YAML did not name when the
/// snapshot was taken: its password was not kept (nobody's password is in a snapshot for
/// nothing), so it reads `(sensitive, not compared)` and is counted, never a change by itself;
/// the other fields compare as live.
#[test]
fn a_secret_named_since_the_snapshot_has_its_password_not_compared() {
    let lab = Lab::new();
    let file = lab.tmp.path().join("snap.json");
    snapshot(&lab, &file);
    let path = lab.desired().join("pppoe/balanceador.yaml");
    let text = std::fs::read_to_string(&path).unwrap();
    std::fs::write(
        &path,
        format!(
            "{text}\n  - name: clienteprueba\n    password: {{ env: PPPOE_MARIA_LOPEZ }}\n    profile: Morosos\n"
        ),
    )
    .unwrap();
    let r = lab.run(&["plan", "--snapshot", file.to_str().unwrap()]);
    assert_eq!(r.code, 0, "{}", r.all());
    let block: String = r
        .stdout
        .split("secret[\"clienteprueba\"]")
        .nth(1)
        .unwrap_or_else(|| panic!("{}", r.stdout))
        .lines()
        .take(4)
        .collect::<Vec<_>>()
        .join("\n");
    assert!(
        block.contains("password: (sensitive, not compared)"),
        "{block}"
    );
    assert!(block.contains("profile: \"10M\" -> \"Morosos\""), "{block}");
    assert!(
        r.stdout.contains("1 secret value(s) not compared"),
        "{}",
        r.stdout
    );
}
