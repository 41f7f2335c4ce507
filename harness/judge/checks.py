"""Verdict on what a kernel with the v2 hinting series shows, against the model's rules.

Input: `GuestObservations` (zoneinfo, buddyinfo, pagetypeinfo, the series' debugfs dump)
and, optionally, the QEMU RSS series. Output: a `Verdict`, a list of named checks, each
with the numbers it compared. Rules and their reasons are in docs/MODEL.md; the idle rule
is `harness.model.idle`.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from enum import Enum
from typing import Protocol

from harness.build.spec import V2_SPEC, HintingSpec
from harness.core.errors import HarnessError
from harness.core.units import PAGE_SIZE, MiB
from harness.model.counts import CountPrediction, OrderCounts
from harness.model.idle import idle_unhinted_bound
from harness.observe.dmesg import zero_filled_code
from harness.observe.procfs import (
    ACTIVITY_FIELDS,
    GuestObservations,
    HintingListState,
    HintingState,
    ZoneActivity,
)

ZoneKey = tuple[int, str]  # (node, zone)


class Status(Enum):
    PASS = "PASS"
    FAIL = "FAIL"
    NOT_APPLICABLE = "N/A"


@dataclass(frozen=True)
class Check:
    name: str
    status: Status
    detail: str

    @property
    def passed(self) -> bool:
        return self.status is not Status.FAIL

    def __str__(self) -> str:
        return f"[{self.status.value}] {self.name}: {self.detail}"


@dataclass(frozen=True)
class Verdict:
    checks: tuple[Check, ...]

    @property
    def passed(self) -> bool:
        return all(check.passed for check in self.checks)

    @property
    def failures(self) -> tuple[Check, ...]:
        return tuple(check for check in self.checks if not check.passed)

    def check(self, name: str) -> Check:
        for check in self.checks:
            if check.name == name:
                return check
        raise KeyError(f"no check named {name!r}; have {[c.name for c in self.checks]}")

    def __add__(self, other: Verdict) -> Verdict:
        return Verdict(self.checks + other.checks)

    def __str__(self) -> str:
        head = "PASS" if self.passed else f"FAIL ({len(self.failures)} of {len(self.checks)})"
        return "\n".join([f"verdict: {head}", *(f"  {check}" for check in self.checks)])


@dataclass(frozen=True)
class JudgeConfig:
    """Tolerances. The defaults suit a quiescent guest: files are read one after another,
    so counts that a running allocator changes in between may differ by `*_tolerance`."""

    require_idle: bool = False  # every zone must show requested=0 active=0
    device_expected: bool = True  # False: judge the counts of a series whose device is gone
    free_tolerance: int = 0  # |debugfs free - pagetypeinfo free| per list, per order
    hinted_tolerance: int = 0  # |zoneinfo hinted_order_o - sum of debugfs hinted|
    rss_abs_tolerance: int = 32 * MiB
    rss_rel_tolerance: float = 0.10  # QEMU's own balloon test allows 10%


class ReleaseFigures(Protocol):
    """What harness.drive.workloads.ReleaseMeasurement carries (duck-typed: no import cycle)."""

    baseline_rss: int
    peak_rss: int
    final_rss: int


@dataclass(frozen=True)
class RssEvidence:
    """QEMU process RSS in bytes: before the load, its maximum, and at the end."""

    baseline: int
    peak: int
    final: int

    @classmethod
    def from_samples(cls, samples: Sequence[tuple[float, int]]) -> RssEvidence:
        """(time, rss_bytes) samples: first is the baseline, max the peak, last the end."""
        if not samples:
            raise HarnessError("no RSS samples to judge", "sample the QEMU RSS during the run")
        values = [rss for _, rss in sorted(samples)]
        return cls(baseline=values[0], peak=max(values), final=values[-1])

    @classmethod
    def from_measurement(cls, measurement: ReleaseFigures) -> RssEvidence:
        return cls(measurement.baseline_rss, measurement.peak_rss, measurement.final_rss)


# -- entry points --------------------------------------------------------------------------
def judge(
    obs: GuestObservations,
    rss: RssEvidence | Sequence[tuple[float, int]] | None = None,
    *,
    hinted_before_bytes: int = 0,
    config: JudgeConfig | None = None,
    spec: HintingSpec = V2_SPEC,
) -> Verdict:
    """Kernel-side consistency plus, when RSS is given, the host-side release check."""
    config = config or JudgeConfig()
    verdict = judge_kernel(obs, config, spec)
    if rss is not None:
        evidence = rss if isinstance(rss, RssEvidence) else RssEvidence.from_samples(rss)
        verdict += Verdict((judge_rss(hinted_bytes(obs), evidence, hinted_before_bytes, config),))
    return verdict


def judge_kernel(
    obs: GuestObservations, config: JudgeConfig | None = None, spec: HintingSpec = V2_SPEC
) -> Verdict:
    """Checks that need no host data; valid on any snapshot, busy or idle.

    `spec` is what the revision declares (its params.toml): the kernel must report it,
    and the idle rule is computed from it, not from what the kernel says it uses.
    """
    config = config or JudgeConfig()
    state = obs.hinting
    if obs.hinting_parse_error is not None:
        return Verdict((Check("debugfs_parses", Status.FAIL, obs.hinting_parse_error),))
    if state is None or (not state.device and config.device_expected):
        why = "no debugfs page_hinting/state" if state is None else "device 0"
        return Verdict((Check("hinting_present", Status.FAIL, f"{why}: nothing to judge"),))
    present = f"{len(state.lists)} lists, refcnt {state.refcnt}, device {int(state.device)}"
    checks = [Check("hinting_present", Status.PASS, present)]
    if state.device:
        checks += [_check_min_order(obs, state), _check_parameters(state, spec)]
    # The flags and counts must agree with or without a device (after an unplug the
    # hinted pages stay on the free lists, still marked).
    checks += [
        _check_lists_hinted_le_free(state),
        _check_isolated_lists_unhinted(state),
        _check_tail_block(state),
        _check_zoneinfo_matches_debugfs(obs, state, config),
        _check_hinted_le_free_per_order(obs, state, config),
        _check_free_counts_agree(obs, state, config),
    ]
    if state.device:  # without one, nothing is requested and nothing gets hinted
        checks += [_check_refcnt(state), _check_idle_rule(obs, state, config, spec)]
    return Verdict(tuple(checks))


def judge_rss(
    hinted_after_bytes: int,
    rss: RssEvidence,
    hinted_before_bytes: int = 0,
    config: JudgeConfig | None = None,
) -> Check:
    """The RSS drop from the peak must cover the newly hinted bytes, minus a tolerance.

    Newly hinted = hinted now - `hinted_before_bytes`, the hinted bytes just before the
    release, while the load holds its memory (read them at the peak:
    `measure_release(..., at_peak=...)`). Measuring before the *load* instead is
    wrong: the load allocates hinted pages and the release hints them again, so the count
    before and after can be equal while hundreds of MiB went through the host. Pages
    hinted since the peak were resident at the peak; only what the load made resident
    can leave, so the expectation is capped by peak - baseline. Tolerance: max(abs,
    rel * expected).
    """
    config = config or JudgeConfig()
    newly_hinted = max(0, hinted_after_bytes - hinted_before_bytes)
    expected = min(newly_hinted, max(0, rss.peak - rss.baseline))
    tolerance = max(config.rss_abs_tolerance, round(config.rss_rel_tolerance * expected))
    drop = rss.peak - rss.final
    status = Status.PASS if drop >= expected - tolerance else Status.FAIL
    detail = (
        f"RSS drop {_mib(drop)} (peak {_mib(rss.peak)} -> final {_mib(rss.final)}, "
        f"baseline {_mib(rss.baseline)}); expected >= {_mib(expected)} - {_mib(tolerance)} "
        f"(hinted since the peak {_mib(newly_hinted)}, growth {_mib(rss.peak - rss.baseline)})"
    )
    return Check("rss_drop_covers_hinted", status, detail)


def hinted_bytes(obs: GuestObservations) -> int:
    """Bytes the zoneinfo hinted_order_<o> counts stand for, all zones."""
    return sum(
        count * (PAGE_SIZE << order)
        for zone in obs.zoneinfo
        for order, count in zone.hinted.items()
    )


# -- individual checks ---------------------------------------------------------------------
def _result(name: str, problems: list[str], ok_detail: str) -> Check:
    if problems:
        shown = "; ".join(problems[:12])
        more = f" (+{len(problems) - 12} more)" if len(problems) > 12 else ""
        return Check(name, Status.FAIL, shown + more)
    return Check(name, Status.PASS, ok_detail)


def _where(entry: HintingListState) -> str:
    return f"node {entry.node} {entry.zone} order {entry.order} {entry.migratetype}"


def _check_min_order(obs: GuestObservations, state: HintingState) -> Check:
    block_order = obs.pagetypeinfo.pageblock_order
    problems = []
    if state.min_order != block_order:
        problems.append(f"min_order {state.min_order} != pageblock_order {block_order}")
    detail = f"min_order {state.min_order}, hwm {state.hwm}, capacity {state.capacity}"
    return _result("min_order_is_pageblock_order", problems, detail)


def _check_parameters(state: HintingState, spec: HintingSpec) -> Check:
    """The kernel's min order, HWM and capacity are the ones the revision declares."""
    reported = {"min_order": state.min_order, "hwm": state.hwm, "capacity": state.capacity}
    problems = [
        f"{name} {value} != declared {getattr(spec, name)}"
        for name, value in reported.items()
        if value != getattr(spec, name)
    ]
    detail = ", ".join(f"{name} {value}" for name, value in reported.items()) + " as declared"
    return _result("parameters_match_spec", problems, detail)


