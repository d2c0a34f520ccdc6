//! The `wispctl` binary: parse arguments and hand them to the library, which does the work
//! and chooses the exit code.

use clap::Parser;

/// mimalloc instead of the system allocator: loading, decoding and diffing thousands of
/// objects is allocation-heavy, and glibc's malloc was a fifth of a large plan's CPU
/// (bench/README.md, P1).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    wispctl::app::main(wispctl::cli::Cli::parse())
}
