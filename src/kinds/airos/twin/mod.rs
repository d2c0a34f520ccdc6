//! The lab twin of an antenna group: a fleet of SSH servers on loopback ports running the
//! airOS kind's fixed commands ([`fleet`]), loaded from `LAB/antennas/<group>.json` for one
//! command and saved back after each command that changes an antenna (and once more after a
//! command that writes); their host keys pinned in `LAB/airos-known-hosts` by `lab init`.
//!
//! Each antenna's JSON entry holds what the lab models ([`fleet::AntennaFile`]): the files,
//! the flash copy, the `udapi-bridge` process, whether `/sbin/cfgmtd` is there (`"cfgmtd":
//! "missing"`), and a fault (`"fault": "persist_fails"`, ...); the newer fields are optional,
//! so older lab folders load as they were.

pub mod fleet;

use std::collections::BTreeMap;
use std::io;
use std::path::{Path, PathBuf};

use anyhow::Context as _;

use super::spec::GroupEndpoints;
use crate::kinds::def::DesiredState;
use crate::kinds::def::KindDef;
use crate::lab::twin::{LabEndpoints, Running, Starting, read_json, write_file, write_json};
use fleet::{Fleet, FleetFile, FleetOptions};

/// The airos kind's twin.
pub struct Twin;

/// The address the demo inventory gives the antennas' jump host.
pub const LAB_JUMP_HOST: &str = "10.147.17.5";

/// The path of a lab antenna group's file.
pub fn antennas_path(lab: &Path, group: &str) -> PathBuf {
    lab.join("antennas").join(format!("{group}.json"))
}

/// The lab's known-hosts file: the lab antennas' and jump host's keys, pinned at `lab init`.
pub fn known_hosts_path(lab: &Path) -> PathBuf {
    lab.join(super::KNOWN_HOSTS_FILE)
}

/// The connection string the antennas carried before the UISP server moved (lab-only key).
pub const OLD_CONNECTION_STRING: &str = "wss://uisp-viejo.lab.invalid:443+OldLabMasterKey0123456789abcdefghijklmnopqrstu+allowSelfSignedCertificate";

/// A key a connected antenna wrote for itself (lab-only).
pub const DEVICE_KEY_URI: &str =
    "wss://uisp.lab.invalid:443+JuanDeviceSpecificKey4242+allowSelfSignedCertificate";

/// An airOS configuration with the given `unms.*` lines among the usual others.
pub fn antenna_cfg(unms: &str) -> String {
    format!(
        "aaa.1.status=disabled\nhttpd.https.status=enabled\n{unms}netconf.1.devname=ath0\nppp.1.name=cliente\nppp.1.password=lab-ppp-pw\nresolv.host.1.name=LBE-cliente\nsshd.status=enabled\nusers.1.name=ubnt\nusers.1.password=$1$lab$hashhashhash\nwireless.1.ssid=Tomatlan-AP\n"
    )
}

/// The lab's antenna group `clientes`, behind the jump host: after the UISP server moved, some
/// antennas still carry the old connection string.
pub fn seed() -> fleet::FleetFile {
    let ok = format!(
        "unms.status=enabled\nunms.uri={}\n",
        crate::lab::twin::LAB_CONNECTION_STRING
    );
    let old = format!("unms.status=enabled\nunms.uri={OLD_CONNECTION_STRING}\n");
    let own = format!("unms.status=enabled\nunms.uri={DEVICE_KEY_URI}\n");
    let board = |name: &str, mac: &str| {
        format!("board.name={name}\nboard.shortname=LBE5\nboard.hwaddr={mac}\n")
    };
    let v6 = "XW.v6.2.0\n";
    let logins = |which: &str| vec![("ubnt".to_string(), which.to_string())];
    let antenna = |seed: u64,
                   host: &str,
                   system: String,
                   running: Option<String>,
                   mac: &str,
                   version: &str,
                   login: &str| fleet::AntennaFile {
        host: host.into(),
        system_cfg: system,
        running_cfg: running,
        board_info: board("LiteBeam M5", mac),
        version: version.into(),
        logins: logins(login),
        host_key: fleet::AntennaFile::new_key(seed),
        flash: None,
        fault: None,
        ..fleet::AntennaFile::default()
    };
    fleet::FleetFile {
        antennas: vec![
            // Connected in UISP: it rewrote its own key. In sync, never drift.
            antenna(
                1,
                "10.10.1.45",
                antenna_cfg(&own),
                Some(antenna_cfg(&own)),
                "28704EA81699",
                v6,
                "lab-antenna-pw-1",
            ),
            // Still on the old server in both files: fixed.
            antenna(
                2,
                "10.10.1.46",
                antenna_cfg(&old),
                Some(antenna_cfg(&old)),
                "28704EA81701",
                v6,
                "lab-antenna-pw-1",
            ),
            // The field's trap: system.cfg edited by the old script, running.cfg still old;
            // and only the second credential works here.
            antenna(
                3,
                "10.10.1.47",
                antenna_cfg(&ok),
                Some(antenna_cfg(&old)),
                "28704EA81702",
                v6,
                "lab-antenna-pw-2",
            ),
            // airOS 8: unms.uri written twice by hand, unms.uri.changed old, no running.cfg.
            antenna(
                4,
                "10.10.1.48",
                antenna_cfg(&format!(
                    "{old}unms.uri={OLD_CONNECTION_STRING}\nunms.uri.changed={OLD_CONNECTION_STRING}\n"
                )),
                None,
                "28704EA81703",
                "WA.v8.7.11\n",
                "lab-antenna-pw-1",
            ),
            // Already right.
            antenna(
                5,
                "10.10.1.50",
                antenna_cfg(&ok),
                Some(antenna_cfg(&ok)),
                "28704EA81705",
                v6,
                "lab-antenna-pw-1",
            ),
        ],
        jump: Some(fleet::JumpFile {
            logins: vec![("wispctl".into(), "lab-jump-pw".into())],
            host_key: fleet::AntennaFile::new_key(1000),
        }),
    }
}

