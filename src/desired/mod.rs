//! Desired state: the YAML files of a `desired-state/` folder, loaded and validated offline.
//!
//! Layout: `inventory.yaml` (targets and guards) and one folder per resource kind (`pppd/`).
//! Loading never touches the network. Every problem is reported with `file:line:column`, all of
//! them at once. Secrets are resolved here (environment, files) so that `validate` catches a
//! missing one before any device is contacted.

pub mod airos;
pub mod diag;
pub mod inventory;
pub mod locate;
pub mod pppd;
pub mod pppoe;
pub mod uisp;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use schemars::JsonSchema;
use serde::Deserialize;
use serde::de::DeserializeOwned;
use sha2::{Digest, Sha256};

use airos::{AirosDesired, AirosFile};
pub use diag::{Diagnostic, LoadErrors, Severity};
use inventory::{AntennaGroup, Guards, HostSpec, InventoryFile, Router, TlsVerify, Uisp};
use locate::LocationIndex;
use pppd::{PppdDesired, PppdFile};
use pppoe::{PppoeDesired, PppoeFile};
use uisp::{UispDesired, UispFile};

use crate::secret::{Secret, SecretRef, SecretResolver};

/// Whether owned objects that the YAML no longer names are deleted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Prune {
    /// Never delete (the default).
    #[default]
    None,
    /// Delete objects that carry wispctl's mark and are not in the YAML.
    Owned,
}

/// Everything loaded from a desired-state folder, validated.
#[derive(Debug, Clone)]
pub struct DesiredState {
    /// The folder.
    pub root: PathBuf,
    /// Run-wide guards.
    pub guards: Guards,
    /// Linux hosts by name.
    pub hosts: BTreeMap<String, HostSpec>,
    /// pppd desired state by host name.
    pub pppd: BTreeMap<String, PppdDesired>,
    /// MikroTik routers by name, credentials resolved.
    pub routers: BTreeMap<String, Router>,
    /// PPPoE desired state by router name.
    pub pppoe: BTreeMap<String, PppoeDesired>,
    /// UISP servers by name, tokens resolved.
    pub uisp_servers: BTreeMap<String, Uisp>,
    /// UISP desired state by server name.
    pub uisp: BTreeMap<String, UispDesired>,
    /// Antenna groups by name, credentials resolved.
    pub antenna_groups: BTreeMap<String, AntennaGroup>,
    /// airOS desired state by antenna group.
    pub airos: BTreeMap<String, AirosDesired>,
    /// SHA-256 over every file's relative path and bytes: a saved plan names the exact input.
    pub digest: String,
    /// Warnings (inline secrets and the like); errors fail the load instead.
    pub warnings: Vec<Diagnostic>,
}

/// Resource kinds that have a folder; a YAML file anywhere else is an error, so that a typo in a
/// folder name does not silently drop a whole kind.
const KIND_FOLDERS: &[&str] = &["pppd", "pppoe", "uisp", "airos"];

