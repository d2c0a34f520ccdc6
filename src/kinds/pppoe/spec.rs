//! `pppoe/<router>.yaml`: the PPPoE secrets (`/ppp/secret`) of one MikroTik router.
//!
//! [`PppoeFile`] is the file as written; [`PppoeDesired`] is what validation leaves: defaults
//! applied, values normalised to the router's own forms, passwords resolved. Also the
//! `routers` section of the inventory ([`RouterSpec`] to [`Router`]).
//!
//! Validation is offline. Positions are asked of the file's location index only when there is
//! something to report: a valid file is parsed once.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use routeros_api::client::Limits;
use schemars::JsonSchema;
use serde::Deserialize;

use crate::mac::normalise_mac;
use crate::names::valid_name;
use crate::ownership::Prune;
use crate::secret::{Secret, SecretRef};
use crate::tls::TlsVerify;
use crate::yaml::FileCheck;

/// One router's PPPoE secrets file.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PppoeFile {
    /// The router, as named in `inventory.yaml` under `routers`.
    pub router: String,
    /// `owned` removes secrets that carry wispctl's tag in their comment and are no longer
    /// listed. Default `none`: nothing is ever removed.
    #[serde(default)]
    pub prune: Prune,
    /// Whether a change that takes effect only on a new session (password, profile, disabled,
    /// addresses, limits, service) also disconnects the customer's active session so the CPE
    /// redials with it. Default `on-change`; a comment edit never kicks.
    #[serde(default)]
    pub kick: Kick,
    /// Disconnects sessions in waves: at most `batch` sessions at once, `pause` between waves,
    /// so that a large change does not make every CPE redial in the same second. Without it,
    /// every session an apply kicks is disconnected at once. The waves' pauses count toward
    /// the router's `deadline.apply_secs`.
    #[serde(default)]
    pub kick_rollout: Option<KickRolloutSpec>,
    /// After an apply that disconnected sessions, wait up to this long (such as `60s`) for
    /// those customers to redial, reading `/ppp/active` every few seconds, and report how
    /// many did: a profile that locks customers out shows in the apply report. Counts toward
    /// the router's `deadline.apply_secs`. Default: no wait, no report.
    #[serde(default)]
    pub redial_wait: Option<String>,
    /// Let this file hold `{ inline: ... }` passwords (each one is warned about).
    #[serde(default)]
    pub allow_inline_secrets: bool,
    /// Let an empty `secrets` list prune every owned secret.
    #[serde(default)]
    pub allow_empty_prune: bool,
    /// Values for every secret that does not set its own.
    #[serde(default)]
    pub defaults: Defaults,
    /// The secrets.
    #[serde(default)]
    pub secrets: Vec<SecretSpec>,
}

/// When to disconnect an active session.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum Kick {
    /// When an effective field changes.
    #[default]
    OnChange,
    /// Never: changes wait for the customer's next reconnection.
    Never,
}

/// `kick_rollout`, as written.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct KickRolloutSpec {
    /// Sessions disconnected per wave on this router (at least 1; a customer's sessions are
    /// never split, so one with more is a wave of its own). Routers apply concurrently.
    pub batch: std::num::NonZeroUsize,
    /// The wait between two waves, such as `10s` or `1m`.
    pub pause: String,
}

/// Kicks in waves, validated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KickRollout {
    /// Sessions per wave.
    pub batch: usize,
    /// Between two waves.
    pub pause: std::time::Duration,
}

/// Defaults for every secret of the file.
#[derive(Debug, Clone, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Defaults {
    /// `service`.
    #[serde(default)]
    pub service: Option<Service>,
    /// `profile`.
    #[serde(default)]
    pub profile: Option<String>,
    /// `local-address`.
    #[serde(default)]
    pub local_address: Option<String>,
    /// `routes`.
    #[serde(default)]
    pub routes: Option<String>,
    /// `limit-bytes-in`.
    #[serde(default)]
    pub limit_bytes_in: Option<u64>,
    /// `limit-bytes-out`.
    #[serde(default)]
    pub limit_bytes_out: Option<u64>,
    /// `disabled`.
    #[serde(default)]
    pub disabled: Option<bool>,
}

