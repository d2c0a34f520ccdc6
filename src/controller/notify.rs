//! Notifications when a target starts or stops drifting, failing or answering: the
//! `reconcile.notify` section ([`NotifySpec`], validated into [`Notify`]), the state machine
//! that decides what is worth telling ([`Tracker`]), the texts ([`message`], [`webhook_body`])
//! and their delivery in the background ([`Sender`]).
//!
//! The notifiers follow Flux's providers: `generic` (a JSON POST, [`webhook_schema`]),
//! `generic-hmac` (the same, signed: `X-Wispctl-Signature: sha256=<hex>`, [`sign`],
//! [`verify`]) and `telegram` (the Bot API's `sendMessage`).
//!
//! A notice holds addresses and counts only: never an error text, a value or a secret.
//!
//! Decisions, for whoever reads a notice:
//! - Time is [`tokio::time::Instant`], passed in: tests run on the paused clock.
//! - There is no `recovered` event: `resolved` covers a drifting, failing or unreachable target
//!   that is in sync again; a target that answers again but drifts gets a `drift`.
//! - `applied` is sent every time, with no anti-flap and no cooldown (it is an action), and
//!   stands for the resolution: no `resolved` follows it.
//! - `apply_failed` is sent at every failed apply, with no anti-flap (it is an action), but the
//!   cooldown holds back repeats: a target that keeps failing is reminded once per cooldown.
//! - `drift`, `unreachable` and `resolved` compare the confirmed state with what the operator
//!   was last told. One held back by the cooldown is counted once and sent at a later
//!   reconcile, when the cooldown is over, if the state still holds.
//! - A failed read below `unreachable_after` tells nothing: it neither confirms nor breaks a
//!   pending state; `unreachable_after` consecutive failed reads are the unreachable state's
//!   anti-flap (`confirm_runs` does not apply to it).

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hmac::{Hmac, Mac};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use sha2::Sha256;
use tokio::time::Instant;

use super::schedule::Backoff;
use crate::secret::{Secret, SecretRef};
use crate::yaml::FileCheck;

/// The header that carries a webhook body's signature.
pub const SIGNATURE_HEADER: &str = "X-Wispctl-Signature";
/// Addresses a notice lists; the rest are counted.
pub const MAX_ADDRESSES: usize = 20;
/// Telegram's longest message text.
const TELEGRAM_MAX: usize = 4096;
/// Addresses a Telegram text lists.
const TELEGRAM_ADDRESSES: usize = 3;

/// `reconcile.notify`: who is told when a target starts or stops drifting, failing or
/// answering.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct NotifySpec {
    /// The language of the messages: `es` or `en`. Default `en`.
    #[serde(default)]
    pub language: Language,
    /// The same notice about the same target is not sent again within this long (such as
    /// `30m`; `0s`: no cooldown). Default `30m`.
    #[serde(default = "default_cooldown")]
    pub cooldown: String,
    /// Anti-flap: a target's new state (in sync, drifting) must be seen in this many
    /// consecutive reconciles before it is notified. `1` notifies at once. Default 2.
    #[serde(default = "default_confirm_runs")]
    pub confirm_runs: u32,
    /// A target is notified as unreachable after this many consecutive failed reads.
    /// Default 3.
    #[serde(default = "default_unreachable_after")]
    pub unreachable_after: u32,
    /// A JSON POST to a URL of yours (signed when `secret` is set).
    #[serde(default)]
    pub webhook: Option<WebhookSpec>,
    /// A message to a Telegram chat, through your bot.
    #[serde(default)]
    pub telegram: Option<TelegramSpec>,
}

fn default_cooldown() -> String {
    "30m".into()
}
fn default_confirm_runs() -> u32 {
    2
}
fn default_unreachable_after() -> u32 {
    3
}

impl Default for NotifySpec {
    fn default() -> Self {
        NotifySpec {
            language: Language::default(),
            cooldown: default_cooldown(),
            confirm_runs: default_confirm_runs(),
            unreachable_after: default_unreachable_after(),
            webhook: None,
            telegram: None,
        }
    }
}

/// The language of the messages.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Language {
    /// Spanish.
    Es,
    /// English (the default).
    #[default]
    En,
}

/// `notify.webhook`, as written.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct WebhookSpec {
    /// Where the JSON is POSTed: `https://...`, or `http://` to a loopback address only
    /// (127.0.0.0/8, ::1, localhost). No `user:password@`.
    pub url: String,
    /// The HMAC-SHA256 key: each body is signed in the `X-Wispctl-Signature: sha256=<hex>`
    /// header. `{ env: NAME }` or `{ file: PATH }`.
    #[serde(default)]
    pub secret: Option<SecretRef>,
}

/// `notify.telegram`, as written.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TelegramSpec {
    /// The bot's token (from BotFather): `{ env: NAME }` or `{ file: PATH }`.
    pub token: SecretRef,
    /// The chat to write to: a numeric id (`-100...` for a group) or `@channel`.
    pub chat_id: SecretRef,
    /// The Bot API's address. Default `https://api.telegram.org`; `http://` to a loopback
    /// address only.
    #[serde(default)]
    pub api_url: Option<String>,
}

/// The notify section, validated: durations parsed, URLs checked, secrets resolved.
#[derive(Debug, Clone, PartialEq)]
pub struct Notify {
    /// The language of the messages.
    pub language: Language,
    /// See [`NotifySpec::cooldown`].
    pub cooldown: Duration,
    /// See [`NotifySpec::confirm_runs`] (at least 1).
    pub confirm_runs: u32,
    /// See [`NotifySpec::unreachable_after`] (at least 1).
    pub unreachable_after: u32,
    /// The webhook, if any.
    pub webhook: Option<Webhook>,
    /// The Telegram chat, if any.
    pub telegram: Option<Telegram>,
}

impl Notify {
    /// Whether any notifier is configured.
    pub fn has_notifiers(&self) -> bool {
        self.webhook.is_some() || self.telegram.is_some()
    }
}

/// A webhook, validated. Its `Debug` shows the URL's scheme and host only: a webhook's path
/// often holds a token.
#[derive(Clone, PartialEq)]
pub struct Webhook {
    /// Where to POST.
    pub url: reqwest::Url,
    /// The HMAC key, if the bodies are signed.
    pub secret: Option<Secret>,
}

impl std::fmt::Debug for Webhook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Webhook")
            .field("url", &shown_url(&self.url))
            .field("secret", &self.secret)
            .finish()
    }
}

/// A Telegram chat, validated.
#[derive(Debug, Clone, PartialEq)]
pub struct Telegram {
    /// The bot's token (it goes in the request's path: that URL is never logged).
    pub token: Secret,
    /// The chat.
    pub chat_id: Secret,
    /// The Bot API's address, without a trailing `/`.
    pub api_url: reqwest::Url,
}

/// A URL's scheme, host and port, for messages (never its path or query).
fn shown_url(url: &reqwest::Url) -> String {
    let port = url.port().map(|p| format!(":{p}")).unwrap_or_default();
    format!(
        "{}://{}{port}/…",
        url.scheme(),
        url.host_str().unwrap_or("")
    )
}

/// Checks a notifier's URL: `https`, or `http` to a loopback address; no credentials.
fn check_url(text: &str) -> Result<reqwest::Url, String> {
    let url = reqwest::Url::parse(text).map_err(|e| format!("not a URL: {e}"))?;
    if !url.username().is_empty() || url.password().is_some() {
        return Err(
            "credentials in the URL (user:password@) are refused: they would travel with every notification; sign the webhook with `secret` instead"
                .into(),
        );
    }
    let host = url.host_str().unwrap_or("");
    if host.is_empty() {
        return Err("the URL has no host".into());
    }
    match url.scheme() {
        "https" => Ok(url),
        "http" => {
            let bare = host.trim_start_matches('[').trim_end_matches(']');
            let loopback = match bare.parse::<IpAddr>() {
                Ok(ip) => ip.is_loopback(),
                Err(_) => bare.eq_ignore_ascii_case("localhost"),
            };
            if loopback {
                Ok(url)
            } else {
                Err("http:// is allowed only to a loopback address (127.0.0.0/8, ::1, localhost): use https://".into())
            }
        }
        other => Err(format!(
            "the scheme must be https (or http to a loopback address), not {other}"
        )),
    }
}

