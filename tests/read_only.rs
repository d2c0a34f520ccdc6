//! `plan` and `drift` write nothing anywhere: not the lab's targets, not the state folder (not
//! even to create it or its hash key), not remembered credentials, not host keys trusted on
//! first use. Only `apply` (under its lock) and `plan --out` (the plan file, and the key the
//! saved plan needs) write.

mod common;

use common::{Lab, snapshot};

#[test]
fn plan_and_drift_write_nothing_anywhere() {
    let lab = Lab::new();
    // Unknown host keys, so that `--trust-new-host-keys` has something to trust.
    let known = lab.lab().join("airos-known-hosts");
    std::fs::write(&known, "# nothing pinned yet\n").unwrap();
    let fresh_state = lab.tmp.path().join("fresh-state");
    let before = snapshot(lab.tmp.path());
    let state = fresh_state.to_str().unwrap();
    for (args, codes) in [
        (vec!["plan", "--trust-new-host-keys"], &[0][..]),
        (
            vec!["plan", "--trust-new-host-keys", "--format", "json"],
            &[0],
        ),
        (
            vec!["drift", "--trust-new-host-keys", "--format", "markdown"],
            &[2],
        ),
        // Without trust the antennas are refused (exit 1): still nothing written.
        (vec!["plan"], &[1]),
        (vec!["drift"], &[1]),
    ] {
        let mut all = vec!["--state-dir", state];
        all.extend(args.iter().copied());
        let run = lab.run(&all);
        assert!(
            codes.contains(&run.code),
            "{args:?} exited {}:\n{}",
            run.code,
            run.all()
        );
        assert!(
            !fresh_state.exists(),
            "{args:?} created the state folder {}",
            fresh_state.display()
        );
        assert_unchanged(&args, &before, &snapshot(lab.tmp.path()));
    }
}

#[test]
fn apply_is_what_records_a_trusted_host_key_and_plan_out_makes_the_key() {
    let lab = Lab::new();
    let known = lab.lab().join("airos-known-hosts");
    std::fs::write(&known, "# nothing pinned yet\n").unwrap();
    let state = lab.tmp.path().join("state");
    let s = state.to_str().unwrap();
    let plan = lab.tmp.path().join("plan.json");
    lab.run(&[
        "--state-dir",
        s,
        "plan",
        "--trust-new-host-keys",
        "--out",
        plan.to_str().unwrap(),
    ])
    .expect(0);
    assert!(
        state.join("hash.key").is_file(),
        "a saved plan needs a lasting key"
    );
    assert_eq!(
        std::fs::read_to_string(&known).unwrap(),
        "# nothing pinned yet\n",
        "a plan does not pin host keys"
    );
    lab.run(&[
        "--state-dir",
        s,
        "apply",
        "--auto-approve",
        "--trust-new-host-keys",
    ])
    .expect(0);
    let pinned = std::fs::read_to_string(&known).unwrap();
    assert!(
        pinned.lines().filter(|l| l.contains("SHA256:")).count() >= 5,
        "apply pins the keys it trusted:\n{pinned}"
    );
}

#[test]
fn an_apply_with_nothing_to_change_keeps_what_reading_learned() {
    let lab = Lab::new();
    lab.run(&["apply", "--auto-approve"]).expect(0);
    let remembered = lab.lab().join("state/airos/clientes.credentials.json");
    assert!(
        remembered.is_file(),
        "the first apply remembers credentials"
    );
    std::fs::remove_file(&remembered).unwrap();
    lab.run(&["plan"]).expect(0);
    assert!(!remembered.exists(), "a plan remembers nothing");
    let run = lab.run(&["apply", "--auto-approve"]);
    run.expect(0);
    assert!(run.stdout.contains("No changes."), "{}", run.stdout);
    assert!(
        remembered.is_file(),
        "an apply with nothing to change still keeps which credentials worked"
    );
}

/// A refused command creates nothing: an apply that cannot ask for approval (no terminal, no
/// `--auto-approve`) is refused before it makes the state folder, its hash key or the lock;
/// an `accept-host-key` for a group or host that does not exist makes no state either.
#[test]
fn refused_commands_create_nothing() {
    let lab = Lab::new();
    let fresh_state = lab.tmp.path().join("fresh-state");
    let state = fresh_state.to_str().unwrap();
    let fingerprint = "SHA256:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA";
    for (args, why) in [
        (vec!["apply"], "pass --auto-approve"),
        (
            vec!["accept-host-key", "nosuch", "10.10.1.21", fingerprint],
            "is not a target with SSH host keys",
        ),
        (
            vec!["accept-host-key", "clientes", "10.99.99.99", fingerprint],
            "10.99.99.99",
        ),
    ] {
        let before = snapshot(lab.tmp.path());
        let mut all = vec!["--state-dir", state];
        all.extend(args.iter().copied());
        let run = lab.run(&all);
        assert_eq!(run.code, 1, "{args:?}: {}", run.all());
        assert!(run.stderr.contains(why), "{args:?}: {}", run.stderr);
        assert!(
            !fresh_state.exists(),
            "{args:?} created {}",
            fresh_state.display()
        );
        assert_unchanged(&args, &before, &snapshot(lab.tmp.path()));
    }
}

/// Nothing under the lab's folder differs between two snapshots.
#[track_caller]
fn assert_unchanged<K: Ord + std::fmt::Debug, V: PartialEq>(
    args: &[&str],
    before: &std::collections::BTreeMap<K, V>,
    after: &std::collections::BTreeMap<K, V>,
) {
    let changed: Vec<&K> = before
        .keys()
        .chain(after.keys())
        .filter(|p| before.get(*p) != after.get(*p))
        .collect();
    assert!(changed.is_empty(), "{args:?} wrote {changed:?}");
}
