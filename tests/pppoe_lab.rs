//! Acceptance of the PPPoE provider on the lab RouterOS API server (v6 and v7 personalities,
//! passwords visible or hidden): apply then plan shows no changes, writes are minimal (counted
//! on the lab), a dropped connection or a `!trap` never loses or duplicates a secret, pruning
//! and the delete cap, and import then plan shows no changes.
//!
//! The engine runs in-process (`Engine::plan` / `PlannedRun::apply`) against `RouterLab`s
//! started here, so each test sees the lab's stats, sessions and faults. The import is also
//! run once through the real binary.

mod common;

use common::{rt, show};

use std::collections::{BTreeMap, BTreeSet};
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::sync::Arc;

use proptest::prelude::*;
use routeros_api::server::{
    DropFault, Faults, Hostile, HostileFrom, HostileMode, RouterConfig, RouterLab,
    Secret as LabSecret, TrapFault, Version,
};
use serde_json::{Value, json};
use wispctl::desired::DesiredState;
use wispctl::engine::{Context, Engine, PlannedRun, TargetFilter};
use wispctl::kinds::pppoe::Kind as Pppoe;
use wispctl::lab::LabEndpoints;
use wispctl::plan::report::{ApplyReport, Status};
use wispctl::plan::{Action, Plan};
use wispctl::secret::{HashKey, SecretResolver};

const API_USER: &str = "wispctl";
const API_PASSWORD: &str = "api pw = \"q\" ñ";
const ROUTER: &str = "r1";
const TAG: &str = "[wispctl]";
const PROFILES: &[&str] = &["10M", "20M", "Morosos", "plan ñ 50"];
const ALL_PROFILES: &[&str] = &["default", "10M", "20M", "Morosos", "plan ñ 50"];
const SERVICES: &[&str] = &["any", "async", "l2tp", "ovpn", "pppoe", "pptp", "sstp"];
const LOCALS: &[&str] = &["", "10.255.0.1", "192.168.88.1"];
const NAMES: &[&str] = &[
    "juan.perez",
    "maría lópez",
    "o'brien \"q\"",
    "eq=name=x",
    "cliente 42",
    "a",
    "ñandú",
    "x,y",
];
const WRITES: &[&str] = &[
    "/ppp/secret/add",
    "/ppp/secret/set",
    "/ppp/secret/unset",
    "/ppp/secret/remove",
    "/ppp/active/remove",
];

// ---------------------------------------------------------------------------------------------
// Harness: lab routers, a desired-state folder, the engine in-process
// ---------------------------------------------------------------------------------------------

struct World {
    tmp: tempfile::TempDir,
    key: Arc<HashKey>,
    labs: BTreeMap<String, RouterLab>,
    resolver: SecretResolver,
}

impl World {
    /// One lab router `r1`.
    async fn one(version: Version, visible: bool) -> World {
        World::start(&[(ROUTER, version, visible)]).await
    }

    async fn start(routers: &[(&str, Version, bool)]) -> World {
        let tmp = tempfile::tempdir().unwrap();
        let mut labs = BTreeMap::new();
        for (name, version, visible) in routers {
            let config = RouterConfig {
                password_visible: *visible,
                profiles: PROFILES.iter().map(|p| p.to_string()).collect(),
                ..RouterConfig::new(*version).with_user(API_USER, API_PASSWORD)
            };
            labs.insert(name.to_string(), RouterLab::start(config).await.unwrap());
        }
        std::fs::create_dir_all(tmp.path().join("desired/pppoe")).unwrap();
        let w = World {
            tmp,
            key: Arc::new(HashKey::from_bytes([7; 32])),
            labs,
            resolver: SecretResolver::new(),
        };
        // Port 9 on loopback: if lab mode ever fell through to the inventory address, the
        // connection would be refused at once, never leave the machine.
        let routers: serde_json::Map<String, Value> = w
            .labs
            .keys()
            .map(|n| {
                (
                    n.clone(),
                    json!({ "address": "127.0.0.1", "port": 9, "username": API_USER,
                            "password": { "inline": API_PASSWORD }, "timeout_secs": 5 }),
                )
            })
            .collect();
        std::fs::write(
            w.dir().join("inventory.yaml"),
            serde_json::to_string_pretty(&json!({
                "allow_inline_secrets": true,
                "guards": { "max_deletes": 1000 },
                "routers": routers,
            }))
            .unwrap(),
        )
        .unwrap();
        w
    }

    fn lab(&self) -> &RouterLab {
        &self.labs[ROUTER]
    }

    /// Adds `options` (such as `limits`) to every router of the inventory.
    fn router_options(&self, options: Value) {
        let path = self.dir().join("inventory.yaml");
        let mut inventory: Value =
            serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        for router in inventory["routers"].as_object_mut().unwrap().values_mut() {
            for (k, v) in options.as_object().unwrap() {
                router[k] = v.clone();
            }
        }
        std::fs::write(&path, serde_json::to_string_pretty(&inventory).unwrap()).unwrap();
    }

    fn dir(&self) -> PathBuf {
        self.tmp.path().join("desired")
    }

    fn state_dir(&self) -> PathBuf {
        self.tmp.path().join("state")
    }

    /// Writes `pppoe/r1.yaml` (JSON is YAML) with inline secrets allowed.
    fn write_pppoe(&self, mut file: Value) {
        file["router"] = json!(ROUTER);
        file["allow_inline_secrets"] = json!(true);
        std::fs::write(
            self.dir().join(format!("pppoe/{ROUTER}.yaml")),
            serde_json::to_string_pretty(&file).unwrap(),
        )
        .unwrap();
    }

    fn load(&self) -> DesiredState {
        wispctl::desired::load(&self.dir(), &self.resolver)
            .unwrap_or_else(|e| panic!("desired state does not load:\n{e}"))
    }

    fn engine(&self, max_deletes: usize) -> Engine {
        let d = self.load();
        let mut endpoints = LabEndpoints::default();
        for (n, l) in &self.labs {
            endpoints.insert("routers", n, l.addr());
        }
        let ctx =
            Context::new(self.key.clone(), self.state_dir()).with_endpoints(Arc::new(endpoints));
        wispctl::kinds::engine(&d, &ctx, TargetFilter::default(), max_deletes)
    }

    async fn plan_capped(&self, max_deletes: usize) -> PlannedRun {
        self.engine(max_deletes).plan().await
    }

    async fn plan(&self) -> PlannedRun {
        self.plan_capped(1000).await
    }

    /// Plans and applies; the plan that was applied and the report.
    async fn apply(&self) -> (Plan, ApplyReport) {
        let run = self.plan().await;
        let plan = run.plan.clone();
        (plan, run.apply(&BTreeMap::new()).await)
    }

    /// Asserts that a fresh plan has no changes and no problems.
    async fn assert_converged(&self, context: &str) {
        let plan = self.plan().await.plan;
        assert!(
            plan.summary.is_empty() && plan.problems().is_empty(),
            "{context}: a plan after apply is not empty:\n{}",
            show(&plan)
        );
    }
}

fn addr(name: &str) -> String {
    wispctl::plan::address("pppoe", ROUTER, "secret", name)
}

fn all_applied(report: &ApplyReport) -> bool {
    report.succeeded()
        && report
            .targets
            .iter()
            .flat_map(|t| &t.outcomes)
            .all(|o| o.status == Status::Applied)
}

fn writes(lab: &RouterLab) -> u64 {
    let stats = lab.stats();
    WRITES.iter().map(|c| stats.count(c)).sum()
}

fn active_names(lab: &RouterLab) -> BTreeSet<String> {
    lab.active().into_iter().map(|a| a.name).collect()
}

fn names_unique(lab: &RouterLab) {
    let secrets = lab.secrets();
    let names: BTreeSet<&str> = secrets.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(
        names.len(),
        secrets.len(),
        "duplicate secret names: {secrets:?}"
    );
}

/// A lab secret compared with one written before the lab gave it an id.
fn without_id(s: Option<LabSecret>) -> Option<LabSecret> {
    s.map(|s| LabSecret {
        id: String::new(),
        ..s
    })
}

/// A secret as found on a router before wispctl: plan 10M, service pppoe.
fn live(name: &str, password: &str, comment: &str) -> LabSecret {
    LabSecret {
        profile: "10M".into(),
        service: "pppoe".into(),
        comment: comment.into(),
        ..LabSecret::new(name, password)
    }
}

