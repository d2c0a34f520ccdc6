//! The diff on plain values: no server, no network. Each small function alone, then the whole
//! diff of one server.

use std::path::PathBuf;

use super::*;
use crate::kinds::uisp::fixtures::{ghost, live_device, live_site, mac, site};
use crate::kinds::uisp::spec::SiteKind;

const S: &str = "main";
const TAG: &str = "[wispctl]";

// ------------------------------------------------------------------------------------------
// Builders
// ------------------------------------------------------------------------------------------

fn endpoint(id: &str, name: &str, parent: Option<&str>, note: &str) -> LiveSite {
    LiveSite {
        kind: "endpoint".into(),
        ..live_site(id, name, parent, note)
    }
}

fn under(name: &str, parent: &str) -> SiteSpec {
    SiteSpec {
        parent: Some(parent.into()),
        ..site(name)
    }
}

fn desired(sites: Vec<SiteSpec>, devices: &[(String, Assignment)]) -> UispDesired {
    UispDesired {
        source: PathBuf::from("uisp/main.yaml"),
        prune: Prune::None,
        ghosts: Ghosts::Keep,
        allow_empty_prune: false,
        sites,
        devices: devices.iter().cloned().collect(),
    }
}

fn pruning(mut d: UispDesired) -> UispDesired {
    d.prune = Prune::Owned;
    d
}

fn to(site: &str) -> Assignment {
    Assignment::Site(site.into())
}

fn live(sites: Vec<LiveSite>, devices: Vec<LiveDevice>) -> UispLive {
    UispLive { sites, devices }
}

/// `action address` of every item, in order.
fn changes(items: &[Item<Op>]) -> Vec<String> {
    items
        .iter()
        .map(|i| format!("{:?} {}", i.change.action, i.change.address))
        .collect()
}

fn field(item: &Item<Op>, name: &str) -> (Option<String>, Option<String>) {
    let f = item
        .change
        .fields
        .iter()
        .find(|f| f.name == name)
        .unwrap_or_else(|| panic!("no field {name} in {:?}", item.change));
    (f.before.clone(), f.after.clone())
}

fn some(s: &str) -> Option<String> {
    Some(s.to_string())
}

// ------------------------------------------------------------------------------------------
// Live sites, references, loops
// ------------------------------------------------------------------------------------------

#[test]
fn two_live_sites_with_one_name_are_refused_by_name() {
    let sites = vec![
        live_site("s1", "Torre", None, ""),
        live_site("s2", "Torre", None, ""),
    ];
    match live_sites(S, &sites) {
        Err(UispKindError::DuplicateSiteName { server, name }) => {
            assert_eq!((server.as_str(), name.as_str()), (S, "Torre"));
        }
        other => panic!("{:?}", other.err()),
    }
    let sites = vec![
        live_site("s1", "Torre", None, ""),
        live_site("s2", "Casa", Some("s1"), ""),
    ];
    let index = live_sites(S, &sites).unwrap();
    assert_eq!(index.name_of(Some("s1")), Some("Torre"));
    assert_eq!(index.name_of(Some("s9")), None);
    assert_eq!(index.name_of(None), None);
}

#[test]
fn references_must_be_declared_or_live() {
    let sites = vec![live_site("s1", "Torre", None, "")];
    let index = live_sites(S, &sites).unwrap();
    let d = desired(
        vec![
            under("Casa", "Zona Fantasma"),
            under("Otra", "Torre"),
            site("Nueva"),
        ],
        &[
            (mac(1), to("Nueva")),
            (mac(2), to("Torre")),
            (mac(3), to("Casa \"Inexistente\"")),
            (mac(4), to("Zona Fantasma")),
            (mac(5), Assignment::Unassigned),
        ],
    );
    assert_eq!(
        undeclared_sites(&d, &index),
        ["Casa \"Inexistente\"", "Zona Fantasma"]
    );
    let d = desired(vec![under("Casa", "Torre")], &[(mac(1), to("Casa"))]);
    assert!(undeclared_sites(&d, &index).is_empty());
}