/// One PPPoE secret. Fields left out are not managed (the router's value stays); the comment
/// gets wispctl's tag when wispctl writes the secret.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SecretSpec {
    /// The PPPoE user name.
    pub name: String,
    /// The password, as a reference. Left out: the router's password is not managed.
    #[serde(default)]
    pub password: Option<SecretRef>,
    /// `service` (default from `defaults`, else not managed).
    #[serde(default)]
    pub service: Option<Service>,
    /// `profile`, such as a speed plan or `Morosos` for customers behind on payment.
    #[serde(default)]
    pub profile: Option<String>,
    /// `local-address`.
    #[serde(default)]
    pub local_address: Option<String>,
    /// `remote-address`: the customer's address; unique across all routers.
    #[serde(default)]
    pub remote_address: Option<String>,
    /// `routes`.
    #[serde(default)]
    pub routes: Option<String>,
    /// `limit-bytes-in`.
    #[serde(default)]
    pub limit_bytes_in: Option<u64>,
    /// `limit-bytes-out`.
    #[serde(default)]
    pub limit_bytes_out: Option<u64>,
    /// `caller-id`: the CPE's MAC address, binding the secret to it.
    #[serde(default)]
    pub caller_id: Option<String>,
    /// `disabled`: a suspended customer.
    #[serde(default)]
    pub disabled: Option<bool>,
    /// Free text, such as `Tomatlan, Juan Perez`.
    #[serde(default)]
    pub comment: Option<String>,
}

/// A PPP service.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Service {
    /// any
    Any,
    /// async
    Async,
    /// l2tp
    L2tp,
    /// ovpn
    Ovpn,
    /// pppoe
    Pppoe,
    /// pptp
    Pptp,
    /// sstp
    Sstp,
    /// isdn (RouterOS 6 only)
    Isdn,
}

impl Service {
    fn as_str(self) -> &'static str {
        match self {
            Service::Any => "any",
            Service::Async => "async",
            Service::L2tp => "l2tp",
            Service::Ovpn => "ovpn",
            Service::Pppoe => "pppoe",
            Service::Pptp => "pptp",
            Service::Sstp => "sstp",
            Service::Isdn => "isdn",
        }
    }
}

/// A validated secret: the managed fields in the router's own names and value forms.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DesiredSecret {
    /// The user name.
    pub name: String,
    /// The password, when managed.
    pub password: Option<Secret>,
    /// Managed fields by RouterOS name (`profile`, `remote-address`, `disabled` as
    /// `true`/`false`, ...), `comment` excluded.
    pub fields: BTreeMap<&'static str, String>,
    /// The comment without wispctl's tag; `None`: not managed (the tag is still added when
    /// wispctl writes the secret).
    pub comment: Option<String>,
}

/// The validated desired state of one router.
#[derive(Debug, Clone)]
pub struct PppoeDesired {
    /// The file it came from.
    pub source: PathBuf,
    /// Prune policy.
    pub prune: Prune,
    /// Kick policy.
    pub kick: Kick,
    /// Kicks in waves; `None`: all at once.
    pub kick_rollout: Option<KickRollout>,
    /// See [`PppoeFile::redial_wait`].
    pub redial_wait: Option<std::time::Duration>,
    /// See [`PppoeFile::allow_empty_prune`].
    pub allow_empty_prune: bool,
    /// Secrets, names unique.
    pub secrets: Vec<DesiredSecret>,
}

/// The first secret to use a remote address, in one load.
#[derive(Debug, Clone)]
pub struct FirstUse {
    /// Its file.
    pub file: PathBuf,
    /// Its index in the file's `secrets`.
    pub index: usize,
    /// The file's router.
    pub router: String,
    /// The secret's name.
    pub name: String,
}

impl FirstUse {
    /// The line of its `remote_address`: asked of `check` when it is in the file being checked,
    /// else of its own file, read again (a conflict across files is rare; a position for every
    /// address of every file would build every file's location index).
    fn line(&self, check: &FileCheck<'_>) -> usize {
        let path = format!("secrets[{}].remote_address", self.index);
        if self.file == check.file() {
            return check.place(&path).0;
        }
        line_in(&self.file, &path)
    }
}

/// The line of `path` in the YAML file `file`; 1 when the file can no longer be read.
fn line_in(file: &Path, path: &str) -> usize {
    std::fs::read_to_string(file)
        .map(|text| crate::yaml::locate::LocationIndex::new(&text).find(path).0)
        .unwrap_or(1)
}

/// Where each remote address is first used, across the files of one load.
pub type RemoteAddresses = HashMap<String, FirstUse>;

