"""The judge: passes what v2 reaches, fails (with numbers) what a broken kernel shows.

Healthy observations come from the model rendered as guest files (harness.model.observe);
broken ones are those observations edited the way a broken kernel would show them, or a
model with one v2 rule knocked out.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import pytest

from harness.core.errors import HarnessError
from harness.core.units import MiB
from harness.judge import (
    JudgeConfig,
    RssEvidence,
    Status,
    hinted_bytes,
    judge,
    judge_kernel,
    judge_rss,
)
from harness.model import HintingSystem, MigrateType, Params
from harness.model.observe import declared_spec, observe
from harness.observe.procfs import (
    BUDDYINFO_PATH,
    HINTING_STATE_PATH,
    MEMINFO_PATH,
    PAGETYPEINFO_PATH,
    ZONEINFO_PATH,
    GuestObservations,
    HintingListState,
    HintingZoneState,
    read_observations,
)

X86 = Params(migratetypes=tuple(MigrateType)[:4])
TOP = 10


def workload(system: HintingSystem, blocks: int = 40) -> HintingSystem:
    """memhog-like: take top blocks, touch them, give them back, let hinting settle."""
    system.settle()
    pfns = [system.alloc(TOP) for _ in range(blocks)]
    for pfn in pfns:
        system.free(pfn, TOP)
    system.settle()
    return system


@pytest.fixture(scope="module")
def healthy() -> GuestObservations:
    return observe(workload(HintingSystem(X86, 64 << TOP)))


def edit_list(obs: GuestObservations, order: int, mt: str, **changes: object) -> GuestObservations:
    assert obs.hinting is not None
    lists = tuple(
        replace(e, **changes) if (e.order, e.migratetype) == (order, mt) else e
        for e in obs.hinting.lists
    )
    return replace(obs, hinting=replace(obs.hinting, lists=lists))


def movable_top(obs: GuestObservations) -> HintingListState:
    assert obs.hinting is not None
    return next(e for e in obs.hinting.lists if (e.order, e.migratetype) == (TOP, "Movable"))


def test_healthy_kernel_passes_every_check(healthy: GuestObservations) -> None:
    rss = RssEvidence(baseline=300 * MiB, peak=460 * MiB, final=305 * MiB)
    verdict = judge(healthy, rss, hinted_before_bytes=0)
    assert verdict.passed, str(verdict)
    assert verdict.check("idle_trigger_rule").status is Status.PASS
    assert hinted_bytes(healthy) == 64 * (4096 << TOP)


def test_hinted_above_free_is_a_failure_with_the_numbers(healthy: GuestObservations) -> None:
    top = movable_top(healthy)
    broken = edit_list(healthy, TOP, "Movable", hinted=top.free + 3, first_hinted=0)
    verdict = judge_kernel(broken)
    check = verdict.check("hinted_le_free_per_list")
    assert check.status is Status.FAIL
    assert f"hinted {top.free + 3} > free {top.free}" in check.detail
    assert not verdict.passed and "FAIL" in str(verdict)


def test_zoneinfo_hinted_above_buddyinfo_free_fails(healthy: GuestObservations) -> None:
    zone = healthy.zoneinfo[0]
    broken = replace(healthy, zoneinfo=(replace(zone, hinted={9: 0, 10: 70}),))
    check = judge_kernel(broken).check("hinted_le_free_per_order")
    assert check.status is Status.FAIL and "hinted 70 > free 64" in check.detail


def test_a_gap_in_the_hinted_block_fails(healthy: GuestObservations) -> None:
    top = movable_top(healthy)
    broken = edit_list(
        healthy, TOP, "Movable", hinted=top.hinted - 1, first_hinted=0, contiguous_tail=False
    )
    check = judge_kernel(broken).check("hinted_tail_block")
    assert check.status is Status.FAIL
    assert f"{top.hinted - 1} hinted of {top.free}, first at 0" in check.detail
    assert "tail block would start at 1" in check.detail


def test_zoneinfo_counts_that_disagree_with_the_debugfs_flags_fail(
    healthy: GuestObservations,
) -> None:
    zone = healthy.zoneinfo[0]
    broken = replace(healthy, zoneinfo=(replace(zone, hinted={9: 0, 10: 63}),))
    check = judge_kernel(broken).check("zoneinfo_hinted_matches_debugfs")
    assert check.status is Status.FAIL
    assert "zoneinfo hinted 63 != debugfs sum 64" in check.detail


def test_a_missed_trigger_fails_the_idle_rule(healthy: GuestObservations) -> None:
    broken = edit_list(healthy, TOP, "Movable", hinted=0, first_hinted=-1)
    zone = broken.zoneinfo[0]
    broken = replace(broken, zoneinfo=(replace(zone, hinted={9: 0, 10: 0}),))
    check = judge_kernel(broken).check("idle_trigger_rule")
    assert check.status is Status.FAIL
    assert "order 10: 64 unhinted (64 free, 0 hinted) while idle > bound 62" in check.detail


def test_a_kernel_that_never_notifies_is_caught() -> None:
    """Knock out page_hinting_notify_free: the model then reaches a state the judge rejects."""
    system = HintingSystem(X86, 100 << TOP)
    system.settle()
    system.hinting.notify_enabled = False  # the static key never got enabled, say
    workload(system, 70)
    verdict = judge_kernel(observe(system), spec=declared_spec(system))
    check = verdict.check("idle_trigger_rule")
    assert check.status is Status.FAIL and "70 unhinted" in check.detail


def test_a_kernel_whose_counts_drift_on_merges_is_caught() -> None:
    """Knock out the merge test of put_hinted_page: merged pages get counted at their old
    order (the drift reviewers warned about)."""
    system = HintingSystem(X86, 64 << TOP)
    system.settle()
    halves = [system.alloc(9) for _ in range(2)]
    system.free(halves[0], 9)
    for pfn in [system.alloc(TOP) for _ in range(32)]:
        system.free(pfn, TOP)
    system.advance(X86.delay)
    system.step_until(lambda s: bool(s.worker.batch) and not s.hinting.requested)
    system.free(halves[1], 9)  # merges with halves[0] during drain
    original = system.zone.free

    def drifting_free(pfn, order, mt=None, *, hinted=False, to_tail=False):
        placed = original(pfn, order, mt, hinted=hinted, to_tail=to_tail)
        if hinted and placed.merged:
            system.hinting.hinted_pages[order - X86.min_order] += 1
        return placed

    system.zone.free = drifting_free
    system.worker_step()
    verdict = judge_kernel(observe(system), spec=declared_spec(system))
    check = verdict.check("zoneinfo_hinted_matches_debugfs")
    assert check.status is Status.FAIL and "order 9: zoneinfo hinted 1 != debugfs sum 0" in (
        check.detail
    )


def test_rss_that_did_not_fall_fails_with_the_numbers(healthy: GuestObservations) -> None:
    rss = RssEvidence(baseline=300 * MiB, peak=460 * MiB, final=458 * MiB)
    check = judge(healthy, rss).check("rss_drop_covers_hinted")
    assert check.status is Status.FAIL
    assert "RSS drop 2.0 MiB" in check.detail
    assert "expected >= 160.0 MiB - 32.0 MiB" in check.detail


def test_rss_tolerance_is_the_larger_of_absolute_and_relative() -> None:
    rss = RssEvidence(baseline=0, peak=1000 * MiB, final=100 * MiB)  # drop 900 MiB
    assert judge_rss(1000 * MiB, rss).passed  # 1000 - 100 (10%) = 900
    assert not judge_rss(1000 * MiB, replace(rss, final=101 * MiB)).passed
    tight = JudgeConfig(rss_abs_tolerance=0, rss_rel_tolerance=0.0)
    assert not judge_rss(1000 * MiB, rss, config=tight).passed


def test_rss_expectation_counts_bytes_hinted_since_the_peak_capped_by_the_growth() -> None:
    rss = RssEvidence(baseline=100 * MiB, peak=200 * MiB, final=110 * MiB)
    check = judge_rss(1000 * MiB, rss, hinted_before_bytes=600 * MiB)
    assert check.passed and "expected >= 100.0 MiB" in check.detail


def test_rss_evidence_from_a_release_measurement() -> None:
    from harness.drive.workloads import ReleaseMeasurement

    m = ReleaseMeasurement(
        mib=256,
        baseline_rss=100,
        peak_rss=400,
        released_at=1.0,
        final_rss=150,
        watched_s=30.0,
        touch_seconds=2.0,
    )
    assert RssEvidence.from_measurement(m) == RssEvidence(100, 400, 150)


def test_rss_samples_give_baseline_peak_and_final() -> None:
    samples = [(0.0, 100), (2.0, 300), (1.0, 250), (3.0, 120)]
    assert RssEvidence.from_samples(samples) == RssEvidence(100, 300, 120)
    with pytest.raises(HarnessError, match="no RSS samples"):
        RssEvidence.from_samples([])


def test_refcnt_left_up_while_every_zone_is_idle_fails(healthy: GuestObservations) -> None:
    assert healthy.hinting is not None
    broken = replace(healthy, hinting=replace(healthy.hinting, refcnt=1))
    check = judge_kernel(broken).check("refcnt_idle")
    assert check.status is Status.FAIL and "refcnt 1, 0 zones requested" in check.detail


def test_busy_zone_skips_the_idle_rule_unless_idle_is_required(
    healthy: GuestObservations,
) -> None:
    assert healthy.hinting is not None
    busy = replace(healthy.hinting, zones=(HintingZoneState(0, "Normal", True, True),), refcnt=1)
    obs = replace(healthy, hinting=busy)
    assert judge_kernel(obs).check("idle_trigger_rule").status is Status.NOT_APPLICABLE
    strict = judge_kernel(obs, JudgeConfig(require_idle=True)).check("idle_trigger_rule")
    assert strict.status is Status.FAIL and "not idle (requested 1, active 1)" in strict.detail


def test_free_counts_that_disagree_between_files_fail(healthy: GuestObservations) -> None:
    top = movable_top(healthy)
    broken = edit_list(healthy, TOP, "Movable", free=top.free + 2, first_hinted=2)
    check = judge_kernel(broken).check("free_counts_agree")
    assert check.status is Status.FAIL
    assert f"debugfs free {top.free + 2} != pagetypeinfo {top.free}" in check.detail
    loose = JudgeConfig(free_tolerance=2)
    assert judge_kernel(broken, loose).check("free_counts_agree").passed


def test_a_kernel_without_the_series_fails(healthy: GuestObservations) -> None:
    verdict = judge_kernel(replace(healthy, hinting=None))
    assert not verdict.passed
    assert "no debugfs page_hinting/state" in verdict.check("hinting_present").detail


def test_min_order_must_be_the_pageblock_order(healthy: GuestObservations) -> None:
    assert healthy.hinting is not None
    broken = replace(healthy, hinting=replace(healthy.hinting, min_order=10))
    check = judge_kernel(broken).check("min_order_is_pageblock_order")
    assert check.status is Status.FAIL and "min_order 10 != pageblock_order 9" in check.detail


def test_a_busy_model_state_passes_the_snapshot_checks() -> None:
    """Sampled mid-cycle (lock dropped, batch out): no false failure."""
    system = HintingSystem(X86, 64 << TOP)
    system.advance(X86.delay)
    system.worker_step()
    system.worker_step()
    verdict = judge_kernel(observe(system), spec=declared_spec(system))
    assert verdict.passed, str(verdict)
    assert verdict.check("idle_trigger_rule").status is Status.NOT_APPLICABLE


def test_cross_file_counts_of_a_busy_zone_are_not_compared(healthy: GuestObservations) -> None:
    """Between two file reads a running worker moves pages; only the dump is consistent."""
    assert healthy.hinting is not None
    busy = replace(healthy.hinting, zones=(HintingZoneState(0, "Normal", True, True),), refcnt=1)
    zone = healthy.zoneinfo[0]
    obs = replace(healthy, hinting=busy, zoneinfo=(replace(zone, hinted={9: 0, 10: 60}),))
    verdict = judge_kernel(obs)
    assert verdict.passed, str(verdict)
    assert (
        "busy zones not cross-checked: [(0, 'Normal')]"
        in verdict.check("zoneinfo_hinted_matches_debugfs").detail
    )
    idle = replace(obs, hinting=healthy.hinting)
    assert not judge_kernel(idle).check("zoneinfo_hinted_matches_debugfs").passed


FIXTURES = Path(__file__).parent / "fixtures" / "proc"
FIXTURE_NAMES = {
    ZONEINFO_PATH: "zoneinfo",
    BUDDYINFO_PATH: "buddyinfo",
    PAGETYPEINFO_PATH: "pagetypeinfo",
    MEMINFO_PATH: "meminfo",
    HINTING_STATE_PATH: "hinting_state",
}


def fixture_reader(*directories: str) -> Callable[[str], str]:
    """read(path) over fixture directories, the first that has the file wins."""

    def read(path: str) -> str:
        for directory in directories:
            candidate = FIXTURES / directory / FIXTURE_NAMES[path]
            if candidate.exists():
                return candidate.read_text()
        raise FileNotFoundError(path)

    return read


def test_real_stock_guest_capture_is_judged_as_a_kernel_without_the_series() -> None:
    obs = read_observations(fixture_reader("guest-6.1-stock"))
    verdict = judge_kernel(obs)
    assert [c.name for c in verdict.failures] == ["hinting_present"]


def test_parsed_series_files_on_a_real_guest_capture_pass() -> None:
    """Parser -> judge end to end; unpopulated zones (absent from buddyinfo) are fine."""
    obs = read_observations(fixture_reader("synthetic-series", "guest-6.1-stock"))
    assert [z.zone for z in obs.zoneinfo] == ["DMA32", "Normal", "Movable"]
    verdict = judge_kernel(obs, JudgeConfig(require_idle=True))
    assert verdict.passed, str(verdict)
    zones = [replace(z, hinted={9: 0, 10: 1}) if z.zone == "Normal" else z for z in obs.zoneinfo]
    unpopulated = judge_kernel(replace(obs, zoneinfo=tuple(zones)))
    assert (
        "node 0 Normal order 10: hinted 1 > free 0"
        in unpopulated.check("hinted_le_free_per_order").detail
    )
