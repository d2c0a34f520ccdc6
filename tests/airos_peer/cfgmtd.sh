#!/bin/sh
# Fake airOS cfgmtd (busybox sh, inside an antenna's chroot): logs its arguments to
# /persist/cfgmtd.log and, for exactly `-w -p /etc/`, copies /tmp/system.cfg to the "flash"
# /persist/system.cfg. Anything else fails like a wrong invocation.
printf '%s\n' "$*" >>/persist/cfgmtd.log
if [ "$#" -ne 3 ] || [ "$1" != -w ] || [ "$2" != -p ] || [ "$3" != /etc/ ]; then
  echo "cfgmtd: unsupported arguments" >&2
  exit 1
fi
cp /tmp/system.cfg /persist/.system.cfg.new && mv -f /persist/.system.cfg.new /persist/system.cfg
