//! Diff: what must change on one router for its secrets to match the YAML. Pure: plain values
//! in (the desired secrets, the router as read, the hash key), a plan out; no I/O.
//!
//! Each concern is a small function over plain values, tested on its own: value forms
//! ([`normalise`]), managed fields ([`changed_fields`]), passwords ([`compare_password`]),
//! comments and the tag ([`comment_to_write`], [`adoption`]), kicks ([`kick_owed`],
//! [`sessions_to_kick`]), pruning ([`prune`]), and what stops a router ([`missing_profiles`],
//! [`named_twice`]). [`diff_router`] puts them together.
//!
//! Not here: reading the router (`observe`), writing it (`apply`), and the guards every kind
//! shares (the delete cap, the empty-list guard): the engine applies those, from the
//! `desired_counts` and `allow_empty_prune` a diff returns.

use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

use routeros_api::client::Row;

use super::observe::{LiveSecret, RouterLive};
use super::spec::{DesiredSecret, Kick, PppoeDesired};
use super::{MissingProfile, PppoeError, secret_address};
use crate::engine::{Item, Planned};
use crate::mac::normalise_mac;
use crate::ownership::Prune;
use crate::ownership::tagged;
use crate::plan::{Action, Change, FieldDiff, Impact};
use crate::secret::{HashKey, Secret, SecretHash};

/// The collection of every pppoe change, for the empty-list guard.
const COLLECTION: &str = "secret";

/// Fields whose change only takes effect on a new session.
const EFFECTIVE: &[&str] = &[
    "password",
    "profile",
    "disabled",
    "local-address",
    "remote-address",
    "limit-bytes-in",
    "limit-bytes-out",
    "service",
    "routes",
    "caller-id",
];

const HIDDEN_PASSWORD: &str = "the router hides passwords from this API user and wispctl has not set this one before: it is set, and the session is not kicked";
const HIDDEN_PASSWORD_KICKED: &str = "the router hides passwords from this API user and wispctl has not set this one before: it is set; the session is disconnected for the other changes, not for the password";
const KICK_OWED: &str = "an earlier apply changed this secret but could not disconnect its session";
const KICK_OWED_REMOVED: &str =
    "an earlier apply removed this secret but could not disconnect its session";
const ADOPTS: &str = "adopts a secret wispctl did not create: its comment gets the [wispctl] tag";
const PRUNED: &str = "tagged by wispctl and no longer in the YAML (prune: owned)";

/// One apply instruction.
pub enum Op {
    /// `/ppp/secret/add`.
    Add(DesiredSecret),
    /// `/ppp/secret/set` with only the changed fields; then kick the sessions.
    Set {
        /// `.id`.
        id: String,
        /// The desired secret (for verification and the password hash).
        desired: DesiredSecret,
        /// Changed fields, RouterOS names; the password under `password`.
        fields: Vec<String>,
        /// The comment text written (with the tag) when `fields` holds `comment`.
        comment: String,
        /// Active session ids to disconnect.
        kick: Vec<String>,
    },
    /// Only disconnect the sessions of a secret (a kick an earlier apply could not make).
    Kick {
        /// The secret's name.
        name: String,
        /// Active session ids to disconnect.
        kick: Vec<String>,
    },
    /// Part of the batched `/ppp/secret/remove`; then kick the sessions.
    Remove {
        /// `.id`.
        id: String,
        /// The secret's name.
        name: String,
        /// Active session ids to disconnect.
        kick: Vec<String>,
    },
}

impl Op {
    /// The secret's name.
    pub fn name(&self) -> &str {
        match self {
            Op::Add(d) | Op::Set { desired: d, .. } => &d.name,
            Op::Remove { name, .. } | Op::Kick { name, .. } => name,
        }
    }

    /// The sessions to disconnect after the write.
    pub fn kick(&self) -> &[String] {
        match self {
            Op::Add(_) => &[],
            Op::Set { kick, .. } | Op::Remove { kick, .. } | Op::Kick { kick, .. } => kick,
        }
    }
}

