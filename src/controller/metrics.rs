//! The controller's `/healthz`, `/readyz` and `/metrics`.
//!
//! [`Metrics`] collects what the reconcile loop reports and renders it in the Prometheus text
//! exposition format (0.0.4). The metric names are a contract (dashboards and alerts use them):
//!
//! | metric | type | labels |
//! |---|---|---|
//! | `wispctl_target_last_reconcile_timestamp_seconds` | gauge | `target`, `kind` |
//! | `wispctl_target_last_reconcile_duration_seconds` | gauge | `target`, `kind` |
//! | `wispctl_target_outcome` (1 for the last outcome, 0 for the others) | gauge | `target`, `kind`, `outcome` |
//! | `wispctl_target_drifting_objects` | gauge | `target`, `kind` |
//! | `wispctl_target_reconciles_total` | counter | `target`, `kind` |
//! | `wispctl_kind_errors_total` | counter | `kind` |
//! | `wispctl_kind_writes_total` | counter | `kind` |
//! | `wispctl_notifier_failures_total` | counter | |
//! | `wispctl_ready` | gauge | |
//! | `wispctl_build_info` (always 1) | gauge | `version` |
//!
//! `outcome` is one of `in_sync`, `drift`, `applied`, `failed`, `unreachable`, `blocked`.
//! Readiness: ready once every target named by the last [`Metrics::expect`] has finished a
//! reconcile since then, whatever its outcome (an unreachable antenna is reported by its
//! outcome, not by holding the whole controller unready).

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;

/// How a reconcile of one target ended: the history's outcome, one series per value.
pub use super::history::Outcome;

/// The last reconcile of one target.
#[derive(Debug)]
struct Last {
    at: f64,
    duration: f64,
    outcome: Outcome,
    drifting: usize,
    total: u64,
}

#[derive(Debug, Default)]
struct Inner {
    /// By (target, kind).
    targets: BTreeMap<(String, String), Last>,
    errors: BTreeMap<String, u64>,
    writes: BTreeMap<String, u64>,
    /// `None` until the first [`Metrics::expect`]: not ready.
    expected: Option<BTreeSet<String>>,
    /// Targets reconciled since the last `expect`.
    seen: BTreeSet<String>,
    /// Notices held back: by anti-flap, by the cooldown.
    suppressed: (u64, u64),
}

/// The controller's metrics and readiness, shared (`Arc`) by the loop and the server.
#[derive(Debug, Default)]
pub struct Metrics {
    state: Mutex<Inner>,
    notifier_failures: Arc<AtomicU64>,
}

