//! The MikroTik RouterOS API (the binary protocol of `api` on 8728 and `api-ssl` on 8729).
//!
//! - [`codec`]: length-prefixed words and sentences, both directions, with every length form
//!   and the bounds that keep a hostile peer from announcing gigabytes;
//! - [`client`]: an async connection over any byte stream (TCP, TLS): both logins, tagged
//!   commands pipelined on one connection, `!trap`, `!empty`, `!fatal`, timeouts;
//! - [`server`] (feature `server`): an in-memory router with `/ppp/secret`, `/ppp/active` and
//!   `/ppp/profile`, v6 and v7 personalities and injected faults, for tests and labs.
//!
//! Nothing here logs a sentence: sentences carry passwords (`/login`, `=password=`).

pub mod client;
pub mod codec;
#[cfg(feature = "server")]
pub mod server;