/// A value in the one form the diff compares: RouterOS 6 prints `disabled` as `yes`/`no`, 7 as
/// `true`/`false`; a `caller-id` MAC address may be written in any case and separator.
pub fn normalise<'a>(key: &str, value: &'a str) -> Cow<'a, str> {
    match (key, value) {
        ("disabled", "yes") => Cow::Borrowed("true"),
        ("disabled", "no") => Cow::Borrowed("false"),
        ("caller-id", v) if !v.is_empty() => normalise_mac(v).map_or(Cow::Borrowed(v), Cow::Owned),
        (_, v) => Cow::Borrowed(v),
    }
}

/// Whether a change of `field` only takes effect when the customer's session is new (so it
/// calls for a kick); a comment never does.
pub fn takes_effect_on_new_session(field: &str) -> bool {
    EFFECTIVE.contains(&field)
}

/// A managed field whose router value differs from the YAML's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldChange {
    /// The RouterOS field name.
    pub field: &'static str,
    /// The router's value (empty when it does not print the field).
    pub live: String,
    /// The YAML's value.
    pub desired: String,
}

/// The managed fields (the YAML's, comment and password apart) whose router value differs. A
/// field the router does not print reads as empty; fields the YAML leaves out are not managed.
pub fn changed_fields(desired: &BTreeMap<&'static str, String>, live: &Row) -> Vec<FieldChange> {
    desired
        .iter()
        .filter_map(|(field, want)| {
            let now = live.get(field).unwrap_or("");
            (now != want).then(|| FieldChange {
                field,
                live: now.to_string(),
                desired: want.clone(),
            })
        })
        .collect()
}

/// How a desired password compares with the router's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PasswordCheck {
    /// The same: nothing to write.
    Same,
    /// Known to differ: written, and the session kicked.
    Changed,
    /// The router hides it and wispctl never set it: written, but the session is not kicked
    /// for it (the value may well be the same).
    Unknown,
}

/// Compares a desired password with what the router `shows` (an API user with the `sensitive`
/// policy sees it) or, when hidden, with the keyed hash of what wispctl last `applied`.
pub fn compare_password(
    desired: &Secret,
    shows: Option<&str>,
    applied: Option<&SecretHash>,
    key: &HashKey,
) -> PasswordCheck {
    let same = match (shows, applied) {
        (Some(v), _) => v == desired.expose(),
        (None, Some(h)) => *h == SecretHash::of(key, desired),
        (None, None) => return PasswordCheck::Unknown,
    };
    if same {
        PasswordCheck::Same
    } else {
        PasswordCheck::Changed
    }
}

/// The comment text a write carries (apply adds the tag), and whether the YAML changes it. A
/// comment the YAML leaves out is not managed: the router's text stays.
pub fn comment_to_write(desired: Option<&str>, live_text: &str) -> (String, bool) {
    match desired {
        Some(c) => (c.to_string(), c != live_text),
        None => (live_text.to_string(), false),
    }
}

/// What a write does about wispctl's tag on a secret the YAML names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Adoption {
    /// It carries the tag already.
    Owned,
    /// Not tagged yet: the comment is written with the tag (adopted).
    Tag,
    /// Not tagged, and its comment is not UTF-8 (typed in Winbox): written back as UTF-8 it
    /// would change under the operator's eyes, so it is left alone and the secret untagged
    /// (never pruned).
    LeftUntagged,
}

/// Whether a write adopts the secret. The tag alone is no change: a secret the YAML names is
/// already wispctl's (that is what lets `import` be followed by an empty plan), so the tag
/// rides along with the first change wispctl makes.
pub fn adoption(owned: bool, comment_changed: bool, comment_not_utf8: bool) -> Adoption {
    if owned {
        Adoption::Owned
    } else if comment_changed || !comment_not_utf8 {
        Adoption::Tag
    } else {
        Adoption::LeftUntagged
    }
}

/// Why a hidden password wispctl never set is written, saying what the plan does with the
/// session: `kicks` when other changes disconnect it (the plan's side effect), so that the
/// reason and the side effect never contradict each other.
pub fn hidden_password_reason(kicks: bool) -> &'static str {
    if kicks {
        HIDDEN_PASSWORD_KICKED
    } else {
        HIDDEN_PASSWORD
    }
}

/// Whether a kick that an earlier apply could not make is still owed: the policy kicks, the
/// state file says so, and the customer has a session up.
pub fn kick_owed(policy: Kick, pending: bool, sessions: &[String]) -> bool {
    policy == Kick::OnChange && pending && !sessions.is_empty()
}

