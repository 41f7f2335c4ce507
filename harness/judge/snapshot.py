"""Snapshot consistency: what any one reading of the guest must show (counts against flags,
the tail block, the parameters the revision declares, the idle rule).

Rules and their reasons are in docs/MODEL.md; the idle rule is `harness.model.idle`."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

from harness.build.spec import V2_SPEC, HintingSpec
from harness.core.units import MiB
from harness.judge.verdict import Check, Status, Verdict
from harness.judge.verdict import result as _result
from harness.model.idle import idle_unhinted_bound
from harness.observe.procfs import (
    GuestObservations,
    HintingListState,
    HintingState,
)

ZoneKey = tuple[int, str]  # (node, zone)


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
