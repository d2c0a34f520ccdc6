//! pppd's own option parser checks every peer file wispctl renders.
//!
//! Each case is a `PeerSpec` written as YAML: wispctl's validation (`desired::load`) must accept
//! it, `kinds::pppd::peer::render` writes it, and `pppd /dev/null file PEER dryrun nodetach
//! logfd 2` parses it. pppd exits 0 and prints `pppd options in effect:` when every option is
//! good, 2 on a bad option and 1 on a fatal check. Its "options in effect" block is what pppd
//! really holds, each value printed back with its `%q` escapes, so comparing it with the YAML
//! shows that quoting survives pppd's own tokenizer.
//!
//! pppd opens `/dev/ppp` first and exits 4 where the kernel has no PPP, and it reads
//! `/etc/ppp/options` (Debian's adds `auth`, `crtscts`, ...). So each batch runs in a private
//! mount namespace (`unshare -m`): a tmpfs `/dev` holding null, tty, ptmx, pts and a `/dev/ppp`
//! that is `/dev/null`, and a tmpfs `/etc/ppp` holding an empty `options` and this run's
//! `chap-secrets`. The mounts end with the shell; the files live in a `tempfile` folder removed
//! on drop. Needs root and pppd (Debian package ppp, installed by tests/setup.sh). Without them
//! the tests fail: they never skip.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::fs;
use std::path::PathBuf;
use std::process::Command;

use wispctl::kinds::pppd::spec::{ChapEntry, PeerSpec};
use wispctl::kinds::pppd::{Kind as Pppd, chap, peer, words};
use wispctl::secret::{Secret, SecretResolver};

/// The longest line pppd prints in its "options in effect" block (its print buffer): a longer
/// value shows cut short. Cases that long prove the full value through a chap-secrets lookup.
const PRINT_LIMIT: usize = 255;

/// Runs in the private mount namespace: `$1` the work folder, `$2` pppd. Sets up /dev and
/// /etc/ppp, then runs pppd once per file in `$1/peers`, its output and exit code to `$1/out`.
const NAMESPACE_SCRIPT: &str = r#"
set -eu
work=$1
pppd=$2
stage=$work/mnt
mount -t tmpfs -o mode=755 wispctl-test-dev "$stage"
mkdir "$stage/pts"
for n in null tty ptmx ppp; do : >"$stage/$n"; done
for n in null tty ptmx; do mount --bind "/dev/$n" "$stage/$n"; done
mount --rbind /dev/pts "$stage/pts"
mount --bind /dev/null "$stage/ppp"
mount --move "$stage" /dev
mount -t tmpfs -o mode=755 wispctl-test-etc-ppp "$stage"
: >"$stage/options"
: >"$stage/pap-secrets"
cp "$work/chap-secrets" "$stage/chap-secrets"
chmod 600 "$stage/pap-secrets" "$stage/chap-secrets"
mount --move "$stage" /etc/ppp
home=$(getent passwd "$(id -u)" | cut -d: -f6) || home=
if [ -n "$home" ] && [ -e "$home/.ppprc" ]; then mount --bind /dev/null "$home/.ppprc"; fi
set +e
for peer in "$work"/peers/*; do
  id=${peer##*/}
  timeout 30 "$pppd" /dev/null file "$peer" dryrun nodetach logfd 2 </dev/null >"$work/out/$id.out" 2>&1
  echo $? >"$work/out/$id.rc"
done
"#;

/// One spec as the user would write it in `pppd/<host>.yaml`.
struct Case {
    label: &'static str,
    yaml: String,
}

fn case(label: &'static str, yaml: &str) -> Case {
    Case {
        label,
        yaml: yaml.to_string(),
    }
}

