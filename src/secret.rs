//! Secrets: the references that YAML holds, the resolved values that never print, and the
//! keyed hash that lets plans, state files and fingerprints compare secrets without holding them.
//!
//! What this module does not do: decide which fields are secret (the desired model does) or
//! mask rendered text (renderers only ever receive `(sensitive)` markers, never values).

use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};

use hmac::{Hmac, Mac};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
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
}

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
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(try_from = "SecretRefYaml")]
pub enum SecretRef {
    /// The value of an environment variable.
    Env(String),
    /// The content of a file (one trailing newline removed); relative paths are resolved
    /// against the folder of the YAML file that names it.
    File(PathBuf),
    /// The value itself, in the YAML file. Discouraged: allowed only where the file says so.
    Inline(String),
}

/// The written form: a map with exactly one key.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SecretRefYaml {
    env: Option<String>,
    file: Option<PathBuf>,
    inline: Option<String>,
}

impl TryFrom<SecretRefYaml> for SecretRef {
    type Error = &'static str;
    fn try_from(y: SecretRefYaml) -> Result<Self, Self::Error> {
        match (y.env, y.file, y.inline) {
            (Some(e), None, None) if !e.is_empty() => Ok(SecretRef::Env(e)),
            (None, Some(f), None) if !f.as_os_str().is_empty() => Ok(SecretRef::File(f)),
            (None, None, Some(v)) => Ok(SecretRef::Inline(v)),
            _ => Err(
                "a secret reference is { env: NAME }, { file: PATH } or { inline: VALUE }: exactly one, not empty",
            ),
        }
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
#[derive(Clone, Default)]
pub struct SecretResolver {
    fallback_env: HashMap<String, String>,
}

impl SecretResolver {
    /// A resolver that reads only the process environment and files.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds fallback values for environment references (the lab's `secrets.env`).
    pub fn with_fallback_env(mut self, values: HashMap<String, String>) -> Self {
        self.fallback_env.extend(values);
        self
    }

    /// Resolves one reference. `base` is the folder of the YAML file that holds it.
    /// Error texts name the reference, never a value.
    pub fn resolve(&self, reference: &SecretRef, base: &Path) -> Result<Secret, String> {
        match reference {
            SecretRef::Env(name) => match std::env::var(name) {
                Ok(v) => Ok(Secret::new(v)),
                Err(std::env::VarError::NotUnicode(_)) => {
                    Err(format!("environment variable {name} is not valid UTF-8"))
                }
                Err(std::env::VarError::NotPresent) => match self.fallback_env.get(name) {
                    Some(v) => Ok(Secret::new(v.clone())),
                    None => Err(format!("environment variable {name} is not set")),
                },
            },
            SecretRef::File(path) => {
                let full = base.join(path);
                let mut text = std::fs::read_to_string(&full)
                    .map_err(|e| format!("cannot read secret file {}: {e}", full.display()))?;
                if text.ends_with('\n') {
                    text.pop();
                    if text.ends_with('\r') {
                        text.pop();
                    }
                }
                Ok(Secret::new(text))
            }
            SecretRef::Inline(v) => Ok(Secret::new(v.clone())),
        }
    }
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
pub struct HashKey([u8; 32]);

/// A keyed hash could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum HashKeyError {
    /// The environment variable does not hold 32 bytes of hex.
    #[error("WISPCTL_HASH_KEY must be 64 hex characters")]
    BadEnv,
    /// The key file could not be read or created.
    #[error("hash key file {path}: {source}")]
    Io {
        /// The key file.
        path: PathBuf,
        /// What went wrong.
        source: std::io::Error,
    },
}

impl HashKey {
    /// A key from fixed bytes (tests).
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        HashKey(bytes)
    }

    /// Loads the key from the environment or the state directory, creating it if needed.
    pub fn load_or_create(state_dir: &Path) -> Result<Self, HashKeyError> {
        if let Some(k) = Self::load(state_dir)? {
            return Ok(k);
        }
        let path = state_dir.join("hash.key");
        let io = |source| HashKeyError::Io {
            path: path.clone(),
            source,
        };
        let mut arr = [0u8; 32];
        getrandom::fill(&mut arr).map_err(|e| io(std::io::Error::other(e.to_string())))?;
        std::fs::create_dir_all(state_dir).map_err(io)?;
        crate::files::write_atomic(&path, &arr, 0o600).map_err(io)?;
        Ok(HashKey(arr))
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
            source: std::io::Error::other(e.to_string()),
        })?;
        Ok(HashKey(arr))
    }

    /// The key from `WISPCTL_HASH_KEY` or `STATE_DIR/hash.key`, if either exists.
    pub fn load(state_dir: &Path) -> Result<Option<Self>, HashKeyError> {
        if let Ok(hexkey) = std::env::var("WISPCTL_HASH_KEY") {
            let bytes = hex::decode(hexkey.trim()).map_err(|_| HashKeyError::BadEnv)?;
            let arr: [u8; 32] = bytes.try_into().map_err(|_| HashKeyError::BadEnv)?;
            return Ok(Some(HashKey(arr)));
        }
        let path = state_dir.join("hash.key");
        let io = |source| HashKeyError::Io {
            path: path.clone(),
            source,
        };
        match std::fs::read(&path) {
            Ok(bytes) if bytes.len() == 32 => {
                let mut arr = [0u8; 32];
                arr.copy_from_slice(&bytes);
                Ok(Some(HashKey(arr)))
            }
            Ok(_) => Err(io(std::io::Error::other("expected 32 bytes"))),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(io(e)),
        }
    }

    /// HMAC-SHA256 of `data` under this key, separated by `domain`, as 32 hex characters.
    pub fn digest(&self, domain: &str, data: &[u8]) -> String {
        let mut mac = Hmac::<Sha256>::new_from_slice(&self.0).expect("any key length");
        mac.update(domain.as_bytes());
        mac.update(&[0]);
        mac.update(data);
        hex::encode(&mac.finalize().into_bytes()[..16])
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
            .unwrap_err();
        assert!(e.contains("missing"), "{e}");
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
