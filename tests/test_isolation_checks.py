"""The isolation, offline and react-failure checks of harness.judge on crafted states: each
fails on the state a broken revision leaves, naming it, and passes on a sound one. (The
real runs are harness/scenarios/test_isolation.py and test_offline.py.)"""

from __future__ import annotations

from dataclasses import replace

from harness.build.spec import V2_SPEC
from harness.judge import (
    Status,
    judge_contig_alloc,
    judge_offline,
    judge_react_failure,
)
from harness.judge.snapshot import _check_isolated_lists_unhinted as isolated_lists_unhinted
from harness.observe.procfs import (
    BuddyInfo,
    GuestObservations,
    HintingListState,
    HintingState,
    HintingZoneState,
    PageTypeInfo,
    ZoneActivity,
    ZoneInfo,
)


def block_list(mt: str, free: int, hinted: int, zone: str = "DMA32") -> HintingListState:
    first = free - hinted if hinted else -1
    return HintingListState(zone, 0, 10, mt, free, hinted, first, True)


def state(
    *lists: HintingListState, activity: ZoneActivity | None = None, zones: tuple[str, ...] = ()
) -> HintingState:
    zone_states = tuple(
        HintingZoneState(0, z, False, False, activity or ZoneActivity(1, 1, 1, 32, 32))
        for z in zones or ("DMA32",)
    )
    return HintingState(9, 32, 32, 0, True, zone_states, tuple(lists))


def observed(hinting: HintingState, zoneinfo: tuple[ZoneInfo, ...] = ()) -> GuestObservations:
    return GuestObservations(
        zoneinfo=zoneinfo,
        buddyinfo=BuddyInfo({}),
        pagetypeinfo=PageTypeInfo(9, 512, {}, {}),
        meminfo={},
        hinting=hinting,
    )


def test_a_hinted_block_on_an_isolated_list_fails() -> None:
    assert isolated_lists_unhinted(state(block_list("Isolate", 4, 0))).passed
    bad = isolated_lists_unhinted(state(block_list("Isolate", 4, 1)))
    assert bad.status is Status.FAIL and "Isolate: 1 of 4 hinted" in bad.detail


def test_contig_alloc_passes_when_the_area_was_taken_and_reported_again() -> None:
    start = observed(state(block_list("CMA", 64, 64)))
    during = observed(state(block_list("CMA", 0, 0), activity=ZoneActivity(1, 1, 1, 32, 32)))
    after = observed(state(block_list("CMA", 64, 62), activity=ZoneActivity(2, 2, 3, 94, 94)))
    assert judge_contig_alloc(start, during, after, 65536, V2_SPEC).passed


def test_contig_alloc_fails_on_blocks_left_free_and_on_blocks_that_stayed_hinted() -> None:
    start = observed(state(block_list("CMA", 64, 64)))
    during = observed(state(block_list("CMA", 2, 2), activity=ZoneActivity(1, 1, 1, 32, 32)))
    after = observed(state(block_list("CMA", 64, 64), activity=ZoneActivity(1, 1, 1, 32, 32)))
    verdict = judge_contig_alloc(start, during, after, 65536, V2_SPEC)
    assert verdict.check("contig_alloc_takes_hinted_blocks").status is Status.FAIL
    assert verdict.check("freed_blocks_reported_again").status is Status.FAIL


def test_react_failure_passes_when_the_batch_came_back_unhinted_and_was_retried() -> None:
    before = state(activity=ZoneActivity(1, 1, 10, 300, 300))
    after = state(activity=ZoneActivity(2, 3, 13, 396, 364))  # 32 reported twice
    log = "virtio_balloon virtio1: free page hints not queued: -28\n"
    assert judge_react_failure(before, after, 0, log, V2_SPEC).passed


def test_react_failure_fails_on_a_failed_batch_marked_hinted() -> None:
    before = state(activity=ZoneActivity(1, 1, 10, 300, 300))
    marked = state(activity=ZoneActivity(2, 3, 12, 364, 364))
    verdict = judge_react_failure(before, marked, 0, "free page hints not queued: -28", V2_SPEC)
    assert verdict.check("failed_batch_returned_unhinted").status is Status.FAIL
    silent = judge_react_failure(before, replace(marked), 1, "", V2_SPEC)
    assert silent.check("fault_injected").status is Status.FAIL
    assert silent.check("react_failure_reported").status is Status.FAIL
    no_retry = state(activity=ZoneActivity(2, 2, 11, 332, 300))
    assert (
        judge_react_failure(before, no_retry, 0, "", V2_SPEC).check("hinting_retried").status
        is Status.FAIL
    )


def zone(name: str, hinted: dict[int, int]) -> ZoneInfo:
    return ZoneInfo(0, name, 0, 0, 0, 0, 0, 0, 0, hinted=hinted)


def test_offline_passes_when_the_zone_went_with_its_state() -> None:
    after = observed(state(), (zone("DMA32", {9: 3, 10: 400}), zone("Movable", {9: 0, 10: 0})))
    assert judge_offline(True, 2_000_000, 2_000_000, after, "Movable").passed


def test_offline_fails_on_a_zone_that_kept_its_counts_or_a_dimm_that_stayed() -> None:
    kept = observed(state(zones=("DMA32", "Movable")), (zone("Movable", {10: 5}),))
    verdict = judge_offline(False, 2_000_000, 2_524_288, kept, "Movable")
    assert verdict.check("offline_completes").status is Status.FAIL
    assert verdict.check("offlined_memory_gone").status is Status.FAIL
    detail = verdict.check("emptied_zone_reset").detail
    assert "still listed" in detail and "order 10: 5 hinted" in detail


def test_an_offline_that_crashed_is_judged_from_the_console() -> None:
    verdict = judge_offline(False, 0, 0, None, "Movable", ["BUG kernel_BUG:mm/page_alloc.c:x"])
    check = verdict.check("offline_completes")
    assert check.status is Status.FAIL and "kernel_BUG:mm/page_alloc.c:x" in check.detail