/// Validates the notify section found at `path` (such as `reconcile.notify`): errors are
/// reported to `check`; `None` when there was one.
pub fn validate(spec: NotifySpec, check: &mut FileCheck<'_>, path: &str) -> Option<Notify> {
    let before = check.error_count();
    let cooldown = humantime::parse_duration(&spec.cooldown)
        .map_err(|e| {
            check.error(
                &format!("{path}.cooldown"),
                format!(
                    "{:?} is not a duration such as 30m or 1h: {e}",
                    spec.cooldown
                ),
            )
        })
        .ok();
    if spec.confirm_runs == 0 {
        check.error(
            &format!("{path}.confirm_runs"),
            "confirm_runs must be at least 1 (1 notifies at once)".into(),
        );
    }
    if spec.unreachable_after == 0 {
        check.error(
            &format!("{path}.unreachable_after"),
            "unreachable_after must be at least 1".into(),
        );
    }
    let webhook = spec.webhook.and_then(|w| {
        let at = format!("{path}.webhook.url");
        let url = check_url(&w.url).map_err(|e| check.error(&at, e)).ok();
        let secret = match &w.secret {
            Some(r) => Some(check.secret(r, &format!("{path}.webhook.secret"), false)?),
            None => None,
        };
        Some(Webhook { url: url?, secret })
    });
    let telegram = spec.telegram.and_then(|t| {
        let at = format!("{path}.telegram.api_url");
        let api = t.api_url.as_deref().unwrap_or("https://api.telegram.org");
        let api_url = check_url(api.trim_end_matches('/'))
            .map_err(|e| check.error(&at, e))
            .ok();
        let at = format!("{path}.telegram.token");
        let token = check.secret(&t.token, &at, false);
        if let Some(s) = &token
            && !s.is_unresolved()
            && !s
                .expose()
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, ':' | '_' | '-'))
        {
            check.error(
                &at,
                format!(
                    "the bot token from {:?} holds characters other than letters, digits, ':', '_' and '-' (it is not shown)",
                    t.token
                ),
            );
        }
        let at = format!("{path}.telegram.chat_id");
        let chat_id = check.secret(&t.chat_id, &at, false);
        if let Some(s) = &chat_id
            && !s.is_unresolved()
            && !valid_chat_id(s.expose())
        {
            check.error(
                &at,
                format!(
                    "the chat id from {:?} is neither a number nor @channel (it is not shown)",
                    t.chat_id
                ),
            );
        }
        Some(Telegram {
            token: token?,
            chat_id: chat_id?,
            api_url: api_url?,
        })
    });
    if check.error_count() > before {
        return None;
    }
    Some(Notify {
        language: spec.language,
        cooldown: cooldown?,
        confirm_runs: spec.confirm_runs,
        unreachable_after: spec.unreachable_after,
        webhook,
        telegram,
    })
}

/// A numeric chat id (`-100123`) or a channel's `@name`.
fn valid_chat_id(id: &str) -> bool {
    let digits = id.strip_prefix('-').unwrap_or(id);
    let numeric = !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit());
    let channel = id.strip_prefix('@').is_some_and(|n| {
        !n.is_empty() && n.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
    });
    numeric || channel
}

/// One reconcile's outcome for a target, as the tracker sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Observed {
    /// Read, and in line with the YAML.
    InSync,
    /// Read, and not in line (detect-only, or outside a maintenance window).
    Drifting {
        /// How many objects differ.
        objects: usize,
        /// Their addresses (`pppoe.balanceador.secret["juan.perez"]`).
        addresses: Vec<String>,
    },
    /// An apply that failed.
    ApplyFailed {
        /// How many changes failed.
        failed: usize,
    },
    /// An apply that wrote changes (and left the target in sync).
    Applied {
        /// How many changes were written.
        changes: usize,
    },
    /// The target could not be read.
    Unreachable,
}

/// What a notice is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Event {
    /// The target drifted from the desired state (or more of it did).
    Drift,
    /// The target is in the desired state again after a notified drift, failure or outage.
    Resolved,
    /// wispctl wrote changes to the target.
    Applied,
    /// An apply to the target failed.
    ApplyFailed,
    /// The target did not answer several reads in a row.
    Unreachable,
}

/// One notification: addresses and counts, never a value, a secret or an error text.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Notice {
    /// What happened.
    pub event: Event,
    /// The target (`pppoe.balanceador`).
    pub target: String,
    /// Its kind (`pppoe`).
    pub kind: String,
    /// The count the event is about: drifting objects (`drift`), changes written (`applied`),
    /// changes failed (`apply_failed`), consecutive failed reads (`unreachable`); 0 for
    /// `resolved`.
    pub objects: usize,
    /// The drifting objects' addresses, sorted, at most 20.
    pub addresses: Vec<String>,
    /// How many more addresses there were.
    pub more_addresses: usize,
    /// When the notice was made (RFC 3339, UTC): a receiver that checks the signature can
    /// refuse old bodies.
    pub at: String,
    /// The host wispctl runs on.
    pub host: String,
}

/// The category a target's state is in (drift details are kept aside).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Cat {
    InSync,
    Drifting,
    Failed,
    Unreachable,
}

/// What the operator was last told about a target.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Told {
    /// Nothing bad (never told, or told it was resolved or applied).
    Fine,
    Drift {
        objects: usize,
        addresses: BTreeSet<String>,
    },
    Failed,
    Unreachable,
}

#[derive(Debug)]
struct TargetState {
    confirmed: Option<Cat>,
    /// A state seen in a row, not yet confirmed, and how many times.
    candidate: Option<(Cat, u32)>,
    /// Consecutive failed reads.
    streak: u32,
    /// The last drift seen.
    drift: (usize, BTreeSet<String>),
    told: Told,
    /// The state notice the cooldown is holding back (counted once).
    held: Option<Event>,
    last_sent: HashMap<Event, Instant>,
}

/// Decides which reconcile outcomes are notified: anti-flap (`confirm_runs`,
/// `unreachable_after`), first-observation rules and the cooldown. Pure: no I/O; time comes
/// in as [`tokio::time::Instant`] (the paused clock in tests).
#[derive(Debug)]
pub struct Tracker {
    cooldown: Duration,
    confirm_runs: u32,
    unreachable_after: u32,
    host: String,
    targets: HashMap<String, TargetState>,
    flapping: u64,
    cooled: u64,
}

impl Tracker {
    /// A tracker with the section's rules and no target seen yet.
    pub fn new(cfg: &Notify) -> Tracker {
        Tracker {
            cooldown: cfg.cooldown,
            confirm_runs: cfg.confirm_runs.max(1),
            unreachable_after: cfg.unreachable_after.max(1),
            host: crate::engine::lock::hostname(),
            targets: HashMap::new(),
            flapping: 0,
            cooled: 0,
        }
    }