def _check_lists_hinted_le_free(state: HintingState) -> Check:
    problems = [
        f"{_where(e)}: hinted {e.hinted} > free {e.free}" for e in state.lists if e.hinted > e.free
    ]
    return _result("hinted_le_free_per_list", problems, f"{len(state.lists)} lists")


def _check_isolated_lists_unhinted(state: HintingState) -> Check:
    """A block on a MIGRATE_ISOLATE list is about to be taken (memory offline,
    alloc_contig_range()): it must not be hinted. A hinted page is PageOffline() through
    the PageHinted() alias, and __offline_isolated_pages() BUGs on it."""
    isolated = [e for e in state.lists if e.migratetype == "Isolate"]
    problems = [f"{_where(e)}: {e.hinted} of {e.free} hinted" for e in isolated if e.hinted]
    blocks = sum(e.free for e in isolated)
    return _result("isolated_blocks_unhinted", problems, f"{blocks} blocks on isolated lists")


def _check_tail_block(state: HintingState) -> Check:
    """Hinted entries are one block at the tail: first_hinted == free - hinted."""
    problems = []
    for e in state.lists:
        if e.hinted == 0:
            if e.first_hinted != -1:
                problems.append(f"{_where(e)}: hinted 0 but first_hinted {e.first_hinted}")
        elif not e.contiguous_tail or e.first_hinted != e.free - e.hinted:
            problems.append(
                f"{_where(e)}: {e.hinted} hinted of {e.free}, first at {e.first_hinted} "
                f"(tail block would start at {e.free - e.hinted}), "
                f"contiguous_tail {int(e.contiguous_tail)}"
            )
    blocks = sum(1 for e in state.lists if e.hinted)
    return _result("hinted_tail_block", problems, f"{blocks} lists hold a hinted tail block")


