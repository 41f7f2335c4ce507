"""The count-level predictor (harness.model.counts) against the full model.

`predict_idle` claims that from an idle zone, v2's outcome for a script of frees depends
only on the per-order (free, hinted) counts of the hinting orders at the idle point and
on what each free does there: leave one new unhinted block (`FreeBlock`) or merge with a
free buddy, hinted or not, one order up (`MergeFree`). Each test runs a script on
`HintingSystem`, feeds `predict_idle` the counts from `snapshot()` at the idle point and
the script's events, and compares with the model at the next idle point (after
`settle()`): the counts of every hinting order, whether the zone requested hinting (the
REQUESTED flag once the script is done, and a worker cycle during `settle()`), which
free requested, and how many blocks the worker handed to the host.

What the scripts keep to (the count model's scope):

* Allocations only at the idle point, before the counts are read. An allocation is no
  event of the count model (it takes blocks off the lists, and `expand()` adds blocks
  without a notification); done before the read, it is part of the start counts.
* Frees only of blocks the script allocated, at their order, each one notifying (every
  free outside the worker's drain does). No time passes until the script is done, so the
  worker is never in `react` while the script frees: a free there can meet an isolated
  buddy, and the drain then merges it unhinted and without a notification.
* Pageblocks only of the mutually mergeable types (Unmovable, Movable, Reclaimable). For
  order >= pageblock_order, 6.1 merges by the type a page is freed as against the
  buddy's pageblock type, and the drain frees a page as the list it came from, which
  expand() can make differ from its own pageblock's. With HighAtomic pageblocks a random
  search found three frees (small constants below) where a block freed apart from its
  buddy merged with it in the drain: one block fewer at the next idle point than
  predicted. A real guest has HighAtomic pageblocks only after a high-order atomic
  allocation reserved one.
* min_order == max_order - 2, as on x86-64 (9 == 11 - 2): a free merges at most once at
  a hinting order, into the top order. A deeper cascade consumes buddies at two hinting
  orders and the event vocabulary has no word for it (two MergeFree events would add a
  notification at the middle order that the kernel does not make).

Each free's event is read from the zone just before the free (is the buddy a free
block of the same order, is it hinted), as a scenario knows it by construction, and the
free's result (order reached, merged or not) is checked against it.
"""

from __future__ import annotations

from dataclasses import dataclass

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from harness.model import HintingSystem, MigrateType, Params
from harness.model.counts import (
    Event,
    FreeBlock,
    MergeFree,
    OrderCounts,
    blocks_to_trigger,
    predict_idle,
)

REAL = Params()
MIN, TOP = REAL.min_order, REAL.top_order


@dataclass(frozen=True)
class Outcome:
    """The full model at the next idle point, in the terms of a `CountPrediction`."""

    counts: dict[int, OrderCounts]
    requested: bool
    trigger_event: int | None
    reported: int


def counts_of(system: HintingSystem) -> dict[int, OrderCounts]:
    snap = system.snapshot()
    return {o: OrderCounts(snap.nr_free[o], snap.hinted[o]) for o in system.params.hinting_orders}


def count_reported_blocks(system: HintingSystem) -> list[int]:
    """Batch sizes the host receives from now on (one entry per `react`)."""
    sizes: list[int] = []
    react = system.host.react

    def counting_react(batch) -> None:
        sizes.append(len(batch))
        react(batch)

    system.host.react = counting_react  # type: ignore[method-assign]
    return sizes


def event_of(system: HintingSystem, pfn: int, order: int) -> Event:
    """What freeing the allocated block (pfn, order) will do, read off the zone.

    Pageblock types are mutually mergeable, so a free merges exactly while its buddy is
    a free block of the same order (page_is_buddy), up to the top order.
    """
    params, zone = system.params, system.zone
    merged_at: list[tuple[int, bool]] = []  # (order of the buddy, buddy hinted)
    while order < params.top_order:
        buddy = zone.free_block_at(pfn ^ (1 << order), order)
        if buddy is None:
            break
        merged_at.append((order, buddy.hinted))
        pfn &= ~(1 << order)
        order += 1
    counted = [entry for entry in merged_at if entry[0] >= params.min_order]
    assert len(counted) <= 1, f"a cascade through two hinting orders: {merged_at}"
    if not merged_at:
        return FreeBlock(order)
    return MergeFree(order, buddy_hinted=bool(counted) and counted[0][1])


