//! Kind `pppd`: PPTP peer files and chap-secrets entries on a Linux host.
//!
//! Target: a host of `inventory.yaml` `hosts`; resources: `/etc/ppp/peers/NAME` and the
//! entries of `/etc/ppp/chap-secrets`, from `pppd/<host>.yaml`. Observe reads the files under
//! the host's root once per run, diff compares them with the YAML (a pure function), apply
//! writes each changed file atomically with mode 0600 and reads it back to verify. Owns: peer
//! files whose first line is [`peer::MARKER`], chap-secrets entries inside the managed block,
//! and anything the YAML names. Never touches anything else. Does not start or restart
//! tunnels.
//!
//! Parts, by role: [`spec`] (the YAML model and its validation), [`client`] (the host's files:
//! paths, reads, atomic writes, the `/etc/ppp` lock), [`observe`] (one read of a host and its
//! fingerprints), [`diff`] (pure: small functions over plain values), [`apply`] (writes,
//! verifies, one outcome per change) and [`provider`] (the engine's glue over those three).
//! File formats: [`words`] (pppd's option-file word syntax), [`peer`] (peer files), [`chap`]
//! (the chap-secrets editor). `twin` is the lab host.

pub mod apply;
pub mod chap;
pub mod client;
pub mod diff;
#[cfg(test)]
mod fixtures;
pub mod observe;
pub mod peer;
pub mod provider;
pub mod snapshot;
pub mod spec;
#[cfg(feature = "lab")]
pub mod twin;
pub mod words;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use crate::engine::{Context, DynProvider, NoTwin};
use crate::kinds::def::{DesiredState, InventoryNames};
use crate::kinds::def::{KindDef, KindSet};
use crate::names::valid_name;
use crate::plan::{address, quote_key};
use crate::yaml::FileCheck;

use chap::{ChapEdit, ChapError, DuplicateEntries};
use client::HostFile;

/// The pppd kind.
pub struct Kind;

