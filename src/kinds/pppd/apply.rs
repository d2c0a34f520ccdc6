//! Writes one host's planned changes and verifies each: every peer file on its own, every
//! chap-secrets edit of the run in one atomic write, exactly one outcome per change.
//!
//! Every file is checked against what observe read just before it is replaced, so an edit made
//! by hand since the plan is never overwritten; the host's `/etc/ppp` is locked meanwhile.
//! Owns the order of a host's writes and their outcomes; does not decide what changes
//! ([`super::diff`] does) nor how a file is reached ([`super::client`]).

use super::chap::ChapEdit;
use super::client::{FILE_MODE, HostFile, HostFiles, LOCK_WAIT};
use super::observe::HostLive;
use super::{Op, WriteError};
use crate::engine::Item;
use crate::plan::Action;
use crate::plan::report::Outcome;

/// Applies one host's items: waits for the host's `/etc/ppp` lock (on tokio's clock), then
/// does the file work on a blocking thread, since it fsyncs.
pub async fn apply_host(host: &str, items: Vec<Item<Op>>, live: HostLive) -> Vec<Outcome> {
    let files = HostFiles::new(live.root.clone());
    let lock = match files.lock(LOCK_WAIT).await {
        Ok(lock) => lock,
        Err(why) => return all_failed(&items, &why.to_string()),
    };
    let planned: Vec<(String, Action)> = items
        .iter()
        .map(|i| (i.change.address.clone(), i.change.action))
        .collect();
    let host = host.to_string();
    let written = tokio::task::spawn_blocking(move || {
        let _lock = lock;
        write_host(&host, &files, &items, &live)
    })
    .await;
    written.unwrap_or_else(|e| {
        planned
            .iter()
            .map(|(address, action)| {
                Outcome::failed(
                    address,
                    *action,
                    format!("internal error while writing: {e}"),
                )
            })
            .collect()
    })
}

fn all_failed(items: &[Item<Op>], why: &str) -> Vec<Outcome> {
    items
        .iter()
        .map(|i| Outcome::failed(&i.change.address, i.change.action, why))
        .collect()
}

fn outcome(item: &Item<Op>, result: &Result<(), WriteError>) -> Outcome {
    let (address, action) = (&item.change.address, item.change.action);
    match result {
        Ok(()) => Outcome::applied(address, action),
        Err(why) => Outcome::failed(address, action, why.to_string()),
    }
}

/// The host's writes, in item order for peers; chap-secrets once, after them.
fn write_host(host: &str, files: &HostFiles, items: &[Item<Op>], live: &HostLive) -> Vec<Outcome> {
    let mut outcomes: Vec<Option<Outcome>> = vec![None; items.len()];
    let mut chap_edits = Vec::new();
    let mut chap_items = Vec::new();
    for (i, item) in items.iter().enumerate() {
        let result = match &item.op {
            Op::WritePeer { name, content } => write_peer(files, live, name, content),
            Op::DeletePeer { name } => delete_peer(files, live, name),
            Op::RemoveLeftover { file } => remove_leftover(files, file),
            Op::Chap(edit) => {
                chap_edits.push(edit.clone());
                chap_items.push(i);
                continue;
            }
            Op::ChapMode => {
                chap_items.push(i);
                continue;
            }
        };
        tracing::info!(host, address = %item.change.address, ok = result.is_ok(), "peer file");
        outcomes[i] = Some(outcome(item, &result));
    }
    if !chap_items.is_empty() {
        let result = write_chap(files, live, &chap_edits);
        for i in chap_items {
            outcomes[i] = Some(outcome(&items[i], &result));
        }
        tracing::info!(host, ok = result.is_ok(), "chap-secrets");
    }
    outcomes
        .into_iter()
        .map(|o| o.expect("every item has an outcome"))
        .collect()
}

fn write_peer(
    files: &HostFiles,
    live: &HostLive,
    name: &str,
    content: &str,
) -> Result<(), WriteError> {
    let file = HostFile::Peer(name.to_string());
    let now = files.read_text(&file)?;
    let before = live.peers.get(name).map(|l| (l.content.as_str(), l.mode));
    if now.as_ref().map(|(c, m)| (c.as_str(), *m)) != before {
        return Err(WriteError::Changed { file });
    }
    files.write(&file, content.as_bytes())?;
    match files.read_text(&file)? {
        Some((c, m)) if c == content && m == FILE_MODE => Ok(()),
        _ => Err(WriteError::NotAsWritten { file }),
    }
}

/// Removes a temporary file left behind, when it still is one (the host's folder lock is held:
/// no other wispctl is writing it).
fn remove_leftover(files: &HostFiles, file: &HostFile) -> Result<(), WriteError> {
    if !files.exists(file) {
        return Ok(());
    }
    if !files.is_regular(file) {
        return Err(WriteError::Changed { file: file.clone() });
    }
    files.remove(file)?;
    if files.exists(file) {
        return Err(WriteError::StillThere { file: file.clone() });
    }
    Ok(())
}

