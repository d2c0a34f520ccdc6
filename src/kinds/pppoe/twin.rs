//! The lab twin of a MikroTik router: the `routeros-api` crate's in-memory router on a
//! loopback port, loaded from `LAB/routers/<name>.json` for one command and saved back after
//! every write it takes (atomically, before the write is answered, then a crash point: see
//! [`crate::lab::twin::crash`]) and after a command that writes, so that `plan`, `apply` and
//! `drift` run one after the other see one router.
//!
//! The file may make the router hostile (`"hostile": "drip"`, or `{ "mode": "drip", "from":
//! "first_write" }`, see [`HostileSpec`]) and slow (`"latency_ms": 200`); what it received is
//! kept in the file (`received`, added up over the runs), so that a test can see what a client
//! sent after the router broke the stream. Files without these fields load as before.
//!
//! It holds lab-only values (an API password, customers' passwords) and prints none of them.
//! The router itself is the crate's (`routeros_api::server`); this file only keeps it on disk.

use std::collections::BTreeMap;
use std::io;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::bail;
use routeros_api::server::{
    ActiveSession, DropFault, Faults, Hostile, HostileFrom, HostileMode, RouterConfig, RouterLab,
    RouterSnapshot, Secret, Stats, TrapFault, Version,
};
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
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
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
    /// How the router breaks the API stream, if it does.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hostile: Option<HostileSpec>,
    /// Delay of every answer, in milliseconds.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub latency_ms: u64,
    /// A session disconnected by `/ppp/active/remove` comes back this many milliseconds later
    /// (the CPE redials), unless its secret is disabled or gone by then. Absent: kicked
    /// sessions never come back. A redial still pending when the command ends is lost.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub redial_ms: Option<u64>,
    /// Faults the router injects (a dropped connection, a `!trap` on a command).
    #[serde(default, skip_serializing_if = "FaultsFile::is_empty")]
    pub faults: FaultsFile,
    /// What the router received, added up over the runs.
    #[serde(default, skip_serializing_if = "Received::is_empty")]
    pub received: Received,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// `hostile`: a mode (`"drip"`), or a mode and when it starts (`{ "mode": "drip", "from":
/// "first_write" }`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum HostileSpec {
    /// A mode, from its default start.
    Mode(HostileName),
    /// A mode and its start.
    Full {
        /// The mode.
        mode: HostileName,
        /// When it starts; default `login` (`first_write` for `garbage_after_writes`).
        #[serde(default)]
        from: Option<HostileStart>,
    },
}

/// A hostile mode, as the lab file names it (see `routeros_api::server::HostileMode`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HostileName {
    /// One valid byte every 500 ms.
    Drip,
    /// Endless `!re` rows for a print.
    Flood,
    /// A sentence that never ends.
    EndlessSentence,
    /// An extra `!done` for an earlier tag.
    StrayDone,
    /// An answer for a tag never sent.
    UnknownTag,
    /// An answer without a tag.
    MissingTag,
    /// A reply word the API does not have.
    UnknownWord,
    /// Garbage bytes after the first write's answer.
    #[serde(alias = "garbage")]
    GarbageAfterWrites,
    /// No answer at all.
    Silent,
}

/// When a hostile mode starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HostileStart {
    /// From the first answer after the login.
    Login,
    /// From the answer to the first write that took effect.
    FirstWrite,
}

impl HostileSpec {
    /// The lab router's setting.
    pub fn hostile(self) -> Hostile {
        let (name, from) = match self {
            HostileSpec::Mode(name) => (name, None),
            HostileSpec::Full { mode, from } => (mode, from),
        };
        let mode = match name {
            HostileName::Drip => HostileMode::Drip,
            HostileName::Flood => HostileMode::Flood,
            HostileName::EndlessSentence => HostileMode::EndlessSentence,
            HostileName::StrayDone => HostileMode::StrayDone,
            HostileName::UnknownTag => HostileMode::UnknownTag,
            HostileName::MissingTag => HostileMode::MissingTag,
            HostileName::UnknownWord => HostileMode::UnknownWord,
            HostileName::GarbageAfterWrites => HostileMode::Garbage,
            HostileName::Silent => HostileMode::Silent,
        };
        let from = match (from, name) {
            (Some(HostileStart::Login), _) => HostileFrom::Login,
            (Some(HostileStart::FirstWrite), _) | (None, HostileName::GarbageAfterWrites) => {
                HostileFrom::FirstWrite
            }
            (None, _) => HostileFrom::Login,
        };
        Hostile { mode, from }
    }
}

