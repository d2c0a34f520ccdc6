#!/bin/sh
# Takes a snapshot of the live network and pushes it to the `wispctl-snapshot` branch of this
# repository, where CI fetches it: outbound only (the VPS pushes with a deploy key), nothing
# secret (the snapshot holds keyed hashes, never a password or key; keep the repository private:
# it lists customers' names and addresses).
set -eu
state=${WISPCTL_STATE_DIR:-/var/lib/wispctl}
out="$state/snapshot.json"
# Exit 1 means a target could not be read: the snapshot says which, and is published anyway.
wispctl -C desired-state --state-dir "$state" snapshot --out "$out" || [ $? -eq 1 ]
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
git -C "$work" init --quiet
cp "$out" "$work/snapshot.json"
git -C "$work" add snapshot.json
git -C "$work" -c user.name=wispctl -c user.email=wispctl@localhost \
  commit --quiet -m "wispctl snapshot $(date -u +%Y-%m-%dT%H:%M:%SZ)"
git -C "$work" push --quiet --force "$(git remote get-url origin)" HEAD:refs/heads/wispctl-snapshot
