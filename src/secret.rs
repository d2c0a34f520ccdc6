//! Secrets: the references that YAML holds, the resolved values that never print, and the
//! keyed hash that lets plans, state files and fingerprints compare secrets without holding them.
//!
//! What this module does not do: decide which fields are secret (the desired model does) or
//! mask rendered text (renderers only ever receive `(sensitive)` markers, never values).

use std::cell::Cell;
use std::collections::HashMap;
use std::ffi::{OsStr, OsString};
use std::fmt;
use std::path::{Path, PathBuf};

use hmac::{Hmac, Mac};
use schemars::JsonSchema;
use serde::de::{self, IgnoredAny, Visitor};
use serde::{Deserialize, Deserializer, Serialize};
use sha2::Sha256;

/// A resolved secret value. `Debug` and `Display` print `(sensitive)`; there is no `Serialize`.
///
/// # Warning
/// [`Secret::expose`] is the only way to the value: call it only where the value is written to
/// its device or hashed, never to build a message.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps a value read from a secret source or from a live device.
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }
    /// The plaintext, for writing to a device or hashing only.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// Stands for a reference this command cannot resolve and was told to leave unresolved
    /// (`plan --snapshot --unresolved-secrets not-compared`): the diffs compare nothing with it
    /// and the plan shows `(sensitive, not compared)`. Its text holds a NUL, which no value read
    /// from a secret source is allowed to (validation refuses control characters), and it is
    /// never written to a device: no target is contacted by such a command.
    pub fn unresolved() -> Self {
        Secret(UNRESOLVED.into())
    }

    /// See [`Secret::unresolved`].
    pub fn is_unresolved(&self) -> bool {
        self.0 == UNRESOLVED
    }
}

const UNRESOLVED: &str = "\0(unresolved)";

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("(sensitive)")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("(sensitive)")
    }
}

/// Where a secret comes from. Written in YAML as `{ env: NAME }`, `{ file: PATH }`, or
/// `{ inline: VALUE }` (refused unless the file sets `allow_inline_secrets: true`).
///
/// Its `Deserialize` never puts the input into an error: a field typed as a reference is where
/// an operator types a password by mistake, so every refusal is a [`SecretRefError`], none of
/// which holds a value (see [`SecretRef::deserialize`]).
#[derive(Clone, PartialEq, Eq)]
pub enum SecretRef {
    /// The value of an environment variable.
    Env(String),
    /// The content of a file (one trailing newline removed); relative paths are resolved
    /// against the folder of the YAML file that names it.
    File(PathBuf),
    /// The value itself, in the YAML file. Discouraged: allowed only where the file says so.
    Inline(String),
}

/// Why a value is not a [`SecretRef`]. No variant holds the value that was refused, and a key
/// is named only when it is a misspelling of `env`, `file` or `inline` (anything else may be
/// the secret itself, as in `{ hunter2 }`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SecretRefError {
    /// A string, number, boolean, sequence or null where a reference belongs.
    #[error(
        "not a valid secret reference (the value is not shown): write {{ env: NAME }} or {{ file: PATH }}"
    )]
    NotAReference,
    /// A key of the reference is not `env`, `file` or `inline`, nor close enough to one of
    /// them to be shown.
    #[error(
        "a secret reference has a key other than env, file or inline (the key is not shown, in case it is the secret itself)"
    )]
    UnknownKeyNotShown,
    /// `env`, `file` or `inline` holds something other than a string.
    #[error("`{key}` of a secret reference takes a string (the value is not shown)")]
    NotAString {
        /// The key whose value was refused.
        key: &'static str,
    },
    /// No key, more than one, or an empty name or path.
    #[error(
        "a secret reference is {{ env: NAME }}, {{ file: PATH }} or {{ inline: VALUE }}: exactly one, not empty"
    )]
    NotExactlyOne,
}

/// `Visitor` methods for scalars that all answer `self.$answer()` without looking at the value
/// (serde's default methods put it in the error).
macro_rules! scalars {
    ($value:ty => $answer:ident: $($method:ident($ty:ty)),+ $(,)?) => {
        $(
            fn $method<E: de::Error>(self, _: $ty) -> Result<$value, E> {
                self.$answer()
            }
        )+
    };
}

/// The keys of a reference, as `unknown field` errors list them.
const SECRET_REF_KEYS: &[&str] = &["env", "file", "inline"];

impl<'de> Deserialize<'de> for SecretRef {
    /// Reads `{ env: NAME }`, `{ file: PATH }` or `{ inline: VALUE }`.
    ///
    /// Whatever else stands there, the error is one of [`SecretRefError`] (or serde's
    /// `unknown field` naming a misspelt key): the input is never quoted. The deserializer's
    /// own refusals (a tag that does not fit, such as `!!int hunter2`) come before any visitor
    /// sees the value and may quote it, so they are replaced by
    /// [`SecretRefError::NotAReference`].
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let reached = Cell::new(false);
        d.deserialize_any(RefVisitor { reached: &reached })
            .map_err(|e| opaque(e, &reached, SecretRefError::NotAReference))
    }
}

