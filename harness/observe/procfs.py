"""Typed views of the guest's /proc files and the series' debugfs dump.

The dataclasses below are the contract between the parsers, the scenarios and the judge.
Parsers: `parse_zoneinfo`, `parse_buddyinfo`, `parse_pagetypeinfo`, `parse_meminfo`,
`parse_hinting_state`; `read_observations` reads them all through a caller-given reader
(a guest SSH session, or a fake in tests).

Parsers check structure only (every line understood, numbers are numbers). Kernel
invariants such as "hinted <= free" are the judge's business: a kernel bug must show up
as a verdict, not as a parse error.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from harness.core.errors import HarnessError


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
class ZoneActivity:
    """The series' per-zone activity counters (cumulative since boot)."""

    requests: int  # times the zone set REQUESTED
    cycles: int  # page_hinting_cycle() runs
    batches: int  # non-empty fills handed to react()
    reported: int  # blocks handed to react()
    hinted: int  # blocks that came back marked hinted

    def since(self, earlier: ZoneActivity) -> ZoneActivity:
        return ZoneActivity(*(getattr(self, f) - getattr(earlier, f) for f in ACTIVITY_FIELDS))


ACTIVITY_FIELDS = ("requests", "cycles", "batches", "reported", "hinted")


@dataclass(frozen=True)
class HintingZoneState:
    node: int
    zone: str
    requested: bool
    active: bool
    activity: ZoneActivity | None = None  # None: a series without the counters


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
    # The series' own debugfs output did not parse: why, naming the line (hinting is None).
    # A defect of the series, so the judge fails a check with it instead of raising.
    hinting_parse_error: str | None = None


# ---------------------------------------------------------------------------------------------
# Errors


class ProcfsError(HarnessError):
    """A guest /proc or debugfs file could not be read or understood."""


class ProcfsParseError(ProcfsError, ValueError):
    """A line of a /proc or debugfs file does not have the expected format."""


class ProcfsMissingFile(ProcfsError, FileNotFoundError):
    """A /proc file every kernel must provide is missing in the guest."""


_PARSE_HINT = "capture the file and add it under tests/fixtures/proc, then extend the parser"


def _bad_line(
    source: str, line_no: int, line: str, why: str = "unexpected line"
) -> ProcfsParseError:
    return ProcfsParseError(f"{source} line {line_no}: {why}: {line!r}", _PARSE_HINT)


def _numbered_lines(text: str) -> Iterator[tuple[int, str]]:
    """Non-blank lines with their 1-based line numbers, trailing whitespace removed."""
    for line_no, line in enumerate(text.splitlines(), start=1):
        stripped = line.rstrip()
        if stripped:
            yield line_no, stripped


def _to_int(token: str, source: str, line_no: int, line: str) -> int:
    try:
        return int(token)
    except ValueError:
        raise _bad_line(source, line_no, line, f"{token!r} is not an integer") from None


# ---------------------------------------------------------------------------------------------
# /proc/zoneinfo

_ZONE_HEADER = re.compile(r"Node\s+(\d+),\s+zone\s+(\S+)")
_PAGES_FREE = re.compile(r"\s+pages free\s+(\d+)")
_HINTED_ORDER = re.compile(r"\s+hinted_order_(\d+)\s+(\d+)")
_PROTECTION = re.compile(r"\s+protection:\s+\(-?\d+(?:,\s*-?\d+)*\)")
_NAME_VALUE = re.compile(r"\s+([A-Za-z_][\w()]*)\s+(-?\d+)")
_COLON_VALUE = re.compile(r"(\s+)([a-z_ ]+):\s+(-?\d+)")
_PER_CPU_NAMES = frozenset({"vm stats threshold"})  # printed at zone indent, but per cpu

_ZONE_REQUIRED = ("min", "low", "high", "spanned", "present", "managed")


@dataclass
class _ZoneBuilder:
    """A zone being read; `section` is where in the zone block the parser is."""

    node: int
    zone: str
    header_line_no: int
    section: str = "zone"  # "node_stats" | "zone" | "pagesets"
    free_pages: int | None = None
    values: dict[str, int] = field(default_factory=dict)
    hinted: dict[int, int] = field(default_factory=dict)

    def build(self, source: str) -> ZoneInfo:
        where = f"{source} zone block at line {self.header_line_no} (node {self.node}, {self.zone})"
        missing = [name for name in _ZONE_REQUIRED if name not in self.values]
        if self.free_pages is None or missing:
            fields = (["pages free"] if self.free_pages is None else []) + missing
            raise ProcfsParseError(f"{where}: missing {', '.join(fields)}", _PARSE_HINT)
        stats = dict(self.values)
        required = {name: stats.pop(name) for name in _ZONE_REQUIRED}
        return ZoneInfo(
            node=self.node,
            zone=self.zone,
            free_pages=self.free_pages,
            stats=stats,
            hinted=dict(self.hinted),
            **required,
        )


