"""What v2 guarantees about a zone once its worker is idle.

Idle: REQUESTED and ACTIVE clear, no work pending or running, device present.

Let U[o] = nr_free[o] - hinted[o] (unhinted free pages of order o, all migratetypes).

1. Below the minimum order nothing is promised: those orders are never hinted.
2. The last fill of the last cycle stopped short of capacity, so it had taken every
   unhinted page of every order >= min: at that moment U[o] == 0 for all of them.
3. After that moment, a free that ends at order o >= min notifies; REQUESTED is clear,
   so it requests hinting if U[o] >= HWM. The zone is idle, so no such free happened:
   right after each notifying free, U[o] <= HWM - 1.
4. Three ways add unhinted pages at o >= min without notifying:
   a. expand() (a split for an allocation) adds one page per order it passes, and it
      passes order o for migratetype mt only when that list is empty. So it can raise
      U[o] above its value at the last notifying free by at most one per migratetype
      that allocations use, and never at the top order (nothing splits into it).
   b. The last drain: a returned page that merges with a free buddy lands, unhinted and
      unnotified, one order or more higher (o > min). The last batch held at most
      capacity - 1 pages, each yields at most one such page.
   c. Outside the model: a hinted page moved to another migratetype (highatomic
      unreserve, isolation) loses its flag without notifying. Not bounded here.
So, from the model: U[o] <= HWM - 1 + (n_mt if o < top) + (capacity - 1 if o > min).
On x86-64 6.1 (min 9, top 10, HWM 32, capacity 32, 4 migratetypes without CMA and
isolation): U[9] <= 35 and U[10] <= 62. Both orders can therefore hold 32 or more
unhinted pages while idle: order 9 because a split adds a page without notifying,
order 10 because the last drain merged pages into it.
"""

from __future__ import annotations

from harness.model.params import Params


def idle_unhinted_bound(
    order: int,
    *,
    min_order: int,
    top_order: int,
    hwm: int,
    capacity: int,
    n_migratetypes: int,
) -> int | None:
    """Largest U[order] an idle zone can show; None when nothing is guaranteed."""
    if order < min_order:
        return None
    bound = hwm - 1
    if order < top_order:
        bound += n_migratetypes  # splits (4a)
    if order > min_order:
        bound += capacity - 1  # merges in the last drain (4b)
    return bound


def idle_bound_for(params: Params, order: int) -> int | None:
    return idle_unhinted_bound(
        order,
        min_order=params.min_order,
        top_order=params.top_order,
        hwm=params.hwm,
        capacity=params.capacity,
        n_migratetypes=len(params.migratetypes),
    )
