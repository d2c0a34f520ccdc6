//! Scale: the whole CLI `wispctl plan` against a generated lab served out of its process
//! (`wispctl lab serve`), at the operator's size (P4) and at 1x, 10x and 100x of a base (P5).
//!
//! For each case the benchmark generates a lab (the twins' files, written straight in sync
//! with the desired state, except the PPP host's files, which an in-process `wispctl apply`
//! writes) and a desired state that differs from it by a few changes per kind, starts
//! `wispctl -C DESIRED lab serve LAB` as its own child, waits for its `serving ` line, and then
//! runs `wispctl -C DESIRED --lab LAB plan --trust-new-host-keys` (which attaches to the served
//! twins) from a re-executed child of itself (`WISPCTL_SCALE_ONE`): that child's own children
//! are the plans only, so `getrusage(RUSAGE_CHILDREN).max_rss` there is the plan's peak
//! memory, not the server's. The server is stopped with SIGTERM.
//!
//! - P4, the operator's size: 250 PPPoE secrets, 280 UISP devices in 276 sites, 200 airOS
//!   antennas, 50 PPTP peers; prints `P4 wall_s=S peak_mb=M`.
//! - P5: a base of 250 secrets, 200 devices, 20 antennas, 50 peers, at 1x, 10x and 100x, each
//!   kind alone (a desired state holding only that kind), then every kind at once at the
//!   largest scale; prints each kind's wall-time growth per 10x step, then
//!   `P5 max_growth_per_10x=G wall_s=S peak_mb=M` (the whole plan at the largest scale).
//!
//! Knobs: `WISPCTL_SCALE_MAX` (1, 10 or 100; default 100), `WISPCTL_SCALE_RUNS` (plans per
//! case, the median is shown; default 3), `WISPCTL_SCALE_ANTENNAS_MAX` (caps the lab antennas
//! of any case, labelled in the output), `WISPCTL_SCALE_P4=0` / `WISPCTL_SCALE_P5=0` (skip one).
//!
//! ```sh
//! cargo bench --bench scale
//! WISPCTL_SCALE_MAX=10 WISPCTL_SCALE_RUNS=1 cargo bench --bench scale   # quick
//! ```

mod common;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdout, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use wispctl::kinds::airos::twin::fleet::{AntennaFile, FleetFile};

/// The kinds, in the order the tables show them.
const KINDS: [&str; 4] = ["pppoe", "uisp", "airos", "pppd"];

/// The connection string of the lab UISP (the antennas in sync carry it).
const NEW_URI: &str = wispctl::lab::twin::LAB_CONNECTION_STRING;
/// The connection string some antennas still carry.
const OLD_URI: &str = wispctl::kinds::airos::twin::OLD_CONNECTION_STRING;

/// How big one case's targets are (one target per kind).
#[derive(Clone, Copy, Debug)]
struct Size {
    secrets: usize,
    devices: usize,
    sites: usize,
    antennas: usize,
    peers: usize,
}

impl Size {
    fn p4() -> Size {
        Size {
            secrets: 250,
            devices: 280,
            sites: 276,
            antennas: 200,
            peers: 50,
        }
    }

    fn base(m: usize) -> Size {
        Size {
            secrets: 250 * m,
            devices: 200 * m,
            // The operator's ratio: 276 sites for 280 devices.
            sites: 200 * m * 276 / 280,
            antennas: 20 * m,
            peers: 50 * m,
        }
    }

    fn count(&self, kind: &str) -> usize {
        match kind {
            "pppoe" => self.secrets,
            "uisp" => self.devices,
            "airos" => self.antennas,
            _ => self.peers,
        }
    }
}

/// One measured case: the plan's wall times and its peak memory.
struct Measured {
    walls: Vec<Duration>,
    peak_kb: i64,
    serve_start: Duration,
    /// CPU of one plan process (user + system, mean of the runs): the client's alone.
    cpu: Duration,
    /// CPU the `lab serve` process spent while the plans ran, per plan: the twins' side.
    lab_cpu: Duration,
}

impl Measured {
    fn wall(&self) -> Duration {
        common::median(&self.walls)
    }
    fn peak_mb(&self) -> f64 {
        self.peak_kb as f64 / 1024.0
    }
}

