//! Acceptance of the airOS provider on the lab fleet (in-process SSH antennas that run exactly
//! the provider's commands): after apply both files carry the new URI once and every other line
//! is byte for byte the same, the udapi-bridge model runs the new URI; a connected device's own
//! key is not drift; an unreachable or hanging antenna is reported (exit 1) and never stops the
//! others; a failed canary wave stops the rollout and a wave stops past its failure threshold;
//! the working credential is remembered (a keyed hash, never a password); a changed host key
//! is refused; a stale plan is refused; apply then plan shows no changes (property). Half-done
//! work (a persist that failed, a bridge that did not come back) is planned again with its
//! reason and finished by the next apply; `/sbin/cfgmtd` missing is an error before anything is
//! written; correct CRLF lines are never rewritten; an antenna that floods its answer is cut
//! off at the byte limit.
//!
//! The engine runs in-process against fleets started here, so each test sees the antennas'
//! state, faults and command log.

mod common;

use common::rt;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use proptest::prelude::*;
use serde_json::json;
use wispctl::engine::{Context, Engine, Event, Events, PlannedRun, TargetFilter};
use wispctl::kinds::airos::config::SystemCfg;
use wispctl::kinds::airos::spec::GroupEndpoints;
use wispctl::kinds::airos::twin::fleet::{
    AntennaFile, Cfgmtd, Fault, Fleet, FleetFile, FleetOptions, JumpFile,
};
use wispctl::kinds::airos::{KNOWN_HOSTS_FILE, Kind as Airos};
use wispctl::kinds::uisp::twin::server::{LabDevice, UispConfig, UispLab, UispState};
use wispctl::lab::LabEndpoints;
use wispctl::plan::Plan;
use wispctl::plan::report::{ApplyReport, Status};
use wispctl::secret::{HashKey, SecretResolver};
use wispctl::uisp_api::Endpoint;

const KEY: &str = "NewLabMasterKey0123456789abcdefghijklmnopqrstuvw";
const OLD_KEY: &str = "OldLabMasterKey0123456789abcdefghijklmnopqrstuvw";
const PW1: &str = "lab-antenna-first-pw";
const PW2: &str = "lab-antenna-second-pw";
const TOKEN: &str = "lab-uisp-token-airos";

fn new_uri() -> String {
    format!("wss://uisp.new.lab.invalid:443+{KEY}+allowSelfSignedCertificate")
}

fn old_uri() -> String {
    format!("wss://uisp.old.lab.invalid:443+{OLD_KEY}+allowSelfSignedCertificate")
}

/// A configuration with the given `unms.*` lines among others that must never change
/// (including a CRLF line and bytes that look like shell).
fn cfg(unms: &str) -> String {
    format!(
        "aaa.1.status=disabled\nunms.status=enabled\n{unms}ppp.1.password=pw'$(touch x)\"\r\nresolv.host.1.name=LBE\nwireless.1.ssid=Tomatlan AP\n"
    )
}

fn antenna(i: usize, system: String, running: Option<String>) -> AntennaFile {
    AntennaFile {
        host: host(i),
        system_cfg: system,
        running_cfg: running,
        board_info: format!("board.name=LiteBeam M5\nboard.hwaddr=F09FC2AA{i:04X}\n"),
        version: "XW.v6.2.0\n".into(),
        logins: vec![("ubnt".into(), PW1.into())],
        host_key: AntennaFile::new_key(i as u64 + 1),
        flash: None,
        fault: None,
        ..AntennaFile::default()
    }
}

fn host(i: usize) -> String {
    format!("10.10.{}.{}", 1 + i / 200, 10 + i % 200)
}

fn mac(i: usize) -> String {
    let m = format!("F09FC2AA{i:04X}");
    (0..6)
        .map(|k| &m[k * 2..k * 2 + 2])
        .collect::<Vec<_>>()
        .join(":")
}

fn old_antenna(i: usize) -> AntennaFile {
    let line = format!("unms.uri={}\n", old_uri());
    antenna(i, cfg(&line), Some(cfg(&line)))
}

struct World {
    tmp: tempfile::TempDir,
    key: Arc<HashKey>,
    /// Shared with an event sink that looks at the fleet while a run goes on.
    fleet: Arc<Fleet>,
    uisp: Option<UispLab>,
    group: serde_json::Value,
}

impl World {
    async fn start(file: FleetFile, uisp: Option<UispState>) -> World {
        let tmp = tempfile::tempdir().unwrap();
        let fleet = Arc::new(
            Fleet::start(
                &file,
                FleetOptions {
                    legacy_only: true,
                    ..FleetOptions::default()
                },
            )
            .await
            .unwrap(),
        );
        let uisp = match uisp {
            Some(state) => {
                let config = UispConfig {
                    connection_string: new_uri(),
                    ..UispConfig::with_token(TOKEN)
                };
                Some(UispLab::start(config, state).await.unwrap())
            }
            None => None,
        };
        let mut known = String::new();
        for a in &file.antennas {
            known.push_str(&format!(
                "{}:22 {}\n",
                a.host,
                fleet.fingerprint(&a.host).unwrap()
            ));
        }
        if file.jump.is_some() {
            known.push_str(&format!(
                "10.147.17.5:22 {}\n",
                fleet.jump_fingerprint().unwrap()
            ));
        }
        std::fs::write(tmp.path().join(KNOWN_HOSTS_FILE), known).unwrap();
        std::fs::write(tmp.path().join("pw1"), PW1).unwrap();
        std::fs::write(tmp.path().join("pw2"), PW2).unwrap();
        std::fs::write(tmp.path().join("jump-pw"), "lab-jump-pw").unwrap();
        std::fs::write(tmp.path().join("uri"), new_uri()).unwrap();
        std::fs::write(tmp.path().join("token"), TOKEN).unwrap();
        let mut group = json!({
            "legacy": true,
            "credentials": [
                { "user": "ubnt", "password": { "file": "../pw1" } },
                { "user": "ubnt", "password": { "file": "../pw2" } },
            ],
            // Generous: debug-build key exchange on a loaded 2-core machine is slow; the hang
            // tests wait these out in parallel.
            "connect_timeout_secs": 10,
            "command_timeout_secs": 10,
        });
        if file.jump.is_some() {
            group["jump"] = json!({
                "host": "10.147.17.5",
                "credentials": [{ "user": "wispctl", "password": { "file": "../jump-pw" } }],
            });
        }
        let w = World {
            tmp,
            key: Arc::new(HashKey::from_bytes([4; 32])),
            fleet,
            uisp,
            group,
        };
        let antennas: Vec<serde_json::Value> = file
            .antennas
            .iter()
            .map(|a| json!({ "host": a.host }))
            .collect();
        w.write_airos(json!({
            "connection": { "secret": { "file": "../../uri" } },
            "rollout": { "concurrency": 8, "canary": 2, "max_failures": 0 },
            "antennas": antennas,
        }));
        w
    }