/// Loads and validates a desired-state folder.
pub fn load(dir: &Path, resolver: &SecretResolver) -> Result<DesiredState, LoadErrors> {
    let mut diags = Vec::new();
    let mut hasher = Sha256::new();
    let inv_path = dir.join("inventory.yaml");
    let (inventory, inv_text) = match std::fs::read_to_string(&inv_path) {
        Ok(text) => (parse::<InventoryFile>(&inv_path, &text, &mut diags), text),
        Err(e) => {
            diags.push(error_at(
                &inv_path,
                1,
                1,
                format!("cannot read inventory: {e}"),
            ));
            return Err(LoadErrors(diags));
        }
    };
    hasher.update(b"inventory.yaml\0");
    hasher.update(inv_text.as_bytes());
    let mut routers = BTreeMap::new();
    let mut uisp_servers = BTreeMap::new();
    let mut antenna_groups = BTreeMap::new();
    let inventory = inventory.map(|(inv, index)| {
        let mut check = FileCheck::new(&inv_path, &index, dir, resolver, &mut diags);
        for (name, r) in &inv.routers {
            if let Some(router) = validate_router(name, r, inv.allow_inline_secrets, &mut check) {
                routers.insert(name.clone(), router);
            }
        }
        for (name, u) in &inv.uisp {
            if let Some(server) = validate_uisp(name, u, inv.allow_inline_secrets, &mut check) {
                uisp_servers.insert(name.clone(), server);
            }
        }
        for (name, g) in &inv.antenna_groups {
            if let Some(group) = validate_group(name, g, inv.allow_inline_secrets, &mut check) {
                antenna_groups.insert(name.clone(), group);
            }
        }
        for (name, host) in &inv.hosts {
            if let Err(why) = valid_name(name) {
                check.error(
                    &format!("hosts.{name}#key"),
                    format!("invalid host name {name:?}: {why}"),
                );
            }
            if host.root.as_os_str().is_empty() {
                check.error(
                    &format!("hosts.{name}.root"),
                    "root must not be empty".into(),
                );
            }
        }
        inv
    });

    let mut pppd = Kind::new("host", "pppd");
    let mut pppoe = Kind::new("router", "pppoe");
    let mut uisp = Kind::new("UISP server", "uisp");
    let mut airos = Kind::new("antenna group", "airos");
    // Remote addresses are unique across all routers: the check spans files.
    let mut remote = pppoe::RemoteAddresses::default();
    for (rel, path) in resource_files(dir, &mut diags) {
        let text = match std::fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) => {
                diags.push(error_at(&path, 1, 1, format!("cannot read: {e}")));
                continue;
            }
        };
        hasher.update(rel.as_bytes());
        hasher.update([0]);
        hasher.update(text.as_bytes());
        let mut file = ResourceFile {
            path: &path,
            text: &text,
            diags: &mut diags,
            dir,
            resolver,
        };
        let inv = inventory.as_ref();
        match rel.split('/').next().unwrap_or_default() {
            "pppd" => pppd.load(
                &mut file,
                "host",
                |f: &PppdFile| f.host.clone(),
                inv.map(|i| i.hosts.keys().collect()),
                pppd::validate,
            ),
            "pppoe" => pppoe.load(
                &mut file,
                "router",
                |f: &PppoeFile| f.router.clone(),
                inv.map(|i| i.routers.keys().collect()),
                |f, check| pppoe::validate(f, check, &mut remote),
            ),
            "uisp" => uisp.load(
                &mut file,
                "uisp",
                |f: &UispFile| f.uisp.clone(),
                inv.map(|i| i.uisp.keys().collect()),
                uisp::validate,
            ),
            "airos" => {
                let servers: Option<Vec<String>> = inv.map(|i| i.uisp.keys().cloned().collect());
                airos.load(
                    &mut file,
                    "group",
                    |f: &AirosFile| f.group.clone(),
                    inv.map(|i| i.antenna_groups.keys().collect()),
                    |f, check| airos::validate(f, check, servers.as_deref()),
                )
            }
            _ => {}
        }
    }

    let (errors, warnings): (Vec<_>, Vec<_>) = diags
        .into_iter()
        .partition(|d| d.severity == Severity::Error);
    if !errors.is_empty() {
        return Err(LoadErrors(errors));
    }
    let inv = inventory.expect("no errors means the inventory parsed");
    Ok(DesiredState {
        root: dir.to_path_buf(),
        guards: inv.guards,
        hosts: inv.hosts,
        pppd: pppd.desired,
        routers,
        pppoe: pppoe.desired,
        uisp_servers,
        uisp: uisp.desired,
        antenna_groups,
        airos: airos.desired,
        digest: hex::encode(hasher.finalize()),
        warnings,
    })
}

/// One resource file being loaded.
struct ResourceFile<'a> {
    path: &'a Path,
    text: &'a str,
    diags: &'a mut Vec<Diagnostic>,
    dir: &'a Path,
    resolver: &'a SecretResolver,
}

/// The files of one kind: every file names one target of the inventory, and a target has one
/// file.
struct Kind<D> {
    label: &'static str,
    folder: &'static str,
    desired: BTreeMap<String, D>,
    sources: BTreeMap<String, (PathBuf, usize)>,
}

