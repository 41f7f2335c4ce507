"""Constants of the modelled kernel: Linux 6.1 on x86-64 with the v2 hinting series.

Every size is a parameter so that property tests can shrink the zone (small orders, a low
high-water mark) and still exercise the same code paths as the real constants.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum

from harness.model.errors import ModelUsageError


class MigrateType(IntEnum):
    """6.1's `enum migratetype` with CONFIG_CMA and CONFIG_MEMORY_ISOLATION set.

    The order matters: the hinting fill walks migratetypes from the highest value down.
    """

    UNMOVABLE = 0
    MOVABLE = 1
    RECLAIMABLE = 2
    HIGHATOMIC = 3  # == MIGRATE_PCPTYPES
    CMA = 4
    ISOLATE = 5

    @property
    def proc_name(self) -> str:
        """The name /proc/pagetypeinfo and the series' debugfs file print."""
        return MIGRATETYPE_NAMES[self]

    @property
    def mergeable(self) -> bool:
        """6.1 migratetype_is_mergeable(): buddies of order >= pageblock_order may merge
        across migratetypes only if both are below MIGRATE_PCPTYPES."""
        return self < MigrateType.HIGHATOMIC


MIGRATETYPE_NAMES: dict[MigrateType, str] = {
    MigrateType.UNMOVABLE: "Unmovable",
    MigrateType.MOVABLE: "Movable",
    MigrateType.RECLAIMABLE: "Reclaimable",
    MigrateType.HIGHATOMIC: "HighAtomic",
    MigrateType.CMA: "CMA",
    MigrateType.ISOLATE: "Isolate",
}
MIGRATETYPE_BY_NAME: dict[str, MigrateType] = {v: k for k, v in MIGRATETYPE_NAMES.items()}


@dataclass(frozen=True)
class Params:
    """Sizes of the model. Defaults are the real ones (x86-64, 6.1, HUGETLB_PAGE=y)."""

    max_order: int = 11  # MAX_ORDER: orders 0 .. max_order - 1
    min_order: int = 9  # PAGE_HINTING_MIN_ORDER = pageblock_order
    hwm: int = 32  # PAGE_HINTING_HWM
    capacity: int = 32  # phdev->capacity (virtio-balloon: 32 scatterlist entries)
    delay: float = 0.1  # schedule_delayed_work(&phdev->work, HZ / 10)
    migratetypes: tuple[MigrateType, ...] = tuple(MigrateType)

    def __post_init__(self) -> None:
        if not 0 <= self.min_order < self.max_order:
            raise ModelUsageError(
                f"min_order {self.min_order} not in [0, {self.max_order})",
                "the minimum hinting order must be a buddy order",
            )
        if self.hwm < 1 or self.capacity < 1:
            raise ModelUsageError(
                f"hwm {self.hwm} / capacity {self.capacity} not positive", "use values >= 1"
            )

    @property
    def top_order(self) -> int:
        return self.max_order - 1

    @property
    def pageblock_order(self) -> int:
        return self.min_order

    @property
    def hinting_orders(self) -> range:
        return range(self.min_order, self.max_order)

    @property
    def tail_placement_possible(self) -> bool:
        """Whether 6.1's buddy_merge_likely() can put an unhinted page of a hinted order
        at the list tail (it returns false for order >= MAX_ORDER - 2). On x86-64
        (9 >= 11 - 2) it cannot, which is what keeps hinted pages at the tail at idle."""
        return self.min_order < self.max_order - 2
