#!/usr/bin/env bash
# The binary without the lab: `cargo build --no-default-features` must build (and lint clean),
# hold no lab simulator (rcgen, rlimit, the RouterOS server; axum is there for the controller's
# /metrics), and offer no lab command. Run by tests/run-all.sh.
set -euo pipefail
cd "$(dirname "$0")/.."
# Its own target folder: the tests' binary (target/debug/wispctl, with the lab) stays as it is.
cargo build --no-default-features --bin wispctl --target-dir target/no-lab
cargo clippy --no-default-features --lib --bins --target-dir target/no-lab -- -D warnings
tree="$(cargo tree --no-default-features -e normal -p wispctl --prefix none)"
for crate in rcgen rlimit; do
  if grep -qE "^$crate v" <<<"$tree"; then
    echo "no_lab_build: $crate is in the dependency tree without the lab feature" >&2
    exit 1
  fi
done
if grep -qE "^routeros-api v.*" <<<"$tree" && cargo tree --no-default-features -e features -p wispctl -i routeros-api 2>/dev/null | grep -q '"server"'; then
  echo "no_lab_build: routeros-api's server feature is on without the lab feature" >&2
  exit 1
fi
bin=target/no-lab/debug/wispctl
help="$("$bin" --help)"
for word in demo lab; do
  if grep -qE "^  $word " <<<"$help"; then
    echo "no_lab_build: the lab-less binary offers \`$word\`" >&2
    exit 1
  fi
done
if "$bin" --lab /tmp/x validate >/dev/null 2>&1; then
  echo "no_lab_build: the lab-less binary accepts --lab" >&2
  exit 1
fi
if grep -qa "LabOnlyMasterKey" "$bin"; then
  echo "no_lab_build: lab seed data is in the lab-less binary" >&2
  exit 1
fi
echo "no_lab_build: the binary without the lab holds no lab code"
