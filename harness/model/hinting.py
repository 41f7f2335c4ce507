"""v2's hinting state for one zone: flags, per-order counts, boundaries, fill and drain.

Each method names the C function of the seed patch it mirrors (include/linux/page_hinting.h,
mm/page_hinting.c, mm/page_alloc.c of "mm: Introduce Hinted pages", v2, 2019-07-24).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from harness.model.buddy import BuddyZone, FreeBlock
from harness.model.freelist import Node
from harness.model.params import MigrateType, Params


@dataclass(frozen=True)
class BatchEntry:
    """One scatterlist entry: the page plus what set_pcppage_migratetype/page_private keep."""

    pfn: int
    order: int
    mt: MigrateType


class Hinting:
    """ZONE_PAGE_HINTING_REQUESTED/ACTIVE, zone->hinted_pages, boundary[][], phdev->refcnt.

    Implements `ListHooks`, so a `BuddyZone` built with it behaves like 6.1 + v2.
    """

    def __init__(self, params: Params, schedule_work: Callable[[float], None]) -> None:
        self.params = params
        self.schedule_work = schedule_work  # schedule_delayed_work(&phdev->work, delay)
        self.requested = False
        self.active = False
        self.refcnt = 0
        self.device = False  # rcu ph_dev_info != NULL
        self.notify_enabled = False  # static key page_hinting_notify_enabled
        self.hinted_pages: list[int] | None = None  # NULL until populate_metadata
        self.boundary: dict[tuple[int, MigrateType], Node] = {}

    # -- ListHooks -------------------------------------------------------------------------
    def unhinted_tail(self, zone: BuddyZone, order: int, mt: MigrateType) -> Node:
        """get_unhinted_tail(): the boundary only while ACTIVE, else the list head."""
        if order >= self.params.min_order and self.active:
            return self.boundary[(order, mt)]
        return zone.free_lists[order][mt].head

    def clear_page_hinted(self, zone: BuddyZone, block: FreeBlock) -> None:
        """clear_page_hinted(): push the boundary back, clear the flag, count down."""
        if not block.hinted:
            return
        if self.active:
            self.del_from_boundary(block)
        block.hinted = False
        assert self.hinted_pages is not None  # a hinted page implies populated metadata
        self.hinted_pages[block.order - self.params.min_order] -= 1

    def notify_free(self, zone: BuddyZone, order: int) -> None:
        """page_hinting_notify_free()."""
        if not self.notify_enabled:
            return
        if order < self.params.min_order:
            return
        if self.requested:
            return
        if zone.nr_free[order] < self.hinted(order) + self.params.hwm:
            return
        self.request()

    # -- counts and boundaries -----------------------------------------------------------
    def hinted(self, order: int) -> int:
        """zone->hinted_pages[order - MIN_ORDER], 0 when not populated."""
        if self.hinted_pages is None or order < self.params.min_order:
            return 0
        return self.hinted_pages[order - self.params.min_order]

    def populate_metadata(self, zone: BuddyZone) -> None:
        """page_hinting_populate_metadata(): counts allocated once, boundaries reset."""
        if self.hinted_pages is None:
            self.hinted_pages = [0] * len(self.params.hinting_orders)
        for order in self.params.hinting_orders:
            for mt in self.params.migratetypes:
                self.boundary[(order, mt)] = zone.free_lists[order][mt].head

    def del_from_boundary(self, block: FreeBlock) -> None:
        """page_hinting_del_from_boundary(): `if (*tail == &page->lru) *tail = next`."""
        key = (block.order, block.mt)
        if self.boundary.get(key) is block.node:
            self.boundary[key] = block.node.next

    def add_to_boundary(self, block: FreeBlock, mt: MigrateType) -> None:
        """page_hinting_add_to_boundary()."""
        self.boundary[(block.order, mt)] = block.node

    # -- requests --------------------------------------------------------------------------
    def request(self) -> None:
        """__page_hinting_request(): set REQUESTED; the first requester schedules work."""
        if not self.device:
            return
        self.requested = True
        previous = self.refcnt
        self.refcnt += 1
        if previous == 0:
            self.schedule_work(self.params.delay)

    def startup(self) -> None:
        """page_hinting_startup(): device in, request every populated zone, enable notify."""
        self.device = True
        self.refcnt = 0
        self.request()
        self.notify_enabled = True

    # -- the worker's zone operations ------------------------------------------------------
    def get_unhinted_page(self, zone: BuddyZone, order: int, mt: MigrateType) -> BatchEntry | None:
        """get_unhinted_page(): last entry before the boundary, or the head if that is hinted."""
        free_list = zone.free_lists[order][mt]
        candidate = self.unhinted_tail(zone, order, mt).prev
        if candidate is free_list.head:
            return None
        block = zone.block_of(candidate)
        if block.hinted:
            block = zone.block_of(free_list.head.next)
            if block.hinted:
                # "both the head and tail are hinted then reset the boundary"
                self.add_to_boundary(block, mt)
                return None
        zone.isolate(block)
        return BatchEntry(block.pfn, order, mt)

    def fill(self, zone: BuddyZone) -> list[BatchEntry]:
        """page_hinting_fill(): orders high to low, migratetypes high to low, to capacity."""
        batch: list[BatchEntry] = []
        for order in reversed(self.params.hinting_orders):
            for mt in sorted(self.params.migratetypes, reverse=True):
                while (entry := self.get_unhinted_page(zone, order, mt)) is not None:
                    batch.append(entry)
                    if len(batch) == self.params.capacity:
                        return batch
        # "no longer enough free pages to fully populate the scatterlist"
        self.requested = False
        self.refcnt -= 1
        return batch

    def put_hinted_page(self, zone: BuddyZone, entry: BatchEntry) -> bool:
        """put_hinted_page(): free at the tail; hinted only if it did not merge."""
        placed = zone.free(entry.pfn, entry.order, entry.mt, hinted=True)
        if placed.merged:
            return False
        block = zone.blocks[entry.pfn]
        assert self.hinted_pages is not None
        self.hinted_pages[entry.order - self.params.min_order] += 1
        self.add_to_boundary(block, entry.mt)
        block.hinted = True
        return True

    def drain(self, zone: BuddyZone, batch: list[BatchEntry]) -> int:
        """page_hinting_drain(): every page back in scatterlist order; returns # hinted."""
        return sum(self.put_hinted_page(zone, entry) for entry in batch)
