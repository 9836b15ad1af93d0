#!/usr/bin/env bash
# Build and run the placement benchmark (docs/BENCH.md): 10,000 VMs (5,000
# active/standby pairs, anti-affinity) placed best-fit over 1,000 simulated
# hosts, repeated. Pure CPU work: no root, no libvirt.
#
#   bench/run-placement.sh [--runs N] [--hosts N] [--vms N] [--seed N]
#
# Builds bench/placement in $BUILD_DIR (default build/; a release-style
# build such as -Dbuildtype=release gives the best figures) and runs it with
# the arguments given (default --runs 7). Figures (key=value lines) go to
# stdout, progress to stderr.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
build=${BUILD_DIR:-$root/build}

if [ ! -f "$build/build.ninja" ]; then
    meson setup "$build" "$root" >&2
fi
ninja -C "$build" bench/placement >&2
exec "$build/bench/placement" "$@"
