//! The engine's own promises, on a fake kind: one outcome per planned change (a missing or
//! extra outcome is an engine error in the report), apply bounded by the kind's concurrency,
//! a panic in a provider contained to its target, the empty-list guard, the delete cap and
//! target filters. Time is tokio's paused clock.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::*;
use crate::plan::report::Status;
use crate::plan::{Action, Change};

/// What the fake provider's apply returns for its items.
#[derive(Clone, Copy)]
enum Answer {
    /// One applied outcome per item.
    Exact,
    /// Nothing for the last item.
    DropLast,
    /// An extra outcome for an address that was not planned.
    Extra,
    /// The first item's outcome twice.
    Twice,
    /// The provider panics.
    Panic,
    /// Target `t0` never finishes applying (a router that drips one byte at a time).
    HangT0,
}

struct Fake {
    targets: Vec<String>,
    concurrency: usize,
    changes: usize,
    action: Action,
    desired_counts: usize,
    answer: Answer,
    active: Arc<AtomicUsize>,
    peak: Arc<AtomicUsize>,
    applied: Arc<Mutex<Vec<String>>>,
    /// Target `t0` never finishes being read.
    observe_hangs: bool,
}

impl Fake {
    fn new(targets: usize) -> Fake {
        Fake {
            targets: (0..targets).map(|i| format!("t{i}")).collect(),
            concurrency: 8,
            changes: 2,
            action: Action::Update,
            desired_counts: 1,
            answer: Answer::Exact,
            active: Arc::default(),
            peak: Arc::default(),
            applied: Arc::default(),
            observe_hangs: false,
        }
    }
}

#[derive(Debug, thiserror::Error)]
#[error("fake")]
struct FakeError;

impl Provider for Fake {
    type Observed = ();
    type Op = usize;
    type Error = FakeError;

    fn kind(&self) -> &'static str {
        "fake"
    }

    fn targets(&self) -> Vec<String> {
        self.targets.clone()
    }

    fn concurrency(&self) -> usize {
        self.concurrency
    }

    fn deadline(&self, _target: &str) -> Deadline {
        Deadline::secs(30, 60)
    }

    async fn observe(&self, target: &str) -> Result<Observation<()>, FakeError> {
        if self.observe_hangs && target == "t0" {
            std::future::pending::<()>().await;
        }
        Ok(Observation {
            state: (),
            fingerprints: BTreeMap::new(),
        })
    }

    fn diff(&self, target: &str, _observed: &Observation<()>) -> Result<Planned<usize>, FakeError> {
        let items = (0..self.changes)
            .map(|i| Item {
                change: Change {
                    impact: Default::default(),
                    address: format!("fake.{target}.thing[\"{i}\"]"),
                    action: self.action,
                    reason: None,
                    fields: Vec::new(),
                    content: None,
                    side_effects: Vec::new(),
                },
                collection: "thing",
                op: i,
            })
            .collect();
        Ok(Planned {
            items,
            desired_counts: BTreeMap::from([("thing", self.desired_counts)]),
            ..Planned::default()
        })
    }

    async fn apply(
        &self,
        target: &str,
        items: Vec<Item<usize>>,
        _observed: Observation<()>,
    ) -> Vec<Outcome> {
        if matches!(self.answer, Answer::HangT0) && target == "t0" {
            std::future::pending::<()>().await;
        }
        let now = self.active.fetch_add(1, Ordering::SeqCst) + 1;
        self.peak.fetch_max(now, Ordering::SeqCst);
        tokio::time::sleep(Duration::from_millis(100)).await;
        self.active.fetch_sub(1, Ordering::SeqCst);
        self.applied.lock().unwrap().push(target.to_string());
        let mut out: Vec<Outcome> = items
            .iter()
            .map(|i| Outcome::applied(&i.change.address, i.change.action))
            .collect();
        match self.answer {
            Answer::Exact | Answer::HangT0 => {}
            Answer::DropLast => {
                out.pop();
            }
            Answer::Extra => out.push(Outcome::applied(
                &format!("fake.{target}.thing[\"ghost\"]"),
                Action::Update,
            )),
            Answer::Twice => out.push(out[0].clone()),
            Answer::Panic => panic!("a provider bug"),
        }
        out
    }
}

