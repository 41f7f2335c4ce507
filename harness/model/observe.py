"""Render the model as the guest's files would show it (harness.observe.procfs dataclasses).

Lets the judge run on model states: every state the model reaches must pass it, which is
how the tests show that the judge does not flag what v2 legitimately does.
"""

from __future__ import annotations

from harness.build.spec import HintingSpec
from harness.model.system import HintingSystem
from harness.observe.procfs import (
    BuddyInfo,
    GuestObservations,
    HintingListState,
    HintingState,
    HintingZoneState,
    PageTypeInfo,
    ZoneInfo,
)

NODE = 0
ZONE = "Normal"


def observe(system: HintingSystem) -> GuestObservations:
    snap = system.snapshot()
    params = system.params
    per_mt = {
        (NODE, ZONE, mt.proc_name): tuple(
            snap.list(order, mt).free for order in range(params.max_order)
        )
        for mt in params.migratetypes
    }
    zoneinfo = ZoneInfo(
        node=NODE,
        zone=ZONE,
        free_pages=system.zone.free_pages(),
        min=0,
        low=0,
        high=0,
        spanned=system.zone.nr_pages,
        present=system.zone.nr_pages,
        managed=system.zone.nr_pages,
        hinted={order: snap.hinted[order] for order in params.hinting_orders},
    )
    lists = tuple(
        HintingListState(
            zone=ZONE,
            node=NODE,
            order=entry.order,
            migratetype=entry.mt.proc_name,
            free=entry.free,
            hinted=entry.hinted,
            first_hinted=entry.first_hinted,
            contiguous_tail=entry.contiguous_tail,
        )
        for entry in snap.lists
        if entry.order >= params.min_order
    )
    hinting = HintingState(
        min_order=params.min_order,
        hwm=params.hwm,
        capacity=params.capacity,
        refcnt=snap.refcnt,
        device=system.hinting.device,
        zones=(HintingZoneState(NODE, ZONE, snap.requested, snap.active),),
        lists=lists,
    )
    return GuestObservations(
        zoneinfo=(zoneinfo,),
        buddyinfo=BuddyInfo(free={(NODE, ZONE): snap.nr_free}),
        pagetypeinfo=PageTypeInfo(
            pageblock_order=params.pageblock_order,
            pages_per_block=1 << params.pageblock_order,
            free=per_mt,
            blocks={(NODE, ZONE): _pageblocks_per_type(system)},
        ),
        meminfo={"MemFree": system.zone.free_pages() * 4},
        hinting=hinting,
    )


def _pageblocks_per_type(system: HintingSystem) -> dict[str, int]:
    counts = {mt.proc_name: 0 for mt in system.params.migratetypes}
    for mt in system.zone.block_mts:
        counts[mt.proc_name] += 1
    return counts


def declared_spec(system: HintingSystem) -> HintingSpec:
    """The parameters a revision modelled by `system` would declare in its params.toml."""
    p = system.params
    return HintingSpec(
        min_order=p.min_order, hwm=p.hwm, capacity=p.capacity, delay_ms=round(p.delay * 1000)
    )