/// Validates a parsed file. `None` when any error was found.
pub(crate) fn validate(
    file: PppoeFile,
    check: &mut FileCheck<'_>,
    remote: &mut RemoteAddresses,
) -> Option<PppoeDesired> {
    let before = check.error_count();
    let d = &file.defaults;
    if let Some(p) = &d.profile {
        check_text(check, "defaults.profile", p);
    }
    for (path, v) in [
        ("defaults.local_address", &d.local_address),
        ("defaults.routes", &d.routes),
    ] {
        if let Some(v) = v {
            check_text(check, path, v);
        }
    }
    if let Some(a) = &d.local_address
        && !a.is_empty()
        && let Err(why) = crate::untrusted::addr::ipv4(a)
    {
        check.error("defaults.local_address", format!("{a:?}: {why}"));
    }
    let mut seen: HashMap<&str, usize> = HashMap::new();
    let mut secrets = Vec::new();
    for (i, s) in file.secrets.iter().enumerate() {
        let at = format!("secrets[{i}]");
        if s.name.is_empty() || s.name.chars().any(|c| c.is_control()) || s.name.len() > 64 {
            check.error(
                &format!("{at}.name"),
                format!(
                    "invalid secret name {:?}: 1 to 64 characters, no control characters",
                    s.name
                ),
            );
        }
        if let Some(first) = seen.insert(&s.name, i) {
            let (line, _) = check.place(&format!("secrets[{first}].name"));
            check.error(
                &format!("{at}.name"),
                format!(
                    "duplicate secret {:?} (first declared at line {line})",
                    s.name
                ),
            );
        }
        for (field, v) in [
            ("profile", &s.profile),
            ("routes", &s.routes),
            ("comment", &s.comment),
        ] {
            if let Some(v) = v {
                check_text(check, &format!("{at}.{field}"), v);
            }
        }
        for (field, v) in [
            ("local_address", &s.local_address),
            ("remote_address", &s.remote_address),
        ] {
            if let Some(a) = v
                && !a.is_empty()
                && let Err(why) = crate::untrusted::addr::ipv4(a)
            {
                check.error(&format!("{at}.{field}"), format!("{a:?}: {why}"));
            }
        }
        if let Some(a) = s.remote_address.as_ref().filter(|a| !a.is_empty()) {
            if let Some(first) = remote.get(a) {
                let line = first.line(check);
                check.error(
                    &format!("{at}.remote_address"),
                    format!(
                        "remote address {a} is already used by secret {:?} on router {} ({}:{line})",
                        first.name,
                        first.router,
                        first.file.display()
                    ),
                );
            } else {
                remote.insert(
                    a.clone(),
                    FirstUse {
                        file: check.file.to_path_buf(),
                        index: i,
                        router: file.router.clone(),
                        name: s.name.clone(),
                    },
                );
            }
        }
        let caller_id = match &s.caller_id {
            Some(c) if c.is_empty() => Some(String::new()),
            Some(c) => match normalise_mac(c) {
                Some(m) => Some(m),
                None => {
                    check.error(
                        &format!("{at}.caller_id"),
                        format!("caller_id {c:?} is not a MAC address (AA:BB:CC:DD:EE:FF)"),
                    );
                    None
                }
            },
            None => None,
        };
        let password = match &s.password {
            Some(r) => {
                let path = format!("{at}.password");
                let secret = check.secret(r, &path, file.allow_inline_secrets);
                if let Some(p) = &secret
                    && !p.is_unresolved()
                    && (p.expose().is_empty() || p.expose().chars().any(char::is_control))
                {
                    check.error(
                        &path,
                        format!("the password from {r:?} is empty or holds a control character"),
                    );
                }
                secret
            }
            None => None,
        };
        let mut fields = BTreeMap::new();
        let mut put = |k: &'static str, v: Option<String>| {
            if let Some(v) = v {
                fields.insert(k, v);
            }
        };
        put(
            "service",
            s.service.or(d.service).map(|x| x.as_str().to_string()),
        );
        put("profile", s.profile.clone().or_else(|| d.profile.clone()));
        put(
            "local-address",
            s.local_address.clone().or_else(|| d.local_address.clone()),
        );
        put("remote-address", s.remote_address.clone());
        put("routes", s.routes.clone().or_else(|| d.routes.clone()));
        put(
            "limit-bytes-in",
            s.limit_bytes_in.or(d.limit_bytes_in).map(|n| n.to_string()),
        );
        put(
            "limit-bytes-out",
            s.limit_bytes_out
                .or(d.limit_bytes_out)
                .map(|n| n.to_string()),
        );
        put("caller-id", caller_id);
        put("disabled", s.disabled.or(d.disabled).map(|b| b.to_string()));
        secrets.push(DesiredSecret {
            name: s.name.clone(),
            password,
            fields,
            comment: s.comment.clone(),
        });
    }
    let kick_rollout = file.kick_rollout.as_ref().and_then(|r| {
        let pause = humantime::parse_duration(&r.pause)
            .map_err(|e| {
                check.error(
                    "kick_rollout.pause",
                    format!("{:?} is not a duration such as 10s or 1m: {e}", r.pause),
                )
            })
            .ok()?;
        Some(KickRollout {
            batch: r.batch.get(),
            pause,
        })
    });
    let redial_wait = file.redial_wait.as_ref().and_then(|w| {
        humantime::parse_duration(w)
            .map_err(|e| {
                check.error(
                    "redial_wait",
                    format!("{w:?} is not a duration such as 60s or 2m: {e}"),
                )
            })
            .ok()
    });
    if check.error_count() > before {
        return None;
    }
    Some(PppoeDesired {
        source: check.file.to_path_buf(),
        prune: file.prune,
        kick: file.kick,
        kick_rollout,
        redial_wait,
        allow_empty_prune: file.allow_empty_prune,
        secrets,
    })
}

