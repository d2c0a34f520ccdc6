//! Apply: the writes of one router's plan, verified, with exactly one outcome per change.
//!
//! Minimal and batched: every `add` and `set` (only the changed fields) in one round trip, one
//! batched `remove`, one print to verify what was written, then one batched
//! `/ppp/active/remove` for the sessions to kick (one per wave with `kick_rollout`), then, with
//! `redial_wait`, `/ppp/active/print` every few seconds until the kicked customers are back or
//! the wait is over (each kicked change's outcome says whether its customer redialed). The kicks
//! an apply owes are written to the state file before anything is sent, and what was done is
//! recorded again before the kicks and after each wave, so a connection lost (or a deadline
//! passed) between a write and its kick leaves it to the next run, and nobody is kicked twice.
//!
//! A connection whose reply stream broke (see `routeros_api::client`) sends nothing more: the
//! changes not answered yet fail, each saying whether it was **not attempted** (never sent:
//! the router is unchanged) or is **unknown** (sent, no answer: it may have taken effect, and
//! the next plan settles it). Nothing is assumed applied without the router's answer, and
//! nothing is verified on a dead connection: a write the router answered but that could not
//! be read back fails as not verified.
//!
//! Not here: deciding what to write (`diff`), the order of changes and the guards (the engine),
//! connecting (`client`).

use std::collections::{BTreeSet, HashMap};
use std::net::SocketAddr;
use std::time::Duration;

use routeros_api::client::{ApiError, Command, Connection};

use super::PppoeError;
use super::client::connect;
use super::diff::Op;
use super::observe::{LiveSecret, read_router, sessions_of};
use super::spec::{DesiredSecret, KickRollout, Router};
use super::state::{RouterState, StateDir};
use crate::engine::{Item, NoTwin};
use crate::ownership::tagged;
use crate::plan::report::Outcome;
use crate::secret::{HashKey, SecretHash};

/// How an apply disconnects sessions, and whether it waits for the customers to redial.
#[derive(Debug, Clone, Copy, Default)]
pub struct Kicks {
    /// Waves; `None`: every session at once.
    pub rollout: Option<KickRollout>,
    /// How long to wait for the kicked customers to redial; `None`: not waited for.
    pub redial_wait: Option<Duration>,
    /// The router's apply deadline: the redial wait ends before it, with a margin.
    pub deadline: Duration,
}

/// How often `/ppp/active` is read while waiting for redials.
const REDIAL_POLL: Duration = Duration::from_secs(2);

/// Applies `items` to `router` (reached at `route`) and records in `state` the password hashes
/// applied and the kicks still owed.
pub async fn apply(
    router: &str,
    settings: &Router,
    route: &Result<Option<SocketAddr>, NoTwin>,
    items: Vec<Item<Op>>,
    kicks: Kicks,
    key: &HashKey,
    state: &StateDir,
) -> Vec<Outcome> {
    let started = tokio::time::Instant::now();
    let connected = match route {
        Ok(addr) => connect(router, settings, *addr).await,
        Err(e) => Err(PppoeError::NoTwin(e.clone())),
    };
    let mut conn = match connected {
        Ok(c) => c,
        Err(e) => return fail_every(&items, &not_attempted(&format!("cannot connect: {e}"))),
    };
    let owed = kicks_owed(&items);
    let owed_before = state.read(router).pending_kicks;
    if !owed.is_empty() {
        let mut s = state.read(router);
        s.pending_kicks.extend(owed);
        state.save(router, &s);
    }
    // Progress is recorded before the kicks and after each wave of them: a deadline that cuts
    // the waves short leaves the state saying which customers were kicked (never twice).
    let mut checkpoint = |done: &Done| {
        let mut s = state.read(router);
        done.record(&mut s, &owed_before);
        state.save(router, &s);
    };
    let margin = (kicks.deadline / 10).min(Duration::from_secs(10));
    let limit = started + kicks.deadline.saturating_sub(margin);
    let (outcomes, done) = apply_router(&mut conn, items, kicks, limit, key, &mut checkpoint).await;
    checkpoint(&done);
    outcomes
}

