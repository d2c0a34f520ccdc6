//! `wispctl reconcile --git REMOTE BRANCH`: the desired-state folder is a checkout that the
//! controller keeps at the remote branch's head by fetching and fast-forwarding, never
//! merging. A checkout with local changes, or whose branch has diverged from the remote's,
//! is refused and reported (the last good state keeps running).
//!
//! The `git` program is run directly (no shell), with no terminal prompt, each command with
//! a deadline; the remote and branch come from the command line, never from the YAML.

use std::path::{Path, PathBuf};
use std::time::Duration;

/// Why the checkout could not be brought up to date.
#[derive(Debug, thiserror::Error)]
pub enum GitError {
    /// `git` could not be run, or failed.
    #[error("git {args}: {message}")]
    Command {
        /// The arguments.
        args: String,
        /// What it printed (its first lines) or why it did not run.
        message: String,
    },
    /// Local changes in the checkout.
    #[error(
        "the checkout {} has local changes ({count} file(s)): refused; commit or discard them (the controller never merges)",
        repo.display()
    )]
    Dirty {
        /// The checkout.
        repo: PathBuf,
        /// How many files differ.
        count: usize,
    },
    /// The local branch has commits the remote's does not.
    #[error(
        "the checkout {} has diverged from {remote}/{branch} (HEAD {head} is not an ancestor of {fetched}): refused; only fast-forwards are applied",
        repo.display()
    )]
    Diverged {
        /// The checkout.
        repo: PathBuf,
        /// Remote.
        remote: String,
        /// Branch.
        branch: String,
        /// The local head.
        head: String,
        /// The fetched head.
        fetched: String,
    },
    /// A remote or branch name that git could read as an option.
    #[error("{0:?} is not a remote or branch name wispctl passes to git")]
    BadName(String),
}

/// The checkout and what it follows.
#[derive(Debug, Clone)]
pub struct GitSource {
    repo: PathBuf,
    remote: String,
    branch: String,
}

/// What a sync did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Synced {
    /// Already at the remote's head.
    UpToDate(String),
    /// Fast-forwarded.
    Advanced {
        /// The previous head.
        from: String,
        /// The new head.
        to: String,
    },
}

const DEADLINE: Duration = Duration::from_secs(120);

