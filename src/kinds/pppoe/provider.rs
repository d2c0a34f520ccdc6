//! The pppoe provider: observe, diff and apply over one router's `/ppp/secret`.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use routeros_api::client::{ApiError, Command, Connection};

use super::PppoeError;
use super::client::connect;
use super::spec::Router;
use crate::engine::{Context, NoTwin};
use crate::mac::normalise_mac;
use super::spec::{DesiredSecret, Kick, PppoeDesired};
use crate::desired::Prune;
use crate::engine::{Item, Observation, Planned, Provider};
use crate::plan::report::Outcome;
use crate::plan::{Action, Change, FieldDiff, address};
use crate::secret::{HashKey, SecretHash};

pub use crate::ownership::{TAG, tagged};

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

/// Where a router is reached: its own address (`None`), a stand-in's, or nowhere.
type Route = Result<Option<SocketAddr>, NoTwin>;

/// The pppoe provider.
pub struct PppoeProvider {
    routers: BTreeMap<String, (Router, PppoeDesired, Route)>,
    key: Arc<HashKey>,
    state_dir: PathBuf,
}

impl PppoeProvider {
    /// Builds the provider for every router with a pppoe file. A router is reached at its
    /// inventory address unless the context reaches it elsewhere (a lab twin).
    pub fn new(
        routers: &BTreeMap<String, Router>,
        desired: &BTreeMap<String, PppoeDesired>,
        ctx: &Context,
    ) -> Self {
        let routers = desired
            .iter()
            .map(|(name, d)| {
                let r = routers[name].clone();
                let addr = ctx.route::<SocketAddr>(<super::Kind as crate::kinds::KindDef>::SECTION, name);
                (name.clone(), (r, d.clone(), addr))
            })
            .collect();
        PppoeProvider {
            routers,
            key: ctx.key.clone(),
            state_dir: ctx.state_dir.join("pppoe"),
        }
    }
}

/// A secret as read, values normalised.
#[derive(Clone)]
pub struct LiveSecret {
    /// `.id`, sent back exactly as received.
    pub id: String,
    /// Fields by RouterOS name, `last-*` dropped.
    pub fields: BTreeMap<String, String>,
    /// Fields whose bytes were not UTF-8 (Latin-1 from Winbox), decoded as Latin-1.
    pub not_utf8: BTreeSet<String>,
}

impl std::fmt::Debug for LiveSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // `fields` may hold a readable password.
        f.debug_struct("LiveSecret")
            .field("id", &self.id)
            .field("name", &self.name())
            .finish_non_exhaustive()
    }
}

impl LiveSecret {
    pub(crate) fn name(&self) -> &str {
        self.fields.get("name").map_or("", String::as_str)
    }
    fn comment(&self) -> &str {
        self.fields.get("comment").map_or("", String::as_str)
    }
    fn owned(&self) -> bool {
        crate::ownership::is_tagged(self.comment())
    }
    /// The comment without wispctl's tag.
    pub(crate) fn comment_text(&self) -> &str {
        crate::ownership::untagged(self.comment())
    }
}

/// A router as read.
pub struct RouterLive {
    secrets: Vec<LiveSecret>,
    profiles: BTreeSet<String>,
    /// Active sessions: name -> ids.
    active: BTreeMap<String, Vec<String>>,
    /// Whether this API user sees passwords.
    passwords_visible: bool,
    /// Keyed hashes of the passwords wispctl last applied, by secret name.
    applied: BTreeMap<String, SecretHash>,
    /// Secrets whose kick an earlier apply could not make.
    pending_kicks: BTreeSet<String>,
}

/// What wispctl remembers of a router between runs.
#[derive(Debug, Default, Serialize, Deserialize)]
struct RouterState {
    /// Keyed hash of the last applied password, by secret name.
    passwords: BTreeMap<String, SecretHash>,
    /// Secrets changed by an apply that could not disconnect their session: the next run
    /// kicks them even though nothing differs any more.
    #[serde(default)]
    pending_kicks: BTreeSet<String>,
}

fn normalise(key: &str, value: &str) -> String {
    match key {
        "disabled" => match value {
            "yes" | "true" => "true".into(),
            "no" | "false" => "false".into(),
            other => other.into(),
        },
        "caller-id" => normalise_mac(value).unwrap_or_else(|| value.to_string()),
        _ => value.to_string(),
    }
}

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

fn secret_address(router: &str, name: &str) -> String {
    address("pppoe", router, "secret", name)
}

fn state_path(dir: &std::path::Path, router: &str) -> PathBuf {
    dir.join(format!("{router}.json"))
}

fn read_state(dir: &std::path::Path, router: &str) -> RouterState {
    std::fs::read(state_path(dir, router))
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or_default()
}

