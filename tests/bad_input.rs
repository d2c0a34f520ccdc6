//! Bad input never reaches a target.
//!
//! Every folder under `tests/fixtures/bad/` is a complete, small desired-state folder with
//! exactly one thing wrong. For each, the real binary runs `validate`, `plan`,
//! `apply --auto-approve` and `drift` against a fresh lab, and each run must:
//!
//! - exit 1;
//! - print exactly one error, as `<dir>/<file>:<line>:<col>: error: <message>`, where `<dir>` is
//!   the folder as passed with `-C`, and the message holds the case's fragment;
//! - print nothing on stdout (no plan, no report);
//! - leave every file of the lab (path, bytes, mode) and of the fixture itself unchanged.
//!
//! All failures of all cases are collected and reported together.

use std::collections::{BTreeMap, BTreeSet};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

/// One broken desired-state folder and the single error it must produce.
struct Case {
    /// Folder name under `tests/fixtures/bad/`.
    name: &'static str,
    /// The file the error names, relative to the folder.
    file: &'static str,
    /// 1-based line and column of the error.
    line: usize,
    col: usize,
    /// A fragment of the message.
    msg: &'static str,
}

const fn case(
    name: &'static str,
    file: &'static str,
    line: usize,
    col: usize,
    msg: &'static str,
) -> Case {
    Case {
        name,
        file,
        line,
        col,
        msg,
    }
}

const INV: &str = "inventory.yaml";
const PPPD: &str = "pppd/vps.yaml";
const AIROS: &str = "airos/clientes.yaml";

/// The acceptance line asks for at least 15 distinct broken files; the brief for this test, 18.
const MIN_CASES: usize = 18;

