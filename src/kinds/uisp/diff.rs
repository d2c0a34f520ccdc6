//! The pure diff of one UISP server: desired sites and assignments against the sites and
//! devices read, as plain values in and planned changes out. No I/O, no client, no clock.
//!
//! One small function per concern: the live sites by name ([`live_sites`], two with one name
//! refused), references to sites that exist nowhere ([`undeclared_sites`]), parents that would
//! loop ([`parent_loop`]), site creates and updates in parents-first order ([`site_changes`],
//! type changes refused), device assignments ([`device_changes`]: authorize, move, unassign),
//! ghosts ([`ghost_changes`]), owned empty sites to prune, deepest first ([`prune_sites`]), and
//! the counts for the engine's empty-list guard ([`desired_counts`]). [`diff_server`] puts them
//! together.
//!
//! What it does not do: read or write UISP ([`super::observe`], [`super::apply`]), or apply
//! the delete cap and the empty-list guard (the engine does, from what this returns).

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

use super::UispKindError;
use super::observe::UispLive;
use super::spec::{Assignment, Ghosts, SiteSpec, UispDesired};
use crate::engine::{Item, Planned};
use crate::ownership::Prune;
use crate::ownership::{is_tagged, tagged, untagged};
use crate::plan::{Action, Change, FieldDiff, address};
use crate::uisp_api::client::{LiveDevice, LiveSite};

/// One apply instruction.
#[derive(Debug, Clone, PartialEq)]
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

/// `uisp.SERVER.site["NAME"]`.
pub fn site_address(server: &str, name: &str) -> String {
    address("uisp", server, "site", name)
}

/// `uisp.SERVER.device["MAC"]`.
pub fn device_address(server: &str, mac: &str) -> String {
    address("uisp", server, "device", mac)
}

/// The live sites, looked up by name and by id.
pub struct LiveSites<'a> {
    /// Each site by its name (unique: see [`live_sites`]).
    pub by_name: HashMap<&'a str, &'a LiveSite>,
    /// Each site's name by its id.
    pub name_of_id: HashMap<&'a str, &'a str>,
}

impl<'a> LiveSites<'a> {
    /// The name of the site with this id, when UISP listed it.
    pub fn name_of(&self, id: Option<&str>) -> Option<&'a str> {
        id.and_then(|id| self.name_of_id.get(id).copied())
    }
}

/// Indexes the live sites. Sites are matched by name, so two with one name are refused.
pub fn live_sites<'a>(server: &str, sites: &'a [LiveSite]) -> Result<LiveSites<'a>, UispKindError> {
    let mut by_name: HashMap<&str, &LiveSite> = HashMap::with_capacity(sites.len());
    for s in sites {
        if by_name.insert(s.name.as_str(), s).is_some() {
            return Err(UispKindError::DuplicateSiteName {
                server: server.to_string(),
                name: s.name.clone(),
            });
        }
    }
    let name_of_id = sites
        .iter()
        .map(|s| (s.id.as_str(), s.name.as_str()))
        .collect();
    Ok(LiveSites {
        by_name,
        name_of_id,
    })
}

/// Sites the YAML names (as a parent, or as a device's site) that it does not declare and
/// UISP does not have, sorted.
pub fn undeclared_sites(desired: &UispDesired, live: &LiveSites<'_>) -> Vec<String> {
    let declared: HashSet<&str> = desired.sites.iter().map(|s| s.name.as_str()).collect();
    let parents = desired.sites.iter().filter_map(|s| s.parent.as_deref());
    let assigned = desired.devices.values().filter_map(|a| match a {
        Assignment::Site(s) => Some(s.as_str()),
        Assignment::Unassigned => None,
    });
    let missing: BTreeSet<&str> = parents
        .chain(assigned)
        .filter(|s| !declared.contains(s) && !live.by_name.contains_key(s))
        .collect();
    missing.into_iter().map(str::to_string).collect()
}