impl PppoeProvider {
    fn save_state(&self, router: &str, state: &RouterState) {
        let bytes = serde_json::to_vec_pretty(state).expect("state serialises");
        if let Err(e) = std::fs::create_dir_all(&self.state_dir).and_then(|()| {
            crate::files::write_atomic(&state_path(&self.state_dir, router), &bytes, 0o600)
        }) {
            tracing::error!(router, "cannot save the router's state: {e}");
        }
    }
}

impl Provider for PppoeProvider {
    type Observed = RouterLive;
    type Op = Op;
    type Error = PppoeError;

    fn kind(&self) -> &'static str {
        "pppoe"
    }

    fn targets(&self) -> Vec<String> {
        self.routers.keys().cloned().collect()
    }

    async fn observe(&self, router: &str) -> Result<Observation<RouterLive>, PppoeError> {
        let (r, desired, addr) = &self.routers[router];
        let addr = addr.clone()?;
        let mut conn = connect(router, r, addr).await?;
        let live = read_router(&mut conn)
            .await
            .map_err(|source| PppoeError::Api {
                router: router.to_string(),
                source,
            })?;
        tracing::debug!(
            router,
            secrets = live.0.len(),
            round_trips = conn.round_trips(),
            "observed router"
        );
        let (secrets, profiles, active, passwords_visible) = live;
        let RouterState {
            passwords: applied,
            pending_kicks,
        } = read_state(&self.state_dir, router);
        let mut fp = BTreeMap::new();
        let by_name: BTreeMap<&str, &LiveSecret> = secrets.iter().map(|s| (s.name(), s)).collect();
        let digest = |s: &LiveSecret| {
            let text: Vec<String> = s.fields.iter().map(|(k, v)| format!("{k}={v}")).collect();
            self.key.digest(
                "pppoe-secret",
                format!("{}\0{}", s.id, text.join("\0")).as_bytes(),
            )
        };
        for d in &desired.secrets {
            let v = by_name
                .get(d.name.as_str())
                .map_or_else(|| "absent".to_string(), |s| digest(s));
            fp.insert(secret_address(router, &d.name), v);
        }
        for s in secrets.iter().filter(|s| s.owned()) {
            fp.entry(secret_address(router, s.name()))
                .or_insert_with(|| digest(s));
        }
        Ok(Observation {
            state: RouterLive {
                secrets,
                profiles,
                active,
                passwords_visible,
                applied,
                pending_kicks,
            },
            fingerprints: fp,
        })
    }

    fn diff(
        &self,
        router: &str,
        obs: &Observation<RouterLive>,
    ) -> Result<Planned<Op>, PppoeError> {
        let (_, desired, _) = &self.routers[router];
        diff_router(router, desired, &obs.state, &self.key)
    }

    async fn apply(
        &self,
        router: &str,
        items: Vec<Item<Op>>,
        _obs: Observation<RouterLive>,
    ) -> Vec<Outcome> {
        let (r, _, addr) = &self.routers[router];
        let connected = match addr {
            Ok(a) => connect(router, r, *a).await,
            Err(e) => Err(PppoeError::NoTwin(e.clone())),
        };
        let mut conn = match connected {
            Ok(c) => c,
            Err(e) => {
                return items
                    .iter()
                    .map(|i| {
                        Outcome::failed(
                            &i.change.address,
                            i.change.action,
                            format!("cannot connect: {e}"),
                        )
                    })
                    .collect();
            }
        };
        // The kicks this apply owes are written down before anything is sent: if the
        // connection dies after a write but before its kick, the next run still kicks.
        let owed: Vec<String> = items
            .iter()
            .filter(|i| !i.op.kick().is_empty())
            .map(|i| i.op.name().to_string())
            .collect();
        if !owed.is_empty() {
            let mut state = read_state(&self.state_dir, router);
            state.pending_kicks.extend(owed);
            self.save_state(router, &state);
        }
        let (outcomes, done) = apply_router(&mut conn, items, &self.key).await;
        let mut state = read_state(&self.state_dir, router);
        for (name, hash) in done.hashes {
            match hash {
                Some(h) => state.passwords.insert(name, h),
                None => state.passwords.remove(&name),
            };
        }
        for name in done.kicked.iter().chain(&done.refused) {
            state.pending_kicks.remove(name);
        }
        state.pending_kicks.extend(done.kicks_lost);
        self.save_state(router, &state);
        outcomes
    }
}

/// Reads a router's secrets with one print, for `import`: the secrets, and whether this API
/// user sees passwords.
pub async fn read_secrets(
    conn: &mut Connection,
) -> Result<(Vec<LiveSecret>, bool), ApiError> {
    let (secrets, _, _, visible) = read_router(conn).await?;
    Ok((secrets, visible))
}

type LiveRead = (
    Vec<LiveSecret>,
    BTreeSet<String>,
    BTreeMap<String, Vec<String>>,
    bool,
);