fn main() {
    if let Ok(args) = std::env::var("WISPCTL_SCALE_ONE") {
        one(&args);
        return;
    }
    if !std::env::args().any(|a| a == "--bench") {
        println!("scale: skipped (a benchmark; run it with `cargo bench --bench scale`)");
        return;
    }
    let max: usize = knob("WISPCTL_SCALE_MAX", 100);
    let runs: usize = knob("WISPCTL_SCALE_RUNS", 3);
    let antennas_max: usize = knob("WISPCTL_SCALE_ANTENNAS_MAX", usize::MAX);
    println!(
        "scale: {} cores, CPU {}, load {}, {runs} plan(s) per case (median), up to {max}x",
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        common::cpu_model(),
        common::loadavg(),
    );
    // WISPCTL_SCALE_KEEP=DIR: the labs and desired states are made in DIR and kept (to
    // profile a case by hand: `wispctl -C DIR/p4/desired-p4-all lab serve DIR/p4/lab`, then
    // `wispctl -C DIR/p4/desired-p4-all --lab DIR/p4/lab plan --trust-new-host-keys`).
    let kept = std::env::var_os("WISPCTL_SCALE_KEEP").map(std::path::PathBuf::from);
    let tmp = tempfile::tempdir().unwrap();
    let base = kept.as_deref().unwrap_or(tmp.path());

    if knob("WISPCTL_SCALE_P4", 1) != 0 {
        let mut size = Size::p4();
        size.antennas = size.antennas.min(antennas_max);
        let root = base.join("p4");
        let lab = make_lab(&root, size);
        let m = measure(&root, &lab, size, &KINDS, runs, "p4-all");
        println!(
            "P4 (secrets {}, devices {} in {} sites, antennas {}, peers {}): serve start {}",
            size.secrets,
            size.devices,
            size.sites,
            size.antennas,
            size.peers,
            common::fmt(m.serve_start)
        );
        if size.antennas < Size::p4().antennas {
            println!(
                "P4 antennas capped at {} (WISPCTL_SCALE_ANTENNAS_MAX)",
                size.antennas
            );
        }
        println!(
            "P4 plan CPU {} (the plan process), lab CPU {} per plan (the `lab serve` process)",
            common::fmt(m.cpu),
            common::fmt(m.lab_cpu)
        );
        println!(
            "P4 wall_s={:.3} peak_mb={:.0}",
            m.wall().as_secs_f64(),
            m.peak_mb()
        );
    }

    if knob("WISPCTL_SCALE_P5", 1) == 0 {
        return;
    }
    let scales: Vec<usize> = [1, 10, 100].into_iter().filter(|&m| m <= max).collect();
    let mut table: BTreeMap<(&str, usize), (usize, Measured)> = BTreeMap::new();
    let mut whole = None;
    println!(
        "| scale | kind | objects | plan wall (median) | peak memory | plan CPU | lab CPU per plan | serve start |"
    );
    println!("|---|---|---|---|---|---|---|---|");
    for &m in &scales {
        let mut size = Size::base(m);
        size.antennas = size.antennas.min(antennas_max);
        let root = base.join(format!("p5-{m}"));
        let lab = make_lab(&root, size);
        for kind in KINDS {
            let r = measure(&root, &lab, size, &[kind], runs, &format!("{kind}-only"));
            println!(
                "| {m}x | {kind} | {} | {} | {:.0} MiB | {} | {} | {} |",
                size.count(kind),
                common::fmt(r.wall()),
                r.peak_mb(),
                common::fmt(r.cpu),
                common::fmt(r.lab_cpu),
                common::fmt(r.serve_start)
            );
            table.insert((kind, m), (size.count(kind), r));
        }
        if m == *scales.last().unwrap() {
            let r = measure(&root, &lab, size, &KINDS, runs, "all");
            println!(
                "| {m}x | all | {} | {} | {:.0} MiB | {} | {} | {} |",
                KINDS.iter().map(|k| size.count(k)).sum::<usize>(),
                common::fmt(r.wall()),
                r.peak_mb(),
                common::fmt(r.cpu),
                common::fmt(r.lab_cpu),
                common::fmt(r.serve_start)
            );
            whole = Some((m, size, r));
        }
        // The lab of this scale is no longer needed: free the disk before the next one.
        let _ = std::fs::remove_dir_all(&root);
    }
    let mut max_growth: f64 = 0.0;
    for kind in KINDS {
        let mut parts = Vec::new();
        for w in scales.windows(2) {
            let (na, a) = &table[&(kind, w[0])];
            let (nb, b) = &table[&(kind, w[1])];
            let g = b.wall().as_secs_f64() / a.wall().as_secs_f64();
            max_growth = max_growth.max(g);
            parts.push(format!("{}x->{}x ({na}->{nb}): {g:.2}", w[0], w[1]));
        }
        if !parts.is_empty() {
            println!("P5 growth {kind}: {}", parts.join(", "));
        }
    }
    // The airOS plan's cost per antenna (one SSH session each, legacy key exchange), the
    // client's side alone: the plan process's CPU over the antennas it read; the lab's side
    // is the `lab serve` process's, out of the plan's process.
    for &m in &scales {
        let (n, r) = &table[&("airos", m)];
        let per = |d: Duration| d.as_secs_f64() * 1000.0 / *n as f64;
        println!(
            "AIROS scale={m}x antennas={n} client_cpu_ms_per_handshake={:.2} lab_cpu_ms_per_handshake={:.2}",
            per(r.cpu),
            per(r.lab_cpu)
        );
    }
    if let Some((m, size, r)) = whole {
        if size.antennas < Size::base(m).antennas {
            println!(
                "P5 antennas capped at {} instead of {} (WISPCTL_SCALE_ANTENNAS_MAX)",
                size.antennas,
                Size::base(m).antennas
            );
        }
        let growth = if scales.len() > 1 {
            format!("{max_growth:.2}")
        } else {
            "n/a".into() // one scale: no step to compare
        };
        println!(
            "P5 max_growth_per_10x={growth} wall_s={:.3} peak_mb={:.0} (whole plan at {m}x)",
            r.wall().as_secs_f64(),
            r.peak_mb()
        );
    }
}

