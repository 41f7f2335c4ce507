"""What the model shows of one zone: the same facts the series' debugfs dump prints."""

from __future__ import annotations

from dataclasses import dataclass

from harness.model.params import MigrateType


@dataclass(frozen=True)
class ListSnapshot:
    """One free list free_area[order].free_list[mt]."""

    order: int
    mt: MigrateType
    free: int
    hinted: int
    first_hinted: int  # 0-based index from the head of the first hinted entry, -1: none
    contiguous_tail: bool  # hinted entries are one block ending at the tail
    boundary: int | None  # index the boundary points at (free == sentinel); None: unused

    @property
    def unhinted(self) -> int:
        return self.free - self.hinted


@dataclass(frozen=True)
class ZoneSnapshot:
    requested: bool
    active: bool
    refcnt: int
    idle: bool  # not requested, not active, work neither pending nor running
    nr_free: tuple[int, ...]  # per order, all migratetypes
    hinted: tuple[int, ...]  # per order (zone->hinted_pages; 0 below min order)
    lists: tuple[ListSnapshot, ...]
    discarded_bytes: int

    def list(self, order: int, mt: MigrateType) -> ListSnapshot:
        for entry in self.lists:
            if entry.order == order and entry.mt == mt:
                return entry
        raise KeyError((order, mt))

    def unhinted(self, order: int) -> int:
        return self.nr_free[order] - self.hinted[order]
