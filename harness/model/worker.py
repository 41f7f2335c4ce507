"""The delayed work of v2 (page_hinting_process / page_hinting_cycle) as a step machine.

page_hinting_cycle() holds zone->lock except around `react`; frees and allocations can
only interleave there. The machine stops at exactly that point (phase REACT: the batch is
off the free lists and the lock is dropped), so a test can run allocator operations
between fill and drain, as another CPU would.
"""

from __future__ import annotations

from enum import Enum

from harness.core.units import PAGE_SIZE
from harness.model.buddy import BuddyZone
from harness.model.hinting import BatchEntry, Hinting


class Phase(Enum):
    IDLE = "idle"  # work neither running nor pending
    PENDING = "pending"  # delayed work queued, timer not expired
    START = "start"  # page_hinting_process() entered, about to look at the zone
    FILL = "fill"  # in page_hinting_cycle() with the lock held, about to fill
    REACT = "react"  # lock dropped, batch handed to the host


class Host:
    """The QEMU side: react() discards each hinted range (MADV_DONTNEED).

    Tracks which guest page frames are discarded and not touched since; the guest
    touching a frame (allocation in this model) makes the host back it again.
    """

    def __init__(self) -> None:
        self.discarded: set[int] = set()
        self.reports = 0

    def react(self, batch: list[BatchEntry]) -> None:
        for entry in batch:
            self.discarded.update(range(entry.pfn, entry.pfn + (1 << entry.order)))
        self.reports += 1

    def touch(self, pfn: int, order: int) -> None:
        self.discarded.difference_update(range(pfn, pfn + (1 << order)))

    @property
    def discarded_bytes(self) -> int:
        return len(self.discarded) * PAGE_SIZE


class Worker:
    """system_wq running phdev->work for a single zone."""

    def __init__(self, zone: BuddyZone, hinting: Hinting, host: Host) -> None:
        self.zone = zone
        self.hinting = hinting
        self.host = host
        self.now = 0.0
        self.pending_at: float | None = None  # expiry of the queued delayed work
        self.running = False
        self.in_cycle = False
        self.batch: list[BatchEntry] = []
        self.cycles = 0

    @property
    def phase(self) -> Phase:
        if self.running:
            if not self.in_cycle:
                return Phase.START
            return Phase.REACT if self.batch else Phase.FILL
        return Phase.PENDING if self.pending_at is not None else Phase.IDLE

    def schedule(self, delay: float) -> None:
        """schedule_delayed_work(): no-op if already pending; allowed while running."""
        if self.pending_at is None:
            self.pending_at = self.now + delay

    def advance(self, seconds: float) -> None:
        """Let time pass; an expired timer starts the work if it is not running."""
        self.now += seconds
        if not self.running and self.pending_at is not None and self.pending_at <= self.now:
            self.pending_at = None
            self.running = True

    def step(self) -> Phase:
        """Run the running work up to its next lock drop or end; returns the new phase."""
        if not self.running:
            return self.phase
        if not self.in_cycle:
            self._process_zone()
        elif self.batch:
            self._react_and_drain()
        else:
            self._fill()
        return self.phase

    def _process_zone(self) -> None:
        """page_hinting_process(): cycle the zone if requested; exit when refcnt is 0."""
        if self.hinting.requested:
            self.hinting.populate_metadata(self.zone)
            self.hinting.active = True  # set_bit(ZONE_PAGE_HINTING_ACTIVE)
            self.in_cycle = True
            self.cycles += 1
        elif not self.hinting.refcnt:
            self.running = False
            self.advance(0.0)  # a work queued while running starts now if due

    def _fill(self) -> None:
        self.batch = self.hinting.fill(self.zone)
        if not self.batch:  # "no pages were acquired, give up"
            self._end_cycle()

    def _react_and_drain(self) -> None:
        self.host.react(self.batch)
        self.hinting.drain(self.zone, self.batch)
        self.batch = []
        if not self.hinting.requested:  # while (test_bit(REQUESTED))
            self._end_cycle()

    def _end_cycle(self) -> None:
        self.hinting.active = False  # clear_bit(ZONE_PAGE_HINTING_ACTIVE)
        self.in_cycle = False
        if not self.hinting.refcnt:  # do { ... } while (atomic_read(&phdev->refcnt))
            self.running = False
            self.advance(0.0)
