//! Running Ansible's `ansible-playbook` with the community.routeros collection against lab
//! RouterOS servers, hermetically: shared by `tests/routeros_ansible.rs` and
//! `benches/pppoe_plan.rs` (each includes this file with `#[path]`; cargo does not build it as
//! a test of its own).
//!
//! What tests/setup.sh installs and this file looks for:
//! - `ansible-playbook` (ansible-core 2.19, PyPI) on PATH, or next to python3's scripts;
//! - the collection under `target/ansible-collections` (or `$WISPCTL_ANSIBLE_COLLECTIONS`),
//!   unpacked from the PyPI `ansible` 12.3.0 wheel: community.routeros 3.14.0.
//!
//! A missing piece is a failure naming tests/setup.sh, never a skip.

#![allow(dead_code)]

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

/// The collection folder (the one holding `ansible_collections/`).
///
/// # Panics
/// When the collection is not installed, with a message saying how to install it.
pub fn collections_dir() -> PathBuf {
    let dir = std::env::var_os("WISPCTL_ANSIBLE_COLLECTIONS")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            Path::new(env!("CARGO_MANIFEST_DIR")).join("target/ansible-collections")
        });
    let manifest = dir.join("ansible_collections/community/routeros/MANIFEST.json");
    assert!(
        manifest.is_file(),
        "the Ansible collection community.routeros is required by this conformance test and is \
         not installed at {} (looked for {}): run `bash tests/setup.sh` (it unpacks the \
         collection from the PyPI ansible 12.3.0 wheel there), or point \
         WISPCTL_ANSIBLE_COLLECTIONS at a folder holding ansible_collections/community/routeros",
        dir.display(),
        manifest.display()
    );
    dir
}

/// The `ansible-playbook` executable: on PATH, else in python3's scripts folder (pyenv before
/// a rehash, a `--user` install).
///
/// # Panics
/// When there is none, with a message saying how to install it.
pub fn ansible_playbook() -> PathBuf {
    let on_path = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .unwrap_or_default()
        .into_iter()
        .map(|d| d.join("ansible-playbook"))
        .find(|p| p.is_file());
    let candidate = on_path.or_else(|| {
        let out = Command::new("python3")
            .args([
                "-c",
                "import sysconfig; print(sysconfig.get_path('scripts'))",
            ])
            .output()
            .ok()?;
        let dir = String::from_utf8(out.stdout).ok()?;
        let p = Path::new(dir.trim()).join("ansible-playbook");
        p.is_file().then_some(p)
    });
    let Some(exe) = candidate else {
        panic!(
            "ansible-playbook (ansible-core 2.19) is required by this conformance test and was \
             not found on PATH nor in python3's scripts folder: run `bash tests/setup.sh` \
             (python3 -m pip install 'ansible-core~=2.19.5' librouteros==4.2.2)"
        );
    };
    exe
}

/// A folder for one run: inventory, host vars, outputs, and Ansible's own scratch space.
pub struct Workspace {
    dir: tempfile::TempDir,
    playbook_exe: PathBuf,
    collections: PathBuf,
    version: String,
}

impl Workspace {
    /// Checks the installation and creates the folder.
    pub fn new() -> Self {
        let collections = collections_dir();
        let playbook_exe = ansible_playbook();
        let dir = tempfile::Builder::new()
            .prefix("wispctl-ansible-")
            .tempdir()
            .expect("a temporary folder");
        for sub in ["home", "tmp", "out", "host_vars"] {
            std::fs::create_dir_all(dir.path().join(sub)).unwrap();
        }
        // An empty configuration file: no ansible.cfg of the machine or of a folder applies.
        std::fs::write(dir.path().join("ansible.cfg"), "[defaults]\n").unwrap();
        let mut ws = Workspace {
            dir,
            playbook_exe,
            collections,
            version: String::new(),
        };
        let mut probe = ws.hermetic(&ws.playbook_exe);
        probe.arg("--version");
        match probe.output() {
            Ok(o) if o.status.success() => {
                let text = String::from_utf8_lossy(&o.stdout);
                ws.version = text.lines().next().unwrap_or_default().to_string();
                ws
            }
            Ok(o) => panic!(
                "{} --version failed ({}); reinstall with `bash tests/setup.sh`:\n{}",
                ws.playbook_exe.display(),
                o.status,
                String::from_utf8_lossy(&o.stderr)
            ),
            Err(e) => panic!(
                "{} cannot be run ({e}); reinstall with `bash tests/setup.sh`",
                ws.playbook_exe.display()
            ),
        }
    }

    /// The first line of `ansible-playbook --version`.
    pub fn version(&self) -> &str {
        &self.version
    }

