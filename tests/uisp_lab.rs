//! Acceptance of the UISP provider on the lab UISP (NMS API v2.1) server: apply then plan shows
//! no changes, one `POST /devices/authorize` per destination site (counted in the lab's call
//! log), ghost cleanup off by default and key-reset-then-delete when on, a failed authorize on
//! one site leaves the others applied, reads are retried and writes are not, a CRM key is told
//! apart from an NMS token, bad references are reported, and import then plan shows no changes.
//!
//! The engine runs in-process (`Engine::plan` / `PlannedRun::apply`) against `UispLab`s started
//! here, so each test sees the lab's state, faults and call log. Validation and the import are
//! also run once through the real binary. The token never in output: `tests/secrets_scan.rs`.

mod common;

use common::{rt, show};

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::Arc;

use proptest::prelude::*;
use proptest::sample::Index;
use serde_json::{Value, json};
use wispctl::desired::DesiredState;
use wispctl::engine::{Context, Engine, PlannedRun, TargetFilter};
use wispctl::kinds::uisp::Kind as Uisp;
use wispctl::kinds::uisp::twin::server::{
    Call, HttpFault, LabDevice, LabSite, UispConfig, UispLab, UispState,
};
use wispctl::lab::LabEndpoints;
use wispctl::plan::report::{ApplyReport, Outcome, Status};
use wispctl::plan::{Action, Plan};
use wispctl::secret::{HashKey, SecretResolver};
use wispctl::uisp_api::{Endpoint, UispClient};

const SERVER: &str = "main";
const TOKEN: &str = "lab-uisp-nms-token-7f3a9c";
const CRM_KEY: &str = "lab-crm-app-key-b81d22";
const TAG: &str = "[wispctl]";

// ---------------------------------------------------------------------------------------------
// Harness: a lab UISP, a desired-state folder, the engine in-process
// ---------------------------------------------------------------------------------------------

struct World {
    tmp: tempfile::TempDir,
    key: Arc<HashKey>,
    lab: UispLab,
    resolver: SecretResolver,
}

impl World {
    /// A lab UISP accepting [`TOKEN`], seeded with `state`, and an inventory naming it.
    async fn start(state: UispState) -> World {
        World::with(UispConfig::with_token(TOKEN), state, TOKEN).await
    }

    /// A lab UISP with `config`, and an inventory whose token is `token`.
    async fn with(config: UispConfig, state: UispState, token: &str) -> World {
        let tmp = tempfile::tempdir().unwrap();
        let lab = UispLab::start(config, state).await.unwrap();
        std::fs::create_dir_all(tmp.path().join("desired/uisp")).unwrap();
        let w = World {
            tmp,
            key: Arc::new(HashKey::from_bytes([9; 32])),
            lab,
            resolver: SecretResolver::new(),
        };
        // `uisp.lab.invalid` never resolves: if lab mode ever fell through to the inventory
        // URL, the request would fail at once, never leave the machine.
        std::fs::write(
            w.dir().join("inventory.yaml"),
            serde_json::to_string_pretty(&json!({
                "allow_inline_secrets": true,
                "guards": { "max_deletes": 1000 },
                "uisp": { SERVER: {
                    "url": "https://uisp.lab.invalid",
                    "token": { "inline": token },
                    "timeout_secs": 10,
                } },
            }))
            .unwrap(),
        )
        .unwrap();
        w
    }

    fn dir(&self) -> PathBuf {
        self.tmp.path().join("desired")
    }

    fn state_dir(&self) -> PathBuf {
        self.tmp.path().join("state")
    }

    fn yaml_path(&self) -> PathBuf {
        self.dir().join(format!("uisp/{SERVER}.yaml"))
    }

    /// Writes `uisp/main.yaml` (JSON is YAML).
    fn write_uisp(&self, mut file: Value) {
        file["uisp"] = json!(SERVER);
        self.write_yaml(&serde_json::to_string_pretty(&file).unwrap());
    }

    fn write_yaml(&self, text: &str) {
        std::fs::write(self.yaml_path(), text).unwrap();
    }

    fn load(&self) -> DesiredState {
        wispctl::desired::load(&self.dir(), &self.resolver)
            .unwrap_or_else(|e| panic!("desired state does not load:\n{e}"))
    }

    fn engine(&self) -> Engine {
        let d = self.load();
        let mut endpoints = LabEndpoints::default();
        endpoints.insert("uisp", SERVER, self.endpoint());
        let ctx =
            Context::new(self.key.clone(), self.state_dir()).with_endpoints(Arc::new(endpoints));
        wispctl::kinds::engine(&d, &ctx, TargetFilter::default(), 1000)
    }

    /// Where the lab UISP is reached.
    fn endpoint(&self) -> Endpoint {
        Endpoint {
            api: self.lab.url(),
            ca_pem: self.lab.ca_pem(),
        }
    }

    async fn plan(&self) -> PlannedRun {
        self.engine().plan().await
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

    /// Applies a plan whose target could not be planned: no change, a failed report, and no
    /// request but reads reached the lab.
    async fn assert_nothing_written(&self, run: PlannedRun) {
        assert!(run.plan.summary.is_empty());
        let report = run.apply(&BTreeMap::new()).await;
        assert!(!report.succeeded());
        assert!(
            self.lab.calls().iter().all(|c| c.method == "GET"),
            "{:?}",
            self.lab.calls()
        );
    }

    /// A client as the provider makes it, on the lab.
    fn client(&self) -> UispClient {
        let d = self.load();
        UispClient::new(&d.kind::<Uisp>().targets[SERVER], Some(&self.endpoint())).unwrap()
    }
}

fn all_applied(report: &ApplyReport) -> bool {
    report.succeeded()
        && report
            .targets
            .iter()
            .flat_map(|t| &t.outcomes)
            .all(|o| o.status == Status::Applied)
}

fn outcomes(report: &ApplyReport) -> BTreeMap<String, Outcome> {
    report
        .targets
        .iter()
        .flat_map(|t| &t.outcomes)
        .map(|o| (o.address.clone(), o.clone()))
        .collect()
}

fn site_addr(name: &str) -> String {
    wispctl::plan::address("uisp", SERVER, "site", name)
}

fn device_addr(mac: &str) -> String {
    wispctl::plan::address("uisp", SERVER, "device", mac)
}

fn target_error(plan: &Plan) -> String {
    plan.targets
        .iter()
        .find(|t| t.address == format!("uisp.{SERVER}"))
        .and_then(|t| t.error.clone())
        .unwrap_or_else(|| panic!("no target error:\n{}", show(plan)))
}

fn uisp_notes(plan: &Plan) -> Vec<String> {
    plan.targets
        .iter()
        .filter(|t| t.kind == "uisp")
        .flat_map(|t| t.notes.clone())
        .collect()
}

/// Site ids `517e0000-...-00000000000i`.
fn sid(i: usize) -> String {
    format!("517e0000-0000-4000-8000-{i:012x}")
}

/// Device ids `de710000-...-00000000000i`.
fn did(i: usize) -> String {
    format!("de710000-0000-4000-8000-{i:012x}")
}

/// MACs `28:70:4E:A8:10:0i` (normalised form).
fn mac(i: usize) -> String {
    format!("28:70:4E:A8:10:{i:02X}")
}

fn site(i: usize, name: &str, kind: &str, parent: Option<usize>) -> LabSite {
    LabSite::new(&sid(i), name, kind, parent.map(sid).as_deref())
}

/// A device; authorized exactly when it is in a site.
fn device(i: usize, name: Option<&str>, ip: Option<&str>, site: Option<usize>) -> LabDevice {
    LabDevice {
        model: "LBE-5AC-Gen2".into(),
        model_name: "LiteBeam 5AC Gen2".into(),
        ..LabDevice::new(&did(i), &mac(i), name, ip, site.map(sid).as_deref())
    }
}

fn ghost(i: usize) -> LabDevice {
    device(i, None, None, None)
}

/// The lab's calls of `method` whose path (without the query) is `path`.
fn calls_of(calls: &[Call], method: &str, path: &str) -> Vec<Call> {
    calls
        .iter()
        .filter(|c| c.method == method && c.path.split('?').next() == Some(path))
        .cloned()
        .collect()
}

/// Count of calls of `method` whose path matches `prefix`*`suffix`.
fn count_like(calls: &[Call], method: &str, prefix: &str, suffix: &str) -> usize {
    calls
        .iter()
        .filter(|c| {
            c.method == method
                && c.path.starts_with(prefix)
                && c.path.ends_with(suffix)
                && c.path.len() > prefix.len() + suffix.len()
        })
        .count()
}

/// Every `POST /devices/authorize`: (siteId, deviceIds, status), in order.
fn authorize_calls(calls: &[Call]) -> Vec<(String, BTreeSet<String>, u16)> {
    calls_of(calls, "POST", "/devices/authorize")
        .into_iter()
        .map(|c| {
            let site = c.body["siteId"].as_str().unwrap_or_default().to_string();
            let ids = c.body["deviceIds"]
                .as_array()
                .map(|a| {
                    a.iter()
                        .filter_map(|v| v.as_str().map(str::to_string))
                        .collect()
                })
                .unwrap_or_default();
            (site, ids, c.status)
        })
        .collect()
}

fn statuses(calls: &[Call], method: &str, path: &str) -> Vec<u16> {
    calls_of(calls, method, path)
        .iter()
        .map(|c| c.status)
        .collect()
}

fn site_named<'a>(state: &'a UispState, name: &str) -> Option<&'a LabSite> {
    state.sites.iter().find(|s| s.name == name)
}

