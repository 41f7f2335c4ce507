#!/usr/bin/env bash
# Cold-start benchmark (issue 9): kunit_tool's cold `kunit.py run` on the Debian 6.1 tree,
# then the harness's cold one-revision verdict (`run --revisions stock --debug-revisions ''`)
# with an empty cache, one after the other on the same machine. Prints both times and the
# harness's breakdown. Needs the unpacked tree of an earlier harness run (or TREE=...).
#
#   bash scripts/bench-cold.sh [WORKDIR]      (about 15 minutes on 2 cores)
set -euo pipefail
cd "$(dirname "$0")/.."
work=${1:-/tmp/phh-bench-cold}
tree=${TREE:-$(ls -d "${PHH_CACHE:-$HOME/.cache/phh}"/src/*/linux-source-6.1 2>/dev/null | head -1)}
[ -f "$tree/tools/testing/kunit/kunit.py" ] || {
    echo "no kernel tree with tools/testing/kunit: run the harness once, or set TREE" >&2; exit 2; }
rm -rf "$work"
mkdir -p "$work"

seconds() { python3 -c 'import time; print(f"{time.monotonic():.1f}")'; }

start=$(seconds)
python3 "$tree/tools/testing/kunit/kunit.py" run --arch=x86_64 --jobs=3 \
    --build_dir="$work/kunit-build" > "$work/kunit.log" 2>&1 || true
kunit=$(python3 -c "print(round($(seconds) - $start, 1))")
tail -3 "$work/kunit.log"

start=$(seconds)
PHH_CACHE="$work/cache" python3 -m harness run --revisions stock --debug-revisions '' \
    --results "$work/results" > "$work/harness.log" 2>&1 || true
harness=$(python3 -c "print(round($(seconds) - $start, 1))")
grep -A1 "time breakdown" "$work/harness.log" | tail -1
tail -1 "$work/harness.log"

echo "kunit_tool cold: ${kunit} s; harness cold (stock): ${harness} s;" \
     "ratio $(python3 -c "print(round($harness / $kunit, 2))")"
