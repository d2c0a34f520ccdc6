//! A UISP server's reading as a snapshot keeps it: every site and device as the diff uses
//! them. Nothing secret is read from UISP (the token is never in it); the raw site object
//! kept for read-modify-write updates is left out (a plan from a snapshot is applied after a
//! fresh read).

use serde::{Deserialize, Serialize};

use super::observe::UispLive;
use crate::uisp_api::client::{LiveDevice, LiveSite};

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Snap {
    sites: Vec<SiteSnap>,
    devices: Vec<DeviceSnap>,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct SiteSnap {
    id: String,
    name: String,
    kind: String,
    parent_id: Option<String>,
    address: String,
    note: String,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct DeviceSnap {
    id: String,
    mac: String,
    name: Option<String>,
    ip: Option<String>,
    authorized: bool,
    site_id: Option<String>,
    status: String,
    failed_decryption: bool,
}

/// The reading as JSON.
pub fn to_value(live: &UispLive) -> serde_json::Value {
    let snap = Snap {
        sites: live
            .sites
            .iter()
            .map(|s| SiteSnap {
                id: s.id.clone(),
                name: s.name.clone(),
                kind: s.kind.clone(),
                parent_id: s.parent_id.clone(),
                address: s.address.clone(),
                note: s.note.clone(),
            })
            .collect(),
        devices: live
            .devices
            .iter()
            .map(|d| DeviceSnap {
                id: d.id.clone(),
                mac: d.mac.clone(),
                name: d.name.clone(),
                ip: d.ip.clone(),
                authorized: d.authorized,
                site_id: d.site_id.clone(),
                status: d.status.clone(),
                failed_decryption: d.failed_decryption,
            })
            .collect(),
    };
    serde_json::to_value(snap).expect("UISP readings serialise")
}

/// The reading back from JSON.
pub fn from_value(v: serde_json::Value) -> Result<UispLive, String> {
    let snap: Snap = serde_json::from_value(v).map_err(|e| e.to_string())?;
    Ok(UispLive {
        sites: snap
            .sites
            .into_iter()
            .map(|s| LiveSite {
                id: s.id,
                name: s.name,
                kind: s.kind,
                parent_id: s.parent_id,
                address: s.address,
                note: s.note,
                raw: serde_json::Value::Null,
            })
            .collect(),
        devices: snap
            .devices
            .into_iter()
            .map(|d| LiveDevice {
                id: d.id,
                mac: d.mac,
                name: d.name,
                ip: d.ip,
                authorized: d.authorized,
                site_id: d.site_id,
                status: d.status,
                failed_decryption: d.failed_decryption,
            })
            .collect(),
    })
}
