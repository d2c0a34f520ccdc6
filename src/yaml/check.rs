//! The checks a kind runs on one file's values after deserialising: errors and warnings placed
//! at `file:line:column` by the file's [`LocationIndex`], secret references resolved (an empty
//! value refused), and files the YAML names checked.

use std::path::Path;

use super::diag::{Diagnostic, Severity};
use super::locate::LocationIndex;
use crate::secret::{ResolveError, Secret, SecretRef, SecretResolver};

/// Checks of one file's values after deserialisation, with positions from its index.
pub struct FileCheck<'a> {
    pub(crate) file: &'a Path,
    index: &'a LocationIndex<'a>,
    root: &'a Path,
    resolver: &'a SecretResolver,
    diags: &'a mut Vec<Diagnostic>,
    errors: usize,
    /// The secrets checked are connection credentials (the inventory's): with an offline
    /// resolver, one that cannot be resolved is left unresolved.
    credentials: bool,
}

impl<'a> FileCheck<'a> {
    pub(crate) fn new(
        file: &'a Path,
        index: &'a LocationIndex<'a>,
        root: &'a Path,
        resolver: &'a SecretResolver,
        diags: &'a mut Vec<Diagnostic>,
    ) -> Self {
        FileCheck {
            file,
            index,
            root,
            resolver,
            diags,
            errors: 0,
            credentials: false,
        }
    }

    /// The secrets this check resolves are connection credentials (the inventory's): see
    /// [`SecretResolver::offline`].
    pub(crate) fn for_credentials(mut self) -> Self {
        self.credentials = true;
        self
    }

    /// The desired-state folder.
    pub fn root(&self) -> &Path {
        self.root
    }

    /// The file being checked.
    pub fn file(&self) -> &Path {
        self.file
    }

    /// A path the file gives, resolved against the file's folder.
    pub fn relative(&self, path: &Path) -> std::path::PathBuf {
        self.file.parent().unwrap_or(self.root).join(path)
    }

    /// Line and column of a value, by its path (`peers[2].name`; a key: `hosts.vps#key`).
    pub fn place(&self, path: &str) -> (usize, usize) {
        self.index.find(path)
    }

    /// Reports an error at a value.
    pub fn error(&mut self, path: &str, message: String) {
        self.errors += 1;
        self.push(Severity::Error, path, message);
    }

    /// Reports a warning at a value.
    pub fn warn(&mut self, path: &str, message: String) {
        self.push(Severity::Warning, path, message);
    }

    /// How many errors this file has so far.
    pub fn error_count(&self) -> usize {
        self.errors
    }

    fn push(&mut self, severity: Severity, path: &str, message: String) {
        let (line, column) = self.place(path);
        self.diags.push(Diagnostic {
            severity,
            file: self.file.to_path_buf(),
            line,
            column,
            message,
        });
    }

    /// Resolves a secret reference, reporting a missing source or a refused inline value.
    pub fn secret(
        &mut self,
        reference: &SecretRef,
        path: &str,
        inline_allowed: bool,
    ) -> Option<Secret> {
        if let SecretRef::Inline(_) = reference {
            if !inline_allowed {
                self.error(
                    path,
                    "inline secrets are refused: use { env: NAME } or { file: PATH }, or set allow_inline_secrets: true in this file".into(),
                );
                return None;
            }
            self.warn(
                path,
                "inline secret: it is in git in plain text; prefer { env: NAME } or { file: PATH }"
                    .into(),
            );
        }
        let base = self.file.parent().unwrap_or(self.root);
        match self.resolver.resolve(reference, base) {
            Ok(s) => Some(s),
            // Never sent: no target is contacted by this command.
            Err(_) if self.credentials && self.resolver.is_offline() => {
                Some(Secret::new("(unresolved: no target is contacted)"))
            }
            // A value this machine does not hold (a variable not set, a file not there) is left
            // unresolved when asked; a file that is there but refused is still an error.
            Err(ResolveError::EnvNotSet(_)) if self.resolver.leaves_unresolved() => {
                Some(Secret::unresolved())
            }
            Err(ResolveError::File { reason, .. })
                if self.resolver.leaves_unresolved() && reason.is_not_found() =>
            {
                Some(Secret::unresolved())
            }
            // Resolved, but to nothing: no device is ever sent an empty credential.
            Err(why @ ResolveError::Empty(_)) => {
                self.error(path, why.to_string());
                None
            }
            Err(why) => {
                self.error(path, format!("unresolvable secret reference: {why}"));
                None
            }
        }
    }

    /// Checks a file the YAML names for another part to read later (a CA file, a known-hosts
    /// file), reporting at `path` (`what` names it: `CA file`): a regular file, links
    /// followed, of at most `max` bytes, checked without opening it. A missing file is an
    /// error unless `missing_ok`. Whether it passed.
    pub fn named_file(
        &mut self,
        path: &str,
        what: &str,
        file: &Path,
        max: u64,
        missing_ok: bool,
    ) -> bool {
        match crate::untrusted::file::check(file, max) {
            Ok(()) => true,
            Err(e) if missing_ok && e.is_not_found() => true,
            Err(e) if e.is_not_found() => {
                self.error(path, format!("{what} {} does not exist", file.display()));
                false
            }
            Err(e) => {
                self.error(path, format!("{what} {}: {e}", file.display()));
                false
            }
        }
    }
}
