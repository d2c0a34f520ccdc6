//! Antenna rollouts that prove themselves in UISP, through the binary on the lab: the lab's
//! antennas tell the lab UISP server when their bridge restarts, and UISP shows a device
//! connected only when its connection string names the server's host. A wave whose new
//! connection string points at a host UISP does not serve never comes back: the canary fails,
//! the rollout stops before any other antenna is touched, and with
//! `revert_if_not_connected` every canary antenna is back on its old connection string,
//! persisted, and connected again.

mod common;

use common::Lab;
use serde_json::Value;

/// The lab's master key with a host the lab UISP does not serve.
const ELSEWHERE: &str = "wss://uisp-otro.lab.invalid:443+LabOnlyMasterKey0123456789abcdefghijklmnopqrstuv+allowSelfSignedCertificate";
/// The lab's keys, never to be shown.
const KEYS: [&str; 2] = [
    "LabOnlyMasterKey0123456789abcdefghijklmnopqrstuv",
    "JuanDeviceSpecificKey4242",
];

/// Every file under `dir`.
fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut files = Vec::new();
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = e.path();
        if path.is_dir() {
            files.extend(walk(&path));
        } else {
            files.push(path);
        }
    }
    files
}

fn json(path: &std::path::Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

/// The lab antennas' `unms.uri` lines in `system.cfg`, `running.cfg`, the flash copy, and
/// the URI the bridge runs with, by host.
fn antennas(lab: &Lab) -> Vec<(String, Value)> {
    json(&lab.lab().join("antennas/clientes.json"))["antennas"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| (a["host"].as_str().unwrap().to_string(), a.clone()))
        .collect()
}

/// What the lab UISP shows of the device with this MAC.
fn uisp_status(lab: &Lab, mac: &str) -> Option<String> {
    json(&lab.lab().join("uisp/main.json"))["state"]["devices"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["mac"].as_str() == Some(mac))
        .map(|d| d["status"].as_str().unwrap().to_string())
}

/// Whether every copy of the antenna's configuration (both files, the flash copy, the bridge)
/// names `host`.
fn carries(antenna: &Value, host: &str) -> bool {
    let uri = |field: &str| {
        antenna[field]
            .as_str()
            .unwrap_or_default()
            .lines()
            .find_map(|l| l.strip_prefix("unms.uri="))
            .map(str::to_string)
    };
    let bridge = antenna["bridge"]["uri"].as_str().map(str::to_string);
    [uri("system_cfg"), uri("running_cfg"), uri("flash"), bridge]
        .iter()
        .all(|u| u.as_deref().is_some_and(|u| u.contains(host)))
}

/// The demo applied (every antenna on the lab's UISP, connected there), then the group's
/// connection string given as `AIROS_URI`, a canary of 2, a short wait, and
/// `revert_if_not_connected: revert`.
fn moved_group(revert: bool) -> Lab {
    let lab = Lab::new();
    lab.run(&["apply", "--auto-approve"]).expect(0);
    for mac in ["28:70:4E:A8:16:99", "28:70:4E:A8:17:01"] {
        let status = uisp_status(&lab, mac);
        assert!(
            matches!(status.as_deref(), Some("active" | "unauthorized")),
            "{mac}: {status:?}"
        );
    }
    let path = lab.desired().join("airos/clientes.yaml");
    let text = std::fs::read_to_string(&path).unwrap();
    let text = text
        .replace(
            "  uisp: main                  # whatever",
            "  secret: { env: AIROS_URI }  # whatever",
        )
        .replace("# connected_in: main", "connected_in: main")
        .replace("  canary: 1 ", "  canary: 2 ")
        .replace("  wait_connected: 3m ", "  wait_connected: 2s ")
        .replace("  poll_uisp: 10s ", "  poll_uisp: 200ms ")
        .replace(
            "  revert_if_not_connected: false",
            &format!("  revert_if_not_connected: {revert}"),
        );
    std::fs::write(&path, text).unwrap();
    lab
}

#[test]
fn a_canary_that_never_reconnects_is_reverted_and_the_rollout_stops() {
    let lab = moved_group(true);
    let before = antennas(&lab);
    let report = lab.tmp.path().join("report.json");
    let apply = lab.run_env(
        &[
            "apply",
            "--auto-approve",
            "--report",
            report.to_str().unwrap(),
        ],
        &[("AIROS_URI", ELSEWHERE)],
    );
    assert_eq!(apply.code, 1, "{}", apply.all());
    let out = apply.all();
    // Neither key, nor the host it was sent to with them, in the output, the JSON report or
    // any file of the state folder (the previous string is kept in memory only).
    let report_text = std::fs::read_to_string(&report).unwrap();
    let mut shown = vec![out.clone(), report_text.clone()];
    for entry in walk(&lab.lab().join("state")) {
        shown.push(String::from_utf8_lossy(&std::fs::read(entry).unwrap()).into_owned());
    }
    for text in &shown {
        for key in KEYS {
            assert!(!text.contains(key), "a key is shown: {text}");
        }
    }
    let report: Value = serde_json::from_str(&report_text).unwrap();
    assert_eq!(report["summary"]["reverted"], 2, "{report_text}");
    assert_eq!(report["summary"]["skipped"], 3, "{report_text}");
    let reverted: Vec<&str> = apply
        .stdout
        .lines()
        .filter(|l| l.trim_start().starts_with("reverted"))
        .collect();
    assert_eq!(reverted.len(), 2, "{out}");
    for line in &reverted {
        assert!(
            line.contains("UISP main did not show it connected within 2s")
                && line.contains("put back on its previous connection string (system.cfg written, running.cfg written, persisted, udapi-bridge killed); connected again in UISP"),
            "{line}"
        );
    }
    let skipped = apply
        .stdout
        .lines()
        .filter(|l| l.contains("the canary wave failed (2 of 2 antennas): rollout stopped"))
        .count();
    assert_eq!(skipped, 3, "{out}");
    assert!(apply.stdout.contains("2 reverted"), "{out}");

    // The canary is back as it was, every copy, and connected in UISP; the rest untouched.
    let after = antennas(&lab);
    for ((host, was), (_, now)) in before.iter().zip(&after) {
        if host == "10.10.1.45" || host == "10.10.1.46" {
            assert!(!carries(now, "uisp-otro.lab.invalid"), "{host}");
            for field in ["system_cfg", "running_cfg", "flash"] {
                assert_eq!(now[field], was[field], "{host}: {field}");
            }
            assert_eq!(now["bridge"]["uri"], was["bridge"]["uri"], "{host}");
        } else {
            assert_eq!(now, was, "{host} was touched");
        }
    }
    assert!(carries(&after[0].1, "uisp.lab.invalid"));
    assert_eq!(
        uisp_status(&lab, "28:70:4E:A8:16:99").as_deref(),
        Some("active")
    );
    assert!(matches!(
        uisp_status(&lab, "28:70:4E:A8:17:01").as_deref(),
        Some("active" | "unauthorized")
    ));
}

#[test]
fn without_revert_the_canary_fails_and_stays_where_it_was_sent() {
    let lab = moved_group(false);
    let before = antennas(&lab);
    let apply = lab.run_env(&["apply", "--auto-approve"], &[("AIROS_URI", ELSEWHERE)]);
    assert_eq!(apply.code, 1, "{}", apply.all());
    let failed = apply
        .stdout
        .lines()
        .filter(|l| {
            l.trim_start().starts_with("failed")
                && l.contains("written and verified on the antenna, but UISP main did not show it connected within 2s")
        })
        .count();
    assert_eq!(failed, 2, "{}", apply.all());
    assert!(!apply.stdout.contains("reverted"), "{}", apply.all());
    let after = antennas(&lab);
    assert!(carries(&after[0].1, "uisp-otro.lab.invalid"));
    assert!(carries(&after[1].1, "uisp-otro.lab.invalid"));
    assert_eq!(
        after[2..],
        before[2..],
        "nothing after the canary was touched"
    );
    assert_eq!(
        uisp_status(&lab, "28:70:4E:A8:16:99").as_deref(),
        Some("disconnected")
    );
}

/// The usual rollout proves itself too: the demo's apply restarts three antennas, and UISP
/// shows each connected (the one it did not list before appears, waiting to be authorized;
/// the one already right is not restarted, so UISP still does not list it).
#[test]
fn a_rollout_to_the_served_host_is_proven_in_uisp() {
    let lab = Lab::new();
    assert_eq!(uisp_status(&lab, "28:70:4E:A8:17:03"), None);
    let apply = lab.run(&["apply", "--auto-approve"]);
    apply.expect(0);
    assert!(!apply.stdout.contains("reverted"), "{}", apply.all());
    assert_eq!(
        uisp_status(&lab, "28:70:4E:A8:17:02").as_deref(),
        Some("active")
    );
    assert_eq!(
        uisp_status(&lab, "28:70:4E:A8:17:03").as_deref(),
        Some("unauthorized")
    );
    assert_eq!(uisp_status(&lab, "28:70:4E:A8:17:05"), None);
    lab.run(&["plan", "--detailed-exitcode"]).expect(0);
}
