//! The deployment files in `deploy/`: the systemd units pass `systemd-analyze verify` (when it
//! is installed; a small parser otherwise) and carry their hardening, the controller's unit
//! writes nothing beyond its state directory and `/etc/ppp`, the Containerfile builds a locked
//! release in one stage and runs it unprivileged in another, the cron entries never run as root.
//! No network, no systemd as PID 1 needed.

use std::path::{Path, PathBuf};
use std::process::Command;

/// Every unit in `deploy/systemd/`.
const UNITS: &[&str] = &[
    "wispctl-reconcile.service",
    "wispctl-apply.service",
    "wispctl-apply.timer",
    "wispctl-drift.service",
    "wispctl-drift.timer",
];

/// Where the units expect the binary; `verify` requires it to exist, so the copies it checks
/// point at the binary cargo built for this test instead.
const INSTALLED_BIN: &str = "/usr/local/bin/wispctl";

/// What every service must say, exactly (`CapabilityBoundingSet=` empty: no capability).
const HARDENING: &[(&str, &str)] = &[
    ("NoNewPrivileges", "yes"),
    ("ProtectSystem", "strict"),
    ("ProtectHome", "yes"),
    ("PrivateTmp", "yes"),
    ("PrivateDevices", "yes"),
    ("ProtectKernelTunables", "yes"),
    ("ProtectKernelModules", "yes"),
    ("ProtectKernelLogs", "yes"),
    ("ProtectControlGroups", "yes"),
    ("ProtectClock", "yes"),
    ("ProtectHostname", "yes"),
    ("RestrictNamespaces", "yes"),
    ("RestrictRealtime", "yes"),
    ("RestrictSUIDSGID", "yes"),
    ("LockPersonality", "yes"),
    ("MemoryDenyWriteExecute", "yes"),
    ("SystemCallArchitectures", "native"),
    ("RestrictAddressFamilies", "AF_UNIX AF_INET AF_INET6"),
    ("CapabilityBoundingSet", ""),
    ("UMask", "0077"),
    ("StateDirectory", "wispctl"),
    ("Environment", "WISPCTL_STATE_DIR=%S/wispctl"),
];

fn deploy_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy")
}

fn read(relative: &str) -> String {
    let path = deploy_dir().join(relative);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// A unit file's entries as systemd reads them: (section, key, value), in order.
#[derive(Debug)]
struct Unit {
    entries: Vec<(String, String, String)>,
}

impl Unit {
    /// Parses unit-file syntax strictly: every logical line (a trailing `\` continues it) is
    /// blank, a comment (`#`, `;`), a `[Section]` of a unit, service or timer, or `Key=Value`
    /// inside a section.
    fn parse(text: &str) -> Result<Unit, String> {
        const SECTIONS: &[&str] = &["Unit", "Service", "Timer", "Install"];
        let mut entries = Vec::new();
        let mut section: Option<String> = None;
        let mut lines = text.lines().enumerate();
        while let Some((i, raw)) = lines.next() {
            let mut line = raw.trim().to_string();
            if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
                continue;
            }
            while line.ends_with('\\') {
                line.pop();
                match lines.next() {
                    Some((_, next)) => line.push_str(next.trim()),
                    None => return Err(format!("line {}: continues past the end", i + 1)),
                }
            }
            if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
                if !SECTIONS.contains(&name) {
                    return Err(format!("line {}: unknown section [{name}]", i + 1));
                }
                section = Some(name.to_string());
                continue;
            }
            let Some((key, value)) = line.split_once('=') else {
                return Err(format!(
                    "line {}: neither a section nor Key=Value: {line}",
                    i + 1
                ));
            };
            let key = key.trim();
            let well_formed = key.chars().next().is_some_and(|c| c.is_ascii_uppercase())
                && key.chars().all(|c| c.is_ascii_alphanumeric());
            if !well_formed {
                return Err(format!("line {}: not a directive name: {key:?}", i + 1));
            }
            let Some(section) = &section else {
                return Err(format!("line {}: {key}= before any [Section]", i + 1));
            };
            entries.push((section.clone(), key.to_string(), value.trim().to_string()));
        }
        Ok(Unit { entries })
    }

    /// Every value of `key` in `section`, in order.
    fn values(&self, section: &str, key: &str) -> Vec<&str> {
        self.entries
            .iter()
            .filter(|(s, k, _)| s == section && k == key)
            .map(|(_, _, v)| v.as_str())
            .collect()
    }

    /// The value systemd uses for a single-valued key: the last one.
    fn last(&self, section: &str, key: &str) -> Option<&str> {
        self.values(section, key).last().copied()
    }
}

