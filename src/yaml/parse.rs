//! One YAML file to a typed value, with every failure a diagnostic at `file:line:column`.
//!
//! This module and the location index ([`super::locate`], on the same parser library) are the
//! only places that know YAML; the rest of the loader sees a typed value and a
//! [`LocationIndex`] that says where each value sits, for checks that run after deserialising. A valid file is parsed once: the index reads the text again only
//! when something must be placed.
//!
//! A file comes from a pull request, so it is hostile input: it is refused over
//! `MAX_FILE_BYTES`, and the parser runs under a [`serde_saphyr::Budget`] (nesting depth,
//! nodes, aliases) so that no file can exhaust memory or the stack.

use std::borrow::Cow;
use std::path::Path;

use serde::de::{DeserializeOwned, Unexpected};
use serde_path_to_error::Segment;
use serde_saphyr::budget::BudgetBreach;
use serde_saphyr::{DefaultMessageFormatter, Error as YamlError, ExternalMessageSource};
use serde_saphyr::{Location, MessageFormatter};

use super::diag::{Diagnostic, error_at};
use super::locate::{LocationIndex, MAX_DEPTH, Node, SyntaxError};

/// The largest file parsed (16 MiB): far above any real desired-state file.
pub(crate) const MAX_FILE_BYTES: usize = 16 * 1024 * 1024;
/// The most nodes (mappings, sequences, scalars) in a file: about 120,000 PPPoE secrets.
const MAX_NODES: usize = 2_000_000;
/// The most parser events in a file (nodes, their ends, and the document's frame).
const MAX_EVENTS: usize = 4_000_000;
/// The most aliases (`*name`) and anchors (`&name`) in a file.
const MAX_ALIASES: usize = 10_000;
/// The most events that aliases may replay in total (what an alias bomb multiplies).
const MAX_REPLAYED_EVENTS: usize = 1_000_000;
/// The most events that anchors may keep for their aliases (copies into nested anchors count).
const MAX_ANCHORED_EVENTS: usize = 100_000;
/// A file holds one YAML document.
const SECOND_DOCUMENT: &str = "a second YAML document (`---`): a file holds one";
/// A file whose top is not a mapping.
const NOT_A_MAPPING: &str = "the file is not a mapping of fields";
/// The longest value quoted in a message.
const MAX_QUOTED_CHARS: usize = 60;

/// Deserialises one file. Every failure becomes a diagnostic: a file too large or empty, the
/// parser's syntax error at its place, a key given twice in one mapping (at the second key,
/// naming the first), a breached limit, or serde's error with the path of the value
/// (`peers[0].mtu: ...`) at its place. The scanner's syntax error beats a type error (it is the
/// more precise when a bad indentation turns into a missing field).
pub(crate) fn parse<'t, T: DeserializeOwned>(
    path: &Path,
    text: &'t str,
    diags: &mut Vec<Diagnostic>,
) -> Option<(T, LocationIndex<'t>)> {
    if text.len() > MAX_FILE_BYTES {
        diags.push(error_at(
            path,
            1,
            1,
            format!(
                "the file is {} bytes; files over {} MiB are refused",
                text.len(),
                MAX_FILE_BYTES >> 20
            ),
        ));
        return None;
    }
    if text
        .lines()
        .all(|l| l.trim_start().starts_with('#') || l.trim().is_empty())
    {
        diags.push(error_at(path, 1, 1, "the file is empty".into()));
        return None;
    }
    // The path of a serde error; the closure must fail with the bare error (an `Ok(Err(..))`
    // would go on to the single-document check).
    let mut at: Option<Vec<Segment>> = None;
    let parsed = serde_saphyr::with_deserializer_from_str_with_options(text, options(), |de| {
        serde_path_to_error::deserialize::<_, T>(de).map_err(|e| {
            at = Some(e.path().iter().cloned().collect());
            e.into_inner()
        })
    });
    match parsed {
        Ok(value) => Some((value, LocationIndex::new(text))),
        Err(e) => {
            report(path, text, &e, at.unwrap_or_default(), diags);
            None
        }
    }
}

