//! `wispctl lab serve DIR`: the twins out of the commands' process. Other commands reach them
//! with `--lab DIR`, what they write is kept by the served twins, and SIGTERM stops the server
//! cleanly (its files saved, `serve.json` removed).

mod common;

use std::process::{Command, Stdio};

use common::{Lab, Server, serve};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

#[test]
fn a_served_lab_is_reached_by_other_commands_and_stops_cleanly_on_sigterm() {
    let lab = Lab::new();
    let (mut server, lines) = serve(&lab);
    let printed = lines.join("\n");
    for target in [
        "routers.balanceador: 127.0.0.1:",
        "uisp.main: api=https://127.0.0.1:",
    ] {
        assert!(printed.contains(target), "{printed}");
    }
    assert!(
        !printed.contains("BEGIN"),
        "certificates stay in serve.json: {printed}"
    );
    assert!(lab.lab().join("serve.json").exists());

    lab.run(&["plan", "--detailed-exitcode"]).expect(2);
    lab.run(&["apply", "--auto-approve"]).expect(0);
    // The served twins kept what apply wrote: the next command sees it.
    lab.run(&["plan", "--detailed-exitcode"]).expect(0);

    let pid = Pid::from_raw(server.0.id() as i32);
    kill(pid, Signal::SIGTERM).unwrap();
    let status = server.0.wait().unwrap();
    assert!(status.success(), "{status:?}");
    assert!(!lab.lab().join("serve.json").exists(), "serve.json removed");
    // Served no more: the next command starts its own twins from the saved files, in sync.
    lab.run(&["plan", "--detailed-exitcode"]).expect(0);
}

#[test]
fn a_second_server_of_one_lab_is_refused() {
    let lab = Lab::new();
    let (_server, _) = serve(&lab);
    let second = Command::new(env!("CARGO_BIN_EXE_wispctl"))
        .arg("-C")
        .arg(lab.desired())
        .args(["lab", "serve"])
        .arg(lab.lab())
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_eq!(second.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&second.stderr).contains("already served by process"),
        "{second:?}"
    );
}

/// Real clients reach a served lab with what `serve.json` says: the Python librouteros client
/// logs in to the router and prints, curl reads UISP's sites with the lab's certificate and
/// token; a fault set in the router's lab file (a `!trap` on one secret's `set`) reaches
/// `wispctl apply` through the served router.
#[test]
fn real_clients_and_lab_file_faults_reach_a_served_lab() {
    let lab = Lab::new();
    let router_file = lab.lab().join("routers/balanceador.json");
    let mut router: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&router_file).unwrap()).unwrap();
    router["faults"] = serde_json::json!({ "traps": [
        { "command": "/ppp/secret/set", "name": "maria.lopez", "message": "failure: lab fault" }
    ] });
    std::fs::write(&router_file, router.to_string()).unwrap();
    let (_server, _) = serve(&lab);
    let served: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(lab.lab().join("serve.json")).unwrap())
            .unwrap();
    let endpoint = |section: &str| {
        served["targets"]
            .as_array()
            .unwrap()
            .iter()
            .find(|t| t["section"] == section)
            .unwrap()["endpoint"]
            .clone()
    };

    let addr: std::net::SocketAddr = endpoint("routers").as_str().unwrap().parse().unwrap();
    let script = common::repo().join("tests/routeros_librouteros.py");
    let py = Command::new("python3")
        .arg(&script)
        .args([&addr.ip().to_string(), &addr.port().to_string()])
        .args(["wispctl", "lab-router-pw", "plain", "first-command"])
        .output()
        .expect("python3 runs (tests/setup.sh installs librouteros)");
    assert!(py.status.success(), "{py:?}");
    let seen: serde_json::Value = serde_json::from_slice(&py.stdout).unwrap();
    assert_eq!(
        seen["first_command_error"],
        serde_json::Value::Null,
        "{seen}"
    );

    let uisp = endpoint("uisp");
    let ca = lab.tmp.path().join("uisp-ca.pem");
    std::fs::write(&ca, uisp["ca_pem"].as_str().unwrap()).unwrap();
    let curl = Command::new("curl")
        .args(["--silent", "--show-error", "--fail", "--cacert"])
        .arg(&ca)
        .args(["-H", "x-auth-token: lab-uisp-nms-token"])
        .arg(format!("{}/sites", uisp["api"].as_str().unwrap()))
        .output()
        .expect("curl runs (tests/setup.sh installs it)");
    assert!(curl.status.success(), "{curl:?}");
    assert!(
        String::from_utf8_lossy(&curl.stdout).contains("Tomatlan"),
        "{curl:?}"
    );

    let apply = lab.run(&["apply", "--auto-approve"]);
    assert_eq!(apply.code, 1, "{}", apply.all());
    assert!(
        apply
            .stdout
            .lines()
            .any(|l| l.contains("maria.lopez") && l.contains("failure: lab fault")),
        "{}",
        apply.all()
    );
}