/// Why a host could not be read or planned. Each case is a variant of its own with the data it
/// concerns (which peers, which pair and lines, which line), so callers tell the cases apart
/// by type; the text is what the plan shows.
#[derive(Debug, thiserror::Error)]
pub enum PppdError {
    /// A file or folder could not be read.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file or folder, as found on this machine.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// `/etc/ppp/chap-secrets` is a symbolic link, which an atomic replace would break.
    #[error(
        "/etc/ppp/chap-secrets is a symbolic link: wispctl replaces files atomically and will not replace a link; point the host's root at the real file"
    )]
    SymlinkedChapSecrets,
    /// Peer files the YAML names are symbolic links.
    #[error("peer files that are symbolic links: {} (wispctl will not replace a link)", .peers.join(", "))]
    SymlinkedPeers {
        /// The peer names, in the YAML's order.
        peers: Vec<String>,
    },
    /// A (client, server) pair wispctl manages has more than one live entry.
    #[error("{0}: remove all but one by hand before wispctl manages it")]
    DuplicateEntries(DuplicateEntries),
    /// The live entry of a pair the YAML names sits on a line that is not UTF-8 text.
    #[error(
        "chap-secrets line {line} holds the entry for {address} but is not UTF-8 text: wispctl will not rewrite it; fix the line by hand"
    )]
    EntryNotText {
        /// 1-based line number in chap-secrets.
        line: usize,
        /// The entry's address.
        address: String,
    },
    /// chap-secrets cannot be edited safely (its managed block is broken).
    #[error(transparent)]
    ChapSecrets(#[from] ChapError),
    /// A lab run and no lab host.
    #[error(transparent)]
    NoTwin(#[from] NoTwin),
}

/// Why one write of an apply failed; the text is the outcome's reason in the report.
#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    /// A folder could not be created.
    #[error("cannot create {dir}: {source}")]
    CreateDir {
        /// The folder.
        dir: HostFile,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// `/etc/ppp` could not be opened to lock it.
    #[error("cannot open /etc/ppp: {0}")]
    OpenPppDir(#[source] std::io::Error),
    /// Another wispctl held the host's `/etc/ppp` lock for the whole wait.
    #[error("another wispctl is writing /etc/ppp on this host (its folder lock is held)")]
    Locked {
        /// How long this apply waited.
        waited: std::time::Duration,
    },
    /// Locking `/etc/ppp` failed for another reason than a holder.
    #[error("cannot lock /etc/ppp: {0}")]
    Lock(#[source] std::io::Error),
    /// The file is not what observe read: someone edited it since the plan.
    #[error("{file} changed since it was read; run plan again")]
    Changed {
        /// The file.
        file: HostFile,
    },
    /// Reading the file again, before or after the write, failed.
    #[error(transparent)]
    Read(#[from] PppdError),
    /// The atomic write failed.
    #[error("cannot write {file}: {source}")]
    Write {
        /// The file.
        file: HostFile,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// Removing the file failed.
    #[error("cannot remove {file}: {source}")]
    Remove {
        /// The file.
        file: HostFile,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The file reads back with other content or another mode than written.
    #[error("verification failed: {file} does not read back as written")]
    NotAsWritten {
        /// The file.
        file: HostFile,
    },
    /// A removed file is still there.
    #[error("verification failed: {file} still exists")]
    StillThere {
        /// The file.
        file: HostFile,
    },
}

/// One apply instruction, made by [`diff`] and carried out by [`apply`].
#[derive(Debug)]
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
    /// Remove a temporary file an interrupted write left behind.
    RemoveLeftover {
        /// The file.
        file: client::HostFile,
    },
}

/// The address of a temporary file left behind: `pppd.HOST.leftover["/etc/ppp/.wispctl-tmp-…"]`.
pub fn leftover_address(host: &str, file: &client::HostFile) -> String {
    address(Kind::NAME, host, "leftover", &file.to_string())
}

/// The address of a peer file: `pppd.HOST.peer["NAME"]`.
pub fn peer_address(host: &str, name: &str) -> String {
    address(Kind::NAME, host, "peer", name)
}

/// The address of a chap-secrets entry: `pppd.HOST.chap["CLIENT"@"SERVER"]`.
pub fn chap_address(host: &str, client: &str, server: &str) -> String {
    format!(
        "{}.{host}.chap[{}@{}]",
        Kind::NAME,
        quote_key(client),
        quote_key(server)
    )
}

/// The address of the chap-secrets file itself (its mode).
pub fn chap_file_address(host: &str) -> String {
    address(Kind::NAME, host, "file", &HostFile::ChapSecrets.to_string())
}

impl KindDef for Kind {
    const NAME: &'static str = "pppd";
    const SECTION: &'static str = "hosts";
    const SECTION_DOC: &'static str =
        "Linux hosts that carry pppd peer files and chap-secrets, by name.";
    const TARGET_LABEL: &'static str = "host";
    const TARGET_FIELD: &'static str = "host";

    type TargetSpec = spec::HostSpec;
    type Target = spec::HostSpec;
    type File = spec::PppdFile;
    type Desired = spec::PppdDesired;
    type Checks = ();

    fn validate_target(
        name: &str,
        host: &spec::HostSpec,
        at: &str,
        _inline_ok: bool,
        check: &mut FileCheck<'_>,
    ) -> Option<spec::HostSpec> {
        let before = check.error_count();
        if let Err(why) = valid_name(name) {
            check.error(
                &format!("{at}#key"),
                format!("invalid host name {name:?}: {why}"),
            );
        }
        if host.root.as_os_str().is_empty() {
            check.error(&format!("{at}.root"), "root must not be empty".into());
        }
        (check.error_count() == before).then(|| host.clone())
    }

    fn file_target(file: &spec::PppdFile) -> &str {
        &file.host
    }

    fn validate_file(
        file: spec::PppdFile,
        check: &mut FileCheck<'_>,
        _checks: &mut (),
        _inventory: &InventoryNames,
    ) -> Option<spec::PppdDesired> {
        spec::validate(file, check)
    }

    fn summary(set: &KindSet<Self>) -> String {
        let peers: usize = set.desired.values().map(|p| p.peers.len()).sum();
        let chap: usize = set.desired.values().map(|p| p.chap.len()).sum();
        format!(
            "{} host(s), {peers} peer file(s), {chap} chap-secrets entr(y/ies)",
            set.targets.len()
        )
    }

    fn provider(
        set: &KindSet<Self>,
        desired: &DesiredState,
        ctx: &Context,
    ) -> Arc<dyn DynProvider> {
        crate::engine::provider(provider::PppdProvider::new(
            &set.targets,
            &set.desired,
            &desired.root,
            ctx,
        ))
    }

    #[cfg(feature = "lab")]
    fn twin() -> Option<&'static dyn crate::lab::twin::Twin> {
        Some(&twin::Twin)
    }
}

/// Hosts by name, for the twin and tests.
pub type Hosts = BTreeMap<String, spec::HostSpec>;
