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
//!
//! Some defects cannot be fixture folders: a symbolic link out of the folder, a FIFO, a link to
//! `/dev/zero`, a Latin-1 byte, an environment variable set empty. Those cases are built at run
//! time in a temporary folder ([`generated`]) from a valid base ([`BASE`], checked by a control
//! test) and held to the same rules; a case may also name text that must appear in no output
//! (a secret that only a link reaches). Every command runs under a generous bound: one that
//! hangs (a FIFO opened for reading) is killed and the case fails, rather than the test hanging.
//! No error line may repeat its cause (`x: Is a directory: Is a directory`).

mod common;

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
        // The base's references: the lab's values stand in for them when unset.
        "ROUTER_BALANCEADOR_PASSWORD",
        "UISP_MAIN_TOKEN",
        "AIROS_PASSWORD_1",
        "AIROS_JUMP_PASSWORD",
        "CHAP_TECNICO_NODE1",
        "PPPOE_JUAN_PEREZ",
    ] {
        c.env_remove(var);
    }
    c.env("NO_COLOR", "1").stdin(Stdio::null());
    c
}

/// Runs a command to its end. With `watch` (a case's folder), every FIFO under it is watched:
/// one the command opens (it must refuse a FIFO unopened) is an `Err`, and is unblocked rather
/// than left to hang the run (see `common::output_watching_fifos`).
fn output_bounded(cmd: Command, watch: Option<&Path>) -> Result<Output, String> {
    let fifos = watch.map(common::fifos_under).unwrap_or_default();
    let (out, opened) = common::output_watching_fifos(cmd, &fifos);
    if opened.is_empty() {
        Ok(out)
    } else {
        Err(format!(
            "opened FIFO(s) {opened:?}, which must be refused without opening"
        ))
    }
}

fn command(args: &[&str], dir: &Path, state: &Path, lab: &Path) -> Command {
    let mut c = wispctl();
    c.arg("-C")
        .arg(dir)
        .arg("--state-dir")
        .arg(state)
        .arg("--lab")
        .arg(lab)
        .args(["--color", "never"])
        .args(args);
    c
}

fn run(args: &[&str], dir: &Path, state: &Path, lab: &Path) -> Output {
    output_bounded(command(args, dir, state, lab), Some(dir))
        .unwrap_or_else(|e| panic!("{args:?}: {e}"))
}

/// The cause a line of output says twice in a row, if any: `a: b: b`, or `a: b: c: b: c` (a
/// run of `: `-separated parts repeated).
fn repeated_cause(line: &str) -> Option<String> {
    let parts: Vec<&str> = line.split(": ").collect();
    for len in 1..=parts.len() / 2 {
        for i in 0..=parts.len() - 2 * len {
            if parts[i..i + len] == parts[i + len..i + 2 * len] {
                return Some(parts[i..i + len].join(": "));
            }
        }
    }
    None
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
            } else if meta.is_file() {
                out.insert(rel, (mode, Some(std::fs::read(&path).expect("read"))));
            } else {
                // A FIFO or socket: never opened (a FIFO would block this test).
                out.insert(rel, (mode, Some(b"(special file)".to_vec())));
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

/// What one broken folder must produce, wherever the folder comes from.
struct Expect<'a> {
    name: &'a str,
    /// The desired-state folder.
    dir: &'a Path,
    file: &'a str,
    line: usize,
    col: usize,
    msg: &'a str,
    /// Set for every command.
    env: &'a [(&'a str, &'a str)],
    /// Text that must appear in no output, beside [`SECRET_VALUE`].
    hidden: &'a [&'a str],
    /// Another folder that must not change (a generated case's outside folder).
    also_unchanged: Option<&'a Path>,
}

/// Runs one case through every command; returns what went wrong (empty when all is well).
fn check_case(c: &Case) -> Vec<String> {
    let dir = fixtures().join(c.name);
    if !dir.is_dir() {
        return vec![format!(
            "[{}] fixture folder {} is missing",
            c.name,
            dir.display()
        )];
    }
    check_folder(&Expect {
        name: c.name,
        dir: &dir,
        file: c.file,
        line: c.line,
        col: c.col,
        msg: c.msg,
        env: &[],
        hidden: &[],
        also_unchanged: None,
    })
}