fn stop(mut server: Server) {
    kill(Pid::from_raw(server.0.id() as i32), Signal::SIGTERM).unwrap();
    assert!(server.0.wait().unwrap().success());
}

/// `plan` begins reading the routers it can reach before its resource files are loaded (the
/// served lab's, here, as on a VPS): the plan is the same as one made the usual way and the
/// router is read once, a router `--target` leaves out is not contacted, a file not named after
/// its router is read the usual way, and a folder that fails to load abandons the reads: exit
/// 1, its errors at their place, nothing written, the state folder untouched.
#[test]
fn plan_reads_early_with_the_same_result_and_writes_nothing_on_bad_input() {
    const TAKEN: &str = "taking the read begun while the desired state loaded";
    let debug = [("RUST_LOG", "wispctl=debug")];
    let lab = Lab::new();
    let in_process = lab.run_env(&["plan", "--detailed-exitcode"], &debug);
    in_process.expect(2);
    assert!(
        !in_process.stderr.contains(TAKEN),
        "an in-process lab reads after loading"
    );

    let (server, _) = serve(&lab);
    let early = lab.run_env(&["plan", "--detailed-exitcode"], &debug);
    early.expect(2);
    assert!(early.stderr.contains(TAKEN), "{}", early.all());
    assert_eq!(early.stdout, in_process.stdout, "the same plan");
    lab.run(&["plan", "--target", "uisp.*", "--detailed-exitcode"])
        .expect(2);
    stop(server);
    assert_eq!(
        lab.router_received()["/login"],
        1,
        "the plan read the router once (early), the uisp-only plan not at all"
    );

    // A file named otherwise: read when the engine observes the router, once, same plan.
    let pppoe = lab.desired().join("pppoe");
    std::fs::rename(pppoe.join("balanceador.yaml"), pppoe.join("main.yaml")).unwrap();
    let (server, _) = serve(&lab);
    let renamed = lab.run_env(&["plan", "--detailed-exitcode"], &debug);
    renamed.expect(2);
    assert!(!renamed.stderr.contains(TAKEN), "{}", renamed.all());
    assert_eq!(renamed.stdout, in_process.stdout);
    stop(server);
    assert_eq!(lab.router_received()["/login"], 2);

    // A folder that does not load: the reads begun are abandoned, nothing is written, the
    // state folder is untouched. (With the file named otherwise, no read begins early: the
    // message says nothing was read.)
    std::fs::rename(pppoe.join("main.yaml"), pppoe.join("balanceador.yaml")).unwrap();
    let (server, _) = serve(&lab); // lab serve itself needs a folder that loads
    let text = std::fs::read_to_string(pppoe.join("balanceador.yaml")).unwrap();
    std::fs::write(
        pppoe.join("balanceador.yaml"),
        text.replace("remote_address: 10.10.1.47", "remote_address: 10.10.1.477"),
    )
    .unwrap();
    let state = common::snapshot(&lab.lab().join("state"));
    let bad = lab.run(&["plan"]);
    assert_eq!(bad.code, 1, "{}", bad.all());
    assert!(
        bad.stderr.contains("pppoe/balanceador.yaml:26:21: error: "),
        "{}",
        bad.all()
    );
    assert!(
        bad.stderr.contains(
            "nothing was written to any target (the reads begun meanwhile were abandoned)"
        ),
        "{}",
        bad.all()
    );
    assert!(bad.stdout.is_empty(), "no plan: {}", bad.all());
    stop(server);
    assert_eq!(common::snapshot(&lab.lab().join("state")), state);
    let received = lab.router_received();
    assert_eq!(
        received
            .keys()
            .filter(|c| !c.ends_with("/print") && *c != "/login")
            .count(),
        0,
        "only logins and prints: {received:?}"
    );
}
