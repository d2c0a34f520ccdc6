//! Apply one UISP server's planned changes, in UISP's order, and verify them: sites created
//! and updated (parents first, as the diff ordered them), devices authorized or moved (one
//! `POST /devices/authorize` per destination site), unassigned, ghosts deleted (each read
//! again and its key reset first), owned empty sites deleted (deepest first), then one read of
//! both lists to check every write. Exactly one outcome per change.
//!
//! What it does not do: decide what to change (the diff did), or repeat a failed write (a
//! write that failed may have been done: the next run's plan shows what is left).

use std::collections::{BTreeMap, HashMap, HashSet};

use super::diff::Op;
use super::observe::UispLive;
use crate::engine::Item;
use crate::ownership::{tagged, untagged};
use crate::plan::report::Outcome;
use crate::uisp_api::client::{LiveDevice, LiveSite, UispClient, UispError};

/// The outcomes of one apply, one slot per item.
struct Outcomes<'a> {
    items: &'a [Item<Op>],
    slots: Vec<Option<Outcome>>,
}

impl<'a> Outcomes<'a> {
    fn new(items: &'a [Item<Op>]) -> Self {
        Outcomes {
            items,
            slots: vec![None; items.len()],
        }
    }

    fn ok(&mut self, i: usize) {
        let c = &self.items[i].change;
        self.slots[i] = Some(Outcome::applied(&c.address, c.action));
    }

    fn fail(&mut self, i: usize, why: impl Into<String>) {
        let c = &self.items[i].change;
        self.slots[i] = Some(Outcome::failed(&c.address, c.action, why));
    }

    fn set(&mut self, i: usize, result: Result<(), String>) {
        match result {
            Ok(()) => self.ok(i),
            Err(why) => self.fail(i, why),
        }
    }

    /// Applied so far (written, not yet verified).
    fn applied(&self, i: usize) -> bool {
        self.slots[i].as_ref().is_some_and(|o| o.reason.is_none())
    }

    /// One outcome per item: an item no step reached fails as not attempted.
    fn finish(self) -> Vec<Outcome> {
        let items = self.items;
        self.slots
            .into_iter()
            .enumerate()
            .map(|(i, o)| {
                o.unwrap_or_else(|| {
                    let c = &items[i].change;
                    Outcome::failed(&c.address, c.action, "not attempted")
                })
            })
            .collect()
    }
}

/// Applies `items` (ordered by the diff) to the server behind `client`, then verifies.
pub async fn apply_server(
    client: &UispClient,
    items: Vec<Item<Op>>,
    live: UispLive,
) -> Vec<Outcome> {
    let mut out = Outcomes::new(&items);
    // Site ids by name: the live ones, and each site as it is created.
    let mut ids: HashMap<String, String> = live
        .sites
        .iter()
        .map(|s| (s.name.clone(), s.id.clone()))
        .collect();
    write_sites(client, &mut out, &mut ids).await;
    authorize(client, &mut out, &ids).await;
    unassign_and_delete_ghosts(client, &mut out, &live.devices).await;
    delete_sites(client, &mut out).await;
    verify(client, &mut out).await;
    out.finish()
}

/// The id of the parent a site must have, or why it cannot be had. A parent left out of the
/// YAML is not managed: `keep` is the one the site has.
fn parent_id(
    parent: Option<&String>,
    keep: Option<&String>,
    ids: &HashMap<String, String>,
) -> Result<Option<String>, String> {
    match parent {
        Some(p) => ids
            .get(p)
            .cloned()
            .map(Some)
            .ok_or_else(|| format!("its parent site {p:?} could not be created")),
        None => Ok(keep.cloned()),
    }
}

/// Step 1: sites, created and updated, parents first (the diff ordered them). A site whose parent
/// could not be created is not written (never detached to the top level).
async fn write_sites(
    client: &UispClient,
    out: &mut Outcomes<'_>,
    ids: &mut HashMap<String, String>,
) {
    for (i, item) in out.items.iter().enumerate() {
        let r = match &item.op {
            Op::CreateSite(s) => match parent_id(s.parent.as_ref(), None, ids) {
                Err(why) => Err(why),
                Ok(parent) => {
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
                        .map_err(|e| e.to_string())
                }
            },
            Op::UpdateSite { live, spec } => {
                match parent_id(spec.parent.as_ref(), live.parent_id.as_ref(), ids) {
                    Err(why) => Err(why),
                    Ok(parent) => {
                        let note = tagged(spec.note.as_deref().unwrap_or(untagged(&live.note)));
                        let address = spec.address.as_deref().unwrap_or(&live.address);
                        client
                            .update_site(live, &spec.name, parent.as_deref(), address, &note)
                            .await
                            .map_err(|e| e.to_string())
                    }
                }
            }
            _ => continue,
        };
        out.set(i, r);
    }
}