/// Every change failed for the same reason.
fn fail_every(items: &[Item<Op>], why: &str) -> Vec<Outcome> {
    items
        .iter()
        .map(|i| Outcome::failed(&i.change.address, i.change.action, why))
        .collect()
}

/// The secrets whose sessions this apply is to disconnect: owed from the moment anything is
/// sent.
fn kicks_owed(items: &[Item<Op>]) -> Vec<String> {
    items
        .iter()
        .filter(|i| !i.op.kick().is_empty())
        .map(|i| i.op.name().to_string())
        .collect()
}

/// The reason of a change never sent: the router is unchanged.
pub fn not_attempted(why: &str) -> String {
    format!("not attempted (never sent): {why}")
}

/// The reason of a change sent without an answer: it may have taken effect.
pub fn unknown(why: &str) -> String {
    format!("unknown (sent, no answer): {why}; the next plan settles it")
}

/// The reason of a change whose command failed with `e`: not attempted or unknown.
pub fn unanswered(e: &ApiError) -> String {
    if e.sent() {
        unknown(&e.to_string())
    } else {
        not_attempted(&e.to_string())
    }
}

/// What an apply leaves for the router's state file.
#[derive(Debug, Default)]
pub struct Done {
    /// Password hash updates: `Some` set, `None` forget.
    pub hashes: Vec<(String, Option<SecretHash>)>,
    /// Secrets whose sessions were disconnected.
    pub kicked: Vec<String>,
    /// Secrets changed whose sessions could not be disconnected: kicked by the next run.
    pub kicks_lost: Vec<String>,
    /// Secrets whose write the router refused: not changed, so no kick is owed.
    pub refused: Vec<String>,
    /// Secrets whose change was never sent: not changed, so this apply owes no kick for them
    /// (a kick owed before it still is).
    pub not_sent: Vec<String>,
}

impl Done {
    /// Brings the router's state up to date with this apply; `owed_before` is the kicks owed
    /// before it began.
    /// Recording the same `Done` again, or a later one of the same apply, is harmless: an
    /// apply records its progress after each wave of kicks ([`apply`]).
    pub fn record(&self, state: &mut RouterState, owed_before: &BTreeSet<String>) {
        for (name, hash) in &self.hashes {
            match hash {
                Some(h) => state.passwords.insert(name.clone(), h.clone()),
                None => state.passwords.remove(name),
            };
        }
        for name in self.kicked.iter().chain(&self.refused) {
            state.pending_kicks.remove(name);
        }
        for name in self.not_sent.iter().filter(|n| !owed_before.contains(*n)) {
            state.pending_kicks.remove(name);
        }
        state.pending_kicks.extend(self.kicks_lost.iter().cloned());
    }
}

/// The attribute words of a write: every managed field (`which: None`, an add) or the changed
/// ones; `comment` is the text written with the tag.
pub fn field_words(d: &DesiredSecret, which: Option<&[String]>, comment: &str) -> Vec<String> {
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

/// The command that writes an item, if it writes anything.
fn write_command(op: &Op) -> Option<Command> {
    match op {
        Op::Add(d) => {
            let mut words = vec!["/ppp/secret/add".to_string(), format!("=name={}", d.name)];
            words.extend(field_words(d, None, d.comment.as_deref().unwrap_or("")));
            Some(Command { words })
        }
        Op::Set {
            id,
            desired,
            fields,
            comment,
            ..
        } if !fields.is_empty() => {
            let mut words = vec!["/ppp/secret/set".to_string(), format!("=.id={id}")];
            words.extend(field_words(desired, Some(fields), comment));
            Some(Command { words })
        }
        // Only a kick (owed by an earlier apply): nothing to write.
        Op::Set { .. } | Op::Kick { .. } | Op::Remove { .. } => None,
    }
}

/// One apply's progress: an outcome per item as it becomes known, and the state to record.
struct Progress<'a> {
    items: &'a [Item<Op>],
    outcomes: Vec<Option<Outcome>>,
    done: Done,
}

