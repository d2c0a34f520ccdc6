//! The uisp provider: observe, diff and apply over one UISP server's sites and devices.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

use super::UispKindError;
use super::spec::{Assignment, Ghosts, SiteSpec, UispDesired};
use crate::uisp_api::client::{LiveDevice, LiveSite, UispClient, UispError};
use crate::uisp_api::{self, Server};

use crate::engine::Context;
use crate::ownership::{is_tagged, tagged, untagged};
use crate::desired::Prune;
use crate::engine::{Item, Observation, Planned, Provider};
use crate::plan::report::Outcome;
use crate::plan::{Action, Change, FieldDiff, address};
use crate::secret::HashKey;

/// The UISP provider.
pub struct UispProvider {
    servers: BTreeMap<String, (Server, UispDesired)>,
    key: Arc<HashKey>,
    ctx: Context,
}

impl UispProvider {
    /// Builds the provider for every server with a uisp file.
    pub fn new(
        servers: &BTreeMap<String, Server>,
        desired: &BTreeMap<String, UispDesired>,
        ctx: &Context,
    ) -> Self {
        let servers = desired
            .iter()
            .map(|(name, d)| (name.clone(), (servers[name].clone(), d.clone())))
            .collect();
        UispProvider {
            servers,
            key: ctx.key.clone(),
            ctx: ctx.clone(),
        }
    }

    fn client(&self, name: &str) -> Result<UispClient, UispError> {
        let (server, _) = &self.servers[name];
        uisp_api::client(&self.ctx, name, server)
    }
}

/// A server as read.
pub struct UispLive {
    sites: Vec<LiveSite>,
    devices: Vec<LiveDevice>,
}

/// One apply instruction.
#[derive(Debug, Clone)]
pub enum Op {
    /// `POST /sites`.
    CreateSite(SiteSpec),
    /// `PUT /sites/{id}`.
    UpdateSite {
        /// The site as read.
        live: LiveSite,
        /// What it must be.
        spec: SiteSpec,
    },
    /// Part of one `POST /devices/authorize` per site.
    Authorize {
        /// Device id.
        device: String,
        /// Destination site's name.
        site: String,
    },
    /// `POST /devices/{id}/unassign`.
    Unassign {
        /// Device id.
        device: String,
    },
    /// `POST /devices/{id}/refresh`, then `DELETE /devices/{id}`.
    DeleteGhost {
        /// Device id.
        device: String,
    },
    /// `DELETE /sites/{id}`.
    DeleteSite {
        /// Site id.
        id: String,
    },
}

fn site_address(server: &str, name: &str) -> String {
    address("uisp", server, "site", name)
}

fn device_address(server: &str, mac: &str) -> String {
    address("uisp", server, "device", mac)
}

impl Provider for UispProvider {
    type Observed = UispLive;
    type Op = Op;
    type Error = UispKindError;

    fn kind(&self) -> &'static str {
        "uisp"
    }

    fn targets(&self) -> Vec<String> {
        self.servers.keys().cloned().collect()
    }

    async fn observe(&self, name: &str) -> Result<Observation<UispLive>, UispKindError> {
        let api = |source: UispError| UispKindError::Api {
            server: name.to_string(),
            source,
        };
        let client = self.client(name).map_err(api)?;
        let (sites, devices) = tokio::join!(client.sites(), client.devices());
        let (sites, devices) = (sites.map_err(api)?, devices.map_err(api)?);
        let (_, desired) = &self.servers[name];
        let key = &self.key;
        let mut fp = BTreeMap::new();
        let site_fp = |s: &LiveSite| {
            key.digest(
                "uisp-site",
                format!(
                    "{}\0{}\0{}\0{:?}\0{}\0{}",
                    s.id, s.name, s.kind, s.parent_id, s.address, s.note
                )
                .as_bytes(),
            )
        };
        let device_fp = |d: &LiveDevice| {
            key.digest(
                "uisp-device",
                format!(
                    "{}\0{}\0{:?}\0{:?}\0{:?}",
                    d.id, d.authorized, d.site_id, d.name, d.ip
                )
                .as_bytes(),
            )
        };
        for s in &desired.sites {
            let v = sites
                .iter()
                .find(|l| l.name == s.name)
                .map_or_else(|| "absent".into(), site_fp);
            fp.insert(site_address(name, &s.name), v);
        }
        for s in sites.iter().filter(|s| is_tagged(&s.note)) {
            fp.entry(site_address(name, &s.name))
                .or_insert_with(|| site_fp(s));
        }
        for mac in desired.devices.keys() {
            let v = devices
                .iter()
                .find(|d| &d.mac == mac)
                .map_or_else(|| "absent".into(), device_fp);
            fp.insert(device_address(name, mac), v);
        }
        if desired.ghosts == Ghosts::Delete {
            for d in devices.iter().filter(|d| d.is_ghost()) {
                fp.entry(device_address(name, &d.mac))
                    .or_insert_with(|| device_fp(d));
            }
        }
        tracing::debug!(
            server = name,
            sites = sites.len(),
            devices = devices.len(),
            "observed UISP"
        );
        Ok(Observation {
            state: UispLive { sites, devices },
            fingerprints: fp,
        })
    }

    fn diff(&self, name: &str, obs: &Observation<UispLive>) -> Result<Planned<Op>, UispKindError> {
        let (_, desired) = &self.servers[name];
        diff_server(name, desired, &obs.state)
    }

    async fn apply(
        &self,
        name: &str,
        items: Vec<Item<Op>>,
        obs: Observation<UispLive>,
    ) -> Vec<Outcome> {
        let client = match self.client(name) {
            Ok(c) => c,
            Err(e) => {
                return items
                    .iter()
                    .map(|i| Outcome::failed(&i.change.address, i.change.action, e.to_string()))
                    .collect();
            }
        };
        apply_server(&client, items, obs.state).await
    }
}