/// One round trip: secrets, profiles and active sessions.
async fn read_router(conn: &mut Connection) -> Result<LiveRead, ApiError> {
    let mut replies = conn
        .run(vec![
            Command::new(["/ppp/secret/print"]),
            Command::new(["/ppp/profile/print", "=.proplist=name"]),
            Command::new(["/ppp/active/print", "=.proplist=.id,name"]),
        ])
        .await?
        .into_iter();
    let secrets = replies
        .next()
        .expect("three replies")
        .ok("/ppp/secret/print")?;
    let profiles = replies
        .next()
        .expect("three replies")
        .ok("/ppp/profile/print")?;
    let active = replies
        .next()
        .expect("three replies")
        .ok("/ppp/active/print")?;
    let mut visible = false;
    let not_utf8 = secrets.not_utf8;
    let secrets = secrets
        .rows
        .into_iter()
        .zip(
            not_utf8
                .into_iter()
                .chain(std::iter::repeat_with(BTreeSet::new)),
        )
        .map(|(row, not_utf8)| {
            visible |= row.contains_key("password");
            let id = row.get(".id").cloned().unwrap_or_default();
            let fields = row
                .into_iter()
                .filter(|(k, _)| !k.starts_with("last-") && !k.starts_with('.'))
                .map(|(k, v)| {
                    let v = normalise(&k, &v);
                    (k, v)
                })
                .collect();
            LiveSecret {
                id,
                fields,
                not_utf8,
            }
        })
        .collect();
    let profiles = profiles
        .rows
        .into_iter()
        .filter_map(|r| r.get("name").cloned())
        .collect();
    let mut sessions: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for row in active.rows {
        if let (Some(n), Some(id)) = (row.get("name"), row.get(".id")) {
            sessions.entry(n.clone()).or_default().push(id.clone());
        }
    }
    Ok((secrets, profiles, sessions, visible))
}

