//! Benchmark: the airOS provider's plan and apply over 200 and 1,000 lab antennas with 50 ms
//! injected before every answer, against the floor the rollout allows (waves x one session's
//! time) and against a sequential loop of OpenSSH `ssh` commands over 100 of the same
//! antennas, the way the field scripts worked. Side by side in one run.
//!
//! Run: `cargo bench --bench airos_rollout`. Scale with `WISPCTL_BENCH_ANTENNAS=200,1000`
//! (fleet sizes), `WISPCTL_BENCH_LOOP=100` (antennas in the `ssh` loop and in the side-by-side
//! fleet; 0 skips them), `WISPCTL_BENCH_CONCURRENCY=50`, `WISPCTL_BENCH_CANARY=5`,
//! `WISPCTL_BENCH_LATENCY_MS=50`. Under `cargo test` (no `--bench` argument) it only says it
//! was skipped: no timing ever runs as a test.
//!
//! What is measured (wall time; the table on stdout, each run on stderr):
//! - wispctl plan, in-process as `wispctl plan` does it minus process start: `desired::load`
//!   of a generated desired-state folder, the engine's plan (one SSH session per antenna,
//!   `rollout.concurrency` at once: connect, login, READ (files, `cfgmtd`, `ps`), the bridge's
//!   `/proc/PID/stat` and the flash copy: three commands) and the text rendering;
//! - wispctl apply, in-process as `wispctl apply` does it: the same plan, then the rollout
//!   (canary wave, then the rest with bounded concurrency; per antenna one session running
//!   the provider's write procedure: read (three commands), write both files, persist, restart
//!   the bridge, read back; the table counts its commands). Every apply starts from a fresh
//!   fleet, and the bench fails unless every antenna verified (both files and the bridge on the
//!   new URI);
//! - the floor: one session's time, measured alone (the engine's plan of a 1-antenna fleet;
//!   the rollout phase of a 1-antenna apply), times the waves the rollout needs;
//! - the field-script baseline: one `ssh` process per antenna, one after another: READ for
//!   plan, write_system with the new file on stdin for apply (a lower bound for a field script,
//!   which also persisted and restarted the bridge in that connection).
//!
//! The lab fleet (`wispctl::kinds::airos::twin::fleet::Fleet`, `legacy_only`: old dropbear's algorithms)
//! serves from the same process as the client, on the same cores.

#[path = "common/mod.rs"]
mod common;

use common::{fmt, loadavg, median};
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::Write as _;
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::json;
use tokio::runtime::Runtime;
use wispctl::engine::{Context, Engine, TargetFilter};
use wispctl::kinds::airos::KNOWN_HOSTS_FILE;
use wispctl::kinds::airos::commands;
use wispctl::kinds::airos::config::{ConnectionString, SystemCfg};
use wispctl::kinds::airos::spec::GroupEndpoints;
use wispctl::kinds::airos::twin::fleet::{AntennaFile, Fleet, FleetFile, FleetOptions, FleetStats};
use wispctl::lab::LabEndpoints;
use wispctl::plan::render::{Purpose, text};
use wispctl::plan::report::Status;
use wispctl::secret::{HashKey, SecretResolver};

const GROUP: &str = "clientes";
const USER: &str = "ubnt";
/// Lab-only.
const PASSWORD: &str = "lab-antenna-bench-pw";
const NEW_KEY: &str = "NewLabMasterKey0123456789abcdefghijklmnopqrstuvw";
const OLD_KEY: &str = "OldLabMasterKey0123456789abcdefghijklmnopqrstuvw";
/// Runs of the 1-antenna plan and apply that give one session's time.
const SINGLE_RUNS: usize = 5;
/// Fleets at least this big get fewer runs (an apply of 1,000 takes tens of seconds).
const BIG: usize = 500;
const SSH_TIMEOUT_SECS: u32 = 10;

fn main() {
    if !std::env::args().any(|a| a == "--bench") {
        println!(
            "airos_rollout: skipped (a benchmark; run it with `cargo bench --bench airos_rollout`)"
        );
        return;
    }
    Bench::new(Settings::from_env()).run();
}

struct Settings {
    sizes: Vec<usize>,
    loop_n: usize,
    concurrency: usize,
    canary: usize,
    latency: Duration,
}

impl Settings {
    fn from_env() -> Settings {
        let num = |name: &str, default: usize| -> usize {
            std::env::var(name).ok().map_or(default, |v| {
                v.trim()
                    .parse()
                    .unwrap_or_else(|_| panic!("{name} is a number"))
            })
        };
        let sizes = std::env::var("WISPCTL_BENCH_ANTENNAS").ok().map_or_else(
            || vec![200, 1000],
            |v| {
                v.split(',')
                    .filter(|s| !s.trim().is_empty())
                    .map(|s| {
                        s.trim().parse().unwrap_or_else(|_| {
                            panic!("WISPCTL_BENCH_ANTENNAS: numbers, comma-separated")
                        })
                    })
                    .collect()
            },
        );
        let s = Settings {
            sizes,
            loop_n: num("WISPCTL_BENCH_LOOP", 100),
            concurrency: num("WISPCTL_BENCH_CONCURRENCY", 50),
            canary: num("WISPCTL_BENCH_CANARY", 5),
            latency: Duration::from_millis(num("WISPCTL_BENCH_LATENCY_MS", 50) as u64),
        };
        assert!(s.concurrency >= 1, "WISPCTL_BENCH_CONCURRENCY: at least 1");
        assert!(
            s.sizes.iter().all(|&n| (1..=40_000).contains(&n)),
            "WISPCTL_BENCH_ANTENNAS: 1 to 40,000 each (hosts are 10.10.X.Y)"
        );
        s
    }

