//! The reconcile controller (issue 12, being built): wispctl as a long-running agent over the
//! same engine as `apply`. So far its scheduler ([`schedule`]): when each target is
//! reconciled, with jitter, backoff, merged triggers, one reconcile per target at a time and
//! bounded concurrency per kind. Not yet a command.

pub mod schedule;
