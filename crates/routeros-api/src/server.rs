//! The lab's RouterOS API server: an in-memory MikroTik router that speaks the binary API
//! (plain TCP, the words and sentences of [`codec`]) on a loopback port, for the pppoe
//! provider's tests, the demo and the benchmarks.
//!
//! What it simulates, after `shared/reference/routeros-api.md`:
//! - both logins: `/login =name= =password=` (RouterOS >= 6.43) and, with
//!   [`RouterConfig::legacy_login`], the MD5 challenge of older versions;
//! - `/ppp/secret` `print` (`.proplist`, `count-only`, query words), `add`, `set` (`=!field=`
//!   clears), `unset`, `remove` (comma lists of ids); `/ppp/active` `print` and `remove`;
//!   `/ppp/profile` `print`; `/cancel`, `/quit`;
//! - `.tag` echoed on every reply sentence; several commands in flight on one connection
//!   (answered in order);
//! - the v6 and v7 personalities: `disabled` printed `yes`/`no` or `true`/`false` (both
//!   accepted on input), v7's `ipv6-routes` and `remote-ipv6-prefix`, v7's `!empty` for a print
//!   without rows (RouterOS >= 7.18), `password` shown or not;
//! - faults: a round-trip delay on every answer, a connection dropped after N sentences, a
//!   `!trap` on a chosen command (and secret name); a counter of the sentences received per
//!   command;
//! - a hostile router ([`Hostile`]): answers dripped one byte every 500 ms, a print flooded
//!   with rows without end, a sentence that never ends, a stray `!done` for an earlier tag, an
//!   unknown or missing tag, an unknown reply word, garbage after an answer, or silence; from
//!   login on, or from the first write. What a connection receives after it broke is counted
//!   ([`Stats::after_break`]): a client should have sent nothing more;
//! - a hook run after every write that took effect ([`RouterLab::on_write`]), before its answer
//!   is sent: the lab's twin saves the router there.
//!
//! What it does not: TLS (8729), the REST API, any other menu, `listen`/`follow`, real PPP
//! sessions (an active session is a row that tests add), user policies (every user may do
//! everything), scripting. The 5-byte length form is never emitted (the codec refuses it).
//!
//! Choices where the reference is silent (each one here, so a test can pin it):
//! - A command other than `/login` or `/quit` before login: `!trap =category=5 =message=not
//!   logged in` (category 5, "API failure"), `!done`, then the connection is closed.
//! - Legacy login: `/login` without `=response=` (with or without a name and password, as
//!   RouterOS < 6.43 did, which lets a client detect it) answers `!done =ret=<challenge>`. In
//!   modern mode a `/login` without a name and password fails with `cannot log in`. A failed
//!   login leaves the connection open.
//! - Unknown or read-only field on `add`/`set`/`unset`, v7-only field on v6, unknown `print`
//!   argument: `!trap =category=1 =message=unknown parameter FIELD` (the text RouterOS gives
//!   Ansible for a write to a read-only field, community.routeros PR #233).
//! - A value that does not parse (bool, number, IPv4 address, service, empty name):
//!   `!trap =category=1 =message=invalid value for argument FIELD`; a profile that does not
//!   exist: `!trap =category=1 =message=input does not match any value of profile`.
//! - `missing =.id=`, `no such item (4)`, the duplicate-name failure and `missing
//!   =value-name=` carry no category, as the reference quotes them. `set`, `unset` and `remove`
//!   take a comma list of ids; one unknown id changes nothing. A secret name is unique.
//! - `/quit`: `!fatal` with the reason `session terminated on request`, then close.
//! - `/cancel =tag=N` with no such command in flight: `!trap =category=0 =message=no such
//!   tag`. `/cancel` without `=tag=` cancels every command in flight. The cancelled command
//!   answers its `!trap =category=2 =message=interrupted` and `!done` before `/cancel`'s own
//!   `!done`.
//! - Queries: `?name`, `?-name`, `?name=x`, `?=name=x`, `?<name=x`, `?>name=x` and `?#` with
//!   `|`, `&`, `!`; whatever stays on the stack is ANDed. Other operations or a stack underflow:
//!   `!trap =category=1 =message=invalid query`. `yes`/`true` and `no`/`false` compare equal;
//!   `<` and `>` compare numbers (and `*HEX` ids) numerically, other text as text.
//! - Unset optional fields are left out of a printed row, as RouterOS does: `local-address`,
//!   `remote-address`, `remote-ipv6-prefix`, `comment`, `last-caller-id`,
//!   `last-disconnect-reason`. `caller-id`, `routes` and `ipv6-routes` print even when empty.
//!   `last-logged-out` of a secret that never logged out prints the epoch in the version's
//!   format (`jan/01/1970 00:00:00`, `1970-01-01 00:00:00`).
//! - Removing an active session does not touch the secret's `last-*` fields.
//! - Fault counters: a [`DropFault`] counts the sentences of one connection (login included);
//!   sentences 1..=N are answered, the (N+1)th is not executed and the connection closes once
//!   the earlier answers are written. Stats count every sentence received, trapped, cancelled
//!   and dropped ones included.
//! - Time is tokio's ([`tokio::time`]): the latency, a drip and a session's uptime follow a
//!   paused clock in tests.
//! - A hostile router breaks a connection once it is armed ([`HostileFrom`]): the answers it
//!   breaks are listed at [`HostileMode`]. The one-time modes (a stray `!done`, a wrong tag, an
//!   unknown word, garbage) break one answer and then answer as usual, as a confused router
//!   would, so that a client that carries on is seen carrying on: what it sends after the break
//!   is still run.
//!
//! # Example
//!
//! A lab router with one secret, read back through the crate's client:
//!
//! ```
//! use std::time::Duration;
//!
//! use routeros_api::client::{Command, Connection};
//! use routeros_api::server::{RouterConfig, RouterLab, Secret, Version};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! let config = RouterConfig::new(Version::V6).with_user("admin", "lab-pw");
//! let lab = RouterLab::start(config).await.unwrap();
//! lab.add_secret(Secret {
//!     disabled: true,
//!     ..Secret::new("juan.perez", "lab-secret")
//! });
//!
//! let stream = tokio::net::TcpStream::connect(lab.addr()).await.unwrap();
//! let mut conn = Connection::new(stream, Duration::from_secs(5));
//! conn.login("admin", "lab-pw").await.unwrap();
//! let reply = conn
//!     .call(Command::new(["/ppp/secret/print", "?name=juan.perez"]))
//!     .await
//!     .unwrap();
//! assert_eq!(reply.rows[0].get("disabled"), Some("yes"), "RouterOS 6 prints yes/no");
//! assert_eq!(lab.stats().count("/ppp/secret/print"), 1);
//! # }
//! ```

use std::cmp::Ordering;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::io;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicBool, Ordering as AtomicOrdering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use md5::{Digest, Md5};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::sync::{Notify, mpsc, watch};
use tokio::task::{JoinHandle, JoinSet};
use tokio::time::Instant;

use crate::codec::{self, Sentence};

// ---------------------------------------------------------------------------------------------
// Configuration and the public model
// ---------------------------------------------------------------------------------------------

/// Which RouterOS the lab plays.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Version {
    /// RouterOS 6 (>= 6.43 unless [`RouterConfig::legacy_login`]): `disabled=yes|no`.
    V6,
    /// RouterOS 7 (>= 7.18): `disabled=true|false`, `!empty`, IPv6 fields.
    #[default]
    V7,
}

/// How the lab router behaves. `Debug` shows the users' names, not their passwords.
#[derive(Clone)]
pub struct RouterConfig {
    /// The personality.
    pub version: Version,
    /// Whether `print` shows `password` (the API user's `sensitive` policy).
    pub password_visible: bool,
    /// API users: (name, password).
    pub users: Vec<(String, String)>,
    /// RouterOS < 6.43: the MD5 challenge login.
    pub legacy_login: bool,
    /// Delay of every answer: it is written no sooner than this after its command arrived. A
    /// round-trip delay: commands sent one after the other each pay it, pipelined commands
    /// overlap (they are still run in order); connections do not wait for each other.
    pub latency: Duration,
    /// Injected faults; also changeable at run time ([`RouterLab::set_faults`]).
    pub faults: Faults,
    /// PPP profiles besides the built-in `default` and `default-encryption`.
    pub profiles: Vec<String>,
    /// How the router breaks the API stream, if it does; also changeable at run time
    /// ([`RouterLab::set_hostile`]).
    pub hostile: Option<Hostile>,
    /// A session disconnected with `/ppp/active/remove` comes back this long after (a CPE
    /// redialing), with a new id and the same name and address, unless its secret is disabled
    /// or gone by then, or its password is no longer the one the session came up with (the
    /// CPE still dials with the old one). On tokio's clock. Default: never.
    pub redial: Option<Duration>,
}

impl Default for RouterConfig {
    /// RouterOS 7, password visible, user `admin` with an empty password, no extra profile.
    fn default() -> Self {
        RouterConfig {
            version: Version::V7,
            password_visible: true,
            users: vec![("admin".into(), String::new())],
            legacy_login: false,
            latency: Duration::ZERO,
            faults: Faults::default(),
            profiles: Vec::new(),
            hostile: None,
            redial: None,
        }
    }
}

impl std::fmt::Debug for RouterConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let users: Vec<&str> = self.users.iter().map(|(u, _)| u.as_str()).collect();
        f.debug_struct("RouterConfig")
            .field("version", &self.version)
            .field("password_visible", &self.password_visible)
            .field("users", &users)
            .field("legacy_login", &self.legacy_login)
            .field("latency", &self.latency)
            .field("faults", &self.faults)
            .field("profiles", &self.profiles)
            .field("hostile", &self.hostile)
            .field("redial", &self.redial)
            .finish()
    }
}

impl RouterConfig {
    /// The default configuration playing `version`.
    pub fn new(version: Version) -> Self {
        RouterConfig {
            version,
            ..RouterConfig::default()
        }
    }

    /// Replaces the users with one.
    pub fn with_user(mut self, name: &str, password: &str) -> Self {
        self.users = vec![(name.into(), password.into())];
        self
    }
}

/// Faults to inject.
#[derive(Debug, Clone, Default)]
pub struct Faults {
    /// Close connections after some sentences.
    pub drop: Option<DropFault>,
    /// Answer a `!trap` instead of running a command; the first matching one applies.
    pub traps: Vec<TrapFault>,
}

/// Close a connection once it has received `after_sentences` sentences: the next one is not
/// executed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DropFault {
    /// Sentences answered on a connection before it is dropped (login included).
    pub after_sentences: u64,
    /// How many connections to drop; `None`: every one.
    pub times: Option<u32>,
}

/// Answer `!trap` to `command` (such as `/ppp/secret/set`), optionally only when it concerns
/// the secret (or active session) `name`: by `=name=`, by one of its `=.id=`, or by a
/// `?name=` query.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrapFault {
    /// The command word.
    pub command: String,
    /// Only for this name.
    pub name: Option<String>,
    /// `=category=`, if any.
    pub category: Option<u8>,
    /// `=message=`.
    pub message: String,
    /// How many times; `None`: always.
    pub times: Option<u32>,
}

impl TrapFault {
    /// A trap without category, every time.
    pub fn new(command: &str, name: Option<&str>, message: &str) -> Self {
        TrapFault {
            command: command.into(),
            name: name.map(Into::into),
            category: None,
            message: message.into(),
            times: None,
        }
    }
}

/// How often a dripping router writes the next byte of its answers.
pub const DRIP_INTERVAL: Duration = Duration::from_millis(500);

/// A router that breaks the API stream: how, and from when.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Hostile {
    /// How.
    pub mode: HostileMode,
    /// From when.
    pub from: HostileFrom,
}

/// How a hostile router breaks the stream of a connection once armed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HostileMode {
    /// Every answer is written one byte every [`DRIP_INTERVAL`]: each byte valid, and a
    /// timeout per read never passes.
    Drip,
    /// The next print answers `!re` rows without end, never `!done`; later commands are not
    /// answered.
    Flood,
    /// The next answer starts a sentence that never ends (words without end, never the empty
    /// word); later commands are not answered.
    EndlessSentence,
    /// Once: an extra `!done` carrying the tag of the command answered before, ahead of the
    /// answer.
    StrayDone,
    /// Once: the answer carries a tag that was never sent.
    UnknownTag,
    /// Once: the answer carries no tag.
    MissingTag,
    /// Once: the answer's first sentence starts with a reply word the API does not have.
    UnknownWord,
    /// Once: the answer, then bytes that are not API words (a 4 GB length claim, then a
    /// reserved prefix byte).
    Garbage,
    /// No answer, to that command or any later one: commands still run (a write takes
    /// effect).
    Silent,
}

/// When a hostile router starts breaking a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum HostileFrom {
    /// From the first answer after the login, on every connection.
    #[default]
    Login,
    /// From the answer to the first write that took effect (`add`, `set`, `unset`, `remove`,
    /// `/ppp/active/remove`), on any connection, and on every later connection: reading is
    /// left alone, an apply breaks.
    FirstWrite,
}

/// The bytes a [`HostileMode::Garbage`] router sends after its answer.
pub const GARBAGE: &[u8] = &[0xF0, 0xFF, 0xFF, 0xFF, 0xFF, 0xF8, b'g', b'a', b'r', b'b'];

/// The router after a write, for [`RouterLab::on_write`].
#[derive(Debug, Clone)]
pub struct RouterSnapshot {
    /// The secrets, in order.
    pub secrets: Vec<Secret>,
    /// The active sessions.
    pub active: Vec<ActiveSession>,
    /// What was received so far.
    pub stats: Stats,
}