def _put_once(target: dict, key: object, value: int, source: str, line_no: int, line: str) -> None:
    if key in target:
        raise _bad_line(source, line_no, line, f"{key} given twice in one zone")
    target[key] = value


def _zone_section_line(zone: _ZoneBuilder, line_no: int, line: str, source: str) -> None:
    """One line of the zone-level part (from "pages free" to "pagesets")."""
    if m := _PAGES_FREE.fullmatch(line):
        if zone.free_pages is not None:
            raise _bad_line(source, line_no, line, "pages free given twice in one zone")
        zone.free_pages = int(m[1])
    elif m := _HINTED_ORDER.fullmatch(line):
        _put_once(zone.hinted, int(m[1]), int(m[2]), source, line_no, line)
    elif _PROTECTION.fullmatch(line):
        pass  # lowmem_reserve: not a counter
    elif line == "  pagesets":
        zone.section = "pagesets"
    elif m := _NAME_VALUE.fullmatch(line):
        _put_once(zone.values, m[1], int(m[2]), source, line_no, line)
    elif (m := _COLON_VALUE.fullmatch(line)) and m[2] not in _PER_CPU_NAMES:
        _put_once(zone.values, m[2], int(m[3]), source, line_no, line)  # node_unreclaimable...
    else:
        raise _bad_line(source, line_no, line)


def _pagesets_line(zone: _ZoneBuilder, line_no: int, line: str, source: str) -> None:
    """Per-cpu details are skipped; the zone-indented lines after them are zone stats."""
    if hinted := _HINTED_ORDER.fullmatch(line):
        _put_once(zone.hinted, int(hinted[1]), int(hinted[2]), source, line_no, line)
        return
    m = _COLON_VALUE.fullmatch(line)
    if m is None:
        raise _bad_line(source, line_no, line)
    indent, name, value = m[1], m[2], int(m[3])
    if len(indent) > 2 or name in _PER_CPU_NAMES:
        return
    _put_once(zone.values, name, value, source, line_no, line)


def _node_stats_line(zone: _ZoneBuilder, line_no: int, line: str, source: str) -> None:
    """Per-node counters belong to the node, not this zone: skipped until "pages free"."""
    if _PAGES_FREE.fullmatch(line):
        zone.section = "zone"
        _zone_section_line(zone, line_no, line, source)
    elif not _NAME_VALUE.fullmatch(line):
        raise _bad_line(source, line_no, line)


_SECTION_READERS = {
    "zone": _zone_section_line,
    "pagesets": _pagesets_line,
    "node_stats": _node_stats_line,
}


def parse_zoneinfo(text: str, source: str = "/proc/zoneinfo") -> tuple[ZoneInfo, ...]:
    """Every zone of /proc/zoneinfo, in file order, populated or not."""
    zones: list[ZoneInfo] = []
    current: _ZoneBuilder | None = None
    seen: set[tuple[int, str]] = set()
    for line_no, line in _numbered_lines(text):
        if m := _ZONE_HEADER.fullmatch(line):
            if current is not None:
                zones.append(current.build(source))
            key = (int(m[1]), m[2])
            if key in seen:
                raise _bad_line(source, line_no, line, "zone listed twice")
            seen.add(key)
            current = _ZoneBuilder(node=key[0], zone=key[1], header_line_no=line_no)
        elif current is None:
            raise _bad_line(source, line_no, line, "line before the first 'Node N, zone X'")
        elif line == "  per-node stats":
            current.section = "node_stats"
        else:
            _SECTION_READERS[current.section](current, line_no, line, source)
    if current is None:
        raise ProcfsParseError(f"{source}: no zones in {len(text)} characters", _PARSE_HINT)
    zones.append(current.build(source))
    return tuple(zones)


# ---------------------------------------------------------------------------------------------
# /proc/buddyinfo

_BUDDY_LINE = re.compile(r"Node\s+(\d+),\s+zone\s+(\S+)((?:\s+\d+)+)")


