//! Apply one antenna group in waves: the canary wave first (`rollout.canary` antennas, every
//! one of which must verify before any other is touched), then waves of
//! `rollout.concurrency`, each verified before the next starts, no new antenna started once
//! more than `rollout.max_failures` have failed, and no new wave once the group's apply
//! deadline leaves no room for its wait. Every planned change ends with exactly one outcome:
//! applied, failed (why), skipped (why) or reverted (why).
//!
//! An antenna verifies on the device (the procedure re-reads both files), then, when its
//! bridge was restarted and the group has a UISP server (`connected_in`), in UISP: the device
//! list is read every `rollout.poll_uisp` (one request shared by every antenna waiting) until
//! it shows the antenna connected again, by MAC, or `rollout.wait_connected` passes. One that
//! does not come back failed; with `rollout.revert_if_not_connected` it is put back on the
//! connection string its bridge had before the run (kept in memory from the read, never in a
//! file), persisted and restarted, waited for again, and reported as reverted. One whose
//! procedure stopped after its bridge was killed is waited for too (still failed when it
//! comes back, reverted like the others when not). The waits end before the group's apply
//! deadline (less a margin): a cut apply would lose every outcome.
//!
//! The first look comes one second after the restart: killing the bridge closes its
//! connection, which UISP sees at once, so a device shown connected then has connected again.
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
    // The waits end before the group's apply deadline, with a margin for what follows them:
    // an apply cut at its deadline would lose every outcome.
    let apply = group.ssh.deadline.apply;
    let until = Instant::now() + apply.saturating_sub((apply / 10).min(Duration::from_secs(30)));
    let check = group
        .desired
        .connected_in
        .as_ref()
        .filter(|_| !rollout.wait_connected.is_zero())
        .map(|server| UispCheck::new(p, server, rollout, until));
    // A wave starts only while its waits fit: once to prove it, once more after a revert.
    let wave_wait = check.as_ref().map_or(Duration::ZERO, |c| {
        c.wait.saturating_mul(if c.revert { 2 } else { 1 })
    });
    let room = || {
        Instant::now()
            .checked_add(wave_wait)
            .is_some_and(|t| t <= until)
    };
    let outcomes = roll_out(
        &items,
        rollout,
        room,
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
                // Restarted: the antenna's connection to UISP was cut, whether or not the
                // procedure finished.
                let restarted = match &written {
                    Ok(w) => w.bridges_restarted > 0,
                    Err(AntennaError::Unfinished { restarted, .. }) => *restarted,
                    Err(_) => false,
                };
                let outcome = match check {
                    Some(check) if restarted => {
                        let before = live.antennas.get(item.op.0).and_then(|r| r.as_ref().ok());
                        let cred = learned
                            .lock()
                            .unwrap_or_else(std::sync::PoisonError::into_inner)
                            .get(&a.host)
                            .copied();
                        let target = Target {
                            login,
                            antenna: a,
                            before,
                            cred,
                            address,
                        };
                        prove(check, &target, written.err()).await
                    }
                    _ => match written {
                        Ok(_) => Outcome::applied(address, Action::Update),
                        Err(e) => Outcome::failed(address, Action::Update, e.to_string()),
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
    /// No wait goes past this (the group's apply deadline, less a margin).
    until: Instant,
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
    fn new(
        p: &'a AirosProvider,
        server: &'a str,
        rollout: super::spec::Rollout,
        until: Instant,
    ) -> Self {
        UispCheck {
            p,
            server,
            wait: rollout.wait_connected,
            poll: rollout.poll_uisp,
            revert: rollout.revert_if_not_connected,
            until,
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
        let until = started
            .checked_add(self.wait)
            .map_or(self.until, |t| t.min(self.until));
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

/// The antenna being proven, and what putting it back needs.
struct Target<'l, 'a> {
    login: &'l Login<'a>,
    antenna: &'l Antenna,
    /// As read before the write (its bridge's connection string is what a revert puts back).
    before: Option<&'l Live>,
    /// The credential that worked for the write.
    cred: Option<usize>,
    address: &'l str,
}

/// An antenna whose bridge was restarted (`unfinished`: the procedure failed after that):
/// proven when UISP shows it connected again (an unfinished one still failed); otherwise
/// failed, or put back on its previous connection string (`revert_if_not_connected`).
async fn prove(
    check: &UispCheck<'_>,
    t: &Target<'_, '_>,
    unfinished: Option<AntennaError>,
) -> Outcome {
    let (a, address) = (t.antenna, t.address);
    let board_mac = t.before.and_then(|l| l.board.hwaddr.as_deref());
    let first = match &unfinished {
        Some(e) => format!("{e}; "),
        None => "written and verified on the antenna, but ".to_string(),
    };
    let why = match check.wait_for(a, board_mac).await {
        Reconnect::Connected => {
            return match unfinished {
                None => Outcome::applied(address, Action::Update),
                Some(e) => Outcome::failed(
                    address,
                    Action::Update,
                    format!("{e}; UISP {} shows it connected", check.server),
                ),
            };
        }
        Reconnect::NotConnected(error) => format!(
            "{first}UISP {} did not show it connected within {}{}",
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
    let Some(previous) = t.before.and_then(Live::bridge_connection) else {
        return Outcome::failed(
            address,
            Action::Update,
            format!("{why}; no previous connection string was read to put back"),
        );
    };
    let reverted = async {
        let (session, _) = t.login.connect(a, t.cred).await?;
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
        Ok(w) if w.bridges_restarted == 0 => Outcome::failed(
            address,
            Action::Update,
            format!(
                "{why}; putting back its previous connection string restarted nothing ({})",
                w.describe()
            ),
        ),
        Ok(w) => {
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
                    "{why}: put back on its previous connection string ({}); {after}",
                    w.describe()
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

/// Runs `write` then `prove` over `items` in waves and returns exactly one outcome per item,
/// in the items' order: the canary wave (`rollout.canary` items), then waves of
/// `rollout.concurrency`, each written (at most `concurrency` at once) and proven before the
/// next starts. Only the outcome's status decides: anything but applied in the canary stops
/// the rollout; after it, a failed or reverted item counts toward `rollout.max_failures`, and
/// no item is started once more have failed. A wave after the canary starts only while
/// `room` says there is time left for it (the group's apply deadline); the items not started
/// are skipped, each saying why.
pub async fn roll_out<'i, W, F, Fut, V, VFut>(
    items: &'i [Item<Op>],
    rollout: Rollout,
    room: impl Fn() -> bool,
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
    let per_wave = rollout.concurrency.max(1);
    let sem = Semaphore::new(per_wave);
    let failures = AtomicUsize::new(0);
    let wave = |range: Range<usize>, stop_after: Option<usize>| {
        let (sem, write, prove, failures) = (&sem, &write, &prove, &failures);
        async move {
            let jobs = range.map(|i| async move {
                let written = {
                    let _permit = sem.acquire().await;
                    if let Some(max) = stop_after {
                        let f = failures.load(Ordering::SeqCst);
                        if f > max {
                            return Outcome::skipped(
                                &items[i].change.address,
                                Action::Update,
                                stopped(f, max),
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
            });
            futures::future::join_all(jobs).await
        }
    };
    let skip = |range: Range<usize>, why: &str| {
        items[range]
            .iter()
            .map(|item| Outcome::skipped(&item.change.address, Action::Update, why))
            .collect::<Vec<_>>()
    };
    let mut outcomes = wave(0..canary, None).await;
    let canary_failed = outcomes
        .iter()
        .filter(|o| o.status != Status::Applied)
        .count();
    if canary_failed > 0 {
        outcomes.extend(skip(
            canary..total,
            &format!(
                "the canary wave failed ({canary_failed} of {canary} antennas): rollout stopped"
            ),
        ));
        return outcomes;
    }
    failures.store(0, Ordering::SeqCst);
    let max = rollout.max_failures;
    let mut start = canary;
    while start < total {
        let end = (start + per_wave).min(total);
        let f = failures.load(Ordering::SeqCst);
        if f > max {
            outcomes.extend(skip(start..total, &stopped(f, max)));
            break;
        }
        if !room() {
            outcomes.extend(skip(
                start..total,
                "not started: the group's deadline.apply_secs leaves no room for another wave and its wait in UISP; the next run continues",
            ));
            break;
        }
        outcomes.extend(wave(start..end, Some(max)).await);
        start = end;
    }
    outcomes
}

/// Why an antenna was not started after `failed` failures.
fn stopped(failed: usize, max: usize) -> String {
    format!("rollout stopped: {failed} antenna(s) failed (rollout.max_failures is {max})")
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
            || true,
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

    /// Every wave is proven (in UISP) before the next is written: the canary, then waves of
    /// `concurrency`. A failed proof stops the later waves (`max_failures` 0), which are
    /// never written; a reverted canary stops the rollout like a failed one. On the paused
    /// clock.
    #[tokio::test(start_paused = true)]
    async fn each_wave_is_proven_before_the_next_is_written() {
        let run = |n: usize, r: Rollout, bad: &'static [usize]| async move {
            let all = items(n);
            let log = Mutex::new(Vec::new());
            let outcomes = roll_out(
                &all,
                r,
                || true,
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
                        if bad.contains(&item.op.0) {
                            Outcome::reverted(&item.change.address, Action::Update, "not back")
                        } else {
                            Outcome::applied(&item.change.address, Action::Update)
                        }
                    }
                },
            )
            .await;
            (statuses(&outcomes), log.into_inner().unwrap())
        };
        let (s, log) = run(5, rollout(2, 1, 0), &[]).await;
        assert_eq!(s, vec![Status::Applied; 5]);
        assert_eq!(
            log,
            [
                "write 0", "proven 0", "write 1", "write 2", "proven 1", "proven 2", "write 3",
                "write 4", "proven 3", "proven 4"
            ]
        );
        // Antenna 2 does not come back: the wave after it is never written.
        let (s, log) = run(5, rollout(2, 1, 0), &[2]).await;
        assert_eq!(
            s,
            [
                Status::Applied,
                Status::Applied,
                Status::Reverted,
                Status::Skipped,
                Status::Skipped
            ]
        );
        assert!(
            !log.iter().any(|l| l == "write 3" || l == "write 4"),
            "{log:?}"
        );
        // A reverted canary stops everything.
        let (s, log) = run(4, rollout(4, 2, 3), &[1]).await;
        assert_eq!(
            s,
            [
                Status::Applied,
                Status::Reverted,
                Status::Skipped,
                Status::Skipped
            ]
        );
        assert_eq!(log.iter().filter(|l| l.starts_with("write")).count(), 2);
    }

    /// A wave after the canary starts only while the group's deadline leaves room for it.
    #[tokio::test]
    async fn no_wave_starts_without_room_for_it() {
        let all = items(5);
        let waves = AtomicUsize::new(0);
        let outcomes = roll_out(
            &all,
            rollout(2, 1, 0),
            || waves.fetch_add(1, Ordering::SeqCst) < 1,
            |_| async {},
            |item, ()| async move { Outcome::applied(&item.change.address, Action::Update) },
        )
        .await;
        assert_eq!(
            statuses(&outcomes),
            [
                Status::Applied,
                Status::Applied,
                Status::Applied,
                Status::Skipped,
                Status::Skipped
            ]
        );
        assert!(
            outcomes[3]
                .reason
                .as_deref()
                .unwrap()
                .starts_with("not started: the group's deadline.apply_secs leaves no room")
        );
    }

    #[tokio::test]
    async fn at_most_concurrency_antennas_run_at_once() {
        let items = items(7);
        let (now, most) = (AtomicUsize::new(0), AtomicUsize::new(0));
        let outcomes = roll_out(
            &items,
            rollout(3, 1, 0),
            || true,
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