/// Keeps an error raised by one of this module's visitors (or below it); replaces one that the
/// deserializer raised before handing the value over, which may quote it.
fn opaque<E: de::Error>(err: E, reached: &Cell<bool>, instead: SecretRefError) -> E {
    if reached.get() {
        err
    } else {
        E::custom(instead)
    }
}

/// Visits the value where a [`SecretRef`] belongs: only a map is one.
struct RefVisitor<'r> {
    /// Set as soon as the deserializer hands over the value.
    reached: &'r Cell<bool>,
}

impl RefVisitor<'_> {
    /// The value is not a map: refused without it.
    fn refuse<T, E: de::Error>(self) -> Result<T, E> {
        self.reached.set(true);
        Err(E::custom(SecretRefError::NotAReference))
    }
}

impl<'de> Visitor<'de> for RefVisitor<'_> {
    type Value = SecretRef;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a secret reference: { env: NAME }, { file: PATH } or { inline: VALUE }")
    }

    // Every kind of value other than a map, each overridden: serde's defaults quote the value.
    scalars! { SecretRef => refuse:
        visit_bool(bool), visit_i64(i64), visit_i128(i128), visit_u64(u64), visit_u128(u128),
        visit_f64(f64), visit_char(char), visit_str(&str), visit_bytes(&[u8]),
    }
    fn visit_none<E: de::Error>(self) -> Result<SecretRef, E> {
        self.refuse()
    }
    fn visit_unit<E: de::Error>(self) -> Result<SecretRef, E> {
        self.refuse()
    }
    fn visit_some<D: Deserializer<'de>>(self, _: D) -> Result<SecretRef, D::Error> {
        self.refuse()
    }
    fn visit_newtype_struct<D: Deserializer<'de>>(self, _: D) -> Result<SecretRef, D::Error> {
        self.refuse()
    }
    fn visit_seq<A: de::SeqAccess<'de>>(self, _: A) -> Result<SecretRef, A::Error> {
        self.refuse()
    }
    fn visit_enum<A: de::EnumAccess<'de>>(self, _: A) -> Result<SecretRef, A::Error> {
        self.refuse()
    }

    fn visit_map<A: de::MapAccess<'de>>(self, mut map: A) -> Result<SecretRef, A::Error> {
        self.reached.set(true);
        let (mut env, mut file, mut inline) = (None, None, None);
        let mut keys = 0usize;
        while let Some(key) = map.next_key_seed(KeySeed)? {
            keys += 1;
            let (slot, name) = match key {
                Key::Env => (&mut env, "env"),
                Key::File => (&mut file, "file"),
                Key::Inline => (&mut inline, "inline"),
                // Refused here rather than while reading the key, where the error's path would
                // end with the key.
                Key::NotShown => {
                    return Err(de::Error::custom(SecretRefError::UnknownKeyNotShown));
                }
            };
            *slot = map.next_value_seed(TextSeed { key: name })?;
        }
        match (keys, env, file, inline) {
            (1, Some(e), None, None) if !e.is_empty() => Ok(SecretRef::Env(e)),
            (1, None, Some(f), None) if !f.is_empty() => Ok(SecretRef::File(f.into())),
            (1, None, None, Some(v)) => Ok(SecretRef::Inline(v)),
            _ => Err(de::Error::custom(SecretRefError::NotExactlyOne)),
        }
    }
}

/// A key of a reference.
enum Key {
    Env,
    File,
    Inline,
    /// Neither a key of a reference nor a misspelling of one.
    NotShown,
}

/// Reads a key of a reference. A misspelt key is refused here, by name; any other key is
/// [`Key::NotShown`], refused by the map's visitor.
struct KeySeed;

impl<'de> de::DeserializeSeed<'de> for KeySeed {
    type Value = Key;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Key, D::Error> {
        let reached = Cell::new(false);
        d.deserialize_any(KeyVisitor { reached: &reached })
            .map_err(|e| opaque(e, &reached, SecretRefError::UnknownKeyNotShown))
    }
}

/// Visits a key of a reference.
struct KeyVisitor<'r> {
    /// Set as soon as the deserializer hands over the key.
    reached: &'r Cell<bool>,
}

impl KeyVisitor<'_> {
    /// A scalar key that is not a string: refused by the map's visitor.
    fn other<E: de::Error>(self) -> Result<Key, E> {
        self.reached.set(true);
        Ok(Key::NotShown)
    }
}