fn engine(fake: Fake, max_deletes: usize) -> Engine {
    Engine::new(
        vec![provider(fake)],
        TargetFilter::All,
        max_deletes,
        "digest".into(),
        "key".into(),
    )
}

async fn apply_with(answer: Answer) -> ApplyReport {
    let mut fake = Fake::new(1);
    fake.answer = answer;
    engine(fake, 10).plan().await.apply(&BTreeMap::new()).await
}

#[tokio::test(start_paused = true)]
async fn exact_outcomes_are_reported_as_applied() {
    let report = apply_with(Answer::Exact).await;
    assert!(report.succeeded(), "{report:?}");
    assert_eq!(report.targets[0].outcomes.len(), 2);
    assert_eq!(report.targets[0].error, None);
}

#[tokio::test(start_paused = true)]
async fn a_change_without_an_outcome_fails_and_is_an_engine_error() {
    let report = apply_with(Answer::DropLast).await;
    let t = &report.targets[0];
    assert_eq!(
        t.outcomes.len(),
        2,
        "one outcome per planned change, always"
    );
    assert_eq!(t.outcomes[1].status, Status::Failed);
    assert!(
        t.outcomes[1]
            .reason
            .as_deref()
            .is_some_and(|r| r.contains("no outcome")),
        "{t:?}"
    );
    assert!(
        t.error
            .as_deref()
            .is_some_and(|e| e.starts_with("engine error: 1 change(s) got no outcome")),
        "{t:?}"
    );
    assert!(!report.succeeded());
}

#[tokio::test(start_paused = true)]
async fn an_outcome_for_an_unplanned_change_is_an_engine_error_never_dropped() {
    for answer in [Answer::Extra, Answer::Twice] {
        let report = apply_with(answer).await;
        let t = &report.targets[0];
        assert_eq!(t.outcomes.len(), 2);
        assert!(
            t.error
                .as_deref()
                .is_some_and(|e| e.contains("outcomes for changes that were not planned")),
            "{t:?}"
        );
        assert!(!report.succeeded(), "an engine error fails the run");
    }
}

#[tokio::test(start_paused = true)]
async fn a_panicking_provider_fails_its_own_changes_only() {
    let report = apply_with(Answer::Panic).await;
    let t = &report.targets[0];
    assert!(t.outcomes.iter().all(|o| o.status == Status::Failed));
    assert_eq!(t.outcomes.len(), 2);
    assert!(
        t.error
            .as_deref()
            .is_some_and(|e| e.contains("internal error"))
    );
}

#[tokio::test(start_paused = true)]
async fn apply_runs_at_most_the_kinds_concurrency_at_once() {
    let mut fake = Fake::new(7);
    fake.concurrency = 2;
    let (peak, applied) = (fake.peak.clone(), fake.applied.clone());
    let report = engine(fake, 10).plan().await.apply(&BTreeMap::new()).await;
    assert!(report.succeeded());
    assert_eq!(applied.lock().unwrap().len(), 7, "every target applied");
    assert_eq!(
        peak.load(Ordering::SeqCst),
        2,
        "never more than concurrency at once"
    );
}

#[tokio::test(start_paused = true)]
async fn deletes_in_an_emptied_collection_are_refused_and_the_cap_refuses_the_run() {
    let mut fake = Fake::new(1);
    fake.action = Action::Delete;
    fake.desired_counts = 0;
    let applied = fake.applied.clone();
    let run = engine(fake, 10).plan().await;
    assert!(
        run.plan.targets[0]
            .refusal
            .as_deref()
            .is_some_and(|r| r.contains("empty desired thing list")),
        "{:?}",
        run.plan.targets[0]
    );
    let report = run.apply(&BTreeMap::new()).await;
    assert!(
        report.targets[0]
            .outcomes
            .iter()
            .all(|o| o.status == Status::Skipped)
    );
    assert!(applied.lock().unwrap().is_empty(), "nothing written");

    let mut fake = Fake::new(3);
    fake.action = Action::Delete;
    let applied = fake.applied.clone();
    let run = engine(fake, 5).plan().await;
    assert!(
        run.plan
            .refusal
            .as_deref()
            .is_some_and(|r| r.contains("6 deletes exceed the cap of 5"))
    );
    let report = run.apply(&BTreeMap::new()).await;
    assert!(!report.succeeded());
    assert!(applied.lock().unwrap().is_empty(), "nothing written");
}

