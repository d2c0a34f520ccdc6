//! Issue 10 through the binary: a lab with two routers, one hostile (its lab file says how it
//! breaks the API stream) and one healthy, each with a change; `wispctl apply --auto-approve`
//! for every hostile mode. Each run must end (exit 1, no panic), apply the healthy router's
//! change, send the hostile router nothing after the read that broke (the lab router counts
//! what a connection receives after it broke, in its file), release the apply lock (a second
//! apply runs), and keep the process's memory small.
//!
//! Modes that only end by a bound get a small one in the test's inventory: a deadline for a
//! drip (each byte comes in time for a per-read timeout), a one-second timeout for a silent
//! router, a row limit for a flood. No wall-clock bound is asserted: a run ends, or the test
//! harness reports it hung.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::Run;
use serde_json::{Value, json};
use wispctl::kinds::pppoe::twin::{RouterFile, router_path};

/// Peak memory of any wispctl child of this test process, in kilobytes.
fn children_peak_kb() -> i64 {
    let usage = nix::sys::resource::getrusage(nix::sys::resource::UsageWho::RUSAGE_CHILDREN)
        .expect("getrusage");
    usage.max_rss()
}

/// A lab folder, a desired-state folder and a state folder in one temporary directory.
struct TwoRouters {
    tmp: tempfile::TempDir,
}

const PASSWORD: &str = "lab-api-pw";

impl TwoRouters {
    /// Router `hostile` with `hostile` in its lab file and `options` in its inventory entry;
    /// router `healthy`. Each holds one secret wispctl owns, with a session up, that the YAML
    /// moves to another profile (a set, then a kick, then a verify print).
    fn new(hostile: Value, options: Value) -> TwoRouters {
        let t = TwoRouters {
            tmp: tempfile::tempdir().unwrap(),
        };
        std::fs::create_dir_all(t.lab().join("routers")).unwrap();
        std::fs::create_dir_all(t.desired().join("pppoe")).unwrap();
        t.write_router("hostile", "h1", json!({ "hostile": hostile }));
        t.write_router("healthy", "g1", json!({ "latency_ms": 20 }));
        let entry = |extra: &Value| {
            let mut e = json!({
                "address": "127.0.0.1", "port": 9, "username": "wispctl",
                "password": { "inline": PASSWORD }, "timeout_secs": 5,
            });
            for (k, v) in extra.as_object().unwrap() {
                e[k] = v.clone();
            }
            e
        };
        let inventory = json!({
            "allow_inline_secrets": true,
            "routers": { "hostile": entry(&options), "healthy": entry(&json!({})) },
        });
        write(&t.desired().join("inventory.yaml"), &inventory);
        for (router, secret) in [("hostile", "h1"), ("healthy", "g1")] {
            let file = json!({
                "router": router,
                "secrets": [ { "name": secret, "profile": "20M" } ],
            });
            write(&t.desired().join(format!("pppoe/{router}.yaml")), &file);
        }
        t
    }

    fn lab(&self) -> PathBuf {
        self.tmp.path().join("lab")
    }

    fn desired(&self) -> PathBuf {
        self.tmp.path().join("desired")
    }

    fn write_router(&self, name: &str, secret: &str, extra: Value) {
        let mut file = json!({
            "version": "v7",
            "password_visible": true,
            "users": [["wispctl", PASSWORD]],
            "profiles": ["10M", "20M"],
            "secrets": [ { "name": secret, "password": "pw", "service": "pppoe",
                           "profile": "10M", "comment": "[wispctl]" } ],
            "active": [[secret, "10.0.0.2"]],
        });
        for (k, v) in extra.as_object().unwrap() {
            file[k] = v.clone();
        }
        write(&router_path(&self.lab(), name), &file);
    }

    fn router(&self, name: &str) -> RouterFile {
        let text = std::fs::read_to_string(router_path(&self.lab(), name)).unwrap();
        serde_json::from_str(&text).unwrap()
    }

