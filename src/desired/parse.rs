//! One YAML file to a typed value, with every failure a diagnostic at `file:line:column`.
//!
//! Parsing is the only place that knows the YAML library; the rest of the loader sees a typed
//! value and a [`LocationIndex`] that says where each value sits, for checks that run after
//! deserialising.

use std::path::Path;

use serde::de::DeserializeOwned;

use super::diag::{Diagnostic, error_at};
use super::locate::LocationIndex;

/// Deserialises one file and indexes where its values are. Every failure becomes a
/// diagnostic: a key given twice in one mapping (serde would keep the last silently), then
/// serde_yaml's own error at its place, or the scanner's syntax error when it has one (it is the
/// more precise when a bad indentation turns into a type error).
pub(crate) fn parse<T: DeserializeOwned>(
    path: &Path,
    text: &str,
    diags: &mut Vec<Diagnostic>,
) -> Option<(T, LocationIndex)> {
    if text
        .lines()
        .all(|l| l.trim_start().starts_with('#') || l.trim().is_empty())
    {
        diags.push(error_at(path, 1, 1, "the file is empty".into()));
        return None;
    }
    let index = LocationIndex::build(text);
    if let Ok(ix) = &index
        && !ix.duplicates.is_empty()
    {
        for (key, (line, column), first) in &ix.duplicates {
            diags.push(error_at(
                path,
                *line,
                *column,
                format!("duplicate key {key} (first given at line {first})"),
            ));
        }
        return None;
    }
    match serde_yaml::from_str::<T>(text) {
        Ok(v) => Some((v, index.unwrap_or_default())),
        Err(e) => {
            let libyaml_syntax = [
                "while scanning",
                "while parsing",
                "did not find expected",
                "found unexpected",
                "found character",
                "found a tab",
                "not allowed in this context",
            ]
            .iter()
            .any(|w| e.to_string().contains(w));
            if let (Err(syntax), false) = (&index, libyaml_syntax) {
                diags.push(error_at(
                    path,
                    syntax.line,
                    syntax.column,
                    syntax.message.clone(),
                ));
                return None;
            }
            let (line, column) = e
                .location()
                .map(|l| (l.line(), l.column()))
                .unwrap_or((1, 1));
            let mut msg = e.to_string();
            // serde_yaml repeats the place at the end; keep any other place it gives.
            let suffix = format!(" at line {line} column {column}");
            if msg.ends_with(&suffix) {
                msg.truncate(msg.len() - suffix.len());
            }
            let msg = redact_secret_values(msg);
            diags.push(error_at(path, line, column, msg));
            None
        }
    }
}

/// serde_yaml quotes the offending value in type errors; where the value sits in a secret
/// (a `secret`, `password` or `inline` field), it must not be shown.
fn redact_secret_values(msg: String) -> String {
    let Some((path, _)) = msg.split_once(": ") else {
        return msg;
    };
    let secret_bearing = path
        .split(['.', '['])
        .any(|seg| matches!(seg, "secret" | "password" | "inline"));
    // Only these serde errors quote the value; `unknown field` names a key, which is useful.
    let quotes_value = ["invalid type", "invalid value", "invalid length"]
        .iter()
        .any(|w| msg.contains(w));
    if secret_bearing && quotes_value {
        format!(
            "{path}: not a valid secret reference (the value is not shown): write {{ env: NAME }} or {{ file: PATH }}"
        )
    } else {
        msg
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_values_in_serde_errors_are_redacted() {
        let m = redact_secret_values(
            "chap_secrets[0].secret: invalid type: string \"Hunter2\", expected struct X".into(),
        );
        assert!(!m.contains("Hunter2"), "{m}");
        let m =
            redact_secret_values("routers.r.password.inline: invalid type: integer `1234`".into());
        assert!(!m.contains("1234"), "{m}");
        let m = redact_secret_values("peers[0].mtu: invalid type: string \"big\"".into());
        assert!(m.contains("big"));
    }

}
