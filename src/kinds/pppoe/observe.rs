//! Observe: one bulk read per router. One pipelined round trip reads `/ppp/secret`,
//! `/ppp/profile` and `/ppp/active`; values are brought to one form ([`normalise`]) and the
//! read-only `last-*` fields dropped. Also the fingerprint of every secret a plan concerns,
//! which `apply PLAN` compares to refuse a stale plan.
//!
//! Not here: connecting (`client`), what differs (`diff`), what wispctl remembers between
//! runs (`state`).

use std::collections::{BTreeMap, BTreeSet, HashMap};

use routeros_api::client::{ApiError, Command, Connection, Reply, Row};

use super::diff::normalise;
use super::secret_address;
use super::spec::PppoeDesired;
use crate::secret::{HashKey, SecretHash};

/// A secret as read, values normalised.
#[derive(Clone)]
pub struct LiveSecret {
    /// `.id`, sent back exactly as received.
    pub id: String,
    /// Fields by RouterOS name, in name order, `last-*` dropped: a compact [`Row`] (one text
    /// buffer for them all), not a string pair and a tree node per field.
    pub fields: Row,
    /// Fields whose bytes were not UTF-8 (typed in Winbox), decoded as Windows-1252.
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
    /// The user name.
    pub fn name(&self) -> &str {
        self.fields.get("name").unwrap_or("")
    }

    /// The comment as read, tag included.
    pub fn comment(&self) -> &str {
        self.fields.get("comment").unwrap_or("")
    }

    /// Whether the comment carries wispctl's tag.
    pub fn owned(&self) -> bool {
        crate::ownership::is_tagged(self.comment())
    }

    /// The comment without wispctl's tag.
    pub fn comment_text(&self) -> &str {
        crate::ownership::untagged(self.comment())
    }
}

/// A router as read, with what wispctl remembers of it.
pub struct RouterLive {
    /// `/ppp/secret`, in the router's order.
    pub secrets: Vec<LiveSecret>,
    /// Names of `/ppp/profile`.
    pub profiles: BTreeSet<String>,
    /// Active sessions: name -> ids.
    pub active: BTreeMap<String, Vec<String>>,
    /// Whether this API user sees passwords.
    pub passwords_visible: bool,
    /// Keyed hashes of the passwords wispctl last applied, by secret name.
    pub applied: BTreeMap<String, SecretHash>,
    /// Secrets whose kick an earlier apply could not make.
    pub pending_kicks: BTreeSet<String>,
    /// Secrets whose password a snapshot did not keep (not named when it was taken): not
    /// compared. Always empty when read from the router.
    pub unknown_passwords: BTreeSet<String>,
}

/// Reads a router's secrets, profiles and active sessions in one round trip. What wispctl
/// remembers (`applied`, `pending_kicks`) is left empty for the caller.
pub async fn read_router(conn: &mut Connection) -> Result<RouterLive, ApiError> {
    let mut replies = conn
        .run(vec![
            Command::new(["/ppp/secret/print"]),
            Command::new(["/ppp/profile/print", "=.proplist=name"]),
            Command::new(["/ppp/active/print", "=.proplist=.id,name"]),
        ])
        .await?
        .into_iter();
    let mut next = |command: &str| {
        replies
            .next()
            .ok_or_else(|| ApiError::Protocol(format!("no reply to {command}")))?
            .ok(command)
    };
    let secrets = next("/ppp/secret/print")?;
    let profiles = next("/ppp/profile/print")?;
    let active = next("/ppp/active/print")?;
    let (secrets, passwords_visible) = secrets_of(secrets);
    Ok(RouterLive {
        secrets,
        profiles: profiles_of(profiles),
        active: sessions_of(active),
        passwords_visible,
        applied: BTreeMap::new(),
        pending_kicks: BTreeSet::new(),
        unknown_passwords: BTreeSet::new(),
    })
}

