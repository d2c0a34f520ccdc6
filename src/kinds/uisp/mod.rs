//! Kind `uisp`: sites and device assignments on a UISP (NMS) server.
//!
//! Target: a server of `inventory.yaml` `uisp` (the section is the shared
//! [`crate::uisp_api`]'s); resources: its sites and which site each device belongs to, from
//! `uisp/<server>.yaml`. Observe: `GET /sites` and `GET /devices` once per run, concurrently.
//! Diff (pure): sites by name, devices by MAC. Apply, in order: create sites (parents first),
//! update sites (read, modify, write), authorize and move devices (one
//! `POST /devices/authorize` per destination site), unassign, ghost cleanup when the YAML asks
//! (the key is reset before each delete; a device with a name or an IP is never deleted),
//! delete owned empty sites (deepest first, only with `prune: owned`), then one read of both
//! lists to verify.
//!
//! Ownership: a site is wispctl's when its note ends with the tag, or when the YAML declares
//! it.
//!
//! Parts: [`spec`] (the YAML model and validation), [`observe`] (the one read and the
//! fingerprints), [`diff`] (pure), [`apply`] (writes and verification), [`provider`] (the
//! engine's view of the three), [`import`] and `twin` (the lab UISP server). The HTTP client is
//! the shared [`crate::uisp_api`]'s.

pub mod apply;
pub mod diff;
#[cfg(test)]
mod fixtures;
pub mod import;
pub mod observe;
pub mod provider;
pub mod snapshot;
pub mod spec;
#[cfg(feature = "lab")]
pub mod twin;

use std::sync::Arc;

use crate::engine::{BoxFuture, Context, DynProvider};
use crate::kinds::def::{DesiredState, InventoryNames};
use crate::kinds::def::{Imported, KindDef, KindFailure, KindSet};
use crate::uisp_api::{self, Server, ServerSpec, UispError};
use crate::yaml::FileCheck;

/// The uisp kind.
pub struct Kind;

/// Why a UISP server could not be read or planned.
#[derive(Debug, thiserror::Error)]
pub enum UispKindError {
    /// The API failed (transport, TLS, status, an answer that is not what UISP sends).
    #[error("UISP {server}: {source}")]
    Api {
        /// The server.
        server: String,
        /// What failed.
        #[source]
        source: UispError,
    },
    /// Two live sites share a name, and sites are matched by name.
    #[error(
        "UISP {server} has two sites named {name:?}: rename one by hand before wispctl manages sites by name"
    )]
    DuplicateSiteName {
        /// The server.
        server: String,
        /// The shared name.
        name: String,
    },
    /// The YAML names sites (as a parent, or as a device's site) that neither it nor UISP has.
    #[error(
        "sites referenced but neither declared nor in UISP {server}: {}",
        quoted(names)
    )]
    UndeclaredSites {
        /// The server.
        server: String,
        /// Every such name, sorted.
        names: Vec<String>,
    },
    /// A declared site exists with the other type; UISP cannot change it.
    #[error(
        "site {site:?} is {} in UISP {server} but {} in the YAML: UISP cannot change a site's type",
        with_article(live),
        with_article(desired.as_str())
    )]
    TypeChange {
        /// The server.
        server: String,
        /// The site's name.
        site: String,
        /// Its type in UISP (`site`, `endpoint`, or what UISP says).
        live: String,
        /// Its type in the YAML.
        desired: spec::SiteKind,
    },
    /// The parents the YAML declares, with the ones it leaves to UISP, would put a site under
    /// itself (UISP refuses such a move).
    #[error(
        "the parents declared for sites {} in UISP {server} form a loop with the parents they have there: a site cannot be below itself",
        quoted(sites)
    )]
    ParentLoop {
        /// The server.
        server: String,
        /// The sites on the loop, starting at the first in the YAML's order.
        sites: Vec<String>,
    },
}

/// `"a", "b"`.
fn quoted(names: &[String]) -> String {
    let list: Vec<String> = names.iter().map(|s| format!("{s:?}")).collect();
    list.join(", ")
}

/// `a site`, `an endpoint`.
fn with_article(kind: &str) -> String {
    let article = if kind.starts_with(['a', 'e', 'i', 'o', 'u']) {
        "an"
    } else {
        "a"
    };
    format!("{article} {kind}")
}

