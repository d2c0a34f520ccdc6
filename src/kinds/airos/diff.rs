//! The diff of one antenna group: pure, small functions over plain values (no I/O, no SSH, no
//! simulator), composed by [`group`].
//!
//! Per antenna, in file order: an antenna that could not be read, or that answers with another
//! MAC than the YAML's, or has no `/tmp/system.cfg`, or needs a persist without
//! `/sbin/cfgmtd`, is an object error (reported, never in the way of the others); one in step
//! is no change ([`Standing::InSync`], a connected device's own key included); any other is an
//! update ([`AntennaChange`]: the fields, the side effects the operator must see, and why).
//! Half-done work is such an update too: a persisted copy out of step, a bridge that is not
//! running or runs the old connection (see [`super::antenna`]).
//!
//! There are no creates and no deletes: every change updates an antenna the YAML lists. An
//! antenna dropped from the YAML is no longer looked at (nothing to prune), so the empty-list
//! guard's input (`desired_counts`) never refuses this kind.

use std::collections::BTreeMap;

use super::antenna::{self, AntennaError, Assessment, BridgeIssue, Flash, Live};
use super::commands;
use super::config::ConnectionString;
use super::observe::{GroupLive, UispView};
use super::spec::Antenna;
use crate::engine::{Item, Planned};
use crate::kinds::def::KindDef;
use crate::plan::{Action, Change, FieldDiff, Impact, quote_key};
use crate::secret::{HashKey, SecretHash};

/// Apply one antenna: its position in the group's file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Op(pub usize);

/// The address of one antenna: `airos.GROUP["HOST"]`.
pub fn address(group: &str, host: &str) -> String {
    format!("{}.{group}[{}]", super::Kind::NAME, quote_key(host))
}

/// What UISP says about one antenna.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Seen {
    /// No UISP server is asked.
    NotAsked,
    /// Listed and connected.
    Connected,
    /// Listed, not connected.
    NotConnected,
    /// Not listed by its MAC nor by its address.
    Unknown,
}

/// What UISP says about `antenna`, whose board reports `board_mac`: looked up by the YAML's
/// MAC and the board's, or by its address when neither is known (an address can be reused by
/// another device, a MAC cannot).
pub fn seen(view: Option<&UispView>, antenna: &Antenna, board_mac: Option<&str>) -> Seen {
    let Some(v) = view else {
        return Seen::NotAsked;
    };
    let macs: Vec<&str> = [antenna.mac.as_deref(), board_mac]
        .into_iter()
        .flatten()
        .collect();
    let found = if macs.is_empty() {
        v.by_ip(&antenna.host)
    } else {
        macs.iter().find_map(|m| v.by_mac(m))
    };
    match found {
        Some(true) => Seen::Connected,
        Some(false) => Seen::NotConnected,
        None => Seen::Unknown,
    }
}

/// How one readable antenna stands.
#[derive(Debug, Clone, PartialEq)]
pub enum Standing {
    /// Nothing to change. `excused`: it carries its own device-specific key and UISP shows it
    /// connected.
    InSync {
        /// The key differs and is excused.
        excused: bool,
    },
    /// It must be rewritten.
    Change(AntennaChange),
}

/// The update one antenna needs, as the plan shows it.
#[derive(Debug, Clone, PartialEq)]
pub struct AntennaChange {
    /// `uri` (masked, before and after) and, when the key differs, `key` (sensitive).
    pub fields: Vec<FieldDiff>,
    /// What applying it does to the device and the customer.
    pub side_effects: Vec<String>,
    /// What is out of step, per file.
    pub reason: String,
    /// Whose antenna, and whether the update restarts its bridge (its UISP link drops).
    pub impact: Impact,
}

