//! Conformance: Ansible's community.routeros (3.14.0, on ansible-core 2.19 and librouteros)
//! against the lab's RouterOS API server, for both personalities.
//!
//! Each test starts two `RouterLab`s (RouterOS 7 and 6) holding the same secrets, writes an
//! inventory in a temporary folder and runs `tests/ansible/conformance.yml` once for both:
//! `api_info` (path `ppp secret`), `api_modify` with `handle_absent_entries: remove`,
//! `api_info` again, and `api_modify` with a key the collection does not know. Once with
//! `--check --diff` (nothing may change on the lab), once for real.
//!
//! It fails, never skips, when ansible-playbook or the collection is missing:
//! `bash tests/setup.sh` installs both.

#[path = "ansible/mod.rs"]
mod ansible;

use std::collections::BTreeMap;
use std::time::Duration;

use routeros_api::server::{RouterConfig, RouterLab, Secret, Version};
use serde_json::{Value, json};
use tokio::runtime::Runtime;

const USER: &str = "ansible";
const PASS: &str = "api-s3cret";
const TIMEOUT: Duration = Duration::from_secs(240);

/// The lab's secrets before any run.
fn seed() -> Vec<Secret> {
    let secret = |name: &str, password: &str, profile: &str, remote: &str| Secret {
        service: "pppoe".into(),
        profile: profile.into(),
        remote_address: remote.into(),
        ..Secret::new(name, password)
    };
    vec![
        Secret {
            comment: "Tomatlan, Juan Perez".into(),
            ..secret("juan.perez", "juan-2024", "10M", "10.10.1.45")
        },
        secret("maria.lopez", "maria-2024", "10M", "10.10.1.46"),
        Secret {
            caller_id: "AA:BB:CC:00:11:22".into(),
            // Not ASCII, and a password holding '=': encoding UTF-8 and the word split.
            ..secret(
                "jos\u{e9}.n\u{fa}\u{f1}ez",
                "jose=2024",
                "20M",
                "10.10.1.47",
            )
        },
        Secret {
            disabled: true,
            ..Secret::new("clienteprueba", "prueba")
        },
    ]
}

/// The data of `api_modify`: juan.perez moves to 20M, josé.núñez gets a new password,
/// maria.lopez stays, ana.garcia is new, clienteprueba is not named (removed).
fn desired() -> Value {
    json!([
        {"name": "juan.perez", "password": "juan-2024", "profile": "20M",
         "service": "pppoe", "remote-address": "10.10.1.45"},
        {"name": "maria.lopez", "password": "maria-2024", "profile": "10M",
         "service": "pppoe", "remote-address": "10.10.1.46"},
        {"name": "jos\u{e9}.n\u{fa}\u{f1}ez", "password": "jose=2025", "profile": "20M",
         "service": "pppoe", "remote-address": "10.10.1.47", "caller-id": "AA:BB:CC:00:11:22"},
        {"name": "ana.garcia", "password": "ana-2026", "profile": "10M",
         "service": "pppoe", "remote-address": "10.10.1.48"},
    ])
}

/// Two labs (v7, v6) seeded alike, and the runtime serving them.
struct Labs {
    rt: Runtime,
    labs: Vec<(&'static str, RouterLab)>,
}

impl Labs {
    fn start() -> Labs {
        let rt = Runtime::new().unwrap();
        let mut labs = Vec::new();
        for (host, version) in [("v7", Version::V7), ("v6", Version::V6)] {
            let config = RouterConfig {
                users: vec![("admin".into(), String::new()), (USER.into(), PASS.into())],
                profiles: vec!["10M".into(), "20M".into(), "Morosos".into()],
                ..RouterConfig::new(version)
            };
            let lab = rt.block_on(RouterLab::start(config)).unwrap();
            lab.set_secrets(seed());
            labs.push((host, lab));
        }
        Labs { rt, labs }
    }