fn knob(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn wispctl() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_wispctl"));
    c.env_remove("RUST_LOG").stdin(Stdio::null());
    c
}

/// One case: a desired state of `kinds` (with changes) next to `lab`, the lab served for it,
/// the plans measured in a re-executed child of this benchmark.
fn measure(
    root: &Path,
    lab: &Path,
    size: Size,
    kinds: &[&str],
    runs: usize,
    name: &str,
) -> Measured {
    let desired = root.join(format!("desired-{name}"));
    write_desired(&desired, size, kinds, true);
    let started = Instant::now();
    let (mut server, _stdout) = serve(&desired, lab);
    let serve_start = started.elapsed();
    let lab_cpu_before = proc_cpu(server.id());
    let out = Command::new(std::env::current_exe().unwrap())
        .env(
            "WISPCTL_SCALE_ONE",
            format!("{}\n{}\n{runs}", desired.display(), lab.display()),
        )
        .output()
        .unwrap();
    let lab_cpu = proc_cpu(server.id()).saturating_sub(lab_cpu_before) / runs as u32;
    stop(&mut server);
    if std::env::var_os("WISPCTL_SCALE_SHOW").is_some() {
        eprintln!("{}", String::from_utf8_lossy(&out.stderr));
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text
        .lines()
        .find(|l| l.starts_with("one "))
        .unwrap_or_else(|| {
            panic!(
                "{name}: no result\n{text}\n{}",
                String::from_utf8_lossy(&out.stderr)
            )
        });
    let mut walls = Vec::new();
    let mut peak_kb = 0;
    let mut cpu = Duration::ZERO;
    for kv in line.split_whitespace().skip(1) {
        let (k, v) = kv.split_once('=').unwrap();
        match k {
            "wall_ms" => walls.extend(
                v.split(',')
                    .map(|x| Duration::from_micros(x.parse().unwrap())),
            ),
            "peak_kb" => peak_kb = v.parse().unwrap(),
            "cpu_us" => cpu = Duration::from_micros(v.parse().unwrap()),
            _ => {}
        }
    }
    eprintln!(
        "{name}: walls {:?} peak {peak_kb} KiB",
        walls.iter().map(|w| common::fmt(*w)).collect::<Vec<_>>()
    );
    Measured {
        walls,
        peak_kb,
        serve_start,
        cpu,
        lab_cpu,
    }
}

/// User + system CPU of process `pid` so far, from `/proc/PID/stat` (in USER_HZ ticks, 100 per
/// second in the proc ABI).
fn proc_cpu(pid: u32) -> Duration {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the command name (which may hold spaces), from field 3 on.
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let f: Vec<u64> = rest
        .split_whitespace()
        .map(|x| x.parse().unwrap_or(0))
        .collect();
    let ticks = f.get(11).copied().unwrap_or(0) + f.get(12).copied().unwrap_or(0);
    Duration::from_millis(ticks * 10)
}

/// `wispctl -C DESIRED lab serve LAB`, once it prints `serving `. The stdout pipe is kept open
/// until the server is stopped.
fn serve(desired: &Path, lab: &Path) -> (Child, BufReader<ChildStdout>) {
    let mut child = wispctl()
        .arg("-C")
        .arg(desired)
        .args(["lab", "serve"])
        .arg(lab)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    while !line.starts_with("serving ") {
        line.clear();
        if out.read_line(&mut line).unwrap() == 0 {
            let status = child.wait().unwrap();
            panic!("lab serve ended before serving: {status}");
        }
    }
    (child, out)
}

fn stop(server: &mut Child) {
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(server.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    let status = server.wait().unwrap();
    assert!(status.success(), "lab serve ended with {status}");
}

/// The re-executed child: runs the plan RUNS times, prints
/// `one code=C wall_ms=US,US,... peak_kb=K` (walls in microseconds).
fn one(args: &str) {
    let mut it = args.lines();
    let (desired, lab) = (it.next().unwrap(), it.next().unwrap());
    let runs: usize = it.next().unwrap().parse().unwrap();
    let mut walls = Vec::new();
    let mut code = 0;
    for _ in 0..runs {
        let start = Instant::now();
        let out = wispctl()
            .args(["-C", desired, "--lab", lab, "plan", "--trust-new-host-keys"])
            .output()
            .unwrap();
        walls.push(start.elapsed().as_micros().to_string());
        code = out.status.code().unwrap_or(-1);
        let text = String::from_utf8_lossy(&out.stdout);
        if code != 0 || !text.contains("Plan:") {
            eprintln!(
                "plan exited {code}\n{text}\n{}",
                String::from_utf8_lossy(&out.stderr)
            );
            std::process::exit(1);
        }
        if std::env::var_os("WISPCTL_SCALE_SHOW").is_some() {
            eprintln!("{text}");
        }
    }
    let usage = nix::sys::resource::getrusage(nix::sys::resource::UsageWho::RUSAGE_CHILDREN)
        .expect("getrusage");
    let cpu = |t: nix::sys::time::TimeVal| t.tv_sec() as u64 * 1_000_000 + t.tv_usec() as u64;
    println!(
        "one code={code} wall_ms={} peak_kb={} cpu_us={}",
        walls.join(","),
        usage.max_rss(),
        (cpu(usage.user_time()) + cpu(usage.system_time())) / runs as u64
    );
}

// ---------------------------------------------------------------------------------------------
// The lab
// ---------------------------------------------------------------------------------------------

/// A lab of every kind at `size`, in sync with the desired state without its changes.
fn make_lab(root: &Path, size: Size) -> PathBuf {
    let lab = root.join("lab");
    std::fs::create_dir_all(root).unwrap();
    let out = wispctl().args(["lab", "init"]).arg(&lab).output().unwrap();
    assert!(out.status.success(), "lab init: {out:?}");
    let mut env = std::fs::read_to_string(lab.join("secrets.env")).unwrap();
    env.push_str(&format!("UISP_CONNECTION_STRING={NEW_URI}\n"));
    for i in 0..size.secrets {
        env.push_str(&format!("PPPOE_C{i}=pw-{i}\n"));
    }
    for i in 0..size.peers {
        env.push_str(&format!("CHAP_P{i}=chap-{i}\n"));
    }
    std::fs::write(lab.join("secrets.env"), env).unwrap();
    router(&lab, size);
    uisp(&lab, size);
    antennas(&lab, size);
    // The PPP host: empty, then written by an apply of the desired peers without changes.
    let ppp = lab.join("hosts/vps/etc/ppp");
    std::fs::remove_dir_all(&ppp).unwrap();
    std::fs::create_dir_all(ppp.join("peers")).unwrap();
    std::fs::write(
        ppp.join("chap-secrets"),
        "# client\tserver\tsecret\tIP addresses\n",
    )
    .unwrap();
    let sync = root.join("desired-sync-pppd");
    write_desired(&sync, size, &["pppd"], false);
    let out = wispctl()
        .arg("-C")
        .arg(&sync)
        .arg("--lab")
        .arg(&lab)
        .args(["apply", "--auto-approve"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "pppd apply: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    lab
}

fn write_json(path: &Path, v: &impl serde::Serialize) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, serde_json::to_string_pretty(v).unwrap()).unwrap();
}

/// Secret `i`'s remote address: unique.
fn secret_ip(i: usize) -> String {
    format!("10.{}.{}.{}", 64 + i / 65536, (i / 256) % 256, i % 256)
}

/// Whether secret `i` is in the desired state only (new: an add).
fn secret_new(i: usize) -> bool {
    i % 200 == 7
}
/// Whether secret `i` is on the router only (tagged, no longer listed: a remove).
fn secret_gone(i: usize) -> bool {
    i % 200 == 8
}
/// Whether secret `i` moves to another profile (a set and a kick).
fn secret_moved(i: usize) -> bool {
    i % 100 == 3
}

fn router(lab: &Path, size: Size) {
    let mut secrets = Vec::new();
    let mut active = Vec::new();
    for i in (0..size.secrets).filter(|&i| !secret_new(i)) {
        let mac = if i % 3 == 0 {
            mac(0x10, i)
        } else {
            String::new()
        };
        secrets.push(json!({
            "name": format!("c{i:05}"), "password": format!("pw-{i}"), "service": "pppoe",
            "profile": "10M", "local_address": "", "remote_address": secret_ip(i), "routes": "",
            "limit_bytes_in": 0, "limit_bytes_out": 0, "caller_id": mac, "disabled": false,
            "comment": format!("Zone {}, Customer {i} [wispctl]", i % 40),
        }));
        if i % 10 < 7 {
            active.push(json!([format!("c{i:05}"), secret_ip(i)]));
        }
    }
    let file = json!({
        "version": "v7", "password_visible": true,
        "users": [["wispctl", "lab-router-pw"]],
        "profiles": ["10M", "20M", "Morosos"],
        "secrets": secrets, "active": active,
    });
    write_json(
        &wispctl::kinds::pppoe::twin::router_path(lab, "balanceador"),
        &file,
    );
}

fn mac(prefix: u8, i: usize) -> String {
    format!(
        "28:70:{prefix:02X}:{:02X}:{:02X}:{:02X}",
        (i >> 16) & 0xff,
        (i >> 8) & 0xff,
        i & 0xff
    )
}

/// UISP: zones of about 40 endpoints each; device `j` in endpoint `j % endpoints`.
struct UispShape {
    zones: usize,
    endpoints: usize,
}

fn uisp_shape(size: Size) -> UispShape {
    let zones = (size.sites / 40).max(1);
    UispShape {
        zones,
        endpoints: size.sites - zones,
    }
}

fn zone_name(z: usize) -> String {
    format!("Zone {z}")
}
fn endpoint_name(s: &UispShape, e: usize) -> String {
    format!("Zone {}, Customer {e}", e % s.zones)
}
/// Whether endpoint `e` is in the desired state only (a site to create).
fn endpoint_new(e: usize) -> bool {
    e % 100 == 11
}
/// Whether device `j` is somewhere else in UISP (a move) or not authorized (an authorize).
fn device_moved(j: usize) -> bool {
    j % 50 == 5
}
fn device_unauthorized(j: usize) -> bool {
    j % 100 == 17
}
fn device_site(s: &UispShape, j: usize) -> usize {
    let mut e = j % s.endpoints;
    // A device of a new site waits in the site before it (it moves when the site exists).
    if endpoint_new(e) {
        e -= 1;
    }
    e
}

fn uisp(lab: &Path, size: Size) {
    let s = uisp_shape(size);
    let site_id = |n: usize| format!("50000000-0000-4000-8000-{n:012}");
    let mut sites = Vec::new();
    for z in 0..s.zones {
        sites.push(
            json!({ "id": site_id(z), "name": zone_name(z), "kind": "site",
                           "parent_id": null, "address": null, "note": null }),
        );
    }
    for e in (0..s.endpoints).filter(|&e| !endpoint_new(e)) {
        sites.push(
            json!({ "id": site_id(s.zones + e), "name": endpoint_name(&s, e),
                           "kind": "endpoint", "parent_id": site_id(e % s.zones),
                           "address": format!("Calle {e}"), "note": null }),
        );
    }
    let mut devices = Vec::new();
    for j in 0..size.devices {
        let e = if device_moved(j) {
            let mut o = (device_site(&s, j) + 1) % s.endpoints;
            if endpoint_new(o) {
                o += 1;
            }
            o
        } else {
            device_site(&s, j)
        };
        let auth = !device_unauthorized(j);
        devices.push(json!({
            "id": format!("d0000000-0000-4000-8000-{j:012}"), "mac": mac(0x20, j),
            "name": format!("Customer {j} LB5"), "ip": format!("{}/24", secret_ip(j)),
            "model": "LB5", "model_name": "LiteBeam M5", "authorized": auth,
            "site_id": if auth { json!(site_id(s.zones + e)) } else { Value::Null },
            "status": if auth { "active" } else { "unauthorized" },
            "failed_message_decryption": false, "key_resets": 0,
        }));
    }
    let path = wispctl::kinds::uisp::twin::uisp_path(lab, "main");
    let mut file: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    file["state"] = json!({ "sites": sites, "devices": devices });
    write_json(&path, &file);
}

fn antenna_host(i: usize) -> String {
    format!("10.20.{}.{}", i / 250, 1 + i % 250)
}
/// Whether antenna `i` still carries the old connection string (a rewrite).
fn antenna_old(i: usize) -> bool {
    i % 10 == 4
}

fn antennas(lab: &Path, size: Size) {
    let path = wispctl::kinds::airos::twin::antennas_path(lab, "clientes");
    let seeded: FleetFile = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    let template = seeded.antennas[0].clone();
    let fleet = FleetFile {
        antennas: (0..size.antennas)
            .map(|i| {
                let uri = if antenna_old(i) { OLD_URI } else { NEW_URI };
                let cfg = wispctl::kinds::airos::twin::antenna_cfg(&format!(
                    "unms.status=enabled\nunms.uri={uri}\n"
                ));
                AntennaFile {
                    host: antenna_host(i),
                    system_cfg: cfg.clone(),
                    running_cfg: Some(cfg),
                    board_info: format!(
                        "board.name=LiteBeam M5\nboard.shortname=LBE5\nboard.hwaddr={}\n",
                        mac(0x30, i).replace(':', "")
                    ),
                    version: "XW.v6.2.0\n".into(),
                    logins: vec![("ubnt".into(), "lab-antenna-pw-1".into())],
                    host_key: AntennaFile::new_key(10_000 + i as u64),
                    ..template.clone()
                }
            })
            .collect(),
        jump: seeded.jump,
    };
    write_json(&path, &fleet);
}

// ---------------------------------------------------------------------------------------------
// The desired state
// ---------------------------------------------------------------------------------------------

/// The desired state of `kinds` at `size`: with `changes`, a few per kind; without, what the
/// lab holds.
fn write_desired(dir: &Path, size: Size, kinds: &[&str], changes: bool) {
    let _ = std::fs::remove_dir_all(dir);
    std::fs::create_dir_all(dir).unwrap();
    let has = |k: &str| kinds.contains(&k);
    let mut inv = json!({ "guards": { "max_deletes": 1_000_000, "max_disconnects": 1_000_000 } });
    if has("pppd") {
        inv["hosts"] = json!({ "vps": { "access": "local", "root": "/" } });
        let peers: Vec<Value> = (0..size.peers)
            .map(|i| {
                let mut p = json!({ "name": format!("node-{i:05}"),
                                    "server": format!("198.51.{}.{}", i / 250, 1 + i % 250),
                                    "user": format!("user{i}") });
                if i % 5 == 0 {
                    p["defaultroute"] = json!(true);
                    p["options"] = json!([format!("ipparam node-{i:05}")]);
                }
                if changes && i % 25 == 2 {
                    p["mtu"] = json!(1400);
                }
                p
            })
            .filter(|p| !(changes && p["name"] == "node-00013"))
            .collect();
        let mut chap: Vec<Value> = (0..size.peers)
            .map(|i| {
                let var = if changes && i % 25 == 9 {
                    "CHAP_P0".to_string()
                } else {
                    format!("CHAP_P{i}")
                };
                json!({ "client": format!("user{i}"), "server": format!("node-{i:05}"),
                        "secret": { "env": var } })
            })
            .collect();
        let mut peers = peers;
        if changes {
            peers.push(json!({ "name": "node-new", "server": "192.0.2.1", "user": "newuser" }));
            chap.push(json!({ "client": "newuser", "server": "node-new",
                              "secret": { "env": "CHAP_P1" } }));
        }
        write_json(
            &dir.join("pppd/vps.yaml"),
            &json!({ "host": "vps", "prune": "owned", "peers": peers, "chap_secrets": chap }),
        );
    }
    if has("pppoe") {
        inv["routers"] = json!({ "balanceador": {
            "address": "10.147.17.1", "port": 8728, "username": "wispctl",
            "password": { "env": "ROUTER_BALANCEADOR_PASSWORD" } } });
        let secrets: Vec<Value> = (0..size.secrets)
            .filter(|&i| {
                if changes {
                    !secret_gone(i)
                } else {
                    !secret_new(i)
                }
            })
            .map(|i| {
                let mut s = json!({ "name": format!("c{i:05}"),
                                    "password": { "env": format!("PPPOE_C{i}") },
                                    "remote_address": secret_ip(i),
                                    "comment": format!("Zone {}, Customer {i}", i % 40) });
                if i % 3 == 0 {
                    s["caller_id"] = json!(mac(0x10, i));
                }
                if changes && secret_moved(i) {
                    s["profile"] = json!("20M");
                }
                s
            })
            .collect();
        write_json(
            &dir.join("pppoe/balanceador.yaml"),
            &json!({ "router": "balanceador", "prune": "owned",
                     "defaults": { "service": "pppoe", "profile": "10M" },
                     "secrets": secrets }),
        );
    }
    if has("uisp") {
        inv["uisp"] = json!({ "main": { "url": "https://uisp.example.net",
                                        "token": { "env": "UISP_MAIN_TOKEN" } } });
        let s = uisp_shape(size);
        let mut sites: Vec<Value> = (0..s.zones)
            .map(|z| json!({ "name": zone_name(z) }))
            .collect();
        for e in (0..s.endpoints).filter(|&e| changes || !endpoint_new(e)) {
            sites.push(json!({ "name": endpoint_name(&s, e), "type": "endpoint",
                               "parent": zone_name(e % s.zones) }));
        }
        let devices: Vec<Value> = (0..size.devices)
            .map(|j| {
                // With the changes, a device waiting for a new site goes there.
                let e = if changes && endpoint_new(j % s.endpoints) {
                    j % s.endpoints
                } else {
                    device_site(&s, j)
                };
                json!({ "mac": mac(0x20, j), "site": endpoint_name(&s, e) })
            })
            .collect();
        write_json(
            &dir.join("uisp/main.yaml"),
            &json!({ "uisp": "main", "sites": sites, "devices": devices }),
        );
    }
    if has("airos") {
        inv["antenna_groups"] = json!({ "clientes": {
            "port": 22, "legacy": true,
            "credentials": [ { "user": "ubnt", "password": { "env": "AIROS_PASSWORD_1" } } ],
            "jump": { "host": "10.147.17.5",
                      "credentials": [ { "user": "wispctl",
                                         "password": { "env": "AIROS_JUMP_PASSWORD" } } ] },
            "connect_timeout_secs": 10, "command_timeout_secs": 30 } });
        let antennas: Vec<Value> = (0..size.antennas)
            .map(|i| {
                json!({ "host": antenna_host(i), "mac": mac(0x30, i),
                             "name": format!("Customer {i}") })
            })
            .collect();
        write_json(
            &dir.join("airos/clientes.yaml"),
            &json!({ "group": "clientes",
                     "connection": { "secret": { "env": "UISP_CONNECTION_STRING" } },
                     "antennas": antennas }),
        );
    }
    write_json(&dir.join("inventory.yaml"), &inv);
}