/// Reads a router's secrets with one print, for `import`: the secrets, and whether this API
/// user sees passwords.
pub async fn read_secrets(conn: &mut Connection) -> Result<(Vec<LiveSecret>, bool), ApiError> {
    let live = read_router(conn).await?;
    Ok((live.secrets, live.passwords_visible))
}

/// The secrets of a `/ppp/secret/print`, and whether any row shows a password (the API user
/// has the `sensitive` policy).
pub fn secrets_of(reply: Reply) -> (Vec<LiveSecret>, bool) {
    let mut visible = false;
    let not_utf8 = reply
        .not_utf8
        .into_iter()
        .chain(std::iter::repeat_with(BTreeSet::new));
    let secrets = reply
        .rows
        .into_iter()
        .zip(not_utf8)
        .map(|(row, not_utf8)| {
            visible |= row.contains_key("password");
            let id = row.get(".id").unwrap_or_default().to_string();
            let fields = row
                .iter()
                .filter(|(k, _)| !k.starts_with("last-") && !k.starts_with('.'))
                .map(|(k, v)| (k, normalise(k, v)))
                .collect();
            LiveSecret {
                id,
                fields,
                not_utf8,
            }
        })
        .collect();
    (secrets, visible)
}

/// The names of a `/ppp/profile/print`.
fn profiles_of(reply: Reply) -> BTreeSet<String> {
    reply
        .rows
        .into_iter()
        .filter_map(|r| r.get("name").map(str::to_string))
        .collect()
}

/// The session ids of a `/ppp/active/print`, by user name.
pub(super) fn sessions_of(reply: Reply) -> BTreeMap<String, Vec<String>> {
    let mut sessions: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for row in reply.rows {
        if let (Some(n), Some(id)) = (row.get("name"), row.get(".id")) {
            sessions
                .entry(n.to_string())
                .or_default()
                .push(id.to_string());
        }
    }
    sessions
}

/// The keyed hash of one secret: its id, NUL, then `field=value` for every field, separated by
/// NUL.
fn secret_digest(s: &LiveSecret, key: &HashKey) -> String {
    let mut h = key.hasher("pppoe-secret");
    h.update(s.id.as_bytes());
    h.update(b"\0");
    for (i, (k, v)) in s.fields.iter().enumerate() {
        if i > 0 {
            h.update(b"\0");
        }
        h.update(k.as_bytes());
        h.update(b"=");
        h.update(v.as_bytes());
    }
    h.finish()
}

