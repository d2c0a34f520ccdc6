//! `uisp/<target>.yaml`: the sites of one UISP server and which site each device belongs to.
//!
//! Devices are named by MAC address (normalised to `AA:BB:CC:DD:EE:FF`), sites by name. A site
//! the YAML names but does not declare must exist in UISP (checked at plan).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::PathBuf;

use schemars::JsonSchema;
use serde::Deserialize;

use crate::mac::normalise_mac;
use crate::ownership::Prune;
use crate::yaml::FileCheck;

/// One UISP file.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct UispFile {
    /// The UISP server, as named in `inventory.yaml` under `uisp`.
    pub uisp: String,
    /// `owned` deletes sites wispctl created (their note carries the tag) that the YAML no
    /// longer declares, once they are empty. Default `none`.
    #[serde(default)]
    pub prune: Prune,
    /// What to do with ghost devices (no name, no IP, not authorized): `keep` (default) or
    /// `delete` (each one's key is reset first, so a real antenna behind it can reconnect).
    #[serde(default)]
    pub ghosts: Ghosts,
    /// Let an empty `sites` list prune every owned site.
    #[serde(default)]
    pub allow_empty_prune: bool,
    /// Sites (infrastructure sites and customer endpoints).
    #[serde(default)]
    pub sites: Vec<SiteSpec>,
    /// Device assignments.
    #[serde(default)]
    pub devices: Vec<DeviceSpec>,
}

/// Ghost device policy.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Ghosts {
    /// Leave them.
    #[default]
    Keep,
    /// Reset each one's key, then delete it.
    Delete,
}

/// A site kind.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum SiteKind {
    /// An infrastructure site (a tower, a zone).
    #[default]
    Site,
    /// A customer endpoint ("Zone, Name").
    Endpoint,
}

impl SiteKind {
    /// UISP's word.
    pub fn as_str(self) -> &'static str {
        match self {
            SiteKind::Site => "site",
            SiteKind::Endpoint => "endpoint",
        }
    }
}

/// A site.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SiteSpec {
    /// The name, unique on the server (endpoints are "Zone, Name" by the operator's rule).
    pub name: String,
    /// `site` (default) or `endpoint`.
    #[serde(default, rename = "type")]
    pub kind: SiteKind,
    /// The parent site's name. Left out: not managed (a new site is created at the top level,
    /// an existing one stays where it is).
    #[serde(default)]
    pub parent: Option<String>,
    /// Postal address.
    #[serde(default)]
    pub address: Option<String>,
    /// A note for people.
    #[serde(default)]
    pub note: Option<String>,
}

/// A device's assignment.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DeviceSpec {
    /// The device's MAC address (any common form).
    pub mac: String,
    /// The site it belongs to: it is authorized into it, or moved there.
    #[serde(default)]
    pub site: Option<String>,
    /// Take it out of its site instead.
    #[serde(default)]
    pub unassign: bool,
}

/// A validated assignment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Assignment {
    /// Authorized in this site.
    Site(String),
    /// In no site.
    Unassigned,
}

/// The validated desired state of one UISP server.
#[derive(Debug, Clone)]
pub struct UispDesired {
    /// The file it came from.
    pub source: PathBuf,
    /// Prune policy for sites.
    pub prune: Prune,
    /// Ghost policy.
    pub ghosts: Ghosts,
    /// See [`UispFile::allow_empty_prune`].
    pub allow_empty_prune: bool,
    /// Sites, names unique.
    pub sites: Vec<SiteSpec>,
    /// Assignments by normalised MAC.
    pub devices: BTreeMap<String, Assignment>,
}

/// Whether the chain of parents up from `from` comes back to a site it passed (a loop, on it
/// or above it). `known` remembers the answer for every site walked, so each parent step is
/// taken once over all the sites.
fn reaches_loop<'a>(
    parent_of: &HashMap<&'a str, &'a str>,
    from: &'a str,
    known: &mut HashMap<&'a str, bool>,
) -> bool {
    let mut path: Vec<&str> = Vec::new();
    let mut on_path: HashSet<&str> = HashSet::new();
    let mut cur = from;
    let looped = loop {
        if let Some(&l) = known.get(cur) {
            break l;
        }
        if !on_path.insert(cur) {
            break true;
        }
        path.push(cur);
        match parent_of.get(cur) {
            Some(&p) => cur = p,
            None => break false,
        }
    };
    for site in path {
        known.insert(site, looped);
    }
    looped
}