    /// Waves of the observe: `concurrency` sessions at once.
    fn plan_waves(&self, n: usize) -> usize {
        n.div_ceil(self.concurrency)
    }

    /// Waves of the rollout: the canary, then the rest `concurrency` at once.
    fn rollout_waves(&self, n: usize) -> usize {
        let canary = self.canary.min(n);
        usize::from(canary > 0) + (n - canary).div_ceil(self.concurrency)
    }
}

// ---------------------------------------------------------------------------------------------
// Data
// ---------------------------------------------------------------------------------------------

fn host(i: usize) -> String {
    format!("10.10.{}.{}", 1 + i / 200, 10 + i % 200)
}

fn new_uri() -> String {
    format!("wss://uisp.new.lab.invalid:443+{NEW_KEY}+allowSelfSignedCertificate")
}

fn old_uri() -> String {
    format!("wss://uisp.old.lab.invalid:443+{OLD_KEY}+allowSelfSignedCertificate")
}

/// A system.cfg shaped like an airOS 6 station's (sorted `key=value` lines, about 170 lines
/// and 4 KB), with the old connection string.
fn system_cfg(i: usize) -> String {
    let mut s = String::new();
    let mut line = |k: &str, v: &str| {
        s.push_str(k);
        s.push('=');
        s.push_str(v);
        s.push('\n');
    };
    line("aaa.1.status", "disabled");
    line("aaa.status", "disabled");
    for (k, v) in [
        ("devname", "br0"),
        ("fd", "1"),
        ("port.1.devname", "eth0"),
        ("port.1.status", "enabled"),
        ("port.2.devname", "ath0"),
        ("port.2.status", "enabled"),
        ("status", "enabled"),
        ("stp.status", "disabled"),
    ] {
        line(&format!("bridge.1.{k}"), v);
    }
    line("bridge.status", "enabled");
    line("dhcpc.1.devname", "br0");
    line("dhcpc.1.status", "disabled");
    line("dhcpc.status", "disabled");
    line("discovery.cdp.status", "enabled");
    line("discovery.status", "enabled");
    line("ebtables.status", "disabled");
    line("gui.language", "es_ES");
    line("httpd.https.status", "enabled");
    line("httpd.port", "80");
    line("httpd.status", "enabled");
    for (n, dev) in ["eth0", "ath0", "br0", "eth1"].iter().enumerate() {
        for (k, v) in [
            ("autoip.status", "disabled"),
            ("autoneg", "enabled"),
            ("devname", dev),
            ("flowcontrol.rx.status", "enabled"),
            ("flowcontrol.tx.status", "enabled"),
            ("mtu", "1500"),
            ("netmask", "255.255.255.0"),
            ("role", "bridge"),
            ("status", "enabled"),
            ("up", "enabled"),
        ] {
            line(&format!("netconf.{}.{k}", n + 1), v);
        }
    }
    line(
        "netconf.3.ip",
        &format!("10.10.{}.{}", 1 + i / 200, 10 + i % 200),
    );
    line("netconf.status", "enabled");
    for (k, v) in [
        ("ack.auto", "enabled"),
        ("antenna.gain", "23"),
        ("antenna.id", "4"),
        ("chanbw", "20"),
        ("clksel", "1"),
        ("countrycode", "484"),
        ("cwm.enable", "0"),
        ("cwm.mode", "1"),
        ("devname", "ath0"),
        ("dfs.status", "enabled"),
        ("forbiasauto", "0"),
        ("freq", "0"),
        ("ieee_mode", "auto"),
        ("low_txpower_mode", "disabled"),
        ("mode", "managed"),
        ("obey", "enabled"),
        ("polling", "enabled"),
        ("pollingnoack", "0"),
        ("pollingpri", "2"),
        ("ptpmode", "0"),
        ("rate.auto", "enabled"),
        ("rate.mcs", "auto"),
        ("reg_obey", "enabled"),
        ("rx_sensitivity", "-96"),
        ("scan_list.status", "disabled"),
        ("status", "enabled"),
        ("subsystemid", "0xe2c5"),
        ("thresh62a", "28"),
        ("txpower", "19"),
    ] {
        line(&format!("radio.1.{k}"), v);
    }
    line("radio.countrycode", "484");
    line("radio.status", "enabled");
    line("resolv.host.1.name", &format!("LBE-{i:04}"));
    line("resolv.host.1.status", "enabled");
    line("resolv.nameserver.1.ip", "10.10.0.1");
    line("resolv.nameserver.1.status", "enabled");
    line("resolv.status", "enabled");
    line("route.1.devname", "br0");
    line("route.1.gateway", "10.10.0.1");
    line("route.1.ip", "0.0.0.0");
    line("route.1.netmask", "0");
    line("route.1.status", "enabled");
    line("route.status", "enabled");
    for (k, v) in [
        ("community", "public"),
        ("contact", "noc@wisp.lab.invalid"),
        ("location", "Tomatlan"),
        ("status", "enabled"),
    ] {
        line(&format!("snmp.{k}"), v);
    }
    line("sshd.auth.passwd", "enabled");
    line("sshd.port", "22");
    line("sshd.status", "enabled");
    line("syslog.status", "enabled");
    line("system.airosx.prov.status", "enabled");
    line("system.button.reset", "enabled");
    line("system.date.status", "disabled");
    line("system.timezone", "GMT+6");
    line("unms.status", "enabled");
    line("unms.uri", &old_uri());
    line("update.check.status", "enabled");
    line("users.1.name", USER);
    line("users.1.password", "$1$Nc.QA8nW$eE2YKv0uSCwxGi7nUa1Xo/");
    line("users.1.status", "enabled");
    line("users.status", "enabled");
    for (k, v) in [
        ("addmtikie", "enabled"),
        ("devname", "ath0"),
        ("hide_ssid", "disabled"),
        ("l2_isolation", "disabled"),
        ("mac_acl.policy", "allow"),
        ("mac_acl.status", "disabled"),
        ("security.type", "none"),
        ("signal_led1", "75"),
        ("signal_led2", "50"),
        ("signal_led3", "25"),
        ("signal_led4", "15"),
        ("signal_led_status", "enabled"),
        ("ssid", "Tomatlan AP 3"),
        ("status", "enabled"),
        ("wds.status", "enabled"),
    ] {
        line(&format!("wireless.1.{k}"), v);
    }
    line("wireless.status", "enabled");
    for (k, v) in [
        ("device.1.devname", "ath0"),
        ("device.1.driver", "madwifi"),
        ("device.1.profile", "AUTO"),
        ("device.1.status", "enabled"),
        ("profile.1.name", "AUTO"),
        ("profile.1.network.1.key_mgmt.1.name", "WPA-PSK"),
        ("profile.1.network.1.pairwise.1.name", "CCMP"),
        ("profile.1.network.1.psk", "lab-only-wpa-key-0123456789"),
        ("profile.1.network.1.ssid", "Tomatlan AP 3"),
        ("status", "enabled"),
    ] {
        line(&format!("wpasupplicant.{k}"), v);
    }
    s
}