/// What [`RouterLab::on_write`] runs.
type WriteHook = Arc<dyn Fn(&RouterSnapshot) + Send + Sync>;

/// A `/ppp/secret` entry. `Debug` shows the password as `(sensitive)`.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret {
    /// `*HEX`; empty in a secret not yet stored (the lab assigns one).
    pub id: String,
    /// `name`.
    pub name: String,
    /// `password` (lab-only values).
    pub password: String,
    /// `any`, `async`, `l2tp`, `ovpn`, `pppoe`, `pptp`, `sstp` (v6 also `isdn`).
    pub service: String,
    /// `profile`.
    pub profile: String,
    /// `local-address`.
    pub local_address: String,
    /// `remote-address`.
    pub remote_address: String,
    /// `routes`.
    pub routes: String,
    /// v7 only.
    pub ipv6_routes: String,
    /// v7 only.
    pub remote_ipv6_prefix: String,
    /// `limit-bytes-in`.
    pub limit_bytes_in: u64,
    /// `limit-bytes-out`.
    pub limit_bytes_out: u64,
    /// `caller-id`.
    pub caller_id: String,
    /// `disabled`.
    pub disabled: bool,
    /// `comment`.
    pub comment: String,
    /// Read-only over the API; empty: never logged out.
    pub last_logged_out: String,
    /// Read-only over the API.
    pub last_caller_id: String,
    /// Read-only over the API.
    pub last_disconnect_reason: String,
}

impl Default for Secret {
    fn default() -> Self {
        Secret {
            id: String::new(),
            name: String::new(),
            password: String::new(),
            service: "any".into(),
            profile: "default".into(),
            local_address: String::new(),
            remote_address: String::new(),
            routes: String::new(),
            ipv6_routes: String::new(),
            remote_ipv6_prefix: String::new(),
            limit_bytes_in: 0,
            limit_bytes_out: 0,
            caller_id: String::new(),
            disabled: false,
            comment: String::new(),
            last_logged_out: String::new(),
            last_caller_id: String::new(),
            last_disconnect_reason: String::new(),
        }
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Secret")
            .field("id", &self.id)
            .field("name", &self.name)
            .field("password", &"(sensitive)")
            .field("service", &self.service)
            .field("profile", &self.profile)
            .field("local_address", &self.local_address)
            .field("remote_address", &self.remote_address)
            .field("routes", &self.routes)
            .field("ipv6_routes", &self.ipv6_routes)
            .field("remote_ipv6_prefix", &self.remote_ipv6_prefix)
            .field("limit_bytes_in", &self.limit_bytes_in)
            .field("limit_bytes_out", &self.limit_bytes_out)
            .field("caller_id", &self.caller_id)
            .field("disabled", &self.disabled)
            .field("comment", &self.comment)
            .field("last_logged_out", &self.last_logged_out)
            .field("last_caller_id", &self.last_caller_id)
            .field("last_disconnect_reason", &self.last_disconnect_reason)
            .finish()
    }
}

impl Secret {
    /// A secret with every other field at its default.
    pub fn new(name: &str, password: &str) -> Self {
        Secret {
            name: name.into(),
            password: password.into(),
            ..Secret::default()
        }
    }
}

/// A `/ppp/profile` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Profile {
    /// `.id`.
    pub id: String,
    /// `name`.
    pub name: String,
    /// `local-address`.
    pub local_address: String,
    /// `remote-address`.
    pub remote_address: String,
    /// `rate-limit`.
    pub rate_limit: String,
    /// `comment`.
    pub comment: String,
    /// `default` and `default-encryption`.
    pub builtin: bool,
}

/// A `/ppp/active` entry: a session that is up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ActiveSession {
    /// `*800000NN`.
    pub id: String,
    /// `name`.
    pub name: String,
    /// `service`.
    pub service: String,
    /// `caller-id`.
    pub caller_id: String,
    /// `address`: the address the session got.
    pub address: String,
    /// When it came up (`uptime` counts from here), on tokio's clock: a test on the paused
    /// clock controls the uptime.
    pub since: Instant,
}

/// What the lab received.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Stats {
    /// Every sentence received, on every connection.
    pub commands: u64,
    /// Sentences received per command word (`/ppp/secret/set`).
    pub per_command: BTreeMap<String, u64>,
    /// Connections accepted.
    pub connections: u64,
    /// Connections a [`Hostile`] router broke.
    pub breaks: u64,
    /// The command word of every sentence a connection received after it broke, in order
    /// (what a client sent after the point it should have stopped).
    pub after_break: Vec<String>,
}

impl Stats {
    /// Sentences received with command word `command`.
    pub fn count(&self, command: &str) -> u64 {
        self.per_command.get(command).copied().unwrap_or(0)
    }
}

// ---------------------------------------------------------------------------------------------
// The server
// ---------------------------------------------------------------------------------------------

/// A running lab router. Dropping it (or [`RouterLab::shutdown`]) stops the accept loop and
/// every connection.
pub struct RouterLab {
    addr: SocketAddr,
    shared: Arc<Shared>,
    stop: watch::Sender<bool>,
    accept: Option<JoinHandle<()>>,
}

impl RouterLab {
    /// Binds 127.0.0.1 on a free port and serves in the current tokio runtime.
    pub async fn start(config: RouterConfig) -> io::Result<RouterLab> {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(Shared::new(config));
        let (stop, stopped) = watch::channel(false);
        let accept = tokio::spawn(accept_loop(listener, shared.clone(), stopped));
        Ok(RouterLab {
            addr,
            shared,
            stop,
            accept: Some(accept),
        })
    }

    /// The bound address (always on loopback).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The personality.
    pub fn version(&self) -> Version {
        self.shared.personality.version
    }

    /// Stops accepting, closes every connection and waits until all of it is gone. The state
    /// stays readable.
    pub async fn shutdown(&mut self) {
        let _ = self.stop.send(true);
        if let Some(accept) = self.accept.take() {
            let _ = accept.await;
        }
    }

    /// The secrets, in order.
    pub fn secrets(&self) -> Vec<Secret> {
        self.shared.state().secrets.clone()
    }

    /// The secret named `name`.
    pub fn secret(&self, name: &str) -> Option<Secret> {
        self.shared
            .state()
            .secrets
            .iter()
            .find(|s| s.name == name)
            .cloned()
    }

    /// Replaces the secrets. A secret with an empty id gets a new one; given ids are kept and
    /// later ids continue above them.
    ///
    /// # Panics
    /// On a duplicate name or id, or an id that is not `*HEX`: a broken test.
    pub fn set_secrets(&self, secrets: Vec<Secret>) {
        let mut state = self.shared.state();
        let mut names = std::collections::HashSet::new();
        let mut ids = std::collections::HashSet::new();
        for s in &secrets {
            assert!(
                names.insert(s.name.clone()),
                "duplicate secret {:?}",
                s.name
            );
            if !s.id.is_empty() {
                let n = parse_id(&s.id).unwrap_or_else(|| panic!("bad secret id {:?}", s.id));
                assert!(ids.insert(n), "duplicate secret id {:?}", s.id);
                state.next_secret = state.next_secret.max(n + 1);
            }
        }
        state.secrets = secrets;
        for i in 0..state.secrets.len() {
            if state.secrets[i].id.is_empty() {
                state.secrets[i].id = state.new_secret_id();
            }
        }
    }

    /// Adds a secret as if by hand on the router, returning its new id (a given id is replaced).
    ///
    /// # Panics
    /// When the name is taken.
    pub fn add_secret(&self, mut secret: Secret) -> String {
        let mut state = self.shared.state();
        assert!(
            state.secrets.iter().all(|s| s.name != secret.name),
            "duplicate secret {:?}",
            secret.name
        );
        secret.id = state.new_secret_id();
        state.secrets.push(secret.clone());
        secret.id
    }

    /// Edits the secret named `name` out of band; false when there is none.
    pub fn update_secret(&self, name: &str, edit: impl FnOnce(&mut Secret)) -> bool {
        let mut state = self.shared.state();
        match state.secrets.iter_mut().find(|s| s.name == name) {
            Some(s) => {
                edit(s);
                true
            }
            None => false,
        }
    }

    /// The profiles, built-in ones first.
    pub fn profiles(&self) -> Vec<Profile> {
        self.shared.state().profiles.clone()
    }

    /// Adds a profile, returning its id.
    pub fn add_profile(&self, name: &str) -> String {
        self.shared.state().add_profile(name)
    }

    /// Brings a PPPoE session up for `name` at `address`, returning its id (`*80000001`, ...).
    pub fn add_active(&self, name: &str, address: &str) -> String {
        let mut state = self.shared.state();
        let n = state.next_active;
        state.next_active += 1;
        let id = format!("*{n:X}");
        state.active.push(ActiveSession {
            id: id.clone(),
            name: name.into(),
            service: "pppoe".into(),
            caller_id: format!(
                "02:00:00:{:02X}:{:02X}:{:02X}",
                (n >> 16) & 0xFF,
                (n >> 8) & 0xFF,
                n & 0xFF
            ),
            address: address.into(),
            since: Instant::now(),
        });
        if let Some(s) = state.secrets.iter().find(|s| s.name == name) {
            let password = s.password.clone();
            state.dialed_with.insert(id.clone(), password);
        }
        id
    }

    /// The active sessions.
    pub fn active(&self) -> Vec<ActiveSession> {
        let mut state = self.shared.state();
        state.settle();
        state.active.clone()
    }

    /// What was received so far.
    pub fn stats(&self) -> Stats {
        self.shared.state().stats.clone()
    }

    /// Zeroes the counters.
    pub fn reset_stats(&self) {
        self.shared.state().stats = Stats::default();
    }

    /// The faults now in force (with their remaining `times`).
    pub fn faults(&self) -> Faults {
        self.shared.state().faults.clone()
    }

    /// Replaces the faults; new connections and new sentences see them at once.
    pub fn set_faults(&self, faults: Faults) {
        self.shared.state().faults = faults;
    }

    /// Changes the delay of each answer ([`RouterConfig::latency`]).
    pub fn set_latency(&self, latency: Duration) {
        self.shared.state().latency = latency;
    }

    /// Makes the router hostile from now on, or not (`None`); see [`RouterConfig::hostile`].
    pub fn set_hostile(&self, hostile: Option<Hostile>) {
        self.shared.state().hostile = hostile;
    }

    /// Runs `hook` after every write that took effect (`add`, `set`, `unset`, `remove`,
    /// `/ppp/active/remove`), with the router as it now is, before the write is answered: a
    /// process killed in the hook leaves the write done and unanswered, as a router whose
    /// answer was lost. Hooks run one at a time, in the order of the writes. Replaces an
    /// earlier hook.
    pub fn on_write(&self, hook: impl Fn(&RouterSnapshot) + Send + Sync + 'static) {
        *self.shared.hook() = Some(Arc::new(hook));
    }
}

impl Drop for RouterLab {
    fn drop(&mut self) {
        // The accept loop sees the signal (or the sender gone), closes the listener and
        // aborts every connection task.
        let _ = self.stop.send(true);
    }
}

/// What never changes after start.
struct Personality {
    version: Version,
    password_visible: bool,
    users: Vec<(String, String)>,
    legacy_login: bool,
}

impl Personality {
    fn bool_word(&self, b: bool) -> &'static str {
        match (self.version, b) {
            (Version::V6, true) => "yes",
            (Version::V6, false) => "no",
            (Version::V7, true) => "true",
            (Version::V7, false) => "false",
        }
    }

    fn never_logged_out(&self) -> &'static str {
        match self.version {
            Version::V6 => "jan/01/1970 00:00:00",
            Version::V7 => "1970-01-01 00:00:00",
        }
    }

    fn services(&self) -> &'static [&'static str] {
        match self.version {
            Version::V6 => &[
                "any", "async", "isdn", "l2tp", "ovpn", "pppoe", "pptp", "sstp",
            ],
            Version::V7 => &["any", "async", "l2tp", "ovpn", "pppoe", "pptp", "sstp"],
        }
    }
}

/// Shared by the accept loop, every connection and the test handle.
struct Shared {
    personality: Personality,
    state: Mutex<State>,
    /// Held while it runs, so that hooks run one at a time.
    on_write: Mutex<Option<WriteHook>>,
}