def _debugfs_sums(state: HintingState) -> dict[ZoneKey, dict[int, tuple[int, int]]]:
    """(node, zone) -> order -> (free, hinted) summed over migratetypes."""
    sums: dict[ZoneKey, dict[int, tuple[int, int]]] = defaultdict(dict)
    for e in state.lists:
        free, hinted = sums[(e.node, e.zone)].get(e.order, (0, 0))
        sums[(e.node, e.zone)][e.order] = (free + e.free, hinted + e.hinted)
    return sums


def _busy_zones(state: HintingState) -> set[ZoneKey]:
    """Zones whose worker may move pages between two file reads: compared only in-dump."""
    return {(z.node, z.zone) for z in state.zones if z.requested or z.active}


def _skipped(busy: set[ZoneKey]) -> str:
    return f"; busy zones not cross-checked: {sorted(busy)}" if busy else ""


def _check_zoneinfo_matches_debugfs(
    obs: GuestObservations, state: HintingState, config: JudgeConfig
) -> Check:
    """zoneinfo hinted_order_<o> (zone->hinted_pages) == PageHinted entries in the dump."""
    sums = _debugfs_sums(state)
    busy = _busy_zones(state)
    problems = []
    compared = 0
    for zone in obs.zoneinfo:
        key = (zone.node, zone.zone)
        if key in busy:
            continue
        dumped = sums.get(key, {})
        for order in sorted(set(dumped) | set(zone.hinted)):
            compared += 1
            dbg_hinted = dumped.get(order, (0, 0))[1]
            if order not in zone.hinted:
                problems.append(f"node {zone.node} {zone.zone}: no hinted_order_{order} line")
            elif abs(zone.hinted[order] - dbg_hinted) > config.hinted_tolerance:
                problems.append(
                    f"node {zone.node} {zone.zone} order {order}: zoneinfo hinted "
                    f"{zone.hinted[order]} != debugfs sum {dbg_hinted} "
                    f"(tolerance {config.hinted_tolerance})"
                )
    detail = f"{compared} (zone, order) pairs{_skipped(busy)}"
    return _result("zoneinfo_hinted_matches_debugfs", problems, detail)


