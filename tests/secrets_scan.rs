//! No secret value appears in stdout, stderr, plan files, Markdown or JSON of validate, plan,
//! snapshot, plan --snapshot, apply, drift, reconcile and status, with logging at its most
//! verbose; nor in a snapshot, nor in the state directory (the controller's history included).

mod common;

use common::{Lab, Run};

/// Every secret in this test contains this token; no output may.
const TOKEN: &str = "Zq9x";
const TECNICO: &str = "Zq9x-tecnico \"quoted\" \\ back";
const ADMIN: &str = "Zq9x-admin-secret-2";
const LIVE_TAMPERED: &str = "Zq9x-live-tampered";

const ROUTER_PW: &str = "Zq9x-router-api-pw";
const UISP_TOKEN: &str = "Zq9x-uisp-nms-token";

fn env() -> Vec<(&'static str, &'static str)> {
    vec![
        ("CHAP_TECNICO_NODE1", TECNICO),
        ("CHAP_ADMIN_NODE2", ADMIN),
        ("ROUTER_BALANCEADOR_PASSWORD", ROUTER_PW),
        ("UISP_MAIN_TOKEN", UISP_TOKEN),
        ("PPPOE_JUAN_PEREZ", "Zq9x-juan \"q\" =eq"),
        ("PPPOE_MARIA_LOPEZ", "Zq9x-maria"),
        ("PPPOE_LUIS_TORRES", "Zq9x-luis"),
        ("PPPOE_ANA_GARCIA", "Zq9x-ana"),
        ("AIROS_PASSWORD_1", "Zq9x-antenna-1"),
        ("AIROS_PASSWORD_2", "Zq9x-antenna-2"),
        ("AIROS_JUMP_PASSWORD", "Zq9x-jump"),
        ("RUST_LOG", "trace"),
    ]
}

/// A lab whose router accepts the scan's API password, and whose live secrets carry tokens too.
fn scan_lab() -> Lab {
    let lab = Lab::new();
    let path = wispctl::kinds::pppoe::twin::router_path(&lab.lab(), "balanceador");
    let mut router: wispctl::kinds::pppoe::twin::RouterFile =
        serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    router.users = vec![("wispctl".into(), ROUTER_PW.into())];
    for s in &mut router.secrets {
        s.password = format!("Zq9x-live-{}", s.name);
    }
    std::fs::write(&path, serde_json::to_vec(&router).unwrap()).unwrap();
    let path = wispctl::kinds::uisp::twin::uisp_path(&lab.lab(), "main");
    let mut uisp: wispctl::kinds::uisp::twin::UispFile =
        serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    uisp.token = UISP_TOKEN.into();
    // The master key UISP hands out, the old key and a device's own key, the antennas' and
    // the jump host's passwords, and a password line in the antennas' configuration files.
    let master = "wss://uisp.lab.invalid:443+Zq9xMasterKey0123456789abcdefghijklmnopqrstuvwxy+allowSelfSignedCertificate";
    assert_eq!(master.split('+').nth(1).unwrap().len(), 48);
    uisp.connection_string = master.into();
    std::fs::write(&path, serde_json::to_vec(&uisp).unwrap()).unwrap();
    let path = wispctl::kinds::airos::twin::antennas_path(&lab.lab(), "clientes");
    let text = std::fs::read_to_string(&path)
        .unwrap()
        .replace("OldLabMasterKey", "Zq9xOldMasterKe")
        .replace("JuanDeviceSpecificKey4242", "Zq9xJuanDeviceKey")
        .replace("lab-ppp-pw", "Zq9x-ppp-pw")
        .replace("lab-antenna-pw-", "Zq9x-antenna-")
        .replace("lab-jump-pw", "Zq9x-jump");
    std::fs::write(&path, text).unwrap();
    lab
}

#[track_caller]
fn clean(what: &str, text: &str) {
    assert!(!text.contains(TOKEN), "{what} leaks a secret:\n{text}");
    assert!(
        !text.contains("tecnico \\\"quoted"),
        "{what} leaks an escaped secret"
    );
}