impl<'a> Progress<'a> {
    fn new(items: &'a [Item<Op>]) -> Self {
        Progress {
            items,
            outcomes: vec![None; items.len()],
            done: Done::default(),
        }
    }

    fn applied(&mut self, i: usize) {
        let c = &self.items[i].change;
        self.outcomes[i] = Some(Outcome::applied(&c.address, c.action));
    }

    fn fail(&mut self, i: usize, why: impl Into<String>) {
        let c = &self.items[i].change;
        self.outcomes[i] = Some(Outcome::failed(&c.address, c.action, why));
    }

    fn fail_all(&mut self, idx: &[usize], why: &str) {
        for &i in idx {
            self.fail(i, why);
        }
    }

    /// The items of `idx` failed by `e` (not attempted, or unknown); those never sent owe no
    /// kick.
    fn unanswered(&mut self, idx: &[usize], e: &ApiError) {
        self.fail_all(idx, &unanswered(e));
        if !e.sent() {
            let names = idx.iter().map(|&i| self.items[i].op.name().to_string());
            self.done.not_sent.extend(names);
        }
    }

    fn is_applied(&self, i: usize) -> bool {
        self.outcomes[i]
            .as_ref()
            .is_some_and(|o| o.reason.is_none())
    }

    fn name(&self, i: usize) -> String {
        self.items[i].op.name().to_string()
    }

    fn finish(self) -> (Vec<Outcome>, Done) {
        let outcomes = self
            .outcomes
            .into_iter()
            .map(|o| o.expect("every item has an outcome"))
            .collect();
        (outcomes, self.done)
    }
}

/// The items of one apply by how they are sent.
struct Batches {
    /// Adds and sets with fields: one command each, all in one round trip.
    writes: Vec<(usize, Command)>,
    /// Removes: one batched command.
    removes: Vec<usize>,
    /// Only a kick: nothing to write.
    kick_only: Vec<usize>,
}

impl Batches {
    fn of(items: &[Item<Op>]) -> Self {
        let mut b = Batches {
            writes: Vec::new(),
            removes: Vec::new(),
            kick_only: Vec::new(),
        };
        for (i, item) in items.iter().enumerate() {
            if let Op::Remove { .. } = item.op {
                b.removes.push(i);
            } else if let Some(command) = write_command(&item.op) {
                b.writes.push((i, command));
            } else {
                b.kick_only.push(i);
            }
        }
        b
    }
}

/// Runs the writes, removes and kicks of one router's items and verifies the writes; one
/// outcome per item.
async fn apply_router(
    conn: &mut Connection,
    items: Vec<Item<Op>>,
    kicks: Kicks,
    limit: tokio::time::Instant,
    key: &HashKey,
    checkpoint: &mut (dyn FnMut(&Done) + Send),
) -> (Vec<Outcome>, Done) {
    let mut p = Progress::new(&items);
    let Batches {
        writes,
        removes,
        kick_only,
    } = Batches::of(&items);
    for &i in &kick_only {
        p.applied(i);
    }
    let written: Vec<usize> = writes.iter().map(|(i, _)| *i).collect();
    send_writes(conn, &mut p, writes).await;
    send_removes(conn, &mut p, &removes).await;
    // Verified before the kicks: what was written is known (and recorded) before the waves,
    // which may take long; a write that does not read back is not worth a kick.
    verify_writes(conn, &mut p, &written, key).await;
    for &i in &removes {
        if let Op::Remove { name, .. } = &items[i].op
            && p.is_applied(i)
        {
            p.done.hashes.push((name.clone(), None));
        }
    }
    checkpoint(&p.done);
    send_kicks(conn, &mut p, kicks.rollout, checkpoint).await;
    if let Some(wait) = kicks.redial_wait {
        await_redials(conn, &mut p, wait, limit).await;
    }
    p.finish()
}