/// The parser's settings: duplicate keys refused (the default), YAML 1.2 booleans, no snippets
/// (a diagnostic is one line), and the limits against hostile files. Merge keys (`<<: *base`)
/// are expanded (the default; serde_yaml refused them as an unknown field).
fn options() -> serde_saphyr::Options {
    serde_saphyr::options! {
        budget: serde_saphyr::budget! {
            max_depth: MAX_DEPTH,
            flow_nesting_limit: MAX_DEPTH,
            max_nodes: MAX_NODES,
            max_events: MAX_EVENTS,
            max_aliases: MAX_ALIASES,
            max_anchors: MAX_ALIASES,
            max_recorded_anchor_events: MAX_ANCHORED_EVENTS,
            max_recorded_anchor_bytes: MAX_FILE_BYTES,
            max_merge_keys: MAX_ALIASES,
            max_total_scalar_bytes: MAX_FILE_BYTES,
            max_documents: 1,
        },
        alias_limits: serde_saphyr::alias_limits! {
            max_total_replayed_events: MAX_REPLAYED_EVENTS,
            max_replay_stack_depth: MAX_DEPTH,
        },
        // YAML 1.2 booleans only, as serde_yaml read them: `yes`/`no`/`on`/`off` are refused
        // for a boolean (and stay strings elsewhere).
        strict_booleans: true,
        with_snippet: false,
    }
}

/// Turns the parser's error into diagnostics.
fn report(file: &Path, text: &str, err: &YamlError, at: Vec<Segment>, diags: &mut Vec<Diagnostic>) {
    let (line, column) = err.location().map_or((1, 1), place);
    let inner = original(err);
    let mut push = |line, column, message| diags.push(error_at(file, line, column, message));
    match inner {
        YamlError::ExternalMessage { source, .. } => {
            if let ExternalMessageSource::Parser(scan) = source.as_ref() {
                let syntax = SyntaxError::from_scan(text, scan);
                push(syntax.line, syntax.column, syntax.message);
            } else {
                push(line, column, message(inner).into_owned());
            }
            return;
        }
        YamlError::Budget { breach, .. } => {
            push(line, column, budget_message(breach));
            return;
        }
        YamlError::AliasReplayLimitExceeded { .. }
        | YamlError::AliasExpansionLimitExceeded { .. }
        | YamlError::AliasReplayStackDepthExceeded { .. }
        | YamlError::AliasReplayCounterOverflow { .. } => {
            push(
                line,
                column,
                format!(
                    "refused: aliases expand to more than {MAX_REPLAYED_EVENTS} values or nest deeper than {MAX_DEPTH} (a limit against hostile input)"
                ),
            );
            return;
        }
        YamlError::MultipleDocuments { .. } => {
            push(line, column, SECOND_DOCUMENT.into());
            return;
        }
        _ => {}
    }

    // A type error or a duplicate key: the second pass finds a syntax error further on (which
    // beats it), every duplicate key, and what stands where a type was expected.
    let index = LocationIndex::new(text);
    if let Some(syntax) = index.syntax_error() {
        push(syntax.line, syntax.column, syntax.message.clone());
        return;
    }
    // Every file is a mapping of fields. One that is not is no resource file (an env file,
    // `/etc/shadow`, a note): what it holds is not quoted, since it may be anything.
    if let Some(root) = index.node("").filter(|p| p.node != Node::Map) {
        let holds = match root.node {
            Node::Seq => "a sequence",
            Node::Scalar | Node::Alias | Node::Map => "a single value",
        };
        push(
            root.line,
            root.column,
            format!(
                "{NOT_A_MAPPING} (it holds {holds}): is it a YAML resource file? Its content is not shown"
            ),
        );
        return;
    }
    if let YamlError::DuplicateMappingKey { key, .. } = inner {
        if index.duplicates().is_empty() {
            // Keys equal only as numbers (`0x0B` and `11`), which the index compares as text.
            let key = key.as_deref().unwrap_or("?");
            push(line, column, format!("duplicate key {key}"));
        }
        for (key, (line, column), first) in index.duplicates() {
            push(
                *line,
                *column,
                format!("duplicate key {key} (first given at line {first})"),
            );
        }
        return;
    }

    let mut at = at;
    let (mut line, mut column) = (line, column);
    let msg = match inner {
        YamlError::SerdeUnknownField {
            field, expected, ..
        } => {
            // The path ends at the unknown key; the message names the mapping that holds it.
            if matches!(at.last(), Some(Segment::Map { key }) if key == field)
                || matches!(at.last(), Some(Segment::Unknown))
            {
                at.pop();
            }
            match name_like(field) {
                Some(field) => format!("unknown field `{field}`, {}", one_of(expected, "fields")),
                None => format!(
                    "unknown field (not shown: it is no field name; is this a YAML resource file?), {}",
                    one_of(expected, "fields")
                ),
            }
        }
        YamlError::SerdeUnknownVariant {
            variant, expected, ..
        } => match name_like(variant) {
            Some(variant) => format!(
                "unknown variant `{variant}`, {}",
                one_of(expected, "variants")
            ),
            None => format!(
                "unknown variant (not shown: it is no variant name), {}",
                one_of(expected, "variants")
            ),
        },
        YamlError::SerdeMissingField { .. } => {
            // At the mapping that lacks it, not at its end.
            if let Some(place) = index.node(&path_text(&at)) {
                (line, column) = (place.line, place.column);
            }
            message(inner).into_owned()
        }
        YamlError::InvalidScalar { ty, location } => {
            invalid_type(scalar(text, *location), &expected_scalar(ty))
        }
        YamlError::InvalidBooleanStrict { location } => {
            invalid_type(scalar(text, *location), "a boolean")
        }
        YamlError::Unexpected { expected, location } => {
            let expected = match *expected {
                "sequence start" => "a sequence",
                "mapping start" => "a map",
                "string scalar" => "a string",
                other => other,
            };
            let found = index
                .node(&path_text(&at))
                .filter(|p| (p.line, p.column) == place(*location))
                .map(|p| match p.node {
                    Node::Map => Unexpected::Map,
                    Node::Seq => Unexpected::Seq,
                    Node::Scalar | Node::Alias => scalar(text, *location),
                });
            match found {
                Some(found) => invalid_type(found, expected),
                None => format!("expected {expected}"),
            }
        }
        other => message(other).into_owned(),
    };
    let path = path_text(&at);
    if err.location().is_none_or(|l| l.line() == 0) {
        // A custom error without a place: at the value it is about.
        (line, column) = index.find(&path);
    }
    let msg = match path {
        p if p.is_empty() => msg,
        p => format!("{p}: {msg}"),
    };
    push(line, column, msg);
}