impl Metrics {
    /// No targets, not ready until [`expect`](Self::expect).
    pub fn new() -> Metrics {
        Metrics::default()
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // The maps stay consistent whatever panicked while holding the lock.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Records a finished reconcile of `target` (of `kind`): at `at_unix` (seconds since the
    /// epoch), taking `duration`, with `drifting` objects out of line.
    pub fn reconciled(
        &self,
        target: &str,
        kind: &str,
        at_unix: f64,
        duration: Duration,
        outcome: Outcome,
        drifting: usize,
    ) {
        let mut s = self.lock();
        let key = (target.to_string(), kind.to_string());
        let total = s.targets.get(&key).map_or(0, |l| l.total) + 1;
        let last = Last {
            at: at_unix,
            duration: duration.as_secs_f64(),
            outcome,
            drifting,
            total,
        };
        s.targets.insert(key, last);
        s.seen.insert(target.to_string());
    }

    /// Adds `changes` written to targets of `kind`.
    pub fn wrote(&self, kind: &str, changes: u64) {
        *self.lock().writes.entry(kind.to_string()).or_default() += changes;
    }

    /// Counts one error of `kind`.
    pub fn error(&self, kind: &str) {
        *self.lock().errors.entry(kind.to_string()).or_default() += 1;
    }

    /// The notifier's failure counter (`wispctl_notifier_failures_total`): the notifier
    /// increments it.
    pub fn notifier_failures(&self) -> Arc<AtomicU64> {
        Arc::clone(&self.notifier_failures)
    }

    /// Sets the targets readiness waits for (at start and after each reload) and resets
    /// readiness: ready again once each has reconciled since this call. Series of targets
    /// no longer named are dropped.
    pub fn expect(&self, targets: impl IntoIterator<Item = String>) {
        let expected: BTreeSet<String> = targets.into_iter().collect();
        let mut s = self.lock();
        s.targets.retain(|(t, _), _| expected.contains(t));
        s.seen.clear();
        s.expected = Some(expected);
    }

    /// After a reload: `targets` are the targets now, `touched` those the change touched (and
    /// the new ones). Readiness waits again for the touched targets only: the others keep
    /// their reconcile, made with a desired state that did not change for them.
    pub fn reload(&self, targets: &BTreeSet<String>, touched: &BTreeSet<String>) {
        let mut s = self.lock();
        s.targets.retain(|(t, _), _| targets.contains(t));
        s.seen
            .retain(|t| targets.contains(t) && !touched.contains(t));
        s.expected = Some(targets.clone());
    }

    /// How many notices anti-flap and the cooldown held back so far
    /// (`wispctl_notifications_suppressed_total`).
    pub fn suppressed(&self, flapping: u64, cooldown: u64) {
        self.lock().suppressed = (flapping, cooldown);
    }

    /// How many of the expected targets have reconciled since the last
    /// [`expect`](Self::expect), and how many are expected.
    pub fn progress(&self) -> (usize, usize) {
        let s = self.lock();
        match &s.expected {
            Some(e) => (e.intersection(&s.seen).count(), e.len()),
            None => (0, 0),
        }
    }

    /// Whether every expected target has reconciled since the last [`expect`](Self::expect)
    /// (never before the first).
    pub fn ready(&self) -> bool {
        let s = self.lock();
        s.expected.as_ref().is_some_and(|e| e.is_subset(&s.seen))
    }

    /// The metrics in the Prometheus text exposition format.
    pub fn render(&self) -> String {
        let ready = u8::from(self.ready());
        let failures = self.notifier_failures.load(Ordering::Relaxed);
        let s = self.lock();
        let mut out = String::new();
        let t = |(target, kind): &(String, String)| {
            format!("target=\"{}\",kind=\"{}\"", escape(target), escape(kind))
        };
        let mut per_target = |name, ty, help, get: fn(&Last) -> String| {
            family(
                &mut out,
                name,
                ty,
                help,
                s.targets.iter().map(|(k, l)| (t(k), get(l))),
            );
        };
        let help = "When the target's last reconcile finished, in seconds since the epoch.";
        per_target(
            "wispctl_target_last_reconcile_timestamp_seconds",
            "gauge",
            help,
            |l| num(l.at),
        );
        let help = "How long the target's last reconcile took, in seconds.";
        per_target(
            "wispctl_target_last_reconcile_duration_seconds",
            "gauge",
            help,
            |l| num(l.duration),
        );
        let help = "Objects out of line with the YAML at the target's last reconcile.";
        per_target("wispctl_target_drifting_objects", "gauge", help, |l| {
            l.drifting.to_string()
        });
        let help = "Reconciles of the target finished since the controller started.";
        per_target("wispctl_target_reconciles_total", "counter", help, |l| {
            l.total.to_string()
        });
        let outcomes = s.targets.iter().flat_map(|(k, l)| {
            Outcome::ALL.map(|o| {
                let v = u8::from(o == l.outcome).to_string();
                (format!("{},outcome=\"{}\"", t(k), o.as_str()), v)
            })
        });
        let help = "1 for the outcome of the target's last reconcile, 0 for the others.";
        family(&mut out, "wispctl_target_outcome", "gauge", help, outcomes);
        let by_kind = |m: &BTreeMap<String, u64>| {
            let rows = m
                .iter()
                .map(|(k, v)| (format!("kind=\"{}\"", escape(k)), v.to_string()));
            rows.collect::<Vec<_>>()
        };
        let help = "Failed reconciles by kind.";
        family(
            &mut out,
            "wispctl_kind_errors_total",
            "counter",
            help,
            by_kind(&s.errors),
        );
        let help = "Changes written by kind.";
        family(
            &mut out,
            "wispctl_kind_writes_total",
            "counter",
            help,
            by_kind(&s.writes),
        );
        let help = "Notifications that could not be delivered.";
        let rows = [(String::new(), failures.to_string())];
        family(
            &mut out,
            "wispctl_notifier_failures_total",
            "counter",
            help,
            rows,
        );
        let help = "Notifications held back, by reason: flapping (anti-flap) or cooldown.";
        family(
            &mut out,
            "wispctl_notifications_suppressed_total",
            "counter",
            help,
            [
                (
                    "reason=\"flapping\"".to_string(),
                    s.suppressed.0.to_string(),
                ),
                (
                    "reason=\"cooldown\"".to_string(),
                    s.suppressed.1.to_string(),
                ),
            ],
        );
        let help = "1 once every target has reconciled since start or the last reload.";
        family(
            &mut out,
            "wispctl_ready",
            "gauge",
            help,
            [(String::new(), ready.to_string())],
        );
        let version = format!("version=\"{}\"", escape(env!("CARGO_PKG_VERSION")));
        let help = "Always 1; the version of wispctl.";
        family(
            &mut out,
            "wispctl_build_info",
            "gauge",
            help,
            [(version, "1".into())],
        );
        out
    }
}

/// One metric family: `# HELP`, `# TYPE`, then a sample per (labels, value).
fn family(
    out: &mut String,
    name: &str,
    ty: &str,
    help: &str,
    rows: impl IntoIterator<Item = (String, String)>,
) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {ty}");
    for (labels, v) in rows {
        match labels.is_empty() {
            true => writeln!(out, "{name} {v}"),
            false => writeln!(out, "{name}{{{labels}}} {v}"),
        }
        .expect("writing to a String");
    }
}