impl<D> Kind<D> {
    fn new(label: &'static str, folder: &'static str) -> Self {
        Kind {
            label,
            folder,
            desired: BTreeMap::new(),
            sources: BTreeMap::new(),
        }
    }

    /// Parses, checks the target (`field` names it; `defined` lists the inventory's, `None`
    /// when the inventory did not load) and validates one file.
    fn load<F: DeserializeOwned>(
        &mut self,
        file: &mut ResourceFile<'_>,
        field: &str,
        target: impl Fn(&F) -> String,
        defined: Option<Vec<&String>>,
        validate: impl FnOnce(F, &mut FileCheck<'_>) -> Option<D>,
    ) {
        let Some((parsed, index)) = parse::<F>(file.path, file.text, file.diags) else {
            return;
        };
        let name = target(&parsed);
        let mut check = FileCheck::new(file.path, &index, file.dir, file.resolver, file.diags);
        if let Some(defined) = defined
            && !defined.contains(&&name)
        {
            let known: Vec<&str> = defined.iter().map(|s| s.as_str()).collect();
            check.error(
                field,
                format!(
                    "{} {name:?} is not defined in inventory.yaml (defined: {})",
                    self.label,
                    if known.is_empty() {
                        "none".into()
                    } else {
                        known.join(", ")
                    }
                ),
            );
        }
        if let Some((other, line)) = self.sources.get(&name) {
            check.error(
                field,
                format!(
                    "{} {name:?} already has a {} file: {}:{line}",
                    self.label,
                    self.folder,
                    other.display()
                ),
            );
        } else {
            self.sources.insert(
                name.clone(),
                (file.path.to_path_buf(), check.place(field).0),
            );
        }
        if let Some(d) = validate(parsed, &mut check) {
            self.desired.insert(name, d);
        }
    }
}

fn validate_uisp(
    name: &str,
    u: &inventory::UispSpec,
    inline_ok: bool,
    check: &mut FileCheck<'_>,
) -> Option<Uisp> {
    let at = format!("uisp.{name}");
    let before = check.error_count();
    if let Err(why) = valid_name(name) {
        check.error(
            &format!("{at}#key"),
            format!("invalid UISP name {name:?}: {why}"),
        );
    }
    let url = u.url.trim_end_matches('/');
    let host_ok = url.strip_prefix("https://").is_some_and(|h| {
        !h.is_empty()
            && h.chars()
                .all(|c| c.is_ascii_alphanumeric() || ".-:[]".contains(c))
    });
    if !host_ok {
        check.error(
            &format!("{at}.url"),
            format!(
                "url {:?} must be https://HOST[:PORT] (the token must never travel in clear)",
                u.url
            ),
        );
    }
    let tls = match (&u.ca_file, u.insecure) {
        (Some(_), true) => {
            check.error(
                &format!("{at}.insecure"),
                "give ca_file or insecure, not both".into(),
            );
            None
        }
        (Some(ca), false) => {
            let full = check.file.parent().unwrap_or(check.root()).join(ca);
            if !full.is_file() {
                check.error(
                    &format!("{at}.ca_file"),
                    format!("CA file {} does not exist", full.display()),
                );
            }
            Some(TlsVerify::Ca(full))
        }
        (None, true) => {
            check.warn(
                &format!("{at}.insecure"),
                "TLS certificate verification is off for this UISP server: anyone on the path can take its token".into(),
            );
            Some(TlsVerify::Insecure)
        }
        (None, false) => None,
    };
    let token = check.secret(&u.token, &format!("{at}.token"), inline_ok);
    if check.error_count() > before {
        return None;
    }
    Some(Uisp {
        api: format!("{url}/nms/api/v2.1"),
        token: token?,
        tls,
        timeout: std::time::Duration::from_secs(u.timeout_secs.max(1)),
    })
}

fn validate_group(
    name: &str,
    g: &inventory::AntennaGroupSpec,
    inline_ok: bool,
    check: &mut FileCheck<'_>,
) -> Option<AntennaGroup> {
    use crate::providers::airos::ssh::Credential;
    let at = format!("antenna_groups.{name}");
    let before = check.error_count();
    if let Err(why) = valid_name(name) {
        check.error(
            &format!("{at}#key"),
            format!("invalid antenna group name {name:?}: {why}"),
        );
    }
    let credentials = |list: &[inventory::CredentialSpec], at: &str, check: &mut FileCheck<'_>| {
        if list.is_empty() {
            check.error(
                &format!("{at}.credentials"),
                "at least one credential is needed".into(),
            );
        }
        let mut out = Vec::new();
        for (i, c) in list.iter().enumerate() {
            if c.user.is_empty()
                || c.user
                    .chars()
                    .any(|ch| ch.is_control() || ch.is_whitespace())
            {
                check.error(
                    &format!("{at}.credentials[{i}].user"),
                    "user must be non-empty text without spaces".into(),
                );
            }
            if let Some(p) = check.secret(
                &c.password,
                &format!("{at}.credentials[{i}].password"),
                inline_ok,
            ) {
                out.push(Credential {
                    user: c.user.clone(),
                    password: p,
                });
            }
        }
        out
    };
    let creds = credentials(&g.credentials, &at, check);
    let jump = g.jump.as_ref().map(|j| {
        let jat = format!("{at}.jump");
        if !inventory::valid_host(&j.host) {
            check.error(
                &format!("{jat}.host"),
                format!("{:?} is not an IP address or host name", j.host),
            );
        }
        if j.port == 0 {
            check.error(&format!("{jat}.port"), "port must be 1 to 65535".into());
        }
        inventory::JumpHost {
            host: j.host.clone(),
            port: j.port,
            legacy: j.legacy,
            credentials: credentials(&j.credentials, &jat, check),
        }
    });
    if g.port == 0 {
        check.error(&format!("{at}.port"), "port must be 1 to 65535".into());
    }
    let known_hosts = g
        .known_hosts
        .as_ref()
        .map(|k| check.file.parent().unwrap_or(check.root()).join(k));
    if check.error_count() > before {
        return None;
    }
    Some(AntennaGroup {
        port: g.port,
        legacy: g.legacy,
        credentials: creds,
        jump,
        known_hosts,
        connect_timeout: std::time::Duration::from_secs(g.connect_timeout_secs.max(1)),
        command_timeout: std::time::Duration::from_secs(g.command_timeout_secs.max(1)),
    })
}