/// Step 2: authorize and move: one call per destination site.
async fn authorize(client: &UispClient, out: &mut Outcomes<'_>, ids: &HashMap<String, String>) {
    let mut by_site: BTreeMap<&str, Vec<(usize, &str)>> = BTreeMap::new();
    for (i, item) in out.items.iter().enumerate() {
        if let Op::Authorize { device, site } = &item.op {
            by_site
                .entry(site.as_str())
                .or_default()
                .push((i, device.as_str()));
        }
    }
    for (site, planned) in by_site {
        let Some(site_id) = ids.get(site) else {
            for (i, _) in planned {
                out.fail(i, format!("site {site:?} could not be created"));
            }
            continue;
        };
        let devices: Vec<String> = planned.iter().map(|(_, d)| d.to_string()).collect();
        let r = client.authorize(site_id, &devices).await;
        for (i, _) in planned {
            out.set(
                i,
                r.as_ref()
                    .map(|_| ())
                    .map_err(|e| format!("authorize into {site:?}: {e}")),
            );
        }
    }
}

/// Steps 3 and 4: unassign; ghosts: read again, key reset, then delete.
async fn unassign_and_delete_ghosts(
    client: &UispClient,
    out: &mut Outcomes<'_>,
    planned: &[LiveDevice],
) {
    let by_id: HashMap<&str, &LiveDevice> = planned.iter().map(|d| (d.id.as_str(), d)).collect();
    for (i, item) in out.items.iter().enumerate() {
        let r = match &item.op {
            Op::Unassign { device } => client.unassign(device).await.map_err(|e| e.to_string()),
            Op::DeleteGhost { device } => {
                let was_ghost = by_id.get(device.as_str()).is_some_and(|d| d.is_ghost());
                delete_ghost(client, device, was_ghost).await
            }
            _ => continue,
        };
        out.set(i, r);
    }
}

/// Deletes one ghost, read again at the last moment: never a device with a name or an IP,
/// even one that gained them since the plan. `was_ghost`: it was one when planned.
async fn delete_ghost(client: &UispClient, device: &str, was_ghost: bool) -> Result<(), String> {
    let fresh = client.device(device).await;
    if !was_ghost {
        return Err("not deleted: the device has a name or an IP".into());
    }
    match fresh {
        Err(e) => {
            return Err(format!(
                "not deleted: it could not be read again first: {e}"
            ));
        }
        Ok(d) if !d.is_ghost() => {
            return Err(
                "not deleted: since the plan, the device got a name, an IP or a site".into(),
            );
        }
        Ok(_) => {}
    }
    client
        .refresh(device)
        .await
        .map_err(|e| format!("not deleted: its key could not be reset first: {e}"))?;
    client
        .delete_device(device)
        .await
        .map_err(|e| e.to_string())
}

/// Step 5: owned empty sites, deepest first (the diff ordered them).
async fn delete_sites(client: &UispClient, out: &mut Outcomes<'_>) {
    for (i, item) in out.items.iter().enumerate() {
        if let Op::DeleteSite { id } = &item.op {
            let r = client.delete_site(id).await.map_err(|e| e.to_string());
            out.set(i, r);
        }
    }
}

/// The lists read after the writes, looked up by name and id.
pub struct AfterApply<'a> {
    site_ids: HashMap<&'a str, &'a str>,
    site_exists: HashSet<&'a str>,
    devices: HashMap<&'a str, &'a LiveDevice>,
}

impl<'a> AfterApply<'a> {
    /// Indexes both lists once.
    pub fn new(sites: &'a [LiveSite], devices: &'a [LiveDevice]) -> Self {
        AfterApply {
            site_ids: sites
                .iter()
                .map(|s| (s.name.as_str(), s.id.as_str()))
                .collect(),
            site_exists: sites.iter().map(|s| s.id.as_str()).collect(),
            devices: devices.iter().map(|d| (d.id.as_str(), d)).collect(),
        }
    }