fn check_text(check: &mut FileCheck<'_>, path: &str, v: &str) {
    if v.chars().any(char::is_control) {
        check.error(
            path,
            "must not hold control characters (newlines, tabs)".into(),
        );
    }
}

/// A MikroTik router.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RouterSpec {
    /// Host name or IP address of the API service.
    pub address: String,
    /// API port (default 8728, or 8729 with `tls`).
    #[serde(default)]
    pub port: Option<u16>,
    /// Use the TLS API service (`api-ssl`), verified against a CA file or a pinned certificate.
    #[serde(default)]
    pub tls: Option<TlsSpec>,
    /// API user name.
    pub username: String,
    /// API password, as a reference.
    pub password: SecretRef,
    /// Seconds to wait for the router before giving up (default 30).
    #[serde(default = "default_timeout")]
    pub timeout_secs: u64,
    /// How long reading this router and applying its changes may take in all
    /// (default 120 s and 600 s): past it, the connection is closed and the target fails.
    #[serde(default)]
    pub deadline: crate::engine::DeadlineSpec,
    /// Bounds on what the router may send back; past one, the connection is closed and the
    /// router fails (defaults well above a router with 25,000 secrets).
    #[serde(default)]
    pub limits: LimitsSpec,
    /// The most active sessions one run may disconnect on this router (below the run's
    /// `guards.max_disconnects`): over it, this router is refused, the others go on.
    #[serde(default)]
    pub max_disconnects: Option<usize>,
    /// Free text for people.
    #[serde(default)]
    pub description: Option<String>,
}

fn default_timeout() -> u64 {
    30
}

/// A router's `limits:`: bounds on one reply, against a router (or something posing as one)
/// that sends without end. Unset fields take the defaults.
#[derive(Debug, Clone, Copy, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct LimitsSpec {
    /// Rows one print may answer (default 200,000).
    #[serde(default)]
    #[schemars(range(min = 1))]
    pub max_rows: Option<usize>,
    /// Bytes one reply may take in memory: as received, plus what holding each row costs
    /// (default 50331648, 48 MiB).
    #[serde(default)]
    #[schemars(range(min = 1))]
    pub max_reply_bytes: Option<usize>,
    /// Words one sentence may hold (default 4,096; a secret row has about 20).
    #[serde(default)]
    #[schemars(range(min = 1))]
    pub max_words: Option<usize>,
}

impl LimitsSpec {
    /// The connection limits: the defaults with this spec's values over them.
    pub fn limits(&self) -> Limits {
        let default = Limits::default();
        Limits {
            max_reply_rows: self.max_rows.unwrap_or(default.max_reply_rows),
            max_reply_bytes: self.max_reply_bytes.unwrap_or(default.max_reply_bytes),
            max_sentence_words: self.max_words.unwrap_or(default.max_sentence_words),
            ..default
        }
    }