#[rustfmt::skip]
const CASES: &[Case] = &[
    // YAML syntax
    case("syntax-bad-indentation", PPPD, 5, 11, "mapping values are not allowed in this context"),
    // granit says `unclosed quote` at the quote left open, the place to fix (libyaml: end of stream at 5:1).
    case("syntax-unclosed-quote", INV, 4, 18, "unclosed quote"),
    // granit says `while scanning a plain scalar, found a tab`, at the scalar (3:11); parse.rs places it at the tab itself, as libyaml did.
    case("syntax-tab-indentation", PPPD, 4, 1, "while scanning a plain scalar, found a tab"),
    // unknown fields
    case("unknown-field-in-inventory", INV, 4, 5, "hosts.vps: unknown field `adress`"),
    case("unknown-field-in-peer", PPPD, 6, 5, "peers[0]: unknown field `mtuu`"),
    case("unknown-field-in-chap", PPPD, 6, 5, "chap_secrets[0]: unknown field `adresses`"),
    case("unknown-field-in-secret-ref", PPPD, 5, 15, "chap_secrets[0].secret: unknown field `envv`"),
    // wrong types
    case("wrong-type-mtu-string", PPPD, 6, 10, "peers[0].mtu: invalid type: string \"big\", expected u16"),
    case("wrong-type-peers-map", PPPD, 3, 3, "peers: invalid type: map, expected a sequence"),
    case("wrong-type-prune-sometimes", PPPD, 2, 8, "prune: unknown variant `sometimes`"),
    case("wrong-type-max-deletes", INV, 2, 16, "guards.max_deletes: invalid type: integer `-1`"),
    // duplicates
    case("duplicate-peer-name", PPPD, 6, 11, "duplicate peer \"node-1\" (first declared at line 3)"),
    case("duplicate-chap-entry", PPPD, 6, 13, "duplicate chap-secrets entry \"tecnico\"@\"node-1\" (first declared at line 3)"),
    // Found by the location index at the second `mtu:`, not by serde at the mapping's start.
    case("duplicate-yaml-key", PPPD, 7, 5, "duplicate key peers[0].mtu (first given at line 6)"),
    // serde_yaml would let the second `vps:` silently replace the first.
    case("duplicate-host-in-inventory", INV, 4, 3, "duplicate key hosts.vps (first given at line 2)"),
    // libyaml parses this into a type error (`missing field user`); the scanner's syntax error
    // is the useful one.
    // serde-saphyr too stops at `missing field user`; granit places the syntax error at the dedented key itself (5:4; yaml-rust2: 5:8).
    case("syntax-dedented-key", PPPD, 5, 4, "did not find expected '-' indicator"),
    // references between files
    case("host-not-in-inventory", PPPD, 1, 7, "host \"vsp\" is not defined in inventory.yaml (defined: vps)"),
    // `vps-copy.yaml` sorts before `vps.yaml`, so the second file read is `vps.yaml`.
    case("two-pppd-files-same-host", PPPD, 1, 7, "host \"vps\" already has a pppd file"),
    // names that become file names
    case("peer-name-path-traversal", PPPD, 3, 11, "invalid peer name \"../../etc/shadow\""),
    case("peer-name-with-slash", PPPD, 3, 11, "invalid peer name \"nodes/node-1\": it must not contain '/'"),
    case("peer-name-leading-dot", PPPD, 3, 11, "invalid peer name \".node-1\": it must not start with '.'"),
    case("invalid-host-name-in-inventory", INV, 4, 3, "invalid host name \"../evil\""),
    // secrets
    case("missing-env-secret", PPPD, 5, 13, "environment variable WISPCTL_TEST_SURELY_UNSET_1 is not set"),
    case("missing-secret-file", PPPD, 5, 13, "cannot read secret file"),
    case("inline-secret-not-allowed", PPPD, 5, 13, "inline secrets are refused"),
    // serde-saphyr places a custom error at its value, the `secret:` mapping (5:13; serde_yaml: the chap entry, 3:5).
    case("secret-ref-two-keys", PPPD, 5, 13, "a secret reference is { env: NAME }, { file: PATH } or { inline: VALUE }: exactly one"),
    // A secret typed where its reference belongs: refused by the reference's own deserializer,
    // whatever the field is called (`token` once echoed the value), at the value.
    case("uisp-token-plaintext", INV, 4, 12, "uisp.main.token: not a valid secret reference (the value is not shown)"),
    case("router-password-plaintext", INV, 5, 15, "routers.balanceador.password: not a valid secret reference"),
    case("airos-connection-secret-plaintext", AIROS, 2, 23, "connection.secret: not a valid secret reference"),
    case("chap-secret-as-list", PPPD, 5, 13, "chap_secrets[0].secret: not a valid secret reference"),
    // The parser refuses `!!int` before the reference sees the value (its wording would quote it).
    case("airos-credential-tagged-plaintext", INV, 6, 25, "antenna_groups.clientes.credentials[0].password: not a valid secret reference"),
    // `{ hunter2 }` is a map whose key is the secret: the key is not named.
    case("secret-ref-key-is-the-secret", PPPD, 5, 13, "chap_secrets[0].secret: a secret reference has a key other than env, file or inline (the key is not shown"),
    case("inline-secret-not-a-string", PPPD, 6, 23, "chap_secrets[0].secret.inline: `inline` of a secret reference takes a string (the value is not shown)"),
    // values that would reach a shell or a peer file
    case("server-shell-metacharacters", PPPD, 4, 13, "invalid server \"1.2.3.4; rm -rf /\""),
    case("refused-option-connect", PPPD, 8, 9, "option \"connect\" is not accepted here: runs a shell command"),
    case("refused-option-password", PPPD, 7, 9, "option \"password\" is not accepted here: carries a secret"),
    case("mtu-out-of-range", PPPD, 6, 10, "mtu 9000 is out of range 128..=1500"),
    // airOS antennas: nothing from YAML reaches a device's shell, and a bad file reaches no device
    case("airos-host-shell-metacharacters", AIROS, 5, 11, "\"10.10.1.22; touch /tmp/wispctl-pwned\" is not an IP address or host name"),
    case("airos-connection-string-hostile", AIROS, 3, 11, "invalid connection string: the connection string's key holds a character outside A-Z, a-z, 0-9"),
    case("airos-group-not-in-inventory", AIROS, 1, 8, "antenna group \"clientez\" is not defined in inventory.yaml (defined: clientes)"),
    // A block mapping starts at its first key (3:3); yaml-rust2 marked it at that key's colon (3:7).
    case("airos-connection-two-sources", AIROS, 3, 3, "connection needs exactly one of `uisp: SERVER` or `secret: { env: NAME }`"),
    case("airos-duplicate-antenna", AIROS, 6, 11, "antenna 10.10.1.21 is listed twice (first at line 4)"),
    // files and folders
    case("empty-pppd-file", PPPD, 1, 1, "the file is empty"),
    case("unknown-folder", "ppd/vps.yaml", 1, 1, "unknown folder \"ppd\""),
    case("stray-top-level-yaml", "vps.yaml", 1, 1, "unexpected file: the top level holds only inventory.yaml"),
    case("missing-inventory", INV, 1, 1, "cannot read inventory"),
];

/// The commands every case runs; `drift` too, which must exit 1 rather than 2.
const COMMANDS: &[&[&str]] = &[
    &["validate"],
    &["plan"],
    &["apply", "--auto-approve"],
    &["drift"],
];

/// A value that the fixtures use only as a secret; it must never be printed.
const SECRET_VALUE: &str = "hunter2";

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/bad")
}