/// Validates a parsed file. `None` when any error was found.
pub(crate) fn validate(file: UispFile, check: &mut FileCheck<'_>) -> Option<UispDesired> {
    let before = check.error_count();
    let mut names: HashMap<&str, usize> = HashMap::new();
    for (i, s) in file.sites.iter().enumerate() {
        let at = format!("sites[{i}]");
        if s.name.trim().is_empty() || s.name.chars().any(char::is_control) {
            check.error(
                &format!("{at}.name"),
                "a site name must be non-empty text without control characters".into(),
            );
        }
        if let Some(first) = names.insert(&s.name, i) {
            let (line, _) = check.place(&format!("sites[{first}].name"));
            check.error(
                &format!("{at}.name"),
                format!(
                    "duplicate site {:?} (first declared at line {line})",
                    s.name
                ),
            );
        }
        if s.parent.as_deref() == Some(s.name.as_str()) {
            check.error(
                &format!("{at}.parent"),
                "a site cannot be its own parent".into(),
            );
        }
        // Free text sent as JSON: line breaks and tabs are fine; only NUL is refused.
        for (field, v) in [("address", &s.address), ("note", &s.note)] {
            if v.as_ref().is_some_and(|v| v.contains('\0')) {
                check.error(
                    &format!("{at}.{field}"),
                    format!("{field} holds a NUL character"),
                );
            }
        }
    }
    // Parents must form a tree among the declared sites.
    let parent_of: HashMap<&str, &str> = file
        .sites
        .iter()
        .filter_map(|s| s.parent.as_deref().map(|p| (s.name.as_str(), p)))
        .collect();
    let mut looped: HashMap<&str, bool> = HashMap::with_capacity(file.sites.len());
    for (i, s) in file.sites.iter().enumerate() {
        if reaches_loop(&parent_of, &s.name, &mut looped) {
            check.error(
                &format!("sites[{i}].parent"),
                format!("site {:?} is its own ancestor (a parent loop)", s.name),
            );
        }
    }
    let mut devices = BTreeMap::new();
    let mut first_at: HashMap<String, usize> = HashMap::new();
    for (i, d) in file.devices.iter().enumerate() {
        let at = format!("devices[{i}]");
        let Some(mac) = normalise_mac(&d.mac) else {
            check.error(
                &format!("{at}.mac"),
                format!("{:?} is not a MAC address", d.mac),
            );
            continue;
        };
        let assignment = match (&d.site, d.unassign) {
            (Some(s), false) => Assignment::Site(s.clone()),
            (None, true) => Assignment::Unassigned,
            _ => {
                check.error(
                    &at,
                    "a device needs exactly one of `site: NAME` or `unassign: true`".into(),
                );
                continue;
            }
        };
        if let Some(first) = first_at.get(&mac) {
            let (line, _) = check.place(&format!("devices[{first}].mac"));
            check.error(
                &format!("{at}.mac"),
                format!("device {mac} is assigned twice (first at line {line}): a device belongs to one site"),
            );
            continue;
        }
        first_at.insert(mac.clone(), i);
        if let Assignment::Site(s) = &assignment
            && !names.contains_key(s.as_str())
        {
            check.warn(
                &format!("{at}.site"),
                format!("site {s:?} is not declared here: it must already exist in UISP (checked at plan)"),
            );
        }
        devices.insert(mac, assignment);
    }
    if check.error_count() > before {
        return None;
    }
    Some(UispDesired {
        source: check.file.to_path_buf(),
        prune: file.prune,
        ghosts: file.ghosts,
        allow_empty_prune: file.allow_empty_prune,
        sites: file.sites,
        devices,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_site_on_or_under_a_loop_reaches_it_and_each_is_walked_once() {
        // a <- b <- c; x <-> y; z under x; a long chain down to a.
        let names: Vec<String> = (0..20_000).map(|i| format!("n{i}")).collect();
        let mut parent_of: HashMap<&str, &str> =
            [("b", "a"), ("c", "b"), ("x", "y"), ("y", "x"), ("z", "x")]
                .into_iter()
                .collect();
        parent_of.insert(&names[0], "c");
        for w in names.windows(2) {
            parent_of.insert(&w[1], &w[0]);
        }
        let mut known = HashMap::new();
        for n in names.iter().rev() {
            assert!(!reaches_loop(&parent_of, n, &mut known), "{n}");
        }
        for (site, looped) in [
            ("a", false),
            ("c", false),
            ("z", true),
            ("x", true),
            ("y", true),
            ("q", false),
        ] {
            assert_eq!(reaches_loop(&parent_of, site, &mut known), looped, "{site}");
            // The same answer from a fresh memo.
            assert_eq!(
                reaches_loop(&parent_of, site, &mut HashMap::new()),
                looped,
                "{site}"
            );
        }
        assert!(known.len() >= names.len());
    }
}
