//! Lab targets that must run while a command runs: each router of the inventory becomes a lab
//! RouterOS server on a loopback port, loaded from `LAB/routers/<name>.json` and, after a
//! command that writes, saved back, so that `plan`, `apply` and `drift` run one after the other
//! see one router.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::{Context as _, bail};
use serde::{Deserialize, Serialize};

use super::airos::{Fleet, FleetFile, FleetOptions};
use super::routeros::{RouterConfig, RouterLab, Secret, Version};
use super::uisp::{UispConfig, UispLab, UispState};
use crate::desired::DesiredState;
use crate::providers::airos::LabFleet;
use crate::providers::uisp::LabEndpoint;

/// A lab router as kept on disk.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RouterFile {
    /// `v6` or `v7`.
    pub version: String,
    /// Whether the API user sees passwords.
    pub password_visible: bool,
    /// API users: (name, password). Lab-only values.
    pub users: Vec<(String, String)>,
    /// Profiles besides `default`.
    pub profiles: Vec<String>,
    /// `/ppp/secret`.
    pub secrets: Vec<SecretRow>,
    /// `/ppp/active`: (name, address).
    pub active: Vec<(String, String)>,
}

/// A lab secret on disk.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct SecretRow {
    /// name
    pub name: String,
    /// password (lab-only value)
    pub password: String,
    /// service
    pub service: String,
    /// profile
    pub profile: String,
    /// local-address
    pub local_address: String,
    /// remote-address
    pub remote_address: String,
    /// routes
    pub routes: String,
    /// limit-bytes-in
    pub limit_bytes_in: u64,
    /// limit-bytes-out
    pub limit_bytes_out: u64,
    /// caller-id
    pub caller_id: String,
    /// disabled
    pub disabled: bool,
    /// comment
    pub comment: String,
}

impl From<&SecretRow> for Secret {
    fn from(r: &SecretRow) -> Secret {
        Secret {
            name: r.name.clone(),
            password: r.password.clone(),
            service: if r.service.is_empty() {
                "any".into()
            } else {
                r.service.clone()
            },
            profile: if r.profile.is_empty() {
                "default".into()
            } else {
                r.profile.clone()
            },
            local_address: r.local_address.clone(),
            remote_address: r.remote_address.clone(),
            routes: r.routes.clone(),
            limit_bytes_in: r.limit_bytes_in,
            limit_bytes_out: r.limit_bytes_out,
            caller_id: r.caller_id.clone(),
            disabled: r.disabled,
            comment: r.comment.clone(),
            ..Secret::default()
        }
    }
}

impl From<&Secret> for SecretRow {
    fn from(s: &Secret) -> SecretRow {
        SecretRow {
            name: s.name.clone(),
            password: s.password.clone(),
            service: s.service.clone(),
            profile: s.profile.clone(),
            local_address: s.local_address.clone(),
            remote_address: s.remote_address.clone(),
            routes: s.routes.clone(),
            limit_bytes_in: s.limit_bytes_in,
            limit_bytes_out: s.limit_bytes_out,
            caller_id: s.caller_id.clone(),
            disabled: s.disabled,
            comment: s.comment.clone(),
        }
    }
}

/// A lab UISP server as kept on disk.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct UispFile {
    /// The NMS API token it accepts (lab-only value).
    pub token: String,
    /// What `GET /nms/connection` answers (lab-only value).
    pub connection_string: String,
    /// Sites and devices.
    pub state: UispState,
}

/// The path of a lab UISP server's file.
pub fn uisp_path(lab: &Path, name: &str) -> PathBuf {
    lab.join("uisp").join(format!("{name}.json"))
}

/// The path of a lab antenna group's file.
pub fn antennas_path(lab: &Path, group: &str) -> PathBuf {
    lab.join("antennas").join(format!("{group}.json"))
}

/// The path of a lab router's file.
pub fn router_path(lab: &Path, name: &str) -> PathBuf {
    lab.join("routers").join(format!("{name}.json"))
}

/// Lab servers running for one command.
#[derive(Default)]
pub struct Runtime {
    lab: Option<PathBuf>,
    routers: BTreeMap<String, RouterLab>,
    uisp: BTreeMap<String, UispLab>,
    fleets: BTreeMap<String, (Fleet, LabFleet)>,
}

