//! Apply one antenna group in waves: the canary wave first (`rollout.canary` antennas, every
//! one of which must verify before any other is touched), then the rest, at most
//! `rollout.concurrency` at once, no new antenna started once more than `rollout.max_failures`
//! have failed. Every planned change ends with exactly one outcome: applied, failed (why), or
//! skipped (why).
//!
//! Afterwards apply keeps what the run learned (this is the one place that writes): which
//! credential worked per antenna ([`super::remembered`]) and the host keys trusted on first use
//! (in the known-hosts file). What it does not do: the procedure on one antenna
//! ([`super::antenna::write_uri`]).

use std::collections::BTreeMap;
use std::future::Future;
use std::ops::Range;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

use tokio::sync::Semaphore;

use super::antenna::{self, AntennaError};
use super::diff::{Op, Seen, seen};
use super::login::Login;
use super::observe::GroupLive;
use super::provider::{AirosProvider, Group};
use super::remembered;
use super::spec::{Antenna, Rollout};
use crate::engine::Item;
use crate::plan::Action;
use crate::plan::report::{Outcome, Status};
use crate::ssh::TrustedKey;

/// Applies the planned changes of one group, in waves, and keeps what the run learned.
pub(super) async fn group(
    p: &AirosProvider,
    group: &Group,
    items: Vec<Item<Op>>,
    live: GroupLive,
) -> Vec<Outcome> {
    let login = match p.login(group) {
        Ok(l) => l,
        // Cannot happen after a successful observe (same settings, known hosts loaded once),
        // but every change still gets its outcome.
        Err(e) => {
            return items
                .iter()
                .map(|i| Outcome::failed(&i.change.address, Action::Update, e.to_string()))
                .collect();
        }
    };
    let total = items.len();
    let learned = Mutex::new(BTreeMap::new());
    let done = AtomicUsize::new(0);
    let outcomes = roll_out(&items, group.desired.rollout, |item| {
        let a = &group.desired.antennas[item.op.0];
        let (login, live, learned, done) = (&login, &live, &learned, &done);
        async move {
            let result = write_one(login, a, item.op, live, learned).await;
            let n = done.fetch_add(1, Ordering::Relaxed) + 1;
            p.progress(&group.name, "antennas applied", n, total);
            match result {
                Ok(()) => Outcome::applied(&item.change.address, Action::Update),
                Err(e) => Outcome::failed(&item.change.address, Action::Update, e.to_string()),
            }
        }
    })
    .await;
    let mut trusted = live.trusted.clone();
    trusted.extend(login.trusted(&group.desired.antennas));
    let known = login.known_hosts().clone();
    login.close().await;
    // What observe learned too: a plan writes nothing, so this is where it is kept.
    let mut learned = learned
        .into_inner()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    for (host, cred) in &live.credentials {
        learned.entry(host.clone()).or_insert(*cred);
    }
    keep(p, group, &learned, &known, &trusted);
    outcomes
}

/// For a group with nothing to change: keeps what observing it learned (the credentials that
/// worked, host keys trusted on first use).
pub(super) fn keep_observed(p: &AirosProvider, group: &Group, live: &GroupLive) {
    match p.login(group) {
        Ok(login) => keep(
            p,
            group,
            &live.credentials,
            login.known_hosts(),
            &live.trusted,
        ),
        Err(e) => tracing::warn!("cannot keep what reading {} learned: {e}", group.name),
    }
}

/// One antenna: logs in (the credential that worked when it was read first), runs the whole
/// procedure on a fresh read, logs out. Whether UISP shows it connected is what the plan saw.
async fn write_one(
    login: &Login<'_>,
    a: &Antenna,
    op: Op,
    live: &GroupLive,
    learned: &Mutex<BTreeMap<String, usize>>,
) -> Result<(), AntennaError> {
    let board_mac = live
        .antennas
        .get(op.0)
        .and_then(|r| r.as_ref().ok())
        .and_then(|l| l.board.hwaddr.as_deref());
    let connected = seen(live.connected.as_ref(), a, board_mac) == Seen::Connected;
    let (session, cred) = login
        .connect(a, live.credentials.get(&a.host).copied())
        .await?;
    learned
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .insert(a.host.clone(), cred);
    let r = antenna::write_uri(&session, &live.desired, a.mac.as_deref(), connected).await;
    session.close().await;
    r.map(|_| ())
}

