//! Apply one antenna group in waves: the canary wave first (`rollout.canary` antennas, every
//! one of which must verify before any other is touched), then the rest, at most
//! `rollout.concurrency` written at once, no new antenna started once more than
//! `rollout.max_failures` have failed. Every planned change ends with exactly one outcome:
//! applied, failed (why), skipped (why) or reverted (why).
//!
//! An antenna verifies on the device (the procedure re-reads both files), then, when its
//! bridge was restarted and the group has a UISP server (`connected_in`), in UISP: the device
//! list is read every `rollout.poll_uisp` (one request shared by every antenna waiting) until
//! it shows the antenna connected again, by MAC, or `rollout.wait_connected` passes. One that
//! does not come back failed; with `rollout.revert_if_not_connected` it is put back on the
//! connection string its bridge had before the run (kept in memory from the read, never in a
//! file), persisted and restarted, waited for again, and reported as reverted. An antenna
//! waiting for UISP holds no concurrency slot: the next ones are written meanwhile.
//!
//! Afterwards apply keeps what the run learned (this is the one place that writes): which
//! credential worked per antenna ([`super::remembered`]) and the host keys trusted on first use
//! (in the known-hosts file). What it does not do: the procedure on one antenna
//! ([`super::antenna::write_uri`]).

use std::collections::BTreeMap;
use std::future::Future;
use std::ops::Range;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::Semaphore;
use tokio::time::Instant;

use super::antenna::{self, AntennaError, Live, Written};
use super::diff::{Op, Seen, seen};
use super::login::Login;
use super::observe::{GroupLive, UispView};
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
    let rollout = group.desired.rollout;
    let check = group
        .desired
        .connected_in
        .as_ref()
        .filter(|_| !rollout.wait_connected.is_zero())
        .map(|server| UispCheck::new(p, server, rollout));
    let outcomes = roll_out(
        &items,
        rollout,
        |item| {
            let a = &group.desired.antennas[item.op.0];
            let (login, live, learned) = (&login, &live, &learned);
            async move { write_one(login, a, item.op, live, learned).await }
        },
        |item, written| {
            let a = &group.desired.antennas[item.op.0];
            let (login, live, learned, done, check) = (&login, &live, &learned, &done, &check);
            async move {
                let address = &item.change.address;
                let outcome = match written {
                    Err(e) => Outcome::failed(address, Action::Update, e.to_string()),
                    Ok(w) => match check {
                        Some(check) if w.bridges_restarted > 0 => {
                            let before = live.antennas.get(item.op.0).and_then(|r| r.as_ref().ok());
                            let cred = learned
                                .lock()
                                .unwrap_or_else(std::sync::PoisonError::into_inner)
                                .get(&a.host)
                                .copied();
                            prove(check, login, a, before, cred, address).await
                        }
                        _ => Outcome::applied(address, Action::Update),
                    },
                };
                let n = done.fetch_add(1, Ordering::Relaxed) + 1;
                p.progress(&group.name, "antennas applied", n, total);
                outcome
            }
        },
    )
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
) -> Result<Written, AntennaError> {
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
    r
}

/// Asks one UISP server whether the antennas just written show connected again.
struct UispCheck<'a> {
    p: &'a AirosProvider,
    server: &'a str,
    wait: Duration,
    poll: Duration,
    /// `rollout.revert_if_not_connected`.
    revert: bool,
    /// The last device list read, and when: every antenna waiting shares it.
    last: tokio::sync::Mutex<Option<(Instant, Arc<UispView>)>>,
}

/// What waiting for an antenna in UISP found.
enum Reconnect {
    /// UISP shows it connected.
    Connected,
    /// Not within the wait; the last reason the device list could not be read, if any.
    NotConnected(Option<String>),
}

impl<'a> UispCheck<'a> {
    fn new(p: &'a AirosProvider, server: &'a str, rollout: super::spec::Rollout) -> Self {
        UispCheck {
            p,
            server,
            wait: rollout.wait_connected,
            poll: rollout.poll_uisp,
            revert: rollout.revert_if_not_connected,
            last: tokio::sync::Mutex::new(None),
        }
    }