impl Shared {
    fn new(config: RouterConfig) -> Self {
        let mut state = State {
            secrets: Vec::new(),
            next_secret: 1,
            profiles: vec![
                builtin_profile("*0", "default"),
                builtin_profile("*FFFFFFFE", "default-encryption"),
            ],
            next_profile: 1,
            active: Vec::new(),
            next_active: 0x8000_0001,
            stats: Stats::default(),
            faults: config.faults,
            latency: config.latency,
            hostile: config.hostile,
            wrote: false,
            redial: config.redial,
            redials: Vec::new(),
            dialed_with: HashMap::new(),
        };
        for name in &config.profiles {
            state.add_profile(name);
        }
        Shared {
            personality: Personality {
                version: config.version,
                password_visible: config.password_visible,
                users: config.users,
                legacy_login: config.legacy_login,
            },
            state: Mutex::new(state),
            on_write: Mutex::new(None),
        }
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn hook(&self) -> MutexGuard<'_, Option<WriteHook>> {
        self.on_write.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Runs the write hook, if any, on the router as it now is.
    fn after_write(&self) {
        let hook = self.hook();
        let Some(run) = hook.as_ref() else { return };
        let snapshot = {
            let state = self.state();
            RouterSnapshot {
                secrets: state.secrets.clone(),
                active: state.active.clone(),
                stats: state.stats.clone(),
            }
        };
        run(&snapshot);
    }

    /// The hostile mode that applies to the answer to `cmd`, if the router is hostile and the
    /// connection armed.
    fn hostile_for(&self, session: &Session, cmd: &Sentence) -> Option<HostileMode> {
        let state = self.state();
        let h = state.hostile?;
        let armed = session.logged_in
            && cmd.head() != "/login"
            && match h.from {
                HostileFrom::Login => true,
                HostileFrom::FirstWrite => state.wrote,
            };
        armed.then_some(h.mode)
    }
}

fn builtin_profile(id: &str, name: &str) -> Profile {
    Profile {
        id: id.into(),
        name: name.into(),
        local_address: String::new(),
        remote_address: String::new(),
        rate_limit: String::new(),
        comment: String::new(),
        builtin: true,
    }
}

/// The router's configuration and the lab's counters.
struct State {
    secrets: Vec<Secret>,
    next_secret: u64,
    profiles: Vec<Profile>,
    next_profile: u64,
    active: Vec<ActiveSession>,
    next_active: u64,
    stats: Stats,
    faults: Faults,
    latency: Duration,
    hostile: Option<Hostile>,
    /// A write has taken effect ([`HostileFrom::FirstWrite`]).
    wrote: bool,
    /// [`RouterConfig::redial`].
    redial: Option<Duration>,
    /// Sessions disconnected that come back, when, and the password their CPE dials with.
    redials: Vec<(Instant, ActiveSession, Option<String>)>,
    /// The password each active session dialed with (by session id): its secret's when it
    /// came up.
    dialed_with: HashMap<String, String>,
}

impl State {
    /// Brings back the disconnected sessions whose redial is due, each with a new id, unless
    /// its secret is disabled, gone or has another password.
    fn settle(&mut self) {
        if self.redials.is_empty() {
            return;
        }
        let now = Instant::now();
        let (due, later): (Vec<_>, Vec<_>) = std::mem::take(&mut self.redials)
            .into_iter()
            .partition(|(at, _, _)| *at <= now);
        self.redials = later;
        for (at, mut session, password) in due {
            let allowed = self.secrets.iter().any(|s| {
                s.name == session.name && !s.disabled && Some(&s.password) == password.as_ref()
            });
            if allowed {
                session.id = format!("*{:X}", self.next_active);
                self.next_active += 1;
                session.since = at;
                if let Some(p) = password {
                    self.dialed_with.insert(session.id.clone(), p);
                }
                self.active.push(session);
            }
        }
    }

    fn new_secret_id(&mut self) -> String {
        let id = format!("*{:X}", self.next_secret);
        self.next_secret += 1;
        id
    }

    fn add_profile(&mut self, name: &str) -> String {
        let id = format!("*{:X}", self.next_profile);
        self.next_profile += 1;
        self.profiles.push(Profile {
            id: id.clone(),
            name: name.into(),
            builtin: false,
            ..builtin_profile("", "")
        });
        id
    }

    fn count(&mut self, command: &str) {
        self.stats.commands += 1;
        *self.stats.per_command.entry(command.into()).or_default() += 1;
    }

    /// Whether a connection that has now received `received` sentences is to be dropped.
    fn should_drop(&mut self, received: u64) -> bool {
        let Some(drop) = &mut self.faults.drop else {
            return false;
        };
        if received <= drop.after_sentences || drop.times == Some(0) {
            return false;
        }
        if let Some(t) = &mut drop.times {
            *t -= 1;
        }
        true
    }

    /// The injected trap for `cmd`, if one matches (spending one of its `times`).
    fn injected_trap(&mut self, cmd: &Sentence) -> Option<Trap> {
        let live = |f: &TrapFault| f.command == cmd.head() && f.times != Some(0);
        // Which names the command concerns is worked out only when a fault asks.
        let names = if self
            .faults
            .traps
            .iter()
            .any(|f| live(f) && f.name.is_some())
        {
            self.names_in(cmd)
        } else {
            Vec::new()
        };
        let fault = self
            .faults
            .traps
            .iter_mut()
            .find(|f| live(f) && f.name.as_ref().is_none_or(|n| names.contains(n)))?;
        if let Some(t) = &mut fault.times {
            *t -= 1;
        }
        Some(Trap::new(fault.category, &fault.message))
    }

    /// The names a command concerns: `=name=`, the names behind its ids, `?name=` queries.
    fn names_in(&self, cmd: &Sentence) -> Vec<String> {
        let mut names: Vec<String> = cmd.attr("name").map(Into::into).into_iter().collect();
        if let Some(ids) = cmd.attr(".id") {
            let ids: Vec<&str> = ids.split(',').collect();
            let wanted: HashSet<&str> = ids.iter().copied().collect();
            // A secret's name wins over a session's: the ids of the two menus may coincide.
            let mut by_id: HashMap<&str, &str> = HashMap::with_capacity(wanted.len());
            let sessions = self.active.iter().map(|a| (&a.id, &a.name));
            let secrets = self.secrets.iter().map(|s| (&s.id, &s.name));
            for (id, name) in sessions.chain(secrets) {
                if wanted.contains(id.as_str()) {
                    by_id.insert(id, name);
                }
            }
            names.extend(
                ids.iter()
                    .filter_map(|id| by_id.get(id).map(|n| n.to_string())),
            );
        }
        for q in cmd.queries() {
            if let Some(v) = q.strip_prefix("name=").or_else(|| q.strip_prefix("=name=")) {
                names.push(v.into());
            }
        }
        names
    }
}

async fn accept_loop(listener: TcpListener, shared: Arc<Shared>, mut stop: watch::Receiver<bool>) {
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            // A signal, or the RouterLab gone.
            _ = stop.changed() => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    shared.state().stats.connections += 1;
                    let _ = stream.set_nodelay(true);
                    let (read, write) = stream.into_split();
                    connections.spawn(serve_connection(read, write, shared.clone()));
                }
                // Out of descriptors and the like: wait instead of spinning.
                Err(_) => tokio::time::sleep(Duration::from_millis(10)).await,
            },
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
    drop(listener);
    connections.shutdown().await;
}

// ---------------------------------------------------------------------------------------------
// One connection: a reader queues sentences, an answerer runs them in order
// ---------------------------------------------------------------------------------------------

/// A received sentence waiting for its answer.
struct Queued {
    sentence: Sentence,
    /// When it arrived: its answer waits until then plus the latency.
    arrived: Instant,
    cancel: Arc<CancelFlag>,
    /// For `/cancel`: how many commands in flight it cancelled.
    cancelled: usize,
}

/// Set by `/cancel`; wakes a command waiting out its latency.
#[derive(Default)]
struct CancelFlag {
    set: AtomicBool,
    notify: Notify,
}

impl CancelFlag {
    fn cancel(&self) {
        self.set.store(true, AtomicOrdering::SeqCst);
        self.notify.notify_one();
    }

    fn is_set(&self) -> bool {
        self.set.load(AtomicOrdering::SeqCst)
    }
}

/// A command not answered yet: its `.tag` and its flag.
type Pending = (Option<String>, Arc<CancelFlag>);

/// The commands of one connection not answered yet.
#[derive(Default, Clone)]
struct Inflight(Arc<Mutex<Vec<Pending>>>);

impl Inflight {
    fn lock(&self) -> MutexGuard<'_, Vec<Pending>> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn start(&self, tag: Option<&str>) -> Arc<CancelFlag> {
        let flag = Arc::new(CancelFlag::default());
        self.lock().push((tag.map(Into::into), flag.clone()));
        flag
    }

    fn finish(&self, flag: &Arc<CancelFlag>) {
        self.lock().retain(|(_, f)| !Arc::ptr_eq(f, flag));
    }

    /// Cancels the commands tagged `tag` (every one when `None`); returns how many.
    fn cancel(&self, tag: Option<&str>) -> usize {
        let list = self.lock();
        let mut n = 0;
        for (t, flag) in list.iter() {
            if tag.is_none_or(|tag| t.as_deref() == Some(tag)) {
                flag.cancel();
                n += 1;
            }
        }
        n
    }
}

/// Serves one connection, given as its two halves (a TCP socket's, or an in-memory pipe's in
/// tests on the paused clock).
async fn serve_connection(
    read: impl AsyncRead + Unpin,
    write: impl AsyncWrite + Unpin,
    shared: Arc<Shared>,
) {
    let (queue, queued) = mpsc::unbounded_channel();
    let inflight = Inflight::default();
    let broke = Arc::new(AtomicBool::new(false));
    let reader = read_sentences(read, shared.clone(), queue, inflight.clone(), broke.clone());
    let answerer = answer_commands(queued, write, shared, inflight, broke);
    tokio::pin!(reader, answerer);
    tokio::select! {
        // `/quit`, a refused command before login, or the client gone: hang up now.
        () = &mut answerer => {}
        // End of input or a drop fault: answer what was received, then hang up.
        () = &mut reader => answerer.await,
    }
}

async fn read_sentences(
    mut read: impl AsyncRead + Unpin,
    shared: Arc<Shared>,
    queue: mpsc::UnboundedSender<Queued>,
    inflight: Inflight,
    broke: Arc<AtomicBool>,
) {
    let mut decoder = codec::Decoder::new(codec::SentenceLimits::default());
    let mut chunk = vec![0u8; 64 * 1024];
    let mut received = 0u64;
    loop {
        loop {
            let words = match decoder.next_sentence() {
                Ok(Some((words, _))) => words,
                Ok(None) => break,
                // A malformed stream: hang up, as the router does.
                Err(_) => return,
            };
            if words.is_empty() {
                continue;
            }
            let sentence = Sentence::from_raw(words);
            received += 1;
            {
                let mut state = shared.state();
                state.count(sentence.head());
                if broke.load(AtomicOrdering::SeqCst) {
                    state.stats.after_break.push(sentence.head().to_string());
                }
                if state.should_drop(received) {
                    return;
                }
            }
            let queued = if sentence.head() == "/cancel" {
                Queued {
                    arrived: Instant::now(),
                    cancelled: inflight.cancel(sentence.attr("tag")),
                    cancel: Arc::new(CancelFlag::default()),
                    sentence,
                }
            } else {
                Queued {
                    arrived: Instant::now(),
                    cancel: inflight.start(sentence.tag()),
                    cancelled: 0,
                    sentence,
                }
            };
            if queue.send(queued).is_err() {
                return;
            }
        }
        match read.read(&mut chunk).await {
            Ok(0) | Err(_) => return,
            Ok(n) => decoder.feed(&chunk[..n]),
        }
    }
}

async fn answer_commands(
    mut queued: mpsc::UnboundedReceiver<Queued>,
    mut write: impl AsyncWrite + Unpin,
    shared: Arc<Shared>,
    inflight: Inflight,
    broke: Arc<AtomicBool>,
) {
    let mut session = Session::default();
    let mut hostility = Hostility::new(broke);
    while let Some(q) = queued.recv().await {
        let latency = shared.state().latency;
        if !latency.is_zero() && !q.cancel.is_set() {
            tokio::select! {
                () = tokio::time::sleep_until(q.arrived + latency) => {}
                () = q.cancel.notify.notified() => {}
            }
        }
        inflight.finish(&q.cancel);
        let answered = if q.cancel.is_set() {
            let mut reply = Reply::new(q.sentence.tag());
            reply.trap(&Trap::new(Some(2), "interrupted"));
            Answered {
                reply: reply.done(None),
                hang_up: false,
                wrote: false,
            }
        } else {
            respond(&shared, &mut session, &q)
        };
        if answered.wrote {
            shared.after_write();
        }
        let Ok(bytes) = answered.reply.encode() else {
            return;
        };
        let mode = shared.hostile_for(&session, &q.sentence);
        let sent = match mode {
            None => write.write_all(&bytes).await.is_ok(),
            Some(mode) => {
                hostility
                    .answer(mode, &shared, &q.sentence, answered.reply, &mut write)
                    .await
            }
        };
        hostility.previous_tag = q.sentence.tag().map(Into::into);
        if !sent || answered.hang_up {
            return;
        }
    }
}

/// A hostile router's side of one connection.
struct Hostility {
    /// Set once the connection broke; the reader counts what arrives after.
    broke: Arc<AtomicBool>,
    /// A one-time mode has broken its answer.
    spent: bool,
    /// The tag of the command answered before (for a stray `!done`).
    previous_tag: Option<String>,
}

impl Hostility {
    fn new(broke: Arc<AtomicBool>) -> Self {
        Hostility {
            broke,
            spent: false,
            previous_tag: None,
        }
    }

    /// Marks the connection broken, counting it once.
    fn break_now(&self, shared: &Shared) {
        if !self.broke.swap(true, AtomicOrdering::SeqCst) {
            shared.state().stats.breaks += 1;
        }
    }

    /// Writes (or not) the answer to `cmd` as `mode` breaks it; false when the connection is
    /// to end (the client is gone).
    async fn answer(
        &mut self,
        mode: HostileMode,
        shared: &Shared,
        cmd: &Sentence,
        mut reply: Reply,
        write: &mut (impl AsyncWrite + Unpin),
    ) -> bool {
        let one_time = matches!(
            mode,
            HostileMode::StrayDone
                | HostileMode::UnknownTag
                | HostileMode::MissingTag
                | HostileMode::UnknownWord
                | HostileMode::Garbage
        );
        let is_print = cmd.head().ends_with("/print");
        if (one_time && self.spent) || (mode == HostileMode::Flood && !is_print) {
            return write_reply(write, &reply).await;
        }
        self.break_now(shared);
        self.spent = true;
        match mode {
            HostileMode::Drip => drip(write, &reply).await,
            HostileMode::Silent => true,
            HostileMode::Flood => flood(write, cmd.tag()).await,
            HostileMode::EndlessSentence => endless_sentence(write, cmd.tag()).await,
            HostileMode::StrayDone => {
                let mut stray = Reply::new(self.previous_tag.as_deref());
                stray.add("!done", Vec::new());
                write_reply(write, &stray).await && write_reply(write, &reply).await
            }
            HostileMode::UnknownTag => {
                reply.retag(Some("4294967295"));
                write_reply(write, &reply).await
            }
            HostileMode::MissingTag => {
                reply.retag(None);
                write_reply(write, &reply).await
            }
            HostileMode::UnknownWord => {
                if let Some(first) = reply.sentences.first_mut()
                    && let Some(head) = first.words.first_mut()
                {
                    *head = "!hostile".into();
                }
                write_reply(write, &reply).await
            }
            HostileMode::Garbage => {
                let Ok(mut bytes) = reply.encode() else {
                    return false;
                };
                bytes.extend_from_slice(GARBAGE);
                write.write_all(&bytes).await.is_ok()
            }
        }
    }
}