    fn dir(&self) -> PathBuf {
        self.tmp.path().join("desired")
    }

    /// Writes the inventory and `airos/clientes.yaml` (JSON is YAML).
    fn write_airos(&self, mut airos: serde_json::Value) {
        std::fs::create_dir_all(self.dir().join("airos")).unwrap();
        let mut inv = json!({ "antenna_groups": { "clientes": self.group } });
        if self.uisp.is_some() {
            inv["uisp"] = json!({ "main": {
                "url": "https://uisp.lab.invalid",
                "token": { "file": "../token" },
            } });
        }
        std::fs::write(
            self.dir().join("inventory.yaml"),
            serde_json::to_string_pretty(&inv).unwrap(),
        )
        .unwrap();
        airos["group"] = json!("clientes");
        std::fs::write(
            self.dir().join("airos/clientes.yaml"),
            serde_json::to_string_pretty(&airos).unwrap(),
        )
        .unwrap();
    }

    fn state_dir(&self) -> PathBuf {
        self.tmp.path().join("state")
    }

    fn engine(&self, trust_new: bool) -> Engine {
        self.engine_with_events(trust_new, Events::none())
    }

    fn engine_with_events(&self, trust_new: bool, events: Events) -> Engine {
        let d = wispctl::desired::load(&self.dir(), &SecretResolver::new()).unwrap();
        let fleet = GroupEndpoints {
            antennas: d.kind::<Airos>().desired["clientes"]
                .antennas
                .iter()
                .filter_map(|a| self.fleet.addr(&a.host).map(|x| (a.host.clone(), x)))
                .collect(),
            jump: self.fleet.jump_addr(),
            known_hosts: self.tmp.path().join(KNOWN_HOSTS_FILE),
        };
        let mut endpoints = LabEndpoints::default();
        endpoints.insert("antenna_groups", "clientes", fleet);
        if let Some(u) = &self.uisp {
            endpoints.insert(
                "uisp",
                "main",
                Endpoint {
                    api: u.url(),
                    ca_pem: u.ca_pem(),
                },
            );
        }
        let mut ctx =
            Context::new(self.key.clone(), self.state_dir()).with_endpoints(Arc::new(endpoints));
        ctx.trust_new_host_keys = trust_new;
        ctx.events = events;
        wispctl::kinds::engine(&d, &ctx, TargetFilter::default(), 10)
    }

    async fn plan(&self) -> PlannedRun {
        self.engine(false).plan().await
    }

    async fn apply(&self) -> (Plan, ApplyReport) {
        let run = self.plan().await;
        let plan = run.plan.clone();
        (plan, run.apply(&BTreeMap::new()).await)
    }

    fn system(&self, i: usize) -> Vec<u8> {
        self.fleet.state(&host(i)).unwrap().system_cfg
    }
}

fn addr(i: usize) -> String {
    format!("airos.clientes[\"{}\"]", host(i))
}

fn status(report: &ApplyReport, i: usize) -> Option<Status> {
    report
        .targets
        .iter()
        .flat_map(|t| &t.outcomes)
        .find(|o| o.address == addr(i))
        .map(|o| o.status)
}

fn reason(report: &ApplyReport, i: usize) -> String {
    report
        .targets
        .iter()
        .flat_map(|t| &t.outcomes)
        .find(|o| o.address == addr(i))
        .and_then(|o| o.reason.clone())
        .unwrap_or_default()
}

fn changed(plan: &Plan) -> Vec<String> {
    plan.targets
        .iter()
        .flat_map(|t| &t.changes)
        .map(|c| c.address.clone())
        .collect()
}

fn object_errors(plan: &Plan) -> BTreeMap<String, String> {
    plan.targets
        .iter()
        .flat_map(|t| t.object_errors.clone())
        .collect()
}

/// Every line but the `unms.*` ones, as bytes.
fn other_lines(bytes: &[u8]) -> Vec<Vec<u8>> {
    bytes
        .split_inclusive(|&b| b == b'\n')
        .filter(|l| !l.starts_with(b"unms."))
        .map(<[u8]>::to_vec)
        .collect()
}