def _check_hinted_le_free_per_order(
    obs: GuestObservations, state: HintingState, config: JudgeConfig
) -> Check:
    busy = _busy_zones(state)
    problems = []
    for zone in obs.zoneinfo:
        if (zone.node, zone.zone) in busy:
            continue
        # buddyinfo leaves out unpopulated zones: nothing free there
        free = obs.buddyinfo.free.get((zone.node, zone.zone), ())
        for order, hinted in sorted(zone.hinted.items()):
            nr_free = free[order] if order < len(free) else 0
            if hinted > nr_free + config.free_tolerance:
                problems.append(
                    f"node {zone.node} {zone.zone} order {order}: hinted {hinted} > free "
                    f"{nr_free} (buddyinfo, tolerance {config.free_tolerance})"
                )
    detail = f"zoneinfo hinted vs buddyinfo free{_skipped(busy)}"
    return _result("hinted_le_free_per_order", problems, detail)


def _check_free_counts_agree(
    obs: GuestObservations, state: HintingState, config: JudgeConfig
) -> Check:
    busy = _busy_zones(state)
    problems = []
    for e in state.lists:
        if (e.node, e.zone) in busy:
            continue
        counts = obs.pagetypeinfo.free.get((e.node, e.zone, e.migratetype))
        if counts is None:
            problems.append(f"{_where(e)}: migratetype not in pagetypeinfo")
            continue
        ptype_free = counts[e.order] if e.order < len(counts) else 0
        if abs(ptype_free - e.free) > config.free_tolerance:
            problems.append(
                f"{_where(e)}: debugfs free {e.free} != pagetypeinfo {ptype_free} "
                f"(tolerance {config.free_tolerance})"
            )
    return _result("free_counts_agree", problems, f"{len(state.lists)} lists{_skipped(busy)}")


def _check_refcnt(state: HintingState) -> Check:
    """refcnt counts requesting zones; with every zone idle it must be 0."""
    requesting = sum(zone.requested for zone in state.zones)
    all_idle = not any(zone.requested or zone.active for zone in state.zones)
    detail = f"refcnt {state.refcnt}, {requesting} zones requested"
    if all_idle and state.refcnt != 0:
        return Check("refcnt_idle", Status.FAIL, detail + ": every zone idle, refcnt must be 0")
    return Check("refcnt_idle", Status.PASS, detail)


def _check_idle_rule(
    obs: GuestObservations, state: HintingState, config: JudgeConfig, spec: HintingSpec
) -> Check:
    sums = _debugfs_sums(state)
    problems: list[str] = []
    judged: list[str] = []
    for zone_state in state.zones:
        key = (zone_state.node, zone_state.zone)
        name = f"node {key[0]} {key[1]}"
        if zone_state.requested or zone_state.active:
            if config.require_idle:
                problems.append(
                    f"{name} not idle (requested {int(zone_state.requested)}, "
                    f"active {int(zone_state.active)})"
                )
            continue
        bounds = _idle_bounds(key, sums.get(key, {}), state, spec, _top_order(obs, key))
        for order, (unhinted, free, bound) in sorted(bounds.items()):
            if unhinted > bound:
                problems.append(
                    f"{name} order {order}: {unhinted} unhinted ({free} free, "
                    f"{free - unhinted} hinted) while idle > bound {bound}: a trigger was missed"
                )
        figures = ", ".join(f"U[{o}] {u} <= {b}" for o, (u, _, b) in sorted(bounds.items()))
        judged.append(f"{name}: {figures}")
    if problems:
        return Check("idle_trigger_rule", Status.FAIL, "; ".join(problems))
    if not judged:
        return Check("idle_trigger_rule", Status.NOT_APPLICABLE, "no zone idle")
    return Check("idle_trigger_rule", Status.PASS, "; ".join(judged))