#[test]
fn a_declared_parent_that_loops_through_a_parent_uisp_keeps_is_found() {
    // UISP: Norte under Torre. YAML: Torre under Norte, Norte's parent left out (kept).
    let sites = vec![
        live_site("s1", "Torre", None, ""),
        live_site("s2", "Norte", Some("s1"), ""),
    ];
    let index = live_sites(S, &sites).unwrap();
    let d = desired(vec![site("Norte"), under("Torre", "Norte")], &[]);
    assert_eq!(
        parent_loop(&d, &index),
        Some(vec!["Norte".into(), "Torre".into()])
    );
    // Norte's parent left out means it stays under Torre; moving it elsewhere breaks the loop.
    let sites = vec![
        live_site("s1", "Torre", None, ""),
        live_site("s2", "Norte", Some("s1"), ""),
        live_site("s3", "Raiz", None, ""),
    ];
    let index = live_sites(S, &sites).unwrap();
    let d = desired(vec![under("Norte", "Raiz"), under("Torre", "Norte")], &[]);
    assert_eq!(parent_loop(&d, &index), None);
    // A chain through new sites and live ones, no loop.
    let d = desired(vec![under("Nueva", "Torre"), under("Hoja", "Nueva")], &[]);
    assert_eq!(parent_loop(&d, &index), None);
}

#[test]
fn declared_sites_come_parents_first_in_the_yamls_order_among_equals() {
    let sites = vec![
        under("Hoja", "Rama"),
        site("B"),
        under("Rama", "Raiz"),
        site("Raiz"),
        under("C", "Fuera"),
    ];
    let names: Vec<&str> = parents_first(&sites)
        .into_iter()
        .map(|s| s.name.as_str())
        .collect();
    assert_eq!(names, ["B", "Raiz", "Rama", "C", "Hoja"]);
}

// ------------------------------------------------------------------------------------------
// Site creates and updates
// ------------------------------------------------------------------------------------------