#[test]
fn apply_rewrites_both_files_in_place_and_the_bridge_runs_the_new_uri() {
    rt().block_on(async {
        // 0: old everywhere; 1: system.cfg fixed by the old script, running.cfg still old;
        // 2: already right; 3: no running.cfg, unms.uri written twice.
        let new_line = format!("unms.uri={}\n", new_uri());
        let old_line = format!("unms.uri={}\n", old_uri());
        let file = FleetFile {
            antennas: vec![
                old_antenna(0),
                antenna(1, cfg(&new_line), Some(cfg(&old_line))),
                antenna(2, cfg(&new_line), Some(cfg(&new_line))),
                antenna(3, cfg(&format!("{old_line}{old_line}")), None),
            ],
            jump: Some(JumpFile {
                logins: vec![("wispctl".into(), "lab-jump-pw".into())],
                host_key: AntennaFile::new_key(99),
            }),
        };
        let w = World::start(file.clone(), None).await;
        let (plan, report) = w.apply().await;
        assert_eq!(changed(&plan), vec![addr(0), addr(1), addr(3)]);
        assert!(report.succeeded(), "{report:#?}");
        for (i, before) in file.antennas.iter().enumerate() {
            let s = w.fleet.state(&host(i)).unwrap();
            for (name, now, was) in [
                (
                    "system.cfg",
                    Some(s.system_cfg.clone()),
                    Some(before.system_cfg.clone()),
                ),
                (
                    "running.cfg",
                    s.running_cfg.clone(),
                    before.running_cfg.clone(),
                ),
            ] {
                let (Some(now), Some(was)) = (now, was) else {
                    assert!(s.running_cfg.is_none() && before.running_cfg.is_none());
                    continue;
                };
                let cfg = SystemCfg::parse(&now);
                assert_eq!(cfg.count("unms.uri"), 1, "{} {name}", host(i));
                assert_eq!(cfg.get("unms.uri"), Some(new_uri()), "{} {name}", host(i));
                assert_eq!(
                    other_lines(&now),
                    other_lines(was.as_bytes()),
                    "{} {name}: a line wispctl does not own changed",
                    host(i)
                );
            }
            assert_eq!(s.bridge_uri, Some(new_uri()), "{}", host(i));
            assert!(s.rejected.is_empty(), "{:?}", s.rejected);
            if i == 2 {
                // Already right: read once per run, never written.
                assert_eq!(s.bridge_restarts, 0);
                assert_eq!(s.flash.as_deref(), Some(before.system_cfg.as_bytes()));
                assert_eq!(s.changed_mark, None);
            } else {
                assert_eq!(s.bridge_restarts, 1, "{}", host(i));
                assert!(s.supervisor_alive);
                assert_eq!(s.flash.as_deref(), Some(s.system_cfg.as_slice()));
            }
        }
        let again = w.plan().await.plan;
        assert!(changed(&again).is_empty(), "{:?}", changed(&again));
        assert!(again.problems().is_empty(), "{:?}", again.problems());
    });
}

#[test]
fn a_connected_device_with_its_own_key_is_not_drift() {
    rt().block_on(async {
        let own =
            "unms.uri=wss://uisp.new.lab.invalid:443+deviceOwnKey0042+allowSelfSignedCertificate\n";
        let file = FleetFile {
            antennas: vec![
                antenna(0, cfg(own), Some(cfg(own))),
                antenna(1, cfg(own), Some(cfg(own))),
                antenna(2, cfg(own), Some(cfg(own))),
            ],
            jump: None,
        };
        // Antenna 0 is connected (active, in a site); antenna 1 is known to UISP but not
        // connected.
        let state = UispState {
            sites: vec![wispctl::kinds::uisp::twin::server::LabSite::new(
                "50000000-0000-4000-8000-0000000000aa",
                "Tomatlan",
                "site",
                None,
            )],
            devices: vec![
                LabDevice::new(
                    "d0000000-0000-4000-8000-0000000000a0",
                    &mac(0),
                    Some("cpe 0"),
                    Some("10.10.1.10/24"),
                    Some("50000000-0000-4000-8000-0000000000aa"),
                ),
                LabDevice::new(
                    "d0000000-0000-4000-8000-0000000000a1",
                    &mac(1),
                    None,
                    None,
                    None,
                ),
            ],
        };
        let w = World::start(file, Some(state)).await;
        w.write_airos(json!({
            "connection": { "uisp": "main" },
            "antennas": [{ "host": host(0), "mac": mac(0) }, { "host": host(1) }, { "host": host(2) }],
        }));
        let plan = w.plan().await.plan;
        assert_eq!(changed(&plan), vec![addr(1), addr(2)], "{plan:#?}");
        // Antenna 2 points at the right server with a key that is not the master key, and UISP
        // does not list it at all: not connected, so a change, and the plan says why.
        assert!(object_errors(&plan).is_empty());
        let c2 = &plan.targets[0].changes[1];
        assert!(
            c2.reason.as_deref().unwrap().ends_with("(UISP main lists no device with this MAC or address)"),
            "{c2:?}"
        );
        assert!(plan.targets[0].changes[0].fields.iter().any(|f| f.name == "key" && f.sensitive));
        let c = &plan.targets[0].changes[0];
        assert!(
            c.reason
                .as_deref()
                .unwrap()
                .contains("key: (sensitive) differs and the device is not connected in UISP"),
            "{c:?}"
        );
        assert!(
            plan.targets[0]
                .notes
                .iter()
                .any(|n| n.starts_with("1 antenna(s) carry their own device-specific key")),
            "{:?}",
            plan.targets[0].notes
        );
        let shown = format!("{plan:?}");
        for secret in ["deviceOwnKey0042", KEY, TOKEN, PW1] {
            assert!(!shown.contains(secret), "the plan shows {secret}");
        }
    });
}

