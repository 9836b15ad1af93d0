#!/usr/bin/env bash
# test.sh — set the machine up and run every test: unit and integration tests
# (real libvirtd, real QEMU guests) in the normal build, the same again with
# AddressSanitizer + UndefinedBehaviorSanitizer, then each libFuzzer target
# for a bounded time. Ends with one line "N passed, N failed".
#
#   scripts/test.sh [--quick]     --quick: normal build only, no ASan, no fuzz
set -uo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
QUICK=0
FUZZ_SECONDS=${CGV_FUZZ_SECONDS:-30}
[ "${1:-}" = "--quick" ] && QUICK=1

"$ROOT/scripts/setup.sh" || { echo "0 passed, 1 failed"; exit 1; }

passed=0
failed=0
skipped=0

# Run one meson test suite set; add its results from the JSON test log.
run_meson() {
    local dir=$1; shift
    echo "==== meson test -C $dir $*"
    meson test -C "$dir" --print-errorlogs "$@"
    local counts
    counts=$(python3 - "$dir/meson-logs/testlog.json" <<'PY'
# Count cmocka cases where a test binary printed cmocka's summary, else the
# meson test itself.
import json, re, sys
p = f = s = 0
for line in open(sys.argv[1]):
    t = json.loads(line)
    r = t.get("result")
    out = (t.get("stdout") or "") + "\n" + (t.get("stderr") or "")
    m_ok = re.findall(r"^\[  PASSED  \] (\d+) test", out, re.M)
    m_bad = re.findall(r"^\[  FAILED  \] (\d+) test", out, re.M)
    m_skip = re.findall(r"^\[  SKIPPED \] (\d+) test", out, re.M)
    if m_ok or m_bad:
        p += sum(map(int, m_ok)); f += sum(map(int, m_bad)); s += sum(map(int, m_skip))
        if r not in ("OK", "EXPECTEDFAIL", "SKIP") and not m_bad:
            f += 1  # crashed or timed out after its summary
    elif r in ("OK", "EXPECTEDFAIL"): p += 1
    elif r == "SKIP": s += 1
    else: f += 1
print(p, f, s)
PY
)
    read -r p f s <<<"$counts"
    passed=$((passed + p)); failed=$((failed + f)); skipped=$((skipped + s))
}

run_meson build --suite unit --suite integration

if [ $QUICK = 0 ]; then
    if [ ! -f build-asan/build.ninja ]; then
        meson setup build-asan -Db_sanitize=address,undefined -Db_lundef=false -Dguest=false >/dev/null
    fi
    if ninja -C build-asan >/dev/null; then
        ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
            run_meson build-asan --suite unit --suite integration
    else
        echo "sanitizer build failed"; failed=$((failed + 1))
    fi
    if [ -x scripts/fuzz.sh ]; then
        echo "==== fuzzing, ${FUZZ_SECONDS}s per target"
        fuzz_out=$(scripts/fuzz.sh "$FUZZ_SECONDS" 2>&1); fuzz_rc=$?
        echo "$fuzz_out" | grep '^fuzz '
        ok=$(echo "$fuzz_out" | grep -c '^fuzz .*, ok$')
        bad=$(echo "$fuzz_out" | grep '^fuzz ' | grep -vc ', ok$')
        passed=$((passed + ok)); failed=$((failed + bad))
        if [ $fuzz_rc -ne 0 ] && [ "$bad" -eq 0 ]; then failed=$((failed + 1)); echo "$fuzz_out" | tail -20; fi
    fi
fi

echo "skipped: $skipped"
echo "$passed passed, $failed failed"
[ $failed -eq 0 ]