/// What a lab router received, kept in its file and added up over the runs. Command words
/// only: never an attribute (passwords).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Received {
    /// Sentences received per command word.
    pub commands: BTreeMap<String, u64>,
    /// Connections the hostile router broke.
    pub breaks: u64,
    /// The command word of every sentence a connection received after it broke: what a
    /// client sent after it should have stopped.
    pub after_break: Vec<String>,
}

impl Received {
    fn is_empty(&self) -> bool {
        *self == Received::default()
    }

    /// This log, and then what a run's router counted.
    fn plus(&self, stats: &Stats) -> Received {
        let mut sum = self.clone();
        for (command, n) in &stats.per_command {
            *sum.commands.entry(command.clone()).or_default() += n;
        }
        sum.breaks += stats.breaks;
        sum.after_break.extend(stats.after_break.iter().cloned());
        sum
    }
}

impl RouterFile {
    /// The file as the running router now is: its secrets, sessions and what it received
    /// (added to what the file held when the router started).
    fn now(&self, secrets: &[Secret], active: &[ActiveSession], stats: &Stats) -> RouterFile {
        RouterFile {
            secrets: secrets.iter().map(SecretRow::from).collect(),
            active: active
                .iter()
                .map(|a| (a.name.clone(), a.address.clone()))
                .collect(),
            received: self.received.plus(stats),
            ..self.clone()
        }
    }
}

/// A lab secret on disk. `Debug` leaves out the password.
#[derive(Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
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
        hostile: None,
        latency_ms: 0,
        redial_ms: None,
        faults: FaultsFile::default(),
        received: Received::default(),
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

/// A lab router running, with its file as it was loaded.
pub struct LabRouter {
    /// The router.
    pub server: RouterLab,
    /// Its file when it started.
    pub file: RouterFile,
}

impl LabRouter {
    /// The file as the router now is.
    pub fn file_now(&self) -> RouterFile {
        let s = &self.server;
        self.file.now(&s.secrets(), &s.active(), &s.stats())
    }
}

/// Lab routers running for one command.
struct Routers(BTreeMap<String, LabRouter>);

impl Running for Routers {
    fn save(&self, lab: &Path) -> anyhow::Result<()> {
        for (name, router) in &self.0 {
            write_json(&router_path(lab, name), &router.file_now())?;
        }
        Ok(())
    }
}

/// Starts one lab router from its file. It saves the file after every write it takes (before
/// answering it), then passes the lab's crash point.
pub async fn start_router(lab: &Path, name: &str) -> anyhow::Result<LabRouter> {
    let path = router_path(lab, name);
    let file: RouterFile = read_json(&path, &format!("router {name}"))?;
    let server = RouterLab::start(config_of(name, &file)?).await?;
    server.set_secrets(file.secrets.iter().map(Secret::from).collect());
    for (n, a) in &file.active {
        server.add_active(n, a);
    }
    let base = file.clone();
    let router = name.to_string();
    server.on_write(move |r: &RouterSnapshot| {
        if let Err(e) = write_json(&path, &base.now(&r.secrets, &r.active, &r.stats)) {
            tracing::error!(router, "cannot save the lab router: {e:#}");
        }
        crate::lab::twin::crash::wrote();
    });
    Ok(LabRouter { server, file })
}

/// The lab router's settings from its file.
/// A lab router's `faults` in its file: `{ "drop_after_sentences": 5, "drop_times": 1,
/// "traps": [ { "command": "/ppp/secret/set", "name": "juan", "message": "failure: ..." } ] }`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FaultsFile {
    /// Close a connection once it has received this many sentences (login included).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub drop_after_sentences: Option<u64>,
    /// How many connections to drop so; unset: every one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub drop_times: Option<u32>,
    /// Commands answered with a `!trap` instead of being run.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub traps: Vec<TrapFile>,
}

/// One `!trap` fault.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrapFile {
    /// The command word (`/ppp/secret/set`).
    pub command: String,
    /// Only for this secret or session name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// The trap's message.
    pub message: String,
    /// How many times; unset: always.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub times: Option<u32>,
}

impl FaultsFile {
    fn is_empty(&self) -> bool {
        self.drop_after_sentences.is_none() && self.traps.is_empty()
    }

    fn faults(&self) -> Faults {
        Faults {
            drop: self.drop_after_sentences.map(|after_sentences| DropFault {
                after_sentences,
                times: self.drop_times,
            }),
            traps: self
                .traps
                .iter()
                .map(|t| {
                    let mut trap = TrapFault::new(&t.command, t.name.as_deref(), &t.message);
                    trap.times = t.times;
                    trap
                })
                .collect(),
        }
    }
}

