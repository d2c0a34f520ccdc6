//! Kind `airos`: the UISP connection string of airOS antennas, over SSH.
//!
//! A target is an antenna group (`inventory.yaml` `antenna_groups`, `airos/<group>.yaml`);
//! each antenna is an object `airos.GROUP["HOST"]`. Observe opens one SSH session per antenna,
//! a bounded number at once, and reads both configuration files, the board's identity, the
//! persisted copy in flash and the running `udapi-bridge` (so that half-done work shows as a
//! change, see [`antenna`]). An antenna that cannot be read is an object error: reported, exit 1, and
//! never in the way of the others. Apply rolls out in waves: a canary wave that must verify
//! entirely, then the rest, stopped once failures pass `rollout.max_failures`.
//!
//! Every change is an update of an antenna the YAML lists: this kind never creates or deletes
//! anything. An antenna dropped from the YAML is simply no longer looked at (its connection
//! string stays as it is), so there is nothing to prune and the empty-list guard never fires.
//!
//! Parts, by role: [`spec`] (the YAML model and the `antenna_groups` section), [`config`]
//! (files and connection strings, pure), [`commands`] (the fixed command strings),
//! [`antenna`] (one antenna's read, assess and write), [`login`] (how a group's antennas are
//! logged in to: SSH targets, the jump host, known hosts), [`remembered`] (the credential that
//! worked, kept by apply), [`observe`], [`diff`] (pure), [`apply`] (the waves), [`provider`]
//! (the engine's entry, gluing the three) and `twin` (the lab fleet). The SSH transport is
//! shared, below the kinds ([`crate::ssh`]); so is the UISP API ([`crate::uisp_api`]) the
//! connection string and the connected devices come from.

pub mod antenna;
pub mod apply;
pub mod commands;
pub mod config;
pub mod diff;
pub mod login;
pub mod observe;
pub mod provider;
pub mod remembered;
pub mod snapshot;
pub mod spec;
#[cfg(feature = "lab")]
pub mod twin;

use std::sync::Arc;

use crate::engine::{Context, DynProvider, NoTwin};
use crate::kinds::def::{DesiredState, InventoryNames};
use crate::kinds::def::{KindDef, KindFailure, KindSet};
use crate::ssh::{Endpoint, KnownHosts, KnownHostsError};
use crate::uisp_api::{self, Server, UispError};
use crate::yaml::FileCheck;

/// The name of the default known-hosts file in the state directory.
pub const KNOWN_HOSTS_FILE: &str = "airos-known-hosts";

/// The airos kind.
pub struct Kind;

/// Why a whole antenna group could not be read or planned. One antenna's failure is never one
/// of these: it is an object error of that antenna (see [`antenna::AntennaError`]).
///
/// No variant holds a password, a key or a connection string: UISP's and the SSH layer's
/// errors never carry them, and [`config::UriError`] holds no text of the string.
#[derive(Debug, thiserror::Error)]
pub enum AirosError {
    /// The file names a UISP server the inventory does not define (validation refuses such a
    /// file, so only a desired state built by hand gets here).
    #[error("UISP server {server} is not in the inventory")]
    UnknownUisp {
        /// The server's name.
        server: String,
    },
    /// No client for the UISP server could be set up (its TLS settings, or a lab without it).
    #[error("{source}")]
    UispSetup {
        /// The server's name.
        server: String,
        /// Why.
        #[source]
        source: UispError,
    },
    /// `connection.secret` was left unresolved: nothing can be compared with it.
    #[error(
        "its connection string (connection.secret) cannot be resolved here: the group is not planned"
    )]
    UnresolvedConnectionString,
    /// `connection.uisp`: the connection string could not be read from UISP.
    #[error("cannot read the connection string of UISP {server}: {source}")]
    ReadConnectionString {
        /// The server's name.
        server: String,
        /// Why.
        #[source]
        source: UispError,
    },
    /// `connection.uisp`: UISP gave a connection string wispctl will not write to devices.
    #[error("UISP {server} gave a connection string wispctl will not write: {source}")]
    UnwritableConnectionString {
        /// The server's name.
        server: String,
        /// What is wrong with it (never its text).
        #[source]
        source: config::UriError,
    },
    /// `connected_in`: UISP cannot say which antennas are connected. Planning without it would
    /// show every device-specific key as drift, so the group is not planned.
    #[error(
        "cannot ask UISP {server} which antennas are connected (without it, every device-specific key would look like drift): {source}"
    )]
    ConnectedDevices {
        /// The server's name.
        server: String,
        /// Why.
        #[source]
        source: UispError,
    },
    /// The lab is in force and has no twin of this group: a lab never reaches a real address.
    #[error(transparent)]
    NoTwin(#[from] NoTwin),
    /// The lab's twin of this group has no jump host, and the group has one.
    #[error("the lab has no twin of this group's jump host")]
    NoJumpTwin {
        /// The group.
        group: String,
    },
    /// The group's known-hosts file cannot be read.
    #[error("{source}")]
    KnownHosts {
        /// The group.
        group: String,
        /// Why (names the file).
        #[source]
        source: KnownHostsError,
    },
    /// `accept-host-key`: the host is neither an antenna of the group nor its jump host.
    #[error("{host} is neither an antenna of group {group} nor its jump host")]
    NotInGroup {
        /// The host given.
        host: String,
        /// The group.
        group: String,
    },
    /// `accept-host-key`: the key could not be pinned.
    #[error("cannot pin the key of {endpoint}: {source}")]
    PinKey {
        /// `HOST:PORT`.
        endpoint: String,
        /// Why.
        #[source]
        source: KnownHostsError,
    },
}

