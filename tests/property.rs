//! Property: for random live hosts and random desired state (hostile-but-legal values:
//! quotes, backslashes, spaces, `#` in secrets and names), apply then plan shows no changes,
//! every chap-secrets line wispctl does not own is byte-identical afterwards, and peer files it
//! does not own are untouched.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::sync::Arc;

use proptest::prelude::*;
use serde_json::json;
use wispctl::engine::{Context, TargetFilter};
use wispctl::kinds::pppd::chap::{BEGIN, ChapFile, END};
use wispctl::kinds::pppd::words::quote;
use wispctl::secret::{HashKey, SecretResolver};

const PEER_NAMES: &[&str] = &["n1", "n2", "node.3", "node_4", "N-5"];
const CLIENTS: &[&str] = &["admin", "tecnico", "a b", "q\"uote", "back\\slash", "#hash"];
const SERVERS: &[&str] = &["node-1", "node 2", "srv'3", "*"];
const ADDRESSES: &[&str] = &["*", "10.0.0.1", "10.8.0.0/24", "-10.0.0.5"];

fn hostile() -> impl Strategy<Value = String> {
    prop_oneof![
        "[ -~]{1,24}",
        Just("s3cr\"et \\ with spaces".to_string()),
        Just("#not-a-comment".to_string()),
        Just("ñandú 'single' \"double\"".to_string()),
        Just("tab\u{a0}nbsp".to_string()),
    ]
}

#[derive(Debug, Clone)]
enum LiveLine {
    Comment(String),
    Blank,
    Garbage(String),
    Entry {
        pair: usize,
        secret: String,
        spacing: &'static str,
        quoted: bool,
    },
}

#[derive(Debug, Clone)]
enum LivePeer {
    Absent,
    Owned(String, u32),
    Unowned(String, u32),
}

#[derive(Debug, Clone)]
struct Case {
    outside: Vec<LiveLine>,
    block: Option<Vec<(usize, String)>>,
    trailing_newline: bool,
    chap_mode: u32,
    peers: Vec<LivePeer>,
    desired_peers: Vec<(usize, String, u16, bool, Vec<String>)>,
    desired_chap: Vec<(usize, String, Vec<String>)>,
    prune: bool,
}

/// Every chap secret of a case: the live entries' (outside and inside the block) and the YAML's.
fn chap_secrets(c: &Case) -> Vec<&str> {
    let outside = c.outside.iter().filter_map(|l| match l {
        LiveLine::Entry { secret, .. } => Some(secret.as_str()),
        _ => None,
    });
    let block = c.block.iter().flatten().map(|(_, s)| s.as_str());
    let desired = c.desired_chap.iter().map(|(_, s, _)| s.as_str());
    outside.chain(block).chain(desired).collect()
}

fn pair(i: usize) -> (&'static str, &'static str) {
    (
        CLIENTS[i % CLIENTS.len()],
        SERVERS[(i / CLIENTS.len()) % SERVERS.len()],
    )
}

fn case() -> impl Strategy<Value = Case> {
    let n_pairs = CLIENTS.len() * SERVERS.len();
    let line = prop_oneof![
        "[ -~]{0,20}".prop_map(|s| LiveLine::Comment(format!("# {s}"))),
        Just(LiveLine::Blank),
        "[a-z]{1,8}( [a-z]{1,8})?".prop_map(LiveLine::Garbage),
        (
            0..n_pairs,
            hostile(),
            prop::sample::select(vec![" ", "\t", "   ", " \t "]),
            any::<bool>()
        )
            .prop_map(|(pair, secret, spacing, quoted)| LiveLine::Entry {
                pair,
                secret,
                spacing,
                quoted
            }),
    ];
    let peer = prop_oneof![
        Just(LivePeer::Absent),
        ("[ -~]{0,30}", prop::sample::select(vec![0o600u32, 0o644])).prop_map(|(s, m)| {
            LivePeer::Owned(format!("# Managed by wispctl: old\nname x\n{s}\n"), m)
        }),
        ("[ -~]{0,30}", prop::sample::select(vec![0o600u32, 0o640]))
            .prop_map(|(s, m)| LivePeer::Unowned(format!("hand {s}\n"), m)),
    ];
    let options = prop::sample::subsequence(
        vec![
            "debug".to_string(),
            "ipparam office".into(),
            "lcp-echo-interval 30".into(),
        ],
        0..=3,
    );
    (
        prop::collection::vec(line, 0..8),
        prop::option::of(prop::collection::vec((0..n_pairs, hostile()), 0..5)),
        any::<bool>(),
        prop::sample::select(vec![0o600u32, 0o644]),
        prop::collection::vec(peer, PEER_NAMES.len()),
        prop::collection::vec(
            (
                0..PEER_NAMES.len(),
                prop::sample::select(CLIENTS.to_vec()).prop_map(String::from),
                128u16..=1500,
                any::<bool>(),
                options,
            ),
            0..5,
        ),
        prop::collection::vec(
            (
                0..n_pairs,
                hostile(),
                prop::sample::subsequence(
                    ADDRESSES.iter().map(|s| s.to_string()).collect::<Vec<_>>(),
                    0..=2,
                ),
            ),
            0..6,
        ),
        any::<bool>(),
    )
        .prop_map(
            |(
                outside,
                block,
                trailing_newline,
                chap_mode,
                peers,
                desired_peers,
                desired_chap,
                prune,
            )| Case {
                outside,
                block,
                trailing_newline,
                chap_mode,
                peers,
                desired_peers,
                desired_chap,
                prune,
            },
        )
}