/// Specs wispctl must render into files pppd accepts and reads back as written.
fn cases() -> Vec<Case> {
    let long_user = "u".repeat(255);
    vec![
        case(
            "defaults",
            "name: node-defaults\nserver: 198.51.100.20\nuser: tecnico\n",
        ),
        case(
            "every boolean flipped",
            "name: node-flipped\nserver: 198.51.100.21\nuser: tecnico\npersist: false\n\
             noauth: false\nrequire_mschap_v2: false\nlock: false\ndefaultroute: true\n\
             usepeerdns: true\n",
        ),
        case(
            "peer must authenticate (noauth false, require-mschap-v2)",
            "name: node-auth\nserver: 198.51.100.22\nuser: tecnico\nnoauth: false\nrequire_mschap_v2: true\n",
        ),
        case(
            "refuse every method",
            "name: node-refuse-all\nserver: 198.51.100.23\nuser: tecnico\n\
             refuse: [pap, eap, chap, mschap, mschap-v2]\n",
        ),
        case(
            "refuse nothing",
            "name: node-refuse-none\nserver: 198.51.100.24\nuser: tecnico\nrefuse: []\n",
        ),
        case(
            "mtu and mru 128",
            "name: node-mtu-min\nserver: 198.51.100.25\nuser: tecnico\nmtu: 128\nmru: 128\n",
        ),
        case(
            "mtu and mru 1500",
            "name: node-mtu-max\nserver: 198.51.100.26\nuser: tecnico\nmtu: 1500\nmru: 1500\n",
        ),
        case(
            "mtu 1500, mru 128",
            "name: node-mtu-mixed\nserver: 198.51.100.27\nuser: tecnico\nmtu: 1500\nmru: 128\n",
        ),
        case(
            "holdoff 0, maxfail 0",
            "name: node-zero\nserver: 198.51.100.28\nuser: tecnico\nholdoff: 0\nmaxfail: 0\n",
        ),
        case(
            "holdoff and maxfail 2147483647 (the largest pppd holds)",
            "name: node-int-max\nserver: 198.51.100.29\nuser: tecnico\n\
             holdoff: 2147483647\nmaxfail: 2147483647\n",
        ),
        case(
            "names with spaces",
            "name: node-spaces\nserver: 203.0.113.1\nuser: 'ops team'\nremotename: 'Head Office'\n",
        ),
        case(
            "names with double quotes",
            "name: node-dquote\nserver: 203.0.113.2\nuser: 'say \"hi\"'\nremotename: '\"quoted\"'\n",
        ),
        case(
            "names with backslashes that pppd would read as escapes",
            "name: node-backslash\nserver: 203.0.113.3\nuser: 'CORP\\sales'\n\
             remotename: 'dom\\new\\101\\x41'\n",
        ),
        case(
            "name ending in a backslash",
            "name: node-trailing-backslash\nserver: 203.0.113.4\nuser: 'trail\\'\n\
             remotename: 'end\\'\n",
        ),
        case(
            "names starting with #",
            "name: node-hash\nserver: 203.0.113.5\nuser: '#admin'\nremotename: '#1 node'\n",
        ),
        case(
            "names with $",
            "name: node-dollar\nserver: 203.0.113.6\nuser: '$USER'\nremotename: 'cost$5 $(id)'\n",
        ),
        case(
            "names with apostrophes",
            "name: node-apostrophe\nserver: 203.0.113.7\nuser: \"O'Brien\"\nremotename: \"'single'\"\n",
        ),
        case(
            "names with leading and trailing spaces",
            "name: node-padded\nserver: 203.0.113.8\nuser: '  padded  '\nremotename: ' x'\n",
        ),
        case(
            "non-ASCII names",
            "name: node-utf8\nserver: 203.0.113.9\nuser: 'José Ñúñez'\nremotename: 'nodo–sur'\n",
        ),
        case(
            "every special character, peer must authenticate (chap-secrets lookup)",
            "name: node-quoted-auth\nserver: 203.0.113.10\n\
             user: 'a \"b\" \\c #d $e ''f'' \\s'\nremotename: '#x \"y\" \\n z'\nnoauth: false\n",
        ),
        Case {
            label: "255-byte user, peer must authenticate (the longest name pppd holds)",
            yaml: format!(
                "name: node-long-user\nserver: 203.0.113.11\nuser: {long_user}\nnoauth: false\n"
            ),
        },
        case(
            "host name server",
            "name: node-hostname\nserver: vpn.example.net\nuser: tecnico\n",
        ),
        case(
            "IPv6 server",
            "name: node-ipv6\nserver: '2001:db8::7'\nuser: tecnico\n",
        ),
        case(
            "extra options",
            "name: node-options\nserver: 198.51.100.30\nuser: tecnico\noptions:\n\
             \x20 - ipparam office\n  - debug\n  - lcp-echo-interval 30\n\
             \x20 - lcp-echo-failure 4\n  - idle 600\n  - linkname x\n",
        ),
        case(
            "extra options with quotes, padding and a comment",
            "name: node-options-quoted\nserver: 198.51.100.31\nuser: tecnico\noptions:\n\
             \x20 - 'ipparam \"office west\"'\n  - \"linkname 'tun#2'\"\n\
             \x20 - '  idle 600   # ten minutes  '\n",
        ),
        case(
            "everything at once",
            "name: node-all\nserver: vpn-1.example.org\nuser: 'ops \"team\" \\1'\n\
             remotename: '#core $gw'\nmtu: 1300\nmru: 1200\nrequire_mschap_v2: true\n\
             refuse: [mschap, pap]\nnoauth: false\npersist: false\nholdoff: 17\nmaxfail: 9\n\
             defaultroute: true\nusepeerdns: true\nlock: false\noptions:\n\
             \x20 - ipparam 'branch 7'\n  - lcp-echo-interval 10\n  - lcp-echo-failure 3\n",
        ),
    ]
}