/// Where each site's parent will be after the plan, by name: a declared parent where the YAML
/// gives one, else the parent it has in UISP (a parent left out is not managed).
fn parents_after<'a>(desired: &'a UispDesired, live: &LiveSites<'a>) -> HashMap<&'a str, &'a str> {
    let mut parents: HashMap<&str, &str> = live
        .by_name
        .iter()
        .filter_map(|(name, s)| Some((*name, live.name_of(s.parent_id.as_deref())?)))
        .collect();
    for s in &desired.sites {
        if let Some(p) = &s.parent {
            parents.insert(s.name.as_str(), p.as_str());
        }
    }
    parents
}

/// A loop the declared parents would make with the parents UISP keeps (`A` declared under `B`
/// while UISP has `B` under `A`): the sites on it, starting with the first the YAML declares.
/// The YAML alone cannot loop (validation refuses it); with UISP's parents it can, and UISP
/// would refuse the move half-way through an apply.
pub fn parent_loop(desired: &UispDesired, live: &LiveSites<'_>) -> Option<Vec<String>> {
    let parents = parents_after(desired, live);
    let order: HashMap<&str, usize> = desired
        .sites
        .iter()
        .enumerate()
        .map(|(i, s)| (s.name.as_str(), i))
        .collect();
    // Sites known to lead to the top level.
    let mut settled: HashSet<&str> = HashSet::new();
    for start in desired.sites.iter().filter(|s| s.parent.is_some()) {
        let mut path: Vec<&str> = Vec::new();
        let mut on_path: HashMap<&str, usize> = HashMap::new();
        let mut cur = start.name.as_str();
        while !settled.contains(cur) {
            if let Some(&at) = on_path.get(cur) {
                let mut cycle: Vec<&str> = path[at..].to_vec();
                let first = (0..cycle.len())
                    .min_by_key(|&i| order.get(cycle[i]).copied().unwrap_or(usize::MAX))
                    .unwrap_or(0);
                cycle.rotate_left(first);
                return Some(cycle.into_iter().map(str::to_string).collect());
            }
            on_path.insert(cur, path.len());
            path.push(cur);
            match parents.get(cur) {
                Some(p) => cur = p,
                None => break,
            }
        }
        settled.extend(path);
    }
    None
}

/// How many parent steps lead from `from` up to a site with no parent in `parents` (child to
/// parent). Bounded by the map's size: a loop, which validation and UISP both refuse, cannot
/// hang a plan.
pub fn depth(parents: &HashMap<&str, &str>, from: &str) -> usize {
    let mut d = 0;
    let mut cur = from;
    while let Some(&p) = parents.get(cur) {
        d += 1;
        cur = p;
        if d > parents.len() {
            break;
        }
    }
    d
}

/// [`depth`] of each of `sites`, every parent step walked once in all (a site's depth is its
/// parent's plus one, remembered), so a deep tree costs no more than a flat one. The same
/// answers as [`depth`]: a site whose parents run into a loop is `parents.len() + 1`.
pub fn depths<'a>(
    parents: &HashMap<&'a str, &'a str>,
    sites: impl IntoIterator<Item = &'a str>,
) -> HashMap<&'a str, usize> {
    let beyond = parents.len() + 1;
    let mut known: HashMap<&'a str, usize> = HashMap::new();
    for from in sites {
        let mut path: Vec<&str> = Vec::new();
        let mut on_path: HashSet<&str> = HashSet::new();
        let mut cur = from;
        let base = loop {
            if let Some(&d) = known.get(cur) {
                break d;
            }
            let Some(&p) = parents.get(cur) else {
                break 0;
            };
            if !on_path.insert(cur) {
                break beyond;
            }
            path.push(cur);
            cur = p;
        };
        if path.is_empty() {
            known.insert(cur, base);
        }
        for (up, site) in path.into_iter().rev().enumerate() {
            known.insert(site, (base + up + 1).min(beyond));
        }
    }
    known
}

/// The declared sites, each after its declared parent (by depth in the declared tree; the
/// YAML's order among equals).
pub fn parents_first(sites: &[SiteSpec]) -> Vec<&SiteSpec> {
    let parents: HashMap<&str, &str> = sites
        .iter()
        .filter_map(|s| s.parent.as_deref().map(|p| (s.name.as_str(), p)))
        .collect();
    let depth = depths(&parents, sites.iter().map(|s| s.name.as_str()));
    let mut sorted: Vec<&SiteSpec> = sites.iter().collect();
    sorted.sort_by_key(|s| depth[s.name.as_str()]);
    sorted
}