fn antenna(i: usize) -> AntennaFile {
    let cfg = system_cfg(i);
    AntennaFile {
        host: host(i),
        system_cfg: cfg.clone(),
        running_cfg: Some(cfg),
        board_info: format!(
            "board.sysid=0xe2c5\nboard.name=LiteBeam M5\nboard.shortname=LM5\nboard.hwaddr=F09FC2AA{i:04X}\n"
        ),
        version: "XW.v6.2.0\n".into(),
        logins: vec![(USER.into(), PASSWORD.into())],
        host_key: AntennaFile::new_key(i as u64 + 1),
        flash: None,
        fault: None,
        ..AntennaFile::default()
    }
}

/// The system.cfg wispctl writes to antenna `i` (the same bytes, for the `ssh` apply loop).
fn new_system_cfg(i: usize) -> Vec<u8> {
    let uri = ConnectionString::parse(&new_uri())
        .expect("the bench's URI parses")
        .to_secret_string();
    SystemCfg::parse(system_cfg(i).as_bytes())
        .with_unms(&uri, false)
        .expect("the bench's system.cfg takes the new URI")
}

// ---------------------------------------------------------------------------------------------
// A fleet and its desired-state folder
// ---------------------------------------------------------------------------------------------

struct World {
    n: usize,
    tmp: tempfile::TempDir,
    fleet: Fleet,
    key: Arc<HashKey>,
}

impl World {
    /// A fresh fleet of `n` antennas; `legacy`: old dropbear's algorithms only (the group
    /// then sets `legacy: true`), else russh's defaults on both sides.
    fn start(b: &Bench, n: usize, legacy: bool) -> World {
        let file = FleetFile {
            antennas: (0..n).map(antenna).collect(),
            jump: None,
        };
        let fleet = b
            .lab_rt
            .block_on(Fleet::start(
                &file,
                FleetOptions {
                    latency: b.s.latency,
                    legacy_only: legacy,
                    ..FleetOptions::default()
                },
            ))
            .unwrap_or_else(|e| panic!("lab fleet of {n} antennas: {e}"));
        let tmp = tempfile::Builder::new()
            .prefix("wispctl-bench-airos-")
            .tempdir()
            .unwrap();
        let root = tmp.path();
        let mut known = String::new();
        for a in &file.antennas {
            writeln!(
                known,
                "{}:22 {}",
                a.host,
                fleet.fingerprint(&a.host).unwrap()
            )
            .unwrap();
        }
        std::fs::write(root.join(KNOWN_HOSTS_FILE), known).unwrap();
        std::fs::write(root.join("pw"), PASSWORD).unwrap();
        std::fs::write(root.join("uri"), new_uri()).unwrap();
        std::fs::create_dir_all(root.join("state")).unwrap();
        let desired = root.join("desired");
        std::fs::create_dir_all(desired.join("airos")).unwrap();
        let inventory = json!({ "antenna_groups": { GROUP: {
            "legacy": legacy,
            "credentials": [{ "user": USER, "password": { "file": "../pw" } }],
        } } });
        std::fs::write(
            desired.join("inventory.yaml"),
            serde_json::to_string_pretty(&inventory).unwrap(),
        )
        .unwrap();
        let airos = json!({
            "group": GROUP,
            "connection": { "secret": { "file": "../../uri" } },
            "rollout": {
                "concurrency": b.s.concurrency,
                "canary": b.s.canary,
                "max_failures": 0,
            },
            "antennas": (0..n).map(|i| json!({ "host": host(i) })).collect::<Vec<_>>(),
        });
        std::fs::write(
            desired.join("airos").join(format!("{GROUP}.yaml")),
            serde_json::to_string_pretty(&airos).unwrap(),
        )
        .unwrap();
        World {
            n,
            tmp,
            fleet,
            key: Arc::new(HashKey::from_bytes([7; 32])),
        }
    }