async fn write_reply(write: &mut (impl AsyncWrite + Unpin), reply: &Reply) -> bool {
    match reply.encode() {
        Ok(bytes) => write.write_all(&bytes).await.is_ok(),
        Err(_) => false,
    }
}

/// The answer one byte at a time, [`DRIP_INTERVAL`] apart.
async fn drip(write: &mut (impl AsyncWrite + Unpin), reply: &Reply) -> bool {
    let Ok(bytes) = reply.encode() else {
        return false;
    };
    for b in bytes {
        tokio::time::sleep(DRIP_INTERVAL).await;
        if write.write_all(&[b]).await.is_err() || write.flush().await.is_err() {
            return false;
        }
    }
    true
}

/// `!re` rows without end, a thousand per write, until the client is gone.
/// The words every flood row repeats, as a real secret row has them.
const FLOOD_FIELDS: [&str; 16] = [
    "=service=pppoe",
    "=caller-id=",
    "=profile=10M",
    "=local-address=",
    "=routes=",
    "=ipv6-routes=",
    "=limit-bytes-in=0",
    "=limit-bytes-out=0",
    "=last-logged-out=2026-11-30 12:00:00",
    "=last-caller-id=28:70:4E:A8:16:99",
    "=last-disconnect-reason=peer-request",
    "=disabled=false",
    "=comment=Tomatlan, a customer of the flood [wispctl]",
    "=remote-ipv6-prefix=",
    "=only-one=default",
    "=dynamic=false",
];

async fn flood(write: &mut (impl AsyncWrite + Unpin), tag: Option<&str>) -> bool {
    let mut reply = Reply::new(tag);
    for n in 1u64.. {
        // Rows as wide as a real `/ppp/secret/print`'s (about 20 words, 450 bytes): a flood
        // costs what the same bytes of real rows would.
        let mut words = vec![
            format!("=.id=*{n:X}"),
            format!("=name=flood.customer.{n}"),
            format!("=password=flood-password-{n}"),
            format!(
                "=remote-address=10.{}.{}.{}",
                n % 250,
                (n / 250) % 250,
                n % 200
            ),
        ];
        words.extend(FLOOD_FIELDS.iter().map(|w| w.to_string()));
        reply.add("!re", words);
        if n % 1000 == 0 {
            if !write_reply(write, &reply).await {
                return false;
            }
            reply.sentences.clear();
            tokio::task::yield_now().await;
        }
    }
    false
}

/// A `!re` sentence that never ends: its words, then 1 KiB words without end and never the
/// empty word, until the client is gone.
async fn endless_sentence(write: &mut (impl AsyncWrite + Unpin), tag: Option<&str>) -> bool {
    let mut start = Vec::new();
    let tag = tag.map(|t| format!(".tag={t}"));
    for w in std::iter::once("!re").chain(tag.as_deref()) {
        let _ = codec::encode_length(w.len(), &mut start);
        start.extend_from_slice(w.as_bytes());
    }
    if write.write_all(&start).await.is_err() {
        return false;
    }
    let word = format!("=comment={}", "x".repeat(1015));
    let mut bytes = Vec::new();
    let _ = codec::encode_length(word.len(), &mut bytes);
    bytes.extend_from_slice(word.as_bytes());
    loop {
        if write.write_all(&bytes).await.is_err() {
            return false;
        }
        tokio::task::yield_now().await;
    }
}

/// Login state of one connection.
#[derive(Default)]
struct Session {
    logged_in: bool,
    /// The legacy login's challenge, once issued.
    challenge: Option<[u8; 16]>,
}

/// The commands that change the router.
const WRITE_COMMANDS: &[&str] = &[
    "/ppp/secret/add",
    "/ppp/secret/set",
    "/ppp/secret/unset",
    "/ppp/secret/remove",
    "/ppp/active/remove",
];

/// The answer to one sentence.
struct Answered {
    reply: Reply,
    /// Hang up after it.
    hang_up: bool,
    /// A write took effect.
    wrote: bool,
}

impl Answered {
    fn reply(reply: Reply, hang_up: bool) -> Self {
        Answered {
            reply,
            hang_up,
            wrote: false,
        }
    }
}

/// The answer to one sentence.
fn respond(shared: &Shared, session: &mut Session, q: &Queued) -> Answered {
    let cmd = &q.sentence;
    let mut reply = Reply::new(cmd.tag());
    match cmd.head() {
        "/quit" => {
            reply.fatal("session terminated on request");
            return Answered::reply(reply, true);
        }
        "/login" => return Answered::reply(login(&shared.personality, session, cmd), false),
        _ if !session.logged_in => {
            reply.trap(&Trap::new(Some(5), "not logged in"));
            return Answered::reply(reply.done(None), true);
        }
        "/cancel" if q.cancelled == 0 && cmd.attr("tag").is_some() => {
            reply.trap(&Trap::new(Some(0), "no such tag"));
            return Answered::reply(reply.done(None), false);
        }
        "/cancel" => return Answered::reply(reply.done(None), false),
        _ => {}
    }
    let mut state = shared.state();
    if let Some(trap) = state.injected_trap(cmd) {
        reply.trap(&trap);
        return Answered::reply(reply.done(None), false);
    }
    state.settle();
    match run_command(&mut state, &shared.personality, cmd) {
        Ok(Answer::Rows(rows)) => {
            for row in &rows {
                reply.row(row);
            }
            if rows.is_empty() && shared.personality.version == Version::V7 {
                reply.add("!empty", Vec::new());
            }
            Answered::reply(reply.done(None), false)
        }
        Ok(Answer::Done(ret)) => {
            let wrote = WRITE_COMMANDS.contains(&cmd.head());
            state.wrote |= wrote;
            Answered {
                reply: reply.done(ret.as_deref()),
                hang_up: false,
                wrote,
            }
        }
        Err(trap) => {
            reply.trap(&trap);
            Answered::reply(reply.done(None), false)
        }
    }
}

fn login(p: &Personality, session: &mut Session, cmd: &Sentence) -> Reply {
    let mut reply = Reply::new(cmd.tag());
    let user = cmd
        .attr("name")
        .and_then(|name| p.users.iter().find(|(u, _)| u == name));
    let ok = if p.legacy_login {
        let Some(response) = cmd.attr("response") else {
            let mut challenge = [0u8; 16];
            getrandom::fill(&mut challenge).expect("the OS random source");
            session.challenge = Some(challenge);
            return reply.done(Some(&hex::encode(challenge)));
        };
        match (user, session.challenge.take()) {
            (Some((_, password)), Some(challenge)) => {
                response.eq_ignore_ascii_case(&md5_response(password, &challenge))
            }
            _ => false,
        }
    } else {
        user.zip(cmd.attr("password"))
            .is_some_and(|((_, password), given)| password == given)
    };
    if ok {
        session.logged_in = true;
        reply.done(None)
    } else {
        reply.trap(&Trap::new(None, "cannot log in"));
        reply.done(None)
    }
}

/// `00` and the hex MD5 of a zero byte, the password and the challenge.
fn md5_response(password: &str, challenge: &[u8]) -> String {
    let mut md5 = Md5::new();
    md5.update([0u8]);
    md5.update(password.as_bytes());
    md5.update(challenge);
    format!("00{}", hex::encode(md5.finalize()))
}

/// Reply sentences of one command, each carrying its `.tag`.
struct Reply {
    tag: Option<String>,
    sentences: Vec<Sentence>,
}

impl Reply {
    fn new(tag: Option<&str>) -> Self {
        Reply {
            tag: tag.map(Into::into),
            sentences: Vec::new(),
        }
    }

    fn add(&mut self, head: &str, attrs: Vec<String>) {
        let mut words = vec![head.to_string()];
        words.extend(self.tag.as_ref().map(|t| format!(".tag={t}")));
        words.extend(attrs);
        self.sentences.push(Sentence::new(words));
    }

    fn row(&mut self, row: &Row) {
        self.add("!re", row.words());
    }

    fn trap(&mut self, trap: &Trap) {
        let mut attrs: Vec<String> = trap
            .category
            .map(|c| format!("=category={c}"))
            .into_iter()
            .collect();
        attrs.push(format!("=message={}", trap.message));
        self.add("!trap", attrs);
    }

    /// Every sentence's `.tag` replaced by `tag` (`None`: removed).
    fn retag(&mut self, tag: Option<&str>) {
        for s in &mut self.sentences {
            s.words.retain(|w| !w.starts_with(".tag="));
            if let Some(t) = tag {
                s.words.insert(1.min(s.words.len()), format!(".tag={t}"));
            }
        }
    }

    fn fatal(&mut self, reason: &str) {
        self.sentences.push(Sentence::new(["!fatal", reason]));
    }

    fn done(mut self, ret: Option<&str>) -> Self {
        let attrs = ret.map(|r| format!("=ret={r}")).into_iter().collect();
        self.add("!done", attrs);
        self
    }

    fn encode(&self) -> Result<Vec<u8>, codec::CodecError> {
        let mut out = Vec::new();
        for s in &self.sentences {
            out.extend(s.encode()?);
        }
        Ok(out)
    }
}

// ---------------------------------------------------------------------------------------------
// Commands
// ---------------------------------------------------------------------------------------------

/// A `!trap`.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Trap {
    category: Option<u8>,
    message: String,
}

impl Trap {
    fn new(category: Option<u8>, message: &str) -> Self {
        Trap {
            category,
            message: message.into(),
        }
    }
}

fn unknown_parameter(key: &str) -> Trap {
    Trap::new(Some(1), &format!("unknown parameter {key}"))
}

fn invalid_value(key: &str) -> Trap {
    Trap::new(Some(1), &format!("invalid value for argument {key}"))
}

fn no_such_item() -> Trap {
    Trap::new(None, "no such item (4)")
}

fn duplicate_name() -> Trap {
    Trap::new(None, "failure: secret with the same name already exists")
}

/// What a command answers besides `!done`.
enum Answer {
    /// `!re` rows (a print).
    Rows(Vec<Row>),
    /// `!done`, with `=ret=` when given.
    Done(Option<String>),
}

fn run_command(state: &mut State, p: &Personality, cmd: &Sentence) -> Result<Answer, Trap> {
    match cmd.head() {
        "/ppp/secret/print" => print(state.secrets.iter().map(|s| secret_row(s, p)), cmd),
        "/ppp/secret/add" => secret_add(state, p, cmd),
        "/ppp/secret/set" => secret_set(state, p, cmd),
        "/ppp/secret/unset" => secret_unset(state, p, cmd),
        "/ppp/secret/remove" => secret_remove(state, cmd),
        "/ppp/active/print" => print(state.active.iter().map(active_row), cmd),
        "/ppp/active/remove" => active_remove(state, cmd),
        "/ppp/profile/print" => print(state.profiles.iter().map(|r| profile_row(r, p)), cmd),
        _ => Err(Trap::new(Some(0), "no such command prefix")),
    }
}

/// The arguments `print` takes.
const PRINT_ARGS: &[&str] = &[".proplist", "count-only", "detail", "without-paging"];

fn print(rows: impl Iterator<Item = Row>, cmd: &Sentence) -> Result<Answer, Trap> {
    if let Some((key, _)) = cmd.attrs().find(|(k, _)| !PRINT_ARGS.contains(k)) {
        return Err(unknown_parameter(key));
    }
    let queries: Vec<Query> = cmd.queries().map(Query::parse).collect();
    let proplist: Option<Vec<&str>> = cmd.attr(".proplist").map(|l| l.split(',').collect());
    let mut out = Vec::new();
    for row in rows {
        if query_matches(&queries, &row)? {
            out.push(match &proplist {
                Some(keys) => row.only(keys),
                None => row,
            });
        }
    }
    if cmd.attr("count-only").is_some() {
        return Ok(Answer::Done(Some(out.len().to_string())));
    }
    Ok(Answer::Rows(out))
}

/// What a secret field may be set to.
struct Rules<'a> {
    personality: &'a Personality,
    profiles: &'a [Profile],
}

fn secret_add(state: &mut State, p: &Personality, cmd: &Sentence) -> Result<Answer, Trap> {
    let rules = Rules {
        personality: p,
        profiles: &state.profiles,
    };
    let mut secret = Secret::default();
    for (key, value) in cmd.attrs() {
        apply_attr(&mut secret, key, value, &rules)?;
    }
    if secret.name.is_empty() {
        return Err(invalid_value("name"));
    }
    if state.secrets.iter().any(|s| s.name == secret.name) {
        return Err(duplicate_name());
    }
    secret.id = state.new_secret_id();
    let id = secret.id.clone();
    state.secrets.push(secret);
    Ok(Answer::Done(Some(id)))
}

