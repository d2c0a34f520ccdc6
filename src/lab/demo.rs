//! The README's first command: plan → apply → plan (no changes) → an out-of-band edit →
//! drift → the controller heals it and a local endpoint receives the notifications, on a
//! fresh lab, through the same code paths as the CLI.

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{Context as _, bail};

use crate::app::{self, ApplyOptions, Globals, ReadOptions};
use crate::exit;
use crate::plan::render::Format;

/// Runs the demo; the lab lives in `keep` when given, else in a temporary folder removed after.
pub async fn run(
    dir: &Path,
    keep: Option<PathBuf>,
    color: bool,
    out: &mut dyn Write,
) -> anyhow::Result<u8> {
    match keep {
        Some(k) => steps(dir, &k, color, out).await,
        None => {
            // A fresh folder of unpredictable name, mode 0700, removed when dropped.
            let temp = tempfile::Builder::new()
                .prefix("wispctl-demo-")
                .tempdir()
                .context("cannot create a temporary folder for the lab")?;
            steps(dir, temp.path(), color, out).await
        }
    }
}

async fn steps(dir: &Path, lab: &Path, color: bool, out: &mut dyn Write) -> anyhow::Result<u8> {
    super::init(lab).with_context(|| format!("cannot create the lab in {}", lab.display()))?;
    let g = Globals {
        dir: dir.to_path_buf(),
        state_dir: lab.join("state"),
        lab: Some(lab.to_path_buf()),
        color,
    };
    let read = ReadOptions {
        format: Format::Text,
        out: None,
        targets: Vec::new(),
        detailed_exitcode: true,
        max_deletes: None,
        max_disconnects: None,
        trust_new_host_keys: false,
        snapshot: None,
        max_age: crate::snapshot::DEFAULT_MAX_AGE,
        not_compared: false,
        notify: false,
    };
    writeln!(
        out,
        "wispctl demo: desired state from {}, lab in {}\n",
        dir.display(),
        lab.display()
    )?;

    writeln!(out, "== 1/6 plan: what apply would change on the lab ==")?;
    expect("plan", app::plan(&g, &read, out).await?, exit::CHANGES)?;

    writeln!(out, "\n== 2/6 apply ==")?;
    let apply = ApplyOptions {
        plan_file: None,
        auto_approve: true,
        lock_file: None,
        lock_timeout: std::time::Duration::from_secs(10),
        report_file: None,
        ignore_windows: false,
        read: read.clone(),
    };
    expect("apply", app::apply(&g, &apply, out).await?, exit::SUCCESS)?;

    writeln!(out, "\n== 3/6 plan again: nothing left to do ==")?;
    expect(
        "second plan",
        app::plan(&g, &read, out).await?,
        exit::SUCCESS,
    )?;

    writeln!(out, "\n== 4/6 an out-of-band edit on the host ==")?;
    writeln!(out, "{}", super::tamper(lab)?)?;

    writeln!(
        out,
        "\n== 5/6 drift: what changed behind git's back (read-only) =="
    )?;
    expect("drift", app::drift(&g, &read, out).await?, exit::CHANGES)?;

    writeln!(
        out,
        "\n== 6/6 the controller heals it: `wispctl reconcile --once` in apply mode, notifying a local webhook =="
    )?;
    controller_scene(&g, lab, &read, out).await?;

    writeln!(
        out,
        "\nDemo complete: plan, apply, a clean re-plan, drift found (exit 2 from `wispctl drift`), and the controller healed it."
    )?;
    Ok(exit::SUCCESS)
}

/// The controller scene: the desired state with a `reconcile:` section (apply mode, a webhook
/// on a local endpoint this process serves), one pass of the controller, what the endpoint
/// received, and a drift run that finds nothing left.
async fn controller_scene(
    g: &Globals,
    lab: &Path,
    read: &ReadOptions,
    out: &mut dyn Write,
) -> anyhow::Result<()> {
    use std::sync::{Arc, Mutex};
    let received: Arc<Mutex<Vec<String>>> = Arc::default();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let keep = received.clone();
    let app = axum::Router::new().route(
        "/hook",
        axum::routing::post(move |body: String| {
            let keep = keep.clone();
            async move {
                keep.lock().expect("demo hook").push(body);
                "ok"
            }
        }),
    );
    let server = tokio::spawn(async move { axum::serve(listener, app).await });
    let dir = lab.join("desired-controller");
    copy_dir(&g.dir, &dir)?;
    let inventory = dir.join("inventory.yaml");
    let mut text = std::fs::read_to_string(&inventory)?;
    text.push_str(&format!(
        "\nreconcile:\n  mode: apply\n  notify:\n    language: en\n    webhook:\n      url: http://{addr}/hook\n"
    ));
    std::fs::write(&inventory, text)?;
    writeln!(
        out,
        "(inventory.yaml gains `reconcile: {{ mode: apply, notify: {{ webhook: {{ url: http://{addr}/hook }} }} }}`)"
    )?;
    let g2 = Globals {
        dir: dir.clone(),
        ..g.clone()
    };
    let o = app::ReconcileOptions {
        listen: None,
        git: None,
        once: true,
        lock_timeout: std::time::Duration::from_secs(10),
        stop_grace: std::time::Duration::from_secs(60),
    };
    expect(
        "reconcile --once",
        app::reconcile(&g2, &o, out).await?,
        exit::SUCCESS,
    )?;
    server.abort();
    let bodies = received.lock().expect("demo hook").clone();
    writeln!(
        out,
        "The local webhook received {} notification(s):",
        bodies.len()
    )?;
    for b in &bodies {
        let v: serde_json::Value = serde_json::from_str(b).unwrap_or_default();
        writeln!(out, "  {}", v["message"].as_str().unwrap_or(b))?;
    }
    if bodies.is_empty() {
        bail!("demo: the controller sent no notification");
    }
    writeln!(out, "`wispctl status` keeps the history:")?;
    app::status(&g2, app::StatusFormat::Text, out)?;
    writeln!(out, "\nDrift again, on the healed lab:")?;
    expect(
        "drift after the controller",
        app::drift(&g2, read, out).await?,
        exit::SUCCESS,
    )?;
    Ok(())
}

fn copy_dir(from: &Path, to: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(to)?;
    for e in std::fs::read_dir(from)? {
        let e = e?;
        let target = to.join(e.file_name());
        if e.file_type()?.is_dir() {
            copy_dir(&e.path(), &target)?;
        } else if e.file_type()?.is_file() {
            std::fs::copy(e.path(), target)?;
        }
    }
    Ok(())
}

fn expect(step: &str, got: u8, want: u8) -> anyhow::Result<()> {
    if got != want {
        bail!("demo step {step} exited {got}, expected {want}");
    }
    Ok(())
}