impl<'de> Visitor<'de> for KeyVisitor<'_> {
    type Value = Key;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("env, file or inline")
    }

    fn visit_str<E: de::Error>(self, key: &str) -> Result<Key, E> {
        self.reached.set(true);
        match key {
            "env" => Ok(Key::Env),
            "file" => Ok(Key::File),
            "inline" => Ok(Key::Inline),
            k if misspelt_key(k) => Err(E::unknown_field(k, SECRET_REF_KEYS)),
            _ => Ok(Key::NotShown),
        }
    }

    // A scalar key that is not a string (`{ 12: x }`, `{ ~: x }`).
    scalars! { Key => other:
        visit_bool(bool), visit_i64(i64), visit_i128(i128), visit_u64(u64), visit_u128(u128),
        visit_f64(f64), visit_char(char), visit_bytes(&[u8]),
    }
    fn visit_none<E: de::Error>(self) -> Result<Key, E> {
        self.other()
    }
    fn visit_unit<E: de::Error>(self) -> Result<Key, E> {
        self.other()
    }
    // A key that is a collection (`{ ? [x] : y }`), or wraps a value: skipped, so that the
    // map's visitor refuses it with the path of the reference.
    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Key, D::Error> {
        self.reached.set(true);
        IgnoredAny::deserialize(d)?;
        Ok(Key::NotShown)
    }
    fn visit_newtype_struct<D: Deserializer<'de>>(self, d: D) -> Result<Key, D::Error> {
        self.visit_some(d)
    }
    fn visit_seq<A: de::SeqAccess<'de>>(self, seq: A) -> Result<Key, A::Error> {
        self.reached.set(true);
        IgnoredAny.visit_seq(seq)?;
        Ok(Key::NotShown)
    }
    fn visit_map<A: de::MapAccess<'de>>(self, map: A) -> Result<Key, A::Error> {
        self.reached.set(true);
        IgnoredAny.visit_map(map)?;
        Ok(Key::NotShown)
    }
    fn visit_enum<A: de::EnumAccess<'de>>(self, _: A) -> Result<Key, A::Error> {
        self.reached.set(true);
        Err(de::Error::custom(SecretRefError::UnknownKeyNotShown))
    }
}

/// Whether an unknown key is close enough to `env`, `file` or `inline` (at most two edits,
/// ignoring case) to be a misspelling, and so safe to name: `envv`, `ENV`, `fiel`. Anything
/// further off is not shown.
fn misspelt_key(key: &str) -> bool {
    // Two edits from a six-letter word leave at most eight characters.
    if key.chars().nth(8).is_some() {
        return false;
    }
    let key: Vec<char> = key.to_lowercase().chars().collect();
    SECRET_REF_KEYS.iter().any(|k| {
        let k: Vec<char> = k.chars().collect();
        edit_distance(&key, &k) <= 2
    })
}

/// Levenshtein distance between two short words.
fn edit_distance(a: &[char], b: &[char]) -> usize {
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.iter().enumerate() {
        let mut diagonal = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let substitute = diagonal + usize::from(ca != cb);
            diagonal = row[j + 1];
            row[j + 1] = substitute.min(row[j] + 1).min(row[j + 1] + 1);
        }
    }
    row[b.len()]
}

/// Reads the value of `env`, `file` or `inline`: a string (a plain scalar such as `1234` is
/// read as its text), or null for "not given".
struct TextSeed {
    /// The key the value belongs to, for the error.
    key: &'static str,
}

impl<'de> de::DeserializeSeed<'de> for TextSeed {
    type Value = Option<String>;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Option<String>, D::Error> {
        let reached = Cell::new(false);
        let key = self.key;
        d.deserialize_option(TextVisitor {
            key,
            reached: &reached,
            optional: true,
        })
        .map_err(|e| opaque(e, &reached, SecretRefError::NotAString { key }))
    }
}

/// Visits the value of `env`, `file` or `inline`: first as an option, then (past `Some`) as
/// the string itself.
struct TextVisitor<'r> {
    /// The key the value belongs to, for the error.
    key: &'static str,
    /// Set as soon as the deserializer hands over the value.
    reached: &'r Cell<bool>,
    /// Whether null is "not given" (before `Some`) rather than a value to refuse.
    optional: bool,
}

impl TextVisitor<'_> {
    /// Not a string: refused without it.
    fn refuse<E: de::Error>(self) -> Result<Option<String>, E> {
        self.reached.set(true);
        Err(E::custom(SecretRefError::NotAString { key: self.key }))
    }
    /// The string.
    fn text<E: de::Error>(self, v: &str) -> Result<Option<String>, E> {
        self.reached.set(true);
        Ok(Some(v.to_owned()))
    }
}

impl<'de> Visitor<'de> for TextVisitor<'_> {
    type Value = Option<String>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a string")
    }

    fn visit_none<E: de::Error>(self) -> Result<Option<String>, E> {
        if !self.optional {
            return self.refuse();
        }
        self.reached.set(true);
        Ok(None)
    }
    fn visit_unit<E: de::Error>(self) -> Result<Option<String>, E> {
        self.visit_none()
    }
    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Option<String>, D::Error> {
        if !self.optional {
            return self.refuse();
        }
        self.reached.set(true);
        let reached = Cell::new(false);
        let key = self.key;
        d.deserialize_string(TextVisitor {
            key,
            reached: &reached,
            optional: false,
        })
        .map_err(|e| opaque(e, &reached, SecretRefError::NotAString { key }))
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<Option<String>, E> {
        self.text(v)
    }
    fn visit_string<E: de::Error>(self, v: String) -> Result<Option<String>, E> {
        self.reached.set(true);
        Ok(Some(v))
    }

    fn visit_char<E: de::Error>(self, v: char) -> Result<Option<String>, E> {
        self.text(v.encode_utf8(&mut [0; 4]))
    }
    fn visit_bytes<E: de::Error>(self, v: &[u8]) -> Result<Option<String>, E> {
        match std::str::from_utf8(v) {
            Ok(v) => self.text(v),
            Err(_) => self.refuse(),
        }
    }

    // Anything but a string, each overridden: serde's defaults quote the value.
    scalars! { Option<String> => refuse:
        visit_bool(bool), visit_i64(i64), visit_i128(i128), visit_u64(u64), visit_u128(u128),
        visit_f64(f64),
    }
    fn visit_newtype_struct<D: Deserializer<'de>>(self, _: D) -> Result<Option<String>, D::Error> {
        self.refuse()
    }
    fn visit_seq<A: de::SeqAccess<'de>>(self, _: A) -> Result<Option<String>, A::Error> {
        self.refuse()
    }
    fn visit_map<A: de::MapAccess<'de>>(self, _: A) -> Result<Option<String>, A::Error> {
        self.refuse()
    }
    fn visit_enum<A: de::EnumAccess<'de>>(self, _: A) -> Result<Option<String>, A::Error> {
        self.refuse()
    }
}