def _top_order(obs: GuestObservations, key: ZoneKey) -> int | None:
    free = obs.buddyinfo.free.get(key)
    return len(free) - 1 if free else None


def _idle_bounds(
    key: ZoneKey,
    per_order: dict[int, tuple[int, int]],
    state: HintingState,
    spec: HintingSpec,
    top_order: int | None,
) -> dict[int, tuple[int, int, int]]:
    """order -> (U = free - hinted, free, bound of harness.model.idle) for hinting orders,
    with the declared parameters."""
    top = top_order if top_order is not None else max(per_order, default=spec.min_order)
    n_mt = len({e.migratetype for e in state.lists if (e.node, e.zone) == key})
    bounds = {}
    for order, (free, hinted) in per_order.items():
        bound = idle_unhinted_bound(
            order,
            min_order=spec.min_order,
            top_order=top,
            hwm=spec.hwm,
            capacity=spec.capacity,
            n_migratetypes=n_mt,
        )
        if bound is not None:
            bounds[order] = (free - hinted, free, bound)
    return bounds


def _mib(value: int) -> str:
    return f"{value / MiB:.1f} MiB"


# -- scripted steps: predictions, work, accounting, integrity ---------------------------------
def zone_counts(obs: GuestObservations, zone: str, orders: range) -> dict[int, OrderCounts]:
    """Per hinting order of one zone: free blocks (buddyinfo) and hinted (zoneinfo)."""
    free = next((f for (_, z), f in obs.buddyinfo.free.items() if z == zone), ())
    info = next((z for z in obs.zoneinfo if z.zone == zone), None)
    hinted = info.hinted if info is not None else {}
    return {o: OrderCounts(free[o] if o < len(free) else 0, hinted.get(o, 0)) for o in orders}


def zone_activity(state: HintingState | None, zone: str) -> ZoneActivity | None:
    if state is None:
        return None
    return next((z.activity for z in state.zones if z.zone == zone), None)