/// A change with nothing but its address and action.
fn change(address: String, action: Action) -> Change {
    Change {
        impact: Default::default(),
        address,
        action,
        reason: None,
        fields: vec![],
        content: None,
        side_effects: vec![],
    }
}

/// A site UISP does not have: created, its note tagged.
pub fn create_site(server: &str, s: &SiteSpec) -> Item<Op> {
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
    Item {
        change: Change {
            impact: Default::default(),
            fields,
            ..change(site_address(server, &s.name), Action::Create)
        },
        collection: "site",
        op: Op::CreateSite(s.clone()),
    }
}

/// Refuses a declared site whose type differs from UISP's: UISP cannot change it.
pub fn same_type(server: &str, s: &SiteSpec, l: &LiveSite) -> Result<(), UispKindError> {
    if l.kind == s.kind.as_str() {
        return Ok(());
    }
    Err(UispKindError::TypeChange {
        server: server.to_string(),
        site: s.name.clone(),
        live: l.kind.clone(),
        desired: s.kind,
    })
}

/// A site UISP has: updated where a field the YAML gives differs (fields left out are not
/// managed); `live_parent` is the name of its parent in UISP. A site without the tag is
/// adopted (the update tags its note).
pub fn update_site(
    server: &str,
    s: &SiteSpec,
    l: &LiveSite,
    live_parent: Option<&str>,
) -> Option<Item<Op>> {
    let mut fields = Vec::new();
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
    if fields.is_empty() {
        return None;
    }
    Some(Item {
        change: Change {
            impact: Default::default(),
            reason: (!is_tagged(&l.note)).then(|| {
                "adopts a site wispctl did not create: its note gets the [wispctl] tag".to_string()
            }),
            fields,
            ..change(site_address(server, &s.name), Action::Update)
        },
        collection: "site",
        op: Op::UpdateSite {
            live: l.clone(),
            spec: s.clone(),
        },
    })
}

/// Creates and updates of the declared sites, parents first.
pub fn site_changes(
    server: &str,
    desired: &UispDesired,
    live: &LiveSites<'_>,
) -> Result<Vec<Item<Op>>, UispKindError> {
    let mut items = Vec::new();
    for s in parents_first(&desired.sites) {
        match live.by_name.get(s.name.as_str()) {
            None => items.push(create_site(server, s)),
            Some(l) => {
                same_type(server, s, l)?;
                let live_parent = live.name_of(l.parent_id.as_deref());
                items.extend(update_site(server, s, l, live_parent));
            }
        }
    }
    Ok(items)
}

/// One declared device UISP has: authorized into its site, moved there, or unassigned; `None`
/// when it already is where the YAML says. `live_site` is the name of its site in UISP.
pub fn device_change(
    server: &str,
    assignment: &Assignment,
    d: &LiveDevice,
    live_site: Option<&str>,
) -> Option<Item<Op>> {
    let where_now = if !d.authorized {
        "(unauthorized)".to_string()
    } else {
        live_site.map_or("(no site)".to_string(), str::to_string)
    };
    let addr = device_address(server, &d.mac);
    match assignment {
        Assignment::Site(target) => {
            if d.authorized && live_site == Some(target.as_str()) {
                return None;
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
            let side_effects = if d.authorized {
                vec![format!("UISP logs a \"device moved\" event for {}", d.mac)]
            } else {
                vec![]
            };
            Some(Item {
                change: Change {
                    impact: Default::default(),
                    fields,
                    side_effects,
                    ..change(addr, Action::Update)
                },
                collection: "device",
                op: Op::Authorize {
                    device: d.id.clone(),
                    site: target.clone(),
                },
            })
        }
        Assignment::Unassigned => {
            d.site_id.as_ref()?;
            Some(Item {
                change: Change {
                    impact: Default::default(),
                    fields: vec![FieldDiff::plain(
                        "site",
                        Some(where_now),
                        Some("(none)".into()),
                    )],
                    ..change(addr, Action::Update)
                },
                collection: "device",
                op: Op::Unassign {
                    device: d.id.clone(),
                },
            })
        }
    }
}

/// Where each live device will be after the plan, by device id: in the named site, or in none
/// (`None`: unassigned, or deleted as a ghost). Devices the plan leaves alone are not listed.
pub type SiteAfter<'a> = HashMap<&'a str, Option<&'a str>>;

/// What the declared assignments change.
#[derive(Default)]
pub struct DeviceChanges<'a> {
    /// Authorize, move and unassign changes, by MAC.
    pub items: Vec<Item<Op>>,
    /// Declared MACs UISP does not list (they have not connected yet).
    pub absent: Vec<String>,
    /// Where each declared device UISP has will be.
    pub site_after: SiteAfter<'a>,
}

