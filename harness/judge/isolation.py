"""Pageblock isolation and memory offline: alloc_contig_range over hinted blocks, a failed
react(), a DIMM's zone offlined while a batch is out."""

from __future__ import annotations

from collections.abc import Sequence

from harness.build.spec import HintingSpec
from harness.judge.steps import zone_activity
from harness.judge.verdict import Check, Status, Verdict
from harness.judge.verdict import result as _result
from harness.observe.procfs import (
    GuestObservations,
    HintingState,
)


def _hinted_of(state: HintingState, migratetype: str) -> tuple[int, int]:
    """(hinted, free) blocks on the free lists of one migratetype, all zones and orders."""
    lists = [e for e in state.lists if e.migratetype == migratetype]
    return sum(e.hinted for e in lists), sum(e.free for e in lists)


def judge_contig_alloc(
    start: GuestObservations,
    allocated: GuestObservations,
    freed: GuestObservations,
    pages: int,
    spec: HintingSpec,
) -> Verdict:
    """alloc_contig_range() over a CMA area the boot flush hinted: while allocated, none
    of its blocks is left on a free list (the hinted ones were isolated and taken, their
    count with them: judge_kernel checks counts against flags); freed, the area came back
    unhinted: the worker reported its blocks again, all but fewer than HWM (the idle rule
    leaves those; a block that came back still marked hinted is never reported again)."""
    assert start.hinting and allocated.hinting and freed.hinting
    hinted_start, _ = _hinted_of(start.hinting, "CMA")
    hinted_during, free_during = _hinted_of(allocated.hinting, "CMA")
    taken = (
        [f"{free_during} CMA blocks still free ({hinted_during} hinted) with the area allocated"]
        if free_during
        else []
    )
    top_blocks = pages >> (spec.min_order + 1)
    reported = sum(
        end.since(begin).reported
        for zone in freed.hinting.zones
        if (end := zone.activity) and (begin := zone_activity(allocated.hinting, zone.zone))
    )
    least = top_blocks - (spec.hwm - 1)
    again = (
        []
        if reported >= least
        else [
            f"{reported} blocks reported after the area ({top_blocks} top-order blocks) was "
            f"freed, at least {least} expected: freed blocks did not come back unhinted"
        ]
    )
    return Verdict(
        (
            _result(
                "contig_alloc_takes_hinted_blocks",
                taken,
                f"{pages} pages allocated, {hinted_start} hinted CMA blocks before",
            ),
            _result("freed_blocks_reported_again", again, f"{reported} blocks reported"),
        )
    )


REACT_NOT_QUEUED = "free page hints not queued: "


def judge_react_failure(
    before: HintingState,
    after: HintingState,
    injections_left: int,
    kernel_log: str,
    spec: HintingSpec,
    errno: int = 28,
) -> Verdict:
    """One react() failed (virtqueue_add_inbuf() made to return -errno): the driver said
    so, the failed batch came back unhinted (blocks reported exceed blocks returned hinted
    by at least one batch) and hinting retried (another cycle) and completed (the idle
    point's checks, judged beside this)."""
    reported = hinted = cycles = 0
    for zone in after.zones:
        start = zone_activity(before, zone.zone)
        if zone.activity is None:
            continue
        d = zone.activity.since(start) if start is not None else zone.activity
        reported, hinted, cycles = reported + d.reported, hinted + d.hinted, cycles + d.cycles
    injected = [] if injections_left == 0 else [f"{injections_left} failure(s) never happened"]
    said = f"{REACT_NOT_QUEUED}-{errno}"
    warned = [] if said in kernel_log else [f"no {said!r} in the kernel log"]
    unhinted = reported - hinted
    returned = (
        []
        if unhinted >= spec.capacity
        else [
            f"{reported} blocks reported, {hinted} returned hinted: the failed batch "
            f"({spec.capacity} blocks) was marked hinted"
        ]
    )
    retried = [] if cycles >= 2 else [f"{cycles} cycle(s): no retry after the failure"]
    return Verdict(
        (
            _result("fault_injected", injected, "virtqueue_add_inbuf() failed once"),
            _result("react_failure_reported", warned, said),
            _result("failed_batch_returned_unhinted", returned, f"{unhinted} blocks unhinted"),
            _result("hinting_retried", retried, f"{cycles} cycles"),
        )
    )


def judge_offline(
    deleted: bool,
    total_before_kib: int,
    total_after_kib: int,
    after: GuestObservations | None,
    zone: str,
    console_problems: Sequence[str] = (),
) -> Verdict:
    """A DIMM's zone was offlined and ejected: QEMU saw the DIMM go, MemTotal is back, and
    the emptied zone carries no hinting state (it is no longer listed, and its hinted
    counts are zero: page_hinting_reset()). Without DEVICE_DELETED only that is judged
    (`after` None: the guest may not answer), with what the console showed."""
    why = f": the console shows {', '.join(console_problems)}" if console_problems else ""
    gone = [] if deleted else [f"no DEVICE_DELETED: the guest did not offline the DIMM{why}"]
    if after is None:
        return Verdict((_result("offline_completes", gone, "DEVICE_DELETED"),))
    total = (
        []
        if total_after_kib == total_before_kib
        else [f"MemTotal {total_after_kib} KiB, {total_before_kib} KiB before the DIMM"]
    )
    if after.hinting is None:  # a kernel without the series' debugfs state: no counts to reset
        return Verdict(
            (
                _result("offline_completes", gone, "DEVICE_DELETED"),
                _result("offlined_memory_gone", total, f"MemTotal {total_after_kib} KiB"),
                Check("emptied_zone_reset", Status.NOT_APPLICABLE, "no debugfs hinting state"),
            )
        )
    stale = [f"zone {zone} still listed in debugfs" for z in after.hinting.zones if z.zone == zone]
    stale += [
        f"zone {zone} order {order}: {count} hinted after it was emptied"
        for info in after.zoneinfo
        if info.zone == zone
        for order, count in sorted(info.hinted.items())
        if count
    ]
    return Verdict(
        (
            _result("offline_completes", gone, "DEVICE_DELETED"),
            _result("offlined_memory_gone", total, f"MemTotal {total_after_kib} KiB"),
            _result("emptied_zone_reset", stale, f"zone {zone} has no hinting state"),
        )
    )


def judge_offline_work(
    before: HintingState, after: HintingState, zone: str, zone_blocks: int, spec: HintingSpec
) -> Check:
    """Between a release into a DIMM's zone and the idle point after that zone was offlined
    and plugged again, the zone can have reported at most its top-order blocks twice (the
    release, the new DIMM) and a batch more each time: a worker that takes the pages of
    isolated pageblocks (they never come back hinted) reports them over and over."""
    start, end = zone_activity(before, zone), zone_activity(after, zone)
    if start is None or end is None:
        return Check("no_hinting_of_isolated_blocks", Status.NOT_APPLICABLE, f"no {zone} counters")
    reported = end.since(start).reported
    bound = 2 * (zone_blocks + spec.capacity)
    problems = (
        []
        if reported <= bound
        else [f"{zone}: {reported} blocks reported, at most {bound} for two fills of the zone"]
    )
    return _result("no_hinting_of_isolated_blocks", problems, f"{zone}: {reported} reported")
