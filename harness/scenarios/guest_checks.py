"""Checks shared by scenarios: kernel log health and the series' hinted counts."""

from __future__ import annotations

import time
from collections.abc import Callable

from harness.judge import Verdict
from harness.observe import dmesg
from harness.observe.procfs import GuestObservations, read_observations

# Checks that compare counts across files read one after another (debugfs, zoneinfo,
# buddyinfo, pagetypeinfo: one `cat` each). Between two reads the allocator may still move
# a block (seen after a DIMM was onlined, on two vCPUs, and once with 200 ms held batches).
CROSS_FILE_CHECKS = frozenset(
    {"free_counts_agree", "hinted_le_free_per_order", "zoneinfo_hinted_matches_debugfs"}
)
CROSS_FILE_READS = 3
CROSS_FILE_PAUSE_S = 1.0


def observe(vm) -> GuestObservations:
    """Read /proc and the series' debugfs file in the guest over SSH."""

    def read(path: str) -> str:
        result = vm.ssh.run(f"cat {path}", timeout=60)
        if result.exit_status != 0:
            raise FileNotFoundError(path)
        return result.stdout

    return read_observations(read)


def splats(vm) -> list[dmesg.Splat]:
    """Problems in the console log and in dmesg, each id once.

    The console holds what the ring buffer may have lost; dmesg holds what the console's
    loglevel filtered. A splat seen in both is reported once (first place wins). A guest
    killed because it hung (GuestHung) has only its console.
    """
    texts = [vm.console_text()]
    if getattr(vm, "hang", None) is None:
        texts.append(vm.ssh.run("dmesg", timeout=60).stdout)
    found: dict[str, dmesg.Splat] = {}
    for text in texts:
        for splat in dmesg.classify(text):
            found.setdefault(splat.id, splat)
    return list(found.values())


def format_splats(found: list[dmesg.Splat]) -> str:
    return "\n".join(f"{s.kind} {s.id} (line {s.line_no}):\n{s.excerpt}" for s in found)


def hinted_vs_free(obs: GuestObservations) -> list[tuple[str, int, int, int]]:
    """(zone, order, hinted, free blocks) for every zone and order the series counts."""
    rows = []
    for zone in obs.zoneinfo:
        free = obs.buddyinfo.free.get((zone.node, zone.zone))
        for order, hinted in sorted(zone.hinted.items()):
            rows.append((zone.zone, order, hinted, free[order] if free else 0))
    return rows


def judge_reading_again(
    read_and_judge: Callable[[int], tuple[GuestObservations, Verdict]],
    disagreed: Callable[[str], None] = lambda note: None,
) -> tuple[GuestObservations, Verdict]:
    """Observe and judge an idle point; while the only failures are cross-file checks,
    observe again (up to CROSS_FILE_READS reads, CROSS_FILE_PAUSE_S apart). A race
    between two file reads goes away; a counting defect does not.

    `read_and_judge(attempt)` reads and judges once (attempt 1, 2, ...); `disagreed` gets a
    note of each verdict that is read again ("read N disagreed between files" and the
    verdict), for the evidence.
    """
    obs, verdict = read_and_judge(1)
    for attempt in range(2, CROSS_FILE_READS + 1):
        failed = {check.name for check in verdict.failures}
        if not failed or not failed <= CROSS_FILE_CHECKS:
            break
        disagreed(f"read {attempt - 1} disagreed between files\n{verdict}")
        time.sleep(CROSS_FILE_PAUSE_S)
        obs, verdict = read_and_judge(attempt)
    return obs, verdict
