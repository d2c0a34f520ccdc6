//! The README's first command: plan → apply → plan (no changes) → an out-of-band edit →
//! drift, on a fresh lab, through the same code paths as the CLI.

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

    writeln!(out, "== 1/5 plan: what apply would change on the lab ==")?;
    expect("plan", app::plan(&g, &read, out).await?, exit::CHANGES)?;

    writeln!(out, "\n== 2/5 apply ==")?;
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

    writeln!(out, "\n== 3/5 plan again: nothing left to do ==")?;
    expect(
        "second plan",
        app::plan(&g, &read, out).await?,
        exit::SUCCESS,
    )?;

    writeln!(out, "\n== 4/5 an out-of-band edit on the host ==")?;
    writeln!(out, "{}", super::tamper(lab)?)?;

    writeln!(
        out,
        "\n== 5/5 drift: what changed behind git's back (read-only) =="
    )?;
    expect("drift", app::drift(&g, &read, out).await?, exit::CHANGES)?;

    writeln!(
        out,
        "\nDemo complete: plan, apply, a clean re-plan, and drift found (exit 2 from `wispctl drift`)."
    )?;
    Ok(exit::SUCCESS)
}

fn expect(step: &str, got: u8, want: u8) -> anyhow::Result<()> {
    if got != want {
        bail!("demo step {step} exited {got}, expected {want}");
    }
    Ok(())
}