/// How one antenna that was read stands against `desired`. `seen` is what UISP says of it
/// (`uisp` names the server asked). Errors: another device answers (its MAC is not the
/// YAML's, or it reports none while the YAML names one), it has no `/tmp/system.cfg`, or the
/// change needs a persist and `/sbin/cfgmtd` is not there.
pub fn antenna(
    a: &Antenna,
    live: &Live,
    desired: &ConnectionString,
    seen: Seen,
    uisp: Option<&str>,
) -> Result<Standing, AntennaError> {
    antenna::check_identity(&a.host, live, a.mac.as_deref())?;
    let verdict = antenna::assess(live, desired, seen == Seen::Connected).ok_or_else(|| {
        AntennaError::NoSystemCfg {
            host: a.host.clone(),
        }
    })?;
    if verdict.in_sync() {
        return Ok(Standing::InSync {
            excused: verdict.key_excused,
        });
    }
    if verdict.steps().persist && !live.cfgmtd {
        return Err(AntennaError::NoCfgmtd {
            host: a.host.clone(),
        });
    }
    Ok(Standing::Change(AntennaChange {
        fields: fields(&verdict, desired),
        side_effects: side_effects(a.name.as_deref(), &verdict),
        reason: reason(&verdict, seen, uisp),
        impact: Impact {
            customer: Some(a.name.clone().unwrap_or_else(|| a.host.clone())),
            antenna_restarts: usize::from(verdict.steps().restart),
            ..Impact::default()
        },
    }))
}

/// The fields of an update: the URI (masked) of the first file out of step (running.cfg can be
/// the only one: what udapi-bridge really uses), else of the persisted copy, and the desired
/// one; `udapi-bridge` when only the bridge is out of step; and `key`, sensitive, whenever a
/// key other than the master key is replaced (also an excused one: the rewrite replaces it).
pub fn fields(verdict: &Assessment, desired: &ConnectionString) -> Vec<FieldDiff> {
    let out_of_step = verdict
        .files
        .iter()
        .chain(&verdict.flash)
        .find(|f| !f.reasons.is_empty());
    let mut fields = match (out_of_step, verdict.bridge) {
        (None, Some(issue)) => {
            let before = match issue {
                BridgeIssue::NotRunning => "not running",
                BridgeIssue::Stale => "running the old connection",
            };
            vec![FieldDiff::plain(
                "udapi-bridge",
                Some(before.into()),
                Some("running the current files".into()),
            )]
        }
        (f, _) => vec![FieldDiff::plain(
            "uri",
            f.and_then(|f| f.live_masked.clone()),
            Some(desired.masked()),
        )],
    };
    if verdict.key_differs {
        fields.push(FieldDiff::sensitive("key"));
    }
    fields
}

/// What applying the update does, step by step ([`Assessment::steps`]): the files rewritten,
/// persisted, the bridge restarted (the device reconnects), preceded by whose antenna it is
/// when the YAML names it.
pub fn side_effects(name: Option<&str>, verdict: &Assessment) -> Vec<String> {
    let steps = verdict.steps();
    let files: Vec<&str> = [(steps.system, "system.cfg"), (steps.running, "running.cfg")]
        .into_iter()
        .filter_map(|(on, f)| on.then_some(f))
        .collect();
    let mut side_effects = Vec::new();
    if let Some(n) = name {
        side_effects.push(format!("antenna of {n}"));
    }
    if !files.is_empty() {
        side_effects.push(format!(
            "rewrites the unms.* lines of {}",
            files.join(" and ")
        ));
    }
    if steps.persist {
        side_effects.push(format!("persists to flash ({})", commands::PERSIST));
    }
    if steps.restart {
        side_effects.push(if verdict.bridge == Some(BridgeIssue::NotRunning) {
            "waits for udapi-bridge's supervisor to start it: the device reconnects to UISP"
                .to_string()
        } else {
            "restarts udapi-bridge: the device reconnects to UISP".to_string()
        });
    }
    side_effects
}

/// Why the antenna is updated: what is out of step per file; and, when only its key differs
/// and UISP lists it nowhere, that UISP was asked.
pub fn reason(verdict: &Assessment, seen: Seen, uisp: Option<&str>) -> String {
    let mut reason = verdict.describe();
    if seen == Seen::Unknown && verdict.only_key_differs() {
        // Not listed at all, so not connected: a device that connects, even with a
        // device-specific key, is listed. Said, since a device UISP lists under another MAC or
        // address would be re-keyed (harmless: the master key is accepted).
        reason.push_str(&format!(
            " (UISP {} lists no device with this MAC or address)",
            uisp.unwrap_or_default()
        ));
    }
    reason
}

/// What the notes of a group count, over the antennas that were assessed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Tally {
    /// In sync with their own key, UISP showing them connected.
    pub excused: usize,
    /// Without `/tmp/running.cfg`.
    pub no_running: usize,
    /// Updates planned.
    pub changes: usize,
    /// Without an executable `/sbin/cfgmtd` (their flash copy is not read).
    pub no_cfgmtd: usize,
    /// Whose flash copy `cfgmtd` could not read (not compared).
    pub flash_unreadable: usize,
}