impl JsonSchema for SecretRef {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "SecretRef".into()
    }
    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        let one = |key: &str, what: &str| {
            serde_json::json!({
                "type": "object",
                "description": what,
                "properties": { key: { "type": "string", "minLength": 1 } },
                "required": [key],
                "additionalProperties": false
            })
        };
        schemars::json_schema!({
            "description": "Where a secret comes from; never the value itself, unless the file allows inline secrets.",
            "oneOf": [
                one("env", "The value of an environment variable."),
                one("file", "The content of a file, relative to the YAML file's folder."),
                one("inline", "The value itself (needs allow_inline_secrets: true; warned about).")
            ]
        })
    }
}

impl fmt::Debug for SecretRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SecretRef::Env(name) => write!(f, "env:{name}"),
            SecretRef::File(path) => write!(f, "file:{}", path.display()),
            SecretRef::Inline(_) => f.write_str("inline:(sensitive)"),
        }
    }
}

/// Resolves [`SecretRef`]s. In lab mode, environment references that are unset fall back to
/// the lab's own `secrets.env`, so the demo runs with no setup.
///
/// The process environment is read once, at the first `{ env: NAME }` reference, into a map:
/// each reference is then one lookup, however many variables the environment holds (a
/// `getenv` scans the whole environment every time).
#[derive(Clone, Default)]
pub struct SecretResolver {
    fallback_env: HashMap<String, String>,
    /// No target is contacted (a plan from a snapshot): the inventory's connection
    /// credentials may stay unresolved.
    offline: bool,
    /// Every reference that cannot be resolved is left unresolved ([`Secret::unresolved`]).
    not_compared: bool,
    /// The process environment, read once when first needed.
    env: std::sync::OnceLock<HashMap<OsString, OsString>>,
}

impl SecretResolver {
    /// A resolver that reads only the process environment and files.
    pub fn new() -> Self {
        Self::default()
    }

    /// For a command that contacts no target (`plan --snapshot`): a connection credential of
    /// the inventory that cannot be resolved is left unresolved instead of failing
    /// validation ([`SecretResolver::is_offline`]); desired-state secrets are resolved as
    /// always.
    pub fn offline(mut self) -> Self {
        self.offline = true;
        self
    }

    /// See [`SecretResolver::offline`].
    pub fn is_offline(&self) -> bool {
        self.offline
    }

    /// Offline, and every reference that cannot be resolved (a PPPoE password CI does not
    /// hold) is left unresolved: the plan shows those fields as `(sensitive, not compared)`.
    pub fn not_compared(mut self) -> Self {
        self.offline = true;
        self.not_compared = true;
        self
    }

    /// See [`SecretResolver::not_compared`].
    pub fn leaves_unresolved(&self) -> bool {
        self.not_compared
    }

    /// Adds fallback values for environment references (the lab's `secrets.env`).
    pub fn with_fallback_env(mut self, values: HashMap<String, String>) -> Self {
        self.fallback_env.extend(values);
        self
    }

    /// The variable `name` of the process environment, as `std::env::var_os` reads it, from
    /// the map read once. A name holding `=` or NUL, which no map key can equal, is asked of
    /// the environment itself, as before.
    fn env_var(&self, name: &str) -> Option<OsString> {
        if name.contains(['=', '\0']) {
            return std::env::var_os(name);
        }
        self.env
            .get_or_init(|| {
                // A name listed twice: the first, as `getenv` finds it.
                let mut env = HashMap::new();
                for (k, v) in std::env::vars_os() {
                    env.entry(k).or_insert(v);
                }
                env
            })
            .get(OsStr::new(name))
            .cloned()
    }

    /// Resolves one reference. `base` is the folder of the YAML file that holds it. A value
    /// that resolves empty is refused (a variable a failed `. /etc/wispctl.env` left empty, an
    /// empty file): no device is ever sent an empty credential. A file is read only when it
    /// is a regular file of at most [`MAX_SECRET_FILE_BYTES`] (a FIFO or `/dev/zero` named by
    /// a pull request would hang or exhaust the run). Error texts name the reference, never a
    /// value.
    pub fn resolve(&self, reference: &SecretRef, base: &Path) -> Result<Secret, ResolveError> {
        let value = match reference {
            SecretRef::Env(name) => match self.env_var(name) {
                Some(v) => v
                    .into_string()
                    .map_err(|_| ResolveError::EnvNotUtf8(name.clone()))?,
                None => match self.fallback_env.get(name) {
                    Some(v) => v.clone(),
                    None => return Err(ResolveError::EnvNotSet(name.clone())),
                },
            },
            SecretRef::File(path) => {
                let full = base.join(path);
                let file = |reason| ResolveError::File {
                    path: full.clone(),
                    reason,
                };
                let bytes = crate::untrusted::file::read(&full, MAX_SECRET_FILE_BYTES, None)
                    .map_err(file)?;
                let mut text = String::from_utf8(bytes)
                    .map_err(|_| ResolveError::FileNotUtf8(full.clone()))?;
                if text.ends_with('\n') {
                    text.pop();
                    if text.ends_with('\r') {
                        text.pop();
                    }
                }
                text
            }
            SecretRef::Inline(v) => v.clone(),
        };
        if value.is_empty() {
            return Err(ResolveError::Empty(reference.clone()));
        }
        Ok(Secret::new(value))
    }
}