    /// Loads the desired state and builds the engine, as `wispctl plan` does in lab mode.
    fn engine(&self) -> Engine {
        let root = self.tmp.path();
        let d = wispctl::desired::load(&root.join("desired"), &SecretResolver::new())
            .unwrap_or_else(|e| panic!("generated desired state does not load:\n{e}"));
        let fleet = GroupEndpoints {
            antennas: (0..self.n)
                .map(|i| (host(i), self.fleet.addr(&host(i)).unwrap()))
                .collect(),
            jump: None,
            known_hosts: root.join(KNOWN_HOSTS_FILE),
        };
        let mut endpoints = LabEndpoints::default();
        endpoints.insert("antenna_groups", GROUP, fleet);
        let ctx =
            Context::new(self.key.clone(), root.join("state")).with_endpoints(Arc::new(endpoints));
        wispctl::kinds::engine(&d, &ctx, TargetFilter::default(), d.guards.max_deletes)
    }

    fn stop(self, b: &Bench) {
        b.lab_rt.block_on(self.fleet.shutdown());
    }
}

// ---------------------------------------------------------------------------------------------
// One run
// ---------------------------------------------------------------------------------------------

/// What the fleet counted during one run (differences of [`FleetStats`]).
#[derive(Clone, Copy, Default)]
struct Traffic {
    connections: u64,
    commands: u64,
    /// Since the fleet started (the lab does not reset it).
    max_sessions: u64,
}

impl Traffic {
    fn between(before: FleetStats, after: FleetStats) -> Traffic {
        Traffic {
            connections: after.connections - before.connections,
            commands: after.commands - before.commands,
            max_sessions: after.max_concurrent_sessions,
        }
    }
}

/// One timed run of wispctl.
#[derive(Clone, Copy)]
struct Run {
    wall: Duration,
    /// The engine's plan (observe every antenna, diff).
    observe: Duration,
    /// The rollout (apply only).
    rollout: Duration,
    /// CPU time of the whole process (client and lab) during the run.
    cpu: Duration,
    /// Of which the lab fleet's threads.
    lab_cpu: Duration,
    traffic: Traffic,
}

/// One `ssh` loop.
struct LoopRun {
    total: Duration,
    per: Vec<Duration>,
    /// CPU time of the `ssh` processes (and their askpass helpers).
    child_cpu: Duration,
    /// CPU time of this process (the lab antennas' side).
    cpu: Duration,
    traffic: Traffic,
}

/// Whose CPU time [`cpu`] reads.
#[derive(Clone, Copy)]
enum Who {
    /// This process, every thread.
    Process,
    /// Its children that were waited for.
    Children,
}

/// CPU time (user + system) of this process, or of its waited-for children, from
/// `/proc/self/stat`, in clock ticks' resolution.
fn cpu(who: Who) -> Duration {
    let Ok(stat) = std::fs::read_to_string("/proc/self/stat") else {
        return Duration::ZERO;
    };
    // `PID (COMM) STATE ...`: COMM may hold spaces, the fields after it do not.
    let Some(close) = stat.rfind(')') else {
        return Duration::ZERO;
    };
    let fields: Vec<&str> = stat[close + 1..].split_whitespace().collect();
    // utime, stime, cutime and cstime are fields 14 to 17 of stat(5); STATE (field 3) is the
    // first here.
    let which = match who {
        Who::Process => [11, 12],
        Who::Children => [13, 14],
    };
    let ticks: u64 = which
        .iter()
        .map(|&f| {
            fields
                .get(f)
                .and_then(|v| v.parse::<u64>().ok())
                .unwrap_or(0)
        })
        .sum();
    Duration::from_micros(ticks * 1_000_000 / clock_ticks())
}

/// Clock ticks per second of `/proc`'s times (`getconf CLK_TCK`; 100, Linux's USER_HZ, when
/// it cannot be asked).
fn clock_ticks() -> u64 {
    static HZ: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
    *HZ.get_or_init(|| {
        Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .ok()
            .and_then(|o| String::from_utf8(o.stdout).ok())
            .and_then(|t| t.trim().parse().ok())
            .filter(|&hz| hz > 0)
            .unwrap_or(100)
    })
}

/// CPU time (user + system) of the lab runtime's threads (named `lab`), from
/// `/proc/self/task/*/stat`, in clock ticks' resolution.
fn lab_cpu() -> Duration {
    let hz = clock_ticks();
    let mut ticks = 0u64;
    for task in std::fs::read_dir("/proc/self/task")
        .into_iter()
        .flatten()
        .flatten()
    {
        let Ok(stat) = std::fs::read_to_string(task.path().join("stat")) else {
            continue;
        };
        // `TID (COMM) STATE ...`: COMM may hold spaces, the fields after it do not.
        let (Some(open), Some(close)) = (stat.find('('), stat.rfind(')')) else {
            continue;
        };
        if !stat[open + 1..close].starts_with("lab") {
            continue;
        }
        let fields: Vec<&str> = stat[close + 1..].split_whitespace().collect();
        // utime and stime are fields 14 and 15 of stat(5); STATE (field 3) is the first here.
        for f in [11, 12] {
            ticks += fields
                .get(f)
                .and_then(|v| v.parse::<u64>().ok())
                .unwrap_or(0);
        }
    }
    Duration::from_micros(ticks * 1_000_000 / hz)
}

