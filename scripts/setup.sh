#!/usr/bin/env bash
# setup.sh — make this machine ready for cgv: install the Debian packages it
# needs, start virtlogd/libvirtd if none runs, build cgv (meson + ninja) and
# the guest image. Idempotent; it never touches a domain that is not cgv's.
#
#   scripts/setup.sh [--build-dir DIR]      (default: build)
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BUILD=build
while [ $# -gt 0 ]; do
    case $1 in
    --build-dir) BUILD=$2; shift 2 ;;
    -h|--help) sed -n '2,8s/^# \{0,1\}//p' "$0"; exit 0 ;;
    *) echo "setup.sh: unknown argument $1" >&2; exit 2 ;;
    esac
done
cd "$ROOT"

log() { printf 'setup: %s\n' "$*" >&2; }

[ "$(id -u)" = 0 ] || { echo "setup.sh: run as root (it installs packages and starts libvirtd)" >&2; exit 1; }

PKGS=(
    # build
    gcc meson ninja-build pkg-config clang libclang-rt-14-dev
    # libraries
    libvirt-dev libxml2-dev libyaml-dev libjansson-dev libsqlite3-dev
    libmicrohttpd-dev libcurl4-openssl-dev libcmocka-dev
    # hypervisor
    libvirt-daemon libvirt-daemon-driver-qemu libvirt-clients qemu-system-x86 qemu-utils
    tini
    # guest image and networking
    busybox-static kmod cpio iproute2
    # scripts and tests
    python3 curl procps
)
missing=()
for p in "${PKGS[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
    log "installing: ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -q
    apt-get install -y -q --no-install-recommends "${missing[@]}"
fi

"$ROOT/scripts/libvirt-up.sh"

if [ ! -f "$BUILD/build.ninja" ]; then
    log "configuring $BUILD"
    meson setup "$BUILD" >/dev/null
fi
log "building $BUILD"
ninja -C "$BUILD" >/dev/null

"$ROOT/guest-image/build.sh" --build-dir "$BUILD" >&2
log "ready"