fn site_name_of(state: &UispState, id: Option<&str>) -> Option<String> {
    id.and_then(|id| state.sites.iter().find(|s| s.id == id))
        .map(|s| s.name.clone())
}

fn device_by_id<'a>(state: &'a UispState, id: &str) -> Option<&'a LabDevice> {
    state.devices.iter().find(|d| d.id == id)
}

fn is_ghost(d: &LabDevice) -> bool {
    d.name.as_deref().is_none_or(str::is_empty)
        && d.ip.as_deref().is_none_or(str::is_empty)
        && !d.authorized
}

/// The operator's text of a note: without the tag and the one space before it.
fn op_note(note: &str) -> &str {
    match note.strip_suffix(TAG) {
        Some(rest) => rest.strip_suffix(' ').unwrap_or(rest),
        None => note,
    }
}

fn norm_mac(s: &str) -> String {
    let hex: String = s.chars().filter(|c| !":-.".contains(*c)).collect();
    let up = hex.to_ascii_uppercase();
    (0..6)
        .map(|i| &up[i * 2..i * 2 + 2])
        .collect::<Vec<_>>()
        .join(":")
}

// ---------------------------------------------------------------------------------------------
// 1. Apply then plan shows no changes (random live and desired states)
// ---------------------------------------------------------------------------------------------

/// Site names: quotes, unicode, commas (the operator's "Zone, Name" endpoints), `#`, `:`.
const SITE_NAMES: &[&str] = &[
    "Tomatlan",
    "Centro",
    "Cerro \"Alto\"",
    "Tomatlan, Juan Perez",
    "Centro, María López",
    "Ñandú, O'Brien",
    "Zona 7: Norte",
    "Tomatlan, Casa #2",
];
const NOTES: &[&str] = &[
    "",
    "casa azul",
    "say \"hi\" to 'them'",
    "ñandú — café 🐦",
    "trailing space ",
    "two\nlines",
    "x [wispctl] y",
    "[wispctl]",
];
const ADDRESSES: &[&str] = &[
    "",
    "Calle Hidalgo 12, Tomatlan",
    "Av. \"Juárez\" #3 — Centro",
    "Cerro Grande",
];
const N_DEVICES: usize = 10;

#[derive(Debug, Clone)]
struct LiveSiteGen {
    parent: Option<Index>,
    /// 0 no note, 1 text, 2 the tag alone, 3 text and the tag, 4 text and the tag without space.
    note: (u8, usize),
    address: Option<usize>,
}

fn live_site_gen() -> impl Strategy<Value = LiveSiteGen> {
    (
        prop::option::weighted(0.7, any::<Index>()),
        (0u8..5, 1..NOTES.len()),
        prop::option::of(0..ADDRESSES.len()),
    )
        .prop_map(|(parent, note, address)| LiveSiteGen {
            parent,
            note,
            address,
        })
}

/// A desired field and a choice: for `parent` 0 the live one, 1 left out (not managed), 2 this
/// one; for `address` and `note` 0 left out, 1 the live value, 2 this one.
type Pick<T> = (u8, T);

#[derive(Debug, Clone)]
struct WantSiteGen {
    parent: Pick<Index>,
    address: Pick<usize>,
    note: Pick<usize>,
}

fn want_site_gen() -> impl Strategy<Value = WantSiteGen> {
    (
        (0u8..3, any::<Index>()),
        (0u8..3, 0..ADDRESSES.len()),
        (0u8..3, 0..NOTES.len()),
    )
        .prop_map(|(parent, address, note)| WantSiteGen {
            parent,
            address,
            note,
        })
}

#[derive(Debug, Clone)]
struct LiveDeviceGen {
    /// 0-1 authorized in a site, 2 unauthorized with a name or an IP, 3 a ghost.
    kind: u8,
    site: Index,
    /// 1 a name, 2 an IP, 3 both.
    name_ip: u8,
    failed_decryption: bool,
    lower_mac: bool,
}

fn live_device_gen() -> impl Strategy<Value = LiveDeviceGen> {
    (0u8..4, any::<Index>(), 1u8..4, any::<bool>(), any::<bool>()).prop_map(
        |(kind, site, name_ip, failed_decryption, lower_mac)| LiveDeviceGen {
            kind,
            site,
            name_ip,
            failed_decryption,
            lower_mac,
        },
    )
}

#[derive(Debug, Clone)]
struct WantDeviceGen {
    unassign: bool,
    site: Index,
    /// How the MAC is written in the YAML.
    style: u8,
}

fn want_device_gen() -> impl Strategy<Value = WantDeviceGen> {
    (prop::bool::weighted(0.2), any::<Index>(), 0u8..4).prop_map(|(unassign, site, style)| {
        WantDeviceGen {
            unassign,
            site,
            style,
        }
    })
}

#[derive(Debug, Clone)]
struct Case {
    endpoint: Vec<bool>,
    live_sites: Vec<Option<LiveSiteGen>>,
    want_sites: Vec<Option<WantSiteGen>>,
    live_devices: Vec<Option<LiveDeviceGen>>,
    want_devices: Vec<Option<WantDeviceGen>>,
    prune_owned: bool,
    ghosts_delete: bool,
}

fn case() -> impl Strategy<Value = Case> {
    let n = SITE_NAMES.len();
    (
        prop::collection::vec(prop::bool::weighted(0.35), n),
        prop::collection::vec(prop::option::weighted(0.6, live_site_gen()), n),
        prop::collection::vec(prop::option::weighted(0.5, want_site_gen()), n),
        prop::collection::vec(prop::option::weighted(0.75, live_device_gen()), N_DEVICES),
        prop::collection::vec(prop::option::weighted(0.5, want_device_gen()), N_DEVICES),
        any::<bool>(),
        any::<bool>(),
    )
        .prop_map(
            |(endpoint, live_sites, want_sites, live_devices, want_devices, prune, ghosts)| Case {
                endpoint,
                live_sites,
                want_sites,
                live_devices,
                want_devices,
                prune_owned: prune,
                ghosts_delete: ghosts,
            },
        )
}

/// A declared site.
#[derive(Debug, Clone)]
struct WantSite {
    name: String,
    endpoint: bool,
    parent: Option<String>,
    address: Option<String>,
    note: Option<String>,
}

/// A device assignment: the MAC as written, and the site (`None`: `unassign: true`).
#[derive(Debug, Clone)]
struct WantDevice {
    mac_text: String,
    site: Option<String>,
}

#[derive(Debug, Clone)]
struct Scenario {
    live: UispState,
    sites: Vec<WantSite>,
    devices: Vec<WantDevice>,
    prune_owned: bool,
    ghosts_delete: bool,
}