/// The largest secret file read (64 KiB): far above any password, token or connection string.
pub const MAX_SECRET_FILE_BYTES: u64 = 64 * 1024;

/// Why a secret reference did not resolve. Names the reference (a variable, a path), never a
/// value.
#[derive(Debug, thiserror::Error)]
pub enum ResolveError {
    /// `{ env: NAME }` names a variable that is not set.
    #[error("environment variable {0} is not set")]
    EnvNotSet(String),
    /// The variable holds bytes that are not UTF-8.
    #[error("environment variable {0} is not valid UTF-8")]
    EnvNotUtf8(String),
    /// `{ file: PATH }` could not be read, or was refused (not a regular file, too large).
    #[error("cannot read secret file {}: {reason}", path.display())]
    File {
        /// The file, joined to the YAML file's folder.
        path: PathBuf,
        /// Why (its text is part of this message, so it is not also a source).
        reason: crate::untrusted::file::FileError,
    },
    /// The file holds bytes that are not UTF-8.
    #[error("secret file {} is not valid UTF-8", .0.display())]
    FileNotUtf8(PathBuf),
    /// The value is empty.
    #[error("the secret from {0:?} is empty (an unset or failed environment file?)")]
    Empty(SecretRef),
}

/// Parses `KEY=VALUE` lines as `sh` reads them when the file is sourced (`set -a; . FILE`):
/// single quotes, double quotes and backslashes are unquoted; `#` lines and blank lines are
/// skipped. The lab's `secrets.env` and the files `import` writes use this form.
pub fn parse_env_file(text: &str) -> HashMap<String, String> {
    text.lines()
        .filter(|l| !l.trim_start().starts_with('#'))
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.trim().to_string(), shell_unquote(v)))
        .collect()
}

/// Quotes a value for a `KEY=VALUE` line that `sh` sources unchanged.
pub fn shell_quote(value: &str) -> String {
    format!("'{}'", value.replace('\'', "'\\''"))
}

fn shell_unquote(v: &str) -> String {
    let mut out = String::new();
    let mut chars = v.chars();
    while let Some(c) = chars.next() {
        match c {
            '\'' => {
                for c in chars.by_ref() {
                    if c == '\'' {
                        break;
                    }
                    out.push(c);
                }
            }
            '"' => {
                while let Some(c) = chars.next() {
                    match c {
                        '"' => break,
                        '\\' => {
                            if let Some(n) = chars.next() {
                                if !matches!(n, '"' | '\\' | '$' | '`') {
                                    out.push('\\');
                                }
                                out.push(n);
                            }
                        }
                        c => out.push(c),
                    }
                }
            }
            '\\' => {
                if let Some(n) = chars.next() {
                    out.push(n);
                }
            }
            c => out.push(c),
        }
    }
    out
}

/// The key of every keyed hash the tool makes (fingerprints, secret hashes in plans and state).
///
/// Taken from `WISPCTL_HASH_KEY` (64 hex characters) when set, so that CI and the apply host can
/// share one; otherwise from `hash.key` in the state directory, created on first use (0600).
#[derive(Clone)]
pub struct HashKey {
    /// The HMAC state after the key: cloned for each hash, so that the key's two blocks are
    /// hashed once per run instead of once per hash (thousands of fingerprints per router).
    keyed: Hmac<Sha256>,
}

/// One keyed hash being computed ([`HashKey::hasher`]).
pub struct KeyedHasher(Hmac<Sha256>);

impl KeyedHasher {
    /// Adds bytes.
    pub fn update(&mut self, data: &[u8]) {
        self.0.update(data);
    }

    /// The hash, as 32 hex characters.
    pub fn finish(self) -> String {
        hex::encode(&self.0.finalize().into_bytes()[..16])
    }
}

/// A keyed hash could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum HashKeyError {
    /// The environment variable does not hold 32 bytes of hex.
    #[error("WISPCTL_HASH_KEY must be 64 hex characters")]
    BadEnv,
    /// The key file could not be read or created.
    #[error("hash key file {}: {error}", path.display())]
    Io {
        /// The key file.
        path: PathBuf,
        /// What went wrong. Part of the message, so not also its source: a printed chain
        /// would show it twice.
        error: std::io::Error,
    },
}

