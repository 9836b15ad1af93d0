#!/usr/bin/env bash
# Build and run the pinning benchmark (docs/BENCH.md): a VM answering UDP
# requests every 2 ms beside a neighbour VM that burns CPU, once with the
# work VM on a dedicated core, once with both floating.
#
#   sudo bench/run-pinning.sh [--duration SEC] [--rounds N] [other bench/pinning options]
#
# Builds only what the benchmark needs (bench/pinning, cgvd, cgv,
# cgv-udpping) in $BUILD_DIR (default build/), makes sure libvirtd runs
# (scripts/libvirt-up.sh), then runs bench/pinning with the arguments given.
# The figures (key=value lines) go to stdout, progress to stderr. About
# 2 minutes with the defaults (2 x 30 s measured, 3 boots).
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
build=${BUILD_DIR:-$root/build}

if [ "$(id -u)" -ne 0 ]; then
    echo "run-pinning: must run as root" >&2
    exit 2
fi
if [ ! -f "$build/build.ninja" ]; then
    meson setup "$build" "$root" >&2
fi
ninja -C "$build" bench/pinning src/daemon/cgvd src/cli/cgv src/tools/cgv-udpping >&2
"$root/scripts/libvirt-up.sh"
if [ ! -f /var/lib/cgv/images/default/vmlinuz ]; then
    echo "run-pinning: no guest image in /var/lib/cgv/images/default;" \
         "build it with guest-image/build.sh" >&2
fi
exec "$build/bench/pinning" "$@"