fn fingerprint(key_text: &str) -> io::Result<String> {
    let key = russh::keys::PrivateKey::from_openssh(key_text).map_err(io::Error::other)?;
    Ok(key
        .public_key()
        .fingerprint(russh::keys::HashAlg::Sha256)
        .to_string())
}

/// Lab-only values of the example inventory's antenna and jump host passwords.
const SECRETS: &str = "AIROS_PASSWORD_1=lab-antenna-pw-1\n\
AIROS_PASSWORD_2=lab-antenna-pw-2\n\
AIROS_JUMP_PASSWORD=lab-jump-pw\n";

/// Lab fleets running for one command.
struct Fleets(BTreeMap<String, Fleet>);

impl Running for Fleets {
    fn save(&self, lab: &Path) -> anyhow::Result<()> {
        for (name, fleet) in &self.0 {
            write_json(&antennas_path(lab, name), &fleet.snapshot())?;
        }
        Ok(())
    }
}

impl crate::lab::twin::Twin for Twin {
    fn attach(
        &self,
        name: &str,
        served: &serde_json::Value,
        endpoints: &mut LabEndpoints,
    ) -> anyhow::Result<()> {
        endpoints.attach::<GroupEndpoints>(super::Kind::SECTION, name, served)
    }

    fn seed(&self, lab: &Path) -> io::Result<()> {
        let fleet = seed();
        let mut known = String::from(
            "# Host keys of the lab's antennas and jump host, pinned by `wispctl lab init`.\n",
        );
        for a in &fleet.antennas {
            known.push_str(&format!("{}:22 {}\n", a.host, fingerprint(&a.host_key)?));
        }
        if let Some(j) = &fleet.jump {
            known.push_str(&format!(
                "{LAB_JUMP_HOST}:22 {}\n",
                fingerprint(&j.host_key)?
            ));
        }
        write_file(&known_hosts_path(lab), &known, 0o600)?;
        let text = serde_json::to_string_pretty(&fleet).map_err(io::Error::other)?;
        write_file(&antennas_path(lab, "clientes"), &text, 0o600)
    }

    fn secrets(&self) -> &'static str {
        SECRETS
    }

    /// A fleet for every group with an airos file.
    fn start<'a>(
        &'a self,
        lab: &'a Path,
        desired: &'a DesiredState,
        endpoints: &'a mut LabEndpoints,
    ) -> Starting<'a> {
        Box::pin(async move {
            let set = desired.kind::<super::Kind>();
            let mut fleets = BTreeMap::new();
            for name in set.desired.keys() {
                let file: FleetFile =
                    read_json(&antennas_path(lab, name), &format!("antenna group {name}"))?;
                let legacy = set.targets.get(name).is_some_and(|g| g.legacy);
                // The lab UISP server the group's antennas report to, when it runs here.
                // (The UISP kind's twins start first: `registry!` lists uisp before airos.)
                let connected_in = set.desired[name].connected_in.as_deref();
                let bridge_hook =
                    connected_in.and_then(|uisp| endpoints.linked(crate::uisp_api::SECTION, uisp));
                if let (Some(uisp), None) = (connected_in, &bridge_hook) {
                    tracing::warn!(
                        "lab antenna group {name}: no lab UISP server {uisp} runs here; its antennas never show connected"
                    );
                }
                let fleet = Fleet::start(
                    &file,
                    FleetOptions {
                        legacy_only: legacy,
                        // Each change is saved at once (a crash point for the crash tests);
                        // `save` after the command saves the same state again.
                        save_to: Some(antennas_path(lab, name)),
                        bridge_hook,
                        ..FleetOptions::default()
                    },
                )
                .await
                .with_context(|| format!("lab antenna group {name}"))?;
                endpoints.insert(
                    super::Kind::SECTION,
                    name,
                    GroupEndpoints {
                        antennas: file
                            .antennas
                            .iter()
                            .filter_map(|a| fleet.addr(&a.host).map(|x| (a.host.clone(), x)))
                            .collect(),
                        jump: fleet.jump_addr(),
                        known_hosts: known_hosts_path(lab),
                    },
                );
                fleets.insert(name.clone(), fleet);
            }
            Ok(Box::new(Fleets(fleets)) as Box<dyn Running>)
        })
    }

    /// The old UISP connection string put back into one antenna's running.cfg.
    fn tamper(&self, lab: &Path) -> io::Result<Option<String>> {
        let a = antennas_path(lab, "clientes");
        let mut fleet: FleetFile =
            serde_json::from_str(&std::fs::read_to_string(&a)?).map_err(io::Error::other)?;
        for x in fleet.antennas.iter_mut().filter(|x| x.host == "10.10.1.50") {
            let old = format!("unms.status=enabled\nunms.uri={OLD_CONNECTION_STRING}\n");
            x.running_cfg = Some(antenna_cfg(&old));
        }
        crate::files::write_atomic(
            &a,
            &serde_json::to_vec_pretty(&fleet).map_err(io::Error::other)?,
            0o600,
        )?;
        Ok(Some(
            "put the old UISP connection string back into antenna 10.10.1.50's running.cfg".into(),
        ))
    }
}