fn validate_router(
    name: &str,
    r: &inventory::RouterSpec,
    inline_ok: bool,
    check: &mut FileCheck<'_>,
) -> Option<Router> {
    let at = format!("routers.{name}");
    let before = check.error_count();
    if let Err(why) = valid_name(name) {
        check.error(
            &format!("{at}#key"),
            format!("invalid router name {name:?}: {why}"),
        );
    }
    let host_ok = !r.address.is_empty()
        && r.address
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || ".-:".contains(c));
    if !host_ok {
        check.error(
            &format!("{at}.address"),
            format!("invalid address {:?}: a host name or IP address", r.address),
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
                match inventory::parse_fingerprint(f) {
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
                let full = check.file.parent().unwrap_or(check.root()).join(ca);
                if !full.is_file() {
                    check.error(
                        &format!("{at}.tls.ca_file"),
                        format!("CA file {} does not exist", full.display()),
                    );
                }
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
    })
}

/// The YAML files under the kind folders, sorted; anything else YAML-looking is an error.
fn resource_files(dir: &Path, diags: &mut Vec<Diagnostic>) -> Vec<(String, PathBuf)> {
    let mut out = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return out;
    };
    let mut entries: Vec<_> = entries.filter_map(Result::ok).collect();
    entries.sort_by_key(|e| e.file_name());
    for e in entries {
        let name = e.file_name().to_string_lossy().into_owned();
        let path = e.path();
        if name.starts_with('.') {
            continue;
        }
        if path.is_dir() {
            let known = KIND_FOLDERS.contains(&name.as_str());
            let Ok(inner) = std::fs::read_dir(&path) else {
                continue;
            };
            let mut inner: Vec<_> = inner.filter_map(Result::ok).map(|e| e.path()).collect();
            inner.sort();
            for p in inner {
                if !is_yaml(&p) {
                    continue;
                }
                if known {
                    let file = p.file_name().unwrap_or_default().to_string_lossy();
                    out.push((format!("{name}/{file}"), p));
                } else {
                    diags.push(error_at(
                        &p,
                        1,
                        1,
                        format!(
                            "unknown folder {name:?}: resource files live in {}",
                            KIND_FOLDERS.join(", ")
                        ),
                    ));
                }
            }
        } else if is_yaml(&path) && name != "inventory.yaml" {
            diags.push(error_at(
                &path,
                1,
                1,
                format!(
                    "unexpected file: the top level holds only inventory.yaml; resource files live in {}/",
                    KIND_FOLDERS.join("/, ")
                ),
            ));
        }
    }
    out
}

