#!/usr/bin/env bash
# Cold path against its physical limit (issue 16), measured side by side on one machine:
#   1. raw make: the harness's own .config for stock, built by plain gcc (no ccache) in a
#      fresh copy of the pristine tree: the least any cold verdict must spend compiling;
#   2. the harness's cold one-revision verdict (`run --revisions stock --debug-revisions ''`)
#      with an empty cache (the .deb is reused: downloading is the network's time);
#   3. the limit = raw make + the suite's scenario time in that run (its longest chain on
#      the workers), and the ratio of the cold verdict to it (goal: <= 1.15).
# Needs the unpacked tree and the stock build of an earlier harness run.
#
#   bash scripts/bench-cold.sh [WORKDIR]      (about 12 minutes on 2 cores)
set -euo pipefail
cd "$(dirname "$0")/.."
work=${1:-/tmp/phh-bench-cold}
cache=${PHH_CACHE:-$HOME/.cache/phh}
tree=${TREE:-$(ls -d "$cache"/src/*/linux-source-6.1 2>/dev/null | head -1)}
config=$(grep -l '"name": "stock"' "$cache"/builds/*/meta.json 2>/dev/null | head -1 || true)
[ -d "$tree" ] && [ -n "$config" ] || {
    echo "no unpacked tree or stock build in $cache: run the harness once first" >&2; exit 2; }
config="$(dirname "$config")/.config"
rm -rf "$work"
mkdir -p "$work/cache/debs"
cp "$cache"/debs/*.deb "$work/cache/debs/"

seconds() { python3 -c 'import time; print(f"{time.monotonic():.1f}")'; }

# The raw make runs in RAM (/dev/shm) when it has room: 3 GiB of files written and then
# deleted on the disk slowed the harness's unpack after it from 7 s to 17-24 s (measured
# 2026-12-07), and a tree in RAM can only make the limit smaller, never larger.
shm_free=$(df --output=avail -k /dev/shm 2>/dev/null | tail -1 || echo 0)
if [ "${shm_free:-0}" -gt $((6 * 1024 * 1024)) ]; then raw_tree=/dev/shm/phh-raw-tree
else raw_tree="$work/raw-tree"; fi
rm -rf "$raw_tree"

echo "== raw make (no ccache) of $config in $raw_tree"
mkdir "$raw_tree"  # the pristine commit's files (the unpacked ones went to a worktree)
git --git-dir="$tree/.git" archive HEAD | tar -x -C "$raw_tree"
cp "$config" "$raw_tree/.config"
sync
start=$(seconds)
make -C "$raw_tree" -s olddefconfig > "$work/raw-make.log" 2>&1
make -C "$raw_tree" -j3 CC=gcc LZ4=lz4 bzImage >> "$work/raw-make.log" 2>&1
raw=$(python3 -c "print(round($(seconds) - $start, 1))")
rm -rf "$raw_tree"
sync

echo "== harness cold verdict (empty PHH_CACHE)"
start=$(seconds)
PHH_CACHE="$work/cache" python3 -m harness run --revisions stock --debug-revisions '' \
    --results "$work/results" > "$work/harness.log" 2>&1 || true
harness=$(python3 -c "print(round($(seconds) - $start, 1))")
grep -A1 "time breakdown" "$work/harness.log" | tail -1
tail -1 "$work/harness.log"
scenarios=$(python3 - "$work/results/timing.json" <<'EOF'
import json, sys
timing = json.load(open(sys.argv[1]))
phases = ("fetch", "unpack", "git", "configure", "make", "image", "probe")
# the scenarios' wall time: the run's total minus the controller's prebuild (the builds,
# with the image and the probe beside them), or minus the build phases in an older run
before = timing.get("prebuild") or sum(v for k, v in timing.items() if k in phases)
print(round(timing["total"] - before, 1))
EOF
)
limit=$(python3 -c "print(round($raw + $scenarios, 1))")
echo "raw make ${raw} s + scenarios ${scenarios} s = limit ${limit} s;" \
     "harness cold ${harness} s; ratio $(python3 -c "print(round($harness / $limit, 2))")"