/// Writes the live host and returns the chap-secrets text (None when absent).
fn write_live(c: &Case, root: &Path) -> Option<String> {
    let ppp = root.join("etc/ppp");
    std::fs::create_dir_all(ppp.join("peers")).unwrap();
    for (i, p) in c.peers.iter().enumerate() {
        let path = ppp.join("peers").join(PEER_NAMES[i]);
        if let LivePeer::Owned(t, m) | LivePeer::Unowned(t, m) = p {
            std::fs::write(&path, t).unwrap();
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(*m)).unwrap();
        }
    }
    if c.outside.is_empty() && c.block.is_none() {
        return None;
    }
    let mut used = BTreeSet::new();
    let mut lines = Vec::new();
    for l in &c.outside {
        match l {
            LiveLine::Comment(s) => lines.push(s.clone()),
            LiveLine::Blank => lines.push(String::new()),
            LiveLine::Garbage(s) => lines.push(s.clone()),
            LiveLine::Entry {
                pair: p,
                secret,
                spacing,
                quoted,
            } => {
                if !used.insert(*p) {
                    continue;
                }
                let (cl, sv) = pair(*p);
                let q = |w: &str| {
                    if *quoted {
                        wispctl::kinds::pppd::words::quote_always(w)
                    } else {
                        quote(w)
                    }
                };
                lines.push(format!(
                    "{}{spacing}{}{spacing}{}{spacing}*",
                    q(cl),
                    q(sv),
                    q(secret)
                ));
            }
        }
    }
    if let Some(block) = &c.block {
        lines.push(BEGIN.to_string());
        for (p, secret) in block {
            if !used.insert(*p) {
                continue;
            }
            let (cl, sv) = pair(*p);
            lines.push(format!(
                "\"{}\" \"{}\" {} *",
                cl.replace('\\', "\\\\").replace('"', "\\\""),
                sv.replace('\\', "\\\\").replace('"', "\\\""),
                quote(secret)
            ));
        }
        lines.push(END.to_string());
    }
    let mut text = lines.join("\n");
    if c.trailing_newline || c.block.is_some() {
        text.push('\n');
    }
    let path = ppp.join("chap-secrets");
    std::fs::write(&path, &text).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(c.chap_mode)).unwrap();
    Some(text)
}

fn write_desired(c: &Case, dir: &Path, root: &Path) -> BTreeSet<(String, String)> {
    std::fs::create_dir_all(dir.join("pppd")).unwrap();
    std::fs::write(
        dir.join("inventory.yaml"),
        serde_json::to_string(
            &json!({ "guards": { "max_deletes": 1000 }, "hosts": { "vps": { "root": root } } }),
        )
        .unwrap(),
    )
    .unwrap();
    let mut seen = BTreeSet::new();
    let peers: Vec<_> = c
        .desired_peers
        .iter()
        .filter(|(i, ..)| seen.insert(*i))
        .map(|(i, user, mtu, flag, options)| {
            json!({ "name": PEER_NAMES[*i], "server": "203.0.113.7", "user": user, "mtu": mtu,
                    "persist": flag, "defaultroute": !flag, "options": options })
        })
        .collect();
    let mut pairs = BTreeSet::new();
    let chap: Vec<_> = c
        .desired_chap
        .iter()
        .filter(|(p, ..)| pairs.insert(pair(*p)))
        .map(|(p, secret, addresses)| {
            let (cl, sv) = pair(*p);
            json!({ "client": cl, "server": sv, "secret": { "inline": secret }, "addresses": addresses })
        })
        .collect();
    let file = json!({
        "host": "vps", "prune": if c.prune { "owned" } else { "none" },
        "allow_inline_secrets": true, "allow_empty_prune": true,
        "peers": peers, "chap_secrets": chap,
    });
    std::fs::write(
        dir.join("pppd/vps.yaml"),
        serde_json::to_string_pretty(&file).unwrap(),
    )
    .unwrap();
    pairs
        .into_iter()
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect()
}

/// Lines outside the managed block whose pair the YAML does not name, without terminators.
fn unowned_lines(text: &str, desired: &BTreeSet<(String, String)>) -> Vec<String> {
    let f = ChapFile::parse(text.as_bytes()).unwrap();
    f.lines
        .iter()
        .enumerate()
        .filter(|(i, _)| {
            let marker = f.block.is_some_and(|(b, e)| *i == b || *i == e);
            !marker && !f.in_block(*i)
        })
        .filter(|(_, l)| {
            l.entry
                .as_ref()
                .is_none_or(|e| !desired.contains(&(e.client.clone(), e.server.clone())))
        })
        .map(|(_, l)| {
            let mut raw = l.raw.clone();
            if raw.last() == Some(&b'\n') {
                raw.pop();
            }
            String::from_utf8(raw).unwrap()
        })
        .collect()
}