/// The notes of a group's plan. `asked_uisp`: a UISP server says which devices are connected.
pub fn notes(tally: Tally, asked_uisp: bool, desired: &ConnectionString) -> Vec<String> {
    let mut notes = Vec::new();
    if tally.excused > 0 {
        notes.push(format!(
            "{} antenna(s) carry their own device-specific key and UISP shows them connected: in sync",
            tally.excused
        ));
    }
    if !asked_uisp && tally.changes > 0 {
        notes.push("no UISP server is asked which antennas are connected (connected_in): only the master key counts as in sync".into());
    }
    notes.extend(desired.warnings());
    if tally.no_running > 0 {
        notes.push(format!(
            "{} antenna(s) have no /tmp/running.cfg: udapi-bridge reads system.cfg there (a past fix may have deleted running.cfg)",
            tally.no_running
        ));
    }
    if tally.no_cfgmtd > 0 {
        notes.push(format!(
            "{} antenna(s) have no executable {}: their persisted copy is not compared, and a change to their system.cfg could not be persisted",
            tally.no_cfgmtd,
            commands::CFGMTD
        ));
    }
    if tally.flash_unreadable > 0 {
        notes.push(format!(
            "{} antenna(s): `{}` failed, so their persisted copy is not compared",
            tally.flash_unreadable,
            commands::READ_FLASH
        ));
    }
    notes
}

