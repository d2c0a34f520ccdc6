//! `wispctl reconcile` through the binary against a served lab (`lab serve`): out-of-band
//! changes healed in `apply` mode and only reported in `observe` mode, notifications caught by
//! a local HTTP endpoint (webhook body against its schema, signature, Telegram's shape), a
//! failing target backing off and recovering, a commit pushed to a local bare repository
//! applied, a deny window holding writes back, a broken YAML keeping the last good state,
//! `/readyz` and `/metrics`, the apply lock shared with a hand-run apply, SIGHUP and SIGTERM.
//!
//! No assertion bounds wall-clock time: waits poll the controller's status with a generous
//! hang guard, and "within one interval" is checked by counting reconciles.

mod common;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{Lab, serve};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use serde_json::Value;

const HOOK_SECRET: &str = "hook-secret-7f3a9";
const TG_TOKEN: &str = "123456:tg-token-b81c";
const TG_CHAT: &str = "-1001234";

/// The controller process, killed if a test fails before stopping it.
struct Controller {
    child: Child,
    metrics: SocketAddr,
    stderr: PathBuf,
}

impl Drop for Controller {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Controller {
    fn start(lab: &Lab, dir: &Path, extra: &[&str]) -> Controller {
        let stderr = lab.tmp.path().join(format!(
            "reconcile-{}.stderr",
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos()
        ));
        let mut child = Command::new(env!("CARGO_BIN_EXE_wispctl"))
            .arg("-C")
            .arg(dir)
            .arg("--lab")
            .arg(lab.lab())
            .args(["reconcile", "--listen", "127.0.0.1:0"])
            .args(extra)
            .env_remove("RUST_LOG")
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&stderr).unwrap())
            .spawn()
            .unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let metrics = line
            .trim()
            .rsplit("http://")
            .next()
            .and_then(|a| a.parse().ok())
            .unwrap_or_else(|| {
                let _ = child.kill();
                panic!(
                    "no address printed: {line:?}; stderr: {}",
                    std::fs::read_to_string(&stderr).unwrap_or_default()
                )
            });
        Controller {
            child,
            metrics,
            stderr,
        }
    }

    fn stderr(&self) -> String {
        std::fs::read_to_string(&self.stderr).unwrap_or_default()
    }

    /// SIGTERM: it must exit 0.
    fn stop(mut self) -> String {
        kill(Pid::from_raw(self.child.id() as i32), Signal::SIGTERM).unwrap();
        let status = self.child.wait().unwrap();
        let err = self.stderr();
        assert!(status.success(), "{status:?}: {err}");
        err
    }

    fn signal(&self, s: Signal) {
        kill(Pid::from_raw(self.child.id() as i32), s).unwrap();
    }

    fn get(&self, path: &str) -> (u16, String) {
        http_get(self.metrics, path)
    }

    /// `wispctl_target_reconciles_total` of a target.
    fn reconciles(&self, target: &str) -> f64 {
        sample(
            &self.get("/metrics").1,
            "wispctl_target_reconciles_total",
            target,
        )
        .unwrap_or(0.0)
    }
}

fn http_get(addr: SocketAddr, path: &str) -> (u16, String) {
    let mut s = TcpStream::connect(addr).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut text = String::new();
    s.read_to_string(&mut text).unwrap();
    let code = text
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap();
    let body = text.split_once("\r\n\r\n").map(|x| x.1).unwrap_or_default();
    (code, body.to_string())
}

/// A sample's value from Prometheus text, parsed as Prometheus does.
fn sample(text: &str, name: &str, target: &str) -> Option<f64> {
    let scrape = prometheus_parse::Scrape::parse(text.lines().map(|l| Ok(l.to_string()))).unwrap();
    scrape
        .samples
        .iter()
        .find(|s| s.metric == name && s.labels.get("target") == Some(target))
        .map(|s| match s.value {
            prometheus_parse::Value::Gauge(v)
            | prometheus_parse::Value::Counter(v)
            | prometheus_parse::Value::Untyped(v) => v,
            _ => f64::NAN,
        })
}