// ---------------------------------------------------------------------------------------------
// A model of the desired state and of what a minimal apply does, independent of src/
// ---------------------------------------------------------------------------------------------

/// The operator's text of a comment: without the tag when it ends with it.
fn op_text(comment: &str) -> &str {
    match comment.strip_suffix(TAG) {
        Some(rest) => rest.trim_end(),
        None => comment,
    }
}

fn norm_mac(s: &str) -> String {
    let hex: String = s.chars().filter(|c| !":-.".contains(*c)).collect();
    if hex.len() == 12 && hex.chars().all(|c| c.is_ascii_hexdigit()) {
        let up = hex.to_ascii_uppercase();
        (0..6)
            .map(|i| &up[i * 2..i * 2 + 2])
            .collect::<Vec<_>>()
            .join(":")
    } else {
        s.to_string()
    }
}

/// The managed fields of a lab secret, values in the form the YAML means them.
fn live_fields(s: &LabSecret) -> BTreeMap<&'static str, String> {
    BTreeMap::from([
        ("service", s.service.clone()),
        ("profile", s.profile.clone()),
        ("local-address", s.local_address.clone()),
        ("remote-address", s.remote_address.clone()),
        ("routes", s.routes.clone()),
        ("limit-bytes-in", s.limit_bytes_in.to_string()),
        ("limit-bytes-out", s.limit_bytes_out.to_string()),
        ("caller-id", norm_mac(&s.caller_id)),
        ("disabled", s.disabled.to_string()),
    ])
}

/// One desired secret: managed fields by RouterOS name, values normalised.
#[derive(Debug, Clone)]
struct Want {
    name: String,
    password: Option<String>,
    fields: BTreeMap<&'static str, String>,
    /// The caller id as written in the YAML (any MAC form).
    caller_raw: Option<String>,
    comment: String,
    /// Whether the YAML writes `comment:` at all.
    comment_key: bool,
}

impl Want {
    fn new(name: &str) -> Want {
        Want {
            name: name.into(),
            password: None,
            fields: BTreeMap::new(),
            caller_raw: None,
            comment: String::new(),
            comment_key: false,
        }
    }

    fn password(mut self, p: &str) -> Want {
        self.password = Some(p.into());
        self
    }

    fn field(mut self, k: &'static str, v: &str) -> Want {
        self.fields.insert(k, v.into());
        self
    }

    fn comment(mut self, c: &str) -> Want {
        self.comment = c.into();
        self.comment_key = true;
        self
    }

    /// Whether a lab secret is as this secret wants it.
    fn matches(&self, s: &LabSecret) -> bool {
        let now = live_fields(s);
        self.fields.iter().all(|(k, v)| &now[k] == v)
            && self.password.as_ref().is_none_or(|p| *p == s.password)
            && (!self.comment_key || op_text(&s.comment) == self.comment)
    }

    fn yaml(&self) -> Value {
        let mut m = json!({ "name": self.name });
        if let Some(p) = &self.password {
            m["password"] = json!({ "inline": p });
        }
        for (k, v) in &self.fields {
            let key = k.replace('-', "_");
            m[key.as_str()] = match *k {
                "limit-bytes-in" | "limit-bytes-out" => json!(v.parse::<u64>().unwrap()),
                "disabled" => json!(v == "true"),
                "caller-id" => json!(self.caller_raw.clone().unwrap_or_else(|| v.clone())),
                _ => json!(v),
            };
        }
        if self.comment_key {
            m["comment"] = json!(self.comment);
        }
        m
    }
}

#[derive(Debug, Clone)]
struct Scenario {
    version: Version,
    visible: bool,
    prune_owned: bool,
    kick_never: bool,
    live: Vec<LabSecret>,
    /// Names with an active session.
    active: Vec<String>,
    wants: Vec<Want>,
}

impl Scenario {
    fn file(&self) -> Value {
        json!({
            "prune": if self.prune_owned { "owned" } else { "none" },
            "kick": if self.kick_never { "never" } else { "on-change" },
            "allow_empty_prune": true,
            "secrets": self.wants.iter().map(Want::yaml).collect::<Vec<_>>(),
        })
    }

    async fn world(&self) -> World {
        let w = World::one(self.version, self.visible).await;
        w.lab().set_secrets(self.live.clone());
        for (i, n) in self.active.iter().enumerate() {
            w.lab().add_active(n, &format!("10.99.0.{}", i + 1));
        }
        w.write_pppoe(self.file());
        w
    }

    fn live_secret(&self, name: &str) -> Option<&LabSecret> {
        self.live.iter().find(|s| s.name == name)
    }

    fn wanted(&self, name: &str) -> bool {
        self.wants.iter().any(|w| w.name == name)
    }

    /// What a minimal, correct apply does on a router no wispctl run has touched before.
    fn expect(&self) -> Expect {
        let mut e = Expect::default();
        let kick = |e: &mut Expect, name: &str| {
            if !self.kick_never && self.active.iter().any(|a| a == name) {
                e.kicked.insert(name.to_string());
            }
        };
        for w in &self.wants {
            let Some(l) = self.live_secret(&w.name) else {
                e.creates.insert(w.name.clone());
                continue;
            };
            let now = live_fields(l);
            let mut effective = w.fields.iter().any(|(k, v)| &now[k] != v);
            // A comment left out of the YAML is not managed.
            let mut differs = effective || (w.comment_key && op_text(&l.comment) != w.comment);
            if let Some(p) = &w.password {
                if self.visible {
                    effective |= l.password != *p;
                    differs |= l.password != *p;
                } else {
                    // Hidden and never applied by wispctl: set, not kicked.
                    differs = true;
                }
            }
            if differs {
                e.updates.insert(w.name.clone());
            }
            if effective {
                kick(&mut e, &w.name);
            }
        }
        for l in &self.live {
            if self.prune_owned && l.comment.ends_with(TAG) && !self.wanted(&l.name) {
                e.deletes.insert(l.name.clone());
                kick(&mut e, &l.name);
            }
        }
        e
    }

    /// Secrets neither tagged nor named: wispctl must never touch them.
    fn unowned(&self) -> Vec<&LabSecret> {
        self.live
            .iter()
            .filter(|l| !l.comment.ends_with(TAG) && !self.wanted(&l.name))
            .collect()
    }

    /// Asserts the router holds every desired secret with its desired fields, leaves alone
    /// what is not wispctl's, and prunes exactly what the policy says.
    fn assert_router(&self, lab: &RouterLab) {
        names_unique(lab);
        for w in &self.wants {
            let s = lab
                .secret(&w.name)
                .unwrap_or_else(|| panic!("secret {:?} lost: {:?}", w.name, lab.secrets()));
            let now = live_fields(&s);
            for (k, v) in &w.fields {
                assert_eq!(&now[k], v, "{:?}.{k}", w.name);
            }
            if let Some(p) = &w.password {
                assert_eq!(&s.password, p, "{:?}.password", w.name);
            }
            if w.comment_key {
                assert_eq!(op_text(&s.comment), w.comment, "{:?}.comment", w.name);
            } else if let Some(before) = self.live_secret(&w.name) {
                // Left out of the YAML: the operator's text stays.
                assert_eq!(
                    op_text(&s.comment),
                    op_text(&before.comment),
                    "{:?}.comment kept",
                    w.name
                );
            }
            if let Some(before) = self.live_secret(&w.name) {
                // Unmanaged fields keep the router's value.
                let was = live_fields(before);
                for (k, v) in &was {
                    if !w.fields.contains_key(k) {
                        assert_eq!(&now[k], v, "unmanaged {:?}.{k} changed", w.name);
                    }
                }
                if w.password.is_none() {
                    assert_eq!(s.password, before.password, "unmanaged password changed");
                }
            }
        }
        for u in self.unowned() {
            assert_eq!(
                without_id(lab.secret(&u.name)).as_ref(),
                Some(u),
                "a secret that is not wispctl's changed"
            );
        }
        for l in self
            .live
            .iter()
            .filter(|l| l.comment.ends_with(TAG) && !self.wanted(&l.name))
        {
            match without_id(lab.secret(&l.name)) {
                Some(now) => {
                    assert!(!self.prune_owned, "{:?} not pruned", l.name);
                    assert_eq!(&now, l, "an owned secret outside the YAML changed");
                }
                None => assert!(self.prune_owned, "{:?} removed without prune", l.name),
            }
        }
    }
}

#[derive(Debug, Default)]
struct Expect {
    creates: BTreeSet<String>,
    updates: BTreeSet<String>,
    deletes: BTreeSet<String>,
    kicked: BTreeSet<String>,
}