impl Case {
    fn scenario(&self) -> Scenario {
        let n = SITE_NAMES.len();
        // Parents always come earlier in SITE_NAMES and are never endpoints: no cycles.
        let endpoint: Vec<bool> = (0..n).map(|i| i > 0 && self.endpoint[i]).collect();
        let mut live = UispState::default();
        let mut live_at: Vec<Option<LabSite>> = vec![None; n];
        for (i, g) in self.live_sites.iter().enumerate() {
            let Some(g) = g else { continue };
            let eligible: Vec<usize> = (0..i)
                .filter(|&j| live_at[j].is_some() && !endpoint[j])
                .collect();
            let parent = match &g.parent {
                Some(ix) if !eligible.is_empty() => Some(eligible[ix.index(eligible.len())]),
                _ => None,
            };
            let text = NOTES[g.note.1];
            let note = match g.note.0 {
                0 => None,
                1 => Some(text.to_string()),
                2 => Some(TAG.to_string()),
                3 => Some(format!("{text} {TAG}")),
                _ => Some(format!("{text}{TAG}")),
            };
            let s = LabSite {
                address: g.address.map(|a| ADDRESSES[a].to_string()),
                note,
                ..site(
                    i,
                    SITE_NAMES[i],
                    if endpoint[i] { "endpoint" } else { "site" },
                    parent,
                )
            };
            live_at[i] = Some(s.clone());
            live.sites.push(s);
        }
        let mut declared = vec![false; n];
        let mut sites = Vec::new();
        for (i, g) in self.want_sites.iter().enumerate() {
            let Some(g) = g else { continue };
            let l = live_at[i].as_ref();
            let eligible: Vec<usize> = (0..i)
                .filter(|&j| (declared[j] || live_at[j].is_some()) && !endpoint[j])
                .collect();
            let live_parent = l
                .and_then(|l| l.parent_id.as_deref())
                .and_then(|p| live.sites.iter().find(|s| s.id == p))
                .map(|s| s.name.clone());
            let parent = match g.parent.0 {
                0 => live_parent,
                1 => None,
                _ if eligible.is_empty() => None,
                _ => Some(SITE_NAMES[eligible[g.parent.1.index(eligible.len())]].to_string()),
            };
            let address = match g.address.0 {
                0 => None,
                1 => l.map(|l| l.address.clone().unwrap_or_default()),
                _ => Some(ADDRESSES[g.address.1].to_string()),
            };
            let note = match g.note.0 {
                0 => None,
                1 => l.map(|l| op_note(l.note.as_deref().unwrap_or("")).to_string()),
                _ => Some(NOTES[g.note.1].to_string()),
            };
            declared[i] = true;
            sites.push(WantSite {
                name: SITE_NAMES[i].to_string(),
                endpoint: endpoint[i],
                parent,
                address,
                note,
            });
        }
        for (i, g) in self.live_devices.iter().enumerate() {
            let Some(g) = g else { continue };
            let name = format!("cpe-{i} \"ñ\"");
            let ip = format!("10.10.1.{}/24", 10 + i);
            let mut d = match g.kind {
                0 | 1 if !live.sites.is_empty() => {
                    let s = g.site.index(live.sites.len());
                    LabDevice {
                        site_id: Some(live.sites[s].id.clone()),
                        authorized: true,
                        status: "active".into(),
                        ..device(i, Some(&name), None, None)
                    }
                }
                3 => ghost(i),
                _ => device(
                    i,
                    (g.name_ip & 1 != 0).then_some(name.as_str()),
                    (g.name_ip & 2 != 0).then_some(ip.as_str()),
                    None,
                ),
            };
            d.failed_message_decryption = g.failed_decryption && !d.authorized;
            if g.lower_mac {
                d.mac = d.mac.to_ascii_lowercase();
            }
            live.devices.push(d);
        }
        let targets: Vec<&str> = (0..n)
            .filter(|&i| declared[i] || live_at[i].is_some())
            .map(|i| SITE_NAMES[i])
            .collect();
        let mut devices = Vec::new();
        for (i, g) in self.want_devices.iter().enumerate() {
            let Some(g) = g else { continue };
            let m = mac(i);
            let mac_text = match g.style {
                0 => m.clone(),
                1 => m.to_ascii_lowercase(),
                2 => m.replace(':', "-"),
                _ => m.replace(':', "").to_ascii_lowercase(),
            };
            let site = (!g.unassign && !targets.is_empty())
                .then(|| targets[g.site.index(targets.len())].to_string());
            devices.push(WantDevice { mac_text, site });
        }
        Scenario {
            live,
            sites,
            devices,
            prune_owned: self.prune_owned,
            ghosts_delete: self.ghosts_delete,
        }
    }
}

/// What a minimal, correct apply does, computed from the scenario alone.
#[derive(Debug, Default)]
struct Expect {
    creates: BTreeSet<String>,
    site_updates: BTreeSet<String>,
    /// Destination site name -> ids of the devices authorized or moved there.
    moved: BTreeMap<String, BTreeSet<String>>,
    unassigned: BTreeSet<String>,
    /// Ids of the ghosts deleted.
    ghosts: BTreeSet<String>,
    /// Ids of the owned sites deleted.
    pruned: BTreeSet<String>,
}

impl Expect {
    fn changes(&self) -> usize {
        self.site_updates.len()
            + self.moved.values().map(BTreeSet::len).sum::<usize>()
            + self.unassigned.len()
    }
}

impl Scenario {
    fn file(&self) -> Value {
        let sites: Vec<Value> = self
            .sites
            .iter()
            .map(|s| {
                let mut v = json!({
                    "name": s.name,
                    "type": if s.endpoint { "endpoint" } else { "site" },
                });
                if let Some(p) = &s.parent {
                    v["parent"] = json!(p);
                }
                if let Some(a) = &s.address {
                    v["address"] = json!(a);
                }
                if let Some(n) = &s.note {
                    v["note"] = json!(n);
                }
                v
            })
            .collect();
        let devices: Vec<Value> = self
            .devices
            .iter()
            .map(|d| match &d.site {
                Some(s) => json!({ "mac": d.mac_text, "site": s }),
                None => json!({ "mac": d.mac_text, "unassign": true }),
            })
            .collect();
        json!({
            "prune": if self.prune_owned { "owned" } else { "none" },
            "ghosts": if self.ghosts_delete { "delete" } else { "keep" },
            "allow_empty_prune": true,
            "sites": sites,
            "devices": devices,
        })
    }

    /// A declared site's parent after the apply: as declared, else where it is (left out: not
    /// managed), else the top level.
    fn parent_after(&self, s: &WantSite) -> Option<String> {
        match (&s.parent, site_named(&self.live, &s.name)) {
            (Some(p), _) => Some(p.clone()),
            (None, Some(l)) => site_name_of(&self.live, l.parent_id.as_deref()),
            (None, None) => None,
        }
    }

    fn declared(&self, name: &str) -> Option<&WantSite> {
        self.sites.iter().find(|s| s.name == name)
    }

    /// The assignment of a live device, if the YAML names it.
    fn wanted(&self, d: &LabDevice) -> Option<&WantDevice> {
        self.devices
            .iter()
            .find(|w| norm_mac(&w.mac_text) == norm_mac(&d.mac))
    }

