"""Typed views of the guest's /proc files and the series' debugfs dump.

The dataclasses below are the contract between the parsers, the scenarios and the judge.
Parsers: `parse_zoneinfo`, `parse_buddyinfo`, `parse_pagetypeinfo`, `parse_meminfo`,
`parse_hinting_state` (to be implemented in this module).
"""

from __future__ import annotations

from dataclasses import dataclass, field

PAGE_SIZE = 4096


@dataclass(frozen=True)
class ZoneInfo:
    """One zone of /proc/zoneinfo."""

    node: int
    zone: str
    free_pages: int  # "pages free"
    min: int
    low: int
    high: int
    spanned: int
    present: int
    managed: int
    stats: dict[str, int] = field(default_factory=dict)  # every other "name value" line
    hinted: dict[int, int] = field(default_factory=dict)  # order -> count ("hinted_order_<o>")


@dataclass(frozen=True)
class BuddyInfo:
    """/proc/buddyinfo: free blocks per order, per (node, zone)."""

    free: dict[tuple[int, str], tuple[int, ...]]


@dataclass(frozen=True)
class PageTypeInfo:
    """/proc/pagetypeinfo: free blocks per order for each (node, zone, migratetype)."""

    pageblock_order: int
    pages_per_block: int
    free: dict[tuple[int, str, str], tuple[int, ...]]  # (node, zone, mt) -> count per order
    blocks: dict[tuple[int, str], dict[str, int]]  # (node, zone) -> mt -> number of pageblocks


@dataclass(frozen=True)
class HintingListState:
    """One free list (zone, order, migratetype) as the series' debugfs file shows it."""

    zone: str
    node: int
    order: int
    migratetype: str
    free: int
    hinted: int
    first_hinted: int  # 0-based index from the list head, -1 when nothing is hinted
    contiguous_tail: bool


@dataclass(frozen=True)
class HintingZoneState:
    node: int
    zone: str
    requested: bool
    active: bool


@dataclass(frozen=True)
class HintingState:
    """debugfs page_hinting/state (see docs/ARCHITECTURE.md for the format)."""

    min_order: int
    hwm: int
    capacity: int
    refcnt: int
    device: bool
    zones: tuple[HintingZoneState, ...]
    lists: tuple[HintingListState, ...]


@dataclass(frozen=True)
class GuestObservations:
    """Everything read from the guest at one moment."""

    zoneinfo: tuple[ZoneInfo, ...]
    buddyinfo: BuddyInfo
    pagetypeinfo: PageTypeInfo
    meminfo: dict[str, int]  # values in kB as the file gives them (HugePages_* as counts)
    hinting: HintingState | None  # None when the kernel has no hinting series
