//! The pure diff of one host: the YAML's peers and chap-secrets entries against what
//! [`super::observe`] read.
//!
//! Small functions over plain values, one concern each: a peer file (create, update, adopt),
//! a chap-secrets entry and its fields, which owned objects the YAML no longer names, prune or
//! keep, the refusals (symbolic links, duplicate entries, a line that is not text), the file's
//! mode, and the guard inputs the engine needs. No I/O, no clock: [`diff_host`] is what
//! `plan`, `drift` and `apply` all see. Does not read or write files, nor order the changes
//! (the engine sorts them by action, keeping this order within one action).

use std::collections::{BTreeMap, BTreeSet, HashSet};

use super::chap::{self, ChapEdit, ChapFile, LiveEntry, Pairs};
use super::client::{FILE_MODE, HostFile};
use super::observe::{HostLive, LivePeer};
use super::spec::{ChapEntry, PeerSpec, PppdDesired};
use super::{Op, PppdError, chap_address, chap_file_address, leftover_address, peer, peer_address};
use crate::engine::{CLEANUP, Item, Planned};
use crate::ownership::Prune;
use crate::plan::{Action, Change, ContentDiff, FieldDiff, Impact};
use crate::secret::{HashKey, SecretHash};

/// The reason every prune shows.
const PRUNE_REASON: &str = "owned by wispctl and no longer in the YAML (prune: owned)";

/// When a changed chap-secrets entry is used.
const CHAP_TAKES_EFFECT: &str = "takes effect at the tunnel's next authentication";

/// The diff of one host: every change, in order (peers, then chap-secrets entries, then the
/// file's mode), the notes, and the engine's guard inputs. Refuses the whole host when a file
/// is such that wispctl must not touch it.
pub fn diff_host(
    host: &str,
    desired: &PppdDesired,
    live: &HostLive,
    key: &HashKey,
) -> Result<Planned<Op>, PppdError> {
    refuse_symlinked_peers(&desired.peers, &live.symlinks)?;
    let file = live.chap_file();
    let pairs = file.pairs();
    let declared = declared_pairs(&desired.chap);
    let mut notes = duplicate_notes(file, &pairs, &declared)?;

    let mut items: Vec<Item<Op>> = desired
        .peers
        .iter()
        .filter_map(|p| peer_change(host, p, live.peers.get(&p.name)))
        .collect();
    let (pruned, kept_peers) = prune_or_keep(
        desired.prune,
        undeclared_owned_peers(&desired.peers, &live.peers),
    );
    items.extend(
        pruned
            .into_iter()
            .map(|(name, l)| peer_delete(host, name, l)),
    );

    for e in &desired.chap {
        let lines = pairs.get(&(e.client.clone(), e.server.clone()));
        items.extend(chap_change(host, e, file, lines.map(Vec::as_slice))?);
    }
    let (pruned, kept_entries) = prune_or_keep(
        desired.prune,
        undeclared_owned_entries(file, &pairs, &declared),
    );
    items.extend(
        pruned
            .into_iter()
            .map(|(client, server, line)| chap_delete(host, client, server, line)),
    );
    items.extend(chap_mode_change(
        host,
        live.chap.as_ref().map(|c| c.mode),
        !desired.chap.is_empty(),
    ));
    notes.extend(kept_note(kept_peers + kept_entries));
    items.extend(live.leftovers.iter().map(|f| leftover_removal(host, f)));

    Ok(Planned {
        items,
        notes,
        secret_hashes: secret_hashes(host, &desired.chap, key),
        desired_counts: desired_counts(desired),
        allow_empty_prune: desired.allow_empty_prune,
        object_errors: BTreeMap::new(),
        not_compared: desired
            .chap
            .iter()
            .filter(|e| {
                let live_unknown = pairs
                    .get(&(e.client.clone(), e.server.clone()))
                    .and_then(|l| l.first())
                    .and_then(|&i| file.lines[i].entry.as_ref())
                    .is_some_and(|l| l.secret.is_unresolved());
                e.secret.is_unresolved() || live_unknown
            })
            .map(|e| format!("{}.secret", chap_address(host, &e.client, &e.server)))
            .collect(),
    })
}