/// The hardening every service needs, as a list of what is missing or wrong (empty: fine).
fn hardening_problems(unit: &Unit) -> Vec<String> {
    let mut problems = Vec::new();
    for (key, want) in HARDENING {
        let values = unit.values("Service", key);
        if !values.contains(want) {
            problems.push(format!("{key}={want} (found {values:?})"));
        }
    }
    if !unit
        .values("Service", "SystemCallFilter")
        .contains(&"@system-service")
    {
        problems.push("SystemCallFilter=@system-service".into());
    }
    match unit.last("Service", "User") {
        Some(user) if !user.is_empty() && user != "root" && user != "0" => {}
        other => problems.push(format!("a non-root User= (found {other:?})")),
    }
    problems
}

/// `systemd-analyze` on PATH, if any.
fn systemd_analyze() -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join("systemd-analyze"))
        .find(|p| p.is_file())
}

/// Checks the units (file name, text): with `systemd-analyze verify` when it is installed,
/// otherwise with [`Unit::parse`] and the hardening of every service. `Ok` carries what
/// `verify` printed that names none of the units (environment notes, shown, not failures).
///
/// `verify` exits 0 on a misspelt directive or an unparsable value (systemd ignores them with
/// a warning: the unit would start without that hardening), so any stderr line naming one of
/// the units is an error too, as is a non-zero exit (a missing or non-executable ExecStart).
fn check_units(units: &[(&str, String)]) -> Result<Vec<String>, String> {
    let Some(analyze) = systemd_analyze() else {
        println!("skip: systemd-analyze is not on PATH; checking the units with the parser");
        let mut problems = Vec::new();
        for (name, text) in units {
            match Unit::parse(text) {
                Err(e) => problems.push(format!("{name}: {e}")),
                Ok(unit) if name.ends_with(".service") => {
                    for p in hardening_problems(&unit) {
                        problems.push(format!("{name}: missing {p}"));
                    }
                }
                Ok(_) => {}
            }
        }
        return if problems.is_empty() {
            Ok(Vec::new())
        } else {
            Err(problems.join("\n"))
        };
    };
    let dir = tempfile::tempdir().expect("temporary folder");
    let mut paths = Vec::new();
    for (name, text) in units {
        let path = dir.path().join(name);
        let text = text.replace(INSTALLED_BIN, env!("CARGO_BIN_EXE_wispctl"));
        std::fs::write(&path, text).expect("write a unit copy");
        paths.push(path);
    }
    let out = Command::new(&analyze)
        .arg("verify")
        .arg("--man=no")
        .args(&paths)
        .current_dir(dir.path())
        .output()
        .expect("run systemd-analyze verify");
    let stderr = String::from_utf8_lossy(&out.stderr);
    let (errors, notes): (Vec<&str>, Vec<&str>) = stderr
        .lines()
        .filter(|l| !l.trim().is_empty())
        .partition(|l| units.iter().any(|(name, _)| l.contains(name)));
    if !out.status.success() || !errors.is_empty() {
        return Err(format!(
            "systemd-analyze verify: {}; stderr:\n{stderr}",
            out.status
        ));
    }
    Ok(notes.into_iter().map(String::from).collect())
}

fn all_units() -> Vec<(&'static str, String)> {
    UNITS
        .iter()
        .map(|name| (*name, read(&format!("systemd/{name}"))))
        .collect()
}

#[test]
fn systemd_units_verify_and_are_hardened() {
    let units = all_units();
    match check_units(&units) {
        Ok(notes) => {
            for note in notes {
                println!("systemd-analyze (not about these units): {note}");
            }
        }
        Err(e) => panic!("{e}"),
    }
    for (name, text) in &units {
        let unit = Unit::parse(text).unwrap_or_else(|e| panic!("{name}: {e}"));
        if name.ends_with(".service") {
            let problems = hardening_problems(&unit);
            assert!(problems.is_empty(), "{name} lacks: {problems:#?}");
            let exec = unit.last("Service", "ExecStart").unwrap_or_default();
            assert!(
                exec.starts_with(INSTALLED_BIN),
                "{name}: ExecStart={exec} does not run {INSTALLED_BIN}"
            );
        }
    }
}