// ---------------------------------------------------------------------------------------------
// Random scenarios
// ---------------------------------------------------------------------------------------------

#[derive(Debug, Clone)]
struct Mac {
    bytes: [u8; 6],
    style: u8,
}

impl Mac {
    fn text(&self) -> String {
        let b = self.bytes;
        let hex: Vec<String> = b.iter().map(|x| format!("{x:02x}")).collect();
        match self.style {
            0 => hex.join(":"),
            1 => hex.join("-").to_uppercase(),
            2 => hex.concat(),
            _ => hex.join(":").to_uppercase(),
        }
    }
}

fn mac() -> impl Strategy<Value = Mac> {
    (any::<[u8; 6]>(), 0u8..4).prop_map(|(bytes, style)| Mac { bytes, style })
}

/// Comment text: quotes, `=`, spaces, unicode; never trailing whitespace (see
/// `a_comment_with_trailing_spaces_converges`).
fn comment_text() -> impl Strategy<Value = String> {
    prop_oneof![
        Just(String::new()),
        Just("Tomatlan, Juan Perez".to_string()),
        Just("say \"hi\" to 'them'".to_string()),
        Just("a=b=c".to_string()),
        Just("ñandú — café 🐦".to_string()),
        Just("  leading spaces".to_string()),
        Just("x [wispctl] y".to_string()),
        "[ -~]{0,16}[!-~]",
    ]
}

fn password() -> impl Strategy<Value = String> {
    prop_oneof![
        "[ -~]{1,16}",
        Just("ñandú 'pw' \"x\"".to_string()),
        Just("p=a=ss".to_string()),
        Just(" lead and trail ".to_string()),
    ]
}

fn limit() -> impl Strategy<Value = u64> {
    prop_oneof![Just(0u64), 1u64..5_000_000_000]
}

#[derive(Debug, Clone)]
struct LiveSpec {
    tagged: bool,
    text: String,
    password: String,
    profile: usize,
    service: usize,
    local: usize,
    remote: Option<u8>,
    limits: (u64, u64),
    caller: Option<Mac>,
    disabled: bool,
    active: bool,
}

fn live_spec() -> impl Strategy<Value = LiveSpec> {
    (
        (any::<bool>(), comment_text(), "[ -~]{0,12}"),
        (
            0..ALL_PROFILES.len(),
            0..SERVICES.len(),
            0..LOCALS.len(),
            prop::option::of(any::<u8>()),
        ),
        (
            (limit(), limit()),
            prop::option::of(mac()),
            any::<bool>(),
            any::<bool>(),
        ),
    )
        .prop_map(
            |(
                (tagged, text, password),
                (profile, service, local, remote),
                (limits, caller, disabled, active),
            )| LiveSpec {
                tagged,
                text,
                password,
                profile,
                service,
                local,
                remote,
                limits,
                caller,
                disabled,
                active,
            },
        )
}

/// A desired field: 0 left out, 1 the live value, 2 this one.
type Pick<T> = (u8, T);

/// Mostly left out or as live, so that unchanged and comment-only secrets are common.
fn pick<T: std::fmt::Debug + Clone>(s: impl Strategy<Value = T>) -> impl Strategy<Value = Pick<T>> {
    (
        prop_oneof![4 => Just(0u8), 4 => Just(1u8), 2 => Just(2u8)],
        s,
    )
}

#[derive(Debug, Clone)]
struct WantSpec {
    password: Pick<String>,
    profile: Pick<usize>,
    service: Pick<usize>,
    local: Pick<usize>,
    remote: Pick<u8>,
    limit_in: Pick<u64>,
    limit_out: Pick<u64>,
    caller: Pick<Option<Mac>>,
    disabled: Pick<bool>,
    comment: Pick<String>,
}

fn want_spec() -> impl Strategy<Value = WantSpec> {
    (
        (
            pick(password()),
            pick(0..ALL_PROFILES.len()),
            pick(0..SERVICES.len()),
            pick(0..LOCALS.len()),
            pick(any::<u8>()),
        ),
        (
            pick(limit()),
            pick(limit()),
            pick(prop::option::of(mac())),
            pick(any::<bool>()),
            pick(comment_text()),
        ),
    )
        .prop_map(
            |(
                (password, profile, service, local, remote),
                (limit_in, limit_out, caller, disabled, comment),
            )| WantSpec {
                password,
                profile,
                service,
                local,
                remote,
                limit_in,
                limit_out,
                caller,
                disabled,
                comment,
            },
        )
}

#[derive(Debug, Clone)]
struct Case {
    version: Version,
    visible: bool,
    prune_owned: bool,
    kick_never: bool,
    live: Vec<Option<LiveSpec>>,
    wants: Vec<Option<WantSpec>>,
}

fn case() -> impl Strategy<Value = Case> {
    (
        prop_oneof![Just(Version::V6), Just(Version::V7)],
        any::<bool>(),
        any::<bool>(),
        prop::bool::weighted(0.2),
        prop::collection::vec(prop::option::weighted(0.7, live_spec()), NAMES.len()),
        prop::collection::vec(prop::option::weighted(0.6, want_spec()), NAMES.len()),
    )
        .prop_map(
            |(version, visible, prune_owned, kick_never, live, wants)| Case {
                version,
                visible,
                prune_owned,
                kick_never,
                live,
                wants,
            },
        )
}

fn remote_of(i: usize, b: u8) -> String {
    format!("10.{i}.{b}.1")
}

impl Case {
    fn scenario(&self) -> Scenario {
        let mut live = Vec::new();
        let mut active = Vec::new();
        for (i, l) in self.live.iter().enumerate() {
            let Some(l) = l else { continue };
            // The tag as wispctl writes it (other forms: see
            // `a_tagged_secret_with_a_hand_edited_tag_updates_without_a_false_failure`).
            let comment = match (l.tagged, l.text.is_empty()) {
                (false, _) => l.text.clone(),
                (true, true) => TAG.to_string(),
                (true, false) => format!("{} {TAG}", l.text),
            };
            live.push(LabSecret {
                name: NAMES[i].into(),
                password: l.password.clone(),
                service: SERVICES[l.service].into(),
                profile: ALL_PROFILES[l.profile].into(),
                local_address: LOCALS[l.local].into(),
                remote_address: l.remote.map(|b| remote_of(i, b)).unwrap_or_default(),
                limit_bytes_in: l.limits.0,
                limit_bytes_out: l.limits.1,
                caller_id: l.caller.as_ref().map(Mac::text).unwrap_or_default(),
                disabled: l.disabled,
                comment,
                ..LabSecret::default()
            });
            if l.active {
                active.push(NAMES[i].to_string());
            }
        }
        let mut wants = Vec::new();
        for (i, w) in self.wants.iter().enumerate() {
            let Some(w) = w else { continue };
            let l = live.iter().find(|s| s.name == NAMES[i]);
            let lf = l.map(live_fields);
            let mut want = Want::new(NAMES[i]);
            // The live value of a field, when there is a live secret.
            let same = |k: &str| lf.as_ref().map(|f| f[k].clone());
            let mut put = |k: &'static str, choice: u8, v: String| {
                let v = match choice {
                    0 => None,
                    1 => same(k),
                    _ => Some(v),
                };
                if let Some(v) = v {
                    want.fields.insert(k, v);
                }
            };
            put("profile", w.profile.0, ALL_PROFILES[w.profile.1].into());
            put("service", w.service.0, SERVICES[w.service.1].into());
            put("local-address", w.local.0, LOCALS[w.local.1].into());
            put("remote-address", w.remote.0, remote_of(i, w.remote.1));
            put("limit-bytes-in", w.limit_in.0, w.limit_in.1.to_string());
            put("limit-bytes-out", w.limit_out.0, w.limit_out.1.to_string());
            put("disabled", w.disabled.0, w.disabled.1.to_string());
            match w.caller.0 {
                0 => {}
                1 => {
                    if let Some(s) = l {
                        want.fields.insert("caller-id", norm_mac(&s.caller_id));
                        want.caller_raw = Some(s.caller_id.clone());
                    }
                }
                _ => {
                    let raw = w.caller.1.as_ref().map(Mac::text).unwrap_or_default();
                    want.fields.insert("caller-id", norm_mac(&raw));
                    want.caller_raw = Some(raw);
                }
            }
            want.password = match w.password.0 {
                0 => None,
                1 => l.map(|s| s.password.clone()).filter(|p| !p.is_empty()),
                _ => Some(w.password.1.clone()),
            };
            match w.comment.0 {
                0 => {}
                1 => {
                    if let Some(s) = l {
                        want = want.comment(op_text(&s.comment));
                    }
                }
                _ => want = want.comment(&w.comment.1),
            }
            wants.push(want);
        }
        Scenario {
            version: self.version,
            visible: self.visible,
            prune_owned: self.prune_owned,
            kick_never: self.kick_never,
            live,
            active,
            wants,
        }
    }
}

