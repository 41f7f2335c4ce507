"""Revisions the harness knows how to build: a series plus the kconfig fragments it needs.

A revision is what a maintainer compares: stock 6.1 page reporting (the upstream
baseline), the faithful v2 port, and the port with the reviewers' defects fixed. Each can
also be built with the debug fragment (lockdep, PROVE_RCU, DEBUG_VM, DEBUG_LIST).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

from harness.errors import SeriesError
from harness.paths import KCONFIG_DIR, PATCHES_DIR

BASE = KCONFIG_DIR / "base.config"
REPORTING = KCONFIG_DIR / "reporting.config"
HINTING = KCONFIG_DIR / "hinting.config"
DEBUG = KCONFIG_DIR / "debug.config"
COVERAGE = KCONFIG_DIR / "coverage.config"
FLAVOURS = ("debug", "coverage")  # name suffixes: NAME+debug, NAME+coverage, both


@dataclass(frozen=True)
class Revision:
    """One buildable kernel: series (None = stock) and fragments, merged in order."""

    name: str
    series: Path | None
    fragments: tuple[Path, ...]
    hinting: bool  # the series provides CONFIG_PAGE_HINTING (v2-style hinting)
    debug: bool = False
    coverage: bool = False  # kernel GCOV on the objects the series changes

    def with_debug(self) -> Revision:
        if self.debug:
            return self
        return replace(
            self, name=f"{self.name}+debug", fragments=(*self.fragments, DEBUG), debug=True
        )

    def with_coverage(self) -> Revision:
        if self.coverage:
            return self
        return replace(
            self,
            name=f"{self.name}+coverage",
            fragments=(*self.fragments, COVERAGE),
            coverage=True,
        )

    def with_extra_fragments(self, extra: tuple[Path, ...]) -> Revision:
        return replace(self, fragments=(*self.fragments, *extra)) if extra else self


STOCK = Revision("stock", None, (BASE, REPORTING), hinting=False)
HINTING_V2 = Revision("hinting-v2", PATCHES_DIR / "hinting-v2", (BASE, HINTING), hinting=True)
HINTING_V2_FIXED = Revision(
    "hinting-v2-fixed", PATCHES_DIR / "hinting-v2-fixed", (BASE, HINTING), hinting=True
)
BUILTIN = {r.name: r for r in (STOCK, HINTING_V2, HINTING_V2_FIXED)}
DEFAULT_SERIES = HINTING_V2


def resolve(spec: str) -> Revision:
    """A built-in revision name or a path to a user's series, optionally with flavours
    ('+debug', '+coverage').

    A user series is assumed to provide CONFIG_PAGE_HINTING like the built-in ones.
    """
    name, *suffixes = spec.split("+")
    if Path(spec).expanduser().exists():  # a path that itself contains '+'
        name, suffixes = spec, []
    for suffix in suffixes:
        if suffix not in FLAVOURS:
            raise SeriesError(
                f"revision {spec!r}: unknown suffix {suffix!r}",
                "use NAME, NAME+debug, NAME+coverage or NAME+coverage+debug, NAME one of "
                + ", ".join(BUILTIN),
            )
    if name in BUILTIN:
        rev = BUILTIN[name]
    else:
        path = Path(name).expanduser()
        if not path.exists():
            raise SeriesError(
                f"revision {spec!r} is neither a built-in revision nor an existing path",
                "pass one of " + ", ".join(BUILTIN) + ", or a series directory or mbox file",
            )
        label = path.resolve().name or "user-series"
        rev = Revision(f"user:{label}", path.resolve(), (BASE, HINTING), hinting=True)
    if "coverage" in suffixes:
        rev = rev.with_coverage()
    return rev.with_debug() if "debug" in suffixes else rev