/// Depth of a declared site in the declared tree (0 for a root or a site whose parent is live).
fn depth(name: &str, parents: &HashMap<&str, &str>) -> usize {
    let mut d = 0;
    let mut cur = name;
    while let Some(&p) = parents.get(cur) {
        d += 1;
        cur = p;
        if d > 64 {
            break;
        }
    }
    d
}

/// The pure diff of one server.
fn diff_server(
    server: &str,
    desired: &UispDesired,
    live: &UispLive,
) -> Result<Planned<Op>, UispKindError> {
    let mut live_by_name: HashMap<&str, &LiveSite> = HashMap::new();
    for s in &live.sites {
        if live_by_name.insert(s.name.as_str(), s).is_some() {
            return Err(UispKindError::Refused(format!(
                "UISP {server} has two sites named {:?}: rename one by hand before wispctl manages sites by name",
                s.name
            )));
        }
    }
    let site_name_of_id: HashMap<&str, &str> = live
        .sites
        .iter()
        .map(|s| (s.id.as_str(), s.name.as_str()))
        .collect();
    let declared: HashMap<&str, &SiteSpec> =
        desired.sites.iter().map(|s| (s.name.as_str(), s)).collect();
    let parents: HashMap<&str, &str> = desired
        .sites
        .iter()
        .filter_map(|s| s.parent.as_deref().map(|p| (s.name.as_str(), p)))
        .collect();

    // Every site referenced must be declared or live.
    let mut missing: BTreeSet<String> = BTreeSet::new();
    for s in &desired.sites {
        if let Some(p) = &s.parent
            && !declared.contains_key(p.as_str())
            && !live_by_name.contains_key(p.as_str())
        {
            missing.insert(p.clone());
        }
    }
    for a in desired.devices.values() {
        if let Assignment::Site(s) = a
            && !declared.contains_key(s.as_str())
            && !live_by_name.contains_key(s.as_str())
        {
            missing.insert(s.clone());
        }
    }
    if !missing.is_empty() {
        let list: Vec<String> = missing.iter().map(|s| format!("{s:?}")).collect();
        return Err(UispKindError::Refused(format!(
            "sites referenced but neither declared nor in UISP {server}: {}",
            list.join(", ")
        )));
    }

    let mut items = Vec::new();
    let mut notes = Vec::new();
    let mut sorted: Vec<&SiteSpec> = desired.sites.iter().collect();
    sorted.sort_by_key(|s| depth(&s.name, &parents));
    for s in sorted {
        let addr = site_address(server, &s.name);
        match live_by_name.get(s.name.as_str()) {
            None => {
                let mut fields = vec![FieldDiff::plain("type", None, Some(s.kind.as_str().into()))];
                if let Some(p) = &s.parent {
                    fields.push(FieldDiff::plain("parent", None, Some(p.clone())));
                }
                if let Some(a) = &s.address {
                    fields.push(FieldDiff::plain("address", None, Some(a.clone())));
                }
                fields.push(FieldDiff::plain(
                    "note",
                    None,
                    Some(tagged(s.note.as_deref().unwrap_or(""))),
                ));
                items.push(Item {
                    change: Change {
                        address: addr,
                        action: Action::Create,
                        reason: None,
                        fields,
                        content: None,
                        side_effects: vec![],
                    },
                    collection: "site",
                    op: Op::CreateSite(s.clone()),
                });
            }
            Some(l) => {
                if l.kind != s.kind.as_str() {
                    return Err(UispKindError::Refused(format!(
                        "site {:?} is a{} {} in UISP {server} but a{} {} in the YAML: UISP cannot change a site's type",
                        s.name,
                        if l.kind == "endpoint" { "n" } else { "" },
                        l.kind,
                        if s.kind.as_str() == "endpoint" {
                            "n"
                        } else {
                            ""
                        },
                        s.kind.as_str()
                    )));
                }
                let mut fields = Vec::new();
                let live_parent = l
                    .parent_id
                    .as_deref()
                    .and_then(|id| site_name_of_id.get(id).copied());
                // A parent left out of the YAML is not managed (the site stays where it is).
                if s.parent.is_some() && live_parent != s.parent.as_deref() {
                    fields.push(FieldDiff::plain(
                        "parent",
                        live_parent.map(str::to_string),
                        s.parent.clone(),
                    ));
                }
                if let Some(a) = &s.address
                    && &l.address != a
                {
                    fields.push(FieldDiff::plain(
                        "address",
                        Some(l.address.clone()),
                        Some(a.clone()),
                    ));
                }
                if let Some(n) = &s.note
                    && untagged(&l.note) != n
                {
                    fields.push(FieldDiff::plain(
                        "note",
                        Some(untagged(&l.note).to_string()),
                        Some(n.clone()),
                    ));
                }
                if !fields.is_empty() {
                    items.push(Item {
                        change: Change {
                            address: addr,
                            action: Action::Update,
                            reason: (!is_tagged(&l.note)).then(|| {
                                "adopts a site wispctl did not create: its note gets the [wispctl] tag".to_string()
                            }),
                            fields,
                            content: None,
                            side_effects: vec![],
                        },
                        collection: "site",
                        op: Op::UpdateSite {
                            live: (*l).clone(),
                            spec: s.clone(),
                        },
                    });
                }
            }
        }
    }

    // Devices.
    let by_mac: HashMap<&str, &LiveDevice> =
        live.devices.iter().map(|d| (d.mac.as_str(), d)).collect();
    let mut absent = Vec::new();
    // Where each live device will be after this plan, for the "empty site" check.
    let mut site_after: HashMap<&str, Option<String>> = HashMap::new();
    for (mac, assignment) in &desired.devices {
        let addr = device_address(server, mac);
        let Some(d) = by_mac.get(mac.as_str()) else {
            absent.push(mac.clone());
            continue;
        };
        let live_site = d
            .site_id
            .as_deref()
            .and_then(|id| site_name_of_id.get(id).copied());
        let where_now = if !d.authorized {
            "(unauthorized)".to_string()
        } else {
            live_site.map_or("(no site)".to_string(), str::to_string)
        };
        match assignment {
            Assignment::Site(target) => {
                site_after.insert(d.id.as_str(), Some(target.clone()));
                if d.authorized && live_site == Some(target.as_str()) {
                    continue;
                }
                let mut fields = vec![FieldDiff::plain(
                    "site",
                    Some(where_now),
                    Some(target.clone()),
                )];
                if !d.authorized {
                    fields.push(FieldDiff::plain(
                        "authorized",
                        Some("false".into()),
                        Some("true".into()),
                    ));
                }
                items.push(Item {
                    change: Change {
                        address: addr,
                        action: Action::Update,
                        reason: None,
                        fields,
                        content: None,
                        side_effects: if d.authorized {
                            vec![format!("UISP logs a \"device moved\" event for {mac}")]
                        } else {
                            vec![]
                        },
                    },
                    collection: "device",
                    op: Op::Authorize {
                        device: d.id.clone(),
                        site: target.clone(),
                    },
                });
            }
            Assignment::Unassigned => {
                site_after.insert(d.id.as_str(), None);
                if d.site_id.is_none() {
                    continue;
                }
                items.push(Item {
                    change: Change {
                        address: addr,
                        action: Action::Update,
                        reason: None,
                        fields: vec![FieldDiff::plain(
                            "site",
                            Some(where_now),
                            Some("(none)".into()),
                        )],
                        content: None,
                        side_effects: vec![],
                    },
                    collection: "device",
                    op: Op::Unassign {
                        device: d.id.clone(),
                    },
                });
            }
        }
    }
    if !absent.is_empty() {
        notes.push(format!(
            "{} device(s) in the YAML are not in UISP yet (they have not connected): {}",
            absent.len(),
            absent.join(", ")
        ));
    }

    // Ghosts.
    let ghosts: Vec<&LiveDevice> = live
        .devices
        .iter()
        .filter(|d| d.is_ghost() && !desired.devices.contains_key(&d.mac))
        .collect();
    match desired.ghosts {
        Ghosts::Keep if !ghosts.is_empty() => notes.push(format!(
            "{} ghost device(s) (no name, no IP, not authorized) are kept (ghosts: keep)",
            ghosts.len()
        )),
        Ghosts::Keep => {}
        Ghosts::Delete => {
            for d in ghosts {
                site_after.insert(d.id.as_str(), None);
                items.push(Item {
                    change: Change {
                        address: device_address(server, &d.mac),
                        action: Action::Delete,
                        reason: Some(format!(
                            "ghost: no name, no IP, not authorized{} (ghosts: delete)",
                            if d.failed_decryption { ", failing decryption" } else { "" }
                        )),
                        fields: vec![],
                        content: None,
                        side_effects: vec![
                            "its key is reset first (POST /devices/{id}/refresh), so a real antenna behind it can reconnect".into(),
                        ],
                    },
                    collection: "ghost",
                    op: Op::DeleteGhost { device: d.id.clone() },
                });
            }
        }
    }

    // Owned sites no longer declared: deleted when pruning and empty after this plan. A site
    // is empty when no device will be in it and every child site is deleted too: found as a
    // fixpoint, so a tagged parent is never planned for deletion under a child that stays.
    let mut kept = Vec::new();
    let mut candidates: BTreeSet<&str> = BTreeSet::new();
    for s in live
        .sites
        .iter()
        .filter(|s| is_tagged(&s.note) && !declared.contains_key(s.name.as_str()))
    {
        if desired.prune != Prune::Owned {
            kept.push(s.name.clone());
            continue;
        }
        let devices_left = live
            .devices
            .iter()
            .any(|d| match site_after.get(d.id.as_str()) {
                Some(after) => after.as_deref() == Some(s.name.as_str()),
                None => d.site_id.as_deref() == Some(s.id.as_str()),
            });
        let declared_child = desired
            .sites
            .iter()
            .any(|c| c.parent.as_deref() == Some(s.name.as_str()));
        // A device the YAML puts here that has not connected yet still needs the site.
        let assigned = desired
            .devices
            .values()
            .any(|a| matches!(a, Assignment::Site(n) if n == &s.name));
        if devices_left || declared_child || assigned {
            notes.push(format!(
                "site {:?} is no longer declared but still holds devices or sites: kept until it is empty",
                s.name
            ));
        } else {
            candidates.insert(s.id.as_str());
        }
    }
    // Where each live site's parent will be after this plan: a declared site with a parent
    // moves there; any other keeps its parent.
    let parent_after = |c: &LiveSite| -> Option<String> {
        match declared
            .get(c.name.as_str())
            .and_then(|d| d.parent.as_ref())
        {
            Some(p) => live_by_name.get(p.as_str()).map(|l| l.id.clone()),
            None => c.parent_id.clone(),
        }
    };
    loop {
        let blocked: Vec<&str> = candidates
            .iter()
            .copied()
            .filter(|id| {
                live.sites.iter().any(|c| {
                    parent_after(c).as_deref() == Some(*id) && !candidates.contains(c.id.as_str())
                })
            })
            .collect();
        if blocked.is_empty() {
            break;
        }
        for id in blocked {
            candidates.remove(id);
            if let Some(s) = live.sites.iter().find(|s| s.id == id) {
                notes.push(format!(
                    "site {:?} is no longer declared but still holds sites that stay: kept until it is empty",
                    s.name
                ));
            }
        }
    }
    let mut deletable: Vec<&LiveSite> = live
        .sites
        .iter()
        .filter(|s| candidates.contains(s.id.as_str()))
        .collect();
    // Children before parents.
    let live_parent: HashMap<&str, &str> = live
        .sites
        .iter()
        .filter_map(|s| s.parent_id.as_deref().map(|p| (s.id.as_str(), p)))
        .collect();
    let live_depth = |id: &str| {
        let mut d = 0;
        let mut cur = id;
        while let Some(&p) = live_parent.get(cur) {
            d += 1;
            cur = p;
            if d > 64 {
                break;
            }
        }
        d
    };
    deletable.sort_by_key(|s| std::cmp::Reverse(live_depth(&s.id)));
    for s in deletable {
        items.push(Item {
            change: Change {
                address: site_address(server, &s.name),
                action: Action::Delete,
                reason: Some(
                    "created by wispctl, no longer declared, and empty (prune: owned)".into(),
                ),
                fields: vec![],
                content: None,
                side_effects: vec![],
            },
            collection: "site",
            op: Op::DeleteSite { id: s.id.clone() },
        });
    }
    if !kept.is_empty() {
        notes.push(format!(
            "{} site(s) wispctl created are no longer declared and are kept (prune: none)",
            kept.len()
        ));
    }
    let mut desired_counts = BTreeMap::new();
    desired_counts.insert("site", desired.sites.len());
    desired_counts.insert("device", desired.devices.len());
    // Ghost cleanup is an explicit policy, not a prune of declared objects: the empty-list
    // guard does not apply to it (the delete cap does).
    desired_counts.insert("ghost", 1);
    Ok(Planned {
        items,
        notes,
        secret_hashes: BTreeMap::new(),
        desired_counts,
        allow_empty_prune: desired.allow_empty_prune,
        object_errors: BTreeMap::new(),
    })
}