fn config_of(name: &str, file: &RouterFile) -> anyhow::Result<RouterConfig> {
    let version = match file.version.as_str() {
        "v6" => Version::V6,
        "v7" => Version::V7,
        other => bail!("lab router {name}: unknown version {other:?}"),
    };
    Ok(RouterConfig {
        version,
        password_visible: file.password_visible,
        users: file.users.clone(),
        profiles: file.profiles.clone(),
        latency: std::time::Duration::from_millis(file.latency_ms),
        hostile: file.hostile.map(HostileSpec::hostile),
        faults: file.faults.faults(),
        redial: file.redial_ms.map(std::time::Duration::from_millis),
        ..RouterConfig::default()
    })
}

impl crate::lab::twin::Twin for Twin {
    fn attach(
        &self,
        name: &str,
        served: &serde_json::Value,
        endpoints: &mut LabEndpoints,
    ) -> anyhow::Result<()> {
        endpoints.attach::<SocketAddr>(super::Kind::SECTION, name, served)
    }

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
                let router = start_router(lab, name).await?;
                endpoints.insert::<SocketAddr>(super::Kind::SECTION, name, router.server.addr());
                routers.insert(name.clone(), router);
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

    #[test]
    fn a_file_without_the_new_fields_loads_and_hostile_modes_parse() {
        let mut v = serde_json::to_value(seed()).unwrap();
        for k in ["hostile", "latency_ms", "received"] {
            assert!(v.get(k).is_none(), "{k} written when unset");
        }
        let old: RouterFile = serde_json::from_value(v.clone()).unwrap();
        assert!(old.hostile.is_none() && old.latency_ms == 0);
        let cases = [
            (
                serde_json::json!("drip"),
                HostileMode::Drip,
                HostileFrom::Login,
            ),
            (
                serde_json::json!({ "mode": "flood", "from": "first_write" }),
                HostileMode::Flood,
                HostileFrom::FirstWrite,
            ),
            (
                serde_json::json!("garbage_after_writes"),
                HostileMode::Garbage,
                HostileFrom::FirstWrite,
            ),
            (
                serde_json::json!({ "mode": "stray_done" }),
                HostileMode::StrayDone,
                HostileFrom::Login,
            ),
        ];
        for (spec, mode, from) in cases {
            v["hostile"] = spec.clone();
            let file: RouterFile = serde_json::from_value(v.clone()).unwrap();
            assert_eq!(
                file.hostile.unwrap().hostile(),
                Hostile { mode, from },
                "{spec}"
            );
        }
        v["hostile"] = serde_json::json!("sleepy");
        assert!(serde_json::from_value::<RouterFile>(v).is_err());
    }

    /// The file holds every write as soon as the router took it, before the command ends, and
    /// what the router received adds up over the runs.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_router_file_is_saved_after_each_write() {
        use routeros_api::client::{Command, Connection};
        let tmp = tempfile::tempdir().unwrap();
        let lab = tmp.path();
        let mut file = seed();
        file.received.commands.insert("/login".into(), 5);
        std::fs::create_dir_all(lab.join("routers")).unwrap();
        write_json(&router_path(lab, "r"), &file).unwrap();
        let router = start_router(lab, "r").await.unwrap();
        let stream = tokio::net::TcpStream::connect(router.server.addr())
            .await
            .unwrap();
        let mut c = Connection::new(stream, std::time::Duration::from_secs(5));
        c.login("wispctl", "lab-router-pw").await.unwrap();
        let read = || -> RouterFile { read_json(&router_path(lab, "r"), "r").unwrap() };
        c.call(Command::new(["/ppp/secret/print"])).await.unwrap();
        assert_eq!(read().received.commands["/login"], 5, "a print is no write");
        c.call(Command::new([
            "/ppp/secret/set",
            "=.id=*2",
            "=profile=Morosos",
        ]))
        .await
        .unwrap();
        let saved = read();
        let maria = saved.secrets.iter().find(|s| s.name == "maria.lopez");
        assert_eq!(maria.unwrap().profile, "Morosos");
        assert_eq!(saved.received.commands["/login"], 6);
        assert_eq!(saved.received.commands["/ppp/secret/set"], 1);
        c.call(Command::new(["/ppp/active/remove", "=.id=*80000002"]))
            .await
            .unwrap();
        assert_eq!(read().active.len(), 3);
        let mode = std::fs::metadata(router_path(lab, "r"))
            .unwrap()
            .permissions();
        assert_eq!(
            std::os::unix::fs::PermissionsExt::mode(&mode) & 0o777,
            0o600
        );
        let text = std::fs::read_to_string(router_path(lab, "r")).unwrap();
        assert!(!text.contains(".tmp"), "{text}");
        assert_eq!(router.file_now(), read(), "the final save agrees");
    }
}