/// The changes of every declared device.
pub fn device_changes<'a>(
    server: &str,
    desired: &'a UispDesired,
    devices: &'a [LiveDevice],
    live: &LiveSites<'_>,
) -> DeviceChanges<'a> {
    let by_mac: HashMap<&str, &LiveDevice> = devices.iter().map(|d| (d.mac.as_str(), d)).collect();
    let mut out = DeviceChanges::default();
    for (mac, assignment) in &desired.devices {
        let Some(d) = by_mac.get(mac.as_str()) else {
            out.absent.push(mac.clone());
            continue;
        };
        let after = match assignment {
            Assignment::Site(target) => Some(target.as_str()),
            Assignment::Unassigned => None,
        };
        out.site_after.insert(d.id.as_str(), after);
        let live_site = live.name_of(d.site_id.as_deref());
        out.items
            .extend(device_change(server, assignment, d, live_site));
    }
    out
}

/// What the ghost policy changes.
#[derive(Default)]
pub struct GhostChanges<'a> {
    /// One delete per ghost, with `ghosts: delete`.
    pub items: Vec<Item<Op>>,
    /// The ids of the ghosts deleted.
    pub deleted: Vec<&'a str>,
    /// With `ghosts: keep`, how many are kept.
    pub note: Option<String>,
}

/// Ghosts the YAML does not name (no name, no IP, not authorized): deleted with
/// `ghosts: delete` (the key reset first), else noted. A device with a name or an IP is never
/// a ghost.
pub fn ghost_changes<'a>(
    server: &str,
    desired: &UispDesired,
    devices: &'a [LiveDevice],
) -> GhostChanges<'a> {
    let ghosts: Vec<&LiveDevice> = devices
        .iter()
        .filter(|d| d.is_ghost() && !desired.devices.contains_key(&d.mac))
        .collect();
    match desired.ghosts {
        Ghosts::Keep if ghosts.is_empty() => GhostChanges::default(),
        Ghosts::Keep => GhostChanges {
            note: Some(format!(
                "{} ghost device(s) (no name, no IP, not authorized) are kept (ghosts: keep)",
                ghosts.len()
            )),
            ..GhostChanges::default()
        },
        Ghosts::Delete => GhostChanges {
            items: ghosts.iter().map(|d| delete_ghost(server, d)).collect(),
            deleted: ghosts.iter().map(|d| d.id.as_str()).collect(),
            note: None,
        },
    }
}

/// The delete of one ghost.
fn delete_ghost(server: &str, d: &LiveDevice) -> Item<Op> {
    Item {
        change: Change {
            impact: Default::default(),
            reason: Some(format!(
                "ghost: no name, no IP, not authorized{} (ghosts: delete)",
                if d.failed_decryption {
                    ", failing decryption"
                } else {
                    ""
                }
            )),
            side_effects: vec![
                "its key is reset first (POST /devices/{id}/refresh), so a real antenna behind it can reconnect".into(),
            ],
            ..change(device_address(server, &d.mac), Action::Delete)
        },
        collection: "ghost",
        op: Op::DeleteGhost {
            device: d.id.clone(),
        },
    }
}

/// What still needs an owned, undeclared site after the plan.
struct Holders<'a> {
    /// Sites (by name) a device will be in: moved, authorized or kept there by the YAML.
    named: HashSet<&'a str>,
    /// Sites (by id) holding a device the plan does not touch.
    untouched: HashSet<&'a str>,
    /// Sites (by name) a declared site is placed under.
    declared_parents: HashSet<&'a str>,
    /// Sites (by name) the YAML assigns a device to, connected or not yet.
    assigned: HashSet<&'a str>,
}

