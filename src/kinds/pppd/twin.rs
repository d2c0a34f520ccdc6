//! The lab twin of a pppd host: a folder standing for its `/` under `LAB/hosts/<name>`,
//! seeded with the kind of mess a real VPS has (a hand-written unquoted chap-secrets entry,
//! someone else's entries and comments, a peer file written by hand, one wispctl wrote
//! earlier, a world-readable chap-secrets).

use std::io;
use std::path::{Path, PathBuf};

use crate::kinds::def::DesiredState;
use crate::kinds::def::KindDef;
use crate::lab::twin::{LabEndpoints, NothingRuns, Running, Starting, write_file};

/// The pppd kind's twin.
pub struct Twin;

/// The folder standing for `/` on lab host `host`.
pub fn host_root(lab: &Path, host: &str) -> PathBuf {
    lab.join("hosts").join(host)
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

/// Lab-only values of the example pppd file's secret references.
const SECRETS: &str = "CHAP_TECNICO_NODE1='n3w \"clave\" \\ 2026'\n\
CHAP_ADMIN_NODE2=s3cret-admin-2\n";

impl crate::lab::twin::Twin for Twin {
    fn attach(
        &self,
        name: &str,
        served: &serde_json::Value,
        endpoints: &mut LabEndpoints,
    ) -> anyhow::Result<()> {
        endpoints.attach::<PathBuf>(super::Kind::SECTION, name, served)
    }

    fn seed(&self, lab: &Path) -> io::Result<()> {
        let vps = host_root(lab, "vps");
        let peers = vps.join("etc/ppp/peers");
        std::fs::create_dir_all(&peers)?;
        write_file(&vps.join("etc/ppp/chap-secrets"), SEED_CHAP, 0o644)?;
        write_file(&peers.join("connexa-node-1"), SEED_PEER_NODE1, 0o644)?;
        write_file(&peers.join("connexa-node-9"), SEED_PEER_RETIRED, 0o600)?;
        write_file(&peers.join("provider"), SEED_PEER_PROVIDER, 0o640)
    }

    fn secrets(&self) -> &'static str {
        SECRETS
    }

    fn start<'a>(
        &'a self,
        lab: &'a Path,
        desired: &'a DesiredState,
        endpoints: &'a mut LabEndpoints,
    ) -> Starting<'a> {
        Box::pin(async move {
            for name in desired.kind::<super::Kind>().targets.keys() {
                endpoints.insert(super::Kind::SECTION, name, host_root(lab, name));
            }
            Ok(Box::new(NothingRuns) as Box<dyn Running>)
        })
    }

    /// A peer's MTU changed by hand on the VPS.
    fn tamper(&self, lab: &Path) -> io::Result<Option<String>> {
        let p = host_root(lab, "vps").join("etc/ppp/peers/connexa-node-2");
        let text = std::fs::read_to_string(&p)?;
        std::fs::write(&p, text.replace("mtu 1400", "mtu 1500"))?;
        Ok(Some(
            "edited /etc/ppp/peers/connexa-node-2 by hand (mtu 1400 -> 1500)".into(),
        ))
    }
}