/// Waits up to `wait` for the customers whose sessions were kicked to be back on `/ppp/active`
/// (a session under their name that was not kicked), reading it every [`REDIAL_POLL`], and
/// records on each kicked change's outcome whether its customer came back. A change that
/// disables or removes the secret expects no redial and is not counted. A read that fails ends
/// the wait: the customers not seen back by then are not counted either (unknown). The wait
/// never goes past `limit` (the router's apply deadline, less a margin).
async fn await_redials(
    conn: &mut Connection,
    p: &mut Progress<'_>,
    wait: Duration,
    limit: tokio::time::Instant,
) {
    let items = p.items;
    let kicked: BTreeSet<&str> = p.done.kicked.iter().map(String::as_str).collect();
    let expected: Vec<usize> = (0..items.len())
        .filter(|&i| {
            let op = &items[i].op;
            p.is_applied(i) && kicked.contains(op.name()) && expects_redial(op)
        })
        .collect();
    if expected.is_empty() {
        return;
    }
    let gone: BTreeSet<&str> = expected
        .iter()
        .flat_map(|&i| items[i].op.kick().iter().map(String::as_str))
        .collect();
    let until = tokio::time::Instant::now()
        .checked_add(wait)
        .map_or(limit, |t| t.min(limit));
    let mut back = BTreeSet::new();
    let mut known = true;
    loop {
        let left = until.saturating_duration_since(tokio::time::Instant::now());
        tokio::time::sleep(left.min(REDIAL_POLL)).await;
        let command = Command::new(["/ppp/active/print", "=.proplist=.id,name"]);
        match conn.call(command).await.map(sessions_of) {
            Ok(sessions) => {
                for &i in &expected {
                    let redialed = sessions
                        .get(items[i].op.name())
                        .is_some_and(|ids| ids.iter().any(|id| !gone.contains(id.as_str())));
                    if redialed {
                        back.insert(i);
                    }
                }
            }
            Err(e) => {
                tracing::warn!("while waiting for redials: {e}");
                known = false;
                break;
            }
        }
        if back.len() == expected.len() || left <= REDIAL_POLL {
            break;
        }
    }
    for &i in &expected {
        let redialed = back.contains(&i);
        if (redialed || known)
            && let Some(o) = p.outcomes[i].as_mut()
        {
            o.redialed = Some(redialed);
        }
    }
}

/// Whether the customer is expected to redial after the change: not when it disables or
/// removes the secret.
fn expects_redial(op: &Op) -> bool {
    match op {
        Op::Set { desired, .. } => {
            desired.fields.get("disabled").map(String::as_str) != Some("true")
        }
        Op::Kick { .. } => true,
        Op::Add(_) | Op::Remove { .. } => false,
    }
}

/// Creates and updates: one command each, in one round trip. When the reply stream breaks
/// midway, the writes answered before keep their answer; the others are unanswered.
async fn send_writes(conn: &mut Connection, p: &mut Progress<'_>, writes: Vec<(usize, Command)>) {
    let (idx, commands): (Vec<usize>, Vec<Command>) = writes.into_iter().unzip();
    let (replies, error) = conn.run_answered(commands).await;
    let mut lost = Vec::new();
    for (reply, &i) in replies.into_iter().zip(&idx) {
        match reply.map(|r| r.trap) {
            None => lost.push(i),
            Some(Some(t)) => {
                let name = p.name(i);
                p.done.refused.push(name);
                p.fail(i, format!("router refused: {}", t.message));
            }
            Some(None) => p.applied(i),
        }
    }
    if let Some(e) = error {
        p.unanswered(&lost, &e);
    }
}

/// Pruned secrets: one batched remove. Its answer lost, whether they are gone is unknown.
async fn send_removes(conn: &mut Connection, p: &mut Progress<'_>, removes: &[usize]) {
    if removes.is_empty() {
        return;
    }
    let ids: Vec<&str> = removes
        .iter()
        .filter_map(|&i| match &p.items[i].op {
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
            Some(t) => p.fail_all(
                removes,
                &format!("router refused the batched remove: {}", t.message),
            ),
            None => {
                for &i in removes {
                    p.applied(i);
                }
            }
        },
        Err(e) => p.unanswered(removes, &e),
    }
}

