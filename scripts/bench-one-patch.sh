#!/usr/bin/env bash
# One edited patch to a full verdict (issue 15, item 5), measured as a maintainer meets it:
# hinting-v2-fixed copied aside, one code line of its patch 0006 edited differently each run
# (`spin_lock_irq(&zone->lock)` becomes `spin_lock_irq(&(zone + 0 * N)->lock)`, N new each
# run: the same machine code, but a source neither the build cache nor ccache has seen),
# then the whole suite of that one revision:
#   python3 -m harness run --series DIR --revisions '' --debug-revisions ''
# Prints each run's wall time, the run's own breakdown (git, make, boots, scenarios) and
# the guests' QEMU CPU, then the median and p90.
#
#   bash scripts/bench-one-patch.sh [RUNS] [WORKDIR]      (about 72 s a run on 2 cores)
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${1:-10}
work=${2:-/tmp/phh-bench-one-patch}
rm -rf "$work"
mkdir -p "$work"
# hinting-v2-fixed's series names hinting-v2's patches as ../hinting-v2/...: copy both
cp -r patches/hinting-v2 patches/hinting-v2-fixed "$work/"
patch=$(ls "$work"/hinting-v2-fixed/0006-*.patch)
line=$(grep -n '^+.*spin_lock_irq(&zone->lock)' "$patch" | head -1 | cut -d: -f1)
[ -n "$line" ] || { echo "no added spin_lock_irq(&zone->lock) line in $patch" >&2; exit 2; }

seconds() { python3 -c 'import time; print(f"{time.monotonic():.1f}")'; }
walls=()
stamp=$(date +%s)
for i in $(seq 1 "$runs"); do
    cp "patches/hinting-v2-fixed/$(basename "$patch")" "$patch"
    sed -i "${line}s/spin_lock_irq(&zone->lock)/spin_lock_irq(\&(zone + 0 * ${stamp}${i})->lock)/" "$patch"
    start=$(seconds)
    status=0
    python3 -m harness run --series "$work/hinting-v2-fixed" --revisions '' \
        --debug-revisions '' --results "$work/results-$i" > "$work/run-$i.log" 2>&1 || status=$?
    wall=$(python3 -c "print(round($(seconds) - $start, 1))")
    walls+=("$wall")
    verdict=$(grep -E '=+ .*(passed|failed|error).* in ' "$work/run-$i.log" | tail -1 | tr -d '=')
    echo "run $i: ${wall} s, exit $status,${verdict}"
    grep -A1 'time breakdown' "$work/run-$i.log" | tail -1 | sed 's/^/    /'
    grep "QEMU used" "$work/run-$i.log" | sed 's/^/    /' || true
done
python3 - "${walls[@]}" <<'EOF'
import statistics
import sys

walls = sorted(float(w) for w in sys.argv[1:])
p90 = walls[max(0, -(-9 * len(walls) // 10) - 1)]
print(f"{len(walls)} runs: median {statistics.median(walls):.1f} s, p90 {p90:.1f} s, "
      f"range {walls[0]:.1f}-{walls[-1]:.1f} s")
EOF