#[test]
fn an_unreachable_or_hanging_antenna_is_reported_and_the_others_are_applied() {
    rt().block_on(async {
        let file = FleetFile {
            antennas: (0..6).map(old_antenna).collect(),
            jump: None,
        };
        let w = World::start(file, None).await;
        w.fleet.set_fault(&host(3), Some(Fault::Refuse));
        w.fleet.set_fault(&host(4), Some(Fault::HangOnConnect));
        w.fleet.set_fault(&host(5), Some(Fault::HangOnCommand));
        // No wall clock (the antennas are real loopback SSH servers, which tokio's paused clock
        // cannot drive). What a bound on the run's time would show is asserted directly: each
        // hanging antenna ends on the group's configured limit (10 s) and the step it hung in,
        // and they hang side by side, not one after another: when the first of them is given
        // up (the 5th antenna reported), the fleet has already accepted the 6th's connection.
        let connections_at = Arc::new(std::sync::Mutex::new(BTreeMap::new()));
        let events = {
            let (fleet, seen) = (w.fleet.clone(), connections_at.clone());
            Events::to(move |e| {
                if let Event::Progress {
                    what: "antennas read",
                    done,
                    ..
                } = e
                {
                    let connections = fleet.stats().connections;
                    seen.lock().unwrap().entry(done).or_insert(connections);
                }
            })
        };
        let run = w.engine_with_events(false, events).plan().await;
        let plan = run.plan.clone();
        let report = run.apply(&BTreeMap::new()).await;
        let errors = object_errors(&plan);
        assert_eq!(
            errors.keys().cloned().collect::<Vec<_>>(),
            vec![addr(3), addr(4), addr(5)],
            "{errors:?}"
        );
        assert!(
            errors[&addr(4)].ends_with("timed out after 10s while connecting"),
            "{errors:?}"
        );
        assert!(
            errors[&addr(5)].ends_with("timed out after 10s while running `for`"),
            "{errors:?}"
        );
        let at_fifth = connections_at.lock().unwrap().get(&5).copied();
        assert!(
            at_fifth.is_some_and(|c| c >= 6),
            "the hanging antennas were read one after another: {at_fifth:?} connection(s) when the first gave up"
        );
        for i in 0..3 {
            assert_eq!(status(&report, i), Some(Status::Applied));
            assert_eq!(w.fleet.state(&host(i)).unwrap().bridge_uri, Some(new_uri()));
        }
        assert!(
            !report.succeeded(),
            "unreached antennas make the run fail (exit 1)"
        );
        assert_eq!(report.summary.object_errors, 3);
    });
}

#[test]
fn unreachable_antenna_through_the_cli_exits_1_and_names_it() {
    // The lab's own files, one antenna refusing connections: plan and apply exit 1, the
    // others are fixed, and the report names the unreached one.
    let lab = common::Lab::new();
    let path = lab.lab().join("antennas/clientes.json");
    let mut fleet: FleetFile =
        serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    for a in fleet.antennas.iter_mut().filter(|a| a.host == "10.10.1.46") {
        a.fault = Some(Fault::Refuse);
    }
    std::fs::write(&path, serde_json::to_vec_pretty(&fleet).unwrap()).unwrap();
    let r = lab.run(&["plan"]);
    r.expect(1);
    assert!(
        r.stdout.contains("error: airos.clientes[\"10.10.1.46\"]: "),
        "{}",
        r.stdout
    );
    let r = lab.run(&["apply", "--auto-approve"]);
    r.expect(1);
    assert!(
        r.stdout
            .contains("applied airos.clientes[\"10.10.1.47\"] (update)"),
        "{}",
        r.stdout
    );
    assert!(
        r.stdout
            .contains("airos.clientes[\"10.10.1.46\"]: not reached:"),
        "{}",
        r.stdout
    );
    assert!(r.stdout.contains("1 not reached"), "{}", r.stdout);
}

#[test]
fn a_failed_canary_stops_the_rollout_and_a_wave_stops_past_its_threshold() {
    rt().block_on(async {
        let file = FleetFile {
            antennas: (0..8).map(old_antenna).collect(),
            jump: None,
        };
        let w = World::start(file, None).await;
        // The canary is the first two; the second one breaks after the plan read it.
        let run = w.plan().await;
        w.fleet.set_fault(&host(1), Some(Fault::HangOnCommand));
        let report = run.apply(&BTreeMap::new()).await;
        assert_eq!(status(&report, 0), Some(Status::Applied));
        assert_eq!(status(&report, 1), Some(Status::Failed));
        for i in 2..8 {
            assert_eq!(status(&report, i), Some(Status::Skipped), "{i}");
            let s = w.fleet.state(&host(i)).unwrap();
            assert_eq!(s.bridge_restarts, 0, "{i} touched after a failed canary");
            assert_eq!(s.bridge_uri, Some(old_uri()));
        }
        let why = reason(&report, 2);
        assert!(
            why.contains("the canary wave failed (1 of 2 antennas)"),
            "{why}"
        );

        // Canary passes; after it, one at a time, max_failures 1: two failures stop the rest.
        w.fleet.set_fault(&host(1), None);
        w.write_airos(json!({
            "connection": { "secret": { "file": "../../uri" } },
            "rollout": { "concurrency": 1, "canary": 1, "max_failures": 1 },
            "antennas": (0..8).map(|i| json!({ "host": host(i) })).collect::<Vec<_>>(),
        }));
        let run = w.plan().await;
        assert_eq!(
            changed(&run.plan).len(),
            7,
            "antenna 0 was fixed by the canary"
        );
        w.fleet.set_fault(&host(2), Some(Fault::RejectLogins));
        w.fleet.set_fault(&host(3), Some(Fault::RejectLogins));
        let report = run.apply(&BTreeMap::new()).await;
        assert_eq!(status(&report, 1), Some(Status::Applied));
        assert_eq!(status(&report, 2), Some(Status::Failed));
        assert_eq!(status(&report, 3), Some(Status::Failed));
        for i in 4..8 {
            assert_eq!(status(&report, i), Some(Status::Skipped), "{i}");
        }
        let why = reason(&report, 4);
        assert!(
            why.contains("rollout stopped: 2 antenna(s) failed (rollout.max_failures is 1)"),
            "{why}"
        );
        assert!(!format!("{report:?}").contains(PW1));
    });
}

