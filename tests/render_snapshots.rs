//! Rendered plans, as a reviewer sees them: text, Markdown and JSON snapshots of the lab's
//! first plan, and the Markdown size cap.

use std::sync::Arc;

use wispctl::engine::{Context, TargetFilter};
use wispctl::plan::render::{Purpose, json, markdown, text};
use wispctl::plan::{Action, Change, ContentDiff, Plan, Summary, TargetPlan};
use wispctl::secret::{HashKey, SecretResolver};

fn lab_plan() -> Plan {
    let tmp = tempfile::tempdir().unwrap();
    let lab = tmp.path().join("lab");
    wispctl::lab::init(&lab).unwrap();
    let resolver = SecretResolver::new().with_fallback_env(wispctl::lab::secrets(&lab).unwrap());
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("desired-state");
    let d = wispctl::desired::load(&dir, &resolver).unwrap();
    let key = Arc::new(HashKey::from_bytes([3; 32]));
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let labs = wispctl::lab::Runtime::start(&lab, &d).await.unwrap();
        let ctx =
            Context::new(key.clone(), tmp.path().join("state")).with_endpoints(labs.endpoints());
        let engine = wispctl::kinds::engine(&d, &ctx, TargetFilter::default(), 10);
        engine.plan().await.plan
    })
}

#[test]
fn text_plan() {
    insta::assert_snapshot!(text::plan(&lab_plan(), Purpose::Plan, text::Paint(false)));
}

#[test]
fn markdown_plan() {
    insta::assert_snapshot!(markdown::plan(&lab_plan(), Purpose::Plan));
}

#[test]
fn json_plan() {
    let v: serde_json::Value = serde_json::from_str(&json::plan(&lab_plan())).unwrap();
    insta::assert_json_snapshot!(v, {
        ".created_at" => "[created_at]",
        ".desired_digest" => "[digest]",
        ".wispctl_version" => "[version]",
    });
}

#[test]
fn coloured_text_marks_actions() {
    let s = text::plan(&lab_plan(), Purpose::Plan, text::Paint(true));
    assert!(s.contains("\x1b[32m+ pppd.vps.peer[\"connexa-node-2\"] will be created\x1b[0m"));
    assert!(s.contains("\x1b[31m- pppd.vps.peer[\"connexa-node-9\"] will be destroyed\x1b[0m"));
}

fn huge_plan(lines: usize) -> Plan {
    let after: String = (0..lines).map(|i| format!("option-{i} value\n")).collect();
    let change = Change {
        impact: Default::default(),
        address: "pppd.vps.peer[\"big\"]".into(),
        action: Action::Create,
        reason: None,
        fields: vec![],
        content: Some(ContentDiff {
            path: "/etc/ppp/peers/big".into(),
            before: None,
            after: Some(after),
        }),
        side_effects: vec![],
    };
    let target = TargetPlan {
        address: "pppd.vps".into(),
        kind: "pppd".into(),
        name: "vps".into(),
        error: None,
        refusal: None,
        changes: vec![change.clone(), change],
        notes: vec![],
        fingerprints: Default::default(),
        secret_hashes: Default::default(),
        object_errors: Default::default(),
        not_compared: Vec::new(),
    };
    plan_of(vec![target], None)
}

/// A plan of these targets.
fn plan_of(targets: Vec<TargetPlan>, snapshot: Option<wispctl::plan::SnapshotInfo>) -> Plan {
    Plan {
        format_version: wispctl::plan::FORMAT_VERSION,
        wispctl_version: "test".into(),
        created_at: "now".into(),
        desired_digest: "d".into(),
        hash_key_id: "k".into(),
        refusal: None,
        snapshot,
        summary: Summary::of(&targets),
        targets,
    }
}