fn scan(lab: &Lab, args: &[&str]) -> Run {
    let mut full = vec!["-vvv"];
    full.extend_from_slice(args);
    let r = lab.run_env(&full, &env());
    clean(&format!("stdout of {args:?}"), &r.stdout);
    clean(&format!("stderr of {args:?}"), &r.stderr);
    r
}

#[test]
fn no_secret_in_any_output_or_file() {
    let lab = scan_lab();
    let plan_file = lab.tmp.path().join("plan.json");
    let pf = plan_file.to_str().unwrap();
    scan(&lab, &["validate"]).expect(0);
    let r = scan(&lab, &["plan", "--out", pf]);
    r.expect(0);
    assert!(
        r.stderr.contains("TRACE") || r.stderr.contains("DEBUG"),
        "logging was not verbose:\n{}",
        r.stderr
    );
    assert!(r.stdout.contains("secret: (sensitive)"));
    assert!(r.stdout.contains("secret: (sensitive, changed)"));
    scan(&lab, &["plan", "--format", "markdown"]).expect(0);
    scan(&lab, &["plan", "--format", "json"]).expect(0);
    clean("plan file", &std::fs::read_to_string(&plan_file).unwrap());

    // A snapshot of every target, and plans from it in every format.
    let snap_file = lab.tmp.path().join("snapshot.json");
    let sf = snap_file.to_str().unwrap();
    scan(&lab, &["snapshot", "--out", sf]).expect(0);
    clean("snapshot", &std::fs::read_to_string(&snap_file).unwrap());
    for format in ["text", "markdown", "json"] {
        scan(&lab, &["plan", "--snapshot", sf, "--format", format]).expect(0);
    }
    scan(&lab, &["apply", pf, "--auto-approve"]).expect(0);

    // The secrets did reach the device: otherwise this test would prove nothing.
    let chap = std::fs::read_to_string(lab.host().join("etc/ppp/chap-secrets")).unwrap();
    assert!(
        chap.contains(ADMIN) && chap.contains("Zq9x-tecnico \\\"quoted\\\" \\\\ back"),
        "{chap}"
    );

    // Someone changes a secret on the host by hand: drift must say so without showing either value.
    std::fs::write(
        lab.host().join("etc/ppp/chap-secrets"),
        chap.replace(ADMIN, LIVE_TAMPERED),
    )
    .unwrap();
    for format in ["text", "markdown", "json"] {
        let r = scan(&lab, &["drift", "--format", format]);
        r.expect(2);
        assert!(r.stdout.contains("admin"), "{}", r.stdout);
    }
    // The controller heals it in apply mode, logging at trace as JSON; its status and history
    // (the state directory, scanned below) hold no secret either.
    let inventory = lab.desired().join("inventory.yaml");
    let text = std::fs::read_to_string(&inventory).unwrap();
    std::fs::write(&inventory, format!("{text}\nreconcile:\n  mode: apply\n")).unwrap();
    let r = scan(
        &lab,
        &[
            "--log-format",
            "json",
            "reconcile",
            "--once",
            "--listen",
            "off",
        ],
    );
    r.expect(0);
    assert!(r.stderr.contains("\"reconciled\""), "{}", r.stderr);
    scan(&lab, &["status"]).expect(0);
    scan(&lab, &["status", "--format", "json"]).expect(0);
    scan(&lab, &["apply", "--auto-approve"]).expect(0);
    scan(&lab, &["drift"]).expect(0);

    // The router got the passwords (so the scan above saw them pass through).
    let router = std::fs::read_to_string(wispctl::kinds::pppoe::twin::router_path(
        &lab.lab(),
        "balanceador",
    ))
    .unwrap();
    assert!(router.contains("Zq9x-ana"), "{router}");

    // The state directory holds no secret either.
    for (path, (bytes, _)) in common::snapshot(&lab.lab().join("state")) {
        clean(
            &path.display().to_string(),
            &String::from_utf8_lossy(&bytes),
        );
    }
}