    /// Problems with the values, by field, for the inventory check.
    fn problems(&self) -> Vec<(&'static str, &'static str)> {
        [
            ("max_rows", self.max_rows),
            ("max_reply_bytes", self.max_reply_bytes),
            ("max_words", self.max_words),
        ]
        .into_iter()
        .filter(|(_, v)| *v == Some(0))
        .map(|(f, _)| (f, "must be at least 1"))
        .collect()
    }
}

/// TLS settings of a router. Verification is always on unless `insecure: true`.
#[derive(Debug, Clone, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TlsSpec {
    /// PEM file of the CA that signed the router's certificate.
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    /// SHA-256 fingerprint of the router's certificate (hex, colons allowed): pins it.
    #[serde(default)]
    pub fingerprint: Option<String>,
    /// Accept any certificate. Only for a lab; warned about.
    #[serde(default)]
    pub insecure: bool,
}

/// A router after validation: port chosen, password resolved, TLS settled.
#[derive(Debug, Clone)]
pub struct Router {
    /// Host name or IP address.
    pub address: String,
    /// API port.
    pub port: u16,
    /// TLS, when used.
    pub tls: Option<TlsVerify>,
    /// API user.
    pub username: String,
    /// API password.
    pub password: crate::secret::Secret,
    /// Bound on every wait.
    pub timeout: std::time::Duration,
    /// Bound on the whole read and the whole apply.
    pub deadline: crate::engine::Deadline,
    /// Bounds on what the router may send back.
    pub limits: Limits,
    /// The most sessions one run may disconnect here (`None`: only the run's cap).
    pub max_disconnects: Option<usize>,
}

/// A router: two minutes to read (25,000 secrets take seconds), ten to apply.
pub const DEADLINE: crate::engine::Deadline = crate::engine::Deadline::secs(120, 600);

