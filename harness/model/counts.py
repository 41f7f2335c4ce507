"""Zone-level prediction for scripted steps: per order, free and hinted counts only.

The full model (`HintingSystem`) follows every page. A scenario in a real guest cannot
give it pfns, but it can read the per-order counts at an idle point and then do one
scripted thing (free a known number of blocks) while the worker cannot be in `react`.
For that case v2's behaviour depends only on the counts:

* a free that ends at order o >= min_order notifies; if no request is pending and
  nr_free[o] >= hinted[o] + HWM afterwards, the zone requests hinting;
* a requested zone, once its worker has run with nothing freed meanwhile, has every
  free block of every hinting order hinted (the last fill ran short: U[o] == 0);
* nothing else changes the counts of the hinting orders.

`tests/test_model_counts.py` checks these predictions against `HintingSystem`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from harness.model.params import Params


@dataclass(frozen=True)
class OrderCounts:
    free: int
    hinted: int

    @property
    def unhinted(self) -> int:
        return self.free - self.hinted


@dataclass(frozen=True)
class FreeBlock:
    """A notifying free that leaves one unhinted block of `order` on the free lists."""

    order: int


@dataclass(frozen=True)
class MergeFree:
    """A free at `order - 1` that merged with its free buddy into one block of `order`.

    The buddy leaves order - 1 (hinted or not: merging clears the flag and the count).
    """

    order: int
    buddy_hinted: bool = False


Event = FreeBlock | MergeFree


@dataclass(frozen=True)
class CountPrediction:
    """Counts at the next idle point and whether hinting had to run to get there."""

    counts: dict[int, OrderCounts]
    requested: bool  # the zone requested hinting (requests counter + 1)
    trigger_event: int | None  # index of the event that requested, None if none did
    reported: int  # blocks the worker hands to the host (0 without a request)
    notes: list[str] = field(default_factory=list)


def predict_idle(
    start: Mapping[int, OrderCounts], events: Iterable[Event], params: Params
) -> CountPrediction:
    """Counts of the hinting orders after `events`, starting idle, once idle again."""
    counts = {o: start.get(o, OrderCounts(0, 0)) for o in params.hinting_orders}
    requested_at: int | None = None
    notes: list[str] = []
    for index, event in enumerate(events):
        order = event.order
        if isinstance(event, MergeFree) and order - 1 in counts:
            below = counts[order - 1]
            hinted = below.hinted - (1 if event.buddy_hinted else 0)
            counts[order - 1] = OrderCounts(below.free - 1, hinted)
        if order not in counts:
            continue  # below the minimum order: no notification, nothing counted
        after = OrderCounts(counts[order].free + 1, counts[order].hinted)
        counts[order] = after
        if requested_at is None and after.free >= after.hinted + params.hwm:
            requested_at = index
            notes.append(
                f"event {index} ({type(event).__name__} order {order}): nr_free {after.free} "
                f">= hinted {after.hinted} + HWM {params.hwm}: request"
            )
    if requested_at is None:
        return CountPrediction(counts, False, None, 0, notes)
    reported = sum(c.unhinted for c in counts.values())
    hinted_all = {o: OrderCounts(c.free, c.free) for o, c in counts.items()}
    return CountPrediction(hinted_all, True, requested_at, reported, notes)


def blocks_to_trigger(start: Mapping[int, OrderCounts], order: int, params: Params) -> int:
    """How many unhinted blocks of `order` must arrive (one notifying free each) before
    the zone requests hinting: the trigger point the threshold scenario aims around."""
    counts = start.get(order, OrderCounts(0, 0))
    return max(1, params.hwm - counts.unhinted)
