//! The lab twin of a UISP server: an in-memory UISP NMS over HTTPS ([`server`]), loaded from
//! `LAB/uisp/<name>.json` for one command and saved back after a command that writes.

pub mod server;

use std::collections::BTreeMap;
use std::io;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::kinds::def::DesiredState;
use crate::kinds::def::KindDef;
use crate::lab::twin::{LabEndpoints, Running, Starting, read_json, write_file, write_json};
use crate::uisp_api::Endpoint;
use server::{UispConfig, UispLab, UispState};

/// The uisp kind's twin.
pub struct Twin;

/// The path of a lab UISP server's file.
pub fn uisp_path(lab: &Path, name: &str) -> PathBuf {
    lab.join("uisp").join(format!("{name}.json"))
}

/// A lab UISP server as kept on disk. `Debug` leaves out the token and the connection
/// string.
#[derive(Clone, Serialize, Deserialize)]
pub struct UispFile {
    /// The NMS API token it accepts (lab-only value).
    pub token: String,
    /// What `GET /nms/connection` answers (lab-only value).
    pub connection_string: String,
    /// Sites and devices.
    pub state: server::UispState,
    /// How long after a lab antenna's bridge connects with this server's connection string
    /// UISP shows the device connected, in milliseconds (default 0: at once). See
    /// [`UispLab::bridge_hook`].
    #[serde(default, skip_serializing_if = "is_zero")]
    pub reconnect_ms: u64,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

impl std::fmt::Debug for UispFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UispFile")
            .field("token", &format_args!("(sensitive)"))
            .field("connection_string", &format_args!("(sensitive)"))
            .field("state", &self.state)
            .finish()
    }
}

/// The lab's UISP server `main`: devices that came back after a server move, some unauthorized,
/// one in the wrong site, and two ghosts.
pub fn seed() -> UispFile {
    use seed_ids::*;
    UispFile {
        token: "lab-uisp-nms-token".into(),
        connection_string: crate::lab::twin::LAB_CONNECTION_STRING.into(),
        reconnect_ms: 0,
        state: server::UispState {
            sites: vec![
                server::LabSite::new(TOMATLAN, "Tomatlan", "site", None),
                server::LabSite::new(CENTRO, "Centro", "site", None),
                server::LabSite::new(
                    JUAN_SITE,
                    "Tomatlan, Juan Perez",
                    "endpoint",
                    Some(TOMATLAN),
                ),
                server::LabSite::new(LUIS_SITE, "Centro, Luis Torres", "endpoint", Some(CENTRO)),
            ],
            devices: vec![
                // Authorized in its endpoint: nothing to do.
                server::LabDevice::new(
                    "d0000000-0000-4000-8000-000000000001",
                    "28:70:4E:A8:16:99",
                    Some("Juan Perez LB5"),
                    Some("10.10.1.45/24"),
                    Some(JUAN_SITE),
                ),
                // Unauthorized after the server move: authorized into a new endpoint site.
                server::LabDevice::new(
                    "d0000000-0000-4000-8000-000000000002",
                    "28:70:4E:A8:17:01",
                    Some("Maria Lopez LB5"),
                    Some("10.10.1.46/24"),
                    None,
                ),
                // Authorized, but in the zone site instead of its endpoint: moved.
                server::LabDevice::new(
                    "d0000000-0000-4000-8000-000000000003",
                    "28:70:4E:A8:17:02",
                    Some("Luis Torres LB5"),
                    Some("10.10.1.47/24"),
                    Some(CENTRO),
                ),
                // Ghosts: no name, no IP, never authorized (kept: ghosts: keep).
                server::LabDevice::new(
                    "d0000000-0000-4000-8000-000000000004",
                    "F0:9F:C2:00:00:01",
                    None,
                    None,
                    None,
                ),
                server::LabDevice::new(
                    "d0000000-0000-4000-8000-000000000005",
                    "F0:9F:C2:00:00:02",
                    None,
                    None,
                    None,
                ),
            ],
        },
    }
}