/// Validates one router of the inventory (`at` is its path, `routers.NAME`).
pub(crate) fn validate_router(
    name: &str,
    r: &RouterSpec,
    at: &str,
    inline_ok: bool,
    check: &mut FileCheck<'_>,
) -> Option<Router> {
    let before = check.error_count();
    if let Err(why) = valid_name(name) {
        check.error(
            &format!("{at}#key"),
            format!("invalid router name {name:?}: {why}"),
        );
    }
    if let Err(why) = crate::untrusted::addr::host(&r.address) {
        check.error(
            &format!("{at}.address"),
            format!("invalid address {:?}: {why}", r.address),
        );
    }
    if r.username.is_empty() || r.username.chars().any(char::is_control) {
        check.error(
            &format!("{at}.username"),
            "username must be non-empty text".into(),
        );
    }
    let tls = match &r.tls {
        None => None,
        Some(t) => {
            let chosen = [t.ca_file.is_some(), t.fingerprint.is_some(), t.insecure]
                .iter()
                .filter(|x| **x)
                .count();
            if chosen != 1 {
                check.error(
                    &format!("{at}.tls"),
                    "tls needs exactly one of ca_file, fingerprint or insecure: true".into(),
                );
                None
            } else if let Some(f) = &t.fingerprint {
                match crate::tls::parse_fingerprint(f) {
                    Some(fp) => Some(TlsVerify::Fingerprint(fp)),
                    None => {
                        check.error(
                            &format!("{at}.tls.fingerprint"),
                            "fingerprint must be the certificate's SHA-256 in hex (64 digits, colons allowed)".into(),
                        );
                        None
                    }
                }
            } else if let Some(ca) = &t.ca_file {
                let full = check.relative(ca);
                let max = crate::untrusted::file::MAX_NAMED_FILE_BYTES;
                check.named_file(&format!("{at}.tls.ca_file"), "CA file", &full, max, false);
                Some(TlsVerify::Ca(full))
            } else {
                check.warn(
                    &format!("{at}.tls.insecure"),
                    "TLS certificate verification is off for this router: anyone on the path can read its password".into(),
                );
                Some(TlsVerify::Insecure)
            }
        }
    };
    for (field, why) in r.limits.problems() {
        check.error(&format!("{at}.limits.{field}"), why.into());
    }
    let password = check.secret(&r.password, &format!("{at}.password"), inline_ok);
    if check.error_count() > before {
        return None;
    }
    Some(Router {
        address: r.address.clone(),
        port: r.port.unwrap_or(if tls.is_some() { 8729 } else { 8728 }),
        tls,
        username: r.username.clone(),
        password: password?,
        timeout: std::time::Duration::from_secs(r.timeout_secs.max(1)),
        deadline: r.deadline.over(DEADLINE),
        limits: r.limits.limits(),
        max_disconnects: r.max_disconnects,
    })
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use crate::desired::{Diagnostic, load};
    use crate::secret::SecretResolver;

    const ROUTER_A: &str =
        "routers:\n  a:\n    address: 127.0.0.1\n    username: u\n    password: { env: RPW }\n";
    const ROUTER_B: &str =
        "  b:\n    address: 127.0.0.2\n    username: u\n    password: { env: RPW }\n";

    fn write(dir: &std::path::Path, rel: &str, text: &str) {
        let p = dir.join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, text).unwrap();
    }

    fn errors(dir: &std::path::Path) -> Vec<Diagnostic> {
        let resolver =
            SecretResolver::new().with_fallback_env(HashMap::from([("RPW".into(), "x".into())]));
        match load(dir, &resolver) {
            Ok(_) => Vec::new(),
            Err(e) => e.0,
        }
    }

    /// The place of a remote address's first use is asked only when it is used again; the
    /// message still names the first use's file and line, in the same file or another.
    #[test]
    fn a_remote_address_used_twice_names_the_first_use() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path();
        write(dir, "inventory.yaml", &format!("{ROUTER_A}{ROUTER_B}"));
        write(
            dir,
            "pppoe/a.yaml",
            "router: a\nsecrets:\n  - name: juan\n    remote_address: 10.0.0.1\n  - name: maria\n\n    remote_address: 10.0.0.2\n  - name: luis\n    remote_address: 10.0.0.2\n",
        );
        write(
            dir,
            "pppoe/b.yaml",
            "router: b\nsecrets:\n  - name: ana\n    remote_address: 10.0.0.3\n  - name: pedro\n    remote_address: 10.0.0.1\n",
        );
        let found: Vec<(String, usize, String)> = errors(dir)
            .into_iter()
            .map(|d| {
                let file = d.file.strip_prefix(dir).unwrap().display().to_string();
                (file, d.line, d.message)
            })
            .collect();
        let a = dir.join("pppoe/a.yaml");
        assert_eq!(
            found,
            [
                (
                    "pppoe/a.yaml".to_string(),
                    9,
                    format!(
                        "remote address 10.0.0.2 is already used by secret \"maria\" on router a ({}:7)",
                        a.display()
                    )
                ),
                (
                    "pppoe/b.yaml".to_string(),
                    6,
                    format!(
                        "remote address 10.0.0.1 is already used by secret \"juan\" on router a ({}:4)",
                        a.display()
                    )
                ),
            ]
        );
    }

    #[test]
    fn router_limits_are_optional_and_never_zero() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path();
        write(
            dir,
            "inventory.yaml",
            &format!("{ROUTER_A}    limits: {{ max_rows: 10, max_reply_bytes: 4096 }}\n"),
        );
        write(dir, "pppoe/a.yaml", "router: a\n");
        assert!(errors(dir).is_empty(), "{:?}", errors(dir));
        write(
            dir,
            "inventory.yaml",
            &format!("{ROUTER_A}    limits: {{ max_rows: 0 }}\n"),
        );
        let found = errors(dir);
        assert_eq!(found.len(), 1, "{found:?}");
        assert!(found[0].message.contains("at least 1"), "{found:?}");
        let spec = super::LimitsSpec {
            max_rows: Some(10),
            max_reply_bytes: None,
            max_words: Some(30),
        };
        let limits = spec.limits();
        assert_eq!(limits.max_reply_rows, 10);
        assert_eq!(limits.max_sentence_words, 30);
        assert_eq!(
            limits.max_reply_bytes,
            routeros_api::client::Limits::default().max_reply_bytes
        );
    }

    #[test]
    fn a_valid_file_loads() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path();
        write(dir, "inventory.yaml", ROUTER_A);
        write(
            dir,
            "pppoe/a.yaml",
            "router: a\ndefaults: { profile: 10M, service: pppoe }\nsecrets:\n  - name: juan\n    remote_address: 10.0.0.1\n    caller_id: aa-bb-cc-dd-ee-ff\n    disabled: true\n",
        );
        assert!(errors(dir).is_empty());
    }
}