    fn expect(&self) -> Expect {
        let live = &self.live;
        let mut e = Expect::default();
        for s in &self.sites {
            let Some(l) = site_named(live, &s.name) else {
                e.creates.insert(s.name.clone());
                continue;
            };
            // A parent left out of the YAML is not managed.
            let parent_differs =
                s.parent.is_some() && site_name_of(live, l.parent_id.as_deref()) != s.parent;
            let address_differs = s
                .address
                .as_ref()
                .is_some_and(|a| *a != l.address.clone().unwrap_or_default());
            let note_differs = s
                .note
                .as_ref()
                .is_some_and(|n| n != op_note(l.note.as_deref().unwrap_or("")));
            if parent_differs || address_differs || note_differs {
                e.site_updates.insert(s.name.clone());
            }
        }
        // Where each live device is after the apply (site name), ghosts deleted left out.
        let mut after: Vec<Option<String>> = Vec::new();
        for d in &live.devices {
            let now = site_name_of(live, d.site_id.as_deref());
            match self.wanted(d) {
                Some(WantDevice { site: Some(t), .. }) => {
                    if !(d.authorized && now.as_deref() == Some(t.as_str())) {
                        e.moved.entry(t.clone()).or_default().insert(d.id.clone());
                    }
                    after.push(Some(t.clone()));
                }
                Some(WantDevice { site: None, .. }) => {
                    if d.site_id.is_some() {
                        e.unassigned.insert(d.id.clone());
                    }
                    after.push(None);
                }
                None => {
                    if self.ghosts_delete && is_ghost(d) {
                        e.ghosts.insert(d.id.clone());
                    }
                    after.push(now);
                }
            }
        }
        // Parents after the apply: declared sites as declared, the others as they are.
        let mut parent_after: BTreeMap<String, Option<String>> = BTreeMap::new();
        for l in &live.sites {
            parent_after.insert(l.name.clone(), site_name_of(live, l.parent_id.as_deref()));
        }
        for s in &self.sites {
            parent_after.insert(s.name.clone(), self.parent_after(s));
        }
        // Owned, undeclared sites that end up empty go, leaves first.
        if self.prune_owned {
            let candidates: Vec<&LabSite> = live
                .sites
                .iter()
                .filter(|s| {
                    s.note.as_deref().unwrap_or("").ends_with(TAG)
                        && self.declared(&s.name).is_none()
                })
                .collect();
            let mut gone: BTreeSet<String> = BTreeSet::new();
            loop {
                let mut changed = false;
                for c in &candidates {
                    if gone.contains(&c.name) {
                        continue;
                    }
                    // A device the YAML assigns there, connected or not yet, holds it.
                    let holds_device = after.iter().any(|a| a.as_deref() == Some(c.name.as_str()))
                        || self
                            .devices
                            .iter()
                            .any(|w| w.site.as_deref() == Some(c.name.as_str()));
                    let holds_site = parent_after.iter().any(|(child, p)| {
                        p.as_deref() == Some(c.name.as_str()) && !gone.contains(child)
                    });
                    if !holds_device && !holds_site {
                        gone.insert(c.name.clone());
                        changed = true;
                    }
                }
                if !changed {
                    break;
                }
            }
            e.pruned = candidates
                .iter()
                .filter(|c| gone.contains(&c.name))
                .map(|c| c.id.clone())
                .collect();
        }
        e
    }

    /// Asserts the lab holds what the YAML says, and that nothing outside it changed.
    fn check_state(&self, e: &Expect, now: &UispState) -> Result<(), TestCaseError> {
        let live = &self.live;
        for s in &self.sites {
            let l = site_named(now, &s.name);
            prop_assert!(l.is_some(), "site {:?} missing: {:?}", s.name, now.sites);
            let l = l.unwrap();
            prop_assert_eq!(
                &l.kind,
                if s.endpoint { "endpoint" } else { "site" },
                "{:?}.type",
                &s.name
            );
            prop_assert_eq!(
                site_name_of(now, l.parent_id.as_deref()),
                self.parent_after(s),
                "{:?}.parent",
                &s.name
            );
            if let Some(a) = &s.address {
                prop_assert_eq!(
                    &l.address.clone().unwrap_or_default(),
                    a,
                    "{:?}.address",
                    &s.name
                );
            }
            let note = l.note.clone().unwrap_or_default();
            if let Some(n) = &s.note {
                prop_assert_eq!(op_note(&note), n.as_str(), "{:?}.note", &s.name);
            }
            if e.creates.contains(&s.name) || e.site_updates.contains(&s.name) {
                prop_assert!(note.ends_with(TAG), "{:?} written without the tag", s.name);
            }
        }
        for l in &live.sites {
            if self.declared(&l.name).is_some() {
                continue;
            }
            match now.sites.iter().find(|s| s.id == l.id) {
                Some(s) => {
                    prop_assert!(!e.pruned.contains(&l.id), "{:?} not pruned", l.name);
                    prop_assert_eq!(s, l, "an undeclared site changed");
                }
                None => prop_assert!(
                    e.pruned.contains(&l.id),
                    "undeclared site {:?} deleted (prune owned: {})",
                    l.name,
                    self.prune_owned
                ),
            }
        }
        for d in &live.devices {
            let after = device_by_id(now, &d.id);
            match self.wanted(d) {
                Some(w) => {
                    prop_assert!(
                        after.is_some(),
                        "device {} named in the YAML deleted",
                        d.mac
                    );
                    let a = after.unwrap();
                    match &w.site {
                        Some(t) => {
                            prop_assert!(a.authorized, "{} not authorized", d.mac);
                            prop_assert_eq!(
                                site_name_of(now, a.site_id.as_deref()),
                                Some(t.clone()),
                                "{} site",
                                &d.mac
                            );
                        }
                        None => prop_assert!(a.site_id.is_none(), "{} still in a site", d.mac),
                    }
                }
                None if e.ghosts.contains(&d.id) => {
                    prop_assert!(after.is_none(), "ghost {} not deleted", d.mac);
                }
                None => prop_assert_eq!(after, Some(d), "a device not in the YAML changed"),
            }
            if d.name.is_some() || d.ip.is_some() {
                prop_assert!(after.is_some(), "{} has a name or an IP: deleted", d.mac);
            }
        }
        Ok(())
    }
}

async fn apply_then_plan(s: &Scenario) -> Result<(), TestCaseError> {
    let w = World::start(s.live.clone()).await;
    w.write_uisp(s.file());
    let e = s.expect();
    // The plan from a snapshot of the server is the live plan.
    let first = common::plan_live_and_from_snapshot(|| w.engine(), &w.key, &[TOKEN])
        .await
        .map_err(TestCaseError::fail)?;
    prop_assert!(
        first.plan.problems().is_empty(),
        "problems: {:?}",
        first.plan.problems()
    );
    let p = first.plan.summary;
    prop_assert_eq!(
        (p.add, p.change, p.destroy),
        (
            e.creates.len(),
            e.changes(),
            e.ghosts.len() + e.pruned.len()
        ),
        "plan differs from the model {:?}:\n{}",
        &e,
        show(&first.plan)
    );
    w.lab.reset_calls();
    let report = first.apply(&BTreeMap::new()).await;
    prop_assert!(all_applied(&report), "apply did not apply all: {report:#?}");
    let now = w.lab.state();
    let calls = w.lab.calls();

    // One authorize per destination site, carrying exactly the devices moved there.
    let mut by_site: BTreeMap<String, Vec<BTreeSet<String>>> = BTreeMap::new();
    for (site, ids, status) in authorize_calls(&calls) {
        prop_assert_eq!(status, 200);
        by_site.entry(site).or_default().push(ids);
    }
    let want: BTreeMap<String, Vec<BTreeSet<String>>> = e
        .moved
        .iter()
        .map(|(name, ids)| {
            let id = site_named(&now, name)
                .map(|s| s.id.clone())
                .unwrap_or_default();
            (id, vec![ids.clone()])
        })
        .collect();
    prop_assert_eq!(by_site, want, "authorize calls per site");
    prop_assert_eq!(count_like(&calls, "POST", "/devices/", "/authorize"), 0);
    // The other writes: one each, nothing more.
    prop_assert_eq!(calls_of(&calls, "POST", "/sites").len(), e.creates.len());
    prop_assert_eq!(
        count_like(&calls, "PUT", "/sites/", ""),
        e.site_updates.len()
    );
    prop_assert_eq!(count_like(&calls, "DELETE", "/sites/", ""), e.pruned.len());
    prop_assert_eq!(
        count_like(&calls, "POST", "/devices/", "/unassign"),
        e.unassigned.len()
    );
    prop_assert_eq!(
        count_like(&calls, "POST", "/devices/", "/refresh"),
        e.ghosts.len()
    );
    prop_assert_eq!(
        count_like(&calls, "DELETE", "/devices/", ""),
        e.ghosts.len()
    );

    let second = w.plan().await.plan;
    prop_assert!(
        second.summary.is_empty() && second.problems().is_empty(),
        "apply then plan shows changes:\n{}",
        show(&second)
    );
    s.check_state(&e, &now)?;
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    /// Random live servers (a small site tree, notes with and without the tag, devices
    /// authorized, unauthorized, ghosts) and random YAML (declared sites old and new, endpoints
    /// under old or new parents, assignments to declared or live sites, `unassign: true`,
    /// prune none/owned, ghosts keep/delete).
    #[test]
    fn apply_then_plan_shows_no_changes_and_leaves_the_rest_alone(c in case()) {
        rt().block_on(apply_then_plan(&c.scenario()))?;
    }
}

