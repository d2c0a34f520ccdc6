//! The lab: simulators of every target kind, used by the demo, the tests and the benchmarks.
//!
//! For now it holds PPP hosts: a folder per host standing for its `/`, seeded with the kind of
//! mess a real VPS has (a hand-written unquoted chap-secrets entry, someone else's entries and
//! comments, a peer file written by hand, one wispctl wrote earlier, a world-readable
//! chap-secrets). `--lab DIR` points every target at its twin under DIR and lets unset
//! `{ env: NAME }` secrets fall back to `DIR/secrets.env`.

pub mod airos;
pub mod demo;
pub mod routeros;
pub mod runtime;
pub mod uisp;

pub use runtime::Runtime;

/// The address the demo inventory gives the antennas' jump host.
pub const LAB_JUMP_HOST: &str = "10.147.17.5";

use std::collections::HashMap;
use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

/// The folder standing for `/` on lab host `host`.
pub fn host_root(lab: &Path, host: &str) -> PathBuf {
    lab.join("hosts").join(host)
}

/// The lab's secret values for `{ env: NAME }` references.
pub fn secrets(lab: &Path) -> io::Result<HashMap<String, String>> {
    match std::fs::read_to_string(lab.join("secrets.env")) {
        Ok(t) => Ok(crate::secret::parse_env_file(&t)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(HashMap::new()),
        Err(e) => Err(e),
    }
}

/// A chap-secrets file the way hands and other tools leave it.
pub const SEED_CHAP: &str = "# Secrets for authentication using CHAP\n\
# client\tserver\tsecret\t\t\tIP addresses\n\
\"soporte\"   \"legacy-node\"   \"viejo-secreto\"   *\n\
tecnico connexa-node-1 clave-sin-comillas *\n\
\n\
# added by the old provisioning script\n\
  \"noc\"\t\"backup-node\"\t\"b4ckup\"\t10.8.0.9\n";

/// A peer file written by hand, before wispctl.
pub const SEED_PEER_NODE1: &str = "name tecnico\nremotename connexa-node-1\nrequire-mschap-v2\nrefuse-pap\nrefuse-eap\nrefuse-chap\nnoauth\npersist\nmtu 1500\nmru 1500\nlock\nnoipdefault\nconnect \"/usr/sbin/pptp 198.51.100.20 --nolaunchpppd\"\nuser tecnico\n";

/// A peer file wispctl wrote for a node that has since been retired.
pub const SEED_PEER_RETIRED: &str = "# Managed by wispctl: pppd.vps.peer[\"connexa-node-9\"]. Edits here are overwritten by the next apply.\nname admin\nremotename connexa-node-9\nconnect \"/usr/sbin/pptp 192.0.2.99 --nolaunchpppd\"\nuser admin\n";

/// Debian's own example peer, which is nobody's business but the host's.
pub const SEED_PEER_PROVIDER: &str =
    "# example configuration for a dialup connection\nnoipdefault\nusepeerdns\ndefaultroute\n";

/// Secret values of the demo's environment references. Lab-only: never real credentials.
pub const SEED_SECRETS: &str = "# Lab-only secret values for { env: NAME } references.\n\
CHAP_TECNICO_NODE1='n3w \"clave\" \\ 2026'\n\
CHAP_ADMIN_NODE2=s3cret-admin-2\n\
ROUTER_BALANCEADOR_PASSWORD=lab-router-pw\n\
PPPOE_JUAN_PEREZ=juan-2026-nuevo\n\
PPPOE_MARIA_LOPEZ=maria-2024\n\
PPPOE_LUIS_TORRES=luis-pw\n\
PPPOE_ANA_GARCIA=ana-nueva-1\n\
UISP_MAIN_TOKEN=lab-uisp-nms-token\n\
AIROS_PASSWORD_1=lab-antenna-pw-1\n\
AIROS_PASSWORD_2=lab-antenna-pw-2\n\
AIROS_JUMP_PASSWORD=lab-jump-pw\n";

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
pub fn seed_antennas() -> airos::FleetFile {
    let ok = format!(
        "unms.status=enabled\nunms.uri={}\n",
        uisp::LAB_CONNECTION_STRING
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
                   login: &str| airos::AntennaFile {
        host: host.into(),
        system_cfg: system,
        running_cfg: running,
        board_info: board("LiteBeam M5", mac),
        version: version.into(),
        logins: logins(login),
        host_key: airos::AntennaFile::new_key(seed),
        flash: None,
        fault: None,
    };
    airos::FleetFile {
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
        jump: Some(airos::JumpFile {
            logins: vec![("wispctl".into(), "lab-jump-pw".into())],
            host_key: airos::AntennaFile::new_key(1000),
        }),
    }
}

/// The lab's known-hosts file: the lab antennas' and jump host's keys, pinned at `lab init`.
pub fn known_hosts_path(lab: &Path) -> PathBuf {
    lab.join(crate::providers::airos::KNOWN_HOSTS_FILE)
}

fn fingerprint(key_text: &str) -> io::Result<String> {
    let key = russh::keys::PrivateKey::from_openssh(key_text).map_err(io::Error::other)?;
    Ok(key
        .public_key()
        .fingerprint(russh::keys::HashAlg::Sha256)
        .to_string())
}

/// The lab's UISP server `main`: devices that came back after a server move, some unauthorized,
/// one in the wrong site, and two ghosts.
pub fn seed_uisp() -> runtime::UispFile {
    use seed_ids::*;
    runtime::UispFile {
        token: "lab-uisp-nms-token".into(),
        connection_string: uisp::LAB_CONNECTION_STRING.into(),
        state: uisp::UispState {
            sites: vec![
                uisp::LabSite::new(TOMATLAN, "Tomatlan", "site", None),
                uisp::LabSite::new(CENTRO, "Centro", "site", None),
                uisp::LabSite::new(
                    JUAN_SITE,
                    "Tomatlan, Juan Perez",
                    "endpoint",
                    Some(TOMATLAN),
                ),
                uisp::LabSite::new(LUIS_SITE, "Centro, Luis Torres", "endpoint", Some(CENTRO)),
            ],
            devices: vec![
                // Authorized in its endpoint: nothing to do.
                uisp::LabDevice::new(
                    "d0000000-0000-4000-8000-000000000001",
                    "28:70:4E:A8:16:99",
                    Some("Juan Perez LB5"),
                    Some("10.10.1.45/24"),
                    Some(JUAN_SITE),
                ),
                // Unauthorized after the server move: authorized into a new endpoint site.
                uisp::LabDevice::new(
                    "d0000000-0000-4000-8000-000000000002",
                    "28:70:4E:A8:17:01",
                    Some("Maria Lopez LB5"),
                    Some("10.10.1.46/24"),
                    None,
                ),
                // Authorized, but in the zone site instead of its endpoint: moved.
                uisp::LabDevice::new(
                    "d0000000-0000-4000-8000-000000000003",
                    "28:70:4E:A8:17:02",
                    Some("Luis Torres LB5"),
                    Some("10.10.1.47/24"),
                    Some(CENTRO),
                ),
                // Ghosts: no name, no IP, never authorized (kept: ghosts: keep).
                uisp::LabDevice::new(
                    "d0000000-0000-4000-8000-000000000004",
                    "F0:9F:C2:00:00:01",
                    None,
                    None,
                    None,
                ),
                uisp::LabDevice::new(
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

/// The lab's router `balanceador`, as the operator's main router looks before wispctl.
pub fn seed_router() -> runtime::RouterFile {
    let s = |name: &str, password: &str, remote: &str, comment: &str| runtime::SecretRow {
        name: name.into(),
        password: password.into(),
        service: "pppoe".into(),
        profile: "10M".into(),
        remote_address: remote.into(),
        comment: comment.into(),
        ..Default::default()
    };
    runtime::RouterFile {
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

/// Creates a lab in `dir` (which may exist; existing lab files are replaced).
pub fn init(dir: &Path) -> io::Result<()> {
    let vps = host_root(dir, "vps");
    let peers = vps.join("etc/ppp/peers");
    std::fs::create_dir_all(&peers)?;
    let write = |p: PathBuf, text: &str, mode: u32| -> io::Result<()> {
        std::fs::write(&p, text)?;
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode))
    };
    write(vps.join("etc/ppp/chap-secrets"), SEED_CHAP, 0o644)?;
    write(peers.join("connexa-node-1"), SEED_PEER_NODE1, 0o644)?;
    write(peers.join("connexa-node-9"), SEED_PEER_RETIRED, 0o600)?;
    write(peers.join("provider"), SEED_PEER_PROVIDER, 0o640)?;
    write(dir.join("secrets.env"), SEED_SECRETS, 0o600)?;
    std::fs::create_dir_all(dir.join("routers"))?;
    let router = serde_json::to_string_pretty(&seed_router()).map_err(io::Error::other)?;
    write(runtime::router_path(dir, "balanceador"), &router, 0o600)?;
    std::fs::create_dir_all(dir.join("uisp"))?;
    let uisp = serde_json::to_string_pretty(&seed_uisp()).map_err(io::Error::other)?;
    write(runtime::uisp_path(dir, "main"), &uisp, 0o600)?;
    std::fs::create_dir_all(dir.join("antennas"))?;
    let fleet = seed_antennas();
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
    write(known_hosts_path(dir), &known, 0o600)?;
    let text = serde_json::to_string_pretty(&fleet).map_err(io::Error::other)?;
    write(runtime::antennas_path(dir, "clientes"), &text, 0o600)?;
    std::fs::create_dir_all(dir.join("state"))?;
    Ok(())
}

/// Out-of-band edits, as people make them: a peer's MTU changed by hand on the VPS, and a
/// customer moved to another plan in Winbox. Returns what was done, for the demo to say.
pub fn tamper(dir: &Path) -> io::Result<String> {
    let p = host_root(dir, "vps").join("etc/ppp/peers/connexa-node-2");
    let text = std::fs::read_to_string(&p)?;
    std::fs::write(&p, text.replace("mtu 1400", "mtu 1500"))?;
    let r = runtime::router_path(dir, "balanceador");
    let mut router: runtime::RouterFile =
        serde_json::from_str(&std::fs::read_to_string(&r)?).map_err(io::Error::other)?;
    for s in router.secrets.iter_mut().filter(|s| s.name == "ana.garcia") {
        s.profile = "20M".into();
    }
    std::fs::write(
        &r,
        serde_json::to_vec_pretty(&router).map_err(io::Error::other)?,
    )?;
    let a = runtime::antennas_path(dir, "clientes");
    let mut fleet: airos::FleetFile =
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
    Ok("edited /etc/ppp/peers/connexa-node-2 by hand (mtu 1400 -> 1500), moved ana.garcia to profile 20M on router balanceador, and put the old UISP connection string back into antenna 10.10.1.50's running.cfg".into())
}