async fn apply_server(client: &UispClient, items: Vec<Item<Op>>, live: UispLive) -> Vec<Outcome> {
    let mut outcomes: Vec<Option<Outcome>> = vec![None; items.len()];
    let ok = |i: usize| Outcome::applied(&items[i].change.address, items[i].change.action);
    let fail = |i: usize, why: String| {
        Outcome::failed(&items[i].change.address, items[i].change.action, why)
    };
    let mut ids: HashMap<String, String> = live
        .sites
        .iter()
        .map(|s| (s.name.clone(), s.id.clone()))
        .collect();

    // 1. Sites, parents first (the diff ordered them).
    for (i, item) in items.iter().enumerate() {
        let r = match &item.op {
            Op::CreateSite(s) => {
                let parent = match &s.parent {
                    Some(p) => match ids.get(p) {
                        Some(id) => Some(id.clone()),
                        None => {
                            outcomes[i] = Some(fail(
                                i,
                                format!("its parent site {p:?} could not be created"),
                            ));
                            continue;
                        }
                    },
                    None => None,
                };
                let note = tagged(s.note.as_deref().unwrap_or(""));
                client
                    .create_site(
                        &s.name,
                        s.kind.as_str(),
                        parent.as_deref(),
                        s.address.as_deref().unwrap_or(""),
                        &note,
                    )
                    .await
                    .map(|created| {
                        ids.insert(s.name.clone(), created.id);
                    })
            }
            Op::UpdateSite { live, spec } => {
                let parent = match &spec.parent {
                    Some(p) => match ids.get(p) {
                        Some(id) => Some(id.clone()),
                        None => {
                            outcomes[i] = Some(fail(
                                i,
                                format!("its parent site {p:?} could not be created"),
                            ));
                            continue;
                        }
                    },
                    // Not managed: keep the parent it has.
                    None => live.parent_id.clone(),
                };
                let note = tagged(spec.note.as_deref().unwrap_or(untagged(&live.note)));
                let address = spec.address.clone().unwrap_or_else(|| live.address.clone());
                client
                    .update_site(live, &spec.name, parent.as_deref(), &address, &note)
                    .await
                    .map(drop)
            }
            _ => continue,
        };
        outcomes[i] = Some(match r {
            Ok(()) => ok(i),
            Err(e) => fail(i, e.to_string()),
        });
    }

    // 2. Authorize and move: one call per destination site.
    let mut by_site: BTreeMap<String, Vec<usize>> = BTreeMap::new();
    for (i, item) in items.iter().enumerate() {
        if let Op::Authorize { site, .. } = &item.op {
            by_site.entry(site.clone()).or_default().push(i);
        }
    }
    for (site, idx) in by_site {
        let Some(site_id) = ids.get(&site).cloned() else {
            for i in idx {
                outcomes[i] = Some(fail(i, format!("site {site:?} could not be created")));
            }
            continue;
        };
        let devices: Vec<String> = idx
            .iter()
            .filter_map(|&i| match &items[i].op {
                Op::Authorize { device, .. } => Some(device.clone()),
                _ => None,
            })
            .collect();
        let r = client.authorize(&site_id, &devices).await;
        for i in idx {
            outcomes[i] = Some(match &r {
                Ok(()) => ok(i),
                Err(e) => fail(i, format!("authorize into {site:?}: {e}")),
            });
        }
    }

    // 3. Unassign; 4. ghosts (key reset, then delete).
    let by_id: HashMap<&str, &LiveDevice> =
        live.devices.iter().map(|d| (d.id.as_str(), d)).collect();
    for (i, item) in items.iter().enumerate() {
        let r = match &item.op {
            Op::Unassign { device } => client.unassign(device).await.map_err(|e| e.to_string()),
            Op::DeleteGhost { device } => {
                // Read again at the last moment: never a device with a name or an IP, even one
                // that gained them since the plan.
                let fresh = client.device(device).await;
                if !by_id.get(device.as_str()).is_some_and(|d| d.is_ghost()) {
                    Err("not deleted: the device has a name or an IP".to_string())
                } else if let Err(e) = &fresh {
                    Err(format!(
                        "not deleted: it could not be read again first: {e}"
                    ))
                } else if !fresh.as_ref().is_ok_and(LiveDevice::is_ghost) {
                    Err(
                        "not deleted: since the plan, the device got a name, an IP or a site"
                            .to_string(),
                    )
                } else {
                    match client.refresh(device).await {
                        Err(e) => Err(format!(
                            "not deleted: its key could not be reset first: {e}"
                        )),
                        Ok(()) => client
                            .delete_device(device)
                            .await
                            .map_err(|e| e.to_string()),
                    }
                }
            }
            _ => continue,
        };
        outcomes[i] = Some(match r {
            Ok(()) => ok(i),
            Err(e) => fail(i, e),
        });
    }

    // 5. Owned empty sites, deepest first (the diff ordered them).
    for (i, item) in items.iter().enumerate() {
        if let Op::DeleteSite { id } = &item.op {
            outcomes[i] = Some(match client.delete_site(id).await {
                Ok(()) => ok(i),
                Err(e) => fail(i, e.to_string()),
            });
        }
    }

    // 6. Verify with one read of each list.
    let (sites, devices) = tokio::join!(client.sites(), client.devices());
    match (sites, devices) {
        (Ok(sites), Ok(devices)) => {
            let site_id: HashMap<&str, &str> = sites
                .iter()
                .map(|s| (s.name.as_str(), s.id.as_str()))
                .collect();
            for (i, item) in items.iter().enumerate() {
                if outcomes[i].as_ref().is_none_or(|o| o.reason.is_some()) {
                    continue;
                }
                let problem = match &item.op {
                    Op::CreateSite(s) | Op::UpdateSite { spec: s, .. } => (!site_id
                        .contains_key(s.name.as_str()))
                    .then(|| format!("site {:?} is not in UISP", s.name)),
                    Op::Authorize { device, site } => {
                        let d = devices.iter().find(|d| &d.id == device);
                        let want = site_id.get(site.as_str()).copied();
                        match d {
                            Some(d) if d.authorized && d.site_id.as_deref() == want => None,
                            _ => Some(format!("the device is not authorized in {site:?}")),
                        }
                    }
                    Op::Unassign { device } => devices
                        .iter()
                        .find(|d| &d.id == device)
                        .and_then(|d| d.site_id.as_ref())
                        .map(|_| "the device is still in a site".to_string()),
                    Op::DeleteGhost { device } => devices
                        .iter()
                        .any(|d| &d.id == device)
                        .then(|| "the device is still there".to_string()),
                    Op::DeleteSite { id } => sites
                        .iter()
                        .any(|s| &s.id == id)
                        .then(|| "the site is still there".to_string()),
                };
                if let Some(p) = problem {
                    outcomes[i] = Some(fail(i, format!("verification failed: {p}")));
                }
            }
        }
        (Err(e), _) | (_, Err(e)) => {
            for (i, o) in outcomes.iter_mut().enumerate() {
                if o.as_ref().is_some_and(|o| o.reason.is_none()) {
                    *o = Some(fail(i, format!("applied, but could not be verified: {e}")));
                }
            }
        }
    }
    outcomes
        .into_iter()
        .enumerate()
        .map(|(i, o)| o.unwrap_or_else(|| fail(i, "not attempted".into())))
        .collect()
}
