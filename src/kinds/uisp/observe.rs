//! Observe one UISP server: one `GET /sites` and one `GET /devices`, concurrently, and the
//! fingerprint of every object a plan may touch (so a saved plan is refused once any moved).
//!
//! What it does not do: decide anything (the diff does) or write (nothing here may).

use std::collections::{BTreeMap, HashMap};

use super::diff::{device_address, site_address};
use super::spec::{Ghosts, UispDesired};
use crate::ownership::is_tagged;
use crate::secret::HashKey;
use crate::uisp_api::client::{LiveDevice, LiveSite, UispClient, UispError};

/// A server as read.
#[derive(Debug, Clone, Default)]
pub struct UispLive {
    /// Every site, in UISP's order.
    pub sites: Vec<LiveSite>,
    /// Every device, in UISP's order.
    pub devices: Vec<LiveDevice>,
}

/// Reads both lists once, concurrently.
pub async fn read(client: &UispClient) -> Result<UispLive, UispError> {
    let (sites, devices) = tokio::join!(client.sites(), client.devices());
    Ok(UispLive {
        sites: sites?,
        devices: devices?,
    })
}

/// The keyed hash of every object the plan may touch, by address: each declared site and
/// device (`absent` when UISP has none), each owned site (a prune candidate), and each ghost
/// when the YAML deletes ghosts.
pub fn fingerprints(
    server: &str,
    desired: &UispDesired,
    live: &UispLive,
    key: &HashKey,
) -> BTreeMap<String, String> {
    // The first of a name or MAC, as UISP lists them (two sites with one name are refused by
    // the diff anyway).
    let mut sites: HashMap<&str, &LiveSite> = HashMap::with_capacity(live.sites.len());
    for s in &live.sites {
        sites.entry(s.name.as_str()).or_insert(s);
    }
    let mut devices: HashMap<&str, &LiveDevice> = HashMap::with_capacity(live.devices.len());
    for d in &live.devices {
        devices.entry(d.mac.as_str()).or_insert(d);
    }
    let mut fp = BTreeMap::new();
    for s in &desired.sites {
        let v = sites
            .get(s.name.as_str())
            .map_or_else(|| "absent".into(), |l| site_fingerprint(key, l));
        fp.insert(site_address(server, &s.name), v);
    }
    for s in live.sites.iter().filter(|s| is_tagged(&s.note)) {
        fp.entry(site_address(server, &s.name))
            .or_insert_with(|| site_fingerprint(key, s));
    }
    for mac in desired.devices.keys() {
        let v = devices
            .get(mac.as_str())
            .map_or_else(|| "absent".into(), |d| device_fingerprint(key, d));
        fp.insert(device_address(server, mac), v);
    }
    if desired.ghosts == Ghosts::Delete {
        for d in live.devices.iter().filter(|d| d.is_ghost()) {
            fp.entry(device_address(server, &d.mac))
                .or_insert_with(|| device_fingerprint(key, d));
        }
    }
    fp
}

/// What a site change depends on: id, name, type, parent, address, note.
fn site_fingerprint(key: &HashKey, s: &LiveSite) -> String {
    key.digest(
        "uisp-site",
        format!(
            "{}\0{}\0{}\0{:?}\0{}\0{}",
            s.id, s.name, s.kind, s.parent_id, s.address, s.note
        )
        .as_bytes(),
    )
}

/// What a device change depends on: id, authorization, site, and the name and IP that decide
/// whether it is a ghost.
fn device_fingerprint(key: &HashKey, d: &LiveDevice) -> String {
    key.digest(
        "uisp-device",
        format!(
            "{}\0{}\0{:?}\0{:?}\0{:?}",
            d.id, d.authorized, d.site_id, d.name, d.ip
        )
        .as_bytes(),
    )
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::*;
    use crate::kinds::uisp::fixtures::{ghost, live_device, live_site, mac, site};
    use crate::kinds::uisp::spec::Assignment;
    use crate::ownership::Prune;

    fn desired(ghosts: Ghosts) -> UispDesired {
        UispDesired {
            source: PathBuf::from("uisp/main.yaml"),
            prune: Prune::None,
            ghosts,
            allow_empty_prune: false,
            sites: vec![site("Torre"), site("Nueva")],
            devices: [
                (mac(1), Assignment::Site("Torre".into())),
                (mac(9), Assignment::Unassigned),
            ]
            .into_iter()
            .collect(),
        }
    }

    fn live() -> UispLive {
        UispLive {
            sites: vec![
                live_site("s1", "Torre", None, ""),
                live_site("s2", "Vieja", None, "[wispctl]"),
                live_site("s3", "A mano", None, "by hand"),
            ],
            devices: vec![live_device(1, None), ghost(1)],
        }
    }

    #[test]
    fn declared_owned_and_ghost_objects_are_fingerprinted_and_nothing_else() {
        let key = HashKey::from_bytes([1; 32]);
        let fp = fingerprints("main", &desired(Ghosts::Keep), &live(), &key);
        let keys: Vec<&str> = fp.keys().map(String::as_str).collect();
        assert_eq!(
            keys,
            [
                r#"uisp.main.device["28:70:4E:00:00:01"]"#,
                r#"uisp.main.device["28:70:4E:00:00:09"]"#,
                r#"uisp.main.site["Nueva"]"#,
                r#"uisp.main.site["Torre"]"#,
                r#"uisp.main.site["Vieja"]"#,
            ]
        );
        assert_eq!(fp[r#"uisp.main.site["Nueva"]"#], "absent");
        assert_eq!(fp[r#"uisp.main.device["28:70:4E:00:00:09"]"#], "absent");
        assert_ne!(fp[r#"uisp.main.site["Torre"]"#], "absent");

        let fp = fingerprints("main", &desired(Ghosts::Delete), &live(), &key);
        assert!(fp.contains_key(r#"uisp.main.device["F0:9F:C2:00:00:01"]"#));
    }

    #[test]
    fn a_fingerprint_moves_with_the_object() {
        let key = HashKey::from_bytes([1; 32]);
        let before = fingerprints("main", &desired(Ghosts::Keep), &live(), &key);
        let mut moved = live();
        moved.sites[0].note = "edited".into();
        moved.devices[0].authorized = true;
        let after = fingerprints("main", &desired(Ghosts::Keep), &moved, &key);
        for a in [
            r#"uisp.main.site["Torre"]"#,
            r#"uisp.main.device["28:70:4E:00:00:01"]"#,
        ] {
            assert_ne!(before[a], after[a], "{a}");
        }
        assert_eq!(
            before[r#"uisp.main.site["Vieja"]"#],
            after[r#"uisp.main.site["Vieja"]"#]
        );
    }
}
