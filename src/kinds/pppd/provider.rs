//! The pppd provider: observe, diff and apply over one host's `/etc/ppp`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::chap::{self, ChapEdit, ChapFile};
use super::peer;

use super::PppdError;
use super::spec::{ChapEntry, HostSpec, PppdDesired};
use crate::engine::{Context, NoTwin};
use crate::desired::Prune;
use crate::names::valid_name;
use crate::engine::{Item, Observation, Planned, Provider};
use crate::files::{mode_of, remove_durable, write_atomic};
use crate::plan::report::Outcome;
use crate::plan::{Action, Change, ContentDiff, FieldDiff, address, quote_key};
use crate::secret::{HashKey, SecretHash};

const PEERS_DIR: &str = "etc/ppp/peers";
const CHAP_FILE: &str = "etc/ppp/chap-secrets";
const MODE: u32 = 0o600;

/// The pppd provider for every host with a pppd file.
pub struct PppdProvider {
    hosts: BTreeMap<String, (PppdDesired, Result<PathBuf, NoTwin>)>,
    key: Arc<HashKey>,
}

impl PppdProvider {
    /// Builds the provider. A host's root is its inventory `root` (relative to the
    /// desired-state folder), unless the context reaches it elsewhere (a lab twin's folder).
    pub fn new(
        hosts: &BTreeMap<String, HostSpec>,
        desired: &BTreeMap<String, PppdDesired>,
        desired_root: &Path,
        ctx: &Context,
    ) -> Self {
        let hosts = desired
            .iter()
            .map(|(name, d)| {
                let root = ctx
                    .route::<PathBuf>(<super::Kind as crate::kinds::KindDef>::SECTION, name)
                    .map(|twin| {
                        twin.unwrap_or_else(|| {
                            let r = &hosts[name].root;
                            if r.is_absolute() {
                                r.clone()
                            } else {
                                desired_root.join(r)
                            }
                        })
                    });
                (name.clone(), (d.clone(), root))
            })
            .collect();
        PppdProvider {
            hosts,
            key: ctx.key.clone(),
        }
    }
}

/// A host's pppd files as read.
pub struct HostLive {
    root: PathBuf,
    peers: BTreeMap<String, LivePeer>,
    /// Peer names that are symbolic links (never written through).
    symlinks: std::collections::BTreeSet<String>,
    chap: Option<LiveChap>,
}

struct LivePeer {
    content: String,
    mode: u32,
}

struct LiveChap {
    bytes: Vec<u8>,
    file: ChapFile,
    mode: u32,
}

/// One apply instruction.
pub enum Op {
    /// Write a peer file (create, update, or fix its mode).
    WritePeer {
        /// Peer name.
        name: String,
        /// Full content.
        content: String,
    },
    /// Remove an owned peer file.
    DeletePeer {
        /// Peer name.
        name: String,
    },
    /// Edit chap-secrets (all edits of a run go into one atomic write).
    Chap(ChapEdit),
    /// Set chap-secrets' mode to 0600.
    ChapMode,
}

fn chap_address(host: &str, client: &str, server: &str) -> String {
    format!(
        "pppd.{host}.chap[{}@{}]",
        quote_key(client),
        quote_key(server)
    )
}

fn chap_file_address(host: &str) -> String {
    address("pppd", host, "file", "/etc/ppp/chap-secrets")
}