/// The pure diff of one router.
fn diff_router(
    router: &str,
    desired: &PppoeDesired,
    live: &RouterLive,
    key: &HashKey,
) -> Result<Planned<Op>, PppoeError> {
    let missing: Vec<String> = desired
        .secrets
        .iter()
        .filter_map(|s| s.fields.get("profile").map(|p| (s, p)))
        .filter(|(_, p)| !live.profiles.contains(*p))
        .map(|(s, p)| format!("{:?} (secret {:?})", p, s.name))
        .collect();
    if !missing.is_empty() {
        return Err(PppoeError::Refused(format!(
            "profiles that do not exist on router {router}: {}; create them on the router or fix the YAML",
            missing.join(", ")
        )));
    }
    let by_name: BTreeMap<&str, &LiveSecret> = live.secrets.iter().map(|s| (s.name(), s)).collect();
    let kick_on = desired.kick == Kick::OnChange;
    let mut items = Vec::new();
    let mut notes = Vec::new();
    let mut secret_hashes = BTreeMap::new();
    let mut unverifiable = 0usize;
    let mut untagged_latin1: Vec<String> = Vec::new();
    for d in &desired.secrets {
        let addr = secret_address(router, &d.name);
        if let Some(p) = &d.password {
            secret_hashes.insert(format!("{addr}.password"), SecretHash::of(key, p));
        }
        let sessions = live.active.get(&d.name).cloned().unwrap_or_default();
        match by_name.get(d.name.as_str()) {
            None => {
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
                items.push(Item {
                    change: Change {
                        address: addr,
                        action: Action::Create,
                        reason: None,
                        fields,
                        content: None,
                        side_effects: vec![],
                    },
                    collection: "secret",
                    op: Op::Add(d.clone()),
                });
            }
            Some(l) => {
                let mut fields = Vec::new();
                let mut changed = Vec::new();
                let mut effective = false;
                let mut reason = None;
                if let Some(p) = &d.password {
                    let (differs, known) = match l.fields.get("password") {
                        Some(v) => (v != p.expose(), true),
                        None => match live.applied.get(&d.name) {
                            Some(h) => (*h != SecretHash::of(key, p), true),
                            None => (true, false),
                        },
                    };
                    if differs {
                        fields.push(FieldDiff::sensitive("password"));
                        changed.push("password".to_string());
                        effective |= known;
                        if !known {
                            unverifiable += 1;
                            reason = Some(
                                "the router hides passwords from this API user and wispctl has not set this one before: it is set, and the session is not kicked".to_string(),
                            );
                        }
                    }
                }
                for (k, v) in &d.fields {
                    let now = l.fields.get(*k).map_or("", String::as_str);
                    if now != v {
                        fields.push(FieldDiff::plain(k, Some(now.to_string()), Some(v.clone())));
                        changed.push((*k).to_string());
                        effective |= EFFECTIVE.contains(k);
                    }
                }
                // The tag alone is no change: a secret the YAML names is already wispctl's
                // (that is what lets `import` be followed by an empty plan). The tag is written
                // with the first change wispctl makes to it.
                // A comment left out of the YAML is not managed: its text stays.
                let comment = d
                    .comment
                    .clone()
                    .unwrap_or_else(|| l.comment_text().to_string());
                if d.comment.as_deref().is_some_and(|c| c != l.comment_text()) {
                    fields.push(FieldDiff::plain(
                        "comment",
                        Some(l.comment_text().to_string()),
                        Some(comment.clone()),
                    ));
                    changed.push("comment".into());
                }
                let pending =
                    kick_on && live.pending_kicks.contains(&d.name) && !sessions.is_empty();
                if changed.is_empty() && !pending {
                    continue;
                }
                if changed.is_empty() {
                    reason = Some(
                        "an earlier apply changed this secret but could not disconnect its session"
                            .into(),
                    );
                }
                if !l.owned() {
                    if changed.iter().all(|c| c != "comment") {
                        if l.not_utf8.contains("comment") {
                            // Written back as UTF-8 it would change under the operator's eyes:
                            // left alone, so this secret is not tagged (and never pruned).
                            untagged_latin1.push(d.name.clone());
                        } else {
                            changed.push("comment".into());
                        }
                    }
                    if changed.iter().any(|c| c == "comment") {
                        reason.get_or_insert_with(|| {
                            "adopts a secret wispctl did not create: its comment gets the [wispctl] tag"
                                .to_string()
                        });
                    }
                }
                let kick = if kick_on && (effective || pending) {
                    sessions
                } else {
                    Vec::new()
                };
                let side_effects = if kick.is_empty() {
                    vec![]
                } else {
                    vec![format!(
                        "disconnects the active session of {} so the CPE redials with the new settings",
                        d.name
                    )]
                };
                items.push(Item {
                    change: Change {
                        address: addr,
                        action: Action::Update,
                        reason,
                        fields,
                        content: None,
                        side_effects,
                    },
                    collection: "secret",
                    op: Op::Set {
                        id: l.id.clone(),
                        desired: d.clone(),
                        fields: changed,
                        comment,
                        kick,
                    },
                });
            }
        }
    }
    let wanted: BTreeSet<&str> = desired.secrets.iter().map(|s| s.name.as_str()).collect();
    // Sessions of secrets an earlier apply removed, which it could not disconnect.
    if kick_on {
        for name in &live.pending_kicks {
            let Some(sessions) = live.active.get(name) else {
                continue;
            };
            if wanted.contains(name.as_str()) || by_name.contains_key(name.as_str()) {
                continue;
            }
            items.push(Item {
                change: Change {
                    address: secret_address(router, name),
                    action: Action::Update,
                    reason: Some(
                        "an earlier apply removed this secret but could not disconnect its session"
                            .into(),
                    ),
                    fields: vec![],
                    content: None,
                    side_effects: vec![format!("disconnects the active session of {name}")],
                },
                collection: "secret",
                op: Op::Kick {
                    name: name.clone(),
                    kick: sessions.clone(),
                },
            });
        }
    }
    let mut kept = 0;
    for l in live
        .secrets
        .iter()
        .filter(|l| l.owned() && !wanted.contains(l.name()))
    {
        if desired.prune != Prune::Owned {
            kept += 1;
            continue;
        }
        let kick = if kick_on {
            live.active.get(l.name()).cloned().unwrap_or_default()
        } else {
            vec![]
        };
        items.push(Item {
            change: Change {
                address: secret_address(router, l.name()),
                action: Action::Delete,
                reason: Some("tagged by wispctl and no longer in the YAML (prune: owned)".into()),
                fields: vec![],
                content: None,
                side_effects: if kick.is_empty() {
                    vec![]
                } else {
                    vec![format!("disconnects the active session of {}", l.name())]
                },
            },
            collection: "secret",
            op: Op::Remove {
                id: l.id.clone(),
                name: l.name().to_string(),
                kick,
            },
        });
    }
    if !live.passwords_visible && desired.secrets.iter().any(|s| s.password.is_some()) {
        notes.push(format!(
            "router {router} hides passwords from this API user: they are compared with the keyed hash of what wispctl last applied{}",
            if unverifiable > 0 { format!(" ({unverifiable} never applied by wispctl)") } else { String::new() }
        ));
    }
    if !untagged_latin1.is_empty() {
        notes.push(format!(
            "the comments of {} are not UTF-8 (Latin-1 from Winbox?) and are left as they are, so these secrets are not tagged [wispctl] (never pruned)",
            untagged_latin1.join(", ")
        ));
    }
    if kept > 0 {
        notes.push(format!("{kept} secret(s) tagged by wispctl are no longer in the YAML and are kept (prune: none)"));
    }
    let mut desired_counts = BTreeMap::new();
    desired_counts.insert("secret", desired.secrets.len());
    Ok(Planned {
        items,
        notes,
        secret_hashes,
        desired_counts,
        allow_empty_prune: desired.allow_empty_prune,
        object_errors: BTreeMap::new(),
    })
}

