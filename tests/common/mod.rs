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

    /// What the lab router `balanceador` received so far, by command word, as its file says
    /// (saved after each write, and by `lab serve` when it stops).
    pub fn router_received(&self) -> BTreeMap<String, u64> {
        let file: serde_json::Value = serde_json::from_str(
            &std::fs::read_to_string(self.lab().join("routers/balanceador.json")).unwrap(),
        )
        .unwrap();
        serde_json::from_value(file["received"]["commands"].clone()).unwrap_or_default()
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

/// Every FIFO under `root` (links not followed).
pub fn fifos_under(root: &Path) -> Vec<PathBuf> {
    use std::os::unix::fs::FileTypeExt;
    let mut found = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for e in entries.flatten() {
            match e.file_type() {
                Ok(t) if t.is_dir() => stack.push(e.path()),
                Ok(t) if t.is_fifo() => found.push(e.path()),
                _ => {}
            }
        }
    }
    found
}

/// Runs `cmd` to its end while watching `fifos`, and returns its output and the FIFOs it
/// opened. A FIFO opened for reading blocks its reader until a writer comes: whenever one of
/// `fifos` has a reader (only the command can be it), it is recorded, and its write end is
/// opened and closed at once, which lets the reader go on (to an empty read) instead of
/// hanging. No bound on time: the loop ends when the command does.
pub fn output_watching_fifos(mut cmd: Command, fifos: &[PathBuf]) -> (Output, Vec<PathBuf>) {
    use std::io::Read;
    use std::os::unix::fs::OpenOptionsExt;
    let mut child = cmd
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn wispctl");
    let drain = |mut pipe: Box<dyn Read + Send>| {
        std::thread::spawn(move || {
            let mut bytes = Vec::new();
            let _ = pipe.read_to_end(&mut bytes);
            bytes
        })
    };
    let stdout = drain(Box::new(child.stdout.take().expect("stdout")));
    let stderr = drain(Box::new(child.stderr.take().expect("stderr")));
    let mut opened = Vec::new();
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break status;
        }
        for f in fifos {
            // Without a reader this fails at once (ENXIO); with one it succeeds.
            let writer = std::fs::OpenOptions::new()
                .write(true)
                .custom_flags(libc::O_NONBLOCK)
                .open(f);
            if writer.is_ok() && !opened.contains(f) {
                opened.push(f.clone());
            }
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    };
    let output = Output {
        status,
        stdout: stdout.join().expect("stdout reader"),
        stderr: stderr.join().expect("stderr reader"),
    };
    (output, opened)
}

/// Plans with `make()` reading the targets while a snapshot is recorded, writes the snapshot
/// to its file form under `key`, reads it back, and plans with `make()` again from it: the two
/// plans must have the same targets (changes, notes, errors, fingerprints) and summary, and the
/// file must hold none of `secrets`. The live run is returned (to apply it).
pub async fn plan_live_and_from_snapshot(
    make: impl Fn() -> wispctl::engine::Engine,
    key: &wispctl::secret::HashKey,
    secrets: &[&str],
) -> Result<wispctl::engine::PlannedRun, String> {
    use std::sync::Arc;
    use wispctl::engine::{Recorder, Replay, Source};
    let recorder = Arc::new(Recorder::default());
    let live = make()
        .with_source(Source {
            replay: None,
            record: Some(recorder.clone()),
        })
        .plan()
        .await;
    let snapshot = wispctl::snapshot::Snapshot::new(recorder.take(), "digest");
    let file = snapshot.to_file(key);
    for s in secrets {
        if file.contains(s) {
            return Err(format!("the snapshot holds the secret {s:?}"));
        }
    }
    let back = wispctl::snapshot::Snapshot::check(
        file.as_bytes(),
        "snapshot.json",
        key,
        std::time::Duration::from_secs(3600),
    )
    .map_err(|e| e.to_string())?;
    let offline = make()
        .with_source(Source {
            replay: Some(Arc::new(Replay(back.targets))),
            record: None,
        })
        .plan()
        .await;
    if offline.plan.targets != live.plan.targets || offline.plan.summary != live.plan.summary {
        let (a, b) = (
            serde_json::to_string_pretty(&live.plan.targets).unwrap(),
            serde_json::to_string_pretty(&offline.plan.targets).unwrap(),
        );
        let first = a
            .lines()
            .zip(b.lines())
            .find(|(x, y)| x != y)
            .map(|(x, y)| format!("live: {x}\nsnapshot: {y}"))
            .unwrap_or_default();
        return Err(format!(
            "the plan from the snapshot differs from the live plan\n{first}\nlive:\n{}\nfrom the snapshot:\n{}",
            show(&live.plan),
            show(&offline.plan)
        ));
    }
    Ok(live)
}

/// Runs `cmd` under `strace -f -e trace=socket,connect`: its output, and every traced line
/// that opens an IPv4/IPv6 socket or connects anything (empty: no network at all).
pub fn network_calls(cmd: &Command) -> (Output, Vec<String>) {
    let log = tempfile::NamedTempFile::new().unwrap();
    let mut traced = Command::new("strace");
    traced
        .args(["-f", "-e", "trace=socket,connect", "-o"])
        .arg(log.path())
        .arg(cmd.get_program())
        .args(cmd.get_args());
    if let Some(dir) = cmd.get_current_dir() {
        traced.current_dir(dir);
    }
    traced.env_clear();
    for (k, v) in cmd.get_envs() {
        if let Some(v) = v {
            traced.env(k, v);
        }
    }
    let out = traced
        .output()
        .unwrap_or_else(|e| panic!("strace is needed (tests/setup.sh installs it): {e}"));
    let trace = std::fs::read_to_string(log.path()).unwrap();
    let calls = trace
        .lines()
        .filter(|l| l.contains("AF_INET") || l.contains("connect("))
        .map(str::to_string)
        .collect();
    (out, calls)
}

/// The lab's values of the desired state's secrets (PPPoE passwords, chap secrets): what CI
/// holds to plan from a snapshot; never the inventory's device passwords.
pub fn ci_secrets(lab: &Lab) -> std::collections::HashMap<String, String> {
    wispctl::secret::parse_env_file(
        &std::fs::read_to_string(lab.lab().join("secrets.env")).unwrap(),
    )
    .into_iter()
    .filter(|(k, _)| k.starts_with("PPPOE_") || k.starts_with("CHAP_"))
    .collect()
}

/// The serving process, killed if a test fails before stopping it.
pub struct Server(pub std::process::Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts `lab serve` for the lab's desired state and returns it with the lines it printed up
/// to "serving ...".
pub fn serve(lab: &Lab) -> (Server, Vec<String>) {
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_wispctl"))
        .arg("-C")
        .arg(lab.desired())
        .arg("lab")
        .arg("serve")
        .arg(lab.lab())
        .env_remove("RUST_LOG")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::inherit())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let server = Server(child);
    let mut lines = Vec::new();
    for line in std::io::BufRead::lines(std::io::BufReader::new(stdout)) {
        let line = line.unwrap();
        let done = line.starts_with("serving ");
        lines.push(line);
        if done {
            return (server, lines);
        }
    }
    panic!("lab serve ended before serving: {lines:?}");
}

/// Stops a `lab serve` with SIGTERM (it saves its files) and checks it exited 0.
pub fn stop_server(mut server: Server) {
    let pid = server.0.id() as i32;
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    assert!(server.0.wait().unwrap().success());
}