def free_and_settle(
    system: HintingSystem, frees: list[tuple[int, int]], reported: list[int]
) -> tuple[list[Event], Outcome]:
    """Free `frees` (pfn, order) from an idle zone, then settle. Returns the events the
    frees were and the model's outcome; `reported` is `count_reported_blocks(system)`."""
    assert system.idle
    cycles, batches = system.worker.cycles, len(reported)
    events: list[Event] = []
    trigger: int | None = None
    for index, (pfn, order) in enumerate(frees):
        step = event_of(system, pfn, order)
        placed = system.free(pfn, order)
        assert (placed.order, placed.merged) == (step.order, isinstance(step, MergeFree))
        events.append(step)
        if trigger is None and system.hinting.requested:
            trigger = index
    requested = system.hinting.requested
    system.settle()
    assert system.idle
    system.check_invariants()
    assert (system.worker.cycles > cycles) is requested  # a cycle ran iff a free requested
    return events, Outcome(counts_of(system), requested, trigger, sum(reported[batches:]))


def assert_agrees(
    start: dict[int, OrderCounts], events: list[Event], outcome: Outcome, params: Params
) -> None:
    prediction = predict_idle(start, events, params)
    detail = (start, events, prediction.notes)
    assert prediction.counts == outcome.counts, detail
    assert prediction.requested is outcome.requested, detail
    assert prediction.trigger_event == outcome.trigger_event, detail
    assert prediction.reported == outcome.reported, detail


# -- the real constants: pairs of order-9 halves around the trigger -------------------------
def with_order_min_leftovers(kind: str) -> tuple[HintingSystem, list[int]]:
    """An idle zone (startup flush done) and the upper halves the script holds. `kind`
    says what the order-min list holds: nothing, three unhinted lower halves (their upper
    halves allocated), or those three hinted by a later worker run (32 top-order frees
    request it)."""
    system = HintingSystem(REAL, 64 << TOP)
    system.settle()
    if kind == "empty":
        return system, []
    tops = [system.alloc(TOP) for _ in range(REAL.hwm)] if kind == "hinted" else []
    halves = [system.alloc(MIN) for _ in range(6)]
    for pfn in halves[::2]:
        system.free(pfn, MIN)
    for pfn in tops:
        system.free(pfn, TOP)
    assert system.hinting.requested is (kind == "hinted")
    system.settle()
    snap = system.snapshot()
    assert (snap.nr_free[MIN], snap.hinted[MIN]) == (3, 3 if kind == "hinted" else 0)
    return system, halves[1::2]


@pytest.mark.parametrize("leftovers", ["empty", "unhinted", "hinted"])
@pytest.mark.parametrize("offset", [-1, 0, 1])
def test_freeing_pairs_of_min_order_halves_around_the_trigger(leftovers: str, offset: int) -> None:
    """Real constants. k pairs of order-9 buddies, allocated at an idle point, are freed
    lower half then upper half: each pair is FreeBlock(9) (the upper half is still
    allocated) then MergeFree(10) (the lower half is free and unhinted), so order 10 gains
    one unhinted block per pair and order 9 ends where it started. With U[10] == 0 at the
    idle point, the 32nd pair requests; k = 31 leaves 31 unhinted top-order blocks.

    The pairs are buddies only if the order-9 list is empty when they are allocated:
    __rmqueue_smallest takes the head of the smallest non-empty list, so a free order-9
    block would be handed out first and every later pair would straddle two top-order
    blocks (a lower half's buddy would be the next pair's first block). So the script
    first allocates whatever the order-9 list holds (`leftovers`: nothing, unhinted or
    hinted blocks), then the pairs: each splits a hinted top-order block (hinted[10] - 1),
    whose upper half expand() puts on the empty order-9 list and the next allocation
    takes. The counts are read after all of that, at the same idle point, so nothing the
    allocations did is left out of the start counts.
    """
    system, _ = with_order_min_leftovers(leftovers)
    reported = count_reported_blocks(system)
    while system.zone.nr_free[MIN]:
        assert system.alloc(MIN) is not None
    trigger = blocks_to_trigger(counts_of(system), TOP, REAL)
    assert trigger == REAL.hwm  # U[10] == 0: the flush (or startup) hinted every block
    k = trigger + offset
    pairs = [(system.alloc(MIN), system.alloc(MIN)) for _ in range(k)]
    assert all(upper == lower ^ (1 << MIN) for lower, upper in pairs)
    assert system.idle
    start = counts_of(system)
    assert start[MIN] == OrderCounts(0, 0)
    assert blocks_to_trigger(start, TOP, REAL) == trigger  # splitting hinted blocks

    frees = [(pfn, MIN) for pair in pairs for pfn in pair]
    events, outcome = free_and_settle(system, frees, reported)
    assert events == [FreeBlock(MIN), MergeFree(TOP, buddy_hinted=False)] * k
    assert_agrees(start, events, outcome, REAL)

    after = outcome.counts
    assert after[MIN] == OrderCounts(0, 0)
    assert after[TOP].free == start[TOP].free + k
    if k < trigger:
        assert not outcome.requested
        assert after[TOP].unhinted == start[TOP].unhinted + k == REAL.hwm - 1
        assert after[TOP].hinted == start[TOP].hinted
    else:
        assert outcome.requested and outcome.trigger_event == 2 * trigger - 1
        assert after[TOP].unhinted == 0 and outcome.reported == k