fn run_case(c: &Case) -> Result<(), TestCaseError> {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("host");
    let dir = tmp.path().join("desired");
    let before_chap = write_live(c, &root);
    let desired_pairs = write_desired(c, &dir, &root);
    let before_peers: BTreeMap<String, Vec<u8>> = c
        .peers
        .iter()
        .enumerate()
        .filter(|(i, p)| {
            matches!(p, LivePeer::Unowned(..)) && !c.desired_peers.iter().any(|d| d.0 == *i)
        })
        .map(|(i, _)| {
            (
                PEER_NAMES[i].to_string(),
                std::fs::read(root.join("etc/ppp/peers").join(PEER_NAMES[i])).unwrap(),
            )
        })
        .collect();

    let d = wispctl::desired::load(&dir, &SecretResolver::new())
        .map_err(|e| TestCaseError::fail(e.to_string()))?;
    let key = Arc::new(HashKey::from_bytes([7; 32]));
    let ctx = Context::new(
        key.clone(),
        std::env::temp_dir().join("wispctl-test-unused-state"),
    );
    let engine = wispctl::kinds::engine(&d, &ctx, TargetFilter::default(), 1000);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    // The plan from a snapshot of the host is the live plan, and the snapshot holds no chap
    // secret (those long enough not to be found by chance elsewhere).
    let secrets: Vec<&str> = chap_secrets(c)
        .into_iter()
        .filter(|s| s.len() >= 8)
        .collect();
    let first = rt
        .block_on(common::plan_live_and_from_snapshot(
            || wispctl::kinds::engine(&d, &ctx, TargetFilter::default(), 1000),
            &key,
            &secrets,
        ))
        .map_err(TestCaseError::fail)?;
    prop_assert!(
        first.plan.problems().is_empty(),
        "problems: {:?}",
        first.plan.problems()
    );
    // Every peer file as it was, to count the tunnels apply really gave new settings.
    let peers_dir = root.join("etc/ppp/peers");
    let peer_files = |dir: &std::path::Path| -> BTreeMap<String, Vec<u8>> {
        PEER_NAMES
            .iter()
            .filter_map(|n| std::fs::read(dir.join(n)).ok().map(|b| (n.to_string(), b)))
            .collect()
    };
    let peers_before = peer_files(&peers_dir);
    let planned_restarts = first.plan.summary.tunnel_restarts;
    let per_change: usize = first
        .plan
        .targets
        .iter()
        .flat_map(|t| &t.changes)
        .map(|ch| ch.impact.tunnel_restarts)
        .sum();
    prop_assert_eq!(planned_restarts, per_change, "summary and changes disagree");
    let planned_summary = first.plan.summary;
    let report = rt.block_on(first.apply(&BTreeMap::new()));
    prop_assert!(report.succeeded(), "apply failed: {report:?}");
    // Customer impact: a tunnel needs a restart exactly when apply rewrote the content of a
    // peer file that existed (a new file has no tunnel running yet; a mode fix changes nothing
    // pppd reads).
    let peers_after = peer_files(&peers_dir);
    let rewritten = peers_before
        .iter()
        .filter(|(n, b)| peers_after.get(*n).is_some_and(|a| a != *b))
        .count();
    prop_assert_eq!(planned_restarts, rewritten, "tunnel restarts in the plan");
    prop_assert_eq!(planned_summary.disconnects, 0);
    prop_assert_eq!(planned_summary.antenna_restarts, 0);
    let second = rt.block_on(engine.plan());
    prop_assert!(
        second.plan.summary.is_empty(),
        "apply then plan shows changes: {}",
        wispctl::plan::render::text::plan(
            &second.plan,
            wispctl::plan::render::Purpose::Plan,
            wispctl::plan::render::text::Paint(false)
        )
    );

    let chap_path = root.join("etc/ppp/chap-secrets");
    if let Some(before) = before_chap {
        let after = std::fs::read_to_string(&chap_path).unwrap();
        prop_assert_eq!(
            unowned_lines(&before, &desired_pairs),
            unowned_lines(&after, &desired_pairs)
        );
    }
    if !desired_pairs.is_empty() {
        let mode = std::fs::metadata(&chap_path).unwrap().permissions().mode() & 0o777;
        prop_assert_eq!(mode, 0o600);
    }
    for (name, bytes) in before_peers {
        prop_assert_eq!(
            std::fs::read(root.join("etc/ppp/peers").join(&name)).unwrap(),
            bytes,
            "unowned peer {} changed",
            name
        );
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 192, ..ProptestConfig::default() })]

    #[test]
    fn apply_then_plan_shows_no_changes(c in case()) {
        run_case(&c)?;
    }
}