impl HashKey {
    /// A key from fixed bytes (tests).
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        HashKey {
            keyed: Hmac::<Sha256>::new_from_slice(&bytes).expect("any key length"),
        }
    }

    /// Loads the key from the environment or the state directory, creating it if needed.
    pub fn load_or_create(state_dir: &Path) -> Result<Self, HashKeyError> {
        if let Some(k) = Self::load(state_dir)? {
            return Ok(k);
        }
        let path = state_dir.join("hash.key");
        let io = |error| HashKeyError::Io {
            path: path.clone(),
            error,
        };
        let mut arr = [0u8; 32];
        getrandom::fill(&mut arr).map_err(|e| io(std::io::Error::other(e.to_string())))?;
        std::fs::create_dir_all(state_dir).map_err(io)?;
        crate::files::write_atomic(&path, &arr, 0o600).map_err(io)?;
        Ok(HashKey::from_bytes(arr))
    }

    /// The key for a run that writes nothing (`plan`, `drift`): the environment's or the
    /// state directory's when there is one; otherwise a fresh key kept in memory only, which
    /// is equivalent (nothing was ever hashed under a key that does not exist yet).
    pub fn load_or_ephemeral(state_dir: &Path) -> Result<Self, HashKeyError> {
        if let Some(k) = Self::load(state_dir)? {
            return Ok(k);
        }
        let mut arr = [0u8; 32];
        getrandom::fill(&mut arr).map_err(|e| HashKeyError::Io {
            path: state_dir.join("hash.key"),
            error: std::io::Error::other(e.to_string()),
        })?;
        Ok(HashKey::from_bytes(arr))
    }

    /// The key from `WISPCTL_HASH_KEY` or `STATE_DIR/hash.key`, if either exists.
    pub fn load(state_dir: &Path) -> Result<Option<Self>, HashKeyError> {
        if let Ok(hexkey) = std::env::var("WISPCTL_HASH_KEY") {
            let bytes = hex::decode(hexkey.trim()).map_err(|_| HashKeyError::BadEnv)?;
            let arr: [u8; 32] = bytes.try_into().map_err(|_| HashKeyError::BadEnv)?;
            return Ok(Some(HashKey::from_bytes(arr)));
        }
        let path = state_dir.join("hash.key");
        let io = |error| HashKeyError::Io {
            path: path.clone(),
            error,
        };
        match std::fs::read(&path) {
            Ok(bytes) if bytes.len() == 32 => {
                let mut arr = [0u8; 32];
                arr.copy_from_slice(&bytes);
                Ok(Some(HashKey::from_bytes(arr)))
            }
            Ok(_) => Err(io(std::io::Error::other("expected 32 bytes"))),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(io(e)),
        }
    }

    /// HMAC-SHA256 of `data` under this key, separated by `domain`, as 32 hex characters.
    pub fn digest(&self, domain: &str, data: &[u8]) -> String {
        let mut h = self.hasher(domain);
        h.update(data);
        h.finish()
    }

    /// The same hash as [`HashKey::digest`] of the bytes given to the hasher, one part after
    /// the other, with no buffer for them.
    pub fn hasher(&self, domain: &str) -> KeyedHasher {
        let mut mac = self.keyed.clone();
        mac.update(domain.as_bytes());
        mac.update(&[0]);
        KeyedHasher(mac)
    }

    /// Names the key without revealing it, so a plan made under another key is recognised.
    pub fn id(&self) -> String {
        self.digest("key-id", b"")[..16].to_string()
    }
}

/// A keyed hash of a secret, as kept in plans and state files.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct SecretHash(pub String);

