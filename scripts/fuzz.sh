#!/bin/sh
# scripts/fuzz.sh [SECONDS] — run each libFuzzer target of cgv for SECONDS
# (default 60) and print one line per target:
#
#   fuzz <target>: <execs> execs, <cov> coverage, ok
#
# (", CRASH ..." instead of ", ok" when a target failed). Exits non-zero if
# any target crashed, leaked, timed out or ran out of memory. Configures
# build-fuzz with clang (-Dfuzz=true) if it is not there, and builds only the
# fuzzer. New inputs go to build-fuzz/fuzz-corpus/<target> (kept between
# runs; seeded from fuzz/corpus/<target>), crash reproducers to
# build-fuzz/fuzz-artifacts/<target>/. CGV_FUZZ_TARGETS picks targets
# (default "proto spec meta").
set -u

SECONDS_PER_TARGET=${1:-60}
TARGETS=${CGV_FUZZ_TARGETS:-"proto spec meta"}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
BUILD="$ROOT/build-fuzz"
BIN="$BUILD/fuzz/cgv-fuzz"

case "$SECONDS_PER_TARGET" in
    ''|*[!0-9]*) echo "usage: $0 [SECONDS]" >&2; exit 2 ;;
esac

if ! command -v clang >/dev/null 2>&1; then
    echo "fuzz: clang is not installed" >&2
    exit 1
fi
if [ ! -f "$BUILD/build.ninja" ]; then
    CC=clang meson setup "$BUILD" "$ROOT" -Dfuzz=true -Dguest=false >"$BUILD.setup.log" 2>&1 || {
        cat "$BUILD.setup.log" >&2
        echo "fuzz: meson setup of build-fuzz failed" >&2
        exit 1
    }
    rm -f "$BUILD.setup.log"
fi
if ! ninja -C "$BUILD" fuzz/cgv-fuzz >"$BUILD/fuzz-build.log" 2>&1; then
    tail -30 "$BUILD/fuzz-build.log" >&2
    echo "fuzz: build failed (is build-fuzz configured with CC=clang -Dfuzz=true?)" >&2
    exit 1
fi

rc=0
for t in $TARGETS; do
    corpus="$BUILD/fuzz-corpus/$t"
    artifacts="$BUILD/fuzz-artifacts/$t"
    log="$BUILD/fuzz-$t.log"
    mkdir -p "$corpus" "$artifacts"
    # -timeout: one input taking 10 s is a hang; -rss_limit_mb: memory blow-up.
    CGV_FUZZ_TARGET=$t "$BIN" \
        -max_total_time="$SECONDS_PER_TARGET" -timeout=10 -rss_limit_mb=2048 \
        -max_len=4096 -print_final_stats=1 \
        -artifact_prefix="$artifacts/" \
        "$corpus" "$ROOT/fuzz/corpus/$t" >"$log" 2>&1
    frc=$?
    execs=$(sed -n 's/^stat::number_of_executed_units: *\([0-9]*\).*/\1/p' "$log" | tail -1)
    cov=$(grep -o 'cov: [0-9]*' "$log" | tail -1 | cut -d' ' -f2)
    [ -n "$execs" ] || execs=$(grep -o '^#[0-9]*' "$log" | tail -1 | tr -d '#')
    if [ $frc -eq 0 ]; then
        echo "fuzz $t: ${execs:-0} execs, ${cov:-0} coverage, ok"
    else
        what=$(grep -m1 -o 'ERROR: [A-Za-z]*Sanitizer: [a-z-]*\|ERROR: libFuzzer: [a-z-]*\|invariant broken: .*' "$log")
        art=$(grep -o "$artifacts/[^ ]*" "$log" | tail -1)
        echo "fuzz $t: ${execs:-0} execs, ${cov:-0} coverage, CRASH (${what:-exit $frc}) ${art:+reproduce: CGV_FUZZ_TARGET=$t $BIN $art} log: $log"
        rc=1
    fi
done
exit $rc
