//! Plain values for the kind's unit tests: sites and devices as the client hands them out, and
//! sites as the YAML declares them. Test code only; nothing here reaches a server.

use super::spec::{SiteKind, SiteSpec};
use crate::uisp_api::client::{LiveDevice, LiveSite};

/// A live site of type `site`, without an address.
pub fn live_site(id: &str, name: &str, parent: Option<&str>, note: &str) -> LiveSite {
    LiveSite {
        id: id.into(),
        name: name.into(),
        kind: "site".into(),
        parent_id: parent.map(Into::into),
        address: String::new(),
        note: note.into(),
        raw: serde_json::Value::Null,
    }
}

/// `28:70:4E:00:00:0i`.
pub fn mac(i: u8) -> String {
    format!("28:70:4E:00:00:{i:02X}")
}

/// Device `d{i}` with MAC [`mac`]`(i)` and a name, authorized in `site` (an id) when given,
/// else unauthorized.
pub fn live_device(i: u8, site: Option<&str>) -> LiveDevice {
    LiveDevice {
        id: format!("d{i}"),
        mac: mac(i),
        name: Some(format!("cpe {i}")),
        ip: None,
        authorized: site.is_some(),
        site_id: site.map(Into::into),
        status: if site.is_some() {
            "active"
        } else {
            "unauthorized"
        }
        .into(),
        failed_decryption: false,
    }
}

/// Ghost `g{i}` (MAC `F0:9F:C2:00:00:0i`): no name, no IP, not authorized.
pub fn ghost(i: u8) -> LiveDevice {
    LiveDevice {
        name: None,
        mac: format!("F0:9F:C2:00:00:{i:02X}"),
        id: format!("g{i}"),
        ..live_device(i, None)
    }
}

/// A declared site at the top level (or where it is), nothing else managed.
pub fn site(name: &str) -> SiteSpec {
    SiteSpec {
        name: name.into(),
        kind: SiteKind::Site,
        parent: None,
        address: None,
        note: None,
    }
}
