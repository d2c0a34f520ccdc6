//! One read of a host's pppd files per run, and the fingerprint of every object in it.
//!
//! Owns what a host looks like as read ([`HostLive`]) and what counts as the same object at
//! apply time (the fingerprints a saved plan is checked against). Writes nothing; decides
//! nothing about changes (that is [`super::diff`]).

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

use super::chap::{ChapError, ChapFile};
use super::client::{HostFile, HostFiles};
use super::spec::PppdDesired;
use super::{PppdError, chap_address, chap_file_address, leftover_address, peer, peer_address};
use crate::secret::HashKey;

/// A host's pppd files as read.
///
/// No `Debug`: peer files written by hand and chap-secrets hold secrets.
pub struct HostLive {
    /// The folder that stands for the host's `/`.
    pub root: PathBuf,
    /// Peer files, by name.
    pub peers: BTreeMap<String, LivePeer>,
    /// Peer names that are symbolic links (never written through).
    pub symlinks: BTreeSet<String>,
    /// chap-secrets, when the file exists.
    pub chap: Option<LiveChap>,
    /// Temporary files interrupted writes left behind (never read).
    pub leftovers: Vec<HostFile>,
}

/// A peer file as read.
pub struct LivePeer {
    /// Its text (invalid UTF-8 replaced).
    pub content: String,
    /// Its permission bits.
    pub mode: u32,
}

/// chap-secrets as read.
pub struct LiveChap {
    /// The exact bytes, to check at apply time that nobody edited the file since.
    pub bytes: Vec<u8>,
    /// The file, parsed.
    pub file: ChapFile,
    /// Its permission bits.
    pub mode: u32,
}

impl LiveChap {
    /// Parses chap-secrets as read.
    pub fn parse(bytes: Vec<u8>, mode: u32) -> Result<Self, ChapError> {
        let file = ChapFile::parse(&bytes)?;
        Ok(LiveChap { bytes, file, mode })
    }
}

/// What a missing chap-secrets reads as: no lines, no block.
static NO_CHAP: ChapFile = ChapFile {
    lines: Vec::new(),
    block: None,
};

impl HostLive {
    /// Reads a host's peer files and chap-secrets once.
    pub fn read(files: &HostFiles) -> Result<Self, PppdError> {
        let listing = files.list_peers()?;
        let mut peers = BTreeMap::new();
        for name in listing.files {
            // Gone since the listing: as good as never there.
            if let Some((content, mode)) = files.read_text(&HostFile::Peer(name.clone()))? {
                peers.insert(name, LivePeer { content, mode });
            }
        }
        if files.is_symlink(&HostFile::ChapSecrets) {
            return Err(PppdError::SymlinkedChapSecrets);
        }
        let chap = match files.read(&HostFile::ChapSecrets)? {
            None => None,
            Some((bytes, mode)) => Some(LiveChap::parse(bytes, mode)?),
        };
        Ok(HostLive {
            root: files.root().to_path_buf(),
            peers,
            symlinks: listing.symlinks,
            chap,
            leftovers: files.list_leftovers()?,
        })
    }

    /// chap-secrets as parsed; an empty file when there is none.
    pub fn chap_file(&self) -> &ChapFile {
        self.chap.as_ref().map_or(&NO_CHAP, |c| &c.file)
    }
}

/// The fingerprint of every object a plan of this host may change: each desired object
/// (`absent` when missing), each owned object (a prune candidate) and chap-secrets' mode.
/// Keyed hashes, so a saved plan holds no file content.
pub fn fingerprints(
    host: &str,
    desired: &PppdDesired,
    live: &HostLive,
    key: &HashKey,
) -> BTreeMap<String, String> {
    let mut fp = BTreeMap::new();
    let absent = || "absent".to_string();
    for p in &desired.peers {
        let v = live
            .peers
            .get(&p.name)
            .map_or_else(absent, |l| peer_fingerprint(key, l));
        fp.insert(peer_address(host, &p.name), v);
    }
    for (name, l) in &live.peers {
        if peer::is_owned(&l.content) {
            fp.entry(peer_address(host, name))
                .or_insert_with(|| peer_fingerprint(key, l));
        }
    }
    let file = live.chap_file();
    let pairs = file.pairs();
    for e in &desired.chap {
        let v = pairs
            .get(&(e.client.clone(), e.server.clone()))
            .map_or_else(absent, |lines| entry_fingerprint(key, file, lines));
        fp.insert(chap_address(host, &e.client, &e.server), v);
    }
    for ((client, server), lines) in &pairs {
        if lines.iter().any(|&i| file.in_block(i)) {
            fp.entry(chap_address(host, client, server))
                .or_insert_with(|| entry_fingerprint(key, file, lines));
        }
    }
    if let Some(c) = &live.chap {
        fp.insert(chap_file_address(host), format!("mode {:o}", c.mode));
    }
    for f in &live.leftovers {
        fp.insert(leftover_address(host, f), "present".into());
    }
    fp
}

fn peer_fingerprint(key: &HashKey, peer: &LivePeer) -> String {
    key.digest(
        "peer",
        format!("{:o}\0{}", peer.mode, peer.content).as_bytes(),
    )
}

/// The entry's lines, byte for byte: any edit to them, even of quoting, moves it.
fn entry_fingerprint(key: &HashKey, file: &ChapFile, lines: &[usize]) -> String {
    let raw: Vec<&[u8]> = lines
        .iter()
        .map(|&i| file.lines[i].raw.as_slice())
        .collect();
    key.digest("chap", &raw.join(&0u8))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kinds::pppd::chap::{BEGIN, END};
    use crate::kinds::pppd::fixtures::{chap_entry, desired};
    use crate::ownership::Prune;

    #[test]
    fn fingerprints_cover_desired_and_owned_objects_only() {
        let chap = format!("other node-9 pw *\n{BEGIN}\n\"old\" \"node-7\" \"pw\" *\n{END}\n");
        let live = HostLive {
            root: PathBuf::new(),
            peers: BTreeMap::from([
                (
                    "mine".to_string(),
                    LivePeer {
                        content: format!("{}: x\n", peer::MARKER),
                        mode: 0o600,
                    },
                ),
                (
                    "theirs".to_string(),
                    LivePeer {
                        content: "noauth\n".into(),
                        mode: 0o644,
                    },
                ),
            ]),
            symlinks: BTreeSet::new(),
            chap: Some(LiveChap::parse(chap.into_bytes(), 0o644).unwrap()),
            leftovers: Vec::new(),
        };
        let key = HashKey::from_bytes([7; 32]);
        let fp = fingerprints(
            "vps",
            &desired(
                Prune::None,
                &["new"],
                vec![chap_entry("admin", "node-2", "s3")],
            ),
            &live,
            &key,
        );
        let keys: Vec<&str> = fp.keys().map(String::as_str).collect();
        assert_eq!(
            keys,
            [
                r#"pppd.vps.chap["admin"@"node-2"]"#,
                r#"pppd.vps.chap["old"@"node-7"]"#,
                r#"pppd.vps.file["/etc/ppp/chap-secrets"]"#,
                r#"pppd.vps.peer["mine"]"#,
                r#"pppd.vps.peer["new"]"#,
            ]
        );
        assert_eq!(fp[r#"pppd.vps.peer["new"]"#], "absent");
        assert_eq!(fp[r#"pppd.vps.chap["admin"@"node-2"]"#], "absent");
        assert_eq!(fp[r#"pppd.vps.file["/etc/ppp/chap-secrets"]"#], "mode 644");
        assert!(!fp.values().any(|v| v.contains("pw")));
    }
}
