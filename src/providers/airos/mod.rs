//! Provider `airos` (in progress, issue 5): the UISP connection string of airOS antennas,
//! over SSH. Built so far, each tested on its own: the configuration files and the connection
//! string ([`config`]: parse, compare with device-specific keys, rewrite `unms.*` lines in place
//! keeping every other line byte for byte) and the SSH transport ([`ssh`]: legacy algorithms
//! only when asked, credential candidates, pinned host keys, a jump host, timeouts, stdin).
//! Not yet: the desired model, observe/diff/apply with canary waves, the lab fleet, the OpenSSH
//! interop tests and the benchmark.

pub mod commands;
pub mod config;
pub mod ssh;
