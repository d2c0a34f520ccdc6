//! Input a pull request controls, checked before it is trusted: the addresses and host names
//! a YAML file gives ([`addr`]: canonical dotted-decimal IPv4 only, never a form a resolver
//! reads as octal or hex), and the files a desired-state folder holds or names ([`file`](mod@file):
//! regular files only, inside the folder when they must be, bounded in size, never echoed).
//!
//! Below every kind and the loader: the kinds' validation, the secret resolver and the loader
//! all call here, so that one rule holds wherever an address or a file appears.

pub mod addr;
pub mod file;
