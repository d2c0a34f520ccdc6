//! Benchmark: planning PPPoE secrets on 2 routers x 2,500 secrets with a 20 ms round-trip
//! delay on every API answer, wispctl against Ansible's community.routeros `api_modify` in
//! check mode, side by side in one run, on the same two lab RouterOS servers.
//!
//! Run: `cargo bench --bench pppoe_plan` (after `bash tests/setup.sh`, which installs Ansible).
//! `WISPCTL_BENCH_SECRETS=500` scales the secrets per router down. Under `cargo test` (no
//! `--bench` argument) it only says it was skipped: no timing ever runs as a test.
//!
//! What is measured (wall time, median of several runs):
//! - wispctl: `desired::load` of a generated desired-state folder, the engine's plan (one
//!   connection per router, login, one pipelined round trip reading `/ppp/secret`,
//!   `/ppp/profile` and `/ppp/active`, the diff) and the text rendering, in-process;
//! - Ansible: `ansible-playbook --check --diff` of one play over both routers, one
//!   `community.routeros.api_modify` task per router (`path: ppp secret`,
//!   `handle_absent_entries: remove`), with the same desired secrets (without the comment,
//!   which the collection's `ppp secret` does not know);
//! - a baseline: the same inventory and a play of `ansible.builtin.ping`.
//!
//! Counted per router: the sentences the lab received (its `Stats`, reset before each run),
//! connections, and API round trips (request/answer turns), counted by a TCP relay put in
//! front of each lab for one extra untimed pass of each tool, which also checks that both
//! tools found the same changes.

#[path = "../tests/ansible/mod.rs"]
mod ansible;

#[path = "common/mod.rs"]
mod common;

use common::{fmt, loadavg, median};
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use routeros_api::server::{RouterConfig, RouterLab, Secret, Stats};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::runtime::Runtime;
use wispctl::engine::{Context, TargetFilter};
use wispctl::lab::LabEndpoints;
use wispctl::plan::render::{Purpose, text};
use wispctl::secret::{HashKey, SecretResolver};

const ROUTERS: [&str; 2] = ["torre-norte", "torre-sur"];
const LATENCY: Duration = Duration::from_millis(20);
const USER: &str = "wisp-api";
const PASS: &str = "lab-only-api-pw";
const PROFILES: [&str; 5] = ["5M", "10M", "20M", "50M", "Morosos"];
const WISPCTL_RUNS: usize = 5;
const ANSIBLE_RUNS: usize = 3;
/// Turns of the floor and the whole command, side by side.
const P1_RUNS: usize = 9;
const ANSIBLE_TIMEOUT: Duration = Duration::from_secs(600);

fn main() {
    if !std::env::args().any(|a| a == "--bench") {
        println!("pppoe_plan: skipped (a benchmark; run it with `cargo bench --bench pppoe_plan`)");
        return;
    }
    let per_router: usize = std::env::var("WISPCTL_BENCH_SECRETS")
        .ok()
        .map(|v| v.parse().expect("WISPCTL_BENCH_SECRETS is a number"))
        .unwrap_or(2_500);
    assert!(per_router >= 100, "WISPCTL_BENCH_SECRETS: at least 100");
    Bench::new(per_router).run();
}

// ---------------------------------------------------------------------------------------------
// Data
// ---------------------------------------------------------------------------------------------

/// A small deterministic generator (xorshift64*): same data every run.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    fn password(&mut self) -> String {
        const ALPHABET: &[u8] = b"abcdefghjkmnpqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ23456789";
        (0..10)
            .map(|_| ALPHABET[self.below(ALPHABET.len())] as char)
            .collect()
    }
}