impl SecretHash {
    /// Hashes a secret under the key.
    pub fn of(key: &HashKey, secret: &Secret) -> Self {
        SecretHash(key.digest("secret", secret.expose().as_bytes()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_never_formats_its_value() {
        let s = Secret::new("hunter2");
        assert_eq!(format!("{s} {s:?}"), "(sensitive) (sensitive)");
        let r = SecretRef::Inline("hunter2".into());
        assert!(!format!("{r:?}").contains("hunter2"));
    }

    /// Deserialises a reference from serde's in-memory deserializers (no YAML): the refusals
    /// come from the visitors themselves, whatever the format.
    fn from_value<'de, D>(d: D) -> Result<SecretRef, String>
    where
        D: Deserializer<'de, Error = de::value::Error>,
    {
        SecretRef::deserialize(d).map_err(|e| e.to_string())
    }

    #[test]
    fn a_value_where_a_reference_belongs_is_refused_without_it() {
        use serde::de::IntoDeserializer;
        use serde::de::value::{
            BoolDeserializer, BytesDeserializer, CharDeserializer, F64Deserializer,
            I64Deserializer, I128Deserializer, SeqDeserializer, StrDeserializer, U64Deserializer,
            U128Deserializer, UnitDeserializer,
        };
        let not_a_ref = SecretRefError::NotAReference.to_string();
        let refused = [
            (from_value(StrDeserializer::new("hunter2")), "hunter2"),
            (
                from_value("hunter2".to_string().into_deserializer()),
                "hunter2",
            ),
            (from_value(U64Deserializer::new(1234987)), "1234987"),
            (from_value(I64Deserializer::new(-1234987)), "1234987"),
            (from_value(U128Deserializer::new(1234987)), "1234987"),
            (from_value(I128Deserializer::new(-1234987)), "1234987"),
            (from_value(F64Deserializer::new(1234.987)), "1234"),
            (from_value(BoolDeserializer::new(true)), "true"),
            (from_value(CharDeserializer::new('Z')), "Z"),
            (from_value(BytesDeserializer::new(b"hunter2")), "hunter2"),
            (from_value(UnitDeserializer::new()), "()"),
            (
                from_value(SeqDeserializer::new(["hunter2"].into_iter())),
                "hunter2",
            ),
        ];
        for (result, value) in refused {
            let e = result.unwrap_err();
            assert_eq!(e, not_a_ref);
            assert!(!e.contains(value), "{e}");
        }
    }

    #[test]
    fn map_errors_name_no_value_and_only_misspelt_keys() {
        use serde::de::value::{MapDeserializer, U64Deserializer};
        let map = |entries: &[(&'static str, &'static str)]| {
            from_value(MapDeserializer::new(entries.iter().copied()))
        };
        assert_eq!(map(&[("env", "A")]).unwrap(), SecretRef::Env("A".into()));
        assert_eq!(map(&[("file", "f")]).unwrap(), SecretRef::File("f".into()));
        assert_eq!(
            map(&[("inline", "")]).unwrap(),
            SecretRef::Inline(String::new())
        );
        let exactly_one = SecretRefError::NotExactlyOne.to_string();
        for entries in [
            &[][..],
            &[("env", "")],
            &[("file", "")],
            &[("env", "A"), ("inline", "hunter2")],
            &[("file", "f"), ("env", "hunter2")],
        ] {
            let e = map(entries).unwrap_err();
            assert_eq!(e, exactly_one, "{entries:?}");
        }
        // A misspelt key is named (serde's `unknown field`); its value is not.
        for key in ["envv", "ENV", "fiel", "inlin", "Files"] {
            let e = map(&[(key, "hunter2")]).unwrap_err();
            assert!(e.starts_with(&format!("unknown field `{key}`")), "{e}");
            assert!(!e.contains("hunter2"), "{e}");
        }
        // Any other key may be the secret itself (`{ hunter2 }` is a map in YAML).
        let not_shown = SecretRefError::UnknownKeyNotShown.to_string();
        for key in ["hunter2", "environment", "value", "Zq9x-typed"] {
            let e = map(&[(key, "x")]).unwrap_err();
            assert_eq!(e, not_shown, "{key}");
            let e = map(&[("env", "A"), (key, "x")]).unwrap_err();
            assert_eq!(e, not_shown, "{key}");
        }
        // A key that is not a string, and a value that is not one.
        let e = from_value(MapDeserializer::new([(1234987u64, "x")].into_iter())).unwrap_err();
        assert_eq!(e, not_shown);
        let e = from_value(MapDeserializer::new(
            [("inline", U64Deserializer::<de::value::Error>::new(1234987))].into_iter(),
        ))
        .unwrap_err();
        assert_eq!(
            e,
            "`inline` of a secret reference takes a string (the value is not shown)"
        );
    }

    #[test]
    fn misspellings_are_two_edits_from_a_key() {
        for k in [
            "envv", "en", "ENV", "fle", "flie", "inlien", "nline", "files", "e",
        ] {
            assert!(misspelt_key(k), "{k}");
        }
        for k in [
            "hunter2", "environ", "value", "path", "secret", "1234", "", "ab",
        ] {
            assert!(!misspelt_key(k), "{k}");
        }
        assert!(!misspelt_key(&"e".repeat(10_000)));
    }

    #[test]
    fn json_refusals_do_not_quote_the_value_either() {
        for text in [
            r#""hunter2""#,
            "1234987",
            r#"["hunter2"]"#,
            r#"{"env": ["hunter2"]}"#,
            r#"{"inline": {"x": "hunter2"}}"#,
            r#"{"hunter2": null}"#,
            r#"{"env": "A", "inline": "hunter2"}"#,
        ] {
            let e = serde_json::from_str::<SecretRef>(text)
                .unwrap_err()
                .to_string();
            assert!(
                !e.contains("hunter2") && !e.contains("1234987"),
                "{text}: {e}"
            );
        }
        let r: SecretRef = serde_json::from_str(r#"{"env": "A"}"#).unwrap();
        assert_eq!(r, SecretRef::Env("A".into()));
    }

    #[test]
    fn keyed_hash_depends_on_key_and_value() {
        let a = HashKey::from_bytes([1; 32]);
        let b = HashKey::from_bytes([2; 32]);
        let s = Secret::new("x");
        assert_ne!(SecretHash::of(&a, &s), SecretHash::of(&b, &s));
        assert_ne!(
            SecretHash::of(&a, &s),
            SecretHash::of(&a, &Secret::new("y"))
        );
        assert_ne!(a.id(), b.id());
    }

    #[test]
    fn file_secret_strips_one_newline_and_errors_name_the_file() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("s"), "abc\n\n").unwrap();
        let r = SecretResolver::new();
        let v = r.resolve(&SecretRef::File("s".into()), dir.path()).unwrap();
        assert_eq!(v.expose(), "abc\n");
        let e = r
            .resolve(&SecretRef::File("missing".into()), dir.path())
            .unwrap_err()
            .to_string();
        assert!(e.contains("missing"), "{e}");
    }

    #[test]
    fn an_empty_value_is_refused_from_every_source_naming_the_reference() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("empty"), "").unwrap();
        std::fs::write(dir.path().join("newline"), "\n").unwrap();
        let r = SecretResolver::new().with_fallback_env(HashMap::from([(
            "WISPCTL_TEST_EMPTY_FALLBACK".to_string(),
            String::new(),
        )]));
        for reference in [
            SecretRef::Env("WISPCTL_TEST_EMPTY_FALLBACK".into()),
            SecretRef::File("empty".into()),
            SecretRef::File("newline".into()),
            SecretRef::Inline(String::new()),
        ] {
            let e = r.resolve(&reference, dir.path()).unwrap_err();
            assert!(matches!(e, ResolveError::Empty(_)), "{reference:?}: {e}");
            assert_eq!(
                e.to_string(),
                format!(
                    "the secret from {reference:?} is empty (an unset or failed environment file?)"
                )
            );
        }
    }