/// Kicks, for what was applied, in one command.
async fn send_kicks(
    conn: &mut Connection,
    p: &mut Progress<'_>,
    rollout: Option<KickRollout>,
    checkpoint: &mut (dyn FnMut(&Done) + Send),
) {
    let kicked: Vec<usize> = (0..p.items.len())
        .filter(|&i| p.is_applied(i) && !p.items[i].op.kick().is_empty())
        .collect();
    let sessions: Vec<usize> = kicked.iter().map(|&i| p.items[i].op.kick().len()).collect();
    let waves = kick_waves(&sessions, rollout.map(|r| r.batch));
    let mut pacer = Pacer::new(rollout.map(|r| r.pause));
    for wave in &waves {
        let wave: Vec<usize> = wave.iter().map(|&k| kicked[k]).collect();
        let names: Vec<String> = wave.iter().map(|&i| p.name(i)).collect();
        if !pacer.next().await {
            // An earlier wave failed: this one is not sent; the next run kicks it.
            fail_kicked(
                p,
                &wave,
                "the session was not disconnected: not attempted (an earlier wave of kicks failed); the next run disconnects it",
            );
            p.done.kicks_lost.extend(names);
            continue;
        }
        let ids: Vec<String> = wave
            .iter()
            .flat_map(|&i| p.items[i].op.kick().iter().cloned())
            .collect();
        let why = match kick(conn, &ids).await {
            Ok(()) => {
                p.done.kicked.extend(names);
                checkpoint(&p.done);
                continue;
            }
            Err(KickFailed::Refused(why)) => format!(
                "the router refused to disconnect the session (the next run retries): {why}"
            ),
            Err(KickFailed::Lost(e)) if e.sent() => format!(
                "whether the session was disconnected is unknown (sent, no answer): {e}; the next run disconnects it if it is still up"
            ),
            Err(KickFailed::Lost(e)) => format!(
                "the session was not disconnected: not attempted (never sent): {e}; the next run disconnects it"
            ),
        };
        fail_kicked(p, &wave, &why);
        p.done.kicks_lost.extend(names);
        checkpoint(&p.done);
        pacer.failed();
    }
}

/// The pace of the waves of kicks: `pause` between two waves sent, none sent after one
/// failed.
struct Pacer {
    pause: Option<std::time::Duration>,
    sent: bool,
    failed: bool,
}

impl Pacer {
    fn new(pause: Option<std::time::Duration>) -> Self {
        Pacer {
            pause,
            sent: false,
            failed: false,
        }
    }

    /// Whether the next wave is sent; waits the pause first when a wave was sent before.
    async fn next(&mut self) -> bool {
        if self.failed {
            return false;
        }
        if self.sent
            && let Some(pause) = self.pause
        {
            tokio::time::sleep(pause).await;
        }
        self.sent = true;
        true
    }

    /// The wave just sent failed: no later one is sent.
    fn failed(&mut self) {
        self.failed = true;
    }
}

/// The kicked changes `wave` (indices of items) failed for `why`.
fn fail_kicked(p: &mut Progress<'_>, wave: &[usize], why: &str) {
    for &i in wave {
        let text = match &p.items[i].op {
            Op::Kick { .. } => why.to_string(),
            Op::Set { fields, .. } if fields.is_empty() => why.to_string(),
            Op::Remove { .. } => format!("removed (the router answered), but {why}"),
            Op::Add(_) | Op::Set { .. } => format!("written (the router answered), but {why}"),
        };
        p.fail(i, text);
    }
}

/// The waves of kicks: the changes (by their number of sessions, in order) grouped so that no
/// wave disconnects more than `batch` sessions, a customer's sessions never split (one with
/// more than `batch` is a wave of its own). `None`: every change in one wave.
pub fn kick_waves(sessions: &[usize], batch: Option<usize>) -> Vec<Vec<usize>> {
    let mut waves: Vec<Vec<usize>> = Vec::new();
    let mut in_wave = 0;
    for (k, &n) in sessions.iter().enumerate() {
        let fits = batch.is_none_or(|b| in_wave + n <= b);
        match waves.last_mut() {
            Some(w) if fits => w.push(k),
            _ => {
                waves.push(vec![k]);
                in_wave = 0;
            }
        }
        in_wave += n;
    }
    waves
}