impl KindDef for Kind {
    const NAME: &'static str = "uisp";
    const SECTION: &'static str = uisp_api::SECTION;
    const SECTION_DOC: &'static str = "UISP (NMS) servers, by name.";
    const TARGET_LABEL: &'static str = "UISP server";
    const TARGET_FIELD: &'static str = "uisp";
    // One bulk API read of every site and device: every 10 minutes.
    const RECONCILE_INTERVAL: std::time::Duration = std::time::Duration::from_secs(600);

    type TargetSpec = ServerSpec;
    type Target = Server;
    type File = spec::UispFile;
    type Desired = spec::UispDesired;
    type Checks = ();

    fn validate_target(
        name: &str,
        spec: &ServerSpec,
        at: &str,
        inline_ok: bool,
        check: &mut FileCheck<'_>,
    ) -> Option<Server> {
        uisp_api::validate_server(name, spec, at, inline_ok, check)
    }

    fn file_target(file: &spec::UispFile) -> &str {
        &file.uisp
    }

    fn validate_file(
        file: spec::UispFile,
        check: &mut FileCheck<'_>,
        _checks: &mut (),
        _inventory: &InventoryNames,
    ) -> Option<spec::UispDesired> {
        spec::validate(file, check)
    }

    fn summary(set: &KindSet<Self>) -> String {
        format!("{} UISP server(s)", set.targets.len())
    }

    fn provider(
        set: &KindSet<Self>,
        _desired: &DesiredState,
        ctx: &Context,
    ) -> Arc<dyn DynProvider> {
        crate::engine::provider(provider::UispProvider::new(&set.targets, &set.desired, ctx))
    }

    fn import(
        desired: &DesiredState,
        target: &str,
        ctx: &Context,
    ) -> Option<BoxFuture<Result<Imported, KindFailure>>> {
        let server = desired.kind::<Kind>().targets.get(target)?.clone();
        let (name, ctx) = (target.to_string(), ctx.clone());
        Some(Box::pin(async move {
            let api = |source: UispError| UispKindError::Api {
                server: name.clone(),
                source,
            };
            let client = uisp_api::client(&ctx, &name, &server).map_err(api)?;
            // The read is bounded in all, as observe's is by the engine.
            let live =
                crate::engine::deadline::within(server.deadline.observe, observe::read(&client))
                    .await?
                    .map_err(api)?;
            let imported = import::render(&name, &live.sites, &live.devices);
            Ok(Imported {
                yaml: imported.yaml,
                env: String::new(),
                warnings: imported.warnings,
                summary: format!(
                    "{} site(s), {} device(s) read",
                    live.sites.len(),
                    live.devices.len()
                ),
            })
        }))
    }

    #[cfg(feature = "lab")]
    fn twin() -> Option<&'static dyn crate::lab::twin::Twin> {
        Some(&twin::Twin)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_name_the_server_and_the_sites() {
        let e = UispKindError::TypeChange {
            server: "main".into(),
            site: "Torre".into(),
            live: "endpoint".into(),
            desired: spec::SiteKind::Site,
        };
        assert_eq!(
            e.to_string(),
            "site \"Torre\" is an endpoint in UISP main but a site in the YAML: UISP cannot change a site's type"
        );
        let e = UispKindError::UndeclaredSites {
            server: "main".into(),
            names: vec!["Casa \"X\"".into(), "Zona".into()],
        };
        assert_eq!(
            e.to_string(),
            "sites referenced but neither declared nor in UISP main: \"Casa \\\"X\\\"\", \"Zona\""
        );
        let e = UispKindError::DuplicateSiteName {
            server: "main".into(),
            name: "Torre".into(),
        };
        assert_eq!(
            e.to_string(),
            "UISP main has two sites named \"Torre\": rename one by hand before wispctl manages sites by name"
        );
    }

    #[test]
    fn the_api_error_is_kept_as_the_source() {
        use std::error::Error as _;
        let e = UispKindError::Api {
            server: "main".into(),
            source: UispError::Setup("no route".into()),
        };
        assert_eq!(e.to_string(), "UISP main: no route");
        assert_eq!(e.source().unwrap().to_string(), "no route");
    }
}