async fn git(repo: &Path, args: &[&str]) -> Result<String, GitError> {
    let fail = |message: String| GitError::Command {
        args: redact(&args.join(" ")),
        message: redact(&message),
    };
    let mut cmd = tokio::process::Command::new("git");
    cmd.arg("-C")
        .arg(repo)
        .args(args)
        .env("GIT_TERMINAL_PROMPT", "0")
        .env("GIT_ASKPASS", "true")
        .env("LC_ALL", "C")
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true);
    let out = tokio::time::timeout(DEADLINE, cmd.output())
        .await
        .map_err(|_| fail(format!("no answer within {}s", DEADLINE.as_secs())))?
        .map_err(|e| fail(format!("cannot run git: {e}")))?;
    if !out.status.success() {
        let err = String::from_utf8_lossy(&out.stderr);
        let first: Vec<&str> = err.lines().take(3).collect();
        return Err(fail(first.join("; ")));
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// Removes the user information of every URL in `text` (`https://user:token@host/...` →
/// `https://***@host/...`): a remote given with its credentials never reaches a message.
fn redact(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(i) = rest.find("://") {
        let (head, tail) = rest.split_at(i + 3);
        out.push_str(head);
        let end = tail
            .find(|c: char| c == '/' || c.is_whitespace())
            .unwrap_or(tail.len());
        match tail[..end].rfind('@') {
            Some(at) => {
                out.push_str("***");
                out.push_str(&tail[at..end]);
            }
            None => out.push_str(&tail[..end]),
        }
        rest = &tail[end..];
    }
    out.push_str(rest);
    out
}

fn name(s: &str) -> Result<String, GitError> {
    if s.is_empty() || s.starts_with('-') || s.chars().any(|c| c.is_control()) {
        return Err(GitError::BadName(s.into()));
    }
    Ok(s.into())
}

impl GitSource {
    /// The checkout that holds `dir`, following `remote`'s `branch`.
    pub async fn open(dir: &Path, remote: &str, branch: &str) -> Result<GitSource, GitError> {
        let (remote, branch) = (name(remote)?, name(branch)?);
        let top = git(dir, &["rev-parse", "--show-toplevel"]).await?;
        Ok(GitSource {
            repo: PathBuf::from(top),
            remote,
            branch,
        })
    }

    /// The checkout's head commit.
    pub async fn head(&self) -> Result<String, GitError> {
        git(&self.repo, &["rev-parse", "HEAD"]).await
    }

    /// Fetches the branch and fast-forwards the checkout to it.
    pub async fn sync(&self) -> Result<Synced, GitError> {
        // Untracked files count: the loader would read them.
        let dirty = git(&self.repo, &["status", "--porcelain"]).await?;
        if !dirty.is_empty() {
            return Err(GitError::Dirty {
                repo: self.repo.clone(),
                count: dirty.lines().count(),
            });
        }
        git(
            &self.repo,
            &["fetch", "--quiet", "--no-tags", &self.remote, &self.branch],
        )
        .await?;
        let head = self.head().await?;
        let fetched = git(&self.repo, &["rev-parse", "FETCH_HEAD"]).await?;
        if head == fetched {
            return Ok(Synced::UpToDate(head));
        }
        if git(
            &self.repo,
            &["merge-base", "--is-ancestor", &head, &fetched],
        )
        .await
        .is_err()
        {
            return Err(GitError::Diverged {
                repo: self.repo.clone(),
                remote: redact(&self.remote),
                branch: self.branch.clone(),
                head,
                fetched,
            });
        }
        git(&self.repo, &["merge", "--ff-only", "--quiet", &fetched]).await?;
        Ok(Synced::Advanced {
            from: head,
            to: fetched,
        })
    }
}

/// A fingerprint of a folder's files (relative path, size, modification time), for noticing
/// a change without reading them; `.git` is left out. Links are not followed.
pub fn folder_fingerprint(dir: &Path) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    let mut stack = vec![dir.to_path_buf()];
    let mut seen = 0usize;
    while let Some(d) = stack.pop() {
        let Ok(rd) = std::fs::read_dir(&d) else {
            continue;
        };
        let mut entries: Vec<_> = rd.flatten().collect();
        entries.sort_by_key(|e| e.file_name());
        for e in entries {
            seen += 1;
            if seen > 100_000 {
                return h.finish();
            }
            if e.file_name() == ".git" {
                continue;
            }
            let Ok(m) = e.path().symlink_metadata() else {
                continue;
            };
            e.path().hash(&mut h);
            m.len().hash(&mut h);
            m.modified().ok().hash(&mut h);
            if m.is_dir() {
                stack.push(e.path());
            }
        }
    }
    h.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_in_a_remote_url_never_reach_a_message() {
        assert_eq!(
            redact("fetch https://user:tok3n@git.example.net/net.git main"),
            "fetch https://***@git.example.net/net.git main"
        );
        assert_eq!(redact("fetch origin main"), "fetch origin main");
        assert_eq!(
            redact("ssh://git@host:22/x and https://a@b"),
            "ssh://***@host:22/x and https://***@b"
        );
    }

    #[test]
    fn names_git_could_read_as_options_are_refused() {
        assert!(name("--upload-pack=x").is_err());
        assert!(name("").is_err());
        assert!(name("origin").is_ok());
    }

    #[test]
    fn the_fingerprint_moves_when_a_file_changes() {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(d.path().join("a.yaml"), "a: 1\n").unwrap();
        let before = folder_fingerprint(d.path());
        assert_eq!(before, folder_fingerprint(d.path()));
        std::fs::write(d.path().join("a.yaml"), "a: 12\n").unwrap();
        assert_ne!(before, folder_fingerprint(d.path()));
    }
}
