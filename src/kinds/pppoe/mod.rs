//! Kind `pppoe`: MikroTik PPPoE secrets (`/ppp/secret`) over the RouterOS API.
//!
//! Target: a router of `inventory.yaml` `routers`; resources: its secrets, from
//! `pppoe/<router>.yaml`. Observe: one connection per router and one pipelined round trip
//! reading `/ppp/secret`, `/ppp/profile` and `/ppp/active`. Diff (pure): only the fields the
//! YAML manages; read-only (`last-*`) and unknown fields are ignored; v6/v7 value forms are
//! normalised. Apply, minimal: one `add` per new secret, one `set` per changed secret carrying
//! only the changed fields, one batched `remove`, one print to verify, then one batched
//! `/ppp/active/remove` for the sessions to kick (in waves with `kick_rollout`). A connection whose reply stream breaks (garbage,
//! a reply for a tag not in flight, silence, a reply past the router's `limits`) sends nothing
//! more: each change not answered fails as not attempted (never sent) or unknown (sent, no
//! answer; the next plan settles it), and nothing is verified on it.
//!
//! Ownership: a secret is wispctl's when its comment ends with [`crate::ownership::TAG`], or
//! when the YAML names it (it is then adopted: the tag is added). Only owned secrets are ever
//! removed.
//!
//! Passwords: compared directly when the API user may read them; otherwise against the keyed
//! hash of what wispctl last applied, kept in `STATE_DIR/pppoe/<router>.json` (never the
//! password itself).
//!
//! A router is refused (nothing planned for it, see [`PppoeError`]) when a profile the YAML
//! names is missing on it, or it lists a secret the YAML names more than once.
//!
//! Parts, by role: [`spec`] (the YAML model, the `routers` section, validation), [`client`]
//! (connect and log in, over the `routeros-api` crate), [`observe`] (one bulk read per router,
//! fingerprints), [`diff`] (pure), [`apply`] (writes, verification, one outcome per change),
//! [`state`] (what wispctl remembers between runs), [`provider`] (the engine's `Provider`,
//! gluing them), [`import`] and `twin` (the lab router).

pub mod apply;
pub mod client;
pub mod diff;
pub mod import;
pub mod observe;
pub mod provider;
pub mod snapshot;
pub mod spec;
pub mod state;
#[cfg(feature = "lab")]
pub mod twin;

use std::sync::Arc;

use routeros_api::client::ApiError;

use crate::engine::{BoxFuture, Context, DynProvider, NoTwin};
use crate::kinds::def::{DesiredState, InventoryNames};
use crate::kinds::def::{Imported, KindDef, KindFailure, KindSet};
use crate::plan::address;
use crate::yaml::FileCheck;

/// The pppoe kind.
pub struct Kind;

/// Why a router could not be read or planned.
#[derive(Debug, thiserror::Error)]
pub enum PppoeError {
    /// The API failed: connection, protocol, login, a timeout or an unexpected trap.
    #[error("router {router}: {source}")]
    Api {
        /// The router.
        router: String,
        /// What failed.
        #[source]
        source: ApiError,
    },
    /// The TLS handshake failed or the certificate was refused.
    #[error("router {router}: TLS: {reason}")]
    Tls {
        /// The router.
        router: String,
        /// Why.
        reason: String,
    },
    /// Profiles the YAML names are missing on the router: nothing is planned for it (every
    /// `set` and `add` naming one would be refused).
    #[error(
        "profiles that do not exist on router {router}: {}; create them on the router or fix the YAML",
        join(.missing)
    )]
    MissingProfiles {
        /// The router.
        router: String,
        /// Each missing profile with the first secret naming it, in YAML order.
        missing: Vec<MissingProfile>,
    },
    /// The router lists a secret the YAML names more than once: which one is meant cannot be
    /// told, so nothing is planned for it.
    #[error(
        "router {router} lists secret {} more than once; wispctl cannot tell which one the YAML means: remove the duplicates on the router",
        join(.names.iter().map(|n| format!("{n:?}")))
    )]
    DuplicateSecrets {
        /// The router.
        router: String,
        /// The names listed more than once, sorted.
        names: Vec<String>,
    },
    /// A lab run and no lab router.
    #[error(transparent)]
    NoTwin(#[from] NoTwin),
    /// The read begun while the desired state loaded gave nothing (its deadline passed, or
    /// it failed as a bug).
    #[error("router {router}: {failure}")]
    Early {
        /// The router.
        router: String,
        /// Why.
        failure: crate::engine::early::EarlyFailure,
    },
    /// The plan would disconnect more sessions on this router than its own cap allows.
    #[error(
        "router {router}: {disconnects} active sessions would be disconnected, over this router's cap of {cap} (routers.{router}.max_disconnects); nothing will be applied to it. Raise the cap if the disconnects are meant"
    )]
    OverRouterCap {
        /// The router.
        router: String,
        /// Sessions the plan disconnects there.
        disconnects: usize,
        /// The router's cap.
        cap: usize,
    },
    /// The kicks' waves would not fit the router's apply deadline: the apply would be cut
    /// midway.
    #[error(
        "router {router}: the kicks need {waves} wave(s) and {} of waiting (kick_rollout.pause between waves, then redial_wait), not less than deadline.apply_secs ({}); raise the deadline or the batch, or shorten the waits",
        crate::engine::deadline::words(*.pauses),
        crate::engine::deadline::words(*.deadline)
    )]
    WavesOverDeadline {
        /// The router.
        router: String,
        /// Waves the plan's kicks take.
        waves: usize,
        /// The pauses between them and the redial wait, in all.
        pauses: std::time::Duration,
        /// The router's apply deadline.
        deadline: std::time::Duration,
    },
    /// Work on the blocking pool did not complete (a bug, or the run shutting down).
    #[error("router {router}: internal error: {reason}")]
    Internal {
        /// The router.
        router: String,
        /// What failed.
        reason: String,
    },
}

