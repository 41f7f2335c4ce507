"""Kernel addresses to symbols, from the build's System.map (kept beside the bzImage).

`name+0xoff/0xsize`, as the kernel's own `%pS` prints it: the nearest symbol at or below the
address, its size the distance to the next symbol. The guest kernels are not relocatable
(no KASLR), so System.map's addresses are the running kernel's.
"""

from __future__ import annotations

import bisect
import re
from dataclasses import dataclass
from pathlib import Path

SYSTEM_MAP = "System.map"
TEXT_TYPES = frozenset("TtWw")  # code: what a RIP can point into
KERNEL_SPACE = 0xFFFF_8000_0000_0000  # below: per-cpu offsets and absolute symbols
_LINE = re.compile(r"^([0-9a-fA-F]+) (\S) (\S+)")
# Section markers share their address with the first function after them.
_MARKER = re.compile(r"_(start|end)$|^_[se]?text$|^_[se]inittext$")


def system_map_for(kernel: Path) -> Path:
    """Where a build keeps the System.map of `kernel` (builds/<key>/System.map)."""
    return Path(kernel).parent / SYSTEM_MAP


@dataclass(frozen=True)
class Symbol:
    address: int
    kind: str  # nm's type letter
    name: str


class SymbolMap:
    """The symbols of one kernel, sorted by address."""

    def __init__(self, symbols: list[Symbol]) -> None:
        self._symbols = sorted(
            (s for s in symbols if s.address >= KERNEL_SPACE), key=lambda s: s.address
        )
        self._addresses = [s.address for s in self._symbols]

    @classmethod
    def parse(cls, text: str) -> SymbolMap:
        symbols = []
        for line in text.splitlines():
            if m := _LINE.match(line):
                symbols.append(Symbol(int(m[1], 16), m[2], m[3]))
        return cls(symbols)

    @classmethod
    def load(cls, path: Path) -> SymbolMap | None:
        """The map in `path`, or None if there is none (an older build kept no System.map)."""
        try:
            return cls.parse(Path(path).read_text(errors="replace"))
        except OSError:
            return None

    def __len__(self) -> int:
        return len(self._symbols)

    def names(self) -> set[str]:
        return {s.name for s in self._symbols}

    def lookup(self, address: int) -> tuple[str, int, int] | None:
        """(name, offset, size) of the code symbol `address` is in, or None (not in the
        kernel's code, or past its last symbol)."""
        index = bisect.bisect_right(self._addresses, address) - 1
        if index < 0:
            return None
        start = self._addresses[index]
        first = bisect.bisect_left(self._addresses, start)
        after = bisect.bisect_right(self._addresses, start)
        if after >= len(self._addresses):
            return None  # no next symbol: no size, and likely not code
        candidates = [s for s in self._symbols[first:after] if s.kind in TEXT_TYPES]
        if not candidates:
            return None
        # a function rather than a section marker at the same address
        symbol = min(candidates, key=lambda s: _MARKER.search(s.name) is not None)
        return symbol.name, address - start, self._addresses[after] - start

    def symbolize(self, address: int) -> str | None:
        """ "get_unhinted_page+0x5c/0x120", or None."""
        found = self.lookup(address)
        if found is None:
            return None
        name, offset, size = found
        return f"{name}+{offset:#x}/{size:#x}"


def describe_address(address: int, symbols: SymbolMap | None) -> str:
    """The symbol if the map knows the address, else the raw address (0xffffffff81...)."""
    found = symbols.symbolize(address) if symbols is not None else None
    return found or f"{address:#x}"


def function_of(symbolized: str) -> str:
    """ "default_idle+0x4/0x6" -> "default_idle" (a raw address stays as it is)."""
    return symbolized.split("+", 1)[0]
