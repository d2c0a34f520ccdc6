//! The `wispctl` binary: parse arguments and hand them to the library, which does the work
//! and chooses the exit code.

use clap::Parser;

fn main() -> std::process::ExitCode {
    wispctl::app::main(wispctl::cli::Cli::parse())
}
