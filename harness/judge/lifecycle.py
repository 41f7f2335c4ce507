"""Lifecycle events driven over QMP: balloon unplug, inflate/deflate, memory hotplug, reset,
OOM."""

from __future__ import annotations

from collections.abc import Sequence

from harness.core.units import MiB
from harness.judge.steps import zone_activity
from harness.judge.verdict import Check, Verdict
from harness.judge.verdict import mib as _mib
from harness.judge.verdict import result as _result
from harness.observe.procfs import (
    HintingState,
)


# -- lifecycle (QMP-driven events: unplug, balloon, hotplug, reset, OOM) --------------------
def judge_device_gone(
    unplugged: HintingState, later: HintingState, rss_fall_bytes: int, limit_bytes: int
) -> Verdict:
    """After the balloon is unplugged: the series has no device, does no more work although
    memory was freed, and the host discards nothing (there is nobody to tell it)."""
    no_device = [] if not later.device else ["debugfs still shows a device"]
    moved = [
        f"{zone.zone}: +{d.cycles} cycles, +{d.reported} blocks reported"
        for zone in later.zones
        if zone.activity is not None
        and (start := zone_activity(unplugged, zone.zone)) is not None
        and ((d := zone.activity.since(start)).cycles or d.reported)
    ]
    discards = (
        []
        if rss_fall_bytes <= limit_bytes
        else [f"QEMU RSS fell {_mib(rss_fall_bytes)} with no balloon (limit {_mib(limit_bytes)})"]
    )
    return Verdict(
        (
            _result("device_gone_in_debugfs", no_device, "device 0 after DEVICE_DELETED"),
            _result("no_hinting_without_device", moved, "no counter moved after the unplug"),
            _result(
                "no_discards_without_device",
                discards,
                f"RSS fell {_mib(max(rss_fall_bytes, 0))} after a release "
                f"(limit {_mib(limit_bytes)})",
            ),
        )
    )


def judge_balloon_move(
    target_mib: int, actual_mib: int, mem_total_change_kib: int, expected_change_mib: int
) -> Verdict:
    """The balloon reached the asked size, and the guest's MemTotal moved with it (the
    balloon takes its pages out of the managed count; a hinting revision must not confuse
    balloon pages with hinted ones)."""
    reached = [] if actual_mib == target_mib else [f"actual {actual_mib} MiB, asked {target_mib}"]
    expected_kib = expected_change_mib * 1024
    off = abs(mem_total_change_kib - expected_kib)
    followed = (
        []
        if off <= BALLOON_MEMTOTAL_SLACK_KIB
        else [f"MemTotal moved {mem_total_change_kib} KiB, the balloon {expected_kib} KiB"]
    )
    return Verdict(
        (
            _result("balloon_reaches_target", reached, f"query-balloon actual {actual_mib} MiB"),
            _result(
                "memtotal_follows_balloon",
                followed,
                f"MemTotal moved {mem_total_change_kib} KiB for {expected_change_mib} MiB",
            ),
        )
    )


def judge_rss_under_balloon(rss_bytes: int, target_mib: int, qemu_own_mib: int) -> Check:
    """With the balloon inflated the host backs at most the guest's remaining memory (the
    balloon's pages are discarded by QEMU) plus QEMU's own: the RSS follows the balloon."""
    limit = (target_mib + qemu_own_mib) * MiB
    problems = (
        []
        if rss_bytes <= limit
        else [
            f"QEMU RSS {_mib(rss_bytes)} > {_mib(limit)} with the guest ballooned to "
            f"{target_mib} MiB"
        ]
    )
    return _result("rss_follows_balloon", problems, f"RSS {_mib(rss_bytes)} <= {_mib(limit)}")


BALLOON_MEMTOTAL_SLACK_KIB = 1024  # the balloon works in 4 KiB pages; 1 MiB is plenty


def judge_hotplug(
    mem_total_change_kib: int,
    dimm_mib: int,
    before: HintingState | None,
    after: HintingState | None,
) -> Verdict:
    """A hot-added DIMM is online (MemTotal grew by its size) and hinting covers it: a
    zone that was empty at boot (or the one it joined) ran cycles that hinted blocks."""
    grown = (
        []
        if mem_total_change_kib == dimm_mib * 1024
        else [f"MemTotal grew {mem_total_change_kib} KiB for a {dimm_mib} MiB DIMM"]
    )
    online = _result("hotplugged_memory_online", grown, f"MemTotal +{mem_total_change_kib} KiB")
    if before is None or after is None:  # stock reporting: no hinting state to cover it
        return Verdict((online,))
    old_zones = {z.zone for z in before.zones}
    covered, problems = [], []
    for zone in after.zones:
        if zone.activity is None:
            continue
        start = zone_activity(before, zone.zone)
        d = zone.activity.since(start) if start is not None else zone.activity
        if d.reported:
            covered.append(f"{zone.zone}{'' if zone.zone in old_zones else ' (new)'} +{d.reported}")
    new_zones = [z.zone for z in after.zones if z.zone not in old_zones]
    if not covered:
        problems.append("no zone reported a block after the DIMM came online")
    for zone in new_zones:
        if not any(c.startswith(zone) for c in covered):
            problems.append(f"zone {zone} (the DIMM's) never hinted")
    return Verdict(
        (online, _result("hinting_covers_new_memory", problems, "reported: " + ", ".join(covered)))
    )


def judge_restart(
    boot_ids: tuple[str, str], before: HintingState | None, after: HintingState | None
) -> Verdict:
    """After system_reset the guest is a new boot, hinting has a device again and its
    counters started from zero (no state survived the reset)."""
    rebooted = [] if boot_ids[0] != boot_ids[1] else [f"boot_id still {boot_ids[0]}"]
    if before is None or after is None:  # stock: no hinting state to restart
        return Verdict((_result("guest_rebooted", rebooted, "a new boot_id"),))
    device = [] if after.device else ["no hinting device after the reset"]
    stale = []
    for zone in after.zones:
        start = zone_activity(before, zone.zone)
        # A reset boots a new kernel: its counters cannot exceed the old ones' total
        # unless they survived it.
        if (
            zone.activity is not None
            and start is not None
            and zone.activity.reported > start.reported > 0
        ):
            stale.append(
                f"{zone.zone}: {zone.activity.reported} blocks reported since the reset, "
                f"{start.reported} before it"
            )
    return Verdict(
        (
            _result("guest_rebooted", rebooted, "a new boot_id"),
            _result("hinting_restarts", device, "the series has its device again"),
            _result("no_state_across_reset", stale, "counters restarted"),
        )
    )


def judge_oom(exit_status: int, oom_reports: int, other_problems: Sequence[str]) -> Verdict:
    """A workload asking for more than the guest has is killed by the OOM killer (and
    nothing else goes wrong: no other splat, the guest answers)."""
    acted = (
        []
        if exit_status != 0 and oom_reports
        else [f"workload exit {exit_status}, {oom_reports} OOM kill reports in dmesg"]
    )
    return Verdict(
        (
            _result("oom_killer_acts", acted, f"exit {exit_status}, {oom_reports} OOM report(s)"),
            _result("no_splat_besides_oom", list(other_problems), "kernel log clean otherwise"),
        )
    )