const FIRST: [&str; 24] = [
    "juan", "maria", "luis", "ana", "jose", "rosa", "pedro", "carmen", "miguel", "elena", "jorge",
    "lucia", "carlos", "sofia", "raul", "teresa", "manuel", "paula", "javier", "irma", "ramon",
    "laura", "hector", "silvia",
];
const LAST: [&str; 24] = [
    "perez",
    "lopez",
    "torres",
    "garcia",
    "hernandez",
    "martinez",
    "gonzalez",
    "rodriguez",
    "sanchez",
    "ramirez",
    "flores",
    "cruz",
    "morales",
    "reyes",
    "jimenez",
    "ruiz",
    "diaz",
    "vargas",
    "castillo",
    "ortiz",
    "mendoza",
    "aguilar",
    "rojas",
    "navarro",
];
const PLACES: [[&str; 4]; 2] = [
    ["Tomatlan", "El Tuito", "Cruz de Loreto", "La Cumbre"],
    ["Centro", "Las Palmas", "El Coyul", "Llano Grande"],
];

/// One customer's PPPoE secret.
#[derive(Clone)]
struct Customer {
    name: String,
    password: String,
    profile: &'static str,
    remote: String,
    caller_id: Option<String>,
    /// The comment without wispctl's tag.
    comment: String,
}

/// The secrets a router holds: every one written by wispctl earlier (tagged).
fn live_customers(router: usize, n: usize, rng: &mut Rng) -> Vec<Customer> {
    let mut taken = std::collections::HashSet::new();
    (0..n)
        .map(|i| new_customer(router, i, rng, &mut taken))
        .collect()
}

fn new_customer(
    router: usize,
    i: usize,
    rng: &mut Rng,
    taken: &mut std::collections::HashSet<String>,
) -> Customer {
    let (first, last) = (FIRST[rng.below(FIRST.len())], LAST[rng.below(LAST.len())]);
    let mut name = format!("{first}.{last}");
    let mut k = 2;
    while !taken.insert(name.clone()) {
        name = format!("{first}.{last}{k}");
        k += 1;
    }
    // Weighted plans: most on 10M.
    let profile = match rng.below(20) {
        0..=3 => "5M",
        4..=12 => "10M",
        13..=16 => "20M",
        17..=18 => "50M",
        _ => "Morosos",
    };
    let caller_id = (rng.below(10) < 3).then(|| {
        let b: Vec<String> = (0..6)
            .map(|j| {
                let v = if j < 3 {
                    [0x28u8, 0x70, 0x4E][j]
                } else {
                    rng.below(256) as u8
                };
                format!("{v:02X}")
            })
            .collect();
        b.join(":")
    });
    let cap = |s: &str| {
        let mut c = s.chars();
        c.next()
            .map(|f| f.to_uppercase().chain(c).collect::<String>())
            .unwrap_or_default()
    };
    Customer {
        name,
        password: rng.password(),
        profile,
        remote: format!("10.{}.{}.{}", 20 + router, i / 250, i % 250 + 2),
        caller_id,
        comment: format!(
            "{}, {} {}",
            PLACES[router][rng.below(4)],
            cap(first),
            cap(last)
        ),
    }
}

/// What the desired state changes, per router.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
struct Changes {
    add: usize,
    change: usize,
    destroy: usize,
}

/// The desired secrets: 2% move to another profile, 1% get a new password, 1% are gone
/// (customers who left), 1% are new installations. About 5% of the secrets differ.
fn desired_customers(router: usize, live: &[Customer], rng: &mut Rng) -> (Vec<Customer>, Changes) {
    let mut out = Vec::with_capacity(live.len() + live.len() / 100);
    let mut c = Changes::default();
    for (i, l) in live.iter().enumerate() {
        let mut d = l.clone();
        match i % 100 {
            3 | 57 => {
                d.profile = PROFILES
                    .iter()
                    .copied()
                    .find(|p| *p != l.profile && rng.below(2) == 0)
                    .unwrap_or(if l.profile == "Morosos" {
                        "10M"
                    } else {
                        "Morosos"
                    });
                c.change += 1;
            }
            21 => {
                d.password = rng.password();
                c.change += 1;
            }
            88 => {
                c.destroy += 1;
                continue;
            }
            _ => {}
        }
        out.push(d);
    }
    let mut taken: std::collections::HashSet<String> =
        live.iter().map(|l| l.name.clone()).collect();
    for j in 0..live.len() / 100 {
        out.push(new_customer(router, live.len() + j, rng, &mut taken));
        c.add += 1;
    }
    (out, c)
}

