#!/usr/bin/env bash
# Build and run the chaos benchmark (docs/BENCH.md): random faults of every
# kind into two HA services (2n and n+m, 5 VMs) for a set time.
#
#   sudo bench/run-chaos.sh [--duration SEC | --quick] [other bench/chaos options]
#
# Builds only what the benchmark needs (bench/chaos, cgvd, cgv, cgv-udpping)
# in $BUILD_DIR (default build/), makes sure libvirtd runs
# (scripts/libvirt-up.sh), then runs bench/chaos with the arguments given.
# The figures (key=value lines) go to stdout, progress to stderr. Exit status
# 1 if an assignment ever had two actives or an instance was lost.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
build=${BUILD_DIR:-$root/build}

if [ "$(id -u)" -ne 0 ]; then
    echo "run-chaos: must run as root" >&2
    exit 2
fi
if [ ! -f "$build/build.ninja" ]; then
    meson setup "$build" "$root" >&2
fi
ninja -C "$build" bench/chaos src/daemon/cgvd src/cli/cgv src/tools/cgv-udpping >&2
"$root/scripts/libvirt-up.sh"
if [ ! -f /var/lib/cgv/images/default/vmlinuz ]; then
    echo "run-chaos: no guest image in /var/lib/cgv/images/default;" \
         "build it with guest-image/build.sh" >&2
fi
exec "$build/bench/chaos" "$@"