/// A key or variant as written, when it looks like one (a short word of letters, digits, `_`,
/// `-` and `.`) and so is safe to quote. Anything else is not shown: in a file that is not
/// YAML at all, a "key" may be a line of `/etc/shadow` (`root:$6$...:::` parses as one).
fn name_like(word: &str) -> Option<&str> {
    let ok = !word.is_empty()
        && word.len() <= 64
        && word
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'));
    ok.then_some(word)
}

/// The error itself, out of its alias and snippet wrappers (the outer one keeps the place).
fn original(mut err: &YamlError) -> &YamlError {
    while let YamlError::AliasError { error, .. } | YamlError::WithSnippet { error, .. } = err {
        err = error;
    }
    err
}

/// A location as 1-based line and column; the top of the file when unknown.
fn place(loc: Location) -> (usize, usize) {
    match (usize::try_from(loc.line()), usize::try_from(loc.column())) {
        (Ok(line), Ok(column)) if line > 0 && column > 0 => (line, column),
        _ => (1, 1),
    }
}

/// The parser's message, without a place.
fn message(err: &YamlError) -> Cow<'_, str> {
    DefaultMessageFormatter.format_message(err)
}

/// A breached limit, for the operator.
fn budget_message(breach: &BudgetBreach) -> String {
    let what = match breach {
        BudgetBreach::Depth { .. } => {
            format!("mappings and sequences nest deeper than {MAX_DEPTH}")
        }
        BudgetBreach::Nodes { .. } => format!("more than {MAX_NODES} values"),
        BudgetBreach::Events { .. } => format!("more than {MAX_EVENTS} parser events"),
        BudgetBreach::Aliases { .. } => format!("more than {MAX_ALIASES} aliases"),
        BudgetBreach::Anchors { .. } => format!("more than {MAX_ALIASES} anchors"),
        BudgetBreach::AliasAnchorRatio { aliases, anchors } => {
            format!("{aliases} aliases of only {anchors} anchors")
        }
        BudgetBreach::RecordedAnchorEvents { .. } => {
            format!("anchors hold more than {MAX_ANCHORED_EVENTS} values for their aliases")
        }
        BudgetBreach::RecordedAnchorBytes { .. } => format!(
            "anchors hold more than {} MiB for their aliases",
            MAX_FILE_BYTES >> 20
        ),
        BudgetBreach::MergeKeys { .. } => format!("more than {MAX_ALIASES} merge keys (`<<`)"),
        BudgetBreach::ScalarBytes { .. } => {
            format!("more than {} MiB of values", MAX_FILE_BYTES >> 20)
        }
        BudgetBreach::Documents { .. } => return SECOND_DOCUMENT.into(),
        other => format!("{other:?}"),
    };
    format!("refused: {what} (a limit against hostile input)")
}