/// A label value as the text format writes it.
fn escape(v: &str) -> String {
    let mut out = String::with_capacity(v.len());
    for c in v.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out
}

/// A sample value as the text format writes it (Rust's `Display` of a float never uses an
/// exponent; infinities are Go's).
fn num(v: f64) -> String {
    match v {
        f64::INFINITY => "+Inf".into(),
        f64::NEG_INFINITY => "-Inf".into(),
        v => v.to_string(),
    }
}

/// Serves `/healthz`, `/readyz` and `/metrics` on `listener` until `stop` resolves, then
/// finishes the requests in flight. Any other path is 404.
pub async fn serve(
    listener: tokio::net::TcpListener,
    metrics: Arc<Metrics>,
    stop: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let app = Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(render))
        .fallback(|| async { (StatusCode::NOT_FOUND, "not found\n") })
        .with_state(metrics);
    axum::serve(listener, app)
        .with_graceful_shutdown(stop)
        .await
}

async fn readyz(State(m): State<Arc<Metrics>>) -> impl IntoResponse {
    if m.ready() {
        return (StatusCode::OK, "ready\n".to_string());
    }
    let (n, total) = m.progress();
    let body = format!("not ready: {n} of {total} targets reconciled since start\n");
    (StatusCode::SERVICE_UNAVAILABLE, body)
}

async fn render(State(m): State<Arc<Metrics>>) -> impl IntoResponse {
    let content_type = "text/plain; version=0.0.4; charset=utf-8";
    ([(header::CONTENT_TYPE, content_type)], m.render())
}

#[cfg(test)]
mod tests {
    use super::*;
    use prometheus_parse::{Scrape, Value};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    fn scrape(m: &Metrics) -> Scrape {
        let text = m.render();
        Scrape::parse(text.lines().map(|l| Ok(l.to_string()))).unwrap()
    }

    fn value(s: &Scrape, metric: &str, labels: &[(&str, &str)]) -> Option<Value> {
        let found = s.samples.iter().find(|x| {
            x.metric == metric && labels.iter().all(|(k, v)| x.labels.get(k) == Some(*v))
        });
        found.map(|x| x.value.clone())
    }

    #[test]
    fn render_parses_with_the_right_values() {
        let m = Metrics::new();
        m.expect(["core1".to_string(), "ap7".to_string()]);
        let d = Duration::from_millis(1500);
        m.reconciled("core1", "pppoe", 1_700_000_000.5, d, Outcome::Drift, 3);
        m.reconciled("core1", "pppoe", 1_700_000_060.0, d, Outcome::Applied, 1);
        m.reconciled("ap7", "airos", 1_700_000_001.0, d, Outcome::Unreachable, 0);
        m.wrote("pppoe", 4);
        m.wrote("pppoe", 2);
        m.error("airos");
        m.notifier_failures().fetch_add(2, Ordering::Relaxed);
        let s = scrape(&m);
        let core = &[("target", "core1"), ("kind", "pppoe")][..];
        let version = &[("version", env!("CARGO_PKG_VERSION"))][..];
        use Value::{Counter, Gauge};
        for (metric, labels, want) in [
            (
                "wispctl_target_last_reconcile_timestamp_seconds",
                core,
                Gauge(1_700_000_060.0),
            ),
            (
                "wispctl_target_last_reconcile_duration_seconds",
                core,
                Gauge(1.5),
            ),
            ("wispctl_target_reconciles_total", core, Counter(2.0)),
            ("wispctl_target_drifting_objects", core, Gauge(1.0)),
            (
                "wispctl_kind_writes_total",
                &[("kind", "pppoe")],
                Counter(6.0),
            ),
            (
                "wispctl_kind_errors_total",
                &[("kind", "airos")],
                Counter(1.0),
            ),
            ("wispctl_notifier_failures_total", &[], Counter(2.0)),
            ("wispctl_ready", &[], Gauge(1.0)),
            ("wispctl_build_info", version, Gauge(1.0)),
        ] {
            assert_eq!(value(&s, metric, labels), Some(want), "{metric}");
            assert!(s.docs.contains_key(metric), "{metric} has no HELP");
        }
        for o in Outcome::ALL {
            let labels = [
                ("target", "ap7"),
                ("kind", "airos"),
                ("outcome", o.as_str()),
            ];
            let want = Gauge(if o == Outcome::Unreachable { 1.0 } else { 0.0 });
            assert_eq!(value(&s, "wispctl_target_outcome", &labels), Some(want));
        }
        let outcomes = s
            .samples
            .iter()
            .filter(|x| x.metric == "wispctl_target_outcome");
        assert_eq!(outcomes.count(), 12);
        // A reload that drops a target drops its series.
        m.expect(["core1".to_string()]);
        let ts = "wispctl_target_last_reconcile_timestamp_seconds";
        assert_eq!(value(&scrape(&m), ts, &[("target", "ap7")]), None);
    }

