"""The detection checks on crafted observations: each fails on the state a seeded defect
leaves, for the reason it names, and passes on the state the clean revision leaves.

The real runs (red on a mutant, green on hinting-v2-fixed, same campaign) are
`python3 -m harness mutants`; these tests pin each rule where no kernel is needed.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from harness.build.spec import V2_SPEC, HintingSpec, load_spec
from harness.core.errors import SeriesError
from harness.judge import (
    FreeMemory,
    Status,
    judge_accounting,
    judge_integrity,
    judge_kernel,
    judge_kernel_text,
    judge_prediction,
    judge_quiet,
    judge_work,
)
from harness.model import HintingSystem, MigrateType, Params
from harness.model.counts import FreeBlock, MergeFree, OrderCounts, predict_idle
from harness.model.observe import observe
from harness.observe.procfs import (
    GuestObservations,
    HintingListState,
    HintingState,
    HintingZoneState,
    ProcfsParseError,
    ZoneActivity,
    parse_hinting_state,
)

X86 = Params(migratetypes=tuple(MigrateType)[:4])
ZONE = "Normal"  # the zone harness.model.observe renders


@pytest.fixture(scope="module")
def idle_obs() -> GuestObservations:
    system = HintingSystem(X86, 64 << 10)
    system.settle()
    return observe(system)


def with_activity(obs: GuestObservations, activity: ZoneActivity) -> GuestObservations:
    assert obs.hinting is not None
    zones = tuple(replace(z, activity=activity) for z in obs.hinting.zones)
    return replace(obs, hinting=replace(obs.hinting, zones=zones))


def with_counts(obs: GuestObservations, order: int, free: int, hinted: int) -> GuestObservations:
    """Edit the zone-level free (buddyinfo) and hinted (zoneinfo) counts of one order."""
    (key, free_row), *_ = obs.buddyinfo.free.items()
    row = list(free_row)
    row[order] = free
    zone = replace(obs.zoneinfo[0], hinted={**obs.zoneinfo[0].hinted, order: hinted})
    buddy = replace(obs.buddyinfo, free={key: tuple(row)})
    return replace(obs, buddyinfo=buddy, zoneinfo=(zone, *obs.zoneinfo[1:]))


# -- debugfs activity counters -----------------------------------------------------------
STATE = (
    "min_order 9 hwm 32 capacity 32 refcnt 0 device 1\n"
    "zone DMA32 node 0 requested 0 active 0 requests 1 cycles 1 batches 16 reported 497 "
    "hinted 497\n"
    "order 9 mt Movable free 1 hinted 1 first_hinted 0 contiguous_tail 1\n"
)


def test_activity_counters_parse_from_the_zone_line() -> None:
    state = parse_hinting_state(STATE)
    assert state.zones[0].activity == ZoneActivity(1, 1, 16, 497, 497)


def test_a_zone_line_without_counters_is_an_older_series() -> None:
    old = STATE.replace(" requests 1 cycles 1 batches 16 reported 497 hinted 497", "")
    assert parse_hinting_state(old).zones[0].activity is None


def test_a_zone_line_with_some_counters_is_named() -> None:
    with pytest.raises(ProcfsParseError, match="missing hinted"):
        parse_hinting_state(STATE.replace(" hinted 497\n", "\n"))


# -- declared parameters --------------------------------------------------------------------
def test_spec_defaults_to_v2_and_reads_the_manifest(tmp_path: Path) -> None:
    assert load_spec(None) == V2_SPEC
    assert load_spec(tmp_path) == V2_SPEC
    (tmp_path / "params.toml").write_text("[hinting]\nhwm = 16\n")
    assert load_spec(tmp_path) == replace(V2_SPEC, hwm=16)


def test_spec_rejects_unknown_keys(tmp_path: Path) -> None:
    (tmp_path / "params.toml").write_text("[hinting]\nhigh_water = 16\n")
    with pytest.raises(SeriesError, match="high_water"):
        load_spec(tmp_path)


def test_the_shipped_revisions_declare_v2s_parameters() -> None:
    root = Path(__file__).resolve().parents[1] / "patches"
    assert load_spec(root / "hinting-v2") == V2_SPEC
    assert load_spec(root / "hinting-v2-fixed") == V2_SPEC


def test_a_kernel_with_another_hwm_fails_the_parameter_check(idle_obs) -> None:
    spec = HintingSpec(min_order=9, hwm=32, capacity=32)
    assert idle_obs.hinting is not None
    lying = replace(idle_obs, hinting=replace(idle_obs.hinting, hwm=16))
    assert judge_kernel(idle_obs, spec=spec).check("parameters_match_spec").passed
    check = judge_kernel(lying, spec=spec).check("parameters_match_spec")
    assert check.status is Status.FAIL and "hwm 16 != declared 32" in check.detail


# -- exact prediction of a scripted step ----------------------------------------------------
PAIRS = [FreeBlock(9), MergeFree(10)]


def test_prediction_below_and_at_the_trigger() -> None:
    start = {9: OrderCounts(2, 2), 10: OrderCounts(461, 461)}
    below = predict_idle(start, PAIRS * 31, X86)
    assert not below.requested and below.counts[10] == OrderCounts(492, 461)
    at = predict_idle(start, PAIRS * 32, X86)
    assert at.requested and at.reported == 32 and at.counts[10] == OrderCounts(493, 493)


def _step(idle_obs, *, counts_after: tuple[int, int], activity_after: ZoneActivity):
    before = with_counts(with_activity(idle_obs, ZoneActivity(1, 1, 16, 497, 497)), 10, 461, 461)
    after = with_counts(with_activity(idle_obs, activity_after), 10, *counts_after)
    before = with_counts(before, 9, 2, 2)
    after = with_counts(after, 9, 2, 2)
    start = {9: OrderCounts(2, 2), 10: OrderCounts(461, 461)}
    prediction = predict_idle(start, PAIRS * 32, X86)
    return judge_prediction("at", prediction, before, after, ZONE, V2_SPEC)


def test_the_clean_step_matches_the_model_exactly(idle_obs) -> None:
    verdict = _step(
        idle_obs, counts_after=(493, 493), activity_after=ZoneActivity(2, 2, 17, 529, 529)
    )
    assert verdict.passed, verdict


def test_a_trigger_that_did_not_fire_fails_counts_and_work(idle_obs) -> None:
    """What trigger-factor-2 and trigger-off-by-one leave: 32 blocks unhinted, no work."""
    verdict = _step(
        idle_obs, counts_after=(493, 461), activity_after=ZoneActivity(1, 1, 16, 497, 497)
    )
    failed = {c.name for c in verdict.failures}
    assert failed == {"counts_match_model[at]", "work_matches_model[at]"}
    assert "unhinted 32" in verdict.check("counts_match_model[at]").detail


def test_half_full_batches_fail_the_work_check(idle_obs) -> None:
    """What capacity-half leaves: the right counts, but two batches for 32 blocks."""
    verdict = _step(
        idle_obs, counts_after=(493, 493), activity_after=ZoneActivity(2, 2, 18, 529, 529)
    )
    assert [c.name for c in verdict.failures] == ["work_matches_model[at]"]
    assert "batches 2 != model 1" in verdict.check("work_matches_model[at]").detail


def test_a_block_kept_by_the_drain_fails_the_counts(idle_obs) -> None:
    """What drop-block-per-batch leaves: one top-order block fewer than the model."""
    verdict = _step(
        idle_obs, counts_after=(492, 492), activity_after=ZoneActivity(2, 2, 17, 529, 528)
    )
    assert not verdict.check("counts_match_model[at]").passed


# -- bounds on work, idle quiet --------------------------------------------------------------
def _state(activity: ZoneActivity, *, requested: bool = False) -> HintingState:
    zone = HintingZoneState(0, "DMA32", requested, False, activity)
    return HintingState(9, 32, 32, 0, True, (zone,), ())


def test_work_within_the_model_passes_a_clean_release() -> None:
    before, after = (
        _state(ZoneActivity(1, 1, 16, 497, 497)),
        _state(ZoneActivity(7, 7, 47, 1392, 1392)),
    )
    assert judge_work(before, after, V2_SPEC).passed


def test_a_request_per_free_fails_the_work_bound() -> None:
    storm = _state(ZoneActivity(201, 201, 201, 697, 697))
    check = judge_work(_state(ZoneActivity(1, 1, 16, 497, 497)), storm, V2_SPEC).checks[0]
    assert check.status is Status.FAIL and "200 requests for 200 reported" in check.detail


def test_half_batches_fail_the_work_bound() -> None:
    half = _state(ZoneActivity(2, 2, 36, 817, 817))  # 320 blocks in 20 batches of 16
    check = judge_work(_state(ZoneActivity(1, 1, 16, 497, 497)), half, V2_SPEC).checks[0]
    assert check.status is Status.FAIL and "full batches of 32" in check.detail


def test_an_idle_guest_that_keeps_cycling_fails_the_quiet_check() -> None:
    first, later = (
        _state(ZoneActivity(5, 5, 20, 600, 600)),
        _state(ZoneActivity(35, 35, 20, 600, 600)),
    )
    check = judge_quiet(first, later, 3.0)
    assert check.status is Status.FAIL and "+30 cycles" in check.detail
    assert judge_quiet(first, first, 3.0).passed


# -- accounting and integrity --------------------------------------------------------------
BASE = FreeMemory(mem_free=2_024_000, nr_free_pages=2_024_000, high_order=2_021_000)


def test_free_memory_back_within_noise_passes() -> None:
    cycles = [replace(BASE, mem_free=BASE.mem_free + 5_000, high_order=BASE.high_order - 12_288)]
    assert judge_accounting(BASE, cycles, 8192, 32768).passed


def test_a_block_lost_per_batch_fails_accounting() -> None:
    lost = 10 * 4096  # ten batches, one order-10 block (4 MiB) each
    cycles = [
        FreeMemory(*(v - lost * n for v in (BASE.mem_free, BASE.nr_free_pages, BASE.high_order)))
        for n in (1, 2, 3)
    ]
    check = judge_accounting(BASE, cycles, 8192, 32768)
    assert check.status is Status.FAIL and "after cycle 1: mem_free" in check.detail


def test_integrity_names_offset_and_bytes() -> None:
    line = (
        "MISMATCH region=hold round=2 offset=0x1000 expected=8efc9e8a8e7680a9 "
        "found=0000000000000000 words=512"
    )
    check = judge_integrity(f"round 0 ok\nround 1 ok\n{line}\n", [("a" * 64, "a" * 64)])
    assert check.status is Status.FAIL and "offset=0x1000" in check.detail
    assert judge_integrity("round 0 ok\ndone 1 rounds, 8 MiB verified\n", [("a", "a")]).passed
    changed = judge_integrity("done 1 rounds, 8 MiB verified\n", [("a" * 64, "b" * 64)])
    assert changed.status is Status.FAIL and "tmpfs file 0" in changed.detail


# As sg-length-page-over's guest printed it (2026-11-30): the startup flush described each
# block one page too long, and the host zeroed the kernel text next to a hinted block.
ZEROED_TEXT_OOPS = """\
[    0.848393] BUG: unable to handle page fault for address: 00000000000203d0
[    0.849143] Oops: 0000 [#1] SMP
[    0.849548] RIP: 0010:wait_for_initramfs+0x0/0x3b
[    0.850010] Code: 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 \
00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 <00> 00 00 00 00 00 00 00 00 00 00
[    0.853188] RSP: 0000:ffffc90000013f08 EFLAGS: 00010246
"""

# An ordinary oops (a NULL dereference): the code bytes are the kernel's real instructions.
ORDINARY_OOPS = """\
[   12.000000] BUG: kernel NULL pointer dereference, address: 0000000000000008
[   12.000017] RIP: 0010:page_hinting_process+0x5c/0x2b0
[   12.000034] Code: 48 8b 47 08 48 85 c0 74 0c 00 00 <48> 8b 40 08 c3 cc cc 00 00 00
"""


def test_kernel_code_that_reads_as_zeros_fails_kernel_text_intact() -> None:
    check = judge_kernel_text(ZEROED_TEXT_OOPS, control_booted=True)
    assert check.status is Status.FAIL
    assert check.name == "kernel_text_intact"
    assert "wait_for_initramfs+0x0/0x3b" in check.detail and "line 4" in check.detail
    assert "free-page-reporting off (control boot)" in check.detail
    # the same crash without hints taken: no verdict on hinting
    unrelated = judge_kernel_text(ZEROED_TEXT_OOPS, control_booted=False)
    assert unrelated.status is Status.NOT_APPLICABLE and "not attributable" in unrelated.detail
    assert judge_kernel_text(ORDINARY_OOPS).passed
    assert judge_kernel_text("").passed


def _lists(*rows: tuple[str, int, int, int]) -> tuple[HintingListState, ...]:
    return tuple(
        HintingListState(ZONE, 0, order, mt, free, hinted, -1, True)
        for mt, order, free, hinted in rows
    )


def _step_with_order9(idle_obs, hinted9: int, lists: tuple[HintingListState, ...]):
    """The clean `at` step, but order 9 reads 2 free / `hinted9` hinted afterwards."""
    before = with_counts(with_activity(idle_obs, ZoneActivity(1, 1, 16, 497, 497)), 10, 461, 461)
    after = with_counts(with_activity(idle_obs, ZoneActivity(2, 2, 18, 530, 530)), 10, 493, 493)
    before, after = with_counts(before, 9, 2, 1), with_counts(after, 9, 2, hinted9)
    assert after.hinting is not None
    after = replace(after, hinting=replace(after.hinting, lists=lists))
    prediction = predict_idle({9: OrderCounts(2, 1), 10: OrderCounts(461, 461)}, PAIRS * 32, X86)
    assert prediction.counts[9] == OrderCounts(2, 2) and prediction.reported == 33
    return judge_prediction("at", prediction, before, after, ZONE, V2_SPEC)


def test_a_block_the_kernel_took_and_gave_back_after_the_cycle_is_not_a_miscount(
    idle_obs,
) -> None:
    """What two one-patch runs of hinting-v2-fixed left: the cycle reported the Unmovable
    order-9 block (work 33 as the model says), then a pcp refill split it and the drain
    merged it back unhinted. The Movable lists, where the step's blocks are, stay exact."""
    kernel_took_it = _lists(("Unmovable", 9, 1, 0), ("Reclaimable", 9, 1, 1))
    verdict = _step_with_order9(idle_obs, 1, kernel_took_it)
    assert verdict.passed, verdict
    assert "1 on the kernel's own lists" in verdict.check("counts_match_model[at]").detail


def test_an_unhinted_block_on_the_movable_list_is_still_a_miscount(idle_obs) -> None:
    movable_left = _lists(("Movable", 9, 1, 0), ("Reclaimable", 9, 1, 1))
    verdict = _step_with_order9(idle_obs, 1, movable_left)
    assert [c.name for c in verdict.failures] == ["counts_match_model[at]"]
    assert "order 9: free 2 hinted 1 (unhinted 1)" in verdict.failures[0].detail