fn lab_secret(c: &Customer) -> Secret {
    Secret {
        service: "pppoe".into(),
        profile: c.profile.into(),
        remote_address: c.remote.clone(),
        caller_id: c.caller_id.clone().unwrap_or_default(),
        comment: format!("{} [wispctl]", c.comment),
        last_logged_out: "2026-11-01 03:12:45".into(),
        last_disconnect_reason: "peer-request".into(),
        ..Secret::new(&c.name, &c.password)
    }
}

/// A YAML double-quoted scalar (JSON's escaping is valid there).
fn q(s: &str) -> String {
    serde_json::to_string(s).unwrap()
}

fn env_name(router: &str, i: usize) -> String {
    format!(
        "PPPOE_{}_{i:05}",
        router.to_ascii_uppercase().replace('-', "_")
    )
}

/// Writes the desired-state folder; returns the secret values its `{ env: NAME }` references
/// resolve to (the resolver's fallback, as in lab mode).
fn write_desired_state(
    dir: &Path,
    desired: &[(String, Vec<Customer>)],
) -> BTreeMap<String, String> {
    let mut values = BTreeMap::new();
    let mut inv =
        String::from("guards:\n  max_deletes: 1000\n  max_disconnects: 100000\nrouters:\n");
    for (router, _) in desired {
        let pw = format!(
            "ROUTER_{}_PASSWORD",
            router.to_ascii_uppercase().replace('-', "_")
        );
        writeln!(
            inv,
            "  {router}:\n    address: 192.0.2.1\n    port: 8728\n    username: {USER}\n    password: {{ env: {pw} }}\n    timeout_secs: 60"
        )
        .unwrap();
        values.insert(pw, PASS.to_string());
    }
    std::fs::create_dir_all(dir.join("pppoe")).unwrap();
    std::fs::write(dir.join("inventory.yaml"), inv).unwrap();
    for (router, customers) in desired {
        let mut y = format!(
            "router: {router}\nprune: owned\nkick: on-change\ndefaults:\n  service: pppoe\nsecrets:\n"
        );
        for (i, c) in customers.iter().enumerate() {
            let env = env_name(router, i);
            writeln!(y, "  - name: {}", q(&c.name)).unwrap();
            writeln!(y, "    password: {{ env: {env} }}").unwrap();
            writeln!(y, "    profile: {}", q(c.profile)).unwrap();
            writeln!(y, "    remote_address: {}", c.remote).unwrap();
            if let Some(mac) = &c.caller_id {
                writeln!(y, "    caller_id: {}", q(mac)).unwrap();
            }
            writeln!(y, "    comment: {}", q(&c.comment)).unwrap();
            values.insert(env, c.password.clone());
        }
        std::fs::write(dir.join("pppoe").join(format!("{router}.yaml")), y).unwrap();
    }
    values
}

/// The same secrets as api_modify data (no comment: collection 3.14 does not know it).
fn ansible_data(customers: &[Customer]) -> Value {
    Value::Array(
        customers
            .iter()
            .map(|c| {
                let mut e = json!({
                    "name": c.name,
                    "password": c.password,
                    "service": "pppoe",
                    "profile": c.profile,
                    "remote-address": c.remote,
                });
                if let Some(mac) = &c.caller_id {
                    e["caller-id"] = json!(mac);
                }
                e
            })
            .collect(),
    )
}

// ---------------------------------------------------------------------------------------------
// A relay that counts round trips
// ---------------------------------------------------------------------------------------------

/// Counts request/answer turns: an answer chunk after the client sent something since the
/// previous answer is one round trip. Pipelined commands sent together are one.
#[derive(Default)]
struct TurnCounter {
    turns: AtomicU64,
    connections: AtomicU64,
}