    /// The device list as read at `since` or later: the one another antenna just read, or a
    /// new read. A device counts as connected when UISP lists it `active`, or `unauthorized`
    /// without a key it cannot decrypt (connected, waiting to be authorized).
    async fn view_since(&self, since: Instant) -> Result<Arc<UispView>, String> {
        let mut last = self.last.lock().await;
        if let Some((at, view)) = &*last
            && *at >= since
        {
            return Ok(view.clone());
        }
        let at = Instant::now();
        let client = self.p.uisp_client(self.server).map_err(|e| e.to_string())?;
        let devices = client.devices().await.map_err(|e| e.to_string())?;
        let mut view = UispView::new(self.server);
        for d in &devices {
            let online =
                d.status == "active" || (d.status == "unauthorized" && !d.failed_decryption);
            view.list(&d.mac, d.ip.as_deref(), online);
        }
        let view = Arc::new(view);
        *last = Some((at, view.clone()));
        Ok(view)
    }

    /// Waits until UISP shows `a` (whose board reported `board_mac`) connected, for at most
    /// `wait`: a first look [`FIRST_LOOK`] after the restart (UISP sees a killed bridge's
    /// connection close at once), then every `poll`. A device list read by another antenna
    /// less than half a pause ago, and after this one's restart, is reused.
    async fn wait_for(&self, a: &Antenna, board_mac: Option<&str>) -> Reconnect {
        let started = Instant::now();
        let until = started + self.wait;
        let mut error = None;
        let mut pause = self.poll.min(FIRST_LOOK);
        loop {
            let left = until.saturating_duration_since(Instant::now());
            tokio::time::sleep(left.min(pause)).await;
            let asked = Instant::now();
            let since = asked.checked_sub(pause / 2).unwrap_or(asked).max(started);
            match self.view_since(since).await {
                Ok(view) if seen(Some(&view), a, board_mac) == Seen::Connected => {
                    return Reconnect::Connected;
                }
                Ok(_) => {}
                Err(e) => error = Some(e),
            }
            if left <= pause {
                return Reconnect::NotConnected(error);
            }
            pause = self.poll;
        }
    }
}

/// When UISP is first asked about an antenna after its bridge restarted.
const FIRST_LOOK: Duration = Duration::from_secs(1);