// ---------------------------------------------------------------------------------------------
// 2. N devices bound for one site cost one authorize call
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn devices_bound_for_one_site_cost_one_authorize_call_per_site() {
    // Torre (0) > A (1, endpoint); B (2); C is new (an endpoint under Torre).
    let mut state = UispState {
        sites: vec![
            site(0, "Torre", "site", None),
            site(1, "Torre, A", "endpoint", Some(0)),
            site(2, "B", "site", None),
        ],
        devices: vec![],
    };
    // To A: 3 unauthorized, 2 authorized in Torre. To B: 1 unauthorized, 1 from A, 1 already
    // there. To C: 3 unauthorized (one a ghost the YAML names).
    for i in 0..3 {
        state.devices.push(device(i, Some("cpe"), None, None));
    }
    state.devices.push(device(3, Some("ap-1"), None, Some(0)));
    state.devices.push(device(4, Some("ap-2"), None, Some(0)));
    state.devices.push(device(5, None, Some("10.0.0.5"), None));
    state.devices.push(device(6, Some("moving"), None, Some(1)));
    state.devices.push(device(7, Some("stays"), None, Some(2)));
    state.devices.push(device(8, Some("c-1"), None, None));
    state
        .devices
        .push(device(9, None, Some("10.0.0.9/24"), None));
    state.devices.push(ghost(10));
    let w = World::start(state).await;
    let to = |site: &str, ids: &[usize]| -> Vec<Value> {
        ids.iter()
            .map(|&i| json!({ "mac": mac(i).to_lowercase(), "site": site }))
            .collect()
    };
    let mut devices = to("Torre, A", &[0, 1, 2, 3, 4]);
    devices.extend(to("B", &[5, 6, 7]));
    devices.extend(to("Torre, C", &[8, 9, 10]));
    w.write_uisp(json!({
        "sites": [
            { "name": "Torre" },
            { "name": "Torre, A", "type": "endpoint", "parent": "Torre" },
            { "name": "Torre, C", "type": "endpoint", "parent": "Torre" },
        ],
        "devices": devices,
    }));
    let run = w.plan().await;
    assert_eq!(run.plan.summary.add, 1, "{}", show(&run.plan));
    assert_eq!(run.plan.summary.change, 10, "{}", show(&run.plan));
    w.lab.reset_calls();
    let report = run.apply(&BTreeMap::new()).await;
    assert!(all_applied(&report), "{report:#?}");
    let now = w.lab.state();
    let c_id = site_named(&now, "Torre, C").unwrap().id.clone();
    let ids = |v: &[usize]| v.iter().map(|&i| did(i)).collect::<BTreeSet<_>>();
    let mut got = authorize_calls(&w.lab.calls());
    got.sort();
    let mut want = vec![
        (sid(1), ids(&[0, 1, 2, 3, 4]), 200),
        (sid(2), ids(&[5, 6]), 200),
        (c_id, ids(&[8, 9, 10]), 200),
    ];
    want.sort();
    assert_eq!(
        got, want,
        "one authorize per destination site, exactly its devices"
    );
    for i in 0..=10 {
        let d = device_by_id(&now, &did(i)).unwrap();
        assert!(d.authorized, "{d:?}");
    }
    w.assert_converged("after authorize").await;
}

// ---------------------------------------------------------------------------------------------
// 3. Ghost cleanup: off by default; key reset before delete; never a device with a name or IP
// ---------------------------------------------------------------------------------------------