fn wispctl() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_wispctl"));
    for var in [
        "WISPCTL_DIR",
        "WISPCTL_STATE_DIR",
        "WISPCTL_LAB",
        "RUST_LOG",
        "WISPCTL_TEST_SURELY_UNSET_1",
    ] {
        c.env_remove(var);
    }
    c.env("NO_COLOR", "1").stdin(Stdio::null());
    c
}

fn run(args: &[&str], dir: &Path, state: &Path, lab: &Path) -> Output {
    wispctl()
        .arg("-C")
        .arg(dir)
        .arg("--state-dir")
        .arg(state)
        .arg("--lab")
        .arg(lab)
        .args(["--color", "never"])
        .args(args)
        .output()
        .expect("run wispctl")
}

fn lab_init(lab: &Path) {
    let out = wispctl()
        .args(["lab", "init"])
        .arg(lab)
        .output()
        .expect("run wispctl lab init");
    assert!(
        out.status.success(),
        "wispctl lab init failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Every entry under a folder: relative path to (mode, content); directories have no content,
/// symbolic links their target.
type Snapshot = BTreeMap<PathBuf, (u32, Option<Vec<u8>>)>;

fn snapshot(root: &Path) -> Snapshot {
    fn walk(root: &Path, dir: &Path, out: &mut Snapshot) {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        for e in entries {
            let path = e.expect("read_dir entry").path();
            let meta = std::fs::symlink_metadata(&path).expect("stat");
            let rel = path.strip_prefix(root).expect("under root").to_path_buf();
            let mode = meta.permissions().mode();
            if meta.is_dir() {
                out.insert(rel, (mode, None));
                walk(root, &path, out);
            } else if meta.file_type().is_symlink() {
                let target = std::fs::read_link(&path).expect("readlink");
                out.insert(
                    rel,
                    (mode, Some(target.into_os_string().into_encoded_bytes())),
                );
            } else {
                out.insert(rel, (mode, Some(std::fs::read(&path).expect("read"))));
            }
        }
    }
    let mut out = Snapshot::new();
    walk(root, root, &mut out);
    out
}

/// What changed between two snapshots, one line per path; empty when nothing did.
fn changes(before: &Snapshot, after: &Snapshot) -> Vec<String> {
    let paths: BTreeSet<_> = before.keys().chain(after.keys()).collect();
    paths
        .into_iter()
        .filter_map(|p| match (before.get(p), after.get(p)) {
            (Some(a), Some(b)) if a == b => None,
            (None, Some(_)) => Some(format!("created {}", p.display())),
            (Some(_), None) => Some(format!("removed {}", p.display())),
            (Some((ma, ca)), Some((mb, cb))) if ca == cb => {
                Some(format!("mode of {} {ma:o} -> {mb:o}", p.display()))
            }
            _ => Some(format!("content of {} changed", p.display())),
        })
        .collect()
}

/// Runs one case through every command; returns what went wrong (empty when all is well).
fn check_case(c: &Case) -> Vec<String> {
    let mut failures = Vec::new();
    let dir = fixtures().join(c.name);
    if !dir.is_dir() {
        return vec![format!(
            "[{}] fixture folder {} is missing",
            c.name,
            dir.display()
        )];
    }
    let tmp = tempfile::tempdir().expect("tempdir");
    let lab = tmp.path().join("lab");
    let state = tmp.path().join("state");
    lab_init(&lab);
    let want_at = format!(
        "{}:{}:{}: error: ",
        dir.join(c.file).display(),
        c.line,
        c.col
    );
    let want_summary = format!("error: 1 problem(s) in {}", dir.display());

    for args in COMMANDS {
        let command = args.join(" ");
        let mut fail = |what: String| failures.push(format!("[{}] `{command}`: {what}", c.name));
        // Before each command, so that a write is blamed on the command that made it.
        let lab_before = snapshot(&lab);
        let fixture_before = snapshot(&dir);
        let out = run(args, &dir, &state, &lab);
        let stderr = String::from_utf8_lossy(&out.stderr);
        let stdout = String::from_utf8_lossy(&out.stdout);
        let shown = format!(
            "\n    stderr: {}",
            stderr.trim_end().replace('\n', "\n            ")
        );

        if out.status.code() != Some(1) {
            fail(format!(
                "exit code {:?}, expected Some(1){shown}",
                out.status.code()
            ));
        }
        let errors: Vec<&str> = stderr
            .lines()
            .filter(|l| l.starts_with(&*dir.to_string_lossy()) && l.contains(": error: "))
            .collect();
        match errors.as_slice() {
            [one] if one.starts_with(&want_at) && one.contains(c.msg) => {}
            [one] => fail(format!(
                "expected an error starting with `{want_at}` and containing `{}`, got\n    {one}",
                c.msg
            )),
            _ => fail(format!(
                "expected exactly one error at `{want_at}`, got {}{shown}",
                errors.len()
            )),
        }
        if !stderr.contains(&want_summary) {
            fail(format!("stderr lacks `{want_summary}`{shown}"));
        }
        if !stdout.trim().is_empty() {
            fail(format!("stdout should be empty, got:\n{stdout}"));
        }
        if stderr.contains(SECRET_VALUE) || stdout.contains(SECRET_VALUE) {
            fail(format!(
                "the secret value {SECRET_VALUE:?} was printed{shown}"
            ));
        }
        for change in changes(&lab_before, &snapshot(&lab)) {
            fail(format!("wrote to the lab: {change}"));
        }
        for change in changes(&fixture_before, &snapshot(&dir)) {
            fail(format!("wrote to the fixture: {change}"));
        }
    }
    failures
}

/// Runs cases in parallel and panics with every failure at once.
fn check_all(cases: &[Case]) {
    let failures: Vec<String> = std::thread::scope(|s| {
        let handles: Vec<_> = cases.iter().map(|c| s.spawn(|| check_case(c))).collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().expect("case thread"))
            .collect()
    });
    assert!(
        failures.is_empty(),
        "{} failure(s):\n\n{}",
        failures.len(),
        failures.join("\n\n")
    );
}

#[test]
fn bad_input_exits_1_names_the_place_and_writes_nothing() {
    check_all(CASES);
}

#[test]
fn case_table_is_distinct_and_complete() {
    assert!(
        CASES.len() >= MIN_CASES,
        "{} cases, want at least {MIN_CASES}",
        CASES.len()
    );
    let mut names = BTreeSet::new();
    let mut expectations = BTreeSet::new();
    for c in CASES {
        assert!(names.insert(c.name), "case {} is listed twice", c.name);
        assert!(
            expectations.insert((c.file, c.msg)),
            "case {}: another case already expects {:?} in {}",
            c.name,
            c.msg,
            c.file
        );
        assert!(
            c.line >= 1 && c.col >= 1,
            "case {}: positions are 1-based",
            c.name
        );
    }
    // A known gap's fragment may be loose (src/ has no message for it yet); a case's may not.
    for c in CASES {
        assert!(
            c.msg.len() >= 12,
            "case {}: message fragment {:?} is too short to tell cases apart",
            c.name,
            c.msg
        );
    }
    // Every fixture folder is a case, and every case has its folder.
    let on_disk: BTreeSet<String> = std::fs::read_dir(fixtures())
        .expect("tests/fixtures/bad")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    let listed: BTreeSet<String> = names.iter().map(|n| n.to_string()).collect();
    assert_eq!(on_disk, listed, "fixture folders and case tables differ");
}

/// The control: the fixtures' common content, without a defect, is valid, and applying it does
/// write to the lab. So "nothing written" above is not true merely because the lab is ignored.
#[test]
fn good_input_passes_and_apply_writes_to_the_lab() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("desired");
    let lab = tmp.path().join("lab");
    let state = tmp.path().join("state");
    std::fs::create_dir_all(dir.join("pppd")).unwrap();
    std::fs::write(
        dir.join("inventory.yaml"),
        "hosts:\n  vps:\n    root: host-root\n",
    )
    .unwrap();
    std::fs::write(
        dir.join("pppd/vps.yaml"),
        "host: vps\n\
         peers:\n  - name: node-1\n    server: 198.51.100.20\n    user: tecnico\n\
         chap_secrets:\n  - client: tecnico\n    server: node-1\n    secret: { env: CHAP_TECNICO_NODE1 }\n",
    )
    .unwrap();
    lab_init(&lab);
    let before = snapshot(&lab);

    let out = run(&["validate"], &dir, &state, &lab);
    assert_eq!(
        out.status.code(),
        Some(0),
        "validate: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(before, snapshot(&lab), "validate wrote to the lab");

    let out = run(&["apply", "--auto-approve"], &dir, &state, &lab);
    assert_eq!(
        out.status.code(),
        Some(0),
        "apply: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let written = changes(&before, &snapshot(&lab));
    assert!(
        written
            .iter()
            .any(|c| c.contains("hosts/vps/etc/ppp/peers/node-1")),
        "apply did not write the peer file into the lab: {written:?}"
    );
    assert!(
        !dir.join("host-root").exists(),
        "apply wrote under the inventory's root instead of the lab"
    );
}
