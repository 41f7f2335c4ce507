"""The model's public face: one zone with the v2 series, its worker and the host."""

from __future__ import annotations

from collections.abc import Callable

from harness.core.units import PAGE_SIZE
from harness.model.buddy import BuddyZone, Placed
from harness.model.errors import ModelInvariantError
from harness.model.hinting import Hinting
from harness.model.invariants import check_invariants
from harness.model.params import MigrateType, Params
from harness.model.snapshot import ListSnapshot, ZoneSnapshot
from harness.model.worker import Host, Phase, Worker

MAX_WORKER_STEPS = 100_000  # a worker that does not finish within this is a model bug


class HintingSystem:
    """6.1 buddy zone + v2 hinting + delayed worker + discarding host."""

    def __init__(
        self,
        params: Params | None = None,
        nr_pages: int | None = None,
        block_mts: list[MigrateType] | None = None,
        *,
        populate: bool = True,
        device: bool = True,
    ) -> None:
        self.params = params or Params()
        nr_pages = nr_pages or 64 << self.params.top_order
        self.host = Host()
        # the worker needs the zone and the zone needs the hooks: wire in two steps
        self.hinting = Hinting(self.params, self._schedule)
        self.zone = BuddyZone(self.params, nr_pages, block_mts, hooks=self.hinting)
        self.worker = Worker(self.zone, self.hinting, self.host)
        if populate:
            self.zone.populate()
        if device:
            self.hinting.startup()

    def _schedule(self, delay: float) -> None:
        self.worker.schedule(delay)

    # -- allocator -------------------------------------------------------------------------
    def free(self, pfn: int, order: int, mt: MigrateType | None = None) -> Placed:
        """Free an allocated block (mt defaults to its pageblock's, as 6.1 does)."""
        return self.zone.free(pfn, order, mt)

    def alloc(self, order: int, mt: MigrateType = MigrateType.MOVABLE) -> int | None:
        """Allocate from mt's lists; the guest then touches the pages."""
        pfn = self.zone.alloc(order, mt)
        if pfn is not None:
            self.host.touch(pfn, order)
        return pfn

    def split(self, pfn: int) -> None:
        self.zone.split_allocated(pfn)

    # -- time and worker -------------------------------------------------------------------
    def advance(self, seconds: float) -> None:
        self.worker.advance(seconds)

    def worker_step(self) -> Phase:
        return self.worker.step()

    def run_worker(self) -> None:
        """Run the work, if running, to its end without interleaving anything."""
        for _ in range(MAX_WORKER_STEPS):
            if not self.worker.running:
                return
            self.worker.step()
        raise ModelInvariantError(
            f"worker did not finish in {MAX_WORKER_STEPS} steps", "fill never runs short?"
        )

    def step_until(self, reached: Callable[[HintingSystem], bool], limit: int = 1000) -> Phase:
        """Step the running work until `reached(self)`; ModelInvariantError if it never is."""
        for _ in range(limit):
            if reached(self):
                return self.worker.phase
            if not self.worker.running:
                break
            self.worker.step()
        if reached(self):
            return self.worker.phase
        raise ModelInvariantError(
            f"worker state not reached within {limit} steps (phase {self.worker.phase.value})",
            "check the predicate against the cycle: start, fill, react+drain, ...",
        )

    def settle(self) -> None:
        """Let every queued work expire and run until the zone is idle."""
        for _ in range(MAX_WORKER_STEPS):
            if self.worker.pending_at is not None and not self.worker.running:
                self.advance(max(0.0, self.worker.pending_at - self.worker.now))
            if not self.worker.running:
                return
            self.run_worker()
        raise ModelInvariantError("work kept being re-queued", "a request is never cleared?")

    @property
    def idle(self) -> bool:
        return (
            self.hinting.device
            and not self.hinting.requested
            and not self.hinting.active
            and self.worker.phase is Phase.IDLE
        )

    # -- observation -----------------------------------------------------------------------
    @property
    def discarded_bytes(self) -> int:
        """Bytes the host discarded that the guest has not touched since."""
        return self.host.discarded_bytes

    def hinted_bytes(self) -> int:
        return sum(self.hinting.hinted(o) * (PAGE_SIZE << o) for o in self.params.hinting_orders)

    def snapshot(self) -> ZoneSnapshot:
        lists = tuple(
            self._list_snapshot(order, mt)
            for order in range(self.params.max_order)
            for mt in self.params.migratetypes
        )
        return ZoneSnapshot(
            requested=self.hinting.requested,
            active=self.hinting.active,
            refcnt=self.hinting.refcnt,
            idle=self.idle,
            nr_free=tuple(self.zone.nr_free),
            hinted=tuple(self.hinting.hinted(o) for o in range(self.params.max_order)),
            lists=lists,
            discarded_bytes=self.discarded_bytes,
        )

    def _list_snapshot(self, order: int, mt: MigrateType) -> ListSnapshot:
        free_list = self.zone.free_lists[order][mt]
        flags = [self.zone.block_of(node).hinted for node in free_list]
        hinted = sum(flags)
        first = flags.index(True) if hinted else -1
        boundary = None
        if self.hinting.active and order >= self.params.min_order:
            boundary = free_list.index_of(self.hinting.boundary[(order, mt)])
        return ListSnapshot(
            order=order,
            mt=mt,
            free=len(free_list),
            hinted=hinted,
            first_hinted=first,
            contiguous_tail=hinted == 0 or first == len(flags) - hinted,
            boundary=boundary,
        )

    def check_invariants(self, *, tail_block: bool | None = None) -> None:
        check_invariants(self, tail_block=tail_block)