fn secret_set(state: &mut State, p: &Personality, cmd: &Sentence) -> Result<Answer, Trap> {
    let at = positions(&state.secrets, |s| &s.id, &ids_of(cmd)?)?;
    let rules = Rules {
        personality: p,
        profiles: &state.profiles,
    };
    let mut edited = Vec::new();
    for &i in &at {
        let mut secret = state.secrets[i].clone();
        for (key, value) in cmd.attrs().filter(|(k, _)| *k != ".id") {
            apply_attr(&mut secret, key, value, &rules)?;
        }
        edited.push((i, secret));
    }
    commit_secrets(&mut state.secrets, edited)
}

fn secret_unset(state: &mut State, p: &Personality, cmd: &Sentence) -> Result<Answer, Trap> {
    let at = positions(&state.secrets, |s| &s.id, &ids_of(cmd)?)?;
    if let Some((key, _)) = cmd.attrs().find(|(k, _)| *k != ".id" && *k != "value-name") {
        return Err(unknown_parameter(key));
    }
    let field = cmd
        .attr("value-name")
        .ok_or_else(|| Trap::new(None, "missing =value-name="))?;
    let rules = Rules {
        personality: p,
        profiles: &state.profiles,
    };
    let mut edited = Vec::new();
    for &i in &at {
        let mut secret = state.secrets[i].clone();
        clear_field(&mut secret, field, &rules)?;
        edited.push((i, secret));
    }
    commit_secrets(&mut state.secrets, edited)
}

fn secret_remove(state: &mut State, cmd: &Sentence) -> Result<Answer, Trap> {
    let at = positions(&state.secrets, |s| &s.id, &ids_of(cmd)?)?;
    only_id_attr(cmd)?;
    remove_at(&mut state.secrets, at);
    Ok(Answer::Done(None))
}

fn active_remove(state: &mut State, cmd: &Sentence) -> Result<Answer, Trap> {
    let at = positions(&state.active, |a| &a.id, &ids_of(cmd)?)?;
    only_id_attr(cmd)?;
    if let Some(after) = state.redial {
        let due = Instant::now() + after;
        let mut once = at.clone();
        once.sort_unstable();
        once.dedup();
        let back: Vec<_> = once
            .into_iter()
            .map(|i| {
                let session = state.active[i].clone();
                let password = state.dialed_with.remove(&session.id);
                (due, session, password)
            })
            .collect();
        state.redials.extend(back);
    }
    remove_at(&mut state.active, at);
    Ok(Answer::Done(None))
}

/// Stores edited secrets unless one would take another's name.
fn commit_secrets(secrets: &mut [Secret], edited: Vec<(usize, Secret)>) -> Result<Answer, Trap> {
    for (n, (i, secret)) in edited.iter().enumerate() {
        let taken_by_other = secrets
            .iter()
            .enumerate()
            .any(|(j, s)| j != *i && s.name == secret.name && !edited.iter().any(|(k, _)| *k == j));
        let taken_by_edited = edited[..n].iter().any(|(_, s)| s.name == secret.name);
        if taken_by_other || taken_by_edited {
            return Err(duplicate_name());
        }
    }
    for (i, secret) in edited {
        secrets[i] = secret;
    }
    Ok(Answer::Done(None))
}

/// The ids of `=.id=*1,*2`.
fn ids_of(cmd: &Sentence) -> Result<Vec<&str>, Trap> {
    let ids = cmd
        .attr(".id")
        .ok_or_else(|| Trap::new(None, "missing =.id="))?;
    Ok(ids.split(',').filter(|id| !id.is_empty()).collect())
}

fn only_id_attr(cmd: &Sentence) -> Result<(), Trap> {
    match cmd.attrs().find(|(k, _)| *k != ".id") {
        Some((key, _)) => Err(unknown_parameter(key)),
        None => Ok(()),
    }
}

/// Where each id is, or `no such item` when one is missing. One pass over the items, however
/// many ids (a batched remove of a whole prune).
fn positions<T>(items: &[T], id: impl Fn(&T) -> &str, ids: &[&str]) -> Result<Vec<usize>, Trap> {
    if ids.is_empty() {
        return Err(no_such_item());
    }
    let wanted: HashSet<&str> = ids.iter().copied().collect();
    let mut at: HashMap<&str, usize> = HashMap::with_capacity(wanted.len());
    for (i, item) in items.iter().enumerate() {
        let item_id = id(item);
        if wanted.contains(item_id) {
            // The first one, as a search from the start would find.
            at.entry(item_id).or_insert(i);
        }
    }
    ids.iter()
        .map(|want| at.get(want).copied().ok_or_else(no_such_item))
        .collect()
}

fn remove_at<T>(items: &mut Vec<T>, mut at: Vec<usize>) {
    at.sort_unstable();
    at.dedup();
    for i in at.into_iter().rev() {
        items.remove(i);
    }
}

/// `=field=value`, or `=!field=` which clears the field.
fn apply_attr(secret: &mut Secret, key: &str, value: &str, rules: &Rules) -> Result<(), Trap> {
    match key.strip_prefix('!') {
        Some(field) => clear_field(secret, field, rules),
        None => set_field(secret, key, value, rules),
    }
}

/// Resets a field to its default (`unset`, `=!field=`).
fn clear_field(secret: &mut Secret, key: &str, rules: &Rules) -> Result<(), Trap> {
    let default = match key {
        "service" => "any",
        "profile" => "default",
        "limit-bytes-in" | "limit-bytes-out" => "0",
        "disabled" => "no",
        _ => "",
    };
    set_field(secret, key, default, rules)
}

fn set_field(secret: &mut Secret, key: &str, value: &str, rules: &Rules) -> Result<(), Trap> {
    let v7 = rules.personality.version == Version::V7;
    let text = value.to_string();
    match key {
        "name" if value.is_empty() => return Err(invalid_value(key)),
        "name" => secret.name = text,
        "password" => secret.password = text,
        "service" if rules.personality.services().contains(&value) => secret.service = text,
        "service" => return Err(invalid_value(key)),
        "profile" if rules.profiles.iter().any(|p| p.name == value) => secret.profile = text,
        "profile" => {
            return Err(Trap::new(
                Some(1),
                "input does not match any value of profile",
            ));
        }
        "local-address" => secret.local_address = ipv4_or_empty(key, value)?,
        "remote-address" => secret.remote_address = ipv4_or_empty(key, value)?,
        "routes" => secret.routes = text,
        "caller-id" => secret.caller_id = text,
        "comment" => secret.comment = text,
        "limit-bytes-in" => {
            secret.limit_bytes_in = value.parse().map_err(|_| invalid_value(key))?
        }
        "limit-bytes-out" => {
            secret.limit_bytes_out = value.parse().map_err(|_| invalid_value(key))?;
        }
        "disabled" => secret.disabled = parse_bool(value).ok_or_else(|| invalid_value(key))?,
        "ipv6-routes" if v7 => secret.ipv6_routes = text,
        "remote-ipv6-prefix" if v7 => secret.remote_ipv6_prefix = text,
        _ => return Err(unknown_parameter(key)),
    }
    Ok(())
}

fn ipv4_or_empty(key: &str, value: &str) -> Result<String, Trap> {
    if value.is_empty() || value.parse::<Ipv4Addr>().is_ok() {
        Ok(value.into())
    } else {
        Err(invalid_value(key))
    }
}

fn parse_bool(value: &str) -> Option<bool> {
    match value {
        "yes" | "true" => Some(true),
        "no" | "false" => Some(false),
        _ => None,
    }
}

/// `*1A` as a number.
fn parse_id(id: &str) -> Option<u64> {
    u64::from_str_radix(id.strip_prefix('*')?, 16).ok()
}

// ---------------------------------------------------------------------------------------------
// Rows and queries
// ---------------------------------------------------------------------------------------------