/// Polls until `f` gives something; panics after a generous bound (a hang guard, not a
/// measure of speed).
fn wait_for<T>(what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let start = std::time::Instant::now();
    loop {
        if let Some(v) = f() {
            return v;
        }
        if start.elapsed() > Duration::from_secs(180) {
            panic!("gave up waiting for {what}");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn status(lab: &Lab) -> Value {
    std::fs::read_to_string(lab.lab().join("state/status.json"))
        .ok()
        .and_then(|t| serde_json::from_str(&t).ok())
        .unwrap_or(Value::Null)
}

fn target(lab: &Lab, t: &str) -> Value {
    status(lab)["targets"][t].clone()
}

fn events(lab: &Lab, t: &str) -> Vec<String> {
    status(lab)["events"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .iter()
        .filter(|e| e["target"] == t)
        .map(|e| e["event"].as_str().unwrap().to_string())
        .collect()
}

/// The latest event of this name in a status.
fn last_event(status: &Value, event: &str) -> Value {
    status["events"]
        .as_array()
        .unwrap()
        .iter()
        .rev()
        .find(|e| e["event"] == event)
        .unwrap_or_else(|| panic!("no {event} event: {status}"))
        .clone()
}

fn with_reconcile(dir: &Path, section: &str) {
    let path = dir.join("inventory.yaml");
    let mut text = std::fs::read_to_string(&path).unwrap();
    text.push('\n');
    text.push_str(section);
    std::fs::write(path, text).unwrap();
}

/// An out-of-band edit on the lab router, by the real librouteros client.
fn router_set(lab: &Lab, name: &str, field: &str, value: &str) {
    let served: Value =
        serde_json::from_str(&std::fs::read_to_string(lab.lab().join("serve.json")).unwrap())
            .unwrap();
    let addr: SocketAddr = served["targets"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["section"] == "routers")
        .unwrap()["endpoint"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    let py = Command::new("python3")
        .arg(common::repo().join("tests/routeros_librouteros.py"))
        .args([&addr.ip().to_string(), &addr.port().to_string()])
        .args([
            "wispctl",
            "lab-router-pw",
            "plain",
            "set",
            name,
            field,
            value,
        ])
        .output()
        .expect("python3 runs (tests/setup.sh installs librouteros)");
    assert!(py.status.success(), "{py:?}");
}

/// What a served lab router holds for one secret's field, through the plan of a separate
/// process: the field's "before" when it differs from the YAML, `None` when in line.
fn router_differs(lab: &Lab, dir: &Path) -> bool {
    let r = Command::new(env!("CARGO_BIN_EXE_wispctl"))
        .arg("-C")
        .arg(dir)
        .arg("--lab")
        .arg(lab.lab())
        .args(["plan", "--detailed-exitcode", "--target", "pppoe.*"])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    r.status.code() == Some(2)
}

fn peer_file(lab: &Lab, name: &str) -> PathBuf {
    lab.host().join("etc/ppp/peers").join(name)
}

/// A local HTTP endpoint that records every request and answers 200 with Telegram's `ok`.
#[derive(Clone, Default)]
struct Catcher {
    requests: Arc<Mutex<Vec<Request>>>,
}

#[derive(Clone, Debug)]
struct Request {
    path: String,
    headers: BTreeMap<String, String>,
    body: Vec<u8>,
}

impl Catcher {
    fn start() -> (Catcher, SocketAddr) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let c = Catcher::default();
        let c2 = c.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { return };
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                let mut first = String::new();
                if reader.read_line(&mut first).is_err() {
                    continue;
                }
                let path = first.split_whitespace().nth(1).unwrap_or("").to_string();
                let mut headers = BTreeMap::new();
                loop {
                    let mut l = String::new();
                    if reader.read_line(&mut l).unwrap_or(0) == 0 || l == "\r\n" {
                        break;
                    }
                    if let Some((k, v)) = l.trim_end().split_once(':') {
                        headers.insert(k.trim().to_ascii_lowercase(), v.trim().to_string());
                    }
                }
                let len: usize = headers
                    .get("content-length")
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(0);
                let mut body = vec![0; len];
                let _ = reader.read_exact(&mut body);
                c2.requests.lock().unwrap().push(Request {
                    path,
                    headers,
                    body,
                });
                let answer = "{\"ok\":true,\"result\":{}}";
                let _ = write!(
                    stream,
                    "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{answer}",
                    answer.len()
                );
            }
        });
        (c, addr)
    }

    fn all(&self) -> Vec<Request> {
        self.requests.lock().unwrap().clone()
    }

    /// Webhook bodies (JSON) of one event for one target.
    fn hooks(&self, event: &str, target: &str) -> Vec<Request> {
        self.all()
            .into_iter()
            .filter(|r| r.path == "/hook")
            .filter(|r| {
                let v: Value = serde_json::from_slice(&r.body).unwrap();
                v["event"] == event && v["target"] == target
            })
            .collect()
    }
}

/// A lab whose router and pppd host are in line with the YAML (applied in-process first).
fn applied_lab() -> Lab {
    let lab = Lab::new();
    lab.run(&["apply", "--auto-approve"]).expect(0);
    lab
}

#[test]
fn apply_mode_heals_out_of_band_changes_within_one_interval_sharing_the_apply_lock() {
    let lab = applied_lab();
    with_reconcile(
        &lab.desired(),
        "reconcile:\n  mode: observe\n  poll: 1s\n  backoff: 1s\n  kinds:\n    pppoe: { mode: apply, interval: 3s }\n    pppd: { mode: apply, interval: 3s }\n",
    );
    let (_server, _) = serve(&lab);
    // Drift made before the controller starts, while a hand-run apply holds the lock.
    router_set(&lab, "juan.perez", "profile", "Morosos");
    let peer = peer_file(&lab, "connexa-node-1");
    let good_peer = std::fs::read(&peer).unwrap();
    std::fs::write(&peer, b"# edited by hand\nnoauth\n").unwrap();
    let rt = common::rt();
    let lock = rt
        .block_on(wispctl::engine::lock::ApplyLock::acquire(
            &lab.lab().join("state/apply.lock"),
            Duration::from_secs(1),
            "wispctl apply (a hand-run apply in the test)",
        ))
        .unwrap();
    let c = Controller::start(&lab, &lab.desired(), &["--lock-timeout", "2s"]);
    let (code, body) = c.get("/readyz");
    assert_eq!(code, 503, "not ready before the first pass: {body}");
    assert_eq!(c.get("/healthz").0, 200);
    // The controller waits for the lock, then reports whom it waited for; nothing written.
    let blocked = wait_for("pppoe blocked on the lock", || {
        let t = target(&lab, "pppoe.balanceador");
        (t["outcome"] == "blocked").then_some(t)
    });
    assert!(
        blocked["detail"]
            .as_str()
            .unwrap()
            .contains("a hand-run apply in the test"),
        "the holder is named: {blocked}"
    );
    assert!(router_differs(&lab, &lab.desired()));
    assert_eq!(std::fs::read(&peer).unwrap(), b"# edited by hand\nnoauth\n");
    drop(lock);
    wait_for("both healed", || {
        (target(&lab, "pppoe.balanceador")["outcome"] == "applied"
            && target(&lab, "pppd.vps")["outcome"] == "applied")
            .then_some(())
    });
    assert!(!router_differs(&lab, &lab.desired()));
    assert_eq!(std::fs::read(&peer).unwrap(), good_peer);
    wait_for("ready", || (c.get("/readyz").0 == 200).then_some(()));

    // While it runs: a new out-of-band change is healed by the next reconcile (one interval).
    let before = c.reconciles("pppoe.balanceador");
    let applied_before = events(&lab, "pppoe.balanceador")
        .iter()
        .filter(|e| *e == "applied")
        .count();
    router_set(&lab, "maria.lopez", "profile", "10M");
    wait_for("healed again", || {
        (events(&lab, "pppoe.balanceador")
            .iter()
            .filter(|e| *e == "applied")
            .count()
            > applied_before)
            .then_some(())
    });
    let after = c.reconciles("pppoe.balanceador");
    assert!(
        after - before <= 2.0,
        "healed by the first reconcile after the change ({before} -> {after})"
    );
    assert!(!router_differs(&lab, &lab.desired()));

    // /metrics, as Prometheus parses it.
    let text = c.get("/metrics").1;
    let scrape = prometheus_parse::Scrape::parse(text.lines().map(|l| Ok(l.to_string()))).unwrap();
    let writes = scrape
        .samples
        .iter()
        .find(|s| s.metric == "wispctl_kind_writes_total" && s.labels.get("kind") == Some("pppoe"))
        .expect("writes counted");
    assert!(
        matches!(writes.value, prometheus_parse::Value::Counter(v) if v >= 2.0),
        "{text}"
    );
    for t in [
        "pppoe.balanceador",
        "pppd.vps",
        "uisp.main",
        "airos.clientes",
    ] {
        assert!(
            sample(&text, "wispctl_target_last_reconcile_timestamp_seconds", t).is_some(),
            "{t}: {text}"
        );
    }
    assert_eq!(
        sample(&text, "wispctl_target_drifting_objects", "pppd.vps"),
        Some(0.0)
    );

    // SIGTERM: exit 0, the lock free, the status says it stopped.
    c.stop();
    let st = status(&lab);
    assert!(st["controller"]["stopped_at"].is_string(), "{st}");
    rt.block_on(wispctl::engine::lock::ApplyLock::acquire(
        &lab.lab().join("state/apply.lock"),
        Duration::ZERO,
        "test",
    ))
    .expect("the controller released the lock");
}

#[test]
fn observe_mode_reports_and_notifies_without_writing_and_keeps_the_last_good_yaml() {
    let lab = applied_lab();
    let (catcher, addr) = Catcher::start();
    // Secret files outside the folder, readable by `lab serve` and the controller alike.
    let secrets = lab.tmp.path().join("secrets");
    std::fs::create_dir(&secrets).unwrap();
    for (name, value) in [
        ("hook", HOOK_SECRET),
        ("tg-token", TG_TOKEN),
        ("tg-chat", TG_CHAT),
    ] {
        std::fs::write(secrets.join(name), value).unwrap();
    }
    let s = secrets.display();
    with_reconcile(
        &lab.desired(),
        &format!(
            "reconcile:\n  poll: 1s\n  kinds:\n    pppoe: {{ interval: 2s }}\n    pppd: {{ interval: 2s }}\n  notify:\n    language: es\n    confirm_runs: 2\n    cooldown: 1h\n    webhook:\n      url: http://{addr}/hook\n      secret: {{ file: {s}/hook }}\n    telegram:\n      token: {{ file: {s}/tg-token }}\n      chat_id: {{ file: {s}/tg-chat }}\n      api_url: http://{addr}\n"
        ),
    );
    let (server, _) = serve(&lab);
    let c = Controller::start(&lab, &lab.desired(), &[]);
    wait_for("ready", || (c.get("/readyz").0 == 200).then_some(()));
    let received_before = lab_received_sets(&lab);
    let at_change = c.reconciles("pppoe.balanceador");
    router_set(&lab, "juan.perez", "profile", "Morosos");
    let peer = peer_file(&lab, "connexa-node-2");
    std::fs::write(&peer, b"# edited by hand\n").unwrap();

    let drift = wait_for("a drift notice for the router", || {
        catcher
            .hooks("drift", "pppoe.balanceador")
            .into_iter()
            .next()
    });
    // Anti-flap (confirm_runs: 2): told after the second reconcile that saw it, not the first.
    assert!(
        c.reconciles("pppoe.balanceador") >= at_change + 2.0,
        "a drift seen once is not told"
    );
    wait_for("a drift notice for the host", || {
        catcher.hooks("drift", "pppd.vps").into_iter().next()
    });
    // The webhook body: its schema, its signature.
    let body: Value = serde_json::from_slice(&drift.body).unwrap();
    let schema: Value = serde_json::from_str(
        &std::fs::read_to_string(common::repo().join("schemas/notification.schema.json")).unwrap(),
    )
    .unwrap();
    let validator = jsonschema::validator_for(&schema).unwrap();
    assert!(validator.is_valid(&body), "{body}");
    assert_eq!(
        body["addresses"][0],
        "pppoe.balanceador.secret[\"juan.perez\"]"
    );
    let sig = drift.headers.get("x-wispctl-signature").expect("signed");
    assert!(wispctl::controller::notify::verify(
        HOOK_SECRET.as_bytes(),
        &drift.body,
        sig
    ));
    assert!(!wispctl::controller::notify::verify(
        b"another key",
        &drift.body,
        sig
    ));
    // Telegram: the Bot API's shape, in Spanish.
    let tg: Vec<Request> = catcher
        .all()
        .into_iter()
        .filter(|r| r.path.starts_with("/bot"))
        .collect();
    assert!(!tg.is_empty());
    for r in &tg {
        assert_eq!(r.path, format!("/bot{TG_TOKEN}/sendMessage"));
        let v: Value = serde_json::from_slice(&r.body).unwrap();
        assert_eq!(
            v["chat_id"]
                .as_str()
                .map(str::to_string)
                .unwrap_or(v["chat_id"].to_string()),
            TG_CHAT
        );
        let text = v["text"].as_str().unwrap();
        assert!(!text.is_empty() && text.chars().count() <= 4096, "{text}");
    }
    assert!(
        tg.iter()
            .any(|r| String::from_utf8_lossy(&r.body).contains("pppoe.balanceador")),
        "{tg:?}"
    );
    // Anti-flap: the drift was seen on two reconciles before it was told; told once, not
    // again on the following reconciles (cooldown, and no change).
    let n = c.reconciles("pppoe.balanceador");
    wait_for("two more reconciles", || {
        (c.reconciles("pppoe.balanceador") >= n + 2.0).then_some(())
    });
    assert_eq!(catcher.hooks("drift", "pppoe.balanceador").len(), 1);
    // Observe mode: reported in the history and status, never written.
    assert!(router_differs(&lab, &lab.desired()));
    assert_eq!(std::fs::read(&peer).unwrap(), b"# edited by hand\n");
    let st = status(&lab);
    assert_eq!(
        st["targets"]["pppoe.balanceador"]["outcome"], "drift",
        "{st}"
    );
    assert_eq!(st["targets"]["pppoe.balanceador"]["mode"], "observe");
    let object = &st["objects"]["pppoe.balanceador.secret[\"juan.perez\"]"];
    assert!(
        object["first_seen"].is_string() && object["resolved_at"].is_null(),
        "{st}"
    );
    let text = lab.run(&["status"]);
    assert_eq!(text.code, 0, "{}", text.all());
    assert!(
        text.stdout.contains("Controller: running"),
        "{}",
        text.stdout
    );
    assert!(
        text.stdout
            .lines()
            .any(|l| l.starts_with("pppoe.balanceador") && l.contains("drift")),
        "{}",
        text.stdout
    );
    assert!(
        text.stdout
            .contains("pppoe.balanceador.secret[\"juan.perez\"]")
    );

    // A broken YAML: reported with file:line:column, the last good state keeps running.
    let file = lab.desired().join("pppoe/balanceador.yaml");
    let good = std::fs::read_to_string(&file).unwrap();
    std::fs::write(&file, good.replace("profile: 20M", "profile: [20M")).unwrap();
    let refused = wait_for("the broken YAML refused", || {
        status(&lab)["controller"]["refused"]
            .as_str()
            .map(str::to_string)
    });
    let place = refused
        .split("balanceador.yaml:")
        .nth(1)
        .unwrap_or_default()
        .split(':')
        .take(2)
        .map(|n| n.parse::<u32>().is_ok())
        .collect::<Vec<_>>();
    assert_eq!(place, [true, true], "file:line:column: {refused}");
    let n = c.reconciles("pppoe.balanceador");
    wait_for("reconciles go on", || {
        (c.reconciles("pppoe.balanceador") > n).then_some(())
    });
    assert_eq!(target(&lab, "pppoe.balanceador")["outcome"], "drift");
    // Changed back on the router and the file fixed: resolved, and told.
    std::fs::write(&file, &good).unwrap();
    router_set(&lab, "juan.perez", "profile", "20M");
    wait_for("a resolved notice", || {
        catcher
            .hooks("resolved", "pppoe.balanceador")
            .into_iter()
            .next()
    });
    wait_for("the refusal cleared", || {
        status(&lab)["controller"]["refused"]
            .is_null()
            .then_some(())
    });
    let st = status(&lab);
    assert!(st["objects"]["pppoe.balanceador.secret[\"juan.perez\"]"]["resolved_at"].is_string());
    // The same drift again within the cooldown (1h): confirmed, held back, and counted.
    router_set(&lab, "juan.perez", "profile", "Morosos");
    wait_for("the cooldown counted", || {
        let text = c.get("/metrics").1;
        prometheus_parse::Scrape::parse(text.lines().map(|l| Ok(l.to_string())))
            .unwrap()
            .samples
            .into_iter()
            .find(|s| {
                s.metric == "wispctl_notifications_suppressed_total"
                    && s.labels.get("reason") == Some("cooldown")
            })
            .filter(|s| matches!(s.value, prometheus_parse::Value::Counter(v) if v >= 1.0))
    });
    assert_eq!(
        catcher.hooks("drift", "pppoe.balanceador").len(),
        1,
        "not told again within the cooldown"
    );
    let err = c.stop();
    common::stop_server(server);
    assert_eq!(
        lab_received_sets(&lab),
        received_before + 3,
        "only the three out-of-band edits were written to the router"
    );

    // No secret anywhere: bodies, log, status.
    let mut haystack = err.clone();
    for r in catcher.all() {
        haystack.push_str(&String::from_utf8_lossy(&r.body));
        for (k, v) in &r.headers {
            if k != "host" {
                haystack.push_str(v);
            }
        }
    }
    haystack.push_str(&std::fs::read_to_string(lab.lab().join("state/status.json")).unwrap());
    let mut secrets: Vec<String> = wispctl::lab::secrets(&lab.lab())
        .unwrap()
        .into_values()
        .collect();
    secrets.extend([HOOK_SECRET.to_string(), TG_TOKEN.to_string()]);
    for s in secrets.iter().filter(|s| s.len() >= 4) {
        assert!(!haystack.contains(s.as_str()), "a secret leaked");
    }
}

/// How many `/ppp/secret/set` the lab router received (its file, saved when `lab serve`
/// stops or in-process commands write).
fn lab_received_sets(lab: &Lab) -> u64 {
    lab.router_received()
        .get("/ppp/secret/set")
        .copied()
        .unwrap_or(0)
}

#[test]
fn a_failing_target_backs_off_and_recovers_and_sighup_reloads() {
    let lab = applied_lab();
    // The router drops its first connections: reads fail, then succeed.
    let router_file = lab.lab().join("routers/balanceador.json");
    let mut router: Value =
        serde_json::from_str(&std::fs::read_to_string(&router_file).unwrap()).unwrap();
    router["faults"] = serde_json::json!({ "drop_after_sentences": 0, "drop_times": 8 });
    std::fs::write(&router_file, router.to_string()).unwrap();
    with_reconcile(
        &lab.desired(),
        "reconcile:\n  poll: 1h\n  backoff: 1s\n  backoff_cap: 2s\n  kinds:\n    pppoe: { interval: 1h }\n",
    );
    let (_server, _) = serve(&lab);
    let c = Controller::start(&lab, &lab.desired(), &[]);
    let failing = wait_for("two failures in a row", || {
        let t = target(&lab, "pppoe.balanceador");
        (t["consecutive_failures"].as_u64() >= Some(2)).then_some(t)
    });
    assert_eq!(failing["outcome"], "unreachable", "{failing}");
    // Backed off: the next run is due within the cap, not after the interval (1h).
    let next = humantime::parse_rfc3339(failing["next_run_at"].as_str().unwrap()).unwrap();
    let last = humantime::parse_rfc3339(failing["last_reconcile_at"].as_str().unwrap()).unwrap();
    assert!(
        next.duration_since(last).unwrap_or_default() <= Duration::from_secs(3),
        "{failing}"
    );
    wait_for("recovered", || {
        (target(&lab, "pppoe.balanceador")["outcome"] == "in_sync").then_some(())
    });
    let ev = events(&lab, "pppoe.balanceador");
    assert_eq!(ev.last().map(String::as_str), Some("resolved"), "{ev:?}");
    let t = target(&lab, "pppoe.balanceador");
    assert_eq!(t["consecutive_failures"], 0);
    let text = c.get("/metrics").1;
    let errors = prometheus_parse::Scrape::parse(text.lines().map(|l| Ok(l.to_string())))
        .unwrap()
        .samples
        .into_iter()
        .find(|s| s.metric == "wispctl_kind_errors_total" && s.labels.get("kind") == Some("pppoe"))
        .expect("errors counted");
    assert!(matches!(errors.value, prometheus_parse::Value::Counter(v) if v >= 2.0));

    // SIGHUP (the folder is not polled: poll 1h): every target counts as touched (a rotated
    // secret file lives outside the folder) and is reconciled at once, though its interval is
    // an hour.
    let n_pppd = c.reconciles("pppd.vps");
    let n_pppoe = c.reconciles("pppoe.balanceador");
    let file = lab.desired().join("pppd/vps.yaml");
    let text = std::fs::read_to_string(&file).unwrap();
    std::fs::write(&file, format!("{text}\n# reviewed\n")).unwrap();
    c.signal(Signal::SIGHUP);
    wait_for("every target reconciled at once after the reload", || {
        (c.reconciles("pppd.vps") > n_pppd && c.reconciles("pppoe.balanceador") > n_pppoe)
            .then_some(())
    });
    let st = status(&lab);
    let reload = last_event(&st, "reload");
    assert_eq!(
        reload["detail"],
        "4 target(s) touched: airos.clientes, pppd.vps, pppoe.balanceador, uisp.main",
        "{reload}"
    );
    c.stop();
}

fn git(dir: &Path, args: &[&str]) -> String {
    let out = Command::new("git")
        .arg("-C")
        .arg(dir)
        .args([
            "-c",
            "user.name=test",
            "-c",
            "user.email=test@example.invalid",
        ])
        .args(args)
        .output()
        .unwrap();
    assert!(out.status.success(), "git {args:?}: {out:?}");
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

#[test]
fn a_commit_pushed_to_a_bare_repository_is_applied_and_a_dirty_checkout_refused() {
    let lab = applied_lab();
    let root = lab.tmp.path();
    let bare = root.join("network.git");
    std::fs::create_dir(&bare).unwrap();
    git(&bare, &["init", "--quiet", "--bare", "-b", "main"]);
    let work = root.join("checkout");
    let other = root.join("laptop");
    let bare_url = bare.to_str().unwrap();
    git(
        root,
        &["clone", "--quiet", bare_url, work.to_str().unwrap()],
    );
    common::copy_dir(&lab.desired(), &work.join("desired-state"));
    with_reconcile(
        &work.join("desired-state"),
        "reconcile:\n  poll: 1s\n  kinds:\n    pppd: { mode: apply, interval: 1h }\n",
    );
    git(&work, &["add", "-A"]);
    git(&work, &["commit", "--quiet", "-m", "network"]);
    git(&work, &["push", "--quiet", "origin", "HEAD:main"]);
    let (_server, _) = serve(&lab);
    let c = Controller::start(
        &lab,
        &work.join("desired-state"),
        &["--git", "origin", "main"],
    );
    wait_for("ready", || (c.get("/readyz").0 == 200).then_some(()));

    // From another clone: a new option for one tunnel, pushed.
    git(
        root,
        &["clone", "--quiet", bare_url, other.to_str().unwrap()],
    );
    let file = other.join("desired-state/pppd/vps.yaml");
    let text = std::fs::read_to_string(&file).unwrap();
    std::fs::write(
        &file,
        text.replace(
            "    server: 198.51.100.20\n    user: tecnico\n",
            "    server: 198.51.100.20\n    user: tecnico\n    options:\n      - ipparam node-1\n",
        ),
    )
    .unwrap();
    git(&other, &["commit", "--quiet", "-am", "node-1: ipparam"]);
    git(&other, &["push", "--quiet", "origin", "HEAD:main"]);
    let head = git(&other, &["rev-parse", "HEAD"]);
    let peer = peer_file(&lab, "connexa-node-1");
    wait_for("the pushed commit applied", || {
        std::fs::read_to_string(&peer)
            .ok()
            .filter(|t| t.contains("ipparam node-1"))
    });
    let st = status(&lab);
    assert_eq!(st["controller"]["commit"], head, "{st}");
    let reload = last_event(&st, "reload");
    assert_eq!(
        reload["detail"], "1 target(s) touched: pppd.vps",
        "only the target the commit touches is reconciled at once: {reload}"
    );
    assert_eq!(git(&work, &["rev-parse", "HEAD"]), head, "fast-forwarded");

    // Local changes in the checkout: refused and reported (untracked files count too).
    let local = work.join("desired-state/pppd/vps.yaml");
    let t = std::fs::read_to_string(&local).unwrap();
    std::fs::write(&local, format!("{t}\n# a local edit\n")).unwrap();
    let refused = wait_for("the dirty checkout refused", || {
        status(&lab)["controller"]["refused"]
            .as_str()
            .map(str::to_string)
    });
    assert!(refused.contains("local changes"), "{refused}");

    // A local commit the remote does not have (diverged): refused, never merged.
    git(&work, &["commit", "--quiet", "-am", "a local commit"]);
    let local = git(&work, &["rev-parse", "HEAD"]);
    std::fs::write(
        &file,
        std::fs::read_to_string(&file).unwrap() + "\n# laptop\n",
    )
    .unwrap();
    git(&other, &["commit", "--quiet", "-am", "another"]);
    git(&other, &["push", "--quiet", "origin", "HEAD:main"]);
    let refused = wait_for("the diverged checkout refused", || {
        status(&lab)["controller"]["refused"]
            .as_str()
            .filter(|r| r.contains("diverged"))
            .map(str::to_string)
    });
    assert!(refused.contains("only fast-forwards"), "{refused}");
    // The checkout stays on its local commit: nothing fetched was merged into it.
    assert_eq!(git(&work, &["rev-parse", "HEAD"]), local);
    assert!(
        Command::new("git")
            .arg("-C")
            .arg(&work)
            .args([
                "merge-base",
                "--is-ancestor",
                &git(&other, &["rev-parse", "HEAD"]),
                "HEAD"
            ])
            .status()
            .unwrap()
            .code()
            == Some(1),
        "the laptop's commit is not in the checkout"
    );
    c.stop();
}

#[test]
fn drift_notify_tells_changes_once_from_a_one_shot_run() {
    let lab = applied_lab();
    let (catcher, addr) = Catcher::start();
    with_reconcile(
        &lab.desired(),
        &format!("reconcile:\n  notify:\n    webhook:\n      url: http://{addr}/hook\n"),
    );
    let peer = peer_file(&lab, "connexa-node-2");
    std::fs::write(&peer, b"# edited by hand\n").unwrap();
    lab.run(&["drift", "--notify"]).expect(2);
    assert_eq!(
        catcher.hooks("drift", "pppd.vps").len(),
        1,
        "{:?}",
        catcher.all()
    );
    assert_eq!(catcher.all().len(), 1, "only the drifting target is told");
    // The same drift again: nothing new to tell.
    lab.run(&["drift", "--notify"]).expect(2);
    assert_eq!(catcher.all().len(), 1);
    // Fixed: resolved, once.
    lab.run(&["apply", "--auto-approve"]).expect(0);
    lab.run(&["drift", "--notify"]).expect(0);
    assert_eq!(
        catcher.hooks("resolved", "pppd.vps").len(),
        1,
        "{:?}",
        catcher.all()
    );
    assert_eq!(catcher.all().len(), 2);
}

#[test]
fn a_controller_of_an_unserved_lab_is_refused_unless_once() {
    let lab = Lab::new();
    let r = lab.run(&["reconcile", "--listen", "off"]);
    assert_eq!(r.code, 1, "{}", r.all());
    assert!(r.stderr.contains("lab serve"), "{}", r.all());
}

#[test]
fn a_deny_window_blocks_unattended_writes() {
    let lab = applied_lab();
    with_reconcile(
        &lab.desired(),
        "reconcile:\n  poll: 1s\n  kinds:\n    pppoe: { mode: apply, interval: 2s }\n  windows:\n    deny:\n      - name: freeze\n        from: \"00:00\"\n        to: \"24:00\"\n",
    );
    let (server, _) = serve(&lab);
    let c = Controller::start(&lab, &lab.desired(), &[]);
    wait_for("ready", || (c.get("/readyz").0 == 200).then_some(()));
    let before = lab_received_sets(&lab);
    router_set(&lab, "juan.perez", "profile", "Morosos");
    let blocked = wait_for("blocked by the window", || {
        let t = target(&lab, "pppoe.balanceador");
        (t["outcome"] == "blocked").then_some(t)
    });
    assert!(
        blocked["detail"].as_str().unwrap().contains("freeze"),
        "{blocked}"
    );
    // apply --auto-approve without a terminal: says what it would do, writes nothing, and its
    // report has every change skipped with the reason.
    let report = lab.tmp.path().join("report.json");
    let r = lab.run(&[
        "apply",
        "--auto-approve",
        "--report",
        report.to_str().unwrap(),
    ]);
    assert_eq!(r.code, 0, "{}", r.all());
    let report: Value = serde_json::from_str(&std::fs::read_to_string(&report).unwrap()).unwrap();
    assert_eq!(report["summary"]["applied"], 0, "{report}");
    assert!(report["summary"]["skipped"].as_u64() >= Some(1), "{report}");
    assert!(report.to_string().contains("freeze"), "{report}");
    assert!(
        r.stdout.contains("Not applied:") && r.stdout.contains("freeze"),
        "{}",
        r.stdout
    );
    assert!(
        r.stdout.contains("juan.perez"),
        "it shows what it would do: {}",
        r.stdout
    );
    // The override is for a person at a terminal only.
    let r = lab.run(&["apply", "--auto-approve", "--ignore-windows"]);
    assert_eq!(r.code, 1, "{}", r.all());
    assert!(r.stderr.contains("without a terminal"), "{}", r.all());
    assert!(router_differs(&lab, &lab.desired()));
    c.stop();
    common::stop_server(server);
    assert_eq!(
        lab_received_sets(&lab),
        before + 1,
        "only the out-of-band edit"
    );
}
