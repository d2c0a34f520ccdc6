//! The diff on plain values built here: no files, no lab, no network.

use std::path::PathBuf;

use super::*;
use crate::kinds::pppd::chap::{BEGIN, END};
use crate::kinds::pppd::fixtures::{chap_entry as entry, desired, peer_spec as spec};
use crate::kinds::pppd::observe::LiveChap;
use crate::secret::Secret;

const HOST: &str = "vps";

fn key() -> HashKey {
    HashKey::from_bytes([7; 32])
}

fn rendered(name: &str) -> String {
    peer::render(&spec(name), &peer_address(HOST, name))
}

fn owned_text(name: &str) -> String {
    format!(
        "{}: {}. Edits here are overwritten by the next apply.\nname old\n",
        peer::MARKER,
        peer_address(HOST, name)
    )
}

fn live_peer(content: &str, mode: u32) -> LivePeer {
    LivePeer {
        content: content.into(),
        mode,
    }
}

/// A host as read: peer files (name, content, mode) and chap-secrets text (mode 0600).
fn host(peers: &[(&str, &str, u32)], chap: Option<&str>) -> HostLive {
    HostLive {
        root: PathBuf::new(),
        peers: peers
            .iter()
            .map(|(n, c, m)| (n.to_string(), live_peer(c, *m)))
            .collect(),
        symlinks: BTreeSet::new(),
        chap: chap.map(|t| LiveChap::parse(t.as_bytes().to_vec(), 0o600).unwrap()),
        leftovers: Vec::new(),
    }
}

fn chap_file(text: &str) -> ChapFile {
    ChapFile::parse(text.as_bytes()).unwrap()
}

fn plan(d: &PppdDesired, live: &HostLive) -> Planned<Op> {
    diff_host(HOST, d, live, &key()).unwrap()
}

fn refusal(d: &PppdDesired, live: &HostLive) -> PppdError {
    diff_host(HOST, d, live, &key())
        .err()
        .expect("the host is refused")
}

/// (action, address) of every item, in the diff's order.
fn changes(p: &Planned<Op>) -> Vec<(Action, String)> {
    p.items
        .iter()
        .map(|i| (i.change.action, i.change.address.clone()))
        .collect()
}

fn peer_addr(name: &str) -> String {
    peer_address(HOST, name)
}

fn chap_addr(client: &str, server: &str) -> String {
    chap_address(HOST, client, server)
}

// ---- peers -------------------------------------------------------------------------------

