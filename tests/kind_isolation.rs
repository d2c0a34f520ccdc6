//! A kind is one folder and one registry line: no Rust source outside `src/kinds/<kind>/` refers
//! to a kind's module, except the `registry!` line in `src/kinds/mod.rs` (and documentation,
//! which is not code). What counts as a reference: a path into the module (`kinds::pppoe`,
//! `super::pppoe`, `crate::...::pppoe`), a `mod pppoe` declaration, or `use pppoe::`. Words in
//! comments and strings are not references (the UISP API, an address in a test's data).
//!
//! Scanned: every `.rs` file under `src/` and `crates/`. The kinds are read from the registry
//! line itself, so a new kind is checked without touching this test.

use std::path::{Path, PathBuf};

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries {
        let p = e.unwrap().path();
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

/// The kinds named in `registry!(...)`.
fn registered() -> Vec<String> {
    let text = std::fs::read_to_string(repo().join("src/kinds/mod.rs")).unwrap();
    let line = text
        .lines()
        .find(|l| l.trim_start().starts_with("registry!("))
        .expect("src/kinds/mod.rs has a registry! line");
    let inner = line
        .trim()
        .trim_start_matches("registry!(")
        .trim_end_matches(");");
    inner
        .split(',')
        .map(|k| k.trim().to_string())
        .filter(|k| !k.is_empty())
        .collect()
}

/// Source text with comments, string and char literals blanked (lengths and lines kept).
fn code_only(text: &str) -> String {
    let b = text.as_bytes();
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    while i < b.len() {
        let rest = &text[i..];
        if rest.starts_with("//") {
            let end = rest.find('\n').map_or(b.len(), |n| i + n);
            out.extend(std::iter::repeat_n(' ', end - i));
            i = end;
        } else if rest.starts_with("/*") {
            let end = rest.find("*/").map_or(b.len(), |n| i + n + 2);
            out.extend(
                text[i..end]
                    .chars()
                    .map(|c| if c == '\n' { '\n' } else { ' ' }),
            );
            i = end;
        } else if rest.starts_with("r#\"") || rest.starts_with("r\"") {
            let hashes = rest[1..].chars().take_while(|c| *c == '#').count();
            let close = format!("\"{}", "#".repeat(hashes));
            let start = 2 + hashes;
            let end = rest[start..]
                .find(&close)
                .map_or(b.len(), |n| i + start + n + close.len());
            out.extend(
                text[i..end]
                    .chars()
                    .map(|c| if c == '\n' { '\n' } else { ' ' }),
            );
            i = end;
        } else if b[i] == b'"' {
            let mut j = i + 1;
            while j < b.len() && b[j] != b'"' {
                j += if b[j] == b'\\' { 2 } else { 1 };
            }
            let end = (j + 1).min(b.len());
            out.extend(
                text[i..end]
                    .chars()
                    .map(|c| if c == '\n' { '\n' } else { ' ' }),
            );
            i = end;
        } else if b[i] == b'\''
            && (rest[1..].starts_with("\\") || rest[1..].chars().nth(1) == Some('\''))
        {
            // A char literal ('a', '\n'); a lifetime ('a) is left alone.
            let len = rest[1..].find('\'').map_or(1, |n| n + 2);
            out.extend(std::iter::repeat_n(' ', len));
            i += len;
        } else {
            let c = rest.chars().next().unwrap();
            out.push(c);
            i += c.len_utf8();
        }
    }
    out
}

fn is_ident(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_'
}

/// Identifiers and punctuation of code (comments and literals already blanked), with lines.
fn tokens(code: &str) -> Vec<(String, usize)> {
    let mut out = Vec::new();
    for (n, line) in code.lines().enumerate() {
        let chars: Vec<char> = line.chars().collect();
        let mut i = 0;
        while i < chars.len() {
            let c = chars[i];
            if is_ident(c) {
                let start = i;
                while i < chars.len() && is_ident(chars[i]) {
                    i += 1;
                }
                out.push((chars[start..i].iter().collect(), n + 1));
            } else if c == ':' && chars.get(i + 1) == Some(&':') {
                out.push(("::".into(), n + 1));
                i += 2;
            } else {
                if !c.is_whitespace() {
                    out.push((c.to_string(), n + 1));
                }
                i += 1;
            }
        }
    }
    out
}

/// Lines (1-based) of `code` that refer to module `kind`: a path into it (`kinds::pppoe`,
/// `super::pppoe::x`), a path from it (`pppoe::Kind`, after a glob import), its declaration
/// (`mod pppoe`), or a name in a `use` group (`use crate::kinds::{pppoe, ...}`).
fn references(code: &str, kind: &str) -> Vec<usize> {
    let toks = tokens(code);
    let mut found = Vec::new();
    // For each open brace: whether it opens a `use` group (`::{`).
    let mut braces: Vec<bool> = Vec::new();
    for (i, (t, line)) in toks.iter().enumerate() {
        let prev = i.checked_sub(1).map(|p| toks[p].0.as_str());
        let next = toks.get(i + 1).map(|x| x.0.as_str());
        match t.as_str() {
            "{" => braces.push(prev == Some("::")),
            "}" => {
                braces.pop();
            }
            _ if t == kind => {
                let in_group =
                    braces.last() == Some(&true) && matches!(prev, Some("{") | Some(","));
                if prev == Some("::") || prev == Some("mod") || next == Some("::") || in_group {
                    found.push(*line);
                }
            }
            _ => {}
        }
    }
    found.dedup();
    found
}

#[test]
fn no_file_outside_a_kinds_folder_refers_to_it_but_the_registry_line() {
    let kinds = registered();
    assert!(
        kinds.len() >= 4,
        "registry lists {kinds:?}: the registry line was not read"
    );
    let root = repo();
    let mut files = Vec::new();
    rust_files(&root.join("src"), &mut files);
    rust_files(&root.join("crates"), &mut files);
    assert!(files.len() > 20, "the source tree was not found");
    let mut problems = Vec::new();
    for file in &files {
        let rel = file
            .strip_prefix(&root)
            .unwrap()
            .to_string_lossy()
            .into_owned();
        let code = code_only(&std::fs::read_to_string(file).unwrap());
        for kind in &kinds {
            if rel.starts_with(&format!("src/kinds/{kind}/")) {
                continue;
            }
            for line in references(&code, kind) {
                let text = code.lines().nth(line - 1).unwrap_or_default().trim();
                if rel == "src/kinds/mod.rs" && text.starts_with("registry!(") {
                    continue;
                }
                problems.push(format!("{rel}:{line}: refers to kind {kind}: {text}"));
            }
        }
    }
    assert!(
        problems.is_empty(),
        "a kind is one folder and one registry line; these refer to a kind from outside:\n{}",
        problems.join("\n")
    );
}

#[test]
fn every_registered_kind_is_a_folder_defining_its_kind() {
    for kind in registered() {
        let m = repo().join("src/kinds").join(&kind).join("mod.rs");
        let text = std::fs::read_to_string(&m).unwrap_or_else(|e| panic!("{}: {e}", m.display()));
        assert!(
            text.contains("impl KindDef for Kind"),
            "{} does not implement KindDef for its Kind",
            m.display()
        );
    }
}

/// The check itself finds what it is meant to find.
#[test]
fn the_check_finds_references_and_ignores_words() {
    let code = code_only(
        "use crate::kinds::pppoe::spec::Router;\n\
         let x = super::pppoe::Kind;\n\
         pub mod pppoe;\n\
         // kinds::pppoe in a comment\n\
         let s = \"kinds::pppoe in a string\";\n\
         let pppoe_count = 1;\n\
         let uisp = desired.section(\"uisp\");\n\
         use crate::kinds::{\n    pppoe,\n    uisp::Kind as U,\n};\n\
         use crate::kinds::*; let k = pppoe::Kind;\n\
         let p = Provider { uisp, ctx }; let n = self.uisp.len(); let f = F { uisp: 1 };\n\
         use crate::{uisp_api, ownership::{Prune, TAG}};\n",
    );
    assert_eq!(references(&code, "pppoe"), vec![1, 2, 3, 9, 12]);
    assert_eq!(references(&code, "uisp"), vec![10]);
    assert_eq!(
        references(
            &code_only("fn f<'a>(x: &'a str) { crate::kinds::airos::x() }"),
            "airos"
        ),
        vec![1]
    );
}
