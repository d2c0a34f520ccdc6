//! A router's reading as a snapshot keeps it: its secrets (every field but the password,
//! which becomes its keyed hash, compared the way a hidden password is), profiles, active
//! sessions, and what wispctl remembers of it (the keyed hashes of passwords it applied, the
//! kicks it owes).

use std::collections::{BTreeMap, BTreeSet};

use routeros_api::client::Row;
use serde::{Deserialize, Serialize};

use super::observe::{LiveSecret, RouterLive};
use crate::secret::{HashKey, Secret, SecretHash};

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Snap {
    secrets: Vec<SecretSnap>,
    profiles: BTreeSet<String>,
    active: BTreeMap<String, Vec<String>>,
    passwords_visible: bool,
    applied: BTreeMap<String, SecretHash>,
    pending_kicks: BTreeSet<String>,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct SecretSnap {
    id: String,
    /// Every field but `password`, in name order.
    fields: Vec<(String, String)>,
    /// The keyed hash of the password the router showed, if it showed one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    password: Option<SecretHash>,
    #[serde(default, skip_serializing_if = "BTreeSet::is_empty")]
    not_utf8: BTreeSet<String>,
}

/// The reading as JSON: no password, only keyed hashes under `key`.
pub fn to_value(live: &RouterLive, key: &HashKey) -> serde_json::Value {
    let snap = Snap {
        secrets: live
            .secrets
            .iter()
            .map(|s| SecretSnap {
                id: s.id.clone(),
                fields: s
                    .fields
                    .iter()
                    .filter(|(k, _)| *k != "password")
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect(),
                password: s
                    .fields
                    .get("password")
                    .map(|p| SecretHash::of(key, &Secret::new(p))),
                not_utf8: s.not_utf8.clone(),
            })
            .collect(),
        profiles: live.profiles.clone(),
        active: live.active.clone(),
        passwords_visible: live.passwords_visible,
        applied: live.applied.clone(),
        pending_kicks: live.pending_kicks.clone(),
    };
    serde_json::to_value(snap).expect("router readings serialise")
}

/// The reading back from JSON. A password the router showed is compared through its keyed
/// hash, as one wispctl applied to a router that hides passwords: the same plan.
pub fn from_value(v: serde_json::Value) -> Result<RouterLive, String> {
    let snap: Snap = serde_json::from_value(v).map_err(|e| e.to_string())?;
    let mut applied = snap.applied;
    let secrets = snap
        .secrets
        .into_iter()
        .map(|s| {
            let fields: Row = s.fields.iter().map(|(k, v)| (k, v)).collect();
            if let (Some(h), Some(name)) = (s.password, fields.get("name")) {
                applied.insert(name.to_string(), h);
            }
            LiveSecret {
                id: s.id,
                fields,
                not_utf8: s.not_utf8,
            }
        })
        .collect();
    Ok(RouterLive {
        secrets,
        profiles: snap.profiles,
        active: snap.active,
        passwords_visible: snap.passwords_visible,
        applied,
        pending_kicks: snap.pending_kicks,
    })
}
