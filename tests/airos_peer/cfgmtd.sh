#!/bin/sh
# Fake airOS cfgmtd (busybox sh, inside an antenna's chroot at /sbin/cfgmtd, which is not on the
# PATH OpenSSH gives a login user, as airOS's is not on old dropbear's). Logs its arguments to
# /persist/cfgmtd.log, and the "flash" is /persist/system.cfg:
#   -w -p /etc/     copies /tmp/system.cfg to flash; fails like a broken flash while
#                   /persist/fail-write exists (the flash is then left as it was);
#   -r -f FILE      writes the flash copy to FILE (wispctl gives its own stdout,
#                   /proc/self/fd/1).
# Anything else fails like a wrong invocation.
printf '%s\n' "$*" >>/persist/cfgmtd.log
if [ "$#" -eq 3 ] && [ "$1" = -w ] && [ "$2" = -p ] && [ "$3" = /etc/ ]; then
  if [ -e /persist/fail-write ]; then
    echo "Could not open MTD device cfg" >&2
    exit 1
  fi
  cp /tmp/system.cfg /persist/.system.cfg.new && mv -f /persist/.system.cfg.new /persist/system.cfg
elif [ "$#" -eq 3 ] && [ "$1" = -r ] && [ "$2" = -f ]; then
  cat /persist/system.cfg >"$3"
else
  echo "cfgmtd: unsupported arguments" >&2
  exit 1
fi