#[test]
fn errors_about_a_secret_do_not_show_it() {
    let lab = Lab::new();
    let r = lab.run_env(
        &["-vvv", "validate"],
        &[
            ("CHAP_TECNICO_NODE1", "Zq9x-line-one\nZq9x-line-two"),
            ("CHAP_ADMIN_NODE2", ADMIN),
            ("RUST_LOG", "trace"),
        ],
    );
    r.expect(1);
    assert!(
        r.stderr.contains("contains a newline or control character"),
        "{}",
        r.stderr
    );
    clean("stderr", &r.stderr);
    clean("stdout", &r.stdout);
}

/// Regression: a secret typed straight into the YAML (not as a reference) was echoed by the
/// type error that refused it.
#[test]
fn a_plaintext_secret_in_the_yaml_is_not_echoed() {
    let lab = Lab::new();
    let p = lab.desired().join("pppd/vps.yaml");
    let text = std::fs::read_to_string(&p).unwrap();
    std::fs::write(
        &p,
        text.replace("{ env: CHAP_ADMIN_NODE2 }", "Zq9x-typed-inline"),
    )
    .unwrap();
    let r = lab.run_env(&["-vvv", "validate"], &env());
    r.expect(1);
    assert!(
        r.stderr.contains("not a valid secret reference"),
        "{}",
        r.stderr
    );
    clean("stderr", &r.stderr);
    // And an option line that does not parse is not quoted back either.
    std::fs::write(
        &p,
        text.replace("- ipparam connexa-node-2", "- \"password 'Zq9x-opt\""),
    )
    .unwrap();
    let r = lab.run_env(&["validate"], &env());
    r.expect(1);
    clean("stderr", &r.stderr);
}

/// Regression: a `password` line in a hand-written peer file that wispctl adopts was shown in
/// the plan's content diff (text, Markdown, JSON) and in drift.
#[test]
fn a_password_option_in_an_adopted_peer_file_is_masked() {
    let lab = Lab::new();
    let node1 = lab.host().join("etc/ppp/peers/connexa-node-1");
    let mut text = std::fs::read_to_string(&node1).unwrap();
    text.push_str("password Zq9x-peer-pw\n");
    std::fs::write(&node1, text).unwrap();
    let plan_file = lab.tmp.path().join("plan.json");
    for args in [
        vec!["plan", "--out", plan_file.to_str().unwrap()],
        vec!["plan", "--format", "markdown"],
        vec!["plan", "--format", "json"],
        vec!["drift"],
    ] {
        let r = scan(&lab, &args);
        assert!(
            r.stdout.contains("password (sensitive)"),
            "{args:?}: {}",
            r.stdout
        );
    }
    clean("plan file", &std::fs::read_to_string(&plan_file).unwrap());
}

/// Runs the binary against the lab like [`scan`], watching every FIFO of the desired-state
/// folder: a run that opens one (it must refuse it unopened) fails the test, and is unblocked
/// rather than left to hang (see `common::output_watching_fifos`).
fn scan_bounded(lab: &Lab, args: &[&str]) -> Run {
    let mut full = vec!["-vvv"];
    full.extend_from_slice(args);
    let mut cmd = lab.command(&full);
    cmd.envs(env());
    let fifos = common::fifos_under(&lab.desired());
    let (out, opened) = common::output_watching_fifos(cmd, &fifos);
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    clean(&format!("stderr of {args:?}"), &stderr);
    assert!(opened.is_empty(), "{args:?} opened {opened:?}");
    let status = out.status;
    let r = Run {
        code: status.code().unwrap_or(-1),
        stdout,
        stderr,
    };
    clean(&format!("stdout of {args:?}"), &r.stdout);
    clean(&format!("stderr of {args:?}"), &r.stderr);
    r
}