struct Bench {
    s: Settings,
    /// Serves the lab fleets.
    lab_rt: Runtime,
    /// Runs wispctl's engine.
    client_rt: Runtime,
    /// The askpass script for `ssh` and the folder it lives in.
    askpass: (tempfile::TempDir, PathBuf),
}

impl Bench {
    fn new(s: Settings) -> Bench {
        let lab_rt = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .thread_name("lab")
            .build()
            .unwrap();
        let client_rt = Runtime::new().unwrap();
        let dir = tempfile::Builder::new()
            .prefix("wispctl-bench-askpass-")
            .tempdir()
            .unwrap();
        let script = dir.path().join("askpass.sh");
        std::fs::write(&script, format!("#!/bin/sh\necho '{PASSWORD}'\n")).unwrap();
        std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o700)).unwrap();
        Bench {
            s,
            lab_rt,
            client_rt,
            askpass: (dir, script),
        }
    }

    /// `wispctl plan`: load, observe, diff, render. Fails unless every antenna is a change.
    fn plan(&self, w: &World) -> Run {
        let before = w.fleet.stats();
        let (cpu0, lab0) = (cpu(Who::Process), lab_cpu());
        let start = Instant::now();
        let engine = self.client_rt.block_on(async { w.engine() });
        let t = Instant::now();
        let run = self.client_rt.block_on(engine.plan());
        let observe = t.elapsed();
        let rendered = text::plan(&run.plan, Purpose::Plan, text::Paint(false));
        std::hint::black_box(rendered);
        let wall = start.elapsed();
        let (cpu, lab_cpu) = (cpu(Who::Process) - cpu0, lab_cpu() - lab0);
        let problems = run.plan.problems();
        assert!(problems.is_empty(), "wispctl plan: {problems:?}");
        assert_eq!(
            run.plan.summary.change, w.n,
            "wispctl plan: every antenna carries the old URI"
        );
        Run {
            wall,
            observe,
            rollout: Duration::ZERO,
            cpu,
            lab_cpu,
            traffic: Traffic::between(before, w.fleet.stats()),
        }
    }

    /// `wispctl apply` on a fresh fleet of `n`: plan, then roll out. Fails unless every
    /// antenna applied and now carries, and runs, the new URI.
    fn apply(&self, n: usize) -> Run {
        let w = World::start(self, n, true);
        let before = w.fleet.stats();
        let (cpu0, lab0) = (cpu(Who::Process), lab_cpu());
        let start = Instant::now();
        let engine = self.client_rt.block_on(async { w.engine() });
        let t = Instant::now();
        let run = self.client_rt.block_on(engine.plan());
        let observe = t.elapsed();
        let problems = run.plan.problems();
        assert!(problems.is_empty(), "wispctl apply (plan): {problems:?}");
        assert_eq!(run.plan.summary.change, n, "wispctl apply: plan");
        let t = Instant::now();
        let report = self.client_rt.block_on(run.apply(&BTreeMap::new()));
        let rollout = t.elapsed();
        let wall = start.elapsed();
        let (cpu, lab_cpu) = (cpu(Who::Process) - cpu0, lab_cpu() - lab0);
        let traffic = Traffic::between(before, w.fleet.stats());
        let applied = report
            .targets
            .iter()
            .flat_map(|t| &t.outcomes)
            .filter(|o| o.status == Status::Applied)
            .count();
        assert!(
            report.succeeded() && applied == n,
            "wispctl apply: {applied} of {n} applied: {report:#?}"
        );
        let want = new_uri();
        let line = format!("unms.uri={want}\n");
        for i in 0..n {
            let s = w.fleet.state(&host(i)).unwrap();
            assert_eq!(
                s.bridge_uri.as_deref(),
                Some(want.as_str()),
                "{}: the bridge does not run the new URI after apply",
                host(i)
            );
            for (name, file) in [
                ("system.cfg", Some(&s.system_cfg)),
                ("running.cfg", s.running_cfg.as_ref()),
            ] {
                let text = String::from_utf8_lossy(file.expect("both files exist"));
                assert!(
                    text.matches("unms.uri=").count() == 1 && text.contains(&line),
                    "{}: {name} does not carry the new URI once after apply",
                    host(i)
                );
            }
            assert_eq!(s.flash.as_ref(), Some(&s.system_cfg), "{}: flash", host(i));
        }
        w.stop(self);
        Run {
            wall,
            observe,
            rollout,
            cpu,
            lab_cpu,
            traffic,
        }
    }

    /// The field scripts' way: one `ssh` process per antenna, one after another, over the
    /// first `n` antennas of `w`. `write`: send antenna i's new system.cfg on stdin to
    /// write_system (else run READ). Fails unless every `ssh` exits 0 and its output is right.
    fn ssh_loop(&self, w: &World, n: usize, write: bool) -> LoopRun {
        let before = w.fleet.stats();
        let (cpu0, child0) = (cpu(Who::Process), cpu(Who::Children));
        let inputs: Vec<Option<Vec<u8>>> =
            (0..n).map(|i| write.then(|| new_system_cfg(i))).collect();
        let old_line = format!("unms.uri={}\n", old_uri());
        let mut per = Vec::with_capacity(n);
        let start = Instant::now();
        for (i, input) in inputs.iter().enumerate() {
            let port = w.fleet.addr(&host(i)).unwrap().port();
            let command = match input {
                Some(bytes) => commands::write_system(bytes.len()),
                None => commands::READ.to_string(),
            };
            let t = Instant::now();
            let mut child = self
                .ssh(port, &command)
                .stdin(if input.is_some() {
                    Stdio::piped()
                } else {
                    Stdio::null()
                })
                .spawn()
                .expect("OpenSSH's `ssh` runs (apt-get install openssh-client)");
            if let Some(bytes) = input {
                let mut stdin = child.stdin.take().unwrap();
                stdin.write_all(bytes).unwrap();
            }
            let out = child.wait_with_output().unwrap();
            per.push(t.elapsed());
            assert!(
                out.status.success(),
                "ssh to {} (port {port}) exited {}: {}",
                host(i),
                out.status,
                String::from_utf8_lossy(&out.stderr)
            );
            if !write {
                let files = commands::parse_read(&out.stdout)
                    .unwrap_or_else(|e| panic!("ssh READ of {}: {e}", host(i)));
                let sys = files.files.get(commands::SYSTEM_CFG).unwrap_or_default();
                assert!(
                    String::from_utf8_lossy(sys).contains(&old_line),
                    "ssh READ of {}: no old URI in system.cfg",
                    host(i)
                );
            }
        }
        let total = start.elapsed();
        let (cpu, child_cpu) = (cpu(Who::Process) - cpu0, cpu(Who::Children) - child0);
        if write {
            for (i, input) in inputs.iter().enumerate() {
                assert_eq!(
                    Some(&w.fleet.state(&host(i)).unwrap().system_cfg),
                    input.as_ref(),
                    "{}: system.cfg after the ssh write",
                    host(i)
                );
            }
        }
        LoopRun {
            total,
            per,
            child_cpu,
            cpu,
            traffic: Traffic::between(before, w.fleet.stats()),
        }
    }

    /// `ssh` as a field script ran it, with the password from an askpass helper (no extra
    /// packages), to an antenna that speaks old dropbear's algorithms only.
    fn ssh(&self, port: u16, command: &str) -> Command {
        let mut c = Command::new("ssh");
        c.env("SSH_ASKPASS", &self.askpass.1)
            .env("SSH_ASKPASS_REQUIRE", "force")
            .env("DISPLAY", ":0")
            .args(["-F", "/dev/null", "-T", "-p", &port.to_string()])
            .args([
                "-o",
                "PreferredAuthentications=password",
                "-o",
                "PubkeyAuthentication=no",
                "-o",
                "StrictHostKeyChecking=no",
                "-o",
                "UserKnownHostsFile=/dev/null",
                "-o",
                "LogLevel=ERROR",
                "-o",
                "BatchMode=no",
                "-o",
                "NumberOfPasswordPrompts=1",
                "-o",
                &format!("ConnectTimeout={SSH_TIMEOUT_SECS}"),
                // The lab antenna offers diffie-hellman-group14/group1-sha1 only; OpenSSH 9
                // leaves SHA-1 key exchange out by default (hmac-sha1, aes128-ctr and
                // ssh-ed25519 are still in its defaults).
                "-o",
                "KexAlgorithms=+diffie-hellman-group14-sha1",
            ])
            .arg(format!("{USER}@127.0.0.1"))
            .arg(command)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        c
    }

    fn plan_runs(n: usize) -> usize {
        if n >= BIG { 3 } else { 5 }
    }

    fn apply_runs(n: usize) -> usize {
        if n >= BIG { 2 } else { 3 }
    }

    fn plans(&self, w: &World, runs: usize) -> Vec<Run> {
        (0..runs)
            .map(|i| {
                let r = self.plan(w);
                eprintln!(
                    "  plan of {} run {}: {} (observe {}, CPU {} of which lab {}, {} connections, {} commands)",
                    w.n,
                    i + 1,
                    fmt(r.wall),
                    fmt(r.observe),
                    fmt(r.cpu),
                    fmt(r.lab_cpu),
                    r.traffic.connections,
                    r.traffic.commands
                );
                r
            })
            .collect()
    }

    fn applies(&self, n: usize, runs: usize) -> Vec<Run> {
        (0..runs)
            .map(|i| {
                let r = self.apply(n);
                eprintln!(
                    "  apply of {n} run {}: {} (observe {}, rollout {}, CPU {} of which lab {}, {} connections, {} commands); every antenna verified",
                    i + 1,
                    fmt(r.wall),
                    fmt(r.observe),
                    fmt(r.rollout),
                    fmt(r.cpu),
                    fmt(r.lab_cpu),
                    r.traffic.connections,
                    r.traffic.commands
                );
                r
            })
            .collect()
    }

    fn run(self) {
        let load_before = loadavg();
        let s = &self.s;
        eprintln!(
            "airos_rollout: fleets {:?}, ssh loop over {}, concurrency {}, canary {}, {} ms per answer, legacy algorithms only",
            s.sizes,
            s.loop_n,
            s.concurrency,
            s.canary,
            s.latency.as_millis()
        );

        // One session alone (also warms up the code and the runtimes).
        eprintln!("one antenna alone:");
        let w1 = World::start(&self, 1, true);
        self.plan(&w1);
        let single_plan = self.plans(&w1, SINGLE_RUNS);
        w1.stop(&self);
        self.apply(1);
        let single_apply = self.applies(1, SINGLE_RUNS);
        let session_plan = median(&single_plan.iter().map(|r| r.observe).collect::<Vec<_>>());
        let session_roll = median(&single_apply.iter().map(|r| r.rollout).collect::<Vec<_>>());

        // Side by side over the same antennas: wispctl and the ssh loop.
        let mut side = None;
        if s.loop_n > 0 {
            let n = s.loop_n;
            eprintln!("{n} antennas, wispctl and the ssh loop:");
            let w = World::start(&self, n, true);
            let plans = self.plans(&w, Self::plan_runs(n));
            let read = self.ssh_loop(&w, n, false);
            eprintln!(
                "  ssh READ loop over {n}: {} ({} per antenna, median)",
                fmt(read.total),
                fmt(median(&read.per))
            );
            w.stop(&self);
            let applies = self.applies(n, Self::apply_runs(n));
            let w = World::start(&self, n, true);
            let write = self.ssh_loop(&w, n, true);
            eprintln!(
                "  ssh write_system loop over {n}: {} ({} per antenna, median)",
                fmt(write.total),
                fmt(median(&write.per))
            );
            w.stop(&self);
            side = Some((n, plans, applies, read, write));
        }

        let mut sized = Vec::new();
        for &n in &s.sizes {
            eprintln!("{n} antennas:");
            let w = World::start(&self, n, true);
            let plans = self.plans(&w, Self::plan_runs(n));
            w.stop(&self);
            let applies = self.applies(n, Self::apply_runs(n));
            sized.push((n, plans, applies));
        }

        // Diagnostic: the same plan with russh's default (modern) algorithms on both sides, to
        // show what the legacy SHA-1 Diffie-Hellman key exchange costs in CPU.
        let modern = s.sizes.iter().max().map(|&n| {
            eprintln!("{n} antennas, modern algorithms (diagnostic):");
            let w = World::start(&self, n, false);
            let plans = self.plans(&w, Self::plan_runs(n));
            w.stop(&self);
            (n, plans)
        });

        self.report(
            (session_plan, session_roll, &single_plan, &single_apply),
            side.as_ref(),
            &sized,
        );
        if let Some((n, plans)) = modern {
            let legacy = sized.iter().find(|(m, _, _)| *m == n).map(|(_, p, _)| p);
            println!();
            println!(
                "Diagnostic, plan of {n} with russh's default algorithms instead of the legacy ones (fleet and group not legacy; \
                 curve25519 key exchange): median {} (min {}, max {}, {} runs), CPU {} (wispctl + lab), against {} with the legacy \
                 ones (CPU {}).",
                fmt(median(&walls(&plans))),
                fmt(*walls(&plans).iter().min().unwrap()),
                fmt(*walls(&plans).iter().max().unwrap()),
                plans.len(),
                cpu_split(&plans),
                legacy.map_or_else(|| "?".into(), |p| fmt(median(&walls(p)))),
                legacy.map_or_else(|| "?".into(), |p| cpu_split(p)),
            );
        }
        println!(
            "Load average (1, 5, 15 min) before: {load_before}; after: {}.",
            loadavg()
        );
    }

    #[allow(clippy::type_complexity)]
    fn report(
        &self,
        (session_plan, session_roll, single_plan, single_apply): (
            Duration,
            Duration,
            &[Run],
            &[Run],
        ),
        side: Option<&(usize, Vec<Run>, Vec<Run>, LoopRun, LoopRun)>,
        sized: &[(usize, Vec<Run>, Vec<Run>)],
    ) {
        let s = &self.s;
        println!();
        println!("{}", machine_facts());
        println!(
            "airos_rollout: {} ms injected before every antenna answer (banner, each login, each channel open, each command result); \
             legacy algorithms only (diffie-hellman-group14-sha1, hmac-sha1, aes128-ctr, ed25519 host keys); \
             rollout concurrency {}, canary {}; system.cfg and running.cfg {} bytes each, both with the old URI. \
             Client and lab antennas share this process and its cores.",
            s.latency.as_millis(),
            s.concurrency,
            s.canary,
            system_cfg(0).len(),
        );
        println!();
        println!(
            "One session alone (1-antenna fleet, {SINGLE_RUNS} runs, median): plan: observe {} (wall {}, {} connection, {} command); \
             apply: rollout {} (wall {}, observe included, {} commands in all).",
            fmt(session_plan),
            fmt(median(&walls(single_plan))),
            single_plan[0].traffic.connections,
            single_plan[0].traffic.commands,
            fmt(session_roll),
            fmt(median(&walls(single_apply))),
            single_apply[0].traffic.commands,
        );
        println!();
        println!(
            "| antennas | wispctl | runs | median | min | max | waves | floor (waves x one session) | median / floor | connections per antenna | commands per antenna | max concurrent sessions | CPU, median (wispctl + lab antennas) |"
        );
        println!("|---|---|---|---|---|---|---|---|---|---|---|---|---|");
        let mut rows: Vec<(usize, &[Run], &[Run])> = Vec::new();
        if let Some((n, plans, applies, _, _)) = side {
            rows.push((*n, plans, applies));
        }
        for (n, plans, applies) in sized {
            rows.push((*n, plans, applies));
        }
        for &(n, plans, applies) in &rows {
            let pw = s.plan_waves(n);
            let rw = s.rollout_waves(n);
            let plan_floor = session_plan * pw as u32;
            let apply_floor = plan_floor + session_roll * rw as u32;
            let row = |what: &str, runs: &[Run], waves: String, floor: Duration| {
                let m = median(&walls(runs));
                let t = runs.last().unwrap().traffic;
                println!(
                    "| {n} | {what} | {} | {} | {} | {} | {waves} | {} | {:.2} | {} | {} | {} | {} |",
                    runs.len(),
                    fmt(m),
                    fmt(*walls(runs).iter().min().unwrap()),
                    fmt(*walls(runs).iter().max().unwrap()),
                    fmt(floor),
                    m.as_secs_f64() / floor.as_secs_f64(),
                    per(t.connections, n),
                    per(t.commands, n),
                    t.max_sessions,
                    cpu_split(runs),
                );
            };
            row("plan", plans, pw.to_string(), plan_floor);
            row(
                "apply (plan + rollout)",
                applies,
                format!("{pw} + {rw}"),
                apply_floor,
            );
        }
        println!();
        for &(n, _, applies) in &rows {
            let rw = s.rollout_waves(n);
            let roll = median(&applies.iter().map(|r| r.rollout).collect::<Vec<_>>());
            let obs = median(&applies.iter().map(|r| r.observe).collect::<Vec<_>>());
            println!(
                "apply of {n}, phases (medians): observe {} ({} waves, floor {}), rollout {} ({rw} waves, floor {}, {:.2}x the floor).",
                fmt(obs),
                s.plan_waves(n),
                fmt(session_plan * s.plan_waves(n) as u32),
                fmt(roll),
                fmt(session_roll * rw as u32),
                roll.as_secs_f64() / (session_roll * rw as u32).as_secs_f64(),
            );
        }

        let Some((ln, plans, applies, read, write)) = side else {
            return;
        };
        let ln = *ln;
        println!();
        println!(
            "Field-script baseline: one OpenSSH `ssh` process per antenna, one after another, over {ln} antennas \
             (plan: READ; apply: write_system with the new system.cfg on stdin, a lower bound for a field script, \
             which also persisted and restarted the bridge in that connection, and for running.cfg):"
        );
        println!();
        println!(
            "| ssh loop | antennas | total | per antenna (mean) | per antenna (median) | min | max | connections per antenna | commands per antenna | ssh CPU per antenna | lab CPU per antenna |"
        );
        println!("|---|---|---|---|---|---|---|---|---|---|---|");
        for (what, l) in [("READ (plan)", read), ("write_system (apply)", write)] {
            println!(
                "| {what} | {ln} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
                fmt(l.total),
                fmt(l.total / ln as u32),
                fmt(median(&l.per)),
                fmt(*l.per.iter().min().unwrap()),
                fmt(*l.per.iter().max().unwrap()),
                per(l.traffic.connections, ln),
                per(l.traffic.commands, ln),
                fmt(l.child_cpu / ln as u32),
                fmt(l.cpu / ln as u32),
            );
        }
        println!();
        println!("| ratio: ssh loop / wispctl | antennas | ssh loop | wispctl (median) | ratio |");
        println!("|---|---|---|---|---|");
        let ratio = |what: &str, n: usize, lp: Duration, w: Duration, how: &str| {
            println!(
                "| {what} | {n} | {} {how} | {} | {:.1}x |",
                fmt(lp),
                fmt(w),
                lp.as_secs_f64() / w.as_secs_f64()
            );
        };
        ratio(
            "plan, same antennas, side by side",
            ln,
            read.total,
            median(&walls(plans)),
            "measured",
        );
        ratio(
            "apply, same antennas, side by side",
            ln,
            write.total,
            median(&walls(applies)),
            "measured",
        );
        for (n, plans, applies) in sized {
            ratio(
                "plan",
                *n,
                read.total * *n as u32 / ln as u32,
                median(&walls(plans)),
                "extrapolated",
            );
            ratio(
                "apply",
                *n,
                write.total * *n as u32 / ln as u32,
                median(&walls(applies)),
                "extrapolated",
            );
        }
    }
}