/// Removing a temporary file an interrupted apply left behind (never read: it may be a whole
/// copy of chap-secrets). Shown by every plan until an apply removes it, so nothing half done
/// stays invisible.
pub fn leftover_removal(host: &str, file: &HostFile) -> Item<Op> {
    Item {
        change: Change {
            impact: Default::default(),
            address: leftover_address(host, file),
            action: Action::Delete,
            reason: Some(
                "cleanup: a temporary file an interrupted wispctl apply left behind".into(),
            ),
            fields: Vec::new(),
            content: None,
            side_effects: Vec::new(),
        },
        collection: CLEANUP,
        op: Op::RemoveLeftover { file: file.clone() },
    }
}

/// Refuses the host when a peer file the YAML names is a symbolic link: an atomic replace
/// would put a file where the link was, and the link's target would never see the change.
pub fn refuse_symlinked_peers(
    peers: &[PeerSpec],
    symlinks: &BTreeSet<String>,
) -> Result<(), PppdError> {
    let linked: Vec<String> = peers
        .iter()
        .filter(|p| symlinks.contains(&p.name))
        .map(|p| p.name.clone())
        .collect();
    if linked.is_empty() {
        Ok(())
    } else {
        Err(PppdError::SymlinkedPeers { peers: linked })
    }
}

/// The change one desired peer needs, if any: create it, or rewrite it (content, mode, or
/// both; a file wispctl did not write is adopted and marked).
pub fn peer_change(host: &str, spec: &PeerSpec, live: Option<&LivePeer>) -> Option<Item<Op>> {
    let address = peer_address(host, &spec.name);
    let content = peer::render(spec, &address);
    let file = HostFile::Peer(spec.name.clone()).to_string();
    let change = match live {
        None => Change {
            impact: Default::default(),
            address,
            action: Action::Create,
            reason: None,
            fields: vec![FieldDiff::plain("mode", None, Some(mode_text(FILE_MODE)))],
            content: Some(ContentDiff {
                path: file,
                before: None,
                after: Some(content.clone()),
            }),
            side_effects: vec![format!(
                "the tunnel is not dialled: start it with `pppd call {}`",
                spec.name
            )],
        },
        Some(l) => {
            let fields: Vec<FieldDiff> = mode_field(l.mode).into_iter().collect();
            let differs = l.content != content;
            if !differs && fields.is_empty() {
                return None;
            }
            Change {
                impact: Impact {
                    customer: Some(spec.name.clone()),
                    tunnel_restarts: usize::from(differs),
                    ..Impact::default()
                },
                address,
                action: Action::Update,
                reason: (!peer::is_owned(&l.content)).then(|| {
                    "adopts a file wispctl did not write; its first line will mark it as managed"
                        .to_string()
                }),
                fields,
                content: differs.then(|| ContentDiff {
                    path: file,
                    before: Some(peer::masked(&l.content)),
                    after: Some(content.clone()),
                }),
                side_effects: if differs {
                    vec![format!(
                        "a running tunnel keeps its old options until restarted (`poff {0}; pon {0}`); wispctl does not restart tunnels",
                        spec.name
                    )]
                } else {
                    vec![]
                },
            }
        }
    };
    Some(Item {
        change,
        collection: "peer",
        op: Op::WritePeer {
            name: spec.name.clone(),
            content,
        },
    })
}

/// The `mode` field of a file whose mode is not 0600, if it is not.
pub fn mode_field(live_mode: u32) -> Option<FieldDiff> {
    (live_mode != FILE_MODE).then(|| {
        FieldDiff::plain(
            "mode",
            Some(mode_text(live_mode)),
            Some(mode_text(FILE_MODE)),
        )
    })
}

fn mode_text(mode: u32) -> String {
    format!("{mode:04o}")
}

/// Peer files wispctl wrote (marked) that the YAML no longer names, by name. One pass over
/// each side: hosts carry hundreds of peers.
pub fn undeclared_owned_peers<'a>(
    desired: &[PeerSpec],
    live: &'a BTreeMap<String, LivePeer>,
) -> Vec<(&'a str, &'a LivePeer)> {
    let declared: HashSet<&str> = desired.iter().map(|p| p.name.as_str()).collect();
    live.iter()
        .filter(|(name, l)| peer::is_owned(&l.content) && !declared.contains(name.as_str()))
        .map(|(name, l)| (name.as_str(), l))
        .collect()
}

