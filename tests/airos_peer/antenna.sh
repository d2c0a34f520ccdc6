#!/bin/bash
# One fake airOS antenna: runs as PID 1 of its own PID and mount namespaces
# (`unshare -m -p -f --kill-child --propagation private`), started by tests/airos_peer/mod.rs.
#   $1 the antenna's folder (etc/ bin/ tmp/ persist/ state/), $2 the login user, $3 its uid,
#   $4 its gid, $5 a static busybox.
# Builds a busybox chroot on a private tmpfs /run (the antenna's /tmp and /persist bound in, its
# own /proc), starts the udapi-bridge supervisor, then OpenSSH's sshd chrooted there. Every mount
# lives in this namespace only and every process dies with this one.
set -eu
base=$1 user=$2 uid=$3 gid=$4 busybox=$5

# This namespace's own /proc (the supervisor finds its children there), and a private /run.
mount -t proc -o nosuid,nodev,noexec wispctl-airos-proc /proc
mount -t tmpfs -o mode=755,size=64m wispctl-airos-run /run
mkdir -m 755 /run/sshd /run/wispctl /run/chroot
# The bridge runs `sleep` under this name, so ps shows `{exe} /bin/udapi-bridge ...` as on airOS.
ln -s "$(command -v sleep)" /run/wispctl/exe

c=/run/chroot
mkdir -p "$c/bin" "$c/sbin" "$c/usr/bin" "$c/usr/sbin" "$c/etc" "$c/proc" "$c/dev" "$c/tmp" \
  "$c/persist" "$c/root" "$c/var/log" "$c/home/$user"
cp "$busybox" "$c/bin/busybox"
mount -t proc -o nosuid,nodev,noexec wispctl-airos-proc "$c/proc"
chroot "$c" /bin/busybox --install -s
cp "$base/etc/board.info" "$base/etc/version" "$c/etc/"
printf 'root:x:0:0:root:/root:/bin/sh\n%s:x:%s:%s::/home/%s:/bin/sh\n' "$user" "$uid" "$gid" "$user" >"$c/etc/passwd"
printf 'root:x:0:\n%s:x:%s:\n' "$user" "$gid" >"$c/etc/group"
# Where airOS keeps it: /sbin, off the PATH a login gets (OpenSSH's default for users, like
# dropbear's /usr/bin:/bin before 2022.82), so only /sbin/cfgmtd finds it.
cp "$base/bin/cfgmtd" "$c/sbin/cfgmtd"
chmod 755 "$c/sbin/cfgmtd"
chown "$uid:$gid" "$c/home/$user"
: >"$c/dev/null"
mount --bind /dev/null "$c/dev/null"
mount --bind "$base/tmp" "$c/tmp"
mount --bind "$base/persist" "$c/persist"

bash "$base/bin/supervise.sh" /bin/udapi-bridge "$base/tmp" "$base/state" "$uid" "$gid" &
/usr/sbin/sshd -D -e -f "$base/etc/sshd_config" 2>>"$base/state/sshd.log" &
wait
