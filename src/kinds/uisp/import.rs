//! `wispctl import uisp TARGET`: YAML of a UISP server's sites and device assignments, such
//! that the next plan shows no changes. Unauthorized devices and ghosts are left out (not
//! managed); the ghost policy is `keep` and pruning is off.

use std::collections::{BTreeMap, HashMap};

use super::diff::depths;
use crate::ownership::untagged;
use crate::uisp_api::client::{LiveDevice, LiveSite};

/// What an import produces.
pub struct Imported {
    /// The YAML file.
    pub yaml: String,
    /// Things the operator must know.
    pub warnings: Vec<String>,
}

fn yaml_str(s: &str) -> String {
    serde_json::to_string(s).expect("strings serialise")
}

/// Renders the import of what was read from `server`.
pub fn render(server: &str, sites: &[LiveSite], devices: &[LiveDevice]) -> Imported {
    let mut warnings = Vec::new();
    let name_of: HashMap<&str, &str> = sites
        .iter()
        .map(|s| (s.id.as_str(), s.name.as_str()))
        .collect();
    let mut seen: BTreeMap<&str, usize> = BTreeMap::new();
    for s in sites {
        *seen.entry(s.name.as_str()).or_default() += 1;
    }
    let mut y = format!(
        "# yaml-language-server: $schema=../../schemas/uisp.schema.json\n\
         # Imported from UISP {server} by `wispctl import uisp {server}`.\n\
         uisp: {server}\n\
         prune: none\n\
         ghosts: keep\n"
    );
    // Parents before children, for people reading it.
    let parent_of: HashMap<&str, &str> = sites
        .iter()
        .filter_map(|s| s.parent_id.as_deref().map(|p| (s.id.as_str(), p)))
        .collect();
    let depth = depths(&parent_of, sites.iter().map(|s| s.id.as_str()));
    let mut ordered: Vec<&LiveSite> = sites.iter().collect();
    ordered.sort_by_cached_key(|s| (depth[s.id.as_str()], s.name.clone()));
    let mut site_lines = String::new();
    for s in ordered {
        if seen[s.name.as_str()] > 1 {
            warnings.push(format!(
                "UISP has {} sites named {:?}: left out; rename them apart",
                seen[s.name.as_str()],
                s.name
            ));
            continue;
        }
        site_lines.push_str(&format!("  - name: {}\n", yaml_str(&s.name)));
        if s.kind == "endpoint" {
            site_lines.push_str("    type: endpoint\n");
        }
        if let Some(p) = s.parent_id.as_deref().and_then(|p| name_of.get(p)) {
            site_lines.push_str(&format!("    parent: {}\n", yaml_str(p)));
        }
        if s.address.contains('\0') || s.note.contains('\0') {
            warnings.push(format!("site {:?}: its address or note holds a NUL character and is left out (not managed)", s.name));
        }
        if !s.address.is_empty() && !s.address.contains('\0') {
            site_lines.push_str(&format!("    address: {}\n", yaml_str(&s.address)));
        }
        let note = untagged(&s.note);
        if !note.is_empty() && !note.contains('\0') {
            site_lines.push_str(&format!("    note: {}\n", yaml_str(note)));
        }
    }
    if site_lines.is_empty() {
        y.push_str("sites: []\n");
    } else {
        y.push_str("sites:\n");
        y.push_str(&site_lines);
    }
    let mut device_lines = String::new();
    let mut left_out = 0;
    let mut ordered: Vec<&LiveDevice> = devices.iter().collect();
    ordered.sort_by(|a, b| a.mac.cmp(&b.mac));
    for d in ordered {
        if !d.authorized {
            left_out += 1;
            continue;
        }
        match d.site_id.as_deref().and_then(|id| name_of.get(id)) {
            Some(site) if seen[site] == 1 => {
                let label = d
                    .name
                    .as_deref()
                    // A name is free text: never let it end the comment line.
                    .map(|n| {
                        let clean: String = n
                            .chars()
                            .map(|c| if c.is_control() { ' ' } else { c })
                            .collect();
                        format!("   # {clean}")
                    })
                    .unwrap_or_default();
                device_lines.push_str(&format!(
                    "  - mac: {}{label}\n    site: {}\n",
                    yaml_str(&d.mac),
                    yaml_str(site)
                ));
            }
            Some(_) => left_out += 1,
            None => device_lines.push_str(&format!(
                "  - mac: {}\n    unassign: true\n",
                yaml_str(&d.mac)
            )),
        }
    }
    if left_out > 0 {
        warnings.push(format!(
            "{left_out} unauthorized (or ambiguously placed) device(s) are left out: not managed"
        ));
    }
    if device_lines.is_empty() {
        y.push_str("devices: []\n");
    } else {
        y.push_str("devices:\n");
        y.push_str(&device_lines);
    }
    Imported { yaml: y, warnings }
}
