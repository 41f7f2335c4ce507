"""The model's invariants, checked after every step by the tests.

Each check returns human-readable violations; `check_invariants` raises them all at once.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from harness.model.errors import ModelInvariantError

if TYPE_CHECKING:
    from harness.model.system import HintingSystem


def check_invariants(system: HintingSystem, *, tail_block: bool | None = None) -> None:
    """Raise ModelInvariantError listing every violated invariant.

    `tail_block` (default: the parameters guarantee it) includes "hinted pages are one
    block at the tail of each list" among the checks.
    """
    problems = violations(system, tail_block=tail_block)
    if problems:
        raise ModelInvariantError(
            "model invariants violated:\n  " + "\n  ".join(problems),
            "shrink the failing example and compare the step with the seed patch",
        )


def violations(system: HintingSystem, *, tail_block: bool | None = None) -> list[str]:
    if tail_block is None:
        tail_block = not system.params.tail_placement_possible
    problems = (
        _lists_consistent(system)
        + _pages_conserved(system)
        + _counts_equal_flags(system)
        + _boundaries(system)
        + _flags_and_worker(system)
        + _hinted_were_discarded(system)
    )
    if tail_block:
        problems += _hinted_tail_block(system)
    return problems


def _lists_consistent(system: HintingSystem) -> list[str]:
    """No page on two lists, none lost: lists, blocks and nr_free agree."""
    zone = system.zone
    problems: list[str] = []
    seen: set[int] = set()
    for order, per_mt in enumerate(zone.free_lists):
        on_order = 0
        for mt, free_list in per_mt.items():
            for node in free_list:
                block = zone.blocks.get(node.pfn)  # type: ignore[arg-type]
                if block is None or block.node is not node:
                    problems.append(f"pfn {node.pfn} on list ({order},{mt.name}) not a block")
                elif (block.order, block.mt) != (order, mt):
                    problems.append(f"pfn {node.pfn} on ({order},{mt.name}) says {block}")
                if node.pfn in seen:
                    problems.append(f"pfn {node.pfn} on two lists")
                seen.add(node.pfn)  # type: ignore[arg-type]
                on_order += 1
        if on_order != zone.nr_free[order]:
            problems.append(f"order {order}: nr_free {zone.nr_free[order]} != {on_order} listed")
    missing = set(zone.blocks) - seen
    if missing:
        problems.append(f"free blocks on no list: {sorted(missing)[:8]}")
    return problems


def _pages_conserved(system: HintingSystem) -> list[str]:
    """Free, allocated and in-flight blocks tile the zone exactly once."""
    zone = system.zone
    owners = bytearray(zone.nr_pages)
    problems: list[str] = []
    extents = [(b.pfn, b.order) for b in zone.blocks.values()]
    extents += list(zone.allocated.items()) + list(zone.isolated.items())
    for pfn, order in extents:
        if pfn % (1 << order):
            problems.append(f"pfn {pfn} not aligned to order {order}")
        for frame in range(pfn, pfn + (1 << order)):
            owners[frame] += 1
    lost = owners.count(0)
    doubled = zone.nr_pages - lost - owners.count(1)
    if lost or doubled:
        problems.append(f"pages conserved: {lost} lost, {doubled} owned twice")
    return problems


def _counts_equal_flags(system: HintingSystem) -> list[str]:
    """zone->hinted_pages[o] == number of PageHinted blocks of order o; hinted <= free."""
    params, zone = system.params, system.zone
    flagged = [0] * params.max_order
    for block in zone.blocks.values():
        if block.hinted:
            flagged[block.order] += 1
    problems = []
    for order in range(params.max_order):
        count = system.hinting.hinted(order)
        if order < params.min_order and flagged[order]:
            problems.append(f"order {order} below min order has {flagged[order]} hinted")
        if count != flagged[order]:
            problems.append(f"order {order}: hinted_pages {count} != {flagged[order]} flags")
        if count > zone.nr_free[order]:
            problems.append(f"order {order}: hinted {count} > free {zone.nr_free[order]}")
    return problems


def _hinted_tail_block(system: HintingSystem) -> list[str]:
    return [
        f"({entry.order},{entry.mt.name}): hinted {entry.hinted} of {entry.free} not a tail "
        f"block (first hinted at {entry.first_hinted})"
        for entry in system.snapshot().lists
        if not entry.contiguous_tail
    ]


def _boundaries(system: HintingSystem) -> list[str]:
    """The boundary is used only while ACTIVE; then it is on its list and only hinted
    pages lie between it and the tail."""
    params, zone, hinting = system.params, system.zone, system.hinting
    problems = []
    for order in params.hinting_orders:
        for mt in params.migratetypes:
            free_list = zone.free_lists[order][mt]
            tail = hinting.unhinted_tail(zone, order, mt)
            if not hinting.active:
                if tail is not free_list.head:
                    problems.append(f"({order},{mt.name}): boundary in use while not ACTIVE")
                continue
            if not free_list.contains(tail):
                problems.append(f"({order},{mt.name}): boundary points off its list")
                continue
            node = tail
            while node is not free_list.head:
                if not zone.block_of(node).hinted:
                    problems.append(f"({order},{mt.name}): unhinted pfn {node.pfn} behind boundary")
                node = node.next
    return problems


def _flags_and_worker(system: HintingSystem) -> list[str]:
    """refcnt counts requesting zones; a request always has work queued or running;
    ACTIVE only inside a cycle; a batch only while the lock is dropped for react."""
    hinting, worker = system.hinting, system.worker
    problems = []
    if hinting.refcnt != int(hinting.requested):
        problems.append(f"refcnt {hinting.refcnt} but requested={hinting.requested}")
    if hinting.requested and not (worker.running or worker.pending_at is not None):
        problems.append("REQUESTED with no work pending or running (lost request)")
    if hinting.active != worker.in_cycle:
        problems.append(f"ACTIVE={hinting.active} but in_cycle={worker.in_cycle}")
    isolated = sorted(system.zone.isolated)
    in_batch = sorted(entry.pfn for entry in worker.batch)
    if isolated != in_batch:
        problems.append(f"isolated {isolated[:8]} != batch {in_batch[:8]}")
    return problems


def _hinted_were_discarded(system: HintingSystem) -> list[str]:
    """Every hinted block went through react and the guest has not touched it since."""
    discarded = system.host.discarded
    return [
        f"hinted pfn {block.pfn} order {block.order} not discarded by the host"
        for block in system.zone.blocks.values()
        if block.hinted
        and not discarded.issuperset(range(block.pfn, block.pfn + (1 << block.order)))
    ]