fn is_yaml(p: &Path) -> bool {
    matches!(
        p.extension().and_then(|e| e.to_str()),
        Some("yaml") | Some("yml")
    )
}

fn error_at(file: &Path, line: usize, column: usize, message: String) -> Diagnostic {
    Diagnostic {
        severity: Severity::Error,
        file: file.to_path_buf(),
        line,
        column,
        message,
    }
}

/// Deserialises one file and indexes where its values are. Every failure becomes a
/// diagnostic: a key given twice in one mapping (serde would keep the last silently), then
/// serde_yaml's own error at its place, or the scanner's syntax error when it has one (it is the
/// more precise when a bad indentation turns into a type error).
fn parse<T: DeserializeOwned>(
    path: &Path,
    text: &str,
    diags: &mut Vec<Diagnostic>,
) -> Option<(T, LocationIndex)> {
    if text
        .lines()
        .all(|l| l.trim_start().starts_with('#') || l.trim().is_empty())
    {
        diags.push(error_at(path, 1, 1, "the file is empty".into()));
        return None;
    }
    let index = LocationIndex::build(text);
    if let Ok(ix) = &index
        && !ix.duplicates.is_empty()
    {
        for (key, (line, column), first) in &ix.duplicates {
            diags.push(error_at(
                path,
                *line,
                *column,
                format!("duplicate key {key} (first given at line {first})"),
            ));
        }
        return None;
    }
    match serde_yaml::from_str::<T>(text) {
        Ok(v) => Some((v, index.unwrap_or_default())),
        Err(e) => {
            let libyaml_syntax = [
                "while scanning",
                "while parsing",
                "did not find expected",
                "found unexpected",
                "found character",
                "found a tab",
                "not allowed in this context",
            ]
            .iter()
            .any(|w| e.to_string().contains(w));
            if let (Err(syntax), false) = (&index, libyaml_syntax) {
                diags.push(error_at(
                    path,
                    syntax.line,
                    syntax.column,
                    syntax.message.clone(),
                ));
                return None;
            }
            let (line, column) = e
                .location()
                .map(|l| (l.line(), l.column()))
                .unwrap_or((1, 1));
            let mut msg = e.to_string();
            // serde_yaml repeats the place at the end; keep any other place it gives.
            let suffix = format!(" at line {line} column {column}");
            if msg.ends_with(&suffix) {
                msg.truncate(msg.len() - suffix.len());
            }
            let msg = redact_secret_values(msg);
            diags.push(error_at(path, line, column, msg));
            None
        }
    }
}

/// serde_yaml quotes the offending value in type errors; where the value sits in a secret
/// (a `secret`, `password` or `inline` field), it must not be shown.
fn redact_secret_values(msg: String) -> String {
    let Some((path, _)) = msg.split_once(": ") else {
        return msg;
    };
    let secret_bearing = path
        .split(['.', '['])
        .any(|seg| matches!(seg, "secret" | "password" | "inline"));
    // Only these serde errors quote the value; `unknown field` names a key, which is useful.
    let quotes_value = ["invalid type", "invalid value", "invalid length"]
        .iter()
        .any(|w| msg.contains(w));
    if secret_bearing && quotes_value {
        format!(
            "{path}: not a valid secret reference (the value is not shown): write {{ env: NAME }} or {{ file: PATH }}"
        )
    } else {
        msg
    }
}