impl KindDef for Kind {
    const NAME: &'static str = "airos";
    const SECTION: &'static str = "antenna_groups";
    const SECTION_DOC: &'static str = "airOS antennas reached over SSH, by group: how a group's antennas are logged in to. Which antennas belong to a group, and what they must carry, is in `airos/<group>.yaml`.";
    const TARGET_LABEL: &'static str = "antenna group";
    const TARGET_FIELD: &'static str = "group";
    const USES_SECTIONS: &'static [&'static str] = &[uisp_api::SECTION];
    // A group is a fleet of old antennas, each an SSH session: read hourly.
    const RECONCILE_INTERVAL: std::time::Duration = std::time::Duration::from_secs(3600);

    type TargetSpec = spec::AntennaGroupSpec;
    type Target = spec::AntennaGroup;
    type File = spec::AirosFile;
    type Desired = spec::AirosDesired;
    type Checks = ();

    fn validate_target(
        name: &str,
        g: &spec::AntennaGroupSpec,
        at: &str,
        inline_ok: bool,
        check: &mut FileCheck<'_>,
    ) -> Option<spec::AntennaGroup> {
        spec::validate_group(name, g, at, inline_ok, check)
    }

    fn file_target(file: &spec::AirosFile) -> &str {
        &file.group
    }

    fn validate_file(
        file: spec::AirosFile,
        check: &mut FileCheck<'_>,
        _checks: &mut (),
        inventory: &InventoryNames,
    ) -> Option<spec::AirosDesired> {
        spec::validate(file, check, inventory.get(uisp_api::SECTION))
    }

    fn summary(set: &KindSet<Self>) -> String {
        let antennas: usize = set.desired.values().map(|a| a.antennas.len()).sum();
        format!("{antennas} antenna(s) in {} group(s)", set.desired.len())
    }

    fn provider(
        set: &KindSet<Self>,
        desired: &DesiredState,
        ctx: &Context,
    ) -> Arc<dyn DynProvider> {
        let uisp = desired
            .section::<Server>(uisp_api::SECTION)
            .cloned()
            .unwrap_or_default();
        crate::engine::provider(provider::AirosProvider::new(
            &set.targets,
            &set.desired,
            uisp,
            ctx,
        ))
    }

    /// Pins the key of an antenna of the group (or of the group's jump host) in the
    /// known-hosts file the group uses, replacing the old entry.
    fn accept_host_key(
        desired: &DesiredState,
        target: &str,
        host: &str,
        fingerprint: &str,
        ctx: &Context,
    ) -> Option<Result<String, KindFailure>> {
        let set = desired.kind::<Kind>();
        let group = set.targets.get(target)?;
        Some(
            (|| -> Result<String, AirosError> {
                let antenna = set
                    .desired
                    .get(target)
                    .and_then(|a| a.antennas.iter().find(|a| a.host == host));
                let endpoint = match (antenna, &group.jump) {
                    (Some(a), _) => Endpoint::new(host, a.port.unwrap_or(group.port)),
                    (None, Some(j)) if j.host == host => Endpoint::new(host, j.port),
                    _ => {
                        return Err(AirosError::NotInGroup {
                            host: host.to_string(),
                            group: target.to_string(),
                        });
                    }
                };
                let stand_in = ctx.route::<spec::GroupEndpoints>(Self::SECTION, target)?;
                let path = login::known_hosts_path(
                    group.known_hosts.as_deref(),
                    stand_in.as_ref(),
                    &ctx.state_dir,
                );
                let known = KnownHosts::load(&path).map_err(|source| AirosError::KnownHosts {
                    group: target.to_string(),
                    source,
                })?;
                let before = known.get(&endpoint);
                known
                    .accept(&endpoint, fingerprint)
                    .map_err(|source| AirosError::PinKey {
                        endpoint: endpoint.to_string(),
                        source,
                    })?;
                let now = known.get(&endpoint).unwrap_or_default();
                Ok(match before {
                    Some(b) if b == now => {
                        format!("{endpoint}: {now} was already pinned in {}", path.display())
                    }
                    Some(b) => format!(
                        "{endpoint}: pinned {now} in {} (replaces {b})",
                        path.display()
                    ),
                    None => format!("{endpoint}: pinned {now} in {}", path.display()),
                })
            })()
            .map_err(Into::into),
        )
    }

    #[cfg(feature = "lab")]
    fn twin() -> Option<&'static dyn crate::lab::twin::Twin> {
        Some(&twin::Twin)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::error::Error as _;

    #[test]
    fn group_errors_keep_their_messages_and_their_source() {
        let e = AirosError::ReadConnectionString {
            server: "main".into(),
            source: UispError::Setup("no route to the server".into()),
        };
        assert_eq!(
            e.to_string(),
            "cannot read the connection string of UISP main: no route to the server"
        );
        assert!(e.source().is_some());
        let e = AirosError::UnwritableConnectionString {
            server: "main".into(),
            source: config::UriError::KeyLength { len: 12 },
        };
        assert_eq!(
            e.to_string(),
            "UISP main gave a connection string wispctl will not write: the connection string's key is 12 characters long, expected 48"
        );
        let e = AirosError::ConnectedDevices {
            server: "main".into(),
            source: UispError::Setup("refused".into()),
        };
        assert!(e.to_string().starts_with(
            "cannot ask UISP main which antennas are connected (without it, every device-specific key would look like drift): "
        ));
        let e = AirosError::UnknownUisp {
            server: "other".into(),
        };
        assert_eq!(e.to_string(), "UISP server other is not in the inventory");
        let e = AirosError::from(NoTwin {
            section: "antenna_groups".into(),
            name: "clientes".into(),
        });
        assert_eq!(
            e.to_string(),
            "the lab has no twin of antenna_groups.clientes; a lab never reaches a real address"
        );
    }
}
