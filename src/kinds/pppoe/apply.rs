//! Apply: the writes of one router's plan, verified, with exactly one outcome per change.
//!
//! Minimal and batched: every `add` and `set` (only the changed fields) in one round trip, one
//! batched `remove`, one batched `/ppp/active/remove` for the sessions to kick, then one print
//! to verify what was written. The kicks an apply owes are written to the state file before
//! anything is sent, so a connection lost between a write and its kick is kicked next run.
//!
//! Not here: deciding what to write (`diff`), the order of changes and the guards (the engine),
//! connecting (`client`).

use std::collections::HashMap;
use std::net::SocketAddr;

use routeros_api::client::{Command, Connection};

use super::PppoeError;
use super::client::connect;
use super::diff::Op;
use super::observe::{LiveSecret, read_router};
use super::spec::{DesiredSecret, Router};
use super::state::{RouterState, StateDir};
use crate::engine::{Item, NoTwin};
use crate::ownership::tagged;
use crate::plan::Action;
use crate::plan::report::Outcome;
use crate::secret::{HashKey, SecretHash};

/// Applies `items` to `router` (reached at `route`) and records in `state` the password hashes
/// applied and the kicks still owed.
pub async fn apply(
    router: &str,
    settings: &Router,
    route: &Result<Option<SocketAddr>, NoTwin>,
    items: Vec<Item<Op>>,
    key: &HashKey,
    state: &StateDir,
) -> Vec<Outcome> {
    let connected = match route {
        Ok(addr) => connect(router, settings, *addr).await,
        Err(e) => Err(PppoeError::NoTwin(e.clone())),
    };
    let mut conn = match connected {
        Ok(c) => c,
        Err(e) => return fail_every(&items, &format!("cannot connect: {e}")),
    };
    let owed = kicks_owed(&items);
    if !owed.is_empty() {
        let mut s = state.read(router);
        s.pending_kicks.extend(owed);
        state.save(router, &s);
    }
    let (outcomes, done) = apply_router(&mut conn, items, key).await;
    let mut s = state.read(router);
    done.record(&mut s);
    state.save(router, &s);
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
}

impl Done {
    /// Brings the router's state up to date with this apply.
    pub fn record(self, state: &mut RouterState) {
        for (name, hash) in self.hashes {
            match hash {
                Some(h) => state.passwords.insert(name, h),
                None => state.passwords.remove(&name),
            };
        }
        for name in self.kicked.iter().chain(&self.refused) {
            state.pending_kicks.remove(name);
        }
        state.pending_kicks.extend(self.kicks_lost);
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

/// Runs the writes, removes and kicks of one router's items; one outcome per item.
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
        if let Op::Remove { .. } = item.op {
            removes.push(i);
        } else if let Some(command) = write_command(&item.op) {
            writes.push(command);
            write_idx.push(i);
        } else {
            outcomes[i] = Some(Outcome::applied(&item.change.address, item.change.action));
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
            Ok(live) => {
                let by_name: HashMap<&str, &LiveSecret> =
                    live.secrets.iter().map(|s| (s.name(), s)).collect();
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
pub fn verify(
    d: &DesiredSecret,
    live: Option<&LiveSecret>,
    comment: Option<&str>,
) -> Option<String> {
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
        }
        .record(&mut state);
        assert_eq!(state.passwords.keys().collect::<Vec<_>>(), ["new"]);
        assert_eq!(
            state.pending_kicks.iter().collect::<Vec<_>>(),
            ["c", "d"],
            "kicked and refused are settled; lost is owed"
        );
    }
}