fn io_err(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> PppdError {
    let what = what.into();
    move |source| PppdError::Io { what, source }
}

fn read_optional(path: &Path) -> Result<Option<(String, u32)>, PppdError> {
    match std::fs::read(path) {
        Ok(bytes) => {
            let meta = std::fs::metadata(path).map_err(io_err(path.display().to_string()))?;
            Ok(Some((
                String::from_utf8_lossy(&bytes).into_owned(),
                mode_of(&meta),
            )))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(io_err(path.display().to_string())(e)),
    }
}

fn read_bytes_optional(path: &Path) -> Result<Option<(Vec<u8>, u32)>, PppdError> {
    match std::fs::read(path) {
        Ok(bytes) => {
            let meta = std::fs::metadata(path).map_err(io_err(path.display().to_string()))?;
            Ok(Some((bytes, mode_of(&meta))))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(io_err(path.display().to_string())(e)),
    }
}

fn is_symlink(path: &Path) -> bool {
    std::fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_symlink())
}

/// Masks the argument of options that carry a secret, in peer file text shown in a plan (a
/// hand-written file may hold `password ...`; wispctl never writes one).
fn mask_peer_secrets(content: &str) -> String {
    content
        .split_inclusive('\n')
        .map(|line| {
            let t = line.trim_start();
            let secret = t
                .strip_prefix("password")
                .is_some_and(|rest| rest.is_empty() || rest.starts_with([' ', '\t', '\n', '\r']));
            if secret {
                let nl = if line.ends_with('\n') { "\n" } else { "" };
                format!("password (sensitive){nl}")
            } else {
                line.to_string()
            }
        })
        .collect()
}

impl HostLive {
    fn read(root: &Path) -> Result<Self, PppdError> {
        let dir = root.join(PEERS_DIR);
        let mut peers = BTreeMap::new();
        let mut symlinks = std::collections::BTreeSet::new();
        match std::fs::read_dir(&dir) {
            Ok(entries) => {
                for e in entries {
                    let e = e.map_err(io_err(dir.display().to_string()))?;
                    let name = e.file_name().to_string_lossy().into_owned();
                    // Temporary files, hidden files and odd names are never peers of ours.
                    if valid_name(&name).is_err() {
                        continue;
                    }
                    let ft = e
                        .file_type()
                        .map_err(io_err(e.path().display().to_string()))?;
                    if ft.is_symlink() {
                        symlinks.insert(name);
                        continue;
                    }
                    if !ft.is_file() {
                        continue;
                    }
                    if let Some((content, mode)) = read_optional(&e.path())? {
                        peers.insert(name, LivePeer { content, mode });
                    }
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(io_err(dir.display().to_string())(e)),
        }
        let chap_path = root.join(CHAP_FILE);
        if is_symlink(&chap_path) {
            return Err(PppdError::Refused(
                "/etc/ppp/chap-secrets is a symbolic link: wispctl replaces files atomically and will not replace a link; point the host's root at the real file".into(),
            ));
        }
        let chap = match read_bytes_optional(&chap_path)? {
            None => None,
            Some((bytes, mode)) => {
                let file =
                    ChapFile::parse(&bytes).map_err(|e| PppdError::Refused(e.to_string()))?;
                Some(LiveChap { bytes, file, mode })
            }
        };
        Ok(HostLive {
            root: root.to_path_buf(),
            peers,
            symlinks,
            chap,
        })
    }
}

impl Provider for PppdProvider {
    type Observed = HostLive;
    type Op = Op;
    type Error = PppdError;

    fn kind(&self) -> &'static str {
        "pppd"
    }

    fn targets(&self) -> Vec<String> {
        self.hosts.keys().cloned().collect()
    }

    async fn observe(&self, host: &str) -> Result<Observation<HostLive>, PppdError> {
        let (desired, root) = &self.hosts[host];
        let live = HostLive::read(root.as_ref().map_err(|e| PppdError::NoTwin(e.clone()))?)?;
        let key = &self.key;
        let mut fp = BTreeMap::new();
        let absent = || "absent".to_string();
        for p in &desired.peers {
            let v = live.peers.get(&p.name).map_or_else(absent, |l| {
                key.digest("peer", format!("{:o}\0{}", l.mode, l.content).as_bytes())
            });
            fp.insert(address("pppd", host, "peer", &p.name), v);
        }
        for (name, l) in &live.peers {
            if peer::is_owned(&l.content) {
                fp.entry(address("pppd", host, "peer", name))
                    .or_insert_with(|| {
                        key.digest("peer", format!("{:o}\0{}", l.mode, l.content).as_bytes())
                    });
            }
        }
        let pairs = live
            .chap
            .as_ref()
            .map(|c| c.file.pairs())
            .unwrap_or_default();
        let line_fp = |lines: &[usize]| {
            let c = live.chap.as_ref().expect("pairs come from the file");
            let raw: Vec<&[u8]> = lines
                .iter()
                .map(|&i| c.file.lines[i].raw.as_slice())
                .collect();
            key.digest("chap", &raw.join(&0u8))
        };
        for e in &desired.chap {
            let v = pairs
                .get(&(e.client.clone(), e.server.clone()))
                .map_or_else(absent, |l| line_fp(l));
            fp.insert(chap_address(host, &e.client, &e.server), v);
        }
        if let Some(c) = &live.chap {
            for ((client, server), lines) in &pairs {
                if lines.iter().any(|&i| c.file.in_block(i)) {
                    fp.entry(chap_address(host, client, server))
                        .or_insert_with(|| line_fp(lines));
                }
            }
            fp.insert(chap_file_address(host), format!("mode {:o}", c.mode));
        }
        tracing::debug!(host, peers = live.peers.len(), "observed pppd host");
        Ok(Observation {
            state: live,
            fingerprints: fp,
        })
    }

    fn diff(&self, host: &str, obs: &Observation<HostLive>) -> Result<Planned<Op>, PppdError> {
        let (desired, _) = &self.hosts[host];
        diff_host(host, desired, &obs.state, &self.key)
    }

    async fn apply(
        &self,
        host: &str,
        items: Vec<Item<Op>>,
        obs: Observation<HostLive>,
    ) -> Vec<Outcome> {
        apply_host(host, items, obs.state)
    }
}

/// The pure diff of one host.
fn diff_host(
    host: &str,
    desired: &PppdDesired,
    live: &HostLive,
    key: &HashKey,
) -> Result<Planned<Op>, PppdError> {
    let mut items = Vec::new();
    let mut notes = Vec::new();
    let mut kept = 0usize;
    let prune = desired.prune == Prune::Owned;

    let linked: Vec<&str> = desired
        .peers
        .iter()
        .filter(|p| live.symlinks.contains(&p.name))
        .map(|p| p.name.as_str())
        .collect();
    if !linked.is_empty() {
        return Err(PppdError::Refused(format!(
            "peer files that are symbolic links: {} (wispctl will not replace a link)",
            linked.join(", ")
        )));
    }

    for p in &desired.peers {
        let addr = address("pppd", host, "peer", &p.name);
        let content = peer::render(p, &addr);
        let path = format!("/etc/ppp/peers/{}", p.name);
        let restart = format!(
            "a running tunnel keeps its old options until restarted (`poff {0}; pon {0}`); wispctl does not restart tunnels",
            p.name
        );
        match live.peers.get(&p.name) {
            None => items.push(Item {
                change: Change {
                    address: addr,
                    action: Action::Create,
                    reason: None,
                    fields: vec![FieldDiff::plain("mode", None, Some("0600".into()))],
                    content: Some(ContentDiff {
                        path,
                        before: None,
                        after: Some(content.clone()),
                    }),
                    side_effects: vec![format!(
                        "the tunnel is not dialled: start it with `pppd call {}`",
                        p.name
                    )],
                },
                collection: "peer",
                op: Op::WritePeer {
                    name: p.name.clone(),
                    content,
                },
            }),
            Some(l) => {
                let mut fields = Vec::new();
                if l.mode != MODE {
                    fields.push(FieldDiff::plain(
                        "mode",
                        Some(format!("{:04o}", l.mode)),
                        Some("0600".into()),
                    ));
                }
                let differs = l.content != content;
                if differs || !fields.is_empty() {
                    items.push(Item {
                        change: Change {
                            address: addr,
                            action: Action::Update,
                            reason: (!peer::is_owned(&l.content)).then(|| {
                                "adopts a file wispctl did not write; its first line will mark it as managed".to_string()
                            }),
                            fields,
                            content: differs.then(|| ContentDiff {
                                path,
                                before: Some(mask_peer_secrets(&l.content)),
                                after: Some(content.clone()),
                            }),
                            side_effects: if differs { vec![restart] } else { vec![] },
                        },
                        collection: "peer",
                        op: Op::WritePeer {
                            name: p.name.clone(),
                            content,
                        },
                    });
                }
            }
        }
    }
    for (name, l) in &live.peers {
        if !peer::is_owned(&l.content) || desired.peers.iter().any(|p| &p.name == name) {
            continue;
        }
        if !prune {
            kept += 1;
            continue;
        }
        items.push(Item {
            change: Change {
                address: address("pppd", host, "peer", name),
                action: Action::Delete,
                reason: Some("owned by wispctl and no longer in the YAML (prune: owned)".into()),
                fields: Vec::new(),
                content: Some(ContentDiff {
                    path: format!("/etc/ppp/peers/{name}"),
                    before: Some(mask_peer_secrets(&l.content)),
                    after: None,
                }),
                side_effects: vec![format!("a running tunnel {name} is not stopped")],
            },
            collection: "peer",
            op: Op::DeletePeer { name: name.clone() },
        });
    }

    let empty = ChapFile::default();
    let file = live.chap.as_ref().map_or(&empty, |c| &c.file);
    let pairs = file.pairs();
    let desired_pairs: BTreeMap<(String, String), &ChapEntry> = desired
        .chap
        .iter()
        .map(|e| ((e.client.clone(), e.server.clone()), e))
        .collect();
    for ((client, server), lines) in &pairs {
        if lines.len() < 2 {
            continue;
        }
        let shown: Vec<String> = lines.iter().map(|i| (i + 1).to_string()).collect();
        let what = format!(
            "chap-secrets has duplicate entries for {}@{} at lines {}",
            quote_key(client),
            quote_key(server),
            shown.join(", ")
        );
        let ours = desired_pairs.contains_key(&(client.clone(), server.clone()))
            || lines.iter().any(|&i| file.in_block(i));
        if ours {
            return Err(PppdError::Refused(format!(
                "{what}: remove all but one by hand before wispctl manages it"
            )));
        }
        notes.push(format!("{what} (not managed by wispctl; left alone)"));
    }
    let mut secret_hashes = BTreeMap::new();
    for e in &desired.chap {
        let addr = chap_address(host, &e.client, &e.server);
        secret_hashes.insert(format!("{addr}.secret"), SecretHash::of(key, &e.secret));
        let side = "takes effect at the tunnel's next authentication".to_string();
        match pairs.get(&(e.client.clone(), e.server.clone())) {
            None => items.push(Item {
                change: Change {
                    address: addr,
                    action: Action::Create,
                    reason: None,
                    fields: vec![
                        FieldDiff::sensitive("secret"),
                        FieldDiff::plain("addresses", None, Some(e.addresses.join(" "))),
                    ],
                    content: None,
                    side_effects: vec![side],
                },
                collection: "chap",
                op: Op::Chap(ChapEdit::Add { entry: e.clone() }),
            }),
            Some(lines) => {
                let idx = lines[0];
                let line = &file.lines[idx];
                if line.opaque {
                    return Err(PppdError::Refused(format!(
                        "chap-secrets line {} holds the entry for {} but is not UTF-8 text: wispctl will not rewrite it; fix the line by hand",
                        idx + 1,
                        addr
                    )));
                }
                let l = line.entry.as_ref().expect("pairs hold entries");
                let mut fields = Vec::new();
                if l.secret != e.secret {
                    fields.push(FieldDiff::sensitive("secret"));
                }
                if l.addresses != e.addresses {
                    // A hand-written line may be split where its writer did not mean it to be:
                    // never show live words that do not look like addresses.
                    let shown = l.addresses.iter().all(|a| {
                        a.chars()
                            .all(|c| c.is_ascii_alphanumeric() || ".*/:!-_".contains(c))
                    });
                    fields.push(FieldDiff::plain(
                        "addresses",
                        Some(if shown {
                            l.addresses.join(" ")
                        } else {
                            "(not shown)".into()
                        }),
                        Some(e.addresses.join(" ")),
                    ));
                }
                let rendered = chap::render_entry(e);
                if fields.is_empty() && file.text(idx) != rendered {
                    fields.push(FieldDiff::plain(
                        "quoting",
                        Some("as written by hand".into()),
                        Some("every field quoted".into()),
                    ));
                }
                if !fields.is_empty() {
                    items.push(Item {
                        change: Change {
                            address: addr,
                            action: Action::Update,
                            reason: (!file.in_block(idx)).then(|| {
                                format!(
                                    "adopts an entry outside the managed block (line {}); it is rewritten where it stands",
                                    idx + 1
                                )
                            }),
                            fields,
                            content: None,
                            side_effects: vec![side],
                        },
                        collection: "chap",
                        op: Op::Chap(ChapEdit::Replace {
                            line: idx,
                            entry: e.clone(),
                        }),
                    });
                }
            }
        }
    }
    for ((client, server), lines) in &pairs {
        let idx = lines[0];
        if !file.in_block(idx) || desired_pairs.contains_key(&(client.clone(), server.clone())) {
            continue;
        }
        if !prune {
            kept += 1;
            continue;
        }
        items.push(Item {
            change: Change {
                address: chap_address(host, client, server),
                action: Action::Delete,
                reason: Some("owned by wispctl and no longer in the YAML (prune: owned)".into()),
                fields: vec![FieldDiff::sensitive("secret")],
                content: None,
                side_effects: vec![],
            },
            collection: "chap",
            op: Op::Chap(ChapEdit::Remove { line: idx }),
        });
    }
    if let Some(c) = &live.chap
        && c.mode != MODE
        && !desired.chap.is_empty()
    {
        items.push(Item {
            change: Change {
                address: chap_file_address(host),
                action: Action::Update,
                reason: Some("chap-secrets holds secrets: only root may read it".into()),
                fields: vec![FieldDiff::plain(
                    "mode",
                    Some(format!("{:04o}", c.mode)),
                    Some("0600".into()),
                )],
                content: None,
                side_effects: vec![],
            },
            collection: "file",
            op: Op::ChapMode,
        });
    }
    if kept > 0 {
        notes.push(format!(
            "{kept} object(s) wispctl wrote are no longer in the YAML and are kept (prune: none)"
        ));
    }
    let mut desired_counts = BTreeMap::new();
    desired_counts.insert("peer", desired.peers.len());
    desired_counts.insert("chap", desired.chap.len());
    desired_counts.insert("file", 1);
    Ok(Planned {
        items,
        notes,
        secret_hashes,
        desired_counts,
        allow_empty_prune: desired.allow_empty_prune,
        object_errors: BTreeMap::new(),
    })
}

/// Writes one host's changes: each peer file on its own, all chap-secrets edits in one write.
/// Every file is checked against what was observed just before it is replaced, so an edit made
/// by hand since the plan is never overwritten.
fn apply_host(host: &str, items: Vec<Item<Op>>, live: HostLive) -> Vec<Outcome> {
    // Whatever state directory another wispctl uses, two never write one host's /etc/ppp at
    // once: the folder itself is locked while this host is written.
    let _host_lock = match lock_ppp_dir(&live.root) {
        Ok(l) => l,
        Err(why) => {
            return items
                .iter()
                .map(|i| Outcome::failed(&i.change.address, i.change.action, why.clone()))
                .collect();
        }
    };
    let mut outcomes: Vec<Option<Outcome>> = vec![None; items.len()];
    let mut chap_edits = Vec::new();
    let mut chap_idx = Vec::new();
    for (i, item) in items.iter().enumerate() {
        let (addr, action) = (&item.change.address, item.change.action);
        let result = match &item.op {
            Op::WritePeer { name, content } => write_peer(&live, name, content),
            Op::DeletePeer { name } => delete_peer(&live, name),
            Op::Chap(edit) => {
                chap_edits.push(edit.clone());
                chap_idx.push(i);
                continue;
            }
            Op::ChapMode => {
                chap_idx.push(i);
                continue;
            }
        };
        outcomes[i] = Some(match result {
            Ok(()) => Outcome::applied(addr, action),
            Err(why) => Outcome::failed(addr, action, why),
        });
        tracing::info!(host, address = %addr, ok = outcomes[i].as_ref().is_some_and(|o| o.reason.is_none()), "peer file");
    }
    if !chap_idx.is_empty() {
        let result = write_chap(&live, &chap_edits);
        for i in chap_idx {
            let (addr, action) = (&items[i].change.address, items[i].change.action);
            outcomes[i] = Some(match &result {
                Ok(()) => Outcome::applied(addr, action),
                Err(why) => Outcome::failed(addr, action, why.clone()),
            });
        }
        tracing::info!(host, ok = result.is_ok(), "chap-secrets");
    }
    outcomes
        .into_iter()
        .map(|o| o.expect("every item has an outcome"))
        .collect()
}

fn lock_ppp_dir(root: &Path) -> Result<std::fs::File, String> {
    let dir = root.join("etc/ppp");
    std::fs::create_dir_all(&dir).map_err(|e| format!("cannot create /etc/ppp: {e}"))?;
    let f = std::fs::File::open(&dir).map_err(|e| format!("cannot open /etc/ppp: {e}"))?;
    let start = std::time::Instant::now();
    loop {
        match f.try_lock() {
            Ok(()) => return Ok(f),
            Err(std::fs::TryLockError::WouldBlock)
                if start.elapsed() < std::time::Duration::from_secs(10) =>
            {
                std::thread::sleep(std::time::Duration::from_millis(50));
            }
            Err(std::fs::TryLockError::WouldBlock) => {
                return Err(
                    "another wispctl is writing /etc/ppp on this host (its folder lock is held)"
                        .into(),
                );
            }
            Err(std::fs::TryLockError::Error(e)) => {
                return Err(format!("cannot lock /etc/ppp: {e}"));
            }
        }
    }
}

fn write_peer(live: &HostLive, name: &str, content: &str) -> Result<(), String> {
    let dir = live.root.join(PEERS_DIR);
    let path = dir.join(name);
    let now = read_optional(&path).map_err(|e| e.to_string())?;
    let before = live.peers.get(name);
    if now.as_ref().map(|(c, m)| (c.as_str(), *m)) != before.map(|l| (l.content.as_str(), l.mode)) {
        return Err(format!(
            "/etc/ppp/peers/{name} changed since it was read; run plan again"
        ));
    }
    std::fs::create_dir_all(&dir).map_err(|e| format!("cannot create /etc/ppp/peers: {e}"))?;
    write_atomic(&path, content.as_bytes(), MODE)
        .map_err(|e| format!("cannot write /etc/ppp/peers/{name}: {e}"))?;
    match read_optional(&path).map_err(|e| e.to_string())? {
        Some((c, m)) if c == content && m == MODE => Ok(()),
        _ => Err(format!(
            "verification failed: /etc/ppp/peers/{name} does not read back as written"
        )),
    }
}

fn delete_peer(live: &HostLive, name: &str) -> Result<(), String> {
    let path = live.root.join(PEERS_DIR).join(name);
    let now = read_optional(&path).map_err(|e| e.to_string())?;
    let before = live.peers.get(name);
    if now.as_ref().map(|(c, _)| c.as_str()) != before.map(|l| l.content.as_str()) {
        return Err(format!(
            "/etc/ppp/peers/{name} changed since it was read; run plan again"
        ));
    }
    remove_durable(&path).map_err(|e| format!("cannot remove /etc/ppp/peers/{name}: {e}"))?;
    if path.exists() {
        return Err(format!(
            "verification failed: /etc/ppp/peers/{name} still exists"
        ));
    }
    Ok(())
}

fn write_chap(live: &HostLive, edits: &[ChapEdit]) -> Result<(), String> {
    let path = live.root.join(CHAP_FILE);
    let now = read_bytes_optional(&path).map_err(|e| e.to_string())?;
    if now.as_ref().map(|(b, _)| b.as_slice()) != live.chap.as_ref().map(|c| c.bytes.as_slice()) {
        return Err("/etc/ppp/chap-secrets changed since it was read; run plan again".into());
    }
    let empty = ChapFile::default();
    let file = live.chap.as_ref().map_or(&empty, |c| &c.file);
    let text = file.edited(edits);
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|e| format!("cannot create /etc/ppp: {e}"))?;
    }
    write_atomic(&path, &text, MODE)
        .map_err(|e| format!("cannot write /etc/ppp/chap-secrets: {e}"))?;
    match read_bytes_optional(&path).map_err(|e| e.to_string())? {
        Some((t, m)) if t == text && m == MODE => Ok(()),
        _ => Err("verification failed: /etc/ppp/chap-secrets does not read back as written".into()),
    }
}