/// Values past what pppd can hold. wispctl's validation must refuse each of them, or pppd must
/// read it back unchanged; otherwise pppd silently runs with a different value.
fn limit_cases() -> Vec<Case> {
    let long = "u".repeat(256);
    let long_word = "w".repeat(1100);
    vec![
        Case {
            label: "256-byte user (pppd's names hold 255)",
            yaml: format!(
                "name: node-user-256\nserver: 203.0.113.20\nuser: {long}\nnoauth: false\n"
            ),
        },
        Case {
            label: "256-byte remotename (pppd's names hold 255)",
            yaml: format!(
                "name: node-remote-256\nserver: 203.0.113.21\nuser: tecnico\n\
                 remotename: {long}\nnoauth: false\n"
            ),
        },
        case(
            "holdoff 2147483648 (pppd stores an int)",
            "name: node-holdoff-big\nserver: 203.0.113.22\nuser: tecnico\nholdoff: 2147483648\n",
        ),
        case(
            "maxfail 4294967295 (pppd stores an int)",
            "name: node-maxfail-big\nserver: 203.0.113.23\nuser: tecnico\nmaxfail: 4294967295\n",
        ),
        Case {
            label: "option word of 1100 bytes (pppd reads words up to 1023)",
            yaml: format!(
                "name: node-long-option\nserver: 203.0.113.24\nuser: tecnico\n\
                 options:\n  - ipparam {long_word}\n"
            ),
        },
    ]
}

/// The peer of `case` as wispctl reads it: the only peer of a host's pppd file, loaded by
/// `desired::load`.
fn spec(case: &Case) -> PeerSpec {
    let (_dir, loaded) = load(case);
    let d = loaded.unwrap_or_else(|e| {
        panic!(
            "case {:?}: YAML does not load: {e}\n{}",
            case.label, case.yaml
        )
    });
    d.kind::<Pppd>().desired["vps"].peers[0].clone()
}

/// Runs wispctl's own validation on one peer, as the only peer of a host's pppd file.
fn validate(case: &Case) -> Result<(), String> {
    load(case).1.map(drop)
}