/// Verifies what was written with one print. Never on a dead connection: a write the router
/// answered but that cannot be read back fails as not verified.
async fn verify_writes(
    conn: &mut Connection,
    p: &mut Progress<'_>,
    written: &[usize],
    key: &HashKey,
) {
    let written: Vec<usize> = written
        .iter()
        .copied()
        .filter(|&i| p.is_applied(i))
        .collect();
    if written.is_empty() {
        return;
    }
    let live = match read_router(conn).await {
        Ok(live) => live,
        Err(e) => {
            let why = format!(
                "written (the router answered), but not verified: {e}; the next plan settles it"
            );
            return p.fail_all(&written, &why);
        }
    };
    let by_name: HashMap<&str, &LiveSecret> = live.secrets.iter().map(|s| (s.name(), s)).collect();
    for &i in &written {
        let (d, comment) = match &p.items[i].op {
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
            p.fail(i, format!("verification failed: {why}"));
        } else if let Some(pw) = &d.password {
            p.done
                .hashes
                .push((d.name.clone(), Some(SecretHash::of(key, pw))));
        }
    }
}

/// Why sessions were not disconnected.
enum KickFailed {
    /// The router refused (a trap).
    Refused(String),
    /// No answer, or never sent.
    Lost(ApiError),
}

/// Disconnects sessions with one batched remove. RouterOS changes nothing when one id of the
/// list is unknown (a session that ended on its own since the plan): then each id is removed on
/// its own, in one round trip, and the ones already gone are not an error.
async fn kick(conn: &mut Connection, ids: &[String]) -> Result<(), KickFailed> {
    let batched = Command::new([
        "/ppp/active/remove".to_string(),
        format!("=.id={}", ids.join(",")),
    ]);
    let reply = conn.call(batched).await.map_err(KickFailed::Lost)?;
    let Some(trap) = reply.trap else {
        return Ok(());
    };
    if !trap.message.contains("no such item") {
        return Err(KickFailed::Refused(trap.message));
    }
    let one_by_one = ids
        .iter()
        .map(|id| Command::new(["/ppp/active/remove".to_string(), format!("=.id={id}")]))
        .collect();
    let replies = conn.run(one_by_one).await.map_err(KickFailed::Lost)?;
    match replies
        .into_iter()
        .filter_map(|r| r.trap)
        .find(|t| !t.message.contains("no such item"))
    {
        Some(t) => Err(KickFailed::Refused(t.message)),
        None => Ok(()),
    }
}