/// The attribute words of a write: every managed field (`which: None`, an add) or the changed
/// ones; `comment` is the text written with the tag.
fn field_words(d: &DesiredSecret, which: Option<&[String]>, comment: &str) -> Vec<String> {
    let wanted = |k: &str| which.is_none_or(|w| w.iter().any(|x| x == k));
    let mut words = Vec::new();
    if let Some(p) = &d.password
        && wanted("password")
    {
        words.push(format!("=password={}", p.expose()));
    }
    for (k, v) in &d.fields {
        if wanted(k) {
            words.push(format!("={k}={v}"));
        }
    }
    if wanted("comment") {
        words.push(format!("=comment={}", tagged(comment)));
    }
    words
}

/// What an apply leaves for the router's state file.
#[derive(Default)]
struct Done {
    /// Password hash updates: `Some` set, `None` forget.
    hashes: Vec<(String, Option<SecretHash>)>,
    /// Secrets whose sessions were disconnected.
    kicked: Vec<String>,
    /// Secrets changed whose sessions could not be disconnected: kicked by the next run.
    kicks_lost: Vec<String>,
    /// Secrets whose write the router refused: not changed, so no kick is owed.
    refused: Vec<String>,
}

impl Op {
    /// The secret's name.
    fn name(&self) -> &str {
        match self {
            Op::Add(d) | Op::Set { desired: d, .. } => &d.name,
            Op::Remove { name, .. } | Op::Kick { name, .. } => name,
        }
    }
    /// The sessions to disconnect after the write.
    fn kick(&self) -> &[String] {
        match self {
            Op::Add(_) => &[],
            Op::Set { kick, .. } | Op::Remove { kick, .. } | Op::Kick { kick, .. } => kick,
        }
    }
}

async fn apply_router(
    conn: &mut Connection,
    items: Vec<Item<Op>>,
    key: &HashKey,
) -> (Vec<Outcome>, Done) {
    let mut outcomes: Vec<Option<Outcome>> = vec![None; items.len()];
    let mut done = Done::default();
    // Creates and updates: one command each, in one round trip.
    let mut writes = Vec::new();
    let mut write_idx = Vec::new();
    let mut removes = Vec::new();
    for (i, item) in items.iter().enumerate() {
        match &item.op {
            Op::Add(d) => {
                let mut words = vec!["/ppp/secret/add".to_string(), format!("=name={}", d.name)];
                words.extend(field_words(d, None, d.comment.as_deref().unwrap_or("")));
                writes.push(Command { words });
                write_idx.push(i);
            }
            Op::Kick { .. } => {
                // Only a pending kick: nothing to write.
                outcomes[i] = Some(Outcome::applied(&item.change.address, item.change.action));
            }
            Op::Set { fields, .. } if fields.is_empty() => {
                outcomes[i] = Some(Outcome::applied(&item.change.address, item.change.action));
            }
            Op::Set {
                id,
                desired,
                fields,
                comment,
                ..
            } => {
                let mut words = vec!["/ppp/secret/set".to_string(), format!("=.id={id}")];
                words.extend(field_words(desired, Some(fields), comment));
                writes.push(Command { words });
                write_idx.push(i);
            }
            Op::Remove { .. } => removes.push(i),
        }
    }
    let fail_all = |outcomes: &mut Vec<Option<Outcome>>, idx: &[usize], why: &str| {
        for &i in idx {
            outcomes[i] = Some(Outcome::failed(
                &items[i].change.address,
                items[i].change.action,
                why,
            ));
        }
    };
    match conn.run(writes).await {
        Ok(replies) => {
            for (reply, &i) in replies.into_iter().zip(&write_idx) {
                let c = &items[i].change;
                outcomes[i] = Some(match reply.trap {
                    Some(t) => {
                        done.refused.push(items[i].op.name().to_string());
                        Outcome::failed(
                            &c.address,
                            c.action,
                            format!("router refused: {}", t.message),
                        )
                    }
                    None => Outcome::applied(&c.address, c.action),
                });
            }
        }
        Err(e) => fail_all(&mut outcomes, &write_idx, &format!("connection lost: {e}")),
    }
    if !removes.is_empty() {
        let ids: Vec<&str> = removes
            .iter()
            .filter_map(|&i| match &items[i].op {
                Op::Remove { id, .. } => Some(id.as_str()),
                _ => None,
            })
            .collect();
        let cmd = Command::new([
            "/ppp/secret/remove".to_string(),
            format!("=.id={}", ids.join(",")),
        ]);
        match conn.call(cmd).await {
            Ok(r) => match r.trap {
                Some(t) => fail_all(
                    &mut outcomes,
                    &removes,
                    &format!("router refused the batched remove: {}", t.message),
                ),
                None => {
                    for &i in &removes {
                        outcomes[i] =
                            Some(Outcome::applied(&items[i].change.address, Action::Delete));
                    }
                }
            },
            Err(e) => fail_all(&mut outcomes, &removes, &format!("connection lost: {e}")),
        }
    }
    // Kicks, for what was applied, in one command.
    let mut kick_ids = Vec::new();
    let mut kicked = Vec::new();
    for (i, item) in items.iter().enumerate() {
        let applied = outcomes[i].as_ref().is_some_and(|o| o.reason.is_none());
        let ids = item.op.kick();
        if applied && !ids.is_empty() {
            kick_ids.extend(ids.iter().cloned());
            kicked.push(i);
        }
    }
    let kicked_names = |idx: &[usize]| -> Vec<String> {
        idx.iter()
            .map(|&i| items[i].op.name().to_string())
            .collect()
    };
    if !kick_ids.is_empty() {
        match kick(conn, &kick_ids).await {
            Ok(()) => done.kicked = kicked_names(&kicked),
            Err(why) => {
                fail_all(
                    &mut outcomes,
                    &kicked,
                    &format!(
                        "applied, but the session could not be disconnected (the next run retries): {why}"
                    ),
                );
                done.kicks_lost = kicked_names(&kicked);
            }
        }
    }
    // Verify what was written with one print.
    let written: Vec<usize> = write_idx
        .iter()
        .copied()
        .filter(|&i| outcomes[i].as_ref().is_some_and(|o| o.reason.is_none()))
        .collect();
    if !written.is_empty() {
        match read_router(conn).await {
            Ok((live, ..)) => {
                let by_name: BTreeMap<&str, &LiveSecret> =
                    live.iter().map(|s| (s.name(), s)).collect();
                for &i in &written {
                    let (d, comment) = match &items[i].op {
                        Op::Add(d) => (d, Some(d.comment.as_deref().unwrap_or(""))),
                        Op::Set {
                            desired,
                            fields,
                            comment,
                            ..
                        } => (
                            desired,
                            fields
                                .iter()
                                .any(|f| f == "comment")
                                .then_some(comment.as_str()),
                        ),
                        Op::Remove { .. } | Op::Kick { .. } => continue,
                    };
                    if let Some(why) = verify(d, by_name.get(d.name.as_str()).copied(), comment) {
                        let c = &items[i].change;
                        outcomes[i] = Some(Outcome::failed(
                            &c.address,
                            c.action,
                            format!("verification failed: {why}"),
                        ));
                    } else if let Some(p) = &d.password {
                        done.hashes
                            .push((d.name.clone(), Some(SecretHash::of(key, p))));
                    }
                }
            }
            Err(e) => fail_all(
                &mut outcomes,
                &written,
                &format!("written, but could not be verified: {e}"),
            ),
        }
    }
    for &i in &removes {
        if let Op::Remove { name, .. } = &items[i].op
            && outcomes[i].as_ref().is_some_and(|o| o.reason.is_none())
        {
            done.hashes.push((name.clone(), None));
        }
    }
    let outcomes = outcomes
        .into_iter()
        .map(|o| o.expect("every item has an outcome"))
        .collect();
    (outcomes, done)
}