    /// The collection's version, from its MANIFEST.json.
    pub fn collection_version(&self) -> String {
        let path = self
            .collections
            .join("ansible_collections/community/routeros/MANIFEST.json");
        std::fs::read_to_string(path)
            .ok()
            .and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok())
            .and_then(|m| m["collection_info"]["version"].as_str().map(String::from))
            .unwrap_or_else(|| "?".into())
    }

    /// The folder.
    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Where playbooks write their results (`out_dir` in the inventory).
    pub fn out_dir(&self) -> PathBuf {
        self.path().join("out")
    }

    /// Writes `inventory.yml` (JSON is YAML): every host local, with Ansible's own Python (the
    /// one that has librouteros), and `out_dir`.
    pub fn write_inventory(&self, hosts: &serde_json::Value) {
        let inventory = serde_json::json!({
            "all": {
                "vars": {
                    "ansible_connection": "local",
                    "ansible_python_interpreter": "{{ ansible_playbook_python }}",
                    "out_dir": self.out_dir(),
                },
                "children": { "routers": { "hosts": hosts } },
            }
        });
        std::fs::write(
            self.path().join("inventory.yml"),
            serde_json::to_vec_pretty(&inventory).unwrap(),
        )
        .unwrap();
    }

    /// Writes `host_vars/<host>.yml` (as JSON).
    pub fn write_host_vars(&self, host: &str, vars: &serde_json::Value) {
        std::fs::write(
            self.path().join("host_vars").join(format!("{host}.yml")),
            serde_json::to_vec(vars).unwrap(),
        )
        .unwrap();
    }

    /// Next to the inventory, so Ansible finds `host_vars/`.
    fn inventory(&self) -> PathBuf {
        self.path().join("inventory.yml")
    }

    /// The command, hermetic: its own configuration, home, temp folders and collection path;
    /// no host key checking, no retry files, no colour, a UTF-8 locale (ansible-core refuses
    /// any other).
    pub fn command(&self, playbook: &Path, extra: &[&str]) -> Command {
        let mut c = self.hermetic(&self.playbook_exe);
        c.arg("-i").arg(self.inventory()).args(extra).arg(playbook);
        c
    }

    /// `exe` with the hermetic environment, in the folder.
    fn hermetic(&self, exe: &Path) -> Command {
        let d = self.path();
        let mut c = Command::new(exe);
        c.current_dir(d)
            .env("ANSIBLE_CONFIG", d.join("ansible.cfg"))
            .env("ANSIBLE_HOME", d.join("home"))
            .env("ANSIBLE_LOCAL_TEMP", d.join("tmp"))
            .env("ANSIBLE_REMOTE_TEMP", d.join("tmp"))
            .env("ANSIBLE_COLLECTIONS_PATH", &self.collections)
            .env("ANSIBLE_COLLECTIONS_SCAN_SYS_PATH", "false")
            .env("ANSIBLE_HOST_KEY_CHECKING", "false")
            .env("ANSIBLE_RETRY_FILES_ENABLED", "false")
            .env("ANSIBLE_NOCOLOR", "true")
            .env("ANSIBLE_FORCE_COLOR", "false")
            .env("ANSIBLE_GATHERING", "explicit")
            .env("ANSIBLE_LOCALHOST_WARNING", "false")
            .env("ANSIBLE_DEPRECATION_WARNINGS", "false")
            .env("ANSIBLE_STDOUT_CALLBACK", "default")
            .env("LC_ALL", "C.UTF-8")
            .env("LANG", "C.UTF-8")
            .env_remove("ANSIBLE_INVENTORY")
            .env_remove("ANSIBLE_VAULT_PASSWORD_FILE")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        c
    }

    /// Copies the playbook `name` from tests/ansible/ into the folder and runs it to its end or
    /// until `timeout` (then kills it and panics), returning its output and how long it took.
    pub fn run(&self, name: &str, extra: &[&str], timeout: Duration) -> (Output, Duration) {
        let playbook = self.path().join(name);
        std::fs::copy(shipped_playbook(name), &playbook).unwrap();
        run_with_timeout(self.command(&playbook, extra), timeout)
    }

    /// Reads `out/<name>` as JSON.
    pub fn read_out(&self, name: &str) -> serde_json::Value {
        let path = self.out_dir().join(name);
        let text = std::fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("the playbook wrote no {}: {e}", path.display()));
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
    }
}

/// Runs a command to its end or until `timeout`; on timeout kills it and panics with what it
/// printed so far.
pub fn run_with_timeout(mut command: Command, timeout: Duration) -> (Output, Duration) {
    let start = Instant::now();
    let mut child = command.spawn().expect("ansible-playbook starts");
    // Drain both pipes while waiting, so a chatty child never blocks on a full pipe.
    let mut out = child.stdout.take().unwrap();
    let mut err = child.stderr.take().unwrap();
    let out_reader = std::thread::spawn(move || {
        let mut v = Vec::new();
        let _ = out.read_to_end(&mut v);
        v
    });
    let err_reader = std::thread::spawn(move || {
        let mut v = Vec::new();
        let _ = err.read_to_end(&mut v);
        v
    });
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait for ansible-playbook") {
            break status;
        }
        if start.elapsed() > timeout {
            let _ = child.kill();
            let _ = child.wait();
            let stdout = out_reader.join().unwrap_or_default();
            let stderr = err_reader.join().unwrap_or_default();
            panic!(
                "ansible-playbook did not finish within {timeout:?}; killed.\nstdout:\n{}\nstderr:\n{}",
                String::from_utf8_lossy(&stdout),
                String::from_utf8_lossy(&stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let took = start.elapsed();
    let output = Output {
        status,
        stdout: out_reader.join().unwrap_or_default(),
        stderr: err_reader.join().unwrap_or_default(),
    };
    (output, took)
}

/// Panics with both streams unless the run succeeded.
pub fn assert_success(output: &Output) {
    assert!(
        output.status.success(),
        "ansible-playbook failed ({}):\nstdout:\n{}\nstderr:\n{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

/// A playbook shipped under tests/ansible/.
pub fn shipped_playbook(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/ansible")
        .join(name)
}
