//! `kill -9` at every write of an apply, for every kind, then apply again: the run converges
//! to what an uninterrupted apply gives (nothing lost, nothing doubled), the plan after it is
//! empty, and no temporary file is left anywhere.
//!
//! The kill points are the lab's crash points (`LAB/crash-after-writes`, see
//! `wispctl::lab::twin::crash`): the Nth write of the run (a twin's state changed and saved, or a
//! file written and not yet renamed into place) ends the process with SIGKILL. The loop raises
//! N until an apply finishes before reaching it, so every write of the apply is a kill point.

mod common;

use std::collections::BTreeMap;
use std::os::unix::process::ExitStatusExt;
use std::path::Path;

use common::Lab;
use serde_json::Value;

/// More writes than any kind's apply of the example makes; the loop stops well before.
const MAX_KILL_POINTS: usize = 60;

/// Applies `target` with a kill at every write, checking each interrupted run converges.
fn kill_at_every_write(target: &str) -> usize {
    let reference = Lab::new();
    reference
        .run(&["apply", "--auto-approve", "--target", target])
        .expect(0);
    let expected = state(&reference.lab());
    for n in 1..=MAX_KILL_POINTS {
        let lab = Lab::new();
        std::fs::write(lab.lab().join("crash-after-writes"), n.to_string()).unwrap();
        let mut cmd = lab.command(&["apply", "--auto-approve", "--target", target]);
        let out = cmd.output().unwrap();
        std::fs::remove_file(lab.lab().join("crash-after-writes")).unwrap();
        if out.status.signal().is_none() {
            // Fewer than n writes: the whole apply ran; every kill point was covered.
            assert_eq!(
                out.status.code(),
                Some(0),
                "{target}: uninterrupted apply failed"
            );
            eprintln!(
                "{target}: killed at each of {} writes, then converged",
                n - 1
            );
            return n - 1;
        }
        assert_eq!(
            out.status.signal(),
            Some(9),
            "{target}: killed at write {n} by SIGKILL"
        );
        let again = lab.run(&["apply", "--auto-approve", "--target", target]);
        assert_eq!(
            again.code,
            0,
            "{target}: apply after a kill at write {n} did not converge:\n{}",
            again.all()
        );
        let plan = lab.run(&["plan", "--detailed-exitcode", "--target", target]);
        assert_eq!(
            plan.code,
            0,
            "{target}: changes left after a kill at write {n} and a second apply:\n{}",
            plan.all()
        );
        assert_eq!(
            leftovers(lab.tmp.path()),
            Vec::<String>::new(),
            "{target}: temporary files left after a kill at write {n} and a second apply"
        );
        let got = state(&lab.lab());
        let differ: Vec<String> = expected
            .keys()
            .chain(got.keys())
            .filter(|k| expected.get(*k) != got.get(*k))
            .map(|k| {
                format!(
                    "{k}:\n  one apply: {:?}\n  kill+apply: {:?}",
                    expected.get(k),
                    got.get(k)
                )
            })
            .collect();
        assert!(
            differ.is_empty(),
            "{target}: a kill at write {n} then apply does not give what one apply gives:\n{}",
            differ.join("\n")
        );
    }
    panic!("{target}: still killed after {MAX_KILL_POINTS} writes");
}

#[test]
fn pppd_files_survive_a_kill_at_every_write() {
    let points = kill_at_every_write("pppd.vps");
    assert!(points >= 3, "only {points} kill points");
}

#[test]
fn a_router_survives_a_kill_at_every_write() {
    let points = kill_at_every_write("pppoe.balanceador");
    assert!(points >= 3, "only {points} kill points");
}

#[test]
fn uisp_survives_a_kill_at_every_write() {
    let points = kill_at_every_write("uisp.main");
    assert!(points >= 3, "only {points} kill points");
}

#[test]
fn antennas_survive_a_kill_at_every_write() {
    let points = kill_at_every_write("airos.clientes");
    assert!(points >= 3, "only {points} kill points");
}