/// Runs every command on one broken folder; returns what went wrong (empty when all is well).
fn check_folder(c: &Expect<'_>) -> Vec<String> {
    let mut failures = Vec::new();
    let dir = c.dir;
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
        let command_line = args.join(" ");
        let mut fail =
            |what: String| failures.push(format!("[{}] `{command_line}`: {what}", c.name));
        // Before each command, so that a write is blamed on the command that made it.
        let lab_before = snapshot(&lab);
        let fixture_before = snapshot(dir);
        let other_before = c.also_unchanged.map(snapshot);
        let mut cmd = command(args, dir, &state, &lab);
        cmd.envs(c.env.iter().copied());
        let out = match output_bounded(cmd, dir.parent()) {
            Ok(out) => out,
            Err(e) => {
                fail(e);
                continue;
            }
        };
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
        for secret in std::iter::once(&SECRET_VALUE).chain(c.hidden) {
            if stderr.contains(secret) || stdout.contains(secret) {
                fail(format!("the secret value {secret:?} was printed{shown}"));
            }
        }
        for line in stderr.lines() {
            if let Some(cause) = repeated_cause(line) {
                fail(format!("a line repeats {cause:?}:\n    {line}"));
            }
        }
        for change in changes(&lab_before, &snapshot(&lab)) {
            fail(format!("wrote to the lab: {change}"));
        }
        for change in changes(&fixture_before, &snapshot(dir)) {
            fail(format!("wrote to the fixture: {change}"));
        }
        if let (Some(before), Some(other)) = (other_before, c.also_unchanged) {
            for change in changes(&before, &snapshot(other)) {
                fail(format!("wrote beside the folder: {change}"));
            }
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

/// Cases built at run time: what a fixture folder cannot hold, or a defect that needs the
/// environment.
mod generated {
    use super::*;

    /// A valid desired-state folder in which every kind of address and credential appears
    /// once: each generated case changes one thing of it (checked by
    /// `the_generated_base_is_valid`).
    pub const BASE: &[(&str, &str)] = &[
        (
            "inventory.yaml",
            "hosts:\n  vps:\n    root: host-root\n\
             routers:\n  balanceador:\n    address: 10.147.17.1\n    username: wispctl\n    password: { env: ROUTER_BALANCEADOR_PASSWORD }\n\
             uisp:\n  main:\n    url: https://uisp.example.net\n    token: { env: UISP_MAIN_TOKEN }\n\
             antenna_groups:\n  clientes:\n    legacy: true\n    credentials:\n      - user: ubnt\n        password: { env: AIROS_PASSWORD_1 }\n    jump:\n      host: 10.147.17.5\n      credentials:\n        - user: wispctl\n          password: { env: AIROS_JUMP_PASSWORD }\n",
        ),
        (
            "pppoe/balanceador.yaml",
            "router: balanceador\ndefaults:\n  local_address: 10.10.0.1\nsecrets:\n  - name: juan.perez\n    password: { env: PPPOE_JUAN_PEREZ }\n    local_address: 10.10.0.2\n    remote_address: 10.10.1.45\n",
        ),
        (
            "pppd/vps.yaml",
            "host: vps\npeers:\n  - name: node-1\n    server: 198.51.100.20\n    user: tecnico\n\
             chap_secrets:\n  - client: tecnico\n    server: node-1\n    secret: { env: CHAP_TECNICO_NODE1 }\n    addresses: [\"10.20.0.2\"]\n",
        ),
        (
            "airos/clientes.yaml",
            "group: clientes\nconnection: { uisp: main }\nantennas:\n  - host: 10.10.1.21\n",
        ),
    ];

    /// What a path of a generated folder is.
    pub enum Entry {
        /// A regular file.
        Bytes(Vec<u8>),
        /// A symbolic link; `{outside}` in the target stands for the folder beside the
        /// desired-state folder.
        Link(&'static str),
        /// A FIFO (named pipe).
        Fifo,
    }

    /// One generated case.
    pub struct Generated {
        pub name: String,
        /// Changes to the base: a path of the desired-state folder and what it becomes.
        pub files: Vec<(String, Entry)>,
        /// Files of the folder beside it.
        pub outside: Vec<(&'static str, &'static str)>,
        pub env: Vec<(&'static str, &'static str)>,
        pub file: String,
        pub line: usize,
        pub col: usize,
        pub msg: String,
        pub hidden: Vec<&'static str>,
    }

    impl Generated {
        /// The base itself, unchanged.
        pub fn base() -> Generated {
            Generated {
                name: "base".into(),
                files: Vec::new(),
                outside: Vec::new(),
                env: Vec::new(),
                file: String::new(),
                line: 0,
                col: 0,
                msg: String::new(),
                hidden: Vec::new(),
            }
        }
    }

    fn base(file: &str) -> &'static str {
        BASE.iter()
            .find(|(f, _)| *f == file)
            .expect("a base file")
            .1
    }

    /// 1-based line and column of byte `at` of `text`.
    fn place(text: &str, at: usize) -> (usize, usize) {
        let before = &text[..at];
        let line = before.matches('\n').count() + 1;
        let start = before.rfind('\n').map_or(0, |i| i + 1);
        (line, before[start..].chars().count() + 1)
    }

    /// The base file `file` with `old` replaced by `new`; the error is expected where `at`
    /// (a part of `new`) lands.
    fn edit(name: &str, file: &str, old: &str, new: &str, at: &str, msg: &str) -> Generated {
        let text = base(file);
        let offset = text
            .find(old)
            .unwrap_or_else(|| panic!("{name}: {old:?} not in {file}"));
        let changed = text.replacen(old, new, 1);
        let (line, col) = place(&changed, offset + new.find(at).expect("`at` in `new`"));
        Generated {
            name: name.to_string(),
            files: vec![(file.to_string(), Entry::Bytes(changed.into_bytes()))],
            outside: Vec::new(),
            env: Vec::new(),
            file: file.to_string(),
            line,
            col,
            msg: msg.to_string(),
            hidden: Vec::new(),
        }
    }

    /// A case that adds entries and expects the error at `file:line:col`.
    fn add(
        name: &str,
        files: Vec<(&str, Entry)>,
        file: &str,
        line: usize,
        col: usize,
        msg: &str,
    ) -> Generated {
        Generated {
            name: name.to_string(),
            files: files.into_iter().map(|(p, e)| (p.to_string(), e)).collect(),
            outside: Vec::new(),
            env: Vec::new(),
            file: file.to_string(),
            line,
            col,
            msg: msg.to_string(),
            hidden: Vec::new(),
        }
    }

    const INV: &str = "inventory.yaml";
    const PPPOE: &str = "pppoe/balanceador.yaml";
    const PPPD: &str = "pppd/vps.yaml";
    const AIROS: &str = "airos/clientes.yaml";
    const CANONICAL: &str = "not an IPv4 address in canonical form";
    const OUTSIDE: &str =
        "a symbolic link that leads outside the desired-state folder: refused without reading it";
    const FIFO: &str =
        "this is a FIFO (named pipe), not a regular file: refused without opening it";
    /// A secret that only a link out of the folder reaches.
    const LINKED_SECRET: &str = "Zq9x-only-behind-a-link";

    /// Every generated case.
    pub fn cases() -> Vec<Generated> {
        let mut cases = Vec::new();

        // Zero-padded IPv4 addresses, read as octal by resolvers, in every place an address
        // or host appears.
        for bad in ["0177.0.0.1", "010.147.17.1"] {
            let tag = bad.replace('.', "-");
            for (place, file, old, new) in [
                (
                    "router-address",
                    INV,
                    "address: 10.147.17.1",
                    format!("address: {bad}"),
                ),
                (
                    "uisp-url",
                    INV,
                    "url: https://uisp.example.net",
                    format!("url: https://{bad}"),
                ),
                (
                    "jump-host",
                    INV,
                    "host: 10.147.17.5",
                    format!("host: {bad}"),
                ),
                (
                    "antenna-host",
                    AIROS,
                    "host: 10.10.1.21",
                    format!("host: {bad}"),
                ),
                (
                    "pppoe-default-local-address",
                    PPPOE,
                    "local_address: 10.10.0.1",
                    format!("local_address: {bad}"),
                ),
                (
                    "pppoe-local-address",
                    PPPOE,
                    "local_address: 10.10.0.2",
                    format!("local_address: {bad}"),
                ),
                (
                    "pppoe-remote-address",
                    PPPOE,
                    "remote_address: 10.10.1.45",
                    format!("remote_address: {bad}"),
                ),
                (
                    "pppd-server",
                    PPPD,
                    "server: 198.51.100.20",
                    format!("server: {bad}"),
                ),
                (
                    "chap-address",
                    PPPD,
                    "[\"10.20.0.2\"]",
                    format!("[\"{bad}\"]"),
                ),
            ] {
                let at = if place == "chap-address" {
                    "\""
                } else {
                    new.split(": ").nth(1).expect("a value")
                };
                cases.push(edit(
                    &format!("{place}-{tag}"),
                    file,
                    old,
                    &new,
                    at,
                    CANONICAL,
                ));
            }
        }

        // Credentials that resolve empty (a failed `. /etc/wispctl.env`).
        for (name, var) in [
            ("empty-router-password", "ROUTER_BALANCEADOR_PASSWORD"),
            ("empty-uisp-token", "UISP_MAIN_TOKEN"),
            ("empty-antenna-password", "AIROS_PASSWORD_1"),
            ("empty-jump-password", "AIROS_JUMP_PASSWORD"),
        ] {
            let text = base(INV);
            let reference = format!("{{ env: {var} }}");
            let (line, col) = place(text, text.find(&reference).expect("the reference"));
            let mut c = add(
                name,
                Vec::new(),
                INV,
                line,
                col,
                &format!("the secret from env:{var} is empty"),
            );
            c.env = vec![(var, "")];
            cases.push(c);
        }

        // Files git can hold: links out of the folder, FIFOs, devices.
        let mut c = add(
            "link-to-an-env-file-outside",
            vec![("pppoe/leak.yaml", Entry::Link("{outside}/wispctl.env"))],
            "pppoe/leak.yaml",
            1,
            1,
            OUTSIDE,
        );
        c.outside = vec![("wispctl.env", "ROUTER_PASSWORD=Zq9x-only-behind-a-link\n")];
        c.hidden = vec![LINKED_SECRET];
        cases.push(c);
        let mut c = add(
            "inventory-linked-to-a-shadow-file",
            vec![(INV, Entry::Link("{outside}/shadow"))],
            INV,
            1,
            1,
            OUTSIDE,
        );
        c.outside = vec![(
            "shadow",
            "root:$6$Zq9x-only-behind-a-link:19000:0:99999:7:::\n",
        )];
        c.hidden = vec![LINKED_SECRET];
        cases.push(c);
        let mut c = add(
            "folder-linked-outside",
            vec![("uisp", Entry::Link("{outside}/uisp"))],
            "uisp",
            1,
            1,
            OUTSIDE,
        );
        c.outside = vec![("uisp/main.yaml", "uisp: Zq9x-only-behind-a-link\n")];
        c.hidden = vec![LINKED_SECRET];
        cases.push(c);
        cases.push(add(
            "link-to-dev-zero",
            vec![("uisp/zero.yaml", Entry::Link("/dev/zero"))],
            "uisp/zero.yaml",
            1,
            1,
            OUTSIDE,
        ));
        cases.push(add(
            "fifo-resource-file",
            vec![("pppoe/pipe.yaml", Entry::Fifo)],
            "pppoe/pipe.yaml",
            1,
            1,
            FIFO,
        ));
        cases.push(add(
            "link-to-a-fifo-inside",
            vec![
                ("pipe", Entry::Fifo),
                ("pppoe/pipe.yaml", Entry::Link("../pipe")),
            ],
            "pppoe/pipe.yaml",
            1,
            1,
            FIFO,
        ));
        let mut c = edit(
            "secret-file-is-a-fifo",
            PPPD,
            "{ env: CHAP_TECNICO_NODE1 }",
            "{ file: ../pipe }",
            "{",
            "cannot read secret file",
        );
        c.files.push(("pipe".into(), Entry::Fifo));
        c.msg = format!("pppd/../pipe: {FIFO}");
        cases.push(c);
        cases.push(edit(
            "secret-file-is-dev-zero",
            PPPD,
            "{ env: CHAP_TECNICO_NODE1 }",
            "{ file: /dev/zero }",
            "{",
            "cannot read secret file /dev/zero: this is a character device, not a regular file",
        ));
        let mut c = edit(
            "ca-file-is-a-fifo",
            INV,
            "    token: { env: UISP_MAIN_TOKEN }\n",
            "    token: { env: UISP_MAIN_TOKEN }\n    ca_file: pipe\n",
            "pipe",
            "uisp.main",
        );
        c.files.push(("pipe".into(), Entry::Fifo));
        c.msg = format!("/pipe: {FIFO}");
        cases.push(c);
        cases.push(edit(
            "known-hosts-is-dev-zero",
            INV,
            "    legacy: true\n",
            "    legacy: true\n    known_hosts: /dev/zero\n",
            "/dev/zero",
            "known-hosts file /dev/zero: this is a character device, not a regular file",
        ));

        // Text that is not YAML.
        let nested = format!("host: vps\npeers: {}\n", "[".repeat(200_000));
        cases.push(add(
            "nested-brackets-200000",
            vec![(PPPD, Entry::Bytes(nested.into_bytes()))],
            PPPD,
            2,
            "peers: ".len() + 64 + 1,
            "refused: mappings and sequences nest deeper than 64",
        ));
        let latin1 = base(PPPD).replacen("user: tecnico", "user: t\u{e9}cnico", 1);
        let latin1: Vec<u8> = latin1.chars().map(|c| c as u32 as u8).collect();
        cases.push(add(
            "latin-1-byte",
            vec![(PPPD, Entry::Bytes(latin1))],
            PPPD,
            5,
            "    user: t".len() + 1,
            "the file is not valid UTF-8 here (a Latin-1 or binary byte)",
        ));
        cases.push(add(
            "binary-bytes",
            vec![(
                "pppoe/bin.yaml",
                Entry::Bytes(b"router: balanceador\x00\x01\x02\n".to_vec()),
            )],
            "pppoe/bin.yaml",
            1,
            "router: balanceador".len() + 1,
            "the file holds a control character (U+0000): binary data, not YAML",
        ));
        let mut c = add(
            "not-a-mapping",
            vec![(
                "pppoe/notes.yaml",
                Entry::Bytes(b"PPPOE_PW=Zq9x-only-behind-a-link\n".to_vec()),
            )],
            "pppoe/notes.yaml",
            1,
            1,
            "the file is not a mapping of fields",
        );
        c.hidden = vec![LINKED_SECRET];
        cases.push(c);
        cases
    }

    /// Writes the base with a case's changes into `root/desired` (and `root/outside`).
    pub fn build(root: &Path, c: &Generated) -> (PathBuf, PathBuf) {
        let dir = root.join("desired");
        let outside = root.join("outside");
        std::fs::create_dir_all(&outside).unwrap();
        for (rel, text) in BASE {
            let p = dir.join(rel);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, text).unwrap();
        }
        for (rel, text) in &c.outside {
            let p = outside.join(rel);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, text).unwrap();
        }
        for (rel, entry) in &c.files {
            let p = dir.join(rel);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            if std::fs::symlink_metadata(&p).is_ok_and(|m| m.is_dir()) {
                std::fs::remove_dir_all(&p).unwrap();
            } else {
                let _ = std::fs::remove_file(&p);
            }
            match entry {
                Entry::Bytes(bytes) => std::fs::write(&p, bytes).unwrap(),
                Entry::Link(target) => {
                    let target = target.replace("{outside}", &outside.to_string_lossy());
                    std::os::unix::fs::symlink(target, &p).unwrap();
                }
                Entry::Fifo => {
                    let made = Command::new("mkfifo").arg(&p).status().expect("mkfifo");
                    assert!(made.success(), "mkfifo {}", p.display());
                }
            }
        }
        (dir, outside)
    }
}