impl<'a> Holders<'a> {
    fn new(desired: &'a UispDesired, devices: &'a [LiveDevice], after: &SiteAfter<'a>) -> Self {
        let mut named = HashSet::new();
        let mut untouched = HashSet::new();
        for d in devices {
            match after.get(d.id.as_str()) {
                Some(site) => named.extend(*site),
                None => untouched.extend(d.site_id.as_deref()),
            }
        }
        Holders {
            named,
            untouched,
            declared_parents: desired
                .sites
                .iter()
                .filter_map(|s| s.parent.as_deref())
                .collect(),
            assigned: desired
                .devices
                .values()
                .filter_map(|a| match a {
                    Assignment::Site(n) => Some(n.as_str()),
                    Assignment::Unassigned => None,
                })
                .collect(),
        }
    }

    /// A device or a declared site will be in `s`.
    fn hold(&self, s: &LiveSite) -> bool {
        let name = s.name.as_str();
        self.named.contains(name)
            || self.untouched.contains(s.id.as_str())
            || self.declared_parents.contains(name)
            || self.assigned.contains(name)
    }
}

/// Narrows `candidates` (site ids) to those whose every child site after the plan is a
/// candidate too, so a parent is never deleted under a child that stays; a note for each one
/// dropped. `children` are the live sites by parent id after the plan.
fn settle_candidates<'a>(
    candidates: &mut BTreeSet<&'a str>,
    children: &HashMap<&'a str, Vec<&'a str>>,
    name_of_id: &HashMap<&'a str, &'a str>,
) -> Vec<String> {
    // Each site's parents after the plan (one, unless UISP listed an id twice).
    let mut parents: HashMap<&str, Vec<&str>> = HashMap::new();
    for (&parent, kids) in children {
        for &kid in kids {
            parents.entry(kid).or_default().push(parent);
        }
    }
    let mut notes = Vec::new();
    // In rounds, each in id order: first every candidate holding a site that stays; then
    // every candidate holding one just dropped (the only ones a round can newly block), so
    // each site is looked at once per child, not once per round.
    let mut blocked: BTreeSet<&str> = candidates
        .iter()
        .copied()
        .filter(|id| {
            children
                .get(id)
                .is_some_and(|c| c.iter().any(|c| !candidates.contains(c)))
        })
        .collect();
    while !blocked.is_empty() {
        for &id in &blocked {
            candidates.remove(id);
            if let Some(name) = name_of_id.get(id) {
                notes.push(format!(
                    "site {name:?} is no longer declared but still holds sites that stay: kept until it is empty"
                ));
            }
        }
        blocked = blocked
            .iter()
            .filter_map(|id| parents.get(id))
            .flatten()
            .copied()
            .filter(|p| candidates.contains(p))
            .collect();
    }
    notes
}

/// Sites in delete order: children before parents (deepest in UISP's tree first; UISP's order
/// among equals).
fn deepest_first<'a>(sites: Vec<&'a LiveSite>, all: &'a [LiveSite]) -> Vec<&'a LiveSite> {
    let parent: HashMap<&str, &str> = all
        .iter()
        .filter_map(|s| s.parent_id.as_deref().map(|p| (s.id.as_str(), p)))
        .collect();
    let depth = depths(&parent, sites.iter().map(|s| s.id.as_str()));
    let mut sorted = sites;
    sorted.sort_by_key(|s| std::cmp::Reverse(depth[s.id.as_str()]));
    sorted
}