/// A secret that only a symbolic link or a special file of the desired-state folder reaches
/// appears in no output of any command, and no command hangs on them: links out of the folder
/// (to an env file, to a shadow-like file, to YAML that would name its secrets as targets, a
/// linked folder), a FIFO, a socket, a link to `/dev/zero`, and a secret file behind a link.
#[test]
fn secrets_behind_links_and_special_files_are_never_printed() {
    use std::os::unix::fs::symlink;
    let lab = scan_lab();
    let desired = lab.desired();
    let outside = lab.tmp.path().join("outside");
    std::fs::create_dir_all(outside.join("folder")).unwrap();
    for (name, text) in [
        (
            "wispctl.env",
            "export ROUTER_BALANCEADOR_PASSWORD='Zq9x-behind-env-link'\n",
        ),
        (
            "shadow",
            "root:$6$Zq9x-behind-shadow-link:19000:0:99999:7:::\n",
        ),
        (
            "targets.yaml",
            "router: Zq9x-behind-yaml-link\nsecrets:\n  - name: Zq9x-behind-yaml-name\n",
        ),
        ("folder/main.yaml", "uisp: Zq9x-behind-folder-link\n"),
        ("chap", "Zq9x-file-behind-link\n"),
    ] {
        std::fs::write(outside.join(name), text).unwrap();
    }
    symlink(outside.join("wispctl.env"), desired.join("pppoe/env.yaml")).unwrap();
    symlink(outside.join("shadow"), desired.join("pppd/shadow.yaml")).unwrap();
    symlink(
        outside.join("targets.yaml"),
        desired.join("pppoe/targets.yaml"),
    )
    .unwrap();
    symlink(outside.join("folder"), desired.join("linked")).unwrap();
    symlink("/dev/zero", desired.join("airos/zero.yaml")).unwrap();
    symlink(outside.join("chap"), desired.join("pppd/chap-secret")).unwrap();
    let made = std::process::Command::new("mkfifo")
        .arg(desired.join("pppd/pipe.yaml"))
        .status()
        .unwrap();
    assert!(made.success());
    let _socket = std::os::unix::net::UnixListener::bind(desired.join("uisp/sock.yaml")).unwrap();
    // The secret file behind a link is a legitimate reference: read, never shown.
    let vps = desired.join("pppd/vps.yaml");
    let text = std::fs::read_to_string(&vps).unwrap();
    assert!(text.contains("{ env: CHAP_ADMIN_NODE2 }"));
    std::fs::write(
        &vps,
        text.replace("{ env: CHAP_ADMIN_NODE2 }", "{ file: chap-secret }"),
    )
    .unwrap();

    let plan_file = lab.tmp.path().join("plan.json");
    let out_yaml = lab.tmp.path().join("import/r.yaml");
    let out_env = lab.tmp.path().join("import/r.env");
    let (pf, oy, oe) = (
        plan_file.to_str().unwrap(),
        out_yaml.to_str().unwrap(),
        out_env.to_str().unwrap(),
    );
    for args in [
        vec!["validate"],
        vec!["plan", "--out", pf],
        vec!["plan", "--format", "json"],
        vec!["plan", "--format", "markdown"],
        vec!["drift"],
        vec!["drift", "--format", "json"],
        vec!["apply", "--auto-approve"],
        vec![
            "import",
            "pppoe",
            "balanceador",
            "--force",
            "--out",
            oy,
            "--secrets-file",
            oe,
        ],
        vec![
            "accept-host-key",
            "clientes",
            "10.10.1.21",
            "SHA256:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
        ],
    ] {
        let r = scan_bounded(&lab, &args);
        r.expect(1);
        // Each one is refused for what it is, without reading it.
        for refusal in [
            "pppoe/env.yaml:1:1: error: cannot read: a symbolic link that leads outside",
            "pppd/shadow.yaml:1:1: error: cannot read: a symbolic link that leads outside",
            "pppoe/targets.yaml:1:1: error: cannot read: a symbolic link that leads outside",
            "linked:1:1: error: a symbolic link that leads outside",
            "airos/zero.yaml:1:1: error: cannot read: a symbolic link that leads outside",
            "pppd/pipe.yaml:1:1: error: cannot read: this is a FIFO (named pipe)",
            "uisp/sock.yaml:1:1: error: cannot read: this is a socket",
        ] {
            assert!(
                r.stderr.contains(refusal),
                "{args:?}: no {refusal:?}:\n{}",
                r.stderr
            );
        }
    }
    assert!(!plan_file.exists() && !out_yaml.exists() && !out_env.exists());
}