impl Runtime {
    /// Starts a lab server for every router of the inventory; nothing without a lab.
    pub async fn start(lab: Option<&Path>, desired: &DesiredState) -> anyhow::Result<Runtime> {
        let Some(lab) = lab else {
            return Ok(Runtime::default());
        };
        let mut routers = BTreeMap::new();
        for name in desired.routers.keys() {
            let path = router_path(lab, name);
            let text = std::fs::read_to_string(&path).with_context(|| {
                format!(
                    "the lab has no router {name} ({}); run `wispctl lab init`",
                    path.display()
                )
            })?;
            let file: RouterFile = serde_json::from_str(&text)
                .with_context(|| format!("lab router file {}", path.display()))?;
            let version = match file.version.as_str() {
                "v6" => Version::V6,
                "v7" => Version::V7,
                other => bail!("lab router {name}: unknown version {other:?}"),
            };
            let config = RouterConfig {
                version,
                password_visible: file.password_visible,
                users: file.users.clone(),
                profiles: file.profiles.clone(),
                ..RouterConfig::default()
            };
            let server = RouterLab::start(config).await?;
            server.set_secrets(file.secrets.iter().map(Secret::from).collect());
            for (n, a) in &file.active {
                server.add_active(n, a);
            }
            routers.insert(name.clone(), server);
        }
        let mut uisp = BTreeMap::new();
        for name in desired.uisp_servers.keys() {
            let path = uisp_path(lab, name);
            let text = std::fs::read_to_string(&path).with_context(|| {
                format!(
                    "the lab has no UISP server {name} ({}); run `wispctl lab init`",
                    path.display()
                )
            })?;
            let file: UispFile = serde_json::from_str(&text)
                .with_context(|| format!("lab UISP file {}", path.display()))?;
            let config = UispConfig {
                tokens: vec![file.token.clone()],
                connection_string: file.connection_string.clone(),
                ..UispConfig::default()
            };
            uisp.insert(name.clone(), UispLab::start(config, file.state).await?);
        }
        let mut fleets = BTreeMap::new();
        for name in desired.airos.keys() {
            let path = antennas_path(lab, name);
            let text = std::fs::read_to_string(&path).with_context(|| {
                format!(
                    "the lab has no antenna group {name} ({}); run `wispctl lab init`",
                    path.display()
                )
            })?;
            let file: FleetFile = serde_json::from_str(&text)
                .with_context(|| format!("lab antenna file {}", path.display()))?;
            let legacy = desired.antenna_groups.get(name).is_some_and(|g| g.legacy);
            let fleet = Fleet::start(
                &file,
                FleetOptions {
                    legacy_only: legacy,
                    ..FleetOptions::default()
                },
            )
            .await
            .with_context(|| format!("lab antenna group {name}"))?;
            let addrs = LabFleet {
                antennas: file
                    .antennas
                    .iter()
                    .filter_map(|a| fleet.addr(&a.host).map(|x| (a.host.clone(), x)))
                    .collect(),
                jump: fleet.jump_addr(),
            };
            fleets.insert(name.clone(), (fleet, addrs));
        }
        Ok(Runtime {
            lab: Some(lab.to_path_buf()),
            routers,
            uisp,
            fleets,
        })
    }

    /// Whether a lab is active.
    pub fn is_lab(&self) -> bool {
        self.lab.is_some()
    }

    /// The loopback address of a lab router.
    pub fn router_addr(&self, name: &str) -> Option<SocketAddr> {
        self.routers.get(name).map(RouterLab::addr)
    }

    /// Every lab router's address.
    pub fn router_addrs(&self) -> BTreeMap<String, SocketAddr> {
        self.routers
            .iter()
            .map(|(n, r)| (n.clone(), r.addr()))
            .collect()
    }

    /// Every lab UISP server's endpoint.
    pub fn uisp_endpoints(&self) -> BTreeMap<String, LabEndpoint> {
        self.uisp
            .iter()
            .map(|(n, u)| {
                (
                    n.clone(),
                    LabEndpoint {
                        api: u.url(),
                        ca_pem: u.ca_pem(),
                    },
                )
            })
            .collect()
    }

    /// Every lab antenna fleet's addresses, by antenna group.
    pub fn antenna_fleets(&self) -> BTreeMap<String, LabFleet> {
        self.fleets
            .iter()
            .map(|(n, (_, a))| (n.clone(), a.clone()))
            .collect()
    }

    /// A running lab antenna fleet, by group.
    pub fn fleet(&self, group: &str) -> Option<&Fleet> {
        self.fleets.get(group).map(|(f, _)| f)
    }

    /// Saves every router's state back to its file (after a command that writes).
    pub fn save(&self) -> anyhow::Result<()> {
        let Some(lab) = &self.lab else {
            return Ok(());
        };
        for (name, server) in &self.routers {
            let path = router_path(lab, name);
            let text = std::fs::read_to_string(&path)?;
            let mut file: RouterFile = serde_json::from_str(&text)?;
            file.secrets = server.secrets().iter().map(SecretRow::from).collect();
            file.active = server
                .active()
                .iter()
                .map(|a| (a.name.clone(), a.address.clone()))
                .collect();
            let bytes = serde_json::to_vec_pretty(&file)?;
            crate::files::write_atomic(&path, &bytes, 0o600)?;
        }
        for (name, server) in &self.uisp {
            let path = uisp_path(lab, name);
            let mut file: UispFile = serde_json::from_str(&std::fs::read_to_string(&path)?)?;
            file.state = server.state();
            let bytes = serde_json::to_vec_pretty(&file)?;
            crate::files::write_atomic(&path, &bytes, 0o600)?;
        }
        for (name, (fleet, _)) in &self.fleets {
            let bytes = serde_json::to_vec_pretty(&fleet.snapshot())?;
            crate::files::write_atomic(&antennas_path(lab, name), &bytes, 0o600)?;
        }
        Ok(())
    }
}
