//! The airOS SSH client and command set against real third-party peers: OpenSSH's sshd
//! restricted to what old airOS offers, with busybox `ash` as the login shell in a chroot, and
//! dropbear as the jump host (see `airos_peer`). Needs root and the packages tests/setup.sh
//! installs; without them each test prints why and passes, except under `CI=true`, where it
//! fails.

mod airos_peer;

use std::path::{Path, PathBuf};
use std::time::Duration;

use airos_peer::{AntennaFiles, Peers};
use wispctl::kinds::airos::commands::{self, Files};
use wispctl::secret::Secret;
use wispctl::ssh::{Credential, HostKeyPolicy, KnownHosts, Session, SshError, Target};

/// A known-hosts file in a fresh folder, holding every peer's fingerprint.
fn pinned(peers: &Peers) -> (tempfile::TempDir, KnownHosts) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("known_hosts");
    std::fs::write(&path, peers.known_hosts_text()).unwrap();
    let known = KnownHosts::load(&path).unwrap();
    (dir, known)
}

async fn connect(target: &Target, known: &KnownHosts) -> Session {
    let (session, index) = Session::connect(target, known, HostKeyPolicy::Strict)
        .await
        .unwrap_or_else(|e| panic!("connect to {}: {e}", target.endpoint));
    assert_eq!(index, 0);
    session
}

async fn read(session: &Session) -> Files {
    read_all(session).await.files
}

