#!/usr/bin/env bash
# Start virtlogd and libvirtd if they are not running. Idempotent: a running
# libvirtd (and every domain it runs) is left alone.
#
# libvirtd runs under `tini -s`, a child subreaper, so that a QEMU process that
# dies is reaped at once (PID 1 on these machines reaps orphans 1-2 s late, and
# libvirt waits for the reaping before it reports the domain stopped).
set -euo pipefail

log() { printf 'libvirt-up: %s\n' "$*" >&2; }

if ! getent group kvm >/dev/null; then groupadd -r kvm; fi
if ! getent group libvirt-qemu >/dev/null; then groupadd -r libvirt-qemu; fi
if ! getent passwd libvirt-qemu >/dev/null; then
    useradd -r -g libvirt-qemu -G kvm -d /var/lib/libvirt -s /usr/sbin/nologin libvirt-qemu
fi
mkdir -p /var/log/libvirt /run/libvirt /var/log/cgv

# /dev/kvm as Debian's udev rule sets it (root:kvm 0660). Without udev it is
# root-only here, and then libvirt finds its cached QEMU capabilities (probed
# with KVM) inconsistent with a /dev/kvm the QEMU user cannot open, and
# re-probes QEMU on every define: 8 s per define instead of 25 ms.
if [ -c /dev/kvm ]; then
    chgrp kvm /dev/kvm && chmod 0660 /dev/kvm
fi

alive() { pgrep -x "$1" >/dev/null 2>&1; }

if ! alive virtlogd; then
    log "starting virtlogd"
    virtlogd -d
fi

if ! alive libvirtd; then
    log "starting libvirtd under tini -s"
    # Stale pidfile from a killed libvirtd would make the new one refuse to start.
    rm -f /run/libvirtd.pid
    setsid tini -s -- libvirtd >>/var/log/cgv/libvirtd.log 2>&1 </dev/null &
fi

# Wait (bounded) until qemu:///system answers.
for _ in $(seq 1 100); do
    if virsh -c qemu:///system version >/dev/null 2>&1; then
        exit 0
    fi
    sleep 0.1
done
log "libvirtd did not answer on qemu:///system within 10 s; see /var/log/cgv/libvirtd.log"
exit 1