/// The fingerprint of every secret the plan of `router` concerns: each secret the YAML names
/// (`absent` when the router has none), and each secret wispctl owns. A keyed hash of the
/// id and every field, so that a saved plan holds no password.
pub fn fingerprints(
    router: &str,
    desired: &PppoeDesired,
    secrets: &[LiveSecret],
    key: &HashKey,
) -> BTreeMap<String, String> {
    let by_name: HashMap<&str, &LiveSecret> = secrets.iter().map(|s| (s.name(), s)).collect();
    let digest = |s: &LiveSecret| secret_digest(s, key);
    let mut fp = BTreeMap::new();
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
    fp
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kinds::pppoe::spec::{DesiredSecret, Kick};
    use crate::ownership::Prune;

    fn row<T: FromIterator<(String, String)>>(fields: &[(&str, &str)]) -> T {
        fields
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn a_print_is_normalised_and_read_only_fields_dropped() {
        let reply = Reply {
            rows: vec![
                row(&[
                    (".id", "*1"),
                    ("name", "juan"),
                    ("password", "pw"),
                    ("disabled", "yes"),
                    ("caller-id", "aa-bb-cc-dd-ee-ff"),
                    ("last-logged-out", "jan/01/1970 00:00:00"),
                    ("comment", "Tomatlán"),
                ]),
                row(&[(".id", "*2"), ("name", "maria")]),
            ],
            not_utf8: vec![["comment".to_string()].into()],
            ..Reply::default()
        };
        let (secrets, visible) = secrets_of(reply);
        assert!(visible);
        assert_eq!(secrets[0].id, "*1");
        let expected: Row = row(&[
            ("name", "juan"),
            ("password", "pw"),
            ("disabled", "true"),
            ("caller-id", "AA:BB:CC:DD:EE:FF"),
            ("comment", "Tomatlán"),
        ]);
        assert!(secrets[0].fields == expected, "normalised, last-* dropped");
        assert!(secrets[0].not_utf8.contains("comment"));
        assert!(secrets[1].not_utf8.is_empty());
        let (_, visible) = secrets_of(Reply {
            rows: vec![row(&[(".id", "*2"), ("name", "maria")])],
            ..Reply::default()
        });
        assert!(!visible, "no row shows a password");
    }

    #[test]
    fn sessions_are_grouped_by_user() {
        let reply = Reply {
            rows: vec![
                row(&[(".id", "*80000001"), ("name", "juan")]),
                row(&[(".id", "*80000002"), ("name", "juan")]),
                row(&[(".id", "*80000003")]),
            ],
            ..Reply::default()
        };
        let sessions = sessions_of(reply);
        assert_eq!(sessions.len(), 1);
        assert_eq!(sessions["juan"], ["*80000001", "*80000002"]);
    }

    #[test]
    fn a_secret_is_hashed_as_its_id_and_fields_joined() {
        let key = HashKey::from_bytes([7; 32]);
        for fields in [
            vec![],
            vec![("name", "a")],
            vec![("name", "a"), ("profile", "10M")],
        ] {
            let s = LiveSecret {
                id: "*1".into(),
                fields: row(&fields),
                not_utf8: BTreeSet::new(),
            };
            let text: Vec<String> = fields.iter().map(|(k, v)| format!("{k}={v}")).collect();
            let joined = format!("*1\0{}", text.join("\0"));
            assert_eq!(
                secret_digest(&s, &key),
                key.digest("pppoe-secret", joined.as_bytes())
            );
        }
    }

    #[test]
    fn fingerprints_cover_named_and_owned_secrets_and_change_with_any_field() {
        let key = HashKey::from_bytes([9; 32]);
        let desired = PppoeDesired {
            source: "pppoe/r.yaml".into(),
            prune: Prune::None,
            kick: Kick::OnChange,
            kick_rollout: None,
            redial_wait: None,
            allow_empty_prune: false,
            secrets: vec![
                DesiredSecret {
                    name: "juan".into(),
                    password: None,
                    fields: BTreeMap::new(),
                    comment: None,
                },
                DesiredSecret {
                    name: "nueva".into(),
                    password: None,
                    fields: BTreeMap::new(),
                    comment: None,
                },
            ],
        };
        let live = |comment: &str| {
            vec![
                LiveSecret {
                    id: "*1".into(),
                    fields: row(&[("name", "juan"), ("comment", comment)]),
                    not_utf8: BTreeSet::new(),
                },
                LiveSecret {
                    id: "*2".into(),
                    fields: row(&[("name", "retired"), ("comment", "[wispctl]")]),
                    not_utf8: BTreeSet::new(),
                },
                LiveSecret {
                    id: "*3".into(),
                    fields: row(&[("name", "not-ours")]),
                    not_utf8: BTreeSet::new(),
                },
            ]
        };
        let fp = fingerprints("r", &desired, &live("a"), &key);
        let keys: Vec<&str> = fp.keys().map(String::as_str).collect();
        assert_eq!(
            keys,
            [
                r#"pppoe.r.secret["juan"]"#,
                r#"pppoe.r.secret["nueva"]"#,
                r#"pppoe.r.secret["retired"]"#
            ]
        );
        assert_eq!(fp[r#"pppoe.r.secret["nueva"]"#], "absent");
        let again = fingerprints("r", &desired, &live("b"), &key);
        assert_ne!(
            fp[r#"pppoe.r.secret["juan"]"#],
            again[r#"pppoe.r.secret["juan"]"#]
        );
        assert_eq!(
            fp[r#"pppoe.r.secret["retired"]"#],
            again[r#"pppoe.r.secret["retired"]"#]
        );
    }
}