#[test]
fn markdown_never_exceeds_the_comment_limit_and_says_it_was_cut() {
    // Two changes, each larger than a comment: the first is cut short at a line.
    let plan = huge_plan(20_000);
    let md = markdown::plan(&plan, Purpose::Plan);
    assert!(md.len() <= markdown::MAX_CHARS, "{} characters", md.len());
    assert!(
        md.contains("**Truncated** at a change boundary: this comment shows 0 of 2 changes (the first one cut short); left out: 2 to add, 0 to change, 0 to destroy ("),
        "no visible notice"
    );
    assert!(md.trim_end().ends_with("for the rest."));
    assert!(md.contains("</details>"), "the fold is closed");
    // Small plans are not cut.
    let small = markdown::plan(&huge_plan(10), Purpose::Plan);
    assert!(!small.contains("Truncated"));
}

/// 5,000 profile changes on two routers, each disconnecting a customer, planned against a
/// snapshot: the comment stays under GitHub's limit, and above the fold (before the folded
/// changes) come the summary, the snapshot's age, the customer effects and the per-target
/// counts; the changes are cut between two changes, the notice counting what was left out.
fn many_changes(n: usize) -> Plan {
    let target = |router: &str, range: std::ops::Range<usize>| {
        let changes: Vec<Change> = range
            .map(|i| Change {
                impact: wispctl::plan::Impact {
                    customer: Some(format!("cliente{i:05} (Tomatlan)")),
                    disconnects: 1,
                    ..Default::default()
                },
                address: format!("pppoe.{router}.secret[\"cliente{i:05}\"]"),
                action: Action::Update,
                reason: None,
                fields: vec![wispctl::plan::FieldDiff::plain(
                    "profile",
                    Some("10M".into()),
                    Some("20M".into()),
                )],
                content: None,
                side_effects: vec![format!(
                    "disconnects the active session of cliente{i:05} so the CPE redials with the new settings"
                )],
            })
            .collect();
        TargetPlan {
            address: format!("pppoe.{router}"),
            kind: "pppoe".into(),
            name: router.into(),
            error: None,
            refusal: None,
            changes,
            notes: vec![],
            fingerprints: Default::default(),
            secret_hashes: Default::default(),
            object_errors: Default::default(),
            not_compared: Vec::new(),
        }
    };
    let targets = vec![target("balanceador", 0..n / 2), target("norte", n / 2..n)];
    plan_of(
        targets,
        Some(wispctl::plan::SnapshotInfo {
            taken_at: "2026-11-30T06:00:00Z".into(),
            host: "vps".into(),
            age_secs: 3 * 3600 + 120,
        }),
    )
}

#[test]
fn markdown_of_a_5000_change_plan_keeps_the_summary_and_effects_above_the_fold() {
    let md = markdown::plan(&many_changes(5_000), Purpose::Plan);
    assert!(md.len() <= markdown::MAX_CHARS, "{} characters", md.len());
    let (head, rest) = md.split_once("<details>").unwrap();
    insta::assert_snapshot!("markdown_5000_head", head);
    let notice = rest.rsplit_once("\n> ").unwrap().1;
    insta::assert_snapshot!("markdown_5000_notice", notice);
    // The cut falls between two changes: the last change shown is whole.
    let body = rest
        .split("```diff\n")
        .nth(1)
        .unwrap()
        .split("\n```")
        .next()
        .unwrap();
    let last = body.lines().last().unwrap();
    assert!(last.contains("1 session disconnected"), "{last}");
}

#[test]
fn markdown_of_a_small_plan_against_a_snapshot() {
    insta::assert_snapshot!(markdown::plan(&many_changes(3), Purpose::Plan));
}

#[test]
fn markdown_fence_survives_backticks_in_content() {
    let mut plan = huge_plan(1);
    plan.targets[0].changes[0].content.as_mut().unwrap().after = Some("```\nnot the end\n".into());
    let md = markdown::plan(&plan, Purpose::Plan);
    assert!(md.contains("````diff"), "{md}");
}
