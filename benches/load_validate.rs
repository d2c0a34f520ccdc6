//! Load + validate of 5,000 PPPoE secrets: the whole `wispctl validate` command, and the
//! library's `desired::load` in-process.
//!
//! The folder: 2 routers x 2,500 secrets (`WISPCTL_BENCH_SECRETS` changes the total), each
//! secret with a `{ env: NAME }` password, a profile, a remote address, a caller-id and a
//! comment, as `benches/pppoe_plan.rs` writes them; the 5,000 variables are in the command's
//! real environment (what a VPS's environment file gives).
//!
//! Before and after, side by side in one run: set `WISPCTL_BASELINE_BIN` to another build of
//! wispctl (for example the commit before the YAML parser change, built with
//! `cargo build --release`); the two binaries then run in turn (A B A B ...) on the same
//! folder and environment, and the table gives both medians and the ratio. Without it, only
//! this build is measured.
//!
//! ```sh
//! cargo bench --bench load_validate
//! git worktree add /tmp/wispctl-before 4949135 && \
//!   cargo build --release --manifest-path /tmp/wispctl-before/Cargo.toml
//! WISPCTL_BASELINE_BIN=/tmp/wispctl-before/target/release/wispctl cargo bench --bench load_validate
//! ```

mod common;

use std::fmt::Write as _;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{cpu_model, fmt, loadavg, median};

const ROUTERS: [&str; 2] = ["balanceador", "torre-norte"];

fn main() {
    if !std::env::args().any(|a| a == "--bench") {
        println!(
            "load_validate: skipped (a benchmark; run it with `cargo bench --bench load_validate`)"
        );
        return;
    }
    let total: usize = std::env::var("WISPCTL_BENCH_SECRETS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(5_000);
    let runs: usize = std::env::var("WISPCTL_BENCH_RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(15);
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("desired");
    let env = write_desired_state(&dir, total / ROUTERS.len());
    let this = env!("CARGO_BIN_EXE_wispctl");
    let baseline = std::env::var("WISPCTL_BASELINE_BIN").ok();

    // Every binary must accept the folder before it is timed.
    for bin in std::iter::once(this).chain(baseline.as_deref()) {
        let out = validate(bin, &dir, &env, tmp.path());
        assert!(
            out.status.success(),
            "{bin} validate failed:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    let mut ours = Vec::new();
    let mut theirs = Vec::new();
    for _ in 0..runs {
        ours.push(time(|| validate(this, &dir, &env, tmp.path())));
        if let Some(b) = &baseline {
            theirs.push(time(|| validate(b, &dir, &env, tmp.path())));
        }
    }

    // In-process: the library's load alone (parse, validate, resolve), same environment.
    let resolver =
        wispctl::secret::SecretResolver::new().with_fallback_env(env.iter().cloned().collect());
    let mut in_process = Vec::new();
    for _ in 0..runs {
        let start = Instant::now();
        let d = wispctl::desired::load(&dir, &resolver).expect("the folder loads");
        in_process.push(start.elapsed());
        std::hint::black_box(d);
    }

    let mut table = String::new();
    writeln!(
        table,
        "load + validate of {total} secrets ({} routers), {runs} runs each, load {} ({})",
        ROUTERS.len(),
        loadavg(),
        cpu_model()
    )
    .unwrap();
    writeln!(table, "\n| what | median | min | max |\n|---|---|---|---|").unwrap();
    let row = |t: &mut String, what: &str, v: &[Duration]| {
        let (min, max) = (v.iter().min().unwrap(), v.iter().max().unwrap());
        writeln!(
            t,
            "| {what} | {} | {} | {} |",
            fmt(median(v)),
            fmt(*min),
            fmt(*max)
        )
        .unwrap();
    };
    row(&mut table, "`wispctl validate`, this build", &ours);
    if !theirs.is_empty() {
        row(&mut table, "`wispctl validate`, baseline", &theirs);
    }
    row(
        &mut table,
        "`desired::load` in-process, this build",
        &in_process,
    );
    if !theirs.is_empty() {
        let ratios: Vec<f64> = theirs
            .iter()
            .zip(&ours)
            .map(|(b, a)| b.as_secs_f64() / a.as_secs_f64())
            .collect();
        let mut sorted = ratios.clone();
        sorted.sort_by(f64::total_cmp);
        writeln!(
            table,
            "\nbaseline / this build, pair by pair: median {:.2}x (min {:.2}x, max {:.2}x)",
            sorted[sorted.len() / 2],
            sorted[0],
            sorted[sorted.len() - 1]
        )
        .unwrap();
    }
    println!("{table}");
}

fn time(f: impl FnOnce() -> std::process::Output) -> Duration {
    let start = Instant::now();
    let out = f();
    let d = start.elapsed();
    assert!(out.status.success());
    d
}

fn validate(bin: &str, dir: &Path, env: &[(String, String)], state: &Path) -> std::process::Output {
    Command::new(bin)
        .arg("-C")
        .arg(dir)
        .arg("--state-dir")
        .arg(state.join("state"))
        .arg("validate")
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("NO_COLOR", "1")
        .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .stdin(Stdio::null())
        .output()
        .expect("run wispctl")
}

fn q(s: &str) -> String {
    serde_json::to_string(s).unwrap()
}

/// Writes the folder; returns the environment its references resolve in.
fn write_desired_state(dir: &Path, per_router: usize) -> Vec<(String, String)> {
    let mut env = Vec::new();
    let mut inv =
        String::from("guards:\n  max_deletes: 1000\n  max_disconnects: 100000\nrouters:\n");
    for router in ROUTERS {
        let var = format!(
            "ROUTER_{}_PASSWORD",
            router.to_ascii_uppercase().replace('-', "_")
        );
        writeln!(
            inv,
            "  {router}:\n    address: 192.0.2.1\n    port: 8728\n    username: wispctl\n    password: {{ env: {var} }}"
        )
        .unwrap();
        env.push((var, "bench-router-pw".to_string()));
    }
    std::fs::create_dir_all(dir.join("pppoe")).unwrap();
    std::fs::write(dir.join("inventory.yaml"), inv).unwrap();
    for (r, router) in ROUTERS.iter().enumerate() {
        let mut y = format!(
            "router: {router}\nprune: owned\nkick: on-change\ndefaults:\n  service: pppoe\nsecrets:\n"
        );
        for i in 0..per_router {
            let var = format!(
                "PPPOE_{}_{i:05}",
                router.to_ascii_uppercase().replace('-', "_")
            );
            let name = format!("cliente.{r}.{i:05}");
            writeln!(y, "  - name: {}", q(&name)).unwrap();
            writeln!(y, "    password: {{ env: {var} }}").unwrap();
            writeln!(y, "    profile: {}", q(["10M", "20M", "Morosos"][i % 3])).unwrap();
            writeln!(
                y,
                "    remote_address: 10.{}.{}.{}",
                10 + r,
                i / 250,
                i % 250 + 1
            )
            .unwrap();
            writeln!(
                y,
                "    caller_id: \"28:70:4E:{:02X}:{:02X}:{:02X}\"",
                r,
                i / 256,
                i % 256
            )
            .unwrap();
            writeln!(y, "    comment: {}", q(&format!("Tomatlan, cliente {i}"))).unwrap();
            env.push((var, format!("pw-{r}-{i}-secreto")));
        }
        std::fs::write(dir.join("pppoe").join(format!("{router}.yaml")), y).unwrap();
    }
    env
}
