//! Shared harness for the integration tests: a temporary lab with its own copy of the example
//! desired state, the real binary, and snapshots of every file under a folder.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// A lab and a desired-state folder in one temporary directory, removed on drop.
pub struct Lab {
    pub tmp: tempfile::TempDir,
}

impl Lab {
    /// A fresh lab seeded like the demo, with a copy of the repository's desired-state folder.
    pub fn new() -> Lab {
        let tmp = tempfile::tempdir().unwrap();
        wispctl::lab::init(&tmp.path().join("lab")).unwrap();
        copy_dir(&repo().join("desired-state"), &tmp.path().join("desired"));
        Lab { tmp }
    }

    pub fn lab(&self) -> PathBuf {
        self.tmp.path().join("lab")
    }

    pub fn desired(&self) -> PathBuf {
        self.tmp.path().join("desired")
    }

    pub fn host(&self) -> PathBuf {
        wispctl::kinds::pppd::twin::host_root(&self.lab(), "vps")
    }

    /// Runs the binary against this lab with extra arguments.
    pub fn run(&self, args: &[&str]) -> Run {
        self.run_env(args, &[])
    }

    pub fn run_env(&self, args: &[&str], env: &[(&str, &str)]) -> Run {
        let mut cmd = self.command(args);
        for (k, v) in env {
            cmd.env(k, v);
        }
        Run::from(cmd.output().unwrap())
    }

    pub fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_wispctl"));
        cmd.arg("-C")
            .arg(self.desired())
            .arg("--lab")
            .arg(self.lab())
            .args(args)
            .env_remove("RUST_LOG")
            .env("NO_COLOR", "1")
            .stdin(std::process::Stdio::null());
        cmd
    }

    /// Every file under the lab's hosts: path -> (bytes, mode).
    pub fn snapshot(&self) -> BTreeMap<PathBuf, (Vec<u8>, u32)> {
        snapshot(&self.lab().join("hosts"))
    }

    pub fn write_desired(&self, rel: &str, text: &str) {
        std::fs::write(self.desired().join(rel), text).unwrap();
    }
}

pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

pub fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let target = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &target);
        } else {
            std::fs::copy(e.path(), target).unwrap();
        }
    }
}

pub fn snapshot(dir: &Path) -> BTreeMap<PathBuf, (Vec<u8>, u32)> {
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in entries {
            let e = e.unwrap();
            let meta = e.metadata().unwrap();
            if meta.is_dir() {
                stack.push(e.path());
            } else {
                out.insert(
                    e.path(),
                    (
                        std::fs::read(e.path()).unwrap(),
                        meta.permissions().mode() & 0o7777,
                    ),
                );
            }
        }
    }
    out
}

/// A finished run of the binary.
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl From<Output> for Run {
    fn from(o: Output) -> Run {
        Run {
            code: o.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
        }
    }
}

impl Run {
    pub fn all(&self) -> String {
        format!("{}{}", self.stdout, self.stderr)
    }

    #[track_caller]
    pub fn expect(&self, code: i32) -> &Run {
        assert_eq!(
            self.code, code,
            "exit {} (wanted {code})\n--- stdout\n{}\n--- stderr\n{}",
            self.code, self.stdout, self.stderr
        );
        self
    }
}

/// A plan as the text renderer shows it, for assertion messages.
pub fn show(plan: &wispctl::plan::Plan) -> String {
    wispctl::plan::render::text::plan(
        plan,
        wispctl::plan::render::Purpose::Plan,
        wispctl::plan::render::text::Paint(false),
    )
}

/// A single-threaded tokio runtime for in-process engine tests.
pub fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}
