//! The disconnect guard through the binary on the lab: a change of a shared default that
//! would kick more active PPPoE sessions than `guards.max_disconnects` allows is refused as a
//! whole (plan and apply), with the count, the cap and the customers beyond it, and nothing is
//! written; raised on the command line, it is applied, the kicks in waves when the file says
//! `kick_rollout`. Every plan shows its customer impact.

mod common;

use common::Lab;

/// Writes the lab router received so far (everything but logins and prints).
fn writes(lab: &Lab) -> u64 {
    lab.router_received()
        .iter()
        .filter(|(k, _)| !k.ends_with("/print") && *k != "/login")
        .map(|(_, n)| n)
        .sum()
}

/// How many sentences of `command` the lab router received so far.
fn received(lab: &Lab, command: &str) -> u64 {
    lab.router_received().get(command).copied().unwrap_or(0)
}

/// Edits `path` (a file of the lab or the desired state) with `f`.
fn edit(path: &std::path::Path, f: impl FnOnce(String) -> String) {
    let text = std::fs::read_to_string(path).unwrap();
    std::fs::write(path, f(text)).unwrap();
}

/// The demo applied, every customer of the router online, and the shared default profile
/// changed: luis.torres and ana.garcia (no profile of their own) would be kicked to get it;
/// `guards.max_disconnects` set to `cap`.
fn shared_default_change(cap: usize) -> Lab {
    let lab = Lab::new();
    lab.run(&["apply", "--auto-approve"]).expect(0);
    lab.run(&["plan", "--detailed-exitcode"]).expect(0);
    edit(&lab.lab().join("routers/balanceador.json"), |text| {
        let mut file: serde_json::Value = serde_json::from_str(&text).unwrap();
        let active: Vec<serde_json::Value> = file["secrets"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| serde_json::json!([s["name"], s["remote_address"]]))
            .collect();
        file["active"] = serde_json::Value::Array(active);
        file.to_string()
    });
    edit(&lab.desired().join("pppoe/balanceador.yaml"), |text| {
        text.replacen("  profile: 10M", "  profile: 20M", 1)
    });
    edit(&lab.desired().join("inventory.yaml"), |text| {
        text.replace(
            "  max_disconnects: 50\n",
            &format!("  max_disconnects: {cap}\n"),
        )
    });
    lab
}

/// Kicks in waves of `batch`, `pause` apart.
fn waves(lab: &Lab, batch: usize, pause: &str) {
    edit(&lab.desired().join("pppoe/balanceador.yaml"), |text| {
        text.replacen(
            "kick: on-change",
            &format!("kick_rollout: {{ batch: {batch}, pause: {pause} }}\nkick: on-change"),
            1,
        )
    });
}

#[test]
fn a_shared_default_that_kicks_more_than_the_cap_is_refused_unless_raised() {
    let lab = shared_default_change(1);
    let before = writes(&lab);

    let plan = lab.run(&["plan"]);
    assert_eq!(plan.code, 1, "{}", plan.all());
    assert!(
        plan.stdout
            .contains("guard: 2 active sessions would be disconnected, over the cap of 1 per run"),
        "{}",
        plan.all()
    );
    assert!(
        plan.stdout
            .contains("Beyond the cap: ana.garcia (Tomatlan, Ana Garcia)."),
        "{}",
        plan.all()
    );
    assert!(
        plan.stdout.contains(
            "Impact: 2 session(s) disconnected, 0 antenna(s) restarted, 0 tunnel(s) to restart."
        ),
        "{}",
        plan.all()
    );
    let json = lab.run(&["plan", "--format", "json"]);
    let v: serde_json::Value = serde_json::from_str(&json.stdout).unwrap();
    assert_eq!(v["summary"]["disconnects"], 2, "{}", json.stdout);
    let md = lab.run(&["plan", "--format", "markdown"]);
    assert!(
        md.stdout.contains("Impact: 2 session(s) disconnected"),
        "{}",
        md.stdout
    );

    let refused = lab.run(&["apply", "--auto-approve"]);
    assert_eq!(refused.code, 1, "{}", refused.all());
    assert_eq!(writes(&lab), before, "nothing written over the cap");

    // Raised on the command line, in waves of one session with a pause between them.
    waves(&lab, 1, "1s");
    let kicks = || received(&lab, "/ppp/active/remove");
    let kicks_before = kicks();
    lab.run(&["apply", "--auto-approve", "--max-disconnects", "2"])
        .expect(0);
    // The lab's log: one remove per wave (the pauses are tested on tokio's paused clock,
    // `pppoe::apply`'s waves_are_paced_and_none_is_sent_after_one_failed).
    assert_eq!(kicks() - kicks_before, 2, "two waves of one kick each");
    assert!(writes(&lab) > before);
    lab.run(&["plan", "--detailed-exitcode", "--max-disconnects", "2"])
        .expect(0);
}