/// Disconnects sessions with one batched remove. RouterOS changes nothing when one id of the
/// list is unknown (a session that ended on its own since the plan): then each id is removed on
/// its own, in one round trip, and the ones already gone are not an error.
async fn kick(conn: &mut Connection, ids: &[String]) -> Result<(), String> {
    let batched = Command::new([
        "/ppp/active/remove".to_string(),
        format!("=.id={}", ids.join(",")),
    ]);
    let trap = match conn.call(batched).await {
        Ok(r) => r.trap.map(|t| t.message),
        Err(e) => return Err(e.to_string()),
    };
    let Some(why) = trap else {
        return Ok(());
    };
    if !why.contains("no such item") {
        return Err(why);
    }
    let one_by_one = ids
        .iter()
        .map(|id| Command::new(["/ppp/active/remove".to_string(), format!("=.id={id}")]))
        .collect();
    let replies = conn.run(one_by_one).await.map_err(|e| e.to_string())?;
    match replies
        .into_iter()
        .filter_map(|r| r.trap)
        .find(|t| !t.message.contains("no such item"))
    {
        Some(t) => Err(t.message),
        None => Ok(()),
    }
}

/// Checks a written secret against what was meant; `comment` is the text written with the tag,
/// when the comment was written.
fn verify(d: &DesiredSecret, live: Option<&LiveSecret>, comment: Option<&str>) -> Option<String> {
    let Some(l) = live else {
        return Some(format!("secret {:?} is not on the router", d.name));
    };
    for (k, v) in &d.fields {
        let now = l.fields.get(*k).map_or("", String::as_str);
        if now != v {
            return Some(format!("{k} reads back {now:?}, not {v:?}"));
        }
    }
    if let (Some(p), Some(now)) = (&d.password, l.fields.get("password"))
        && now != p.expose()
    {
        return Some("the password does not read back as written".into());
    }
    match (comment, &d.comment) {
        (Some(c), _) if l.comment_text() != c || !l.owned() => {
            Some("the comment does not read back as written, with its tag".into())
        }
        (None, Some(c)) if l.comment_text() != c => {
            Some("the comment does not read back as it should".into())
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::secret::Secret;

    fn key() -> HashKey {
        HashKey::from_bytes([9; 32])
    }

    fn desired(secrets: Vec<DesiredSecret>, prune: Prune) -> PppoeDesired {
        PppoeDesired {
            source: "pppoe/r.yaml".into(),
            prune,
            kick: Kick::OnChange,
            allow_empty_prune: false,
            secrets,
        }
    }

    fn want(
        name: &str,
        password: Option<&str>,
        fields: &[(&'static str, &str)],
        comment: &str,
    ) -> DesiredSecret {
        DesiredSecret {
            name: name.into(),
            password: password.map(Secret::new),
            fields: fields.iter().map(|(k, v)| (*k, v.to_string())).collect(),
            comment: Some(comment.into()),
        }
    }

    fn live_secret(id: &str, fields: &[(&str, &str)]) -> LiveSecret {
        LiveSecret {
            id: id.into(),
            fields: fields
                .iter()
                .map(|(k, v)| (k.to_string(), normalise(k, v)))
                .collect(),
            not_utf8: BTreeSet::new(),
        }
    }

    fn live(secrets: Vec<LiveSecret>, active: &[(&str, &str)], visible: bool) -> RouterLive {
        let mut a: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for (n, id) in active {
            a.entry(n.to_string()).or_default().push(id.to_string());
        }
        RouterLive {
            secrets,
            profiles: ["default", "10M", "20M", "Morosos"]
                .iter()
                .map(|s| s.to_string())
                .collect(),
            active: a,
            passwords_visible: visible,
            applied: BTreeMap::new(),
            pending_kicks: BTreeSet::new(),
        }
    }

    #[test]
    fn a_comment_edit_never_kicks_and_sets_only_the_comment() {
        let d = desired(
            vec![want("juan", Some("pw"), &[("profile", "10M")], "new note")],
            Prune::None,
        );
        let l = live(
            vec![live_secret(
                "*1",
                &[
                    ("name", "juan"),
                    ("password", "pw"),
                    ("profile", "10M"),
                    ("comment", "old [wispctl]"),
                ],
            )],
            &[("juan", "*8001")],
            true,
        );
        let p = diff_router("r", &d, &l, &key()).unwrap();
        assert_eq!(p.items.len(), 1);
        match &p.items[0].op {
            Op::Set { fields, kick, .. } => {
                assert_eq!(fields, &vec!["comment".to_string()]);
                assert!(kick.is_empty(), "a comment edit kicked the session");
            }
            _ => panic!("expected a set"),
        }
        assert!(p.items[0].change.side_effects.is_empty());
    }

    #[test]
    fn a_suspension_kicks_the_active_session() {
        let d = desired(
            vec![want("maria", None, &[("profile", "Morosos")], "")],
            Prune::None,
        );
        let l = live(
            vec![live_secret(
                "*2",
                &[
                    ("name", "maria"),
                    ("profile", "10M"),
                    ("comment", "[wispctl]"),
                ],
            )],
            &[("maria", "*8002")],
            true,
        );
        let p = diff_router("r", &d, &l, &key()).unwrap();
        match &p.items[0].op {
            Op::Set { fields, kick, .. } => {
                assert_eq!(fields, &vec!["profile".to_string()]);
                assert_eq!(kick, &vec!["*8002".to_string()]);
            }
            _ => panic!("expected a set"),
        }
        assert!(p.items[0].change.side_effects[0].contains("disconnects"));
    }

    #[test]
    fn v6_yes_no_equals_v7_true_false() {
        let d = desired(
            vec![want("a", None, &[("disabled", "true")], "")],
            Prune::None,
        );
        let l = live(
            vec![live_secret(
                "*3",
                &[("name", "a"), ("disabled", "yes"), ("comment", "[wispctl]")],
            )],
            &[],
            true,
        );
        assert!(diff_router("r", &d, &l, &key()).unwrap().items.is_empty());
    }

    #[test]
    fn hidden_passwords_compare_by_the_hash_of_what_was_applied() {
        let d = desired(vec![want("a", Some("s3cret"), &[], "")], Prune::None);
        let mut l = live(
            vec![live_secret(
                "*4",
                &[("name", "a"), ("comment", "[wispctl]")],
            )],
            &[("a", "*8004")],
            false,
        );
        // Never applied by wispctl: set, but no kick (the value may well be the same).
        let p = diff_router("r", &d, &l, &key()).unwrap();
        match &p.items[0].op {
            Op::Set { fields, kick, .. } => {
                assert_eq!(fields, &vec!["password".to_string()]);
                assert!(kick.is_empty());
            }
            _ => panic!(),
        }
        assert!(p.notes[0].contains("hides passwords"));
        // Applied before with this value: no change.
        l.applied
            .insert("a".into(), SecretHash::of(&key(), &Secret::new("s3cret")));
        assert!(diff_router("r", &d, &l, &key()).unwrap().items.is_empty());
        // Applied before with another value: a known change, which kicks.
        l.applied
            .insert("a".into(), SecretHash::of(&key(), &Secret::new("old")));
        match &diff_router("r", &d, &l, &key()).unwrap().items[0].op {
            Op::Set { kick, .. } => assert_eq!(kick, &vec!["*8004".to_string()]),
            _ => panic!(),
        }
    }

    #[test]
    fn unowned_secrets_survive_prune_and_named_ones_are_adopted() {
        let d = desired(vec![want("named", None, &[], "")], Prune::Owned);
        let l = live(
            vec![
                live_secret("*5", &[("name", "named"), ("comment", "by hand")]),
                live_secret("*6", &[("name", "someone-elses"), ("comment", "by hand")]),
                live_secret("*7", &[("name", "retired"), ("comment", "x [wispctl]")]),
            ],
            &[],
            true,
        );
        let p = diff_router("r", &d, &l, &key()).unwrap();
        let actions: Vec<(Action, &str)> = p
            .items
            .iter()
            .map(|i| (i.change.action, i.change.address.as_str()))
            .collect();
        assert_eq!(
            actions,
            vec![
                (Action::Update, r#"pppoe.r.secret["named"]"#),
                (Action::Delete, r#"pppoe.r.secret["retired"]"#)
            ]
        );
        assert!(
            p.items[0]
                .change
                .reason
                .as_deref()
                .unwrap()
                .contains("adopts")
        );
    }

    #[test]
    fn a_named_untagged_secret_that_matches_is_no_change() {
        // As right after `wispctl import`: the tag alone is not a difference.
        let d = desired(
            vec![want("named", None, &[("profile", "10M")], "by hand")],
            Prune::None,
        );
        let l = live(
            vec![live_secret(
                "*5",
                &[
                    ("name", "named"),
                    ("profile", "10M"),
                    ("comment", "by hand"),
                ],
            )],
            &[],
            true,
        );
        assert!(diff_router("r", &d, &l, &key()).unwrap().items.is_empty());
        // Any other change also writes the tag.
        let d = desired(
            vec![want("named", None, &[("profile", "20M")], "by hand")],
            Prune::None,
        );
        match &diff_router("r", &d, &l, &key()).unwrap().items[0].op {
            Op::Set { fields, .. } => {
                assert_eq!(fields, &vec!["profile".to_string(), "comment".to_string()])
            }
            _ => panic!(),
        }
    }

    /// Regression: a Latin-1 comment (typed in Winbox) was decoded lossily and written back
    /// mangled with the adoption tag.
    #[test]
    fn a_latin1_comment_is_never_rewritten_for_the_tag() {
        let mut d = want("juan", None, &[("profile", "20M")], "");
        d.comment = None;
        let d = desired(vec![d], Prune::None);
        let mut s = live_secret(
            "*1",
            &[
                ("name", "juan"),
                ("profile", "10M"),
                ("comment", "Tomatlán"),
            ],
        );
        s.not_utf8.insert("comment".into());
        let p = diff_router("r", &d, &live(vec![s], &[], true), &key()).unwrap();
        match &p.items[0].op {
            Op::Set { fields, .. } => assert_eq!(fields, &vec!["profile".to_string()]),
            _ => panic!("expected a set"),
        }
        assert!(
            p.notes.iter().any(|n| n.contains("not UTF-8")),
            "{:?}",
            p.notes
        );
    }

    /// Regression: a comment left out of the YAML wiped the operator's comment.
    #[test]
    fn a_comment_left_out_is_kept_and_only_tagged() {
        let mut d = want("juan", None, &[("profile", "20M")], "");
        d.comment = None;
        let d = desired(vec![d], Prune::None);
        let s = live_secret(
            "*1",
            &[
                ("name", "juan"),
                ("profile", "10M"),
                ("comment", "Tomatlan, Juan Perez"),
            ],
        );
        let p = diff_router("r", &d, &live(vec![s], &[], true), &key()).unwrap();
        match &p.items[0].op {
            Op::Set {
                fields, comment, ..
            } => {
                assert_eq!(fields, &vec!["profile".to_string(), "comment".to_string()]);
                assert_eq!(comment, "Tomatlan, Juan Perez");
            }
            _ => panic!("expected a set"),
        }
        assert!(
            !p.items[0].change.fields.iter().any(|f| f.name == "comment"),
            "no comment change shown"
        );
    }

    #[test]
    fn a_missing_profile_stops_the_router() {
        let d = desired(
            vec![want("a", None, &[("profile", "50M")], "")],
            Prune::None,
        );
        let e = diff_router("r", &d, &live(vec![], &[], true), &key())
            .err()
            .unwrap();
        assert!(e.to_string().contains("\"50M\""), "{e}");
    }
}