fn ghost_state() -> UispState {
    UispState {
        sites: vec![site(0, "Torre", "site", None)],
        devices: vec![
            LabDevice {
                failed_message_decryption: true,
                mac: mac(0).to_lowercase(),
                ..ghost(0)
            },
            ghost(1),
            // Unauthorized, only an IP; only a name: not ghosts.
            device(2, None, Some("10.10.1.77/24"), None),
            device(3, Some("casa-sin-ip"), None, None),
            // An empty name and an empty IP count as none: a ghost.
            LabDevice {
                name: Some(String::new()),
                ip: Some(String::new()),
                ..ghost(4)
            },
            device(5, Some("ap"), Some("10.10.1.2"), Some(0)),
        ],
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ghosts_are_kept_by_default_and_the_plan_notes_them() {
    let w = World::start(ghost_state()).await;
    // No `ghosts:` key at all.
    w.write_uisp(json!({ "sites": [ { "name": "Torre" } ], "devices": [] }));
    let before = w.lab.state();
    let (plan, report) = w.apply().await;
    assert!(plan.summary.is_empty(), "{}", show(&plan));
    assert!(report.succeeded());
    let notes = uisp_notes(&plan);
    assert!(
        notes
            .iter()
            .any(|n| n.contains("3 ghost device(s)") && n.contains("kept")),
        "{notes:?}"
    );
    assert_eq!(w.lab.state().devices, before.devices);
    let calls = w.lab.calls();
    assert!(
        calls.iter().all(|c| c.method == "GET"),
        "ghosts: keep wrote something: {calls:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ghost_cleanup_resets_each_key_before_its_delete_and_spares_named_or_addressed_devices() {
    let w = World::start(ghost_state()).await;
    w.write_uisp(json!({ "ghosts": "delete", "sites": [ { "name": "Torre" } ], "devices": [] }));
    let run = w.plan().await;
    let deletes: BTreeSet<String> = run.plan.targets[0]
        .changes
        .iter()
        .filter(|c| c.action == Action::Delete)
        .map(|c| c.address.clone())
        .collect();
    let ghosts = [0, 1, 4];
    assert_eq!(
        deletes,
        ghosts.iter().map(|&i| device_addr(&mac(i))).collect(),
        "{}",
        show(&run.plan)
    );
    assert_eq!(run.plan.summary.destroy, 3);
    for c in &run.plan.targets[0].changes {
        assert!(
            c.side_effects.iter().any(|s| s.contains("refresh")),
            "the plan says the key is reset first: {c:?}"
        );
    }
    w.lab.reset_calls();
    let report = run.apply(&BTreeMap::new()).await;
    assert!(all_applied(&report), "{report:#?}");
    let calls = w.lab.calls();
    for i in ghosts {
        let refresh = calls
            .iter()
            .position(|c| c.method == "POST" && c.path == format!("/devices/{}/refresh", did(i)));
        let delete = calls
            .iter()
            .position(|c| c.method == "DELETE" && c.path == format!("/devices/{}", did(i)));
        let (Some(r), Some(d)) = (refresh, delete) else {
            panic!("ghost {i}: refresh {refresh:?}, delete {delete:?}: {calls:?}");
        };
        assert!(
            r < d,
            "ghost {i}: the key reset must come before the delete: {calls:?}"
        );
        assert_eq!(calls[r].status, 200);
        assert_eq!(calls[d].status, 200);
    }
    for i in [2, 3, 5] {
        assert!(
            !calls
                .iter()
                .any(|c| c.path.contains(&did(i)) && c.method != "GET"),
            "device {i} (a name or an IP) was written to: {calls:?}"
        );
    }
    let now = w.lab.state();
    let left: BTreeSet<String> = now.devices.iter().map(|d| d.id.clone()).collect();
    assert_eq!(left, [2, 3, 5].iter().map(|&i| did(i)).collect());
    assert_eq!(
        now.devices,
        ghost_state()
            .devices
            .into_iter()
            .filter(|d| left.contains(&d.id))
            .collect::<Vec<_>>(),
        "the survivors are untouched"
    );
    w.assert_converged("after ghost cleanup").await;
}

/// A ghost that gets an IP between the plan and the apply (a real antenna came back) must not
/// be deleted: the provider says it checks "again at the last moment".
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ghost_that_gains_an_ip_after_the_plan_is_not_deleted() {
    let w = World::start(ghost_state()).await;
    w.write_uisp(json!({ "ghosts": "delete", "sites": [], "devices": [] }));
    let run = w.plan().await;
    assert_eq!(run.plan.summary.destroy, 3, "{}", show(&run.plan));
    let mut state = w.lab.state();
    for d in &mut state.devices {
        if d.id == did(1) {
            d.ip = Some("10.10.1.200/24".into());
        }
    }
    w.lab.set_state(state);
    let report = run.apply(&BTreeMap::new()).await;
    let now = w.lab.state();
    assert!(
        device_by_id(&now, &did(1)).is_some(),
        "a device with an IP was deleted: {report:#?}"
    );
}

// ---------------------------------------------------------------------------------------------
// 4. A failed authorize on one site leaves the other sites applied
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_500_on_one_sites_authorize_leaves_the_others_applied_and_a_rerun_converges() {
    let state = UispState {
        sites: vec![
            site(0, "Torre", "site", None),
            site(1, "Torre, A", "endpoint", Some(0)),
            site(2, "Torre, B", "endpoint", Some(0)),
        ],
        devices: (0..6)
            .map(|i| device(i, Some(&format!("cpe {i}")), None, None))
            .collect(),
    };
    let w = World::start(state).await;
    w.write_uisp(json!({
        "sites": [
            { "name": "Torre" },
            { "name": "Torre, A", "type": "endpoint", "parent": "Torre" },
            { "name": "Torre, B", "type": "endpoint", "parent": "Torre" },
            { "name": "Torre, New", "type": "endpoint", "parent": "Torre", "note": "nueva" },
        ],
        "devices": [
            { "mac": mac(0), "site": "Torre, A" },
            { "mac": mac(1), "site": "Torre, A" },
            { "mac": mac(2), "site": "Torre, B" },
            { "mac": mac(3), "site": "Torre, B" },
            { "mac": mac(4), "site": "Torre, New" },
            { "mac": mac(5), "site": "Torre" },
        ],
    }));
    w.lab.set_faults(vec![HttpFault {
        site_id: Some(sid(2)),
        ..HttpFault::new("POST", "/devices/authorize", 500)
    }]);
    let (plan, report) = w.apply().await;
    assert_eq!(plan.summary.add, 1);
    assert_eq!(plan.summary.change, 6, "{}", show(&plan));
    assert!(!report.succeeded(), "{report:#?}");
    assert_eq!(report.summary.failed, 2, "{report:#?}");
    assert_eq!(report.summary.applied, 5, "{report:#?}");
    let by = outcomes(&report);
    for i in [2, 3] {
        let o = &by[&device_addr(&mac(i))];
        assert_eq!(o.status, Status::Failed, "{o:?}");
        assert_eq!(o.action, Action::Update);
        let why = o.reason.as_deref().unwrap_or("");
        assert!(why.contains("500") && why.contains("Torre, B"), "{o:?}");
    }
    for i in [0, 1, 4, 5] {
        assert_eq!(
            by[&device_addr(&mac(i))].status,
            Status::Applied,
            "{report:#?}"
        );
    }
    assert_eq!(by[&site_addr("Torre, New")].status, Status::Applied);
    let now = w.lab.state();
    for i in [2, 3] {
        assert!(!device_by_id(&now, &did(i)).unwrap().authorized);
    }
    assert_eq!(
        site_name_of(
            &now,
            device_by_id(&now, &did(4)).unwrap().site_id.as_deref()
        )
        .as_deref(),
        Some("Torre, New")
    );

    // The fault cleared, the re-run does what is left and converges.
    w.lab.set_faults(vec![]);
    let (plan, report) = w.apply().await;
    assert_eq!(
        (plan.summary.add, plan.summary.change, plan.summary.destroy),
        (0, 2, 0),
        "{}",
        show(&plan)
    );
    assert!(all_applied(&report), "{report:#?}");
    w.assert_converged("after the fault cleared").await;
}

// ---------------------------------------------------------------------------------------------
// 5. Reads are retried, writes are not
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_are_retried_after_a_500_and_after_a_429_with_retry_after() {
    let state = UispState {
        sites: vec![site(0, "Torre", "site", None)],
        devices: vec![device(0, Some("cpe"), None, None)],
    };
    let w = World::start(state).await;
    w.write_uisp(json!({
        "sites": [ { "name": "Torre" } ],
        "devices": [ { "mac": mac(0), "site": "Torre" } ],
    }));
    w.lab.set_faults(vec![
        HttpFault {
            times: Some(1),
            ..HttpFault::new("GET", "/devices", 500)
        },
        HttpFault {
            times: Some(1),
            retry_after_secs: Some(1),
            ..HttpFault::new("GET", "/sites", 429)
        },
    ]);
    let plan = w.plan().await.plan;
    assert!(plan.problems().is_empty(), "{:?}", plan.problems());
    assert_eq!(plan.summary.change, 1, "{}", show(&plan));
    let calls = w.lab.calls();
    assert_eq!(
        statuses(&calls, "GET", "/devices"),
        vec![500, 200],
        "{calls:?}"
    );
    assert_eq!(
        statuses(&calls, "GET", "/sites"),
        vec![429, 200],
        "{calls:?}"
    );
    // That the Retry-After is waited (capped, without jitter) is checked on tokio's paused
    // clock, where no wall clock can make it flaky: `uisp_api::client::tests`.
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_500_on_a_write_is_not_repeated() {
    let state = UispState {
        sites: vec![
            site(0, "Torre", "site", None),
            site(1, "Torre, A", "endpoint", Some(0)),
        ],
        devices: vec![
            device(0, Some("cpe a"), None, None),
            device(1, Some("cpe b"), None, None),
        ],
    };
    let w = World::start(state).await;
    w.write_uisp(json!({
        "sites": [
            { "name": "Torre" },
            { "name": "Torre, A", "type": "endpoint", "parent": "Torre" },
            { "name": "Zona Nueva" },
            { "name": "Zona Nueva, Casa", "type": "endpoint", "parent": "Zona Nueva" },
        ],
        "devices": [
            { "mac": mac(0), "site": "Torre, A" },
            { "mac": mac(1), "site": "Torre" },
        ],
    }));
    // Each fault would let a second try through: a retry would show as a second call.
    w.lab.set_faults(vec![
        HttpFault {
            site_id: Some(sid(1)),
            times: Some(1),
            ..HttpFault::new("POST", "/devices/authorize", 500)
        },
        HttpFault {
            times: Some(1),
            ..HttpFault::new("POST", "/sites", 500)
        },
    ]);
    w.lab.reset_calls();
    let (_, report) = w.apply().await;
    assert!(!report.succeeded());
    let calls = w.lab.calls();
    let to_a: Vec<_> = authorize_calls(&calls)
        .into_iter()
        .filter(|(s, _, _)| *s == sid(1))
        .collect();
    assert_eq!(to_a.len(), 1, "the authorize was repeated: {calls:?}");
    assert_eq!(to_a[0].2, 500);
    let creates = calls_of(&calls, "POST", "/sites");
    assert_eq!(creates.len(), 1, "a site create was repeated: {calls:?}");
    assert_eq!(creates[0].status, 500);
    let by = outcomes(&report);
    assert_eq!(by[&device_addr(&mac(0))].status, Status::Failed);
    assert_eq!(by[&device_addr(&mac(1))].status, Status::Applied);
    assert_eq!(by[&site_addr("Zona Nueva")].status, Status::Failed);
    let child = &by[&site_addr("Zona Nueva, Casa")];
    assert_eq!(child.status, Status::Failed, "{child:?}");
    assert!(
        child.reason.as_deref().unwrap_or("").contains("Zona Nueva"),
        "{child:?}"
    );
    // Nothing half-made: the re-run creates both and authorizes the device.
    let (plan, report) = w.apply().await;
    assert_eq!(
        (plan.summary.add, plan.summary.change),
        (2, 1),
        "{}",
        show(&plan)
    );
    assert!(all_applied(&report), "{report:#?}");
    w.assert_converged("after the failed writes").await;
}

// ---------------------------------------------------------------------------------------------
// 6. A CRM key where an NMS token belongs
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crm_key_instead_of_an_nms_token_is_named_as_such_without_its_value() {
    let config = UispConfig {
        crm_keys: vec![CRM_KEY.into()],
        ..UispConfig::with_token(TOKEN)
    };
    let state = UispState {
        sites: vec![site(0, "Torre", "site", None)],
        devices: vec![],
    };
    let w = World::with(config, state, CRM_KEY).await;
    w.write_uisp(json!({ "sites": [ { "name": "Torre" }, { "name": "Nueva" } ] }));
    let run = w.plan().await;
    let err = target_error(&run.plan);
    assert!(err.contains("NMS API token"), "{err}");
    assert!(err.contains("CRM app key"), "{err}");
    let text = show(&run.plan);
    let json = wispctl::plan::render::json::plan(&run.plan);
    for out in [&err, &text, &json] {
        assert!(!out.contains(CRM_KEY), "the key leaked: {out}");
        assert!(!out.contains(TOKEN));
    }
    assert!(run.plan.summary.is_empty());
    let report = run.apply(&BTreeMap::new()).await;
    assert!(!report.succeeded());
    assert!(
        w.lab
            .calls()
            .iter()
            .all(|c| c.method == "GET" && c.status == 401),
        "{:?}",
        w.lab.calls()
    );
}

// ---------------------------------------------------------------------------------------------
// 7. A MAC assigned twice; a site referenced but nowhere
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mac_assigned_to_two_sites_fails_validate_and_plan_with_file_and_line() {
    let w = World::start(UispState::default()).await;
    // Line numbers matter here.
    w.write_yaml(
        "uisp: main\n\
         sites:\n\
         \x20 - name: A\n\
         \x20 - name: B\n\
         devices:\n\
         \x20 - mac: 28:70:4e:a8:16:99\n\
         \x20   site: A\n\
         \x20 - mac: 28-70-4E-A8-16-99\n\
         \x20   site: B\n",
    );
    let errors = wispctl::desired::load(&w.dir(), &w.resolver).unwrap_err();
    let text = errors.to_string();
    let d = errors
        .0
        .iter()
        .find(|d| d.message.contains("28:70:4E:A8:16:99"))
        .unwrap_or_else(|| panic!("{text}"));
    assert!(d.file.ends_with("uisp/main.yaml"), "{text}");
    assert_eq!(d.line, 8, "{text}");
    assert!(d.message.contains("line 6"), "{text}");
    assert!(d.message.contains("twice"), "{text}");

    // The binary: validate and plan both exit 1 with `file:line:col: error:`, before any
    // network (the inventory's URL does not resolve).
    let bin = |args: &[&str]| {
        common::Run::from(
            std::process::Command::new(env!("CARGO_BIN_EXE_wispctl"))
                .arg("-C")
                .arg(w.dir())
                .arg("--state-dir")
                .arg(w.state_dir())
                .args(args)
                .env_remove("RUST_LOG")
                .env("NO_COLOR", "1")
                .stdin(std::process::Stdio::null())
                .output()
                .unwrap(),
        )
    };
    for args in [&["validate"][..], &["plan"][..]] {
        let r = bin(args);
        r.expect(1);
        assert!(
            r.stderr.contains("uisp/main.yaml:8:")
                && r.stderr
                    .contains("error: device 28:70:4E:A8:16:99 is assigned twice"),
            "{args:?}: {}",
            r.all()
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_site_neither_declared_nor_live_is_a_plan_error_naming_it() {
    let state = UispState {
        sites: vec![site(0, "Torre", "site", None)],
        devices: vec![device(0, Some("cpe"), None, None)],
    };
    let w = World::start(state).await;
    w.write_uisp(json!({
        "sites": [ { "name": "Torre, X", "type": "endpoint", "parent": "Zona Fantasma" } ],
        "devices": [ { "mac": mac(0), "site": "Casa \"Inexistente\"" } ],
    }));
    let run = w.plan().await;
    let err = target_error(&run.plan);
    assert!(
        err.contains("\"Zona Fantasma\"") && err.contains("Casa \\\"Inexistente\\\""),
        "{err}"
    );
    assert!(err.contains("neither declared nor"), "{err}");
    w.assert_nothing_written(run).await;
    // A live site is enough.
    w.write_uisp(json!({ "devices": [ { "mac": mac(0), "site": "Torre" } ] }));
    let (_, report) = w.apply().await;
    assert!(all_applied(&report), "{report:#?}");
    w.assert_converged("a live site").await;
}

/// Regression: a declared parent that loops through a parent UISP keeps (Torre declared under
/// Norte, which UISP has under Torre) was planned as an update UISP then refused at apply.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_parent_loop_with_uisps_parents_is_a_plan_error_and_nothing_is_written() {
    let state = UispState {
        sites: vec![
            site(0, "Torre", "site", None),
            site(1, "Norte", "site", Some(0)),
        ],
        devices: vec![],
    };
    let w = World::start(state).await;
    w.write_uisp(json!({
        "sites": [ { "name": "Norte" }, { "name": "Torre", "parent": "Norte" } ],
    }));
    let run = w.plan().await;
    let err = target_error(&run.plan);
    assert!(
        err.contains("\"Norte\", \"Torre\"") && err.contains("loop"),
        "{err}"
    );
    w.assert_nothing_written(run).await;
    // Moving Norte out of Torre's way in the same file is fine.
    w.write_uisp(json!({
        "sites": [
            { "name": "Raiz" },
            { "name": "Norte", "parent": "Raiz" },
            { "name": "Torre", "parent": "Norte" },
        ],
    }));
    let (_, report) = w.apply().await;
    assert!(all_applied(&report), "{report:#?}");
    w.assert_converged("the loop undone").await;
}

// ---------------------------------------------------------------------------------------------
// 8. Import then plan shows no changes
// ---------------------------------------------------------------------------------------------

fn import_state() -> UispState {
    UispState {
        sites: vec![
            LabSite {
                address: Some("Cerro \"Grande\", km 3 — Jalisco".into()),
                note: Some("torre principal".into()),
                ..site(0, "Torre Norte", "site", None)
            },
            LabSite {
                note: Some(TAG.into()),
                ..site(1, "Tomatlan", "site", Some(0))
            },
            LabSite {
                address: Some("Calle Hidalgo 12".into()),
                note: Some(format!("casa azul {TAG}")),
                ..site(2, "Tomatlan, Juan Pérez", "endpoint", Some(1))
            },
            LabSite {
                note: Some("say \"hi\": 'x' # not a comment".into()),
                ..site(3, "Tomatlan, O'Brien \"Q\"", "endpoint", Some(1))
            },
            LabSite {
                note: Some(format!("pegado{TAG}")),
                address: Some("ñandú 🐦".into()),
                ..site(4, "Centro", "site", None)
            },
            LabSite {
                note: Some("two\nlines".into()),
                ..site(5, "Centro, - yes: no", "endpoint", Some(4))
            },
            site(6, "Vacía", "site", None),
        ],
        devices: vec![
            LabDevice {
                mac: mac(0).to_lowercase(),
                ..device(0, Some("Juan LB5"), Some("10.10.1.45/24"), Some(2))
            },
            device(1, Some("AP Norte"), Some("10.10.0.2"), Some(0)),
            device(2, Some("ap: \"tomatlan\" # x"), None, Some(1)),
            device(3, None, Some("10.10.1.50/24"), Some(3)),
            device(4, Some("maria"), None, None),
            ghost(5),
            LabDevice {
                authorized: true,
                status: "active".into(),
                ..device(6, Some("authorized, no site"), None, None)
            },
            device(7, Some("centro cpe"), None, Some(5)),
        ],
    }
}

/// Reads the lab with the client, renders the import, writes it, and asserts the next plan is
/// empty.
async fn import_and_plan(w: &World) {
    // Any uisp file will do for the loader; the import replaces it.
    w.write_uisp(json!({ "sites": [] }));
    let client = w.client();
    let (sites, devices) = (
        client.sites().await.unwrap(),
        client.devices().await.unwrap(),
    );
    let imported = wispctl::kinds::uisp::import::render(SERVER, &sites, &devices);
    w.write_yaml(&imported.yaml);
    let d = wispctl::desired::load(&w.dir(), &w.resolver)
        .unwrap_or_else(|e| panic!("the import does not load:\n{e}\n{}", imported.yaml));
    assert_eq!(
        d.kind::<Uisp>().desired[SERVER].sites.len(),
        sites.len(),
        "{}",
        imported.yaml
    );
    let before = w.lab.state();
    let plan = w.plan().await.plan;
    assert!(
        plan.summary.is_empty() && plan.problems().is_empty(),
        "import then plan shows changes:\n{}\n{}",
        imported.yaml,
        show(&plan)
    );
    assert_eq!(as_json(&w.lab.state()), as_json(&before), "a plan wrote");
}

fn as_json(state: &UispState) -> Value {
    serde_json::to_value(state).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn import_then_plan_shows_no_changes() {
    let w = World::start(import_state()).await;
    w.write_uisp(json!({ "sites": [] }));
    let client = w.client();
    let (sites, devices) = (
        client.sites().await.unwrap(),
        client.devices().await.unwrap(),
    );
    let imported = wispctl::kinds::uisp::import::render(SERVER, &sites, &devices);
    assert!(
        imported
            .warnings
            .iter()
            .any(|x| x.contains("2 unauthorized")),
        "{:?}",
        imported.warnings
    );
    assert!(imported.yaml.contains("ghosts: keep") && imported.yaml.contains("prune: none"));
    assert!(
        imported.yaml.contains("unassign: true"),
        "the authorized device without a site: {}",
        imported.yaml
    );
    import_and_plan(&w).await;
    // And apply then changes nothing at all.
    w.lab.reset_calls();
    let (_, report) = w.apply().await;
    assert!(all_applied(&report));
    assert!(w.lab.calls().iter().all(|c| c.method == "GET"));
}

/// UISP takes a tab or a CRLF in a note or an address (pasted text): the import must still
/// load and plan to no changes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn import_of_a_note_with_a_tab_or_crlf_loads_and_plans_empty() {
    let state = UispState {
        sites: vec![LabSite {
            note: Some("col1\tcol2".into()),
            address: Some("Calle 1\r\nTomatlan".into()),
            ..site(0, "Torre", "site", None)
        }],
        devices: vec![],
    };
    let w = World::start(state).await;
    import_and_plan(&w).await;
}

/// A device's name ends up in a YAML comment of the import; a name with a line break must not
/// break out of the comment.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn import_of_a_device_name_with_a_line_break_stays_a_comment() {
    let state = UispState {
        sites: vec![
            site(0, "Torre", "site", None),
            site(1, "Otra", "site", None),
        ],
        devices: vec![device(
            0,
            Some("cpe\n    site: \"Otra\"\n  - mac: 28:70:4E:A8:10:63"),
            None,
            Some(0),
        )],
    };
    let w = World::start(state).await;
    import_and_plan(&w).await;
    let d = w.load();
    assert_eq!(
        d.kind::<Uisp>().desired[SERVER].devices.len(),
        1,
        "the device name added YAML: {}",
        std::fs::read_to_string(w.yaml_path()).unwrap()
    );
}

/// `wispctl --lab LAB import uisp main` on a lab made by `wispctl lab init`, then
/// `plan --target 'uisp.*' --detailed-exitcode`: exit 0.
#[test]
fn import_through_the_binary_then_plan_exits_0() {
    let lab = common::Lab::new();
    let yaml_path = lab.desired().join("uisp/main.yaml");
    std::fs::remove_file(&yaml_path).unwrap();
    let r = lab.run(&["import", "uisp", "main"]);
    r.expect(0);
    assert!(r.stdout.contains("uisp/main.yaml"), "{}", r.all());
    assert!(r.stderr.contains("unauthorized"), "{}", r.all());
    let yaml = std::fs::read_to_string(&yaml_path).unwrap();
    assert!(yaml.contains("28:70:4E:A8:16:99"), "{yaml}");
    // Importing again does not overwrite without --force.
    lab.run(&["import", "uisp", "main"]).expect(1);
    let r = lab.run(&["plan", "--target", "uisp.*", "--detailed-exitcode"]);
    r.expect(0);
    assert!(
        r.stdout
            .contains("Plan: 0 to add, 0 to change, 0 to destroy."),
        "{}",
        r.all()
    );
}

// ---------------------------------------------------------------------------------------------
// Pruning edge cases (found while writing the model of the property test)
// ---------------------------------------------------------------------------------------------

/// An owned, undeclared site whose owned, undeclared child still holds a device: the child is
/// kept, so the parent must be kept too (UISP refuses to delete a site that holds a site).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prune_keeps_an_owned_parent_whose_owned_child_still_holds_a_device() {
    let state = UispState {
        sites: vec![
            LabSite {
                note: Some(TAG.into()),
                ..site(0, "Vieja", "site", None)
            },
            LabSite {
                note: Some(format!("hija {TAG}")),
                ..site(1, "Vieja, Hija", "endpoint", Some(0))
            },
            site(2, "Torre", "site", None),
        ],
        devices: vec![device(0, Some("cpe"), None, Some(1))],
    };
    let w = World::start(state).await;
    w.write_uisp(json!({ "prune": "owned", "sites": [ { "name": "Torre" } ] }));
    let (plan, report) = w.apply().await;
    assert_eq!(plan.summary.destroy, 0, "{}", show(&plan));
    assert!(all_applied(&report), "{report:#?}");
    assert_eq!(w.lab.state().sites.len(), 3);
    w.assert_converged("owned parent of an owned non-empty child")
        .await;
}

/// A declared site moves out of an owned, undeclared parent that it leaves empty: with
/// `prune: owned`, the one apply deletes the parent too (else the next plan is not empty).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prune_deletes_an_owned_parent_its_declared_child_moves_out_of_in_one_apply() {
    let state = UispState {
        sites: vec![
            LabSite {
                note: Some(TAG.into()),
                ..site(0, "Vieja", "site", None)
            },
            site(1, "Torre", "site", None),
            site(2, "Torre, Casa", "endpoint", Some(0)),
        ],
        devices: vec![],
    };
    let w = World::start(state).await;
    w.write_uisp(json!({
        "prune": "owned",
        "sites": [
            { "name": "Torre" },
            { "name": "Torre, Casa", "type": "endpoint", "parent": "Torre" },
        ],
    }));
    let (_, report) = w.apply().await;
    assert!(all_applied(&report), "{report:#?}");
    w.assert_converged("owned parent left empty by a move")
        .await;
    assert!(site_named(&w.lab.state(), "Vieja").is_none());
}

/// A device the YAML assigns to an owned, undeclared site has not connected yet: the site is
/// still referenced, so `prune: owned` must keep it (else the next plan fails with "sites
/// referenced but neither declared nor in UISP").
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prune_keeps_an_owned_site_a_not_yet_connected_device_is_assigned_to() {
    let state = UispState {
        sites: vec![LabSite {
            note: Some(TAG.into()),
            ..site(0, "Torre, Casa", "endpoint", None)
        }],
        devices: vec![],
    };
    let w = World::start(state).await;
    w.write_uisp(json!({
        "prune": "owned",
        "allow_empty_prune": true,
        "sites": [],
        "devices": [ { "mac": mac(9), "site": "Torre, Casa" } ],
    }));
    let (plan, report) = w.apply().await;
    assert!(all_applied(&report), "{report:#?}");
    assert_eq!(plan.summary.destroy, 0, "{}", show(&plan));
    w.assert_converged("a site a device will be assigned to")
        .await;
}