    /// One reconcile's result for a target; returns the notices to send now.
    pub fn observe(
        &mut self,
        target: &str,
        kind: &str,
        seen: Observed,
        now: Instant,
    ) -> Vec<Notice> {
        let (confirm_runs, unreachable_after) = (self.confirm_runs, self.unreachable_after);
        let st = self
            .targets
            .entry(target.to_string())
            .or_insert_with(|| TargetState {
                confirmed: None,
                candidate: None,
                streak: 0,
                drift: (0, BTreeSet::new()),
                told: Told::Fine,
                held: None,
                last_sent: HashMap::new(),
            });
        // A read that came back ends a run of failed reads: one that stopped short of
        // `unreachable_after` held back a change of state.
        if seen != Observed::Unreachable {
            if st.streak > 0 && st.confirmed != Some(Cat::Unreachable) {
                self.flapping += 1;
            }
            st.streak = 0;
        }
        let make = |event, objects, addresses: &BTreeSet<String>| {
            let all: Vec<String> = addresses.iter().cloned().collect();
            Notice {
                event,
                target: target.to_string(),
                kind: kind.to_string(),
                objects,
                more_addresses: all.len().saturating_sub(MAX_ADDRESSES),
                addresses: all.into_iter().take(MAX_ADDRESSES).collect(),
                at: humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string(),
                host: self.host.clone(),
            }
        };
        let cooldown = self.cooldown;
        let free = |st: &TargetState, event| {
            st.last_sent
                .get(&event)
                .is_none_or(|t| now.saturating_duration_since(*t) >= cooldown)
        };
        match seen {
            Observed::Applied { changes } => {
                st.candidate = None;
                st.confirmed = Some(Cat::InSync);
                st.told = Told::Fine;
                st.held = None;
                st.last_sent.insert(Event::Applied, now);
                return vec![make(Event::Applied, changes, &BTreeSet::new())];
            }
            Observed::ApplyFailed { failed } => {
                st.candidate = None;
                st.confirmed = Some(Cat::Failed);
                st.held = None;
                if !free(st, Event::ApplyFailed) {
                    self.cooled += 1;
                    return Vec::new();
                }
                st.told = Told::Failed;
                st.last_sent.insert(Event::ApplyFailed, now);
                return vec![make(Event::ApplyFailed, failed, &BTreeSet::new())];
            }
            Observed::Unreachable => {
                st.streak = st.streak.saturating_add(1);
                if st.streak >= unreachable_after && st.confirmed != Some(Cat::Unreachable) {
                    st.candidate = None;
                    st.confirmed = Some(Cat::Unreachable);
                }
            }
            Observed::InSync => step(st, Cat::InSync, confirm_runs, &mut self.flapping),
            Observed::Drifting { objects, addresses } => {
                st.drift = (objects, addresses.into_iter().collect());
                step(st, Cat::Drifting, confirm_runs, &mut self.flapping);
            }
        }
        // A state notice is due while the confirmed state differs from what was told.
        let due = match (st.confirmed, &st.told) {
            (Some(Cat::InSync), Told::Fine) => None,
            (Some(Cat::InSync), _) => Some(Event::Resolved),
            (Some(Cat::Drifting), Told::Drift { objects, addresses }) => {
                let grew = st.drift.0 > *objects || !st.drift.1.is_subset(addresses);
                grew.then_some(Event::Drift)
            }
            (Some(Cat::Drifting), _) => Some(Event::Drift),
            (Some(Cat::Unreachable), Told::Unreachable) => None,
            (Some(Cat::Unreachable), _) => Some(Event::Unreachable),
            (Some(Cat::Failed) | None, _) => None,
        };
        let Some(event) = due else {
            st.held = None;
            return Vec::new();
        };
        if !free(st, event) {
            if st.held != Some(event) {
                st.held = Some(event);
                self.cooled += 1;
            }
            return Vec::new();
        }
        st.held = None;
        st.last_sent.insert(event, now);
        let notice = match event {
            Event::Drift => {
                st.told = Told::Drift {
                    objects: st.drift.0,
                    addresses: st.drift.1.clone(),
                };
                make(Event::Drift, st.drift.0, &st.drift.1)
            }
            Event::Unreachable => {
                st.told = Told::Unreachable;
                make(Event::Unreachable, st.streak as usize, &BTreeSet::new())
            }
            _ => {
                st.told = Told::Fine;
                make(event, 0, &BTreeSet::new())
            }
        };
        vec![notice]
    }

    /// Takes the rules of a reloaded section, keeping what each target was told.
    pub fn reconfigure(&mut self, cfg: &Notify) {
        self.cooldown = cfg.cooldown;
        self.confirm_runs = cfg.confirm_runs.max(1);
        self.unreachable_after = cfg.unreachable_after.max(1);
    }

    /// Records a state the operator was already told about (a previous run's, for
    /// `drift --notify`): confirmed at once, nothing returned, nothing counted, and no
    /// cooldown started.
    pub fn assume(&mut self, target: &str, kind: &str, seen: Observed) {
        let rules = (self.confirm_runs, self.unreachable_after);
        let counts = (self.flapping, self.cooled);
        (self.confirm_runs, self.unreachable_after) = (1, 1);
        let _ = self.observe(target, kind, seen, Instant::now());
        (self.confirm_runs, self.unreachable_after) = rules;
        (self.flapping, self.cooled) = counts;
        if let Some(st) = self.targets.get_mut(target) {
            st.last_sent.clear();
        }
    }

    /// Forgets a target (no longer in the desired state).
    pub fn forget(&mut self, target: &str) {
        self.targets.remove(target);
    }

    /// How many state changes anti-flap held back (seen fewer than `confirm_runs` times in a
    /// row, or failed reads fewer than `unreachable_after`).
    pub fn flapping_suppressed(&self) -> u64 {
        self.flapping
    }

    /// How many notices the cooldown held back (a state notice held over several reconciles
    /// counts once).
    pub fn cooldown_suppressed(&self) -> u64 {
        self.cooled
    }
}

/// Anti-flap: one more sighting of `cat`; it replaces the confirmed state once seen
/// `confirm_runs` times in a row. A pending state interrupted by another is counted.
fn step(st: &mut TargetState, cat: Cat, confirm_runs: u32, flapping: &mut u64) {
    if st.confirmed == Some(cat) {
        if st.candidate.take().is_some() {
            *flapping += 1;
        }
        return;
    }
    let n = match st.candidate {
        Some((c, n)) if c == cat => n + 1,
        Some(_) => {
            *flapping += 1;
            1
        }
        None => 1,
    };
    if n >= confirm_runs {
        st.confirmed = Some(cat);
        st.candidate = None;
    } else {
        st.candidate = Some((cat, n));
    }
}

fn plural(n: usize, one: &'static str, many: &'static str) -> &'static str {
    if n == 1 { one } else { many }
}

/// The one-line human message for a notice.
pub fn message(n: &Notice, lang: Language) -> String {
    let (t, k) = (&n.target, n.objects);
    match (lang, n.event) {
        (Language::Es, Event::Drift) => format!(
            "wispctl: {t} se desvió del estado deseado ({k} {})",
            plural(k, "objeto", "objetos")
        ),
        (Language::Es, Event::Resolved) => format!("wispctl: {t} volvió al estado deseado"),
        (Language::Es, Event::Applied) => format!(
            "wispctl: {} {k} {} en {t}",
            plural(k, "se aplicó", "se aplicaron"),
            plural(k, "cambio", "cambios")
        ),
        (Language::Es, Event::ApplyFailed) => format!(
            "wispctl: falló la aplicación en {t} ({k} {})",
            plural(k, "cambio", "cambios")
        ),
        (Language::Es, Event::Unreachable) => format!(
            "wispctl: {t} no responde ({k} {})",
            plural(k, "intento", "intentos seguidos")
        ),
        (Language::En, Event::Drift) => format!(
            "wispctl: {t} drifted from the desired state ({k} {})",
            plural(k, "object", "objects")
        ),
        (Language::En, Event::Resolved) => format!("wispctl: {t} is back in the desired state"),
        (Language::En, Event::Applied) => format!(
            "wispctl: applied {k} {} to {t}",
            plural(k, "change", "changes")
        ),
        (Language::En, Event::ApplyFailed) => format!(
            "wispctl: applying to {t} failed ({k} {})",
            plural(k, "change", "changes")
        ),
        (Language::En, Event::Unreachable) => format!(
            "wispctl: {t} is not responding ({k} {})",
            plural(k, "attempt", "attempts in a row")
        ),
    }
}

