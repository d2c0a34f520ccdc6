//! When each target is reconciled: every `interval` with jitter after a success, exponential
//! backoff with a cap after a failure, at once when a trigger comes (a change of the desired
//! state); never two reconciles of one target at once (one task per target runs them in
//! turn); triggers that arrive while one runs or waits merge into one more run; at most
//! `limit` reconciles of one group (a kind) at once; a target that stalls holds only its own
//! task and one of its group's slots, never another target's turn.
//!
//! The habits are kube-runtime's `Controller`: reconcile says what happened, an error policy
//! backs off, the scheduler merges duplicate triggers. Time is tokio's, so tests run on the
//! paused clock.

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{Notify, Semaphore, watch};
use tokio::task::JoinSet;
use tokio::time::Instant;

/// Exponential backoff: `base`, doubled after each further failure, never above `cap`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    /// The wait after the first failure.
    pub base: Duration,
    /// The longest wait.
    pub cap: Duration,
}

impl Backoff {
    /// The wait after `failures` consecutive failures (at least 1).
    pub fn after(&self, failures: u32) -> Duration {
        let doublings = failures.saturating_sub(1).min(31);
        self.base.saturating_mul(1u32 << doublings).min(self.cap)
    }
}

/// One target's schedule.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Schedule {
    /// Between two reconciles after a success.
    pub interval: Duration,
    /// The fraction of `interval` each wait may be shorter or longer by (0 to 1): targets
    /// reconciled together drift apart instead of hitting the network in the same second.
    pub jitter: f64,
    /// After a failure.
    pub backoff: Backoff,
}

impl Schedule {
    /// The wait after a reconcile: `failures` consecutive failures so far (0: it succeeded);
    /// `unit` a number in [0, 1) drawn for this wait.
    pub fn wait(&self, failures: u32, unit: f64) -> Duration {
        if failures > 0 {
            return self.backoff.after(failures);
        }
        let j = if self.jitter.is_nan() {
            0.0
        } else {
            self.jitter.clamp(0.0, 1.0)
        };
        let u = if unit.is_nan() {
            0.5
        } else {
            unit.clamp(0.0, 1.0)
        };
        let factor = 1.0 + j * (2.0 * u - 1.0);
        Duration::try_from_secs_f64(self.interval.as_secs_f64() * factor).unwrap_or(Duration::MAX)
    }
}

/// A small deterministic generator of numbers in [0, 1) (xorshift64*): jitter needs no more.
#[derive(Debug, Clone)]
pub struct Unit(u64);

impl Unit {
    /// Seeded (a target's address makes a good seed: each target its own sequence).
    pub fn seeded(seed: &str) -> Unit {
        let mut s = 0x9E37_79B9_7F4A_7C15u64;
        for b in seed.bytes() {
            s = (s ^ u64::from(b)).wrapping_mul(0x100_0000_01B3);
        }
        Unit(s | 1)
    }