/// Fixed ids of the lab UISP seed.
mod seed_ids {
    pub const TOMATLAN: &str = "50000000-0000-4000-8000-000000000001";
    pub const CENTRO: &str = "50000000-0000-4000-8000-000000000002";
    pub const JUAN_SITE: &str = "50000000-0000-4000-8000-000000000003";
    pub const LUIS_SITE: &str = "50000000-0000-4000-8000-000000000004";
}

/// Lab-only value of the example inventory's UISP token reference.
const SECRETS: &str = "UISP_MAIN_TOKEN=lab-uisp-nms-token\n";

/// Lab UISP servers running for one command.
struct Servers(BTreeMap<String, UispLab>);

impl Running for Servers {
    fn save(&self, lab: &Path) -> anyhow::Result<()> {
        for (name, server) in &self.0 {
            let path = uisp_path(lab, name);
            let mut file: UispFile = read_json(&path, &format!("UISP server {name}"))?;
            file.state = server.state();
            write_json(&path, &file)?;
        }
        Ok(())
    }
}

/// Saves the server's file after each write, then counts the write (a crash point, see
/// [`crate::lab::twin::crash`]) when `crash_point`: a client killed mid-apply leaves a lab
/// that shows what the server did.
fn save_after_write(lab: &Path, name: &str, file: &UispFile, crash_point: bool) -> server::OnWrite {
    let path = uisp_path(lab, name);
    let template = file.clone();
    std::sync::Arc::new(move |state: &UispState| {
        let mut file = template.clone();
        file.state = state.clone();
        if let Err(e) = write_json(&path, &file) {
            tracing::error!("lab UISP: {e:#}");
        }
        if crash_point {
            crate::lab::twin::crash::wrote();
        }
    })
}

impl crate::lab::twin::Twin for Twin {
    fn attach(
        &self,
        name: &str,
        served: &serde_json::Value,
        endpoints: &mut LabEndpoints,
    ) -> anyhow::Result<()> {
        endpoints.attach::<Endpoint>(super::Kind::SECTION, name, served)
    }

    fn seed(&self, lab: &Path) -> io::Result<()> {
        let uisp = serde_json::to_string_pretty(&seed()).map_err(io::Error::other)?;
        write_file(&uisp_path(lab, "main"), &uisp, 0o600)
    }

    fn secrets(&self) -> &'static str {
        SECRETS
    }

    /// A server for every UISP server of the inventory (an import, and the airOS kind's
    /// connection string, read one without a file).
    fn start<'a>(
        &'a self,
        lab: &'a Path,
        desired: &'a DesiredState,
        endpoints: &'a mut LabEndpoints,
    ) -> Starting<'a> {
        Box::pin(async move {
            let mut servers = BTreeMap::new();
            for name in desired.kind::<super::Kind>().targets.keys() {
                let file: UispFile =
                    read_json(&uisp_path(lab, name), &format!("UISP server {name}"))?;
                let config = UispConfig {
                    tokens: vec![file.token.clone()],
                    connection_string: file.connection_string.clone(),
                    on_write: Some(save_after_write(lab, name, &file, true)),
                    on_change: Some(save_after_write(lab, name, &file, false)),
                    ..UispConfig::default()
                };
                let server = UispLab::start(config, file.state).await?;
                let delay = std::time::Duration::from_millis(file.reconnect_ms);
                endpoints.link(super::Kind::SECTION, name, server.bridge_hook(delay));
                endpoints.insert(
                    super::Kind::SECTION,
                    name,
                    Endpoint {
                        api: server.url(),
                        ca_pem: server.ca_pem(),
                    },
                );
                servers.insert(name.clone(), server);
            }
            Ok(Box::new(Servers(servers)) as Box<dyn Running>)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_never_shows_the_token_or_the_connection_string() {
        let file = seed();
        let shown = format!("{file:?}");
        assert!(!shown.contains(&file.token), "{shown}");
        assert!(!shown.contains(&file.connection_string), "{shown}");
        assert!(shown.contains("Tomatlan"), "{shown}");
    }
}