    #[test]
    fn label_values_are_escaped() {
        let m = Metrics::new();
        let d = Duration::ZERO;
        m.reconciled("a\"b\\c\nd", "pppoe", 1.0, d, Outcome::InSync, 0);
        let text = m.render();
        let want = "wispctl_target_drifting_objects{target=\"a\\\"b\\\\c\\nd\",kind=\"pppoe\"} 0\n";
        assert!(text.contains(want), "{text}");
        assert!(text.lines().all(|l| !l.is_empty()));
        assert_eq!(num(f64::INFINITY), "+Inf");
        assert_eq!(num(0.25), "0.25");
    }

    #[test]
    fn readiness_waits_for_every_target_and_resets() {
        let m = Metrics::new();
        assert!(!m.ready(), "nothing expected yet");
        m.expect(["a".to_string(), "b".to_string()]);
        let d = Duration::ZERO;
        m.reconciled("a", "pppoe", 1.0, d, Outcome::InSync, 0);
        m.reconciled("x", "pppoe", 1.0, d, Outcome::InSync, 0);
        assert!(!m.ready());
        assert_eq!(m.progress(), (1, 2));
        m.reconciled("b", "airos", 1.0, d, Outcome::Failed, 0);
        assert!(m.ready());
        m.expect(["a".to_string(), "b".to_string()]);
        assert!(!m.ready(), "reset by expect");
        m.reconciled("a", "pppoe", 2.0, d, Outcome::InSync, 0);
        m.reconciled("b", "airos", 2.0, d, Outcome::InSync, 0);
        assert!(m.ready());
        m.expect(Vec::new());
        assert!(m.ready(), "no targets: nothing to wait for");
    }

    async fn get(addr: std::net::SocketAddr, path: &str) -> (u16, String, String) {
        let mut conn = tokio::net::TcpStream::connect(addr).await.unwrap();
        let req = format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n");
        conn.write_all(req.as_bytes()).await.unwrap();
        let mut raw = String::new();
        conn.read_to_string(&mut raw).await.unwrap();
        let (head, body) = raw.split_once("\r\n\r\n").unwrap();
        let status = head[9..12].parse().unwrap();
        (status, head.to_ascii_lowercase(), body.to_string())
    }

    #[tokio::test]
    async fn server_answers_and_stops() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let m = Arc::new(Metrics::new());
        m.expect(["core1".to_string()]);
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let stop = async move {
            let _ = rx.await;
        };
        let server = tokio::spawn(serve(listener, Arc::clone(&m), stop));
        assert_eq!(get(addr, "/healthz").await.0, 200);
        assert_eq!(get(addr, "/healthz").await.2, "ok\n");
        let (status, _, body) = get(addr, "/readyz").await;
        let want = "not ready: 0 of 1 targets reconciled since start\n";
        assert_eq!((status, body.as_str()), (503, want));
        m.reconciled("core1", "pppoe", 1.0, Duration::ZERO, Outcome::InSync, 0);
        let (status, _, body) = get(addr, "/readyz").await;
        assert_eq!((status, body.as_str()), (200, "ready\n"));
        let (status, head, body) = get(addr, "/metrics").await;
        assert_eq!(status, 200);
        let content_type = "content-type: text/plain; version=0.0.4; charset=utf-8";
        assert!(head.contains(content_type), "{head}");
        assert!(body.contains("wispctl_ready 1\n"), "{body}");
        assert_eq!(get(addr, "/nope").await.0, 404);
        tx.send(()).unwrap();
        server.await.unwrap().unwrap();
        let again = tokio::net::TcpStream::connect(addr).await;
        assert!(again.is_err(), "still listening");
    }
}
