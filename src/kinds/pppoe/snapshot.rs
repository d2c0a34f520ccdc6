//! A router's reading as a snapshot keeps it: its secrets (every field but the password; for
//! the secrets the YAML names, a keyed hash of the password salted with the secret's address,
//! nothing for the others: nobody's password is there to guess at), profiles, active sessions,
//! and what wispctl remembers of it (the keyed hashes of passwords it applied, the kicks it
//! owes). Back from a snapshot, a password hash equal to the desired password's is that
//! password; a different one, a password known to differ.

use std::collections::{BTreeMap, BTreeSet};

use routeros_api::client::Row;
use serde::{Deserialize, Serialize};

use super::observe::{LiveSecret, RouterLive};
use super::spec::PppoeDesired;
use crate::secret::{HashKey, Secret, SecretHash};

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Snap {
    secrets: Vec<SecretSnap>,
    profiles: BTreeSet<String>,
    active: BTreeMap<String, Vec<String>>,
    passwords_visible: bool,
    /// The hashes of the passwords wispctl applied, for the named secrets only, salted again.
    applied: BTreeMap<String, SecretHash>,
    pending_kicks: BTreeSet<String>,
    /// The secrets named when it was taken: their passwords are compared from it.
    named: BTreeSet<String>,
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

/// The keyed hash of a password of secret `name` of `router`.
fn password_hash(key: &HashKey, router: &str, name: &str, password: &str) -> SecretHash {
    let mut h = key.hasher("snapshot-pppoe-password");
    for part in [router, name, password] {
        h.update(&(part.len() as u64).to_be_bytes());
        h.update(part.as_bytes());
    }
    SecretHash(h.finish())
}

/// The reading as JSON: no password; for the secrets `desired` names, salted keyed hashes.
pub fn to_value(
    router: &str,
    live: &RouterLive,
    desired: &PppoeDesired,
    key: &HashKey,
) -> serde_json::Value {
    let named: BTreeSet<&str> = desired.secrets.iter().map(|s| s.name.as_str()).collect();
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
                    .filter(|_| named.contains(s.name()))
                    .map(|p| password_hash(key, router, s.name(), p)),
                not_utf8: s.not_utf8.clone(),
            })
            .collect(),
        profiles: live.profiles.clone(),
        active: live.active.clone(),
        passwords_visible: live.passwords_visible,
        applied: live
            .applied
            .iter()
            .filter(|(n, _)| named.contains(n.as_str()))
            .map(|(n, h)| (n.clone(), password_hash(key, router, n, &h.0)))
            .collect(),
        pending_kicks: live.pending_kicks.clone(),
        named: named.iter().map(|n| n.to_string()).collect(),
    };
    serde_json::to_value(snap).expect("router readings serialise")
}

/// The reading back from JSON, against `desired`: a password the router showed is compared
/// through its hash, as one wispctl applied to a router that hides passwords (the same plan).
pub fn from_value(
    router: &str,
    v: serde_json::Value,
    desired: &PppoeDesired,
    key: &HashKey,
) -> Result<RouterLive, String> {
    let snap: Snap = serde_json::from_value(v).map_err(|e| e.to_string())?;
    let wanted: BTreeMap<&str, &Secret> = desired
        .secrets
        .iter()
        .filter_map(|s| s.password.as_ref().map(|p| (s.name.as_str(), p)))
        .collect();
    // What wispctl applied, back against the desired passwords.
    let mut applied: BTreeMap<String, SecretHash> = snap
        .applied
        .into_iter()
        .map(|(name, h)| {
            let known = match wanted.get(name.as_str()) {
                Some(p) if password_hash(key, router, &name, &SecretHash::of(key, p).0) == h => {
                    SecretHash::of(key, p)
                }
                _ => SecretHash(format!("differs:{}", h.0)),
            };
            (name, known)
        })
        .collect();
    // Named now, on the router, not named when the snapshot was taken: not compared.
    let on_router: BTreeSet<&str> = snap
        .secrets
        .iter()
        .filter_map(|s| {
            s.fields
                .iter()
                .find(|(k, _)| k == "name")
                .map(|(_, v)| v.as_str())
        })
        .collect();
    let unknown_passwords = wanted
        .keys()
        .filter(|n| on_router.contains(**n) && !snap.named.contains(**n))
        .map(|n| n.to_string())
        .collect();
    let secrets = snap
        .secrets
        .into_iter()
        .map(|s| {
            let fields: Row = s.fields.iter().map(|(k, v)| (k, v)).collect();
            if let (Some(h), Some(name)) = (s.password, fields.get("name")) {
                let known = match wanted.get(name) {
                    Some(p) if password_hash(key, router, name, p.expose()) == h => {
                        SecretHash::of(key, p)
                    }
                    // Differs from the desired one (or nothing is desired): no desired
                    // password's hash can equal it.
                    _ => SecretHash(format!("differs:{}", h.0)),
                };
                applied.insert(name.to_string(), known);
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
        unknown_passwords,
    })
}
