//! Kind `airos`: the UISP connection string of airOS antennas, over SSH.
//!
//! A target is an antenna group (`inventory.yaml` `antenna_groups`, `airos/<group>.yaml`);
//! each antenna is an object `airos.GROUP["HOST"]`. Observe opens one SSH session per antenna,
//! a bounded number at once, and reads both configuration files and the board's identity in
//! one command. An antenna that cannot be read is an object error: reported, exit 1, and
//! never in the way of the others. Apply rolls out in waves: a canary wave that must verify
//! entirely, then the rest, stopped once failures pass `rollout.max_failures`.
//!
//! Parts: [`spec`] (the YAML model and the `antenna_groups` section), [`config`] (files and
//! connection strings, pure), [`commands`] (the fixed command strings), [`antenna`] (one
//! antenna's read, assess and write), [`provider`] (observe, diff, apply in waves) and `twin`
//! (the lab fleet). The SSH transport is shared, below the kinds ([`crate::ssh`]); so is the
//! UISP API ([`crate::uisp_api`]) the connection string and the connected devices come from.

pub mod antenna;
pub mod commands;
pub mod config;
pub mod provider;
pub mod spec;
#[cfg(feature = "lab")]
pub mod twin;

use std::sync::Arc;

use anyhow::{Context as _, bail};

use crate::desired::check::FileCheck;
use crate::desired::{DesiredState, InventoryNames};
use crate::engine::{Context, DynProvider};
use crate::kinds::{KindDef, KindSet};
use crate::ssh::{Endpoint, KnownHosts};
use crate::uisp_api::{self, Server};

/// The name of the default known-hosts file in the state directory.
pub const KNOWN_HOSTS_FILE: &str = "airos-known-hosts";

/// The airos kind.
pub struct Kind;

/// Why an antenna group could not be read or planned.
#[derive(Debug, thiserror::Error)]
pub enum AirosError {
    /// The group cannot be worked on (its connection string cannot be had, UISP cannot say
    /// which antennas are connected).
    #[error("{0}")]
    Refused(String),
}

impl KindDef for Kind {
    const NAME: &'static str = "airos";
    const SECTION: &'static str = "antenna_groups";
    const SECTION_DOC: &'static str = "airOS antennas reached over SSH, by group: how a group's antennas are logged in to. Which antennas belong to a group, and what they must carry, is in `airos/<group>.yaml`.";
    const TARGET_LABEL: &'static str = "antenna group";
    const TARGET_FIELD: &'static str = "group";

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

    fn provider(set: &KindSet<Self>, desired: &DesiredState, ctx: &Context) -> Arc<dyn DynProvider> {
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
    ) -> Option<Result<String, anyhow::Error>> {
        let set = desired.kind::<Kind>();
        let group = set.targets.get(target)?;
        Some((|| {
            let antenna = set
                .desired
                .get(target)
                .and_then(|a| a.antennas.iter().find(|a| a.host == host));
            let endpoint = match (antenna, &group.jump) {
                (Some(a), _) => Endpoint::new(host, a.port.unwrap_or(group.port)),
                (None, Some(j)) if j.host == host => Endpoint::new(host, j.port),
                _ => bail!("{host} is neither an antenna of group {target} nor its jump host"),
            };
            let stand_in = ctx.route::<spec::GroupEndpoints>(Self::SECTION, target)?;
            let path = provider::known_hosts_path(
                group.known_hosts.as_deref(),
                stand_in.as_ref(),
                &ctx.state_dir,
            );
            let known = KnownHosts::load(&path)
                .with_context(|| format!("cannot read known-hosts file {}", path.display()))?;
            let before = known.get(&endpoint);
            known
                .accept(&endpoint, fingerprint)
                .with_context(|| format!("cannot pin the key of {endpoint}"))?;
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
        })())
    }

    #[cfg(feature = "lab")]
    fn twin() -> Option<&'static dyn crate::lab::Twin> {
        Some(&twin::Twin)
    }
}