#[test]
fn a_misspelt_directive_or_a_missing_binary_fails_the_check() {
    let good = read("systemd/wispctl-reconcile.service");
    assert!(good.contains("\nNoNewPrivileges=yes\n"));
    let misspelt = good.replace("\nNoNewPrivileges=yes\n", "\nNoNewPrivilegs=yes\n");
    let err = check_units(&[("wispctl-broken.service", misspelt)])
        .expect_err("a misspelt directive must fail the check");
    println!("as expected: {err}");
    assert!(err.contains("NoNewPrivileg"), "{err}");

    let no_equals = good.replace("\nPrivateTmp=yes\n", "\nPrivateTmp yes\n");
    let err = check_units(&[("wispctl-broken.service", no_equals)])
        .expect_err("a line without '=' must fail the check");
    println!("as expected: {err}");

    if systemd_analyze().is_some() {
        let missing = good.replace(INSTALLED_BIN, "/nonexistent/wispctl");
        let err = check_units(&[("wispctl-broken.service", missing)])
            .expect_err("a missing ExecStart binary must fail verify");
        println!("as expected: {err}");
    }
}

#[test]
fn the_controller_runs_unprivileged_and_writes_only_its_state_and_etc_ppp() {
    let unit = Unit::parse(&read("systemd/wispctl-reconcile.service")).unwrap();
    let one = |key: &str| unit.last("Service", key).unwrap_or_default().to_string();
    assert_eq!(one("NoNewPrivileges"), "yes");
    assert_eq!(one("ProtectSystem"), "strict");
    assert!(!["", "root", "0"].contains(&one("User").as_str()));
    assert!(!["", "root", "0"].contains(&one("Group").as_str()));
    assert_eq!(one("StateDirectory"), "wispctl");
    assert_eq!(one("StateDirectoryMode"), "0700");
    assert!(matches!(one("Type").as_str(), "simple" | "exec"));
    assert_eq!(one("Restart"), "on-failure");
    assert!(!one("RestartSec").is_empty());
    assert_eq!(one("KillSignal"), "SIGTERM");
    assert!(!one("TimeoutStopSec").is_empty() && one("TimeoutStopSec") != "infinity");
    assert_eq!(one("ExecReload"), "/bin/kill -HUP $MAINPID");
    assert!(one("WorkingDirectory").starts_with('/'));
    let exec = one("ExecStart");
    assert!(exec.contains(" reconcile "), "{exec}");
    assert!(
        exec.contains("--listen 127.0.0.1:"),
        "metrics on loopback: {exec}"
    );
    // Secrets from a root-only file or credentials, never inline.
    assert!(
        !unit.values("Service", "EnvironmentFile").is_empty()
            || !unit.values("Service", "LoadCredential").is_empty()
    );
    for env in unit.values("Service", "Environment") {
        assert!(!env.contains("HASH_KEY") && !env.contains("PASSWORD") && !env.contains("TOKEN"));
    }
    // Nothing writable beyond /etc/ppp (the state directory is writable by StateDirectory=).
    let writable: Vec<&str> = unit
        .values("Service", "ReadWritePaths")
        .iter()
        .flat_map(|v| v.split_whitespace())
        .collect();
    assert!(!writable.is_empty(), "a pppd host needs /etc/ppp");
    for path in writable {
        let path = path.trim_start_matches(['-', '+']);
        assert!(
            path == "/etc/ppp" || path.starts_with("/etc/ppp/"),
            "ReadWritePaths lists {path}, beyond /etc/ppp"
        );
    }
}

#[test]
fn one_shot_runs_are_timed_and_drift_found_is_not_a_failure() {
    let apply = Unit::parse(&read("systemd/wispctl-apply.service")).unwrap();
    assert_eq!(apply.last("Service", "Type"), Some("oneshot"));
    let exec = apply.last("Service", "ExecStart").unwrap();
    assert!(exec.contains(" apply --auto-approve --report "), "{exec}");
    let drift = Unit::parse(&read("systemd/wispctl-drift.service")).unwrap();
    assert_eq!(drift.last("Service", "Type"), Some("oneshot"));
    assert!(
        drift
            .last("Service", "ExecStart")
            .unwrap()
            .ends_with(" drift --notify")
    );
    assert!(
        drift
            .values("Service", "SuccessExitStatus")
            .iter()
            .any(|v| v.split_whitespace().any(|c| c == "2"))
    );
    assert!(drift.values("Service", "ReadWritePaths").is_empty());
    for name in ["wispctl-apply.timer", "wispctl-drift.timer"] {
        let timer = Unit::parse(&read(&format!("systemd/{name}"))).unwrap();
        assert!(timer.last("Timer", "OnCalendar").is_some(), "{name}");
        assert!(
            timer.last("Timer", "RandomizedDelaySec").is_some(),
            "{name}"
        );
        assert_eq!(timer.last("Timer", "Persistent"), Some("true"), "{name}");
        assert_eq!(
            timer.last("Install", "WantedBy"),
            Some("timers.target"),
            "{name}"
        );
    }
}

