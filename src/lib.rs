//! wispctl keeps a wireless ISP's network in line with YAML files in git.
//!
//! The flow goes one way: [`desired`] (load and validate YAML, offline) → [`engine`] (observe
//! each target once, diff per kind, guard) → [`plan`] (the one model every output is rendered
//! from) → render, or apply. Each resource kind is one folder under [`kinds`] with the same
//! parts (spec, client, observe, diff, apply, import, twin), registered once in
//! [`kinds::ALL`]; nothing outside its folder names a kind.
//!
//! Layers, each importing only from those below it: shared vocabulary ([`secret`], [`names`],
//! [`mac`], [`ownership`], [`files`], [`tls`], [`plan`], [`yaml`]) → the engine's provider
//! contract and runner ([`engine`]) → transports below the kinds ([`ssh`], [`uisp_api`]) → the
//! kind contract ([`kinds::def`]) → the kinds (`kinds::<kind>`) → the registry ([`kinds`]) →
//! the loader ([`desired`]), the lab ([`lab`], feature `lab`), the reporter ([`progress`]),
//! live-state snapshots ([`snapshot`]) →
//! the commands ([`app`], [`cli`]) → the binary.

#![forbid(unsafe_code)]

pub mod app;
pub mod cli;
pub mod controller;
pub mod desired;
pub mod engine;
pub mod exit;
pub mod files;
pub mod init;
pub mod kinds;
#[cfg(feature = "lab")]
pub mod lab;
pub mod mac;
pub mod names;
pub mod ownership;
pub mod plan;
pub mod progress;
pub mod schemas;
pub mod secret;
pub mod snapshot;
pub mod ssh;
pub mod tls;
pub mod uisp_api;
pub mod untrusted;
pub mod yaml;
