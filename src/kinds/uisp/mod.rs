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
//! Parts: [`spec`] (the YAML model and validation), [`provider`] (observe, diff, apply),
//! [`import`] and `twin` (the lab UISP server).

pub mod import;
pub mod provider;
pub mod spec;
#[cfg(feature = "lab")]
pub mod twin;

use std::sync::Arc;

use crate::desired::check::FileCheck;
use crate::desired::{DesiredState, InventoryNames};
use crate::engine::{BoxFuture, Context, DynProvider};
use crate::kinds::{Imported, KindDef, KindSet};
use crate::uisp_api::{self, Server, ServerSpec, UispError};

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
    /// The server's state is such that wispctl must not touch it.
    #[error("{0}")]
    Refused(String),
}

impl KindDef for Kind {
    const NAME: &'static str = "uisp";
    const SECTION: &'static str = uisp_api::SECTION;
    const SECTION_DOC: &'static str = "UISP (NMS) servers, by name.";
    const TARGET_LABEL: &'static str = "UISP server";
    const TARGET_FIELD: &'static str = "uisp";

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

    fn provider(set: &KindSet<Self>, _desired: &DesiredState, ctx: &Context) -> Arc<dyn DynProvider> {
        crate::engine::provider(provider::UispProvider::new(
            &set.targets,
            &set.desired,
            ctx,
        ))
    }

    fn import(
        desired: &DesiredState,
        target: &str,
        ctx: &Context,
    ) -> Option<BoxFuture<Result<Imported, anyhow::Error>>> {
        let server = desired.kind::<Kind>().targets.get(target)?.clone();
        let (name, ctx) = (target.to_string(), ctx.clone());
        Some(Box::pin(async move {
            let api = |source: UispError| UispKindError::Api {
                server: name.clone(),
                source,
            };
            let client = uisp_api::client(&ctx, &name, &server).map_err(api)?;
            let (sites, devices) = tokio::join!(client.sites(), client.devices());
            let (sites, devices) = (sites.map_err(api)?, devices.map_err(api)?);
            let imported = import::render(&name, &sites, &devices);
            Ok(Imported {
                yaml: imported.yaml,
                env: String::new(),
                warnings: imported.warnings,
                summary: format!(
                    "{} site(s), {} device(s) read",
                    sites.len(),
                    devices.len()
                ),
            })
        }))
    }

    #[cfg(feature = "lab")]
    fn twin() -> Option<&'static dyn crate::lab::Twin> {
        Some(&twin::Twin)
    }
}
