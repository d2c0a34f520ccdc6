//! `wispctl init DIR`: a network repository an operator can commit as is: the example desired
//! state (inventory and one commented file per kind, the same files the demo runs), the JSON
//! Schemas and the editor settings that use them, a `.gitignore` for state and secret files, a
//! short README, a GitHub Actions workflow and a GitLab CI file that plan every change against
//! the snapshot the VPS publishes, and the VPS side (a systemd service and timer, and the
//! script that takes and publishes the snapshot).

use std::path::{Path, PathBuf};

use thiserror::Error;

/// Why `init` did not scaffold.
#[derive(Debug, Error)]
pub enum InitError {
    /// The folder exists and holds something.
    #[error("{0} exists and is not empty: init writes only into a new or empty folder")]
    NotEmpty(PathBuf),
    /// A file could not be written.
    #[error("cannot write {path}: {source}")]
    Write {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
}

/// The files of a new repository: (path under DIR, content, mode).
pub fn files() -> Vec<(String, String, u32)> {
    let text = |p: &str, s: &str| (p.to_string(), s.to_string(), 0o644);
    let mut out = vec![
        text(
            "desired-state/inventory.yaml",
            include_str!("../desired-state/inventory.yaml"),
        ),
        text(
            "desired-state/pppoe/balanceador.yaml",
            include_str!("../desired-state/pppoe/balanceador.yaml"),
        ),
        text(
            "desired-state/uisp/main.yaml",
            include_str!("../desired-state/uisp/main.yaml"),
        ),
        text(
            "desired-state/airos/clientes.yaml",
            include_str!("../desired-state/airos/clientes.yaml"),
        ),
        text(
            "desired-state/pppd/vps.yaml",
            include_str!("../desired-state/pppd/vps.yaml"),
        ),
        text("README.md", include_str!("../templates/init/README.md")),
        text(".gitignore", include_str!("../templates/init/gitignore")),
        text(
            ".vscode/settings.json",
            include_str!("../templates/init/vscode-settings.json"),
        ),
        text(
            ".github/workflows/wispctl.yml",
            include_str!("../templates/init/.github/workflows/wispctl.yml"),
        ),
        text(
            ".github/wispctl-problem-matcher.json",
            include_str!("../templates/init/.github/wispctl-problem-matcher.json"),
        ),
        text(
            ".gitlab-ci.yml",
            include_str!("../templates/init/.gitlab-ci.yml"),
        ),
        text(
            "vps/wispctl-snapshot.service",
            include_str!("../templates/init/vps/wispctl-snapshot.service"),
        ),
        text(
            "vps/wispctl-snapshot.timer",
            include_str!("../templates/init/vps/wispctl-snapshot.timer"),
        ),
        (
            "vps/publish-snapshot.sh".into(),
            include_str!("../templates/init/vps/publish-snapshot.sh").into(),
            0o755,
        ),
    ];
    for (name, schema) in crate::schemas::all() {
        out.push((format!("schemas/{name}"), schema, 0o644));
    }
    out
}

/// Scaffolds a repository in `dir` (new, or empty); the paths written, relative to it.
pub fn init(dir: &Path) -> Result<Vec<String>, InitError> {
    match std::fs::read_dir(dir) {
        Ok(mut entries) => {
            if entries.next().is_some() {
                return Err(InitError::NotEmpty(dir.to_path_buf()));
            }
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(source) => {
            return Err(InitError::Write {
                path: dir.to_path_buf(),
                source,
            });
        }
    }
    let mut written = Vec::new();
    for (rel, content, mode) in files() {
        let path = dir.join(&rel);
        let write = || -> std::io::Result<()> {
            if let Some(parent) = path.parent() {
                std::fs::create_dir_all(parent)?;
            }
            crate::files::write_atomic(&path, content.as_bytes(), mode)
        };
        write().map_err(|source| InitError::Write {
            path: path.clone(),
            source,
        })?;
        written.push(rel);
    }
    Ok(written)
}