/// Loads a desired-state folder whose one pppd file holds the peer of `case` (its YAML
/// mapping, indented as the one item of `peers`).
fn load(
    case: &Case,
) -> (
    tempfile::TempDir,
    Result<wispctl::desired::DesiredState, String>,
) {
    let dir = tempfile::tempdir().unwrap();
    fs::write(dir.path().join("inventory.yaml"), "hosts:\n  vps: {}\n").unwrap();
    let mut file = String::from("host: vps\npeers:\n");
    for (i, line) in case.yaml.lines().enumerate() {
        file.push_str(if i == 0 { "  - " } else { "    " });
        file.push_str(line);
        file.push('\n');
    }
    fs::create_dir(dir.path().join("pppd")).unwrap();
    fs::write(dir.path().join("pppd/vps.yaml"), file).unwrap();
    let loaded =
        wispctl::desired::load(dir.path(), &SecretResolver::new()).map_err(|e| e.to_string());
    (dir, loaded)
}

fn render(spec: &PeerSpec) -> String {
    peer::render(spec, &format!("pppd.vps.peer[{:?}]", spec.name))
}

/// A chap-secrets entry that lets pppd authenticate the peer of `spec` (client: the peer's
/// name, server: ours), written by wispctl's renderer. pppd looks it up when the peer file
/// requires authentication, with the full names it holds: a name it cut short finds nothing.
fn auth_secret(spec: &PeerSpec) -> Option<String> {
    (spec.require_mschap_v2 && !spec.noauth).then(|| {
        chap::render_entry(&ChapEntry {
            client: remotename(spec).to_string(),
            server: spec.user.clone(),
            secret: Secret::new("s3cret \"x\""),
            addresses: vec!["*".into()],
        })
    })
}

fn remotename(spec: &PeerSpec) -> &str {
    spec.remotename.as_deref().unwrap_or(&spec.name)
}

/// What one pppd dryrun said.
struct Dryrun {
    /// The peer file path as pppd saw it (it names it in `# (from PATH)`).
    source: String,
    rc: i32,
    /// stdout and stderr, interleaved.
    output: Vec<u8>,
}

impl Dryrun {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.output).into_owned()
    }
}

/// An option pppd holds from the peer file, as its "options in effect" block prints it.
struct Held {
    value: Vec<u8>,
    /// The printed line reached pppd's print limit: the value may show cut short.
    at_print_limit: bool,
}

fn find_tool(name: &str, usual: &[&str]) -> Option<PathBuf> {
    let on_path: Vec<PathBuf> = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).map(|d| d.join(name)).collect())
        .unwrap_or_default();
    usual
        .iter()
        .map(PathBuf::from)
        .chain(on_path)
        .find(|p| p.is_file())
}