/// Records the credentials that worked and the host keys trusted on first use. A failure to
/// record is a warning: the changes themselves are done.
fn keep(
    p: &AirosProvider,
    group: &Group,
    learned: &BTreeMap<String, usize>,
    known: &crate::ssh::KnownHosts,
    trusted: &[TrustedKey],
) {
    if let Err(e) = remembered::write(
        &p.ctx.state_dir,
        &p.ctx.key,
        &group.name,
        &group.ssh.credentials,
        learned,
    ) {
        tracing::warn!(
            "cannot remember which credentials worked in {}: {e}",
            remembered::path(&p.ctx.state_dir, &group.name).display()
        );
    }
    if !trusted.is_empty()
        && let Err(e) = known.record_trusted(trusted)
    {
        tracing::warn!("cannot record the host keys trusted on first use: {e}");
    }
}

/// Runs `run_one` over `items` in waves (see the module documentation) and returns exactly one
/// outcome per item, in the items' order. Only the outcome's status decides: anything but
/// applied in the canary stops the rollout; a failure after it counts toward
/// `rollout.max_failures`.
pub async fn roll_out<'i, F, Fut>(
    items: &'i [Item<Op>],
    rollout: Rollout,
    run_one: F,
) -> Vec<Outcome>
where
    F: Fn(&'i Item<Op>) -> Fut,
    Fut: Future<Output = Outcome>,
{
    let total = items.len();
    let canary = rollout.canary.min(total);
    let sem = Semaphore::new(rollout.concurrency.max(1));
    let wave = |range: Range<usize>, stop_after: Option<usize>| {
        let (sem, run_one) = (&sem, &run_one);
        let failures = AtomicUsize::new(0);
        async move {
            let jobs = range.map(|i| {
                let failures = &failures;
                async move {
                    let _permit = sem.acquire().await;
                    if let Some(max) = stop_after {
                        let f = failures.load(Ordering::SeqCst);
                        if f > max {
                            return Outcome::skipped(
                                &items[i].change.address,
                                Action::Update,
                                format!(
                                    "rollout stopped: {f} antenna(s) failed (rollout.max_failures is {max})"
                                ),
                            );
                        }
                    }
                    let o = run_one(&items[i]).await;
                    if o.status == Status::Failed {
                        failures.fetch_add(1, Ordering::SeqCst);
                    }
                    o
                }
            });
            futures::future::join_all(jobs).await
        }
    };
    let mut outcomes = wave(0..canary, None).await;
    let canary_failed = outcomes
        .iter()
        .filter(|o| o.status != Status::Applied)
        .count();
    if canary_failed > 0 {
        outcomes.extend(items[canary..].iter().map(|item| {
            Outcome::skipped(
                &item.change.address,
                Action::Update,
                format!(
                    "the canary wave failed ({canary_failed} of {canary} antennas): rollout stopped"
                ),
            )
        }));
    } else {
        outcomes.extend(wave(canary..total, Some(rollout.max_failures)).await);
    }
    outcomes
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::Change;

    fn items(n: usize) -> Vec<Item<Op>> {
        (0..n)
            .map(|i| Item {
                change: Change {
                    impact: Default::default(),
                    address: format!("airos.g[\"10.0.0.{i}\"]"),
                    action: Action::Update,
                    reason: None,
                    fields: Vec::new(),
                    content: None,
                    side_effects: Vec::new(),
                },
                collection: "antenna",
                op: Op(i),
            })
            .collect()
    }

    fn rollout(concurrency: usize, canary: usize, max_failures: usize) -> Rollout {
        Rollout {
            concurrency,
            canary,
            max_failures,
        }
    }

    /// Runs the rollout with the antennas in `failing` failing; returns each outcome's status
    /// and the antennas that were run, in the order they started.
    async fn run(n: usize, r: Rollout, failing: &[usize]) -> (Vec<Outcome>, Vec<usize>) {
        let items = items(n);
        let started = Mutex::new(Vec::new());
        let outcomes = roll_out(&items, r, |item| {
            let started = &started;
            async move {
                started.lock().unwrap().push(item.op.0);
                // Lets the other antennas of the wave start, as a real write would.
                tokio::task::yield_now().await;
                if failing.contains(&item.op.0) {
                    Outcome::failed(&item.change.address, Action::Update, "boom")
                } else {
                    Outcome::applied(&item.change.address, Action::Update)
                }
            }
        })
        .await;
        let addresses: Vec<&str> = outcomes.iter().map(|o| o.address.as_str()).collect();
        let planned: Vec<String> = items.iter().map(|i| i.change.address.clone()).collect();
        assert_eq!(addresses, planned, "one outcome per change, in order");
        (outcomes, started.into_inner().unwrap())
    }

    fn statuses(outcomes: &[Outcome]) -> Vec<Status> {
        outcomes.iter().map(|o| o.status).collect()
    }

    #[tokio::test]
    async fn everything_is_applied_when_nothing_fails() {
        let (o, started) = run(5, rollout(2, 2, 0), &[]).await;
        assert_eq!(statuses(&o), vec![Status::Applied; 5]);
        assert_eq!(started.len(), 5);
        assert_eq!(&started[..2], &[0, 1], "the canary goes first");
        let (o, _) = run(0, rollout(2, 3, 0), &[]).await;
        assert!(o.is_empty());
    }

    #[tokio::test]
    async fn a_failed_canary_skips_everything_else_untouched() {
        let (o, started) = run(6, rollout(8, 2, 5), &[1]).await;
        assert_eq!(
            statuses(&o),
            [Status::Applied, Status::Failed]
                .into_iter()
                .chain([Status::Skipped; 4])
                .collect::<Vec<_>>()
        );
        assert_eq!(started, vec![0, 1], "nothing after the canary was touched");
        assert_eq!(
            o[2].reason.as_deref(),
            Some("the canary wave failed (1 of 2 antennas): rollout stopped")
        );
    }

    #[tokio::test]
    async fn a_wave_stops_once_failures_pass_max_failures() {
        // One at a time after a canary of one; max_failures 1: the second failure stops it.
        let (o, started) = run(8, rollout(1, 1, 1), &[2, 3]).await;
        assert_eq!(
            statuses(&o),
            [
                Status::Applied,
                Status::Applied,
                Status::Failed,
                Status::Failed
            ]
            .into_iter()
            .chain([Status::Skipped; 4])
            .collect::<Vec<_>>()
        );
        assert_eq!(started, vec![0, 1, 2, 3]);
        assert_eq!(
            o[4].reason.as_deref(),
            Some("rollout stopped: 2 antenna(s) failed (rollout.max_failures is 1)")
        );
        // A canary larger than the group is the whole group; with no canary every antenna is
        // in the one wave.
        let (o, _) = run(3, rollout(4, 10, 0), &[]).await;
        assert_eq!(statuses(&o), vec![Status::Applied; 3]);
        let (o, started) = run(3, rollout(1, 0, 0), &[0]).await;
        assert_eq!(
            statuses(&o),
            vec![Status::Failed, Status::Skipped, Status::Skipped]
        );
        assert_eq!(started, vec![0]);
    }

    #[tokio::test]
    async fn at_most_concurrency_antennas_run_at_once() {
        let items = items(7);
        let (now, most) = (AtomicUsize::new(0), AtomicUsize::new(0));
        let outcomes = roll_out(&items, rollout(3, 1, 0), |item| {
            let (now, most) = (&now, &most);
            async move {
                let n = now.fetch_add(1, Ordering::SeqCst) + 1;
                most.fetch_max(n, Ordering::SeqCst);
                for _ in 0..3 {
                    tokio::task::yield_now().await;
                }
                now.fetch_sub(1, Ordering::SeqCst);
                Outcome::applied(&item.change.address, Action::Update)
            }
        })
        .await;
        assert_eq!(outcomes.len(), 7);
        assert_eq!(most.load(Ordering::SeqCst), 3);
    }
}