/// Median CPU of the runs, split: `wispctl + lab`.
fn cpu_split(runs: &[Run]) -> String {
    let all = median(&runs.iter().map(|r| r.cpu).collect::<Vec<_>>());
    let lab = median(&runs.iter().map(|r| r.lab_cpu).collect::<Vec<_>>());
    format!("{} + {}", fmt(all.saturating_sub(lab)), fmt(lab))
}

fn walls(runs: &[Run]) -> Vec<Duration> {
    runs.iter().map(|r| r.wall).collect()
}

fn per(count: u64, n: usize) -> String {
    let v = count as f64 / n as f64;
    if v.fract() == 0.0 {
        format!("{v:.0}")
    } else {
        format!("{v:.2}")
    }
}

/// Date, cores, CPU model, and the versions of the tools compared.
fn machine_facts() -> String {
    let run = common::first_line;
    let cpu = common::cpu_model();
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    format!(
        "date: {}; nproc: {cores}; CPU: {cpu}; {}; {}; open files limit (soft, after the lab raised it): {}",
        run("date", &["-u", "+%Y-%m-%d %H:%M UTC"]),
        run("rustc", &["--version"]),
        run("ssh", &["-V"]),
        open_files_limit(),
    )
}

fn open_files_limit() -> String {
    std::fs::read_to_string("/proc/self/limits")
        .ok()
        .and_then(|t| {
            t.lines()
                .find(|l| l.starts_with("Max open files"))
                .and_then(|l| l.split_whitespace().nth(3).map(str::to_string))
        })
        .unwrap_or_else(|| "?".into())
}
