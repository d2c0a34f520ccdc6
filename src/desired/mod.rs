//! Desired state: the YAML files of a `desired-state/` folder, loaded and validated offline.
//!
//! Layout: `inventory.yaml` (the run-wide guards and one section of targets per kind) and one
//! folder per kind (`pppd/`, named by [`crate::kinds::KindDef::NAME`]) holding one file per
//! target. The loader knows no kind: it iterates the registry ([`crate::kinds::ALL`]); each
//! kind parses and validates its own section and files through [`crate::yaml::FileCheck`].
//!
//! Loading never touches the network (`plan` and `drift` may read targets meanwhile, from
//! what [`Inventory::begin`] validated: see [`crate::engine::early`]). Every problem is reported with `file:line:column`, all of
//! them at once. Secrets are resolved here (environment, files) so that `validate` catches a
//! missing or empty one before any device is contacted.
//!
//! The folder comes from a pull request: hostile input. A file is read only when it is a
//! regular file inside the folder (links resolved), within the parser's size cap, and its
//! text must be UTF-8 without control characters; see `read_source`.

pub mod inventory;

use std::any::Any;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use sha2::{Digest, Sha256};

use inventory::{Guards, InventoryFile};

use crate::kinds::def::InventoryNames;

pub use crate::kinds::def::DesiredState;
use crate::kinds::def::ResourceFile;
use crate::secret::SecretResolver;
use crate::yaml::diag::error_at;
pub use crate::yaml::{Diagnostic, LoadErrors, Severity};

/// Loads and validates a desired-state folder.
pub fn load(dir: &Path, resolver: &SecretResolver) -> Result<DesiredState, LoadErrors> {
    Inventory::begin(dir, resolver.clone()).finish()
}

/// A desired-state folder halfway loaded: its inventory read, parsed and validated (the
/// secrets it references resolved) and its resource files listed, but not yet read. The
/// first half of [`load`]: what the inventory names is known, so a read-only command can
/// begin reading its targets while the resource files load ([`Inventory::finish`], which
/// gives the same result and the same diagnostics, in the same order, as [`load`]).
pub struct Inventory {
    dir: PathBuf,
    resolver: SecretResolver,
    diags: Vec<Diagnostic>,
    hasher: Sha256,
    guards: Guards,
    names: InventoryNames,
    /// Each kind's validated inventory section; empty when the inventory did not load.
    targets: BTreeMap<&'static str, Box<dyn Any + Send + Sync>>,
    /// The resource files, sorted: relative path (`pppoe/balanceador.yaml`) and path.
    files: Vec<(String, PathBuf)>,
    /// The inventory file could not be read: nothing else is looked at.
    unreadable: bool,
    /// SHA-256 of the inventory's bytes.
    inventory_digest: [u8; 32],
    /// The inventory's `reconcile:` section, validated.
    reconcile: crate::controller::config::Reconcile,
}

impl Inventory {
    /// Reads, parses and validates `dir/inventory.yaml` and lists the resource files.
    pub fn begin(dir: &Path, resolver: SecretResolver) -> Inventory {
        let mut inv = Inventory {
            dir: dir.to_path_buf(),
            resolver,
            diags: Vec::new(),
            hasher: Sha256::new(),
            guards: Guards::default(),
            names: InventoryNames::default(),
            targets: BTreeMap::new(),
            files: Vec::new(),
            unreadable: false,
            inventory_digest: [0; 32],
            reconcile: crate::controller::config::Reconcile::default(),
        };
        let inv_path = dir.join("inventory.yaml");
        let inv_text = match read_source(&inv_path, dir, "cannot read inventory: ") {
            Ok(text) => text,
            Err(d) => {
                inv.diags.push(d);
                inv.unreadable = true;
                return inv;
            }
        };
        inv.hasher.update(b"inventory.yaml\0");
        inv.hasher.update(inv_text.as_bytes());
        inv.inventory_digest = Sha256::digest(inv_text.as_bytes()).into();
        let parsed =
            crate::yaml::parse::parse::<InventoryFile>(&inv_path, &inv_text, &mut inv.diags);
        // Each kind validates its inventory section; an unloadable inventory leaves them empty.
        if let Some((file, index)) = parsed {
            inv.names = file.sections.names();
            inv.guards = file.guards;
            let mut check =
                crate::yaml::FileCheck::new(&inv_path, &index, dir, &inv.resolver, &mut inv.diags)
                    .for_credentials();
            for (kind, section) in file.sections.into_parts() {
                inv.targets.insert(
                    kind.name(),
                    kind.validate_section(section, file.allow_inline_secrets, &mut check),
                );
            }
            inv.reconcile = crate::controller::config::validate(
                file.reconcile,
                &mut check,
                &inv.names,
                file.allow_inline_secrets,
            );
        }
        inv.files = resource_files(dir, &mut inv.diags);
        inv
    }