/// An antenna written and restarted: proven when UISP shows it connected again; otherwise
/// failed, or put back on its previous connection string (`revert_if_not_connected`).
async fn prove(
    check: &UispCheck<'_>,
    login: &Login<'_>,
    a: &Antenna,
    before: Option<&Live>,
    cred: Option<usize>,
    address: &str,
) -> Outcome {
    let board_mac = before.and_then(|l| l.board.hwaddr.as_deref());
    let why = match check.wait_for(a, board_mac).await {
        Reconnect::Connected => return Outcome::applied(address, Action::Update),
        Reconnect::NotConnected(error) => format!(
            "written and verified on the antenna, but UISP {} did not show it connected within {}{}",
            check.server,
            crate::engine::deadline::words(check.wait),
            error
                .map(|e| format!(" (last read of its device list failed: {e})"))
                .unwrap_or_default()
        ),
    };
    if !check.revert {
        return Outcome::failed(address, Action::Update, why);
    }
    let Some(previous) = before.and_then(Live::bridge_connection) else {
        return Outcome::failed(
            address,
            Action::Update,
            format!("{why}; no previous connection string was read to put back"),
        );
    };
    let reverted = async {
        let (session, _) = login.connect(a, cred).await?;
        let r = antenna::write_uri(&session, &previous, a.mac.as_deref(), false).await;
        session.close().await;
        r
    }
    .await;
    match reverted {
        Err(e) => Outcome::failed(
            address,
            Action::Update,
            format!("{why}; putting back its previous connection string failed: {e}"),
        ),
        Ok(_) => {
            let after = match check.wait_for(a, board_mac).await {
                Reconnect::Connected => "connected again in UISP".to_string(),
                Reconnect::NotConnected(_) => format!(
                    "UISP does not show it connected either within {}",
                    crate::engine::deadline::words(check.wait)
                ),
            };
            Outcome::reverted(
                address,
                Action::Update,
                format!(
                    "{why}: put back on its previous connection string (persisted, bridge restarted); {after}"
                ),
            )
        }
    }
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

/// Runs `write` then `prove` over `items` in waves (see the module documentation) and returns
/// exactly one outcome per item, in the items' order. `write` runs holding one of
/// `rollout.concurrency` slots, `prove` (which turns what `write` gave into the outcome, and
/// may wait long) without one. Only the outcome's status decides: anything but applied in
/// the canary stops the rollout; a failed or reverted antenna after it counts toward
/// `rollout.max_failures`.
pub async fn roll_out<'i, W, F, Fut, V, VFut>(
    items: &'i [Item<Op>],
    rollout: Rollout,
    write: F,
    prove: V,
) -> Vec<Outcome>
where
    F: Fn(&'i Item<Op>) -> Fut,
    Fut: Future<Output = W>,
    V: Fn(&'i Item<Op>, W) -> VFut,
    VFut: Future<Output = Outcome>,
{
    let total = items.len();
    let canary = rollout.canary.min(total);
    let sem = Semaphore::new(rollout.concurrency.max(1));
    let wave = |range: Range<usize>, stop_after: Option<usize>| {
        let (sem, write, prove) = (&sem, &write, &prove);
        let failures = AtomicUsize::new(0);
        async move {
            let jobs = range.map(|i| {
                let failures = &failures;
                async move {
                    let written = {
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
                        write(&items[i]).await
                    };
                    let o = prove(&items[i], written).await;
                    if matches!(o.status, Status::Failed | Status::Reverted) {
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
            ..Rollout::default()
        }
    }

    /// Runs the rollout with the antennas in `failing` failing; returns each outcome's status
    /// and the antennas that were run, in the order they started.
    async fn run(n: usize, r: Rollout, failing: &[usize]) -> (Vec<Outcome>, Vec<usize>) {
        let items = items(n);
        let started = Mutex::new(Vec::new());
        let outcomes = roll_out(
            &items,
            r,
            |item| {
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
            },
            |_, o| async move { o },
        )
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

    /// The canary is proven (in UISP) before any other antenna is written; after it, an
    /// antenna waiting to be proven holds no slot: with one slot, the next ones are written
    /// while it waits. A reverted canary stops the rollout like a failed one, and a reverted
    /// antenna after it counts toward `max_failures`. On the paused clock.
    #[tokio::test(start_paused = true)]
    async fn proving_waits_without_a_slot_and_the_canary_is_proven_first() {
        let four = items(4);
        let log = Mutex::new(Vec::new());
        let outcomes = roll_out(
            &four,
            rollout(1, 1, 0),
            |item| {
                let log = &log;
                async move {
                    log.lock().unwrap().push(format!("write {}", item.op.0));
                }
            },
            |item, ()| {
                let log = &log;
                async move {
                    tokio::time::sleep(std::time::Duration::from_secs(60)).await;
                    log.lock().unwrap().push(format!("proven {}", item.op.0));
                    Outcome::applied(&item.change.address, Action::Update)
                }
            },
        )
        .await;
        assert_eq!(statuses(&outcomes), vec![Status::Applied; 4]);
        let log = log.into_inner().unwrap();
        assert_eq!(
            &log[..5],
            ["write 0", "proven 0", "write 1", "write 2", "write 3"],
            "{log:?}"
        );

        let reverted = |n: usize, r: Rollout| {
            let items = items(n);
            async move {
                let outcomes = roll_out(
                    &items,
                    r,
                    |_| async {},
                    |item, ()| async move {
                        if item.op.0 == 1 {
                            Outcome::reverted(&item.change.address, Action::Update, "not back")
                        } else {
                            Outcome::applied(&item.change.address, Action::Update)
                        }
                    },
                )
                .await;
                statuses(&outcomes)
            }
        };
        assert_eq!(
            reverted(4, rollout(1, 2, 0)).await,
            [
                Status::Applied,
                Status::Reverted,
                Status::Skipped,
                Status::Skipped
            ]
        );
        assert_eq!(
            reverted(4, rollout(1, 1, 0)).await,
            [
                Status::Applied,
                Status::Reverted,
                Status::Skipped,
                Status::Skipped
            ],
            "a reverted antenna counts as a failure"
        );
    }

    #[tokio::test]
    async fn at_most_concurrency_antennas_run_at_once() {
        let items = items(7);
        let (now, most) = (AtomicUsize::new(0), AtomicUsize::new(0));
        let outcomes = roll_out(
            &items,
            rollout(3, 1, 0),
            |item| {
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
            },
            |_, o| async move { o },
        )
        .await;
        assert_eq!(outcomes.len(), 7);
        assert_eq!(most.load(Ordering::SeqCst), 3);
    }
}
