//! The diff on plain values: no router, no simulator, no files.

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
        kick_rollout: None,
        redial_wait: None,
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
        unknown_passwords: BTreeSet::new(),
    }
}

/// (action, address) of every item, in diff order.
fn actions(p: &Planned<Op>) -> Vec<(Action, &str)> {
    p.items
        .iter()
        .map(|i| (i.change.action, i.change.address.as_str()))
        .collect()
}

fn strings(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

// ---- the whole diff ----------------------------------------------------------------------

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

/// Issue 10: a hidden password never set by wispctl and a profile change. The session is
/// kicked for the profile; the reason must not say it is not kicked.
#[test]
fn a_hidden_password_with_a_profile_change_says_one_thing_about_the_kick() {
    let d = desired(
        vec![want("a", Some("s3cret"), &[("profile", "Morosos")], "")],
        Prune::None,
    );
    let l = live(
        vec![live_secret(
            "*4",
            &[("name", "a"), ("profile", "10M"), ("comment", "[wispctl]")],
        )],
        &[("a", "*8004")],
        false,
    );
    let p = diff_router("r", &d, &l, &key()).unwrap();
    let c = &p.items[0].change;
    let reason = c.reason.as_deref().unwrap();
    assert_eq!(c.side_effects.len(), 1, "{c:?}");
    assert!(c.side_effects[0].contains("disconnects the active session"));
    assert!(!reason.contains("not kicked"), "{reason}");
    assert!(
        reason.contains("hides passwords") && reason.contains("disconnected for the other changes"),
        "{reason}"
    );
    match &p.items[0].op {
        Op::Set { kick, .. } => assert_eq!(kick, &vec!["*8004".to_string()]),
        _ => panic!(),
    }
    // Without another change: set, not kicked, and the reason says so.
    let d = desired(
        vec![want("a", Some("s3cret"), &[("profile", "10M")], "")],
        Prune::None,
    );
    let p = diff_router("r", &d, &l, &key()).unwrap();
    let c = &p.items[0].change;
    assert!(c.side_effects.is_empty());
    assert!(
        c.reason
            .as_deref()
            .unwrap()
            .contains("the session is not kicked")
    );
    assert_eq!(hidden_password_reason(false), HIDDEN_PASSWORD);
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

#[test]
fn a_missing_profile_error_names_every_profile_and_secret() {
    let d = desired(
        vec![
            want("a", None, &[("profile", "50M")], ""),
            want("b", None, &[("profile", "10M")], ""),
            want("c", None, &[("profile", "Plan \"X\"")], ""),
        ],
        Prune::Owned,
    );
    // Even with deletes to make: nothing is planned for the router.
    let l = live(
        vec![live_secret(
            "*9",
            &[("name", "old"), ("comment", "[wispctl]")],
        )],
        &[],
        true,
    );
    match diff_router("r", &d, &l, &key()) {
        Err(e @ PppoeError::MissingProfiles { .. }) => {
            assert_eq!(
                e.to_string(),
                r#"profiles that do not exist on router r: "50M" (secret "a"), "Plan \"X\"" (secret "c"); create them on the router or fix the YAML"#
            );
            let PppoeError::MissingProfiles { router, missing } = e else {
                unreachable!()
            };
            assert_eq!(router, "r");
            assert_eq!(
                missing,
                [
                    MissingProfile {
                        profile: "50M".into(),
                        secret: "a".into()
                    },
                    MissingProfile {
                        profile: "Plan \"X\"".into(),
                        secret: "c".into()
                    }
                ]
            );
        }
        Err(e) => panic!("another error: {e}"),
        Ok(_) => panic!("planned despite a missing profile"),
    }
}

/// A router that lists a name the YAML gives twice: which one is meant cannot be told, so
/// nothing is planned (the update would write one id and leave the other as it is).
#[test]
fn a_named_secret_listed_twice_stops_the_router() {
    let d = desired(
        vec![want("juan", None, &[("profile", "20M")], "")],
        Prune::Owned,
    );
    let l = live(
        vec![
            live_secret("*1", &[("name", "juan"), ("profile", "10M")]),
            live_secret("*2", &[("name", "juan"), ("profile", "20M")]),
            // Duplicates the YAML does not name are not wispctl's business.
            live_secret("*3", &[("name", "x")]),
            live_secret("*4", &[("name", "x")]),
        ],
        &[],
        true,
    );
    let e = diff_router("r", &d, &l, &key()).err().unwrap();
    assert!(
        matches!(&e, PppoeError::DuplicateSecrets { router, names } if router == "r" && names == &["juan"]),
        "{e}"
    );
    assert_eq!(
        e.to_string(),
        r#"router r lists secret "juan" more than once; wispctl cannot tell which one the YAML means: remove the duplicates on the router"#
    );
}

#[test]
fn a_new_secret_is_created_with_every_managed_field_and_the_tag() {
    let d = desired(
        vec![want(
            "ana",
            Some("pw"),
            &[("profile", "10M"), ("remote-address", "10.0.0.9")],
            "Centro",
        )],
        Prune::None,
    );
    let p = diff_router("r", &d, &live(vec![], &[("ana", "*8009")], true), &key()).unwrap();
    assert_eq!(actions(&p), [(Action::Create, r#"pppoe.r.secret["ana"]"#)]);
    let c = &p.items[0].change;
    let shown: Vec<(&str, Option<&str>, bool)> = c
        .fields
        .iter()
        .map(|f| (f.name.as_str(), f.after.as_deref(), f.sensitive))
        .collect();
    assert_eq!(
        shown,
        [
            ("password", None, true),
            ("profile", Some("10M"), false),
            ("remote-address", Some("10.0.0.9"), false),
            ("comment", Some("Centro [wispctl]"), false),
        ]
    );
    assert!(c.side_effects.is_empty(), "an add never kicks");
    assert!(matches!(&p.items[0].op, Op::Add(d) if d.name == "ana"));
    assert!(p.items[0].op.kick().is_empty());
    assert!(
        p.secret_hashes
            .contains_key(r#"pppoe.r.secret["ana"].password"#)
    );
    assert_eq!(p.desired_counts.get("secret"), Some(&1));
}

#[test]
fn an_update_shows_before_and_after_and_writes_only_what_changed() {
    let d = desired(
        vec![want(
            "juan",
            Some("new"),
            &[
                ("profile", "20M"),
                ("caller-id", "AA:BB:CC:DD:EE:FF"),
                ("routes", ""),
            ],
            "casa",
        )],
        Prune::None,
    );
    let l = live(
        vec![live_secret(
            "*1",
            &[
                ("name", "juan"),
                ("password", "old"),
                ("profile", "10M"),
                ("caller-id", "aa-bb-cc-dd-ee-ff"),
                ("comment", "casa [wispctl]"),
            ],
        )],
        &[("juan", "*8001"), ("juan", "*8002")],
        true,
    );
    let p = diff_router("r", &d, &l, &key()).unwrap();
    let c = &p.items[0].change;
    assert_eq!(c.action, Action::Update);
    assert_eq!(c.reason, None, "owned: no adoption");
    assert_eq!(c.fields.len(), 2);
    assert!(c.fields[0].sensitive && c.fields[0].before.is_none());
    assert_eq!(
        (c.fields[1].before.as_deref(), c.fields[1].after.as_deref()),
        (Some("10M"), Some("20M"))
    );
    match &p.items[0].op {
        Op::Set {
            id, fields, kick, ..
        } => {
            assert_eq!(id, "*1");
            assert_eq!(fields, &strings(&["password", "profile"]));
            assert_eq!(kick, &strings(&["*8001", "*8002"]));
        }
        _ => panic!("expected a set"),
    }
}

#[test]
fn kick_never_changes_without_disconnecting() {
    let mut d = desired(
        vec![want("maria", Some("new"), &[("profile", "Morosos")], "")],
        Prune::Owned,
    );
    d.kick = Kick::Never;
    let mut l = live(
        vec![
            live_secret(
                "*2",
                &[
                    ("name", "maria"),
                    ("password", "old"),
                    ("profile", "10M"),
                    ("comment", "[wispctl]"),
                ],
            ),
            live_secret("*3", &[("name", "retired"), ("comment", "[wispctl]")]),
        ],
        &[("maria", "*8002"), ("retired", "*8003"), ("gone", "*8004")],
        true,
    );
    l.pending_kicks.insert("gone".into());
    let p = diff_router("r", &d, &l, &key()).unwrap();
    assert_eq!(
        actions(&p),
        [
            (Action::Update, r#"pppoe.r.secret["maria"]"#),
            (Action::Delete, r#"pppoe.r.secret["retired"]"#)
        ],
        "no owed kick either"
    );
    assert!(p.items.iter().all(|i| i.op.kick().is_empty()));
    assert!(p.items.iter().all(|i| i.change.side_effects.is_empty()));
}

#[test]
fn prune_is_off_by_default_and_owned_secrets_are_kept_with_a_note() {
    let d = desired(vec![want("a", None, &[], "")], Prune::None);
    let l = live(
        vec![
            live_secret("*1", &[("name", "a"), ("comment", "[wispctl]")]),
            live_secret("*2", &[("name", "old1"), ("comment", "[wispctl]")]),
            live_secret("*3", &[("name", "old2"), ("comment", "x [wispctl]")]),
            live_secret("*4", &[("name", "by-hand")]),
        ],
        &[],
        true,
    );
    let p = diff_router("r", &d, &l, &key()).unwrap();
    assert!(p.items.is_empty());
    assert_eq!(
        p.notes,
        ["2 secret(s) tagged by wispctl are no longer in the YAML and are kept (prune: none)"]
    );
}

#[test]
fn prune_owned_deletes_owned_undeclared_secrets_and_kicks_their_sessions() {
    let d = desired(vec![want("a", None, &[], "")], Prune::Owned);
    let l = live(
        vec![
            live_secret("*1", &[("name", "a"), ("comment", "[wispctl]")]),
            live_secret("*2", &[("name", "old1"), ("comment", "[wispctl]")]),
            live_secret("*4", &[("name", "by-hand")]),
        ],
        &[("old1", "*8002"), ("by-hand", "*8004")],
        true,
    );
    let p = diff_router("r", &d, &l, &key()).unwrap();
    assert_eq!(actions(&p), [(Action::Delete, r#"pppoe.r.secret["old1"]"#)]);
    let i = &p.items[0];
    assert_eq!(i.collection, "secret");
    assert_eq!(i.change.reason.as_deref(), Some(PRUNED));
    assert_eq!(
        i.change.side_effects,
        ["disconnects the active session of old1"]
    );
    match &i.op {
        Op::Remove { id, name, kick } => {
            assert_eq!((id.as_str(), name.as_str()), ("*2", "old1"));
            assert_eq!(kick, &strings(&["*8002"]));
        }
        _ => panic!("expected a remove"),
    }
    assert!(p.notes.is_empty());
}

/// The empty-list guard lives in the engine; the diff hands it what it needs: how many
/// secrets the YAML lists, and whether the file allows an empty list to prune.
#[test]
fn an_empty_list_reports_zero_desired_secrets_for_the_guard() {
    let mut d = desired(vec![], Prune::Owned);
    let l = live(
        vec![live_secret(
            "*1",
            &[("name", "a"), ("comment", "[wispctl]")],
        )],
        &[],
        true,
    );
    let p = diff_router("r", &d, &l, &key()).unwrap();
    assert_eq!(actions(&p), [(Action::Delete, r#"pppoe.r.secret["a"]"#)]);
    assert_eq!(p.desired_counts.get("secret"), Some(&0));
    assert!(!p.allow_empty_prune);
    d.allow_empty_prune = true;
    assert!(diff_router("r", &d, &l, &key()).unwrap().allow_empty_prune);
}

#[test]
fn a_kick_owed_by_an_earlier_apply_is_planned() {
    let d = desired(
        vec![want("maria", None, &[("profile", "Morosos")], "")],
        Prune::None,
    );
    let mut l = live(
        vec![
            live_secret(
                "*2",
                &[
                    ("name", "maria"),
                    ("profile", "Morosos"),
                    ("comment", "[wispctl]"),
                ],
            ),
            live_secret("*5", &[("name", "by-hand")]),
        ],
        &[
            ("maria", "*8002"),
            ("removed", "*8003"),
            ("by-hand", "*8005"),
        ],
        true,
    );
    // Nothing owed: no change.
    assert!(diff_router("r", &d, &l, &key()).unwrap().items.is_empty());
    l.pending_kicks = ["maria", "removed", "offline", "by-hand"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    let p = diff_router("r", &d, &l, &key()).unwrap();
    assert_eq!(
        actions(&p),
        [
            (Action::Update, r#"pppoe.r.secret["maria"]"#),
            (Action::Update, r#"pppoe.r.secret["removed"]"#)
        ],
        "no session: nothing owed; a live secret the YAML does not name: not ours to kick"
    );
    assert_eq!(p.items[0].change.reason.as_deref(), Some(KICK_OWED));
    match &p.items[0].op {
        Op::Set { fields, kick, .. } => {
            assert!(fields.is_empty(), "nothing to write");
            assert_eq!(kick, &strings(&["*8002"]));
        }
        _ => panic!("expected a set"),
    }
    assert_eq!(p.items[1].change.reason.as_deref(), Some(KICK_OWED_REMOVED));
    assert!(
        matches!(&p.items[1].op, Op::Kick { name, kick } if name == "removed" && kick == &strings(&["*8003"]))
    );
}

#[test]
fn every_desired_password_is_hashed_for_the_stale_plan_check() {
    let d = desired(
        vec![
            want("a", Some("pa"), &[], ""),
            want("b", None, &[], ""),
            want("c", Some("pc"), &[], ""),
        ],
        Prune::None,
    );
    let l = live(
        vec![live_secret(
            "*1",
            &[("name", "a"), ("password", "pa"), ("comment", "[wispctl]")],
        )],
        &[],
        true,
    );
    let p = diff_router("r", &d, &l, &key()).unwrap();
    let keys: Vec<&str> = p.secret_hashes.keys().map(String::as_str).collect();
    assert_eq!(
        keys,
        [
            r#"pppoe.r.secret["a"].password"#,
            r#"pppoe.r.secret["c"].password"#
        ]
    );
    assert_eq!(
        p.secret_hashes[r#"pppoe.r.secret["c"].password"#],
        SecretHash::of(&key(), &Secret::new("pc"))
    );
}

#[test]
fn no_password_appears_in_the_plan() {
    let d = desired(
        vec![
            want("a", Some("Zq9x-a"), &[], ""),
            want("b", Some("Zq9x-b"), &[], ""),
        ],
        Prune::None,
    );
    let l = live(
        vec![live_secret(
            "*1",
            &[
                ("name", "a"),
                ("password", "Zq9x-old"),
                ("comment", "[wispctl]"),
            ],
        )],
        &[],
        true,
    );
    let p = diff_router("r", &d, &l, &key()).unwrap();
    for i in &p.items {
        let shown = format!("{:?} {:?}", i.change, i.op.name());
        assert!(!shown.contains("Zq9x"), "{shown}");
    }
    assert!(!format!("{:?}", p.secret_hashes).contains("Zq9x"));
    assert!(!format!("{:?}", p.notes).contains("Zq9x"));
}

// ---- the small functions -----------------------------------------------------------------

#[test]
fn values_normalise_to_one_form() {
    assert_eq!(normalise("disabled", "yes"), "true");
    assert_eq!(normalise("disabled", "no"), "false");
    assert_eq!(normalise("disabled", "true"), "true");
    assert_eq!(normalise("disabled", "maybe"), "maybe");
    assert_eq!(
        normalise("caller-id", "aabb.ccdd.eeff"),
        "AA:BB:CC:DD:EE:FF"
    );
    assert_eq!(normalise("caller-id", ""), "");
    assert_eq!(normalise("caller-id", "not a mac"), "not a mac");
    assert_eq!(
        normalise("comment", "yes"),
        "yes",
        "only disabled is a bool"
    );
}

#[test]
fn only_fields_the_yaml_manages_and_that_differ_are_changes() {
    let desired: BTreeMap<&'static str, String> = [
        ("profile", "10M".to_string()),
        ("remote-address", "10.0.0.2".to_string()),
        ("routes", String::new()),
    ]
    .into();
    let live: Row = [
        ("profile", "10M"),
        ("local-address", "10.0.0.1"),
        ("last-caller-id", "x"),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    assert_eq!(
        changed_fields(&desired, &live),
        [FieldChange {
            field: "remote-address",
            live: String::new(),
            desired: "10.0.0.2".into()
        }],
        "an unprinted field reads empty; unmanaged fields are ignored"
    );
}

#[test]
fn which_fields_call_for_a_kick() {
    for f in [
        "password",
        "profile",
        "disabled",
        "remote-address",
        "caller-id",
    ] {
        assert!(takes_effect_on_new_session(f), "{f}");
    }
    assert!(!takes_effect_on_new_session("comment"));
    assert!(!takes_effect_on_new_session("name"));
}

#[test]
fn passwords_compare_shown_or_by_the_hash_of_what_was_applied() {
    let k = key();
    let pw = Secret::new("s3cret");
    let same = SecretHash::of(&k, &pw);
    let other = SecretHash::of(&k, &Secret::new("old"));
    use PasswordCheck::*;
    assert_eq!(compare_password(&pw, Some("s3cret"), None, &k), Same);
    assert_eq!(compare_password(&pw, Some("old"), None, &k), Changed);
    // What the router shows wins over what wispctl remembers.
    assert_eq!(compare_password(&pw, Some("x"), Some(&same), &k), Changed);
    assert_eq!(compare_password(&pw, None, Some(&same), &k), Same);
    assert_eq!(compare_password(&pw, None, Some(&other), &k), Changed);
    assert_eq!(compare_password(&pw, None, None, &k), Unknown);
}

#[test]
fn a_comment_left_out_keeps_the_routers_text() {
    assert_eq!(comment_to_write(None, "casa"), ("casa".into(), false));
    assert_eq!(
        comment_to_write(Some("casa"), "casa"),
        ("casa".into(), false)
    );
    assert_eq!(
        comment_to_write(Some("nueva"), "casa"),
        ("nueva".into(), true)
    );
    assert_eq!(comment_to_write(Some(""), "casa"), (String::new(), true));
}

#[test]
fn adoption_tags_unless_owned_or_a_latin1_comment_would_be_rewritten() {
    use Adoption::*;
    // (owned, comment changed, comment not UTF-8)
    assert_eq!(adoption(true, false, false), Owned);
    assert_eq!(adoption(true, true, true), Owned);
    assert_eq!(adoption(false, false, false), Tag);
    assert_eq!(adoption(false, true, false), Tag);
    // The YAML rewrites the comment anyway: it is written, with the tag.
    assert_eq!(adoption(false, true, true), Tag);
    assert_eq!(adoption(false, false, true), LeftUntagged);
}

#[test]
fn kicks_follow_the_policy_and_the_change() {
    let s = strings(&["*8001"]);
    assert_eq!(sessions_to_kick(Kick::OnChange, true, false, &s), s);
    assert_eq!(sessions_to_kick(Kick::OnChange, false, true, &s), s);
    assert!(sessions_to_kick(Kick::OnChange, false, false, &s).is_empty());
    assert!(sessions_to_kick(Kick::Never, true, true, &s).is_empty());
    assert!(kick_owed(Kick::OnChange, true, &s));
    assert!(
        !kick_owed(Kick::OnChange, true, &[]),
        "no session: nothing to kick"
    );
    assert!(!kick_owed(Kick::OnChange, false, &s));
    assert!(!kick_owed(Kick::Never, true, &s));
}

#[test]
fn only_owned_undeclared_secrets_are_pruned_and_only_when_asked() {
    use PruneDecision::*;
    // (owned, in the YAML, policy)
    assert_eq!(prune(false, false, Prune::Owned), Leave);
    assert_eq!(prune(false, true, Prune::Owned), Leave);
    assert_eq!(prune(true, true, Prune::Owned), Leave);
    assert_eq!(prune(true, false, Prune::None), Keep);
    assert_eq!(prune(true, false, Prune::Owned), Delete);
}

#[test]
fn missing_profiles_are_listed_in_yaml_order() {
    let secrets = vec![
        want("a", None, &[("profile", "50M")], ""),
        want("b", None, &[], ""),
        want("c", None, &[("profile", "10M")], ""),
        want("d", None, &[("profile", "1G")], ""),
    ];
    let profiles: BTreeSet<String> = ["default", "10M"].iter().map(|s| s.to_string()).collect();
    let missing = missing_profiles(&secrets, &profiles);
    let shown: Vec<String> = missing.iter().map(ToString::to_string).collect();
    assert_eq!(shown, [r#""50M" (secret "a")"#, r#""1G" (secret "d")"#]);
}

#[test]
fn names_listed_twice_count_only_when_the_yaml_names_them() {
    let desired = vec![want("a", None, &[], ""), want("b", None, &[], "")];
    let live = vec![
        live_secret("*1", &[("name", "b")]),
        live_secret("*2", &[("name", "a")]),
        live_secret("*3", &[("name", "b")]),
        live_secret("*4", &[("name", "z")]),
        live_secret("*5", &[("name", "z")]),
    ];
    assert_eq!(named_twice(&desired, &live), ["b"]);
    assert!(named_twice(&desired, &live[..2]).is_empty());
}