#[test]
fn the_working_credential_is_remembered_as_a_keyed_hash_and_tried_first() {
    rt().block_on(async {
        let mut a = old_antenna(0);
        a.logins = vec![("ubnt".into(), PW2.into())];
        let file = FleetFile {
            antennas: vec![a, old_antenna(1)],
            jump: None,
        };
        let w = World::start(file, None).await;
        let _ = w.plan().await;
        let path = w.state_dir().join("airos/clientes.credentials.json");
        assert!(
            !path.exists(),
            "a plan writes nothing: the credentials are remembered by apply"
        );
        let refused_before = w.fleet.stats().logins_refused;
        assert!(
            refused_before >= 1,
            "the first plan tried the wrong password first"
        );
        let _ = w.apply().await;
        let text = std::fs::read_to_string(&path).unwrap();
        let saved: BTreeMap<String, String> = serde_json::from_str(&text).unwrap();
        assert_eq!(
            saved.keys().cloned().collect::<Vec<_>>(),
            vec![host(0), host(1)]
        );
        assert_ne!(
            saved[&host(0)],
            saved[&host(1)],
            "different credentials worked"
        );
        assert!(
            saved[&host(0)].bytes().all(|b| b.is_ascii_hexdigit()),
            "a keyed hash"
        );
        assert!(!text.contains(PW2) && !text.contains(PW1));
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(
            std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o600
        );
        let refused_after_apply = w.fleet.stats().logins_refused;
        let _ = w.plan().await;
        assert_eq!(
            w.fleet.stats().logins_refused,
            refused_after_apply,
            "remembered: no wrong password tried again"
        );
    });
}

#[test]
fn a_changed_host_key_is_refused_and_an_unknown_one_trusted_only_when_asked() {
    rt().block_on(async {
        let file = FleetFile {
            antennas: vec![old_antenna(0), old_antenna(1)],
            jump: None,
        };
        let w = World::start(file, None).await;
        w.fleet.change_host_key(&host(1), 777);
        let plan = w.plan().await.plan;
        let errors = object_errors(&plan);
        let e = &errors[&addr(1)];
        assert!(e.contains("HOST KEY CHANGED"), "{e}");
        assert!(e.contains(&w.fleet.fingerprint(&host(1)).unwrap()), "{e}");
        assert_eq!(changed(&plan), vec![addr(0)]);
        let commands = w.fleet.state(&host(1)).unwrap().commands;
        assert!(
            commands.is_empty(),
            "a command ran on an impostor: {commands:?}"
        );
        // Trust-on-first-use never overrides a changed key.
        let plan = w.engine(true).plan().await.plan;
        assert!(object_errors(&plan)[&addr(1)].contains("HOST KEY CHANGED"));
        // An unknown antenna: refused unless asked; then pinned.
        let known = w.tmp.path().join(KNOWN_HOSTS_FILE);
        let text = std::fs::read_to_string(&known).unwrap();
        let without: String = text
            .lines()
            .filter(|l| !l.starts_with(&host(0)))
            .map(|l| format!("{l}\n"))
            .collect();
        std::fs::write(&known, &without).unwrap();
        let plan = w.plan().await.plan;
        assert!(
            object_errors(&plan)[&addr(0)].contains("unknown host key"),
            "{:?}",
            object_errors(&plan)
        );
        // Trusted when asked: a plan reads it and writes nothing (the key is trusted in memory
        // for the run); an apply records it.
        let plan = w.engine(true).plan().await.plan;
        assert!(!object_errors(&plan).contains_key(&addr(0)));
        assert_eq!(
            std::fs::read_to_string(&known).unwrap(),
            without,
            "a plan wrote the known-hosts file"
        );
        let run = w.engine(true).plan().await;
        assert_eq!(changed(&run.plan), vec![addr(0)]);
        let report = run.apply(&BTreeMap::new()).await;
        assert_eq!(status(&report, 0), Some(Status::Applied));
        assert!(std::fs::read_to_string(&known).unwrap().contains(&format!(
            "{}:22 {}",
            host(0),
            w.fleet.fingerprint(&host(0)).unwrap()
        )));
        // The changed key was never recorded over the pinned one.
        assert!(
            !std::fs::read_to_string(&known)
                .unwrap()
                .contains(&w.fleet.fingerprint(&host(1)).unwrap())
        );
    });
}

#[test]
fn a_saved_plan_is_refused_when_an_antenna_changed_since() {
    rt().block_on(async {
        let file = FleetFile {
            antennas: vec![old_antenna(0), old_antenna(1)],
            jump: None,
        };
        let w = World::start(file, None).await;
        let saved = w.plan().await.plan;
        // Someone fixes antenna 1 by hand, half-way: only system.cfg.
        let fresh = w.plan().await;
        assert!(
            wispctl::engine::check_saved(&saved, &fresh.plan)
                .unwrap()
                .is_empty()
        );
        drop(fresh);
        let line = format!("unms.uri={}\n", new_uri());
        let other = World::start(
            FleetFile {
                antennas: vec![
                    old_antenna(0),
                    antenna(
                        1,
                        cfg(&line),
                        Some(cfg(&format!("unms.uri={}\n", old_uri()))),
                    ),
                ],
                jump: None,
            },
            None,
        )
        .await;
        // Same key, same desired files: only the live state differs.
        let other = World {
            key: w.key.clone(),
            ..other
        };
        std::fs::copy(
            w.dir().join("airos/clientes.yaml"),
            other.dir().join("airos/clientes.yaml"),
        )
        .unwrap();
        let moved = other.plan().await.plan;
        let refusals = wispctl::engine::check_saved(&saved, &moved).unwrap();
        assert!(
            refusals["airos.clientes"].contains(&addr(1)),
            "{refusals:?}"
        );
    });
}

