#!/usr/bin/env bash
# Build and run the high-availability fail-over benchmark (docs/BENCH.md).
#
#   sudo bench/run-failover.sh [--runs N] [--soak SEC] [other bench/failover options]
#
# Builds only what the benchmark needs (bench/failover, cgvd, cgv, cgv-udpping) in
# $BUILD_DIR (default build/), makes sure libvirtd runs
# (scripts/libvirt-up.sh), then runs bench/failover with the arguments given.
# The figures (key=value lines) go to stdout, progress to stderr.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
build=${BUILD_DIR:-$root/build}

if [ "$(id -u)" -ne 0 ]; then
    echo "run-failover: must run as root" >&2
    exit 2
fi
if [ ! -f "$build/build.ninja" ]; then
    meson setup "$build" "$root" >&2
fi
ninja -C "$build" bench/failover src/daemon/cgvd src/cli/cgv src/tools/cgv-udpping >&2
"$root/scripts/libvirt-up.sh"
if [ ! -f /var/lib/cgv/images/default/vmlinuz ]; then
    echo "run-failover: no guest image in /var/lib/cgv/images/default;" \
         "build it with guest-image/build.sh" >&2
fi
exec "$build/bench/failover" "$@"