/// What happens to owned objects the YAML no longer names: with `prune: owned` they are
/// deleted (returned); otherwise they are kept and only counted for the note.
pub fn prune_or_keep<T>(prune: Prune, undeclared: Vec<T>) -> (Vec<T>, usize) {
    match prune {
        Prune::Owned => (undeclared, 0),
        Prune::None => {
            let kept = undeclared.len();
            (Vec::new(), kept)
        }
    }
}

/// Deletes an owned peer file.
pub fn peer_delete(host: &str, name: &str, live: &LivePeer) -> Item<Op> {
    Item {
        change: Change {
            impact: Default::default(),
            address: peer_address(host, name),
            action: Action::Delete,
            reason: Some(PRUNE_REASON.into()),
            fields: Vec::new(),
            content: Some(ContentDiff {
                path: HostFile::Peer(name.to_string()).to_string(),
                before: Some(peer::masked(&live.content)),
                after: None,
            }),
            side_effects: vec![format!("a running tunnel {name} is not stopped")],
        },
        collection: "peer",
        op: Op::DeletePeer {
            name: name.to_string(),
        },
    }
}

/// The (client, server) pairs the YAML names.
pub fn declared_pairs(chap: &[ChapEntry]) -> HashSet<(&str, &str)> {
    chap.iter()
        .map(|e| (e.client.as_str(), e.server.as_str()))
        .collect()
}

/// Duplicate entries: a note for each pair that is someone else's; the host refused for the
/// first pair wispctl manages, since it cannot tell which line pppd should use.
pub fn duplicate_notes(
    file: &ChapFile,
    pairs: &Pairs,
    declared: &HashSet<(&str, &str)>,
) -> Result<Vec<String>, PppdError> {
    let mut notes = Vec::new();
    for dup in chap::duplicates(pairs) {
        // wispctl manages the pair when the YAML names it or one of its lines is in the block.
        let managed = declared.contains(&(dup.client.as_str(), dup.server.as_str()))
            || dup.lines.iter().any(|&line| file.in_block(line - 1));
        if managed {
            return Err(PppdError::DuplicateEntries(dup));
        }
        notes.push(format!("{dup} (not managed by wispctl; left alone)"));
    }
    Ok(notes)
}

/// The change one desired entry needs, if any. `lines` are the live lines of its pair (one,
/// once duplicates are refused): none creates it at the end of the managed block; otherwise
/// its first line is rewritten where it stands, adopting it when it is outside the block.
pub fn chap_change(
    host: &str,
    desired: &ChapEntry,
    file: &ChapFile,
    lines: Option<&[usize]>,
) -> Result<Option<Item<Op>>, PppdError> {
    let address = chap_address(host, &desired.client, &desired.server);
    let Some(&line) = lines.and_then(|l| l.first()) else {
        return Ok(Some(Item {
            change: Change {
                impact: Default::default(),
                address,
                action: Action::Create,
                reason: None,
                fields: vec![
                    FieldDiff::sensitive("secret"),
                    FieldDiff::plain("addresses", None, Some(desired.addresses.join(" "))),
                ],
                content: None,
                side_effects: vec![CHAP_TAKES_EFFECT.into()],
            },
            collection: "chap",
            op: Op::Chap(ChapEdit::Add {
                entry: desired.clone(),
            }),
        }));
    };
    let held = &file.lines[line];
    if held.opaque {
        return Err(PppdError::EntryNotText {
            line: line + 1,
            address,
        });
    }
    let live = held.entry.as_ref().expect("pairs hold entries");
    let fields = chap_fields(live, desired, &file.text(line));
    if fields.is_empty() {
        return Ok(None);
    }
    Ok(Some(Item {
        change: Change {
            impact: Default::default(),
            address,
            action: Action::Update,
            reason: (!file.in_block(line)).then(|| {
                format!(
                    "adopts an entry outside the managed block (line {}); it is rewritten where it stands",
                    line + 1
                )
            }),
            fields,
            content: None,
            side_effects: vec![CHAP_TAKES_EFFECT.into()],
        },
        collection: "chap",
        op: Op::Chap(ChapEdit::Replace {
            line,
            entry: desired.clone(),
        }),
    }))
}