#[test]
fn a_new_site_is_created_with_its_note_tagged() {
    let spec = SiteSpec {
        kind: SiteKind::Endpoint,
        address: some("Calle 1"),
        note: some("casa azul"),
        ..under("Torre, Casa", "Torre")
    };
    let item = create_site(S, &spec);
    assert_eq!(item.change.action, Action::Create);
    assert_eq!(item.change.address, r#"uisp.main.site["Torre, Casa"]"#);
    assert_eq!(item.collection, "site");
    assert_eq!(field(&item, "type"), (None, some("endpoint")));
    assert_eq!(field(&item, "parent"), (None, some("Torre")));
    assert_eq!(field(&item, "address"), (None, some("Calle 1")));
    assert_eq!(field(&item, "note"), (None, some("casa azul [wispctl]")));
    assert_eq!(item.op, Op::CreateSite(spec));
    let bare = create_site(S, &site("Zona"));
    let names: Vec<&str> = bare.change.fields.iter().map(|f| f.name.as_str()).collect();
    assert_eq!(names, ["type", "note"]);
    assert_eq!(field(&bare, "note"), (None, some(TAG)));
}

#[test]
fn an_update_touches_only_the_fields_the_yaml_gives() {
    let l = LiveSite {
        address: "Cerro".into(),
        ..live_site("s2", "Casa", Some("s1"), "casa azul [wispctl]")
    };
    // Nothing given, or everything equal: no change.
    assert!(update_site(S, &site("Casa"), &l, Some("Torre")).is_none());
    let same = SiteSpec {
        address: some("Cerro"),
        note: some("casa azul"),
        ..under("Casa", "Torre")
    };
    assert!(update_site(S, &same, &l, Some("Torre")).is_none());
    // Each field that differs.
    let moved = SiteSpec {
        address: some("Llano"),
        note: some("casa roja"),
        ..under("Casa", "Norte")
    };
    let item = update_site(S, &moved, &l, Some("Torre")).unwrap();
    assert_eq!(item.change.action, Action::Update);
    assert_eq!(item.change.reason, None, "already tagged: not an adoption");
    assert_eq!(field(&item, "parent"), (some("Torre"), some("Norte")));
    assert_eq!(field(&item, "address"), (some("Cerro"), some("Llano")));
    assert_eq!(field(&item, "note"), (some("casa azul"), some("casa roja")));
    assert_eq!(
        item.op,
        Op::UpdateSite {
            live: l.clone(),
            spec: moved
        }
    );
}

#[test]
fn a_site_made_by_hand_is_adopted_by_its_first_update() {
    let l = live_site("s1", "Torre", None, "by hand");
    let item = update_site(
        S,
        &SiteSpec {
            note: some("torre"),
            ..site("Torre")
        },
        &l,
        None,
    )
    .unwrap();
    assert!(
        item.change.reason.as_deref().unwrap().contains("adopts"),
        "{:?}",
        item.change
    );
    // Unchanged fields do not adopt it: an untagged site the YAML matches stays as it is.
    assert!(update_site(S, &site("Torre"), &l, None).is_none());
}

#[test]
fn uisp_cannot_change_a_sites_type() {
    let l = endpoint("s1", "Torre, Casa", None, "");
    match same_type(S, &site("Torre, Casa"), &l) {
        Err(UispKindError::TypeChange {
            site,
            live,
            desired,
            ..
        }) => {
            assert_eq!(site, "Torre, Casa");
            assert_eq!(live, "endpoint");
            assert_eq!(desired, SiteKind::Site);
        }
        other => panic!("{other:?}"),
    }
    let spec = SiteSpec {
        kind: SiteKind::Endpoint,
        ..site("Torre, Casa")
    };
    assert!(same_type(S, &spec, &l).is_ok());
}

#[test]
fn site_changes_create_and_update_parents_first() {
    let sites = vec![live_site("s1", "Torre", None, "")];
    let index = live_sites(S, &sites).unwrap();
    let d = desired(
        vec![
            under("Casa", "Zona"),
            site("Zona"),
            SiteSpec {
                address: some("Cerro"),
                ..site("Torre")
            },
        ],
        &[],
    );
    let items = site_changes(S, &d, &index).unwrap();
    assert_eq!(
        changes(&items),
        [
            r#"Create uisp.main.site["Zona"]"#,
            r#"Update uisp.main.site["Torre"]"#,
            r#"Create uisp.main.site["Casa"]"#,
        ]
    );
}

// ------------------------------------------------------------------------------------------
// Device assignments
// ------------------------------------------------------------------------------------------

#[test]
fn an_unauthorized_device_is_authorized_into_its_site() {
    let d = live_device(1, None);
    let item = device_change(S, &to("Casa"), &d, None).unwrap();
    assert_eq!(
        item.change.address,
        r#"uisp.main.device["28:70:4E:00:00:01"]"#
    );
    assert_eq!(item.change.action, Action::Update);
    assert_eq!(item.collection, "device");
    assert_eq!(field(&item, "site"), (some("(unauthorized)"), some("Casa")));
    assert_eq!(field(&item, "authorized"), (some("false"), some("true")));
    assert!(item.change.side_effects.is_empty());
    assert_eq!(
        item.op,
        Op::Authorize {
            device: "d1".into(),
            site: "Casa".into()
        }
    );
}

#[test]
fn an_authorized_device_elsewhere_is_moved_and_the_plan_says_uisp_logs_it() {
    let d = live_device(1, Some("s1"));
    let item = device_change(S, &to("Casa"), &d, Some("Torre")).unwrap();
    assert_eq!(field(&item, "site"), (some("Torre"), some("Casa")));
    assert_eq!(item.change.fields.len(), 1);
    assert_eq!(
        item.change.side_effects,
        [format!("UISP logs a \"device moved\" event for {}", mac(1))]
    );
    // Already there: nothing.
    assert!(device_change(S, &to("Torre"), &d, Some("Torre")).is_none());
    // Authorized in a site UISP did not list: moved from "(no site)".
    let item = device_change(S, &to("Torre"), &d, None).unwrap();
    assert_eq!(field(&item, "site"), (some("(no site)"), some("Torre")));
}

#[test]
fn unassign_takes_a_device_out_of_its_site_once() {
    let d = live_device(1, Some("s1"));
    let item = device_change(S, &Assignment::Unassigned, &d, Some("Torre")).unwrap();
    assert_eq!(field(&item, "site"), (some("Torre"), some("(none)")));
    assert_eq!(
        item.op,
        Op::Unassign {
            device: "d1".into()
        }
    );
    assert!(device_change(S, &Assignment::Unassigned, &live_device(1, None), None).is_none());
}

#[test]
fn device_changes_note_devices_not_connected_and_where_each_will_be() {
    let sites = vec![live_site("s1", "Torre", None, "")];
    let index = live_sites(S, &sites).unwrap();
    let devices = vec![live_device(1, Some("s1")), live_device(2, None), ghost(3)];
    let d = desired(
        vec![],
        &[
            (mac(1), Assignment::Unassigned),
            (mac(2), to("Torre")),
            (mac(9), to("Torre")),
        ],
    );
    let out = device_changes(S, &d, &devices, &index);
    assert_eq!(
        changes(&out.items),
        [
            format!(r#"Update uisp.main.device["{}"]"#, mac(1)),
            format!(r#"Update uisp.main.device["{}"]"#, mac(2)),
        ]
    );
    assert_eq!(out.absent, [mac(9)]);
    assert_eq!(out.site_after.get("d1"), Some(&None));
    assert_eq!(out.site_after.get("d2"), Some(&Some("Torre")));
    assert_eq!(out.site_after.get("g3"), None, "not declared: left alone");
}

// ------------------------------------------------------------------------------------------
// Ghosts
// ------------------------------------------------------------------------------------------

#[test]
fn ghosts_are_kept_unless_the_yaml_deletes_them() {
    let devices = vec![ghost(1), ghost(2), live_device(3, None)];
    let keep = ghost_changes(S, &desired(vec![], &[]), &devices);
    assert!(keep.items.is_empty() && keep.deleted.is_empty());
    assert_eq!(
        keep.note.as_deref(),
        Some("2 ghost device(s) (no name, no IP, not authorized) are kept (ghosts: keep)")
    );
    assert!(
        ghost_changes(S, &desired(vec![], &[]), &[live_device(3, None)])
            .note
            .is_none()
    );

    let mut d = desired(vec![], &[]);
    d.ghosts = Ghosts::Delete;
    let mut failing = ghost(2);
    failing.failed_decryption = true;
    let devices = [ghost(1), failing, live_device(3, None)];
    let delete = ghost_changes(S, &d, &devices);
    assert_eq!(delete.note, None);
    assert_eq!(delete.deleted, ["g1", "g2"]);
    assert_eq!(
        changes(&delete.items),
        [
            r#"Delete uisp.main.device["F0:9F:C2:00:00:01"]"#,
            r#"Delete uisp.main.device["F0:9F:C2:00:00:02"]"#,
        ]
    );
    let g = &delete.items[1];
    assert_eq!(g.collection, "ghost");
    assert_eq!(
        g.change.reason.as_deref(),
        Some("ghost: no name, no IP, not authorized, failing decryption (ghosts: delete)")
    );
    assert!(g.change.side_effects[0].contains("key is reset first"));
    assert_eq!(
        g.op,
        Op::DeleteGhost {
            device: "g2".into()
        }
    );
}

#[test]
fn a_device_with_a_name_or_an_ip_is_never_a_ghost() {
    let mut d = desired(vec![], &[]);
    d.ghosts = Ghosts::Delete;
    let named = LiveDevice {
        name: some("cpe"),
        ..ghost(1)
    };
    let addressed = LiveDevice {
        ip: some("10.10.1.45"),
        ..ghost(2)
    };
    let authorized = LiveDevice {
        authorized: true,
        ..ghost(3)
    };
    let devices = [named, addressed, authorized];
    let out = ghost_changes(S, &d, &devices);
    assert!(out.items.is_empty(), "{:?}", changes(&out.items));
    // An empty name or IP is no name or IP.
    let blank = LiveDevice {
        name: some(""),
        ip: some(""),
        ..ghost(4)
    };
    assert_eq!(ghost_changes(S, &d, &[blank]).deleted, ["g4"]);
}

#[test]
fn a_ghost_the_yaml_assigns_is_assigned_not_deleted() {
    let sites = vec![live_site("s1", "Torre", None, "")];
    let g = ghost(1);
    let mut d = desired(vec![], &[(g.mac.clone(), to("Torre"))]);
    d.ghosts = Ghosts::Delete;
    let planned = diff_server(S, &d, &live(sites, vec![g])).unwrap();
    assert_eq!(
        changes(&planned.items),
        [r#"Update uisp.main.device["F0:9F:C2:00:00:01"]"#]
    );
}

// ------------------------------------------------------------------------------------------
// Owned empty-site pruning
// ------------------------------------------------------------------------------------------

/// Prunes over `sites` and `devices` with the device moves `d` plans; the changes and notes.
fn prune(
    d: &UispDesired,
    sites: Vec<LiveSite>,
    devices: Vec<LiveDevice>,
) -> (Vec<String>, Vec<String>) {
    let l = live(sites, devices);
    let index = live_sites(S, &l.sites).unwrap();
    let moves = device_changes(S, d, &l.devices, &index);
    let (items, notes) = prune_sites(S, d, &l, &index, &moves.site_after);
    for i in &items {
        assert_eq!(i.collection, "site");
        assert!(matches!(i.op, Op::DeleteSite { .. }));
    }
    (changes(&items), notes)
}

fn owned(id: &str, name: &str, parent: Option<&str>) -> LiveSite {
    live_site(id, name, parent, "old zone [wispctl]")
}

#[test]
fn prune_is_off_by_default_and_keeps_owned_sites_with_a_note() {
    let d = desired(vec![], &[]);
    let (items, notes) = prune(
        &d,
        vec![owned("s1", "Vieja", None), owned("s2", "Otra", None)],
        vec![],
    );
    assert!(items.is_empty());
    assert_eq!(
        notes,
        ["2 site(s) wispctl created are no longer declared and are kept (prune: none)"]
    );
}

#[test]
fn prune_owned_deletes_only_owned_empty_undeclared_sites() {
    let d = pruning(desired(vec![site("Declarada")], &[]));
    let (items, notes) = prune(
        &d,
        vec![
            owned("s1", "Vieja", None),
            // Not wispctl's: never deleted, not even noted.
            live_site("s2", "A mano", None, "by hand"),
            // Tagged but declared: managed, not pruned.
            live_site("s3", "Declarada", None, TAG),
            // The tag must end the note.
            live_site("s4", "Casi", None, "[wispctl] by hand"),
            owned("s5", "Ocupada", None),
        ],
        vec![live_device(1, Some("s5"))],
    );
    assert_eq!(items, [r#"Delete uisp.main.site["Vieja"]"#]);
    assert_eq!(
        notes,
        [
            "site \"Ocupada\" is no longer declared but still holds devices or sites: kept until it is empty"
        ]
    );
}

#[test]
fn a_site_is_empty_after_the_plan_moves_its_devices_out() {
    let d = pruning(desired(vec![site("Nueva")], &[(mac(1), to("Nueva"))]));
    let (items, _) = prune(
        &d,
        vec![owned("s1", "Vieja", None)],
        vec![live_device(1, Some("s1"))],
    );
    assert_eq!(items, [r#"Delete uisp.main.site["Vieja"]"#]);
    // Unassigned counts as moved out too.
    let d = pruning(desired(vec![], &[(mac(1), Assignment::Unassigned)]));
    let (items, _) = prune(
        &d,
        vec![owned("s1", "Vieja", None)],
        vec![live_device(1, Some("s1"))],
    );
    assert_eq!(items, [r#"Delete uisp.main.site["Vieja"]"#]);
    // A device the YAML moves in keeps it.
    let d = pruning(desired(vec![], &[(mac(1), to("Vieja"))]));
    let (items, _) = prune(
        &d,
        vec![owned("s1", "Vieja", None)],
        vec![live_device(1, None)],
    );
    assert!(items.is_empty());
}

#[test]
fn a_site_a_device_not_yet_connected_is_assigned_to_is_kept() {
    let d = pruning(desired(vec![], &[(mac(7), to("Vieja"))]));
    let (items, notes) = prune(&d, vec![owned("s1", "Vieja", None)], vec![]);
    assert!(items.is_empty());
    assert_eq!(notes.len(), 1, "{notes:?}");
}

#[test]
fn a_site_a_declared_site_is_placed_under_is_kept() {
    let d = pruning(desired(vec![under("Hija", "Vieja")], &[]));
    let (items, notes) = prune(&d, vec![owned("s1", "Vieja", None)], vec![]);
    assert!(items.is_empty());
    assert!(
        notes[0].contains("still holds devices or sites"),
        "{notes:?}"
    );
}

#[test]
fn empty_owned_sites_go_deepest_first() {
    let d = pruning(desired(vec![], &[]));
    let (items, notes) = prune(
        &d,
        vec![
            owned("s1", "Raiz", None),
            owned("s2", "Rama", Some("s1")),
            owned("s3", "Hoja", Some("s2")),
            owned("s4", "Suelta", None),
        ],
        vec![],
    );
    assert_eq!(
        items,
        [
            r#"Delete uisp.main.site["Hoja"]"#,
            r#"Delete uisp.main.site["Rama"]"#,
            r#"Delete uisp.main.site["Raiz"]"#,
            r#"Delete uisp.main.site["Suelta"]"#,
        ]
    );
    assert!(notes.is_empty(), "{notes:?}");
}

#[test]
fn an_owned_parent_stays_while_a_child_site_stays() {
    let d = pruning(desired(vec![], &[]));
    // Hoja holds a device; Rama holds Hoja; Raiz holds Rama: all kept. Untagged children
    // under an owned site keep it too.
    let (items, notes) = prune(
        &d,
        vec![
            owned("s1", "Raiz", None),
            owned("s2", "Rama", Some("s1")),
            owned("s3", "Hoja", Some("s2")),
            owned("s4", "Padre", None),
            live_site("s5", "A mano", Some("s4"), "by hand"),
        ],
        vec![live_device(1, Some("s3"))],
    );
    assert!(items.is_empty(), "{items:?}");
    assert_eq!(
        notes,
        [
            "site \"Hoja\" is no longer declared but still holds devices or sites: kept until it is empty",
            "site \"Rama\" is no longer declared but still holds sites that stay: kept until it is empty",
            "site \"Padre\" is no longer declared but still holds sites that stay: kept until it is empty",
            "site \"Raiz\" is no longer declared but still holds sites that stay: kept until it is empty",
        ]
    );
}

#[test]
fn an_owned_parent_goes_when_its_declared_child_moves_out() {
    let d = pruning(desired(vec![site("Raiz2"), under("Hija", "Raiz2")], &[]));
    let (items, _) = prune(
        &d,
        vec![
            owned("s1", "Vieja", None),
            live_site("s2", "Hija", Some("s1"), TAG),
            live_site("s3", "Raiz2", None, ""),
        ],
        vec![],
    );
    assert_eq!(items, [r#"Delete uisp.main.site["Vieja"]"#]);
    // A declared child whose parent is left out stays where it is: the parent stays.
    let d = pruning(desired(vec![site("Hija")], &[]));
    let (items, _) = prune(
        &d,
        vec![
            owned("s1", "Vieja", None),
            live_site("s2", "Hija", Some("s1"), TAG),
        ],
        vec![],
    );
    assert!(items.is_empty());
}

// ------------------------------------------------------------------------------------------
// The empty-list guard's inputs
// ------------------------------------------------------------------------------------------

#[test]
fn desired_counts_feed_the_empty_list_guard_and_ghosts_are_exempt() {
    let d = desired(vec![site("A"), site("B")], &[(mac(1), to("A"))]);
    let counts = desired_counts(&d);
    assert_eq!(counts.get("site"), Some(&2));
    assert_eq!(counts.get("device"), Some(&1));
    assert_eq!(counts.get("ghost"), Some(&1));

    // An empty sites list that prunes: the engine refuses it unless the file allows it.
    let l = live(vec![owned("s1", "Vieja", None)], vec![]);
    let mut d = pruning(desired(vec![], &[]));
    let planned = diff_server(S, &d, &l).unwrap();
    assert_eq!(
        changes(&planned.items),
        [r#"Delete uisp.main.site["Vieja"]"#]
    );
    assert_eq!(planned.desired_counts.get("site"), Some(&0));
    assert!(!planned.allow_empty_prune);
    d.allow_empty_prune = true;
    assert!(diff_server(S, &d, &l).unwrap().allow_empty_prune);
}

// ------------------------------------------------------------------------------------------
// The whole diff
// ------------------------------------------------------------------------------------------

/// The lab's seed, roughly: a zone site, an endpoint holding a device, one in the zone instead
/// of its endpoint, one unauthorized, a ghost, and an owned site no longer declared.
fn server() -> UispLive {
    live(
        vec![
            live_site("s1", "Tomatlan", None, ""),
            endpoint("s2", "Tomatlan, Juan", Some("s1"), ""),
            endpoint("s3", "Tomatlan, Luis", Some("s1"), TAG),
            owned("s4", "Zona Vieja", None),
        ],
        vec![
            live_device(1, Some("s2")),
            live_device(2, None),
            live_device(3, Some("s1")),
            ghost(4),
        ],
    )
}

fn server_yaml() -> UispDesired {
    desired(
        vec![
            SiteSpec {
                kind: SiteKind::Endpoint,
                ..under("Tomatlan, Maria", "Tomatlan")
            },
            SiteSpec {
                kind: SiteKind::Endpoint,
                note: some("casa"),
                ..under("Tomatlan, Luis", "Tomatlan")
            },
        ],
        &[
            (mac(1), to("Tomatlan, Juan")),
            (mac(2), to("Tomatlan, Maria")),
            (mac(3), to("Tomatlan, Luis")),
            (mac(9), to("Tomatlan, Maria")),
        ],
    )
}

#[test]
fn the_whole_diff_plans_sites_then_devices_then_deletes() {
    let mut d = pruning(server_yaml());
    d.ghosts = Ghosts::Delete;
    let planned = diff_server(S, &d, &server()).unwrap();
    assert_eq!(
        changes(&planned.items),
        [
            r#"Create uisp.main.site["Tomatlan, Maria"]"#,
            r#"Update uisp.main.site["Tomatlan, Luis"]"#,
            format!(r#"Update uisp.main.device["{}"]"#, mac(2)).as_str(),
            format!(r#"Update uisp.main.device["{}"]"#, mac(3)).as_str(),
            r#"Delete uisp.main.device["F0:9F:C2:00:00:04"]"#,
            r#"Delete uisp.main.site["Zona Vieja"]"#,
        ]
    );
    assert_eq!(
        planned.notes,
        [format!(
            "1 device(s) in the YAML are not in UISP yet (they have not connected): {}",
            mac(9)
        )]
    );
    assert!(planned.secret_hashes.is_empty() && planned.object_errors.is_empty());
}

#[test]
fn the_whole_diff_with_the_defaults_keeps_ghosts_and_owned_sites() {
    let planned = diff_server(S, &server_yaml(), &server()).unwrap();
    assert!(
        planned
            .items
            .iter()
            .all(|i| i.change.action != Action::Delete),
        "{:?}",
        changes(&planned.items)
    );
    assert_eq!(planned.notes.len(), 3, "{:?}", planned.notes);
    assert!(planned.notes[1].contains("ghost"));
    assert!(planned.notes[2].contains("prune: none"));
}

#[test]
fn a_server_in_line_with_the_yaml_plans_nothing() {
    let l = live(
        vec![
            live_site("s1", "Torre", None, "torre [wispctl]"),
            endpoint("s2", "Torre, Casa", Some("s1"), TAG),
        ],
        vec![live_device(1, Some("s2")), live_device(2, None)],
    );
    let d = desired(
        vec![
            SiteSpec {
                note: some("torre"),
                ..site("Torre")
            },
            SiteSpec {
                kind: SiteKind::Endpoint,
                ..under("Torre, Casa", "Torre")
            },
        ],
        &[
            (mac(1), to("Torre, Casa")),
            (mac(2), Assignment::Unassigned),
        ],
    );
    let planned = diff_server(S, &pruning(d), &l).unwrap();
    assert!(planned.items.is_empty(), "{:?}", changes(&planned.items));
    assert!(planned.notes.is_empty(), "{:?}", planned.notes);
}

#[test]
fn the_whole_diff_refuses_what_it_must_not_plan() {
    let err = |d: &UispDesired, l: &UispLive| diff_server(S, d, l).err().unwrap();
    // A site referenced nowhere.
    match err(&desired(vec![], &[(mac(1), to("Nada"))]), &server()) {
        UispKindError::UndeclaredSites { names, .. } => assert_eq!(names, ["Nada"]),
        other => panic!("{other}"),
    }
    // A type change.
    let d = desired(vec![site("Tomatlan, Juan")], &[]);
    assert!(matches!(
        err(&d, &server()),
        UispKindError::TypeChange { .. }
    ));
    // Two live sites with one name.
    let mut l = server();
    l.sites.push(live_site("s9", "Tomatlan", None, ""));
    assert!(matches!(
        err(&desired(vec![], &[]), &l),
        UispKindError::DuplicateSiteName { .. }
    ));
    // A parent loop with UISP's parents: Tomatlan under its own endpoint.
    let d = desired(vec![under("Tomatlan", "Tomatlan, Juan")], &[]);
    match err(&d, &server()) {
        UispKindError::ParentLoop { sites, server } => {
            assert_eq!(server, S);
            assert_eq!(sites, ["Tomatlan", "Tomatlan, Juan"]);
        }
        other => panic!("{other}"),
    }
}

// ------------------------------------------------------------------------------------------
// Size: every lookup by name, MAC or id (issue 11)
// ------------------------------------------------------------------------------------------

#[test]
fn depths_agree_with_depth_on_chains_forks_and_loops() {
    // a <- b <- c <- d, e under b; x <-> y loop, z into it; r a root with no entry.
    let parents: HashMap<&str, &str> = [
        ("b", "a"),
        ("c", "b"),
        ("d", "c"),
        ("e", "b"),
        ("x", "y"),
        ("y", "x"),
        ("z", "x"),
        ("w", "z"),
    ]
    .into_iter()
    .collect();
    let names = ["d", "a", "e", "c", "b", "w", "x", "z", "y", "r"];
    // In any order of first visit, the memo gives what the walk gives.
    for start in 0..names.len() {
        let mut order = names.to_vec();
        order.rotate_left(start);
        let got = depths(&parents, order.iter().copied());
        for n in names {
            assert_eq!(got[n], depth(&parents, n), "{n} from {order:?}");
        }
    }
    assert_eq!(depth(&parents, "d"), 3);
    assert_eq!(depth(&parents, "w"), parents.len() + 1);
}

/// `AA:BB:CC:xx:xx:xx` for a device number.
fn big_mac(i: u32) -> String {
    let b = i.to_be_bytes();
    format!("AA:BB:CC:{:02X}:{:02X}:{:02X}", b[1], b[2], b[3])
}

#[test]
fn a_server_with_twenty_thousand_devices_is_matched_by_mac_and_id() {
    const N: u32 = 20_000;
    let mut sites: Vec<LiveSite> = (0..100)
        .map(|i| endpoint(&format!("e{i}"), &format!("Casa {i}"), None, TAG))
        .collect();
    sites.push(owned("old", "Vieja", None));
    let devices: Vec<LiveDevice> = (0..N)
        .map(|i| LiveDevice {
            id: format!("dev{i}"),
            mac: big_mac(i),
            name: Some(format!("cpe {i}")),
            ip: None,
            authorized: i % 4 != 3,
            site_id: (i % 4 != 3).then(|| format!("e{}", i % 100)),
            status: "active".into(),
            failed_decryption: false,
        })
        .collect();
    // Every device declared: 0 stays, 1 moves to the next endpoint, 2 is unassigned, 3 is
    // authorized; and 10 MACs UISP does not have.
    let assignments: Vec<(String, Assignment)> = (0..N)
        .map(|i| {
            let a = match i % 4 {
                0 | 3 => to(&format!("Casa {}", i % 100)),
                1 => to(&format!("Casa {}", (i + 1) % 100)),
                _ => Assignment::Unassigned,
            };
            (big_mac(i), a)
        })
        .chain((N..N + 10).map(|i| (big_mac(i), to("Casa 0"))))
        .collect();
    let mut d = pruning(desired(vec![], &assignments));
    d.sites = (0..100)
        .map(|i| SiteSpec {
            kind: SiteKind::Endpoint,
            ..site(&format!("Casa {i}"))
        })
        .collect();
    let l = live(sites, devices);
    let planned = diff_server(S, &d, &l).unwrap();
    let count = |action: Action| {
        planned
            .items
            .iter()
            .filter(|i| i.change.action == action)
            .count()
    };
    assert_eq!(count(Action::Update), 3 * N as usize / 4);
    assert_eq!(count(Action::Create), 0);
    assert_eq!(count(Action::Delete), 1, "the empty owned site");
    assert!(planned.notes[0].starts_with("10 device(s) in the YAML are not in UISP yet"));
    for item in &planned.items {
        if let Op::Authorize { device, site } = &item.op {
            let i: u32 = device["dev".len()..].parse().unwrap();
            assert!(i % 4 == 1 || i % 4 == 3, "{device}");
            let want = if i % 4 == 1 { i + 1 } else { i } % 100;
            assert_eq!(site, &format!("Casa {want}"));
        }
    }

    let key = crate::secret::HashKey::from_bytes([3; 32]);
    let fp = super::super::observe::fingerprints(S, &d, &l, &key);
    assert_eq!(fp.len(), N as usize + 10 + 100 + 1);
    assert_eq!(fp[&device_address(S, &big_mac(N))], "absent");
    assert_ne!(fp[&device_address(S, &big_mac(N - 1))], "absent");

    // Verification of every write, against the same lists: the moves and authorizations are
    // not there yet, the rest are.
    let after = super::super::apply::AfterApply::new(&l.sites, &l.devices);
    let problems = planned
        .items
        .iter()
        .filter(|i| after.problem(&i.op).is_some())
        .count();
    assert_eq!(problems, N as usize / 2 + N as usize / 4 + 1);
}

#[test]
fn a_deep_chain_of_owned_sites_is_settled_round_by_round() {
    const N: usize = 5_000;
    let id = |i: usize| format!("s{i:05}");
    let chain = |n: usize| -> Vec<LiveSite> {
        (0..n)
            .map(|i| {
                let parent = i.checked_sub(1).map(id);
                owned(&id(i), &format!("n{i}"), parent.as_deref())
            })
            .collect()
    };
    let d = pruning(desired(vec![], &[]));
    // The deepest holds a device: every site above it stays, one round per level.
    let mut devices = vec![live_device(1, None)];
    devices[0].authorized = true;
    devices[0].site_id = Some(id(N - 1));
    let (items, notes) = prune(&d, chain(N), devices);
    assert!(items.is_empty(), "{:?}", &items[..3]);
    assert_eq!(notes.len(), N);
    assert!(notes[0].starts_with(&format!(
        "site \"n{}\" is no longer declared but still holds devices",
        N - 1
    )));
    for (k, note) in notes[1..].iter().enumerate() {
        let want = format!(
            "site \"n{}\" is no longer declared but still holds sites that stay: kept until it is empty",
            N - 2 - k
        );
        assert_eq!(note, &want);
    }
    // Empty: all deleted, deepest first.
    let (items, notes) = prune(&d, chain(N), vec![]);
    assert!(notes.is_empty(), "{notes:?}");
    assert_eq!(items.len(), N);
    assert_eq!(items[0], format!("Delete uisp.main.site[\"n{}\"]", N - 1));
    assert_eq!(items[N - 1], "Delete uisp.main.site[\"n0\"]");
}