/// The whole diff of group `target`: `antennas` are the YAML's, `live` what observe read of
/// them (in the same order). Pure: `key` only hashes the desired connection string for the
/// stale-plan check.
pub fn group(target: &str, antennas: &[Antenna], live: &GroupLive, key: &HashKey) -> Planned<Op> {
    let mut items = Vec::new();
    let mut object_errors = BTreeMap::new();
    let mut tally = Tally::default();
    let uisp = live.connected.as_ref();
    for (i, (a, read)) in antennas.iter().zip(&live.antennas).enumerate() {
        let addr = address(target, &a.host);
        let l = match read {
            Ok(l) => l,
            Err(e) => {
                object_errors.insert(addr, e.to_string());
                continue;
            }
        };
        let s = seen(uisp, a, l.board.hwaddr.as_deref());
        let standing = match antenna(a, l, &live.desired, s, uisp.map(|v| v.name.as_str())) {
            Ok(x) => x,
            Err(e) => {
                object_errors.insert(addr, e.to_string());
                continue;
            }
        };
        tally.no_running += usize::from(l.files.get(commands::RUNNING_CFG).is_none());
        tally.no_cfgmtd += usize::from(!l.cfgmtd);
        tally.flash_unreadable += usize::from(matches!(l.flash, Flash::Unreadable { .. }));
        match standing {
            Standing::InSync { excused } => tally.excused += usize::from(excused),
            Standing::Change(c) => {
                tally.changes += 1;
                items.push(Item {
                    change: Change {
                        impact: c.impact,
                        address: addr,
                        action: Action::Update,
                        reason: Some(c.reason),
                        fields: c.fields,
                        content: None,
                        side_effects: c.side_effects,
                    },
                    collection: "antenna",
                    op: Op(i),
                });
            }
        }
    }
    Planned {
        items,
        notes: notes(tally, uisp.is_some(), &live.desired),
        secret_hashes: BTreeMap::from([(
            format!("{}.{target}.connection", super::Kind::NAME),
            live.desired_hash
                .clone()
                .unwrap_or_else(|| SecretHash::of(key, &live.desired.to_secret_string())),
        )]),
        desired_counts: BTreeMap::from([("antenna", antennas.len())]),
        allow_empty_prune: false,
        object_errors,
        not_compared: Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::time::Duration;

    use crate::kinds::airos::commands::{
        BOARD_INFO, RUNNING_CFG, SYSTEM_CFG, VERSION, render_read,
    };
    use crate::kinds::airos::login::LoginError;
    use crate::ssh::SshError;

    const KEY: &str = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUV";
    const OWN_KEY: &str = "deviceSpecificKey0042";
    const MAC: &str = "F0:9F:C2:11:22:33";
    /// `ps` with one bridge.
    const PS: &str =
        "  PID USER       VSZ STAT COMMAND\n  812 ubnt      9240 S    {exe} /bin/udapi-bridge\n";

    fn uri(host: &str, key: &str) -> String {
        format!("wss://{host}:443+{key}+allowSelfSignedCertificate")
    }

    fn desired() -> ConnectionString {
        ConnectionString::parse(&uri("uisp.new.example", KEY)).unwrap()
    }

    /// A configuration file with these `unms.*` lines among others.
    fn cfg(unms: &str) -> String {
        format!("aaa.status=enabled\n{unms}users.1.password=$1$hash\nwireless.1.ssid=x\n")
    }

    /// `unms.status=enabled` and `unms.uri=URI`.
    fn on(uri: &str) -> String {
        cfg(&format!("unms.status=enabled\nunms.uri={uri}\n"))
    }

    fn read(system: Option<&str>, running: Option<&str>, version: &str, mac: Option<&str>) -> Live {
        let board = match mac {
            Some(m) => format!("board.name=LiteBeam M5\nboard.hwaddr={m}\n"),
            None => "board.name=LiteBeam M5\n".to_string(),
        };
        let out = render_read(
            &[
                (SYSTEM_CFG, system.map(str::as_bytes)),
                (RUNNING_CFG, running.map(str::as_bytes)),
                (BOARD_INFO, Some(board.as_bytes())),
                (VERSION, Some(version.as_bytes())),
            ],
            true,
            PS,
        );
        Live::new(commands::parse_read(&out).unwrap())
    }

    /// An airOS 6 antenna with a MAC, carrying `system` and `running`.
    fn live(system: &str, running: Option<&str>) -> Live {
        read(Some(system), running, "XW.v6.2.0", Some("F09FC2112233"))
    }

    fn ant(host: &str) -> Antenna {
        Antenna {
            host: host.into(),
            port: None,
            mac: None,
            name: None,
        }
    }

    fn group_live(
        antennas: Vec<Result<Live, AntennaError>>,
        connected: Option<UispView>,
    ) -> GroupLive {
        GroupLive {
            desired: desired(),
            connected,
            antennas,
            credentials: BTreeMap::new(),
            trusted: Vec::new(),
            desired_hash: None,
        }
    }

    fn key() -> HashKey {
        HashKey::from_bytes([7; 32])
    }

    fn change(s: Standing) -> AntennaChange {
        match s {
            Standing::Change(c) => c,
            other => panic!("expected a change, got {other:?}"),
        }
    }

    fn standing(l: &Live) -> Standing {
        antenna(&ant("10.0.0.1"), l, &desired(), Seen::NotAsked, None).unwrap()
    }

    fn unreachable(host: &str) -> AntennaError {
        AntennaError::Login(LoginError::Antenna {
            group: "g".into(),
            source: Arc::new(SshError::Timeout {
                host: format!("{host}:22"),
                during: "connecting".into(),
                after: Duration::from_secs(10),
            }),
        })
    }

    #[test]
    fn uisp_is_asked_by_mac_and_by_address_only_when_no_mac_is_known() {
        let mut v = UispView::new("main");
        v.list(MAC, Some("10.0.0.1"), true);
        v.list("00:11:22:33:44:55", Some("10.0.0.2"), false);
        let mut a = ant("10.0.0.2");
        assert_eq!(seen(None, &a, Some(MAC)), Seen::NotAsked);
        // The board's MAC.
        assert_eq!(seen(Some(&v), &a, Some(MAC)), Seen::Connected);
        // No MAC known at all: by address.
        assert_eq!(seen(Some(&v), &a, None), Seen::NotConnected);
        assert_eq!(seen(Some(&v), &ant("10.0.0.9"), None), Seen::Unknown);
        // A MAC is known and UISP does not list it: never by address (it can be reused).
        a.mac = Some("AA:BB:CC:DD:EE:FF".into());
        assert_eq!(seen(Some(&v), &a, None), Seen::Unknown);
        // The YAML's MAC first, then the board's.
        assert_eq!(seen(Some(&v), &a, Some(MAC)), Seen::Connected);
        a.mac = Some("00:11:22:33:44:55".into());
        assert_eq!(seen(Some(&v), &a, Some(MAC)), Seen::NotConnected);
    }

    #[test]
    fn an_antenna_without_the_connection_string_is_a_change() {
        let c = change(standing(&live(&cfg(""), None)));
        assert_eq!(
            c.reason,
            "system.cfg: no unms.uri; unms.status is not enabled"
        );
        assert_eq!(
            c.fields,
            vec![FieldDiff::plain(
                "uri",
                None,
                Some("wss://uisp.new.example:443+(key)+allowSelfSignedCertificate".into())
            )]
        );
        assert_eq!(
            c.side_effects,
            vec![
                "rewrites the unms.* lines of system.cfg".to_string(),
                "persists to flash (/sbin/cfgmtd -w -p /etc/)".into(),
                "restarts udapi-bridge: the device reconnects to UISP".into(),
            ]
        );
    }

    #[test]
    fn an_old_host_in_either_file_is_a_change_of_that_file() {
        let (good, old) = (uri("uisp.new.example", KEY), uri("uisp.old.example", KEY));
        // running.cfg only: the field's trap (what udapi-bridge really reads).
        let c = change(standing(&live(&on(&good), Some(&on(&old)))));
        assert_eq!(
            c.reason,
            "running.cfg: host: uisp.old.example -> uisp.new.example"
        );
        assert_eq!(
            c.fields[0].before.as_deref(),
            Some("wss://uisp.old.example:443+(key)+allowSelfSignedCertificate")
        );
        assert_eq!(c.fields.len(), 1, "same key: no key field");
        assert_eq!(
            c.side_effects,
            vec![
                "rewrites the unms.* lines of running.cfg".to_string(),
                "restarts udapi-bridge: the device reconnects to UISP".into(),
            ],
            "running.cfg is not persisted"
        );
        // system.cfg only.
        let c = change(standing(&live(&on(&old), Some(&on(&good)))));
        assert_eq!(c.side_effects[0], "rewrites the unms.* lines of system.cfg");
        // Both, and an old key too: the key is a sensitive field, never shown.
        let older = uri("uisp.old.example", OWN_KEY);
        let c = change(standing(&live(&on(&older), Some(&on(&older)))));
        assert_eq!(
            c.side_effects[0],
            "rewrites the unms.* lines of system.cfg and running.cfg"
        );
        assert_eq!(c.fields[1], FieldDiff::sensitive("key"));
        assert!(
            c.reason.starts_with(
                "system.cfg: host: uisp.old.example -> uisp.new.example; key: (sensitive)"
            ),
            "{}",
            c.reason
        );
        let shown = format!("{c:?}");
        assert!(!shown.contains(OWN_KEY) && !shown.contains(KEY), "{shown}");
    }

    #[test]
    fn duplicates_a_disabled_status_and_airos8s_copy_are_changes() {
        let good = uri("uisp.new.example", KEY);
        let twice = cfg(&format!(
            "unms.status=enabled\nunms.uri={good}\nunms.uri={good}\n"
        ));
        let c = change(standing(&live(&twice, None)));
        assert_eq!(c.reason, "system.cfg: unms.uri written 2 times");
        let off = cfg(&format!("unms.status=disabled\nunms.uri={good}\n"));
        let c = change(standing(&live(&off, None)));
        assert_eq!(c.reason, "system.cfg: unms.status is not enabled");
        // airOS 8 keeps unms.uri.changed: an old copy, or none, is a change.
        let v8 = |unms: &str| read(Some(&cfg(unms)), None, "WA.v8.7.11", Some("F09FC2112233"));
        let stale = format!(
            "unms.status=enabled\nunms.uri={good}\nunms.uri.changed={}\n",
            uri("uisp.old.example", KEY)
        );
        let c = change(standing(&v8(&stale)));
        assert_eq!(c.reason, "system.cfg: unms.uri.changed differs");
        let missing = format!("unms.status=enabled\nunms.uri={good}\n");
        let c = change(standing(&v8(&missing)));
        assert_eq!(c.reason, "system.cfg: no unms.uri.changed (airOS 8)");
        let right = format!("{missing}unms.uri.changed={good}\n");
        assert_eq!(standing(&v8(&right)), Standing::InSync { excused: false });
    }

    #[test]
    fn a_connected_devices_own_key_is_in_sync_and_only_then() {
        let own = on(&uri("uisp.new.example", OWN_KEY));
        let l = live(&own, Some(&own));
        let a = ant("10.0.0.1");
        let d = desired();
        assert_eq!(
            antenna(&a, &l, &d, Seen::Connected, Some("main")).unwrap(),
            Standing::InSync { excused: true }
        );
        // Listed but not connected: its key is re-written, said without showing it.
        let c = change(antenna(&a, &l, &d, Seen::NotConnected, Some("main")).unwrap());
        assert!(
            c.reason
                .contains("key: (sensitive) differs and the device is not connected in UISP"),
            "{}",
            c.reason
        );
        assert_eq!(c.fields[1], FieldDiff::sensitive("key"));
        // Not listed at all: the plan says UISP was asked.
        let c = change(antenna(&a, &l, &d, Seen::Unknown, Some("main")).unwrap());
        assert!(
            c.reason
                .ends_with(" (UISP main lists no device with this MAC or address)"),
            "{}",
            c.reason
        );
        // The master key needs nobody's word.
        let master = on(&uri("uisp.new.example", KEY));
        let l = live(&master, Some(&master));
        for s in [
            Seen::NotAsked,
            Seen::Unknown,
            Seen::NotConnected,
            Seen::Connected,
        ] {
            assert_eq!(
                antenna(&a, &l, &d, s, Some("main")).unwrap(),
                Standing::InSync { excused: false },
                "{s:?}"
            );
        }
    }

    #[test]
    fn another_device_at_the_address_is_an_object_error_not_a_change() {
        let l = live(&cfg(""), None);
        let mut a = ant("10.0.0.1");
        a.mac = Some("00:11:22:33:44:55".into());
        let e = antenna(&a, &l, &desired(), Seen::NotAsked, None).unwrap_err();
        assert_eq!(
            e.to_string(),
            "10.0.0.1: answers with MAC F0:9F:C2:11:22:33, expected 00:11:22:33:44:55; not touched"
        );
        // A MAC expected and the board says none: not touched either.
        let nomac = read(Some(&cfg("")), None, "XW.v6.2.0", None);
        assert!(matches!(
            antenna(&a, &nomac, &desired(), Seen::NotAsked, None),
            Err(AntennaError::NoMac { .. })
        ));
        // The right MAC: a change as usual.
        a.mac = Some(MAC.into());
        assert!(matches!(
            antenna(&a, &l, &desired(), Seen::NotAsked, None),
            Ok(Standing::Change(_))
        ));
        // No system.cfg: not an airOS device this tool knows.
        let bare = read(None, None, "XW.v6.2.0", Some("F09FC2112233"));
        assert!(matches!(
            antenna(&ant("h"), &bare, &desired(), Seen::NotAsked, None),
            Err(AntennaError::NoSystemCfg { .. })
        ));
    }

    #[test]
    fn side_effects_name_the_customer_and_notes_count_what_was_assessed() {
        let verdict = antenna::assess(&live(&cfg(""), None), &desired(), false).unwrap();
        assert_eq!(
            side_effects(Some("Juan Perez"), &verdict)[0],
            "antenna of Juan Perez"
        );
        assert_eq!(side_effects(None, &verdict).len(), 3);
        assert_eq!(side_effects(Some("Juan Perez"), &verdict).len(), 4);
        let d = desired();
        assert!(notes(Tally::default(), false, &d).is_empty());
        assert!(notes(Tally::default(), true, &d).is_empty());
        let n = notes(
            Tally {
                excused: 2,
                no_running: 1,
                changes: 3,
                ..Tally::default()
            },
            false,
            &d,
        );
        assert_eq!(n.len(), 3, "{n:?}");
        assert!(n[0].starts_with("2 antenna(s) carry their own device-specific key"));
        assert!(n[1].starts_with("no UISP server is asked which antennas are connected"));
        assert!(n[2].starts_with("1 antenna(s) have no /tmp/running.cfg"));
        // Asked, or nothing to change: nothing to say about UISP.
        let tally = Tally {
            changes: 1,
            ..Tally::default()
        };
        assert!(notes(tally, true, &d).is_empty());
        // An unknown flag in the desired string is said.
        let odd =
            ConnectionString::parse(&format!("{}+someNewFlag", uri("u.example", KEY))).unwrap();
        assert_eq!(notes(Tally::default(), true, &odd).len(), 1);
    }

    #[test]
    fn a_group_plans_one_update_per_antenna_out_of_step_and_unread_ones_are_object_errors() {
        let (good, old) = (uri("uisp.new.example", KEY), uri("uisp.old.example", KEY));
        let mut named = ant("10.0.0.2");
        named.name = Some("Juan".into());
        let antennas = vec![ant("10.0.0.1"), named, ant("10.0.0.3"), ant("10.0.0.4")];
        let live = group_live(
            vec![
                Ok(live(&on(&old), Some(&on(&old)))),
                Ok(live(&on(&good), None)),
                Err(unreachable("10.0.0.3")),
                Ok(live(&on(&old), Some(&on(&good)))),
            ],
            None,
        );
        let p = group("g", &antennas, &live, &key());
        let addrs: Vec<&str> = p.items.iter().map(|i| i.change.address.as_str()).collect();
        assert_eq!(
            addrs,
            vec![r#"airos.g["10.0.0.1"]"#, r#"airos.g["10.0.0.4"]"#]
        );
        assert_eq!(
            p.items.iter().map(|i| i.op).collect::<Vec<_>>(),
            vec![Op(0), Op(3)]
        );
        assert!(p.items.iter().all(|i| i.change.action == Action::Update));
        assert!(p.items.iter().all(|i| i.collection == "antenna"));
        // The unreachable antenna is an object error; the others are planned as usual.
        assert_eq!(
            p.object_errors.keys().collect::<Vec<_>>(),
            vec![r#"airos.g["10.0.0.3"]"#]
        );
        assert_eq!(
            p.object_errors[r#"airos.g["10.0.0.3"]"#],
            "10.0.0.3:22: timed out after 10s while connecting"
        );
        // The empty-list guard's input: what the YAML lists.
        assert_eq!(p.desired_counts, BTreeMap::from([("antenna", 4)]));
        assert!(!p.allow_empty_prune);
        assert_eq!(
            p.notes,
            vec![
                "no UISP server is asked which antennas are connected (connected_in): only the master key counts as in sync".to_string(),
                "1 antenna(s) have no /tmp/running.cfg: udapi-bridge reads system.cfg there (a past fix may have deleted running.cfg)".into(),
            ]
        );
        // The desired string is kept as a keyed hash only.
        let hash = &p.secret_hashes["airos.g.connection"];
        assert_eq!(*hash, SecretHash::of(&key(), &desired().to_secret_string()));
        let shown = format!(
            "{:?} {:?} {:?}",
            p.items.iter().map(|i| &i.change).collect::<Vec<_>>(),
            p.notes,
            p.object_errors
        );
        assert!(!shown.contains(KEY), "{shown}");
    }

    #[test]
    fn an_antenna_dropped_from_the_yaml_yields_no_change_and_nothing_is_ever_deleted() {
        // Observe reads only what the YAML lists: an antenna dropped from it is not in the
        // observation and gets no change at all (its connection string stays as it is).
        let old = uri("uisp.old.example", KEY);
        let live = group_live(vec![Ok(live(&on(&old), None))], None);
        let p = group("g", &[ant("10.0.0.1")], &live, &key());
        assert_eq!(p.items.len(), 1);
        assert!(p.items.iter().all(|i| i.change.action == Action::Update));
        // An empty list (refused by validation) plans nothing, and deletes nothing.
        let empty = group("g", &[], &group_live(Vec::new(), None), &key());
        assert!(empty.items.is_empty() && empty.object_errors.is_empty());
        assert_eq!(empty.desired_counts, BTreeMap::from([("antenna", 0)]));
    }

    #[test]
    fn a_group_with_uisp_excuses_connected_keys_and_says_so() {
        let own = on(&uri("uisp.new.example", OWN_KEY));
        let mut view = UispView::new("main");
        view.list(MAC, None, true);
        let mut other = ant("10.0.0.2");
        other.mac = Some("00:11:22:33:44:55".into());
        let live = group_live(
            vec![
                Ok(live(&own, Some(&own))),
                Ok(read(Some(&own), None, "XW.v6.2.0", Some("001122334455"))),
            ],
            Some(view),
        );
        let p = group("g", &[ant("10.0.0.1"), other], &live, &key());
        assert_eq!(p.items.len(), 1);
        assert!(
            p.items[0]
                .change
                .reason
                .as_deref()
                .unwrap()
                .ends_with("(UISP main lists no device with this MAC or address)")
        );
        assert_eq!(p.notes.len(), 2, "{:?}", p.notes);
        assert!(p.notes[0].starts_with("1 antenna(s) carry their own device-specific key and UISP shows them connected: in sync"));
        assert!(!format!("{:?}", p.items[0].change).contains(OWN_KEY));
    }

    #[test]
    fn half_done_work_is_planned_with_its_reason_and_only_the_steps_left() {
        let (good, old) = (uri("uisp.new.example", KEY), uri("uisp.old.example", KEY));
        // A persist that failed: files right, flash old.
        let mut l = live(&on(&good), Some(&on(&good)));
        l.flash = Flash::Read(on(&old).into_bytes());
        let c = change(standing(&l));
        assert_eq!(
            c.reason,
            "persisted copy (flash) differs: host: uisp.old.example -> uisp.new.example"
        );
        assert_eq!(
            c.fields,
            vec![FieldDiff::plain(
                "uri",
                Some("wss://uisp.old.example:443+(key)+allowSelfSignedCertificate".into()),
                Some("wss://uisp.new.example:443+(key)+allowSelfSignedCertificate".into())
            )]
        );
        assert_eq!(
            c.side_effects,
            vec!["persists to flash (/sbin/cfgmtd -w -p /etc/)".to_string()]
        );
        // A bridge that never came back.
        let mut l = live(&on(&good), Some(&on(&good)));
        l.bridge = antenna::Bridge::NotRunning;
        let c = change(standing(&l));
        assert_eq!(c.reason, "udapi-bridge is not running");
        assert_eq!(
            c.fields,
            vec![FieldDiff::plain(
                "udapi-bridge",
                Some("not running".into()),
                Some("running the current files".into())
            )]
        );
        assert_eq!(
            c.side_effects,
            vec![
                "waits for udapi-bridge's supervisor to start it: the device reconnects to UISP"
                    .to_string()
            ]
        );
        // A bridge started before the last write (the mark at tick 900).
        let mark = commands::render_stat(950, "cat", 949, 900);
        let out = render_read(
            &[
                (SYSTEM_CFG, Some(on(&good).as_bytes())),
                (commands::CHANGED_MARK, Some(mark.as_bytes())),
            ],
            true,
            PS,
        );
        let mut l = Live::new(commands::parse_read(&out).unwrap());
        l.bridge = antenna::Bridge::Running {
            pid: 812,
            started: Some(10),
        };
        let c = change(standing(&l));
        assert_eq!(
            c.reason,
            "udapi-bridge runs the old connection (it started before wispctl last rewrote the files)"
        );
        assert_eq!(
            c.side_effects,
            vec!["restarts udapi-bridge: the device reconnects to UISP".to_string()]
        );
    }

    #[test]
    fn a_change_that_needs_a_persist_without_cfgmtd_is_an_object_error() {
        let (good, old) = (uri("uisp.new.example", KEY), uri("uisp.old.example", KEY));
        let mut l = live(&on(&old), Some(&on(&old)));
        l.cfgmtd = false;
        let e = antenna(&ant("10.0.0.1"), &l, &desired(), Seen::NotAsked, None).unwrap_err();
        assert_eq!(
            e.to_string(),
            "10.0.0.1: /sbin/cfgmtd is missing or not executable, so the change could not be persisted to flash; not touched"
        );
        // running.cfg only, or the bridge only: no persist, so no need of cfgmtd.
        let mut l = live(&on(&good), Some(&on(&old)));
        l.cfgmtd = false;
        assert!(matches!(standing(&l), Standing::Change(_)));
        // In step: nothing to do, and the group says its flash copy is not compared.
        let mut l = live(&on(&good), Some(&on(&good)));
        l.cfgmtd = false;
        let mut unreadable = live(&on(&good), None);
        unreadable.flash = Flash::Unreadable { status: 1 };
        let mut missing = live(&on(&old), None);
        missing.cfgmtd = false;
        let p = group(
            "g",
            &[ant("10.0.0.1"), ant("10.0.0.2"), ant("10.0.0.3")],
            &group_live(vec![Ok(l), Ok(unreadable), Ok(missing)], None),
            &key(),
        );
        assert!(p.items.is_empty());
        assert_eq!(
            p.object_errors.keys().collect::<Vec<_>>(),
            vec![r#"airos.g["10.0.0.3"]"#]
        );
        assert!(
            p.notes.contains(&"1 antenna(s) have no executable /sbin/cfgmtd: their persisted copy is not compared, and a change to their system.cfg could not be persisted".to_string()),
            "{:?}",
            p.notes
        );
        assert!(
            p.notes.contains(&"1 antenna(s): `/sbin/cfgmtd -r -f /proc/self/fd/1` failed, so their persisted copy is not compared".to_string()),
            "{:?}",
            p.notes
        );
    }
}