/// The sessions a change disconnects: all of the secret's when the policy kicks and a field
/// that takes effect on a new session changed (or a kick is owed); none otherwise.
pub fn sessions_to_kick(
    policy: Kick,
    effective: bool,
    owed: bool,
    sessions: &[String],
) -> Vec<String> {
    if policy == Kick::OnChange && (effective || owed) {
        sessions.to_vec()
    } else {
        Vec::new()
    }
}

/// What pruning does with a live secret.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PruneDecision {
    /// Not a question for pruning: the YAML names it, or it is not wispctl's.
    Leave,
    /// wispctl's and no longer in the YAML, but `prune` is off: kept (and noted).
    Keep,
    /// wispctl's, no longer in the YAML, and `prune: owned`: deleted.
    Delete,
}

/// Pruning: only secrets that carry wispctl's tag and that the YAML no longer names, and only
/// with `prune: owned`.
pub fn prune(owned: bool, in_yaml: bool, policy: Prune) -> PruneDecision {
    match (owned && !in_yaml, policy) {
        (false, _) => PruneDecision::Leave,
        (true, Prune::None) => PruneDecision::Keep,
        (true, Prune::Owned) => PruneDecision::Delete,
    }
}

/// Profiles the YAML names that the router does not have, in YAML order.
pub fn missing_profiles(
    secrets: &[DesiredSecret],
    profiles: &BTreeSet<String>,
) -> Vec<MissingProfile> {
    secrets
        .iter()
        .filter_map(|s| s.fields.get("profile").map(|p| (s, p)))
        .filter(|(_, p)| !profiles.contains(*p))
        .map(|(s, p)| MissingProfile {
            profile: p.clone(),
            secret: s.name.clone(),
        })
        .collect()
}

/// Names the YAML gives that the router lists more than once (RouterOS keeps names unique; a
/// router that does not leaves wispctl unable to tell which one the YAML means), sorted.
pub fn named_twice(desired: &[DesiredSecret], live: &[LiveSecret]) -> Vec<String> {
    let wanted: HashSet<&str> = desired.iter().map(|s| s.name.as_str()).collect();
    let mut seen: HashSet<&str> = HashSet::with_capacity(live.len());
    let mut twice: BTreeSet<&str> = BTreeSet::new();
    for s in live.iter().filter(|s| wanted.contains(s.name())) {
        if !seen.insert(s.name()) {
            twice.insert(s.name());
        }
    }
    twice.into_iter().map(str::to_string).collect()
}

/// The plan of one router: creates, updates (only the changed fields, with the kicks they
/// call for), owed kicks, and deletes when pruning; notes for the operator; the keyed hash of
/// every desired password; the counts for the empty-list guard.
///
/// Refused, with nothing planned, when a profile the YAML names is missing on the router or a
/// name the YAML gives is listed twice.
pub fn diff_router(
    router: &str,
    desired: &PppoeDesired,
    live: &RouterLive,
    key: &HashKey,
) -> Result<Planned<Op>, PppoeError> {
    let missing = missing_profiles(&desired.secrets, &live.profiles);
    if !missing.is_empty() {
        return Err(PppoeError::MissingProfiles {
            router: router.to_string(),
            missing,
        });
    }
    let names = named_twice(&desired.secrets, &live.secrets);
    if !names.is_empty() {
        return Err(PppoeError::DuplicateSecrets {
            router: router.to_string(),
            names,
        });
    }
    let by_name: HashMap<&str, &LiveSecret> = live.secrets.iter().map(|s| (s.name(), s)).collect();
    let mut planned = Planned::default();
    let mut unverifiable = 0usize;
    let mut left_untagged: Vec<String> = Vec::new();
    for d in &desired.secrets {
        if let Some(p) = &d.password {
            let at = format!("{}.password", secret_address(router, &d.name));
            if p.is_unresolved() || live.unknown_passwords.contains(&d.name) {
                planned.not_compared.push(at.clone());
            }
            planned.secret_hashes.insert(at, SecretHash::of(key, p));
        }
        match by_name.get(d.name.as_str()) {
            None => planned.items.push(create(router, d)),
            Some(l) => {
                let Some(u) = update(router, d, l, live, desired.kick, key) else {
                    continue;
                };
                unverifiable += usize::from(u.unverifiable);
                if u.left_untagged {
                    left_untagged.push(d.name.clone());
                }
                planned.items.push(u.item);
            }
        }
    }
    let wanted: HashSet<&str> = desired.secrets.iter().map(|s| s.name.as_str()).collect();
    planned
        .items
        .extend(kicks_owed_for_removed(router, desired.kick, live, |name| {
            wanted.contains(name) || by_name.contains_key(name)
        }));
    let mut kept = 0;
    for l in &live.secrets {
        match prune(l.owned(), wanted.contains(l.name()), desired.prune) {
            PruneDecision::Leave => {}
            PruneDecision::Keep => kept += 1,
            PruneDecision::Delete => planned.items.push(delete(router, l, desired.kick, live)),
        }
    }
    if !live.passwords_visible && desired.secrets.iter().any(|s| s.password.is_some()) {
        planned.notes.push(format!(
            "router {router} hides passwords from this API user: they are compared with the keyed hash of what wispctl last applied{}",
            if unverifiable > 0 {
                format!(" ({unverifiable} never applied by wispctl)")
            } else {
                String::new()
            }
        ));
    }
    if !left_untagged.is_empty() {
        planned.notes.push(format!(
            "the comments of {} are not UTF-8 (Latin-1 from Winbox?) and are left as they are, so these secrets are not tagged [wispctl] (never pruned)",
            left_untagged.join(", ")
        ));
    }
    if kept > 0 {
        planned.notes.push(format!(
            "{kept} secret(s) tagged by wispctl are no longer in the YAML and are kept (prune: none)"
        ));
    }
    planned
        .desired_counts
        .insert(COLLECTION, desired.secrets.len());
    planned.allow_empty_prune = desired.allow_empty_prune;
    Ok(planned)
}