/// A temporary file a killed apply left (a copy of chap-secrets, say) is shown by the next
/// plan as cleanup, never its content, and removed by apply.
#[test]
fn a_temporary_file_left_behind_is_planned_as_cleanup_and_removed() {
    let lab = Lab::new();
    lab.run(&["apply", "--auto-approve", "--target", "pppd.vps"])
        .expect(0);
    let etc_ppp = lab.host().join("etc/ppp");
    let left = etc_ppp.join(".wispctl-tmp-chap-secrets-0a1b2c3d4e5f");
    std::fs::write(&left, "\"admin\" * \"LeftoverSecret42\" *\n").unwrap();
    let plan = lab.run(&["plan", "--detailed-exitcode", "--target", "pppd.vps"]);
    assert_eq!(plan.code, 2, "{}", plan.all());
    assert!(
        plan.stdout
            .contains(r#"pppd.vps.leftover["/etc/ppp/.wispctl-tmp-chap-secrets-0a1b2c3d4e5f"]"#)
            && plan.stdout.contains("cleanup"),
        "{}",
        plan.all()
    );
    assert!(!plan.all().contains("LeftoverSecret42"));
    lab.run(&["apply", "--auto-approve", "--target", "pppd.vps"])
        .expect(0);
    assert!(!left.exists());
    lab.run(&["plan", "--detailed-exitcode", "--target", "pppd.vps"])
        .expect(0);
}

/// Every temporary file under `dir`.
fn leftovers(dir: &Path) -> Vec<String> {
    let mut found = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let e = e.unwrap();
            let t = e.file_type().unwrap();
            if t.is_dir() {
                stack.push(e.path());
            } else if e.file_name().to_string_lossy().starts_with(".wispctl-tmp-") {
                found.push(e.path().display().to_string());
            }
        }
    }
    found
}

/// What the lab's targets hold, without what differs between two equal runs (generated ids,
/// counters): hosts' files, routers' secrets and sessions, UISP's sites and devices by name,
/// antennas' files.
fn state(lab: &Path) -> BTreeMap<String, Value> {
    let mut out = BTreeMap::new();
    let hosts = lab.join("hosts");
    for (path, (bytes, mode)) in common::snapshot(&hosts) {
        let key = format!(
            "host {}",
            path.strip_prefix(&hosts).unwrap_or(&path).display()
        );
        out.insert(
            key,
            Value::String(format!("{mode:o} {}", String::from_utf8_lossy(&bytes))),
        );
    }
    for (folder, pick) in [
        ("routers", &["secrets", "active"][..]),
        ("antennas", &["antennas"][..]),
    ] {
        for (name, v) in json_files(&lab.join(folder)) {
            for field in pick {
                out.insert(format!("{folder}/{name} {field}"), v[*field].clone());
            }
        }
    }
    for (name, v) in json_files(&lab.join("uisp")) {
        out.insert(format!("uisp/{name}"), uisp_by_name(&v["state"]));
    }
    out
}

fn json_files(dir: &Path) -> BTreeMap<String, Value> {
    let mut out = BTreeMap::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return out;
    };
    for e in entries {
        let e = e.unwrap();
        let name = e.file_name().to_string_lossy().into_owned();
        if name.ends_with(".json") {
            let text = std::fs::read_to_string(e.path()).unwrap();
            out.insert(name, serde_json::from_str(&text).unwrap());
        }
    }
    out
}

/// UISP's sites and devices with ids replaced by site names (ids are generated per run).
fn uisp_by_name(state: &Value) -> Value {
    let sites = state["sites"].as_array().cloned().unwrap_or_default();
    let names: BTreeMap<String, String> = sites
        .iter()
        .map(|s| {
            (
                s["id"].as_str().unwrap_or_default().to_string(),
                s["name"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect();
    let site_name = |id: &Value| {
        id.as_str()
            .map(|i| Value::String(names.get(i).cloned().unwrap_or_else(|| "?".into())))
            .unwrap_or(Value::Null)
    };
    let mut sites: Vec<Value> = sites
        .iter()
        .map(|s| {
            let mut s = s.clone();
            s["parent_id"] = site_name(&s["parent_id"]);
            s.as_object_mut().unwrap().remove("id");
            s
        })
        .collect();
    let mut devices: Vec<Value> = state["devices"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .into_iter()
        .map(|mut d| {
            d["site_id"] = site_name(&d["site_id"]);
            d.as_object_mut().unwrap().remove("id");
            d
        })
        .collect();
    sites.sort_by_key(|s| s.to_string());
    devices.sort_by_key(|d| d.to_string());
    serde_json::json!({ "sites": sites, "devices": devices })
}