@pytest.mark.parametrize("offset", [-1, 0])
def test_merges_with_hinted_buddies_take_them_off_the_hinted_count(offset: int) -> None:
    """Real constants. Three hinted order-9 blocks whose buddies the script holds: freeing
    the buddies is MergeFree(10, buddy_hinted=True) three times (hinted[9] 3 -> 0, three
    unhinted top-order blocks); then top-order blocks the script allocated at the idle
    point (hinted ones: they came off the head of an all-hinted list) are freed, and the
    (32 - 3)th of them requests."""
    system, uppers = with_order_min_leftovers("hinted")
    reported = count_reported_blocks(system)
    trigger = blocks_to_trigger(counts_of(system), TOP, REAL)
    tops = [system.alloc(TOP) for _ in range(trigger - len(uppers) + offset)]
    start = counts_of(system)
    assert start[MIN] == OrderCounts(3, 3) and start[TOP].unhinted == 0

    events, outcome = free_and_settle(
        system, [(p, MIN) for p in uppers] + [(p, TOP) for p in tops], reported
    )
    assert events == [MergeFree(TOP, buddy_hinted=True)] * 3 + [FreeBlock(TOP)] * len(tops)
    assert_agrees(start, events, outcome, REAL)
    assert outcome.requested is (offset == 0)
    if offset < 0:
        assert outcome.counts[MIN] == OrderCounts(0, 0)
        assert outcome.counts[TOP].unhinted == REAL.hwm - 1


def test_a_single_free_requests_when_a_split_left_hwm_unhinted_blocks() -> None:
    """Real constants, x86-64 types. expand() adds an unnotified block: 31 unhinted
    order-9 lower halves and one Unmovable split make U[9] == 32 at an idle point
    (test_model_idle.py), so blocks_to_trigger is 1 and the next order-9 free that does
    not merge requests."""
    x86 = Params(migratetypes=tuple(MigrateType)[:4])
    unmovable, movable = MigrateType.UNMOVABLE, MigrateType.MOVABLE
    system = HintingSystem(x86, 64 << TOP, [unmovable] * 16 + [movable] * 112)
    system.settle()
    reported = count_reported_blocks(system)
    halves = [system.alloc(MIN, movable) for _ in range(64)]  # 32 top-order blocks, split
    for pfn in halves[:62:2]:
        system.free(pfn, MIN)  # 31 unhinted order-9 blocks, one notification each
    system.alloc(0, unmovable)  # no Unmovable block below order 10: a split adds one
    start = counts_of(system)
    assert start[MIN] == OrderCounts(32, 0) and system.idle
    assert blocks_to_trigger(start, MIN, x86) == 1

    frees = [(halves[62], MIN), (halves[63], MIN), (halves[1], MIN)]
    events, outcome = free_and_settle(system, frees, reported)
    assert events == [FreeBlock(MIN), MergeFree(TOP), MergeFree(TOP)]
    assert_agrees(start, events, outcome, x86)
    assert outcome.trigger_event == 0 and outcome.reported == 31 + 2  # order 9 and 10