/// Owned sites (tagged) the YAML no longer declares: with `prune: owned`, deleted once empty
/// after this plan (no device in them, no declared site under them, no device assigned to
/// them, every child site deleted too), deepest first; otherwise kept, with a note. Untagged
/// sites are never deleted.
pub fn prune_sites<'a>(
    server: &str,
    desired: &'a UispDesired,
    live: &'a UispLive,
    sites: &LiveSites<'a>,
    after: &SiteAfter<'a>,
) -> (Vec<Item<Op>>, Vec<String>) {
    let declared: HashMap<&str, &SiteSpec> =
        desired.sites.iter().map(|s| (s.name.as_str(), s)).collect();
    let owned: Vec<&LiveSite> = live
        .sites
        .iter()
        .filter(|s| is_tagged(&s.note) && !declared.contains_key(s.name.as_str()))
        .collect();
    let mut notes = Vec::new();
    if desired.prune != Prune::Owned {
        if !owned.is_empty() {
            notes.push(format!(
                "{} site(s) wispctl created are no longer declared and are kept (prune: none)",
                owned.len()
            ));
        }
        return (vec![], notes);
    }
    let holders = Holders::new(desired, &live.devices, after);
    let mut candidates: BTreeSet<&str> = BTreeSet::new();
    for s in owned {
        if holders.hold(s) {
            notes.push(format!(
                "site {:?} is no longer declared but still holds devices or sites: kept until it is empty",
                s.name
            ));
        } else {
            candidates.insert(s.id.as_str());
        }
    }
    // Each live site under its parent after this plan: a declared site with a parent moves
    // there; any other keeps its parent.
    let mut children: HashMap<&str, Vec<&str>> = HashMap::new();
    for c in &live.sites {
        let parent = match declared
            .get(c.name.as_str())
            .and_then(|d| d.parent.as_ref())
        {
            Some(p) => sites.by_name.get(p.as_str()).map(|l| l.id.as_str()),
            None => c.parent_id.as_deref(),
        };
        if let Some(p) = parent {
            children.entry(p).or_default().push(c.id.as_str());
        }
    }
    notes.extend(settle_candidates(
        &mut candidates,
        &children,
        &sites.name_of_id,
    ));
    let deletable: Vec<&LiveSite> = live
        .sites
        .iter()
        .filter(|s| candidates.contains(s.id.as_str()))
        .collect();
    let items = deepest_first(deletable, &live.sites)
        .into_iter()
        .map(|s| Item {
            change: Change {
                impact: Default::default(),
                reason: Some(
                    "created by wispctl, no longer declared, and empty (prune: owned)".into(),
                ),
                ..change(site_address(server, &s.name), Action::Delete)
            },
            collection: "site",
            op: Op::DeleteSite { id: s.id.clone() },
        })
        .collect();
    (items, notes)
}

/// How many objects the YAML declares per collection, for the engine's empty-list guard.
pub fn desired_counts(desired: &UispDesired) -> BTreeMap<&'static str, usize> {
    BTreeMap::from([
        ("site", desired.sites.len()),
        ("device", desired.devices.len()),
        // Ghost cleanup is an explicit policy, not a prune of declared objects: the empty-list
        // guard does not apply to it (the delete cap does).
        ("ghost", 1),
    ])
}

/// The pure diff of one server.
pub fn diff_server(
    server: &str,
    desired: &UispDesired,
    live: &UispLive,
) -> Result<Planned<Op>, UispKindError> {
    let sites = live_sites(server, &live.sites)?;
    let names = undeclared_sites(desired, &sites);
    if !names.is_empty() {
        return Err(UispKindError::UndeclaredSites {
            server: server.to_string(),
            names,
        });
    }
    if let Some(loop_sites) = parent_loop(desired, &sites) {
        return Err(UispKindError::ParentLoop {
            server: server.to_string(),
            sites: loop_sites,
        });
    }
    let mut items = site_changes(server, desired, &sites)?;
    let mut notes = Vec::new();

    let devices = device_changes(server, desired, &live.devices, &sites);
    items.extend(devices.items);
    if !devices.absent.is_empty() {
        notes.push(format!(
            "{} device(s) in the YAML are not in UISP yet (they have not connected): {}",
            devices.absent.len(),
            devices.absent.join(", ")
        ));
    }
    let mut site_after = devices.site_after;

    let ghosts = ghost_changes(server, desired, &live.devices);
    notes.extend(ghosts.note);
    site_after.extend(ghosts.deleted.iter().map(|id| (*id, None)));
    items.extend(ghosts.items);

    let (pruned, prune_notes) = prune_sites(server, desired, live, &sites, &site_after);
    items.extend(pruned);
    notes.extend(prune_notes);

    Ok(Planned {
        items,
        notes,
        secret_hashes: BTreeMap::new(),
        desired_counts: desired_counts(desired),
        allow_empty_prune: desired.allow_empty_prune,
        object_errors: BTreeMap::new(),
        not_compared: Vec::new(),
    })
}

#[cfg(test)]
mod tests;
