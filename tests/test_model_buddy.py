"""The 6.1 buddy allocator part of the model (mm/page_alloc.c of linux-source-6.1)."""

from __future__ import annotations

import pytest

from harness.model import HintingSystem, MigrateType, ModelUsageError, Params
from harness.model.buddy import BuddyZone

SMALL = Params(max_order=5, min_order=3, hwm=3, capacity=3)
MOVABLE, UNMOVABLE, HIGHATOMIC = MigrateType.MOVABLE, MigrateType.UNMOVABLE, MigrateType.HIGHATOMIC


def stock_zone(params: Params = SMALL, blocks: int = 2, mts: list[MigrateType] | None = None):
    zone = BuddyZone(params, blocks << params.top_order, mts)
    zone.populate()
    return zone


def test_populate_puts_every_top_block_on_its_pageblock_list() -> None:
    zone = stock_zone(blocks=3)
    assert zone.nr_free == [0, 0, 0, 0, 3]
    assert zone.free_lists[4][MOVABLE].pfns() == [0, 16, 32]  # FPI_TO_TAIL keeps pfn order


def test_alloc_takes_the_head_and_expand_puts_upper_halves_on_list_heads() -> None:
    zone = stock_zone()
    assert zone.alloc(0, MOVABLE) == 0
    # expand(): page[size] for size 8, 4, 2, 1
    assert [zone.free_lists[o][MOVABLE].pfns() for o in range(4)] == [[1], [2], [4], [8]]
    assert zone.free_lists[4][MOVABLE].pfns() == [16]


def test_free_merges_with_the_buddy_pfn_xor_size_up_to_the_top_order() -> None:
    zone = stock_zone()
    pfns = [zone.alloc(0, MOVABLE) for _ in range(4)]
    assert pfns == [0, 1, 2, 3]
    zone.free(1, 0)
    assert zone.nr_free[0] == 1  # buddy 0 is allocated: no merge
    zone.free(0, 0)  # 0 ^ 1 == 1 is free -> order 1 at 0; 0 ^ 2 == 2 allocated
    assert zone.free_lists[1][MOVABLE].pfns() == [0]
    zone.free(2, 0)
    zone.free(3, 0)
    assert zone.nr_free == [0, 0, 0, 0, 2]


def test_buddy_merge_likely_puts_a_page_at_the_tail_when_the_parent_buddy_is_free() -> None:
    zone = stock_zone(blocks=1)
    first = zone.alloc(1, MOVABLE)  # pfn 0..1; free: 2 (o1), 4 (o2), 8 (o3)
    second = zone.alloc(1, MOVABLE)  # takes 2
    assert (first, second) == (0, 2)
    spare = zone.alloc(0, MOVABLE)  # splits 4: order-1 6, order-0 5 on heads
    assert spare == 4
    zone.free(second, 1)  # buddy 0 allocated; parent 0..3 has buddy 4 (o2)? allocated -> head
    assert zone.free_lists[1][MOVABLE].pfns() == [2, 6]
    zone.free(spare, 0)  # merges 4+5 -> o1 4, +6 -> o2 4; parent 0 o3 buddy 8 free -> tail
    assert zone.free_lists[2][MOVABLE].pfns() == [4]
    assert zone.buddy_merge_likely(0, 4, 2)
    assert not zone.buddy_merge_likely(0, 8, 3)  # order >= MAX_ORDER - 2 never


@pytest.mark.parametrize(("upper_type", "merges"), [(UNMOVABLE, True), (HIGHATOMIC, False)])
def test_merge_across_pageblocks_only_between_mergeable_types(
    upper_type: MigrateType, merges: bool
) -> None:
    zone = BuddyZone(SMALL, 32, [MOVABLE, MOVABLE, MOVABLE, upper_type])  # 8-page blocks
    zone.allocated.update({16: 3, 24: 3})  # two pageblock-sized allocations
    zone.free(16, 3)  # Movable pageblock
    zone.free(24, 3)  # freed as its pageblock's type; 6.1 migratetype_is_mergeable()
    assert zone.nr_free[4] == int(merges)
    assert zone.nr_free[3] == 2 * int(not merges)


def test_freeing_something_not_allocated_is_refused() -> None:
    zone = stock_zone()
    with pytest.raises(ModelUsageError, match="not allocated"):
        zone.free(0, 0)


def test_stock_zone_without_the_series_never_hints() -> None:
    system = HintingSystem(SMALL, 4 << SMALL.top_order, device=False)
    pfns = [system.alloc(0) for _ in range(40)]
    for pfn in pfns:
        system.free(pfn, 0)
    system.advance(10)
    assert system.snapshot().hinted == (0,) * 5
    assert system.discarded_bytes == 0