def parse_buddyinfo(text: str, source: str = "/proc/buddyinfo") -> BuddyInfo:
    """Free block counts per order for each (node, zone) with memory."""
    free: dict[tuple[int, str], tuple[int, ...]] = {}
    for line_no, line in _numbered_lines(text):
        m = _BUDDY_LINE.fullmatch(line)
        if m is None:
            raise _bad_line(source, line_no, line)
        key = (int(m[1]), m[2])
        counts = tuple(int(tok) for tok in m[3].split())
        if key in free:
            raise _bad_line(source, line_no, line, "zone listed twice")
        if free and len(counts) != len(next(iter(free.values()))):
            raise _bad_line(source, line_no, line, "number of orders differs from the first line")
        free[key] = counts
    if not free:
        raise ProcfsParseError(f"{source}: no zones", _PARSE_HINT)
    return BuddyInfo(free=free)


# ---------------------------------------------------------------------------------------------
# /proc/pagetypeinfo

_PT_BLOCK_ORDER = re.compile(r"Page block order:\s+(\d+)")
_PT_PAGES_PER_BLOCK = re.compile(r"Pages per block:\s+(\d+)")
_PT_FREE_HEADER = re.compile(r"Free pages count per migrate type at order((?:\s+\d+)+)")
_PT_FREE_ROW = re.compile(r"Node\s+(\d+),\s+zone\s+(\S+),\s+type\s+(\S+)((?:\s+>?\d+)+)")
_PT_BLOCKS_HEADER = re.compile(r"Number of (blocks type|mixed blocks)((?:\s+\S+)+)")
_PT_BLOCKS_ROW = re.compile(r"Node\s+(\d+),\s+zone\s+(\S+)((?:\s+\d+)+)")
_PT_FREE_CAP = ">"  # the kernel stops counting a list at 100000 and prints ">100000"


@dataclass
class _PageTypeBuilder:
    source: str
    pageblock_order: int | None = None
    pages_per_block: int | None = None
    n_orders: int | None = None
    block_types: tuple[str, ...] | None = None
    in_mixed: bool = False  # "Number of mixed blocks" rows (PAGE_OWNER) are skipped
    free: dict[tuple[int, str, str], tuple[int, ...]] = field(default_factory=dict)
    blocks: dict[tuple[int, str], dict[str, int]] = field(default_factory=dict)

    def set_once(self, name: str, value: int, line_no: int, line: str) -> None:
        """Block order and size repeat once per node and must agree."""
        old = getattr(self, name)
        if old is not None and old != value:
            raise _bad_line(self.source, line_no, line, f"{name} was {old} earlier")
        setattr(self, name, value)

    def free_row(self, m: re.Match[str], line_no: int, line: str) -> None:
        tokens = m[4].split()
        if self.n_orders is None or len(tokens) != self.n_orders:
            raise _bad_line(self.source, line_no, line, "count of orders differs from header")
        key = (int(m[1]), m[2], m[3])
        if key in self.free:
            raise _bad_line(self.source, line_no, line, "free list listed twice")
        self.free[key] = tuple(int(tok.removeprefix(_PT_FREE_CAP)) for tok in tokens)

    def blocks_row(self, m: re.Match[str], line_no: int, line: str) -> None:
        if self.in_mixed:
            return
        counts = [int(tok) for tok in m[3].split()]
        if self.block_types is None or len(counts) != len(self.block_types):
            raise _bad_line(self.source, line_no, line, "count of types differs from header")
        key = (int(m[1]), m[2])
        if key in self.blocks:
            raise _bad_line(self.source, line_no, line, "zone listed twice")
        self.blocks[key] = dict(zip(self.block_types, counts, strict=True))

    def build(self) -> PageTypeInfo:
        if self.pageblock_order is None or self.pages_per_block is None or not self.free:
            raise ProcfsParseError(
                f"{self.source}: no 'Page block order'/'Pages per block' header or no free lists",
                _PARSE_HINT,
            )
        return PageTypeInfo(
            pageblock_order=self.pageblock_order,
            pages_per_block=self.pages_per_block,
            free=self.free,
            blocks=self.blocks,
        )


