//! The lab twin of a MikroTik router: the `routeros-api` crate's in-memory router on a
//! loopback port, loaded from `LAB/routers/<name>.json` for one command and, after a command
//! that writes, saved back, so that `plan`, `apply` and `drift` run one after the other see one
//! router.
//!
//! It holds lab-only values (an API password, customers' passwords) and prints none of them.
//! The router itself is the crate's (`routeros_api::server`); this file only keeps it on disk.

use std::collections::BTreeMap;
use std::io;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::bail;
use routeros_api::server::{RouterConfig, RouterLab, Secret, Version};
use serde::{Deserialize, Serialize};

use crate::kinds::def::DesiredState;
use crate::kinds::def::KindDef;
use crate::lab::twin::{LabEndpoints, Running, Starting, read_json, write_file, write_json};

/// The pppoe kind's twin.
pub struct Twin;

/// The path of a lab router's file.
pub fn router_path(lab: &Path, name: &str) -> PathBuf {
    lab.join("routers").join(format!("{name}.json"))
}

/// A lab router as kept on disk. `Debug` leaves out the passwords.
#[derive(Clone, Serialize, Deserialize)]
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

/// A lab secret on disk. `Debug` leaves out the password.
#[derive(Clone, Default, Serialize, Deserialize)]
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

impl std::fmt::Debug for RouterFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let users: Vec<&str> = self.users.iter().map(|(u, _)| u.as_str()).collect();
        f.debug_struct("RouterFile")
            .field("version", &self.version)
            .field("users", &users)
            .field("secrets", &self.secrets)
            .finish_non_exhaustive()
    }
}

impl std::fmt::Debug for SecretRow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SecretRow")
            .field("name", &self.name)
            .field("profile", &self.profile)
            .finish_non_exhaustive()
    }
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

/// The lab's router `balanceador`, as the operator's main router looks before wispctl.
pub fn seed() -> RouterFile {
    let s = |name: &str, password: &str, remote: &str, comment: &str| SecretRow {
        name: name.into(),
        password: password.into(),
        service: "pppoe".into(),
        profile: "10M".into(),
        remote_address: remote.into(),
        comment: comment.into(),
        ..Default::default()
    };
    RouterFile {
        version: "v7".into(),
        password_visible: true,
        users: vec![("wispctl".into(), "lab-router-pw".into())],
        profiles: vec!["10M".into(), "20M".into(), "Morosos".into()],
        secrets: vec![
            // Created by hand: the YAML names it, so it is adopted (new password, new plan).
            s(
                "juan.perez",
                "viejo-juan",
                "10.10.1.45",
                "Tomatlan, Juan Perez",
            ),
            // Behind on payment: the YAML moves it to Morosos (kicks the session).
            s("maria.lopez", "maria-2024", "10.10.1.46", "[wispctl]"),
            // Only the comment changes: never kicks.
            s("luis.torres", "luis-pw", "10.10.1.47", "Centro [wispctl]"),
            // Written by wispctl once, no longer in the YAML: pruned (prune: owned).
            s(
                "pedro.ramirez",
                "pedro-pw",
                "10.10.1.49",
                "Retired [wispctl]",
            ),
            // The shared install secret: not wispctl's, left alone.
            s("clienteprueba", "prueba", "", "shared install secret"),
        ],
        active: vec![
            ("juan.perez".into(), "10.10.1.45".into()),
            ("maria.lopez".into(), "10.10.1.46".into()),
            ("luis.torres".into(), "10.10.1.47".into()),
            ("clienteprueba".into(), "10.10.1.200".into()),
        ],
    }
}

/// Lab-only values of the example pppoe files' secret references.
const SECRETS: &str = "ROUTER_BALANCEADOR_PASSWORD=lab-router-pw\n\
PPPOE_JUAN_PEREZ=juan-2026-nuevo\n\
PPPOE_MARIA_LOPEZ=maria-2024\n\
PPPOE_LUIS_TORRES=luis-pw\n\
PPPOE_ANA_GARCIA=ana-nueva-1\n";

/// Lab routers running for one command.
struct Routers(BTreeMap<String, RouterLab>);

impl Running for Routers {
    fn save(&self, lab: &Path) -> anyhow::Result<()> {
        for (name, server) in &self.0 {
            let path = router_path(lab, name);
            let mut file: RouterFile = read_json(&path, &format!("router {name}"))?;
            file.secrets = server.secrets().iter().map(SecretRow::from).collect();
            file.active = server
                .active()
                .iter()
                .map(|a| (a.name.clone(), a.address.clone()))
                .collect();
            write_json(&path, &file)?;
        }
        Ok(())
    }
}

/// Starts one lab router from its file.
pub async fn start_router(lab: &Path, name: &str) -> anyhow::Result<RouterLab> {
    let file: RouterFile = read_json(&router_path(lab, name), &format!("router {name}"))?;
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
    Ok(server)
}

impl crate::lab::twin::Twin for Twin {
    fn seed(&self, lab: &Path) -> io::Result<()> {
        let router = serde_json::to_string_pretty(&seed()).map_err(io::Error::other)?;
        write_file(&router_path(lab, "balanceador"), &router, 0o600)
    }

    fn secrets(&self) -> &'static str {
        SECRETS
    }

    /// A router for every router of the inventory (an import reads one without a file).
    fn start<'a>(
        &'a self,
        lab: &'a Path,
        desired: &'a DesiredState,
        endpoints: &'a mut LabEndpoints,
    ) -> Starting<'a> {
        Box::pin(async move {
            let mut routers = BTreeMap::new();
            for name in desired.kind::<super::Kind>().targets.keys() {
                let server = start_router(lab, name).await?;
                endpoints.insert::<SocketAddr>(super::Kind::SECTION, name, server.addr());
                routers.insert(name.clone(), server);
            }
            Ok(Box::new(Routers(routers)) as Box<dyn Running>)
        })
    }

    /// A customer moved to another plan in Winbox.
    fn tamper(&self, lab: &Path) -> io::Result<Option<String>> {
        let r = router_path(lab, "balanceador");
        let mut router: RouterFile =
            serde_json::from_str(&std::fs::read_to_string(&r)?).map_err(io::Error::other)?;
        for s in router.secrets.iter_mut().filter(|s| s.name == "ana.garcia") {
            s.profile = "20M".into();
        }
        std::fs::write(
            &r,
            serde_json::to_vec_pretty(&router).map_err(io::Error::other)?,
        )?;
        Ok(Some(
            "moved ana.garcia to profile 20M on router balanceador".into(),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_output_of_a_lab_router_shows_no_password() {
        let router = seed();
        let shown = format!("{router:?}");
        assert!(
            shown.contains("juan.perez") && shown.contains("wispctl"),
            "{shown}"
        );
        for s in &router.secrets {
            // Quoted: `prueba` is also part of a name.
            assert!(!shown.contains(&format!("{:?}", s.password)), "{shown}");
        }
        assert!(!shown.contains("lab-router-pw"), "{shown}");
        let secret = format!("{:?}", Secret::from(&router.secrets[0]));
        assert!(!secret.contains("viejo-juan"), "{secret}");
    }
}