    /// A workspace whose inventory names both labs.
    fn workspace(&self) -> ansible::Workspace {
        let ws = ansible::Workspace::new();
        let mut hosts = serde_json::Map::new();
        for (host, lab) in &self.labs {
            hosts.insert((*host).into(), json!({}));
            ws.write_host_vars(
                host,
                &json!({
                    "api_port": lab.addr().port(),
                    "api_user": USER,
                    "api_password": PASS,
                    "desired_secrets": desired(),
                }),
            );
        }
        ws.write_inventory(&Value::Object(hosts));
        ws
    }
}

impl Drop for Labs {
    fn drop(&mut self) {
        for (_, lab) in &mut self.labs {
            self.rt.block_on(lab.shutdown());
        }
    }
}

/// Entries by name.
fn by_name(entries: &Value) -> BTreeMap<String, Value> {
    entries
        .as_array()
        .unwrap_or_else(|| panic!("a list of entries: {entries}"))
        .iter()
        .map(|e| (e["name"].as_str().expect("a name").to_string(), e.clone()))
        .collect()
}

/// What api_info returned matches the lab, entry for entry.
fn assert_info_matches(host: &str, info: &Value, lab: &[Secret]) {
    let entries = info.as_array().expect("api_info result is a list");
    assert_eq!(
        entries.len(),
        lab.len(),
        "{host}: api_info saw {info}, the lab holds {lab:?}"
    );
    for (e, s) in entries.iter().zip(lab) {
        let at = format!("{host}: entry {e}");
        assert_eq!(e[".id"], s.id.as_str(), "{at}");
        assert_eq!(e["name"], s.name.as_str(), "{at}");
        assert_eq!(e["password"], s.password.as_str(), "{at}");
        assert_eq!(e["profile"], s.profile.as_str(), "{at}");
        assert_eq!(e["service"], s.service.as_str(), "{at}");
        assert_eq!(e["disabled"], s.disabled, "{at}");
        assert_eq!(e["caller-id"], s.caller_id.as_str(), "{at}");
        assert_eq!(e["limit-bytes-in"], s.limit_bytes_in, "{at}");
        assert_eq!(e["routes"], s.routes.as_str(), "{at}");
        if s.remote_address.is_empty() {
            assert!(e.get("remote-address").is_none(), "{at}");
        } else {
            assert_eq!(e["remote-address"], s.remote_address.as_str(), "{at}");
        }
        // Fields the collection does not know (comment, last-*) are filtered out.
        assert!(e.get("comment").is_none(), "{at}");
        assert!(e.get("last-logged-out").is_none(), "{at}");
    }
}

/// What api_modify reported: (added, changed, removed) names, each sorted.
fn modify_summary(modify: &Value) -> (Vec<String>, Vec<String>, Vec<String>) {
    let old = by_name(&modify["old_data"]);
    let new = by_name(&modify["new_data"]);
    let added = new.keys().filter(|k| !old.contains_key(*k)).cloned();
    let removed = old.keys().filter(|k| !new.contains_key(*k)).cloned();
    let changed = new
        .iter()
        .filter(|(k, v)| old.get(*k).is_some_and(|o| o != *v))
        .map(|(k, _)| k.clone());
    (added.collect(), changed.collect(), removed.collect())
}

fn expected_summary() -> (Vec<String>, Vec<String>, Vec<String>) {
    (
        vec!["ana.garcia".into()],
        vec!["jos\u{e9}.n\u{fa}\u{f1}ez".into(), "juan.perez".into()],
        vec!["clienteprueba".into()],
    )
}

/// The checks common to both runs, on one host's results.
fn check_common(host: &str, out: &Value, before: &[Secret]) {
    assert_info_matches(host, &out["info_before"], before);
    let modify = &out["modify"];
    assert_eq!(modify["changed"], true, "{host}: {modify}");
    assert_eq!(
        modify_summary(modify),
        expected_summary(),
        "{host}: {modify}"
    );
    let new = by_name(&modify["new_data"]);
    assert_eq!(new["juan.perez"]["profile"], "20M", "{host}");
    assert_eq!(
        new["jos\u{e9}.n\u{fa}\u{f1}ez"]["password"], "jose=2025",
        "{host}"
    );
    assert_eq!(
        new["maria.lopez"],
        by_name(&modify["old_data"])["maria.lopez"]
    );
    // The lab's known facts about collection 3.14: no comment key on ppp secret.
    let unknown = &out["unknown_key"];
    assert_eq!(unknown["failed"], true, "{host}: {unknown}");
    let msg = unknown["msg"].as_str().unwrap_or_default();
    assert!(
        msg.starts_with("Unknown key \"comment\""),
        "{host}: unexpected message {msg:?}"
    );
}

#[test]
fn api_info_and_api_modify_in_check_mode_change_nothing() {
    let labs = Labs::start();
    let ws = labs.workspace();
    let before: Vec<Vec<Secret>> = labs.labs.iter().map(|(_, l)| l.secrets()).collect();

    let (output, took) = ws.run("conformance.yml", &["--check", "--diff"], TIMEOUT);
    ansible::assert_success(&output);
    let stdout = String::from_utf8_lossy(&output.stdout);
    eprintln!("ansible-playbook --check --diff took {took:?}");

    for ((host, lab), before) in labs.labs.iter().zip(&before) {
        let out = ws.read_out(&format!("{host}.json"));
        check_common(host, &out, before);
        // Check mode: the second read sees what the first saw, and so does the test.
        assert_eq!(out["info_after"], out["info_before"], "{host}");
        assert_eq!(&lab.secrets(), before, "{host}: check mode changed the lab");
        let stats = lab.stats();
        for write in [
            "/ppp/secret/add",
            "/ppp/secret/set",
            "/ppp/secret/unset",
            "/ppp/secret/remove",
        ] {
            assert_eq!(stats.count(write), 0, "{host}: {write} in check mode");
        }
        // One connection and login per module run; one print per module run that reads:
        // api_info, api_modify, api_info. The one refusing the unknown key logs in, then
        // refuses before reading. librouteros closes without /quit.
        assert_eq!(stats.count("/ppp/secret/print"), 3, "{host}: {stats:?}");
        assert_eq!(stats.count("/login"), 4, "{host}: {stats:?}");
        assert_eq!(stats.connections, 4, "{host}: {stats:?}");
        assert_eq!(stats.commands, 7, "{host}: {stats:?}");
        // With --diff the diff is there for a reviewer.
        let diff = &out["modify"]["diff"];
        assert_eq!(
            by_name(&diff["before"]["data"]),
            by_name(&out["modify"]["old_data"]),
            "{host}"
        );
        assert_eq!(
            by_name(&diff["after"]["data"]),
            by_name(&out["modify"]["new_data"]),
            "{host}"
        );
    }
    // The default callback prints the diff: added, removed and changed lines.
    for line in [
        "+            \"name\": \"ana.garcia\",",
        "-            \"name\": \"clienteprueba\",",
        "-            \"profile\": \"10M\",",
        "+            \"profile\": \"20M\",",
    ] {
        assert!(stdout.contains(line), "no diff line {line:?} in:\n{stdout}");
    }
}

#[test]
fn api_modify_applies_add_set_and_remove() {
    let labs = Labs::start();
    let ws = labs.workspace();
    let before: Vec<Vec<Secret>> = labs.labs.iter().map(|(_, l)| l.secrets()).collect();

    let (output, took) = ws.run("conformance.yml", &[], TIMEOUT);
    ansible::assert_success(&output);
    eprintln!("ansible-playbook took {took:?}");

    for ((host, lab), before) in labs.labs.iter().zip(&before) {
        let out = ws.read_out(&format!("{host}.json"));
        check_common(host, &out, before);
        let after = lab.secrets();
        let names: Vec<&str> = after.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "juan.perez",
                "maria.lopez",
                "jos\u{e9}.n\u{fa}\u{f1}ez",
                "ana.garcia"
            ],
            "{host}"
        );
        let find = |n: &str| after.iter().find(|s| s.name == n).unwrap().clone();
        let juan = find("juan.perez");
        assert_eq!((juan.id.as_str(), juan.profile.as_str()), ("*1", "20M"));
        assert_eq!(juan.comment, "Tomatlan, Juan Perez", "{host}: untouched");
        assert_eq!(find("jos\u{e9}.n\u{fa}\u{f1}ez").password, "jose=2025");
        assert_eq!(find("maria.lopez"), before[1], "{host}");
        let ana = find("ana.garcia");
        assert_eq!(
            (
                ana.id.as_str(),
                ana.password.as_str(),
                ana.profile.as_str(),
                ana.service.as_str(),
                ana.remote_address.as_str()
            ),
            ("*5", "ana-2026", "10M", "pppoe", "10.10.1.48"),
            "{host}"
        );
        assert_info_matches(host, &out["info_after"], &after);
        // One print, one batched remove, one set per changed entry, one add per new one;
        // then a print for the returned new_data.
        let stats = lab.stats();
        assert_eq!(stats.count("/ppp/secret/remove"), 1, "{host}: {stats:?}");
        assert_eq!(stats.count("/ppp/secret/set"), 2, "{host}: {stats:?}");
        assert_eq!(stats.count("/ppp/secret/add"), 1, "{host}: {stats:?}");
        assert_eq!(stats.count("/ppp/secret/print"), 4, "{host}: {stats:?}");
    }
}