    /// The next number.
    pub fn draw(&mut self) -> f64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        (x.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// Wakes one target's task for a run now. Triggers that come while it runs or waits merge
/// into one run.
#[derive(Debug, Default, Clone)]
pub struct Trigger(Arc<Notify>);

impl Trigger {
    /// Asks for a run as soon as the target's previous one (if any) is done.
    pub fn fire(&self) {
        self.0.notify_one();
    }
}

/// One target the scheduler runs.
pub struct Entry {
    /// Its address (`pppoe.balanceador`).
    pub key: String,
    /// Its group (the kind): at most the group's limit of reconciles at once.
    pub group: String,
    /// Its schedule.
    pub schedule: Schedule,
    /// Wakes it.
    pub trigger: Trigger,
    /// The wait before its first run (zero: at once; a target carried over a reload keeps the
    /// time it was due).
    pub first: Duration,
}

/// Runs `reconcile(key)` for every entry on its schedule until `stop` turns true; returns
/// once every task has ended (a reconcile in flight is finished, not cut). `Ok(())` is a
/// success; `Err` a failure (backed off). The first run of each target starts after its
/// `first` wait. After each run, `scheduled(key, wait)` says when the next is due.
pub async fn run<F, Fut, E, S>(
    entries: Vec<Entry>,
    limits: HashMap<String, usize>,
    reconcile: F,
    scheduled: S,
    mut stop: watch::Receiver<bool>,
) where
    F: Fn(String) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<(), E>> + Send,
    E: Send,
    S: Fn(&str, Duration) + Send + Sync + 'static,
{
    let reconcile = Arc::new(reconcile);
    let scheduled = Arc::new(scheduled);
    let mut slots: HashMap<String, Arc<Semaphore>> = limits
        .into_iter()
        .map(|(g, n)| (g, Arc::new(Semaphore::new(n.max(1)))))
        .collect();
    // A group without a limit: one at a time, shared by the group.
    for e in &entries {
        slots
            .entry(e.group.clone())
            .or_insert_with(|| Arc::new(Semaphore::new(1)));
    }
    let mut tasks = JoinSet::new();
    for e in entries {
        let slot = slots[&e.group].clone();
        let (reconcile, scheduled, mut stop) = (reconcile.clone(), scheduled.clone(), stop.clone());
        tasks.spawn(async move {
            let mut unit = Unit::seeded(&e.key);
            let mut failures = 0u32;
            let mut next = Instant::now() + e.first;
            loop {
                tokio::select! {
                    _ = tokio::time::sleep_until(next) => {}
                    _ = e.trigger.0.notified() => {}
                    _ = stop.wait_for(|s| *s) => return,
                }
                let Ok(_permit) = slot.acquire().await else {
                    return;
                };
                if *stop.borrow() {
                    return;
                }
                failures = match reconcile(e.key.clone()).await {
                    Ok(()) => 0,
                    Err(_) => failures.saturating_add(1),
                };
                let now = Instant::now();
                let wait = e.schedule.wait(failures, unit.draw());
                scheduled(&e.key, wait);
                // A wait too long to represent: as good as never (a trigger still wakes it).
                next = now
                    .checked_add(wait)
                    .unwrap_or_else(|| now + Duration::from_secs(100 * 365 * 24 * 3600));
            }
        });
    }
    let _ = stop.wait_for(|s| *s).await;
    while let Some(done) = tasks.join_next().await {
        if let Err(e) = done {
            tracing::error!("a target's reconcile task ended abnormally: {e}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    fn schedule(interval: u64, jitter: f64) -> Schedule {
        Schedule {
            interval: Duration::from_secs(interval),
            jitter,
            backoff: Backoff {
                base: Duration::from_secs(5),
                cap: Duration::from_secs(300),
            },
        }
    }

    #[test]
    fn backoff_doubles_up_to_its_cap_and_jitter_stays_in_bounds() {
        let s = schedule(60, 0.2);
        let waits: Vec<u64> = (1..=9).map(|n| s.wait(n, 0.5).as_secs()).collect();
        assert_eq!(waits, [5, 10, 20, 40, 80, 160, 300, 300, 300]);
        assert_eq!(s.backoff.after(u32::MAX), Duration::from_secs(300));
        let mut unit = Unit::seeded("pppoe.balanceador");
        let (mut lo, mut hi) = (f64::MAX, 0f64);
        for _ in 0..10_000 {
            let w = s.wait(0, unit.draw()).as_secs_f64();
            assert!((48.0..=72.0).contains(&w), "{w}");
            lo = lo.min(w);
            hi = hi.max(w);
        }
        assert!(lo < 49.0 && hi > 71.0, "the jitter spreads ({lo}..{hi})");
        assert_eq!(schedule(60, 0.0).wait(0, 0.9), Duration::from_secs(60));
        assert_eq!(schedule(60, f64::NAN).wait(0, 0.9), Duration::from_secs(60));
        let huge = Schedule {
            interval: Duration::MAX,
            ..schedule(60, 1.0)
        };
        assert_eq!(huge.wait(0, 0.99), Duration::MAX, "no overflow panic");
    }

    /// Runs the scheduler over `entries` for `secs` of paused time; returns each reconcile as
    /// (key, start, end) in seconds since the start.
    async fn record(
        entries: Vec<Entry>,
        limits: &[(&str, usize)],
        secs: u64,
        behave: impl Fn(&str, usize) -> (u64, bool) + Send + Sync + 'static,
    ) -> Vec<(String, f64, f64)> {
        let t0 = Instant::now();
        let log = Arc::new(Mutex::new(Vec::new()));
        let counts = Arc::new(Mutex::new(HashMap::<String, usize>::new()));
        let (tx, rx) = watch::channel(false);
        let limits = limits.iter().map(|(g, n)| (g.to_string(), *n)).collect();
        let (log2, behave) = (log.clone(), Arc::new(behave));
        let reconcile = move |key: String| {
            let (log, counts, behave) = (log2.clone(), counts.clone(), behave.clone());
            async move {
                let n = {
                    let mut c = counts.lock().unwrap();
                    let n = c.entry(key.clone()).or_default();
                    *n += 1;
                    *n
                };
                let (takes, ok) = behave(&key, n);
                let start = t0.elapsed().as_secs_f64();
                tokio::time::sleep(Duration::from_secs(takes)).await;
                log.lock()
                    .unwrap()
                    .push((key, start, t0.elapsed().as_secs_f64()));
                if ok { Ok(()) } else { Err(()) }
            }
        };
        let runner = tokio::spawn(run(entries, limits, reconcile, |_: &str, _| {}, rx));
        tokio::time::sleep(Duration::from_secs(secs)).await;
        tx.send(true).unwrap();
        runner.await.unwrap();
        let mut out = log.lock().unwrap().clone();
        out.sort_by(|a, b| a.1.total_cmp(&b.1));
        out
    }

    fn entry(key: &str, group: &str, s: Schedule) -> Entry {
        Entry {
            key: key.into(),
            group: group.into(),
            schedule: s,
            trigger: Trigger::default(),
            first: Duration::ZERO,
        }
    }

    #[tokio::test(start_paused = true)]
    async fn successes_wait_the_interval_and_failures_back_off() {
        let log = record(
            vec![entry("pppoe.r", "pppoe", schedule(60, 0.0))],
            &[("pppoe", 1)],
            400,
            |_, n| (1, !(2..=4).contains(&n)),
        )
        .await;
        let starts: Vec<f64> = log.iter().map(|(_, s, _)| *s).collect();
        // Run 1 ok (next +60), runs 2-4 fail (+5, +10, +20), run 5 ok (+60), run 6 ...
        assert_eq!(
            starts,
            [0.0, 61.0, 67.0, 78.0, 99.0, 160.0, 221.0, 282.0, 343.0]
        );
    }

    #[tokio::test(start_paused = true)]
    async fn triggers_merge_and_a_target_never_runs_twice_at_once() {
        let e = entry("uisp.main", "uisp", schedule(3600, 0.0));
        let trigger = e.trigger.clone();
        let log = Arc::new(Mutex::new(None));
        let log2 = log.clone();
        let fire = tokio::spawn(async move {
            // While the first run (10 s) is in flight, five triggers: one more run, not five.
            tokio::time::sleep(Duration::from_secs(2)).await;
            for _ in 0..5 {
                trigger.fire();
            }
            *log2.lock().unwrap() = Some(());
        });
        let runs = record(vec![e], &[("uisp", 4)], 100, |_, _| (10, true)).await;
        fire.await.unwrap();
        assert!(log.lock().unwrap().is_some());
        assert_eq!(
            runs.iter().map(|(_, s, e)| (*s, *e)).collect::<Vec<_>>(),
            [(0.0, 10.0), (10.0, 20.0)],
            "one merged run, after the first ended"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_stalled_target_never_delays_another_and_groups_are_bounded() {
        let entries = vec![
            entry("airos.a", "airos", schedule(30, 0.0)),
            entry("airos.b", "airos", schedule(30, 0.0)),
            entry("pppoe.r", "pppoe", schedule(30, 0.0)),
        ];
        // airos.a stalls for 1000 s; airos.b and pppoe.r take 1 s each.
        let log = record(entries, &[("airos", 2), ("pppoe", 1)], 100, |k, _| {
            (if k == "airos.a" { 1000 } else { 1 }, true)
        })
        .await;
        let starts = |k: &str| -> Vec<f64> {
            log.iter()
                .filter(|(x, ..)| x == k)
                .map(|(_, s, _)| *s)
                .collect()
        };
        assert_eq!(starts("airos.b"), [0.0, 31.0, 62.0, 93.0]);
        assert_eq!(starts("pppoe.r"), [0.0, 31.0, 62.0, 93.0]);
        // One slot for the group: its reconciles never overlap (bounded per kind).
        let entries = vec![
            entry("airos.a", "airos", schedule(30, 0.0)),
            entry("airos.b", "airos", schedule(30, 0.0)),
        ];
        let log = record(entries, &[("airos", 1)], 200, |k, _| {
            (if k == "airos.a" { 40 } else { 1 }, true)
        })
        .await;
        assert!(log.len() >= 4, "{log:?}");
        for w in log.windows(2) {
            assert!(
                w[0].2 <= w[1].1,
                "two reconciles of one group at once: {log:?}"
            );
        }
    }
}