    #[test]
    fn a_secret_file_must_be_a_small_regular_file_and_is_never_quoted() {
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("fifo");
        assert!(
            std::process::Command::new("mkfifo")
                .arg(&fifo)
                .status()
                .unwrap()
                .success()
        );
        std::os::unix::fs::symlink("/dev/zero", dir.path().join("zero")).unwrap();
        let big = "Zq9x".repeat(MAX_SECRET_FILE_BYTES as usize);
        std::fs::write(dir.path().join("big"), &big).unwrap();
        let r = SecretResolver::new();
        for (name, want) in [
            ("fifo", "this is a FIFO (named pipe), not a regular file"),
            ("zero", "this is a character device, not a regular file"),
            ("big", "files over 64 KiB are refused"),
        ] {
            let e = r
                .resolve(&SecretRef::File(name.into()), dir.path())
                .unwrap_err()
                .to_string();
            assert!(e.starts_with("cannot read secret file "), "{e}");
            assert!(e.contains(want), "{name}: {e}");
            assert!(!e.contains("Zq9x"), "{e}");
        }
    }

    #[test]
    fn env_file_values_round_trip_through_shell_quoting() {
        for v in ["plain", "it's a \"pw\" $HOME", "back\\slash 'x'", ""] {
            let text = format!("K={}\n", shell_quote(v));
            assert_eq!(parse_env_file(&text)["K"], v, "{text}");
        }
        // What sh makes of the lab's own lines.
        assert_eq!(
            parse_env_file("K='n3w \"clave\" \\ 2026'\n")["K"],
            "n3w \"clave\" \\ 2026"
        );
    }

    #[test]
    fn env_references_read_the_environment_once_and_agree_with_var() {
        // Every variable of this process, through one resolver (one read of the environment).
        let r = SecretResolver::new();
        let mut checked = 0;
        for (name, _) in std::env::vars_os() {
            let Some(name) = name.to_str().filter(|n| !n.is_empty()) else {
                continue;
            };
            let got = r.resolve(&SecretRef::Env(name.into()), Path::new("."));
            match (std::env::var(name), got) {
                (Ok(want), Ok(got)) => assert_eq!(got.expose(), want, "{name}"),
                (Ok(want), Err(ResolveError::Empty(_))) => assert!(want.is_empty(), "{name}"),
                (Err(std::env::VarError::NotUnicode(_)), Err(ResolveError::EnvNotUtf8(n))) => {
                    assert_eq!(n, name);
                }
                // Never the values: the environment may hold real secrets.
                (want, got) => panic!(
                    "{name}: var says {:?}, the resolver {:?}",
                    want.map(|_| ()),
                    got.map(|_| ())
                ),
            }
            checked += 1;
        }
        assert!(checked > 0);
        assert!(r.env.get().is_some());
        // Unset: the fallback, then not set. A name no variable can have is not set either.
        let r = SecretResolver::new().with_fallback_env(HashMap::from([(
            "WISPCTL_TEST_UNSET_VAR_Y".to_string(),
            "v".to_string(),
        )]));
        for (name, want) in [
            ("WISPCTL_TEST_UNSET_VAR_Y", Some("v")),
            ("WISPCTL_TEST_UNSET_VAR_Z", None),
            ("PATH=X", None),
        ] {
            let got = r.resolve(&SecretRef::Env(name.into()), Path::new("."));
            match want {
                Some(v) => assert_eq!(got.unwrap().expose(), v),
                None => assert!(matches!(got, Err(ResolveError::EnvNotSet(n)) if n == name)),
            }
        }
    }

    #[test]
    fn env_falls_back_to_lab_values() {
        let mut m = HashMap::new();
        m.insert("WISPCTL_TEST_UNSET_VAR_X".to_string(), "v".to_string());
        let r = SecretResolver::new().with_fallback_env(m);
        let v = r
            .resolve(
                &SecretRef::Env("WISPCTL_TEST_UNSET_VAR_X".into()),
                Path::new("."),
            )
            .unwrap();
        assert_eq!(v.expose(), "v");
        assert!(
            SecretResolver::new()
                .resolve(
                    &SecretRef::Env("WISPCTL_TEST_UNSET_VAR_X".into()),
                    Path::new(".")
                )
                .is_err()
        );
    }
}