fn arb_unms() -> impl Strategy<Value = (String, bool)> {
    // Which URI, how many times, whether unms.status is on, and airOS 8's copy.
    (0..4usize, 0..3usize, any::<bool>(), any::<bool>()).prop_map(|(which, times, on, v8)| {
        let uri = match which {
            0 => new_uri(),
            1 => old_uri(),
            2 => "wss://uisp.new.lab.invalid:443+someOtherKey+allowSelfSignedCertificate".into(),
            _ => "garbage".into(),
        };
        let mut s = String::new();
        if !on {
            s.push_str("unms.status=disabled\n");
        }
        for _ in 0..times {
            s.push_str(&format!("unms.uri={uri}\n"));
        }
        if v8 {
            s.push_str(&format!("unms.uri.changed={uri}\n"));
        }
        (s, v8)
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 16, .. ProptestConfig::default() })]

    /// Whatever the antennas hold, apply then plan shows no changes, and every line wispctl
    /// does not own is unchanged.
    #[test]
    fn apply_then_plan_shows_no_changes(fleet in prop::collection::vec((arb_unms(), prop::option::of(arb_unms())), 1..5)) {
        rt().block_on(async {
            let file = FleetFile {
                antennas: fleet.iter().enumerate().map(|(i, ((sys, v8), run))| {
                    let mut a = antenna(i, cfg(sys), run.as_ref().map(|(r, _)| cfg(r)));
                    if *v8 {
                        a.version = "WA.v8.7.11\n".into();
                    }
                    a
                }).collect(),
                jump: None,
            };
            let w = World::start(file.clone(), None).await;
            // The plan from a snapshot of the group is the live plan; no key in the snapshot.
            let live = common::plan_live_and_from_snapshot(|| w.engine(false), &w.key, &[KEY, "someOtherKey", PW1])
                .await
                .map_err(TestCaseError::fail)?;
            let plan = live.plan.clone();
            let report = live.apply(&BTreeMap::new()).await;
            prop_assert!(report.succeeded(), "{:#?}", report);
            // Customer impact: the plan's antenna restarts are the bridges apply restarted,
            // per antenna and in the summary; nothing else is counted.
            let restarted: Vec<String> = (0..file.antennas.len())
                .filter(|&i| w.fleet.state(&host(i)).unwrap().bridge_restarts > 0)
                .map(addr)
                .collect();
            let predicted: Vec<String> = plan.targets.iter().flat_map(|t| &t.changes)
                .filter(|c| c.impact.antenna_restarts > 0)
                .map(|c| c.address.clone())
                .collect();
            prop_assert_eq!(&predicted, &restarted);
            prop_assert_eq!(plan.summary.antenna_restarts, restarted.len());
            prop_assert_eq!((plan.summary.disconnects, plan.summary.tunnel_restarts), (0, 0));
            let again = w.plan().await.plan;
            prop_assert!(changed(&again).is_empty(), "{:?}", again);
            for (i, a) in file.antennas.iter().enumerate() {
                prop_assert_eq!(other_lines(&w.system(i)), other_lines(a.system_cfg.as_bytes()));
                prop_assert_eq!(w.fleet.state(&host(i)).unwrap().bridge_uri, Some(new_uri()));
            }
            Ok(())
        })?;
    }
}