/// Checks of one file's values after deserialisation, with positions from its index.
pub(crate) struct FileCheck<'a> {
    pub(crate) file: &'a Path,
    index: &'a LocationIndex,
    root: &'a Path,
    resolver: &'a SecretResolver,
    diags: &'a mut Vec<Diagnostic>,
    errors: usize,
}

impl<'a> FileCheck<'a> {
    fn new(
        file: &'a Path,
        index: &'a LocationIndex,
        root: &'a Path,
        resolver: &'a SecretResolver,
        diags: &'a mut Vec<Diagnostic>,
    ) -> Self {
        FileCheck {
            file,
            index,
            root,
            resolver,
            diags,
            errors: 0,
        }
    }

    pub(crate) fn root(&self) -> &Path {
        self.root
    }

    pub(crate) fn place(&self, path: &str) -> (usize, usize) {
        self.index.find(path)
    }

    pub(crate) fn error(&mut self, path: &str, message: String) {
        self.errors += 1;
        self.push(Severity::Error, path, message);
    }

    pub(crate) fn warn(&mut self, path: &str, message: String) {
        self.push(Severity::Warning, path, message);
    }

    pub(crate) fn error_count(&self) -> usize {
        self.errors
    }

    fn push(&mut self, severity: Severity, path: &str, message: String) {
        let (line, column) = self.place(path);
        self.diags.push(Diagnostic {
            severity,
            file: self.file.to_path_buf(),
            line,
            column,
            message,
        });
    }

    /// Resolves a secret reference, reporting a missing source or a refused inline value.
    pub(crate) fn secret(
        &mut self,
        reference: &SecretRef,
        path: &str,
        inline_allowed: bool,
    ) -> Option<Secret> {
        if let SecretRef::Inline(_) = reference {
            if !inline_allowed {
                self.error(
                    path,
                    "inline secrets are refused: use { env: NAME } or { file: PATH }, or set allow_inline_secrets: true in this file".into(),
                );
                return None;
            }
            self.warn(
                path,
                "inline secret: it is in git in plain text; prefer { env: NAME } or { file: PATH }"
                    .into(),
            );
        }
        let base = self.file.parent().unwrap_or(self.root);
        match self.resolver.resolve(reference, base) {
            Ok(s) => Some(s),
            Err(why) => {
                self.error(path, format!("unresolvable secret reference: {why}"));
                None
            }
        }
    }
}

/// Checks a name that becomes a file name or part of an address: `[A-Za-z0-9._-]`, not empty,
/// not starting with a dot (so `.`, `..` and hidden or temporary files are impossible).
pub fn valid_name(name: &str) -> Result<(), &'static str> {
    if name.is_empty() {
        return Err("it is empty");
    }
    if name.len() > 64 {
        return Err("it is longer than 64 characters");
    }
    if name.contains('/') || name.contains('\0') || name.contains("..") {
        return Err("it must not contain '/', '..' or NUL");
    }
    if name.starts_with('.') {
        return Err("it must not start with '.'");
    }
    if !name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || c == '.' || c == '_' || c == '-')
    {
        return Err("only letters, digits, '.', '_' and '-' are allowed");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_values_in_serde_errors_are_redacted() {
        let m = redact_secret_values(
            "chap_secrets[0].secret: invalid type: string \"Hunter2\", expected struct X".into(),
        );
        assert!(!m.contains("Hunter2"), "{m}");
        let m =
            redact_secret_values("routers.r.password.inline: invalid type: integer `1234`".into());
        assert!(!m.contains("1234"), "{m}");
        let m = redact_secret_values("peers[0].mtu: invalid type: string \"big\"".into());
        assert!(m.contains("big"));
    }

    #[test]
    fn names_refuse_traversal_and_odd_characters() {
        for bad in [
            "",
            "..",
            "../etc/passwd",
            "a/b",
            ".hidden",
            "a b",
            "a\0b",
            "ñ",
        ] {
            assert!(valid_name(bad).is_err(), "{bad:?} accepted");
        }
        for good in ["connexa-node-2", "a.b_c", "N1"] {
            assert!(valid_name(good).is_ok(), "{good:?} refused");
        }
    }
}
