//! The RouterOS API, written in the project: no well-kept permissively licensed crate exists.

pub mod client;
pub mod codec;