/// Checks a written secret against what was meant; `comment` is the text written with the tag,
/// when the comment was written.
pub fn verify(
    d: &DesiredSecret,
    live: Option<&LiveSecret>,
    comment: Option<&str>,
) -> Option<String> {
    let Some(l) = live else {
        return Some(format!("secret {:?} is not on the router", d.name));
    };
    for (k, v) in &d.fields {
        let now = l.fields.get(k).unwrap_or("");
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
    use std::collections::{BTreeMap, BTreeSet};

    use super::*;
    use crate::secret::Secret;

    fn secret(password: Option<&str>, comment: Option<&str>) -> DesiredSecret {
        DesiredSecret {
            name: "juan".into(),
            password: password.map(Secret::new),
            fields: [("profile", "10M".to_string()), ("disabled", "false".into())].into(),
            comment: comment.map(Into::into),
        }
    }

    fn live(fields: &[(&str, &str)]) -> LiveSecret {
        LiveSecret {
            id: "*1".into(),
            fields: fields
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            not_utf8: BTreeSet::new(),
        }
    }

    #[tokio::test(start_paused = true)]
    async fn waves_are_paced_and_none_is_sent_after_one_failed() {
        let pause = std::time::Duration::from_secs(10);
        let start = tokio::time::Instant::now();
        let mut pacer = Pacer::new(Some(pause));
        let mut sent_at = Vec::new();
        for wave in 0..3 {
            assert!(pacer.next().await, "wave {wave}");
            sent_at.push(start.elapsed());
        }
        assert_eq!(sent_at, [0, 10, 20].map(std::time::Duration::from_secs));
        pacer.failed();
        assert!(!pacer.next().await, "nothing after a failed wave");
        assert_eq!(
            start.elapsed(),
            std::time::Duration::from_secs(20),
            "no wait for it"
        );
        let mut at_once = Pacer::new(None);
        assert!(at_once.next().await && at_once.next().await);
        assert_eq!(start.elapsed(), std::time::Duration::from_secs(20));
    }

    #[test]
    fn a_change_that_disables_or_removes_the_secret_expects_no_redial() {
        let set = |disabled: &str| Op::Set {
            id: "*1".into(),
            desired: DesiredSecret {
                fields: [("disabled", disabled.to_string())].into(),
                ..secret(None, None)
            },
            fields: vec!["disabled".into()],
            comment: String::new(),
            kick: vec!["*80000001".into()],
        };
        assert!(expects_redial(&set("false")));
        assert!(!expects_redial(&set("true")));
        let kick = Op::Kick {
            name: "juan".into(),
            kick: vec!["*80000001".into()],
        };
        assert!(expects_redial(&kick));
        let remove = Op::Remove {
            id: "*1".into(),
            name: "juan".into(),
            kick: vec!["*80000001".into()],
        };
        assert!(!expects_redial(&remove));
    }

    #[test]
    fn kicks_go_in_waves_of_at_most_batch_sessions_a_customer_never_split() {
        assert_eq!(kick_waves(&[1, 1, 1], None), vec![vec![0, 1, 2]]);
        assert_eq!(kick_waves(&[1, 1, 1], Some(2)), vec![vec![0, 1], vec![2]]);
        assert_eq!(
            kick_waves(&[1, 1, 1], Some(1)),
            vec![vec![0], vec![1], vec![2]]
        );
        // Two sessions of one customer stay together, in a wave of their own when over.
        assert_eq!(
            kick_waves(&[1, 3, 1, 1], Some(2)),
            vec![vec![0], vec![1], vec![2, 3]]
        );
        assert!(kick_waves(&[], Some(2)).is_empty());
    }

    #[test]
    fn an_add_writes_every_field_and_a_set_only_the_changed_ones() {
        let d = secret(Some("pw"), Some("casa"));
        assert_eq!(
            field_words(&d, None, "casa"),
            [
                "=password=pw",
                "=disabled=false",
                "=profile=10M",
                "=comment=casa [wispctl]"
            ]
        );
        let which = ["profile".to_string(), "comment".to_string()];
        assert_eq!(
            field_words(&d, Some(&which), "casa"),
            ["=profile=10M", "=comment=casa [wispctl]"]
        );
        // The password is not managed: never written.
        let d = secret(None, None);
        assert_eq!(
            field_words(&d, Some(&["password".to_string()]), ""),
            Vec::<String>::new()
        );
    }

    #[test]
    fn only_a_set_with_fields_or_an_add_writes() {
        let d = secret(None, None);
        let set = |fields: Vec<String>| Op::Set {
            id: "*1".into(),
            desired: d.clone(),
            fields,
            comment: String::new(),
            kick: vec!["*8001".into()],
        };
        assert!(write_command(&set(vec![])).is_none(), "only a kick");
        assert_eq!(
            write_command(&set(vec!["profile".into()])).unwrap().words,
            ["/ppp/secret/set", "=.id=*1", "=profile=10M"]
        );
        assert_eq!(
            write_command(&Op::Add(d.clone())).unwrap().words[..2],
            ["/ppp/secret/add", "=name=juan"]
        );
        assert!(
            write_command(&Op::Kick {
                name: "x".into(),
                kick: vec![]
            })
            .is_none()
        );
    }

    #[test]
    fn verification_reads_back_fields_password_and_tag() {
        let d = secret(Some("pw"), Some("casa"));
        let good = [
            ("name", "juan"),
            ("password", "pw"),
            ("profile", "10M"),
            ("disabled", "false"),
            ("comment", "casa [wispctl]"),
        ];
        assert_eq!(verify(&d, Some(&live(&good)), Some("casa")), None);
        assert_eq!(
            verify(&d, None, Some("casa")).as_deref(),
            Some("secret \"juan\" is not on the router")
        );
        let mut wrong = good;
        wrong[2] = ("profile", "20M");
        assert_eq!(
            verify(&d, Some(&live(&wrong)), Some("casa")).as_deref(),
            Some("profile reads back \"20M\", not \"10M\"")
        );
        let mut wrong = good;
        wrong[1] = ("password", "Zq9x-other");
        let why = verify(&d, Some(&live(&wrong)), Some("casa")).unwrap();
        assert!(!why.contains("Zq9x") && !why.contains("pw\""), "{why}");
        // A hidden password is not checked.
        assert_eq!(
            verify(
                &d,
                Some(&live(&[good[0], good[2], good[3], good[4]])),
                Some("casa")
            ),
            None
        );
        let mut untagged = good;
        untagged[4] = ("comment", "casa");
        assert!(verify(&d, Some(&live(&untagged)), Some("casa")).is_some());
        // Not written: only the text is checked, the tag may be missing (a Latin-1 comment).
        assert_eq!(verify(&d, Some(&live(&untagged)), None), None);
    }

    #[test]
    fn the_state_forgets_removed_passwords_and_keeps_lost_kicks() {
        let k = HashKey::from_bytes([9; 32]);
        let h = SecretHash::of(&k, &Secret::new("pw"));
        let mut state = RouterState {
            passwords: BTreeMap::from([("gone".to_string(), h.clone())]),
            pending_kicks: ["a", "b", "c"].iter().map(|s| s.to_string()).collect(),
        };
        Done {
            hashes: vec![("new".into(), Some(h.clone())), ("gone".into(), None)],
            kicked: vec!["a".into()],
            kicks_lost: vec!["d".into()],
            refused: vec!["b".into()],
            not_sent: vec![],
        }
        .record(&mut state, &BTreeSet::new());
        assert_eq!(state.passwords.keys().collect::<Vec<_>>(), ["new"]);
        assert_eq!(
            state.pending_kicks.iter().collect::<Vec<_>>(),
            ["c", "d"],
            "kicked and refused are settled; lost is owed"
        );
    }

    /// A change never sent owes no kick of its own; a kick owed before the apply still is.
    #[test]
    fn a_change_never_sent_owes_no_new_kick() {
        let mut state = RouterState {
            passwords: BTreeMap::new(),
            // What apply saved before sending: "old" was owed before, "new" by this apply.
            pending_kicks: ["old", "new", "sent"]
                .iter()
                .map(|s| s.to_string())
                .collect(),
        };
        let before: BTreeSet<String> = ["old".to_string()].into();
        Done {
            not_sent: vec!["old".into(), "new".into()],
            ..Done::default()
        }
        .record(&mut state, &before);
        assert_eq!(
            state.pending_kicks.iter().collect::<Vec<_>>(),
            ["old", "sent"],
            "an unanswered change keeps its kick owed"
        );
    }

    #[test]
    fn an_unanswered_change_says_whether_it_was_sent() {
        let dead = ApiError::Dead("protocol: reserved length prefix byte 0xf8".into());
        let why = unanswered(&dead);
        assert!(why.starts_with("not attempted (never sent): "), "{why}");
        let lost = ApiError::Timeout(std::time::Duration::from_secs(5));
        let why = unanswered(&lost);
        assert!(
            why.starts_with("unknown (sent, no answer): no reply within 5s")
                && why.ends_with("the next plan settles it"),
            "{why}"
        );
    }
}