// ---------------------------------------------------------------------------------------------
// 1. Apply then plan shows no changes
// ---------------------------------------------------------------------------------------------

async fn apply_then_plan(s: &Scenario) -> Result<(), TestCaseError> {
    let w = s.world().await;
    // The plan from a snapshot of the router is the live plan, and the snapshot holds no
    // password (those long enough not to be found by chance in a name or comment).
    let words: Vec<&str> = s
        .live
        .iter()
        .flat_map(|l| [l.name.as_str(), l.comment.as_str()])
        .chain(s.wants.iter().map(|w| w.name.as_str()))
        .collect();
    let secrets: Vec<&str> = s
        .live
        .iter()
        .map(|l| l.password.as_str())
        .chain(s.wants.iter().filter_map(|w| w.password.as_deref()))
        .filter(|p| p.len() >= 8 && !words.iter().any(|w| w.contains(p)))
        .collect();
    let first = common::plan_live_and_from_snapshot(|| w.engine(1000), &w.key, &secrets)
        .await
        .map_err(TestCaseError::fail)?;
    prop_assert!(
        first.plan.problems().is_empty(),
        "problems: {:?}",
        first.plan.problems()
    );
    let report = first.apply(&BTreeMap::new()).await;
    prop_assert!(all_applied(&report), "apply did not apply all: {report:#?}");
    let second = w.plan().await.plan;
    prop_assert!(
        second.summary.is_empty() && second.problems().is_empty(),
        "apply then plan shows changes:\n{}",
        show(&second)
    );
    s.assert_router(w.lab());
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    /// Random live routers (tagged, untagged, named or not, active sessions) and random
    /// desired secrets, on v6 and v7 with passwords visible or hidden, prune none or owned.
    #[test]
    fn apply_then_plan_shows_no_changes_and_leaves_unowned_secrets_alone(c in case()) {
        rt().block_on(apply_then_plan(&c.scenario()))?;
    }
}

// ---------------------------------------------------------------------------------------------
// 2. Minimality, counted on the lab
// ---------------------------------------------------------------------------------------------

async fn minimal(s: &Scenario) -> Result<(), TestCaseError> {
    let w = s.world().await;
    let lab = w.lab();
    let e = s.expect();
    let run = w.plan().await;
    let p = run.plan.summary;
    prop_assert_eq!(
        (p.add, p.change, p.destroy),
        (e.creates.len(), e.updates.len(), e.deletes.len()),
        "plan differs from the model {:?}:\n{}",
        &e,
        show(&run.plan)
    );
    // Customer impact: the plan counts the model's kicks (one session per name here).
    prop_assert_eq!(
        p.disconnects,
        e.kicked.len(),
        "disconnects in the summary:\n{}",
        show(&run.plan)
    );
    let before_active = active_names(lab);
    lab.reset_stats();
    let report = run.apply(&BTreeMap::new()).await;
    prop_assert!(all_applied(&report), "{report:#?}");
    let st = lab.stats();
    prop_assert_eq!(
        st.count("/ppp/secret/add") + st.count("/ppp/secret/set"),
        (e.creates.len() + e.updates.len()) as u64,
        "one add or set per differing secret: {:?}",
        &st
    );
    prop_assert_eq!(st.count("/ppp/secret/add"), e.creates.len() as u64);
    prop_assert_eq!(st.count("/ppp/secret/set"), e.updates.len() as u64);
    prop_assert_eq!(st.count("/ppp/secret/unset"), 0);
    prop_assert_eq!(
        st.count("/ppp/secret/remove"),
        u64::from(!e.deletes.is_empty()),
        "removes are batched"
    );
    prop_assert_eq!(
        st.count("/ppp/active/remove"),
        u64::from(!e.kicked.is_empty()),
        "kicks are batched"
    );
    let anything = !(e.creates.is_empty() && e.updates.is_empty() && e.deletes.is_empty());
    prop_assert_eq!(
        st.connections,
        u64::from(anything),
        "one connection per apply"
    );
    // The one remove's id list covered every delete.
    for d in &e.deletes {
        prop_assert!(lab.secret(d).is_none(), "{:?} not removed", d);
    }
    // Exactly the sessions of secrets with an effective change (or removed) were kicked.
    let after_active = active_names(lab);
    let kicked: BTreeSet<String> = before_active.difference(&after_active).cloned().collect();
    prop_assert_eq!(
        kicked.len(),
        p.disconnects,
        "the plan counted what apply kicked"
    );
    prop_assert_eq!(kicked, e.kicked.clone());
    s.assert_router(lab);
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn apply_sends_one_write_per_differing_secret_one_remove_one_kick(c in case()) {
        rt().block_on(minimal(&c.scenario()))?;
    }
}

