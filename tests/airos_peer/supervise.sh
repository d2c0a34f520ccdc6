#!/bin/bash
# The fake udapi-bridge supervisor of one antenna (see antenna.sh): keeps one child alive whose
# ps line is `{exe} /bin/udapi-bridge infinity` (argv[0] /bin/udapi-bridge, running as the login
# user so that it can `kill -9` it), respawning it when it dies. Before each start it reads
# unms.uri from /tmp/running.cfg when that exists, else from /tmp/system.cfg, and once the child
# shows as udapi-bridge it appends `SOURCE<TAB>URI<TAB>PID` to state/bridge.log.
#   $1 /bin/udapi-bridge (only so that ps shows it as an argument here), $2 the antenna's /tmp,
#   $3 its state folder, $4 uid, $5 gid
set -u
tmp=$2 state=$3 uid=$4 gid=$5
while :; do
  if [ -f "$tmp/running.cfg" ]; then src=running.cfg; else src=system.cfg; fi
  uri=$(sed -n 's/^unms\.uri=//p' "$tmp/$src" 2>/dev/null | head -n 1)
  setpriv --reuid="$uid" --regid="$gid" --clear-groups -- \
    bash -c 'exec -a /bin/udapi-bridge /run/wispctl/exe infinity' </dev/null >/dev/null 2>&1 &
  pid=$!
  for _ in $(seq 500); do
    cmd=$(tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null) || break
    case $cmd in /bin/udapi-bridge*) break ;; esac
    sleep 0.01
  done
  printf '%s\t%s\t%s\n' "$src" "$uri" "$pid" >>"$state/bridge.log"
  wait "$pid"
  sleep 0.2
done
