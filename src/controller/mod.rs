//! The reconcile controller (issue 12, being built): wispctl as a long-running agent over the
//! same engine as `apply`. Its scheduler ([`schedule`]): when each target is reconciled, with
//! jitter, backoff, merged triggers, one reconcile per target at a time and bounded
//! concurrency per kind; maintenance windows ([`window`]); notifications ([`notify`]);
//! `/healthz`, `/readyz` and `/metrics` ([`metrics`]).

pub mod config;
pub mod git;
pub mod history;
pub mod metrics;
pub mod notify;
pub mod schedule;
pub mod window;