#[test]
fn generated_bad_input_exits_1_names_the_place_writes_nothing_and_hides_what_links_reach() {
    let cases = generated::cases();
    let names: BTreeSet<&str> = cases.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(names.len(), cases.len(), "generated case names repeat");
    let failures: Vec<String> = std::thread::scope(|s| {
        let handles: Vec<_> = cases
            .iter()
            .map(|c| {
                s.spawn(move || {
                    let tmp = tempfile::tempdir().expect("tempdir");
                    let (dir, outside) = generated::build(tmp.path(), c);
                    check_folder(&Expect {
                        name: &c.name,
                        dir: &dir,
                        file: &c.file,
                        line: c.line,
                        col: c.col,
                        msg: &c.msg,
                        env: &c.env,
                        hidden: &c.hidden,
                        also_unchanged: Some(&outside),
                    })
                })
            })
            .collect();
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

/// The control of the generated cases: their base is valid, so each case's one change is its
/// one error.
#[test]
fn the_generated_base_is_valid() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let (dir, _) = generated::build(tmp.path(), &generated::Generated::base());
    let lab = tmp.path().join("lab");
    lab_init(&lab);
    let out = run(&["validate"], &dir, &tmp.path().join("state"), &lab);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A refused or failed `import` creates no folder and no file: not the passwords file's
/// folder, not the YAML's.
#[test]
fn a_refused_import_creates_nothing() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let (dir, _) = generated::build(tmp.path(), &generated::Generated::base());
    let lab = tmp.path().join("lab");
    let state = tmp.path().join("state");
    lab_init(&lab);
    let t = tmp.path();
    let path = |rel: &str| t.join(rel).to_string_lossy().into_owned();
    let inside = dir.join("newdir/x.env").to_string_lossy().into_owned();
    for (args, env) in [
        // A kind without import, found out once the targets are set up.
        (
            vec![
                "import",
                "pppd",
                "vps",
                "--force",
                "--out",
                &path("a/vps.yaml"),
                "--secrets-file",
                &path("b/x.env"),
            ],
            vec![],
        ),
        // The router refuses the login: the read fails.
        (
            vec![
                "import",
                "pppoe",
                "balanceador",
                "--force",
                "--out",
                &path("c/r.yaml"),
                "--secrets-file",
                &path("d/deeper/x.env"),
            ],
            vec![("ROUTER_BALANCEADOR_PASSWORD", "not-the-password")],
        ),
        // A router that does not exist; a passwords file inside the desired state.
        (
            vec![
                "import",
                "pppoe",
                "nosuch",
                "--secrets-file",
                &path("e/x.env"),
            ],
            vec![],
        ),
        (
            vec![
                "import",
                "pppoe",
                "balanceador",
                "--force",
                "--secrets-file",
                &inside,
            ],
            vec![],
        ),
    ] {
        let before = snapshot(&dir);
        let mut cmd = command(&args, &dir, &state, &lab);
        cmd.envs(env);
        let out = output_bounded(cmd, None).unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {stderr}");
        for made in ["a", "b", "c", "d", "e"] {
            assert!(!t.join(made).exists(), "{args:?} created {made}/: {stderr}");
        }
        assert_eq!(
            changes(&before, &snapshot(&dir)),
            Vec::<String>::new(),
            "{args:?}"
        );
    }
    // The control: an import that succeeds does create the folders it writes into.
    let out = run(
        &[
            "import",
            "pppoe",
            "balanceador",
            "--force",
            "--out",
            &path("f/r.yaml"),
            "--secrets-file",
            &path("g/x.env"),
        ],
        &dir,
        &state,
        &lab,
    );
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(t.join("f/r.yaml").is_file() && t.join("g/x.env").is_file());
}

/// Errors name each cause once: a typed error that holds its cause in its message and also
/// exposes it as its source was printed `...: Is a directory (os error 21): Is a directory
/// (os error 21)`, and a context naming what the cause names first, twice.
#[test]
fn errors_do_not_repeat_their_cause() {
    assert_eq!(repeated_cause("error: a: b: b"), Some("b".into()));
    assert_eq!(repeated_cause("error: x: b: c: b: c"), Some("b: c".into()));
    assert_eq!(repeated_cause("d/x.yaml:1:1: error: a: b"), None);

    let tmp = tempfile::tempdir().expect("tempdir");
    let (dir, _) = generated::build(tmp.path(), &generated::Generated::base());
    let lab = tmp.path().join("lab");
    lab_init(&lab);
    // A state folder whose hash key is a folder.
    let state = tmp.path().join("state");
    std::fs::create_dir_all(state.join("hash.key")).unwrap();
    let out_file = tmp.path().join("r.yaml").to_string_lossy().into_owned();
    let env_file = tmp.path().join("r.env").to_string_lossy().into_owned();
    for (args, env) in [
        (vec!["plan"], vec![]),
        (vec!["apply", "--auto-approve"], vec![]),
        (
            vec![
                "import",
                "pppoe",
                "balanceador",
                "--force",
                "--out",
                &out_file,
                "--secrets-file",
                &env_file,
            ],
            vec![("ROUTER_BALANCEADOR_PASSWORD", "not-the-password")],
        ),
    ] {
        let mut cmd = command(&args, &dir, &state, &lab);
        cmd.envs(env);
        let out = output_bounded(cmd, None).unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {stderr}");
        assert!(stderr.contains("error: "), "{args:?}: {stderr}");
        for line in stderr.lines() {
            assert_eq!(repeated_cause(line), None, "{args:?}: {line}");
        }
        if args[0] != "import" {
            assert_eq!(
                stderr.matches("(os error 21)").count(),
                1,
                "{args:?}: {stderr}"
            );
        }
    }
}