    /// Whether the inventory loaded with no error (its targets can be reached).
    pub fn is_valid(&self) -> bool {
        !self.targets.is_empty() && !self.diags.iter().any(|d| d.severity == Severity::Error)
    }

    /// Kind `kind`'s validated inventory section (what [`crate::kinds::AnyKind`] validated
    /// it into), when the inventory loaded.
    pub fn section(&self, kind: &str) -> Option<&(dyn Any + Send + Sync)> {
        self.targets.get(kind).map(|t| t.as_ref())
    }

    /// Whether the folder holds a resource file named after target `name` of kind `kind`
    /// (`pppoe/balanceador.yaml` or `.yml`): the usual layout, not a rule (the file names
    /// its target inside).
    pub fn has_file_named(&self, kind: &str, name: &str) -> bool {
        self.files.iter().any(|(rel, _)| {
            rel.strip_prefix(kind)
                .and_then(|r| r.strip_prefix('/'))
                .and_then(|f| f.strip_suffix(".yaml").or_else(|| f.strip_suffix(".yml")))
                == Some(name)
        })
    }

    /// Reads, parses and validates every resource file: the rest of [`load`].
    pub fn finish(self) -> Result<DesiredState, LoadErrors> {
        let Inventory {
            dir,
            resolver,
            mut diags,
            mut hasher,
            guards,
            names,
            mut targets,
            files: listed,
            unreadable,
            inventory_digest,
            reconcile,
        } = self;
        let dir = dir.as_path();
        if unreadable {
            return Err(LoadErrors(diags));
        }
        let mut files: BTreeMap<&'static str, Box<dyn Any>> = crate::kinds::ALL
            .iter()
            .map(|k| (k.name(), k.begin_files()))
            .collect();
        let inventory_loaded = !targets.is_empty();
        // Read and hash every file in order first; then each kind loads its files as one
        // batch (parsed on every core, validated in order). The files come sorted by path, so
        // a kind's files are together and diagnostics keep that order.
        let mut texts: Vec<(&'static str, PathBuf, String)> = Vec::new();
        let mut file_digests: BTreeMap<PathBuf, [u8; 32]> = BTreeMap::new();
        for (rel, path) in listed {
            let text = match read_source(&path, dir, "cannot read: ") {
                Ok(t) => t,
                Err(d) => {
                    diags.push(d);
                    continue;
                }
            };
            hasher.update(rel.as_bytes());
            hasher.update([0]);
            hasher.update(text.as_bytes());
            file_digests.insert(path.clone(), Sha256::digest(text.as_bytes()).into());
            let folder = rel.split('/').next().unwrap_or_default();
            if let Some(kind) = crate::kinds::by_name(folder) {
                texts.push((kind.name(), path, text));
            }
        }
        let mut order: Vec<&'static str> = Vec::new();
        for (k, _, _) in &texts {
            if !order.contains(k) {
                order.push(k);
            }
        }
        for kind in order.iter().filter_map(|k| crate::kinds::by_name(k)) {
            let mut batch: Vec<ResourceFile<'_>> = Vec::new();
            let mut kind_diags: Vec<Vec<Diagnostic>> = Vec::new();
            let mine: Vec<&(&'static str, PathBuf, String)> =
                texts.iter().filter(|(k, _, _)| *k == kind.name()).collect();
            if mine.is_empty() {
                continue;
            }
            kind_diags.resize_with(mine.len(), Vec::new);
            for ((_, path, text), d) in mine.iter().zip(kind_diags.iter_mut()) {
                batch.push(ResourceFile {
                    path,
                    text,
                    diags: d,
                    dir,
                    resolver: &resolver,
                    names: inventory_loaded.then_some(&names),
                });
            }
            let acc = files.get_mut(kind.name()).expect("every kind began");
            kind.load_files(acc.as_mut(), &mut batch);
            drop(batch);
            diags.extend(kind_diags.into_iter().flatten());
        }

        let (errors, warnings): (Vec<_>, Vec<_>) = diags
            .into_iter()
            .partition(|d| d.severity == Severity::Error);
        if !errors.is_empty() {
            return Err(LoadErrors(errors));
        }
        let mut target_digests = BTreeMap::new();
        let mut kinds = BTreeMap::new();
        for k in crate::kinds::ALL {
            let t = targets
                .remove(k.name())
                .expect("no errors means the inventory loaded");
            let f = files.remove(k.name()).expect("every kind began");
            let (set, sources) = k.finish(t, f);
            // A target's input: the inventory (its entry, and sections other kinds read) and
            // its own file.
            let names = names.get(k.section()).unwrap_or_default();
            for name in names {
                let mut h = Sha256::new();
                h.update(inventory_digest);
                if let Some(d) = sources.get(name).and_then(|p| file_digests.get(p)) {
                    h.update(d);
                }
                target_digests.insert(
                    crate::plan::target_address(k.name(), name),
                    hex::encode(h.finalize()),
                );
            }
            kinds.insert(k.name(), set);
        }
        Ok(DesiredState {
            root: dir.to_path_buf(),
            guards,
            digest: hex::encode(hasher.finalize()),
            warnings,
            kinds,
            target_digests,
            reconcile: Arc::new(reconcile),
        })
    }
}

/// Reads a desired-state file whole, as the text of a YAML file, or says why not at its place
/// (`prefix` starts the message). A pull request may carry anything git stores, so the file
/// must be a regular file (links followed; a FIFO, socket or device is refused without being
/// opened), must stay inside the folder `dir` once its links are resolved (a link to
/// `/etc/wispctl.env` is refused unread), is refused over the parser's cap before reading and
/// read no further than it, and must be UTF-8 without control characters (a Latin-1 byte or
/// binary data is reported at its own line and column). No message quotes the file.
fn read_source(path: &Path, dir: &Path, prefix: &str) -> Result<String, Diagnostic> {
    use crate::untrusted::file;
    let max = crate::yaml::parse::MAX_FILE_BYTES as u64;
    let bytes = file::read(path, max, Some(dir))
        .map_err(|e| error_at(path, 1, 1, format!("{prefix}{e}")))?;
    file::text(bytes).map_err(|e| {
        let (line, column) = e.place();
        error_at(path, line, column, e.to_string())
    })
}

/// The YAML files under the kind folders, sorted; anything else YAML-looking is an error.
fn resource_files(dir: &Path, diags: &mut Vec<Diagnostic>) -> Vec<(String, PathBuf)> {
    let folders: Vec<&str> = crate::kinds::ALL.iter().map(|k| k.name()).collect();
    let mut out = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return out;
    };
    let mut entries: Vec<_> = entries.filter_map(Result::ok).collect();
    entries.sort_by_key(|e| e.file_name());
    for e in entries {
        let name = e.file_name().to_string_lossy().into_owned();
        let path = e.path();
        if name.starts_with('.') {
            continue;
        }
        if path.is_dir() {
            if !stays_inside(&path, dir) {
                diags.push(error_at(
                    &path,
                    1,
                    1,
                    crate::untrusted::file::FileError::LeavesFolder.to_string(),
                ));
                continue;
            }
            let known = crate::kinds::by_name(&name).is_some();
            let Ok(inner) = std::fs::read_dir(&path) else {
                continue;
            };
            let mut inner: Vec<_> = inner.filter_map(Result::ok).map(|e| e.path()).collect();
            inner.sort();
            for p in inner {
                if !is_yaml(&p) {
                    continue;
                }
                if known {
                    let file = p.file_name().unwrap_or_default().to_string_lossy();
                    out.push((format!("{name}/{file}"), p));
                } else {
                    diags.push(error_at(
                        &p,
                        1,
                        1,
                        format!(
                            "unknown folder {name:?}: resource files live in {}",
                            folders.join(", ")
                        ),
                    ));
                }
            }
        } else if is_yaml(&path) && name != "inventory.yaml" {
            diags.push(error_at(
                &path,
                1,
                1,
                format!(
                    "unexpected file: the top level holds only inventory.yaml; resource files live in {}/",
                    folders.join("/, ")
                ),
            ));
        }
    }
    out
}

/// Whether a folder, its links resolved, lies inside `dir` (its own listing is not read
/// otherwise: a link to `/etc` would name the files there).
fn stays_inside(folder: &Path, dir: &Path) -> bool {
    match (std::fs::canonicalize(folder), std::fs::canonicalize(dir)) {
        (Ok(f), Ok(d)) => f.starts_with(d),
        _ => false,
    }
}

fn is_yaml(p: &Path) -> bool {
    matches!(
        p.extension().and_then(|e| e.to_str()),
        Some("yaml") | Some("yml")
    )
}
