"""Waiting for a hinting guest to go quiet without the series' debugfs file.

A kernel built without the harness's instrumentation (harness/build/overlay.py) has no
page_hinting/state to say that no zone is requested or active. What it still shows is
the free lists: while the worker holds a batch, up to `capacity` blocks of the hinting
orders are off them, and they come back when the batch is drained. The guest is taken as
quiet once the free blocks of every hinting order (/proc/buddyinfo) and MemFree read the
same QUIET_READS times in a row, QUIET_POLL_S apart: a cycle's batches follow each other
within milliseconds here (no react delay without the instrumentation), so a second of
unchanged counts is past the cycle.
"""

from __future__ import annotations

import time

from harness.core.poll import poll_until
from harness.drive.workloads import StepStalled
from harness.observe.procfs import BUDDYINFO_PATH, MEMINFO_PATH, parse_buddyinfo, parse_meminfo

QUIET_READS = 3
QUIET_POLL_S = 0.5
QUIET_TIMEOUT_S = 30.0

Counts = tuple[tuple[tuple[int, str], tuple[int, ...]], ...]


class NeverQuiet(StepStalled):
    """The free counts of the hinting orders kept changing: hinting never settles (a storm)
    or something else keeps the allocator busy; a failed check (harness.judge.progress), as
    worker_goes_idle is where the series' debugfs file can be read."""

    check = "free_counts_settle"


def hinting_order_counts(vm, min_order: int) -> tuple[Counts, int]:
    """(free blocks of each order >= min_order per zone, MemFree in KiB), read now."""
    buddy = parse_buddyinfo(vm.ssh.check(f"cat {BUDDYINFO_PATH}").stdout, BUDDYINFO_PATH)
    mem_free = parse_meminfo(vm.ssh.check(f"cat {MEMINFO_PATH}").stdout, MEMINFO_PATH)["MemFree"]
    counts = tuple(sorted((zone, free[min_order:]) for zone, free in buddy.free.items()))
    return counts, mem_free


def wait_quiet(
    vm, *, min_order: int, settle_s: float, timeout_s: float = QUIET_TIMEOUT_S
) -> tuple[Counts, int]:
    """Sleep `settle_s` (past the worker's start delay), then poll until the counts read
    the same QUIET_READS times in a row; they are returned. NeverQuiet after `timeout_s`."""
    time.sleep(settle_s)
    seen: list[tuple[Counts, int]] = []

    def read() -> list[tuple[Counts, int]]:
        seen.append(hinting_order_counts(vm, min_order))
        return seen[-QUIET_READS:]

    def unchanged(last: list[tuple[Counts, int]]) -> bool:
        return len(last) == QUIET_READS and all(reading == last[0] for reading in last)

    last, quiet = poll_until(
        read, unchanged, timeout=max(0.0, timeout_s - settle_s), interval=QUIET_POLL_S
    )
    if not quiet:
        raise NeverQuiet(
            f"the free blocks of orders >= {min_order} or MemFree "
            f"still changed after {timeout_s:.0f} s (last reads: "
            f"{[mem for _, mem in last]} KiB MemFree): hinting never settles"
        )
    return last[-1]
