//! Plan, apply and drift end to end on the lab, through the real binary.

mod common;

use std::time::Duration;

use common::{Lab, repo};
use wispctl::engine::lock::ApplyLock;

#[test]
fn readme_demo_runs_end_to_end() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_wispctl"))
        .current_dir(repo())
        .args(["demo"])
        .env("NO_COLOR", "1")
        .output()
        .unwrap();
    let run = common::Run::from(out);
    run.expect(0);
    assert!(
        run.stdout
            .contains("Plan: 4 to add, 11 to change, 2 to destroy."),
        "{}",
        run.stdout
    );
    assert!(
        run.stdout
            .contains("Apply: 17 applied, 0 failed, 0 skipped.")
    );
    assert!(run.stdout.contains("No changes."));
    // PPPoE: an add, changes, a suspension that kicks, passwords masked, then no changes.
    for line in [
        r#"+ pppoe.balanceador.secret["ana.garcia"] will be created"#,
        r#"~ pppoe.balanceador.secret["maria.lopez"] will be updated"#,
        r#"profile: "10M" -> "Morosos""#,
        "disconnects the active session of maria.lopez",
        "password: (sensitive, changed)",
        r#"applied pppoe.balanceador.secret["maria.lopez"] (update)"#,
        "pppoe.balanceador: up to date",
        // UISP: authorize an unauthorized device, move another, create an endpoint site.
        r#"+ uisp.main.site["Tomatlan, Maria Lopez"] will be created"#,
        r#"site: "(unauthorized)" -> "Tomatlan, Maria Lopez""#,
        r#"site: "Centro" -> "Centro, Luis Torres""#,
        r#"applied uisp.main.device["28:70:4E:A8:17:01"] (update)"#,
        "uisp.main: up to date",
        // airOS: old URIs fixed through the jump host (one in running.cfg only), the connected
        // antenna's own key is not drift, then no changes; drift sees a running.cfg put back.
        r#"~ airos.clientes["10.10.1.46"] will be updated"#,
        "# running.cfg: host: uisp-viejo.lab.invalid -> uisp.lab.invalid\n",
        r#"applied airos.clientes["10.10.1.47"] (update)"#,
        r#"applied airos.clientes["10.10.1.48"] (update)"#,
        "1 antenna(s) carry their own device-specific key and UISP shows them connected: in sync",
        "airos.clientes: up to date",
        r#"~ airos.clientes["10.10.1.50"] differs from the desired state"#,
    ] {
        assert!(run.stdout.contains(line), "demo output lacks {line:?}");
    }
    for leaked in [
        "juan-2026-nuevo",
        "ana-nueva-1",
        "lab-router-pw",
        "lab-uisp-nms-token",
        "lab-antenna-pw-1",
        "lab-antenna-pw-2",
        "lab-jump-pw",
        "LabOnlyMasterKey",
        "OldLabMasterKey",
        "JuanDeviceSpecificKey",
    ] {
        assert!(
            !run.stdout.contains(leaked) && !run.stderr.contains(leaked),
            "the demo printed a lab secret"
        );
    }
    assert!(run.stdout.contains("Drift: 0 missing, 3 differing"));
    // The controller scene: the out-of-band edits healed, each told to the local webhook,
    // and drift finds nothing left.
    let scene = run
        .stdout
        .split("== 6/6")
        .nth(1)
        .expect("the controller scene");
    assert!(
        scene.contains("The local webhook received 3 notification(s):"),
        "{scene}"
    );
    for t in ["pppd.vps", "pppoe.balanceador", "airos.clientes"] {
        assert!(
            scene.contains(&format!("wispctl: applied 1 change to {t}")),
            "{scene}"
        );
    }
    assert!(scene.contains("Drift: none."), "{scene}");
}