/// The Telegram text: the message, up to 3 addresses and how many more, at most 4096
/// characters (counted as Telegram does, in UTF-16 units).
pub fn telegram_text(n: &Notice, lang: Language) -> String {
    let mut text = message(n, lang);
    for a in n.addresses.iter().take(TELEGRAM_ADDRESSES) {
        text.push_str("\n• ");
        text.push_str(a);
    }
    let more = n.addresses.len().saturating_sub(TELEGRAM_ADDRESSES) + n.more_addresses;
    if more > 0 {
        text.push_str(&match lang {
            Language::Es => format!("\n… y {more} más"),
            Language::En => format!("\n… and {more} more"),
        });
    }
    let mut units = 0;
    let cut = text.char_indices().find(|(_, c)| {
        units += c.len_utf16();
        units > TELEGRAM_MAX
    });
    if let Some((i, _)) = cut {
        text.truncate(i);
    }
    text
}

/// The JSON a webhook receives (`notification.schema.json`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[schemars(title = "wispctl notification")]
pub struct WebhookBody {
    /// The version of this format: 1.
    #[schemars(extend("const" = 1))]
    pub format_version: u32,
    /// Always `wispctl`.
    #[schemars(extend("const" = "wispctl"))]
    pub source: String,
    /// The notice.
    #[serde(flatten)]
    pub notice: Notice,
    /// The human message, in the configured language.
    pub message: String,
}

/// The webhook's JSON body for a notice.
pub fn webhook_body(n: &Notice, lang: Language) -> String {
    let body = WebhookBody {
        format_version: 1,
        source: "wispctl".into(),
        notice: n.clone(),
        message: message(n, lang),
    };
    serde_json::to_string(&body).expect("a notice serialises")
}

/// The JSON Schema of [`WebhookBody`].
pub fn webhook_schema() -> schemars::Schema {
    schemars::schema_for!(WebhookBody)
}

/// The signature header's value: `sha256=<hex of HMAC-SHA256(secret, body)>`.
pub fn sign(secret: &[u8], body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).expect("HMAC takes keys of any length");
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

/// Whether a signature header's value is right for the body (compared in constant time).
pub fn verify(secret: &[u8], body: &[u8], header: &str) -> bool {
    let Some(sig) = header
        .strip_prefix("sha256=")
        .and_then(|h| hex::decode(h.trim()).ok())
    else {
        return false;
    };
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).expect("HMAC takes keys of any length");
    mac.update(body);
    mac.verify_slice(&sig).is_ok()
}

/// A reqwest client as the rest of the crate builds one: rustls with the ring provider, the
/// platform's verifier (verification on), no redirects (a token would follow them).
pub fn client() -> Result<reqwest::Client, String> {
    let tls = crate::tls::client_config(None)?;
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .tls_backend_preconfigured(tls)
        .connect_timeout(Duration::from_secs(10))
        .build()
        .map_err(|e| e.to_string())
}

/// How deliveries are retried and bounded.
#[derive(Debug, Clone, Copy)]
struct Policy {
    backoff: Backoff,
    tries: u32,
    timeout: Duration,
    queue: usize,
    max_body: usize,
}

const POLICY: Policy = Policy {
    backoff: Backoff {
        base: Duration::from_secs(5),
        cap: Duration::from_secs(300),
    },
    tries: 8,
    timeout: Duration::from_secs(10),
    queue: 1000,
    max_body: 64 * 1024,
};

/// Which notifier a delivery goes to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum To {
    Webhook,
    Telegram,
}

impl To {
    fn name(self) -> &'static str {
        match self {
            To::Webhook => "webhook",
            To::Telegram => "telegram",
        }
    }
}

/// One notice for one notifier.
#[derive(Debug)]
struct Job {
    notice: Arc<Notice>,
    to: To,
    tries: u32,
    due: Instant,
}

#[derive(Debug, Default)]
struct Queue {
    fresh: VecDeque<Job>,
    retries: Vec<Job>,
    busy: bool,
}

impl Queue {
    fn idle(&self) -> bool {
        self.fresh.is_empty() && self.retries.is_empty() && !self.busy
    }
}

#[derive(Debug)]
struct Shared {
    queue: Mutex<Queue>,
    wake: tokio::sync::Notify,
    idle: tokio::sync::Notify,
    dropped: AtomicU64,
}

/// Delivers notices in the background: [`Sender::send`] never blocks nor fails. The queue
/// is bounded (1000 deliveries; when full the oldest is dropped and counted). Each notifier
/// gets each notice; a failed delivery (a transport error, a 5xx, 408 or 429) is retried
/// with a backoff doubling from 5 s to 5 min (a Telegram 429 waits its `retry_after`), at
/// most 8 tries, then dropped and counted; another 4xx is dropped at once. Every failed try
/// counts in `failures` and is logged with the notifier's name and the status or error kind
/// only (never a URL: Telegram's holds the token).
///
/// The queue is a mutex-guarded `VecDeque` rather than an `mpsc` channel: dropping the
/// oldest needs the sending side to reach the front.
#[derive(Debug)]
pub struct Sender {
    cfg: Notify,
    shared: Arc<Shared>,
    targets: Vec<To>,
    queue_max: usize,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl Sender {
    /// Starts the background task (in the current tokio runtime). `failures` counts failed
    /// deliveries (the metric `wispctl_notifier_failures_total`).
    pub fn start(cfg: Notify, client: reqwest::Client, failures: Arc<AtomicU64>) -> Sender {
        Sender::start_with(cfg, client, failures, POLICY)
    }

    fn start_with(
        cfg: Notify,
        client: reqwest::Client,
        failures: Arc<AtomicU64>,
        policy: Policy,
    ) -> Sender {
        let shared = Arc::new(Shared {
            queue: Mutex::new(Queue::default()),
            wake: tokio::sync::Notify::new(),
            idle: tokio::sync::Notify::new(),
            dropped: AtomicU64::new(0),
        });
        let mut targets = Vec::new();
        if cfg.webhook.is_some() {
            targets.push(To::Webhook);
        }
        if cfg.telegram.is_some() {
            targets.push(To::Telegram);
        }
        let task = tokio::spawn(run(
            shared.clone(),
            Arc::new(cfg.clone()),
            client,
            failures,
            policy,
        ));
        Sender {
            cfg,
            shared,
            targets,
            queue_max: policy.queue,
            task: Some(task),
        }
    }

    /// The notifiers it delivers to.
    pub fn config(&self) -> &Notify {
        &self.cfg
    }

    /// Queues a notice for every notifier. Never blocks; when the queue is full the oldest
    /// delivery is dropped (and counted in [`Sender::dropped`]).
    pub fn send(&self, notice: Notice) {
        if self.targets.is_empty() {
            return;
        }
        let notice = Arc::new(notice);
        let now = Instant::now();
        let mut overflow = 0;
        {
            let mut q = self.shared.queue.lock().unwrap_or_else(|e| e.into_inner());
            for &to in &self.targets {
                q.fresh.push_back(Job {
                    notice: notice.clone(),
                    to,
                    tries: 0,
                    due: now,
                });
                while q.fresh.len() + q.retries.len() > self.queue_max && !q.fresh.is_empty() {
                    q.fresh.pop_front();
                    overflow += 1;
                }
            }
        }
        if overflow > 0 {
            self.shared.dropped.fetch_add(overflow, Ordering::Relaxed);
            tracing::warn!(
                dropped = overflow,
                "notification queue full: oldest dropped"
            );
        }
        self.shared.wake.notify_one();
    }

    /// Deliveries dropped: the queue was full, the tries ran out or the endpoint refused.
    pub fn dropped(&self) -> u64 {
        self.shared.dropped.load(Ordering::Relaxed)
    }

    /// Waits until every queued delivery is done (delivered or dropped), or `within` passes.
    /// Whether the queue was emptied.
    pub async fn flush(&self, within: Duration) -> bool {
        let deadline = Instant::now() + within;
        loop {
            let notified = self.shared.idle.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if self
                .shared
                .queue
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .idle()
            {
                return true;
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                return false;
            }
        }
    }

    /// Ends the background task at once; what is still queued is not sent (call
    /// [`Sender::flush`] first).
    pub async fn stop(mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
            let _ = task.await;
        }
    }
}

