#!/bin/sh
# PID 1 of one sandbox host. Started by sandbox/control.py as
#   unshare --uts --mount --pid --fork --kill-child --propagation private sh host-init.sh ...
# so its hostname, mounts and processes are its own and vanish when it is killed.
set -eu
base=$1 upper=$2 work=$3 root=$4 fqdn=$5 addr=$6 port=$7
# Optional: a directory of this machine's shown read-only at /mnt/sandbox inside the host.
share=${8:-}

mount -t overlay overlay -o "lowerdir=$base,upperdir=$upper,workdir=$work" "$root"
mount -t proc proc "$root/proc"
mount -t tmpfs -o mode=755,nosuid tmpfs "$root/run"
mkdir -p "$root/run/sshd" "$root/run/lock"
# A minimal /dev: a few bound device nodes and a private devpts, never the whole host /dev.
mount -t tmpfs -o mode=755,nosuid tmpfs "$root/dev"
for dev in null zero full random urandom tty; do
    touch "$root/dev/$dev"
    mount --bind "/dev/$dev" "$root/dev/$dev"
done
mkdir -p "$root/dev/pts" "$root/dev/shm"
mount -t devpts -o newinstance,ptmxmode=0666,mode=620 devpts "$root/dev/pts"
ln -s pts/ptmx "$root/dev/ptmx"
mount -t tmpfs -o mode=1777,nosuid,nodev tmpfs "$root/dev/shm"
ln -s /proc/self/fd "$root/dev/fd"

if [ -n "$share" ]; then
    mkdir -p "$root/mnt/sandbox"
    mount --bind "$share" "$root/mnt/sandbox"
    mount -o remount,bind,ro "$root/mnt/sandbox"
fi

hostname "$fqdn"
# A host whose image brings services (the receiving mail provider) starts them here, and
# the host comes up only if they do.
if [ -x "$root/usr/local/sbin/sandbox-start" ]; then
    chroot "$root" /usr/local/sbin/sandbox-start
fi
chroot "$root" /usr/sbin/sshd -D -e -o "ListenAddress=$addr:$port" &
sshd=$!
trap 'kill "$sshd" 2>/dev/null; exit 0' TERM INT
# PID 1 reaps every orphan (daemons started over SSH double-fork onto it).
while kill -0 "$sshd" 2>/dev/null; do
    wait || true
done
