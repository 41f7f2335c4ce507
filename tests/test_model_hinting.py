"""One test per trigger and boundary rule of v2; each cites the seed line it mirrors.

`mirrors(...)` records the quoted C; test_every_citation_is_in_the_seed checks each quote
against the seed patch (PHH_SEED; default: a copy of shared/seed in tests/fixtures/seed/).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

import pytest

from harness.core.errors import HarnessError
from harness.model import HintingSystem, MigrateType, Params, Phase
from harness.model.seed import locate

F = TypeVar("F", bound=Callable[..., None])
CITATIONS: dict[str, str] = {}
MOVABLE, UNMOVABLE = MigrateType.MOVABLE, MigrateType.UNMOVABLE
TOP = 10


def mirrors(c_line: str) -> Callable[[F], F]:
    def register(test: F) -> F:
        CITATIONS[test.__name__] = c_line
        return test

    return register


def idle_system(top_blocks: int = 64, **kwargs) -> HintingSystem:
    """Real parameters; every top-order block free and hinted, worker idle."""
    system = HintingSystem(Params(), top_blocks << TOP, **kwargs)
    system.settle()
    system.check_invariants()
    assert system.idle
    return system


def alloc_many(system: HintingSystem, count: int, order: int, mt=MOVABLE) -> list[int]:
    pfns = [system.alloc(order, mt) for _ in range(count)]
    assert None not in pfns
    return pfns  # type: ignore[return-value]


# -- page_hinting_notify_free -------------------------------------------------------------
@mirrors("if (!static_key_false(&page_hinting_notify_enabled)) return;")
def test_no_notification_before_startup() -> None:
    system = HintingSystem(Params(), 64 << TOP, device=False)
    for pfn in alloc_many(system, 40, TOP):
        system.free(pfn, TOP)
    assert not system.hinting.requested and system.worker.phase is Phase.IDLE


@mirrors("if (order < PAGE_HINTING_MIN_ORDER) return;")
def test_frees_ending_below_min_order_never_request() -> None:
    system = idle_system(16)
    pfns = alloc_many(system, 64, 8)  # 16 top blocks -> 64 order-8 quarters
    for pfn in pfns[::2]:  # every other one: buddies stay allocated, no merge
        system.free(pfn, 8)
    assert system.zone.nr_free[8] == 32 and system.hinting.hinted(8) == 0
    assert not system.hinting.requested


@mirrors("if (zone->free_area[order].nr_free < nr_hinted + PAGE_HINTING_HWM) return;")
def test_request_exactly_when_free_reaches_hinted_plus_hwm() -> None:
    system = idle_system(64)
    pfns = alloc_many(system, 40, TOP)  # hinted pages from the head: 24 free, 24 hinted
    assert (system.zone.nr_free[TOP], system.hinting.hinted(TOP)) == (24, 24)
    for pfn in pfns[:31]:
        system.free(pfn, TOP)
    assert system.zone.nr_free[TOP] == 24 + 31 and not system.hinting.requested
    system.free(pfns[31], TOP)
    assert system.zone.nr_free[TOP] == 24 + 32 and system.hinting.requested


@mirrors("nr_hinted = zone->hinted_pages ? zone->hinted_pages[order - PAGE_HINTING_MIN_ORDER] : 0;")
def test_notification_uses_the_order_the_free_ended_at() -> None:
    system = idle_system(64)
    pfns = alloc_many(system, 41, TOP)  # 23 free, all hinted
    half = system.alloc(9)  # splits a hinted top block: its buddy half waits on order 9
    for pfn in pfns[:31]:
        system.free(pfn, TOP)
    assert system.snapshot().unhinted(TOP) == 31 and not system.hinting.requested
    placed = system.free(half, 9)  # merges with its buddy: the free ends at order 10
    assert (placed.order, placed.merged) == (TOP, True)
    assert system.snapshot().unhinted(TOP) == 32 and system.hinting.requested


@mirrors("if (test_bit(ZONE_PAGE_HINTING_REQUESTED, &zone->flags)) return;")
def test_a_requested_zone_is_not_requested_again() -> None:
    system = idle_system(80)
    for pfn in alloc_many(system, 70, TOP):
        system.free(pfn, TOP)
    assert system.hinting.requested and system.hinting.refcnt == 1


@mirrors("if (!hinted) page_hinting_notify_free(zone, order);")
def test_the_drain_does_not_notify() -> None:
    system = idle_system(64)
    calls: list[int] = []
    original = system.hinting.notify_free
    system.hinting.notify_free = lambda zone, order: (calls.append(order), original(zone, order))
    for pfn in alloc_many(system, 32, TOP):
        system.free(pfn, TOP)
    assert len(calls) == 32
    system.settle()
    assert len(calls) == 32 and system.host.reports == 3  # startup (2) + this cycle (1)


# -- __page_hinting_request and the delayed work -------------------------------------------
@mirrors("if (!atomic_fetch_inc(&phdev->refcnt)) schedule_delayed_work(&phdev->work, HZ / 10);")
def test_the_worker_starts_a_tenth_of_a_second_after_the_first_request() -> None:
    system = HintingSystem(Params(), 64 << TOP)
    assert system.worker.phase is Phase.PENDING and system.hinting.refcnt == 1
    system.advance(0.05)
    assert system.worker.phase is Phase.PENDING
    system.advance(0.05)
    assert system.worker.phase is Phase.START


@mirrors("for_each_populated_zone(zone) { spin_lock(&zone->lock); __page_hinting_request(zone);")
def test_startup_requests_the_zone_and_hints_everything_free() -> None:
    system = idle_system(64)
    assert system.snapshot().hinted[TOP] == 64
    assert system.discarded_bytes == 64 << (TOP + 12)


# -- page_hinting_fill / get_unhinted_page --------------------------------------------------
@mirrors("if (++count == phdev->capacity) return count;")
def test_a_full_batch_keeps_the_request_and_the_cycle_goes_on() -> None:
    system = HintingSystem(Params(), 64 << TOP)
    system.advance(0.1)
    assert system.worker_step() is Phase.FILL
    assert system.worker_step() is Phase.REACT
    assert len(system.worker.batch) == 32 and system.hinting.requested
    assert system.worker_step() is Phase.FILL  # while (test_bit(REQUESTED))


@mirrors("clear_bit(ZONE_PAGE_HINTING_REQUESTED, &zone->flags); atomic_dec(&phdev->refcnt);")
def test_a_short_batch_clears_the_request_and_drops_the_refcount() -> None:
    system = HintingSystem(Params(), 40 << TOP)
    system.advance(0.1)
    system.worker_step()
    system.worker_step()  # 32 of 40
    system.worker_step()
    system.worker_step()  # 8 of 40
    assert len(system.worker.batch) == 8
    assert not system.hinting.requested and system.hinting.refcnt == 0
    assert system.worker_step() is Phase.IDLE and not system.hinting.active


@mirrors(r"_order-- != PAGE_HINTING_MIN_ORDER;) \ for (_type = MIGRATE_TYPES; _type--;)")
def test_fill_walks_orders_then_migratetypes_from_high_to_low() -> None:
    mts = [UNMOVABLE] * 2 + [MOVABLE] * 2 + [MigrateType.RECLAIMABLE] * 4  # pageblocks
    system = HintingSystem(Params(), 4 << TOP, mts)
    system.alloc(9, MigrateType.RECLAIMABLE)  # leaves an order-9 Reclaimable half
    system.advance(0.1)
    system.worker_step()
    system.worker_step()
    walked = [(e.order, e.mt) for e in system.worker.batch]
    assert walked == [
        (10, MigrateType.RECLAIMABLE),
        (10, MOVABLE),
        (10, UNMOVABLE),
        (9, MigrateType.RECLAIMABLE),
    ]


@mirrors("page = list_last_entry(tail, struct page, lru);")
def test_fill_takes_unhinted_pages_from_the_tail_side_of_the_boundary() -> None:
    system = HintingSystem(Params(), 4 << TOP)  # boot order on the list: 0, 1024, ...
    system.advance(0.1)
    system.worker_step()
    system.worker_step()
    assert [e.pfn for e in system.worker.batch] == [3072, 2048, 1024, 0]


@mirrors("if (PageHinted(page)) { page = list_first_entry(list, struct page, lru);")
def test_at_cycle_start_a_hinted_tail_sends_fill_to_the_list_head() -> None:
    system = idle_system(64)
    pfns = alloc_many(system, 32, TOP)  # hinted pages from the head
    for pfn in pfns:
        system.free(pfn, TOP)  # unhinted, at the head (buddy_merge_likely is false)
    system.advance(0.1)
    system.worker_step()  # populate_metadata resets the boundary to the list head
    movable = system.zone.free_lists[TOP][MOVABLE]
    assert system.hinting.boundary[(TOP, MOVABLE)] is movable.head
    system.worker_step()
    assert [e.pfn for e in system.worker.batch] == list(reversed(pfns))


@mirrors("if (PageHinted(page)) { page_hinting_add_to_boundary(page, zone, mt); break; }")
def test_a_list_hinted_at_head_and_tail_gets_its_boundary_at_the_head() -> None:
    system = idle_system(64)
    for pfn in alloc_many(system, 32, TOP):
        system.free(pfn, TOP)  # request
    system.advance(0.1)
    for _ in range(3):
        system.worker_step()  # start, fill 32, drain: all hinted now, fill comes next
    movable = system.zone.free_lists[TOP][MOVABLE]
    assert system.hinting.boundary[(TOP, MOVABLE)] is not movable.head.next
    assert system.worker_step() is Phase.IDLE  # fill found nothing
    assert system.hinting.boundary[(TOP, MOVABLE)] is movable.head.next


# -- put_hinted_page / drain ----------------------------------------------------------------
@mirrors("if (!PageBuddy(page) || page_order(page) != order) return;")
def test_a_page_that_merges_on_the_way_back_is_not_hinted() -> None:
    system, halves = merge_during_drain()
    block = system.zone.blocks[halves[0]]
    assert block.order == TOP and not block.hinted
    assert system.hinting.hinted(9) == 0
    system.check_invariants()


@mirrors(
    "zone->hinted_pages[order - PAGE_HINTING_MIN_ORDER]++; "
    "/* update boundary of new migratetype and record it */ "
    "page_hinting_add_to_boundary(page, zone, mt);"
)
def test_a_drained_page_becomes_the_boundary_in_front_of_the_hinted_block() -> None:
    system = HintingSystem(Params(), 4 << TOP)
    system.advance(0.1)
    system.worker_step()
    system.worker_step()
    system.worker_step()  # drain 3072, 2048, 1024, 0 in that order
    movable = system.zone.free_lists[TOP][MOVABLE]
    assert movable.pfns() == [0, 1024, 2048, 3072]
    assert system.hinting.boundary[(TOP, MOVABLE)].pfn == 0
    assert system.hinting.hinted(TOP) == 4


@mirrors("list_add_tail(&page->lru, tail); zone->free_area[order].nr_free++;")
def test_a_tail_insertion_while_active_goes_in_front_of_the_boundary() -> None:
    system, halves = merge_during_drain()
    movable = system.zone.free_lists[TOP][MOVABLE]
    snap = system.snapshot().list(TOP, MOVABLE)
    assert movable.pfns().index(halves[0]) == snap.first_hinted - 1
    assert snap.contiguous_tail


def merge_during_drain() -> tuple[HintingSystem, list[int]]:
    """A fill takes one half of a top block; the other half is freed during react; the
    drain then merges them into an unhinted top block (returns after that drain)."""
    system = idle_system(64)
    halves = alloc_many(system, 2, 9)  # both halves of one top block
    assert halves[1] == halves[0] ^ 512
    system.free(halves[0], 9)  # order 9 now holds one unhinted page
    for pfn in alloc_many(system, 32, TOP):
        system.free(pfn, TOP)  # request
    system.advance(0.1)
    system.step_until(lambda s: len(s.worker.batch) == 1 and s.worker.phase is Phase.REACT)
    assert system.worker.batch[0].pfn == halves[0]
    system.free(halves[1], 9)  # while the lock is dropped: its buddy is in the batch
    hinted_before = system.hinting.hinted(TOP)
    assert system.worker_step() is Phase.IDLE  # drain: halves[0] merges with halves[1]
    assert system.hinting.hinted(TOP) == hinted_before
    return system, halves


@mirrors(
    "if (order >= PAGE_HINTING_MIN_ORDER && "
    "test_bit(ZONE_PAGE_HINTING_ACTIVE, &zone->flags)) "
    "return __page_hinting_get_boundary(order, migratetype);"
)
def test_without_active_the_tail_is_the_list_head() -> None:
    system = idle_system(4)
    movable = system.zone.free_lists[TOP][MOVABLE]
    assert system.hinting.unhinted_tail(system.zone, TOP, MOVABLE) is movable.head
    assert system.hinting.unhinted_tail(system.zone, 8, MOVABLE) is (
        system.zone.free_lists[8][MOVABLE].head
    )


# -- clear_page_hinted / del_from_boundary --------------------------------------------------
@mirrors("if (*tail == &page->lru) *tail = page->lru.next;")
def test_allocating_the_boundary_page_while_active_pushes_the_boundary_back() -> None:
    system = HintingSystem(Params(), 36 << TOP)
    system.advance(0.1)
    system.worker_step()
    system.worker_step()  # 32 of 36 in the batch
    system.worker_step()  # drained, boundary = first hinted; fill comes next
    movable = system.zone.free_lists[TOP][MOVABLE]
    boundary = system.hinting.boundary[(TOP, MOVABLE)]
    assert system.zone.block_of(boundary).hinted and boundary.prev.pfn is not None
    system.worker_step()  # second fill takes the 4 unhinted: list is all hinted
    assert system.worker.phase is Phase.REACT
    head = movable.first()
    assert head is system.hinting.boundary[(TOP, MOVABLE)]
    nxt = head.next
    assert system.alloc(TOP) == head.pfn  # lock dropped: another CPU allocates
    assert system.hinting.boundary[(TOP, MOVABLE)] is nxt
    system.check_invariants()


@mirrors("zone->hinted_pages[page_private(page) - PAGE_HINTING_MIN_ORDER]--;")
def test_taking_a_hinted_page_counts_it_down_and_the_guest_touches_it_again() -> None:
    system = idle_system(8)
    before = system.discarded_bytes
    pfn = system.alloc(TOP)
    assert system.hinting.hinted(TOP) == 7
    assert system.discarded_bytes == before - (4096 << TOP)
    system.free(pfn, TOP)  # back at the head, unhinted, host backs it until hinted again
    assert system.snapshot().list(TOP, MOVABLE).first_hinted == 1


# -- page_hinting_cycle / page_hinting_process ----------------------------------------------
@mirrors("} while (test_bit(ZONE_PAGE_HINTING_REQUESTED, &zone->flags));")
def test_a_request_during_the_last_react_keeps_the_cycle_going() -> None:
    system = idle_system(100)
    pfns = alloc_many(system, 70, TOP)  # 30 hinted stay free
    for pfn in pfns[:33]:
        system.free(pfn, TOP)  # the 32nd requests
    system.advance(0.1)
    for _ in range(4):
        system.worker_step()  # start, fill 32 (full), drain, fill 1 (short)
    assert system.worker.phase is Phase.REACT and len(system.worker.batch) == 1
    assert not system.hinting.requested and system.hinting.refcnt == 0
    for pfn in pfns[33:65]:
        system.free(pfn, TOP)  # lock dropped: the 32nd unhinted free requests again
    assert system.hinting.requested and system.worker.pending_at is not None
    assert system.worker_step() is Phase.FILL  # drain, then the loop goes on
    system.settle()
    assert system.idle and system.snapshot().unhinted(TOP) == 0


@mirrors("} while (atomic_read(&phdev->refcnt));")
def test_the_work_exits_when_refcnt_drops_to_zero() -> None:
    system = idle_system(4)
    assert system.hinting.refcnt == 0 and not system.worker.running


def test_every_citation_is_in_the_seed() -> None:
    assert len(CITATIONS) >= 20
    missing = []
    for name, c_line in CITATIONS.items():
        try:
            locate(c_line)
        except HarnessError as exc:
            missing.append(f"{name}: {exc.message}")
    assert not missing, "\n".join(missing)


def test_a_citation_that_is_not_in_the_seed_is_reported() -> None:
    with pytest.raises(HarnessError, match="citation not found"):
        locate("if (zone->free_area[order].nr_free < nr_hinted + 33)")