/// One printed item: its properties in RouterOS's order.
#[derive(Debug, Clone, Default)]
struct Row(Vec<(&'static str, String)>);

impl Row {
    fn put(&mut self, key: &'static str, value: impl Into<String>) {
        self.0.push((key, value.into()));
    }

    /// Only when set: RouterOS leaves unset optional properties out.
    fn put_set(&mut self, key: &'static str, value: &str) {
        if !value.is_empty() {
            self.put(key, value);
        }
    }

    fn get(&self, key: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| *k == key)
            .map(|(_, v)| v.as_str())
    }

    /// The row cut down to `.proplist`.
    fn only(mut self, keys: &[&str]) -> Row {
        self.0.retain(|(k, _)| keys.contains(k));
        self
    }

    fn words(&self) -> Vec<String> {
        self.0.iter().map(|(k, v)| format!("={k}={v}")).collect()
    }
}

fn secret_row(s: &Secret, p: &Personality) -> Row {
    let v7 = p.version == Version::V7;
    let mut row = Row::default();
    row.put(".id", &s.id);
    row.put("name", &s.name);
    row.put("service", &s.service);
    row.put("caller-id", &s.caller_id);
    if p.password_visible {
        row.put("password", &s.password);
    }
    row.put("profile", &s.profile);
    row.put_set("local-address", &s.local_address);
    row.put_set("remote-address", &s.remote_address);
    row.put("routes", &s.routes);
    if v7 {
        row.put("ipv6-routes", &s.ipv6_routes);
        row.put_set("remote-ipv6-prefix", &s.remote_ipv6_prefix);
    }
    row.put("limit-bytes-in", s.limit_bytes_in.to_string());
    row.put("limit-bytes-out", s.limit_bytes_out.to_string());
    row.put(
        "last-logged-out",
        if s.last_logged_out.is_empty() {
            p.never_logged_out()
        } else {
            &s.last_logged_out
        },
    );
    row.put_set("last-caller-id", &s.last_caller_id);
    row.put_set("last-disconnect-reason", &s.last_disconnect_reason);
    row.put("disabled", p.bool_word(s.disabled));
    row.put_set("comment", &s.comment);
    row
}

fn active_row(a: &ActiveSession) -> Row {
    let mut row = Row::default();
    row.put(".id", &a.id);
    row.put("name", &a.name);
    row.put("service", &a.service);
    row.put("caller-id", &a.caller_id);
    row.put("address", &a.address);
    row.put("uptime", uptime(a.since.elapsed()));
    row
}

fn profile_row(r: &Profile, p: &Personality) -> Row {
    let mut row = Row::default();
    row.put(".id", &r.id);
    row.put("name", &r.name);
    row.put_set("local-address", &r.local_address);
    row.put_set("remote-address", &r.remote_address);
    row.put_set("rate-limit", &r.rate_limit);
    row.put("only-one", "default");
    row.put("default", p.bool_word(r.builtin));
    row.put_set("comment", &r.comment);
    row
}

/// RouterOS's duration format: `1w2d3h4m5s`, `0s`.
fn uptime(d: Duration) -> String {
    let mut left = d.as_secs();
    let mut out = String::new();
    for (unit, secs) in [
        ("w", 604_800),
        ("d", 86_400),
        ("h", 3_600),
        ("m", 60),
        ("s", 1),
    ] {
        let n = left / secs;
        left %= secs;
        if n > 0 {
            out.push_str(&format!("{n}{unit}"));
        }
    }
    if out.is_empty() { "0s".into() } else { out }
}

/// One query word of a print.
#[derive(Debug, PartialEq, Eq)]
enum Query {
    /// `?name`
    Has(String),
    /// `?-name`
    Lacks(String),
    /// `?name=x`, `?=name=x`
    Equals(String, String),
    /// `?<name=x`
    Less(String, String),
    /// `?>name=x`
    Greater(String, String),
    /// `?#|&!`
    Ops(String),
}

impl Query {
    /// From a query word without its `?`.
    fn parse(word: &str) -> Query {
        let pair = |s: &str| {
            let (k, v) = s.split_once('=').unwrap_or((s, ""));
            (k.to_string(), v.to_string())
        };
        if let Some(ops) = word.strip_prefix('#') {
            Query::Ops(ops.into())
        } else if let Some(key) = word.strip_prefix('-') {
            Query::Lacks(key.into())
        } else if let Some(rest) = word.strip_prefix('<') {
            let (k, v) = pair(rest);
            Query::Less(k, v)
        } else if let Some(rest) = word.strip_prefix('>') {
            let (k, v) = pair(rest);
            Query::Greater(k, v)
        } else if let Some(rest) = word.strip_prefix('=') {
            let (k, v) = pair(rest);
            Query::Equals(k, v)
        } else if word.contains('=') {
            let (k, v) = pair(word);
            Query::Equals(k, v)
        } else {
            Query::Has(word.into())
        }
    }
}

/// Runs the query stack machine over one row; an empty query matches everything.
fn query_matches(queries: &[Query], row: &Row) -> Result<bool, Trap> {
    let invalid = || Trap::new(Some(1), "invalid query");
    let mut stack: Vec<bool> = Vec::new();
    for q in queries {
        match q {
            Query::Has(k) => stack.push(row.get(k).is_some()),
            Query::Lacks(k) => stack.push(row.get(k).is_none()),
            Query::Equals(k, v) => stack.push(same_value(row.get(k).unwrap_or(""), v)),
            Query::Less(k, v) => {
                stack.push(row.get(k).is_some_and(|x| compare(x, v) == Ordering::Less));
            }
            Query::Greater(k, v) => {
                stack.push(
                    row.get(k)
                        .is_some_and(|x| compare(x, v) == Ordering::Greater),
                );
            }
            Query::Ops(ops) => {
                for op in ops.chars() {
                    match op {
                        '!' => {
                            let top = stack.pop().ok_or_else(invalid)?;
                            stack.push(!top);
                        }
                        '|' | '&' => {
                            let b = stack.pop().ok_or_else(invalid)?;
                            let a = stack.pop().ok_or_else(invalid)?;
                            stack.push(if op == '|' { a || b } else { a && b });
                        }
                        _ => return Err(invalid()),
                    }
                }
            }
        }
    }
    Ok(stack.into_iter().all(|b| b))
}

/// Equality as RouterOS compares typed values: `yes` is `true`.
fn same_value(a: &str, b: &str) -> bool {
    match (parse_bool(a), parse_bool(b)) {
        (Some(x), Some(y)) => x == y,
        _ => a == b,
    }
}

/// Numbers and `*HEX` ids numerically, anything else as text.
fn compare(a: &str, b: &str) -> Ordering {
    if let (Ok(x), Ok(y)) = (a.parse::<u64>(), b.parse::<u64>()) {
        return x.cmp(&y);
    }
    if let (Some(x), Some(y)) = (parse_id(a), parse_id(b)) {
        return x.cmp(&y);
    }
    a.cmp(b)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::net::TcpStream;
    use tokio::time::timeout;

    const WAIT: Duration = Duration::from_secs(5);

    /// What a test client talks over: a TCP socket, or an in-memory pipe.
    trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
    impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

    /// A raw API client over the codec: sends words, reads sentences.
    struct Client {
        stream: Box<dyn Io>,
        buf: Vec<u8>,
    }

    impl Client {
        async fn connect(lab: &RouterLab) -> Client {
            Client {
                stream: Box::new(TcpStream::connect(lab.addr()).await.unwrap()),
                buf: Vec::new(),
            }
        }

        /// A connection over an in-memory pipe, served like a TCP one: no socket, so a test on
        /// tokio's paused clock sees only the lab's own timers (its latency) advance time.
        fn in_memory(lab: &RouterLab) -> Client {
            let (client, server) = tokio::io::duplex(64 * 1024);
            let (read, write) = tokio::io::split(server);
            tokio::spawn(serve_connection(read, write, lab.shared.clone()));
            Client {
                stream: Box::new(client),
                buf: Vec::new(),
            }
        }

        /// Connected and logged in as admin/pw.
        async fn logged_in(lab: &RouterLab) -> Client {
            let c = Client::connect(lab).await;
            c.login().await
        }

        /// Logged in as admin/pw.
        async fn login(mut self) -> Client {
            let r = self.call(&["/login", "=name=admin", "=password=pw"]).await;
            assert_eq!(lines(&r), ["!done"]);
            self
        }

        async fn send(&mut self, words: &[&str]) {
            let bytes = Sentence::new(words.iter().copied()).encode().unwrap();
            self.stream.write_all(&bytes).await.unwrap();
        }

        /// The next sentence; `None` when the server closed the connection.
        async fn read(&mut self) -> Option<Sentence> {
            loop {
                if let Some((words, used)) = codec::decode_sentence(&self.buf).unwrap() {
                    self.buf.drain(..used);
                    return Some(Sentence::from_raw(words));
                }
                let mut chunk = [0u8; 4096];
                let n = timeout(WAIT, self.stream.read(&mut chunk))
                    .await
                    .expect("the lab answered in time")
                    .unwrap_or(0);
                if n == 0 {
                    return None;
                }
                self.buf.extend_from_slice(&chunk[..n]);
            }
        }

        /// Sentences up to and including `!done` (or `!fatal`, or the end of the stream).
        async fn read_reply(&mut self) -> Vec<Sentence> {
            let mut out = Vec::new();
            while let Some(s) = self.read().await {
                let end = matches!(s.head(), "!done" | "!fatal");
                out.push(s);
                if end {
                    break;
                }
            }
            out
        }

        async fn call(&mut self, words: &[&str]) -> Vec<Sentence> {
            self.send(words).await;
            self.read_reply().await
        }

        /// True once the server has closed the connection.
        async fn closed(&mut self) -> bool {
            self.read().await.is_none()
        }

        /// Whatever bytes arrive within `wait` (after the ones already buffered), up to about
        /// `max` of them (a flood never pauses: on the paused clock only a full pipe lets
        /// time move).
        async fn read_bytes(&mut self, wait: Duration, max: usize) -> Vec<u8> {
            let mut out = std::mem::take(&mut self.buf);
            let deadline = Instant::now() + wait;
            let mut chunk = [0u8; 4096];
            while out.len() < max
                && let Ok(Ok(n)) =
                    tokio::time::timeout_at(deadline, self.stream.read(&mut chunk)).await
                && n > 0
            {
                out.extend_from_slice(&chunk[..n]);
            }
            out
        }
    }

    /// Each sentence as its words joined by spaces.
    fn lines(reply: &[Sentence]) -> Vec<String> {
        reply.iter().map(|s| s.words.join(" ")).collect()
    }

    fn rows(reply: &[Sentence]) -> Vec<&Sentence> {
        reply.iter().filter(|s| s.head() == "!re").collect()
    }

    fn names(reply: &[Sentence]) -> Vec<&str> {
        rows(reply).iter().filter_map(|s| s.attr("name")).collect()
    }

    fn config(version: Version) -> RouterConfig {
        RouterConfig {
            profiles: vec!["Morosos".into()],
            ..RouterConfig::new(version).with_user("admin", "pw")
        }
    }

    async fn lab(version: Version) -> RouterLab {
        RouterLab::start(config(version)).await.unwrap()
    }

    /// A lab holding juan.perez (*1), maria (*2), pedro (*3).
    async fn seeded(version: Version) -> RouterLab {
        let lab = lab(version).await;
        lab.add_secret(Secret {
            comment: "casa 12".into(),
            ..Secret::new("juan.perez", "j1")
        });
        lab.add_secret(Secret {
            profile: "Morosos".into(),
            ..Secret::new("maria", "m1")
        });
        lab.add_secret(Secret {
            disabled: true,
            ..Secret::new("pedro", "p1")
        });
        lab
    }

    #[tokio::test]
    async fn plain_login_succeeds_and_fails_like_the_reference() {
        let lab = lab(Version::V7).await;
        let mut c = Client::connect(&lab).await;
        let r = c.call(&["/login", "=name=admin", "=password=wrong"]).await;
        assert_eq!(lines(&r), ["!trap =message=cannot log in", "!done"]);
        let r = c.call(&["/login", "=name=nobody", "=password=pw"]).await;
        assert_eq!(lines(&r), ["!trap =message=cannot log in", "!done"]);
        // A bare /login on a modern router is a failed login, not a challenge.
        let r = c.call(&["/login"]).await;
        assert_eq!(lines(&r), ["!trap =message=cannot log in", "!done"]);
        let r = c.call(&["/login", "=name=admin", "=password=pw"]).await;
        assert_eq!(lines(&r), ["!done"]);
        let r = c.call(&["/ppp/secret/print"]).await;
        assert_eq!(lines(&r), ["!empty", "!done"]);
    }

    #[tokio::test]
    async fn legacy_login_uses_the_md5_challenge() {
        let lab = RouterLab::start(RouterConfig {
            legacy_login: true,
            ..config(Version::V6)
        })
        .await
        .unwrap();
        let mut c = Client::connect(&lab).await;
        // A modern client's first step gets the challenge, which is how it detects the router.
        let r = c.call(&["/login", "=name=admin", "=password=pw"]).await;
        assert_eq!(r.len(), 1);
        let challenge = r[0].attr("ret").unwrap().to_string();
        assert_eq!(challenge.len(), 32);
        assert!(challenge.bytes().all(|b| b.is_ascii_hexdigit()));
        // A wrong response fails and spends the challenge.
        let r = c
            .call(&["/login", "=name=admin", "=response=00deadbeef"])
            .await;
        assert_eq!(lines(&r), ["!trap =message=cannot log in", "!done"]);
        // The right response to a used challenge fails too.
        let bytes = hex::decode(&challenge).unwrap();
        let response = format!("=response={}", md5_response("pw", &bytes));
        let r = c.call(&["/login", "=name=admin", &response]).await;
        assert_eq!(lines(&r), ["!trap =message=cannot log in", "!done"]);
        // A fresh challenge and the right response: in.
        let r = c.call(&["/login"]).await;
        let challenge = hex::decode(r[0].attr("ret").unwrap()).unwrap();
        let response = format!("=response={}", md5_response("pw", &challenge));
        assert!(response.starts_with("=response=00") && response.len() == 10 + 34);
        let r = c.call(&["/login", "=name=admin", &response]).await;
        assert_eq!(lines(&r), ["!done"]);
        let r = c.call(&["/ppp/secret/print"]).await;
        assert_eq!(lines(&r), ["!done"], "v6 has no !empty");
    }

    #[test]
    fn md5_response_matches_a_known_value() {
        // md5(0x00 "pw" 0x00..0x0f), computed independently with Python's hashlib.
        let challenge: Vec<u8> = (0u8..16).collect();
        assert_eq!(
            md5_response("pw", &challenge),
            format!(
                "00{}",
                hex::encode(Md5::digest(
                    b"\x00pw\x00\x01\x02\x03\x04\x05\x06\x07\x08\x09\x0a\x0b\x0c\x0d\x0e\x0f"
                ))
            )
        );
    }

    #[tokio::test]
    async fn a_command_before_login_is_refused_and_the_connection_closed() {
        let lab = seeded(Version::V7).await;
        let mut c = Client::connect(&lab).await;
        let r = c.call(&["/ppp/secret/print", ".tag=3"]).await;
        assert_eq!(
            lines(&r),
            [
                "!trap .tag=3 =category=5 =message=not logged in",
                "!done .tag=3"
            ]
        );
        assert!(c.closed().await);
    }

    #[tokio::test]
    async fn add_print_set_unset_remove_round_trip() {
        let lab = lab(Version::V7).await;
        let mut c = Client::logged_in(&lab).await;
        let r = c
            .call(&[
                "/ppp/secret/add",
                "=name=juan.perez",
                "=password=a=b",
                "=service=pppoe",
                "=remote-address=10.0.0.2",
                "=comment=casa 12",
            ])
            .await;
        assert_eq!(lines(&r), ["!done =ret=*1"]);
        let r = c.call(&["/ppp/secret/add", "=name=maria"]).await;
        assert_eq!(lines(&r), ["!done =ret=*2"]);

        let r = c.call(&["/ppp/secret/print"]).await;
        assert_eq!(
            lines(&r),
            [
                "!re =.id=*1 =name=juan.perez =service=pppoe =caller-id= =password=a=b \
                 =profile=default =remote-address=10.0.0.2 =routes= =ipv6-routes= \
                 =limit-bytes-in=0 =limit-bytes-out=0 =last-logged-out=1970-01-01 00:00:00 \
                 =disabled=false =comment=casa 12",
                "!re =.id=*2 =name=maria =service=any =caller-id= =password= =profile=default \
                 =routes= =ipv6-routes= =limit-bytes-in=0 =limit-bytes-out=0 \
                 =last-logged-out=1970-01-01 00:00:00 =disabled=false",
                "!done",
            ]
        );

        let r = c
            .call(&[
                "/ppp/secret/set",
                "=.id=*1",
                "=profile=Morosos",
                "=disabled=yes",
                "=limit-bytes-in=1000",
                "=!comment=",
            ])
            .await;
        assert_eq!(lines(&r), ["!done"]);
        let juan = lab.secret("juan.perez").unwrap();
        assert_eq!(
            (juan.profile.as_str(), juan.disabled, juan.limit_bytes_in),
            ("Morosos", true, 1000)
        );
        assert_eq!(juan.comment, "");

        let r = c
            .call(&["/ppp/secret/unset", "=.id=*1", "=value-name=remote-address"])
            .await;
        assert_eq!(lines(&r), ["!done"]);
        let r = c
            .call(&["/ppp/secret/unset", "=.id=*1", "=value-name=profile"])
            .await;
        assert_eq!(lines(&r), ["!done"]);
        let juan = lab.secret("juan.perez").unwrap();
        assert_eq!(
            (juan.remote_address.as_str(), juan.profile.as_str()),
            ("", "default")
        );

        let r = c.call(&["/ppp/secret/remove", "=.id=*1,*2"]).await;
        assert_eq!(lines(&r), ["!done"]);
        assert!(lab.secrets().is_empty());
        // Ids are never reused.
        let r = c.call(&["/ppp/secret/add", "=name=juan.perez"]).await;
        assert_eq!(lines(&r), ["!done =ret=*3"]);
    }

    #[tokio::test]
    async fn every_error_text_of_the_reference() {
        let lab = seeded(Version::V7).await;
        let mut c = Client::logged_in(&lab).await;
        let cases: &[(&[&str], &str)] = &[
            (
                &["/ppp/secret/add", "=name=maria"],
                "!trap =message=failure: secret with the same name already exists",
            ),
            (
                &["/ppp/secret/set", "=.id=*1", "=name=maria"],
                "!trap =message=failure: secret with the same name already exists",
            ),
            (
                &["/ppp/secret/set", "=name=juan.perez", "=password=x"],
                "!trap =message=missing =.id=",
            ),
            (
                &["/ppp/secret/set", "=.id=*99", "=password=x"],
                "!trap =message=no such item (4)",
            ),
            (
                &["/ppp/secret/set", "=.id=juan.perez", "=password=x"],
                "!trap =message=no such item (4)",
            ),
            (
                &["/ppp/secret/unset", "=.id=*99", "=value-name=comment"],
                "!trap =message=no such item (4)",
            ),
            (
                &["/ppp/secret/unset", "=.id=*1"],
                "!trap =message=missing =value-name=",
            ),
            (
                &["/ppp/secret/remove", "=.id=*1,*99,*2"],
                "!trap =message=no such item (4)",
            ),
            (&["/ppp/secret/remove"], "!trap =message=missing =.id="),
            (
                &["/ppp/secret/add", "=name=x", "=colour=red"],
                "!trap =category=1 =message=unknown parameter colour",
            ),
            (
                &["/ppp/secret/set", "=.id=*1", "=last-logged-out=x"],
                "!trap =category=1 =message=unknown parameter last-logged-out",
            ),
            (
                &["/ppp/secret/unset", "=.id=*1", "=value-name=last-caller-id"],
                "!trap =category=1 =message=unknown parameter last-caller-id",
            ),
            (
                &["/ppp/secret/add", "=name=x", "=profile=nope"],
                "!trap =category=1 =message=input does not match any value of profile",
            ),
            (
                &["/ppp/secret/add", "=name=x", "=disabled=maybe"],
                "!trap =category=1 =message=invalid value for argument disabled",
            ),
            (
                &["/ppp/secret/add", "=name=x", "=service=isdn"],
                "!trap =category=1 =message=invalid value for argument service",
            ),
            (
                &["/ppp/secret/add", "=name=x", "=limit-bytes-in=-1"],
                "!trap =category=1 =message=invalid value for argument limit-bytes-in",
            ),
            (
                &["/ppp/secret/add", "=name=x", "=remote-address=10.0.0.300"],
                "!trap =category=1 =message=invalid value for argument remote-address",
            ),
            (
                &["/ppp/secret/add", "=password=x"],
                "!trap =category=1 =message=invalid value for argument name",
            ),
            (
                &["/ppp/secret/print", "=colour=red"],
                "!trap =category=1 =message=unknown parameter colour",
            ),
            (
                &["/ppp/secret/print", "?#|"],
                "!trap =category=1 =message=invalid query",
            ),
            (
                &["/ppp/secret/frobnicate"],
                "!trap =category=0 =message=no such command prefix",
            ),
            (
                &["/ip/address/print"],
                "!trap =category=0 =message=no such command prefix",
            ),
            (
                &["/ppp/active/remove", "=.id=*80000099"],
                "!trap =message=no such item (4)",
            ),
        ];
        for (words, trap) in cases {
            let r = c.call(words).await;
            assert_eq!(lines(&r), [*trap, "!done"], "{words:?}");
        }
        // None of them changed anything, and the connection is still usable.
        assert_eq!(
            lab.secrets()
                .iter()
                .map(|s| s.name.as_str())
                .collect::<Vec<_>>(),
            ["juan.perez", "maria", "pedro"]
        );
        assert_eq!(lab.secret("juan.perez").unwrap().password, "j1");
        let r = c.call(&["/ppp/secret/print", "=count-only="]).await;
        assert_eq!(lines(&r), ["!done =ret=3"]);
    }

    #[tokio::test]
    async fn v6_and_v7_personalities_differ_where_the_reference_says() {
        for version in [Version::V6, Version::V7] {
            let lab = seeded(version).await;
            let mut c = Client::logged_in(&lab).await;
            let r = c.call(&["/ppp/secret/print", "?name=pedro"]).await;
            let pedro = rows(&r)[0];
            let (yes, no) = match version {
                Version::V6 => ("yes", "no"),
                Version::V7 => ("true", "false"),
            };
            assert_eq!(pedro.attr("disabled"), Some(yes));
            assert_eq!(
                pedro.attr("ipv6-routes").is_some(),
                version == Version::V7,
                "{version:?}"
            );
            // Both spellings are accepted on input, and both match in a query.
            for (input, expected) in [("true", yes), ("no", no), ("yes", yes), ("false", no)] {
                let set = format!("=disabled={input}");
                c.call(&["/ppp/secret/set", "=.id=*3", &set]).await;
                let q = format!("?disabled={input}");
                let r = c
                    .call(&["/ppp/secret/print", &q, "=.proplist=disabled"])
                    .await;
                assert_eq!(lines(&r)[0], format!("!re =disabled={expected}"));
            }
            // A print without rows.
            let r = c.call(&["/ppp/secret/print", "?name=nobody"]).await;
            let expected: &[&str] = match version {
                Version::V6 => &["!done"],
                Version::V7 => &["!empty", "!done"],
            };
            assert_eq!(lines(&r), expected, "{version:?}");
            // A v7 field on v6.
            let r = c
                .call(&["/ppp/secret/set", "=.id=*1", "=ipv6-routes=x"])
                .await;
            match version {
                Version::V6 => assert_eq!(
                    lines(&r)[0],
                    "!trap =category=1 =message=unknown parameter ipv6-routes"
                ),
                Version::V7 => assert_eq!(lines(&r), ["!done"]),
            }
            let r = c.call(&["/ppp/secret/print", "?name=maria"]).await;
            let expected_epoch = match version {
                Version::V6 => "jan/01/1970 00:00:00",
                Version::V7 => "1970-01-01 00:00:00",
            };
            assert_eq!(rows(&r)[0].attr("last-logged-out"), Some(expected_epoch));
        }
    }

    #[tokio::test]
    async fn password_is_left_out_when_not_visible() {
        let lab = RouterLab::start(RouterConfig {
            password_visible: false,
            ..config(Version::V7)
        })
        .await
        .unwrap();
        lab.add_secret(Secret::new("juan.perez", "j1"));
        let mut c = Client::logged_in(&lab).await;
        let r = c.call(&["/ppp/secret/print"]).await;
        assert_eq!(rows(&r)[0].attr("password"), None);
        let r = c
            .call(&["/ppp/secret/print", "=.proplist=name,password"])
            .await;
        assert_eq!(lines(&r), ["!re =name=juan.perez", "!done"]);
        // Still writable.
        c.call(&["/ppp/secret/set", "=.id=*1", "=password=new"])
            .await;
        assert_eq!(lab.secret("juan.perez").unwrap().password, "new");
    }

    #[tokio::test]
    async fn tags_are_echoed_on_every_sentence_and_commands_pipeline() {
        let lab = seeded(Version::V7).await;
        let mut c = Client::logged_in(&lab).await;
        // Three commands in flight before reading anything.
        c.send(&["/ppp/secret/print", ".tag=a", "=.proplist=name"])
            .await;
        c.send(&["/ppp/secret/set", ".tag=b", "=.id=*99"]).await;
        c.send(&["/ppp/secret/print", "?name=x", ".tag=c"]).await;
        let mut all = Vec::new();
        for _ in 0..3 {
            all.extend(c.read_reply().await);
        }
        assert_eq!(
            lines(&all),
            [
                "!re .tag=a =name=juan.perez",
                "!re .tag=a =name=maria",
                "!re .tag=a =name=pedro",
                "!done .tag=a",
                "!trap .tag=b =message=no such item (4)",
                "!done .tag=b",
                "!empty .tag=c",
                "!done .tag=c",
            ]
        );
        let r = c.call(&["/ppp/secret/add", "=name=z", ".tag=7"]).await;
        assert_eq!(lines(&r), ["!done .tag=7 =ret=*4"]);
    }

    #[tokio::test]
    async fn cancel_interrupts_a_command_in_flight() {
        let lab = RouterLab::start(RouterConfig {
            latency: Duration::from_millis(300),
            ..config(Version::V7)
        })
        .await
        .unwrap();
        let mut c = Client::logged_in(&lab).await;
        c.send(&["/ppp/secret/add", "=name=never", ".tag=5"]).await;
        c.send(&["/cancel", "=tag=5", ".tag=6"]).await;
        let mut all = c.read_reply().await;
        all.extend(c.read_reply().await);
        assert_eq!(
            lines(&all),
            [
                "!trap .tag=5 =category=2 =message=interrupted",
                "!done .tag=5",
                "!done .tag=6",
            ]
        );
        assert!(lab.secrets().is_empty(), "the cancelled add did not run");
        let r = c.call(&["/cancel", "=tag=42"]).await;
        assert_eq!(
            lines(&r),
            ["!trap =category=0 =message=no such tag", "!done"]
        );
    }

    #[tokio::test]
    async fn proplist_and_queries_select_rows_and_fields() {
        let lab = seeded(Version::V7).await;
        let mut c = Client::logged_in(&lab).await;
        let cases: &[(&[&str], &[&str])] = &[
            (&["?name=maria"], &["maria"]),
            (&["?=name=maria"], &["maria"]),
            (&["?.id=*3"], &["pedro"]),
            (&["?comment"], &["juan.perez"]),
            (&["?-comment"], &["maria", "pedro"]),
            (&["?name=maria", "?name=pedro", "?#|"], &["maria", "pedro"]),
            (&["?name=maria", "?#!"], &["juan.perez", "pedro"]),
            (
                &["?profile=default", "?disabled=no", "?#&"],
                &["juan.perez"],
            ),
            (&["?profile=default", "?disabled=false"], &["juan.perez"]),
            (&["?>.id=*1"], &["maria", "pedro"]),
            (&["?<.id=*3"], &["juan.perez", "maria"]),
            (&["?name=nobody"], &[]),
        ];
        for (queries, expected) in cases {
            let mut words = vec!["/ppp/secret/print", "=.proplist=name"];
            words.extend_from_slice(queries);
            let r = c.call(&words).await;
            assert_eq!(names(&r), *expected, "{queries:?}");
        }
        let r = c
            .call(&[
                "/ppp/secret/print",
                "=.proplist=.id,name,profile,nosuch",
                "?name=maria",
            ])
            .await;
        assert_eq!(
            lines(&r),
            ["!re =.id=*2 =name=maria =profile=Morosos", "!done"]
        );
        // Query words are ignored outside print.
        let r = c
            .call(&["/ppp/secret/set", "=.id=*1", "?name=maria", "=comment=x"])
            .await;
        assert_eq!(lines(&r), ["!done"]);
        assert_eq!(lab.secret("juan.perez").unwrap().comment, "x");
    }

    /// On the paused clock, so that `uptime=0s` holds however slow the machine.
    #[tokio::test(start_paused = true)]
    async fn active_sessions_and_profiles() {
        let lab = seeded(Version::V7).await;
        let juan = lab.add_active("juan.perez", "10.0.0.2");
        let maria = lab.add_active("maria", "10.0.0.3");
        assert_eq!((juan.as_str(), maria.as_str()), ("*80000001", "*80000002"));
        let mut c = Client::in_memory(&lab).login().await;
        let r = c.call(&["/ppp/active/print", "?name=juan.perez"]).await;
        assert_eq!(
            lines(&r),
            [
                "!re =.id=*80000001 =name=juan.perez =service=pppoe \
                 =caller-id=02:00:00:00:00:01 =address=10.0.0.2 =uptime=0s",
                "!done"
            ]
        );
        let r = c.call(&["/ppp/active/remove", "=.id=*80000001"]).await;
        assert_eq!(lines(&r), ["!done"]);
        assert_eq!(
            lab.active()
                .iter()
                .map(|a| a.name.as_str())
                .collect::<Vec<_>>(),
            ["maria"]
        );
        let r = c
            .call(&["/ppp/profile/print", "=.proplist=.id,name,default"])
            .await;
        assert_eq!(
            lines(&r),
            [
                "!re =.id=*0 =name=default =default=true",
                "!re =.id=*FFFFFFFE =name=default-encryption =default=true",
                "!re =.id=*1 =name=Morosos =default=false",
                "!done"
            ]
        );
        assert_eq!(uptime(Duration::from_secs(694_861)), "1w1d1h1m1s");
    }

    /// Kicked sessions come back after `redial` (new id, same name and address) unless their
    /// secret is disabled or removed by then; without `redial` they never come back.
    #[tokio::test(start_paused = true)]
    async fn kicked_sessions_redial_unless_their_secret_is_disabled() {
        let lab = RouterLab::start(RouterConfig {
            redial: Some(Duration::from_secs(5)),
            ..config(Version::V7)
        })
        .await
        .unwrap();
        for name in ["juan.perez", "maria", "pedro", "ana"] {
            lab.add_secret(Secret::new(name, "pw"));
        }
        for (n, name) in ["juan.perez", "maria", "pedro", "ana"].iter().enumerate() {
            lab.add_active(name, &format!("10.0.0.{}", n + 2));
        }
        let mut c = Client::in_memory(&lab).login().await;
        // ana's password changed before the kick (her CPE dials with the old one), maria is
        // disabled after it, pedro's secret removed: none of them comes back.
        c.call(&["/ppp/secret/set", "=.id=*4", "=password=new"])
            .await;
        let r = c
            .call(&[
                "/ppp/active/remove",
                "=.id=*80000001,*80000002,*80000003,*80000004,*80000001",
            ])
            .await;
        assert_eq!(lines(&r), ["!done"]);
        c.call(&["/ppp/secret/set", "=.id=*2", "=disabled=yes"])
            .await;
        c.call(&["/ppp/secret/remove", "=.id=*3"]).await;
        assert!(lab.active().is_empty());
        tokio::time::advance(Duration::from_millis(4_999)).await;
        assert!(lab.active().is_empty(), "not before the redial time");
        tokio::time::advance(Duration::from_millis(1)).await;
        let r = c
            .call(&["/ppp/active/print", "=.proplist=.id,name,address"])
            .await;
        assert_eq!(
            lines(&r),
            [
                "!re =.id=*80000005 =name=juan.perez =address=10.0.0.2",
                "!done"
            ]
        );
        // Without `redial`: gone for good.
        let lab = seeded(Version::V7).await;
        lab.add_active("juan.perez", "10.0.0.2");
        let mut c = Client::in_memory(&lab).login().await;
        c.call(&["/ppp/active/remove", "=.id=*80000001"]).await;
        tokio::time::advance(Duration::from_secs(3600)).await;
        assert!(lab.active().is_empty());
    }

    #[tokio::test]
    async fn a_drop_fault_closes_the_connection_after_n_sentences() {
        let lab = seeded(Version::V7).await;
        lab.set_faults(Faults {
            drop: Some(DropFault {
                after_sentences: 2,
                times: Some(1),
            }),
            traps: Vec::new(),
        });
        let mut c = Client::logged_in(&lab).await; // sentence 1
        let r = c.call(&["/ppp/secret/print", "=count-only="]).await; // 2
        assert_eq!(lines(&r), ["!done =ret=3"]);
        c.send(&["/ppp/secret/remove", "=.id=*1"]).await; // 3: dropped, not run
        assert!(c.closed().await);
        assert_eq!(lab.secrets().len(), 3);
        assert_eq!(lab.faults().drop.unwrap().times, Some(0));
        // Spent: the next connection is not dropped.
        let mut c = Client::logged_in(&lab).await;
        c.call(&["/ppp/secret/print"]).await;
        let r = c.call(&["/ppp/secret/remove", "=.id=*1"]).await;
        assert_eq!(lines(&r), ["!done"]);
    }

    #[tokio::test]
    async fn a_trap_fault_hits_one_command_on_one_secret() {
        let lab = seeded(Version::V7).await;
        lab.set_faults(Faults {
            drop: None,
            traps: vec![TrapFault {
                category: Some(4),
                times: Some(1),
                ..TrapFault::new("/ppp/secret/set", Some("juan.perez"), "simulated failure")
            }],
        });
        let mut c = Client::logged_in(&lab).await;
        let r = c.call(&["/ppp/secret/set", "=.id=*2", "=comment=ok"]).await;
        assert_eq!(lines(&r), ["!done"], "another secret is not affected");
        let r = c.call(&["/ppp/secret/set", "=.id=*1", "=comment=no"]).await;
        assert_eq!(
            lines(&r),
            ["!trap =category=4 =message=simulated failure", "!done"]
        );
        assert_eq!(lab.secret("juan.perez").unwrap().comment, "casa 12");
        let r = c
            .call(&["/ppp/secret/set", "=.id=*1", "=comment=yes"])
            .await;
        assert_eq!(lines(&r), ["!done"], "times: 1 is spent");
        // By name on add, every time.
        lab.set_faults(Faults {
            drop: None,
            traps: vec![TrapFault::new("/ppp/secret/add", Some("ana"), "boom")],
        });
        for _ in 0..2 {
            let r = c.call(&["/ppp/secret/add", "=name=ana"]).await;
            assert_eq!(lines(&r), ["!trap =message=boom", "!done"]);
        }
        let r = c.call(&["/ppp/secret/add", "=name=bob"]).await;
        assert_eq!(lines(&r), ["!done =ret=*4"]);
    }

    #[tokio::test]
    async fn stats_count_sentences_per_command() {
        let lab = seeded(Version::V7).await;
        let mut c = Client::logged_in(&lab).await;
        c.call(&["/ppp/secret/print"]).await;
        c.call(&["/ppp/secret/set", "=.id=*1", "=comment=a"]).await;
        c.call(&["/ppp/secret/set", "=.id=*99", "=comment=a"]).await;
        c.call(&["/nope"]).await;
        let mut c2 = Client::logged_in(&lab).await;
        c2.call(&["/ppp/secret/set", "=.id=*2", "=comment=b"]).await;
        let stats = lab.stats();
        assert_eq!(stats.commands, 7);
        assert_eq!(stats.connections, 2);
        assert_eq!(stats.count("/login"), 2);
        assert_eq!(stats.count("/ppp/secret/set"), 3);
        assert_eq!(stats.count("/ppp/secret/print"), 1);
        assert_eq!(stats.count("/ppp/secret/add"), 0);
        lab.reset_stats();
        assert_eq!(lab.stats(), Stats::default());
    }

    /// On tokio's paused clock: time moves only when every task waits, and then straight to
    /// the next timer, so the virtual time a call takes is the latency the lab injected.
    #[tokio::test(start_paused = true)]
    async fn latency_delays_every_answer() {
        let lab = seeded(Version::V7).await;
        let mut c = Client::in_memory(&lab).login().await;
        lab.set_latency(Duration::from_millis(150));
        let start = Instant::now();
        c.call(&["/ppp/secret/print"]).await;
        assert!(start.elapsed() >= Duration::from_millis(150));
        // Commands sent one after the other each pay it.
        let start = Instant::now();
        c.call(&["/ppp/secret/print"]).await;
        c.call(&["/ppp/secret/print"]).await;
        assert!(start.elapsed() >= Duration::from_millis(300));
    }

    #[tokio::test(start_paused = true)]
    async fn latency_is_a_round_trip_delay_pipelined_commands_overlap() {
        let lab = seeded(Version::V7).await;
        let mut c = Client::in_memory(&lab).login().await;
        let latency = Duration::from_millis(200);
        lab.set_latency(latency);
        let start = Instant::now();
        for tag in 0..5 {
            let tag = format!(".tag={tag}");
            c.send(&["/ppp/secret/print", "=count-only=", &tag]).await;
        }
        let mut tags = Vec::new();
        for _ in 0..5 {
            let reply = c.read_reply().await;
            tags.push(reply.last().and_then(|s| s.tag()).unwrap().to_string());
        }
        // Answered in order, all after one latency: not five.
        assert_eq!(tags, ["0", "1", "2", "3", "4"]);
        let took = start.elapsed();
        assert!(took >= latency, "{took:?}");
        assert!(took < 2 * latency, "5 pipelined commands took {took:?}");
    }

    /// The session's uptime follows tokio's clock.
    #[tokio::test(start_paused = true)]
    async fn uptime_counts_from_when_the_session_came_up() {
        let lab = seeded(Version::V7).await;
        lab.add_active("maria", "10.0.0.3");
        let mut c = Client::in_memory(&lab).login().await;
        tokio::time::advance(Duration::from_secs(3_661)).await;
        let r = c
            .call(&["/ppp/active/print", "=.proplist=name,uptime"])
            .await;
        assert_eq!(lines(&r), ["!re =name=maria =uptime=1h1m1s", "!done"]);
    }

    #[tokio::test]
    async fn quit_is_fatal_and_closes() {
        let lab = seeded(Version::V7).await;
        let mut c = Client::logged_in(&lab).await;
        let r = c.call(&["/quit"]).await;
        assert_eq!(lines(&r), ["!fatal session terminated on request"]);
        assert!(c.closed().await);
    }

    #[tokio::test]
    async fn set_secrets_keeps_ids_and_continues_above_them() {
        let lab = lab(Version::V7).await;
        let mut juan = Secret::new("juan.perez", "j1");
        juan.id = "*1A".into();
        lab.set_secrets(vec![juan, Secret::new("maria", "m1")]);
        let ids: Vec<String> = lab.secrets().into_iter().map(|s| s.id).collect();
        assert_eq!(ids, ["*1A", "*1B"]);
        assert!(lab.update_secret("maria", |s| s.comment = "edited".into()));
        assert!(!lab.update_secret("nobody", |_| {}));
        let mut c = Client::logged_in(&lab).await;
        let r = c.call(&["/ppp/secret/add", "=name=x"]).await;
        assert_eq!(lines(&r), ["!done =ret=*1C"]);
    }

    #[tokio::test]
    async fn shutdown_closes_the_listener_and_every_connection() {
        let mut lab = seeded(Version::V7).await;
        let addr = lab.addr();
        assert!(addr.ip().is_loopback());
        let mut c = Client::logged_in(&lab).await;
        lab.shutdown().await;
        assert!(c.closed().await);
        assert!(TcpStream::connect(addr).await.is_err());
        // The state is still there for the test to read.
        assert_eq!(lab.secrets().len(), 3);
        lab.shutdown().await; // idempotent
    }

    #[tokio::test]
    async fn dropping_the_lab_stops_it() {
        let lab = seeded(Version::V7).await;
        let addr = lab.addr();
        let mut c = Client::logged_in(&lab).await;
        drop(lab);
        assert!(c.closed().await);
        assert!(TcpStream::connect(addr).await.is_err());
    }

    // -----------------------------------------------------------------------------------------
    // A hostile router, the write hook
    // -----------------------------------------------------------------------------------------

    /// The sentences of `bytes` that decode, as lines, and the bytes left after them.
    fn decode_lines(mut bytes: &[u8]) -> (Vec<String>, Vec<u8>) {
        let mut out = Vec::new();
        while let Ok(Some((words, used))) = codec::decode_sentence(bytes) {
            out.push(Sentence::from_raw(words).words.join(" "));
            bytes = &bytes[used..];
        }
        (out, bytes.to_vec())
    }

    /// Waits (on the paused clock) until the lab's stats satisfy `ok`.
    async fn stats_until(lab: &RouterLab, ok: impl Fn(&Stats) -> bool) -> Stats {
        for _ in 0..100 {
            let stats = lab.stats();
            if ok(&stats) {
                return stats;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        lab.stats()
    }

    /// From the first write: reading is left alone, the write takes effect and its answer (or,
    /// for a flood, the next print's) breaks as the mode says; what the client sends after is
    /// counted.
    #[tokio::test(start_paused = true)]
    async fn each_hostile_mode_breaks_the_stream_from_the_first_write() {
        use HostileMode::*;
        for mode in [
            Drip,
            Flood,
            EndlessSentence,
            StrayDone,
            UnknownTag,
            MissingTag,
            UnknownWord,
            Garbage,
            Silent,
        ] {
            let lab = seeded(Version::V7).await;
            lab.set_hostile(Some(Hostile {
                mode,
                from: HostileFrom::FirstWrite,
            }));
            let mut c = Client::in_memory(&lab).login().await;
            let r = c
                .call(&["/ppp/secret/print", "=.proplist=name", ".tag=1"])
                .await;
            assert_eq!(
                r.len(),
                4,
                "{mode:?}: reading is left alone: {:?}",
                lines(&r)
            );
            assert_eq!(lab.stats().breaks, 0, "{mode:?}");
            c.send(&["/ppp/secret/set", "=.id=*1", "=comment=w", ".tag=2"])
                .await;
            if mode == Flood {
                // The write is answered; the next print floods.
                assert_eq!(lines(&c.read_reply().await), ["!done .tag=2"]);
                c.send(&["/ppp/secret/print", ".tag=3"]).await;
            }
            let got = c.read_bytes(Duration::from_millis(1200), 200_000).await;
            let (sentences, rest) = decode_lines(&got);
            let done = "!done .tag=2".to_string();
            match mode {
                Drip => {
                    // 1.2 s: two bytes, not a sentence.
                    assert_eq!(got.len(), 2, "{mode:?}: {got:?}");
                }
                Silent => assert!(got.is_empty(), "{mode:?}: {got:?}"),
                Flood => {
                    // Rows as wide as a real secret's: some 450 bytes each.
                    assert!(sentences.len() > 300, "{mode:?}: {}", sentences.len());
                    assert!(sentences.iter().all(|s| s.starts_with("!re .tag=3")));
                }
                EndlessSentence => {
                    assert!(sentences.is_empty() && got.len() > 100_000, "{}", got.len());
                    assert!(got.starts_with(b"\x03!re\x06.tag=2"), "{:?}", &got[..12]);
                }
                StrayDone => assert_eq!(sentences, ["!done .tag=1", done.as_str()]),
                UnknownTag => assert_eq!(sentences, ["!done .tag=4294967295"]),
                MissingTag => assert_eq!(sentences, ["!done"]),
                UnknownWord => assert_eq!(sentences, ["!hostile .tag=2"]),
                Garbage => {
                    assert_eq!(sentences, [done.as_str()]);
                    assert_eq!(rest, GARBAGE);
                }
            }
            if !matches!(mode, Drip | Flood | EndlessSentence | Garbage) {
                assert!(rest.is_empty(), "{mode:?}: {rest:?}");
            }
            assert_eq!(lab.secret("juan.perez").unwrap().comment, "w", "{mode:?}");
            // A client that carries on is seen carrying on.
            c.send(&["/ppp/active/remove", "=.id=*80000001", ".tag=9"])
                .await;
            let stats = stats_until(&lab, |s| !s.after_break.is_empty()).await;
            assert_eq!(stats.breaks, 1, "{mode:?}");
            assert_eq!(stats.after_break, ["/ppp/active/remove"], "{mode:?}");
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_hostile_router_from_login_breaks_the_first_answer_after_it() {
        let lab = seeded(Version::V6).await;
        lab.set_hostile(Some(Hostile {
            mode: HostileMode::MissingTag,
            from: HostileFrom::Login,
        }));
        let mut c = Client::in_memory(&lab).login().await;
        let r = c
            .call(&["/ppp/secret/print", "=count-only=", ".tag=1"])
            .await;
        assert_eq!(lines(&r), ["!done =ret=3"]);
        // One time: then answered as usual.
        let r = c
            .call(&["/ppp/secret/print", "=count-only=", ".tag=2"])
            .await;
        assert_eq!(lines(&r), ["!done .tag=2 =ret=3"]);
        assert_eq!(lab.stats().after_break, ["/ppp/secret/print"]);
    }

    #[tokio::test(start_paused = true)]
    async fn the_write_hook_sees_each_write_that_took_effect_before_its_answer() {
        let lab = seeded(Version::V7).await;
        let seen: Arc<Mutex<Vec<(usize, usize)>>> = Arc::default();
        let log = seen.clone();
        lab.on_write(move |r: &RouterSnapshot| {
            log.lock().unwrap().push((r.secrets.len(), r.active.len()));
        });
        lab.add_active("maria", "10.0.0.3");
        let mut c = Client::in_memory(&lab).login().await;
        c.call(&["/ppp/secret/print"]).await;
        c.call(&["/ppp/secret/add", "=name=nuevo"]).await;
        c.call(&["/ppp/secret/set", "=.id=*99", "=comment=x"]).await; // trapped: not a write
        c.call(&["/ppp/active/remove", "=.id=*80000001"]).await;
        c.call(&["/ppp/secret/remove", "=.id=*1,*2"]).await;
        assert_eq!(*seen.lock().unwrap(), [(4, 1), (4, 0), (2, 0)]);
    }
}