/// serde's wording: `invalid type: string "big", expected u16`.
fn invalid_type(found: Unexpected<'_>, expected: &str) -> String {
    format!("invalid type: {found}, expected {expected}")
}

/// What a scalar type is called in serde's messages.
fn expected_scalar(ty: &str) -> Cow<'_, str> {
    match ty {
        "boolean" | "bool" => "a boolean".into(),
        "char" => "a character".into(),
        "string" | "str" => "a string".into(),
        t if t.starts_with(['u', 'i', 'f']) && t[1..].chars().all(|c| c.is_ascii_digit()) => {
            t.into()
        }
        t => format!("a {t}").into(),
    }
}

/// What the scalar at `loc` is, as serde names it: plain scalars resolve as YAML's core
/// schema does (`-1` is an integer, `~` the unit value), quoted ones are strings.
fn scalar(text: &str, loc: Location) -> Unexpected<'_> {
    let span = loc.span();
    let raw = span
        .byte_offset()
        .zip(span.byte_len())
        .and_then(|(o, l)| {
            let (o, l) = (usize::try_from(o).ok()?, usize::try_from(l).ok()?);
            text.get(o..o.checked_add(l)?)
        })
        .unwrap_or_default();
    let quoted = |q: char| raw.len() >= 2 && raw.starts_with(q) && raw.ends_with(q);
    if quoted('"') || quoted('\'') {
        return Unexpected::Str(shorten(&raw[1..raw.len() - 1]));
    }
    if raw.starts_with(['|', '>']) {
        return Unexpected::Str(shorten(raw));
    }
    match raw {
        "" | "~" | "null" | "Null" | "NULL" => return Unexpected::Unit,
        "true" | "True" | "TRUE" => return Unexpected::Bool(true),
        "false" | "False" | "FALSE" => return Unexpected::Bool(false),
        ".inf" | ".Inf" | ".INF" | "+.inf" | "+.Inf" | "+.INF" => {
            return Unexpected::Float(f64::INFINITY);
        }
        "-.inf" | "-.Inf" | "-.INF" => return Unexpected::Float(f64::NEG_INFINITY),
        ".nan" | ".NaN" | ".NAN" => return Unexpected::Float(f64::NAN),
        _ => {}
    }
    if let Ok(n) = raw.parse::<u64>() {
        return Unexpected::Unsigned(n);
    }
    if let Ok(n) = raw.parse::<i64>() {
        return Unexpected::Signed(n);
    }
    let radix = |prefix: &str, radix| {
        raw.strip_prefix(prefix)
            .and_then(|d| u64::from_str_radix(d, radix).ok())
    };
    if let Some(n) = radix("0x", 16).or_else(|| radix("0o", 8)) {
        return Unexpected::Unsigned(n);
    }
    let numeric = raw
        .chars()
        .all(|c| c.is_ascii_digit() || matches!(c, '.' | 'e' | 'E' | '+' | '-'));
    if numeric && let Ok(f) = raw.parse::<f64>() {
        return Unexpected::Float(f);
    }
    Unexpected::Str(shorten(raw))
}

/// A value cut to [`MAX_QUOTED_CHARS`] characters for a message.
fn shorten(s: &str) -> &str {
    match s.char_indices().nth(MAX_QUOTED_CHARS) {
        Some((i, _)) => &s[..i],
        None => s,
    }
}

/// serde's list of what would have been accepted: "expected `a` or `b`".
fn one_of(names: &[&str], what: &str) -> String {
    let quoted: Vec<String> = names.iter().map(|n| format!("`{n}`")).collect();
    match quoted.as_slice() {
        [] => format!("there are no {what}"),
        [one] => format!("expected {one}"),
        [a, b] => format!("expected {a} or {b}"),
        all => format!("expected one of {}", all.join(", ")),
    }
}