impl Drop for Sender {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

/// The background task: takes the due retry or the oldest fresh delivery, one at a time.
async fn run(
    shared: Arc<Shared>,
    cfg: Arc<Notify>,
    client: reqwest::Client,
    failures: Arc<AtomicU64>,
    policy: Policy,
) {
    loop {
        let (job, next) = {
            let mut q = shared.queue.lock().unwrap_or_else(|e| e.into_inner());
            let now = Instant::now();
            let due = (0..q.retries.len())
                .filter(|&i| q.retries[i].due <= now)
                .min_by_key(|&i| q.retries[i].due);
            let job = match due {
                Some(i) => Some(q.retries.swap_remove(i)),
                None => q.fresh.pop_front(),
            };
            q.busy = job.is_some();
            if q.idle() {
                shared.idle.notify_waiters();
            }
            (job, q.retries.iter().map(|j| j.due).min())
        };
        let Some(mut job) = job else {
            match next {
                Some(at) => {
                    tokio::select! {
                        () = shared.wake.notified() => {}
                        () = tokio::time::sleep_until(at) => {}
                    }
                }
                None => shared.wake.notified().await,
            }
            continue;
        };
        let name = job.to.name();
        let outcome = deliver(&client, &cfg, &job, policy).await;
        let mut q = shared.queue.lock().unwrap_or_else(|e| e.into_inner());
        q.busy = false;
        if let Err(failed) = outcome {
            failures.fetch_add(1, Ordering::Relaxed);
            job.tries += 1;
            if failed.retry && job.tries < policy.tries {
                let wait = failed
                    .after
                    .unwrap_or_else(|| policy.backoff.after(job.tries));
                tracing::warn!(
                    notifier = name,
                    error = failed.what,
                    tries = job.tries,
                    retry_in_secs = wait.as_secs(),
                    "notification not delivered; will retry"
                );
                job.due = Instant::now() + wait;
                q.retries.push(job);
            } else {
                shared.dropped.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(
                    notifier = name,
                    error = failed.what,
                    tries = job.tries,
                    "notification not delivered; dropped"
                );
            }
        }
        if q.idle() {
            shared.idle.notify_waiters();
        }
    }
}

/// A failed try: what to log, whether to retry, after how long (Telegram's `retry_after`).
#[derive(Debug)]
struct Failed {
    what: String,
    retry: bool,
    after: Option<Duration>,
}

fn transport(e: &reqwest::Error) -> Failed {
    // Only the kind: reqwest's message names the URL, and Telegram's holds the token.
    let what = if e.is_timeout() {
        "timeout"
    } else if e.is_connect() {
        "connect"
    } else if e.is_body() || e.is_decode() {
        "body"
    } else {
        "request"
    };
    Failed {
        what: what.into(),
        retry: true,
        after: None,
    }
}

/// One try of one delivery.
async fn deliver(
    client: &reqwest::Client,
    cfg: &Notify,
    job: &Job,
    policy: Policy,
) -> Result<(), Failed> {
    let request = match job.to {
        To::Webhook => {
            let Some(w) = &cfg.webhook else { return Ok(()) };
            let body = webhook_body(&job.notice, cfg.language);
            let mut r = client
                .post(w.url.clone())
                .header(reqwest::header::CONTENT_TYPE, "application/json");
            if let Some(s) = &w.secret {
                r = r.header(
                    SIGNATURE_HEADER,
                    sign(s.expose().as_bytes(), body.as_bytes()),
                );
            }
            r.body(body)
        }
        To::Telegram => {
            let Some(t) = &cfg.telegram else {
                return Ok(());
            };
            let api = t.api_url.as_str().trim_end_matches('/');
            let url = format!("{api}/bot{}/sendMessage", t.token.expose());
            let body = serde_json::json!({
                "chat_id": t.chat_id.expose(),
                "text": telegram_text(&job.notice, cfg.language),
                "disable_web_page_preview": true,
            });
            client.post(url).json(&body)
        }
    };
    let mut response = request
        .timeout(policy.timeout)
        .send()
        .await
        .map_err(|e| transport(&e))?;
    let status = response.status();
    // Read (a bounded part of) the body so that the connection can be reused; it is used
    // only for Telegram's retry_after, and never logged.
    let mut body = Vec::new();
    while body.len() < policy.max_body {
        match tokio::time::timeout(policy.timeout, response.chunk()).await {
            Ok(Ok(Some(chunk))) => {
                let room = policy.max_body - body.len();
                body.extend_from_slice(&chunk[..chunk.len().min(room)]);
            }
            _ => break,
        }
    }
    if status.is_success() {
        return Ok(());
    }
    let code = status.as_u16();
    let after = (job.to == To::Telegram && code == 429)
        .then(|| retry_after(&body))
        .flatten();
    Err(Failed {
        what: format!("status {code}"),
        retry: status.is_server_error() || code == 408 || code == 429,
        after,
    })
}

/// Telegram's `parameters.retry_after`, bounded to 1 s .. 1 h.
fn retry_after(body: &[u8]) -> Option<Duration> {
    let v: serde_json::Value = serde_json::from_slice(body).ok()?;
    let secs = v.pointer("/parameters/retry_after")?.as_u64()?;
    Some(Duration::from_secs(secs.clamp(1, 3600)))
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;
    use std::path::Path;

    use axum::body::Bytes;
    use axum::extract::State;
    use axum::http::{HeaderMap, StatusCode, Uri};

    use super::*;
    use crate::secret::SecretResolver;
    use crate::yaml::Diagnostic;
    use crate::yaml::locate::LocationIndex;

    const TOKEN: &str = "123456:AAE-very_secret_bot_token";

    fn cfg(confirm_runs: u32, unreachable_after: u32, cooldown: Duration) -> Notify {
        Notify {
            language: Language::Es,
            cooldown,
            confirm_runs,
            unreachable_after,
            webhook: None,
            telegram: None,
        }
    }

    fn drifting(addresses: &[&str]) -> Observed {
        Observed::Drifting {
            objects: addresses.len(),
            addresses: addresses.iter().map(|a| a.to_string()).collect(),
        }
    }

    fn events(n: Vec<Notice>) -> Vec<Event> {
        n.into_iter().map(|n| n.event).collect()
    }

    const T: &str = "pppoe.balanceador";
    const A: &str = "pppoe.balanceador.secret[\"juan.perez\"]";
    const B: &str = "pppoe.balanceador.secret[\"ana\"]";

    #[test]
    fn anti_flap_holds_back_a_state_seen_once() {
        let mut t = Tracker::new(&cfg(2, 3, Duration::ZERO));
        let now = Instant::now();
        for _ in 0..2 {
            assert!(t.observe(T, "pppoe", Observed::InSync, now).is_empty());
        }
        assert!(t.observe(T, "pppoe", drifting(&[A]), now).is_empty());
        assert!(t.observe(T, "pppoe", Observed::InSync, now).is_empty());
        assert_eq!(t.flapping_suppressed(), 1);
        // Seen twice in a row: confirmed and notified, once.
        assert!(t.observe(T, "pppoe", drifting(&[A]), now).is_empty());
        let n = t.observe(T, "pppoe", drifting(&[A]), now);
        assert_eq!(events(n.clone()), [Event::Drift]);
        assert_eq!(
            (n[0].objects, n[0].addresses.as_slice()),
            (1, [A.to_string()].as_slice())
        );
        assert!(t.observe(T, "pppoe", drifting(&[A]), now).is_empty());
        assert_eq!(t.flapping_suppressed(), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn cooldown_holds_back_and_counts() {
        let mut t = Tracker::new(&cfg(1, 3, Duration::from_secs(30 * 60)));
        let obs = |t: &mut Tracker, o| events(t.observe(T, "pppoe", o, Instant::now()));
        assert_eq!(obs(&mut t, drifting(&[A])), [Event::Drift]);
        tokio::time::advance(Duration::from_secs(60)).await;
        assert_eq!(obs(&mut t, Observed::InSync), [Event::Resolved]);
        tokio::time::advance(Duration::from_secs(60)).await;
        // The same drift again within 30m: held back, counted once however long it lasts.
        assert!(obs(&mut t, drifting(&[A])).is_empty());
        assert!(obs(&mut t, drifting(&[A])).is_empty());
        assert_eq!(t.cooldown_suppressed(), 1);
        tokio::time::advance(Duration::from_secs(28 * 60)).await;
        assert_eq!(obs(&mut t, drifting(&[A])), [Event::Drift]);
        assert_eq!(t.cooldown_suppressed(), 1);
        tokio::time::advance(Duration::from_secs(2 * 60)).await;
        // A drift held back and then resolved sends nothing at all.
        assert_eq!(obs(&mut t, Observed::InSync), [Event::Resolved]);
        assert!(obs(&mut t, drifting(&[A])).is_empty());
        assert!(obs(&mut t, Observed::InSync).is_empty());
        assert_eq!(t.cooldown_suppressed(), 2);
        // Failed applies: every one is due, repeats within the cooldown are held back.
        let failed = || Observed::ApplyFailed { failed: 1 };
        assert_eq!(obs(&mut t, failed()), [Event::ApplyFailed]);
        assert!(obs(&mut t, failed()).is_empty());
        assert_eq!(t.cooldown_suppressed(), 3);
        tokio::time::advance(Duration::from_secs(30 * 60)).await;
        assert_eq!(obs(&mut t, failed()), [Event::ApplyFailed]);
        // Applied: always sent, even twice in a row.
        assert_eq!(
            obs(&mut t, Observed::Applied { changes: 2 }),
            [Event::Applied]
        );
        assert_eq!(
            obs(&mut t, Observed::Applied { changes: 1 }),
            [Event::Applied]
        );
        assert_eq!(t.cooldown_suppressed(), 3);
    }

    #[test]
    fn unreachable_after_n_failed_reads() {
        let mut t = Tracker::new(&cfg(2, 3, Duration::ZERO));
        let now = Instant::now();
        let mut obs = |o| t.observe("uisp.main", "uisp", o, now);
        assert!(obs(Observed::InSync).is_empty());
        assert!(obs(Observed::InSync).is_empty());
        // Two failed reads then an answer: held back.
        assert!(obs(Observed::Unreachable).is_empty());
        assert!(obs(Observed::Unreachable).is_empty());
        assert!(obs(Observed::InSync).is_empty());
        for _ in 0..2 {
            assert!(obs(Observed::Unreachable).is_empty());
        }
        let n = obs(Observed::Unreachable);
        assert_eq!(events(n.clone()), [Event::Unreachable]);
        assert_eq!(n[0].objects, 3);
        assert_eq!(
            message(&n[0], Language::Es),
            "wispctl: uisp.main no responde (3 intentos seguidos)"
        );
        assert!(obs(Observed::Unreachable).is_empty());
        // Back: confirmed after two reads, one resolved (no separate "recovered").
        assert!(obs(Observed::InSync).is_empty());
        assert_eq!(events(obs(Observed::InSync)), [Event::Resolved]);
        assert_eq!(t.flapping_suppressed(), 1);
    }

    #[test]
    fn first_observation_sets_the_baseline() {
        let now = Instant::now();
        // Starting on a drifting network says so once.
        let mut t = Tracker::new(&cfg(2, 3, Duration::ZERO));
        assert!(t.observe(T, "pppoe", drifting(&[A]), now).is_empty());
        assert_eq!(
            events(t.observe(T, "pppoe", drifting(&[A]), now)),
            [Event::Drift]
        );
        assert!(t.observe(T, "pppoe", drifting(&[A]), now).is_empty());
        // Starting in sync says nothing; never "resolved" for what was never notified.
        let mut t = Tracker::new(&cfg(1, 3, Duration::ZERO));
        assert!(
            t.observe("pppd.vps", "pppd", Observed::InSync, now)
                .is_empty()
        );
        let mut t = Tracker::new(&cfg(2, 3, Duration::ZERO));
        assert!(t.observe(T, "pppoe", drifting(&[A]), now).is_empty());
        assert!(t.observe(T, "pppoe", Observed::InSync, now).is_empty());
        assert!(t.observe(T, "pppoe", Observed::InSync, now).is_empty());
        assert_eq!(t.flapping_suppressed(), 1);
        // Starting unreachable says so once.
        let mut t = Tracker::new(&cfg(2, 2, Duration::ZERO));
        assert!(
            t.observe("uisp.main", "uisp", Observed::Unreachable, now)
                .is_empty()
        );
        let n = t.observe("uisp.main", "uisp", Observed::Unreachable, now);
        assert_eq!(events(n), [Event::Unreachable]);
    }

    #[test]
    fn resolved_only_after_a_notified_bad_state_and_growth_is_drift() {
        let mut t = Tracker::new(&cfg(1, 3, Duration::ZERO));
        let now = Instant::now();
        let mut obs = |o| events(t.observe(T, "pppoe", o, now));
        assert!(obs(Observed::InSync).is_empty());
        assert_eq!(obs(drifting(&[A])), [Event::Drift]);
        // The set grew: told again; it shrank: not.
        assert_eq!(obs(drifting(&[A, B])), [Event::Drift]);
        assert!(obs(drifting(&[B])).is_empty());
        assert!(obs(drifting(&[A, B])).is_empty());
        assert_eq!(obs(Observed::InSync), [Event::Resolved]);
        assert!(obs(Observed::InSync).is_empty());
        // An apply stands for the resolution: no resolved after it.
        assert_eq!(obs(drifting(&[A])), [Event::Drift]);
        assert_eq!(obs(Observed::Applied { changes: 1 }), [Event::Applied]);
        assert!(obs(Observed::InSync).is_empty());
        // A failed apply is a bad state: resolved once in sync.
        assert_eq!(
            obs(Observed::ApplyFailed { failed: 1 }),
            [Event::ApplyFailed]
        );
        assert_eq!(obs(Observed::InSync), [Event::Resolved]);
    }

    #[test]
    fn an_assumed_baseline_is_compared_without_a_cooldown() {
        let mut t = Tracker::new(&cfg(1, 1, Duration::from_secs(1800)));
        let now = Instant::now();
        t.assume(T, "pppoe", drifting(&[A]));
        assert!(t.observe(T, "pppoe", drifting(&[A]), now).is_empty());
        assert_eq!(
            events(t.observe(T, "pppoe", drifting(&[A, B]), now)),
            [Event::Drift]
        );
        t.assume("pppd.vps", "pppd", drifting(&[A]));
        let n = t.observe("pppd.vps", "pppd", Observed::InSync, now);
        assert_eq!(events(n), [Event::Resolved]);
        t.assume("uisp.main", "uisp", Observed::InSync);
        assert!(
            t.observe("uisp.main", "uisp", Observed::InSync, now)
                .is_empty()
        );
        assert_eq!((t.flapping_suppressed(), t.cooldown_suppressed()), (0, 0));
    }

    #[test]
    fn addresses_are_bounded_and_counted() {
        let mut t = Tracker::new(&cfg(1, 3, Duration::ZERO));
        let many: Vec<String> = (0..25)
            .map(|i| format!("pppoe.r.secret[\"c{i:02}\"]"))
            .collect();
        let seen = Observed::Drifting {
            objects: 25,
            addresses: many,
        };
        let n = t
            .observe("pppoe.r", "pppoe", seen, Instant::now())
            .remove(0);
        assert_eq!(
            (n.addresses.len(), n.more_addresses, n.objects),
            (20, 5, 25)
        );
        let text = telegram_text(&n, Language::En);
        assert_eq!(
            text,
            "wispctl: pppoe.r drifted from the desired state (25 objects)\n\
             • pppoe.r.secret[\"c00\"]\n• pppoe.r.secret[\"c01\"]\n• pppoe.r.secret[\"c02\"]\n\
             … and 22 more"
        );
        let long = Notice {
            addresses: vec!["é".repeat(5000)],
            ..n
        };
        let text = telegram_text(&long, Language::Es);
        assert!(text.encode_utf16().count() <= 4096);
        assert!(text.starts_with("wispctl: pppoe.r se desvió"));
    }

    fn notice(event: Event, target: &str, objects: usize) -> Notice {
        Notice {
            event,
            target: target.into(),
            kind: target.split('.').next().unwrap().into(),
            objects,
            addresses: Vec::new(),
            more_addresses: 0,
            at: "2025-01-01T00:00:00Z".into(),
            host: "noc-1".into(),
        }
    }

    #[test]
    fn messages_in_es_and_en() {
        let cases = [
            (
                Event::Drift,
                "pppoe.balanceador",
                3,
                "wispctl: pppoe.balanceador se desvió del estado deseado (3 objetos)",
                "wispctl: pppoe.balanceador drifted from the desired state (3 objects)",
            ),
            (
                Event::Drift,
                "pppoe.balanceador",
                1,
                "wispctl: pppoe.balanceador se desvió del estado deseado (1 objeto)",
                "wispctl: pppoe.balanceador drifted from the desired state (1 object)",
            ),
            (
                Event::Resolved,
                "pppoe.balanceador",
                0,
                "wispctl: pppoe.balanceador volvió al estado deseado",
                "wispctl: pppoe.balanceador is back in the desired state",
            ),
            (
                Event::Applied,
                "pppd.vps",
                2,
                "wispctl: se aplicaron 2 cambios en pppd.vps",
                "wispctl: applied 2 changes to pppd.vps",
            ),
            (
                Event::Applied,
                "pppd.vps",
                1,
                "wispctl: se aplicó 1 cambio en pppd.vps",
                "wispctl: applied 1 change to pppd.vps",
            ),
            (
                Event::ApplyFailed,
                "pppd.vps",
                1,
                "wispctl: falló la aplicación en pppd.vps (1 cambio)",
                "wispctl: applying to pppd.vps failed (1 change)",
            ),
            (
                Event::Unreachable,
                "uisp.main",
                3,
                "wispctl: uisp.main no responde (3 intentos seguidos)",
                "wispctl: uisp.main is not responding (3 attempts in a row)",
            ),
        ];
        for (event, target, k, es, en) in cases {
            let n = notice(event, target, k);
            assert_eq!(message(&n, Language::Es), es);
            assert_eq!(message(&n, Language::En), en);
        }
    }

    #[test]
    fn webhook_body_matches_its_schema() {
        let schema = serde_json::to_value(webhook_schema()).unwrap();
        assert_eq!(schema["properties"]["format_version"]["const"], 1);
        assert_eq!(schema["properties"]["event"]["$ref"], "#/$defs/Event");
        let validator = jsonschema::validator_for(&schema).unwrap();
        let mut n = notice(Event::ApplyFailed, "pppd.vps", 1);
        n.addresses = vec![A.into()];
        let body: serde_json::Value =
            serde_json::from_str(&webhook_body(&n, Language::Es)).unwrap();
        assert!(validator.is_valid(&body), "{body}");
        assert_eq!(body["event"], "apply_failed");
        assert_eq!(body["format_version"], 1);
        assert_eq!(body["source"], "wispctl");
        assert_eq!(
            body["message"],
            "wispctl: falló la aplicación en pppd.vps (1 cambio)"
        );
        let mut wrong = body.clone();
        wrong["format_version"] = 2.into();
        assert!(!validator.is_valid(&wrong));
        wrong = body;
        wrong["event"] = "recovered".into();
        assert!(!validator.is_valid(&wrong));
    }

    #[test]
    fn sign_verify_round_trip_and_tamper() {
        let body = br#"{"event":"drift"}"#;
        let sig = sign(b"k3y", body);
        assert!(sig.starts_with("sha256=") && sig.len() == 7 + 64);
        assert!(verify(b"k3y", body, &sig));
        assert!(!verify(b"k3y", br#"{"event":"drifT"}"#, &sig));
        assert!(!verify(b"other", body, &sig));
        assert!(!verify(b"k3y", body, &sig[7..]));
        assert!(!verify(b"k3y", body, "sha256=zz"));
    }

    #[derive(Deserialize)]
    struct Wrapper {
        notify: NotifySpec,
    }

    fn validated(yaml: &str) -> (Option<Notify>, Vec<Diagnostic>) {
        let spec = serde_saphyr::from_str::<Wrapper>(yaml).unwrap().notify;
        let index = LocationIndex::new(yaml);
        let resolver = SecretResolver::new().with_fallback_env(HashMap::from([
            ("WISPCTL_T_TOKEN".to_string(), TOKEN.to_string()),
            ("WISPCTL_T_CHAT".to_string(), "-1001234".to_string()),
            ("WISPCTL_T_BAD".to_string(), "12:ab/cd?x".to_string()),
            ("WISPCTL_T_HMAC".to_string(), "k3y".to_string()),
        ]));
        let mut diags = Vec::new();
        let dir = Path::new("/nonexistent-wispctl");
        let file = dir.join("inventory.yaml");
        let mut check = FileCheck::new(&file, &index, dir, &resolver, &mut diags);
        let n = validate(spec, &mut check, "notify");
        (n, diags)
    }

    fn messages(yaml: &str) -> Vec<String> {
        let (n, d) = validated(yaml);
        assert!(n.is_none());
        d.into_iter()
            .map(|d| format!("{}: {}", d.line, d.message))
            .collect()
    }

    #[test]
    fn validate_defaults_urls_and_secrets() {
        let (n, d) = validated("notify: {}\n");
        let n = n.unwrap();
        assert!(d.is_empty());
        assert_eq!(
            (
                n.language,
                n.cooldown,
                n.confirm_runs,
                n.unreachable_after,
                n.has_notifiers()
            ),
            (Language::En, Duration::from_secs(1800), 2, 3, false)
        );
        let (n, d) = validated(
            "notify:\n  language: es\n  cooldown: 1h\n  webhook:\n    url: http://127.0.0.1:9000/h\n    secret: { env: WISPCTL_T_HMAC }\n  telegram:\n    token: { env: WISPCTL_T_TOKEN }\n    chat_id: { env: WISPCTL_T_CHAT }\n",
        );
        assert!(d.is_empty(), "{d:?}");
        let n = n.unwrap();
        assert_eq!(n.language, Language::Es);
        assert_eq!(n.cooldown, Duration::from_secs(3600));
        assert_eq!(
            n.telegram.as_ref().unwrap().api_url.as_str(),
            "https://api.telegram.org/"
        );
        assert_eq!(
            n.webhook
                .as_ref()
                .unwrap()
                .secret
                .as_ref()
                .unwrap()
                .expose(),
            "k3y"
        );
        for (url, why) in [
            ("http://hooks.example.net/x", "only to a loopback address"),
            ("https://user:pw@hooks.example.net/x", "credentials"),
            ("ftp://127.0.0.1/x", "scheme must be https"),
            ("not a url", "not a URL"),
        ] {
            let m = messages(&format!("notify:\n  webhook:\n    url: {url}\n"));
            assert_eq!(m.len(), 1, "{m:?}");
            assert!(m[0].starts_with("3: ") && m[0].contains(why), "{m:?}");
        }
        for ok in [
            "http://localhost:8080/h",
            "http://[::1]/h",
            "http://127.0.0.9/h",
            "https://h.example.net/x",
        ] {
            let (n, d) = validated(&format!("notify:\n  webhook:\n    url: {ok}\n"));
            assert!(n.is_some() && d.is_empty(), "{ok}: {d:?}");
        }
        let m = messages(
            "notify:\n  cooldown: soon\n  confirm_runs: 0\n  telegram:\n    token: { env: WISPCTL_T_BAD }\n    chat_id: { inline: \"-1\" }\n    api_url: http://api.example.net\n",
        );
        assert_eq!(m.len(), 5, "{m:?}");
        let all = m.join("\n");
        for part in [
            "2: \"soon\" is not a duration",
            "3: confirm_runs",
            "5: the bot token from env:WISPCTL_T_BAD",
            "6: inline secrets are refused",
            "7: http:// is allowed only",
        ] {
            assert!(all.contains(part), "{part}: {all}");
        }
        assert!(!all.contains("ab/cd"), "{all}");
    }

    fn with_notifiers(port: u16, webhook_secret: Option<&str>) -> Notify {
        let mut c = cfg(1, 3, Duration::ZERO);
        c.webhook = Some(Webhook {
            url: format!("http://127.0.0.1:{port}/hook").parse().unwrap(),
            secret: webhook_secret.map(Secret::new),
        });
        c.telegram = Some(Telegram {
            token: Secret::new(TOKEN),
            chat_id: Secret::new("-1001234"),
            api_url: format!("http://127.0.0.1:{port}/").parse().unwrap(),
        });
        c
    }

    #[test]
    fn debug_never_shows_secrets() {
        let c = with_notifiers(9, Some("hmac-key-value"));
        let text = format!("{c:?} {:?}", Tracker::new(&c));
        assert!(
            !text.contains(TOKEN) && !text.contains("-1001234"),
            "{text}"
        );
        assert!(
            !text.contains("hmac-key-value") && !text.contains("/hook"),
            "{text}"
        );
        assert!(text.contains("(sensitive)"));
    }

    /// A request the test server received.
    #[derive(Debug, Clone)]
    struct Got {
        path: String,
        headers: HeaderMap,
        body: Bytes,
    }

    #[derive(Clone)]
    struct Server {
        got: Arc<Mutex<Vec<Got>>>,
        /// The statuses to answer, in turn; 200 once they run out.
        statuses: Arc<Mutex<VecDeque<u16>>>,
    }

    async fn handle(
        State(s): State<Server>,
        uri: Uri,
        headers: HeaderMap,
        body: Bytes,
    ) -> (StatusCode, String) {
        s.got.lock().unwrap().push(Got {
            path: uri.path().to_string(),
            headers,
            body,
        });
        let code = s.statuses.lock().unwrap().pop_front().unwrap_or(200);
        let reply = if code == 200 {
            r#"{"ok":true,"result":{}}"#
        } else {
            r#"{"ok":false,"error_code":500,"description":"x"}"#
        };
        (StatusCode::from_u16(code).unwrap(), reply.into())
    }

    /// A server on 127.0.0.1: its port and what it received.
    async fn serve(statuses: &[u16]) -> (u16, Arc<Mutex<Vec<Got>>>) {
        let state = Server {
            got: Arc::default(),
            statuses: Arc::new(Mutex::new(statuses.iter().copied().collect())),
        };
        let got = state.got.clone();
        let app = axum::Router::new().fallback(handle).with_state(state);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        (port, got)
    }

    const FAST: Policy = Policy {
        backoff: Backoff {
            base: Duration::from_millis(20),
            cap: Duration::from_millis(100),
        },
        ..POLICY
    };

    #[tokio::test]
    async fn delivers_signed_webhook_and_telegram() {
        let (port, got) = serve(&[]).await;
        let failures = Arc::new(AtomicU64::new(0));
        let sender = Sender::start_with(
            with_notifiers(port, Some("k3y")),
            client().unwrap(),
            failures.clone(),
            FAST,
        );
        let mut n = notice(Event::Drift, T, 1);
        n.addresses = vec![A.into()];
        sender.send(n);
        assert!(sender.flush(Duration::from_secs(10)).await);
        let got = got.lock().unwrap().clone();
        assert_eq!(got.len(), 2, "{got:?}");
        let hook = got.iter().find(|g| g.path == "/hook").unwrap();
        assert_eq!(hook.headers["content-type"], "application/json");
        let sig = hook.headers[SIGNATURE_HEADER].to_str().unwrap();
        assert!(verify(b"k3y", &hook.body, sig));
        let body: WebhookBody = serde_json::from_slice(&hook.body).unwrap();
        assert_eq!(
            (body.notice.event, body.notice.addresses),
            (Event::Drift, vec![A.to_string()])
        );
        let tg = got.iter().find(|g| g.path != "/hook").unwrap();
        assert_eq!(tg.path, format!("/bot{TOKEN}/sendMessage"));
        assert!(tg.headers.get(SIGNATURE_HEADER).is_none());
        let v: serde_json::Value = serde_json::from_slice(&tg.body).unwrap();
        assert_eq!(v["chat_id"], "-1001234");
        assert_eq!(v["disable_web_page_preview"], true);
        assert_eq!(
            v["text"],
            format!("wispctl: {T} se desvió del estado deseado (1 objeto)\n• {A}")
        );
        assert_eq!(v.as_object().unwrap().len(), 3);
        assert_eq!((failures.load(Ordering::Relaxed), sender.dropped()), (0, 0));
        sender.stop().await;
    }

    #[tokio::test]
    async fn a_failing_endpoint_is_retried_and_counted() {
        let (port, got) = serve(&[500, 500]).await;
        let failures = Arc::new(AtomicU64::new(0));
        let mut c = with_notifiers(port, None);
        c.telegram = None;
        let sender = Sender::start_with(c, client().unwrap(), failures.clone(), FAST);
        sender.send(notice(Event::Applied, "pppd.vps", 2));
        assert!(sender.flush(Duration::from_secs(10)).await);
        assert_eq!(got.lock().unwrap().len(), 3);
        assert!(
            got.lock().unwrap()[2]
                .headers
                .get(SIGNATURE_HEADER)
                .is_none()
        );
        assert_eq!((failures.load(Ordering::Relaxed), sender.dropped()), (2, 0));
        // A refusal (4xx other than 408 and 429) is not retried.
        let (port, got) = serve(&[403]).await;
        let mut c = with_notifiers(port, None);
        c.webhook = None;
        let sender = Sender::start_with(c, client().unwrap(), failures.clone(), FAST);
        sender.send(notice(Event::Applied, "pppd.vps", 2));
        assert!(sender.flush(Duration::from_secs(10)).await);
        assert_eq!(got.lock().unwrap().len(), 1);
        assert_eq!((failures.load(Ordering::Relaxed), sender.dropped()), (3, 1));
    }

    #[tokio::test]
    async fn tries_are_bounded_and_the_queue_drops_the_oldest() {
        let (port, got) = serve(&[503; 20]).await;
        let failures = Arc::new(AtomicU64::new(0));
        let mut c = with_notifiers(port, None);
        c.telegram = None;
        let policy = Policy {
            tries: 3,
            queue: 2,
            ..FAST
        };
        let sender = Sender::start_with(c, client().unwrap(), failures.clone(), policy);
        // The task has not run yet (one thread): five notices, room for two.
        for i in 0..5 {
            sender.send(notice(Event::Applied, "pppd.vps", i));
        }
        assert_eq!(sender.dropped(), 3);
        assert!(sender.flush(Duration::from_secs(10)).await);
        let got = got.lock().unwrap().clone();
        assert_eq!(got.len(), 6);
        let kept: BTreeSet<usize> = got
            .iter()
            .map(|g| {
                serde_json::from_slice::<WebhookBody>(&g.body)
                    .unwrap()
                    .notice
                    .objects
            })
            .collect();
        assert_eq!(kept, BTreeSet::from([3, 4]));
        assert_eq!((failures.load(Ordering::Relaxed), sender.dropped()), (6, 5));
    }

    #[test]
    fn telegram_retry_after_is_read_and_bounded() {
        let body = br#"{"ok":false,"error_code":429,"description":"Too Many Requests: retry after 7","parameters":{"retry_after":7}}"#;
        assert_eq!(retry_after(body), Some(Duration::from_secs(7)));
        assert_eq!(
            retry_after(br#"{"parameters":{"retry_after":999999}}"#),
            Some(Duration::from_secs(3600))
        );
        assert_eq!(retry_after(b"<html>"), None);
    }
}
