#!/usr/bin/env bash
# README command 2: install the test prerequisites, then run every test (unit, lab integration,
# interop with pppd, property, snapshot), plus the formatting and lint gates.
set -euo pipefail
cd "$(dirname "$0")/.."
bash tests/setup.sh
cargo fmt --all -- --check
# The kinds are declared by the registry! macro, where cargo fmt does not look: check them too.
rustfmt --check --edition 2024 src/kinds/*/mod.rs
cargo clippy --workspace --all-targets -- -D warnings
cargo test --workspace --all-targets
cargo test --workspace --doc
RUSTDOCFLAGS="-D warnings" cargo doc --workspace --no-deps
bash tests/no_lab_build.sh
