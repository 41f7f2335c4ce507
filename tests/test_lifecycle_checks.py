"""The lifecycle checks of harness.judge on crafted debugfs states: each fails on the state
a broken shutdown, hotplug or reset path leaves, naming it, and passes on a sound one.
(The real runs are harness/scenarios/test_lifecycle.py.)"""

from __future__ import annotations

from dataclasses import replace

from harness.core.units import MiB
from harness.judge import (
    JudgeConfig,
    Status,
    judge_balloon_move,
    judge_device_gone,
    judge_hotplug,
    judge_kernel,
    judge_oom,
    judge_restart,
    judge_rss_under_balloon,
)
from harness.model import HintingSystem, MigrateType, Params
from harness.model.observe import observe
from harness.observe.procfs import HintingState, HintingZoneState, ZoneActivity


def state(*zones: tuple[str, int], device: bool = True) -> HintingState:
    """A state whose zones reported the given numbers of blocks (one cycle per 32)."""
    return HintingState(
        min_order=9, hwm=32, capacity=32, refcnt=0, device=device,
        zones=tuple(
            HintingZoneState(0, name, False, False,
                             ZoneActivity(1, 1, max(1, reported // 32), reported, reported))
            for name, reported in zones
        ),
        lists=(),
    )  # fmt: skip


def status(verdict, name: str) -> Status:
    return verdict.check(name).status


def test_device_gone_passes_when_hinting_stopped() -> None:
    verdict = judge_device_gone(
        state(("DMA32", 300), device=False), state(("DMA32", 300), device=False), 0, 32 * MiB
    )
    assert verdict.passed, verdict


def test_device_gone_fails_on_work_after_the_unplug() -> None:
    verdict = judge_device_gone(
        state(("DMA32", 300), device=False), state(("DMA32", 396), device=False), 0, 32 * MiB
    )
    assert status(verdict, "no_hinting_without_device") is Status.FAIL
    assert "+96 blocks reported" in verdict.check("no_hinting_without_device").detail


def test_device_gone_fails_on_a_device_left_behind_and_on_discards() -> None:
    verdict = judge_device_gone(state(("DMA32", 1)), state(("DMA32", 1)), 300 * MiB, 32 * MiB)
    assert status(verdict, "device_gone_in_debugfs") is Status.FAIL
    assert status(verdict, "no_discards_without_device") is Status.FAIL
    assert "300.0 MiB" in verdict.check("no_discards_without_device").detail


def test_balloon_move() -> None:
    assert judge_balloon_move(768, 768, -256 * 1024, -256).passed
    short = judge_balloon_move(768, 900, -124 * 1024, -256)
    assert status(short, "balloon_reaches_target") is Status.FAIL
    assert status(short, "memtotal_follows_balloon") is Status.FAIL


def test_hotplug_needs_the_new_zone_hinted() -> None:
    before = state(("DMA32", 244))
    covered = judge_hotplug(512 * 1024, 512, before, state(("DMA32", 244), ("Normal", 128)))
    assert covered.passed, covered
    uncovered = judge_hotplug(512 * 1024, 512, before, state(("DMA32", 244), ("Normal", 0)))
    assert status(uncovered, "hinting_covers_new_memory") is Status.FAIL
    assert "Normal" in uncovered.check("hinting_covers_new_memory").detail
    offline = judge_hotplug(0, 512, before, state(("DMA32", 244), ("Normal", 128)))
    assert status(offline, "hotplugged_memory_online") is Status.FAIL


def test_restart() -> None:
    before = state(("DMA32", 900))
    assert judge_restart(("a", "b"), before, state(("DMA32", 244))).passed
    same_boot = judge_restart(("a", "a"), before, state(("DMA32", 244)))
    assert status(same_boot, "guest_rebooted") is Status.FAIL
    stale = judge_restart(("a", "b"), before, state(("DMA32", 1144)))
    assert status(stale, "no_state_across_reset") is Status.FAIL
    no_device = judge_restart(("a", "b"), before, state(("DMA32", 0), device=False))
    assert status(no_device, "hinting_restarts") is Status.FAIL


def test_oom() -> None:
    assert judge_oom(-1, 1, []).passed
    assert status(judge_oom(0, 0, []), "oom_killer_acts") is Status.FAIL
    other = judge_oom(-1, 1, ["BUG Bad_page_state"])
    assert status(other, "no_splat_besides_oom") is Status.FAIL


def test_counts_are_judged_without_a_device() -> None:
    """After an unplug the series has no device: the flags and counts are still judged,
    the idle rule (nothing gets hinted without a device) and the parameters are not."""
    system = HintingSystem(Params(migratetypes=tuple(MigrateType)[:4]), 64 << 10)
    system.settle()
    obs = observe(system)
    assert obs.hinting is not None
    gone = replace(obs, hinting=replace(obs.hinting, device=False))
    assert status(judge_kernel(gone), "hinting_present") is Status.FAIL
    verdict = judge_kernel(gone, JudgeConfig(device_expected=False))
    names = {check.name for check in verdict.checks}
    assert verdict.passed, verdict
    assert {"hinted_tail_block", "zoneinfo_hinted_matches_debugfs", "free_counts_agree"} <= names
    assert "idle_trigger_rule" not in names and "parameters_match_spec" not in names


def test_rss_follows_balloon() -> None:
    assert judge_rss_under_balloon(600 * MiB, 512, 192).passed
    check = judge_rss_under_balloon(900 * MiB, 512, 192)
    assert check.status is Status.FAIL and "900.0 MiB" in check.detail