#[test]
fn apply_then_plan_shows_no_changes_and_exit_codes_follow_the_contract() {
    let lab = Lab::new();
    lab.run(&["validate"]).expect(0);
    lab.run(&["plan"]).expect(0);
    lab.run(&["plan", "--detailed-exitcode"]).expect(2);
    lab.run(&["drift"]).expect(2);
    lab.run(&["apply", "--auto-approve"]).expect(0);
    let r = lab.run(&["plan", "--detailed-exitcode"]);
    r.expect(0);
    assert!(
        r.stdout
            .contains("Plan: 0 to add, 0 to change, 0 to destroy.")
    );
    lab.run(&["drift"]).expect(0);
    // Files end with mode 0600.
    for (path, (_, mode)) in lab.snapshot() {
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        if name.starts_with("connexa-node") || name == "chap-secrets" {
            assert_eq!(mode, 0o600, "{}", path.display());
        }
    }
}

#[test]
fn chap_secrets_lines_not_owned_stay_byte_for_byte() {
    let lab = Lab::new();
    lab.run(&["apply", "--auto-approve"]).expect(0);
    let after = std::fs::read_to_string(lab.host().join("etc/ppp/chap-secrets")).unwrap();
    // Every seed line except the adopted `tecnico connexa-node-1` entry is still there, in order.
    let kept: Vec<&str> = wispctl::kinds::pppd::twin::SEED_CHAP
        .split_inclusive('\n')
        .filter(|l| !l.starts_with("tecnico "))
        .collect();
    let mut rest = after.as_str();
    for line in kept {
        let at = rest
            .find(line)
            .unwrap_or_else(|| panic!("line {line:?} lost or changed:\n{after}"));
        rest = &rest[at + line.len()..];
    }
    // The adopted entry is quoted in place, and the new one is in the managed block.
    assert!(after.contains("\"tecnico\" \"connexa-node-1\" \"n3w \\\"clave\\\" \\\\ 2026\" *\n"));
    assert!(after.contains(wispctl::kinds::pppd::chap::BEGIN));
}

