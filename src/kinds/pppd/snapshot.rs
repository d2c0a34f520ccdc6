//! A host's pppd files as a snapshot keeps them, with no secret and no content wispctl was not
//! meant to read: the peer files the YAML names or wispctl owns (their `password` lines masked,
//! as a plan shows them), only the name and mode of the others, and chap-secrets as its line
//! structure, each entry's secret, hand-written text and unusual addresses as keyed hashes.
//!
//! Back from a snapshot, a hash is compared with the desired value's hash under the same key:
//! equal, the entry gets the desired value; different, a value that can never be desired
//! (it holds a control character, which validation refuses). The diff then plans exactly as
//! against the live files.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::chap::{self, ChapFile, Line, LiveEntry};
use super::client::HostFile;
use super::diff::shown_addresses;
use super::observe::{HostLive, LiveChap, LivePeer};
use super::peer;
use super::spec::{ChapEntry, PppdDesired};
use crate::secret::{HashKey, Secret};

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Snap {
    peers: BTreeMap<String, PeerSnap>,
    symlinks: BTreeSet<String>,
    chap: Option<ChapSnap>,
    leftovers: Vec<(bool, String)>,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct PeerSnap {
    /// Masked; `None` for a file neither named in the YAML nor wispctl's (never kept).
    content: Option<String>,
    mode: u32,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct ChapSnap {
    mode: u32,
    block: Option<(usize, usize)>,
    lines: Vec<LineSnap>,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct LineSnap {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    entry: Option<EntrySnap>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    opaque: bool,
    /// The keyed hash of the line as written (without its terminator).
    text: String,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct EntrySnap {
    client: String,
    server: String,
    secret: String,
    /// The addresses when a plan may show them; otherwise their keyed hash.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    addresses: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    addresses_hash: Option<String>,
}

fn hash(key: &HashKey, what: &str, data: &str) -> String {
    key.digest(&format!("snapshot-pppd-{what}"), data.as_bytes())
}

/// The host as JSON: no secret value, no unowned peer file's content.
pub fn to_value(live: &HostLive, desired: &PppdDesired, key: &HashKey) -> serde_json::Value {
    let named: BTreeSet<&str> = desired.peers.iter().map(|p| p.name.as_str()).collect();
    let peers = live
        .peers
        .iter()
        .map(|(name, p)| {
            let keep = named.contains(name.as_str()) || peer::is_owned(&p.content);
            let snap = PeerSnap {
                content: keep.then(|| peer::masked(&p.content)),
                mode: p.mode,
            };
            (name.clone(), snap)
        })
        .collect();
    let chap = live.chap.as_ref().map(|c| ChapSnap {
        mode: c.mode,
        block: c.file.block,
        lines: (0..c.file.lines.len())
            .map(|i| {
                let l = &c.file.lines[i];
                LineSnap {
                    entry: l.entry.as_ref().map(|e| {
                        let plain = shown_addresses(&e.addresses) != "(not shown)";
                        EntrySnap {
                            client: e.client.clone(),
                            server: e.server.clone(),
                            secret: hash(key, "secret", e.secret.expose()),
                            addresses: plain.then(|| e.addresses.clone()),
                            addresses_hash: (!plain)
                                .then(|| hash(key, "addresses", &e.addresses.join(" "))),
                        }
                    }),
                    opaque: l.opaque,
                    text: hash(key, "line", &c.file.text(i)),
                }
            })
            .collect(),
    });
    let leftovers = live
        .leftovers
        .iter()
        .filter_map(|f| match f {
            HostFile::Leftover { in_peers, name } => Some((*in_peers, name.clone())),
            _ => None,
        })
        .collect();
    let snap = Snap {
        peers,
        symlinks: live.symlinks.clone(),
        chap,
        leftovers,
    };
    serde_json::to_value(snap).expect("pppd readings serialise")
}

/// A value no desired secret, address or line can be: it holds a control character.
fn never_desired(hash: &str) -> String {
    format!("\u{1}{hash}")
}

/// The host back from JSON, against `desired` (see the module documentation).
pub fn from_value(
    v: serde_json::Value,
    desired: &PppdDesired,
    key: &HashKey,
) -> Result<HostLive, String> {
    let snap: Snap = serde_json::from_value(v).map_err(|e| e.to_string())?;
    let by_pair: HashMap<(&str, &str), &ChapEntry> = desired
        .chap
        .iter()
        .map(|e| ((e.client.as_str(), e.server.as_str()), e))
        .collect();
    let peers = snap
        .peers
        .into_iter()
        .map(|(name, p)| {
            let live = LivePeer {
                content: p.content.unwrap_or_default(),
                mode: p.mode,
            };
            (name, live)
        })
        .collect();
    let chap = snap.chap.map(|c| {
        let lines = c
            .lines
            .into_iter()
            .map(|l| {
                let wanted = l.entry.as_ref().and_then(|e| {
                    by_pair
                        .get(&(e.client.as_str(), e.server.as_str()))
                        .copied()
                });
                let text = match wanted {
                    Some(d) if hash(key, "line", &chap::render_entry(d)) == l.text => {
                        chap::render_entry(d)
                    }
                    _ => never_desired(&l.text),
                };
                let entry = l.entry.map(|e| {
                    let secret = match wanted {
                        Some(d) if hash(key, "secret", d.secret.expose()) == e.secret => {
                            d.secret.clone()
                        }
                        _ => Secret::new(never_desired(&e.secret)),
                    };
                    let addresses = match (e.addresses, e.addresses_hash) {
                        (Some(a), _) => a,
                        (None, Some(h)) => match wanted {
                            Some(d) if hash(key, "addresses", &d.addresses.join(" ")) == h => {
                                d.addresses.clone()
                            }
                            _ => vec![never_desired(&h)],
                        },
                        (None, None) => Vec::new(),
                    };
                    LiveEntry {
                        client: e.client,
                        server: e.server,
                        secret,
                        addresses,
                    }
                });
                let mut raw = text.into_bytes();
                raw.push(b'\n');
                Line {
                    raw,
                    entry,
                    opaque: l.opaque,
                }
            })
            .collect();
        LiveChap {
            bytes: Vec::new(),
            file: ChapFile {
                lines,
                block: c.block,
            },
            mode: c.mode,
        }
    });
    Ok(HostLive {
        root: PathBuf::new(),
        peers,
        symlinks: snap.symlinks,
        chap,
        leftovers: snap
            .leftovers
            .into_iter()
            .map(|(in_peers, name)| HostFile::Leftover { in_peers, name })
            .collect(),
    })
}