/// Runs `pppd ... dryrun` on each file, one private mount namespace for the batch, and returns
/// the results in the same order.
fn dryrun(files: &[String], chap_secrets: &str) -> Vec<Dryrun> {
    let pppd = find_tool("pppd", &["/usr/sbin/pppd", "/sbin/pppd"]).unwrap_or_else(|| {
        panic!(
            "pppd not found (looked in /usr/sbin, /sbin and PATH). This test checks generated \
             peer files with pppd's own parser and must not pass without it: install the \
             Debian package ppp (`bash tests/setup.sh`, as CI does)."
        )
    });
    let unshare =
        find_tool("unshare", &["/usr/bin/unshare", "/bin/unshare"]).unwrap_or_else(|| {
            panic!("unshare not found: install util-linux (`bash tests/setup.sh`, as CI does)")
        });
    let work = tempfile::Builder::new()
        .prefix("wispctl-pppd-")
        .tempdir()
        .unwrap();
    let w = work.path();
    for d in ["peers", "out", "mnt"] {
        fs::create_dir(w.join(d)).unwrap();
    }
    fs::write(w.join("chap-secrets"), chap_secrets).unwrap();
    let paths: Vec<PathBuf> = (0..files.len())
        .map(|i| w.join("peers").join(format!("{i:04}")))
        .collect();
    for (path, text) in paths.iter().zip(files) {
        fs::write(path, text).unwrap();
    }
    let out = Command::new(&unshare)
        .args([
            "-m",
            "--propagation",
            "private",
            "sh",
            "-c",
            NAMESPACE_SCRIPT,
            "sh",
        ])
        .arg(w)
        .arg(&pppd)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", unshare.display()));
    assert!(
        out.status.success(),
        "could not set up the private mount namespace for pppd (the test needs root, unshare \
         and /etc/ppp): {}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    paths
        .iter()
        .enumerate()
        .map(|(i, path)| {
            let read = |ext: &str| fs::read(w.join("out").join(format!("{i:04}.{ext}")));
            let rc = read("rc")
                .ok()
                .and_then(|b| String::from_utf8_lossy(&b).trim().parse().ok())
                .unwrap_or_else(|| {
                    panic!(
                        "no exit code for peer file {i} from the namespace script; its stderr:\n{}",
                        String::from_utf8_lossy(&out.stderr)
                    )
                });
            Dryrun {
                source: path.display().to_string(),
                rc,
                output: read("out").unwrap_or_default(),
            }
        })
        .collect()
}

/// The options pppd holds from the peer file, read from its "options in effect" block. Lines
/// look like `NAME[ VALUE]\t\t# (from SOURCE)`; pppd moves the `# (from ...)` to the next line
/// when the first one is full. Err on an option printed twice.
fn held(run: &Dryrun) -> Result<BTreeMap<String, Held>, String> {
    const HEADER: &[u8] = b"pppd options in effect:\n";
    let start = find(&run.output, HEADER).ok_or("no \"pppd options in effect:\" block")?;
    let block = &run.output[start + HEADER.len()..];
    let from = b"\t\t# (from ";
    let mut joined = Vec::new();
    let mut rest = block;
    while let Some(i) = find(rest, b"\n\t\t# (from ") {
        joined.extend_from_slice(&rest[..i]);
        rest = &rest[i + 1..];
    }
    joined.extend_from_slice(rest);
    let suffix = format!("{})", run.source);
    let mut out = BTreeMap::new();
    for line in joined.split(|&b| b == b'\n') {
        let Some(i) = find(line, from) else { continue };
        if &line[i + from.len()..] != suffix.as_bytes() {
            continue;
        }
        let entry = &line[..i];
        let (name, value) = match entry.iter().position(|&b| b == b' ') {
            Some(sp) => (&entry[..sp], entry[sp + 1..].to_vec()),
            None => (entry, Vec::new()),
        };
        let name = String::from_utf8_lossy(name).into_owned();
        let held = Held {
            value,
            at_print_limit: entry.len() >= PRINT_LIMIT,
        };
        if out.insert(name.clone(), held).is_some() {
            return Err(format!("pppd printed option {name:?} twice"));
        }
    }
    Ok(out)
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// A string as pppd's `%q` prints it: `"` and `\` escaped, control bytes (and 0x7f..0xa0, so
/// some UTF-8 continuation bytes) as `\t`, `\n`, `\b`, `\f` or `\xHH`.
fn pppd_q(s: &str) -> Vec<u8> {
    let mut out = Vec::new();
    for &c in s.as_bytes() {
        if c == b'"' || c == b'\\' {
            out.push(b'\\');
        }
        if c < 0x20 || (0x7f..0xa0).contains(&c) {
            out.push(b'\\');
            match c {
                b'\t' => out.push(b't'),
                b'\n' => out.push(b'n'),
                0x08 => out.push(b'b'),
                0x0c => out.push(b'f'),
                _ => out.extend_from_slice(format!("x{c:02x}").as_bytes()),
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// What pppd must hold from the peer file of `spec`, worked out from the spec's fields (not
/// from the rendered text).
fn expected(spec: &PeerSpec) -> BTreeMap<String, Vec<u8>> {
    let mut want = BTreeMap::new();
    let mut put = |name: &str, value: Vec<u8>| {
        want.insert(name.to_string(), value);
    };
    put("name", pppd_q(&spec.user));
    put("user", pppd_q(&spec.user));
    put("remotename", pppd_q(remotename(spec)));
    // A later `noauth` cancels `require-mschap-v2` (pppd.md, test-peers.md): not held then.
    if spec.require_mschap_v2 && !spec.noauth {
        put("require-mschap-v2", Vec::new());
    }
    for m in &spec.refuse {
        put(m.refuse_option(), Vec::new());
    }
    for (on, name) in [
        (spec.noauth, "noauth"),
        (spec.persist, "persist"),
        (spec.lock, "lock"),
        (spec.lock, "noipdefault"),
        (spec.defaultroute, "defaultroute"),
        (spec.usepeerdns, "usepeerdns"),
    ] {
        if on {
            put(name, Vec::new());
        }
    }
    put("holdoff", spec.holdoff.to_string().into_bytes());
    put("maxfail", spec.maxfail.to_string().into_bytes());
    put("mtu", spec.mtu.to_string().into_bytes());
    put("mru", spec.mru.to_string().into_bytes());
    put(
        "connect",
        pppd_q(&format!("/usr/sbin/pptp {} --nolaunchpppd", spec.server)),
    );
    for o in &spec.options {
        let w = words::split(o).unwrap_or_else(|e| panic!("option {o:?}: {e}"));
        if let Some((name, args)) = w.split_first() {
            put(name, pppd_q(&args.join(" ")));
        }
    }
    want
}

fn show(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// Everything wrong with one dryrun of the peer file of `spec`; empty when pppd accepted it and
/// holds exactly what the spec says.
fn problems(spec: &PeerSpec, run: &Dryrun) -> Vec<String> {
    let mut p = Vec::new();
    if run.rc != 0 {
        let text = run.text();
        let first = text.lines().next().unwrap_or("no output");
        p.push(format!("pppd exited {} (0 expected): {first}", run.rc));
        return p;
    }
    if find(&run.output, b"warning").is_some() {
        p.push("pppd printed a warning".into());
    }
    let held = match held(run) {
        Ok(h) => h,
        Err(e) => {
            p.push(e);
            return p;
        }
    };
    let want = expected(spec);
    for (name, value) in &want {
        match held.get(name) {
            None => p.push(format!(
                "pppd does not hold `{name} {}` from the file",
                show(value)
            )),
            Some(h) if h.value == *value => {}
            Some(h) if h.at_print_limit && value.starts_with(&h.value) => {}
            Some(h) => p.push(format!(
                "pppd holds `{name} {}`, the YAML says `{name} {}`",
                show(&h.value),
                show(value)
            )),
        }
    }
    for (name, h) in &held {
        if !want.contains_key(name) {
            p.push(format!(
                "pppd holds `{name} {}`, which the YAML does not ask for",
                show(&h.value)
            ));
        }
    }
    p
}

fn report(case: &Case, file: &str, run: &Dryrun, problems: &[String]) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "=== case {:?}", case.label);
    for pr in problems {
        let _ = writeln!(s, "  - {pr}");
    }
    let _ = writeln!(s, "--- YAML\n{}--- rendered peer file\n{file}", case.yaml);
    let _ = writeln!(s, "--- pppd (exit {}):\n{}", run.rc, run.text());
    s
}

/// Renders every case, runs pppd on the files in one batch, and returns a report per case that
/// failed.
fn check_all(cases: &[Case]) -> Vec<String> {
    let specs: Vec<PeerSpec> = cases.iter().map(spec).collect();
    let files: Vec<String> = specs.iter().map(render).collect();
    let secrets: String = specs
        .iter()
        .filter_map(auth_secret)
        .map(|l| l + "\n")
        .collect();
    let runs = dryrun(&files, &secrets);
    assert_eq!(runs.len(), cases.len());
    let mut failures = Vec::new();
    for (((case, spec), file), run) in cases.iter().zip(&specs).zip(&files).zip(&runs) {
        let p = problems(spec, run);
        if !p.is_empty() {
            failures.push(report(case, file, run, &p));
        }
    }
    failures
}

#[test]
fn every_generated_peer_file_passes_pppd_dryrun() {
    let cases = cases();
    for c in &cases {
        if let Err(e) = validate(c) {
            panic!(
                "case {:?} must be valid wispctl input, but validation says:\n{e}\n{}",
                c.label, c.yaml
            );
        }
    }
    let failures = check_all(&cases);
    assert!(
        failures.is_empty(),
        "{} of {} peer files rendered by wispctl fail pppd's own parser or do not read back as \
         written:\n\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
}

#[test]
fn values_pppd_cannot_hold_are_refused_or_read_back_unchanged() {
    let cases: Vec<Case> = limit_cases()
        .into_iter()
        .filter(|c| validate(c).is_ok())
        .collect();
    if cases.is_empty() {
        return;
    }
    let failures = check_all(&cases);
    assert!(
        failures.is_empty(),
        "wispctl's validation accepts {} value(s) that pppd cannot hold: validation must refuse \
         them, or the peer file must carry them intact:\n\n{}",
        failures.len(),
        failures.join("\n")
    );
}

/// The harness can fail: bad files give rc 2 through the same helper, and a file that pppd
/// accepts but reads differently from the spec is reported by the same comparison.
#[test]
fn harness_catches_rejected_and_misread_files() {
    let misquoted_case = case(
        "remotename written without quotes",
        "name: node-naive\nserver: 198.51.100.40\nuser: tecnico\nremotename: 'corp\\sales'\n",
    );
    let misquoted_spec = spec(&misquoted_case);
    let good = render(&misquoted_spec);
    let naive = good.replace("remotename \"corp\\\\sales\"", "remotename corp\\sales");
    assert_ne!(
        naive, good,
        "the quoted remotename was not found in:\n{good}"
    );

    let defaults = spec(&case(
        "defaults",
        "name: node-defaults\nserver: 198.51.100.20\nuser: tecnico\n",
    ));
    // With an empty chap-secrets, a peer that must authenticate finds no secret: so the
    // lookup that proves long names intact really runs.
    let auth = spec(&case(
        "peer must authenticate",
        "name: node-auth\nserver: 198.51.100.22\nuser: tecnico\nnoauth: false\nrequire_mschap_v2: true\n",
    ));
    let files = vec![
        "# bad number\nmtu notanumber\n".to_string(),
        "no-such-option\n".to_string(),
        "mtu\n".to_string(),
        naive,
        render(&defaults),
        render(&auth),
    ];
    let runs = dryrun(&files, "");
    let rejected = [
        "invalid numeric parameter 'notanumber' for mtu option",
        "unrecognized option 'no-such-option'",
        "too few parameters for option 'mtu'",
    ];
    for (run, message) in runs.iter().zip(rejected) {
        assert_eq!(run.rc, 2, "expected rc 2 ({message}), got:\n{}", run.text());
        assert!(
            run.text().contains(message),
            "expected {message:?} in:\n{}",
            run.text()
        );
        let p = problems(&defaults, run);
        assert!(
            p.iter().any(|p| p.contains("exited 2")),
            "a rejected file must be reported: {p:?}"
        );
    }

    // pppd accepts the unquoted name but reads `\s` as a space: the comparison must catch it.
    let misread = &runs[3];
    assert_eq!(misread.rc, 0, "{}", misread.text());
    let p = problems(&misquoted_spec, misread);
    assert!(
        p.iter()
            .any(|p| p.contains("`remotename corp ales`, the YAML says `remotename corp\\\\sales`")),
        "the misread remotename was not reported: {p:?}\n{}",
        misread.text()
    );

    // And the same comparison passes the defaults, holding `mtu 1400`.
    let ok = &runs[4];
    assert_eq!(
        problems(&defaults, ok),
        Vec::<String>::new(),
        "{}",
        ok.text()
    );
    assert_eq!(held(ok).unwrap()["mtu"].value, b"1400");

    let no_secret = &runs[5];
    assert_eq!(no_secret.rc, 1, "{}", no_secret.text());
    assert!(
        no_secret
            .text()
            .contains("couldn't find any suitable secret"),
        "{}",
        no_secret.text()
    );
    assert!(!problems(&auth, no_secret).is_empty());
}
