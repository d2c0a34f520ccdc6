//! A hostile router next to a healthy one: how long `wispctl apply` takes to end, against the
//! target's deadline, and how much memory it takes, for every hostile mode of the lab router.
//!
//! Each mode runs in a child of this benchmark (so that the peak memory measured, the largest
//! resident set of that child's own children, is that run's alone): a lab with router
//! `hostile` (its lab file sets the mode) and router `healthy`, each with one change, and
//! `wispctl apply --auto-approve` with `deadline: { observe_secs: 3, apply_secs: 3 }` and
//! `timeout_secs: 2` on both routers, and the default reply limits. The lab runs in wispctl's
//! process (`--lab`), so the memory figure includes the lab router's side.
//!
//! ```sh
//! cargo bench --bench hostile_router
//! ```
//!
//! It ends with one line a script can read:
//! `HOSTILE modes=N max_wall_s=S deadline_s=3 max_wall_over_deadline=R peak_mb=M`.

mod common;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

/// Seconds every run's deadline allows (observe and apply).
const DEADLINE_SECS: u64 = 3;

/// Every hostile mode, and from when it breaks the stream.
const MODES: [(&str, &str); 13] = [
    ("drip", "login"),
    ("drip", "first_write"),
    ("flood", "login"),
    ("flood", "first_write"),
    ("endless_sentence", "login"),
    ("endless_sentence", "first_write"),
    ("stray_done", "first_write"),
    ("unknown_tag", "first_write"),
    ("missing_tag", "first_write"),
    ("unknown_word", "first_write"),
    ("garbage_after_writes", "first_write"),
    ("silent", "login"),
    ("silent", "first_write"),
];

fn main() {
    if let Ok(which) = std::env::var("WISPCTL_HOSTILE_ONE") {
        let (mode, from) = which.split_once('/').expect("MODE/FROM");
        one(mode, from);
        return;
    }
    if !std::env::args().any(|a| a == "--bench") {
        println!(
            "hostile_router: skipped (a benchmark; run it with `cargo bench --bench hostile_router`)"
        );
        return;
    }
    println!(
        "hostile_router: {} modes, deadline {DEADLINE_SECS} s, load {}, CPU {}",
        MODES.len(),
        common::loadavg(),
        common::cpu_model()
    );
    println!("| mode | from | exit | wall | wall / deadline | peak memory |");
    println!("|---|---|---|---|---|---|");
    let (mut max_wall, mut peak_kb) = (Duration::ZERO, 0i64);
    for (mode, from) in MODES {
        let out = Command::new(std::env::current_exe().unwrap())
            .env("WISPCTL_HOSTILE_ONE", format!("{mode}/{from}"))
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        let line = text
            .lines()
            .find(|l| l.starts_with("one "))
            .unwrap_or_else(|| panic!("{mode}/{from}: no result\n{text}"));
        let field = |k: &str| -> i64 {
            line.split_whitespace()
                .find_map(|kv| kv.strip_prefix(&format!("{k}=")))
                .and_then(|v| v.parse().ok())
                .unwrap_or_else(|| panic!("{mode}/{from}: no {k} in {line}"))
        };
        let (code, wall, kb) = (
            field("code"),
            Duration::from_millis(field("wall_ms") as u64),
            field("peak_kb"),
        );
        assert_eq!(code, 1, "{mode}/{from}: wispctl must exit 1\n{text}");
        max_wall = max_wall.max(wall);
        peak_kb = peak_kb.max(kb);
        println!(
            "| {mode} | {from} | {code} | {} | {:.2} | {} MiB |",
            common::fmt(wall),
            wall.as_secs_f64() / DEADLINE_SECS as f64,
            kb / 1024
        );
    }
    println!(
        "HOSTILE modes={} max_wall_s={:.2} deadline_s={DEADLINE_SECS} max_wall_over_deadline={:.2} peak_mb={}",
        MODES.len(),
        max_wall.as_secs_f64(),
        max_wall.as_secs_f64() / DEADLINE_SECS as f64,
        peak_kb / 1024
    );
}

/// One run: prints `one code=C wall_ms=W peak_kb=K`.
fn one(mode: &str, from: &str) {
    let tmp = tempfile::tempdir().unwrap();
    let (lab, desired) = (tmp.path().join("lab"), tmp.path().join("desired"));
    std::fs::create_dir_all(lab.join("routers")).unwrap();
    std::fs::create_dir_all(desired.join("pppoe")).unwrap();
    let hostile = json!({ "mode": mode, "from": from });
    router(&lab, "hostile", "h1", json!({ "hostile": hostile }));
    router(&lab, "healthy", "g1", json!({}));
    let entry = json!({
        "address": "127.0.0.1", "port": 9, "username": "wispctl",
        "password": { "inline": "lab-api-pw" }, "timeout_secs": 2,
        "deadline": { "observe_secs": DEADLINE_SECS, "apply_secs": DEADLINE_SECS },
    });
    write(
        &desired.join("inventory.yaml"),
        &json!({
            "allow_inline_secrets": true,
            "routers": { "hostile": entry, "healthy": entry },
        }),
    );
    for (r, secret) in [("hostile", "h1"), ("healthy", "g1")] {
        write(
            &desired.join(format!("pppoe/{r}.yaml")),
            &json!({ "router": r, "secrets": [ { "name": secret, "profile": "20M" } ] }),
        );
    }
    let start = Instant::now();
    let out = Command::new(env!("CARGO_BIN_EXE_wispctl"))
        .arg("-C")
        .arg(&desired)
        .arg("--lab")
        .arg(&lab)
        .args(["apply", "--auto-approve"])
        .env_remove("RUST_LOG")
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    let wall = start.elapsed();
    let usage = nix::sys::resource::getrusage(nix::sys::resource::UsageWho::RUSAGE_CHILDREN)
        .expect("getrusage");
    println!(
        "one code={} wall_ms={} peak_kb={}",
        out.status.code().unwrap_or(-1),
        wall.as_millis(),
        usage.max_rss()
    );
}

fn router(lab: &Path, name: &str, secret: &str, extra: Value) {
    let mut file = json!({
        "version": "v7",
        "password_visible": true,
        "users": [["wispctl", "lab-api-pw"]],
        "profiles": ["10M", "20M"],
        "secrets": [ { "name": secret, "password": "pw", "service": "pppoe",
                       "profile": "10M", "comment": "[wispctl]" } ],
        "active": [[secret, "10.0.0.2"]],
    });
    for (k, v) in extra.as_object().unwrap() {
        file[k] = v.clone();
    }
    write(&wispctl::kinds::pppoe::twin::router_path(lab, name), &file);
}

fn write(path: &Path, value: &Value) {
    std::fs::write(path, serde_json::to_string_pretty(value).unwrap()).unwrap();
}