/// The lab's antennas file, to read or edit between commands.
fn lab_fleet(lab: &common::Lab) -> FleetFile {
    let path = lab.lab().join("antennas/clientes.json");
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn edit_lab_fleet(lab: &common::Lab, edit: impl FnOnce(&mut FleetFile)) {
    let mut fleet = lab_fleet(lab);
    edit(&mut fleet);
    let path = lab.lab().join("antennas/clientes.json");
    std::fs::write(path, serde_json::to_vec_pretty(&fleet).unwrap()).unwrap();
}

fn lab_antenna(fleet: &FleetFile, host: &str) -> AntennaFile {
    fleet
        .antennas
        .iter()
        .find(|a| a.host == host)
        .cloned()
        .unwrap()
}

#[test]
fn a_failed_persist_is_planned_again_and_the_next_apply_finishes_the_job() {
    // 10.10.1.48 (airOS 8, old connection string written twice, no running.cfg): its flash
    // refuses the persist. The antennas before it in the rollout are fixed.
    let lab = common::Lab::new();
    let host = "10.10.1.48";
    edit_lab_fleet(&lab, |f| {
        for a in f.antennas.iter_mut().filter(|a| a.host == host) {
            a.fault = Some(Fault::PersistFails);
        }
    });
    let before = lab_antenna(&lab_fleet(&lab), host);
    let r = lab.run(&["apply", "--auto-approve"]);
    r.expect(1);
    let addr = format!("airos.clientes[\"{host}\"]");
    assert!(
        r.stdout.contains(&format!("failed  {addr} (update): ")),
        "{}",
        r.stdout
    );
    for part in [
        "`/sbin/cfgmtd` exited with status 1: Could not open MTD device cfg",
        "the procedure stopped half-way on 10.10.1.48:22 (system.cfg written): the next plan shows what is left, and apply finishes it",
    ] {
        assert!(r.stdout.contains(part), "{part}\n{}", r.stdout);
    }
    // Half done, as the lab kept it: /tmp carries the new string, flash the old one, the
    // bridge still runs the old one.
    let half = lab_antenna(&lab_fleet(&lab), host);
    assert!(
        half.system_cfg
            .contains(wispctl::lab::twin::LAB_CONNECTION_STRING)
    );
    assert_eq!(half.flash.as_deref(), Some(before.system_cfg.as_str()));
    let bridge = half.bridge.clone().unwrap();
    assert!(bridge.running && bridge.started_before_mark);
    assert_ne!(
        bridge.uri.as_deref(),
        Some(wispctl::lab::twin::LAB_CONNECTION_STRING)
    );

    // The next plan does not call it in sync: it says what is left.
    let r = lab.run(&["plan", "--detailed-exitcode"]);
    r.expect(2);
    assert!(
        r.stdout.contains(&format!("~ {addr} will be updated")),
        "{}",
        r.stdout
    );
    for part in [
        "persisted copy (flash) differs: ",
        "udapi-bridge runs the old connection (it started before wispctl last rewrote the files)",
        "persists to flash (/sbin/cfgmtd -w -p /etc/)",
        "restarts udapi-bridge: the device reconnects to UISP",
    ] {
        assert!(r.stdout.contains(part), "{part}\n{}", r.stdout);
    }
    assert!(
        !r.stdout.contains("rewrites the unms.* lines"),
        "the files are right: {}",
        r.stdout
    );

    // The fault cleared (the flash works again): apply finishes, without rewriting the files.
    edit_lab_fleet(&lab, |f| {
        for a in f.antennas.iter_mut().filter(|a| a.host == host) {
            a.fault = None;
        }
    });
    let r = lab.run(&["apply", "--auto-approve"]);
    r.expect(0);
    assert!(
        r.stdout.contains(&format!("applied {addr} (update)")),
        "{}",
        r.stdout
    );
    let done = lab_antenna(&lab_fleet(&lab), host);
    assert_eq!(
        done.system_cfg, half.system_cfg,
        "system.cfg rewritten again"
    );
    assert_eq!(done.flash.as_deref(), Some(done.system_cfg.as_str()));
    let bridge = done.bridge.clone().unwrap();
    assert!(bridge.running && !bridge.started_before_mark);
    assert_eq!(
        bridge.uri.as_deref(),
        Some(wispctl::lab::twin::LAB_CONNECTION_STRING)
    );

    let r = lab.run(&["plan", "--detailed-exitcode"]);
    r.expect(0);
    assert!(
        r.stdout.contains("airos.clientes: up to date"),
        "{}",
        r.stdout
    );
}

#[test]
fn a_bridge_that_does_not_come_back_is_planned_again() {
    let lab = common::Lab::new();
    let host = "10.10.1.46";
    // Its supervisor is gone: the killed bridge is never respawned.
    edit_lab_fleet(&lab, |f| {
        for a in f.antennas.iter_mut().filter(|a| a.host == host) {
            a.supervisor_dead = true;
        }
    });
    let r = lab.run(&["apply", "--auto-approve"]);
    r.expect(1);
    assert!(
        r.stdout.contains(
            "udapi-bridge was killed but no new udapi-bridge process showed up within 5 s"
        ),
        "{}",
        r.stdout
    );
    let r = lab.run(&["plan", "--detailed-exitcode"]);
    r.expect(2);
    assert!(
        r.stdout
            .contains("~ airos.clientes[\"10.10.1.46\"] will be updated"),
        "{}",
        r.stdout
    );
    assert!(
        r.stdout.contains("udapi-bridge is not running"),
        "{}",
        r.stdout
    );
    assert!(
        r.stdout
            .contains("waits for udapi-bridge's supervisor to start it"),
        "{}",
        r.stdout
    );
    // Someone reboots it: supervisor and bridge back (on the files as they are), no mark in
    // the fresh /tmp. Nothing is left to do on it.
    edit_lab_fleet(&lab, |f| {
        for a in f.antennas.iter_mut().filter(|a| a.host == host) {
            a.supervisor_dead = false;
            a.bridge = None;
            a.changed_mark = false;
        }
    });
    let r = lab.run(&["plan"]);
    r.expect(0);
    assert!(
        !r.stdout.contains("airos.clientes[\"10.10.1.46\"]"),
        "{}",
        r.stdout
    );
}

#[test]
fn without_sbin_cfgmtd_the_antenna_fails_clearly_and_nothing_is_written() {
    let lab = common::Lab::new();
    let host = "10.10.1.46";
    edit_lab_fleet(&lab, |f| {
        for a in f.antennas.iter_mut().filter(|a| a.host == host) {
            a.cfgmtd = Cfgmtd::Missing;
        }
    });
    let before = lab_antenna(&lab_fleet(&lab), host);
    let message = "10.10.1.46: /sbin/cfgmtd is missing or not executable, so the change could not be persisted to flash; not touched";
    let r = lab.run(&["plan"]);
    r.expect(1);
    assert!(r.stdout.contains(message), "{}", r.stdout);
    let r = lab.run(&["apply", "--auto-approve"]);
    r.expect(1);
    assert!(r.stdout.contains(message), "{}", r.stdout);
    // The others were fixed; this one not touched at all.
    assert!(
        r.stdout
            .contains("applied airos.clientes[\"10.10.1.47\"] (update)"),
        "{}",
        r.stdout
    );
    let after = lab_antenna(&lab_fleet(&lab), host);
    assert_eq!(after.system_cfg, before.system_cfg);
    assert_eq!(after.running_cfg, before.running_cfg);
    assert!(!after.changed_mark);
    let bridge = after.bridge.unwrap();
    assert!(bridge.running && bridge.uri.as_deref() == Some(OLD_LAB_URI));
}

#[test]
fn a_correct_crlf_file_is_never_rewritten() {
    let lab = common::Lab::new();
    let crlf = |t: &str| t.replace('\n', "\r\n");
    // 10.10.1.50 is right, in CRLF; 10.10.1.47 has a right system.cfg in CRLF and an old
    // running.cfg in CRLF.
    edit_lab_fleet(&lab, |f| {
        for a in f.antennas.iter_mut() {
            if a.host == "10.10.1.50" || a.host == "10.10.1.47" {
                a.system_cfg = crlf(&a.system_cfg);
                a.running_cfg = a.running_cfg.as_deref().map(crlf);
                a.flash = Some(a.system_cfg.clone());
            }
        }
    });
    let before = lab_fleet(&lab);
    let r = lab.run(&["plan"]);
    r.expect(0);
    assert!(
        !r.stdout.contains("airos.clientes[\"10.10.1.50\"]"),
        "a right CRLF antenna is planned: {}",
        r.stdout
    );
    assert!(
        r.stdout
            .contains("running.cfg: host: uisp-viejo.lab.invalid -> uisp.lab.invalid"),
        "{}",
        r.stdout
    );
    let r = lab.run(&["apply", "--auto-approve"]);
    r.expect(0);
    let after = lab_fleet(&lab);
    let (was50, now50) = (
        lab_antenna(&before, "10.10.1.50"),
        lab_antenna(&after, "10.10.1.50"),
    );
    assert_eq!(now50.system_cfg, was50.system_cfg);
    assert_eq!(now50.running_cfg, was50.running_cfg);
    assert!(!now50.changed_mark, "something was written to 10.10.1.50");
    let (was47, now47) = (
        lab_antenna(&before, "10.10.1.47"),
        lab_antenna(&after, "10.10.1.47"),
    );
    assert_eq!(
        now47.system_cfg, was47.system_cfg,
        "system.cfg was in step and was rewritten"
    );
    let running = now47.running_cfg.unwrap();
    assert_eq!(
        running,
        was47
            .running_cfg
            .unwrap()
            .replace(OLD_LAB_URI, wispctl::lab::twin::LAB_CONNECTION_STRING),
        "the URI's line keeps its CRLF, and nothing else changes"
    );
    assert!(running.split_inclusive('\n').all(|l| l.ends_with("\r\n")));
    lab.run(&["plan", "--detailed-exitcode"]).expect(0);
}

const OLD_LAB_URI: &str = wispctl::kinds::airos::twin::OLD_CONNECTION_STRING;

#[test]
fn an_antenna_that_floods_its_answer_is_cut_off_and_nothing_more_is_sent() {
    rt().block_on(async {
        let file = FleetFile {
            antennas: (0..3).map(old_antenna).collect(),
            jump: None,
        };
        let w = World::start(file, None).await;
        w.fleet.set_fault(&host(1), Some(Fault::Flood));
        let run = w.plan().await;
        let errors = object_errors(&run.plan);
        assert_eq!(errors.keys().cloned().collect::<Vec<_>>(), vec![addr(1)]);
        assert_eq!(
            errors[&addr(1)],
            format!(
                "{}:22: `for` answered with more than {} bytes; answer and session abandoned",
                host(1),
                wispctl::ssh::DEFAULT_MAX_ANSWER
            )
        );
        // Nothing was sent after the broken read.
        assert_eq!(
            w.fleet.state(&host(1)).unwrap().commands,
            vec![wispctl::kinds::airos::commands::READ.to_string()]
        );
        assert_eq!(changed(&run.plan), vec![addr(0), addr(2)]);
        let report = run.apply(&BTreeMap::new()).await;
        assert_eq!(status(&report, 0), Some(Status::Applied));
        assert_eq!(status(&report, 2), Some(Status::Applied));
        assert!(!report.succeeded());
    });
}

#[test]
fn a_changed_host_key_is_accepted_explicitly_through_the_cli() {
    let lab = common::Lab::new();
    let path = lab.lab().join("antennas/clientes.json");
    let mut fleet: FleetFile =
        serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    for a in fleet.antennas.iter_mut().filter(|a| a.host == "10.10.1.46") {
        a.host_key = AntennaFile::new_key(4242); // reset or replaced
    }
    std::fs::write(&path, serde_json::to_vec_pretty(&fleet).unwrap()).unwrap();
    let r = lab.run(&["plan"]);
    r.expect(1);
    assert!(r.stdout.contains("HOST KEY CHANGED"), "{}", r.stdout);
    let hint = "`wispctl accept-host-key clientes 10.10.1.46 ";
    let at = r
        .stdout
        .find(hint)
        .unwrap_or_else(|| panic!("{}", r.stdout))
        + hint.len();
    let fingerprint: String = r.stdout[at..].chars().take_while(|c| *c != '`').collect();
    assert!(fingerprint.starts_with("SHA256:"), "{fingerprint}");
    // Nothing was run on the antenna whose key changed; the others were read.
    assert!(
        r.stdout
            .contains("~ airos.clientes[\"10.10.1.47\"] will be updated")
    );

    let bad = lab.run(&[
        "accept-host-key",
        "clientes",
        "10.10.1.46",
        "SHA256:not-base64!",
    ]);
    bad.expect(1);
    let stranger = lab.run(&["accept-host-key", "clientes", "10.10.9.9", &fingerprint]);
    stranger.expect(1);
    assert!(
        stranger
            .stderr
            .contains("neither an antenna of group clientes nor its jump host")
    );

    let ok = lab.run(&["accept-host-key", "clientes", "10.10.1.46", &fingerprint]);
    ok.expect(0);
    assert!(
        ok.stdout
            .contains(&format!("10.10.1.46:22: pinned {fingerprint}")),
        "{}",
        ok.stdout
    );
    assert!(ok.stdout.contains("(replaces SHA256:"), "{}", ok.stdout);
    let r = lab.run(&["plan"]);
    r.expect(0);
    assert!(!r.stdout.contains("HOST KEY CHANGED"), "{}", r.stdout);
    assert!(
        r.stdout
            .contains("~ airos.clientes[\"10.10.1.46\"] will be updated")
    );
}
