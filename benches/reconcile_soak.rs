//! Controller soak: `wispctl reconcile` in apply mode against a lab served out of its process
//! (`wispctl lab serve`) for a while (default 120 s; `WISPCTL_SOAK_SECS`), with an out-of-band
//! edit every few seconds, alternately a pppd peer file edited by hand and a PPPoE secret
//! changed on the router (the librouteros client, when python3 has it). Both kinds run with a
//! 2 s interval (jitter 10%); UISP and the antennas keep their defaults.
//!
//! Reported, as ratios so that machines compare: each heal's delay (edit to restored, seen by
//! polling every 20 ms) over the interval; the controller's resident memory and open file
//! descriptors at the end over those after its first pass; reconciles per target per minute
//! over the rate the interval allows. A controller that leaks, or a schedule that drifts,
//! shows here; none of it is a test (no wall-clock bound is asserted anywhere).

mod common;

use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

struct Kill(Child);

impl Drop for Kill {
    fn drop(&mut self) {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(self.0.id() as i32),
            nix::sys::signal::Signal::SIGTERM,
        );
        let _ = self.0.wait();
    }
}

fn bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_wispctl"))
}

fn proc_status(pid: u32, key: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with(key))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

fn fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|d| d.count())
        .unwrap_or(0)
}

fn metric(addr: &str, name: &str, target: &str) -> f64 {
    use std::io::{Read, Write};
    let Ok(mut s) = std::net::TcpStream::connect(addr) else {
        return 0.0;
    };
    let _ = write!(
        s,
        "GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
    );
    let mut text = String::new();
    let _ = s.read_to_string(&mut text);
    text.lines()
        .find(|l| l.starts_with(name) && l.contains(&format!("target=\"{target}\"")))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0)
}

