"""Reading again: two files read a moment apart may disagree while the allocator moves a
block; a disagreement that a second or third reading does not repeat is no defect."""

from __future__ import annotations

import time
from collections.abc import Callable

from harness.judge.verdict import Verdict
from harness.observe.procfs import GuestObservations

# Checks that compare counts across files read one after another (debugfs, zoneinfo,
# buddyinfo, pagetypeinfo: one `cat` each). Between two reads the allocator may still move
# a block (seen after a DIMM was onlined, on two vCPUs, and once with 200 ms held batches).
CROSS_FILE_CHECKS = frozenset(
    {
        "free_counts_agree",
        "hinted_le_free_per_order",
        "zoneinfo_hinted_matches_debugfs",
        "buddyinfo_matches_pagetypeinfo",  # the reduced form's (judge/reduced.py)
    }
)
CROSS_FILE_READS = 3
CROSS_FILE_PAUSE_S = 1.0


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