    /// What is wrong with an applied `op` in the lists read after it, if anything.
    pub fn problem(&self, op: &Op) -> Option<String> {
        match op {
            Op::CreateSite(s) | Op::UpdateSite { spec: s, .. } => {
                (!self.site_ids.contains_key(s.name.as_str()))
                    .then(|| format!("site {:?} is not in UISP", s.name))
            }
            Op::Authorize { device, site } => {
                let want = self.site_ids.get(site.as_str()).copied();
                match self.devices.get(device.as_str()) {
                    Some(d) if d.authorized && d.site_id.as_deref() == want => None,
                    _ => Some(format!("the device is not authorized in {site:?}")),
                }
            }
            Op::Unassign { device } => self
                .devices
                .get(device.as_str())
                .and_then(|d| d.site_id.as_ref())
                .map(|_| "the device is still in a site".to_string()),
            Op::DeleteGhost { device } => self
                .devices
                .contains_key(device.as_str())
                .then(|| "the device is still there".to_string()),
            Op::DeleteSite { id } => self
                .site_exists
                .contains(id.as_str())
                .then(|| "the site is still there".to_string()),
        }
    }
}

/// Step 6: one read of each list; every applied change is checked against it.
async fn verify(client: &UispClient, out: &mut Outcomes<'_>) {
    let read: Result<UispLive, UispError> = super::observe::read(client).await;
    match read {
        Ok(now) => {
            let after = AfterApply::new(&now.sites, &now.devices);
            for (i, item) in out.items.iter().enumerate() {
                if !out.applied(i) {
                    continue;
                }
                if let Some(p) = after.problem(&item.op) {
                    out.fail(i, format!("verification failed: {p}"));
                }
            }
        }
        Err(e) => {
            for i in 0..out.items.len() {
                if out.applied(i) {
                    out.fail(i, format!("applied, but could not be verified: {e}"));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kinds::uisp::fixtures::{live_device, live_site, site};

    #[test]
    fn verification_checks_each_write_against_the_lists_read_after() {
        let sites = vec![
            live_site("s1", "Torre", None, ""),
            live_site("s2", "Casa", None, ""),
        ];
        let devices = vec![live_device(1, Some("s2")), live_device(2, None)];
        let after = AfterApply::new(&sites, &devices);
        let authorize = |device: &str, site: &str| Op::Authorize {
            device: device.into(),
            site: site.into(),
        };
        assert_eq!(after.problem(&Op::CreateSite(site("Torre"))), None);
        assert_eq!(
            after.problem(&Op::CreateSite(site("Nueva"))),
            Some("site \"Nueva\" is not in UISP".into())
        );
        assert_eq!(after.problem(&authorize("d1", "Casa")), None);
        assert_eq!(
            after.problem(&authorize("d1", "Torre")),
            Some("the device is not authorized in \"Torre\"".into())
        );
        assert!(after.problem(&authorize("d9", "Casa")).is_some());
        assert_eq!(
            after.problem(&Op::Unassign {
                device: "d1".into()
            }),
            Some("the device is still in a site".into())
        );
        assert_eq!(
            after.problem(&Op::Unassign {
                device: "d2".into()
            }),
            None
        );
        assert_eq!(
            after.problem(&Op::DeleteGhost {
                device: "d2".into()
            }),
            Some("the device is still there".into())
        );
        assert_eq!(
            after.problem(&Op::DeleteGhost {
                device: "d9".into()
            }),
            None
        );
        assert_eq!(
            after.problem(&Op::DeleteSite { id: "s1".into() }),
            Some("the site is still there".into())
        );
        assert_eq!(after.problem(&Op::DeleteSite { id: "s9".into() }), None);
    }

    #[test]
    fn a_child_waits_for_its_parent_and_an_unmanaged_parent_is_kept() {
        let ids: HashMap<String, String> = [("Torre".to_string(), "s1".to_string())].into();
        let (torre, norte) = ("Torre".to_string(), "Norte".to_string());
        let keep = "s0".to_string();
        assert_eq!(parent_id(Some(&torre), None, &ids), Ok(Some("s1".into())));
        assert_eq!(
            parent_id(Some(&norte), Some(&keep), &ids),
            Err("its parent site \"Norte\" could not be created".into())
        );
        assert_eq!(parent_id(None, Some(&keep), &ids), Ok(Some("s0".into())));
        assert_eq!(parent_id(None, None, &ids), Ok(None));
    }
}