impl TurnCounter {
    fn take(&self) -> (u64, u64) {
        (
            self.turns.swap(0, Ordering::SeqCst),
            self.connections.swap(0, Ordering::SeqCst),
        )
    }
}

async fn start_relay(target: SocketAddr, counter: Arc<TurnCounter>) -> SocketAddr {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((client, _)) = listener.accept().await {
            counter.connections.fetch_add(1, Ordering::SeqCst);
            tokio::spawn(relay(client, target, counter.clone()));
        }
    });
    addr
}

async fn relay(client: TcpStream, target: SocketAddr, counter: Arc<TurnCounter>) {
    let Ok(server) = TcpStream::connect(target).await else {
        return;
    };
    let _ = client.set_nodelay(true);
    let _ = server.set_nodelay(true);
    let (mut cr, mut cw) = client.into_split();
    let (mut sr, mut sw) = server.into_split();
    let spoke = Arc::new(AtomicBool::new(false));
    let spoke2 = spoke.clone();
    let up = async move {
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            match cr.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    // Before forwarding: the answer cannot come before the question.
                    spoke.store(true, Ordering::SeqCst);
                    if sw.write_all(&buf[..n]).await.is_err() {
                        break;
                    }
                }
            }
        }
        let _ = sw.shutdown().await;
    };
    let down = async move {
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            match sr.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    if spoke2.swap(false, Ordering::SeqCst) {
                        counter.turns.fetch_add(1, Ordering::SeqCst);
                    }
                    if cw.write_all(&buf[..n]).await.is_err() {
                        break;
                    }
                }
            }
        }
        let _ = cw.shutdown().await;
    };
    tokio::join!(up, down);
}

// ---------------------------------------------------------------------------------------------
// The bench
// ---------------------------------------------------------------------------------------------

struct Router {
    name: &'static str,
    lab: RouterLab,
    relay: SocketAddr,
    counter: Arc<TurnCounter>,
    live: Vec<Secret>,
    expected: Changes,
}

/// What one tool did to the labs in one run, per router.
#[derive(Clone, Default)]
struct Traffic {
    stats: Vec<Stats>,
    /// (round trips, connections) seen by the relay, in the counting pass.
    turns: Vec<(u64, u64)>,
}

struct Bench {
    per_router: usize,
    /// Serves the labs and the relays (kept alive, not read).
    _lab_rt: Runtime,
    client_rt: Runtime,
    routers: Vec<Router>,
    tmp: tempfile::TempDir,
    resolver_values: BTreeMap<String, String>,
    ws: ansible::Workspace,
}

impl Bench {
    fn new(per_router: usize) -> Bench {
        let lab_rt = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .thread_name("lab")
            .build()
            .unwrap();
        let client_rt = Runtime::new().unwrap();
        let tmp = tempfile::Builder::new()
            .prefix("wispctl-bench-")
            .tempdir()
            .unwrap();
        let ws = ansible::Workspace::new();
        let mut rng = Rng(0x5EED_2026_0000_0001);
        let mut routers = Vec::new();
        let mut desired = Vec::new();
        let mut hosts = serde_json::Map::new();
        for (i, name) in ROUTERS.iter().enumerate() {
            let live = live_customers(i, per_router, &mut rng);
            let (want, expected) = desired_customers(i, &live, &mut rng);
            let config = RouterConfig {
                users: vec![(USER.into(), PASS.into())],
                profiles: PROFILES.iter().map(|p| (*p).to_string()).collect(),
                latency: LATENCY,
                ..RouterConfig::default()
            };
            let (lab, relay, counter) = lab_rt.block_on(async {
                let lab = RouterLab::start(config).await.unwrap();
                let counter = Arc::new(TurnCounter::default());
                let relay = start_relay(lab.addr(), counter.clone()).await;
                (lab, relay, counter)
            });
            lab.set_secrets(live.iter().map(lab_secret).collect());
            // Seven in ten customers are online.
            for (j, c) in live.iter().enumerate() {
                if j % 10 < 7 {
                    lab.add_active(&c.name, &c.remote);
                }
            }
            hosts.insert((*name).into(), json!({}));
            ws.write_host_vars(
                name,
                &json!({
                    "api_port": lab.addr().port(),
                    "proxy_port": relay.port(),
                    "api_user": USER,
                    "api_password": PASS,
                    "ppp_secrets": ansible_data(&want),
                }),
            );
            routers.push(Router {
                name,
                live: lab.secrets(),
                lab,
                relay,
                counter,
                expected,
            });
            desired.push(((*name).to_string(), want));
        }
        ws.write_inventory(&Value::Object(hosts));
        let resolver_values = write_desired_state(&tmp.path().join("desired-state"), &desired);
        Bench {
            per_router,
            _lab_rt: lab_rt,
            client_rt,
            routers,
            tmp,
            resolver_values,
            ws,
        }
    }