/// Tagged secrets with an active session each: profile, disabled, password and comment-only
/// changes, one without change.
fn kick_scenario(version: Version) -> Scenario {
    let names = ["p", "d", "w", "c", "n"];
    Scenario {
        version,
        visible: true,
        prune_owned: false,
        kick_never: false,
        live: names
            .iter()
            .map(|n| live(n, "old-pw", &format!("old {TAG}")))
            .collect(),
        active: names.iter().map(|n| n.to_string()).collect(),
        wants: vec![
            Want::new("p")
                .password("old-pw")
                .field("profile", "Morosos")
                .comment("old"),
            Want::new("d")
                .password("old-pw")
                .field("disabled", "true")
                .comment("old"),
            Want::new("w").password("new-pw").comment("old"),
            Want::new("c")
                .password("old-pw")
                .field("profile", "10M")
                .comment("new \"note\" = ñ"),
            Want::new("n")
                .password("old-pw")
                .field("profile", "10M")
                .comment("old"),
        ],
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_profile_disabled_or_password_change_kicks_the_session_a_comment_edit_never() {
    for version in [Version::V6, Version::V7] {
        let s = kick_scenario(version);
        let w = s.world().await;
        let run = w.plan().await;
        for c in &run.plan.targets[0].changes {
            let kicks = !c.side_effects.is_empty();
            let is_comment = c.address == addr("c");
            assert_eq!(kicks, !is_comment, "{version:?}: side effects of {c:?}");
        }
        w.lab().reset_stats();
        let report = run.apply(&BTreeMap::new()).await;
        assert!(all_applied(&report), "{report:#?}");
        let st = w.lab().stats();
        assert_eq!(st.count("/ppp/secret/set"), 4, "{st:?}");
        assert_eq!(
            st.count("/ppp/active/remove"),
            1,
            "one batched kick: {st:?}"
        );
        assert_eq!(
            active_names(w.lab()),
            BTreeSet::from(["c".to_string(), "n".to_string()]),
            "{version:?}: only the comment-only and unchanged sessions stay up"
        );
        s.assert_router(w.lab());
        w.assert_converged("kick").await;

        // A comment-only change on its own: a set, no kick at all.
        w.lab().add_active("p", "10.99.1.1");
        let mut s2 = s.clone();
        s2.wants[3] = s2.wants[3].clone().comment("another note");
        w.write_pppoe(s2.file());
        w.lab().reset_stats();
        let before = w.lab().active();
        let (plan, report) = w.apply().await;
        assert_eq!(plan.summary.change, 1, "{}", show(&plan));
        assert!(plan.targets[0].changes[0].side_effects.is_empty());
        assert!(all_applied(&report), "{report:#?}");
        let st = w.lab().stats();
        assert_eq!(st.count("/ppp/secret/set"), 1);
        assert_eq!(st.count("/ppp/active/remove"), 0, "a comment edit kicked");
        assert_eq!(w.lab().active(), before);
        assert_eq!(
            w.lab().secret("c").unwrap().comment,
            format!("another note {TAG}")
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hidden_password_never_applied_is_set_without_kick_then_remembered() {
    for version in [Version::V6, Version::V7] {
        let w = World::one(version, false).await;
        w.lab().set_secrets(vec![live("h", "old-pw", TAG)]);
        w.lab().add_active("h", "10.99.0.1");
        let file = |pw: &str| json!({ "secrets": [ { "name": "h", "password": { "inline": pw }, "profile": "10M" } ] });
        w.write_pppoe(file("s3cr3t-first-value"));
        let run = w.plan().await;
        let t = &run.plan.targets[0];
        assert_eq!(run.plan.summary.change, 1, "{}", show(&run.plan));
        let c = &t.changes[0];
        assert!(c.fields.iter().any(|f| f.name == "password" && f.sensitive));
        assert!(
            c.reason
                .as_deref()
                .unwrap_or("")
                .contains("hides passwords"),
            "{c:?}"
        );
        assert!(c.side_effects.is_empty(), "{c:?}");
        assert!(
            t.notes.iter().any(|n| n.contains("hides passwords")),
            "{:?}",
            t.notes
        );
        w.lab().reset_stats();
        let report = run.apply(&BTreeMap::new()).await;
        assert!(all_applied(&report), "{report:#?}");
        let st = w.lab().stats();
        assert_eq!(st.count("/ppp/secret/set"), 1);
        assert_eq!(
            st.count("/ppp/active/remove"),
            0,
            "kicked on an unknown password"
        );
        assert_eq!(active_names(w.lab()), BTreeSet::from(["h".to_string()]));
        assert_eq!(w.lab().secret("h").unwrap().password, "s3cr3t-first-value");
        // The state directory remembers a keyed hash, never the password.
        let state = std::fs::read_to_string(w.state_dir().join(format!("pppoe/{ROUTER}.json")))
            .expect("password hashes saved");
        assert!(!state.contains("s3cr3t-first-value"), "{state}");
        let mode = std::fs::metadata(w.state_dir().join(format!("pppoe/{ROUTER}.json")))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        // Next run: no change.
        w.assert_converged("hidden password, second run").await;
        // A new value is a known change now: set and kick.
        w.write_pppoe(file("s3cr3t-second-value"));
        let run = w.plan().await;
        assert_eq!(run.plan.summary.change, 1);
        assert!(
            !run.plan.targets[0].changes[0].side_effects.is_empty(),
            "{}",
            show(&run.plan)
        );
        w.lab().reset_stats();
        assert!(all_applied(&run.apply(&BTreeMap::new()).await));
        assert_eq!(w.lab().stats().count("/ppp/active/remove"), 1);
        assert!(w.lab().active().is_empty());
        w.assert_converged("hidden password, third run").await;
    }
}

// ---------------------------------------------------------------------------------------------
// 3. Faults
// ---------------------------------------------------------------------------------------------

/// 3 creates, 3 updates (2 of them adoptions), 2 prunes, sessions up, one secret not ours.
fn fault_scenario(version: Version, visible: bool) -> Scenario {
    Scenario {
        version,
        visible,
        prune_owned: true,
        kick_never: false,
        live: vec![
            live("upd-profile", "pw1", TAG),
            live("adopt-1", "pw2", "by hand"),
            live("adopt-2", "pw3", "también \"a mano\""),
            live("old-1", "pw4", &format!("retired {TAG}")),
            live("old-2", "pw5", TAG),
            live("not-ours", "pw6", "someone else's"),
        ],
        active: vec![
            "upd-profile".into(),
            "adopt-1".into(),
            "old-1".into(),
            "not-ours".into(),
        ],
        wants: vec![
            Want::new("new-1").password("n1 pw").field("profile", "20M"),
            Want::new("new-2")
                .password("n2=pw")
                .field("remote-address", "10.20.0.2")
                .comment("nuevo, \"ñ\""),
            Want::new("new-3").password("n3").field("disabled", "true"),
            Want::new("upd-profile")
                .password("pw1")
                .field("profile", "Morosos"),
            Want::new("adopt-1").password("pw2-new").comment("by hand"),
            Want::new("adopt-2")
                .field("limit-bytes-in", "1000")
                .comment("también \"a mano\""),
        ],
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_dropped_mid_apply_then_a_rerun_converges_without_loss_or_duplicates() {
    for (version, visible) in [(Version::V7, true), (Version::V6, false)] {
        let s = fault_scenario(version, visible);
        // The apply connection: login, 6 writes, 1 remove, 1 kick, 3 verify prints.
        let total = 1 + 6 + 1 + 1 + 3;
        for after in 1..total {
            let w = s.world().await;
            let run = w.plan().await;
            assert_eq!(
                (
                    run.plan.summary.add,
                    run.plan.summary.change,
                    run.plan.summary.destroy
                ),
                (3, 3, 2),
                "{}",
                show(&run.plan)
            );
            // Only the apply connection is dropped (the plan's connection is done).
            w.lab().set_faults(Faults {
                drop: Some(DropFault {
                    after_sentences: after,
                    times: Some(1),
                }),
                traps: vec![],
            });
            let report = run.apply(&BTreeMap::new()).await;
            assert!(
                !report.succeeded(),
                "{version:?} drop after {after}: the apply reported success: {report:#?}"
            );
            names_unique(w.lab());
            // Sentences 2..=after were the first writes, executed; the rest never ran.
            if after <= 7 {
                let done = s
                    .wants
                    .iter()
                    .filter(|x| w.lab().secret(&x.name).is_some_and(|l| x.matches(&l)))
                    .count();
                assert_eq!(done as u64, after - 1, "{version:?} drop after {after}");
            }
            w.lab().set_faults(Faults::default());
            let (plan, report) = w.apply().await;
            assert!(
                all_applied(&report),
                "{version:?} visible={visible} drop after {after}: re-run failed: {report:#?}\n{}",
                show(&plan)
            );
            w.assert_converged(&format!("{version:?} visible={visible} drop after {after}"))
                .await;
            s.assert_router(w.lab());
        }
    }
}

/// A set written, then the connection dropped before the kick: the re-run finds the secret
/// right and must still disconnect the session that runs on the old profile.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kick_lost_to_a_dropped_connection_is_done_by_the_rerun() {
    let w = World::one(Version::V7, true).await;
    w.lab()
        .set_secrets(vec![live("maria.lopez", "maria-2024", TAG)]);
    w.lab().add_active("maria.lopez", "10.10.1.46");
    w.write_pppoe(json!({ "secrets": [ { "name": "maria.lopez", "profile": "Morosos" } ] }));
    let run = w.plan().await;
    assert!(!run.plan.targets[0].changes[0].side_effects.is_empty());
    // Login and the set are answered; the kick is not.
    w.lab().set_faults(Faults {
        drop: Some(DropFault {
            after_sentences: 2,
            times: Some(1),
        }),
        traps: vec![],
    });
    let report = run.apply(&BTreeMap::new()).await;
    assert!(!report.succeeded());
    assert_eq!(w.lab().secret("maria.lopez").unwrap().profile, "Morosos");
    w.lab().set_faults(Faults::default());
    let (_, report) = w.apply().await;
    assert!(report.succeeded(), "{report:#?}");
    assert!(
        w.lab().active().is_empty(),
        "the suspended customer's session is still up on the old profile after the re-run \
         converged: {:?}",
        w.lab().active()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trap_on_one_set_leaves_the_others_applied_and_names_the_failed_one() {
    for version in [Version::V6, Version::V7] {
        let s = Scenario {
            version,
            visible: true,
            prune_owned: false,
            kick_never: false,
            live: ["a", "b", "c"].iter().map(|n| live(n, "pw", TAG)).collect(),
            active: vec!["a".into(), "b".into(), "c".into()],
            wants: vec![
                Want::new("a").field("profile", "20M"),
                Want::new("b").field("profile", "20M"),
                Want::new("c").field("profile", "Morosos"),
                Want::new("d").password("d-pw").field("profile", "20M"),
            ],
        };
        let w = s.world().await;
        w.lab().set_faults(Faults {
            drop: None,
            traps: vec![TrapFault::new(
                "/ppp/secret/set",
                Some("b"),
                "failure: simulated",
            )],
        });
        let (_, report) = w.apply().await;
        assert!(!report.succeeded(), "{report:#?}");
        assert_eq!(report.summary.failed, 1, "{report:#?}");
        let outcomes: BTreeMap<&str, _> = report.targets[0]
            .outcomes
            .iter()
            .map(|o| (o.address.as_str(), o))
            .collect();
        let b = outcomes[addr("b").as_str()];
        assert_eq!(b.status, Status::Failed);
        assert_eq!(b.action, Action::Update);
        assert!(
            b.reason
                .as_deref()
                .unwrap_or("")
                .contains("failure: simulated"),
            "{b:?}"
        );
        for n in ["a", "c", "d"] {
            assert_eq!(
                outcomes[addr(n).as_str()].status,
                Status::Applied,
                "{report:#?}"
            );
        }
        assert_eq!(w.lab().secret("a").unwrap().profile, "20M");
        assert_eq!(w.lab().secret("b").unwrap().profile, "10M");
        assert_eq!(w.lab().secret("c").unwrap().profile, "Morosos");
        assert!(w.lab().secret("d").is_some());
        // The failed secret's session is not kicked; the others' are.
        assert_eq!(active_names(w.lab()), BTreeSet::from(["b".to_string()]));
        // The router recovers: the re-run applies the rest and converges.
        w.lab().set_faults(Faults::default());
        let (plan, report) = w.apply().await;
        assert_eq!(plan.summary.change, 1, "{}", show(&plan));
        assert!(all_applied(&report), "{report:#?}");
        w.assert_converged("after the trap").await;
        s.assert_router(w.lab());
    }
}

/// The outcome reasons of a report, by secret name.
fn reasons(report: &ApplyReport) -> BTreeMap<String, String> {
    report.targets[0]
        .outcomes
        .iter()
        .map(|o| {
            let name = o.address.rsplit('"').nth(1).unwrap_or_default().to_string();
            let why = match o.status {
                Status::Applied => "applied".to_string(),
                _ => o.reason.clone().unwrap_or_default(),
            };
            (name, why)
        })
        .collect()
}

/// Issue 10: the router breaks its reply stream at the first write's answer (or, for a flood,
/// at the verify print). Nothing more is sent on that connection; each change not answered
/// says whether it was never sent or is unknown, none is assumed applied; the re-run, on a
/// router that behaves, converges.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reply_stream_broken_mid_apply_sends_nothing_more_and_says_what_is_unknown() {
    use HostileMode::*;
    let not_attempted = "not attempted (never sent): ";
    let unknown = "unknown (sent, no answer): ";
    let unverified = "written (the router answered), but not verified: ";
    for mode in [
        StrayDone,
        UnknownTag,
        MissingTag,
        UnknownWord,
        Garbage,
        EndlessSentence,
        Flood,
    ] {
        let s = fault_scenario(Version::V7, true);
        let w = s.world().await;
        w.router_options(json!({ "limits": { "max_rows": 1000 } }));
        let run = w.plan().await;
        assert_eq!(run.plan.summary.destroy, 2, "{}", show(&run.plan));
        w.lab().set_hostile(Some(Hostile {
            mode,
            from: HostileFrom::FirstWrite,
        }));
        w.lab().reset_stats();
        let report = run.apply(&BTreeMap::new()).await;
        assert!(!report.succeeded(), "{mode:?}: {report:#?}");
        assert_eq!(
            report.summary.applied + report.summary.failed,
            8,
            "{report:#?}"
        );
        let stats = w.lab().stats();
        assert_eq!(
            stats.breaks, 1,
            "{mode:?}: the router did not break: {stats:?}"
        );
        assert_eq!(
            stats.after_break,
            Vec::<String>::new(),
            "{mode:?}: sent after the broken read"
        );
        let why = reasons(&report);
        let written = [
            "new-1",
            "new-2",
            "new-3",
            "upd-profile",
            "adopt-1",
            "adopt-2",
        ];
        for name in written {
            let r = &why[name];
            let ok = match mode {
                Flood => r.starts_with(unverified),
                // The first write was answered, then garbage.
                Garbage if name == "new-1" => r.starts_with(unverified),
                _ => r.starts_with(unknown) && r.ends_with("the next plan settles it"),
            };
            assert!(ok, "{mode:?}: {name}: {r}");
            assert!(!r.contains("pw"), "{r}");
        }
        for name in ["old-1", "old-2"] {
            let r = &why[name];
            match mode {
                // old-2 has no session to kick: applied.
                Flood if name == "old-2" => assert_eq!(r, "applied", "{mode:?}: {name}"),
                // Removed; its kick comes after the verify print, which the flood broke.
                Flood => assert!(
                    r.starts_with(
                        "removed (the router answered), but the session was not disconnected: not attempted (never sent)"
                    ),
                    "{mode:?}: {name}: {r}"
                ),
                _ => assert!(r.starts_with(not_attempted), "{mode:?}: {name}: {r}"),
            }
        }
        // Nothing verified on a dead connection; no write answered, no session kicked.
        assert_eq!(stats.count("/ppp/secret/print"), u64::from(mode == Flood));
        if mode != Flood {
            assert_eq!(stats.count("/ppp/active/remove"), 0, "{mode:?}");
            assert_eq!(stats.count("/ppp/secret/remove"), 0, "{mode:?}");
        }
        names_unique(w.lab());
        w.lab().set_hostile(None);
        let (plan, report) = w.apply().await;
        assert!(
            all_applied(&report),
            "{mode:?}: re-run failed: {report:#?}\n{}",
            show(&plan)
        );
        w.assert_converged(&format!("{mode:?}")).await;
        s.assert_router(w.lab());
        assert!(
            active_names(w.lab()) == BTreeSet::from(["not-ours".to_string()]),
            "{mode:?}: kicks owed were not made by the re-run: {:?}",
            w.lab().active()
        );
    }
}

/// Issue 10: a hidden password never set by wispctl and a profile change on one secret. The
/// plan says one thing (the session is disconnected, for the profile), and apply does it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hidden_password_with_a_profile_change_kicks_and_the_plan_says_so() {
    let w = World::one(Version::V7, false).await;
    w.lab().set_secrets(vec![live("h", "old-pw", TAG)]);
    w.lab().add_active("h", "10.99.0.1");
    w.write_pppoe(json!({ "secrets": [
        { "name": "h", "password": { "inline": "s3cr3t-value" }, "profile": "Morosos" }
    ] }));
    let run = w.plan().await;
    let c = &run.plan.targets[0].changes[0];
    let reason = c.reason.as_deref().unwrap_or("");
    assert!(!c.side_effects.is_empty(), "{c:?}");
    assert!(
        !reason.contains("not kicked") && reason.contains("disconnected for the other changes"),
        "the plan contradicts itself: {reason:?} and {:?}",
        c.side_effects
    );
    let text = show(&run.plan);
    assert!(!text.contains("not kicked"), "{text}");
    w.lab().reset_stats();
    let report = run.apply(&BTreeMap::new()).await;
    assert!(all_applied(&report), "{report:#?}");
    assert_eq!(w.lab().stats().count("/ppp/active/remove"), 1);
    assert!(w.lab().active().is_empty());
    assert_eq!(w.lab().secret("h").unwrap().profile, "Morosos");
    w.assert_converged("hidden password and profile").await;
}

// ---------------------------------------------------------------------------------------------
// 4. Prune
// ---------------------------------------------------------------------------------------------

fn prune_live() -> Vec<LabSecret> {
    vec![
        live("kept", "pw", TAG),
        live("owned-1", "pw", &format!("retired {TAG}")),
        live("owned-2", "pw", TAG),
        live("owned-3", "pw", &format!("x{TAG}")),
        live("by-hand", "pw", "not wispctl's"),
        live("no-comment", "pw", ""),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prune_is_none_by_default_and_the_plan_notes_what_is_kept() {
    let w = World::one(Version::V7, true).await;
    w.lab().set_secrets(prune_live());
    // No `prune:` key at all.
    w.write_pppoe(json!({ "secrets": [ { "name": "kept", "profile": "20M" } ] }));
    let before = w.lab().secrets();
    let (plan, report) = w.apply().await;
    assert_eq!(plan.summary.destroy, 0, "{}", show(&plan));
    assert_eq!(plan.summary.change, 1);
    assert!(
        plan.targets[0]
            .notes
            .iter()
            .any(|n| n.contains("3 secret(s)") && n.contains("kept")),
        "{:?}",
        plan.targets[0].notes
    );
    assert!(all_applied(&report));
    for s in before.iter().filter(|s| s.name != "kept") {
        assert_eq!(w.lab().secret(&s.name).as_ref(), Some(s));
    }
    w.assert_converged("prune none").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prune_owned_removes_only_tagged_secrets_in_one_remove() {
    for version in [Version::V6, Version::V7] {
        let w = World::one(version, true).await;
        w.lab().set_secrets(prune_live());
        w.lab().add_active("owned-1", "10.99.0.1");
        w.lab().add_active("by-hand", "10.99.0.2");
        w.write_pppoe(json!({ "prune": "owned", "secrets": [ { "name": "kept" } ] }));
        let before = w.lab().secrets();
        let run = w.plan().await;
        let deletes: BTreeSet<&str> = run.plan.targets[0]
            .changes
            .iter()
            .filter(|c| c.action == Action::Delete)
            .map(|c| c.address.as_str())
            .collect();
        let want: Vec<String> = ["owned-1", "owned-2", "owned-3"]
            .iter()
            .map(|n| addr(n))
            .collect();
        assert_eq!(
            deletes,
            want.iter().map(String::as_str).collect(),
            "{}",
            show(&run.plan)
        );
        w.lab().reset_stats();
        let report = run.apply(&BTreeMap::new()).await;
        assert!(all_applied(&report), "{report:#?}");
        let st = w.lab().stats();
        assert_eq!(st.count("/ppp/secret/remove"), 1, "{st:?}");
        assert_eq!(st.count("/ppp/active/remove"), 1, "{st:?}");
        let left: BTreeSet<String> = w.lab().secrets().into_iter().map(|s| s.name).collect();
        assert_eq!(
            left,
            ["kept", "by-hand", "no-comment"]
                .iter()
                .map(|s| s.to_string())
                .collect()
        );
        for s in before
            .iter()
            .filter(|s| s.name == "by-hand" || s.name == "no-comment" || s.name == "kept")
        {
            assert_eq!(w.lab().secret(&s.name).as_ref(), Some(s));
        }
        assert_eq!(
            active_names(w.lab()),
            BTreeSet::from(["by-hand".to_string()])
        );
        w.assert_converged("prune owned").await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn over_the_delete_cap_nothing_is_written_and_raising_the_cap_applies() {
    let w = World::one(Version::V7, true).await;
    w.lab().set_secrets(prune_live());
    // Also a create and an update, which the refusal must stop as well.
    w.write_pppoe(json!({ "prune": "owned", "secrets": [
        { "name": "kept", "profile": "20M" },
        { "name": "brand-new", "password": { "inline": "x" } },
    ] }));
    let before = w.lab().secrets();
    let run = w.plan_capped(2).await;
    let refusal = run.plan.refusal.clone().expect("a refusal over the cap");
    assert!(
        refusal.contains("3 deletes exceed the cap of 2"),
        "{refusal}"
    );
    w.lab().reset_stats();
    let report = run.apply(&BTreeMap::new()).await;
    assert!(!report.succeeded());
    assert!(
        report
            .targets
            .iter()
            .flat_map(|t| &t.outcomes)
            .all(|o| o.status == Status::Skipped),
        "{report:#?}"
    );
    assert_eq!(writes(w.lab()), 0, "{:?}", w.lab().stats());
    assert_eq!(w.lab().secrets(), before);
    // Raised to exactly the number of deletes: applied.
    let run = w.plan_capped(3).await;
    assert!(run.plan.refusal.is_none());
    w.lab().reset_stats();
    let report = run.apply(&BTreeMap::new()).await;
    assert!(all_applied(&report), "{report:#?}");
    assert_eq!(w.lab().stats().count("/ppp/secret/remove"), 1);
    for n in ["owned-1", "owned-2", "owned-3"] {
        assert!(w.lab().secret(n).is_none());
    }
    w.assert_converged("cap raised").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_empty_secret_list_never_prunes_everything_unless_allowed() {
    let w = World::one(Version::V6, true).await;
    w.lab().set_secrets(prune_live());
    w.write_pppoe(json!({ "prune": "owned", "secrets": [] }));
    let run = w.plan().await;
    let refusal = run.plan.targets[0]
        .refusal
        .clone()
        .expect("empty-list guard");
    assert!(refusal.contains("empty"), "{refusal}");
    w.lab().reset_stats();
    let report = run.apply(&BTreeMap::new()).await;
    assert!(!report.succeeded());
    assert_eq!(writes(w.lab()), 0);
    w.write_pppoe(json!({ "prune": "owned", "allow_empty_prune": true, "secrets": [] }));
    let (plan, report) = w.apply().await;
    assert_eq!(plan.summary.destroy, 4, "{}", show(&plan));
    assert!(all_applied(&report));
    let left: BTreeSet<String> = w.lab().secrets().into_iter().map(|s| s.name).collect();
    assert_eq!(
        left,
        BTreeSet::from(["by-hand".to_string(), "no-comment".to_string()])
    );
}

// ---------------------------------------------------------------------------------------------
// 5. Import then plan shows no changes
// ---------------------------------------------------------------------------------------------

fn import_live() -> Vec<LabSecret> {
    vec![
        LabSecret {
            remote_address: "10.10.1.45".into(),
            ..live("juan.perez", "viejo juan", "Tomatlan, \"Juan\" Perez")
        },
        // Same env name once cleaned: made unique.
        live("juan perez", "otro=juan", ""),
        LabSecret {
            profile: "Morosos".into(),
            disabled: true,
            ..live("maria.lopez", "maria-2024", TAG)
        },
        LabSecret {
            caller_id: "aa-bb-cc-dd-ee-0f".into(),
            limit_bytes_in: 1000,
            limit_bytes_out: 2_000_000_000_000,
            ..live("luis", "#hash first", &format!("Centro {TAG}"))
        },
        LabSecret {
            caller_id: "28704ea81699".into(),
            local_address: "10.0.0.1".into(),
            service: "any".into(),
            profile: "default".into(),
            ..live("ñandú 'x' \"y\"", " spaced pw ", "a=b ñ 'q'")
        },
        LabSecret {
            routes: "10.1.0.0/24 10.10.1.50 1".into(),
            disabled: true,
            ..live("routed", "r-pw", "disabled, with routes")
        },
        // Not a MAC: left out with a warning (not managed), which still plans to nothing.
        LabSecret {
            caller_id: "not-a-mac".into(),
            ..live("odd-caller", "o-pw", "")
        },
        // No password: not managed.
        live("no-password", "", "sin clave"),
        LabSecret {
            service: "sstp".into(),
            profile: "plan ñ 50".into(),
            ..live("tagged-spaced", "t-pw", &format!("note  {TAG}"))
        },
    ]
}

/// Asserts an imported YAML holds no password value: every `password:` is an env reference
/// and no value appears outside a `name:` line.
fn assert_no_password_in_yaml(yaml: &str, env: &std::collections::HashMap<String, String>) {
    for line in yaml.lines() {
        if line.trim_start().starts_with("password:") {
            assert!(
                line.trim_start().starts_with("password: { env: PPPOE_"),
                "{line}"
            );
        }
        if line.trim_start().starts_with("- name:") {
            continue;
        }
        for v in env.values() {
            assert!(!line.contains(v.as_str()), "a password in the YAML: {line}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn import_then_plan_shows_no_changes_v6_v7_visible_and_hidden() {
    for version in [Version::V6, Version::V7] {
        for visible in [true, false] {
            let mut w = World::one(version, visible).await;
            w.lab().set_secrets(import_live());
            w.lab().add_active("juan.perez", "10.10.1.45");
            let d = w.load();
            let router = &d.kind::<Pppoe>().targets[ROUTER];
            let mut conn =
                wispctl::kinds::pppoe::client::connect(ROUTER, router, Some(w.lab().addr()))
                    .await
                    .unwrap();
            let (secrets, seen_visible) = wispctl::kinds::pppoe::observe::read_secrets(&mut conn)
                .await
                .unwrap();
            drop(conn);
            assert_eq!(seen_visible, visible);
            assert_eq!(secrets.len(), import_live().len());
            let imported = wispctl::kinds::pppoe::import::render(ROUTER, &secrets, visible);
            assert_eq!(
                imported
                    .warnings
                    .iter()
                    .any(|x| x.contains("hides passwords")),
                !visible,
                "{:?}",
                imported.warnings
            );
            assert!(
                imported.warnings.iter().any(|x| x.contains("odd-caller")),
                "{:?}",
                imported.warnings
            );
            let env = wispctl::secret::parse_env_file(&imported.env);
            if visible {
                // Every non-empty password, under a unique name.
                assert_eq!(env.len(), import_live().len() - 1, "{}", imported.env);
                let values: BTreeSet<&str> = env.values().map(String::as_str).collect();
                assert!(values.contains(" spaced pw ") && values.contains("otro=juan"));
            } else {
                assert!(imported.env.is_empty());
            }
            assert_no_password_in_yaml(&imported.yaml, &env);
            std::fs::write(w.dir().join(format!("pppoe/{ROUTER}.yaml")), &imported.yaml).unwrap();
            w.resolver = SecretResolver::new().with_fallback_env(env);
            let before = w.lab().secrets();
            w.lab().reset_stats();
            let plan = w.plan().await.plan;
            assert!(
                plan.summary.is_empty() && plan.problems().is_empty(),
                "{version:?} visible={visible}: import then plan shows changes:\n{}\n{}",
                imported.yaml,
                show(&plan)
            );
            assert_eq!(writes(w.lab()), 0);
            assert_eq!(w.lab().secrets(), before);
        }
    }
}

/// `wispctl --lab LAB import pppoe balanceador`, then `plan --detailed-exitcode` with the env
/// file's values: exit 0.
#[test]
fn import_through_the_binary_then_plan_exits_0() {
    let lab = common::Lab::new();
    std::fs::remove_file(lab.desired().join("pppoe/balanceador.yaml")).unwrap();
    let r = lab.run(&["import", "pppoe", "balanceador"]);
    r.expect(0);
    let yaml_path = lab.desired().join("pppoe/balanceador.yaml");
    let yaml = std::fs::read_to_string(&yaml_path).unwrap();
    let env_path = lab.lab().join("state/import/balanceador.env");
    assert!(
        r.stdout.contains(&env_path.display().to_string()),
        "{}",
        r.all()
    );
    let meta = std::fs::metadata(&env_path).unwrap();
    assert_eq!(meta.permissions().mode() & 0o777, 0o600);
    let desired = std::fs::canonicalize(lab.desired()).unwrap();
    assert!(
        !std::fs::canonicalize(&env_path)
            .unwrap()
            .starts_with(&desired)
    );
    let env_text = std::fs::read_to_string(&env_path).unwrap();
    let env = wispctl::secret::parse_env_file(&env_text);
    assert_eq!(env.len(), 5, "{env_text}");
    assert!(env.values().any(|v| v == "viejo-juan"));
    assert_no_password_in_yaml(&yaml, &env);
    // Nothing else in the desired folder holds a password either.
    for (path, (bytes, _)) in common::snapshot(&lab.desired()) {
        let text = String::from_utf8_lossy(&bytes);
        for v in env.values() {
            assert!(
                !text.contains(&format!("={v}")) && !text.contains(&format!(": {v}")),
                "{} holds a password",
                path.display()
            );
        }
    }
    let vars: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let r = lab.run_env(
        &[
            "plan",
            "--detailed-exitcode",
            "--target",
            "pppoe.balanceador",
        ],
        &vars,
    );
    r.expect(0);
    assert!(
        r.stdout
            .contains("Plan: 0 to add, 0 to change, 0 to destroy."),
        "{}",
        r.all()
    );
}

// ---------------------------------------------------------------------------------------------
// Edge cases found while writing the above
// ---------------------------------------------------------------------------------------------

/// A comment that ends in spaces (the YAML allows it) is written as `"note  [wispctl]"` and
/// read back as `"note"`: the plan must still be empty after apply.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_comment_with_trailing_spaces_converges() {
    let w = World::one(Version::V7, true).await;
    w.write_pppoe(json!({ "secrets": [
        { "name": "t1", "password": { "inline": "pw" }, "comment": "note " },
        { "name": "t2", "password": { "inline": "pw" }, "comment": "   " },
    ] }));
    let (_, report) = w.apply().await;
    assert!(all_applied(&report), "{report:#?}");
    w.assert_converged("trailing spaces in a comment").await;
}

/// The import prints `load them before plan: set -a; . FILE; set +a`: doing exactly that
/// must give plan the passwords as the router has them, whatever they hold.
#[test]
fn the_import_env_file_can_be_sourced_as_the_import_says() {
    let lab = common::Lab::new();
    std::fs::remove_file(lab.desired().join("pppoe/balanceador.yaml")).unwrap();
    let path = wispctl::kinds::pppoe::twin::router_path(&lab.lab(), "balanceador");
    let mut router: wispctl::kinds::pppoe::twin::RouterFile =
        serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    router.secrets.push(wispctl::kinds::pppoe::twin::SecretRow {
        name: "quoted".into(),
        password: "it's a \"pw\" $HOME".into(),
        profile: "10M".into(),
        ..Default::default()
    });
    std::fs::write(&path, serde_json::to_vec_pretty(&router).unwrap()).unwrap();
    let r = lab.run(&["import", "pppoe", "balanceador"]);
    r.expect(0);
    let env_path = lab.lab().join("state/import/balanceador.env");
    let mut cmd = std::process::Command::new("bash");
    cmd.arg("-c")
        .arg(r#"set -a; . "$1" || exit 97; set +a; shift; exec "$@""#)
        .arg("bash")
        .arg(&env_path)
        .arg(env!("CARGO_BIN_EXE_wispctl"))
        .arg("-C")
        .arg(lab.desired())
        .arg("--lab")
        .arg(lab.lab())
        .args([
            "plan",
            "--detailed-exitcode",
            "--target",
            "pppoe.balanceador",
        ])
        .env_remove("RUST_LOG")
        .env("NO_COLOR", "1")
        .stdin(std::process::Stdio::null());
    let run = common::Run::from(cmd.output().unwrap());
    run.expect(0);
}

/// RouterOS v6 still offers service `isdn`; an import of such a secret must load.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_imported_v6_isdn_secret_loads() {
    let mut w = World::one(Version::V6, true).await;
    w.lab().set_secrets(vec![LabSecret {
        service: "isdn".into(),
        ..live("dialup", "d-pw", "")
    }]);
    let d = w.load();
    let mut conn = wispctl::kinds::pppoe::client::connect(
        ROUTER,
        &d.kind::<Pppoe>().targets[ROUTER],
        Some(w.lab().addr()),
    )
    .await
    .unwrap();
    let (secrets, visible) = wispctl::kinds::pppoe::observe::read_secrets(&mut conn)
        .await
        .unwrap();
    let imported = wispctl::kinds::pppoe::import::render(ROUTER, &secrets, visible);
    std::fs::write(w.dir().join(format!("pppoe/{ROUTER}.yaml")), &imported.yaml).unwrap();
    w.resolver =
        SecretResolver::new().with_fallback_env(wispctl::secret::parse_env_file(&imported.env));
    let loaded = wispctl::desired::load(&w.dir(), &w.resolver);
    assert!(
        loaded.is_ok(),
        "the imported YAML does not load:\n{}\n{}",
        imported.yaml,
        loaded.err().unwrap()
    );
    let plan = w.plan().await.plan;
    assert!(plan.summary.is_empty(), "{}", show(&plan));
}

/// The YAML names a secret whose tag a person retyped (`note[wispctl]`, `note  [wispctl]`):
/// the plan rightly sees the same comment and changes only the profile; the apply must not
/// then report the write as failed because the comment is not byte-for-byte `note [wispctl]`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tagged_secret_with_a_hand_edited_tag_updates_without_a_false_failure() {
    let w = World::one(Version::V7, true).await;
    w.lab().set_secrets(vec![
        live("glued", "pw", &format!("note{TAG}")),
        live("double", "pw", &format!("note  {TAG}")),
    ]);
    w.write_pppoe(json!({ "secrets": [
        { "name": "glued", "profile": "20M", "comment": "note" },
        { "name": "double", "profile": "20M", "comment": "note" },
    ] }));
    let (plan, report) = w.apply().await;
    assert_eq!(plan.summary.change, 2, "{}", show(&plan));
    assert_eq!(w.lab().secret("glued").unwrap().profile, "20M");
    assert_eq!(w.lab().secret("double").unwrap().profile, "20M");
    assert!(
        all_applied(&report),
        "a verified, correct write reported as failed: {report:#?}"
    );
}

/// The same with passwords hidden: the failed verification keeps the password's keyed hash
/// from being saved, so every run sets the password again and the plan never empties.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hidden_password_on_a_secret_with_a_hand_edited_tag_converges() {
    let w = World::one(Version::V6, false).await;
    w.lab()
        .set_secrets(vec![live("glued", "old-pw", &format!("note{TAG}"))]);
    w.write_pppoe(json!({ "secrets": [
        { "name": "glued", "password": { "inline": "new-pw" }, "comment": "note" },
    ] }));
    for _ in 0..2 {
        w.apply().await;
    }
    assert_eq!(w.lab().secret("glued").unwrap().password, "new-pw");
    w.assert_converged("hidden password, hand-edited tag, after two applies")
        .await;
}