def parse_pagetypeinfo(text: str, source: str = "/proc/pagetypeinfo") -> PageTypeInfo:
    """Free lists per (node, zone, migratetype) and pageblock counts per migratetype.

    A list the kernel stopped counting (">100000") is reported as 100000, a lower bound.
    """
    builder = _PageTypeBuilder(source)
    for line_no, line in _numbered_lines(text):
        if m := _PT_BLOCK_ORDER.fullmatch(line):
            builder.set_once("pageblock_order", int(m[1]), line_no, line)
        elif m := _PT_PAGES_PER_BLOCK.fullmatch(line):
            builder.set_once("pages_per_block", int(m[1]), line_no, line)
        elif m := _PT_FREE_HEADER.fullmatch(line):
            builder.set_once("n_orders", len(m[1].split()), line_no, line)
        elif m := _PT_FREE_ROW.fullmatch(line):
            builder.free_row(m, line_no, line)
        elif m := _PT_BLOCKS_HEADER.fullmatch(line):
            builder.in_mixed = m[1] == "mixed blocks"
            if not builder.in_mixed:
                builder.block_types = tuple(m[2].split())
        elif m := _PT_BLOCKS_ROW.fullmatch(line):
            builder.blocks_row(m, line_no, line)
        else:
            raise _bad_line(source, line_no, line)
    return builder.build()


# ---------------------------------------------------------------------------------------------
# /proc/meminfo

_MEMINFO_LINE = re.compile(r"([^:\s]+):\s+(\d+)(?: kB)?")


def parse_meminfo(text: str, source: str = "/proc/meminfo") -> dict[str, int]:
    """Field -> value as the file gives it (kB, or a count for HugePages_*)."""
    values: dict[str, int] = {}
    for line_no, line in _numbered_lines(text):
        m = _MEMINFO_LINE.fullmatch(line)
        if m is None:
            raise _bad_line(source, line_no, line)
        if m[1] in values:
            raise _bad_line(source, line_no, line, "field given twice")
        values[m[1]] = int(m[2])
    if "MemTotal" not in values:
        raise ProcfsParseError(f"{source}: no MemTotal line", _PARSE_HINT)
    return values


# ---------------------------------------------------------------------------------------------
# debugfs page_hinting/state (format: docs/ARCHITECTURE.md)

_STATE_HEADER_KEYS = ("min_order", "hwm", "capacity", "refcnt", "device")
_STATE_ZONE_KEYS = ("zone", "node", "requested", "active")
_STATE_ORDER_KEYS = ("order", "mt", "free", "hinted", "first_hinted", "contiguous_tail")


@dataclass(frozen=True)
class _StateLine:
    """One "key value key value ..." line of the debugfs file."""

    fields: dict[str, str]
    line_no: int
    line: str
    source: str

    @classmethod
    def parse(cls, line_no: int, line: str, source: str, keys: tuple[str, ...]) -> _StateLine:
        tokens = line.split()
        if len(tokens) % 2:
            raise _bad_line(source, line_no, line, "odd number of words (want key value pairs)")
        fields = dict(zip(tokens[::2], tokens[1::2], strict=True))
        missing = [key for key in keys if key not in fields]
        if missing:
            raise _bad_line(source, line_no, line, f"missing {', '.join(missing)}")
        return cls(fields, line_no, line, source)

    def int(self, key: str) -> int:
        return _to_int(self.fields[key], self.source, self.line_no, self.line)

    def flag(self, key: str) -> bool:
        value = self.fields[key]
        if value not in ("0", "1"):
            raise _bad_line(self.source, self.line_no, self.line, f"{key} must be 0 or 1")
        return value == "1"


def parse_hinting_state(text: str, source: str = "page_hinting/state") -> HintingState:
    """The series' debugfs dump: global parameters, zone flags, one entry per free list."""
    lines = list(_numbered_lines(text))
    if not lines:
        raise ProcfsParseError(f"{source}: empty", "is the hinting series' debugfs file wired?")
    head = _StateLine.parse(*lines[0], source, _STATE_HEADER_KEYS)
    if lines[0][1].split()[0] != "min_order":
        raise _bad_line(source, lines[0][0], lines[0][1], "first line must start with min_order")
    zones: list[HintingZoneState] = []
    lists: list[HintingListState] = []
    for line_no, line in lines[1:]:
        kind = line.split()[0]
        if kind == "zone":
            entry = _StateLine.parse(line_no, line, source, _STATE_ZONE_KEYS)
            zones.append(_hinting_zone(entry))
        elif kind == "order" and zones:
            entry = _StateLine.parse(line_no, line, source, _STATE_ORDER_KEYS)
            lists.append(_hinting_list(entry, zones[-1]))
        elif kind == "order":
            raise _bad_line(source, line_no, line, "order line before any zone line")
        else:
            raise _bad_line(source, line_no, line)
    return HintingState(
        min_order=head.int("min_order"),
        hwm=head.int("hwm"),
        capacity=head.int("capacity"),
        refcnt=head.int("refcnt"),
        device=head.flag("device"),
        zones=tuple(zones),
        lists=tuple(lists),
    )


