//! `inventory.yaml`: the targets (their addresses and how to reach them) and the run-wide guards.
//! Resource files name targets from here; a reference to an undefined target is an error.

use std::collections::BTreeMap;
use std::path::PathBuf;

use schemars::JsonSchema;
use serde::Deserialize;

/// The inventory file as written.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct InventoryFile {
    /// Limits that stop a truncated or mistaken file from wiping a device.
    #[serde(default)]
    pub guards: Guards,
    /// Linux hosts that carry pppd peer files and chap-secrets, by name.
    #[serde(default)]
    pub hosts: BTreeMap<String, HostSpec>,
}

/// Run-wide guards.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Guards {
    /// The most deletes one run may make across all targets (default 10). A plan over the cap
    /// is refused as a whole; raise it here or with `--max-deletes` when the deletes are meant.
    #[serde(default = "default_max_deletes")]
    pub max_deletes: usize,
}

fn default_max_deletes() -> usize {
    10
}

impl Default for Guards {
    fn default() -> Self {
        Guards {
            max_deletes: default_max_deletes(),
        }
    }
}

/// A Linux host.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct HostSpec {
    /// How the host is reached. Only `local` for now: the files are on this machine.
    #[serde(default)]
    pub access: HostAccess,
    /// The folder that stands for `/` on this host (default `/`): `/etc/ppp` is looked for
    /// under it. Relative paths are resolved against the desired-state folder.
    #[serde(default = "default_root")]
    pub root: PathBuf,
    /// Free text for people.
    #[serde(default)]
    pub description: Option<String>,
}

fn default_root() -> PathBuf {
    PathBuf::from("/")
}

/// How a host is reached.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum HostAccess {
    /// Files on the machine wispctl runs on.
    #[default]
    Local,
}