#[test]
fn every_flag_the_units_pass_is_one_the_binary_takes() {
    for name in UNITS.iter().filter(|n| n.ends_with(".service")) {
        let unit = Unit::parse(&read(&format!("systemd/{name}"))).unwrap();
        let exec = unit.last("Service", "ExecStart").unwrap();
        let args: Vec<&str> = exec.split_whitespace().skip(1).collect();
        let sub = args.iter().find(|a| !a.starts_with('-')).unwrap();
        let out = Command::new(env!("CARGO_BIN_EXE_wispctl"))
            .args([sub, "--help"])
            .output()
            .expect("run wispctl");
        let help = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{name}: wispctl {sub} --help: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        for flag in args.iter().filter(|a| a.starts_with("--")) {
            let flag = flag.split('=').next().unwrap();
            assert!(
                help.split(|c: char| !(c.is_ascii_alphanumeric() || c == '-'))
                    .any(|w| w == flag),
                "{name}: `wispctl {sub}` does not take {flag}"
            );
        }
    }
}

/// The Containerfile's instructions, continuation lines joined, comments dropped.
fn container_instructions(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut current = String::new();
    for line in text.lines() {
        let trimmed = line.trim();
        if current.is_empty() && (trimmed.is_empty() || trimmed.starts_with('#')) {
            continue;
        }
        match trimmed.strip_suffix('\\') {
            Some(part) => {
                current.push_str(part);
                current.push(' ');
            }
            None => {
                current.push_str(trimmed);
                out.push(std::mem::take(&mut current));
            }
        }
    }
    out
}

#[test]
fn the_containerfile_builds_locked_in_one_stage_and_runs_unprivileged_in_another() {
    let instructions = container_instructions(&read("Containerfile"));
    let word = |i: &String| {
        i.split_whitespace()
            .next()
            .unwrap_or_default()
            .to_uppercase()
    };
    let froms: Vec<usize> = (0..instructions.len())
        .filter(|&i| word(&instructions[i]) == "FROM")
        .collect();
    assert!(froms.len() >= 2, "multi-stage: {froms:?}");
    let build = instructions
        .iter()
        .find(|i| word(i) == "RUN" && i.contains("cargo build"))
        .expect("a cargo build");
    assert!(build.contains("--locked"), "{build}");
    assert!(build.contains("--release"), "{build}");
    let last_stage = &instructions[*froms.last().unwrap()..];
    let user = last_stage
        .iter()
        .rev()
        .find(|i| word(i) == "USER")
        .expect("a USER in the runtime stage");
    let who = user.split_whitespace().nth(1).unwrap_or_default();
    let name = who.split(':').next().unwrap_or_default();
    assert!(!["root", "0", ""].contains(&name), "{user}");
    assert!(last_stage.iter().any(|i| i == "EXPOSE 9464"));
    assert!(
        last_stage
            .iter()
            .any(|i| i.starts_with("ENTRYPOINT") && i.contains("\"wispctl\""))
    );
}

#[test]
fn cron_entries_run_as_the_wispctl_account() {
    let text = read("cron/wispctl");
    let mut jobs = 0;
    for line in text.lines().map(str::trim) {
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let fields: Vec<&str> = line.split_whitespace().collect();
        if fields[0].contains('=') {
            continue; // SHELL=, PATH=, WISPCTL_STATE_DIR=
        }
        assert!(fields.len() > 6, "schedule, user, command: {line}");
        assert_eq!(fields[5], "wispctl", "{line}");
        assert!(!line.contains('%'), "cron turns % into a newline: {line}");
        jobs += 1;
    }
    assert_eq!(jobs, 2);
}