fn delete_peer(files: &HostFiles, live: &HostLive, name: &str) -> Result<(), WriteError> {
    let file = HostFile::Peer(name.to_string());
    let now = files.read_text(&file)?;
    let before = live.peers.get(name).map(|l| l.content.as_str());
    if now.as_ref().map(|(c, _)| c.as_str()) != before {
        return Err(WriteError::Changed { file });
    }
    files.remove(&file)?;
    if files.exists(&file) {
        return Err(WriteError::StillThere { file });
    }
    Ok(())
}

fn write_chap(files: &HostFiles, live: &HostLive, edits: &[ChapEdit]) -> Result<(), WriteError> {
    let file = HostFile::ChapSecrets;
    let now = files.read(&file)?;
    if now.as_ref().map(|(b, _)| b.as_slice()) != live.chap.as_ref().map(|c| c.bytes.as_slice()) {
        return Err(WriteError::Changed { file });
    }
    let text = live.chap_file().edited(edits);
    files.write(&file, &text)?;
    match files.read(&file)? {
        Some((t, m)) if t == text && m == FILE_MODE => Ok(()),
        _ => Err(WriteError::NotAsWritten { file }),
    }
}

#[cfg(test)]
mod tests {
    use std::collections::{BTreeMap, BTreeSet};

    use super::*;
    use crate::kinds::pppd::observe::LivePeer;
    use crate::plan::Change;
    use crate::plan::report::Status;

    fn write_item(name: &str, content: &str) -> Item<Op> {
        Item {
            change: Change {
                impact: Default::default(),
                address: crate::kinds::pppd::peer_address("vps", name),
                action: Action::Create,
                reason: None,
                fields: vec![],
                content: None,
                side_effects: vec![],
            },
            collection: "peer",
            op: Op::WritePeer {
                name: name.into(),
                content: content.into(),
            },
        }
    }

    fn nothing_read(root: &std::path::Path) -> HostLive {
        HostLive {
            root: root.to_path_buf(),
            peers: BTreeMap::new(),
            symlinks: BTreeSet::new(),
            chap: None,
            leftovers: Vec::new(),
        }
    }

    /// A second apply of the same host waits for the first one's lock (without blocking the
    /// runtime: the clock here is paused), then fails every change with the lock's reason.
    #[tokio::test(start_paused = true)]
    async fn a_second_writer_of_the_same_host_fails_every_change_after_its_wait() {
        let tmp = tempfile::tempdir().unwrap();
        let first = HostFiles::new(tmp.path()).lock(LOCK_WAIT).await.unwrap();
        let start = tokio::time::Instant::now();
        let outcomes = apply_host(
            "vps",
            vec![write_item("a", "x\n"), write_item("b", "y\n")],
            nothing_read(tmp.path()),
        )
        .await;
        assert!(start.elapsed() >= LOCK_WAIT, "{:?}", start.elapsed());
        assert_eq!(outcomes.len(), 2);
        for o in &outcomes {
            assert_eq!(o.status, Status::Failed);
            assert_eq!(
                o.reason.as_deref(),
                Some("another wispctl is writing /etc/ppp on this host (its folder lock is held)")
            );
        }
        assert!(!tmp.path().join("etc/ppp/peers/a").exists());
        drop(first);
    }

    #[tokio::test]
    async fn writes_and_verifies_and_refuses_a_file_changed_since_read() {
        let tmp = tempfile::tempdir().unwrap();
        let peers = tmp.path().join("etc/ppp/peers");
        std::fs::create_dir_all(&peers).unwrap();
        std::fs::write(peers.join("b"), "edited by hand\n").unwrap();
        let outcomes = apply_host(
            "vps",
            vec![write_item("a", "x\n"), write_item("b", "y\n")],
            nothing_read(tmp.path()),
        )
        .await;
        assert_eq!(outcomes[0].status, Status::Applied);
        assert_eq!(std::fs::read_to_string(peers.join("a")).unwrap(), "x\n");
        assert_eq!(outcomes[1].status, Status::Failed);
        assert_eq!(
            outcomes[1].reason.as_deref(),
            Some("/etc/ppp/peers/b changed since it was read; run plan again")
        );
        assert_eq!(
            std::fs::read_to_string(peers.join("b")).unwrap(),
            "edited by hand\n"
        );
        // As read, it is deleted.
        let mut live = nothing_read(tmp.path());
        live.peers.insert(
            "b".into(),
            LivePeer {
                content: "edited by hand\n".into(),
                mode: 0o644,
            },
        );
        let mut delete = write_item("b", "");
        delete.change.action = Action::Delete;
        delete.op = Op::DeletePeer { name: "b".into() };
        let outcomes = apply_host("vps", vec![delete], live).await;
        assert_eq!(outcomes[0].status, Status::Applied, "{:?}", outcomes[0]);
        assert!(!peers.join("b").exists());
    }
}
