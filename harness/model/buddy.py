"""One zone of 6.1's buddy allocator, reduced to what the hinting series touches.

Mirrors mm/page_alloc.c of linux-source-6.1: __free_one_page (merging with the buddy
`pfn ^ (1 << order)`, head or tail placement), __rmqueue_smallest + expand (allocation from
the list head, splitting), add_to_free_list[_tail] and del_page_from_free_list. The hinting
series hooks into those three list helpers and into __free_one_page; `ListHooks` is that
seam, and `StockHooks` is 6.1 without the series.

Abstracted away (see docs/MODEL.md): per-cpu lists, fallback between migratetypes,
compaction, isolation, shuffling (off in our kernels), guard pages, zone watermarks.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

from harness.model.errors import ModelInvariantError, ModelUsageError
from harness.model.freelist import FreeList, Node
from harness.model.params import MigrateType, Params


@dataclass(eq=False)
class FreeBlock:
    """A PageBuddy head page: `order` is page_private, `mt` the list it sits on."""

    pfn: int
    order: int
    mt: MigrateType
    node: Node = field(repr=False)
    hinted: bool = False  # PageHinted (v2 aliases PG_offline)


@dataclass(frozen=True)
class Placed:
    """Where a freed page ended up after merging."""

    pfn: int
    order: int
    merged: bool


class ListHooks(Protocol):
    """The points where v2 changes the 6.1 free-list helpers."""

    def unhinted_tail(self, zone: BuddyZone, order: int, mt: MigrateType) -> Node:
        """get_unhinted_tail(): where add_to_free_list_tail inserts."""
        ...

    def clear_page_hinted(self, zone: BuddyZone, block: FreeBlock) -> None:
        """Called by del_page_from_free_list before the page leaves its list."""
        ...

    def notify_free(self, zone: BuddyZone, order: int) -> None:
        """page_hinting_notify_free(), end of __free_one_page for unhinted frees."""
        ...


class StockHooks:
    """6.1 without the series: tails are list heads, nothing is hinted or notified."""

    def unhinted_tail(self, zone: BuddyZone, order: int, mt: MigrateType) -> Node:
        return zone.free_lists[order][mt].head

    def clear_page_hinted(self, zone: BuddyZone, block: FreeBlock) -> None:
        return None

    def notify_free(self, zone: BuddyZone, order: int) -> None:
        return None


class BuddyZone:
    """Page frames 0 .. nr_pages-1; nr_pages is a multiple of the largest block."""

    def __init__(
        self,
        params: Params,
        nr_pages: int,
        block_mts: list[MigrateType] | None = None,
        hooks: ListHooks | None = None,
    ) -> None:
        top_block = 1 << params.top_order
        if nr_pages <= 0 or nr_pages % top_block:
            raise ModelUsageError(
                f"nr_pages {nr_pages} is not a positive multiple of {top_block}",
                "size the zone in whole top-order blocks",
            )
        self.params = params
        self.nr_pages = nr_pages
        nr_blocks = nr_pages >> params.pageblock_order
        self.block_mts = list(block_mts or [MigrateType.MOVABLE] * nr_blocks)
        if len(self.block_mts) != nr_blocks:
            raise ModelUsageError(
                f"{len(self.block_mts)} pageblock migratetypes for {nr_blocks} pageblocks",
                "give one migratetype per pageblock",
            )
        self.hooks: ListHooks = hooks or StockHooks()
        self.free_lists = [
            {mt: FreeList() for mt in params.migratetypes} for _ in range(params.max_order)
        ]
        self.nr_free = [0] * params.max_order
        self.blocks: dict[int, FreeBlock] = {}  # free block head pfn -> block
        self.allocated: dict[int, int] = {}  # allocated block pfn -> order
        self.isolated: dict[int, int] = {}  # pfn -> order, taken by the hinting fill

    # -- setup ---------------------------------------------------------------------------
    def populate(self) -> None:
        """Boot: memblock hands every top-order block over (__free_pages_core, FPI_TO_TAIL)."""
        size = 1 << self.params.top_order
        for pfn in range(0, self.nr_pages, size):
            self.allocated[pfn] = self.params.top_order
            self.free(pfn, self.params.top_order, to_tail=True)

    def pageblock_mt(self, pfn: int) -> MigrateType:
        return self.block_mts[pfn >> self.params.pageblock_order]

    # -- list helpers (include/linux/mmzone.h in v2, mm/page_alloc.c in 6.1) --------------
    def add_to_free_list(self, pfn: int, order: int, mt: MigrateType, tail: bool) -> FreeBlock:
        block = FreeBlock(pfn, order, mt, Node(pfn))
        free_list = self.free_lists[order][mt]
        if tail:
            free_list.insert_before(block.node, self.hooks.unhinted_tail(self, order, mt))
        else:
            free_list.add_head(block.node)
        self.blocks[pfn] = block
        self.nr_free[order] += 1
        return block

    def del_page_from_free_list(self, block: FreeBlock) -> None:
        # v2: "Clear Hinted flag, if present, before clearing the Buddy flag"
        self.hooks.clear_page_hinted(self, block)
        self.free_lists[block.order][block.mt].remove(block.node)
        del self.blocks[block.pfn]
        self.nr_free[block.order] -= 1

    def move_to_free_list(self, block: FreeBlock, mt: MigrateType, *, tail: bool = True) -> None:
        """move_to_free_list(): a free block changes migratetype list (fallback stealing,
        highatomic unreserve, isolation). The hinted flag is cleared first (v2). v2 moved
        to the head; 6.1 moves to the tail, and the 6.1 port inserts in front of
        get_unhinted_tail() (`tail=True`, the default)."""
        self.hooks.clear_page_hinted(self, block)
        self.free_lists[block.order][block.mt].remove(block.node)
        block.mt = mt
        free_list = self.free_lists[block.order][mt]
        if tail:
            free_list.insert_before(block.node, self.hooks.unhinted_tail(self, block.order, mt))
        else:
            free_list.add_head(block.node)

    def free_block_at(self, pfn: int, order: int) -> FreeBlock | None:
        """page_is_buddy(): a free head of exactly this order."""
        block = self.blocks.get(pfn)
        return block if block is not None and block.order == order else None

    # -- freeing ---------------------------------------------------------------------------
    def free(
        self,
        pfn: int,
        order: int,
        mt: MigrateType | None = None,
        *,
        hinted: bool = False,
        to_tail: bool = False,
    ) -> Placed:
        """__free_one_page(page, pfn, zone, order, mt, hinted) of v2 on 6.1.

        `pfn` must be an allocated block of that order, or (hinted=True) a block the
        hinting fill isolated. `to_tail` is 6.1's FPI_TO_TAIL.
        """
        self._take_back(pfn, order, hinted)
        mt = self.pageblock_mt(pfn) if mt is None else mt
        start_order = order
        buddy_pfn = pfn ^ (1 << order)
        while order < self.params.top_order:
            buddy_pfn = pfn ^ (1 << order)
            buddy = self.free_block_at(buddy_pfn, order)
            if buddy is None or not self._may_merge(mt, buddy_pfn, order):
                break
            self.del_page_from_free_list(buddy)
            pfn &= buddy_pfn
            order += 1
        # v2: `if (hinted || buddy_merge_likely(...)) add_to_free_list_tail(...)`
        tail = hinted or to_tail or self.buddy_merge_likely(pfn, buddy_pfn, order)
        self.add_to_free_list(pfn, order, mt, tail)
        if not hinted:
            self.hooks.notify_free(self, order)
        return Placed(pfn, order, merged=order != start_order)

    def _take_back(self, pfn: int, order: int, hinted: bool) -> None:
        """The caller must own the block: allocated, or (drain) isolated by fill."""
        owner = self.isolated if hinted else self.allocated
        if owner.get(pfn) != order:
            kind = "isolated by the hinting fill" if hinted else "allocated"
            raise ModelUsageError(
                f"pfn {pfn} order {order} is not {kind} (found order {owner.get(pfn)})",
                "free only what alloc() returned, with the order it was allocated at",
            )
        del owner[pfn]

    def _may_merge(self, mt: MigrateType, buddy_pfn: int, order: int) -> bool:
        """6.1: at order >= pageblock_order, no merge across a non-mergeable type."""
        if order < self.params.pageblock_order:
            return True
        buddy_mt = self.pageblock_mt(buddy_pfn)
        return mt == buddy_mt or (mt.mergeable and buddy_mt.mergeable)

    def buddy_merge_likely(self, pfn: int, buddy_pfn: int, order: int) -> bool:
        """6.1 buddy_merge_likely(): is the buddy of the next-higher block free?"""
        if order >= self.params.max_order - 2:
            return False
        higher_pfn = buddy_pfn & pfn
        return self.free_block_at(higher_pfn ^ (1 << (order + 1)), order + 1) is not None

    # -- allocation ------------------------------------------------------------------------
    def alloc(self, order: int, mt: MigrateType) -> int | None:
        """__rmqueue_smallest(): head of the smallest non-empty list, split by expand()."""
        for current in range(order, self.params.max_order):
            first = self.free_lists[current][mt].first()
            if first is None:
                continue
            block = self.blocks[first.pfn]  # type: ignore[index]
            self.del_page_from_free_list(block)
            self.expand(block.pfn, order, current, mt)
            self.allocated[block.pfn] = order
            return block.pfn
        return None

    def expand(self, pfn: int, low: int, high: int, mt: MigrateType) -> None:
        """6.1 expand(): upper halves go to the list heads, with no notification."""
        size = 1 << high
        while high > low:
            high -= 1
            size >>= 1
            self.add_to_free_list(pfn + size, high, mt, tail=False)

    def split_allocated(self, pfn: int) -> None:
        """split_page(): an allocated order-k block becomes 2^k order-0 allocations."""
        order = self.allocated.pop(pfn)
        for sub in range(pfn, pfn + (1 << order)):
            self.allocated[sub] = 0

    def isolate(self, block: FreeBlock) -> None:
        """Take a free block off its list for hinting (get_unhinted_page's tail part)."""
        self.del_page_from_free_list(block)
        self.isolated[block.pfn] = block.order

    # -- views -----------------------------------------------------------------------------
    def free_pages(self) -> int:
        return sum(count << order for order, count in enumerate(self.nr_free))

    def block_of(self, node: Node) -> FreeBlock:
        if node.pfn is None:
            raise ModelInvariantError("the list sentinel is not a page", "model bug")
        return self.blocks[node.pfn]
