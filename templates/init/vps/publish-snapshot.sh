#!/bin/sh
# Takes a snapshot of the live network and pushes it to the `wispctl-snapshot` branch of this
# repository, where CI fetches it: outbound only (the VPS pushes with a deploy key), nothing
# secret (the snapshot holds keyed hashes, never a password or key; keep the repository private:
# it lists customers' names and addresses).
set -eu
state=${WISPCTL_STATE_DIR:-/var/lib/wispctl}
out="$state/snapshot.json"
new="$state/snapshot.new.json"
rm -f "$new"
# Exit 1 also means a target could not be read: the snapshot then says which and is
# published anyway; when no snapshot was written (the YAML does not load), nothing is.
wispctl -C desired-state --state-dir "$state" snapshot --out "$new" || [ $? -eq 1 ]
[ -s "$new" ] || { echo "publish-snapshot: no snapshot was written" >&2; exit 1; }
mv "$new" "$out"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
git -C "$work" init --quiet
cp "$out" "$work/snapshot.json"
git -C "$work" add snapshot.json
git -C "$work" -c user.name=wispctl -c user.email=wispctl@localhost \
  commit --quiet -m "wispctl snapshot $(date -u +%Y-%m-%dT%H:%M:%SZ)"
git -C "$work" push --quiet --force "$(git remote get-url origin)" HEAD:refs/heads/wispctl-snapshot