#[test]
fn a_missing_peer_is_created_with_mode_0600_and_a_dial_hint() {
    let item = peer_change(HOST, &spec("node-2"), None).unwrap();
    assert_eq!(item.collection, "peer");
    let c = &item.change;
    assert_eq!(c.action, Action::Create);
    assert_eq!(c.address, r#"pppd.vps.peer["node-2"]"#);
    assert_eq!(c.reason, None);
    assert_eq!(
        c.fields,
        vec![FieldDiff::plain("mode", None, Some("0600".into()))]
    );
    let content = c.content.as_ref().unwrap();
    assert_eq!(content.path, "/etc/ppp/peers/node-2");
    assert_eq!(content.before, None);
    assert_eq!(content.after.as_deref(), Some(rendered("node-2").as_str()));
    assert_eq!(
        c.side_effects,
        ["the tunnel is not dialled: start it with `pppd call node-2`"]
    );
    assert!(
        matches!(&item.op, Op::WritePeer { name, content } if name == "node-2" && *content == rendered("node-2"))
    );
}

#[test]
fn a_peer_as_rendered_with_mode_0600_needs_no_change() {
    let live = live_peer(&rendered("node-2"), 0o600);
    assert!(peer_change(HOST, &spec("node-2"), Some(&live)).is_none());
}

#[test]
fn an_owned_peer_with_other_content_is_rewritten_with_a_restart_hint() {
    let live = live_peer(&owned_text("node-2"), 0o600);
    let item = peer_change(HOST, &spec("node-2"), Some(&live)).unwrap();
    let c = &item.change;
    assert_eq!(c.action, Action::Update);
    assert_eq!(c.reason, None, "an owned file is not adopted");
    assert!(c.fields.is_empty());
    let content = c.content.as_ref().unwrap();
    assert_eq!(
        content.before.as_deref(),
        Some(owned_text("node-2").as_str())
    );
    assert_eq!(content.after.as_deref(), Some(rendered("node-2").as_str()));
    assert_eq!(
        c.side_effects,
        [
            "a running tunnel keeps its old options until restarted (`poff node-2; pon node-2`); wispctl does not restart tunnels"
        ]
    );
}

#[test]
fn a_peer_with_only_a_wrong_mode_changes_its_mode_and_nothing_else() {
    let live = live_peer(&rendered("node-2"), 0o644);
    let item = peer_change(HOST, &spec("node-2"), Some(&live)).unwrap();
    let c = &item.change;
    assert_eq!(c.action, Action::Update);
    assert_eq!(
        c.fields,
        vec![FieldDiff::plain(
            "mode",
            Some("0644".into()),
            Some("0600".into())
        )]
    );
    assert_eq!(c.content, None);
    assert!(c.side_effects.is_empty(), "no restart for a mode");
}

#[test]
fn a_peer_file_written_by_hand_that_the_yaml_names_is_adopted() {
    let live = live_peer("name tecnico\npersist\n", 0o644);
    let item = peer_change(HOST, &spec("node-1"), Some(&live)).unwrap();
    assert_eq!(
        item.change.reason.as_deref(),
        Some("adopts a file wispctl did not write; its first line will mark it as managed")
    );
    assert_eq!(item.change.fields.len(), 1, "mode too");
}

#[test]
fn a_password_in_a_live_peer_never_shows_in_its_content_diff() {
    let live = live_peer("name tecnico\ndebug password Zq9x-peer-pw\n", 0o600);
    let item = peer_change(HOST, &spec("node-1"), Some(&live)).unwrap();
    let before = item.change.content.unwrap().before.unwrap();
    assert_eq!(before, "name tecnico\npassword (sensitive)\n");
    let delete = peer_delete(HOST, "node-1", &live);
    let before = delete.change.content.unwrap().before.unwrap();
    assert!(!before.contains("Zq9x"), "{before}");
}

#[test]
fn mode_field_only_for_a_mode_other_than_0600() {
    assert_eq!(mode_field(0o600), None);
    assert_eq!(
        mode_field(0o4755),
        Some(FieldDiff::plain(
            "mode",
            Some("4755".into()),
            Some("0600".into())
        ))
    );
}

#[test]
fn undeclared_owned_peers_are_marked_files_the_yaml_does_not_name() {
    let live: BTreeMap<String, LivePeer> = [
        ("declared", owned_text("declared")),
        ("retired", owned_text("retired")),
        ("provider", "noipdefault\n".to_string()),
    ]
    .into_iter()
    .map(|(n, c)| (n.to_string(), live_peer(&c, 0o600)))
    .collect();
    let found: Vec<&str> = undeclared_owned_peers(&[spec("declared")], &live)
        .into_iter()
        .map(|(n, _)| n)
        .collect();
    assert_eq!(found, ["retired"]);
}

#[test]
fn prune_or_keep_deletes_only_with_prune_owned() {
    assert_eq!(prune_or_keep(Prune::None, vec!['a', 'b']), (vec![], 2));
    assert_eq!(
        prune_or_keep(Prune::Owned, vec!['a', 'b']),
        (vec!['a', 'b'], 0)
    );
    assert_eq!(prune_or_keep::<char>(Prune::Owned, vec![]), (vec![], 0));
}

/// `node-2` as rendered, `node-9` that wispctl wrote, and the host's own `provider`.
fn with_a_retired_peer() -> HostLive {
    host(
        &[
            ("node-2", &rendered("node-2"), 0o600),
            ("node-9", &owned_text("node-9"), 0o600),
            ("provider", "noipdefault\n", 0o640),
        ],
        None,
    )
}

#[test]
fn prune_is_off_by_default_and_keeps_owned_peers_with_a_note() {
    let d = desired(Prune::default(), &["node-2"], vec![]);
    let live = with_a_retired_peer();
    let p = plan(&d, &live);
    assert!(p.items.is_empty(), "{:?}", changes(&p));
    assert_eq!(
        p.notes,
        ["1 object(s) wispctl wrote are no longer in the YAML and are kept (prune: none)"]
    );
}

#[test]
fn prune_owned_deletes_owned_peers_and_never_others() {
    let d = desired(Prune::Owned, &["node-2"], vec![]);
    let live = with_a_retired_peer();
    let p = plan(&d, &live);
    assert_eq!(changes(&p), [(Action::Delete, peer_addr("node-9"))]);
    let item = &p.items[0];
    assert_eq!(item.collection, "peer");
    assert_eq!(
        item.change.reason.as_deref(),
        Some("owned by wispctl and no longer in the YAML (prune: owned)")
    );
    assert_eq!(
        item.change.side_effects,
        ["a running tunnel node-9 is not stopped"]
    );
    let content = item.change.content.as_ref().unwrap();
    assert_eq!(content.path, "/etc/ppp/peers/node-9");
    assert_eq!(
        content.before.as_deref(),
        Some(owned_text("node-9").as_str())
    );
    assert_eq!(content.after, None);
    assert!(matches!(&item.op, Op::DeletePeer { name } if name == "node-9"));
    assert!(p.notes.is_empty());
}

#[test]
fn peer_files_the_yaml_names_that_are_symbolic_links_refuse_the_host() {
    let links = BTreeSet::from(["c".to_string(), "a".to_string(), "unnamed".to_string()]);
    let peers = [spec("c"), spec("b"), spec("a")];
    let err = refuse_symlinked_peers(&peers, &links).unwrap_err();
    assert!(matches!(&err, PppdError::SymlinkedPeers { peers } if peers == &["c", "a"]));
    assert_eq!(
        err.to_string(),
        "peer files that are symbolic links: c, a (wispctl will not replace a link)"
    );
    assert!(refuse_symlinked_peers(&peers[1..2], &links).is_ok());

    let mut live = host(&[], None);
    live.symlinks = links;
    let err = refusal(&desired(Prune::Owned, &["a"], vec![]), &live);
    assert!(matches!(err, PppdError::SymlinkedPeers { .. }));
    // A link the YAML does not name is never touched, nor pruned.
    assert!(
        plan(&desired(Prune::Owned, &["b"], vec![]), &live)
            .items
            .len()
            == 1
    );
}

// ---- chap-secrets entries ----------------------------------------------------------------

#[test]
fn a_missing_entry_is_created_in_the_block_without_showing_its_secret() {
    let e = entry("admin", "node-2", "Zq9x-admin");
    let item = chap_change(HOST, &e, &ChapFile::default(), None)
        .unwrap()
        .unwrap();
    assert_eq!(item.collection, "chap");
    let c = &item.change;
    assert_eq!(c.action, Action::Create);
    assert_eq!(c.address, r#"pppd.vps.chap["admin"@"node-2"]"#);
    assert_eq!(
        c.fields,
        vec![
            FieldDiff::sensitive("secret"),
            FieldDiff::plain("addresses", None, Some("*".into())),
        ]
    );
    assert_eq!(
        c.side_effects,
        ["takes effect at the tunnel's next authentication"]
    );
    assert!(matches!(&item.op, Op::Chap(ChapEdit::Add { entry }) if *entry == e));
}

#[test]
fn an_entry_as_rendered_needs_no_change() {
    let e = entry("admin", "node-2", "pw");
    let file = chap_file(&format!("{BEGIN}\n{}\n{END}\n", chap::render_entry(&e)));
    assert!(
        chap_change(HOST, &e, &file, Some([1].as_slice()))
            .unwrap()
            .is_none()
    );
}

#[test]
fn chap_fields_name_a_new_secret_without_its_value() {
    let e = entry("admin", "node-2", "new");
    let file = chap_file("\"admin\" \"node-2\" \"old\" *\n");
    let live = file.lines[0].entry.as_ref().unwrap();
    assert_eq!(
        chap_fields(live, &e, &file.text(0)),
        vec![FieldDiff::sensitive("secret")]
    );
}

#[test]
fn chap_fields_show_live_addresses_only_when_they_look_like_addresses() {
    let mut e = entry("admin", "node-2", "pw");
    e.addresses = vec!["10.8.0.2".into()];
    let file = chap_file("admin node-2 pw 10.8.0.9 10.8.0.0/24\n");
    let live = file.lines[0].entry.as_ref().unwrap();
    assert_eq!(
        chap_fields(live, &e, &file.text(0)),
        vec![FieldDiff::plain(
            "addresses",
            Some("10.8.0.9 10.8.0.0/24".into()),
            Some("10.8.0.2".into())
        )]
    );
    // An unquoted secret with a space splits into an "address" that is part of the secret.
    let file = chap_file("admin node-2 my secret=Zq9x *\n");
    let live = file.lines[0].entry.as_ref().unwrap();
    let fields = chap_fields(live, &e, &file.text(0));
    assert_eq!(fields[1].before.as_deref(), Some("(not shown)"));
    assert_eq!(
        shown_addresses(&["*".into(), "-10.0.0.5".into()]),
        "* -10.0.0.5"
    );
    assert_eq!(shown_addresses(&["pass word".into()]), "(not shown)");
}

#[test]
fn an_entry_written_without_quotes_is_requoted_and_nothing_else() {
    let e = entry("tecnico", "node-1", "pw");
    let file = chap_file("tecnico node-1 pw *\n");
    let live = file.lines[0].entry.as_ref().unwrap();
    assert_eq!(
        chap_fields(live, &e, &file.text(0)),
        vec![FieldDiff::plain(
            "quoting",
            Some("as written by hand".into()),
            Some("every field quoted".into())
        )]
    );
}

#[test]
fn an_entry_outside_the_block_is_adopted_where_it_stands() {
    let e = entry("tecnico", "node-1", "new");
    let file = chap_file("# comment\ntecnico node-1 old *\n");
    let item = chap_change(HOST, &e, &file, Some([1].as_slice()))
        .unwrap()
        .unwrap();
    assert_eq!(item.change.action, Action::Update);
    assert_eq!(
        item.change.reason.as_deref(),
        Some("adopts an entry outside the managed block (line 2); it is rewritten where it stands")
    );
    assert!(matches!(
        &item.op,
        Op::Chap(ChapEdit::Replace { line: 1, entry }) if *entry == e
    ));
    // Inside the block the same change is plain.
    let file = chap_file(&format!("{BEGIN}\ntecnico node-1 old *\n{END}\n"));
    let item = chap_change(HOST, &e, &file, Some([1].as_slice()))
        .unwrap()
        .unwrap();
    assert_eq!(item.change.reason, None);
}

#[test]
fn an_entry_on_a_line_that_is_not_utf8_refuses_the_host_with_its_line() {
    let mut bytes = b"# a\n".to_vec();
    bytes.extend_from_slice(b"jos\xe9 node-1 \"contrase\xf1a\" *\n");
    let file = ChapFile::parse(&bytes).unwrap();
    let client = file.lines[1].entry.as_ref().unwrap().client.clone();
    let e = entry(&client, "node-1", "pw");
    let err = chap_change(HOST, &e, &file, Some([1].as_slice()))
        .err()
        .expect("refused");
    let address = chap_addr(&client, "node-1");
    assert!(
        matches!(&err, PppdError::EntryNotText { line: 2, address: a } if *a == address),
        "{err:?}"
    );
    assert_eq!(
        err.to_string(),
        format!(
            "chap-secrets line 2 holds the entry for {address} but is not UTF-8 text: wispctl will not rewrite it; fix the line by hand"
        )
    );
}

#[test]
fn duplicates_of_a_managed_pair_refuse_the_host_and_others_are_noted() {
    let text = format!(
        "admin node-2 one *\nadmin node-2 two *\nbob office a *\nbob office b *\n{BEGIN}\n\"x\" \"y\" \"1\" *\n{END}\nx y 2 *\n"
    );
    let file = chap_file(&text);
    let pairs = file.pairs();

    // A pair with a line in the block is wispctl's even when the YAML no longer names it.
    let err = duplicate_notes(&file, &pairs, &HashSet::new()).unwrap_err();
    assert!(matches!(
        &err,
        PppdError::DuplicateEntries(d) if d.client == "x" && d.server == "y" && d.lines == [6, 8]
    ));

    // Someone else's pairs: a note each, and the host goes on.
    let without_block =
        chap_file("admin node-2 one *\nadmin node-2 two *\nbob office a *\nbob office b *\n");
    let pairs = without_block.pairs();
    let notes = duplicate_notes(&without_block, &pairs, &HashSet::new()).unwrap();
    assert_eq!(
        notes,
        [
            r#"chap-secrets has duplicate entries for "admin"@"node-2" at lines 1, 2 (not managed by wispctl; left alone)"#,
            r#"chap-secrets has duplicate entries for "bob"@"office" at lines 3, 4 (not managed by wispctl; left alone)"#,
        ]
    );

    // A pair the YAML names.
    let declared = HashSet::from([("admin", "node-2")]);
    let err = duplicate_notes(&without_block, &pairs, &declared).unwrap_err();
    assert!(matches!(
        &err,
        PppdError::DuplicateEntries(d) if d.client == "admin" && d.server == "node-2" && d.lines == [1, 2]
    ));
    assert_eq!(
        err.to_string(),
        r#"chap-secrets has duplicate entries for "admin"@"node-2" at lines 1, 2: remove all but one by hand before wispctl manages it"#
    );
}

#[test]
fn undeclared_owned_entries_are_block_entries_the_yaml_does_not_name() {
    let file = chap_file(&format!(
        "outside node pw *\n{BEGIN}\n\"kept\" \"node\" \"pw\" *\n\"gone\" \"node\" \"pw\" *\n{END}\n"
    ));
    let pairs = file.pairs();
    let declared = HashSet::from([("kept", "node")]);
    assert_eq!(
        undeclared_owned_entries(&file, &pairs, &declared),
        [("gone", "node", 3)]
    );
}

#[test]
fn prune_owned_deletes_owned_entries_and_prune_none_keeps_them() {
    let text = format!(
        "outside node pw *\n{BEGIN}\n\"kept\" \"node\" \"pw\" *\n\"gone\" \"node\" \"Zq9x\" *\n{END}\n"
    );
    let live = host(&[], Some(&text));
    let keep = vec![entry("kept", "node", "pw")];
    let p = plan(&desired(Prune::Owned, &[], keep.clone()), &live);
    assert_eq!(changes(&p), [(Action::Delete, chap_addr("gone", "node"))]);
    let item = &p.items[0];
    assert_eq!(item.collection, "chap");
    assert_eq!(item.change.fields, vec![FieldDiff::sensitive("secret")]);
    assert_eq!(
        item.change.reason.as_deref(),
        Some("owned by wispctl and no longer in the YAML (prune: owned)")
    );
    assert!(matches!(item.op, Op::Chap(ChapEdit::Remove { line: 3 })));

    let p = plan(&desired(Prune::None, &[], keep), &live);
    assert!(p.items.is_empty());
    assert_eq!(
        p.notes,
        ["1 object(s) wispctl wrote are no longer in the YAML and are kept (prune: none)"]
    );
}

#[test]
fn chap_secrets_mode_is_fixed_only_where_the_yaml_declares_entries() {
    let item = chap_mode_change(HOST, Some(0o644), true).unwrap();
    assert_eq!(item.collection, "file");
    assert_eq!(
        item.change.address,
        r#"pppd.vps.file["/etc/ppp/chap-secrets"]"#
    );
    assert_eq!(item.change.action, Action::Update);
    assert_eq!(
        item.change.reason.as_deref(),
        Some("chap-secrets holds secrets: only root may read it")
    );
    assert_eq!(
        item.change.fields,
        vec![FieldDiff::plain(
            "mode",
            Some("0644".into()),
            Some("0600".into())
        )]
    );
    assert!(matches!(item.op, Op::ChapMode));
    assert!(chap_mode_change(HOST, Some(0o644), false).is_none());
    assert!(chap_mode_change(HOST, Some(0o600), true).is_none());
    assert!(chap_mode_change(HOST, None, true).is_none());
}

#[test]
fn kept_note_only_when_something_is_kept() {
    assert_eq!(kept_note(0), None);
    assert_eq!(
        kept_note(3).as_deref(),
        Some("3 object(s) wispctl wrote are no longer in the YAML and are kept (prune: none)")
    );
}

// ---- guards, hashes, secrets -------------------------------------------------------------

#[test]
fn empty_lists_give_the_engine_what_its_empty_prune_guard_needs() {
    let live = host(
        &[("node-9", &owned_text("node-9"), 0o600)],
        Some(&format!("{BEGIN}\n\"gone\" \"node\" \"pw\" *\n{END}\n")),
    );
    let mut d = desired(Prune::Owned, &[], vec![]);
    let p = plan(&d, &live);
    let deletes: Vec<&str> = p
        .items
        .iter()
        .filter(|i| i.change.action == Action::Delete)
        .map(|i| i.collection)
        .collect();
    assert_eq!(deletes, ["peer", "chap"]);
    assert_eq!(
        p.desired_counts,
        BTreeMap::from([("chap", 0), ("file", 1), ("peer", 0)])
    );
    assert!(!p.allow_empty_prune, "off unless the file says so");
    d.allow_empty_prune = true;
    assert!(plan(&d, &live).allow_empty_prune);

    let d = desired(Prune::Owned, &["a", "b"], vec![entry("c", "s", "pw")]);
    assert_eq!(
        desired_counts(&d),
        BTreeMap::from([("chap", 1), ("file", 1), ("peer", 2)])
    );
}

#[test]
fn every_desired_secret_has_a_keyed_hash_by_address() {
    let chap = [
        entry("admin", "node-2", "a"),
        entry("tecnico", "node-1", "b"),
    ];
    let hashes = secret_hashes(HOST, &chap, &key());
    assert_eq!(
        hashes.keys().collect::<Vec<_>>(),
        [
            r#"pppd.vps.chap["admin"@"node-2"].secret"#,
            r#"pppd.vps.chap["tecnico"@"node-1"].secret"#
        ]
    );
    assert_eq!(
        hashes[r#"pppd.vps.chap["admin"@"node-2"].secret"#],
        SecretHash::of(&key(), &Secret::new("a"))
    );
}

#[test]
fn no_secret_shows_in_changes_ops_notes_or_errors() {
    let text = format!(
        "tecnico node-1 Zq9x-live-1 *\n{BEGIN}\n\"gone\" \"node\" \"Zq9x-live-2\" *\n{END}\n"
    );
    let live = host(
        &[("node-1", "name tecnico\npassword Zq9x-live-3\n", 0o644)],
        Some(&text),
    );
    let d = desired(
        Prune::Owned,
        &["node-1"],
        vec![
            entry("tecnico", "node-1", "Zq9x-desired-1"),
            entry("admin", "node-2", "Zq9x-desired-2"),
        ],
    );
    let p = plan(&d, &live);
    assert_eq!(p.items.len(), 4);
    for i in &p.items {
        let shown = format!("{:?} {:?}", i.change, i.op);
        assert!(!shown.contains("Zq9x"), "{shown}");
    }
    assert!(!format!("{:?}", p.notes).contains("Zq9x"));
    assert!(!format!("{:?}", p.secret_hashes).contains("Zq9x"));
    let dup = host(
        &[],
        Some("tecnico node-1 Zq9x-a *\ntecnico node-1 Zq9x-b *\n"),
    );
    let err = refusal(&d, &dup);
    assert!(!format!("{err} {err:?}").contains("Zq9x"));
}

// ---- the whole host ----------------------------------------------------------------------

/// A host the way the lab seeds it: a peer written by hand, a retired one wispctl wrote, the
/// host's own example peer, an unquoted entry the YAML names, other people's entries and a
/// world-readable chap-secrets.
fn seeded_host() -> HostLive {
    let mut live = host(
        &[
            ("connexa-node-1", "name tecnico\npersist\n", 0o644),
            ("connexa-node-9", &owned_text("connexa-node-9"), 0o600),
            ("provider", "noipdefault\n", 0o640),
        ],
        None,
    );
    let chap =
        "# Secrets\n\"soporte\" \"legacy-node\" \"viejo\" *\ntecnico connexa-node-1 clave *\n";
    live.chap = Some(LiveChap::parse(chap.as_bytes().to_vec(), 0o644).unwrap());
    live
}

fn seeded_desired(prune: Prune) -> PppdDesired {
    desired(
        prune,
        &["connexa-node-1", "connexa-node-2"],
        vec![
            entry("tecnico", "connexa-node-1", "nueva"),
            entry("admin", "connexa-node-2", "s3cret"),
        ],
    )
}

#[test]
fn a_seeded_host_plans_adds_updates_adoptions_and_prunes_in_order() {
    let p = plan(&seeded_desired(Prune::Owned), &seeded_host());
    assert_eq!(
        changes(&p),
        [
            (Action::Update, peer_addr("connexa-node-1")),
            (Action::Create, peer_addr("connexa-node-2")),
            (Action::Delete, peer_addr("connexa-node-9")),
            (Action::Update, chap_addr("tecnico", "connexa-node-1")),
            (Action::Create, chap_addr("admin", "connexa-node-2")),
            (
                Action::Update,
                r#"pppd.vps.file["/etc/ppp/chap-secrets"]"#.into()
            ),
        ]
    );
    assert!(p.notes.is_empty());
    assert_eq!(p.secret_hashes.len(), 2);
    assert!(p.object_errors.is_empty());

    let p = plan(&seeded_desired(Prune::None), &seeded_host());
    assert_eq!(p.items.len(), 5, "everything but the prune");
    assert_eq!(p.notes.len(), 1);
}

/// What apply would leave, computed on plain values: every peer written or removed, every
/// chap-secrets edit made, modes 0600.
fn applied(live: &HostLive, items: &[Item<Op>]) -> HostLive {
    let mut peers: BTreeMap<String, LivePeer> = live
        .peers
        .iter()
        .map(|(n, l)| (n.clone(), live_peer(&l.content, l.mode)))
        .collect();
    let mut edits = Vec::new();
    let mut chap_written = false;
    for i in items {
        match &i.op {
            Op::WritePeer { name, content } => {
                peers.insert(name.clone(), live_peer(content, FILE_MODE));
            }
            Op::DeletePeer { name } => {
                peers.remove(name);
            }
            Op::RemoveLeftover { .. } => {}
            Op::Chap(edit) => {
                edits.push(edit.clone());
                chap_written = true;
            }
            Op::ChapMode => chap_written = true,
        }
    }
    let chap = if chap_written {
        Some(LiveChap::parse(live.chap_file().edited(&edits), FILE_MODE).unwrap())
    } else {
        live.chap
            .as_ref()
            .map(|c| LiveChap::parse(c.bytes.clone(), c.mode).unwrap())
    };
    HostLive {
        root: PathBuf::new(),
        peers,
        symlinks: live.symlinks.clone(),
        chap,
        leftovers: Vec::new(),
    }
}

#[test]
fn the_plan_after_applying_a_plan_is_empty() {
    for prune in [Prune::Owned, Prune::None] {
        let d = seeded_desired(prune);
        let first = plan(&d, &seeded_host());
        let after = applied(&seeded_host(), &first.items);
        let second = plan(&d, &after);
        assert!(second.items.is_empty(), "{prune:?}: {:?}", changes(&second));
        // Lines that are not wispctl's are kept byte for byte.
        let text = String::from_utf8(after.chap.unwrap().bytes).unwrap();
        assert!(text.starts_with("# Secrets\n\"soporte\" \"legacy-node\" \"viejo\" *\n"));
    }
}

#[test]
fn a_temporary_file_left_by_a_killed_apply_is_a_cleanup_change_even_with_nothing_declared() {
    let mut live = host(&[], None);
    live.leftovers = vec![HostFile::Leftover {
        in_peers: false,
        name: ".wispctl-tmp-chap-secrets-0a1b2c".into(),
    }];
    let empty = desired(Prune::Owned, &[], Vec::new());
    let planned = plan(&empty, &live);
    assert_eq!(
        changes(&planned),
        [(
            Action::Delete,
            r#"pppd.vps.leftover["/etc/ppp/.wispctl-tmp-chap-secrets-0a1b2c"]"#.to_string()
        )]
    );
    let item = &planned.items[0];
    assert_eq!(item.collection, crate::engine::CLEANUP);
    assert!(
        item.change
            .reason
            .as_deref()
            .unwrap()
            .starts_with("cleanup:")
    );
    // Nothing the YAML declares: never subject to the empty-list guard.
    assert_eq!(planned.desired_counts.get(crate::engine::CLEANUP), None);
}

/// Issue 11: a host with 20,000 peers and entries, half of them no longer declared, is
/// diffed by name and pair (sets and maps, one pass each side).
#[test]
fn twenty_thousand_peers_and_entries_prune_the_undeclared_half() {
    const N: usize = 20_000;
    let names: Vec<String> = (0..N).map(|i| format!("p{i:05}")).collect();
    let declared_names: Vec<&str> = names.iter().step_by(2).map(String::as_str).collect();
    let peers: Vec<(String, String)> = names.iter().map(|n| (n.clone(), owned_text(n))).collect();
    let peer_refs: Vec<(&str, &str, u32)> = peers
        .iter()
        .map(|(n, c)| (n.as_str(), c.as_str(), 0o600))
        .collect();
    let mut chap = format!("{BEGIN}\n");
    for n in &names {
        chap.push_str(&chap::render_entry(&entry(n, "pptpd", "pw")));
        chap.push('\n');
    }
    chap.push_str(&format!("{END}\n"));
    let live = host(&peer_refs, Some(&chap));
    let entries: Vec<ChapEntry> = declared_names
        .iter()
        .map(|n| entry(n, "pptpd", "pw"))
        .collect();
    let d = desired(Prune::Owned, &declared_names, entries);

    let found = undeclared_owned_peers(&d.peers, &live.peers);
    assert_eq!(found.len(), N / 2);
    assert!(
        found
            .iter()
            .all(|(n, _)| n[1..].parse::<usize>().unwrap() % 2 == 1)
    );
    let file = live.chap_file();
    let pairs = file.pairs();
    let gone = undeclared_owned_entries(file, &pairs, &declared_pairs(&d.chap));
    assert_eq!(gone.len(), N / 2);
    assert!(gone.iter().all(|(c, _, line)| {
        let i: usize = c[1..].parse().unwrap();
        i % 2 == 1 && *line == i + 1
    }));

    let planned = plan(&d, &live);
    let deletes = planned
        .items
        .iter()
        .filter(|i| i.change.action == Action::Delete)
        .count();
    assert_eq!(deletes, N, "half the peers and half the entries");
    // The declared half is as the YAML says: peers are rewritten from their placeholder
    // text, entries are already in line.
    assert!(
        planned
            .items
            .iter()
            .filter(|i| i.change.action == Action::Update)
            .all(|i| i.collection == "peer")
    );
}