/// Whom a change of secret `name` touches (`name (comment)`), and how many of its sessions it
/// disconnects.
fn impact(name: &str, comment: &str, disconnects: usize) -> Impact {
    let customer = if comment.is_empty() {
        name.to_string()
    } else {
        format!("{name} ({comment})")
    };
    Impact {
        customer: Some(customer),
        disconnects,
        ..Impact::default()
    }
}

/// A secret the router does not have: every managed field, the password (sensitive) and the
/// comment with the tag.
fn create(router: &str, d: &DesiredSecret) -> Item<Op> {
    let mut fields: Vec<FieldDiff> = d
        .fields
        .iter()
        .map(|(k, v)| FieldDiff::plain(k, None, Some(v.clone())))
        .collect();
    if d.password.is_some() {
        fields.insert(0, FieldDiff::sensitive("password"));
    }
    fields.push(FieldDiff::plain(
        "comment",
        None,
        Some(tagged(d.comment.as_deref().unwrap_or(""))),
    ));
    Item {
        change: Change {
            impact: impact(&d.name, d.comment.as_deref().unwrap_or(""), 0),
            address: secret_address(router, &d.name),
            action: Action::Create,
            reason: None,
            fields,
            content: None,
            side_effects: vec![],
        },
        collection: COLLECTION,
        op: Op::Add(d.clone()),
    }
}

/// An update of a secret the router has, and what the router's notes need to know of it.
struct Updated {
    item: Item<Op>,
    /// Its password is hidden and was never set by wispctl.
    unverifiable: bool,
    /// Not tagged, its comment not UTF-8: left untagged.
    left_untagged: bool,
}