# -- small constants: random scripts ------------------------------------------------------
MERGEABLE = (MigrateType.UNMOVABLE, MigrateType.MOVABLE, MigrateType.RECLAIMABLE)
SMALL = Params(
    max_order=4,
    min_order=2,
    hwm=3,
    capacity=2,
    migratetypes=(*MERGEABLE, MigrateType.HIGHATOMIC),  # the x86-64 guest's four
)
SMALL_TOP_BLOCKS = 32
SMALL_PAGEBLOCKS = SMALL_TOP_BLOCKS << (SMALL.top_order - SMALL.pageblock_order)
ALLOCATING_ROUND = st.tuples(
    st.booleans(),  # empty the Movable order-min list before allocating the pairs
    st.integers(0, SMALL.hwm + 2),  # k pairs of Movable order-min blocks
    st.booleans(),  # free both halves of each pair (else only the lower ones)
    st.lists(st.tuples(st.integers(0, SMALL.top_order), st.sampled_from(MERGEABLE)), max_size=6),
)
FREEING_ROUND = st.just((False, 0, True, []))  # no allocation: hinted blocks stay put


def test_small_constants_keep_the_real_shape() -> None:
    assert SMALL.min_order == SMALL.max_order - 2 and REAL.min_order == REAL.max_order - 2
    assert not SMALL.tail_placement_possible


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    pageblock_types=st.lists(
        st.sampled_from(MERGEABLE), min_size=SMALL_PAGEBLOCKS, max_size=SMALL_PAGEBLOCKS
    ),
    rounds=st.lists(ALLOCATING_ROUND | FREEING_ROUND, min_size=1, max_size=4),
    data=st.data(),
)
def test_prediction_matches_the_model_at_the_next_idle_point(
    pageblock_types: list[MigrateType], rounds, data
) -> None:
    """Small constants, pageblocks of the three mutually mergeable types. Rounds of:
    allocate at an idle point (optionally first empty the Movable order-min list, then
    k pairs of Movable order-min blocks, then extra blocks of any order and type), read
    the counts, free the pairs (lower then upper, or only the lower halves) with up to six
    other blocks the script holds (from this round or an earlier one) mixed in, settle,
    compare. Rounds that allocate nothing keep the order-min blocks a request hinted, so
    a later free can merge with a hinted buddy; several types let expand() leave U >= HWM
    at an idle point (one block per type), so a single free requests.
    """
    system = HintingSystem(SMALL, SMALL_TOP_BLOCKS << SMALL.top_order, pageblock_types)
    system.settle()
    reported = count_reported_blocks(system)
    min_order, movable = SMALL.min_order, MigrateType.MOVABLE
    for empty_min_list, k, both_halves, extras in rounds:
        while empty_min_list and system.zone.free_lists[min_order][movable]:
            assert system.alloc(min_order, movable) is not None
        pairs: list[tuple[int, int]] = []
        for _ in range(k):
            lower = system.alloc(min_order, movable)
            upper = system.alloc(min_order, movable)
            if lower is None or upper is None:
                break  # no Movable block left: whatever was allocated stays held
            lower, upper = sorted((lower, upper))
            pairs.append((lower, upper))
            if empty_min_list:
                assert upper == lower ^ (1 << min_order)
        for order, mt in extras:
            system.alloc(order, mt)
        assert system.idle
        start = counts_of(system)

        frees = [(pfn, min_order) for pair in pairs for pfn in pair[: 2 if both_halves else 1]]
        in_pairs = {pfn for pair in pairs for pfn in pair}
        others = sorted(item for item in system.zone.allocated.items() if item[0] not in in_pairs)
        if others:
            for item in data.draw(st.lists(st.sampled_from(others), unique=True, max_size=6)):
                frees.insert(data.draw(st.integers(0, len(frees))), item)

        events, outcome = free_and_settle(system, frees, reported)
        assert_agrees(start, events, outcome, SMALL)
        if empty_min_list:  # the pairs are buddies: FreeBlock, then MergeFree one order up
            by_pfn = dict(zip((pfn for pfn, _ in frees), events, strict=True))
            for lower, upper in pairs:
                assert by_pfn[lower] == FreeBlock(min_order)
                if both_halves:
                    assert by_pfn[upper] == MergeFree(min_order + 1, buddy_hinted=False)
        # coverage, shown by --hypothesis-show-statistics
        event("request" if outcome.requested else "no request")
        event(
            f"merge with a hinted buddy: {any(getattr(e, 'buddy_hinted', False) for e in events)}"
        )
        event(f"U >= HWM at the idle point: {any(c.unhinted >= SMALL.hwm for c in start.values())}")
