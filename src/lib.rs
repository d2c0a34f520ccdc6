//! wispctl keeps a wireless ISP's network in line with YAML files in git.
//!
//! The flow goes one way: [`desired`] (load and validate YAML, offline) → [`engine`] (observe
//! each target once, diff per kind, guard) → [`plan`] (the one model every output is rendered
//! from) → render, or apply. Each resource kind is one folder under [`providers`] with the same
//! parts: observe, diff (pure), apply, and its simulator in [`lab`].

pub mod app;
pub mod cli;
pub mod desired;
pub mod engine;
pub mod exit;
pub mod files;
pub mod lab;
pub mod plan;
pub mod providers;
pub mod schemas;
pub mod secret;
pub mod tls;