/// The update of a secret the router has; `None` when nothing differs and no kick is owed.
fn update(
    router: &str,
    d: &DesiredSecret,
    l: &LiveSecret,
    live: &RouterLive,
    policy: Kick,
    key: &HashKey,
) -> Option<Updated> {
    let sessions = live.active.get(&d.name).map_or(&[][..], Vec::as_slice);
    let mut fields = Vec::new();
    let mut changed: Vec<String> = Vec::new();
    let mut effective = false;
    let mut reason = None;
    let mut unverifiable = false;
    let unresolved = d.password.as_ref().is_some_and(Secret::is_unresolved)
        || live.unknown_passwords.contains(&d.name);
    if let Some(p) = d.password.as_ref().filter(|_| !unresolved) {
        let shows = l.fields.get("password");
        let check = compare_password(p, shows, live.applied.get(&d.name), key);
        if check != PasswordCheck::Same {
            fields.push(FieldDiff::sensitive("password"));
            changed.push("password".into());
            effective |= check == PasswordCheck::Changed;
        }
        unverifiable = check == PasswordCheck::Unknown;
    }
    for c in changed_fields(&d.fields, &l.fields) {
        effective |= takes_effect_on_new_session(c.field);
        fields.push(FieldDiff::plain(c.field, Some(c.live), Some(c.desired)));
        changed.push(c.field.to_string());
    }
    let (comment, comment_changed) = comment_to_write(d.comment.as_deref(), l.comment_text());
    if comment_changed {
        fields.push(FieldDiff::plain(
            "comment",
            Some(l.comment_text().to_string()),
            Some(comment.clone()),
        ));
        changed.push("comment".into());
    }
    let owed = kick_owed(policy, live.pending_kicks.contains(&d.name), sessions);
    if changed.is_empty() && !owed {
        return None;
    }
    if unresolved {
        fields.insert(0, FieldDiff::not_compared("password"));
    }
    if changed.is_empty() {
        reason = Some(KICK_OWED.to_string());
    }
    let adopt = adoption(l.owned(), comment_changed, l.not_utf8.contains("comment"));
    if adopt == Adoption::Tag {
        if !comment_changed {
            changed.push("comment".into());
        }
        reason.get_or_insert_with(|| ADOPTS.to_string());
    }
    let kick = sessions_to_kick(policy, effective, owed, sessions);
    if unverifiable {
        reason = Some(hidden_password_reason(!kick.is_empty()).to_string());
    }
    let side_effects = if kick.is_empty() {
        vec![]
    } else {
        vec![format!(
            "disconnects the active session of {} so the CPE redials with the new settings",
            d.name
        )]
    };
    Some(Updated {
        item: Item {
            change: Change {
                impact: impact(
                    &d.name,
                    d.comment.as_deref().unwrap_or(l.comment_text()),
                    kick.len(),
                ),
                address: secret_address(router, &d.name),
                action: Action::Update,
                reason,
                fields,
                content: None,
                side_effects,
            },
            collection: COLLECTION,
            op: Op::Set {
                id: l.id.clone(),
                desired: d.clone(),
                fields: changed,
                comment,
                kick,
            },
        },
        unverifiable,
        left_untagged: adopt == Adoption::LeftUntagged,
    })
}

/// Kicks owed for secrets an earlier apply removed but whose sessions it could not disconnect
/// (secrets that `exists` say are still around are handled by their update instead).
fn kicks_owed_for_removed(
    router: &str,
    policy: Kick,
    live: &RouterLive,
    exists: impl Fn(&str) -> bool,
) -> Vec<Item<Op>> {
    if policy != Kick::OnChange {
        return Vec::new();
    }
    live.pending_kicks
        .iter()
        .filter(|name| !exists(name))
        .filter_map(|name| Some((name, live.active.get(name)?)))
        .map(|(name, sessions)| Item {
            change: Change {
                impact: impact(name, "", sessions.len()),
                address: secret_address(router, name),
                action: Action::Update,
                reason: Some(KICK_OWED_REMOVED.into()),
                fields: vec![],
                content: None,
                side_effects: vec![format!("disconnects the active session of {name}")],
            },
            collection: COLLECTION,
            op: Op::Kick {
                name: name.clone(),
                kick: sessions.clone(),
            },
        })
        .collect()
}

/// The delete of a pruned secret, with its sessions when the policy kicks.
fn delete(router: &str, l: &LiveSecret, policy: Kick, live: &RouterLive) -> Item<Op> {
    let kick = if policy == Kick::OnChange {
        live.active.get(l.name()).cloned().unwrap_or_default()
    } else {
        vec![]
    };
    Item {
        change: Change {
            impact: impact(l.name(), l.comment_text(), kick.len()),
            address: secret_address(router, l.name()),
            action: Action::Delete,
            reason: Some(PRUNED.into()),
            fields: vec![],
            content: None,
            side_effects: if kick.is_empty() {
                vec![]
            } else {
                vec![format!("disconnects the active session of {}", l.name())]
            },
        },
        collection: COLLECTION,
        op: Op::Remove {
            id: l.id.clone(),
            name: l.name().to_string(),
            kick,
        },
    }
}

#[cfg(test)]
mod tests;
