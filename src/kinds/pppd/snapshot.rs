//! A host's pppd files as a snapshot keeps them, with no secret: the peer files the YAML names
//! or wispctl owns as a plan shows them (`password` lines masked), the others by name, mode and
//! a keyed hash of their content only; chap-secrets as its line structure: the client and
//! server of every entry (duplicates are reported by name), plain address lists, and only for
//! the pairs the YAML declares the secret, the hand-written text and unusual addresses as keyed
//! hashes salted with the pair (nothing secret of the other entries). A pair declared since the
//! snapshot was taken has its secret not compared.
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
    /// The pairs declared when it was taken.
    declared: BTreeSet<(String, String)>,
    peers: BTreeMap<String, PeerSnap>,
    symlinks: BTreeSet<String>,
    chap: Option<ChapSnap>,
    leftovers: Vec<(bool, String)>,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct PeerSnap {
    /// As a plan shows it (`password` lines masked), for a file named or owned.
    content: Option<String>,
    /// The keyed hash of the content of any other file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    content_hash: Option<String>,
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
    /// The keyed hash of the line as written (without its terminator), for a declared pair.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    text: Option<String>,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct EntrySnap {
    client: String,
    server: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    secret: Option<String>,
    /// The addresses when a plan may show them; otherwise their keyed hash.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    addresses: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    addresses_hash: Option<String>,
}

/// The keyed hash of `data` for the pair `client@server`.
fn hash(key: &HashKey, what: &str, pair: (&str, &str), data: &str) -> String {
    let mut h = key.hasher(&format!("snapshot-pppd-{what}"));
    for part in [pair.0, pair.1, data] {
        h.update(&(part.len() as u64).to_be_bytes());
        h.update(part.as_bytes());
    }
    h.finish()
}

/// A desired entry's pair.
fn pair(d: &ChapEntry) -> (&str, &str) {
    (d.client.as_str(), d.server.as_str())
}

/// An address list, unambiguously (a word holding a space is not two words).
fn addresses_text(addresses: &[String]) -> String {
    serde_json::to_string(addresses).expect("strings serialise")
}

/// The host as JSON: no secret value, no unowned peer file's content.
pub fn to_value(live: &HostLive, desired: &PppdDesired, key: &HashKey) -> serde_json::Value {
    let declared: BTreeSet<(&str, &str)> = desired
        .chap
        .iter()
        .map(|e| (e.client.as_str(), e.server.as_str()))
        .collect();
    let named: BTreeSet<&str> = desired.peers.iter().map(|p| p.name.as_str()).collect();
    let peers = live
        .peers
        .iter()
        .map(|(name, p)| {
            let keep = named.contains(name.as_str()) || peer::is_owned(&p.content);
            let snap = PeerSnap {
                content: keep.then(|| peer::masked(&p.content)),
                content_hash: (!keep).then(|| hash(key, "peer", (name, ""), &p.content)),
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
                let pair = l
                    .entry
                    .as_ref()
                    .map(|e| (e.client.as_str(), e.server.as_str()))
                    .filter(|p| declared.contains(p));
                LineSnap {
                    entry: l.entry.as_ref().map(|e| {
                        let plain = shown_addresses(&e.addresses) != "(not shown)";
                        match pair {
                            Some(p) => EntrySnap {
                                client: e.client.clone(),
                                server: e.server.clone(),
                                secret: Some(hash(key, "secret", p, e.secret.expose())),
                                addresses: plain.then(|| e.addresses.clone()),
                                addresses_hash: (!plain).then(|| {
                                    hash(key, "addresses", p, &addresses_text(&e.addresses))
                                }),
                            },
                            None => EntrySnap {
                                client: e.client.clone(),
                                server: e.server.clone(),
                                secret: None,
                                addresses: plain.then(|| e.addresses.clone()),
                                addresses_hash: None,
                            },
                        }
                    }),
                    opaque: l.opaque,
                    text: pair.map(|p| hash(key, "line", p, &c.file.text(i))),
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
        declared: declared
            .iter()
            .map(|(c, s)| (c.to_string(), s.to_string()))
            .collect(),
        peers,
        symlinks: live.symlinks.clone(),
        chap,
        leftovers,
    };
    serde_json::to_value(snap).expect("pppd readings serialise")
}

/// A value no desired secret, address or line can be: it holds a control character.
/// The content of a peer file the snapshot did not keep, as a plan shows it.
const NOT_KEPT: &str = "# (a hand-written file: its content is not in the snapshot)\n";

fn never_desired(hash: &str) -> String {
    format!("\u{1}{hash}")
}

/// The host back from JSON, against `desired` (see the module documentation).
pub fn from_value(
    host: &str,
    v: serde_json::Value,
    desired: &PppdDesired,
    key: &HashKey,
) -> Result<HostLive, String> {
    let snap: Snap = serde_json::from_value(v).map_err(|e| e.to_string())?;
    let snap_declared = snap.declared.clone();
    let by_pair: HashMap<(&str, &str), &ChapEntry> = desired
        .chap
        .iter()
        .map(|e| ((e.client.as_str(), e.server.as_str()), e))
        .collect();
    let rendered: HashMap<&str, String> = desired
        .peers
        .iter()
        .map(|p| {
            let address = super::peer_address(host, &p.name);
            (p.name.as_str(), peer::render(p, &address))
        })
        .collect();
    let peers = snap
        .peers
        .into_iter()
        .map(|(name, p)| {
            // A file not kept: the desired content when its hash says so, else a text that
            // says it is not in the snapshot (never the desired one).
            let content = p.content.unwrap_or_else(|| {
                let h = p.content_hash.unwrap_or_default();
                match rendered.get(name.as_str()) {
                    Some(r) if hash(key, "peer", (&name, ""), r) == h => r.clone(),
                    _ => NOT_KEPT.to_string(),
                }
            });
            (
                name,
                LivePeer {
                    content,
                    mode: p.mode,
                },
            )
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
                let since = wanted.is_some_and(|d| {
                    !snap_declared.contains(&(d.client.clone(), d.server.clone()))
                });
                let text = match (wanted, &l.text) {
                    // Declared since: how it is written is not known either.
                    (Some(d), _) if since => chap::render_entry(d),
                    (Some(d), Some(t))
                        if hash(key, "line", pair(d), &chap::render_entry(d)) == *t =>
                    {
                        chap::render_entry(d)
                    }
                    (_, t) => never_desired(t.as_deref().unwrap_or("")),
                };
                let entry = l.entry.map(|e| {
                    let secret = match (wanted, &e.secret) {
                        (Some(_), _) if since => Secret::unresolved(),
                        (Some(d), Some(h))
                            if hash(key, "secret", pair(d), d.secret.expose()) == *h =>
                        {
                            d.secret.clone()
                        }
                        (_, h) => Secret::new(never_desired(h.as_deref().unwrap_or(""))),
                    };
                    let addresses = match (e.addresses, e.addresses_hash) {
                        (Some(a), _) => a,
                        (None, Some(h)) => match wanted {
                            Some(d)
                                if hash(
                                    key,
                                    "addresses",
                                    pair(d),
                                    &addresses_text(&d.addresses),
                                ) == h =>
                            {
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