/// What differs between a live entry and the desired one: the secret (never its value), the
/// addresses, or, when both match, only the way the line is written (`live_text`, without its
/// terminator) against wispctl's every-field-quoted form.
pub fn chap_fields(live: &LiveEntry, desired: &ChapEntry, live_text: &str) -> Vec<FieldDiff> {
    let mut fields = Vec::new();
    let unresolved = desired.secret.is_unresolved() || live.secret.is_unresolved();
    if !unresolved && live.secret != desired.secret {
        fields.push(FieldDiff::sensitive("secret"));
    }
    if live.addresses != desired.addresses {
        fields.push(FieldDiff::plain(
            "addresses",
            Some(shown_addresses(&live.addresses)),
            Some(desired.addresses.join(" ")),
        ));
    }
    if !unresolved && fields.is_empty() && live_text != chap::render_entry(desired) {
        fields.push(FieldDiff::plain(
            "quoting",
            Some("as written by hand".into()),
            Some("every field quoted".into()),
        ));
    }
    if unresolved && !fields.is_empty() {
        fields.insert(0, FieldDiff::not_compared("secret"));
    }
    fields
}

/// Live addresses as a plan shows them. A hand-written line may be split where its writer did
/// not mean it to be (a secret with a space, unquoted): words that do not look like addresses
/// may be part of a secret and are never shown.
pub fn shown_addresses(addresses: &[String]) -> String {
    let plain = addresses.iter().all(|a| {
        a.chars()
            .all(|c| c.is_ascii_alphanumeric() || ".*/:!-_".contains(c))
    });
    if plain {
        addresses.join(" ")
    } else {
        "(not shown)".into()
    }
}

/// Entries inside the managed block whose pair the YAML no longer names, as (client, server,
/// line). Entries outside the block are never wispctl's to delete.
pub fn undeclared_owned_entries<'a>(
    file: &ChapFile,
    pairs: &'a Pairs,
    declared: &HashSet<(&str, &str)>,
) -> Vec<(&'a str, &'a str, usize)> {
    pairs
        .iter()
        .filter(|((client, server), lines)| {
            file.in_block(lines[0]) && !declared.contains(&(client.as_str(), server.as_str()))
        })
        .map(|((client, server), lines)| (client.as_str(), server.as_str(), lines[0]))
        .collect()
}

/// Deletes an owned entry (the line at index `line`).
pub fn chap_delete(host: &str, client: &str, server: &str, line: usize) -> Item<Op> {
    Item {
        change: Change {
            impact: Default::default(),
            address: chap_address(host, client, server),
            action: Action::Delete,
            reason: Some(PRUNE_REASON.into()),
            fields: vec![FieldDiff::sensitive("secret")],
            content: None,
            side_effects: vec![],
        },
        collection: "chap",
        op: Op::Chap(ChapEdit::Remove { line }),
    }
}

/// Sets chap-secrets to 0600 when it exists with another mode and the YAML declares entries
/// (a host where wispctl manages no entry keeps its file as the host has it).
pub fn chap_mode_change(
    host: &str,
    live_mode: Option<u32>,
    declares_entries: bool,
) -> Option<Item<Op>> {
    let field = mode_field(live_mode?).filter(|_| declares_entries)?;
    Some(Item {
        change: Change {
            impact: Default::default(),
            address: chap_file_address(host),
            action: Action::Update,
            reason: Some("chap-secrets holds secrets: only root may read it".into()),
            fields: vec![field],
            content: None,
            side_effects: vec![],
        },
        collection: "file",
        op: Op::ChapMode,
    })
}

/// The note about owned objects kept because prune is off.
pub fn kept_note(kept: usize) -> Option<String> {
    (kept > 0).then(|| {
        format!(
            "{kept} object(s) wispctl wrote are no longer in the YAML and are kept (prune: none)"
        )
    })
}

/// Keyed hashes of every desired secret, so `apply PLAN` sees a secret changed since the plan.
pub fn secret_hashes(
    host: &str,
    chap: &[ChapEntry],
    key: &HashKey,
) -> BTreeMap<String, SecretHash> {
    chap.iter()
        .map(|e| {
            (
                format!("{}.secret", chap_address(host, &e.client, &e.server)),
                SecretHash::of(key, &e.secret),
            )
        })
        .collect()
}

/// How many objects the YAML declares per collection, for the engine's empty-list guard. The
/// file itself always counts one: fixing its mode is never an empty-list prune.
pub fn desired_counts(desired: &PppdDesired) -> BTreeMap<&'static str, usize> {
    BTreeMap::from([
        ("peer", desired.peers.len()),
        ("chap", desired.chap.len()),
        ("file", 1),
    ])
}

#[cfg(test)]
mod tests;
