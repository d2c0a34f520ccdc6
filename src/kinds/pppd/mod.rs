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
//! Parts: [`spec`] (the YAML model and its validation), [`words`] (pppd's option-file word
//! syntax), [`peer`] (peer files), [`chap`] (the chap-secrets editor), [`provider`] (observe,
//! diff, apply) and `twin` (the lab host).

pub mod chap;
pub mod peer;
pub mod provider;
pub mod spec;
#[cfg(feature = "lab")]
pub mod twin;
pub mod words;

use std::collections::BTreeMap;
use std::sync::Arc;

use crate::desired::check::FileCheck;
use crate::desired::{DesiredState, InventoryNames};
use crate::engine::{Context, DynProvider, NoTwin};
use crate::kinds::{KindDef, KindSet};
use crate::names::valid_name;

/// The pppd kind.
pub struct Kind;

/// Why a host could not be read or planned.
#[derive(Debug, thiserror::Error)]
pub enum PppdError {
    /// A file or folder could not be read.
    #[error("{what}: {source}")]
    Io {
        /// The file or folder.
        what: String,
        /// The cause.
        source: std::io::Error,
    },
    /// The host's files are such that wispctl must not touch them.
    #[error("{0}")]
    Refused(String),
    /// A lab run and no lab host.
    #[error(transparent)]
    NoTwin(#[from] NoTwin),
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

    fn provider(set: &KindSet<Self>, desired: &DesiredState, ctx: &Context) -> Arc<dyn DynProvider> {
        crate::engine::provider(provider::PppdProvider::new(
            &set.targets,
            &set.desired,
            &desired.root,
            ctx,
        ))
    }

    #[cfg(feature = "lab")]
    fn twin() -> Option<&'static dyn crate::lab::Twin> {
        Some(&twin::Twin)
    }
}

/// Hosts by name, for the twin and tests.
pub type Hosts = BTreeMap<String, spec::HostSpec>;