    fn apply(&self) -> Run {
        let out = Command::new(env!("CARGO_BIN_EXE_wispctl"))
            .arg("-C")
            .arg(self.desired())
            .arg("--lab")
            .arg(self.lab())
            .arg("--state-dir")
            .arg(self.tmp.path().join("state"))
            .args(["apply", "--auto-approve", "--lock-timeout", "1s"])
            .env_remove("RUST_LOG")
            .env("NO_COLOR", "1")
            .stdin(std::process::Stdio::null())
            .output()
            .unwrap();
        Run::from(out)
    }
}

fn write(path: &Path, value: &Value) {
    std::fs::write(path, serde_json::to_string_pretty(value).unwrap()).unwrap();
}

/// Runs one hostile mode end to end and checks everything issue 10 asks.
#[track_caller]
fn survives(hostile: Value, options: Value) {
    let t = TwoRouters::new(hostile.clone(), options);
    let run = t.apply();
    let all = run.all();
    assert_eq!(run.code, 1, "{hostile}: exit {}\n{all}", run.code);
    assert!(!all.contains("panicked"), "{hostile}: a panic\n{all}");
    assert!(
        !all.contains(PASSWORD),
        "{hostile}: the API password in the output"
    );
    // The healthy router's change is applied.
    let healthy = t.router("healthy");
    assert_eq!(healthy.secrets[0].profile, "20M", "{hostile}\n{all}");
    assert!(healthy.active.is_empty(), "{hostile}: not kicked\n{all}");
    assert!(all.contains("pppoe.hostile"), "{hostile}: {all}");
    // The hostile router broke the stream, and received nothing after.
    let received = t.router("hostile").received;
    assert!(
        received.breaks >= 1,
        "{hostile}: never broke: {received:?}\n{all}"
    );
    assert_eq!(
        received.after_break,
        Vec::<String>::new(),
        "{hostile}: sent after the broken read\n{all}"
    );
    // The lock was released: a second apply runs (and the hostile router breaks again, or has
    // nothing left to do).
    let again = t.apply();
    assert!(
        matches!(again.code, 0 | 1) && !again.all().contains("holds the lock"),
        "{hostile}: second apply: exit {}\n{}",
        again.code,
        again.all()
    );
    assert!(!again.all().contains("panicked"), "{}", again.all());
    assert_eq!(
        t.router("hostile").received.after_break,
        Vec::<String>::new()
    );
    let peak_kb = children_peak_kb();
    eprintln!(
        "{hostile}: peak of the wispctl processes so far: {} MiB",
        peak_kb / 1024
    );
    assert!(
        peak_kb < 100 * 1024,
        "{hostile}: a wispctl process peaked at {peak_kb} KiB"
    );
}

fn from_first_write(mode: &str) -> Value {
    json!({ "mode": mode, "from": "first_write" })
}

#[test]
fn a_dripping_router_ends_at_its_deadline() {
    survives(
        from_first_write("drip"),
        json!({ "deadline": { "apply_secs": 2 } }),
    );
}

#[test]
fn a_router_dripping_from_login_fails_its_read_at_its_deadline() {
    survives(json!("drip"), json!({ "deadline": { "observe_secs": 2 } }));
}

/// At the default limits: they bound memory, not only the configured ones.
#[test]
fn a_flooding_router_ends_at_its_row_limit() {
    survives(from_first_write("flood"), json!({}));
}

#[test]
fn a_router_flooding_its_read_ends_at_its_reply_limit() {
    survives(json!("flood"), json!({}));
}

#[test]
fn a_flood_ends_at_a_configured_row_limit() {
    survives(
        from_first_write("flood"),
        json!({ "limits": { "max_rows": 5000 } }),
    );
}

#[test]
fn an_endless_sentence_ends_at_the_sentence_limit() {
    survives(from_first_write("endless_sentence"), json!({}));
}

#[test]
fn a_stray_done_for_an_earlier_tag_kills_the_connection() {
    survives(from_first_write("stray_done"), json!({}));
}

#[test]
fn an_answer_for_an_unknown_tag_kills_the_connection() {
    survives(from_first_write("unknown_tag"), json!({}));
}