/// A serde path as the index writes it: `peers[0].mtu`, empty at the top.
fn path_text(at: &[Segment]) -> String {
    let mut out = String::new();
    for seg in at {
        match seg {
            Segment::Seq { index } => out.push_str(&format!("[{index}]")),
            Segment::Map { key } | Segment::Enum { variant: key } => {
                if !out.is_empty() {
                    out.push('.');
                }
                out.push_str(key);
            }
            Segment::Unknown => {
                if !out.is_empty() {
                    out.push('.');
                }
                out.push('?');
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use serde::Deserialize;

    use super::*;
    use crate::secret::SecretRef;

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct File {
        host: String,
        #[serde(default)]
        peers: Vec<Peer>,
        #[serde(default)]
        secrets: Vec<Entry>,
        #[serde(default)]
        nested: Option<serde_json::Value>,
        #[serde(default)]
        on: Option<bool>,
    }

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Peer {
        name: String,
        mtu: Option<u16>,
    }

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Entry {
        name: String,
        password: Option<SecretRef>,
        /// A secret whose name says nothing of secrets: only the type protects it.
        token: Option<SecretRef>,
    }

    /// The one diagnostic of a file that does not parse, as `line:column: message`.
    fn error_of(text: &str) -> String {
        let mut diags = Vec::new();
        let parsed = parse::<File>(Path::new("f.yaml"), text, &mut diags);
        assert!(parsed.is_none(), "{text:?} parsed");
        assert_eq!(diags.len(), 1, "{diags:?}");
        format!(
            "{}:{}: {}",
            diags[0].line, diags[0].column, diags[0].message
        )
    }

    #[test]
    fn a_valid_file_parses_and_places_values() {
        let mut diags = Vec::new();
        let text = "host: vps\npeers:\n  - name: a\n    mtu: 1400\n";
        let (file, index) = parse::<File>(Path::new("f.yaml"), text, &mut diags).unwrap();
        assert!(diags.is_empty());
        assert_eq!(file.peers[0].mtu, Some(1400));
        assert_eq!(index.find("peers[0].mtu"), (4, 10));
    }

    #[test]
    fn a_valid_folder_is_parsed_once() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        std::fs::create_dir(root.join("pppd")).unwrap();
        std::fs::write(
            root.join("inventory.yaml"),
            "hosts:\n  vps:\n    root: host-root\n",
        )
        .unwrap();
        std::fs::write(
            root.join("pppd/vps.yaml"),
            "host: vps\n\
             peers:\n  - name: node-1\n    server: 198.51.100.20\n    user: tecnico\n\
             chap_secrets:\n  - client: tecnico\n    server: node-1\n    secret: { env: CHAP_X }\n",
        )
        .unwrap();
        let resolver = crate::secret::SecretResolver::new()
            .with_fallback_env([("CHAP_X".to_string(), "s".to_string())].into());
        let before = crate::yaml::locate::FULL_BUILDS.with(|n| n.get());
        let state = crate::desired::load(root, &resolver).unwrap();
        assert!(state.warnings.is_empty(), "{:?}", state.warnings);
        let builds = crate::yaml::locate::FULL_BUILDS.with(|n| n.get()) - before;
        assert_eq!(builds, 0, "no file needed its location index");
    }

    #[test]
    fn type_errors_keep_serdes_wording_and_path() {
        let e = error_of("host: vps\npeers:\n  - name: a\n    mtu: \"big\"\n");
        assert_eq!(
            e,
            "4:10: peers[0].mtu: invalid type: string \"big\", expected u16"
        );
        let e = error_of("host: vps\npeers:\n  - name: a\n    mtu: -1\n");
        assert_eq!(
            e,
            "4:10: peers[0].mtu: invalid type: integer `-1`, expected u16"
        );
        let e = error_of("host: vps\npeers:\n  a: 1\n");
        assert_eq!(e, "3:3: peers: invalid type: map, expected a sequence");
        let e = error_of("host: vps\npeers: 12\n");
        assert_eq!(
            e,
            "2:8: peers: invalid type: integer `12`, expected a sequence"
        );
        let e = error_of("host: vps\non: maybe\n");
        assert_eq!(
            e,
            "2:5: on: invalid type: string \"maybe\", expected a boolean"
        );
        // YAML 1.1 spellings are not booleans (as with serde_yaml).
        let e = error_of("host: vps\non: yes\n");
        assert_eq!(
            e,
            "2:5: on: invalid type: string \"yes\", expected a boolean"
        );
        let e = error_of("host: [a]\n");
        assert_eq!(e, "1:7: host: invalid type: sequence, expected a string");
    }

    #[test]
    fn unknown_fields_name_the_mapping_that_holds_them() {
        let e = error_of("host: vps\npeers:\n  - name: a\n    mtuu: 1\n");
        assert_eq!(
            e,
            "4:5: peers[0]: unknown field `mtuu`, expected `name` or `mtu`"
        );
        let e = error_of("hots: vps\n");
        assert!(
            e.starts_with("1:1: unknown field `hots`, expected one of `host`"),
            "{e}"
        );
    }

    #[test]
    fn a_missing_field_is_placed_at_its_mapping() {
        let e = error_of("host: vps\npeers:\n  - mtu: 1\n    # a comment\nsecrets: []\n");
        assert_eq!(e, "3:5: peers[0]: missing field `name`");
    }

    #[test]
    fn duplicate_keys_name_the_first() {
        let e = error_of("host: vps\npeers:\n  - name: a\n    mtu: 1\n    mtu: 2\n");
        assert_eq!(e, "5:5: duplicate key peers[0].mtu (first given at line 4)");
    }

    #[test]
    fn a_syntax_error_further_on_beats_a_type_error() {
        // The dedented key ends `peers[0]` without `name`; the scanner says why.
        let e = error_of("host: vps\npeers:\n  - mtu: 1\n   name: a\n");
        assert!(e.starts_with("4:4: "), "{e}");
        assert!(e.contains("did not find expected '-' indicator"), "{e}");
    }

    #[test]
    fn a_tab_in_an_indentation_is_placed_at_the_tab() {
        let e = error_of("host: vps\npeers:\n  - name: a\n\tmtu: 1\n");
        assert_eq!(e, "4:1: while scanning a plain scalar, found a tab");
    }

    /// The wording of `crate::secret::SecretRefError`, spelt out so that a change to it shows.
    const NOT_A_REF: &str = "not a valid secret reference (the value is not shown): write { env: NAME } or { file: PATH }";
    const KEY_NOT_SHOWN: &str = "a secret reference has a key other than env, file or inline (the key is not shown, in case it is the secret itself)";
    const EXACTLY_ONE: &str = "a secret reference is { env: NAME }, { file: PATH } or { inline: VALUE }: exactly one, not empty";

    #[test]
    fn secrets_given_as_values_are_not_echoed() {
        let inline_not_a_string =
            "inline: `inline` of a secret reference takes a string (the value is not shown)";
        let env_not_a_string =
            "env: `env` of a secret reference takes a string (the value is not shown)";
        // (value, column of the error from the value's start, the message after the field's path)
        for (value, offset, message) in [
            ("Hunter2", 0, NOT_A_REF),
            ("1234987", 0, NOT_A_REF),
            ("\"Hunter2\"", 0, NOT_A_REF),
            ("'Hunter2'", 0, NOT_A_REF),
            ("true", 0, NOT_A_REF),
            ("12.5e3", 0, NOT_A_REF),
            ("[Hunter2]", 0, NOT_A_REF),
            ("[]", 0, NOT_A_REF),
            ("&a Hunter2", 3, NOT_A_REF),
            // The parser refuses these before any visitor sees them (serde's wording would
            // quote them): replaced by the reference's own error.
            ("!!int Hunter2", 6, NOT_A_REF),
            ("!!bool Hunter2", 7, NOT_A_REF),
            ("!!float Hunter2", 8, NOT_A_REF),
            ("{ inline: { x: Hunter2 } }", 10, inline_not_a_string),
            ("{ inline: [Hunter2] }", 10, inline_not_a_string),
            ("{ inline: !!int Hunter2 }", 16, inline_not_a_string),
            ("{ inline: !!int 1234987 }", 16, inline_not_a_string),
            ("{ env: [Hunter2] }", 7, env_not_a_string),
            ("{ env: A, inline: Hunter2 }", 0, EXACTLY_ONE),
            ("{ env: A, inline: [Hunter2] }", 18, inline_not_a_string),
            ("{ Hunter2 }", 0, KEY_NOT_SHOWN),
            ("{ Hunter2: x }", 0, KEY_NOT_SHOWN),
            ("{ env: A, Hunter2: x }", 0, KEY_NOT_SHOWN),
            ("{ Hunter2: x, Hunter2: y }", 0, KEY_NOT_SHOWN),
            ("{ 1234987: x }", 0, KEY_NOT_SHOWN),
            ("{ ? [Hunter2] : x }", 0, KEY_NOT_SHOWN),
            ("{ ? { Hunter2: 1 } : x }", 0, KEY_NOT_SHOWN),
            ("{ true: x }", 0, KEY_NOT_SHOWN),
            ("{ ~: Hunter2 }", 0, KEY_NOT_SHOWN),
            (
                "{ envv: Hunter2 }",
                2,
                "unknown field `envv`, expected one of `env`, `file`, `inline`",
            ),
        ] {
            for field in ["password", "token"] {
                let e = error_of(&format!(
                    "host: vps\nsecrets:\n  - name: a\n    {field}: {value}\n"
                ));
                let column = 5 + field.len() + 2 + offset;
                let path = match message {
                    m if m == inline_not_a_string || m == env_not_a_string => format!("{field}."),
                    _ => format!("{field}: "),
                };
                assert_eq!(
                    e,
                    format!("4:{column}: secrets[0].{path}{message}"),
                    "{value}"
                );
                assert!(
                    !e.contains("Hunter2") && !e.contains("1234987"),
                    "echoed: {e}"
                );
            }
        }
        // A block scalar, and a block mapping with a key that may be the secret.
        let e = error_of("host: vps\nsecrets:\n  - name: a\n    token: |\n      Hunter2\n");
        assert_eq!(e, format!("5:7: secrets[0].token: {NOT_A_REF}"));
        let e = error_of("host: vps\nsecrets:\n  - name: a\n    token:\n      Hunter2: x\n");
        assert_eq!(e, format!("5:7: secrets[0].token: {KEY_NOT_SHOWN}"));
        // An unclosed quote is the syntax error it is, not quoted back.
        let e = error_of("host: vps\nsecrets:\n  - name: a\n    token: \"Hunter2\n");
        assert!(e.contains("unclosed quote"), "{e}");
        assert!(!e.contains("Hunter2"), "{e}");
        // The control: a value that is not a secret is still quoted.
        let e = error_of("host: vps\npeers:\n  - name: a\n    mtu: \"Hunter2\"\n");
        assert!(e.contains("\"Hunter2\""), "{e}");
    }

    #[test]
    fn references_parse_as_before() {
        let refs = |text: &str| {
            let mut diags = Vec::new();
            let text = format!("host: vps\nsecrets:\n  - name: a\n    {text}\n");
            let (file, _) = parse::<File>(Path::new("f.yaml"), &text, &mut diags).unwrap();
            (
                file.secrets[0].password.clone(),
                file.secrets[0].token.clone(),
            )
        };
        assert_eq!(
            refs("token: { env: A }").1,
            Some(SecretRef::Env("A".into()))
        );
        assert_eq!(
            refs("token: { file: s }").1,
            Some(SecretRef::File("s".into()))
        );
        assert_eq!(
            refs("token:\n      inline: x").1,
            Some(SecretRef::Inline("x".into()))
        );
        // A plain scalar is its text, as for any string.
        assert_eq!(
            refs("token: { inline: 0x1F }").1,
            Some(SecretRef::Inline("0x1F".into()))
        );
        assert_eq!(
            refs("token: { file: 12 }").1,
            Some(SecretRef::File("12".into()))
        );
        assert_eq!(
            refs("token: { <<: { env: A } }").1,
            Some(SecretRef::Env("A".into()))
        );
        assert_eq!(refs("password: ~").0, None);
        assert_eq!(refs("password:").0, None);
        for empty in [
            "{}",
            "{ env: }",
            "{ env: \"\" }",
            "{ file: ~ }",
            "{ inline: }",
        ] {
            let e = error_of(&format!(
                "host: vps\nsecrets:\n  - name: a\n    token: {empty}\n"
            ));
            assert_eq!(
                e,
                format!("4:12: secrets[0].token: {EXACTLY_ONE}"),
                "{empty}"
            );
        }
    }

    #[test]
    fn files_over_the_cap_are_refused_before_parsing() {
        let text = format!("host: vps\n#{}\n", "x".repeat(MAX_FILE_BYTES));
        let e = error_of(&text);
        assert!(e.starts_with("1:1: the file is "), "{e}");
        assert!(e.contains("files over 16 MiB are refused"), "{e}");
    }

    #[test]
    fn deep_nesting_is_refused_at_its_place() {
        // 10,000 levels, flow and block: refused at the level past the limit, not a stack
        // overflow.
        let flow = format!(
            "host: vps\nnested: {}{}\n",
            "[".repeat(10_000),
            "]".repeat(10_000)
        );
        let e = error_of(&flow);
        assert!(e.contains("nest deeper than 64"), "{e}");
        // Block sequences nest on one line: `- - - x`.
        let block = format!("host: vps\nnested:\n{}x\n", "- ".repeat(10_000));
        let e = error_of(&block);
        assert!(e.contains("nest deeper than 64"), "{e}");
        assert!(
            !e.starts_with("1:1:"),
            "placed at the depth, not the top: {e}"
        );
    }

    #[test]
    fn alias_bombs_are_refused() {
        // Billion laughs: nine levels of ten aliases each.
        let mut text =
            String::from("host: vps\nnested:\n  a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n");
        for i in 1..10 {
            let refs = vec![format!("*a{}", i - 1); 10].join(", ");
            text.push_str(&format!("  a{i}: &a{i} [{refs}]\n"));
        }
        let e = error_of(&text);
        assert!(
            e.contains("refused: anchors hold more than 100000 values"),
            "{e}"
        );
        assert!(e.contains("hostile input"), "{e}");
        // Many aliases of one small anchor, each cheap: the alias count is capped.
        let mut text = String::from("host: vps\nnested:\n  - &a x\n");
        for _ in 0..=MAX_ALIASES {
            text.push_str("  - *a\n");
        }
        let e = error_of(&text);
        assert!(e.contains("refused: more than 10000 aliases"), "{e}");
        // One big anchor replayed by a few hundred aliases: the replays are capped.
        let big = vec!["x"; 5_000].join(", ");
        let refs = vec!["*a"; 300].join(", ");
        let text = format!("host: vps\nnested:\n  a: &a [{big}]\n  b: [{refs}]\n");
        let e = error_of(&text);
        assert!(e.starts_with("4:"), "{e}");
        assert!(e.contains("refused:") && e.contains("hostile input"), "{e}");
    }

    #[test]
    fn a_second_document_is_refused() {
        let e = error_of("host: vps\n---\nhost: other\n");
        assert!(e.contains("a second YAML document"), "{e}");
    }

    #[test]
    fn a_file_that_is_not_a_mapping_is_not_quoted() {
        for (text, holds) in [
            ("SECRET_LINE=Zq9x-secret\nOTHER=Zq9x-2\n", "a single value"),
            ("- Zq9x-one\n- Zq9x-two\n", "a sequence"),
            ("\"Zq9x quoted\"\n", "a single value"),
            ("1234\n", "a single value"),
        ] {
            let e = error_of(text);
            assert_eq!(
                e,
                format!(
                    "1:1: {NOT_A_MAPPING} (it holds {holds}): is it a YAML resource file? Its content is not shown"
                ),
                "{text}"
            );
            assert!(!e.contains("Zq9x") && !e.contains("1234"), "{e}");
        }
    }

    #[test]
    fn an_unknown_key_that_is_no_name_is_not_quoted() {
        // A line of /etc/shadow is a mapping key in YAML (it ends with `:`).
        let e = error_of("root:$6$Zq9xhash:19000:0:99999:7:::\n");
        assert!(
            e.starts_with("1:1: unknown field (not shown: it is no field name"),
            "{e}"
        );
        assert!(!e.contains("Zq9x"), "{e}");
        let e = error_of("host: vps\npeers:\n  - name: a\n    \"Zq9x secret\": 1\n");
        assert!(
            e.starts_with("4:5: peers[0]: unknown field (not shown"),
            "{e}"
        );
        assert!(!e.contains("Zq9x"), "{e}");
    }

    #[test]
    fn deep_flow_nesting_stops_at_the_limit_in_one_pass() {
        // 200,000 `[` on one line: the parser stops at the first level past the limit (its
        // column says so), and no second pass over the text (the location index) is made.
        // A quadratic scan would be stopped by neither.
        for prefix in ["", "host: vps\nnested: "] {
            let text = format!("{prefix}{}", "[".repeat(200_000));
            let before = crate::yaml::locate::FULL_BUILDS.with(|n| n.get());
            let e = error_of(&text);
            let builds = crate::yaml::locate::FULL_BUILDS.with(|n| n.get()) - before;
            let line = prefix.lines().count().max(1);
            let column = prefix.lines().last().map_or(0, str::len) + MAX_DEPTH + 1;
            assert_eq!(
                e,
                format!(
                    "{line}:{column}: refused: mappings and sequences nest deeper than {MAX_DEPTH} (a limit against hostile input)"
                )
            );
            assert_eq!(builds, 0, "the location index was built");
        }
    }

    #[test]
    fn messages_quote_at_most_a_short_value() {
        let long = "b".repeat(500);
        let e = error_of(&format!(
            "host: vps\npeers:\n  - name: a\n    mtu: {long}\n"
        ));
        assert!(e.len() < 200, "{e}");
    }
}
