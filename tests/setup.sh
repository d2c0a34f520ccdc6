#!/usr/bin/env bash
# Installs what the tests need on a fresh Debian machine (run as root, as CI does):
#   ppp        pppd's own option parser validates every generated peer file (dryrun)
#   util-linux unshare, for the private mount namespace the pppd test runs in
#   librouteros (PyPI) a real RouterOS API client, pointed at the lab router
set -euo pipefail
need=()
command -v pppd >/dev/null 2>&1 || [ -x /usr/sbin/pppd ] || need+=(ppp)
command -v unshare >/dev/null 2>&1 || need+=(util-linux)
if [ ${#need[@]} -gt 0 ]; then
  if [ "$(id -u)" -ne 0 ]; then
    echo "tests/setup.sh: need root to install: ${need[*]}" >&2
    exit 1
  fi
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}"
fi
# Python peers of the RouterOS conformance tests (pinned): librouteros, the client Ansible's
# community.routeros uses.
if ! python3 -c 'import librouteros' >/dev/null 2>&1; then
  python3 -m pip install -q 'librouteros==4.2.2' \
    || python3 -m pip install -q --break-system-packages 'librouteros==4.2.2'
fi
echo "tests/setup.sh: test prerequisites present"