#[test]
fn an_answer_without_a_tag_kills_the_connection() {
    survives(from_first_write("missing_tag"), json!({}));
}

#[test]
fn an_unknown_reply_word_kills_the_connection() {
    survives(from_first_write("unknown_word"), json!({}));
}

#[test]
fn garbage_after_the_first_write_kills_the_connection() {
    survives(json!("garbage_after_writes"), json!({}));
}

#[test]
fn a_silent_router_ends_at_its_timeout() {
    survives(from_first_write("silent"), json!({ "timeout_secs": 1 }));
}

/// The report says what happened to the hostile router's change: not applied, and why.
#[test]
fn the_report_says_the_hostile_change_is_unknown() {
    let t = TwoRouters::new(from_first_write("unknown_tag"), json!({}));
    let run = t.apply();
    assert_eq!(run.code, 1, "{}", run.all());
    let line = run
        .stdout
        .lines()
        .find(|l| l.contains("failed  pppoe.hostile.secret[\"h1\"]"))
        .unwrap_or_else(|| panic!("no outcome for h1:\n{}", run.all()));
    assert!(
        line.contains("unknown (sent, no answer)") && line.contains("the next plan settles it"),
        "{line}"
    );
    // The write took effect on the router; the kick was never sent.
    let hostile = t.router("hostile");
    assert_eq!(hostile.secrets[0].profile, "20M");
    assert_eq!(hostile.active.len(), 1, "kicked on a broken connection");
    assert_eq!(hostile.received.commands.get("/ppp/active/remove"), None);
}

/// A batched remove whose answer is lost is reported unknown, never applied, and the next
/// plan settles it from what the router really did.
#[test]
fn a_remove_whose_answer_is_lost_is_unknown_and_settled_by_the_next_plan() {
    let t = TwoRouters::new(from_first_write("unknown_tag"), json!({}));
    // The hostile router's only change is a prune: its first write is the remove.
    write(
        &t.desired().join("pppoe/hostile.yaml"),
        &json!({ "router": "hostile", "prune": "owned", "allow_empty_prune": true, "secrets": [] }),
    );
    let run = t.apply();
    assert_eq!(run.code, 1, "{}", run.all());
    let line = run
        .stdout
        .lines()
        .find(|l| l.contains("pppoe.hostile.secret[\"h1\"]") && l.contains("failed"))
        .unwrap_or_else(|| panic!("no failed outcome for h1:\n{}", run.all()));
    assert!(line.contains("unknown (sent, no answer)"), "{line}");
    assert!(t.router("hostile").secrets.is_empty(), "the remove ran");
    // Reading is left alone by this router: the next plan sees the secret gone.
    let plan = Command::new(env!("CARGO_BIN_EXE_wispctl"))
        .arg("-C")
        .arg(t.desired())
        .arg("--lab")
        .arg(t.lab())
        .args(["plan", "--detailed-exitcode", "--target", "pppoe.hostile"])
        .env("NO_COLOR", "1")
        .output()
        .unwrap();
    let plan = Run::from(plan);
    assert_eq!(plan.code, 0, "{}", plan.all());
}

/// `import` reads outside the engine: it is bounded by the router's deadline too.
#[test]
fn an_import_from_a_dripping_router_ends_at_its_deadline() {
    let t = TwoRouters::new(json!("drip"), json!({ "deadline": { "observe_secs": 2 } }));
    let (yaml, env) = (t.tmp.path().join("out.yaml"), t.tmp.path().join("out.env"));
    let out = Command::new(env!("CARGO_BIN_EXE_wispctl"))
        .arg("-C")
        .arg(t.desired())
        .arg("--lab")
        .arg(t.lab())
        .args(["import", "pppoe", "hostile", "--out"])
        .arg(&yaml)
        .arg("--secrets-file")
        .arg(&env)
        .env("NO_COLOR", "1")
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    let run = Run::from(out);
    assert_eq!(run.code, 1, "{}", run.all());
    assert!(
        run.stderr.contains("within the deadline of 2s"),
        "{}",
        run.all()
    );
    assert!(!yaml.exists() && !env.exists(), "nothing written");
}