fn router_set(lab: &Path, value: &str) -> bool {
    let served: serde_json::Value = match std::fs::read_to_string(lab.join("serve.json")) {
        Ok(t) => serde_json::from_str(&t).unwrap(),
        Err(_) => return false,
    };
    let addr: std::net::SocketAddr = served["targets"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["section"] == "routers")
        .unwrap()["endpoint"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/routeros_librouteros.py");
    Command::new("python3")
        .arg(script)
        .args([&addr.ip().to_string(), &addr.port().to_string()])
        .args([
            "wispctl",
            "lab-router-pw",
            "plain",
            "set",
            "juan.perez",
            "profile",
            value,
        ])
        .output()
        .is_ok_and(|o| o.status.success())
}

fn router_differs(desired: &Path, lab: &Path) -> bool {
    Command::new(bin())
        .arg("-C")
        .arg(desired)
        .arg("--lab")
        .arg(lab)
        .args(["plan", "--detailed-exitcode", "--target", "pppoe.*"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .map(|s| s.code() == Some(2))
        .unwrap_or(true)
}

fn main() {
    let secs: u64 = std::env::var("WISPCTL_SOAK_SECS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(120);
    let interval = Duration::from_secs(2);
    let tmp = tempfile::tempdir().unwrap();
    let lab = tmp.path().join("lab");
    let desired = tmp.path().join("desired");
    wispctl::lab::init(&lab).unwrap();
    common::copy_dir(
        &PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("desired-state"),
        &desired,
    );
    let inv = desired.join("inventory.yaml");
    let text = std::fs::read_to_string(&inv).unwrap();
    std::fs::write(
        &inv,
        format!(
            "{text}\nreconcile:\n  poll: 1s\n  kinds:\n    pppoe: {{ mode: apply, interval: 2s }}\n    pppd: {{ mode: apply, interval: 2s }}\n"
        ),
    )
    .unwrap();
    let ok = Command::new(bin())
        .arg("-C")
        .arg(&desired)
        .arg("--lab")
        .arg(&lab)
        .args(["apply", "--auto-approve"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .status()
        .unwrap();
    assert!(ok.success());
    let mut serve = Command::new(bin())
        .arg("-C")
        .arg(&desired)
        .args(["lab", "serve"])
        .arg(&lab)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let out = serve.stdout.take().unwrap();
    let _serve = Kill(serve);
    for line in std::io::BufReader::new(out).lines() {
        if line.unwrap().starts_with("serving ") {
            break;
        }
    }
    let mut ctl = Command::new(bin())
        .arg("-C")
        .arg(&desired)
        .arg("--lab")
        .arg(&lab)
        .args(["reconcile", "--listen", "127.0.0.1:0"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let pid = ctl.id();
    let mut line = String::new();
    std::io::BufReader::new(ctl.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let addr = line.trim().rsplit("http://").next().unwrap().to_string();
    let ctl = Kill(ctl);
    // After the first pass: the baseline.
    while metric(&addr, "wispctl_target_reconciles_total", "airos.clientes") < 1.0 {
        std::thread::sleep(Duration::from_millis(100));
    }
    let (rss0, fd0) = (proc_status(pid, "VmRSS:"), fds(pid));
    let (p0, r0) = (
        metric(&addr, "wispctl_target_reconciles_total", "pppd.vps"),
        metric(
            &addr,
            "wispctl_target_reconciles_total",
            "pppoe.balanceador",
        ),
    );
    let start = Instant::now();
    let peer = lab.join("hosts/vps/etc/ppp/peers/connexa-node-1");
    let good = std::fs::read(&peer).unwrap();
    let mut heals: Vec<(&str, Duration)> = Vec::new();
    let mut unhealed = 0;
    let mut round = 0u32;
    let python = router_set(&lab, "20M");
    while start.elapsed() < Duration::from_secs(secs) {
        round += 1;
        let edited = Instant::now();
        let (what, healed) = if round.is_multiple_of(2) && python {
            router_set(
                &lab,
                if round.is_multiple_of(4) {
                    "Morosos"
                } else {
                    "10M"
                },
            );
            (
                "pppoe",
                wait(Duration::from_secs(20), || !router_differs(&desired, &lab)),
            )
        } else {
            std::fs::write(&peer, format!("# by hand {round}\nnoauth\n")).unwrap();
            (
                "pppd",
                wait(Duration::from_secs(20), || {
                    std::fs::read(&peer).ok().as_deref() == Some(&good[..])
                }),
            )
        };
        if healed {
            heals.push((what, edited.elapsed()));
        } else {
            unhealed += 1;
        }
        std::thread::sleep(Duration::from_secs(3));
    }
    let minutes = start.elapsed().as_secs_f64() / 60.0;
    let (rss1, fd1) = (proc_status(pid, "VmRSS:"), fds(pid));
    let (p1, r1) = (
        metric(&addr, "wispctl_target_reconciles_total", "pppd.vps"),
        metric(
            &addr,
            "wispctl_target_reconciles_total",
            "pppoe.balanceador",
        ),
    );
    drop(ctl);
    let allowed = 60.0 / interval.as_secs_f64();
    println!(
        "reconcile_soak: {secs} s, interval 2 s, load {}",
        common::loadavg()
    );
    for kind in ["pppd", "pppoe"] {
        let mut d: Vec<Duration> = heals.iter().filter(|h| h.0 == kind).map(|h| h.1).collect();
        if d.is_empty() {
            println!("{kind}: no heal measured (python3 librouteros missing for pppoe?)");
            continue;
        }
        d.sort();
        let med = common::median(&d);
        println!(
            "{kind}: {} heals, delay median {} max {} -> median/interval {:.2} max/interval {:.2}",
            d.len(),
            common::fmt(med),
            common::fmt(*d.last().unwrap()),
            med.as_secs_f64() / interval.as_secs_f64(),
            d.last().unwrap().as_secs_f64() / interval.as_secs_f64()
        );
    }
    println!("unhealed within 20 s: {unhealed}");
    println!(
        "reconciles per minute: pppd.vps {:.1}, pppoe.balanceador {:.1} (interval allows {allowed:.0}) -> {:.2} and {:.2} of it",
        (p1 - p0) / minutes,
        (r1 - r0) / minutes,
        (p1 - p0) / minutes / allowed,
        (r1 - r0) / minutes / allowed
    );
    println!(
        "SOAK rss_kib_start={rss0} rss_kib_end={rss1} rss_end_over_start={:.2} fds_start={fd0} fds_end={fd1} fds_end_over_start={:.2}",
        rss1 as f64 / rss0.max(1) as f64,
        fd1 as f64 / fd0.max(1) as f64
    );
}

fn wait(bound: Duration, mut f: impl FnMut() -> bool) -> bool {
    let start = Instant::now();
    while start.elapsed() < bound {
        if f() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    false
}