/// A wave the router refuses: the later waves are not sent, both customers stay owed a kick
/// (the state file says so), and the next run kicks them, once each.
#[test]
fn a_failed_wave_stops_the_rollout_and_the_next_run_kicks_the_rest() {
    let lab = shared_default_change(5);
    waves(&lab, 1, "0s");
    let router = lab.lab().join("routers/balanceador.json");
    edit(&router, |text| {
        let mut file: serde_json::Value = serde_json::from_str(&text).unwrap();
        file["faults"] = serde_json::json!({ "traps": [
            { "command": "/ppp/active/remove", "name": "luis.torres", "message": "failure: lab fault" }
        ] });
        file.to_string()
    });
    let kicks = || received(&lab, "/ppp/active/remove");
    let before = kicks();
    let apply = lab.run(&["apply", "--auto-approve"]);
    assert_eq!(apply.code, 1, "{}", apply.all());
    assert!(
        apply.stdout.contains("refused to disconnect the session"),
        "{}",
        apply.all()
    );
    assert!(
        apply
            .stdout
            .contains("not attempted (an earlier wave of kicks failed)"),
        "{}",
        apply.all()
    );
    assert_eq!(kicks() - before, 1, "the second wave was not sent");

    edit(&router, |text| {
        let mut file: serde_json::Value = serde_json::from_str(&text).unwrap();
        file.as_object_mut().unwrap().remove("faults");
        file.to_string()
    });
    let plan = lab.run(&["plan", "--detailed-exitcode"]);
    plan.expect(2);
    assert!(
        plan.stdout.contains("Impact: 2 session(s) disconnected"),
        "both kicks are owed: {}",
        plan.all()
    );
    let before = kicks();
    lab.run(&["apply", "--auto-approve"]).expect(0);
    assert_eq!(kicks() - before, 2, "each owed kick once, one wave each");
    lab.run(&["plan", "--detailed-exitcode"]).expect(0);
}

/// A router's own cap (`routers.NAME.max_disconnects`) refuses that router only: its error
/// gives the count and the cap, the other targets are planned, nothing is written to it.
#[test]
fn a_routers_own_cap_refuses_that_router_only() {
    let lab = shared_default_change(50);
    edit(&lab.desired().join("inventory.yaml"), |text| {
        text.replace(
            "    username: wispctl\n",
            "    username: wispctl\n    max_disconnects: 1\n",
        )
    });
    let before = writes(&lab);
    let plan = lab.run(&["plan"]);
    assert_eq!(plan.code, 1, "{}", plan.all());
    assert!(
        plan.stdout.contains(
            "router balanceador: 2 active sessions would be disconnected, over this router's cap of 1"
        ),
        "{}",
        plan.all()
    );
    assert!(
        plan.stdout.contains("uisp.main: up to date"),
        "{}",
        plan.all()
    );
    let apply = lab.run(&["apply", "--auto-approve"]);
    assert_eq!(apply.code, 1, "{}", apply.all());
    assert_eq!(
        writes(&lab),
        before,
        "nothing written to the refused router"
    );
}