def _hinting_zone(entry: _StateLine) -> HintingZoneState:
    present = [f for f in ACTIVITY_FIELDS if f in entry.fields]
    if present and len(present) != len(ACTIVITY_FIELDS):
        missing = ", ".join(f for f in ACTIVITY_FIELDS if f not in entry.fields)
        raise _bad_line(entry.source, entry.line_no, entry.line, f"missing {missing}")
    activity = ZoneActivity(*(entry.int(f) for f in ACTIVITY_FIELDS)) if present else None
    return HintingZoneState(
        node=entry.int("node"),
        zone=entry.fields["zone"],
        requested=entry.flag("requested"),
        active=entry.flag("active"),
        activity=activity,
    )


def _hinting_list(entry: _StateLine, zone: HintingZoneState) -> HintingListState:
    return HintingListState(
        zone=zone.zone,
        node=zone.node,
        order=entry.int("order"),
        migratetype=entry.fields["mt"],
        free=entry.int("free"),
        hinted=entry.int("hinted"),
        first_hinted=entry.int("first_hinted"),
        contiguous_tail=entry.flag("contiguous_tail"),
    )


# ---------------------------------------------------------------------------------------------
# Everything at once

ZONEINFO_PATH = "/proc/zoneinfo"
BUDDYINFO_PATH = "/proc/buddyinfo"
PAGETYPEINFO_PATH = "/proc/pagetypeinfo"
MEMINFO_PATH = "/proc/meminfo"
HINTING_STATE_PATH = "/sys/kernel/debug/page_hinting/state"


def _read_required(read: Callable[[str], str], path: str) -> str:
    try:
        return read(path)
    except FileNotFoundError as exc:
        raise ProcfsMissingFile(
            f"{path} is missing in the guest",
            "check that the guest mounts /proc and the kernel has CONFIG_PROC_FS",
        ) from exc


OBSERVED_PATHS = (
    HINTING_STATE_PATH,
    ZONEINFO_PATH,
    BUDDYINFO_PATH,
    PAGETYPEINFO_PATH,
    MEMINFO_PATH,
)
_FILE_MARK = "@@phh-file "
_MISSING_MARK = "@@phh-missing"


def cat_files_command(paths: tuple[str, ...]) -> str:
    """One shell command printing each file after a header line (a file that cannot be
    read is followed by a missing mark): the guest reads them all within milliseconds of
    each other, in one SSH round trip instead of one per file."""
    quoted = " ".join(f"'{path}'" for path in paths)
    return (
        f'for f in {quoted}; do echo "{_FILE_MARK}$f"; '
        f'cat "$f" 2>/dev/null || echo "{_MISSING_MARK}"; done'
    )


def split_files(output: str) -> dict[str, str | None]:
    """cat_files_command's output: path -> contents (None: the file could not be read)."""
    files: dict[str, list[str]] = {}
    current: list[str] | None = None
    for line in output.splitlines(keepends=True):
        if line.startswith(_FILE_MARK):
            current = files.setdefault(line[len(_FILE_MARK) :].rstrip("\n"), [])
        elif current is not None:
            current.append(line)
    return {
        path: None if lines and lines[-1].rstrip("\n") == _MISSING_MARK else "".join(lines)
        for path, lines in files.items()
    }


def read_observations(read: Callable[[str], str]) -> GuestObservations:
    """Read and parse every observed file; `read(path)` raises FileNotFoundError if absent.

    The debugfs hinting file is optional: a kernel without the series has none.
    """
    try:
        state_text: str | None = read(HINTING_STATE_PATH)
    except FileNotFoundError:
        state_text = None
    hinting, parse_error = None, None
    if state_text is not None:
        try:
            hinting = parse_hinting_state(state_text, HINTING_STATE_PATH)
        except ProcfsParseError as error:
            parse_error = error.message
    return GuestObservations(
        zoneinfo=parse_zoneinfo(_read_required(read, ZONEINFO_PATH), ZONEINFO_PATH),
        buddyinfo=parse_buddyinfo(_read_required(read, BUDDYINFO_PATH), BUDDYINFO_PATH),
        pagetypeinfo=parse_pagetypeinfo(_read_required(read, PAGETYPEINFO_PATH), PAGETYPEINFO_PATH),
        meminfo=parse_meminfo(_read_required(read, MEMINFO_PATH), MEMINFO_PATH),
        hinting=hinting,
        hinting_parse_error=parse_error,
    )