#[test]
fn stale_plan_is_refused_naming_the_address_and_writes_nothing() {
    let lab = Lab::new();
    let plan = lab.tmp.path().join("plan.json");
    lab.run(&["plan", "--out", plan.to_str().unwrap()])
        .expect(0);
    // Someone edits a live file after the plan was made.
    let node1 = lab.host().join("etc/ppp/peers/connexa-node-1");
    let text = std::fs::read_to_string(&node1).unwrap();
    std::fs::write(&node1, text.replace("mtu 1500", "mtu 1492")).unwrap();
    let before = lab.snapshot();
    let r = lab.run(&["apply", plan.to_str().unwrap(), "--auto-approve"]);
    r.expect(1);
    assert!(
        r.all()
            .contains(r#"stale plan: pppd.vps.peer["connexa-node-1"] changed since plan"#),
        "{}",
        r.all()
    );
    assert_eq!(before, lab.snapshot(), "a stale plan wrote something");
}

#[test]
fn saved_plan_applies_when_nothing_moved() {
    let lab = Lab::new();
    let plan = lab.tmp.path().join("plan.json");
    lab.run(&["plan", "--out", plan.to_str().unwrap()])
        .expect(0);
    let meta = std::fs::metadata(&plan).unwrap();
    assert_eq!(
        std::os::unix::fs::PermissionsExt::mode(&meta.permissions()) & 0o777,
        0o600
    );
    lab.run(&["apply", plan.to_str().unwrap(), "--auto-approve"])
        .expect(0);
    lab.run(&["plan", "--detailed-exitcode"]).expect(0);
    // Applying the same plan again: every target moved (it was applied), so it is refused.
    let r = lab.run(&["apply", plan.to_str().unwrap(), "--auto-approve"]);
    r.expect(1);
    assert!(r.all().contains("stale plan"), "{}", r.all());
}

#[test]
fn a_secret_that_changed_since_the_plan_is_refused() {
    let lab = Lab::new();
    let plan = lab.tmp.path().join("plan.json");
    lab.run(&["plan", "--out", plan.to_str().unwrap()])
        .expect(0);
    let before = lab.snapshot();
    let r = lab.run_env(
        &["apply", plan.to_str().unwrap(), "--auto-approve"],
        &[("CHAP_ADMIN_NODE2", "another-value")],
    );
    r.expect(1);
    assert!(
        r.all().contains(
            r#"the secret of pppd.vps.chap["admin"@"connexa-node-2"].secret no longer matches"#
        ),
        "{}",
        r.all()
    );
    assert_eq!(before, lab.snapshot());
}

#[test]
fn a_plan_made_from_other_yaml_is_refused() {
    let lab = Lab::new();
    let plan = lab.tmp.path().join("plan.json");
    lab.run(&["plan", "--out", plan.to_str().unwrap()])
        .expect(0);
    let p = lab.desired().join("pppd/vps.yaml");
    let text = std::fs::read_to_string(&p).unwrap();
    std::fs::write(
        &p,
        text.replace("server: 203.0.113.7", "server: 203.0.113.8"),
    )
    .unwrap();
    let before = lab.snapshot();
    let r = lab.run(&["apply", plan.to_str().unwrap(), "--auto-approve"]);
    r.expect(1);
    assert!(
        r.stderr.contains("desired state changed since the plan"),
        "{}",
        r.stderr
    );
    assert_eq!(before, lab.snapshot());
}

#[test]
fn apply_waits_for_the_lock_then_fails_naming_the_holder() {
    let lab = Lab::new();
    let lock_path = lab.lab().join("state/apply.lock");
    let held = common::rt()
        .block_on(ApplyLock::acquire(
            &lock_path,
            Duration::ZERO,
            "wispctl apply (cron run 1)",
        ))
        .unwrap();
    let before = lab.snapshot();
    let r = lab.run(&["apply", "--auto-approve", "--lock-timeout", "300ms"]);
    r.expect(1);
    assert!(
        r.stderr.contains("another apply holds the lock"),
        "{}",
        r.stderr
    );
    assert!(
        r.stderr.contains(&format!("pid {}", std::process::id())),
        "{}",
        r.stderr
    );
    assert!(r.stderr.contains("cron run 1"), "{}", r.stderr);
    assert_eq!(before, lab.snapshot(), "the loser wrote something");
    // Released while a second apply waits: that one proceeds.
    let child = lab
        .command(&["apply", "--auto-approve", "--lock-timeout", "20s"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(400));
    assert_eq!(before, lab.snapshot(), "wrote while the lock was held");
    drop(held);
    let r = common::Run::from(child.wait_with_output().unwrap());
    r.expect(0);
    assert!(r.stdout.contains("Apply: 17 applied"), "{}", r.stdout);
}

#[test]
fn concurrent_applies_never_both_write() {
    let lab = Lab::new();
    let children: Vec<_> = (0..4)
        .map(|_| {
            lab.command(&["apply", "--auto-approve", "--lock-timeout", "0s"])
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    let runs: Vec<common::Run> = children
        .into_iter()
        .map(|c| common::Run::from(c.wait_with_output().unwrap()))
        .collect();
    let applied: usize = runs
        .iter()
        .map(|r| {
            r.stdout
                .lines()
                .filter(|l| l.trim_start().starts_with("applied"))
                .count()
        })
        .sum();
    assert_eq!(applied, 17, "each change applied exactly once across runs");
    for r in &runs {
        match r.code {
            0 => {}
            1 => assert!(
                r.stderr.contains("another apply holds the lock") && r.stderr.contains("pid "),
                "{}",
                r.all()
            ),
            c => panic!("unexpected exit {c}: {}", r.all()),
        }
    }
    lab.run(&["plan", "--detailed-exitcode"]).expect(0);
}

#[test]
fn drift_is_read_only() {
    let lab = Lab::new();
    let before = lab.snapshot();
    let r = lab.run(&["drift", "--format", "json"]);
    r.expect(2);
    let v: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    assert_eq!(v["format_version"], wispctl::plan::FORMAT_VERSION);
    assert_eq!(before, lab.snapshot(), "drift wrote something");
    lab.run(&["drift", "--format", "markdown"]).expect(2);
    assert_eq!(before, lab.snapshot());
}

#[test]
fn apply_without_a_terminal_or_approval_refuses() {
    let lab = Lab::new();
    let before = lab.snapshot();
    let r = lab.run(&["apply"]);
    r.expect(1);
    assert!(r.stderr.contains("--auto-approve"), "{}", r.stderr);
    assert_eq!(before, lab.snapshot());
}

#[test]
fn delete_cap_refuses_the_whole_run_unless_raised() {
    let lab = Lab::new();
    // Three owned peers that the YAML does not name.
    for n in ["old-a", "old-b", "old-c"] {
        let text = wispctl::kinds::pppd::twin::SEED_PEER_RETIRED.replace("connexa-node-9", n);
        std::fs::write(lab.host().join("etc/ppp/peers").join(n), text).unwrap();
    }
    let before = lab.snapshot();
    let r = lab.run(&["plan", "--max-deletes", "2"]);
    r.expect(1);
    assert!(
        r.stdout.contains("5 deletes exceed the cap of 2"),
        "{}",
        r.stdout
    );
    let r = lab.run(&["apply", "--auto-approve", "--max-deletes", "2"]);
    r.expect(1);
    assert_eq!(before, lab.snapshot(), "over the cap, nothing is written");
    lab.run(&["apply", "--auto-approve", "--max-deletes", "5"])
        .expect(0);
    assert!(!lab.host().join("etc/ppp/peers/old-a").exists());
    assert!(
        lab.host().join("etc/ppp/peers/provider").exists(),
        "unowned file deleted"
    );
}

#[test]
fn an_empty_desired_list_never_prunes_everything() {
    let lab = Lab::new();
    lab.run(&["apply", "--auto-approve"]).expect(0);
    // A truncated file: the lists are gone, prune is still on.
    lab.write_desired("pppd/vps.yaml", "host: vps\nprune: owned\n");
    let before = lab.snapshot();
    let r = lab.run(&["apply", "--auto-approve"]);
    r.expect(1);
    assert!(
        r.all().contains("an empty list never prunes everything"),
        "{}",
        r.all()
    );
    assert_eq!(before, lab.snapshot());
    lab.write_desired(
        "pppd/vps.yaml",
        "host: vps\nprune: owned\nallow_empty_prune: true\n",
    );
    lab.run(&["apply", "--auto-approve"]).expect(0);
    assert!(!lab.host().join("etc/ppp/peers/connexa-node-2").exists());
    assert!(lab.host().join("etc/ppp/peers/provider").exists());
}

#[test]
fn prune_is_off_by_default() {
    let lab = Lab::new();
    let p = lab.desired().join("pppd/vps.yaml");
    let text = std::fs::read_to_string(&p).unwrap();
    std::fs::write(&p, text.replace("prune: owned", "prune: none")).unwrap();
    let r = lab.run(&["apply", "--auto-approve"]);
    r.expect(0);
    assert!(r.stdout.contains("are kept (prune: none)"), "{}", r.stdout);
    assert!(lab.host().join("etc/ppp/peers/connexa-node-9").exists());
    let without: String = text
        .lines()
        .filter(|l| !l.starts_with("prune:"))
        .map(|l| format!("{l}\n"))
        .collect();
    std::fs::write(&p, without).unwrap();
    lab.run(&["plan", "--detailed-exitcode"]).expect(0);
    assert!(lab.host().join("etc/ppp/peers/connexa-node-9").exists());
}

#[test]
fn target_filter_limits_the_run() {
    let lab = Lab::new();
    let r = lab.run(&["plan", "--target", "pppd.other", "--detailed-exitcode"]);
    r.expect(0);
    assert!(r.stdout.contains("No targets matched."), "{}", r.stdout);
    lab.run(&["plan", "--target", "pppd.*", "--detailed-exitcode"])
        .expect(2);
    lab.run(&["plan", "--target", "vps", "--detailed-exitcode"])
        .expect(2);
}

#[test]
fn duplicate_live_entries_of_a_managed_pair_stop_that_host_only() {
    let lab = Lab::new();
    let chap = lab.host().join("etc/ppp/chap-secrets");
    let mut text = std::fs::read_to_string(&chap).unwrap();
    text.push_str("admin connexa-node-2 one *\nadmin connexa-node-2 two *\n");
    std::fs::write(&chap, text).unwrap();
    let before = lab.snapshot();
    let r = lab.run(&["apply", "--auto-approve"]);
    r.expect(1);
    assert!(
        r.all()
            .contains(r#"duplicate entries for "admin"@"connexa-node-2" at lines 8, 9"#),
        "{}",
        r.all()
    );
    assert_eq!(before, lab.snapshot());
}

/// Regression: a line of someone else's that is not UTF-8 (Latin-1 names are common here) was
/// rewritten with replacement characters, breaking that tunnel.
#[test]
fn chap_secrets_lines_that_are_not_utf8_survive_byte_for_byte() {
    let lab = Lab::new();
    let chap = lab.host().join("etc/ppp/chap-secrets");
    let mut bytes = std::fs::read(&chap).unwrap();
    let latin1: &[u8] = b"jos\xe9 otro-node \"contrase\xf1a\" *\n";
    bytes.extend_from_slice(latin1);
    std::fs::write(&chap, &bytes).unwrap();
    lab.run(&["apply", "--auto-approve"]).expect(0);
    let after = std::fs::read(&chap).unwrap();
    assert!(
        after.windows(latin1.len()).any(|w| w == latin1),
        "the Latin-1 line changed"
    );
    lab.run(&["plan", "--detailed-exitcode"]).expect(0);
}

/// Regression: options could smuggle `connect` or `password` behind another option's position
/// on the same line, since pppd reads option files word by word.
#[test]
fn options_cannot_smuggle_refused_options() {
    let lab = Lab::new();
    let p = lab.desired().join("pppd/vps.yaml");
    let text = std::fs::read_to_string(&p).unwrap();
    for smuggled in [
        "debug connect '/bin/touch /tmp/pwned'",
        "ipparam x password Leak-PW",
        "debug ip-up-script /tmp/x",
        "debug file /etc/shadow",
    ] {
        std::fs::write(
            &p,
            text.replace("- ipparam connexa-node-2", &format!("- {smuggled}")),
        )
        .unwrap();
        let before = lab.snapshot();
        let r = lab.run(&["apply", "--auto-approve"]);
        r.expect(1);
        assert!(
            r.stderr.contains("is not accepted here"),
            "{smuggled}: {}",
            r.stderr
        );
        assert!(!r.all().contains("Leak-PW"), "{}", r.all());
        assert_eq!(before, lab.snapshot());
    }
}

/// Regression: a symbolic link at /etc/ppp/chap-secrets was replaced by a regular file, and the
/// link's target never got the change.
#[test]
fn a_symlinked_chap_secrets_is_refused() {
    let lab = Lab::new();
    let ppp = lab.host().join("etc/ppp");
    std::fs::rename(ppp.join("chap-secrets"), ppp.join("shared-secrets")).unwrap();
    std::os::unix::fs::symlink("shared-secrets", ppp.join("chap-secrets")).unwrap();
    let before = lab.snapshot();
    let r = lab.run(&["apply", "--auto-approve"]);
    r.expect(1);
    assert!(r.all().contains("is a symbolic link"), "{}", r.all());
    assert_eq!(before, lab.snapshot());
    assert!(
        std::fs::symlink_metadata(ppp.join("chap-secrets"))
            .unwrap()
            .file_type()
            .is_symlink()
    );
}

/// Regression: an environment variable set but empty (a failed `. /etc/wispctl.env`) blanked
/// the credential.
#[test]
fn an_empty_secret_is_refused() {
    let lab = Lab::new();
    let r = lab.run_env(&["apply", "--auto-approve"], &[("CHAP_ADMIN_NODE2", "")]);
    r.expect(1);
    assert!(r.stderr.contains("is empty"), "{}", r.stderr);
}

/// Regression: the apply lock lived in the state directory only, so two applies with different
/// state directories could write one host at once. The host's /etc/ppp is locked too.
#[test]
fn applies_with_different_state_dirs_do_not_write_one_host_at_once() {
    let lab = Lab::new();
    let ppp = std::fs::File::open(lab.host().join("etc/ppp")).unwrap();
    ppp.lock().unwrap();
    let other_state = lab.tmp.path().join("other-state");
    let child = lab
        .command(&[
            "--state-dir",
            other_state.to_str().unwrap(),
            "apply",
            "--auto-approve",
        ])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let before = lab.snapshot();
    std::thread::sleep(Duration::from_millis(600));
    assert_eq!(
        before,
        lab.snapshot(),
        "wrote while another process held /etc/ppp"
    );
    ppp.unlock().unwrap();
    let r = common::Run::from(child.wait_with_output().unwrap());
    r.expect(0);
}