def judge_prediction(
    step: str,
    prediction: CountPrediction,
    before: GuestObservations,
    after: GuestObservations,
    zone: str,
    spec: HintingSpec,
) -> Verdict:
    """One scripted step between two idle points against the count model, exactly.

    Counts: free and hinted per hinting order of `zone`. Work: the step requested hinting
    once or not at all, ran one cycle for it, handed the host exactly the blocks that
    were unhinted, in ceil(reported / capacity) batches, and got every one back hinted.
    """
    observed = zone_counts(after, zone, range(spec.min_order, max(prediction.counts) + 1))
    problems = []
    for order, want in sorted(prediction.counts.items()):
        got = observed[order]
        if (got.free, got.hinted) != (want.free, want.hinted):
            problems.append(
                f"{zone} order {order}: free {got.free} hinted {got.hinted} (unhinted "
                f"{got.unhinted}), model {want.free} / {want.hinted} (unhinted {want.unhinted})"
            )
    trigger = "requests hinting" if prediction.requested else "stays below the trigger"
    detail = f"the step {trigger}; " + "; ".join(
        f"order {o} {c.free}/{c.hinted}" for o, c in sorted(prediction.counts.items())
    )
    checks = [_result(f"counts_match_model[{step}]", problems, detail)]
    start, end = zone_activity(before.hinting, zone), zone_activity(after.hinting, zone)
    if start is None or end is None:
        checks.append(Check(f"work_matches_model[{step}]", Status.NOT_APPLICABLE, "no counters"))
        return Verdict(tuple(checks))
    done = end.since(start)
    want_requests = int(prediction.requested)
    want_batches = -(-prediction.reported // spec.capacity)
    expected = {
        "requests": want_requests,
        "cycles": want_requests,
        "batches": want_batches,
        "reported": prediction.reported,
        "hinted": prediction.reported,
    }
    problems = [
        f"{field} {getattr(done, field)} != model {want}"
        for field, want in expected.items()
        if getattr(done, field) != want
    ]
    detail = ", ".join(f"{field} {want}" for field, want in expected.items())
    checks.append(_result(f"work_matches_model[{step}]", problems, detail))
    return Verdict(tuple(checks))


def judge_work(before: HintingState, after: HintingState, spec: HintingSpec) -> Verdict:
    """Bounds on the work done between two snapshots, for workloads the model does not
    script: per zone, batches are full but for one per cycle, nothing comes back hinted
    that was not reported, and every request but the first needed HWM new blocks."""
    problems: list[str] = []
    shown: list[str] = []
    for zone in after.zones:
        start, end = zone_activity(before, zone.zone), zone.activity
        if start is None or end is None:
            continue
        d = end.since(start)
        shown.append(
            f"{zone.zone}: {d.requests} requests, {d.cycles} cycles, {d.batches} batches, "
            f"{d.reported} reported, {d.hinted} hinted"
        )
        if d.reported < spec.capacity * (d.batches - d.cycles):
            problems.append(
                f"{zone.zone}: {d.batches} batches in {d.cycles} cycles carried {d.reported} "
                f"blocks; full batches of {spec.capacity} need >= "
                f"{spec.capacity * (d.batches - d.cycles)}"
            )
        if d.reported > spec.capacity * d.batches or d.hinted > d.reported:
            problems.append(
                f"{zone.zone}: reported {d.reported}, hinted {d.hinted} in {d.batches} "
                f"batches of at most {spec.capacity}"
            )
        if d.requests > 1 + d.reported // spec.hwm:
            problems.append(
                f"{zone.zone}: {d.requests} requests for {d.reported} reported blocks; each "
                f"request after the first needs {spec.hwm} new unhinted blocks (HWM): at most "
                f"{1 + d.reported // spec.hwm}"
            )
        if d.cycles > d.requests + 1:
            problems.append(f"{zone.zone}: {d.cycles} cycles for {d.requests} requests")
    if not shown:
        return Verdict((Check("work_within_model", Status.NOT_APPLICABLE, "no counters"),))
    return Verdict((_result("work_within_model", problems, "; ".join(shown)),))


def judge_quiet(before: HintingState, after: HintingState, seconds: float) -> Check:
    """An idle guest does no hinting work: no counter moves over an idle window."""
    moved = []
    for zone in after.zones:
        start, end = zone_activity(before, zone.zone), zone.activity
        if start is None or end is None:
            continue
        d = end.since(start)
        if any(getattr(d, f) for f in ACTIVITY_FIELDS):
            moved.append(
                f"{zone.zone}: +{d.requests} requests, +{d.cycles} cycles, "
                f"+{d.batches} batches, +{d.reported} reported"
            )
        if zone.requested or zone.active:
            moved.append(
                f"{zone.zone}: requested {int(zone.requested)} active {int(zone.active)} at the end"
            )
    detail = f"no hinting work in {seconds:.1f} s of idle"
    return _result("no_work_while_idle", moved, detail)


@dataclass(frozen=True)
class FreeMemory:
    """Free memory at one idle point, in KiB."""

    mem_free: int  # /proc/meminfo MemFree
    nr_free_pages: int  # sum of zoneinfo nr_free_pages, in KiB
    high_order: int  # buddyinfo blocks of order >= min order, in KiB

    @classmethod
    def of(cls, obs: GuestObservations, min_order: int) -> FreeMemory:
        nr_free = sum(z.stats.get("nr_free_pages", 0) for z in obs.zoneinfo)
        high = sum(
            count << order
            for free in obs.buddyinfo.free.values()
            for order, count in enumerate(free)
            if order >= min_order
        )
        page_kib = PAGE_SIZE // 1024
        return cls(obs.meminfo["MemFree"], nr_free * page_kib, high * page_kib)


def judge_accounting(
    baseline: FreeMemory,
    cycles: Sequence[FreeMemory],
    tolerance_kib: int,
    high_order_tolerance_kib: int,
) -> Check:
    """After each workload cycle, once idle, free memory is back at its level before.

    Blocks of the hinting orders get a looser tolerance: the workload's own allocations
    split a few of them (fragmentation), which is not a loss."""
    tolerances = {
        "mem_free": tolerance_kib,
        "nr_free_pages": tolerance_kib,
        "high_order": high_order_tolerance_kib,
    }
    problems = []
    for index, now in enumerate(cycles, start=1):
        for field, tolerance in tolerances.items():
            lost = getattr(baseline, field) - getattr(now, field)
            if lost > tolerance:
                problems.append(
                    f"after cycle {index}: {field} {getattr(now, field)} KiB is "
                    f"{lost} KiB below its level before ({getattr(baseline, field)} KiB)"
                )
    drift = [baseline.mem_free - c.mem_free for c in cycles]
    detail = f"MemFree change per cycle {[-d for d in drift]} KiB, tolerance {tolerance_kib} KiB"
    return _result("free_memory_returns", problems, detail)


def judge_integrity(pattern_output: str, checksums: Sequence[tuple[str, str]]) -> Check:
    """The pattern workload saw every word it wrote; tmpfs files kept their checksums."""
    problems = [line for line in pattern_output.splitlines() if line.startswith("MISMATCH")]
    if not problems and "done " not in pattern_output:
        problems.append(f"pattern did not finish: {pattern_output.strip()[-300:]!r}")
    for label, (before, after) in enumerate(checksums):
        if before != after:
            problems.append(f"tmpfs file {label}: sha256 {before[:16]}... became {after[:16]}...")
    done = next((ln for ln in pattern_output.splitlines() if ln.startswith("done ")), "")
    return _result("memory_kept_its_contents", problems, f"{done}; {len(checksums)} files")


def judge_kernel_text(console_text: str, control_booted: bool | None = None) -> Check:
    """The guest never ran kernel code that reads as zeros.

    An oops with all-zero instruction bytes at RIP means a page of the kernel's own memory
    came back zero-filled. The crash is in no function of the series, so it is attributed
    to hinting only by a control: `control_booted` says whether the same kernel booted
    with the balloon's free-page-reporting off (None: no control was run). If it did, the
    zeroed memory is what hinting handed to the host while in use: the integrity check for
    the kernel's own memory, as memory_kept_its_contents is for a process's.
    """
    zeros = zero_filled_code(console_text)
    if not zeros:
        return Check("kernel_text_intact", Status.PASS, "no oops on zero-filled kernel code")
    first = zeros[0]
    seen = (
        f"the guest ran kernel code that reads as zeros at {first.rip} (console line "
        f"{first.line}, {len(zeros)} such oops)"
    )
    if control_booted is False:
        return Check(
            "kernel_text_intact",
            Status.NOT_APPLICABLE,
            f"{seen}, but the same kernel also failed to boot with free-page-reporting off: "
            "not attributable to hinting",
        )
    control = (
        " and booted cleanly with the balloon's free-page-reporting off (control boot)"
        if control_booted
        else " (no control boot)"
    )
    return Check(
        "kernel_text_intact",
        Status.FAIL,
        f"{seen}{control}: kernel memory came back from the host zero-filled, i.e. pages "
        "were handed to the host while in use",
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
    mem_total_change_kib: int, dimm_mib: int, before: HintingState, after: HintingState
) -> Verdict:
    """A hot-added DIMM is online (MemTotal grew by its size) and hinting covers it: a
    zone that was empty at boot (or the one it joined) ran cycles that hinted blocks."""
    grown = (
        []
        if mem_total_change_kib == dimm_mib * 1024
        else [f"MemTotal grew {mem_total_change_kib} KiB for a {dimm_mib} MiB DIMM"]
    )
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
        (
            _result("hotplugged_memory_online", grown, f"MemTotal +{mem_total_change_kib} KiB"),
            _result("hinting_covers_new_memory", problems, "reported: " + ", ".join(covered)),
        )
    )


def judge_restart(boot_ids: tuple[str, str], before: HintingState, after: HintingState) -> Verdict:
    """After system_reset the guest is a new boot, hinting has a device again and its
    counters started from zero (no state survived the reset)."""
    rebooted = [] if boot_ids[0] != boot_ids[1] else [f"boot_id still {boot_ids[0]}"]
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
    assert after.hinting is not None
    total = (
        []
        if total_after_kib == total_before_kib
        else [f"MemTotal {total_after_kib} KiB, {total_before_kib} KiB before the DIMM"]
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