async fn read_all(session: &Session) -> commands::ReadOut {
    let out = session.exec(commands::READ, None).await.unwrap();
    assert!(
        out.success(),
        "READ exited {}: {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.stderr.is_empty(),
        "READ wrote to stderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    commands::parse_read(&out.stdout).unwrap()
}

/// What READ must return for an antenna started with `files`.
fn assert_read_matches(read: &Files, files: &AntennaFiles) {
    assert_eq!(
        read.get(commands::SYSTEM_CFG),
        Some(&files.system_cfg[..]),
        "system.cfg"
    );
    assert_eq!(
        read.get(commands::RUNNING_CFG),
        files.running_cfg.as_deref(),
        "running.cfg"
    );
    assert_eq!(
        read.get(commands::BOARD_INFO),
        Some(&files.board_info[..]),
        "board.info"
    );
    assert_eq!(read.get(commands::BOARD_INFO_PROC), None);
    assert_eq!(
        read.get(commands::VERSION),
        Some(&files.version[..]),
        "version"
    );
}

/// No `.wispctl.*` temporary file is left in an antenna's /tmp.
fn assert_no_temp_files(dir: &Path) {
    let leftovers: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(".wispctl"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

fn wrong(user: &str) -> Credential {
    Credential {
        user: user.to_string(),
        password: Secret::new("not-the-password"),
    }
}

/// Every path under `root` whose name contains `needle` (not following symlinks).
fn find_named(root: &Path, needle: &str) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for e in entries.flatten() {
            let path = e.path();
            if e.file_name().to_string_lossy().contains(needle) {
                found.push(path.clone());
            }
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                stack.push(path);
            }
        }
    }
    found
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn legacy_target_reads_the_files_byte_for_byte_and_modern_one_is_refused() {
    let mut files = AntennaFiles::default_for(0);
    // Bytes that are not UTF-8, no trailing newline, a CR: READ must keep them all.
    files
        .system_cfg
        .extend_from_slice(b"wireless.1.ssid=caf\xe9\r\nlast.line=no-newline");
    files.running_cfg = None;
    let Some(peers) = Peers::start_with(vec![files.clone()]) else {
        return;
    };
    let a = peers.antenna(0);
    let (_dir, known) = pinned(&peers);
    let session = connect(&a.target(), &known).await;
    let files_read = read(&session).await;
    assert_read_matches(&files_read, &files);
    assert_eq!(a.system_cfg().as_deref(), Some(&files.system_cfg[..]));
    // The login shell is busybox ash in the chroot, like airOS.
    let out = session
        .exec("readlink /bin/sh; readlink /bin/ps", None)
        .await
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "/bin/busybox\n/bin/busybox\n"
    );
    session.close().await;

    let mut modern = a.target();
    modern.legacy = false;
    let err = Session::connect(&modern, &known, HostKeyPolicy::Strict)
        .await
        .expect_err("a non-legacy target shares no algorithm with old airOS");
    match &err {
        SshError::Connect { host, reason } => {
            assert_eq!(host, &a.endpoint().to_string());
            assert!(reason.contains("no common"), "{reason}");
            assert!(reason.contains("diffie-hellman-group14-sha1"), "{reason}");
            assert!(reason.contains("legacy: true"), "{reason}");
        }
        other => panic!("expected a connect error, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn read_works_through_the_dropbear_jump_host() {
    let Some(peers) = Peers::start(2) else {
        return;
    };
    let (_dir, known) = pinned(&peers);
    for i in 0..2 {
        let a = peers.antenna(i);
        let target = a.target_via(peers.jump());
        let session = connect(&target, &known).await;
        assert_read_matches(&read(&session).await, &AntennaFiles::default_for(i));
        session.close().await;
    }
    // Both logins came through the tunnel, so from 127.0.0.1, not from the antenna's address.
    for i in 0..2 {
        let log = peers.antenna(i).sshd_log();
        assert!(
            log.contains(&format!(
                "Accepted password for {} from 127.0.0.1",
                peers.antenna(i).user
            )),
            "{log}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn credentials_are_tried_in_order() {
    let Some(peers) = Peers::start(1) else {
        return;
    };
    let a = peers.antenna(0);
    let (_dir, known) = pinned(&peers);

    let mut target = a.target();
    target.credentials = vec![wrong(&a.user), a.credential()];
    let (session, index) = Session::connect(&target, &known, HostKeyPolicy::Strict)
        .await
        .unwrap();
    assert_eq!(index, 1);
    let out = session.exec("echo ok", None).await.unwrap();
    assert_eq!(out.stdout, b"ok\n");
    session.close().await;

    // A wrong user name first (sshd answers it like a wrong password), then the right login.
    target.credentials = vec![wrong("ubnt"), wrong(&a.user), a.credential()];
    let (session, index) = Session::connect(&target, &known, HostKeyPolicy::Strict)
        .await
        .unwrap();
    assert_eq!(index, 2);
    session.close().await;

    target.credentials = vec![wrong(&a.user), wrong("ubnt")];
    match Session::connect(&target, &known, HostKeyPolicy::Strict).await {
        Err(SshError::AuthFailed { host, tried }) => {
            assert_eq!(host, a.endpoint().to_string());
            assert_eq!(tried, 2);
        }
        Err(other) => panic!("expected AuthFailed, got {other}"),
        Ok(_) => panic!("wrong passwords were accepted"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn host_keys_are_pinned_checked_and_recorded_on_request() {
    let Some(mut peers) = Peers::start(1) else {
        return;
    };
    let (dir, known) = pinned(&peers);
    let endpoint = peers.antenna(0).endpoint();
    let old = peers.antenna(0).fingerprint.clone();
    let new = peers.antenna_mut(0).regenerate_host_key();
    assert_ne!(old, new);
    let a = peers.antenna(0);
    let logins_before = a.sshd_log().matches("Accepted password").count();
    let pinned_text = std::fs::read_to_string(dir.path().join("known_hosts")).unwrap();

    for policy in [HostKeyPolicy::Strict, HostKeyPolicy::TrustOnFirstUse] {
        match Session::connect(&a.target(), &known, policy).await {
            Err(SshError::HostKeyChanged {
                host,
                expected,
                got,
                ..
            }) => {
                assert_eq!(host, endpoint.to_string());
                assert_eq!(expected, old);
                assert_eq!(got, new);
            }
            Err(other) => panic!("{policy:?}: expected HostKeyChanged, got {other}"),
            Ok(_) => panic!("{policy:?}: a changed host key was accepted"),
        }
    }
    // Refused before any login: sshd saw no password, and the pin is untouched.
    let log = a.sshd_log();
    assert_eq!(log.matches("Accepted password").count(), logins_before);
    assert!(!log.contains("Failed password"), "{log}");
    assert_eq!(
        std::fs::read_to_string(dir.path().join("known_hosts")).unwrap(),
        pinned_text
    );

    // An empty table: unknown under Strict; trusted in memory under trust-on-first-use, and
    // in the file only once recorded (what apply does).
    let fresh_dir = tempfile::tempdir().unwrap();
    let fresh_path = fresh_dir.path().join("known_hosts");
    let fresh = KnownHosts::load(&fresh_path).unwrap();
    match Session::connect(&a.target(), &fresh, HostKeyPolicy::Strict).await {
        Err(SshError::HostKeyUnknown {
            host, fingerprint, ..
        }) => {
            assert_eq!(host, endpoint.to_string());
            assert_eq!(fingerprint, new);
        }
        Err(other) => panic!("expected HostKeyUnknown, got {other}"),
        Ok(_) => panic!("an unknown host key was accepted under Strict"),
    }
    assert_eq!(fresh.get(&endpoint), None);
    assert!(!fresh_path.exists());
    let (session, _) = Session::connect(&a.target(), &fresh, HostKeyPolicy::TrustOnFirstUse)
        .await
        .unwrap();
    session.close().await;
    assert!(
        !fresh_path.exists(),
        "trusting a key wrote the known-hosts file"
    );
    let trusted = fresh.trusted();
    assert_eq!(
        trusted
            .iter()
            .map(|t| (t.endpoint.clone(), t.fingerprint.clone()))
            .collect::<Vec<_>>(),
        vec![(endpoint.clone(), new.clone())]
    );
    assert_eq!(fresh.record_trusted(&trusted).unwrap(), trusted);
    assert_eq!(fresh.get(&endpoint), Some(new.clone()));
    let reloaded = KnownHosts::load(&fresh_path).unwrap();
    assert_eq!(reloaded.get(&endpoint), Some(new.clone()));
    // Once recorded, Strict is enough.
    let session = connect(&a.target(), &reloaded).await;
    session.close().await;

    // The operator accepts the change explicitly: the old table works again.
    known.accept(&endpoint, &new).unwrap();
    let session = connect(&a.target(), &known).await;
    session.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn write_persist_and_bridge_restart_on_busybox() {
    let Some(peers) = Peers::start(1) else {
        return;
    };
    let a = peers.antenna(0);
    let (_dir, known) = pinned(&peers);
    let first = a.wait_bridge_starts(1, Duration::from_secs(5));
    assert_eq!(first.len(), 1);
    let old_uri = "wss://uisp.example.net:443+KEY-0+allowSelfSignedCertificate";
    assert_eq!(first[0].source, "running.cfg");
    assert_eq!(first[0].uri, old_uri);

    let new_uri = "wss://uisp.example.org:443+NEWKEY+allowSelfSignedCertificate";
    let system = String::from_utf8(a.system_cfg().unwrap())
        .unwrap()
        .replace(old_uri, new_uri)
        .into_bytes();
    let mut running = system.clone();
    running.extend_from_slice(b"runtime.only=1\n");

    let session = connect(&a.target(), &known).await;
    for (command, content) in [
        (commands::write_system(system.len()), &system),
        (commands::write_running(running.len()), &running),
    ] {
        let out = session.exec(&command, Some(content)).await.unwrap();
        assert!(
            out.success() && out.stdout.is_empty() && out.stderr.is_empty(),
            "{command}: {out:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    assert_eq!(a.system_cfg(), Some(system.clone()));
    assert_eq!(a.running_cfg(), Some(running.clone()));
    assert_no_temp_files(&a.dir);

    let booted = AntennaFiles::default_for(0).system_cfg;
    assert_eq!(a.flash(), Some(booted.clone()));
    // By bare name cfgmtd is not on the session's PATH (as on old dropbear): never found.
    let out = session.exec("cfgmtd -w -p /etc/", None).await.unwrap();
    assert_eq!(out.status, 127, "{out:?}");
    assert_eq!(a.flash(), Some(booted.clone()));
    let out = session.exec(commands::PERSIST, None).await.unwrap();
    assert!(
        out.success(),
        "{out:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(a.flash(), Some(system.clone()));
    assert_eq!(a.cfgmtd_log(), vec!["-w -p /etc/".to_string()]);
    // Read back through cfgmtd's own stdout, byte for byte.
    let out = session.exec(commands::READ_FLASH, None).await.unwrap();
    assert!(out.success() && out.stderr.is_empty(), "{out:?}");
    assert_eq!(out.stdout, system);

    let ps = session.exec(commands::PS, None).await.unwrap();
    assert!(ps.success());
    let ps = String::from_utf8(ps.stdout).unwrap();
    let pids = commands::bridge_pids(&ps);
    assert_eq!(pids, vec![first[0].pid], "ps printed:\n{ps}");
    // The supervisor names /bin/udapi-bridge in its arguments, and is never picked.
    assert!(
        ps.lines()
            .any(|l| l.contains("supervise.sh /bin/udapi-bridge")),
        "{ps}"
    );

    // The bridge started before the writes' mark: on the same boot-relative clock.
    let stat = session
        .exec(&commands::bridge_stat(pids[0]), None)
        .await
        .unwrap();
    let started = commands::parse_start_ticks(&stat.stdout).expect("a /proc/PID/stat line");
    let all = read_all(&session).await;
    let mark = all
        .files
        .get(commands::CHANGED_MARK)
        .and_then(commands::parse_start_ticks)
        .expect("the writes left their mark");
    assert!(started < mark, "bridge {started}, mark {mark}");
    assert!(all.cfgmtd);
    assert_eq!(commands::bridge_pids(&all.ps), pids);

    let out = session.exec(&commands::kill(pids[0]), None).await.unwrap();
    assert!(
        out.success(),
        "kill: {out:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let starts = a.wait_bridge_starts(2, Duration::from_secs(10));
    assert_eq!(starts.len(), 2, "the supervisor did not respawn the bridge");
    assert_eq!(starts[1].source, "running.cfg");
    assert_eq!(starts[1].uri, new_uri);
    assert_ne!(starts[1].pid, starts[0].pid);
    let ps = session.exec(commands::PS, None).await.unwrap();
    let ps = String::from_utf8(ps.stdout).unwrap();
    assert_eq!(commands::bridge_pids(&ps), vec![starts[1].pid], "{ps}");
    let stat = session
        .exec(&commands::bridge_stat(starts[1].pid), None)
        .await
        .unwrap();
    let restarted = commands::parse_start_ticks(&stat.stdout).unwrap();
    assert!(restarted >= mark, "respawned {restarted}, mark {mark}");

    // Re-reading both files shows exactly what was sent.
    let files = read(&session).await;
    assert_eq!(files.get(commands::SYSTEM_CFG), Some(&system[..]));
    assert_eq!(files.get(commands::RUNNING_CFG), Some(&running[..]));
    session.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_file_content_stays_inert_on_busybox() {
    let Some(peers) = Peers::start(1) else {
        return;
    };
    let a = peers.antenna(0);
    let (_dir, known) = pinned(&peers);
    let hostile: &[u8] = b"aaa.status=disabled\n\
        quote.single=it's '; touch /tmp/pwned_sq; '\n\
        quote.double=say \"hi\"; \"$(touch /tmp/pwned_dq)\"\n\
        semi=a; touch /tmp/pwned_semi; b\n\
        subst=$(touch /tmp/pwned)\n\
        backtick=`touch /tmp/pwned_bt`\n\
        ; rm -rf / ; touch /tmp/pwned_rm\n\
        && touch /tmp/pwned_and || touch /tmp/pwned_or\n\
        var=${IFS}$HOME$(id>/tmp/pwned_id)\n\
        heredoc=EOF\nEOF\n\
        unms.uri=wss://x:443+K';$(touch /tmp/pwned2)\n\
        backslash=\\\n\
        ctrl=\x01\x1b[31m\x7f\xff\n\
        no.newline.at.end=$(touch /tmp/pwned_end)";
    let session = connect(&a.target(), &known).await;
    for command in [
        commands::write_system(hostile.len()),
        commands::write_running(hostile.len()),
    ] {
        let out = session.exec(&command, Some(hostile)).await.unwrap();
        assert!(
            out.success() && out.stderr.is_empty(),
            "{command}: {out:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let out = session.exec(commands::PERSIST, None).await.unwrap();
    assert!(out.success(), "{out:?}");
    let files = read(&session).await;
    session.close().await;

    assert_eq!(a.system_cfg().as_deref(), Some(hostile));
    assert_eq!(a.running_cfg().as_deref(), Some(hostile));
    assert_eq!(a.flash().as_deref(), Some(hostile));
    assert_eq!(files.get(commands::SYSTEM_CFG), Some(hostile));
    assert_eq!(files.get(commands::RUNNING_CFG), Some(hostile));

    let mut marked = find_named(&a.dir, "pwned");
    let chroot = a.chroot();
    assert!(
        chroot.join("bin/busybox").is_file(),
        "the chroot is visible"
    );
    for sub in [
        "bin", "sbin", "usr", "etc", "root", "var", "home", "persist", "tmp",
    ] {
        marked.extend(find_named(&chroot.join(sub), "pwned"));
    }
    assert!(marked.is_empty(), "marker files appeared: {marked:?}");
}

// ---------------------------------------------------------------------------------------------
// The whole provider, through the real binary, against the real peers
// ---------------------------------------------------------------------------------------------

const NEW_URI: &str = "wss://uisp.nuevo.example:443+InteropMasterKey0123456789abcdefghijklmnopqrstuv+allowSelfSignedCertificate";

/// An antenna still on the old server, whose other lines include text that looks like shell.
fn old_files(i: usize) -> AntennaFiles {
    let mut f = AntennaFiles::default_for(i);
    let mut system = f.system_cfg.clone();
    system.extend_from_slice(
        b"ppp.1.password=pw';$(touch /tmp/pwned_cfg)`id`\nwireless.1.ssid=Tomatl\xe1n AP\n",
    );
    f.running_cfg = Some(system.clone());
    f.system_cfg = system;
    f
}

/// A desired-state folder for `peers`: one group, every antenna's login as a candidate (so all
/// but the first antenna see a wrong credential first), the dropbear jump host, the known-hosts
/// file pinned, the connection string from a file.
fn desired_for(peers: &Peers, dir: &Path, uri: &str) {
    std::fs::create_dir_all(dir.join("airos")).unwrap();
    std::fs::write(dir.join("known_hosts"), peers.known_hosts_text()).unwrap();
    std::fs::write(dir.join("uri"), uri).unwrap();
    let mut credentials = Vec::new();
    for a in peers.antennas() {
        let file = format!("pw-{}", a.index());
        std::fs::write(dir.join(&file), &a.password).unwrap();
        credentials.push(serde_json::json!({ "user": a.user, "password": { "file": file } }));
    }
    let j = peers.jump();
    std::fs::write(dir.join("jump-pw"), &j.password).unwrap();
    let inventory = serde_json::json!({
        "antenna_groups": { "campo": {
            "legacy": true,
            "credentials": credentials,
            "jump": {
                "host": j.host,
                "port": j.port,
                "credentials": [{ "user": j.user, "password": { "file": "jump-pw" } }],
            },
            "known_hosts": "known_hosts",
            "connect_timeout_secs": 10,
            "command_timeout_secs": 20,
        } },
    });
    std::fs::write(
        dir.join("inventory.yaml"),
        serde_json::to_string_pretty(&inventory).unwrap(),
    )
    .unwrap();
    let antennas: Vec<_> = peers
        .antennas()
        .iter()
        .map(|a| serde_json::json!({ "host": a.host, "port": a.port }))
        .collect();
    let airos = serde_json::json!({
        "group": "campo",
        "connection": { "secret": { "file": "../uri" } },
        "rollout": { "canary": 1, "concurrency": 4 },
        "antennas": antennas,
    });
    std::fs::write(
        dir.join("airos/campo.yaml"),
        serde_json::to_string_pretty(&airos).unwrap(),
    )
    .unwrap();
}

fn wispctl(dir: &Path, state: &Path, args: &[&str]) -> (i32, String) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_wispctl"))
        .arg("-C")
        .arg(dir)
        .arg("--state-dir")
        .arg(state)
        .args(args)
        .env("NO_COLOR", "1")
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.code().unwrap_or(-1), text)
}

fn other_lines(bytes: &[u8]) -> Vec<&[u8]> {
    bytes
        .split_inclusive(|&b| b == b'\n')
        .filter(|l| !l.starts_with(b"unms."))
        .collect()
}

#[test]
fn wispctl_apply_fixes_real_antennas_through_the_jump_host() {
    let Some(mut peers) = Peers::start_with(vec![old_files(0), old_files(1)]) else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let (dir, state) = (tmp.path().join("desired"), tmp.path().join("state"));
    desired_for(&peers, &dir, NEW_URI);
    let before: Vec<AntennaFiles> = vec![old_files(0), old_files(1)];

    let (code, out) = wispctl(&dir, &state, &["plan", "--detailed-exitcode"]);
    assert_eq!(code, 2, "{out}");
    for a in peers.antennas() {
        assert!(
            out.contains(&format!("~ airos.campo[\"{}\"] will be updated", a.host)),
            "{out}"
        );
    }
    assert!(
        out.contains("host: uisp.example.net -> uisp.nuevo.example"),
        "{out}"
    );

    let (code, out) = wispctl(&dir, &state, &["apply", "--auto-approve"]);
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains("Apply: 2 applied, 0 failed, 0 skipped."),
        "{out}"
    );
    for (a, was) in peers.antennas().iter().zip(&before) {
        for (name, now, old) in [
            ("system.cfg", a.system_cfg().unwrap(), &was.system_cfg),
            (
                "running.cfg",
                a.running_cfg().unwrap(),
                was.running_cfg.as_ref().unwrap(),
            ),
        ] {
            let text = String::from_utf8_lossy(&now).into_owned();
            assert_eq!(text.matches("unms.uri=").count(), 1, "{} {name}", a.host);
            assert!(
                text.contains(&format!("unms.uri={NEW_URI}\n")),
                "{} {name}",
                a.host
            );
            assert_eq!(
                other_lines(&now),
                other_lines(old),
                "{} {name}: lines not owned changed",
                a.host
            );
        }
        assert_eq!(a.flash(), a.system_cfg(), "{}: persisted", a.host);
        let log = a.cfgmtd_log();
        assert_eq!(
            log.iter().filter(|l| *l == "-w -p /etc/").count(),
            1,
            "{log:?}"
        );
        assert!(
            log.iter()
                .all(|l| l == "-w -p /etc/" || l == "-r -f /proc/self/fd/1"),
            "{log:?}"
        );
        let starts = a.wait_bridge_starts(2, Duration::from_secs(10));
        let last = starts.last().unwrap();
        assert_eq!(
            (last.source.as_str(), last.uri.as_str()),
            ("running.cfg", NEW_URI),
            "{}",
            a.host
        );
        assert!(find_named(&a.dir, "pwned").is_empty());
        assert!(find_named(&a.chroot(), "pwned").is_empty());
    }
    for secret in [
        NEW_URI,
        "InteropMasterKey",
        &peers.antenna(0).password,
        &peers.jump().password,
    ] {
        assert!(!out.contains(secret), "apply printed a secret");
    }
    // The second antenna needed the second credential: remembered as a keyed hash, never a
    // password.
    let remembered = std::fs::read_to_string(state.join("airos/campo.credentials.json")).unwrap();
    let saved: std::collections::BTreeMap<String, String> =
        serde_json::from_str(&remembered).unwrap();
    assert_eq!(saved.len(), 2, "{remembered}");
    assert_ne!(saved[&peers.antenna(0).host], saved[&peers.antenna(1).host]);
    for a in peers.antennas() {
        assert!(!remembered.contains(&a.password));
    }

    let (code, out) = wispctl(&dir, &state, &["plan", "--detailed-exitcode"]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("airos.campo: up to date"), "{out}");

    // A changed host key: that antenna is refused, named, exit 1; the other is still read.
    peers.antenna_mut(0).regenerate_host_key();
    let (code, out) = wispctl(&dir, &state, &["plan"]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("HOST KEY CHANGED"), "{out}");
    assert!(out.contains(&peers.antenna(0).fingerprint), "{out}");
    assert!(
        !out.contains(&format!(
            "{}:{}: HOST",
            peers.antenna(1).host,
            peers.antenna(1).port
        )),
        "{out}"
    );
}

#[test]
fn a_hostile_connection_string_never_reaches_the_peer() {
    let Some(peers) = Peers::start_with(vec![old_files(0)]) else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let (dir, state) = (tmp.path().join("desired"), tmp.path().join("state"));
    for hostile in [
        "wss://uisp.example.org:443+abc';$(touch${IFS}/tmp/pwned)",
        "wss://uisp.example.org:443+InteropMasterKey0123456789abcdefghijklmnopqrstuv\nunms.status=disabled",
        "wss://x;touch${IFS}/tmp/pwned:443+InteropMasterKey0123456789abcdefghijklmnopqrstuv",
        "wss://uisp.example.org:443+`touch${IFS}/tmp/pwned`\"",
    ] {
        desired_for(&peers, &dir, hostile);
        for args in [&["plan"][..], &["apply", "--auto-approve"][..]] {
            let (code, out) = wispctl(&dir, &state, args);
            assert_eq!(code, 1, "{out}");
            assert!(out.contains("airos/campo.yaml:"), "{out}");
            assert!(out.contains("invalid connection string"), "{out}");
            assert!(!out.contains("pwned"), "the value was echoed: {out}");
        }
    }
    let a = peers.antenna(0);
    assert!(
        !a.sshd_log().contains("Accepted password"),
        "{}",
        a.sshd_log()
    );
    assert_eq!(a.system_cfg(), Some(old_files(0).system_cfg));
    assert!(find_named(&a.dir, "pwned").is_empty());
    assert!(find_named(&a.chroot(), "pwned").is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_short_write_is_never_installed_on_busybox() {
    // What a dropped link leaves: `cat` sees an early end of input and exits 0; the size check
    // keeps the half file out, and the temporary file is removed.
    let Some(peers) = Peers::start(1) else {
        return;
    };
    let a = peers.antenna(0);
    let (_dir, known) = pinned(&peers);
    let before = a.system_cfg().unwrap();
    let session = connect(&a.target(), &known).await;
    let half = b"aaa.status=disabled\nunms.uri=wss://cut";
    let out = session
        .exec(&commands::write_system(half.len() + 100), Some(half))
        .await
        .unwrap();
    assert_eq!(out.status, 1, "{out:?}");
    assert_eq!(a.system_cfg(), Some(before.clone()));
    let out = session
        .exec(&commands::write_system(half.len()), Some(half))
        .await
        .unwrap();
    assert!(
        out.success(),
        "{out:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(a.system_cfg().as_deref(), Some(&half[..]));
    session.close().await;
    assert_no_temp_files(&a.dir);
}

#[test]
fn half_done_work_on_a_real_antenna_is_planned_again_and_finished() {
    let Some(peers) = Peers::start_with(vec![old_files(0)]) else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let (dir, state) = (tmp.path().join("desired"), tmp.path().join("state"));
    desired_for(&peers, &dir, NEW_URI);
    let a = peers.antenna(0);
    let booted = old_files(0).system_cfg;

    // The flash refuses the persist: apply fails after writing the files, and says so.
    a.set_persist_fails(true);
    let (code, out) = wispctl(&dir, &state, &["apply", "--auto-approve"]);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("`/sbin/cfgmtd` exited with status 1: Could not open MTD device cfg"),
        "{out}"
    );
    assert!(out.contains("the procedure stopped half-way"), "{out}");
    assert!(
        String::from_utf8_lossy(&a.system_cfg().unwrap()).contains(NEW_URI),
        "the files were written"
    );
    assert_eq!(a.flash(), Some(booted.clone()));
    assert_eq!(a.wait_bridge_starts(1, Duration::from_secs(5)).len(), 1);

    // The next plan sees it: the flash copy and the bridge, not the files.
    let (code, out) = wispctl(&dir, &state, &["plan", "--detailed-exitcode"]);
    assert_eq!(code, 2, "{out}");
    for part in [
        "persisted copy (flash) differs: host: uisp.example.net -> uisp.nuevo.example",
        "udapi-bridge runs the old connection (it started before wispctl last rewrote the files)",
    ] {
        assert!(out.contains(part), "{part}\n{out}");
    }
    assert!(!out.contains("rewrites the unms.* lines"), "{out}");

    // Fixed flash: the next apply persists and restarts the bridge, and then all is in step.
    a.set_persist_fails(false);
    let written = a.system_cfg();
    let (code, out) = wispctl(&dir, &state, &["apply", "--auto-approve"]);
    assert_eq!(code, 0, "{out}");
    assert_eq!(a.system_cfg(), written, "system.cfg was written again");
    assert_eq!(a.flash(), written);
    let starts = a.wait_bridge_starts(2, Duration::from_secs(10));
    assert_eq!(starts.last().unwrap().uri, NEW_URI);
    let (code, out) = wispctl(&dir, &state, &["plan", "--detailed-exitcode"]);
    assert_eq!(code, 0, "{out}");
    assert!(!out.contains(NEW_URI) && !out.contains("InteropMasterKey"));
}

#[test]
fn without_sbin_cfgmtd_a_real_antenna_is_not_touched() {
    let Some(peers) = Peers::start_with(vec![old_files(0)]) else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let (dir, state) = (tmp.path().join("desired"), tmp.path().join("state"));
    desired_for(&peers, &dir, NEW_URI);
    let a = peers.antenna(0);
    a.remove_cfgmtd();
    let before = (a.system_cfg(), a.running_cfg());
    let (code, out) = wispctl(&dir, &state, &["apply", "--auto-approve"]);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains(
            "/sbin/cfgmtd is missing or not executable, so the change could not be persisted to flash; not touched"
        ),
        "{out}"
    );
    assert_eq!((a.system_cfg(), a.running_cfg()), before);
    assert!(!a.dir.join("wispctl.changed").exists());
    assert_eq!(a.wait_bridge_starts(1, Duration::from_secs(5)).len(), 1);
}