/// With `redial_wait`, the apply report counts the kicked customers who redialed: the lab's
/// CPEs redial 300 ms after a kick with the password their session came up with, so ana.garcia
/// (a new default profile) is back, and luis.torres, whose password the same apply rotated
/// while his CPE still has the old one, is not: the report says 1 of 2, names him, and the
/// JSON report carries `redialed` per change.
#[test]
fn the_apply_report_counts_the_kicked_customers_who_redialed() {
    let lab = shared_default_change(50);
    let router = lab.lab().join("routers/balanceador.json");
    edit(&router, |text| {
        let mut file: serde_json::Value = serde_json::from_str(&text).unwrap();
        file["redial_ms"] = serde_json::json!(300);
        for s in file["secrets"].as_array_mut().unwrap() {
            if s["name"] == "luis.torres" {
                s["password"] = serde_json::json!("luis-cpe-old");
            }
        }
        file.to_string()
    });
    edit(&lab.desired().join("pppoe/balanceador.yaml"), |text| {
        text.replacen("kick: on-change", "redial_wait: 4s\nkick: on-change", 1)
    });
    let kicks = received(&lab, "/ppp/active/remove");
    let report_file = lab.lab().join("apply-report.json");
    let apply = lab.run(&[
        "apply",
        "--auto-approve",
        "--report",
        report_file.to_str().unwrap(),
    ]);
    apply.expect(0);
    assert_eq!(received(&lab, "/ppp/active/remove") - kicks, 1);
    let text = std::fs::read_to_string(&report_file).unwrap();
    let report: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(report["summary"]["redial_checked"], 2, "{text}");
    assert_eq!(report["summary"]["redialed"], 1, "{text}");
    let redialed: Vec<(String, bool)> = report["targets"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|t| t["outcomes"].as_array().unwrap().iter())
        .filter_map(|o| {
            o["redialed"]
                .as_bool()
                .map(|b| (o["address"].as_str().unwrap().to_string(), b))
        })
        .collect();
    assert_eq!(
        redialed,
        [
            (
                "pppoe.balanceador.secret[\"luis.torres\"]".to_string(),
                false
            ),
            ("pppoe.balanceador.secret[\"ana.garcia\"]".to_string(), true),
        ],
        "{text}"
    );
    for shown in [apply.all(), text] {
        assert!(!shown.contains("luis-cpe-old") && !shown.contains("luis-pw"));
    }

    // In text: the count, and who is not back. The router holds both again; luis.torres
    // stays offline (nothing to change, so no kick and no redial check).
    lab.run(&["plan", "--detailed-exitcode"]).expect(0);
    let file: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&router).unwrap()).unwrap();
    let online: Vec<&str> = file["active"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a[0].as_str().unwrap())
        .collect();
    assert!(
        online.contains(&"ana.garcia") && !online.contains(&"luis.torres"),
        "{online:?}"
    );
}

/// The same report in text: one line with the count, and the customer who is not back.
#[test]
fn the_text_report_names_who_did_not_redial() {
    let lab = shared_default_change(50);
    edit(&lab.lab().join("routers/balanceador.json"), |text| {
        let mut file: serde_json::Value = serde_json::from_str(&text).unwrap();
        file["redial_ms"] = serde_json::json!(100);
        for s in file["secrets"].as_array_mut().unwrap() {
            if s["name"] == "ana.garcia" {
                s["password"] = serde_json::json!("ana-cpe-old");
            }
        }
        file.to_string()
    });
    edit(&lab.desired().join("pppoe/balanceador.yaml"), |text| {
        text.replacen("kick: on-change", "redial_wait: 3s\nkick: on-change", 1)
    });
    let apply = lab.run(&["apply", "--auto-approve"]);
    apply.expect(0);
    assert!(
        apply.stdout.contains(
            "Redial: 1 of 2 disconnected customer(s) back on /ppp/active within redial_wait."
        ),
        "{}",
        apply.all()
    );
    let line = apply
        .stdout
        .lines()
        .find(|l| l.contains("applied") && l.contains("ana.garcia"))
        .unwrap_or_default();
    assert!(
        line.contains("not back on /ppp/active within redial_wait"),
        "{}",
        apply.all()
    );
}

/// Waits that would not fit the router's apply deadline (the pauses between waves, then
/// `redial_wait`) are refused at plan time, with the sum and the deadline; nothing is written.
#[test]
fn waits_over_the_routers_deadline_are_refused_at_plan_time() {
    let lab = shared_default_change(50);
    edit(&lab.desired().join("pppoe/balanceador.yaml"), |text| {
        text.replacen("kick: on-change", "redial_wait: 2h\nkick: on-change", 1)
    });
    let before = writes(&lab);
    let plan = lab.run(&["plan"]);
    assert_eq!(plan.code, 1, "{}", plan.all());
    assert!(
        plan.all().contains(
            "router balanceador: the kicks need 1 wave(s) and 2h of waiting (kick_rollout.pause between waves, then redial_wait), not less than deadline.apply_secs"
        ),
        "{}",
        plan.all()
    );
    lab.run(&["apply", "--auto-approve"]).expect(1);
    assert_eq!(writes(&lab), before, "nothing was written");
}