#[tokio::test(start_paused = true)]
async fn an_exact_filter_with_no_addresses_matches_no_target() {
    let fake = Fake::new(3);
    let e = Engine::new(
        vec![provider(fake)],
        TargetFilter::exactly(Vec::new()),
        10,
        "d".into(),
        "k".into(),
    );
    assert!(e.plan().await.plan.targets.is_empty());
    let only = TargetFilter::exactly(["fake.t1".to_string()]);
    assert!(only.matches("fake.t1") && !only.matches("fake.t2"));
    let globs = TargetFilter::new(&["t*".into()]).unwrap();
    assert!(
        globs.matches("fake.t1"),
        "a glob matches the name alone too"
    );
}

#[tokio::test(start_paused = true)]
async fn progress_events_name_every_target() {
    let seen: Arc<Mutex<Vec<Event>>> = Arc::default();
    let sink = seen.clone();
    let run = engine(Fake::new(2), 10)
        .with_events(Events::to(move |e| sink.lock().unwrap().push(e)))
        .plan()
        .await;
    run.apply(&BTreeMap::new()).await;
    let seen = seen.lock().unwrap();
    assert_eq!(seen[0], Event::ObserveStarted { targets: 2 });
    let planned = seen
        .iter()
        .filter(|e| matches!(e, Event::TargetPlanned { .. }))
        .count();
    let applied = seen
        .iter()
        .filter(|e| matches!(e, Event::TargetApplied { failed: 0, .. }))
        .count();
    assert_eq!((planned, applied), (2, 2));
    assert!(seen.contains(&Event::ApplyStarted {
        targets: 2,
        changes: 4
    }));
}

#[tokio::test(start_paused = true)]
async fn a_target_that_never_answers_a_read_fails_at_its_deadline_and_the_others_are_planned() {
    let mut fake = Fake::new(2);
    fake.observe_hangs = true;
    let started = tokio::time::Instant::now();
    let run = engine(fake, 10).plan().await;
    let (t0, t1) = (&run.plan.targets[0], &run.plan.targets[1]);
    assert!(
        t0.error
            .as_deref()
            .is_some_and(|e| e.contains("within its deadline of 30s")),
        "{t0:?}"
    );
    assert!(t1.error.is_none() && t1.changes.len() == 2, "{t1:?}");
    // The paused clock moved exactly to the deadline: the read was cut there, not later.
    assert_eq!(started.elapsed(), Duration::from_secs(30));
}

#[tokio::test(start_paused = true)]
async fn an_apply_that_never_finishes_is_cut_at_its_deadline_with_every_change_unknown() {
    let mut fake = Fake::new(2);
    fake.answer = Answer::HangT0;
    let applied = fake.applied.clone();
    let report = engine(fake, 10).plan().await.apply(&BTreeMap::new()).await;
    let t0 = &report.targets[0];
    assert_eq!(t0.outcomes.len(), 2, "one outcome per planned change");
    assert!(
        t0.outcomes.iter().all(|o| o.status == Status::Failed
            && o.reason
                .as_deref()
                .is_some_and(|r| r.starts_with("unknown: the apply deadline (1m)"))),
        "{t0:?}"
    );
    assert!(
        t0.error.as_deref().is_some_and(|e| e.contains("deadline")),
        "{t0:?}"
    );
    assert_eq!(
        *applied.lock().unwrap(),
        vec!["t1".to_string()],
        "the other target was applied"
    );
    assert!(!report.succeeded());
}