/// A profile a secret names that the router does not have.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MissingProfile {
    /// The profile.
    pub profile: String,
    /// The secret that names it.
    pub secret: String,
}

impl std::fmt::Display for MissingProfile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:?} (secret {:?})", self.profile, self.secret)
    }
}

/// `a, b, c`.
fn join<T: std::fmt::Display>(items: impl IntoIterator<Item = T>) -> String {
    items
        .into_iter()
        .map(|i| i.to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

/// The address of a secret in plans: `pppoe.ROUTER.secret["NAME"]`.
pub fn secret_address(router: &str, name: &str) -> String {
    address(Kind::NAME, router, "secret", name)
}

impl KindDef for Kind {
    const NAME: &'static str = "pppoe";
    const SECTION: &'static str = "routers";
    const SECTION_DOC: &'static str = "MikroTik routers reached over the RouterOS API, by name.";
    const TARGET_LABEL: &'static str = "router";
    const TARGET_FIELD: &'static str = "router";

    type TargetSpec = spec::RouterSpec;
    type Target = spec::Router;
    type File = spec::PppoeFile;
    type Desired = spec::PppoeDesired;
    type Checks = spec::RemoteAddresses;

    fn validate_target(
        name: &str,
        r: &spec::RouterSpec,
        at: &str,
        inline_ok: bool,
        check: &mut FileCheck<'_>,
    ) -> Option<spec::Router> {
        spec::validate_router(name, r, at, inline_ok, check)
    }

    fn file_target(file: &spec::PppoeFile) -> &str {
        &file.router
    }

    fn validate_file(
        file: spec::PppoeFile,
        check: &mut FileCheck<'_>,
        remote: &mut spec::RemoteAddresses,
        _inventory: &InventoryNames,
    ) -> Option<spec::PppoeDesired> {
        spec::validate(file, check, remote)
    }

    fn summary(set: &KindSet<Self>) -> String {
        format!("{} router(s)", set.targets.len())
    }

    fn provider(
        set: &KindSet<Self>,
        _desired: &DesiredState,
        ctx: &Context,
    ) -> Arc<dyn DynProvider> {
        crate::engine::provider(provider::PppoeProvider::new(
            &set.targets,
            &set.desired,
            ctx,
        ))
    }

    fn read_early(name: &str, router: &spec::Router, ctx: &Context) -> bool {
        provider::begin_early_read(name, router, ctx);
        true
    }

    fn import(
        desired: &DesiredState,
        target: &str,
        ctx: &Context,
    ) -> Option<BoxFuture<Result<Imported, KindFailure>>> {
        let router = desired.kind::<Kind>().targets.get(target)?.clone();
        let (name, ctx) = (target.to_string(), ctx.clone());
        Some(Box::pin(async move {
            let addr = ctx.route::<std::net::SocketAddr>(Self::SECTION, &name)?;
            // The read is bounded in all, as observe's is by the engine.
            let read = crate::engine::deadline::within(router.deadline.observe, async {
                let mut conn = client::connect(&name, &router, addr).await?;
                observe::read_secrets(&mut conn)
                    .await
                    .map_err(|source| PppoeError::Api {
                        router: name.clone(),
                        source,
                    })
            });
            let (secrets, passwords_visible) = read.await??;
            let imported = import::render(&name, &secrets, passwords_visible);
            Ok(Imported {
                yaml: imported.yaml,
                env: imported.env,
                warnings: imported.warnings,
                summary: format!("{} secret(s)", secrets.len()),
            })
        }))
    }

    #[cfg(feature = "lab")]
    fn twin() -> Option<&'static dyn crate::lab::twin::Twin> {
        Some(&twin::Twin)
    }
}