    /// The desired state again, with each router at its lab's real address: what the whole
    /// `wispctl plan` command reads, as on a VPS (the labs are out of its process).
    fn write_cli_desired_state(&self) -> std::path::PathBuf {
        let dir = self.tmp.path().join("desired-cli");
        common::copy_dir(&self.tmp.path().join("desired-state"), &dir);
        let mut inv = std::fs::read_to_string(dir.join("inventory.yaml")).unwrap();
        for r in &self.routers {
            let from = format!("  {}:\n    address: 192.0.2.1\n    port: 8728\n", r.name);
            let to = format!(
                "  {}:\n    address: 127.0.0.1\n    port: {}\n",
                r.name,
                r.lab.addr().port()
            );
            assert!(inv.contains(&from));
            inv = inv.replace(&from, &to);
        }
        std::fs::write(dir.join("inventory.yaml"), inv).unwrap();
        dir
    }

    /// One whole `wispctl plan` (the binary: start, load, observe, diff, render), its secret
    /// values in its environment as on a VPS.
    fn wispctl_cli(&self, dir: &Path) -> Duration {
        let start = Instant::now();
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_wispctl"))
            .arg("-C")
            .arg(dir)
            .arg("--state-dir")
            .arg(self.tmp.path().join("cli-state"))
            .args(["plan", "--detailed-exitcode"])
            .envs(&self.resolver_values)
            .env_remove("RUST_LOG")
            .env("NO_COLOR", "1")
            .stdin(std::process::Stdio::null())
            .output()
            .unwrap();
        let took = start.elapsed();
        assert_eq!(
            out.status.code(),
            Some(2),
            "wispctl plan (CLI):\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        took
    }

    /// The floor: what any client must do, at the least: connect, log in and one print per
    /// router, both routers at once.
    fn floor(&self) -> Duration {
        let addrs: Vec<SocketAddr> = self.routers.iter().map(|r| r.lab.addr()).collect();
        let start = Instant::now();
        self.client_rt.block_on(async {
            let reads = addrs.into_iter().map(|addr| async move {
                let stream = TcpStream::connect(addr).await.unwrap();
                let mut conn =
                    routeros_api::client::Connection::new(stream, Duration::from_secs(60));
                conn.login(USER, PASS).await.unwrap();
                let reply = conn
                    .call(routeros_api::client::Command::new(["/ppp/secret/print"]))
                    .await
                    .unwrap();
                assert!(!reply.rows.is_empty());
            });
            futures::future::join_all(reads).await;
        });
        start.elapsed()
    }

    fn reset(&self) {
        for r in &self.routers {
            r.lab.reset_stats();
            r.counter.take();
        }
    }

    fn traffic(&self) -> Traffic {
        Traffic {
            stats: self.routers.iter().map(|r| r.lab.stats()).collect(),
            turns: self.routers.iter().map(|r| r.counter.take()).collect(),
        }
    }

    /// One wispctl plan, in-process: load, observe, diff, render. Returns the wall time (and
    /// its phases: load, engine plan, render) and the changes per router.
    fn wispctl_plan(&self, via_relay: bool) -> (Duration, [Duration; 3], Vec<Changes>) {
        let start = Instant::now();
        let resolver = SecretResolver::new()
            .with_fallback_env(self.resolver_values.clone().into_iter().collect());
        let d = wispctl::desired::load(&self.tmp.path().join("desired-state"), &resolver)
            .unwrap_or_else(|e| panic!("generated desired state does not load:\n{e}"));
        let loaded = Instant::now();
        let key = Arc::new(HashKey::from_bytes([42; 32]));
        let mut endpoints = LabEndpoints::default();
        for r in &self.routers {
            let addr = if via_relay { r.relay } else { r.lab.addr() };
            endpoints.insert("routers", r.name, addr);
        }
        let ctx = Context::new(key.clone(), self.tmp.path().join("state"))
            .with_endpoints(Arc::new(endpoints));
        let engine =
            wispctl::kinds::engine(&d, &ctx, TargetFilter::default(), d.guards.max_deletes);
        let run = self.client_rt.block_on(engine.plan());
        let planned = Instant::now();
        let rendered = text::plan(&run.plan, Purpose::Plan, text::Paint(false));
        std::hint::black_box(rendered);
        let end = Instant::now();
        let took = end - start;
        let phases = [loaded - start, planned - loaded, end - planned];
        let problems = run.plan.problems();
        assert!(problems.is_empty(), "wispctl plan: {problems:?}");
        let changes = self
            .routers
            .iter()
            .map(|r| {
                let t = run
                    .plan
                    .targets
                    .iter()
                    .find(|t| t.address == format!("pppoe.{}", r.name))
                    .expect("a target per router");
                let s = wispctl::plan::Summary::of([t]);
                Changes {
                    add: s.add,
                    change: s.change,
                    destroy: s.destroy,
                }
            })
            .collect();
        (took, phases, changes)
    }

    /// One ansible-playbook run of `playbook` with `extra` arguments.
    fn ansible(&self, playbook: &str, extra: &[&str]) -> Duration {
        let (output, took) = self.ws.run(playbook, extra, ANSIBLE_TIMEOUT);
        ansible::assert_success(&output);
        took
    }

    /// The changes api_modify reported in the counting pass, per router.
    fn ansible_changes(&self) -> Vec<Changes> {
        self.routers
            .iter()
            .map(|r| {
                let out = self.ws.read_out(&format!("{}.json", r.name));
                let names = |v: &Value| -> BTreeMap<String, Value> {
                    v.as_array()
                        .unwrap()
                        .iter()
                        .map(|e| (e["name"].as_str().unwrap().to_string(), e.clone()))
                        .collect()
                };
                let (old, new) = (names(&out["old_data"]), names(&out["new_data"]));
                Changes {
                    add: new.keys().filter(|k| !old.contains_key(*k)).count(),
                    change: new
                        .iter()
                        .filter(|(k, v)| old.get(*k).is_some_and(|o| o != *v))
                        .count(),
                    destroy: old.keys().filter(|k| !new.contains_key(*k)).count(),
                }
            })
            .collect()
    }

    fn run(self) {
        let load_before = loadavg();
        let expected: Vec<Changes> = self.routers.iter().map(|r| r.expected).collect();
        eprintln!(
            "pppoe_plan: {} routers x {} secrets, {} ms per answer; counting pass...",
            self.routers.len(),
            self.per_router,
            LATENCY.as_millis()
        );

        // Untimed pass through the relays: round trips, and the same changes found by both.
        self.reset();
        let (_, _, changes) = self.wispctl_plan(true);
        assert_eq!(changes, expected, "wispctl's plan");
        let wispctl_turns = self.traffic().turns;
        let out_dir = self.ws.out_dir();
        let bench_out = format!("bench_out={}", out_dir.display());
        self.reset();
        self.ansible(
            "bench_plan.yml",
            &[
                "--check",
                "--diff",
                "-e",
                "via_proxy=true",
                "-e",
                &bench_out,
            ],
        );
        assert_eq!(self.ansible_changes(), expected, "api_modify's changes");
        let ansible_turns = self.traffic().turns;

        // P1: the whole command against the floor, turn by turn (floor, CLI, floor, CLI...).
        let cli_dir = self.write_cli_desired_state();
        let (mut floor_times, mut cli_times) = (Vec::new(), Vec::new());
        self.wispctl_cli(&cli_dir); // warm the page cache
        for i in 0..P1_RUNS {
            let f = self.floor();
            let c = self.wispctl_cli(&cli_dir);
            eprintln!(
                "  P1 run {}: floor {f:.3?}, wispctl plan (CLI) {c:.3?}",
                i + 1
            );
            floor_times.push(f);
            cli_times.push(c);
        }

        // Timed runs, straight to the labs.
        let mut w_times = Vec::new();
        let mut w_phases: [Vec<Duration>; 3] = Default::default();
        let mut w_traffic = Traffic::default();
        for i in 0..WISPCTL_RUNS {
            self.reset();
            let (took, phases, _) = self.wispctl_plan(false);
            w_traffic = self.traffic();
            eprintln!(
                "  wispctl plan run {}: {took:.3?} (load, plan, render: {phases:.3?})",
                i + 1
            );
            w_times.push(took);
            for (v, p) in w_phases.iter_mut().zip(phases) {
                v.push(p);
            }
        }
        let mut a_times = Vec::new();
        let mut a_traffic = Traffic::default();
        for i in 0..ANSIBLE_RUNS {
            self.reset();
            let took = self.ansible("bench_plan.yml", &["--check", "--diff"]);
            a_traffic = self.traffic();
            eprintln!(
                "  ansible api_modify --check --diff run {}: {took:.3?}",
                i + 1
            );
            a_times.push(took);
        }
        let mut n_times = Vec::new();
        let mut n_traffic = Traffic::default();
        for i in 0..ANSIBLE_RUNS {
            self.reset();
            let took = self.ansible("bench_plan.yml", &["--check"]);
            n_traffic = self.traffic();
            eprintln!(
                "  ansible api_modify --check (no --diff) run {}: {took:.3?}",
                i + 1
            );
            n_times.push(took);
        }
        let mut b_times = Vec::new();
        for i in 0..ANSIBLE_RUNS {
            self.reset();
            let took = self.ansible("bench_noop.yml", &[]);
            eprintln!("  ansible ping baseline run {}: {took:.3?}", i + 1);
            b_times.push(took);
        }
        for r in &self.routers {
            assert_eq!(
                r.lab.secrets(),
                r.live,
                "{}: a plan changed the lab",
                r.name
            );
        }
        w_traffic.turns = wispctl_turns;
        a_traffic.turns = ansible_turns;
        let (fm, cm, am) = (median(&floor_times), median(&cli_times), median(&a_times));
        println!();
        println!(
            "P1: floor (connect, login, one print per router, both at once) median {} (min {}, max {}); whole `wispctl plan` median {} (min {}, max {}); ansible api_modify --check --diff median {}",
            fmt(fm),
            fmt(*floor_times.iter().min().unwrap()),
            fmt(*floor_times.iter().max().unwrap()),
            fmt(cm),
            fmt(*cli_times.iter().min().unwrap()),
            fmt(*cli_times.iter().max().unwrap()),
            fmt(am)
        );
        self.report(
            (&w_times, &w_phases, &w_traffic),
            (&a_times, &a_traffic),
            (&n_times, &n_traffic),
            &b_times,
        );
        println!(
            "Load average (1, 5, 15 min) before: {load_before}; after: {}.",
            loadavg()
        );
        println!(
            "P1 wispctl_over_floor={:.2} ansible_over_wispctl={:.1}",
            cm.as_secs_f64() / fm.as_secs_f64(),
            am.as_secs_f64() / cm.as_secs_f64()
        );
    }

    fn report(
        &self,
        (w_times, w_phases, w): (&[Duration], &[Vec<Duration>; 3], &Traffic),
        (a_times, a): (&[Duration], &Traffic),
        (n_times, n): (&[Duration], &Traffic),
        b_times: &[Duration],
    ) {
        let (wm, am, bm) = (median(w_times), median(a_times), median(b_times));
        let row = |what: &str, times: &[Duration], rest: &str| {
            println!(
                "| {what} | {} | {} | {} | {} | {rest} |",
                times.len(),
                fmt(median(times)),
                fmt(*times.iter().min().unwrap()),
                fmt(*times.iter().max().unwrap()),
            );
        };
        // One value when every router saw the same, else one per router.
        let same = |v: Vec<String>| {
            if v.windows(2).all(|w| w[0] == w[1]) {
                v.into_iter().next().unwrap_or_default()
            } else {
                v.join(" / ")
            }
        };
        let per_router = |t: &Traffic| {
            let rt = t.turns.iter().map(|(n, _)| n.to_string()).collect();
            let conns = t.stats.iter().map(|s| s.connections.to_string()).collect();
            let sent = t
                .stats
                .iter()
                .map(|s| {
                    let per: Vec<String> = s
                        .per_command
                        .iter()
                        .map(|(c, n)| format!("{c} {n}"))
                        .collect();
                    format!("{}: {}", s.commands, per.join(", "))
                })
                .collect();
            (same(rt), same(sent), same(conns))
        };
        let (w_rt, w_sent, w_conn) = per_router(w);
        let (a_rt, a_sent, a_conn) = per_router(a);
        let (_, n_sent, n_conn) = per_router(n);
        let secrets: usize = self.routers.iter().map(|r| r.live.len()).sum();
        let e = self.routers[0].expected;
        println!();
        println!("{}", machine_facts(&self.ws));
        println!(
            "pppoe_plan: {} routers x {} secrets ({secrets} in all), {} ms round-trip delay per answer; \
             desired state differs per router by {} new, {} changed, {} removed",
            self.routers.len(),
            self.per_router,
            LATENCY.as_millis(),
            e.add,
            e.change,
            e.destroy
        );
        println!();
        println!(
            "| tool | runs | median | min | max | API round trips per router | sentences per router | connections per router |"
        );
        println!("|---|---|---|---|---|---|---|---|");
        row(
            "wispctl plan (in-process: load + observe + diff + render)",
            w_times,
            &format!("{w_rt} | {w_sent} | {w_conn}"),
        );
        row(
            "ansible-playbook api_modify --check --diff (2 hosts, one play)",
            a_times,
            &format!("{a_rt} | {a_sent} | {a_conn}"),
        );
        row(
            "ansible-playbook api_modify --check (same, without --diff)",
            n_times,
            &format!("not relayed | {n_sent} | {n_conn}"),
        );
        row(
            "ansible-playbook ping, same inventory (baseline, no API)",
            b_times,
            "0 | 0 | 0",
        );
        println!();
        println!(
            "Ratio Ansible / wispctl (medians): {:.1}x; Ansible above its ping baseline: {}",
            am.as_secs_f64() / wm.as_secs_f64(),
            fmt(am.saturating_sub(bm))
        );
        println!(
            "wispctl phases (medians): load {}, engine plan (connect, login, observe, diff) {}, render {}.",
            fmt(median(&w_phases[0])),
            fmt(median(&w_phases[1])),
            fmt(median(&w_phases[2])),
        );
        println!(
            "Both tools found, per router: {} to add, {} to change, {} to remove.",
            e.add, e.change, e.destroy
        );
    }
}

/// Date, cores, CPU model, and the versions of the tools compared.
fn machine_facts(ws: &ansible::Workspace) -> String {
    let run = common::first_line;
    let cpu = common::cpu_model();
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    format!(
        "date: {}; nproc: {cores}; CPU: {cpu}; {}; {}; {}; community.routeros {}",
        run("date", &["-u", "+%Y-%m-%d %H:%M UTC"]),
        run("rustc", &["--version"]),
        run("python3", &["--version"]),
        ws.version(),
        ws.collection_version(),
    )
}
